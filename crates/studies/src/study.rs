//! The study interface and what the registry of `dlt reproduce` holds.
//!
//! A [`Study`] turns (scale, seed) into a serialisable configuration, runs it into an output
//! folder, and leaves a `results.json` whose `figures`, `claims` and `seconds` keys are what
//! the report shows (the output contract of [`crate::output`]). The [`registry`] lists every
//! study once (`crate::registry`); its `reproduce` runs the selected ones and reuses a study whose
//! `OUT/<study>/results.json` carries the same configuration hash, so an interrupted full run
//! resumes at the study level.

use crate::claim::Claim;
use crate::output::{OutDir, OutputError};
use crate::progress::Stage;
use crate::report::Section;
use dlt_theory::TheoryError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::marker::PhantomData;
use std::path::Path;
use std::time::Instant;

/// Errors of a study run; each wraps a library error that names its input and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// An error of the theory engine (`dlt-theory`).
    #[error(transparent)]
    Theory(#[from] TheoryError),
    /// Writing an output file failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// An error of the training substrate (`dlt-nn`).
    #[error(transparent)]
    Nn(#[from] dlt_nn::NnError),
    /// An error of the language-model crate (`dlt-llm`).
    #[error(transparent)]
    Llm(#[from] dlt_llm::LlmError),
}

/// One paper's study: configuration from (scale, seed), a run that writes `results.json`, CSV
/// and figures into its folder, and the text the report shows beside them.
pub trait Study {
    /// Folder and command name, e.g. `sgd-gap`.
    const NAME: &'static str;
    /// The paper's title.
    const TITLE: &'static str;
    /// Authors and arXiv id.
    const PAPER: &'static str;
    /// What the study measures against which prediction, in one short paragraph (the report
    /// prints it above the study's figures and claims).
    const ABOUT: &'static str;
    /// Everything that determines the numbers (hashed to decide whether a run can be reused).
    type Config: Serialize;
    /// Written as `results.json`; must serialise `figures`, `claims` and `seconds`.
    type Results: Serialize;
    /// The configuration at quick (laptop) or full scale. `quiet` hides progress output only.
    fn config(quick: bool, seed: u64, quiet: bool) -> Self::Config;
    /// Run the study into `out`; `results.json` is written last.
    fn run(cfg: &Self::Config, out: &OutDir) -> Result<Self::Results, StudyError>;
}

/// Options of one `reproduce` pass.
#[derive(Debug, Clone)]
pub struct Options {
    /// Quick (laptop-scale) configurations instead of the full ones.
    pub quick: bool,
    /// Base seed passed to every study's configuration.
    pub seed: u64,
    /// No progress output (under `--json`).
    pub quiet: bool,
    /// Rerun studies whose results could be reused.
    pub force: bool,
}

/// A study in the registry, with its types erased.
pub trait Entry: Sync {
    /// [`Study::NAME`].
    fn name(&self) -> &'static str;
    /// [`Study::TITLE`].
    fn title(&self) -> &'static str;
    /// [`Study::PAPER`].
    fn paper(&self) -> &'static str;
    /// SHA-256 (hex) of the study's name and configuration at these options.
    fn config_hash(&self, opts: &Options) -> String;
    /// Run (or reuse) the study under `root/<name>/`; a failure becomes a section with its
    /// error, so the report still shows it.
    fn reproduce(&self, root: &OutDir, opts: &Options) -> Section;
}

struct Registered<S>(PhantomData<fn() -> S>);

/// Hash of a configuration: its JSON with the display-only `quiet` flag removed (serde_json
/// maps are ordered, so the text is canonical), with the study name and crate version.
fn hash_config<C: Serialize>(name: &str, cfg: &C) -> String {
    let mut v = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("quiet");
    }
    let text =
        serde_json::json!({"study": name, "version": env!("CARGO_PKG_VERSION"), "config": v})
            .to_string();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The report's view of a finished run, read from its `results.json`.
fn section_from_results(
    results: &serde_json::Value,
    name: &str,
    title: &str,
    paper: &str,
    about: &str,
) -> Option<Section> {
    let figures: Vec<String> = serde_json::from_value(results.get("figures")?.clone()).ok()?;
    let claims: Vec<Claim> = serde_json::from_value(results.get("claims")?.clone()).ok()?;
    let mut s = Section::of_study(
        name,
        title,
        &figures,
        &claims,
        results.get("seconds")?.as_f64()?,
        &format!("{name}/"),
    );
    s.paper = paper.into();
    s.about = about.into();
    Some(s)
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

impl<S: Study> Registered<S> {
    fn failed(&self, seconds: f64, error: String) -> Section {
        Section {
            study: S::NAME.into(),
            title: S::TITLE.into(),
            paper: S::PAPER.into(),
            about: S::ABOUT.into(),
            figures: vec![],
            claims: vec![],
            seconds,
            error: Some(error),
            reused: false,
        }
    }

    /// Run the study, then stamp its `results.json` with the configuration hash.
    fn run_fresh(&self, dir: &OutDir, cfg: &S::Config, hash: &str) -> Result<Section, String> {
        S::run(cfg, dir).map_err(|e| e.to_string())?;
        let path = dir.path("results.json");
        let mut v = read_json(&path).ok_or_else(|| {
            format!(
                "{}: missing or unreadable after the run; rerun with --force",
                path.display()
            )
        })?;
        if let Some(m) = v.as_object_mut() {
            m.insert("config_hash".into(), hash.into());
        }
        dir.write_json("results.json", &v)
            .map_err(|e| e.to_string())?;
        section_from_results(&v, S::NAME, S::TITLE, S::PAPER, S::ABOUT).ok_or_else(|| {
            format!(
                "{}: lacks figures, claims or seconds (the output contract)",
                path.display()
            )
        })
    }
}

impl<S: Study> Entry for Registered<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn title(&self) -> &'static str {
        S::TITLE
    }
    fn paper(&self) -> &'static str {
        S::PAPER
    }
    fn config_hash(&self, opts: &Options) -> String {
        hash_config(S::NAME, &S::config(opts.quick, opts.seed, opts.quiet))
    }

    fn reproduce(&self, root: &OutDir, opts: &Options) -> Section {
        let cfg = S::config(opts.quick, opts.seed, opts.quiet);
        let hash = hash_config(S::NAME, &cfg);
        let results = root.path(S::NAME).join("results.json");
        if opts.force {
            // Stage checkpoints a study keeps in OUT/<study>/checkpoints/ (keyed by its
            // configuration, e.g. prune's) go too: --force reruns everything.
            let _ = std::fs::remove_dir_all(root.path(S::NAME).join("checkpoints"));
        } else {
            let reused = read_json(&results)
                .filter(|v| v.get("config_hash").and_then(|h| h.as_str()) == Some(hash.as_str()))
                .and_then(|v| section_from_results(&v, S::NAME, S::TITLE, S::PAPER, S::ABOUT));
            if let Some(mut s) = reused {
                Stage::note(
                    S::NAME,
                    "reused (same configuration; --force reruns it)",
                    opts.quiet,
                );
                s.reused = true;
                return s;
            }
        }
        let stage = Stage::start(S::NAME, opts.quiet);
        let t0 = Instant::now();
        let out = OutDir::create(root.path(S::NAME)).map_err(|e| e.to_string());
        match out.and_then(|dir| self.run_fresh(&dir, &cfg, &hash)) {
            Ok(s) => {
                let held = s.claims.iter().filter(|c| c.holds).count();
                stage.finish(&format!("{held}/{} claims hold", s.claims.len()));
                s
            }
            Err(e) => {
                stage.finish("failed");
                self.failed(t0.elapsed().as_secs_f64(), e)
            }
        }
    }
}

/// A registry entry for `S`.
pub fn entry<S: Study + 'static>() -> &'static dyn Entry {
    // A zero-sized value: leaking its box allocates nothing.
    Box::leak(Box::new(Registered::<S>(PhantomData)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hash_ignores_quiet_and_sees_every_other_field() {
        #[derive(Serialize)]
        struct C {
            quick: bool,
            seed: u64,
            quiet: bool,
        }
        let h = |quick, seed, quiet| hash_config("x", &C { quick, seed, quiet });
        assert_eq!(h(true, 1, true), h(true, 1, false));
        assert_ne!(h(true, 1, true), h(false, 1, true));
        assert_ne!(h(true, 1, true), h(true, 2, true));
        assert_ne!(
            h(true, 1, true),
            hash_config(
                "y",
                &C {
                    quick: true,
                    seed: 1,
                    quiet: true
                }
            )
        );
        assert_eq!(h(true, 1, true).len(), 64);
    }

    #[test]
    fn a_finished_run_is_reused_only_with_the_same_hash() {
        let dir = std::env::temp_dir().join(format!("dlt-study-reuse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = OutDir::create(&dir).unwrap();
        let claim = Claim::within("t.x", "p", "c", 1.0, 1.0, 0.1, "why");
        let v = serde_json::json!({"figures": ["a.svg"], "claims": [claim], "seconds": 2.5,
                                   "config_hash": "abc"});
        out.write_json("results.json", &v).unwrap();
        let read = read_json(&out.path("results.json")).unwrap();
        let s = section_from_results(&read, "t", "T", "P", "A").unwrap();
        assert_eq!(s.figures, vec!["t/a.svg".to_string()]);
        assert_eq!(s.claims.len(), 1);
        assert_eq!(s.seconds, 2.5);
        // A results.json without the contract's keys is not a section.
        assert!(
            section_from_results(&serde_json::json!({"claims": []}), "t", "T", "P", "A").is_none()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
