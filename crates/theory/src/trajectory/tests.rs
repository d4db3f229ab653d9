//! Tests of the trajectory coefficient: against the exact effective dynamics it is the
//! expansion of, and against its gradient-flow limit in closed form.

use super::*;
use crate::gauss::hermite;

/// Statistics of the tanh network of depth 3 used below, fixed numbers (any values test the
/// algebra; these are of the size the recursions give).
fn stats() -> OutputStats {
    OutputStats {
        k: 0.236,
        theta: 0.783,
        theta1: -0.052,
        ntk_variance: 1.019,
        dntk: -0.202,
        ddntk_i: -2.97,
        ddntk_ii: 1.047,
    }
}

/// E[ε_t] of the truncated dynamics of the module docs with every O(1/n) statistic scaled by ν
/// instead of 1/n, by exact averaging: z₀ on a 60-node Gauss–Hermite rule (ε_t is a polynomial
/// in z₀ whose O(ν) part has degree ≤ 4), the NTK fluctuation a symmetric two-point variable
/// ±√(ν(A + 2B)) independent of z₀, and dH₀ = ν(P + 2Q)z₀/K, which has E[dH₀ z₀] = ν(P + 2Q) and
/// the parity of the dNTK.
fn effective_mean(s: &OutputStats, nu: f64, eta: f64, y: f64, steps: usize) -> Vec<f64> {
    let rule = hermite(60);
    let mut mean = vec![0.0; steps + 1];
    for (&x, &w) in rule.x.iter().zip(&rule.w) {
        let z0 = x * s.k.sqrt();
        for sign in [-1.0, 1.0] {
            let mut h = s.theta + nu * s.theta1 + sign * (nu * s.ntk_variance).sqrt();
            let mut d = nu * s.dntk * z0 / s.k;
            let (r, q) = (nu * s.ddntk_i, nu * s.ddntk_ii);
            let mut e = z0 - y;
            for m in mean.iter_mut() {
                *m += 0.5 * w * e;
                let e_next = e - eta * h * e + 0.5 * eta * eta * d * e * e
                    - eta.powi(3) * r * e.powi(3) / 6.0;
                h += -2.0 * eta * d * e + eta * eta * (r + q) * e * e;
                d -= eta * (r + 2.0 * q) * e;
                e = e_next;
            }
        }
    }
    mean
}

#[test]
fn the_coefficient_is_the_first_order_of_the_effective_dynamics() {
    let s = stats();
    let (eta, y, steps) = (0.5 / s.theta, 1.0, 12);
    let th = mean_trajectory(&s, eta, y, steps).unwrap();
    // (E_ν − E_0)/ν = C + O(ν); Richardson over ν and 2ν leaves O(ν²) ≈ 1e-8 relative to C
    // for ν = 1e-4 (the second-order coefficients are O(10) here).
    let nu = 1e-4;
    let (e0, e1, e2) = (
        effective_mean(&s, 0.0, eta, y, steps),
        effective_mean(&s, nu, eta, y, steps),
        effective_mean(&s, 2.0 * nu, eta, y, steps),
    );
    for p in &th {
        let t = p.t;
        assert!(
            (e0[t] - (p.infinite - y)).abs() < 1e-12,
            "t = {t}: zeroth order"
        );
        let g1 = (e1[t] - e0[t]) / nu;
        let g2 = (e2[t] - e0[t]) / (2.0 * nu);
        let c = 2.0 * g1 - g2;
        assert!(
            (c - p.coefficient).abs() < 1e-5 * (1.0 + p.coefficient.abs()),
            "t = {t}: effective dynamics {c} vs C(t) {}",
            p.coefficient
        );
    }
    // And the coefficient is not trivially small: the test would see a missing term.
    assert!(th.iter().any(|p| p.coefficient.abs() > 0.3));
}

#[test]
fn small_steps_approach_the_gradient_flow_closed_forms() {
    // Gradient flow (η → 0, τ = ηt): Θ¹ term yΘ¹τe^{−Θτ}; variance −½y(A+2B)τ²e^{−Θτ};
    // dNTK −2y(P+2Q)·(2/Θ)e^{−Θτ}[τ − (1 − e^{−Θτ})/Θ]; the η²-terms of the ddNTK updates
    // vanish, so only ddI + 2ddII acts, through the dNTK's drift:
    // c_r = −2e^{−Θτ}(1/Θ²)[τ/2 − (1 − e^{−Θτ})/Θ + (1 − e^{−2Θτ})/(4Θ)], c_s = 2c_r.
    // The discrete recursion differs by O(ηΘ): tolerance 20ηΘ relative.
    let s = stats();
    let (th, y) = (s.theta, 0.7);
    let tau = 2.0 / th;
    for &h in &[1e-3, 5e-4] {
        let eta = h / th;
        let steps = (tau / eta).round() as usize;
        let p = mean_trajectory(&s, eta, y, steps).unwrap()[steps];
        let e = (-th * tau).exp();
        let cd = 2.0 / th * e * (tau - (1.0 - e) / th);
        let cr = -2.0 * e / (th * th) * (tau / 2.0 - (1.0 - e) / th + (1.0 - e * e) / (4.0 * th));
        let flow = [
            y * s.theta1 * tau * e,
            -0.5 * y * s.ntk_variance * tau * tau * e,
            -2.0 * y * s.dntk * cd,
            -(y.powi(3) + 3.0 * y * s.k) * (s.ddntk_i * cr + s.ddntk_ii * 2.0 * cr),
        ];
        let got = [p.theta1_term, p.variance_term, p.dntk_term, p.ddntk_term];
        for (g, f) in got.iter().zip(&flow) {
            assert!(
                (g - f).abs() <= 20.0 * h * f.abs(),
                "ηΘ = {h}: discrete {g} vs flow {f}"
            );
        }
    }
}

#[test]
fn the_coefficient_vanishes_at_convergence_and_bad_steps_are_refused() {
    let s = stats();
    let th = mean_trajectory(&s, 1.0 / s.theta, 1.0, 200).unwrap();
    assert!(th[200].coefficient.abs() < 1e-12);
    assert!((th[200].infinite - 1.0).abs() < 1e-12);
    for eta in [0.0, -1.0, 2.0 / s.theta, f64::NAN] {
        let e = mean_trajectory(&s, eta, 1.0, 5).unwrap_err().to_string();
        assert!(e.contains("--eta"), "{e}");
    }
}

#[test]
fn output_stats_combine_the_recursions_for_one_output() {
    use crate::profile::{Ensemble, LearningRates};
    let cfg = ProfileConfig {
        ensemble: Ensemble::new(crate::activation::parse("tanh").unwrap(), 0.0, 1.0),
        k1: 1.0,
        v1: 0.0,
        depth: 3,
        lr: LearningRates {
            lambda_b: 0.0,
            lambda_w: 1.0,
            b_over_l: false,
        },
    };
    let o = OutputStats::at_output(&cfg).unwrap();
    let (rows, d) = (profile(&cfg).unwrap(), dntk_profile(&cfg).unwrap());
    let (l, dl) = (&rows[2], &d[2]);
    assert_eq!(o.theta, l.theta);
    assert_eq!(o.ntk_variance, l.a.unwrap() + 2.0 * l.b.unwrap());
    assert_eq!(o.dntk, dl.p + 2.0 * dl.q);
    assert_eq!(o.ddntk_i, 3.0 * dl.r);
    assert_eq!(o.ddntk_ii, dl.s + dl.t + dl.u);
    assert_eq!(o.theta1, dl.theta1);
}
