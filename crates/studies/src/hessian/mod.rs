//! Study `hessian`: *Gradient Descent Happens in a Tiny Subspace* (Gur-Ari, Roberts, Dyer,
//! arXiv 1812.04754). During training of a classifier with C classes, the gradient g lies
//! mostly in the span of the top-C eigenvectors of the loss Hessian, f_top = |P_top g|²/|g|²
//! ≳ 0.9 after a short transient, and that span changes slowly.
//!
//! Protocol: Fashion-MNIST 4×4-average-pooled to 7×7 and normalised by one global
//! mean and standard deviation; MLP 49-32-32-10 ReLU (P = 2986) in f64; SGD (lr 0.1), momentum
//! 0.9 (lr 0.01) and Adam (lr 1e-3), batch 64, 3000 steps. At checkpoints {0, 10, 20, 50, 100,
//! 200, 300, …} the top-20 Hessian eigenpairs of the loss on a fixed 1000-example training
//! subset come from 60 Lanczos steps with exact R-operator HVPs ([`dlt_nn::mlp`]); f_top for
//! k = 5, 10, 20 with the full gradient on that subset, and for k = 10 with a fresh batch-64
//! gradient; subspace overlaps (1/k)|V(t₁)ᵀV(t₂)|²_F. The random baseline is k/P. Protocol,
//! criteria and reference runs: docs/derivations/hessian.md#protocol.
//! Extension (Song, Ahn, Yun, arXiv 2405.16002): from step 400, train on only the top-10
//! component of the gradient (Dom-SGD) or only the rest (Bulk-SGD), beside plain SGD.
//!
//! Class subsets (abstract: as many top directions as classes): the network trained on the
//! first C ∈ {2, 5, 10} classes, with the outlier count, the outlier gap and f_top(k) per C
//! ([`subsets`], docs/derivations/hessian.md#class-subsets).
//!
//! CNN (docs/derivations/hessian.md#cnn): a LeNet-like network on 28 × 28 images beside the
//! MLP, exact HVPs through convolution and pooling ([`dlt_nn::cnn`]), the same statistics as
//! the class subsets at C = 10 ([`cnn`]).
//!
//! The paper's solvable toy model (§3): softmax regression on a k-class Gaussian mixture, its
//! Hessian and gradient solved at σ² → 0 ([`dlt_theory::gmm_softmax`]) beside exact dense
//! Hessians of simulated runs at small σ ([`toy`], docs/derivations/hessian.md#toy-model).
//!
//! Cost (2 cores): quick ≈ 36 s wall, 63 s CPU (three runs; the class subsets 1–7 s of it; the
//! CNN 22 s of CPU, run beside the MLP runs; the toy model 13 s), full ≈ 3 min (five runs,
//! longer ablation; class subsets 26 s) plus the toy model (13 s) and the full-scale LeNet-5
//! CNN (800 s wall, 292 s CPU on 2 busy cores; README).

mod claims;
mod cnn;
mod figures;
mod subsets;
mod toy;
mod training;

pub use cnn::{CnnRun, CnnScale};
pub use subsets::{SubsetRun, SubsetScale};
pub use toy::{ToyCheckpoint, ToyRun, ToyScale};

use claims::{claims, random_baseline};
use figures::{figures, write_tables};
use training::{ablation, gather, load, train_run};

use crate::claim::Claim;
use crate::output::OutDir;
use crate::progress;
use crate::study::StudyError;
use dlt_nn::mlp::{Batch, Mlp};
use dlt_nn::model::ActKind;
use dlt_nn::optim::Optimizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

const PAPER: &str = "Gur-Ari, Roberts, Dyer (arXiv 1812.04754)";
const SONG: &str = "Song, Ahn, Yun (arXiv 2405.16002)";

/// One training run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSpec {
    /// Run name, e.g. `sgd-seed0`, `momentum`, `adam`.
    pub name: String,
    /// Update rule.
    pub optimizer: Optimizer,
    /// Learning rate.
    pub lr: f64,
    /// Seed of initialisation and batch order.
    pub seed: u64,
}

/// The training runs and their lengths.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// The training runs.
    pub runs: Vec<RunSpec>,
    /// Training steps per run.
    pub steps: usize,
    /// Steps of each arm of the Dom-/Bulk-SGD ablation (0: skip it).
    pub ablation_steps: usize,
    /// Recompute the top subspace every this many ablation steps.
    pub ablation_refresh: usize,
}

impl Scale {
    /// Runs for quick or full mode; `lrs` are the (SGD, momentum, Adam) learning rates.
    pub fn for_mode(quick: bool, seed: u64, lrs: (f64, f64, f64)) -> Self {
        let sgd = |s: u64| RunSpec {
            name: format!("sgd-seed{s}"),
            optimizer: Optimizer::Sgd,
            lr: lrs.0,
            seed: s,
        };
        let mut runs = vec![sgd(seed)];
        if !quick {
            runs.extend([sgd(seed + 1), sgd(seed + 2)]);
        }
        runs.push(RunSpec {
            name: "momentum".into(),
            optimizer: Optimizer::Momentum { beta: 0.9 },
            lr: lrs.1,
            seed,
        });
        runs.push(RunSpec {
            name: "adam".into(),
            optimizer: Optimizer::ADAM,
            lr: lrs.2,
            seed,
        });
        Self {
            runs,
            steps: 3000,
            ablation_steps: if quick { 1000 } else { 2000 },
            ablation_refresh: 10,
        }
    }
}

/// Configuration of the `hessian` study.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Quick mode (one SGD seed instead of three, shorter ablation).
    pub quick: bool,
    /// Base seed.
    pub seed: u64,
    /// Hide progress bars.
    pub quiet: bool,
    /// Fashion-MNIST IDX folder (default: located or fetched).
    pub data: Option<PathBuf>,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Hidden activation.
    pub act: ActKind,
    /// Average-pooling factor of the 28×28 images (4 → 7×7 inputs; 1 keeps 784).
    pub pool: usize,
    /// Mini-batch size of training.
    pub batch: usize,
    /// Training examples whose loss defines the Hessian.
    pub hessian_examples: usize,
    /// Lanczos iterations per checkpoint.
    pub lanczos_steps: usize,
    /// Eigenpairs kept (k ≤ this).
    pub top: usize,
    /// Runs and lengths.
    pub scale: Scale,
    /// The class-subset runs (C ∈ {2, 5, 10} by default).
    pub subsets: SubsetScale,
    /// The LeNet-like CNN beside the MLP (`steps` 0 skips it).
    pub cnn: CnnScale,
    /// The solvable Gaussian-mixture toy model beside its simulation (no class counts: skip).
    pub toy: ToyScale,
}

impl Config {
    /// The configuration for quick or full mode.
    pub fn for_mode(quick: bool, seed: u64, quiet: bool) -> Self {
        Self {
            quick,
            seed,
            quiet,
            data: None,
            hidden: vec![32, 32],
            act: ActKind::Relu,
            pool: 4,
            batch: 64,
            hessian_examples: 1000,
            lanczos_steps: 60,
            top: 20,
            scale: Scale::for_mode(quick, seed, (0.1, 0.01, 1e-3)),
            subsets: SubsetScale::for_mode(quick),
            cnn: CnnScale::for_mode(quick),
            toy: ToyScale::default_scale(),
        }
    }
}

/// What is recorded at one checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// Training step of the checkpoint.
    pub step: usize,
    /// Loss and accuracy on the Hessian subset.
    pub loss: f64,
    /// Accuracy on the Hessian subset, in [0, 1].
    pub accuracy: f64,
    /// f_top for k = 5, 10, 20 (full gradient on the Hessian subset).
    pub ftop5: f64,
    /// f_top for k = 10.
    pub ftop10: f64,
    /// f_top for k = 20.
    pub ftop20: f64,
    /// f_top(k = 10) of a fresh mini-batch gradient.
    pub ftop10_minibatch: f64,
    /// Top Ritz values (largest first).
    pub eigenvalues: Vec<f64>,
    /// max over the top 10 of |Hy − θy| / |λ₁|.
    pub max_residual: f64,
}

/// Overlap of the top-10 Hessian subspaces at two checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct Overlap {
    /// The earlier step.
    pub from: usize,
    /// The later step.
    pub to: usize,
    /// (1/k)|V(from)ᵀV(to)|²_F, in [0, 1] (≈ k/P for random subspaces).
    pub overlap: f64,
}

/// One training run with its checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Run name.
    pub name: String,
    /// Update rule.
    pub optimizer: Optimizer,
    /// Learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// Measurements at each checkpoint step.
    pub checkpoints: Vec<Checkpoint>,
    /// Medians over checkpoints with step ≥ 200.
    pub median_ftop5: f64,
    /// Median of `ftop10` over checkpoints with step ≥ 200.
    pub median_ftop10: f64,
    /// Median of `ftop20` over checkpoints with step ≥ 200.
    pub median_ftop20: f64,
    /// Mean of `ftop10` over checkpoints with step ≥ 200.
    pub mean_ftop10: f64,
    /// Median of `ftop10_minibatch` over checkpoints with step ≥ 200.
    pub median_ftop10_minibatch: f64,
    /// Overlaps of the top-10 subspaces: (200, 400), (200, 1000), (200, last), (1000, last),
    /// where those steps exist.
    pub overlaps: Vec<Overlap>,
    /// Accuracy on the whole (pooled) test set after the last step, in [0, 1].
    pub test_accuracy: f64,
}

/// Losses (on the Hessian subset) of the three ablation arms from a common start.
#[derive(Debug, Clone, Serialize)]
pub struct Ablation {
    /// Training step of the common start (of the first SGD run).
    pub start_step: usize,
    /// (step after the start, SGD, Dom-SGD, Bulk-SGD).
    pub rows: Vec<(usize, f64, f64, f64)>,
    /// Start loss minus the mean loss over the last quarter of the records, per arm.
    pub sgd_drop: f64,
    /// Loss drop of Dom-SGD (update P_top g).
    pub dom_drop: f64,
    /// Loss drop of Bulk-SGD (update (I − P_top) g).
    pub bulk_drop: f64,
}

/// `results.json` of the study.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `"hessian"`.
    pub study: &'static str,
    /// The study configuration.
    pub config: Config,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Number of network parameters P.
    pub params: usize,
    /// Number of classes C.
    pub classes: usize,
    /// k/P for k = 10: f_top of a random 10-dimensional subspace.
    pub random_baseline: f64,
    /// The training runs.
    pub runs: Vec<RunResult>,
    /// The Dom-/Bulk-SGD ablation (None when `ablation_steps` is 0).
    pub ablation: Option<Ablation>,
    /// The class-subset runs: spectra and f_top(k) on the first C classes.
    pub subsets: Vec<SubsetRun>,
    /// Wall-clock seconds of the class-subset runs.
    pub subset_seconds: f64,
    /// The CNN beside the MLP: its spectrum and f_top on all 10 classes (None when skipped).
    pub cnn: Option<CnnRun>,
    /// The toy model's simulated runs, one per (k, σ), with the σ² → 0 theory at each step.
    pub toy: Vec<ToyRun>,
    /// Wall-clock seconds of the toy-model part.
    pub toy_seconds: f64,
    /// The paper's claims with this run's measurements.
    pub claims: Vec<Claim>,
    /// SVG files written beside `results.json`.
    pub figures: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Checkpoint steps: 0, 10, 20, 50, 100, then every 100 up to `steps`.
pub fn checkpoint_steps(steps: usize) -> Vec<usize> {
    let mut s: Vec<usize> = [0, 10, 20, 50, 100]
        .into_iter()
        .filter(|&t| t <= steps)
        .collect();
    s.extend((200..=steps).step_by(100));
    s
}

struct RunOut {
    result: RunResult,
    /// Top-10 subspaces at each checkpoint (for the overlap heat map).
    subspaces: Vec<(usize, Vec<Vec<f64>>)>,
    /// θ at step 400 (the ablation's start), when reached.
    theta_400: Option<Vec<f64>>,
}

/// Run the study into `out`, writing `results.json` last.
pub fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
    let t0 = Instant::now();
    if cfg.top < 20 || cfg.lanczos_steps < cfg.top || cfg.batch == 0 || cfg.hessian_examples == 0 {
        return Err(StudyError::Nn(dlt_nn::NnError::Invalid {
            what: format!(
                "top {} / Lanczos steps {} / batch {} / Hessian examples {}",
                cfg.top, cfg.lanczos_steps, cfg.batch, cfg.hessian_examples
            ),
            fix: "need top ≥ 20 (f_top is reported up to k = 20), Lanczos steps ≥ top, and a \
                  positive batch and Hessian subset"
                .into(),
        }));
    }
    let data = load(cfg)?;
    let (x, y, _, _, d) = &data;
    let classes = 10;
    let mut widths = vec![*d];
    widths.extend(&cfg.hidden);
    widths.push(classes);
    let model = Mlp::new(widths, cfg.act)?;
    let p = model.num_params();
    // The fixed Hessian subset.
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x4e55));
    idx.truncate(cfg.hessian_examples.min(y.len()));
    let (sx, sy) = gather(x, y, *d, &idx);
    let sub = Batch::labels(&sx, &sy);

    let sc = &cfg.scale;
    let bar = progress::bar(
        (sc.runs.len() * sc.steps) as u64,
        "hessian: training",
        cfg.quiet,
    );
    // The CNN part is independent of the MLP runs: it runs beside them on a spare core.
    let (outs, cnn) = rayon::join(
        || {
            sc.runs
                .par_iter()
                .map(|r| train_run(r, &model, &data, sub, cfg, &bar))
                .collect::<Result<Vec<RunOut>, _>>()
        },
        || cnn::cnn_run(cfg),
    );
    let (outs, cnn) = (outs?, cnn?);
    bar.finish_and_clear();
    let abl = match (&outs[0].theta_400, sc.ablation_steps) {
        (Some(th), n) if n > 0 => {
            let lr = sc.runs[0].lr;
            Some(ablation(&model, th, &data, sub, cfg, lr, cfg.seed)?)
        }
        _ => None,
    };
    let t_sub = Instant::now();
    let subsets = if cfg.subsets.class_counts.is_empty() {
        vec![]
    } else {
        subsets::class_subsets(cfg, &data, sc.runs[0].lr)?
    };
    let subset_seconds = t_sub.elapsed().as_secs_f64();
    let t_toy = Instant::now();
    let toy = toy::toy_runs(cfg)?;
    let toy_seconds = t_toy.elapsed().as_secs_f64();
    let random_baseline = random_baseline(p);

    write_tables(out, &outs)?;

    let mut figures = figures(out, &outs, abl.as_ref(), p)?;
    figures.extend(figures::subset_figures(out, &subsets)?);
    if let Some(c) = &cnn {
        figures.extend(figures::cnn_figures(out, c, &subsets)?);
    }
    figures.extend(figures::toy_figures(out, &toy, cfg.toy.lr)?);

    let runs: Vec<&RunResult> = outs.iter().map(|o| &o.result).collect();
    let mut claims = claims(cfg, &runs, abl.as_ref());
    claims.extend(claims::subset_claims(&subsets));
    if let Some(c) = &cnn {
        claims.extend(claims::cnn_claims(c));
    }
    claims.extend(claims::toy_claims(&toy));
    let results = Results {
        study: "hessian",
        config: cfg.clone(),
        seconds: t0.elapsed().as_secs_f64(),
        params: p,
        classes,
        random_baseline,
        runs: runs.into_iter().cloned().collect(),
        ablation: abl,
        subsets,
        subset_seconds,
        cnn,
        toy,
        toy_seconds,
        claims,
        figures,
    };
    out.write_json("results.json", &results)?;
    Ok(results)
}

/// The `hessian` study ([`crate::study::Study`]).
pub struct Hessian;

impl crate::study::Study for Hessian {
    const NAME: &'static str = "hessian";
    const TITLE: &'static str = "Gradient descent happens in a tiny subspace";
    const PAPER: &'static str = "Gur-Ari, Roberts, Dyer (arXiv 1812.04754)";
    const ABOUT: &'static str = "During training the gradient lies mostly in the span of the Hessian's top eigenvectors (about as many as classes), a subspace that settles early; measured with exact Hessian-vector products and Lanczos on Fashion-MNIST for SGD, momentum and Adam, with the Dom-/Bulk-SGD ablation, the outlier count on 2, 5 and 10 classes, a CNN beside the MLP, and the paper's solvable Gaussian-mixture model beside its simulation.";
    type Config = Config;
    type Results = Results;
    fn config(quick: bool, seed: u64, quiet: bool) -> Config {
        Config::for_mode(quick, seed, quiet)
    }
    fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
        run(cfg, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_follow_the_protocol() {
        let s = checkpoint_steps(3000);
        assert_eq!(&s[..6], &[0, 10, 20, 50, 100, 200]);
        assert_eq!(s.iter().filter(|&&t| t >= 200).count(), 29);
        assert_eq!(*s.last().unwrap(), 3000);
        assert_eq!(checkpoint_steps(15), vec![0, 10]);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
