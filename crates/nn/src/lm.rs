//! The character tokenizer and the *reference* model of the collapse study's language model: a
//! small decoder-only transformer (GPT-style, pre-LayerNorm) in candle, trained by candle's
//! autograd and AdamW. The study trains, evaluates and samples with the hand-written
//! [`crate::gpt_kernel::GptKernel`], which draws its initial values from this model and is
//! tested against its forward pass, gradients and updates.
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
}

impl Gpt {
    /// Fresh parameters, seeded. candle's CPU device cannot be seeded, so every parameter is
    /// re-drawn from our own stream after construction: GPT-2's N(0, 0.02²) for embeddings and
    /// linear weights, zeros for biases, ones/zeros for LayerNorm.
    pub fn new(cfg: LmConfig, seed: u64) -> Result<Self, NnError> {
        if !cfg.d_model.is_multiple_of(cfg.n_head) || cfg.vocab == 0 || cfg.ctx == 0 {
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

    /// Mean next-token cross-entropy (nats) over windows of ctx + 1 tokens, differentiable.
    pub fn loss(&self, windows: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t1) = windows.dims2()?;
        let x = windows.narrow(1, 0, t1 - 1)?;
        let y = windows.narrow(1, 1, t1 - 1)?;
        let logits = self.forward_mode(&x, true)?;
        candle_nn::loss::cross_entropy(
            &logits.reshape((b * (t1 - 1), self.cfg.vocab))?,
            &y.reshape(b * (t1 - 1))?,
        )
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

    /// Train with AdamW for `epochs` passes over `tokens` (in random windows); returns the
    /// number of steps. `on_step(step, loss)` sees every step.
    pub fn train(
        &self,
        tokens: &[u32],
        rng: &mut Xoshiro256PlusPlus,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> Result<usize, NnError> {
        let steps = self.cfg.steps_for(tokens)?;
        let mut opt = AdamW::new(
            self.varmap.all_vars(),
            ParamsAdamW {
                lr: self.cfg.lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        for s in 0..steps {
            let b = self.cfg.random_windows(tokens, rng);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_round_trip_and_errors() {
        let t = CharTokenizer::from_text("to be or not").unwrap();
        assert_eq!(t.decode(&t.encode("be not").unwrap()), "be not");
        assert!(t.encode("xyz").is_err());
        assert!(CharTokenizer::from_text("").is_err());
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
}
