//! The exact per-network forward equations of the NTK Ĥ, the dNTK dĤ and the two ddNTKs ddIĤ,
//! ddIIĤ for one input (docs/derivations/dntk.md#forward-equations; the dĤ line is the
//! single-input form of PDLT eq. (11.24), Roberts–Yaida–Hanin arXiv 2106.10165 ch. 11, the
//! ddNTK lines its analogues with one more derivative, derived in the same section).
//!
//! Tensors are row-major: Ĥ[a·n + b], dĤ[(a·n + b)·n + c], dd[((a·n + b)·n + c)·n + d]. Cost per
//! layer: ≈ 4n⁴ flops for dĤ, ≈ 12n⁵ for the ddNTKs (n⁴ memory each).

use crate::activation::Activation;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// out (rest × n, row-major) = Σ_j t[j·rest + r] m[a·n + j]: contracts the first index of the
/// tensor `t` with the matrix `m` (row-major n × n) and moves the new index last. Applied once
/// per index, it computes Σ m_{a j} m_{b k} … t_{j k …} in the original index order.
fn contract_rotate(t: &[f64], m: &[f64], n: usize, out: &mut [f64]) {
    let rest = t.len() / n;
    matmul(
        MatMut::from_row_major_slice_mut(out, rest, n),
        Accum::Replace,
        MatRef::from_column_major_slice(t, rest, n),
        MatRef::from_column_major_slice(m, n, n),
        1.0,
        Par::Seq,
    );
}

/// out (r × c) = a (r × k) · b (k × c), all row-major, accumulated into `out` when `add`.
fn gemm(out: &mut [f64], a: &[f64], b: &[f64], (r, k, c): (usize, usize, usize), add: bool) {
    matmul(
        MatMut::from_row_major_slice_mut(out, r, c),
        if add { Accum::Add } else { Accum::Replace },
        MatRef::from_row_major_slice(a, r, k),
        MatRef::from_row_major_slice(b, k, c),
        1.0,
        Par::Seq,
    );
}

/// One network's single-input state at layer l and the buffers of one step.
pub(crate) struct State {
    /// Width n.
    pub n: usize,
    /// Whether the ddNTKs are propagated.
    pub dd: bool,
    /// Preactivations z^(l).
    pub z: Vec<f64>,
    /// NTK Ĥ^(l) (n²).
    pub h: Vec<f64>,
    /// dNTK dĤ^(l) (n³).
    pub dh: Vec<f64>,
    /// ddIĤ^(l) (n⁴, empty without `dd`).
    pub dd1: Vec<f64>,
    /// ddIIĤ^(l) (n⁴, empty without `dd`).
    pub dd2: Vec<f64>,
    buf: [Vec<f64>; 4],
}

impl State {
    pub fn new(n: usize, dd: bool) -> Self {
        let big = if dd { n * n * n * n } else { n * n * n };
        let quad = if dd { n * n * n * n } else { 0 };
        Self {
            n,
            dd,
            z: vec![0.0; n],
            h: vec![0.0; n * n],
            dh: vec![0.0; n * n * n],
            dd1: vec![0.0; quad],
            dd2: vec![0.0; quad],
            buf: [
                vec![0.0; big],
                vec![0.0; big],
                vec![0.0; big],
                vec![0.0; big],
            ],
        }
    }

    /// Layer 1 (docs/derivations/dntk.md#forward-equations): z^(1) is given, Ĥ^(1) = θ₁ I with
    /// θ₁ = λ_b^(1) + λ_W^(1)|x|²/n₀, and dĤ^(1) = ddIĤ^(1) = ddIIĤ^(1) = 0.
    pub fn start(&mut self, theta1: f64) {
        let n = self.n;
        self.h.fill(0.0);
        for i in 0..n {
            self.h[i * n + i] = theta1;
        }
        self.dh.fill(0.0);
        self.dd1.fill(0.0);
        self.dd2.fill(0.0);
    }

    /// Layer l → l+1 with weights `w` (row-major n × n), biases `b`, learning rates (λ_b, λ_W)
    /// of layer l+1 (λ_W/n per weight): docs/derivations/dntk.md#forward-equations, with
    /// M = W diag σ', N = W diag σ'', O = W diag σ''', G = MĤ, y = σσ':
    ///
    /// ```text
    /// Ĥ' = (λ_b + (λ_W/n)Σσ²) I + G Mᵀ,
    /// dĤ'_abc = (λ_W/n)[δ_ab(Gy)_c + δ_ac(Gy)_b] + (M⊗M⊗M dĤ)_abc + Σ_k N_ak G_bk G_ck,
    /// ddI'_abcd = (λ_W/n)[δ_ab X_cd + δ_ac X_bd + δ_ad X_bc] + (M⊗⁴ ddI)_abcd
    ///   + Σ_j N_aj(Y_jbc G_dj + Y_jcd G_bj + Y_jdb G_cj) + Σ_j O_aj G_bj G_cj G_dj,
    /// ddII'_abcd = (λ_W/n)²(yᵀĤy) δ_ac δ_bd + (λ_W/n)[δ_ab (G diag σ'² Gᵀ)_cd + δ_ac Z_bd
    ///   + δ_bd Z_ac] + (M⊗⁴ ddII)_abcd + Σ_jk E_acj Ĥ_jk E_bdk + Σ_j (E_acj Y2_jbd + E_bdj Y2_jac),
    /// ```
    ///
    /// with Y_kcd = Σ M_cl M_dm dĤ_klm, Y2_jbd = Σ M_bk M_dm dĤ_kjm,
    /// X = Σ_k σσ''_k G_·k G_·k + Σ_k y_k Y_k··, E_acj = N_aj G_cj, u_km = Σ_j y_j dĤ_kjm,
    /// Z = N diag(Ĥy) Gᵀ + M u Mᵀ (docs/derivations/dntk.md#ddntk-forward).
    pub fn step(&mut self, act: &dyn Activation, w: &[f64], b: &[f64], lb: f64, lw: f64) {
        let n = self.n;
        let (n2, n3) = (n * n, n * n * n);
        let c = lw / n as f64;
        let mut sig = vec![0.0; n];
        let mut d1 = vec![0.0; n];
        let mut d2 = vec![0.0; n];
        let mut d3 = vec![0.0; n];
        for k in 0..n {
            (sig[k], d1[k]) = act.f_d1(self.z[k]);
            // Kinked activations: σ'' = σ''' = 0 almost everywhere (docs/derivations/dntk.md
            // #forward-equations).
            d2[k] = act.d2(self.z[k]).unwrap_or(0.0);
            if self.dd {
                d3[k] = act.d3(self.z[k]).unwrap_or(0.0);
            }
        }
        let y: Vec<f64> = (0..n).map(|k| sig[k] * d1[k]).collect();
        let scale = |d: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0; n2];
            for a in 0..n {
                for k in 0..n {
                    out[a * n + k] = w[a * n + k] * d[k];
                }
            }
            out
        };
        let (m, nm) = (scale(&d1), scale(&d2));
        // G = MĤ; gt = Gᵀ (gt[k·n + c] = G_ck).
        let mut g = vec![0.0; n2];
        gemm(&mut g, &m, &self.h, (n, n, n), false);
        let mut gt = vec![0.0; n2];
        for a in 0..n {
            for k in 0..n {
                gt[k * n + a] = g[a * n + k];
            }
        }
        let gy: Vec<f64> = (0..n)
            .map(|a| (0..n).map(|k| g[a * n + k] * y[k]).sum())
            .collect();

        if self.dd {
            self.dd_step(act, w, &m, &nm, &g, &gt, &sig, &d1, &d2, &d3, &y, c);
        }

        // dĤ' (needs the old dĤ only through M⊗M⊗M dĤ).
        let [b0, b1, ..] = &mut self.buf;
        contract_rotate(&self.dh, &m, n, &mut b0[..n3]);
        contract_rotate(&b0[..n3], &m, n, &mut b1[..n3]);
        contract_rotate(&b1[..n3], &m, n, &mut self.dh);
        for a in 0..n {
            for k in 0..n {
                let nak = nm[a * n + k];
                if nak == 0.0 {
                    continue;
                }
                let gk = &gt[k * n..(k + 1) * n];
                for bb in 0..n {
                    let x = nak * gk[bb];
                    let row = &mut self.dh[(a * n + bb) * n..(a * n + bb + 1) * n];
                    row.iter_mut().zip(gk).for_each(|(r, gc)| *r += x * gc);
                }
            }
            for (j, &g) in gy.iter().enumerate() {
                self.dh[(a * n + a) * n + j] += c * g;
                self.dh[(a * n + j) * n + a] += c * g;
            }
        }

        // Ĥ' = diag·I + G Mᵀ and z' = b + Wσ.
        let diag = lb + c * sig.iter().map(|x| x * x).sum::<f64>();
        let mut mt = vec![0.0; n2];
        for a in 0..n {
            for k in 0..n {
                mt[k * n + a] = m[a * n + k];
            }
        }
        gemm(&mut self.h, &g, &mt, (n, n, n), false);
        for i in 0..n {
            self.h[i * n + i] += diag;
        }
        for a in 0..n {
            self.z[a] = b[a] + (0..n).map(|k| w[a * n + k] * sig[k]).sum::<f64>();
        }
    }

    /// The ddIĤ and ddIIĤ lines of [`State::step`] (before Ĥ, dĤ are overwritten).
    #[allow(clippy::too_many_arguments)]
    fn dd_step(
        &mut self,
        _act: &dyn Activation,
        w: &[f64],
        m: &[f64],
        nm: &[f64],
        g: &[f64],
        gt: &[f64],
        sig: &[f64],
        d1: &[f64],
        d2: &[f64],
        d3: &[f64],
        y: &[f64],
        c: f64,
    ) {
        let n = self.n;
        let (n2, n3, n4) = (n * n, n * n * n, n * n * n * n);
        let dh = &self.dh;
        // t1[k][l][d] = Σ_m dĤ_klm M_dm; Y[k][c][d] = Σ_l M_cl t1[k][l][d];
        // Y2[j][b][d] = Σ_k M_bk t1[k][j][d].
        let mut t1 = vec![0.0; n3];
        for kl in 0..n2 {
            let row = &dh[kl * n..(kl + 1) * n];
            for d in 0..n {
                t1[kl * n + d] = (0..n).map(|mm| row[mm] * m[d * n + mm]).sum();
            }
        }
        let mut yy = vec![0.0; n3];
        let mut y2 = vec![0.0; n3];
        for k in 0..n {
            // Y[k] = M · t1[k] (n × n times n × n).
            gemm(
                &mut yy[k * n2..(k + 1) * n2],
                m,
                &t1[k * n2..(k + 1) * n2],
                (n, n, n),
                false,
            );
        }
        // Y2[j][b][d] = Σ_k M_bk t1[k][j][d]: for each j, M · (t1[·][j][·]).
        let mut slab = vec![0.0; n2];
        for j in 0..n {
            for k in 0..n {
                slab[k * n..(k + 1) * n].copy_from_slice(&t1[(k * n + j) * n..(k * n + j + 1) * n]);
            }
            gemm(&mut y2[j * n2..(j + 1) * n2], m, &slab, (n, n, n), false);
        }
        // X_cd = Σ_k σσ''_k G_ck G_dk + Σ_k y_k Y_kcd.
        let mut x = vec![0.0; n2];
        for k in 0..n {
            let s = sig[k] * d2[k];
            let gk = &gt[k * n..(k + 1) * n];
            for cc in 0..n {
                for d in 0..n {
                    x[cc * n + d] += s * gk[cc] * gk[d] + y[k] * yy[k * n2 + cc * n + d];
                }
            }
        }
        // u_km = Σ_j y_j dĤ_kjm; hy = Ĥy.
        let mut u = vec![0.0; n2];
        for k in 0..n {
            for j in 0..n {
                let yj = y[j];
                for mm in 0..n {
                    u[k * n + mm] += yj * dh[(k * n + j) * n + mm];
                }
            }
        }
        let hy: Vec<f64> = (0..n)
            .map(|j| (0..n).map(|k| self.h[j * n + k] * y[k]).sum())
            .collect();
        let yhy: f64 = (0..n).map(|j| y[j] * hy[j]).sum();
        // Z = N diag(Ĥy) Gᵀ + M u Mᵀ; gs = G diag σ'² Gᵀ.
        let mut z = vec![0.0; n2];
        let mut gs = vec![0.0; n2];
        let mut mu = vec![0.0; n2];
        gemm(&mut mu, m, &u, (n, n, n), false);
        for a in 0..n {
            for bb in 0..n {
                let mut v = 0.0;
                let mut s = 0.0;
                for k in 0..n {
                    v += nm[a * n + k] * hy[k] * g[bb * n + k] + mu[a * n + k] * m[bb * n + k];
                    s += g[a * n + k] * d1[k] * d1[k] * g[bb * n + k];
                }
                z[a * n + bb] = v;
                gs[a * n + bb] = s;
            }
        }

        // ddI' = M⊗⁴ ddI + A_abcd + A_acdb + A_adbc + δ-terms, with
        // A_abcd = Σ_j N_aj Y_jbc G_dj + ⅓ Σ_j O_aj G_bj G_cj G_dj (the O-part is symmetric in
        // b, c, d, so the three permutations give it once).
        let [b0, b1, b2, b3] = &mut self.buf;
        contract_rotate(&self.dd1, m, n, b0);
        contract_rotate(b0, m, n, b1);
        contract_rotate(b1, m, n, b0);
        contract_rotate(b0, m, n, &mut self.dd1);
        // b1[j][bcd] = Y_jbc G_dj; b2[j][bcd] = ⅓ G_bj G_cj G_dj.
        for j in 0..n {
            let gj = &gt[j * n..(j + 1) * n];
            for bc in 0..n2 {
                let (bb, cc) = (bc / n, bc % n);
                let yv = yy[j * n2 + bc];
                let gg = gj[bb] * gj[cc] / 3.0;
                let o1 = &mut b1[(j * n2 + bc) * n..(j * n2 + bc + 1) * n];
                o1.iter_mut().zip(gj).for_each(|(o, gd)| *o = yv * gd);
                let o2 = &mut b2[(j * n2 + bc) * n..(j * n2 + bc + 1) * n];
                o2.iter_mut().zip(gj).for_each(|(o, gd)| *o = gg * gd);
            }
        }
        let om: Vec<f64> = (0..n2).map(|i| w[i] * d3[i % n]).collect();
        gemm(b3, nm, b1, (n, n, n3), false);
        gemm(b3, &om, b2, (n, n, n3), true);
        let dd1 = &mut self.dd1;
        for a in 0..n {
            for bb in 0..n {
                for cc in 0..n {
                    for d in 0..n {
                        let at = |p: usize, q: usize, r: usize| b3[((a * n + p) * n + q) * n + r];
                        let mut v = at(bb, cc, d) + at(cc, d, bb) + at(d, bb, cc);
                        if a == bb {
                            v += c * x[cc * n + d];
                        }
                        if a == cc {
                            v += c * x[bb * n + d];
                        }
                        if a == d {
                            v += c * x[bb * n + cc];
                        }
                        dd1[((a * n + bb) * n + cc) * n + d] += v;
                    }
                }
            }
        }

        // ddII' = M⊗⁴ ddII + S[ac][bd] + S[bd][ac] + δ-terms, with E[(a,c)][j] = N_aj G_cj and
        // S = E (½ Ĥ Eᵀ + Y2) (Σ_jk E_acj Ĥ_jk E_bdk is symmetric under (ac) ↔ (bd)).
        contract_rotate(&self.dd2, m, n, b0);
        contract_rotate(b0, m, n, b1);
        contract_rotate(b1, m, n, b0);
        contract_rotate(b0, m, n, &mut self.dd2);
        let mut e = vec![0.0; n3];
        for a in 0..n {
            for cc in 0..n {
                for j in 0..n {
                    e[(a * n + cc) * n + j] = nm[a * n + j] * g[cc * n + j];
                }
            }
        }
        // bm[j][bd] = ½ Σ_k Ĥ_jk E[bd][k] + Y2[j][bd].
        let mut bm = y2;
        for j in 0..n {
            for bd in 0..n2 {
                let ek = &e[bd * n..(bd + 1) * n];
                bm[j * n2 + bd] += 0.5 * (0..n).map(|k| self.h[j * n + k] * ek[k]).sum::<f64>();
            }
        }
        gemm(&mut b3[..n4], &e, &bm, (n2, n, n2), false);
        let dd2 = &mut self.dd2;
        for a in 0..n {
            for bb in 0..n {
                for cc in 0..n {
                    for d in 0..n {
                        let (ac, bd) = (a * n + cc, bb * n + d);
                        let mut v = b3[ac * n2 + bd] + b3[bd * n2 + ac];
                        if a == cc && bb == d {
                            v += c * c * yhy;
                        }
                        if a == bb {
                            v += c * gs[cc * n + d];
                        }
                        if a == cc {
                            v += c * z[bb * n + d];
                        }
                        if bb == d {
                            v += c * z[a * n + cc];
                        }
                        dd2[((a * n + bb) * n + cc) * n + d] += v;
                    }
                }
            }
        }
    }
}
