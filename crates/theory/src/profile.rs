//! Single-input layer-to-layer recursions: kernel K, susceptibilities χ_∥ and χ_⊥, four-point
//! vertex V (order 1/n), NTK mean Θ and NTK fluctuations A, B, D, F (order 1/n).
//!
//! Sources: PDLT (Roberts, Yaida, Hanin, arXiv 2106.10165) ch. 4 (K, V: eqs. (4.118)/(5.x) in
//! single-input form), ch. 8 (Θ and its fluctuations); normalisations and the recursions derived
//! for this project (A, B, D, F; residual V) in docs/derivations/theory.md; the orthogonal-weight
//! V recursion in docs/derivations/orthogonal.md#haar-vertex (Day, Kahn, Roberts, arXiv
//! 2310.07765).

use crate::activation::Act;
use crate::gauss::QuadConfig;
use crate::moments::{moments1, Method, Moments1};
use crate::TheoryError;
use serde::{Deserialize, Serialize};

/// Weight ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// W_ij ~ N(0, C_W/n_{l−1}) i.i.d.
    #[default]
    Gaussian,
    /// W = √C_W · O with O Haar-distributed on O(n) (square layers).
    Orthogonal,
}

impl std::str::FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gaussian" => Ok(Init::Gaussian),
            "orthogonal" => Ok(Init::Orthogonal),
            _ => Err(format!("unknown init '{s}': use gaussian or orthogonal")),
        }
    }
}

/// An MLP ensemble: activation, initialisation hyperparameters, optional residual connection
/// z^(l+1) = γ z^(l) + ξ (b + W σ(z^(l))) (γ = 0, ξ = 1 is the plain MLP;
/// docs/derivations/theory.md#residual-mlp).
#[derive(Debug, Clone)]
pub struct Ensemble {
    /// Activation σ.
    pub act: Act,
    /// Bias variance C_b ≥ 0.
    pub cb: f64,
    /// Weight variance C_W > 0 (weights have variance C_W/n_{l−1}).
    pub cw: f64,
    /// Weight ensemble (Gaussian or Haar-orthogonal).
    pub init: Init,
    /// Residual skip coefficient γ (0 for a plain MLP).
    pub gamma: f64,
    /// Residual branch coefficient ξ (1 for a plain MLP).
    pub xi: f64,
    /// Quadrature orders for the Gaussian expectations.
    pub quad: QuadConfig,
}

impl Ensemble {
    /// A plain MLP (γ = 0, ξ = 1) with Gaussian weights and default quadrature.
    pub fn new(act: Act, cb: f64, cw: f64) -> Self {
        Self {
            act,
            cb,
            cw,
            init: Init::Gaussian,
            gamma: 0.0,
            xi: 1.0,
            quad: QuadConfig::default(),
        }
    }
    /// The same ensemble with weight initialisation `init`.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    /// True when γ ≠ 0 or ξ ≠ 1, i.e. the residual recursions apply.
    pub fn is_residual(&self) -> bool {
        self.gamma != 0.0 || self.xi != 1.0
    }
    pub(crate) fn method(&self) -> Method {
        Method::for_activation(&*self.act, self.quad)
    }
    pub(crate) fn validate(&self) -> Result<(), TheoryError> {
        if !(self.cb >= 0.0) || !self.cb.is_finite() {
            return Err(TheoryError::Invalid {
                flag: "--cb",
                msg: format!("C_b must be a finite number ≥ 0, got {}", self.cb),
            });
        }
        if !(self.cw > 0.0) || !self.cw.is_finite() {
            return Err(TheoryError::Invalid {
                flag: "--cw",
                msg: format!("C_W must be a finite number > 0, got {}", self.cw),
            });
        }
        if !self.gamma.is_finite() || !self.xi.is_finite() || self.xi == 0.0 {
            return Err(TheoryError::Invalid {
                flag: "--gamma",
                msg: "γ must be finite and ξ finite and non-zero".into(),
            });
        }
        if self.init == Init::Orthogonal && self.is_residual() {
            return Err(TheoryError::Invalid {
                flag: "--gamma",
                msg: "orthogonal weights with a residual connection are not derived; use --init gaussian or --gamma 0".into(),
            });
        }
        Ok(())
    }
}

/// Layer-dependent NTK learning rates (PDLT §7.1;
/// docs/derivations/theory.md#learning-rate-tensor): λ_b^(l) = λ_b (or λ_b/l) and
/// λ_W^(l) = λ_W (the 1/n_{l−1} is in the definition of the learning-rate tensor).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LearningRates {
    /// Bias learning rate λ_b.
    pub lambda_b: f64,
    /// Weight learning rate λ_W.
    pub lambda_w: f64,
    /// λ_b^(l) = λ_b / l (the K* = 0 equivalence-principle scaling for tanh,
    /// docs/derivations/theory.md#learning-rate-scaling).
    pub b_over_l: bool,
}

impl Default for LearningRates {
    fn default() -> Self {
        Self {
            lambda_b: 1.0,
            lambda_w: 1.0,
            b_over_l: false,
        }
    }
}

impl LearningRates {
    /// (λ_b^(l), λ_W^(l)) for layer `l` (1-based).
    pub fn at(&self, l: usize) -> (f64, f64) {
        let lb = if self.b_over_l {
            self.lambda_b / l as f64
        } else {
            self.lambda_b
        };
        (lb, self.lambda_w)
    }
}

/// One row of a single-input profile: statistics of layer l.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Layer index l (1-based).
    pub l: usize,
    /// Kernel K^(l).
    #[serde(rename = "K")]
    pub k: f64,
    /// Parallel susceptibility χ_∥ = γ² + ξ²C_W ∂_K⟨σ²⟩_K at K^(l).
    pub chi_par: f64,
    /// Perpendicular susceptibility χ_⊥ = γ² + ξ²C_W⟨σ'²⟩_K at K^(l).
    pub chi_perp: f64,
    /// Four-point vertex V^(l) (the connected four-point function is V/n).
    #[serde(rename = "V")]
    pub v: f64,
    /// NTK mean Θ^(l).
    pub theta: f64,
    /// NTK fluctuation A = n Cov(Ĥ_ii, Ĥ_jj), i ≠ j (docs/derivations/theory.md#ntk-fluctuations);
    /// None for orthogonal weights or residual networks.
    #[serde(rename = "A")]
    pub a: Option<f64>,
    /// NTK fluctuation B = n E[Ĥ_ij²], i ≠ j; None where A is.
    #[serde(rename = "B")]
    pub b: Option<f64>,
    /// Cross-correlation D = n Cov(z_i², Ĥ_jj), i ≠ j; None where A is.
    #[serde(rename = "D")]
    pub d: Option<f64>,
    /// Cross-correlation F = n E[z_i z_j Ĥ_ij], i ≠ j; None where A is.
    #[serde(rename = "F")]
    pub f: Option<f64>,
}

impl Layer {
    /// Normalised vertex V/K² (its growth with depth is the slope ν).
    pub fn v_over_k2(&self) -> f64 {
        self.v / (self.k * self.k)
    }
    /// A/Θ², the normalised NTK-fluctuation A.
    pub fn a_over_theta2(&self) -> Option<f64> {
        self.a.map(|a| a / (self.theta * self.theta))
    }
    /// B/Θ², the normalised NTK-fluctuation B.
    pub fn b_over_theta2(&self) -> Option<f64> {
        self.b.map(|b| b / (self.theta * self.theta))
    }
    /// D/(KΘ), the normalised cross-correlation D.
    pub fn d_over_ktheta(&self) -> Option<f64> {
        self.d.map(|d| d / (self.k * self.theta))
    }
    /// F/(KΘ), the normalised cross-correlation F.
    pub fn f_over_ktheta(&self) -> Option<f64> {
        self.f.map(|f| f / (self.k * self.theta))
    }
    /// A statistic by its `results.json` name (the names [`crate::mc`] estimates).
    pub fn stat(&self, name: &str) -> Option<f64> {
        match name {
            "K" => Some(self.k),
            "V" => Some(self.v),
            "V_over_K2" => Some(self.v_over_k2()),
            "theta" => Some(self.theta),
            "A" => self.a,
            "B" => self.b,
            "D" => self.d,
            "F" => self.f,
            "A_over_theta2" => self.a_over_theta2(),
            "B_over_theta2" => self.b_over_theta2(),
            "D_over_Ktheta" => self.d_over_ktheta(),
            "F_over_Ktheta" => self.f_over_ktheta(),
            "chi_par" => Some(self.chi_par),
            "chi_perp" => Some(self.chi_perp),
            _ => None,
        }
    }
}

/// Inputs of a single-input profile.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    /// The network ensemble whose statistics are propagated.
    pub ensemble: Ensemble,
    /// K^(1) = C_b + C_W |x|²/n₀.
    pub k1: f64,
    /// V^(1) (0 for a Gaussian first layer; −2(K^(1) − C_b)² if it is orthogonal too).
    pub v1: f64,
    /// Number of layers L; rows are produced for l = 1..=L.
    pub depth: usize,
    /// Learning rates entering Θ and A, B, D, F.
    pub lr: LearningRates,
}

impl ProfileConfig {
    /// |x|²/n₀ implied by K^(1).
    pub fn input_norm(&self) -> f64 {
        (self.k1 - self.ensemble.cb) / self.ensemble.cw
    }
    /// Θ^(1) = λ_b^(1) + λ_W^(1)|x|²/n₀ (docs/derivations/theory.md#ntk-mean).
    pub fn theta1(&self) -> f64 {
        let (lb, lw) = self.lr.at(1);
        lb + lw * self.input_norm()
    }
}

/// One step of the single-input recursions, from layer l (statistics `cur`, moments `m` at
/// K^(l)) to layer l+1 with that layer's learning rates (lb, lw).
fn step(e: &Ensemble, m: &Moments1, cur: &Layer, lb: f64, lw: f64) -> Layer {
    let (cw, g2, x2) = (e.cw, e.gamma * e.gamma, e.xi * e.xi);
    let k = cur.k;
    let chi_par = g2 + x2 * cw * m.ds2();
    let chi_perp = g2 + x2 * cw * m.d2;
    let k_next = g2 * k + x2 * (e.cb + cw * m.s2);
    // V' = χ_∥²V + ξ⁴C_W²Var(σ²) + 2γ²ξ²C_W(⟨z²σ²⟩ − K⟨σ²⟩)
    // (docs/derivations/theory.md#four-point-vertex, docs/derivations/theory.md#residual-mlp)
    let mut v_next = chi_par * chi_par * cur.v
        + x2 * x2 * cw * cw * m.var_s2()
        + 2.0 * g2 * x2 * cw * (m.z2s2 - k * m.s2);
    if e.init == Init::Orthogonal {
        // Haar weights: the source is the fourth cumulant of σ
        // (docs/derivations/orthogonal.md#haar-vertex).
        v_next -= 2.0 * cw * cw * m.s2 * m.s2;
    }
    let theta = cur.theta;
    let theta_next = x2 * (lb + lw * m.s2) + chi_perp * theta;
    let (mut a, mut b, mut d, mut f) = (None, None, None, None);
    if e.init == Init::Gaussian && !e.is_residual() {
        if let (Some(a0), Some(b0), Some(d0), Some(f0)) = (cur.a, cur.b, cur.d, cur.f) {
            // docs/derivations/theory.md#ntk-fluctuations (derived for this project and
            // MC-validated; PDLT ch. 8 normalisation).
            let h = cw * m.d2xx / (4.0 * k);
            let u = lw * chi_par / cw + 2.0 * h * theta;
            b = Some(chi_perp * chi_perp * b0 + cw * cw * m.d4 * theta * theta);
            f = Some(chi_par * chi_par * f0 + cw * cw * m.s2d2 * theta);
            d = Some(
                chi_par * chi_perp * d0
                    + chi_par * u * cur.v
                    + cw * (lw * m.var_s2() + cw * theta * m.cov_s2d2()),
            );
            a = Some(
                chi_perp * chi_perp * a0
                    + 2.0 * u * chi_perp * d0
                    + u * u * cur.v
                    + lw * lw * m.var_s2()
                    + 2.0 * lw * cw * theta * m.cov_s2d2()
                    + cw * cw * theta * theta * (m.d4 - m.d2 * m.d2),
            );
        }
    }
    Layer {
        l: cur.l + 1,
        k: k_next,
        chi_par: 0.0,
        chi_perp: 0.0,
        v: v_next,
        theta: theta_next,
        a,
        b,
        d,
        f,
    }
}

/// Solve the single-input recursions for layers 1..=depth.
///
/// Row l holds K^(l), χ's evaluated at K^(l), V^(l), Θ^(l) and A, B, D, F (None where not
/// derived: orthogonal weights or residual networks). Cost: O(depth · quadrature order).
pub fn profile(cfg: &ProfileConfig) -> Result<Vec<Layer>, TheoryError> {
    let e = &cfg.ensemble;
    e.validate()?;
    if cfg.depth == 0 {
        return Err(TheoryError::Invalid {
            flag: "--depth",
            msg: "depth must be ≥ 1".into(),
        });
    }
    if !(cfg.k1 > 0.0) || !cfg.k1.is_finite() {
        return Err(TheoryError::Invalid {
            flag: "--k1",
            msg: format!("K^(1) must be finite and > 0, got {}", cfg.k1),
        });
    }
    if cfg.k1 < e.cb {
        return Err(TheoryError::Invalid {
            flag: "--k1",
            msg: format!(
                "K^(1) = C_b + C_W|x|²/n₀ cannot be below C_b = {} (got {})",
                e.cb, cfg.k1
            ),
        });
    }
    if !cfg.v1.is_finite() {
        return Err(TheoryError::Invalid {
            flag: "--v1",
            msg: "V^(1) must be finite".into(),
        });
    }
    let method = e.method();
    let ntk_fluct = e.init == Init::Gaussian && !e.is_residual();
    let zero = ntk_fluct.then_some(0.0);
    let mut cur = Layer {
        l: 1,
        k: cfg.k1,
        chi_par: 0.0,
        chi_perp: 0.0,
        v: cfg.v1,
        theta: cfg.theta1(),
        a: zero,
        b: zero,
        d: zero,
        f: zero,
    };
    let mut out = Vec::with_capacity(cfg.depth);
    loop {
        let m = moments1(&*e.act, &method, cur.k);
        let (g2, x2) = (e.gamma * e.gamma, e.xi * e.xi);
        cur.chi_par = g2 + x2 * e.cw * m.ds2();
        cur.chi_perp = g2 + x2 * e.cw * m.d2;
        check_finite(&cur)?;
        out.push(cur);
        if cur.l == cfg.depth {
            return Ok(out);
        }
        let (lb, lw) = cfg.lr.at(cur.l + 1);
        cur = step(e, &m, &cur, lb, lw);
        if !(cur.k > 0.0) {
            return Err(TheoryError::Diverged {
                layer: cur.l,
                what: format!("K = {} left the domain K > 0 (the kernel collapsed)", cur.k),
            });
        }
    }
}

fn check_finite(row: &Layer) -> Result<(), TheoryError> {
    let vals = [
        ("K", Some(row.k)),
        ("V", Some(row.v)),
        ("theta", Some(row.theta)),
        ("chi", Some(row.chi_par * row.chi_perp)),
        ("A", row.a),
        ("B", row.b),
        ("D", row.d),
        ("F", row.f),
    ];
    for (name, v) in vals {
        if let Some(v) = v {
            if !v.is_finite() || v.abs() > 1e300 {
                return Err(TheoryError::Diverged {
                    layer: row.l,
                    what: format!("{name} overflowed ({v:e}); lower the depth or move towards criticality (χ = 1)"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;

    fn cfg(act: &str, cb: f64, cw: f64, k1: f64, depth: usize) -> ProfileConfig {
        ProfileConfig {
            ensemble: Ensemble::new(parse(act).unwrap(), cb, cw),
            k1,
            v1: 0.0,
            depth,
            lr: LearningRates::default(),
        }
    }

    #[test]
    fn relu_vertex_is_five_l_minus_one() {
        // PDLT; docs/derivations/theory.md#nu-slope: at criticality V^(l) = 5(l−1)K² exactly at
        // leading order.
        let p = profile(&cfg("relu", 0.0, 2.0, 0.7, 50)).unwrap();
        for row in &p {
            assert!((row.k - 0.7).abs() < 1e-14);
            assert!((row.v_over_k2() - 5.0 * (row.l as f64 - 1.0)).abs() < 1e-10 * row.l as f64);
            assert!((row.chi_par - 1.0).abs() < 1e-14 && (row.chi_perp - 1.0).abs() < 1e-14);
        }
    }

    #[test]
    fn relu_ntk_exact_forms() {
        // docs/derivations/theory.md#ntk-reference-numbers (λ_b = λ_W = 1, K = 1, so w = 1/3 and
        // Θ^(l) = l(1 + 1/2)).
        let p = profile(&cfg("relu", 0.0, 2.0, 1.0, 40)).unwrap();
        let w: f64 = 1.0 / 3.0;
        for r in &p {
            let l = r.l as f64;
            assert!((r.theta - 1.5 * l).abs() < 1e-11 * l);
            assert!(
                (r.b_over_theta2().unwrap() - (l - 1.0) * (2.0 * l - 1.0) / (3.0 * l)).abs()
                    < 1e-10 * l
            );
            assert!((r.f_over_ktheta().unwrap() - (l - 1.0)).abs() < 1e-10 * l);
            assert!(
                (r.d_over_ktheta().unwrap() - (1.0 + 5.0 * w) * (l - 1.0) / 2.0).abs() < 1e-10 * l
            );
        }
    }

    #[test]
    fn linear_network_is_exact() {
        // σ(z) = z, C_b = 0, C_W = 1: K constant, V = 2(l−1)K² (ν = 2), orthogonal V = −2K² if V¹ = −2K².
        let p = profile(&cfg("linear", 0.0, 1.0, 1.3, 20)).unwrap();
        assert!(p
            .iter()
            .all(|r| (r.v_over_k2() - 2.0 * (r.l as f64 - 1.0)).abs() < 1e-9));
        let mut c = cfg("linear", 0.0, 1.0, 1.3, 20);
        c.ensemble.init = Init::Orthogonal;
        c.v1 = -2.0 * 1.3 * 1.3;
        let p = profile(&c).unwrap();
        assert!(
            p.iter().all(|r| (r.v_over_k2() + 2.0).abs() < 1e-10),
            "{:?}",
            p.last()
        );
    }

    #[test]
    fn tanh_reference_numbers() {
        // docs/derivations/theory.md#kstar-zero-expansions: K^(10) = 0.0580118478,
        // K^(100) = 0.0051207157, K^(1000) = 0.0005016665 (checked against adaptive quadrature
        // to 10 digits when first computed).
        let p = profile(&cfg("tanh", 0.0, 1.0, 1.0, 1000)).unwrap();
        assert!((p[9].k - 0.0580118478).abs() < 1e-9);
        assert!((p[99].k - 0.0051207157).abs() < 1e-10);
        assert!((p[999].k - 0.0005016665).abs() < 1e-10);
        // 1/K − 2l + (5/6) ln l → c₀ ≈ −0.88 (−0.8772, −0.8842, −0.8875; same page).
        for (l, c) in [(100, -0.8772), (300, -0.8842), (1000, -0.8875)] {
            let k = p[l - 1].k;
            let got = 1.0 / k - 2.0 * l as f64 + 5.0 / 6.0 * (l as f64).ln();
            assert!((got - c).abs() < 1e-3, "l={l}: {got}");
        }
        // (V/K²)/l: 0.5524 (10), 0.6168 (30), 0.6480 (100), 0.6642 (1000);
        // docs/derivations/theory.md#nu-slope.
        for (l, r) in [(10, 0.5524), (30, 0.6168), (100, 0.6480), (1000, 0.6642)] {
            let got = p[l - 1].v_over_k2() / l as f64;
            assert!((got - r).abs() < 1e-4, "l={l}: {got}");
        }
    }

    #[test]
    fn tanh_ntk_reference_numbers() {
        // docs/derivations/theory.md#ntk-reference-numbers: Θ^(1) = 2, λ_b = 1/l, λ_W = 1:
        // 1.5540 (10), 1.4985 (30), 1.4877 (100).
        let mut c = cfg("tanh", 0.0, 1.0, 1.0, 3000);
        c.lr = LearningRates {
            lambda_b: 1.0,
            lambda_w: 1.0,
            b_over_l: true,
        };
        let p = profile(&c).unwrap();
        assert!((p[0].theta - 2.0).abs() < 1e-15);
        for (l, t) in [(10, 1.5540), (30, 1.4985), (100, 1.4877), (3000, 1.4974)] {
            assert!(
                (p[l - 1].theta - t).abs() < 1e-4,
                "l={l}: {}",
                p[l - 1].theta
            );
        }
        // The table of docs/derivations/theory.md#ntk-fluctuations at l = 6 (recursion column) and
        // the slopes of docs/derivations/theory.md#ntk-reference-numbers at l = 3000.
        let r = p[5];
        assert!((r.v_over_k2() - 3.020).abs() < 2e-3);
        assert!((r.a_over_theta2().unwrap() - 0.229).abs() < 2e-3);
        assert!((r.b_over_theta2().unwrap() - 1.678).abs() < 2e-3);
        assert!((r.d_over_ktheta().unwrap() + 0.676).abs() < 2e-3);
        assert!((r.f_over_ktheta().unwrap() - 1.065).abs() < 2e-3);
        let r = p[2999];
        let l = 3000.0;
        for (got, want) in [
            (r.a_over_theta2().unwrap() / l, 0.0654),
            (r.b_over_theta2().unwrap() / l, 0.3325),
            (r.d_over_ktheta().unwrap() / l, -0.1477),
            (r.f_over_ktheta().unwrap() / l, 0.2495),
        ] {
            assert!((got - want).abs() < 2e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn orthogonal_tanh_vertex_tends_to_minus_two() {
        // docs/derivations/orthogonal.md#haar-consequences: V/K² → −2 independently of V^(1);
        // recursion −1.80 (l=2) … −1.85 (l=10).
        let mut c = cfg("tanh", 0.0, 1.0, 1.0, 2000);
        c.ensemble.init = Init::Orthogonal;
        let p = profile(&c).unwrap();
        assert!(
            (p[1999].v_over_k2() + 2.0).abs() < 0.01,
            "{}",
            p[1999].v_over_k2()
        );
        c.v1 = -2.0;
        let q = profile(&c).unwrap();
        for (l, want) in [(2, -1.80), (3, -1.77), (6, -1.81), (10, -1.85)] {
            assert!(
                (q[l - 1].v_over_k2() - want).abs() < 0.006,
                "l={l}: {}",
                q[l - 1].v_over_k2()
            );
        }
        assert!((q[1999].v_over_k2() - p[1999].v_over_k2()).abs() < 0.01);
        assert!(q[0].a.is_none(), "A is not derived for orthogonal weights");
    }

    #[test]
    fn residual_slopes_match_spec() {
        // docs/derivations/theory.md#residual-mlp: ν_ReLU(γ) = (1−γ²)(5−γ²); the recursion gives
        // 2.2489 at γ² = 0.5, l = 2001 as (V/K²)/l. Criticality: ξ²C_W = (1−γ²)/A2.
        let g2: f64 = 0.5;
        let mut c = cfg("relu", 0.0, 2.0 * (1.0 - g2), 1.0, 2001);
        c.ensemble.gamma = g2.sqrt();
        let p = profile(&c).unwrap();
        let last = p.last().unwrap();
        assert!(
            (last.v_over_k2() / 2001.0 - 2.2489).abs() < 1e-4,
            "{}",
            last.v_over_k2() / 2001.0
        );
        assert!(last.a.is_none());
    }

    #[test]
    fn depth_ten_thousand_runs_and_bad_input_is_named() {
        let p = profile(&cfg("tanh", 0.0, 1.0, 1.0, 10_000)).unwrap();
        assert_eq!(p.len(), 10_000);
        let err = profile(&cfg("relu", 0.0, -1.0, 1.0, 3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cw"), "{err}");
        let err = profile(&cfg("relu", 0.0, 2.0, 1.0, 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--depth"), "{err}");
        // Chaotic ReLU (C_W = 4) doubles K per layer: overflow is reported with its layer.
        let err = profile(&cfg("relu", 0.0, 4.0, 1.0, 5000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer"), "{err}");
    }
}
