//! The PyO3 bindings: `dltlab._dltlab` with the submodules `theory`, `scaling` and `studies`
//! (re-exported as `dltlab.theory`, … by `python/dltlab/__init__.py`; typed and documented in
//! the `.pyi` stubs beside it).
//!
//! Conventions, the same in every function:
//! * arguments are checked with the command line's checks and messages (`dlt theory …`,
//!   `dlt scaling …`), which name the CLI flag: a bad argument raises `ValueError` with that
//!   one-line message; a missing file `FileNotFoundError`, another I/O failure `OSError`; a
//!   recursion that leaves its domain `ArithmeticError`;
//! * arrays come back as fresh float64 numpy arrays that own their data (copied once from the
//!   Rust result); array inputs that are already C-contiguous float64 are read in place, others
//!   (float32, lists, strided views) are converted once by `numpy.ascontiguousarray`;
//! * the GIL is released while the library computes (`Python::allow_threads`), so calls from
//!   several Python threads run in parallel.

use dlt_nn::data::npy;
use dlt_nn::NnError;
use dlt_theory::activation::{parse, Act, Activation};
use dlt_theory::criticality::criticality as critical;
use dlt_theory::kernels::{
    dataset_kernels, nngp_posterior, ntk_ensemble, Inputs, KernelConfig, NtkTime, PairMethod,
};
use dlt_theory::mc::{self as montecarlo, McConfig};
use dlt_theory::profile::{Ensemble, Init, LearningRates, ProfileConfig};
use dlt_theory::scaling::{Features, ScalingModel};
use dlt_theory::TheoryError;
use numpy::{
    PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyArithmeticError, PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The command line's size checks (memory estimate against the budget, work bound), the same
/// library module the CLI uses, so that an impossible size is refused with the CLI's message.
use dlt_studies::run_limits as limits;

mod collapse;
mod data;
mod prune;

// ---------------------------------------------------------------------------------------------
// Errors

fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// A theory-engine error as a Python exception: a diverged recursion is an `ArithmeticError`,
/// everything else (bad names, ranges, singular kernels) a `ValueError`.
fn theory_err(e: TheoryError) -> PyErr {
    match e {
        TheoryError::Diverged { .. } => PyArithmeticError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// An I/O failure: `FileNotFoundError`, `PermissionError` or `OSError` by its kind.
fn io_err(source: &std::io::Error, msg: String) -> PyErr {
    match source.kind() {
        std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

/// An error of `dlt-nn` (the `.npy` reader) for input `flag`, prefixed like the CLI's.
fn nn_err(flag: &str, e: NnError) -> PyErr {
    let msg = format!("{flag}: {e}");
    match &e {
        NnError::Io { source, .. } => io_err(source, msg),
        _ => PyValueError::new_err(msg),
    }
}

/// The CLI's `at_least` check (`dlt_studies::run_limits`), for an integer that Python may pass
/// negative.
fn at_least(flag: &str, v: i64, min: usize) -> PyResult<usize> {
    if v < min as i64 {
        return Err(value_err(format!("{flag} {v}: must be ≥ {min}")));
    }
    Ok(v as usize)
}

/// The CLI's memory check ([`limits::check_memory`], which skips reading MemAvailable for
/// estimates ≤ 16 MiB) with its message as a `ValueError`.
fn check_memory(what: &str, terms: &[limits::Term<'_>]) -> PyResult<()> {
    limits::check_memory(what, terms).map_err(limit_err)
}

/// A refused size (the CLI's `limits` checks) as a `ValueError` with the CLI's message.
fn limit_err(e: anyhow::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn at_most(flag: &str, v: usize, max: usize, why: &str) -> PyResult<()> {
    if v > max {
        return Err(value_err(format!("{flag} {v}: must be ≤ {max} ({why})")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conversions

/// JSON (a results.json, the CLI's `--json` values) as Python objects: dict, list, float, int,
/// str, bool, None.
fn json_to_py(py: Python<'_>, v: &Value) -> PyResult<PyObject> {
    Ok(match v {
        Value::Null => py.None(),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(json_to_py(py, x)?)?;
            }
            l.into_any().unbind()
        }
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

/// A fresh 1-D float64 array (numpy owns the memory).
fn arr1<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_slice(py, v)
}

/// A fresh rows × cols float64 array from row-major `v` (numpy owns the memory).
fn arr2<'py>(py: Python<'py>, v: &[f64], rows: usize, cols: usize) -> Bound<'py, PyArray2<f64>> {
    debug_assert_eq!(v.len(), rows * cols);
    let a = PyArray2::<f64>::zeros(py, [rows, cols], false);
    // SAFETY: `a` was just created here, is C-contiguous and no other reference to it exists.
    unsafe { a.as_slice_mut() }
        .expect("fresh arrays are contiguous")
        .copy_from_slice(v);
    a
}

/// A fresh float64 array of `shape` from row-major `v` (numpy owns the memory; one copy).
fn arrn<'py>(py: Python<'py>, v: &[f64], shape: &[usize]) -> Bound<'py, PyArrayDyn<f64>> {
    debug_assert_eq!(v.len(), shape.iter().product::<usize>());
    let a = PyArrayDyn::<f64>::zeros(py, shape.to_vec(), false);
    // SAFETY: `a` was just created here, is C-contiguous and no other reference to it exists.
    unsafe { a.as_slice_mut() }
        .expect("fresh arrays are contiguous")
        .copy_from_slice(v);
    a
}

/// An input array: read in place when it is a C-contiguous float64 numpy array, else converted
/// once by `numpy.ascontiguousarray(x, dtype=float64)`; or read from a `.npy` file when given
/// a path (str or os.PathLike), like the CLI's flags.
struct Matrix<'py> {
    array: Option<PyReadonlyArrayDyn<'py, f64>>,
    owned: Vec<f64>,
    shape: Vec<usize>,
}

impl<'py> Matrix<'py> {
    fn new(ob: &Bound<'py, PyAny>, flag: &str, ndims: &[usize]) -> PyResult<Self> {
        let py = ob.py();
        if ob.is_instance_of::<PyString>() || ob.hasattr("__fspath__")? {
            let path: PathBuf = ob.extract()?;
            let a = npy::read_ndim(&path, ndims).map_err(|e| nn_err(flag, e))?;
            return Ok(Self {
                array: None,
                owned: a.data,
                shape: a.shape,
            });
        }
        let np = py.import("numpy")?;
        let conv = np
            .getattr("ascontiguousarray")?
            .call1((ob, np.getattr("float64")?))
            .map_err(|e| value_err(format!("{flag}: cannot read it as a float64 array: {e}")))?;
        let array: PyReadonlyArrayDyn<'py, f64> = conv.extract()?;
        let shape = array.shape().to_vec();
        if !ndims.contains(&shape.len()) {
            let want = ndims
                .iter()
                .map(|d| format!("{d}-D"))
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(value_err(format!(
                "{flag}: is a {}-D array of shape {shape:?}; expected {want}",
                shape.len()
            )));
        }
        Ok(Self {
            array: Some(array),
            owned: vec![],
            shape,
        })
    }

    fn data(&self) -> &[f64] {
        match &self.array {
            Some(a) => a.as_slice().expect("ascontiguousarray gives C order"),
            None => &self.owned,
        }
    }

    /// (rows, cols) of a 2-D input, at least 1×1 (the CLI's `read_matrix`).
    fn dims2(&self, flag: &str) -> PyResult<(usize, usize)> {
        let (r, c) = (self.shape[0], self.shape.get(1).copied().unwrap_or(1));
        if r == 0 || c == 0 {
            return Err(value_err(format!(
                "{flag}: has shape ({r}, {c}); need at least one row and one column"
            )));
        }
        Ok((r, c))
    }
}

// ---------------------------------------------------------------------------------------------
// theory

fn parse_init(s: &str, flag: &str) -> PyResult<Init> {
    s.parse::<Init>()
        .map_err(|e| value_err(format!("{flag}: {e}")))
}

fn learning_rates(lambda_b: f64, lambda_w: f64, b_over_l: bool) -> PyResult<LearningRates> {
    for (flag, v) in [("--lambda-b", lambda_b), ("--lambda-w", lambda_w)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(value_err(format!(
                "{flag}: learning rates must be finite and ≥ 0, got {v}"
            )));
        }
    }
    Ok(LearningRates {
        lambda_b,
        lambda_w,
        b_over_l,
    })
}

// ---------------------------------------------------------------------------------------------
// A user's activation from Python

/// σ given as Python callables (float → float), evaluated by the engine's own quadrature at its
/// nodes. σ' defaults to a central difference with step h = 10⁻⁵(1 + |z|) (truncation h²σ'''/6
/// plus rounding ε|σ|/h: about 10⁻¹¹ for σ of order one); σ'' and σ''' exist only when given
/// (the dNTK/ddNTK recursions need both; without them `profile` reports `dntk_note`). A callable
/// that raises or returns a non-number makes that evaluation NaN, and its exception is re-raised
/// after the computation ([`PyActivation::take_error`]).
#[derive(Debug)]
struct PyActivation {
    f: Py<PyAny>,
    d1: Option<Py<PyAny>>,
    d2: Option<Py<PyAny>>,
    d3: Option<Py<PyAny>>,
    kink: bool,
    error: Mutex<Option<PyErr>>,
}

impl PyActivation {
    fn call(&self, g: &Py<PyAny>, z: f64) -> f64 {
        Python::with_gil(
            |py| match g.call1(py, (z,)).and_then(|v| v.extract::<f64>(py)) {
                Ok(v) => v,
                Err(e) => {
                    let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert(e);
                    f64::NAN
                }
            },
        )
    }

    /// The first exception a callable raised, if any.
    fn take_error(&self) -> Option<PyErr> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Activation for PyActivation {
    fn name(&self) -> String {
        Python::with_gil(|py| {
            self.f
                .bind(py)
                .getattr("__name__")
                .and_then(|n| n.extract::<String>())
                .map(|n| format!("python:{n}"))
                .unwrap_or_else(|_| "python".into())
        })
    }
    fn f(&self, z: f64) -> f64 {
        self.call(&self.f, z)
    }
    fn d1(&self, z: f64) -> f64 {
        match &self.d1 {
            Some(g) => self.call(g, z),
            None => {
                let h = 1e-5 * (1.0 + z.abs());
                (self.call(&self.f, z + h) - self.call(&self.f, z - h)) / (2.0 * h)
            }
        }
    }
    fn d2(&self, z: f64) -> Option<f64> {
        self.d2.as_ref().map(|g| self.call(g, z))
    }
    fn d3(&self, z: f64) -> Option<f64> {
        self.d3.as_ref().map(|g| self.call(g, z))
    }
    fn kink_at_zero(&self) -> bool {
        self.kink
    }
}

/// The derivative callables of a user's σ: (σ', σ'', σ''').
type Derivatives = (Option<Py<PyAny>>, Option<Py<PyAny>>, Option<Py<PyAny>>);

/// The `activation` argument: a name for [`parse`], or a Python callable with optional
/// derivative callables. Returns the engine's handle and, for a callable, the handle to ask for
/// its exceptions afterwards.
fn activation_arg(
    ob: &Bound<'_, PyAny>,
    (d1, d2, d3): Derivatives,
    kink: bool,
) -> PyResult<(Act, Option<Arc<PyActivation>>)> {
    if let Ok(name) = ob.extract::<String>() {
        if d1.is_some() || d2.is_some() || d3.is_some() || kink {
            return Err(value_err(
                "--activation: d1, d2, d3 and kink_at_zero go with a callable σ, not a name",
            ));
        }
        return Ok((parse(&name).map_err(theory_err)?, None));
    }
    if !ob.is_callable() {
        return Err(value_err(
            "--activation: give a name (see dltlab.theory.activations()) or a callable float → float",
        ));
    }
    for (g, what) in [(&d1, "d1"), (&d2, "d2"), (&d3, "d3")] {
        if g.as_ref().is_some_and(|g| !g.bind(ob.py()).is_callable()) {
            return Err(value_err(format!(
                "{what}: must be a callable float → float"
            )));
        }
    }
    let pa = Arc::new(PyActivation {
        f: ob.clone().unbind(),
        d1,
        d2,
        d3,
        kink,
        error: Mutex::new(None),
    });
    Ok((pa.clone(), Some(pa)))
}

/// Re-raise a user activation's exception, if it raised one during the computation.
fn user_error(user: &Option<Arc<PyActivation>>) -> PyResult<()> {
    match user.as_ref().and_then(|u| u.take_error()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Critical (C_b, C_W), fixed point K*, universality class, a₁ and p_⊥ of an activation
/// (PDLT arXiv 2106.10165 §5.3): the dict of `dlt theory criticality --json`.
#[pyfunction]
fn criticality(py: Python<'_>, activation: &str) -> PyResult<PyObject> {
    let act = parse(activation).map_err(theory_err)?;
    let c = py.allow_threads(|| critical(&*act));
    json_to_py(py, &dlt_studies::theory::runs::criticality_results(&c))
}

/// The activation names `parse` accepts (`A` stands for a number).
#[pyfunction]
fn activations() -> Vec<&'static str> {
    dlt_theory::activation::KNOWN.to_vec()
}

/// The memory of the layer table of `theory profile` for p inputs (the CLI's `check_profile`):
/// K, Θ (p² each), V (p⁴) per layer; one input: a few dozen numbers per layer.
fn check_profile_memory(depth: usize, p: usize) -> PyResult<()> {
    use limits::prod;
    check_memory(
        "theory profile",
        &[(
            "--depth",
            depth.to_string(),
            prod(&[depth, p, p, p, p, 8 * 4 + 512]),
        )],
    )
}

/// Layer-by-layer single-input recursions (PDLT ch. 4–5, 8–9, 11; docs/derivations/theory.md,
/// docs/derivations/dntk.md): a dict of float64 arrays of length `depth` (`l` is int64).
#[pyfunction]
#[pyo3(signature = (activation, cb, cw, k1, depth, lambda_b=1.0, lambda_w=1.0, lambda_b_over_l=false, init="gaussian", v1=0.0, gamma=0.0, xi=1.0, quad_order=192, d1=None, d2=None, d3=None, kink_at_zero=false))]
#[allow(clippy::too_many_arguments)]
fn profile<'py>(
    py: Python<'py>,
    activation: &Bound<'py, PyAny>,
    cb: f64,
    cw: f64,
    k1: f64,
    depth: i64,
    lambda_b: f64,
    lambda_w: f64,
    lambda_b_over_l: bool,
    init: &str,
    v1: f64,
    gamma: f64,
    xi: f64,
    quad_order: i64,
    d1: Option<Py<PyAny>>,
    d2: Option<Py<PyAny>>,
    d3: Option<Py<PyAny>>,
    kink_at_zero: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let depth = at_least("--depth", depth, 1)?;
    let quad_order = at_least("--quad-order", quad_order, 8)?;
    at_most(
        "--quad-order",
        quad_order,
        4096,
        "more nodes do not change the 1-D expectations",
    )?;
    check_profile_memory(depth, 1)?;
    let (act, user) = activation_arg(activation, (d1, d2, d3), kink_at_zero)?;
    let mut e = Ensemble::new(act, cb, cw).with_init(parse_init(init, "--init")?);
    e.gamma = gamma;
    e.xi = xi;
    e.quad.gh1 = quad_order;
    let pc = ProfileConfig {
        ensemble: e,
        k1,
        v1,
        depth,
        lr: learning_rates(lambda_b, lambda_w, lambda_b_over_l)?,
    };
    let res = py.allow_threads(|| {
        let rows = dlt_theory::profile::profile(&pc)?;
        Ok::<_, TheoryError>((rows, dlt_theory::dntk::dntk_profile(&pc)))
    });
    user_error(&user)?;
    let (rows, dntk) = res.map_err(theory_err)?;
    let d = PyDict::new(py);
    let l: Vec<i64> = rows.iter().map(|r| r.l as i64).collect();
    d.set_item("l", PyArray1::from_vec(py, l))?;
    let col = |f: &dyn Fn(&dlt_theory::Layer) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    d.set_item("K", arr1(py, &col(&|r| r.k)))?;
    d.set_item("chi_par", arr1(py, &col(&|r| r.chi_par)))?;
    d.set_item("chi_perp", arr1(py, &col(&|r| r.chi_perp)))?;
    d.set_item("V", arr1(py, &col(&|r| r.v)))?;
    d.set_item("theta", arr1(py, &col(&|r| r.theta)))?;
    d.set_item("V_over_K2", arr1(py, &col(&|r| r.v_over_k2())))?;
    for name in [
        "A",
        "B",
        "D",
        "F",
        "A_over_theta2",
        "B_over_theta2",
        "D_over_Ktheta",
        "F_over_Ktheta",
    ] {
        let v: Option<Vec<f64>> = rows.iter().map(|r| r.stat(name)).collect();
        if let Some(v) = v {
            d.set_item(name, arr1(py, &v))?;
        }
    }
    match dntk {
        Ok(dn) => {
            for name in [
                "P",
                "Q",
                "R",
                "S",
                "T",
                "U",
                "K1",
                "theta1",
                "P_over_theta2",
                "Q_over_theta2",
                "RK_over_theta3",
                "SK_over_theta3",
                "TK_over_theta3",
                "UK_over_theta3",
            ] {
                let v: Vec<f64> = dn
                    .iter()
                    .map(|x| x.stat(name).unwrap_or(f64::NAN))
                    .collect();
                d.set_item(name, arr1(py, &v))?;
            }
        }
        Err(e) => d.set_item(
            "dntk_note",
            format!("dNTK recursions not derived here: {e}"),
        )?,
    }
    Ok(d)
}

/// Multi-input recursions for p inputs (PDLT eqs. (4.118)–(4.119);
/// docs/derivations/theory.md#four-point-vertex): K^(ℓ), Θ^(ℓ) (p×p) and V^(ℓ) (p⁴) per layer
/// from the p×p matrix K^(1) = `k1` (`dlt theory profile --k1-matrix … --json`).
#[pyfunction]
#[pyo3(signature = (activation, cb, cw, k1, depth, lambda_b=1.0, lambda_w=1.0, lambda_b_over_l=false, init="gaussian", quad_order=192))]
#[allow(clippy::too_many_arguments)]
fn profile_multi<'py>(
    py: Python<'py>,
    activation: &str,
    cb: f64,
    cw: f64,
    k1: &Bound<'py, PyAny>,
    depth: i64,
    lambda_b: f64,
    lambda_w: f64,
    lambda_b_over_l: bool,
    init: &str,
    quad_order: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let depth = at_least("--depth", depth, 1)?;
    let quad_order = at_least("--quad-order", quad_order, 8)?;
    at_most(
        "--quad-order",
        quad_order,
        4096,
        "more nodes do not change the 1-D expectations",
    )?;
    let km = Matrix::new(k1, "--k1-matrix", &[2])?;
    let (p, c) = km.dims2("--k1-matrix")?;
    if p != c {
        return Err(value_err(format!(
            "--k1-matrix: the matrix must be square ({p} rows)"
        )));
    }
    check_profile_memory(depth, p)?;
    let mut e = Ensemble::new(parse(activation).map_err(theory_err)?, cb, cw)
        .with_init(parse_init(init, "--init")?);
    e.quad.gh1 = quad_order;
    let lr = learning_rates(lambda_b, lambda_w, lambda_b_over_l)?;
    let k = km.data();
    let rows = py
        .allow_threads(|| dlt_theory::multi::profile_multi(&e, k, p, depth, &lr))
        .map_err(theory_err)?;
    let l = rows.len();
    let cat = |f: &dyn Fn(&dlt_theory::multi::MultiLayer) -> &[f64]| {
        rows.iter()
            .flat_map(|r| f(r).iter().copied())
            .collect::<Vec<f64>>()
    };
    let d = PyDict::new(py);
    let ls: Vec<i64> = rows.iter().map(|r| r.l as i64).collect();
    d.set_item("l", PyArray1::from_vec(py, ls))?;
    d.set_item("K", arrn(py, &cat(&|r| &r.k), &[l, p, p]))?;
    d.set_item("theta", arrn(py, &cat(&|r| &r.theta), &[l, p, p]))?;
    d.set_item("V", arrn(py, &cat(&|r| &r.v), &[l, p, p, p, p]))?;
    Ok(d)
}

/// Monte Carlo over an ensemble of real networks with batch-means standard errors, beside the
/// theory (PDLT; crates/theory/src/mc.rs): `dlt theory mc`.
#[pyfunction]
#[pyo3(signature = (activation, cb, cw, k1, depth, width, networks, ntk=false, lambda_b=1.0, lambda_w=1.0, lambda_b_over_l=false, init="gaussian", first_layer=None, seed=0, batches=20, threads=0))]
#[allow(clippy::too_many_arguments)]
fn mc<'py>(
    py: Python<'py>,
    activation: &str,
    cb: f64,
    cw: f64,
    k1: f64,
    depth: i64,
    width: i64,
    networks: i64,
    ntk: bool,
    lambda_b: f64,
    lambda_w: f64,
    lambda_b_over_l: bool,
    init: &str,
    first_layer: Option<&str>,
    seed: u64,
    batches: i64,
    threads: i64,
) -> PyResult<Bound<'py, PyDict>> {
    // The CLI's check_mc.
    let depth = at_least("--depth", depth, 1)?;
    let batches = at_least("--batches", batches, 2)?;
    let networks = at_least("--networks", networks, 0)?;
    if networks < batches.saturating_mul(2) {
        return Err(value_err(format!(
            "--networks {networks}: need at least two networks per batch (networks ≥ 2 × --batches {batches})"
        )));
    }
    let width = at_least("--width", width, 1)?;
    let threads = at_least("--threads", threads, 0)?;
    at_most("--threads", threads, 4096, "one worker per thread")?;
    {
        // The CLI's check_mc: the weight matrices of every worker and the per-batch sums of
        // every layer in memory, the arithmetic within the work bound.
        use limits::{check_work, prod};
        let cores = std::thread::available_parallelism().map_or(1, |v| v.get());
        let workers = if threads == 0 { cores } else { threads }.min(networks.max(1));
        check_memory(
            "theory mc",
            &[
                (
                    "--width",
                    width.to_string(),
                    prod(&[workers, width, width, if ntk { 4 * 8 } else { 8 }]),
                ),
                (
                    "--depth",
                    depth.to_string(),
                    prod(&[batches, depth, 64 * 8]),
                ),
            ],
        )?;
        check_work(
            "theory mc",
            "--networks",
            &networks.to_string(),
            prod(&[networks, depth, width, width, if ntk { width } else { 1 }]),
        )
        .map_err(limit_err)?;
    }
    let init = parse_init(init, "--init")?;
    let first_layer = match first_layer {
        Some(s) => parse_init(s, "--first-layer")?,
        None => init,
    };
    let cfg = McConfig {
        ensemble: Ensemble::new(parse(activation).map_err(theory_err)?, cb, cw).with_init(init),
        k1,
        width,
        depth,
        networks,
        ntk,
        lr: learning_rates(lambda_b, lambda_w, lambda_b_over_l)?,
        first_layer,
        seed,
        batches,
        threads,
    };
    let (res, theory, secs) = py
        .allow_threads(|| {
            let theory = cfg.theory()?;
            let t0 = std::time::Instant::now();
            let res = montecarlo::run(&cfg, &|_| {})?;
            Ok::<_, TheoryError>((res, theory, t0.elapsed().as_secs_f64()))
        })
        .map_err(theory_err)?;
    let d = PyDict::new(py);
    let l: Vec<i64> = res.iter().map(|r| r.l as i64).collect();
    d.set_item("l", PyArray1::from_vec(py, l))?;
    let (value, se, th) = (PyDict::new(py), PyDict::new(py), PyDict::new(py));
    let names: Vec<String> = res
        .first()
        .map(|r| r.stats.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    for name in &names {
        let est: Vec<_> = res
            .iter()
            .map(|r| {
                r.get(name).unwrap_or(montecarlo::Estimate {
                    value: f64::NAN,
                    se: f64::NAN,
                })
            })
            .collect();
        value.set_item(
            name,
            arr1(py, &est.iter().map(|e| e.value).collect::<Vec<_>>()),
        )?;
        se.set_item(
            name,
            arr1(py, &est.iter().map(|e| e.se).collect::<Vec<_>>()),
        )?;
        let t: Vec<f64> = theory
            .iter()
            .map(|t| t.stat(name).unwrap_or(f64::NAN))
            .collect();
        th.set_item(name, arr1(py, &t))?;
    }
    d.set_item("value", value)?;
    d.set_item("se", se)?;
    d.set_item("theory", th)?;
    d.set_item("seconds", secs)?;
    Ok(d)
}

/// The pair method from `method` ([`PairMethod::parse`], as the CLI's `--method`).
fn parse_method(s: &str, act: &dlt_theory::Act) -> PyResult<PairMethod> {
    PairMethod::parse(s, &**act).map_err(theory_err)
}

#[allow(clippy::too_many_arguments)]
fn kernel_config(
    activation: &str,
    cb: f64,
    cw: f64,
    depth: i64,
    lambda_b: Option<f64>,
    lambda_w: Option<f64>,
    method: &str,
    threads: i64,
) -> PyResult<KernelConfig> {
    let act = parse(activation).map_err(theory_err)?;
    let method = parse_method(method, &act)?;
    let depth = at_least("--depth", depth, 0)?;
    // The CLI's work bound: each layer costs every pair ≥ 10³ multiply-adds.
    limits::check_work(
        "the kernel recursion",
        "--depth",
        &depth.to_string(),
        limits::prod(&[depth, 1000]),
    )
    .map_err(limit_err)?;
    let mut cfg = KernelConfig::new(act, cb, cw, depth);
    cfg.lambda_b = lambda_b.unwrap_or(cb);
    cfg.lambda_w = lambda_w.unwrap_or(cw);
    cfg.method = method;
    cfg.threads = at_least("--threads", threads, 0)?;
    cfg.validate().map_err(theory_err)?;
    Ok(cfg)
}

/// NNGP kernel K and NTK Θ of an infinitely wide MLP on a data set (`dlt theory kernels`).
#[pyfunction]
#[pyo3(signature = (x, activation, cb, cw, depth, x2=None, lambda_b=None, lambda_w=None, method="auto", threads=0))]
#[allow(clippy::too_many_arguments)]
fn kernels<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    activation: &str,
    cb: f64,
    cw: f64,
    depth: i64,
    x2: Option<&Bound<'py, PyAny>>,
    lambda_b: Option<f64>,
    lambda_w: Option<f64>,
    method: &str,
    threads: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = kernel_config(
        activation, cb, cw, depth, lambda_b, lambda_w, method, threads,
    )?;
    let xm = Matrix::new(x, "--inputs", &[2])?;
    let (n, dim) = xm.dims2("--inputs")?;
    let tm = x2.map(|t| Matrix::new(t, "--inputs2", &[2])).transpose()?;
    let m = match &tm {
        Some(t) => {
            let (m, d2) = t.dims2("--inputs2")?;
            if d2 != dim {
                return Err(value_err(format!(
                    "--inputs2: has {d2} columns but --inputs has {dim}; both must be N×d with the same d"
                )));
            }
            m
        }
        None => 0,
    };
    let (xs, ts) = (xm.data(), tm.as_ref().map(|t| t.data()));
    let k = py
        .allow_threads(|| {
            dataset_kernels(
                &cfg,
                Inputs::new(xs, n, dim),
                ts.map(|t| Inputs::new(t, m, dim)),
                false,
            )
        })
        .map_err(theory_err)?;
    let d = PyDict::new(py);
    d.set_item("nngp", arr2(py, &k.k_train, n, n))?;
    d.set_item("ntk", arr2(py, &k.ntk_train, n, n))?;
    if tm.is_some() {
        d.set_item("nngp_test_train", arr2(py, &k.k_test_train, m, n))?;
        d.set_item("ntk_test_train", arr2(py, &k.ntk_test_train, m, n))?;
    }
    Ok(d)
}

/// Infinite-width predictions on test inputs: the NNGP posterior or the NTK-trained ensemble
/// (`dlt theory predict`).
#[pyfunction]
#[pyo3(signature = (x_train, y_train, x_test, kind, activation, cb, cw, depth, time=None, steps=None, lr=None, noise=0.0, lambda_b=None, lambda_w=None, method="auto", threads=0))]
#[allow(clippy::too_many_arguments)]
fn predict<'py>(
    py: Python<'py>,
    x_train: &Bound<'py, PyAny>,
    y_train: &Bound<'py, PyAny>,
    x_test: &Bound<'py, PyAny>,
    kind: &str,
    activation: &str,
    cb: f64,
    cw: f64,
    depth: i64,
    time: Option<f64>,
    steps: Option<i64>,
    lr: Option<f64>,
    noise: f64,
    lambda_b: Option<f64>,
    lambda_w: Option<f64>,
    method: &str,
    threads: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg = kernel_config(
        activation, cb, cw, depth, lambda_b, lambda_w, method, threads,
    )?;
    let ntk = match kind {
        "nngp" => false,
        "ntk" => true,
        _ => {
            return Err(value_err(format!(
                "--kind: unknown kind '{kind}'; use nngp (Bayesian posterior) or ntk (trained ensemble)"
            )))
        }
    };
    if !ntk {
        for (flag, set) in [
            ("--time", time.is_some()),
            ("--steps", steps.is_some()),
            ("--lr", lr.is_some()),
        ] {
            if set {
                return Err(value_err(format!(
                    "{flag}: applies to --kind ntk only (the NNGP posterior has no training time)"
                )));
            }
        }
    } else if noise != 0.0 {
        return Err(value_err("--noise: applies to --kind nngp only (the NTK ensemble fits the targets exactly as t → ∞); drop it, or use a finite --time"));
    }
    if time.is_some() && steps.is_some() {
        return Err(value_err(
            "--time: cannot be used with --steps (give one of them)",
        ));
    }
    if let Some(lr) = lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(value_err(format!(
                "--lr: the learning rate must be finite and > 0, got {lr}"
            )));
        }
    }
    let time = match (time, steps) {
        (Some(t), _) => {
            if !(t.is_finite() && t >= 0.0) {
                return Err(value_err(format!(
                    "--time: the training time must be finite and ≥ 0, got {t} (omit it for t = ∞)"
                )));
            }
            NtkTime::Flow {
                tau: t * lr.unwrap_or(1.0),
            }
        }
        (None, Some(s)) => {
            let steps = u32::try_from(s).map_err(|_| {
                value_err(format!(
                    "--steps: need a whole number in 0..={}, got {s}",
                    u32::MAX
                ))
            })?;
            let eta = lr.ok_or_else(|| value_err("--lr: --steps needs a learning rate (e.g. --lr 0.1; converges for η < 2/λ_max(Θ))"))?;
            NtkTime::Steps { eta, steps }
        }
        (None, None) => NtkTime::Infinity,
    };
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(value_err(format!(
            "--noise: the observation-noise variance must be finite and ≥ 0, got {noise}"
        )));
    }
    let xm = Matrix::new(x_train, "--train-x", &[2])?;
    let (n, dim) = xm.dims2("--train-x")?;
    let ym = Matrix::new(y_train, "--train-y", &[1, 2])?;
    let (yrows, outputs) = (ym.shape[0], ym.shape.get(1).copied().unwrap_or(1));
    if yrows != n {
        return Err(value_err(format!("--train-y: has {yrows} rows but --train-x has {n}; give one target row per training input")));
    }
    if outputs == 0 {
        return Err(value_err(
            "--train-y: has 0 columns; give at least one output",
        ));
    }
    let tm = Matrix::new(x_test, "--test-x", &[2])?;
    let (m, dt) = tm.dims2("--test-x")?;
    if dt != dim {
        return Err(value_err(format!("--test-x: has {dt} columns but --train-x has {dim}; test inputs must have the training inputs' dimension")));
    }
    let (xs, ys, ts) = (xm.data(), ym.data(), tm.data());
    let pred = py
        .allow_threads(|| {
            let k = dataset_kernels(
                &cfg,
                Inputs::new(xs, n, dim),
                Some(Inputs::new(ts, m, dim)),
                true,
            )?;
            let kb = k.nngp_blocks().expect("test × test block requested");
            if ntk {
                ntk_ensemble(kb, k.ntk_blocks(), ys, outputs, time)
            } else {
                nngp_posterior(kb, ys, outputs, noise)
            }
        })
        .map_err(theory_err)?;
    let d = PyDict::new(py);
    if ym.shape.len() == 1 {
        d.set_item("mean", arr1(py, &pred.mean))?;
    } else {
        d.set_item("mean", arr2(py, &pred.mean, m, outputs))?;
    }
    d.set_item("cov", arr2(py, &pred.cov, m, m))?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// scaling

fn scaling_model(alpha: f64, m: i64, noise: f64) -> PyResult<ScalingModel> {
    let m = at_least("--m", m, 1)?;
    Ok(ScalingModel {
        noise,
        ..ScalingModel::new(alpha, m)
    })
}

/// Expected test loss of the solvable scaling-law model from its deterministic equivalent
/// (Maloney, Roberts, Sully arXiv 2210.16859; docs/derivations/scaling.md): `dlt scaling theory`.
#[pyfunction]
#[pyo3(signature = (alpha, m, n, p, noise=0.0, ridge=0.0))]
fn theory_loss<'py>(
    py: Python<'py>,
    alpha: f64,
    m: i64,
    n: i64,
    p: i64,
    noise: f64,
    ridge: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let model = scaling_model(alpha, m, noise)?;
    let n = at_least("--n", n, 1)?;
    let p = at_least("--p", p, 1)?;
    check_memory(
        "scaling theory",
        &[("--m", model.m.to_string(), limits::prod(&[model.m, 8]))],
    )?;
    let t = py
        .allow_threads(|| dlt_theory::scaling::theory_loss(&model, n, p, ridge))
        .map_err(theory_err)?;
    let d = PyDict::new(py);
    d.set_item("loss", t.loss)?;
    d.set_item("kappa", t.kappa)?;
    Ok(d)
}

/// The sizes of one simulated point (the CLI's `check_point`): the matrices of the seeds that
/// run at once (the (N+1)×M Gram sampler or the P×M design, the P×N features, an N×N or P×P
/// system, the held-out set) must fit in memory.
fn check_point(m: usize, n: usize, p: usize, seeds: usize, test: usize) -> PyResult<()> {
    use limits::{prod, sum};
    let at_once = std::thread::available_parallelism()
        .map_or(1, |v| v.get())
        .min(seeds);
    let each = |t: Option<u64>| t.and_then(|b| b.checked_mul(at_once as u64));
    check_memory(
        "scaling simulate",
        &[
            (
                "--m",
                m.to_string(),
                each(prod(&[n.saturating_add(1), m, 2 * 8])),
            ),
            ("--p", p.to_string(), each(prod(&[p, m, 8]))),
            (
                "--n",
                n.to_string(),
                each(sum(&[
                    prod(&[p, n, 2 * 8]),
                    prod(&[n.min(p), n.min(p), 2 * 8]),
                ])),
            ),
            (
                "--test",
                test.to_string(),
                each(prod(&[test, m.saturating_add(n), 8])),
            ),
            ("--seeds", seeds.to_string(), prod(&[seeds, 3 * 8])),
        ],
    )
}

/// Simulated population loss of the fitted scaling-law model over seeds: `dlt scaling simulate`.
#[pyfunction]
#[pyo3(signature = (alpha, m, n, p, noise=0.0, ridge=0.0, features="linear", seeds=10, seed=0, test=4000))]
#[allow(clippy::too_many_arguments)]
fn simulate<'py>(
    py: Python<'py>,
    alpha: f64,
    m: i64,
    n: i64,
    p: i64,
    noise: f64,
    ridge: f64,
    features: &str,
    seeds: i64,
    seed: u64,
    test: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let model = scaling_model(alpha, m, noise)?;
    let n = at_least("--n", n, 1)?;
    let p = at_least("--p", p, 1)?;
    let seeds = at_least("--seeds", seeds, 1)?;
    let test = at_least("--test", test, 0)?;
    let features: Features = features
        .parse()
        .map_err(|e: String| value_err(format!("--features: {e}")))?;
    if features != Features::Linear && test == 0 {
        return Err(value_err(
            "--test: nonlinear features need held-out samples",
        ));
    }
    check_point(model.m, n, p, seeds, test)?;
    let s = py
        .allow_threads(|| {
            dlt_theory::scaling::simulate(&model, n, p, ridge, features, seeds, seed, test)
        })
        .map_err(theory_err)?;
    let d = PyDict::new(py);
    d.set_item("loss", s.loss)?;
    d.set_item("loss_se", s.loss_se)?;
    d.set_item("median", s.median)?;
    d.set_item("losses", arr1(py, &s.losses))?;
    Ok(d)
}

/// Eigenvalues of the feature second-moment matrix E[φφᵀ] of N features of the model with
/// exponent α and M latent modes (arXiv 2210.16859; docs/derivations/scaling.md#feature-spectrum),
/// their numerical rank and log–log slopes: `dlt scaling spectrum --json`, with the eigenvalues
/// as a float64 array.
#[pyfunction]
#[pyo3(signature = (alpha, m, n, features="relu", samples=20000, seed=0))]
fn spectrum<'py>(
    py: Python<'py>,
    alpha: f64,
    m: i64,
    n: i64,
    features: &str,
    samples: i64,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let m = at_least("--m", m, 1)?;
    let n = at_least("--n", n, 1)?;
    let samples = at_least("--samples", samples, 0)?;
    let features: Features = features
        .parse()
        .map_err(|e: String| value_err(format!("--features: {e}")))?;
    limits::scaling_spectrum(m, n, samples, features == Features::Tanh).map_err(limit_err)?;
    let (ev, v) = py
        .allow_threads(|| dlt_studies::scaling::spectrum(alpha, m, n, features, samples, seed))
        .map_err(study_err)?;
    let d = PyDict::new(py);
    for k in ["alpha", "m", "n", "features", "rank", "slopes"] {
        d.set_item(k, json_to_py(py, &v[k])?)?;
    }
    d.set_item("eigenvalues", arr1(py, &ev))?;
    Ok(d)
}

/// A study-crate error: a theory error as [`theory_err`], an I/O failure by its kind, a
/// language-model error as [`llm_err`], a data error as [`data_err`], others `ValueError`.
fn study_err(e: dlt_studies::StudyError) -> PyErr {
    use dlt_studies::StudyError as E;
    match e {
        E::Theory(t) => theory_err(t),
        E::Output(dlt_studies::output::OutputError::Io { ref source, .. }) => {
            io_err(source, e.to_string())
        }
        E::Nn(n) => data_err(n),
        E::Llm(l) => llm_err(l),
        other => value_err(other.to_string()),
    }
}

/// A `dlt-nn` data/file error: a missing file or data set is `FileNotFoundError`, another I/O
/// failure `OSError` (by kind), a malformed or unusable one `ValueError`; the message as the CLI
/// prints it.
fn data_err(e: NnError) -> PyErr {
    let msg = e.to_string();
    match &e {
        NnError::Io { source, .. } => io_err(source, msg),
        NnError::Data { problem, .. }
            if problem.contains("does not exist") || problem.starts_with("not found") =>
        {
            PyFileNotFoundError::new_err(msg)
        }
        NnError::Data { .. } => PyOSError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// A `dlt-llm` error: a model path that does not exist is `FileNotFoundError`, an I/O failure
/// by its kind, a malformed file or a bad argument `ValueError`, a tensor failure
/// `RuntimeError`; the message as the CLI prints it.
fn llm_err(e: dlt_llm::LlmError) -> PyErr {
    use dlt_llm::LlmError as E;
    let msg = e.to_string();
    match &e {
        E::Io { source, .. } => io_err(source, msg),
        E::File { problem, .. } if problem.contains("no such file") => {
            PyFileNotFoundError::new_err(msg)
        }
        E::File { .. } | E::Invalid { .. } => PyValueError::new_err(msg),
        E::Candle(_) => PyRuntimeError::new_err(msg),
    }
}

// ---------------------------------------------------------------------------------------------
// studies

/// The registered studies: a list of dicts with `name`, `title`, `paper`.
#[pyfunction]
fn list(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let l = PyList::empty(py);
    for e in dlt_studies::registry() {
        let d = PyDict::new(py);
        d.set_item("name", e.name())?;
        d.set_item("title", e.title())?;
        d.set_item("paper", e.paper())?;
        l.append(d)?;
    }
    Ok(l)
}

/// Run (or reuse) one study as `dlt reproduce --only NAME` does, under `out/NAME/`, and return
/// its results.json as a dict (with `claims`, `figures`, `seconds`, `config_hash`).
#[pyfunction]
#[pyo3(signature = (name, quick=true, out=None, seed=0, force=false, quiet=true))]
fn run(
    py: Python<'_>,
    name: &str,
    quick: bool,
    out: Option<PathBuf>,
    seed: u64,
    force: bool,
    quiet: bool,
) -> PyResult<PyObject> {
    let all = dlt_studies::registry();
    let known: Vec<&str> = all.iter().map(|e| e.name()).collect();
    let Some(entry) = all.iter().find(|e| e.name() == name).copied() else {
        return Err(value_err(format!(
            "unknown study '{name}'; the studies are {}",
            known.join(", ")
        )));
    };
    let out = out.unwrap_or_else(|| PathBuf::from("out"));
    let root = dlt_studies::output::OutDir::create(&out).map_err(|e| match &e {
        dlt_studies::output::OutputError::Io { source, .. } => io_err(source, e.to_string()),
        _ => PyOSError::new_err(e.to_string()),
    })?;
    let opts = dlt_studies::Options {
        quick,
        seed,
        quiet,
        force,
    };
    let section = py.allow_threads(|| entry.reproduce(&root, &opts));
    if let Some(err) = section.error {
        return Err(PyRuntimeError::new_err(format!("study {name}: {err}")));
    }
    let path = root.path(name).join("results.json");
    results_at(py, &path)
}

fn results_at(py: Python<'_>, path: &Path) -> PyResult<PyObject> {
    let bytes = std::fs::read(path).map_err(|e| io_err(&e, format!("{}: {e}", path.display())))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| value_err(format!("{}: not valid JSON: {e}", path.display())))?;
    json_to_py(py, &v)
}

/// Read a study's results.json (e.g. of an earlier `dlt reproduce`) as a dict.
#[pyfunction]
fn results(py: Python<'_>, path: PathBuf) -> PyResult<PyObject> {
    results_at(py, &path)
}

/// The O(1/n) coefficient of the mean GD trajectory of one trained input (PDLT ch. ∞;
/// docs/derivations/trained.md#finite-width-trajectory): E[z_t] = infinite + coefficient/n,
/// from the recursions' output statistics at `depth` (C_b = `cb`, λ_b, λ_W as given; K^(1) =
/// `k1`, default C_b + C_W, i.e. |x|²/n₀ = 1), for GD with η = eta_theta/Θ towards target `y`.
/// With `test_cos`, also C_β(t) on a test input of the same norm at that cosine to the training
/// input (docs/derivations/trained_test_input.md; C_b = λ_b = 0).
#[pyfunction]
#[pyo3(signature = (activation, cw, depth, eta_theta=0.5, y=1.0, steps=8, cb=0.0, k1=None, lambda_b=0.0, lambda_w=None, test_cos=None))]
#[allow(clippy::too_many_arguments)]
fn trajectory<'py>(
    py: Python<'py>,
    activation: &Bound<'py, PyAny>,
    cw: f64,
    depth: i64,
    eta_theta: f64,
    y: f64,
    steps: i64,
    cb: f64,
    k1: Option<f64>,
    lambda_b: f64,
    lambda_w: Option<f64>,
    test_cos: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    use dlt_theory::trajectory::test_input::{
        test_input_stats, test_input_trajectory, TestInputConfig, TestPoint, DEFAULT_NODES,
    };
    use dlt_theory::trajectory::{mean_trajectory, OutputStats, TrajectoryPoint};
    let depth = at_least("--depth", depth, 2)?;
    let steps = at_least("--steps", steps, 1)?;
    at_most(
        "--steps",
        steps,
        1 << 24,
        "the coefficient has decayed long before",
    )?;
    let (act, user) = activation_arg(activation, (None, None, None), false)?;
    let pc = ProfileConfig {
        ensemble: Ensemble::new(act, cb, cw),
        k1: k1.unwrap_or(cb + cw),
        v1: 0.0,
        depth,
        lr: learning_rates(lambda_b, lambda_w.unwrap_or(cw), false)?,
    };
    if let Some(c) = test_cos {
        if !(c > -1.0 && c < 1.0) || cb != 0.0 || lambda_b != 0.0 {
            return Err(PyValueError::new_err(format!(
                "--test-cos: the test-input theory needs a cosine in (−1, 1) and C_b = λ_b = 0 \
                 (got cos {c}, C_b {cb}, λ_b {lambda_b})"
            )));
        }
    }
    let act_test = pc.ensemble.act.clone();
    let res = py.allow_threads(|| {
        let s = OutputStats::at_output(&pc)?;
        let eta = eta_theta / s.theta;
        let pts = mean_trajectory(&s, eta, y, steps)?;
        let test = match test_cos {
            None => None,
            Some(c) => {
                let g = pc.k1 / cw;
                let ts = test_input_stats(
                    &*act_test,
                    &TestInputConfig {
                        depth,
                        cw,
                        lambda_w: pc.lr.lambda_w,
                        gram: [g, g * c, g],
                        nodes: DEFAULT_NODES,
                    },
                )?;
                Some((ts, test_input_trajectory(&ts, eta, y, steps)?))
            }
        };
        Ok::<_, TheoryError>((s, pts, test))
    });
    user_error(&user)?;
    let (s, pts, test) = res.map_err(theory_err)?;
    let d = PyDict::new(py);
    let t: Vec<i64> = pts.iter().map(|p| p.t as i64).collect();
    d.set_item("t", PyArray1::from_vec(py, t.clone()))?;
    type Get = fn(&TrajectoryPoint) -> f64;
    let cols: [(&str, Get); 6] = [
        ("infinite", |p| p.infinite),
        ("coefficient", |p| p.coefficient),
        ("theta1_term", |p| p.theta1_term),
        ("variance_term", |p| p.variance_term),
        ("dntk_term", |p| p.dntk_term),
        ("ddntk_term", |p| p.ddntk_term),
    ];
    for (name, g) in cols {
        d.set_item(name, arr1(py, &pts.iter().map(g).collect::<Vec<_>>()))?;
    }
    if let Some((ts, tp)) = test {
        let dt = PyDict::new(py);
        dt.set_item("t", PyArray1::from_vec(py, t))?;
        type GetT = fn(&TestPoint) -> f64;
        let cols: [(&str, GetT); 6] = [
            ("infinite", |p| p.infinite),
            ("coefficient", |p| p.coefficient),
            ("theta1_term", |p| p.theta1_term),
            ("fluctuation_term", |p| p.fluctuation_term),
            ("dntk_term", |p| p.dntk_term),
            ("ddntk_term", |p| p.ddntk_term),
        ];
        for (name, g) in cols {
            dt.set_item(name, arr1(py, &tp.iter().map(g).collect::<Vec<_>>()))?;
        }
        let st = serde_json::to_value(ts).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        dt.set_item("stats", json_to_py(py, &st)?)?;
        d.set_item("test_input", dt)?;
    }
    d.set_item("eta", eta_theta / s.theta)?;
    let st = serde_json::to_value(s).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    d.set_item("stats", json_to_py(py, &st)?)?;
    Ok(d)
}

/// The O(1/n) correction of the GD-trained mean on test inputs for networks with `depth` − 1 ≥ 1
/// hidden layers (`dlt theory finite-width`; docs/derivations/trained_dataset.md):
/// E[z_t] = infinite + coefficient/n at every step t, on the training and the test inputs.
#[pyfunction]
#[pyo3(signature = (x_train, y_train, x_test, activation, steps, cw=1.0, lambda_w=None, lr=None, nodes=32, depth=2))]
#[allow(clippy::too_many_arguments)]
fn finite_width<'py>(
    py: Python<'py>,
    x_train: &Bound<'py, PyAny>,
    y_train: &Bound<'py, PyAny>,
    x_test: &Bound<'py, PyAny>,
    activation: &str,
    steps: i64,
    cw: f64,
    lambda_w: Option<f64>,
    lr: Option<f64>,
    nodes: i64,
    depth: i64,
) -> PyResult<Bound<'py, PyDict>> {
    use dlt_theory::trajectory::dataset::finite_width_prediction;
    let depth = at_least("--depth", depth, 2)?;
    let steps = at_least("--steps", steps, 1)?;
    at_most(
        "--steps",
        steps,
        1_000_000,
        "the coefficient has converged long before",
    )?;
    let nodes = at_least("--nodes", nodes, 4)?;
    let act = dlt_theory::activation::parse(activation).map_err(theory_err)?;
    let xm = Matrix::new(x_train, "--train-x", &[2])?;
    let (na, dim) = xm.dims2("--train-x")?;
    let ym = Matrix::new(y_train, "--train-y", &[1])?;
    if ym.shape[0] != na {
        return Err(value_err(format!(
            "--train-y: has {} targets but --train-x has {na} rows; give one target per training input (one output)",
            ym.shape[0]
        )));
    }
    let tm = Matrix::new(x_test, "--test-x", &[2])?;
    let (nb, dt) = tm.dims2("--test-x")?;
    if dt != dim {
        return Err(value_err(format!("--test-x: has {dt} columns but --train-x has {dim}; test inputs must have the training inputs' dimension")));
    }
    if na + nb > 24 {
        return Err(value_err(format!("--train-x/--test-x: {na} + {nb} inputs; the statistics grow as (N_A + N_B)⁴ four-dimensional integrals, so at most 24 together")));
    }
    let (xs, ys, ts) = (xm.data(), ym.data(), tm.data());
    let pred = py
        .allow_threads(|| {
            finite_width_prediction(
                &*act,
                (cw, lambda_w.unwrap_or(cw)),
                depth,
                xs,
                ys,
                ts,
                dim,
                steps,
                lr,
                nodes,
            )
        })
        .map_err(theory_err)?;
    let traj = &pred.trajectory;
    let rows = traj.len();
    let d = PyDict::new(py);
    let t: Vec<i64> = traj.iter().map(|p| p.t as i64).collect();
    d.set_item("t", PyArray1::from_vec(py, t))?;
    type Get = fn(&dlt_theory::trajectory::dataset::DatasetPoint) -> &Vec<f64>;
    let cols: [(&str, Get); 6] = [
        ("infinite", |p| &p.infinite),
        ("coefficient", |p| &p.coefficient),
        ("theta1_term", |p| &p.theta1_term),
        ("variance_term", |p| &p.variance_term),
        ("dntk_term", |p| &p.dntk_term),
        ("ddntk_term", |p| &p.ddntk_term),
    ];
    for (name, g) in cols {
        let test: Vec<f64> = traj.iter().flat_map(|p| g(p)[na..].to_vec()).collect();
        d.set_item(name, arr2(py, &test, rows, nb))?;
        if name == "infinite" || name == "coefficient" {
            let train: Vec<f64> = traj.iter().flat_map(|p| g(p)[..na].to_vec()).collect();
            d.set_item(format!("train_{name}"), arr2(py, &train, rows, na))?;
        }
    }
    d.set_item("eta", pred.eta)?;
    d.set_item("lambda_max", pred.lambda_max)?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// the module

#[pymodule]
fn _dltlab(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let theory = PyModule::new(py, "theory")?;
    theory.add_function(wrap_pyfunction!(criticality, &theory)?)?;
    theory.add_function(wrap_pyfunction!(activations, &theory)?)?;
    theory.add_function(wrap_pyfunction!(profile, &theory)?)?;
    theory.add_function(wrap_pyfunction!(mc, &theory)?)?;
    theory.add_function(wrap_pyfunction!(kernels, &theory)?)?;
    theory.add_function(wrap_pyfunction!(predict, &theory)?)?;
    theory.add_function(wrap_pyfunction!(trajectory, &theory)?)?;
    theory.add_function(wrap_pyfunction!(finite_width, &theory)?)?;
    theory.add_function(wrap_pyfunction!(profile_multi, &theory)?)?;
    m.add_submodule(&theory)?;
    let scaling = PyModule::new(py, "scaling")?;
    scaling.add_function(wrap_pyfunction!(theory_loss, &scaling)?)?;
    scaling.add_function(wrap_pyfunction!(simulate, &scaling)?)?;
    scaling.add_function(wrap_pyfunction!(spectrum, &scaling)?)?;
    m.add_submodule(&scaling)?;
    let studies = PyModule::new(py, "studies")?;
    studies.add_function(wrap_pyfunction!(list, &studies)?)?;
    studies.add_function(wrap_pyfunction!(run, &studies)?)?;
    studies.add_function(wrap_pyfunction!(results, &studies)?)?;
    m.add_submodule(&studies)?;
    m.add_submodule(&collapse::module(py)?)?;
    m.add_submodule(&prune::module(py)?)?;
    m.add_submodule(&data::module(py)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
