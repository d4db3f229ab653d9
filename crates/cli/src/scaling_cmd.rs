//! `dlt scaling …`: the solvable model of neural scaling laws.

use anyhow::Result;
use clap::{Args, Subcommand};
use dlt_studies::output::OutDir;
use dlt_theory::scaling::{simulate, theory_loss, Features, ScalingModel};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Spectrum exponent: λ_I = λ₊ I^−(1+α).
    #[arg(long, allow_negative_numbers = true)]
    alpha: f64,
    /// Latent dimension M (extent of the power law).
    #[arg(long)]
    m: usize,
    /// Label-noise standard deviation σ_ε.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    noise: f64,
    /// Ridge γ (0: minimum-norm least squares).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    ridge: f64,
    #[arg(long)]
    json: bool,
}

impl ModelArgs {
    fn model(&self) -> ScalingModel {
        ScalingModel {
            noise: self.noise,
            ..ScalingModel::new(self.alpha, self.m)
        }
    }
}

#[derive(Subcommand)]
pub enum ScalingCmd {
    /// Expected test loss from the deterministic equivalent: {"loss", "kappa"}.
    Theory {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        n: usize,
        #[arg(long)]
        p: usize,
    },
    /// Simulated population loss of the fitted model over seeds: {"loss", "loss_se", "median"}.
    Simulate(SimulateArgs),
    /// Loss(N, P) table (theory and simulation), fitted exponents and figures.
    Sweep(SweepArgs),
    /// Spectrum of the feature second-moment matrix E[φφᵀ]: nonlinear features extend the power law past M.
    Spectrum(SpectrumArgs),
    /// The whole `scaling` study (what `dlt reproduce` runs).
    Study(StudyArgs),
}

#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    n: usize,
    #[arg(long)]
    p: usize,
    /// linear, relu or tanh.
    #[arg(long, default_value = "linear")]
    features: Features,
    #[arg(long, default_value_t = 10)]
    seeds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out samples for the loss of nonlinear features.
    #[arg(long, default_value_t = 4000)]
    test: usize,
    /// Write results.json (the setting, the simulated loss and, for linear features, the
    /// theory) into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256,512")]
    n_grid: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256,512")]
    p_grid: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    seeds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct SpectrumArgs {
    #[arg(long, allow_negative_numbers = true)]
    alpha: f64,
    #[arg(long)]
    m: usize,
    #[arg(long)]
    n: usize,
    #[arg(long, default_value = "relu")]
    features: Features,
    /// Monte Carlo samples (tanh only; linear and ReLU are exact).
    #[arg(long, default_value_t = 20000)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct StudyArgs {
    #[arg(long, default_value = "out/scaling")]
    out: PathBuf,
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seeds per simulated point.
    #[arg(long)]
    seeds: Option<usize>,
    /// Latent dimension M.
    #[arg(long)]
    m: Option<usize>,
    /// Preactivation variance q = σ_u²Σλ/M of the nonlinear-features section (1: tanh is
    /// genuinely nonlinear).
    #[arg(long)]
    feature_scale: Option<f64>,
    /// Fashion-MNIST IDX folder (default: the cache; `dlt data fetch fashion-mnist`).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Sizes of one simulated point, checked before any work (issue 12): M, N, P ≥ 1, and the
/// matrices of the seeds that run at once (the (N+1)×M Gram sampler or the P×M design, the
/// P×N features, an N×N or P×P system, the held-out set) must fit in memory.
fn check_point(m: usize, n: usize, p: usize, seeds: usize, test: usize) -> Result<()> {
    check_point_as(["--n", "--p"], m, n, p, seeds, test)
}

/// [`check_point`] naming N and P by the given flags (`--n-grid`, `--p-grid` for a sweep).
fn check_point_as(
    [nf, pf]: [&str; 2],
    m: usize,
    n: usize,
    p: usize,
    seeds: usize,
    test: usize,
) -> Result<()> {
    use crate::limits::{at_least, check_memory, prod, sum};
    at_least("--m", m, 1)?;
    at_least(nf, n, 1)?;
    at_least(pf, p, 1)?;
    at_least("--seeds", seeds, 1)?;
    let at_once = std::thread::available_parallelism()
        .map_or(1, |v| v.get())
        .min(seeds);
    let each = |t: Option<u64>| t.and_then(|b| b.checked_mul(at_once as u64));
    check_memory(
        "scaling simulate",
        &[
            (
                "--m",
                m.to_string(),
                each(prod(&[n.saturating_add(1), m, 2 * 8])),
            ),
            (pf, p.to_string(), each(prod(&[p, m, 8]))),
            (
                nf,
                n.to_string(),
                each(sum(&[
                    prod(&[p, n, 2 * 8]),
                    prod(&[n.min(p), n.min(p), 2 * 8]),
                ])),
            ),
            (
                "--test",
                test.to_string(),
                each(prod(&[test, m.saturating_add(n), 8])),
            ),
            ("--seeds", seeds.to_string(), prod(&[seeds, 3 * 8])),
        ],
    )
}

pub fn run(cmd: ScalingCmd) -> Result<()> {
    match cmd {
        ScalingCmd::Theory { model, n, p } => {
            use crate::limits::{at_least, check_memory, prod};
            at_least("--m", model.m, 1)?;
            at_least("--n", n, 1)?;
            at_least("--p", p, 1)?;
            check_memory(
                "scaling theory",
                &[("--m", model.m.to_string(), prod(&[model.m, 8]))],
            )?;
            let t = theory_loss(&model.model(), n, p, model.ridge)?;
            if model.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"loss": t.loss, "kappa": t.kappa}))?
                );
            } else {
                println!("loss {:e}  kappa {:e}", t.loss, t.kappa);
            }
        }
        ScalingCmd::Simulate(a) => run_simulate(a)?,
        ScalingCmd::Sweep(a) => run_sweep(a)?,
        ScalingCmd::Spectrum(a) => run_spectrum(a)?,
        ScalingCmd::Study(a) => run_study(a)?,
    }
    Ok(())
}

/// `dlt scaling simulate`: check the sizes, simulate one (N, P), print.
fn run_simulate(a: SimulateArgs) -> Result<()> {
    let SimulateArgs {
        model,
        n,
        p,
        features,
        seeds,
        seed,
        test,
        out,
    } = a;
    check_point(model.m, n, p, seeds, test)?;
    anyhow::ensure!(
        features == Features::Linear || test > 0,
        "--test: nonlinear features need held-out samples"
    );
    let s = simulate(
        &model.model(),
        n,
        p,
        model.ridge,
        features,
        seeds,
        seed,
        test,
    )?;
    if let Some(out) = out {
        // The deterministic-equivalent loss (docs/derivations/scaling.md#deterministic-equivalent)
        // for linear features; null elsewhere and at N = P without ridge, where it is infinite.
        let theory = match features {
            Features::Linear => theory_loss(&model.model(), n, p, model.ridge)
                .ok()
                .map(|t| t.loss),
            _ => None,
        };
        OutDir::create(&out)?.write_json(
            "results.json",
            &json!({"alpha": model.alpha, "m": model.m, "noise": model.noise, "ridge": model.ridge,
                "n": n, "p": p, "features": features, "seeds": seeds, "seed": seed,
                "test": test, "loss": s.loss, "loss_se": s.loss_se, "median": s.median, "theory": theory}),
        )?;
    }
    if model.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"loss": s.loss, "loss_se": s.loss_se, "median": s.median, "seeds": seeds})
            )?
        );
    } else {
        println!(
            "loss {:e} ± {:e} (median {:e}, {seeds} seeds)",
            s.loss, s.loss_se, s.median
        );
    }
    Ok(())
}

/// `dlt scaling sweep`: check the grids, compute with [`dlt_studies::scaling::sweep`], write
/// via [`dlt_studies::scaling::write_sweep`], print.
fn run_sweep(a: SweepArgs) -> Result<()> {
    let SweepArgs {
        model,
        n_grid,
        p_grid,
        seeds,
        seed,
        out,
    } = a;
    let md = model.model();
    anyhow::ensure!(
        !n_grid.is_empty() && !p_grid.is_empty(),
        "--n-grid/--p-grid: give at least one value"
    );
    for (flag, grid) in [("--n-grid", &n_grid), ("--p-grid", &p_grid)] {
        if let Some(v) = grid.iter().find(|&&v| v == 0) {
            anyhow::bail!("{flag}: every value must be ≥ 1, got {v}");
        }
    }
    check_point_as(
        ["--n-grid", "--p-grid"],
        model.m,
        n_grid.iter().copied().max().unwrap_or(1),
        p_grid.iter().copied().max().unwrap_or(1),
        seeds,
        0,
    )?;
    let v = dlt_studies::scaling::sweep(&md, model.ridge, &n_grid, &p_grid, seeds, seed);
    if let Some(out) = out {
        let dir = OutDir::create(&out)?;
        dlt_studies::scaling::write_sweep(&dir, &md, &n_grid, &p_grid, &v)?;
    }
    if model.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in v["table"].as_array().into_iter().flatten() {
            println!(
                "N={:<6} P={:<6} theory {:<12} sim {}",
                r["n"], r["p"], r["theory"], r["sim"]
            );
        }
    }
    Ok(())
}

/// `dlt scaling spectrum`: check the sizes, compute with [`dlt_studies::scaling::spectrum`],
/// write, print.
fn run_spectrum(a: SpectrumArgs) -> Result<()> {
    let SpectrumArgs {
        alpha,
        m,
        n,
        features,
        samples,
        seed,
        json: as_json,
        out,
    } = a;
    crate::limits::scaling_spectrum(m, n, samples, features == Features::Tanh)?;
    let (ev, v) = dlt_studies::scaling::spectrum(alpha, m, n, features, samples, seed)?;
    if let Some(o) = out {
        let dir = OutDir::create(&o)?;
        dlt_studies::scaling::spectrum_figure(&ev, alpha, m, n, features)
            .save_svg(&dir.path("spectrum.svg"))?;
        dir.write_json("results.json", &v)?;
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("rank {} of {n}", v["rank"]);
        for sl in v["slopes"].as_array().into_iter().flatten() {
            println!(
                "slope over ranks {}: {:.3}",
                sl["ranks"],
                sl["slope"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// `dlt scaling study`: the whole study ([`dlt_studies::scaling::run`]).
fn run_study(a: StudyArgs) -> Result<()> {
    let StudyArgs {
        out,
        quick,
        seed,
        seeds,
        m,
        feature_scale,
        data,
        json,
    } = a;
    use dlt_studies::scaling::{run, Config, Scale};
    let mut scale = Scale::for_mode(quick);
    if let Some(s) = seeds {
        anyhow::ensure!(s >= 2, "--seeds {s}: need at least 2 for a standard error");
        scale.seeds = s;
    }
    if let Some(m) = m {
        scale.m = m;
    }
    if let Some(q) = feature_scale {
        anyhow::ensure!(
            q > 0.0 && q.is_finite(),
            "--feature-scale {q}: the preactivation variance must be finite and > 0"
        );
        scale.nonlinear.feature_scale = q;
    }
    // The largest point of the (N, P) table, checked like `scaling simulate` (memory of the
    // seeds that run at once), and the table's arithmetic (about N·P·M + min(N, P)³ per seed
    // and point) at most MAX_WORK.
    {
        let big = scale.grid.iter().copied().max().unwrap_or(1);
        check_point(scale.m, big, big, scale.seeds, 0).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string().replace("scaling simulate", "scaling study")
            )
        })?;
        let points = scale.grid.len().pow(2) * scale.alphas.len().max(1);
        let per = crate::limits::sum(&[
            crate::limits::prod(&[big, big, scale.m]),
            crate::limits::prod(&[big, big, big]),
        ]);
        let (f, v) = crate::limits::larger(("--seeds", scale.seeds), ("--m", scale.m));
        crate::limits::check_work(
            "scaling study",
            f,
            &v,
            per.and_then(|p| p.checked_mul(crate::limits::prod(&[points, scale.seeds])?)),
        )?;
    }
    let dir = OutDir::create(&out)?;
    let r = run(
        &Config {
            quick,
            seed,
            quiet: json,
            scale,
            data,
        },
        &dir,
    )?;
    crate::print_study(&r, &r.claims, json, &dir)?;
    Ok(())
}
