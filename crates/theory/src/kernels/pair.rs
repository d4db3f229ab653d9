//! Gaussian pair integrals E[σ(u)σ(v)] and E[σ'(u)σ'(v)] for (u, v) ~ N(0, [[q_a, c], [c, q_b]]):
//! closed forms, the Mehler (Hermite) series and two 2-D quadratures
//! (docs/derivations/kernels.md#pair-integrals).

use crate::activation::{erf, scale_invariant_slopes, Activation};
use crate::gauss::{expect_nd, hermite, rule1, QuadConfig};
use std::f64::consts::PI;

/// Activations whose pair integrals have a closed form
/// (docs/derivations/kernels.md#closed-forms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClosedForm {
    /// σ(z) = a₊z for z > 0, a₋z for z < 0 (ReLU, leaky ReLU, linear): arc-cosine kernels.
    ScaleInvariant {
        /// Slope a₊ for z > 0.
        a_plus: f64,
        /// Slope a₋ for z < 0.
        a_minus: f64,
    },
    /// σ = erf.
    Erf,
    /// σ = sin.
    Sin,
}

/// The closed form that applies to `act`, detected numerically from σ and σ' (so a user type
/// that computes the same function benefits too); None when there is none.
pub fn closed_form(act: &dyn Activation) -> Option<ClosedForm> {
    if let Some((a_plus, a_minus)) = scale_invariant_slopes(act) {
        return Some(ClosedForm::ScaleInvariant { a_plus, a_minus });
    }
    let pts = [-3.1, -1.3, -0.4, 0.05, 0.7, 1.9, 4.2];
    let close = |a: f64, b: f64| (a - b).abs() <= 4e-16 * (1.0 + b.abs());
    let is = |f: &dyn Fn(f64) -> f64, d: &dyn Fn(f64) -> f64| {
        pts.iter()
            .all(|&z| close(act.f(z), f(z)) && close(act.d1(z), d(z)))
    };
    let two_over_sqrt_pi = 2.0 / PI.sqrt();
    if is(&erf, &|z| two_over_sqrt_pi * (-z * z).exp()) {
        return Some(ClosedForm::Erf);
    }
    if is(&f64::sin, &f64::cos) {
        return Some(ClosedForm::Sin);
    }
    None
}

/// True when σ or σ' has a kink at zero (explicitly, or as a scale-invariant σ with a₊ ≠ a₋).
pub(crate) fn kinked(act: &dyn Activation) -> bool {
    act.kink_at_zero() || scale_invariant_slopes(act).is_some_and(|(a, b)| a != b)
}

/// (E[σ(u)σ(v)], E[σ'(u)σ'(v)]) in closed form for variances q_a, q_b and covariance c
/// (docs/derivations/kernels.md#closed-forms). The angle is atan2(√det, c), which is exactly 0
/// on the diagonal (arccos of a rounded ρ = 1 − 2⁻⁵² would give 1.5e-8).
pub fn closed_pair(cf: ClosedForm, qa: f64, qb: f64, c: f64) -> (f64, f64) {
    match cf {
        ClosedForm::ScaleInvariant { a_plus, a_minus } => {
            let det = (qa * qb - c * c).max(0.0);
            let sdet = det.sqrt();
            let theta = sdet.atan2(c);
            let j = (sdet + (PI - theta) * c) / (2.0 * PI);
            let dm = a_plus - a_minus;
            let e = dm * dm * j + a_plus * a_minus * c;
            let ed = (a_plus * a_plus + a_minus * a_minus) * (PI - theta) / (2.0 * PI)
                + a_plus * a_minus * theta / PI;
            (e, ed)
        }
        ClosedForm::Erf => {
            let ab = (1.0 + 2.0 * qa) * (1.0 + 2.0 * qb);
            let s = (2.0 * c / ab.sqrt()).clamp(-1.0, 1.0);
            let e = 2.0 / PI * s.asin();
            let ed = 4.0 / PI / (ab - 4.0 * c * c).sqrt();
            (e, ed)
        }
        ClosedForm::Sin => {
            let g = (-0.5 * (qa + qb)).exp();
            (g * c.sinh(), g * c.cosh())
        }
    }
}

/// Per-input data of the Mehler series at variance q: the Hermite coefficients
/// c_k = E[σ(√q ξ) h_k(ξ)] and d_k = E[σ'(√q ξ) h_k(ξ)] (k = 0..=M, h_k orthonormal), the exact
/// diagonal values E\[σ²\], E\[σ'²\], and the Parseval tails E\[σ²\] − Σ c_k², E\[σ'²\] − Σ d_k².
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MehlerPoint {
    /// The variance q.
    pub q: f64,
    /// E[σ(z)²], z ~ N(0, q).
    pub s2: f64,
    /// E[σ'(z)²].
    pub d2: f64,
    /// c_0..c_M.
    pub c: Vec<f64>,
    /// d_0..d_M.
    pub d: Vec<f64>,
    /// max(0, E\[σ²\] − Σ_k c_k²): the squared norm of the truncated part of σ.
    pub tail_s: f64,
    /// max(0, E\[σ'²\] − Σ_k d_k²).
    pub tail_d: f64,
    /// The order M in use (≤ c.len() − 1); the tails are those after order M.
    pub order: usize,
}

/// The 1-D rule used for the Mehler coefficients at variance q: probabilists' Gauss–Hermite with
/// `nodes` nodes for smooth σ at q ≤ 1, composite Gauss–Legendre split at zero otherwise (the
/// same choice as the single-input recursions, [`crate::gauss::rule1`]).
fn coeff_rule(kinked: bool, q: f64, nodes: usize) -> std::sync::Arc<crate::gauss::Rule1> {
    let quad = QuadConfig {
        gh1: nodes,
        ..QuadConfig::default()
    };
    rule1(kinked, q, &quad)
}

/// Hermite coefficients of σ and σ' at variance q up to order `terms` (inclusive), by a 1-D
/// rule with max(`nodes`, 1.5·`terms`) Gauss–Hermite nodes (q ≤ 1, smooth σ) or composite
/// Gauss–Legendre split at zero (q > 1 or a kink).
pub fn mehler_point(
    act: &dyn Activation,
    kinked: bool,
    q: f64,
    terms: usize,
    nodes: usize,
) -> MehlerPoint {
    coefficients(act, kinked, q, terms, nodes, None)
}

/// As [`mehler_point`], but stopping at the first order M ≤ `max_terms` at which both Parseval
/// tails are ≤ `tol` (then `order` = M and the vectors hold M + 1 coefficients). Err (with
/// the coefficients up to `max_terms`, and the exact E\[σ²\], E\[σ'²\]) when `max_terms` orders
/// do not reach `tol`.
pub fn mehler_point_until(
    act: &dyn Activation,
    kinked: bool,
    q: f64,
    max_terms: usize,
    nodes: usize,
    tol: f64,
) -> Result<MehlerPoint, MehlerPoint> {
    let p = coefficients(act, kinked, q, max_terms, nodes, Some(tol));
    if p.tail_s <= tol && p.tail_d <= tol {
        Ok(p)
    } else {
        Err(p)
    }
}

/// (Σ aᵢhᵢ, Σ bᵢhᵢ) with four partial sums each (the fixed association lets the compiler use
/// SIMD lanes; the result is still deterministic).
#[inline]
fn dot2(a: &[f64], b: &[f64], h: &[f64]) -> (f64, f64) {
    let (mut sa, mut sb) = ([0.0; 4], [0.0; 4]);
    let n4 = h.len() / 4 * 4;
    for ((ca, cb), ch) in a[..n4]
        .chunks_exact(4)
        .zip(b[..n4].chunks_exact(4))
        .zip(h[..n4].chunks_exact(4))
    {
        for l in 0..4 {
            sa[l] += ca[l] * ch[l];
            sb[l] += cb[l] * ch[l];
        }
    }
    let (mut ta, mut tb) = (
        (sa[0] + sa[1]) + (sa[2] + sa[3]),
        (sb[0] + sb[1]) + (sb[2] + sb[3]),
    );
    for i in n4..h.len() {
        ta += a[i] * h[i];
        tb += b[i] * h[i];
    }
    (ta, tb)
}

fn coefficients(
    act: &dyn Activation,
    kinked: bool,
    q: f64,
    terms: usize,
    nodes: usize,
    stop: Option<f64>,
) -> MehlerPoint {
    let mut p = MehlerPoint {
        q,
        c: Vec::with_capacity(terms + 1),
        d: Vec::with_capacity(terms + 1),
        ..Default::default()
    };
    // At least 1.5·M Gauss–Hermite nodes: with fewer, the rule aliases the high orders
    // (measured at q = 1 with 200 nodes: M = 300 is 100× worse than M = 150).
    let rule = coeff_rule(kinked, q, nodes.max(3 * terms / 2));
    let sq = q.max(0.0).sqrt();
    // Nodes whose weight underflows to 0 (|x| ≳ 38) contribute nothing, but there the Hermite
    // recursion overflows at high orders (h_k(x) ~ x^k/√k!), and 0·∞ would make every
    // coefficient NaN (seen from M ≈ 600 on, when the rule has ≥ 900 nodes): drop them.
    let (xs, wts): (Vec<f64>, Vec<f64>) = rule
        .x
        .iter()
        .zip(&rule.w)
        .filter(|(_, &w)| w > 0.0)
        .map(|(&x, &w)| (x, w))
        .unzip();
    // Weighted σ and σ' at the nodes, then the Hermite recursion k by k over all nodes at
    // once (the inner loop over nodes has no dependency chain and vectorises).
    let len = xs.len();
    let mut ws = Vec::with_capacity(len);
    let mut wd = Vec::with_capacity(len);
    for (&x, &w) in xs.iter().zip(&wts) {
        let (s, d) = act.f_d1(sq * x);
        ws.push(w * s);
        wd.push(w * d);
        p.s2 += w * s * s;
        p.d2 += w * d * d;
    }
    // h_0 = 1, h_1 = x, h_{k+1} = (x h_k − √k h_{k−1}) / √(k+1).
    let mut h_prev = vec![0.0; len];
    let mut h = vec![1.0; len];
    let (mut sum_c, mut sum_d) = (0.0, 0.0);
    for k in 0..=terms {
        let (ck, dk) = dot2(&ws, &wd, &h);
        p.c.push(ck);
        p.d.push(dk);
        sum_c += ck * ck;
        sum_d += dk * dk;
        p.order = k;
        p.tail_s = (p.s2 - sum_c).max(0.0);
        p.tail_d = (p.d2 - sum_d).max(0.0);
        if stop.is_some_and(|tol| p.tail_s <= tol && p.tail_d <= tol) {
            break;
        }
        let (a, b) = ((k as f64).sqrt(), 1.0 / ((k + 1) as f64).sqrt());
        for ((hp, hc), &x) in h_prev.iter_mut().zip(h.iter_mut()).zip(&xs) {
            let next = (x * *hc - a * *hp) * b;
            *hp = *hc;
            *hc = next;
        }
    }
    p
}

/// The Mehler series E ≈ Σ_k c_k(q_a)c_k(q_b)ρ^k, E' ≈ Σ_k d_k(q_a)d_k(q_b)ρ^k (Horner in k)
/// up to k = max(order_a, order_b) (both points must hold that many coefficients).
/// Truncation error ≤ √(tail_s(a)·tail_s(b)) and √(tail_d(a)·tail_d(b)) by Cauchy–Schwarz
/// (docs/derivations/kernels.md#mehler-series).
#[inline]
pub fn mehler_pair(a: &MehlerPoint, b: &MehlerPoint, rho: f64) -> (f64, f64) {
    mehler_pair_to(a, b, rho, a.order.max(b.order))
}

/// The Mehler sums of [`mehler_pair`] truncated at order `m` (both points must hold at least
/// m + 1 coefficients). Truncation error ≤ |ρ|^(m+1)·√(T_a(m)·T_b(m)) with T(m) the Parseval
/// tail after order m (docs/derivations/kernels.md#mehler-series).
#[inline]
pub fn mehler_pair_to(a: &MehlerPoint, b: &MehlerPoint, rho: f64, m: usize) -> (f64, f64) {
    // Even and odd orders as two Horner sums in ρ² (four independent chains instead of two:
    // the loop is bound by the latency of the multiply-adds).
    let (ac, bc, ad, bd) = (&a.c[..=m], &b.c[..=m], &a.d[..=m], &b.d[..=m]);
    let r2 = rho * rho;
    let (mut e0, mut e1, mut d0, mut d1) = (0.0, 0.0, 0.0, 0.0);
    let mut k = m + 1;
    if k % 2 == 1 {
        // m even: the top order has no odd partner.
        k -= 1;
        e0 = ac[k] * bc[k];
        d0 = ad[k] * bd[k];
    }
    while k >= 2 {
        k -= 2;
        e0 = e0 * r2 + ac[k] * bc[k];
        e1 = e1 * r2 + ac[k + 1] * bc[k + 1];
        d0 = d0 * r2 + ad[k] * bd[k];
        d1 = d1 * r2 + ad[k + 1] * bd[k + 1];
    }
    (e0 + rho * e1, d0 + rho * d1)
}

impl MehlerPoint {
    /// The Parseval tails (of σ, of σ') after order m ≤ `order`: T(m) = T(order) +
    /// Σ_{m<k≤order} c_k², and likewise for σ'.
    pub fn tails_at(&self, m: usize) -> (f64, f64) {
        let m = m.min(self.order);
        let extra = |v: &[f64]| v[m + 1..=self.order].iter().map(|x| x * x).sum::<f64>();
        (self.tail_s + extra(&self.c), self.tail_d + extra(&self.d))
    }
}

/// ρ = c/√(q_a q_b) clamped to [−1, 1] (0 when a variance vanishes: that preactivation is the
/// constant 0 and is independent of the other).
#[inline]
pub fn correlation(qa: f64, qb: f64, c: f64) -> f64 {
    let den = (qa * qb).sqrt();
    if den > 0.0 {
        (c / den).clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// Direct 2-D Gauss–Hermite: u = √q_a ξ₁, v = √q_b(ρξ₁ + √(1−ρ²) ξ₂) with a `nodes`² tensor
/// rule. The reference for smooth σ; it converges only algebraically across a kink.
pub fn gauss_hermite_pair(
    act: &dyn Activation,
    qa: f64,
    qb: f64,
    c: f64,
    nodes: usize,
) -> (f64, f64) {
    let r = hermite(nodes);
    let rho = correlation(qa, qb, c);
    let (sa, sb) = (qa.max(0.0).sqrt(), qb.max(0.0).sqrt());
    let perp = (1.0 - rho * rho).max(0.0).sqrt();
    let (mut e, mut ed) = (0.0, 0.0);
    for (&x1, &w1) in r.x.iter().zip(&r.w) {
        let (su, du) = act.f_d1(sa * x1);
        let (mut ie, mut ied) = (0.0, 0.0);
        for (&x2, &w2) in r.x.iter().zip(&r.w) {
            let (sv, dv) = act.f_d1(sb * (rho * x1 + perp * x2));
            ie += w2 * sv;
            ied += w2 * dv;
        }
        e += w1 * su * ie;
        ed += w1 * du * ied;
    }
    (e, ed)
}

/// Kink-aware 2-D quadrature ([`crate::gauss::expect_nd`]: Gauss–Hermite for smooth σ with
/// q ≤ 1, polar sectors split where u or v changes sign otherwise). For |ρ| = 1 the pair is
/// degenerate and a 1-D rule is used with v = ±√(q_b/q_a) u.
pub fn adaptive_pair(
    act: &dyn Activation,
    kinked: bool,
    qa: f64,
    qb: f64,
    c: f64,
    quad: &QuadConfig,
) -> (f64, f64) {
    let mut o = [0.0; 2];
    let det = qa * qb - c * c;
    if qa <= 0.0 || qb <= 0.0 {
        // A constant-zero preactivation: the pair factorises.
        let (q, other) = if qa <= 0.0 { (qb, 0.0) } else { (qa, 0.0) };
        let (s0, d0) = act.f_d1(other);
        expect_nd(&[q.max(1e-300)], 1, kinked, quad, &mut o, |z, w, o| {
            let (s, d) = act.f_d1(z[0]);
            o[0] += w * s;
            o[1] += w * d;
        });
        return (s0 * o[0], d0 * o[1]);
    }
    if det > 1e-13 * qa * qb
        && expect_nd(&[qa, c, c, qb], 2, kinked, quad, &mut o, |z, w, o| {
            let (su, du) = act.f_d1(z[0]);
            let (sv, dv) = act.f_d1(z[1]);
            o[0] += w * su * sv;
            o[1] += w * du * dv;
        })
    {
        return (o[0], o[1]);
    }
    let ratio = (qb / qa).sqrt() * c.signum();
    expect_nd(&[qa], 1, kinked, quad, &mut o, |z, w, o| {
        let (su, du) = act.f_d1(z[0]);
        let (sv, dv) = act.f_d1(ratio * z[0]);
        o[0] += w * su * sv;
        o[1] += w * du * dv;
    });
    (o[0], o[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;

    /// Max |Δ| over a grid of ρ ∈ [−0.95, 1] for (E, E').
    fn max_err(f: impl Fn(f64) -> ((f64, f64), (f64, f64))) -> (f64, f64) {
        let mut m = (0.0f64, 0.0f64);
        for i in 0..=39 {
            let rho = -0.95 + 1.95 * i as f64 / 39.0;
            let ((a, ad), (b, bd)) = f(rho);
            m.0 = m.0.max((a - b).abs());
            m.1 = m.1.max((ad - bd).abs());
        }
        m
    }

    #[test]
    fn closed_forms_are_detected() {
        assert_eq!(
            closed_form(&*parse("relu").unwrap()),
            Some(ClosedForm::ScaleInvariant {
                a_plus: 1.0,
                a_minus: 0.0
            })
        );
        assert_eq!(closed_form(&*parse("erf").unwrap()), Some(ClosedForm::Erf));
        assert_eq!(closed_form(&*parse("sin").unwrap()), Some(ClosedForm::Sin));
        assert_eq!(closed_form(&*parse("tanh").unwrap()), None);
        assert_eq!(closed_form(&*parse("gelu").unwrap()), None);
    }

    #[test]
    fn smooth_closed_forms_match_gauss_hermite() {
        // erf and sin are entire: at q ≤ 1 the 120² Gauss–Hermite rule is exact to rounding
        // (its error for these integrands is below 1e-15; measured: ≤ 3e-16), so 1e-13 is a
        // rounding tolerance.
        for name in ["erf", "sin"] {
            let act = parse(name).unwrap();
            let cf = closed_form(&*act).unwrap();
            for &(qa, qb) in &[(0.3, 0.5), (1.0, 1.0), (0.05, 0.9)] {
                let (e, ed) = max_err(|rho| {
                    let c = rho * f64::sqrt(qa * qb);
                    (
                        closed_pair(cf, qa, qb, c),
                        gauss_hermite_pair(&*act, qa, qb, c, 120),
                    )
                });
                assert!(e < 1e-13 && ed < 1e-13, "{name} ({qa},{qb}): {e:e} {ed:e}");
            }
        }
    }

    #[test]
    fn scale_invariant_closed_forms_match_kink_aware_quadrature() {
        // The polar-sector rule is smooth on each sector and converges geometrically; measured
        // agreement ≤ 1e-14 at these q, so 1e-12 leaves room for rounding.
        for (ap, am) in [(1.0, 0.0), (1.0, 0.2), (1.3, -0.4), (1.0, 1.0)] {
            let act = crate::activation::ScaleInvariant {
                a_plus: ap,
                a_minus: am,
            };
            let cf = ClosedForm::ScaleInvariant {
                a_plus: ap,
                a_minus: am,
            };
            for &(qa, qb) in &[(0.3, 0.5), (1.0, 1.0), (2.0, 3.5)] {
                let (e, ed) = max_err(|rho| {
                    let c = rho * f64::sqrt(qa * qb);
                    (
                        closed_pair(cf, qa, qb, c),
                        adaptive_pair(&act, kinked(&act), qa, qb, c, &QuadConfig::default()),
                    )
                });
                assert!(
                    e < 1e-12 && ed < 1e-12,
                    "({ap},{am}) ({qa},{qb}): {e:e} {ed:e}"
                );
            }
        }
    }

    #[test]
    fn closed_form_diagonal_is_exact() {
        // ρ = 1 exactly: ReLU E = q/2, E' = 1/2 to the last bit (atan2, not arccos).
        let cf = ClosedForm::ScaleInvariant {
            a_plus: 1.0,
            a_minus: 0.0,
        };
        let q = 1.2345678901234567;
        let (e, ed) = closed_pair(cf, q, q, q);
        assert_eq!(e, q / 2.0);
        assert_eq!(ed, 0.5);
    }

    #[test]
    fn mehler_series_matches_gauss_hermite_for_tanh() {
        // Reference: 2-D Gauss–Hermite with 160² nodes (q ≤ 1: converged to ≈1e-15 in E and
        // ≈2e-13 in E', checked against 200² below). Measured truncation error of the series (max over ρ ∈ [−0.95, 1]):
        // q = (0.3, 0.5), M = 20: ≈ 4e-9 / 9e-8; M = 60: ≤ 1e-14.
        // q = (1, 1), M = 60: ≈ 1e-10 / 5e-9; M = 100: ≈ 1e-13 / 9e-12.
        // Each assertion also checks that the Cauchy–Schwarz bound √(tail_a tail_b) holds.
        let act = parse("tanh").unwrap();
        let cases = [
            ((0.3, 0.5), 20, 1e-8, 2e-7),
            ((0.3, 0.5), 60, 1e-13, 1e-13),
            ((1.0, 1.0), 60, 5e-10, 2e-8),
            ((1.0, 1.0), 100, 5e-13, 5e-11),
        ];
        for ((qa, qb), m, tol_e, tol_d) in cases {
            let pa = mehler_point(&*act, false, qa, m, 200);
            let pb = mehler_point(&*act, false, qb, m, 200);
            let (e, ed) = max_err(|rho| {
                let c = rho * f64::sqrt(qa * qb);
                (
                    mehler_pair(&pa, &pb, rho),
                    gauss_hermite_pair(&*act, qa, qb, c, 160),
                )
            });
            eprintln!(
                "tanh q=({qa},{qb}) M={m}: |ΔE| {e:.2e} |ΔE'| {ed:.2e}; bounds {:.2e} {:.2e}",
                (pa.tail_s * pb.tail_s).sqrt(),
                (pa.tail_d * pb.tail_d).sqrt()
            );
            assert!(e < tol_e && ed < tol_d, "M={m} ({qa},{qb}): {e:e} {ed:e}");
            // 1e-13: the floor of the 1-D coefficient quadrature and of the 2-D reference.
            assert!(e <= (pa.tail_s * pb.tail_s).sqrt() + 1e-13);
            assert!(ed <= (pa.tail_d * pb.tail_d).sqrt() + 1e-13);
        }
        // The reference itself: 160² vs 200² nodes (measured 2e-15 / 2e-13 at q = 1).
        let (e, ed) = max_err(|rho| {
            (
                gauss_hermite_pair(&*act, 1.0, 1.0, rho, 160),
                gauss_hermite_pair(&*act, 1.0, 1.0, rho, 200),
            )
        });
        assert!(e < 1e-14 && ed < 1e-12, "{e:e} {ed:e}");
    }
}
#[cfg(test)]
mod measurements {
    //! Measurements for the docs, not assertions: `cargo test --release -p dlt-theory
    //! mehler_truncation_table -- --ignored --nocapture`.
    use super::*;
    use crate::activation::parse;

    #[test]
    #[ignore]
    fn mehler_truncation_table() {
        // Max over ρ ∈ [−0.95, 1] of |Mehler − reference| for tanh, reference = the adaptive
        // rule (GH 160² at q ≤ 1, polar sectors above), beside the Cauchy–Schwarz bound and the
        // error of the direct 200² Gauss–Hermite rule.
        let act = parse("tanh").unwrap();
        let quad = QuadConfig {
            gh2: 160,
            ..QuadConfig::default()
        };
        for &(qa, qb) in &[(0.3, 0.5), (1.0, 1.0), (3.0, 3.0), (10.0, 10.0)] {
            for m in [20, 60, 100, 150, 200, 300] {
                let pa = mehler_point(&*act, false, qa, m, 200);
                let pb = mehler_point(&*act, false, qb, m, 200);
                let mut w = [0.0f64; 4];
                for i in 0..=39 {
                    let rho = -0.95 + 1.95 * i as f64 / 39.0;
                    let c = rho * f64::sqrt(qa * qb);
                    let a = mehler_pair(&pa, &pb, rho);
                    let r = adaptive_pair(&*act, false, qa, qb, c, &quad);
                    let g = gauss_hermite_pair(&*act, qa, qb, c, 200);
                    w[0] = w[0].max((a.0 - r.0).abs());
                    w[1] = w[1].max((a.1 - r.1).abs());
                    w[2] = w[2].max((g.0 - r.0).abs());
                    w[3] = w[3].max((g.1 - r.1).abs());
                }
                eprintln!(
                    "q=({qa},{qb}) M={m}: Mehler {:.1e} / {:.1e}; bound {:.1e} / {:.1e}; GH 200² {:.1e} / {:.1e}",
                    w[0], w[1], (pa.tail_s * pb.tail_s).sqrt(), (pa.tail_d * pb.tail_d).sqrt(), w[2], w[3]
                );
            }
        }
    }
}
