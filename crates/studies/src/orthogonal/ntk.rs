//! The NTK spread of real (candle) networks of `orthogonal`, orthogonal against Gaussian weights.

use super::statistics::ensemble_mc;
use super::{init_name, to_study, Config, NtkRow, PAPER};
use crate::claim::{Claim, McBound};
use crate::output::OutDir;
use crate::plot::{Figure, Series};
use crate::progress;
use crate::study::StudyError;
use candle_core::{DType, Device, Tensor};
use dlt_nn::model::{ActKind, Init as NnInit, Mlp};
use dlt_nn::ntk::empirical_ntk;
use dlt_theory::{Init, LearningRates};

/// Part 2: the empirical NTK of candle MLPs at initialisation against the Monte Carlo and
/// the recursion.
pub(super) fn candle_ntk_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<NtkRow>, StudyError> {
    let sc = cfg.scale.clone();
    // 2. Empirical NTK of candle MLPs at init vs the Monte Carlo and the recursion.
    let dev = Device::Cpu;
    let n = sc.ntk_width;
    let lr = LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: true,
    };
    let x = Tensor::ones((1, n), DType::F64, &dev)
        .map_err(dlt_nn::NnError::from)
        .map_err(to_study)?;
    let mut ntk = vec![];
    for init in [Init::Gaussian, Init::Orthogonal] {
        let pb = progress::bar(
            (sc.ntk_depths.len() * sc.ntk_seeds) as u64,
            &format!("candle NTK {}", init_name(init)),
            cfg.quiet,
        );
        for &depth in &sc.ntk_depths {
            let nn_init = match init {
                Init::Gaussian => NnInit::Gaussian { cb: 0.0, cw: 1.0 },
                Init::Orthogonal => NnInit::Orthogonal { cb: 0.0, cw: 1.0 },
            };
            let mut vals = vec![];
            for s in 0..sc.ntk_seeds as u64 {
                let m = Mlp::new(
                    &vec![n; depth + 1],
                    ActKind::Tanh,
                    &nn_init,
                    cfg.seed * 1000 + s,
                    DType::F64,
                    &dev,
                )
                .map_err(to_study)?;
                let (_, h) = empirical_ntk(&m, &x, &lr).map_err(to_study)?;
                vals.push((0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64);
                pb.inc(1);
            }
            let k = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / k;
            let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt();
            let (r, th) = ensemble_mc(
                "tanh",
                1.0,
                init,
                n,
                depth,
                4000,
                true,
                cfg.seed + 30 + depth as u64,
                true,
            )?;
            let m = r.last().and_then(|l| l.get("theta")).expect("theta");
            ntk.push(NtkRow {
                init: init_name(init).into(),
                depth,
                n,
                candle_mean: mean,
                candle_se: sd / k.sqrt(),
                candle_sd: sd,
                mc_mean: m.value,
                mc_se: m.se,
                theory: th.last().expect("layers").theta,
            });
        }
        pb.finish_and_clear();
    }
    for init in ["gaussian", "orthogonal"] {
        if let Some(r) = ntk.iter().rfind(|r| r.init == init) {
            let comb = (r.candle_se.powi(2) + r.mc_se.powi(2)).sqrt();
            claims.push(Claim::monte_carlo(
                &format!("orthogonal.candle_ntk_{init}"), "PDLT §8.1 (NTK forward equation)",
                &format!("{init}: the empirical NTK of candle MLPs (depth {}, n = {n}) has the Monte Carlo mean tr Ĥ/n", r.depth),
                (r.candle_mean, comb), r.mc_mean,
                McBound { k: 3.0, max_rel_se: 0.045, truncation: 0.0 },
                "two estimates of the same mean: candle's networks and our sampler; SE combined",
            ));
        }
    }
    let deepest = *sc.ntk_depths.last().expect("depths");
    let sd_of = |init: &str| {
        ntk.iter()
            .find(|r| r.init == init && r.depth == deepest)
            .map_or(f64::NAN, |r| r.candle_sd / r.candle_mean)
    };
    // Each relative spread is a sample sd over S seeds: relative SE 1/√(2(S − 1)) (normal
    // approximation), so the ratio's relative SE is 1/√(S − 1).
    let ratio = sd_of("orthogonal") / sd_of("gaussian");
    let ratio_se = ratio / ((sc.ntk_seeds as f64) - 1.0).sqrt();
    claims.push(
        Claim::at_most(
            "orthogonal.ntk_fluctuations_smaller", PAPER,
            &format!("Haar weights reduce NTK fluctuations: relative spread of tr Ĥ/n across seeds at depth {deepest}, orthogonal over Gaussian"),
            ratio, 1.0, "ratio < 1",
        )
        .with_se(ratio_se)
        .require(ratio + 3.0 * ratio_se < 1.0, "ratio + 3 SE < 1 (SE of a ratio of sample spreads over the seeds)"),
    );
    let mut fig = Figure::new(
        format!("Empirical NTK of candle tanh MLPs, n = {n}"),
        "depth L",
        "mean tr Ĥ/n",
    );
    for init in ["gaussian", "orthogonal"] {
        let rs: Vec<&NtkRow> = ntk.iter().filter(|r| r.init == init).collect();
        fig = fig.with(Series::points(
            format!("candle {init}"),
            rs.iter().map(|r| (r.depth as f64, r.candle_mean)).collect(),
            Some(rs.iter().map(|r| r.candle_se).collect()),
        ));
        fig = fig.with(Series::points(
            format!("MC {init}"),
            rs.iter().map(|r| (r.depth as f64, r.mc_mean)).collect(),
            Some(rs.iter().map(|r| r.mc_se).collect()),
        ));
        if init == "gaussian" {
            fig = fig.with(Series::line(
                "recursion Θ^(L)",
                rs.iter().map(|r| (r.depth as f64, r.theory)).collect(),
            ));
        }
    }
    fig.save_svg(&out.path("ntk_candle.svg"))?;
    figures.push("ntk_candle.svg".into());
    let mut fig = Figure::new(
        format!("Spread of the empirical NTK across seeds, n = {n}"),
        "depth L",
        "sd(tr Ĥ/n) / mean",
    );
    for init in ["gaussian", "orthogonal"] {
        let rs: Vec<&NtkRow> = ntk.iter().filter(|r| r.init == init).collect();
        fig = fig.with(Series::line(
            init.to_string(),
            rs.iter()
                .map(|r| (r.depth as f64, r.candle_sd / r.candle_mean))
                .collect(),
        ));
    }
    fig.save_svg(&out.path("ntk_spread.svg"))?;
    figures.push("ntk_spread.svg".into());
    Ok(ntk)
}
