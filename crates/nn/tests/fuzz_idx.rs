//! Seeded, time-bounded mutation fuzz of the IDX reader (plain and gzip, one and several gzip
//! members): every input gives `Ok` or an error of one printable line naming the file, never a
//! panic and never an allocation above [`LIMIT`] (this binary's allocator aborts on one).
//!
//! Longer runs: `DLT_FUZZ_ITERS=100000 DLT_FUZZ_SECS=3600 DLT_FUZZ_SEED=7 cargo test -p dlt-nn
//! --test fuzz_idx -- --nocapture` (and `fuzz/README.md` for the `cargo fuzz` target).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use dlt_nn::data::idx;
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

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

const INTERESTING: [u32; 8] = [0, 1, 2, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff];

fn mutate(b: &mut Vec<u8>, rng: &mut Xoshiro256PlusPlus) {
    for _ in 0..rng.random_range(1..=3) {
        if b.is_empty() {
            b.push(rng.random());
            continue;
        }
        // Three in four mutations hit the first 32 bytes (the IDX or gzip header).
        let span = if rng.random_bool(0.75) {
            b.len().min(32)
        } else {
            b.len()
        };
        let at = rng.random_range(0..span);
        match rng.random_range(0..6) {
            0 => b[at] ^= 1 << rng.random_range(0..8),
            1 => b[at] = rng.random(),
            2 => {
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())].to_be_bytes();
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

#[test]
fn fuzz_idx_reader() {
    let iters = env_or("DLT_FUZZ_ITERS", 300) as usize;
    let secs = env_or("DLT_FUZZ_SECS", 10);
    let seed = env_or("DLT_FUZZ_SEED", 12);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let dir = std::env::temp_dir().join(format!("dlt-nn-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let images: Vec<u8> = (0..3 * 4 * 4).map(|i| (i * 7) as u8).collect();
    let plain = idx::encode(&[3, 4, 4], &images);
    let labels = idx::encode(&[3], &[1, 2, 3]);
    let mut multi = gz(&plain[..10]);
    multi.extend(gz(&plain[10..]));
    // (name, bytes, ndim, mutate the compressed bytes or the IDX inside).
    let seeds: [(&str, Vec<u8>, usize, bool); 5] = [
        ("plain.idx", plain.clone(), 3, false),
        ("labels.idx", labels.clone(), 1, false),
        ("inner.gz", plain.clone(), 3, true),
        ("outer.gz", gz(&plain), 3, false),
        ("multi.gz", multi, 3, false),
    ];
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (mut ok, mut err, mut done) = (0, 0, 0);
    let mut failures = Vec::new();
    let t0 = Instant::now();
    for i in 0..iters {
        if Instant::now() > deadline {
            break;
        }
        for (name, base, ndim, inner) in &seeds {
            let mut b = base.clone();
            mutate(&mut b, &mut rng);
            if *inner {
                b = gz(&b);
            }
            let p = dir.join(name);
            std::fs::write(&p, &b).unwrap();
            match std::panic::catch_unwind(AssertUnwindSafe(|| idx::read(&p, *ndim))) {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(e)) => {
                    let e = e.to_string();
                    if e.chars().any(|c| c.is_control()) || !e.contains(name) {
                        failures.push(format!("{name} #{i}: error {e:?}"));
                    }
                    err += 1;
                }
                Err(_) => {
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
        "fuzz seed {seed}: idx {done} mutations ({ok} ok, {err} errors) in {:.1?}",
        t0.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(done >= 100);
    let _ = std::fs::remove_dir_all(&dir);
}
