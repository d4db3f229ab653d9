use super::forward::State;
use super::*;
use crate::activation::{parse, Activation};
use crate::profile::{Ensemble, LearningRates, ProfileConfig};

fn tanh_lr() -> LearningRates {
    LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: true,
    }
}

fn tanh_cfg(width: usize, depth: usize, networks: usize, seed: u64) -> McConfig {
    McConfig {
        ensemble: Ensemble::new(parse("tanh").unwrap(), 0.0, 1.0),
        k1: 1.0,
        width,
        depth,
        networks,
        ntk: true,
        lr: tanh_lr(),
        first_layer: Init::Gaussian,
        seed,
        batches: 20,
        threads: 0,
    }
}

fn recursion(cfg: &McConfig) -> Vec<crate::dntk::DntkLayer> {
    crate::dntk::dntk_profile(&ProfileConfig {
        ensemble: cfg.ensemble.clone(),
        k1: cfg.k1,
        v1: 0.0,
        depth: cfg.depth,
        lr: cfg.lr,
    })
    .unwrap()
}

#[test]
fn layer_two_matches_the_recursion_at_width_eight() {
    // At l = 2 the expectations P^(2), Q^(2) hold at every width (layer 1 is exactly
    // Gaussian and Ĥ^(1) ∝ I; docs/derivations/dntk.md#derivation-rules), so a width-8
    // ensemble must agree with the recursion within its statistical error.
    let cfg = tanh_cfg(8, 3, 4000, 11);
    let mc = dntk_pair_means(&cfg).unwrap();
    let th = recursion(&cfg);
    for (got, want) in [(mc[1].p, th[1].p), (mc[1].q, th[1].q)] {
        eprintln!("l=2: {} ± {} vs {want}", got.value, got.se);
        assert!(got.se < 0.05 * want.abs(), "SE too large: {got:?}");
        assert!((got.value - want).abs() < 4.0 * got.se, "{got:?} vs {want}");
    }
    eprintln!(
        "l=3 (1/n corrections not removed): P {} ± {} vs {}, Q {} ± {} vs {}",
        mc[2].p.value, mc[2].p.se, th[2].p, mc[2].q.value, mc[2].q.se, th[2].q
    );
    // Layer 1 has no dNTK.
    assert!(mc[0].p.value == 0.0 && mc[0].q.value == 0.0);
    assert!(mc[1].r.is_none());
}

#[test]
fn ddntk_layer_two_matches_the_recursion_at_width_six() {
    // As for P, Q: at l = 2 only the Wick step over W^(2) enters and the expectations of
    // docs/derivations/dntk.md#recursions are exact at every width, so R, S, T, U of width-6
    // networks must agree with the recursion within 4 SE (4 SE: six statistics, a false alarm
    // rate of ~4e-4 for independent Gaussian errors), each with SE < 5 % of the value.
    let cfg = tanh_cfg(6, 2, 6000, 5);
    let mc = ddntk_pair_means(&cfg).unwrap();
    let th = recursion(&cfg);
    for name in ["P", "Q", "R", "S", "T", "U"] {
        let got = mc[1].get(name).unwrap();
        let want = th[1].stat(name).unwrap();
        eprintln!("l=2 {name}: {} ± {} vs {want}", got.value, got.se);
        assert!(got.se < 0.05 * want.abs(), "{name}: SE too large: {got:?}");
        assert!(
            (got.value - want).abs() < 4.0 * got.se,
            "{name}: {got:?} vs {want}"
        );
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count_and_haar_runs() {
    let mut cfg = tanh_cfg(4, 3, 40, 3);
    cfg.batches = 4;
    cfg.threads = 1;
    let a = ddntk_pair_means(&cfg).unwrap();
    cfg.threads = 3;
    let b = ddntk_pair_means(&cfg).unwrap();
    assert_eq!(a, b, "same seed, different threads, same numbers");
    cfg.ensemble.init = Init::Orthogonal;
    cfg.first_layer = Init::Orthogonal;
    let c = ddntk_pair_means(&cfg).unwrap();
    assert!(c.iter().all(|l| l.u.unwrap().value.is_finite()));
    assert_ne!(a, c);
}

/// A tiny explicit network (n₀ = 2 inputs, width 3, depth 3) as a function of all its
/// parameters θ = (W1, b1, W2, b2, W3, b3), with the per-parameter learning rates λ_μ of
/// docs/derivations/theory.md#learning-rate-tensor (λ_b per bias, λ_W/n_{l−1} per weight).
struct Tiny {
    x: [f64; 2],
    theta: Vec<f64>,
    lam: Vec<f64>,
}

const N: usize = 3;
const LB: f64 = 0.7;
const LW: f64 = 1.3;

impl Tiny {
    fn new() -> Self {
        let mut rng = network_rng(42, 0);
        let count = N * 2 + N + 2 * (N * N + N);
        let theta: Vec<f64> = (0..count)
            .map(|_| 0.8 * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let mut lam = vec![];
        lam.extend(std::iter::repeat_n(LW / 2.0, N * 2));
        lam.extend(std::iter::repeat_n(LB, N));
        for _ in 0..2 {
            lam.extend(std::iter::repeat_n(LW / N as f64, N * N));
            lam.extend(std::iter::repeat_n(LB, N));
        }
        Self {
            x: [0.9, -1.1],
            theta,
            lam,
        }
    }
    /// (W, b) of layer 2 or 3 (row-major) from θ.
    fn layer(theta: &[f64], l: usize) -> (&[f64], &[f64]) {
        let off = N * 3 + (l - 2) * (N * N + N);
        (
            &theta[off..off + N * N],
            &theta[off + N * N..off + N * N + N],
        )
    }
    fn z1(&self, theta: &[f64]) -> Vec<f64> {
        (0..N)
            .map(|a| theta[a * 2] * self.x[0] + theta[a * 2 + 1] * self.x[1] + theta[6 + a])
            .collect()
    }
    fn out(&self, act: &dyn Activation, theta: &[f64]) -> Vec<f64> {
        let mut z = self.z1(theta);
        for l in 2..=3 {
            let (w, b) = Self::layer(theta, l);
            let s: Vec<f64> = z.iter().map(|&v| act.f(v)).collect();
            z = (0..N)
                .map(|a| b[a] + (0..N).map(|k| w[a * N + k] * s[k]).sum::<f64>())
                .collect();
        }
        z
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // index notation mirrors the tensor definitions
fn forward_equations_match_finite_differences_of_a_tiny_network() {
    // The forward equations of docs/derivations/dntk.md#forward-equations against the
    // definitions of docs/derivations/dntk.md#definitions evaluated by finite differences of an
    // explicit width-3, depth-3 tanh network. Gradients: central differences (h = 1e-5, error
    // ~h²|z'''| ≈ 1e-10); Hessians: the 4-point rule (h = 1e-4, truncation ~1e-8, rounding
    // ~ε/h² ≈ 1e-8); the ddIĤ contractions: the 8-point third directional derivative (h = 2e-3,
    // truncation ~h²|z⁽⁵⁾| ≈ 1e-5, rounding ~ε/h³ ≈ 1e-8). Tolerance 1e-4 (absolute, entries
    // are O(1)); a wrong or missing term of the forward equations changes entries by O(0.1–1).
    let act = parse("tanh").unwrap();
    let net = Tiny::new();
    let p = net.theta.len();
    let f = |t: &[f64]| net.out(&*act, t);
    let shifted = |pairs: &[(usize, f64)]| {
        let mut t = net.theta.clone();
        for &(i, d) in pairs {
            t[i] += d;
        }
        t
    };
    let h1 = 1e-5;
    let grad: Vec<Vec<f64>> = (0..p)
        .map(|mu| {
            let (a, b) = (f(&shifted(&[(mu, h1)])), f(&shifted(&[(mu, -h1)])));
            (0..N).map(|i| (a[i] - b[i]) / (2.0 * h1)).collect()
        })
        .collect(); // grad[μ][i]
    let h2 = 1e-4;
    let mut hess = vec![vec![[0.0; N]; p]; p]; // hess[μ][ν][i]
    for mu in 0..p {
        for nu in 0..p {
            let e = |s1: f64, s2: f64| f(&shifted(&[(mu, s1 * h2), (nu, s2 * h2)]));
            let (pp, pm, mp, mm) = (e(1.0, 1.0), e(1.0, -1.0), e(-1.0, 1.0), e(-1.0, -1.0));
            for i in 0..N {
                hess[mu][nu][i] = (pp[i] - pm[i] - mp[i] + mm[i]) / (4.0 * h2 * h2);
            }
        }
    }
    let lam = &net.lam;
    // v_b = λ ∘ ∂z_b
    let v: Vec<Vec<f64>> = (0..N)
        .map(|b| (0..p).map(|mu| lam[mu] * grad[mu][b]).collect())
        .collect();
    // hv[a][c][μ] = Σ_ν ∂²z_a/∂μ∂ν v_c[ν]
    let hv: Vec<Vec<Vec<f64>>> = (0..N)
        .map(|a| {
            (0..N)
                .map(|c| {
                    (0..p)
                        .map(|mu| (0..p).map(|nu| hess[mu][nu][a] * v[c][nu]).sum())
                        .collect()
                })
                .collect()
        })
        .collect();

    // The forward equations on the same network.
    let mut st = State::new(N, true);
    st.z = net.z1(&net.theta);
    st.start(LB + LW * (net.x[0].powi(2) + net.x[1].powi(2)) / 2.0);
    for l in 2..=3 {
        let (w, b) = Tiny::layer(&net.theta, l);
        st.step(&*act, w, b, LB, LW);
    }
    let zf = f(&net.theta);
    let tol = 1e-4;
    let mut worst = 0.0f64;
    let mut check = |what: &str, got: f64, want: f64| {
        worst = worst.max((got - want).abs());
        assert!(
            (got - want).abs() < tol,
            "{what}: forward {got} vs FD {want}"
        );
    };
    for i in 0..N {
        check("z", st.z[i], zf[i]);
        for j in 0..N {
            let want: f64 = (0..p).map(|mu| v[i][mu] * grad[mu][j]).sum();
            check("Ĥ", st.h[i * N + j], want);
            for k in 0..N {
                // dĤ_ijk = Σ λλ ∂²z_i ∂z_j ∂z_k = v_j · (H_i v_k)
                let want: f64 = (0..p).map(|mu| v[j][mu] * hv[i][k][mu]).sum();
                check("dĤ", st.dh[(i * N + j) * N + k], want);
            }
        }
    }
    let h3 = 2e-3;
    for a in 0..N {
        for b in 0..N {
            for c in 0..N {
                for d in 0..N {
                    // ddIĤ_abcd = D³z_a[v_b, v_c, v_d]
                    let mut third = 0.0;
                    for s in 0..8 {
                        let sg = |bit: usize| if s >> bit & 1 == 1 { -1.0 } else { 1.0 };
                        let (s1, s2, s3) = (sg(0), sg(1), sg(2));
                        let t: Vec<f64> = (0..p)
                            .map(|mu| {
                                net.theta[mu] + h3 * (s1 * v[b][mu] + s2 * v[c][mu] + s3 * v[d][mu])
                            })
                            .collect();
                        third += s1 * s2 * s3 * f(&t)[a];
                    }
                    third /= 8.0 * h3 * h3 * h3;
                    check("ddIĤ", st.dd1[((a * N + b) * N + c) * N + d], third);
                    // ddIIĤ_abcd = Σ_μ λ_μ (H_a v_c)_μ (H_b v_d)_μ
                    let want: f64 = (0..p).map(|mu| lam[mu] * hv[a][c][mu] * hv[b][d][mu]).sum();
                    check("ddIIĤ", st.dd2[((a * N + b) * N + c) * N + d], want);
                }
            }
        }
    }
    eprintln!("largest |forward − FD| = {worst:e}");
}

#[test]
fn inverse_width_fit_is_richardson_for_two_widths_and_exact_on_a_line() {
    let e = |value: f64, se: f64| Estimate { value, se };
    // Two widths: (n₂v₂ − n₁v₁)/(n₂ − n₁) = 2·v(16) − v(8), SE √(4 SE₂² + SE₁²).
    let f = fit_inverse_width(&[(8, e(1.3, 0.03)), (16, e(1.1, 0.02))]).unwrap();
    assert!((f.value - 0.9).abs() < 1e-12, "{f:?}");
    assert!(
        (f.se - (4.0f64 * 0.0004 + 0.0009).sqrt()).abs() < 1e-12,
        "{f:?}"
    );
    // Points exactly on a + b/n give a back whatever the weights.
    let line = |n: usize| 0.7 + 2.5 / n as f64;
    let pts: Vec<(usize, Estimate)> = [8, 12, 16, 24]
        .iter()
        .zip([0.01, 0.02, 0.005, 0.03])
        .map(|(&n, se)| (n, e(line(n), se)))
        .collect();
    assert!((fit_inverse_width(&pts).unwrap().value - 0.7).abs() < 1e-12);
    // One width, or a zero SE, is an error naming --widths.
    let err = fit_inverse_width(&[(8, e(1.0, 0.1)), (8, e(1.1, 0.1))]).unwrap_err();
    assert!(err.to_string().contains("--widths"), "{err}");
    assert!(fit_inverse_width(&[(8, e(1.0, 0.0)), (16, e(1.1, 0.1))]).is_err());
}
