//! Monte Carlo validator: ensembles of real width-n, depth-L networks
//! (docs/derivations/theory.md#monte-carlo).
//!
//! Two samplers, both exact in distribution:
//! * [`Sampler::Full`]: full weight matrices (Gaussian or Haar via QR with sign fix), the exact
//!   forward equation for the NTK (docs/derivations/theory.md#ntk-forward-equation; 4n³ flops
//!   per layer as two GEMMs).
//! * [`Sampler::Gram`]: for preactivation statistics only. Given layer l, the preactivations of
//!   layer l+1 are i.i.d. N(0, Ĝ) with Ĝ = C_b + (C_W/n)Σσ² (Gaussian weights), or
//!   b + √(C_W Σσ²)·u with u uniform on the sphere (Haar weights): O(n) per layer
//!   (docs/derivations/theory.md#mc-samplers).
//!
//! Estimators are the model-free pair estimators of docs/derivations/theory.md#mc-estimators
//! with an unbiased K̂² (the finite-S bias (2K² + V)/S of the plain square is removed), and
//! standard errors come from batch means (docs/derivations/theory.md#mc-errors). Every network
//! draws from its own xoshiro256++ stream seeded from (seed, network index), so results do not
//! depend on the number of threads.

pub mod dntk;

use crate::profile::{Ensemble, Init, LearningRates};
use crate::TheoryError;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus as NetRng;
use serde::{Deserialize, Serialize};

/// Which sampler to use (see module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// Full weight matrices; needed for the NTK. O(n³) per layer.
    Full,
    /// Preactivations drawn from the stochastic metric Ĝ; O(n) per layer, no NTK.
    Gram,
}

/// Configuration of one Monte Carlo run.
#[derive(Debug, Clone)]
pub struct McConfig {
    /// The ensemble to sample (plain MLPs only: γ = 0, ξ = 1).
    pub ensemble: Ensemble,
    /// K^(1): the fixed input has |x|²/n₀ = (K^(1) − C_b)/C_W, n₀ = n.
    pub k1: f64,
    /// Width n of every layer (and of the input), ≥ 2.
    pub width: usize,
    /// Number of layers L.
    pub depth: usize,
    /// Number of independent networks drawn (≥ 2 × `batches`).
    pub networks: usize,
    /// Measure the NTK (requires the full sampler).
    pub ntk: bool,
    /// Learning rates of the NTK (used only with `ntk`).
    pub lr: LearningRates,
    /// Weight ensemble of the first layer (default: the same as the others).
    pub first_layer: Init,
    /// Base seed; network i uses its own stream derived from (seed, i).
    pub seed: u64,
    /// Number of batches for the batch-means standard errors.
    pub batches: usize,
    /// Worker threads (0: all available cores).
    pub threads: usize,
}

impl McConfig {
    /// [`Sampler::Full`] when the NTK is measured, [`Sampler::Gram`] otherwise.
    pub fn sampler(&self) -> Sampler {
        if self.ntk {
            Sampler::Full
        } else {
            Sampler::Gram
        }
    }
    /// V^(1) implied by the first layer: 0 for Gaussian weights, −2(K^(1) − C_b)² for Haar weights
    /// (a vector uniform on a sphere, docs/derivations/orthogonal.md#haar-first-layer).
    pub fn v1(&self) -> f64 {
        match self.first_layer {
            Init::Gaussian => 0.0,
            Init::Orthogonal => -2.0 * (self.k1 - self.ensemble.cb).powi(2),
        }
    }
    /// The leading-order theory for this ensemble (same K^(1), V^(1), learning rates, depth).
    pub fn theory(&self) -> Result<Vec<crate::Layer>, TheoryError> {
        crate::profile::profile(&crate::ProfileConfig {
            ensemble: self.ensemble.clone(),
            k1: self.k1,
            v1: self.v1(),
            depth: self.depth,
            lr: self.lr,
        })
    }
    fn validate(&self) -> Result<(), TheoryError> {
        self.ensemble.validate()?;
        let bad = |flag, msg: &str| {
            Err(TheoryError::Invalid {
                flag,
                msg: msg.into(),
            })
        };
        if self.ensemble.is_residual() {
            return bad("--gamma", "the Monte Carlo samples plain MLPs (γ = 0)");
        }
        if self.width < 2 {
            return bad(
                "--width",
                "width must be ≥ 2 (the pair estimators need two neurons)",
            );
        }
        if self.depth == 0 {
            return bad("--depth", "depth must be ≥ 1");
        }
        if self.networks < 2 * self.batches.max(2) {
            return bad(
                "--networks",
                "need at least two networks per batch (networks ≥ 2 × batches)",
            );
        }
        if !(self.k1 > self.ensemble.cb) || !self.k1.is_finite() {
            return bad(
                "--k1",
                "K^(1) must be finite and larger than C_b (the input must be non-zero)",
            );
        }
        Ok(())
    }
}

/// An estimate with its batch-means standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The Monte Carlo estimate.
    pub value: f64,
    /// Its batch-means standard error.
    pub se: f64,
}

/// Monte Carlo statistics of one layer. NTK entries are None without `ntk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McLayer {
    /// Layer index l (1-based).
    pub l: usize,
    /// (name, estimate) in a fixed order: K, V, V_over_K2, then theta, A, B, D, F and the ratios
    /// A_over_theta2, B_over_theta2, D_over_Ktheta, F_over_Ktheta.
    pub stats: Vec<(String, Estimate)>,
}

impl McLayer {
    /// The estimate named `name` (e.g. `K`, `V_over_K2`), if it was measured.
    pub fn get(&self, name: &str) -> Option<Estimate> {
        self.stats.iter().find(|(n, _)| n == name).map(|(_, e)| *e)
    }
}

/// Per-network, per-layer sums that the estimators need (all divided by n or n(n−1)).
const NQ: usize = 12;
// 0 S2/n, 1 (S2²−S4)/(n(n−1)), 2 (S2/n)², 3 T1/n, 4 (T1²−T2)/(n(n−1)), 5 (‖H‖²−T2)/(n(n−1)),
// 6 (S2·T1−Σz²H_ii)/(n(n−1)), 7 (zᵀHz−Σz²H_ii)/(n(n−1)), 8 (T1/n)², 9 (S2/n)(T1/n),
// 10 Ĝ-based unused slot, 11 count.

/// Shard `index` of `count` of a Monte Carlo run: the batches b with b mod count = index, each
/// batch whole. Batch b holds the networks s ≡ b (mod batches) and every network draws from its
/// own stream [`network_rng`]`(seed, s)`, so the shards together draw exactly the networks of the
/// unsharded run, and each batch's sums are accumulated in the same order (increasing s) as
/// there: merged shards reproduce the unsharded estimates bit for bit
/// (docs/derivations/theory.md#mc-errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, 0 ≤ index < count.
    pub index: usize,
    /// Number of shards k, 1 ≤ k ≤ batches.
    pub count: usize,
}

impl Shard {
    /// Parse `i/k` (the `--shard` flag).
    pub fn parse(s: &str) -> Result<Self, TheoryError> {
        let bad = || TheoryError::Invalid {
            flag: "--shard",
            msg: format!("'{s}' is not of the form i/k (shard i of k, 0 ≤ i < k), e.g. 0/4"),
        };
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            k.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// The batches of this shard among `batches`: b = index, index + count, …
    pub fn batches(&self, batches: usize) -> Vec<usize> {
        (self.index..batches).step_by(self.count.max(1)).collect()
    }
}

/// The sufficient statistics of one batch: for every layer l (1-based) the sums over the
/// batch's networks of the per-network quantities at `sums[(l − 1)·QUANTITIES ..]` (the pair
/// sums of docs/derivations/theory.md#mc-estimators; the last slot of each layer counts the
/// networks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSums {
    /// Batch index b (networks s ≡ b mod batches).
    pub batch: usize,
    /// depth × [`QUANTITIES`] sums.
    pub sums: Vec<f64>,
}

/// Number of per-network quantities summed per layer in [`BatchSums`].
pub const QUANTITIES: usize = NQ;

/// Run the ensemble. `progress` is called with the number of networks finished since last call.
pub fn run(cfg: &McConfig, progress: &(dyn Fn(u64) + Sync)) -> Result<Vec<McLayer>, TheoryError> {
    let all = Shard { index: 0, count: 1 };
    let sums = run_shard(cfg, all, progress)?;
    merge(cfg, &sums)
}

/// Run only the batches of `shard` (see [`Shard`]) and return their sums, in batch order;
/// [`merge`] turns the sums of all shards into the estimates.
pub fn run_shard(
    cfg: &McConfig,
    shard: Shard,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<BatchSums>, TheoryError> {
    cfg.validate()?;
    let (n, depth, nb) = (cfg.width, cfg.depth, cfg.batches.max(2));
    if shard.count == 0 || shard.index >= shard.count || shard.count > nb {
        return Err(TheoryError::Invalid {
            flag: "--shard",
            msg: format!(
                "shard {}/{} of {nb} batches: need 0 ≤ i < k ≤ --batches (every shard holds whole batches)",
                shard.index, shard.count
            ),
        });
    }
    let which = shard.batches(nb);
    let sums = batch_sums(
        cfg,
        depth * NQ,
        || Workspace::new(n, cfg.ntk),
        |work, s, acc| work.network(cfg, s, acc),
        &which,
        progress,
    )?;
    Ok(which
        .into_iter()
        .zip(sums)
        .map(|(batch, sums)| BatchSums { batch, sums })
        .collect())
}

/// The batch/thread harness shared by every Monte Carlo of this module: network s (0 ≤ s <
/// `cfg.networks`) belongs to batch s mod nb, nb = max(`cfg.batches`, 2), and is run by
/// `one(worker, s, acc)` into that batch's accumulator `acc` (length `slots`). Only the batches
/// listed in `which` are run (all of them, or one shard's, [`Shard`]); each sums its networks in
/// increasing s and each network draws from its own stream ([`network_rng`]), so the sums depend
/// neither on `cfg.threads` nor on the sharding. `new` makes one worker (its reusable buffers)
/// per thread. Returns the sums in the order of `which`, or the first error a network returned.
pub(crate) fn batch_sums<W>(
    cfg: &McConfig,
    slots: usize,
    new: impl Fn() -> W + Sync,
    one: impl Fn(&mut W, u64, &mut [f64]) -> Result<(), TheoryError> + Sync,
    which: &[usize],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Vec<f64>>, TheoryError> {
    let nb = cfg.batches.max(2);
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism()
            .map(|v| v.get())
            .unwrap_or(1)
    } else {
        cfg.threads
    };
    let mut sums = vec![vec![0.0f64; slots]; which.len()];
    let failure = std::sync::Mutex::new(None::<TheoryError>);
    let chunks = std::sync::Mutex::new(
        which
            .iter()
            .copied()
            .zip(sums.iter_mut())
            .collect::<Vec<_>>(),
    );
    std::thread::scope(|scope| {
        for _ in 0..threads.min(which.len()) {
            scope.spawn(|| {
                let mut work = new();
                loop {
                    let item = chunks.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((batch, acc)) = item else {
                        break;
                    };
                    let mut s = batch;
                    while s < cfg.networks {
                        if let Err(e) = one(&mut work, s as u64, acc) {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            return;
                        }
                        s += nb;
                        progress(1);
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(sums)
}

/// The estimates and batch-means standard errors from the sums of every batch (any order; each
/// batch exactly once), e.g. the [`run_shard`] outputs of all shards of one configuration.
pub fn merge(cfg: &McConfig, batches: &[BatchSums]) -> Result<Vec<McLayer>, TheoryError> {
    cfg.validate()?;
    let nb = cfg.batches.max(2);
    let mut sums: Vec<Option<&Vec<f64>>> = vec![None; nb];
    for b in batches {
        let slot = sums.get_mut(b.batch).ok_or_else(|| TheoryError::Invalid {
            flag: "shards",
            msg: format!(
                "batch {} is outside the run's {nb} batches; merge only shards of this configuration",
                b.batch
            ),
        })?;
        if slot.is_some() {
            return Err(TheoryError::Invalid {
                flag: "shards",
                msg: format!("batch {} appears twice; give every shard once", b.batch),
            });
        }
        if b.sums.len() != cfg.depth * NQ {
            return Err(TheoryError::Invalid {
                flag: "shards",
                msg: format!(
                    "batch {} has {} sums, expected depth {} × {NQ}; the shard is from another configuration or damaged",
                    b.batch,
                    b.sums.len(),
                    cfg.depth
                ),
            });
        }
        *slot = Some(&b.sums);
    }
    if let Some(missing) = sums.iter().position(|s| s.is_none()) {
        return Err(TheoryError::Invalid {
            flag: "shards",
            msg: format!(
                "batch {missing} of {nb} is missing; run the shard that holds it (with k shards, shard {missing} mod k) and merge again"
            ),
        });
    }
    let sums: Vec<Vec<f64>> = sums.into_iter().flatten().cloned().collect();
    Ok(estimate(&sums, cfg.width, cfg.depth, cfg.ntk))
}

/// The estimate Σ_b sums[b][slot] / Σ_b sums[b][count] with the batch-means standard error of
/// the per-batch ratios (docs/derivations/theory.md#mc-errors).
pub(crate) fn ratio_estimate(sums: &[Vec<f64>], slot: usize, count: usize) -> Estimate {
    let nb = sums.len() as f64;
    let means: Vec<f64> = sums.iter().map(|b| b[slot] / b[count]).collect();
    let value =
        sums.iter().map(|b| b[slot]).sum::<f64>() / sums.iter().map(|b| b[count]).sum::<f64>();
    let m = means.iter().sum::<f64>() / nb;
    let var = means.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (nb - 1.0);
    Estimate {
        value,
        se: (var / nb).sqrt(),
    }
}

/// Estimators of docs/derivations/theory.md#mc-estimators from the accumulated sums (count in
/// slot 11).
fn layer_estimates(q: &[f64], n: f64, ntk: bool) -> Vec<(&'static str, f64)> {
    let cnt = q[11];
    let m = |i: usize| q[i] / cnt;
    // Unbiased squares of means: m̄² − Var̂/(S) with Var̂ from the per-network second moments.
    let sq = |mean: f64, second: f64| mean * mean - (second - mean * mean) / (cnt - 1.0);
    let k = m(0);
    let v = n * (m(1) - sq(k, m(2)));
    let mut out = vec![("K", k), ("V", v), ("V_over_K2", v / (k * k))];
    if ntk {
        let th = m(3);
        let cross = k * th - (m(9) - k * th) / (cnt - 1.0);
        let a = n * (m(4) - sq(th, m(8)));
        let b = n * m(5);
        let d = n * (m(6) - cross);
        let f = n * m(7);
        out.extend([
            ("theta", th),
            ("A", a),
            ("B", b),
            ("D", d),
            ("F", f),
            ("A_over_theta2", a / (th * th)),
            ("B_over_theta2", b / (th * th)),
            ("D_over_Ktheta", d / (k * th)),
            ("F_over_Ktheta", f / (k * th)),
        ]);
    }
    out
}

fn estimate(sums: &[Vec<f64>], n: usize, depth: usize, ntk: bool) -> Vec<McLayer> {
    let nb = sums.len() as f64;
    (0..depth)
        .map(|l| {
            let slot = |b: &Vec<f64>| b[l * NQ..(l + 1) * NQ].to_vec();
            let mut pooled = vec![0.0; NQ];
            let per_batch: Vec<Vec<(&str, f64)>> = sums
                .iter()
                .map(|b| {
                    let q = slot(b);
                    pooled.iter_mut().zip(&q).for_each(|(p, v)| *p += v);
                    layer_estimates(&q, n as f64, ntk)
                })
                .collect();
            let full = layer_estimates(&pooled, n as f64, ntk);
            let stats = full
                .iter()
                .enumerate()
                .map(|(i, (name, value))| {
                    let vals: Vec<f64> = per_batch.iter().map(|b| b[i].1).collect();
                    let mean = vals.iter().sum::<f64>() / nb;
                    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (nb - 1.0);
                    (
                        name.to_string(),
                        Estimate {
                            value: *value,
                            se: (var / nb).sqrt(),
                        },
                    )
                })
                .collect();
            McLayer { l: l + 1, stats }
        })
        .collect()
}

/// The random stream of network `s`: xoshiro256++ (fast enough that drawing n² normals costs
/// less than the n³ GEMMs) seeded through SplitMix64 from (seed, s), so every network has its
/// own reproducible stream whatever the thread count.
fn network_rng(seed: u64, s: u64) -> NetRng {
    let mut x = seed ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    // SplitMix64 finaliser (Steele, Lea, Flood 2014) decorrelates neighbouring (seed, s).
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    NetRng::seed_from_u64(x ^ (x >> 31))
}

/// Fill `w` with a weight matrix of variance C_W/n per entry (Gaussian) or √C_W·Haar.
pub(crate) fn draw_weights(w: &mut Mat<f64>, init: Init, cw: f64, rng: &mut NetRng) {
    let n = w.nrows();
    for j in 0..n {
        for v in w.col_as_slice_mut(j) {
            *v = rng.sample::<f64, _>(StandardNormal);
        }
    }
    match init {
        Init::Gaussian => {
            let sd = (cw / n as f64).sqrt();
            for j in 0..n {
                w.col_as_slice_mut(j).iter_mut().for_each(|v| *v *= sd);
            }
        }
        Init::Orthogonal => {
            // Haar: Q from QR, columns multiplied by sign(diag R) (Mezzadri 2007).
            let qr = w.qr();
            let q = qr.compute_Q();
            let r = qr.R();
            let sc = cw.sqrt();
            for j in 0..n {
                let sign = if r[(j, j)] < 0.0 { -sc } else { sc };
                let (src, dst) = (q.col(j), w.col_as_slice_mut(j));
                for i in 0..n {
                    dst[i] = sign * src[i];
                }
            }
        }
    }
}

/// z ← z^(1) for the fixed input of `cfg`, drawn exactly: the first-layer weights enter nothing
/// but z^(1), whose law is N(0, K^(1)) i.i.d. for Gaussian W and b + √C_W|x|·u (u uniform on the
/// sphere, docs/derivations/orthogonal.md#haar-first-layer) for Haar W; |x|² = n(K^(1) − C_b)/C_W.
pub(crate) fn first_layer(cfg: &McConfig, rng: &mut NetRng, z: &mut [f64]) {
    let e = &cfg.ensemble;
    let nf = z.len() as f64;
    match cfg.first_layer {
        Init::Gaussian => {
            let sd = cfg.k1.sqrt();
            z.iter_mut()
                .for_each(|v| *v = sd * rng.sample::<f64, _>(StandardNormal));
        }
        Init::Orthogonal => {
            let xnorm2 = nf * (cfg.k1 - e.cb) / e.cw;
            sphere(z, rng, (e.cw * xnorm2).sqrt());
            let sb = e.cb.sqrt();
            z.iter_mut()
                .for_each(|v| *v += sb * rng.sample::<f64, _>(StandardNormal));
        }
    }
}

/// z ← radius · (uniform unit vector).
fn sphere(z: &mut [f64], rng: &mut NetRng, radius: f64) {
    z.iter_mut()
        .for_each(|v| *v = rng.sample::<f64, _>(StandardNormal));
    let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
    z.iter_mut().for_each(|v| *v *= radius / norm);
}

/// Buffers reused across the networks of one thread.
struct Workspace {
    n: usize,
    z: Vec<f64>,
    s: Vec<f64>,
    ds: Vec<f64>,
    w: Mat<f64>,
    m: Mat<f64>,
    h: Mat<f64>,
    tmp: Mat<f64>,
}

impl Workspace {
    fn new(n: usize, ntk: bool) -> Self {
        let big = |on: bool| {
            if on {
                Mat::zeros(n, n)
            } else {
                Mat::zeros(0, 0)
            }
        };
        Self {
            n,
            z: vec![0.0; n],
            s: vec![0.0; n],
            ds: vec![0.0; n],
            w: Mat::zeros(n, n),
            m: big(ntk),
            h: big(ntk),
            tmp: big(ntk),
        }
    }

    fn draw_weights(&mut self, init: Init, cw: f64, rng: &mut NetRng) {
        draw_weights(&mut self.w, init, cw, rng);
    }

    fn network(&mut self, cfg: &McConfig, s: u64, acc: &mut [f64]) -> Result<(), TheoryError> {
        let mut rng = network_rng(cfg.seed, s);
        let e = &cfg.ensemble;
        let n = self.n;
        let nf = n as f64;
        let sb = e.cb.sqrt();
        let xnorm2 = nf * (cfg.k1 - e.cb) / e.cw; // |x|², n₀ = n
        first_layer(cfg, &mut rng, &mut self.z);
        if cfg.ntk {
            let (lb, lw) = cfg.lr.at(1);
            let d = lb + lw * xnorm2 / nf;
            self.h.fill(0.0);
            for i in 0..n {
                self.h[(i, i)] = d;
            }
        }
        for l in 1..=cfg.depth {
            self.record(l, cfg.ntk, acc);
            if self.z.iter().any(|v| !v.is_finite()) {
                return Err(TheoryError::Diverged {
                    layer: l,
                    what: "a preactivation overflowed in the Monte Carlo".into(),
                });
            }
            if l == cfg.depth {
                break;
            }
            let act = &*e.act;
            if cfg.ntk {
                for i in 0..n {
                    (self.s[i], self.ds[i]) = act.f_d1(self.z[i]);
                }
            } else {
                for i in 0..n {
                    self.s[i] = act.f(self.z[i]);
                }
            }
            let ss: f64 = self.s.iter().map(|v| v * v).sum();
            match (cfg.sampler(), e.init) {
                (Sampler::Gram, Init::Gaussian) => {
                    let sd = (e.cb + e.cw * ss / nf).sqrt();
                    self.z
                        .iter_mut()
                        .for_each(|v| *v = sd * rng.sample::<f64, _>(StandardNormal));
                }
                (Sampler::Gram, Init::Orthogonal) => {
                    self.sphere(&mut rng, (e.cw * ss).sqrt());
                    self.z
                        .iter_mut()
                        .for_each(|v| *v += sb * rng.sample::<f64, _>(StandardNormal));
                }
                (Sampler::Full, init) => {
                    // One fused pass per column: draw W's column (Gaussian) or read it (Haar),
                    // accumulate z' = b + Wσ and form M = W diag σ' for the NTK.
                    self.z
                        .iter_mut()
                        .for_each(|v| *v = sb * rng.sample::<f64, _>(StandardNormal));
                    if init == Init::Orthogonal {
                        self.draw_weights(init, e.cw, &mut rng);
                    }
                    let sd = (e.cw / nf).sqrt();
                    let Workspace { z, s, ds, w, m, .. } = &mut *self;
                    for j in 0..n {
                        let (sj, dj) = (s[j], ds[j]);
                        let col = w.col_as_slice_mut(j);
                        if init == Init::Gaussian {
                            col.iter_mut()
                                .for_each(|v| *v = sd * rng.sample::<f64, _>(StandardNormal));
                        }
                        z.iter_mut()
                            .zip(col.iter())
                            .for_each(|(zi, wi)| *zi += wi * sj);
                        if cfg.ntk {
                            m.col_as_slice_mut(j)
                                .iter_mut()
                                .zip(col.iter())
                                .for_each(|(mi, wi)| *mi = wi * dj);
                        }
                    }
                    if cfg.ntk {
                        // Ĥ' = (λ_b + λ_W Σσ²/n) I + (W diag σ') Ĥ (W diag σ')ᵀ
                        // (docs/derivations/theory.md#ntk-forward-equation)
                        matmul(
                            self.tmp.as_mut(),
                            Accum::Replace,
                            self.m.as_ref(),
                            self.h.as_ref(),
                            1.0,
                            Par::Seq,
                        );
                        matmul(
                            self.h.as_mut(),
                            Accum::Replace,
                            self.tmp.as_ref(),
                            self.m.transpose(),
                            1.0,
                            Par::Seq,
                        );
                        let (lb, lw) = cfg.lr.at(l + 1);
                        let d = lb + lw * ss / nf;
                        for i in 0..n {
                            self.h[(i, i)] += d;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sphere(&mut self, rng: &mut NetRng, radius: f64) {
        sphere(&mut self.z, rng, radius);
    }

    fn record(&self, l: usize, ntk: bool, acc: &mut [f64]) {
        let n = self.n as f64;
        let pairs = n * (n - 1.0);
        let q = &mut acc[(l - 1) * NQ..l * NQ];
        let s2: f64 = self.z.iter().map(|v| v * v).sum();
        let s4: f64 = self.z.iter().map(|v| v.powi(4)).sum();
        q[0] += s2 / n;
        q[1] += (s2 * s2 - s4) / pairs;
        q[2] += (s2 / n).powi(2);
        q[11] += 1.0;
        if ntk {
            let h = &self.h;
            let nn = self.n;
            let (mut t1, mut t2, mut fro, mut zhz, mut zdiag) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for j in 0..nn {
                let col = h.col_as_slice(j);
                let zj = self.z[j];
                let mut dot = 0.0;
                for (&c, &zi) in col.iter().zip(&self.z) {
                    fro += c * c;
                    dot += zi * c;
                }
                zhz += dot * zj;
                t1 += col[j];
                t2 += col[j] * col[j];
                zdiag += zj * zj * col[j];
            }
            q[3] += t1 / n;
            q[4] += (t1 * t1 - t2) / pairs;
            q[5] += (fro - t2) / pairs;
            q[6] += (s2 * t1 - zdiag) / pairs;
            q[7] += (zhz - zdiag) / pairs;
            q[8] += (t1 / n).powi(2);
            q[9] += (s2 / n) * (t1 / n);
        }
    }
}

/// Exact finite-width V/(nK²) = E[z_i²z_j²]/K² − 1 for ReLU (C_b = 0, Gaussian weights):
/// (1 + 5/n)^{l−1} − 1; linear networks: (1 + 2/n)^{l−1} − 1
/// (docs/derivations/theory.md#relu-exact-finite-width).
pub fn exact_scale_invariant_ratio(nu_plus_one_over_n: f64, l: usize) -> f64 {
    (1.0 + nu_plus_one_over_n).powi(l as i32 - 1) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::parse;

    fn cfg(act: &str, cw: f64, n: usize, depth: usize, s: usize, ntk: bool) -> McConfig {
        McConfig {
            ensemble: Ensemble::new(parse(act).unwrap(), 0.0, cw),
            k1: 1.0,
            width: n,
            depth,
            networks: s,
            ntk,
            lr: LearningRates::default(),
            first_layer: Init::Gaussian,
            seed: 7,
            batches: 16,
            threads: 0,
        }
    }

    #[test]
    fn relu_gram_sampler_matches_exact_finite_width_ratio() {
        // (1 + 5/n)^{l−1} − 1 holds exactly at finite n; require |MC − exact| < 3 SE
        // (batch-means SE with 16 batches; the seed is fixed, so the test is deterministic).
        let (n, depth) = (16, 6);
        let r = run(&cfg("relu", 2.0, n, depth, 40_000, false), &|_| {}).unwrap();
        for layer in &r[1..] {
            let v = layer.get("V_over_K2").unwrap();
            let exact = exact_scale_invariant_ratio(5.0 / n as f64, layer.l) * n as f64;
            assert!(
                (v.value - exact).abs() < 3.5 * v.se,
                "l={}: {} ± {} vs {exact}",
                layer.l,
                v.value,
                v.se
            );
        }
    }

    #[test]
    fn full_and_gram_samplers_agree_and_are_thread_independent() {
        let mut c = cfg("tanh", 1.0, 8, 4, 4_000, true);
        let full = run(&c, &|_| {}).unwrap();
        c.threads = 1;
        assert_eq!(
            full,
            run(&c, &|_| {}).unwrap(),
            "same seed, different threads, same numbers"
        );
        c.ntk = false;
        c.threads = 0;
        let gram = run(&c, &|_| {}).unwrap();
        for (a, b) in full.iter().zip(&gram) {
            let (x, y) = (a.get("V").unwrap(), b.get("V").unwrap());
            let se = (x.se * x.se + y.se * y.se).sqrt();
            assert!(
                (x.value - y.value).abs() < 4.0 * se,
                "l={}: {x:?} vs {y:?}",
                a.l
            );
        }
    }

    #[test]
    fn linear_orthogonal_network_has_exact_sphere_vertex() {
        // Linear Haar network: z is uniform on a sphere of fixed radius at every layer, so
        // V/K² = n(n/(n+2) − 1) exactly in expectation (MC within 4 SE) and the NTK is ∝ I.
        let mut c = cfg("linear", 1.0, 12, 5, 4_000, true);
        c.ensemble.init = Init::Orthogonal;
        c.first_layer = Init::Orthogonal;
        let r = run(&c, &|_| {}).unwrap();
        for layer in &r {
            let v = layer.get("V_over_K2").unwrap().value;
            let want = 12.0 * (12.0 / 14.0 - 1.0);
            let est = layer.get("V_over_K2").unwrap();
            assert!(
                (est.value - want).abs() < 4.0 * est.se,
                "l={}: {v} ± {} vs {want}",
                layer.l,
                est.se
            );
            // Θ of a linear Haar network is deterministic: A = 0 and the NTK is ∝ I.
            assert!(
                layer.get("A").unwrap().value.abs() < 1e-9
                    && layer.get("B").unwrap().value.abs() < 1e-9
            );
        }
    }

    #[test]
    fn shards_merge_to_the_unsharded_run_bit_for_bit() {
        // Every batch is summed in the same order whichever shard runs it, and merge pools
        // the batches in batch order like run: equality is exact, not to a tolerance.
        let mut c = cfg("tanh", 1.0, 6, 3, 640, true);
        c.batches = 10;
        let whole = run(&c, &|_| {}).unwrap();
        for k in [1, 3, 4, 10] {
            let mut sums = Vec::new();
            for i in (0..k).rev() {
                sums.extend(run_shard(&c, Shard { index: i, count: k }, &|_| {}).unwrap());
            }
            assert_eq!(merge(&c, &sums).unwrap(), whole, "k = {k}");
        }
        let mut sums = run_shard(&c, Shard::parse("0/2").unwrap(), &|_| {}).unwrap();
        let err = merge(&c, &sums).unwrap_err().to_string();
        assert!(err.contains("batch 1 of 10 is missing"), "{err}");
        sums.extend(sums.clone());
        let err = merge(&c, &sums).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
        for bad in ["4/4", "1", "a/2", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let err = run_shard(
            &c,
            Shard {
                index: 0,
                count: 11,
            },
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--shard"), "{err}");
    }
}
