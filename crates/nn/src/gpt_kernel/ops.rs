//! The pieces of the transformer, forward and backward, on row-major f32 slices: GEMM-backed
//! linear layers, LayerNorm, causal and KV-cached attention, GELU(erf), softmax cross-entropy,
//! and the vectorisable exp / erf they use. Backward rules (row-wise, x̂ = (x − μ)·r,
//! r = 1/√(σ² + ε)):
//!   LayerNorm: ∂x = r (ĝ − mean ĝ − x̂ mean(ĝ ⊙ x̂)), ĝ = g ⊙ γ;  ∂γ = Σ g ⊙ x̂, ∂β = Σ g.
//!   attention: S = s·QKᵀ + mask, P = softmax(S), Y = PV:
//!     ∂V = Pᵀ∂Y, ∂P = ∂Y Vᵀ, ∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)), ∂Q = s ∂S K, ∂K = s ∂Sᵀ Q.
//!   GELU: g(u) = u Φ(u), g'(u) = Φ(u) + u φ(u) (kept from the forward pass).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

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
pub(super) fn sum(x: &[f32]) -> f32 {
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
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
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
pub(super) fn max(x: &[f32]) -> f32 {
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
pub(super) fn linear_fwd(
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
pub(super) fn linear_bwd(
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
pub(super) fn ln_fwd(
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
pub(super) fn ln_bwd(
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
pub(super) fn erf_with(x: f32, exp_neg_x2: f32) -> f32 {
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

pub(super) const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
pub(super) const INV_SQRT_2PI: f32 = 0.398_942_3;

/// GELU(u) = u Φ(u) and its derivative Φ(u) + u φ(u), sharing one e^{−u²/2}.
#[inline(always)]
pub(super) fn gelu_fwd(a: &mut [f32], da: &mut [f32], u: &[f32]) {
    for ((a, da), &u) in a.iter_mut().zip(da.iter_mut()).zip(u) {
        let e = exp_f32(-0.5 * u * u);
        let cdf = 0.5 * (1.0 + erf_with(u * SQRT_HALF, e));
        *a = u * cdf;
        *da = cdf + u * INV_SQRT_2PI * e;
    }
}

/// Rows per task when an element-wise loop is split across threads.
pub(super) const ROWS: usize = 128;

/// Cross-entropy of rows of logits against targets; turns each row into ∂loss/∂logits for a
/// mean over `1/inv_n` rows. Returns the summed loss of these rows.
#[inline(always)]
pub(super) fn softmax_xent(rows: &mut [f32], tgt: &[usize], v: usize, inv_n: f32) -> f64 {
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
pub(super) fn attn_fwd(qkv: &[f32], y: &mut [f32], p: &mut [f32], tt: usize, d: usize, hh: usize) {
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
pub(super) fn attn_bwd(
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

/// Attention of one stream's new position t: stores its key and value (from `q3` = Q | K | V
/// of that position) at row t of the caches `kk`, `vv`, and writes y (d) = Σ_j softmax_j(s q·k_j) v_j
/// over positions j ≤ t, head by head.
#[inline(always)]
pub(super) fn attn_cached(
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
