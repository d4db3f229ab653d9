//! The O(1/n) correction to the mean output of networks trained by gradient descent on a
//! **set** of N_A inputs, read on the training inputs and on N_B test inputs, at every step t
//! (PDLT, Roberts–Yaida–Hanin, arXiv 2106.10165, ch. ∞: the finite-width dynamics built from the
//! NTK's mean shift and fluctuation, the dNTK and the two ddNTKs). Derived for this project,
//! with the expectation rules and how each term is computed:
//! docs/derivations/trained_dataset.md.
//!
//! Set-up: one output, NTK parameterisation, ℒ = ½ Σ_α (z_α − y_α)², full-batch GD with step η.
//! At infinite width E[z_t] is the kernel trajectory m∞(t) (H frozen at Θ); at width n
//!
//!   E[z_{δ,t}] = m∞_δ(t) + C_δ(t)/n + O(1/n²),
//!
//! C = C^Θ¹ + C^var + C^dNTK + C^ddNTK. Each part is an exact first- (or, for the NTK's
//! fluctuation, second-) order response of the per-network dynamics of [`dynamics`], averaged
//! over the initial outputs z_0 ~ N(0, K) with the rules of the derivation:
//!
//! * C^Θ¹: the response to H = Θ + sΘ¹ at ε_0 = −y;
//! * C^var = Σ_pq V_pq X_pq: X_pq the second-order response to the NTK entries p, q (pairs),
//!   V_pq = n Cov(H_p, H_q);
//! * C^dNTK = −½ Σ_μ [Q_μ(y + e_μ) − Q_μ(y − e_μ)], Q_μ(ε_0) the response to dH = s 𝒢_{··· μ} from
//!   initial residual ε_0 (a quadratic form in ε_0), 𝒢_{abc μ} = n E[dH_abc z_μ];
//! * C^ddNTK = −R(y) − ½ Σ_k [R(y + L_k) + R(y − L_k) − 2R(y)], R(ε_0) the response to
//!   (ddI, ddII) = s(ℐ, 𝒥) (a cubic form), L the Cholesky factor of K on the training inputs.
//!
//! For one training input and no test input this is [`super::mean_trajectory`] term by term, and
//! with one test input [`super::test_input::test_input_trajectory`] (tests).

pub mod deep;
mod dual;
mod dynamics;
pub mod moments;
pub mod two_layer;

use crate::TheoryError;
use dual::Dual;
use dynamics::{run, Fixed, Idx, Net};
use serde::{Deserialize, Serialize};

/// The output statistics the trajectory needs, for n inputs of which the first `n_train` are
/// trained on (one output neuron, n = width of the last hidden layer). Tensors are flat and
/// row-major over inputs. Only entries with at most one test index are read (and, of
/// `ntk_cov`, only V_{(ab)(cd)} with c, d training inputs); the others may hold anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    /// Number of training inputs N_A (inputs 0..N_A).
    pub n_train: usize,
    /// Number of inputs N = N_A + N_B.
    pub n: usize,
    /// K_αα' on the training inputs, N_A × N_A.
    #[serde(rename = "K")]
    pub k: Vec<f64>,
    /// Θ_ab, N × N.
    pub theta: Vec<f64>,
    /// Θ¹_ab: E[H_ab] = Θ_ab + Θ¹_ab/n, N × N.
    pub theta1: Vec<f64>,
    /// V_{(ab)(cd)} = n Cov(H_ab, H_cd), N⁴.
    pub ntk_cov: Vec<f64>,
    /// 𝒢_{abcμ} = n E[dH_abc z_μ], N³ × N_A (μ a training input), at ((a·N + b)·N + c)·N_A + μ.
    pub dntk_z: Vec<f64>,
    /// ℐ_abcd = n E[ddI_abcd], N⁴.
    pub ddi: Vec<f64>,
    /// 𝒥_abcd = n E[ddII_abcd], N⁴.
    pub ddii: Vec<f64>,
}

impl DatasetStats {
    /// Statistics for N = `n` inputs (the first `na` trained on) with every tensor NaN — the
    /// entries a builder leaves unset are those the trajectory never reads — and K zero.
    pub(super) fn unset(n: usize, na: usize) -> Self {
        let nan = f64::NAN;
        Self {
            n_train: na,
            n,
            k: vec![0.0; na * na],
            theta: vec![nan; n * n],
            theta1: vec![nan; n * n],
            ntk_cov: vec![nan; n.pow(4)],
            dntk_z: vec![nan; n.pow(3) * na],
            ddi: vec![nan; n.pow(4)],
            ddii: vec![nan; n.pow(4)],
        }
    }
}

/// One step of the mean trajectory on every input (training inputs first); the four parts add
/// up to `coefficient`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPoint {
    /// GD step t.
    pub t: usize,
    /// m∞_δ(t), the infinite-width mean.
    pub infinite: Vec<f64>,
    /// C_δ(t): E[z_{δ,t}] = m∞_δ(t) + C_δ(t)/n + O(1/n²).
    pub coefficient: Vec<f64>,
    /// The NTK mean shift's part.
    pub theta1_term: Vec<f64>,
    /// The NTK fluctuation's part.
    pub variance_term: Vec<f64>,
    /// The dNTK's part.
    pub dntk_term: Vec<f64>,
    /// The ddNTKs' part.
    pub ddntk_term: Vec<f64>,
}

fn invalid(flag: &'static str, msg: String) -> TheoryError {
    TheoryError::Invalid { flag, msg }
}

impl DatasetStats {
    /// Check shapes and finiteness of the entries that are read.
    pub fn check(&self) -> Result<(), TheoryError> {
        let (n, na) = (self.n, self.n_train);
        if na == 0 || na > n {
            return Err(invalid(
                "--train-x",
                format!("need 1 ≤ N_A ≤ N training inputs, got N_A = {na}, N = {n}"),
            ));
        }
        let shapes = [
            ("K", self.k.len(), na * na),
            ("theta", self.theta.len(), n * n),
            ("theta1", self.theta1.len(), n * n),
            ("ntk_cov", self.ntk_cov.len(), n.pow(4)),
            ("dntk_z", self.dntk_z.len(), n.pow(3) * na),
            ("ddi", self.ddi.len(), n.pow(4)),
            ("ddii", self.ddii.len(), n.pow(4)),
        ];
        for (name, got, want) in shapes {
            if got != want {
                return Err(invalid(
                    "--train-x",
                    format!("statistic {name} has {got} entries, expected {want} for N = {n}, N_A = {na}"),
                ));
            }
        }
        let ix = Idx { n, na };
        let bad = |name: &str, v: f64, at: &[usize]| -> Result<(), TheoryError> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(invalid(
                    "--train-x",
                    format!("statistic {name} is not finite at {at:?}: {v}"),
                ))
            }
        };
        for a in 0..n {
            for b in 0..n {
                if ix.tests(&[a, b]) > 1 {
                    continue;
                }
                bad("theta", self.theta[ix.i2(a, b)], &[a, b])?;
                bad("theta1", self.theta1[ix.i2(a, b)], &[a, b])?;
                for c in 0..n {
                    for d in 0..n {
                        let e = [a, b, c, d];
                        if ix.tests(&e) > 1 {
                            continue;
                        }
                        bad("ddi", self.ddi[ix.i4(a, b, c, d)], &e)?;
                        bad("ddii", self.ddii[ix.i4(a, b, c, d)], &e)?;
                        if c < na && d < na {
                            bad("ntk_cov", self.ntk_cov[ix.i4(a, b, c, d)], &e)?;
                        }
                    }
                    if ix.tests(&[a, b, c]) <= 1 {
                        for m in 0..na {
                            bad(
                                "dntk_z",
                                self.dntk_z[ix.i3(a, b, c) * na + m],
                                &[a, b, c, m],
                            )?;
                        }
                    }
                }
            }
        }
        for (i, &v) in self.k.iter().enumerate() {
            bad("K", v, &[i / na, i % na])?;
        }
        Ok(())
    }
}

/// E[z_t] on every input for t = 0..=steps at infinite width and its O(1/n) coefficient, split
/// by origin (module docs), for GD with step `eta` towards targets `y` (one per training
/// input). Requires Θ and K positive definite on the training inputs and 0 < ηλ < 2 for every
/// eigenvalue λ of Θ_AA (GD converges at infinite width).
pub fn dataset_trajectory(
    s: &DatasetStats,
    eta: f64,
    y: &[f64],
    steps: usize,
) -> Result<Vec<DatasetPoint>, TheoryError> {
    s.check()?;
    let (n, na) = (s.n, s.n_train);
    let ix = Idx { n, na };
    if y.len() != na || y.iter().any(|v| !v.is_finite()) {
        return Err(invalid(
            "--train-y",
            format!("need {na} finite targets, got {y:?}"),
        ));
    }
    let theta_aa = faer::Mat::<f64>::from_fn(na, na, |i, j| s.theta[ix.i2(i, j)]);
    let eig = crate::scaling::sym_eigen_seq(&theta_aa, false)
        .map_err(|e| invalid("--train-x", format!("eigenvalues of Θ_AA: {e:?}")))?
        .0;
    let (lo, hi) = (eig[0], eig[na - 1]);
    if !(lo > 0.0 && eta > 0.0 && eta * hi < 2.0) {
        return Err(invalid(
            "--eta",
            format!(
                "need Θ_AA positive definite and 0 < ηλ < 2 for its eigenvalues λ ∈ [{lo}, {hi}] \
                 (got η = {eta}); choose η < {}",
                2.0 / hi
            ),
        ));
    }
    let Some(chol) = crate::gauss::cholesky(&s.k, na) else {
        return Err(invalid(
            "--train-x",
            "K on the training inputs is not positive definite (a repeated input?); drop duplicates".into(),
        ));
    };

    // Zeroth order: E[z_0] = 0, H = Θ.
    let base = run(
        Net {
            z: vec![0.0; n],
            h: s.theta.clone(),
            dh: None,
        },
        Fixed::none(),
        y,
        eta,
        ix,
        steps,
    );
    let dual = |v: &[f64], d: &[f64]| -> Vec<Dual> {
        v.iter().zip(d).map(|(&v, &d)| Dual::new(v, d)).collect()
    };
    let consts = |v: &[f64]| -> Vec<Dual> { v.iter().map(|&v| Dual::new(v, 0.0)).collect() };
    // z_0 for an initial residual ε_0 on the training inputs (0 on the test inputs).
    let z_from_eps = |eps: &[f64]| -> Vec<Dual> {
        (0..n)
            .map(|d| Dual::new(if d < na { eps[d] + y[d] } else { 0.0 }, 0.0))
            .collect()
    };
    let deriv = |traj: Vec<Vec<Dual>>| -> Vec<Vec<f64>> {
        traj.into_iter()
            .map(|z| z.into_iter().map(|x| x.d).collect())
            .collect()
    };

    // C^Θ¹: H = Θ + sΘ¹ from the mean residual −y.
    let theta1_term = deriv(run(
        Net {
            z: consts(&vec![0.0; n]),
            h: dual(&s.theta, &s.theta1),
            dh: None,
        },
        Fixed::none(),
        y,
        eta,
        ix,
        steps,
    ));

    let variance_term = fluctuation(s, ix, &base, y, eta, steps);

    // C^dNTK: −½ Σ_μ [Q_μ(y + e_μ) − Q_μ(y − e_μ)].
    let mut dntk_term = vec![vec![0.0; n]; steps + 1];
    for mu in 0..na {
        let g: Vec<f64> = (0..n * n * n).map(|i| s.dntk_z[i * na + mu]).collect();
        for sign in [1.0, -1.0] {
            let mut eps = y.to_vec();
            eps[mu] += sign;
            let q = deriv(run(
                Net {
                    z: z_from_eps(&eps),
                    h: consts(&s.theta),
                    dh: Some(dual(&vec![0.0; g.len()], &g)),
                },
                Fixed::none(),
                y,
                eta,
                ix,
                steps,
            ));
            for (acc, qt) in dntk_term.iter_mut().zip(&q) {
                for (a, v) in acc.iter_mut().zip(qt) {
                    *a -= 0.5 * sign * v;
                }
            }
        }
    }

    // C^ddNTK: −R(y) − ½ Σ_k [R(y + L_k) + R(y − L_k) − 2R(y)].
    let ddi = dual(&vec![0.0; s.ddi.len()], &s.ddi);
    let ddii = dual(&vec![0.0; s.ddii.len()], &s.ddii);
    let cubic = |eps: &[f64]| -> Vec<Vec<f64>> {
        deriv(run(
            Net {
                z: z_from_eps(eps),
                h: consts(&s.theta),
                dh: Some(vec![Dual::default(); n * n * n]),
            },
            Fixed {
                ddi: Some(&ddi),
                ddii: Some(&ddii),
            },
            y,
            eta,
            ix,
            steps,
        ))
    };
    let r_y = cubic(y);
    let mut ddntk_term: Vec<Vec<f64>> =
        r_y.iter().map(|r| r.iter().map(|v| -v).collect()).collect();
    for k in 0..na {
        let col: Vec<f64> = (0..na).map(|i| chol[i * na + k]).collect();
        let plus: Vec<f64> = y.iter().zip(&col).map(|(a, b)| a + b).collect();
        let minus: Vec<f64> = y.iter().zip(&col).map(|(a, b)| a - b).collect();
        let (rp, rm) = (cubic(&plus), cubic(&minus));
        for t in 0..=steps {
            for d in 0..n {
                ddntk_term[t][d] -= 0.5 * (rp[t][d] + rm[t][d] - 2.0 * r_y[t][d]);
            }
        }
    }

    Ok((0..=steps)
        .map(|t| {
            let coefficient = (0..n)
                .map(|d| {
                    theta1_term[t][d] + variance_term[t][d] + dntk_term[t][d] + ddntk_term[t][d]
                })
                .collect();
            DatasetPoint {
                t,
                infinite: base[t].clone(),
                coefficient,
                theta1_term: theta1_term[t].clone(),
                variance_term: variance_term[t].clone(),
                dntk_term: dntk_term[t].clone(),
                ddntk_term: ddntk_term[t].clone(),
            }
        })
        .collect())
}

/// C^var: the frozen kernel H = Θ + h to second order in h, averaged with E[h_p h_q] = V_pq/n.
/// Pairs p = {a, b} with a training input; e_p is the symmetric unit matrix at p. The
/// first-order responses to e_q (q a training pair) are ε¹_q(t+1) = (1 − ηΘ_AA) ε¹_q(t) −
/// η (e_q ε⁰(t))_A; the averaged second order u = Σ_pq V_pq X_pq obeys
/// u(t+1) = (1 − ηΘ_AA) u(t) − η Σ_p (e_p w_p(t))_A on the training inputs and
/// u_β(t+1) = u_β(t) − η Θ_βA u(t) − η Σ_α w_{(βα)}(t)_α on a test input β, w_p = Σ_q V_pq ε¹_q
/// (a test row never moves a training output, so q runs over training pairs only).
fn fluctuation(
    s: &DatasetStats,
    ix: Idx,
    base: &[Vec<f64>],
    y: &[f64],
    eta: f64,
    steps: usize,
) -> Vec<Vec<f64>> {
    let (n, na) = (ix.n, ix.na);
    let train_pairs: Vec<(usize, usize)> =
        (0..na).flat_map(|a| (a..na).map(move |b| (a, b))).collect();
    // out += f · (e_{ab} v) on the training components.
    let apply = |(a, b): (usize, usize), v: &[f64], f: f64, out: &mut [f64]| {
        out[a] += f * v[b];
        if a != b {
            out[b] += f * v[a];
        }
    };
    let mut out = vec![vec![0.0; n]; steps + 1];
    let mut e1 = vec![vec![0.0; na]; train_pairs.len()];
    let mut u = vec![0.0; n];
    for t in 0..steps {
        let w = |p: (usize, usize)| -> Vec<f64> {
            let mut acc = vec![0.0; na];
            for (q, e) in train_pairs.iter().zip(&e1) {
                let v = s.ntk_cov[ix.i4(p.0, p.1, q.0, q.1)];
                for (x, &r) in acc.iter_mut().zip(e) {
                    *x += v * r;
                }
            }
            acc
        };
        let mut src = vec![0.0; na];
        for &p in &train_pairs {
            apply(p, &w(p), 1.0, &mut src);
        }
        let mut next = u.clone();
        for a in 0..na {
            let th: f64 = (0..na).map(|b| s.theta[ix.i2(a, b)] * u[b]).sum();
            next[a] = u[a] - eta * th - eta * src[a];
        }
        for b in na..n {
            let th: f64 = (0..na).map(|a| s.theta[ix.i2(b, a)] * u[a]).sum();
            let tw: f64 = (0..na).map(|a| w((b, a))[a]).sum();
            next[b] = u[b] - eta * th - eta * tw;
        }
        // ε¹_q(t+1) from ε¹_q(t) and the zeroth-order residual ε⁰(t) = m∞(t) − y.
        let eps0: Vec<f64> = (0..na).map(|a| base[t][a] - y[a]).collect();
        for (q, e) in train_pairs.iter().zip(e1.iter_mut()) {
            let mut nx = vec![0.0; na];
            for a in 0..na {
                let th: f64 = (0..na).map(|b| s.theta[ix.i2(a, b)] * e[b]).sum();
                nx[a] = e[a] - eta * th;
            }
            apply(*q, &eps0, -eta, &mut nx);
            *e = nx;
        }
        u = next;
        out[t + 1] = u.clone();
    }
    out
}

/// The trained mean at every step for a depth-2 or depth-3 network on raw inputs: what
/// `dlt theory finite-width` and `dltlab.theory.finite_width` report.
#[derive(Debug, Clone)]
pub struct FiniteWidthPrediction {
    /// The GD step η used.
    pub eta: f64,
    /// λ_max(Θ_AA).
    pub lambda_max: f64,
    /// The trajectory (training inputs first, then the test inputs).
    pub trajectory: Vec<DatasetPoint>,
}

/// The statistics of a network of `depth` 2 ([`two_layer::two_layer_stats`], from the
/// definitions, exact at every width) or ≥ 3 ([`deep::deep_stats`], the pair tensors propagated
/// layer by layer); depth < 2 is refused.
pub fn network_stats(
    act: &dyn crate::activation::Activation,
    cfg: &two_layer::StatsConfig,
    depth: usize,
) -> Result<DatasetStats, TheoryError> {
    match depth {
        2 => two_layer::two_layer_stats(act, cfg),
        d => deep::deep_stats(act, cfg, d),
    }
}

/// The Gram matrix x_a·x_b/d of `rows` (each of dimension d), N × N row-major: the only way the
/// inputs enter the statistics.
pub fn gram_matrix(rows: &[&[f64]]) -> Vec<f64> {
    let n = rows.len();
    (0..n * n)
        .map(|i| {
            let (p, q) = (rows[i / n], rows[i % n]);
            p.iter().zip(q).map(|(u, v)| u * v).sum::<f64>() / p.len().max(1) as f64
        })
        .collect()
}

/// Statistics and trajectory for N_A training inputs `x_train` (row-major, dimension `dim`)
/// with targets `y` and N_B test inputs `x_test`: the Gram matrix x_a·x_b/dim, the
/// statistics of a network of `depth` 2 or 3 ([`network_stats`]) and [`dataset_trajectory`] for
/// `steps` GD steps at η = `lr`, default 0.5/λ_max(Θ_AA).
#[allow(clippy::too_many_arguments)]
pub fn finite_width_prediction(
    act: &dyn crate::activation::Activation,
    (cw, lambda_w): (f64, f64),
    depth: usize,
    x_train: &[f64],
    y: &[f64],
    x_test: &[f64],
    dim: usize,
    steps: usize,
    lr: Option<f64>,
    nodes: usize,
) -> Result<FiniteWidthPrediction, TheoryError> {
    if dim == 0 || !x_train.len().is_multiple_of(dim) || !x_test.len().is_multiple_of(dim) {
        return Err(TheoryError::Invalid {
            flag: "--test-x",
            msg: format!("inputs must be rows of dimension {dim}"),
        });
    }
    let (na, nb) = (x_train.len() / dim, x_test.len() / dim);
    let n = na + nb;
    let rows: Vec<&[f64]> = x_train
        .chunks_exact(dim)
        .chain(x_test.chunks_exact(dim))
        .collect();
    let gram = gram_matrix(&rows);
    let stats = network_stats(
        act,
        &two_layer::StatsConfig {
            cw,
            lambda_w,
            gram,
            n_train: na,
            nodes,
        },
        depth,
    )?;
    let theta_aa = faer::Mat::<f64>::from_fn(na, na, |i, j| stats.theta[i * n + j]);
    let lambda_max = *crate::scaling::sym_eigen_seq(&theta_aa, false)
        .map_err(|e| TheoryError::Invalid {
            flag: "--train-x",
            msg: format!("eigenvalues of Θ_AA: {e:?}"),
        })?
        .0
        .last()
        .expect("N_A ≥ 1");
    let eta = lr.unwrap_or(0.5 / lambda_max);
    let trajectory = dataset_trajectory(&stats, eta, y, steps)?;
    Ok(FiniteWidthPrediction {
        eta,
        lambda_max,
        trajectory,
    })
}

#[cfg(test)]
mod tests;
