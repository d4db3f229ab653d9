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
//! - [`detail`]: per-token vectors kept out of `results.json` but in stage checkpoints.
//! - [`bench`]: multiple-choice benchmarks (ARC-Easy, HellaSwag, PIQA, BoolQ, MMLU) scored
//!   with lm-evaluation-harness's conventions on a KV-cached forward.
//!
//! Block indices are 0-based and ranges end-exclusive everywhere: dropping `start = 20, n = 3`
//! removes blocks 20, 21, 22, and block 19's output feeds block 23.
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod detail;
pub mod eval;
pub mod export;
mod gguf_check;
pub mod lora;
pub mod model;
pub mod probe;
pub mod quant_noise;
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

/// One printable line of an error from a dependency: the first line, control characters
/// escaped, at most 300 characters (a backtrace or raw bytes from the file stay out).
pub(crate) fn one_line(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or("");
    let mut out = String::new();
    for c in first.chars() {
        if out.chars().count() >= 300 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Most bytes [`eval::read_corpus`] reads from a text (1 GiB).
pub const MAX_TEXT_BYTES: u64 = dlt_nn::data::MAX_TEXT_BYTES;
/// Most bytes read from a `config.json` (16 MiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Most bytes read from a `tokenizer.json` (256 MiB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// An error of `dlt-nn`'s file readers as ours: the file, the problem and the fix kept.
fn from_nn(e: dlt_nn::NnError) -> LlmError {
    match e {
        dlt_nn::NnError::Data { what, problem, fix } => LlmError::File {
            path: what,
            problem,
            fix,
        },
        dlt_nn::NnError::Io { path, source } => LlmError::Io { path, source },
        other => LlmError::invalid("file", one_line(other)),
    }
}

/// Refuse anything but a regular file (a device such as `/dev/zero`, a pipe or a folder
/// would be read until memory runs out, or block): [`dlt_nn::data::regular_file`].
pub(crate) fn regular_file(path: &std::path::Path) -> Result<std::fs::Metadata> {
    dlt_nn::data::regular_file(path).map_err(from_nn)
}

/// Read a whole regular file of at most `max` bytes (checked before reading, and enforced while
/// reading in case the file grows): [`dlt_nn::data::read_bounded`].
pub(crate) fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>> {
    dlt_nn::data::read_bounded(path, max).map_err(from_nn)
}

pub use checkpoint::{load, Checkpoint, Source};
pub use model::{Llama, LlamaConfig, RopeStyle};
pub use tokenizer::Tokenizer;
