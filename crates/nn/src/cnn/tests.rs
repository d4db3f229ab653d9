//! Tests of the CNN kernel: the convolution against its defining sum, the adjoints, the
//! gradient, R-operator HVPs and the Jacobian-penalty gradient against finite differences,
//! Lanczos against a dense Hessian, bad input.

use super::ops::{Conv, Pool};
use super::*;

fn normal(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

fn labels(n: usize, c: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..c as u32)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    (num / dot(b, b)).sqrt()
}

/// A tiny net: 8×8×2 input, conv 3×3 (3, pad 1) → σ → pool → conv 3×3 (4) → σ → pool →
/// 4 → 5 → σ → 3 (P = 54 + 3 + 108 + 4 + 20 + 5 + 15 + 3 = 212).
fn tiny(act: ActKind) -> Cnn {
    Cnn::new(
        [8, 8, 2],
        vec![
            ConvSpec {
                channels: 3,
                kernel: 3,
                pad: 1,
            },
            ConvSpec {
                channels: 4,
                kernel: 3,
                pad: 0,
            },
        ],
        vec![5, 3],
        act,
    )
    .unwrap()
}

/// θ with non-zero biases (LeCun init plus a small perturbation: no exact zeros at ReLU kinks).
fn theta(m: &Cnn, seed: u64) -> Vec<f64> {
    m.init(seed)
        .iter()
        .zip(normal(m.num_params(), seed + 100))
        .map(|(t, e)| t + 0.1 * e)
        .collect()
}

/// H v by Richardson-extrapolated central differences (4 D(ε/2) − D(ε))/3: O(ε⁴).
fn richardson_hvp(pt: &CnnPoint<f64>, v: &[f64], eps: f64) -> Vec<f64> {
    let (d1, d2) = (pt.hvp_fd(v, eps), pt.hvp_fd(v, eps / 2.0));
    d1.iter()
        .zip(&d2)
        .map(|(a, b)| (4.0 * b - a) / 3.0)
        .collect()
}

#[test]
fn shapes_and_parameter_count_match_lenet5() {
    assert_eq!(tiny(ActKind::Tanh).num_params(), 212);
    // LeNet-5: 6·25 + 6 + 16·150 + 16 + 120·400 + 120 + 84·120 + 84 + 10·84 + 10.
    let l = Cnn::lenet([6, 16], &[120, 84], 10, ActKind::Tanh).unwrap();
    assert_eq!(l.num_params(), 61_706);
    assert_eq!(l.input_len(), 784);
    assert_eq!(l.layout().find("f1.w").unwrap().shape, vec![120, 400]);
    assert_eq!(
        l.describe(),
        "28x28x1 c5x5x6p2-pool c5x5x16-pool 120-84-10 tanh"
    );
}

#[test]
fn im2col_convolution_equals_the_defining_sum_and_adjoints_are_exact() {
    // y[i,j,o] = Σ_{a,b,c} W[o,a,b,c] x[i+a−p, j+b−p, c] summed directly, for pad 0, 1, 2
    // and a non-square input, on 2 examples (one im2col block) and on 37 (two full blocks of
    // 16 and a partial one, run in parallel).
    for (pad, n) in [(0, 2), (2, 2), (1, 37), (2, 37)] {
        let cv = Conv::new(6, 7, 2, 3, 3, pad);
        let x = normal(n * 6 * 7 * 2, 1);
        let w = normal(3 * 3 * 3 * 2, 2);
        let mut y = vec![0.0; n * cv.ho * cv.wo * 3];
        cv.forward(&x, n, &w, &mut y);
        for e in 0..n {
            for i in 0..cv.ho {
                for j in 0..cv.wo {
                    for o in 0..3 {
                        let mut s = 0.0;
                        for a in 0..3 {
                            for b in 0..3 {
                                let (r, q) = (i + a, j + b);
                                if r < pad || q < pad || r - pad >= 6 || q - pad >= 7 {
                                    continue;
                                }
                                for c in 0..2 {
                                    s += w[((o * 3 + a) * 3 + b) * 2 + c]
                                        * x[e * 84 + ((r - pad) * 7 + q - pad) * 2 + c];
                                }
                            }
                        }
                        let got = y[((e * cv.ho + i) * cv.wo + j) * 3 + o];
                        // Same products, different summation order: rounding ≈ 1e-15.
                        assert!((got - s).abs() < 1e-12, "pad {pad}: {got} vs {s}");
                    }
                }
            }
        }
        // ⟨A x, g⟩ = ⟨x, Aᵀ g⟩ (col2im is im2col's adjoint) and ⟨∂W, W'⟩ = ⟨g, A_{W'} x⟩.
        let g = normal(y.len(), 3);
        let mut gx = vec![0.0; x.len()];
        cv.input_grad(&g, &w, n, &mut gx);
        assert!((dot(&y, &g) - dot(&x, &gx)).abs() < 1e-12 * dot(&y, &g).abs().max(1.0));
        let w2 = normal(w.len(), 4);
        let mut gw = vec![0.0; w.len()];
        cv.weight_grad(&x, &g, n, &mut gw);
        let mut y2 = vec![0.0; y.len()];
        cv.forward(&x, n, &w2, &mut y2);
        assert!((dot(&gw, &w2) - dot(&y2, &g)).abs() < 1e-12 * dot(&y2, &g).abs().max(1.0));
    }
    // Pooling: a map constant on each 2×2 block pools to that constant; ⟨Px, g⟩ = ⟨x, Pᵀg⟩.
    let pl = Pool { h: 4, w: 6, c: 2 };
    let x: Vec<f64> = (0..48)
        .map(|k| {
            let (pix, c) = (k / 2, k % 2);
            let (i, j) = (pix / 6, pix % 6);
            (10 * (i / 2) + j / 2) as f64 + 0.5 * c as f64
        })
        .collect();
    let mut y = vec![0.0; 12];
    pl.forward(&x, 1, &mut y);
    assert_eq!(y[(3 + 2) * 2 + 1], 12.5, "block (1, 2), channel 1");
    let g = normal(12, 5);
    let mut gx = vec![0.0; 48];
    pl.input_grad(&g, 1, &mut gx);
    assert!((dot(&y, &g) - dot(&x, &gx)).abs() < 1e-12);
}

#[test]
fn gradient_matches_finite_differences() {
    for act in [ActKind::Tanh, ActKind::Relu] {
        let m = tiny(act);
        let th = theta(&m, 1);
        let x = normal(6 * m.input_len(), 2);
        let y = labels(6, 3, 3);
        let b = Batch::labels(&x, &y);
        let pt = m.at(&th, b).unwrap();
        let (l, acc) = m.evaluate(&th, b).unwrap();
        assert!((l - pt.loss).abs() < 1e-14 * l && acc == pt.accuracy);
        let h = 1e-6;
        for i in 0..th.len() {
            let (mut tp, mut tm) = (th.clone(), th.clone());
            tp[i] += h;
            tm[i] -= h;
            let fd = (m.evaluate(&tp, b).unwrap().0 - m.evaluate(&tm, b).unwrap().0) / (2.0 * h);
            // Central difference: truncation h²|L‴|/6 ≈ 1e-12 (tanh; ReLU is piecewise
            // smooth and no unit crosses its kink within ±1e-6 for this seed), rounding
            // ≈ 1e-16·L/h ≈ 1e-10.
            assert!(
                (fd - pt.grad()[i]).abs() < 1e-8,
                "{act:?} param {i}: fd {fd} vs {}",
                pt.grad()[i]
            );
        }
    }
}

#[test]
fn r_op_hvp_matches_richardson_differences_and_is_symmetric() {
    for act in [ActKind::Tanh, ActKind::Relu] {
        let m = tiny(act);
        let th = theta(&m, 4);
        let x = normal(7 * m.input_len(), 5);
        let y = labels(7, 3, 6);
        let pt = m.at(&th, Batch::labels(&x, &y)).unwrap();
        let p = m.num_params();
        let (u, v) = (normal(p, 7), normal(p, 8));
        let (mut hu, mut hv) = (vec![0.0; p], vec![0.0; p]);
        pt.hvp(&u, &mut hu);
        pt.hvp(&v, &mut hv);
        // Richardson-extrapolated central differences: truncation O(ε⁴) ≈ 1e-12 at ε = 1e-3
        // for tanh; for ReLU the gradient is piecewise polynomial in θ (between kinks), so at
        // ε = 1e-6 (no unit flips within ±εv for this seed) truncation is ≈ 1e-12 and rounding
        // ≈ 1e-16/ε = 1e-10 relative.
        let eps = if act == ActKind::Tanh { 1e-3 } else { 1e-6 };
        let e = rel(&hv, &richardson_hvp(&pt, &v, eps));
        assert!(e < 1e-8, "{act:?}: R-op vs differences {e:e}");
        // Fails for a wrong R-operator: the plain central difference at a large step differs.
        assert!(rel(&hv, &pt.hvp_fd(&v, 0.3)) > 1e-6 || act == ActKind::Relu);
        // uᵀHv = vᵀHu to rounding.
        let (a, b) = (dot(&u, &hv), dot(&v, &hu));
        assert!(
            (a - b).abs() < 1e-12 * a.abs().max(1.0),
            "{act:?}: {a} vs {b}"
        );
    }
}

#[test]
fn squared_error_and_one_hot_hvps_match_differences() {
    let m = tiny(ActKind::Tanh);
    let th = theta(&m, 9);
    let x = normal(5 * m.input_len(), 10);
    let t = normal(15, 11);
    let y = labels(5, 3, 12);
    for b in [
        Batch::values(&x, &t, 3),
        Batch {
            x: &x,
            y: Targets::OneHot(&y),
            n: 5,
        },
    ] {
        let pt = m.at(&th, b).unwrap();
        let v = normal(m.num_params(), 13);
        let mut hv = vec![0.0; v.len()];
        pt.hvp(&v, &mut hv);
        // As above: Richardson truncation O(ε⁴) ≈ 1e-12 at ε = 1e-3.
        let e = rel(&hv, &richardson_hvp(&pt, &v, 1e-3));
        assert!(e < 1e-8, "{e:e}");
    }
}

#[test]
fn lanczos_on_r_op_hvps_matches_the_dense_hessian() {
    // docs/derivations/hessian.md#lanczos: the tiny net (P = 212) a few SGD steps into
    // training on 60 examples; the dense Hessian from P HVPs (columns), then its top 8 pairs
    // against Lanczos on the same HVPs.
    use crate::optim::{Optimizer, State};
    use dlt_theory::spectral::{lanczos_top, subspace_overlap};
    let m = tiny(ActKind::Tanh);
    let x = normal(60 * m.input_len(), 14);
    let y = labels(60, 3, 15);
    let b = Batch::labels(&x, &y);
    let mut th = m.init(16);
    let mut st = State::default();
    let l0 = m.evaluate(&th, b).unwrap().0;
    for _ in 0..100 {
        let g = m.at(&th, b).unwrap().grad().to_vec();
        st.step(Optimizer::Sgd, &mut th, &g, 0.1);
    }
    let pt = m.at(&th, b).unwrap();
    assert!(
        pt.loss < l0,
        "training lowers the loss: {l0} -> {}",
        pt.loss
    );
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
    let k = 8;
    let dense: Vec<f64> = (0..k).map(|i| evd.S()[p - 1 - i]).collect();
    let dense_vecs: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..p).map(|r| evd.U()[(r, p - 1 - i)]).collect())
        .collect();
    // 100 Lanczos steps on P = 212 (with full reorthogonalisation): the top pairs converge
    // to rounding; eigenvalues to 1e-6 of λ₁ and the top-8 projector to 1e-4 bound what a
    // spectral gap ≥ 1e-3·λ₁ allows (checked: the dense gaps of this seed are larger).
    let gaps = (0..k)
        .map(|i| dense[i] - evd.S()[p - 2 - i])
        .fold(f64::INFINITY, f64::min);
    assert!(gaps > 1e-3 * dense[0], "gap {gaps:e}");
    let top = lanczos_top(p, 100, k, 3, |v, o| pt.hvp(v, o)).unwrap();
    for i in 0..k {
        let r = (top.values[i] - dense[i]).abs() / dense[0].abs();
        assert!(r < 1e-6, "λ{i}: {} vs {}", top.values[i], dense[i]);
    }
    let dp = (2.0 * k as f64 * (1.0 - subspace_overlap(&top.vectors, &dense_vecs)))
        .max(0.0)
        .sqrt();
    assert!(dp < 1e-4, "projector distance {dp:e}");
}

#[test]
fn jacobian_penalty_gradient_is_exact() {
    // Σ_b |J_bᵀ v_b|² as a function of θ: its directional derivative along w by central
    // differences (tanh, step 1e-5: truncation h²|f‴|/6 ≈ 1e-10, rounding 1e-16·f/h ≈ 1e-11)
    // against w · 2 input_tangent_grad(u); input_grad against differences in x.
    let m = tiny(ActKind::Tanh);
    let th = theta(&m, 21);
    let n = 4;
    let x = normal(n * m.input_len(), 22);
    let v = normal(n * 3, 23);
    fn seeded<'a>(xx: &'a [f64], v: &'a [f64], n: usize) -> Batch<'a, f64> {
        Batch {
            x: xx,
            y: Targets::Seeds(v),
            n,
        }
    }
    let pen = |t: &[f64]| -> f64 {
        let u = m.at(t, seeded(&x, &v, n)).unwrap().input_grad();
        dot(&u, &u)
    };
    let pt = m.at(&th, seeded(&x, &v, n)).unwrap();
    let u = pt.input_grad();
    let mut g = vec![0.0; th.len()];
    pt.input_tangent_grad(&u, &mut g);
    let dir = normal(th.len(), 24);
    let h = 1e-5;
    let shift = |s: f64| {
        th.iter()
            .zip(&dir)
            .map(|(a, b)| a + s * b)
            .collect::<Vec<_>>()
    };
    let fd = (pen(&shift(h)) - pen(&shift(-h))) / (2.0 * h);
    let exact = 2.0 * dot(&g, &dir);
    assert!((fd - exact).abs() < 1e-7 * exact.abs(), "{fd} vs {exact}");
    // u_b = J_bᵀ v_b: the derivative of Σ_b v_b·z_b along each input coordinate.
    let phi = |xx: &[f64]| m.evaluate(&th, seeded(xx, &v, n)).unwrap().0;
    for i in [0, 37, 100, 255] {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += h;
        xm[i] -= h;
        let d = (phi(&xp) - phi(&xm)) / (2.0 * h);
        assert!((d - u[i]).abs() < 1e-8, "input {i}: {d} vs {}", u[i]);
    }
    assert!((pt.loss - phi(&x)).abs() < 1e-12);
    // The penalty's HVP path with both tangents is the same operator: R{∇} is linear in
    // (v, u), so hvp(v) + input_tangent_grad(u) = r_op(v, u).
    let vv = normal(th.len(), 25);
    let (mut a, mut both) = (vec![0.0; th.len()], vec![0.0; th.len()]);
    pt.hvp(&vv, &mut a);
    pt.r_op(&vv, Some(&u), &mut both);
    let sum: Vec<f64> = a.iter().zip(&g).map(|(a, b)| a + b).collect();
    assert!(rel(&both, &sum) < 1e-12);
}

#[test]
fn bad_inputs_are_refused() {
    let conv = |channels, kernel, pad| ConvSpec {
        channels,
        kernel,
        pad,
    };
    assert!(Cnn::new([0, 8, 1], vec![], vec![3], ActKind::Tanh).is_err());
    assert!(Cnn::new([8, 8, 1], vec![], vec![], ActKind::Tanh).is_err());
    // 9×9 conv on 8×8: too large; 8×8 conv 2×2 → 7×7: odd side before pooling.
    assert!(Cnn::new([8, 8, 1], vec![conv(2, 9, 0)], vec![3], ActKind::Tanh).is_err());
    assert!(Cnn::new([8, 8, 1], vec![conv(2, 2, 0)], vec![3], ActKind::Tanh).is_err());
    assert!(Cnn::new([8, 8, 1], vec![conv(2, 3, 1)], vec![3], ActKind::Gelu).is_err());
    let m = Cnn::new([8, 8, 1], vec![conv(2, 3, 1)], vec![3], ActKind::Tanh).unwrap();
    let th = m.init(0);
    let x = vec![0.0; 64];
    assert!(m.at(&th[1..], Batch::labels(&x, &[0])).is_err());
    assert!(m.at(&th, Batch::labels(&x[1..], &[0])).is_err());
    assert!(m.at(&th, Batch::labels(&x, &[3])).is_err());
    assert!(m.at(&th, Batch::labels(&x, &[2])).is_ok());
    let e = m.logits(&th, &x[..60]).unwrap_err().to_string();
    assert!(e.contains("H × W × C"), "{e}");
}
