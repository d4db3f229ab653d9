//! The GPT's sizes and the layout of its parameters: the one list of names and shapes that the
//! candle reference model ([`crate::lm::Gpt`], whose `VarMap` uses these names) and the
//! hand-written step ([`crate::gpt_kernel`], which keeps the values in this order) share.

use crate::layout::Layout;
use serde::{Deserialize, Serialize};

/// Model and training sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LmConfig {
    /// Vocabulary size (number of token ids).
    pub vocab: usize,
    /// Context length in tokens.
    pub ctx: usize,
    /// Residual-stream width.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block (d_model must be divisible by it).
    pub n_head: usize,
    /// Windows per training step.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Passes over the training tokens per fit.
    pub epochs: f64,
}

/// The parameters of one block, in layout order (`h{i}.` + name).
pub const BLOCK_PARAMS: [&str; 12] = [
    "ln1.weight",
    "ln1.bias",
    "qkv.weight",
    "qkv.bias",
    "proj.weight",
    "proj.bias",
    "ln2.weight",
    "ln2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
];

impl LmConfig {
    /// Names and shapes: token and position embeddings, then each block's [`BLOCK_PARAMS`]
    /// (Linear weights out × in, as candle stores them), then the final LayerNorm and head.
    pub fn layout(&self) -> Layout {
        let (d, v) = (self.d_model, self.vocab);
        let mut l = Layout::default();
        l.push("tok.weight", &[v, d])
            .push("pos.weight", &[self.ctx, d]);
        for i in 0..self.n_layer {
            let shapes: [&[usize]; 12] = [
                &[d],
                &[d],
                &[3 * d, d],
                &[3 * d],
                &[d, d],
                &[d],
                &[d],
                &[d],
                &[4 * d, d],
                &[4 * d],
                &[d, 4 * d],
                &[d],
            ];
            for (name, shape) in BLOCK_PARAMS.iter().zip(shapes) {
                l.push(format!("h{i}.{name}"), shape);
            }
        }
        l.push("ln_f.weight", &[d])
            .push("ln_f.bias", &[d])
            .push("head.weight", &[v, d])
            .push("head.bias", &[v]);
        l
    }

    /// Parameter names in layout order.
    pub fn param_names(&self) -> Vec<String> {
        self.layout()
            .entries()
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    /// Steps of one fit: ⌈epochs · |tokens| / (batch · ctx)⌉, at least 1. A text of at most
    /// ctx + 1 tokens holds no training window and is refused.
    pub fn steps_for(&self, tokens: &[u32]) -> Result<usize, crate::NnError> {
        if tokens.len() < self.ctx + 2 {
            return Err(crate::NnError::Invalid {
                what: format!("training text of {} tokens", tokens.len()),
                fix: format!("give more than the context length {} + 1 tokens", self.ctx),
            });
        }
        let per_step = (self.batch * self.ctx) as f64;
        Ok(((self.epochs * tokens.len() as f64) / per_step)
            .ceil()
            .max(1.0) as usize)
    }

    /// `batch` windows of ctx + 1 tokens at uniform random starts (batch × (ctx + 1),
    /// row-major): the minibatch of one training step.
    pub fn random_windows(
        &self,
        tokens: &[u32],
        rng: &mut rand_xoshiro::Xoshiro256PlusPlus,
    ) -> Vec<u32> {
        use rand::Rng;
        let w = self.ctx + 1;
        let mut v = Vec::with_capacity(self.batch * w);
        for _ in 0..self.batch {
            let s = rng.random_range(0..tokens.len() - w);
            v.extend_from_slice(&tokens[s..s + w]);
        }
        v
    }

    /// Index (in layout order) of block `i`'s first parameter.
    pub fn block_start(&self, i: usize) -> usize {
        2 + BLOCK_PARAMS.len() * i
    }

    /// Index of the final LayerNorm's weight (followed by its bias, the head weight and bias).
    pub fn head_start(&self) -> usize {
        self.block_start(self.n_layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_indices_name_the_parameters_they_claim() {
        let c = LmConfig {
            vocab: 11,
            ctx: 7,
            d_model: 8,
            n_layer: 3,
            n_head: 2,
            batch: 1,
            lr: 1e-3,
            epochs: 1.0,
        };
        let l = c.layout();
        assert_eq!(l.entry(c.block_start(2)).name, "h2.ln1.weight");
        assert_eq!(l.entry(c.block_start(1) + 10).name, "h1.fc2.weight");
        assert_eq!(l.entry(c.head_start() + 2).shape, vec![11, 8]);
        assert_eq!(l.entries().len(), c.head_start() + 4);
    }
}
