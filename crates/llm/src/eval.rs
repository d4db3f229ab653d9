//! Perplexity on held-out text: non-overlapping windows of `ctx` tokens, each scored on its
//! next-token predictions from position `score_from` on (llama.cpp's `llama-perplexity`
//! scores the second half of each window: `score_from = ctx / 2`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::Llama;
use crate::{LlmError, Result};

/// Result of [`perplexity`].
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Per scored token, in text order: −log p of the next token (nats). Serialised only in
    /// checkpoints ([`crate::detail`]); kept for paired comparisons of two models on the same
    /// tokens ([`paired_difference`]).
    #[serde(default, skip_serializing_if = "crate::detail::hidden")]
    pub token_nll: Vec<f64>,
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
    let mut per_token = Vec::with_capacity(windows);
    for w in 0..windows {
        let ids = Tensor::new(&tokens[w * ctx..(w + 1) * ctx], &dev)?.unsqueeze(0)?;
        per_token.push(
            model
                .token_nll(&ids, blocks, score_from, false)?
                .to_vec1::<f32>()?,
        );
        progress(w + 1, windows);
    }
    summarise(per_token, ctx)
}

/// [`Perplexity`] from the per-token cross-entropies of each window.
fn summarise(windows: Vec<Vec<f32>>, ctx: usize) -> Result<Perplexity> {
    let mut per_window = Vec::with_capacity(windows.len());
    let mut token_nll = Vec::with_capacity(windows.iter().map(Vec::len).sum());
    let (mut total, mut count) = (0.0, 0);
    for (w, per_token) in windows.iter().enumerate() {
        let n = per_token.len();
        let nll: f64 = per_token.iter().map(|&x| x as f64).sum();
        token_nll.extend(per_token.iter().map(|&x| x as f64));
        if !nll.is_finite() {
            return Err(LlmError::invalid(
                "model",
                format!("non-finite loss in window {w}: the weights are broken"),
            ));
        }
        per_window.push(nll / n as f64);
        total += nll;
        count += n;
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
        windows: windows.len(),
        ctx,
        token_nll,
    })
}

/// The index j of the largest boundary k = `boundaries[j]` (ascending, starting at 0) such that
/// `blocks` begins with the whole model's blocks 0..k: where a pruned model can continue from
/// the whole model's stored residual stream x^(k).
pub(crate) fn shared_boundary(boundaries: &[usize], blocks: &[usize]) -> usize {
    let shared = blocks
        .iter()
        .enumerate()
        .take_while(|(i, &l)| *i == l)
        .count();
    boundaries.iter().rposition(|&k| k <= shared).unwrap_or(0)
}

/// Perplexities of many block subsets of one model on the same windows, sharing their common
/// prefix: a pruned model that keeps blocks 0..k unchanged computes the same residual stream
/// x^(k) as the whole model, so it is computed once and each subset runs only its blocks past
/// k and the output map. For the pruning sweep (the dropped range sits deep, so k is large)
/// this does a fraction of the work of [`perplexity`] per subset, with the same numbers (the
/// same operations on the same inputs; tested against [`perplexity`]). Memory: the states at
/// the `boundaries` asked for, boundaries × tokens × d floats.
pub struct SharedPrefix<'a> {
    model: &'a Llama,
    ids: Vec<Tensor>,
    boundaries: Vec<usize>,
    /// states[w][j]: window w's residual stream after `boundaries[j]` blocks.
    states: Vec<Vec<Tensor>>,
    ctx: usize,
    score_from: usize,
}

impl<'a> SharedPrefix<'a> {
    /// Run the whole model once over the windows of `ctx` tokens of `tokens` and keep the
    /// residual streams after each of `boundaries` blocks (the first dropped block of each subset
    /// to be scored; 0 is always kept).
    pub fn new(
        model: &'a Llama,
        tokens: &[u32],
        ctx: usize,
        score_from: usize,
        boundaries: &[usize],
    ) -> Result<Self> {
        if ctx < 2 || score_from + 1 >= ctx || tokens.len() < ctx {
            return Err(LlmError::invalid(
                "evaluation text",
                format!(
                    "{} tokens with window {ctx} scored from {score_from}: nothing to score",
                    tokens.len()
                ),
            ));
        }
        let mut b: Vec<usize> = boundaries.to_vec();
        b.push(0);
        b.sort_unstable();
        b.dedup();
        let dev = model.device();
        let ids: Vec<Tensor> = (0..tokens.len() / ctx)
            .map(|w| Ok(Tensor::new(&tokens[w * ctx..(w + 1) * ctx], &dev)?.unsqueeze(0)?))
            .collect::<Result<_>>()?;
        let states = ids
            .iter()
            .map(|i| model.prefix_states(i, &b))
            .collect::<Result<_>>()?;
        Ok(SharedPrefix {
            model,
            ids,
            boundaries: b,
            states,
            ctx,
            score_from,
        })
    }

    /// Perplexity of the model restricted to `blocks`, from the longest kept prefix.
    pub fn perplexity(&self, blocks: &[usize]) -> Result<Perplexity> {
        let j = shared_boundary(&self.boundaries, blocks);
        let k = self.boundaries[j];
        let windows = self
            .ids
            .iter()
            .zip(&self.states)
            .map(|(ids, st)| {
                Ok(self
                    .model
                    .token_nll_from(&st[j], k, ids, blocks, self.score_from)?
                    .to_vec1::<f32>()?)
            })
            .collect::<Result<Vec<_>>>()?;
        summarise(windows, self.ctx)
    }
}

/// The token ids `llama-perplexity` scores for a model whose vocabulary asks for a BOS token
/// (`tokenizer.ggml.add_bos_token`, e.g. Gemma 3): it tokenizes the text with a leading BOS and
/// then overwrites the first token of every window of `ctx` with BOS (llama.cpp
/// `tools/perplexity`, `tokens[batch_start] = bos`). `bos = None` returns `tokens` unchanged.
/// [`perplexity`] on the result scores the same predictions llama.cpp does.
pub fn bos_windows(tokens: &[u32], ctx: usize, bos: Option<u32>) -> Vec<u32> {
    let Some(bos) = bos else {
        return tokens.to_vec();
    };
    let mut out = Vec::with_capacity(tokens.len() + 1);
    out.push(bos);
    out.extend_from_slice(tokens);
    if ctx > 0 {
        for w in (0..out.len()).step_by(ctx) {
            out[w] = bos;
        }
    }
    out
}

/// Put `bos` at every `period`-th position of `tokens` (0, period, 2·period, …), in place: the
/// windows and probe sequences cut at those positions then start with BOS as the model was
/// trained (Gemma 3 asks for it, `tokenizer.ggml.add_bos_token`; SmolLM2 does not). Overwriting
/// rather than inserting keeps every count and offset, as `llama-perplexity` does per window.
pub fn set_bos_every(tokens: &mut [u32], period: usize, bos: Option<u32>) {
    if let (Some(bos), true) = (bos, period > 0) {
        for t in tokens.iter_mut().step_by(period) {
            *t = bos;
        }
    }
}

/// Mean and standard error of the per-token difference `a − b` of two models' cross-entropies
/// on the same tokens (so the mean is ln(ppl_a / ppl_b)). Neighbouring tokens' losses are
/// correlated, so the SE is by batch means: the spread of the means of consecutive blocks of
/// `block` tokens, SE = sd(block means)/√B over the B whole blocks (Flegal & Jones, Ann. Stat.
/// 38 (2010), batch means; docs/derivations/prune.md#paired-differences). NaN when the lengths
/// differ or fewer than two blocks fit.
pub fn paired_difference(a: &[f64], b: &[f64], block: usize) -> (f64, f64) {
    if a.len() != b.len() || a.is_empty() || block == 0 {
        return (f64::NAN, f64::NAN);
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let means: Vec<f64> = d
        .chunks_exact(block)
        .map(|c| c.iter().sum::<f64>() / block as f64)
        .collect();
    let k = means.len() as f64;
    if k < 2.0 {
        return (mean, f64::NAN);
    }
    let m = means.iter().sum::<f64>() / k;
    let var = means.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1.0);
    (mean, (var / k).sqrt())
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

#[cfg(test)]
mod tests {
    use super::paired_difference;

    #[test]
    fn paired_difference_is_the_mean_difference_with_a_batch_means_se() {
        // A constant shift has SE 0; the mean is exact whatever the block length.
        let b: Vec<f64> = (0..40).map(|i| (i as f64 * 0.7).sin() + 3.0).collect();
        let a: Vec<f64> = b.iter().map(|x| x - 0.25).collect();
        let (m, se) = paired_difference(&a, &b, 8);
        assert!((m + 0.25).abs() < 1e-12 && se < 1e-12, "{m} {se}");
        // Differences alternating ±1 within blocks of 2 average to 0 per block (SE 0), while
        // block means 0, 2, 0, 2 (blocks of 2 tokens: (−1, 1), (1, 3), …) give the textbook
        // SE sd/√B = √(4/3)/√4 = 0.5774.
        let d = [-1.0, 1.0, 1.0, 3.0, -1.0, 1.0, 1.0, 3.0];
        let zero = [0.0; 8];
        let (m, se) = paired_difference(&d, &zero, 2);
        assert!((m - 1.0).abs() < 1e-12);
        assert!((se - (4.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12, "{se}");
        // Too few blocks or mismatched lengths: NaN, never a made-up 0.
        assert!(paired_difference(&d, &zero, 8).1.is_nan());
        assert!(paired_difference(&d, &zero[..7], 2).0.is_nan());
    }
}
