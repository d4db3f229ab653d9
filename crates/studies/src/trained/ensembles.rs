//! Part 2: finite-width ensembles against the infinite-width prediction (PDLT ch. 10, ∞;
//! protocol: docs/derivations/trained.md#finite-width-ensembles).
//!
//! A small binary task (N_A training and M test images, y = ±1) and, per width n, P antithetic
//! pairs of depth-L networks trained for t GD steps at η = c/λ_max(Θ̃). The infinite-width
//! prediction is the frozen-NTK ensemble of [`dlt_theory::kernels::ntk_ensemble`] at the same
//! (η, t): mean m∞(t) and covariance Σ(t). Measured per width: the pair-mean output per test
//! point with its standard error over pairs, the single-network variance, and the deviation
//!   dev(n) = √( mean_β (ū_β − m∞_β)² − mean_β SE_β² )   (noise-corrected rms),
//! which the 1/n expansion predicts to fall as 1/n (PDLT §∞.2: the mean prediction's finite-width
//! correction is O(1/n)). Standard errors of dev and of the fitted exponent come from a bootstrap
//! over pairs (each width resampled independently).

use super::data::Prepared;
use super::networks::{largest_eigenvalue, GdSetup};
use crate::progress;
use crate::study::StudyError;
use dlt_nn::model::ActKind;
use dlt_theory::activation::parse;
use dlt_theory::kernels::{dataset_kernels, ntk_ensemble, Inputs, KernelConfig, NtkTime};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

/// Settings of part 2.
#[derive(Debug, Clone, Serialize)]
pub struct EnsembleConfig {
    /// Activation (at criticality: C_W below, C_b = 0, λ_W = C_W, λ_b = 0).
    pub act: String,
    /// C_W.
    pub cw: f64,
    /// Depth L (Dense layers).
    pub depth: usize,
    /// Training images N_A.
    pub n_train: usize,
    /// Test images M.
    pub n_test: usize,
    /// Hidden widths n.
    pub widths: Vec<usize>,
    /// Antithetic pairs at the smallest width; width n gets pairs·n/n_min, so that every width's
    /// pair mean has about the same relative error (its noise is ∝ 1/√(nP), its signal ∝ 1/n).
    pub pairs: usize,
    /// GD step η = c/λ_max(Θ̃).
    pub c: f64,
    /// GD steps t.
    pub steps: usize,
    /// Bootstrap resamples for the standard errors of dev and of the exponent.
    pub bootstrap: usize,
}

/// One width's ensemble.
#[derive(Debug, Clone, Serialize)]
pub struct WidthRow {
    /// Hidden width n.
    pub width: usize,
    /// Pairs trained.
    pub pairs: usize,
    /// Noise-corrected rms deviation of the pair mean from m∞(t).
    pub dev: f64,
    /// Bootstrap standard error of `dev`.
    pub dev_se: f64,
    /// n · dev.
    pub n_dev: f64,
    /// Mean over test points of the standard error of the pair mean.
    pub mean_se: f64,
    /// Mean over test points of the variance of one network's output.
    pub single_variance: f64,
    /// Standard error of `single_variance` (bootstrap).
    pub single_variance_se: f64,
    /// Pair-mean output per test point.
    pub pair_mean: Vec<f64>,
    /// Its standard error per test point.
    pub pair_mean_se: Vec<f64>,
    /// Tails of the pair means (diagnostic for the Gaussian standard errors above): the
    /// largest |u_pβ − ū_β|/sd_β over pairs p and test points β (≈ 4.5–5 for Gaussian
    /// outputs at these sample sizes), and the excess kurtosis of u_β over pairs, averaged over β
    /// (0 for Gaussian outputs, ± √(24/P)).
    pub max_pair_z: f64,
    /// See `max_pair_z`.
    pub excess_kurtosis: f64,
}

/// Part 2's results.
#[derive(Debug, Clone, Serialize)]
pub struct EnsembleResults {
    /// η used.
    pub eta: f64,
    /// λ_max(Θ̃).
    pub lambda_max: f64,
    /// m∞(t) per test point.
    pub infinite_mean: Vec<f64>,
    /// Σ_ββ(t) per test point (variance of one infinitely wide network).
    pub infinite_variance: Vec<f64>,
    /// One row per width.
    pub widths: Vec<WidthRow>,
    /// Fitted exponent p of dev ∝ n^(−p) over all widths (least squares in log–log); a
    /// measurement, not a claim: at the smallest widths the O(1/n²) terms still matter.
    pub exponent: f64,
    /// Its bootstrap standard error.
    pub exponent_se: f64,
    /// n·dev at the largest width over n·dev at the second largest: 1 if dev ∝ 1/n there.
    pub n_dev_ratio: f64,
    /// Its bootstrap standard error.
    pub n_dev_ratio_se: f64,
    /// Mean over test points of z² = ((linear 1/n extrapolation of the pair mean from the two
    /// largest widths) − m∞)² / SE²; its mean is 1 if the limit is m∞.
    pub extrapolation_z2: f64,
    /// The standard deviation of `extrapolation_z2` if the limit is m∞: √(2 Σ_ij R_ij²)/M with
    /// R the correlation matrix of the extrapolation's errors across the M test points,
    /// estimated from the pairs (√(2/M) for independent points; the outputs of one network on
    /// different inputs are correlated, so it is larger).
    pub extrapolation_z2_sd: f64,
    /// Single-network variance (mean over points) extrapolated linearly in 1/n from the two
    /// largest widths.
    pub variance_extrapolated: f64,
    /// Its standard error.
    pub variance_extrapolated_se: f64,
}

/// Statistics of one width's pairs: (per-point pair mean, its SE, single-net variance).
fn stats(pairs: &[[Vec<f64>; 2]], idx: &[usize]) -> (Vec<f64>, Vec<f64>, f64) {
    let m = pairs[0][0].len();
    let p = idx.len() as f64;
    // The mean over all 2P networks is the mean of the pair means, so only the second moments
    // need their own sums.
    let (mut mean, mut sq, mut single_sq) = (vec![0.0; m], vec![0.0; m], vec![0.0; m]);
    for &i in idx {
        let [a, b] = &pairs[i];
        for j in 0..m {
            let u = 0.5 * (a[j] + b[j]);
            mean[j] += u / p;
            sq[j] += u * u / p;
            single_sq[j] += (a[j] * a[j] + b[j] * b[j]) / (2.0 * p);
        }
    }
    let se = (0..m)
        .map(|j| ((sq[j] - mean[j] * mean[j]).max(0.0) * p / (p - 1.0) / p).sqrt())
        .collect();
    let var = (0..m)
        .map(|j| (single_sq[j] - mean[j] * mean[j]) * 2.0 * p / (2.0 * p - 1.0))
        .sum::<f64>()
        / m as f64;
    (mean, se, var)
}

/// Covariance matrix (M × M, row-major) of one width's pair mean ū (`mean`, from [`stats`])
/// over its P pairs: the sample covariance of the pair-averaged outputs over pairs, divided by
/// P (its diagonal is the squared SE of [`stats`]).
fn pair_mean_cov(pairs: &[[Vec<f64>; 2]], mean: &[f64]) -> Vec<f64> {
    let m = mean.len();
    let p = pairs.len() as f64;
    let mut cov = vec![0.0; m * m];
    let mut d = vec![0.0; m];
    for [a, b] in pairs {
        for j in 0..m {
            d[j] = 0.5 * (a[j] + b[j]) - mean[j];
        }
        for i in 0..m {
            for j in 0..m {
                cov[i * m + j] += d[i] * d[j];
            }
        }
    }
    cov.iter().map(|c| c / (p - 1.0) / p).collect()
}

/// SD of mean_β z_β² when z is a standard Gaussian vector with covariance `cov` normalised to
/// its correlation R: Var Σ z_β² = 2 Σ_ij R_ij² (Isserlis), so SD = √(2 Σ R_ij²)/M; √(2/M) when
/// R = I, up to √2 when all points move together.
fn z2_null_sd(cov: &[f64], m: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..m {
        for j in 0..m {
            let r = cov[i * m + j] / (cov[i * m + i] * cov[j * m + j]).sqrt();
            s += r * r;
        }
    }
    (2.0 * s).sqrt() / m as f64
}

/// (max over pairs and points of |u − ū|/sd, mean over points of the excess kurtosis of u) for
/// the pair means u of one width (see [`WidthRow::max_pair_z`]).
fn tails(pairs: &[[Vec<f64>; 2]], mean: &[f64]) -> (f64, f64) {
    let m = mean.len();
    let p = pairs.len() as f64;
    let (mut m2, mut m4) = (vec![0.0; m], vec![0.0; m]);
    for [a, b] in pairs {
        for j in 0..m {
            let d = 0.5 * (a[j] + b[j]) - mean[j];
            m2[j] += d * d / p;
            m4[j] += d.powi(4) / p;
        }
    }
    let mut zmax: f64 = 0.0;
    for [a, b] in pairs {
        for j in 0..m {
            zmax = zmax.max((0.5 * (a[j] + b[j]) - mean[j]).abs() / m2[j].sqrt());
        }
    }
    let kurt = (0..m).map(|j| m4[j] / (m2[j] * m2[j]) - 3.0).sum::<f64>() / m as f64;
    (zmax, kurt)
}

/// dev = √(mean (ū − m∞)² − mean SE²), clamped at 0.
fn deviation(mean: &[f64], se: &[f64], m_inf: &[f64]) -> f64 {
    let m = mean.len() as f64;
    let d2 = mean
        .iter()
        .zip(m_inf)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / m;
    let s2 = se.iter().map(|s| s * s).sum::<f64>() / m;
    (d2 - s2).max(0.0).sqrt()
}

/// Least-squares slope of log dev against log n, negated (dev ∝ n^(−p)); NaN when a deviation
/// is not positive (lost in the noise), so that a claim on it fails as not measured.
fn exponent(widths: &[usize], devs: &[f64]) -> f64 {
    if devs.iter().any(|d| !(*d > 0.0)) {
        return f64::NAN;
    }
    let pts: Vec<(f64, f64)> = widths
        .iter()
        .zip(devs)
        .map(|(&n, &d)| ((n as f64).ln(), d.ln()))
        .collect();
    let k = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / k,
        pts.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    -sxy / sxx
}

fn sd(v: &[f64]) -> f64 {
    let k = v.len() as f64;
    let m = v.iter().sum::<f64>() / k;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1.0)).sqrt()
}

/// Pairs trained at each width: pairs·n/n_min.
pub fn pair_counts(cfg: &EnsembleConfig) -> Vec<usize> {
    let n0 = cfg.widths.iter().copied().min().unwrap_or(1).max(1);
    cfg.widths.iter().map(|&n| cfg.pairs * n / n0).collect()
}

/// Run part 2 on `data` (its N_A and M images).
pub fn run(
    cfg: &EnsembleConfig,
    data: &Prepared,
    seed: u64,
    quiet: bool,
) -> Result<EnsembleResults, StudyError> {
    let (n, m, d) = (data.n_train(), data.n_test(), data.dim);
    let y = Prepared::binary_targets(&data.train_labels);
    let mut kc = KernelConfig::new(parse(&cfg.act)?, 0.0, cfg.cw, cfg.depth);
    kc.lambda_b = 0.0;
    let k = dataset_kernels(
        &kc,
        Inputs::new(&data.train_x, n, d),
        Some(Inputs::new(&data.test_x, m, d)),
        true,
    )?;
    let lambda_max = largest_eigenvalue(&k.ntk_train, n);
    let eta = cfg.c / lambda_max;
    let time = NtkTime::Steps {
        eta,
        steps: cfg.steps as u32,
    };
    let kb = k.nngp_blocks().expect("test × test block requested");
    let pred = ntk_ensemble(kb, k.ntk_blocks(), &y, 1, time)?;
    let infinite_variance: Vec<f64> = (0..m).map(|b| pred.cov[b * m + b]).collect();
    let act = ActKind::parse(&cfg.act)?;
    let bar = progress::bar(
        pair_counts(cfg).iter().sum::<usize>() as u64,
        "trained: finite-width ensembles",
        quiet,
    );
    let mut all = vec![];
    for (&w, &count) in cfg.widths.iter().zip(&pair_counts(cfg)) {
        let setup = GdSetup::new(act, d, w, cfg.depth, 1, (cfg.cw, cfg.cw), (eta, cfg.steps))?;
        let pairs: Vec<[Vec<f64>; 2]> = (0..count as u64)
            .into_par_iter()
            .map(|p| {
                let r = setup.train_pair(
                    dlt_nn::stream_seed(seed, &[0xe25, w as u64, p]),
                    (&data.train_x, &y),
                    &data.test_x,
                );
                bar.inc(1);
                r
            })
            .collect::<Result<_, _>>()?;
        all.push(pairs);
    }
    bar.finish_and_clear();
    summarise(
        cfg,
        all,
        pred.mean,
        infinite_variance,
        eta,
        lambda_max,
        seed,
    )
}

/// Per-width statistics, the exponent fit, the extrapolations and their bootstrap errors.
fn summarise(
    cfg: &EnsembleConfig,
    all: Vec<Vec<[Vec<f64>; 2]>>,
    m_inf: Vec<f64>,
    infinite_variance: Vec<f64>,
    eta: f64,
    lambda_max: f64,
    seed: u64,
) -> Result<EnsembleResults, StudyError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xb007);
    // Bootstrap: resample the pairs of every width independently.
    let mut boot_dev = vec![vec![]; all.len()];
    let mut boot_var = vec![vec![]; all.len()];
    let mut boot_exp = vec![];
    let mut boot_ratio = vec![];
    let ratio = |devs: &[f64]| {
        let k = devs.len();
        let (n1, n2) = (cfg.widths[k - 2] as f64, cfg.widths[k - 1] as f64);
        n2 * devs[k - 1] / (n1 * devs[k - 2])
    };
    for _ in 0..cfg.bootstrap {
        let mut devs = vec![];
        for (k, pairs) in all.iter().enumerate() {
            let p = pairs.len();
            let idx: Vec<usize> = (0..p).map(|_| rng.random_range(0..p)).collect();
            let (mean, se, var) = stats(pairs, &idx);
            let dv = deviation(&mean, &se, &m_inf);
            boot_dev[k].push(dv);
            boot_var[k].push(var);
            devs.push(dv);
        }
        boot_exp.push(exponent(&cfg.widths, &devs));
        boot_ratio.push(ratio(&devs));
    }
    let mut rows = vec![];
    for (k, pairs) in all.iter().enumerate() {
        let p = pairs.len();
        let (mean, se, var) = stats(pairs, &(0..p).collect::<Vec<_>>());
        let dev = deviation(&mean, &se, &m_inf);
        let n = cfg.widths[k];
        let (max_pair_z, excess_kurtosis) = tails(pairs, &mean);
        rows.push(WidthRow {
            width: n,
            pairs: p,
            dev,
            dev_se: sd(&boot_dev[k]),
            n_dev: n as f64 * dev,
            mean_se: se.iter().sum::<f64>() / se.len() as f64,
            single_variance: var,
            single_variance_se: sd(&boot_var[k]),
            pair_mean: mean,
            pair_mean_se: se,
            max_pair_z,
            excess_kurtosis,
        });
    }
    let devs: Vec<f64> = rows.iter().map(|r| r.dev).collect();
    // Linear extrapolation in 1/n from the two largest widths: f(∞) = (n₂f₂ − n₁f₁)/(n₂ − n₁).
    let (a, b) = (&rows[rows.len() - 2], &rows[rows.len() - 1]);
    let (n1, n2) = (a.width as f64, b.width as f64);
    let (w1, w2) = (-n1 / (n2 - n1), n2 / (n2 - n1));
    let z2 = (0..m_inf.len())
        .map(|j| {
            let e = w1 * a.pair_mean[j] + w2 * b.pair_mean[j];
            let se2 = (w1 * a.pair_mean_se[j]).powi(2) + (w2 * b.pair_mean_se[j]).powi(2);
            (e - m_inf[j]).powi(2) / se2
        })
        .sum::<f64>()
        / m_inf.len() as f64;
    let cov: Vec<f64> = pair_mean_cov(&all[all.len() - 2], &a.pair_mean)
        .iter()
        .zip(pair_mean_cov(&all[all.len() - 1], &b.pair_mean))
        .map(|(ca, cb)| w1 * w1 * ca + w2 * w2 * cb)
        .collect();
    let z2_sd = z2_null_sd(&cov, m_inf.len());
    let variance_extrapolated = w1 * a.single_variance + w2 * b.single_variance;
    let variance_extrapolated_se =
        ((w1 * a.single_variance_se).powi(2) + (w2 * b.single_variance_se).powi(2)).sqrt();
    Ok(EnsembleResults {
        eta,
        lambda_max,
        infinite_mean: m_inf,
        infinite_variance,
        exponent: exponent(&cfg.widths, &devs),
        exponent_se: sd(&boot_exp),
        n_dev_ratio: ratio(&devs),
        n_dev_ratio_se: sd(&boot_ratio),
        widths: rows,
        extrapolation_z2: z2,
        extrapolation_z2_sd: z2_sd,
        variance_extrapolated,
        variance_extrapolated_se,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The null SD of mean z²: √(2/M) for independent points, √2 for perfectly correlated ones
    /// (then mean z² = z₁² ~ χ²₁), and from simulated correlated pairs within its Monte Carlo
    /// error of the SD measured directly over repetitions.
    #[test]
    fn z2_null_sd_accounts_for_correlated_points() {
        let m = 8;
        let eye: Vec<f64> = (0..m * m)
            .map(|k| if k % (m + 1) == 0 { 2.0 } else { 0.0 })
            .collect();
        assert!((z2_null_sd(&eye, m) - (2.0 / m as f64).sqrt()).abs() < 1e-12);
        let ones = vec![0.3; m * m];
        assert!((z2_null_sd(&ones, m) - 2f64.sqrt()).abs() < 1e-12);
        // Pairs whose pair means share a common factor: u_j = c·g + e_j (ρ = c²/(c² + 1)).
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let mut gauss = || -> f64 { rng.sample(rand_distr::StandardNormal) };
        let (reps, p, c) = (400, 400, 1.0);
        let mut z2s = vec![];
        let mut sds = vec![];
        for _ in 0..reps {
            let pairs: Vec<[Vec<f64>; 2]> = (0..p)
                .map(|_| {
                    let g = gauss();
                    let u: Vec<f64> = (0..m).map(|_| c * g + gauss()).collect();
                    [u.clone(), u]
                })
                .collect();
            let (mean, se, _) = stats(&pairs, &(0..p).collect::<Vec<_>>());
            z2s.push(
                mean.iter()
                    .zip(&se)
                    .map(|(u, s)| (u / s).powi(2))
                    .sum::<f64>()
                    / m as f64,
            );
            sds.push(z2_null_sd(&pair_mean_cov(&pairs, &mean), m));
        }
        let mu = z2s.iter().sum::<f64>() / reps as f64;
        let sd_direct =
            (z2s.iter().map(|z| (z - mu).powi(2)).sum::<f64>() / (reps - 1) as f64).sqrt();
        let sd_pred = sds.iter().sum::<f64>() / reps as f64;
        // Exact for R with ρ = 1/2 off the diagonal: √(2(M + M(M−1)/4))/M = 0.829 for M = 8.
        let exact = (2.0 * (m as f64 + (m * (m - 1)) as f64 * 0.25)).sqrt() / m as f64;
        assert!(
            (sd_pred - exact).abs() < 0.02 * exact,
            "{sd_pred} vs {exact}"
        );
        // The SD of a sample SD over 400 repetitions of a skewed statistic: ≈ 10 % (χ²-like
        // kurtosis), so 3 × 10 %.
        assert!(
            (sd_direct - exact).abs() < 0.3 * exact,
            "{sd_direct} vs {exact}"
        );
        assert!(
            (mu - 1.0).abs() < 4.0 * exact / (reps as f64).sqrt(),
            "{mu}"
        );
    }
}
