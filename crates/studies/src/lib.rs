//! # dlt-studies
//!
//! One module per paper, each flowing config → run → results → figures, plus the shared output
//! contract ([`output`]), figures ([`plot`]), progress bars ([`progress`]) and the report that
//! `dlt reproduce` writes ([`report`]).

pub mod orthogonal;
pub mod output;
pub mod plot;
pub mod progress;
pub mod report;
pub mod theory;

use output::OutDir;
use report::Section;
use std::time::Instant;

/// Run every registered study at laptop scale under `root/<study>/` and return the report
/// sections (a failed study becomes a section with its error, so the report still shows it).
pub fn reproduce(root: &OutDir, quick: bool, seed: u64, quiet: bool) -> Vec<Section> {
    let mut sections = vec![];
    // Study `theory`.
    let t0 = Instant::now();
    let cfg = theory::Config {
        quick,
        seed,
        threads: 0,
        quiet,
    };
    let res = OutDir::create(root.path("theory"))
        .map_err(theory::StudyError::from)
        .and_then(|out| theory::run(&cfg, &out));
    sections.push(match res {
        Ok(r) => theory::section(&r, "theory/"),
        Err(e) => Section {
            study: "theory".into(),
            title: "Principles of Deep Learning Theory".into(),
            figures: vec![],
            claims: vec![],
            seconds: t0.elapsed().as_secs_f64(),
            error: Some(e.to_string()),
        },
    });
    // Study `orthogonal`.
    let t0 = Instant::now();
    let cfg = orthogonal::Config {
        quick,
        seed,
        quiet,
        data_path: None,
        skip_training: false,
        scale: orthogonal::Scale::for_mode(quick),
    };
    let res = OutDir::create(root.path("orthogonal"))
        .map_err(theory::StudyError::from)
        .and_then(|out| orthogonal::run(&cfg, &out));
    sections.push(match res {
        Ok(r) => orthogonal::section(&r, "orthogonal/"),
        Err(e) => Section {
            study: "orthogonal".into(),
            title: "Orthogonal weights".into(),
            figures: vec![],
            claims: vec![],
            seconds: t0.elapsed().as_secs_f64(),
            error: Some(e.to_string()),
        },
    });
    sections
}
