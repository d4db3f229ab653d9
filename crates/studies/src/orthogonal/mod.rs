//! Study `orthogonal`: *Feature Learning and Generalization in Deep Networks with Orthogonal
//! Weights* (Day, Kahn, Roberts, arXiv 2310.07765).
//!
//! 1. Finite-width statistics vs depth, Gaussian vs Haar weights, tanh at criticality: V/K²,
//!    A/Θ², B/Θ², D/(KΘ), F/(KΘ) from the full-NTK Monte Carlo in the paper's Fig. 3 setting
//!    (n = 20, depth 30, λ_b = 1/l, λ_W = 1), with the recursions of `dlt-theory`; V/K² at a
//!    larger width from the Gram sampler; ReLU and linear for contrast.
//!    The same figure for the dNTK/ddNTK correlators P/Θ², Q/Θ², RK/Θ³, SK/Θ³, TK/Θ³, UK/Θ³
//!    (PDLT ch. 11, ∞) from their exact forward equations, Gaussian beside its recursion, Haar
//!    without one (not derived).
//! 2. The empirical NTK of real candle MLPs at init, mean and spread across seeds vs depth, for
//!    both inits, beside the Monte Carlo of the theory engine (the two must agree).
//! 3. Training: deep tanh MLPs by full-batch GD (MSE, NTK learning rates) on a standardised
//!    Fashion-MNIST subset (|x|²/n₀ = 1), Haar vs Gaussian at
//!    criticality, several seeds: train loss and test accuracy vs step, and final test accuracy
//!    vs L/n. What we see is reported as it is, including where orthogonal does not win.
//!
//! Cost (2 cores): quick ≈ 2 min, full ≈ 25 min (dominated by training).

mod dntk;
mod ntk;
mod statistics;
mod training;

use dntk::dntk_part;
use ntk::candle_ntk_part;
use statistics::{fig3_part, relu_linear_part, wide_part};
use training::training_part;

use crate::claim::Claim;
use crate::output::OutDir;
use crate::study::StudyError;
use dlt_theory::Init;
use serde::Serialize;
use std::time::Instant;

const PAPER: &str = "Day, Kahn, Roberts (arXiv 2310.07765)";

/// Configuration of the `orthogonal` study.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Quick (laptop-scale) sizes instead of the full ones.
    pub quick: bool,
    /// Base seed; each ensemble and training run offsets it.
    pub seed: u64,
    /// Hide progress bars.
    pub quiet: bool,
    /// Folder with the Fashion-MNIST IDX files (None: system, cache, then fetch).
    pub data_path: Option<std::path::PathBuf>,
    /// Skip the training part (it needs Fashion-MNIST).
    pub skip_training: bool,
    /// Ensemble and training sizes.
    pub scale: Scale,
}

/// Sizes for one mode (every field is reachable from `dlt orthogonal` flags).
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// Width n of the Fig. 3 tanh ensembles (full NTK, both inits).
    pub fig3_width: usize,
    /// Depth of the Fig. 3 ensembles.
    pub fig3_depth: usize,
    /// Networks per Fig. 3 ensemble.
    pub fig3_networks: usize,
    /// Width n of the dNTK/ddNTK ensembles (both inits; ≈ 12 n⁵ flops per layer and network).
    pub dntk_width: usize,
    /// Depth of the dNTK/ddNTK ensembles.
    pub dntk_depth: usize,
    /// Networks per dNTK/ddNTK ensemble.
    pub dntk_networks: usize,
    /// Width n of the wide tanh vertex ensembles (also run at 2n), and of the ReLU/linear runs.
    pub wide_width: usize,
    /// Depth of the wide tanh vertex ensembles.
    pub wide_depth: usize,
    /// Networks per wide ensemble.
    pub wide_networks: usize,
    /// Width of the candle MLPs whose empirical NTK is measured.
    pub ntk_width: usize,
    /// Depths of those MLPs.
    pub ntk_depths: Vec<usize>,
    /// Candle MLPs drawn per (init, depth).
    pub ntk_seeds: usize,
    /// Hidden width of the trained tanh MLPs.
    pub train_width: usize,
    /// Depths (weight layers) of the trained MLPs.
    pub train_depths: Vec<usize>,
    /// Seeds per (depth, init) in training.
    pub train_seeds: usize,
    /// Fashion-MNIST training examples (a seeded subset).
    pub train_examples: usize,
    /// Full-batch GD steps per training run.
    pub train_steps: usize,
    /// Global learning rate η (with NTK scaling λ_b/l, λ_W).
    pub train_lr: f64,
}

impl Scale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        if quick {
            Self {
                fig3_width: 20,
                fig3_depth: 30,
                fig3_networks: 4000,
                // ≈ 8 s per init on two loaded cores; the Gaussian SE of P/Θ² at l = n/2 ≈ 3 %.
                dntk_width: 10,
                dntk_depth: 20,
                dntk_networks: 1000,
                wide_width: 128,
                wide_depth: 64,
                wide_networks: 10_000,
                ntk_width: 24,
                ntk_depths: vec![2, 4, 8, 16],
                // 96 seeds keep the combined SE of the deepest Gaussian NTK under 4.5 % (48: 5.6 %).
                ntk_seeds: 96,
                train_width: 32,
                train_depths: vec![8, 16, 32],
                train_seeds: 4,
                train_examples: 512,
                train_steps: 150,
                train_lr: 1.0,
            }
        } else {
            Self {
                fig3_width: 20,
                fig3_depth: 30,
                fig3_networks: 40_000,
                dntk_width: 12,
                dntk_depth: 24,
                dntk_networks: 4000,
                wide_width: 128,
                wide_depth: 128,
                wide_networks: 40_000,
                ntk_width: 32,
                ntk_depths: vec![2, 4, 8, 16, 32],
                ntk_seeds: 200,
                train_width: 64,
                train_depths: vec![16, 32, 64, 128],
                train_seeds: 4,
                train_examples: 1024,
                train_steps: 500,
                train_lr: 1.0,
            }
        }
    }
}

/// One Monte Carlo statistic at one layer, against the recursion.
#[derive(Debug, Clone, Serialize)]
pub struct StatRow {
    /// Weight ensemble, `gaussian` or `orthogonal`.
    pub init: String,
    /// Layer l (1-based).
    pub l: usize,
    /// Width n.
    pub n: usize,
    /// Statistic, e.g. `V_over_K2`, `A_over_theta2` (`relu_`/`linear_` prefixes in `relu_linear`).
    pub stat: String,
    /// Monte Carlo estimate.
    pub mc: f64,
    /// Its batch-means standard error.
    pub se: f64,
    /// The 1/n recursion (None where not derived: A, B, D, F for Haar weights).
    pub theory: Option<f64>,
}

/// Mean NTK trace of candle MLPs at initialisation, against Monte Carlo and theory.
#[derive(Debug, Clone, Serialize)]
pub struct NtkRow {
    /// Weight ensemble, `gaussian` or `orthogonal`.
    pub init: String,
    /// Depth L (weight layers).
    pub depth: usize,
    /// Width n of every layer.
    pub n: usize,
    /// Mean over seeds of tr Ĥ/n for real candle MLPs.
    pub candle_mean: f64,
    /// Standard error of `candle_mean`.
    pub candle_se: f64,
    /// Standard deviation of tr Ĥ/n across seeds.
    pub candle_sd: f64,
    /// The same mean from the theory engine's Monte Carlo (exact forward equation).
    pub mc_mean: f64,
    /// Standard error of `mc_mean`.
    pub mc_se: f64,
    /// The recursion's Θ^(L).
    pub theory: f64,
}

/// One training run of a deep tanh MLP on Fashion-MNIST by full-batch GD.
#[derive(Debug, Clone, Serialize)]
pub struct TrainRow {
    /// Weight ensemble, `gaussian` or `orthogonal`.
    pub init: String,
    /// Depth (weight layers).
    pub depth: usize,
    /// Hidden width.
    pub width: usize,
    /// Seed of this run.
    pub seed: u64,
    /// MSE on the whole training subset after the last step (NaN if training diverged).
    pub final_train_loss: f64,
    /// Test accuracy in [0, 1] on 2000 test images (NaN if training diverged).
    pub test_accuracy: f64,
    /// MSE on the test subset (NaN if training diverged).
    pub test_loss: f64,
    /// The step at which the loss stopped being finite, if it did (then the run has no
    /// accuracy: divergence is its own outcome, not a chance-level score).
    pub diverged_at: Option<usize>,
    /// Wall-clock seconds of the run, diverged or not.
    pub seconds: f64,
    /// (step, train loss) along the run.
    pub curve: Vec<(usize, f64)>,
}

/// `results.json` of the study.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `"orthogonal"`.
    pub study: &'static str,
    /// The study configuration.
    pub config: Config,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Fig. 3 statistics (V, A, B, D, F ratios) of narrow tanh ensembles, both inits.
    pub fig3: Vec<StatRow>,
    /// dNTK/ddNTK correlators (P_over_theta2 … UK_over_theta3) of tanh ensembles, both inits.
    pub dntk: Vec<StatRow>,
    /// V/K² of wide tanh ensembles, both inits.
    pub wide: Vec<StatRow>,
    /// V/K² of ReLU and linear ensembles (depth 20), both inits.
    pub relu_linear: Vec<StatRow>,
    /// Empirical NTK of candle MLPs per init and depth.
    pub ntk: Vec<NtkRow>,
    /// Training runs (empty with `skip_training`).
    pub training: Vec<TrainRow>,
    /// The paper's claims with this run's measurements.
    pub claims: Vec<Claim>,
    /// SVG files written beside `results.json`.
    pub figures: Vec<String>,
}

fn init_name(i: Init) -> &'static str {
    match i {
        Init::Gaussian => "gaussian",
        Init::Orthogonal => "orthogonal",
    }
}

fn find(rows: &[StatRow], init: &str, stat: &str, l: usize) -> Option<StatRow> {
    rows.iter()
        .find(|r| r.init == init && r.stat == stat && r.l == l)
        .cloned()
}

/// Run the study, writing results.json, CSV and SVG figures into `out`.
pub fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
    let t0 = Instant::now();
    let mut claims = vec![];
    let mut figures = vec![];

    let fig3 = fig3_part(cfg, out, &mut claims, &mut figures)?;

    let dntk = dntk_part(cfg, out, &mut claims, &mut figures)?;

    let wide = wide_part(cfg, out, &mut claims, &mut figures)?;

    let relu_linear = relu_linear_part(cfg, out, &mut claims, &mut figures)?;

    let ntk = candle_ntk_part(cfg, out, &mut claims, &mut figures)?;

    let training = training_part(cfg, out, &mut claims, &mut figures)?;

    out.write_records("fig3.csv", &fig3)?;
    out.write_records("vertex_wide.csv", &wide)?;
    out.write_records("relu_linear.csv", &relu_linear)?;
    out.write_records("ntk_candle.csv", &ntk)?;
    let results = Results {
        study: "orthogonal",
        config: cfg.clone(),
        seconds: t0.elapsed().as_secs_f64(),
        fig3,
        dntk,
        wide,
        relu_linear,
        ntk,
        training,
        claims,
        figures,
    };
    out.write_json("results.json", &results)?;
    Ok(results)
}

fn to_study(e: dlt_nn::NnError) -> StudyError {
    StudyError::Nn(e)
}

/// The `orthogonal` study ([`crate::study::Study`]).
pub struct Orthogonal;

impl crate::study::Study for Orthogonal {
    const NAME: &'static str = "orthogonal";
    const TITLE: &'static str =
        "Feature learning and generalization in deep networks with orthogonal weights";
    const PAPER: &'static str = "Day, Kahn, Roberts (arXiv 2310.07765)";
    const ABOUT: &'static str = "Orthogonal (Haar) against Gaussian initialisation: the four-point vertex and NTK fluctuations that grow with depth for Gaussian weights and stay small for orthogonal ones, measured on real networks, and Fashion-MNIST training across depth.";
    type Config = Config;
    type Results = Results;
    fn config(quick: bool, seed: u64, quiet: bool) -> Config {
        Config {
            quick,
            seed,
            quiet,
            data_path: None,
            skip_training: false,
            scale: Scale::for_mode(quick),
        }
    }
    fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
        run(cfg, out)
    }
}
