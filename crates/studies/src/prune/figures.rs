//! Figures and CSV tables of `prune`.

use super::claims::geo_mean;
use super::{Measured, Scale};
use crate::output::OutDir;
use crate::plot::{Figure, Heatmap, Series};
use crate::study::StudyError;

/// `distances.csv` (every block), `perplexity.csv`, `healing.csv`.
pub(super) fn write_tables(out: &OutDir, m: &Measured) -> Result<(), StudyError> {
    let Measured {
        distances,
        pruning,
        healing,
        ..
    } = m;
    let l_tot = m.l_tot;
    // Tables.
    let mut rows = vec![];
    for n in 1..=l_tot {
        for l in 0..=l_tot - n {
            rows.push(vec![
                n.to_string(),
                l.to_string(),
                (l + n).to_string(),
                format!("{:.6}", distances.table[n - 1][l]),
                format!("{:.6}", distances.se[n - 1][l]),
            ]);
        }
    }
    out.write_csv(
        "distances.csv",
        &["n", "start", "end", "distance", "se"],
        &rows,
    )?;
    out.write_records("perplexity.csv", pruning)?;
    out.write_records("healing.csv", healing)?;
    Ok(())
}

/// The distance heat map, perplexity against blocks dropped, the n = 1 distances and the
/// healing curves; the file names.
pub(super) fn figures(out: &OutDir, sc: &Scale, m: &Measured) -> Result<Vec<String>, StudyError> {
    let Measured {
        base,
        distances,
        pruning,
        healing,
        heal_curves,
        ..
    } = m;
    let l_tot = m.l_tot;
    let model_path = m.model_path;
    // Figures.
    let mut figures = vec![];
    let hm = Heatmap {
        title: format!(
            "angular distance d(x^(l), x^(l+n)), {}",
            model_path
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        ),
        x_label: "l (first block dropped)".into(),
        y_label: "n (blocks dropped)".into(),
        xs: (0..l_tot).map(|l| l as f64).collect(),
        ys: (1..l_tot).map(|n| n as f64).collect(),
        z: (1..l_tot)
            .map(|n| {
                (0..l_tot)
                    .map(|l| distances.table[n - 1].get(l).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect(),
        log_z: false,
        diagonal: false,
    };
    hm.save_svg(&out.path("distances.svg"))?;
    figures.push("distances.svg".to_string());
    let mut fig = Figure::new(
        "perplexity on held-out text vs fraction of blocks dropped",
        "fraction of blocks dropped",
        "perplexity",
    );
    fig.log_y = true;
    fig = fig.with(Series::dashed(
        "unpruned",
        vec![
            (0.0, base.perplexity),
            (
                sc.drops.iter().max().copied().unwrap_or(1) as f64 / l_tot as f64,
                base.perplexity,
            ),
        ],
    ));
    for (k, rule) in [(1, "angular"), (2, "last"), (3, "random")] {
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for &n in &sc.drops {
            let v: Vec<f64> = pruning
                .iter()
                .filter(|r| r.rule == rule && r.n == n)
                .map(|r| r.perplexity)
                .collect();
            if !v.is_empty() {
                pts.push((n as f64 / l_tot as f64, geo_mean(&v)));
            }
        }
        let label = if rule == "random" {
            format!("random block (geometric mean of {})", sc.random_draws)
        } else {
            format!("{rule} rule")
        };
        // Markers on the measured models, joined by an unnamed line of the same colour.
        fig = fig
            .with(Series::points(label, pts.clone(), None).in_colour(k))
            .with(Series::line("", pts).in_colour(k));
    }
    for (k, rule) in [(4, "angular"), (5, "last")] {
        let pts: Vec<(f64, f64)> = healing
            .iter()
            .filter(|h| h.rule == rule)
            .map(|h| (h.n as f64 / l_tot as f64, h.after))
            .collect();
        if !pts.is_empty() {
            fig = fig.with(
                Series::points(format!("{rule} rule + LoRA healing"), pts, None).in_colour(k),
            );
        }
    }
    if let Some(c) = healing.iter().find(|h| h.rule == "control") {
        fig = fig.with(
            Series::dotted(
                "unpruned + the same healing (control)",
                vec![
                    (0.0, c.after),
                    (
                        sc.drops.iter().max().copied().unwrap_or(1) as f64 / l_tot as f64,
                        c.after,
                    ),
                ],
            )
            .in_colour(0),
        );
    }
    fig.save_svg(&out.path("perplexity.svg"))?;
    figures.push("perplexity.svg".to_string());
    let mut d1 = Figure::new(
        "distance between the input and output of one block (n = 1)",
        "block l",
        "angular distance d(x^(l), x^(l+1))",
    );
    d1 = d1.with(Series::points(
        "mean over probe sequences ± SE",
        distances.table[0]
            .iter()
            .enumerate()
            .map(|(l, &d)| (l as f64, d))
            .collect(),
        Some(distances.se[0].clone()),
    ));
    d1.save_svg(&out.path("distance_n1.svg"))?;
    figures.push("distance_n1.svg".to_string());
    if !heal_curves.is_empty() {
        let mut hf = Figure::new(
            "LoRA healing: training loss",
            "step",
            "cross-entropy (nats/token)",
        );
        for (name, losses) in heal_curves.iter() {
            hf = hf.with(Series::line(
                name.clone(),
                losses
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as f64 + 1.0, l))
                    .collect(),
            ));
        }
        hf.save_svg(&out.path("healing.svg"))?;
        figures.push("healing.svg".to_string());
    }
    Ok(figures)
}

/// Part 5's figure (the paper's Fig. 1 layout): one panel per task, accuracy against the
/// fraction of blocks dropped for each rule (± binomial SE), healed models as open markers,
/// chance dotted, and on the same axis the normalised loss NLL / ln V of the angular rule on
/// both texts (dashed); `accuracy.csv` and `loss.csv` beside it. None when part 5 was skipped.
pub(super) fn accuracy_figure(out: &OutDir, m: &Measured) -> Result<Option<String>, StudyError> {
    let acc = m.accuracy;
    if acc.rows.is_empty() {
        return Ok(None);
    }
    out.write_records("accuracy.csv", &acc.rows)?;
    out.write_records("loss.csv", &acc.loss)?;
    out.write_records("collapse.csv", &acc.collapse)?;
    let tasks = super::accuracy::task_names(&acc.rows);
    let max_f = acc.rows.iter().map(|r| r.fraction).fold(0.0, f64::max);
    let mut panels = Vec::new();
    for task in tasks {
        let rows: Vec<_> = acc.rows.iter().filter(|r| r.task == task).collect();
        let metric = rows.first().map_or("acc", |r| r.metric.as_str());
        let mut fig = Figure::new(
            format!("{task} ({metric}) and normalised loss"),
            "fraction of blocks dropped",
            "accuracy; NLL / ln V",
        );
        let base = rows.iter().find(|r| r.n == 0 && !r.healed);
        for (k, rule) in ["angular", "last", "random"].into_iter().enumerate() {
            let mut pts: Vec<(f64, f64, f64)> =
                base.map(|b| (0.0, b.accuracy, b.se)).into_iter().collect();
            let mut ns: Vec<usize> = rows
                .iter()
                .filter(|r| r.rule == rule && !r.healed)
                .map(|r| r.n)
                .collect();
            ns.dedup();
            for n in ns {
                let v: Vec<_> = rows
                    .iter()
                    .filter(|r| r.rule == rule && r.n == n && !r.healed)
                    .collect();
                let mean = v.iter().map(|r| r.accuracy).sum::<f64>() / v.len() as f64;
                // SE of the mean over draws, each draw's binomial SE (the draws' spread is
                // not in it).
                let se = (v.iter().map(|r| r.se * r.se).sum::<f64>()).sqrt() / v.len() as f64;
                pts.push((v[0].fraction, mean, se));
            }
            if pts.len() < 2 {
                continue;
            }
            let label = match rule {
                "random" => "random blocks (mean of draws) ± SE".to_string(),
                r => format!("{r} rule ± SE"),
            };
            fig = fig.with(
                Series::points(
                    label,
                    pts.iter().map(|p| (p.0, p.1)).collect(),
                    Some(pts.iter().map(|p| p.2).collect()),
                )
                .in_colour(k),
            );
            fig = fig.with(Series::line("", pts.iter().map(|p| (p.0, p.1)).collect()).in_colour(k));
        }
        for (k, rule) in [(0, "angular"), (1, "last"), (2, "control")] {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.rule == rule && r.healed)
                .map(|r| (r.fraction, r.accuracy))
                .collect();
            if !pts.is_empty() {
                let se = rows
                    .iter()
                    .filter(|r| r.rule == rule && r.healed)
                    .map(|r| r.se)
                    .collect();
                fig = fig.with(
                    Series::points(format!("{rule}, healed ± SE"), pts, Some(se)).in_colour(k + 4),
                );
            }
        }
        if let Some(b) = base {
            fig = fig.with(
                Series::dotted(
                    format!("chance ({:.2})", b.chance),
                    vec![(0.0, b.chance), (max_f, b.chance)],
                )
                .in_colour(7),
            );
        }
        for (k, text) in ["shakespeare", "boolq_passages"].into_iter().enumerate() {
            let mut pts: Vec<(f64, f64)> = acc
                .loss
                .iter()
                .filter(|l| l.text == text && !l.healed && (l.rule == "angular" || l.n == 0))
                .map(|l| (l.fraction, l.normalised))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if pts.len() > 1 {
                fig = fig.with(
                    Series::dashed(format!("NLL / ln V, {text} (angular)"), pts).in_colour(2 + k),
                );
            }
        }
        panels.push(fig);
    }
    let name = "accuracy.svg";
    crate::plot::save_panels_svg(&panels, panels.len().min(2), &out.path(name))?;
    Ok(Some(name.into()))
}
