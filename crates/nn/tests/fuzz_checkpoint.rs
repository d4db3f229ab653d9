//! Seeded, time-bounded mutation fuzz of `dlt train`'s checkpoint reader
//! ([`Trainer::load_checkpoint`] on `checkpoint.safetensors`): a genuine checkpoint of a tiny
//! MLP under Adam (parameters, both moments, `meta.step`) is mutated byte-wise (three in four
//! mutations in the 8-byte length and the JSON header) and field-wise (a tensor's `dtype`,
//! `shape` or `data_offsets` set to a hostile value, a tensor dropped or renamed, the header
//! length rewritten). Every input gives `Ok` or an error of one printable line naming the file,
//! never a panic and never an allocation above [`fuzz::LIMIT`] (this binary's allocator aborts
//! on one, `tests/support/fuzz.rs`).
//!
//! Longer runs: `DLT_FUZZ_ITERS=100000 DLT_FUZZ_SECS=3600 DLT_FUZZ_SEED=7 cargo test -p dlt-nn
//! --test fuzz_checkpoint -- --nocapture` (and `fuzz/README.md` for the `cargo fuzz` target).

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use candle_core::{DType, Device};
use dlt_nn::model::{ActKind, Init, Mlp};
use dlt_nn::train::{Optimizer, TrainConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Value};

#[path = "support/fuzz.rs"]
mod fuzz;

/// JSON fragments spliced in whole: the tokens the header parser branches on.
const TOKENS: [&[u8]; 16] = [
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"-1",
    b"null",
    b"18446744073709551615",
    b"99999999999999999999",
    b"1e400",
    b"\"F64\"",
    b"\"BOOL\"",
    b"\"shape\":[]",
    b"\"data_offsets\":[0,0]",
];

/// Hostile values for the fields of a tensor's header entry.
fn hostile(rng: &mut Xoshiro256PlusPlus, field: &str, data_len: u64) -> Value {
    let big = [
        json!(0),
        json!(1),
        json!(-1),
        json!(1.5),
        json!(data_len),
        json!(data_len + 1),
        json!(u32::MAX),
        json!(1u64 << 40),
        json!(1u64 << 62),
        json!(u64::MAX),
        json!("7"),
        Value::Null,
    ];
    let pick = |rng: &mut Xoshiro256PlusPlus| big[rng.random_range(0..big.len())].clone();
    match field {
        "dtype" => {
            let d = [
                "F32", "F16", "BF16", "F64", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64",
                "BOOL", "F8_E4M3", "F8_E5M2", "F6_E2M3", "F4", "E8M0", "f32", "",
            ];
            if rng.random_bool(0.9) {
                json!(d[rng.random_range(0..d.len())])
            } else {
                pick(rng)
            }
        }
        "shape" => match rng.random_range(0..4) {
            0 => json!([]),
            1 => json!([pick(rng)]),
            2 => json!([pick(rng), pick(rng)]),
            _ => pick(rng),
        },
        _ => match rng.random_range(0..3) {
            0 => json!([pick(rng), pick(rng)]),
            1 => json!([pick(rng)]),
            _ => pick(rng),
        },
    }
}

/// Split a safetensors file into its JSON header and data.
fn split(b: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

fn join(head: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(head).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(data);
    out
}

/// One to three field-wise mutations of the header (re-encoded with a correct length unless
/// the length itself is the mutation).
fn mutate_fields(base: &[u8], rng: &mut Xoshiro256PlusPlus) -> Vec<u8> {
    let (mut head, data) = split(base);
    let mut length: Option<u64> = None;
    for _ in 0..rng.random_range(1..=3) {
        let obj = head.as_object_mut().unwrap();
        let names: Vec<String> = obj.keys().cloned().collect();
        if names.is_empty() {
            break;
        }
        let name = names[rng.random_range(0..names.len())].clone();
        match rng.random_range(0..10) {
            0 => {
                obj.remove(&name);
            }
            1 => {
                let v = obj.remove(&name).unwrap();
                let other = names[rng.random_range(0..names.len())].clone();
                obj.insert(other, v);
            }
            2 => {
                let n = [0u64, 1, 7, u32::MAX as u64, 1 << 40, u64::MAX];
                length = Some(n[rng.random_range(0..n.len())]);
            }
            3 => {
                obj.insert(name, hostile(rng, "shape", data.len() as u64));
            }
            _ => {
                if let Some(entry) = obj.get_mut(&name).and_then(|v| v.as_object_mut()) {
                    let field = ["dtype", "shape", "data_offsets"][rng.random_range(0..3)];
                    if rng.random_bool(0.1) {
                        entry.remove(field);
                    } else {
                        entry.insert(field.into(), hostile(rng, field, data.len() as u64));
                    }
                }
            }
        }
    }
    let mut out = join(&head, &data);
    if let Some(n) = length {
        out[..8].copy_from_slice(&n.to_le_bytes());
    }
    if rng.random_bool(0.2) {
        // Truncate or extend the data too.
        if rng.random_bool(0.5) {
            out.truncate(rng.random_range(0..=out.len()));
        } else {
            out.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>()));
        }
    }
    out
}

#[test]
fn fuzz_train_checkpoint_reader() {
    let fuzz::Budget {
        iters,
        deadline,
        seed,
    } = fuzz::Budget::from_env(12);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let dir = std::env::temp_dir().join(format!("dlt-nn-fuzz-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dev = Device::Cpu;
    let init = Init::Gaussian { cb: 0.1, cw: 1.0 };
    let model = Mlp::new(&[3, 4, 2], ActKind::Tanh, &init, 1, DType::F32, &dev).unwrap();
    let cfg = TrainConfig {
        optimizer: Optimizer::ADAM,
        ..Default::default()
    };
    let mut trainer = Trainer::new(&model, cfg, dev.clone()).unwrap();
    trainer.step = 17;
    let p = dir.join("checkpoint.safetensors");
    trainer.save_checkpoint(&p).unwrap();
    let base = std::fs::read(&p).unwrap();
    // The genuine checkpoint loads.
    trainer.step = 0;
    trainer.load_checkpoint(&p).unwrap();
    assert_eq!(trainer.step, 17);
    let head = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    let mutator = fuzz::Mutator {
        head,
        big_endian: false,
        tokens: &TOKENS,
    };
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (mut ok, mut err, mut done) = (0, 0, 0);
    let mut failures = Vec::new();
    let t0 = Instant::now();
    for i in 0..iters {
        if Instant::now() > deadline {
            break;
        }
        for kind in ["bytes", "fields"] {
            let b = if kind == "bytes" {
                let mut b = base.clone();
                fuzz::mutate(&mut b, &mut rng, &mutator);
                b
            } else {
                mutate_fields(&base, &mut rng)
            };
            std::fs::write(&p, &b).unwrap();
            match std::panic::catch_unwind(AssertUnwindSafe(|| trainer.load_checkpoint(&p))) {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    let e = e.to_string();
                    if e.chars().any(|c| c.is_control()) || !e.contains("checkpoint.safetensors") {
                        let keep = dir.join(format!("error-{i}-{kind}.safetensors"));
                        std::fs::write(&keep, &b).unwrap();
                        failures.push(format!("{kind} #{i}: error {e:?} ({})", keep.display()));
                    }
                    err += 1;
                }
                Err(_) => {
                    let keep = dir.join(format!("panic-{i}-{kind}.safetensors"));
                    std::fs::write(&keep, &b).unwrap();
                    failures.push(format!("{kind} #{i}: panic (input {})", keep.display()));
                }
            }
            done += 1;
        }
    }
    std::panic::set_hook(quiet);
    eprintln!(
        "fuzz seed {seed}: train checkpoint {done} mutations ({ok} ok, {err} errors) in {:.1?}",
        t0.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(done >= 100);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression (issue 12): an empty `meta.step` was indexed at 0 (a panic); it is now an error
/// naming the file.
#[test]
fn an_empty_step_counter_is_an_error() {
    let dir = std::env::temp_dir().join(format!("dlt-nn-ckpt-step-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dev = Device::Cpu;
    let init = Init::Gaussian { cb: 0.1, cw: 1.0 };
    let model = Mlp::new(&[3, 4, 2], ActKind::Tanh, &init, 1, DType::F32, &dev).unwrap();
    let mut trainer = Trainer::new(&model, TrainConfig::default(), dev).unwrap();
    let p = dir.join("checkpoint.safetensors");
    trainer.save_checkpoint(&p).unwrap();
    // `meta.step` of shape [0]: its 4 bytes cut out, the later tensors' offsets moved back.
    let (mut head, mut data) = split(&std::fs::read(&p).unwrap());
    let off = |v: &Value| v.as_u64().unwrap();
    let (a, b) = (
        off(&head["meta.step"]["data_offsets"][0]),
        off(&head["meta.step"]["data_offsets"][1]),
    );
    data.drain(a as usize..b as usize);
    for (_, e) in head.as_object_mut().unwrap().iter_mut() {
        if let Some(o) = e.get_mut("data_offsets") {
            for x in o.as_array_mut().unwrap() {
                if off(x) >= b {
                    *x = json!(off(x) - (b - a));
                }
            }
        }
    }
    head["meta.step"]["shape"] = json!([0]);
    head["meta.step"]["data_offsets"] = json!([a, a]);
    std::fs::write(&p, join(&head, &data)).unwrap();
    let e = trainer.load_checkpoint(&p).unwrap_err().to_string();
    assert!(
        e.contains("checkpoint.safetensors") && e.contains("meta.step") && !e.contains('\n'),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression (issue 12, found by this fuzz with seed 1: a dtype `"\x7f32"`): the header
/// parser's error quoted the file's control bytes into the message; they are now escaped.
#[test]
fn control_bytes_of_the_header_are_escaped() {
    let dir = std::env::temp_dir().join(format!("dlt-nn-ckpt-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dev = Device::Cpu;
    let init = Init::Gaussian { cb: 0.1, cw: 1.0 };
    let model = Mlp::new(&[3, 4, 2], ActKind::Tanh, &init, 1, DType::F32, &dev).unwrap();
    let mut trainer = Trainer::new(&model, TrainConfig::default(), dev).unwrap();
    let p = dir.join("checkpoint.safetensors");
    trainer.save_checkpoint(&p).unwrap();
    let (mut head, data) = split(&std::fs::read(&p).unwrap());
    head["meta.step"]["dtype"] = json!("\u{7f}32\n2");
    std::fs::write(&p, join(&head, &data)).unwrap();
    let e = trainer.load_checkpoint(&p).unwrap_err().to_string();
    assert!(
        e.contains("checkpoint.safetensors") && !e.chars().any(|c| c.is_control()),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
