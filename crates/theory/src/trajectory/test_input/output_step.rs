//! The output step with propagation terms: the depth-3 output statistics from the layer-2 pair
//! tensors of [`super::sources`] and one Wick average over the last weights,
//! docs/derivations/trained_test_input.md#output-step. Leading order in 1/n (n = width of
//! layer 2); K¹ = Θ¹ = 0 at layer 2, so their propagation terms are absent.

use super::gauss2::{at, prod, Fac, Gauss2, Inp, Mat2, Term, COORDS, INPUTS};
use super::sources::{Obs, Sources};
use crate::TheoryError;

/// Layer 2 (the last hidden layer) seen from the output: its Gaussian expectations, its NTK, the
/// pair tensors of layer 2 and the output layer's (C_W, λ_W).
pub struct OutputStep<'g> {
    /// Expectations over layer 2's (z_A, z_β) ~ N(0, K⁽²⁾).
    pub g: &'g Gauss2,
    /// Θ⁽²⁾.
    pub th: Mat2,
    /// Layer 2's pair tensors (built on layer 1).
    pub st: &'g Sources<'g>,
    /// C_W of the output layer.
    pub cw: f64,
    /// λ_W of the output layer.
    pub lw: f64,
}

impl OutputStep<'_> {
    fn t(&self, a: Inp, b: Inp) -> f64 {
        at(&self.th, a, b)
    }

    fn e(&self, fs: &[Fac]) -> f64 {
        self.g.e(fs)
    }

    fn dz(&self, fs: &[Fac], a: Inp) -> f64 {
        self.g.dz(fs, a)
    }

    /// Σ_ab F_{12;ab}⟨∂_a fa⟩⟨∂_b fb⟩: the linear response of a distinct pair through F.
    fn f_term(&self, d1: Inp, d2: Inp, fa: &[Fac], fb: &[Fac]) -> f64 {
        let mut out = 0.0;
        for a in INPUTS {
            for b in INPUTS {
                out += self.st.f(d1, d2, a, b) * self.dz(fa, a) * self.dz(fb, b);
            }
        }
        out
    }

    /// Σ_a X_{…;a}⟨∂_a fa⟩ for a pair tensor X with its last slot free.
    fn lin(&self, x: impl Fn(Inp) -> f64, fa: &[Fac]) -> f64 {
        INPUTS.iter().map(|&a| x(a) * self.dz(fa, a)).sum()
    }

    /// Θ¹_{12}: the O(1/n) mean shift of the output NTK, from the layer-2 fluctuations of the
    /// kernel (V) and their same-neuron correlation with the NTK.
    pub fn theta1(&self, d1: Inp, d2: Inp) -> Result<f64, TheoryError> {
        let gs = prod(&[(0, d1), (0, d2)]);
        let gp = prod(&[(1, d1), (1, d2)]);
        let mut out = 0.0;
        for p in COORDS {
            for q in COORDS {
                let v = self.st.v_cal(Obs::M(p.0, p.1), Obs::M(q.0, q.1));
                out += 0.5
                    * v
                    * (self.lw * self.g.dk2(&gs, p, q)?
                        + self.cw * self.t(d1, d2) * self.g.dk2(&gp, p, q)?);
            }
            out += self.cw * self.st.c_same(d1, d2, p.0, p.1) * self.g.dk(&gp, p);
        }
        Ok(out)
    }

    /// n Cov(H_12, H_34) of the output.
    pub fn ntk_cov(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let mut out = 2.0
            * cw
            * cw
            * self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)])
            * self.t(d1, d2)
            * self.t(d3, d4);
        out += cw
            * cw
            * (self.e(&[(1, d1), (1, d3)])
                * self.e(&[(1, d2), (1, d4)])
                * self.st.b(d1, d2, d3, d4)
                + self.e(&[(1, d1), (1, d4)])
                    * self.e(&[(1, d2), (1, d3)])
                    * self.st.b(d1, d2, d4, d3));
        let f = |a: Inp, b: Inp| -> Vec<Term> {
            vec![
                (lw, vec![(0, a), (0, b)]),
                (cw * self.t(a, b), vec![(1, a), (1, b)]),
            ]
        };
        let (f12, f34) = (f(d1, d2), f(d3, d4));
        let mut joint = 0.0;
        for (c1, a1) in &f12 {
            for (c2, a2) in &f34 {
                joint += c1 * c2 * self.e(&[a1.as_slice(), a2.as_slice()].concat());
            }
        }
        out += joint - self.g.et(&f12) * self.g.et(&f34);
        // Distinct-neuron linear response through the layer-2 V, D, A.
        let grad = |a: Inp, b: Inp, ff: &[Term]| -> Vec<(Obs, f64)> {
            let mut gr: Vec<(Obs, f64)> = COORDS
                .iter()
                .map(|&p| (Obs::M(p.0, p.1), self.g.dk(ff, p)))
                .collect();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            gr.push((Obs::H(lo, hi), cw * self.e(&[(1, a), (1, b)])));
            gr
        };
        let (g12, g34) = (grad(d1, d2, &f12), grad(d3, d4, &f34));
        for &(o1, v1) in &g12 {
            for &(o2, v2) in &g34 {
                out += v1 * v2 * self.st.v_cal(o1, o2);
            }
        }
        out
    }

    /// n E[dH_{012} z_3] of the output.
    pub fn dntk(&self, d0: Inp, d1: Inp, d2: Inp, d3: Inp) -> f64 {
        let (cw, lw, st) = (self.cw, self.lw, self.st);
        let mut out = 0.0;
        for (x, y) in [(d1, d2), (d2, d1)] {
            out += lw
                * cw
                * (self.e(&[(0, x), (1, d0), (1, y), (0, d3)]) * self.t(y, d0)
                    + self.f_term(y, d0, &[(1, y), (0, d3)], &[(0, x), (1, d0)]));
        }
        out += cw
            * cw
            * self.lin(|a| st.p(d0, d1, d2, a), &[(1, d0), (0, d3)])
            * self.e(&[(1, d1), (1, d2)]);
        out += cw
            * cw
            * self.lin(|a| st.q1(d0, d1, d2, a), &[(1, d2), (0, d3)])
            * self.e(&[(1, d0), (1, d1)]);
        out += cw
            * cw
            * self.lin(|a| st.q2(d0, d1, d2, a), &[(1, d1), (0, d3)])
            * self.e(&[(1, d0), (1, d2)]);
        out += 3.0
            * cw
            * cw
            * self.e(&[(2, d0), (1, d1), (1, d2), (0, d3)])
            * self.t(d1, d0)
            * self.t(d2, d0);
        out += cw
            * cw
            * st.b(d1, d0, d2, d0)
            * self.e(&[(1, d1), (1, d2)])
            * self.e(&[(2, d0), (0, d3)]);
        out += cw
            * cw
            * self.t(d1, d0)
            * self.f_term(d2, d0, &[(1, d2), (0, d3)], &[(2, d0), (1, d1)]);
        out += cw
            * cw
            * self.t(d2, d0)
            * self.f_term(d1, d0, &[(1, d1), (0, d3)], &[(2, d0), (1, d2)]);
        out
    }

    /// n E[ddI_{0123}] of the output.
    pub fn ddi(&self, d0: Inp, d1: Inp, d2: Inp, d3: Inp) -> f64 {
        let (cw, lw, st) = (self.cw, self.lw, self.st);
        let legs = [d1, d2, d3];
        let mut out = 0.0;
        for i in 0..3 {
            let x = legs[i];
            let others: Vec<Inp> = (0..3).filter(|&j| j != i).map(|j| legs[j]).collect();
            let (y, w) = (others[0], others[1]);
            let yw = self.e(&[(1, y), (1, w)]);
            out += lw
                * cw
                * (self.e(&[(0, x), (2, d0), (1, y), (1, w)]) * self.t(y, d0) * self.t(w, d0)
                    + st.b(y, d0, w, d0) * yw * self.e(&[(0, x), (2, d0)])
                    + self.lin(|a| st.p(d0, y, w, a), &[(0, x), (1, d0)]) * yw);
            out +=
                cw * cw * self.t(x, d0) * self.lin(|a| st.p(d0, y, w, a), &[(2, d0), (1, x)]) * yw;
            out += cw
                * cw
                * self.e(&[(3, d0), (1, d1), (1, d2), (1, d3)])
                * self.t(d1, d0)
                * self.t(d2, d0)
                * self.t(d3, d0);
            out += cw * cw * self.t(x, d0) * st.b(y, d0, w, d0) * self.e(&[(3, d0), (1, x)]) * yw;
        }
        let d = [d0, d1, d2, d3];
        out += cw
            * cw
            * (st.r(1, d) * self.e(&[(1, d0), (1, d1)]) * self.e(&[(1, d2), (1, d3)])
                + st.r(2, d) * self.e(&[(1, d0), (1, d2)]) * self.e(&[(1, d1), (1, d3)])
                + st.r(3, d) * self.e(&[(1, d0), (1, d3)]) * self.e(&[(1, d1), (1, d2)]));
        out
    }

    /// n E[ddII_{1234}] of the output.
    pub fn ddii(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        let (cw, lw, st) = (self.cw, self.lw, self.st);
        let mut out = lw
            * lw
            * (self.e(&[(1, d1), (1, d2), (0, d3), (0, d4)]) * self.t(d1, d2)
                + self.f_term(d1, d2, &[(1, d1), (0, d3)], &[(1, d2), (0, d4)]));
        out += lw
            * cw
            * (self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)]) * self.t(d3, d1) * self.t(d4, d2)
                + st.b(d3, d1, d4, d2) * self.e(&[(1, d3), (1, d4)]) * self.e(&[(1, d1), (1, d2)]));
        out += lw
            * cw
            * (self.e(&[(1, d1), (0, d3), (2, d2), (1, d4)]) * self.t(d4, d2) * self.t(d1, d2)
                + self.t(d4, d2) * self.f_term(d1, d2, &[(1, d1), (0, d3)], &[(2, d2), (1, d4)])
                + self.lin(|a| st.q2(d2, d1, d4, a), &[(1, d1), (0, d3)])
                    * self.e(&[(1, d2), (1, d4)]));
        out += lw
            * cw
            * (self.e(&[(1, d2), (0, d4), (2, d1), (1, d3)]) * self.t(d3, d1) * self.t(d1, d2)
                + self.t(d3, d1) * self.f_term(d1, d2, &[(2, d1), (1, d3)], &[(1, d2), (0, d4)])
                + self.lin(|a| st.q2(d1, d2, d3, a), &[(1, d2), (0, d4)])
                    * self.e(&[(1, d1), (1, d3)]));
        let eed = self.e(&[(2, d1), (2, d2), (1, d3), (1, d4)])
            * self.t(d3, d1)
            * self.t(d1, d2)
            * self.t(d4, d2);
        out += cw
            * cw
            * (3.0 * eed
                + self.t(d3, d1)
                    * self.t(d4, d2)
                    * self.f_term(d1, d2, &[(2, d1), (1, d3)], &[(2, d2), (1, d4)])
                + self.t(d1, d2)
                    * st.b(d3, d1, d4, d2)
                    * self.e(&[(1, d3), (1, d4)])
                    * self.e(&[(2, d1), (2, d2)]));
        out += cw
            * cw
            * self.t(d3, d1)
            * self.lin(|a| st.q2(d2, d1, d4, a), &[(2, d1), (1, d3)])
            * self.e(&[(1, d2), (1, d4)]);
        out += cw
            * cw
            * self.t(d4, d2)
            * self.lin(|a| st.q2(d1, d2, d3, a), &[(2, d2), (1, d4)])
            * self.e(&[(1, d1), (1, d3)]);
        out += cw
            * cw
            * (st.s(d1, d2, d3, d4) * self.e(&[(1, d1), (1, d2)]) * self.e(&[(1, d3), (1, d4)])
                + st.t_pair(d1, d2, d3, d4)
                    * self.e(&[(1, d1), (1, d3)])
                    * self.e(&[(1, d2), (1, d4)])
                + st.u(d1, d2, d3, d4) * self.e(&[(1, d1), (1, d4)]) * self.e(&[(1, d2), (1, d3)]));
        out
    }
}
