//! Monte Carlo of the dNTK correlators P, Q and the ddNTK correlators R, S, T, U
//! (docs/derivations/dntk.md#definitions) over ensembles of real finite-width networks.
//!
//! Every network propagates z, the NTK Ĥ (n×n), the dNTK dĤ (n×n×n) and, for R, S, T, U, the
//! ddNTKs ddIĤ and ddIIĤ (n⁴ each) through the exact per-network forward equations of
//! docs/derivations/dntk.md#forward-equations ([`forward`]; the dĤ line is the single-input form
//! of PDLT eq. (11.24), arXiv 2106.10165), with full weight matrices (Gaussian or Haar), in f64.
//! Estimators are pair means over i ≠ j (docs/derivations/dntk.md#mc-estimators):
//! P̂ = n·Σ_{i≠j} dĤ_ijj z_i/(n(n−1)), Q̂ = n·Σ_{i≠j} dĤ_iij z_j/(n(n−1)), R̂ = n·mean ddI_iijj,
//! Ŝ = n·mean ddII_iijj, T̂ = n·mean ddII_ijij, Û = n·mean ddII_ijji, each unbiased for its
//! n E[·]; standard errors from batch means, with the batch/thread harness of
//! [`super::batch_sums`] (deterministic for a seed whatever the thread count). As in
//! [`super::run`], layer 1 is drawn exactly (z^(1) from [`super::first_layer`], Ĥ^(1) ∝ I,
//! dĤ^(1) = ddIĤ^(1) = ddIIĤ^(1) = 0).

mod forward;

use super::{
    batch_sums, draw_weights, first_layer, network_rng, ratio_estimate, Estimate, McConfig,
};
use crate::profile::Init;
use crate::TheoryError;
use faer::Mat;
use forward::State;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Monte Carlo estimates of the dNTK/ddNTK correlators at one layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DntkMcLayer {
    /// Layer index l (1-based).
    pub l: usize,
    /// P = n E[dĤ_ijj z_i], i ≠ j.
    #[serde(rename = "P")]
    pub p: Estimate,
    /// Q = n E[dĤ_iij z_j], i ≠ j.
    #[serde(rename = "Q")]
    pub q: Estimate,
    /// R = n E[ddIĤ_iijj] (None unless the ddNTKs were propagated).
    #[serde(rename = "R", skip_serializing_if = "Option::is_none")]
    pub r: Option<Estimate>,
    /// S = n E[ddIIĤ_iijj].
    #[serde(rename = "S", skip_serializing_if = "Option::is_none")]
    pub s: Option<Estimate>,
    /// T = n E[ddIIĤ_ijij].
    #[serde(rename = "T", skip_serializing_if = "Option::is_none")]
    pub t: Option<Estimate>,
    /// U = n E[ddIIĤ_ijji].
    #[serde(rename = "U", skip_serializing_if = "Option::is_none")]
    pub u: Option<Estimate>,
}

impl DntkMcLayer {
    /// The estimate named `P`, `Q`, `R`, `S`, `T` or `U`, if measured.
    pub fn get(&self, name: &str) -> Option<Estimate> {
        match name {
            "P" => Some(self.p),
            "Q" => Some(self.q),
            "R" => self.r,
            "S" => self.s,
            "T" => self.t,
            "U" => self.u,
            _ => None,
        }
    }
}

/// Accumulator slots per layer: P̂, Q̂, R̂, Ŝ, T̂, Û, count.
const SLOTS: usize = 7;

/// P and Q for `cfg` (plain MLP; Gaussian or Haar weights as `cfg.ensemble.init` and
/// `cfg.first_layer` say; the NTK is always propagated, `cfg.ntk` is ignored).
/// Cost per network: ≈ 8 n⁴ flops per layer.
pub fn dntk_pair_means(cfg: &McConfig) -> Result<Vec<DntkMcLayer>, TheoryError> {
    pair_means(cfg, false)
}

/// P, Q, R, S, T and U for `cfg` (as [`dntk_pair_means`]). Cost per network: ≈ 12 n⁵ flops per
/// layer and 5 n⁴ f64 of memory per thread.
pub fn ddntk_pair_means(cfg: &McConfig) -> Result<Vec<DntkMcLayer>, TheoryError> {
    pair_means(cfg, true)
}

fn pair_means(cfg: &McConfig, dd: bool) -> Result<Vec<DntkMcLayer>, TheoryError> {
    cfg.validate()?;
    let depth = cfg.depth;
    let sums = batch_sums(
        cfg,
        SLOTS * depth,
        || Net::new(cfg.width, dd),
        |net, s, acc| net.run(cfg, s, acc),
        &(0..cfg.batches.max(2)).collect::<Vec<_>>(),
        &|_| {},
    )?;
    let est = |l: usize, k: usize| ratio_estimate(&sums, SLOTS * l + k, SLOTS * l + 6);
    let opt = |l: usize, k: usize| dd.then(|| est(l, k));
    Ok((0..depth)
        .map(|l| DntkMcLayer {
            l: l + 1,
            p: est(l, 0),
            q: est(l, 1),
            r: opt(l, 2),
            s: opt(l, 3),
            t: opt(l, 4),
            u: opt(l, 5),
        })
        .collect())
}

/// One thread's network: the forward state and the weight buffers.
struct Net {
    st: State,
    w: Vec<f64>,
    b: Vec<f64>,
    haar: Mat<f64>,
}

impl Net {
    fn new(n: usize, dd: bool) -> Self {
        Self {
            st: State::new(n, dd),
            w: vec![0.0; n * n],
            b: vec![0.0; n],
            haar: Mat::zeros(n, n),
        }
    }

    fn run(&mut self, cfg: &McConfig, s: u64, acc: &mut [f64]) -> Result<(), TheoryError> {
        let mut rng = network_rng(cfg.seed, s);
        let e = &cfg.ensemble;
        let n = self.st.n;
        let nf = n as f64;
        first_layer(cfg, &mut rng, &mut self.st.z);
        let (lb, lw) = cfg.lr.at(1);
        self.st.start(lb + lw * (cfg.k1 - e.cb) / e.cw); // |x|²/n₀ = (K^(1) − C_b)/C_W
        let (sb, sw) = (e.cb.sqrt(), (e.cw / nf).sqrt());
        for l in 1..=cfg.depth {
            self.record(l, acc);
            if l == cfg.depth {
                break;
            }
            match e.init {
                Init::Gaussian => {
                    for v in self.w.iter_mut() {
                        *v = sw * rng.sample::<f64, _>(StandardNormal);
                    }
                }
                Init::Orthogonal => {
                    draw_weights(&mut self.haar, Init::Orthogonal, e.cw, &mut rng);
                    for a in 0..n {
                        for k in 0..n {
                            self.w[a * n + k] = self.haar[(a, k)];
                        }
                    }
                }
            }
            for v in self.b.iter_mut() {
                *v = sb * rng.sample::<f64, _>(StandardNormal);
            }
            let (lb, lw) = cfg.lr.at(l + 1);
            self.st.step(&*e.act, &self.w, &self.b, lb, lw);
            if self.st.z.iter().any(|x| !x.is_finite()) {
                return Err(TheoryError::Diverged {
                    layer: l + 1,
                    what: "a preactivation overflowed in the dNTK Monte Carlo".into(),
                });
            }
        }
        Ok(())
    }

    /// Add layer l's pair estimators (docs/derivations/dntk.md#mc-estimators) to `acc`.
    fn record(&self, l: usize, acc: &mut [f64]) {
        let st = &self.st;
        let n = st.n;
        let (n2, n3) = (n * n, n * n * n);
        let mut v = [0.0; 6];
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                v[0] += st.dh[i * n2 + j * n + j] * st.z[i];
                v[1] += st.dh[i * n2 + i * n + j] * st.z[j];
                if st.dd {
                    let at = |t: &[f64], a: usize, b: usize, c: usize, d: usize| {
                        t[a * n3 + b * n2 + c * n + d]
                    };
                    v[2] += at(&st.dd1, i, i, j, j);
                    v[3] += at(&st.dd2, i, i, j, j);
                    v[4] += at(&st.dd2, i, j, i, j);
                    v[5] += at(&st.dd2, i, j, j, i);
                }
            }
        }
        let scale = n as f64 / (n * (n - 1)) as f64;
        let q = &mut acc[SLOTS * (l - 1)..SLOTS * l];
        for k in 0..6 {
            q[k] += v[k] * scale;
        }
        q[6] += 1.0;
    }
}

#[cfg(test)]
mod tests;

/// Weighted least-squares fit v(n) = a + b/n of Monte Carlo estimates at several widths (weights
/// 1/SE²), returning a (the n → ∞ value) with its standard error √((XᵀWX)⁻¹)₀₀. With two widths it
/// is the Richardson extrapolation (n₂v₂ − n₁v₁)/(n₂ − n₁). Errors name `--widths` for fewer than
/// two distinct widths or a non-positive SE.
pub fn fit_inverse_width(points: &[(usize, Estimate)]) -> Result<Estimate, TheoryError> {
    let bad = |msg: &str| TheoryError::Invalid {
        flag: "--widths",
        msg: msg.into(),
    };
    let (mut s0, mut s1, mut s2, mut t0, mut t1) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(n, e) in points {
        if !(e.se > 0.0) {
            return Err(bad(
                "every width needs a positive standard error (more networks)",
            ));
        }
        let (x, w) = (1.0 / n as f64, 1.0 / (e.se * e.se));
        s0 += w;
        s1 += w * x;
        s2 += w * x * x;
        t0 += w * e.value;
        t1 += w * x * e.value;
    }
    let det = s0 * s2 - s1 * s1;
    if points.len() < 2 || !(det > 1e-12 * s0 * s2) {
        return Err(bad("the 1/n fit needs at least two distinct widths"));
    }
    Ok(Estimate {
        value: (s2 * t0 - s1 * t1) / det,
        se: (s2 / det).sqrt(),
    })
}
