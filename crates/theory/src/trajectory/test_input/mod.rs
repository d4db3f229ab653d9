//! The O(1/n) correction to the mean output on a **test** input x_β of networks trained by GD on
//! one input x_A (PDLT, Roberts–Yaida–Hanin, arXiv 2106.10165, ch. ∞ for the finite-width
//! dynamics; the one-training-input, finite-t form and the two-input recursions below are
//! derived for this project: docs/derivations/trained_test_input.md).
//!
//! Set-up as [`super::mean_trajectory`] (ℒ = ½(z_A − y)², a = 1 − ηΘ_AA, one output, NTK
//! parameterisation with C_b = λ_b = 0) with a second input x_β the network is never trained on.
//! At infinite width E[z_{β,t}] = (Θ_βA/Θ_AA) y (1 − a^t); at width n
//!
//!   E[z_{β,t}] = (Θ_βA/Θ_AA) y (1 − a^t) + C_β(t)/n + O(1/n²),
//!
//! C_β = C_β^frozen + C_β^dNTK + C_β^ddNTK of docs/derivations/trained_test_input.md#expansion,
//! built from fifteen output statistics ([`TestInputStats`]). Unlike the training input's C(t),
//! C_β(t) does not vanish as t → ∞: the trained function keeps an O(1/n) offset off the data.
//!
//! The statistics are the N-input ones of [`super::dataset`] at N = 2 ([`test_input_stats`]):
//! for depth 2 from the definitions (exact at every width), for depth ≥ 3 by propagating the
//! pair tensors layer by layer (docs/derivations/trained_dataset.md#deep).

use super::dataset::deep::deep_stats_with;
use super::dataset::moments::MomentTable;
use super::dataset::two_layer::{two_layer_stats_with, StatsConfig};
use super::{responses, OutputStats};
use crate::activation::Activation;
use crate::gauss::QuadConfig;
use crate::TheoryError;
use serde::{Deserialize, Serialize};

/// The output statistics C_β(t) needs (one output neuron; n = width of the last hidden layer;
/// docs/derivations/trained_test_input.md#expansion, table "The statistics").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestInputStats {
    /// K_AA.
    #[serde(rename = "K")]
    pub k: f64,
    /// K_βA.
    #[serde(rename = "K_test")]
    pub k_test: f64,
    /// Θ_AA.
    pub theta: f64,
    /// Θ_βA.
    pub theta_test: f64,
    /// Θ¹_AA: E[H_AA] = Θ_AA + Θ¹_AA/n.
    pub theta1: f64,
    /// Θ¹_βA.
    pub theta1_test: f64,
    /// n Var H_AA.
    pub ntk_variance: f64,
    /// n Cov(H_βA, H_AA).
    pub ntk_covariance: f64,
    /// 𝒫_AA = n E[dH_AAA z_A].
    pub dntk: f64,
    /// 𝒫_β1 = n E[dH_βAA z_A] (the test output differentiated).
    pub dntk_test1: f64,
    /// 𝒫_β2 = n E[dH_AβA z_A] (the test input on a leg).
    pub dntk_test2: f64,
    /// ℐ_A = n E[ddI_AAAA].
    pub ddntk_i: f64,
    /// ℐ_β1 = n E[ddI_βAAA].
    pub ddntk_i_test1: f64,
    /// ℐ_β2 = n E[ddI_AβAA].
    pub ddntk_i_test2: f64,
    /// 𝒥_A = n E[ddII_AAAA].
    pub ddntk_ii: f64,
    /// 𝒥_β1 = n E[ddII_βAAA] (= n E[ddII_AβAA]).
    pub ddntk_ii_test1: f64,
    /// 𝒥_β3 = n E[ddII_AAβA] (= n E[ddII_AAAβ]).
    pub ddntk_ii_test3: f64,
}

impl TestInputStats {
    /// The training input's statistics in the single-input form of [`OutputStats`].
    pub fn training_input(&self) -> OutputStats {
        OutputStats {
            k: self.k,
            theta: self.theta,
            theta1: self.theta1,
            ntk_variance: self.ntk_variance,
            dntk: self.dntk,
            ddntk_i: self.ddntk_i,
            ddntk_ii: self.ddntk_ii,
        }
    }

    /// The statistics of a test input equal to the training input (every β-statistic set to its
    /// A-value), for which C_β = C.
    pub fn at_training_input(s: &OutputStats) -> Self {
        Self {
            k: s.k,
            k_test: s.k,
            theta: s.theta,
            theta_test: s.theta,
            theta1: s.theta1,
            theta1_test: s.theta1,
            ntk_variance: s.ntk_variance,
            ntk_covariance: s.ntk_variance,
            dntk: s.dntk,
            dntk_test1: s.dntk,
            dntk_test2: s.dntk,
            ddntk_i: s.ddntk_i,
            ddntk_i_test1: s.ddntk_i,
            ddntk_i_test2: s.ddntk_i,
            ddntk_ii: s.ddntk_ii,
            ddntk_ii_test1: s.ddntk_ii,
            ddntk_ii_test3: s.ddntk_ii,
        }
    }
}

/// The network and inputs of [`test_input_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestInputConfig {
    /// Depth L ≥ 2 (Dense layers; L − 1 hidden layers of width n).
    pub depth: usize,
    /// C_W of every layer (C_b = 0).
    pub cw: f64,
    /// λ_W of every layer (λ_b = 0).
    pub lambda_w: f64,
    /// The inputs' Gram matrix x_a·x_b/n₀: [G_AA, G_Aβ, G_ββ].
    pub gram: [f64; 3],
    /// Gauss–Hermite nodes of the 1-D rule and per dimension of the 2-D rule ([`DEFAULT_NODES`];
    /// for kernels ≤ 1 — above that the moments use the split and polar rules of
    /// [`crate::gauss::expect_nd`], whose orders are fixed).
    pub nodes: usize,
}

/// Gauss–Hermite nodes per dimension that converge the statistics to ~1e-12 for critical tanh
/// and sin at depth ≤ 3 (test `the_rule_is_converged`).
pub const DEFAULT_NODES: usize = 256;

/// Refuse activations the recursions cannot take: they need σ'' and σ''' as functions.
pub fn check_activation(act: &dyn Activation) -> Result<(), TheoryError> {
    let probe = [-1.3, 0.2, 0.9];
    if act.kink_at_zero()
        || probe
            .iter()
            .any(|&z| act.d2(z).is_none() || act.d3(z).is_none())
    {
        return Err(TheoryError::Invalid {
            flag: "--activation",
            msg: format!(
                "the test-input recursions need a smooth activation with σ'' and σ''' (tanh, sin, \
                 gelu, …); '{}' has none",
                act.name()
            ),
        });
    }
    Ok(())
}

/// The output kernel on both inputs, K^(L) (2 × 2 row-major): K^(l+1)_ab = C_W⟨σ_aσ_b⟩ over
/// K^(l), from K^(1) = C_W G.
fn output_kernel(
    act: &dyn Activation,
    gram: &[f64],
    depth: usize,
    cw: f64,
    quad: &QuadConfig,
) -> Result<Vec<f64>, TheoryError> {
    let mut k: Vec<f64> = gram.iter().map(|g| cw * g).collect();
    for _ in 1..depth {
        let m = MomentTable::new(k.clone(), 2);
        let pairs = [(0, 0), (0, 1), (1, 1)];
        for &(a, b) in &pairs {
            m.e(&[(0, a), (0, b)]);
        }
        m.integrate(act, quad, "--test-input")?;
        for &(a, b) in &pairs {
            k[a * 2 + b] = cw * m.e(&[(0, a), (0, b)]);
            k[b * 2 + a] = k[a * 2 + b];
        }
    }
    Ok(k)
}

/// The fifteen output statistics for a depth-2 or depth-3 MLP and the inputs of `cfg`
/// (docs/derivations/trained_test_input.md#sources for depth 2, #output-step for depth 3):
/// the N-input statistics of [`super::dataset`] at N = 2 (training input 0, test input 1), with
/// `cfg.nodes` Gauss–Hermite nodes in the 1- and 2-D rules.
pub fn test_input_stats(
    act: &dyn Activation,
    cfg: &TestInputConfig,
) -> Result<TestInputStats, TheoryError> {
    check_activation(act)?;
    let [gaa, gab, gbb] = cfg.gram;
    if !(gaa > 0.0 && gbb > 0.0 && gab * gab <= gaa * gbb * (1.0 + 1e-12)) {
        return Err(TheoryError::Invalid {
            flag: "--test-input",
            msg: format!(
                "the Gram matrix [[{gaa}, {gab}], [{gab}, {gbb}]] of the two inputs is not one of \
                 two non-zero vectors"
            ),
        });
    }
    if !(cfg.cw > 0.0 && cfg.lambda_w > 0.0 && cfg.nodes >= 8) {
        return Err(TheoryError::Invalid {
            flag: "--cw",
            msg: format!(
                "need C_W > 0, λ_W > 0 and ≥ 8 quadrature nodes (got {}, {}, {})",
                cfg.cw, cfg.lambda_w, cfg.nodes
            ),
        });
    }
    if cfg.depth < 2 {
        return Err(TheoryError::Invalid {
            flag: "--depth",
            msg: format!(
                "a network of depth {} has no hidden layer; use depth ≥ 2",
                cfg.depth
            ),
        });
    }
    let det = gaa * gbb - gab * gab;
    if det <= 1e-12 * gaa * gbb {
        return Err(TheoryError::Invalid {
            flag: "--test-input",
            msg: format!(
                "the test input is (numerically) parallel to the training input (det G = {det:e}); \
                 the statistics need two distinct inputs (for the training input itself use its \
                 single-input statistics)"
            ),
        });
    }
    let gram = vec![gaa, gab, gab, gbb];
    let quad = QuadConfig {
        gh1: cfg.nodes,
        gh2: cfg.nodes,
        ..QuadConfig::default()
    };
    let net = StatsConfig {
        cw: cfg.cw,
        lambda_w: cfg.lambda_w,
        gram: gram.clone(),
        n_train: 1,
        nodes: QuadConfig::default().ghn,
    };
    let s = match cfg.depth {
        2 => two_layer_stats_with(act, &net, &quad)?,
        d => deep_stats_with(act, &net, d, &quad)?,
    };
    let k = output_kernel(act, &gram, cfg.depth, cfg.cw, &quad)?;
    let ix = |a: &[usize]| a.iter().fold(0, |acc, &i| acc * 2 + i);
    Ok(TestInputStats {
        k: s.k[0],
        k_test: k[2],
        theta: s.theta[0],
        theta_test: s.theta[ix(&[1, 0])],
        theta1: s.theta1[0],
        theta1_test: s.theta1[ix(&[1, 0])],
        ntk_variance: s.ntk_cov[0],
        ntk_covariance: s.ntk_cov[ix(&[1, 0, 0, 0])],
        dntk: s.dntk_z[0],
        dntk_test1: s.dntk_z[ix(&[1, 0, 0])],
        dntk_test2: s.dntk_z[ix(&[0, 1, 0])],
        ddntk_i: s.ddi[0],
        ddntk_i_test1: s.ddi[ix(&[1, 0, 0, 0])],
        ddntk_i_test2: s.ddi[ix(&[0, 1, 0, 0])],
        ddntk_ii: s.ddii[0],
        ddntk_ii_test1: s.ddii[ix(&[1, 0, 0, 0])],
        ddntk_ii_test3: s.ddii[ix(&[0, 0, 1, 0])],
    })
}

/// One step of the test input's mean trajectory; the four parts add up to `coefficient`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestPoint {
    /// GD step t.
    pub t: usize,
    /// Infinite-width mean (Θ_βA/Θ_AA) y (1 − a^t).
    pub infinite: f64,
    /// C_β(t): E[z_{β,t}] = infinite + C_β(t)/n + O(1/n²).
    pub coefficient: f64,
    /// The Θ¹ part of the frozen-kernel term.
    pub theta1_term: f64,
    /// The NTK-fluctuation part (variance and covariance) of the frozen-kernel term.
    pub fluctuation_term: f64,
    /// The dNTK part.
    pub dntk_term: f64,
    /// The ddNTK part.
    pub ddntk_term: f64,
}

/// C_β(t) for t = 0..=steps (docs/derivations/trained_test_input.md#expansion), for GD with step
/// η towards target y on the training input. With S_t = Σ_{u<t} a^u, W_t = Σ_{u<t} S_u a^u,
/// V_t = Σ_{u<t} a^{2u} and the single-input responses c_d, c_r, c_s ([`super::responses`]):
///
///   frozen: y[Θ¹_βA g + Θ_βA Θ¹_AA g' + ½Θ_βA Var_AA g'' + Cov_βA g'], g(h) = (1 − (a − ηh)^t)/(Θ_AA + h);
///   dNTK:   −2y[−ηΘ_βA 𝒫_AA Σ_{u<t} c_d(u) + η²((𝒫_β1 + 𝒫_β2)W_t + ½𝒫_β1 V_t)];
///   ddNTK:  −(y³ + 3yK_AA) Σ_{u<t}{−ηΘ_βA(ℐ_A c_r(u) + 𝒥_A c_s(u)) − η³a^u[J W_u + (½ℐ_β1 + ½ℐ_β2 + 𝒥_β1)V_u]
///                                  − ½η³(ℐ_β1 + 2𝒥_β1)S_u a^{2u} − ⅙η³ℐ_β1 a^{3u}},
///   J = ℐ_β1 + ℐ_β2 + 3𝒥_β1 + 𝒥_β3.
///
/// Requires 0 < ηΘ_AA < 2.
pub fn test_input_trajectory(
    s: &TestInputStats,
    eta: f64,
    y: f64,
    steps: usize,
) -> Result<Vec<TestPoint>, TheoryError> {
    if !(eta > 0.0 && eta * s.theta < 2.0 && y.is_finite()) {
        return Err(TheoryError::Invalid {
            flag: "--eta",
            msg: format!(
                "need 0 < ηΘ_AA < 2 and a finite target (got ηΘ_AA = {}, y = {y})",
                eta * s.theta
            ),
        });
    }
    let th = s.theta;
    let a = 1.0 - eta * th;
    let resp = responses(a, eta, steps);
    let (e2, e3) = (eta * eta, eta * eta * eta);
    let eps3 = y * y * y + 3.0 * y * s.k;
    let j = s.ddntk_i_test1 + s.ddntk_i_test2 + 3.0 * s.ddntk_ii_test1 + s.ddntk_ii_test3;
    let (mut sum_cd, mut dd_sum) = (0.0f64, 0.0f64);
    let mut out = Vec::with_capacity(steps + 1);
    for (t, r) in resp.iter().enumerate() {
        let (s_t, w_t, v_t) = (r.s, r.w, r.v);
        let tf = t as f64;
        let pw = |k: i32| if k < 0 { 0.0 } else { a.powi(k) };
        let n0 = 1.0 - a.powi(t as i32);
        let n1 = tf * eta * pw(t as i32 - 1);
        let n2 = -tf * (tf - 1.0) * e2 * pw(t as i32 - 2);
        let g0 = n0 / th;
        let g1 = n1 / th - n0 / (th * th);
        let g2 = n2 / th - 2.0 * n1 / (th * th) + 2.0 * n0 / th.powi(3);
        let theta1_term = y * (s.theta1_test * g0 + s.theta_test * s.theta1 * g1);
        let fluctuation_term =
            y * (0.5 * s.theta_test * s.ntk_variance * g2 + s.ntk_covariance * g1);
        let dntk_term = -2.0
            * y
            * (-eta * s.theta_test * s.dntk * sum_cd
                + e2 * ((s.dntk_test1 + s.dntk_test2) * w_t + 0.5 * s.dntk_test1 * v_t));
        let ddntk_term = -eps3 * dd_sum;
        out.push(TestPoint {
            t,
            infinite: s.theta_test / th * y * n0,
            coefficient: theta1_term + fluctuation_term + dntk_term + ddntk_term,
            theta1_term,
            fluctuation_term,
            dntk_term,
            ddntk_term,
        });
        // Advance the sums from step t to t + 1 (the summands use the values of step t).
        let (au, a2u) = (a.powi(t as i32), a.powi(2 * t as i32));
        dd_sum += -eta * s.theta_test * (s.ddntk_i * r.cr + s.ddntk_ii * r.cs)
            - e3 * au
                * (j * w_t
                    + (0.5 * s.ddntk_i_test1 + 0.5 * s.ddntk_i_test2 + s.ddntk_ii_test1) * v_t)
            - 0.5 * e3 * (s.ddntk_i_test1 + 2.0 * s.ddntk_ii_test1) * s_t * a2u
            - e3 / 6.0 * s.ddntk_i_test1 * a2u * au;
        sum_cd += r.cd;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
