//! Perplexity on held-out text: non-overlapping windows of `ctx` tokens, each scored on its
//! next-token predictions from position `score_from` on (llama.cpp's `llama-perplexity`
//! scores the second half of each window: `score_from = ctx / 2`).

use candle_core::Tensor;
use serde::Serialize;

use crate::model::Llama;
use crate::{LlmError, Result};

/// Result of [`perplexity`].
#[derive(Debug, Clone, Serialize)]
pub struct Perplexity {
    /// exp(mean NLL).
    pub perplexity: f64,
    /// Mean next-token cross-entropy, nats per token.
    pub nll: f64,
    /// Standard error of `nll` from the spread across windows.
    pub nll_se: f64,
    /// Number of scored predictions.
    pub tokens: usize,
    /// Number of non-overlapping windows scored (trailing tokens that fill no window are skipped).
    pub windows: usize,
    /// Window length in tokens.
    pub ctx: usize,
}

/// Perplexity of `model` restricted to `blocks` on `tokens`. `progress(done, total)` is called
/// after each window.
pub fn perplexity(
    model: &Llama,
    blocks: &[usize],
    tokens: &[u32],
    ctx: usize,
    score_from: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    if ctx < 2 || score_from + 1 >= ctx {
        return Err(LlmError::invalid(
            "--ctx",
            format!("window {ctx} with scoring from {score_from} scores nothing"),
        ));
    }
    let windows = tokens.len() / ctx;
    if windows == 0 {
        return Err(LlmError::invalid(
            "evaluation text",
            format!(
                "{} tokens, fewer than one window of {ctx}; give a longer text or a smaller --ctx",
                tokens.len()
            ),
        ));
    }
    let dev = model.device();
    let mut per_window = Vec::with_capacity(windows);
    let mut total = 0.0;
    let mut count = 0;
    for w in 0..windows {
        let ids = Tensor::new(&tokens[w * ctx..(w + 1) * ctx], &dev)?.unsqueeze(0)?;
        let (nll, n) = model.nll(&ids, blocks, score_from, false)?;
        let nll = nll.to_scalar::<f32>()? as f64;
        if !nll.is_finite() {
            return Err(LlmError::invalid(
                "model",
                format!("non-finite loss in window {w}: the weights are broken"),
            ));
        }
        per_window.push(nll / n as f64);
        total += nll;
        count += n;
        progress(w + 1, windows);
    }
    let mean = total / count as f64;
    let m = per_window.len() as f64;
    let wm = per_window.iter().sum::<f64>() / m;
    let var = if m > 1.0 {
        per_window.iter().map(|x| (x - wm).powi(2)).sum::<f64>() / (m - 1.0)
    } else {
        f64::NAN
    };
    Ok(Perplexity {
        perplexity: mean.exp(),
        nll: mean,
        nll_se: (var / m).sqrt(),
        tokens: count,
        windows,
        ctx,
    })
}

/// Read a corpus: a UTF-8 text file, or JSON lines (`.jsonl`, one object per line with a
/// `"text"` field; documents are joined by a blank line). Only regular files of at most
/// [`crate::MAX_TEXT_BYTES`] are read (`/dev/zero` or a pipe is refused, not read forever).
pub fn read_corpus(path: &std::path::Path) -> Result<String> {
    let bytes = crate::read_bounded(path, crate::MAX_TEXT_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        LlmError::file(
            path,
            format!(
                "not UTF-8 (invalid byte at {})",
                e.utf8_error().valid_up_to()
            ),
            "convert the file to UTF-8",
        )
    })?;
    let text = if path.extension().is_some_and(|e| e == "jsonl") {
        let mut docs = Vec::new();
        for (k, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                LlmError::file(
                    path,
                    format!("line {}: not JSON ({e})", k + 1),
                    "one JSON object per line",
                )
            })?;
            let t = v["text"].as_str().ok_or_else(|| {
                LlmError::file(
                    path,
                    format!("line {}: no string field \"text\"", k + 1),
                    "give each line a \"text\" field",
                )
            })?;
            docs.push(t.to_string());
        }
        docs.join("\n\n")
    } else {
        text
    };
    if text.trim().is_empty() {
        return Err(LlmError::file(
            path,
            "the text is empty",
            "give a text with at least a few hundred words",
        ));
    }
    Ok(text)
}
