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

mod point;
#[cfg(test)]
mod tests;

pub use point::Point;

use crate::layout::Layout;
use crate::model::ActKind;
use crate::real::Real;
use crate::simd::{with_isa, Isa};
use crate::NnError;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

pub(super) fn rm<T: Real>(v: &[T], r: usize, c: usize) -> MatRef<'_, T> {
    MatRef::from_row_major_slice(v, r, c)
}

pub(super) fn rm_mut<T: Real>(v: &mut [T], r: usize, c: usize) -> MatMut<'_, T> {
    MatMut::from_row_major_slice_mut(v, r, c)
}

/// C (=|+) A·B over row-major slices.
#[inline(always)]
pub(super) fn gemm<T: Real>(
    c: MatMut<'_, T>,
    accum: Accum,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    par: Par,
) {
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
    /// Threads of the GEMMs: every core after [`Mlp::parallel`] (large layers), else one
    /// (small models, many calls).
    #[serde(skip)]
    threads: usize,
    /// Where each parameter lives, computed once from the widths.
    #[serde(skip)]
    layout: Layout,
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
            n: t.len().checked_div(out).unwrap_or(0),
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

/// Dropout on the hidden units of one pass: each unit of each row is zeroed with probability
/// `p` and the survivors scaled by 1/(1 − p) (inverted dropout), the masks drawn from `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Probability of dropping a hidden unit, in [0, 1).
    pub p: f64,
    /// Seed of the masks (same seed and batch shape ⇒ same masks).
    pub seed: u64,
}

/// Reusable buffers of one forward and backward pass (explicit scratch space: a training loop
/// keeps one and hands it back each step, so no step allocates).
#[derive(Debug, Clone, Default)]
pub struct Workspace<T> {
    /// a_1 … a_{L−1} (index l; a_0 is the batch), then z at index L.
    pub(super) a: Vec<Vec<T>>,
    /// σ′(h_l), σ″(h_l) (index l).
    pub(super) s1: Vec<Vec<T>>,
    pub(super) s2: Vec<Vec<T>>,
    /// e_l = δ_{l+1} W_{l+1} for hidden layers (index l).
    pub(super) e: Vec<Vec<T>>,
    /// δ_1 … δ_L (index l − 1).
    pub(super) delta: Vec<Vec<T>>,
    /// softmax(z) for labels.
    pub(super) p: Vec<T>,
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
    pub(super) fn shape(&mut self, m: &Mlp, n: usize, second_order: bool) {
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
                resize(
                    &mut self.s2[l],
                    if second_order { n * m.widths[l] } else { 0 },
                );
            }
        }
        resize(&mut self.p, n * m.widths[l_n]);
        resize(&mut self.grad, m.num_params());
    }
}

/// (σ, σ′, σ″) of the kernel's activations.
#[inline(always)]
pub(super) fn act_eval<T: Real>(act: ActKind, h: T) -> (T, T, T) {
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

/// The checks every network kernel makes before a pass: θ has `num_params` entries, the batch
/// has n ≥ 1 rows of `dims.0` inputs (`inputs` says what a row is), labels are below the
/// `dims.1` outputs and value targets are n × outputs. Errors name the input and the fix.
pub(crate) fn check_params_and_batch<T: Real>(
    model: &str,
    num_params: usize,
    dims: (usize, usize),
    inputs: &str,
    theta: &[T],
    b: Batch<T>,
) -> Result<(), NnError> {
    let (d0, c) = dims;
    if theta.len() != num_params {
        return Err(NnError::Invalid {
            what: format!("{} parameters", theta.len()),
            fix: format!("this {model} has {num_params}"),
        });
    }
    if b.is_empty() || b.x.len() != b.len() * d0 {
        return Err(NnError::Invalid {
            what: format!("batch of {} input numbers for {} rows", b.x.len(), b.len()),
            fix: format!("give n × {d0} {inputs}"),
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
pub(super) fn loss_sum<T: Real>(z: &[T], y: Targets<T>, c: usize) -> (f64, usize) {
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
            loss = 0.5
                * z.iter()
                    .zip(t)
                    .map(|(z, y)| (z.to_f64() - y.to_f64()).powi(2))
                    .sum::<f64>()
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
        let mut layout = Layout::default();
        for (i, w) in widths.windows(2).enumerate() {
            layout.push(format!("l{}.w", i + 1), &[w[1], w[0]]);
            layout.push(format!("l{}.b", i + 1), &[w[1]]);
        }
        Ok(Mlp {
            widths,
            act,
            linear_layer: None,
            threads: 1,
            layout,
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
        self.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self
    }

    pub(super) fn par(&self) -> Par {
        if self.threads > 1 {
            Par::rayon(self.threads)
        } else {
            Par::Seq
        }
    }

    /// The activation of hidden layer l.
    #[inline(always)]
    pub(super) fn act_of(&self, l: usize) -> ActKind {
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
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Ranges of (W_l, b_l) in the flat buffer, l = 1..L.
    pub(super) fn ranges(&self) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let lay = &self.layout;
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
        check_params_and_batch(
            "MLP",
            self.num_params(),
            (self.widths[0], self.widths[self.layers()]),
            "inputs for n ≥ 1 rows of targets",
            theta,
            b,
        )
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
            Point::compute(self, theta, batch, ws, second_order, None)
        }))
    }

    /// [`Mlp::at`] with dropout masks on every hidden layer (a training step of the dropout
    /// network; the loss, gradient and R-operator are those of the masked network, so the
    /// gradient can be checked against differences at fixed masks).
    pub fn at_dropout<'a, T: Real>(
        &'a self,
        theta: &'a [T],
        batch: Batch<'a, T>,
        dropout: Dropout,
    ) -> Result<Point<'a, T>, NnError> {
        self.check(theta, batch)?;
        if !(0.0..1.0).contains(&dropout.p) {
            return Err(NnError::Invalid {
                what: format!("dropout probability {}", dropout.p),
                fix: "give p in [0, 1)".into(),
            });
        }
        Ok(with_isa(Isa::best(), || {
            Point::compute(
                self,
                theta,
                batch,
                Workspace::default(),
                true,
                Some(dropout),
            )
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
            Targets::Labels(_) | Targets::OneHot(_) => (sum / n as f64, correct as f64 / n as f64),
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

    /// Outputs z and the input-space vector-Jacobian products J_bᵀ v_b (n × widths[0]) for
    /// logit seeds v = `seeds(z)` (n × widths[L]) chosen from this pass's outputs: one forward
    /// pass keeping σ′(h_l), then δ_L = v, δ_{l−1} = σ′(h_{l−1}) ⊙ (δ_l W_l), J_bᵀv_b = δ₁W₁ —
    /// the input rows of [`Point::input_grad`] without the parameter gradient (half the GEMMs;
    /// an attack's inner loop, [`crate::attack`]).
    pub fn logits_and_vjp<T: Real>(
        &self,
        theta: &[T],
        x: &[T],
        seeds: impl FnOnce(&[T]) -> Vec<T>,
    ) -> Result<(Vec<T>, Vec<T>), NnError> {
        let n = self.probe(theta, x)?;
        let w = &self.widths;
        let l_n = self.layers();
        let par = self.par();
        let ranges = self.ranges();
        let mut s1: Vec<Vec<T>> = Vec::with_capacity(l_n);
        let mut cur: Vec<T> = x.to_vec();
        for (l, (rw, rb)) in ranges.iter().enumerate() {
            let mut h = vec![T::ZERO; n * w[l + 1]];
            gemm(
                rm_mut(&mut h, n, w[l + 1]),
                Accum::Replace,
                rm(&cur, n, w[l]),
                rm(&theta[rw.clone()], w[l + 1], w[l]).transpose(),
                par,
            );
            let bias = &theta[rb.clone()];
            let hidden = l + 1 < l_n;
            let act = self.act_of(l + 1);
            let mut d1 = vec![T::ZERO; if hidden { n * w[l + 1] } else { 0 }];
            for (k, row) in h.chunks_exact_mut(w[l + 1]).enumerate() {
                for (j, (v, &b)) in row.iter_mut().zip(bias).enumerate() {
                    *v += b;
                    if hidden {
                        let (f, f1, _) = act_eval(act, *v);
                        *v = f;
                        d1[k * w[l + 1] + j] = f1;
                    }
                }
            }
            s1.push(d1);
            cur = h;
        }
        let z = cur;
        let v = seeds(&z);
        if v.len() != n * w[l_n] {
            return Err(NnError::Invalid {
                what: format!("{} seeds for {n} outputs", v.len()),
                fix: format!("give n × {} seeds", w[l_n]),
            });
        }
        let mut delta = v;
        for l in (1..=l_n).rev() {
            let mut e = vec![T::ZERO; n * w[l - 1]];
            gemm(
                rm_mut(&mut e, n, w[l - 1]),
                Accum::Replace,
                rm(&delta, n, w[l]),
                rm(&theta[ranges[l - 1].0.clone()], w[l], w[l - 1]),
                par,
            );
            if l > 1 {
                e.iter_mut().zip(&s1[l - 2]).for_each(|(e, &s)| *e *= s);
            }
            delta = e;
        }
        Ok((z, delta))
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
