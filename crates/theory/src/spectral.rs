//! Matrix-free spectra of symmetric operators (a Hessian seen only through Hessian-vector
//! products): top eigenpairs by Lanczos, the trace by Hutchinson's estimator, and the spectral
//! density by stochastic Lanczos quadrature (SLQ).
//!
//! Lanczos (Golub & Van Loan, *Matrix Computations*, §10.1): from a unit q₁, β₀ = 0,
//!   w = A q_j − β_{j−1} q_{j−1},  α_j = q_jᵀ w,  w ← w − α_j q_j,  β_j = |w|,  q_{j+1} = w/β_j,
//! with full reorthogonalisation (w ← w − Q(Qᵀw), twice) so that Ritz values do not repeat.
//! The eigenpairs (θ_i, s_i) of the tridiagonal T_m = tridiag(β, α, β) give Ritz pairs
//! (θ_i, Q s_i); θ₁ ≥ θ₂ ≥ … approximate the *algebraically* largest eigenvalues (power
//! iteration, as in PyHessian, finds the largest |λ| instead).
//! SLQ (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019): the density is approximated by
//! nodes θ_i with weights (s_i)₁², averaged over random unit starts.

use crate::TheoryError;
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Top Ritz pairs of a symmetric operator.
#[derive(Debug, Clone)]
pub struct TopEigen {
    /// Ritz values, largest first.
    pub values: Vec<f64>,
    /// Unit Ritz vectors, in the same order.
    pub vectors: Vec<Vec<f64>>,
    /// Residuals |A y − θ y| (one more product per pair, computed explicitly).
    pub residuals: Vec<f64>,
    /// Operator products used (Lanczos steps plus residual checks).
    pub products: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// A unit vector with independent Gaussian entries, seeded.
pub fn random_unit(dim: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut v: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
    let n = norm(&v);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// The Lanczos basis Q (rows q_1…q_m) and the tridiagonal (α, β) from `start`; stops early at an
/// invariant subspace (β below 1e-12·max|α|).
fn lanczos_basis(
    start: Vec<f64>,
    m: usize,
    matvec: &mut dyn FnMut(&[f64], &mut [f64]),
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let dim = start.len();
    let mut q: Vec<Vec<f64>> = vec![start];
    let (mut alpha, mut beta) = (vec![], vec![]);
    let mut w = vec![0.0; dim];
    for j in 0..m.min(dim) {
        matvec(&q[j], &mut w);
        let a = dot(&q[j], &w);
        alpha.push(a);
        // Two passes of classical Gram–Schmidt against every basis vector ("twice is enough").
        for _ in 0..2 {
            for qi in &q {
                let c = dot(qi, &w);
                w.iter_mut().zip(qi).for_each(|(x, y)| *x -= c * y);
            }
        }
        let b = norm(&w);
        let scale = alpha.iter().fold(0.0f64, |s, a| s.max(a.abs())).max(1e-300);
        if j + 1 == m.min(dim) || b <= 1e-12 * scale {
            break;
        }
        beta.push(b);
        q.push(w.iter().map(|x| x / b).collect());
    }
    (q, alpha, beta)
}

/// Eigenpairs of the symmetric tridiagonal (α, β), eigenvalues descending.
fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> Result<(Vec<f64>, Mat<f64>), TheoryError> {
    let m = alpha.len();
    let t = Mat::<f64>::from_fn(m, m, |i, j| {
        if i == j {
            alpha[i]
        } else if i + 1 == j || j + 1 == i {
            beta[i.min(j)]
        } else {
            0.0
        }
    });
    let evd = t
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| TheoryError::Invalid {
            flag: "lanczos",
            msg: "the tridiagonal eigensolver did not converge (non-finite operator products?)"
                .into(),
        })?;
    // faer returns ascending eigenvalues; reverse.
    let values: Vec<f64> = (0..m).rev().map(|i| evd.S()[i]).collect();
    let vectors = Mat::<f64>::from_fn(m, m, |i, j| evd.U()[(i, m - 1 - j)]);
    Ok((values, vectors))
}

/// The `k` algebraically largest eigenpairs of a symmetric operator on R^dim by `m` Lanczos
/// steps with full reorthogonalisation from a seeded random start; `matvec(v, out)` writes A v.
pub fn lanczos_top(
    dim: usize,
    m: usize,
    k: usize,
    seed: u64,
    mut matvec: impl FnMut(&[f64], &mut [f64]),
) -> Result<TopEigen, TheoryError> {
    if k == 0 || k > m || m > dim {
        return Err(TheoryError::Invalid {
            flag: "lanczos",
            msg: format!(
                "need 1 ≤ k ≤ m ≤ dim, got k = {k}, m = {m}, dim = {dim}; raise the Lanczos steps \
                 or lower k"
            ),
        });
    }
    let (q, alpha, beta) = lanczos_basis(random_unit(dim, seed), m, &mut matvec);
    let (theta, s) = tridiagonal_eigen(&alpha, &beta)?;
    let kk = k.min(theta.len());
    let mut out = TopEigen {
        values: theta[..kk].to_vec(),
        vectors: vec![],
        residuals: vec![],
        products: alpha.len(),
    };
    let mut av = vec![0.0; dim];
    for i in 0..kk {
        let mut y = vec![0.0; dim];
        for (j, qj) in q.iter().enumerate().take(alpha.len()) {
            let c = s[(j, i)];
            y.iter_mut().zip(qj).for_each(|(a, b)| *a += c * b);
        }
        let n = norm(&y);
        y.iter_mut().for_each(|a| *a /= n);
        matvec(&y, &mut av);
        out.products += 1;
        let r: f64 = av
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - theta[i] * b).powi(2))
            .sum::<f64>()
            .sqrt();
        out.residuals.push(r);
        out.vectors.push(y);
    }
    Ok(out)
}

/// Hutchinson's estimator of tr A with `probes` Rademacher vectors: (mean of zᵀAz, its
/// standard error).
pub fn hutchinson_trace(
    dim: usize,
    probes: usize,
    seed: u64,
    mut matvec: impl FnMut(&[f64], &mut [f64]),
) -> (f64, f64) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut az = vec![0.0; dim];
    let samples: Vec<f64> = (0..probes)
        .map(|_| {
            let z: Vec<f64> = (0..dim)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect();
            matvec(&z, &mut az);
            dot(&z, &az)
        })
        .collect();
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// Stochastic Lanczos quadrature: nodes (Ritz values) and weights ((s_i)₁² / runs) of the
/// spectral density of A, from `runs` random unit starts of `m` steps each. The weights sum
/// to 1.
pub fn slq_density(
    dim: usize,
    m: usize,
    runs: usize,
    seed: u64,
    mut matvec: impl FnMut(&[f64], &mut [f64]),
) -> Result<Vec<(f64, f64)>, TheoryError> {
    let mut nodes = vec![];
    for r in 0..runs {
        let (_, alpha, beta) = lanczos_basis(
            random_unit(dim, seed.wrapping_add(r as u64)),
            m,
            &mut matvec,
        );
        let (theta, s) = tridiagonal_eigen(&alpha, &beta)?;
        for (i, t) in theta.iter().enumerate() {
            nodes.push((*t, s[(0, i)].powi(2) / runs as f64));
        }
    }
    Ok(nodes)
}

/// (1/k)|Aᵀ B|²_F for two orthonormal sets of k vectors: the overlap of the subspaces they
/// span (1 when equal, ≈ k/dim for random ones).
pub fn subspace_overlap(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let k = a.len().min(b.len());
    if k == 0 {
        return f64::NAN;
    }
    let s: f64 = a[..k]
        .iter()
        .flat_map(|x| b[..k].iter().map(move |y| dot(x, y).powi(2)))
        .sum();
    s / k as f64
}

/// |P g|²/|g|² for P the projector on the span of the orthonormal `basis`.
pub fn fraction_in_span(basis: &[Vec<f64>], g: &[f64]) -> f64 {
    let gg = dot(g, g);
    if gg == 0.0 {
        return f64::NAN;
    }
    basis.iter().map(|v| dot(v, g).powi(2)).sum::<f64>() / gg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric matrix with known spectrum: Q diag(λ) Qᵀ, Q from a seeded Gram–Schmidt.
    fn known(dim: usize, lam: &[f64]) -> (Mat<f64>, Vec<Vec<f64>>) {
        let mut q: Vec<Vec<f64>> = vec![];
        for i in 0..dim {
            let mut v = random_unit(dim, 100 + i as u64);
            for u in &q {
                let c = dot(u, &v);
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= c * b);
            }
            let n = norm(&v);
            v.iter_mut().for_each(|a| *a /= n);
            q.push(v);
        }
        let a = Mat::<f64>::from_fn(dim, dim, |i, j| {
            (0..dim).map(|k| q[k][i] * lam[k] * q[k][j]).sum()
        });
        (a, q)
    }

    fn apply(a: &Mat<f64>) -> impl FnMut(&[f64], &mut [f64]) + '_ {
        move |v, out| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (0..v.len()).map(|j| a[(i, j)] * v[j]).sum();
            }
        }
    }

    #[test]
    fn lanczos_finds_separated_outliers_above_a_bulk() {
        // Ten outliers 20…11 above a bulk in [−0.5, 1] (with negative curvature), dim 200.
        let dim = 200;
        let lam: Vec<f64> = (0..dim)
            .map(|i| {
                if i < 10 {
                    20.0 - i as f64
                } else {
                    -0.5 + 1.5 * (i - 10) as f64 / (dim - 10) as f64
                }
            })
            .collect();
        let (a, q) = known(dim, &lam);
        let top = lanczos_top(dim, 60, 10, 1, apply(&a)).unwrap();
        for i in 0..10 {
            // Separated outliers converge to rounding after 60 steps (gap ratio ≥ 0.5).
            assert!(
                (top.values[i] - lam[i]).abs() < 1e-9,
                "θ{i} = {}",
                top.values[i]
            );
            assert!(
                top.residuals[i] < 1e-8 * lam[0],
                "residual {}",
                top.residuals[i]
            );
        }
        // The span equals the true top-10 eigenspace.
        assert!((subspace_overlap(&top.vectors, &q[..10]) - 1.0).abs() < 1e-10);
        // The fraction of a vector inside that span.
        let g: Vec<f64> = (0..dim).map(|i| q[0][i] + q[50][i]).collect();
        assert!((fraction_in_span(&top.vectors, &g) - 0.5).abs() < 1e-10);
        assert!(lanczos_top(dim, 5, 10, 1, apply(&a)).is_err());
    }

    #[test]
    fn hutchinson_and_slq_match_the_spectrum() {
        let dim = 120;
        let lam: Vec<f64> = (0..dim).map(|i| 1.0 + (i % 7) as f64).collect();
        let (a, _) = known(dim, &lam);
        let tr: f64 = lam.iter().sum();
        let (est, se) = hutchinson_trace(dim, 400, 3, apply(&a));
        assert!((est - tr).abs() < 4.0 * se, "{est} ± {se} vs {tr}");
        assert!(se > 0.0 && se < 0.1 * tr);
        // SLQ weights sum to 1; the quadrature integrates λ exactly: Σ w θ = E[vᵀAv] over the
        // random starts, whose mean is tr A / dim (one start: SD ≈ √(2 Var λ / dim) ≈ 0.26, so
        // 8 starts have SE ≈ 0.09; tolerance 0.3 ≈ 3.3 SE).
        let nodes = slq_density(dim, 30, 8, 5, apply(&a)).unwrap();
        let wsum: f64 = nodes.iter().map(|n| n.1).sum();
        assert!((wsum - 1.0).abs() < 1e-12);
        let mean: f64 = nodes.iter().map(|n| n.0 * n.1).sum();
        assert!((mean - tr / dim as f64).abs() < 0.3, "{mean}");
        // Every node lies in the spectrum's hull.
        assert!(nodes.iter().all(|n| n.0 > 1.0 - 1e-9 && n.0 < 7.0 + 1e-9));
    }
}
