//! Class subsets: "the number of top eigenvalues equals the number of classes" (Gur-Ari,
//! Roberts, Dyer, arXiv 1812.04754, abstract and §2). The same network and protocol trained on
//! Fashion-MNIST restricted to its first C classes (C output units), for each C in the class
//! set: the top of the Hessian spectrum and f_top(k) for k = 1…20 at late checkpoints, with the
//! eigengap at C and the knee of f_top at k = C (docs/derivations/hessian.md#class-subsets).

use super::training::{gather, Batches, Data};
use super::{median, Config};
use crate::study::StudyError;
use dlt_nn::mlp::{Batch, Mlp};
use dlt_nn::optim::{Optimizer, State as OptState};
use dlt_theory::spectral::{fraction_in_span, lanczos_top};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

/// The class-subset runs: which class counts, how long, how many seeds.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetScale {
    /// Class counts C: each run keeps the labels 0…C−1 (empty: skip the part).
    pub class_counts: Vec<usize>,
    /// SGD steps per run (learning rate and batch of the first run of the main part).
    pub steps: usize,
    /// Checkpoints with spectra, evenly spaced over the second half of the run.
    pub checkpoints: usize,
    /// Seeds per class count (seed, seed + 1, …).
    pub seeds: usize,
}

impl SubsetScale {
    /// Quick: C ∈ {2, 5, 10}, one seed, 1500 steps; full: three seeds, 3000 steps.
    pub fn for_mode(quick: bool) -> Self {
        Self {
            class_counts: vec![2, 5, 10],
            steps: if quick { 1500 } else { 3000 },
            checkpoints: 4,
            seeds: if quick { 1 } else { 3 },
        }
    }
}

/// One class-subset run.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetRun {
    /// Number of classes C (= output units).
    pub classes: usize,
    /// Seed of initialisation and batch order.
    pub seed: u64,
    /// Parameters P of the C-output network.
    pub params: usize,
    /// Steps at which spectra were taken.
    pub steps: Vec<usize>,
    /// Standard error of the mean of f_top(k) over the checkpoints, k = 1, 2, … (the
    /// checkpoint-to-checkpoint scatter over √checkpoints; the figure's error bars).
    pub ftop_se: Vec<f64>,
    /// Median over the checkpoints of each of the top Ritz values λ₁ ≥ λ₂ ≥ ….
    pub eigenvalues: Vec<f64>,
    /// Standard error of the mean of λ_k over the checkpoints (the figure's error bars).
    pub eigenvalues_se: Vec<f64>,
    /// Median over the checkpoints of f_top(k), k = 1, 2, … (index k − 1).
    pub ftop: Vec<f64>,
    /// Median over the checkpoints of the outlier gap: the largest λ_k/λ_{k+1} with k ≤ C.
    pub gap_at_c: f64,
    /// Median over the checkpoints of the largest gap λ_k/λ_{k+1} inside the bulk, C < k < top.
    pub bulk_gap: f64,
    /// Median over the checkpoints of the knee of f_top: the smallest k with
    /// f_top(k) ≥ 0.9·f_top(top) ([`knee`]).
    pub knee: f64,
    /// Median over the checkpoints of the location of the largest eigengap: the k < top
    /// maximising λ_k/λ_{k+1} over positive Ritz values (the outlier count it implies).
    pub largest_gap_at: f64,
    /// Accuracy on the test images of these classes after the last step, in [0, 1].
    pub test_accuracy: f64,
}

/// The top Ritz values' gaps λ_k/λ_{k+1}: (the largest for k ≤ C, the largest for
/// C < k < top); NaN where a needed eigenvalue is not positive.
pub fn gaps(values: &[f64], c: usize) -> (f64, f64) {
    let ratio = |k: usize| -> f64 {
        // λ_k / λ_{k+1}, k 1-based.
        match (values.get(k - 1), values.get(k)) {
            (Some(&a), Some(&b)) if a > 0.0 && b > 0.0 => a / b,
            _ => f64::NAN,
        }
    };
    let max = |it: &mut dyn Iterator<Item = f64>| {
        it.fold(f64::NAN, |m, r| if m.is_nan() || r > m { r } else { m })
    };
    let at_c = max(&mut (1..=c).map(ratio));
    let bulk = max(&mut (c + 1..values.len()).map(ratio));
    (at_c, bulk)
}

/// The k (1-based, k < len) maximising λ_k/λ_{k+1} over positive values; 0 if none.
pub fn largest_gap(values: &[f64]) -> usize {
    (1..values.len())
        .filter(|&k| values[k - 1] > 0.0 && values[k] > 0.0)
        .max_by(|&a, &b| (values[a - 1] / values[a]).total_cmp(&(values[b - 1] / values[b])))
        .unwrap_or(0)
}

/// Knee of an increasing curve f(1), f(2), …, f(K): the smallest k with f(k) ≥ 0.9·f(K), the
/// number of directions that hold nine tenths of what the top K hold; 0 for an empty curve.
pub fn knee(f: &[f64]) -> usize {
    let Some(&last) = f.last() else { return 0 };
    f.iter().position(|&v| v >= 0.9 * last).map_or(0, |i| i + 1)
}

/// The first-C-classes part of `data`: relabelled 0…C−1 (already), kept rows only.
fn restrict(x: &[f64], y: &[u32], d: usize, c: usize) -> (Vec<f64>, Vec<u32>) {
    let idx: Vec<usize> = (0..y.len()).filter(|&i| (y[i] as usize) < c).collect();
    gather(x, y, d, &idx)
}

/// Checkpoint steps of a subset run: `n` evenly spaced over (steps/2, steps].
pub fn subset_steps(steps: usize, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=n)
        .map(|i| steps / 2 + (steps - steps / 2) * i / n.max(1))
        .collect();
    v.dedup();
    v
}

fn one_run(
    cfg: &Config,
    data: &Data,
    c: usize,
    seed: u64,
    lr: f64,
) -> Result<SubsetRun, StudyError> {
    let (x, y, xt, yt, d) = data;
    let d = *d;
    let (xs, ys) = restrict(x, y, d, c);
    let (xts, yts) = restrict(xt, yt, d, c);
    let mut widths = vec![d];
    widths.extend(&cfg.hidden);
    widths.push(c);
    let model = Mlp::new(widths, cfg.act)?;
    let p = model.num_params();
    // The fixed Hessian subset of these classes.
    let mut idx: Vec<usize> = (0..ys.len()).collect();
    idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(
        seed ^ 0x4e55 ^ (c as u64) << 8,
    ));
    idx.truncate(cfg.hessian_examples.min(ys.len()));
    let (hx, hy) = gather(&xs, &ys, d, &idx);
    let sub = Batch::labels(&hx, &hy);
    let sc = &cfg.subsets;
    let marks = subset_steps(sc.steps, sc.checkpoints);
    let top = cfg.top.min(p);
    let mut theta = model.init(seed);
    let mut st = OptState::default();
    let mut batches = Batches::new(ys.len(), cfg.batch, seed ^ 0x5eed);
    let (mut lams, mut fts, mut gc, mut gb, mut kn) = (vec![], vec![], vec![], vec![], vec![]);
    let mut lg = vec![];
    for t in 0..=sc.steps {
        if marks.contains(&t) {
            let pt = model.at(&theta, sub)?;
            let e = lanczos_top(p, cfg.lanczos_steps.min(p), top, seed + t as u64, |v, o| {
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
        let (bx, by) = gather(&xs, &ys, d, &batches.next());
        let pt = model.at(&theta, Batch::labels(&bx, &by))?;
        if !pt.loss.is_finite() {
            return Err(StudyError::Nn(dlt_nn::NnError::Diverged {
                step: t,
                loss: pt.loss,
            }));
        }
        let g = pt.grad().to_vec();
        st.step(Optimizer::Sgd, &mut theta, &g, lr);
    }
    let col = |rows: &[Vec<f64>], i: usize| {
        median(rows.iter().filter_map(|r| r.get(i).copied()).collect())
    };
    let n = lams.iter().map(|l| l.len()).min().unwrap_or(0);
    Ok(SubsetRun {
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
        test_accuracy: model.evaluate(&theta, Batch::labels(&xts, &yts))?.1,
    })
}

/// Sample standard deviation (0 for fewer than two values).
pub(super) fn sd(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    if v.len() < 2 {
        return 0.0;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// All class-subset runs (class count × seed), in parallel.
pub(super) fn class_subsets(
    cfg: &Config,
    data: &Data,
    lr: f64,
) -> Result<Vec<SubsetRun>, StudyError> {
    let sc = &cfg.subsets;
    if let Some(&c) = sc.class_counts.iter().find(|&&c| !(2..=10).contains(&c)) {
        return Err(StudyError::Nn(dlt_nn::NnError::Invalid {
            what: format!("class count {c}"),
            fix: "Fashion-MNIST has 10 classes: give counts between 2 and 10".into(),
        }));
    }
    if let Some(&c) = sc.class_counts.iter().find(|&&c| 2 * c > cfg.top) {
        return Err(StudyError::Nn(dlt_nn::NnError::Invalid {
            what: format!("class count {c} with {} eigenpairs", cfg.top),
            fix: "the bulk gap needs eigenvalues past C: keep 2C ≤ top".into(),
        }));
    }
    let jobs: Vec<(usize, u64)> = sc
        .class_counts
        .iter()
        .flat_map(|&c| (0..sc.seeds as u64).map(move |s| (c, cfg.seed + s)))
        .collect();
    jobs.par_iter()
        .map(|&(c, s)| one_run(cfg, data, c, s, lr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_find_the_outliers_and_the_bulk() {
        // Three outliers above a flat bulk: the gap at C = 3 is 4/1 = 4, the bulk gap 1.25.
        let v = [9.0, 6.0, 4.0, 1.0, 1.0, 0.8, 0.8];
        let (a, b) = gaps(&v, 3);
        assert_eq!(a, 4.0);
        assert_eq!(b, 1.25);
        // At C = 2 the outlier edge λ₃/λ₄ lies past C: the largest gap up to 2 is 1.5.
        assert_eq!(gaps(&v, 2), (1.5, 4.0));
        // A non-positive eigenvalue makes the ratio missing.
        assert!(gaps(&[1.0, -1.0], 1).0.is_nan());
    }

    #[test]
    fn largest_gap_counts_the_outliers() {
        assert_eq!(largest_gap(&[9.0, 6.0, 4.0, 1.0, 1.0, 0.8]), 3);
        assert_eq!(largest_gap(&[1.0]), 0);
    }

    #[test]
    fn knee_is_where_nine_tenths_are_reached() {
        // Steep to k = 3, flat after: 0.9 × 0.95 = 0.855 is first reached at k = 3.
        let f = [0.3, 0.6, 0.9, 0.92, 0.94, 0.95];
        assert_eq!(knee(&f), 3);
        // Linear curve with one step at k = 5.
        let g = [0.1, 0.2, 0.3, 0.4, 0.9, 0.91, 0.92];
        assert_eq!(knee(&g), 5);
        assert_eq!(knee(&[0.5]), 1);
        assert_eq!(knee(&[]), 0);
    }

    #[test]
    fn checkpoints_cover_the_second_half() {
        assert_eq!(subset_steps(1500, 4), vec![937, 1125, 1312, 1500]);
        assert_eq!(subset_steps(3, 4), vec![1, 2, 3]);
    }
}
