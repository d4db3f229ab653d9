//! Training: full-batch GD, SGD, SGD with momentum and Adam on MSE (one-hot targets for
//! classification) or cross-entropy; optional NTK learning-rate scaling (PDLT §7.1: the step of a
//! weight in layer l is η·λ_W/fan_in, of a bias η·λ_b); evaluation hooks; metrics streamed to
//! `metrics.csv` and `metrics.jsonl`; safetensors checkpoints with resume; divergence detection.
//!
//! Determinism: the example order of epoch e is a shuffle seeded by (seed, e), so a run resumed
//! from a checkpoint replays exactly the steps an uninterrupted run takes.

use crate::data::{Split, TrainTest};
use crate::model::{Model, ParamKind};
use crate::NnError;
use candle_core::{DType, Device, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::optim::Optimizer;

/// Training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// ½‖f(x) − y‖² averaged over the batch (y one-hot for classification).
    Mse,
    /// Softmax cross-entropy against the class label, averaged over the batch.
    CrossEntropy,
}

/// Hyperparameters of a training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Update rule (GD takes the full training set every step).
    pub optimizer: Optimizer,
    /// Loss function.
    pub loss: Loss,
    /// Global learning rate η.
    pub lr: f64,
    /// Mini-batch size (≥ 1; ignored by full-batch GD).
    pub batch: usize,
    /// Passes over the training set (one step per epoch for GD).
    pub epochs: usize,
    /// Stop after this many steps (overrides epochs when set).
    pub max_steps: Option<usize>,
    /// NTK scaling: per-parameter steps η·λ_b^(l) and η·λ_W^(l)/fan_in (PDLT §7.1).
    pub ntk_lr: Option<dlt_theory::LearningRates>,
    /// Seed of the example order (epoch e shuffles with a stream from (seed, e)).
    pub seed: u64,
    /// Evaluate on the test split every this many steps (and at the end); 0 = only at the end.
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (0 = only at the end) when `out` is set.
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            optimizer: Optimizer::Sgd,
            loss: Loss::CrossEntropy,
            lr: 0.05,
            batch: 128,
            epochs: 1,
            max_steps: None,
            ntk_lr: None,
            seed: 0,
            eval_every: 0,
            checkpoint_every: 0,
        }
    }
}

/// One metrics record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    /// Steps completed (the step just taken, 1-based).
    pub step: usize,
    /// Epoch of that step (0-based).
    pub epoch: usize,
    /// Loss of that step's mini-batch, before the update.
    pub train_loss: f64,
    /// Loss on the whole test split, when evaluated at this step.
    pub test_loss: Option<f64>,
    /// Test accuracy in [0, 1], when evaluated (classification only).
    pub test_accuracy: Option<f64>,
    /// Wall-clock seconds since this `run` call started.
    pub seconds: f64,
}

/// Final report (the keys `dlt train --json` prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// Test-set accuracy after the last step, in [0, 1] (NaN without a test split, or for
    /// regression targets).
    pub test_accuracy: f64,
    /// Loss on the whole test split after the last step (NaN without a test split).
    pub test_loss: f64,
    /// Loss on the whole training split after the last step.
    pub train_loss: f64,
    /// Steps completed, including those before a resume.
    pub steps: usize,
    /// Wall-clock seconds of this `run` call only: after a resume, the time spent before the
    /// checkpoint is not included (each metrics row's `seconds` counts the same way).
    pub seconds: f64,
    /// Every metrics record, in step order.
    pub metrics: Vec<Metric>,
}

/// Inputs of a split as a tensor (batch × dim).
pub fn inputs(s: &Split, idx: &[usize], dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
    let mut x = Vec::with_capacity(idx.len() * s.dim);
    for &i in idx {
        x.extend_from_slice(&s.x[i * s.dim..(i + 1) * s.dim]);
    }
    Tensor::from_vec(x, (idx.len(), s.dim), dev)?.to_dtype(dtype)
}

fn targets(
    s: &Split,
    idx: &[usize],
    loss: Loss,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    if !s.targets.is_empty() {
        let mut t = Vec::with_capacity(idx.len() * s.out);
        for &i in idx {
            t.extend_from_slice(&s.targets[i * s.out..(i + 1) * s.out]);
        }
        return Tensor::from_vec(t, (idx.len(), s.out), dev)?.to_dtype(dtype);
    }
    match loss {
        Loss::CrossEntropy => Tensor::from_vec(
            idx.iter().map(|&i| s.y[i]).collect::<Vec<u32>>(),
            idx.len(),
            dev,
        ),
        Loss::Mse => {
            let mut t = vec![0f32; idx.len() * s.classes];
            for (r, &i) in idx.iter().enumerate() {
                t[r * s.classes + s.y[i] as usize] = 1.0;
            }
            Tensor::from_vec(t, (idx.len(), s.classes), dev)?.to_dtype(dtype)
        }
    }
}

/// Mean loss of outputs against targets.
pub fn loss_of(out: &Tensor, tgt: &Tensor, loss: Loss) -> candle_core::Result<Tensor> {
    match loss {
        Loss::CrossEntropy => candle_nn::loss::cross_entropy(out, tgt),
        Loss::Mse => ((out - tgt)?.sqr()?.sum(D::Minus1)? * 0.5)?.mean_all(),
    }
}

/// Loss and accuracy (classification) on a whole split, in batches.
pub fn evaluate(
    model: &dyn Model,
    s: &Split,
    loss: Loss,
    dtype: DType,
    dev: &Device,
) -> Result<(f64, Option<f64>), NnError> {
    let n = s.len();
    let (mut total, mut correct) = (0.0f64, 0usize);
    for start in (0..n).step_by(1024) {
        let idx: Vec<usize> = (start..(start + 1024).min(n)).collect();
        let x = inputs(s, &idx, dtype, dev)?;
        let out = model.forward(&x)?;
        let l = loss_of(&out, &targets(s, &idx, loss, dtype, dev)?, loss)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        total += l * idx.len() as f64;
        if s.targets.is_empty() {
            let pred = out.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += pred
                .iter()
                .zip(&idx)
                .filter(|(p, &i)| **p == s.y[i])
                .count();
        }
    }
    Ok((
        total / n as f64,
        s.targets.is_empty().then(|| correct as f64 / n as f64),
    ))
}

/// The MLP kernel's copy of a model under training: flat parameters (newer than the candle
/// variables while `Trainer::stale`), optimizer moments, buffers and per-parameter step sizes.
struct KernelRun {
    net: crate::mlp::Mlp,
    theta: Vec<f32>,
    opt: crate::optim::State<f32>,
    ws: crate::mlp::Workspace<f32>,
    lr: Vec<f64>,
}

/// Optimizer state for one parameter.
struct State {
    m: Option<Tensor>,
    v: Option<Tensor>,
}

/// The header line of `metrics.csv`.
const METRICS_CSV_HEADER: &str = "step,epoch,train_loss,test_loss,test_accuracy,seconds\n";

/// Where to stream metrics and checkpoints.
pub struct RunDir {
    /// Directory receiving `metrics.csv`, `metrics.jsonl` and `checkpoint.safetensors`.
    pub dir: PathBuf,
}

impl RunDir {
    /// Drop the rows of `metrics.csv` and `metrics.jsonl` after `step` (those a killed run
    /// wrote after its last checkpoint), so that a resumed run does not repeat them. Each file
    /// is rewritten atomically (a temporary file renamed over it).
    fn truncate_to(&self, step: usize) -> Result<(), NnError> {
        for (name, header) in [
            ("metrics.csv", Some(METRICS_CSV_HEADER)),
            ("metrics.jsonl", None),
        ] {
            let p = self.dir.join(name);
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(NnError::io(&p, e)),
            };
            let row_step = |l: &str| -> Option<usize> {
                if header.is_some() {
                    l.split(',').next()?.trim().parse().ok()
                } else {
                    serde_json::from_str::<serde_json::Value>(l).ok()?["step"]
                        .as_u64()
                        .map(|v| v as usize)
                }
            };
            let mut out = String::new();
            if let Some(h) = header {
                out.push_str(h);
            }
            for l in text.lines() {
                if row_step(l).is_some_and(|s| s <= step) {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            let tmp = self.dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, out).map_err(|e| NnError::io(&tmp, e))?;
            std::fs::rename(&tmp, &p).map_err(|e| NnError::io(&p, e))?;
        }
        Ok(())
    }

    fn append(&self, name: &str, line: &str) -> Result<(), NnError> {
        let p = self.dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| NnError::io(&p, e))?;
        writeln!(f, "{line}").map_err(|e| NnError::io(&p, e))
    }
}

/// A trainer holding the optimizer state, resumable from a checkpoint.
pub struct Trainer<'a> {
    /// The model being trained (its variables are updated in place).
    pub model: &'a dyn Model,
    /// The run's hyperparameters.
    pub cfg: TrainConfig,
    /// Floating-point type of the tensors.
    pub dtype: DType,
    /// Device holding the tensors.
    pub dev: Device,
    state: Vec<State>,
    /// Steps completed so far (restored by a resume).
    pub step: usize,
    /// Metrics records collected so far.
    pub metrics: Vec<Metric>,
    /// Run MLP steps (tanh/ReLU/linear, f32, CPU) in the MLP kernel ([`crate::mlp`]): same
    /// updates as the candle path up to f32 rounding, ≈ 4× faster. On by default.
    pub fast: bool,
    kernel: Option<KernelRun>,
    /// The kernel's weights are newer than the candle variables.
    stale: bool,
    /// Leave the variables stale between steps (`run` syncs before it reads them).
    lazy_sync: bool,
}

impl<'a> Trainer<'a> {
    /// A trainer at step 0 with fresh optimizer state; validates `cfg`.
    pub fn new(
        model: &'a dyn Model,
        cfg: TrainConfig,
        dtype: DType,
        dev: Device,
    ) -> Result<Self, NnError> {
        if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
            return Err(NnError::Invalid {
                what: format!("--lr {}", cfg.lr),
                fix: "the learning rate must be finite and > 0".into(),
            });
        }
        if cfg.batch == 0 {
            return Err(NnError::Invalid {
                what: "--batch 0".into(),
                fix: "use a batch size ≥ 1".into(),
            });
        }
        let state = model
            .params()
            .iter()
            .map(|_| State { m: None, v: None })
            .collect();
        Ok(Self {
            model,
            cfg,
            dtype,
            dev,
            state,
            step: 0,
            metrics: vec![],
            fast: true,
            kernel: None,
            stale: false,
            lazy_sync: false,
        })
    }

    /// Whether the fast MLP path applies to this model and configuration.
    fn fast_eligible(&self) -> bool {
        self.fast
            && self.dtype == DType::F32
            && self.dev.is_cpu()
            && self
                .model
                .as_mlp()
                .is_some_and(|m| crate::mlp::Mlp::supports(m.act))
    }

    /// Step size of each parameter (NTK scaling, PDLT §7.1).
    fn lr_of(&self, p: &crate::model::Param) -> f64 {
        let scale = match (self.cfg.ntk_lr.map(|l| l.at(p.layer)), p.kind) {
            (None, _) => 1.0,
            (Some((_, lw)), ParamKind::Weight { fan_in }) => lw / fan_in as f64,
            (Some((lb, _)), ParamKind::Bias) => lb,
        };
        self.cfg.lr * scale
    }

    /// Keep the fast path's weights out of the candle variables between steps (as `run` does);
    /// call [`Trainer::sync`] before reading them.
    pub fn set_lazy_sync(&mut self, on: bool) {
        self.lazy_sync = on;
    }

    /// Copy the kernel's weights and optimizer moments into the candle variables and state.
    pub fn sync(&mut self) -> Result<(), NnError> {
        let Some(k) = &self.kernel else {
            return Ok(());
        };
        if !self.stale {
            return Ok(());
        }
        let (has_m, has_v) = self.cfg.optimizer.moments();
        for (i, (p, st)) in self
            .model
            .params()
            .iter()
            .zip(self.state.iter_mut())
            .enumerate()
        {
            let shape = p.var.as_tensor().shape().clone();
            let part = |buf: &[f32]| k.net.layout().slice(buf, i).to_vec();
            p.var
                .set(&Tensor::from_vec(part(&k.theta), shape.clone(), &self.dev)?)?;
            if has_m {
                st.m = Some(Tensor::from_vec(part(&k.opt.m), shape.clone(), &self.dev)?);
            }
            if has_v {
                st.v = Some(Tensor::from_vec(part(&k.opt.v), shape, &self.dev)?);
            }
        }
        self.stale = false;
        Ok(())
    }

    /// The kernel's state, from the candle variables and optimizer moments.
    fn kernel_run(&self) -> Result<KernelRun, NnError> {
        let mlp = self.model.as_mlp().ok_or_else(|| NnError::Invalid {
            what: "the MLP kernel on a model that is not an MLP".into(),
            fix: "train it on the candle path".into(),
        })?;
        let net = crate::mlp::Mlp::new(mlp.widths.clone(), mlp.act)?.parallel();
        let layout = net.layout().clone();
        let flat = |ts: Vec<Option<&Tensor>>| -> Result<Vec<f32>, NnError> {
            let mut out = Vec::with_capacity(layout.len());
            for t in ts {
                match t {
                    Some(t) => out.extend(t.flatten_all()?.to_vec1::<f32>()?),
                    None => return Ok(vec![0.0; layout.len()]),
                }
            }
            Ok(out)
        };
        let theta = flat(
            self.model
                .params()
                .iter()
                .map(|p| Some(p.var.as_tensor()))
                .collect(),
        )?;
        let m = flat(self.state.iter().map(|s| s.m.as_ref()).collect())?;
        let v = flat(self.state.iter().map(|s| s.v.as_ref()).collect())?;
        if theta.len() != layout.len() || m.len() != layout.len() || v.len() != layout.len() {
            return Err(NnError::Invalid {
                what: format!(
                    "{} parameters for the MLP kernel's {}",
                    theta.len(),
                    layout.len()
                ),
                fix: "the model's parameters are not [W1, b1, W2, b2, …]; use the candle path"
                    .into(),
            });
        }
        let lr = self.model.params().iter().map(|p| self.lr_of(p)).collect();
        Ok(KernelRun {
            net,
            theta,
            opt: crate::optim::State { m, v, t: 0 },
            ws: crate::mlp::Workspace::default(),
            lr,
        })
    }

    /// One step in the MLP kernel.
    fn fast_step(&mut self, data: &Split, idx: &[usize]) -> Result<f64, NnError> {
        if self.kernel.is_none() {
            self.kernel = Some(self.kernel_run()?);
        }
        let mut x = Vec::with_capacity(idx.len() * data.dim);
        for &i in idx {
            x.extend_from_slice(&data.x[i * data.dim..(i + 1) * data.dim]);
        }
        let labels: Vec<u32> = if data.targets.is_empty() {
            idx.iter().map(|&i| data.y[i]).collect()
        } else {
            vec![]
        };
        let mut tg = Vec::new();
        for &i in idx {
            if !data.targets.is_empty() {
                tg.extend_from_slice(&data.targets[i * data.out..(i + 1) * data.out]);
            }
        }
        let y = match (data.targets.is_empty(), self.cfg.loss) {
            (false, _) => crate::mlp::Targets::Values(&tg),
            (true, Loss::CrossEntropy) => crate::mlp::Targets::Labels(&labels),
            (true, Loss::Mse) => crate::mlp::Targets::OneHot(&labels),
        };
        let (opt, t) = (self.cfg.optimizer, (self.step + 1) as i32);
        let k = self.kernel.as_mut().expect("built above");
        let batch = crate::mlp::Batch {
            x: &x,
            y,
            n: idx.len(),
        };
        let pt = k
            .net
            .at_with(&k.theta, batch, std::mem::take(&mut k.ws), false)?;
        let lval = pt.loss;
        k.ws = pt.into_workspace();
        for (i, parts) in k.net.layout().entries().iter().enumerate() {
            let r = parts.range();
            crate::optim::update(
                opt,
                &mut k.theta[r.clone()],
                &k.ws.grad[r.clone()],
                &mut k.opt.m[r.clone()],
                &mut k.opt.v[r],
                k.lr[i],
                t,
            );
        }
        self.stale = true;
        if !lval.is_finite() {
            return Err(NnError::Diverged {
                step: self.step,
                loss: lval,
            });
        }
        self.step += 1;
        if !self.lazy_sync {
            self.sync()?;
        }
        Ok(lval)
    }

    fn steps_per_epoch(&self, n: usize) -> usize {
        match self.cfg.optimizer {
            Optimizer::Gd => 1,
            _ => n.div_ceil(self.cfg.batch),
        }
    }

    /// Total steps of the configured run.
    pub fn total_steps(&self, n: usize) -> usize {
        self.cfg
            .max_steps
            .unwrap_or(self.cfg.epochs * self.steps_per_epoch(n))
    }

    /// Example indices of step `step` (deterministic in (seed, epoch)).
    fn batch_indices(&self, n: usize, step: usize) -> (usize, Vec<usize>) {
        let spe = self.steps_per_epoch(n);
        let (epoch, k) = (step / spe, step % spe);
        if let Optimizer::Gd = self.cfg.optimizer {
            return (epoch, (0..n).collect());
        }
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(
            self.cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        let b = self.cfg.batch;
        (epoch, idx[k * b..((k + 1) * b).min(n)].to_vec())
    }

    /// Class labels must index the model's outputs: checked once, with one forward pass on one
    /// example, so that a too-narrow output layer is an error naming `--model`, not a failure
    /// inside the loss.
    fn check_labels(&self, data: &Split) -> Result<(), NnError> {
        let Some(&max) = data.y.iter().max() else {
            return Ok(());
        };
        if !data.targets.is_empty() {
            return Ok(());
        }
        let width = self
            .model
            .forward(&inputs(data, &[0], self.dtype, &self.dev)?)?
            .dims()
            .last()
            .copied()
            .unwrap_or(0);
        if max as usize >= width {
            return Err(NnError::Invalid {
                what: format!("--model with {width} outputs for labels up to {max}"),
                fix: format!(
                    "give the output layer {} units (the number of classes)",
                    max + 1
                ),
            });
        }
        Ok(())
    }

    /// One optimisation step on `idx`; returns the batch loss (before the step).
    pub fn step_on(&mut self, data: &Split, idx: &[usize]) -> Result<f64, NnError> {
        if self.fast_eligible() {
            return self.fast_step(data, idx);
        }
        let x = inputs(data, idx, self.dtype, &self.dev)?;
        let t = targets(data, idx, self.cfg.loss, self.dtype, &self.dev)?;
        let loss = loss_of(&self.model.forward(&x)?, &t, self.cfg.loss)?;
        let lval = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !lval.is_finite() {
            return Err(NnError::Diverged {
                step: self.step,
                loss: lval,
            });
        }
        let grads = loss.backward()?;
        let t_adam = (self.step + 1) as i32;
        for (p, st) in self.model.params().iter().zip(self.state.iter_mut()) {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let scale = match (self.cfg.ntk_lr.map(|l| l.at(p.layer)), p.kind) {
                (None, _) => 1.0,
                (Some((_, lw)), ParamKind::Weight { fan_in }) => lw / fan_in as f64,
                (Some((lb, _)), ParamKind::Bias) => lb,
            };
            let lr = self.cfg.lr * scale;
            let update = match self.cfg.optimizer {
                Optimizer::Gd | Optimizer::Sgd => (g * lr)?,
                Optimizer::Momentum { beta } => {
                    let m = match &st.m {
                        Some(m) => ((m * beta)? + g)?,
                        None => g.clone(),
                    };
                    st.m = Some(m.clone());
                    (m * lr)?
                }
                Optimizer::Adam { beta1, beta2, eps }
                | Optimizer::AdamW {
                    beta1, beta2, eps, ..
                } => {
                    let m = match &st.m {
                        Some(m) => ((m * beta1)? + (g * (1.0 - beta1))?)?,
                        None => (g * (1.0 - beta1))?,
                    };
                    let v = match &st.v {
                        Some(v) => ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                        None => (g.sqr()? * (1.0 - beta2))?,
                    };
                    st.m = Some(m.clone());
                    st.v = Some(v.clone());
                    let mhat = (m / (1.0 - beta1.powi(t_adam)))?;
                    let vhat = (v / (1.0 - beta2.powi(t_adam)))?;
                    ((mhat / (vhat.sqrt()? + eps)?)? * lr)?
                }
            };
            match self.cfg.optimizer {
                Optimizer::AdamW { weight_decay, .. } => p
                    .var
                    .set(&((p.var.as_tensor() * (1.0 - lr * weight_decay))? - update)?)?,
                _ => p.var.set(&(p.var.as_tensor() - update)?)?,
            }
        }
        self.step += 1;
        Ok(lval)
    }

    /// Train until the configured number of steps, evaluating, logging and checkpointing.
    /// `on_step` is called after each step (progress bars).
    pub fn run(
        &mut self,
        data: &TrainTest,
        out: Option<&RunDir>,
        on_step: &dyn Fn(usize),
    ) -> Result<TrainReport, NnError> {
        self.check_labels(&data.train)?;
        let n = data.train.len();
        if n == 0 {
            return Err(NnError::Invalid {
                what: "training set".into(),
                fix: "the training split is empty: check --subset".into(),
            });
        }
        let total = self.total_steps(n);
        let t0 = Instant::now();
        if let Some(o) = out {
            std::fs::create_dir_all(&o.dir).map_err(|e| NnError::io(&o.dir, e))?;
            if self.step == 0 {
                std::fs::write(o.dir.join("metrics.csv"), METRICS_CSV_HEADER)
                    .map_err(|e| NnError::io(&o.dir, e))?;
                std::fs::write(o.dir.join("metrics.jsonl"), "")
                    .map_err(|e| NnError::io(&o.dir, e))?;
            } else {
                o.truncate_to(self.step)?;
            }
        }
        let mut last_loss = f64::NAN;
        let lazy = std::mem::replace(&mut self.lazy_sync, true);
        while self.step < total {
            let (epoch, idx) = self.batch_indices(n, self.step);
            let res = self.step_on(&data.train, &idx);
            if res.is_err() {
                // Leave the variables current for whoever inspects the model after the error.
                self.lazy_sync = lazy;
                let _ = self.sync();
            }
            last_loss = res?;
            on_step(self.step);
            let eval_now = self.step == total
                || (self.cfg.eval_every > 0 && self.step % self.cfg.eval_every == 0);
            let ckpt_now = out.is_some()
                && self.cfg.checkpoint_every > 0
                && self.step % self.cfg.checkpoint_every == 0;
            if eval_now || ckpt_now {
                self.sync()?;
            }
            let (tl, ta) = if eval_now && !data.test.is_empty() {
                let (l, a) =
                    evaluate(self.model, &data.test, self.cfg.loss, self.dtype, &self.dev)?;
                (Some(l), a)
            } else {
                (None, None)
            };
            let m = Metric {
                step: self.step,
                epoch,
                train_loss: last_loss,
                test_loss: tl,
                test_accuracy: ta,
                seconds: t0.elapsed().as_secs_f64(),
            };
            if let Some(o) = out {
                let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
                o.append(
                    "metrics.csv",
                    &format!(
                        "{},{},{},{},{},{}",
                        m.step,
                        m.epoch,
                        m.train_loss,
                        opt(m.test_loss),
                        opt(m.test_accuracy),
                        m.seconds
                    ),
                )?;
                o.append(
                    "metrics.jsonl",
                    &serde_json::to_string(&m).expect("plain data"),
                )?;
                if self.cfg.checkpoint_every > 0 && self.step % self.cfg.checkpoint_every == 0 {
                    self.save_checkpoint(&o.dir.join("checkpoint.safetensors"))?;
                }
            }
            self.metrics.push(m);
        }
        self.lazy_sync = lazy;
        self.sync()?;
        let (train_loss, _) = evaluate(
            self.model,
            &data.train,
            self.cfg.loss,
            self.dtype,
            &self.dev,
        )?;
        let (test_loss, test_acc) = if data.test.is_empty() {
            (f64::NAN, None)
        } else {
            evaluate(self.model, &data.test, self.cfg.loss, self.dtype, &self.dev)?
        };
        if let Some(o) = out {
            self.save_checkpoint(&o.dir.join("checkpoint.safetensors"))?;
        }
        let _ = last_loss;
        Ok(TrainReport {
            test_accuracy: test_acc.unwrap_or(f64::NAN),
            test_loss,
            train_loss,
            steps: self.step,
            seconds: t0.elapsed().as_secs_f64(),
            metrics: self.metrics.clone(),
        })
    }

    /// Save parameters, optimizer state and the step counter (safetensors, atomic rename).
    pub fn save_checkpoint(&mut self, path: &Path) -> Result<(), NnError> {
        self.sync()?;
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (p, st) in self.model.params().iter().zip(&self.state) {
            map.insert(format!("param.{}", p.name), p.var.as_tensor().clone());
            if let Some(m) = &st.m {
                map.insert(format!("opt.m.{}", p.name), m.clone());
            }
            if let Some(v) = &st.v {
                map.insert(format!("opt.v.{}", p.name), v.clone());
            }
        }
        map.insert(
            "meta.step".into(),
            Tensor::new(&[self.step as u32], &self.dev)?,
        );
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&map, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| NnError::io(path, e))
    }

    /// Restore parameters, optimizer state and the step counter from a checkpoint.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<(), NnError> {
        let map = candle_core::safetensors::load(path, &self.dev).map_err(|e| NnError::Data {
            what: path.display().to_string(),
            problem: format!("not a readable safetensors checkpoint ({e})"),
            fix: "point --resume at a checkpoint.safetensors written by dlt train".into(),
        })?;
        let missing = |k: &str| NnError::Data {
            what: path.display().to_string(),
            problem: format!("has no tensor '{k}'"),
            fix: "the checkpoint belongs to a different model".into(),
        };
        for (p, st) in self.model.params().iter().zip(self.state.iter_mut()) {
            let k = format!("param.{}", p.name);
            let t = map.get(&k).ok_or_else(|| missing(&k))?;
            if t.dims() != p.var.as_tensor().dims() {
                return Err(NnError::Data {
                    what: path.display().to_string(),
                    problem: format!(
                        "{k} has shape {:?}, the model {:?}",
                        t.dims(),
                        p.var.as_tensor().dims()
                    ),
                    fix: "use the same --model".into(),
                });
            }
            p.var.set(&t.to_dtype(self.dtype)?)?;
            self.kernel = None;
            self.stale = false;
            st.m = map.get(&format!("opt.m.{}", p.name)).cloned();
            st.v = map.get(&format!("opt.v.{}", p.name)).cloned();
        }
        let step = map
            .get("meta.step")
            .ok_or_else(|| missing("meta.step"))?
            .to_vec1::<u32>()?;
        self.step = step[0] as usize;
        Ok(())
    }
}
