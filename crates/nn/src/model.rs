//! Models on candle: an MLP of any widths and a LeNet-like CNN, with explicit parameters so that
//! initialisation, NTK learning-rate scaling and (later) second-order tools see every tensor.
//!
//! Every model is a [`Model`]: a forward pass plus a list of named parameters, each tagged with
//! its kind (weight with its fan-in, or bias). The parameters are candle `Var`s; a functional
//! forward ([`Mlp::forward_with`]) takes an explicit parameter list, which is what
//! finite-difference Hessian-vector products and per-example gradients need (candle has no
//! double backward; docs/derivations/hessian.md#hvp-without-double-backward).

use crate::NnError;
use candle_core::{DType, Device, Tensor, Var};
use dlt_theory::criticality::{criticality, Class};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Activations with a differentiable candle implementation (names shared with `dlt-theory`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ActKind {
    /// σ(z) = z.
    Linear,
    /// σ(z) = max(0, z).
    Relu,
    /// σ(z) = z for z > 0, a·z otherwise, with slope a.
    LeakyRelu(f64),
    /// σ(z) = tanh z.
    Tanh,
    /// σ(z) = sin z.
    Sin,
    /// σ(z) = erf z.
    Erf,
    /// GELU with the exact normal CDF, z·Φ(z).
    Gelu,
    /// GELU with the tanh approximation of Φ.
    GeluTanh,
    /// SiLU / swish, z·sigmoid(z).
    Silu,
    /// σ(z) = 1/(1 + e^{−z}).
    Sigmoid,
}

impl ActKind {
    /// The accepted names, for error messages and `--help`.
    pub const KNOWN: &'static str =
        "linear, relu, leaky_relu:A, tanh, sin, erf, gelu, gelu_tanh, silu|swish, sigmoid";

    /// Parse an activation name such as `tanh` or `leaky_relu:0.1`.
    pub fn parse(s: &str) -> Result<Self, NnError> {
        let bad = || NnError::Invalid {
            what: format!("activation '{s}'"),
            fix: format!("use one of: {}", Self::KNOWN),
        };
        Ok(match s {
            "linear" => Self::Linear,
            "relu" => Self::Relu,
            "tanh" => Self::Tanh,
            "sin" => Self::Sin,
            "erf" => Self::Erf,
            "gelu" => Self::Gelu,
            "gelu_tanh" => Self::GeluTanh,
            "silu" | "swish" => Self::Silu,
            "sigmoid" => Self::Sigmoid,
            _ => match s.strip_prefix("leaky_relu:") {
                Some(a) => Self::LeakyRelu(a.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            },
        })
    }
    /// The same function in `dlt-theory` (its Gaussian expectations, recursions and
    /// criticality), built directly rather than through its name.
    pub fn theory(&self) -> dlt_theory::activation::Act {
        use dlt_theory::activation as th;
        match *self {
            Self::Linear => std::sync::Arc::new(th::Linear),
            Self::Relu => std::sync::Arc::new(th::ScaleInvariant {
                a_plus: 1.0,
                a_minus: 0.0,
            }),
            Self::LeakyRelu(a) => std::sync::Arc::new(th::ScaleInvariant {
                a_plus: 1.0,
                a_minus: a,
            }),
            Self::Tanh => std::sync::Arc::new(th::Tanh),
            Self::Sin => std::sync::Arc::new(th::Sin),
            Self::Erf => std::sync::Arc::new(th::Erf),
            Self::Gelu => std::sync::Arc::new(th::Gelu),
            Self::GeluTanh => std::sync::Arc::new(th::GeluTanh),
            Self::Silu => std::sync::Arc::new(th::Silu),
            Self::Sigmoid => std::sync::Arc::new(th::Sigmoid),
        }
    }
    /// The name [`ActKind::parse`] reads (as in `--model mlp:…:NAME`).
    pub fn name(&self) -> String {
        match self {
            Self::LeakyRelu(a) => format!("leaky_relu:{a}"),
            _ => self.theory().name(),
        }
    }
    /// σ applied elementwise to `t`.
    pub fn apply(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Linear => Ok(t.clone()),
            Self::Relu => t.relu(),
            Self::LeakyRelu(a) => t.relu()? - (t.neg()?.relu()? * *a)?,
            Self::Tanh => t.tanh(),
            Self::Sin => t.sin(),
            Self::Erf => t.erf(),
            Self::Gelu => t.gelu_erf(),
            Self::GeluTanh => t.gelu(),
            Self::Silu => t.silu(),
            Self::Sigmoid => candle_nn::ops::sigmoid(t),
        }
    }
}

/// Weight initialisation (PDLT conventions: Var W = C_W/fan_in, Var b = C_b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// W_ij ~ N(0, C_W/fan_in), b_i ~ N(0, C_b), i.i.d.
    Gaussian {
        /// Bias variance C_b.
        cb: f64,
        /// Weight variance C_W (per fan-in).
        cw: f64,
    },
    /// W = √(C_W·max(1, fan_out/fan_in))·Q with Q Haar (orthonormal rows or columns, QR with
    /// sign fix), so E[W_ij²] = C_W/fan_in as for Gaussian weights; b ~ N(0, C_b).
    Orthogonal {
        /// Bias variance C_b.
        cb: f64,
        /// Weight variance C_W (per fan-in).
        cw: f64,
    },
}

impl Init {
    /// Parse `gaussian`, `orthogonal` or `critical` (Gaussian at the activation's critical point,
    /// from `dlt theory criticality`); `cb`/`cw` override.
    pub fn parse(s: &str, act: ActKind, cb: Option<f64>, cw: Option<f64>) -> Result<Self, NnError> {
        let crit = || -> Result<(f64, f64), NnError> {
            let c = criticality(&*act.theory());
            match (c.class, c.cb, c.cw) {
                (Class::None, _, _) | (_, None, _) | (_, _, None) => Err(NnError::Invalid {
                    what: format!(
                        "--init critical: {} has no critical initialisation",
                        act.name()
                    ),
                    fix: "pass --cb and --cw, or choose tanh, relu, gelu, silu …".into(),
                }),
                (_, Some(b), Some(w)) => Ok((b, w)),
            }
        };
        let (b0, w0) = match act {
            ActKind::Relu => (0.0, 2.0),
            _ => crit().unwrap_or((0.0, 1.0)),
        };
        let (cb, cw) = (cb.unwrap_or(b0), cw.unwrap_or(w0));
        if !(cb >= 0.0 && cw > 0.0 && cb.is_finite() && cw.is_finite()) {
            return Err(NnError::Invalid {
                what: format!("--cb {cb} / --cw {cw}"),
                fix: "C_b ≥ 0 and C_W > 0".into(),
            });
        }
        match s {
            "gaussian" => Ok(Init::Gaussian { cb, cw }),
            "orthogonal" => Ok(Init::Orthogonal { cb, cw }),
            "critical" => {
                let (b, w) = crit()?;
                Ok(Init::Gaussian { cb: b, cw: w })
            }
            _ => Err(NnError::Invalid {
                what: format!("--init {s}"),
                fix: "use gaussian, orthogonal or critical".into(),
            }),
        }
    }
}

/// Draw a (fan_out × fan_in) weight matrix (row-major) and a bias vector.
pub fn draw_layer(
    init: &Init,
    fan_out: usize,
    fan_in: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> (Vec<f64>, Vec<f64>) {
    let normals = |k: usize, rng: &mut Xoshiro256PlusPlus| {
        (0..k)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect::<Vec<f64>>()
    };
    match *init {
        Init::Gaussian { cb, cw } => {
            let sw = (cw / fan_in as f64).sqrt();
            let w = normals(fan_out * fan_in, rng)
                .into_iter()
                .map(|v| sw * v)
                .collect();
            let b = normals(fan_out, rng)
                .into_iter()
                .map(|v| cb.sqrt() * v)
                .collect();
            (w, b)
        }
        Init::Orthogonal { cb, cw } => {
            // QR of a tall Gaussian (rows = max, cols = min) gives Haar orthonormal columns.
            let (tall, short) = (fan_out.max(fan_in), fan_out.min(fan_in));
            let g =
                faer::Mat::<f64>::from_fn(tall, short, |_, _| rng.sample::<f64, _>(StandardNormal));
            let qr = g.qr();
            let q = qr.compute_thin_Q();
            let r = qr.thin_R();
            let scale = (cw * (fan_out as f64 / fan_in as f64).max(1.0)).sqrt();
            let mut w = vec![0.0; fan_out * fan_in];
            for i in 0..tall {
                for j in 0..short {
                    let v = scale * q[(i, j)] * if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
                    if fan_out >= fan_in {
                        w[i * fan_in + j] = v;
                    } else {
                        w[j * fan_in + i] = v;
                    }
                }
            }
            let b = normals(fan_out, rng)
                .into_iter()
                .map(|v| cb.sqrt() * v)
                .collect();
            (w, b)
        }
    }
}

/// Kind of a parameter, for NTK learning-rate scaling (λ_W/fan_in for weights, λ_b for biases).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// A weight matrix (or convolution kernel).
    Weight {
        /// Inputs per output unit (in · kernel area for a convolution).
        fan_in: usize,
    },
    /// A bias vector.
    Bias,
}

/// A named parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Name such as `l1.w` or `c2.b`.
    pub name: String,
    /// The candle variable holding the values.
    pub var: Var,
    /// Weight or bias, for learning-rate scaling.
    pub kind: ParamKind,
    /// 1-based layer index (for layer-dependent learning rates such as λ_b/l).
    pub layer: usize,
}

/// A trainable model.
pub trait Model {
    /// Outputs (batch × classes) for inputs (batch × input dim).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
    /// Every trainable parameter, in layer order (weight then bias).
    fn params(&self) -> &[Param];
    /// A short description such as `mlp:784-100-10:relu`.
    fn describe(&self) -> String;
    /// Flattened input dimension n₀.
    fn input_dim(&self) -> usize;
    /// The model as an MLP, for the trainer's hand-written fast path.
    fn as_mlp(&self) -> Option<&Mlp> {
        None
    }
}

/// Multilayer perceptron: z^(1) = W^(1)x + b^(1), z^(l+1) = W^(l+1)σ(z^(l)) + b^(l+1); the output
/// is the last preactivation z^(L) (PDLT §2.1). Parameters: `l{i}.w` (out × in), `l{i}.b`.
pub struct Mlp {
    /// Layer widths n₀ (input), n₁, …, n_L (output).
    pub widths: Vec<usize>,
    /// Activation σ of the hidden layers.
    pub act: ActKind,
    params: Vec<Param>,
}

fn var(data: Vec<f64>, shape: &[usize], dtype: DType, dev: &Device) -> candle_core::Result<Var> {
    Var::from_tensor(&Tensor::from_vec(data, shape, dev)?.to_dtype(dtype)?)
}

impl Mlp {
    /// Build with `init` for every layer (the last layer too), seeded.
    pub fn new(
        widths: &[usize],
        act: ActKind,
        init: &Init,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self, NnError> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(NnError::Invalid {
                what: format!("MLP widths {widths:?}"),
                fix:
                    "give at least an input and an output width, all > 0, e.g. mlp:784-512-10:tanh"
                        .into(),
            });
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut params = vec![];
        for (i, w) in widths.windows(2).enumerate() {
            let (wv, bv) = draw_layer(init, w[1], w[0], &mut rng);
            params.push(Param {
                name: format!("l{}.w", i + 1),
                var: var(wv, &[w[1], w[0]], dtype, dev)?,
                kind: ParamKind::Weight { fan_in: w[0] },
                layer: i + 1,
            });
            params.push(Param {
                name: format!("l{}.b", i + 1),
                var: var(bv, &[w[1]], dtype, dev)?,
                kind: ParamKind::Bias,
                layer: i + 1,
            });
        }
        Ok(Self {
            widths: widths.to_vec(),
            act,
            params,
        })
    }

    /// Forward with an explicit parameter list [w1, b1, w2, b2, …] (same shapes as `params`).
    pub fn forward_with(&self, params: &[Tensor], x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        let n = params.len() / 2;
        for i in 0..n {
            if i > 0 {
                h = self.act.apply(&h)?;
            }
            h = h
                .matmul(&params[2 * i].t()?)?
                .broadcast_add(&params[2 * i + 1])?;
        }
        Ok(h)
    }

    /// All preactivations z^(1..L) for inputs x (batch × n₀).
    pub fn preactivations(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let mut out = vec![];
        let mut h = x.clone();
        for (i, pair) in self.params.chunks(2).enumerate() {
            if i > 0 {
                h = self.act.apply(&h)?;
            }
            h = h
                .matmul(&pair[0].var.as_tensor().t()?)?
                .broadcast_add(pair[1].var.as_tensor())?;
            out.push(h.clone());
        }
        Ok(out)
    }
}

impl Model for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let ps: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.var.as_tensor().clone())
            .collect();
        self.forward_with(&ps, x)
    }
    fn params(&self) -> &[Param] {
        &self.params
    }
    fn describe(&self) -> String {
        format!(
            "mlp:{}:{}",
            self.widths
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("-"),
            self.act.name()
        )
    }
    fn input_dim(&self) -> usize {
        self.widths[0]
    }
    fn as_mlp(&self) -> Option<&Mlp> {
        Some(self)
    }
}

/// LeNet-5-like CNN for 28×28 single-channel images: conv 5×5 (6, pad 2) → σ → avg-pool 2 →
/// conv 5×5 (16) → σ → avg-pool 2 → 400 → 120 → 84 → classes.
pub struct LeNet {
    /// Activation σ after each convolution and hidden dense layer.
    pub act: ActKind,
    params: Vec<Param>,
    classes: usize,
}

impl LeNet {
    /// Build for `classes` outputs with `init` for every layer, seeded.
    pub fn new(
        classes: usize,
        act: ActKind,
        init: &Init,
        seed: u64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self, NnError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut params = vec![];
        for (layer, (name, shape)) in [("c1", [6usize, 1, 5, 5]), ("c2", [16, 6, 5, 5])]
            .into_iter()
            .enumerate()
        {
            let fan_in = shape[1] * 25;
            let (w, b) = draw_layer(init, shape[0], fan_in, &mut rng);
            params.push(Param {
                name: format!("{name}.w"),
                var: var(w, &shape, dtype, dev)?,
                kind: ParamKind::Weight { fan_in },
                layer: layer + 1,
            });
            params.push(Param {
                name: format!("{name}.b"),
                var: var(b, &[shape[0]], dtype, dev)?,
                kind: ParamKind::Bias,
                layer: layer + 1,
            });
        }
        for (layer, (name, (o, i))) in
            [("f1", (120, 400)), ("f2", (84, 120)), ("f3", (classes, 84))]
                .into_iter()
                .enumerate()
        {
            let (w, b) = draw_layer(init, o, i, &mut rng);
            params.push(Param {
                name: format!("{name}.w"),
                var: var(w, &[o, i], dtype, dev)?,
                kind: ParamKind::Weight { fan_in: i },
                layer: layer + 3,
            });
            params.push(Param {
                name: format!("{name}.b"),
                var: var(b, &[o], dtype, dev)?,
                kind: ParamKind::Bias,
                layer: layer + 3,
            });
        }
        Ok(Self {
            act,
            params,
            classes,
        })
    }
}

impl Model for LeNet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let p = |i: usize| self.params[i].var.as_tensor();
        let b = x.dim(0)?;
        let mut h = x.reshape((b, 1, 28, 28))?;
        h = h
            .conv2d(p(0), 2, 1, 1, 1)?
            .broadcast_add(&p(1).reshape((1, 6, 1, 1))?)?;
        h = self.act.apply(&h)?.avg_pool2d(2)?;
        h = h
            .conv2d(p(2), 0, 1, 1, 1)?
            .broadcast_add(&p(3).reshape((1, 16, 1, 1))?)?;
        h = self.act.apply(&h)?.avg_pool2d(2)?.flatten_from(1)?;
        h = h.matmul(&p(4).t()?)?.broadcast_add(p(5))?;
        h = self
            .act
            .apply(&h)?
            .matmul(&p(6).t()?)?
            .broadcast_add(p(7))?;
        self.act.apply(&h)?.matmul(&p(8).t()?)?.broadcast_add(p(9))
    }
    fn params(&self) -> &[Param] {
        &self.params
    }
    fn describe(&self) -> String {
        format!("cnn:lenet:{}:{}", self.act.name(), self.classes)
    }
    fn input_dim(&self) -> usize {
        784
    }
}

/// Parse a model spec: `mlp:784-512-512-10:tanh` or `cnn:lenet[:act]`.
pub fn build(
    spec: &str,
    init_name: &str,
    cb: Option<f64>,
    cw: Option<f64>,
    seed: u64,
    dtype: DType,
    dev: &Device,
) -> Result<Box<dyn Model>, NnError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = || NnError::Invalid {
        what: format!("--model {spec}"),
        fix: "use mlp:784-512-512-10:tanh or cnn:lenet[:relu]".into(),
    };
    match parts.as_slice() {
        ["mlp", widths, act] => {
            let widths: Vec<usize> = widths
                .split('-')
                .map(|w| w.parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            let act = ActKind::parse(act)?;
            let init = Init::parse(init_name, act, cb, cw)?;
            Ok(Box::new(Mlp::new(&widths, act, &init, seed, dtype, dev)?))
        }
        ["cnn", "lenet"] | ["cnn", "lenet", _] => {
            let act = ActKind::parse(parts.get(2).copied().unwrap_or("relu"))?;
            let init = Init::parse(init_name, act, cb, cw)?;
            Ok(Box::new(LeNet::new(10, act, &init, seed, dtype, dev)?))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_layers_are_orthogonal_with_the_right_variance() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for (o, i) in [(8usize, 8usize), (5, 12), (12, 5)] {
            let (w, _) = draw_layer(&Init::Orthogonal { cb: 0.0, cw: 2.0 }, o, i, &mut rng);
            // Gram of the shorter side is (C_W·max(1, o/i))·I.
            let scale = 2.0 * (o as f64 / i as f64).max(1.0);
            let short = o.min(i);
            for a in 0..short {
                for b in 0..short {
                    let dot: f64 = if o <= i {
                        (0..i).map(|k| w[a * i + k] * w[b * i + k]).sum()
                    } else {
                        (0..o).map(|k| w[k * i + a] * w[k * i + b]).sum()
                    };
                    let want = if a == b { scale } else { 0.0 };
                    assert!((dot - want).abs() < 1e-12, "{o}x{i}: {dot} vs {want}");
                }
            }
            let mean_sq = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
            assert!(
                (mean_sq - 2.0 / i as f64).abs() < 1e-12,
                "E[W²] = C_W/fan_in"
            );
        }
    }

    #[test]
    fn mlp_and_lenet_shapes() {
        let dev = Device::Cpu;
        let m = build(
            "mlp:6-5-3:tanh",
            "orthogonal",
            None,
            None,
            1,
            DType::F32,
            &dev,
        )
        .unwrap();
        let x = Tensor::zeros((4, 6), DType::F32, &dev).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), &[4, 3]);
        let c = build("cnn:lenet", "gaussian", None, None, 1, DType::F32, &dev).unwrap();
        let x = Tensor::zeros((2, 784), DType::F32, &dev).unwrap();
        assert_eq!(c.forward(&x).unwrap().dims(), &[2, 10]);
        assert!(build("mlp:6:tanh", "gaussian", None, None, 1, DType::F32, &dev).is_err());
        assert!(build("mlp:6-3:tahn", "gaussian", None, None, 1, DType::F32, &dev).is_err());
        assert!(build(
            "mlp:6-3:sigmoid",
            "critical",
            None,
            None,
            1,
            DType::F32,
            &dev
        )
        .is_err());
    }
}
