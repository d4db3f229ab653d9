//! # dlt-nn
//!
//! The neural-network substrate shared by the studies that train real networks: data sets
//! fetched with the ordinary package clients ([`data`]), candle models and initialisers
//! ([`model`]), training with checkpoints ([`train`]) and the empirical NTK ([`ntk`]).

pub mod data;
pub mod lm;
pub mod model;
pub mod ntk;
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
}

impl NnError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        NnError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
