//! An f64 MLP classifier with exact second-order products, for the Hessian and Jacobian
//! studies: loss and gradient, Hessian-vector products by Pearlmutter's R-operator
//! (forward-over-reverse, exact to rounding), the same by a central difference of gradients
//! (for comparison), and training by SGD / momentum / Adam.
//!
//! Why by hand: candle has no forward mode and no second-order graphs, and the studies need
//! HVPs exact to ~1e-12 (Lanczos residuals ≤ 1e-5 λ₁, ReLU networks where finite differences
//! fail at kinks). The model is small (P ≈ 3k), so plain f64 faer GEMMs suffice.
//!
//! Model: h_l = a_{l−1} W_lᵀ + b_l, a_l = σ(h_l) (l < L), z = h_L; loss = mean softmax
//! cross-entropy. R-operator along v = (V_l, c_l) (Pearlmutter 1994; Schraudolph 2002), with
//! p = softmax(z), δ_L = (p − y)/B:
//!   forward   R{h_l} = a_{l−1}V_lᵀ + R{a_{l−1}}W_lᵀ + c_l,  R{a_l} = σ′(h_l) ⊙ R{h_l},  R{a₀} = 0;
//!   output    R{δ_L} = (p ⊙ R{z} − p (pᵀR{z}))/B;
//!   backward  e_{l−1} = δ_l W_l,  δ_{l−1} = σ′ ⊙ e_{l−1},
//!             R{δ_{l−1}} = σ″ ⊙ R{h_{l−1}} ⊙ e_{l−1} + σ′ ⊙ (R{δ_l}W_l + δ_l V_l);
//!   products  (Hv)_{W_l} = R{δ_l}ᵀa_{l−1} + δ_lᵀR{a_{l−1}},  (Hv)_{b_l} = Σ_rows R{δ_l}.
//! ReLU's σ″ is 0 (the Hessian of the network almost everywhere, as autodiff defines it).

use crate::NnError;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn rm(v: &[f64], r: usize, c: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(v, r, c)
}

fn rm_mut(v: &mut [f64], r: usize, c: usize) -> MatMut<'_, f64> {
    MatMut::from_row_major_slice_mut(v, r, c)
}

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Act64 {
    Relu,
    Tanh,
}

impl Act64 {
    pub fn parse(s: &str) -> Result<Self, NnError> {
        match s {
            "relu" => Ok(Act64::Relu),
            "tanh" => Ok(Act64::Tanh),
            _ => Err(NnError::Invalid {
                what: format!("activation '{s}'"),
                fix: "use relu or tanh".into(),
            }),
        }
    }
    /// (σ, σ′, σ″) at h.
    #[inline]
    fn eval(self, h: f64) -> (f64, f64, f64) {
        match self {
            Act64::Relu => {
                if h > 0.0 {
                    (h, 1.0, 0.0)
                } else {
                    (0.0, 0.0, 0.0)
                }
            }
            Act64::Tanh => {
                let t = h.tanh();
                let d = 1.0 - t * t;
                (t, d, -2.0 * t * d)
            }
        }
    }
}

/// An MLP `widths[0] → … → widths[L]` (for labels the last width is the number of classes),
/// parameters flat as [W₁ (d₁ × d₀, row-major), b₁, W₂, b₂, …].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mlp64 {
    pub widths: Vec<usize>,
    pub act: Act64,
    /// A hidden layer l (1-based: a_l) whose activation is the identity — an autoencoder's
    /// bottleneck ([`Mlp64::autoencoder`]).
    pub linear_layer: Option<usize>,
}

/// Targets of a batch: class labels (softmax cross-entropy) or real values (n × out,
/// row-major; loss ½|z − y|² per example).
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    Labels(&'a [u32]),
    Values(&'a [f64]),
    /// Logit-space seeds v (n × out): the "loss" is φ = Σ_b v_b·z_b (summed), so the
    /// gradients are vector-Jacobian products: [`Point::input_grad`] gives J_bᵀ v_b per row.
    Seeds(&'a [f64]),
}

/// A batch: `x` is row-major `n × widths[0]`.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub x: &'a [f64],
    pub y: Targets<'a>,
    pub n: usize,
}

impl<'a> Batch<'a> {
    /// Inputs with class labels (one per row).
    pub fn labels(x: &'a [f64], y: &'a [u32]) -> Self {
        Batch {
            x,
            y: Targets::Labels(y),
            n: y.len(),
        }
    }
    /// Inputs with real targets, `out` per row.
    pub fn values(x: &'a [f64], t: &'a [f64], out: usize) -> Self {
        Batch {
            x,
            y: Targets::Values(t),
            n: if out == 0 { 0 } else { t.len() / out },
        }
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Mlp64 {
    pub fn new(widths: Vec<usize>, act: Act64) -> Result<Self, NnError> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(NnError::Invalid {
                what: format!("MLP widths {widths:?}"),
                fix: "give at least an input and an output width, all positive".into(),
            });
        }
        Ok(Mlp64 {
            widths,
            act,
            linear_layer: None,
        })
    }

    /// An autoencoder d → hidden… → latent → …hidden (mirrored) → d with a linear latent
    /// layer and a linear output.
    pub fn autoencoder(
        d: usize,
        hidden: &[usize],
        latent: usize,
        act: Act64,
    ) -> Result<Self, NnError> {
        let mut widths = vec![d];
        widths.extend(hidden);
        widths.push(latent);
        widths.extend(hidden.iter().rev());
        widths.push(d);
        let mut m = Mlp64::new(widths, act)?;
        m.linear_layer = Some(hidden.len() + 1);
        Ok(m)
    }

    /// (σ, σ′, σ″) of hidden layer l at h.
    #[inline]
    fn act_at(&self, l: usize, h: f64) -> (f64, f64, f64) {
        if self.linear_layer == Some(l) {
            (h, 1.0, 0.0)
        } else {
            self.act.eval(h)
        }
    }

    /// The latent code (n × width of the linear layer) of an autoencoder.
    pub fn encode(&self, theta: &[f64], x: &[f64]) -> Result<Vec<f64>, NnError> {
        let l = self.linear_layer.ok_or_else(|| NnError::Invalid {
            what: "encode on a model without a linear (latent) layer".into(),
            fix: "build it with Mlp64::autoencoder".into(),
        })?;
        let n = x.len() / self.widths[0];
        let c = self.widths[self.layers()];
        self.check(theta, Batch::values(x, &vec![0.0; n * c], c))?;
        Ok(self.forward_to(theta, x, n, l))
    }

    pub fn layers(&self) -> usize {
        self.widths.len() - 1
    }

    /// Offsets of (W_l, b_l) in the flat parameter vector, l = 1..L.
    pub fn offsets(&self) -> Vec<(usize, usize)> {
        let mut o = 0;
        self.widths
            .windows(2)
            .map(|w| {
                let at = (o, o + w[0] * w[1]);
                o += w[0] * w[1] + w[1];
                at
            })
            .collect()
    }

    pub fn num_params(&self) -> usize {
        self.widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// W ~ N(0, 1/fan_in), b = 0 (LeCun normal), seeded.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut theta = vec![0.0; self.num_params()];
        for (w, (ow, ob)) in self.widths.windows(2).zip(self.offsets()) {
            let s = 1.0 / (w[0] as f64).sqrt();
            for t in &mut theta[ow..ob] {
                *t = s * rng.sample::<f64, _>(StandardNormal);
            }
        }
        theta
    }

    fn check(&self, theta: &[f64], b: Batch) -> Result<(), NnError> {
        let d0 = self.widths[0];
        let c = self.widths[self.layers()];
        if theta.len() != self.num_params() {
            return Err(NnError::Invalid {
                what: format!("{} parameters", theta.len()),
                fix: format!("this MLP has {}", self.num_params()),
            });
        }
        if b.is_empty() || b.x.len() != b.len() * d0 {
            return Err(NnError::Invalid {
                what: format!("batch of {} input numbers for {} rows", b.x.len(), b.len()),
                fix: format!("give n × {d0} inputs for n ≥ 1 rows of targets"),
            });
        }
        match b.y {
            Targets::Labels(y) => {
                if let Some(bad) = y.iter().find(|&&y| y as usize >= c) {
                    return Err(NnError::Invalid {
                        what: format!("label {bad}"),
                        fix: format!("labels must be below the {c} classes"),
                    });
                }
            }
            Targets::Values(t) | Targets::Seeds(t) => {
                if t.len() != b.len() * c {
                    return Err(NnError::Invalid {
                        what: format!("{} targets for {} inputs", t.len(), b.len()),
                        fix: format!("give n × {c} targets"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The forward and backward pass at θ on a batch, kept for gradients and HVPs.
    pub fn at<'a>(&'a self, theta: &'a [f64], batch: Batch<'a>) -> Result<Point<'a>, NnError> {
        self.check(theta, batch)?;
        Ok(Point::new(self, theta, batch))
    }

    /// (mean loss, accuracy) on a batch, by a forward pass only (accuracy is NaN for real
    /// targets and seeds).
    pub fn evaluate(&self, theta: &[f64], batch: Batch) -> Result<(f64, f64), NnError> {
        self.check(theta, batch)?;
        let n = batch.len();
        let cur = self.forward(theta, batch.x, n);
        let (sum, correct) = loss_sum(&cur, batch.y, self.widths[self.layers()]);
        Ok(match batch.y {
            Targets::Labels(_) => (sum / n as f64, correct as f64 / n as f64),
            Targets::Values(_) => (sum / n as f64, f64::NAN),
            Targets::Seeds(_) => (sum, f64::NAN),
        })
    }

    /// Outputs z (n × widths[L], row-major) for inputs x (n × widths[0]).
    pub fn logits(&self, theta: &[f64], x: &[f64]) -> Result<Vec<f64>, NnError> {
        let n = x.len() / self.widths[0];
        let c = self.widths[self.layers()];
        self.check(theta, Batch::values(x, &vec![0.0; n * c], c))?;
        Ok(self.forward(theta, x, n))
    }

    fn forward(&self, theta: &[f64], x: &[f64], n: usize) -> Vec<f64> {
        self.forward_to(theta, x, n, self.layers())
    }

    /// a_upto (or z when upto = L).
    fn forward_to(&self, theta: &[f64], x: &[f64], n: usize, upto: usize) -> Vec<f64> {
        let w = &self.widths;
        let mut cur: Vec<f64> = x.to_vec();
        for (l, (ow, ob)) in self.offsets().into_iter().enumerate().take(upto) {
            let mut h = vec![0.0; n * w[l + 1]];
            matmul(
                rm_mut(&mut h, n, w[l + 1]),
                Accum::Replace,
                rm(&cur, n, w[l]),
                rm(&theta[ow..ob], w[l + 1], w[l]).transpose(),
                1.0,
                Par::Seq,
            );
            let bias = &theta[ob..ob + w[l + 1]];
            let hidden = l + 1 < self.layers();
            for row in h.chunks_exact_mut(w[l + 1]) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                    if hidden {
                        *v = self.act_at(l + 1, *v).0;
                    }
                }
            }
            cur = h;
        }
        cur
    }
}

/// (index, value) of the largest entry (the first on ties).
pub fn argmax(row: &[f64]) -> (usize, f64) {
    row.iter().enumerate().fold(
        (0, f64::NEG_INFINITY),
        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
    )
}

/// Summed loss of outputs z (rows of `c`) against targets — softmax cross-entropy, ½|z − y|²
/// or v·z — and the number of rows whose argmax is the label (labels only).
fn loss_sum(z: &[f64], y: Targets, c: usize) -> (f64, usize) {
    match y {
        Targets::Labels(labels) => {
            let (mut loss, mut correct) = (0.0, 0usize);
            for (row, &y) in z.chunks_exact(c).zip(labels) {
                let (arg, mx) = argmax(row);
                correct += usize::from(arg == y as usize);
                let s: f64 = row.iter().map(|v| (v - mx).exp()).sum();
                loss += s.ln() + mx - row[y as usize];
            }
            (loss, correct)
        }
        Targets::Values(t) => (
            0.5 * z.iter().zip(t).map(|(z, y)| (z - y).powi(2)).sum::<f64>(),
            0,
        ),
        Targets::Seeds(v) => (z.iter().zip(v).map(|(z, v)| z * v).sum(), 0),
    }
}

/// One θ and one batch: activations, σ′, σ″, softmax, the backward signals and the gradient.
pub struct Point<'a> {
    model: &'a Mlp64,
    theta: &'a [f64],
    batch: Batch<'a>,
    /// a_0 … a_{L−1} (a_0 = x is `batch.x`, stored as an empty placeholder).
    a: Vec<Vec<f64>>,
    s1: Vec<Vec<f64>>,
    s2: Vec<Vec<f64>>,
    /// e_l = δ_{l+1} W_{l+1} for hidden layers (before σ′), l = 1..L−1 (index l).
    e: Vec<Vec<f64>>,
    /// δ_1 … δ_L (index l − 1).
    delta: Vec<Vec<f64>>,
    p: Vec<f64>,
    pub loss: f64,
    pub accuracy: f64,
    pub grad: Vec<f64>,
}

impl<'a> Point<'a> {
    fn new(model: &'a Mlp64, theta: &'a [f64], batch: Batch<'a>) -> Self {
        let w = &model.widths;
        let l_n = model.layers();
        let n = batch.len();
        let off = model.offsets();
        let mut a: Vec<Vec<f64>> = vec![vec![]];
        let (mut s1, mut s2) = (vec![vec![]], vec![vec![]]);
        let mut z = vec![];
        for l in 1..=l_n {
            let (ow, ob) = off[l - 1];
            let prev: &[f64] = if l == 1 { batch.x } else { &a[l - 1] };
            let mut h = vec![0.0; n * w[l]];
            matmul(
                rm_mut(&mut h, n, w[l]),
                Accum::Replace,
                rm(prev, n, w[l - 1]),
                rm(&theta[ow..ob], w[l], w[l - 1]).transpose(),
                1.0,
                Par::Seq,
            );
            let bias = &theta[ob..ob + w[l]];
            for row in h.chunks_exact_mut(w[l]) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
            if l == l_n {
                z = h;
            } else {
                let (mut al, mut d1, mut d2) = (h.clone(), h.clone(), h);
                for ((x, y), u) in al.iter_mut().zip(d1.iter_mut()).zip(d2.iter_mut()) {
                    let (f, f1, f2) = model.act_at(l, *x);
                    (*x, *y, *u) = (f, f1, f2);
                }
                a.push(al);
                s1.push(d1);
                s2.push(d2);
            }
        }
        // Softmax cross-entropy, or ½|z − y|² (p keeps softmax(z), or z).
        let c = w[l_n];
        let (sum, correct) = loss_sum(&z, batch.y, c);
        let mut p = z;
        if let Targets::Labels(_) = batch.y {
            for row in p.chunks_exact_mut(c) {
                let mx = argmax(row).1;
                let s: f64 = row.iter().map(|v| (v - mx).exp()).sum();
                row.iter_mut().for_each(|v| *v = (*v - mx).exp() / s);
            }
        }
        // The mean over rows, except for seeds (φ is a sum).
        let loss = match batch.y {
            Targets::Seeds(_) => sum,
            _ => sum / n as f64,
        };
        let accuracy = match batch.y {
            Targets::Labels(_) => correct as f64 / n as f64,
            Targets::Values(_) | Targets::Seeds(_) => f64::NAN,
        };
        let mut pt = Point {
            model,
            theta,
            batch,
            a,
            s1,
            s2,
            e: vec![vec![]; l_n],
            delta: vec![vec![]; l_n],
            p,
            loss,
            accuracy,
            grad: vec![0.0; theta.len()],
        };
        pt.backward();
        pt
    }

    fn input(&self, l: usize) -> &[f64] {
        if l == 0 {
            self.batch.x
        } else {
            &self.a[l]
        }
    }

    fn backward(&mut self) {
        let w = &self.model.widths;
        let l_n = self.model.layers();
        let n = self.batch.len();
        let off = self.model.offsets();
        let c = w[l_n];
        let mut d = self.p.clone();
        match self.batch.y {
            Targets::Labels(labels) => {
                for (row, &y) in d.chunks_exact_mut(c).zip(labels) {
                    row[y as usize] -= 1.0;
                }
            }
            Targets::Values(t) => d.iter_mut().zip(t).for_each(|(z, y)| *z -= y),
            Targets::Seeds(v) => d.copy_from_slice(v),
        }
        if !matches!(self.batch.y, Targets::Seeds(_)) {
            d.iter_mut().for_each(|v| *v /= n as f64);
        }
        let mut grad = vec![0.0; self.theta.len()];
        for l in (1..=l_n).rev() {
            let (ow, ob) = off[l - 1];
            matmul(
                rm_mut(&mut grad[ow..ob], w[l], w[l - 1]),
                Accum::Replace,
                rm(&d, n, w[l]).transpose(),
                rm(self.input(l - 1), n, w[l - 1]),
                1.0,
                Par::Seq,
            );
            let gb = &mut grad[ob..ob + w[l]];
            for row in d.chunks_exact(w[l]) {
                gb.iter_mut().zip(row).for_each(|(g, v)| *g += v);
            }
            if l > 1 {
                let mut e = vec![0.0; n * w[l - 1]];
                matmul(
                    rm_mut(&mut e, n, w[l - 1]),
                    Accum::Replace,
                    rm(&d, n, w[l]),
                    rm(&self.theta[ow..ob], w[l], w[l - 1]),
                    1.0,
                    Par::Seq,
                );
                let next: Vec<f64> = e.iter().zip(&self.s1[l - 1]).map(|(e, s)| e * s).collect();
                self.e[l - 1] = e;
                self.delta[l - 1] = std::mem::replace(&mut d, next);
            } else {
                self.delta[0] = std::mem::take(&mut d);
            }
        }
        self.grad = grad;
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.theta.len()
    }

    /// ∂(loss)/∂x for every row (n × widths[0]): δ₁ W₁. With [`Targets::Seeds`] the rows
    /// are the vector-Jacobian products J_bᵀ v_b.
    pub fn input_grad(&self) -> Vec<f64> {
        let w = &self.model.widths;
        let n = self.batch.len();
        let (ow, ob) = self.model.offsets()[0];
        let mut g = vec![0.0; n * w[0]];
        matmul(
            rm_mut(&mut g, n, w[0]),
            Accum::Replace,
            rm(&self.delta[0], n, w[1]),
            rm(&self.theta[ow..ob], w[1], w[0]),
            1.0,
            Par::Seq,
        );
        g
    }

    /// Exact Hessian-vector product H v of the batch loss (R-operator; see the module docs).
    pub fn hvp(&self, v: &[f64], out: &mut [f64]) {
        self.r_op(v, None, out)
    }

    /// ∂/∂h ∇_θ loss(θ, x + h u) at h = 0: the R-operator with an input-space tangent u
    /// (n × widths[0]) and no parameter tangent (R{a₀} = u). With [`Targets::Seeds`] v and
    /// u_b = J_bᵀ v_b (from [`Point::input_grad`]) this is ½ ∇_θ Σ_b |J_bᵀ v_b|², the exact
    /// gradient of the Jacobian penalty without double backpropagation
    /// (docs/derivations/jacobian.md#penalty-gradient).
    pub fn input_tangent_grad(&self, u: &[f64], out: &mut [f64]) {
        self.r_op(&vec![0.0; self.theta.len()], Some(u), out)
    }

    /// R-operator along a parameter tangent v and an optional input tangent u.
    fn r_op(&self, v: &[f64], u: Option<&[f64]>, out: &mut [f64]) {
        let w = &self.model.widths;
        let l_n = self.model.layers();
        let n = self.batch.len();
        let off = self.model.offsets();
        let th = self.theta;
        // R-forward: R{h_l}, R{a_l}.
        let mut rh: Vec<Vec<f64>> = vec![vec![]; l_n + 1];
        let mut ra: Vec<Vec<f64>> = vec![u.map_or_else(|| vec![0.0; n * w[0]], <[f64]>::to_vec)];
        let with_u = u.is_some();
        for l in 1..=l_n {
            let (ow, ob) = off[l - 1];
            let mut r = vec![0.0; n * w[l]];
            matmul(
                rm_mut(&mut r, n, w[l]),
                Accum::Replace,
                rm(self.input(l - 1), n, w[l - 1]),
                rm(&v[ow..ob], w[l], w[l - 1]).transpose(),
                1.0,
                Par::Seq,
            );
            if l > 1 || with_u {
                matmul(
                    rm_mut(&mut r, n, w[l]),
                    Accum::Add,
                    rm(&ra[l - 1], n, w[l - 1]),
                    rm(&th[ow..ob], w[l], w[l - 1]).transpose(),
                    1.0,
                    Par::Seq,
                );
            }
            let c = &v[ob..ob + w[l]];
            for row in r.chunks_exact_mut(w[l]) {
                row.iter_mut().zip(c).for_each(|(x, b)| *x += b);
            }
            if l < l_n {
                ra.push(r.iter().zip(&self.s1[l]).map(|(x, s)| x * s).collect());
            }
            rh[l] = r;
        }
        // R{δ_L} = (p ⊙ Rz − p (p·Rz)) / n (cross-entropy) or Rz / n (squared error).
        let c = w[l_n];
        let mut rd: Vec<f64> = vec![0.0; n * c];
        match self.batch.y {
            Targets::Labels(_) => {
                for ((o, p), rz) in rd
                    .chunks_exact_mut(c)
                    .zip(self.p.chunks_exact(c))
                    .zip(rh[l_n].chunks_exact(c))
                {
                    let pr: f64 = p.iter().zip(rz).map(|(a, b)| a * b).sum();
                    for ((o, p), r) in o.iter_mut().zip(p).zip(rz) {
                        *o = p * (r - pr) / n as f64;
                    }
                }
            }
            Targets::Values(_) => rd
                .iter_mut()
                .zip(&rh[l_n])
                .for_each(|(o, r)| *o = r / n as f64),
            // φ is linear in z: R{δ_L} = 0.
            Targets::Seeds(_) => {}
        }
        for l in (1..=l_n).rev() {
            let (ow, ob) = off[l - 1];
            let (outw, outb) = out[ow..ob + w[l]].split_at_mut(ob - ow);
            matmul(
                rm_mut(outw, w[l], w[l - 1]),
                Accum::Replace,
                rm(&rd, n, w[l]).transpose(),
                rm(self.input(l - 1), n, w[l - 1]),
                1.0,
                Par::Seq,
            );
            if l > 1 || with_u {
                matmul(
                    rm_mut(outw, w[l], w[l - 1]),
                    Accum::Add,
                    rm(&self.delta[l - 1], n, w[l]).transpose(),
                    rm(&ra[l - 1], n, w[l - 1]),
                    1.0,
                    Par::Seq,
                );
            }
            outb.iter_mut().for_each(|x| *x = 0.0);
            for row in rd.chunks_exact(w[l]) {
                outb.iter_mut().zip(row).for_each(|(g, v)| *g += v);
            }
            if l > 1 {
                // R{e} = R{δ_l} W_l + δ_l V_l.
                let mut re = vec![0.0; n * w[l - 1]];
                matmul(
                    rm_mut(&mut re, n, w[l - 1]),
                    Accum::Replace,
                    rm(&rd, n, w[l]),
                    rm(&th[ow..ob], w[l], w[l - 1]),
                    1.0,
                    Par::Seq,
                );
                matmul(
                    rm_mut(&mut re, n, w[l - 1]),
                    Accum::Add,
                    rm(&self.delta[l - 1], n, w[l]),
                    rm(&v[ow..ob], w[l], w[l - 1]),
                    1.0,
                    Par::Seq,
                );
                let h = l - 1;
                rd = re
                    .iter()
                    .zip(&self.s1[h])
                    .zip(&self.s2[h])
                    .zip(&rh[h])
                    .zip(&self.e[h])
                    .map(|((((re, s1), s2), rh), e)| s2 * rh * e + s1 * re)
                    .collect();
            }
        }
    }

    /// H v by the central difference [∇L(θ + εv) − ∇L(θ − εv)]/(2ε) (for comparison: exact
    /// for ReLU networks only while no unit changes sign between θ ± εv).
    pub fn hvp_fd(&self, v: &[f64], eps: f64) -> Vec<f64> {
        let shifted = |s: f64| {
            let th: Vec<f64> = self.theta.iter().zip(v).map(|(t, v)| t + s * v).collect();
            Point::new(self.model, &th, self.batch).grad
        };
        let (gp, gm) = (shifted(eps), shifted(-eps));
        gp.iter()
            .zip(&gm)
            .map(|(a, b)| (a - b) / (2.0 * eps))
            .collect()
    }
}

/// An optimiser for [`train_step`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Opt64 {
    Sgd {
        lr: f64,
    },
    Momentum {
        lr: f64,
        beta: f64,
    },
    /// Adam (β = (0.9, 0.999), ε = 1e-8).
    Adam {
        lr: f64,
    },
}

/// Optimiser state (momentum / Adam moments and the step count).
#[derive(Debug, Clone, Default)]
pub struct OptState {
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    pub t: i32,
}

/// One update θ ← θ − step(g) (PyTorch's conventions: heavy-ball momentum buf = βbuf + g).
pub fn apply_update(theta: &mut [f64], g: &[f64], opt: Opt64, st: &mut OptState) {
    if st.m.len() != theta.len() {
        st.m = vec![0.0; theta.len()];
        st.v = vec![0.0; theta.len()];
    }
    st.t += 1;
    match opt {
        Opt64::Sgd { lr } => theta.iter_mut().zip(g).for_each(|(t, g)| *t -= lr * g),
        Opt64::Momentum { lr, beta } => {
            for ((t, g), m) in theta.iter_mut().zip(g).zip(&mut st.m) {
                *m = beta * *m + g;
                *t -= lr * *m;
            }
        }
        Opt64::Adam { lr } => {
            let (b1, b2) = (0.9f64, 0.999f64);
            let (c1, c2) = (1.0 - b1.powi(st.t), 1.0 - b2.powi(st.t));
            for (((t, g), m), v) in theta.iter_mut().zip(g).zip(&mut st.m).zip(&mut st.v) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *t -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, d: usize, c: usize, seed: u64) -> (Vec<f64>, Vec<u32>) {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let x = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
        let y = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
        (x, y)
    }

    /// H v by Richardson-extrapolated central differences (4 D(ε/2) − D(ε))/3: O(ε⁴).
    fn richardson_hvp(pt: &Point, v: &[f64], eps: f64) -> Vec<f64> {
        let (d1, d2) = (pt.hvp_fd(v, eps), pt.hvp_fd(v, eps / 2.0));
        d1.iter()
            .zip(&d2)
            .map(|(a, b)| (4.0 * b - a) / 3.0)
            .collect()
    }

    fn rel(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let m = Mlp64::new(vec![6, 8, 7, 4], Act64::Tanh).unwrap();
        let th = m.init(1);
        let (x, y) = data(10, 6, 4, 2);
        let b = Batch::labels(&x, &y);
        let pt = m.at(&th, b).unwrap();
        let (l, acc) = m.evaluate(&th, b).unwrap();
        assert!((l - pt.loss).abs() < 1e-14 * l && acc == pt.accuracy);
        let g = pt.grad;
        let h = 1e-5;
        for i in (0..th.len()).step_by(7) {
            let mut tp = th.clone();
            tp[i] += h;
            let mut tm = th.clone();
            tm[i] -= h;
            let fd = (m.evaluate(&tp, b).unwrap().0 - m.evaluate(&tm, b).unwrap().0) / (2.0 * h);
            // Central difference: truncation O(h²|L‴|) ≈ 1e-10, rounding 1e-16/h ≈ 1e-11.
            assert!((fd - g[i]).abs() < 1e-8, "param {i}: fd {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn r_op_hvp_matches_richardson_differences_and_is_symmetric() {
        for act in [Act64::Tanh, Act64::Relu] {
            let m = Mlp64::new(vec![5, 9, 6, 3], act).unwrap();
            let th = m.init(3);
            let (x, y) = data(12, 5, 3, 4);
            let pt = m.at(&th, Batch::labels(&x, &y)).unwrap();
            let p = m.num_params();
            let u = crate::mlp64::tests::data(p, 1, 2, 9).0;
            let v = crate::mlp64::tests::data(p, 1, 2, 10).0;
            let (mut hu, mut hv) = (vec![0.0; p], vec![0.0; p]);
            pt.hvp(&u, &mut hu);
            pt.hvp(&v, &mut hv);
            // Richardson-extrapolated central differences: truncation O(ε⁴) ≈ 1e-12 at
            // ε = 1e-3 for tanh; a ReLU network's loss is smooth between kinks, so at ε = 1e-6
            // (no pre-activation changes sign for this seed) truncation is ≈ 1e-12 and
            // rounding ≈ 1e-16/ε = 1e-10.
            let eps = if act == Act64::Tanh { 1e-3 } else { 1e-6 };
            let rich = richardson_hvp(&pt, &v, eps);
            let e = rel(&hv, &rich);
            assert!(e < 1e-8, "{act:?}: R-op vs differences {e:e}");
            // uᵀHv = vᵀHu to rounding.
            let (a, b): (f64, f64) = (
                u.iter().zip(&hv).map(|(x, y)| x * y).sum(),
                v.iter().zip(&hu).map(|(x, y)| x * y).sum(),
            );
            assert!(
                (a - b).abs() < 1e-12 * a.abs().max(1.0),
                "{act:?}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn lanczos_on_r_op_hvps_matches_the_dense_hessian() {
        // docs/derivations/hessian.md#lanczos: a small trained model (P = 327), top-10 Lanczos
        // pairs vs a dense eigendecomposition of the Hessian built column by column from the
        // same HVPs.
        use dlt_theory::spectral::{lanczos_top, subspace_overlap};
        let m = Mlp64::new(vec![8, 16, 6, 5], Act64::Tanh).unwrap();
        let (x, y) = data(200, 8, 5, 11);
        let b = Batch::labels(&x, &y);
        let mut th = m.init(12);
        let mut st = OptState::default();
        for _ in 0..300 {
            let g = m.at(&th, b).unwrap().grad;
            apply_update(&mut th, &g, Opt64::Sgd { lr: 0.2 }, &mut st);
        }
        let pt = m.at(&th, b).unwrap();
        let p = pt.dim();
        let mut h = faer::Mat::<f64>::zeros(p, p);
        let (mut e, mut col) = (vec![0.0; p], vec![0.0; p]);
        for j in 0..p {
            e[j] = 1.0;
            pt.hvp(&e, &mut col);
            e[j] = 0.0;
            for i in 0..p {
                h[(i, j)] = col[i];
            }
        }
        let asym = (0..p)
            .flat_map(|i| (0..p).map(move |j| (i, j)))
            .map(|(i, j)| (h[(i, j)] - h[(j, i)]).abs())
            .fold(0.0, f64::max);
        let scale = (0..p).map(|i| h[(i, i)].abs()).fold(0.0, f64::max);
        assert!(asym < 1e-12 * scale, "dense Hessian asymmetric by {asym:e}");
        let evd = h.self_adjoint_eigen(faer::Side::Lower).unwrap();
        let dense: Vec<f64> = (0..10).map(|i| evd.S()[p - 1 - i]).collect();
        let dense_vecs: Vec<Vec<f64>> = (0..10)
            .map(|i| (0..p).map(|r| evd.U()[(r, p - 1 - i)]).collect())
            .collect();
        // 120 steps on P = 327: the top 10 converge to rounding (checked by the residuals).
        let top = lanczos_top(p, 120, 10, 3, |v, o| pt.hvp(v, o)).unwrap();
        for i in 0..10 {
            let rel = (top.values[i] - dense[i]).abs() / dense[0].abs();
            assert!(rel < 1e-6, "λ{i}: {} vs {}", top.values[i], dense[i]);
        }
        // Projectors: |P − P'|²_F = 2k − 2k·overlap.
        let dp = (20.0 - 20.0 * subspace_overlap(&top.vectors, &dense_vecs))
            .max(0.0)
            .sqrt();
        assert!(dp < 1e-4, "projector distance {dp:e}");
    }

    #[test]
    fn jacobian_penalty_gradient_is_exact() {
        // Σ_b |J_bᵀ v_b|² as a function of θ: its directional derivative along w by central
        // differences (tanh, f64, step 1e-5: truncation ≈ 1e-10, rounding ≈ 1e-11) against
        // w · 2 input_tangent_grad(u); and input_grad against differences in x.
        let m = Mlp64::new(vec![6, 9, 7, 4], Act64::Tanh).unwrap();
        let th = m.init(21);
        let (x, _) = data(5, 6, 4, 22);
        let (v, _) = data(5, 4, 4, 23);
        let pen = |t: &[f64]| -> f64 {
            let u = m
                .at(
                    t,
                    Batch {
                        x: &x,
                        y: Targets::Seeds(&v),
                        n: 5,
                    },
                )
                .unwrap()
                .input_grad();
            u.iter().map(|a| a * a).sum()
        };
        let pt = m
            .at(
                &th,
                Batch {
                    x: &x,
                    y: Targets::Seeds(&v),
                    n: 5,
                },
            )
            .unwrap();
        let u = pt.input_grad();
        let mut g = vec![0.0; th.len()];
        pt.input_tangent_grad(&u, &mut g);
        let dir = data(th.len(), 1, 2, 24).0;
        let h = 1e-5;
        let shift = |s: f64| {
            th.iter()
                .zip(&dir)
                .map(|(a, b)| a + s * b)
                .collect::<Vec<_>>()
        };
        let fd = (pen(&shift(h)) - pen(&shift(-h))) / (2.0 * h);
        let exact: f64 = 2.0 * g.iter().zip(&dir).map(|(a, b)| a * b).sum::<f64>();
        assert!((fd - exact).abs() < 1e-7 * exact.abs(), "{fd} vs {exact}");
        // u_b = J_bᵀ v_b: the derivative of v_b·z_b along x.
        let phi = |xx: &[f64]| {
            m.evaluate(
                &th,
                Batch {
                    x: xx,
                    y: Targets::Seeds(&v),
                    n: 5,
                },
            )
            .unwrap()
            .0
        };
        for i in [0, 7, 29] {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let d = (phi(&xp) - phi(&xm)) / (2.0 * h);
            assert!((d - u[i]).abs() < 1e-8, "input {i}: {d} vs {}", u[i]);
        }
        // The parameter gradient of φ is the summed VJP in θ (no 1/n).
        assert!((pt.loss - phi(&x)).abs() < 1e-12);
    }

    #[test]
    fn autoencoder_has_a_linear_latent_and_exact_second_order() {
        let m = Mlp64::autoencoder(3, &[8], 2, Act64::Tanh).unwrap();
        assert_eq!(m.widths, vec![3, 8, 2, 8, 3]);
        let th = m.init(31);
        let (x, _) = data(6, 3, 2, 32);
        // The latent layer is linear: scaling W₂, b₂ scales the code.
        let code = m.encode(&th, &x).unwrap();
        let off = m.offsets()[1];
        let mut t2 = th.clone();
        t2[off.0..off.1 + 2].iter_mut().for_each(|v| *v *= 3.0);
        let code2 = m.encode(&t2, &x).unwrap();
        assert!(code
            .iter()
            .zip(&code2)
            .all(|(a, b)| (3.0 * a - b).abs() < 1e-12));
        // Gradient and HVP of the reconstruction loss against differences.
        let b = Batch::values(&x, &x, 3);
        let pt = m.at(&th, b).unwrap();
        let v = data(th.len(), 1, 2, 33).0;
        let mut hv = vec![0.0; th.len()];
        pt.hvp(&v, &mut hv);
        let rich = richardson_hvp(&pt, &v, 1e-3);
        assert!(rel(&hv, &rich) < 1e-8, "{:e}", rel(&hv, &rich));
        assert!(Mlp64::new(vec![2, 2], Act64::Tanh)
            .unwrap()
            .encode(&[0.0; 6], &[0.0; 2])
            .is_err());
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(Mlp64::new(vec![3], Act64::Relu).is_err());
        assert!(Mlp64::new(vec![3, 0], Act64::Relu).is_err());
        let m = Mlp64::new(vec![2, 3, 2], Act64::Relu).unwrap();
        let th = m.init(0);
        assert!(m.at(&th[1..], Batch::labels(&[0.0; 2], &[0])).is_err());
        assert!(m.at(&th, Batch::labels(&[0.0; 3], &[0])).is_err());
        assert!(m.at(&th, Batch::labels(&[0.0; 2], &[2])).is_err());
        assert!(m.at(&th, Batch::values(&[0.0; 2], &[0.0; 3], 2)).is_err());
        assert!(m.at(&th, Batch::values(&[0.0; 2], &[0.0; 2], 2)).is_ok());
        assert!(Act64::parse("gelu").is_err());
    }

    #[test]
    fn squared_error_gradient_and_hvp_match_differences() {
        // ½|z − y|² with two real outputs: gradient vs central differences of the loss, R-op
        // vs Richardson differences of the gradient (truncation O(ε⁴) ≈ 1e-12 at ε = 1e-3).
        let m = Mlp64::new(vec![4, 7, 2], Act64::Tanh).unwrap();
        let th = m.init(8);
        let (x, _) = data(9, 4, 2, 3);
        let (t, _) = data(9, 2, 2, 4);
        let b = Batch::values(&x, &t, 2);
        let pt = m.at(&th, b).unwrap();
        assert!(pt.accuracy.is_nan());
        assert!((m.evaluate(&th, b).unwrap().0 - pt.loss).abs() < 1e-14 * pt.loss);
        let h = 1e-5;
        for i in (0..th.len()).step_by(5) {
            let (mut tp, mut tm) = (th.clone(), th.clone());
            tp[i] += h;
            tm[i] -= h;
            let fd = (m.evaluate(&tp, b).unwrap().0 - m.evaluate(&tm, b).unwrap().0) / (2.0 * h);
            assert!((fd - pt.grad[i]).abs() < 1e-8, "param {i}");
        }
        let v = data(th.len(), 1, 2, 5).0;
        let mut hv = vec![0.0; th.len()];
        pt.hvp(&v, &mut hv);
        let rich = richardson_hvp(&pt, &v, 1e-3);
        assert!(rel(&hv, &rich) < 1e-8, "{:e}", rel(&hv, &rich));
    }

    #[test]
    fn optimisers_decrease_the_loss() {
        let m = Mlp64::new(vec![4, 16, 3], Act64::Tanh).unwrap();
        let (x, y) = data(64, 4, 3, 5);
        let b = Batch::labels(&x, &y);
        for opt in [
            Opt64::Sgd { lr: 0.5 },
            Opt64::Momentum {
                lr: 0.05,
                beta: 0.9,
            },
            Opt64::Adam { lr: 1e-2 },
        ] {
            let mut th = m.init(6);
            let l0 = m.evaluate(&th, b).unwrap().0;
            let mut st = OptState::default();
            for _ in 0..200 {
                let g = m.at(&th, b).unwrap().grad;
                apply_update(&mut th, &g, opt, &mut st);
            }
            let l1 = m.evaluate(&th, b).unwrap().0;
            assert!(l1 < 0.7 * l0, "{opt:?}: {l0} -> {l1}");
        }
    }
}
