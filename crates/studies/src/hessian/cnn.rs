//! The convolutional network beside the MLP (Gur-Ari, Roberts, Dyer, arXiv 1812.04754, §2:
//! the top-subspace picture holds for their CNNs too). A LeNet-like CNN on full-resolution
//! 28 × 28 Fashion-MNIST ([`dlt_nn::cnn`], exact R-operator HVPs through convolution and
//! pooling) trained by SGD; at late checkpoints the top Hessian eigenvalues (Lanczos), the
//! outlier count (location of the largest eigengap) against the 10 classes, the outlier gap
//! against the bulk's and f_top(k) = |P_k g|²/|g|² for k = 1…top — the statistics of the
//! class-subset part ([`super::subsets`]), so the claims are the same
//! (docs/derivations/hessian.md#cnn).

use super::subsets::{gaps, knee, largest_gap, sd, subset_steps, SubsetRun};
use super::training::Batches;
use super::{median, Config};
use crate::study::StudyError;
use dlt_nn::cnn::Cnn;
use dlt_nn::mlp::Batch;
use dlt_nn::optim::{Optimizer, State as OptState};
use dlt_theory::spectral::{fraction_in_span, lanczos_top};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use std::time::Instant;

/// The CNN part's size.
#[derive(Debug, Clone, Serialize)]
pub struct CnnScale {
    /// SGD steps (0: skip the part).
    pub steps: usize,
    /// Channels of the two convolutions ((6, 16) is LeNet-5).
    pub channels: [usize; 2],
    /// Hidden dense widths ([120, 84] is LeNet-5).
    pub hidden: Vec<usize>,
    /// Training images (a seeded subset of the 60 000).
    pub train_examples: usize,
    /// Test images (the first ones of the test set).
    pub test_examples: usize,
    /// Training examples whose loss defines the Hessian.
    pub hessian_examples: usize,
    /// Lanczos iterations per checkpoint.
    pub lanczos_steps: usize,
    /// Checkpoints with spectra, evenly spaced over the second half of the run.
    pub checkpoints: usize,
    /// SGD learning rate (batch: the study's).
    pub lr: f64,
}

impl CnnScale {
    /// Quick: a narrow LeNet (4, 8 channels, one hidden layer of 32), 500 steps on 10 000
    /// images, spectra of a 200-example loss at 2 checkpoints; full: LeNet-5 (6, 16; 120, 84),
    /// 3000 steps on all 60 000, 1000 examples, 4 checkpoints.
    pub fn for_mode(quick: bool) -> Self {
        if quick {
            Self {
                steps: 500,
                channels: [4, 8],
                hidden: vec![32],
                train_examples: 10_000,
                test_examples: 2000,
                hessian_examples: 200,
                lanczos_steps: 40,
                checkpoints: 2,
                lr: 0.05,
            }
        } else {
            Self {
                steps: 3000,
                channels: [6, 16],
                hidden: vec![120, 84],
                train_examples: 60_000,
                test_examples: 10_000,
                hessian_examples: 1000,
                lanczos_steps: 60,
                checkpoints: 4,
                lr: 0.05,
            }
        }
    }
}

/// The CNN run: the subset statistics for C = 10 plus the network and its cost.
#[derive(Debug, Clone, Serialize)]
pub struct CnnRun {
    /// The network, e.g. `28x28x1 c5x5x6p2-pool c5x5x16-pool 120-84-10 relu`.
    pub model: String,
    /// Spectra and f_top(k) (classes = 10), as for a class subset.
    pub run: SubsetRun,
    /// Wall-clock seconds of training and spectra.
    pub seconds: f64,
}

/// Fashion-MNIST at 28 × 28, normalised by the training subset's global mean and standard
/// deviation: (train x, train y, test x, test y).
type Images = (Vec<f64>, Vec<u32>, Vec<f64>, Vec<u32>);

fn load(cfg: &Config) -> Result<Images, StudyError> {
    let sc = &cfg.cnn;
    let tt = dlt_nn::data::fashion_mnist(cfg.data.as_deref())?;
    let mut idx: Vec<usize> = (0..tt.train.y.len()).collect();
    idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0xc44));
    idx.truncate(sc.train_examples.min(idx.len()));
    let mut x = Vec::with_capacity(idx.len() * 784);
    for &i in &idx {
        x.extend(tt.train.x[i * 784..(i + 1) * 784].iter().map(|&v| v as f64));
    }
    let y: Vec<u32> = idx.iter().map(|&i| tt.train.y[i]).collect();
    let nt = sc.test_examples.min(tt.test.y.len());
    let mut xt: Vec<f64> = tt.test.x[..nt * 784].iter().map(|&v| v as f64).collect();
    let yt = tt.test.y[..nt].to_vec();
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let s = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    for v in x.iter_mut().chain(xt.iter_mut()) {
        *v = (*v - mean) / s;
    }
    Ok((x, y, xt, yt))
}

fn gather(x: &[f64], y: &[u32], idx: &[usize]) -> (Vec<f64>, Vec<u32>) {
    super::training::gather(x, y, 784, idx)
}

/// Train the CNN and take its spectra (None when `cnn.steps` is 0).
pub(super) fn cnn_run(cfg: &Config) -> Result<Option<CnnRun>, StudyError> {
    let sc = &cfg.cnn;
    if sc.steps == 0 {
        return Ok(None);
    }
    if sc.hessian_examples == 0 || sc.train_examples < cfg.batch || sc.checkpoints == 0 {
        return Err(StudyError::Nn(dlt_nn::NnError::Invalid {
            what: format!(
                "CNN part: {} training images, batch {}, {} Hessian examples, {} checkpoints",
                sc.train_examples, cfg.batch, sc.hessian_examples, sc.checkpoints
            ),
            fix: "give at least one batch of training images, a positive Hessian subset and \
                  at least one checkpoint"
                .into(),
        }));
    }
    let t0 = Instant::now();
    let c = 10;
    let model = Cnn::lenet(sc.channels, &sc.hidden, c, cfg.act)?;
    let p = model.num_params();
    let (x, y, xt, yt) = load(cfg)?;
    let seed = cfg.seed;
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x4e55));
    idx.truncate(sc.hessian_examples.min(y.len()));
    let (hx, hy) = gather(&x, &y, &idx);
    let sub = Batch::labels(&hx, &hy);
    let marks = subset_steps(sc.steps, sc.checkpoints);
    let top = cfg.top.min(p);
    let mut theta = model.init(seed);
    let mut st = OptState::default();
    let mut batches = Batches::new(y.len(), cfg.batch, seed ^ 0x5eed);
    let (mut lams, mut fts, mut gc, mut gb, mut kn, mut lg) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for t in 0..=sc.steps {
        if marks.contains(&t) {
            let pt = model.at(&theta, sub)?;
            let e = lanczos_top(p, sc.lanczos_steps.min(p), top, seed + t as u64, |v, o| {
                pt.hvp(v, o)
            })?;
            let f: Vec<f64> = (1..=e.vectors.len())
                .map(|k| fraction_in_span(&e.vectors[..k], pt.grad()))
                .collect();
            let (a, b) = gaps(&e.values, c);
            gc.push(a);
            gb.push(b);
            kn.push(knee(&f) as f64);
            lg.push(largest_gap(&e.values) as f64);
            lams.push(e.values);
            fts.push(f);
        }
        if t == sc.steps {
            break;
        }
        let (bx, by) = gather(&x, &y, &batches.next());
        let pt = model.at(&theta, Batch::labels(&bx, &by))?;
        if !pt.loss.is_finite() {
            return Err(StudyError::Nn(dlt_nn::NnError::Diverged {
                step: t,
                loss: pt.loss,
            }));
        }
        let g = pt.grad().to_vec();
        st.step(Optimizer::Sgd, &mut theta, &g, sc.lr);
    }
    let col = |rows: &[Vec<f64>], i: usize| {
        median(rows.iter().filter_map(|r| r.get(i).copied()).collect())
    };
    let n = lams.iter().map(|l| l.len()).min().unwrap_or(0);
    let run = SubsetRun {
        classes: c,
        seed,
        params: p,
        steps: marks,
        eigenvalues: (0..n).map(|i| col(&lams, i)).collect(),
        eigenvalues_se: (0..n)
            .map(|i| sd(lams.iter().map(|r| r[i])) / (lams.len() as f64).sqrt())
            .collect(),
        ftop: (0..n).map(|i| col(&fts, i)).collect(),
        ftop_se: (0..n)
            .map(|i| sd(fts.iter().map(|r| r[i])) / (fts.len() as f64).sqrt())
            .collect(),
        gap_at_c: median(gc),
        bulk_gap: median(gb),
        knee: median(kn),
        largest_gap_at: median(lg),
        test_accuracy: model.evaluate(&theta, Batch::labels(&xt, &yt))?.1,
    };
    Ok(Some(CnnRun {
        model: model.describe(),
        run,
        seconds: t0.elapsed().as_secs_f64(),
    }))
}
