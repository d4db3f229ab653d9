//! Our own Llama forward pass on candle (f32 weights), readable in one sitting.
//!
//! Per block l (pre-norm residual, Touvron et al. 2023):
//!   h = x + W_o · Attn(RoPE(W_q · rms(x)), RoPE(W_k · rms(x)), W_v · rms(x))   (causal, GQA)
//!   x' = h + W_down · (silu(W_gate · rms(h)) ⊙ W_up · rms(h))
//! logits = W_out · rms(x^(L)) with W_out tied to the embedding when the checkpoint has none.
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
}

impl LlamaConfig {
    /// Per-head dimension d / `n_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.n_heads
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
        if !self.hidden.is_multiple_of(self.n_heads) || !self.head_dim().is_multiple_of(2) {
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
                let ax = x.broadcast_matmul(&l.a.as_tensor().t()?)?;
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
    fn rope_tables(&self, t: usize) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.head_dim();
        let mut cos = Vec::with_capacity(t * d / 2);
        let mut sin = Vec::with_capacity(t * d / 2);
        for p in 0..t {
            for i in 0..d / 2 {
                let a = p as f64 * self.cfg.rope_theta.powf(-2.0 * i as f64 / d as f64);
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
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
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
        let x = (x + blk.o.forward(&y)?)?;
        let h = rms_norm(&x, &blk.ffn_norm, self.cfg.rms_eps, train)?;
        let g = blk.gate.forward(&h)?.silu()?;
        let u = blk.up.forward(&h)?;
        Ok(((&x + blk.down.forward(&(g * u)?)?)?, kv))
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
        let t = ids.len();
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
        let (cos, sin) = self.rope_tables(p + t)?;
        let (cos, sin) = (cos.narrow(0, p, t)?, sin.narrow(0, p, t)?);
        let m: Vec<f32> = (0..t)
            .flat_map(|i| (0..p + t).map(move |j| if j > p + i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let dev = self.device();
        let mask = Tensor::from_vec(m, (t, p + t), &dev)?;
        let ids_t = Tensor::new(ids, &dev)?;
        let mut x = self
            .embed
            .embedding(&ids_t)?
            .reshape((1, t, self.cfg.hidden))?;
        let mut kv = Vec::with_capacity(blocks.len());
        for (k, &l) in blocks.iter().enumerate() {
            let past = cache.map(|c| &c.kv[k]);
            let (y, new) =
                self.block_forward_kv(&self.blocks[l], &x, &cos, &sin, &mask, false, past)?;
            x = y;
            kv.push(new);
        }
        let x = if last_only { x.narrow(1, t - 1, 1)? } else { x };
        let x = rms_norm(&x, &self.norm, self.cfg.rms_eps, false)?;
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let logits = x.broadcast_matmul(&head.t()?)?.squeeze(0)?;
        Ok((
            logits,
            KvCache {
                kv,
                len: p + t,
                blocks: blocks.to_vec(),
            },
        ))
    }

    fn causal_mask(&self, t: usize) -> Result<Tensor> {
        let m: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        Ok(Tensor::from_vec(m, (t, t), &self.device())?)
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
        let (cos, sin) = self.rope_tables(t)?;
        let mask = self.causal_mask(t)?;
        let mut x = self.embed.embedding(&ids.flatten_all()?)?.reshape((
            ids.dim(0)?,
            t,
            self.cfg.hidden,
        ))?;
        visit(0, &x)?;
        for (k, &l) in blocks.iter().enumerate() {
            x = self.block_forward(&self.blocks[l], &x, &cos, &sin, &mask, train)?;
            visit(k + 1, &x)?;
        }
        Ok(x)
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
        let logits = self.logits(ids, blocks, train)?;
        let n = t - 1 - from;
        let pred = logits
            .narrow(1, from, n)?
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
                });
            }
        }
        Ok(vars)
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
        let per_block =
            2 * c.hidden + 2 * c.hidden * c.hidden + 2 * c.hidden * kv + 3 * c.hidden * c.ffn;
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
        let embed = mat(cfg.vocab, d)?;
        let mut blocks = Vec::new();
        for _ in 0..cfg.n_layers {
            blocks.push(Block {
                attn_norm: ones(d)?,
                q: Linear::new(mat(d, d)?),
                k: Linear::new(mat(kv, d)?),
                v: Linear::new(mat(kv, d)?),
                o: Linear::new(mat(d, d)?),
                ffn_norm: ones(d)?,
                gate: Linear::new(mat(f, d)?),
                up: Linear::new(mat(f, d)?),
                down: Linear::new(mat(d, f)?),
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
