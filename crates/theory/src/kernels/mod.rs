//! Dataset-scale NNGP kernel K and NTK Θ of an infinitely wide MLP, and the infinite-width
//! predictions they imply (Bayesian posterior, gradient-flow ensemble).
//!
//! * [`pair`]: the Gaussian pair integrals E[σ(u)σ(v)], E[σ'(u)σ'(v)] (closed forms, Mehler
//!   series, 2-D quadratures);
//! * [`dataset`]: the layer recursion over N inputs (train × train, test × train), threaded over
//!   row blocks;
//! * [`predict`]: NNGP posterior and NTK gradient-flow predictions with their covariances.
//!
//! Conventions (PDLT, Roberts–Yaida–Hanin arXiv 2106.10165, ch. 4 and ch. 8;
//! docs/derivations/kernels.md#recursion): L Dense layers in total,
//! K^(1) = C_b + C_W x·x'/d, Θ^(1) = λ_b + λ_W x·x'/d,
//! K^(l+1) = C_b + C_W E\[σσ\], Θ^(l+1) = λ_b + λ_W E\[σσ\] + C_W E\[σ'σ'\] Θ^(l); the returned kernels
//! are K^(L), Θ^(L). With λ_b = C_b and λ_W = C_W these are neural-tangents' `stax` kernels in
//! the NTK parameterisation for L−1 hidden Dense+σ layers and a Dense readout.

pub mod dataset;
pub mod pair;
pub mod predict;

pub use dataset::{dataset_kernels, DatasetKernels, Inputs, KernelConfig, PairMethod};
pub use predict::{
    kernel_mean, nngp_posterior, ntk_ensemble, ntk_mean, Blocks, NtkTime, Prediction,
};

#[cfg(test)]
mod tests;
