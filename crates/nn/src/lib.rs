//! # dlt-nn
//!
//! The neural-network substrate shared by the studies that train real networks: data sets
//! fetched with the ordinary package clients ([`data`]), candle models and initialisers
//! ([`model`]), training with checkpoints ([`train`]) and the empirical NTK ([`ntk`]).
#![warn(missing_docs)]

pub mod attack;
pub mod cnn;
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
    /// A data set or checkpoint file that is missing, malformed or of the wrong shape.
    #[error("{what}: {problem}; {fix}")]
    Data {
        /// The file or data set concerned (usually a path).
        what: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// An invalid input (configuration value, shape, state).
    #[error("invalid {what}: {fix}")]
    Invalid {
        /// The input concerned.
        what: String,
        /// The problem and how to fix it.
        fix: String,
    },
    /// Training produced a non-finite loss.
    #[error(
        "training diverged at step {step}: loss = {loss}; lower --lr or use a critical --init"
    )]
    Diverged {
        /// The (0-based) step whose loss was non-finite.
        step: usize,
        /// The offending loss value (NaN or ±∞).
        loss: f64,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error from candle's tensor operations.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// An error from the theory engine.
    #[error(transparent)]
    Theory(#[from] dlt_theory::TheoryError),
    /// A checkpoint that cannot be written, read or resumed from.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint's path.
        path: String,
        /// What went wrong.
        msg: String,
    },
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
    /// An [`NnError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        NnError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A seed for one independent stream, from the run's seed and the stream's coordinates (e.g.
/// width and network index): SplitMix64's finaliser (Steele, Lea, Flood 2014) folded over the
/// parts. Unlike `seed ^ index`, the streams of two run seeds are not the same set in another
/// order, so `--seed` changes every network.
pub fn stream_seed(seed: u64, parts: &[u64]) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    parts.iter().fold(mix(seed), |h, &p| mix(h ^ p))
}

#[cfg(test)]
mod stream_seed_tests {
    use super::stream_seed;
    use std::collections::HashSet;

    #[test]
    fn two_run_seeds_give_disjoint_streams() {
        // With `seed ^ p` the streams of seeds 0 and 1 over p < 1000 are the same set; with the
        // mixer a collision among 2000 64-bit values has probability ~1e-13.
        let a: HashSet<u64> = (0..1000).map(|p| stream_seed(0, &[7, 64, p])).collect();
        let b: HashSet<u64> = (0..1000).map(|p| stream_seed(1, &[7, 64, p])).collect();
        assert_eq!(a.len(), 1000);
        assert!(a.is_disjoint(&b));
        // Deterministic, and every coordinate matters.
        assert_eq!(stream_seed(3, &[1, 2]), stream_seed(3, &[1, 2]));
        assert_ne!(stream_seed(3, &[1, 2]), stream_seed(3, &[2, 1]));
    }
}
