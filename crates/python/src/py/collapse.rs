//! `dltlab.collapse`: model collapse when data are replaced or accumulated (Gerstgrasser et
//! al., "Is Model Collapse Inevitable?", arXiv 2404.01413; docs/derivations/collapse.md) — the
//! closed forms of `dlt_theory::collapse` and the `linear` / `gaussian` Monte Carlo of
//! `dlt collapse linear|gaussian`, with the CLI's size checks and messages.

use super::{arr1, at_least, limit_err, limits, study_err, theory_err, value_err};
use dlt_theory::collapse::{gaussian_replace_trace, linear, Policy};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn policy_arg(s: &str) -> PyResult<Policy> {
    s.parse()
        .map_err(|e: String| value_err(format!("--policy: {e}")))
}

/// σ²d/(T − d − 1): the expected test error ‖ŵ − w*‖² of one OLS fit on T samples in d
/// dimensions with noise σ (inverse-Wishart mean; docs/derivations/collapse.md#linear-setting).
#[pyfunction]
#[pyo3(signature = (d, t, sigma=1.0))]
fn linear_base(d: i64, t: i64, sigma: f64) -> PyResult<f64> {
    let (d, t) = linear_args(d, t, sigma)?;
    Ok(linear::base(d, t, sigma))
}

fn linear_args(d: i64, t: i64, sigma: f64) -> PyResult<(usize, usize)> {
    let d = at_least("--d", d, 1)?;
    let t = at_least("--t", t, 0)?;
    if t < d.saturating_add(2) {
        return Err(value_err(format!(
            "--t {t}: OLS needs T ≥ d + 2 for a finite expected error (d = {d})"
        )));
    }
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(value_err(format!(
            "--sigma: σ must be finite and ≥ 0, got {sigma}"
        )));
    }
    Ok((d, t))
}

/// The closed form of the expected test error at generation n (arXiv 2404.01413;
/// docs/derivations/collapse.md#replace, #accumulate): replace n·σ²d/(T−d−1), accumulate
/// σ²d/(T−d−1)·Σ_{i≤n} 1/i²; None for accumulate-subsample (no closed form).
#[pyfunction]
#[pyo3(signature = (policy, n, d, t, sigma=1.0))]
fn linear_theory(policy: &str, n: i64, d: i64, t: i64, sigma: f64) -> PyResult<Option<f64>> {
    let policy = policy_arg(policy)?;
    let n = at_least("--generations", n, 1)?;
    let (d, t) = linear_args(d, t, sigma)?;
    Ok(linear::theory(policy, n, d, t, sigma))
}

/// E[tr Σ̂_n]/tr Σ₀ = ((T−1)/T)^n for a Gaussian refitted by maximum likelihood on its own T
/// samples under replace (docs/derivations/collapse.md#gaussian-collapse).
#[pyfunction]
fn gaussian_trace(t: i64, n: i64) -> PyResult<f64> {
    let t = at_least("--t", t, 2)?;
    let n = at_least("--generations", n, 0)?;
    Ok(gaussian_replace_trace(t, n))
}

/// A count argument that Python may pass negative: the CLI's flag would not parse, so the
/// message is the `at_least` one.
fn count(flag: &str, v: i64) -> PyResult<usize> {
    at_least(flag, v, 0)
}

/// Linear regression refitted on its own predictions, generation after generation
/// (arXiv 2404.01413; docs/derivations/collapse.md#linear-setting): Monte Carlo over `seeds`
/// beside the closed forms, as `dlt collapse linear --json`.
#[pyfunction]
#[pyo3(signature = (d=10, t=100, sigma=1.0, generations=20, policy="replace", seeds=2000, seed=0))]
#[allow(clippy::too_many_arguments)]
#[pyo3(name = "linear")]
fn linear_mc<'py>(
    py: Python<'py>,
    d: i64,
    t: i64,
    sigma: f64,
    generations: i64,
    policy: &str,
    seeds: i64,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let policy = policy_arg(policy)?;
    let (d, t, generations, seeds) = (
        count("--d", d)?,
        count("--t", t)?,
        count("--generations", generations)?,
        count("--seeds", seeds)?,
    );
    limits::collapse_linear(d, t, generations, policy, seeds).map_err(limit_err)?;
    let rows = py
        .allow_threads(|| linear::simulate(d, t, sigma, generations, policy, seeds, seed))
        .map_err(theory_err)?;
    let out = PyDict::new(py);
    out.set_item("d", d)?;
    out.set_item("t", t)?;
    out.set_item("sigma", sigma)?;
    out.set_item("policy", policy.as_str())?;
    out.set_item("seeds", seeds)?;
    let g: Vec<i64> = rows.iter().map(|r| r.g as i64).collect();
    out.set_item("g", PyArray1::from_vec(py, g))?;
    let col = |f: &dyn Fn(&linear::Generation) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    out.set_item("test_error", arr1(py, &col(&|r| r.test_error)))?;
    out.set_item("test_error_se", arr1(py, &col(&|r| r.test_error_se)))?;
    out.set_item("theory", arr1(py, &col(&|r| r.theory.unwrap_or(f64::NAN))))?;
    Ok(out)
}

/// A Gaussian refitted by maximum likelihood on its own T samples, generation after generation
/// (arXiv 2404.01413; docs/derivations/collapse.md#gaussian-collapse): per generation g = 0, 1, …, the
/// mean, standard error and median over seeds of tr Σ̂_g / tr Σ₀, the mean ‖μ̂_g − μ₀‖², and
/// ((T−1)/T)^(g+1) under replace, as `dlt collapse gaussian --json`.
#[pyfunction]
#[pyo3(signature = (dim=1, t=100, generations=100, policy="replace", seeds=300, seed=0))]
#[pyo3(name = "gaussian")]
fn gaussian_mc<'py>(
    py: Python<'py>,
    dim: i64,
    t: i64,
    generations: i64,
    policy: &str,
    seeds: i64,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let policy = policy_arg(policy)?;
    let (dim, t, generations, seeds) = (
        count("--dim", dim)?,
        count("--t", t)?,
        count("--generations", generations)?,
        count("--seeds", seeds)?,
    );
    limits::collapse_gaussian(dim, t, generations, policy, seeds).map_err(limit_err)?;
    let rows = py
        .allow_threads(|| {
            dlt_studies::collapse::gaussian_runs(dim, t, generations, policy, seeds, seed)
        })
        .map_err(study_err)?;
    let out = PyDict::new(py);
    out.set_item("dim", dim)?;
    out.set_item("t", t)?;
    out.set_item("policy", policy.as_str())?;
    out.set_item("seeds", seeds)?;
    let g: Vec<i64> = rows.iter().map(|r| r.g as i64).collect();
    out.set_item("g", PyArray1::from_vec(py, g))?;
    type Get = fn(&dlt_studies::collapse::GaussianRow) -> f64;
    let cols: [(&str, Get); 5] = [
        ("trace_ratio", |r| r.trace_ratio),
        ("trace_ratio_se", |r| r.trace_ratio_se),
        ("trace_ratio_median", |r| r.trace_ratio_median),
        ("mean_sq_error", |r| r.mean_sq_error),
        ("theory", |r| r.theory.unwrap_or(f64::NAN)),
    ];
    for (name, f) in cols {
        out.set_item(name, arr1(py, &rows.iter().map(f).collect::<Vec<_>>()))?;
    }
    Ok(out)
}

/// The `collapse` submodule.
pub(super) fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "collapse")?;
    m.add_function(wrap_pyfunction!(linear_base, &m)?)?;
    m.add_function(wrap_pyfunction!(linear_theory, &m)?)?;
    m.add_function(wrap_pyfunction!(gaussian_trace, &m)?)?;
    m.add_function(wrap_pyfunction!(linear_mc, &m)?)?;
    m.add_function(wrap_pyfunction!(gaussian_mc, &m)?)?;
    Ok(m)
}
