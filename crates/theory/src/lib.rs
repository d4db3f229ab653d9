//! # dlt-theory
//!
//! The effective theory of deep multilayer perceptrons at large but finite width, after
//! *The Principles of Deep Learning Theory* (Roberts, Yaida, Hanin, arXiv 2106.10165; "PDLT"),
//! with the orthogonal-weight results of Day, Kahn, Roberts (arXiv 2310.07765).
//!
//! Everything is f64 and tensor-free:
//! * [`activation`]: σ, σ', σ'', σ''' for the usual activations, and a trait for your own;
//! * [`gauss`]: Gaussian expectations (Gauss–Hermite, kink-aware splits, closed forms);
//! * [`profile`]: single-input recursions for K, χ_∥, χ_⊥, V, Θ, A, B, D, F;
//! * [`dntk`]: single-input training-side recursions: dNTK (P, Q), ddNTKs (R, S, T, U), K¹, Θ¹;
//! * [`multi`]: multi-input kernel K_{δ1δ2} and four-point vertex V_{(δ1δ2)(δ3δ4)};
//! * [`criticality`]: critical (C_b, C_W), universality classes, ν and the optimal aspect ratio;
//! * [`mc`]: a multi-threaded Monte Carlo validator over ensembles of real networks;
//! * [`kernels`]: dataset-scale NNGP/NTK kernels and infinite-width predictions;
//! * [`gmm_softmax`]: the solvable Gaussian-mixture toy model of Gur-Ari, Roberts & Dyer;
//! * [`trajectory`]: the O(1/n) correction to the mean GD trajectory of one trained input.
#![warn(missing_docs)]

pub mod activation;
pub mod collapse;
pub mod criticality;
pub mod dntk;
pub mod gauss;
pub mod gmm_softmax;
pub mod kernels;
pub mod mc;
pub mod moments;
pub mod multi;
pub mod profile;
pub mod rambo;
pub mod scaling;
pub mod scaling_teacher;
pub mod spectral;
pub mod trajectory;

pub use activation::{Act, Activation};
pub use profile::{Ensemble, Init, Layer, LearningRates, ProfileConfig};

/// Errors of the theory engine; each names the input (usually a CLI flag) and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TheoryError {
    /// An activation name that [`activation::parse`] does not recognise.
    #[error("unknown activation '{name}'; known: {known}")]
    UnknownActivation {
        /// The name as given.
        name: String,
        /// The accepted names ([`activation::KNOWN`]), comma-separated.
        known: String,
    },
    /// An input outside its valid range.
    #[error("{flag}: {msg}")]
    Invalid {
        /// The offending input, usually the CLI flag (e.g. `--width`).
        flag: &'static str,
        /// What is wrong with it and how to fix it.
        msg: String,
    },
    /// A kernel matrix that has to be inverted is singular or not positive semi-definite to
    /// working precision.
    #[error("{flag}: {what}")]
    Singular {
        /// The input that determines the matrix (e.g. `--noise`, `--train-x`).
        flag: &'static str,
        /// Which matrix, its conditioning, and the fix.
        what: String,
    },
    /// A recursion or Monte Carlo run left its domain (K ≤ 0) or overflowed.
    #[error("recursion diverged at layer {layer}: {what}")]
    Diverged {
        /// Layer ℓ at which it happened (0 when no layer applies).
        layer: usize,
        /// Which quantity failed, and how.
        what: String,
    },
}
