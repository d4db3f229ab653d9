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
    Simulate {
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
    },
    /// Loss(N, P) table (theory and simulation), fitted exponents and figures.
    Sweep {
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
    },
    /// Spectrum of the feature second-moment matrix E[φφᵀ]: nonlinear features extend the power law past M.
    Spectrum {
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
    },
    /// The whole `scaling` study (what `dlt reproduce` runs).
    Study {
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
        #[arg(long)]
        json: bool,
    },
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
        ScalingCmd::Simulate {
            model,
            n,
            p,
            features,
            seeds,
            seed,
            test,
        } => {
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
        }
        ScalingCmd::Sweep {
            model,
            n_grid,
            p_grid,
            seeds,
            seed,
            out,
        } => {
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
            let mut rows = vec![];
            for (i, &n) in n_grid.iter().enumerate() {
                for (j, &p) in p_grid.iter().enumerate() {
                    let th = theory_loss(&md, n, p, model.ridge).ok();
                    let sim = simulate(
                        &md,
                        n,
                        p,
                        model.ridge,
                        Features::Linear,
                        seeds,
                        seed + (i * 1000 + j) as u64,
                        0,
                    );
                    let (sl, se, med) = match &sim {
                        Ok(s) => (Some(s.loss), Some(s.loss_se), Some(s.median)),
                        Err(_) => (None, None, None),
                    };
                    rows.push(json!({"n": n, "p": p, "theory": th.map(|t| t.loss), "sim": sl, "sim_se": se, "sim_median": med}));
                }
            }
            let fit = |fixed_is_p: bool| -> Vec<serde_json::Value> {
                let (outer, inner) = if fixed_is_p {
                    (&p_grid, &n_grid)
                } else {
                    (&n_grid, &p_grid)
                };
                outer
                    .iter()
                    .filter_map(|&o| {
                        let pts: Vec<(f64, f64, f64)> = inner
                            .iter()
                            .filter_map(|&x| {
                                let (n, p) = if fixed_is_p { (x, o) } else { (o, x) };
                                let r = rows.iter().find(|r| r["n"] == n && r["p"] == p)?;
                                Some((x as f64, r["sim"].as_f64()?, r["sim_se"].as_f64()?))
                            })
                            .filter(|p| p.1 > 0.0)
                            .collect();
                        (pts.len() >= 2).then(|| {
                            let (s, se) = dlt_theory::scaling::fit_exponent(&pts.iter().map(|p| p.0).collect::<Vec<_>>(), &pts.iter().map(|p| p.1).collect::<Vec<_>>(), &pts.iter().map(|p| p.2).collect::<Vec<_>>());
                            json!({if fixed_is_p {"p"} else {"n"}: o, "exponent": -s, "ci95": [-s - 1.96 * se, -s + 1.96 * se]})
                        })
                    })
                    .collect()
            };
            let v = json!({"alpha": model.alpha, "m": model.m, "ridge": model.ridge, "noise": model.noise, "seeds": seeds, "table": rows, "exponents_vs_n": fit(true), "exponents_vs_p": fit(false)});
            if let Some(out) = out {
                let dir = OutDir::create(&out)?;
                let csv: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        ["n", "p", "theory", "sim", "sim_se", "sim_median"]
                            .iter()
                            .map(|k| r[*k].to_string().replace("null", ""))
                            .collect()
                    })
                    .collect();
                dir.write_csv(
                    "table.csv",
                    &["n", "p", "theory", "sim", "sim_se", "sim_median"],
                    &csv,
                )?;
                use dlt_studies::plot::{Figure, Heatmap, Series};
                // Loss against one resource, one theory line and one set of points per value of
                // the other resource.
                let against = |x: &str, other: &str, others: &[usize], file: &str| {
                    let mut fig = Figure::new(
                        format!(
                            "Loss vs {} (α = {}, M = {})",
                            x.to_uppercase(),
                            model.alpha,
                            model.m
                        ),
                        x.to_uppercase(),
                        "loss",
                    )
                    .log_log();
                    for &o in others {
                        let sel: Vec<&serde_json::Value> =
                            rows.iter().filter(|r| r[other] == o).collect();
                        let pts = |key: &str| {
                            sel.iter()
                                .filter_map(|r| Some((r[x].as_f64()?, r[key].as_f64()?)))
                                .collect::<Vec<_>>()
                        };
                        let tag = format!("{}={o}", other.to_uppercase());
                        fig = fig.with(Series::line(format!("theory {tag}"), pts("theory")));
                        fig = fig.with(Series::points(
                            format!("sim {tag}"),
                            pts("sim"),
                            Some(sel.iter().filter_map(|r| r["sim_se"].as_f64()).collect()),
                        ));
                    }
                    fig.save_svg(&dir.path(file))
                };
                against("n", "p", &p_grid, "loss_vs_n.svg")?;
                against("p", "n", &n_grid, "loss_vs_p.svg")?;
                let z = p_grid
                    .iter()
                    .map(|&p| {
                        n_grid
                            .iter()
                            .map(|&n| {
                                rows.iter()
                                    .find(|r| r["n"] == n && r["p"] == p)
                                    .and_then(|r| r["sim"].as_f64())
                                    .unwrap_or(f64::NAN)
                            })
                            .collect()
                    })
                    .collect();
                Heatmap {
                    title: "Simulated loss; outlined: N = P".into(),
                    x_label: "N".into(),
                    y_label: "P".into(),
                    xs: n_grid.iter().map(|&v| v as f64).collect(),
                    ys: p_grid.iter().map(|&v| v as f64).collect(),
                    z,
                    log_z: true,
                    diagonal: true,
                }
                .save_svg(&dir.path("heatmap.svg"))?;
                dir.write_json("results.json", &v)?;
            }
            if model.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in &rows {
                    println!(
                        "N={:<6} P={:<6} theory {:<12} sim {}",
                        r["n"], r["p"], r["theory"], r["sim"]
                    );
                }
            }
        }
        ScalingCmd::Spectrum {
            alpha,
            m,
            n,
            features,
            samples,
            seed,
            json: as_json,
            out,
        } => {
            {
                use crate::limits::{at_least, check_memory, prod};
                at_least("--m", m, 1)?;
                at_least("--n", n, 1)?;
                let samples_used = if features == Features::Tanh {
                    samples
                } else {
                    0
                };
                check_memory(
                    "scaling spectrum",
                    &[
                        ("--m", m.to_string(), prod(&[n, m, 3 * 8])),
                        ("--n", n.to_string(), prod(&[n, n, 3 * 8])),
                        (
                            "--samples",
                            samples.to_string(),
                            prod(&[samples_used, m.saturating_add(n), 8]),
                        ),
                    ],
                )?;
            }
            let md = ScalingModel::new(alpha, m);
            let ev = dlt_theory::scaling::feature_spectrum(&md, n, features, samples, seed)?;
            let rank = ev.iter().filter(|&&v| v > 1e-10 * ev[0]).count();
            let ranges = [(5usize, 100usize), (250, 600)];
            let slopes: Vec<_> = ranges.iter().filter(|r| r.1 <= n).map(|&(a, b)| json!({"ranks": [a, b], "slope": dlt_theory::scaling::spectrum_slope(&ev, a, b)})).collect();
            let v = json!({"alpha": alpha, "m": m, "n": n, "features": features, "rank": rank, "slopes": slopes, "eigenvalues": ev});
            if let Some(o) = out {
                let dir = OutDir::create(&o)?;
                dlt_studies::plot::Figure::new(
                    format!("Feature spectrum ({features:?}, α = {alpha}, M = {m}, N = {n})"),
                    "rank",
                    "eigenvalue",
                )
                .log_log()
                .with(dlt_studies::plot::Series::line(
                    "E[φφᵀ]",
                    ev.iter()
                        .enumerate()
                        .filter(|(_, &v)| v > 1e-14 * ev[0])
                        .map(|(k, &v)| ((k + 1) as f64, v))
                        .collect(),
                ))
                .save_svg(&dir.path("spectrum.svg"))?;
                dir.write_json("results.json", &v)?;
            }
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("rank {rank} of {n}");
                for sl in &slopes {
                    println!(
                        "slope over ranks {}: {:.3}",
                        sl["ranks"],
                        sl["slope"].as_f64().unwrap_or(f64::NAN)
                    );
                }
            }
        }
        ScalingCmd::Study {
            out,
            quick,
            seed,
            seeds,
            m,
            json,
        } => {
            use dlt_studies::scaling::{run, Config, Scale};
            let mut scale = Scale::for_mode(quick);
            if let Some(s) = seeds {
                anyhow::ensure!(s >= 2, "--seeds: need at least 2 for a standard error");
                scale.seeds = s;
            }
            if let Some(m) = m {
                anyhow::ensure!(m >= 1, "--m: must be ≥ 1");
                scale.m = m;
            }
            let dir = OutDir::create(&out)?;
            let r = run(
                &Config {
                    quick,
                    seed,
                    quiet: json,
                    scale,
                },
                &dir,
            )?;
            crate::print_study(&r, &r.claims, json, &dir)?;
        }
    }
    Ok(())
}
