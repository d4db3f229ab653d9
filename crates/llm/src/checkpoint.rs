//! Load a Llama-architecture checkpoint: a GGUF file (any quantisation candle reads; weights
//! are dequantised to f32, which on CPU runs ≈ 15× faster than candle's scalar Q4_1 kernels)
//! or a Hugging Face directory (`config.json`, `*.safetensors`, `tokenizer.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use crate::model::{Block, Linear, Llama, LlamaConfig, RopeStyle};
use crate::tokenizer::Tokenizer;
use crate::{LlmError, Result};

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
            "pass a .gguf file or a Hugging Face model directory; `dlt data fetch smollm2` fetches SmolLM2-135M-Instruct (Q4_1 GGUF) and `dlt data path smollm2` prints its path",
        ))
    }
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> LlmError {
    LlmError::file(
        path,
        format!("not a readable GGUF file ({e})"),
        "the file is truncated or corrupt: fetch it again (for SmolLM2: delete it and run `dlt data fetch smollm2`)",
    )
}

/// Load a GGUF file.
pub fn load_gguf(path: &Path) -> Result<Checkpoint> {
    let mut f = std::fs::File::open(path).map_err(|e| LlmError::io(path, e))?;
    let content = Content::read(&mut f).map_err(|e| corrupt(path, e))?;
    let meta = &content.metadata;
    let arch = meta
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| corrupt(path, "general.architecture is missing"))?;
    let rope = gguf_rope_style(&arch).ok_or_else(|| {
        LlmError::file(
            path,
            format!("unsupported architecture {arch:?}"),
            "dlt runs Llama-architecture models (general.architecture = llama, mistral, granite)",
        )
    })?;
    let num = |k: &str| -> Result<f64> {
        let v = meta
            .get(&format!("{arch}.{k}"))
            .ok_or_else(|| corrupt(path, format!("metadata {arch}.{k} is missing")))?;
        v.to_f64()
            .or_else(|_| v.to_u64().map(|x| x as f64))
            .or_else(|_| v.to_u32().map(|x| x as f64))
            .or_else(|_| v.to_i32().map(|x| x as f64))
            .or_else(|_| v.to_f32().map(|x| x as f64))
            .map_err(|e| corrupt(path, format!("{arch}.{k}: {e}")))
    };
    let tokenizer = Tokenizer::from_gguf(meta, path)?;
    let n_heads = num("attention.head_count")? as usize;
    let cfg = LlamaConfig {
        n_layers: num("block_count")? as usize,
        hidden: num("embedding_length")? as usize,
        n_heads,
        n_kv_heads: num("attention.head_count_kv")
            .map(|x| x as usize)
            .unwrap_or(n_heads),
        ffn: num("feed_forward_length")? as usize,
        vocab: tokenizer.vocab_size(),
        rms_eps: num("attention.layer_norm_rms_epsilon")?,
        rope_theta: num("rope.freq_base").unwrap_or(10_000.0),
        rope,
        context: num("context_length").map(|x| x as usize).unwrap_or(2048),
    };
    cfg.validate()?;
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
        blocks.push(Block {
            attn_norm: w("attn_norm", &[d])?,
            q: Linear::new(w("attn_q", &[d, d])?),
            k: Linear::new(w("attn_k", &[kv, d])?),
            v: Linear::new(w("attn_v", &[kv, d])?),
            o: Linear::new(w("attn_output", &[d, d])?),
            ffn_norm: w("ffn_norm", &[d])?,
            gate: Linear::new(w("ffn_gate", &[f_, d])?),
            up: Linear::new(w("ffn_up", &[f_, d])?),
            down: Linear::new(w("ffn_down", &[d, f_])?),
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
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| LlmError::io(&cfg_path, e))?;
    let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        LlmError::file(
            &cfg_path,
            format!("not valid JSON: {e}"),
            "re-download config.json",
        )
    })?;
    let archs = serde_json::to_string(&j["architectures"]).unwrap_or_default();
    let model_type = j["model_type"].as_str().unwrap_or("");
    if !(archs.contains("LlamaForCausalLM") || model_type == "llama") {
        return Err(LlmError::file(
            &cfg_path,
            format!("unsupported architecture {archs} (model_type {model_type:?})"),
            "dlt runs Llama-architecture models (LlamaForCausalLM)",
        ));
    }
    let u = |k: &str| -> Result<usize> {
        j[k].as_u64().map(|x| x as usize).ok_or_else(|| {
            LlmError::file(
                &cfg_path,
                format!("{k} is missing"),
                "add it to config.json",
            )
        })
    };
    let tokenizer = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json"))?;
    let n_heads = u("num_attention_heads")?;
    let cfg = LlamaConfig {
        n_layers: u("num_hidden_layers")?,
        hidden: u("hidden_size")?,
        n_heads,
        n_kv_heads: u("num_key_value_heads").unwrap_or(n_heads),
        ffn: u("intermediate_size")?,
        vocab: u("vocab_size")?,
        rms_eps: j["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        rope_theta: j["rope_theta"].as_f64().unwrap_or(10_000.0),
        rope: RopeStyle::Half,
        context: u("max_position_embeddings").unwrap_or(2048),
    };
    cfg.validate()?;
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
        let ts = candle_core::safetensors::load(f, &dev).map_err(|e| {
            LlmError::file(
                f,
                format!("not a readable safetensors file ({e})"),
                "the file is truncated or corrupt: fetch or export it again",
            )
        })?;
        for (k, t) in ts {
            *weight_types.entry(format!("{:?}", t.dtype())).or_insert(0) += 1;
            tensors.insert(k, t);
        }
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
    let tied = j["tie_word_embeddings"].as_bool().unwrap_or(false);
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
