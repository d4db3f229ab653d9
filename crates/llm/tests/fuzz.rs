//! The checkpoint readers against hostile files: regression tests for the defects of issue 12
//! (GGUF `general.alignment` = 0, unbounded block counts, config.json fields of the wrong type,
//! unbounded text) and a seeded, time-bounded mutation fuzz of tiny generated files (GGUF,
//! safetensors + `config.json` + `tokenizer.json`). Every input must give `Ok` or an error of one
//! printable line naming the file; never a panic, and never an allocation above [`LIMIT`] (the
//! allocator of this test binary aborts with a message on one).
//!
//! Longer runs: `DLT_FUZZ_ITERS=100000 DLT_FUZZ_SECS=3600 DLT_FUZZ_SEED=7 cargo test -p dlt-llm
//! --test fuzz -- --nocapture` (see also `fuzz/README.md` for the `cargo fuzz` targets).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::QTensor;
use dlt_llm::model::{Llama, LlamaConfig, RopeStyle};
use dlt_llm::tokenizer::{PreTokenizer, Tokenizer};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The largest single allocation a reader may make on these tiny files (64 MiB).
const LIMIT: usize = 64 << 20;

struct Bounded;

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > LIMIT {
            over(l.size());
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > LIMIT {
            over(l.size());
        }
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > LIMIT {
            over(new);
        }
        System.realloc(p, l, new)
    }
}

fn over(size: usize) -> ! {
    // No allocation here: format into a stack buffer.
    let mut buf = [0u8; 96];
    let mut w = &mut buf[..];
    let _ = writeln!(w, "fuzz: an allocation of {size} bytes exceeds the bound");
    let n = 96 - w.len();
    let _ = std::io::stderr().write_all(&buf[..n]);
    std::process::abort();
}

#[global_allocator]
static ALLOC: Bounded = Bounded;

fn tokenizer() -> Tokenizer {
    let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "Ġ", "<|endoftext|>"]
        .map(String::from)
        .to_vec();
    let merges = vec![("a".into(), "b".into()), ("ab".into(), "c".into())];
    let mut special = vec![false; tokens.len()];
    special[6] = true;
    Tokenizer::new(tokens, merges, special, PreTokenizer::Gpt2, "gpt2".into()).unwrap()
}

fn cfg() -> LlamaConfig {
    LlamaConfig {
        n_layers: 2,
        hidden: 8,
        n_heads: 2,
        n_kv_heads: 1,
        ffn: 8,
        vocab: 7,
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        rope: RopeStyle::Half,
        context: 16,
        gemma: None,
    }
}

/// A folder holding a tiny valid model as `hf/` (safetensors) and `m.gguf`.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("dlt-llm-fuzz-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let m = Llama::random(cfg(), 3).unwrap();
        dlt_llm::export::write_safetensors(&m, &tokenizer(), &dir.join("hf")).unwrap();
        let ck = dlt_llm::load(&dir.join("hf")).unwrap();
        dlt_llm::export::write_gguf(
            &ck,
            &ck.model,
            &ck.model.all_blocks(),
            dlt_llm::export::Requant::Unchanged,
            &dir.join("m.gguf"),
        )
        .unwrap();
        Files { dir }
    }
    fn hf(&self) -> PathBuf {
        self.dir.join("hf")
    }
    fn gguf(&self) -> PathBuf {
        self.dir.join("m.gguf")
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Rewrite a GGUF with changed metadata (tensors copied as they are).
fn rewrite_gguf(src: &Path, out: &Path, edit: impl Fn(&mut Vec<(String, Value)>)) {
    let mut f = std::fs::File::open(src).unwrap();
    let c = Content::read(&mut f).unwrap();
    let mut meta: Vec<(String, Value)> = c
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut meta);
    let mut names: Vec<&String> = c.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                c.tensor(&mut f, n, &candle_core::Device::Cpu).unwrap(),
            )
        })
        .collect();
    let mut w = std::fs::File::create(out).unwrap();
    let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &m, &t).unwrap();
}

fn set(meta: &mut Vec<(String, Value)>, key: &str, v: Value) {
    meta.retain(|(k, _)| k != key);
    meta.push((key.to_string(), v));
}

/// The error of loading `path`, checked to be one printable line naming `names`.
fn load_err(path: &Path, names: &str) -> String {
    let t0 = Instant::now();
    let e = dlt_llm::load(path).unwrap_err().to_string();
    assert!(t0.elapsed() < Duration::from_secs(5), "slow error: {e}");
    assert_one_line(&e);
    assert!(e.contains(names), "{e}");
    e
}

fn assert_one_line(e: &str) {
    assert!(
        !e.chars().any(|c| c.is_control()),
        "error is not one printable line: {e:?}"
    );
}

#[test]
fn gguf_alignment_zero_is_an_error_not_a_panic() {
    let fs = Files::new("align");
    let bad = fs.dir.join("align0.gguf");
    rewrite_gguf(&fs.gguf(), &bad, |m| {
        set(m, "general.alignment", Value::U32(0))
    });
    let e = load_err(&bad, "align0.gguf");
    assert!(
        e.contains("general.alignment = 0 is not a power of two"),
        "{e}"
    );
    // A power of two other than 32 is legitimate (candle's writer still pads to 32, so 16 and 8
    // both describe this file's layout).
    let ok = fs.dir.join("align16.gguf");
    rewrite_gguf(&fs.gguf(), &ok, |m| {
        set(m, "general.alignment", Value::U32(16))
    });
    dlt_llm::load(&ok).unwrap();
}

#[test]
fn gguf_counts_are_checked_against_the_tensors_present() {
    let fs = Files::new("count");
    let bad = fs.dir.join("blocks.gguf");
    rewrite_gguf(&fs.gguf(), &bad, |m| {
        set(m, "llama.block_count", Value::U32(0xffff_ffff))
    });
    let e = load_err(&bad, "blocks.gguf");
    assert!(
        e.contains("llama.block_count = 4294967295 but the file holds tensors for 2 blocks"),
        "{e}"
    );
    // A count of the wrong type or sign says so (not "missing").
    let neg = fs.dir.join("neg.gguf");
    rewrite_gguf(&fs.gguf(), &neg, |m| {
        set(m, "llama.embedding_length", Value::I32(-8))
    });
    let e = load_err(&neg, "neg.gguf");
    assert!(
        e.contains("llama.embedding_length = I32(-8) is not a non-negative integer"),
        "{e}"
    );
    let s = fs.dir.join("string.gguf");
    rewrite_gguf(&fs.gguf(), &s, |m| {
        set(m, "llama.feed_forward_length", Value::String("8".into()))
    });
    let e = load_err(&s, "string.gguf");
    assert!(
        e.contains("llama.feed_forward_length = \"8\" is not"),
        "{e}"
    );
    // Dimensions that disagree with the tensors: an error, no allocation from the count.
    let big = fs.dir.join("wide.gguf");
    rewrite_gguf(&fs.gguf(), &big, |m| {
        set(m, "llama.embedding_length", Value::U64(1 << 40));
        set(m, "llama.attention.head_count", Value::U32(1 << 20));
        set(m, "llama.attention.head_count_kv", Value::U32(1 << 20));
    });
    load_err(&big, "wide.gguf");
}

#[test]
fn gguf_tensor_extent_is_checked_before_reading() {
    let fs = Files::new("extent");
    let bytes = std::fs::read(fs.gguf()).unwrap();
    // The first tensor info's first dimension (token_embd: [hidden, vocab] in GGUF order).
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4;
    for dim in [u64::MAX, 1 << 62, 1 << 33] {
        let mut b = bytes.clone();
        b[at..at + 8].copy_from_slice(&dim.to_le_bytes());
        let p = fs.dir.join("dim.gguf");
        std::fs::write(&p, &b).unwrap();
        let e = load_err(&p, "dim.gguf");
        assert!(e.contains("tensor token_embd.weight"), "{e}");
    }
}

fn edit_config(hf: &Path, key: &str, v: serde_json::Value) {
    let p = hf.join("config.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j[key] = v;
    std::fs::write(&p, j.to_string()).unwrap();
}

/// A model that asks for something our forward does not compute (RoPE scaling, logit
/// soft-capping, Gemma 3 27B's query scale) is refused with the key named, not run wrongly;
/// the neutral values (`none`, factor 1, cap 0, `rope_scaling: null`) load.
#[test]
fn unimplemented_model_features_are_refused() {
    let fs = Files::new("unimpl");
    let refused: [(&str, Value, &str); 5] = [
        (
            "llama.rope.scaling.type",
            Value::String("linear".into()),
            "RoPE scaling (llama.rope.scaling.type = \"linear\")",
        ),
        (
            "llama.rope.scaling.factor",
            Value::F32(8.0),
            "RoPE scaling (llama.rope.scaling.factor = F32(8.0))",
        ),
        (
            "llama.final_logit_softcapping",
            Value::F32(30.0),
            "logit soft-capping (llama.final_logit_softcapping",
        ),
        (
            "llama.attn_logit_softcapping",
            Value::F64(50.0),
            "logit soft-capping (llama.attn_logit_softcapping",
        ),
        (
            "llama.rope.scaling.factor",
            Value::String("8".into()),
            "RoPE scaling (llama.rope.scaling.factor = \"8\")",
        ),
    ];
    for (k, (key, v, want)) in refused.into_iter().enumerate() {
        let bad = fs.dir.join(format!("refused{k}.gguf"));
        rewrite_gguf(&fs.gguf(), &bad, |m| set(m, key, v.clone()));
        let e = load_err(&bad, &format!("refused{k}.gguf"));
        assert!(e.contains(want), "{key}: {e}");
        assert!(e.contains("does not compute"), "{e}");
    }
    let neutral = fs.dir.join("neutral.gguf");
    rewrite_gguf(&fs.gguf(), &neutral, |m| {
        set(m, "llama.rope.scaling.type", Value::String("none".into()));
        set(m, "llama.rope.scaling.factor", Value::F32(1.0));
        set(m, "llama.final_logit_softcapping", Value::F32(0.0));
    });
    dlt_llm::load(&neutral).unwrap();
    let hf = fs.hf();
    edit_config(&hf, "rope_scaling", serde_json::Value::Null);
    dlt_llm::load(&hf).unwrap();
    edit_config(
        &hf,
        "rope_scaling",
        serde_json::json!({"rope_type": "llama3", "factor": 8.0}),
    );
    let e = dlt_llm::load(&hf).unwrap_err().to_string();
    assert_one_line(&e);
    assert!(
        e.contains("rope_scaling = {") && e.contains("does not compute"),
        "{e}"
    );
}

#[test]
fn config_json_fields_are_bounded_and_typed() {
    let fs = Files::new("config");
    let hf = fs.hf();
    let orig = std::fs::read(hf.join("config.json")).unwrap();
    let cases: [(&str, serde_json::Value, &str); 7] = [
        (
            "num_hidden_layers",
            serde_json::json!(1u64 << 62),
            "num_hidden_layers = 4611686018427387904 but the safetensors files hold 2 layers",
        ),
        (
            "num_hidden_layers",
            serde_json::json!("29"),
            "num_hidden_layers = \"29\" is a string, not a non-negative integer",
        ),
        (
            "num_hidden_layers",
            serde_json::json!(29.5),
            "num_hidden_layers = 29.5 is a number, not a non-negative integer",
        ),
        (
            "num_hidden_layers",
            serde_json::json!(-1),
            "num_hidden_layers = -1 is a number, not a non-negative integer",
        ),
        (
            "rms_norm_eps",
            serde_json::json!("x"),
            "rms_norm_eps = \"x\" is a string, not a number",
        ),
        (
            "vocab_size",
            serde_json::json!(u64::MAX),
            "tensor model.embed_tokens.weight has shape",
        ),
        ("hidden_size", serde_json::json!(1u64 << 40), "config.json"),
    ];
    for (key, v, want) in cases {
        std::fs::write(hf.join("config.json"), &orig).unwrap();
        edit_config(&hf, key, v);
        let e = dlt_llm::load(&hf).unwrap_err().to_string();
        assert_one_line(&e);
        assert!(e.contains(want), "{key}: {e}");
        assert!(e.contains("hf"), "{e}");
    }
    // The missing case still says missing.
    std::fs::write(hf.join("config.json"), &orig).unwrap();
    let p = hf.join("config.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j.as_object_mut().unwrap().remove("num_hidden_layers");
    std::fs::write(&p, j.to_string()).unwrap();
    let e = dlt_llm::load(&hf).unwrap_err().to_string();
    assert!(e.contains("num_hidden_layers is missing"), "{e}");
}

#[test]
fn tokenizer_json_ids_are_bounded() {
    let fs = Files::new("tokid");
    let p = fs.hf().join("tokenizer.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j["model"]["vocab"]["a"] = serde_json::json!(u64::MAX);
    std::fs::write(&p, j.to_string()).unwrap();
    let e = dlt_llm::load(&fs.hf()).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("token id 18446744073709551615 is larger"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn devices_are_refused_not_read_forever() {
    let zero = Path::new("/dev/zero");
    if !zero.exists() {
        return;
    }
    let t0 = Instant::now();
    let e = dlt_llm::eval::read_corpus(zero).unwrap_err().to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("is not a regular file"),
        "{e}"
    );
    let e = dlt_llm::load(zero).unwrap_err().to_string();
    assert!(e.contains("is not a regular file"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// Mutation fuzz.

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    3,
    7,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 62,
    u64::MAX,
];

/// One random mutation of `b`; positions fall in `hot` (the header) three times in four.
fn mutate(b: &mut Vec<u8>, hot: usize, rng: &mut Xoshiro256PlusPlus) {
    let n = rng.random_range(1..=3);
    for _ in 0..n {
        if b.is_empty() {
            b.push(rng.random());
            continue;
        }
        let span = if rng.random_bool(0.75) {
            hot.clamp(1, b.len())
        } else {
            b.len()
        };
        let at = rng.random_range(0..span);
        match rng.random_range(0..7) {
            0 => b[at] ^= 1 << rng.random_range(0..8),
            1 => b[at] = rng.random(),
            2 | 3 => {
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let w = if rng.random_bool(0.5) { 4 } else { 8 };
                let bytes = v.to_le_bytes();
                for i in 0..w {
                    if at + i < b.len() {
                        b[at + i] = bytes[i];
                    }
                }
            }
            4 => b.truncate(at),
            5 => {
                let len = rng.random_range(1..=16).min(b.len() - at);
                b.drain(at..at + len);
            }
            _ => {
                let len = rng.random_range(1..=16);
                let ins: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                b.splice(at..at, ins);
            }
        }
    }
}

/// A JSON-aware mutation: a random top-level field of an object set to a hostile value.
fn mutate_json(text: &[u8], rng: &mut Xoshiro256PlusPlus) -> Vec<u8> {
    let Ok(mut j) = serde_json::from_slice::<serde_json::Value>(text) else {
        return text.to_vec();
    };
    let hostile = [
        serde_json::json!("29"),
        serde_json::json!(29.5),
        serde_json::json!(-1),
        serde_json::json!(0),
        serde_json::json!(1u64 << 62),
        serde_json::json!(u64::MAX),
        serde_json::json!(1e308),
        serde_json::Value::Null,
        serde_json::json!(true),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!("x"),
    ];
    if let Some(o) = j.as_object_mut() {
        let keys: Vec<String> = o.keys().cloned().collect();
        let k = &keys[rng.random_range(0..keys.len())];
        let v = hostile[rng.random_range(0..hostile.len())].clone();
        if rng.random_bool(0.1) {
            o.remove(k);
        } else {
            o.insert(k.clone(), v);
        }
    }
    j.to_string().into_bytes()
}

struct Outcome {
    ok: usize,
    err: usize,
    panics: Vec<String>,
}

/// Run `load` in `catch_unwind`; an error must be one printable line naming `name`.
fn probe(out: &mut Outcome, what: &str, name: &str, load: impl FnOnce() -> dlt_llm::Result<()>) {
    match std::panic::catch_unwind(AssertUnwindSafe(load)) {
        Ok(Ok(())) => out.ok += 1,
        Ok(Err(e)) => {
            let e = e.to_string();
            if e.chars().any(|c| c.is_control()) || !e.contains(name) {
                out.panics
                    .push(format!("{what}: error not one line naming {name}: {e:?}"));
            }
            out.err += 1;
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            out.panics.push(format!("{what}: panic: {msg}"));
        }
    }
}

fn header_len(gguf: &Path) -> usize {
    let mut f = std::fs::File::open(gguf).unwrap();
    Content::read(&mut f).unwrap().tensor_data_offset as usize
}

#[test]
fn fuzz_gguf_and_safetensors_readers() {
    let fs = Files::new("mut");
    let iters = env_or("DLT_FUZZ_ITERS", 300) as usize;
    let secs = env_or("DLT_FUZZ_SECS", 20);
    let seed = env_or("DLT_FUZZ_SEED", 12);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let keep = fs.dir.join("failures");
    std::fs::create_dir_all(&keep).unwrap();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));

    // GGUF.
    let gguf = std::fs::read(fs.gguf()).unwrap();
    let hot = header_len(&fs.gguf());
    let target = fs.dir.join("fuzz.gguf");
    let mut g = Outcome {
        ok: 0,
        err: 0,
        panics: vec![],
    };
    let t0 = Instant::now();
    let mut done_g = 0;
    for i in 0..iters {
        if Instant::now() > deadline {
            break;
        }
        let mut b = gguf.clone();
        mutate(&mut b, hot, &mut rng);
        std::fs::write(&target, &b).unwrap();
        let before = g.panics.len();
        probe(&mut g, &format!("gguf #{i}"), "fuzz.gguf", || {
            dlt_llm::load(&target).map(|_| ())
        });
        if g.panics.len() > before {
            std::fs::write(keep.join(format!("gguf-{i}.gguf")), &b).unwrap();
        }
        done_g += 1;
    }
    let tg = t0.elapsed();

    // safetensors + config.json + tokenizer.json.
    let hf = fs.hf();
    let st = std::fs::read(hf.join("model.safetensors")).unwrap();
    let st_hot = 8 + u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let config = std::fs::read(hf.join("config.json")).unwrap();
    let tok = std::fs::read(hf.join("tokenizer.json")).unwrap();
    let mut s = Outcome {
        ok: 0,
        err: 0,
        panics: vec![],
    };
    let t1 = Instant::now();
    let mut done_s = 0;
    for i in 0..iters {
        if Instant::now() > deadline {
            break;
        }
        let (mut b_st, mut b_cfg, mut b_tok) = (st.clone(), config.clone(), tok.clone());
        match rng.random_range(0..5) {
            0 | 1 => mutate(&mut b_st, st_hot, &mut rng),
            2 => b_cfg = mutate_json(&b_cfg, &mut rng),
            3 => mutate(&mut b_cfg, usize::MAX, &mut rng),
            _ => {
                if rng.random_bool(0.5) {
                    mutate(&mut b_tok, usize::MAX, &mut rng)
                } else {
                    b_tok = mutate_json(&b_tok, &mut rng)
                }
            }
        }
        std::fs::write(hf.join("model.safetensors"), &b_st).unwrap();
        std::fs::write(hf.join("config.json"), &b_cfg).unwrap();
        std::fs::write(hf.join("tokenizer.json"), &b_tok).unwrap();
        let before = s.panics.len();
        probe(&mut s, &format!("safetensors #{i}"), "hf", || {
            dlt_llm::load(&hf).map(|_| ())
        });
        if s.panics.len() > before {
            let d = keep.join(format!("hf-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.safetensors"), &b_st).unwrap();
            std::fs::write(d.join("config.json"), &b_cfg).unwrap();
            std::fs::write(d.join("tokenizer.json"), &b_tok).unwrap();
        }
        done_s += 1;
    }
    let ts = t1.elapsed();
    std::panic::set_hook(quiet);
    eprintln!(
        "fuzz seed {seed}: gguf {done_g} mutations ({} ok, {} errors) in {tg:.1?}; safetensors {done_s} mutations ({} ok, {} errors) in {ts:.1?}",
        g.ok, g.err, s.ok, s.err
    );
    let failures: Vec<String> = g.panics.into_iter().chain(s.panics).collect();
    if !failures.is_empty() {
        // Keep the inputs for replay.
        let saved = std::env::temp_dir().join(format!("dlt-llm-fuzz-failures-{seed}"));
        let _ = std::fs::remove_dir_all(&saved);
        let _ = std::process::Command::new("cp")
            .arg("-r")
            .arg(&keep)
            .arg(&saved)
            .status();
        panic!(
            "{} failures (inputs in {}):\n{}",
            failures.len(),
            saved.display(),
            failures.join("\n")
        );
    }
    assert!(done_g >= iters.min(100) && done_s >= iters.min(100));
}

/// Replay one saved input: `DLT_FUZZ_REPLAY=path cargo test -p dlt-llm --test fuzz replay --
/// --nocapture` (a file loads as GGUF, a folder as safetensors).
#[test]
fn replay() {
    if let Some(p) = std::env::var_os("DLT_FUZZ_REPLAY") {
        eprintln!("{:?}", dlt_llm::load(Path::new(&p)).map(|_| ()));
    }
}
