//! The solvable toy model of Gur-Ari, Roberts & Dyer (arXiv 1812.04754, §3): softmax regression
//! without biases, θ_y ∈ ℝ^d for each of k classes, on a Gaussian mixture whose class means
//! μ_c are orthonormal, in the limit σ² → 0 where every input of class c sits at μ_c, trained
//! by full-batch gradient descent on L = −(1/n) Σ_a log softmax(θ·x_a)_{y_a} (their eq. 5) from
//! θ = 0 with equal class sizes. The paper solves k = 2 at late times (eqs. 6–8: two equal top
//! eigenvalues 1/(ηt), the rest zero, the gradient inside the top pair) and states the k-class
//! case from experiment; here it is solved for every k and every step
//! (docs/derivations/hessian.md#toy-model):
//!
//! * By symmetry each class's input keeps one logit gap s between its own class and every
//!   other; the probability of each wrong class is ε(s) = 1/(eˢ + k − 1), and gradient descent
//!   moves the gap by exactly s_{t+1} = s_t + η ε(s_t), s_0 = 0 (the logits are linear in θ).
//! * The Hessian H = (1/k) Σ_c (diag p_c − p_c p_cᵀ) ⊗ μ_c μ_cᵀ has k eigenvalues
//!   λ_top = ε(1 − (k−1)ε) (eigenvectors u_c ⊗ μ_c, u_c = (k−1)e_c − Σ_{j≠c} e_j), k(k−2)
//!   eigenvalues λ_mid = ε/k, and k·d − k(k−1) zeros (the flat directions); so the top k are
//!   separated from the next by λ_top/λ_mid = k(1 − (k−1)ε) → k.
//! * The gradient is −(ε/k) Σ_c u_c ⊗ μ_c: it lies in the top-k subspace, |g|² = (k−1)ε², and
//!   the loss is −log(1 − (k−1)ε).
//! * At late times e^{s_t} ≈ ηt, so λ_top ≈ 1/(ηt): the paper's eq. 8 for k = 2. (Its eq. 7
//!   gives the gradient as 2(μ₂ − μ₁)/(ηt); with eq. 5's loss it is (μ₂ − μ₁)/(2ηt), the form
//!   above at k = 2, ε = 1/(ηt) — eqs. 6 and 8 agree with ours.)

use crate::TheoryError;

/// The σ² → 0 toy model at one step of gradient descent.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ToyPoint {
    /// Step t.
    pub step: usize,
    /// Logit gap s_t between an input's own class and each other class.
    pub gap: f64,
    /// ε_t = 1/(e^{s_t} + k − 1), the probability of each wrong class.
    pub wrong_prob: f64,
    /// Loss −log(1 − (k−1)ε_t).
    pub loss: f64,
    /// The k-fold top eigenvalue ε(1 − (k−1)ε).
    pub top: f64,
    /// The k(k−2)-fold next eigenvalue ε/k (multiplicity 0 for k = 2).
    pub middle: f64,
    /// |g|² = (k−1)ε².
    pub grad_norm_sq: f64,
}

impl ToyPoint {
    fn at(step: usize, gap: f64, k: usize) -> Self {
        let km1 = (k - 1) as f64;
        // 1/(eˢ + k − 1), written to stay finite for large s.
        let wrong_prob = (-gap).exp() / (1.0 + km1 * (-gap).exp());
        let right = 1.0 - km1 * wrong_prob;
        Self {
            step,
            gap,
            wrong_prob,
            loss: km1.mul_add((-gap).exp(), 1.0).ln(),
            top: wrong_prob * right,
            middle: wrong_prob / k as f64,
            grad_norm_sq: km1 * wrong_prob * wrong_prob,
        }
    }
}

/// Multiplicities of (λ_top, λ_mid, 0) for k classes in d dimensions: (k, k(k−2), kd − k(k−1)).
pub fn multiplicities(classes: usize, dim: usize) -> (usize, usize, usize) {
    let k = classes;
    (k, k * (k - 2), k * dim - k * (k - 1))
}

/// The toy model at each of `steps` (any order) for `classes` ≥ 2 classes and learning rate η,
/// from θ = 0. Errors: fewer than 2 classes, η not positive and finite.
pub fn trajectory(classes: usize, eta: f64, steps: &[usize]) -> Result<Vec<ToyPoint>, TheoryError> {
    if classes < 2 {
        return Err(TheoryError::Invalid {
            flag: "--toy-classes",
            msg: format!("{classes} classes: the model needs at least 2"),
        });
    }
    if !(eta.is_finite() && eta > 0.0) {
        return Err(TheoryError::Invalid {
            flag: "--toy-lr",
            msg: format!("learning rate {eta} must be positive and finite"),
        });
    }
    let last = steps.iter().copied().max().unwrap_or(0);
    let mut gaps = Vec::with_capacity(last + 1);
    let mut s = 0.0f64;
    for _ in 0..=last {
        gaps.push(s);
        let eps = (-s).exp() / (1.0 + (classes - 1) as f64 * (-s).exp());
        s += eta * eps;
    }
    Ok(steps
        .iter()
        .map(|&t| ToyPoint::at(t, gaps[t], classes))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The algebra of [`ToyPoint`] (ε = 1/k at s = 0, loss = −log p_right, λ_top/λ_mid =
    /// k·p_right) and the late-time law: the flow ds/dt = η/(eˢ + k − 1) integrates to
    /// eˢ + (k−1)s = ηt + 1, so λ_top·ηt = 1 + O((k−1) log(ηt)/ηt) (≤ 2e-3 at ηt = 5·10⁴, k =
    /// 10). The simulation of the model itself is checked against this in the hessian study's
    /// toy part (`dlt_studies::hessian::toy`).
    #[test]
    fn identities_and_the_late_time_law() {
        for k in [2usize, 5, 10] {
            let pts = trajectory(k, 0.5, &[0, 10, 100_000]).unwrap();
            let p0 = pts[0];
            assert!((p0.wrong_prob - 1.0 / k as f64).abs() < 1e-15);
            assert!((p0.loss - (k as f64).ln()).abs() < 1e-12);
            for p in &pts {
                let right = 1.0 - (k - 1) as f64 * p.wrong_prob;
                assert!((p.loss + right.ln()).abs() < 1e-12);
                assert!((p.top / p.middle - k as f64 * right).abs() < 1e-9 * k as f64);
            }
            // e^{s_t} = ηt + O(log t): λ_top·ηt = 1 + O(log t / t).
            let late = pts[2];
            let rel = late.top * 0.5 * 100_000.0 - 1.0;
            assert!(rel.abs() < 1e-3 * (k as f64), "k = {k}: {rel}");
        }
        assert_eq!(multiplicities(10, 64), (10, 80, 550));
        assert!(trajectory(1, 0.5, &[1]).is_err());
        assert!(trajectory(3, f64::NAN, &[1]).is_err());
    }
}
