//! Section (b) of the `scaling` study: the spectrum of a real data set and random-feature ridge
//! regression on it (Maloney, Roberts, Sully, arXiv 2210.16859, abstract item (i): the
//! statistics of natural data sets behind scaling laws; docs/derivations/scaling.md#measured-spectrum).
//!
//! Fashion-MNIST (standardised; 2×2 average-pooled to 14×14 at quick scale, 28×28 at full):
//! the eigenvalues of the pixel covariance and of the second-moment matrix of random ReLU
//! features, their fitted power-law slopes; then linear and ReLU random features φ = σ(Wx),
//! W ~ N(0, 1/d), fitted by ridge regression to the centred one-hot labels, held-out loss
//! against N. Linear features have rank ≤ d (the pixel count) and stop there; ReLU features
//! continue. The solvable model's loss exponent predicted from each measured spectrum
//! (slope s ⇒ exponent |s| − 1, isotropic teacher) is printed beside the measured one.

use super::PAPER;
use crate::claim::Claim;
use crate::output::fmt_num;
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_theory::scaling::{fit_exponent, spectrum_slope, theory_loss_spectrum, Features, SimPoint};
use dlt_theory::scaling_teacher::{
    eigenvalues_desc, features, gram, nested_ridge_losses, paired_log_ratio,
};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use std::path::Path;

/// Sizes of the Fashion-MNIST section.
#[derive(Debug, Clone, Serialize)]
pub struct FashionScale {
    /// Average-pooling factor of the 28×28 images (2: 14×14, d = 196; 1: d = 784).
    pub pool: usize,
    /// Training images P of the regression (a seeded subset of the 60 000).
    pub train: usize,
    /// Held-out test images.
    pub test: usize,
    /// Feature counts N (crossing d).
    pub ns: Vec<usize>,
    /// Seeds (draws of W).
    pub seeds: usize,
    /// Ridge relative to the mean diagonal of the Gram matrix.
    pub ridge_rel: f64,
}

impl FashionScale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        if quick {
            Self {
                pool: 2,
                train: 8000,
                test: 2000,
                ns: vec![8, 16, 32, 64, 128, 196, 392, 784],
                seeds: 3,
                ridge_rel: 1e-6,
            }
        } else {
            Self {
                pool: 1,
                train: 30_000,
                test: 10_000,
                ns: vec![16, 32, 64, 128, 256, 512, 784, 1568],
                seeds: 3,
                ridge_rel: 1e-6,
            }
        }
    }
}

/// The section's results.
#[derive(Debug, Clone, Serialize)]
pub struct Fashion {
    /// Input dimension d after pooling.
    pub dim: usize,
    /// Eigenvalues of the pixel covariance (60 000 standardised training images), decreasing.
    pub pixel_spectrum: Vec<f64>,
    /// Slope of log λ_k vs log k of the pixel spectrum over ranks 5…d/4.
    pub pixel_slope: f64,
    /// Eigenvalues of the ReLU features' second-moment matrix (N_max features, P images), decreasing.
    pub relu_spectrum: Vec<f64>,
    /// Its slope over ranks 5…d/4 and over d…2d (past the pixel count; NaN when N_max < 2d).
    pub relu_slopes: (f64, f64),
    /// Numerical rank of the ReLU features (eigenvalues above 1e-10 of the largest).
    pub relu_rank: usize,
    /// Feature counts N.
    pub ns: Vec<usize>,
    /// Relative held-out loss ‖ŷ − y‖²/‖y‖² of linear features per N.
    pub linear: Vec<SimPoint>,
    /// The same for ReLU features.
    pub relu: Vec<SimPoint>,
    /// Fitted loss exponents (−slope) over N ≤ d/2: linear, ReLU, each with its SE.
    pub loss_exponents: [(f64, f64); 2],
    /// Exponents predicted from the measured spectra (|s| − 1): pixel, ReLU features.
    pub predicted_exponents: [f64; 2],
    /// The solvable model's loss curve (eqs. A1–A4 with the measured spectrum in place of the
    /// power law, isotropic teacher, no noise, γ = 0, this P) for linear features (pixel
    /// spectrum) and ReLU features (their own spectrum as the latent one), each scaled to the
    /// measured loss at the smallest N (one constant, σ_w²); null where the model predicts 0.
    pub predicted: [Vec<Option<f64>>; 2],
}

/// One draw of W: the linear and the ReLU relative losses per N, and (first draw only) the ReLU
/// features' spectrum.
type Draw = (Vec<f64>, Vec<f64>, Option<Vec<f64>>);

/// Average-pool square images of `side` pixels by `k`×`k` blocks; returns the pixels (f64) and d.
fn pool(x: &[f32], side: usize, k: usize) -> (Vec<f64>, usize) {
    let s = side / k;
    let n = x.len() / (side * side);
    let mut out = vec![0.0; n * s * s];
    for i in 0..n {
        for r in 0..side {
            for c in 0..side {
                out[i * s * s + (r / k) * s + c / k] +=
                    x[i * side * side + r * side + c] as f64 / (k * k) as f64;
            }
        }
    }
    (out, s * s)
}

/// Run the section on Fashion-MNIST (`data`: the IDX folder, or None to locate or fetch it).
pub fn run(
    sc: &FashionScale,
    data: Option<&Path>,
    seed: u64,
) -> Result<(Fashion, Vec<Claim>), StudyError> {
    let tt = dlt_nn::data::fashion_mnist(data)?;
    let side = 28;
    let (xa, d) = pool(&tt.train.x, side, sc.pool);
    let (xb, _) = pool(&tt.test.x, side, sc.pool);
    let (na, nb) = (xa.len() / d, xb.len() / d);
    // Standardise: the training mean removed, one scale so that E|x|²/d = 1.
    let mut mean = vec![0.0; d];
    for row in xa.chunks(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, v)| *m += v / na as f64);
    }
    let ms: f64 = xa
        .chunks(d)
        .map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(v, m)| (v - m).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / (na * d) as f64;
    let scale = 1.0 / ms.sqrt();
    let xall = Mat::<f64>::from_fn(na, d, |i, j| (xa[i * d + j] - mean[j]) * scale);
    let mut cov = Mat::<f64>::zeros(d, d);
    matmul(
        cov.as_mut(),
        Accum::Replace,
        xall.transpose(),
        xall.as_ref(),
        1.0 / na as f64,
        Par::Seq,
    );
    let pixel_spectrum = eigenvalues_desc(&cov)?;
    let pixel_slope = spectrum_slope(&pixel_spectrum, 5, d / 4);
    // Seeded train/test subsets and centred one-hot targets (y − 1/10).
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed + 60_000);
    let pick = |n: usize, k: usize, rng: &mut Xoshiro256PlusPlus| {
        rand::seq::index::sample(rng, n, k.min(n)).into_vec()
    };
    let ia = pick(na, sc.train, &mut rng);
    let ib = pick(nb, sc.test, &mut rng);
    let x = Mat::<f64>::from_fn(ia.len(), d, |i, j| xall[(ia[i], j)]);
    let xt = Mat::<f64>::from_fn(ib.len(), d, |i, j| (xb[ib[i] * d + j] - mean[j]) * scale);
    let onehot = |labels: &[u32], idx: &[usize]| {
        Mat::<f64>::from_fn(idx.len(), 10, |i, c| {
            if labels[idx[i]] as usize == c {
                0.9
            } else {
                -0.1
            }
        })
    };
    let (y, yt) = (onehot(&tt.train.y, &ia), onehot(&tt.test.y, &ib));
    let nmax = *sc.ns.iter().max().unwrap_or(&1);
    use rayon::prelude::*;
    let per_seed: Vec<Draw> = (0..sc.seeds)
        .into_par_iter()
        .map(|k| -> Result<_, StudyError> {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed + 61_000 + k as u64);
            let sd = (1.0 / d as f64).sqrt();
            let w = Mat::<f64>::from_fn(nmax, d, |_, _| sd * rng.sample::<f64, _>(StandardNormal));
            let lin = nested_ridge_losses(
                &features(&x, &w, Features::Linear),
                &y,
                &features(&xt, &w, Features::Linear),
                &yt,
                &sc.ns,
                sc.ridge_rel,
            )?;
            let phi = features(&x, &w, Features::Relu);
            let relu = nested_ridge_losses(
                &phi,
                &y,
                &features(&xt, &w, Features::Relu),
                &yt,
                &sc.ns,
                sc.ridge_rel,
            )?;
            let spec = if k == 0 {
                let g = gram(&phi, 1.0 / phi.nrows() as f64);
                Some(eigenvalues_desc(&g)?)
            } else {
                None
            };
            Ok((lin, relu, spec))
        })
        .collect::<Result<_, _>>()?;
    let curve = |which: usize| -> Vec<SimPoint> {
        (0..sc.ns.len())
            .map(|i| {
                SimPoint::from_losses(
                    per_seed
                        .iter()
                        .map(|s| if which == 0 { s.0[i] } else { s.1[i] })
                        .collect(),
                )
            })
            .collect()
    };
    let (linear, relu) = (curve(0), curve(1));
    let relu_spectrum = per_seed[0].2.clone().unwrap_or_default();
    let relu_rank = relu_spectrum
        .iter()
        .filter(|&&v| v > 1e-10 * relu_spectrum[0])
        .count();
    let relu_slopes = (
        spectrum_slope(&relu_spectrum, 5, d / 4),
        if nmax >= 2 * d {
            spectrum_slope(&relu_spectrum, d, 2 * d)
        } else {
            f64::NAN
        },
    );
    let below: Vec<usize> = (0..sc.ns.len()).filter(|&i| sc.ns[i] <= d / 2).collect();
    let expo = |c: &[SimPoint]| {
        let (s, se) = fit_exponent(
            &below.iter().map(|&i| sc.ns[i] as f64).collect::<Vec<_>>(),
            &below.iter().map(|&i| c[i].loss).collect::<Vec<_>>(),
            &below.iter().map(|&i| c[i].loss_se).collect::<Vec<_>>(),
        );
        (-s, se)
    };
    let loss_exponents = [expo(&linear), expo(&relu)];
    let predicted_exponents = [-pixel_slope - 1.0, -relu_slopes.0 - 1.0];
    let predict = |lam: &[f64], c: &[SimPoint]| -> Vec<Option<f64>> {
        let lam: Vec<f64> = lam
            .iter()
            .copied()
            .filter(|&l| l > 1e-10 * lam[0])
            .collect();
        let md = dlt_theory::scaling::ScalingModel::new(1.0, lam.len());
        let raw: Vec<Option<f64>> = sc
            .ns
            .iter()
            .map(|&n| {
                theory_loss_spectrum(&lam, &md, n, ia.len(), 0.0)
                    .ok()
                    .map(|t| t.loss)
                    .filter(|&l| l > 0.0)
            })
            .collect();
        let k = raw[0].map(|r0| c[0].loss / r0);
        raw.iter().map(|r| Some((*r)? * k?)).collect()
    };
    let predicted = [
        predict(&pixel_spectrum, &linear),
        predict(&relu_spectrum, &relu),
    ];
    let last = sc.ns.len() - 1;
    let (r, se) = paired_log_ratio(&linear[last], &relu[last]);
    let claims = vec![
        Claim::above(
            "scaling.fashion_relu_past_pixels",
            &format!("{PAPER}, abstract: nonlinear feature maps extend the power law of natural data"),
            &format!(
                "Fashion-MNIST ({side}/{} px, d = {d}, P = {}): at N = {} ReLU random features beat linear ones, whose rank stops at d: ln(L_linear/L_relu) = {} ± {} (relative losses {} vs {}; ReLU feature rank {relu_rank} > d)",
                sc.pool, ia.len(), sc.ns[last], fmt_num(r), fmt_num(se), fmt_num(linear[last].loss), fmt_num(relu[last].loss)
            ),
            r,
            3.0 * se,
            "3 SE of the log ratio, paired over draws of W (0 is no gain)",
        )
        .from_theory()
        .with_se(se)
        .require(relu_rank > d, &format!("the ReLU features' rank {relu_rank} exceeds d = {d}")),
    ];
    Ok((
        Fashion {
            dim: d,
            pixel_spectrum,
            pixel_slope,
            relu_spectrum,
            relu_slopes,
            relu_rank,
            ns: sc.ns.clone(),
            linear,
            relu,
            loss_exponents,
            predicted_exponents,
            predicted,
        },
        claims,
    ))
}

/// `fashion_spectrum.svg` (pixel and ReLU-feature spectra against rank) and `fashion_loss.svg`
/// (held-out loss against N, linear vs ReLU, d marked).
pub fn figures(out: &crate::output::OutDir, f: &Fashion) -> Result<Vec<String>, StudyError> {
    let pts = |ev: &[f64]| {
        ev.iter()
            .enumerate()
            .filter(|(_, &v)| v > 1e-12 * ev[0])
            .map(|(k, &v)| ((k + 1) as f64, v))
            .collect::<Vec<_>>()
    };
    let fig = Figure::new(
        format!("Fashion-MNIST spectra (d = {})", f.dim),
        "rank k",
        "eigenvalue",
    )
    .log_log()
    .with(
        Series::line(
            format!("pixel covariance (slope {:.2})", f.pixel_slope),
            pts(&f.pixel_spectrum),
        )
        .in_colour(0),
    )
    .with(
        Series::line(
            format!(
                "ReLU features (slope {:.2} below d, {:.2} past d)",
                f.relu_slopes.0, f.relu_slopes.1
            ),
            pts(&f.relu_spectrum),
        )
        .in_colour(1),
    );
    fig.save_svg(&out.path("fashion_spectrum.svg"))?;
    let mut fig = Figure::new(
        format!(
            "Random-feature ridge regression on Fashion-MNIST (d = {})",
            f.dim
        ),
        "N (features)",
        "held-out ‖ŷ − y‖² / ‖y‖²",
    )
    .log_log();
    for (k, (name, c)) in [("linear", &f.linear), ("ReLU", &f.relu)]
        .into_iter()
        .enumerate()
    {
        fig = fig.with(
            Series::points(
                format!("{name} features"),
                f.ns.iter()
                    .zip(c)
                    .map(|(&n, p)| (n as f64, p.loss))
                    .collect(),
                Some(c.iter().map(|p| p.loss_se).collect()),
            )
            .in_colour(k),
        );
        fig = fig.with(
            Series::line(
                "",
                f.ns.iter()
                    .zip(c)
                    .map(|(&n, p)| (n as f64, p.loss))
                    .collect(),
            )
            .in_colour(k),
        );
        fig = fig.with(
            Series::dashed(
                format!("{name}: solvable model on the measured spectrum"),
                f.ns.iter()
                    .zip(&f.predicted[k])
                    .filter_map(|(&n, p)| Some((n as f64, (*p)?)))
                    .collect(),
            )
            .in_colour(k),
        );
    }
    let lo = f
        .relu
        .iter()
        .chain(&f.linear)
        .map(|p| p.loss)
        .fold(f64::INFINITY, f64::min);
    let hi = f
        .relu
        .iter()
        .chain(&f.linear)
        .map(|p| p.loss)
        .fold(0.0, f64::max);
    fig = fig.with(
        Series::dotted(
            "N = d (pixels)",
            vec![(f.dim as f64, lo), (f.dim as f64, hi)],
        )
        .in_colour(3),
    );
    fig.save_svg(&out.path("fashion_loss.svg"))?;
    Ok(vec![
        "fashion_spectrum.svg".into(),
        "fashion_loss.svg".into(),
    ])
}
