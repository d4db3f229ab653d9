//! Part 3, test input: the networks of [`super::trajectory`], trained on x_A only, read on a test
//! input x_β at every step, against the O(1/n) theory of
//! [`dlt_theory::trajectory::test_input`] (docs/derivations/trained_test_input.md#trained).
//!
//! Measured per width: D_{β,t}(n) = n(ū_{β,t} − m∞_β(t)), m∞_β(t) = (Θ_βA/Θ_AA) y (1 − a^t), with
//! its SE over antithetic pairs (the partner's negated last layer flips z_β(0) too, so the O(1)
//! initial function cancels in the pair mean); its 1/n extrapolation from the two largest
//! widths, D_β(∞), against C_β(t). Beside it, the predictions that the data must exclude: a
//! random but frozen NTK (no dNTK, no ddNTK), the training input's coefficient scaled by the
//! kernel ratio, C(t)·Θ_βA/Θ_AA (the naive guess), and the NTK-fluctuation term with its sign
//! flipped.

use super::trajectory::{extrapolate, TrajectoryConfig, TrajectoryWidth};
use crate::claim::{Claim, McBound};
use crate::output::{cell, OutDir};
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_theory::activation::parse;
use dlt_theory::trajectory::test_input::{
    check_activation, test_input_stats, test_input_trajectory, TestInputConfig, TestInputStats,
    TestPoint,
};
use dlt_theory::trajectory::TrajectoryPoint;
use serde::Serialize;

/// Gauss–Hermite nodes per dimension for the two-input statistics (converged to ~1e-12,
/// `dlt_theory` test `the_rule_is_converged`).
const NODES: usize = 256;

/// The test-input half of part 3.
#[derive(Debug, Clone, Serialize)]
pub struct TestInputResults {
    /// Cosine between x_A and x_β.
    pub cos: f64,
    /// The fifteen output statistics (and K, Θ) of the two-input recursions.
    pub stats: TestInputStats,
    /// The prediction per step: infinite-width mean, C_β(t) and its four parts.
    pub theory: Vec<TestPoint>,
    /// C_β(t) of a random but frozen NTK (the Θ¹ and fluctuation parts only).
    pub frozen_kernel: Vec<f64>,
    /// The naive guess C(t)·Θ_βA/Θ_AA (the training input's coefficient, scaled).
    pub kernel_ratio: Vec<f64>,
    /// C_β(t) with the NTK-fluctuation part's sign flipped.
    pub flipped_fluctuation: Vec<f64>,
    /// One row per width: n(ū_β − m∞_β) and its SE.
    pub widths: Vec<TrajectoryWidth>,
    /// D_β(∞): the two largest widths extrapolated linearly in 1/n.
    pub extrapolated: Vec<f64>,
    /// Its standard error.
    pub extrapolated_se: Vec<f64>,
    /// The step with the largest |C_β(t)|, where the coefficient claim compares.
    pub peak_step: usize,
}

/// The theory for the test input of `cfg`, or None where it is not derived (depth ∉ {2, 3}, or
/// an activation without σ'', σ'''). `train` is the training input's prediction at the same η.
pub fn theory(
    cfg: &TrajectoryConfig,
    eta: f64,
    train: &[TrajectoryPoint],
) -> Result<Option<TestInputResults>, StudyError> {
    let act = parse(&cfg.act)?;
    if !(2..=3).contains(&cfg.depth) || check_activation(&*act).is_err() {
        return Ok(None);
    }
    let stats = test_input_stats(
        &*act,
        &TestInputConfig {
            depth: cfg.depth,
            cw: cfg.cw,
            lambda_w: cfg.cw,
            gram: [1.0, cfg.test_cos, 1.0],
            nodes: NODES,
        },
    )?;
    let theory = test_input_trajectory(&stats, eta, cfg.y, cfg.steps)?;
    let ratio = stats.theta_test / stats.theta;
    let peak_step = theory
        .iter()
        .max_by(|a, b| a.coefficient.abs().total_cmp(&b.coefficient.abs()))
        .map_or(0, |p| p.t);
    Ok(Some(TestInputResults {
        cos: cfg.test_cos,
        stats,
        frozen_kernel: theory
            .iter()
            .map(|p| p.theta1_term + p.fluctuation_term)
            .collect(),
        kernel_ratio: train.iter().map(|p| p.coefficient * ratio).collect(),
        flipped_fluctuation: theory
            .iter()
            .map(|p| p.coefficient - 2.0 * p.fluctuation_term)
            .collect(),
        theory,
        widths: vec![],
        extrapolated: vec![],
        extrapolated_se: vec![],
        peak_step,
    }))
}

impl TestInputResults {
    /// Attach the measured widths and their extrapolation.
    pub fn with_measurements(mut self, widths: Vec<TrajectoryWidth>) -> Self {
        (self.extrapolated, self.extrapolated_se) = extrapolate(&widths);
        self.widths = widths;
        self
    }

    /// The step where `alt` is farthest from C_β (chosen from the theory alone, before the data
    /// are looked at) and |D_β(∞) − alt|/SE there.
    fn exclusion(&self, alt: &[f64]) -> (usize, f64) {
        let t = self
            .theory
            .iter()
            .zip(alt)
            .map(|(p, a)| (p.coefficient - a).abs())
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0, |(t, _)| t);
        (
            t,
            (self.extrapolated[t] - alt[t]).abs() / self.extrapolated_se[t],
        )
    }
}

/// `test_input.csv`: one row per step: the theory's parts, the alternatives, the extrapolation
/// and every width's n·(mean − m∞_β) with its SE.
pub fn write_table(out: &OutDir, r: &TestInputResults) -> Result<(), StudyError> {
    let mut header: Vec<String> = [
        "t",
        "infinite_mean",
        "coefficient",
        "theta1_term",
        "fluctuation_term",
        "dntk_term",
        "ddntk_term",
        "frozen_kernel",
        "kernel_ratio",
        "flipped_fluctuation",
        "extrapolated",
        "extrapolated_se",
    ]
    .map(String::from)
    .to_vec();
    for w in &r.widths {
        header.push(format!("n_dev_{}", w.width));
        header.push(format!("n_dev_se_{}", w.width));
    }
    let rows: Vec<Vec<String>> = r
        .theory
        .iter()
        .map(|p| {
            let t = p.t;
            let mut row = vec![
                t.to_string(),
                cell(p.infinite),
                cell(p.coefficient),
                cell(p.theta1_term),
                cell(p.fluctuation_term),
                cell(p.dntk_term),
                cell(p.ddntk_term),
                cell(r.frozen_kernel[t]),
                cell(r.kernel_ratio[t]),
                cell(r.flipped_fluctuation[t]),
                cell(r.extrapolated[t]),
                cell(r.extrapolated_se[t]),
            ];
            for w in &r.widths {
                row.push(cell(w.n_dev[t]));
                row.push(cell(w.n_dev_se[t]));
            }
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out.write_csv("test_input.csv", &header, &rows)?;
    Ok(())
}

/// `test_input.svg`: n·(mean − m∞_β) on the test input against the step, per width and
/// extrapolated, beside C_β(t) and the alternatives.
pub fn figure(
    out: &OutDir,
    cfg: &TrajectoryConfig,
    r: &TestInputResults,
) -> Result<String, StudyError> {
    let line = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter().enumerate().map(|(t, &c)| (t as f64, c)).collect()
    };
    let coef: Vec<f64> = r.theory.iter().map(|p| p.coefficient).collect();
    let mut f = Figure::new(
        format!(
            "1/n correction on a test input (cos {} to the one training input; {} {} layers, ηΘ = {})",
            r.cos, cfg.act, cfg.depth, cfg.c
        ),
        "GD step t",
        "n · (ensemble mean − infinite-width mean), test input",
    )
    .with(Series::line("1/n theory C_β(t)", line(&coef)).in_colour(0))
    .with(Series::dashed("frozen random NTK (no dNTK, ddNTK)", line(&r.frozen_kernel)).in_colour(1))
    .with(Series::dotted("training input's C(t) · Θ_βA/Θ_AA", line(&r.kernel_ratio)).in_colour(2));
    for (k, w) in r.widths.iter().enumerate() {
        let dx = 0.08 * (k as f64 - (r.widths.len() as f64 - 1.0) / 2.0);
        f = f.with(
            Series::points(
                format!("networks n = {} ({} pairs) ± SE", w.width, w.pairs),
                w.n_dev
                    .iter()
                    .enumerate()
                    .map(|(t, &v)| (t as f64 + dx, v))
                    .collect(),
                Some(w.n_dev_se.clone()),
            )
            .in_colour(3 + k),
        );
    }
    f = f.with(
        Series::points(
            "extrapolated to n = ∞ (1/n, two largest widths) ± SE",
            line(&r.extrapolated),
            Some(r.extrapolated_se.clone()),
        )
        .in_colour(0),
    );
    f.save_svg(&out.path("test_input.svg"))?;
    Ok("test_input.svg".into())
}

/// The claims of the test-input half of part 3.
pub fn claims(r: &TestInputResults, paper: &str) -> Vec<Claim> {
    let t = r.peak_step;
    let (m, se) = (r.extrapolated[t], r.extrapolated_se[t]);
    let c = r.theory[t].coefficient;
    let (tf, zf) = r.exclusion(&r.frozen_kernel);
    let (tr, zr) = r.exclusion(&r.kernel_ratio);
    vec![
        Claim::monte_carlo(
            "trained.test_input_coefficient",
            &format!("{paper} ch. ∞"),
            &format!(
                "on a test input the network never saw, the O(1/n) correction of the trained mean matches the two-input theory C_β (docs/derivations/trained_test_input.md): n·(ensemble mean − m∞_β) extrapolated to n = ∞ at step t = {t}"
            ),
            (m, se),
            c,
            McBound {
                k: 3.0,
                max_rel_se: 0.25,
                truncation: 0.05,
            },
            "SE over antithetic pairs; 5 % for the O(1/n²) remainder of the two-width extrapolation, as for the training input (docs/derivations/trained.md#finite-width-trajectory)",
        )
        .calibrated(),
        Claim::at_least(
            "trained.test_input_not_frozen",
            &format!("{paper} ch. 11, ∞"),
            &format!(
                "off the training data too, the trained networks resolve the dNTK and ddNTKs: |extrapolation − frozen-NTK prediction|/SE at step t = {tf}, where the two predictions differ most"
            ),
            zf,
            3.0,
            "a 3-SE exclusion of the prediction of a random but frozen NTK",
        )
        .from_theory(),
        Claim::at_least(
            "trained.test_input_not_kernel_ratio",
            &format!("{paper} ch. ∞"),
            &format!(
                "the test input's correction is not the training input's scaled by Θ_βA/Θ_AA: |extrapolation − C(t)Θ_βA/Θ_AA|/SE at step t = {tr}, where the two predictions differ most"
            ),
            zr,
            3.0,
            "a 3-SE exclusion of the naive guess",
        )
        .from_theory(),
    ]
}
