//! Random-feature regression on a *nonlinear* teacher: the setting in which the paper's
//! statement that nonlinear feature maps extend the power law past the latent dimension M
//! (Maloney, Roberts, Sully, arXiv 2210.16859, abstract and §5) shows up in the loss
//! (docs/derivations/scaling.md#nonlinear-teacher).
//!
//! With the paper's linear teacher y = w·x, linear features with N ≥ M and P ≥ M fit the target
//! exactly, so a nonlinear student can only lose past M. A target with power beyond the M linear
//! modes is needed: here a wide random-feature network of the same latent data,
//! y(x) = Σ_{k=1}^{K} v_k [σ_T(u_k·x) − E σ_T(u_k·x)], v_k ~ N(0, 1/K), u_k ~ N(0, σ_u²/M · I)
//! (centred exactly: E ReLU(z) = √(q/2π) for z ~ N(0, q), E tanh(z) = 0). Linear features can
//! only capture its linear part (rank ≤ M), so their loss stops falling at N = M; nonlinear
//! features keep resolving the extended spectrum.
//!
//! The students of one seed share the data, the teacher and the projection U (N_max × M): the
//! N-feature model uses the first N rows of U (nested features, common random numbers), so the
//! Gram matrix is formed once per student map and each N solves its leading block.

use crate::scaling::{cholesky_seq, cholesky_solve_seq, Features, ScalingModel, SimPoint};
use crate::TheoryError;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// The nonlinear-teacher setting. The latent data and the projections are those of `model`
/// (α, M, λ₊, σ_u²); σ_w² and σ_ε are not used (the teacher is the random network below).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TeacherSetting {
    /// Latent data and projection variance.
    pub model: ScalingModel,
    /// The teacher's nonlinearity σ_T.
    pub teacher: Features,
    /// The teacher's width K.
    pub teacher_width: usize,
    /// Training samples P.
    pub p: usize,
    /// Held-out samples for the test loss.
    pub test: usize,
    /// Ridge relative to the mean diagonal of the Gram matrix, γ = ridge_rel · tr(G_N)/N (a
    /// numerical floor for the near-ridgeless fit).
    pub ridge_rel: f64,
}

/// One student map's relative test loss L/Var(y) against N, over seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudentCurve {
    /// The student's feature map.
    pub features: Features,
    /// Feature counts N.
    pub ns: Vec<usize>,
    /// Per N: the mean over seeds of the held-out MSE divided by the held-out target variance.
    pub points: Vec<SimPoint>,
}

fn normal_mat(rows: usize, cols: usize, sd: &[f64], rng: &mut Xoshiro256PlusPlus) -> Mat<f64> {
    crate::scaling::normal_mat(rows, cols, |_, j| sd[j], rng)
}

fn act(f: Features, v: f64) -> f64 {
    match f {
        Features::Linear => v,
        Features::Relu => v.max(0.0),
        Features::Tanh => v.tanh(),
    }
}

/// The feature matrix σ(A Bᵀ) for inputs A (rows × M) and projections B (n × M), sequential.
pub fn features(a: &Mat<f64>, b: &Mat<f64>, f: Features) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(a.nrows(), b.nrows());
    matmul(
        out.as_mut(),
        Accum::Replace,
        a.as_ref(),
        b.transpose(),
        1.0,
        Par::Seq,
    );
    if f != Features::Linear {
        for j in 0..out.ncols() {
            for v in out.col_as_slice_mut(j) {
                *v = act(f, *v);
            }
        }
    }
    out
}

/// Check the setting; the error names the flag.
fn validate(
    s: &TeacherSetting,
    students: &[Features],
    ns: &[usize],
    seeds: usize,
) -> Result<(), TheoryError> {
    s.model.validate()?;
    let bad = |flag, msg: String| Err(TheoryError::Invalid { flag, msg });
    if s.teacher == Features::Linear {
        return bad("--teacher", "the teacher must be nonlinear (relu or tanh): a linear teacher is the paper's base model".into());
    }
    if students.is_empty() || ns.is_empty() || seeds == 0 {
        return bad(
            "--nonlinear-ns",
            "need at least one student, one N and one seed".into(),
        );
    }
    let nmax = *ns.iter().max().unwrap_or(&0);
    if ns.contains(&0) || nmax >= s.p {
        return bad("--nonlinear-ns", format!("every N must be ≥ 1 and below P = {} (the large-P side of the curve), got up to {nmax}", s.p));
    }
    if s.test < 2 || s.teacher_width < 1 {
        return bad(
            "--nonlinear-test",
            "need ≥ 2 held-out samples and a teacher width ≥ 1".into(),
        );
    }
    if !(s.ridge_rel > 0.0) || !s.ridge_rel.is_finite() {
        return bad(
            "--ridge",
            format!(
                "the relative ridge must be finite and > 0, got {}",
                s.ridge_rel
            ),
        );
    }
    Ok(())
}

/// One seed: the relative test loss of every student at every N (students × ns).
fn one_seed(
    s: &TeacherSetting,
    students: &[Features],
    ns: &[usize],
    seed: u64,
) -> Result<Vec<Vec<f64>>, TheoryError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let md = &s.model;
    let m = md.m;
    let lam = md.spectrum();
    let sx: Vec<f64> = lam.iter().map(|l| l.sqrt()).collect();
    let su = vec![(md.sigma_u2 / m as f64).sqrt(); m];
    let k = s.teacher_width;
    let nmax = *ns.iter().max().expect("validated");
    let ut = normal_mat(k, m, &su, &mut rng);
    let v: Vec<f64> = (0..k)
        .map(|_| rng.sample::<f64, _>(StandardNormal) / (k as f64).sqrt())
        .collect();
    // E σ_T(u_k·x): √(q_k/2π) for ReLU (q_k = Σ_I u_kI² λ_I), 0 for tanh (odd).
    let mean: Vec<f64> = (0..k)
        .map(|i| match s.teacher {
            Features::Relu => {
                let q: f64 = (0..m).map(|j| ut[(i, j)].powi(2) * lam[j]).sum();
                (q / (2.0 * std::f64::consts::PI)).sqrt()
            }
            _ => 0.0,
        })
        .collect();
    let us = normal_mat(nmax, m, &su, &mut rng);
    let x = normal_mat(s.p, m, &sx, &mut rng);
    let xt = normal_mat(s.test, m, &sx, &mut rng);
    let target = |xx: &Mat<f64>| -> Vec<f64> {
        let h = features(xx, &ut, s.teacher);
        (0..xx.nrows())
            .map(|i| (0..k).map(|j| v[j] * (h[(i, j)] - mean[j])).sum())
            .collect()
    };
    let (y, yt) = (target(&x), target(&xt));
    let y = Mat::<f64>::from_fn(s.p, 1, |i, _| y[i]);
    let yt = Mat::<f64>::from_fn(s.test, 1, |i, _| yt[i]);
    students
        .iter()
        .map(|&f| {
            nested_ridge_losses(
                &features(&x, &us, f),
                &y,
                &features(&xt, &us, f),
                &yt,
                ns,
                s.ridge_rel,
            )
        })
        .collect()
}

/// Held-out loss of nested ridge fits, relative to the held-out target power: for each N in
/// `ns`, θ_N = (G_N + γ_N I)⁻¹ B_N with G = ΦᵀΦ and B = ΦᵀY restricted to the first N features
/// (γ_N = `ridge_rel`·tr(G_N)/N), and the value Σ‖Φ_t,N θ_N − Y_t‖² / Σ‖Y_t‖² (all outputs).
/// Φ is P × N_max, Y is P × outputs; Φ_t, Y_t the held-out counterparts. Sequential (the
/// caller parallelises over seeds).
pub fn nested_ridge_losses(
    phi: &Mat<f64>,
    y: &Mat<f64>,
    phit: &Mat<f64>,
    yt: &Mat<f64>,
    ns: &[usize],
    ridge_rel: f64,
) -> Result<Vec<f64>, TheoryError> {
    let nmax = phi.ncols();
    let g = gram(phi, 1.0);
    let mut b = Mat::<f64>::zeros(nmax, y.ncols());
    matmul(
        b.as_mut(),
        Accum::Replace,
        phi.transpose(),
        y.as_ref(),
        1.0,
        Par::Seq,
    );
    let power: f64 = (0..yt.ncols())
        .map(|j| (0..yt.nrows()).map(|i| yt[(i, j)].powi(2)).sum::<f64>())
        .sum();
    let mut row = vec![];
    for &n in ns {
        if n == 0 || n > nmax {
            return Err(TheoryError::Invalid {
                flag: "--nonlinear-ns",
                msg: format!("N = {n} is outside 1…{nmax}"),
            });
        }
        let tr: f64 = (0..n).map(|i| g[(i, i)]).sum::<f64>() / n as f64;
        let mut a = g.as_ref().submatrix(0, 0, n, n).to_owned();
        for i in 0..n {
            a[(i, i)] += ridge_rel * tr;
        }
        let l = cholesky_seq(&a).ok_or_else(|| TheoryError::Invalid {
            flag: "--ridge",
            msg: format!("the {n}×{n} Gram matrix of the features is not positive definite at this ridge; use a larger ridge"),
        })?;
        let theta = cholesky_solve_seq(&l, &b.as_ref().subrows(0, n).to_owned());
        let mut pred = Mat::<f64>::zeros(yt.nrows(), yt.ncols());
        matmul(
            pred.as_mut(),
            Accum::Replace,
            phit.as_ref().subcols(0, n),
            theta.as_ref(),
            1.0,
            Par::Seq,
        );
        let err: f64 = (0..yt.ncols())
            .map(|j| {
                (0..yt.nrows())
                    .map(|i| (pred[(i, j)] - yt[(i, j)]).powi(2))
                    .sum::<f64>()
            })
            .sum();
        row.push(err / power);
    }
    Ok(row)
}

/// c·ΦᵀΦ (N × N) for features Φ (rows × N), sequential: with c = 1/rows the second-moment
/// matrix of the features.
pub fn gram(phi: &Mat<f64>, c: f64) -> Mat<f64> {
    let n = phi.ncols();
    let mut g = Mat::<f64>::zeros(n, n);
    matmul(
        g.as_mut(),
        Accum::Replace,
        phi.transpose(),
        phi.as_ref(),
        c,
        Par::Seq,
    );
    g
}

/// The eigenvalues of the symmetric matrix `a` (lower triangle read), in decreasing order
/// (sequential faer decomposition: the same digits whatever the thread count).
pub fn eigenvalues_desc(a: &Mat<f64>) -> Result<Vec<f64>, TheoryError> {
    let mut ev = crate::scaling::sym_eigen_seq(a, false)
        .map_err(|_| TheoryError::Invalid {
            flag: "--n",
            msg: "eigendecomposition did not converge".into(),
        })?
        .0;
    ev.sort_by(|a, b| b.total_cmp(a));
    Ok(ev)
}

/// The relative test loss L(N)/Var(y) of each student map against N on the nonlinear teacher,
/// over `seeds` seeds (seed, seed + 1, …; one rayon task per seed, each seed's arithmetic
/// sequential, so the numbers do not depend on the thread count).
pub fn teacher_curves(
    s: &TeacherSetting,
    students: &[Features],
    ns: &[usize],
    seeds: usize,
    seed: u64,
) -> Result<Vec<StudentCurve>, TheoryError> {
    validate(s, students, ns, seeds)?;
    use rayon::prelude::*;
    let per_seed: Vec<Vec<Vec<f64>>> = (0..seeds)
        .into_par_iter()
        .map(|i| one_seed(s, students, ns, seed.wrapping_add(i as u64)))
        .collect::<Result<_, _>>()?;
    Ok(students
        .iter()
        .enumerate()
        .map(|(si, &f)| StudentCurve {
            features: f,
            ns: ns.to_vec(),
            points: (0..ns.len())
                .map(|ni| SimPoint::from_losses(per_seed.iter().map(|r| r[si][ni]).collect()))
                .collect(),
        })
        .collect())
}

/// Mean and standard error over seeds of ln(a/b), seed by seed (paired: the students of a seed
/// share the data and the teacher, whose draw moves both losses together).
pub fn paired_log_ratio(a: &SimPoint, b: &SimPoint) -> (f64, f64) {
    let d: Vec<f64> = a
        .losses
        .iter()
        .zip(&b.losses)
        .map(|(x, y)| (x / y).ln())
        .collect();
    let p = SimPoint::from_losses(d);
    (p.loss, p.loss_se)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting() -> TeacherSetting {
        let mut model = ScalingModel::new(1.0, 16);
        // Preactivation variance q = σ_u² Σλ/M = 1 (tanh genuinely nonlinear).
        model.sigma_u2 = 16.0 / model.spectrum().iter().sum::<f64>();
        TeacherSetting {
            model,
            teacher: Features::Relu,
            teacher_width: 512,
            p: 2048,
            test: 1024,
            ridge_rel: 1e-9,
        }
    }

    #[test]
    fn linear_students_stop_at_m_and_relu_students_do_not() {
        // Past N = M linear features span the latent space: every N ≥ M gives the same
        // predictions (OLS on x), so their loss is N-independent up to the relative ridge
        // (1e-9: a 1e-6 tolerance is loose). ReLU students on the ReLU teacher keep improving:
        // at N = 8M their loss is below the linear plateau by far more than the seeds' spread.
        // The plateau itself varies by 4× between teacher draws (0.15–0.56 relative), so the
        // comparison is paired per seed: ln(L_lin/L_relu) measured 1.75 ± 0.07; 5 SE demanded.
        let s = setting();
        let c = teacher_curves(
            &s,
            &[Features::Linear, Features::Relu],
            &[16, 32, 128],
            4,
            3,
        )
        .unwrap();
        let lin = &c[0].points;
        for (a, b) in lin[0].losses.iter().zip(&lin[2].losses) {
            assert!((a / b - 1.0).abs() < 1e-6, "{a} {b}");
        }
        let relu = &c[1].points;
        let (r, se) = paired_log_ratio(&lin[2], &relu[2]);
        assert!(r > 5.0 * se && r > 0.0, "log ratio {r} ± {se}");
        // Same seed, same numbers.
        let d = teacher_curves(&s, &[Features::Linear], &[16, 32, 128], 2, 3).unwrap();
        assert_eq!(d[0].points[0].losses[..2], lin[0].losses[..2]);
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let mut s = setting();
        let e = teacher_curves(&s, &[Features::Relu], &[4096], 1, 0).unwrap_err();
        assert!(e.to_string().contains("--nonlinear-ns"), "{e}");
        s.teacher = Features::Linear;
        let e = teacher_curves(&s, &[Features::Relu], &[8], 1, 0).unwrap_err();
        assert!(e.to_string().contains("--teacher"), "{e}");
    }
}
