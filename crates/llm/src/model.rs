//! Our own Llama forward pass on candle (f32 weights), readable in one sitting.
//!
//! Per block l (pre-norm residual, Touvron et al. 2023):
//!   h = x + W_o · Attn(RoPE(W_q · rms(x)), RoPE(W_k · rms(x)), W_v · rms(x))   (causal, GQA)
//!   x' = h + W_down · (silu(W_gate · rms(h)) ⊙ W_up · rms(h))
//! logits = W_out · rms(x^(L)) with W_out tied to the embedding when the checkpoint has none.
//!
//! Gemma 3 (`gemma3` GGUF; Gemma Team, "Gemma 3 Technical Report", arXiv 2503.19786, §2) runs
//! through the same blocks with [`Gemma3Config`] and a [`GemmaBlock`] per block
//! (docs/derivations/prune.md#gemma-3-forward):
//!   x^(0) = √d · E[ids]
//!   q, k = RoPE_NEOX(rms_h(W_q · rms(x)), θ_l), RoPE_NEOX(rms_h(W_k · rms(x)), θ_l)   (per head)
//!   h = x + rms(W_o · Attn_l(q, k, W_v · rms(x)))                        (post-attention norm)
//!   x' = h + rms(W_down · (gelu_tanh(W_gate · rms(h)) ⊙ W_up · rms(h)))  (post-FFN norm)
//! where a local (sliding-window) block attends to the last `sliding_window` positions only and
//! uses θ_l = `rope_local_theta`, and a global block attends causally to all positions with
//! θ_l = `rope_theta`. Each block carries its own type, so a pruned model keeps it.
//!
//! candle-transformers' quantized Llama hides its blocks and returns only last-position logits;
//! the `prune` study needs every block's output, block skipping and LoRA, hence this file.
//! The fused candle ops (`rms_norm`, `softmax_last_dim`, `rope_i`) have no backward; with
//! `train = true` the composed, differentiable ones are used instead.

use candle_core::{DType, Device, Tensor, Var, D};
use serde::Serialize;

use crate::{LlmError, Result};

/// How RoPE pairs the coordinates of a head: GGUF `llama` files store Q/K rows permuted so
/// that pairs are adjacent (`Interleaved`, llama.cpp's default); Hugging Face checkpoints pair
/// coordinate i with i + d/2 (`Half`, NEOX style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Pairs (2i, 2i + 1), the layout of GGUF `llama` files.
    Interleaved,
    /// Pairs (i, i + d/2), the layout of Hugging Face checkpoints.
    Half,
}

/// Architecture hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    /// Number of transformer blocks L.
    pub n_layers: usize,
    /// Residual-stream width d.
    pub hidden: usize,
    /// Attention (query) heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention; divides `n_heads`).
    pub n_kv_heads: usize,
    /// Hidden width of the gated MLP.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// ε of RMSNorm.
    pub rms_eps: f64,
    /// RoPE base frequency θ (10 000 when the checkpoint has none).
    pub rope_theta: f64,
    /// How RoPE pairs coordinates.
    pub rope: RopeStyle,
    /// Maximum context length from the checkpoint (exported again; not enforced here).
    pub context: usize,
    /// Gemma 3's extra hyper-parameters; `None` for Llama-family models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gemma: Option<Gemma3Config>,
}

/// Hyper-parameters of a Gemma 3 model beyond the Llama ones (GGUF `gemma3.*`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gemma3Config {
    /// Per-head width of queries, keys and values (`attention.key_length`; 256 for the 270M
    /// model, whose 4 heads make queries 1024 wide on a 640-wide residual stream).
    pub head_dim: usize,
    /// Window of the local blocks: position i attends to j only when i − j < `sliding_window`
    /// (llama.cpp `is_masked_swa`, standard type).
    pub sliding_window: usize,
    /// RoPE base of the local blocks (10 000 unless the GGUF has `gemma3.rope.freq_base_swa`).
    pub rope_local_theta: f64,
}

impl LlamaConfig {
    /// Per-head dimension: d / `n_heads`, or Gemma 3's `head_dim`.
    pub fn head_dim(&self) -> usize {
        match &self.gemma {
            Some(g) => g.head_dim,
            None => self.hidden / self.n_heads,
        }
    }
    /// Check that the sizes are non-zero, the heads divide evenly (even head size), and the RoPE
    /// base θ and the RMSNorm ε are finite and positive (θ = 0 makes every rotation angle
    /// infinite, so the hidden states become NaN).
    pub fn validate(&self) -> Result<()> {
        let bad = |p: String| Err(LlmError::invalid("model config", p));
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return bad(format!(
                "rope_theta {} (the RoPE base must be finite and > 0, e.g. 10000 or 100000)",
                self.rope_theta
            ));
        }
        if !(self.rms_eps >= 0.0 && self.rms_eps.is_finite()) {
            return bad(format!(
                "rms_norm_eps {} (must be finite and ≥ 0, e.g. 1e-5)",
                self.rms_eps
            ));
        }
        if self.n_layers == 0 || self.hidden == 0 || self.n_heads == 0 || self.vocab == 0 {
            return bad(format!("empty dimension in {self:?}"));
        }
        if let Some(g) = &self.gemma {
            if g.head_dim == 0 || !g.head_dim.is_multiple_of(2) || g.sliding_window == 0 {
                return bad(format!(
                    "Gemma 3 head width {} (must be even and > 0) or sliding window {} (> 0)",
                    g.head_dim, g.sliding_window
                ));
            }
            if !(g.rope_local_theta > 0.0 && g.rope_local_theta.is_finite()) {
                return bad(format!(
                    "local RoPE base {} (must be finite and > 0)",
                    g.rope_local_theta
                ));
            }
        } else if !self.hidden.is_multiple_of(self.n_heads) || !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "hidden {} not divisible into {} heads of even size",
                self.hidden, self.n_heads
            ));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} heads not a multiple of {} KV heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        Ok(())
    }
}

/// Names of the seven linear maps of a block (LoRA targets).
pub const TARGETS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// A LoRA adapter: y += (alpha / r) · B A x, A ∈ R^{r×in}, B ∈ R^{out×r} (Hu et al. 2021).
#[derive(Debug, Clone)]
pub struct Lora {
    /// A ∈ ℝ^{r×in}.
    pub a: Var,
    /// B ∈ ℝ^{out×r}.
    pub b: Var,
    /// alpha / r.
    pub scale: f64,
    /// Inverted dropout on the adapter's input while healing (Hu et al. 2021 use it on x
    /// before A): each entry kept with probability 1 − p and scaled by 1/(1 − p).
    pub dropout: Option<LoraDropout>,
}

/// Dropout state of one adapter: the probability and its own seeded generator, so a healing
/// run is reproducible.
#[derive(Debug, Clone)]
pub struct LoraDropout {
    /// Probability of zeroing an entry.
    pub p: f64,
    rng: std::sync::Arc<std::sync::Mutex<rand_xoshiro::Xoshiro256PlusPlus>>,
}

impl LoraDropout {
    /// x with each entry zeroed with probability p and the rest scaled by 1/(1 − p).
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        use rand::Rng;
        let keep = 1.0 - self.p;
        let scale = (1.0 / keep) as f32;
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if rng.random::<f64>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        Ok((x * mask)?)
    }
}

/// A linear map `y = x Wᵀ` with W ∈ R^{out×in}, f32, and an optional LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight W ∈ ℝ^{out×in}.
    pub w: Tensor,
    /// Optional LoRA adapter added to the output.
    pub lora: Option<Lora>,
}

impl Linear {
    /// A plain linear map with weight `w` and no adapter.
    pub fn new(w: Tensor) -> Self {
        Linear { w, lora: None }
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.broadcast_matmul(&self.w.t()?)?;
        Ok(match &self.lora {
            None => y,
            Some(l) => {
                let ax = match &l.dropout {
                    Some(d) => d.apply(x)?.broadcast_matmul(&l.a.as_tensor().t()?)?,
                    None => x.broadcast_matmul(&l.a.as_tensor().t()?)?,
                };
                let bax = ax.broadcast_matmul(&l.b.as_tensor().t()?)?;
                (y + (bax * l.scale)?)?
            }
        })
    }
    /// W + scale · B A (the weight a merged export writes).
    pub fn merged(&self) -> Result<Tensor> {
        Ok(match &self.lora {
            None => self.w.clone(),
            Some(l) => (&self.w + (l.b.as_tensor().matmul(l.a.as_tensor())? * l.scale)?)?,
        })
    }
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    /// RMSNorm weight before attention, [hidden].
    pub attn_norm: Tensor,
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Attention output projection.
    pub o: Linear,
    /// RMSNorm weight before the MLP, [hidden].
    pub ffn_norm: Tensor,
    /// Gate projection (through SiLU).
    pub gate: Linear,
    /// Up projection.
    pub up: Linear,
    /// Down projection back to the residual stream.
    pub down: Linear,
    /// Gemma 3's extra norms and the block's attention type; `None` for Llama.
    pub gemma: Option<GemmaBlock>,
}

/// What a Gemma 3 block has beyond a Llama block. The GGUF norm weights already include
/// Gemma's `1 +` offset, so every norm here is a plain x / rms(x) ⊙ w.
#[derive(Debug, Clone)]
pub struct GemmaBlock {
    /// RMSNorm weight of each query head, [head_dim] (before RoPE).
    pub q_norm: Tensor,
    /// RMSNorm weight of each key head, [head_dim] (before RoPE).
    pub k_norm: Tensor,
    /// RMSNorm weight on the attention output before the residual add, [hidden].
    pub post_attn_norm: Tensor,
    /// RMSNorm weight on the MLP output before the residual add, [hidden].
    pub post_ffn_norm: Tensor,
    /// True for a global block (full causal attention, RoPE base `rope_theta`); false for a
    /// local one (sliding window, `rope_local_theta`). In the source model block l is global
    /// when l % 6 == 5 (llama.cpp `set_swa_pattern(6)`), unless the GGUF lists the types.
    pub global: bool,
}

/// Attention inputs for one call: RoPE tables and the mask, for the global blocks and (Gemma 3)
/// the local ones.
struct AttnTables {
    global: (Tensor, Tensor, Tensor),
    local: Option<(Tensor, Tensor, Tensor)>,
}

impl AttnTables {
    fn for_block(&self, blk: &Block) -> (&Tensor, &Tensor, &Tensor) {
        let t = match (&blk.gemma, &self.local) {
            (Some(g), Some(l)) if !g.global => l,
            _ => &self.global,
        };
        (&t.0, &t.1, &t.2)
    }
}

impl Block {
    /// The linear map named `name` (one of [`TARGETS`]).
    pub fn linear(&self, name: &str) -> Option<&Linear> {
        Some(match name {
            "q" => &self.q,
            "k" => &self.k,
            "v" => &self.v,
            "o" => &self.o,
            "gate" => &self.gate,
            "up" => &self.up,
            "down" => &self.down,
            _ => return None,
        })
    }
    /// The linear map named `name` (one of [`TARGETS`]), mutably.
    pub fn linear_mut(&mut self, name: &str) -> Option<&mut Linear> {
        Some(match name {
            "q" => &mut self.q,
            "k" => &mut self.k,
            "v" => &mut self.v,
            "o" => &mut self.o,
            "gate" => &mut self.gate,
            "up" => &mut self.up,
            "down" => &mut self.down,
            _ => return None,
        })
    }
}

/// A Llama-architecture decoder.
#[derive(Debug, Clone)]
pub struct Llama {
    /// Architecture hyperparameters.
    pub cfg: LlamaConfig,
    /// Token embedding, [vocab, hidden].
    pub embed: Tensor,
    /// The transformer blocks, in order.
    pub blocks: Vec<Block>,
    /// Final RMSNorm weight, [hidden].
    pub norm: Tensor,
    /// Output projection [vocab, hidden]; `None` when tied to the embedding.
    pub lm_head: Option<Tensor>,
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, train: bool) -> Result<Tensor> {
    Ok(if train {
        candle_nn::ops::rms_norm_slow(x, w, eps as f32)?
    } else {
        candle_nn::ops::rms_norm(x, w, eps as f32)?
    })
}

impl Llama {
    /// The device holding the weights.
    pub fn device(&self) -> Device {
        self.embed.device().clone()
    }

    /// Blocks 0..L in order (the unpruned model).
    pub fn all_blocks(&self) -> Vec<usize> {
        (0..self.blocks.len()).collect()
    }

    /// RoPE tables cos/sin ∈ R^{T×d/2}: angle(t, i) = t · θ^{−2i/d}.
    fn rope_tables(&self, t: usize, theta: f64) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.head_dim();
        let mut cos = Vec::with_capacity(t * d / 2);
        let mut sin = Vec::with_capacity(t * d / 2);
        for p in 0..t {
            for i in 0..d / 2 {
                let a = p as f64 * theta.powf(-2.0 * i as f64 / d as f64);
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let dev = self.device();
        Ok((
            Tensor::from_vec(cos, (t, d / 2), &dev)?,
            Tensor::from_vec(sin, (t, d / 2), &dev)?,
        ))
    }

    /// RoPE tables and masks for positions `p..p+t` attending to keys `0..p+t`: causal, and for
    /// Gemma 3's local blocks also j > i − `sliding_window` (llama.cpp `is_masked_swa`).
    fn attn_tables(&self, p: usize, t: usize) -> Result<AttnTables> {
        let dev = self.device();
        let mask = |window: usize| -> Result<Tensor> {
            let m: Vec<f32> = (0..t)
                .flat_map(|i| {
                    (0..p + t).map(move |j| {
                        if j > p + i || p + i - j >= window {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            Ok(Tensor::from_vec(m, (t, p + t), &dev)?)
        };
        let tables = |theta: f64, window: usize| -> Result<(Tensor, Tensor, Tensor)> {
            let (cos, sin) = self.rope_tables(p + t, theta)?;
            Ok((cos.narrow(0, p, t)?, sin.narrow(0, p, t)?, mask(window)?))
        };
        Ok(AttnTables {
            global: tables(self.cfg.rope_theta, usize::MAX)?,
            local: match &self.cfg.gemma {
                Some(g)
                    if self
                        .blocks
                        .iter()
                        .any(|b| b.gemma.as_ref().is_some_and(|g| !g.global)) =>
                {
                    Some(tables(g.rope_local_theta, g.sliding_window)?)
                }
                _ => None,
            },
        })
    }

    /// The embedding rows of `ids` [N], times √d for Gemma 3 (its embedding scale).
    fn embed_rows(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.embed.embedding(ids)?;
        Ok(match &self.cfg.gemma {
            Some(_) => (x * (self.cfg.hidden as f32).sqrt() as f64)?,
            None => x,
        })
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, train: bool) -> Result<Tensor> {
        use candle_nn::rotary_emb as r;
        let x = x.contiguous()?;
        Ok(match (self.cfg.rope, train) {
            (RopeStyle::Interleaved, false) => r::rope_i(&x, cos, sin)?,
            (RopeStyle::Interleaved, true) => r::rope_i_slow(&x, cos, sin)?,
            (RopeStyle::Half, false) => r::rope(&x, cos, sin)?,
            (RopeStyle::Half, true) => r::rope_slow(&x, cos, sin)?,
        })
    }

    fn block_forward(
        &self,
        blk: &Block,
        x: &Tensor,
        tables: &AttnTables,
        train: bool,
    ) -> Result<Tensor> {
        let (cos, sin, mask) = tables.for_block(blk);
        Ok(self
            .block_forward_kv(blk, x, cos, sin, mask, train, None)?
            .0)
    }

    /// One block on `x` [B, T, d] whose T positions follow the `past` keys and values (post-RoPE,
    /// [B, n_kv, P, head_dim], before the GQA expansion); `cos`/`sin` are the rows of positions
    /// P..P+T and `mask` is [T, P+T]. Returns the block output and the keys and values of all
    /// P+T positions (the cache for the next call).
    #[allow(clippy::too_many_arguments)]
    fn block_forward_kv(
        &self,
        blk: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        train: bool,
        past: Option<&(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim());
        let h = rms_norm(x, &blk.attn_norm, self.cfg.rms_eps, train)?;
        let q = blk
            .q
            .forward(&h)?
            .reshape((b, t, nh, hd))?
            .transpose(1, 2)?;
        let k = blk
            .k
            .forward(&h)?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?;
        let v = blk
            .v
            .forward(&h)?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?;
        let (q, k) = match &blk.gemma {
            // Gemma 3: RMSNorm of each query and key head (over its head_dim coordinates).
            Some(g) => (
                rms_norm(&q.contiguous()?, &g.q_norm, self.cfg.rms_eps, train)?,
                rms_norm(&k.contiguous()?, &g.k_norm, self.cfg.rms_eps, train)?,
            ),
            None => (q, k),
        };
        let q = self.rope(&q, cos, sin, train)?;
        let k = self.rope(&k, cos, sin, train)?;
        let (k, v) = match past {
            None => (k, v.contiguous()?),
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
        };
        let kv = (k.clone(), v.clone());
        let s = k.dim(2)?;
        // Grouped-query attention: query head j reads KV head j / (nh / nkv).
        let rep = nh / nkv;
        let expand = |z: Tensor| -> Result<Tensor> {
            if rep == 1 {
                return Ok(z.contiguous()?);
            }
            Ok(z.unsqueeze(2)?
                .expand((b, nkv, rep, s, hd))?
                .reshape((b, nh, s, hd))?)
        };
        let k = expand(k)?;
        let v = expand(v)?;
        let att = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(mask)?;
        let att = if train {
            candle_nn::ops::softmax(&att, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&att)?
        };
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        let Some(gb) = &blk.gemma else {
            let x = (x + blk.o.forward(&y)?)?;
            let h = rms_norm(&x, &blk.ffn_norm, self.cfg.rms_eps, train)?;
            let g = blk.gate.forward(&h)?.silu()?;
            let u = blk.up.forward(&h)?;
            return Ok(((&x + blk.down.forward(&(g * u)?)?)?, kv));
        };
        // Gemma 3: sandwich norms and GeGLU (gelu with the tanh approximation, as ggml's).
        let eps = self.cfg.rms_eps;
        let a = rms_norm(&blk.o.forward(&y)?, &gb.post_attn_norm, eps, train)?;
        let x = (x + a)?;
        let h = rms_norm(&x, &blk.ffn_norm, eps, train)?;
        let g = blk.gate.forward(&h)?.gelu()?;
        let u = blk.up.forward(&h)?;
        let m = rms_norm(&blk.down.forward(&(g * u)?)?, &gb.post_ffn_norm, eps, train)?;
        Ok(((&x + m)?, kv))
    }

    /// Inference with a key/value cache: the logits [T, vocab] of `ids` (one sequence) placed
    /// after the positions already in `cache`, through `blocks`, and the cache extended by
    /// `ids`. The result equals rows P..P+T of [`Llama::logits`] on the cached tokens followed
    /// by `ids` (causal attention: position t reads only keys ≤ t, and the keys of earlier
    /// positions do not depend on later tokens), so a shared prefix runs once. `cache = None`
    /// starts an empty one; the given cache is not modified (it can be reused for other
    /// continuations). With `last_only` only the last position's logits are computed ([1, vocab]:
    /// the output map costs vocab × d per row, a fifth of SmolLM2-135M's per-token work).
    pub fn logits_cached(
        &self,
        ids: &[u32],
        blocks: &[usize],
        cache: Option<&KvCache>,
        last_only: bool,
    ) -> Result<(Tensor, KvCache)> {
        if ids.is_empty() {
            return Err(LlmError::invalid("token ids", "empty sequence"));
        }
        let x = self.embed_ids(ids)?;
        let (x, kv) = self.stream_cached(x, blocks, cache, |_, _| Ok(()))?;
        Ok((self.head_logits(&x, last_only)?, kv))
    }

    /// The embedding output x^(0) [1, T, d] of one sequence of token ids.
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let ids_t = Tensor::new(ids, &self.device())?;
        Ok(self
            .embed_rows(&ids_t)?
            .reshape((1, ids.len(), self.cfg.hidden))?)
    }

    /// The residual stream `x` [1, T, d] of T positions placed after those in `cache`, run
    /// through `blocks` with the key/value cache (the cache's blocks must be `blocks`), calling
    /// `visit(k, x)` with the input (k = 0) and after each block (k = 1, 2, …). Returns the
    /// final stream and the cache extended by these positions. [`Llama::logits_cached`] is
    /// this from the embedding; a pruned model that shares blocks 0..k with the whole model
    /// can start from the whole model's x^(k) with the cache of its remaining blocks.
    pub fn stream_cached(
        &self,
        mut x: Tensor,
        blocks: &[usize],
        cache: Option<&KvCache>,
        mut visit: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<(Tensor, KvCache)> {
        let t = x.dim(1)?;
        if t == 0 {
            return Err(LlmError::invalid("token ids", "empty sequence"));
        }
        if let Some(&bad) = blocks.iter().find(|&&l| l >= self.blocks.len()) {
            return Err(LlmError::invalid(
                "blocks",
                format!("block {bad} ≥ {} blocks", self.blocks.len()),
            ));
        }
        let p = match cache {
            Some(c) => {
                if c.blocks != blocks {
                    return Err(LlmError::invalid(
                        "KV cache",
                        "built for other blocks than this call's",
                    ));
                }
                c.len
            }
            None => 0,
        };
        let tables = self.attn_tables(p, t)?;
        let mut kv = Vec::with_capacity(blocks.len());
        visit(0, &x)?;
        for (k, &l) in blocks.iter().enumerate() {
            let past = cache.map(|c| &c.kv[k]);
            let blk = &self.blocks[l];
            let (cos, sin, mask) = tables.for_block(blk);
            let (y, new) = self.block_forward_kv(blk, &x, cos, sin, mask, false, past)?;
            x = y;
            visit(k + 1, &x)?;
            kv.push(new);
        }
        Ok((
            x,
            KvCache {
                kv,
                len: p + t,
                blocks: blocks.to_vec(),
            },
        ))
    }

    /// log p(target_r | row r) for final residual-stream rows `x` [R, d] (output norm, map,
    /// log-softmax over the vocabulary, then the target's entry). Many rows in one call: the
    /// output map's matrix (vocab × d) is packed once per call by the matrix product, which
    /// for a few rows costs more than the product itself.
    pub fn head_target_logprobs(&self, x: &Tensor, targets: &[u32]) -> Result<Vec<f32>> {
        let x = rms_norm(&x.unsqueeze(0)?, &self.norm, self.cfg.rms_eps, false)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let logits = x.broadcast_matmul(&head.t()?)?.squeeze(0)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let t = Tensor::new(targets, &self.device())?.unsqueeze(1)?;
        Ok(logp.gather(&t, 1)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Logits [T, vocab] of a final residual stream `x` [1, T, d] (output norm and map); only
    /// the last position's ([1, vocab]) with `last_only`.
    pub fn head_logits(&self, x: &Tensor, last_only: bool) -> Result<Tensor> {
        let t = x.dim(1)?;
        let x = if last_only {
            x.narrow(1, t - 1, 1)?
        } else {
            x.clone()
        };
        let x = rms_norm(&x, &self.norm, self.cfg.rms_eps, false)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(x.broadcast_matmul(&head.t()?)?.squeeze(0)?)
    }

    /// Run the residual stream through `blocks` (indices into `self.blocks`, in order), calling
    /// `visit(k, x)` with x^(0) (the embedding output) and after each block (k = 1, 2, ...).
    /// Returns the final residual stream x^(L), before the output norm.
    pub fn residual_stream(
        &self,
        ids: &Tensor,
        blocks: &[usize],
        train: bool,
        mut visit: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if t == 0 {
            return Err(LlmError::invalid("token ids", "empty sequence"));
        }
        if let Some(&bad) = blocks.iter().find(|&&l| l >= self.blocks.len()) {
            return Err(LlmError::invalid(
                "blocks",
                format!("block {bad} ≥ {} blocks", self.blocks.len()),
            ));
        }
        let tables = self.attn_tables(0, t)?;
        let mut x =
            self.embed_rows(&ids.flatten_all()?)?
                .reshape((ids.dim(0)?, t, self.cfg.hidden))?;
        visit(0, &x)?;
        for (k, &l) in blocks.iter().enumerate() {
            x = self.block_forward(&self.blocks[l], &x, &tables, train)?;
            visit(k + 1, &x)?;
        }
        Ok(x)
    }

    /// The residual streams x^(k) of `ids` [B, T] after the first k blocks of the whole model,
    /// for each k of `at` (ascending, each ≤ the number of blocks; k = 0 is the embedding
    /// output). One forward pass through blocks 0..max(at); what
    /// [`Llama::token_nll_from`] continues from.
    pub fn prefix_states(&self, ids: &Tensor, at: &[usize]) -> Result<Vec<Tensor>> {
        let top = at.iter().copied().max().unwrap_or(0);
        if top > self.blocks.len() || at.windows(2).any(|w| w[0] >= w[1]) {
            return Err(LlmError::invalid(
                "prefix boundaries",
                format!(
                    "{at:?}: need ascending block counts ≤ {}",
                    self.blocks.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(at.len());
        let prefix: Vec<usize> = (0..top).collect();
        self.residual_stream(ids, &prefix, false, |k, x| {
            if at.contains(&k) {
                out.push(x.clone());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Llama::token_nll`] (inference) of `ids` [B, T] through `blocks`, given `x` = the
    /// residual stream after `blocks[..k]` (from [`Llama::prefix_states`] with k = the length of
    /// the prefix `blocks` shares with 0, 1, 2, …): only `blocks[k..]` and the output map run.
    /// The same operations on the same inputs as the full pass, so the same numbers.
    pub fn token_nll_from(
        &self,
        x: &Tensor,
        k: usize,
        ids: &Tensor,
        blocks: &[usize],
        from: usize,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if from + 1 >= t || k > blocks.len() || blocks[..k].iter().enumerate().any(|(i, &l)| i != l)
        {
            return Err(LlmError::invalid(
                "scoring window",
                format!("nothing to score from {from} of {t}, or blocks[..{k}] is not 0..{k}"),
            ));
        }
        let tables = self.attn_tables(0, t)?;
        let mut x = x.clone();
        for &l in &blocks[k..] {
            if l >= self.blocks.len() {
                return Err(LlmError::invalid(
                    "blocks",
                    format!("block {l} ≥ {} blocks", self.blocks.len()),
                ));
            }
            x = self.block_forward(&self.blocks[l], &x, &tables, false)?;
        }
        self.scored_nll(&x, ids, b, from, false)
    }

    /// Logits [B, T, vocab] of token ids [B, T] through `blocks`.
    pub fn logits(&self, ids: &Tensor, blocks: &[usize], train: bool) -> Result<Tensor> {
        let x = self.residual_stream(ids, blocks, train, |_, _| Ok(()))?;
        let x = rms_norm(&x, &self.norm, self.cfg.rms_eps, train)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        Ok(x.broadcast_matmul(&head.t()?)?)
    }

    /// Summed next-token cross-entropy (nats) over positions `from..T-1` of each row of `ids`
    /// [B, T], and the number of scored tokens.
    pub fn nll(
        &self,
        ids: &Tensor,
        blocks: &[usize],
        from: usize,
        train: bool,
    ) -> Result<(Tensor, usize)> {
        let per_token = self.token_nll(ids, blocks, from, train)?;
        let n = per_token.dim(0)?;
        Ok((per_token.sum_all()?, n))
    }

    /// The cross-entropies −log p(x_{t+1} | x_≤t) of every scored next token (positions
    /// `from`..T−1 of each row, row-major): a vector of length B·(T − 1 − from) whose sum is
    /// [`Llama::nll`]; kept per token for paired comparisons of two models on the same
    /// text ([`crate::eval::paired_difference`]).
    pub fn token_nll(
        &self,
        ids: &Tensor,
        blocks: &[usize],
        from: usize,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if from + 1 >= t {
            return Err(LlmError::invalid(
                "scoring window",
                format!("nothing to score: from {from}, length {t}"),
            ));
        }
        let x = self.residual_stream(ids, blocks, train, |_, _| Ok(()))?;
        self.scored_nll(&x, ids, b, from, train)
    }

    /// The output norm, the output map and the cross-entropies of positions `from..T−1` of the
    /// final residual stream `x` [B, T, d] against the next tokens of `ids` [B, T].
    fn scored_nll(
        &self,
        x: &Tensor,
        ids: &Tensor,
        b: usize,
        from: usize,
        train: bool,
    ) -> Result<Tensor> {
        let n = ids.dim(1)? - 1 - from;
        // Only the scored positions go through the output map (vocab × d per row: for Gemma
        // 3's 262,144-token vocabulary most of the work).
        let x = x.narrow(1, from, n)?.contiguous()?;
        let x = rms_norm(&x, &self.norm, self.cfg.rms_eps, train)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let pred = x
            .broadcast_matmul(&head.t()?)?
            .reshape((b * n, self.cfg.vocab))?;
        let target = ids.narrow(1, from + 1, n)?.flatten_all()?;
        let logp = candle_nn::ops::log_softmax(&pred, D::Minus1)?;
        Ok((logp.gather(&target.unsqueeze(1)?, 1)?.flatten_all()? * -1.0)?)
    }

    /// Attach fresh LoRA adapters (A ~ N(0, 1/in), B = 0, so the model is unchanged) to the
    /// `targets` of every block; returns the new trainable variables.
    pub fn attach_lora(
        &mut self,
        rank: usize,
        alpha: f64,
        targets: &[String],
        seed: u64,
    ) -> Result<Vec<Var>> {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        if rank == 0 {
            return Err(LlmError::invalid("--lora-rank", "must be ≥ 1"));
        }
        for t in targets {
            if !TARGETS.contains(&t.as_str()) {
                return Err(LlmError::invalid(
                    "LoRA target",
                    format!("{t:?} is not one of {TARGETS:?}"),
                ));
            }
        }
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let dev = self.device();
        let mut vars = Vec::new();
        for blk in &mut self.blocks {
            for t in targets {
                let lin = blk.linear_mut(t).expect("checked above");
                let (out, inp) = lin.w.dims2()?;
                let normal =
                    rand_distr::Normal::new(0.0f32, (1.0 / inp as f32).sqrt()).expect("finite");
                let a: Vec<f32> = (0..rank * inp).map(|_| normal.sample(&mut rng)).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (rank, inp), &dev)?)?;
                let b = Var::from_tensor(&Tensor::zeros((out, rank), DType::F32, &dev)?)?;
                vars.push(a.clone());
                vars.push(b.clone());
                lin.lora = Some(Lora {
                    a,
                    b,
                    scale: alpha / rank as f64,
                    dropout: None,
                });
            }
        }
        Ok(vars)
    }

    /// Dropout probability `p` on the input of every attached adapter (0: none), each adapter
    /// with its own generator seeded from `seed` and its position.
    pub fn set_lora_dropout(&mut self, p: f64, seed: u64) {
        use rand::SeedableRng;
        let mut i = 0u64;
        for blk in &mut self.blocks {
            for t in TARGETS {
                let lin = blk.linear_mut(t).expect("known target");
                if let Some(l) = &mut lin.lora {
                    l.dropout = (p > 0.0).then(|| LoraDropout {
                        p,
                        rng: std::sync::Arc::new(std::sync::Mutex::new(
                            rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(
                                seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                            ),
                        )),
                    });
                    i += 1;
                }
            }
        }
    }

    /// Fold every LoRA adapter into its weight and drop the adapters.
    pub fn merge_lora(&mut self) -> Result<()> {
        for blk in &mut self.blocks {
            for t in TARGETS {
                let lin = blk.linear_mut(t).expect("known target");
                if lin.lora.is_some() {
                    lin.w = lin.merged()?;
                    lin.lora = None;
                }
            }
        }
        Ok(())
    }

    /// The model with only `blocks` kept, in that order (a physically pruned copy).
    pub fn with_blocks(&self, blocks: &[usize]) -> Result<Llama> {
        if blocks.is_empty() {
            return Err(LlmError::invalid("pruning", "cannot drop every block"));
        }
        let mut m = self.clone();
        m.blocks = blocks
            .iter()
            .map(|&l| {
                self.blocks
                    .get(l)
                    .cloned()
                    .ok_or_else(|| LlmError::invalid("blocks", format!("block {l} does not exist")))
            })
            .collect::<Result<_>>()?;
        m.cfg.n_layers = m.blocks.len();
        Ok(m)
    }

    /// Number of parameters (embedding counted once when tied).
    pub fn n_params(&self) -> usize {
        let c = &self.cfg;
        let kv = c.n_kv_heads * c.head_dim();
        let q = c.n_heads * c.head_dim();
        let extra = if c.gemma.is_some() {
            2 * c.hidden + 2 * c.head_dim()
        } else {
            0
        };
        let per_block =
            2 * c.hidden + 2 * c.hidden * q + 2 * c.hidden * kv + 3 * c.hidden * c.ffn + extra;
        c.vocab * c.hidden * if self.lm_head.is_some() { 2 } else { 1 }
            + c.hidden
            + self.blocks.len() * per_block
    }
}

/// The keys and values of every kept block for the positions seen so far (post-RoPE,
/// [1, n_kv, len, head_dim] each), from [`Llama::logits_cached`].
#[derive(Debug, Clone)]
pub struct KvCache {
    kv: Vec<(Tensor, Tensor)>,
    len: usize,
    blocks: Vec<usize>,
}

impl KvCache {
    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Whether block `l` of a Gemma 3 model whose GGUF does not list the block types is global:
/// l % 6 == 5 (five local blocks, then one global; llama.cpp `set_swa_pattern(6)`, Gemma 3
/// report §2.1's 5:1 interleaving).
pub fn gemma3_global(l: usize) -> bool {
    l % 6 == 5
}

/// Reorder the rows of a Q or K weight between the two RoPE layouts. Hugging Face → GGUF
/// (llama.cpp `convert_hf_to_gguf.py`, `LlamaModel.permute`): rows [heads, 2, d/2] → [heads,
/// d/2, 2]; `to_interleaved = false` is the inverse.
pub fn permute_rope_rows(w: &Tensor, heads: usize, to_interleaved: bool) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let d = out / heads;
    Ok(if to_interleaved {
        w.reshape((heads, 2, d / 2, inp))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((out, inp))?
    } else {
        w.reshape((heads, d / 2, 2, inp))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((out, inp))?
    })
}

impl Llama {
    /// A randomly initialised model (weights N(0, 1/fan_in), norms 1), for tests and benchmarks.
    pub fn random(cfg: LlamaConfig, seed: u64) -> Result<Llama> {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        cfg.validate()?;
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let dev = Device::Cpu;
        let mut mat = |out: usize, inp: usize| -> Result<Tensor> {
            let nrm = rand_distr::Normal::new(0.0f32, (1.0 / inp as f32).sqrt()).expect("finite");
            let v: Vec<f32> = (0..out * inp).map(|_| nrm.sample(&mut rng)).collect();
            Ok(Tensor::from_vec(v, (out, inp), &dev)?)
        };
        let ones = |n: usize| Tensor::ones(n, DType::F32, &Device::Cpu);
        let (d, f, kv) = (cfg.hidden, cfg.ffn, cfg.n_kv_heads * cfg.head_dim());
        let qd = cfg.n_heads * cfg.head_dim();
        let embed = mat(cfg.vocab, d)?;
        let mut blocks = Vec::new();
        for l in 0..cfg.n_layers {
            blocks.push(Block {
                attn_norm: ones(d)?,
                q: Linear::new(mat(qd, d)?),
                k: Linear::new(mat(kv, d)?),
                v: Linear::new(mat(kv, d)?),
                o: Linear::new(mat(d, qd)?),
                ffn_norm: ones(d)?,
                gate: Linear::new(mat(f, d)?),
                up: Linear::new(mat(f, d)?),
                down: Linear::new(mat(d, f)?),
                gemma: match &cfg.gemma {
                    Some(_) => Some(GemmaBlock {
                        q_norm: ones(cfg.head_dim())?,
                        k_norm: ones(cfg.head_dim())?,
                        post_attn_norm: ones(d)?,
                        post_ffn_norm: ones(d)?,
                        global: gemma3_global(l),
                    }),
                    None => None,
                },
            });
        }
        Ok(Llama {
            norm: ones(d)?,
            embed,
            blocks,
            lm_head: None,
            cfg,
        })
    }
}
