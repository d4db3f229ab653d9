//! The output contract shared by every study: an output folder with `results.json` (written
//! last, atomically: its presence means the run completed), CSV tables and SVG figures, and the
//! `claims` list from which `dlt reproduce` builds its report.

use serde::Serialize;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors while writing outputs; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or folder could not be created or written.
    #[error("cannot write {path}: {source} (check that the --out folder is writable and the disk has room)")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A value could not be serialised (e.g. to JSON).
    #[error("cannot encode {path}: {msg}")]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The serialiser's message.
        msg: String,
    },
}

/// Compact number formatting for tables and criteria.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.3e}")
    }
}

/// An output folder.
#[derive(Debug, Clone)]
pub struct OutDir {
    /// The folder; every file name is relative to it.
    pub root: PathBuf,
}

impl OutDir {
    /// Create the folder (and its parents) if needed.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, OutputError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| OutputError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    /// The path of file `name` in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Write bytes to `name` via a temporary file and a rename, so that a reader never sees a
    /// half-written file.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, OutputError> {
        write_atomic(&self.path(name), bytes)
    }

    /// Write `value` as pretty-printed JSON to `name`, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf, OutputError> {
        let path = self.path(name);
        let mut text = serde_json::to_string_pretty(value).map_err(|e| OutputError::Encode {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        text.push('\n');
        write_atomic(&path, text.as_bytes())
    }

    /// Write a CSV table (header row + rows of numbers or strings).
    pub fn write_csv(
        &self,
        name: &str,
        header: &[&str],
        rows: &[Vec<String>],
    ) -> Result<PathBuf, OutputError> {
        let path = self.path(name);
        let enc = |e: csv::Error| OutputError::Encode {
            path: path.clone(),
            msg: e.to_string(),
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(header).map_err(enc)?;
        for r in rows {
            w.write_record(r).map_err(enc)?;
        }
        let bytes = w.into_inner().map_err(|e| OutputError::Encode {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }
}

impl OutDir {
    /// Write a CSV table with one row per record and the field names as the header (csv's serde
    /// support; None becomes an empty cell).
    pub fn write_records<T: Serialize>(
        &self,
        name: &str,
        records: &[T],
    ) -> Result<PathBuf, OutputError> {
        let path = self.path(name);
        let enc = |e: csv::Error| OutputError::Encode {
            path: path.clone(),
            msg: e.to_string(),
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in records {
            w.serialize(r).map_err(enc)?;
        }
        let bytes = w.into_inner().map_err(|e| OutputError::Encode {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }
}

/// Write `bytes` to `path` atomically (temporary sibling + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf, OutputError> {
    let io = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    Ok(path.to_path_buf())
}

/// Format a float for CSV (full precision, empty for None).
pub fn cell(v: impl Into<Option<f64>>) -> String {
    match v.into() {
        Some(x) => format!("{x}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("dlt-out-test-{}", std::process::id()));
        let out = OutDir::create(&dir).unwrap();
        out.write_json("results.json", &serde_json::json!({"a": 1}))
            .unwrap();
        out.write_csv("t.csv", &["x", "y"], &[vec![cell(1.5), cell(None)]])
            .unwrap();
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(
            fs::read_to_string(dir.join("t.csv")).unwrap(),
            "x,y\n1.5,\n"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
