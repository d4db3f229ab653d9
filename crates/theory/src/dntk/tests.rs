use super::*;
use crate::activation::parse;
use crate::gauss::QuadConfig;
use crate::profile::{Ensemble, LearningRates};

fn cfg(act: &str, cw: f64, lr: LearningRates, depth: usize) -> ProfileConfig {
    ProfileConfig {
        ensemble: Ensemble::new(parse(act).unwrap(), 0.0, cw),
        k1: 1.0,
        v1: 0.0,
        depth,
        lr,
    }
}

/// Half a unit in the last digit of a decimal literal: the rounding error of a printed value.
fn half_unit(lit: &str) -> f64 {
    let decimals = lit.split_once('.').map_or(0, |(_, f)| f.len());
    0.5 * 10f64.powi(-(decimals as i32))
}

#[test]
fn tanh_matches_reference_table() {
    // docs/derivations/dntk.md#reference-values (tanh, C_W = 1, C_b = 0, K^(1) = 1,
    // λ_b^(l) = 1/l, λ_W = 1, so Θ^(1) = 2). Columns: l, K¹/K, Θ¹/Θ, P/Θ², Q/Θ², RK/Θ³, SK/Θ³,
    // TK/Θ³, UK/Θ³. Tolerance: half a unit in the last printed digit (the table's rounding,
    // ≤ 1.7e-5 relative) plus 1e-9 relative for our quadrature (its moments agree with an
    // independent rule to 1e-11, test below).
    let table: [[&str; 9]; 5] = [
        [
            "2",
            "0",
            "0",
            "-0.115156",
            "-0.0699944",
            "-0.274945",
            "0.159236",
            "0.0303024",
            "0.070346",
        ],
        [
            "3",
            "-0.13082",
            "-0.0126744",
            "-0.230626",
            "-0.104496",
            "-0.363081",
            "0.216552",
            "0.0357264",
            "0.0669307",
        ],
        [
            "5",
            "-0.533408",
            "-0.0654332",
            "-0.430814",
            "-0.170581",
            "-0.494357",
            "0.289103",
            "0.0500426",
            "0.053526",
        ],
        [
            "10",
            "-1.84676",
            "-0.286357",
            "-0.873938",
            "-0.351378",
            "-0.812582",
            "0.434084",
            "0.101554",
            "0.0345747",
        ],
        [
            "20",
            "-4.8625",
            "-0.862207",
            "-1.71001",
            "-0.73961",
            "-1.4714",
            "0.709969",
            "0.223422",
            "0.0202578",
        ],
    ];
    let names = [
        "K1_over_K",
        "theta1_over_theta",
        "P_over_theta2",
        "Q_over_theta2",
        "RK_over_theta3",
        "SK_over_theta3",
        "TK_over_theta3",
        "UK_over_theta3",
    ];
    let lr = LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: true,
    };
    let p = dntk_profile(&cfg("tanh", 1.0, lr, 20)).unwrap();
    assert!((p[0].theta - 2.0).abs() < 1e-15);
    let (mut worst, mut worst_of_tol) = (0.0f64, 0.0f64);
    for row in &table {
        let l: usize = row[0].parse().unwrap();
        let got_row = &p[l - 1];
        assert_eq!(got_row.l, l);
        for (name, lit) in names.iter().zip(&row[1..]) {
            let want: f64 = lit.parse().unwrap();
            let got = got_row.stat(name).unwrap();
            let tol = half_unit(lit) + 1e-9 * want.abs();
            worst = worst.max((got - want).abs() / want.abs().max(1e-300));
            worst_of_tol = worst_of_tol.max((got - want).abs() / tol);
            assert!(
                (got - want).abs() <= tol,
                "l={l} {name}: {got} vs {want} (tol {tol:e})"
            );
        }
    }
    // Raw values at l = 3 (4 significant digits in the reference).
    let r = &p[2];
    for (got, want) in [
        (r.p, -0.6905),
        (r.q, -0.3128),
        (r.r, -7.954),
        (r.s, 4.744),
        (r.t, 0.7827),
        (r.u, 1.466),
    ] {
        assert!((got - want).abs() <= 5e-4 * want.abs(), "{got} vs {want}");
    }
    eprintln!("tanh table: max relative deviation {worst:e}, max |dev|/tol {worst_of_tol:.3}");
}

#[test]
fn sin_has_vanishing_q_and_t() {
    // sin, C_W = 1, λ_b = 0, λ_W = 1, K^(1) = 1: Θ ≡ 1 and Q ≡ T ≡ 0 identically
    // (docs/derivations/dntk.md#sin), S = −R, reference values at l = 2, 3, 4.
    let lr = LearningRates {
        lambda_b: 0.0,
        lambda_w: 1.0,
        b_over_l: false,
    };
    let p = dntk_profile(&cfg("sin", 1.0, lr, 12)).unwrap();
    for r in &p {
        assert!((r.theta - 1.0).abs() < 1e-13, "l={} Θ={}", r.l, r.theta);
        let scale = r.s.abs().max(1.0);
        assert!(r.q.abs() < 1e-12 * scale, "l={} Q={}", r.l, r.q);
        assert!(r.t.abs() < 1e-12 * scale, "l={} T={}", r.l, r.t);
        assert!(
            (r.s + r.r).abs() < 1e-12 * scale,
            "l={} S+R={}",
            r.l,
            r.s + r.r
        );
    }
    let want = [
        ("-0.124958", "0.124958", "0.567668"),
        ("-0.249509", "0.184163", "1.311826"),
        ("-0.361187", "0.224783", "2.213407"),
    ];
    for (i, (pw, uw, sw)) in want.iter().enumerate() {
        let r = &p[i + 1];
        for (got, lit) in [(r.p, pw), (r.u, uw), (r.s, sw), (-r.r, sw)] {
            let w: f64 = lit.parse().unwrap();
            assert!(
                (got - w).abs() <= half_unit(lit) + 1e-9 * w.abs(),
                "l={}: {got} vs {w}",
                r.l
            );
        }
    }
}

#[test]
fn relu_rationals() {
    // ReLU, C_W = 2, λ_b = 0, λ_W = 1, K = 1 (|x|²/n₀ = 1/2, Θ^(1) = 1/2):
    // docs/derivations/dntk.md#relu.
    let lr = LearningRates {
        lambda_b: 0.0,
        lambda_w: 1.0,
        b_over_l: false,
    };
    let c = cfg("relu", 2.0, lr, 30);
    let p = dntk_profile(&c).unwrap();
    let base = crate::profile::profile(&c).unwrap();
    for (r, b) in p.iter().zip(&base) {
        let l = r.l as f64;
        let tol = 1e-12 * l.powi(4);
        assert!((r.theta - l / 2.0).abs() < tol);
        assert!((b.f.unwrap() - l * (l - 1.0) / 2.0).abs() < tol);
        assert!((b.b.unwrap() - (l - 1.0) * l * (2.0 * l - 1.0) / 12.0).abs() < tol);
        assert!(r.p == 0.0 && r.r == 0.0 && r.u == 0.0, "l={l}");
        assert!(
            (r.q - (l * l * l - l) / 12.0).abs() < tol,
            "l={l} Q={}",
            r.q
        );
        assert!(
            (r.s - l * l * (l * l - 1.0) / 48.0).abs() < tol,
            "S={}",
            r.s
        );
        assert!((r.t - r.s).abs() < tol, "l={l}: T={} S={}", r.t, r.s);
        assert!(r.k1 == 0.0 && r.theta1 == 0.0);
    }
    let r = &p[9];
    assert!((r.q_over_theta2() - 3.3).abs() < 1e-12);
    assert!((r.s_k_over_theta3() - 1.65).abs() < 1e-12);
    assert!((r.t_k_over_theta3() - 1.65).abs() < 1e-12);
}

#[test]
fn linear_network_has_no_second_derivative_terms() {
    // σ(z) = z: σ'' = 0, χ = C_W = 1, h = 0. P = R = U = 0, Q' = Q + F', and
    // K¹ = Θ¹ = 0 (a linear network's z is Gaussian given the weights' Gram matrix, and its
    // mean kernel is exactly K).
    let p = dntk_profile(&cfg("linear", 1.0, LearningRates::default(), 8)).unwrap();
    for r in &p {
        assert!(r.p.abs() < 1e-14 && r.r.abs() < 1e-14 && r.u.abs() < 1e-14);
        assert!(r.k1.abs() < 1e-12 && r.theta1.abs() < 1e-12);
    }
    assert!(p[1].q > 0.0 && p[1].s > 0.0 && p[1].t > 0.0);
}

#[test]
fn moments_satisfy_stein_identities_and_are_converged() {
    // ⟨σσ''⟩ = ⟨zσσ'⟩/K − ⟨σ'²⟩ and C_W⟨zσ'σ''⟩/K = 2h (integration by parts), and the default
    // rules agree with a fine composite Gauss–Legendre rule split at zero to 1e-11.
    for name in [
        "tanh",
        "sin",
        "erf",
        "gelu",
        "silu",
        "sigmoid",
        "softplus",
        "gelu_tanh",
    ] {
        let act = parse(name).unwrap();
        let method = DntkMethod::for_activation(&*act).unwrap();
        for k in [0.05, 0.4, 1.0, 3.0] {
            let m = dntk_moments(&*act, method, &QuadConfig::default(), k);
            let m1 = crate::moments::moments1(
                &*act,
                &crate::moments::Method::for_activation(&*act, QuadConfig::default()),
                k,
            );
            let lhs = m.s_dd;
            let rhs = m1.zsd / k - m1.d2;
            assert!(
                (lhs - rhs).abs() < 1e-11 * (m1.d2 + lhs.abs()),
                "{name} K={k}: {lhs} vs {rhs}"
            );
            // ⟨zσ'σ''⟩ by the same rule
            let rule = rule1(false, k, &QuadConfig::default());
            let zdd: f64 = rule
                .x
                .iter()
                .zip(&rule.w)
                .map(|(&x, &w)| {
                    let z = k.sqrt() * x;
                    w * z * act.d1(z) * act.d2(z).unwrap()
                })
                .sum();
            assert!(
                (zdd / k - 2.0 * m.h(1.0)).abs() < 1e-11 * m1.d2,
                "{name} K={k}"
            );
            // An independent rule family: 200 Gauss–Legendre panels per half-line.
            let m2 = moments_with_rule(&*act, &crate::gauss::split_at_zero(200), k);
            for (a, b) in [
                (m.s_d2_dd, m2.s_d2_dd),
                (m.s_dd, m2.s_dd),
                (m.d3_ddd, m2.d3_ddd),
                (m.d4, m2.d4),
                (m.d2_z2, m2.d2_z2),
                (m.d_ddd, m2.d_ddd),
                (m.d2_dd2, m2.d2_dd2),
                (m.dd2, m2.dd2),
                (m.s2_h4, m2.s2_h4),
                (m.d2_h4, m2.d2_h4),
            ] {
                assert!(
                    (a - b).abs() < 1e-11 * (1.0 + b.abs()),
                    "{name} K={k}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn unsupported_ensembles_are_named() {
    let mut c = cfg("elu", 1.0, LearningRates::default(), 3);
    let e = dntk_profile(&c).unwrap_err().to_string();
    assert!(e.contains("--activation"), "{e}");
    c.ensemble = Ensemble::new(parse("tanh").unwrap(), 0.0, 1.0).with_init(Init::Orthogonal);
    let e = dntk_profile(&c).unwrap_err().to_string();
    assert!(e.contains("--init"), "{e}");
}
