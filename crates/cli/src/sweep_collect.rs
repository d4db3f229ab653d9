//! `dlt sweep collect DIR`: one table from every job's `results.json` (`DIR/collected.csv`,
//! `DIR/collected.json`), with the shards of each `theory mc` point merged exactly
//! ([`crate::mc_shard`]), and the standard figure of the subcommand (`DIR/collected.svg`):
//! loss against N, one curve per P, for `scaling simulate`; V/K² against the layer, one curve
//! per point, for `theory mc`. Wall times (`seconds`) are left out, so the table of a sweep is
//! the same wherever and in whatever order its jobs ran.

use crate::mc_shard::{merge_shards, ShardFile};
use crate::sweep::{read_manifest, Job};
use anyhow::{Context, Result};
use dlt_studies::output::OutDir;
use dlt_studies::plot::{Figure, Series};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One row of the collected table: column → value.
type Row = Map<String, Value>;
/// A curve of the figure: its label, (x, y, SE) points and (x, theory) points.
type Curve = (String, Vec<(f64, f64, f64)>, Vec<(f64, f64)>);

/// The index of the curve called `name`, appended empty if there is none yet.
fn curve_index(curves: &mut Vec<Curve>, name: String) -> usize {
    match curves.iter().position(|c| c.0 == name) {
        Some(i) => i,
        None => {
            curves.push((name, vec![], vec![]));
            curves.len() - 1
        }
    }
}

/// Top-level scalars of a results.json (nested objects flattened to `a.b`; lists left out).
fn scalars(prefix: &str, v: &Value, row: &mut Map<String, Value>) {
    if let Value::Object(o) = v {
        for (k, x) in o {
            if k == "seconds" || k.ends_with("_seconds") {
                continue;
            }
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match x {
                Value::Object(_) => scalars(&key, x, row),
                Value::Array(_) => {}
                _ => {
                    row.entry(key).or_insert_with(|| x.clone());
                }
            }
        }
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// Rows of a `theory mc` result (merged or unsharded): one per layer.
fn mc_rows(point: &Map<String, Value>, v: &Value, rows: &mut Vec<Map<String, Value>>) {
    for layer in v["layers"].as_array().into_iter().flatten() {
        let mut row = point.clone();
        scalars("", layer, &mut row);
        rows.push(row);
    }
}

/// The rows of the sweep in `root` (jobs in manifest order; shards of one point merged).
pub fn rows(root: &Path) -> Result<(Vec<String>, Vec<Row>)> {
    let m = read_manifest(root)?;
    let missing: Vec<String> = m
        .jobs
        .iter()
        .filter(|j| !root.join(&j.dir).join("results.json").exists())
        .map(|j| j.id.to_string())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "job(s) {} have no results.json yet; finish them (`dlt sweep run {dir}` or `dlt sweep status {dir}`) and collect again",
        missing.join(", "),
        dir = root.display()
    );
    let mc = m.command == ["theory", "mc"];
    let mut rows = Vec::new();
    // Jobs of one point are consecutive (shards vary fastest).
    for group in m.jobs.chunks(m.shards.max(1)) {
        let point = group[0].point.clone();
        if m.shards > 1 {
            let dirs: Vec<PathBuf> = group.iter().map(|j| root.join(&j.dir)).collect();
            let shards = dirs
                .iter()
                .map(|d| ShardFile::read(d).map(|s| (d, s)))
                .collect::<Result<Vec<_>>>()?;
            let (cfg, secs, res) = merge_shards(&shards, 0)
                .with_context(|| format!("jobs {}–{}", group[0].id, group[group.len() - 1].id))?;
            let v = dlt_studies::theory::runs::mc_results(&cfg, secs, &res, &cfg.theory()?);
            mc_rows(&point, &v, &mut rows);
        } else {
            for j in group {
                let v = read_json(&root.join(&j.dir).join("results.json"))?;
                if mc {
                    mc_rows(&point, &v, &mut rows);
                } else {
                    let mut row = point.clone();
                    scalars("", &v, &mut row);
                    rows.push(row);
                }
            }
        }
    }
    let mut cols: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    // The point's keys first, in the order of the first job, then the layer (theory mc).
    let mut first: Vec<String> = m
        .jobs
        .first()
        .map_or(vec![], |j: &Job| j.point.keys().cloned().collect());
    first.push("l".into());
    cols.sort_by_key(|c| first.iter().position(|f| f == c).unwrap_or(usize::MAX));
    Ok((cols, rows))
}

/// Write `collected.csv`, `collected.json` and (for scaling simulate and theory mc)
/// `collected.svg` into `root`; returns the number of rows and the files written.
pub fn collect(root: &Path) -> Result<(usize, Vec<PathBuf>)> {
    let (cols, rows) = rows(root)?;
    let dir = OutDir::create(root)?;
    let cell = |v: Option<&Value>| match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| cell(r.get(c))).collect())
        .collect();
    let mut files = vec![
        dir.write_csv(
            "collected.csv",
            &cols.iter().map(String::as_str).collect::<Vec<_>>(),
            &table,
        )?,
        dir.write_json("collected.json", &rows)?,
    ];
    let m = read_manifest(root)?;
    let grid: Vec<String> = m
        .jobs
        .first()
        .map_or(vec![], |j| j.point.keys().cloned().collect());
    if let Some(fig) = figure(&m.command, &rows, &grid) {
        files.push(fig.save_svg(&dir.path("collected.svg"))?);
    }
    Ok((rows.len(), files))
}

fn num(r: &Map<String, Value>, k: &str) -> Option<f64> {
    r.get(k).and_then(Value::as_f64)
}

/// Label of a row's point without `skip` (e.g. "P = 64, seed = 0").
fn label(r: &Map<String, Value>, keys: &[String], skip: &str) -> String {
    keys.iter()
        .filter(|k| *k != skip)
        .filter_map(|k| {
            r.get(k)
                .map(|v| format!("{k} = {}", v.to_string().trim_matches('"')))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The standard figure of a sweep: loss(N) per P (scaling simulate, mean over seeds with the
/// simulation's SE, beside the deterministic-equivalent theory when present), V/K² per layer
/// per point (theory mc, with batch-means SE).
/// Curves are labelled by the grid keys (`grid`) other than the x axis and the seed.
fn figure(command: &[String], rows: &[Row], grid: &[String]) -> Option<Figure> {
    let grid: Vec<String> = grid.iter().filter(|k| *k != "seed").cloned().collect();
    if command == ["scaling", "simulate"] {
        // Curves over n, one per value of p (and the other point keys but the seed).
        let mut curves: Vec<Curve> = Vec::new();
        for r in rows {
            let (Some(n), Some(loss)) = (num(r, "n"), num(r, "loss")) else {
                continue;
            };
            let name = label(r, &grid, "n");
            let i = curve_index(&mut curves, name);
            curves[i]
                .1
                .push((n, loss, num(r, "loss_se").unwrap_or(0.0)));
            if let Some(t) = num(r, "theory") {
                curves[i].2.push((n, t));
            }
        }
        let mut fig =
            Figure::new("Sweep: test loss against N", "features N", "test loss").log_log();
        for (k, (name, pts, th)) in curves.into_iter().enumerate() {
            // mean over seeds at each n
            let mut ns: Vec<f64> = pts.iter().map(|p| p.0).collect();
            ns.sort_by(f64::total_cmp);
            ns.dedup();
            let avg: Vec<(f64, f64, f64)> = ns
                .iter()
                .map(|&n| {
                    let at: Vec<_> = pts.iter().filter(|p| p.0 == n).collect();
                    let c = at.len() as f64;
                    let mean = at.iter().map(|p| p.1).sum::<f64>() / c;
                    let se = (at.iter().map(|p| p.2 * p.2).sum::<f64>()).sqrt() / c;
                    (n, mean, se)
                })
                .collect();
            fig = fig.with(
                Series::points(
                    format!("simulation {name}"),
                    avg.iter().map(|p| (p.0, p.1)).collect(),
                    Some(avg.iter().map(|p| p.2).collect()),
                )
                .in_colour(k),
            );
            if !th.is_empty() {
                let mut th = th;
                th.sort_by(|a, b| a.0.total_cmp(&b.0));
                th.dedup_by(|a, b| a.0 == b.0);
                fig = fig.with(Series::dashed(format!("theory {name}"), th).in_colour(k));
            }
        }
        return Some(fig);
    }
    if command == ["theory", "mc"] {
        let mut fig = Figure::new("Sweep: four-point vertex V/K² by layer", "layer l", "V/K²");
        let mut curves: Vec<Curve> = Vec::new();
        for r in rows {
            let (Some(l), Some(v)) = (num(r, "l"), num(r, "V_over_K2")) else {
                continue;
            };
            let name = label(r, &grid, "l");
            let i = curve_index(&mut curves, name);
            curves[i]
                .1
                .push((l, v, num(r, "V_over_K2_se").unwrap_or(0.0)));
        }
        for (k, (name, pts, _)) in curves.into_iter().enumerate() {
            let se = pts.iter().map(|p| p.2).collect();
            let pts = pts.iter().map(|p| (p.0, p.1)).collect();
            fig = fig.with(Series::points(name, pts, Some(se)).in_colour(k));
        }
        return Some(fig);
    }
    None
}
