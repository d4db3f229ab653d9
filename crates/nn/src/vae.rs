//! A small variational autoencoder (Kingma & Welling 2014) on 784-pixel images for the
//! model-collapse study: MLP encoder 784 → h → (μ, log σ²) ∈ R^z, MLP decoder z → h → 784
//! Bernoulli logits; loss = −ELBO = BCE(x, decoder(z)) + KL(q(z|x) ‖ N(0, I)), reparameterised.
//! Samples are decoder means (grey levels in [0, 1]) at z ~ N(0, I).

use crate::data::Split;
use crate::NnError;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// Hyperparameters of a [`Vae`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Width h of the encoder's and decoder's hidden layer.
    pub hidden: usize,
    /// Latent dimension z.
    pub latent: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Passes over the training images.
    pub epochs: usize,
}

/// A VAE on 784-pixel images (architecture in the module docs).
pub struct Vae {
    /// Its hyperparameters.
    pub cfg: VaeConfig,
    varmap: VarMap,
    enc: Linear,
    mu: Linear,
    logvar: Linear,
    dec1: Linear,
    dec2: Linear,
    dev: Device,
}

impl Vae {
    /// Fresh parameters, seeded (re-drawn from our own stream: candle's CPU RNG has no seed).
    pub fn new(cfg: VaeConfig, seed: u64) -> Result<Self, NnError> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let (h, z) = (cfg.hidden, cfg.latent);
        let enc = linear(784, h, vb.pp("enc"))?;
        let mu = linear(h, z, vb.pp("mu"))?;
        let logvar = linear(h, z, vb.pp("logvar"))?;
        let dec1 = linear(z, h, vb.pp("dec1"))?;
        let dec2 = linear(h, 784, vb.pp("dec2"))?;
        // PyTorch's default Linear init scale, U(−1/√fan_in, 1/√fan_in); biases zero.
        crate::reinit_seeded(&varmap, seed, |name, dims, rng| {
            let n: usize = dims.iter().product();
            if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                let bound = 1.0 / (dims[1] as f32).sqrt();
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            }
        })?;
        Ok(Self {
            cfg,
            varmap,
            enc,
            mu,
            logvar,
            dec1,
            dec2,
            dev,
        })
    }

    fn decode_logits(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        self.dec2.forward(&self.dec1.forward(z)?.relu()?)
    }

    /// Mean −ELBO per image (nats) of a batch x (B × 784) with reparameterisation noise eps (B × z).
    fn neg_elbo(&self, x: &Tensor, eps: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.enc.forward(x)?.relu()?;
        let (mu, logvar) = (self.mu.forward(&h)?, self.logvar.forward(&h)?);
        let z = (&mu + (logvar.clone() * 0.5)?.exp()?.mul(eps)?)?;
        let logits = self.decode_logits(&z)?;
        // BCE with logits: softplus(l) − x·l, summed over pixels.
        let softplus = (logits.exp()? + 1.0)?.log()?;
        let bce = (softplus - x.mul(&logits)?)?.sum(D::Minus1)?;
        let kl = ((((mu.sqr()? + logvar.exp()?)? - 1.0)? - &logvar)?.sum(D::Minus1)? * 0.5)?;
        (bce + kl)?.mean_all()
    }

    fn batch(&self, s: &Split, idx: &[usize]) -> candle_core::Result<Tensor> {
        let mut v = Vec::with_capacity(idx.len() * 784);
        for &i in idx {
            v.extend_from_slice(&s.x[i * 784..(i + 1) * 784]);
        }
        Tensor::from_vec(v, (idx.len(), 784), &self.dev)
    }

    fn eps(&self, b: usize, rng: &mut Xoshiro256PlusPlus) -> candle_core::Result<Tensor> {
        Tensor::from_vec(
            (0..b * self.cfg.latent)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect::<Vec<f32>>(),
            (b, self.cfg.latent),
            &self.dev,
        )
    }

    /// Train with AdamW for `epochs` over `data`; returns the steps taken.
    pub fn train(&self, data: &Split, rng: &mut Xoshiro256PlusPlus) -> Result<usize, NnError> {
        if data.dim != 784 || data.is_empty() {
            return Err(NnError::Invalid {
                what: format!(
                    "VAE data of dimension {} and {} examples",
                    data.dim,
                    data.len()
                ),
                fix: "give 28×28 images".into(),
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
                let x = self.batch(data, chunk)?;
                self.neg_elbo(&x, &self.eps(chunk.len(), rng)?)
            },
        )
    }

    /// Mean −ELBO (nats per image) on `data`, with a fixed noise stream.
    pub fn evaluate(&self, data: &Split) -> Result<f64, NnError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(12345);
        let mut total = 0.0;
        let idx: Vec<usize> = (0..data.len()).collect();
        for chunk in idx.chunks(1000) {
            let x = self.batch(data, chunk)?;
            total += self
                .neg_elbo(&x, &self.eps(chunk.len(), &mut rng)?)?
                .to_scalar::<f32>()? as f64
                * chunk.len() as f64;
        }
        Ok(total / data.len() as f64)
    }

    /// `n` images: decoder means at z ~ N(0, I).
    pub fn sample(&self, n: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Split, NnError> {
        let z = self.eps(n, rng)?;
        let x = candle_nn::ops::sigmoid(&self.decode_logits(&z)?)?;
        Ok(Split {
            x: x.flatten_all()?.to_vec1::<f32>()?,
            dim: 784,
            y: vec![],
            classes: 0,
            targets: vec![],
            out: 0,
        })
    }
}

/// Images (rows of 784 grey levels in [0, 1], dark on light) as a PNG grid, `cols` per row.
pub fn png_grid(rows: &[Vec<f32>], cols: usize) -> Result<Vec<u8>, NnError> {
    let (w, h, img) = grid_pixels(rows, cols);
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| NnError::Invalid {
            what: "PNG header".into(),
            fix: e.to_string(),
        })?;
        wr.write_image_data(&img).map_err(|e| NnError::Invalid {
            what: "PNG data".into(),
            fix: e.to_string(),
        })?;
    }
    Ok(out)
}

fn grid_pixels(rows: &[Vec<f32>], cols: usize) -> (usize, usize, Vec<u8>) {
    let per = rows.first().map_or(0, |r| r.len() / 784);
    let (tiles_w, tiles_h) = (cols.max(1), (rows.len() * per).div_ceil(cols.max(1)));
    let (w, h) = (tiles_w * 29 + 1, tiles_h * 29 + 1);
    let mut img = vec![255u8; w * h];
    let mut t = 0;
    for r in rows {
        for k in 0..per {
            let (ty, tx) = (t / tiles_w, t % tiles_w);
            for py in 0..28 {
                for px in 0..28 {
                    let v = r[k * 784 + py * 28 + px].clamp(0.0, 1.0);
                    img[(ty * 29 + 1 + py) * w + tx * 29 + 1 + px] = (255.0 * (1.0 - v)) as u8;
                }
            }
            t += 1;
        }
    }
    (w, h, img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vae_learns_and_samples() {
        // Two blob "images" (left half / right half on): the −ELBO must fall well below its start.
        let mut x = vec![];
        for i in 0..400 {
            for p in 0..784 {
                x.push(if (p % 28 < 14) == (i % 2 == 0) {
                    0.9
                } else {
                    0.05
                });
            }
        }
        let s = Split {
            x,
            dim: 784,
            y: vec![],
            classes: 0,
            targets: vec![],
            out: 0,
        };
        let v = Vae::new(
            VaeConfig {
                hidden: 64,
                latent: 4,
                batch: 50,
                lr: 3e-3,
                epochs: 10,
            },
            0,
        )
        .unwrap();
        let before = v.evaluate(&s).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        v.train(&s, &mut rng).unwrap();
        let after = v.evaluate(&s).unwrap();
        assert!(after < 0.7 * before, "{before} → {after}");
        let smp = v.sample(3, &mut rng).unwrap();
        assert_eq!(smp.len(), 3);
        assert!(smp.x.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!(png_grid(&[smp.x], 3).unwrap().starts_with(b"\x89PNG"));
    }
}
