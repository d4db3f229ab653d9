//! Model collapse (Gerstgrasser et al., "Is Model Collapse Inevitable?", arXiv 2404.01413):
//! each generation is fitted on data produced by the previous generation, and the data either
//! *replace* the old data, *accumulate* with them, or accumulate with a fixed training-set size
//! (*accumulate-subsample*).
//!
//! The closed forms and samplers live here; the generation loop that fits real models on
//! their predecessors' samples (with checkpoints) is an experiment harness and lives in
//! the `collapse` study (`dlt_studies::collapse::generations`).
//!
//! * [`linear`]: the paper's linear-regression setting with its closed forms
//!   (docs/derivations/collapse.md#replace and docs/derivations/collapse.md#accumulate):
//!   replace E = n·σ²d/(T−d−1), accumulate E = σ²d/(T−d−1)·Σ_{i≤n} 1/i² ≤ (π²/6)·σ²d/(T−d−1).
//! * [`GaussianModel`]: a multivariate Gaussian fitted by maximum likelihood on its own samples;
//!   under replace E[tr Σ̂_n]/tr Σ₀ = ((T−1)/T)^n.

use crate::TheoryError;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Side};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// What happens to the data between generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each generation trains only on the previous generation's T samples.
    Replace,
    /// Each generation trains on all data so far (real plus every synthetic generation).
    Accumulate,
    /// Like `Accumulate`, but a fixed-size subsample of T points from the pool.
    AccumulateSubsample,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "replace" => Ok(Self::Replace),
            "accumulate" => Ok(Self::Accumulate),
            "accumulate-subsample" => Ok(Self::AccumulateSubsample),
            _ => Err(format!(
                "unknown policy '{s}': use replace, accumulate or accumulate-subsample"
            )),
        }
    }
}

impl Policy {
    /// The CLI / JSON name (`replace`, `accumulate`, `accumulate-subsample`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Accumulate => "accumulate",
            Self::AccumulateSubsample => "accumulate-subsample",
        }
    }
    /// Every policy, in CLI order.
    pub const ALL: [Policy; 3] = [
        Policy::Replace,
        Policy::Accumulate,
        Policy::AccumulateSubsample,
    ];
}

/// The linear-regression setting of docs/derivations/collapse.md#linear-setting.
pub mod linear {
    use super::*;

    /// Mean and standard error of the test error ‖ŵ_n − w*‖² per generation, and the theory.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct Generation {
        /// Generation number, 1-based (generation 1 fits the real labels).
        pub g: usize,
        /// Mean over seeds of the test error ‖ŵ_g − w*‖².
        pub test_error: f64,
        /// Standard error of that mean over seeds.
        pub test_error_se: f64,
        /// Closed form (None for accumulate-subsample, which has none).
        pub theory: Option<f64>,
    }

    /// σ²d/(T − d − 1), the expected test error of one OLS fit (inverse-Wishart mean).
    pub fn base(d: usize, t: usize, sigma: f64) -> f64 {
        sigma * sigma * d as f64 / (t as f64 - d as f64 - 1.0)
    }

    /// Closed forms: replace n·base, accumulate base·Σ_{i≤n} 1/i².
    pub fn theory(policy: Policy, n: usize, d: usize, t: usize, sigma: f64) -> Option<f64> {
        let b = base(d, t, sigma);
        match policy {
            Policy::Replace => Some(n as f64 * b),
            Policy::Accumulate => Some(b * (1..=n).map(|i| 1.0 / (i * i) as f64).sum::<f64>()),
            Policy::AccumulateSubsample => None,
        }
    }

    /// Monte Carlo over `seeds` (each a fresh design X ~ N(0, I), w* ~ N(0, I)); generations
    /// are numbered 1..=G as in the paper (generation 1 fits the real labels).
    pub fn simulate(
        d: usize,
        t: usize,
        sigma: f64,
        generations: usize,
        policy: Policy,
        seeds: usize,
        seed: u64,
    ) -> Result<Vec<Generation>, TheoryError> {
        if d == 0 {
            return Err(TheoryError::Invalid {
                flag: "--d",
                msg: "the dimension d must be ≥ 1".into(),
            });
        }
        if t < d + 2 {
            return Err(TheoryError::Invalid {
                flag: "--t",
                msg: format!("OLS needs T ≥ d + 2 for a finite expected error (T = {t}, d = {d})"),
            });
        }
        if generations == 0 {
            return Err(TheoryError::Invalid {
                flag: "--generations",
                msg: "need at least one generation".into(),
            });
        }
        if seeds < 2 {
            return Err(TheoryError::Invalid {
                flag: "--seeds",
                msg: "need at least 2 seeds for a standard error".into(),
            });
        }
        if !(sigma >= 0.0) || !sigma.is_finite() {
            return Err(TheoryError::Invalid {
                flag: "--sigma",
                msg: format!("σ must be finite and ≥ 0, got {sigma}"),
            });
        }
        let threads = std::thread::available_parallelism()
            .map(|v| v.get())
            .unwrap_or(1)
            .min(seeds);
        let per: Vec<Vec<f64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|k| {
                    s.spawn(move || {
                        (k..seeds)
                            .step_by(threads)
                            .map(|i| {
                                one(
                                    d,
                                    t,
                                    sigma,
                                    generations,
                                    policy,
                                    seed.wrapping_add(i as u64),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // A worker's panic is a bug: re-raise it instead of dropping its seeds.
            hs.into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let k = per.len() as f64;
        Ok((0..generations)
            .map(|g| {
                let v: Vec<f64> = per.iter().map(|r| r[g]).collect();
                let mean = v.iter().sum::<f64>() / k;
                let se = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0) / k).sqrt();
                Generation {
                    g: g + 1,
                    test_error: mean,
                    test_error_se: se,
                    theory: theory(policy, g + 1, d, t, sigma),
                }
            })
            .collect())
    }

    fn normals(rows: usize, cols: usize, sd: f64, rng: &mut Xoshiro256PlusPlus) -> Mat<f64> {
        Mat::from_fn(rows, cols, |_, _| sd * rng.sample::<f64, _>(StandardNormal))
    }

    /// OLS ŵ = (XᵀX)⁻¹Xᵀy via Cholesky.
    fn ols(x: &Mat<f64>, y: &Mat<f64>) -> Mat<f64> {
        use faer::linalg::solvers::Solve;
        let d = x.ncols();
        let mut g = Mat::<f64>::zeros(d, d);
        matmul(
            g.as_mut(),
            Accum::Replace,
            x.transpose(),
            x.as_ref(),
            1.0,
            Par::Seq,
        );
        let mut b = Mat::<f64>::zeros(d, 1);
        matmul(
            b.as_mut(),
            Accum::Replace,
            x.transpose(),
            y.as_ref(),
            1.0,
            Par::Seq,
        );
        match g.llt(Side::Lower) {
            Ok(l) => l.solve(&b),
            Err(_) => Mat::from_fn(d, 1, |_, _| f64::NAN),
        }
    }

    fn one(
        d: usize,
        t: usize,
        sigma: f64,
        generations: usize,
        policy: Policy,
        seed: u64,
    ) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let x = normals(t, d, 1.0, &mut rng);
        let w_star = normals(d, 1, 1.0, &mut rng);
        let mut w = w_star.clone();
        let mut labels: Vec<Mat<f64>> = vec![];
        let mut errs = Vec::with_capacity(generations);
        for _ in 0..generations {
            let mut y = Mat::<f64>::zeros(t, 1);
            matmul(
                y.as_mut(),
                Accum::Replace,
                x.as_ref(),
                w.as_ref(),
                1.0,
                Par::Seq,
            );
            for i in 0..t {
                y[(i, 0)] += sigma * rng.sample::<f64, _>(StandardNormal);
            }
            labels.push(y);
            w = match policy {
                Policy::Replace => ols(&x, labels.last().expect("pushed")),
                Policy::Accumulate => {
                    // OLS on [X; …; X] and the stacked labels = OLS on X and the mean label.
                    let k = labels.len() as f64;
                    let mean = Mat::from_fn(t, 1, |i, _| {
                        labels.iter().map(|y| y[(i, 0)]).sum::<f64>() / k
                    });
                    ols(&x, &mean)
                }
                Policy::AccumulateSubsample => {
                    let pool = labels.len() * t;
                    let idx = sample(&mut rng, pool, t).into_vec();
                    let xs = Mat::from_fn(t, d, |r, c| x[(idx[r] % t, c)]);
                    let ys = Mat::from_fn(t, 1, |r, _| labels[idx[r] / t][(idx[r] % t, 0)]);
                    ols(&xs, &ys)
                }
            };
            errs.push(
                (0..d)
                    .map(|i| (w[(i, 0)] - w_star[(i, 0)]).powi(2))
                    .sum::<f64>(),
            );
        }
        errs
    }
}

/// A D-dimensional Gaussian fitted by maximum likelihood (mean, covariance with 1/T).
#[derive(Debug, Clone)]
pub struct GaussianModel {
    /// Dimension D.
    pub dim: usize,
    /// Mean of the reference distribution generation 0 samples from.
    pub true_mean: Vec<f64>,
    /// Covariance Σ₀ of the reference distribution (D × D).
    pub true_cov: Mat<f64>,
    mean: Vec<f64>,
    cov: Mat<f64>,
}

impl GaussianModel {
    /// The reference distribution N(0, I_D).
    pub fn standard(dim: usize) -> Self {
        Self {
            dim,
            true_mean: vec![0.0; dim],
            true_cov: Mat::identity(dim, dim),
            mean: vec![0.0; dim],
            cov: Mat::identity(dim, dim),
        }
    }
    /// `n` samples from N(μ, Σ) (rows of an n × D matrix).
    pub fn draw(
        mean: &[f64],
        cov: &Mat<f64>,
        n: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Mat<f64>, TheoryError> {
        let d = mean.len();
        // Σ may become singular under collapse: factor Σ + εI (ε relative 1e-12) or fall back to
        // the eigendecomposition with negative eigenvalues clipped.
        let l = match cov.llt(Side::Lower) {
            Ok(l) => l.L().to_owned(),
            Err(_) => {
                let evd =
                    cov.self_adjoint_eigen(Side::Lower)
                        .map_err(|_| TheoryError::Diverged {
                            layer: 0,
                            what: "covariance eigendecomposition failed".into(),
                        })?;
                let (u, s) = (evd.U(), evd.S());
                Mat::from_fn(d, d, |i, j| u[(i, j)] * s[j].max(0.0).sqrt())
            }
        };
        let z = Mat::<f64>::from_fn(n, d, |_, _| rng.sample::<f64, _>(StandardNormal));
        let mut x = Mat::<f64>::zeros(n, d);
        matmul(
            x.as_mut(),
            Accum::Replace,
            z.as_ref(),
            l.transpose(),
            1.0,
            Par::Seq,
        );
        for i in 0..n {
            for j in 0..d {
                x[(i, j)] += mean[j];
            }
        }
        Ok(x)
    }
}

impl GaussianModel {
    /// Maximum-likelihood fit: the sample mean and the covariance with 1/T.
    pub fn fit(&mut self, data: &Mat<f64>) {
        let (n, d) = (data.nrows(), data.ncols());
        self.mean = (0..d)
            .map(|j| (0..n).map(|i| data[(i, j)]).sum::<f64>() / n as f64)
            .collect();
        let centred = Mat::from_fn(n, d, |i, j| data[(i, j)] - self.mean[j]);
        let mut c = Mat::<f64>::zeros(d, d);
        matmul(
            c.as_mut(),
            Accum::Replace,
            centred.transpose(),
            centred.as_ref(),
            1.0 / n as f64,
            Par::Seq,
        );
        self.cov = c;
    }
    /// `n` samples from the fitted Gaussian.
    pub fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>, TheoryError> {
        Self::draw(&self.mean, &self.cov, n, rng)
    }
    /// tr(Σ̂)/tr(Σ₀), log det(Σ̂)/det(Σ₀), ‖μ̂ − μ₀‖².
    pub fn evaluate(&self) -> Vec<(String, f64)> {
        let d = self.dim;
        let tr = (0..d).map(|i| self.cov[(i, i)]).sum::<f64>()
            / (0..d).map(|i| self.true_cov[(i, i)]).sum::<f64>();
        let logdet = |m: &Mat<f64>| {
            m.llt(Side::Lower)
                .map(|l| (0..d).map(|i| 2.0 * l.L()[(i, i)].ln()).sum::<f64>())
                .unwrap_or(f64::NEG_INFINITY)
        };
        let ld = logdet(&self.cov) - logdet(&self.true_cov);
        let mu = self
            .mean
            .iter()
            .zip(&self.true_mean)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>();
        vec![
            ("trace_ratio".into(), tr),
            ("logdet_ratio".into(), ld),
            ("mean_sq_error".into(), mu),
        ]
    }
}

/// E[tr Σ̂_n]/tr Σ₀ under replace with the MLE covariance: ((T−1)/T)^n.
pub fn gaussian_replace_trace(t: usize, n: usize) -> f64 {
    ((t as f64 - 1.0) / t as f64).powi(n as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_mc_matches_closed_forms() {
        // The reference setting (d = 10, T = 100, σ = 1;
        // docs/derivations/collapse.md#reference-runs), 4000 seeds: within 3 SE at every
        // generation; replace at G ≈ G × generation 1; accumulate below (π²/6)·base.
        let g = 20;
        let rep = linear::simulate(10, 100, 1.0, g, Policy::Replace, 4000, 1).unwrap();
        let acc = linear::simulate(10, 100, 1.0, g, Policy::Accumulate, 4000, 2).unwrap();
        for r in rep.iter().chain(&acc) {
            let th = r.theory.unwrap();
            assert!(
                (r.test_error - th).abs() <= 3.0 * r.test_error_se,
                "g={}: {} ± {} vs {th}",
                r.g,
                r.test_error,
                r.test_error_se
            );
        }
        let ratio = rep[g - 1].test_error / rep[0].test_error;
        assert!((ratio - g as f64).abs() < 0.1 * g as f64, "{ratio}");
        let bound = std::f64::consts::PI.powi(2) / 6.0 * linear::base(10, 100, 1.0);
        assert!(acc
            .iter()
            .all(|r| r.test_error < bound + 3.0 * r.test_error_se));
        let sub = linear::simulate(10, 100, 1.0, g, Policy::AccumulateSubsample, 2000, 3).unwrap();
        // docs/derivations/collapse.md#reference-runs: accumulate-subsample at n = 20 ≈ 0.3364
        // (between accumulate and replace).
        assert!(
            (sub[g - 1].test_error - 0.3364).abs() < 4.0 * sub[g - 1].test_error_se + 0.01,
            "{:?}",
            sub[g - 1]
        );
        assert!(linear::simulate(10, 11, 1.0, 3, Policy::Replace, 10, 0)
            .unwrap_err()
            .to_string()
            .contains("--t"));
        assert!(linear::simulate(10, 100, 1.0, 0, Policy::Replace, 10, 0)
            .unwrap_err()
            .to_string()
            .contains("--generations"));
    }
}
