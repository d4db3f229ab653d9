//! Fashion-MNIST prepared for the kernel theory: seeded subsets, pixels standardised with the
//! training subset's statistics, every image rescaled to |x|²/d = 1 so that all inputs share one
//! diagonal kernel K_aa (the single-input fixed-point analysis of PDLT ch. 5 then applies to
//! each of them; docs/derivations/trained.md#data).

use crate::study::StudyError;
use dlt_nn::data::{Split, TrainTest};
use dlt_nn::NnError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Training and test inputs (row-major, f64), labels and dimension.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// N×d training inputs.
    pub train_x: Vec<f64>,
    /// Training labels (N).
    pub train_labels: Vec<u32>,
    /// M×d test inputs.
    pub test_x: Vec<f64>,
    /// Test labels (M).
    pub test_labels: Vec<u32>,
    /// Input dimension d.
    pub dim: usize,
}

impl Prepared {
    /// N.
    pub fn n_train(&self) -> usize {
        self.train_labels.len()
    }
    /// M.
    pub fn n_test(&self) -> usize {
        self.test_labels.len()
    }
    /// Targets one-hot − 0.1 (N×10, mean zero over classes): the regression targets of
    /// kernel classification.
    pub fn one_hot_targets(&self) -> Vec<f64> {
        let mut y = vec![-0.1; self.n_train() * 10];
        for (row, &l) in y.chunks_exact_mut(10).zip(&self.train_labels) {
            row[l as usize] = 0.9;
        }
        y
    }
    /// Targets ±1 (label < 5 → +1), one output: the binary task of the finite-width ensembles.
    pub fn binary_targets(labels: &[u32]) -> Vec<f64> {
        labels
            .iter()
            .map(|&l| if l < 5 { 1.0 } else { -1.0 })
            .collect()
    }
}

/// The first `n_train` (`n_test`) examples of a seeded shuffle of each split, standardised and
/// normalised as the module doc says. Errors name the sizes when a split is too small.
pub fn prepare(
    data: &TrainTest,
    n_train: usize,
    n_test: usize,
    seed: u64,
) -> Result<Prepared, StudyError> {
    let pick = |s: &Split, n: usize, salt: u64, what: &str| -> Result<Vec<usize>, StudyError> {
        if n == 0 || n > s.len() {
            return Err(StudyError::Nn(NnError::Invalid {
                what: format!("{n} {what} examples of {}", s.len()),
                fix: format!("choose between 1 and {} {what} examples", s.len()),
            }));
        }
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed ^ salt));
        idx.truncate(n);
        Ok(idx)
    };
    let (tr, te) = (
        pick(&data.train, n_train, 0x7a1_0001, "training")?,
        pick(&data.test, n_test, 0x7e5_7002, "test")?,
    );
    let d = data.train.dim;
    let rows = |s: &Split, idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| s.x[i * d..(i + 1) * d].iter().map(|&v| v as f64))
            .collect()
    };
    let (mut train_x, mut test_x) = (rows(&data.train, &tr), rows(&data.test, &te));
    // Per-pixel mean and standard deviation of the training subset (constant pixels: sd 1).
    let n = tr.len() as f64;
    let mut mean = vec![0.0; d];
    let mut var = vec![0.0; d];
    for row in train_x.chunks_exact(d) {
        row.iter().zip(&mut mean).for_each(|(x, m)| *m += x / n);
    }
    for row in train_x.chunks_exact(d) {
        for ((x, m), v) in row.iter().zip(&mean).zip(&mut var) {
            *v += (x - m) * (x - m) / n;
        }
    }
    let sd: Vec<f64> = var
        .iter()
        .map(|v| if *v > 1e-12 { v.sqrt() } else { 1.0 })
        .collect();
    for row in train_x
        .chunks_exact_mut(d)
        .chain(test_x.chunks_exact_mut(d))
    {
        for ((x, m), s) in row.iter_mut().zip(&mean).zip(&sd) {
            *x = (*x - m) / s;
        }
        let norm2 = row.iter().map(|x| x * x).sum::<f64>() / d as f64;
        if norm2 <= 0.0 {
            return Err(StudyError::Nn(NnError::Invalid {
                what: "an image equal to the training mean".into(),
                fix: "it cannot be normalised to |x|²/d = 1; use another seed or subset".into(),
            }));
        }
        let s = norm2.sqrt();
        row.iter_mut().for_each(|x| *x /= s);
    }
    let labels = |s: &Split, idx: &[usize]| idx.iter().map(|&i| s.y[i]).collect();
    Ok(Prepared {
        train_labels: labels(&data.train, &tr),
        test_labels: labels(&data.test, &te),
        train_x,
        test_x,
        dim: d,
    })
}

/// Fraction of rows whose argmax is the label.
pub fn accuracy(outputs: &[f64], classes: usize, labels: &[u32]) -> f64 {
    let hits = outputs
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &l)| dlt_nn::mlp::argmax(row).0 == l as usize)
        .count();
    hits as f64 / labels.len() as f64
}
