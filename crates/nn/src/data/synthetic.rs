//! Synthetic data: a teacher–student regression task and a Gaussian mixture classification task,
//! both seeded.

use super::Split;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

/// y = tanh(w·x/√d) per output (teacher with i.i.d. N(0,1) weights) plus Gaussian noise of
/// standard deviation `noise`; x ~ N(0, I_d).
pub fn teacher_student(n: usize, dim: usize, out: usize, noise: f64, seed: u64) -> Split {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let teacher: Vec<f64> = (0..dim * out).map(|_| rng.sample(StandardNormal)).collect();
    let mut x = Vec::with_capacity(n * dim);
    let mut targets = Vec::with_capacity(n * out);
    for _ in 0..n {
        let xi: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
        for o in 0..out {
            let pre: f64 =
                (0..dim).map(|j| teacher[o * dim + j] * xi[j]).sum::<f64>() / (dim as f64).sqrt();
            targets.push((pre.tanh() + noise * rng.sample::<f64, _>(StandardNormal)) as f32);
        }
        x.extend(xi.iter().map(|&v| v as f32));
    }
    Split {
        x,
        dim,
        y: vec![],
        classes: 0,
        targets,
        out,
    }
}

/// `classes` Gaussian blobs in `dim` dimensions: means drawn N(0, separation²·I), unit noise.
pub fn gaussian_mixture(n: usize, dim: usize, classes: usize, separation: f64, seed: u64) -> Split {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let means: Vec<f64> = (0..classes * dim)
        .map(|_| separation * rng.sample::<f64, _>(StandardNormal))
        .collect();
    let mut x = Vec::with_capacity(n * dim);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        y.push(c as u32);
        x.extend(
            (0..dim).map(|j| (means[c * dim + j] + rng.sample::<f64, _>(StandardNormal)) as f32),
        );
    }
    Split {
        x,
        dim,
        y,
        classes,
        targets: vec![],
        out: classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_seeds() {
        let a = teacher_student(50, 7, 2, 0.1, 3);
        assert_eq!((a.len(), a.targets.len()), (50, 100));
        assert_eq!(a, teacher_student(50, 7, 2, 0.1, 3));
        assert_ne!(a, teacher_student(50, 7, 2, 0.1, 4));
        let b = gaussian_mixture(30, 4, 3, 2.0, 1);
        assert_eq!((b.len(), b.y.iter().filter(|&&c| c == 2).count()), (30, 10));
        let s = b.subset(12, 0);
        assert_eq!(s.len(), 12);
    }
}
