//! A table of Gaussian moments ⟨Π σ^(mᵢ)(z_{aᵢ}) · w⟩ over z ~ N(0, K) for a set of N inputs,
//! filled in two passes: the formulas run once *recording* every moment they read (each read
//! returns 0), the table integrates them together — one quadrature pass per set of distinct
//! inputs, the sets in parallel — and the formulas run again reading the values back. A moment
//! touches at most four inputs, so the work is a few 1- to 4-D integrals per set instead of
//! one per read.
//!
//! The weight w is 1 or, for the second coordinate derivative of the recursions
//! (docs/derivations/trained_test_input.md#recursions), the Hermite polynomial of a coordinate
//! q = (c, d): w = c₀(y_c y_d − P_cd), P the inverse of the covariance of the moment's inputs, y =
//! Pz, c₀ = ½ for c = d and 1 otherwise. Then ⟨h w⟩ = ∂⟨h⟩/∂K_q for the coordinate K_q with the
//! off-diagonal counted once, by integration by parts (⟨∂_c∂_d h⟩ = ⟨h(y_c y_d − P_cd)⟩ for any
//! Gaussian vector containing z_c, z_d and h's inputs), so no integrand needs σ beyond σ'''.
//!
//! Rules ([`crate::gauss::expect_nd`]): tensor Gauss–Hermite on the Cholesky factor of the set's
//! covariance, `ghn` nodes per dimension in 3- and 4-D, `gh2` in 2-D and `gh1` in 1-D while every
//! variance is ≤ 1; a larger variance switches 1- and 2-D moments to expect_nd's split and polar
//! rules, whose orders do not depend on `gh1`, `gh2` (accuracy:
//! docs/derivations/trained_dataset.md#two-layer). Weighted moments divide by det K of their
//! inputs; a set with det K ≤ 1e-12·Π K_aa is refused rather than integrated to noise.

use crate::activation::Activation;
use crate::gauss::{cholesky, expect_nd, QuadConfig};
use crate::TheoryError;
use rayon::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// One factor σ^(m)(z_a) of a moment: (derivative order m ≤ 3, input a).
pub type Fac = (u8, usize);

/// One term c·Π factors of a sum inside ⟨·⟩.
pub type Term = (f64, Vec<Fac>);

/// A moment's identity: its factors (sorted) and its optional coordinate weight.
type Key = (Vec<Fac>, Option<(usize, usize)>);

/// The moments of one Gaussian (module docs).
pub struct MomentTable {
    /// The covariance K of all inputs, N × N row-major.
    k: Vec<f64>,
    n: usize,
    recording: Cell<bool>,
    values: RefCell<HashMap<Key, f64>>,
}

fn key(fs: &[Fac], weight: Option<(usize, usize)>) -> Key {
    let mut f = fs.to_vec();
    f.sort_unstable();
    (f, weight.map(|(c, d)| (c.min(d), c.max(d))))
}

/// Inverse of a small symmetric positive-definite matrix (d × d) through its Cholesky factor.
fn inverse_spd(cov: &[f64], d: usize) -> Option<Vec<f64>> {
    let l = cholesky(cov, d)?;
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        // Solve L y = e_col, then Lᵀ x = y.
        let mut y = vec![0.0; d];
        for i in 0..d {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for k in 0..i {
                s -= l[i * d + k] * y[k];
            }
            y[i] = s / l[i * d + i];
        }
        for i in (0..d).rev() {
            let mut s = y[i];
            for k in i + 1..d {
                s -= l[k * d + i] * inv[k * d + col];
            }
            inv[i * d + col] = s / l[i * d + i];
        }
    }
    Some(inv)
}

impl MomentTable {
    /// An empty table for covariance `k` (N × N row-major), in recording mode.
    pub fn new(k: Vec<f64>, n: usize) -> Self {
        Self {
            k,
            n,
            recording: Cell::new(true),
            values: RefCell::new(HashMap::new()),
        }
    }

    /// ⟨Π factors⟩ (0 while recording).
    pub fn e(&self, fs: &[Fac]) -> f64 {
        self.read(key(fs, None))
    }

    /// ⟨Π factors · c₀(y_c y_d − P_cd)⟩ = ∂⟨Π factors⟩/∂K_q after one integration by parts
    /// (module docs; 0 while recording).
    pub fn e_weighted(&self, fs: &[Fac], q: (usize, usize)) -> f64 {
        self.read(key(fs, Some(q)))
    }

    fn read(&self, k: Key) -> f64 {
        if self.recording.get() {
            self.values.borrow_mut().entry(k).or_insert(0.0);
            0.0
        } else {
            *self
                .values
                .borrow()
                .get(&k)
                .expect("every moment was recorded before integration")
        }
    }

    /// The covariance back (to start a new table on the same inputs).
    pub fn into_kernel(self) -> Vec<f64> {
        self.k
    }

    /// Integrate every recorded moment and switch to reading. `flag` names the input an
    /// error is about (a set of inputs whose covariance is not positive definite).
    pub fn integrate(
        &self,
        act: &dyn Activation,
        cfg: &QuadConfig,
        flag: &'static str,
    ) -> Result<(), TheoryError> {
        let mut by_set: HashMap<Vec<usize>, Vec<Key>> = HashMap::new();
        for k in self.values.borrow().keys() {
            let mut set: Vec<usize> = k.0.iter().map(|f| f.1).collect();
            if let Some((c, d)) = k.1 {
                set.extend([c, d]);
            }
            set.sort_unstable();
            set.dedup();
            by_set.entry(set).or_default().push(k.clone());
        }
        let groups: Vec<(Vec<usize>, Vec<Key>)> = by_set.into_iter().collect();
        let (n, kern) = (self.n, &self.k);
        let results: Vec<Result<Vec<(Key, f64)>, TheoryError>> = groups
            .into_par_iter()
            .map(|(set, keys)| {
                let d = set.len();
                let cov: Vec<f64> = (0..d * d)
                    .map(|i| kern[set[i / d] * n + set[i % d]])
                    .collect();
                let bad = || TheoryError::Invalid {
                    flag,
                    msg: format!(
                        "the kernel on inputs {set:?} is not positive definite (two identical or \
                         collinear inputs?); drop duplicates"
                    ),
                };
                let pos = |a: usize| set.iter().position(|&s| s == a).unwrap_or(0);
                let prec = if keys.iter().any(|k| k.1.is_some()) {
                    // The weight's P = K⁻¹ amplifies rounding by cond K: refuse (nearly)
                    // collinear inputs, as the two-input code did.
                    let l = cholesky(&cov, d).ok_or_else(bad)?;
                    let det: f64 = (0..d).map(|i| l[i * d + i].powi(2)).product();
                    let diag: f64 = (0..d).map(|i| cov[i * d + i]).product();
                    if det <= 1e-12 * diag {
                        return Err(TheoryError::Invalid {
                            flag,
                            msg: format!(
                                "inputs {set:?} are (numerically) collinear at this layer (det K = \
                                 {det:e}); the NTK's mean shift needs them distinct — drop one"
                            ),
                        });
                    }
                    Some(inverse_spd(&cov, d).ok_or_else(bad)?)
                } else {
                    None
                };
                // Per key: (factor slots, weight slots and c₀).
                type Plan = (Vec<(usize, usize)>, Option<(usize, usize, f64)>);
                let plans: Vec<Plan> = keys
                    .iter()
                    .map(|(fs, w)| {
                        (
                            fs.iter().map(|&(m, a)| (pos(a), m as usize)).collect(),
                            w.map(|(c, dd)| (pos(c), pos(dd), if c == dd { 0.5 } else { 1.0 })),
                        )
                    })
                    .collect();
                let mut out = vec![0.0; keys.len()];
                let mut vals = vec![[0.0f64; 4]; d];
                let mut y = vec![0.0f64; d];
                let ok = expect_nd(&cov, d, false, cfg, &mut out, |z, w, acc| {
                    for (v, &zi) in vals.iter_mut().zip(z) {
                        let (f, d1) = act.f_d1(zi);
                        *v = [
                            f,
                            d1,
                            act.d2(zi).unwrap_or(f64::NAN),
                            act.d3(zi).unwrap_or(f64::NAN),
                        ];
                    }
                    if let Some(p) = &prec {
                        for (i, yi) in y.iter_mut().enumerate() {
                            *yi = (0..d).map(|j| p[i * d + j] * z[j]).sum();
                        }
                    }
                    for (slot, (fs, wt)) in acc.iter_mut().zip(&plans) {
                        let mut prod = w;
                        for &(i, m) in fs {
                            prod *= vals[i][m];
                        }
                        if let (Some((c, dd, c0)), Some(p)) = (wt, &prec) {
                            prod *= c0 * (y[*c] * y[*dd] - p[c * d + dd]);
                        }
                        *slot += prod;
                    }
                });
                if !ok {
                    return Err(bad());
                }
                Ok(keys.into_iter().zip(out).collect())
            })
            .collect();
        let mut values = self.values.borrow_mut();
        for r in results {
            for (k, v) in r? {
                values.insert(k, v);
            }
        }
        self.recording.set(false);
        Ok(())
    }
}

/// ∂/∂z_a of a sum of terms (product rule: each factor at input a in turn gets one more
/// derivative).
pub fn deriv(terms: &[Term], a: usize) -> Vec<Term> {
    let mut out = vec![];
    for (c, fs) in terms {
        for (i, &(k, d)) in fs.iter().enumerate() {
            if d == a {
                let mut f2 = fs.clone();
                f2[i] = (k + 1, d);
                out.push((*c, f2));
            }
        }
    }
    out
}

/// The integrand of ∂⟨g⟩/∂K_p (off-diagonal counted once): ½∂_a²g for p = (a, a), ∂_a∂_b g
/// otherwise (Price's theorem).
pub fn d_coord(terms: &[Term], (a, b): (usize, usize)) -> Vec<Term> {
    let c0 = if a == b { 0.5 } else { 1.0 };
    deriv(&deriv(terms, a), b)
        .into_iter()
        .map(|(c, f)| (c0 * c, f))
        .collect()
}

/// The distinct inputs of a sum of terms, ascending.
pub fn inputs(terms: &[Term]) -> Vec<usize> {
    let mut v: Vec<usize> = terms.iter().flat_map(|t| t.1.iter().map(|f| f.1)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The coordinates (a, b), a ≤ b, of the kernel restricted to `set`.
pub fn coords(set: &[usize]) -> Vec<(usize, usize)> {
    let mut v = vec![];
    for (i, &a) in set.iter().enumerate() {
        for &b in &set[i..] {
            v.push((a, b));
        }
    }
    v
}

/// One product, as a one-term sum.
pub fn prod(fs: &[Fac]) -> Vec<Term> {
    vec![(1.0, fs.to_vec())]
}
