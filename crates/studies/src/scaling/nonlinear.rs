//! Section (a) of the `scaling` study: nonlinear feature maps extend the power law past the
//! latent dimension M (Maloney, Roberts, Sully, arXiv 2210.16859, abstract item (ii) and its
//! key finding; docs/derivations/scaling.md#nonlinear-teacher). Loss against N at large P for
//! linear, ReLU and tanh random features on a wide ReLU teacher of the same latent data
//! ([`dlt_theory::scaling_teacher`]): linear features stop at N = M (rank ≤ M), nonlinear ones
//! keep falling, with the slope past M measured beside the exponent implied by the extended
//! spectrum of the ReLU features (slope s of log λ_k against log k past M ⇒ loss exponent
//! |s| − 1, the same step as λ_I ∝ I^{−(1+α)} ⇒ L ∝ N^{−α} for linear features).

use super::PAPER;
use crate::claim::Claim;
use crate::output::fmt_num;
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_theory::scaling::{feature_spectrum, fit_exponent, spectrum_slope, Features, ScalingModel};
use dlt_theory::scaling_teacher::{paired_log_ratio, teacher_curves, StudentCurve, TeacherSetting};
use serde::Serialize;

/// Sizes of the nonlinear-features section.
#[derive(Debug, Clone, Serialize)]
pub struct NonlinearScale {
    /// Spectral exponent α of the latent data.
    pub alpha: f64,
    /// Latent dimension M.
    pub m: usize,
    /// Preactivation variance q = σ_u² Σλ/M of every feature (teacher and students): at q = 1
    /// tanh is genuinely nonlinear (at the base model's σ_u² = 1, q ≈ 1.6/M and tanh is nearly
    /// linear). The CLI flag `--feature-scale`.
    pub feature_scale: f64,
    /// Width K of the ReLU teacher.
    pub teacher_width: usize,
    /// Training samples P (≫ the largest N).
    pub p: usize,
    /// Held-out samples.
    pub test: usize,
    /// Feature counts N (crossing M).
    pub ns: Vec<usize>,
    /// Seeds.
    pub seeds: usize,
}

impl NonlinearScale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        if quick {
            Self {
                alpha: 1.0,
                m: 32,
                feature_scale: 1.0,
                teacher_width: 1024,
                p: 4096,
                test: 2048,
                ns: vec![4, 8, 16, 32, 64, 128, 256],
                seeds: 8,
            }
        } else {
            Self {
                alpha: 1.0,
                m: 64,
                feature_scale: 1.0,
                teacher_width: 8192,
                p: 16384,
                test: 4096,
                ns: vec![8, 16, 32, 64, 128, 256, 512],
                seeds: 24,
            }
        }
    }
    fn setting(&self) -> TeacherSetting {
        let mut model = ScalingModel::new(self.alpha, self.m);
        model.sigma_u2 = self.feature_scale * self.m as f64 / model.spectrum().iter().sum::<f64>();
        TeacherSetting {
            model,
            teacher: Features::Relu,
            teacher_width: self.teacher_width,
            p: self.p,
            test: self.test,
            ridge_rel: 1e-9,
        }
    }
}

/// One teacher nonlinearity with its linear and same-nonlinearity students.
#[derive(Debug, Clone, Serialize)]
pub struct TeacherRun {
    /// The teacher's (and the nonlinear student's) map.
    pub teacher: Features,
    /// Relative test loss L/Var(y) against N: the linear student, then the nonlinear one.
    pub curves: Vec<StudentCurve>,
    /// Per student: fitted exponent −d log L/d log N over N ≥ M, and its SE.
    pub exponents_past_m: Vec<(Features, f64, f64)>,
    /// Paired ln(L_linear/L_nonlinear) at the largest N, and its SE.
    pub log_ratio: (f64, f64),
}

/// The section's results.
#[derive(Debug, Clone, Serialize)]
pub struct Nonlinear {
    /// The ReLU-teacher and the tanh-teacher runs.
    pub teachers: Vec<TeacherRun>,
    /// Slope of log λ_k against log k of the ReLU feature second-moment matrix (N = the largest
    /// N of the curve, one draw of U), over ranks M…2M.
    pub relu_spectrum_slope: f64,
    /// The loss exponent that slope implies, |s| − 1.
    pub predicted_exponent: f64,
}

/// Run the section: curves, exponents, the spectrum, and the claims.
pub fn run(sc: &NonlinearScale, seed: u64) -> Result<(Nonlinear, Vec<Claim>), StudyError> {
    let past: Vec<usize> = (0..sc.ns.len()).filter(|&i| sc.ns[i] >= sc.m).collect();
    let last = sc.ns.len() - 1;
    let mut teachers = vec![];
    let mut claims = vec![];
    for (ti, teacher) in [Features::Relu, Features::Tanh].into_iter().enumerate() {
        let mut s = sc.setting();
        s.teacher = teacher;
        let curves = teacher_curves(
            &s,
            &[Features::Linear, teacher],
            &sc.ns,
            sc.seeds,
            seed + 50_000 + 1000 * ti as u64,
        )?;
        let exponents_past_m: Vec<(Features, f64, f64)> = curves
            .iter()
            .map(|c| {
                let xs: Vec<f64> = past.iter().map(|&i| c.ns[i] as f64).collect();
                let (sl, se) = fit_exponent(
                    &xs,
                    &past.iter().map(|&i| c.points[i].loss).collect::<Vec<_>>(),
                    &past
                        .iter()
                        .map(|&i| c.points[i].loss_se)
                        .collect::<Vec<_>>(),
                );
                (c.features, -sl, se)
            })
            .collect();
        let (r, se) = paired_log_ratio(&curves[0].points[last], &curves[1].points[last]);
        let name = format!("{teacher:?}").to_lowercase();
        claims.push(
            Claim::above(
                &format!("scaling.nonlinear_beats_linear_past_m_{name}"),
                &format!("{PAPER}, abstract: nonlinear feature maps extend the power law of the data"),
                &format!(
                    "on a wide {name} teacher, at N = {} = {}M (P = {}), {name} features beat linear ones, which stop at N = M: ln(L_linear/L_{name}) = {} ± {} (paired over seeds; relative losses {} vs {})",
                    sc.ns[last], sc.ns[last] / sc.m, sc.p, fmt_num(r), fmt_num(se), fmt_num(curves[0].points[last].loss), fmt_num(curves[1].points[last].loss)
                ),
                r,
                3.0 * se,
                "3 SE of the paired log ratio (0 is no gain)",
            )
            .from_theory()
            .with_se(se),
        );
        teachers.push(TeacherRun {
            teacher,
            curves,
            exponents_past_m,
            log_ratio: (r, se),
        });
    }
    let nmax = *sc.ns.iter().max().unwrap_or(&1);
    let ev = feature_spectrum(&sc.setting().model, nmax, Features::Relu, 0, seed + 50_999)?;
    let slope = spectrum_slope(&ev, sc.m, (2 * sc.m).min(nmax));
    let predicted = -slope - 1.0;
    let (_, e_relu, se_relu) = teachers[0].exponents_past_m[1];
    claims.push(
        Claim::within(
            "scaling.nonlinear_exponent_past_m",
            &format!("{PAPER}: the extended spectrum is translated into a power law of the loss"),
            &format!(
                "ReLU features on the ReLU teacher past M: the loss exponent over N = {}…{} is {} ± {}, the extended spectrum's slope {} (ranks M…2M) implies |s| − 1 = {}",
                sc.m, nmax, fmt_num(e_relu), fmt_num(se_relu), fmt_num(slope), fmt_num(predicted)
            ),
            e_relu,
            predicted,
            3.0 * se_relu + 0.15,
            "3 SE of the fit plus 0.15: the spectrum's slope from one draw of U (±0.15 in the derivation's table) and the finite-P inflation at N/P ≤ 1/16",
        )
        .calibrated()
        .with_se(se_relu),
    );
    Ok((
        Nonlinear {
            teachers,
            relu_spectrum_slope: slope,
            predicted_exponent: predicted,
        },
        claims,
    ))
}

/// `nonlinear.svg`: the relative loss against N per teacher and student, N = M marked.
pub fn figure(
    out: &crate::output::OutDir,
    sc: &NonlinearScale,
    r: &Nonlinear,
) -> Result<Vec<String>, StudyError> {
    let mut fig = Figure::new(
        format!(
            "Past the latent dimension M = {} (P = {}, α = {})",
            sc.m, sc.p, sc.alpha
        ),
        "N (features)",
        "test loss / Var(y)",
    )
    .log_log();
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for (ti, t) in r.teachers.iter().enumerate() {
        let tname = format!("{:?}", t.teacher).to_lowercase();
        for (k, c) in t.curves.iter().enumerate() {
            let e = t.exponents_past_m[k];
            let colour = 2 * ti + k;
            let pts: Vec<(f64, f64)> =
                c.ns.iter()
                    .zip(&c.points)
                    .map(|(&n, p)| (n as f64, p.loss))
                    .collect();
            lo = pts.iter().map(|p| p.1).fold(lo, f64::min);
            hi = pts.iter().map(|p| p.1).fold(hi, f64::max);
            fig = fig.with(
                Series::points(
                    format!(
                        "{} features, {tname} teacher (exponent past M {:.2})",
                        format!("{:?}", c.features).to_lowercase(),
                        if e.1.abs() < 5e-3 { 0.0 } else { e.1 }
                    ),
                    pts.clone(),
                    Some(c.points.iter().map(|p| p.loss_se).collect()),
                )
                .in_colour(colour),
            );
            fig = fig.with(
                if k == 0 {
                    Series::dashed("", pts)
                } else {
                    Series::line("", pts)
                }
                .in_colour(colour),
            );
        }
    }
    fig =
        fig.with(Series::dotted("N = M", vec![(sc.m as f64, lo), (sc.m as f64, hi)]).in_colour(5));
    fig.save_svg(&out.path("nonlinear.svg"))?;
    Ok(vec!["nonlinear.svg".into()])
}
