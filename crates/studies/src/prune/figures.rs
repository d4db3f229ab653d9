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
    for rule in ["angular", "last", "random"] {
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
        fig = fig.with(Series::line(label, pts));
    }
    for rule in ["angular", "last"] {
        let pts: Vec<(f64, f64)> = healing
            .iter()
            .filter(|h| h.rule == rule)
            .map(|h| (h.n as f64 / l_tot as f64, h.after))
            .collect();
        if !pts.is_empty() {
            fig = fig.with(Series::points(
                format!("{rule} rule + LoRA healing"),
                pts,
                None,
            ));
        }
    }
    if let Some(c) = healing.iter().find(|h| h.rule == "control") {
        fig = fig.with(Series::dashed(
            "unpruned + the same healing (control)",
            vec![
                (0.0, c.after),
                (
                    sc.drops.iter().max().copied().unwrap_or(1) as f64 / l_tot as f64,
                    c.after,
                ),
            ],
        ));
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
