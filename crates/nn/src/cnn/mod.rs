//! The CNN kernel: a small LeNet-like convolutional network over a flat parameter buffer,
//! written by hand like the MLP kernel ([`crate::mlp`]) so that it has exact second-order
//! products: forward pass, loss gradient, Pearlmutter's R-operator (exact Hessian-vector
//! products and input-space tangents, which give the Jacobian penalty's parameter gradient).
//! Generic over f32 and f64 ([`Real`]); the Hessian and Jacobian studies use f64.
//!
//! Why by hand: candle (the reference [`crate::model::LeNet`]) has no forward mode and no
//! double backward, so neither H v nor ∇_θ|J|² can be taken through it.
//!
//! Model (LeCun et al. 1998, LeNet-5, with average pooling; sizes are a [`Cnn`] config):
//! images are stored channels-last (row-major H × W × C per example). A stack of layers
//!   conv   y[i,j,o] = b_o + Σ_{a,b,c} W[o,a,b,c] x[i+a−p, j+b−p, c]   (stride 1, zero pad p),
//!   act    y = σ(x)  (tanh, relu or linear),
//!   pool   y[i,j,c] = ¼ Σ_{a,b ∈ {0,1}} x[2i+a, 2j+b, c]   (2 × 2 average),
//!   dense  y = x Wᵀ + b  (the flattened H × W × C input),
//! with `conv → act → pool` per convolution, then dense layers with σ between them and linear
//! logits z. A convolution is a GEMM on the im2col matrix X̂ (one row per output pixel, one
//! column per (a, b, c)): Y = X̂ Wᵀ + b, ∂W = ∂Yᵀ X̂, ∂X = col2im(∂Y W) (col2im adds each
//! column back to the pixel it was read from — the adjoint of im2col).
//! Loss: mean softmax cross-entropy, mean ½|z − y|² or the seeded sum φ = Σ_b v_b·z_b, as
//! the MLP ([`Targets`]); δ_L = ∂loss/∂z.
//!
//! Backward (g_i = ∂loss/∂(input of layer i)): linear layers (conv, dense, pool) pass
//! g_i = Aᵀ g_{i+1} with A the layer's linear map in its input; σ passes σ′(x) ⊙ g_{i+1}.
//!
//! R-operator along a parameter tangent v = (V, c) and an input tangent u (Pearlmutter,
//! Neural Computation 6 (1994) 147, "Fast exact multiplication by the Hessian"; Schraudolph
//! 2002), R{f} = ∂/∂r f(θ + r v, x + r u) at r = 0 — every layer is bilinear in (input,
//! weights) or element-wise, so
//!   forward   conv/dense  R{y} = A_W R{x} + A_V x + c,   σ  R{y} = σ′ ⊙ R{x},
//!             pool        R{y} = P R{x},                 R{x₀} = u;
//!   output    R{δ_L} = (p ⊙ R{z} − p (pᵀR{z}))/B (cross-entropy, p = softmax z), R{z}/B
//!             (squared error), 0 (φ is linear in z);
//!   backward  conv/dense  R{g_i} = A_Wᵀ R{g_{i+1}} + A_Vᵀ g_{i+1},
//!             σ           R{g_i} = σ″ ⊙ R{x} ⊙ g_{i+1} + σ′ ⊙ R{g_{i+1}},
//!             pool        R{g_i} = Pᵀ R{g_{i+1}};
//!   products  (Hv)_W = R{g_{i+1}}ᵀ X̂ + g_{i+1}ᵀ R{X̂}  (X̂ = x for dense, im2col for conv),
//!             (Hv)_b = Σ_pixels,rows R{g_{i+1}}.
//! With v = 0 and u_b = J_bᵀ v_b (seeded φ) the products are ½ ∇_θ Σ_b |J_bᵀ v_b|², the
//! Jacobian penalty's gradient (docs/derivations/jacobian.md#penalty-gradient), exactly as
//! the MLP's [`crate::mlp::Point::input_tangent_grad`]. ReLU's σ″ is 0.

mod ops;
mod point;
#[cfg(test)]
mod tests;

pub use point::CnnPoint;

use crate::layout::Layout;
use crate::mlp::{act_eval, loss_sum, Batch, Targets};
use crate::model::ActKind;
use crate::real::Real;
use crate::NnError;
use ops::{Conv, Dense, Pool};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// One convolution: `channels` output channels, a `kernel` × `kernel` filter, zero padding
/// `pad` (stride 1); it is followed by σ and a 2 × 2 average pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConvSpec {
    /// Output channels.
    pub channels: usize,
    /// Filter side k.
    pub kernel: usize,
    /// Zero padding on each side.
    pub pad: usize,
}

/// One layer of the stack (with its geometry and, for conv/dense, the index of its weight in
/// the layout; the bias is the next entry).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layer {
    Conv(Conv, usize),
    Act,
    Pool(Pool),
    Dense(Dense, usize),
}

/// A LeNet-like CNN: convolutions (each → σ → 2 × 2 average pool) then dense layers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cnn {
    /// Input height, width and channels.
    pub input: [usize; 3],
    /// The convolutions, in order.
    pub convs: Vec<ConvSpec>,
    /// Widths of the dense layers after the flattened last pooling: hidden widths, then the
    /// number of outputs (classes).
    pub dense: Vec<usize>,
    /// σ after every convolution and hidden dense layer: relu, tanh or linear.
    pub act: ActKind,
    #[serde(skip)]
    layers: Vec<Layer>,
    /// Numbers per example of the input of layer i (i = 0..layers), then of the output.
    #[serde(skip)]
    sizes: Vec<usize>,
    #[serde(skip)]
    layout: Layout,
}

impl Cnn {
    /// A CNN on `input` = [height, width, channels] images. Errors name the layer whose
    /// geometry does not fit (a pooling needs an even side, a convolution a kernel no larger
    /// than its padded input).
    pub fn new(
        input: [usize; 3],
        convs: Vec<ConvSpec>,
        dense: Vec<usize>,
        act: ActKind,
    ) -> Result<Self, NnError> {
        let bad = |what: String, fix: &str| NnError::Invalid {
            what,
            fix: fix.into(),
        };
        if input.contains(&0) {
            return Err(bad(
                format!("CNN input {input:?}"),
                "give a positive height, width and channel count",
            ));
        }
        if dense.is_empty() || dense.contains(&0) {
            return Err(bad(
                format!("CNN dense widths {dense:?}"),
                "give at least the number of outputs, all positive",
            ));
        }
        if !crate::mlp::Mlp::supports(act) {
            return Err(bad(
                format!("activation {act:?} for the CNN kernel"),
                "use relu, tanh or linear",
            ));
        }
        let (mut layers, mut layout) = (vec![], Layout::default());
        let [mut h, mut w, mut c] = input;
        let mut sizes = vec![h * w * c];
        for (i, s) in convs.iter().enumerate() {
            if s.channels == 0
                || s.kernel == 0
                || h + 2 * s.pad < s.kernel
                || w + 2 * s.pad < s.kernel
            {
                return Err(bad(
                    format!(
                        "convolution {} ({}×{} kernel, pad {}, {} channels) on a {h}×{w} input",
                        i + 1,
                        s.kernel,
                        s.kernel,
                        s.pad,
                        s.channels
                    ),
                    "use positive channels and a kernel no larger than the padded input",
                ));
            }
            let conv = Conv::new(h, w, c, s.channels, s.kernel, s.pad);
            layout.push(
                format!("c{}.w", i + 1),
                &[s.channels, s.kernel, s.kernel, c],
            );
            layout.push(format!("c{}.b", i + 1), &[s.channels]);
            layers.push(Layer::Conv(conv.clone(), layout.entries().len() - 2));
            (h, w, c) = (conv.ho, conv.wo, s.channels);
            sizes.push(h * w * c);
            layers.push(Layer::Act);
            sizes.push(h * w * c);
            if h % 2 != 0 || w % 2 != 0 {
                return Err(bad(
                    format!(
                        "2×2 pooling after convolution {} of a {h}×{w} feature map",
                        i + 1
                    ),
                    "choose kernel and padding so that each pooled side is even",
                ));
            }
            layers.push(Layer::Pool(Pool { h, w, c }));
            (h, w) = (h / 2, w / 2);
            sizes.push(h * w * c);
        }
        let mut d = h * w * c;
        for (i, &o) in dense.iter().enumerate() {
            layout.push(format!("f{}.w", i + 1), &[o, d]);
            layout.push(format!("f{}.b", i + 1), &[o]);
            layers.push(Layer::Dense(
                Dense { d_in: d, d_out: o },
                layout.entries().len() - 2,
            ));
            sizes.push(o);
            if i + 1 < dense.len() {
                layers.push(Layer::Act);
                sizes.push(o);
            }
            d = o;
        }
        Ok(Cnn {
            input,
            convs,
            dense,
            act,
            layers,
            sizes,
            layout,
        })
    }

    /// LeNet-5's shape on 28 × 28 grey images: conv 5×5 (c₁, pad 2) → σ → pool →
    /// conv 5×5 (c₂) → σ → pool → 25c₂ → 120 → 84 → classes; (c₁, c₂) = (6, 16) is LeNet-5
    /// ([`crate::model::LeNet`]), smaller channel counts a cheaper network of the same shape.
    pub fn lenet(
        channels: [usize; 2],
        hidden: &[usize],
        classes: usize,
        act: ActKind,
    ) -> Result<Self, NnError> {
        let mut dense = hidden.to_vec();
        dense.push(classes);
        Cnn::new(
            [28, 28, 1],
            vec![
                ConvSpec {
                    channels: channels[0],
                    kernel: 5,
                    pad: 2,
                },
                ConvSpec {
                    channels: channels[1],
                    kernel: 5,
                    pad: 0,
                },
            ],
            dense,
            act,
        )
    }

    /// A one-line description, e.g. `28x28x1 c5x5x6p2-pool c5x5x16-pool 120-84-10 tanh`.
    pub fn describe(&self) -> String {
        let [h, w, c] = self.input;
        let convs: Vec<String> = self
            .convs
            .iter()
            .map(|s| {
                let p = if s.pad > 0 {
                    format!("p{}", s.pad)
                } else {
                    String::new()
                };
                format!("c{k}x{k}x{}{p}-pool", s.channels, k = s.kernel)
            })
            .collect();
        let dense: Vec<String> = self.dense.iter().map(|d| d.to_string()).collect();
        format!(
            "{h}x{w}x{c} {} {} {}",
            convs.join(" "),
            dense.join("-"),
            self.act.name()
        )
    }

    /// Names, shapes and offsets of [c1.w (C_out × k × k × C_in), c1.b, …, f1.w, f1.b, …].
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layout.len()
    }

    /// Numbers per input example (H·W·C).
    pub fn input_len(&self) -> usize {
        self.sizes[0]
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        *self
            .dense
            .last()
            .expect("dense widths are checked non-empty")
    }

    /// Weights ~ N(0, 1/fan_in) (LeCun normal; fan_in = k²·C_in for a convolution), biases 0,
    /// seeded.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut theta = vec![0.0; self.num_params()];
        for e in self.layout.entries().iter().filter(|e| e.shape.len() > 1) {
            let fan_in: usize = e.shape[1..].iter().product();
            let s = 1.0 / (fan_in as f64).sqrt();
            for t in &mut theta[e.range()] {
                *t = s * rng.sample::<f64, _>(StandardNormal);
            }
        }
        theta
    }

    pub(crate) fn layers(&self) -> &[Layer] {
        &self.layers
    }

    fn check<T: Real>(&self, theta: &[T], b: Batch<T>) -> Result<(), NnError> {
        crate::mlp::check_params_and_batch(
            "CNN",
            self.num_params(),
            (self.input_len(), self.outputs()),
            "inputs (H × W × C per image) for n ≥ 1 rows",
            theta,
            b,
        )
    }

    /// The forward and backward pass at θ on a batch, kept for gradients and HVPs.
    pub fn at<'a, T: Real>(
        &'a self,
        theta: &'a [T],
        batch: Batch<'a, T>,
    ) -> Result<CnnPoint<'a, T>, NnError> {
        self.check(theta, batch)?;
        Ok(CnnPoint::compute(self, theta, batch))
    }

    /// (mean loss, accuracy) on a batch by a forward pass (accuracy NaN for real targets and
    /// seeds; the seeded loss is a sum), in chunks of 256 rows.
    pub fn evaluate<T: Real>(&self, theta: &[T], batch: Batch<T>) -> Result<(f64, f64), NnError> {
        self.check(theta, batch)?;
        let (n, d0, c) = (batch.len(), self.input_len(), self.outputs());
        let (mut sum, mut correct) = (0.0, 0usize);
        for s in (0..n).step_by(256) {
            let e = (s + 256).min(n);
            let z = self.forward(theta, &batch.x[s * d0..e * d0], e - s);
            let y = match batch.y {
                Targets::Labels(y) => Targets::Labels(&y[s..e]),
                Targets::OneHot(y) => Targets::OneHot(&y[s..e]),
                Targets::Values(t) => Targets::Values(&t[s * c..e * c]),
                Targets::Seeds(t) => Targets::Seeds(&t[s * c..e * c]),
            };
            let (l, k) = loss_sum(&z, y, c);
            sum += l;
            correct += k;
        }
        Ok(match batch.y {
            Targets::Labels(_) | Targets::OneHot(_) => (sum / n as f64, correct as f64 / n as f64),
            Targets::Values(_) => (sum / n as f64, f64::NAN),
            Targets::Seeds(_) => (sum, f64::NAN),
        })
    }

    /// Logits z (n × outputs) for inputs x (n × H·W·C).
    pub fn logits<T: Real>(&self, theta: &[T], x: &[T]) -> Result<Vec<T>, NnError> {
        let d0 = self.input_len();
        let n = x.len() / d0;
        let c = self.outputs();
        self.check(theta, Batch::values(x, &vec![T::ZERO; n * c], c))?;
        Ok(self.forward(theta, x, n))
    }

    /// z by a forward pass only.
    fn forward<T: Real>(&self, theta: &[T], x: &[T], n: usize) -> Vec<T> {
        let mut cur = x.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut out = vec![T::ZERO; n * self.sizes[i + 1]];
            match layer {
                Layer::Act => {
                    for (o, &h) in out.iter_mut().zip(&cur) {
                        *o = act_eval(self.act, h).0;
                    }
                }
                _ => self.linear(layer, theta, &cur, n, &mut out, true),
            }
            cur = out;
        }
        cur
    }

    /// out += A_θ x (+ bias when `bias`) for a conv, dense or pool layer.
    pub(crate) fn linear<T: Real>(
        &self,
        layer: &Layer,
        theta: &[T],
        x: &[T],
        n: usize,
        out: &mut [T],
        bias: bool,
    ) {
        let lay = &self.layout;
        match layer {
            Layer::Conv(cv, p) => {
                cv.forward(x, n, lay.slice(theta, *p), out);
                if bias {
                    ops::add_bias(out, lay.slice(theta, p + 1));
                }
            }
            Layer::Dense(d, p) => {
                d.forward(x, n, lay.slice(theta, *p), out);
                if bias {
                    ops::add_bias(out, lay.slice(theta, p + 1));
                }
            }
            Layer::Pool(pl) => pl.forward(x, n, out),
            Layer::Act => unreachable!("σ is not linear"),
        }
    }
}
