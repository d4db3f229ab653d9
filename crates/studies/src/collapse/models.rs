//! The models of the collapse loop: each [`Generative`] fits a fresh network per generation
//! (the candle models of `dlt_nn`), samples from it and evaluates it on real held-out data;
//! and the checkpoint encodings ([`Persist`]) of their data sets.

use super::generations::{Generative, Persist};
use dlt_nn::data::Split;
use dlt_nn::diffusion::{frechet_distance, Ddpm, DdpmConfig, Points};
use dlt_nn::gpt_kernel::GptKernel;
use dlt_nn::lm::LmConfig;
use dlt_nn::vae::{Vae, VaeConfig};
use dlt_nn::NnError;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The collapse-loop model: a fresh transformer ([`GptKernel`]) per generation, trained on a token stream, sampled
/// in streams of `ctx` tokens, evaluated on real held-out text.
pub struct LmGenerative {
    /// Model and training sizes.
    pub cfg: LmConfig,
    /// Real held-out tokens for the cross-entropy.
    pub test: Vec<u32>,
    /// Tokens a sampled stream may start from (one drawn uniformly per stream).
    pub start: Vec<u32>,
    /// Base seed; generation g's model is initialised from seed + g.
    pub seed: u64,
    generation: u64,
    model: Option<GptKernel>,
    /// Training steps of the latest fit.
    pub last_steps: usize,
}

impl LmGenerative {
    /// A model with no fit yet, evaluated on `test`.
    pub fn new(cfg: LmConfig, test: Vec<u32>, start: Vec<u32>, seed: u64) -> Self {
        Self {
            cfg,
            test,
            start,
            seed,
            generation: 0,
            model: None,
            last_steps: 0,
        }
    }
}

impl Generative for LmGenerative {
    type Data = Vec<u32>;
    type Error = NnError;
    fn fit(&mut self, data: &Vec<u32>, rng: &mut Xoshiro256PlusPlus) -> Result<(), NnError> {
        let mut m = GptKernel::init(self.cfg, self.seed.wrapping_add(self.generation))?;
        self.generation += 1;
        self.last_steps = m.train(data, rng, &mut |_, _| {})?;
        self.model = Some(m);
        Ok(())
    }
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Vec<u32>, NnError> {
        let m = self.model.as_ref().ok_or_else(|| NnError::Invalid {
            what: "sample before fit".into(),
            fix: "fit first".into(),
        })?;
        // At most 2048 streams at a time: the KV caches of all streams live at once (≈ 0.5 GB
        // for 2048 streams of the full-size model; 7813 streams at once ran out of 24 GB).
        let mut streams = n.div_ceil(self.cfg.ctx);
        let mut out: Vec<u32> = Vec::with_capacity(n + self.cfg.ctx);
        while streams > 0 {
            let now = streams.min(2048);
            out.extend(m.sample(now, self.cfg.ctx, &self.start, rng).concat());
            streams -= now;
        }
        out.truncate(n);
        Ok(out)
    }
    fn evaluate(&self) -> Result<Vec<(String, f64)>, NnError> {
        let m = self.model.as_ref().ok_or_else(|| NnError::Invalid {
            what: "evaluate before fit".into(),
            fix: "fit first".into(),
        })?;
        Ok(vec![
            ("test_cross_entropy".into(), m.evaluate(&self.test)?),
            ("train_steps".into(), self.last_steps as f64),
        ])
    }
    fn len(data: &Vec<u32>) -> usize {
        data.len()
    }
    fn concat(parts: &[Vec<u32>]) -> Vec<u32> {
        parts.concat()
    }
    /// Subsampling keeps contiguous text: every 64th of the random positions `idx` selects the
    /// 64-token chunk that contains it (with repetition, so the size is kept).
    fn select(data: &Vec<u32>, idx: &[usize]) -> Vec<u32> {
        let chunk = 64;
        let mut starts: Vec<usize> = idx
            .iter()
            .step_by(chunk)
            .map(|&i| (i / chunk) * chunk)
            .collect();
        starts.sort_unstable();
        let mut out = Vec::with_capacity(idx.len());
        for s in starts {
            out.extend_from_slice(&data[s..(s + chunk).min(data.len())]);
        }
        out
    }
    fn save_state(&self) -> Vec<u8> {
        self.generation.to_le_bytes().to_vec()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Option<()> {
        self.generation = super::generations::generation_counter(bytes)?;
        Some(())
    }
    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_cross_entropy", "train_steps"]
    }
    /// Token ids below the vocabulary size.
    fn accepts(&self, data: &Vec<u32>) -> bool {
        data.iter().all(|&t| (t as usize) < self.cfg.vocab)
    }
}

/// The collapse-loop model: a fresh VAE per generation, −ELBO on real test images.
pub struct VaeGenerative {
    /// Model and training sizes.
    pub cfg: VaeConfig,
    /// Real held-out test images for the −ELBO.
    pub test: Split,
    /// Base seed; generation g's model is initialised from seed + g.
    pub seed: u64,
    generation: u64,
    model: Option<Vae>,
    /// Samples of each generation's model (for the grid figure): 16 images per generation.
    pub grids: Vec<Vec<f32>>,
}

impl VaeGenerative {
    /// A model with no fit yet, evaluated on `test`.
    pub fn new(cfg: VaeConfig, test: Split, seed: u64) -> Self {
        Self {
            cfg,
            test,
            seed,
            generation: 0,
            model: None,
            grids: vec![],
        }
    }
}

impl Generative for VaeGenerative {
    type Data = Split;
    type Error = NnError;
    fn fit(&mut self, data: &Split, rng: &mut Xoshiro256PlusPlus) -> Result<(), NnError> {
        let m = Vae::new(self.cfg, self.seed.wrapping_add(self.generation))?;
        self.generation += 1;
        m.train(data, rng)?;
        let mut grid_rng = Xoshiro256PlusPlus::seed_from_u64(777);
        self.grids.push(m.sample(GRID, &mut grid_rng)?.x);
        self.model = Some(m);
        Ok(())
    }
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Split, NnError> {
        self.model
            .as_ref()
            .ok_or_else(|| NnError::Invalid {
                what: "sample before fit".into(),
                fix: "fit first".into(),
            })?
            .sample(n, rng)
    }
    fn evaluate(&self) -> Result<Vec<(String, f64)>, NnError> {
        let m = self.model.as_ref().ok_or_else(|| NnError::Invalid {
            what: "evaluate before fit".into(),
            fix: "fit first".into(),
        })?;
        Ok(vec![("test_neg_elbo".into(), m.evaluate(&self.test)?)])
    }
    fn len(data: &Split) -> usize {
        data.len()
    }
    fn concat(parts: &[Split]) -> Split {
        let mut out = parts[0].clone();
        out.y.clear();
        out.x = parts.iter().flat_map(|p| p.x.iter().copied()).collect();
        out
    }
    fn select(data: &Split, idx: &[usize]) -> Split {
        let mut s = data.clone();
        s.y.clear();
        s.select(idx)
    }
    fn save_state(&self) -> Vec<u8> {
        use super::generations::bytes::*;
        let mut o = Vec::new();
        put_u64(&mut o, self.generation);
        put_u64(&mut o, self.grids.len() as u64);
        for g in &self.grids {
            put_f32s(&mut o, g);
        }
        o
    }
    /// One grid of [`GRID`] images per fit: the counter and the number of grids agree, and
    /// every grid holds 16 × 784 pixels.
    fn load_state(&mut self, b: &[u8]) -> Option<()> {
        use super::generations::bytes::*;
        let mut at = 0;
        let generation = get_u64(b, &mut at)?;
        let n = get_u64(b, &mut at)?;
        if n != generation {
            return None;
        }
        // Each grid is at least its 8-byte length: `n` is bounded by the bytes present.
        let grids: Vec<Vec<f32>> = (0..n)
            .map(|_| get_f32s(b, &mut at).filter(|g| g.len() == GRID * 784))
            .collect::<Option<_>>()?;
        (at == b.len()).then_some(())?;
        self.generation = generation;
        self.grids = grids;
        Some(())
    }
    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_neg_elbo"]
    }
    /// Finite 784-pixel images; labels (if any) one per image and below the class count.
    fn accepts(&self, data: &Split) -> bool {
        data.dim == self.test.dim
            && data.dim > 0
            && data.x.len().is_multiple_of(data.dim)
            && data.x.iter().all(|v| v.is_finite())
            && (data.y.is_empty()
                || (data.y.len() == data.len()
                    && data.y.iter().all(|&c| (c as usize) < data.classes)))
            && (data.targets.is_empty()
                || Some(data.targets.len()) == data.len().checked_mul(data.out))
    }
}

/// Images sampled per VAE generation for the grid figure.
const GRID: usize = 16;

/// The collapse-loop model: a fresh DDPM per generation; metrics on real held-out points.
pub struct DdpmGenerative {
    /// Model and training sizes.
    pub cfg: DdpmConfig,
    /// Real held-out points for the denoising loss and the Fréchet distance.
    pub test: Points,
    /// Base seed; generation g's model is initialised from seed + g.
    pub seed: u64,
    generation: u64,
    model: Option<Ddpm>,
}

impl DdpmGenerative {
    /// A model with no fit yet, evaluated on `test`.
    pub fn new(cfg: DdpmConfig, test: Points, seed: u64) -> Self {
        Self {
            cfg,
            test,
            seed,
            generation: 0,
            model: None,
        }
    }
}

impl Generative for DdpmGenerative {
    type Data = Points;
    type Error = NnError;
    fn fit(&mut self, data: &Points, rng: &mut Xoshiro256PlusPlus) -> Result<(), NnError> {
        let m = Ddpm::new(self.cfg, data.d, self.seed.wrapping_add(self.generation))?;
        self.generation += 1;
        m.train(data, rng)?;
        self.model = Some(m);
        Ok(())
    }
    fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Points, NnError> {
        self.model
            .as_ref()
            .ok_or_else(|| NnError::Invalid {
                what: "sample before fit".into(),
                fix: "fit first".into(),
            })?
            .sample(n, rng)
    }
    fn evaluate(&self) -> Result<Vec<(String, f64)>, NnError> {
        let m = self.model.as_ref().ok_or_else(|| NnError::Invalid {
            what: "evaluate before fit".into(),
            fix: "fit first".into(),
        })?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(99);
        let samples = m.sample(self.test.len(), &mut rng)?;
        Ok(vec![
            ("test_denoising_loss".into(), m.denoising_loss(&self.test)?),
            (
                "frechet_distance".into(),
                frechet_distance(&samples, &self.test)?,
            ),
        ])
    }
    fn len(data: &Points) -> usize {
        data.len()
    }
    fn concat(parts: &[Points]) -> Points {
        Points {
            x: parts.iter().flat_map(|p| p.x.iter().copied()).collect(),
            d: parts[0].d,
        }
    }
    fn select(data: &Points, idx: &[usize]) -> Points {
        Points {
            x: idx
                .iter()
                .flat_map(|&i| data.x[i * data.d..(i + 1) * data.d].iter().copied())
                .collect(),
            d: data.d,
        }
    }
    fn save_state(&self) -> Vec<u8> {
        self.generation.to_le_bytes().to_vec()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Option<()> {
        self.generation = super::generations::generation_counter(bytes)?;
        Some(())
    }
    fn metric_names(&self) -> Vec<&'static str> {
        vec!["test_denoising_loss", "frechet_distance"]
    }
    /// Finite points of the held-out points' dimension.
    fn accepts(&self, data: &Points) -> bool {
        data.d == self.test.d
            && data.x.len().is_multiple_of(data.d)
            && data.x.iter().all(|v| v.is_finite())
    }
}

impl Persist for Split {
    fn to_bytes(&self) -> Vec<u8> {
        use super::generations::bytes::*;
        let mut o = Vec::with_capacity(48 + 4 * (self.x.len() + self.y.len() + self.targets.len()));
        for v in [self.dim, self.classes, self.out] {
            put_u64(&mut o, v as u64);
        }
        put_f32s(&mut o, &self.x);
        put_u32s(&mut o, &self.y);
        put_f32s(&mut o, &self.targets);
        o
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        use super::generations::bytes::*;
        let mut at = 0;
        let dim = get_u64(b, &mut at)? as usize;
        let classes = get_u64(b, &mut at)? as usize;
        let out = get_u64(b, &mut at)? as usize;
        let x = get_f32s(b, &mut at)?;
        let y = get_u32s(b, &mut at)?;
        let targets = get_f32s(b, &mut at)?;
        (at == b.len()).then_some(Split {
            x,
            dim,
            y,
            classes,
            targets,
            out,
        })
    }
}

impl Persist for Points {
    fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(16 + 4 * self.x.len());
        super::generations::bytes::put_u64(&mut o, self.d as u64);
        super::generations::bytes::put_f32s(&mut o, &self.x);
        o
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        use super::generations::bytes::*;
        let mut at = 0;
        let d = get_u64(b, &mut at)? as usize;
        let x = get_f32s(b, &mut at)?;
        (at == b.len() && d > 0 && x.len() % d == 0).then_some(Points { x, d })
    }
}
