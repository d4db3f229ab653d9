//! The linear maps of the CNN kernel and their adjoints (every one accumulates into its
//! output): convolution by im2col + GEMM, dense layers, 2 × 2 average pooling. Images are
//! channels-last, H × W × C per example (see the parent module's equations).
//!
//! Convolutions work in blocks of [`BLOCK`] examples, in parallel over blocks (rayon); each
//! thread keeps one im2col scratch matrix between calls ([`with_scratch`]), so a training step
//! does not allocate (and page-fault) megabytes per layer. Weight gradients are summed over
//! blocks in block order, so results do not depend on the thread count.

use crate::mlp::{gemm, rm, rm_mut};
use crate::real::Real;
use faer::{Accum, Par};
use rayon::prelude::*;
use std::any::Any;
use std::cell::RefCell;

/// Examples per im2col block: the unit of parallel work; bounds the scratch matrix
/// (rows = block · H_out · W_out; 16 × 784 × 25 f64 = 2.5 MB for LeNet's first layer).
const BLOCK: usize = 16;

thread_local! {
    /// This thread's im2col scratch (a `Vec<f32>` or `Vec<f64>`).
    static SCRATCH: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's reusable scratch vector (taken out for the call, so a nested
/// call would get a fresh one rather than alias it).
fn with_scratch<T: Real, R>(f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    let mut v: Vec<T> = SCRATCH
        .with(|s| s.borrow_mut().take())
        .and_then(|b| b.downcast::<Vec<T>>().ok())
        .map(|b| *b)
        .unwrap_or_default();
    let r = f(&mut v);
    SCRATCH.with(|s| *s.borrow_mut() = Some(Box::new(v)));
    r
}

/// A stride-1 convolution of an h × w × c_in input with c_out k × k filters, zero pad p.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conv {
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Conv {
    pub fn new(h: usize, w: usize, c_in: usize, c_out: usize, k: usize, pad: usize) -> Self {
        Conv {
            h,
            w,
            c_in,
            c_out,
            k,
            pad,
            ho: h + 2 * pad + 1 - k,
            wo: w + 2 * pad + 1 - k,
        }
    }

    /// Columns of the im2col matrix: k²·C_in, ordered (a, b, c) as the weights.
    fn kk(&self) -> usize {
        self.k * self.k * self.c_in
    }

    fn in_len(&self) -> usize {
        self.h * self.w * self.c_in
    }

    fn out_len(&self) -> usize {
        self.ho * self.wo * self.c_out
    }

    /// The input row y = i + a − p read by output row i at filter row a (None in the padding).
    #[inline(always)]
    fn src_row(&self, i: usize, a: usize) -> Option<usize> {
        (i + a).checked_sub(self.pad).filter(|&y| y < self.h)
    }

    /// The output columns j whose input column j + b − p is inside the image, for filter
    /// column b: j ∈ [p − b, w + p − b) ∩ [0, W_out).
    #[inline(always)]
    fn valid_cols(&self, b: usize) -> std::ops::Range<usize> {
        self.pad.saturating_sub(b)..(self.w + self.pad).saturating_sub(b).min(self.wo)
    }

    /// Calls `f(column offset in X̂, offset in x)` for every entry of X̂ that reads a pixel
    /// (padding entries are skipped): the one index map behind im2col and its adjoint.
    #[inline(always)]
    fn for_each_tap(&self, m: usize, mut f: impl FnMut(usize, usize)) {
        let (k, c, kk) = (self.k, self.c_in, self.kk());
        for e in 0..m {
            for i in 0..self.ho {
                for a in 0..k {
                    let Some(y) = self.src_row(i, a) else {
                        continue;
                    };
                    let row_src = e * self.in_len() + y * self.w * c;
                    for b in 0..k {
                        let base_dst = ((e * self.ho + i) * self.wo) * kk + (a * k + b) * c;
                        for j in self.valid_cols(b) {
                            // the input column j + b − p is in [0, w) on this range
                            f(base_dst + j * kk, row_src + (j + b - self.pad) * c);
                        }
                    }
                }
            }
        }
    }

    /// X̂ for `m` examples: (m·H_out·W_out) × k²C_in.
    fn im2col<T: Real>(&self, x: &[T], m: usize, cols: &mut Vec<T>) {
        let c = self.c_in;
        cols.clear();
        cols.resize(m * self.ho * self.wo * self.kk(), T::ZERO);
        // One channel (the first layer): a plain element copy — a c-element slice copy would
        // compile to a memmove call per element.
        self.for_each_tap(m, |d, s| {
            if c == 1 {
                cols[d] = x[s];
            } else {
                cols[d..d + c].copy_from_slice(&x[s..s + c]);
            }
        });
    }

    /// gx += col2im(cols): each column added back to the pixel im2col read it from.
    fn col2im_add<T: Real>(&self, cols: &[T], m: usize, gx: &mut [T]) {
        let c = self.c_in;
        self.for_each_tap(m, |d, s| {
            if c == 1 {
                gx[s] += cols[d];
            } else {
                for (g, &v) in gx[s..s + c].iter_mut().zip(&cols[d..d + c]) {
                    *g += v;
                }
            }
        });
    }

    /// y += X̂ Wᵀ (no bias), y: n × H_out·W_out·C_out.
    pub fn forward<T: Real>(&self, x: &[T], n: usize, wt: &[T], y: &mut [T]) {
        let (kk, px, il, ol) = (self.kk(), self.ho * self.wo, self.in_len(), self.out_len());
        y[..n * ol]
            .par_chunks_mut(BLOCK * ol)
            .zip(x[..n * il].par_chunks(BLOCK * il))
            .for_each(|(yb, xb)| {
                let m = xb.len() / il;
                with_scratch(|cols| {
                    self.im2col(xb, m, cols);
                    gemm(
                        rm_mut(yb, m * px, self.c_out),
                        Accum::Add,
                        rm(cols, m * px, kk),
                        rm(wt, self.c_out, kk).transpose(),
                        Par::Seq,
                    );
                });
            });
    }

    /// gw += gyᵀ X̂ (C_out × k²C_in), summed over blocks in block order.
    pub fn weight_grad<T: Real>(&self, x: &[T], gy: &[T], n: usize, gw: &mut [T]) {
        let (kk, px, il, ol) = (self.kk(), self.ho * self.wo, self.in_len(), self.out_len());
        let parts: Vec<Vec<T>> = x[..n * il]
            .par_chunks(BLOCK * il)
            .zip(gy[..n * ol].par_chunks(BLOCK * ol))
            .map(|(xb, gb)| {
                let m = xb.len() / il;
                let mut part = vec![T::ZERO; self.c_out * kk];
                with_scratch(|cols| {
                    self.im2col(xb, m, cols);
                    gemm(
                        rm_mut(&mut part, self.c_out, kk),
                        Accum::Replace,
                        rm(gb, m * px, self.c_out).transpose(),
                        rm(cols, m * px, kk),
                        Par::Seq,
                    );
                });
                part
            })
            .collect();
        for part in parts {
            gw.iter_mut().zip(&part).for_each(|(g, &p)| *g += p);
        }
    }

    /// gx += col2im(gy W).
    pub fn input_grad<T: Real>(&self, gy: &[T], wt: &[T], n: usize, gx: &mut [T]) {
        let (kk, px, il, ol) = (self.kk(), self.ho * self.wo, self.in_len(), self.out_len());
        gx[..n * il]
            .par_chunks_mut(BLOCK * il)
            .zip(gy[..n * ol].par_chunks(BLOCK * ol))
            .for_each(|(xb, gb)| {
                let m = xb.len() / il;
                with_scratch(|cols| {
                    cols.clear();
                    cols.resize(m * px * kk, T::ZERO);
                    gemm(
                        rm_mut(cols, m * px, kk),
                        Accum::Replace,
                        rm(gb, m * px, self.c_out),
                        rm(wt, self.c_out, kk),
                        Par::Seq,
                    );
                    self.col2im_add(cols, m, xb);
                });
            });
    }
}

/// y = x Wᵀ, W: d_out × d_in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dense {
    pub d_in: usize,
    pub d_out: usize,
}

impl Dense {
    /// y += x Wᵀ.
    pub fn forward<T: Real>(&self, x: &[T], n: usize, wt: &[T], y: &mut [T]) {
        gemm(
            rm_mut(y, n, self.d_out),
            Accum::Add,
            rm(x, n, self.d_in),
            rm(wt, self.d_out, self.d_in).transpose(),
            Par::Seq,
        );
    }

    /// gw += gyᵀ x.
    pub fn weight_grad<T: Real>(&self, x: &[T], gy: &[T], n: usize, gw: &mut [T]) {
        gemm(
            rm_mut(gw, self.d_out, self.d_in),
            Accum::Add,
            rm(gy, n, self.d_out).transpose(),
            rm(x, n, self.d_in),
            Par::Seq,
        );
    }

    /// gx += gy W.
    pub fn input_grad<T: Real>(&self, gy: &[T], wt: &[T], n: usize, gx: &mut [T]) {
        gemm(
            rm_mut(gx, n, self.d_in),
            Accum::Add,
            rm(gy, n, self.d_out),
            rm(wt, self.d_out, self.d_in),
            Par::Seq,
        );
    }
}

/// 2 × 2 average pooling of an h × w × c map (h, w even).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Pool {
    /// y += P x.
    pub fn forward<T: Real>(&self, x: &[T], n: usize, y: &mut [T]) {
        let (h, w, c) = (self.h, self.w, self.c);
        let q = T::of(0.25);
        for e in 0..n {
            let (xe, ye) = (&x[e * h * w * c..], &mut y[e * h * w * c / 4..]);
            for i in 0..h / 2 {
                for j in 0..w / 2 {
                    let o = (i * (w / 2) + j) * c;
                    for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let s = ((2 * i + a) * w + 2 * j + b) * c;
                        for ch in 0..c {
                            ye[o + ch] += q * xe[s + ch];
                        }
                    }
                }
            }
        }
    }

    /// gx += Pᵀ gy (each pooled value's ¼ to its four pixels).
    pub fn input_grad<T: Real>(&self, gy: &[T], n: usize, gx: &mut [T]) {
        let (h, w, c) = (self.h, self.w, self.c);
        let q = T::of(0.25);
        for e in 0..n {
            let (ge, gye) = (&mut gx[e * h * w * c..], &gy[e * h * w * c / 4..]);
            for i in 0..h / 2 {
                for j in 0..w / 2 {
                    let o = (i * (w / 2) + j) * c;
                    for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let s = ((2 * i + a) * w + 2 * j + b) * c;
                        for ch in 0..c {
                            ge[s + ch] += q * gye[o + ch];
                        }
                    }
                }
            }
        }
    }
}

/// y[row, o] += b[o] (rows of len(b): pixels × examples, or examples).
pub(crate) fn add_bias<T: Real>(y: &mut [T], b: &[T]) {
    for row in y.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
    }
}

/// gb[o] += Σ_rows gy[row, o].
pub(crate) fn bias_grad<T: Real>(gy: &[T], gb: &mut [T]) {
    let c = gb.len();
    for row in gy.chunks_exact(c) {
        gb.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
    }
}
