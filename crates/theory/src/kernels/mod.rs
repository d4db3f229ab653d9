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

/// The reference notes' "portable_normal" generator of the neural-tangents benchmark inputs
/// (docs/derivations/kernels.md#reference-values; `dlt bench`'s default kernel inputs):
/// splitmix64 from the seed, u = ((z >> 11) + 0.5)·2⁻⁵³, Box–Muller on consecutive pairs
/// (u₁, u₂) giving √(−2 ln u₁)·cos 2πu₂, then √(−2 ln u₁)·sin 2πu₂. (The notes leave the
/// Box–Muller order unstated; this reading is the one of four that reproduces their numbers.)
/// Any language with 64-bit integers regenerates them bit for bit.
pub fn portable_normal(seed: u64, count: usize) -> Vec<f64> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) * 2f64.powi(-53)
    };
    let mut out = Vec::with_capacity(count + 1);
    while out.len() < count {
        let (u1, u2) = (next(), next());
        let (r, a) = ((-2.0 * u1.ln()).sqrt(), 2.0 * std::f64::consts::PI * u2);
        out.push(r * a.cos());
        out.push(r * a.sin());
    }
    out.truncate(count);
    out
}

#[cfg(test)]
mod tests;
