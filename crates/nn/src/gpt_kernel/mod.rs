//! The character transformer of the collapse study, by hand on faer (f32, CPU): one block
//! forward ([`block_fwd`]) serves training (with its backward pass and AdamW), evaluation and
//! KV-cache sampling. The candle model [`crate::lm::Gpt`] is its reference (initial values,
//! forward, gradients and updates are tested against it).
//!
//! Why by hand: candle's autograd runs this small model at ≈ 0.15× PyTorch's speed on CPU (a
//! profile: a third of the time in its worker pool waiting, a sixth in page faults from one
//! allocation per op, GEMMs under 10 %). Here the activation buffers live across steps, the
//! GEMMs run in faer, attention runs one batch row per task on rayon, and the element-wise
//! loops are compiled for the widest vector unit the CPU has ([`crate::simd`]). The model
//! and the update are the same as `Gpt::train`'s (pre-LayerNorm blocks, causal multi-head
//! attention, GELU(erf) MLP, untied head, AdamW without weight decay); a test compares the two.
//!
//! The pieces and their backward rules are in `ops.rs`.

mod ops;
#[cfg(test)]
mod tests;

use faer::Par;
use ops::*;
pub use ops::{erf_f32, exp_f32};
use rayon::prelude::*;

use crate::gpt_config::LmConfig;
use crate::simd::{with_isa, Isa};
use crate::NnError;
use rand_xoshiro::Xoshiro256PlusPlus;
/// Per-layer activations kept for the backward pass.
#[derive(Default)]
struct LayerCache {
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    h1: Vec<f32>,
    qkv: Vec<f32>,
    p: Vec<f32>,
    y: Vec<f32>,
    x_mid: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    h2: Vec<f32>,
    u: Vec<f32>,
    a: Vec<f32>,
    /// GELU′(u).
    ga: Vec<f32>,
}

impl LayerCache {
    /// Buffers for `n` rows of width d and `probs` attention probabilities (0 when the
    /// attention reads a KV cache instead).
    fn new(n: usize, d: usize, probs: usize) -> Self {
        let z = |k: usize| vec![0f32; k];
        LayerCache {
            xhat1: z(n * d),
            rstd1: z(n),
            h1: z(n * d),
            qkv: z(n * 3 * d),
            p: z(probs),
            y: z(n * d),
            x_mid: z(n * d),
            xhat2: z(n * d),
            rstd2: z(n),
            h2: z(n * d),
            u: z(n * 4 * d),
            a: z(n * 4 * d),
            ga: z(n * 4 * d),
        }
    }
}

/// x_k = tok[id_k] + pos[position(k)] (rows of width d).
fn embed(
    x: &mut [f32],
    p: &[Vec<f32>],
    ids: &[usize],
    position: impl Fn(usize) -> usize,
    d: usize,
) {
    for (k, xr) in x.chunks_exact_mut(d).enumerate() {
        let (id, at) = (ids[k], position(k));
        let (tok, pos) = (&p[0][id * d..(id + 1) * d], &p[1][at * d..(at + 1) * d]);
        xr.iter_mut()
            .zip(tok.iter().zip(pos))
            .for_each(|(x, (a, b))| *x = a + b);
    }
}

/// Where a block's attention finds its keys and values.
enum Attention<'a> {
    /// Training and evaluation: all `tt` positions of every sequence at once, causally masked;
    /// the probabilities stay in the layer cache for the backward pass.
    Causal { tt: usize },
    /// Sampling: one new position `t` per stream, whose key and value are appended to the
    /// stream's cache (`len` positions × d each) before it attends to positions 0..=t.
    Cached {
        keys: &'a mut [f32],
        values: &'a mut [f32],
        t: usize,
        len: usize,
    },
}

/// One pre-LayerNorm block on the rows of `x`, in place (training, evaluation and sampling all
/// run this): x_mid = x + proj(attn(ln1(x))), x ← x_mid + fc2(GELU(fc1(ln2(x_mid)))).
/// Keeps in `lc` what the backward pass reads.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_fwd(
    p: &[Vec<f32>],
    b0: usize,
    x: &mut [f32],
    lc: &mut LayerCache,
    attention: Attention,
    c: &LmConfig,
    par: Par,
    isa: Isa,
) {
    let (d, hh) = (c.d_model, c.n_head);
    let n = x.len() / d;
    ln_fwd(
        &mut lc.h1,
        &mut lc.xhat1,
        &mut lc.rstd1,
        x,
        &p[b0],
        &p[b0 + 1],
        d,
    );
    linear_fwd(
        &mut lc.qkv,
        &lc.h1,
        &p[b0 + 2],
        &p[b0 + 3],
        n,
        d,
        3 * d,
        par,
    );
    match attention {
        Attention::Causal { tt } => lc
            .qkv
            .par_chunks(tt * 3 * d)
            .zip(lc.y.par_chunks_mut(tt * d))
            .zip(lc.p.par_chunks_mut(hh * tt * tt))
            .for_each(|((qkv, y), pp)| with_isa(isa, || attn_fwd(qkv, y, pp, tt, d, hh))),
        Attention::Cached {
            keys,
            values,
            t,
            len,
        } => lc
            .qkv
            .par_chunks(3 * d)
            .zip(lc.y.par_chunks_mut(d))
            .zip(keys.par_chunks_mut(len * d))
            .zip(values.par_chunks_mut(len * d))
            .for_each(|(((q3, y), kk), vv)| with_isa(isa, || attn_cached(q3, y, kk, vv, t, d, hh))),
    }
    linear_fwd(&mut lc.x_mid, &lc.y, &p[b0 + 4], &p[b0 + 5], n, d, d, par);
    lc.x_mid
        .iter_mut()
        .zip(x.iter())
        .for_each(|(m, xi)| *m += xi);
    ln_fwd(
        &mut lc.h2,
        &mut lc.xhat2,
        &mut lc.rstd2,
        &lc.x_mid,
        &p[b0 + 6],
        &p[b0 + 7],
        d,
    );
    linear_fwd(&mut lc.u, &lc.h2, &p[b0 + 8], &p[b0 + 9], n, d, 4 * d, par);
    lc.a.par_chunks_mut(ROWS * 4 * d)
        .zip(lc.ga.par_chunks_mut(ROWS * 4 * d))
        .zip(lc.u.par_chunks(ROWS * 4 * d))
        .for_each(|((a, ga), u)| with_isa(isa, || gelu_fwd(a, ga, u)));
    linear_fwd(x, &lc.a, &p[b0 + 10], &p[b0 + 11], n, 4 * d, d, par);
    x.iter_mut().zip(&lc.x_mid).for_each(|(o, m)| *o += m);
}

/// Every buffer of a step, kept across steps (sized for `bsz` sequences).
#[derive(Default)]
struct Work {
    bsz: usize,
    ids: Vec<usize>,
    tgt: Vec<usize>,
    x: Vec<f32>,
    layers: Vec<LayerCache>,
    hf: Vec<f32>,
    xhatf: Vec<f32>,
    rstdf: Vec<f32>,
    logits: Vec<f32>,
    dhf: Vec<f32>,
    dx: Vec<f32>,
    da: Vec<f32>,
    dh: Vec<f32>,
    dy: Vec<f32>,
    dqkv: Vec<f32>,
    dp: Vec<f32>,
    gh: Vec<f32>,
}

impl Work {
    fn new(c: &LmConfig, bsz: usize) -> Self {
        let (d, hh, tt, v) = (c.d_model, c.n_head, c.ctx, c.vocab);
        let n = bsz * tt;
        let z = |k: usize| vec![0f32; k];
        Work {
            bsz,
            ids: vec![0; n],
            tgt: vec![0; n],
            x: z(n * d),
            layers: (0..c.n_layer)
                .map(|_| LayerCache::new(n, d, bsz * hh * tt * tt))
                .collect(),
            hf: z(n * d),
            xhatf: z(n * d),
            rstdf: z(n),
            logits: z(n * v),
            dhf: z(n * d),
            dx: z(n * d),
            da: z(n * 4 * d),
            dh: z(n * d),
            dy: z(n * d),
            dqkv: z(n * 3 * d),
            dp: z(bsz * tt * tt),
            gh: z(d),
        }
    }
}

/// Forward pass and loss; leaves ∂loss/∂logits in `work.logits` and every activation the
/// backward pass reads.
#[inline(always)]
fn forward(c: &LmConfig, p: &[Vec<f32>], w: &mut Work, windows: &[u32], par: Par, isa: Isa) -> f64 {
    let (d, tt, v) = (c.d_model, c.ctx, c.vocab);
    let n = w.bsz * tt;
    let lf = c.head_start();
    for k in 0..n {
        let at = (k / tt) * (tt + 1) + k % tt;
        w.ids[k] = windows[at] as usize;
        w.tgt[k] = windows[at + 1] as usize;
    }
    embed(&mut w.x, p, &w.ids, |k| k % tt, d);
    for (i, lc) in w.layers.iter_mut().enumerate() {
        let attention = Attention::Causal { tt };
        block_fwd(p, c.block_start(i), &mut w.x, lc, attention, c, par, isa);
    }
    // Final norm, head, loss; the logits become ∂loss/∂logits in place.
    ln_fwd(
        &mut w.hf,
        &mut w.xhatf,
        &mut w.rstdf,
        &w.x,
        &p[lf],
        &p[lf + 1],
        d,
    );
    linear_fwd(&mut w.logits, &w.hf, &p[lf + 2], &p[lf + 3], n, d, v, par);
    let inv_n = 1.0 / n as f32;
    // Per-chunk sums, added in order: the same loss whatever the thread schedule.
    let chunk_loss: Vec<f64> = w
        .logits
        .par_chunks_mut(ROWS * v)
        .zip(w.tgt.par_chunks(ROWS))
        .map(|(rows, tgt)| with_isa(isa, || softmax_xent(rows, tgt, v, inv_n)))
        .collect();
    let loss: f64 = chunk_loss.iter().sum();
    loss / n as f64
}

/// Parameters (in `names` order), gradients and AdamW moments.
pub struct GptKernel {
    cfg: LmConfig,
    /// Parameter names, in layout order.
    pub names: Vec<String>,
    /// Parameter values, one flat row-major vector per name.
    pub p: Vec<Vec<f32>>,
    g: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
    par: Par,
    work: Work,
    /// Instruction set of the element-wise loops (default: the best this CPU has; every
    /// choice gives the same numbers).
    pub isa: Isa,
}

impl GptKernel {
    /// From parameter values in [`param_names`] order.
    pub fn new(cfg: LmConfig, params: Vec<Vec<f32>>) -> Self {
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        GptKernel {
            names: cfg.param_names(),
            cfg,
            g: zeros.clone(),
            m: zeros.clone(),
            v: zeros,
            p: params,
            t: 0,
            par: if threads > 1 {
                Par::rayon(threads)
            } else {
                Par::Seq
            },
            work: Work::default(),
            isa: Isa::best(),
        }
    }

    /// A fresh model with [`crate::lm::Gpt::new`]'s seeded initialisation (the candle reference
    /// model draws the values; the kernel keeps them).
    pub fn init(cfg: LmConfig, seed: u64) -> Result<Self, NnError> {
        Ok(Self::new(
            cfg,
            crate::lm::Gpt::new(cfg, seed)?.params_in_order()?,
        ))
    }

    /// Train for `epochs` passes over `tokens` in random windows ([`LmConfig::random_windows`],
    /// the same draws as the reference `Gpt::train`); returns the number of steps.
    /// `on_step(step, loss)` sees every step; a non-finite loss stops with
    /// [`NnError::Diverged`].
    pub fn train(
        &mut self,
        tokens: &[u32],
        rng: &mut Xoshiro256PlusPlus,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> Result<usize, NnError> {
        let steps = self.cfg.steps_for(tokens)?;
        for s in 0..steps {
            let windows = self.cfg.random_windows(tokens, rng);
            let l = self.step(&windows, self.cfg.lr);
            if !l.is_finite() {
                return Err(NnError::Diverged { step: s, loss: l });
            }
            on_step(s, l);
        }
        Ok(steps)
    }

    /// Cross-entropy (nats/token) on consecutive non-overlapping windows of `tokens`, 64
    /// windows per forward pass.
    pub fn evaluate(&self, tokens: &[u32]) -> Result<f64, NnError> {
        let ctx = self.cfg.ctx;
        let n = tokens.len().saturating_sub(1) / ctx;
        if n == 0 {
            return Err(NnError::Invalid {
                what: format!("held-out text of {} tokens", tokens.len()),
                fix: format!("give more than the context length {ctx} + 1 tokens"),
            });
        }
        let mut work = Work::default();
        let mut total = 0.0;
        for first in (0..n).step_by(64) {
            let k = (n - first).min(64);
            let windows: Vec<u32> = (first..first + k)
                .flat_map(|i| tokens[i * ctx..=(i + 1) * ctx].iter().copied())
                .collect();
            if work.bsz != k {
                work = Work::new(&self.cfg, k);
            }
            let loss = with_isa(self.isa, || {
                forward(&self.cfg, &self.p, &mut work, &windows, self.par, self.isa)
            });
            total += loss * k as f64;
        }
        Ok(total / n as f64)
    }

    /// Sample `streams` sequences of `len` ≤ ctx tokens at temperature 1 with a KV cache:
    /// each stream starts from a token drawn uniformly from `start`, then at every step one
    /// uniform u per stream picks the token by inverting the (f64) softmax CDF. (candle's
    /// batched attention over thousands of one-token streams was the collapse study's
    /// bottleneck: ≈ 140 s per 500 000 sampled characters at d = 128.)
    pub fn sample(
        &self,
        streams: usize,
        len: usize,
        start: &[u32],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Vec<Vec<u32>> {
        use rand::Rng;
        let c = self.cfg;
        let len = len.min(c.ctx);
        let mut seqs: Vec<Vec<u32>> = (0..streams)
            .map(|_| vec![start[rng.random_range(0..start.len())]])
            .collect();
        if len < 2 || streams == 0 {
            return seqs;
        }
        let (d, v, lf) = (c.d_model, c.vocab, c.head_start());
        // Per layer: every stream's keys (values), `len` positions × d.
        let mut keys = vec![vec![0f32; streams * len * d]; c.n_layer];
        let mut values = keys.clone();
        let mut lc = LayerCache::new(streams, d, 0);
        let z = |k: usize| vec![0f32; k];
        let (mut x, mut h, mut xh, mut rs) =
            (z(streams * d), z(streams * d), z(streams * d), z(streams));
        let mut logits = z(streams * v);
        let mut ids = vec![0usize; streams];
        with_isa(self.isa, || {
            for t in 0..len - 1 {
                ids.iter_mut()
                    .zip(&seqs)
                    .for_each(|(i, s)| *i = s[t] as usize);
                embed(&mut x, &self.p, &ids, |_| t, d);
                for (i, (kk, vv)) in keys.iter_mut().zip(&mut values).enumerate() {
                    let attention = Attention::Cached {
                        keys: kk,
                        values: vv,
                        t,
                        len,
                    };
                    block_fwd(
                        &self.p,
                        c.block_start(i),
                        &mut x,
                        &mut lc,
                        attention,
                        &c,
                        self.par,
                        self.isa,
                    );
                }
                ln_fwd(
                    &mut h,
                    &mut xh,
                    &mut rs,
                    &x,
                    &self.p[lf],
                    &self.p[lf + 1],
                    d,
                );
                linear_fwd(
                    &mut logits,
                    &h,
                    &self.p[lf + 2],
                    &self.p[lf + 3],
                    streams,
                    d,
                    v,
                    self.par,
                );
                for (sq, row) in seqs.iter_mut().zip(logits.chunks_exact(v)) {
                    sq.push(draw(row, rng.random()) as u32);
                }
            }
        });
        seqs
    }

    /// One AdamW step (lr, β = (0.9, 0.999), ε = 1e-8, no weight decay) on windows of
    /// ctx + 1 tokens (`batch` × (ctx + 1), row-major). Returns the mean next-token
    /// cross-entropy before the step.
    pub fn step(&mut self, windows: &[u32], lr: f64) -> f64 {
        self.size_work(windows);
        with_isa(self.isa, || {
            let loss = forward(
                &self.cfg,
                &self.p,
                &mut self.work,
                windows,
                self.par,
                self.isa,
            );
            self.backward_in_place();
            self.t += 1;
            // Adam (candle_nn::AdamW's update with weight decay 0), in [`crate::optim`].
            for (((p, g), m), v) in self
                .p
                .iter_mut()
                .zip(&self.g)
                .zip(&mut self.m)
                .zip(&mut self.v)
            {
                crate::optim::update(crate::optim::Optimizer::ADAM, p, g, m, v, lr, self.t);
            }
            loss
        })
    }

    fn size_work(&mut self, windows: &[u32]) {
        let bsz = windows.len() / (self.cfg.ctx + 1);
        if self.work.bsz != bsz {
            self.work = Work::new(&self.cfg, bsz);
        }
    }

    /// Gradients of the loss of the last [`forward`] into `self.g`.
    #[inline(always)]
    fn backward_in_place(&mut self) {
        let c = self.cfg;
        let (d, hh, tt, v) = (c.d_model, c.n_head, c.ctx, c.vocab);
        let w = &mut self.work;
        let n = w.bsz * tt;
        let par = self.par;
        let isa = self.isa;
        let base = |i: usize| c.block_start(i);
        let lf = c.head_start();
        for g in &mut self.g {
            g.iter_mut().for_each(|x| *x = 0.0);
        }
        // Backward.
        let (gl, gr) = self.g.split_at_mut(lf);
        {
            let (gw, gb) = gr[2..4].split_at_mut(1);
            linear_bwd(
                &w.logits,
                &w.hf,
                &self.p[lf + 2],
                &mut gw[0],
                &mut gb[0],
                Some(&mut w.dhf),
                n,
                d,
                v,
                par,
            );
        }
        w.dx.iter_mut().for_each(|x| *x = 0.0);
        {
            let (gg, gb) = gr[0..2].split_at_mut(1);
            ln_bwd(
                &mut w.dx,
                &w.dhf,
                &w.xhatf,
                &w.rstdf,
                &self.p[lf],
                &mut gg[0],
                &mut gb[0],
                &mut w.gh,
                d,
            );
        }
        for i in (0..c.n_layer).rev() {
            let b0 = base(i);
            let lc = &w.layers[i];
            let p = &self.p;
            let gi = &mut gl[b0..b0 + 12];
            // x_out = x_mid + fc2(gelu(fc1(ln2(x_mid)))).
            {
                let (wt, b) = gi[10..12].split_at_mut(1);
                linear_bwd(
                    &w.dx,
                    &lc.a,
                    &p[b0 + 10],
                    &mut wt[0],
                    &mut b[0],
                    Some(&mut w.da),
                    n,
                    4 * d,
                    d,
                    par,
                );
            }
            w.da.par_chunks_mut(ROWS * 4 * d)
                .zip(lc.ga.par_chunks(ROWS * 4 * d))
                .for_each(|(g, gd)| {
                    with_isa(isa, || g.iter_mut().zip(gd).for_each(|(g, gd)| *g *= gd))
                });
            {
                let (wt, b) = gi[8..10].split_at_mut(1);
                linear_bwd(
                    &w.da,
                    &lc.h2,
                    &p[b0 + 8],
                    &mut wt[0],
                    &mut b[0],
                    Some(&mut w.dh),
                    n,
                    d,
                    4 * d,
                    par,
                );
            }
            {
                let (g6, g7) = gi[6..8].split_at_mut(1);
                ln_bwd(
                    &mut w.dx,
                    &w.dh,
                    &lc.xhat2,
                    &lc.rstd2,
                    &p[b0 + 6],
                    &mut g6[0],
                    &mut g7[0],
                    &mut w.gh,
                    d,
                );
            }
            // dx is now ∂x_mid; x_mid = x_in + proj(attn(ln1(x_in))).
            {
                let (wt, b) = gi[4..6].split_at_mut(1);
                linear_bwd(
                    &w.dx,
                    &lc.y,
                    &p[b0 + 4],
                    &mut wt[0],
                    &mut b[0],
                    Some(&mut w.dy),
                    n,
                    d,
                    d,
                    par,
                );
            }
            w.dqkv
                .par_chunks_mut(tt * 3 * d)
                .zip(w.dy.par_chunks(tt * d))
                .zip(lc.qkv.par_chunks(tt * 3 * d))
                .zip(lc.p.par_chunks(hh * tt * tt))
                .zip(w.dp.par_chunks_mut(tt * tt))
                .for_each(|((((dqkv, dy), qkv), pp), dp)| {
                    with_isa(isa, || attn_bwd(dqkv, dy, qkv, pp, dp, tt, d, hh))
                });
            {
                let (wt, b) = gi[2..4].split_at_mut(1);
                linear_bwd(
                    &w.dqkv,
                    &lc.h1,
                    &p[b0 + 2],
                    &mut wt[0],
                    &mut b[0],
                    Some(&mut w.dh),
                    n,
                    d,
                    3 * d,
                    par,
                );
            }
            {
                let (g0, g1) = gi[0..2].split_at_mut(1);
                ln_bwd(
                    &mut w.dx, &w.dh, &lc.xhat1, &lc.rstd1, &p[b0], &mut g0[0], &mut g1[0],
                    &mut w.gh, d,
                );
            }
        }
        // Embeddings.
        for (k, row) in w.dx.chunks_exact(d).enumerate() {
            gl[0][w.ids[k] * d..(w.ids[k] + 1) * d]
                .iter_mut()
                .zip(row)
                .for_each(|(g, r)| *g += r);
            gl[1][(k % tt) * d..(k % tt + 1) * d]
                .iter_mut()
                .zip(row)
                .for_each(|(g, r)| *g += r);
        }
    }
}

/// The index whose softmax CDF (in f64) first exceeds u ∈ [0, 1): one draw at temperature 1.
fn draw(logits: &[f32], u: f64) -> usize {
    let mx = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
    let e: Vec<f64> = logits.iter().map(|&z| (z as f64 - mx).exp()).collect();
    let s: f64 = e.iter().sum();
    let mut acc = 0.0;
    for (i, ei) in e.iter().enumerate() {
        acc += ei / s;
        if u < acc {
            return i;
        }
    }
    logits.len() - 1
}
