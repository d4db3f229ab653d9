//! Seeded, time-bounded mutation fuzz of the collapse study's generation checkpoints
//! (`OUT/checkpoints/EXPERIMENT-POLICY.ckpt`: magic, length-prefixed JSON header, then the
//! length-prefixed model state, training set and synthetic pool). Genuine checkpoints are
//! written by interrupted runs of the real models (the Gaussian under all three policies, tiny
//! LM, VAE and DDPM under accumulate), then mutated byte-wise (three in four mutations in the
//! magic, length and JSON header) and field-wise (a header field set to a hostile value: huge,
//! negative, fractional, NaN, a string, null; a blob's length prefix or the sizes inside a data
//! set rewritten; blobs dropped, duplicated or extended), and the run resumed from each through
//! the public `run_generations_checkpointed`. Every input gives `Ok` or an error of one
//! printable line naming the file (or the test model's own interruption), never a panic and
//! never an allocation above [`fuzz::LIMIT`] (this binary's allocator aborts on one,
//! `crates/nn/tests/support/fuzz.rs`, shared).
//!
//! Longer runs: `DLT_FUZZ_ITERS=100000 DLT_FUZZ_SECS=3600 DLT_FUZZ_SEED=7 cargo test
//! -p dlt-studies --test fuzz_checkpoint -- --nocapture` (and `fuzz/README.md` for the
//! `cargo fuzz` target).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Instant;

use dlt_nn::data::Split;
use dlt_nn::diffusion::{DdpmConfig, Points};
use dlt_nn::lm::LmConfig;
use dlt_nn::vae::VaeConfig;
use dlt_nn::NnError;
use dlt_studies::collapse::generations::{
    run_generations_checkpointed, Checkpointing, GaussianModel, Generative, Policy,
};
use dlt_studies::collapse::models::{DdpmGenerative, LmGenerative, VaeGenerative};
use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Value};

#[path = "../../nn/tests/support/fuzz.rs"]
mod fuzz;

/// JSON fragments spliced in whole: the tokens the header parser branches on.
const TOKENS: [&[u8]; 14] = [
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"-1",
    b"null",
    b"NaN",
    b"18446744073709551615",
    b"99999999999999999999",
    b"1e400",
    b"\"pool_parts\":4611686018427387904,",
];

/// The error of [`Stop`] when its fits are used up (a resumed run that fits too much).
const STOPPED: &str = "invalid test: stopped";

/// A real model that fails once `fits_left` fits are done: an interrupted run.
struct Stop<M> {
    inner: M,
    fits_left: usize,
}

impl<M: Generative<Error = NnError>> Generative for Stop<M> {
    type Data = M::Data;
    type Error = NnError;
    fn fit(&mut self, d: &M::Data, rng: &mut Xoshiro256PlusPlus) -> Result<(), NnError> {
        if self.fits_left == 0 {
            return Err(NnError::Invalid {
                what: "test".into(),
                fix: "stopped".into(),
            });
        }
        self.fits_left -= 1;
        self.inner.fit(d, rng)
    }
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<M::Data, NnError> {
        self.inner.sample(n, rng)
    }
    fn evaluate(&self) -> Result<Vec<(String, f64)>, NnError> {
        self.inner.evaluate()
    }
    fn len(d: &M::Data) -> usize {
        M::len(d)
    }
    fn concat(p: &[M::Data]) -> M::Data {
        M::concat(p)
    }
    fn select(d: &M::Data, idx: &[usize]) -> M::Data {
        M::select(d, idx)
    }
    fn save_state(&self) -> Vec<u8> {
        self.inner.save_state()
    }
    fn load_state(&mut self, b: &[u8]) -> Option<()> {
        self.inner.load_state(b)
    }
    fn metric_names(&self) -> Vec<&'static str> {
        self.inner.metric_names()
    }
    fn accepts(&self, d: &M::Data) -> bool {
        self.inner.accepts(d)
    }
}

const GENERATIONS: usize = 3;
const SEED: u64 = 4;

/// One kind of run: writes a genuine checkpoint, and resumes from a (mutated) one.
struct Case {
    name: String,
    policy: Policy,
    /// Resume from the checkpoint at the path (at most one fit).
    resume: Box<dyn Fn(&Checkpointing) -> Result<(), NnError>>,
}

fn case<M: Generative<Error = NnError> + 'static>(
    name: &str,
    policy: Policy,
    model: impl Fn() -> M + 'static,
    real: M::Data,
    dir: &Path,
) -> (Case, Vec<u8>)
where
    M::Data: 'static,
{
    let c = Checkpointing {
        path: dir.join(format!("{name}-{}.ckpt", policy.as_str())),
        fingerprint: format!("{name}|fuzz"),
        resume: true,
    };
    // Interrupted before its last generation's fit: the checkpoint holds two generations.
    let mut m = Stop {
        inner: model(),
        fits_left: GENERATIONS - 1,
    };
    let e = run_generations_checkpointed(
        &mut m,
        &real,
        GENERATIONS,
        policy,
        SEED,
        Some(&c),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string() == STOPPED, "{name}: {e}");
    let bytes = std::fs::read(&c.path).unwrap();
    let resume = Box::new(move |c: &Checkpointing| {
        let mut m = Stop {
            inner: model(),
            fits_left: 1,
        };
        run_generations_checkpointed(
            &mut m,
            &real,
            GENERATIONS,
            policy,
            SEED,
            Some(c),
            &mut |_| {},
        )
        .map(|_| ())
    });
    (
        Case {
            name: format!("{name}-{}", policy.as_str()),
            policy,
            resume,
        },
        bytes,
    )
}

/// The checkpoints of every case (written under `dir`).
fn cases(dir: &Path) -> Vec<(Case, Vec<u8>)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut out = vec![];
    let real = GaussianModel::draw(&[0.0, 1.0], &Mat::identity(2, 2), 20, &mut rng).unwrap();
    for policy in Policy::ALL {
        out.push(case(
            "gaussian",
            policy,
            || GaussianModel::standard(2),
            real.clone(),
            dir,
        ));
    }
    let lm = LmConfig {
        vocab: 5,
        ctx: 4,
        d_model: 16,
        n_layer: 1,
        n_head: 2,
        batch: 4,
        lr: 1e-3,
        epochs: 0.5,
    };
    let tokens: Vec<u32> = (0..48).map(|_| rng.random_range(0..5)).collect();
    let test: Vec<u32> = (0..24).map(|_| rng.random_range(0..5)).collect();
    out.push(case(
        "lm",
        Policy::Accumulate,
        move || LmGenerative::new(lm, test.clone(), vec![0, 1], 3),
        tokens,
        dir,
    ));
    let images = |n: usize, rng: &mut Xoshiro256PlusPlus| Split {
        x: (0..n * 784).map(|_| rng.random::<f32>()).collect(),
        dim: 784,
        y: (0..n as u32).map(|i| i % 3).collect(),
        classes: 3,
        targets: vec![],
        out: 3,
    };
    let vae = VaeConfig {
        hidden: 4,
        latent: 2,
        batch: 4,
        lr: 1e-3,
        epochs: 1,
    };
    let (train, test) = (images(4, &mut rng), images(4, &mut rng));
    out.push(case(
        "vae",
        Policy::Accumulate,
        move || VaeGenerative::new(vae, test.clone(), 3),
        train,
        dir,
    ));
    let ddpm = DdpmConfig {
        steps: 10,
        hidden: 8,
        batch: 8,
        lr: 1e-3,
        epochs: 1,
    };
    let points = |n: usize, rng: &mut Xoshiro256PlusPlus| Points {
        x: (0..2 * n).map(|_| rng.random::<f32>()).collect(),
        d: 2,
    };
    let (train, test) = (points(16, &mut rng), points(16, &mut rng));
    out.push(case(
        "ddpm",
        Policy::Accumulate,
        move || DdpmGenerative::new(ddpm, test.clone(), 3),
        train,
        dir,
    ));
    out
}

/// A checkpoint's parts: the JSON header and the length-prefixed blobs after it.
fn split(b: &[u8]) -> (Value, Vec<Vec<u8>>) {
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let hl = u64_at(8);
    let head = serde_json::from_slice(&b[16..16 + hl]).unwrap();
    let (mut at, mut blobs) = (16 + hl, vec![]);
    while at < b.len() {
        let n = u64_at(at);
        blobs.push(b[at + 8..at + 8 + n].to_vec());
        at += 8 + n;
    }
    (head, blobs)
}

/// Hostile JSON values (raw text: NaN and out-of-range numbers are not `Value`s).
const HOSTILE: [&str; 16] = [
    "0",
    "1",
    "-1",
    "1.5",
    "NaN",
    "1e400",
    "4294967295",
    "4611686018427387904",
    "18446744073709551615",
    "99999999999999999999999",
    "\"x\"",
    "null",
    "[]",
    "{}",
    "[0,0,0,0]",
    "{\"s\":[0,0,0,0]}",
];

/// Hostile u64s for a length prefix or a size inside a data set (`n`: its true value).
fn hostile_u64(rng: &mut Xoshiro256PlusPlus, n: u64) -> u64 {
    let v = [
        0,
        1,
        n.wrapping_sub(1),
        n + 1,
        2 * n,
        u32::MAX as u64,
        1 << 61,
        1 << 62,
        1 << 63,
        u64::MAX,
        u64::MAX - 7,
    ];
    v[rng.random_range(0..v.len())]
}

/// `v` or, one time in two, a random element or field of it (recursively).
fn pick_slot<'a>(v: &'a mut Value, rng: &mut Xoshiro256PlusPlus) -> &'a mut Value {
    let n = match &*v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    if n == 0 || rng.random_bool(0.5) {
        return v;
    }
    let i = rng.random_range(0..n);
    match v {
        Value::Array(a) => pick_slot(&mut a[i], rng),
        Value::Object(o) => pick_slot(o.values_mut().nth(i).unwrap(), rng),
        _ => unreachable!(),
    }
}

/// One to three field-wise mutations of a checkpoint, re-encoded.
fn mutate_fields(base: &[u8], rng: &mut Xoshiro256PlusPlus) -> Vec<u8> {
    let (mut head, mut blobs) = split(base);
    let mut raw: Option<String> = None;
    let mut prefix: Option<(usize, u64)> = None;
    for _ in 0..rng.random_range(1..=3) {
        match rng.random_range(0..8) {
            // A header field (or one inside metrics / rng) set to a hostile value.
            0..=2 => {
                let keys: Vec<String> = head.as_object().unwrap().keys().cloned().collect();
                if keys.is_empty() {
                    continue;
                }
                let k = &keys[rng.random_range(0..keys.len())];
                let slot = pick_slot(&mut head[k.as_str()], rng);
                *slot = json!("__HOSTILE__");
                raw = Some(HOSTILE[rng.random_range(0..HOSTILE.len())].to_string());
            }
            3 => {
                let keys: Vec<String> = head.as_object().unwrap().keys().cloned().collect();
                if keys.is_empty() {
                    continue;
                }
                let k = keys[rng.random_range(0..keys.len())].clone();
                head.as_object_mut().unwrap().remove(&k);
            }
            // A blob's length prefix.
            4 if !blobs.is_empty() => {
                let i = rng.random_range(0..blobs.len());
                prefix = Some((i, hostile_u64(rng, blobs[i].len() as u64)));
            }
            // A size inside a blob (rows, columns, counts, dims come first).
            5 if !blobs.is_empty() => {
                let i = rng.random_range(0..blobs.len());
                let b = &mut blobs[i];
                let at = 8 * rng.random_range(0..4usize);
                if at + 8 <= b.len() {
                    let n = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
                    b[at..at + 8].copy_from_slice(&hostile_u64(rng, n).to_le_bytes());
                }
            }
            6 if !blobs.is_empty() => {
                let i = rng.random_range(0..blobs.len());
                match rng.random_range(0..3) {
                    0 => {
                        blobs.remove(i);
                    }
                    1 => {
                        let b = blobs[i].clone();
                        blobs.insert(i, b);
                    }
                    _ => blobs[i].extend((0..rng.random_range(1..9)).map(|_| rng.random::<u8>())),
                }
            }
            _ => {
                let extra = (0..rng.random_range(1..24)).map(|_| rng.random::<u8>());
                blobs.push(extra.collect());
            }
        }
    }
    let mut h = serde_json::to_string(&head).unwrap();
    if let Some(r) = raw {
        h = h.replace("\"__HOSTILE__\"", &r);
    }
    let mut out = b"DLTGEN1\n".to_vec();
    out.extend((h.len() as u64).to_le_bytes());
    out.extend(h.as_bytes());
    for (i, b) in blobs.iter().enumerate() {
        let n = match prefix {
            Some((j, v)) if i == j => v,
            _ => b.len() as u64,
        };
        out.extend(n.to_le_bytes());
        out.extend(b);
    }
    out
}

#[test]
fn fuzz_collapse_checkpoint_reader() {
    let dir = std::env::temp_dir().join(format!("dlt-studies-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    // Setup fits the models: faer's one-time per-thread scratch is allowed here, and the
    // threads that fit later reuse it.
    let cases = fuzz::unbounded(|| cases(&dir));
    // Every genuine checkpoint resumes (one fit, then done).
    for (c, bytes) in &cases {
        let ck = Checkpointing {
            path: dir.join(format!("{}.ckpt", c.name)),
            fingerprint: format!("{}|fuzz", c.name.split('-').next().unwrap()),
            resume: true,
        };
        std::fs::write(&ck.path, bytes).unwrap();
        fuzz::unbounded(|| (c.resume)(&ck)).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(c.policy.as_str(), c.name.split_once('-').unwrap().1);
    }
    eprintln!(
        "genuine checkpoints written and resumed in {:.1?}",
        t0.elapsed()
    );
    // The budget starts after the (model-fitting) setup.
    let fuzz::Budget {
        iters,
        deadline,
        seed,
    } = fuzz::Budget::from_env(12);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (mut ok, mut err, mut done) = (0, 0, 0);
    let mut failures = Vec::new();
    let t0 = Instant::now();
    'outer: for i in 0..iters {
        for (c, base) in &cases {
            if Instant::now() > deadline {
                break 'outer;
            }
            let hl = u64::from_le_bytes(base[8..16].try_into().unwrap()) as usize;
            let mutator = fuzz::Mutator {
                head: 16 + hl,
                big_endian: false,
                tokens: &TOKENS,
            };
            for kind in ["bytes", "fields"] {
                let b = if kind == "bytes" {
                    let mut b = base.clone();
                    fuzz::mutate(&mut b, &mut rng, &mutator);
                    b
                } else {
                    mutate_fields(base, &mut rng)
                };
                let ck = Checkpointing {
                    path: dir.join(format!("{}.ckpt", c.name)),
                    fingerprint: format!("{}|fuzz", c.name.split('-').next().unwrap()),
                    resume: true,
                };
                std::fs::write(&ck.path, &b).unwrap();
                match std::panic::catch_unwind(AssertUnwindSafe(|| (c.resume)(&ck))) {
                    Ok(Ok(())) => ok += 1,
                    Ok(Err(e)) => {
                        let e = e.to_string();
                        // The file named, or the model's own verdict on data it resumed
                        // from (stopped; diverged on huge but finite values).
                        let named = e.contains(&format!("{}.ckpt", c.name))
                            || e == STOPPED
                            || e.starts_with("training diverged");
                        if e.chars().any(|c| c.is_control()) || !named {
                            let keep = dir.join(format!("error-{i}-{kind}-{}.ckpt", c.name));
                            std::fs::write(&keep, &b).unwrap();
                            failures.push(format!(
                                "{} {kind} #{i}: error {e:?} ({})",
                                c.name,
                                keep.display()
                            ));
                        }
                        err += 1;
                    }
                    Err(p) => {
                        let keep = dir.join(format!("panic-{i}-{kind}-{}.ckpt", c.name));
                        std::fs::write(&keep, &b).unwrap();
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.push(format!(
                            "{} {kind} #{i}: panic {msg:?} (input {})",
                            c.name,
                            keep.display()
                        ));
                    }
                }
                done += 1;
            }
        }
    }
    std::panic::set_hook(quiet);
    eprintln!(
        "fuzz seed {seed}: collapse checkpoint {done} mutations ({ok} ok, {err} errors) in {:.1?}",
        t0.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(done >= 100);
    let _ = std::fs::remove_dir_all(&dir);
}
