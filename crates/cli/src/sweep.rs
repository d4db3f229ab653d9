//! Sweep files and plans: a TOML file names one `dlt` subcommand, fixed flags, a grid of flag
//! values, seeds and (for `theory mc`) a number of shards; [`plan`] expands it into numbered
//! jobs, each a full command line with its own `--out`, in a deterministic order, and writes
//! the manifest `sweep.json` that `dlt sweep run|submit|status|collect` read.
//!
//! ```toml
//! command = "scaling simulate"   # the words after `dlt`
//! seeds = [0, 1]                 # one job per seed (--seed), optional
//! shards = 4                     # theory mc only: every point as k shards (--shard i/k)
//! [fixed]                        # flags of every job; true → a bare flag, false → left out
//! alpha = 1.0
//! m = 400
//! [grid]                         # one job per combination, keys in sorted order
//! n = [16, 32, 64]
//! p = [64, 256]
//! ```

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// The manifest of a planned sweep (`DIR/sweep.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The subcommand words (e.g. `["scaling", "simulate"]`).
    pub command: Vec<String>,
    /// Number of shards per point (1: unsharded).
    pub shards: usize,
    /// The jobs, `jobs[i].id == i`.
    pub jobs: Vec<Job>,
}

/// One job of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its number (the Slurm array index).
    pub id: usize,
    /// Its output folder, relative to the sweep folder (`jobs/0007`).
    pub dir: String,
    /// Its grid values and seed: what distinguishes it from the other points.
    pub point: Map<String, Value>,
    /// Which shard of its point (`[i, k]`), for sharded `theory mc`.
    pub shard: Option<[usize; 2]>,
    /// The arguments after `dlt`, run in the sweep folder (so `--out` is relative).
    pub args: Vec<String>,
}

/// Name of the manifest in a sweep folder.
pub const MANIFEST: &str = "sweep.json";

/// Flags a sweep sets itself and a sweep file may not.
const RESERVED: [&str; 5] = ["out", "seed", "shard", "json", "help"];

/// A flag value from the file as a command-line word; None for `false` (flag left out).
fn word(key: &str, v: &toml::Value) -> Result<Option<String>> {
    Ok(Some(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(true) => return Ok(Some(String::new())),
        toml::Value::Boolean(false) => return Ok(None),
        other => bail!(
            "{key}: a flag value must be a string, number or boolean, got {} ({}); write e.g. {key} = 64",
            other.type_str(),
            show(other)
        ),
    }))
}

/// The long flags (without `--`) of the subcommand `words` in the command tree `root`.
fn flags_of(root: &clap::Command, words: &[String]) -> Result<Vec<String>> {
    let mut cmd = root;
    for (i, w) in words.iter().enumerate() {
        cmd = cmd.find_subcommand(w).with_context(|| {
            let have: Vec<_> = cmd
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
            format!(
                "command: `dlt {}` has no subcommand '{w}'; choose one of: {}",
                words[..i].join(" "),
                have.join(", ")
            )
        })?;
    }
    anyhow::ensure!(
        cmd.get_subcommands().next().is_none(),
        "command: `dlt {}` needs a subcommand: {}",
        words.join(" "),
        cmd.get_subcommands()
            .map(|c| c.get_name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .collect())
}

/// Check a flag name from the file against the command's flags.
fn check_flag(section: &str, key: &str, flags: &[String], cmd: &str) -> Result<()> {
    anyhow::ensure!(
        !RESERVED.contains(&key),
        "{section}.{key}: --{key} is set by the sweep itself (seeds → --seed, shards → --shard, each job's own --out); remove it"
    );
    if !flags.iter().any(|f| f == key) {
        let dashed = key.replace('_', "-");
        let hint = if flags.contains(&dashed) {
            format!("write it as {dashed}")
        } else {
            let mut f: Vec<_> = flags
                .iter()
                .filter(|f| !RESERVED.contains(&f.as_str()))
                .cloned()
                .collect();
            f.sort();
            format!("its flags are: {}", f.join(", "))
        };
        bail!("{section}.{key}: `dlt {cmd}` has no flag --{key}; {hint}");
    }
    Ok(())
}

/// Parse and check a sweep file against the command tree `root`, and expand it into jobs.
pub fn plan(text: &str, source: &str, root: &clap::Command) -> Result<Manifest> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow::anyhow!("{source}: not valid TOML: {}", e.message())
    })?;
    for key in doc.keys() {
        anyhow::ensure!(
            ["command", "seeds", "shards", "fixed", "grid"].contains(&key.as_str()),
            "{key}: unknown key in {source}; a sweep file has command, seeds, shards, [fixed] and [grid]"
        );
    }
    let command: Vec<String> = match doc.get("command") {
        Some(toml::Value::String(s)) => s.split_whitespace().map(String::from).collect(),
        _ => bail!("command: missing or not a string; write e.g. command = \"scaling simulate\""),
    };
    anyhow::ensure!(
        !command.is_empty() && command[0] != "sweep",
        "command: name a dlt subcommand that writes results, e.g. \"theory mc\""
    );
    let cmd = command.join(" ");
    let flags = flags_of(root, &command)?;
    anyhow::ensure!(
        flags.iter().any(|f| f == "out"),
        "command: `dlt {cmd}` has no --out, so its jobs would write no results.json; choose a subcommand with --out"
    );
    let seeds: Vec<Option<u64>> = match doc.get("seeds") {
        None => vec![None],
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            anyhow::ensure!(
                flags.iter().any(|f| f == "seed"),
                "seeds: `dlt {cmd}` has no --seed; remove seeds"
            );
            let mut v = Vec::new();
            for s in a {
                match s {
                    toml::Value::Integer(i) if *i >= 0 => v.push(Some(*i as u64)),
                    _ => bail!(
                        "seeds: every seed must be a whole number ≥ 0, got {}",
                        show(s)
                    ),
                }
            }
            v
        }
        Some(other) => bail!(
            "seeds: must be a non-empty list like [0, 1, 2], got {}",
            show(other)
        ),
    };
    let shards = match doc.get("shards") {
        None => 1,
        Some(toml::Value::Integer(k)) if *k >= 1 => {
            anyhow::ensure!(
                flags.iter().any(|f| f == "shard"),
                "shards: `dlt {cmd}` cannot be sharded (only `theory mc` can); remove shards"
            );
            *k as usize
        }
        Some(other) => bail!(
            "shards: must be a whole number ≥ 1 (e.g. shards = 4), got {}",
            show(other)
        ),
    };
    let table = |name: &str| -> Result<toml::Table> {
        match doc.get(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t.clone()),
            Some(other) => bail!(
                "{name}: must be a table ([{name}] with key = value lines), got {}",
                show(other)
            ),
        }
    };
    let (fixed, grid) = (table("fixed")?, table("grid")?);
    let mut fixed_args = Vec::new();
    for (k, v) in &fixed {
        check_flag("fixed", k, &flags, &cmd)?;
        anyhow::ensure!(
            !grid.contains_key(k),
            "fixed.{k}: also in [grid]; keep it in one of the two"
        );
        if let Some(w) = word(&format!("fixed.{k}"), v)? {
            fixed_args.push(format!("--{k}"));
            if !w.is_empty() {
                fixed_args.push(w);
            }
        }
    }
    // Grid axes in key order (toml::Table is sorted), the cartesian product with the last key
    // varying fastest, then seeds, then shards.
    let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
    for (k, v) in &grid {
        check_flag("grid", k, &flags, &cmd)?;
        match v {
            toml::Value::Array(a) if !a.is_empty() => {
                for x in a {
                    word(&format!("grid.{k}"), x)?;
                }
                axes.push((k.clone(), a.clone()));
            }
            _ => bail!("grid.{k}: must be a non-empty list of values, e.g. {k} = [16, 32]"),
        }
    }
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![vec![]];
    for (k, values) in &axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((k.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    let mut jobs = Vec::new();
    for p in &points {
        for seed in &seeds {
            for i in 0..shards {
                let id = jobs.len();
                let dir = format!("jobs/{id:04}");
                let mut args = command.clone();
                args.extend(fixed_args.iter().cloned());
                let mut point = Map::new();
                for (k, v) in p {
                    if let Some(w) = word(k, v)? {
                        args.push(format!("--{k}"));
                        if !w.is_empty() {
                            args.push(w);
                        }
                    }
                    point.insert(k.clone(), toml_to_json(v));
                }
                if let Some(s) = seed {
                    args.extend(["--seed".into(), s.to_string()]);
                    point.insert("seed".into(), Value::from(*s));
                }
                let shard = (shards > 1).then_some([i, shards]);
                if shards > 1 {
                    args.extend(["--shard".into(), format!("{i}/{shards}")]);
                }
                args.extend(["--out".into(), dir.clone()]);
                jobs.push(Job {
                    id,
                    dir,
                    point,
                    shard,
                    args,
                });
            }
        }
    }
    Ok(Manifest {
        command,
        shards,
        jobs,
    })
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}

/// A value from the file as JSON text, for messages.
fn show(v: &toml::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Read the manifest of the sweep folder `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: cannot read the sweep manifest; plan the sweep first with `dlt sweep plan FILE --out {}`",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{}: damaged manifest", path.display()))
}

/// Write the manifest into `dir`; a folder that already holds a different sweep is refused
/// (planning the same file again is a no-op, so a planned sweep keeps its finished jobs).
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<bool> {
    if dir.join(MANIFEST).exists() {
        let old = read_manifest(dir)?;
        anyhow::ensure!(
            &old == m,
            "--out {}: holds another sweep (its sweep.json differs); plan into a new folder or delete this one",
            dir.display()
        );
        return Ok(false);
    }
    let out = dlt_studies::output::OutDir::create(dir)?;
    out.write_json(MANIFEST, m)?;
    Ok(true)
}
