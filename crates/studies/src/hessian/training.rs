//! The heavy part of `hessian`: data, mini-batches, training runs with Hessian spectra at the
//! checkpoints, and the ablation.

use super::{
    checkpoint_steps, median, Ablation, Checkpoint, Config, Overlap, RunOut, RunResult, RunSpec,
};
use crate::study::StudyError;
use dlt_nn::mlp::{Batch, Mlp};
use dlt_nn::optim::State as OptState;
use dlt_theory::spectral::{fraction_in_span, lanczos_top, subspace_overlap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

/// Fashion-MNIST pooled by `pool` and normalised by the training set's global mean and
/// standard deviation: (train x, train y, test x, test y), f64.
pub(super) type Data = (Vec<f64>, Vec<u32>, Vec<f64>, Vec<u32>, usize);

pub(super) fn load(cfg: &Config) -> Result<Data, StudyError> {
    let tt = dlt_nn::data::fashion_mnist(cfg.data.as_deref())?;
    let p = cfg.pool;
    if p == 0 || 28 % p != 0 {
        return Err(StudyError::Nn(dlt_nn::NnError::Invalid {
            what: format!("--pool {p}"),
            fix: "use a divisor of 28 (1, 2, 4, 7, 14)".into(),
        }));
    }
    let side = 28 / p;
    let pool = |x: &[f32]| -> Vec<f64> {
        let mut out = Vec::with_capacity(x.len() / (p * p));
        for img in x.chunks_exact(784) {
            for i in 0..side {
                for j in 0..side {
                    let mut s = 0.0;
                    for a in 0..p {
                        for b in 0..p {
                            s += img[(i * p + a) * 28 + j * p + b] as f64;
                        }
                    }
                    out.push(s / (p * p) as f64);
                }
            }
        }
        out
    };
    let (mut tr, mut te) = (pool(&tt.train.x), pool(&tt.test.x));
    let n = tr.len() as f64;
    let mean = tr.iter().sum::<f64>() / n;
    let sd = (tr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    for v in tr.iter_mut().chain(te.iter_mut()) {
        *v = (*v - mean) / sd;
    }
    Ok((tr, tt.train.y, te, tt.test.y, side * side))
}

/// Epoch-reshuffled mini-batches of `batch` indices into `n` examples.
pub(super) struct Batches {
    order: Vec<usize>,
    at: usize,
    batch: usize,
    rng: Xoshiro256PlusPlus,
}

impl Batches {
    pub(super) fn new(n: usize, batch: usize, seed: u64) -> Self {
        Self {
            order: (0..n).collect(),
            at: n,
            batch,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }
    pub(super) fn next(&mut self) -> Vec<usize> {
        if self.at + self.batch > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.at = 0;
        }
        self.at += self.batch;
        self.order[self.at - self.batch..self.at].to_vec()
    }
}

pub(super) fn gather(x: &[f64], y: &[u32], d: usize, idx: &[usize]) -> (Vec<f64>, Vec<u32>) {
    let mut bx = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        bx.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    (bx, idx.iter().map(|&i| y[i]).collect())
}

/// Top eigenpairs of the Hessian of the loss on `sub` at θ, with the gradient there.
struct Spectrum {
    values: Vec<f64>,
    vectors: Vec<Vec<f64>>,
    residuals: Vec<f64>,
    grad: Vec<f64>,
    loss: f64,
    accuracy: f64,
}

fn spectrum(
    model: &Mlp,
    theta: &[f64],
    sub: Batch<f64>,
    cfg: &Config,
    seed: u64,
) -> Result<Spectrum, StudyError> {
    let pt = model.at(theta, sub)?;
    let top = lanczos_top(pt.dim(), cfg.lanczos_steps, cfg.top, seed, |v, o| {
        pt.hvp(v, o)
    })?;
    Ok(Spectrum {
        values: top.values,
        vectors: top.vectors,
        residuals: top.residuals,
        grad: pt.grad().to_vec(),
        loss: pt.loss,
        accuracy: pt.accuracy,
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn train_run(
    spec: &RunSpec,
    model: &Mlp,
    data: &Data,
    sub: Batch<f64>,
    cfg: &Config,
    bar: &indicatif::ProgressBar,
) -> Result<RunOut, StudyError> {
    let (x, y, xt, yt, d) = data;
    let d = *d;
    let steps = cfg.scale.steps;
    let marks = checkpoint_steps(steps);
    let mut theta = model.init(spec.seed);
    let mut st = OptState::default();
    let mut batches = Batches::new(y.len(), cfg.batch, spec.seed ^ 0x5eed);
    let mut probe = Batches::new(y.len(), cfg.batch, spec.seed ^ 0x9e37);
    let mut cps = vec![];
    let mut subspaces = vec![];
    let mut theta_400 = None;
    let mut next_mark = 0;
    for t in 0..=steps {
        if next_mark < marks.len() && marks[next_mark] == t {
            next_mark += 1;
            let s = spectrum(model, &theta, sub, cfg, spec.seed.wrapping_add(t as u64))?;
            let k = |k: usize| &s.vectors[..k.min(s.vectors.len())];
            let (bx, by) = gather(x, y, d, &probe.next());
            let g_mb = model.at(&theta, Batch::labels(&bx, &by))?.grad().to_vec();
            let l1 = s.values[0].abs().max(1e-300);
            cps.push(Checkpoint {
                step: t,
                loss: s.loss,
                accuracy: s.accuracy,
                ftop5: fraction_in_span(k(5), &s.grad),
                ftop10: fraction_in_span(k(10), &s.grad),
                ftop20: fraction_in_span(k(20), &s.grad),
                ftop10_minibatch: fraction_in_span(k(10), &g_mb),
                eigenvalues: s.values.iter().take(12).copied().collect(),
                max_residual: s.residuals.iter().take(10).fold(0.0f64, |m, r| m.max(*r)) / l1,
            });
            subspaces.push((t, k(10).to_vec()));
            if t == 400 {
                theta_400 = Some(theta.clone());
            }
        }
        if t == steps {
            break;
        }
        let (bx, by) = gather(x, y, d, &batches.next());
        let pt = model.at(&theta, Batch::labels(&bx, &by))?;
        if !pt.loss.is_finite() {
            return Err(StudyError::Nn(dlt_nn::NnError::Diverged {
                step: t,
                loss: pt.loss,
            }));
        }
        let g = pt.grad().to_vec();
        st.step(spec.optimizer, &mut theta, &g, spec.lr);
        bar.inc(1);
    }
    let late = |f: fn(&Checkpoint) -> f64| -> Vec<f64> {
        cps.iter().filter(|c| c.step >= 200).map(f).collect()
    };
    let find = |t: usize| subspaces.iter().find(|s| s.0 == t).map(|s| &s.1);
    let last = *marks.last().unwrap_or(&0);
    let overlaps = [(200, 400), (200, 1000), (200, last), (1000, last)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .filter_map(|(a, b)| {
            Some(Overlap {
                from: a,
                to: b,
                overlap: subspace_overlap(find(a)?, find(b)?),
            })
        })
        .collect();
    let f10 = late(|c| c.ftop10);
    let test_accuracy = model.evaluate(&theta, Batch::labels(xt, yt))?.1;
    Ok(RunOut {
        result: RunResult {
            name: spec.name.clone(),
            optimizer: spec.optimizer,
            lr: spec.lr,
            seed: spec.seed,
            median_ftop5: median(late(|c| c.ftop5)),
            median_ftop10: median(f10.clone()),
            median_ftop20: median(late(|c| c.ftop20)),
            mean_ftop10: f10.iter().sum::<f64>() / f10.len().max(1) as f64,
            median_ftop10_minibatch: median(late(|c| c.ftop10_minibatch)),
            overlaps,
            checkpoints: cps,
            test_accuracy,
        },
        subspaces,
        theta_400,
    })
}

/// Dom-SGD / Bulk-SGD / SGD from a common θ (Song, Ahn, Yun): the update uses P_top g, (I −
/// P_top) g or g, with the top-10 subspace recomputed every `refresh` steps.
pub(super) fn ablation(
    model: &Mlp,
    theta0: &[f64],
    data: &Data,
    sub: Batch<f64>,
    cfg: &Config,
    lr: f64,
    seed: u64,
) -> Result<Ablation, StudyError> {
    let (x, y, _, _, d) = data;
    let steps = cfg.scale.ablation_steps;
    let every = (steps / 20).max(1);
    let arms: Vec<Vec<(usize, f64)>> = (0..3usize)
        .into_par_iter()
        .map(|arm| -> Result<Vec<(usize, f64)>, StudyError> {
            let mut theta = theta0.to_vec();
            let mut batches = Batches::new(y.len(), cfg.batch, seed ^ 0xab1a);
            let mut basis: Vec<Vec<f64>> = vec![];
            let mut out = vec![];
            for t in 0..=steps {
                if t % every == 0 {
                    out.push((t, model.evaluate(&theta, sub)?.0));
                }
                if t == steps {
                    break;
                }
                if arm > 0 && t % cfg.scale.ablation_refresh.max(1) == 0 {
                    let pt = model.at(&theta, sub)?;
                    basis =
                        lanczos_top(pt.dim(), cfg.lanczos_steps, 10, seed + t as u64, |v, o| {
                            pt.hvp(v, o)
                        })?
                        .vectors;
                }
                let (bx, by) = gather(x, y, *d, &batches.next());
                let mut g = model.at(&theta, Batch::labels(&bx, &by))?.grad().to_vec();
                if arm > 0 {
                    let mut pg = vec![0.0; g.len()];
                    for v in &basis {
                        let c: f64 = v.iter().zip(&g).map(|(a, b)| a * b).sum();
                        pg.iter_mut().zip(v).for_each(|(p, v)| *p += c * v);
                    }
                    if arm == 1 {
                        g = pg;
                    } else {
                        g.iter_mut().zip(&pg).for_each(|(g, p)| *g -= p);
                    }
                }
                theta.iter_mut().zip(&g).for_each(|(t, g)| *t -= lr * g);
            }
            Ok(out)
        })
        .collect::<Result<_, _>>()?;
    let rows: Vec<(usize, f64, f64, f64)> = (0..arms[0].len())
        .map(|i| (arms[0][i].0, arms[0][i].1, arms[1][i].1, arms[2][i].1))
        .collect();
    // Drop = start loss − mean loss over the last quarter of the records (mini-batch noise
    // makes any single record jumpy).
    let drop = |a: usize| {
        let r = &arms[a];
        let tail = &r[r.len() - r.len().div_ceil(4)..];
        r[0].1 - tail.iter().map(|x| x.1).sum::<f64>() / tail.len() as f64
    };
    Ok(Ablation {
        start_step: 400,
        sgd_drop: drop(0),
        dom_drop: drop(1),
        bulk_drop: drop(2),
        rows,
    })
}
