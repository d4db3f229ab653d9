//! GPT-2-style byte-level BPE, read from GGUF metadata (`tokenizer.ggml.*`) or from a Hugging
//! Face `tokenizer.json`, and written back as `tokenizer.json`.
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
        })
    }

    /// From GGUF metadata: `tokenizer.ggml.model = "gpt2"`, `.tokens`, `.merges`, `.pre`,
    /// `.token_type` (3 = control), `.bos_token_id`, `.eos_token_id`, `.add_bos_token`.
    pub fn from_gguf(meta: &HashMap<String, Value>, path: &Path) -> Result<Self> {
        let get_str = |k: &str| meta.get(k).and_then(|v| v.to_string().ok()).cloned();
        let model = get_str("tokenizer.ggml.model").unwrap_or_default();
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

    /// Text of `ids` (special tokens are written as their names).
    pub fn decode(&self, ids: &[u32]) -> String {
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
