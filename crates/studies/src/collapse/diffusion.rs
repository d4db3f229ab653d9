//! The diffusion part of the collapse study: a fresh DDPM per generation on PCA-projected
//! Fashion-MNIST.

use super::*;

/// Sizes of the diffusion experiment.
#[derive(Debug, Clone, Serialize)]
pub struct DiffusionScale {
    /// Real Fashion-MNIST training images (a seeded subset).
    pub train_images: usize,
    /// Real held-out images for the metrics (a seeded subset).
    pub test_images: usize,
    /// PCA dimensions of the real data the model sees.
    pub pca_dims: usize,
    /// Generations per policy.
    pub generations: usize,
    /// DDPM sizes and training settings.
    pub model: dlt_nn::diffusion::DdpmConfig,
}

impl DiffusionScale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        Self {
            train_images: if quick { 5000 } else { 20_000 },
            test_images: 2000,
            pca_dims: 16,
            generations: if quick { 5 } else { 8 },
            model: dlt_nn::diffusion::DdpmConfig {
                steps: 100,
                hidden: 128,
                batch: 128,
                lr: 2e-3,
                epochs: if quick { 20 } else { 40 },
            },
        }
    }
}

/// Diffusion: held-out denoising loss and Fréchet distance per generation and policy.
#[derive(Debug, Clone, Serialize)]
pub struct DiffusionRow {
    /// Data policy.
    pub policy: String,
    /// Generation (0 = trained on real points).
    pub g: usize,
    /// Training points of this generation.
    pub train_points: usize,
    /// ‖ε − ε_θ‖²/d on real held-out points (fixed noise).
    pub test_denoising_loss: f64,
    /// Fréchet distance between samples and real held-out points (PCA space).
    pub frechet_distance: f64,
}

/// The diffusion collapse experiment: Fashion-MNIST projected by PCA (fitted on the real training
/// subset, each component scaled to unit variance), a fresh DDPM per generation.
pub fn diffusion_runs(
    data_path: Option<&std::path::Path>,
    sc: &DiffusionScale,
    policies: &[Policy],
    seed: u64,
    quiet: bool,
    files: RunFiles<'_>,
) -> Result<Vec<DiffusionRow>, StudyError> {
    let data = dlt_nn::data::fashion_mnist(data_path)?;
    let train = data.train.subset(sc.train_images, seed);
    let test = data.test.subset(sc.test_images, seed + 1);
    let proj = dlt_nn::diffusion::pca_project(&train, sc.pca_dims, &[&train, &test])?;
    let (ptrain, ptest) = (proj[0].clone(), proj[1].clone());
    let mut rows = vec![];
    files.run_policies(
        "diffusion",
        policies,
        sc.generations,
        seed,
        &format!(
            "{data_path:?}|{}",
            serde_json::to_string(sc).unwrap_or_default()
        ),
        quiet,
        &ptrain,
        || models::DdpmGenerative::new(sc.model, ptest.clone(), seed),
        |policy, _, out| {
            for g in out {
                rows.push(DiffusionRow {
                    policy: policy.as_str().into(),
                    g: g.g,
                    train_points: g.train_size,
                    test_denoising_loss: g.metrics[0].1,
                    frechet_distance: g.metrics[1].1,
                });
            }
        },
    )?;
    Ok(rows)
}

/// Fréchet distance to real test points against the generation, one line per policy.
pub fn diffusion_figure(rows: &[DiffusionRow], sc: &DiffusionScale) -> Figure {
    let fig = Figure::new(
        format!("DDPMs on PCA-{} Fashion-MNIST", sc.pca_dims),
        "generation",
        "Fréchet distance to real test points",
    );
    super::policy_lines(
        fig,
        rows,
        |r| &r.policy,
        |r| (r.g as f64, r.frechet_distance),
    )
}

/// Part 5: diffusion models on PCA-projected Fashion-MNIST, generation after generation.
pub(super) fn diffusion_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<DiffusionRow>, StudyError> {
    // 5. Diffusion on PCA-projected images.
    let mut diffusion = vec![];
    if let Some(dsc) = &cfg.diffusion {
        diffusion = diffusion_runs(
            None,
            dsc,
            &Policy::ALL,
            cfg.seed + 9000,
            cfg.quiet,
            RunFiles {
                stream: Some(&out.path("generations.jsonl")),
                checkpoints: Some(&out.path("checkpoints")),
                resume: cfg.resume,
            },
        )?;
        // The paper's metric is the test loss on real data: the held-out denoising loss (the
        // Fréchet distance of 2000 samples fluctuates by ≈ ±0.2 at this size; it is in the
        // figure and the table).
        let dl = |p: &str, g: usize| {
            diffusion
                .iter()
                .find(|r| r.policy == p && r.g == g)
                .map_or(f64::NAN, |r| r.test_denoising_loss)
        };
        let gl = dsc.generations - 1;
        claims.extend(degradation_claims(
            "diffusion",
            "diffusion experiments",
            &format!(
                "DDPM on PCA-{} Fashion-MNIST, replace: held-out denoising loss on real test points rises from {} to {} over {gl} generations",
                dsc.pca_dims,
                fmt_num(dl("replace", 0)),
                fmt_num(dl("replace", gl))
            ),
            "the held-out denoising loss",
            dl,
            gl,
        ));
        diffusion_figure(&diffusion, dsc).save_svg(&out.path("diffusion.svg"))?;
        figures.push("diffusion.svg".into());
        out.write_records("diffusion.csv", &diffusion)?;
    }
    Ok(diffusion)
}
