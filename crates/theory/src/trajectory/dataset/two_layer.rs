//! The statistics of [`super::DatasetStats`] for a network with one hidden layer (depth L = 2)
//! of width n, for any set of inputs and any smooth activation, from their definitions
//! (docs/derivations/trained_dataset.md#two-layer). The hidden preactivations u_k = W^(1)x are
//! exactly Gaussian, u_{k;·} ~ N(0, K¹) with K¹_ab = C_W x_a·x_b/n₀, independent across k, and the
//! output weights are W^(2)_k = √(C_W/n) w_k, w_k ~ N(0, 1); every statistic is then n times a
//! sum over neurons of single-neuron Gaussian moments ⟨·⟩ over (u_a, u_b, …). With
//! H¹_ab = λ_W x_a·x_b/n₀ (C_b = λ_b = 0; σ_a = σ(u_a), primes are derivatives):
//!
//!   K_ab   = C_W⟨σ_aσ_b⟩,  Θ_ab = λ_W⟨σ_aσ_b⟩ + C_W⟨σ'_aσ'_b⟩H¹_ab,  Θ¹ = 0 (E[Ĥ] = Θ at every n)
//!   V_(ab)(cd) = λ²⟨σ_aσ_bσ_cσ_d⟩ + λC[⟨σ_aσ_bσ'_cσ'_d⟩H¹_cd + ⟨σ'_aσ'_bσ_cσ_d⟩H¹_ab]
//!              + 3C²⟨σ'_aσ'_bσ'_cσ'_d⟩H¹_abH¹_cd − Θ_abΘ_cd
//!   𝒢_abcμ = λC[⟨σ'_aσ_bσ'_cσ_μ⟩H¹_ac + ⟨σ'_aσ'_bσ_cσ_μ⟩H¹_ab] + 3C²⟨σ''_aσ'_bσ'_cσ_μ⟩H¹_abH¹_ac
//!   ℐ_abcd = λC[⟨σ''_aσ_bσ'_cσ'_d⟩H¹_acH¹_ad + ⟨σ''_aσ'_bσ_cσ'_d⟩H¹_abH¹_ad + ⟨σ''_aσ'_bσ'_cσ_d⟩H¹_abH¹_ac]
//!            + 3C²⟨σ'''_aσ'_bσ'_cσ'_d⟩H¹_abH¹_acH¹_ad
//!   𝒥_abcd = λC⟨σ'_aσ'_bσ'_cσ'_d⟩H¹_acH¹_bd + H¹_ab[λ²⟨σ'_aσ'_bσ_cσ_d⟩
//!            + λC(⟨σ'_aσ''_bσ_cσ'_d⟩H¹_bd + ⟨σ''_aσ'_bσ'_cσ_d⟩H¹_ac) + 3C²⟨σ''_aσ''_bσ'_cσ'_d⟩H¹_acH¹_bd]
//!
//! (λ = λ_W, C = C_W; E[w²] = 1 and E[w⁴] = 3 give the factors 1 and 3). Each moment touches at
//! most four distinct inputs and is a Gaussian integral of that dimension: tensor
//! Gauss–Hermite ([`crate::gauss::expect_nd`], `nodes` per dimension in 3-D and 4-D).

use super::dynamics::Idx;
use super::moments::MomentTable;
use super::DatasetStats;
use crate::activation::Activation;
use crate::gauss::QuadConfig;
use crate::trajectory::test_input::check_activation;
use crate::TheoryError;

/// The network and inputs of [`two_layer_stats`].
#[derive(Debug, Clone, PartialEq)]
pub struct StatsConfig {
    /// C_W of both layers (C_b = 0).
    pub cw: f64,
    /// λ_W of both layers (λ_b = 0).
    pub lambda_w: f64,
    /// The inputs' Gram matrix x_a·x_b/n₀, N × N row-major, training inputs first.
    pub gram: Vec<f64>,
    /// Number of training inputs N_A.
    pub n_train: usize,
    /// Gauss–Hermite nodes per dimension for the 3- and 4-D moments.
    pub nodes: usize,
}

impl StatsConfig {
    /// The rules the statistics use: `nodes` per dimension in 3- and 4-D, 200 in 2-D (converged
    /// to ~1e-10 for tanh, docs/derivations/trained_dataset.md#two-layer), 192 in 1-D.
    pub fn quad(&self) -> QuadConfig {
        QuadConfig {
            ghn: self.nodes,
            gh2: 200,
            ..QuadConfig::default()
        }
    }
}

/// One factor σ^(m)(u_a) of a moment: (input a, derivative order m).
type Factor = (usize, u8);

/// Validate `cfg`: an N×N Gram matrix of N ≥ N_A ≥ 1 inputs, C_W, λ_W > 0, ≥ 4 nodes.
/// Returns (N, N_A).
pub(super) fn check_config(cfg: &StatsConfig) -> Result<(usize, usize), TheoryError> {
    let na = cfg.n_train;
    let n = (cfg.gram.len() as f64).sqrt().round() as usize;
    if n * n != cfg.gram.len() || n == 0 || na == 0 || na > n {
        return Err(TheoryError::Invalid {
            flag: "--train-x",
            msg: format!(
                "need an N×N Gram matrix with 1 ≤ N_A ≤ N (got {} entries, N_A = {na})",
                cfg.gram.len()
            ),
        });
    }
    crate::multi::check_kernel_matrix(&cfg.gram, n, "--train-x")?;
    if !(cfg.cw > 0.0 && cfg.lambda_w > 0.0 && cfg.nodes >= 4) {
        return Err(TheoryError::Invalid {
            flag: "--cw",
            msg: format!(
                "need C_W > 0, λ_W > 0 and ≥ 4 quadrature nodes (got {}, {}, {})",
                cfg.cw, cfg.lambda_w, cfg.nodes
            ),
        });
    }
    Ok((n, na))
}

/// The statistics of a depth-2 network on the inputs of `cfg` (module docs). Entries the
/// trajectory never reads (two or more test indices) are NaN.
pub fn two_layer_stats(
    act: &dyn Activation,
    cfg: &StatsConfig,
) -> Result<DatasetStats, TheoryError> {
    two_layer_stats_with(act, cfg, &cfg.quad())
}

/// [`two_layer_stats`] with every rule given (`cfg.nodes` is ignored): the two-input statistics of
/// [`crate::trajectory::test_input`] use it with finer 1- and 2-D rules.
pub fn two_layer_stats_with(
    act: &dyn Activation,
    cfg: &StatsConfig,
    quad: &QuadConfig,
) -> Result<DatasetStats, TheoryError> {
    check_activation(act)?;
    let (n, na) = check_config(cfg)?;
    let (c, l) = (cfg.cw, cfg.lambda_w);
    let k1: Vec<f64> = cfg.gram.iter().map(|g| c * g).collect();
    let h1 = |a: usize, b: usize| l * cfg.gram[a * n + b];
    let ix = Idx { n, na };

    let m = MomentTable::new(k1, n);
    let build = |get: &mut dyn FnMut(&[Factor]) -> f64| -> DatasetStats {
        let mut s = DatasetStats {
            theta1: vec![0.0; n * n],
            ..DatasetStats::unset(n, na)
        };
        for a in 0..na {
            for b in 0..na {
                s.k[a * na + b] = c * get(&[(a, 0), (b, 0)]);
            }
        }
        let theta = |a: usize, b: usize, get: &mut dyn FnMut(&[Factor]) -> f64| {
            l * get(&[(a, 0), (b, 0)]) + c * get(&[(a, 1), (b, 1)]) * h1(a, b)
        };
        for a in 0..n {
            for b in 0..n {
                s.theta[ix.i2(a, b)] = theta(a, b, get);
            }
        }
        for a in 0..n {
            for b in 0..n {
                for cc in 0..n {
                    if ix.tests(&[a, b, cc]) > 1 {
                        continue;
                    }
                    for mu in 0..na {
                        s.dntk_z[ix.i3(a, b, cc) * na + mu] = l
                            * c
                            * (get(&[(a, 1), (b, 0), (cc, 1), (mu, 0)]) * h1(a, cc)
                                + get(&[(a, 1), (b, 1), (cc, 0), (mu, 0)]) * h1(a, b))
                            + 3.0
                                * c
                                * c
                                * get(&[(a, 2), (b, 1), (cc, 1), (mu, 0)])
                                * h1(a, b)
                                * h1(a, cc);
                    }
                    for d in 0..n {
                        if ix.tests(&[a, b, cc, d]) > 1 {
                            continue;
                        }
                        let i = ix.i4(a, b, cc, d);
                        if cc < na && d < na {
                            s.ntk_cov[i] = l * l * get(&[(a, 0), (b, 0), (cc, 0), (d, 0)])
                                + l * c
                                    * (get(&[(a, 0), (b, 0), (cc, 1), (d, 1)]) * h1(cc, d)
                                        + get(&[(a, 1), (b, 1), (cc, 0), (d, 0)]) * h1(a, b))
                                + 3.0
                                    * c
                                    * c
                                    * get(&[(a, 1), (b, 1), (cc, 1), (d, 1)])
                                    * h1(a, b)
                                    * h1(cc, d)
                                - theta(a, b, get) * theta(cc, d, get);
                        }
                        s.ddi[i] = l
                            * c
                            * (get(&[(a, 2), (b, 0), (cc, 1), (d, 1)]) * h1(a, cc) * h1(a, d)
                                + get(&[(a, 2), (b, 1), (cc, 0), (d, 1)]) * h1(a, b) * h1(a, d)
                                + get(&[(a, 2), (b, 1), (cc, 1), (d, 0)]) * h1(a, b) * h1(a, cc))
                            + 3.0
                                * c
                                * c
                                * get(&[(a, 3), (b, 1), (cc, 1), (d, 1)])
                                * h1(a, b)
                                * h1(a, cc)
                                * h1(a, d);
                        s.ddii[i] =
                            l * c * get(&[(a, 1), (b, 1), (cc, 1), (d, 1)]) * h1(a, cc) * h1(b, d)
                                + h1(a, b)
                                    * (l * l * get(&[(a, 1), (b, 1), (cc, 0), (d, 0)])
                                        + l * c
                                            * (get(&[(a, 1), (b, 2), (cc, 0), (d, 1)]) * h1(b, d)
                                                + get(&[(a, 2), (b, 1), (cc, 1), (d, 0)])
                                                    * h1(a, cc))
                                        + 3.0
                                            * c
                                            * c
                                            * get(&[(a, 2), (b, 2), (cc, 1), (d, 1)])
                                            * h1(a, cc)
                                            * h1(b, d));
                    }
                }
            }
        }
        s
    };
    // Pass 1 records, pass 2 reads (moments.rs); the table keys factors as (order, input).
    let mut get = |fs: &[Factor]| m.e(&fs.iter().map(|&(a, k)| (k, a)).collect::<Vec<_>>());
    build(&mut get);
    m.integrate(act, quad, "--train-x")?;
    Ok(build(&mut get))
}
