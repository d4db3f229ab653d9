//! Tests of the dataset kernels and predictions against the single-input recursions, 2-D
//! quadrature, independent re-computations and reference values
//! (docs/derivations/kernels.md#reference-values).
#![allow(clippy::type_complexity)]

use super::predict::Blocks;
use super::*;
use crate::activation::parse;
use crate::profile::{profile, Ensemble, LearningRates, ProfileConfig};

const X3: [f64; 9] = [1.0, 1.0, 1.0, 1.0, -1.0, 0.5, -0.5, 1.5, 1.0];
const X5: [f64; 15] = [
    1.0, 1.0, 1.0, 1.0, -1.0, 0.5, -0.5, 1.5, 1.0, 0.5, 0.5, -1.0, 2.0, 0.0, -0.5,
];

fn cfg(act: &str, cb: f64, cw: f64, depth: usize, method: PairMethod) -> KernelConfig {
    KernelConfig {
        method,
        ..KernelConfig::new(parse(act).unwrap(), cb, cw, depth)
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// Deterministic pseudo-random inputs (splitmix64 → uniform in [−1, 1)).
fn inputs(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n * d)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            2.0 * ((z >> 11) as f64 * 2f64.powi(-53)) - 1.0
        })
        .collect()
}

#[test]
fn one_input_equals_the_single_input_recursion() {
    // The diagonal recursion is the single-input one of profile.rs. Both use 1-D quadrature;
    // they differ only in the Gauss–Hermite order (200 vs 192 nodes), ≲1e-13 relative for the
    // smooth σ here, and not at all for the closed forms.
    let x = [0.8, -1.1, 0.3, 1.4];
    let norm: f64 = x.iter().map(|v| v * v).sum::<f64>() / 4.0;
    for (act, cb, cw, lb, lw, tol) in [
        ("tanh", 0.0, 1.0, 0.3, 1.7, 1e-12),
        ("tanh", 0.05, 1.5, 0.05, 1.5, 1e-12),
        ("relu", 0.1, 2.0, 1.0, 0.5, 1e-14),
        ("erf", 0.2, 1.3, 0.2, 1.3, 1e-12),
        ("gelu", 0.1, 1.8, 0.4, 1.0, 1e-12),
        ("elu", 0.1, 1.2, 0.4, 1.0, 1e-12),
    ] {
        let depth = 12;
        let c = KernelConfig {
            lambda_b: lb,
            lambda_w: lw,
            ..cfg(act, cb, cw, depth, PairMethod::Auto)
        };
        let kern = dataset_kernels(&c, Inputs::new(&x, 1, 4), None, false).unwrap();
        let prof = profile(&ProfileConfig {
            ensemble: Ensemble::new(parse(act).unwrap(), cb, cw),
            k1: cb + cw * norm,
            v1: 0.0,
            depth,
            lr: LearningRates {
                lambda_b: lb,
                lambda_w: lw,
                b_over_l: false,
            },
        })
        .unwrap();
        let last = prof.last().unwrap();
        assert!(
            rel(kern.k_train[0], last.k) < tol,
            "{act} K {} vs {}",
            kern.k_train[0],
            last.k
        );
        assert!(
            rel(kern.ntk_train[0], last.theta) < tol,
            "{act} Θ {} vs {}",
            kern.ntk_train[0],
            last.theta
        );
    }
}

/// Reference table of the project notes (docs/derivations/kernels.md#reference-values): X3,
/// entries (00, 01, 02, 11, 12, 22), λ = C.
#[test]
fn three_input_reference_values() {
    #[rustfmt::skip]
    let table: [(&str, f64, f64, usize, [f64; 6], [f64; 6]); 10] = [
        ("relu", 2.0, 0.0, 5, [2.0, 1.232546244, 1.756391777, 1.5, 1.170148664, 2.333333333], [10.0, 2.817033699, 5.140684785, 7.5, 2.091720168, 11.66666667]),
        ("relu", 2.0, 0.0, 20, [2.0, 1.639548766, 2.064202614, 1.5, 1.760782024, 2.333333333], [40.0, 10.99827338, 15.29447362, 30.0, 11.18211617, 46.66666667]),
        ("relu", 2.0, 0.1, 5, [2.5, 1.702100712, 2.241916675, 2.0, 1.617834835, 2.833333333], [11.5, 3.884400726, 6.371559557, 9.0, 2.97677178, 13.16666667]),
        ("relu", 2.0, 0.1, 20, [4.0, 3.611734429, 4.040541774, 3.5, 3.735641203, 4.333333333], [61.0, 23.83791967, 29.13649276, 51.0, 23.34193557, 67.66666667]),
        ("erf", 1.0, 0.0, 5, [0.2194324874, 0.0354033061, 0.1200353481, 0.2123032742, -0.1018270243, 0.2227488453], [1.277801335, 0.1776557388, 0.6278154237, 1.207103481, -0.5250401979, 1.31513966]),
        ("erf", 1.0, 0.0, 20, [0.1434809032, 0.02026943659, 0.06952290109, 0.1433826447, -0.05936108103, 0.1435245924], [3.597587429, 0.4073071009, 1.471210113, 3.560510973, -1.236238651, 3.61817105]),
        ("tanh", 1.0, 0.0, 5, [0.1279047353, 0.02149561867, 0.0732036364, 0.1212980845, -0.06158799889, 0.1310940462], [0.7031056691, 0.107730293, 0.3770211917, 0.6552550156, -0.3141476079, 0.7281018196]),
        ("tanh", 1.0, 0.0, 20, [0.02728615954, 0.004560595337, 0.01517587568, 0.02695274485, -0.01300933257, 0.02743815817], [0.5734886964, 0.09132665221, 0.3081425336, 0.5630808998, -0.262945894, 0.5786772313]),
        ("tanh", 1.5, 0.05, 5, [0.4566223736, 0.1963544335, 0.3084067843, 0.4504278495, 0.01858855078, 0.4595888611], [2.307588103, 0.58634361, 1.214684492, 2.211896863, -0.3152996871, 2.359765611]),
        ("tanh", 1.5, 0.05, 20, [0.4180420573, 0.3568101492, 0.3771709986, 0.4180413201, 0.330811705, 0.418042405], [5.026304633, 2.650172913, 3.279113269, 4.997684303, 1.98798938, 5.042146569]),
    ];
    // The table has 10 significant digits: 1e-9 relative is its rounding (5e-10 + our error).
    let idx = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
    for (act, cw, cb, depth, k_ref, t_ref) in table {
        for method in [
            PairMethod::Auto,
            PairMethod::Mehler {
                terms: 150,
                nodes: 200,
            },
            PairMethod::GaussHermite2d { nodes: 160 },
        ] {
            if act != "tanh" && method != PairMethod::Auto {
                continue;
            }
            let kern = dataset_kernels(
                &cfg(act, cb, cw, depth, method),
                Inputs::new(&X3, 3, 3),
                None,
                false,
            )
            .unwrap();
            for (e, &(a, b)) in idx.iter().enumerate() {
                let (k, t) = (kern.k_train[a * 3 + b], kern.ntk_train[a * 3 + b]);
                assert!(
                    rel(k, k_ref[e]) < 1e-9,
                    "{act} cw={cw} cb={cb} L={depth} {method:?} K{a}{b} {k} vs {}",
                    k_ref[e]
                );
                assert!(
                    rel(t, t_ref[e]) < 1e-9,
                    "{act} cw={cw} cb={cb} L={depth} {method:?} Θ{a}{b} {t} vs {}",
                    t_ref[e]
                );
            }
        }
    }
}

#[test]
fn mehler_matches_adaptive_quadrature_on_a_data_set() {
    // 12 random inputs, tanh with C_W = 1.5, C_b = 0.05 (K ≈ 0.3–3 over the layers). Reference:
    // the kink-aware adaptive 2-D rule (Gauss–Hermite 160² for K ≤ 1, polar sectors above;
    // agrees with the Mehler series to its Cauchy–Schwarz bound, see pair.rs). Each layer adds
    // at most C_W·bound to K; measured differences are printed and asserted within
    // 2·C_W·(depth − 1)·bound (the Θ recursion also multiplies E' errors by C_W·Θ ≲ 10).
    let (n, d, depth, cw) = (12, 5, 6, 1.5);
    let mut x: Vec<f64> = inputs(n, d, 7).iter().map(|v| 1.7 * v).collect();
    // Rows 9..12 are near-copies of rows 0..3 (ρ close to 1), where the truncation error is
    // largest (it peaks at ρ = 1).
    let noise = inputs(3, d, 8);
    for i in 0..3 * d {
        x[9 * d + i] = x[i] + 0.05 * noise[i];
    }
    let b = dataset_kernels(
        &cfg("tanh", 0.05, cw, depth, PairMethod::Adaptive2d),
        Inputs::new(&x, n, d),
        None,
        false,
    )
    .unwrap();
    for terms in [60, 100, 150] {
        let a = dataset_kernels(
            &cfg(
                "tanh",
                0.05,
                cw,
                depth,
                PairMethod::Mehler { terms, nodes: 200 },
            ),
            Inputs::new(&x, n, d),
            None,
            false,
        )
        .unwrap();
        let mk = a
            .k_train
            .iter()
            .zip(&b.k_train)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        let mt = a
            .ntk_train
            .iter()
            .zip(&b.ntk_train)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        let (bs, bd) = a.mehler_bound.unwrap();
        eprintln!(
            "M={terms}: max |ΔK| {mk:.2e}, |ΔΘ| {mt:.2e}; per-pair bounds {bs:.2e} / {bd:.2e}"
        );
        let layers = (depth - 1) as f64;
        assert!(mk <= 2.0 * cw * layers * bs + 1e-13, "M={terms}: {mk:e}");
        assert!(
            mt <= 2.0 * cw * layers * (bs + 10.0 * bd) + 1e-12,
            "M={terms}: {mt:e}"
        );
    }
    // The default (Auto = per-input order with tol = 1e-13, up to 300 terms, 2-D fallback).
    let a = dataset_kernels(
        &cfg("tanh", 0.05, cw, depth, PairMethod::Auto),
        Inputs::new(&x, n, d),
        None,
        false,
    )
    .unwrap();
    let mk = a
        .k_train
        .iter()
        .zip(&b.k_train)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    let mt = a
        .ntk_train
        .iter()
        .zip(&b.ntk_train)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "Auto: max |ΔK| {mk:.2e}, |ΔΘ| {mt:.2e}; bounds {:?}, fallbacks {}",
        a.mehler_bound, a.quadrature_fallbacks
    );
    assert!(mk < 1e-12 && mt < 1e-11, "Auto: {mk:e} {mt:e}");
}

#[test]
fn inputs_past_the_order_cap_use_the_mehler_series_except_near_duplicates() {
    // Rows 0 and 1 have |x|²/d ≈ 6 (K ≈ 9 at layer 1: no order ≤ 300 reaches 1e-13 there,
    // kernels.md#mehler-series table), row 1 a near-copy of row 0 (ρ ≈ 1); the other 10 rows
    // are moderate. The default bounds each pair of a past-the-cap input by
    // |ρ|^(m+1)·√(T_a(m) T_b(m)) and integrates only the pairs it cannot bound adaptively:
    // (0, 1) at each layer where both are past the cap. Reference: the adaptive 2-D rule
    // (≈1e-15 per pair integral); a pair integral off by at most tol = 1e-13 moves K by
    // ≤ C_W·tol per layer, so 1e-12 over 5 layers covers K, and Θ (which multiplies E'
    // errors by C_W·Θ ≲ 10) gets 1e-11.
    let (n, d, depth, cw) = (12, 5, 6, 1.5);
    let mut x: Vec<f64> = inputs(n, d, 11).iter().map(|v| 1.2 * v).collect();
    let big = inputs(1, d, 12);
    let norm = (big.iter().map(|v| v * v).sum::<f64>() / d as f64).sqrt();
    let noise = inputs(1, d, 13);
    for i in 0..d {
        x[i] = big[i] * 6f64.sqrt() / norm;
        x[d + i] = x[i] + 0.02 * noise[i];
    }
    let b = dataset_kernels(
        &cfg("tanh", 0.05, cw, depth, PairMethod::Adaptive2d),
        Inputs::new(&x, n, d),
        None,
        false,
    )
    .unwrap();
    let a = dataset_kernels(
        &cfg("tanh", 0.05, cw, depth, PairMethod::Auto),
        Inputs::new(&x, n, d),
        None,
        false,
    )
    .unwrap();
    let maxdiff = |p: &[f64], q: &[f64]| {
        p.iter()
            .zip(q)
            .map(|(u, v)| (u - v).abs())
            .fold(0.0, f64::max)
    };
    let (mk, mt) = (
        maxdiff(&a.k_train, &b.k_train),
        maxdiff(&a.ntk_train, &b.ntk_train),
    );
    eprintln!(
        "past the cap: max |ΔK| {mk:.2e}, |ΔΘ| {mt:.2e}; bound {:?}, adaptive pairs {}",
        a.mehler_bound, a.quadrature_fallbacks
    );
    assert!(mk < 1e-12 && mt < 1e-11, "{mk:e} {mt:e}");
    // Only layer 2 sees rows 0 and 1 past the cap (K ≤ C_b + C_W = 1.55 after one tanh
    // layer, well within 300 orders), and nothing else is a near-duplicate: exactly one
    // adaptive pair integral, not the 2·11 − 1 pairs the two rows take part in.
    assert_eq!(a.quadrature_fallbacks, 1, "adaptive pair integrals");
    let (bs, bd) = a.mehler_bound.unwrap();
    assert!(bs <= 1e-13 && bd <= 1e-13, "{bs:e} {bd:e}");
}

#[test]
fn symmetric_psd_and_thread_independent() {
    let (n, m, d) = (37, 11, 6);
    let x = inputs(n, d, 1);
    let x2 = inputs(m, d, 2);
    for (act, method) in [
        (
            "tanh",
            PairMethod::Mehler {
                terms: 60,
                nodes: 120,
            },
        ),
        ("tanh", PairMethod::Auto),
        ("relu", PairMethod::Auto),
        (
            "gelu",
            PairMethod::Mehler {
                terms: 40,
                nodes: 100,
            },
        ),
    ] {
        let run = |threads| {
            let c = KernelConfig {
                threads,
                ..cfg(act, 0.1, 1.6, 8, method)
            };
            dataset_kernels(
                &c,
                Inputs::new(&x, n, d),
                Some(Inputs::new(&x2, m, d)),
                true,
            )
            .unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(3), "{act}: thread count changed the numbers");
        assert_eq!(one, run(2), "{act}: thread count changed the numbers");
        for (mat, size) in [
            (&one.k_train, n),
            (&one.ntk_train, n),
            (one.k_test.as_ref().unwrap(), m),
            (one.ntk_test.as_ref().unwrap(), m),
        ] {
            for i in 0..size {
                for j in 0..size {
                    assert_eq!(mat[i * size + j], mat[j * size + i]);
                }
            }
            let ev = faer::Mat::from_fn(size, size, |i, j| mat[i * size + j])
                .self_adjoint_eigenvalues(faer::Side::Lower)
                .unwrap();
            let (lo, hi) = (ev[0], ev[size - 1]);
            assert!(
                lo >= -1e-12 * hi,
                "{act}: min eigenvalue {lo:e}, max {hi:e}"
            );
        }
        // The test block's diagonal and the separately propagated test diagonal agree exactly,
        // and the test × train block equals the corresponding block of the joint kernel.
        let kt = one.k_test.as_ref().unwrap();
        for i in 0..m {
            assert_eq!(kt[i * m + i], one.k_test_diag[i]);
        }
        let mut all = x.clone();
        all.extend_from_slice(&x2);
        let joint = dataset_kernels(
            &cfg(act, 0.1, 1.6, 8, method),
            Inputs::new(&all, n + m, d),
            None,
            false,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                assert_eq!(
                    joint.k_train[(n + i) * (n + m) + j],
                    one.k_test_train[i * n + j]
                );
                assert_eq!(
                    joint.ntk_train[(n + i) * (n + m) + j],
                    one.ntk_test_train[i * n + j]
                );
            }
        }
    }
}

#[test]
fn bad_inputs_are_refused_with_the_flag_named() {
    let x = [1.0, 2.0, f64::NAN, 0.0];
    let e = dataset_kernels(
        &cfg("tanh", 0.0, 1.0, 3, PairMethod::Auto),
        Inputs::new(&x, 2, 2),
        None,
        false,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("--inputs") && e.to_string().contains("non-finite"),
        "{e}"
    );
    let e = dataset_kernels(
        &cfg("tanh", 0.0, 1.0, 3, PairMethod::Auto),
        Inputs::new(&x[..3], 2, 2),
        None,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("2×2"), "{e}");
    let ok = [1.0, 2.0, 3.0, 0.0];
    let e = dataset_kernels(
        &cfg("tanh", 0.0, 1.0, 3, PairMethod::Auto),
        Inputs::new(&ok, 2, 2),
        Some(Inputs::new(&ok, 1, 4)),
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--inputs2"), "{e}");
    let e = dataset_kernels(
        &cfg("tanh", 0.0, 1.0, 3, PairMethod::ClosedForm),
        Inputs::new(&ok, 2, 2),
        None,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--activation"), "{e}");
    let e = dataset_kernels(
        &cfg("tanh", 0.0, 1.0, 0, PairMethod::Auto),
        Inputs::new(&ok, 2, 2),
        None,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--depth"), "{e}");
    let e = dataset_kernels(
        &cfg("relu", 0.0, 4.0, 2000, PairMethod::Auto),
        Inputs::new(&ok, 2, 2),
        None,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, crate::TheoryError::Diverged { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Predictions.

struct Fixture {
    k: DatasetKernels,
}

impl Fixture {
    /// X5: train = first three, test = last two (the prediction reference setting, docs/derivations/kernels.md#reference-values).
    fn new(act: &str, depth: usize, cw: f64, cb: f64) -> Self {
        let c = cfg(
            act,
            cb,
            cw,
            depth,
            PairMethod::Mehler {
                terms: 150,
                nodes: 200,
            },
        );
        let c = if act == "tanh" {
            c
        } else {
            KernelConfig {
                method: PairMethod::Auto,
                ..c
            }
        };
        let k = dataset_kernels(
            &c,
            Inputs::new(&X5[..9], 3, 3),
            Some(Inputs::new(&X5[9..], 2, 3)),
            true,
        )
        .unwrap();
        Self { k }
    }
    fn kb(&self) -> Blocks<'_> {
        self.k.nngp_blocks().unwrap()
    }
    fn tb(&self) -> Blocks<'_> {
        self.k.ntk_blocks()
    }
}

const Y3: [f64; 3] = [1.0, -0.5, 0.25];

#[test]
fn prediction_reference_values() {
    // Prediction reference table (9 significant digits; tanh kernels from Mehler M = 150, ≤1e-12 here).
    #[rustfmt::skip]
    let rows: [(&str, usize, f64, f64, [f64; 2], [f64; 3], [f64; 2], [f64; 2], [f64; 2], [f64; 3]); 3] = [
        ("relu", 3, 2.0, 0.0, [0.0845914185, 0.0923129237], [0.775778314, 0.651810447, 1.19787671], [0.0817821262, 0.0938636956], [0.0818289689, 0.0878173956], [0.107325899, 0.171357501], [0.711825589, 0.582360501, 1.10261683]),
        ("erf", 4, 1.0, 0.1, [0.176619278, 0.19312975], [0.27717387, 0.150154472, 0.144974609], [0.105933134, 0.0788709186], [0.153941804, 0.101369644], [0.158732195, 0.29556383], [0.257127271, 0.140023166, 0.137689763]),
        ("tanh", 4, 1.0, 0.0, [0.59199609, 0.465267511], [0.0821005618, 0.0614654115, 0.0753270454], [0.0265765798, 0.0205950712], [0.271218953, 0.235210472], [0.920950595, 0.741458986], [0.075022103, 0.0556790068, 0.0703197122]),
    ];
    let tol = 2e-8;
    for (act, depth, cw, cb, ntk_mean, ntk_cov, flow_mean, gd_mean, gp_mean, gp_cov) in rows {
        let f = Fixture::new(act, depth, cw, cb);
        let check = |what: &str, got: &[f64], want: &[f64]| {
            for (g, w) in got.iter().zip(want) {
                assert!(rel(*g, *w) < tol, "{act} {what}: {got:?} vs {want:?}");
            }
        };
        let cov3 = |c: &[f64]| [c[0], c[1], c[3]];
        let inf = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Infinity).unwrap();
        check("NTK t=∞ mean", &inf.mean, &ntk_mean);
        check("NTK t=∞ cov", &cov3(&inf.cov), &ntk_cov);
        let flow = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Flow { tau: 0.5 }).unwrap();
        check("flow τ=0.5 mean", &flow.mean, &flow_mean);
        let ev = faer::Mat::from_fn(3, 3, |i, j| f.k.ntk_train[i * 3 + j])
            .self_adjoint_eigenvalues(faer::Side::Lower)
            .unwrap();
        let gd = ntk_ensemble(
            f.kb(),
            f.tb(),
            &Y3,
            1,
            NtkTime::Steps {
                eta: 1.0 / ev[2],
                steps: 5,
            },
        )
        .unwrap();
        check("GD 5 steps mean", &gd.mean, &gd_mean);
        let gp = nngp_posterior(f.kb(), &Y3, 1, 0.0).unwrap();
        check("NNGP mean", &gp.mean, &gp_mean);
        check("NNGP cov", &cov3(&gp.cov), &gp_cov);
    }
}

#[test]
fn gradient_descent_ensemble_matches_explicit_iteration() {
    // Independent check of mean and covariance: iterate the linear dynamics of the joint state
    // (z_A, z_B) ← T (z_A, z_B) + (ηΘ_AA y, ηΘ_BA y) for the mean and Σ ← T Σ Tᵀ for the
    // covariance from Σ(0) = K on A ∪ B. Rounding only: 1e-12.
    let f = Fixture::new("tanh", 3, 1.3, 0.1);
    let (n, m) = (3, 2);
    let p = n + m;
    let kk = |i: usize, j: usize| -> f64 {
        match (i < n, j < n) {
            (true, true) => f.k.k_train[i * n + j],
            (false, true) => f.k.k_test_train[(i - n) * n + j],
            (true, false) => f.k.k_test_train[(j - n) * n + i],
            (false, false) => f.k.k_test.as_ref().unwrap()[(i - n) * m + (j - n)],
        }
    };
    let th = |i: usize, a: usize| -> f64 {
        if i < n {
            f.k.ntk_train[i * n + a]
        } else {
            f.k.ntk_test_train[(i - n) * n + a]
        }
    };
    let (eta, steps) = (0.37, 9u32);
    let t = faer::Mat::from_fn(p, p, |i, j| {
        (if i == j { 1.0 } else { 0.0 }) - if j < n { eta * th(i, j) } else { 0.0 }
    });
    let mut sigma = faer::Mat::from_fn(p, p, kk);
    let mut mean = vec![0.0; p];
    for _ in 0..steps {
        let resid: Vec<f64> = (0..n).map(|a| mean[a] - Y3[a]).collect();
        mean = (0..p)
            .map(|i| mean[i] - eta * (0..n).map(|a| th(i, a) * resid[a]).sum::<f64>())
            .collect();
        sigma = &t * &sigma * t.transpose();
    }
    let got = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Steps { eta, steps }).unwrap();
    for b in 0..m {
        assert!((got.mean[b] - mean[n + b]).abs() < 1e-12, "mean {b}");
        for c in 0..m {
            assert!(
                (got.cov[b * m + c] - sigma[(n + b, n + c)]).abs() < 1e-12,
                "cov {b}{c}"
            );
        }
    }
}

#[test]
fn prediction_limits() {
    let f = Fixture::new("erf", 3, 1.2, 0.1);
    let kt = f.k.k_test.clone().unwrap();
    // t = 0: mean 0, covariance K_BB (exactly: P = 0).
    let p0 = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Flow { tau: 0.0 }).unwrap();
    assert!(p0.mean.iter().all(|v| *v == 0.0));
    assert_eq!(p0.cov, kt);
    // Long flow → t = ∞ (e^{−τλ_min} with λ_min ≈ 0.3 and τ = 200 is 1e-26).
    let inf = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Infinity).unwrap();
    let long = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Flow { tau: 200.0 }).unwrap();
    for (a, b) in inf
        .mean
        .iter()
        .chain(&inf.cov)
        .zip(long.mean.iter().chain(&long.cov))
    {
        assert!((a - b).abs() < 1e-12);
    }
    // t = ∞ mean is kernel regression with Θ (Cholesky path of the posterior, noise 0).
    let kr = nngp_posterior(f.tb(), &Y3, 1, 0.0).unwrap();
    for (a, b) in inf.mean.iter().zip(&kr.mean) {
        assert!((a - b).abs() < 1e-13, "{a} {b}");
    }
    // The mean-only paths equal the full predictions' means (same arithmetic up to rounding).
    let km = kernel_mean(f.tb(), &Y3, 1, 0.0).unwrap();
    let gm = kernel_mean(f.kb(), &Y3, 1, 1e-3).unwrap();
    let gp3 = nngp_posterior(f.kb(), &Y3, 1, 1e-3).unwrap();
    let fm = ntk_mean(f.tb(), &Y3, 1, NtkTime::Flow { tau: 0.5 }).unwrap();
    let fl5 = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Flow { tau: 0.5 }).unwrap();
    for (a, b) in km
        .iter()
        .chain(&gm)
        .chain(&fm)
        .zip(kr.mean.iter().chain(&gp3.mean).chain(&fl5.mean))
    {
        assert!((a - b).abs() < 1e-13, "{a} {b}");
    }
    // Small-step GD approaches the flow at τ = η·steps (error O(η)).
    let gd = ntk_ensemble(
        f.kb(),
        f.tb(),
        &Y3,
        1,
        NtkTime::Steps {
            eta: 1e-4,
            steps: 10_000,
        },
    )
    .unwrap();
    let fl = ntk_ensemble(f.kb(), f.tb(), &Y3, 1, NtkTime::Flow { tau: 1.0 }).unwrap();
    for (a, b) in gd.mean.iter().zip(&fl.mean) {
        assert!((a - b).abs() < 1e-4, "{a} {b}");
    }
    // Two outputs: each column is predicted independently.
    let y2 = [1.0, 0.3, -0.5, 0.1, 0.25, -2.0];
    let two = nngp_posterior(f.kb(), &y2, 2, 0.0).unwrap();
    let col1 = nngp_posterior(f.kb(), &[0.3, 0.1, -2.0], 1, 0.0).unwrap();
    let gp = nngp_posterior(f.kb(), &Y3, 1, 0.0).unwrap();
    for b in 0..2 {
        assert!((two.mean[b * 2] - gp.mean[b]).abs() < 1e-14);
        assert!((two.mean[b * 2 + 1] - col1.mean[b]).abs() < 1e-14);
    }
    // Noise → ∞: the posterior reverts to the prior (mean → 0, cov → K_BB).
    let big = nngp_posterior(f.kb(), &Y3, 1, 1e12).unwrap();
    assert!(big.mean.iter().all(|v| v.abs() < 1e-11), "{:?}", big.mean);
    for (a, b) in big.cov.iter().zip(&kt) {
        assert!((a - b).abs() < 1e-11);
    }
}

#[test]
fn posterior_interpolates_training_points_and_refuses_singular_kernels() {
    // Test inputs = training inputs: at s = 0 the posterior mean is y and the covariance 0.
    let c = cfg(
        "tanh",
        0.05,
        1.5,
        4,
        PairMethod::Mehler {
            terms: 100,
            nodes: 200,
        },
    );
    let k = dataset_kernels(
        &c,
        Inputs::new(&X3, 3, 3),
        Some(Inputs::new(&X3, 3, 3)),
        true,
    )
    .unwrap();
    let kb = Blocks {
        n: 3,
        m: 3,
        train: &k.k_train,
        test_train: &k.k_test_train,
        test: k.k_test.as_deref().unwrap(),
    };
    let p = nngp_posterior(kb, &Y3, 1, 0.0).unwrap();
    for (a, b) in p.mean.iter().zip(&Y3) {
        assert!((a - b).abs() < 1e-12, "{a} {b}");
    }
    assert!(p.cov.iter().all(|v| v.abs() < 1e-12), "{:?}", p.cov);
    // The converged NTK ensemble interpolates too (docs/derivations/kernels.md#gradient-flow).
    let tb = Blocks {
        n: 3,
        m: 3,
        train: &k.ntk_train,
        test_train: &k.ntk_test_train,
        test: &[],
    };
    let t = ntk_ensemble(kb, tb, &Y3, 1, NtkTime::Infinity).unwrap();
    for (a, b) in t.mean.iter().zip(&Y3) {
        assert!((a - b).abs() < 1e-12, "{a} {b}");
    }
    assert!(t.cov.iter().all(|v| v.abs() < 1e-12), "{:?}", t.cov);
    // A duplicated training input makes K_AA singular: refused at s = 0, fine with noise.
    let dup = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -0.5, 1.5, 1.0];
    let k = dataset_kernels(
        &c,
        Inputs::new(&dup, 3, 3),
        Some(Inputs::new(&X3[3..6], 1, 3)),
        true,
    )
    .unwrap();
    let kb = Blocks {
        n: 3,
        m: 1,
        train: &k.k_train,
        test_train: &k.k_test_train,
        test: k.k_test.as_deref().unwrap(),
    };
    let e = nngp_posterior(kb, &Y3, 1, 0.0).unwrap_err();
    assert!(
        matches!(
            e,
            crate::TheoryError::Singular {
                flag: "--noise",
                ..
            }
        ),
        "{e}"
    );
    assert!(nngp_posterior(kb, &Y3, 1, 1e-3).is_ok());
    let tb = Blocks {
        n: 3,
        m: 1,
        train: &k.ntk_train,
        test_train: &k.ntk_test_train,
        test: &[],
    };
    let e = ntk_ensemble(kb, tb, &Y3, 1, NtkTime::Infinity).unwrap_err();
    assert!(
        matches!(e, crate::TheoryError::Singular { flag: "--time", .. }),
        "{e}"
    );
    // Finite time needs no inverse.
    assert!(ntk_ensemble(kb, tb, &Y3, 1, NtkTime::Flow { tau: 3.0 }).is_ok());
    let e = nngp_posterior(kb, &Y3[..2], 1, 0.0).unwrap_err();
    assert!(e.to_string().contains("--train-y"), "{e}");
}

#[test]
fn neural_tangents_benchmark_reference_values() {
    // docs/derivations/kernels.md#reference-values: 256 inputs of dimension 784 from
    // portable_normal(0), C_b = 0, 10 and 100 hidden layers (depth 11, 101).
    let d = 784;
    let x = portable_normal(0, 256 * d);
    // tanh, C_W = 1: entries of inputs 0 and 1 (given to 12–13 digits; Θ00 ± 1e-10).
    let c = cfg(
        "tanh",
        0.0,
        1.0,
        11,
        PairMethod::Mehler {
            terms: 150,
            nodes: 200,
        },
    );
    let k = dataset_kernels(&c, Inputs::new(&x[..2 * d], 2, d), None, false).unwrap();
    assert!(
        rel(k.k_train[0], 0.0523200107562) < 1e-11,
        "{}",
        k.k_train[0]
    );
    assert!(
        rel(k.k_train[1], -0.000815700615342) < 1e-10,
        "{}",
        k.k_train[1]
    );
    assert!(
        (k.ntk_train[0] - 0.61782906244).abs() < 1e-10,
        "{}",
        k.ntk_train[0]
    );
    assert!(
        rel(k.ntk_train[1], -0.00897285113354) < 1e-10,
        "{}",
        k.ntk_train[1]
    );
    // ReLU, C_W = 2: mean NTK diagonal, exact value (L+1)·2·mean|x|²/784 (1e-12 relative is
    // rounding over 100 layers).
    for (depth, want) in [(11, 21.976476774185496), (101, 201.78401401752137)] {
        let c = cfg("relu", 0.0, 2.0, depth, PairMethod::Auto);
        let k = dataset_kernels(&c, Inputs::new(&x, 256, d), None, false).unwrap();
        let mean = (0..256).map(|i| k.ntk_train[i * 257]).sum::<f64>() / 256.0;
        assert!(rel(mean, want) < 1e-12, "depth {depth}: {mean} vs {want}");
    }
}

/// Process CPU time (user + system) in seconds from /proc/self/stat (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

#[test]
#[ignore]
fn timing_256_inputs() {
    // Not a timed test: prints wall and CPU times for the report (`cargo test --release
    // -p dlt-theory timing_256_inputs -- --ignored --nocapture`).
    let d = 784;
    let x = portable_normal(0, 256 * d);
    // As standardised Fashion-MNIST images: |x|²/d spread from 0.32 to 2.73 (the measured
    // range of `dlt bench --nt-inputs fashion-mnist`), so some inputs are past the Mehler
    // order cap at layer 1.
    let spread: Vec<f64> = x
        .chunks(d)
        .enumerate()
        .flat_map(|(i, row)| {
            let s = (0.32 + 2.41 * i as f64 / 255.0).sqrt();
            row.iter().map(move |v| v * s).collect::<Vec<_>>()
        })
        .collect();
    for depth in [11, 101] {
        for method in [
            PairMethod::Auto,
            PairMethod::Mehler {
                terms: 60,
                nodes: 200,
            },
        ] {
            let c = cfg("tanh", 0.0, 1.0, depth, method);
            let (t0, c0) = (std::time::Instant::now(), cpu_seconds());
            let k = dataset_kernels(&c, Inputs::new(&spread, 256, d), None, false).unwrap();
            eprintln!(
                "spread norms, tanh {method:?} depth {depth}: wall {:.3} s, cpu {:.2} s (bound {:?}, adaptive pairs {})",
                t0.elapsed().as_secs_f64(),
                cpu_seconds() - c0,
                k.mehler_bound,
                k.quadrature_fallbacks
            );
        }
    }
    for (act, cw, method) in [
        ("tanh", 1.0, PairMethod::Auto),
        (
            "tanh",
            1.0,
            PairMethod::Mehler {
                terms: 100,
                nodes: 200,
            },
        ),
        ("relu", 2.0, PairMethod::Auto),
    ] {
        for depth in [11, 101] {
            for threads in [1, 2] {
                let c = KernelConfig {
                    threads,
                    ..cfg(act, 0.0, cw, depth, method)
                };
                let (t0, c0) = (std::time::Instant::now(), cpu_seconds());
                let k = dataset_kernels(&c, Inputs::new(&x, 256, d), None, false).unwrap();
                eprintln!(
                    "{act} {method:?} depth {depth} threads {threads}: wall {:.3} s, cpu {:.2} s (bound {:?}, fallbacks {})",
                    t0.elapsed().as_secs_f64(),
                    cpu_seconds() - c0,
                    k.mehler_bound,
                    k.quadrature_fallbacks
                );
            }
        }
    }
}

#[test]
fn nngp_matches_monte_carlo_of_wide_networks() {
    // 2000 tanh networks of width 256, depth 3 (C_W = 1.5, C_b = 0.05) on the three inputs X3.
    // Per network the estimate of K_ab is (1/n) Σ_i z_i;a z_i;b over the output layer's n
    // units; networks are independent, so the standard error is the sample s.d. / √S
    // (≈ 2e-3 K). The finite-width shift K¹/n is O(1/n) ≈ 1e-3 K here, below the 4-SE
    // tolerance (docs/derivations/kernels.md#reference-values).
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;
    let (cw, cb, depth, width, nets) = (1.5, 0.05, 3, 256, 2000);
    let act = parse("tanh").unwrap();
    let theory = dataset_kernels(
        &cfg("tanh", cb, cw, depth, PairMethod::Auto),
        Inputs::new(&X3, 3, 3),
        None,
        false,
    )
    .unwrap();
    let pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
    let mut sum = [0.0; 6];
    let mut sum2 = [0.0; 6];
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(13);
    let mut z = vec![[0.0f64; 3]; width];
    let mut next = vec![[0.0f64; 3]; width];
    for _ in 0..nets {
        // Layer 1 from the 3-dimensional inputs.
        for zi in z.iter_mut() {
            let b = cb.sqrt() * rng.sample::<f64, _>(StandardNormal);
            let w: Vec<f64> = (0..3)
                .map(|_| (cw / 3.0).sqrt() * rng.sample::<f64, _>(StandardNormal))
                .collect();
            for a in 0..3 {
                zi[a] = b + (0..3).map(|j| w[j] * X3[a * 3 + j]).sum::<f64>();
            }
        }
        for _ in 1..depth {
            let s: Vec<[f64; 3]> = z
                .iter()
                .map(|v| [act.f(v[0]), act.f(v[1]), act.f(v[2])])
                .collect();
            let sd = (cw / width as f64).sqrt();
            for ni in next.iter_mut() {
                let b = cb.sqrt() * rng.sample::<f64, _>(StandardNormal);
                *ni = [b; 3];
                for sj in &s {
                    let w = sd * rng.sample::<f64, _>(StandardNormal);
                    for a in 0..3 {
                        ni[a] += w * sj[a];
                    }
                }
            }
            std::mem::swap(&mut z, &mut next);
        }
        for (e, &(a, b)) in pairs.iter().enumerate() {
            let est = z.iter().map(|v| v[a] * v[b]).sum::<f64>() / width as f64;
            sum[e] += est;
            sum2[e] += est * est;
        }
    }
    for (e, &(a, b)) in pairs.iter().enumerate() {
        let mean = sum[e] / nets as f64;
        let se = ((sum2[e] / nets as f64 - mean * mean) / (nets - 1) as f64).sqrt();
        let k = theory.k_train[a * 3 + b];
        eprintln!(
            "K{a}{b}: MC {mean:.5} ± {se:.5}, theory {k:.5} ({:+.1} SE)",
            (mean - k) / se
        );
        assert!(
            (mean - k).abs() < 4.0 * se,
            "K{a}{b}: MC {mean} ± {se} vs {k}"
        );
    }
}

#[test]
fn ntk_matches_monte_carlo_of_wide_networks() {
    // 1000 tanh networks of width 128, depth 3 (C_W = 1.5, C_b = 0.05, λ_b = 0.3, λ_W = 0.8) on
    // X3. The empirical NTK of output unit i is
    // Θ̂_ab = Σ_l Σ_k g^(l)_{k;a} g^(l)_{k;b} (λ_b + λ_W s^(l−1)_a·s^(l−1)_b / n_{l−1}), with
    // g^(l) = ∂z_i/∂z^(l) by backpropagation and s^(l−1) the previous layer's activations (the
    // input for l = 1): the sum over biases and weights with the NTK learning rates
    // (docs/derivations/kernels.md#recursion). Averaged over 8 output units per network;
    // networks are independent, so SE = s.d. of the per-network averages / √S. The O(1/n)
    // finite-width shift of the NTK mean is ≈1e-4 relative here, far below 4 SE.
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;
    let (cw, cb, lb, lw, depth, width, nets, outs) = (1.5, 0.05, 0.3, 0.8, 3, 128, 1000, 8);
    let act = parse("tanh").unwrap();
    let c = KernelConfig {
        lambda_b: lb,
        lambda_w: lw,
        ..cfg("tanh", cb, cw, depth, PairMethod::Auto)
    };
    let theory = dataset_kernels(&c, Inputs::new(&X3, 3, 3), None, false).unwrap();
    let pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
    let (mut sum, mut sum2) = ([0.0; 6], [0.0; 6]);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(29);
    let mut normal = move |sd: f64| sd * rng.sample::<f64, _>(StandardNormal);
    for _ in 0..nets {
        // Forward pass: z[l][a][k], activations s[l][a][k] (s[0] = inputs), weights w[l].
        let mut w: Vec<Vec<f64>> = vec![];
        let mut s: Vec<Vec<Vec<f64>>> =
            vec![(0..3).map(|a| X3[a * 3..a * 3 + 3].to_vec()).collect()];
        let mut z: Vec<Vec<Vec<f64>>> = vec![];
        for l in 0..depth {
            let fan_in = if l == 0 { 3 } else { width };
            let wl: Vec<f64> = (0..width * fan_in)
                .map(|_| normal((cw / fan_in as f64).sqrt()))
                .collect();
            let bl: Vec<f64> = (0..width).map(|_| normal(cb.sqrt())).collect();
            let zl: Vec<Vec<f64>> = (0..3)
                .map(|a| {
                    (0..width)
                        .map(|k| {
                            bl[k]
                                + (0..fan_in)
                                    .map(|j| wl[k * fan_in + j] * s[l][a][j])
                                    .sum::<f64>()
                        })
                        .collect()
                })
                .collect();
            s.push(
                zl.iter()
                    .map(|v| v.iter().map(|&x| act.f(x)).collect())
                    .collect(),
            );
            z.push(zl);
            w.push(wl);
        }
        // Gram factors λ_b + λ_W s_a·s_b/n_{l−1} per layer and pair.
        let gram = |l: usize, a: usize, b: usize| {
            let fan_in = if l == 0 { 3 } else { width } as f64;
            lb + lw
                * s[l][a]
                    .iter()
                    .zip(&s[l][b])
                    .map(|(x, y)| x * y)
                    .sum::<f64>()
                / fan_in
        };
        let mut est = [0.0; 6];
        for i in 0..outs {
            // g[a] = ∂z_i/∂z^(l) for each input, from the top layer down.
            let mut g: Vec<Vec<f64>> = (0..3)
                .map(|_| (0..width).map(|k| if k == i { 1.0 } else { 0.0 }).collect())
                .collect();
            for l in (0..depth).rev() {
                for (e, &(a, b)) in pairs.iter().enumerate() {
                    let gg: f64 = g[a].iter().zip(&g[b]).map(|(x, y)| x * y).sum();
                    est[e] += gg * gram(l, a, b) / outs as f64;
                }
                if l > 0 {
                    for a in 0..3 {
                        let mut down = vec![0.0; width];
                        for k in 0..width {
                            let gk = g[a][k];
                            for j in 0..width {
                                down[j] += w[l][k * width + j] * gk;
                            }
                        }
                        for j in 0..width {
                            down[j] *= act.d1(z[l - 1][a][j]);
                        }
                        g[a] = down;
                    }
                }
            }
        }
        for e in 0..6 {
            sum[e] += est[e];
            sum2[e] += est[e] * est[e];
        }
    }
    for (e, &(a, b)) in pairs.iter().enumerate() {
        let mean = sum[e] / nets as f64;
        let se = ((sum2[e] / nets as f64 - mean * mean) / (nets - 1) as f64).sqrt();
        let t = theory.ntk_train[a * 3 + b];
        eprintln!(
            "Θ{a}{b}: MC {mean:.5} ± {se:.5}, theory {t:.5} ({:+.1} SE)",
            (mean - t) / se
        );
        assert!(
            (mean - t).abs() < 4.0 * se,
            "Θ{a}{b}: MC {mean} ± {se} vs {t}"
        );
    }
}

#[test]
fn high_mehler_orders_stay_finite_and_agree_with_low_ones() {
    // From M ≈ 600 the coefficient rule has ≥ 900 Gauss–Hermite nodes, some with weights that
    // underflow to 0 where h_k(x) overflows: 0·∞ once made every off-diagonal entry NaN. For
    // tanh the series has converged long before M = 200 (Parseval tail < 1e-20 at K ≤ 1), so
    // M = 1000 and 2000 must equal M = 200 to rounding (1e-12 relative).
    let x = Inputs::new(&X3, 3, 3);
    let at = |m: usize| {
        let c = cfg(
            "tanh",
            0.0,
            1.0,
            3,
            PairMethod::Mehler {
                terms: m,
                nodes: 200,
            },
        );
        dataset_kernels(&c, x, None, true).unwrap()
    };
    let base = at(200);
    for m in [1000, 2000] {
        let k = at(m);
        for (a, b) in k.k_train.iter().zip(&base.k_train) {
            assert!(
                a.is_finite() && rel(*a, *b) < 1e-12,
                "M = {m}: K {a} vs {b}"
            );
        }
        for (a, b) in k.ntk_train.iter().zip(&base.ntk_train) {
            assert!(
                a.is_finite() && rel(*a, *b) < 1e-12,
                "M = {m}: Θ {a} vs {b}"
            );
        }
    }
}
