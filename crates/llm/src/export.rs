//! Write a (pruned, optionally healed) model back to disk:
//! - GGUF: tensors of a GGUF source are copied as they are (same quantisation), blocks
//!   renumbered, `{arch}.block_count` patched; changed weights (merged LoRA) are quantised to
//!   the type the caller names (Q8_0 is the default of the CLI and the study: re-quantising a
//!   healed SmolLM2 to its source Q4_1 undid most of the healing, perplexity 61.6 → 83.5), and
//!   tensors of non-GGUF sources are written as F32. llama.cpp loads the result.
//! - safetensors: a Hugging Face Llama directory (`config.json`, `model.safetensors` in f32,
//!   `tokenizer.json`); Q/K rows are put back in Hugging Face order when the source was GGUF.
//!
//! Both are written into a temporary name and renamed, so a failed export leaves nothing that
//! looks complete.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use crate::checkpoint::{Checkpoint, Source};
use crate::model::{permute_rope_rows, Llama, RopeStyle};
use crate::tokenizer::Tokenizer;
use crate::{LlmError, Result};

/// GGUF tensor name and model accessor for the per-block tensors.
const BLOCK_TENSORS: [(&str, &str); 9] = [
    ("attn_norm", "attn_norm"),
    ("attn_q", "q"),
    ("attn_k", "k"),
    ("attn_v", "v"),
    ("attn_output", "o"),
    ("ffn_norm", "ffn_norm"),
    ("ffn_gate", "gate"),
    ("ffn_up", "up"),
    ("ffn_down", "down"),
];

/// GGUF tensor name and model accessor for Gemma 3's extra per-block tensors.
const GEMMA_BLOCK_TENSORS: [(&str, &str); 4] = [
    ("attn_q_norm", "q_norm"),
    ("attn_k_norm", "k_norm"),
    ("post_attention_norm", "post_attn_norm"),
    ("post_ffw_norm", "post_ffn_norm"),
];

/// The per-block tensors of `model`'s architecture.
fn block_tensor_names(model: &Llama) -> Vec<(&'static str, &'static str)> {
    let mut v = BLOCK_TENSORS.to_vec();
    if model.cfg.gemma.is_some() {
        v.extend(GEMMA_BLOCK_TENSORS);
    }
    v
}

fn block_tensor(model: &Llama, l: usize, acc: &str) -> Result<Tensor> {
    let b = &model.blocks[l];
    let g = || {
        b.gemma
            .as_ref()
            .ok_or_else(|| LlmError::invalid("export", format!("block {l} has no Gemma norms")))
    };
    Ok(match acc {
        "attn_norm" => b.attn_norm.clone(),
        "ffn_norm" => b.ffn_norm.clone(),
        "q_norm" => g()?.q_norm.clone(),
        "k_norm" => g()?.k_norm.clone(),
        "post_attn_norm" => g()?.post_attn_norm.clone(),
        "post_ffn_norm" => g()?.post_ffn_norm.clone(),
        t => b.linear(t).expect("known target").merged()?,
    })
}

/// Q/K weights in the requested RoPE layout.
fn in_layout(model: &Llama, acc: &str, w: Tensor, want: RopeStyle) -> Result<Tensor> {
    let heads = match acc {
        "q" => model.cfg.n_heads,
        "k" => model.cfg.n_kv_heads,
        _ => return Ok(w),
    };
    if model.cfg.rope == want {
        return Ok(w);
    }
    permute_rope_rows(&w, heads, want == RopeStyle::Interleaved)
}

fn tmp_name(out: &Path) -> std::path::PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    s.into()
}

/// Write `model` (whose block i came from source block `origin[i]`) as GGUF. `changed`: the
/// block linear weights differ from the source's (healed and merged); they are quantised to
/// the type [`Requant`] names.
pub fn write_gguf(
    ckpt: &Checkpoint,
    model: &Llama,
    origin: &[usize],
    changed: Requant,
    out: &Path,
) -> Result<()> {
    if origin.len() != model.blocks.len() {
        return Err(LlmError::invalid(
            "export",
            "block origin list does not match the model",
        ));
    }
    let mut meta: Vec<(String, Value)> = Vec::new();
    let mut src_tensors: HashMap<String, QTensor> = HashMap::new();
    let mut src_types: HashMap<String, GgmlDType> = HashMap::new();
    match &ckpt.source {
        Source::Gguf { path, content } => {
            let arch = content
                .metadata
                .get("general.architecture")
                .and_then(|v| v.to_string().ok())
                .cloned()
                .unwrap_or_else(|| "llama".into());
            let mut keys: Vec<&String> = content.metadata.keys().collect();
            keys.sort();
            let gemma_keys = gemma3_type_metadata(model);
            for k in keys {
                if k == "general.alignment" {
                    continue; // candle's writer aligns to 32 bytes, the default
                }
                if gemma_keys.iter().any(|(g, _)| g == k) {
                    continue; // written below, for the kept blocks
                }
                let v = if *k == format!("{arch}.block_count") {
                    Value::U32(model.blocks.len() as u32)
                } else {
                    content.metadata[k].clone()
                };
                meta.push((k.clone(), v));
            }
            meta.extend(gemma_keys);
            let mut f = std::fs::File::open(path).map_err(|e| LlmError::io(path, e))?;
            let mut names: Vec<String> =
                ["token_embd.weight", "output_norm.weight", "output.weight"]
                    .into_iter()
                    .filter(|n| content.tensor_infos.contains_key(*n))
                    .map(String::from)
                    .collect();
            for &l in origin {
                for (g, _) in block_tensor_names(model) {
                    names.push(format!("blk.{l}.{g}.weight"));
                }
            }
            for n in names {
                let q = content.tensor(&mut f, &n, &candle_core::Device::Cpu)?;
                src_types.insert(n.clone(), q.dtype());
                src_tensors.insert(n, q);
            }
        }
        Source::Safetensors { .. } => {
            meta = fresh_metadata(model, &ckpt.tokenizer);
        }
    }
    let quant = |t: &Tensor, name: &str, linear: bool| -> Result<QTensor> {
        let src = src_types.get(name).copied().unwrap_or(GgmlDType::F32);
        let dt = match changed {
            _ if t.dims().len() == 1 => GgmlDType::F32,
            Requant::To(dt) if linear => dt,
            _ => src,
        };
        Ok(QTensor::quantize(&t.contiguous()?, dt)?)
    };
    let changed = !matches!(changed, Requant::Unchanged);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut put =
        |new: String, src: &str, t: &dyn Fn() -> Result<Tensor>, keep: bool| -> Result<()> {
            let q = match src_tensors.remove(src) {
                Some(q) if keep => q,
                _ => quant(&t()?, src, !keep)?,
            };
            tensors.push((new, q));
            Ok(())
        };
    put(
        "token_embd.weight".into(),
        "token_embd.weight",
        &|| Ok(model.embed.clone()),
        true,
    )?;
    put(
        "output_norm.weight".into(),
        "output_norm.weight",
        &|| Ok(model.norm.clone()),
        true,
    )?;
    if let Some(h) = &model.lm_head {
        put(
            "output.weight".into(),
            "output.weight",
            &|| Ok(h.clone()),
            true,
        )?;
    }
    // GGUF's Q/K row order: interleaved pairs for `llama`, Hugging Face's for `gemma3`.
    let layout = if model.cfg.gemma.is_some() {
        RopeStyle::Half
    } else {
        RopeStyle::Interleaved
    };
    for (i, &l) in origin.iter().enumerate() {
        for (g, acc) in block_tensor_names(model) {
            let t = || in_layout(model, acc, block_tensor(model, i, acc)?, layout);
            let is_linear = !acc.ends_with("norm");
            put(
                format!("blk.{i}.{g}.weight"),
                &format!("blk.{l}.{g}.weight"),
                &t,
                !(changed && is_linear),
            )?;
        }
    }
    let tmp = tmp_name(out);
    let mut w =
        std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| LlmError::io(&tmp, e))?);
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &meta_refs, &t_refs)?;
    use std::io::Write;
    w.flush().map_err(|e| LlmError::io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| LlmError::io(out, e))
}

/// The metadata that fixes each kept Gemma 3 block's type and RoPE base in the exported file
/// (empty for other models).
///
/// llama.cpp 0.3.36 (`llama_model_base::load_swa_pattern`, `set_swa_pattern(6)`) derives a
/// `gemma3` block's type from its index (il % 6 == 5 global) unless the file lists the types in
/// `gemma3.attention.sliding_window_pattern` (an array, true = sliding window), and takes the
/// local RoPE base from `gemma3.rope.freq_base_swa` (default 10 000). Dropping blocks renumbers
/// them, so without the list most drops (any n not a multiple of 6 that leaves blocks after the
/// gap) would silently turn local blocks global and back: we write the list of the kept blocks'
/// own types, and the local base, so the file runs as our pruned forward does.
fn gemma3_type_metadata(model: &Llama) -> Vec<(String, Value)> {
    let Some(g) = &model.cfg.gemma else {
        return Vec::new();
    };
    let local: Vec<Value> = model
        .blocks
        .iter()
        .map(|b| Value::Bool(!b.gemma.as_ref().is_some_and(|g| g.global)))
        .collect();
    vec![
        (
            "gemma3.attention.sliding_window_pattern".to_string(),
            Value::Array(local),
        ),
        (
            "gemma3.rope.freq_base_swa".to_string(),
            Value::F32(g.rope_local_theta as f32),
        ),
    ]
}

/// What happened to the block linear weights since they were loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requant {
    /// Untouched: copy the source tensors as they are.
    Unchanged,
    /// Changed (merged LoRA): quantise them to the source's type.
    SourceType,
    /// Changed: quantise them to this type (e.g. Q8_0).
    To(GgmlDType),
}

/// GGUF metadata for a model that did not come from GGUF.
fn fresh_metadata(model: &Llama, tok: &Tokenizer) -> Vec<(String, Value)> {
    let c = &model.cfg;
    let s = |x: &str| Value::String(x.to_string());
    let mut m = vec![
        ("general.architecture".to_string(), s("llama")),
        ("general.name".into(), s("dlt export")),
        (
            "llama.block_count".into(),
            Value::U32(model.blocks.len() as u32),
        ),
        ("llama.context_length".into(), Value::U32(c.context as u32)),
        ("llama.embedding_length".into(), Value::U32(c.hidden as u32)),
        ("llama.feed_forward_length".into(), Value::U32(c.ffn as u32)),
        (
            "llama.attention.head_count".into(),
            Value::U32(c.n_heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(c.n_kv_heads as u32),
        ),
        (
            "llama.rope.freq_base".into(),
            Value::F32(c.rope_theta as f32),
        ),
        (
            "llama.rope.dimension_count".into(),
            Value::U32(c.head_dim() as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(c.rms_eps as f32),
        ),
        ("llama.vocab_size".into(), Value::U32(c.vocab as u32)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s(&tok.pre_name)),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tok.tokens().iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..tok.vocab_size())
                    .map(|i| Value::I32(if tok.is_special(i as u32) { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(
                tok.merges()
                    .iter()
                    .map(|(a, b)| s(&format!("{a} {b}")))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(tok.add_bos),
        ),
    ];
    if let Some(b) = tok.bos {
        m.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let Some(e) = tok.eos {
        m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
    }
    m
}

/// Write `model` as a Hugging Face Llama directory `out` (f32 safetensors).
pub fn write_safetensors(model: &Llama, tok: &Tokenizer, out: &Path) -> Result<()> {
    if model.cfg.gemma.is_some() || tok.spm().is_some() {
        return Err(LlmError::invalid(
            "safetensors export",
            "only Llama-architecture models with a BPE tokenizer can be written as a Hugging Face directory; export Gemma 3 as GGUF (--out-gguf)",
        ));
    }
    let c = &model.cfg;
    let mut ts: HashMap<String, Tensor> = HashMap::new();
    ts.insert("model.embed_tokens.weight".into(), model.embed.clone());
    ts.insert("model.norm.weight".into(), model.norm.clone());
    if let Some(h) = &model.lm_head {
        ts.insert("lm_head.weight".into(), h.clone());
    }
    let hf = [
        ("attn_norm", "input_layernorm"),
        ("q", "self_attn.q_proj"),
        ("k", "self_attn.k_proj"),
        ("v", "self_attn.v_proj"),
        ("o", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("gate", "mlp.gate_proj"),
        ("up", "mlp.up_proj"),
        ("down", "mlp.down_proj"),
    ];
    for l in 0..model.blocks.len() {
        for (acc, name) in hf {
            let w = in_layout(model, acc, block_tensor(model, l, acc)?, RopeStyle::Half)?;
            ts.insert(format!("model.layers.{l}.{name}.weight"), w.contiguous()?);
        }
    }
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c.hidden, "intermediate_size": c.ffn, "num_hidden_layers": model.blocks.len(),
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim(),
        "vocab_size": c.vocab, "rms_norm_eps": c.rms_eps, "rope_theta": c.rope_theta,
        "max_position_embeddings": c.context, "tie_word_embeddings": model.lm_head.is_none(),
        "hidden_act": "silu", "torch_dtype": "float32",
        "bos_token_id": tok.bos, "eos_token_id": tok.eos,
    });
    let tmp = tmp_name(out);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| LlmError::io(&tmp, e))?;
    candle_core::safetensors::save(&ts, tmp.join("model.safetensors"))?;
    let write = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = tmp.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).expect("json"))
            .map_err(|e| LlmError::io(&p, e))
    };
    write("config.json", &config)?;
    write("tokenizer.json", &tok.to_tokenizer_json())?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| LlmError::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| LlmError::io(out, e))
}
