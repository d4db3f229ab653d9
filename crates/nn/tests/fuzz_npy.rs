//! Seeded, time-bounded mutation fuzz of the `.npy` reader: every mutated file (header and
//! data, versions 1.0 / 2.0 / 3.0, f4 and f8, both byte orders) gives `Ok` or an error of one
//! printable line naming the file, never a panic and never an allocation above
//! [`fuzz::LIMIT`] (this binary's allocator aborts on one, `tests/support/fuzz.rs`).
//!
//! Longer runs: `DLT_FUZZ_ITERS=100000 DLT_FUZZ_SECS=3600 DLT_FUZZ_SEED=7 cargo test -p dlt-nn
//! --test fuzz_npy -- --nocapture`.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use dlt_nn::data::npy;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

#[path = "support/fuzz.rs"]
mod fuzz;

/// Three in four mutations hit the first 128 bytes (magic, version, length, dict).
const MUTATOR: fuzz::Mutator = fuzz::Mutator {
    head: 128,
    big_endian: false,
    tokens: &TOKENS,
};

/// Header fragments spliced in whole: the tokens the parser branches on.
const TOKENS: [&[u8]; 14] = [
    b"'",
    b"\"",
    b"(",
    b")",
    b",",
    b"True",
    b"False",
    b"L",
    b"99999999999999999999",
    b"'|O'",
    b"'>f4'",
    b"{",
    b"}",
    b"\\",
];

/// A hand-built file: `version`, header dict, payload.
fn file(version: u8, dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = npy::MAGIC.to_vec();
    b.extend_from_slice(&[version, 0]);
    if version == 1 {
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(dict.as_bytes());
    b.extend_from_slice(payload);
    b
}

#[test]
fn fuzz_npy_reader() {
    let fuzz::Budget {
        iters,
        deadline,
        seed,
    } = fuzz::Budget::from_env(13);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let dir = std::env::temp_dir().join(format!("dlt-nn-fuzz-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vals: Vec<f64> = (0..12).map(|i| i as f64 * 0.37 - 2.0).collect();
    let be4: Vec<u8> = vals
        .iter()
        .flat_map(|v| (*v as f32).to_be_bytes())
        .collect();
    let le4: Vec<u8> = vals
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    let be8: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    let seeds: [(&str, Vec<u8>); 4] = [
        ("v1.npy", npy::encode(&[3, 4], &vals)),
        (
            "v2.npy",
            file(
                2,
                "{'descr': '>f8', 'fortran_order': False, 'shape': (12,), }\n",
                &be8,
            ),
        ),
        (
            "v3.npy",
            file(
                3,
                "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3, 2)}\n",
                &le4,
            ),
        ),
        (
            "be4.npy",
            file(
                1,
                "{'shape': (4, 3), 'fortran_order': False, 'descr': '>f4', }  \n",
                &be4,
            ),
        ),
    ];
    // Every seed reads back before mutation.
    for (name, b) in &seeds {
        let a = npy::parse(name, b).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        assert_eq!(a.data.len(), 12, "{name}");
    }
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (mut ok, mut err, mut done) = (0, 0, 0);
    let mut failures = Vec::new();
    let t0 = Instant::now();
    for i in 0..iters {
        if Instant::now() > deadline {
            break;
        }
        for (name, base) in &seeds {
            let mut b = base.clone();
            fuzz::mutate(&mut b, &mut rng, &MUTATOR);
            let p = dir.join(name);
            std::fs::write(&p, &b).unwrap();
            let from_file = std::panic::catch_unwind(AssertUnwindSafe(|| npy::read(&p)));
            let in_memory = std::panic::catch_unwind(AssertUnwindSafe(|| npy::parse(name, &b)));
            match (from_file, in_memory) {
                (Ok(f), Ok(m)) => match (&f, &m) {
                    (Ok(f), Ok(m)) => {
                        if f.data.iter().any(|v| !v.is_finite())
                            || f.data.len() != f.shape.iter().product::<usize>()
                            || f.data.len() != m.data.len()
                        {
                            failures.push(format!("{name} #{i}: inconsistent Ok"));
                        }
                        ok += 1;
                    }
                    (Err(e), Err(_)) => {
                        let e = e.to_string();
                        if e.chars().any(|c| c.is_control()) || !e.contains(name) {
                            failures.push(format!("{name} #{i}: error {e:?}"));
                        }
                        err += 1;
                    }
                    _ => failures.push(format!(
                        "{name} #{i}: file and in-memory readers disagree ({:?} vs {:?})",
                        f.as_ref().err().map(|e| e.to_string()),
                        m.as_ref().err().map(|e| e.to_string())
                    )),
                },
                _ => {
                    let keep = dir.join(format!("panic-{i}-{name}"));
                    std::fs::write(&keep, &b).unwrap();
                    failures.push(format!("{name} #{i}: panic (input {})", keep.display()));
                }
            }
            done += 1;
        }
    }
    std::panic::set_hook(quiet);
    eprintln!(
        "fuzz seed {seed}: npy {done} mutations ({ok} ok, {err} errors) in {:.1?}",
        t0.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(done >= 100);
    let _ = std::fs::remove_dir_all(&dir);
}
