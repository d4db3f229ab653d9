//! Criticality and universality classes (PDLT ch. 5; docs/derivations/theory.md#criticality),
//! the depth slope ν of the normalised four-point vertex (docs/derivations/theory.md#nu-slope),
//! and the optimal aspect ratio r* (PDLT appendix A;
//! docs/derivations/theory.md#optimal-aspect-ratio).

use crate::activation::{scale_invariant_slopes, taylor_at_zero, Activation};
use crate::gauss::QuadConfig;
use crate::moments::{moments1, Method};
use crate::profile::{profile, Ensemble, LearningRates, ProfileConfig};
use serde::{Deserialize, Serialize};

/// Universality class of an activation at criticality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// σ = a₊z (z > 0), a₋z (z < 0): every K is a fixed point, χ_∥ = χ_⊥ = 1 at C_W = 1/A₂.
    ScaleInvariant,
    /// σ(0) = 0, σ'(0) ≠ 0, a₁ < 0: K* = 0 approached as a power law (tanh, sin).
    KStarZero,
    /// Critical at K* > 0 but approached from one side only (GELU, SWISH).
    HalfStable,
    /// No (C_b ≥ 0, C_W) makes χ_∥ = χ_⊥ = 1 (sigmoid, softplus).
    None,
}

impl Class {
    /// The snake_case name used in JSON and tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            Class::ScaleInvariant => "scale_invariant",
            Class::KStarZero => "k_star_zero",
            Class::HalfStable => "half_stable",
            Class::None => "none",
        }
    }
}

/// The critical point of an activation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Critical {
    /// Activation name ([`crate::Activation::name`]).
    pub activation: String,
    /// Universality class.
    pub class: Class,
    /// Critical bias variance C_b (None for class `None`).
    pub cb: Option<f64>,
    /// Critical weight variance C_W (None for class `None`).
    pub cw: Option<f64>,
    /// K* (None for scale-invariant activations, where every K is a fixed point).
    pub k_star: Option<f64>,
    /// K*=0 class: a₁ = σ₃/σ₁ + ¾(σ₂/σ₁)² and the exponent p_⊥ = b₁/a₁
    /// (docs/derivations/theory.md#kstar-zero-expansions).
    pub a1: Option<f64>,
    /// The exponent p_⊥ = b₁/a₁ (K*=0 class only).
    pub p_perp: Option<f64>,
}

/// Find the critical initialisation of `act` (the recipe of docs/derivations/theory.md#criticality;
/// the search grid K ∈ [1e-3, 1e3]).
pub fn criticality(act: &dyn Activation) -> Critical {
    let name = act.name();
    if let Some((ap, am)) = scale_invariant_slopes(act) {
        let a2 = 0.5 * (ap * ap + am * am);
        return Critical {
            activation: name,
            class: Class::ScaleInvariant,
            cb: Some(0.0),
            cw: Some(1.0 / a2),
            k_star: None,
            a1: None,
            p_perp: None,
        };
    }
    let [s0, s1, s2, s3] = taylor_at_zero(act);
    if s0.abs() < 1e-12 && s1.abs() > 1e-8 {
        let a1 = s3 / s1 + 0.75 * (s2 / s1).powi(2);
        let b1 = s3 / s1 + (s2 / s1).powi(2);
        if a1 < -1e-6 {
            return Critical {
                activation: name,
                class: Class::KStarZero,
                cb: Some(0.0),
                cw: Some(1.0 / (s1 * s1)),
                k_star: Some(0.0),
                a1: Some(a1),
                p_perp: Some(b1 / a1),
            };
        }
    }
    // Non-zero K*: with C_W(K) = 1/⟨σ'²⟩_K (χ_⊥ = 1) find a root of χ_∥(K) − 1 and require
    // C_b = K − C_W⟨σ²⟩_K ≥ 0. A high quadrature order keeps large-K evaluations exact.
    let method = Method::for_activation(
        act,
        QuadConfig {
            gh1: 320,
            ..Default::default()
        },
    );
    let resid = |k: f64| {
        let m = moments1(act, &method, k);
        let cw = 1.0 / m.d2;
        (cw * m.ds2() - 1.0, cw, k - cw * m.s2)
    };
    let grid: Vec<f64> = (0..=240)
        .map(|i| 10f64.powf(-3.0 + 6.0 * i as f64 / 240.0))
        .collect();
    let mut prev = resid(grid[0]);
    for w in grid.windows(2) {
        let next = resid(w[1]);
        if prev.0.is_finite() && next.0.is_finite() && prev.0.signum() != next.0.signum() {
            // Bisection to machine precision (55 halvings of a factor-1.06 bracket).
            let (mut lo, mut hi, flo) = (w[0], w[1], prev.0);
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if (resid(mid).0 > 0.0) == (flo > 0.0) {
                    lo = mid;
                } else {
                    hi = mid;
                }
                if hi - lo <= 4.0 * f64::EPSILON * hi {
                    break;
                }
            }
            let k = 0.5 * (lo + hi);
            let (_, cw, cb) = resid(k);
            if cb >= -1e-12 {
                return Critical {
                    activation: name,
                    class: Class::HalfStable,
                    cb: Some(cb.max(0.0)),
                    cw: Some(cw),
                    k_star: Some(k),
                    a1: None,
                    p_perp: None,
                };
            }
        }
        prev = next;
    }
    Critical {
        activation: name,
        class: Class::None,
        cb: None,
        cw: None,
        k_star: None,
        a1: None,
        p_perp: None,
    }
}

/// ν: the slope of V^(l)/(n K^(l)²) in l/n at criticality
/// (docs/derivations/theory.md#nu-slope), for a residual network
/// with skip weight γ (γ = 0: plain MLP; the critical ξ²C_W is (1 − γ²)/A₂ or (1 − γ²)/σ₁²).
/// Measured as the slope of V/K² between l = L/2 and L = 4000 of the recursion, which converges
/// as O(1/L) for the K*=0 class and is exact for scale-invariant activations.
/// None when the activation has no critical point.
pub fn nu(act: crate::Act, gamma: f64) -> Option<f64> {
    let crit = criticality(&*act);
    let (cb, cw, k1) = match crit.class {
        Class::None => return None,
        Class::ScaleInvariant | Class::KStarZero => (0.0, crit.cw?, 1.0),
        Class::HalfStable => (crit.cb?, crit.cw?, crit.k_star?),
    };
    if gamma != 0.0 && crit.class == Class::HalfStable {
        return None;
    }
    let depth = 4000;
    let mut ens = Ensemble::new(act, cb, cw * (1.0 - gamma * gamma));
    ens.gamma = gamma;
    let p = profile(&ProfileConfig {
        ensemble: ens,
        k1,
        v1: 0.0,
        depth,
        lr: LearningRates::default(),
    })
    .ok()?;
    let (a, b) = (&p[depth / 2 - 1], &p[depth - 1]);
    Some((b.v_over_k2() - a.v_over_k2()) / (b.l - a.l) as f64)
}

/// Optimal aspect ratio r* = (L/n)* = 4/((20 + 3 n_L) ν) (PDLT appendix A;
/// docs/derivations/theory.md#optimal-aspect-ratio).
pub fn optimal_aspect_ratio(nu: f64, n_out: usize) -> f64 {
    4.0 / ((20.0 + 3.0 * n_out as f64) * nu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;

    fn crit(name: &str) -> Critical {
        criticality(&*parse(name).unwrap())
    }

    #[test]
    fn classes_and_critical_points() {
        let c = crit("relu");
        assert_eq!(
            (c.class, c.cb, c.cw),
            (Class::ScaleInvariant, Some(0.0), Some(2.0))
        );
        let c = crit("leaky_relu:0.1");
        assert!((c.cw.unwrap() - 1.980198).abs() < 1e-6);
        assert_eq!(crit("linear").cw, Some(1.0));
        for name in ["tanh", "sin"] {
            let c = crit(name);
            assert_eq!(c.class, Class::KStarZero, "{name}");
            assert!((c.cw.unwrap() - 1.0).abs() < 1e-7 && c.k_star == Some(0.0));
            assert!((c.p_perp.unwrap() - 1.0).abs() < 1e-4);
        }
        assert!((crit("tanh").a1.unwrap() + 2.0).abs() < 1e-4);
        // docs/derivations/theory.md#universality-classes:
        // GELU C_b = 0.17292239, C_W = 1.98305826, K* = 3.56155281;
        // SWISH C_b = 0.55514317, C_W = 1.98800468, K* = 14.3201736.
        let g = crit("gelu");
        assert_eq!(g.class, Class::HalfStable);
        assert!((g.k_star.unwrap() - 3.56155281).abs() < 1e-7, "{:?}", g);
        assert!(
            (g.cw.unwrap() - 1.98305826).abs() < 1e-7 && (g.cb.unwrap() - 0.17292239).abs() < 1e-7
        );
        let s = crit("swish");
        assert_eq!(s.class, Class::HalfStable);
        assert!((s.k_star.unwrap() - 14.3201736).abs() < 1e-5, "{:?}", s);
        assert!(
            (s.cw.unwrap() - 1.98800468).abs() < 1e-7 && (s.cb.unwrap() - 0.55514317).abs() < 1e-7
        );
        assert_eq!(crit("sigmoid").class, Class::None);
        assert_eq!(crit("softplus").class, Class::None);
    }

    #[test]
    fn nu_values_and_aspect_ratio() {
        // docs/derivations/theory.md#nu-slope: ReLU 5, linear 2, leaky 0.1 4.882364,
        // leaky 0.2 4.556213, K*=0 class 2/3.
        let nu_of = |n: &str| nu(parse(n).unwrap(), 0.0).unwrap();
        assert!((nu_of("relu") - 5.0).abs() < 1e-9);
        assert!((nu_of("linear") - 2.0).abs() < 1e-9);
        assert!((nu_of("leaky_relu:0.1") - 4.882364).abs() < 1e-6);
        assert!((nu_of("leaky_relu:0.2") - 4.556213).abs() < 1e-6);
        // The K*=0 slope approaches 2/3 as O(1/L): at L = 4000 within 2e-3.
        assert!(
            (nu_of("tanh") - 2.0 / 3.0).abs() < 2e-3,
            "{}",
            nu_of("tanh")
        );
        assert!(nu(parse("sigmoid").unwrap(), 0.0).is_none());
        // r*: ReLU 0.0348 (n_L = 1), 0.0160 (n_L = 10); tanh 0.261, 0.120.
        assert!((optimal_aspect_ratio(5.0, 1) - 0.0348).abs() < 1e-4);
        assert!((optimal_aspect_ratio(5.0, 10) - 0.0160).abs() < 1e-4);
        assert!((optimal_aspect_ratio(nu_of("tanh"), 1) - 0.261).abs() < 2e-3);
        // Residual: ν_ReLU(γ) = (1−γ²)(5−γ²); ν_tanh(γ) = (2/3)(1−γ⁴)
        // (docs/derivations/theory.md#residual-mlp).
        let g2: f64 = 0.5;
        assert!(
            (nu(parse("relu").unwrap(), g2.sqrt()).unwrap() - (1.0 - g2) * (5.0 - g2)).abs() < 1e-6
        );
        let t = nu(parse("tanh").unwrap(), g2.sqrt()).unwrap();
        assert!((t - 2.0 / 3.0 * (1.0 - g2 * g2)).abs() < 5e-3, "{t}");
    }
}
