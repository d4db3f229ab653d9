//! One θ and one batch of the MLP kernel: the backward pass and the R-operator (see the
//! equations in the parent module's documentation).

use super::{
    act_eval, argmax, gemm, loss_sum, rm, rm_mut, Batch, Dropout, Mlp, Targets, Workspace,
};
use crate::real::Real;
use faer::Accum;
use rand::{Rng, SeedableRng};

/// One θ and one batch: activations, σ′ (σ″ for second order), the backward signals and the
/// gradient.
pub struct Point<'a, T: Real> {
    model: &'a Mlp,
    theta: &'a [T],
    batch: Batch<'a, T>,
    ws: Workspace<T>,
    /// The dropout masks of this pass (None: no dropout).
    dropout: Option<Dropout>,
    /// Mean loss over the batch at θ (the sum φ for [`Targets::Seeds`]).
    pub loss: f64,
    /// Fraction of rows whose argmax is the label, in [0, 1]; NaN for real targets or seeds.
    pub accuracy: f64,
}

impl<'a, T: Real> Point<'a, T> {
    #[inline(always)]
    pub(super) fn compute(
        model: &'a Mlp,
        theta: &'a [T],
        batch: Batch<'a, T>,
        mut ws: Workspace<T>,
        second_order: bool,
        dropout: Option<Dropout>,
    ) -> Self {
        let w = &model.widths;
        let l_n = model.layers();
        let n = batch.len();
        let par = model.par();
        ws.shape(model, n, second_order);
        // Inverted dropout (Srivastava et al., JMLR 15 (2014) 1929, §10 with the 1/(1 − p)
        // rescaling at training time): a_l ← m ⊙ σ(h_l), m_j ∈ {0, 1/(1 − p)} i.i.d. per
        // (row, unit), drawn in layer, row, unit order from the seed. The same m multiplies
        // σ′ and σ″, so the backward pass and the R-operator are those of the masked network.
        let mut mask_rng = dropout.map(|d| {
            (
                d.p,
                T::of(1.0 / (1.0 - d.p)),
                rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(d.seed),
            )
        });
        for (l, (rw, rb)) in model
            .ranges()
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
        {
            let (lo, hi) = ws.a.split_at_mut(l);
            let prev: &[T] = if l == 1 { batch.x } else { &lo[l - 1] };
            let h = &mut hi[0];
            gemm(
                rm_mut(h, n, w[l]),
                Accum::Replace,
                rm(prev, n, w[l - 1]),
                rm(&theta[rw], w[l], w[l - 1]).transpose(),
                par,
            );
            let bias = &theta[rb];
            if l == l_n {
                for row in h.chunks_exact_mut(w[l]) {
                    row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
                }
                continue;
            }
            let act = model.act_of(l);
            let (s1, s2) = (&mut ws.s1[l], &mut ws.s2[l]);
            for (k, (row, d1)) in h
                .chunks_exact_mut(w[l])
                .zip(s1.chunks_exact_mut(w[l]))
                .enumerate()
            {
                for (j, ((v, &b), d)) in row.iter_mut().zip(bias).zip(d1).enumerate() {
                    let (mut f, mut f1, mut f2) = act_eval(act, *v + b);
                    if let Some((p, keep, rng)) = mask_rng.as_mut() {
                        let m = if rng.random::<f64>() < *p {
                            T::ZERO
                        } else {
                            *keep
                        };
                        (f, f1, f2) = (f * m, f1 * m, f2 * m);
                    }
                    (*v, *d) = (f, f1);
                    if second_order {
                        s2[k * w[l] + j] = f2;
                    }
                }
            }
        }
        let c = w[l_n];
        let (sum, correct) = loss_sum(&ws.a[l_n], batch.y, c);
        let mut pt = Point {
            model,
            theta,
            batch,
            ws,
            dropout,
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

    /// δ_L = ∂loss/∂z: (softmax(z) − e_y)/B, (z − y)/B, or v (seeds); keeps softmax in `p`.
    #[inline(always)]
    fn output_delta(&mut self) {
        let l_n = self.model.layers();
        let c = self.model.widths[l_n];
        let n = self.batch.len();
        let inv_n = T::of(1.0 / n as f64);
        let z = &self.ws.a[l_n];
        let d = &mut self.ws.delta[l_n - 1];
        match self.batch.y {
            Targets::Labels(labels) => {
                for (((zr, pr), dr), &y) in z
                    .chunks_exact(c)
                    .zip(self.ws.p.chunks_exact_mut(c))
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
    }

    #[inline(always)]
    fn backward(&mut self) {
        self.output_delta();
        let w = &self.model.widths;
        let n = self.batch.len();
        let par = self.model.par();
        let th = self.theta;
        let ws = &mut self.ws;
        for (l, (rw, rb)) in self
            .model
            .ranges()
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, r)| (i + 1, r))
        {
            let input: &[T] = if l == 1 { self.batch.x } else { &ws.a[l - 1] };
            let d = &ws.delta[l - 1];
            gemm(
                rm_mut(&mut ws.grad[rw.clone()], w[l], w[l - 1]),
                Accum::Replace,
                rm(d, n, w[l]).transpose(),
                rm(input, n, w[l - 1]),
                par,
            );
            let gb = &mut ws.grad[rb];
            gb.iter_mut().for_each(|g| *g = T::ZERO);
            for row in d.chunks_exact(w[l]) {
                gb.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
            }
            if l > 1 {
                let e = &mut ws.e[l - 1];
                gemm(
                    rm_mut(e, n, w[l - 1]),
                    Accum::Replace,
                    rm(d, n, w[l]),
                    rm(&th[rw], w[l], w[l - 1]),
                    par,
                );
                let (lo, _) = ws.delta.split_at_mut(l - 1);
                for ((o, &e), &s) in lo[l - 2].iter_mut().zip(e.iter()).zip(&ws.s1[l - 1]) {
                    *o = e * s;
                }
            }
        }
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.theta.len()
    }

    /// The gradient of the loss in θ.
    pub fn grad(&self) -> &[T] {
        &self.ws.grad
    }

    /// The buffers, for the next pass (the gradient stays in `grad`).
    pub fn into_workspace(self) -> Workspace<T> {
        self.ws
    }

    fn input(&self, l: usize) -> &[T] {
        if l == 0 {
            self.batch.x
        } else {
            &self.ws.a[l]
        }
    }

    /// ∂(loss)/∂x for every row (n × widths[0]): δ₁ W₁. With [`Targets::Seeds`] the rows
    /// are the vector-Jacobian products J_bᵀ v_b.
    pub fn input_grad(&self) -> Vec<T> {
        let w = &self.model.widths;
        let n = self.batch.len();
        let (rw, _) = self.model.ranges().swap_remove(0);
        let mut g = vec![T::ZERO; n * w[0]];
        gemm(
            rm_mut(&mut g, n, w[0]),
            Accum::Replace,
            rm(&self.ws.delta[0], n, w[1]),
            rm(&self.theta[rw], w[1], w[0]),
            self.model.par(),
        );
        g
    }

    /// Exact Hessian-vector product H v of the batch loss (R-operator; see the module docs).
    pub fn hvp(&self, v: &[T], out: &mut [T]) {
        self.r_op(v, None, out)
    }

    /// ∂/∂h ∇_θ loss(θ, x + h u) at h = 0: the R-operator with an input-space tangent u
    /// (n × widths[0]) and no parameter tangent (R{a₀} = u). With [`Targets::Seeds`] v and
    /// u_b = J_bᵀ v_b (from [`Point::input_grad`]) this is ½ ∇_θ Σ_b |J_bᵀ v_b|², the exact
    /// gradient of the Jacobian penalty without double backpropagation
    /// (docs/derivations/jacobian.md#penalty-gradient).
    pub fn input_tangent_grad(&self, u: &[T], out: &mut [T]) {
        self.r_op(&vec![T::ZERO; self.theta.len()], Some(u), out)
    }

    /// R-operator along a parameter tangent v and an optional input tangent u.
    fn r_op(&self, v: &[T], u: Option<&[T]>, out: &mut [T]) {
        assert!(
            self.ws
                .s2
                .iter()
                .skip(1)
                .take(self.model.layers() - 1)
                .all(|s| !s.is_empty()),
            "R-operator on a first-order point: build it with Mlp::at"
        );
        let w = &self.model.widths;
        let l_n = self.model.layers();
        let n = self.batch.len();
        let ranges = self.model.ranges();
        let th = self.theta;
        let par = self.model.par();
        // R-forward: R{h_l}, R{a_l}.
        let mut rh: Vec<Vec<T>> = vec![vec![]; l_n + 1];
        let mut ra: Vec<Vec<T>> = vec![u.map_or_else(|| vec![T::ZERO; n * w[0]], <[T]>::to_vec)];
        let with_u = u.is_some();
        for l in 1..=l_n {
            let (rw, rb) = ranges[l - 1].clone();
            let mut r = vec![T::ZERO; n * w[l]];
            gemm(
                rm_mut(&mut r, n, w[l]),
                Accum::Replace,
                rm(self.input(l - 1), n, w[l - 1]),
                rm(&v[rw.clone()], w[l], w[l - 1]).transpose(),
                par,
            );
            if l > 1 || with_u {
                gemm(
                    rm_mut(&mut r, n, w[l]),
                    Accum::Add,
                    rm(&ra[l - 1], n, w[l - 1]),
                    rm(&th[rw], w[l], w[l - 1]).transpose(),
                    par,
                );
            }
            let c = &v[rb];
            for row in r.chunks_exact_mut(w[l]) {
                row.iter_mut().zip(c).for_each(|(x, &b)| *x += b);
            }
            if l < l_n {
                ra.push(r.iter().zip(&self.ws.s1[l]).map(|(&x, &s)| x * s).collect());
            }
            rh[l] = r;
        }
        let c = w[l_n];
        let mut rd: Vec<T> = vec![T::ZERO; n * c];
        match self.batch.y {
            Targets::Labels(_) => {
                for ((o, p), rz) in rd
                    .chunks_exact_mut(c)
                    .zip(self.ws.p.chunks_exact(c))
                    .zip(rh[l_n].chunks_exact(c))
                {
                    let mut pr = T::ZERO;
                    p.iter().zip(rz).for_each(|(&a, &b)| pr += a * b);
                    for ((o, &p), &r) in o.iter_mut().zip(p).zip(rz) {
                        *o = p * (r - pr) / T::of(n as f64);
                    }
                }
            }
            Targets::OneHot(_) | Targets::Values(_) => rd
                .iter_mut()
                .zip(&rh[l_n])
                .for_each(|(o, &r)| *o = r / T::of(n as f64)),
            // φ is linear in z: R{δ_L} = 0.
            Targets::Seeds(_) => {}
        }
        for l in (1..=l_n).rev() {
            let (rw, rb) = ranges[l - 1].clone();
            let (outw, outb) = out[rw.start..rb.end].split_at_mut(rw.len());
            gemm(
                rm_mut(outw, w[l], w[l - 1]),
                Accum::Replace,
                rm(&rd, n, w[l]).transpose(),
                rm(self.input(l - 1), n, w[l - 1]),
                par,
            );
            if l > 1 || with_u {
                gemm(
                    rm_mut(outw, w[l], w[l - 1]),
                    Accum::Add,
                    rm(&self.ws.delta[l - 1], n, w[l]).transpose(),
                    rm(&ra[l - 1], n, w[l - 1]),
                    par,
                );
            }
            outb.iter_mut().for_each(|x| *x = T::ZERO);
            for row in rd.chunks_exact(w[l]) {
                outb.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
            }
            if l > 1 {
                // R{e} = R{δ_l} W_l + δ_l V_l.
                let mut re = vec![T::ZERO; n * w[l - 1]];
                gemm(
                    rm_mut(&mut re, n, w[l - 1]),
                    Accum::Replace,
                    rm(&rd, n, w[l]),
                    rm(&th[rw.clone()], w[l], w[l - 1]),
                    par,
                );
                gemm(
                    rm_mut(&mut re, n, w[l - 1]),
                    Accum::Add,
                    rm(&self.ws.delta[l - 1], n, w[l]),
                    rm(&v[rw], w[l], w[l - 1]),
                    par,
                );
                let h = l - 1;
                let ws = &self.ws;
                rd = re
                    .iter()
                    .zip(&ws.s1[h])
                    .zip(&ws.s2[h])
                    .zip(&rh[h])
                    .zip(&ws.e[h])
                    .map(|((((&re, &s1), &s2), &rh), &e)| s2 * rh * e + s1 * re)
                    .collect();
            }
        }
    }

    /// H v by the central difference [∇L(θ + εv) − ∇L(θ − εv)]/(2ε) (for comparison: exact
    /// for ReLU networks only while no unit changes sign between θ ± εv).
    pub fn hvp_fd(&self, v: &[T], eps: f64) -> Vec<T> {
        let shifted = |s: f64| {
            let th: Vec<T> = self
                .theta
                .iter()
                .zip(v)
                .map(|(&t, &v)| t + T::of(s) * v)
                .collect();
            Point::compute(
                self.model,
                &th,
                self.batch,
                Workspace::default(),
                false,
                self.dropout,
            )
            .ws
            .grad
        };
        let (gp, gm) = (shifted(eps), shifted(-eps));
        gp.iter()
            .zip(&gm)
            .map(|(&a, &b)| (a - b) / T::of(2.0 * eps))
            .collect()
    }
}
