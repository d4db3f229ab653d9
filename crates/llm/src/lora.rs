//! LoRA healing of a pruned model (Gromov et al. 2024, §3.3: QLoRA on the pretraining-like
//! corpus after pruning). Here the frozen base is the dequantised f32 model, not a 4-bit one:
//! candle's quantised matmul has no backward. Adapters: y = W x + (α/r) B A x (Hu et al. 2021),
//! B = 0 at the start so healing starts from the pruned model exactly.
//!
//! [`HealConfig::paper`] is the paper's recipe (arXiv 2403.17887 §3.3 and its appendix on
//! healing, as summarised in our docs/derivations/prune.md#healing-recipe): adapters on the
//! FFN maps only, α = r, dropout 0.05 on the adapter input, a cosine learning-rate schedule
//! after a linear warm-up.

use candle_core::{Tensor, Var};
use candle_nn::Optimizer;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::model::Llama;
use crate::{LlmError, Result};

/// LoRA healing settings.
#[derive(Debug, Clone, Serialize)]
pub struct HealConfig {
    /// Adapter rank r.
    pub rank: usize,
    /// Scale numerator α (the update is (α/r)·B A x).
    pub alpha: f64,
    /// Subset of `model::TARGETS`.
    pub targets: Vec<String>,
    /// AdamW steps.
    pub steps: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Tokens per training sequence.
    pub seq: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Seed of the adapter initialisation, of the dropout masks and of the window sampling.
    pub seed: u64,
    /// Dropout probability on each adapter's input during training (0: none).
    pub dropout: f64,
    /// Learning-rate schedule after the warm-up.
    pub schedule: LrSchedule,
    /// Linear warm-up steps (the rate rises as lr·(s + 1)/warmup).
    pub warmup: usize,
}

/// The learning rate as a function of the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// lr throughout (after the warm-up).
    Constant,
    /// lr·½(1 + cos(π·u)), u = (s − warmup)/(steps − warmup) ∈ [0, 1) (Loshchilov & Hutter
    /// 2017, without restarts).
    Cosine,
}

impl LrSchedule {
    /// Parse `constant` or `cosine`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(LrSchedule::Constant),
            "cosine" => Ok(LrSchedule::Cosine),
            _ => Err(LlmError::invalid(
                "--heal-schedule",
                format!("{s:?}: use constant or cosine"),
            )),
        }
    }
}

impl HealConfig {
    /// The paper's healing recipe with `rank` and `steps`: LoRA on gate, up and down only,
    /// α = r, dropout 0.05, cosine schedule after a warm-up of a tenth of the steps, AdamW at
    /// 3e-4 (arXiv 2403.17887 §3.3; docs/derivations/prune.md#healing-recipe).
    pub fn paper(rank: usize, steps: usize) -> Self {
        HealConfig {
            rank,
            alpha: rank as f64,
            targets: ["gate", "up", "down"].map(String::from).to_vec(),
            steps,
            dropout: 0.05,
            schedule: LrSchedule::Cosine,
            warmup: (steps / 10).max(1),
            ..HealConfig::default()
        }
    }

    /// The learning rate of step `s` (0-based).
    pub fn lr_at(&self, s: usize) -> f64 {
        if s < self.warmup {
            return self.lr * (s + 1) as f64 / self.warmup as f64;
        }
        match self.schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine => {
                let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
                let u = (s - self.warmup) as f64 / span;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
            }
        }
    }
}

impl Default for HealConfig {
    fn default() -> Self {
        HealConfig {
            rank: 8,
            alpha: 16.0,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
            steps: 100,
            lr: 3e-4,
            seq: 128,
            batch: 1,
            seed: 0,
            dropout: 0.0,
            schedule: LrSchedule::Constant,
            warmup: 0,
        }
    }
}

/// What healing did.
#[derive(Debug, Clone, Serialize)]
pub struct HealReport {
    /// Steps taken.
    pub steps: usize,
    /// Training loss (nats/token) at each step.
    pub losses: Vec<f64>,
    /// Number of adapter parameters trained (Σ over A and B).
    pub trainable_params: usize,
    /// Wall-clock seconds of healing.
    pub seconds: f64,
}

/// Attach LoRA adapters to `model` and train them with AdamW on random windows of
/// `train_tokens`; the adapters stay attached (see [`Llama::merge_lora`]).
pub fn heal(
    model: &mut Llama,
    train_tokens: &[u32],
    cfg: &HealConfig,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<(HealReport, Vec<Var>)> {
    let t0 = std::time::Instant::now();
    if cfg.seq < 2 || cfg.batch == 0 {
        return Err(LlmError::invalid(
            "healing",
            "--heal-seq must be ≥ 2 and --heal-batch ≥ 1",
        ));
    }
    if train_tokens.len() <= cfg.seq {
        return Err(LlmError::invalid(
            "healing text",
            format!(
                "{} tokens, need more than one sequence of {}",
                train_tokens.len(),
                cfg.seq
            ),
        ));
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(LlmError::invalid(
            "--lora-dropout",
            format!("{}: must be in [0, 1)", cfg.dropout),
        ));
    }
    if cfg.warmup > cfg.steps {
        return Err(LlmError::invalid(
            "--heal-warmup",
            format!(
                "{} warm-up steps exceed the {} healing steps",
                cfg.warmup, cfg.steps
            ),
        ));
    }
    let vars = model.attach_lora(cfg.rank, cfg.alpha, &cfg.targets, cfg.seed)?;
    model.set_lora_dropout(cfg.dropout, cfg.seed ^ 0xd50f_0a7e);
    let trainable_params = vars.iter().map(|v| v.elem_count()).sum();
    let mut opt = candle_nn::AdamW::new(
        vars.clone(),
        candle_nn::ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x9e37_79b9);
    let blocks = model.all_blocks();
    let dev = model.device();
    let mut losses = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        opt.set_learning_rate(cfg.lr_at(step));
        let mut ids = Vec::with_capacity(cfg.batch * cfg.seq);
        for _ in 0..cfg.batch {
            let s = rng.random_range(0..train_tokens.len() - cfg.seq);
            ids.extend_from_slice(&train_tokens[s..s + cfg.seq]);
        }
        let ids = Tensor::from_vec(ids, (cfg.batch, cfg.seq), &dev)?;
        let (nll, n) = model.nll(&ids, &blocks, 0, true)?;
        let loss = (nll / n as f64)?;
        let l = loss.to_scalar::<f32>()? as f64;
        if !l.is_finite() {
            model.set_lora_dropout(0.0, 0);
            return Err(LlmError::invalid(
                "healing",
                format!("loss diverged at step {step} ({l}); lower --heal-lr"),
            ));
        }
        opt.backward_step(&loss)?;
        losses.push(l);
        progress(step + 1, cfg.steps, l);
    }
    // Evaluation (and merging) uses the adapters without dropout.
    model.set_lora_dropout(0.0, 0);
    Ok((
        HealReport {
            steps: cfg.steps,
            losses,
            trainable_params,
            seconds: t0.elapsed().as_secs_f64(),
        },
        vars,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_schedule() {
        let c = HealConfig::paper(8, 100);
        assert_eq!((c.warmup, c.alpha, c.dropout), (10, 8.0, 0.05));
        assert_eq!(c.targets, ["gate", "up", "down"]);
        // Warm-up: lr·(s + 1)/10; then ½(1 + cos πu) over the remaining 90 steps.
        assert!((c.lr_at(0) - 3e-5).abs() < 1e-18);
        assert!((c.lr_at(9) - 3e-4).abs() < 1e-18);
        assert!((c.lr_at(10) - 3e-4).abs() < 1e-18);
        assert!(
            (c.lr_at(55) - 1.5e-4).abs() < 1e-15,
            "half-way: {}",
            c.lr_at(55)
        );
        assert!(c.lr_at(99) > 0.0 && c.lr_at(99) < 1e-6, "{}", c.lr_at(99));
        let k = HealConfig::default();
        assert!((0..100).all(|s| k.lr_at(s) == 3e-4));
        assert!(LrSchedule::parse("linear").is_err());
    }
}
