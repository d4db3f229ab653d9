//! Seeded, time-bounded mutation fuzz of the IDX reader (plain and gzip, one and several gzip
//! members): every input gives `Ok` or an error of one printable line naming the file, never a
//! panic and never an allocation above [`fuzz::LIMIT`] (this binary's allocator aborts on one,
//! `tests/support/fuzz.rs`).
//!
//! Longer runs: `DLT_FUZZ_ITERS=100000 DLT_FUZZ_SECS=3600 DLT_FUZZ_SEED=7 cargo test -p dlt-nn
//! --test fuzz_idx -- --nocapture` (and `fuzz/README.md` for the `cargo fuzz` target).

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use dlt_nn::data::idx;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

#[path = "support/fuzz.rs"]
mod fuzz;

/// Three in four mutations hit the first 32 bytes (the IDX or gzip header).
const MUTATOR: fuzz::Mutator = fuzz::Mutator {
    head: 32,
    big_endian: true,
    tokens: &[],
};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn fuzz_idx_reader() {
    let fuzz::Budget {
        iters,
        deadline,
        seed,
    } = fuzz::Budget::from_env(12);
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
            fuzz::mutate(&mut b, &mut rng, &MUTATOR);
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
