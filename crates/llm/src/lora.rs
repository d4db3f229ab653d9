//! LoRA healing of a pruned model (Gromov et al. 2024, §3.3: QLoRA on the pretraining-like
//! corpus after pruning). Here the frozen base is the dequantised f32 model, not a 4-bit one:
//! candle's quantised matmul has no backward. Adapters: y = W x + (α/r) B A x (Hu et al. 2021),
//! B = 0 at the start so healing starts from the pruned model exactly.

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
    /// Seed of the adapter initialisation and of the window sampling.
    pub seed: u64,
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
    let vars = model.attach_lora(cfg.rank, cfg.alpha, &cfg.targets, cfg.seed)?;
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
            return Err(LlmError::invalid(
                "healing",
                format!("loss diverged at step {step} ({l}); lower --heal-lr"),
            ));
        }
        opt.backward_step(&loss)?;
        losses.push(l);
        progress(step + 1, cfg.steps, l);
    }
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
