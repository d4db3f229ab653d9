//! The statistics of [`super::DatasetStats`] for a network of any depth L ≥ 2 (L − 1 hidden
//! layers of equal width n), for any set of inputs and any smooth activation: the layer-to-layer
//! propagation of the **pair tensors** (docs/derivations/trained_dataset.md#deep).
//!
//! At every layer l the O(1/n) statistics of the preactivations and their derivative tensors are
//! carried by isotropic pair tensors, one per way of splitting a correlator's neuron indices
//! into two distinct neurons j ≠ k (the layer's law is invariant under rotations of its neurons,
//! so every correlator is a sum of products of Kronecker deltas, one pair tensor each):
//!
//!   V_{ab,cd}  = n Cov(z_{j;a}z_{j;b}, z_{k;c}z_{k;d}),  D_{12;ab} = n Cov(H_{jj;12}, z_{k;a}z_{k;b}),
//!   A_{12,34}  = n Cov(H_{jj;12}, H_{kk;34}),           B_{12,34} = n E[H_{jk;12}H_{jk;34}],
//!   F_{12;ab}  = n E[H_{jk;12} z_{j;a} z_{k;b}],
//!   P_{012;a}  = n E[dH_{jkk;012} z_{j;a}],  Q¹_{012;a} = n E[dH_{jjk;012} z_{k;a}],  Q²_{012;a} = n E[dH_{jkj;012} z_{k;a}],
//!   R^x_{0123} = n E[ddI] with slot 0 and slot x on one neuron, S, T, U = n E[ddII_{jjkk}], n E[ddII_{jkjk}], n E[ddII_{jkkj}],
//!
//! and the mean shifts E[z_az_b] = K_ab + K¹_ab/n, E[H_{jj;ab}] = Θ_ab + Θ¹_ab/n. A same-neuron
//! correlator is the sum over the three splittings (e.g. n E[dH_{jjj;012} z_{j;3}] = P + Q¹ + Q²),
//! so the output's statistics are sums of the last layer's pair tensors.
//!
//! One step l → l + 1 averages the forward equations (docs/derivations/dntk.md#forward-equations
//! with every σ-factor at its own input) over the new weights by Wick's theorem; a pair tensor of
//! layer l + 1 keeps the Wick pairings that put its slots on its two neurons. Layer-l
//! expectations are Gaussian moments ⟨·⟩ over K^(l) (single-neuron sums) and the linear-response
//! rules of trained_test_input.md#recursions (distinct neurons). Layer 1 is Gaussian with a
//! deterministic NTK: every pair tensor and mean shift is zero there, so the first step gives
//! the layer-2 tensors of trained_test_input.md#sources and the second the output step of
//! #output-step, term by term.
//!
//! Only entries whose indices hold at most one distinct test input are computed (the others
//! are NaN): every entry of layer l + 1 reads layer-l entries on its own inputs only, and the
//! trajectory reads nothing else.

use super::dynamics::Idx;
use super::moments::{coords, d_coord, deriv, inputs, prod, Fac, MomentTable, Term};
use super::two_layer::StatsConfig;
use super::DatasetStats;
use crate::activation::Activation;
use crate::gauss::QuadConfig;
use crate::trajectory::test_input::check_activation;
use crate::TheoryError;

/// A layer observable of one neuron: the product z_a z_b, or the NTK H_ab.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Obs {
    M(usize, usize),
    H(usize, usize),
}

/// The statistics of one layer on N inputs (module docs). Two-index tensors are N × N, four-index
/// ones N⁴, row-major in the order of their definitions' indices.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    n: usize,
    k: Vec<f64>,
    th: Vec<f64>,
    k1: Vec<f64>,
    th1: Vec<f64>,
    v: Vec<f64>,
    d: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
    f: Vec<f64>,
    p: Vec<f64>,
    q1: Vec<f64>,
    q2: Vec<f64>,
    r: [Vec<f64>; 3],
    s: Vec<f64>,
    t: Vec<f64>,
    u: Vec<f64>,
}

impl Layer {
    /// Layer 1: K = C_W G, Θ = λ_W G, everything else zero.
    fn first(gram: &[f64], n: usize, cw: f64, lw: f64) -> Self {
        let z4 = vec![0.0; n.pow(4)];
        let z2 = vec![0.0; n * n];
        Self {
            n,
            k: gram.iter().map(|g| cw * g).collect(),
            th: gram.iter().map(|g| lw * g).collect(),
            k1: z2.clone(),
            th1: z2,
            v: z4.clone(),
            d: z4.clone(),
            a: z4.clone(),
            b: z4.clone(),
            f: z4.clone(),
            p: z4.clone(),
            q1: z4.clone(),
            q2: z4.clone(),
            r: [z4.clone(), z4.clone(), z4.clone()],
            s: z4.clone(),
            t: z4.clone(),
            u: z4,
        }
    }

    fn i4(&self, a: usize, b: usize, c: usize, d: usize) -> usize {
        ((a * self.n + b) * self.n + c) * self.n + d
    }
}

/// One step l → l + 1: layer l's statistics, the moments over K^(l), and layer l + 1's C_W, λ_W.
struct Step<'a> {
    prev: &'a Layer,
    m: &'a MomentTable,
    cw: f64,
    lw: f64,
}

impl Step<'_> {
    fn n(&self) -> usize {
        self.prev.n
    }

    fn th(&self, a: usize, b: usize) -> f64 {
        self.prev.th[a * self.n() + b]
    }

    fn at(&self, x: &[f64], a: usize, b: usize, c: usize, d: usize) -> f64 {
        x[self.prev.i4(a, b, c, d)]
    }

    fn e(&self, fs: &[Fac]) -> f64 {
        self.m.e(fs)
    }

    fn et(&self, terms: &[Term]) -> f64 {
        terms.iter().map(|(c, fs)| c * self.e(fs)).sum()
    }

    /// ⟨∂_a Π factors⟩.
    fn dz(&self, fs: &[Fac], a: usize) -> f64 {
        self.et(&deriv(&prod(fs), a))
    }

    /// ∂⟨Σ terms⟩/∂K_p.
    fn dk(&self, terms: &[Term], p: (usize, usize)) -> f64 {
        self.et(&d_coord(terms, p))
    }

    /// ∂²⟨Σ terms⟩/∂K_p∂K_q.
    fn dk2(&self, terms: &[Term], p: (usize, usize), q: (usize, usize)) -> f64 {
        d_coord(terms, p)
            .iter()
            .map(|(c, fs)| c * self.m.e_weighted(fs, q))
            .sum()
    }

    /// Σ_a X(a)⟨∂_a Π fa⟩ (linear response to a pair tensor's z-leg).
    fn lin(&self, x: impl Fn(usize) -> f64, fa: &[Fac]) -> f64 {
        inputs(&prod(fa))
            .into_iter()
            .map(|a| x(a) * self.dz(fa, a))
            .sum()
    }

    /// Σ_ab F_{12;ab}⟨∂_a Π fa⟩⟨∂_b Π fb⟩ (fa on the neuron carrying slot 1).
    fn f_term(&self, d1: usize, d2: usize, fa: &[Fac], fb: &[Fac]) -> f64 {
        let (ia, ib) = (inputs(&prod(fa)), inputs(&prod(fb)));
        let mut out = 0.0;
        for &a in &ia {
            for &b in &ib {
                out += self.at(&self.prev.f, d1, d2, a, b) * self.dz(fa, a) * self.dz(fb, b);
            }
        }
        out
    }

    /// Layer l's two-neuron covariance n Cov(O_j, O_k), j ≠ k.
    fn vcal(&self, o1: Obs, o2: Obs) -> f64 {
        let p = self.prev;
        match (o1, o2) {
            (Obs::M(a, b), Obs::M(c, d)) => self.at(&p.v, a, b, c, d),
            (Obs::H(a, b), Obs::M(c, d)) | (Obs::M(c, d), Obs::H(a, b)) => {
                self.at(&p.d, a, b, c, d)
            }
            (Obs::H(a, b), Obs::H(c, d)) => self.at(&p.a, a, b, c, d),
        }
    }

    /// Layer l's same-neuron n Cov(H_{jj;12}, z_{j;a}z_{j;b}) = D + F_{12;ab} + F_{12;ba}.
    fn c_same(&self, d1: usize, d2: usize, a: usize, b: usize) -> f64 {
        let p = self.prev;
        self.at(&p.d, d1, d2, a, b) + self.at(&p.f, d1, d2, a, b) + self.at(&p.f, d1, d2, b, a)
    }

    /// The O(1/n) shift of ⟨Σ terms⟩ from layer l's mean shift and four-point cumulant,
    /// Σ_p K¹_p ∂_p⟨g⟩ + ½Σ_pq V_pq ∂_p∂_q⟨g⟩ (Edgeworth; coordinates p of the terms' inputs).
    fn shift(&self, terms: &[Term]) -> f64 {
        let cs = coords(&inputs(terms));
        let mut out = 0.0;
        for &p in &cs {
            out += self.prev.k1[p.0 * self.n() + p.1] * self.dk(terms, p);
            for &q in &cs {
                out += 0.5 * self.vcal(Obs::M(p.0, p.1), Obs::M(q.0, q.1)) * self.dk2(terms, p, q);
            }
        }
        out
    }

    /// A layer-(l+1) observable's conditional mean as a function of one layer-l neuron (its H
    /// at Θ).
    fn obs(&self, o: Obs) -> Vec<Term> {
        match o {
            Obs::M(a, b) => vec![(self.cw, vec![(0, a), (0, b)])],
            Obs::H(a, b) => vec![
                (self.lw, vec![(0, a), (0, b)]),
                (self.cw * self.th(a, b), vec![(1, a), (1, b)]),
            ],
        }
    }

    /// The derivatives of ⟨obs(o)⟩ with respect to layer l's collective observables.
    fn grad(&self, o: Obs) -> Vec<(Obs, f64)> {
        let terms = self.obs(o);
        let mut g: Vec<(Obs, f64)> = coords(&inputs(&terms))
            .into_iter()
            .map(|p| (Obs::M(p.0, p.1), self.dk(&terms, p)))
            .collect();
        if let Obs::H(a, b) = o {
            g.push((Obs::H(a, b), self.cw * self.e(&[(1, a), (1, b)])));
        }
        g
    }

    /// Single-neuron Cov(Σ t1, Σ t2) over K^(l).
    fn cov1(&self, t1: &[Term], t2: &[Term]) -> f64 {
        let mut joint = 0.0;
        for (c1, f1) in t1 {
            for (c2, f2) in t2 {
                joint += c1 * c2 * self.e(&[f1.as_slice(), f2.as_slice()].concat());
            }
        }
        joint - self.et(t1) * self.et(t2)
    }

    // ---- layer l + 1 ----

    /// n Cov(O'_i, O'_j), i ≠ j: the covariance of the two neurons' conditional means, i.e. of
    /// layer l's collective observables (one-neuron part plus linear response through 𝒱).
    fn vcal_next(&self, o1: Obs, o2: Obs) -> f64 {
        let mut out = self.cov1(&self.obs(o1), &self.obs(o2));
        let (g1, g2) = (self.grad(o1), self.grad(o2));
        for &(u, x) in &g1 {
            for &(w, y) in &g2 {
                out += x * y * self.vcal(u, w);
            }
        }
        out
    }

    fn k1_next(&self, a: usize, b: usize) -> f64 {
        self.cw * self.shift(&prod(&[(0, a), (0, b)]))
    }

    fn th1_next(&self, d1: usize, d2: usize) -> f64 {
        let gs = prod(&[(0, d1), (0, d2)]);
        let gp = prod(&[(1, d1), (1, d2)]);
        let mut out = self.lw * self.shift(&gs)
            + self.cw
                * (self.prev.th1[d1 * self.n() + d2] * self.et(&gp)
                    + self.th(d1, d2) * self.shift(&gp));
        for p in coords(&inputs(&gp)) {
            out += self.cw * self.c_same(d1, d2, p.0, p.1) * self.dk(&gp, p);
        }
        out
    }

    fn b_next(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        self.cw.powi(2)
            * (self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)]) * self.th(d1, d2) * self.th(d3, d4)
                + self.e(&[(1, d1), (1, d3)])
                    * self.e(&[(1, d2), (1, d4)])
                    * self.at(&self.prev.b, d1, d2, d3, d4))
    }

    fn f_next(&self, d1: usize, d2: usize, a: usize, b: usize) -> f64 {
        self.cw.powi(2)
            * (self.th(d1, d2) * self.e(&[(1, d1), (1, d2), (0, a), (0, b)])
                + self.f_term(d1, d2, &[(1, d1), (0, a)], &[(1, d2), (0, b)]))
    }

    fn p_next(&self, d0: usize, d1: usize, d2: usize, d3: usize) -> f64 {
        let pv = &self.prev.p;
        self.cw.powi(2)
            * (self.lin(|a| self.at(pv, d0, d1, d2, a), &[(1, d0), (0, d3)])
                * self.e(&[(1, d1), (1, d2)])
                + self.e(&[(2, d0), (1, d1), (1, d2), (0, d3)]) * self.th(d1, d0) * self.th(d2, d0)
                + self.at(&self.prev.b, d1, d0, d2, d0)
                    * self.e(&[(1, d1), (1, d2)])
                    * self.e(&[(2, d0), (0, d3)]))
    }

    /// Q¹ (x = slot 1 on the differentiated output's neuron) or Q² (x = slot 2).
    fn q_next(&self, x_slot: usize, d0: usize, d1: usize, d2: usize, d3: usize) -> f64 {
        let (x, y, q) = if x_slot == 1 {
            (d1, d2, &self.prev.q1)
        } else {
            (d2, d1, &self.prev.q2)
        };
        let (cw, lw) = (self.cw, self.lw);
        lw * cw
            * (self.e(&[(0, x), (1, d0), (1, y), (0, d3)]) * self.th(y, d0)
                + self.f_term(y, d0, &[(1, y), (0, d3)], &[(0, x), (1, d0)]))
            + cw * cw
                * (self.lin(|a| self.at(q, d0, d1, d2, a), &[(1, y), (0, d3)])
                    * self.e(&[(1, d0), (1, x)])
                    + self.e(&[(2, d0), (1, d1), (1, d2), (0, d3)])
                        * self.th(d1, d0)
                        * self.th(d2, d0)
                    + self.th(x, d0) * self.f_term(y, d0, &[(1, y), (0, d3)], &[(2, d0), (1, x)]))
    }

    /// R^x, x = slot 1, 2 or 3 (the leg on the differentiated output's neuron).
    fn r_next(&self, x_slot: usize, d: [usize; 4]) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let legs = [d[1], d[2], d[3]];
        let x = legs[x_slot - 1];
        let others: Vec<usize> = (0..3)
            .filter(|&i| i != x_slot - 1)
            .map(|i| legs[i])
            .collect();
        let (y, w, d0) = (others[0], others[1], d[0]);
        let pv = &self.prev.p;
        let yw = self.e(&[(1, y), (1, w)]);
        let b = self.at(&self.prev.b, y, d0, w, d0);
        lw * cw
            * (self.e(&[(0, x), (2, d0), (1, y), (1, w)]) * self.th(y, d0) * self.th(w, d0)
                + b * yw * self.e(&[(0, x), (2, d0)])
                + self.lin(|a| self.at(pv, d0, y, w, a), &[(0, x), (1, d0)]) * yw)
            + cw * cw
                * self.th(x, d0)
                * (self.lin(|a| self.at(pv, d0, y, w, a), &[(2, d0), (1, x)]) * yw
                    + b * self.e(&[(3, d0), (1, x)]) * yw)
            + cw * cw
                * (self.e(&[(3, d0), (1, d[1]), (1, d[2]), (1, d[3])])
                    * self.th(d[1], d0)
                    * self.th(d[2], d0)
                    * self.th(d[3], d0)
                    + self.at(&self.prev.r[x_slot - 1], d0, d[1], d[2], d[3])
                        * self.e(&[(1, d0), (1, x)])
                        * yw)
    }

    /// ⟨σ''_1σ''_2σ'_3σ'_4⟩Θ_31Θ_12Θ_42, the one-neuron source shared by S, T and U.
    fn ddii_source(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        self.e(&[(2, d1), (2, d2), (1, d3), (1, d4)])
            * self.th(d3, d1)
            * self.th(d1, d2)
            * self.th(d4, d2)
    }

    fn s_next(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let b = self.at(&self.prev.b, d3, d1, d4, d2);
        let e34 = self.e(&[(1, d3), (1, d4)]);
        lw * cw
            * (self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)]) * self.th(d3, d1) * self.th(d4, d2)
                + b * e34 * self.e(&[(1, d1), (1, d2)]))
            + cw * cw
                * (self.ddii_source(d1, d2, d3, d4)
                    + self.th(d1, d2) * b * e34 * self.e(&[(2, d1), (2, d2)])
                    + self.at(&self.prev.s, d1, d2, d3, d4) * self.e(&[(1, d1), (1, d2)]) * e34)
    }

    fn t_next(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let q2 = &self.prev.q2;
        let (e13, e24) = (self.e(&[(1, d1), (1, d3)]), self.e(&[(1, d2), (1, d4)]));
        let mut out = lw
            * lw
            * (self.e(&[(1, d1), (1, d2), (0, d3), (0, d4)]) * self.th(d1, d2)
                + self.f_term(d1, d2, &[(1, d1), (0, d3)], &[(1, d2), (0, d4)]));
        out += lw
            * cw
            * (self.e(&[(1, d1), (0, d3), (2, d2), (1, d4)]) * self.th(d4, d2) * self.th(d1, d2)
                + self.th(d4, d2) * self.f_term(d1, d2, &[(1, d1), (0, d3)], &[(2, d2), (1, d4)])
                + self.lin(|a| self.at(q2, d2, d1, d4, a), &[(1, d1), (0, d3)]) * e24);
        out += lw
            * cw
            * (self.e(&[(1, d2), (0, d4), (2, d1), (1, d3)]) * self.th(d3, d1) * self.th(d1, d2)
                + self.th(d3, d1) * self.f_term(d1, d2, &[(2, d1), (1, d3)], &[(1, d2), (0, d4)])
                + self.lin(|a| self.at(q2, d1, d2, d3, a), &[(1, d2), (0, d4)]) * e13);
        out += cw
            * cw
            * (self.ddii_source(d1, d2, d3, d4)
                + self.th(d3, d1)
                    * self.th(d4, d2)
                    * self.f_term(d1, d2, &[(2, d1), (1, d3)], &[(2, d2), (1, d4)])
                + self.th(d3, d1)
                    * self.lin(|a| self.at(q2, d2, d1, d4, a), &[(2, d1), (1, d3)])
                    * e24
                + self.th(d4, d2)
                    * self.lin(|a| self.at(q2, d1, d2, d3, a), &[(2, d2), (1, d4)])
                    * e13
                + self.at(&self.prev.t, d1, d2, d3, d4) * e13 * e24);
        out
    }

    fn u_next(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        self.cw.powi(2)
            * (self.ddii_source(d1, d2, d3, d4)
                + self.at(&self.prev.u, d1, d2, d3, d4)
                    * self.e(&[(1, d1), (1, d4)])
                    * self.e(&[(1, d2), (1, d3)]))
    }

    /// Layer l + 1 (entries with more than one distinct test input are NaN).
    fn next(&self, na: usize) -> Layer {
        let n = self.n();
        let nan = f64::NAN;
        let mut out = Layer {
            n,
            k: vec![0.0; n * n],
            th: vec![0.0; n * n],
            k1: vec![nan; n * n],
            th1: vec![nan; n * n],
            v: vec![nan; n.pow(4)],
            d: vec![nan; n.pow(4)],
            a: vec![nan; n.pow(4)],
            b: vec![nan; n.pow(4)],
            f: vec![nan; n.pow(4)],
            p: vec![nan; n.pow(4)],
            q1: vec![nan; n.pow(4)],
            q2: vec![nan; n.pow(4)],
            r: [
                vec![nan; n.pow(4)],
                vec![nan; n.pow(4)],
                vec![nan; n.pow(4)],
            ],
            s: vec![nan; n.pow(4)],
            t: vec![nan; n.pow(4)],
            u: vec![nan; n.pow(4)],
        };
        let ok = |ix: &[usize]| {
            let mut tests: Vec<usize> = ix.iter().copied().filter(|&i| i >= na).collect();
            tests.sort_unstable();
            tests.dedup();
            tests.len() <= 1
        };
        for a in 0..n {
            for b in 0..n {
                let ss = self.e(&[(0, a), (0, b)]);
                out.k[a * n + b] = self.cw * ss;
                out.th[a * n + b] =
                    self.lw * ss + self.cw * self.e(&[(1, a), (1, b)]) * self.th(a, b);
                if ok(&[a, b]) {
                    out.k1[a * n + b] = self.k1_next(a, b);
                    out.th1[a * n + b] = self.th1_next(a, b);
                }
            }
        }
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    for d in 0..n {
                        if !ok(&[a, b, c, d]) {
                            continue;
                        }
                        let i = out.i4(a, b, c, d);
                        out.v[i] = self.vcal_next(Obs::M(a, b), Obs::M(c, d));
                        out.d[i] = self.vcal_next(Obs::H(a, b), Obs::M(c, d));
                        out.a[i] = self.vcal_next(Obs::H(a, b), Obs::H(c, d));
                        out.b[i] = self.b_next(a, b, c, d);
                        out.f[i] = self.f_next(a, b, c, d);
                        out.p[i] = self.p_next(a, b, c, d);
                        out.q1[i] = self.q_next(1, a, b, c, d);
                        out.q2[i] = self.q_next(2, a, b, c, d);
                        for x in 1..=3 {
                            out.r[x - 1][i] = self.r_next(x, [a, b, c, d]);
                        }
                        out.s[i] = self.s_next(a, b, c, d);
                        out.t[i] = self.t_next(a, b, c, d);
                        out.u[i] = self.u_next(a, b, c, d);
                    }
                }
            }
        }
        out
    }
}

impl Layer {
    /// The output's statistics when this is the last layer (one neuron: every correlator is the
    /// sum of its pair tensors over the splittings of its indices).
    fn output(&self, na: usize) -> DatasetStats {
        let n = self.n;
        let ix = Idx { n, na };
        let mut s = DatasetStats {
            theta: self.th.clone(),
            theta1: self.th1.clone(),
            ..DatasetStats::unset(n, na)
        };
        for a in 0..na {
            for b in 0..na {
                s.k[a * na + b] = self.k[a * n + b];
            }
        }
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    if ix.tests(&[a, b, c]) > 1 {
                        continue;
                    }
                    for mu in 0..na {
                        let i = self.i4(a, b, c, mu);
                        s.dntk_z[ix.i3(a, b, c) * na + mu] = self.p[i] + self.q1[i] + self.q2[i];
                    }
                    for d in 0..n {
                        if ix.tests(&[a, b, c, d]) > 1 {
                            continue;
                        }
                        let i = self.i4(a, b, c, d);
                        if c < na && d < na {
                            s.ntk_cov[i] = self.a[i] + self.b[i] + self.b[self.i4(a, b, d, c)];
                        }
                        s.ddi[i] = self.r[0][i] + self.r[1][i] + self.r[2][i];
                        s.ddii[i] = self.s[i] + self.t[i] + self.u[i];
                    }
                }
            }
        }
        s
    }
}

/// The statistics of a network of `depth` ≥ 2 (C_W and λ_W of every layer from `cfg`,
/// C_b = λ_b = 0) on the inputs of `cfg` (module docs). Entries the trajectory never reads (two
/// or more test indices) are NaN.
pub fn deep_stats(
    act: &dyn Activation,
    cfg: &StatsConfig,
    depth: usize,
) -> Result<DatasetStats, TheoryError> {
    deep_stats_with(act, cfg, depth, &cfg.quad())
}

/// [`deep_stats`] with every rule given (`cfg.nodes` is ignored): the two-input statistics of
/// [`crate::trajectory::test_input`] use it with finer 1- and 2-D rules.
pub fn deep_stats_with(
    act: &dyn Activation,
    cfg: &StatsConfig,
    depth: usize,
    quad: &QuadConfig,
) -> Result<DatasetStats, TheoryError> {
    check_activation(act)?;
    let (_, na) = super::two_layer::check_config(cfg)?;
    if depth < 2 {
        return Err(TheoryError::Invalid {
            flag: "--depth",
            msg: format!("a network of depth {depth} has no hidden layer; use depth ≥ 2"),
        });
    }
    Ok(propagate(act, cfg, depth, quad, na, |_| {})?.output(na))
}

/// Layer `depth` of the network of [`deep_stats_with`], one moment table per step; `visit` sees
/// every layer from 1 on (only one layer is kept: N = 24 inputs make 17 tensors of 2.6 MB).
fn propagate(
    act: &dyn Activation,
    cfg: &StatsConfig,
    depth: usize,
    quad: &QuadConfig,
    na: usize,
    mut visit: impl FnMut(&Layer),
) -> Result<Layer, TheoryError> {
    let n = (cfg.gram.len() as f64).sqrt().round() as usize;
    let mut layer = Layer::first(&cfg.gram, n, cfg.cw, cfg.lambda_w);
    visit(&layer);
    for _ in 1..depth {
        // Record every moment the step reads, integrate them together, read them back.
        let m = MomentTable::new(layer.k.clone(), n);
        let step = Step {
            prev: &layer,
            m: &m,
            cw: cfg.cw,
            lw: cfg.lambda_w,
        };
        step.next(na);
        m.integrate(act, quad, "--train-x")?;
        layer = step.next(na);
        visit(&layer);
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;
    use crate::dntk::dntk_profile;
    use crate::profile::{Ensemble, LearningRates, ProfileConfig};

    #[test]
    fn one_input_gives_the_single_input_recursions_layer_by_layer() {
        // With one input every pair tensor of every layer is a single-input tensor of the
        // recursions of docs/derivations/dntk.md §3 and theory.md §5 (crate::dntk,
        // crate::profile: a separate implementation with 1-D rules and hand-reduced formulas),
        // where Q¹ = Q² = Q and R¹ = R² = R³ = R. Compared per layer, not only as the output's
        // sums P + 2Q, 3R, S + T + U: a term put on the wrong splitting shows here. Tolerance
        // 1e-8 relative (of max(|x|, 1e-2)): the 192-node rule this side uses for products of
        // σ'' and σ''' leaves ~1e-9 (dntk.md §4, which uses twice the order); measured ≤ 7e-9.
        for act in ["tanh", "sin"] {
            let a = parse(act).unwrap();
            let cfg = StatsConfig {
                cw: 1.0,
                lambda_w: 1.0,
                gram: vec![1.0],
                n_train: 1,
                nodes: 32,
            };
            let quad = QuadConfig::default();
            let depth = 6;
            let mut ls = vec![];
            propagate(&*a, &cfg, depth, &quad, 1, |l| ls.push(l.clone())).unwrap();
            let pc = ProfileConfig {
                ensemble: Ensemble::new(parse(act).unwrap(), 0.0, 1.0),
                k1: 1.0,
                v1: 0.0,
                depth,
                lr: LearningRates {
                    lambda_b: 0.0,
                    lambda_w: 1.0,
                    b_over_l: false,
                },
            };
            let one = dntk_profile(&pc).unwrap();
            let fwd = crate::profile::profile(&pc).unwrap();
            let mut compared = 0;
            for l in 2..=depth {
                let (x, o, f) = (&ls[l - 1], &one[l - 1], &fwd[l - 1]);
                let close = |got: f64, want: f64, what: &str| {
                    assert!(
                        (got - want).abs() <= 1e-8 * want.abs().max(1e-2),
                        "{act} layer {l} {what}: {got} vs the single-input {want}"
                    );
                };
                close(x.k[0], o.k, "K");
                close(x.th[0], o.theta, "Θ");
                close(x.k1[0], o.k1, "K¹");
                close(x.th1[0], o.theta1, "Θ¹");
                close(x.v[0], f.v, "V");
                close(x.a[0], f.a.unwrap(), "A");
                close(x.b[0], f.b.unwrap(), "B");
                close(x.d[0], f.d.unwrap(), "D");
                close(x.f[0], f.f.unwrap(), "F");
                close(x.p[0], o.p, "P");
                close(x.q1[0], o.q, "Q¹");
                close(x.q2[0], o.q, "Q²");
                for (i, r) in x.r.iter().enumerate() {
                    close(r[0], o.r, &format!("R^{}", i + 1));
                }
                close(x.s[0], o.s, "S");
                close(x.t[0], o.t, "T");
                close(x.u[0], o.u, "U");
                compared += 1;
            }
            assert_eq!(compared, depth - 1);
        }
    }
}
