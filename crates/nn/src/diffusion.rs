//! A small denoising diffusion model (DDPM, Ho et al. 2020) with an MLP denoiser, on
//! low-dimensional real data (Fashion-MNIST projected by PCA), for the model-collapse study.
//!
//! Forward process x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε with a linear β schedule; the denoiser ε_θ(x_t, t)
//! takes x_t and a sinusoidal embedding of t; training minimises ‖ε − ε_θ‖²; sampling is
//! ancestral with σ_t² = β_t. Metrics: held-out denoising loss on real test points (fixed
//! noise) and the Fréchet distance between samples and real test points.

use crate::NnError;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// Points in R^d, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    /// Coordinates, point i at x[i·d..(i+1)·d].
    pub x: Vec<f32>,
    /// Dimension d.
    pub d: usize,
}

impl Points {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.x.len() / self.d.max(1)
    }
    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
    fn mat(&self) -> Mat<f64> {
        Mat::from_fn(self.len(), self.d, |i, j| self.x[i * self.d + j] as f64)
    }
}

/// Project images (n × 784) onto the top `k` principal components of `fit`, each component
/// scaled to unit variance on `fit`. Returns the projection of every set in `sets`.
pub fn pca_project(
    fit: &crate::data::Split,
    k: usize,
    sets: &[&crate::data::Split],
) -> Result<Vec<Points>, NnError> {
    let (n, d) = (fit.len(), fit.dim);
    if k == 0 || k > d || n < 2 {
        return Err(NnError::Invalid {
            what: format!("PCA to {k} of {d} dimensions from {n} points"),
            fix: "choose 1 ≤ k ≤ dim and at least 2 points".into(),
        });
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| fit.x[i * d + j] as f64).sum::<f64>() / n as f64)
        .collect();
    let xc = Mat::<f64>::from_fn(n, d, |i, j| fit.x[i * d + j] as f64 - mean[j]);
    let cov = xc.transpose() * &xc * (1.0 / (n as f64 - 1.0));
    let evd = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| NnError::Invalid {
            what: "PCA".into(),
            fix: "eigendecomposition failed".into(),
        })?;
    // Eigenvalues ascending: the top k are the last k columns.
    let comps: Vec<(usize, f64)> = (0..k)
        .map(|c| (d - 1 - c, evd.S()[d - 1 - c].max(1e-12).sqrt()))
        .collect();
    let u = evd.U();
    Ok(sets
        .iter()
        .map(|s| {
            let m = s.len();
            let mut x = Vec::with_capacity(m * k);
            for i in 0..m {
                for &(c, sd) in &comps {
                    let v: f64 = (0..d)
                        .map(|j| (s.x[i * d + j] as f64 - mean[j]) * u[(j, c)])
                        .sum();
                    x.push((v / sd) as f32);
                }
            }
            Points { x, d: k }
        })
        .collect())
}

/// Fréchet distance between Gaussians fitted to two point sets:
/// ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}).
pub fn frechet_distance(a: &Points, b: &Points) -> Result<f64, NnError> {
    let stats = |p: &Points| {
        let m = p.mat();
        let n = m.nrows() as f64;
        let mu: Vec<f64> = (0..p.d)
            .map(|j| (0..m.nrows()).map(|i| m[(i, j)]).sum::<f64>() / n)
            .collect();
        let c = Mat::<f64>::from_fn(m.nrows(), p.d, |i, j| m[(i, j)] - mu[j]);
        (mu, c.transpose() * &c * (1.0 / (n - 1.0)))
    };
    let ((m1, s1), (m2, s2)) = (stats(a), stats(b));
    let psd_sqrt = |s: &Mat<f64>| -> Result<Mat<f64>, NnError> {
        let e = s
            .self_adjoint_eigen(Side::Lower)
            .map_err(|_| NnError::Invalid {
                what: "Fréchet distance".into(),
                fix: "eigendecomposition failed".into(),
            })?;
        let (u, w) = (e.U(), e.S());
        let d = Mat::<f64>::from_fn(s.nrows(), s.nrows(), |i, j| {
            u[(i, j)] * w[j].max(0.0).sqrt()
        });
        Ok(&d * u.transpose())
    };
    let r1 = psd_sqrt(&s1)?;
    let mid = &r1 * &s2 * &r1;
    let tr_sqrt: f64 = mid
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|_| NnError::Invalid {
            what: "Fréchet distance".into(),
            fix: "eigendecomposition failed".into(),
        })?
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum();
    let d2: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y).powi(2)).sum();
    let tr = |s: &Mat<f64>| (0..s.nrows()).map(|i| s[(i, i)]).sum::<f64>();
    Ok(d2 + tr(&s1) + tr(&s2) - 2.0 * tr_sqrt)
}

/// Hyperparameters of a [`Ddpm`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DdpmConfig {
    /// Diffusion steps T.
    pub steps: usize,
    /// Width of the two hidden layers of the denoiser MLP.
    pub hidden: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Passes over the training points.
    pub epochs: usize,
}

/// A DDPM on points in ℝ^d with a three-layer SiLU MLP denoiser ε_θ(x_t, t).
pub struct Ddpm {
    /// Its hyperparameters.
    pub cfg: DdpmConfig,
    d: usize,
    varmap: VarMap,
    l1: Linear,
    l2: Linear,
    l3: Linear,
    betas: Vec<f64>,
    alpha_bar: Vec<f64>,
    dev: Device,
}

const TEMB: usize = 32;

impl Ddpm {
    /// A model for dimension `d`, weights drawn from `seed`, linear β schedule over `cfg.steps`.
    pub fn new(cfg: DdpmConfig, d: usize, seed: u64) -> Result<Self, NnError> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let l1 = linear(d + TEMB, cfg.hidden, vb.pp("l1"))?;
        let l2 = linear(cfg.hidden, cfg.hidden, vb.pp("l2"))?;
        let l3 = linear(cfg.hidden, d, vb.pp("l3"))?;
        crate::reinit_seeded(&varmap, seed, |name, dims, rng| {
            let n: usize = dims.iter().product();
            if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                let bound = 1.0 / (dims[1] as f32).sqrt();
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            }
        })?;
        // Linear β schedule from 1e-4 to 0.02, rescaled to T steps (Ho et al.).
        let t = cfg.steps.max(2);
        let betas: Vec<f64> = (0..t)
            .map(|i| (1e-4 + (0.02 - 1e-4) * i as f64 / (t - 1) as f64) * 1000.0 / t as f64)
            .map(|b| b.min(0.5))
            .collect();
        let mut alpha_bar = Vec::with_capacity(t);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alpha_bar.push(acc);
        }
        Ok(Self {
            cfg,
            d,
            varmap,
            l1,
            l2,
            l3,
            betas,
            alpha_bar,
            dev,
        })
    }

    /// ε_θ(x_t, t) for a batch (x: B × d, ts: the B time indices).
    fn eps(&self, x: &Tensor, ts: &[usize]) -> candle_core::Result<Tensor> {
        let t_max = self.betas.len() as f64;
        let emb: Vec<f32> = ts
            .iter()
            .flat_map(|&t| {
                (0..TEMB / 2).flat_map(move |k| {
                    let f =
                        (t as f64 / t_max) * 1000.0 / 10000f64.powf(k as f64 / (TEMB / 2) as f64);
                    [f.sin() as f32, f.cos() as f32]
                })
            })
            .collect();
        let emb = Tensor::from_vec(emb, (ts.len(), TEMB), &self.dev)?;
        let h = Tensor::cat(&[x, &emb], 1)?;
        self.l3
            .forward(&self.l2.forward(&self.l1.forward(&h)?.silu()?)?.silu()?)
    }

    /// Noise batch rows of `p` at random (or given) steps; returns (x_t, ε, t).
    fn noised(
        &self,
        p: &Points,
        idx: &[usize],
        rng: &mut Xoshiro256PlusPlus,
    ) -> candle_core::Result<(Tensor, Tensor, Vec<usize>)> {
        let d = self.d;
        let ts: Vec<usize> = idx
            .iter()
            .map(|_| rng.random_range(0..self.betas.len()))
            .collect();
        let mut xt = Vec::with_capacity(idx.len() * d);
        let mut ep = Vec::with_capacity(idx.len() * d);
        for (&i, &t) in idx.iter().zip(&ts) {
            let (a, s) = (self.alpha_bar[t].sqrt(), (1.0 - self.alpha_bar[t]).sqrt());
            for j in 0..d {
                let e: f64 = rng.sample(StandardNormal);
                xt.push((a * p.x[i * d + j] as f64 + s * e) as f32);
                ep.push(e as f32);
            }
        }
        Ok((
            Tensor::from_vec(xt, (idx.len(), d), &self.dev)?,
            Tensor::from_vec(ep, (idx.len(), d), &self.dev)?,
            ts,
        ))
    }

    /// Train on `data` (dimension d) with AdamW for `cfg.epochs` epochs; returns the steps taken.
    pub fn train(&self, data: &Points, rng: &mut Xoshiro256PlusPlus) -> Result<usize, NnError> {
        if data.d != self.d || data.is_empty() {
            return Err(NnError::Invalid {
                what: format!("diffusion data of dimension {}", data.d),
                fix: format!("expected {} dimensions", self.d),
            });
        }
        crate::train_epochs(
            &self.varmap,
            self.cfg.lr,
            self.cfg.epochs,
            self.cfg.batch,
            data.len(),
            rng,
            |chunk, rng| {
                let (xt, ep, ts) = self.noised(data, chunk, rng)?;
                (self.eps(&xt, &ts)? - ep)?.sqr()?.mean_all()
            },
        )
    }

    /// Mean denoising loss ‖ε − ε_θ‖²/d on `data` with a fixed noise stream.
    pub fn denoising_loss(&self, data: &Points) -> Result<f64, NnError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4242);
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut total = 0.0;
        for chunk in idx.chunks(1000) {
            let (xt, ep, ts) = self.noised(data, chunk, &mut rng)?;
            total += (self.eps(&xt, &ts)? - ep)?
                .sqr()?
                .mean_all()?
                .to_scalar::<f32>()? as f64
                * chunk.len() as f64;
        }
        Ok(total / data.len() as f64)
    }

    /// `n` samples by ancestral sampling from x_T ~ N(0, I).
    pub fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Points, NnError> {
        let d = self.d;
        let mut x: Vec<f32> = (0..n * d)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        for t in (0..self.betas.len()).rev() {
            let xt = Tensor::from_vec(x.clone(), (n, d), &self.dev)?;
            let e = self
                .eps(&xt, &vec![t; n])?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let (b, ab) = (self.betas[t], self.alpha_bar[t]);
            let c = b / (1.0 - ab).sqrt();
            for k in 0..n * d {
                let mu = (x[k] as f64 - c * e[k] as f64) / (1.0 - b).sqrt();
                let z: f64 = if t > 0 {
                    rng.sample(StandardNormal)
                } else {
                    0.0
                };
                x[k] = (mu + b.sqrt() * z) as f32;
            }
        }
        Ok(Points { x, d })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_distance_of_gaussians() {
        // Two 2-D Gaussians N(0, I) and N((3, 0), 4I): FD = 9 + 2 + 8 − 2·(2 + 2) = 11.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let n = 20_000;
        let a = Points {
            x: (0..2 * n)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect(),
            d: 2,
        };
        let b = Points { x: (0..2 * n).map(|k| if k % 2 == 0 { 3.0 } else { 0.0 } + 2.0 * rng.sample::<f32, _>(StandardNormal)).collect(), d: 2 };
        let fd = frechet_distance(&a, &b).unwrap();
        // Sampling error of the moments at n = 20 000: a few × 1e-2.
        assert!((fd - 11.0).abs() < 0.15, "{fd}");
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-6);
    }

    #[test]
    fn ddpm_learns_a_gaussian() {
        // Data N((2, −1), diag(0.25, 1)): after training, samples have FD < 0.3 to the data
        // (an untrained model's samples are far off).
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let n = 4000;
        let data = Points {
            x: (0..n)
                .flat_map(|_| {
                    [
                        2.0 + 0.5 * rng.sample::<f32, _>(StandardNormal),
                        -1.0 + rng.sample::<f32, _>(StandardNormal),
                    ]
                })
                .collect(),
            d: 2,
        };
        let m = Ddpm::new(
            DdpmConfig {
                steps: 50,
                hidden: 64,
                batch: 128,
                lr: 3e-3,
                epochs: 15,
            },
            2,
            0,
        )
        .unwrap();
        let before = frechet_distance(&m.sample(2000, &mut rng).unwrap(), &data).unwrap();
        m.train(&data, &mut rng).unwrap();
        let after = frechet_distance(&m.sample(2000, &mut rng).unwrap(), &data).unwrap();
        assert!(after < 0.3 && after < 0.2 * before, "{before} → {after}");
    }
}
