//! The single-input Gaussian expectations the recursions need, computed in one pass over the
//! quadrature nodes (docs/derivations/theory.md#gaussian-expectations), with closed forms for
//! scale-invariant activations.

use crate::activation::Activation;
use crate::gauss::{rule1, QuadConfig};

/// Single-input expectations at z ~ N(0, K), with x = z/√K standard normal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments1 {
    /// The variance K > 0 at which the expectations are taken.
    pub k: f64,
    /// ⟨σ²⟩
    pub s2: f64,
    /// ⟨σ⁴⟩
    pub s4: f64,
    /// ⟨σ'²⟩
    pub d2: f64,
    /// ⟨σ'⁴⟩
    pub d4: f64,
    /// ⟨σ²σ'²⟩
    pub s2d2: f64,
    /// ⟨zσσ'⟩ (so ∂_K⟨σ²⟩ = ⟨zσσ'⟩/K, the Stein form of PDLT eq. (5.9))
    pub zsd: f64,
    /// ⟨σ'²(x² − 1)⟩ = ⟨σ'²(z² − K)⟩/K (so h = C_W·d2xx/(4K))
    pub d2xx: f64,
    /// ⟨z²σ²⟩ (residual-network cross term)
    pub z2s2: f64,
}

impl Moments1 {
    /// ∂_K⟨σ²⟩_K.
    pub fn ds2(&self) -> f64 {
        self.zsd / self.k
    }
    /// Var(σ²) = ⟨σ⁴⟩ − ⟨σ²⟩².
    pub fn var_s2(&self) -> f64 {
        self.s4 - self.s2 * self.s2
    }
    /// Cov(σ², σ'²) = ⟨σ²σ'²⟩ − ⟨σ²⟩⟨σ'²⟩.
    pub fn cov_s2d2(&self) -> f64 {
        self.s2d2 - self.s2 * self.d2
    }
}

/// Precomputed information about an activation that selects the integration method.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    /// (a₊, a₋) for σ(z) = a₊z (z>0), a₋z (z<0): closed forms.
    pub scale_invariant: Option<(f64, f64)>,
    /// True when σ or σ' has a kink at 0: quadratures split the domain there.
    pub kinked: bool,
    /// Quadrature orders.
    pub quad: QuadConfig,
}

impl Method {
    /// Choose closed forms or (kink-aware) quadrature for `act`.
    pub fn for_activation(act: &dyn Activation, quad: QuadConfig) -> Self {
        Self {
            scale_invariant: crate::activation::scale_invariant_slopes(act),
            kinked: act.kink_at_zero(),
            quad,
        }
    }
}

/// All single-input moments at K > 0.
pub fn moments1(act: &dyn Activation, m: &Method, k: f64) -> Moments1 {
    if let Some((ap, am)) = m.scale_invariant {
        let a2 = 0.5 * (ap * ap + am * am);
        let a4 = 0.5 * (ap.powi(4) + am.powi(4));
        return Moments1 {
            k,
            s2: a2 * k,
            s4: 3.0 * a4 * k * k,
            d2: a2,
            d4: a4,
            s2d2: a4 * k,
            zsd: a2 * k,
            d2xx: 0.0,
            z2s2: 3.0 * a2 * k * k,
        };
    }
    let rule = rule1(m.kinked, k, &m.quad);
    let sk = k.sqrt();
    let mut o = Moments1 {
        k,
        ..Default::default()
    };
    for (&x, &w) in rule.x.iter().zip(&rule.w) {
        let z = sk * x;
        let (s, d) = act.f_d1(z);
        let (s2, d2) = (s * s, d * d);
        o.s2 += w * s2;
        o.s4 += w * s2 * s2;
        o.d2 += w * d2;
        o.d4 += w * d2 * d2;
        o.s2d2 += w * s2 * d2;
        o.zsd += w * z * s * d;
        o.d2xx += w * d2 * (x * x - 1.0);
        o.z2s2 += w * z * z * s2;
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;

    #[test]
    fn relu_closed_forms_match_quadrature() {
        // The table of docs/derivations/theory.md#relu-arccosine; the split rule is exact to
        // rounding for the ReLU family.
        let act = parse("relu").unwrap();
        let closed = moments1(
            &*act,
            &Method::for_activation(&*act, QuadConfig::default()),
            1.7,
        );
        let numeric = moments1(
            &*act,
            &Method {
                scale_invariant: None,
                kinked: true,
                quad: QuadConfig::default(),
            },
            1.7,
        );
        for (a, b) in [
            (closed.s2, numeric.s2),
            (closed.s4, numeric.s4),
            (closed.d2, numeric.d2),
            (closed.d4, numeric.d4),
            (closed.s2d2, numeric.s2d2),
            (closed.zsd, numeric.zsd),
            (closed.d2xx, numeric.d2xx),
            (closed.z2s2, numeric.z2s2),
        ] {
            assert!((a - b).abs() < 1e-13 * (1.0 + a.abs()), "{a} vs {b}");
        }
        assert!((closed.s2 - 0.85).abs() < 1e-15 && (closed.s4 - 1.5 * 1.7 * 1.7).abs() < 1e-14);
    }

    #[test]
    fn smooth_rules_are_converged() {
        // Truncation error of the default rules (Gauss–Hermite 192 at K ≤ 1, composite
        // Gauss–Legendre above), measured against a 600-node Hermite rule at K ≤ 1 and the
        // composite rule with 4× the panels above: both must agree to 1e-12 relative.
        for name in ["tanh", "gelu", "silu", "elu", "erf"] {
            let act = parse(name).unwrap();
            for k in [1e-4, 0.05, 1.0, 4.0, 14.0, 300.0] {
                let a = moments1(
                    &*act,
                    &Method::for_activation(&*act, QuadConfig::default()),
                    k,
                );
                let b = if k <= 1.0 && !act.kink_at_zero() {
                    let q = QuadConfig {
                        gh1: 600,
                        ..Default::default()
                    };
                    moments1(&*act, &Method::for_activation(&*act, q), k)
                } else {
                    let rule =
                        crate::gauss::split_at_zero((48.0 * k.sqrt().max(1.0)).ceil() as usize);
                    let mut o = Moments1 {
                        k,
                        ..Default::default()
                    };
                    for (&x, &w) in rule.x.iter().zip(&rule.w) {
                        let z = k.sqrt() * x;
                        let (s, d) = act.f_d1(z);
                        o.s2 += w * s * s;
                        o.s4 += w * s.powi(4);
                        o.d2 += w * d * d;
                        o.zsd += w * z * s * d;
                        o.d2xx += w * d * d * (x * x - 1.0);
                    }
                    o
                };
                // d2xx = ⟨σ'²(x²−1)⟩ cancels down from O(⟨σ'²⟩): its error is relative to that scale.
                for (x, y, scale) in [
                    (a.s2, b.s2, 0.0),
                    (a.s4, b.s4, 0.0),
                    (a.d2, b.d2, 0.0),
                    (a.zsd, b.zsd, 0.0),
                    (a.d2xx, b.d2xx, b.d2),
                ] {
                    assert!(
                        (x - y).abs() <= 1e-12 * (y.abs() + scale) + 1e-300,
                        "{name} K={k}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
