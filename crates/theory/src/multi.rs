//! Multi-input recursions: kernel K_{δ1δ2}, NTK mean Θ_{δ1δ2} and four-point vertex
//! V_{(δ1δ2)(δ3δ4)} for a set of p inputs (PDLT eqs. (4.118)–(4.119) in the raised-index form
//! of docs/derivations/theory.md#four-point-vertex; orthogonal source by Weingarten calculus,
//! docs/derivations/orthogonal.md#haar-vertex-multi).
//!
//! The raised-index sum Σ V^{(b1b2)(b3b4)}⟨σσ(z z − K)⟩⟨σσ(z z − K)⟩ is rewritten with Stein's
//! lemma as Σ V_{(c1c2)(c3c4)} Y^{a1a2}_{c1c2} Y^{a3a4}_{c3c4} with Y^{ab}_{cd} = ⟨∂_c∂_d(σ_aσ_b)⟩,
//! which vanishes unless c, d ∈ {a, b}. Y is computed inside the (≤2)-D marginal of (z_a, z_b) as
//! K_AA⁻¹⟨σ_aσ_b(z_A z_Aᵀ − K_AA)⟩K_AA⁻¹, so no σ'' (a delta function for ReLU) is ever needed.
//! Cost per layer: O(p²) 2-D integrals for K, Θ, Y, O(p⁴/24) up-to-4-D integrals for ⟨σσσσ⟩.
//! For activations with a kink at zero, the 3- and 4-D integrals (p ≥ 3) use tensor
//! Gauss–Hermite and are accurate to ≈1e-3 only; 1- and 2-D integrals are exact to rounding.

use crate::gauss::expect_nd;
use crate::profile::{Ensemble, Init, LearningRates};
use crate::TheoryError;
use std::collections::HashMap;

/// Statistics of one layer for p inputs. `k` and `theta` are p×p row-major, `v` is p⁴ with
/// v[((a·p + b)·p + c)·p + d] = V_{(ab)(cd)}.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLayer {
    /// Layer index l (1-based).
    pub l: usize,
    /// Number of inputs p.
    pub p: usize,
    /// Kernel K_{δ1δ2}, p×p row-major.
    pub k: Vec<f64>,
    /// NTK mean Θ_{δ1δ2}, p×p row-major.
    pub theta: Vec<f64>,
    /// Four-point vertex V_{(δ1δ2)(δ3δ4)}, p⁴ entries in the layout above.
    pub v: Vec<f64>,
}

impl MultiLayer {
    /// V_{(ab)(cd)}.
    pub fn v_at(&self, a: usize, b: usize, c: usize, d: usize) -> f64 {
        let p = self.p;
        self.v[((a * p + b) * p + c) * p + d]
    }
    /// K_{ab}.
    pub fn k_at(&self, a: usize, b: usize) -> f64 {
        self.k[a * self.p + b]
    }
}

/// Check that a p×p row-major matrix is symmetric positive definite.
pub fn check_kernel_matrix(k: &[f64], p: usize, flag: &'static str) -> Result<(), TheoryError> {
    if k.len() != p * p || p == 0 {
        return Err(TheoryError::Invalid {
            flag,
            msg: format!("expected a square matrix, got {} entries", k.len()),
        });
    }
    for a in 0..p {
        for b in 0..p {
            if !k[a * p + b].is_finite()
                || (k[a * p + b] - k[b * p + a]).abs() > 1e-12 * (1.0 + k[a * p + b].abs())
            {
                return Err(TheoryError::Invalid {
                    flag,
                    msg: format!("matrix must be finite and symmetric (entry {a},{b})"),
                });
            }
        }
    }
    if crate::gauss::cholesky(k, p).is_none() {
        return Err(TheoryError::Invalid {
            flag,
            msg: "matrix is not positive definite (two identical inputs, or |K12| ≥ √(K11 K22)); drop duplicates".into(),
        });
    }
    Ok(())
}

/// Solve the multi-input recursions for layers 1..=depth from K^(1) (p×p, positive definite),
/// V^(1) = 0 and Θ^(1)_{ab} = λ_b + λ_W x_a·x_b/n₀ with x_a·x_b/n₀ = (K^(1)_{ab} − C_b)/C_W.
pub fn profile_multi(
    e: &Ensemble,
    k1: &[f64],
    p: usize,
    depth: usize,
    lr: &LearningRates,
) -> Result<Vec<MultiLayer>, TheoryError> {
    e.validate()?;
    if e.is_residual() {
        return Err(TheoryError::Invalid {
            flag: "--gamma",
            msg: "multi-input recursions are implemented for plain MLPs (γ = 0)".into(),
        });
    }
    if depth == 0 {
        return Err(TheoryError::Invalid {
            flag: "--depth",
            msg: "depth must be ≥ 1".into(),
        });
    }
    check_kernel_matrix(k1, p, "--k1-matrix")?;
    let (lb1, lw1) = lr.at(1);
    let theta1: Vec<f64> = k1.iter().map(|&k| lb1 + lw1 * (k - e.cb) / e.cw).collect();
    let mut cur = MultiLayer {
        l: 1,
        p,
        k: k1.to_vec(),
        theta: theta1,
        v: vec![0.0; p * p * p * p],
    };
    let mut out = vec![cur.clone()];
    while cur.l < depth {
        let (lb, lw) = lr.at(cur.l + 1);
        cur = step(e, &cur, lb, lw)?;
        out.push(cur.clone());
    }
    Ok(out)
}

fn step(e: &Ensemble, cur: &MultiLayer, lb: f64, lw: f64) -> Result<MultiLayer, TheoryError> {
    let p = cur.p;
    let kinked = e.act.kink_at_zero()
        || crate::activation::scale_invariant_slopes(&*e.act).is_some_and(|(a, b)| a != b);
    let act = &*e.act;
    let diverged = |what: String| TheoryError::Diverged {
        layer: cur.l + 1,
        what,
    };
    // Pair quantities: ⟨σ_aσ_b⟩, ⟨σ'_aσ'_b⟩ and Y^{ab} (2×2 or 1×1).
    let mut ss = vec![0.0; p * p];
    let mut dd = vec![0.0; p * p];
    let mut y: HashMap<(usize, usize), [f64; 4]> = HashMap::new();
    for a in 0..p {
        for b in a..p {
            if a == b {
                let kaa = cur.k_at(a, a);
                let mut o = [0.0; 3];
                let ok = expect_nd(&[kaa], 1, kinked, &e.quad, &mut o, |z, w, o| {
                    let (s, d) = (act.f(z[0]), act.d1(z[0]));
                    o[0] += w * s * s;
                    o[1] += w * d * d;
                    o[2] += w * s * s * (z[0] * z[0] - kaa);
                });
                if !ok {
                    return Err(diverged(format!("K_{a}{a} = {kaa} is not positive")));
                }
                ss[a * p + a] = o[0];
                dd[a * p + a] = o[1];
                y.insert((a, a), [o[2] / (kaa * kaa), 0.0, 0.0, 0.0]);
            } else {
                let kab = [
                    cur.k_at(a, a),
                    cur.k_at(a, b),
                    cur.k_at(b, a),
                    cur.k_at(b, b),
                ];
                let mut o = [0.0; 5];
                let ok = expect_nd(&kab, 2, kinked, &e.quad, &mut o, |z, w, o| {
                    let ss = act.f(z[0]) * act.f(z[1]);
                    o[0] += w * ss;
                    o[1] += w * act.d1(z[0]) * act.d1(z[1]);
                    o[2] += w * ss * z[0] * z[0];
                    o[3] += w * ss * z[0] * z[1];
                    o[4] += w * ss * z[1] * z[1];
                });
                if !ok {
                    return Err(diverged(format!(
                        "the kernel of inputs {a},{b} lost positive definiteness"
                    )));
                }
                ss[a * p + b] = o[0];
                ss[b * p + a] = o[0];
                dd[a * p + b] = o[1];
                dd[b * p + a] = o[1];
                // E = ⟨σσ(z zᵀ − K)⟩ (2×2), Y = K⁻¹ E K⁻¹.
                let ee = [
                    o[2] - kab[0] * o[0],
                    o[3] - kab[1] * o[0],
                    o[3] - kab[1] * o[0],
                    o[4] - kab[3] * o[0],
                ];
                let det = kab[0] * kab[3] - kab[1] * kab[2];
                let inv = [kab[3] / det, -kab[1] / det, -kab[2] / det, kab[0] / det];
                let m = mul2(&mul2(&inv, &ee), &inv);
                y.insert((a, b), m);
            }
        }
    }
    // Four-point expectations ⟨σ_iσ_jσ_kσ_m⟩ for sorted index tuples.
    let mut four: HashMap<[usize; 4], f64> = HashMap::new();
    for i in 0..p {
        for j in i..p {
            for k in j..p {
                for m in k..p {
                    let idx = [i, j, k, m];
                    let mut distinct: Vec<usize> = idx.to_vec();
                    distinct.dedup();
                    let d = distinct.len();
                    let cov: Vec<f64> = (0..d * d)
                        .map(|t| cur.k_at(distinct[t / d], distinct[t % d]))
                        .collect();
                    let pos: Vec<usize> = idx
                        .iter()
                        .map(|x| distinct.iter().position(|y| y == x).unwrap())
                        .collect();
                    let mut o = [0.0];
                    if !expect_nd(&cov, d, kinked, &e.quad, &mut o, |z, w, o| {
                        o[0] += w * pos.iter().map(|&q| act.f(z[q])).product::<f64>();
                    }) {
                        return Err(diverged(format!(
                            "the kernel of inputs {distinct:?} lost positive definiteness"
                        )));
                    }
                    four.insert(idx, o[0]);
                }
            }
        }
    }
    let get4 = |a: usize, b: usize, c: usize, d: usize| {
        let mut s = [a, b, c, d];
        s.sort_unstable();
        four[&s]
    };
    // Y^{ab}_{cd} as a sparse list of (c, d, value).
    let yterms = |a: usize, b: usize| -> Vec<(usize, usize, f64)> {
        if a == b {
            vec![(a, a, y[&(a, a)][0])]
        } else {
            let (lo, hi) = (a.min(b), a.max(b));
            let m = y[&(lo, hi)];
            let ids = [lo, hi];
            (0..4).map(|t| (ids[t / 2], ids[t % 2], m[t])).collect()
        }
    };
    let cw = e.cw;
    let mut next = MultiLayer {
        l: cur.l + 1,
        p,
        k: vec![0.0; p * p],
        theta: vec![0.0; p * p],
        v: vec![0.0; p * p * p * p],
    };
    for a in 0..p {
        for b in 0..p {
            next.k[a * p + b] = e.cb + cw * ss[a * p + b];
            next.theta[a * p + b] =
                lb + lw * ss[a * p + b] + cw * dd[a * p + b] * cur.theta[a * p + b];
        }
    }
    for a1 in 0..p {
        for a2 in 0..p {
            let y12 = yterms(a1, a2);
            for a3 in 0..p {
                for a4 in 0..p {
                    let mut v =
                        cw * cw * (get4(a1, a2, a3, a4) - ss[a1 * p + a2] * ss[a3 * p + a4]);
                    if e.init == Init::Orthogonal {
                        v -= cw
                            * cw
                            * (ss[a1 * p + a3] * ss[a2 * p + a4]
                                + ss[a1 * p + a4] * ss[a2 * p + a3]);
                    }
                    let mut prop = 0.0;
                    for &(c1, c2, u) in &y12 {
                        for &(c3, c4, t) in &yterms(a3, a4) {
                            prop += cur.v_at(c1, c2, c3, c4) * u * t;
                        }
                    }
                    v += 0.25 * cw * cw * prop;
                    if !v.is_finite() {
                        return Err(diverged(format!("V overflowed ({v:e})")));
                    }
                    next.v[((a1 * p + a2) * p + a3) * p + a4] = v;
                }
            }
        }
    }
    Ok(next)
}

fn mul2(a: &[f64; 4], b: &[f64; 4]) -> [f64; 4] {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;
    use crate::profile::{profile, ProfileConfig};

    #[test]
    fn one_input_reduces_to_the_single_input_recursion() {
        for (act, cw, init) in [
            ("tanh", 1.0, Init::Gaussian),
            ("relu", 2.0, Init::Gaussian),
            ("tanh", 1.0, Init::Orthogonal),
        ] {
            let e = Ensemble::new(parse(act).unwrap(), 0.0, cw).with_init(init);
            let lr = LearningRates::default();
            let m = profile_multi(&e, &[0.8], 1, 12, &lr).unwrap();
            let s = profile(&ProfileConfig {
                ensemble: e,
                k1: 0.8,
                v1: 0.0,
                depth: 12,
                lr,
            })
            .unwrap();
            for (a, b) in m.iter().zip(&s) {
                assert!((a.k[0] - b.k).abs() < 1e-12 && (a.theta[0] - b.theta).abs() < 1e-11);
                assert!(
                    (a.v[0] - b.v).abs() < 1e-11 * (1.0 + b.v.abs()),
                    "{act}: {} vs {}",
                    a.v[0],
                    b.v
                );
            }
        }
    }

    #[test]
    fn relu_two_inputs_follow_the_arccosine_angle_map() {
        // ReLU at criticality, equal norms: ρ' = (sin θ + (π−θ)cos θ)/π; l²(1−ρ) = 11.40 at l = 10
        // from ρ^(1) = 0.5 (docs/derivations/theory.md#relu-angle-map).
        let e = Ensemble::new(parse("relu").unwrap(), 0.0, 2.0);
        let m =
            profile_multi(&e, &[1.0, 0.5, 0.5, 1.0], 2, 100, &LearningRates::default()).unwrap();
        let rho = |l: usize| m[l - 1].k_at(0, 1) / m[l - 1].k_at(0, 0);
        assert!(
            (100.0 * (1.0 - rho(10)) - 11.40).abs() < 0.01,
            "{}",
            100.0 * (1.0 - rho(10))
        );
        assert!((10000.0 * (1.0 - rho(100)) - 35.10).abs() < 0.01);
        // Diagonal blocks equal the single-input V = 5(l−1)K².
        assert!((m[9].v_at(0, 0, 0, 0) - 45.0).abs() < 1e-9);
        // V is symmetric under (ab) ↔ (cd) and within pairs.
        let v = &m[9];
        assert!((v.v_at(0, 1, 0, 0) - v.v_at(0, 0, 1, 0)).abs() < 1e-10);
        assert!((v.v_at(0, 1, 1, 1) - v.v_at(1, 1, 1, 0)).abs() < 1e-10);
    }

    #[test]
    fn rejects_non_positive_definite_inputs() {
        let e = Ensemble::new(parse("tanh").unwrap(), 0.0, 1.0);
        let err =
            profile_multi(&e, &[1.0, 1.0, 1.0, 1.0], 2, 3, &LearningRates::default()).unwrap_err();
        assert!(err.to_string().contains("--k1-matrix"), "{err}");
    }
}
