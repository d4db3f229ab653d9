//! The Jacobian penalty on a convolutional network (Hoffman, Roberts, Yaida, arXiv 1908.02729,
//! §4 trains CNNs too): a LeNet-like CNN ([`dlt_nn::cnn`]) trained with and without the
//! penalty R = ½ (C/B) Σ_b |J_bᵀ v̂_b|², its exact parameter gradient from the CNN's
//! R-operator with the input tangent u_b = J_bᵀ v̂_b (docs/derivations/jacobian.md#penalty-gradient;
//! tested against differences of the penalty in `dlt_nn::cnn`), and evaluated as the MLP is:
//! clean accuracy, exact mean |J|_F, accuracy under Gaussian noise, FGSM, PGD-L∞ and the
//! Carlini–Wagner L2 attack ([`dlt_nn::attack::cw_l2`] through its [`dlt_nn::attack::Classifier`]
//! interface).

use super::{median_with_se, paired_median, rows_f64, unit_rows, Config, PAPER};
use crate::claim::Claim;
use crate::study::StudyError;
use dlt_nn::attack::cw_l2;
use dlt_nn::cnn::Cnn;
use dlt_nn::mlp::{Batch, Targets};
use dlt_nn::model::ActKind;
use dlt_nn::optim::{Optimizer, State as OptState};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// The CNN part's size.
#[derive(Debug, Clone, Serialize)]
pub struct CnnScale {
    /// Adam steps per model (0: skip the part; quick skips it: ≈ 6 min on 2 cores at 3000).
    pub steps: usize,
    /// Channels of the two convolutions ((6, 16) is LeNet-5).
    pub channels: [usize; 2],
    /// Hidden dense widths.
    pub hidden: Vec<usize>,
    /// The penalty strength λ compared with λ = 0.
    pub lambda: f64,
}

impl CnnScale {
    /// Quick: skipped; full: a narrow LeNet (4, 8 channels; 32), 3000 Adam steps of batch 128
    /// (6.4 epochs; at 300 steps the CNN was under-trained, test accuracy 0.76, and two of
    /// its claims failed), λ = 0.01 (the MLP's headline strength).
    pub fn for_mode(quick: bool) -> Self {
        Self {
            steps: if quick { 0 } else { 3000 },
            channels: [4, 8],
            hidden: vec![32],
            lambda: 0.01,
        }
    }
}

/// One CNN model's evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct CnnModel {
    /// Penalty strength λ.
    pub lambda: f64,
    /// Accuracy on the whole clean test set, in [0, 1].
    pub clean_accuracy: f64,
    /// Mean over the evaluation points of the exact |J|_F (C one-hot VJPs).
    pub jacobian_norm: f64,
    /// (σ, accuracy on the whole test set) under additive Gaussian noise.
    pub noise_accuracy: Vec<(f64, f64)>,
    /// (σ, the class predicted most often on the noisy test set, its share of the predictions):
    /// where noise pushes the predictions (the test set is balanced, 0.1 per class).
    pub noise_top_class: Vec<(f64, u32, f64)>,
    /// (ε, accuracy on the evaluation points) under FGSM.
    pub fgsm_accuracy: Vec<(f64, f64)>,
    /// (ε, accuracy on the evaluation points) under PGD-L∞ (10 steps of ε/4).
    pub pgd_accuracy: Vec<(f64, f64)>,
    /// Median Carlini–Wagner L2 distance over the first `cw_points` evaluation points (the
    /// MLP's attack and settings; NaN with `--cw-points 0`).
    pub cw_median: f64,
    /// Its standard error (order statistics, as the MLP's).
    pub cw_median_se: f64,
    /// The per-point CW distances (0: misclassified already; +∞, written as null: not broken).
    pub cw_distances: Vec<f64>,
    /// Per decision-cell cross-section (the MLP's planes and radius): the fraction of the disc
    /// around the test input that carries its predicted class.
    pub cell_area: Vec<f64>,
    /// The cross-sections' class maps (drawn in `cnn_cells.svg`; not in results.json).
    #[serde(skip)]
    pub cell_maps: Vec<Vec<u8>>,
    /// The penalty R on the last training batch.
    pub final_penalty: f64,
}

/// The CNN part of `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CnnPart {
    /// The network, e.g. `28x28x1 c5x5x4p2-pool c5x5x8-pool 32-10 relu`.
    pub model: String,
    /// Its parameter count.
    pub params: usize,
    /// Adam steps per model.
    pub steps: usize,
    /// λ = 0, then λ = `lambda`.
    pub models: Vec<CnnModel>,
    /// Wall-clock seconds of the part.
    pub seconds: f64,
}

fn train(
    model: &Cnn,
    train: &dlt_nn::data::Split,
    cfg: &Config,
    lambda: f64,
) -> Result<(Vec<f64>, f64), StudyError> {
    let (d, c) = (train.dim, 10);
    let mut theta = model.init(cfg.seed);
    let mut st = OptState::default();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x0ac0);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let per_epoch = (train.len() / cfg.batch).max(1);
    let mut last_pen = 0.0;
    for t in 0..cfg.cnn.steps {
        if t % per_epoch == 0 {
            order.shuffle(&mut rng);
        }
        let k = t % per_epoch;
        let idx = &order[k * cfg.batch..(k + 1) * cfg.batch];
        let x = rows_f64(&train.x, d, idx);
        let y: Vec<u32> = idx.iter().map(|&i| train.y[i]).collect();
        let pt = model.at(&theta, Batch::labels(&x, &y))?;
        if !pt.loss.is_finite() {
            return Err(StudyError::Nn(dlt_nn::NnError::Diverged {
                step: t,
                loss: pt.loss,
            }));
        }
        let mut g = pt.grad().to_vec();
        if lambda > 0.0 {
            let n = idx.len();
            let v = unit_rows(n, c, &mut rng);
            let sp = model.at(
                &theta,
                Batch {
                    x: &x,
                    y: Targets::Seeds(&v),
                    n,
                },
            )?;
            let u = sp.input_grad();
            // R = ½ (C/B) Σ|u_b|²; ∇R = (C/B) · input_tangent_grad(u), as for the MLP.
            let scale = c as f64 / n as f64;
            last_pen = 0.5 * scale * u.iter().map(|a| a * a).sum::<f64>();
            let mut gr = vec![0.0; theta.len()];
            sp.input_tangent_grad(&u, &mut gr);
            g.iter_mut()
                .zip(&gr)
                .for_each(|(g, r)| *g += lambda * scale * r);
        }
        st.step(Optimizer::ADAM, &mut theta, &g, cfg.lr);
    }
    Ok((theta, last_pen))
}

fn accuracy(model: &Cnn, theta: &[f64], x: &[f64], y: &[u32]) -> Result<f64, StudyError> {
    Ok(model.evaluate(theta, Batch::labels(x, y))?.1)
}

fn evaluate(
    model: &Cnn,
    theta: &[f64],
    test: &dlt_nn::data::Split,
    cfg: &Config,
) -> Result<CnnModel, StudyError> {
    let (d, c) = (test.dim, 10);
    let all: Vec<usize> = (0..test.len()).collect();
    let xt = rows_f64(&test.x, d, &all);
    let clean_accuracy = accuracy(model, theta, &xt, &test.y)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0xe7a1);
    let (mut noise_accuracy, mut noise_top_class) = (vec![], vec![]);
    for &s in &cfg.noise {
        let xn: Vec<f64> = xt
            .iter()
            .map(|v| v + s * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let mut counts = vec![0usize; c];
        let mut right = 0usize;
        // In chunks of 500 images (bounds the activations' memory).
        for (xs, ys) in xn.chunks(500 * d).zip(test.y.chunks(500)) {
            for (z, &y) in model.logits(theta, xs)?.chunks_exact(c).zip(ys) {
                let k = dlt_nn::mlp::argmax(z).0;
                counts[k] += 1;
                right += usize::from(k == y as usize);
            }
        }
        let n_t = test.len() as f64;
        let top = (0..c).max_by_key(|&k| counts[k]).unwrap_or(0);
        noise_accuracy.push((s, right as f64 / n_t));
        noise_top_class.push((s, top as u32, counts[top] as f64 / n_t));
    }
    // The MLP's evaluation subset (the same seeded shuffle).
    let mut idx = all;
    idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x5b5e7));
    idx.truncate(cfg.eval_points.min(test.len()));
    let n = idx.len();
    let xe = rows_f64(&test.x, d, &idx);
    let ye: Vec<u32> = idx.iter().map(|&i| test.y[i]).collect();
    let mut jf2 = vec![0.0; n];
    for k in 0..c {
        let mut v = vec![0.0; n * c];
        v.iter_mut().skip(k).step_by(c).for_each(|a| *a = 1.0);
        let u = model
            .at(
                theta,
                Batch {
                    x: &xe,
                    y: Targets::Seeds(&v),
                    n,
                },
            )?
            .input_grad();
        for (j, row) in jf2.iter_mut().zip(u.chunks_exact(d)) {
            *j += row.iter().map(|a| a * a).sum::<f64>();
        }
    }
    let jacobian_norm = jf2.iter().map(|v| v.sqrt()).sum::<f64>() / n as f64;
    let loss_grad = |x: &[f64]| -> Result<Vec<f64>, StudyError> {
        Ok(model.at(theta, Batch::labels(x, &ye))?.input_grad())
    };
    let g0 = loss_grad(&xe)?;
    let (mut fgsm_accuracy, mut pgd_accuracy) = (vec![], vec![]);
    for &eps in &cfg.eps {
        let xa: Vec<f64> = xe
            .iter()
            .zip(&g0)
            .map(|(x, g)| x + eps * g.signum())
            .collect();
        fgsm_accuracy.push((eps, accuracy(model, theta, &xa, &ye)?));
        let mut xp = xe.clone();
        for _ in 0..10 {
            let g = loss_grad(&xp)?;
            for ((p, g), x0) in xp.iter_mut().zip(&g).zip(&xe) {
                *p = (*p + 0.25 * eps * g.signum()).clamp(x0 - eps, x0 + eps);
            }
        }
        pgd_accuracy.push((eps, accuracy(model, theta, &xp, &ye)?));
    }
    // Carlini–Wagner L2 on the first cw_points evaluation points, as for the MLP.
    let (mut cw_median, mut cw_median_se, mut cw_distances) = (f64::NAN, f64::NAN, vec![]);
    let m = cfg.cw_points.min(n);
    if m > 0 {
        cw_distances = cw_l2(model, theta, &xe[..m * d], &ye[..m], &cfg.cw)?;
        let mut sorted = cw_distances.clone();
        sorted.sort_by(f64::total_cmp);
        (cw_median, cw_median_se) = median_with_se(&sorted);
    }
    let cell_maps = super::cell_maps(model, theta, &xe, cfg)?;
    let cell_area = cell_maps
        .iter()
        .map(|m| super::cells::area_fraction(m, cfg.cell_grid))
        .collect();
    Ok(CnnModel {
        lambda: 0.0,
        clean_accuracy,
        jacobian_norm,
        noise_accuracy,
        noise_top_class,
        fgsm_accuracy,
        pgd_accuracy,
        cw_median,
        cw_median_se,
        cw_distances,
        cell_area,
        cell_maps,
        final_penalty: 0.0,
    })
}

/// Train and evaluate the CNN at λ = 0 and λ = `cnn.lambda` (None when `cnn.steps` is 0).
pub(super) fn cnn_part(
    cfg: &Config,
    tt: &dlt_nn::data::TrainTest,
) -> Result<Option<CnnPart>, StudyError> {
    let sc = &cfg.cnn;
    if sc.steps == 0 {
        return Ok(None);
    }
    if !(sc.lambda > 0.0 && sc.lambda.is_finite()) {
        return Err(StudyError::Nn(dlt_nn::NnError::Invalid {
            what: format!("CNN penalty strength {}", sc.lambda),
            fix: "give a positive λ (λ = 0 is always run beside it)".into(),
        }));
    }
    let t0 = Instant::now();
    let model = Cnn::lenet(sc.channels, &sc.hidden, 10, ActKind::Relu)?;
    let models: Vec<CnnModel> = [0.0, sc.lambda]
        .par_iter()
        .map(|&l| -> Result<CnnModel, StudyError> {
            let (theta, pen) = train(&model, &tt.train, cfg, l)?;
            let mut m = evaluate(&model, &theta, &tt.test, cfg)?;
            (m.lambda, m.final_penalty) = (l, pen);
            Ok(m)
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(CnnPart {
        model: model.describe(),
        params: model.num_params(),
        steps: sc.steps,
        models,
        seconds: t0.elapsed().as_secs_f64(),
    }))
}

/// The CNN's claims: the penalty shrinks |J|_F (the MLP's criterion) and buys robustness to
/// noise and PGD beyond the binomial noise of the accuracy difference.
pub(super) fn cnn_claims(p: &CnnPart, n_test: usize, n_eval: usize) -> Vec<Claim> {
    let (a, b) = (&p.models[0], &p.models[1]);
    let l = b.lambda;
    let at = |v: &[(f64, f64)], x: f64| {
        v.iter()
            .find(|q| (q.0 - x).abs() < 1e-12)
            .map_or(f64::NAN, |q| q.1)
    };
    // SE (points) of a difference of two accuracies near p on n points each: √(2p(1 − p)/n).
    let se = |p: f64, n: usize| 100.0 * (2.0 * p * (1.0 - p) / n as f64).sqrt();
    let mut claims = vec![Claim::at_least(
        "jacobian.cnn.norm_reduction",
        &format!("{PAPER} §3–4"),
        &format!(
            "CNN {}: the penalty shrinks the input-output Jacobian: mean |J|_F at λ = 0 over λ = {l}",
            p.model
        ),
        a.jacobian_norm / b.jacobian_norm,
        2.5,
        "the MLP's threshold (docs/derivations/jacobian.md#reference-runs), not calibrated on CNN runs",
    )
    .calibrated()];
    let (n0, n1) = (at(&a.noise_accuracy, 0.5), at(&b.noise_accuracy, 0.5));
    claims.push(
        Claim::at_least(
            "jacobian.cnn.noise_robustness",
            &format!("{PAPER} §4"),
            &format!("CNN: accuracy gain (points) under Gaussian noise σ = 0.5 from λ = 0 to λ = {l}, over the whole test set"),
            100.0 * (n1 - n0),
            2.0 * se(0.5 * (n0 + n1), n_test),
            "2 binomial SEs of the difference of two accuracies on the test set (√(2p(1 − p)/N)): a gain that noise alone would rarely give",
        )
        .from_theory(),
    );
    let (p0, p1) = (at(&a.pgd_accuracy, 0.02), at(&b.pgd_accuracy, 0.02));
    claims.push(
        Claim::at_least(
            "jacobian.cnn.pgd_2",
            &format!("{PAPER} §4"),
            &format!("CNN: PGD-L∞ accuracy gain (points) at ε = 0.02 from λ = 0 to λ = {l}, on the evaluation points"),
            100.0 * (p1 - p0),
            2.0 * se(0.5 * (p0 + p1), n_eval),
            "2 binomial SEs of the difference of two accuracies on the evaluation points",
        )
        .from_theory(),
    );
    if !a.cw_distances.is_empty() {
        let (m, se) = paired_median(&a.cw_distances, &b.cw_distances);
        claims.push(
            Claim::at_least(
                "jacobian.cnn.cw_distance",
                &format!("{PAPER} §4"),
                &format!("CNN: the penalty raises the Carlini–Wagner L2 distance: median over attacked points of d_CW(λ = {l}) − d_CW(λ = 0), in units of its standard error (order statistics)"),
                m / se,
                2.0,
                "two standard errors: the median paired difference is positive beyond its noise (the MLP's criterion)",
            )
            .from_theory(),
        );
    }
    claims
}
