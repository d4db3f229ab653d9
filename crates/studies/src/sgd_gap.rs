//! Study `sgd-gap`: *SGD Implicitly Regularizes Generalization Error* (Roberts, arXiv
//! 2104.04874). Predictions (derived for this project; the paper's own normalisation may differ;
//! docs/derivations/sgd_gap.md) beside their measurement on a small real network:
//!
//! 1. One GD step θ → θ − η g_A changes the gap G = L_B − L_A by
//!    δG = η g_A·(g_A − g_B) + (η²/2) g_Aᵀ(H_B − H_A) g_A + O(η³)
//!    (docs/derivations/sgd_gap.md#one-step-gap).
//! 2. Averaged over training sets of N examples: E[δG] = η tr Σ / N + O(η²) ≥ 0, Σ the
//!    per-example gradient covariance — GD is biased toward overfitting
//!    (docs/derivations/sgd_gap.md#expected-gap-growth).
//! 3. n SGD steps (batch B) against n GD steps from the same θ, to O(η²)
//!    (docs/derivations/sgd_gap.md#sgd-vs-gd):
//!    epoch-style (disjoint batches, nB ≤ N): E[θ_SGD] − θ_GD = −η² n(n−1)/(4(N−1)) ∇tr Σ_A,
//!    E[F_SGD] − F_GD = ∇F·drift + (η²/2) n(N − nB)/(B(N−1)) tr(∇²F Σ_A);
//!    independent batches: no drift, E[F_SGD] − F_GD = (η²/2) n(N − B)/(B(N−1)) tr(∇²F Σ_A).
//!    ∇tr Σ_A = 2(K_A − H_A g_A), K_A = (1/N) Σ_i H_i g_i — SGD additionally descends on the
//!    expected rate of gap growth.
//!
//! Setting (docs/derivations/sgd_gap.md#setting): a 5-16-1 tanh MLP (D = 113) with loss
//! ½(f − y)² on N = 64 examples of a teacher y = tanh(a·x) + 0.3 sin 3x₁ + 0.3 ξ (x, ξ standard
//! normal, a fixed), a large held-out set B from the same teacher, θ₀ after 300 GD steps
//! (η = 0.1). Exact gradients and HVPs from [`dlt_nn::mlp`]; SGD averages over seeded
//! shuffles with the exactly mean-zero first-order noise subtracted as a control variate.
//!
//! Cost (2 cores): quick ≈ 40 s (libm's tanh on the held-out set dominates), full ≈ 5 min.

use crate::claim::{Claim, McBound};
use crate::output::OutDir;
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_nn::mlp::{Batch, Mlp};
use dlt_nn::model::ActKind;
use dlt_theory::spectral::lanczos_top;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

const PAPER: &str = "Roberts (arXiv 2104.04874)";

/// Configuration of the `sgd-gap` study.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Quick sizes (smaller held-out set, fewer shuffles) instead of the full ones.
    pub quick: bool,
    /// Seed of the teacher, the data and the shuffles.
    pub seed: u64,
    /// Hide progress bars.
    pub quiet: bool,
    /// Training examples N.
    pub n_train: usize,
    /// Held-out examples (the population: μ and Σ of item 2).
    pub n_test: usize,
    /// The first this many of them form B in the SGD-vs-GD comparison (its g_B, H_B and test
    /// loss all use the same set, so any size is consistent; a smaller set is cheaper per
    /// shuffle).
    pub n_test_sgd: usize,
    /// Hidden width of the 5-h-1 tanh MLP.
    pub hidden: usize,
    /// GD steps (η = 0.1) to reach θ₀.
    pub warmup_steps: usize,
    /// Step sizes of the one-step check.
    pub etas: Vec<f64>,
    /// Training sets redrawn for E[δG].
    pub redraws: usize,
    /// Step size, batch and number of shuffles of the SGD-vs-GD check.
    pub sgd_eta: f64,
    /// Batch size B of the SGD-vs-GD check.
    pub batch: usize,
    /// Seeded shuffles averaged in the SGD-vs-GD check.
    pub shuffles: usize,
}

impl Config {
    /// The configuration for quick or full mode.
    pub fn for_mode(quick: bool, seed: u64, quiet: bool) -> Self {
        Self {
            quick,
            seed,
            quiet,
            n_train: 64,
            n_test: if quick { 50_000 } else { 200_000 },
            n_test_sgd: if quick { 10_000 } else { 20_000 },
            hidden: 16,
            warmup_steps: 300,
            etas: vec![0.1, 0.01, 0.001],
            redraws: 4000,
            sgd_eta: 1e-3,
            batch: 8,
            shuffles: if quick { 4000 } else { 16_000 },
        }
    }
}

/// One GD step of size η: measured change of the gap against its expansions.
#[derive(Debug, Clone, Serialize)]
pub struct OneStep {
    /// Step size η.
    pub eta: f64,
    /// Measured δG = G(θ − η g_A) − G(θ).
    pub actual: f64,
    /// First-order prediction η g_A·(g_A − g_B).
    pub first_order: f64,
    /// Second-order prediction: first order plus (η²/2) g_Aᵀ(H_B − H_A) g_A.
    pub second_order: f64,
    /// |first_order − actual| / |actual|.
    pub rel_err_first: f64,
    /// |second_order − actual| / |actual|.
    pub rel_err_second: f64,
}

/// One SGD-vs-GD comparison: simulated mean (± SE) against the O(η²) prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Stable key, e.g. `epoch_train`.
    pub id: String,
    /// Human-readable description of the quantity compared.
    pub name: String,
    /// Mean over shuffles of the SGD − GD difference (mean-zero control variate removed).
    pub simulated: f64,
    /// Standard error of `simulated`.
    pub se: f64,
    /// The O(η²) prediction (docs/derivations/sgd_gap.md#sgd-vs-gd).
    pub predicted: f64,
}

/// `results.json` of the study.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `"sgd-gap"`.
    pub study: &'static str,
    /// The study configuration.
    pub config: Config,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Number of network parameters D.
    pub params: usize,
    /// Train loss, test loss and gap at θ₀.
    pub train_loss: f64,
    /// Loss on the held-out set B at θ₀.
    pub test_loss: f64,
    /// Generalisation gap G = L_B − L_A at θ₀.
    pub gap: f64,
    /// The one-step check, one row per η.
    pub one_step: Vec<OneStep>,
    /// E[δG]/η over redrawn training sets (mean, SE) and tr Σ / N.
    pub gap_growth_mc: f64,
    /// Standard error of `gap_growth_mc`.
    pub gap_growth_se: f64,
    /// The prediction tr Σ / N.
    pub gap_growth_theory: f64,
    /// λ_max(H_A) and η n λ_max (the expansion needs it ≪ 1; ≤ 0.02 for ≈ 2 % agreement).
    pub lambda_max: f64,
    /// η·n·λ_max with n = N/B, the steps of one epoch in the SGD-vs-GD check.
    pub eta_n_lambda: f64,
    /// The SGD-vs-GD comparisons.
    pub comparisons: Vec<Comparison>,
    /// The paper's claims with this run's measurements.
    pub claims: Vec<Claim>,
    /// SVG files written beside `results.json`.
    pub figures: Vec<String>,
}

/// The teacher: inputs and targets.
struct Teacher {
    a: Vec<f64>,
}

impl Teacher {
    fn new(seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Self {
            a: (0..5)
                .map(|_| rng.sample::<f64, _>(StandardNormal) / 5f64.sqrt())
                .collect(),
        }
    }
    fn draw(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> (Vec<f64>, Vec<f64>) {
        let mut x = Vec::with_capacity(5 * n);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let xi: Vec<f64> = (0..5).map(|_| rng.sample(StandardNormal)).collect();
            let ax: f64 = xi.iter().zip(&self.a).map(|(u, v)| u * v).sum();
            let noise: f64 = rng.sample(StandardNormal);
            y.push(ax.tanh() + 0.3 * (3.0 * xi[0]).sin() + 0.3 * noise);
            x.extend(xi);
        }
        (x, y)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

struct Sets<'a> {
    model: &'a Mlp,
    xa: &'a [f64],
    ya: &'a [f64],
    xb: &'a [f64],
    yb: &'a [f64],
}

impl Sets<'_> {
    fn a(&self) -> Batch<'_, f64> {
        Batch::values(self.xa, self.ya, 1)
    }
    fn b(&self) -> Batch<'_, f64> {
        Batch::values(self.xb, self.yb, 1)
    }
    fn loss(&self, theta: &[f64], b: Batch<f64>) -> Result<f64, StudyError> {
        Ok(self.model.evaluate(theta, b)?.0)
    }
    /// Gradient of the mean loss over the rows `idx` of A.
    fn grad_rows(&self, theta: &[f64], idx: &[usize]) -> Result<Vec<f64>, StudyError> {
        let mut x = Vec::with_capacity(5 * idx.len());
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.xa[5 * i..5 * i + 5]);
            y.push(self.ya[i]);
        }
        Ok(self
            .model
            .at(theta, Batch::values(&x, &y, 1))?
            .grad()
            .to_vec())
    }
}

/// Refuse a configuration that cannot run, naming what is wrong.
fn validate(cfg: &Config) -> Result<(), StudyError> {
    let bad = |what: String, fix: &str| {
        StudyError::Nn(dlt_nn::NnError::Invalid {
            what,
            fix: fix.into(),
        })
    };
    if cfg.n_train < 2 || cfg.batch == 0 || !cfg.n_train.is_multiple_of(cfg.batch) {
        return Err(bad(
            format!("N = {}, batch = {}", cfg.n_train, cfg.batch),
            "need N ≥ 2 and a batch size that divides N (epoch-style SGD uses disjoint batches)",
        ));
    }
    if cfg.shuffles < 2 || cfg.redraws < 2 || cfg.n_test < 2 {
        return Err(bad(
            format!(
                "{} shuffles, {} redraws, {} test examples",
                cfg.shuffles, cfg.redraws, cfg.n_test
            ),
            "need at least 2 of each for a standard error",
        ));
    }
    Ok(())
}

/// `one_step.csv`, `sgd_vs_gd.csv` and their figures; the figure file names.
fn write_outputs(
    out: &OutDir,
    one_step: &[OneStep],
    comparisons: &[Comparison],
) -> Result<Vec<String>, StudyError> {
    // Outputs.
    out.write_records("one_step.csv", one_step)?;
    out.write_records("sgd_vs_gd.csv", comparisons)?;
    let mut figures = vec![];
    let mut fig = Figure::new(
        "one GD step: error of the predicted change of the gap",
        "η",
        "|predicted − actual| / |actual|",
    )
    .with(Series::points(
        "first order η g_A·(g_A − g_B)",
        one_step.iter().map(|o| (o.eta, o.rel_err_first)).collect(),
        None,
    ))
    .with(Series::points(
        "second order (+ η²/2 g_Aᵀ(H_B − H_A)g_A)",
        one_step.iter().map(|o| (o.eta, o.rel_err_second)).collect(),
        None,
    ));
    fig = fig.log_log();
    fig.save_svg(&out.path("one_step.svg"))?;
    figures.push("one_step.svg".to_string());
    let xs: Vec<f64> = (0..comparisons.len()).map(|i| i as f64).collect();
    let norm = |c: &Comparison| c.predicted.abs().max(1e-300);
    Figure::new(
        "SGD − GD: simulated (±SE) over predicted, each comparison",
        "comparison (see sgd_vs_gd.csv)",
        "simulated / predicted",
    )
    .with(Series::points(
        "simulated / predicted",
        comparisons
            .iter()
            .zip(&xs)
            .map(|(c, &x)| (x, c.simulated / norm(c) * c.predicted.signum()))
            .collect(),
        Some(comparisons.iter().map(|c| c.se / norm(c)).collect()),
    ))
    .with(Series::dashed(
        "prediction",
        xs.iter().map(|&x| (x, 1.0)).collect(),
    ))
    .save_svg(&out.path("sgd_vs_gd.svg"))?;
    figures.push("sgd_vs_gd.svg".to_string());
    Ok(figures)
}

/// The SGD-vs-GD comparisons that are claims: those whose Monte Carlo SE is a few percent of the
/// prediction at the study's sample sizes. The other three (the epoch-style test-loss difference,
/// SE ≈ 160 % of its prediction, and the two drifts projected on ∇tr Σ_A, 20–45 %) are reported in
/// `comparisons` and `sgd_vs_gd.csv` but cannot confirm or refute the expansion at this size.
pub const RESOLVED: [&str; 7] = [
    "epoch_train",
    "epoch_drift_ga",
    "partial_train",
    "partial_test",
    "partial_drift_ga",
    "independent_train",
    "independent_test",
];

/// The expansion's predictions against the simulations.
fn claims(
    cfg: &Config,
    one_step: &[OneStep],
    (growth_mc, growth_se, growth_theory): (f64, f64, f64),
    eta_n_lambda: f64,
    comparisons: &[Comparison],
) -> Vec<Claim> {
    // Claims.
    let mut claims = vec![];
    let e = |eta: f64| one_step.iter().find(|o| (o.eta - eta).abs() < 1e-15);
    if let (Some(a), Some(b)) = (e(0.1), e(0.01)) {
        claims.push(Claim::within(
            "sgd_gap.one_step_first_order",
            &format!("{PAPER}; docs/derivations/sgd_gap.md#one-step-gap"),
            "one GD step changes the gap by η g_A·(g_A − g_B) + O(η²): the relative error falls 10× per 10× smaller η (ratio of errors at η = 0.1 and 0.01)",
            a.rel_err_first / b.rel_err_first,
            10.0,
            2.0,
            "∝ η up to the O(η³) correction",
        ));
        claims.push(Claim::within(
            "sgd_gap.one_step_second_order",
            &format!("{PAPER}; docs/derivations/sgd_gap.md#one-step-gap"),
            "with the (η²/2) g_Aᵀ(H_B − H_A)g_A term the error falls 100× per 10× smaller η (ratio at η = 0.1 and 0.01)",
            a.rel_err_second / b.rel_err_second,
            100.0,
            30.0,
            "∝ η² up to the O(η⁴) correction",
        ));
    }
    claims.push(Claim::monte_carlo(
        "sgd_gap.expected_gap_growth",
        &format!("{PAPER}; docs/derivations/sgd_gap.md#expected-gap-growth"),
        "averaged over training sets, one GD step grows the gap by η tr Σ / N (GD is biased toward overfitting): E[g_A·(g_A − μ)] over tr Σ / N",
        (growth_mc / growth_theory, growth_se / growth_theory),
        1.0,
        McBound {
            k: 3.0,
            max_rel_se: 0.1,
            truncation: 0.0,
        },
        &format!("SE over {} redrawn training sets", cfg.redraws),
    ));
    claims.push(Claim::at_most(
        "sgd_gap.perturbative",
        "docs/derivations/sgd_gap.md#regime-of-validity",
        "the SGD-vs-GD comparison is inside the expansion's regime: η n λ_max(H_A)",
        eta_n_lambda,
        0.05,
        "flagged above 0.05 (reference runs: agreement ≈ 2 % at 0.02)",
    ));
    for c in comparisons
        .iter()
        .filter(|c| RESOLVED.contains(&c.id.as_str()))
    {
        // Truncation of the O(η²) expansion: relative error ∝ η n λ_max (the reference runs
        // saw up to ≈ 3.4 η n λ_max at η n λ_max = 0.09,
        // docs/derivations/sgd_gap.md#regime-of-validity); allow 2 η n λ_max plus 3 SE, with the
        // SE itself at most 10 % of the prediction.
        claims.push(Claim::monte_carlo(
            &format!("sgd_gap.{}", c.id),
            &format!("{PAPER}; docs/derivations/sgd_gap.md#sgd-vs-gd"),
            &format!("SGD − GD, {}", c.name),
            (c.simulated, c.se),
            c.predicted,
            McBound {
                k: 3.0,
                max_rel_se: 0.1,
                truncation: 2.0 * eta_n_lambda.max(0.01),
            },
            "3 SE + 2 η n λ_max × |prediction| (truncation of the O(η²) expansion)",
        ));
    }
    claims
}

/// H v at a point, allocated.
fn hvp(p: &dlt_nn::mlp::Point<f64>, v: &[f64]) -> Vec<f64> {
    let mut o = vec![0.0; v.len()];
    p.hvp(v, &mut o);
    o
}

/// The gradient of each example's loss (rows of `x`, 5 inputs each).
fn per_example_grads(
    model: &Mlp,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
) -> Result<Vec<Vec<f64>>, StudyError> {
    (0..y.len())
        .into_par_iter()
        .map(|i| {
            Ok(model
                .at(theta, Batch::values(&x[5 * i..5 * i + 5], &y[i..i + 1], 1))?
                .grad()
                .to_vec())
        })
        .collect()
}

/// The state every experiment starts from: θ₀, the losses and gradients on A and B, and
/// H_A g_A.
struct Start {
    theta: Vec<f64>,
    la: f64,
    lb: f64,
    ga: Vec<f64>,
    gb: Vec<f64>,
    ha_ga: Vec<f64>,
    hb_ga: Vec<f64>,
}

/// Experiment 1: one GD step θ₀ − η g_A changes the gap G = L_B − L_A by
/// η (g_A·g_A − g_A·g_B) + ½η² g_A·(H_B − H_A) g_A + O(η³)
/// (arXiv 2104.04874; docs/derivations/sgd_gap.md#one-step-gap), against the actual change.
fn one_step_gap(s: &Sets, st: &Start, etas: &[f64]) -> Result<Vec<OneStep>, StudyError> {
    let (theta, la, lb, ga, gb) = (&st.theta, st.la, st.lb, &st.ga, &st.gb);
    let curv = dot(ga, &st.hb_ga) - dot(ga, &st.ha_ga);
    let mut one_step = vec![];
    for &eta in etas {
        let mut th = theta.to_vec();
        axpy(&mut th, -eta, ga);
        let actual = (s.loss(&th, s.b())? - s.loss(&th, s.a())?) - (lb - la);
        let first = eta * dot(ga, ga) - eta * dot(ga, gb);
        let second = first + 0.5 * eta * eta * curv;
        one_step.push(OneStep {
            eta,
            actual,
            first_order: first,
            second_order: second,
            rel_err_first: ((first - actual) / actual).abs(),
            rel_err_second: ((second - actual) / actual).abs(),
        });
    }
    Ok(one_step)
}

/// Experiment 2: averaged over training sets, one GD step grows the gap by η tr Σ / N
/// (docs/derivations/sgd_gap.md#expected-gap-growth): E[g_A·(g_A − μ)] over `cfg.redraws` fresh
/// training sets from the teacher, against tr Σ / N with Σ and μ estimated on B. Returns
/// (mean, standard error, prediction).
fn gap_growth(
    s: &Sets,
    theta: &[f64],
    mu: &[f64],
    teacher: &Teacher,
    cfg: &Config,
) -> Result<(f64, f64, f64), StudyError> {
    let (model, nn) = (s.model, cfg.n_train);
    let gi_b = per_example_grads(model, theta, s.xb, s.yb)?;

    let tr_sigma = gi_b.iter().map(|g| dot(g, g)).sum::<f64>() / gi_b.len() as f64 - dot(mu, mu);
    let tr_sigma = tr_sigma * gi_b.len() as f64 / (gi_b.len() as f64 - 1.0);
    let growth: Vec<f64> = (0..cfg.redraws)
        .into_par_iter()
        .map(|r| -> Result<f64, StudyError> {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(dlt_nn::stream_seed(
                cfg.seed,
                &[0x7ed2a, r as u64],
            ));
            let (x, y) = teacher.draw(nn, &mut rng);
            let g = model.at(theta, Batch::values(&x, &y, 1))?.grad().to_vec();
            Ok(dot(&g, &g) - dot(&g, mu))
        })
        .collect::<Result<_, _>>()?;
    let (growth_mc, growth_se) = mean_se(&growth);
    let growth_theory = tr_sigma / nn as f64;
    Ok((growth_mc, growth_se, growth_theory))
}

/// Experiment 3: SGD against GD over the same number of steps, averaged over `cfg.shuffles`
/// shuffles with a control variate, against the O(η²) predictions for the train and test loss
/// differences and the drift (docs/derivations/sgd_gap.md#sgd-vs-gd,
/// docs/derivations/sgd_gap.md#independent-batches). Returns the comparisons, λ_max(H_A) and
/// η n λ_max.
fn sgd_vs_gd(
    s: &Sets,
    st: &Start,
    pa: &dlt_nn::mlp::Point<f64>,
    cfg: &Config,
) -> Result<(Vec<Comparison>, f64, f64), StudyError> {
    let (model, theta, ga, ha_ga) = (s.model, &st.theta[..], &st.ga[..], &st.ha_ga[..]);
    let (nn, dim) = (cfg.n_train, theta.len());
    let pb = model.at(theta, s.b())?;
    let gb = pb.grad().to_vec();
    let gi_a = per_example_grads(model, theta, s.xa, s.ya)?;
    // Σ_A = (1/N) Σ (g_i − g_A)(g_i − g_A)ᵀ; K_A = (1/N) Σ H_i g_i.
    let mut k_a = vec![0.0; dim];
    for (i, g) in gi_a.iter().enumerate() {
        let pi = model.at(
            theta,
            Batch::values(&s.xa[5 * i..5 * i + 5], &s.ya[i..i + 1], 1),
        )?;
        axpy(&mut k_a, 1.0 / nn as f64, &hvp(&pi, g));
    }
    let grad_tr: Vec<f64> = k_a.iter().zip(ha_ga).map(|(k, h)| 2.0 * (k - h)).collect();
    let centred: Vec<Vec<f64>> = gi_a
        .iter()
        .map(|g| g.iter().zip(ga).map(|(a, b)| a - b).collect())
        .collect();
    let tr_h_sigma = |p: &dlt_nn::mlp::Point<f64>| {
        centred.iter().map(|c| dot(c, &hvp(p, c))).sum::<f64>() / nn as f64
    };
    let (tr_ha, tr_hb) = (tr_h_sigma(pa), tr_h_sigma(&pb));
    let lambda_max = lanczos_top(dim, 40.min(dim), 1, cfg.seed, |v, o| pa.hvp(v, o))?.values[0];
    let (eta, bsz) = (cfg.sgd_eta, cfg.batch);
    let n_epoch = nn / bsz;
    let eta_n_lambda = eta * n_epoch as f64 * lambda_max;
    let gd = |n: usize| -> Result<Vec<f64>, StudyError> {
        let mut th = theta.to_vec();
        for _ in 0..n {
            let g = model.at(&th, s.a())?.grad().to_vec();
            axpy(&mut th, -eta, &g);
        }
        Ok(th)
    };
    // One SGD run: (train-loss, test-loss differences to GD with the control variate,
    // drift·ĝ_A, drift·∇̂trΣ).
    let unit = |v: &[f64]| -> Vec<f64> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    };
    let (ua, ut) = (unit(ga), unit(&grad_tr));
    let mut comparisons = vec![];
    for (key, name, n, independent) in [
        ("epoch", "epoch n = N/B", n_epoch, false),
        (
            "partial",
            "partial epoch n = N/(2B)",
            (n_epoch / 2).max(1),
            false,
        ),
        ("independent", "independent batches n = N/B", n_epoch, true),
    ] {
        let th_gd = gd(n)?;
        let (fa_gd, fb_gd) = (s.loss(&th_gd, s.a())?, s.loss(&th_gd, s.b())?);
        let samples: Vec<[f64; 4]> = (0..cfg.shuffles)
            .into_par_iter()
            .map(|r| -> Result<[f64; 4], StudyError> {
                // Independent streams per (n, shuffle) that differ between run seeds (with
                // `seed ^ (r + …)` seeds 0 and 1 drew the same shuffles in another order).
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(dlt_nn::stream_seed(
                    cfg.seed,
                    &[0x5eed, n as u64, r as u64],
                ));
                let mut order: Vec<usize> = (0..nn).collect();
                order.shuffle(&mut rng);
                let mut th = theta.to_vec();
                // Control variate: η Σ_t (g_A − g_{S_t}(θ₀)), exactly mean zero.
                let mut cv = vec![0.0; dim];
                for t in 0..n {
                    if independent {
                        order.shuffle(&mut rng);
                    }
                    let idx = if independent {
                        &order[..bsz]
                    } else {
                        &order[t * bsz..(t + 1) * bsz]
                    };
                    let g = s.grad_rows(&th, idx)?;
                    let g0 = s.grad_rows(theta, idx)?;
                    axpy(&mut th, -eta, &g);
                    cv.iter_mut()
                        .zip(ga.iter().zip(&g0))
                        .for_each(|(c, (a, b))| *c += eta * (a - b));
                }
                // θ_SGD = θ_GD + cv + O(η²): remove cv from the drift and ∇F(θ₀)·cv from
                // each loss (both exactly mean zero, so the expectations are unchanged).
                let drift: Vec<f64> = th
                    .iter()
                    .zip(&th_gd)
                    .zip(&cv)
                    .map(|((a, b), c)| a - b - c)
                    .collect();
                let fa = s.loss(&th, s.a())? - fa_gd - dot(ga, &cv);
                let fb = s.loss(&th, s.b())? - fb_gd - dot(&gb, &cv);
                Ok([fa, fb, dot(&drift, &ua), dot(&drift, &ut)])
            })
            .collect::<Result<_, _>>()?;
        let col = |k: usize| mean_se(&samples.iter().map(|s| s[k]).collect::<Vec<_>>());
        let nf = n as f64;
        let (nnf, bf) = (nn as f64, bsz as f64);
        let (drift, var_factor) = if independent {
            (
                vec![0.0; dim],
                0.5 * eta * eta * nf * (nnf - bf) / (bf * (nnf - 1.0)),
            )
        } else {
            let c = -eta * eta * nf * (nf - 1.0) / (4.0 * (nnf - 1.0));
            (
                grad_tr.iter().map(|g| c * g).collect::<Vec<f64>>(),
                0.5 * eta * eta * nf * (nnf - nf * bf) / (bf * (nnf - 1.0)),
            )
        };
        let pred_a = dot(ga, &drift) + var_factor * tr_ha;
        let pred_b = dot(&gb, &drift) + var_factor * tr_hb;
        for (k, sub, what, pred) in [
            (0usize, "train", "E[L_train(SGD) − L_train(GD)]", pred_a),
            (1, "test", "E[L_test(SGD) − L_test(GD)]", pred_b),
            (2, "drift_ga", "drift projected on g_A", dot(&drift, &ua)),
            (
                3,
                "drift_grad_tr",
                "drift projected on ∇tr Σ_A",
                dot(&drift, &ut),
            ),
        ] {
            if independent && k >= 2 {
                continue;
            }
            let (m, se) = col(k);
            comparisons.push(Comparison {
                id: format!("{key}_{sub}"),
                name: format!("{name}: {what}"),
                simulated: m,
                se,
                predicted: pred,
            });
        }
    }
    Ok((comparisons, lambda_max, eta_n_lambda))
}

/// Run the study into `out`, writing `results.json` last.
pub fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
    let t0 = Instant::now();
    validate(cfg)?;
    let teacher = Teacher::new(cfg.seed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0xda7a);
    let (xa, ya) = teacher.draw(cfg.n_train, &mut rng);
    let (xb, yb) = teacher.draw(cfg.n_test, &mut rng);
    let model = Mlp::new(vec![5, cfg.hidden, 1], ActKind::Tanh)?;
    let s = Sets {
        model: &model,
        xa: &xa,
        ya: &ya,
        xb: &xb,
        yb: &yb,
    };
    // θ₀: GD with η = 0.1.
    let mut theta = model.init(cfg.seed);
    for _ in 0..cfg.warmup_steps {
        let g = model.at(&theta, s.a())?.grad().to_vec();
        axpy(&mut theta, -0.1, &g);
    }
    let pa = model.at(&theta, s.a())?;
    let pb = model.at(&theta, s.b())?;
    let (ga, gb) = (pa.grad().to_vec(), pb.grad().to_vec());
    let st = Start {
        ha_ga: hvp(&pa, &ga),
        hb_ga: hvp(&pb, &ga),
        la: pa.loss,
        lb: pb.loss,
        theta: theta.clone(),
        ga,
        gb,
    };
    let dim = theta.len();
    let one_step = one_step_gap(&s, &st, &cfg.etas)?;
    let (growth_mc, growth_se, growth_theory) = gap_growth(&s, &theta, &st.gb, &teacher, cfg)?;
    // B = the first n_test_sgd held-out examples.
    let nb = cfg.n_test_sgd.clamp(1, cfg.n_test);
    let s = Sets {
        xb: &xb[..5 * nb],
        yb: &yb[..nb],
        ..s
    };
    let (comparisons, lambda_max, eta_n_lambda) = sgd_vs_gd(&s, &st, &pa, cfg)?;
    let (la, lb) = (st.la, st.lb);
    let figures = write_outputs(out, &one_step, &comparisons)?;

    let claims = claims(
        cfg,
        &one_step,
        (growth_mc, growth_se, growth_theory),
        eta_n_lambda,
        &comparisons,
    );
    let results = Results {
        study: "sgd-gap",
        config: cfg.clone(),
        seconds: t0.elapsed().as_secs_f64(),
        params: dim,
        train_loss: la,
        test_loss: lb,
        gap: lb - la,
        one_step,
        gap_growth_mc: growth_mc,
        gap_growth_se: growth_se,
        gap_growth_theory: growth_theory,
        lambda_max,
        eta_n_lambda,
        comparisons,
        claims,
        figures,
    };
    out.write_json("results.json", &results)?;
    Ok(results)
}

/// The `sgd-gap` study ([`crate::study::Study`]).
pub struct SgdGap;

impl crate::study::Study for SgdGap {
    const NAME: &'static str = "sgd-gap";
    const TITLE: &'static str = "SGD implicitly regularizes generalization error";
    const PAPER: &'static str = "Roberts (arXiv 2104.04874)";
    const ABOUT: &'static str = "SGD against gradient descent at small learning rate: the one-step gap formula and the O(η²) drift and loss differences of the paper's expansion, against averages over many redrawn training sets and shuffles.";
    type Config = Config;
    type Results = Results;
    fn config(quick: bool, seed: u64, quiet: bool) -> Config {
        Config::for_mode(quick, seed, quiet)
    }
    fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
        run(cfg, out)
    }
}
