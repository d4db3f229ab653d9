//! Sharded `dlt theory mc`: what a shard writes (its configuration and the sufficient
//! statistics of its batches) and the exact merge of all shards of one configuration
//! (`dlt theory mc-merge`, `dlt sweep collect`). The merged estimates and batch-means standard
//! errors equal the unsharded run's bit for bit ([`dlt_theory::mc::Shard`]; the sums travel
//! through JSON exactly, serde_json's `float_roundtrip`).

use anyhow::{Context, Result};
use dlt_theory::activation::parse;
use dlt_theory::mc::{self, BatchSums, McConfig, McLayer, Shard};
use dlt_theory::profile::{Ensemble, Init, LearningRates};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `kind` of a shard's `results.json`.
pub const SHARD_KIND: &str = "theory-mc-shard";

/// Everything that determines the networks a Monte Carlo run draws and how its estimates are
/// formed (not the thread count, which changes nothing). Shards merge only when these agree
/// exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McSpec {
    /// Activation as given to --activation.
    pub activation: String,
    pub cb: f64,
    pub cw: f64,
    pub k1: f64,
    pub width: usize,
    pub depth: usize,
    pub networks: usize,
    pub init: Init,
    pub first_layer: Init,
    pub ntk: bool,
    pub lambda_b: f64,
    pub lambda_w: f64,
    pub lambda_b_over_l: bool,
    pub seed: u64,
    pub batches: usize,
}

impl McSpec {
    /// The run configuration (with `threads` workers).
    pub fn config(&self, threads: usize) -> Result<McConfig> {
        Ok(McConfig {
            ensemble: Ensemble::new(parse(&self.activation)?, self.cb, self.cw)
                .with_init(self.init),
            k1: self.k1,
            width: self.width,
            depth: self.depth,
            networks: self.networks,
            ntk: self.ntk,
            lr: LearningRates {
                lambda_b: self.lambda_b,
                lambda_w: self.lambda_w,
                b_over_l: self.lambda_b_over_l,
            },
            first_layer: self.first_layer,
            seed: self.seed,
            batches: self.batches,
            threads,
        })
    }
}

/// A shard's `results.json`: `kind` = [`SHARD_KIND`], the configuration, which shard, its
/// wall time and the per-batch sums ([`BatchSums`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardFile {
    pub kind: String,
    pub config: McSpec,
    pub shard: Shard,
    pub seconds: f64,
    pub batches: Vec<BatchSums>,
}

impl ShardFile {
    /// Read `path` (a shard's folder or its results.json).
    pub fn read(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("results.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "{}: cannot read the shard (has `dlt theory mc --shard i/k --out {}` finished?)",
                file.display(),
                path.display()
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", file.display()))?;
        anyhow::ensure!(
            v["kind"] == SHARD_KIND,
            "{}: not a Monte Carlo shard (kind {}, expected \"{SHARD_KIND}\"); give the --out folders of `dlt theory mc --shard i/k`",
            file.display(),
            v["kind"]
        );
        serde_json::from_value(v).with_context(|| format!("{}: damaged shard file", file.display()))
    }
}

/// Merge the shards (read from `paths`) of one configuration: every shard i of k exactly once,
/// all with the same configuration. Returns the configuration, the summed shard wall time and
/// the estimates.
pub fn merge_files(paths: &[PathBuf], threads: usize) -> Result<(McConfig, f64, Vec<McLayer>)> {
    anyhow::ensure!(
        !paths.is_empty(),
        "mc-merge: give the --out folders of the shards"
    );
    let shards = paths
        .iter()
        .map(|p| ShardFile::read(p).map(|s| (p, s)))
        .collect::<Result<Vec<_>>>()?;
    merge_shards(&shards, threads)
}

/// [`merge_files`] on shards already read (`(where it came from, shard)`).
pub fn merge_shards(
    shards: &[(&PathBuf, ShardFile)],
    threads: usize,
) -> Result<(McConfig, f64, Vec<McLayer>)> {
    let (p0, first) = &shards[0];
    let k = first.shard.count;
    let mut seen: Vec<Option<&PathBuf>> = vec![None; k];
    for (p, s) in shards {
        anyhow::ensure!(
            s.shard.index < s.shard.count,
            "{}: shard {}/{} is not a shard (need i < k); the file is damaged",
            p.display(),
            s.shard.index,
            s.shard.count
        );
        if s.config != first.config {
            let (a, b) = (
                serde_json::to_value(&first.config)?,
                serde_json::to_value(&s.config)?,
            );
            let diff: Vec<String> = a
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(key, v)| b.get(key.as_str()) != Some(*v))
                .map(|(key, v)| format!("{key} {v} vs {}", b[key.as_str()]))
                .collect();
            anyhow::bail!(
                "{} and {} are shards of different runs ({}); merge only the shards of one configuration",
                p0.display(),
                p.display(),
                diff.join(", ")
            );
        }
        anyhow::ensure!(
            s.shard.count == k,
            "{} is shard {}/{} but {} is shard {}/{k}; all shards must come from one split",
            p.display(),
            s.shard.index,
            s.shard.count,
            p0.display(),
            first.shard.index
        );
        let slot = &mut seen[s.shard.index];
        if let Some(other) = slot {
            anyhow::bail!(
                "shard {}/{k} is given twice ({} and {}); give every shard once",
                s.shard.index,
                other.display(),
                p.display()
            );
        }
        *slot = Some(p);
    }
    let missing: Vec<String> = (0..k)
        .filter(|&i| seen[i].is_none())
        .map(|i| format!("{i}/{k}"))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "shard(s) {} missing: run `dlt theory mc … --shard i/k` for them and merge again",
        missing.join(", ")
    );
    let cfg = first.config.config(threads)?;
    let sums: Vec<BatchSums> = shards
        .iter()
        .flat_map(|(_, s)| s.batches.iter().cloned())
        .collect();
    let seconds = shards.iter().map(|(_, s)| s.seconds).sum();
    let res = mc::merge(&cfg, &sums)?;
    Ok((cfg, seconds, res))
}
