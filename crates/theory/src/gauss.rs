//! Gaussian expectations ⟨f⟩_K = E[f(z)], z ~ N(0, K), in one and several dimensions.
//!
//! * Smooth integrands: probabilists' Gauss–Hermite (tensor product on z = Lξ, L = chol K).
//!   Nodes are eigenvalues of the Jacobi matrix (Golub–Welsch, via faer) polished by Newton on the
//!   orthonormal recurrence; weights are Christoffel numbers 1/Σₖ pₖ(xᵢ)², which stay accurate
//!   where the eigenvector route loses the tiny tail weights.
//! * Integrands with a kink at zero (ReLU family, ELU): Gauss–Hermite converges only
//!   algebraically across a kink (≈3e-3 in 2-D, docs/derivations/theory.md#gaussian-expectations),
//!   so we split the domain where a coordinate changes sign: two half-lines in 1-D, and angular
//!   sectors in polar coordinates in 2-D. On each piece the integrand is smooth and composite
//!   Gauss–Legendre converges geometrically.
//! * Scale-invariant activations have closed forms (arc-cosine kernels, Cho & Saul 2009) used by
//!   [`crate::moments`]; this module is only the numerical back end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Quadrature orders. The 1-D default gives ≲1e-13 relative error for tanh (tests compare
/// against higher orders); the 2-D one ≲1e-10.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuadConfig {
    /// Gauss–Hermite nodes for 1-D expectations of smooth integrands.
    pub gh1: usize,
    /// Gauss–Hermite nodes per dimension for 2-D expectations.
    pub gh2: usize,
    /// Gauss–Hermite nodes per dimension for 3- and 4-D expectations.
    pub ghn: usize,
}

impl Default for QuadConfig {
    fn default() -> Self {
        Self {
            gh1: 192,
            gh2: 80,
            ghn: 24,
        }
    }
}

/// A rule Σᵢ wᵢ f(xᵢ) for E[f(x)], x ~ N(0, 1).
#[derive(Debug, Clone)]
pub struct Rule1 {
    /// Nodes xᵢ.
    pub x: Vec<f64>,
    /// Weights wᵢ (sum 1 for the Gaussian rules, 2 for [`legendre`] on [−1, 1]).
    pub w: Vec<f64>,
}

fn cache<K: std::hash::Hash + Eq + Copy, V: Clone>(
    cell: &'static OnceLock<Mutex<HashMap<K, V>>>,
    key: K,
    make: impl FnOnce() -> V,
) -> V {
    let map = cell.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = map.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let v = make();
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, v.clone());
    v
}

/// Probabilists' Gauss–Hermite rule of the given order (cached).
pub fn hermite(order: usize) -> Arc<Rule1> {
    static CELL: OnceLock<Mutex<HashMap<usize, Arc<Rule1>>>> = OnceLock::new();
    cache(&CELL, order.max(1), || {
        Arc::new(hermite_uncached(order.max(1)))
    })
}

/// Orthonormal probabilists' Hermite values p₀..p_{n-1} at x, and pₙ.
fn hermite_orthonormal(n: usize, x: f64, sum_sq: &mut f64) -> (f64, f64) {
    let (mut p_prev, mut p) = (0.0, 1.0);
    *sum_sq = 1.0;
    for k in 0..n {
        let p_next = (x * p - (k as f64).sqrt() * p_prev) / ((k + 1) as f64).sqrt();
        p_prev = p;
        p = p_next;
        if k + 1 < n {
            *sum_sq += p * p;
        }
    }
    (p_prev, p)
}

fn hermite_uncached(n: usize) -> Rule1 {
    // Golub–Welsch guess: Jacobi matrix with off-diagonal √k.
    let jac = faer::Mat::<f64>::from_fn(n, n, |i, j| {
        if i.abs_diff(j) == 1 {
            (i.max(j) as f64).sqrt()
        } else {
            0.0
        }
    });
    let mut x = jac
        .self_adjoint_eigenvalues(faer::Side::Lower)
        .unwrap_or_else(|_| (0..n).map(|i| i as f64 - n as f64 / 2.0).collect());
    let mut w = vec![0.0; n];
    for (xi, wi) in x.iter_mut().zip(w.iter_mut()) {
        // Newton on pₙ(x) = 0 with pₙ' = √n p_{n-1}; two or three steps reach machine precision.
        let mut s = 0.0;
        for _ in 0..4 {
            let (pm1, pn) = hermite_orthonormal(n, *xi, &mut s);
            if pm1 != 0.0 && pm1.is_finite() && pn.is_finite() {
                *xi -= pn / ((n as f64).sqrt() * pm1);
            }
        }
        hermite_orthonormal(n, *xi, &mut s);
        *wi = if s.is_finite() { 1.0 / s } else { 0.0 };
    }
    // Symmetrise (the rule is exactly symmetric; this removes rounding asymmetry).
    for i in 0..n / 2 {
        let j = n - 1 - i;
        let xm = 0.5 * (x[j] - x[i]);
        let wm = 0.5 * (w[i] + w[j]);
        x[i] = -xm;
        x[j] = xm;
        w[i] = wm;
        w[j] = wm;
    }
    if n % 2 == 1 {
        x[n / 2] = 0.0;
    }
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= total);
    Rule1 { x, w }
}

/// Gauss–Legendre nodes and weights on [-1, 1] (cached). Newton on the three-term recurrence
/// from the Tricomi initial guess cos(π(i − ¼)/(n + ½)).
pub fn legendre(n: usize) -> Arc<Rule1> {
    static CELL: OnceLock<Mutex<HashMap<usize, Arc<Rule1>>>> = OnceLock::new();
    cache(&CELL, n.max(1), || {
        let n = n.max(1);
        let mut x = vec![0.0; n];
        let mut w = vec![0.0; n];
        for i in 0..n {
            let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            let mut dp = 1.0;
            for _ in 0..100 {
                let (mut p1, mut p2) = (1.0, 0.0);
                for j in 0..n {
                    let p3 = p2;
                    p2 = p1;
                    p1 = ((2 * j + 1) as f64 * z * p2 - j as f64 * p3) / (j + 1) as f64;
                }
                dp = n as f64 * (z * p1 - p2) / (z * z - 1.0);
                let dz = p1 / dp;
                z -= dz;
                if dz.abs() < 1e-16 {
                    break;
                }
            }
            x[i] = -z;
            w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
        }
        Arc::new(Rule1 { x, w })
    })
}

/// Composite Gauss–Legendre on [0, R] with `panels` panels of 16 nodes (cached). R = 12: the
/// Gaussian tail beyond it is e^{-72} ≈ 5e-32.
fn half_line(panels: usize) -> Arc<Rule1> {
    static CELL: OnceLock<Mutex<HashMap<usize, Arc<Rule1>>>> = OnceLock::new();
    cache(&CELL, panels, || {
        let radius = 12.0;
        let gl = legendre(16);
        let h = radius / panels as f64;
        let mut r = Rule1 {
            x: vec![],
            w: vec![],
        };
        for p in 0..panels {
            for (&t, &wt) in gl.x.iter().zip(&gl.w) {
                r.x.push(h * (p as f64 + 0.5 * (t + 1.0)));
                r.w.push(0.5 * h * wt);
            }
        }
        Arc::new(r)
    })
}

/// Standard-normal rule split at zero, composite Gauss–Legendre with `panels` panels per side:
/// geometric convergence for integrands smooth on each half-line (cached).
pub fn split_at_zero(panels: usize) -> Arc<Rule1> {
    static CELL: OnceLock<Mutex<HashMap<usize, Arc<Rule1>>>> = OnceLock::new();
    cache(&CELL, panels, || {
        let hl = half_line(panels);
        let mut r = Rule1 {
            x: vec![],
            w: vec![],
        };
        let c = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
        for (&t, &wt) in hl.x.iter().zip(&hl.w) {
            let wn = wt * c * (-0.5 * t * t).exp();
            r.x.push(t);
            r.w.push(wn);
            r.x.push(-t);
            r.w.push(wn);
        }
        Arc::new(r)
    })
}

/// The 1-D rule for E[f(√K x)], x ~ N(0, 1).
///
/// Gauss–Hermite resolves features of width ~π/√(2q) in x, so it is used only for smooth σ at
/// K ≤ 1, where σ(√K x) varies slowly (measured: ≤ 1e-13 relative for tanh at q = 192). For
/// larger K (saturating σ' is a bump of width ~1/√K in x) or a kink at zero we use composite
/// Gauss–Legendre split at zero with panels of width ≤ min(1, 1/√K) in x, i.e. ≤ 1 in z.
pub fn rule1(kinked: bool, k: f64, cfg: &QuadConfig) -> Arc<Rule1> {
    if !kinked && k <= 1.0 {
        hermite(cfg.gh1)
    } else {
        let per_unit = k.sqrt().max(1.0);
        split_at_zero(((12.0 * per_unit).ceil() as usize).clamp(12, 6000))
    }
}

/// Lower Cholesky factor of a d×d row-major covariance, or None if it is not positive definite.
pub fn cholesky(cov: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = cov[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if !(s > 0.0) {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Accumulates E[f(z)] for z ~ N(0, cov) (d×d row-major, d ≥ 1) into `out` (one slot per
/// quantity the integrand writes). `f(z, out_weighted_adder)` is called at every node with z and
/// must add its values times the supplied weight. Returns false if `cov` is not positive definite.
pub fn expect_nd(
    cov: &[f64],
    d: usize,
    kinked: bool,
    cfg: &QuadConfig,
    out: &mut [f64],
    mut f: impl FnMut(&[f64], f64, &mut [f64]),
) -> bool {
    out.iter_mut().for_each(|v| *v = 0.0);
    let Some(l) = cholesky(cov, d) else {
        return false;
    };
    let mut z = vec![0.0; d];
    match d {
        1 => {
            let r = rule1(kinked, cov[0], cfg);
            for (&x, &w) in r.x.iter().zip(&r.w) {
                z[0] = l[0] * x;
                f(&z, w, out);
            }
        }
        2 if kinked || cov[0].max(cov[3]) > 1.0 => {
            polar2(&l, cov[0].max(cov[3]), &mut z, out, &mut f)
        }
        _ => {
            let q = if d == 2 { cfg.gh2 } else { cfg.ghn };
            let r = hermite(q);
            let mut idx = vec![0usize; d];
            let mut xi = vec![0.0; d];
            loop {
                let mut w = 1.0;
                for k in 0..d {
                    xi[k] = r.x[idx[k]];
                    w *= r.w[idx[k]];
                }
                if w > 1e-300 {
                    for i in 0..d {
                        z[i] = (0..=i).map(|k| l[i * d + k] * xi[k]).sum();
                    }
                    f(&z, w, out);
                }
                // odometer increment
                let mut k = 0;
                loop {
                    idx[k] += 1;
                    if idx[k] < q {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                    if k == d {
                        return true;
                    }
                }
            }
        }
    }
    true
}

/// 2-D expectation in polar coordinates ξ = r(cos φ, sin φ), split into the angular sectors where
/// neither coordinate of z = Lξ changes sign; composite Gauss–Legendre in r and φ on each piece.
/// Radial panels and angular nodes grow with √K_max so that features of width ~1 in z (the
/// saturation of tanh, the bend of GELU) stay resolved.
fn polar2(
    l: &[f64],
    kmax: f64,
    z: &mut [f64],
    out: &mut [f64],
    f: &mut impl FnMut(&[f64], f64, &mut [f64]),
) {
    use std::f64::consts::PI;
    let (l11, l21, l22) = (l[0], l[2], l[3]);
    let _ = l11;
    let mut cuts = vec![0.0, 0.5 * PI, 1.5 * PI, 2.0 * PI];
    let phi0 = (-l21).atan2(l22).rem_euclid(PI);
    cuts.push(phi0);
    cuts.push(phi0 + PI);
    cuts.sort_by(|a, b| a.total_cmp(b));
    let scale = kmax.sqrt().max(1.0);
    let ang = legendre((40.0 * scale).ceil() as usize);
    let rad = half_line((12.0 * scale).ceil() as usize);
    for s in cuts.windows(2) {
        let (a, b) = (s[0], s[1]);
        if b - a < 1e-15 {
            continue;
        }
        for (&t, &wt) in ang.x.iter().zip(&ang.w) {
            let phi = a + 0.5 * (b - a) * (t + 1.0);
            let wphi = 0.5 * (b - a) * wt / (2.0 * PI);
            let (c, sn) = (phi.cos(), phi.sin());
            for (&r, &wr) in rad.x.iter().zip(&rad.w) {
                let w = wphi * wr * r * (-0.5 * r * r).exp();
                z[0] = l[0] * r * c;
                z[1] = r * (l21 * c + l22 * sn);
                f(z, w, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hermite_integrates_moments_exactly() {
        // An order-q rule is exact for polynomials of degree ≤ 2q−1: E[x^{2k}] = (2k−1)!!.
        for q in [5, 40, 128, 400] {
            let r = hermite(q);
            let m = |p: i32| {
                r.x.iter()
                    .zip(&r.w)
                    .map(|(x, w)| w * x.powi(p))
                    .sum::<f64>()
            };
            assert!((m(0) - 1.0).abs() < 1e-14);
            assert!((m(2) - 1.0).abs() < 1e-12, "q={q}");
            assert!((m(4) - 3.0).abs() < 1e-11, "q={q}");
            assert!(m(3).abs() < 1e-12);
            if q >= 5 {
                assert!((m(8) - 105.0).abs() < 1e-8 * 105.0, "q={q}: {}", m(8));
            }
        }
    }

    #[test]
    fn split_rule_handles_kinks() {
        let r = split_at_zero(12);
        // E[relu(x)²] = 1/2, E[|x|] = √(2/π), E[relu(x)] = 1/√(2π).
        let e = |f: &dyn Fn(f64) -> f64| r.x.iter().zip(&r.w).map(|(x, w)| w * f(*x)).sum::<f64>();
        assert!((e(&|x| x.max(0.0).powi(2)) - 0.5).abs() < 1e-14);
        assert!((e(&|x| x.abs()) - (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-14);
    }

    #[test]
    fn polar_rule_matches_arccosine_kernel() {
        // E[relu(z1) relu(z2)] = √(K11 K22)(sin θ + (π−θ) cos θ)/(2π) (Cho & Saul 2009).
        let (k11, k22, rho) = (1.3f64, 0.7f64, 0.35f64);
        let k12 = rho * (k11 * k22).sqrt();
        let cov = [k11, k12, k12, k22];
        let mut out = [0.0];
        assert!(expect_nd(
            &cov,
            2,
            true,
            &QuadConfig::default(),
            &mut out,
            |z, w, o| { o[0] += w * z[0].max(0.0) * z[1].max(0.0) }
        ));
        let th = rho.acos();
        let exact = (k11 * k22).sqrt() * (th.sin() + (std::f64::consts::PI - th) * th.cos())
            / (2.0 * std::f64::consts::PI);
        assert!((out[0] - exact).abs() < 1e-13, "{} vs {exact}", out[0]);
    }

    #[test]
    fn tensor_rule_gets_gaussian_fourth_moments() {
        // Isserlis: E[z1 z2 z3 z4] = K12K34 + K13K24 + K14K23, exact for the tensor rule.
        let k = [
            1.0, 0.3, 0.2, 0.1, 0.3, 1.5, 0.4, 0.2, 0.2, 0.4, 0.8, 0.3, 0.1, 0.2, 0.3, 1.1,
        ];
        let mut out = [0.0];
        assert!(expect_nd(
            &k,
            4,
            false,
            &QuadConfig::default(),
            &mut out,
            |z, w, o| { o[0] += w * z[0] * z[1] * z[2] * z[3] }
        ));
        let exact = 0.3 * 0.3 + 0.2 * 0.2 + 0.1 * 0.4;
        assert!((out[0] - exact).abs() < 1e-13);
        assert!(!expect_nd(
            &[1.0, 2.0, 2.0, 1.0],
            2,
            false,
            &QuadConfig::default(),
            &mut out,
            |_, _, _| {}
        ));
    }
}
