//! Activation functions σ with their derivatives.
//!
//! The forward recursions only need σ and σ' at Gaussian quadrature nodes (every χ_∥ and h is
//! computed in its Stein form, which stays valid for activations with kinks, PDLT §4.1 and
//! docs/derivations/theory.md#susceptibilities). σ'' and σ''' are offered where they are defined:
//! the training-side recursions for the dNTK and ddNTKs need them ([`crate::dntk`],
//! docs/derivations/dntk.md#moments).
//!
//! Users add their own activation by implementing [`Activation`]; nothing else in the crate
//! knows the built-in list, so a user type is a first-class citizen.

use crate::TheoryError;
use std::fmt;
use std::sync::Arc;

/// A pointwise nonlinearity σ: ℝ → ℝ.
pub trait Activation: Send + Sync + fmt::Debug {
    /// Canonical name, e.g. `tanh` or `leaky_relu:0.1`.
    fn name(&self) -> String;
    /// σ(z).
    fn f(&self, z: f64) -> f64;
    /// σ'(z) (a one-sided value at a kink is fine: kinks have measure zero).
    fn d1(&self, z: f64) -> f64;
    /// (σ(z), σ'(z)) together; override when they share work (tanh, sigmoid).
    fn f_d1(&self, z: f64) -> (f64, f64) {
        (self.f(z), self.d1(z))
    }
    /// σ''(z) where it is defined as a function (None for activations with a kink).
    fn d2(&self, _z: f64) -> Option<f64> {
        None
    }
    /// σ'''(z) where it is defined as a function (None for activations with a kink, and by
    /// default). A user activation that wants the dNTK/ddNTK recursions of [`crate::dntk`]
    /// provides it together with [`Activation::d2`].
    fn d3(&self, _z: f64) -> Option<f64> {
        None
    }
    /// True when σ or σ' is not smooth at z = 0. Gaussian expectations then split the domain at
    /// zero instead of using Gauss–Hermite, whose error is only algebraic across a kink.
    fn kink_at_zero(&self) -> bool {
        false
    }
}

/// Shared handle to an activation.
pub type Act = Arc<dyn Activation>;

macro_rules! smooth {
    ($ty:ident, $name:expr, |$z:ident| $f:expr, |$z1:ident| $d1:expr, |$z2:ident| $d2:expr, |$z3:ident| $d3:expr) => {
        #[doc = concat!("The smooth activation `", $name, "` (σ and its first three derivatives everywhere).")]
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;
        impl Activation for $ty {
            fn name(&self) -> String {
                $name.into()
            }
            fn f(&self, $z: f64) -> f64 {
                $f
            }
            fn d1(&self, $z1: f64) -> f64 {
                $d1
            }
            fn d2(&self, $z2: f64) -> Option<f64> {
                Some($d2)
            }
            fn d3(&self, $z3: f64) -> Option<f64> {
                Some($d3)
            }
        }
    };
}

fn sigm(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
fn phi(z: f64) -> f64 {
    INV_SQRT_2PI * (-0.5 * z * z).exp()
}
/// Standard normal CDF.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

smooth!(Linear, "linear", |z| z, |_z| 1.0, |_z| 0.0, |_z| 0.0);
/// tanh, with σ and σ' from one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Tanh;
impl Activation for Tanh {
    fn name(&self) -> String {
        "tanh".into()
    }
    fn f(&self, z: f64) -> f64 {
        z.tanh()
    }
    fn d1(&self, z: f64) -> f64 {
        let t = z.tanh();
        1.0 - t * t
    }
    fn f_d1(&self, z: f64) -> (f64, f64) {
        let t = z.tanh();
        (t, 1.0 - t * t)
    }
    fn d2(&self, z: f64) -> Option<f64> {
        let t = z.tanh();
        Some(-2.0 * t * (1.0 - t * t))
    }
    fn d3(&self, z: f64) -> Option<f64> {
        // d/dz[−2t(1−t²)] = −2(1−t²)(1−3t²)
        let t = z.tanh();
        Some(-2.0 * (1.0 - t * t) * (1.0 - 3.0 * t * t))
    }
}
smooth!(Sin, "sin", |z| z.sin(), |z| z.cos(), |z| -z.sin(), |z| -z
    .cos());
smooth!(
    Erf,
    "erf",
    |z| erf(z),
    |z| 2.0 / std::f64::consts::PI.sqrt() * (-z * z).exp(),
    |z| -4.0 * z / std::f64::consts::PI.sqrt() * (-z * z).exp(),
    |z| 2.0 / std::f64::consts::PI.sqrt() * (4.0 * z * z - 2.0) * (-z * z).exp()
);
/// The first three derivatives of the logistic function s: s(1−s), s(1−s)(1−2s),
/// s(1−s)(1−6s+6s²).
fn sigm_derivs(z: f64) -> (f64, f64, f64, f64) {
    let s = sigm(z);
    let d = s * (1.0 - s);
    (s, d, d * (1.0 - 2.0 * s), d * (1.0 - 6.0 * s + 6.0 * s * s))
}
smooth!(
    Sigmoid,
    "sigmoid",
    |z| sigm(z),
    |z| sigm_derivs(z).1,
    |z| sigm_derivs(z).2,
    |z| sigm_derivs(z).3
);
smooth!(
    Softplus,
    "softplus",
    |z| if z > 30.0 { z } else { z.exp().ln_1p() },
    |z| sigm(z),
    |z| sigm_derivs(z).1,
    |z| sigm_derivs(z).2
);
// GELU, exact (erf) form: σ(z) = z Φ(z).
smooth!(
    Gelu,
    "gelu",
    |z| z * normal_cdf(z),
    |z| normal_cdf(z) + z * phi(z),
    |z| phi(z) * (2.0 - z * z),
    |z| phi(z) * z * (z * z - 4.0)
);
// SiLU / swish: σ(z) = z·s(z), σ^(k) = k s^(k−1) + z s^(k).
smooth!(
    Silu,
    "silu",
    |z| z * sigm(z),
    |z| {
        let (s, d, _, _) = sigm_derivs(z);
        s + z * d
    },
    |z| {
        let (_, d, d2, _) = sigm_derivs(z);
        2.0 * d + z * d2
    },
    |z| {
        let (_, _, d2, d3) = sigm_derivs(z);
        3.0 * d2 + z * d3
    }
);
/// The tanh approximation of GELU, σ = ½z(1 + T) with T = tanh(u), u = c(z + a z³):
/// returns (σ, σ', σ'', σ''') from T' = s u', T'' = s u'' − 2tsu'², T''' = s u''' − 6tsu'u''
/// + s u'³(4t² − 2s), where t = T and s = 1 − t².
fn gelu_tanh_derivs(z: f64) -> [f64; 4] {
    const A: f64 = 0.044715;
    let c = SQRT_2_OVER_PI;
    let u = c * (z + A * z * z * z);
    let (u1, u2, u3) = (c * (1.0 + 3.0 * A * z * z), 6.0 * c * A * z, 6.0 * c * A);
    let t = u.tanh();
    let s = 1.0 - t * t;
    let t1 = s * u1;
    let t2 = s * u2 - 2.0 * t * s * u1 * u1;
    let t3 = s * u3 - 6.0 * t * s * u1 * u2 + s * u1 * u1 * u1 * (4.0 * t * t - 2.0 * s);
    [
        0.5 * z * (1.0 + t),
        0.5 * (1.0 + t) + 0.5 * z * t1,
        t1 + 0.5 * z * t2,
        1.5 * t2 + 0.5 * z * t3,
    ]
}
// The tanh approximation of GELU used by many LLMs (kept for the pruning study's models).
smooth!(
    GeluTanh,
    "gelu_tanh",
    |z| gelu_tanh_derivs(z)[0],
    |z| gelu_tanh_derivs(z)[1],
    |z| gelu_tanh_derivs(z)[2],
    |z| gelu_tanh_derivs(z)[3]
);

/// σ(z) = a₊ z for z > 0 and a₋ z for z < 0: ReLU (1, 0), leaky ReLU (1, a), linear (1, 1).
#[derive(Debug, Clone, Copy)]
pub struct ScaleInvariant {
    /// Slope a₊ for z > 0.
    pub a_plus: f64,
    /// Slope a₋ for z < 0.
    pub a_minus: f64,
}
impl Activation for ScaleInvariant {
    fn name(&self) -> String {
        match (self.a_plus, self.a_minus) {
            (p, m) if p == 1.0 && m == 0.0 => "relu".into(),
            (p, m) if p == 1.0 && m == 1.0 => "linear_si".into(),
            (1.0, m) => format!("leaky_relu:{m}"),
            (p, m) => format!("abrelu:{m},{p}"),
        }
    }
    fn f(&self, z: f64) -> f64 {
        if z > 0.0 {
            self.a_plus * z
        } else {
            self.a_minus * z
        }
    }
    fn d1(&self, z: f64) -> f64 {
        if z > 0.0 {
            self.a_plus
        } else {
            self.a_minus
        }
    }
    fn kink_at_zero(&self) -> bool {
        self.a_plus != self.a_minus
    }
}

/// ELU(α): z for z > 0, α(eᶻ − 1) otherwise (σ'' jumps at 0 unless α = 1; σ' jumps unless α = 1).
#[derive(Debug, Clone, Copy)]
pub struct Elu {
    /// α: the negative branch is α(eᶻ − 1), saturating at −α.
    pub alpha: f64,
    /// Overall factor λ multiplying σ (1 for ELU, [`SELU_SCALE`] for SELU).
    pub scale: f64,
}
/// SELU constants (Klambauer et al. 2017).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// SELU's overall scale λ (Klambauer et al. 2017).
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
impl Activation for Elu {
    fn name(&self) -> String {
        if self.alpha == SELU_ALPHA && self.scale == SELU_SCALE {
            "selu".into()
        } else if self.scale == 1.0 {
            format!("elu:{}", self.alpha)
        } else {
            format!("elu:{},{}", self.alpha, self.scale)
        }
    }
    fn f(&self, z: f64) -> f64 {
        self.scale * if z > 0.0 { z } else { self.alpha * z.exp_m1() }
    }
    fn d1(&self, z: f64) -> f64 {
        self.scale * if z > 0.0 { 1.0 } else { self.alpha * z.exp() }
    }
    fn kink_at_zero(&self) -> bool {
        true
    }
}

/// Names accepted by [`parse`], for error messages and `--help`.
pub const KNOWN: &[&str] = &[
    "linear",
    "relu",
    "leaky_relu:A",
    "abrelu:A_MINUS,A_PLUS",
    "tanh",
    "sin",
    "erf",
    "sigmoid",
    "softplus",
    "gelu",
    "gelu_tanh",
    "silu",
    "swish",
    "elu[:ALPHA]",
    "selu",
];

/// Parse an activation name such as `tanh`, `leaky_relu:0.1` or `elu:1.0`.
pub fn parse(name: &str) -> Result<Act, TheoryError> {
    let bad = || TheoryError::UnknownActivation {
        name: name.to_string(),
        known: KNOWN.join(", "),
    };
    let (head, arg) = match name.split_once(':') {
        Some((h, a)) => (h, Some(a)),
        None => (name, None),
    };
    let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let act: Act = match (head.trim().to_ascii_lowercase().as_str(), arg) {
        ("linear", None) => Arc::new(Linear),
        ("relu", None) => Arc::new(ScaleInvariant {
            a_plus: 1.0,
            a_minus: 0.0,
        }),
        ("leaky_relu", Some(a)) => Arc::new(ScaleInvariant {
            a_plus: 1.0,
            a_minus: num(a).ok_or_else(bad)?,
        }),
        ("leaky_relu", None) => Arc::new(ScaleInvariant {
            a_plus: 1.0,
            a_minus: 0.01,
        }),
        ("abrelu", Some(a)) => {
            let (m, p) = a.split_once(',').ok_or_else(bad)?;
            Arc::new(ScaleInvariant {
                a_plus: num(p).ok_or_else(bad)?,
                a_minus: num(m).ok_or_else(bad)?,
            })
        }
        ("tanh", None) => Arc::new(Tanh),
        ("sin", None) => Arc::new(Sin),
        ("erf", None) => Arc::new(Erf),
        ("sigmoid", None) => Arc::new(Sigmoid),
        ("softplus", None) => Arc::new(Softplus),
        ("gelu", None) => Arc::new(Gelu),
        ("gelu_tanh", None) => Arc::new(GeluTanh),
        ("silu" | "swish", None) => Arc::new(Silu),
        ("elu", None) => Arc::new(Elu {
            alpha: 1.0,
            scale: 1.0,
        }),
        ("elu", Some(a)) => Arc::new(Elu {
            alpha: num(a).ok_or_else(bad)?,
            scale: 1.0,
        }),
        ("selu", None) => Arc::new(Elu {
            alpha: SELU_ALPHA,
            scale: SELU_SCALE,
        }),
        _ => return Err(bad()),
    };
    Ok(act)
}

/// If σ is positively homogeneous of degree one (σ(cz) = cσ(z) for c > 0), return (a₊, a₋).
/// Detected numerically so that user activations benefit from the closed forms too.
pub fn scale_invariant_slopes(act: &dyn Activation) -> Option<(f64, f64)> {
    let (ap, am) = (act.f(1.0), -act.f(-1.0));
    let ok = [0.003, 0.37, 2.5, 41.0].iter().all(|&z: &f64| {
        let tol = 1e-12 * z.max(1.0) * (ap.abs() + am.abs() + 1.0);
        (act.f(z) - ap * z).abs() <= tol && (act.f(-z) + am * z).abs() <= tol
    });
    ok.then_some((ap, am))
}

/// Taylor coefficients (σ(0), σ₁, σ₂, σ₃) at zero, σ(z) = σ(0) + σ₁z + σ₂z²/2 + σ₃z³/6 + …
/// σ₂ and σ₃ come from central differences of σ' (error O(h²) ≈ 1e-8, enough for the class test).
pub fn taylor_at_zero(act: &dyn Activation) -> [f64; 4] {
    let h = 1e-4;
    let (dp, d0, dm) = (act.d1(h), act.d1(0.0), act.d1(-h));
    [
        act.f(0.0),
        d0,
        (dp - dm) / (2.0 * h),
        (dp - 2.0 * d0 + dm) / (h * h),
    ]
}

/// erf, from the `libm` crate (already in the tree through faer; Rust's std has none).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// Complementary error function, from `libm`.
pub fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        // Central differences have truncation error h²σ'''/6 ≈ 1e-11 and rounding ≈ 1e-16/h ≈ 1e-11.
        let h = 1e-5;
        for name in [
            "tanh",
            "sin",
            "erf",
            "sigmoid",
            "softplus",
            "gelu",
            "silu",
            "gelu_tanh",
            "linear",
        ] {
            let a = parse(name).unwrap();
            for &z in &[-2.3, -0.7, 0.4, 1.9] {
                let fd = (a.f(z + h) - a.f(z - h)) / (2.0 * h);
                assert!(
                    (fd - a.d1(z)).abs() < 1e-8,
                    "{name} σ' at {z}: {fd} vs {}",
                    a.d1(z)
                );
                let fd2 = (a.d1(z + h) - a.d1(z - h)) / (2.0 * h);
                assert!((fd2 - a.d2(z).unwrap()).abs() < 1e-6, "{name} σ'' at {z}");
                // σ''' against central differences of the analytic σ'' (same error budget).
                let fd3 = (a.d2(z + h).unwrap() - a.d2(z - h).unwrap()) / (2.0 * h);
                assert!(
                    (fd3 - a.d3(z).unwrap()).abs() < 1e-6,
                    "{name} σ''' at {z}: {fd3} vs {}",
                    a.d3(z).unwrap()
                );
            }
        }
    }

    #[test]
    fn kinked_activations_have_no_higher_derivatives() {
        for name in ["relu", "leaky_relu:0.1", "elu", "selu"] {
            let a = parse(name).unwrap();
            assert!(a.d2(0.3).is_none() && a.d3(0.3).is_none(), "{name}");
        }
    }

    #[test]
    fn erf_matches_reference_values() {
        // Reference values from Abramowitz & Stegun table 7.1 (to 15 digits).
        assert!((erf(0.5) - 0.520_499_877_813_047).abs() < 1e-15);
        assert!((erf(1.0) - 0.842_700_792_949_715).abs() < 1e-15);
        assert!((erfc(3.0) - 2.209_049_699_858_544e-5).abs() < 1e-19);
        assert!((erf(-1.0) + 0.842_700_792_949_715).abs() < 1e-15);
    }

    #[test]
    fn parse_names_and_errors() {
        assert_eq!(parse("leaky_relu:0.1").unwrap().name(), "leaky_relu:0.1");
        assert_eq!(parse("relu").unwrap().name(), "relu");
        assert_eq!(parse("swish").unwrap().name(), "silu");
        let err = parse("tahn").unwrap_err().to_string();
        assert!(
            err.contains("tahn") && err.contains("leaky_relu:A"),
            "{err}"
        );
        assert!(parse("leaky_relu:abc").is_err());
    }

    #[test]
    fn scale_invariance_is_detected() {
        assert_eq!(
            scale_invariant_slopes(&*parse("relu").unwrap()),
            Some((1.0, 0.0))
        );
        assert_eq!(
            scale_invariant_slopes(&*parse("linear").unwrap()),
            Some((1.0, 1.0))
        );
        assert_eq!(
            scale_invariant_slopes(&*parse("leaky_relu:0.2").unwrap()),
            Some((1.0, 0.2))
        );
        assert_eq!(scale_invariant_slopes(&*parse("tanh").unwrap()), None);
        assert_eq!(scale_invariant_slopes(&*parse("elu").unwrap()), None);
    }
}
