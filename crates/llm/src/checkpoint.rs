//! Load a Llama-architecture checkpoint: a GGUF file (any quantisation candle reads; weights
//! are dequantised to f32, which on CPU runs ≈ 15× faster than candle's scalar Q4_1 kernels)
//! or a Hugging Face directory (`config.json`, `*.safetensors`, `tokenizer.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use crate::model::{
    gemma3_global, Block, Gemma3Config, GemmaBlock, Linear, Llama, LlamaConfig, RopeStyle,
};
use crate::tokenizer::Tokenizer;
use crate::{one_line, LlmError, Result};

/// Where a model came from (export copies GGUF tensors as they are).
#[derive(Debug)]
pub enum Source {
    /// A GGUF file.
    Gguf {
        /// The file.
        path: PathBuf,
        /// Its parsed header: metadata and tensor infos.
        content: Content,
    },
    /// A Hugging Face directory (`config.json`, `*.safetensors`, `tokenizer.json`).
    Safetensors {
        /// The directory.
        dir: PathBuf,
    },
}

/// A loaded model, its tokenizer and its source.
#[derive(Debug)]
pub struct Checkpoint {
    /// The model, weights dequantised to f32.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The file or directory it was loaded from.
    pub source: Source,
    /// Storage types of the weights in the file, e.g. `{"Q4_1": 210, "F32": 61, "Q8_0": 1}`.
    pub weight_types: std::collections::BTreeMap<String, usize>,
}

/// RoPE layout of each GGUF architecture we run (llama.cpp `llama-arch.cpp`, rope type).
fn gguf_rope_style(arch: &str) -> Option<RopeStyle> {
    match arch {
        "llama" | "mistral" | "granite" => Some(RopeStyle::Interleaved),
        // Gemma's converter keeps Hugging Face's Q/K row order; llama.cpp ropes it NEOX-style.
        "gemma3" => Some(RopeStyle::Half),
        _ => None,
    }
}

/// Load a `.gguf` file or a safetensors directory.
pub fn load(path: &Path) -> Result<Checkpoint> {
    if path.is_dir() {
        load_safetensors_dir(path)
    } else if path.exists() {
        load_gguf(path)
    } else {
        Err(LlmError::file(
            path,
            "no such file or directory",
            "pass a .gguf file or a Hugging Face model directory (or --model smollm2 / gemma3); `dlt data fetch smollm2` fetches SmolLM2-135M-Instruct (Q4_1 GGUF), `dlt data fetch gemma3` Gemma 3 270M (Q4_K_M GGUF), and `dlt data path NAME` prints its path",
        ))
    }
}

/// The number of transformer blocks a model declares, read from its header alone (GGUF
/// metadata, or `config.json` of a safetensors directory), so that a flag such as `--drop` can
/// be checked before the weights are loaded. `None` when the header cannot be read; [`load`]
/// then reports why.
pub fn declared_blocks(path: &Path) -> Option<usize> {
    if path.is_dir() {
        let text = std::fs::read_to_string(path.join("config.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        return usize::try_from(v.get("num_hidden_layers")?.as_u64()?).ok();
    }
    let len = crate::regular_file(path).ok()?.len();
    let mut f = std::fs::File::open(path).ok()?;
    crate::gguf_check::check_alignment(path, &mut f, len).ok()?;
    let content = Content::read(&mut f).ok()?;
    let arch = content
        .metadata
        .get("general.architecture")?
        .to_string()
        .ok()?;
    let n: u64 = match *content.metadata.get(&format!("{arch}.block_count"))? {
        Value::U8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::U64(x) => x,
        Value::I32(x) => u64::try_from(x).ok()?,
        Value::I64(x) => u64::try_from(x).ok()?,
        _ => return None,
    };
    usize::try_from(n).ok()
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> LlmError {
    LlmError::file(
        path,
        format!("not a readable GGUF file ({})", one_line(e)),
        "the file is truncated or corrupt: fetch it again (for SmolLM2: `dlt data fetch smollm2` replaces a cached copy that fails its SHA-256)",
    )
}

/// A short printable rendering of a GGUF metadata value.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => one_line(format!("{:?}", s.chars().take(40).collect::<String>())),
        Value::Array(a) => format!("an array of {} values", a.len()),
        v => format!("{v:?}"),
    }
}

/// A configuration that [`LlamaConfig::validate`] rejects, reported against the file.
fn inconsistent(path: &Path, e: LlmError) -> LlmError {
    let problem = match e {
        LlmError::Invalid { what, problem } => format!("{what}: {problem}"),
        e => one_line(e),
    };
    LlmError::file(
        path,
        problem,
        "the model's sizes are inconsistent: fix the metadata or export the model again",
    )
}

/// Number of consecutive blocks 0, 1, … whose first tensor is present (bounded by the number
/// of tensors, so a huge declared block count never sizes an allocation).
fn blocks_present(has: impl Fn(&str) -> bool, name: impl Fn(usize) -> String) -> usize {
    (0..).take_while(|&l| has(&name(l))).count()
}

/// The type of each block of a Gemma 3 GGUF (true = global), as llama.cpp 0.3.36 reads it
/// (`load_swa_pattern`): the per-block list `gemma3.attention.sliding_window_pattern` (true =
/// local) when present — our pruned exports write it — else l % 6 == 5 ([`gemma3_global`]),
/// and every block global when the file has no sliding window.
fn gemma3_block_types(path: &Path, meta: &HashMap<String, Value>, n: usize) -> Result<Vec<bool>> {
    let key = "gemma3.attention.sliding_window_pattern";
    let no_window = !matches!(
        meta.get("gemma3.attention.sliding_window").and_then(|v| v.to_u32().ok()),
        Some(w) if w > 0
    );
    if no_window {
        return Ok(vec![true; n]);
    }
    match meta.get(key) {
        None => Ok((0..n).map(gemma3_global).collect()),
        Some(Value::Array(a)) => {
            let local: Option<Vec<bool>> = a
                .iter()
                .map(|v| match *v {
                    Value::Bool(b) => Some(b),
                    Value::U32(x) => Some(x != 0),
                    Value::I32(x) => Some(x != 0),
                    _ => None,
                })
                .collect();
            match local {
                Some(l) if l.len() >= n => Ok(l[..n].iter().map(|&s| !s).collect()),
                _ => Err(LlmError::file(
                    path,
                    format!("{key} is not a list of {n} booleans"),
                    "fix the metadata or export the model again",
                )),
            }
        }
        // A single period (llama.cpp reads it as `n_pattern`).
        Some(v) => match v.to_u32() {
            Ok(0) => Ok(vec![false; n]),
            Ok(p) => Ok((0..n).map(|l| l % p as usize == p as usize - 1).collect()),
            _ => Err(LlmError::file(
                path,
                format!("{key} = {} is neither a list nor a period", show(v)),
                "fix the metadata or export the model again",
            )),
        },
    }
}

/// Refuse a GGUF that asks for something our forward does not compute, rather than run a
/// model that silently differs from the one in the file: RoPE scaling (`{arch}.rope.scaling.*`
/// with a type other than `none` or a factor other than 1, as Gemma 3 ≥ 1B's global blocks and
/// long-context Llamas use; a `rope_freqs.weight` tensor, Llama 3.1's per-frequency factors),
/// logit soft-capping (`{arch}.attn_logit_softcapping`, `{arch}.final_logit_softcapping`, as
/// Gemma 2), and Gemma 3 27B (62 blocks), whose queries llama.cpp scales by 1/√(d/heads)
/// rather than 1/√(head width), a choice it makes from the model size, not from metadata.
fn refuse_unimplemented(
    path: &Path,
    arch: &str,
    meta: &HashMap<String, Value>,
    has_tensor: impl Fn(&str) -> bool,
) -> Result<()> {
    let refuse = |what: String| {
        Err(LlmError::file(
            path,
            format!("{what}, which dlt's forward does not compute"),
            "use a model without it (dlt runs Llama-architecture models and Gemma 3 270M/1B); running it would give numbers that silently differ from the model's",
        ))
    };
    let number = |v: &Value| -> Option<f64> {
        Some(match *v {
            Value::F32(x) => x.into(),
            Value::F64(x) => x,
            Value::U8(x) => x.into(),
            Value::U16(x) => x.into(),
            Value::U32(x) => x.into(),
            Value::U64(x) => x as f64,
            Value::I8(x) => x.into(),
            Value::I16(x) => x.into(),
            Value::I32(x) => x.into(),
            Value::I64(x) => x as f64,
            _ => return None,
        })
    };
    let scaling_type = format!("{arch}.rope.scaling.type");
    if let Some(v) = meta.get(&scaling_type) {
        match v.to_string() {
            Ok(t) if t == "none" => {}
            _ => return refuse(format!("RoPE scaling ({scaling_type} = {})", show(v))),
        }
    }
    let factor = format!("{arch}.rope.scaling.factor");
    if let Some(v) = meta.get(&factor) {
        if number(v).is_none_or(|x| x != 0.0 && x != 1.0) {
            return refuse(format!("RoPE scaling ({factor} = {})", show(v)));
        }
    }
    if has_tensor("rope_freqs.weight") {
        return refuse("per-frequency RoPE factors (tensor rope_freqs.weight)".into());
    }
    for k in ["attn_logit_softcapping", "final_logit_softcapping"] {
        let key = format!("{arch}.{k}");
        if let Some(v) = meta.get(&key) {
            if number(v).is_none_or(|x| x != 0.0) {
                return refuse(format!("logit soft-capping ({key} = {})", show(v)));
            }
        }
    }
    if arch == "gemma3" && meta.get("gemma3.block_count").and_then(number) == Some(62.0) {
        return refuse(
            "Gemma 3 27B (62 blocks), whose query scale llama.cpp sets from the model size".into(),
        );
    }
    Ok(())
}

/// Load a GGUF file. The header is checked before candle reads it (`general.alignment`,
/// every tensor's size and extent), and every count in the metadata against the tensors
/// present before anything is allocated from it.
pub fn load_gguf(path: &Path) -> Result<Checkpoint> {
    let len = crate::regular_file(path)?.len();
    let mut f = std::fs::File::open(path).map_err(|e| LlmError::io(path, e))?;
    crate::gguf_check::check_alignment(path, &mut f, len)?;
    let content = Content::read(&mut f).map_err(|e| corrupt(path, e))?;
    crate::gguf_check::check_tensors(path, &content, len)?;
    let meta = &content.metadata;
    let arch = meta
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| corrupt(path, "general.architecture is missing"))?;
    let rope =
        gguf_rope_style(&arch).ok_or_else(|| {
            LlmError::file(
            path,
            format!("unsupported architecture {}", show(&Value::String(arch.clone()))),
            "dlt runs Llama-architecture models (general.architecture = llama, mistral, granite) and Gemma 3 (gemma3)",
        )
        })?;
    let wrong = |key: &str, v: &Value, want: &str| {
        LlmError::file(
            path,
            format!("metadata {key} = {} is not {want}", show(v)),
            "the metadata is corrupt: fetch or export the model again",
        )
    };
    // A count: any integer type, non-negative.
    let count = |k: &str| -> Result<Option<usize>> {
        let key = format!("{arch}.{k}");
        let Some(v) = meta.get(&key) else {
            return Ok(None);
        };
        let x: Option<u64> = match *v {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        };
        match x.and_then(|x| usize::try_from(x).ok()) {
            Some(x) => Ok(Some(x)),
            None => Err(wrong(&key, v, "a non-negative integer")),
        }
    };
    let required = |k: &str| -> Result<usize> {
        count(k)?.ok_or_else(|| corrupt(path, format!("metadata {arch}.{k} is missing")))
    };
    let real = |k: &str| -> Result<Option<f64>> {
        let key = format!("{arch}.{k}");
        let Some(v) = meta.get(&key) else {
            return Ok(None);
        };
        match *v {
            Value::F32(x) => Ok(Some(x.into())),
            Value::F64(x) => Ok(Some(x)),
            _ => match count(k) {
                Ok(Some(x)) => Ok(Some(x as f64)),
                _ => Err(wrong(&key, v, "a number")),
            },
        }
    };
    refuse_unimplemented(path, &arch, meta, |n| content.tensor_infos.contains_key(n))?;
    let tokenizer = Tokenizer::from_gguf(meta, path)?;
    let n_heads = required("attention.head_count")?;
    let is_gemma = arch == "gemma3";
    let gemma = if is_gemma {
        let head_dim = required("attention.key_length")?;
        if count("attention.value_length")?.is_some_and(|v| v != head_dim) {
            return Err(LlmError::file(
                path,
                "gemma3.attention.value_length differs from key_length",
                "dlt runs Gemma 3 models whose keys and values have the same width",
            ));
        }
        Some(Gemma3Config {
            head_dim,
            // llama.cpp: no (or a zero) sliding_window means no local blocks.
            sliding_window: count("attention.sliding_window")?
                .filter(|&w| w > 0)
                .unwrap_or(usize::MAX),
            rope_local_theta: real("rope.freq_base_swa")?.unwrap_or(10_000.0),
        })
    } else {
        None
    };
    let cfg = LlamaConfig {
        n_layers: required("block_count")?,
        hidden: required("embedding_length")?,
        n_heads,
        n_kv_heads: count("attention.head_count_kv")?.unwrap_or(n_heads),
        ffn: required("feed_forward_length")?,
        vocab: tokenizer.vocab_size(),
        rms_eps: real("attention.layer_norm_rms_epsilon")?.ok_or_else(|| {
            corrupt(
                path,
                format!("metadata {arch}.attention.layer_norm_rms_epsilon is missing"),
            )
        })?,
        rope_theta: real("rope.freq_base")?.unwrap_or(10_000.0),
        rope,
        context: count("context_length")?.unwrap_or(2048),
        gemma,
    };
    cfg.validate().map_err(|e| inconsistent(path, e))?;
    let types = if is_gemma {
        Some(gemma3_block_types(path, meta, cfg.n_layers)?)
    } else {
        None
    };
    let present = blocks_present(
        |n| content.tensor_infos.contains_key(n),
        |l| format!("blk.{l}.attn_norm.weight"),
    );
    if cfg.n_layers > present {
        return Err(LlmError::file(
            path,
            format!(
                "metadata {arch}.block_count = {} but the file holds tensors for {present} blocks",
                cfg.n_layers
            ),
            "the metadata and the tensors disagree: fetch or export the model again",
        ));
    }
    let dev = Device::Cpu;
    let mut weight_types = std::collections::BTreeMap::new();
    let mut get = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let q: QTensor = content.tensor(&mut f, name, &dev).map_err(|e| {
            if content.tensor_infos.contains_key(name) {
                corrupt(path, e)
            } else {
                LlmError::file(
                    path,
                    format!("tensor {name} is missing"),
                    "is this a complete Llama GGUF?",
                )
            }
        })?;
        *weight_types.entry(format!("{:?}", q.dtype())).or_insert(0) += 1;
        if q.shape().dims() != shape {
            return Err(LlmError::file(
                path,
                format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    q.shape().dims()
                ),
                "the metadata and the tensors disagree: re-export the model",
            ));
        }
        Ok(q.dequantize(&dev)?.to_dtype(DType::F32)?)
    };
    let (d, f_, kv) = (cfg.hidden, cfg.ffn, cfg.n_kv_heads * cfg.head_dim());
    let (qd, hd) = (cfg.n_heads * cfg.head_dim(), cfg.head_dim());
    let embed = get("token_embd.weight", &[cfg.vocab, d])?;
    let norm = get("output_norm.weight", &[d])?;
    let lm_head = if content.tensor_infos.contains_key("output.weight") {
        Some(get("output.weight", &[cfg.vocab, d])?)
    } else {
        None
    };
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for l in 0..cfg.n_layers {
        let mut w = |n: &str, s: &[usize]| get(&format!("blk.{l}.{n}.weight"), s);
        let gemma = match &types {
            Some(t) => Some(GemmaBlock {
                q_norm: w("attn_q_norm", &[hd])?,
                k_norm: w("attn_k_norm", &[hd])?,
                post_attn_norm: w("post_attention_norm", &[d])?,
                post_ffn_norm: w("post_ffw_norm", &[d])?,
                global: t[l],
            }),
            None => None,
        };
        blocks.push(Block {
            attn_norm: w("attn_norm", &[d])?,
            q: Linear::new(w("attn_q", &[qd, d])?),
            k: Linear::new(w("attn_k", &[kv, d])?),
            v: Linear::new(w("attn_v", &[kv, d])?),
            o: Linear::new(w("attn_output", &[d, qd])?),
            ffn_norm: w("ffn_norm", &[d])?,
            gate: Linear::new(w("ffn_gate", &[f_, d])?),
            up: Linear::new(w("ffn_up", &[f_, d])?),
            down: Linear::new(w("ffn_down", &[d, f_])?),
            gemma,
        });
    }
    let model = Llama {
        cfg,
        embed,
        blocks,
        norm,
        lm_head,
    };
    Ok(Checkpoint {
        model,
        tokenizer,
        source: Source::Gguf {
            path: path.to_path_buf(),
            content,
        },
        weight_types,
    })
}

/// Load a Hugging Face Llama directory: `config.json` (`architectures` containing
/// `LlamaForCausalLM`), one or more `*.safetensors`, `tokenizer.json`.
pub fn load_safetensors_dir(dir: &Path) -> Result<Checkpoint> {
    let cfg_path = dir.join("config.json");
    let text = crate::read_bounded(&cfg_path, crate::MAX_CONFIG_BYTES)?;
    let j: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        LlmError::file(
            &cfg_path,
            format!("not valid JSON: {}", one_line(e)),
            "re-download config.json",
        )
    })?;
    let archs = serde_json::to_string(&j["architectures"]).unwrap_or_default();
    let model_type = j["model_type"].as_str().unwrap_or("");
    if !(archs.contains("LlamaForCausalLM") || model_type == "llama") {
        return Err(LlmError::file(
            &cfg_path,
            format!(
                "unsupported architecture {} (model_type {})",
                one_line(archs.chars().take(80).collect::<String>()),
                one_line(format!(
                    "{:?}",
                    model_type.chars().take(40).collect::<String>()
                ))
            ),
            "dlt runs Llama-architecture models (LlamaForCausalLM)",
        ));
    }
    let field = |k: &str| -> Option<&serde_json::Value> { j.get(k).filter(|v| !v.is_null()) };
    let wrong = |k: &str, v: &serde_json::Value, want: &str| {
        let shown = one_line(v.to_string().chars().take(40).collect::<String>());
        let kind = match v {
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Array(_) => "an array",
            _ => "an object",
        };
        LlmError::file(
            &cfg_path,
            format!("{k} = {shown} is {kind}, not {want}"),
            format!("write {k} in config.json as {want}"),
        )
    };
    // A count: a JSON integer ≥ 0 (a string, a fraction or a negative number is an error).
    let count = |k: &str| -> Result<Option<usize>> {
        match field(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| wrong(k, v, "a non-negative integer (e.g. 30)")),
        }
    };
    let u = |k: &str| -> Result<usize> {
        count(k)?.ok_or_else(|| {
            LlmError::file(
                &cfg_path,
                format!("{k} is missing"),
                "add it to config.json",
            )
        })
    };
    let real = |k: &str, default: f64| -> Result<f64> {
        match field(k) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| wrong(k, v, "a number (e.g. 1e-5)")),
        }
    };
    // As refuse_unimplemented for GGUF: RoPE scaling (Llama 3.1's "llama3", "linear",
    // "dynamic", …) is not computed by our forward, so a config asking for it is refused.
    if let Some(v) = field("rope_scaling") {
        return Err(LlmError::file(
            &cfg_path,
            format!(
                "rope_scaling = {}: RoPE scaling, which dlt's forward does not compute",
                one_line(v.to_string().chars().take(60).collect::<String>())
            ),
            "use a model without rope_scaling (null); running it would give numbers that silently differ from the model's",
        ));
    }
    let tokenizer = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json"))?;
    let n_heads = u("num_attention_heads")?;
    let cfg = LlamaConfig {
        n_layers: u("num_hidden_layers")?,
        hidden: u("hidden_size")?,
        n_heads,
        n_kv_heads: count("num_key_value_heads")?.unwrap_or(n_heads),
        ffn: u("intermediate_size")?,
        vocab: u("vocab_size")?,
        rms_eps: real("rms_norm_eps", 1e-6)?,
        rope_theta: real("rope_theta", 10_000.0)?,
        rope: RopeStyle::Half,
        context: count("max_position_embeddings")?.unwrap_or(2048),
        gemma: None,
    };
    let tied = match field("tie_word_embeddings") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| wrong("tie_word_embeddings", v, "true or false"))?,
    };
    cfg.validate().map_err(|e| inconsistent(&cfg_path, e))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LlmError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LlmError::file(
            dir,
            "no *.safetensors file",
            "the directory must hold the model weights",
        ));
    }
    let dev = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut weight_types = std::collections::BTreeMap::new();
    for f in &files {
        crate::regular_file(f)?;
        let ts = candle_core::safetensors::load(f, &dev).map_err(|e| {
            LlmError::file(
                f,
                format!("not a readable safetensors file ({})", one_line(e)),
                "the file is truncated or corrupt: fetch or export it again",
            )
        })?;
        for (k, t) in ts {
            *weight_types.entry(format!("{:?}", t.dtype())).or_insert(0) += 1;
            tensors.insert(k, t);
        }
    }
    let present = blocks_present(
        |n| tensors.contains_key(n),
        |l| format!("model.layers.{l}.input_layernorm.weight"),
    );
    if cfg.n_layers > present {
        return Err(LlmError::file(
            &cfg_path,
            format!(
                "num_hidden_layers = {} but the safetensors files hold {present} layers",
                cfg.n_layers
            ),
            "config.json and the weights disagree: correct num_hidden_layers or fetch the model again",
        ));
    }
    let mut get = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let t = tensors.remove(name).ok_or_else(|| {
            LlmError::file(
                dir,
                format!("tensor {name} is missing"),
                "is this a complete Llama checkpoint?",
            )
        })?;
        if t.dims() != shape {
            return Err(LlmError::file(
                dir,
                format!("tensor {name} has shape {:?}, expected {shape:?}", t.dims()),
                "config.json and the weights disagree",
            ));
        }
        Ok(t.to_dtype(DType::F32)?)
    };
    let (d, f_, kv) = (cfg.hidden, cfg.ffn, cfg.n_kv_heads * cfg.head_dim());
    let embed = get("model.embed_tokens.weight", &[cfg.vocab, d])?;
    let norm = get("model.norm.weight", &[d])?;
    let lm_head = if tied {
        None
    } else {
        Some(get("lm_head.weight", &[cfg.vocab, d])?)
    };
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for l in 0..cfg.n_layers {
        let mut w = |n: &str, s: &[usize]| get(&format!("model.layers.{l}.{n}.weight"), s);
        blocks.push(Block {
            attn_norm: w("input_layernorm", &[d])?,
            q: Linear::new(w("self_attn.q_proj", &[d, d])?),
            k: Linear::new(w("self_attn.k_proj", &[kv, d])?),
            v: Linear::new(w("self_attn.v_proj", &[kv, d])?),
            o: Linear::new(w("self_attn.o_proj", &[d, d])?),
            ffn_norm: w("post_attention_layernorm", &[d])?,
            gate: Linear::new(w("mlp.gate_proj", &[f_, d])?),
            up: Linear::new(w("mlp.up_proj", &[f_, d])?),
            down: Linear::new(w("mlp.down_proj", &[d, f_])?),
            gemma: None,
        });
    }
    Ok(Checkpoint {
        model: Llama {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
        },
        tokenizer,
        source: Source::Safetensors {
            dir: dir.to_path_buf(),
        },
        weight_types,
    })
}
