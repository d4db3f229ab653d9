//! Shared by the mutation fuzz tests (`fuzz_idx`, `fuzz_npy`, `fuzz_checkpoint`, and the
//! studies crate's `fuzz_checkpoint`): an allocator that aborts on
//! any single allocation above [`LIMIT`], the byte mutator, and the run budget from the
//! environment (`DLT_FUZZ_ITERS`, `DLT_FUZZ_SECS`, `DLT_FUZZ_SEED`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The largest single allocation the reader may make on these tiny files (64 MiB).
pub const LIMIT: usize = 64 << 20;

/// The system allocator, aborting on an allocation above [`LIMIT`].
pub struct Bounded;

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

/// Whether the bound applies (see [`unbounded`]).
static ARMED: AtomicBool = AtomicBool::new(true);

/// Run `f` without the bound: a test's setup that fits real models (faer's matrix product
/// reserves a 520 MiB scratch per thread on first use, once), never the reader under test.
#[allow(dead_code)]
pub fn unbounded<R>(f: impl FnOnce() -> R) -> R {
    ARMED.store(false, Ordering::SeqCst);
    let r = f();
    ARMED.store(true, Ordering::SeqCst);
    r
}

/// Abort (without allocating) if `size` exceeds [`LIMIT`].
fn check(size: usize) {
    if size > LIMIT && ARMED.load(Ordering::Relaxed) {
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

/// Integers the readers branch on, written over 4 bytes.
const INTERESTING: [u32; 8] = [0, 1, 2, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff];

/// How [`mutate`] aims at a format.
pub struct Mutator {
    /// Three in four mutations hit the first `head` bytes (the format's header).
    pub head: usize,
    /// Interesting integers are written big-endian (IDX) rather than little-endian (npy).
    pub big_endian: bool,
    /// Fragments spliced in whole (the tokens a header parser branches on); none: that kind
    /// of mutation is not drawn at all.
    pub tokens: &'static [&'static [u8]],
}

/// One to three random mutations of `b`: flip a bit, set a byte, write an interesting
/// integer, truncate, delete up to 8 bytes, splice in a token (if any), insert random bytes.
pub fn mutate(b: &mut Vec<u8>, rng: &mut Xoshiro256PlusPlus, m: &Mutator) {
    // The kinds drawn: the token splice (kind 5) only where there are tokens.
    let kinds = if m.tokens.is_empty() { 6 } else { 7 };
    for _ in 0..rng.random_range(1..=3) {
        if b.is_empty() {
            b.push(rng.random());
            continue;
        }
        let span = if rng.random_bool(0.75) {
            b.len().min(m.head)
        } else {
            b.len()
        };
        let at = rng.random_range(0..span);
        match rng.random_range(0..kinds) {
            0 => b[at] ^= 1 << rng.random_range(0..8),
            1 => b[at] = rng.random(),
            2 => {
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let v = if m.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
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
            5 if !m.tokens.is_empty() => {
                let t = m.tokens[rng.random_range(0..m.tokens.len())];
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

/// A run's budget: `DLT_FUZZ_ITERS` rounds (default 300), stopping at `DLT_FUZZ_SECS`
/// (default 10 s), from `DLT_FUZZ_SEED` (default: the test's own seed).
pub struct Budget {
    /// Rounds of mutations (each mutates every seed file once).
    pub iters: usize,
    /// When to stop, whatever the rounds left.
    pub deadline: Instant,
    /// Seed of the mutation stream.
    pub seed: u64,
}

impl Budget {
    /// The budget from the environment, `default_seed` unless `DLT_FUZZ_SEED` is set.
    pub fn from_env(default_seed: u64) -> Self {
        let iters = env_or("DLT_FUZZ_ITERS", 300) as usize;
        let secs = env_or("DLT_FUZZ_SECS", 10);
        let seed = env_or("DLT_FUZZ_SEED", default_seed);
        Budget {
            iters,
            deadline: Instant::now() + Duration::from_secs(secs),
            seed,
        }
    }
}
