//! One θ and one batch of the CNN kernel: the backward pass and the R-operator (equations in
//! the parent module's documentation).

use super::ops::{bias_grad, Dense};
use super::{Cnn, Layer};
use crate::mlp::{act_eval, argmax, loss_sum, Batch, Targets};
use crate::real::Real;

/// One θ and one batch: every layer's input, σ′ and σ″ at the σ layers, the backward signals
/// g_i = ∂loss/∂(input of layer i) and the gradient.
pub struct CnnPoint<'a, T: Real> {
    model: &'a Cnn,
    theta: &'a [T],
    batch: Batch<'a, T>,
    /// Input of layer i at index i ≥ 1 (index 0 is the batch, not copied), z at the end.
    acts: Vec<Vec<T>>,
    /// σ′, σ″ of the σ layers (empty elsewhere).
    s1: Vec<Vec<T>>,
    s2: Vec<Vec<T>>,
    /// g_i at index i, δ_L = ∂loss/∂z at the end.
    g: Vec<Vec<T>>,
    /// softmax(z) for labels.
    p: Vec<T>,
    grad: Vec<T>,
    /// Mean loss over the batch at θ (the sum φ for [`Targets::Seeds`]).
    pub loss: f64,
    /// Fraction of rows whose argmax is the label; NaN for real targets or seeds.
    pub accuracy: f64,
}

impl<'a, T: Real> CnnPoint<'a, T> {
    pub(super) fn compute(model: &'a Cnn, theta: &'a [T], batch: Batch<'a, T>) -> Self {
        let n = batch.len();
        let nl = model.layers().len();
        let mut acts: Vec<Vec<T>> = vec![vec![]];
        let (mut s1, mut s2) = (vec![vec![]; nl], vec![vec![]; nl]);
        for (i, layer) in model.layers().iter().enumerate() {
            let mut out = vec![T::ZERO; n * model.sizes[i + 1]];
            let x: &[T] = if i == 0 { batch.x } else { &acts[i] };
            match layer {
                Layer::Act => {
                    let (d1, d2) = (&mut s1[i], &mut s2[i]);
                    d1.resize(out.len(), T::ZERO);
                    d2.resize(out.len(), T::ZERO);
                    for (j, (o, &h)) in out.iter_mut().zip(x).enumerate() {
                        (*o, d1[j], d2[j]) = act_eval(model.act, h);
                    }
                }
                _ => model.linear(layer, theta, x, n, &mut out, true),
            }
            acts.push(out);
        }
        let c = model.outputs();
        let (sum, correct) = loss_sum(&acts[nl], batch.y, c);
        let mut pt = CnnPoint {
            model,
            theta,
            batch,
            acts,
            s1,
            s2,
            g: vec![vec![]; nl + 1],
            p: vec![],
            grad: vec![T::ZERO; theta.len()],
            loss: match batch.y {
                Targets::Seeds(_) => sum,
                _ => sum / n as f64,
            },
            accuracy: match batch.y {
                Targets::Labels(_) | Targets::OneHot(_) => correct as f64 / n as f64,
                Targets::Values(_) | Targets::Seeds(_) => f64::NAN,
            },
        };
        pt.backward();
        pt
    }

    fn input(&self, i: usize) -> &[T] {
        if i == 0 {
            self.batch.x
        } else {
            &self.acts[i]
        }
    }

    /// δ_L = ∂loss/∂z: (softmax(z) − e_y)/B, (z − y)/B, or v (seeds); keeps softmax in `p`.
    fn output_delta(&mut self) -> Vec<T> {
        let nl = self.model.layers().len();
        let c = self.model.outputs();
        let n = self.batch.len();
        let inv_n = T::of(1.0 / n as f64);
        let z = &self.acts[nl];
        let mut d = vec![T::ZERO; z.len()];
        match self.batch.y {
            Targets::Labels(labels) => {
                self.p = vec![T::ZERO; z.len()];
                for (((zr, pr), dr), &y) in z
                    .chunks_exact(c)
                    .zip(self.p.chunks_exact_mut(c))
                    .zip(d.chunks_exact_mut(c))
                    .zip(labels)
                {
                    let mx = argmax(zr).1.to_f64();
                    let s: f64 = zr.iter().map(|v| (v.to_f64() - mx).exp()).sum();
                    for (j, ((p, o), v)) in pr.iter_mut().zip(dr).zip(zr).enumerate() {
                        *p = T::of((v.to_f64() - mx).exp() / s);
                        *o = (*p - if j == y as usize { T::ONE } else { T::ZERO }) * inv_n;
                    }
                }
            }
            Targets::OneHot(labels) => {
                for ((zr, dr), &y) in z.chunks_exact(c).zip(d.chunks_exact_mut(c)).zip(labels) {
                    for (j, (o, &v)) in dr.iter_mut().zip(zr).enumerate() {
                        *o = (v - if j == y as usize { T::ONE } else { T::ZERO }) * inv_n;
                    }
                }
            }
            Targets::Values(t) => {
                for ((o, &v), &y) in d.iter_mut().zip(z).zip(t) {
                    *o = (v - y) * inv_n;
                }
            }
            Targets::Seeds(v) => d.copy_from_slice(v),
        }
        d
    }

    fn backward(&mut self) {
        let nl = self.model.layers().len();
        self.g[nl] = self.output_delta();
        let n = self.batch.len();
        let lay = &self.model.layout;
        for i in (0..nl).rev() {
            let mut gi = vec![T::ZERO; n * self.model.sizes[i]];
            let gy = &self.g[i + 1];
            match &self.model.layers()[i] {
                Layer::Act => {
                    for ((o, &g), &s) in gi.iter_mut().zip(gy).zip(&self.s1[i]) {
                        *o = g * s;
                    }
                }
                Layer::Pool(pl) => pl.input_grad(gy, n, &mut gi),
                Layer::Conv(cv, p) => {
                    let x = if i == 0 { self.batch.x } else { &self.acts[i] };
                    cv.weight_grad(x, gy, n, lay.slice_mut(&mut self.grad, *p));
                    bias_grad(gy, lay.slice_mut(&mut self.grad, p + 1));
                    cv.input_grad(gy, lay.slice(self.theta, *p), n, &mut gi);
                }
                Layer::Dense(d, p) => {
                    let x = if i == 0 { self.batch.x } else { &self.acts[i] };
                    d.weight_grad(x, gy, n, lay.slice_mut(&mut self.grad, *p));
                    bias_grad(gy, lay.slice_mut(&mut self.grad, p + 1));
                    d.input_grad(gy, lay.slice(self.theta, *p), n, &mut gi);
                }
            }
            self.g[i] = gi;
        }
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.theta.len()
    }

    /// The gradient of the loss in θ.
    pub fn grad(&self) -> &[T] {
        &self.grad
    }

    /// The logits z (n × outputs).
    pub fn logits(&self) -> &[T] {
        self.acts.last().expect("at least one layer")
    }

    /// ∂(loss)/∂x for every row (n × H·W·C). With [`Targets::Seeds`] v the rows are the
    /// vector-Jacobian products J_bᵀ v_b.
    pub fn input_grad(&self) -> Vec<T> {
        self.g[0].clone()
    }

    /// Exact Hessian-vector product H v of the batch loss (R-operator; see the module docs).
    pub fn hvp(&self, v: &[T], out: &mut [T]) {
        self.r_op(v, None, out)
    }

    /// ∂/∂h ∇_θ loss(θ, x + h u) at h = 0: the R-operator with an input tangent u
    /// (n × H·W·C) and no parameter tangent. With [`Targets::Seeds`] v and u_b = J_bᵀ v_b
    /// ([`CnnPoint::input_grad`]) this is ½ ∇_θ Σ_b |J_bᵀ v_b|², the Jacobian penalty's exact
    /// gradient (docs/derivations/jacobian.md#penalty-gradient).
    pub fn input_tangent_grad(&self, u: &[T], out: &mut [T]) {
        self.r_op(&vec![T::ZERO; self.theta.len()], Some(u), out)
    }

    /// R-operator along a parameter tangent v and an optional input tangent u: out = R{∇_θ}.
    pub(super) fn r_op(&self, v: &[T], u: Option<&[T]>, out: &mut [T]) {
        assert_eq!(v.len(), self.theta.len(), "tangent of the wrong length");
        assert_eq!(out.len(), self.theta.len(), "output of the wrong length");
        let m = self.model;
        let nl = m.layers().len();
        let n = self.batch.len();
        // R-forward: ra[i] = R{input of layer i} (None: identically zero).
        let mut ra: Vec<Option<Vec<T>>> = vec![u.map(<[T]>::to_vec)];
        for (i, layer) in m.layers().iter().enumerate() {
            let next = match layer {
                Layer::Act => ra[i]
                    .as_ref()
                    .map(|r| r.iter().zip(&self.s1[i]).map(|(&r, &s)| r * s).collect()),
                Layer::Pool(_) => ra[i].as_ref().map(|r| {
                    let mut o = vec![T::ZERO; n * m.sizes[i + 1]];
                    m.linear(layer, self.theta, r, n, &mut o, false);
                    o
                }),
                Layer::Conv(..) | Layer::Dense(..) => {
                    let mut o = vec![T::ZERO; n * m.sizes[i + 1]];
                    // A_V x + c (v's bias entry is added as the layer's bias).
                    m.linear(layer, v, self.input(i), n, &mut o, true);
                    if let Some(r) = &ra[i] {
                        m.linear(layer, self.theta, r, n, &mut o, false);
                    }
                    Some(o)
                }
            };
            ra.push(next);
        }
        // R{δ_L}.
        let c = m.outputs();
        let rz = ra[nl]
            .as_ref()
            .expect("the last dense layer has a parameter tangent");
        let mut rg = vec![T::ZERO; n * c];
        let inv_n = T::of(1.0 / n as f64);
        match self.batch.y {
            Targets::Labels(_) => {
                for ((o, p), rz) in rg
                    .chunks_exact_mut(c)
                    .zip(self.p.chunks_exact(c))
                    .zip(rz.chunks_exact(c))
                {
                    let mut pr = T::ZERO;
                    p.iter().zip(rz).for_each(|(&a, &b)| pr += a * b);
                    for ((o, &p), &r) in o.iter_mut().zip(p).zip(rz) {
                        *o = p * (r - pr) * inv_n;
                    }
                }
            }
            Targets::OneHot(_) | Targets::Values(_) => {
                rg.iter_mut().zip(rz).for_each(|(o, &r)| *o = r * inv_n)
            }
            Targets::Seeds(_) => {}
        }
        // R-backward.
        out.iter_mut().for_each(|o| *o = T::ZERO);
        for i in (0..nl).rev() {
            let gy = &self.g[i + 1];
            let need_in = i > 0;
            let mut ri = vec![T::ZERO; if need_in { n * m.sizes[i] } else { 0 }];
            match &m.layers()[i] {
                Layer::Act => {
                    if need_in {
                        match &ra[i] {
                            Some(r) => {
                                for (j, o) in ri.iter_mut().enumerate() {
                                    *o = self.s2[i][j] * r[j] * gy[j] + self.s1[i][j] * rg[j];
                                }
                            }
                            None => {
                                for ((o, &s), &g) in ri.iter_mut().zip(&self.s1[i]).zip(&rg) {
                                    *o = s * g;
                                }
                            }
                        }
                    }
                }
                Layer::Pool(pl) => {
                    if need_in {
                        pl.input_grad(&rg, n, &mut ri);
                    }
                }
                Layer::Conv(cv, p) => self.r_back_param(
                    |x, g, o| cv.weight_grad(x, g, n, o),
                    |g, w, o| cv.input_grad(g, w, n, o),
                    (i, *p),
                    (v, &ra[i], &rg, gy),
                    out,
                    &mut ri,
                ),
                Layer::Dense(d, p) => self.r_back_param(
                    |x, g, o| Dense::weight_grad(d, x, g, n, o),
                    |g, w, o| Dense::input_grad(d, g, w, n, o),
                    (i, *p),
                    (v, &ra[i], &rg, gy),
                    out,
                    &mut ri,
                ),
            }
            rg = ri;
        }
    }

    /// The R-backward step of a conv or dense layer i with weight entry p:
    /// (Hv)_W = R{gy}ᵀ X̂ + gyᵀ R{X̂}, (Hv)_b = Σ R{gy}, R{g_i} = A_Wᵀ R{gy} + A_Vᵀ gy.
    #[allow(clippy::type_complexity)]
    fn r_back_param(
        &self,
        weight_grad: impl Fn(&[T], &[T], &mut [T]),
        input_grad: impl Fn(&[T], &[T], &mut [T]),
        (i, p): (usize, usize),
        (v, rx, rg, gy): (&[T], &Option<Vec<T>>, &[T], &[T]),
        out: &mut [T],
        ri: &mut [T],
    ) {
        let lay = &self.model.layout;
        weight_grad(self.input(i), rg, lay.slice_mut(out, p));
        if let Some(rx) = rx {
            weight_grad(rx, gy, lay.slice_mut(out, p));
        }
        bias_grad(rg, lay.slice_mut(out, p + 1));
        if !ri.is_empty() {
            input_grad(rg, lay.slice(self.theta, p), ri);
            input_grad(gy, lay.slice(v, p), ri);
        }
    }

    /// H v by the central difference [∇L(θ + εv) − ∇L(θ − εv)]/(2ε) (for comparison).
    pub fn hvp_fd(&self, v: &[T], eps: f64) -> Vec<T> {
        let shifted = |s: f64| {
            let th: Vec<T> = self
                .theta
                .iter()
                .zip(v)
                .map(|(&t, &v)| t + T::of(s) * v)
                .collect();
            CnnPoint::compute(self.model, &th, self.batch).grad
        };
        let (gp, gm) = (shifted(eps), shifted(-eps));
        gp.iter()
            .zip(&gm)
            .map(|(&a, &b)| (a - b) / T::of(2.0 * eps))
            .collect()
    }
}
