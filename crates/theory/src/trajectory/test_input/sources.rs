//! One Wick step over a layer whose input is the Gaussian first layer (deterministic NTK Θ⁽¹⁾):
//! the depth-2 output statistics and the layer-2 *pair* tensors that the depth-3 output step
//! needs, docs/derivations/trained_test_input.md#sources. Exact at every width.
//!
//! Slot conventions follow the derivation: in dH_{012} slot 0 is the differentiated output and
//! 1, 2 its legs; in ddI_{0123} slots 1–3 are legs; ddII_{1234} has second derivatives on 1 and 2
//! with legs 3 (on 1) and 4 (on 2). The statistic of a distinct-neuron pair (i ≠ j) carries the
//! inputs in the slot order of its defining correlator.

use super::gauss2::{at, Fac, Gauss2, Inp, Mat2, Term};

/// A layer-l observable of one neuron: the product z_a z_b, or the NTK H_ab.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Obs {
    /// z_a z_b.
    M(Inp, Inp),
    /// H_ab.
    H(Inp, Inp),
}

/// The first layer seen from layer 2: its Gaussian expectations, its NTK and the hyperparameters
/// (C_W, λ_W) of layer 2.
pub struct Sources<'g> {
    /// Expectations over layer 1's (z_A, z_β) ~ N(0, K⁽¹⁾).
    pub g: &'g Gauss2,
    /// Θ⁽¹⁾.
    pub th: Mat2,
    /// C_W.
    pub cw: f64,
    /// λ_W.
    pub lw: f64,
}

impl Sources<'_> {
    fn t(&self, a: Inp, b: Inp) -> f64 {
        at(&self.th, a, b)
    }

    fn e(&self, fs: &[Fac]) -> f64 {
        self.g.e(fs)
    }

    /// The layer-2 value of an observable as a function of one layer-1 neuron:
    /// z_a z_b → C_W σ_aσ_b, H_ab → λ_W σ_aσ_b + C_W Θ_ab σ'_aσ'_b.
    pub fn obs(&self, o: Obs) -> Vec<Term> {
        match o {
            Obs::M(a, b) => vec![(self.cw, vec![(0, a), (0, b)])],
            Obs::H(a, b) => vec![
                (self.lw, vec![(0, a), (0, b)]),
                (self.cw * self.t(a, b), vec![(1, a), (1, b)]),
            ],
        }
    }

    /// Cov(Σ t1, Σ t2) over one layer-1 neuron.
    pub fn cov(&self, t1: &[Term], t2: &[Term]) -> f64 {
        let mut joint = 0.0;
        for (c1, f1) in t1 {
            for (c2, f2) in t2 {
                joint += c1 * c2 * self.e(&[f1.as_slice(), f2.as_slice()].concat());
            }
        }
        joint - self.g.et(t1) * self.g.et(t2)
    }

    /// n Cov(O_j, O_k) of two distinct layer-2 neurons j ≠ k (the two-input V, D, A).
    pub fn v_cal(&self, o1: Obs, o2: Obs) -> f64 {
        self.cov(&self.obs(o1), &self.obs(o2))
    }

    /// Same neuron: n Cov(H_{jj;dd'}, z_a z_b) = 2C_W²Θ_{dd'}⟨σ'_dσ'_{d'}σ_aσ_b⟩ + C_W Cov(Ō(H), σ_aσ_b).
    pub fn c_same(&self, d: Inp, dp: Inp, a: Inp, b: Inp) -> f64 {
        2.0 * self.cw * self.cw * self.t(d, dp) * self.e(&[(1, d), (1, dp), (0, a), (0, b)])
            + self.cw * self.cov(&self.obs(Obs::H(d, dp)), &[(1.0, vec![(0, a), (0, b)])])
    }

    /// B_{12,34} = n E[H_{jk;12} H_{jk;34}] = C_W²⟨σ'_1σ'_2σ'_3σ'_4⟩Θ_12Θ_34.
    pub fn b(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        self.cw.powi(2)
            * self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)])
            * self.t(d1, d2)
            * self.t(d3, d4)
    }

    /// F_{12;ab} = n E[H_{jk;12} z_{j;a} z_{k;b}] = C_W²Θ_12⟨σ'_1σ'_2σ_aσ_b⟩.
    pub fn f(&self, d1: Inp, d2: Inp, a: Inp, b: Inp) -> f64 {
        self.cw.powi(2) * self.t(d1, d2) * self.e(&[(1, d1), (1, d2), (0, a), (0, b)])
    }

    /// P_{012;a} = n E[dH_{jkk;012} z_{j;a}] = C_W²⟨σ''_0σ'_1σ'_2σ_a⟩Θ_10Θ_20.
    pub fn p(&self, d0: Inp, d1: Inp, d2: Inp, a: Inp) -> f64 {
        self.cw.powi(2)
            * self.e(&[(2, d0), (1, d1), (1, d2), (0, a)])
            * self.t(d1, d0)
            * self.t(d2, d0)
    }

    /// Q¹_{012;a} (dH_{jjk}) = P + λ_WC_WΘ_20⟨σ_1σ'_0σ'_2σ_a⟩.
    pub fn q1(&self, d0: Inp, d1: Inp, d2: Inp, a: Inp) -> f64 {
        self.p(d0, d1, d2, a)
            + self.lw * self.cw * self.t(d2, d0) * self.e(&[(0, d1), (1, d0), (1, d2), (0, a)])
    }

    /// Q²_{012;a} (dH_{jkj}) = P + λ_WC_WΘ_10⟨σ_2σ'_0σ'_1σ_a⟩.
    pub fn q2(&self, d0: Inp, d1: Inp, d2: Inp, a: Inp) -> f64 {
        self.p(d0, d1, d2, a)
            + self.lw * self.cw * self.t(d1, d0) * self.e(&[(0, d2), (1, d0), (1, d1), (0, a)])
    }

    /// C_W²⟨σ'''_0σ'_1σ'_2σ'_3⟩Θ_10Θ_20Θ_30, the all-derivative part of R.
    fn o3(&self, d0: Inp, d1: Inp, d2: Inp, d3: Inp) -> f64 {
        self.cw.powi(2)
            * self.e(&[(3, d0), (1, d1), (1, d2), (1, d3)])
            * self.t(d1, d0)
            * self.t(d2, d0)
            * self.t(d3, d0)
    }

    /// R^x_{0123} for x = slot 1 (R¹, ddI_iijj), 2 (R², ddI_ijij) or 3 (R³, ddI_ijji):
    /// λ_WC_W⟨σ_xσ''_0σ'_yσ'_w⟩Θ_y0Θ_w0 + the all-derivative part.
    pub fn r(&self, x: usize, d: [Inp; 4]) -> f64 {
        let legs = [d[1], d[2], d[3]];
        let xs = legs[x - 1];
        let others: Vec<Inp> = (0..3).filter(|&i| i != x - 1).map(|i| legs[i]).collect();
        let (y, w) = (others[0], others[1]);
        self.lw
            * self.cw
            * self.e(&[(0, xs), (2, d[0]), (1, y), (1, w)])
            * self.t(y, d[0])
            * self.t(w, d[0])
            + self.o3(d[0], d[1], d[2], d[3])
    }

    /// U_{1234} = C_W²⟨σ''_1σ''_2σ'_3σ'_4⟩Θ_31Θ_12Θ_42.
    pub fn u(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        self.cw.powi(2)
            * self.e(&[(2, d1), (2, d2), (1, d3), (1, d4)])
            * self.t(d3, d1)
            * self.t(d1, d2)
            * self.t(d4, d2)
    }

    /// S_{1234} = U + λ_WC_W⟨σ'_1σ'_2σ'_3σ'_4⟩Θ_31Θ_42.
    pub fn s(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        self.lw
            * self.cw
            * self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)])
            * self.t(d3, d1)
            * self.t(d4, d2)
            + self.u(d1, d2, d3, d4)
    }

    /// T_{1234} = U + λ_W²⟨σ'_1σ'_2σ_3σ_4⟩Θ_12
    ///            + λ_WC_W[⟨σ'_1σ_3σ''_2σ'_4⟩Θ_12Θ_42 + ⟨σ'_2σ_4σ''_1σ'_3⟩Θ_12Θ_31].
    pub fn t_pair(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        self.lw.powi(2) * self.e(&[(1, d1), (1, d2), (0, d3), (0, d4)]) * self.t(d1, d2)
            + self.lw
                * self.cw
                * (self.e(&[(1, d1), (0, d3), (2, d2), (1, d4)]) * self.t(d1, d2) * self.t(d4, d2)
                    + self.e(&[(1, d2), (0, d4), (2, d1), (1, d3)])
                        * self.t(d1, d2)
                        * self.t(d3, d1))
            + self.u(d1, d2, d3, d4)
    }

    /// The output statistics of a depth-2 network (this layer is the output): n Cov(H_12, H_34).
    pub fn out_ntk_cov(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        2.0 * self.cw.powi(2)
            * self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)])
            * self.t(d1, d2)
            * self.t(d3, d4)
            + self.cov(&self.obs(Obs::H(d1, d2)), &self.obs(Obs::H(d3, d4)))
    }

    /// Depth-2 output: n E[dH_{012} z_3].
    pub fn out_dntk(&self, d0: Inp, d1: Inp, d2: Inp, d3: Inp) -> f64 {
        self.lw
            * self.cw
            * (self.e(&[(0, d1), (1, d0), (1, d2), (0, d3)]) * self.t(d2, d0)
                + self.e(&[(0, d2), (1, d0), (1, d1), (0, d3)]) * self.t(d1, d0))
            + 3.0
                * self.cw.powi(2)
                * self.e(&[(2, d0), (1, d1), (1, d2), (0, d3)])
                * self.t(d1, d0)
                * self.t(d2, d0)
    }

    /// Depth-2 output: n E[ddI_{0123}].
    pub fn out_ddi(&self, d0: Inp, d1: Inp, d2: Inp, d3: Inp) -> f64 {
        let legs = [d1, d2, d3];
        let mut out = 3.0 * self.o3(d0, d1, d2, d3);
        for i in 0..3 {
            let x = legs[i];
            let others: Vec<Inp> = (0..3).filter(|&j| j != i).map(|j| legs[j]).collect();
            let (y, w) = (others[0], others[1]);
            out += self.lw
                * self.cw
                * self.e(&[(0, x), (2, d0), (1, y), (1, w)])
                * self.t(y, d0)
                * self.t(w, d0);
        }
        out
    }

    /// Depth-2 output: n E[ddII_{1234}].
    pub fn out_ddii(&self, d1: Inp, d2: Inp, d3: Inp, d4: Inp) -> f64 {
        3.0 * self.u(d1, d2, d3, d4)
            + self.lw
                * self.cw
                * (self.e(&[(1, d1), (1, d2), (1, d3), (1, d4)]) * self.t(d1, d3) * self.t(d2, d4)
                    + self.e(&[(1, d1), (0, d3), (2, d2), (1, d4)])
                        * self.t(d1, d2)
                        * self.t(d2, d4)
                    + self.e(&[(1, d2), (0, d4), (2, d1), (1, d3)])
                        * self.t(d1, d2)
                        * self.t(d1, d3))
            + self.lw.powi(2) * self.e(&[(1, d1), (1, d2), (0, d3), (0, d4)]) * self.t(d1, d2)
    }
}
