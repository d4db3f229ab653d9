//! Infinite-width predictions from the kernels: the exact NNGP posterior (PDLT ch. 6) and the
//! ensemble of infinitely wide networks trained by gradient flow / gradient descent on
//! ℒ = ½ Σ (z − y)² (PDLT ch. 7 and 10; docs/derivations/kernels.md#posterior and
//! docs/derivations/kernels.md#gradient-flow).
//!
//! Training set A (N inputs), test set B (M inputs), `outputs` = n_L output components that
//! share the kernel. Matrices are row-major; Y is N×outputs.

use crate::TheoryError;
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};

/// The kernel blocks of one kernel (K or Θ) on train A and test B.
#[derive(Debug, Clone, Copy)]
pub struct Blocks<'a> {
    /// N (training inputs).
    pub n: usize,
    /// M (test inputs).
    pub m: usize,
    /// The N×N training block.
    pub train: &'a [f64],
    /// The M×N test × train block.
    pub test_train: &'a [f64],
    /// The M×M test block (only read where a covariance needs it; may be empty otherwise).
    pub test: &'a [f64],
}

impl<'a> Blocks<'a> {
    fn check(&self, flag: &'static str, need_test: bool) -> Result<(), TheoryError> {
        let bad = |msg: String| Err(TheoryError::Invalid { flag, msg });
        if self.n == 0 {
            return bad("need at least one training input".into());
        }
        if self.train.len() != self.n * self.n {
            return bad(format!(
                "train block has {} entries, expected {}²",
                self.train.len(),
                self.n
            ));
        }
        if self.test_train.len() != self.m * self.n {
            return bad(format!(
                "test × train block has {} entries, expected {}×{}",
                self.test_train.len(),
                self.m,
                self.n
            ));
        }
        if need_test && self.test.len() != self.m * self.m {
            return bad(format!(
                "test block has {} entries, expected {}²",
                self.test.len(),
                self.m
            ));
        }
        let all = self.train.iter().chain(self.test_train).chain(self.test);
        if all.clone().any(|v| !v.is_finite()) {
            return bad("kernel has non-finite entries".into());
        }
        for a in 0..self.n {
            for b in 0..a {
                let (x, y) = (self.train[a * self.n + b], self.train[b * self.n + a]);
                if (x - y).abs() > 1e-12 * (x.abs() + y.abs() + 1e-300) {
                    return bad(format!("train block is not symmetric at ({a}, {b})"));
                }
            }
        }
        Ok(())
    }
}

/// Gaussian predictive distribution on the test inputs: the same covariance for every output.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Mean, M×outputs row-major.
    pub mean: Vec<f64>,
    /// Covariance over test inputs, M×M row-major, exactly symmetric.
    pub cov: Vec<f64>,
}

/// Training time of [`ntk_ensemble`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NtkTime {
    /// Gradient flow dθ/dt = −η λ ∂ℒ/∂θ up to time t, given as τ = η t ≥ 0 (U = I − e^{−τΘ̃}).
    Flow {
        /// τ = η t.
        tau: f64,
    },
    /// `steps` full-batch gradient-descent steps with learning rate η (U = I − (I − ηΘ̃)^steps).
    Steps {
        /// Learning rate η > 0 (converges for η < 2/λ_max(Θ̃)).
        eta: f64,
        /// Number of steps.
        steps: u32,
    },
    /// Converged training, t → ∞ (U = I; Θ̃ must be invertible).
    Infinity,
}

fn mat(rows: usize, cols: usize, v: &[f64]) -> Mat<f64> {
    Mat::from_fn(rows, cols, |i, j| v[i * cols + j])
}

fn flat(m: &Mat<f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            out.push(m[(i, j)]);
        }
    }
    out
}

/// (C + Cᵀ)/2 flattened.
fn sym_flat(c: &Mat<f64>) -> Vec<f64> {
    let n = c.nrows();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = 0.5 * (c[(i, j)] + c[(j, i)]);
        }
    }
    out
}

fn check_y(y: &[f64], n: usize, outputs: usize) -> Result<(), TheoryError> {
    if outputs == 0 || y.len() != n * outputs {
        return Err(TheoryError::Invalid {
            flag: "--train-y",
            msg: format!(
                "targets must be N×outputs = {n}×{outputs} (one row per training input), got {} values",
                y.len()
            ),
        });
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(TheoryError::Invalid {
            flag: "--train-y",
            msg: "targets contain non-finite values".into(),
        });
    }
    Ok(())
}

/// Exact NNGP posterior given noisy observations y = z_A + ε, ε ~ N(0, s I) (PDLT ch. 6;
/// docs/derivations/kernels.md#posterior):
/// mean = K_BA (K_AA + sI)⁻¹ Y, cov = K_BB − K_BA (K_AA + sI)⁻¹ K_AB (Cholesky).
///
/// `noise` is the observation-noise variance s ≥ 0 in absolute units. With s = 0 a singular
/// K_AA (duplicate inputs, or a kernel that has lost rank with depth) is refused with
/// [`TheoryError::Singular`] when its Cholesky factor has a pivot below N·ε·max K_αα.
pub fn nngp_posterior(
    k: Blocks,
    y: &[f64],
    outputs: usize,
    noise: f64,
) -> Result<Prediction, TheoryError> {
    k.check("--train-x", true)?;
    check_y(y, k.n, outputs)?;
    let (n, m) = (k.n, k.m);
    let llt = noisy_cholesky(k, noise)?;
    let kba = mat(m, n, k.test_train);
    let alpha = llt.solve(mat(n, outputs, y)); // (K + sI)⁻¹ Y
    let mean = &kba * &alpha;
    let w = llt.solve(kba.transpose().to_owned()); // (K + sI)⁻¹ K_AB, N×M
    let cov = mat(m, m, k.test) - &kba * &w;
    Ok(Prediction {
        mean: flat(&mean),
        cov: sym_flat(&cov),
    })
}

/// Kernel regression on the test inputs, K_BA (K_AA + sI)⁻¹ Y (M×outputs): the NNGP posterior
/// mean of [`nngp_posterior`] without its covariance (so without the test × test block), or,
/// given Θ, the mean output of infinitely wide networks trained to convergence (t = ∞, PDLT
/// §10.2), with a ridge s ≥ 0 (s = 0: exactly the converged network).
pub fn kernel_mean(
    k: Blocks,
    y: &[f64],
    outputs: usize,
    noise: f64,
) -> Result<Vec<f64>, TheoryError> {
    k.check("--train-x", false)?;
    check_y(y, k.n, outputs)?;
    let llt = noisy_cholesky(k, noise)?;
    Ok(flat(
        &(mat(k.m, k.n, k.test_train) * llt.solve(mat(k.n, outputs, y))),
    ))
}

/// The Cholesky factor of K_AA + sI; a singular or indefinite one (smallest pivot ≤ N·ε·max
/// K_αα) is [`TheoryError::Singular`], naming `--noise` as the fix.
fn noisy_cholesky(k: Blocks, noise: f64) -> Result<faer::linalg::solvers::Llt<f64>, TheoryError> {
    if !(noise >= 0.0 && noise.is_finite()) {
        return Err(TheoryError::Invalid {
            flag: "--noise",
            msg: format!("the observation-noise variance must be finite and ≥ 0, got {noise}"),
        });
    }
    let n = k.n;
    let mut kaa = mat(n, n, k.train);
    let maxdiag = (0..n).map(|i| kaa[(i, i)].abs()).fold(0.0, f64::max);
    for i in 0..n {
        kaa[(i, i)] += noise;
    }
    let singular = |extra: String| {
        TheoryError::Singular {
        flag: "--noise",
        what: format!(
            "the training kernel K_AA + sI (s = {noise}) is singular{extra}: duplicate training inputs or a degenerate kernel; add observation noise (--noise > 0) or remove duplicates"
        ),
    }
    };
    let llt = kaa
        .llt(Side::Lower)
        .map_err(|_| singular(" or not positive definite".into()))?;
    let l = llt.L();
    let min_pivot = (0..n)
        .map(|i| l[(i, i)] * l[(i, i)])
        .fold(f64::INFINITY, f64::min);
    if min_pivot <= n as f64 * f64::EPSILON * (maxdiag + noise) {
        return Err(singular(format!(
            " (smallest Cholesky pivot {min_pivot:e})"
        )));
    }
    Ok(llt)
}

/// Ensemble of infinitely wide networks trained on ℒ = ½ Σ (z − y)² from z(0) ~ N(0, K)
/// (PDLT ch. 7, 10; docs/derivations/kernels.md#gradient-flow): with Θ̃ = Θ_AA = QΛQᵀ and
/// P = Θ_BA Θ̃⁻¹ U (U = I − e^{−τΘ̃} for flow, I − (I − ηΘ̃)^s for s GD steps, I at t = ∞),
/// mean = P Y and cov = K_BB − P K_AB − K_BA Pᵀ + P K_AA Pᵀ. Θ̃⁻¹U = Q diag(g(λ)) Qᵀ with
/// g(λ) = (1 − e^{−τλ})/λ (→ τ as λ → 0), so finite times never invert Θ̃. Eigenvalues of
/// Θ̃ below zero by rounding (≥ −N·ε·λ_max) are clamped to 0; at t = ∞ a smallest eigenvalue
/// ≤ N·ε·λ_max is refused with [`TheoryError::Singular`].
pub fn ntk_ensemble(
    k: Blocks,
    theta: Blocks,
    y: &[f64],
    outputs: usize,
    time: NtkTime,
) -> Result<Prediction, TheoryError> {
    k.check("--train-x", true)?;
    theta.check("--train-x", false)?;
    if theta.n != k.n || theta.m != k.m {
        return Err(TheoryError::Invalid {
            flag: "--test-x",
            msg: format!(
                "K is {}+{} inputs but Θ is {}+{}",
                k.n, k.m, theta.n, theta.m
            ),
        });
    }
    check_y(y, k.n, outputs)?;
    let (n, m) = (k.n, k.m);
    let p = trained_map(theta, time)?;
    let mean = &p * mat(n, outputs, y);
    let kba = mat(m, n, k.test_train);
    let pkab = &p * kba.transpose();
    let cov =
        mat(m, m, k.test) - &pkab - pkab.transpose() + &p * mat(n, n, k.train) * p.transpose();
    Ok(Prediction {
        mean: flat(&mean),
        cov: sym_flat(&cov),
    })
}

/// The ensemble mean of [`ntk_ensemble`] alone, P Y (M×outputs), which needs Θ only: the
/// mean output of infinitely wide networks trained on ℒ = ½ Σ (z − y)² for `time`.
pub fn ntk_mean(
    theta: Blocks,
    y: &[f64],
    outputs: usize,
    time: NtkTime,
) -> Result<Vec<f64>, TheoryError> {
    theta.check("--train-x", false)?;
    check_y(y, theta.n, outputs)?;
    Ok(flat(
        &(trained_map(theta, time)? * mat(theta.n, outputs, y)),
    ))
}

/// P = Θ_BA Θ̃⁻¹ U(time) = Θ_BA Q diag(g(λ)) Qᵀ (M×N): the linear map from training targets to
/// the trained mean on the test inputs (docs/derivations/kernels.md#gradient-flow). Eigenvalues
/// below zero by rounding (≥ −N·ε·λ_max) are clamped to 0.
fn trained_map(theta: Blocks, time: NtkTime) -> Result<Mat<f64>, TheoryError> {
    match time {
        NtkTime::Flow { tau } if !(tau >= 0.0 && tau.is_finite()) => {
            return Err(TheoryError::Invalid {
                flag: "--time",
                msg: format!("τ = ηt must be finite and ≥ 0, got {tau}"),
            })
        }
        NtkTime::Steps { eta, .. } if !(eta > 0.0 && eta.is_finite()) => {
            return Err(TheoryError::Invalid {
                flag: "--lr",
                msg: format!("η must be finite and > 0, got {eta}"),
            })
        }
        _ => {}
    }
    let (n, m) = (theta.n, theta.m);
    let evd = mat(n, n, theta.train)
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| TheoryError::Singular {
            flag: "--train-x",
            what: "the eigendecomposition of the training NTK did not converge".into(),
        })?;
    let (q, lam) = (evd.U(), evd.S());
    let lmax = (0..n).map(|i| lam[i].abs()).fold(0.0, f64::max);
    let floor = n as f64 * f64::EPSILON * lmax;
    let mut g = vec![0.0; n];
    for i in 0..n {
        let l = lam[i];
        if l < -floor {
            return Err(TheoryError::Singular {
                flag: "--train-x",
                what: format!("the training NTK is not positive semi-definite (eigenvalue {l:e}, largest {lmax:e})"),
            });
        }
        let l = l.max(0.0);
        g[i] = match time {
            NtkTime::Infinity => {
                if l <= floor {
                    return Err(TheoryError::Singular {
                        flag: "--time",
                        what: format!(
                            "the training NTK is singular (eigenvalue {l:e}, largest {lmax:e}), so t = ∞ is undefined; use a finite time or remove duplicate training inputs"
                        ),
                    });
                }
                1.0 / l
            }
            NtkTime::Flow { tau } => {
                if l > 0.0 {
                    -(-tau * l).exp_m1() / l
                } else {
                    tau
                }
            }
            NtkTime::Steps { eta, steps } => {
                let x = eta * l;
                if l == 0.0 {
                    eta * steps as f64
                } else if x < 1.0 {
                    -(steps as f64 * (-x).ln_1p()).exp_m1() / l
                } else {
                    (1.0 - (1.0 - x).powi(steps as i32)) / l
                }
            }
        };
    }
    // P = Θ_BA Q diag(g) Qᵀ.
    let tq = mat(m, n, theta.test_train) * q;
    let tqg = Mat::from_fn(m, n, |i, j| tq[(i, j)] * g[j]);
    Ok(&tqg * q.transpose())
}

impl super::dataset::DatasetKernels {
    /// The NNGP blocks for [`nngp_posterior`] / [`ntk_ensemble`]; None unless the kernels were
    /// computed with test inputs and the test × test block.
    pub fn nngp_blocks(&self) -> Option<Blocks<'_>> {
        Some(Blocks {
            n: self.n_train,
            m: self.n_test,
            train: &self.k_train,
            test_train: &self.k_test_train,
            test: self.k_test.as_deref()?,
        })
    }
    /// The NTK blocks for [`ntk_ensemble`] (the test × test block is not needed there and is
    /// empty when it was not computed).
    pub fn ntk_blocks(&self) -> Blocks<'_> {
        Blocks {
            n: self.n_train,
            m: self.n_test,
            train: &self.ntk_train,
            test_train: &self.ntk_test_train,
            test: self.ntk_test.as_deref().unwrap_or(&[]),
        }
    }
}
