//! Monte Carlo of the dNTK correlators P and Q (docs/derivations/dntk.md#definitions) over
//! ensembles of real finite-width networks.
//!
//! Every network propagates z, the NTK Ĥ (n×n) and the dNTK dĤ (n×n×n) through the exact
//! per-network forward equations of docs/derivations/dntk.md#forward-equations (the
//! single-input form of PDLT eq. (11.24)), with full Gaussian weight matrices, in f64: O(n⁴)
//! flops and O(n³) memory per layer. Estimators are pair means over i ≠ j,
//! P̂ = n·Σ_{i≠j} dĤ_ijj z_i/(n(n−1)) and Q̂ = n·Σ_{i≠j} dĤ_iij z_j/(n(n−1)), unbiased for
//! n E[dĤ_ijj z_i] and n E[dĤ_iij z_j]; standard errors from batch means as in [`super::run`].
//! As there, layer 1 is drawn exactly (z^(1) i.i.d. N(0, K^(1)), Ĥ^(1) ∝ I, dĤ^(1) = 0).

use super::{network_rng, Estimate, McConfig};
use crate::profile::Init;
use crate::TheoryError;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Monte Carlo estimates of P and Q at one layer.
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
}

/// Run the dNTK Monte Carlo for `cfg` (plain MLP, Gaussian weights in every layer; `cfg.ntk`
/// and `cfg.first_layer` must be the defaults' meaning: the NTK is always propagated here).
/// Cost per network: ≈ 8 n⁴ depth flops.
pub fn dntk_pair_means(cfg: &McConfig) -> Result<Vec<DntkMcLayer>, TheoryError> {
    cfg.validate()?;
    if cfg.ensemble.init != Init::Gaussian || cfg.first_layer != Init::Gaussian {
        return Err(TheoryError::Invalid {
            flag: "--init",
            msg: "the dNTK Monte Carlo samples Gaussian weights only".into(),
        });
    }
    let (depth, nb) = (cfg.depth, cfg.batches.max(2));
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism()
            .map(|v| v.get())
            .unwrap_or(1)
    } else {
        cfg.threads
    };
    // Per batch and layer: Σ P̂, Σ Q̂, count. Batch b holds networks s ≡ b (mod nb), summed in
    // increasing s, so the result does not depend on the thread count.
    let mut sums = vec![vec![0.0f64; 3 * depth]; nb];
    let failure = std::sync::Mutex::new(None::<TheoryError>);
    let chunks = std::sync::Mutex::new(sums.iter_mut().enumerate().collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(nb) {
            scope.spawn(|| {
                let mut net = Net::new(cfg.width);
                loop {
                    let item = chunks.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((b, acc)) = item else { break };
                    let mut s = b;
                    while s < cfg.networks {
                        if let Err(e) = net.run(cfg, s as u64, acc) {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            return;
                        }
                        s += nb;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let est = |l: usize, slot: usize| {
        let means: Vec<f64> = sums
            .iter()
            .map(|b| b[3 * l + slot] / b[3 * l + 2])
            .collect();
        let total: f64 = sums.iter().map(|b| b[3 * l + slot]).sum::<f64>()
            / sums.iter().map(|b| b[3 * l + 2]).sum::<f64>();
        let m = means.iter().sum::<f64>() / nb as f64;
        let var = means.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (nb as f64 - 1.0);
        Estimate {
            value: total,
            se: (var / nb as f64).sqrt(),
        }
    };
    Ok((0..depth)
        .map(|l| DntkMcLayer {
            l: l + 1,
            p: est(l, 0),
            q: est(l, 1),
        })
        .collect())
}

/// One network's state: z, σ-factors, W (row-major), Ĥ, dĤ (index [a][b][c] at a·n² + b·n + c)
/// and scratch buffers.
struct Net {
    n: usize,
    z: Vec<f64>,
    w: Vec<f64>,
    m: Vec<f64>,
    g: Vec<f64>,
    h: Vec<f64>,
    dh: Vec<f64>,
    t1: Vec<f64>,
    t2: Vec<f64>,
}

impl Net {
    fn new(n: usize) -> Self {
        Self {
            n,
            z: vec![0.0; n],
            w: vec![0.0; n * n],
            m: vec![0.0; n * n],
            g: vec![0.0; n * n],
            h: vec![0.0; n * n],
            dh: vec![0.0; n * n * n],
            t1: vec![0.0; n * n * n],
            t2: vec![0.0; n * n * n],
        }
    }

    fn run(&mut self, cfg: &McConfig, s: u64, acc: &mut [f64]) -> Result<(), TheoryError> {
        let mut rng = network_rng(cfg.seed, s);
        let e = &cfg.ensemble;
        let n = self.n;
        let nf = n as f64;
        let sd1 = cfg.k1.sqrt();
        for v in self.z.iter_mut() {
            *v = sd1 * rng.sample::<f64, _>(StandardNormal);
        }
        let (lb, lw) = cfg.lr.at(1);
        let xnorm = (cfg.k1 - e.cb) / e.cw; // |x|²/n₀
        self.h.fill(0.0);
        for i in 0..n {
            self.h[i * n + i] = lb + lw * xnorm;
        }
        self.dh.fill(0.0);
        let act = &*e.act;
        let (sb, sw) = (e.cb.sqrt(), (e.cw / nf).sqrt());
        for l in 1..=cfg.depth {
            self.record(l, acc);
            if l == cfg.depth {
                break;
            }
            let mut sig = vec![0.0; n];
            let mut d1 = vec![0.0; n];
            let mut d2 = vec![0.0; n];
            for k in 0..n {
                (sig[k], d1[k]) = act.f_d1(self.z[k]);
                d2[k] = act.d2(self.z[k]).unwrap_or(0.0);
            }
            for v in self.w.iter_mut() {
                *v = sw * rng.sample::<f64, _>(StandardNormal);
            }
            let (w, m, g, h) = (&self.w, &mut self.m, &mut self.g, &self.h);
            for a in 0..n {
                let mut za = sb * rng.sample::<f64, _>(StandardNormal);
                for k in 0..n {
                    za += w[a * n + k] * sig[k];
                    m[a * n + k] = w[a * n + k] * d1[k];
                }
                self.z[a] = za;
            }
            // G = M Ĥ
            for a in 0..n {
                for k in 0..n {
                    g[a * n + k] = (0..n).map(|j| m[a * n + j] * h[j * n + k]).sum();
                }
            }
            // v = M Ĥ y with y = σσ'
            let v: Vec<f64> = (0..n)
                .map(|a| (0..n).map(|k| g[a * n + k] * sig[k] * d1[k]).sum())
                .collect();
            // dĤ' = (λ_W/n)[δ_ab v_c + δ_ac v_b] + M⊗M⊗M · dĤ + Σ_k N_ak G_bk G_ck
            let (_, lw) = cfg.lr.at(l + 1);
            let (dh, t1, t2) = (&mut self.dh, &mut self.t1, &mut self.t2);
            let n2 = n * n;
            // t1[a][l][m] = Σ_k M_ak dĤ[k][l][m]
            for a in 0..n {
                for lm in 0..n2 {
                    t1[a * n2 + lm] = (0..n).map(|k| m[a * n + k] * dh[k * n2 + lm]).sum();
                }
            }
            // t2[a][b][m] = Σ_l M_bl t1[a][l][m]
            for a in 0..n {
                for b in 0..n {
                    for mm in 0..n {
                        t2[a * n2 + b * n + mm] =
                            (0..n).map(|j| m[b * n + j] * t1[a * n2 + j * n + mm]).sum();
                    }
                }
            }
            for a in 0..n {
                for b in 0..n {
                    for c in 0..n {
                        let mut x: f64 =
                            (0..n).map(|j| m[c * n + j] * t2[a * n2 + b * n + j]).sum();
                        x += (0..n)
                            .map(|k| w[a * n + k] * d2[k] * g[b * n + k] * g[c * n + k])
                            .sum::<f64>();
                        if a == b {
                            x += lw / nf * v[c];
                        }
                        if a == c {
                            x += lw / nf * v[b];
                        }
                        dh[a * n2 + b * n + c] = x;
                    }
                }
            }
            // Ĥ' = (λ_b + (λ_W/n)Σσ²) I + G Mᵀ
            let (lb, _) = cfg.lr.at(l + 1);
            let diag = lb + lw / nf * sig.iter().map(|x| x * x).sum::<f64>();
            let mut hn = vec![0.0; n2];
            for a in 0..n {
                for b in 0..n {
                    hn[a * n + b] = (0..n).map(|k| g[a * n + k] * m[b * n + k]).sum::<f64>()
                        + if a == b { diag } else { 0.0 };
                }
            }
            self.h = hn;
            if self.z.iter().any(|x| !x.is_finite()) {
                return Err(TheoryError::Diverged {
                    layer: l + 1,
                    what: "a preactivation overflowed in the dNTK Monte Carlo".into(),
                });
            }
        }
        Ok(())
    }

    fn record(&self, l: usize, acc: &mut [f64]) {
        let n = self.n;
        let (mut p, mut q) = (0.0, 0.0);
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    p += self.dh[i * n * n + j * n + j] * self.z[i];
                    q += self.dh[i * n * n + i * n + j] * self.z[j];
                }
            }
        }
        let scale = n as f64 / (n * (n - 1)) as f64;
        let q0 = 3 * (l - 1);
        acc[q0] += p * scale;
        acc[q0 + 1] += q * scale;
        acc[q0 + 2] += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;
    use crate::profile::{Ensemble, LearningRates, ProfileConfig};

    #[test]
    fn layer_two_matches_the_recursion_at_width_eight() {
        // At l = 2 the expectations P^(2), Q^(2) hold at every width (layer 1 is exactly
        // Gaussian and Ĥ^(1) ∝ I; docs/derivations/dntk.md#derivation-rules), so a width-8
        // ensemble must agree with the recursion within its statistical error.
        let lr = LearningRates {
            lambda_b: 1.0,
            lambda_w: 1.0,
            b_over_l: true,
        };
        let cfg = McConfig {
            ensemble: Ensemble::new(parse("tanh").unwrap(), 0.0, 1.0),
            k1: 1.0,
            width: 8,
            depth: 3,
            networks: 4000,
            ntk: true,
            lr,
            first_layer: Init::Gaussian,
            seed: 11,
            batches: 20,
            threads: 0,
        };
        let mc = dntk_pair_means(&cfg).unwrap();
        let th = crate::dntk::dntk_profile(&ProfileConfig {
            ensemble: cfg.ensemble.clone(),
            k1: 1.0,
            v1: 0.0,
            depth: 3,
            lr,
        })
        .unwrap();
        for (got, want) in [(mc[1].p, th[1].p), (mc[1].q, th[1].q)] {
            eprintln!("l=2: {} ± {} vs {want}", got.value, got.se);
            assert!(got.se < 0.05 * want.abs(), "SE too large: {got:?}");
            assert!((got.value - want).abs() < 4.0 * got.se, "{got:?} vs {want}");
        }
        eprintln!(
            "l=3 (1/n corrections not removed): P {} ± {} vs {}, Q {} ± {} vs {}",
            mc[2].p.value, mc[2].p.se, th[2].p, mc[2].q.value, mc[2].q.se, th[2].q
        );
        // Layer 1 has no dNTK.
        assert!(mc[0].p.value == 0.0 && mc[0].q.value == 0.0);
    }
}
