//! GPT-2-style byte-level BPE, read from GGUF metadata (`tokenizer.ggml.*`) or from a Hugging
//! Face `tokenizer.json`, and written back as `tokenizer.json`; and SentencePiece-style
//! score merging with byte fallback (GGUF `tokenizer.ggml.model = "llama"`, Gemma 3), see
//! [`Spm`].
//!
//! Written here rather than taken from the `tokenizers` crate: that crate needs a regex engine
//! with look-ahead (onig, a C build, or fancy-regex) and several CPU-minutes of compile for what
//! is one pre-tokenizer state machine and a merge loop; and it cannot read GGUF metadata, whose
//! `tokenizer.ggml.pre` names the pre-tokenizer that llama.cpp applies (getting it wrong shifts
//! the first token, as candle's `TokenizerFromGguf` does for `smollm`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use crate::{LlmError, Result};

/// How text is split into words before BPE (llama.cpp `llama-vocab.cpp`, `regex_exprs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2,
    /// Every digit its own word, then GPT-2 (llama.cpp pre types `smollm`, `starcoder`,
    /// `refact`, `command-r`, `codeshell`, `exaone`, `minerva`).
    Gpt2SplitDigits,
}

impl PreTokenizer {
    /// The variant for a GGUF `tokenizer.ggml.pre` value.
    pub fn from_gguf_pre(pre: &str) -> Option<Self> {
        match pre {
            "gpt2" | "default" | "gpt-2" => Some(PreTokenizer::Gpt2),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" => Some(PreTokenizer::Gpt2SplitDigits),
            _ => None,
        }
    }
}

/// A byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token strings in GPT-2's byte-to-unicode alphabet, indexed by id.
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// `merges[i] = (left, right)` in rank order.
    merges: Vec<(String, String)>,
    /// (left id, right id) -> (rank, merged id).
    merge_rank: HashMap<(u32, u32), (u32, u32)>,
    /// Ids of tokens that are special (control) tokens, never produced from plain text.
    special: Vec<bool>,
    pre: PreTokenizer,
    /// The name the pre-tokenizer had in the source (`smollm`, ...), kept for export.
    pub pre_name: String,
    add_prefix_space: bool,
    /// Beginning-of-sequence token id, if the source names one.
    pub bos: Option<u32>,
    /// End-of-sequence token id, if the source names one.
    pub eos: Option<u32>,
    /// The source's `add_bos_token` flag; kept for export (`encode` never adds a BOS).
    pub add_bos: bool,
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
    /// The SentencePiece vocabulary's scores and types, when this is not a BPE tokenizer.
    spm: Option<Box<Spm>>,
}

/// What a SentencePiece (`tokenizer.ggml.model = "llama"`) tokenizer needs beyond the token
/// strings, and how it encodes (the algorithm of SentencePiece's BPE mode with byte fallback,
/// Kudo & Richardson 2018, arXiv 1808.06226, as llama.cpp's `llama-vocab.cpp` runs it from a
/// GGUF; docs/derivations/prune.md#sentencepiece-tokenizer):
/// 1. the text is cut at every occurrence of a user-defined token (GGUF token type 4: for
///    Gemma 3 runs of newlines, spaces and tabs, and some HTML tags), longest tokens first, each
///    occurrence becoming that token;
/// 2. in every remaining piece, spaces become `▁` (U+2581); the piece starts as one symbol per
///    character, and the adjacent pair whose concatenation is a token with the highest score is
///    merged, ties to the leftmost, until no pair is a token;
/// 3. a final symbol that is not a token (a character outside the vocabulary) is written as
///    its UTF-8 bytes, token `<0xXX>` each.
#[derive(Debug, Clone)]
pub struct Spm {
    /// Score of each token (higher merges first).
    pub scores: Vec<f32>,
    /// GGUF token type of each token (1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte).
    pub types: Vec<i32>,
    /// User-defined tokens (text, id), longest first.
    user: Vec<(String, u32)>,
    /// Token id of each byte (`<0xXX>`).
    byte_ids: [Option<u32>; 256],
}

/// GPT-2's reversible map from bytes to printable unicode characters.
pub fn byte_alphabet() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).unwrap_or('?')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('?')
        };
    }
    out
}

/// An inconsistent vocabulary, reported against the file it came from.
fn in_file(path: &Path, e: LlmError) -> LlmError {
    match e {
        LlmError::Invalid { what, problem } => LlmError::file(
            path,
            crate::one_line(format!("{what}: {problem}")),
            "the tokenizer is corrupt: fetch or export the model again",
        ),
        e => e,
    }
}

impl Tokenizer {
    /// Build from a vocabulary (id order), merges (rank order) and special-token flags.
    pub fn new(
        tokens: Vec<String>,
        merges: Vec<(String, String)>,
        special: Vec<bool>,
        pre: PreTokenizer,
        pre_name: String,
    ) -> Result<Self> {
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut merge_rank = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let (Some(&ia), Some(&ib), Some(&im)) =
                (ids.get(a), ids.get(b), ids.get(&format!("{a}{b}")))
            else {
                return Err(LlmError::invalid(
                    "tokenizer merges",
                    format!("merge {rank} ({a:?} {b:?}) names a token missing from the vocabulary"),
                ));
            };
            merge_rank.entry((ia, ib)).or_insert((rank as u32, im));
        }
        let byte_char = byte_alphabet();
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let mut special = special;
        special.resize(tokens.len(), false);
        Ok(Tokenizer {
            tokens,
            ids,
            merges,
            merge_rank,
            special,
            pre,
            pre_name,
            add_prefix_space: false,
            bos: None,
            eos: None,
            add_bos: false,
            byte_char,
            char_byte,
            spm: None,
        })
    }

    /// A SentencePiece tokenizer from the token strings (raw text, `▁` for space), their scores
    /// and GGUF token types.
    pub fn new_spm(tokens: Vec<String>, scores: Vec<f32>, types: Vec<i32>) -> Result<Self> {
        let n = tokens.len();
        if scores.len() != n || types.len() != n {
            return Err(LlmError::invalid(
                "tokenizer",
                format!(
                    "{n} tokens but {} scores and {} token types",
                    scores.len(),
                    types.len()
                ),
            ));
        }
        let special = types.iter().map(|&t| t == 3).collect();
        let mut tok = Tokenizer::new(
            tokens,
            Vec::new(),
            special,
            PreTokenizer::Gpt2,
            "spm".into(),
        )?;
        let mut byte_ids = [None; 256];
        let mut user = Vec::new();
        for (i, (t, &ty)) in tok.tokens.iter().zip(&types).enumerate() {
            if ty == 6 {
                let hex = t.strip_prefix("<0x").and_then(|h| h.strip_suffix('>'));
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    byte_ids[b as usize] = Some(i as u32);
                }
            } else if ty == 4 && !t.is_empty() {
                user.push((t.clone(), i as u32));
            }
        }
        user.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        if let Some(b) = (0..256).find(|&b| byte_ids[b].is_none()) {
            return Err(LlmError::invalid(
                "tokenizer",
                format!("byte {b:#04x} has no <0x{b:02X}> token (byte fallback impossible)"),
            ));
        }
        tok.spm = Some(Box::new(Spm {
            scores,
            types,
            user,
            byte_ids,
        }));
        Ok(tok)
    }

    /// The BOS id when the model asks for one at the start of every sequence (`add_bos` and a
    /// BOS id), else `None`.
    pub fn wanted_bos(&self) -> Option<u32> {
        self.bos.filter(|_| self.add_bos)
    }

    /// The SentencePiece scores and types, or `None` for a BPE tokenizer.
    pub fn spm(&self) -> Option<&Spm> {
        self.spm.as_deref()
    }

    /// From GGUF metadata: `tokenizer.ggml.model = "gpt2"`, `.tokens`, `.merges`, `.pre`,
    /// `.token_type` (3 = control), `.bos_token_id`, `.eos_token_id`, `.add_bos_token`.
    pub fn from_gguf(meta: &HashMap<String, Value>, path: &Path) -> Result<Self> {
        let get_str = |k: &str| meta.get(k).and_then(|v| v.to_string().ok()).cloned();
        let model = get_str("tokenizer.ggml.model").unwrap_or_default();
        if model == "llama" {
            return Self::spm_from_gguf(meta, path);
        }
        if model != "gpt2" {
            return Err(LlmError::file(
                path,
                format!("tokenizer.ggml.model = {}; only byte-level BPE (\"gpt2\") is supported", crate::one_line(format!("{model:?}"))),
                "use a model with a GPT-2-style BPE tokenizer (Llama-3, SmolLM, Qwen, ...), or a safetensors directory with tokenizer.json",
            ));
        }
        let strings = |k: &str| -> Result<Vec<String>> {
            let v = meta.get(k).ok_or_else(|| {
                LlmError::file(
                    path,
                    format!("metadata key {k} is missing"),
                    "re-export the GGUF with its tokenizer",
                )
            })?;
            let arr = v.to_vec().map_err(|e| {
                LlmError::file(
                    path,
                    format!("{k}: {}", crate::one_line(e)),
                    "re-export the GGUF",
                )
            })?;
            arr.iter()
                .map(|x| x.to_string().cloned())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| {
                    LlmError::file(
                        path,
                        format!("{k}: {}", crate::one_line(e)),
                        "re-export the GGUF",
                    )
                })
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(LlmError::file(
                    path,
                    format!("merge {m:?} has no space"),
                    "re-export the GGUF",
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let special = match meta
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
        {
            Some(types) => types
                .iter()
                .map(|t| t.to_i32().map(|t| t == 3).unwrap_or(false))
                .collect(),
            None => vec![false; tokens.len()],
        };
        let pre_name = get_str("tokenizer.ggml.pre").unwrap_or_else(|| "default".into());
        let pre = PreTokenizer::from_gguf_pre(&pre_name).ok_or_else(|| {
            LlmError::file(
                path,
                format!("unsupported pre-tokenizer tokenizer.ggml.pre = {pre_name:?}"),
                "supported: gpt2/default, smollm, starcoder, refact, command-r, codeshell, exaone, minerva",
            )
        })?;
        let mut tok =
            Tokenizer::new(tokens, merges, special, pre, pre_name).map_err(|e| in_file(path, e))?;
        let id = |k: &str| meta.get(k).and_then(|v| v.to_u32().ok());
        tok.bos = id("tokenizer.ggml.bos_token_id");
        tok.eos = id("tokenizer.ggml.eos_token_id");
        tok.add_bos = meta
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        tok.add_prefix_space = meta
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        Ok(tok)
    }

    /// A SentencePiece tokenizer from GGUF metadata (`tokenizer.ggml.model = "llama"`):
    /// `.tokens`, `.scores`, `.token_type`, `.bos_token_id`, `.eos_token_id`, `.add_bos_token`,
    /// `.add_space_prefix`.
    fn spm_from_gguf(meta: &HashMap<String, Value>, path: &Path) -> Result<Self> {
        let arr = |k: &str| -> Result<&Vec<Value>> {
            meta.get(k)
                .ok_or_else(|| {
                    LlmError::file(
                        path,
                        format!("metadata key {k} is missing"),
                        "re-export the GGUF with its tokenizer",
                    )
                })?
                .to_vec()
                .map_err(|e| {
                    LlmError::file(
                        path,
                        format!("{k}: {}", crate::one_line(e)),
                        "re-export the GGUF",
                    )
                })
        };
        let bad = |k: &str| {
            LlmError::file(
                path,
                format!("{k} holds a value of the wrong type"),
                "re-export the GGUF",
            )
        };
        let tokens = arr("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|_| bad("tokenizer.ggml.tokens"))
            })
            .collect::<Result<Vec<_>>>()?;
        let scores = arr("tokenizer.ggml.scores")?
            .iter()
            .map(|v| v.to_f32().map_err(|_| bad("tokenizer.ggml.scores")))
            .collect::<Result<Vec<_>>>()?;
        let types = arr("tokenizer.ggml.token_type")?
            .iter()
            .map(|v| v.to_i32().map_err(|_| bad("tokenizer.ggml.token_type")))
            .collect::<Result<Vec<_>>>()?;
        let mut tok = Tokenizer::new_spm(tokens, scores, types).map_err(|e| in_file(path, e))?;
        let id = |k: &str| meta.get(k).and_then(|v| v.to_u32().ok());
        tok.bos = id("tokenizer.ggml.bos_token_id");
        tok.eos = id("tokenizer.ggml.eos_token_id");
        let flag = |k: &str, default: bool| {
            meta.get(k)
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(default)
        };
        // llama.cpp's defaults for SentencePiece vocabularies: BOS added, prefix space added.
        tok.add_bos = flag("tokenizer.ggml.add_bos_token", true);
        tok.add_prefix_space = flag("tokenizer.ggml.add_space_prefix", true);
        if let Some(b) = tok.bos.filter(|&b| b as usize >= tok.tokens.len()) {
            return Err(LlmError::file(
                path,
                format!("tokenizer.ggml.bos_token_id = {b} is outside the vocabulary"),
                "re-export the GGUF",
            ));
        }
        Ok(tok)
    }

    /// From a Hugging Face `tokenizer.json` with a `BPE` model and a `ByteLevel` pre-tokenizer
    /// (optionally preceded by `Digits { individual_digits: true }`).
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let bytes = crate::read_bounded(path, crate::MAX_TOKENIZER_BYTES)?;
        let j: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            LlmError::file(
                path,
                format!("not valid JSON: {e}"),
                "re-download tokenizer.json",
            )
        })?;
        let bad = |p: &str| {
            LlmError::file(
                path,
                p.to_string(),
                "only byte-level BPE tokenizer.json files are supported",
            )
        };
        let model = &j["model"];
        if model["type"] != "BPE" {
            return Err(bad("model.type is not \"BPE\""));
        }
        let vocab = model["vocab"]
            .as_object()
            .ok_or_else(|| bad("model.vocab is missing"))?;
        let added = j["added_tokens"].as_array().map_or(0, |a| a.len());
        // Ids are dense: none can exceed the number of entries (bounds every allocation).
        let max_id = vocab.len() + added;
        let id_out_of_range = |id: u64| {
            LlmError::file(
                path,
                format!("token id {id} is larger than the {max_id} entries of the vocabulary"),
                "the ids must be 0..n-1: re-download tokenizer.json",
            )
        };
        let mut tokens = vec![String::new(); vocab.len()];
        for (t, id) in vocab {
            let id = id
                .as_u64()
                .ok_or_else(|| bad("a vocabulary id is not a non-negative integer"))?;
            if id >= max_id as u64 {
                return Err(id_out_of_range(id));
            }
            let id = id as usize;
            if id >= tokens.len() {
                tokens.resize(id + 1, String::new());
            }
            tokens[id] = t.clone();
        }
        let mut special = vec![false; tokens.len()];
        if let Some(added) = j["added_tokens"].as_array() {
            for a in added {
                if let (Some(id), Some(c)) = (a["id"].as_u64(), a["content"].as_str()) {
                    if id >= max_id as u64 {
                        return Err(id_out_of_range(id));
                    }
                    let id = id as usize;
                    if id >= tokens.len() {
                        tokens.resize(id + 1, String::new());
                        special.resize(id + 1, false);
                    }
                    tokens[id] = c.to_string();
                    special[id] = a["special"].as_bool().unwrap_or(true);
                }
            }
        }
        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| bad("model.merges is missing"))?
            .iter()
            .map(|m| {
                if let Some(s) = m.as_str() {
                    s.split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                } else {
                    let a = m.get(0)?.as_str()?;
                    let b = m.get(1)?.as_str()?;
                    Some((a.to_string(), b.to_string()))
                }
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("a merge is neither \"a b\" nor [a, b]"))?;
        let pre_json = serde_json::to_string(&j["pre_tokenizer"]).unwrap_or_default();
        if !pre_json.contains("ByteLevel") {
            return Err(bad("the pre-tokenizer is not ByteLevel"));
        }
        let digits = pre_json.contains("\"individual_digits\":true");
        let (pre, pre_name) = if digits {
            (PreTokenizer::Gpt2SplitDigits, "smollm")
        } else {
            (PreTokenizer::Gpt2, "gpt2")
        };
        let mut tok = Tokenizer::new(tokens, merges, special, pre, pre_name.into())
            .map_err(|e| in_file(path, e))?;
        tok.add_prefix_space = pre_json.contains("\"add_prefix_space\":true");
        let find = |names: &[&str]| names.iter().find_map(|n| tok.ids.get(*n).copied());
        tok.bos = find(&["<|im_start|>", "<s>", "<|begin_of_text|>"]);
        tok.eos = find(&["<|endoftext|>", "</s>", "<|end_of_text|>"]);
        Ok(tok)
    }

    /// The Hugging Face `tokenizer.json` for this tokenizer.
    pub fn to_tokenizer_json(&self) -> serde_json::Value {
        use serde_json::json;
        let vocab: serde_json::Map<String, serde_json::Value> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let added: Vec<_> = (0..self.tokens.len())
            .filter(|&i| self.special[i])
            .map(|i| {
                json!({"id": i, "content": self.tokens[i], "single_word": false, "lstrip": false,
                             "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": self.add_prefix_space,
                                "trim_offsets": true, "use_regex": true});
        let pre = match self.pre {
            PreTokenizer::Gpt2 => byte_level.clone(),
            PreTokenizer::Gpt2SplitDigits => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level.clone()]}),
        };
        let merges: Vec<String> = self
            .merges
            .iter()
            .map(|(a, b)| format!("{a} {b}"))
            .collect();
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": pre, "post_processor": byte_level,
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges}
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token strings and merges, for GGUF export.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
    /// BPE merges `(left, right)` in rank order.
    pub fn merges(&self) -> &[(String, String)] {
        &self.merges
    }
    /// True for a special (control) token; false for ordinary or out-of-range ids.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Token ids of `text` (no BOS; see [`Tokenizer::add_bos`]).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(spm) = &self.spm {
            return Ok(self.encode_spm(spm, text));
        }
        let owned;
        let text = if self.add_prefix_space && !text.starts_with(' ') {
            owned = format!(" {text}");
            &owned
        } else {
            text
        };
        let mut out = Vec::with_capacity(text.len() / 3);
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        for word in pre_tokenize(text, self.pre) {
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let ids = self.bpe(word)?;
            out.extend_from_slice(&ids);
            cache.insert(word, ids);
        }
        Ok(out)
    }

    /// BPE of one pre-tokenized word: start from its bytes, repeatedly merge the adjacent pair
    /// of lowest rank.
    fn bpe(&self, word: &str) -> Result<Vec<u32>> {
        let mut syms: Vec<u32> = Vec::with_capacity(word.len());
        let mut buf = [0u8; 4];
        for &b in word.as_bytes() {
            let c = self.byte_char[b as usize];
            let s = c.encode_utf8(&mut buf);
            let id = self.ids.get(&*s).copied().ok_or_else(|| {
                LlmError::invalid(
                    "tokenizer",
                    format!("byte {b:#04x} has no token in the vocabulary"),
                )
            })?;
            syms.push(id);
        }
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merge_rank.get(&(syms[i], syms[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, merged));
                    }
                }
            }
            let Some((rank, _, _)) = best else { break };
            // Merge every occurrence of this pair, left to right (as GPT-2's reference does).
            let mut i = 0;
            let mut next = Vec::with_capacity(syms.len());
            while i < syms.len() {
                if i + 1 < syms.len() {
                    if let Some(&(r, m)) = self.merge_rank.get(&(syms[i], syms[i + 1])) {
                        if r == rank {
                            next.push(m);
                            i += 2;
                            continue;
                        }
                    }
                }
                next.push(syms[i]);
                i += 1;
            }
            syms = next;
        }
        Ok(syms)
    }

    /// SentencePiece encoding ([`Spm`]): cut at user-defined tokens, then merge by score.
    fn encode_spm(&self, spm: &Spm, text: &str) -> Vec<u32> {
        // Pieces: Ok(raw text) or Err(user-defined token id), in text order.
        let mut pieces: Vec<std::result::Result<&str, u32>> = vec![Ok(text)];
        for (t, id) in &spm.user {
            if !text.contains(t.as_str()) {
                continue;
            }
            let mut next = Vec::with_capacity(pieces.len());
            for p in pieces {
                match p {
                    Ok(raw) => {
                        let mut rest = raw;
                        while let Some(at) = rest.find(t.as_str()) {
                            if at > 0 {
                                next.push(Ok(&rest[..at]));
                            }
                            next.push(Err(*id));
                            rest = &rest[at + t.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Ok(rest));
                        }
                    }
                    special => next.push(special),
                }
            }
            pieces = next;
        }
        let mut out = Vec::with_capacity(text.len() / 3);
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        for (k, p) in pieces.iter().enumerate() {
            match *p {
                Err(id) => out.push(id),
                Ok(raw) => {
                    if let Some(ids) = cache.get(raw) {
                        out.extend_from_slice(ids);
                        continue;
                    }
                    // llama.cpp adds the prefix space to the first piece only (and after a
                    // special token, which never precedes raw text here as user-defined
                    // tokens are not "special" in its sense).
                    let prefix = self.add_prefix_space && k == 0;
                    let ids = self.spm_merge(spm, raw, prefix);
                    out.extend_from_slice(&ids);
                    cache.insert(raw, ids);
                }
            }
        }
        out
    }

    /// Score merging of one piece (step 2 and 3 of [`Spm`]).
    fn spm_merge(&self, spm: &Spm, raw: &str, prefix: bool) -> Vec<u32> {
        use std::cmp::Ordering;
        use std::collections::BinaryHeap;
        let mut text = String::with_capacity(raw.len() + 3);
        if prefix {
            text.push('\u{2581}');
        }
        for c in raw.chars() {
            text.push(if c == ' ' { '\u{2581}' } else { c });
        }
        // Symbols: (start byte, length, prev, next); a merged-away symbol has length 0.
        let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let n = starts.len();
        let mut len: Vec<usize> = (0..n)
            .map(|i| starts.get(i + 1).copied().unwrap_or(text.len()) - starts[i])
            .collect();
        let start = starts;
        let mut prev: Vec<isize> = (0..n as isize).map(|i| i - 1).collect();
        let mut next: Vec<isize> = (0..n as isize)
            .map(|i| if i + 1 == n as isize { -1 } else { i + 1 })
            .collect();
        #[derive(PartialEq)]
        struct Bigram {
            score: f32,
            left: usize,
            right: usize,
            size: usize,
        }
        impl Eq for Bigram {}
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Bigram {
            // Highest score first, then the leftmost pair.
            fn cmp(&self, o: &Self) -> Ordering {
                self.score
                    .total_cmp(&o.score)
                    .then_with(|| o.left.cmp(&self.left))
            }
        }
        let mut heap = BinaryHeap::new();
        let try_add =
            |heap: &mut BinaryHeap<Bigram>, start: &[usize], len: &[usize], l: isize, r: isize| {
                if l < 0 || r < 0 {
                    return;
                }
                let (l, r) = (l as usize, r as usize);
                let s = &text[start[l]..start[l] + len[l] + len[r]];
                if let Some(&id) = self.ids.get(s) {
                    heap.push(Bigram {
                        score: spm.scores[id as usize],
                        left: l,
                        right: r,
                        size: s.len(),
                    });
                }
            };
        for i in 1..n {
            try_add(&mut heap, &start, &len, i as isize - 1, i as isize);
        }
        while let Some(b) = heap.pop() {
            if len[b.left] == 0 || len[b.right] == 0 || len[b.left] + len[b.right] != b.size {
                continue;
            }
            len[b.left] += len[b.right];
            len[b.right] = 0;
            next[b.left] = next[b.right];
            if next[b.right] >= 0 {
                prev[next[b.right] as usize] = b.left as isize;
            }
            try_add(&mut heap, &start, &len, prev[b.left], b.left as isize);
            try_add(&mut heap, &start, &len, b.left as isize, next[b.left]);
        }
        let mut out = Vec::new();
        let mut i: isize = if n == 0 { -1 } else { 0 };
        while i >= 0 {
            let k = i as usize;
            let s = &text[start[k]..start[k] + len[k]];
            match self.ids.get(s) {
                Some(&id) => out.push(id),
                None => out.extend(
                    s.bytes()
                        .map(|b| spm.byte_ids[b as usize].expect("checked in new_spm")),
                ),
            }
            i = next[k];
        }
        out
    }

    /// Text of `ids` (special tokens are written as their names).
    pub fn decode(&self, ids: &[u32]) -> String {
        if let Some(spm) = &self.spm {
            let mut bytes = Vec::new();
            for &id in ids {
                let Some(t) = self.tokens.get(id as usize) else {
                    continue;
                };
                match spm.types[id as usize] {
                    6 => bytes.extend(
                        spm.byte_ids
                            .iter()
                            .position(|&b| b == Some(id))
                            .map(|b| b as u8),
                    ),
                    _ => bytes.extend_from_slice(t.replace('\u{2581}', " ").as_bytes()),
                }
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(t) = self.tokens.get(id as usize) else {
                continue;
            };
            if self.is_special(id) {
                bytes.extend_from_slice(t.as_bytes());
                continue;
            }
            for c in t.chars() {
                match self.char_byte.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn is_l(c: char) -> bool {
    c.is_alphabetic()
}
fn is_n(c: char) -> bool {
    c.is_numeric()
}
fn is_other(c: char) -> bool {
    !c.is_whitespace() && !is_l(c) && !is_n(c)
}

/// Split `text` into pre-tokenized words (slices of `text`).
pub fn pre_tokenize(text: &str, pre: PreTokenizer) -> Vec<&str> {
    let mut out = Vec::new();
    match pre {
        PreTokenizer::Gpt2 => gpt2_split(text, &mut out),
        PreTokenizer::Gpt2SplitDigits => {
            // First regex `\p{N}`: each digit is a piece, the text between digits another.
            let mut start = 0;
            for (i, c) in text.char_indices() {
                if is_n(c) {
                    if start < i {
                        gpt2_split(&text[start..i], &mut out);
                    }
                    let e = i + c.len_utf8();
                    out.push(&text[i..e]);
                    start = e;
                }
            }
            if start < text.len() {
                gpt2_split(&text[start..], &mut out);
            }
        }
    }
    out
}

/// The GPT-2 pattern as a hand-written scanner (the `\s+(?!\S)` look-ahead is why no plain
/// regex engine will do).
fn gpt2_split<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let at = |k: usize| if k < n { chars[k].0 } else { text.len() };
    let run = |mut k: usize, f: fn(char) -> bool| {
        while k < n && f(chars[k].1) {
            k += 1;
        }
        k
    };
    let mut i = 0;
    while i < n {
        let c = chars[i].1;
        // Contractions.
        if c == '\'' && i + 1 < n {
            let c1 = chars[i + 1].1;
            let c2 = if i + 2 < n { chars[i + 2].1 } else { '\0' };
            let len = match (c1, c2) {
                ('s' | 't' | 'm' | 'd', _) => 2,
                ('r', 'e') | ('v', 'e') | ('l', 'l') => 3,
                _ => 0,
            };
            if len > 0 {
                out.push(&text[at(i)..at(i + len)]);
                i += len;
                continue;
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`.
        let j = if c == ' ' && i + 1 < n && !chars[i + 1].1.is_whitespace() {
            i + 1
        } else {
            i
        };
        let cj = chars[j].1;
        let class: Option<fn(char) -> bool> = if is_l(cj) {
            Some(is_l)
        } else if is_n(cj) {
            Some(is_n)
        } else if is_other(cj) {
            Some(is_other)
        } else {
            None
        };
        if let Some(f) = class {
            let e = run(j, f);
            out.push(&text[at(i)..at(e)]);
            i = e;
            continue;
        }
        // Whitespace: `\s+(?!\S)` then `\s+`.
        let e = run(i, char::is_whitespace);
        if e == n || e - i == 1 {
            out.push(&text[at(i)..at(e)]);
            i = e;
        } else {
            out.push(&text[at(i)..at(e - 1)]);
            i = e - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_pre_tokenizer_matches_the_regex_on_tricky_cases() {
        let split = |s| pre_tokenize(s, PreTokenizer::Gpt2);
        assert_eq!(split("Hello world"), vec!["Hello", " world"]);
        assert_eq!(
            split("I'll go  now\n\nYes"),
            vec!["I", "'ll", " go", " ", " now", "\n", "\n", "Yes"]
        );
        assert_eq!(split("a  b"), vec!["a", " ", " b"]);
        assert_eq!(split("a\n\nb"), vec!["a", "\n", "\n", "b"]);
        assert_eq!(split("a \n b"), vec!["a", " \n", " b"]);
        assert_eq!(split("end.  "), vec!["end", ".", "  "]);
        assert_eq!(split("x123 !?y"), vec!["x", "123", " !?", "y"]);
        assert_eq!(split("don't"), vec!["don", "'t"]);
        assert_eq!(
            pre_tokenize("in 1599, ACT", PreTokenizer::Gpt2SplitDigits),
            vec!["in", " ", "1", "5", "9", "9", ",", " ACT"]
        );
    }

    #[test]
    fn bpe_merges_by_rank_and_round_trips() {
        let alpha = byte_alphabet();
        let mut tokens: Vec<String> = alpha.iter().map(|c| c.to_string()).collect();
        for t in ["ab", "abc", "Ġa"] {
            tokens.push(t.into());
        }
        let merges = vec![
            ("a".into(), "b".into()),
            ("ab".into(), "c".into()),
            ("Ġ".into(), "a".into()),
        ];
        let tok =
            Tokenizer::new(tokens, merges, vec![], PreTokenizer::Gpt2, "gpt2".into()).unwrap();
        let ids = tok.encode("abc abd").unwrap();
        let ab = tok.ids["ab"];
        let abc = tok.ids["abc"];
        let ga = tok.ids["Ġa"];
        // " abd": (a, b) has the lowest rank, so Ġ never meets a.
        assert_eq!(ids, vec![abc, tok.ids["Ġ"], ab, tok.ids["d"]]);
        assert_eq!(tok.encode(" ac").unwrap(), vec![ga, tok.ids["c"]]);
        let s = "Ünïcödé — 12 words\n\tand tabs";
        assert_eq!(tok.decode(&tok.encode(s).unwrap()), s);
    }
}
