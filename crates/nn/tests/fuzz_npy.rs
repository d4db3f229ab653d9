//! Seeded, time-bounded mutation fuzz of the `.npy` reader: every mutated file (header and
//! data, versions 1.0 / 2.0 / 3.0, f4 and f8, both byte orders) gives `Ok` or an error of one
//! printable line naming the file, never a panic and never an allocation above [`LIMIT`] (this
//! binary's allocator aborts on one).
//!
//! Longer runs: `DLT_FUZZ_ITERS=100000 DLT_FUZZ_SECS=3600 DLT_FUZZ_SEED=7 cargo test -p dlt-nn
//! --test fuzz_npy -- --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use dlt_nn::data::npy;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The largest single allocation the reader may make on these tiny files (64 MiB).
const LIMIT: usize = 64 << 20;

struct Bounded;

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        check(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        check(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        check(new);
        System.realloc(p, l, new)
    }
}

fn check(size: usize) {
    if size > LIMIT {
        let mut buf = [0u8; 96];
        let mut w = &mut buf[..];
        let _ = writeln!(w, "fuzz: an allocation of {size} bytes exceeds the bound");
        let n = 96 - w.len();
        let _ = std::io::stderr().write_all(&buf[..n]);
        std::process::abort();
    }
}

#[global_allocator]
static ALLOC: Bounded = Bounded;

const INTERESTING: [u32; 8] = [0, 1, 2, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff];
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

fn mutate(b: &mut Vec<u8>, rng: &mut Xoshiro256PlusPlus) {
    for _ in 0..rng.random_range(1..=3) {
        if b.is_empty() {
            b.push(rng.random());
            continue;
        }
        // Three in four mutations hit the first 128 bytes (magic, version, length, dict).
        let span = if rng.random_bool(0.75) {
            b.len().min(128)
        } else {
            b.len()
        };
        let at = rng.random_range(0..span);
        match rng.random_range(0..7) {
            0 => b[at] ^= 1 << rng.random_range(0..8),
            1 => b[at] = rng.random(),
            2 => {
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())].to_le_bytes();
                for (i, x) in v.into_iter().enumerate() {
                    if at + i < b.len() {
                        b[at + i] = x;
                    }
                }
            }
            3 => b.truncate(at),
            4 => {
                let n = rng.random_range(1..=8).min(b.len() - at);
                b.drain(at..at + n);
            }
            5 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            _ => {
                let ins: Vec<u8> = (0..rng.random_range(1..=8)).map(|_| rng.random()).collect();
                b.splice(at..at, ins);
            }
        }
    }
}

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

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
    let iters = env_or("DLT_FUZZ_ITERS", 300) as usize;
    let secs = env_or("DLT_FUZZ_SECS", 10);
    let seed = env_or("DLT_FUZZ_SEED", 13);
    let deadline = Instant::now() + Duration::from_secs(secs);
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
            mutate(&mut b, &mut rng);
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
