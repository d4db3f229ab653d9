//! The training part of `orthogonal`: training runs, their claims and outputs.

use super::{init_name, to_study, Config, Scale, TrainRow, PAPER};
use crate::claim::Claim;
use crate::output::{cell, fmt_num, OutDir};
use crate::plot::{Figure, Series};
use crate::progress;
use crate::study::StudyError;
use candle_core::{DType, Device};
use dlt_nn::data::TrainTest;
use dlt_nn::model::{ActKind, Init as NnInit, Mlp};
use dlt_nn::train::{Loss, Optimizer, TrainConfig, Trainer};
use dlt_theory::{Init, LearningRates};

/// Part 3: deep tanh MLPs trained by full-batch GD on Fashion-MNIST across depth, both inits
/// (nothing when `cfg.skip_training`): the runs ([`training_runs`]), then their claims
/// ([`training_claims`]), figures and table ([`training_outputs`]).
pub(super) fn training_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<TrainRow>, StudyError> {
    if cfg.skip_training {
        return Ok(vec![]);
    }
    let training = training_runs(cfg)?;
    training_claims(&cfg.scale, &training, claims);
    training_outputs(&cfg.scale, &training, out, figures)?;
    Ok(training)
}

/// Every training run, depth by depth, Gaussian then Haar, seed by seed, on a standardised
/// seeded subset of Fashion-MNIST (`train_examples` training and 2000 test images).
fn training_runs(cfg: &Config) -> Result<Vec<TrainRow>, StudyError> {
    let sc = &cfg.scale;
    let data = dlt_nn::data::fashion_mnist(cfg.data_path.as_deref()).map_err(to_study)?;
    let mut sub = TrainTest {
        train: data.train.subset(sc.train_examples, cfg.seed),
        test: data.test.subset(2000, cfg.seed + 1),
    };
    sub.standardize();
    let total = sc.train_depths.len() * 2 * sc.train_seeds;
    let pb = progress::bar(total as u64, "training", cfg.quiet);
    let mut training = vec![];
    for &depth in &sc.train_depths {
        for init in [Init::Gaussian, Init::Orthogonal] {
            for s in 0..sc.train_seeds as u64 {
                training.push(train_one(cfg, &sub, depth, init, s)?);
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    Ok(training)
}

/// One run: a critical tanh MLP of `depth` weight layers (784 → `train_width`… → 10, model
/// seed `seed·100 + s`) trained by full-batch GD on MSE with NTK learning rates
/// (λ_b = 1/l, λ_W = 1) for `train_steps` steps. A diverged run is returned as a row with
/// `diverged_at` set and NaN scores; any other error is passed on.
fn train_one(
    cfg: &Config,
    sub: &TrainTest,
    depth: usize,
    init: Init,
    s: u64,
) -> Result<TrainRow, StudyError> {
    let sc = &cfg.scale;
    let dev = Device::Cpu;
    let lr = LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: true,
    };
    let nn_init = match init {
        Init::Gaussian => NnInit::Gaussian { cb: 0.0, cw: 1.0 },
        Init::Orthogonal => NnInit::Orthogonal { cb: 0.0, cw: 1.0 },
    };
    let mut widths = vec![784];
    widths.extend(std::iter::repeat_n(sc.train_width, depth - 1));
    widths.push(10);
    let model = Mlp::new(
        &widths,
        ActKind::Tanh,
        &nn_init,
        cfg.seed * 100 + s,
        DType::F32,
        &dev,
    )
    .map_err(to_study)?;
    let tc = TrainConfig {
        optimizer: Optimizer::Gd,
        loss: Loss::Mse,
        lr: sc.train_lr,
        batch: sub.train.len(),
        epochs: sc.train_steps,
        max_steps: Some(sc.train_steps),
        ntk_lr: Some(lr),
        seed: s,
        eval_every: 0,
        checkpoint_every: 0,
    };
    let mut tr = Trainer::new(&model, tc, dev.clone()).map_err(to_study)?;
    let started = std::time::Instant::now();
    Ok(match tr.run(sub, None, &|_| {}) {
        Ok(rep) => TrainRow {
            init: init_name(init).into(),
            depth,
            width: sc.train_width,
            seed: s,
            final_train_loss: rep.train_loss,
            test_accuracy: rep.test_accuracy,
            test_loss: rep.test_loss,
            diverged_at: None,
            seconds: rep.seconds,
            curve: rep.metrics.iter().map(|m| (m.step, m.train_loss)).collect(),
        },
        // A diverged run is a result too: record it as such.
        Err(dlt_nn::NnError::Diverged { step, .. }) => TrainRow {
            init: init_name(init).into(),
            depth,
            width: sc.train_width,
            seed: s,
            final_train_loss: f64::NAN,
            test_accuracy: f64::NAN,
            test_loss: f64::NAN,
            diverged_at: Some(step),
            seconds: started.elapsed().as_secs_f64(),
            curve: vec![],
        },
        Err(e) => return Err(to_study(e)),
    })
}

/// Mean of `f` over the runs of one init at one depth (NaN if any of them is NaN).
fn mean_of(training: &[TrainRow], init: &str, depth: usize, f: &dyn Fn(&TrainRow) -> f64) -> f64 {
    mean_and_se(training, init, depth, f).0
}

/// Mean of `f` over the runs (seeds) of one init at one depth and its standard error
/// sd/√S (NaN with fewer than two runs, or if any value is NaN).
fn mean_and_se(
    training: &[TrainRow],
    init: &str,
    depth: usize,
    f: &dyn Fn(&TrainRow) -> f64,
) -> (f64, f64) {
    let v: Vec<f64> = training
        .iter()
        .filter(|r| r.init == init && r.depth == depth)
        .map(f)
        .collect();
    let k = v.len() as f64;
    let m = v.iter().sum::<f64>() / k;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1.0);
    (
        m,
        if v.len() >= 2 {
            (var / k).sqrt()
        } else {
            f64::NAN
        },
    )
}

/// The training claims at the deepest depth: Haar weights reach a lower train loss and a
/// higher test accuracy than Gaussian ones; both fail if any deepest run diverged.
fn training_claims(sc: &Scale, training: &[TrainRow], claims: &mut Vec<Claim>) {
    let dmax = *sc.train_depths.last().expect("depths");
    // The comparisons need every deepest run to have trained; a diverged run is reported
    // as such (its row's `diverged_at`) and makes both claims fail rather than enter as a
    // score.
    let diverged = training
        .iter()
        .filter(|r| r.depth == dmax && r.diverged_at.is_some())
        .count();
    let none_diverged = format!("no run at L = {dmax} diverged ({diverged} did)");
    let (lo, lo_se) = mean_and_se(training, "orthogonal", dmax, &|r| r.final_train_loss);
    let (lg, lg_se) = mean_and_se(training, "gaussian", dmax, &|r| r.final_train_loss);
    let loss_ratio = lo / lg;
    // Delta method over the seeds of each init.
    let ratio_se = loss_ratio * ((lo_se / lo).powi(2) + (lg_se / lg).powi(2)).sqrt();
    claims.push(Claim::at_most(
        "orthogonal.trains_faster_deep", &format!("{PAPER}, training experiments"),
        &format!("deep tanh (L = {dmax}, n = {}, L/n = {}): full-batch GD reaches a lower train loss with Haar weights (orthogonal/Gaussian after {} steps)", sc.train_width, fmt_num(dmax as f64 / sc.train_width as f64), sc.train_steps),
        loss_ratio, 1.0, "ratio < 1",
    )
    .with_se(ratio_se)
    .require(loss_ratio + 3.0 * ratio_se < 1.0, &format!("ratio + 3 SE < 1 (SE over seeds by the delta method: {})", fmt_num(ratio_se)))
    .require(diverged == 0, &none_diverged));
    let (ao, ao_se) = mean_and_se(training, "orthogonal", dmax, &|r| r.test_accuracy);
    let (ag, ag_se) = mean_and_se(training, "gaussian", dmax, &|r| r.test_accuracy);
    let acc_gap = ao - ag;
    let gap_se = (ao_se * ao_se + ag_se * ag_se).sqrt();
    claims.push(
        Claim::above(
            "orthogonal.generalises_better_deep",
            &format!("{PAPER}, training experiments"),
            &format!(
                "deep tanh (L = {dmax}): test accuracy with Haar weights minus Gaussian ({} seeds)",
                sc.train_seeds
            ),
            acc_gap,
            0.0,
            "Haar ahead",
        )
        .with_se(gap_se)
        .require(
            acc_gap > 3.0 * gap_se,
            &format!("the gap exceeds 3 SE over seeds ({})", fmt_num(gap_se)),
        )
        .require(diverged == 0, &none_diverged),
    );
}

/// The training figures (loss curves at the deepest depth, final test accuracy vs L/n) and
/// `training.csv`.
fn training_outputs(
    sc: &Scale,
    training: &[TrainRow],
    out: &OutDir,
    figures: &mut Vec<String>,
) -> Result<(), StudyError> {
    let dmax = *sc.train_depths.last().expect("depths");
    let mut fig = Figure::new(
        format!("Full-batch GD, tanh, L = {dmax}, n = {}", sc.train_width),
        "step",
        "train loss (MSE)",
    );
    for r in training.iter().filter(|r| r.depth == dmax) {
        fig = fig.with(Series::line(
            format!("{} seed {}", r.init, r.seed),
            r.curve.iter().map(|&(s, l)| (s as f64, l)).collect(),
        ));
    }
    fig.save_svg(&out.path("training_loss.svg"))?;
    figures.push("training_loss.svg".into());
    let mut fig = Figure::new(
        "Final test accuracy vs depth-to-width ratio",
        "L/n",
        "test accuracy",
    );
    for init in ["gaussian", "orthogonal"] {
        fig = fig.with(Series::line(
            init.to_string(),
            sc.train_depths
                .iter()
                .map(|&d| {
                    (
                        d as f64 / sc.train_width as f64,
                        mean_of(training, init, d, &|r| r.test_accuracy),
                    )
                })
                .collect(),
        ));
    }
    fig.save_svg(&out.path("accuracy_vs_depth.svg"))?;
    figures.push("accuracy_vs_depth.svg".into());
    out.write_csv(
        "training.csv",
        &[
            "init",
            "depth",
            "width",
            "seed",
            "final_train_loss",
            "test_accuracy",
            "test_loss",
            "seconds",
        ],
        &training
            .iter()
            .map(|r| {
                vec![
                    r.init.clone(),
                    r.depth.to_string(),
                    r.width.to_string(),
                    r.seed.to_string(),
                    cell(r.final_train_loss),
                    cell(r.test_accuracy),
                    cell(r.test_loss),
                    cell(r.seconds),
                ]
            })
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}
