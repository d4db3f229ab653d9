//! A small decoder-only transformer language model on characters (GPT-style, pre-LayerNorm),
//! for the model-collapse study: train on text, sample text at temperature 1 with a KV cache,
//! and measure cross-entropy on real held-out text.
//!
//! Layout follows nanoGPT: token + learned position embeddings, `n_layer` blocks of causal
//! multi-head self-attention and a 4× GELU MLP, a final LayerNorm and an untied linear head.

use crate::NnError;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{
    embedding, layer_norm, linear, AdamW, Embedding, LayerNorm, Linear, Optimizer, ParamsAdamW,
    VarBuilder, VarMap,
};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Character vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharTokenizer {
    /// The vocabulary, sorted; token id i is `chars[i]`.
    pub chars: Vec<char>,
}

impl CharTokenizer {
    /// The sorted set of characters of `text` (errors on an empty text).
    pub fn from_text(text: &str) -> Result<Self, NnError> {
        let set: BTreeSet<char> = text.chars().collect();
        if set.is_empty() {
            return Err(NnError::Invalid {
                what: "corpus".into(),
                fix: "the text is empty: point --text at a non-empty UTF-8 file".into(),
            });
        }
        Ok(Self {
            chars: set.into_iter().collect(),
        })
    }
    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.chars.len()
    }
    /// Token ids; characters outside the vocabulary are an error naming them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, NnError> {
        text.chars()
            .map(|c| {
                self.chars
                    .binary_search(&c)
                    .map(|i| i as u32)
                    .map_err(|_| NnError::Invalid {
                        what: format!("character {c:?}"),
                        fix: "it is not in the training vocabulary".into(),
                    })
            })
            .collect()
    }
    /// Text of token ids (`?` for an id outside the vocabulary).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.chars.get(i as usize).copied().unwrap_or('?'))
            .collect()
    }
}

/// LayerNorm (eps 1e-5): candle's fused op for inference, the composed differentiable form for
/// training (the fused op detaches its output).
fn norm(l: &LayerNorm, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
    if !train {
        return l.forward(x);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
    let y = xn.broadcast_mul(l.weight())?;
    match l.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

pub use crate::gpt_config::LmConfig;

struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The transformer with its parameters.
pub struct Gpt {
    /// Sizes and training hyperparameters.
    pub cfg: LmConfig,
    /// The candle variables, named as in [`crate::gpt_config`].
    pub varmap: VarMap,
    tok: Embedding,
    pos: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
    dev: Device,
    /// Train with the hand-written step of [`crate::gpt_kernel`] (same model and update, ≈ 8×
    /// faster on CPU); `false` uses candle's autograd. On by default.
    pub fast: bool,
}

impl Gpt {
    /// Fresh parameters, seeded. candle's CPU device cannot be seeded, so every parameter is
    /// re-drawn from our own stream after construction: GPT-2's N(0, 0.02²) for embeddings and
    /// linear weights, zeros for biases, ones/zeros for LayerNorm.
    pub fn new(cfg: LmConfig, seed: u64) -> Result<Self, NnError> {
        if cfg.d_model % cfg.n_head != 0 || cfg.vocab == 0 || cfg.ctx == 0 {
            return Err(NnError::Invalid {
                what: format!("LM sizes {cfg:?}"),
                fix: "d_model must be a multiple of n_head; vocab and ctx > 0".into(),
            });
        }
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let d = cfg.d_model;
        let tok = embedding(cfg.vocab, d, vb.pp("tok"))?;
        let pos = embedding(cfg.ctx, d, vb.pp("pos"))?;
        let mut blocks = vec![];
        for i in 0..cfg.n_layer {
            let b = vb.pp(format!("h{i}"));
            blocks.push(Block {
                ln1: layer_norm(d, 1e-5, b.pp("ln1"))?,
                qkv: linear(d, 3 * d, b.pp("qkv"))?,
                proj: linear(d, d, b.pp("proj"))?,
                ln2: layer_norm(d, 1e-5, b.pp("ln2"))?,
                fc1: linear(d, 4 * d, b.pp("fc1"))?,
                fc2: linear(4 * d, d, b.pp("fc2"))?,
            });
        }
        let ln_f = layer_norm(d, 1e-5, vb.pp("ln_f"))?;
        let head = linear(d, cfg.vocab, vb.pp("head"))?;
        crate::reinit_seeded(&varmap, seed, |name, dims, rng| {
            let n: usize = dims.iter().product();
            if name.contains("ln") {
                vec![if name.ends_with("weight") { 1.0 } else { 0.0 }; n]
            } else if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                (0..n)
                    .map(|_| 0.02 * rng.sample::<f32, _>(rand_distr::StandardNormal))
                    .collect()
            }
        })?;
        Ok(Self {
            cfg,
            varmap,
            tok,
            pos,
            blocks,
            ln_f,
            head,
            dev,
            fast: true,
        })
    }

    fn split_heads(&self, x: &Tensor, b: usize, t: usize) -> candle_core::Result<Tensor> {
        let h = self.cfg.n_head;
        x.reshape((b, t, h, self.cfg.d_model / h))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Logits (B, T, V) for token ids (B, T), T ≤ ctx, with causal attention (inference: fused
    /// ops).
    pub fn forward(&self, idx: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_mode(idx, false)
    }

    /// Logits with `train = true`: differentiable LayerNorm and softmax. candle's fused
    /// `layer_norm` and `softmax_last_dim` have no backward and *detach* their outputs, which
    /// silently stops every gradient at them (no gradient to Q/K, to the LayerNorms, or through
    /// a LayerNorm to earlier blocks).
    pub fn forward_mode(&self, idx: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let (b, t) = idx.dims2()?;
        let d = self.cfg.d_model;
        let pos = Tensor::arange(0u32, t as u32, &self.dev)?;
        let mut x = self
            .tok
            .forward(idx)?
            .broadcast_add(&self.pos.forward(&pos)?)?;
        let mask: Vec<f32> = (0..t * t)
            .map(|k| {
                if k % t > k / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &self.dev)?;
        let scale = 1.0 / ((d / self.cfg.n_head) as f64).sqrt();
        for blk in &self.blocks {
            let qkv = blk.qkv.forward(&norm(&blk.ln1, &x, train)?)?;
            let q = self.split_heads(&qkv.narrow(2, 0, d)?, b, t)?;
            let k = self.split_heads(&qkv.narrow(2, d, d)?, b, t)?;
            let v = self.split_heads(&qkv.narrow(2, 2 * d, d)?, b, t)?;
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let att = if train {
                candle_nn::ops::softmax(&att, D::Minus1)?
            } else {
                candle_nn::ops::softmax_last_dim(&att)?
            };
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
            x = (x + blk.proj.forward(&y)?)?;
            let m = blk
                .fc2
                .forward(&blk.fc1.forward(&norm(&blk.ln2, &x, train)?)?.gelu_erf()?)?;
            x = (x + m)?;
        }
        self.head.forward(&norm(&self.ln_f, &x, train)?)
    }

    /// Mean next-token cross-entropy (nats) over windows of `tokens`, differentiable.
    pub fn loss(&self, windows: &Tensor) -> candle_core::Result<Tensor> {
        self.loss_mode(windows, true)
    }

    fn loss_mode(&self, windows: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let (b, t1) = windows.dims2()?;
        let x = windows.narrow(1, 0, t1 - 1)?;
        let y = windows.narrow(1, 1, t1 - 1)?;
        let logits = self.forward_mode(&x, train)?;
        candle_nn::loss::cross_entropy(
            &logits.reshape((b * (t1 - 1), self.cfg.vocab))?,
            &y.reshape(b * (t1 - 1))?,
        )
    }

    /// Random windows of ctx + 1 tokens (batch × (ctx + 1), row-major).
    fn batch(&self, tokens: &[u32], rng: &mut Xoshiro256PlusPlus) -> Vec<u32> {
        let w = self.cfg.ctx + 1;
        let mut v = Vec::with_capacity(self.cfg.batch * w);
        for _ in 0..self.cfg.batch {
            let s = rng.random_range(0..tokens.len() - w);
            v.extend_from_slice(&tokens[s..s + w]);
        }
        v
    }

    /// Parameter values in [`crate::gpt_kernel::param_names`] order.
    pub fn params_in_order(&self) -> Result<Vec<Vec<f32>>, NnError> {
        let data = self.varmap.data().lock().map_err(|_| NnError::Invalid {
            what: "parameter map".into(),
            fix: "a thread panicked while holding it".into(),
        })?;
        self.cfg
            .param_names()
            .iter()
            .map(|n| {
                let var = data.get(n).ok_or_else(|| NnError::Invalid {
                    what: format!("transformer parameter {n}"),
                    fix: "internal: parameter names of Gpt and gpt_kernel disagree".into(),
                })?;
                Ok(var.as_tensor().flatten_all()?.to_vec1::<f32>()?)
            })
            .collect()
    }

    /// [`Gpt::sample`] through the hand-written sampler of [`crate::gpt_kernel::sample`] when
    /// `fast` is set (same model and random protocol; ≈ 10× faster), else candle's.
    pub fn sample_auto(
        &self,
        streams: usize,
        len: usize,
        start: &[u32],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Vec<Vec<u32>>, NnError> {
        if self.fast {
            let params = self.params_in_order()?;
            Ok(crate::gpt_kernel::sample(
                &self.cfg, &params, streams, len, start, rng,
            ))
        } else {
            self.sample(streams, len, start, rng)
        }
    }

    /// Training with [`crate::gpt_kernel::GptKernel`]: parameters copied out of the `VarMap`,
    /// trained, copied back.
    fn train_fast(
        &self,
        tokens: &[u32],
        steps: usize,
        rng: &mut Xoshiro256PlusPlus,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> Result<(), NnError> {
        let names = self.cfg.param_names();
        let params = self.params_in_order()?;
        let data = self.varmap.data().lock().map_err(|_| NnError::Invalid {
            what: "parameter map".into(),
            fix: "a thread panicked while holding it".into(),
        })?;
        let get = |n: &str| {
            data.get(n).ok_or_else(|| NnError::Invalid {
                what: format!("transformer parameter {n}"),
                fix: "internal: parameter names of Gpt and gpt_kernel disagree".into(),
            })
        };
        let mut f = crate::gpt_kernel::GptKernel::new(self.cfg, params);
        for s in 0..steps {
            let b = self.batch(tokens, rng);
            let l = f.step(&b, self.cfg.lr);
            if !l.is_finite() {
                return Err(NnError::Diverged { step: s, loss: l });
            }
            on_step(s, l);
        }
        for (n, p) in names.iter().zip(f.p) {
            let var = get(n)?;
            var.set(&Tensor::from_vec(
                p,
                var.as_tensor().shape().clone(),
                &self.dev,
            )?)?;
        }
        Ok(())
    }

    /// Train with AdamW for `epochs` passes over `tokens` (in random windows); returns the
    /// number of steps. `on_step(step, loss)` sees every step.
    pub fn train(
        &self,
        tokens: &[u32],
        rng: &mut Xoshiro256PlusPlus,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> Result<usize, NnError> {
        if tokens.len() < self.cfg.ctx + 2 {
            return Err(NnError::Invalid {
                what: format!("training text of {} tokens", tokens.len()),
                fix: format!("need more than the context length {} + 1", self.cfg.ctx),
            });
        }
        let per_step = self.cfg.batch * self.cfg.ctx;
        let steps = ((self.cfg.epochs * tokens.len() as f64) / per_step as f64)
            .ceil()
            .max(1.0) as usize;
        if self.fast {
            self.train_fast(tokens, steps, rng, on_step)?;
            return Ok(steps);
        }
        let mut opt = AdamW::new(
            self.varmap.all_vars(),
            ParamsAdamW {
                lr: self.cfg.lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        for s in 0..steps {
            let b = self.batch(tokens, rng);
            let b = Tensor::from_vec(b, (self.cfg.batch, self.cfg.ctx + 1), &self.dev)?;
            let loss = self.loss(&b)?;
            let l = loss.to_scalar::<f32>()? as f64;
            if !l.is_finite() {
                return Err(NnError::Diverged { step: s, loss: l });
            }
            opt.backward_step(&loss)?;
            on_step(s, l);
        }
        Ok(steps)
    }

    /// Cross-entropy (nats/char) on consecutive non-overlapping windows of `tokens`.
    pub fn evaluate(&self, tokens: &[u32]) -> Result<f64, NnError> {
        let w = self.cfg.ctx + 1;
        let n = (tokens.len() - 1) / self.cfg.ctx;
        if n == 0 {
            return Err(NnError::Invalid {
                what: "held-out text".into(),
                fix: format!("need more than {} tokens", w),
            });
        }
        let mut total = 0.0;
        for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
            let mut v = Vec::with_capacity(chunk.len() * w);
            for &i in chunk {
                v.extend_from_slice(&tokens[i * self.cfg.ctx..i * self.cfg.ctx + w]);
            }
            let t = Tensor::from_vec(v, (chunk.len(), w), &self.dev)?;
            total += self.loss_mode(&t, false)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        Ok(total / n as f64)
    }

    /// Sample `streams` sequences of `len` ≤ ctx tokens at temperature 1, each starting from a
    /// token drawn from `start` (uniformly), with a per-layer KV cache.
    pub fn sample(
        &self,
        streams: usize,
        len: usize,
        start: &[u32],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Vec<Vec<u32>>, NnError> {
        let len = len.min(self.cfg.ctx);
        let d = self.cfg.d_model;
        let scale = 1.0 / ((d / self.cfg.n_head) as f64).sqrt();
        let mut seqs: Vec<Vec<u32>> = (0..streams)
            .map(|_| vec![start[rng.random_range(0..start.len())]])
            .collect();
        // Preallocated caches written in place (candle's `KvCache`): growing them by `cat` left
        // every step's copy behind in the allocator (18 GB for 2048 streams of 64 tokens).
        let mut cache: Vec<candle_nn::kv_cache::KvCache> = (0..self.blocks.len())
            .map(|_| candle_nn::kv_cache::KvCache::new(2, len))
            .collect();
        for t in 0..len - 1 {
            let ids = Tensor::from_vec(
                seqs.iter().map(|s| s[t]).collect::<Vec<u32>>(),
                (streams, 1),
                &self.dev,
            )?;
            let pos = Tensor::new(&[t as u32], &self.dev)?;
            let mut x = self
                .tok
                .forward(&ids)?
                .broadcast_add(&self.pos.forward(&pos)?)?;
            for (blk, c) in self.blocks.iter().zip(cache.iter_mut()) {
                let qkv = blk.qkv.forward(&blk.ln1.forward(&x)?)?;
                let q = self.split_heads(&qkv.narrow(2, 0, d)?, streams, 1)?;
                let k = self.split_heads(&qkv.narrow(2, d, d)?, streams, 1)?;
                let v = self.split_heads(&qkv.narrow(2, 2 * d, d)?, streams, 1)?;
                let (k, v) = c.append(&k.contiguous()?, &v.contiguous()?)?;
                let att =
                    candle_nn::ops::softmax_last_dim(&(q.matmul(&k.contiguous()?.t()?)? * scale)?)?;
                let y = att
                    .matmul(&v.contiguous()?)?
                    .transpose(1, 2)?
                    .reshape((streams, 1, d))?;
                x = (x + blk.proj.forward(&y)?)?;
                let m = blk
                    .fc2
                    .forward(&blk.fc1.forward(&blk.ln2.forward(&x)?)?.gelu_erf()?)?;
                x = (x + m)?;
            }
            let logits = self.head.forward(&self.ln_f.forward(&x)?)?.squeeze(1)?;
            let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F64)?)?
                .to_vec2::<f64>()?;
            for (s, p) in seqs.iter_mut().zip(&probs) {
                let u: f64 = rng.random();
                let mut acc = 0.0;
                let mut pick = p.len() - 1;
                for (i, &pi) in p.iter().enumerate() {
                    acc += pi;
                    if u < acc {
                        pick = i;
                        break;
                    }
                }
                s.push(pick as u32);
            }
        }
        let _ = D::Minus1;
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokenizer_round_trip_and_errors() {
        let t = CharTokenizer::from_text("to be or not").unwrap();
        assert_eq!(t.decode(&t.encode("be not").unwrap()), "be not");
        assert!(t.encode("xyz").is_err());
        assert!(CharTokenizer::from_text("").is_err());
    }

    #[test]
    fn a_tiny_model_learns_a_repetitive_text() {
        let text = "abcdefgh".repeat(400);
        let tok = CharTokenizer::from_text(&text).unwrap();
        let ids = tok.encode(&text).unwrap();
        let cfg = LmConfig {
            vocab: tok.vocab(),
            ctx: 16,
            d_model: 32,
            n_layer: 1,
            n_head: 2,
            batch: 16,
            lr: 3e-3,
            epochs: 16.0,
        };
        let m = Gpt::new(cfg, 0).unwrap();
        let before = m.evaluate(&ids).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        m.train(&ids, &mut rng, &mut |_, _| {}).unwrap();
        let after = m.evaluate(&ids).unwrap();
        assert!(before > 1.5 && after < 0.3, "{before} → {after}");
        // Samples continue the cycle.
        let s = m.sample(4, 16, &[0], &mut rng).unwrap();
        let good = s
            .iter()
            .flat_map(|q| q.windows(2))
            .filter(|w| w[1] == (w[0] + 1) % 8)
            .count();
        assert!(good as f64 > 0.9 * 4.0 * 15.0, "{good}");
    }

    #[test]
    fn the_hand_written_sampler_draws_what_candle_draws() {
        // Same model, same seed: both samplers consume one uniform per stream per step, so a
        // stream differs only if some u falls within f32 rounding (≈ 1e-6) of a CDF boundary.
        // With 256 streams × 31 steps that happens to a handful at most.
        let cfg = LmConfig {
            vocab: 13,
            ctx: 32,
            d_model: 24,
            n_layer: 2,
            n_head: 3,
            batch: 4,
            lr: 1e-3,
            epochs: 1.0,
        };
        let m = Gpt::new(cfg, 5).unwrap();
        for (name, var) in m.varmap.data().lock().unwrap().iter() {
            // Larger weights than the init's, so the next-token distributions are far from
            // uniform and depend on the context.
            if !name.contains("ln") {
                let t = var.as_tensor();
                var.set(&(t * 20.0).unwrap()).unwrap();
            }
        }
        let start = [1u32, 4, 7];
        let a = m
            .sample(256, 32, &start, &mut Xoshiro256PlusPlus::seed_from_u64(9))
            .unwrap();
        let b = m
            .sample_auto(256, 32, &start, &mut Xoshiro256PlusPlus::seed_from_u64(9))
            .unwrap();
        assert_eq!(a.len(), b.len());
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same >= 250, "only {same} of 256 streams agree");
        assert!(b.iter().all(|q| q.len() == 32 && q.iter().all(|&t| t < 13)));
        // Not a degenerate model: the streams differ from each other.
        assert!(b.iter().any(|q| q != &b[0]));
    }

    #[test]
    fn every_parameter_gets_a_gradient_and_train_mode_matches_inference() {
        // The fused LayerNorm and softmax detach their outputs; the training forward must not
        // use them, or Q, K, the LayerNorms and the embeddings below a LayerNorm get no gradient.
        let cfg = LmConfig {
            vocab: 11,
            ctx: 8,
            d_model: 16,
            n_layer: 2,
            n_head: 2,
            batch: 2,
            lr: 1e-3,
            epochs: 1.0,
        };
        let m = Gpt::new(cfg, 3).unwrap();
        // Give the LayerNorms non-trivial parameters so their gradients are generic.
        for (name, var) in m.varmap.data().lock().unwrap().iter() {
            if name.contains("ln") {
                let t = var.as_tensor();
                var.set(&(t + 0.1).unwrap()).unwrap();
            }
        }
        let ids = Tensor::from_vec(
            (0..18u32).map(|i| (i * 7) % 11).collect::<Vec<_>>(),
            (2, 9),
            &Device::Cpu,
        )
        .unwrap();
        let x = ids.narrow(1, 0, 8).unwrap();
        let a = m.forward_mode(&x, true).unwrap();
        let b = m.forward_mode(&x, false).unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "train and inference forwards differ by {diff}");
        let grads = m.loss(&ids).unwrap().backward().unwrap();
        for (name, var) in m.varmap.data().lock().unwrap().iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let n = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0, "zero gradient for {name}");
        }
    }

    #[test]
    fn the_fast_step_trains_like_candle_autograd() {
        // Same init, same batches: the hand-written step and candle's autograd + AdamW give the
        // same losses (1e-4 relative: f32 rounding) and the same parameter updates (within 2 %
        // of the largest update: Adam divides by √v, which amplifies rounding where v ≈ 0).
        let cfg = LmConfig {
            vocab: 13,
            ctx: 8,
            d_model: 16,
            n_layer: 2,
            n_head: 2,
            batch: 4,
            lr: 3e-3,
            epochs: 1.0,
        };
        let tokens: Vec<u32> = (0..160u32).map(|i| (i * 7 + i / 5) % 13).collect();
        let run = |fast: bool| {
            let mut m = Gpt::new(cfg, 5).unwrap();
            m.fast = fast;
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
            let mut losses = vec![];
            let steps = m
                .train(&tokens, &mut rng, &mut |_, l| losses.push(l))
                .unwrap();
            let params: Vec<(String, Vec<f32>)> = {
                let data = m.varmap.data().lock().unwrap();
                let mut v: Vec<_> = data
                    .iter()
                    .map(|(n, t)| {
                        (
                            n.clone(),
                            t.as_tensor()
                                .flatten_all()
                                .unwrap()
                                .to_vec1::<f32>()
                                .unwrap(),
                        )
                    })
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            (steps, losses, params)
        };
        let (sa, la, pa) = run(true);
        let (sb, lb, pb) = run(false);
        assert_eq!(sa, sb);
        assert!(sa >= 4);
        for (a, b) in la.iter().zip(&lb) {
            assert!((a - b).abs() <= 1e-4 * b.abs(), "losses {la:?} vs {lb:?}");
        }
        let init = Gpt::new(cfg, 5).unwrap();
        let p0: std::collections::HashMap<String, Vec<f32>> = init
            .varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    t.as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                )
            })
            .collect();
        for ((na, a), (_, b)) in pa.iter().zip(&pb) {
            let z = &p0[na];
            let big = b.iter().zip(z).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(big > 0.0, "{na} did not move");
            assert!(
                diff <= 0.02 * big,
                "{na}: |fast − candle| {diff} vs update {big}"
            );
        }
    }
}
