//! # dlt-studies
//!
//! One module per paper, each a [`study::Study`] flowing config → run → results → figures, plus
//! the shared output contract ([`output`]), figures ([`plot`]), progress ([`progress`]), the
//! registry that `dlt reproduce` iterates ([`study`]) and its report ([`report`]).
#![warn(missing_docs)]

pub mod autoencode;
pub mod claim;
pub mod collapse;
pub mod hessian;
pub mod jacobian;
pub mod limits;
pub mod orthogonal;
pub mod output;
pub mod plot;
pub mod progress;
pub mod prune;
pub mod registry;
pub mod report;
pub mod run_limits;
pub mod scaling;
pub mod sgd_gap;
pub mod study;
pub mod theory;
pub mod trained;

pub use registry::{registry, reproduce, select};
pub use study::{Options, Study, StudyError};
