//! `dltlab.prune`: angular-distance layer pruning of Llama-architecture LLMs (Gromov et al.,
//! "The Unreasonable Ineffectiveness of the Deeper Layers", arXiv 2403.17887;
//! docs/derivations/prune.md) on the user's own model and text: load a GGUF file or a Hugging
//! Face safetensors folder (`dlt_llm::load`), tokenize, the (n, l) angular-distance table,
//! drop a block range, perplexity, export (GGUF or safetensors). Checks and messages are those
//! of `dlt prune distances|eval|run`.

use super::{arr1, arr2, check_memory, data_err, limits, llm_err, study_err, value_err};
use dlt_llm::probe::{angular_distances, sequences, Position};
use dlt_llm::{Checkpoint, Llama};
use numpy::PyArray1;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::path::PathBuf;
use std::sync::Arc;

/// A loaded model: the checkpoint it came from (for export), the model with its current
/// blocks, and the source block of each current block.
#[pyclass(module = "dltlab.prune", name = "Model", frozen)]
struct Model {
    ck: Arc<Checkpoint>,
    model: Arc<Llama>,
    origin: Vec<usize>,
}

/// The model path: the given one, or SmolLM2-135M-Instruct (Q4_1 GGUF), fetched into the cache
/// if it is nowhere else (as `dlt prune … ` without `--model`).
fn model_path(py: Python<'_>, path: Option<PathBuf>) -> PyResult<PathBuf> {
    use dlt_nn::data::fetch::{locate, Dataset};
    match path {
        Some(p) => Ok(p),
        None => py
            .allow_threads(|| locate(Dataset::Smollm2, None, true))
            .map(|(p, _)| p)
            .map_err(data_err),
    }
}

/// Load a `.gguf` file or a Hugging Face directory (`config.json`, `*.safetensors`,
/// `tokenizer.json`); weights are dequantised to f32. Without a path: SmolLM2-135M-Instruct.
#[pyfunction]
#[pyo3(signature = (path=None))]
fn load(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Model> {
    let p = model_path(py, path)?;
    let ck = py.allow_threads(|| dlt_llm::load(&p)).map_err(llm_err)?;
    let origin = ck.model.all_blocks();
    let model = Arc::new(ck.model.clone());
    Ok(Model {
        ck: Arc::new(ck),
        model,
        origin,
    })
}

/// Read a corpus: a UTF-8 text file, or JSON lines with a `"text"` field (documents joined by
/// a blank line), at most 1 GiB.
#[pyfunction]
fn read_text(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.allow_threads(|| dlt_llm::eval::read_corpus(&path))
        .map_err(llm_err)
}

/// (first 90 %, last 10 %) of a corpus, cut at a line break: the training and held-out text of
/// `dlt prune` (default: Shakespeare's plays, fetched if missing).
#[pyfunction]
#[pyo3(signature = (path=None))]
fn split_text(py: Python<'_>, path: Option<PathBuf>) -> PyResult<(String, String)> {
    use dlt_nn::data::fetch::{locate, Dataset};
    let p = match path {
        Some(p) => p,
        None => py
            .allow_threads(|| locate(Dataset::Shakespeare, None, true))
            .map(|(p, _)| p)
            .map_err(data_err)?,
    };
    py.allow_threads(|| dlt_studies::prune::split_text(&p))
        .map_err(study_err)
}

impl Model {
    /// Token ids of `text`: a str is tokenized, anything else is read as a sequence of ids.
    fn tokens(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        if let Ok(s) = text.downcast::<PyString>() {
            let s = s.to_cow()?;
            return py
                .allow_threads(|| self.ck.tokenizer.encode(&s))
                .map_err(llm_err);
        }
        let ids: Vec<i64> = text.extract().map_err(|_| {
            PyTypeError::new_err(
                "text: give a str or a sequence of token ids (e.g. from Model.tokenize)",
            )
        })?;
        let vocab = self.model.cfg.vocab;
        ids.iter()
            .map(|&i| {
                u32::try_from(i)
                    .ok()
                    .filter(|&u| (u as usize) < vocab)
                    .ok_or_else(|| {
                        value_err(format!(
                            "text: token id {i} is not in the vocabulary 0..{vocab}"
                        ))
                    })
            })
            .collect()
    }
}

#[pymethods]
impl Model {
    /// Number of transformer blocks L.
    #[getter]
    fn n_layers(&self) -> usize {
        self.model.blocks.len()
    }

    /// Residual-stream width d.
    #[getter]
    fn hidden(&self) -> usize {
        self.model.cfg.hidden
    }

    /// Vocabulary size.
    #[getter]
    fn vocab(&self) -> usize {
        self.model.cfg.vocab
    }

    /// For each block, its index in the loaded checkpoint (0..L₀; gaps where blocks were
    /// dropped), int64.
    #[getter]
    fn blocks<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let b: Vec<i64> = self.origin.iter().map(|&b| b as i64).collect();
        PyArray1::from_slice(py, &b)
    }

    /// Storage types of the weights in the file, e.g. {"Q4_1": 210, "F32": 61, "Q8_0": 1}.
    #[getter]
    fn weight_types(&self) -> std::collections::BTreeMap<String, usize> {
        self.ck.weight_types.clone()
    }

    /// The file or folder the checkpoint was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        match &self.ck.source {
            dlt_llm::Source::Gguf { path, .. } => path.clone(),
            dlt_llm::Source::Safetensors { dir } => dir.clone(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<dltlab.prune.Model {} blocks, width {}, from {}>",
            self.n_layers(),
            self.hidden(),
            self.path().display()
        )
    }

    /// Token ids of `text` (uint32), as `dlt prune tokenize`.
    fn tokenize<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let ids = py
            .allow_threads(|| self.ck.tokenizer.encode(text))
            .map_err(llm_err)?;
        Ok(PyArray1::from_slice(py, &ids))
    }

    /// The text of token ids.
    fn decode(&self, ids: Vec<u32>) -> String {
        self.ck.tokenizer.decode(&ids)
    }

    /// The (n, l) table of mean angular distances d(x^(l), x^(l+n)) over `samples` sequences of
    /// `len` tokens cut evenly from `text` (arXiv 2403.17887 §3.2 eq. (7);
    /// docs/derivations/prune.md#angular-distance), as `dlt prune distances --json`.
    #[pyo3(signature = (text, samples=32, len=256, all_tokens=false))]
    fn distances<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        samples: i64,
        len: i64,
        all_tokens: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        if samples < 1 {
            return Err(value_err(format!("--samples {samples}: must be ≥ 1")));
        }
        if len < 1 {
            return Err(value_err(format!("--len {len}: must be ≥ 1 token")));
        }
        let (samples, len) = (samples as usize, len as usize);
        check_memory(
            "prune distances",
            &[
                (
                    "--samples",
                    samples.to_string(),
                    limits::prod(&[samples, len, 64 * 4]),
                ),
                ("--len", len.to_string(), limits::prod(&[len, len, 4])),
            ],
        )?;
        let toks = self.tokens(py, text)?;
        let avail = toks.len() / len;
        if samples > avail {
            return Err(value_err(format!(
                "--samples {samples}: the held-out text gives only {avail} sequences of --len {len} tokens; use --samples ≤ {avail}, a smaller --len or a longer --text"
            )));
        }
        let pos = if all_tokens {
            Position::AllTokens
        } else {
            Position::LastToken
        };
        let d = py
            .allow_threads(|| {
                let seqs = sequences(&toks, len, samples)?;
                angular_distances(&self.model, &seqs, pos, |_, _| {})
            })
            .map_err(llm_err)?;
        let r = dlt_studies::prune::distances_results(&d);
        let l_tot = d.n_layers;
        let square = |t: &[Vec<f64>]| {
            let mut v = vec![f64::NAN; l_tot * (l_tot + 1)];
            for (n1, row) in t.iter().enumerate() {
                v[n1 * (l_tot + 1)..n1 * (l_tot + 1) + row.len()].copy_from_slice(row);
            }
            v
        };
        let out = PyDict::new(py);
        for k in [
            "n_layers",
            "samples",
            "tokens_per_sample",
            "position",
            "best",
        ] {
            out.set_item(k, super::json_to_py(py, &r[k])?)?;
        }
        out.set_item("table", arr2(py, &square(&d.table), l_tot, l_tot + 1))?;
        out.set_item("se", arr2(py, &square(&d.se), l_tot, l_tot + 1))?;
        Ok(out)
    }

    /// Perplexity exp(mean NLL) of the model on `text` (str or token ids): non-overlapping
    /// windows of `ctx` tokens, each scored on its next-token predictions (only the second half
    /// with `second_half`, as llama.cpp's llama-perplexity); at most `tokens` tokens
    /// (docs/derivations/prune.md#protocol). As `dlt prune eval --json`, plus the per-token
    /// NLL (float64) for paired comparisons.
    #[pyo3(signature = (text, ctx=512, tokens=None, second_half=false))]
    fn perplexity<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        ctx: i64,
        tokens: Option<i64>,
        second_half: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let min_ctx = if second_half { 3 } else { 2 };
        if ctx < min_ctx {
            return Err(value_err(format!(
                "--ctx {ctx}: a window of {ctx} tokens scores nothing; use --ctx ≥ {min_ctx}"
            )));
        }
        if let Some(n) = tokens {
            if n < ctx {
                return Err(value_err(format!(
                    "--tokens {n}: fewer than one window of --ctx {ctx} tokens; use --tokens ≥ {ctx} or a smaller --ctx"
                )));
            }
        }
        let ctx = ctx as usize;
        check_memory(
            "prune eval",
            &[("--ctx", ctx.to_string(), limits::prod(&[ctx, ctx, 4]))],
        )?;
        let mut toks = self.tokens(py, text)?;
        if let Some(n) = tokens {
            toks.truncate(n as usize);
        }
        let (r, secs) = py
            .allow_threads(|| {
                let t0 = std::time::Instant::now();
                let r = dlt_llm::eval::perplexity(
                    &self.model,
                    &self.model.all_blocks(),
                    &toks,
                    ctx,
                    if second_half { ctx / 2 } else { 0 },
                    |_, _| {},
                )?;
                Ok::<_, dlt_llm::LlmError>((r, t0.elapsed().as_secs_f64()))
            })
            .map_err(llm_err)?;
        let v = dlt_studies::prune::eval_results(&r, secs, &self.ck.weight_types);
        let out = PyDict::new(py);
        if let serde_json::Value::Object(m) = &v {
            for (k, x) in m {
                out.set_item(k, super::json_to_py(py, x)?)?;
            }
        }
        out.set_item("token_nll", arr1(py, &r.token_nll))?;
        Ok(out)
    }

    /// A new model without blocks start..end (0-based, end-exclusive, of this model's blocks;
    /// at least one block stays). The weights are shared, not copied.
    fn drop(&self, start: i64, end: i64) -> PyResult<Model> {
        let l = self.model.blocks.len();
        if !(0 <= start && start < end && end as usize <= l && ((end - start) as usize) < l) {
            let spec = format!("{start}..{end}");
            return Err(value_err(format!(
                "--drop {spec:?}: not a block range START..END with START < END ≤ {l} (0-based, end-exclusive, e.g. 13..19)"
            )));
        }
        let (start, end) = (start as usize, end as usize);
        let kept: Vec<usize> = (0..l).filter(|&i| i < start || i >= end).collect();
        let model = self.model.with_blocks(&kept).map_err(llm_err)?;
        Ok(Model {
            ck: self.ck.clone(),
            model: Arc::new(model),
            origin: kept.iter().map(|&i| self.origin[i]).collect(),
        })
    }

    /// Write the model: a GGUF file (the kept blocks' tensors copied as stored in the source,
    /// so that llama.cpp loads it), or with `safetensors=True` a Hugging Face Llama folder (f32).
    /// Returns the path.
    #[pyo3(signature = (path, safetensors=false))]
    fn export(&self, py: Python<'_>, path: PathBuf, safetensors: bool) -> PyResult<PathBuf> {
        py.allow_threads(|| {
            if safetensors {
                dlt_llm::export::write_safetensors(&self.model, &self.ck.tokenizer, &path)
            } else {
                dlt_llm::export::write_gguf(
                    &self.ck,
                    &self.model,
                    &self.origin,
                    dlt_llm::export::Requant::Unchanged,
                    &path,
                )
            }
        })
        .map_err(llm_err)?;
        Ok(path)
    }
}

/// The `prune` submodule.
pub(super) fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "prune")?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(load, &m)?)?;
    m.add_function(wrap_pyfunction!(read_text, &m)?)?;
    m.add_function(wrap_pyfunction!(split_text, &m)?)?;
    Ok(m)
}
