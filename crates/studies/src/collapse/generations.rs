//! The generation loop of the model-collapse experiments (Gerstgrasser et al., arXiv
//! 2404.01413): each generation is fitted from scratch on data produced by the previous one,
//! and the data either replace the old data, accumulate with them, or accumulate with a fixed
//! training-set size ([`Policy`]).
//!
//! * [`run_generations`]: the loop over any [`Generative`] model;
//!   [`run_generations_checkpointed`] writes its state before every generation and resumes
//!   from it, so a long run that stopped continues where it stopped, with the same numbers.
//! * [`Persist`] and [`bytes`]: the little-endian checkpoint encoding of data sets.
//! * The [`Generative`] implementation of `dlt_theory`'s MLE Gaussian (its closed form is
//!   `dlt_theory::collapse::gaussian_replace_trace`).

use dlt_nn::NnError;
pub use dlt_theory::collapse::{GaussianModel, Policy};
use faer::Mat;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// The generation counter a `Generative` model saves in collapse checkpoints (8 bytes, LE);
/// `None` when `bytes` are not 8 bytes long.
pub fn generation_counter(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// A data set as bytes (little-endian), for checkpoints of the generation loop.
pub trait Persist: Sized {
    /// The little-endian encoding.
    fn to_bytes(&self) -> Vec<u8>;
    /// `None` when the bytes are not a valid encoding.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// Little-endian helpers for [`Persist`] implementations.
pub mod bytes {
    /// Append `v` as 8 little-endian bytes.
    pub fn put_u64(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    /// Read a u64 at `*at` and advance; `None` past the end.
    pub fn get_u64(b: &[u8], at: &mut usize) -> Option<u64> {
        let v = u64::from_le_bytes(b.get(*at..at.checked_add(8)?)?.try_into().ok()?);
        *at += 8;
        Some(v)
    }
    /// Append a length-prefixed (u64) slice of f32.
    pub fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
        put_u64(out, v.len() as u64);
        out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    /// Read a slice written by [`put_f32s`] and advance; `None` when truncated.
    pub fn get_f32s(b: &[u8], at: &mut usize) -> Option<Vec<f32>> {
        let n = usize::try_from(get_u64(b, at)?).ok()?;
        // Checked: a hostile length must not wrap around to a short slice.
        let raw = b.get(*at..at.checked_add(n.checked_mul(4)?)?)?;
        *at += 4 * n;
        Some(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        )
    }
    /// Append a length-prefixed (u64) slice of u32.
    pub fn put_u32s(out: &mut Vec<u8>, v: &[u32]) {
        put_u64(out, v.len() as u64);
        out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    /// Read a slice written by [`put_u32s`] and advance; `None` when truncated.
    pub fn get_u32s(b: &[u8], at: &mut usize) -> Option<Vec<u32>> {
        let n = usize::try_from(get_u64(b, at)?).ok()?;
        // Checked: a hostile length must not wrap around to a short slice.
        let raw = b.get(*at..at.checked_add(n.checked_mul(4)?)?)?;
        *at += 4 * n;
        Some(
            raw.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        )
    }
}

impl Persist for Vec<u32> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(8 + 4 * self.len());
        bytes::put_u32s(&mut o, self);
        o
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        let mut at = 0;
        let v = bytes::get_u32s(b, &mut at)?;
        (at == b.len()).then_some(v)
    }
}

impl Persist for Mat<f64> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(16 + 8 * self.nrows() * self.ncols());
        bytes::put_u64(&mut o, self.nrows() as u64);
        bytes::put_u64(&mut o, self.ncols() as u64);
        for j in 0..self.ncols() {
            for i in 0..self.nrows() {
                o.extend_from_slice(&self[(i, j)].to_le_bytes());
            }
        }
        o
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        let mut at = 0;
        let r = usize::try_from(bytes::get_u64(b, &mut at)?).ok()?;
        let c = usize::try_from(bytes::get_u64(b, &mut at)?).ok()?;
        // Checked: r·c·8 wrapping to 0 made a 16-byte payload a 2^61-element matrix.
        if Some(b.len()) != r.checked_mul(c)?.checked_mul(8)?.checked_add(16) {
            return None;
        }
        Some(Mat::from_fn(r, c, |i, j| {
            let k = 16 + 8 * (j * r + i);
            f64::from_le_bytes(b[k..k + 8].try_into().unwrap_or_default())
        }))
    }
}

/// A generative model for the collapse loop. `Data` is a set of examples.
pub trait Generative {
    /// A data set of the model's examples.
    type Data: Clone + Persist;
    /// The model's error type (substrate errors convert into it).
    type Error: From<NnError>;
    /// Fit a fresh model on `data` (every generation starts from scratch).
    fn fit(&mut self, data: &Self::Data, rng: &mut Xoshiro256PlusPlus) -> Result<(), Self::Error>;
    /// Draw `n` examples from the fitted model.
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Self::Data, Self::Error>;
    /// Metrics on real held-out data (or against the true distribution), name → value.
    fn evaluate(&self) -> Result<Vec<(String, f64)>, Self::Error>;
    /// Number of examples in `data`.
    fn len(data: &Self::Data) -> usize;
    /// The examples of `parts`, concatenated in order.
    fn concat(parts: &[Self::Data]) -> Self::Data;
    /// The examples of `data` at `idx`, in that order.
    fn select(data: &Self::Data, idx: &[usize]) -> Self::Data;
    /// The model's bookkeeping across generations (counters, per-generation sample grids), not
    /// its weights: every generation is fitted from scratch. Saved in checkpoints.
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Restore the bookkeeping written by [`Generative::save_state`]; `None` when the bytes
    /// are not a valid state (the caller reports the checkpoint as corrupt).
    fn load_state(&mut self, _bytes: &[u8]) -> Option<()> {
        Some(())
    }
    /// The names [`Generative::evaluate`] returns, in order: a resumed checkpoint's metrics
    /// must carry exactly these.
    fn metric_names(&self) -> Vec<&'static str>;
    /// Whether `data` restored from a checkpoint can be fitted by this model (example shape,
    /// token range, finite values); checked before a resumed run uses it.
    fn accepts(&self, data: &Self::Data) -> bool;
}

/// Where [`run_generations_checkpointed`] keeps its state, and whether to resume from it.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// The checkpoint file.
    pub path: std::path::PathBuf,
    /// Describes the run (model, scale, data); a checkpoint of another run is refused.
    pub fingerprint: String,
    /// Resume from `path` if it exists (otherwise it is overwritten).
    pub resume: bool,
}

#[derive(Serialize, Deserialize)]
struct CkptHeader {
    fingerprint: String,
    policy: Policy,
    seed: u64,
    t: usize,
    next_g: usize,
    metrics: Vec<GenerationMetrics>,
    rng: Xoshiro256PlusPlus,
    /// Synthetic parts of the pool saved after the train set (real data are not saved).
    pool_parts: usize,
}

const CKPT_MAGIC: &[u8; 8] = b"DLTGEN1\n";

fn ckpt_err(path: &std::path::Path, msg: impl Into<String>) -> NnError {
    NnError::Checkpoint {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

fn write_ckpt<D: Persist>(
    c: &Checkpointing,
    h: &CkptHeader,
    model_state: &[u8],
    train: &D,
    pool: &[D],
) -> Result<(), NnError> {
    let mut out = CKPT_MAGIC.to_vec();
    let head = serde_json::to_vec(h).map_err(|e| ckpt_err(&c.path, e.to_string()))?;
    bytes::put_u64(&mut out, head.len() as u64);
    out.extend_from_slice(&head);
    for blob in [model_state.to_vec(), train.to_bytes()]
        .into_iter()
        .chain(pool.iter().map(|p| p.to_bytes()))
    {
        bytes::put_u64(&mut out, blob.len() as u64);
        out.extend_from_slice(&blob);
    }
    // Write, then rename: a run killed mid-write leaves the previous checkpoint intact.
    let mut tmp = c.path.clone().into_os_string();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    if let Some(dir) = c.path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e.to_string()))?;
    }
    std::fs::write(&tmp, &out).map_err(|e| ckpt_err(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, &c.path).map_err(|e| ckpt_err(&c.path, e.to_string()))
}

type Restored<D> = (CkptHeader, Vec<u8>, D, Vec<D>);

fn read_ckpt<D: Persist>(c: &Checkpointing) -> Result<Restored<D>, NnError> {
    let b = std::fs::read(&c.path).map_err(|e| ckpt_err(&c.path, e.to_string()))?;
    let bad = || ckpt_err(&c.path, "truncated or corrupt; delete it to start afresh");
    if b.get(..8) != Some(&CKPT_MAGIC[..]) {
        return Err(bad());
    }
    let mut at = 8;
    // A length-prefixed slice; lengths are checked against the file (no wrap-around).
    let mut blob = || -> Result<&[u8], NnError> {
        let n = usize::try_from(bytes::get_u64(&b, &mut at).ok_or_else(bad)?).map_err(|_| bad())?;
        let s = b
            .get(at..at.checked_add(n).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        at += n;
        Ok(s)
    };
    let h: CkptHeader = serde_json::from_slice(blob()?).map_err(|_| bad())?;
    let state = blob()?.to_vec();
    let train = D::from_bytes(blob()?).ok_or_else(bad)?;
    // No capacity from the header: `pool_parts` is only trusted as far as blobs are present.
    let mut pool = Vec::new();
    for _ in 0..h.pool_parts {
        pool.push(D::from_bytes(blob()?).ok_or_else(bad)?);
    }
    if at != b.len() {
        return Err(bad());
    }
    Ok((h, state, train, pool))
}

/// The invariants every checkpoint written by [`run_generations_checkpointed`] holds, checked
/// on a resumed one so that no corrupt value reaches the model: one metrics record per
/// generation done with the model's metric names, one synthetic part per generation (none under
/// replace) of `t` examples each, a training set of the size the policy gives, data the model
/// accepts and a random stream that is not all zeros.
fn check_restored<M: Generative>(
    model: &M,
    c: &Checkpointing,
    h: &CkptHeader,
    train: &M::Data,
    pool: &[M::Data],
    t: usize,
) -> Result<(), NnError> {
    let bad = |what: &str| ckpt_err(&c.path, format!("{what}; delete it to start afresh"));
    let names = model.metric_names();
    if h.metrics.len() != h.next_g
        || h.metrics.iter().enumerate().any(|(g, m)| {
            m.g != g
                || m.metrics.len() != names.len()
                || m.metrics.iter().zip(&names).any(|((a, _), b)| a != b)
        })
    {
        return Err(bad("its metrics do not match its generation count"));
    }
    let parts = if h.policy == Policy::Replace {
        0
    } else {
        h.next_g
    };
    let train_len = if h.policy == Policy::Accumulate {
        t.checked_mul(parts + 1)
    } else {
        Some(t)
    };
    if h.pool_parts != parts
        || pool.len() != parts
        || Some(M::len(train)) != train_len
        || pool.iter().any(|p| M::len(p) != t)
    {
        return Err(bad("its data sets do not have the sizes of its generation"));
    }
    if !model.accepts(train) || !pool.iter().all(|p| model.accepts(p)) {
        return Err(bad("its data sets do not fit the model"));
    }
    // The all-zero state is a fixed point of xoshiro (it would give zeros forever).
    let mut r = h.rng.clone();
    if (0..4).all(|_| rand::RngCore::next_u64(&mut r) == 0) {
        return Err(bad("its random stream is all zeros"));
    }
    Ok(())
}

/// Metrics of one generation (generation 0 is fitted on real data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationMetrics {
    /// Generation number (0 = fitted on real data).
    pub g: usize,
    /// Number of training examples of this generation.
    pub train_size: usize,
    /// The model's evaluation metrics, name → value.
    pub metrics: Vec<(String, f64)>,
}

/// Run `generations` generations (0 = real data) under `policy`; `on_generation` sees each
/// generation's metrics as soon as they exist (to stream them).
pub fn run_generations<M: Generative>(
    model: &mut M,
    real: &M::Data,
    generations: usize,
    policy: Policy,
    seed: u64,
    on_generation: &mut dyn FnMut(&GenerationMetrics),
) -> Result<Vec<GenerationMetrics>, M::Error> {
    run_generations_checkpointed(model, real, generations, policy, seed, None, on_generation)
}

/// [`run_generations`] that writes its state (the next generation's training set, the pool of
/// synthetic data, the random stream, the metrics so far) to `ckpt.path` before fitting each
/// generation, resumes from it when `ckpt.resume` is set, and deletes it when the run is done.
/// A resumed run gives the same numbers as an uninterrupted one; `on_generation` is called for
/// the restored generations too.
pub fn run_generations_checkpointed<M: Generative>(
    model: &mut M,
    real: &M::Data,
    generations: usize,
    policy: Policy,
    seed: u64,
    ckpt: Option<&Checkpointing>,
    on_generation: &mut dyn FnMut(&GenerationMetrics),
) -> Result<Vec<GenerationMetrics>, M::Error> {
    if generations == 0 {
        return Err(NnError::Invalid {
            what: "--generations 0".into(),
            fix: "need at least one generation".into(),
        }
        .into());
    }
    let t = M::len(real);
    if t == 0 {
        return Err(NnError::Invalid {
            what: "--data: the real data set is empty".into(),
            fix: "give a non-empty data set".into(),
        }
        .into());
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut pool: Vec<M::Data> = vec![real.clone()];
    let mut train = real.clone();
    let mut out = vec![];
    let mut start = 0;
    if let Some(c) = ckpt.filter(|c| c.resume && c.path.exists()) {
        let (h, state, tr, synth) = read_ckpt::<M::Data>(c)?;
        if h.fingerprint != c.fingerprint || h.policy != policy || h.seed != seed || h.t != t {
            return Err(ckpt_err(
                &c.path,
                "written by a different run (model, scale, data, policy or seed differ); delete it or use another --out",
            )
            .into());
        }
        check_restored(model, c, &h, &tr, &synth, t)?;
        model.load_state(&state).ok_or_else(|| {
            ckpt_err(
                &c.path,
                "its model state is corrupt; delete it to start afresh",
            )
        })?;
        rng = h.rng;
        train = tr;
        pool.extend(synth);
        start = h.next_g;
        for m in &h.metrics {
            on_generation(m);
        }
        out = h.metrics;
    }
    for g in start..generations {
        if let Some(c) = ckpt {
            let h = CkptHeader {
                fingerprint: c.fingerprint.clone(),
                policy,
                seed,
                t,
                next_g: g,
                metrics: out.clone(),
                rng: rng.clone(),
                pool_parts: if policy == Policy::Replace {
                    0
                } else {
                    pool.len() - 1
                },
            };
            let keep = if policy == Policy::Replace {
                &pool[..0]
            } else {
                &pool[1..]
            };
            write_ckpt(c, &h, &model.save_state(), &train, keep)?;
        }
        model.fit(&train, &mut rng)?;
        let m = GenerationMetrics {
            g,
            train_size: M::len(&train),
            metrics: model.evaluate()?,
        };
        on_generation(&m);
        out.push(m);
        if g + 1 == generations {
            break;
        }
        let synthetic = model.sample(t, &mut rng)?;
        train = match policy {
            Policy::Replace => synthetic,
            Policy::Accumulate => {
                pool.push(synthetic);
                M::concat(&pool)
            }
            Policy::AccumulateSubsample => {
                pool.push(synthetic);
                let all = M::concat(&pool);
                let idx = sample(&mut rng, M::len(&all), t).into_vec();
                M::select(&all, &idx)
            }
        };
    }
    if let Some(c) = ckpt {
        let _ = std::fs::remove_file(&c.path);
    }
    out.truncate(generations);
    Ok(out)
}

impl Generative for GaussianModel {
    type Data = Mat<f64>;
    type Error = NnError;
    fn fit(&mut self, data: &Mat<f64>, _rng: &mut Xoshiro256PlusPlus) -> Result<(), NnError> {
        GaussianModel::fit(self, data);
        Ok(())
    }
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>, NnError> {
        Ok(GaussianModel::sample(self, n, rng)?)
    }
    /// tr(Σ̂)/tr(Σ₀), log det(Σ̂)/det(Σ₀), ‖μ̂ − μ₀‖².
    fn evaluate(&self) -> Result<Vec<(String, f64)>, NnError> {
        Ok(GaussianModel::evaluate(self))
    }
    fn len(data: &Mat<f64>) -> usize {
        data.nrows()
    }
    fn concat(parts: &[Mat<f64>]) -> Mat<f64> {
        let d = parts[0].ncols();
        let n: usize = parts.iter().map(|p| p.nrows()).sum();
        let mut out = Mat::<f64>::zeros(n, d);
        let mut r = 0;
        for p in parts {
            for i in 0..p.nrows() {
                for j in 0..d {
                    out[(r, j)] = p[(i, j)];
                }
                r += 1;
            }
        }
        out
    }
    fn select(data: &Mat<f64>, idx: &[usize]) -> Mat<f64> {
        Mat::from_fn(idx.len(), data.ncols(), |i, j| data[(idx[i], j)])
    }
    fn metric_names(&self) -> Vec<&'static str> {
        vec!["trace_ratio", "logdet_ratio", "mean_sq_error"]
    }
    /// Rows of the model's dimension, finite.
    fn accepts(&self, data: &Mat<f64>) -> bool {
        data.ncols() == self.dim
            && (0..data.ncols()).all(|j| (0..data.nrows()).all(|i| data[(i, j)].is_finite()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlt_theory::collapse::gaussian_replace_trace;

    /// A Gaussian model whose `fit` fails after `fits_left` fits: an interrupted run.
    struct Interrupted {
        inner: GaussianModel,
        fits_left: usize,
    }

    impl Generative for Interrupted {
        type Data = Mat<f64>;
        type Error = NnError;
        fn fit(&mut self, d: &Mat<f64>, rng: &mut Xoshiro256PlusPlus) -> Result<(), NnError> {
            if self.fits_left == 0 {
                return Err(NnError::Invalid {
                    what: "test".into(),
                    fix: "interrupted".into(),
                });
            }
            self.fits_left -= 1;
            Generative::fit(&mut self.inner, d, rng)
        }
        fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>, NnError> {
            Generative::sample(&self.inner, n, rng)
        }
        fn evaluate(&self) -> Result<Vec<(String, f64)>, NnError> {
            Generative::evaluate(&self.inner)
        }
        fn len(d: &Mat<f64>) -> usize {
            <GaussianModel as Generative>::len(d)
        }
        fn concat(p: &[Mat<f64>]) -> Mat<f64> {
            <GaussianModel as Generative>::concat(p)
        }
        fn select(d: &Mat<f64>, idx: &[usize]) -> Mat<f64> {
            <GaussianModel as Generative>::select(d, idx)
        }
        fn metric_names(&self) -> Vec<&'static str> {
            self.inner.metric_names()
        }
        fn accepts(&self, d: &Mat<f64>) -> bool {
            self.inner.accepts(d)
        }
    }

    #[test]
    fn an_interrupted_run_resumes_with_the_same_numbers() {
        let dir = std::env::temp_dir().join(format!("dlt-collapse-ckpt-{}", std::process::id()));
        for policy in Policy::ALL {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
            let real =
                GaussianModel::draw(&[0.0, 1.0], &Mat::identity(2, 2), 40, &mut rng).unwrap();
            let full = run_generations(
                &mut GaussianModel::standard(2),
                &real,
                6,
                policy,
                9,
                &mut |_| {},
            )
            .unwrap();
            let c = Checkpointing {
                path: dir.join(format!("{}.ckpt", policy.as_str())),
                fingerprint: "gaussian-2d-t40".into(),
                resume: true,
            };
            let mut m = Interrupted {
                inner: GaussianModel::standard(2),
                fits_left: 3,
            };
            let e =
                run_generations_checkpointed(&mut m, &real, 6, policy, 9, Some(&c), &mut |_| {});
            assert!(e.is_err() && c.path.exists());
            // Another run's checkpoint is refused.
            let other = Checkpointing {
                fingerprint: "something else".into(),
                ..c.clone()
            };
            let e = run_generations_checkpointed(
                &mut GaussianModel::standard(2),
                &real,
                6,
                policy,
                9,
                Some(&other),
                &mut |_| {},
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("different run"), "{e}");
            let mut seen = vec![];
            let mut m = Interrupted {
                inner: GaussianModel::standard(2),
                fits_left: 3,
            };
            let resumed =
                run_generations_checkpointed(&mut m, &real, 6, policy, 9, Some(&c), &mut |g| {
                    seen.push(g.g)
                })
                .unwrap();
            assert_eq!(
                m.fits_left, 0,
                "{policy:?}: only generations 3, 4, 5 were fitted again"
            );
            assert_eq!(resumed, full, "{policy:?}");
            assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
            assert!(
                !c.path.exists(),
                "the checkpoint is removed when the run is done"
            );
        }
        // A corrupt checkpoint is an error that says so.
        std::fs::create_dir_all(&dir).unwrap();
        let c = Checkpointing {
            path: dir.join("bad.ckpt"),
            fingerprint: "x".into(),
            resume: true,
        };
        std::fs::write(&c.path, b"DLTGEN1\n\x05").unwrap();
        let real = GaussianModel::draw(
            &[0.0],
            &Mat::identity(1, 1),
            10,
            &mut Xoshiro256PlusPlus::seed_from_u64(1),
        )
        .unwrap();
        let e = run_generations_checkpointed(
            &mut GaussianModel::standard(1),
            &real,
            2,
            Policy::Replace,
            0,
            Some(&c),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bad.ckpt") && e.contains("corrupt"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A checkpoint of a 2-D Gaussian accumulate run at generation 1 (20 real points), with
    /// `edit` applied to its header and data; the error (or `Ok`) of resuming from it.
    fn resume_edited(
        tag: &str,
        edit: impl FnOnce(&mut CkptHeader, &mut Vec<u8>, &mut Mat<f64>, &mut Vec<Mat<f64>>),
    ) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("dlt-ckpt-edit-{}", std::process::id()));
        let c = Checkpointing {
            path: dir.join(format!("{tag}.ckpt")),
            fingerprint: "g".into(),
            resume: true,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let real = GaussianModel::draw(&[0.0, 0.0], &Mat::identity(2, 2), 20, &mut rng).unwrap();
        let names = GaussianModel::standard(2).metric_names();
        let mut h = CkptHeader {
            fingerprint: "g".into(),
            policy: Policy::Accumulate,
            seed: 1,
            t: 20,
            next_g: 1,
            metrics: vec![GenerationMetrics {
                g: 0,
                train_size: 20,
                metrics: names.iter().map(|n| (n.to_string(), 1.0)).collect(),
            }],
            rng: rng.clone(),
            pool_parts: 1,
        };
        let mut state = vec![];
        let synth = GaussianModel::draw(&[0.0, 0.0], &Mat::identity(2, 2), 20, &mut rng).unwrap();
        let mut train = <GaussianModel as Generative>::concat(&[real.clone(), synth.clone()]);
        let mut pool = vec![synth];
        edit(&mut h, &mut state, &mut train, &mut pool);
        write_ckpt(&c, &h, &state, &train, &pool).unwrap();
        let r = run_generations_checkpointed(
            &mut GaussianModel::standard(2),
            &real,
            3,
            Policy::Accumulate,
            1,
            Some(&c),
            &mut |_| {},
        );
        let _ = std::fs::remove_dir_all(&dir);
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_resumed_checkpoint_must_match_its_run() {
        // The unedited checkpoint resumes.
        resume_edited("ok", |_, _, _, _| {}).unwrap();
        // Regression (issue 12, found by fuzz_checkpoint): a training set of the wrong width
        // was fitted, and the Gaussian's evaluation indexed past its 1 × 1 covariance (a panic).
        let e = resume_edited("narrow", |_, _, train, pool| {
            *train = Mat::zeros(40, 1);
            pool[0] = Mat::zeros(20, 1);
        })
        .unwrap_err();
        assert!(
            e.contains("narrow.ckpt") && e.contains("do not fit the model"),
            "{e}"
        );
        // Non-finite data, sizes that are not the policy's, metrics without the model's names,
        // a missing synthetic part, an all-zero random stream.
        type Edit =
            Box<dyn FnOnce(&mut CkptHeader, &mut Vec<u8>, &mut Mat<f64>, &mut Vec<Mat<f64>>)>;
        let cases: [(&str, Edit); 5] = [
            ("nan", Box::new(|_, _, t, _| t[(3, 1)] = f64::NAN)),
            ("size", Box::new(|_, _, t, _| *t = Mat::zeros(21, 2))),
            (
                "metrics",
                Box::new(|h, _, _, _| h.metrics[0].metrics.clear()),
            ),
            (
                "pool",
                Box::new(|h, _, _, p| {
                    p.clear();
                    h.pool_parts = 0;
                }),
            ),
            (
                "rng",
                Box::new(|h, _, _, _| h.rng = serde_json::from_str(r#"{"s":[0,0,0,0]}"#).unwrap()),
            ),
        ];
        for (tag, edit) in cases {
            let e = resume_edited(tag, edit).unwrap_err();
            assert!(
                e.contains(&format!("{tag}.ckpt")) && e.contains("delete it to start afresh"),
                "{tag}: {e}"
            );
        }
    }

    #[test]
    fn hostile_lengths_are_errors_without_allocating() {
        // Regression (issue 12): `pool_parts` sized a Vec::with_capacity before any blob was
        // read (2^62 parts: a capacity-overflow panic), lengths were added unchecked (a header
        // length of 2^64 − 1 overflowed) and a matrix's 8·r·c wrapped (r = 2^61, c = 1 made a
        // 16-byte payload a 2^61-element matrix).
        let big = resume_edited("parts", |h, _, _, _| h.pool_parts = 1 << 62).unwrap_err();
        assert!(
            big.contains("parts.ckpt") && big.contains("corrupt"),
            "{big}"
        );
        let dir = std::env::temp_dir().join(format!("dlt-ckpt-len-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = Checkpointing {
            path: dir.join("len.ckpt"),
            fingerprint: "g".into(),
            resume: true,
        };
        let mut b = CKPT_MAGIC.to_vec();
        b.extend(u64::MAX.to_le_bytes());
        b.extend(b"{}");
        std::fs::write(&c.path, &b).unwrap();
        let e = read_ckpt::<Mat<f64>>(&c)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("len.ckpt") && e.contains("corrupt"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let mut m = vec![];
        bytes::put_u64(&mut m, 1 << 61);
        bytes::put_u64(&mut m, 1);
        assert!(<Mat<f64> as Persist>::from_bytes(&m).is_none());
        let mut v = vec![];
        bytes::put_u64(&mut v, (u64::MAX >> 2) - 1);
        assert!(<Vec<u32> as Persist>::from_bytes(&v).is_none());
        assert!(bytes::get_f32s(&v, &mut 0).is_none());
    }

    #[test]
    fn gaussian_collapses_under_replace_only() {
        // 1-D, T = 100, 50 generations, 400 seeds: replace follows ((T−1)/T)^n within 3 SE;
        // accumulate stays near 1.
        let (t, gens, seeds) = (100usize, 50usize, 400u64);
        let mut rep = vec![vec![]; gens];
        let mut acc = vec![vec![]; gens];
        for s in 0..seeds {
            for (policy, store) in [(Policy::Replace, &mut rep), (Policy::Accumulate, &mut acc)] {
                let mut m = GaussianModel::standard(1);
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(1000 + s);
                let real = GaussianModel::draw(&[0.0], &Mat::identity(1, 1), t, &mut rng).unwrap();
                let out = run_generations(&mut m, &real, gens, policy, s, &mut |_| {}).unwrap();
                for (g, r) in out.iter().enumerate() {
                    store[g].push(r.metrics[0].1);
                }
            }
        }
        let stat = |v: &[f64]| {
            let k = v.len() as f64;
            let m = v.iter().sum::<f64>() / k;
            (
                m,
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1.0) / k).sqrt(),
            )
        };
        for g in [10, 49] {
            let (m, se) = stat(&rep[g]);
            // Generation g was fitted on data that passed through g + 1 MLE fits (the real
            // sample is the first): E = ((T−1)/T)^(g+1).
            let th = gaussian_replace_trace(t, g + 1);
            assert!(
                (m - th).abs() <= 3.0 * se,
                "replace g={g}: {m} ± {se} vs {th}"
            );
            let (a, _) = stat(&acc[g]);
            assert!(a > 0.95, "accumulate g={g}: {a}");
        }
    }
}
