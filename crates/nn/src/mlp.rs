//! The MLP kernel: one hand-written network over a flat parameter buffer, generic over f32
//! (training throughput: the `train` fast path, `dlt bench`) and f64 (the Hessian, Jacobian,
//! SGD-gap and autoencoder studies, which need exact second-order products). Forward pass,
//! gradient, Pearlmutter's R-operator (Hessian-vector products and input-space tangents),
//! logit-seeded vector-Jacobian products; the optimisers are [`crate::optim`].
//!
//! Why by hand: candle has no forward mode and no second-order graphs, and its CPU backend
//! evaluates tanh element by element and allocates a tensor per operation (the 784-512-512-10
//! step was ≈ 4× slower than PyTorch). Here every GEMM runs in faer, the element-wise loops are
//! compiled for the widest instruction set the CPU has ([`crate::simd`]), tanh in f32 is a
//! vectorisable rational function ([`crate::real::tanh_f32`]), and the buffers of a
//! [`Workspace`] are reused from step to step.
//!
//! Model (PDLT, arXiv 2106.10165, §2.1): h_l = a_{l−1} W_lᵀ + b_l, a_l = σ(h_l) (l < L),
//! z = h_L; parameters flat as [W₁ (d₁ × d₀, row-major), b₁, W₂, b₂, …] ([`Mlp::layout`], the
//! order and shapes of candle's `model::Mlp` variables). Loss: mean softmax cross-entropy,
//! mean ½|z − y|², or the seeded sum φ = Σ_b v_b·z_b. Backward: δ_L = ∂loss/∂z,
//! e_{l−1} = δ_l W_l, δ_{l−1} = σ′(h_{l−1}) ⊙ e_{l−1}, ∂W_l = δ_lᵀ a_{l−1}, ∂b_l = Σ_rows δ_l.
//! R-operator along v = (V_l, c_l) (Pearlmutter 1994; Schraudolph 2002), p = softmax(z):
//!   forward   R{h_l} = a_{l−1}V_lᵀ + R{a_{l−1}}W_lᵀ + c_l,  R{a_l} = σ′(h_l) ⊙ R{h_l},  R{a₀} = u;
//!   output    R{δ_L} = (p ⊙ R{z} − p (pᵀR{z}))/B (cross-entropy), R{z}/B (squared error), 0 (φ);
//!   backward  R{δ_{l−1}} = σ″ ⊙ R{h_{l−1}} ⊙ e_{l−1} + σ′ ⊙ (R{δ_l}W_l + δ_l V_l);
//!   products  (Hv)_{W_l} = R{δ_l}ᵀa_{l−1} + δ_lᵀR{a_{l−1}},  (Hv)_{b_l} = Σ_rows R{δ_l}.
//! ReLU's σ″ is 0 (the Hessian of the network almost everywhere, as autodiff defines it).

use crate::layout::Layout;
use crate::model::ActKind;
use crate::real::Real;
use crate::simd::{with_isa, Isa};
use crate::NnError;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn rm<T: Real>(v: &[T], r: usize, c: usize) -> MatRef<'_, T> {
    MatRef::from_row_major_slice(v, r, c)
}

fn rm_mut<T: Real>(v: &mut [T], r: usize, c: usize) -> MatMut<'_, T> {
    MatMut::from_row_major_slice_mut(v, r, c)
}

/// C (=|+) A·B over row-major slices.
#[inline(always)]
fn gemm<T: Real>(c: MatMut<'_, T>, accum: Accum, a: MatRef<'_, T>, b: MatRef<'_, T>, par: Par) {
    matmul(c, accum, a, b, T::ONE, par);
}

/// An MLP `widths[0] → … → widths[L]` (for labels the last width is the number of classes).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mlp {
    /// Layer widths n₀ (input), n₁, …, n_L (output).
    pub widths: Vec<usize>,
    /// Hidden activation: linear, relu or tanh.
    pub act: ActKind,
    /// A hidden layer l (1-based: a_l) whose activation is the identity — an autoencoder's
    /// bottleneck ([`Mlp::autoencoder`]).
    pub linear_layer: Option<usize>,
    /// Run the GEMMs on every core (large layers) instead of one (small models, many calls).
    #[serde(skip)]
    pub parallel: bool,
}

/// Targets of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a, T> {
    /// Class labels: softmax cross-entropy.
    Labels(&'a [u32]),
    /// Class labels as one-hot targets of the squared error ½|z − e_y|².
    OneHot(&'a [u32]),
    /// Real values (n × out, row-major): ½|z − y|² per example.
    Values(&'a [T]),
    /// Logit-space seeds v (n × out): the "loss" is φ = Σ_b v_b·z_b (summed), so the
    /// gradients are vector-Jacobian products: [`Point::input_grad`] gives J_bᵀ v_b per row.
    Seeds(&'a [T]),
}

/// A batch: `x` is row-major `n × widths[0]`.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a, T> {
    /// Inputs, row-major n × widths[0].
    pub x: &'a [T],
    /// Targets, which also choose the loss.
    pub y: Targets<'a, T>,
    /// Number of examples.
    pub n: usize,
}

impl<'a, T> Batch<'a, T> {
    /// Inputs with class labels (one per row), softmax cross-entropy.
    pub fn labels(x: &'a [T], y: &'a [u32]) -> Self {
        Batch {
            x,
            y: Targets::Labels(y),
            n: y.len(),
        }
    }
    /// Inputs with real targets, `out` per row.
    pub fn values(x: &'a [T], t: &'a [T], out: usize) -> Self {
        Batch {
            x,
            y: Targets::Values(t),
            n: if out == 0 { 0 } else { t.len() / out },
        }
    }
    /// Number of examples n.
    pub fn len(&self) -> usize {
        self.n
    }
    /// True when the batch has no examples.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Reusable buffers of one forward and backward pass (explicit scratch space: a training loop
/// keeps one and hands it back each step, so no step allocates).
#[derive(Debug, Clone, Default)]
pub struct Workspace<T> {
    /// a_1 … a_{L−1} (index l; a_0 is the batch), then z at index L.
    a: Vec<Vec<T>>,
    /// σ′(h_l), σ″(h_l) (index l).
    s1: Vec<Vec<T>>,
    s2: Vec<Vec<T>>,
    /// e_l = δ_{l+1} W_{l+1} for hidden layers (index l).
    e: Vec<Vec<T>>,
    /// δ_1 … δ_L (index l − 1).
    delta: Vec<Vec<T>>,
    /// softmax(z) for labels.
    p: Vec<T>,
    /// The gradient of the last pass.
    pub grad: Vec<T>,
}

fn resize<T: Real>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.clear();
        v.resize(n, T::ZERO);
    }
}

impl<T: Real> Workspace<T> {
    fn shape(&mut self, m: &Mlp, n: usize, second_order: bool) {
        let l_n = m.layers();
        for b in [&mut self.a, &mut self.s1, &mut self.e] {
            b.resize_with(l_n + 1, Vec::new);
        }
        self.s2.resize_with(l_n + 1, Vec::new);
        self.delta.resize_with(l_n, Vec::new);
        for l in 1..=l_n {
            resize(&mut self.a[l], n * m.widths[l]);
            resize(&mut self.delta[l - 1], n * m.widths[l]);
            if l < l_n {
                resize(&mut self.s1[l], n * m.widths[l]);
                resize(&mut self.e[l], n * m.widths[l]);
                resize(&mut self.s2[l], if second_order { n * m.widths[l] } else { 0 });
            }
        }
        resize(&mut self.p, n * m.widths[l_n]);
        resize(&mut self.grad, m.num_params());
    }
}

/// (σ, σ′, σ″) of the kernel's activations.
#[inline(always)]
fn act_eval<T: Real>(act: ActKind, h: T) -> (T, T, T) {
    match act {
        ActKind::Relu => {
            if h > T::ZERO {
                (h, T::ONE, T::ZERO)
            } else {
                (T::ZERO, T::ZERO, T::ZERO)
            }
        }
        ActKind::Tanh => {
            let t = h.tanh();
            let d = T::ONE - t * t;
            (t, d, -(t + t) * d)
        }
        _ => (h, T::ONE, T::ZERO),
    }
}

/// (index, value) of the largest entry (the first on ties).
pub fn argmax<T: Real>(row: &[T]) -> (usize, T) {
    let mut best = (0, row[0]);
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// Summed loss (in f64) of outputs z (rows of `c`) against targets and the number of rows
/// whose argmax is the label (labels only).
fn loss_sum<T: Real>(z: &[T], y: Targets<T>, c: usize) -> (f64, usize) {
    let (mut loss, mut correct) = (0.0, 0usize);
    match y {
        Targets::Labels(labels) => {
            for (row, &y) in z.chunks_exact(c).zip(labels) {
                let (arg, mx) = argmax(row);
                correct += usize::from(arg == y as usize);
                let mx = mx.to_f64();
                let s: f64 = row.iter().map(|v| (v.to_f64() - mx).exp()).sum();
                loss += s.ln() + mx - row[y as usize].to_f64();
            }
        }
        Targets::OneHot(labels) => {
            for (row, &y) in z.chunks_exact(c).zip(labels) {
                correct += usize::from(argmax(row).0 == y as usize);
                for (j, v) in row.iter().enumerate() {
                    let e = v.to_f64() - f64::from(u8::from(j == y as usize));
                    loss += 0.5 * e * e;
                }
            }
        }
        Targets::Values(t) => {
            loss = 0.5 * z.iter().zip(t).map(|(z, y)| (z.to_f64() - y.to_f64()).powi(2)).sum::<f64>()
        }
        Targets::Seeds(v) => loss = z.iter().zip(v).map(|(z, v)| z.to_f64() * v.to_f64()).sum(),
    }
    (loss, correct)
}

impl Mlp {
    /// An MLP with hidden activation `act` (linear, relu or tanh: the kernel's activations;
    /// candle's `model::Mlp` takes the others).
    pub fn new(widths: Vec<usize>, act: ActKind) -> Result<Self, NnError> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(NnError::Invalid {
                what: format!("MLP widths {widths:?}"),
                fix: "give at least an input and an output width, all positive".into(),
            });
        }
        if !Self::supports(act) {
            return Err(NnError::Invalid {
                what: format!("activation {act:?} for the MLP kernel"),
                fix: "use relu, tanh or linear".into(),
            });
        }
        Ok(Mlp {
            widths,
            act,
            linear_layer: None,
            parallel: false,
        })
    }

    /// Whether the kernel implements this activation.
    pub fn supports(act: ActKind) -> bool {
        matches!(act, ActKind::Tanh | ActKind::Relu | ActKind::Linear)
    }

    /// An autoencoder d → hidden… → latent → …hidden (mirrored) → d with a linear latent
    /// layer and a linear output.
    pub fn autoencoder(
        d: usize,
        hidden: &[usize],
        latent: usize,
        act: ActKind,
    ) -> Result<Self, NnError> {
        let mut widths = vec![d];
        widths.extend(hidden);
        widths.push(latent);
        widths.extend(hidden.iter().rev());
        widths.push(d);
        let mut m = Mlp::new(widths, act)?;
        m.linear_layer = Some(hidden.len() + 1);
        Ok(m)
    }

    /// Run the GEMMs on every core.
    pub fn parallel(mut self) -> Self {
        self.parallel = true;
        self
    }

    fn par(&self) -> Par {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.parallel && threads > 1 {
            Par::rayon(threads)
        } else {
            Par::Seq
        }
    }

    /// The activation of hidden layer l.
    #[inline(always)]
    fn act_of(&self, l: usize) -> ActKind {
        if self.linear_layer == Some(l) {
            ActKind::Linear
        } else {
            self.act
        }
    }

    /// Number of layers L (weight matrices).
    pub fn layers(&self) -> usize {
        self.widths.len() - 1
    }

    /// Names, shapes and offsets of [W₁, b₁, W₂, b₂, …] (`l{i}.w`, `l{i}.b`, as candle's
    /// `model::Mlp` names its variables).
    pub fn layout(&self) -> Layout {
        let mut lay = Layout::default();
        for (i, w) in self.widths.windows(2).enumerate() {
            lay.push(format!("l{}.w", i + 1), &[w[1], w[0]]);
            lay.push(format!("l{}.b", i + 1), &[w[1]]);
        }
        lay
    }

    /// Ranges of (W_l, b_l) in the flat buffer, l = 1..L.
    fn ranges(&self) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let lay = self.layout();
        (0..self.layers())
            .map(|l| (lay.entry(2 * l).range(), lay.entry(2 * l + 1).range()))
            .collect()
    }

    /// Number of parameters Σ_l (n_{l−1}·n_l + n_l).
    pub fn num_params(&self) -> usize {
        self.widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// W ~ N(0, 1/fan_in), b = 0 (LeCun normal), seeded.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut theta = vec![0.0; self.num_params()];
        for (w, (rw, _)) in self.widths.windows(2).zip(self.ranges()) {
            let s = 1.0 / (w[0] as f64).sqrt();
            for t in &mut theta[rw] {
                *t = s * rng.sample::<f64, _>(StandardNormal);
            }
        }
        theta
    }

    fn check<T: Real>(&self, theta: &[T], b: Batch<T>) -> Result<(), NnError> {
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
            Targets::Labels(y) | Targets::OneHot(y) => {
                if let Some(bad) = y.iter().find(|&&y| y as usize >= c) {
                    return Err(NnError::Invalid {
                        what: format!("label {bad}"),
                        fix: format!("labels must be below the {c} outputs of the model"),
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
    pub fn at<'a, T: Real>(
        &'a self,
        theta: &'a [T],
        batch: Batch<'a, T>,
    ) -> Result<Point<'a, T>, NnError> {
        self.at_with(theta, batch, Workspace::default(), true)
    }

    /// [`Mlp::at`] reusing `ws`; without `second_order` σ″ is not kept (a training step:
    /// gradients only, no HVPs).
    pub fn at_with<'a, T: Real>(
        &'a self,
        theta: &'a [T],
        batch: Batch<'a, T>,
        ws: Workspace<T>,
        second_order: bool,
    ) -> Result<Point<'a, T>, NnError> {
        self.check(theta, batch)?;
        Ok(with_isa(Isa::best(), || {
            Point::compute(self, theta, batch, ws, second_order)
        }))
    }

    /// (mean loss, accuracy) on a batch, by a forward pass only (accuracy is NaN for real
    /// targets and seeds; the seeded loss is a sum).
    pub fn evaluate<T: Real>(&self, theta: &[T], batch: Batch<T>) -> Result<(f64, f64), NnError> {
        self.check(theta, batch)?;
        let n = batch.len();
        let cur = self.forward_to(theta, batch.x, n, self.layers());
        let (sum, correct) = loss_sum(&cur, batch.y, self.widths[self.layers()]);
        Ok(match batch.y {
            Targets::Labels(_) | Targets::OneHot(_) => {
                (sum / n as f64, correct as f64 / n as f64)
            }
            Targets::Values(_) => (sum / n as f64, f64::NAN),
            Targets::Seeds(_) => (sum, f64::NAN),
        })
    }

    fn probe<T: Real>(&self, theta: &[T], x: &[T]) -> Result<usize, NnError> {
        let n = x.len() / self.widths[0];
        let c = self.widths[self.layers()];
        self.check(theta, Batch::values(x, &vec![T::ZERO; n * c], c))?;
        Ok(n)
    }

    /// Outputs z (n × widths[L], row-major) for inputs x (n × widths[0]).
    pub fn logits<T: Real>(&self, theta: &[T], x: &[T]) -> Result<Vec<T>, NnError> {
        let n = self.probe(theta, x)?;
        Ok(self.forward_to(theta, x, n, self.layers()))
    }

    /// The latent code (n × width of the linear layer) of an autoencoder.
    pub fn encode<T: Real>(&self, theta: &[T], x: &[T]) -> Result<Vec<T>, NnError> {
        let l = self.linear_layer.ok_or_else(|| NnError::Invalid {
            what: "encode on a model without a linear (latent) layer".into(),
            fix: "build it with Mlp::autoencoder".into(),
        })?;
        let n = self.probe(theta, x)?;
        Ok(self.forward_to(theta, x, n, l))
    }

    /// a_upto (or z when upto = L), by a forward pass only.
    fn forward_to<T: Real>(&self, theta: &[T], x: &[T], n: usize, upto: usize) -> Vec<T> {
        let w = &self.widths;
        let par = self.par();
        let mut cur: Vec<T> = x.to_vec();
        for (l, (rw, rb)) in self.ranges().into_iter().enumerate().take(upto) {
            let mut h = vec![T::ZERO; n * w[l + 1]];
            gemm(
                rm_mut(&mut h, n, w[l + 1]),
                Accum::Replace,
                rm(&cur, n, w[l]),
                rm(&theta[rw], w[l + 1], w[l]).transpose(),
                par,
            );
            let bias = &theta[rb];
            let act = (l + 1 < self.layers()).then(|| self.act_of(l + 1));
            for row in h.chunks_exact_mut(w[l + 1]) {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v += b;
                    if let Some(act) = act {
                        *v = act_eval(act, *v).0;
                    }
                }
            }
            cur = h;
        }
        cur
    }
}

/// One θ and one batch: activations, σ′ (σ″ for second order), the backward signals and the
/// gradient.
pub struct Point<'a, T: Real> {
    model: &'a Mlp,
    theta: &'a [T],
    batch: Batch<'a, T>,
    ws: Workspace<T>,
    /// Mean loss over the batch at θ (the sum φ for [`Targets::Seeds`]).
    pub loss: f64,
    /// Fraction of rows whose argmax is the label, in [0, 1]; NaN for real targets or seeds.
    pub accuracy: f64,
}

impl<'a, T: Real> Point<'a, T> {
    #[inline(always)]
    fn compute(
        model: &'a Mlp,
        theta: &'a [T],
        batch: Batch<'a, T>,
        mut ws: Workspace<T>,
        second_order: bool,
    ) -> Self {
        let w = &model.widths;
        let l_n = model.layers();
        let n = batch.len();
        let par = model.par();
        ws.shape(model, n, second_order);
        for (l, (rw, rb)) in model.ranges().into_iter().enumerate().map(|(i, r)| (i + 1, r)) {
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
                    let (f, f1, f2) = act_eval(act, *v + b);
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
        for (l, (rw, rb)) in self.model.ranges().into_iter().enumerate().rev().map(|(i, r)| (i + 1, r)) {
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
            self.ws.s2.iter().skip(1).take(self.model.layers() - 1).all(|s| !s.is_empty()),
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
        let inv_n = T::of(1.0 / n as f64);
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
        let _ = inv_n;
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
            let th: Vec<T> = self.theta.iter().zip(v).map(|(&t, &v)| t + T::of(s) * v).collect();
            Point::compute(self.model, &th, self.batch, Workspace::default(), false)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Optimizer, State};

    fn data(n: usize, d: usize, c: usize, seed: u64) -> (Vec<f64>, Vec<u32>) {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let x = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
        let y = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
        (x, y)
    }

    /// H v by Richardson-extrapolated central differences (4 D(ε/2) − D(ε))/3: O(ε⁴).
    fn richardson_hvp(pt: &Point<f64>, v: &[f64], eps: f64) -> Vec<f64> {
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
        let m = Mlp::new(vec![6, 8, 7, 4], ActKind::Tanh).unwrap();
        let th = m.init(1);
        let (x, y) = data(10, 6, 4, 2);
        let b = Batch::labels(&x, &y);
        let pt = m.at(&th, b).unwrap();
        let (l, acc) = m.evaluate(&th, b).unwrap();
        assert!((l - pt.loss).abs() < 1e-14 * l && acc == pt.accuracy);
        let g = pt.grad().to_vec();
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
        for act in [ActKind::Tanh, ActKind::Relu] {
            let m = Mlp::new(vec![5, 9, 6, 3], act).unwrap();
            let th = m.init(3);
            let (x, y) = data(12, 5, 3, 4);
            let pt = m.at(&th, Batch::labels(&x, &y)).unwrap();
            let p = m.num_params();
            let u = crate::mlp::tests::data(p, 1, 2, 9).0;
            let v = crate::mlp::tests::data(p, 1, 2, 10).0;
            let (mut hu, mut hv) = (vec![0.0; p], vec![0.0; p]);
            pt.hvp(&u, &mut hu);
            pt.hvp(&v, &mut hv);
            // Richardson-extrapolated central differences: truncation O(ε⁴) ≈ 1e-12 at
            // ε = 1e-3 for tanh; a ReLU network's loss is smooth between kinks, so at ε = 1e-6
            // (no pre-activation changes sign for this seed) truncation is ≈ 1e-12 and
            // rounding ≈ 1e-16/ε = 1e-10.
            let eps = if act == ActKind::Tanh { 1e-3 } else { 1e-6 };
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
        // docs/derivations/hessian.md#lanczos: a small trained model (P = 327), top-10 Lanczos pairs vs a dense
        // eigendecomposition of the Hessian built column by column from the same HVPs.
        use dlt_theory::spectral::{lanczos_top, subspace_overlap};
        let m = Mlp::new(vec![8, 16, 6, 5], ActKind::Tanh).unwrap();
        let (x, y) = data(200, 8, 5, 11);
        let b = Batch::labels(&x, &y);
        let mut th = m.init(12);
        let mut st = State::default();
        for _ in 0..300 {
            let g = m.at(&th, b).unwrap().grad().to_vec();
            st.step(Optimizer::Sgd, &mut th, &g, 0.2);
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
        let m = Mlp::new(vec![6, 9, 7, 4], ActKind::Tanh).unwrap();
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
        let m = Mlp::autoencoder(3, &[8], 2, ActKind::Tanh).unwrap();
        assert_eq!(m.widths, vec![3, 8, 2, 8, 3]);
        let th = m.init(31);
        let (x, _) = data(6, 3, 2, 32);
        // The latent layer is linear: scaling W₂, b₂ scales the code.
        let code = m.encode(&th, &x).unwrap();
        let lay = m.layout();
        let (w2, b2) = (lay.entry(2).range(), lay.entry(3).range());
        let mut t2 = th.clone();
        t2[w2.start..b2.end].iter_mut().for_each(|v| *v *= 3.0);
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
        assert!(Mlp::new(vec![2, 2], ActKind::Tanh)
            .unwrap()
            .encode(&[0.0; 6], &[0.0; 2])
            .is_err());
    }

    #[test]
    fn single_and_double_precision_agree_and_a_reused_workspace_changes_nothing() {
        // One kernel in both precisions: loss and gradient agree to a relative 1e-5 (f32's
        // ε ≈ 6e-8 times sums of ≈ 20–100 terms, and tanh_f32's ≈ 1 ulp).
        let m = Mlp::new(vec![6, 16, 8, 4], ActKind::Tanh).unwrap();
        let th = m.init(41);
        let (x, y) = data(20, 6, 4, 42);
        let p64 = m.at(&th, Batch::labels(&x, &y)).unwrap();
        let th32: Vec<f32> = th.iter().map(|&v| v as f32).collect();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let p32 = m.at(&th32, Batch::labels(&x32, &y)).unwrap();
        assert!((p32.loss - p64.loss).abs() < 1e-5 * p64.loss, "{} vs {}", p32.loss, p64.loss);
        let g32: Vec<f64> = p32.grad().iter().map(|&v| v as f64).collect();
        assert!(rel(&g32, p64.grad()) < 1e-5, "{:e}", rel(&g32, p64.grad()));
        let first = p32.grad().to_vec();
        let ws = p32.into_workspace();
        let again = m.at_with(&th32, Batch::labels(&x32, &y), ws, false).unwrap();
        assert_eq!(again.grad(), &first[..]);
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(Mlp::new(vec![3], ActKind::Relu).is_err());
        assert!(Mlp::new(vec![3, 0], ActKind::Relu).is_err());
        let m = Mlp::new(vec![2, 3, 2], ActKind::Relu).unwrap();
        let th = m.init(0);
        assert!(m.at(&th[1..], Batch::labels(&[0.0; 2], &[0])).is_err());
        assert!(m.at(&th, Batch::labels(&[0.0; 3], &[0])).is_err());
        assert!(m.at(&th, Batch::labels(&[0.0; 2], &[2])).is_err());
        assert!(m.at(&th, Batch::values(&[0.0; 2], &[0.0; 3], 2)).is_err());
        assert!(m.at(&th, Batch::values(&[0.0; 2], &[0.0; 2], 2)).is_ok());
        assert!(Mlp::new(vec![2, 2], ActKind::Gelu).is_err());
    }

    #[test]
    fn squared_error_gradient_and_hvp_match_differences() {
        // ½|z − y|² with two real outputs: gradient vs central differences of the loss, R-op
        // vs Richardson differences of the gradient (truncation O(ε⁴) ≈ 1e-12 at ε = 1e-3).
        let m = Mlp::new(vec![4, 7, 2], ActKind::Tanh).unwrap();
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
            assert!((fd - pt.grad()[i]).abs() < 1e-8, "param {i}");
        }
        let v = data(th.len(), 1, 2, 5).0;
        let mut hv = vec![0.0; th.len()];
        pt.hvp(&v, &mut hv);
        let rich = richardson_hvp(&pt, &v, 1e-3);
        assert!(rel(&hv, &rich) < 1e-8, "{:e}", rel(&hv, &rich));
    }

    #[test]
    fn optimisers_decrease_the_loss() {
        let m = Mlp::new(vec![4, 16, 3], ActKind::Tanh).unwrap();
        let (x, y) = data(64, 4, 3, 5);
        let b = Batch::labels(&x, &y);
        for (opt, lr) in [
            (Optimizer::Sgd, 0.5),
            (Optimizer::Momentum { beta: 0.9 }, 0.05),
            (Optimizer::ADAM, 1e-2),
        ] {
            let mut th = m.init(6);
            let l0 = m.evaluate(&th, b).unwrap().0;
            let mut st = State::default();
            for _ in 0..200 {
                let g = m.at(&th, b).unwrap().grad().to_vec();
                st.step(opt, &mut th, &g, lr);
            }
            let l1 = m.evaluate(&th, b).unwrap().0;
            assert!(l1 < 0.7 * l0, "{opt:?}: {l0} -> {l1}");
        }
    }
}
