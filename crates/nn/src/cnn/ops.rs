//! The linear maps of the CNN kernel and their adjoints (every one accumulates into its
//! output): convolution by im2col + GEMM, dense layers, 2 × 2 average pooling. Images are
//! channels-last, H × W × C per example (see the parent module's equations).

use crate::mlp::{gemm, rm, rm_mut};
use crate::real::Real;
use faer::{Accum, Par};

/// Examples per im2col block: bounds the scratch matrix (rows = block · H_out · W_out).
const BLOCK: usize = 32;

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

    /// The source pixel (row-major index, or None in the padding) of output pixel (i, j)
    /// and filter offset (a, b).
    #[inline(always)]
    fn src(&self, i: usize, j: usize, a: usize, b: usize) -> Option<usize> {
        let (y, x) = (i + a, j + b);
        if y < self.pad || x < self.pad || y - self.pad >= self.h || x - self.pad >= self.w {
            None
        } else {
            Some((y - self.pad) * self.w + (x - self.pad))
        }
    }

    /// X̂ for `m` examples: (m·H_out·W_out) × k²C_in.
    fn im2col<T: Real>(&self, x: &[T], m: usize, cols: &mut Vec<T>) {
        let (kk, c) = (self.kk(), self.c_in);
        cols.clear();
        cols.resize(m * self.ho * self.wo * kk, T::ZERO);
        for e in 0..m {
            let xe = &x[e * self.in_len()..(e + 1) * self.in_len()];
            for i in 0..self.ho {
                for j in 0..self.wo {
                    let row = ((e * self.ho + i) * self.wo + j) * kk;
                    for a in 0..self.k {
                        for b in 0..self.k {
                            if let Some(s) = self.src(i, j, a, b) {
                                let col = row + (a * self.k + b) * c;
                                cols[col..col + c].copy_from_slice(&xe[s * c..(s + 1) * c]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// gx += col2im(cols): each column added back to the pixel im2col read it from.
    fn col2im_add<T: Real>(&self, cols: &[T], m: usize, gx: &mut [T]) {
        let (kk, c) = (self.kk(), self.c_in);
        for e in 0..m {
            let ge = &mut gx[e * self.in_len()..(e + 1) * self.in_len()];
            for i in 0..self.ho {
                for j in 0..self.wo {
                    let row = ((e * self.ho + i) * self.wo + j) * kk;
                    for a in 0..self.k {
                        for b in 0..self.k {
                            if let Some(s) = self.src(i, j, a, b) {
                                let col = row + (a * self.k + b) * c;
                                ge[s * c..(s + 1) * c]
                                    .iter_mut()
                                    .zip(&cols[col..col + c])
                                    .for_each(|(g, &v)| *g += v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// y += X̂ Wᵀ (no bias), y: n × H_out·W_out·C_out.
    pub fn forward<T: Real>(&self, x: &[T], n: usize, wt: &[T], y: &mut [T]) {
        let (kk, px) = (self.kk(), self.ho * self.wo);
        let mut cols = Vec::new();
        for s in (0..n).step_by(BLOCK) {
            let m = BLOCK.min(n - s);
            self.im2col(&x[s * self.in_len()..(s + m) * self.in_len()], m, &mut cols);
            gemm(
                rm_mut(
                    &mut y[s * self.out_len()..(s + m) * self.out_len()],
                    m * px,
                    self.c_out,
                ),
                Accum::Add,
                rm(&cols, m * px, kk),
                rm(wt, self.c_out, kk).transpose(),
                Par::Seq,
            );
        }
    }

    /// gw += gyᵀ X̂ (C_out × k²C_in).
    pub fn weight_grad<T: Real>(&self, x: &[T], gy: &[T], n: usize, gw: &mut [T]) {
        let (kk, px) = (self.kk(), self.ho * self.wo);
        let mut cols = Vec::new();
        for s in (0..n).step_by(BLOCK) {
            let m = BLOCK.min(n - s);
            self.im2col(&x[s * self.in_len()..(s + m) * self.in_len()], m, &mut cols);
            gemm(
                rm_mut(gw, self.c_out, kk),
                Accum::Add,
                rm(
                    &gy[s * self.out_len()..(s + m) * self.out_len()],
                    m * px,
                    self.c_out,
                )
                .transpose(),
                rm(&cols, m * px, kk),
                Par::Seq,
            );
        }
    }

    /// gx += col2im(gy W).
    pub fn input_grad<T: Real>(&self, gy: &[T], wt: &[T], n: usize, gx: &mut [T]) {
        let (kk, px) = (self.kk(), self.ho * self.wo);
        let mut cols = Vec::new();
        for s in (0..n).step_by(BLOCK) {
            let m = BLOCK.min(n - s);
            cols.clear();
            cols.resize(m * px * kk, T::ZERO);
            gemm(
                rm_mut(&mut cols, m * px, kk),
                Accum::Replace,
                rm(
                    &gy[s * self.out_len()..(s + m) * self.out_len()],
                    m * px,
                    self.c_out,
                ),
                rm(wt, self.c_out, kk),
                Par::Seq,
            );
            self.col2im_add(
                &cols,
                m,
                &mut gx[s * self.in_len()..(s + m) * self.in_len()],
            );
        }
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
