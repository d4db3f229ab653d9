//! Part 1: kernel regression on Fashion-MNIST against depth (PDLT ch. 6, 10), beside finite
//! networks trained by the same gradient descent.
//!
//! For each activation at criticality and each depth L: the NNGP K and NTK Θ of the data set
//! ([`dlt_theory::kernels::dataset_kernels`]), the converged NTK prediction Θ_BA Θ̃⁻¹ Y and the
//! NNGP posterior mean K_BA K̃⁻¹ Y (a ridge of `ridge`·mean diagonal), their test accuracy, and
//! the NTK prediction after `steps` GD steps at η = c/λ_max(Θ̃) (PDLT eq. (10.x);
//! docs/derivations/kernels.md#gradient-flow). At the depths in `net_depths`, antithetic pairs of
//! width-n networks are trained with exactly that η and step count, and the accuracy of their
//! pair-mean output is set beside the kernel's.

use super::data::{accuracy, Prepared};
use super::networks::{largest_eigenvalue, GdSetup};
use crate::progress;
use crate::study::StudyError;
use dlt_nn::model::ActKind;
use dlt_theory::activation::parse;
use dlt_theory::kernels::{
    dataset_kernels, kernel_mean, ntk_mean, Blocks, Inputs, KernelConfig, NtkTime,
};
use rayon::prelude::*;
use serde::Serialize;

/// One activation of the sweep, at criticality.
#[derive(Debug, Clone, Serialize)]
pub struct Critical {
    /// Activation name (`tanh`, `relu`).
    pub act: String,
    /// C_W at criticality (tanh 1, ReLU 2; C_b = 0); λ_W = C_W, λ_b = 0.
    pub cw: f64,
}

/// Settings of part 1.
#[derive(Debug, Clone, Serialize)]
pub struct RegressionConfig {
    /// The activations at criticality.
    pub activations: Vec<Critical>,
    /// Depths L (number of Dense layers).
    pub depths: Vec<usize>,
    /// Relative ridge s/mean diag of the converged predictions (guards a near-singular kernel).
    pub ridge: f64,
    /// GD step η = c/λ_max(Θ̃).
    pub c: f64,
    /// GD steps of the finite-time comparison.
    pub steps: usize,
    /// Depths at which finite networks are trained.
    pub net_depths: Vec<usize>,
    /// Hidden width of the trained networks.
    pub net_width: usize,
    /// Antithetic pairs per (activation, depth).
    pub net_pairs: usize,
}

/// One (activation, depth) row.
#[derive(Debug, Clone, Serialize)]
pub struct DepthRow {
    /// Activation.
    pub act: String,
    /// Depth L.
    pub depth: usize,
    /// Test accuracy of the converged NTK prediction.
    pub ntk_accuracy: f64,
    /// Test accuracy of the NNGP posterior mean.
    pub nngp_accuracy: f64,
    /// λ_max(Θ̃) (power iteration).
    pub lambda_max: f64,
    /// Test accuracy of the NTK prediction after `steps` GD steps.
    pub ntk_steps_accuracy: f64,
    /// Trained networks at this depth, when trained.
    pub networks: Option<NetRow>,
}

/// Trained networks beside the kernel at one (activation, depth).
#[derive(Debug, Clone, Serialize)]
pub struct NetRow {
    /// Hidden width n.
    pub width: usize,
    /// Antithetic pairs trained.
    pub pairs: usize,
    /// Test accuracy of the mean output over all networks.
    pub ensemble_accuracy: f64,
    /// Mean test accuracy of one network.
    pub single_accuracy: f64,
    /// Ensemble accuracy − NTK accuracy after the same steps.
    pub accuracy_gap: f64,
    /// Standard error of that gap over test images (paired: sd of the per-image difference of
    /// correctness / √M).
    pub accuracy_gap_se: f64,
    /// Fraction of test images where the ensemble's and the kernel's predicted classes agree.
    pub agreement: f64,
    /// rms over test outputs of (ensemble mean − NTK mean), relative to the rms NTK output.
    pub relative_rms_deviation: f64,
}

/// Run part 1 on `data`.
pub fn run(
    cfg: &RegressionConfig,
    data: &Prepared,
    seed: u64,
    quiet: bool,
) -> Result<Vec<DepthRow>, StudyError> {
    let y = data.one_hot_targets();
    let (n, m, d) = (data.n_train(), data.n_test(), data.dim);
    let train = Inputs::new(&data.train_x, n, d);
    let test = Inputs::new(&data.test_x, m, d);
    let jobs = cfg.activations.len() * cfg.depths.len();
    let bar = progress::bar(jobs as u64, "trained: kernel regression vs depth", quiet);
    let mut rows = vec![];
    for a in &cfg.activations {
        for &depth in &cfg.depths {
            let mut kc = KernelConfig::new(parse(&a.act)?, 0.0, a.cw, depth);
            kc.lambda_b = 0.0;
            let k = dataset_kernels(&kc, train, Some(test), false)?;
            let kb = Blocks {
                n,
                m,
                train: &k.k_train,
                test_train: &k.k_test_train,
                test: &[],
            };
            let tb = Blocks {
                train: &k.ntk_train,
                test_train: &k.ntk_test_train,
                ..kb
            };
            let ridge =
                |t: &[f64]| cfg.ridge * (0..n).map(|i| t[i * n + i]).sum::<f64>() / n as f64;
            let ntk_inf = kernel_mean(tb, &y, 10, ridge(&k.ntk_train))?;
            let nngp = kernel_mean(kb, &y, 10, ridge(&k.k_train))?;
            let lambda_max = largest_eigenvalue(&k.ntk_train, n);
            let eta = cfg.c / lambda_max;
            let time = NtkTime::Steps {
                eta,
                steps: cfg.steps as u32,
            };
            let ntk_t = ntk_mean(tb, &y, 10, time)?;
            let networks = if cfg.net_depths.contains(&depth) {
                Some(networks(cfg, a, depth, eta, data, &y, &ntk_t, seed)?)
            } else {
                None
            };
            rows.push(DepthRow {
                act: a.act.clone(),
                depth,
                ntk_accuracy: accuracy(&ntk_inf, 10, &data.test_labels),
                nngp_accuracy: accuracy(&nngp, 10, &data.test_labels),
                lambda_max,
                ntk_steps_accuracy: accuracy(&ntk_t, 10, &data.test_labels),
                networks,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Train `net_pairs` antithetic pairs at one depth and compare with the NTK mean `ntk_t`.
#[allow(clippy::too_many_arguments)]
fn networks(
    cfg: &RegressionConfig,
    a: &Critical,
    depth: usize,
    eta: f64,
    data: &Prepared,
    y: &[f64],
    ntk_t: &[f64],
    seed: u64,
) -> Result<NetRow, StudyError> {
    let act = ActKind::parse(&a.act)?;
    let setup = GdSetup::new(
        act,
        data.dim,
        cfg.net_width,
        depth,
        10,
        (a.cw, a.cw),
        (eta, cfg.steps),
    )?;
    let outs: Vec<[Vec<f64>; 2]> = (0..cfg.net_pairs as u64)
        .into_par_iter()
        .map(|p| {
            setup.train_pair(
                dlt_nn::stream_seed(seed, &[0x4e9, depth as u64, p]),
                (&data.train_x, y),
                &data.test_x,
            )
        })
        .collect::<Result<_, _>>()?;
    let nets = 2 * outs.len();
    let m = data.n_test();
    let mut mean = vec![0.0; m * 10];
    for o in outs.iter().flatten() {
        mean.iter_mut()
            .zip(o)
            .for_each(|(s, v)| *s += v / nets as f64);
    }
    let single_accuracy = outs
        .iter()
        .flatten()
        .map(|o| accuracy(o, 10, &data.test_labels))
        .sum::<f64>()
        / nets as f64;
    let hit = |out: &[f64]| -> Vec<f64> {
        out.chunks_exact(10)
            .zip(&data.test_labels)
            .map(|(r, &l)| f64::from(u8::from(dlt_nn::mlp::argmax(r).0 == l as usize)))
            .collect()
    };
    let diff: Vec<f64> = hit(&mean)
        .iter()
        .zip(hit(ntk_t))
        .map(|(a, b)| a - b)
        .collect();
    let gap = diff.iter().sum::<f64>() / m as f64;
    let var = diff.iter().map(|d| (d - gap).powi(2)).sum::<f64>() / (m as f64 - 1.0);
    let agree = mean
        .chunks_exact(10)
        .zip(ntk_t.chunks_exact(10))
        .filter(|(a, b)| dlt_nn::mlp::argmax(a).0 == dlt_nn::mlp::argmax(b).0)
        .count();
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (s, c) = v.fold((0.0, 0usize), |(s, c), x| (s + x * x, c + 1));
        (s / c as f64).sqrt()
    };
    let dev = rms(&mut mean.iter().zip(ntk_t).map(|(a, b)| a - b));
    let scale = rms(&mut ntk_t.iter().copied());
    Ok(NetRow {
        width: cfg.net_width,
        pairs: outs.len(),
        ensemble_accuracy: accuracy(&mean, 10, &data.test_labels),
        single_accuracy,
        accuracy_gap: gap,
        accuracy_gap_se: (var / m as f64).sqrt(),
        agreement: agree as f64 / m as f64,
        relative_rms_deviation: dev / scale,
    })
}
