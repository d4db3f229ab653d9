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
//! Backward of the pieces (row-wise, x̂ = (x − μ)·r, r = 1/√(σ² + ε)):
//!   LayerNorm: ∂x = r (ĝ − mean ĝ − x̂ mean(ĝ ⊙ x̂)), ĝ = g ⊙ γ;  ∂γ = Σ g ⊙ x̂, ∂β = Σ g.
//!   attention: S = s·QKᵀ + mask, P = softmax(S), Y = PV:
//!     ∂V = Pᵀ∂Y, ∂P = ∂Y Vᵀ, ∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)), ∂Q = s ∂S K, ∂K = s ∂Sᵀ Q.
//!   GELU: g(u) = u Φ(u), g'(u) = Φ(u) + u φ(u) (kept from the forward pass).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::gpt_config::LmConfig;
use crate::simd::{with_isa, Isa};
use crate::NnError;
use rand_xoshiro::Xoshiro256PlusPlus;

fn rm(v: &[f32], r: usize, c: usize) -> MatRef<'_, f32> {
    MatRef::from_row_major_slice(v, r, c)
}

fn rm_mut(v: &mut [f32], r: usize, c: usize) -> MatMut<'_, f32> {
    MatMut::from_row_major_slice_mut(v, r, c)
}

/// Lanes of the reductions: sixteen partial sums (one AVX-512 register) so that LLVM may
/// keep them in vector registers (a single f32 accumulator forces a sequential chain).
const LANES: usize = 16;

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            acc[k] += c[k];
        }
    }
    it.remainder().iter().sum::<f32>() + acc.iter().sum::<f32>()
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (mut ia, mut ib) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (ca, cb) in (&mut ia).zip(&mut ib) {
        for k in 0..LANES {
            acc[k] += ca[k] * cb[k];
        }
    }
    let rest: f32 = ia
        .remainder()
        .iter()
        .zip(ib.remainder())
        .map(|(x, y)| x * y)
        .sum();
    rest + acc.iter().sum::<f32>()
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            acc[k] = acc[k].max(c[k]);
        }
    }
    it.remainder()
        .iter()
        .chain(&acc)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// out (n × o) = x (n × i) · Wᵀ (W: o × i) + b.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
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
#[inline(always)]
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
#[inline(always)]
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
        let mu = sum(xr) / d as f32;
        hr.iter_mut().zip(xr).for_each(|(h, v)| *h = v - mu);
        let var = dot(hr, hr) / d as f32;
        *r = 1.0 / (var + 1e-5).sqrt();
        let rr = *r;
        for (((h, y), gg), bb) in hr.iter_mut().zip(yr.iter_mut()).zip(g).zip(b) {
            *h *= rr;
            *y = *h * gg + bb;
        }
    }
}

/// LayerNorm backward: adds ∂x to `dx`, accumulates ∂γ, ∂β; `gh` is d scratch floats.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_bwd(
    dx: &mut [f32],
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    g: &[f32],
    dg: &mut [f32],
    db: &mut [f32],
    gh: &mut [f32],
    d: usize,
) {
    for (((dxr, dyr), hr), &r) in dx
        .chunks_exact_mut(d)
        .zip(dy.chunks_exact(d))
        .zip(xhat.chunks_exact(d))
        .zip(rstd)
    {
        for k in 0..d {
            gh[k] = dyr[k] * g[k];
            dg[k] += dyr[k] * hr[k];
            db[k] += dyr[k];
        }
        let (m1, m2) = (sum(gh) / d as f32, dot(gh, hr) / d as f32);
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
    #[allow(clippy::manual_clamp)] // max/min map NaN to a bound (clamp would keep NaN)
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

/// erf(x) given e^{−x²} (Abramowitz & Stegun 7.1.26: absolute error ≤ 1.5e-7, ≤ 1e-6 after
/// f32 rounding), branch-free.
#[inline(always)]
fn erf_with(x: f32, exp_neg_x2: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - y * exp_neg_x2).copysign(x)
}

/// erf in f32 (see [`erf_with`]).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    erf_with(x, exp_f32(-x * x))
}

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// GELU(u) = u Φ(u) and its derivative Φ(u) + u φ(u), sharing one e^{−u²/2}.
#[inline(always)]
fn gelu_fwd(a: &mut [f32], da: &mut [f32], u: &[f32]) {
    for ((a, da), &u) in a.iter_mut().zip(da.iter_mut()).zip(u) {
        let e = exp_f32(-0.5 * u * u);
        let cdf = 0.5 * (1.0 + erf_with(u * SQRT_HALF, e));
        *a = u * cdf;
        *da = cdf + u * INV_SQRT_2PI * e;
    }
}

/// Rows per task when an element-wise loop is split across threads.
const ROWS: usize = 128;

/// Cross-entropy of rows of logits against targets; turns each row into ∂loss/∂logits for a
/// mean over `1/inv_n` rows. Returns the summed loss of these rows.
#[inline(always)]
fn softmax_xent(rows: &mut [f32], tgt: &[usize], v: usize, inv_n: f32) -> f64 {
    let mut loss = 0f64;
    for (row, &t) in rows.chunks_exact_mut(v).zip(tgt) {
        let mx = max(row);
        let target = row[t];
        row.iter_mut().for_each(|z| *z = exp_f32(*z - mx));
        let s = sum(row);
        loss += (s.ln() + mx - target) as f64;
        let inv = inv_n / s;
        row.iter_mut().for_each(|z| *z *= inv);
        row[t] -= inv_n;
    }
    loss
}

/// Causal attention of one sequence: `qkv` (tt × 3d: Q | K | V, heads side by side), writes
/// `y` (tt × d) and the probabilities `p` (hh × tt × tt, zero above the diagonal).
#[inline(always)]
fn attn_fwd(qkv: &[f32], y: &mut [f32], p: &mut [f32], tt: usize, d: usize, hh: usize) {
    let hd = d / hh;
    let scale = 1.0 / (hd as f32).sqrt();
    let qkv = rm(qkv, tt, 3 * d);
    for (h, pm) in p.chunks_exact_mut(tt * tt).enumerate() {
        let q = qkv.submatrix(0, h * hd, tt, hd);
        let k = qkv.submatrix(0, d + h * hd, tt, hd);
        let v = qkv.submatrix(0, 2 * d + h * hd, tt, hd);
        matmul(
            rm_mut(pm, tt, tt),
            Accum::Replace,
            q,
            k.transpose(),
            scale,
            Par::Seq,
        );
        for (r, row) in pm.chunks_exact_mut(tt).enumerate() {
            let (live, masked) = row.split_at_mut(r + 1);
            let mx = max(live);
            live.iter_mut().for_each(|e| *e = exp_f32(*e - mx));
            let inv = 1.0 / sum(live);
            live.iter_mut().for_each(|e| *e *= inv);
            masked.iter_mut().for_each(|e| *e = 0.0);
        }
        let ym = rm_mut(y, tt, d).submatrix_mut(0, h * hd, tt, hd);
        matmul(ym, Accum::Replace, rm(pm, tt, tt), v, 1.0, Par::Seq);
    }
}

/// Backward of [`attn_fwd`] for one sequence: writes `dqkv` (tt × 3d) from `dy` (tt × d);
/// `dp` is tt × tt scratch.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attn_bwd(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    p: &[f32],
    dp: &mut [f32],
    tt: usize,
    d: usize,
    hh: usize,
) {
    let hd = d / hh;
    let scale = 1.0 / (hd as f32).sqrt();
    let qkv = rm(qkv, tt, 3 * d);
    for (h, prow) in p.chunks_exact(tt * tt).enumerate() {
        let q = qkv.submatrix(0, h * hd, tt, hd);
        let k = qkv.submatrix(0, d + h * hd, tt, hd);
        let v = qkv.submatrix(0, 2 * d + h * hd, tt, hd);
        let pm = rm(prow, tt, tt);
        let dym = rm(dy, tt, d).submatrix(0, h * hd, tt, hd);
        let dv = rm_mut(dqkv, tt, 3 * d).submatrix_mut(0, 2 * d + h * hd, tt, hd);
        matmul(dv, Accum::Replace, pm.transpose(), dym, 1.0, Par::Seq);
        matmul(
            rm_mut(dp, tt, tt),
            Accum::Replace,
            dym,
            v.transpose(),
            1.0,
            Par::Seq,
        );
        for (r, (row, pr)) in dp
            .chunks_exact_mut(tt)
            .zip(prow.chunks_exact(tt))
            .enumerate()
        {
            let dot_r = dot(&row[..=r], &pr[..=r]);
            for (e, &pv) in row.iter_mut().zip(pr) {
                *e = pv * (*e - dot_r) * scale;
            }
        }
        let dsm = rm(dp, tt, tt);
        let dq = rm_mut(dqkv, tt, 3 * d).submatrix_mut(0, h * hd, tt, hd);
        matmul(dq, Accum::Replace, dsm, k, 1.0, Par::Seq);
        let dk = rm_mut(dqkv, tt, 3 * d).submatrix_mut(0, d + h * hd, tt, hd);
        matmul(dk, Accum::Replace, dsm.transpose(), q, 1.0, Par::Seq);
    }
}

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

/// Attention of one stream's new position t: stores its key and value (from `q3` = Q | K | V
/// of that position) at row t of the caches `kk`, `vv`, and writes y (d) = Σ_j softmax_j(s q·k_j) v_j
/// over positions j ≤ t, head by head.
#[inline(always)]
fn attn_cached(
    q3: &[f32],
    y: &mut [f32],
    kk: &mut [f32],
    vv: &mut [f32],
    t: usize,
    d: usize,
    hh: usize,
) {
    let hd = d / hh;
    let scale = 1.0 / (hd as f32).sqrt();
    kk[t * d..(t + 1) * d].copy_from_slice(&q3[d..2 * d]);
    vv[t * d..(t + 1) * d].copy_from_slice(&q3[2 * d..]);
    let (mut stack, mut heap) = ([0f32; 512], vec![]);
    let sc: &mut [f32] = if t < 512 {
        &mut stack[..=t]
    } else {
        heap.resize(t + 1, 0.0);
        &mut heap
    };
    for hi in 0..hh {
        let q = &q3[hi * hd..(hi + 1) * hd];
        for (j, e) in sc.iter_mut().enumerate() {
            *e = dot(q, &kk[j * d + hi * hd..j * d + (hi + 1) * hd]) * scale;
        }
        let mx = max(sc);
        sc.iter_mut().for_each(|e| *e = exp_f32(*e - mx));
        let inv = 1.0 / sum(sc);
        let out = &mut y[hi * hd..(hi + 1) * hd];
        out.iter_mut().for_each(|o| *o = 0.0);
        for (j, &w) in sc.iter().enumerate() {
            let row = &vv[j * d + hi * hd..j * d + (hi + 1) * hd];
            out.iter_mut().zip(row).for_each(|(o, r)| *o += w * inv * r);
        }
    }
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
    embed(&mut w.x, &p, &w.ids, |k| k % tt, d);
    for (i, lc) in w.layers.iter_mut().enumerate() {
        let attention = Attention::Causal { tt };
        block_fwd(&p, c.block_start(i), &mut w.x, lc, attention, c, par, isa);
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

    /// The sizes.
    pub fn config(&self) -> &LmConfig {
        &self.cfg
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

    /// Mean next-token cross-entropy on windows of ctx + 1 tokens, without a step.
    pub fn loss(&mut self, windows: &[u32]) -> f64 {
        self.size_work(windows);
        with_isa(self.isa, || {
            forward(
                &self.cfg,
                &self.p,
                &mut self.work,
                windows,
                self.par,
                self.isa,
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::Gpt;
    use rand::SeedableRng;

    /// Parameters of a small model: LayerNorm gains 1, everything else uniform in ±0.2.
    fn small_model(cfg: LmConfig) -> Vec<Vec<f32>> {
        use rand::Rng;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        cfg.layout()
            .entries()
            .iter()
            .map(|e| {
                (0..e.len())
                    .map(|_| {
                        if e.name.contains("ln") && e.name.ends_with("weight") {
                            1.0
                        } else {
                            rng.random_range(-0.2f32..0.2)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn tiny(vocab: usize, ctx: usize, d_model: usize, n_head: usize, batch: usize) -> LmConfig {
        LmConfig {
            vocab,
            ctx,
            d_model,
            n_layer: 2,
            n_head,
            batch,
            lr: 3e-3,
            epochs: 1.0,
        }
    }

    #[test]
    fn a_tiny_model_learns_a_repetitive_text() {
        let ids: Vec<u32> = (0..3200u32).map(|i| i % 8).collect();
        let cfg = LmConfig {
            n_layer: 1,
            epochs: 16.0,
            ..tiny(8, 16, 32, 2, 16)
        };
        let mut m = GptKernel::init(cfg, 0).unwrap();
        let before = m.evaluate(&ids).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        m.train(&ids, &mut rng, &mut |_, _| {}).unwrap();
        let after = m.evaluate(&ids).unwrap();
        // ln 8 = 2.08 nats for a uniform guess; a learnt cycle is near 0.
        assert!(before > 1.5 && after < 0.3, "{before} → {after}");
        let s = m.sample(4, 16, &[0], &mut rng);
        let good = s
            .iter()
            .flat_map(|q| q.windows(2))
            .filter(|w| w[1] == (w[0] + 1) % 8)
            .count();
        assert!(good as f64 > 0.9 * 4.0 * 15.0, "{good}");
        // Too short a held-out text is an error, not an empty mean.
        assert!(m.evaluate(&ids[..16]).is_err() && m.evaluate(&[]).is_err());
    }

    /// The reference model with weights 20× its init (so next-token distributions are far from
    /// uniform and depend on the context), and the kernel holding the same values.
    fn sharp_pair(cfg: LmConfig) -> (Gpt, GptKernel) {
        let m = Gpt::new(cfg, 5).unwrap();
        for (name, var) in m.varmap.data().lock().unwrap().iter() {
            if !name.contains("ln") {
                var.set(&(var.as_tensor() * 20.0).unwrap()).unwrap();
            }
        }
        let k = GptKernel::new(cfg, m.params_in_order().unwrap());
        (m, k)
    }

    #[test]
    fn kv_cache_sampling_draws_what_the_reference_forward_draws() {
        // Reference: at every step candle's full forward over the whole prefix (no cache), its
        // last position's logits, the same draw. Both consume one uniform per stream per step,
        // so a stream differs only if some u falls within f32 rounding (≈ 1e-6) of a CDF
        // boundary: with 64 streams × 23 steps, a few at most.
        use rand::Rng;
        let cfg = tiny(13, 24, 24, 3, 4);
        let (m, k) = sharp_pair(cfg);
        let start = [1u32, 4, 7];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let mut reference: Vec<Vec<u32>> = (0..64)
            .map(|_| vec![start[rng.random_range(0..start.len())]])
            .collect();
        for t in 1..cfg.ctx {
            let ids: Vec<u32> = reference.concat();
            let ids =
                candle_core::Tensor::from_vec(ids, (64, t), &candle_core::Device::Cpu).unwrap();
            let logits = m.forward(&ids).unwrap().narrow(1, t - 1, 1).unwrap();
            let rows = logits.squeeze(1).unwrap().to_vec2::<f32>().unwrap();
            for (s, row) in reference.iter_mut().zip(&rows) {
                s.push(draw(row, rng.random()) as u32);
            }
        }
        let ours = k.sample(
            64,
            cfg.ctx,
            &start,
            &mut Xoshiro256PlusPlus::seed_from_u64(9),
        );
        let same = ours.iter().zip(&reference).filter(|(x, y)| x == y).count();
        assert!(same >= 60, "only {same} of 64 streams agree");
        assert!(ours
            .iter()
            .all(|q| q.len() == cfg.ctx && q.iter().all(|&t| t < 13)));
        assert!(ours.iter().any(|q| q != &ours[0]), "degenerate model");
    }

    #[test]
    fn evaluation_equals_the_reference_loss() {
        // Same windows (consecutive, non-overlapping): f32 rounding only, 1e-5 relative.
        let cfg = tiny(13, 8, 16, 2, 4);
        let (m, k) = sharp_pair(cfg);
        let tokens: Vec<u32> = (0..8 * 70 + 1)
            .map(|i| ((i * 7 + i / 5) % 13) as u32)
            .collect();
        let ours = k.evaluate(&tokens).unwrap();
        let windows: Vec<u32> = (0..70)
            .flat_map(|i| tokens[i * 8..=(i + 1) * 8].iter().copied())
            .collect();
        let windows =
            candle_core::Tensor::from_vec(windows, (70, 9), &candle_core::Device::Cpu).unwrap();
        let reference = m.loss(&windows).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!(
            (ours - reference).abs() <= 1e-5 * reference,
            "{ours} vs {reference}"
        );
    }

    #[test]
    fn the_kernel_trains_like_candle_autograd() {
        // Same init, same batches: the hand-written step and candle's autograd + AdamW give the
        // same losses (1e-4 relative: f32 rounding) and the same parameter updates (within 2 %
        // of the largest update: Adam divides by √v, which amplifies rounding where v ≈ 0).
        let cfg = tiny(13, 8, 16, 2, 4);
        let tokens: Vec<u32> = (0..160u32).map(|i| (i * 7 + i / 5) % 13).collect();
        let reference = Gpt::new(cfg, 5).unwrap();
        let p0 = reference.params_in_order().unwrap();
        let (mut lr, mut lk) = (vec![], vec![]);
        let sr = reference
            .train(
                &tokens,
                &mut Xoshiro256PlusPlus::seed_from_u64(9),
                &mut |_, l| lr.push(l),
            )
            .unwrap();
        let mut k = GptKernel::init(cfg, 5).unwrap();
        let sk = k
            .train(
                &tokens,
                &mut Xoshiro256PlusPlus::seed_from_u64(9),
                &mut |_, l| lk.push(l),
            )
            .unwrap();
        assert_eq!(sr, sk);
        assert!(sk >= 4);
        for (a, b) in lk.iter().zip(&lr) {
            assert!((a - b).abs() <= 1e-4 * b.abs(), "losses {lk:?} vs {lr:?}");
        }
        let pr = reference.params_in_order().unwrap();
        for (((name, a), b), z) in k.names.iter().zip(&k.p).zip(&pr).zip(&p0) {
            let big = b.iter().zip(z).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(big > 0.0, "{name} did not move");
            assert!(
                diff <= 0.02 * big,
                "{name}: |kernel − candle| {diff} vs update {big}"
            );
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_numbers() {
        let cfg = LmConfig {
            vocab: 11,
            ctx: 20,
            d_model: 24,
            n_layer: 2,
            n_head: 3,
            batch: 5,
            lr: 3e-3,
            epochs: 1.0,
        };
        let windows: Vec<u32> = (0..cfg.batch * (cfg.ctx + 1))
            .map(|i| ((i * 7 + i / 3) % cfg.vocab) as u32)
            .collect();
        let run = |isa: Isa| {
            let mut f = GptKernel::new(cfg, small_model(cfg));
            f.isa = isa;
            let losses: Vec<f64> = (0..4).map(|_| f.step(&windows, cfg.lr)).collect();
            (losses, f.p)
        };
        let (l0, p0) = run(Isa::Baseline);
        assert!(l0[3] < l0[0], "the step does not train: {l0:?}");
        let mut checked = 0;
        for isa in [Isa::Avx2, Isa::Avx512] {
            if !isa.available() {
                continue;
            }
            let (l, p) = run(isa);
            assert_eq!(l, l0, "{isa:?} losses differ from the baseline's");
            assert!(p == p0, "{isa:?} parameters differ from the baseline's");
            checked += 1;
        }
        eprintln!("compared {checked} vector instruction sets with the baseline");
    }

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
