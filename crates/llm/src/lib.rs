//! # dlt-llm
//!
//! Llama-architecture language models for the `prune` study (Gromov et al., "The Unreasonable
//! Ineffectiveness of the Deeper Layers", arXiv 2403.17887):
//!
//! - [`checkpoint`]: load a model from a GGUF file or a Hugging Face safetensors directory;
//! - [`tokenizer`]: GPT-2-style byte-level BPE, built from GGUF metadata or `tokenizer.json`;
//! - [`model`]: our own forward pass (every block's output is visible, blocks can be skipped,
//!   LoRA adapters can be attached and trained);
//! - [`probe`]: residual-stream angular distances and the optimal block to drop;
//! - [`lora`]: LoRA healing of a pruned model;
//! - [`export`]: the pruned model written back as GGUF and as safetensors.
//!
//! Block indices are 0-based and ranges end-exclusive everywhere: dropping `start = 20, n = 3`
//! removes blocks 20, 21, 22, and block 19's output feeds block 23.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod eval;
pub mod export;
pub mod lora;
pub mod model;
pub mod probe;
pub mod tokenizer;

/// Errors of this crate; each names the input, the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A model, tokenizer or checkpoint file that is missing, malformed or unsupported.
    #[error("{path}: {problem}; {fix}")]
    File {
        /// The file concerned.
        path: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// An invalid input (configuration value, block range, text).
    #[error("{what}: {problem}")]
    Invalid {
        /// The input concerned.
        what: String,
        /// What is wrong with it.
        problem: String,
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
}

impl LlmError {
    pub(crate) fn file(
        path: &std::path::Path,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        LlmError::File {
            path: path.display().to_string(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
    pub(crate) fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Self {
        LlmError::Invalid {
            what: what.into(),
            problem: problem.into(),
        }
    }
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        LlmError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, LlmError>;

pub use checkpoint::{load, Checkpoint, Source};
pub use model::{Llama, LlamaConfig, RopeStyle};
pub use tokenizer::Tokenizer;
