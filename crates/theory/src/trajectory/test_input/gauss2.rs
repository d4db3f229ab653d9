//! Two-input Gaussian expectations ⟨Π σ^(kᵢ)(z_{dᵢ})⟩ over (z_A, z_β) ~ N(0, K), K 2 × 2, and the
//! derivative rules the two-input recursions are written in
//! (docs/derivations/trained_test_input.md#recursions):
//!
//! * ⟨∂_a g⟩ by the product rule (one factor's derivative order raised);
//! * the coordinate derivative ∂⟨g⟩/∂K_p, p ∈ {AA, Aβ, ββ} with the off-diagonal counted once:
//!   ½⟨∂_a²g⟩ for p = aa and ⟨∂_A∂_β g⟩ for p = Aβ (Price's theorem);
//! * the second coordinate derivative with its last two ∂'s moved onto the Gaussian by
//!   integration by parts, ⟨∂_c∂_d h⟩ = ⟨h (y_c y_d − P_cd)⟩ with P = K⁻¹ and y = Pz, so that no
//!   integrand needs σ beyond its third derivative (the one input that needs four z-derivatives
//!   is Θ¹ at depth 3).
//!
//! The rule is the tensor product of probabilists' Gauss–Hermite rules on z = Lξ, L the Cholesky
//! factor of K (a rank-one K, β = A, is allowed except where P is needed). For the critical tanh
//! and sin networks of depth ≤ 3, K ≤ 1 and the integrands are entire, but tanh's poles at
//! z = ±iπ/2 slow Gauss–Hermite to exp(−c√q): q = 256 nodes per dimension are converged to
//! ~1e-12, q = 120 leaves 2e-8 (test `the_rule_is_converged`). One evaluation at depth 3 takes
//! ≈ 0.1 s.

use crate::activation::Activation;
use crate::gauss::hermite;
use crate::TheoryError;

/// An input label: the training input A or the test input β.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Inp {
    /// The training input x_A.
    A = 0,
    /// The test input x_β.
    B = 1,
}

/// Both inputs, in index order.
pub const INPUTS: [Inp; 2] = [Inp::A, Inp::B];

/// The coordinates (a, b) of a 2 × 2 symmetric K: AA, Aβ (counted once), ββ.
pub const COORDS: [(Inp, Inp); 3] = [(Inp::A, Inp::A), (Inp::A, Inp::B), (Inp::B, Inp::B)];

/// One factor σ^(k)(z_d) of a product inside ⟨·⟩ (k ≤ 3).
pub type Fac = (u8, Inp);

/// One term c·Π factors of a sum inside ⟨·⟩.
pub type Term = (f64, Vec<Fac>);

/// A 2 × 2 matrix indexed by [`Inp`].
pub type Mat2 = [[f64; 2]; 2];

/// Entry (a, b) of a [`Mat2`].
pub fn at(m: &Mat2, a: Inp, b: Inp) -> f64 {
    m[a as usize][b as usize]
}

/// ∂/∂z_a of a sum of terms (product rule: each factor at input a in turn gets one more
/// derivative).
pub fn deriv(terms: &[Term], a: Inp) -> Vec<Term> {
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

/// The integrand of ∂⟨g⟩/∂K_p: ½∂_a²g for p = (a, a), ∂_a∂_b g for a ≠ b.
pub fn d_coord(terms: &[Term], (a, b): (Inp, Inp)) -> Vec<Term> {
    let c0 = if a == b { 0.5 } else { 1.0 };
    deriv(&deriv(terms, a), b)
        .into_iter()
        .map(|(c, f)| (c0 * c, f))
        .collect()
}

/// One product, as a one-term sum.
pub fn prod(fs: &[Fac]) -> Vec<Term> {
    vec![(1.0, fs.to_vec())]
}

/// The rule and the activation's values σ^(k)(z_d), k = 0..=3, at its nodes, for one K.
#[derive(Debug, Clone)]
pub struct Gauss2 {
    k: Mat2,
    w: Vec<f64>,
    z: [Vec<f64>; 2],
    /// s[k][d][i] = σ^(k)(z_d) at node i.
    s: [[Vec<f64>; 2]; 4],
}

impl Gauss2 {
    /// The tensor rule of `nodes`² points for K (positive semi-definite, K_AA > 0). σ must have
    /// σ'' and σ''' (checked by the caller, [`super::check_activation`]).
    pub fn new(act: &dyn Activation, k: Mat2, nodes: usize) -> Result<Self, TheoryError> {
        let (kaa, kab, kbb) = (k[0][0], k[0][1], k[1][1]);
        let schur = kbb - kab * kab / kaa;
        if !(kaa > 0.0 && schur > -1e-12 * kbb.abs().max(1.0) && k[1][0] == kab) {
            return Err(TheoryError::Diverged {
                layer: 0,
                what: format!(
                    "the two-input kernel [[{kaa}, {kab}], [{}, {kbb}]] is not a covariance",
                    k[1][0]
                ),
            });
        }
        let (l00, l10, l11) = (kaa.sqrt(), kab / kaa.sqrt(), schur.max(0.0).sqrt());
        let r = hermite(nodes);
        let m = r.x.len();
        let mut w = Vec::with_capacity(m * m);
        let mut z = [Vec::with_capacity(m * m), Vec::with_capacity(m * m)];
        for (&x1, &w1) in r.x.iter().zip(&r.w) {
            for (&x2, &w2) in r.x.iter().zip(&r.w) {
                w.push(w1 * w2);
                z[0].push(l00 * x1);
                z[1].push(l10 * x1 + l11 * x2);
            }
        }
        let eval = |k: usize, d: usize| -> Vec<f64> {
            z[d].iter()
                .map(|&v| match k {
                    0 => act.f(v),
                    1 => act.d1(v),
                    2 => act.d2(v).unwrap_or(f64::NAN),
                    _ => act.d3(v).unwrap_or(f64::NAN),
                })
                .collect()
        };
        let s = [0, 1, 2, 3].map(|k| [eval(k, 0), eval(k, 1)]);
        Ok(Self { k, w, z, s })
    }

    /// ⟨Π σ^(kᵢ)(z_{dᵢ})⟩.
    pub fn e(&self, fs: &[Fac]) -> f64 {
        self.weighted(fs, None)
    }

    /// Σ_nodes w · weight(node) · Π factors.
    fn weighted(&self, fs: &[Fac], weight: Option<&[f64]>) -> f64 {
        let cols: Vec<&[f64]> = fs
            .iter()
            .map(|&(k, d)| {
                debug_assert!(k <= 3, "σ^({k}) is not tabulated");
                self.s[k as usize][d as usize].as_slice()
            })
            .collect();
        let mut sum = 0.0;
        for i in 0..self.w.len() {
            let mut p = self.w[i];
            if let Some(h) = weight {
                p *= h[i];
            }
            for c in &cols {
                p *= c[i];
            }
            sum += p;
        }
        sum
    }

    /// ⟨Σ terms⟩.
    pub fn et(&self, terms: &[Term]) -> f64 {
        terms.iter().map(|(c, fs)| c * self.e(fs)).sum()
    }

    /// ⟨∂_a Π factors⟩.
    pub fn dz(&self, fs: &[Fac], a: Inp) -> f64 {
        self.et(&deriv(&prod(fs), a))
    }

    /// ∂⟨Σ terms⟩/∂K_p.
    pub fn dk(&self, terms: &[Term], p: (Inp, Inp)) -> f64 {
        self.et(&d_coord(terms, p))
    }

    /// ∂²⟨Σ terms⟩/∂K_p∂K_q: the ∂'s of p by the product rule, those of q by integration by
    /// parts against He_cd(z; K) = y_c y_d − P_cd (module docs). Needs K invertible.
    pub fn dk2(&self, terms: &[Term], p: (Inp, Inp), q: (Inp, Inp)) -> Result<f64, TheoryError> {
        let (kaa, kab, kbb) = (self.k[0][0], self.k[0][1], self.k[1][1]);
        let det = kaa * kbb - kab * kab;
        if det <= 1e-12 * kaa * kbb {
            return Err(TheoryError::Invalid {
                flag: "--test-input",
                msg: format!(
                    "the test input is (numerically) parallel to the training input (det K = {det:e}); \
                     Θ¹ at depth 3 needs two distinct inputs"
                ),
            });
        }
        let prec = [[kbb / det, -kab / det], [-kab / det, kaa / det]];
        let (c, d) = (q.0 as usize, q.1 as usize);
        let c0 = if q.0 == q.1 { 0.5 } else { 1.0 };
        let h: Vec<f64> = (0..self.w.len())
            .map(|i| {
                let z = [self.z[0][i], self.z[1][i]];
                let y = [
                    prec[0][0] * z[0] + prec[0][1] * z[1],
                    prec[1][0] * z[0] + prec[1][1] * z[1],
                ];
                c0 * (y[c] * y[d] - prec[c][d])
            })
            .collect();
        Ok(d_coord(terms, p)
            .iter()
            .map(|(coef, fs)| coef * self.weighted(fs, Some(&h)))
            .sum())
    }
}
