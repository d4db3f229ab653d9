//! The paper's solvable toy model (Gur-Ari, Roberts, Dyer, arXiv 1812.04754 §3) beside a
//! simulation of it: softmax regression without biases on a k-class Gaussian mixture with
//! orthonormal means μ_c and within-class noise of variance σ²/d per coordinate (so
//! E|x − μ_c|² = σ²), full-batch gradient descent from θ = 0. The theory
//! ([`dlt_theory::gmm_softmax`], solved for every k and step at σ² → 0) predicts k top
//! eigenvalues ε(1 − (k−1)ε), k(k−2) at ε/k, the rest zero, and a gradient inside the top k;
//! the paper states that a small σ² adds a bulk "suppressed by σ²" and keeps the gradient in
//! the top subspace. Here the Hessian is built exactly (dense, H = (1/n) Σ_a (diag p_a −
//! p_a p_aᵀ) ⊗ x_a x_aᵀ) and diagonalised by faer at a few steps
//! (docs/derivations/hessian.md#toy-model).

use super::Config;
use crate::claim::NanFold;
use crate::study::StudyError;
use dlt_theory::gmm_softmax::{multiplicities, trajectory, ToyPoint};
use dlt_theory::scaling::fit_exponent;
use faer::{Mat, Side};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

/// The toy-model runs: class counts × noise levels.
#[derive(Debug, Clone, Serialize)]
pub struct ToyScale {
    /// Class counts k (empty: skip the part).
    pub class_counts: Vec<usize>,
    /// Input dimension d.
    pub dim: usize,
    /// Inputs per class.
    pub per_class: usize,
    /// Noise levels σ (E|x − μ|² = σ²); the spectrum claims use the smallest, the bulk's
    /// exponent all of them.
    pub sigmas: Vec<f64>,
    /// Learning rate η of full-batch GD.
    pub lr: f64,
    /// Steps with a Hessian (the last is where the claims are read).
    pub checkpoints: Vec<usize>,
}

impl ToyScale {
    /// The same at both scales (seconds of CPU): k ∈ {2, 5, 10}, d = 64, 64 inputs per class,
    /// σ ∈ {0.2, 0.1, 0.05}, η = 1, Hessians at steps 0…2000.
    pub fn default_scale() -> Self {
        Self {
            class_counts: vec![2, 5, 10],
            dim: 64,
            per_class: 64,
            sigmas: vec![0.2, 0.1, 0.05],
            lr: 1.0,
            checkpoints: vec![0, 10, 30, 100, 300, 1000, 2000],
        }
    }
}

/// One checkpoint of one simulated run.
#[derive(Debug, Clone, Serialize)]
pub struct ToyCheckpoint {
    /// GD step.
    pub step: usize,
    /// Training loss.
    pub loss: f64,
    /// The k(k−1) + 4 largest Hessian eigenvalues, largest first.
    pub eigenvalues: Vec<f64>,
    /// f_top(k − 1), f_top(k), f_top(k + 1) of the full gradient.
    pub ftop: [f64; 3],
    /// The σ² → 0 theory at this step.
    pub theory: ToyPoint,
}

/// One simulated run: k classes at noise σ.
#[derive(Debug, Clone, Serialize)]
pub struct ToyRun {
    /// Classes k.
    pub classes: usize,
    /// Noise σ.
    pub sigma: f64,
    /// Parameters k·d.
    pub params: usize,
    /// Per checkpoint.
    pub checkpoints: Vec<ToyCheckpoint>,
    /// Max over checkpoints and i ≤ k of |λ_i/λ_top − 1| (λ_top of the solved model).
    pub top_rel_error: f64,
    /// Max over checkpoints and k < i ≤ k(k−1) of |λ_i/λ_mid − 1| (NaN for k = 2, which has
    /// no such eigenvalues).
    pub middle_rel_error: f64,
    /// Max over checkpoints t ≥ 10 of |1/(λ₁ηt) − 1|: how far the late-time law 1/(ηt) that the
    /// paper's eq. 8 gives is from the measured top eigenvalue (for comparison with
    /// `top_rel_error`).
    pub late_law_rel_error: f64,
    /// At the last step: λ_k/λ_{k+1} (the outlier gap) and its σ² → 0 value k(1 − (k−1)ε)
    /// (k ≥ 3; for k = 2 the next eigenvalue is the bulk's).
    pub gap: f64,
    /// The gap's σ² → 0 value (NaN for k = 2, where it is infinite).
    pub gap_theory: f64,
    /// At the last step: the largest eigenvalue beyond the k(k−1) the theory makes non-zero,
    /// over λ_top (the bulk, zero at σ = 0).
    pub bulk_ratio: f64,
}

/// Orthonormal means μ_1…μ_k in ℝ^d: Gram–Schmidt on seeded Gaussian vectors.
fn orthonormal_means(k: usize, d: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::with_capacity(k);
    while out.len() < k {
        let mut v: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut *rng)).collect();
        for u in &out {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-8 {
            out.push(v.into_iter().map(|a| a / norm).collect());
        }
    }
    out
}

/// Softmax probabilities of every input under θ (row-major k × d): n × k.
fn probabilities(theta: &[f64], x: &[Vec<f64>], k: usize) -> Vec<Vec<f64>> {
    x.iter()
        .map(|xa| {
            let z: Vec<f64> = theta
                .chunks(xa.len())
                .map(|row| row.iter().zip(xa).map(|(a, b)| a * b).sum())
                .collect();
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            debug_assert_eq!(e.len(), k);
            e.into_iter().map(|v| v / s).collect()
        })
        .collect()
}

/// Loss and gradient (row-major k × d) of eq. 5 at θ.
fn loss_and_gradient(theta: &[f64], x: &[Vec<f64>], y: &[usize], k: usize) -> (f64, Vec<f64>) {
    let d = x[0].len();
    let p = probabilities(theta, x, k);
    let n = x.len() as f64;
    let mut g = vec![0.0; k * d];
    let mut loss = 0.0;
    for ((xa, &ya), pa) in x.iter().zip(y).zip(&p) {
        loss -= pa[ya].ln() / n;
        for c in 0..k {
            let w = (pa[c] - f64::from(u8::from(c == ya))) / n;
            g[c * d..(c + 1) * d]
                .iter_mut()
                .zip(xa)
                .for_each(|(gi, xi)| *gi += w * xi);
        }
    }
    (loss, g)
}

/// The exact Hessian of eq. 5 at θ: H[(c,i),(c',j)] = (1/n) Σ_a (p_ac δ_cc' − p_ac p_ac') x_ai x_aj.
fn hessian(theta: &[f64], x: &[Vec<f64>], k: usize) -> Mat<f64> {
    let d = x[0].len();
    let p = probabilities(theta, x, k);
    let n = x.len() as f64;
    let mut h = Mat::<f64>::zeros(k * d, k * d);
    for (xa, pa) in x.iter().zip(&p) {
        for c in 0..k {
            for c2 in 0..k {
                let m = (f64::from(u8::from(c == c2)) * pa[c] - pa[c] * pa[c2]) / n;
                if m == 0.0 {
                    continue;
                }
                for i in 0..d {
                    let mi = m * xa[i];
                    for j in 0..d {
                        h[(c * d + i, c2 * d + j)] += mi * xa[j];
                    }
                }
            }
        }
    }
    h
}

/// The fraction of g in the span of the eigenvectors of the `m` largest eigenvalues.
fn ftop(u: faer::MatRef<'_, f64>, g: &[f64], m: usize) -> f64 {
    let p = g.len();
    let g2: f64 = g.iter().map(|v| v * v).sum();
    let inside: f64 = (0..m)
        .map(|j| {
            let col = p - 1 - j; // ascending order: the largest last
            let dot: f64 = (0..p).map(|i| u[(i, col)] * g[i]).sum();
            dot * dot
        })
        .sum();
    inside / g2
}

/// Simulate k classes at noise σ (seeded) and record the checkpoints.
pub fn simulate(k: usize, sigma: f64, sc: &ToyScale, seed: u64) -> Result<ToyRun, StudyError> {
    let d = sc.dim;
    let invalid = |what: String| {
        StudyError::Nn(dlt_nn::NnError::Invalid {
            what,
            fix: "the toy model needs k ≥ 2 classes, k ≤ d, at least one input per class, σ ≥ 0 and a positive learning rate".into(),
        })
    };
    if k < 2 || k > d || sc.per_class == 0 || !(sigma >= 0.0) || !(sc.lr > 0.0) {
        return Err(invalid(format!(
            "toy model: k = {k}, d = {d}, {} per class, σ = {sigma}, η = {}",
            sc.per_class, sc.lr
        )));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ ((k as u64) << 8));
    let mu = orthonormal_means(k, d, &mut rng);
    let scale = sigma / (d as f64).sqrt();
    let mut x = Vec::with_capacity(k * sc.per_class);
    let mut y = Vec::with_capacity(k * sc.per_class);
    for (c, m) in mu.iter().enumerate() {
        for _ in 0..sc.per_class {
            let xa: Vec<f64> = m
                .iter()
                .map(|mi| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    mi + scale * z
                })
                .collect();
            x.push(xa);
            y.push(c);
        }
    }
    let steps = sc.checkpoints.clone();
    let theory = trajectory(k, sc.lr, &steps).map_err(|e| invalid(e.to_string()))?;
    let last = steps.iter().copied().max().unwrap_or(0);
    let shown = k * (k - 1) + 4;
    let mut theta = vec![0.0; k * d];
    let mut cps = Vec::new();
    for t in 0..=last {
        let (loss, g) = loss_and_gradient(&theta, &x, &y, k);
        if !loss.is_finite() {
            return Err(StudyError::Nn(dlt_nn::NnError::Diverged { step: t, loss }));
        }
        if let Some(pos) = steps.iter().position(|&s| s == t) {
            let h = hessian(&theta, &x, k);
            let evd = h.self_adjoint_eigen(Side::Lower).map_err(|_| {
                invalid(format!(
                    "toy model k = {k}: the eigensolver did not converge"
                ))
            })?;
            let p = k * d;
            let eig: Vec<f64> = (0..shown.min(p)).map(|j| evd.S()[p - 1 - j]).collect();
            let u = evd.U();
            cps.push(ToyCheckpoint {
                step: t,
                loss,
                eigenvalues: eig,
                ftop: [ftop(u, &g, k - 1), ftop(u, &g, k), ftop(u, &g, k + 1)],
                theory: theory[pos],
            });
        }
        theta.iter_mut().zip(&g).for_each(|(a, b)| *a -= sc.lr * b);
    }
    // Claims are read at the last checkpoint, in step order.
    cps.sort_by_key(|c| c.step);
    let end = cps.last().ok_or_else(|| invalid("no checkpoints".into()))?;
    let top = end.theory.top;
    let max_dev = |range: std::ops::Range<usize>, level: fn(&ToyPoint) -> f64| {
        cps.iter()
            .flat_map(|c| {
                let want = level(&c.theory);
                c.eigenvalues[range.clone()]
                    .iter()
                    .map(move |l| (l / want - 1.0).abs())
            })
            .nan_max()
    };
    let top_rel_error = max_dev(0..k, |t| t.top);
    let middle_rel_error = max_dev(k..k * (k - 1), |t| t.middle);
    let late_law_rel_error = cps
        .iter()
        .filter(|c| c.step >= 10)
        .map(|c| (1.0 / (c.eigenvalues[0] * sc.lr * c.step as f64) - 1.0).abs())
        .nan_max();
    let (n_top, n_mid, _) = multiplicities(k, d);
    let nonzero = n_top + n_mid;
    let gap = end.eigenvalues[k - 1] / end.eigenvalues[k];
    let gap_theory = if k >= 3 {
        top / end.theory.middle
    } else {
        f64::NAN
    };
    Ok(ToyRun {
        classes: k,
        sigma,
        params: k * d,
        bulk_ratio: end.eigenvalues[nonzero] / top,
        top_rel_error,
        middle_rel_error,
        late_law_rel_error,
        gap,
        gap_theory,
        checkpoints: cps,
    })
}

/// Every (k, σ) of the scale, in parallel.
pub fn toy_runs(cfg: &Config) -> Result<Vec<ToyRun>, StudyError> {
    let sc = &cfg.toy;
    let jobs: Vec<(usize, f64)> = sc
        .class_counts
        .iter()
        .flat_map(|&k| sc.sigmas.iter().map(move |&s| (k, s)))
        .collect();
    jobs.par_iter()
        .map(|&(k, s)| simulate(k, s, sc, cfg.seed ^ 0x70f))
        .collect()
}

/// Fitted exponent p of bulk_ratio ∝ σ^p over the σ of one class count (least squares in
/// log–log), NaN with fewer than two positive points.
pub fn bulk_exponent(runs: &[ToyRun], k: usize) -> f64 {
    let (sigmas, ratios): (Vec<f64>, Vec<f64>) = runs
        .iter()
        .filter(|r| r.classes == k && r.sigma > 0.0 && r.bulk_ratio > 0.0)
        .map(|r| (r.sigma, r.bulk_ratio))
        .unzip();
    if sigmas.len() < 2 {
        return f64::NAN;
    }
    fit_exponent(&sigmas, &ratios, &vec![0.0; sigmas.len()]).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At σ = 0 the simulation is the solved model: the top k eigenvalues equal ε(1 − (k−1)ε),
    /// the next k(k−2) equal ε/k, the rest vanish, the loss is −log(1 − (k−1)ε), and the
    /// gradient lies in the top k (f_top(k) = 1), to rounding (1e-9 relative; f64 sums over
    /// 3 inputs per class).
    #[test]
    fn sigma_zero_equals_the_solved_model() {
        let sc = ToyScale {
            class_counts: vec![],
            dim: 12,
            per_class: 3,
            sigmas: vec![],
            lr: 1.0,
            checkpoints: vec![0, 7, 200],
        };
        for k in [2usize, 3, 5] {
            let r = simulate(k, 0.0, &sc, 1).unwrap();
            for c in &r.checkpoints {
                let th = c.theory;
                assert!((c.loss - th.loss).abs() < 1e-12, "k {k} t {}", c.step);
                for (i, l) in c.eigenvalues.iter().enumerate() {
                    let want = if i < k {
                        th.top
                    } else if i < k * (k - 1) {
                        th.middle
                    } else {
                        0.0
                    };
                    assert!(
                        (l - want).abs() < 1e-9 * th.top,
                        "k {k} t {} λ_{}: {l} vs {want}",
                        c.step,
                        i + 1
                    );
                }
                if c.step > 0 {
                    assert!((c.ftop[1] - 1.0).abs() < 1e-9, "f_top(k) = {}", c.ftop[1]);
                }
            }
            assert!(r.top_rel_error < 1e-9);
        }
    }

    /// The exact Hessian against central differences of the gradient (step 1e-5: truncation
    /// O(h²·|∂³g|) ≈ 1e-10, rounding 1e-16/1e-5 ≈ 1e-11; we allow 1e-7).
    #[test]
    fn hessian_matches_differences_of_the_gradient() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let (k, d) = (3usize, 4usize);
        let x: Vec<Vec<f64>> = (0..7)
            .map(|_| (0..d).map(|_| StandardNormal.sample(&mut rng)).collect())
            .collect();
        let y: Vec<usize> = (0..7).map(|a| a % k).collect();
        let theta: Vec<f64> = (0..k * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let h = hessian(&theta, &x, k);
        let eps = 1e-5;
        for j in 0..k * d {
            let (mut tp, mut tm) = (theta.clone(), theta.clone());
            tp[j] += eps;
            tm[j] -= eps;
            let (gp, gm) = (
                loss_and_gradient(&tp, &x, &y, k).1,
                loss_and_gradient(&tm, &x, &y, k).1,
            );
            for i in 0..k * d {
                let fd = (gp[i] - gm[i]) / (2.0 * eps);
                assert!((fd - h[(i, j)]).abs() < 1e-7, "H[{i},{j}]");
            }
        }
    }

    #[test]
    fn exponent_of_a_power_law() {
        let mk = |s: f64, b: f64| ToyRun {
            classes: 2,
            sigma: s,
            params: 0,
            checkpoints: vec![],
            top_rel_error: 0.0,
            middle_rel_error: f64::NAN,
            late_law_rel_error: 0.0,
            gap: 0.0,
            gap_theory: f64::NAN,
            bulk_ratio: b,
        };
        let runs = vec![
            mk(0.2, 3.0 * 0.04),
            mk(0.1, 3.0 * 0.01),
            mk(0.05, 3.0 * 0.0025),
        ];
        assert!((bulk_exponent(&runs, 2) - 2.0).abs() < 1e-12);
        assert!(bulk_exponent(&runs, 5).is_nan());
    }
}
