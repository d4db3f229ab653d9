//! # dlt-nn
//!
//! The neural-network substrate shared by the studies that train real networks: data sets
//! fetched with the ordinary package clients ([`data`]), candle models and initialisers
//! ([`model`]), training with checkpoints ([`train`]) and the empirical NTK ([`ntk`]).

pub mod data;
pub mod diffusion;
pub mod gpt_config;
pub mod gpt_kernel;
pub mod layout;
pub mod lm;
pub mod mlp;
pub mod model;
pub mod ntk;
pub mod optim;
pub mod real;
pub mod simd;
pub mod train;
pub mod vae;

use std::path::Path;

/// Errors of the substrate; each names the input, the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("{what}: {problem}; {fix}")]
    Data {
        what: String,
        problem: String,
        fix: String,
    },
    #[error("invalid {what}: {fix}")]
    Invalid { what: String, fix: String },
    #[error(
        "training diverged at step {step}: loss = {loss}; lower --lr or use a critical --init"
    )]
    Diverged { step: usize, loss: f64 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Theory(#[from] dlt_theory::TheoryError),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: String, msg: String },
}

/// Re-draw every parameter of a candle `VarMap` from our own seeded stream (candle's CPU device
/// cannot be seeded, so its initialisers are not reproducible). Parameters are visited in name
/// order; `draw(name, dims, rng)` returns the values of one.
pub fn reinit_seeded(
    varmap: &candle_nn::VarMap,
    seed: u64,
    draw: impl Fn(&str, &[usize], &mut rand_xoshiro::Xoshiro256PlusPlus) -> Vec<f32>,
) -> Result<(), NnError> {
    use rand::SeedableRng;
    let data = varmap.data().lock().map_err(|_| NnError::Invalid {
        what: "parameter map".into(),
        fix: "a thread panicked while holding it".into(),
    })?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let shape = var.as_tensor().shape().clone();
        let vals = draw(name, shape.dims(), &mut rng);
        var.set(&candle_core::Tensor::from_vec(
            vals,
            shape,
            var.as_tensor().device(),
        )?)?;
    }
    Ok(())
}

/// Shuffled mini-batch epochs with AdamW over every variable of `varmap`: `loss(chunk, rng)`
/// gives the batch loss for the example indices `chunk`. Returns the steps taken; a non-finite
/// loss stops training with the step at which it happened.
pub fn train_epochs(
    varmap: &candle_nn::VarMap,
    lr: f64,
    epochs: usize,
    batch: usize,
    n: usize,
    rng: &mut rand_xoshiro::Xoshiro256PlusPlus,
    mut loss: impl FnMut(
        &[usize],
        &mut rand_xoshiro::Xoshiro256PlusPlus,
    ) -> candle_core::Result<candle_core::Tensor>,
) -> Result<usize, NnError> {
    use candle_nn::Optimizer;
    use rand::seq::SliceRandom;
    let mut opt = candle_nn::AdamW::new(
        varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut steps = 0;
    for _ in 0..epochs {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(rng);
        for chunk in idx.chunks(batch.max(1)) {
            let l = loss(chunk, rng)?;
            let v = l.to_scalar::<f32>()? as f64;
            if !v.is_finite() {
                return Err(NnError::Diverged {
                    step: steps,
                    loss: v,
                });
            }
            opt.backward_step(&l)?;
            steps += 1;
        }
    }
    Ok(steps)
}

impl NnError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        NnError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
