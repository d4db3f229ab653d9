//! Part 3, test input: the networks of [`super::trajectory`], trained on x_A only, read on a test
//! input x_β at every step, against the O(1/n) theory of
//! [`dlt_theory::trajectory::test_input`] (docs/derivations/trained_test_input.md#trained).
//!
//! Measured per width: D_{β,t}(n) = n(ū_{β,t} − m∞_β(t)), m∞_β(t) = (Θ_βA/Θ_AA) y (1 − a^t), with
//! its SE over antithetic pairs (the partner's negated last layer flips z_β(0) too, so the O(1)
//! initial function cancels in the pair mean); its 1/n extrapolation from the two largest
//! widths, D_β(∞), against C_β(t). Beside it, the predictions that the data must exclude: a
//! random but frozen NTK (no dNTK, no ddNTK), the training input's coefficient scaled by the
//! kernel ratio, C(t)·Θ_βA/Θ_AA (the naive guess); the NTK-fluctuation term with its sign
//! flipped is recorded beside them, not claimed.

use super::trajectory::{
    extrapolate, measured_series, step_line, write_step_table, TrajectoryConfig, TrajectoryWidth,
};
use crate::claim::{Claim, McBound};
use crate::output::OutDir;
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_theory::activation::parse;
use dlt_theory::trajectory::test_input::{
    check_activation, test_input_stats, test_input_trajectory, TestInputConfig, TestInputStats,
    TestPoint, DEFAULT_NODES,
};
use dlt_theory::trajectory::TrajectoryPoint;
use serde::Serialize;

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
    /// The training input's peak step t* (largest |C(t)|), where the coefficient claim compares
    /// during the transient (the convergence claim compares at the last step).
    pub peak_step: usize,
    /// C_β(∞), the O(1/n) offset the trained function keeps on the test input after GD has
    /// converged (C_β at 400 steps, where a^t < 1e-100).
    pub converged: f64,
}

/// The theory for the test input of `cfg`, or None where it is not derived (an activation
/// without σ'', σ'''). `train` is the training input's prediction at the same η
/// and `peak_step` its step of largest |C(t)|.
pub fn theory(
    cfg: &TrajectoryConfig,
    eta: f64,
    train: &[TrajectoryPoint],
    peak_step: usize,
) -> Result<Option<TestInputResults>, StudyError> {
    let act = parse(&cfg.act)?;
    if check_activation(&*act).is_err() {
        return Ok(None);
    }
    let stats = test_input_stats(
        &*act,
        &TestInputConfig {
            depth: cfg.depth,
            cw: cfg.cw,
            lambda_w: cfg.cw,
            gram: [1.0, cfg.test_cos, 1.0],
            nodes: DEFAULT_NODES,
        },
    )?;
    // One run long enough for C_β(∞) (a^400 < 1e-100), cut to the study's steps.
    let mut theory = test_input_trajectory(&stats, eta, cfg.y, cfg.steps.max(400))?;
    let converged = theory.last().map_or(f64::NAN, |p| p.coefficient);
    theory.truncate(cfg.steps + 1);
    let ratio = stats.theta_test / stats.theta;
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
        converged,
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
    let col = |g: fn(&TestPoint) -> f64| r.theory.iter().map(g).collect::<Vec<f64>>();
    let cols = [
        ("infinite_mean", col(|p| p.infinite)),
        ("coefficient", col(|p| p.coefficient)),
        ("theta1_term", col(|p| p.theta1_term)),
        ("fluctuation_term", col(|p| p.fluctuation_term)),
        ("dntk_term", col(|p| p.dntk_term)),
        ("ddntk_term", col(|p| p.ddntk_term)),
        ("frozen_kernel", r.frozen_kernel.clone()),
        ("kernel_ratio", r.kernel_ratio.clone()),
        ("flipped_fluctuation", r.flipped_fluctuation.clone()),
        ("extrapolated", r.extrapolated.clone()),
        ("extrapolated_se", r.extrapolated_se.clone()),
    ];
    write_step_table(out, "test_input.csv", &cols, &r.widths)
}

/// `test_input.svg`: n·(mean − m∞_β) on the test input against the step, per width and
/// extrapolated, beside C_β(t) and the alternatives.
pub fn figure(
    out: &OutDir,
    cfg: &TrajectoryConfig,
    r: &TestInputResults,
) -> Result<String, StudyError> {
    let coef: Vec<f64> = r.theory.iter().map(|p| p.coefficient).collect();
    let f = Figure::new(
        format!(
            "1/n correction on a test input (cos {} to the one training input; {} {} layers, ηΘ = {})",
            r.cos, cfg.act, cfg.depth, cfg.c
        ),
        "GD step t",
        "n · (ensemble mean − infinite-width mean), test input",
    )
    .with(Series::line("1/n theory C_β(t)", step_line(&coef)).in_colour(0))
    .with(
        Series::dashed("frozen random NTK (no dNTK, ddNTK)", step_line(&r.frozen_kernel))
            .in_colour(1),
    )
    .with(
        Series::dotted("training input's C(t) · Θ_βA/Θ_AA", step_line(&r.kernel_ratio))
            .in_colour(2),
    );
    measured_series(f, &r.widths, (&r.extrapolated, &r.extrapolated_se))
        .save_svg(&out.path("test_input.svg"))?;
    Ok("test_input.svg".into())
}

/// The claims of the test-input half of part 3. The convergence claim is made only when the
/// run's last step T has C_β(T) within 1 % of C_β(∞) (ηΘ = 0.5: T ≥ 16).
pub fn claims(r: &TestInputResults, train_last: f64, paper: &str) -> Vec<Claim> {
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
                "on a test input the network never saw, the O(1/n) correction of the trained mean matches the two-input theory C_β (docs/derivations/trained_test_input.md): n·(ensemble mean − m∞_β) extrapolated to n = ∞ at step t = {t}, where the training input's correction peaks"
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
    .into_iter()
    .chain(r.convergence_claim(train_last, paper))
    .collect()
}

impl TestInputResults {
    /// `trained.test_input_offset_at_convergence`, when the last step is converged (see
    /// [`claims`]); `train_last` is the training input's C(T), ≈ 0 there.
    fn convergence_claim(&self, train_last: f64, paper: &str) -> Option<Claim> {
        let t = self.theory.len() - 1;
        let c = self.theory[t].coefficient;
        if (c - self.converged).abs() > 0.01 * self.converged.abs() {
            return None;
        }
        Some(
            Claim::monte_carlo(
                "trained.test_input_offset_at_convergence",
                &format!("{paper} ch. ∞"),
                &format!(
                    "after GD has converged (step {t}: the training input's C = {train_last:.4}, every network fits its target) the trained function keeps an O(1/n) offset on the test input, predicted by C_β(∞) = {:.4}: n·(ensemble mean − m∞_β) extrapolated to n = ∞ at t = {t}",
                    self.converged
                ),
                (self.extrapolated[t], self.extrapolated_se[t]),
                c,
                McBound {
                    k: 3.0,
                    max_rel_se: 0.25,
                    truncation: 0.05,
                },
                "SE over antithetic pairs; 5 % for the two-width extrapolation's O(1/n²) remainder, as for the peak; SE ≤ 25 % of the offset, so that a zero offset is excluded at 4 SE",
            )
            .calibrated(),
        )
    }
}
