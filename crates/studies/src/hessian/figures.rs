//! Figures and CSV tables of `hessian`.

use super::claims::random_baseline;
use super::{Ablation, Checkpoint, CnnRun, RunOut, RunResult, SubsetRun, ToyRun};
use crate::output::OutDir;
use crate::plot::{Figure, Heatmap, Series};
use crate::study::StudyError;
use dlt_theory::spectral::subspace_overlap;

/// `checkpoints.csv` (one row per run and checkpoint) and `overlaps.csv`.
pub(super) fn write_tables(out: &OutDir, outs: &[RunOut]) -> Result<(), StudyError> {
    // Tables.
    let mut rows = vec![];
    for o in outs {
        for c in &o.result.checkpoints {
            let mut r = vec![
                o.result.name.clone(),
                c.step.to_string(),
                format!("{}", c.loss),
                format!("{}", c.accuracy),
                format!("{}", c.ftop5),
                format!("{}", c.ftop10),
                format!("{}", c.ftop20),
                format!("{}", c.ftop10_minibatch),
                format!("{}", c.max_residual),
            ];
            r.extend((0..12).map(|i| {
                c.eigenvalues
                    .get(i)
                    .map_or(String::new(), |v| v.to_string())
            }));
            rows.push(r);
        }
    }
    let mut header = vec![
        "run",
        "step",
        "loss",
        "accuracy",
        "ftop5",
        "ftop10",
        "ftop20",
        "ftop10_minibatch",
        "max_residual",
    ];
    let lam: Vec<String> = (1..=12).map(|i| format!("lambda{i}")).collect();
    header.extend(lam.iter().map(|s| s.as_str()));
    out.write_csv("checkpoints.csv", &header, &rows)?;
    let ov_rows: Vec<Vec<String>> = outs
        .iter()
        .flat_map(|o| {
            o.result.overlaps.iter().map(move |v| {
                vec![
                    o.result.name.clone(),
                    v.from.to_string(),
                    v.to.to_string(),
                    v.overlap.to_string(),
                ]
            })
        })
        .collect();
    out.write_csv("overlaps.csv", &["run", "from", "to", "overlap"], &ov_rows)?;
    Ok(())
}

/// f_top against steps, per optimiser, the top eigenvalues, the subspace overlaps and the
/// ablation; the file names.
pub(super) fn figures(
    out: &OutDir,
    outs: &[RunOut],
    abl: Option<&Ablation>,
    p: usize,
) -> Result<Vec<String>, StudyError> {
    // Figures.
    let mut figures = vec![];
    let first = &outs[0].result;
    let series = |f: fn(&Checkpoint) -> f64, r: &RunResult| -> Vec<(f64, f64)> {
        r.checkpoints
            .iter()
            .filter(|c| c.step > 0)
            .map(|c| (c.step as f64, f(c)))
            .collect()
    };
    let steps_axis: Vec<(f64, f64)> = first
        .checkpoints
        .iter()
        .filter(|c| c.step > 0)
        .map(|c| (c.step as f64, random_baseline(p)))
        .collect();
    let mut fig = Figure::new(
        format!("gradient in the top-k Hessian subspace ({})", first.name),
        "step",
        "f_top = |P_top g|² / |g|²",
    )
    .with(Series::line("k = 5", series(|c| c.ftop5, first)))
    .with(Series::line(
        "k = 10 (= classes)",
        series(|c| c.ftop10, first),
    ))
    .with(Series::line("k = 20", series(|c| c.ftop20, first)))
    .with(Series::points(
        "k = 10, mini-batch gradient",
        series(|c| c.ftop10_minibatch, first),
        None,
    ))
    .with(Series::dashed(
        "random 10-dim subspace (k/P)",
        steps_axis.clone(),
    ));
    fig.log_x = true;
    fig.save_svg(&out.path("ftop.svg"))?;
    figures.push("ftop.svg".to_string());
    let mut fig = Figure::new(
        "f_top (k = 10) by optimiser",
        "step",
        "f_top (k = 10, full gradient on the Hessian subset)",
    );
    for o in outs {
        fig = fig.with(Series::line(
            o.result.name.clone(),
            series(|c| c.ftop10, &o.result),
        ));
    }
    fig = fig.with(Series::dashed("k/P", steps_axis));
    fig.log_x = true;
    fig.save_svg(&out.path("ftop_optimisers.svg"))?;
    figures.push("ftop_optimisers.svg".to_string());
    let mut fig = Figure::new(
        format!("top Hessian eigenvalues ({})", first.name),
        "step",
        "λ_i",
    );
    for i in 0..12 {
        let pts: Vec<(f64, f64)> = first
            .checkpoints
            .iter()
            .filter(|c| c.step > 0 && c.eigenvalues.len() > i && c.eigenvalues[i] > 0.0)
            .map(|c| (c.step as f64, c.eigenvalues[i]))
            .collect();
        fig = fig.with(if i < 10 {
            Series::line(format!("λ{}", i + 1), pts)
        } else {
            Series::dashed(format!("λ{}", i + 1), pts)
        });
    }
    fig.log_x = true;
    fig.log_y = true;
    fig.save_svg(&out.path("eigenvalues.svg"))?;
    figures.push("eigenvalues.svg".to_string());
    let subs: Vec<&(usize, Vec<Vec<f64>>)> =
        outs[0].subspaces.iter().filter(|s| s.0 >= 100).collect();
    let ts: Vec<f64> = subs.iter().map(|s| s.0 as f64).collect();
    let hm = Heatmap {
        title: format!(
            "top-10 subspace overlap (1/k)|V(t₁)ᵀV(t₂)|² ({})",
            first.name
        ),
        x_label: "t₁ (step)".into(),
        y_label: "t₂ (step)".into(),
        xs: ts.clone(),
        ys: ts,
        z: subs
            .iter()
            .map(|b| subs.iter().map(|a| subspace_overlap(&a.1, &b.1)).collect())
            .collect(),
        log_z: false,
        diagonal: false,
    };
    hm.save_svg(&out.path("overlap.svg"))?;
    figures.push("overlap.svg".to_string());
    if let Some(a) = &abl {
        let col = |f: fn(&(usize, f64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
            a.rows.iter().map(|r| (r.0 as f64, f(r))).collect()
        };
        Figure::new(
            format!(
                "from step {}: which part of the gradient trains?",
                a.start_step
            ),
            "steps after the start",
            "loss on the Hessian subset",
        )
        .with(Series::line("SGD", col(|r| r.1)))
        .with(Series::line("Dom-SGD (P_top g only)", col(|r| r.2)))
        .with(Series::line("Bulk-SGD ((I − P_top) g only)", col(|r| r.3)))
        .save_svg(&out.path("dom_bulk.svg"))?;
        figures.push("dom_bulk.svg".to_string());
        out.write_csv(
            "ablation.csv",
            &["step", "sgd", "dom_sgd", "bulk_sgd"],
            &a.rows
                .iter()
                .map(|r| {
                    vec![
                        r.0.to_string(),
                        r.1.to_string(),
                        r.2.to_string(),
                        r.3.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        )?;
    }
    Ok(figures)
}

/// The class-subset figures, for the first seed of each class count: the top Hessian
/// eigenvalues against their index (log y) and f_top(k) against k (error bars: the standard
/// error over checkpoints), with k = C and the knee marked; plus `subsets.csv`; the file names.
pub(super) fn subset_figures(out: &OutDir, runs: &[SubsetRun]) -> Result<Vec<String>, StudyError> {
    if runs.is_empty() {
        return Ok(vec![]);
    }
    let mut firsts: Vec<&SubsetRun> = vec![];
    for r in runs {
        if !firsts.iter().any(|f| f.classes == r.classes) {
            firsts.push(r);
        }
    }
    let mut spec = Figure::new(
        "top Hessian eigenvalues on the first C classes (median over late checkpoints ± SE)",
        "index k",
        "λ_k",
    );
    let mut ft = Figure::new(
        "f_top on the first C classes (median over late checkpoints ± SE)",
        "k",
        "f_top(k) = |P_k g|² / |g|²",
    );
    let lo = firsts
        .iter()
        .flat_map(|r| r.eigenvalues.iter().copied())
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let hi = firsts
        .iter()
        .flat_map(|r| r.eigenvalues.iter().copied())
        .fold(0.0f64, f64::max);
    for (i, r) in firsts.iter().enumerate() {
        let c = r.classes;
        let keep: Vec<usize> = (0..r.eigenvalues.len())
            .filter(|&k| r.eigenvalues[k] > 0.0)
            .collect();
        let lam: Vec<(f64, f64)> = keep
            .iter()
            .map(|&k| ((k + 1) as f64, r.eigenvalues[k]))
            .collect();
        let lam_se: Vec<f64> = keep.iter().map(|&k| r.eigenvalues_se[k]).collect();
        spec = spec
            .with(Series::points(format!("C = {c}"), lam, Some(lam_se)).in_colour(i))
            .with(
                Series::dashed(
                    format!("edge C | C + 1, C = {c}"),
                    vec![(c as f64 + 0.5, lo), (c as f64 + 0.5, hi)],
                )
                .in_colour(i),
            );
        let f: Vec<(f64, f64)> = r
            .ftop
            .iter()
            .enumerate()
            .map(|(k, v)| ((k + 1) as f64, *v))
            .collect();
        let kn = r.knee;
        ft = ft
            .with(Series::points(format!("C = {c}"), f, Some(r.ftop_se.clone())).in_colour(i))
            .with(
                Series::dashed(
                    format!("k = C = {c}"),
                    vec![(c as f64, 0.0), (c as f64, 1.0)],
                )
                .in_colour(i),
            )
            .with(
                Series::dotted(
                    format!("knee (0.9·f_top(20)) k = {kn}"),
                    vec![(kn, 0.0), (kn, 1.0)],
                )
                .in_colour(i),
            );
    }
    spec = spec.log_y();
    spec.save_svg(&out.path("subsets_spectrum.svg"))?;
    ft.save_svg(&out.path("subsets_ftop.svg"))?;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .flat_map(|r| {
            (0..r.eigenvalues.len()).map(move |k| {
                vec![
                    r.classes.to_string(),
                    r.seed.to_string(),
                    (k + 1).to_string(),
                    r.eigenvalues[k].to_string(),
                    r.ftop[k].to_string(),
                    r.ftop_se[k].to_string(),
                ]
            })
        })
        .collect();
    out.write_csv(
        "subsets.csv",
        &["classes", "seed", "k", "lambda_k", "ftop_k", "ftop_k_se"],
        &rows,
    )?;
    Ok(vec![
        "subsets_spectrum.svg".into(),
        "subsets_ftop.svg".into(),
    ])
}

/// The CNN's top eigenvalues and f_top(k) beside the MLP's on all 10 classes (the C = 10
/// class-subset run of the first seed, when there is one): `cnn_spectrum.svg`, `cnn_ftop.svg`.
pub(super) fn cnn_figures(
    out: &OutDir,
    cnn: &CnnRun,
    subsets: &[SubsetRun],
) -> Result<Vec<String>, StudyError> {
    let mut nets: Vec<(String, &SubsetRun)> =
        vec![(format!("CNN (P = {})", cnn.run.params), &cnn.run)];
    if let Some(m) = subsets.iter().find(|r| r.classes == 10) {
        nets.push((format!("MLP (P = {})", m.params), m));
    }
    let mut spec = Figure::new(
        "top Hessian eigenvalues, 10 classes: CNN beside MLP (median over late checkpoints ± SE)",
        "index k",
        "λ_k",
    );
    let mut ft = Figure::new(
        "f_top, 10 classes: CNN beside MLP (median over late checkpoints ± SE)",
        "k",
        "f_top(k) = |P_k g|² / |g|²",
    );
    let all = || nets.iter().flat_map(|(_, r)| r.eigenvalues.iter().copied());
    let lo = all().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let hi = all().fold(0.0f64, f64::max);
    for (i, (name, r)) in nets.iter().enumerate() {
        let keep: Vec<usize> = (0..r.eigenvalues.len())
            .filter(|&k| r.eigenvalues[k] > 0.0)
            .collect();
        let lam: Vec<(f64, f64)> = keep
            .iter()
            .map(|&k| ((k + 1) as f64, r.eigenvalues[k]))
            .collect();
        let se: Vec<f64> = keep.iter().map(|&k| r.eigenvalues_se[k]).collect();
        spec = spec.with(Series::points(name.clone(), lam, Some(se)).in_colour(i));
        let f: Vec<(f64, f64)> = r
            .ftop
            .iter()
            .enumerate()
            .map(|(k, v)| ((k + 1) as f64, *v))
            .collect();
        ft = ft.with(Series::points(name.clone(), f, Some(r.ftop_se.clone())).in_colour(i));
    }
    spec = spec
        .with(Series::dashed("edge k = 10 | 11", vec![(10.5, lo), (10.5, hi)]).in_colour(2))
        .log_y();
    ft = ft.with(Series::dashed("k = C = 10", vec![(10.0, 0.0), (10.0, 1.0)]).in_colour(2));
    spec.save_svg(&out.path("cnn_spectrum.svg"))?;
    ft.save_svg(&out.path("cnn_ftop.svg"))?;
    Ok(vec!["cnn_spectrum.svg".into(), "cnn_ftop.svg".into()])
}

/// The toy model (§3) beside its simulation: `toy_spectrum.svg` (the top eigenvalues over
/// λ_top at the last step, smallest σ, with the solved model's levels 1 and 1/(k(1 − (k−1)ε))
/// dashed) and `toy_top.svg` (λ₁ against the step with ε(1 − (k−1)ε) and the late-time 1/(ηt)),
/// and `toy.csv`.
pub(super) fn toy_figures(
    out: &OutDir,
    runs: &[ToyRun],
    lr: f64,
) -> Result<Vec<String>, StudyError> {
    let Some(s_min) = runs.iter().map(|r| r.sigma).reduce(f64::min) else {
        return Ok(vec![]);
    };
    let mut spec = Figure::new(
        format!("toy model: Hessian spectrum at the last step (σ = {s_min}), simulation vs solved model"),
        "index i",
        "λ_i / λ_top(theory)",
    );
    let mut top = Figure::new(
        format!("toy model: top eigenvalue during training (σ = {s_min})"),
        "GD step t",
        "λ₁",
    );
    // Largest k first, so that the smaller k's markers are drawn on top where levels coincide.
    let mut shown: Vec<(usize, &ToyRun)> = runs
        .iter()
        .filter(|r| r.sigma == s_min)
        .enumerate()
        .collect();
    shown.reverse();
    for (i, r) in shown {
        let k = r.classes;
        let Some(end) = r.checkpoints.last() else {
            continue;
        };
        let t = end.theory;
        let pts: Vec<(f64, f64)> = end
            .eigenvalues
            .iter()
            .enumerate()
            .filter(|(_, l)| **l > 0.0)
            .map(|(j, l)| ((j + 1) as f64, l / t.top))
            .collect();
        spec = spec
            .with(Series::points(format!("k = {k}, simulated"), pts, None).in_colour(i))
            .with(
                Series::dashed(
                    format!("k = {k}, solved model"),
                    if k >= 3 {
                        vec![
                            (1.0, 1.0),
                            (k as f64, 1.0),
                            (k as f64, t.middle / t.top),
                            ((k * (k - 1)) as f64, t.middle / t.top),
                        ]
                    } else {
                        vec![(1.0, 1.0), (2.0, 1.0)]
                    },
                )
                .in_colour(i),
            );
        let meas: Vec<(f64, f64)> = r
            .checkpoints
            .iter()
            .filter(|c| c.step > 0)
            .map(|c| (c.step as f64, c.eigenvalues[0]))
            .collect();
        // The solved model on a dense grid of steps (a smooth curve, not the checkpoints joined).
        let last = r.checkpoints.last().map_or(1, |c| c.step.max(1));
        let mut grid: Vec<usize> = (0..=120)
            .map(|j| (10f64.powf(f64::from(j) / 120.0 * (last as f64).log10())).round() as usize)
            .collect();
        grid.dedup();
        let theory: Vec<(f64, f64)> = dlt_theory::gmm_softmax::trajectory(k, lr, &grid)?
            .iter()
            .map(|p| (p.step as f64, p.top))
            .collect();
        top = top
            .with(Series::points(format!("k = {k}, simulated λ₁"), meas, None).in_colour(i))
            .with(Series::dashed(format!("k = {k}, ε(1 − (k−1)ε)"), theory).in_colour(i));
    }
    let steps: Vec<f64> = runs
        .first()
        .map(|r| {
            r.checkpoints
                .iter()
                .filter(|c| c.step > 0)
                .map(|c| c.step as f64)
                .collect()
        })
        .unwrap_or_default();
    if let (Some(&a), Some(&b)) = (steps.first(), steps.last()) {
        top = top.with(Series::dotted(
            format!("late times: 1/(ηt), η = {lr}"),
            vec![(a, 1.0 / (lr * a)), (b, 1.0 / (lr * b))],
        ));
    }
    spec.log_log().save_svg(&out.path("toy_spectrum.svg"))?;
    top.log_log().save_svg(&out.path("toy_top.svg"))?;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .flat_map(|r| {
            r.checkpoints.iter().flat_map(move |c| {
                c.eigenvalues.iter().enumerate().map(move |(j, l)| {
                    vec![
                        r.classes.to_string(),
                        r.sigma.to_string(),
                        c.step.to_string(),
                        c.loss.to_string(),
                        (j + 1).to_string(),
                        l.to_string(),
                        c.theory.top.to_string(),
                        c.theory.middle.to_string(),
                        c.ftop[1].to_string(),
                    ]
                })
            })
        })
        .collect();
    out.write_csv(
        "toy.csv",
        &[
            "classes",
            "sigma",
            "step",
            "loss",
            "i",
            "lambda_i",
            "theory_top",
            "theory_middle",
            "ftop_k",
        ],
        &rows,
    )?;
    Ok(vec!["toy_spectrum.svg".into(), "toy_top.svg".into()])
}
