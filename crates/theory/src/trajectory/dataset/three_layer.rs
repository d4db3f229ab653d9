//! The statistics of [`super::DatasetStats`] for a network with two hidden layers (depth L = 3)
//! of width n, for any set of inputs and any smooth activation.
//!
//! These are the two-input formulas of docs/derivations/trained_test_input.md §4.1 (the layer-2
//! pair tensors, one Wick step over the Gaussian first layer) and §4.2 (the output step with its
//! propagation terms), with every slot free to carry any of the N inputs instead of one of two
//! (docs/derivations/trained_dataset.md#three-layer). The formulas are written per slot, so
//! nothing in them changes; what changes is that every Gaussian expectation touches the inputs of
//! its own factors — at most four — and is an integral of that dimension, and that the sums over
//! inputs in the linear-response rule and over kernel coordinates run over the inputs the
//! differentiated function depends on (⟨∂_a f⟩ = 0 and ∂⟨f⟩/∂K_ab = 0 otherwise).
//!
//! Layer 1: u ~ N(0, K¹), K¹_ab = C_W G_ab, Θ¹_ab = λ_W G_ab (G = x·x/n₀, C_b = λ_b = 0).
//! Layer 2: K²_ab = C_W⟨σ_aσ_b⟩₁, Θ²_ab = λ_W⟨σ_aσ_b⟩₁ + C_W⟨σ'_aσ'_b⟩₁Θ¹_ab. The output's
//! statistics at leading order in 1/n (n = width of layer 2; layer 1 has the same width).
//! Moments over K¹ and K² come from two [`MomentTable`]s filled in one recording pass.

use super::dynamics::Idx;
use super::moments::{coords, d_coord, deriv, inputs, prod, Fac, MomentTable, Term};
use super::two_layer::StatsConfig;
use super::DatasetStats;
use crate::activation::Activation;
use crate::gauss::QuadConfig;
use crate::trajectory::test_input::check_activation;
use crate::TheoryError;

/// A layer-2 observable of one neuron: the product z_a z_b, or the NTK H_ab.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Obs {
    M(usize, usize),
    H(usize, usize),
}

/// The formulas, reading moments over layer 1 (`m1`) and layer 2 (`m2`).
struct Net3<'a> {
    m1: &'a MomentTable,
    m2: &'a MomentTable,
    th1: &'a [f64],
    th2: &'a [f64],
    n: usize,
    cw: f64,
    lw: f64,
}

impl Net3<'_> {
    // ---- layer 1 → layer-2 pair tensors (trained_test_input.md §4.1) ----

    fn t1(&self, a: usize, b: usize) -> f64 {
        self.th1[a * self.n + b]
    }

    fn e1(&self, fs: &[Fac]) -> f64 {
        self.m1.e(fs)
    }

    fn et1(&self, terms: &[Term]) -> f64 {
        terms.iter().map(|(c, fs)| c * self.e1(fs)).sum()
    }

    /// The layer-2 value of an observable as a function of one layer-1 neuron.
    fn obs(&self, o: Obs) -> Vec<Term> {
        match o {
            Obs::M(a, b) => vec![(self.cw, vec![(0, a), (0, b)])],
            Obs::H(a, b) => vec![
                (self.lw, vec![(0, a), (0, b)]),
                (self.cw * self.t1(a, b), vec![(1, a), (1, b)]),
            ],
        }
    }

    /// Cov(Σ t1, Σ t2) over one layer-1 neuron.
    fn cov1(&self, t1: &[Term], t2: &[Term]) -> f64 {
        let mut joint = 0.0;
        for (c1, f1) in t1 {
            for (c2, f2) in t2 {
                joint += c1 * c2 * self.e1(&[f1.as_slice(), f2.as_slice()].concat());
            }
        }
        joint - self.et1(t1) * self.et1(t2)
    }

    /// n Cov(O_j, O_k) of two distinct layer-2 neurons (V, D, A).
    fn v_cal(&self, o1: Obs, o2: Obs) -> f64 {
        self.cov1(&self.obs(o1), &self.obs(o2))
    }

    /// Same neuron: n Cov(H_{jj;dd'}, z_a z_b).
    fn c_same(&self, d: usize, dp: usize, a: usize, b: usize) -> f64 {
        2.0 * self.cw * self.cw * self.t1(d, dp) * self.e1(&[(1, d), (1, dp), (0, a), (0, b)])
            + self.cw * self.cov1(&self.obs(Obs::H(d, dp)), &[(1.0, vec![(0, a), (0, b)])])
    }

    /// B_{12,34} = C_W²⟨σ'_1σ'_2σ'_3σ'_4⟩Θ_12Θ_34.
    fn b(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        self.cw.powi(2)
            * self.e1(&[(1, d1), (1, d2), (1, d3), (1, d4)])
            * self.t1(d1, d2)
            * self.t1(d3, d4)
    }

    /// F_{12;ab} = C_W²Θ_12⟨σ'_1σ'_2σ_aσ_b⟩.
    fn f(&self, d1: usize, d2: usize, a: usize, b: usize) -> f64 {
        self.cw.powi(2) * self.t1(d1, d2) * self.e1(&[(1, d1), (1, d2), (0, a), (0, b)])
    }

    /// P_{012;a} = C_W²⟨σ''_0σ'_1σ'_2σ_a⟩Θ_10Θ_20.
    fn p(&self, d0: usize, d1: usize, d2: usize, a: usize) -> f64 {
        self.cw.powi(2)
            * self.e1(&[(2, d0), (1, d1), (1, d2), (0, a)])
            * self.t1(d1, d0)
            * self.t1(d2, d0)
    }

    /// Q¹_{012;a} = P + λ_WC_WΘ_20⟨σ_1σ'_0σ'_2σ_a⟩.
    fn q1(&self, d0: usize, d1: usize, d2: usize, a: usize) -> f64 {
        self.p(d0, d1, d2, a)
            + self.lw * self.cw * self.t1(d2, d0) * self.e1(&[(0, d1), (1, d0), (1, d2), (0, a)])
    }

    /// Q²_{012;a} = P + λ_WC_WΘ_10⟨σ_2σ'_0σ'_1σ_a⟩.
    fn q2(&self, d0: usize, d1: usize, d2: usize, a: usize) -> f64 {
        self.p(d0, d1, d2, a)
            + self.lw * self.cw * self.t1(d1, d0) * self.e1(&[(0, d2), (1, d0), (1, d1), (0, a)])
    }

    /// R^x_{0123}, x = slot 1, 2 or 3 (the leg carrying σ).
    fn r(&self, x: usize, d: [usize; 4]) -> f64 {
        let legs = [d[1], d[2], d[3]];
        let xs = legs[x - 1];
        let others: Vec<usize> = (0..3).filter(|&i| i != x - 1).map(|i| legs[i]).collect();
        let (y, w) = (others[0], others[1]);
        self.lw
            * self.cw
            * self.e1(&[(0, xs), (2, d[0]), (1, y), (1, w)])
            * self.t1(y, d[0])
            * self.t1(w, d[0])
            + self.cw.powi(2)
                * self.e1(&[(3, d[0]), (1, d[1]), (1, d[2]), (1, d[3])])
                * self.t1(d[1], d[0])
                * self.t1(d[2], d[0])
                * self.t1(d[3], d[0])
    }

    /// U_{1234} = C_W²⟨σ''_1σ''_2σ'_3σ'_4⟩Θ_31Θ_12Θ_42.
    fn u(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        self.cw.powi(2)
            * self.e1(&[(2, d1), (2, d2), (1, d3), (1, d4)])
            * self.t1(d3, d1)
            * self.t1(d1, d2)
            * self.t1(d4, d2)
    }

    /// S_{1234} = U + λ_WC_W⟨σ'_1σ'_2σ'_3σ'_4⟩Θ_31Θ_42.
    fn s(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        self.lw
            * self.cw
            * self.e1(&[(1, d1), (1, d2), (1, d3), (1, d4)])
            * self.t1(d3, d1)
            * self.t1(d4, d2)
            + self.u(d1, d2, d3, d4)
    }

    /// T_{1234} = U + λ_W²⟨σ'_1σ'_2σ_3σ_4⟩Θ_12 + λ_WC_W[⟨σ'_1σ_3σ''_2σ'_4⟩Θ_12Θ_42
    /// + ⟨σ'_2σ_4σ''_1σ'_3⟩Θ_12Θ_31].
    fn t_pair(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        self.lw.powi(2) * self.e1(&[(1, d1), (1, d2), (0, d3), (0, d4)]) * self.t1(d1, d2)
            + self.lw
                * self.cw
                * (self.e1(&[(1, d1), (0, d3), (2, d2), (1, d4)])
                    * self.t1(d1, d2)
                    * self.t1(d4, d2)
                    + self.e1(&[(1, d2), (0, d4), (2, d1), (1, d3)])
                        * self.t1(d1, d2)
                        * self.t1(d3, d1))
            + self.u(d1, d2, d3, d4)
    }

    // ---- layer 2 → output (trained_test_input.md §4.2) ----

    fn t(&self, a: usize, b: usize) -> f64 {
        self.th2[a * self.n + b]
    }

    fn e(&self, fs: &[Fac]) -> f64 {
        self.m2.e(fs)
    }

    fn et(&self, terms: &[Term]) -> f64 {
        terms.iter().map(|(c, fs)| c * self.e(fs)).sum()
    }

    /// ⟨∂_a Π factors⟩ over layer 2.
    fn dz(&self, fs: &[Fac], a: usize) -> f64 {
        self.et(&deriv(&prod(fs), a))
    }

    /// ∂⟨Σ terms⟩/∂K²_p.
    fn dk(&self, terms: &[Term], p: (usize, usize)) -> f64 {
        self.et(&d_coord(terms, p))
    }

    /// ∂²⟨Σ terms⟩/∂K²_p∂K²_q (q by integration by parts, [`MomentTable::e_weighted`]).
    fn dk2(&self, terms: &[Term], p: (usize, usize), q: (usize, usize)) -> f64 {
        d_coord(terms, p)
            .iter()
            .map(|(c, fs)| c * self.m2.e_weighted(fs, q))
            .sum()
    }

    /// Σ_ab F_{12;ab}⟨∂_a fa⟩⟨∂_b fb⟩.
    fn f_term(&self, d1: usize, d2: usize, fa: &[Fac], fb: &[Fac]) -> f64 {
        let (ia, ib) = (inputs(&prod(fa)), inputs(&prod(fb)));
        let mut out = 0.0;
        for &a in &ia {
            for &b in &ib {
                out += self.f(d1, d2, a, b) * self.dz(fa, a) * self.dz(fb, b);
            }
        }
        out
    }

    /// Σ_a X_{…;a}⟨∂_a fa⟩.
    fn lin(&self, x: impl Fn(usize) -> f64, fa: &[Fac]) -> f64 {
        inputs(&prod(fa))
            .into_iter()
            .map(|a| x(a) * self.dz(fa, a))
            .sum()
    }

    /// Θ¹_12 of the output.
    fn theta1(&self, d1: usize, d2: usize) -> f64 {
        let gs = prod(&[(0, d1), (0, d2)]);
        let gp = prod(&[(1, d1), (1, d2)]);
        let cs = coords(&inputs(&gs));
        let mut out = 0.0;
        for &p in &cs {
            for &q in &cs {
                let v = self.v_cal(Obs::M(p.0, p.1), Obs::M(q.0, q.1));
                out += 0.5
                    * v
                    * (self.lw * self.dk2(&gs, p, q)
                        + self.cw * self.t(d1, d2) * self.dk2(&gp, p, q));
            }
            out += self.cw * self.c_same(d1, d2, p.0, p.1) * self.dk(&gp, p);
        }
        out
    }

    /// n Cov(H_12, H_34) of the output.
    fn ntk_cov(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let mut out = 2.0
            * cw
            * cw
            * self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)])
            * self.t(d1, d2)
            * self.t(d3, d4);
        out += cw
            * cw
            * (self.e(&[(1, d1), (1, d3)]) * self.e(&[(1, d2), (1, d4)]) * self.b(d1, d2, d3, d4)
                + self.e(&[(1, d1), (1, d4)])
                    * self.e(&[(1, d2), (1, d3)])
                    * self.b(d1, d2, d4, d3));
        let f = |a: usize, b: usize| -> Vec<Term> {
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
        out += joint - self.et(&f12) * self.et(&f34);
        let grad = |a: usize, b: usize, ff: &[Term]| -> Vec<(Obs, f64)> {
            let mut gr: Vec<(Obs, f64)> = coords(&inputs(ff))
                .into_iter()
                .map(|p| (Obs::M(p.0, p.1), self.dk(ff, p)))
                .collect();
            gr.push((Obs::H(a.min(b), a.max(b)), cw * self.e(&[(1, a), (1, b)])));
            gr
        };
        let (g12, g34) = (grad(d1, d2, &f12), grad(d3, d4, &f34));
        for &(o1, v1) in &g12 {
            for &(o2, v2) in &g34 {
                out += v1 * v2 * self.v_cal(o1, o2);
            }
        }
        out
    }

    /// n E[dH_{012} z_3] of the output.
    fn dntk(&self, d0: usize, d1: usize, d2: usize, d3: usize) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let mut out = 0.0;
        for (x, y) in [(d1, d2), (d2, d1)] {
            out += lw
                * cw
                * (self.e(&[(0, x), (1, d0), (1, y), (0, d3)]) * self.t(y, d0)
                    + self.f_term(y, d0, &[(1, y), (0, d3)], &[(0, x), (1, d0)]));
        }
        out += cw
            * cw
            * self.lin(|a| self.p(d0, d1, d2, a), &[(1, d0), (0, d3)])
            * self.e(&[(1, d1), (1, d2)]);
        out += cw
            * cw
            * self.lin(|a| self.q1(d0, d1, d2, a), &[(1, d2), (0, d3)])
            * self.e(&[(1, d0), (1, d1)]);
        out += cw
            * cw
            * self.lin(|a| self.q2(d0, d1, d2, a), &[(1, d1), (0, d3)])
            * self.e(&[(1, d0), (1, d2)]);
        out += 3.0
            * cw
            * cw
            * self.e(&[(2, d0), (1, d1), (1, d2), (0, d3)])
            * self.t(d1, d0)
            * self.t(d2, d0);
        out += cw
            * cw
            * self.b(d1, d0, d2, d0)
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
    fn ddi(&self, d0: usize, d1: usize, d2: usize, d3: usize) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let legs = [d1, d2, d3];
        let mut out = 0.0;
        for i in 0..3 {
            let x = legs[i];
            let others: Vec<usize> = (0..3).filter(|&j| j != i).map(|j| legs[j]).collect();
            let (y, w) = (others[0], others[1]);
            let yw = self.e(&[(1, y), (1, w)]);
            out += lw
                * cw
                * (self.e(&[(0, x), (2, d0), (1, y), (1, w)]) * self.t(y, d0) * self.t(w, d0)
                    + self.b(y, d0, w, d0) * yw * self.e(&[(0, x), (2, d0)])
                    + self.lin(|a| self.p(d0, y, w, a), &[(0, x), (1, d0)]) * yw);
            out += cw
                * cw
                * self.t(x, d0)
                * self.lin(|a| self.p(d0, y, w, a), &[(2, d0), (1, x)])
                * yw;
            out += cw
                * cw
                * self.e(&[(3, d0), (1, d1), (1, d2), (1, d3)])
                * self.t(d1, d0)
                * self.t(d2, d0)
                * self.t(d3, d0);
            out += cw * cw * self.t(x, d0) * self.b(y, d0, w, d0) * self.e(&[(3, d0), (1, x)]) * yw;
        }
        let d = [d0, d1, d2, d3];
        out += cw
            * cw
            * (self.r(1, d) * self.e(&[(1, d0), (1, d1)]) * self.e(&[(1, d2), (1, d3)])
                + self.r(2, d) * self.e(&[(1, d0), (1, d2)]) * self.e(&[(1, d1), (1, d3)])
                + self.r(3, d) * self.e(&[(1, d0), (1, d3)]) * self.e(&[(1, d1), (1, d2)]));
        out
    }

    /// n E[ddII_{1234}] of the output.
    fn ddii(&self, d1: usize, d2: usize, d3: usize, d4: usize) -> f64 {
        let (cw, lw) = (self.cw, self.lw);
        let mut out = lw
            * lw
            * (self.e(&[(1, d1), (1, d2), (0, d3), (0, d4)]) * self.t(d1, d2)
                + self.f_term(d1, d2, &[(1, d1), (0, d3)], &[(1, d2), (0, d4)]));
        out += lw
            * cw
            * (self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)]) * self.t(d3, d1) * self.t(d4, d2)
                + self.b(d3, d1, d4, d2)
                    * self.e(&[(1, d3), (1, d4)])
                    * self.e(&[(1, d1), (1, d2)]));
        out += lw
            * cw
            * (self.e(&[(1, d1), (0, d3), (2, d2), (1, d4)]) * self.t(d4, d2) * self.t(d1, d2)
                + self.t(d4, d2) * self.f_term(d1, d2, &[(1, d1), (0, d3)], &[(2, d2), (1, d4)])
                + self.lin(|a| self.q2(d2, d1, d4, a), &[(1, d1), (0, d3)])
                    * self.e(&[(1, d2), (1, d4)]));
        out += lw
            * cw
            * (self.e(&[(1, d2), (0, d4), (2, d1), (1, d3)]) * self.t(d3, d1) * self.t(d1, d2)
                + self.t(d3, d1) * self.f_term(d1, d2, &[(2, d1), (1, d3)], &[(1, d2), (0, d4)])
                + self.lin(|a| self.q2(d1, d2, d3, a), &[(1, d2), (0, d4)])
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
                    * self.b(d3, d1, d4, d2)
                    * self.e(&[(1, d3), (1, d4)])
                    * self.e(&[(2, d1), (2, d2)]));
        out += cw
            * cw
            * self.t(d3, d1)
            * self.lin(|a| self.q2(d2, d1, d4, a), &[(2, d1), (1, d3)])
            * self.e(&[(1, d2), (1, d4)]);
        out += cw
            * cw
            * self.t(d4, d2)
            * self.lin(|a| self.q2(d1, d2, d3, a), &[(2, d2), (1, d4)])
            * self.e(&[(1, d1), (1, d3)]);
        out += cw
            * cw
            * (self.s(d1, d2, d3, d4) * self.e(&[(1, d1), (1, d2)]) * self.e(&[(1, d3), (1, d4)])
                + self.t_pair(d1, d2, d3, d4)
                    * self.e(&[(1, d1), (1, d3)])
                    * self.e(&[(1, d2), (1, d4)])
                + self.u(d1, d2, d3, d4)
                    * self.e(&[(1, d1), (1, d4)])
                    * self.e(&[(1, d2), (1, d3)]));
        out
    }

    /// Every output statistic the trajectory reads (entries with at most one test index).
    fn stats(&self, na: usize) -> DatasetStats {
        let n = self.n;
        let ix = Idx { n, na };
        let nan = f64::NAN;
        let mut s = DatasetStats {
            n_train: na,
            n,
            k: vec![0.0; na * na],
            theta: vec![nan; n * n],
            theta1: vec![nan; n * n],
            ntk_cov: vec![nan; n.pow(4)],
            dntk_z: vec![nan; n.pow(3) * na],
            ddi: vec![nan; n.pow(4)],
            ddii: vec![nan; n.pow(4)],
        };
        for a in 0..na {
            for b in 0..na {
                s.k[a * na + b] = self.cw * self.e(&[(0, a), (0, b)]);
            }
        }
        for a in 0..n {
            for b in 0..n {
                s.theta[ix.i2(a, b)] = self.lw * self.e(&[(0, a), (0, b)])
                    + self.cw * self.e(&[(1, a), (1, b)]) * self.t(a, b);
                if ix.tests(&[a, b]) <= 1 {
                    s.theta1[ix.i2(a, b)] = self.theta1(a, b);
                }
            }
        }
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    if ix.tests(&[a, b, c]) > 1 {
                        continue;
                    }
                    for mu in 0..na {
                        s.dntk_z[ix.i3(a, b, c) * na + mu] = self.dntk(a, b, c, mu);
                    }
                    for d in 0..n {
                        if ix.tests(&[a, b, c, d]) > 1 {
                            continue;
                        }
                        let i = ix.i4(a, b, c, d);
                        if c < na && d < na {
                            s.ntk_cov[i] = self.ntk_cov(a, b, c, d);
                        }
                        s.ddi[i] = self.ddi(a, b, c, d);
                        s.ddii[i] = self.ddii(a, b, c, d);
                    }
                }
            }
        }
        s
    }
}

/// The statistics of a depth-3 network (two hidden layers, C_W and λ_W of every layer from
/// `cfg`, C_b = λ_b = 0) on the inputs of `cfg` (module docs). Entries the trajectory never
/// reads (two or more test indices) are NaN.
pub fn three_layer_stats(
    act: &dyn Activation,
    cfg: &StatsConfig,
) -> Result<DatasetStats, TheoryError> {
    three_layer_stats_with(act, cfg, &cfg.quad())
}

/// [`three_layer_stats`] with every rule given (`cfg.nodes` is ignored): the two-input statistics of
/// [`crate::trajectory::test_input`] use it with finer 1- and 2-D rules.
pub fn three_layer_stats_with(
    act: &dyn Activation,
    cfg: &StatsConfig,
    quad: &QuadConfig,
) -> Result<DatasetStats, TheoryError> {
    check_activation(act)?;
    let (n, na) = super::two_layer::check_config(cfg)?;
    let (c, l) = (cfg.cw, cfg.lambda_w);
    let k1: Vec<f64> = cfg.gram.iter().map(|g| c * g).collect();
    let th1: Vec<f64> = cfg.gram.iter().map(|g| l * g).collect();
    // Layer 2's kernel and NTK: 2-D moments over layer 1, integrated first.
    let m1 = MomentTable::new(k1, n);
    for a in 0..n {
        for b in 0..n {
            m1.e(&[(0, a), (0, b)]);
            m1.e(&[(1, a), (1, b)]);
        }
    }
    m1.integrate(act, quad, "--train-x")?;
    let mut k2 = vec![0.0; n * n];
    let mut th2 = vec![0.0; n * n];
    for a in 0..n {
        for b in a..n {
            let ss = m1.e(&[(0, a), (0, b)]);
            k2[a * n + b] = c * ss;
            th2[a * n + b] = l * ss + c * m1.e(&[(1, a), (1, b)]) * th1[a * n + b];
            k2[b * n + a] = k2[a * n + b];
            th2[b * n + a] = th2[a * n + b];
        }
    }
    // Everything else: record, integrate both layers, read.
    let m1 = MomentTable::new(m1.into_kernel(), n);
    let m2 = MomentTable::new(k2, n);
    let net = Net3 {
        m1: &m1,
        m2: &m2,
        th1: &th1,
        th2: &th2,
        n,
        cw: c,
        lw: l,
    };
    net.stats(na);
    m1.integrate(act, quad, "--train-x")?;
    m2.integrate(act, quad, "--train-x")?;
    Ok(net.stats(na))
}
