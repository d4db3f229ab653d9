//! Training: full-batch GD, SGD, SGD with momentum and Adam on MSE (one-hot targets for
//! classification) or cross-entropy; optional NTK learning-rate scaling (PDLT §7.1: the step of a
//! weight in layer l is η·λ_W/fan_in, of a bias η·λ_b); evaluation hooks; metrics streamed to
//! `metrics.csv` and `metrics.jsonl`; safetensors checkpoints with resume; divergence detection.
//!
//! Determinism: the example order of epoch e is a shuffle seeded by (seed, e), so a run resumed
//! from a checkpoint replays exactly the steps an uninterrupted run takes.

use crate::data::{Split, TrainTest};
use crate::layout::Layout;
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

/// The run's one copy of the parameters: flat values in the order of `Model::params` (through
/// their [`Layout`]), the update rule's moments over the same layout, and each parameter's step
/// size. The model's candle variables are written from it by [`Trainer::publish`]; nothing is
/// ever copied the other way after the trainer is built (or a checkpoint loaded).
struct Store {
    layout: Layout,
    theta: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    lr: Vec<f64>,
}

impl Store {
    /// The store of `model`'s current values, with zero moments.
    fn of(model: &dyn Model, cfg: &TrainConfig) -> Result<Self, NnError> {
        let mut layout = Layout::default();
        let mut theta = vec![];
        let mut lr = vec![];
        for p in model.params() {
            let t = p.var.as_tensor();
            if t.dtype() != DType::F32 {
                return Err(NnError::Invalid {
                    what: format!("parameter {} of dtype {:?}", p.name, t.dtype()),
                    fix: "the trainer runs in f32: build the model with DType::F32".into(),
                });
            }
            layout.push(p.name.clone(), t.dims());
            theta.extend(t.flatten_all()?.to_vec1::<f32>()?);
            let scale = match (cfg.ntk_lr.map(|l| l.at(p.layer)), p.kind) {
                (None, _) => 1.0,
                (Some((_, lw)), ParamKind::Weight { fan_in }) => lw / fan_in as f64,
                (Some((lb, _)), ParamKind::Bias) => lb,
            };
            lr.push(cfg.lr * scale);
        }
        let n = theta.len();
        Ok(Self {
            layout,
            theta,
            m: vec![0.0; n],
            v: vec![0.0; n],
            lr,
        })
    }

    /// θ ← update(θ, g), parameter by parameter with its own step size, at step `t` (from 1).
    fn update(&mut self, opt: Optimizer, g: &[f32], t: i32) {
        for (e, &lr) in self.layout.entries().iter().zip(&self.lr) {
            let r = e.range();
            crate::optim::update(
                opt,
                &mut self.theta[r.clone()],
                &g[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                lr,
                t,
            );
        }
    }
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

/// A trainer: the parameter [`Store`] and the step counter, resumable from a checkpoint.
///
/// Training runs in f32. The model's variables hold the trained values after [`Trainer::run`]
/// returns (or fails) and after [`Trainer::publish`]; between steps only the store does.
pub struct Trainer<'a> {
    /// The model being trained.
    pub model: &'a dyn Model,
    /// The run's hyperparameters.
    pub cfg: TrainConfig,
    /// Device holding the tensors.
    pub dev: Device,
    store: Store,
    /// Steps completed so far (restored by a resume).
    pub step: usize,
    /// Metrics records collected so far.
    pub metrics: Vec<Metric>,
    /// Take the steps of an MLP (tanh/ReLU/linear, CPU) in the MLP kernel ([`crate::mlp`]) rather
    /// than through candle's autograd: the same updates up to f32 rounding (tested), ≈ 4× faster.
    /// On by default.
    pub mlp_kernel: bool,
    kernel: Option<(crate::mlp::Mlp, crate::mlp::Workspace<f32>)>,
}

impl<'a> Trainer<'a> {
    /// A trainer at step 0 with fresh optimizer state; validates `cfg`.
    pub fn new(model: &'a dyn Model, cfg: TrainConfig, dev: Device) -> Result<Self, NnError> {
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
        Ok(Self {
            store: Store::of(model, &cfg)?,
            model,
            cfg,
            dev,
            step: 0,
            metrics: vec![],
            mlp_kernel: true,
            kernel: None,
        })
    }

    /// Write the store's parameters into the model's variables.
    pub fn publish(&self) -> Result<(), NnError> {
        for (p, e) in self.model.params().iter().zip(self.store.layout.entries()) {
            let values = self.store.theta[e.range()].to_vec();
            p.var
                .set(&Tensor::from_vec(values, e.shape.as_slice(), &self.dev)?)?;
        }
        Ok(())
    }

    /// Whether the step runs in the MLP kernel (built on first use): an MLP with a kernel
    /// activation, on the CPU, unless `mlp_kernel` is off.
    fn use_kernel(&mut self) -> Result<bool, NnError> {
        let Some(mlp) = self.model.as_mlp() else {
            return Ok(false);
        };
        if !(self.mlp_kernel && self.dev.is_cpu() && crate::mlp::Mlp::supports(mlp.act)) {
            return Ok(false);
        }
        if self.kernel.is_none() {
            let net = crate::mlp::Mlp::new(mlp.widths.clone(), mlp.act)?.parallel();
            if net.layout() != &self.store.layout {
                return Err(NnError::Invalid {
                    what: "the MLP kernel's parameter layout".into(),
                    fix:
                        "the model's parameters are not [W1, b1, W2, b2, …]; set mlp_kernel = false"
                            .into(),
                });
            }
            self.kernel = Some((net, crate::mlp::Workspace::default()));
        }
        Ok(true)
    }

    /// The batch loss at the store's parameters and its gradient: in the MLP kernel when it
    /// applies, otherwise by candle's autograd on the published variables.
    fn gradient(&mut self, data: &Split, idx: &[usize]) -> Result<(f64, Vec<f32>), NnError> {
        let loss = self.cfg.loss;
        if self.use_kernel()? {
            let (net, ws) = self.kernel.as_mut().expect("built by use_kernel");
            return kernel_gradient(net, ws, &self.store.theta, data, idx, loss);
        }
        self.publish()?;
        let x = inputs(data, idx, DType::F32, &self.dev)?;
        let t = targets(data, idx, loss, DType::F32, &self.dev)?;
        let l = loss_of(&self.model.forward(&x)?, &t, loss)?;
        let lval = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let grads = l.backward()?;
        let mut g = vec![0f32; self.store.layout.len()];
        for (p, e) in self.model.params().iter().zip(self.store.layout.entries()) {
            if let Some(gp) = grads.get(p.var.as_tensor()) {
                g[e.range()].copy_from_slice(&gp.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        Ok((lval, g))
    }

    /// One optimisation step on `idx`; returns the batch loss (before the step).
    pub fn step_on(&mut self, data: &Split, idx: &[usize]) -> Result<f64, NnError> {
        let (lval, g) = self.gradient(data, idx)?;
        if !lval.is_finite() {
            return Err(NnError::Diverged {
                step: self.step,
                loss: lval,
            });
        }
        self.store
            .update(self.cfg.optimizer, &g, (self.step + 1) as i32);
        self.step += 1;
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
            .forward(&inputs(data, &[0], DType::F32, &self.dev)?)?
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
        while self.step < total {
            let (epoch, idx) = self.batch_indices(n, self.step);
            let res = self.step_on(&data.train, &idx);
            if res.is_err() {
                // Leave the variables current for whoever inspects the model after the error.
                let _ = self.publish();
            }
            let last_loss = res?;
            on_step(self.step);
            let eval_now = self.step == total
                || (self.cfg.eval_every > 0 && self.step.is_multiple_of(self.cfg.eval_every));
            let (tl, ta) = if eval_now && !data.test.is_empty() {
                self.publish()?;
                let (l, a) =
                    evaluate(self.model, &data.test, self.cfg.loss, DType::F32, &self.dev)?;
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
                if self.cfg.checkpoint_every > 0
                    && self.step.is_multiple_of(self.cfg.checkpoint_every)
                {
                    self.save_checkpoint(&o.dir.join("checkpoint.safetensors"))?;
                }
            }
            self.metrics.push(m);
        }
        self.publish()?;
        let (train_loss, _) = evaluate(
            self.model,
            &data.train,
            self.cfg.loss,
            DType::F32,
            &self.dev,
        )?;
        let (test_loss, test_acc) = if data.test.is_empty() {
            (f64::NAN, None)
        } else {
            evaluate(self.model, &data.test, self.cfg.loss, DType::F32, &self.dev)?
        };
        if let Some(o) = out {
            self.save_checkpoint(&o.dir.join("checkpoint.safetensors"))?;
        }
        Ok(TrainReport {
            test_accuracy: test_acc.unwrap_or(f64::NAN),
            test_loss,
            train_loss,
            steps: self.step,
            seconds: t0.elapsed().as_secs_f64(),
            metrics: self.metrics.clone(),
        })
    }

    /// Save parameters, optimizer moments and the step counter (safetensors, atomic rename);
    /// the keys are `param.NAME`, `opt.m.NAME`, `opt.v.NAME` (as the rule keeps them) and
    /// `meta.step`.
    pub fn save_checkpoint(&mut self, path: &Path) -> Result<(), NnError> {
        let (has_m, has_v) = self.cfg.optimizer.moments();
        let mut map: HashMap<String, Tensor> = HashMap::new();
        let st = &self.store;
        for e in st.layout.entries() {
            let t = |buf: &[f32]| {
                Tensor::from_vec(buf[e.range()].to_vec(), e.shape.as_slice(), &self.dev)
            };
            map.insert(format!("param.{}", e.name), t(&st.theta)?);
            if has_m {
                map.insert(format!("opt.m.{}", e.name), t(&st.m)?);
            }
            if has_v {
                map.insert(format!("opt.v.{}", e.name), t(&st.v)?);
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

    /// Restore parameters, optimizer moments (zero where the checkpoint has none) and the step
    /// counter from a checkpoint, and publish the parameters.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<(), NnError> {
        let map = candle_core::safetensors::load(path, &self.dev).map_err(|e| NnError::Data {
            what: path.display().to_string(),
            problem: format!("not a readable safetensors checkpoint ({})", printable(e)),
            fix: "point --resume at a checkpoint.safetensors written by dlt train".into(),
        })?;
        let missing = |k: &str| NnError::Data {
            what: path.display().to_string(),
            problem: format!("has no tensor '{k}'"),
            fix: "the checkpoint belongs to a different model".into(),
        };
        let corrupt = |problem: String| NnError::Data {
            what: path.display().to_string(),
            problem,
            fix: "the checkpoint is corrupt; delete it or resume from another".into(),
        };
        let st = &mut self.store;
        for e in st.layout.entries() {
            let k = format!("param.{}", e.name);
            let t = map.get(&k).ok_or_else(|| missing(&k))?;
            if t.dims() != e.shape.as_slice() {
                return Err(NnError::Data {
                    what: path.display().to_string(),
                    problem: format!("{k} has shape {:?}, the model {:?}", t.dims(), e.shape),
                    fix: "use the same --model".into(),
                });
            }
            // Errors name the file (a tensor of a dtype with no conversion to f32).
            let values = |t: &Tensor, k: &str| -> Result<Vec<f32>, NnError> {
                t.to_dtype(DType::F32)
                    .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                    .map_err(|e| corrupt(format!("{k} cannot be read as f32 ({})", printable(e))))
            };
            st.theta[e.range()].copy_from_slice(&values(t, &k)?);
            for (key, buf) in [("opt.m", &mut st.m), ("opt.v", &mut st.v)] {
                let k = format!("{key}.{}", e.name);
                match map.get(&k) {
                    Some(t) if t.dims() == e.shape.as_slice() => {
                        buf[e.range()].copy_from_slice(&values(t, &k)?)
                    }
                    Some(_) => {
                        return Err(missing(&format!("{key}.{} of the right shape", e.name)))
                    }
                    None => buf[e.range()].fill(0.0),
                }
            }
        }
        // Exactly one u32: an empty `meta.step` indexed its first element (issue 12).
        let step = map
            .get("meta.step")
            .ok_or_else(|| missing("meta.step"))?
            .to_vec1::<u32>();
        self.step = match step.as_deref() {
            Ok([s]) => *s as usize,
            _ => return Err(corrupt("meta.step is not one u32 step counter".into())),
        };
        self.publish()
    }
}

/// One printable line of a reader's error: its first line, control characters escaped (the
/// safetensors header parser quotes the file's bytes), at most 300 characters.
fn printable(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or("");
    let mut out: String = first
        .chars()
        .take(300)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if first.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// The batch loss and its gradient in the MLP kernel, at `theta`.
fn kernel_gradient(
    net: &crate::mlp::Mlp,
    ws: &mut crate::mlp::Workspace<f32>,
    theta: &[f32],
    data: &Split,
    idx: &[usize],
    loss: Loss,
) -> Result<(f64, Vec<f32>), NnError> {
    let rows = |buf: &[f32], w: usize| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| &buf[i * w..(i + 1) * w])
            .copied()
            .collect()
    };
    let x = rows(&data.x, data.dim);
    let regression = !data.targets.is_empty();
    let values = if regression {
        rows(&data.targets, data.out)
    } else {
        vec![]
    };
    let labels: Vec<u32> = if regression {
        vec![]
    } else {
        idx.iter().map(|&i| data.y[i]).collect()
    };
    let y = match (regression, loss) {
        (true, _) => crate::mlp::Targets::Values(&values),
        (false, Loss::CrossEntropy) => crate::mlp::Targets::Labels(&labels),
        (false, Loss::Mse) => crate::mlp::Targets::OneHot(&labels),
    };
    let batch = crate::mlp::Batch {
        x: &x,
        y,
        n: idx.len(),
    };
    let pt = net.at_with(theta, batch, std::mem::take(ws), false)?;
    let lval = pt.loss;
    *ws = pt.into_workspace();
    Ok((lval, ws.grad.clone()))
}
