//! Model collapse (Gerstgrasser et al., "Is Model Collapse Inevitable?", arXiv 2404.01413):
//! each generation is fitted on data produced by the previous generation, and the data either
//! *replace* the old data, *accumulate* with them, or accumulate with a fixed training-set size
//! (*accumulate-subsample*).
//!
//! * [`run_generations`]: the generic loop over any [`Generative`] model;
//!   [`run_generations_checkpointed`] writes its state before every generation and resumes
//!   from it, so a long run that stopped continues where it stopped, with the same numbers.
//! * [`linear`]: the paper's linear-regression setting with its closed forms
//!   (docs/derivations/collapse.md#replace and docs/derivations/collapse.md#accumulate):
//!   replace E = n·σ²d/(T−d−1), accumulate E = σ²d/(T−d−1)·Σ_{i≤n} 1/i² ≤ (π²/6)·σ²d/(T−d−1).
//! * [`GaussianModel`]: a multivariate Gaussian fitted by maximum likelihood on its own samples;
//!   under replace E[tr Σ̂_n]/tr Σ₀ = ((T−1)/T)^n.

use crate::TheoryError;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Side};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// What happens to the data between generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    Replace,
    Accumulate,
    AccumulateSubsample,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "replace" => Ok(Self::Replace),
            "accumulate" => Ok(Self::Accumulate),
            "accumulate-subsample" => Ok(Self::AccumulateSubsample),
            _ => Err(format!(
                "unknown policy '{s}': use replace, accumulate or accumulate-subsample"
            )),
        }
    }
}

impl Policy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Accumulate => "accumulate",
            Self::AccumulateSubsample => "accumulate-subsample",
        }
    }
    pub const ALL: [Policy; 3] = [
        Policy::Replace,
        Policy::Accumulate,
        Policy::AccumulateSubsample,
    ];
}

/// A data set as bytes (little-endian), for checkpoints of the generation loop.
pub trait Persist: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    /// `None` when the bytes are not a valid encoding.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// Little-endian helpers for [`Persist`] implementations.
pub mod bytes {
    pub fn put_u64(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn get_u64(b: &[u8], at: &mut usize) -> Option<u64> {
        let v = u64::from_le_bytes(b.get(*at..*at + 8)?.try_into().ok()?);
        *at += 8;
        Some(v)
    }
    pub fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
        put_u64(out, v.len() as u64);
        out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    pub fn get_f32s(b: &[u8], at: &mut usize) -> Option<Vec<f32>> {
        let n = get_u64(b, at)? as usize;
        let raw = b.get(*at..*at + n.checked_mul(4)?)?;
        *at += 4 * n;
        Some(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        )
    }
    pub fn put_u32s(out: &mut Vec<u8>, v: &[u32]) {
        put_u64(out, v.len() as u64);
        out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    pub fn get_u32s(b: &[u8], at: &mut usize) -> Option<Vec<u32>> {
        let n = get_u64(b, at)? as usize;
        let raw = b.get(*at..*at + n.checked_mul(4)?)?;
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
        let r = bytes::get_u64(b, &mut at)? as usize;
        let c = bytes::get_u64(b, &mut at)? as usize;
        if b.len() != 16 + 8 * r.checked_mul(c)? {
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
    type Data: Clone + Persist;
    type Error: From<TheoryError>;
    /// Fit a fresh model on `data` (every generation starts from scratch).
    fn fit(&mut self, data: &Self::Data, rng: &mut Xoshiro256PlusPlus) -> Result<(), Self::Error>;
    /// Draw `n` examples from the fitted model.
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Self::Data, Self::Error>;
    /// Metrics on real held-out data (or against the true distribution), name → value.
    fn evaluate(&self) -> Result<Vec<(String, f64)>, Self::Error>;
    fn len(data: &Self::Data) -> usize;
    fn concat(parts: &[Self::Data]) -> Self::Data;
    fn select(data: &Self::Data, idx: &[usize]) -> Self::Data;
    /// The model's bookkeeping across generations (counters, per-generation sample grids), not
    /// its weights: every generation is fitted from scratch. Saved in checkpoints.
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }
    fn load_state(&mut self, _bytes: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Where [`run_generations_checkpointed`] keeps its state, and whether to resume from it.
#[derive(Debug, Clone)]
pub struct Checkpointing {
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

fn ckpt_err(path: &std::path::Path, msg: impl Into<String>) -> TheoryError {
    TheoryError::Checkpoint {
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
) -> Result<(), TheoryError> {
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

fn read_ckpt<D: Persist>(c: &Checkpointing) -> Result<Restored<D>, TheoryError> {
    let b = std::fs::read(&c.path).map_err(|e| ckpt_err(&c.path, e.to_string()))?;
    let bad = || ckpt_err(&c.path, "truncated or corrupt; delete it to start afresh");
    if b.get(..8) != Some(&CKPT_MAGIC[..]) {
        return Err(bad());
    }
    let mut at = 8;
    let hl = bytes::get_u64(&b, &mut at).ok_or_else(bad)? as usize;
    let h: CkptHeader =
        serde_json::from_slice(b.get(at..at + hl).ok_or_else(bad)?).map_err(|_| bad())?;
    at += hl;
    let mut blob = || -> Result<&[u8], TheoryError> {
        let n = bytes::get_u64(&b, &mut at).ok_or_else(bad)? as usize;
        let s = b.get(at..at + n).ok_or_else(bad)?;
        at += n;
        Ok(s)
    };
    let state = blob()?.to_vec();
    let train = D::from_bytes(blob()?).ok_or_else(bad)?;
    let mut pool = Vec::with_capacity(h.pool_parts);
    for _ in 0..h.pool_parts {
        pool.push(D::from_bytes(blob()?).ok_or_else(bad)?);
    }
    Ok((h, state, train, pool))
}

/// Metrics of one generation (generation 0 is fitted on real data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationMetrics {
    pub g: usize,
    pub train_size: usize,
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
        return Err(TheoryError::Invalid {
            flag: "--generations",
            msg: "need at least one generation".into(),
        }
        .into());
    }
    let t = M::len(real);
    if t == 0 {
        return Err(TheoryError::Invalid {
            flag: "--data",
            msg: "the real data set is empty".into(),
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
        model.load_state(&state)?;
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

/// The linear-regression setting of docs/derivations/collapse.md#linear-setting.
pub mod linear {
    use super::*;

    /// Mean and standard error of the test error ‖ŵ_n − w*‖² per generation, and the theory.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct Generation {
        pub g: usize,
        pub test_error: f64,
        pub test_error_se: f64,
        /// Closed form (None for accumulate-subsample, which has none).
        pub theory: Option<f64>,
    }

    /// σ²d/(T − d − 1), the expected test error of one OLS fit (inverse-Wishart mean).
    pub fn base(d: usize, t: usize, sigma: f64) -> f64 {
        sigma * sigma * d as f64 / (t as f64 - d as f64 - 1.0)
    }

    /// Closed forms: replace n·base, accumulate base·Σ_{i≤n} 1/i².
    pub fn theory(policy: Policy, n: usize, d: usize, t: usize, sigma: f64) -> Option<f64> {
        let b = base(d, t, sigma);
        match policy {
            Policy::Replace => Some(n as f64 * b),
            Policy::Accumulate => Some(b * (1..=n).map(|i| 1.0 / (i * i) as f64).sum::<f64>()),
            Policy::AccumulateSubsample => None,
        }
    }

    /// Monte Carlo over `seeds` (each a fresh design X ~ N(0, I), w* ~ N(0, I)); generations
    /// are numbered 1..=G as in the paper (generation 1 fits the real labels).
    pub fn simulate(
        d: usize,
        t: usize,
        sigma: f64,
        generations: usize,
        policy: Policy,
        seeds: usize,
        seed: u64,
    ) -> Result<Vec<Generation>, TheoryError> {
        if d == 0 {
            return Err(TheoryError::Invalid {
                flag: "--d",
                msg: "the dimension d must be ≥ 1".into(),
            });
        }
        if t < d + 2 {
            return Err(TheoryError::Invalid {
                flag: "--t",
                msg: format!("OLS needs T ≥ d + 2 for a finite expected error (T = {t}, d = {d})"),
            });
        }
        if generations == 0 {
            return Err(TheoryError::Invalid {
                flag: "--generations",
                msg: "need at least one generation".into(),
            });
        }
        if seeds < 2 {
            return Err(TheoryError::Invalid {
                flag: "--seeds",
                msg: "need at least 2 seeds for a standard error".into(),
            });
        }
        if !(sigma >= 0.0) || !sigma.is_finite() {
            return Err(TheoryError::Invalid {
                flag: "--sigma",
                msg: format!("σ must be finite and ≥ 0, got {sigma}"),
            });
        }
        let threads = std::thread::available_parallelism()
            .map(|v| v.get())
            .unwrap_or(1)
            .min(seeds);
        let per: Vec<Vec<f64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|k| {
                    s.spawn(move || {
                        (k..seeds)
                            .step_by(threads)
                            .map(|i| {
                                one(
                                    d,
                                    t,
                                    sigma,
                                    generations,
                                    policy,
                                    seed.wrapping_add(i as u64),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let k = per.len() as f64;
        Ok((0..generations)
            .map(|g| {
                let v: Vec<f64> = per.iter().map(|r| r[g]).collect();
                let mean = v.iter().sum::<f64>() / k;
                let se = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0) / k).sqrt();
                Generation {
                    g: g + 1,
                    test_error: mean,
                    test_error_se: se,
                    theory: theory(policy, g + 1, d, t, sigma),
                }
            })
            .collect())
    }

    fn normals(rows: usize, cols: usize, sd: f64, rng: &mut Xoshiro256PlusPlus) -> Mat<f64> {
        Mat::from_fn(rows, cols, |_, _| sd * rng.sample::<f64, _>(StandardNormal))
    }

    /// OLS ŵ = (XᵀX)⁻¹Xᵀy via Cholesky.
    fn ols(x: &Mat<f64>, y: &Mat<f64>) -> Mat<f64> {
        use faer::linalg::solvers::Solve;
        let d = x.ncols();
        let mut g = Mat::<f64>::zeros(d, d);
        matmul(
            g.as_mut(),
            Accum::Replace,
            x.transpose(),
            x.as_ref(),
            1.0,
            Par::Seq,
        );
        let mut b = Mat::<f64>::zeros(d, 1);
        matmul(
            b.as_mut(),
            Accum::Replace,
            x.transpose(),
            y.as_ref(),
            1.0,
            Par::Seq,
        );
        match g.llt(Side::Lower) {
            Ok(l) => l.solve(&b),
            Err(_) => Mat::from_fn(d, 1, |_, _| f64::NAN),
        }
    }

    fn one(
        d: usize,
        t: usize,
        sigma: f64,
        generations: usize,
        policy: Policy,
        seed: u64,
    ) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let x = normals(t, d, 1.0, &mut rng);
        let w_star = normals(d, 1, 1.0, &mut rng);
        let mut w = w_star.clone();
        let mut labels: Vec<Mat<f64>> = vec![];
        let mut errs = Vec::with_capacity(generations);
        for _ in 0..generations {
            let mut y = Mat::<f64>::zeros(t, 1);
            matmul(
                y.as_mut(),
                Accum::Replace,
                x.as_ref(),
                w.as_ref(),
                1.0,
                Par::Seq,
            );
            for i in 0..t {
                y[(i, 0)] += sigma * rng.sample::<f64, _>(StandardNormal);
            }
            labels.push(y);
            w = match policy {
                Policy::Replace => ols(&x, labels.last().expect("pushed")),
                Policy::Accumulate => {
                    // OLS on [X; …; X] and the stacked labels = OLS on X and the mean label.
                    let k = labels.len() as f64;
                    let mean = Mat::from_fn(t, 1, |i, _| {
                        labels.iter().map(|y| y[(i, 0)]).sum::<f64>() / k
                    });
                    ols(&x, &mean)
                }
                Policy::AccumulateSubsample => {
                    let pool = labels.len() * t;
                    let idx = sample(&mut rng, pool, t).into_vec();
                    let xs = Mat::from_fn(t, d, |r, c| x[(idx[r] % t, c)]);
                    let ys = Mat::from_fn(t, 1, |r, _| labels[idx[r] / t][(idx[r] % t, 0)]);
                    ols(&xs, &ys)
                }
            };
            errs.push(
                (0..d)
                    .map(|i| (w[(i, 0)] - w_star[(i, 0)]).powi(2))
                    .sum::<f64>(),
            );
        }
        errs
    }
}

/// A D-dimensional Gaussian fitted by maximum likelihood (mean, covariance with 1/T).
#[derive(Debug, Clone)]
pub struct GaussianModel {
    pub dim: usize,
    pub true_mean: Vec<f64>,
    pub true_cov: Mat<f64>,
    mean: Vec<f64>,
    cov: Mat<f64>,
}

impl GaussianModel {
    /// The reference distribution N(0, I_D).
    pub fn standard(dim: usize) -> Self {
        Self {
            dim,
            true_mean: vec![0.0; dim],
            true_cov: Mat::identity(dim, dim),
            mean: vec![0.0; dim],
            cov: Mat::identity(dim, dim),
        }
    }
    /// `n` samples from N(μ, Σ) (rows of an n × D matrix).
    pub fn draw(
        mean: &[f64],
        cov: &Mat<f64>,
        n: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Mat<f64>, TheoryError> {
        let d = mean.len();
        // Σ may become singular under collapse: factor Σ + εI (ε relative 1e-12) or fall back to
        // the eigendecomposition with negative eigenvalues clipped.
        let l = match cov.llt(Side::Lower) {
            Ok(l) => l.L().to_owned(),
            Err(_) => {
                let evd =
                    cov.self_adjoint_eigen(Side::Lower)
                        .map_err(|_| TheoryError::Diverged {
                            layer: 0,
                            what: "covariance eigendecomposition failed".into(),
                        })?;
                let (u, s) = (evd.U(), evd.S());
                Mat::from_fn(d, d, |i, j| u[(i, j)] * s[j].max(0.0).sqrt())
            }
        };
        let z = Mat::<f64>::from_fn(n, d, |_, _| rng.sample::<f64, _>(StandardNormal));
        let mut x = Mat::<f64>::zeros(n, d);
        matmul(
            x.as_mut(),
            Accum::Replace,
            z.as_ref(),
            l.transpose(),
            1.0,
            Par::Seq,
        );
        for i in 0..n {
            for j in 0..d {
                x[(i, j)] += mean[j];
            }
        }
        Ok(x)
    }
}

impl Generative for GaussianModel {
    type Data = Mat<f64>;
    type Error = TheoryError;
    fn fit(&mut self, data: &Mat<f64>, _rng: &mut Xoshiro256PlusPlus) -> Result<(), TheoryError> {
        let (n, d) = (data.nrows(), data.ncols());
        self.mean = (0..d)
            .map(|j| (0..n).map(|i| data[(i, j)]).sum::<f64>() / n as f64)
            .collect();
        let centred = Mat::from_fn(n, d, |i, j| data[(i, j)] - self.mean[j]);
        let mut c = Mat::<f64>::zeros(d, d);
        matmul(
            c.as_mut(),
            Accum::Replace,
            centred.transpose(),
            centred.as_ref(),
            1.0 / n as f64,
            Par::Seq,
        );
        self.cov = c;
        Ok(())
    }
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>, TheoryError> {
        Self::draw(&self.mean, &self.cov, n, rng)
    }
    /// tr(Σ̂)/tr(Σ₀), log det(Σ̂)/det(Σ₀), ‖μ̂ − μ₀‖².
    fn evaluate(&self) -> Result<Vec<(String, f64)>, TheoryError> {
        let d = self.dim;
        let tr = (0..d).map(|i| self.cov[(i, i)]).sum::<f64>()
            / (0..d).map(|i| self.true_cov[(i, i)]).sum::<f64>();
        let logdet = |m: &Mat<f64>| {
            m.llt(Side::Lower)
                .map(|l| (0..d).map(|i| 2.0 * l.L()[(i, i)].ln()).sum::<f64>())
                .unwrap_or(f64::NEG_INFINITY)
        };
        let ld = logdet(&self.cov) - logdet(&self.true_cov);
        let mu = self
            .mean
            .iter()
            .zip(&self.true_mean)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>();
        Ok(vec![
            ("trace_ratio".into(), tr),
            ("logdet_ratio".into(), ld),
            ("mean_sq_error".into(), mu),
        ])
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
}

/// E[tr Σ̂_n]/tr Σ₀ under replace with the MLE covariance: ((T−1)/T)^n.
pub fn gaussian_replace_trace(t: usize, n: usize) -> f64 {
    ((t as f64 - 1.0) / t as f64).powi(n as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gaussian model whose `fit` fails after `fits_left` fits: an interrupted run.
    struct Interrupted {
        inner: GaussianModel,
        fits_left: usize,
    }

    impl Generative for Interrupted {
        type Data = Mat<f64>;
        type Error = TheoryError;
        fn fit(&mut self, d: &Mat<f64>, rng: &mut Xoshiro256PlusPlus) -> Result<(), TheoryError> {
            if self.fits_left == 0 {
                return Err(TheoryError::Invalid {
                    flag: "test",
                    msg: "interrupted".into(),
                });
            }
            self.fits_left -= 1;
            self.inner.fit(d, rng)
        }
        fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Mat<f64>, TheoryError> {
            self.inner.sample(n, rng)
        }
        fn evaluate(&self) -> Result<Vec<(String, f64)>, TheoryError> {
            self.inner.evaluate()
        }
        fn len(d: &Mat<f64>) -> usize {
            GaussianModel::len(d)
        }
        fn concat(p: &[Mat<f64>]) -> Mat<f64> {
            GaussianModel::concat(p)
        }
        fn select(d: &Mat<f64>, idx: &[usize]) -> Mat<f64> {
            GaussianModel::select(d, idx)
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

    #[test]
    fn linear_mc_matches_closed_forms() {
        // The reference setting (d = 10, T = 100, σ = 1;
        // docs/derivations/collapse.md#reference-runs), 4000 seeds: within 3 SE at every
        // generation; replace at G ≈ G × generation 1; accumulate below (π²/6)·base.
        let g = 20;
        let rep = linear::simulate(10, 100, 1.0, g, Policy::Replace, 4000, 1).unwrap();
        let acc = linear::simulate(10, 100, 1.0, g, Policy::Accumulate, 4000, 2).unwrap();
        for r in rep.iter().chain(&acc) {
            let th = r.theory.unwrap();
            assert!(
                (r.test_error - th).abs() <= 3.0 * r.test_error_se,
                "g={}: {} ± {} vs {th}",
                r.g,
                r.test_error,
                r.test_error_se
            );
        }
        let ratio = rep[g - 1].test_error / rep[0].test_error;
        assert!((ratio - g as f64).abs() < 0.1 * g as f64, "{ratio}");
        let bound = std::f64::consts::PI.powi(2) / 6.0 * linear::base(10, 100, 1.0);
        assert!(acc
            .iter()
            .all(|r| r.test_error < bound + 3.0 * r.test_error_se));
        let sub = linear::simulate(10, 100, 1.0, g, Policy::AccumulateSubsample, 2000, 3).unwrap();
        // docs/derivations/collapse.md#reference-runs: accumulate-subsample at n = 20 ≈ 0.3364
        // (between accumulate and replace).
        assert!(
            (sub[g - 1].test_error - 0.3364).abs() < 4.0 * sub[g - 1].test_error_se + 0.01,
            "{:?}",
            sub[g - 1]
        );
        assert!(linear::simulate(10, 11, 1.0, 3, Policy::Replace, 10, 0)
            .unwrap_err()
            .to_string()
            .contains("--t"));
        assert!(linear::simulate(10, 100, 1.0, 0, Policy::Replace, 10, 0)
            .unwrap_err()
            .to_string()
            .contains("--generations"));
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
