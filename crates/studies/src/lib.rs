//! # dlt-studies
//!
//! One module per paper, each flowing config → run → results → figures, plus the shared output
//! contract ([`output`]), figures ([`plot`]), progress bars ([`progress`]) and the report that
//! `dlt reproduce` writes ([`report`]).

pub mod autoencode;
pub mod collapse;
pub mod hessian;
pub mod jacobian;
pub mod orthogonal;
pub mod output;
pub mod plot;
pub mod progress;
pub mod prune;
pub mod report;
pub mod scaling;
pub mod sgd_gap;
pub mod theory;

use output::OutDir;
use report::Section;
use std::time::Instant;

/// Run one study under `root/<name>/`, turning a failure into a report section with its error.
fn run_study<R>(
    root: &OutDir,
    name: &str,
    title: &str,
    run: impl FnOnce(&OutDir) -> Result<R, theory::StudyError>,
    section: impl FnOnce(&R, &str) -> Section,
) -> Section {
    let t0 = Instant::now();
    match OutDir::create(root.path(name))
        .map_err(theory::StudyError::from)
        .and_then(|out| run(&out))
    {
        Ok(r) => section(&r, &format!("{name}/")),
        Err(e) => Section {
            study: name.into(),
            title: title.into(),
            figures: vec![],
            claims: vec![],
            seconds: t0.elapsed().as_secs_f64(),
            error: Some(e.to_string()),
        },
    }
}

/// Run every registered study at laptop scale under `root/<study>/` and return the report
/// sections (a failed study becomes a section with its error, so the report still shows it).
pub fn reproduce(root: &OutDir, quick: bool, seed: u64, quiet: bool) -> Vec<Section> {
    vec![
        run_study(
            root,
            "theory",
            "Principles of Deep Learning Theory",
            |o| {
                theory::run(
                    &theory::Config {
                        quick,
                        seed,
                        threads: 0,
                        quiet,
                    },
                    o,
                )
            },
            theory::section,
        ),
        run_study(
            root,
            "orthogonal",
            "Orthogonal weights",
            |o| {
                orthogonal::run(
                    &orthogonal::Config {
                        quick,
                        seed,
                        quiet,
                        data_path: None,
                        skip_training: false,
                        scale: orthogonal::Scale::for_mode(quick),
                    },
                    o,
                )
            },
            orthogonal::section,
        ),
        run_study(
            root,
            "scaling",
            "A solvable model of neural scaling laws",
            |o| {
                scaling::run(
                    &scaling::Config {
                        quick,
                        seed,
                        quiet,
                        scale: scaling::Scale::for_mode(quick),
                    },
                    o,
                )
            },
            scaling::section,
        ),
        run_study(
            root,
            "collapse",
            "Model collapse: replace vs accumulate",
            |o| {
                let cfg = collapse::Config {
                    quick,
                    seed,
                    quiet,
                    scale: collapse::Scale::for_mode(quick),
                    lm: Some(collapse::LmScale::for_mode(quick)),
                    text: None,
                    vae: Some(collapse::VaeScale::for_mode(quick)),
                    diffusion: Some(collapse::DiffusionScale::for_mode(quick)),
                    resume: false,
                };
                collapse::run(&cfg, o)
            },
            collapse::section,
        ),
        run_study(
            root,
            "prune",
            "The unreasonable ineffectiveness of the deeper layers",
            |o| {
                prune::run(
                    &prune::Config {
                        quick,
                        seed,
                        quiet,
                        model: None,
                        text: None,
                        scale: prune::Scale::for_mode(quick),
                    },
                    o,
                )
            },
            prune::section,
        ),
        run_study(
            root,
            "hessian",
            "Gradient descent happens in a tiny subspace",
            |o| hessian::run(&hessian::Config::for_mode(quick, seed, quiet), o),
            hessian::section,
        ),
        run_study(
            root,
            "sgd-gap",
            "SGD implicitly regularizes generalization error",
            |o| sgd_gap::run(&sgd_gap::Config::for_mode(quick, seed, quiet), o),
            sgd_gap::section,
        ),
        run_study(
            root,
            "jacobian",
            "Robust learning with Jacobian regularization",
            |o| jacobian::run(&jacobian::Config::for_mode(quick, seed, quiet), o),
            jacobian::section,
        ),
        run_study(
            root,
            "autoencode",
            "Topological obstructions to autoencoding",
            |o| autoencode::run(&autoencode::Config::for_mode(quick, seed, quiet), o),
            autoencode::section,
        ),
    ]
}
