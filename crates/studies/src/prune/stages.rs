//! Stage checkpoints of `prune`: a full run takes hours, so each heavy stage (the probe, the
//! pruning sweep, each text and task of the accuracy sweep, each healed model) writes its output
//! to `OUT/checkpoints/<stage>.json` as soon as it is done, with the per-token detail vectors
//! the claims' paired comparisons need (`dlt_llm::detail`) and the run's key. With `--resume`
//! a stage whose file carries the same key is read back instead of recomputed, so an
//! interrupted run continues where it stopped, and a finished one can be re-reported (tables,
//! figures, claims) without its hours of forward passes. A file with another key (other
//! sizes or seed, a model or text of other content, or another dlt version) or one that does not parse is
//! recomputed and overwritten, with a line saying why.
//!
//! The checkpoints stay after the run (tens of MB at full scale); `results.json` lists the
//! stages a run read back under `resumed`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::output::{write_atomic, OutputError};
use crate::study::StudyError;

/// The stage store of one run.
pub(super) struct Stages {
    dir: PathBuf,
    key: serde_json::Value,
    resume: bool,
    resumed: Vec<String>,
    seconds: Vec<StageTime>,
}

/// The wall time a stage took when it was computed (in this run, or in the run that wrote the
/// checkpoint it was read back from): the cost of a run done in pieces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTime {
    /// Stage name.
    pub stage: String,
    /// Wall-clock seconds of its computation; null for a checkpoint that did not record it.
    pub seconds: Option<f64>,
    /// Read back from a checkpoint rather than computed in this run.
    pub resumed: bool,
}

#[derive(Serialize)]
struct StoredRef<'a, T> {
    key: &'a serde_json::Value,
    seconds: f64,
    value: &'a T,
}

#[derive(Deserialize)]
struct Stored<T> {
    key: serde_json::Value,
    #[serde(default)]
    seconds: Option<f64>,
    value: T,
}

/// The content of a file (or of a directory's files) for the key: SHA-256 and size, so that a
/// replaced model or text gives another key even at the same path, and a re-fetched identical
/// one (a new cache, another path) the same key.
pub(super) fn file_stamp(path: &Path) -> serde_json::Value {
    let one = |p: &Path| -> serde_json::Value {
        match (std::fs::metadata(p), dlt_nn::data::fetch::sha256_file(p)) {
            (Ok(m), Ok(sha)) => serde_json::json!({ "bytes": m.len(), "sha256": sha }),
            _ => serde_json::json!({ "path": p.display().to_string() }),
        }
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        serde_json::Value::Array(
            files
                .iter()
                .map(|f| {
                    let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                    serde_json::json!({ "file": name, "content": one(f) })
                })
                .collect(),
        )
    } else {
        one(path)
    }
}

impl Stages {
    /// The store in `dir` for a run with `key` (everything its numbers depend on).
    pub(super) fn new(dir: PathBuf, key: serde_json::Value, resume: bool) -> Self {
        let key = serde_json::json!({ "dlt": env!("CARGO_PKG_VERSION"), "run": key });
        Stages {
            dir,
            key,
            resume,
            resumed: Vec::new(),
            seconds: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The output of stage `name`: read back from its checkpoint when resuming and the key
    /// matches, otherwise computed by `compute` and written.
    pub(super) fn run<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        compute: impl FnOnce() -> Result<T, StudyError>,
    ) -> Result<T, StudyError> {
        self.run_if(name, true, compute)
    }

    /// As [`Stages::run`]; with `reuse = false` the stage is always computed (a stage whose
    /// in-memory by-product, e.g. a healed model to export, is needed later).
    pub(super) fn run_if<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        reuse: bool,
        compute: impl FnOnce() -> Result<T, StudyError>,
    ) -> Result<T, StudyError> {
        let path = self.path(name);
        if self.resume && reuse {
            if let Some((v, seconds)) = self.load::<T>(name, &path) {
                self.resumed.push(name.to_string());
                self.seconds.push(StageTime {
                    stage: name.to_string(),
                    seconds,
                    resumed: true,
                });
                return Ok(v);
            }
        }
        let t0 = std::time::Instant::now();
        let value = compute()?;
        let seconds = t0.elapsed().as_secs_f64();
        self.seconds.push(StageTime {
            stage: name.to_string(),
            seconds: Some(seconds),
            resumed: false,
        });
        let bytes = dlt_llm::detail::with_detail(|| {
            serde_json::to_vec(&StoredRef {
                key: &self.key,
                seconds,
                value: &value,
            })
        })
        .map_err(|e| OutputError::Encode {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        write_atomic(&path, &bytes)?;
        Ok(value)
    }

    fn load<T: DeserializeOwned>(&self, name: &str, path: &Path) -> Option<(T, Option<f64>)> {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice::<Stored<T>>(&bytes) {
            Ok(s) if s.key == self.key => {
                eprintln!("prune: stage {name} read back from {}", path.display());
                Some((s.value, s.seconds))
            }
            Ok(_) => {
                eprintln!(
                    "prune: {} belongs to another configuration (sizes, seed, model, text or dlt \
                     version); stage {name} is recomputed",
                    path.display()
                );
                None
            }
            Err(e) => {
                eprintln!(
                    "prune: {} does not parse ({e}); stage {name} is recomputed",
                    path.display()
                );
                None
            }
        }
    }

    /// The stages read back from checkpoints, in the order the run asked for them.
    pub(super) fn resumed(&self) -> Vec<String> {
        self.resumed.clone()
    }

    /// Every stage's computation time, in the order the run asked for them.
    pub(super) fn seconds(&self) -> Vec<StageTime> {
        self.seconds.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Row {
        x: f64,
        #[serde(default, skip_serializing_if = "dlt_llm::detail::hidden")]
        tokens: Vec<f64>,
    }

    #[test]
    fn the_key_follows_file_content_not_path() {
        let dir = std::env::temp_dir().join(format!("dlt-stamp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let (a, b) = (dir.join("a.txt"), dir.join("sub").join("b.txt"));
        std::fs::write(&a, "the same text").unwrap();
        std::fs::write(&b, "the same text").unwrap();
        assert_eq!(file_stamp(&a), file_stamp(&b));
        std::fs::write(&b, "the same text!").unwrap();
        assert_ne!(file_stamp(&a), file_stamp(&b));
        // A directory (a Hugging Face model): its files' names and contents.
        let before = file_stamp(&dir.join("sub"));
        assert!(before.is_array());
        std::fs::write(&b, "other").unwrap();
        assert_ne!(file_stamp(&dir.join("sub")), before);
        // A missing file is keyed by its path (and then fails to load elsewhere).
        assert!(file_stamp(&dir.join("missing")).get("path").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stage_is_read_back_only_with_resume_and_its_own_key() {
        let dir = std::env::temp_dir().join(format!("dlt-stages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let row = || Row {
            x: 0.1 + 0.2,
            tokens: vec![1.0 / 3.0, f64::MIN_POSITIVE, 2.5e300],
        };
        let calls = Cell::new(0);
        let compute = || {
            calls.set(calls.get() + 1);
            Ok(row())
        };
        // Without --resume: computed and written, details included.
        let mut s = Stages::new(dir.clone(), serde_json::json!({"seed": 0}), false);
        assert_eq!(s.run("a", compute).unwrap(), row());
        assert_eq!(calls.get(), 1);
        assert!(std::fs::read_to_string(dir.join("a.json"))
            .unwrap()
            .contains("tokens"));
        // With --resume and the same key: read back bit for bit, not computed.
        let mut s = Stages::new(dir.clone(), serde_json::json!({"seed": 0}), true);
        assert_eq!(s.run("a", compute).unwrap(), row());
        assert_eq!(calls.get(), 1);
        // reuse = false computes anyway.
        assert_eq!(s.run_if("a", false, compute).unwrap(), row());
        assert_eq!(calls.get(), 2);
        assert_eq!(s.resumed(), vec!["a".to_string()]);
        // The stage's time is the one recorded when it was computed.
        let t = s.seconds();
        assert_eq!((t.len(), t[0].resumed, t[1].resumed), (2, true, false));
        assert!(t[0].seconds.is_some_and(|x| x >= 0.0));
        // Another key: recomputed and overwritten; then the new key reads it back.
        let mut s = Stages::new(dir.clone(), serde_json::json!({"seed": 1}), true);
        s.run("a", compute).unwrap();
        assert_eq!(calls.get(), 3);
        assert!(s.resumed().is_empty());
        let mut s = Stages::new(dir.clone(), serde_json::json!({"seed": 1}), true);
        s.run("a", compute).unwrap();
        assert_eq!(calls.get(), 3);
        // A truncated file: recomputed, not an error.
        let text = std::fs::read(dir.join("a.json")).unwrap();
        std::fs::write(dir.join("a.json"), &text[..text.len() / 2]).unwrap();
        let mut s = Stages::new(dir.clone(), serde_json::json!({"seed": 1}), true);
        assert_eq!(s.run("a", compute).unwrap(), row());
        assert_eq!(calls.get(), 4);
        assert!(s.resumed().is_empty());
        // A failing stage writes nothing.
        let mut s = Stages::new(dir.clone(), serde_json::json!({"seed": 1}), true);
        let r: Result<Row, _> = s.run("b", || {
            Err(dlt_llm::LlmError::Invalid {
                what: "test".into(),
                problem: "stopped".into(),
            }
            .into())
        });
        assert!(r.is_err());
        assert!(!dir.join("b.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
