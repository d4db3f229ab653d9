//! A hand-written training step (forward, backward, AdamW) for the character transformer of
//! [`crate::lm`], on faer (f32, CPU).
//!
//! Why by hand: candle's autograd runs this small model at ≈ 0.15× PyTorch's speed on CPU (a
//! profile: a third of the time in its worker pool waiting, a sixth in page faults from one
//! allocation per op, GEMMs under 10 %). Here every activation buffer is allocated once per
//! step and the GEMMs run in faer. The model and the update are the same as `Gpt::train`'s
//! (pre-LayerNorm blocks, causal multi-head attention, GELU(erf) MLP, untied head, AdamW
//! without weight decay); a test compares the two.
//!
//! Backward of the pieces (row-wise, x̂ = (x − μ)·r, r = 1/√(σ² + ε)):
//!   LayerNorm: ∂x = r (ĝ − mean ĝ − x̂ mean(ĝ ⊙ x̂)), ĝ = g ⊙ γ;  ∂γ = Σ g ⊙ x̂, ∂β = Σ g.
//!   attention: S = s·QKᵀ + mask, P = softmax(S), Y = PV:
//!     ∂V = Pᵀ∂Y, ∂P = ∂Y Vᵀ, ∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)), ∂Q = s ∂S K, ∂K = s ∂Sᵀ Q.
//!   GELU: g(u) = u Φ(u), g'(u) = Φ(u) + u φ(u).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::lm::LmConfig;

fn rm(v: &[f32], r: usize, c: usize) -> MatRef<'_, f32> {
    MatRef::from_row_major_slice(v, r, c)
}

fn rm_mut(v: &mut [f32], r: usize, c: usize) -> MatMut<'_, f32> {
    MatMut::from_row_major_slice_mut(v, r, c)
}

/// out (n × o) = x (n × i) · Wᵀ (W: o × i) + b.
fn linear_fwd(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    i: usize,
    o: usize,
    par: Par,
) {
    matmul(
        rm_mut(out, n, o),
        Accum::Replace,
        rm(x, n, i),
        rm(w, o, i).transpose(),
        1.0,
        par,
    );
    for row in out.chunks_exact_mut(o) {
        row.iter_mut().zip(b).for_each(|(y, bb)| *y += bb);
    }
}

/// Given dy (n × o): dW += dyᵀ x, db += Σ dy, and dx = dy W (if asked).
#[allow(clippy::too_many_arguments)]
fn linear_bwd(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    n: usize,
    i: usize,
    o: usize,
    par: Par,
) {
    matmul(
        rm_mut(dw, o, i),
        Accum::Add,
        rm(dy, n, o).transpose(),
        rm(x, n, i),
        1.0,
        par,
    );
    for row in dy.chunks_exact(o) {
        db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
    }
    if let Some(dx) = dx {
        matmul(
            rm_mut(dx, n, i),
            Accum::Replace,
            rm(dy, n, o),
            rm(w, o, i),
            1.0,
            par,
        );
    }
}

/// LayerNorm forward: y = γ x̂ + β; keeps x̂ and r.
fn ln_fwd(
    y: &mut [f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    g: &[f32],
    b: &[f32],
    d: usize,
) {
    for (((xr, yr), hr), r) in x
        .chunks_exact(d)
        .zip(y.chunks_exact_mut(d))
        .zip(xhat.chunks_exact_mut(d))
        .zip(rstd.iter_mut())
    {
        let mu = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / d as f32;
        *r = 1.0 / (var + 1e-5).sqrt();
        for k in 0..d {
            hr[k] = (xr[k] - mu) * *r;
            yr[k] = hr[k] * g[k] + b[k];
        }
    }
}

/// LayerNorm backward: adds ∂x to `dx`, accumulates ∂γ, ∂β.
#[allow(clippy::too_many_arguments)]
fn ln_bwd(
    dx: &mut [f32],
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    g: &[f32],
    dg: &mut [f32],
    db: &mut [f32],
    d: usize,
) {
    let mut gh = vec![0f32; d];
    for (((dxr, dyr), hr), &r) in dx
        .chunks_exact_mut(d)
        .zip(dy.chunks_exact(d))
        .zip(xhat.chunks_exact(d))
        .zip(rstd)
    {
        let (mut m1, mut m2) = (0f32, 0f32);
        for k in 0..d {
            gh[k] = dyr[k] * g[k];
            m1 += gh[k];
            m2 += gh[k] * hr[k];
            dg[k] += dyr[k] * hr[k];
            db[k] += dyr[k];
        }
        let (m1, m2) = (m1 / d as f32, m2 / d as f32);
        for k in 0..d {
            dxr[k] += r * (gh[k] - m1 - hr[k] * m2);
        }
    }
}

/// e^x in f32 (relative error ≈ 2e-7), branch-free so that loops over slices vectorise:
/// x = k ln 2 + r with |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial, 2^k from the bits.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest with the 1.5·2^23 trick (plain SSE2, no `round` call).
    const MAGIC: f32 = 12_582_912.0;
    let x = x.max(-87.0).min(88.0);
    let kk = x * LOG2E + MAGIC;
    let k = kk - MAGIC;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // k as an integer from the bits of kk (no saturating float→int cast, which is scalar).
    let ik = kk.to_bits().wrapping_sub(MAGIC.to_bits());
    p * f32::from_bits(ik.wrapping_add(127) << 23)
}

/// erf in f32 (Abramowitz & Stegun 7.1.26: absolute error ≤ 1.5e-7, ≤ 1e-6 after f32
/// rounding), branch-free.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - y * exp_f32(-a * a)).copysign(x)
}

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Per-layer activations kept for the backward pass.
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
}

/// Parameters (in `names` order), gradients and AdamW moments.
pub struct FastGpt {
    cfg: LmConfig,
    pub names: Vec<String>,
    pub p: Vec<Vec<f32>>,
    g: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
    par: Par,
}

/// Parameter names of the model, in the order `FastGpt` keeps them (the `VarMap` names of
/// [`crate::lm::Gpt`]).
pub fn param_names(n_layer: usize) -> Vec<String> {
    let mut n = vec!["tok.weight".to_string(), "pos.weight".to_string()];
    for i in 0..n_layer {
        for s in [
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
        ] {
            n.push(format!("h{i}.{s}"));
        }
    }
    for s in ["ln_f.weight", "ln_f.bias", "head.weight", "head.bias"] {
        n.push(s.to_string());
    }
    n
}

impl FastGpt {
    /// From parameter values in [`param_names`] order.
    pub fn new(cfg: LmConfig, params: Vec<Vec<f32>>) -> Self {
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        FastGpt {
            names: param_names(cfg.n_layer),
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
        }
    }

    /// One AdamW step (lr, β = (0.9, 0.999), ε = 1e-8, no weight decay) on windows of
    /// ctx + 1 tokens (`batch` × (ctx + 1), row-major). Returns the mean next-token
    /// cross-entropy before the step.
    pub fn step(&mut self, windows: &[u32], lr: f64) -> f64 {
        let c = self.cfg;
        let (d, hh, tt, v) = (c.d_model, c.n_head, c.ctx, c.vocab);
        let bsz = windows.len() / (tt + 1);
        let n = bsz * tt;
        let hd = d / hh;
        let scale = 1.0 / (hd as f32).sqrt();
        let par = self.par;
        let base = |i: usize| 2 + 12 * i;
        let lf = 2 + 12 * c.n_layer;
        for g in &mut self.g {
            g.iter_mut().for_each(|x| *x = 0.0);
        }
        let ids: Vec<usize> = (0..n)
            .map(|k| windows[(k / tt) * (tt + 1) + k % tt] as usize)
            .collect();
        let tgt: Vec<usize> = (0..n)
            .map(|k| windows[(k / tt) * (tt + 1) + k % tt + 1] as usize)
            .collect();

        // Embedding.
        let mut x = vec![0f32; n * d];
        for k in 0..n {
            let (tok, pos) = (
                &self.p[0][ids[k] * d..(ids[k] + 1) * d],
                &self.p[1][(k % tt) * d..(k % tt + 1) * d],
            );
            for j in 0..d {
                x[k * d + j] = tok[j] + pos[j];
            }
        }
        // Blocks.
        let mut caches = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let b0 = base(i);
            let p = &self.p;
            let mut lc = LayerCache {
                xhat1: vec![0.0; n * d],
                rstd1: vec![0.0; n],
                h1: vec![0.0; n * d],
                qkv: vec![0.0; n * 3 * d],
                p: vec![0.0; bsz * hh * tt * tt],
                y: vec![0.0; n * d],
                x_mid: vec![0.0; n * d],
                xhat2: vec![0.0; n * d],
                rstd2: vec![0.0; n],
                h2: vec![0.0; n * d],
                u: vec![0.0; n * 4 * d],
                a: vec![0.0; n * 4 * d],
            };
            ln_fwd(
                &mut lc.h1,
                &mut lc.xhat1,
                &mut lc.rstd1,
                &x,
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
            let qkv = rm(&lc.qkv, n, 3 * d);
            for b in 0..bsz {
                for h in 0..hh {
                    let q = qkv.submatrix(b * tt, h * hd, tt, hd);
                    let k = qkv.submatrix(b * tt, d + h * hd, tt, hd);
                    let vv = qkv.submatrix(b * tt, 2 * d + h * hd, tt, hd);
                    let off = (b * hh + h) * tt * tt;
                    let pm = &mut lc.p[off..off + tt * tt];
                    matmul(
                        rm_mut(pm, tt, tt),
                        Accum::Replace,
                        q,
                        k.transpose(),
                        scale,
                        Par::Seq,
                    );
                    for (r, row) in pm.chunks_exact_mut(tt).enumerate() {
                        let mx = row[..=r].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let mut s = 0f32;
                        for e in row[..=r].iter_mut() {
                            *e = exp_f32(*e - mx);
                            s += *e;
                        }
                        row[r + 1..].iter_mut().for_each(|e| *e = 0.0);
                        row.iter_mut().for_each(|e| *e /= s);
                    }
                    let ym = rm_mut(&mut lc.y, n, d).submatrix_mut(b * tt, h * hd, tt, hd);
                    matmul(ym, Accum::Replace, rm(pm, tt, tt), vv, 1.0, Par::Seq);
                }
            }
            linear_fwd(&mut lc.x_mid, &lc.y, &p[b0 + 4], &p[b0 + 5], n, d, d, par);
            lc.x_mid.iter_mut().zip(&x).for_each(|(m, xi)| *m += xi);
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
            for (a, &u) in lc.a.iter_mut().zip(&lc.u) {
                *a = 0.5 * u * (1.0 + erf_f32(u * SQRT_HALF));
            }
            linear_fwd(&mut x, &lc.a, &p[b0 + 10], &p[b0 + 11], n, 4 * d, d, par);
            x.iter_mut().zip(&lc.x_mid).for_each(|(o, m)| *o += m);
            caches.push(lc);
        }
        // Final norm, head, loss.
        let (mut hf, mut xhatf, mut rstdf) = (vec![0f32; n * d], vec![0f32; n * d], vec![0f32; n]);
        ln_fwd(
            &mut hf,
            &mut xhatf,
            &mut rstdf,
            &x,
            &self.p[lf],
            &self.p[lf + 1],
            d,
        );
        let mut logits = vec![0f32; n * v];
        linear_fwd(
            &mut logits,
            &hf,
            &self.p[lf + 2],
            &self.p[lf + 3],
            n,
            d,
            v,
            par,
        );
        let mut loss = 0f64;
        let inv_n = 1.0 / n as f32;
        for (k, row) in logits.chunks_exact_mut(v).enumerate() {
            let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let target = row[tgt[k]];
            let mut s = 0f32;
            for z in row.iter_mut() {
                *z = exp_f32(*z - mx);
                s += *z;
            }
            loss += (s.ln() + mx - target) as f64;
            let inv = inv_n / s;
            row.iter_mut().for_each(|z| *z *= inv);
            row[tgt[k]] -= inv_n;
        }
        let loss = loss / n as f64;

        // Backward.
        let (gl, gr) = self.g.split_at_mut(lf);
        let mut dhf = vec![0f32; n * d];
        {
            let (gw, gb) = gr[2..4].split_at_mut(1);
            linear_bwd(
                &logits,
                &hf,
                &self.p[lf + 2],
                &mut gw[0],
                &mut gb[0],
                Some(&mut dhf),
                n,
                d,
                v,
                par,
            );
        }
        let mut dx = vec![0f32; n * d];
        {
            let (gg, gb) = gr[0..2].split_at_mut(1);
            ln_bwd(
                &mut dx,
                &dhf,
                &xhatf,
                &rstdf,
                &self.p[lf],
                &mut gg[0],
                &mut gb[0],
                d,
            );
        }
        let mut da = vec![0f32; n * 4 * d];
        let mut dh = vec![0f32; n * d];
        let mut dy = vec![0f32; n * d];
        let mut dqkv = vec![0f32; n * 3 * d];
        let mut dp = vec![0f32; tt * tt];
        for i in (0..c.n_layer).rev() {
            let b0 = base(i);
            let lc = &caches[i];
            let p = &self.p;
            let gi = &mut gl[b0..b0 + 12];
            // x_out = x_mid + fc2(gelu(fc1(ln2(x_mid)))).
            {
                let (w, b) = gi[10..12].split_at_mut(1);
                linear_bwd(
                    &dx,
                    &lc.a,
                    &p[b0 + 10],
                    &mut w[0],
                    &mut b[0],
                    Some(&mut da),
                    n,
                    4 * d,
                    d,
                    par,
                );
            }
            for (g, &u) in da.iter_mut().zip(&lc.u) {
                let cdf = 0.5 * (1.0 + erf_f32(u * SQRT_HALF));
                *g *= cdf + u * INV_SQRT_2PI * exp_f32(-0.5 * u * u);
            }
            {
                let (w, b) = gi[8..10].split_at_mut(1);
                linear_bwd(
                    &da,
                    &lc.h2,
                    &p[b0 + 8],
                    &mut w[0],
                    &mut b[0],
                    Some(&mut dh),
                    n,
                    d,
                    4 * d,
                    par,
                );
            }
            {
                let (g6, g7) = gi[6..8].split_at_mut(1);
                ln_bwd(
                    &mut dx,
                    &dh,
                    &lc.xhat2,
                    &lc.rstd2,
                    &p[b0 + 6],
                    &mut g6[0],
                    &mut g7[0],
                    d,
                );
            }
            // dx is now ∂x_mid; x_mid = x_in + proj(attn(ln1(x_in))).
            {
                let (w, b) = gi[4..6].split_at_mut(1);
                linear_bwd(
                    &dx,
                    &lc.y,
                    &p[b0 + 4],
                    &mut w[0],
                    &mut b[0],
                    Some(&mut dy),
                    n,
                    d,
                    d,
                    par,
                );
            }
            let qkv = rm(&lc.qkv, n, 3 * d);
            for b in 0..bsz {
                for h in 0..hh {
                    let q = qkv.submatrix(b * tt, h * hd, tt, hd);
                    let k = qkv.submatrix(b * tt, d + h * hd, tt, hd);
                    let vv = qkv.submatrix(b * tt, 2 * d + h * hd, tt, hd);
                    let off = (b * hh + h) * tt * tt;
                    let pm = rm(&lc.p[off..off + tt * tt], tt, tt);
                    let dym = rm(&dy, n, d).submatrix(b * tt, h * hd, tt, hd);
                    let dqm =
                        rm_mut(&mut dqkv, n, 3 * d).submatrix_mut(b * tt, 2 * d + h * hd, tt, hd);
                    matmul(dqm, Accum::Replace, pm.transpose(), dym, 1.0, Par::Seq);
                    matmul(
                        rm_mut(&mut dp, tt, tt),
                        Accum::Replace,
                        dym,
                        vv.transpose(),
                        1.0,
                        Par::Seq,
                    );
                    let prow = &lc.p[off..off + tt * tt];
                    for (r, (row, pr)) in dp
                        .chunks_exact_mut(tt)
                        .zip(prow.chunks_exact(tt))
                        .enumerate()
                    {
                        let dot: f32 = row[..=r].iter().zip(&pr[..=r]).map(|(a, b)| a * b).sum();
                        for (e, &pv) in row.iter_mut().zip(pr) {
                            *e = pv * (*e - dot) * scale;
                        }
                    }
                    let dsm = rm(&dp, tt, tt);
                    let dq = rm_mut(&mut dqkv, n, 3 * d).submatrix_mut(b * tt, h * hd, tt, hd);
                    matmul(dq, Accum::Replace, dsm, k, 1.0, Par::Seq);
                    let dk = rm_mut(&mut dqkv, n, 3 * d).submatrix_mut(b * tt, d + h * hd, tt, hd);
                    matmul(dk, Accum::Replace, dsm.transpose(), q, 1.0, Par::Seq);
                }
            }
            {
                let (w, b) = gi[2..4].split_at_mut(1);
                linear_bwd(
                    &dqkv,
                    &lc.h1,
                    &p[b0 + 2],
                    &mut w[0],
                    &mut b[0],
                    Some(&mut dh),
                    n,
                    d,
                    3 * d,
                    par,
                );
            }
            {
                let (g0, g1) = gi[0..2].split_at_mut(1);
                ln_bwd(
                    &mut dx, &dh, &lc.xhat1, &lc.rstd1, &p[b0], &mut g0[0], &mut g1[0], d,
                );
            }
        }
        // Embeddings.
        for k in 0..n {
            let row = &dx[k * d..(k + 1) * d];
            gl[0][ids[k] * d..(ids[k] + 1) * d]
                .iter_mut()
                .zip(row)
                .for_each(|(g, r)| *g += r);
            gl[1][(k % tt) * d..(k % tt + 1) * d]
                .iter_mut()
                .zip(row)
                .for_each(|(g, r)| *g += r);
        }
        // AdamW (candle_nn::AdamW's update with weight decay 0).
        self.t += 1;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f32);
        let (sm, sv) = (
            (1.0 / (1.0 - b1.powi(self.t))) as f32,
            (1.0 / (1.0 - b2.powi(self.t))) as f32,
        );
        let (b1, b2, lr) = (b1 as f32, b2 as f32, lr as f32);
        for (((p, g), m), v) in self
            .p
            .iter_mut()
            .zip(&self.g)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = *m * b1 + g * (1.0 - b1);
                *v = *v * b2 + g * g * (1.0 - b2);
                *p -= lr * ((*m * sm) / ((*v * sv).sqrt() + eps));
            }
        }
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorisable_exp_and_erf_are_accurate() {
        let (mut e_exp, mut e_erf) = (0f64, 0f64);
        for k in -80_000..=80_000 {
            let x = k as f32 * 1e-3;
            let r = (x as f64).exp();
            e_exp = e_exp.max(((exp_f32(x) as f64) - r).abs() / r);
            let xe = k as f32 * 1e-4;
            e_erf = e_erf.max((erf_f32(xe) as f64 - libm::erf(xe as f64)).abs());
        }
        assert!(e_exp < 5e-7, "exp relative error {e_exp:e}");
        // 1.5e-7 from the approximation plus f32 rounding of its terms.
        assert!(e_erf < 1e-6, "erf absolute error {e_erf:e}");
        assert!(exp_f32(-200.0) < 1e-37);
    }
}
