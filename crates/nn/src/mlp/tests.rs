//! Tests of the MLP kernel: gradients, R-operator HVPs and input tangents against finite
//! differences, Lanczos against a dense Hessian, both precisions, bad input.

use super::*;
use crate::optim::{Optimizer, State};

fn data(n: usize, d: usize, c: usize, seed: u64) -> (Vec<f64>, Vec<u32>) {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let x = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
    let y = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
    (x, y)
}

/// H v by Richardson-extrapolated central differences (4 D(ε/2) − D(ε))/3: O(ε⁴).
fn richardson_hvp(pt: &Point<f64>, v: &[f64], eps: f64) -> Vec<f64> {
    let (d1, d2) = (pt.hvp_fd(v, eps), pt.hvp_fd(v, eps / 2.0));
    d1.iter()
        .zip(&d2)
        .map(|(a, b)| (4.0 * b - a) / 3.0)
        .collect()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn gradient_matches_finite_differences() {
    let m = Mlp::new(vec![6, 8, 7, 4], ActKind::Tanh).unwrap();
    let th = m.init(1);
    let (x, y) = data(10, 6, 4, 2);
    let b = Batch::labels(&x, &y);
    let pt = m.at(&th, b).unwrap();
    let (l, acc) = m.evaluate(&th, b).unwrap();
    assert!((l - pt.loss).abs() < 1e-14 * l && acc == pt.accuracy);
    let g = pt.grad().to_vec();
    let h = 1e-5;
    for i in (0..th.len()).step_by(7) {
        let mut tp = th.clone();
        tp[i] += h;
        let mut tm = th.clone();
        tm[i] -= h;
        let fd = (m.evaluate(&tp, b).unwrap().0 - m.evaluate(&tm, b).unwrap().0) / (2.0 * h);
        // Central difference: truncation O(h²|L‴|) ≈ 1e-10, rounding 1e-16/h ≈ 1e-11.
        assert!((fd - g[i]).abs() < 1e-8, "param {i}: fd {fd} vs {}", g[i]);
    }
}

#[test]
fn r_op_hvp_matches_richardson_differences_and_is_symmetric() {
    for act in [ActKind::Tanh, ActKind::Relu] {
        let m = Mlp::new(vec![5, 9, 6, 3], act).unwrap();
        let th = m.init(3);
        let (x, y) = data(12, 5, 3, 4);
        let pt = m.at(&th, Batch::labels(&x, &y)).unwrap();
        let p = m.num_params();
        let u = crate::mlp::tests::data(p, 1, 2, 9).0;
        let v = crate::mlp::tests::data(p, 1, 2, 10).0;
        let (mut hu, mut hv) = (vec![0.0; p], vec![0.0; p]);
        pt.hvp(&u, &mut hu);
        pt.hvp(&v, &mut hv);
        // Richardson-extrapolated central differences: truncation O(ε⁴) ≈ 1e-12 at
        // ε = 1e-3 for tanh; a ReLU network's loss is smooth between kinks, so at ε = 1e-6
        // (no pre-activation changes sign for this seed) truncation is ≈ 1e-12 and
        // rounding ≈ 1e-16/ε = 1e-10.
        let eps = if act == ActKind::Tanh { 1e-3 } else { 1e-6 };
        let rich = richardson_hvp(&pt, &v, eps);
        let e = rel(&hv, &rich);
        assert!(e < 1e-8, "{act:?}: R-op vs differences {e:e}");
        // uᵀHv = vᵀHu to rounding.
        let (a, b): (f64, f64) = (
            u.iter().zip(&hv).map(|(x, y)| x * y).sum(),
            v.iter().zip(&hu).map(|(x, y)| x * y).sum(),
        );
        assert!(
            (a - b).abs() < 1e-12 * a.abs().max(1.0),
            "{act:?}: {a} vs {b}"
        );
    }
}

#[test]
fn lanczos_on_r_op_hvps_matches_the_dense_hessian() {
    // docs/derivations/hessian.md#lanczos: a small trained model (P = 327), top-10 Lanczos pairs vs a dense
    // eigendecomposition of the Hessian built column by column from the same HVPs.
    use dlt_theory::spectral::{lanczos_top, subspace_overlap};
    let m = Mlp::new(vec![8, 16, 6, 5], ActKind::Tanh).unwrap();
    let (x, y) = data(200, 8, 5, 11);
    let b = Batch::labels(&x, &y);
    let mut th = m.init(12);
    let mut st = State::default();
    for _ in 0..300 {
        let g = m.at(&th, b).unwrap().grad().to_vec();
        st.step(Optimizer::Sgd, &mut th, &g, 0.2);
    }
    let pt = m.at(&th, b).unwrap();
    let p = pt.dim();
    let mut h = faer::Mat::<f64>::zeros(p, p);
    let (mut e, mut col) = (vec![0.0; p], vec![0.0; p]);
    for j in 0..p {
        e[j] = 1.0;
        pt.hvp(&e, &mut col);
        e[j] = 0.0;
        for i in 0..p {
            h[(i, j)] = col[i];
        }
    }
    let asym = (0..p)
        .flat_map(|i| (0..p).map(move |j| (i, j)))
        .map(|(i, j)| (h[(i, j)] - h[(j, i)]).abs())
        .fold(0.0, f64::max);
    let scale = (0..p).map(|i| h[(i, i)].abs()).fold(0.0, f64::max);
    assert!(asym < 1e-12 * scale, "dense Hessian asymmetric by {asym:e}");
    let evd = h.self_adjoint_eigen(faer::Side::Lower).unwrap();
    let dense: Vec<f64> = (0..10).map(|i| evd.S()[p - 1 - i]).collect();
    let dense_vecs: Vec<Vec<f64>> = (0..10)
        .map(|i| (0..p).map(|r| evd.U()[(r, p - 1 - i)]).collect())
        .collect();
    // 120 steps on P = 327: the top 10 converge to rounding (checked by the residuals).
    let top = lanczos_top(p, 120, 10, 3, |v, o| pt.hvp(v, o)).unwrap();
    for i in 0..10 {
        let rel = (top.values[i] - dense[i]).abs() / dense[0].abs();
        assert!(rel < 1e-6, "λ{i}: {} vs {}", top.values[i], dense[i]);
    }
    // Projectors: |P − P'|²_F = 2k − 2k·overlap.
    let dp = (20.0 - 20.0 * subspace_overlap(&top.vectors, &dense_vecs))
        .max(0.0)
        .sqrt();
    assert!(dp < 1e-4, "projector distance {dp:e}");
}

#[test]
fn jacobian_penalty_gradient_is_exact() {
    // Σ_b |J_bᵀ v_b|² as a function of θ: its directional derivative along w by central
    // differences (tanh, f64, step 1e-5: truncation ≈ 1e-10, rounding ≈ 1e-11) against
    // w · 2 input_tangent_grad(u); and input_grad against differences in x.
    let m = Mlp::new(vec![6, 9, 7, 4], ActKind::Tanh).unwrap();
    let th = m.init(21);
    let (x, _) = data(5, 6, 4, 22);
    let (v, _) = data(5, 4, 4, 23);
    let pen = |t: &[f64]| -> f64 {
        let u = m
            .at(
                t,
                Batch {
                    x: &x,
                    y: Targets::Seeds(&v),
                    n: 5,
                },
            )
            .unwrap()
            .input_grad();
        u.iter().map(|a| a * a).sum()
    };
    let pt = m
        .at(
            &th,
            Batch {
                x: &x,
                y: Targets::Seeds(&v),
                n: 5,
            },
        )
        .unwrap();
    let u = pt.input_grad();
    let mut g = vec![0.0; th.len()];
    pt.input_tangent_grad(&u, &mut g);
    let dir = data(th.len(), 1, 2, 24).0;
    let h = 1e-5;
    let shift = |s: f64| {
        th.iter()
            .zip(&dir)
            .map(|(a, b)| a + s * b)
            .collect::<Vec<_>>()
    };
    let fd = (pen(&shift(h)) - pen(&shift(-h))) / (2.0 * h);
    let exact: f64 = 2.0 * g.iter().zip(&dir).map(|(a, b)| a * b).sum::<f64>();
    assert!((fd - exact).abs() < 1e-7 * exact.abs(), "{fd} vs {exact}");
    // u_b = J_bᵀ v_b: the derivative of v_b·z_b along x.
    let phi = |xx: &[f64]| {
        m.evaluate(
            &th,
            Batch {
                x: xx,
                y: Targets::Seeds(&v),
                n: 5,
            },
        )
        .unwrap()
        .0
    };
    for i in [0, 7, 29] {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += h;
        xm[i] -= h;
        let d = (phi(&xp) - phi(&xm)) / (2.0 * h);
        assert!((d - u[i]).abs() < 1e-8, "input {i}: {d} vs {}", u[i]);
    }
    // The parameter gradient of φ is the summed VJP in θ (no 1/n).
    assert!((pt.loss - phi(&x)).abs() < 1e-12);
}

#[test]
fn autoencoder_has_a_linear_latent_and_exact_second_order() {
    let m = Mlp::autoencoder(3, &[8], 2, ActKind::Tanh).unwrap();
    assert_eq!(m.widths, vec![3, 8, 2, 8, 3]);
    let th = m.init(31);
    let (x, _) = data(6, 3, 2, 32);
    // The latent layer is linear: scaling W₂, b₂ scales the code.
    let code = m.encode(&th, &x).unwrap();
    let lay = m.layout();
    let (w2, b2) = (lay.entry(2).range(), lay.entry(3).range());
    let mut t2 = th.clone();
    t2[w2.start..b2.end].iter_mut().for_each(|v| *v *= 3.0);
    let code2 = m.encode(&t2, &x).unwrap();
    assert!(code
        .iter()
        .zip(&code2)
        .all(|(a, b)| (3.0 * a - b).abs() < 1e-12));
    // Gradient and HVP of the reconstruction loss against differences.
    let b = Batch::values(&x, &x, 3);
    let pt = m.at(&th, b).unwrap();
    let v = data(th.len(), 1, 2, 33).0;
    let mut hv = vec![0.0; th.len()];
    pt.hvp(&v, &mut hv);
    let rich = richardson_hvp(&pt, &v, 1e-3);
    assert!(rel(&hv, &rich) < 1e-8, "{:e}", rel(&hv, &rich));
    assert!(Mlp::new(vec![2, 2], ActKind::Tanh)
        .unwrap()
        .encode(&[0.0; 6], &[0.0; 2])
        .is_err());
}

#[test]
fn single_and_double_precision_agree_and_a_reused_workspace_changes_nothing() {
    // One kernel in both precisions: loss and gradient agree to a relative 1e-5 (f32's
    // ε ≈ 6e-8 times sums of ≈ 20–100 terms, and tanh_f32's ≈ 1 ulp).
    let m = Mlp::new(vec![6, 16, 8, 4], ActKind::Tanh).unwrap();
    let th = m.init(41);
    let (x, y) = data(20, 6, 4, 42);
    let p64 = m.at(&th, Batch::labels(&x, &y)).unwrap();
    let th32: Vec<f32> = th.iter().map(|&v| v as f32).collect();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let p32 = m.at(&th32, Batch::labels(&x32, &y)).unwrap();
    assert!(
        (p32.loss - p64.loss).abs() < 1e-5 * p64.loss,
        "{} vs {}",
        p32.loss,
        p64.loss
    );
    let g32: Vec<f64> = p32.grad().iter().map(|&v| v as f64).collect();
    assert!(rel(&g32, p64.grad()) < 1e-5, "{:e}", rel(&g32, p64.grad()));
    let first = p32.grad().to_vec();
    let ws = p32.into_workspace();
    let again = m
        .at_with(&th32, Batch::labels(&x32, &y), ws, false)
        .unwrap();
    assert_eq!(again.grad(), &first[..]);
}

#[test]
fn bad_inputs_are_refused() {
    assert!(Mlp::new(vec![3], ActKind::Relu).is_err());
    assert!(Mlp::new(vec![3, 0], ActKind::Relu).is_err());
    let m = Mlp::new(vec![2, 3, 2], ActKind::Relu).unwrap();
    let th = m.init(0);
    assert!(m.at(&th[1..], Batch::labels(&[0.0; 2], &[0])).is_err());
    assert!(m.at(&th, Batch::labels(&[0.0; 3], &[0])).is_err());
    assert!(m.at(&th, Batch::labels(&[0.0; 2], &[2])).is_err());
    assert!(m.at(&th, Batch::values(&[0.0; 2], &[0.0; 3], 2)).is_err());
    assert!(m.at(&th, Batch::values(&[0.0; 2], &[0.0; 2], 2)).is_ok());
    assert!(Mlp::new(vec![2, 2], ActKind::Gelu).is_err());
}

#[test]
fn squared_error_gradient_and_hvp_match_differences() {
    // ½|z − y|² with two real outputs: gradient vs central differences of the loss, R-op
    // vs Richardson differences of the gradient (truncation O(ε⁴) ≈ 1e-12 at ε = 1e-3).
    let m = Mlp::new(vec![4, 7, 2], ActKind::Tanh).unwrap();
    let th = m.init(8);
    let (x, _) = data(9, 4, 2, 3);
    let (t, _) = data(9, 2, 2, 4);
    let b = Batch::values(&x, &t, 2);
    let pt = m.at(&th, b).unwrap();
    assert!(pt.accuracy.is_nan());
    assert!((m.evaluate(&th, b).unwrap().0 - pt.loss).abs() < 1e-14 * pt.loss);
    let h = 1e-5;
    for i in (0..th.len()).step_by(5) {
        let (mut tp, mut tm) = (th.clone(), th.clone());
        tp[i] += h;
        tm[i] -= h;
        let fd = (m.evaluate(&tp, b).unwrap().0 - m.evaluate(&tm, b).unwrap().0) / (2.0 * h);
        assert!((fd - pt.grad()[i]).abs() < 1e-8, "param {i}");
    }
    let v = data(th.len(), 1, 2, 5).0;
    let mut hv = vec![0.0; th.len()];
    pt.hvp(&v, &mut hv);
    let rich = richardson_hvp(&pt, &v, 1e-3);
    assert!(rel(&hv, &rich) < 1e-8, "{:e}", rel(&hv, &rich));
}

#[test]
fn optimisers_decrease_the_loss() {
    let m = Mlp::new(vec![4, 16, 3], ActKind::Tanh).unwrap();
    let (x, y) = data(64, 4, 3, 5);
    let b = Batch::labels(&x, &y);
    for (opt, lr) in [
        (Optimizer::Sgd, 0.5),
        (Optimizer::Momentum { beta: 0.9 }, 0.05),
        (Optimizer::ADAM, 1e-2),
    ] {
        let mut th = m.init(6);
        let l0 = m.evaluate(&th, b).unwrap().0;
        let mut st = State::default();
        for _ in 0..200 {
            let g = m.at(&th, b).unwrap().grad().to_vec();
            st.step(opt, &mut th, &g, lr);
        }
        let l1 = m.evaluate(&th, b).unwrap().0;
        assert!(l1 < 0.7 * l0, "{opt:?}: {l0} -> {l1}");
    }
}

#[test]
fn dropout_gradient_matches_differences_at_fixed_masks_and_p0_is_the_plain_pass() {
    for act in [ActKind::Tanh, ActKind::Relu] {
        let m = Mlp::new(vec![6, 9, 7, 4], act).unwrap();
        // Non-zero biases: with b = 0 a row whose hidden units are all dropped has h = 0
        // exactly in the next layer, a ReLU kink that a bias difference would straddle.
        let th: Vec<f64> = m
            .init(5)
            .iter()
            .zip(data(m.num_params(), 1, 2, 7).0)
            .map(|(t, e)| t + 0.1 * e)
            .collect();
        let (x, y) = data(12, 6, 4, 6);
        let b = Batch::labels(&x, &y);
        let d = Dropout { p: 0.4, seed: 3 };
        let pt = m.at_dropout(&th, b, d).unwrap();
        // p = 0 draws masks of 1 only: the plain forward and backward pass, bit for bit.
        let p0 = m.at_dropout(&th, b, Dropout { p: 0.0, seed: 3 }).unwrap();
        let plain = m.at(&th, b).unwrap();
        assert_eq!(p0.grad(), plain.grad());
        // Masks drop units: the loss differs from the plain one (fails if p is ignored).
        assert!(
            (pt.loss - plain.loss).abs() > 1e-6,
            "{} {}",
            pt.loss,
            plain.loss
        );
        let g = pt.grad().to_vec();
        let h = 1e-5;
        for i in (0..th.len()).step_by(5) {
            let (mut tp, mut tm) = (th.clone(), th.clone());
            tp[i] += h;
            tm[i] -= h;
            let l = |t: &[f64]| m.at_dropout(t, b, d).unwrap().loss;
            let fd = (l(&tp) - l(&tm)) / (2.0 * h);
            // Same masks at θ ± h (same seed and shape): the masked loss is smooth for tanh
            // (central-difference truncation O(h²) ≈ 1e-10, rounding 1e-16/h ≈ 1e-11) and
            // piecewise linear in each weight for ReLU (exact unless a unit flips within ±h).
            assert!(
                (fd - g[i]).abs() < 1e-8,
                "{act:?} param {i}: fd {fd} vs {}",
                g[i]
            );
        }
    }
}

#[test]
fn logits_and_vjp_equal_the_seeded_backward_pass() {
    for act in [ActKind::Tanh, ActKind::Relu] {
        let m = Mlp::new(vec![7, 9, 6, 4], act).unwrap();
        let th = m.init(8);
        let (x, _) = data(5, 7, 4, 9);
        let v = data(5 * 4, 1, 2, 10).0;
        let (z, g) = m.logits_and_vjp(&th, &x, |_| v.clone()).unwrap();
        let pt = m
            .at(
                &th,
                Batch {
                    x: &x,
                    y: Targets::Seeds(&v),
                    n: 5,
                },
            )
            .unwrap();
        // The same products in the same order up to GEMM blocking: equal to rounding.
        assert!(rel(&g, &pt.input_grad()) < 1e-13);
        assert!(rel(&z, &m.logits(&th, &x).unwrap()) < 1e-14);
        assert!(m.logits_and_vjp(&th, &x, |_| vec![0.0; 3]).is_err());
    }
}
