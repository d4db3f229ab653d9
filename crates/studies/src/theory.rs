//! Study `theory`: *The Principles of Deep Learning Theory* (Roberts, Yaida, Hanin, arXiv
//! 2106.10165) and *Why is AI hard and Physics simple?* (Roberts, arXiv 2104.00008).
//!
//! The few-tensor description of deep MLPs (K, V, Θ, A, B, D, F from layer recursions) is
//! computed by `dlt-theory` and tested against ensembles of real networks sampled here:
//! criticality and universality classes, the depth-to-width scaling V/(nK²) ≈ ν l/n, the exact
//! finite-width ReLU result, NTK fluctuations, and the orthogonal-weight vertex.
//!
//! Cost (2 cores): quick ≈ 10 s, full ≈ 2 min; dominated by the full-NTK ensembles (4n³ flops per
//! layer per network).

pub mod runs;

use crate::claim::{Claim, McBound, NanFold};

/// Richardson-extrapolated Monte Carlo (widths n and 2n) against a 1/n recursion: 3 SE plus the
/// O(l²/n²) remainder the extrapolation leaves (≤ 2 % measured, 3 % allowed), with the SE at most
/// 2.5 % of the prediction — so a recursion off by more than 10.5 % cannot pass.
pub(crate) const EXTRAPOLATED: McBound = McBound {
    k: 3.0,
    max_rel_se: 0.025,
    truncation: 0.03,
};

/// The reason of [`EXTRAPOLATED`], as the criterion states it.
pub(crate) const EXTRAPOLATED_WHY: &str =
    "3 % for the O(l²/n²) remainder of the extrapolation: docs/derivations/theory.md#mc-tolerances";
use crate::output::{fmt_num, OutDir};
use crate::plot::{Figure, Series};
use crate::progress;
use crate::study::StudyError;
use dlt_theory::activation::parse;
use dlt_theory::criticality::{criticality, nu, optimal_aspect_ratio, Class, Critical};
use dlt_theory::mc::{self, McConfig, McLayer};
use dlt_theory::profile::{profile, Ensemble, Init, LearningRates, ProfileConfig};
use dlt_theory::TheoryError;
use serde::Serialize;
use std::time::Instant;

const PDLT: &str = "PDLT (arXiv 2106.10165)";

/// Study configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Quick (laptop-scale) ensembles instead of the full ones.
    pub quick: bool,
    /// Base seed; each Monte Carlo run offsets it.
    pub seed: u64,
    /// Worker threads for the Monte Carlo (0: all cores).
    pub threads: usize,
    /// Hide progress bars.
    pub quiet: bool,
}

/// Ensemble sizes for one mode.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scale {
    /// Gram-sampler ensembles (preactivation statistics).
    pub gram_networks: usize,
    /// The two widths n and 2n of the vertex and orthogonal ensembles (for extrapolation).
    pub gram_widths: [usize; 2],
    /// Depth L of the tanh vertex ensembles.
    pub gram_depth: usize,
    /// Full-NTK ensembles, per width (narrow, wide).
    pub ntk_networks: [usize; 2],
    /// The two widths n and 2n of the NTK ensembles.
    pub ntk_widths: [usize; 2],
    /// Depth L of the tanh NTK ensembles.
    pub ntk_depth: usize,
    /// Width of the ReLU ensemble compared with the exact finite-width result.
    pub relu_width: usize,
    /// Depth of that ReLU ensemble.
    pub relu_depth: usize,
    /// Depth of the Gaussian-vs-Haar tanh ensembles.
    pub orth_depth: usize,
}

impl Scale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        if quick {
            Self {
                // Enough networks that every extrapolated estimate has SE ≤ 2.5 % of its
                // prediction (EXTRAPOLATED): 20k/6k left the NTK V/K² at 7.7 %.
                gram_networks: 80_000,
                gram_widths: [64, 128],
                gram_depth: 20,
                ntk_networks: [96_000, 96_000],
                ntk_widths: [32, 64],
                ntk_depth: 6,
                relu_width: 64,
                relu_depth: 10,
                orth_depth: 30,
            }
        } else {
            Self {
                gram_networks: 200_000,
                gram_widths: [64, 128],
                gram_depth: 30,
                ntk_networks: [160_000, 160_000],
                ntk_widths: [64, 128],
                ntk_depth: 10,
                relu_width: 64,
                relu_depth: 12,
                orth_depth: 40,
            }
        }
    }
}

/// One row comparing a Monte Carlo statistic with theory.
#[derive(Debug, Clone, Serialize)]
pub struct McRow {
    /// Layer l (1-based).
    pub l: usize,
    /// Width n of the ensemble.
    pub n: usize,
    /// Statistic name, e.g. `V_over_nK2`, `A_over_theta2`, `V_over_K2_orthogonal`.
    pub stat: String,
    /// Monte Carlo estimate.
    pub mc: f64,
    /// Its batch-means standard error.
    pub se: f64,
    /// Leading-order (1/n) prediction of the recursions.
    pub theory: f64,
}

/// Richardson-extrapolated comparison at one layer.
#[derive(Debug, Clone, Serialize)]
pub struct ExtrapolatedRow {
    /// Layer l (1-based).
    pub l: usize,
    /// Statistic name, as in [`McRow::stat`].
    pub stat: String,
    /// 2 M(2n) − M(n): removes the O(1/n) finite-width correction
    /// (docs/derivations/theory.md#mc-tolerances).
    pub extrapolated: f64,
    /// Standard error of the extrapolation, √(4 SE(2n)² + SE(n)²).
    pub se: f64,
    /// Leading-order (1/n) prediction of the recursions.
    pub theory: f64,
}

/// `results.json` of the study.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `"theory"`.
    pub study: &'static str,
    /// The study configuration.
    pub config: Config,
    /// Ensemble sizes used.
    pub scale: Scale,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Critical point and universality class per activation.
    pub criticality: Vec<Critical>,
    /// ν and r* (n_L = 1 and 10) per activation with a critical point.
    pub nu: Vec<NuRow>,
    /// tanh V/(nK²) by layer at both widths, against the 1/n theory.
    pub vertex_mc: Vec<McRow>,
    /// tanh vertex rows extrapolated to n → ∞ (2M(2n) − M(n)).
    pub vertex_extrapolated: Vec<ExtrapolatedRow>,
    /// ReLU V/(nK²) against the exact finite-width (1 + 5/n)^{l−1} − 1.
    pub relu_exact: Vec<ReluRow>,
    /// tanh NTK statistics (Θ, A, B, D, F and their ratios) against theory.
    pub ntk_mc: Vec<McRow>,
    /// tanh NTK rows extrapolated to n → ∞.
    pub ntk_extrapolated: Vec<ExtrapolatedRow>,
    /// tanh V/K² for Gaussian and Haar weights, by layer and width.
    pub orthogonal: Vec<McRow>,
    /// The paper's claims with this run's measurements.
    pub claims: Vec<Claim>,
    /// SVG files written beside `results.json`.
    pub figures: Vec<String>,
}

/// The vertex slope ν and optimal aspect ratio r* of one activation.
#[derive(Debug, Clone, Serialize)]
pub struct NuRow {
    /// Activation name.
    pub activation: String,
    /// Depth slope ν of V/(nK²) ≈ ν l/n (docs/derivations/theory.md#nu-slope).
    pub nu: f64,
    /// Optimal aspect ratio r* = L/n for one output
    /// (docs/derivations/theory.md#optimal-aspect-ratio).
    pub r_star_1: f64,
    /// Optimal aspect ratio r* for 10 outputs.
    pub r_star_10: f64,
}

/// One layer of the exact finite-width ReLU comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ReluRow {
    /// Layer l (1-based).
    pub l: usize,
    /// Width n.
    pub n: usize,
    /// V/(nK²) measured = E[z_i²z_j²]/K² − 1.
    pub mc: f64,
    /// Its batch-means standard error.
    pub se: f64,
    /// (1 + 5/n)^{l−1} − 1, exact at finite n.
    pub exact: f64,
    /// 5(l − 1)/n, leading order.
    pub leading: f64,
}

const ACTIVATIONS: &[&str] = &[
    "relu",
    "leaky_relu:0.1",
    "linear",
    "tanh",
    "sin",
    "erf",
    "gelu",
    "swish",
    "elu",
    "selu",
    "sigmoid",
    "softplus",
];

fn run_mc(cfg: &McConfig, label: &str, quiet: bool) -> Result<Vec<McLayer>, TheoryError> {
    let pb = progress::bar(cfg.networks as u64, label, quiet);
    let r = mc::run(cfg, &|k| pb.inc(k));
    pb.finish_and_clear();
    r
}

fn tanh_ensemble(init: Init) -> Ensemble {
    Ensemble::new(parse("tanh").expect("built-in"), 0.0, 1.0).with_init(init)
}

/// Part 1: criticality and universality classes of every listed activation (PDLT ch. 5;
/// docs/derivations/theory.md#criticality).
fn criticality_part(out: &OutDir, claims: &mut Vec<Claim>) -> Result<Vec<Critical>, StudyError> {
    // 1. Criticality and universality classes (PDLT ch. 5).
    let crit: Vec<Critical> = ACTIVATIONS
        .iter()
        .map(|a| criticality(&*parse(a).expect("built-in")))
        .collect();
    let find = |name: &str| crit.iter().find(|c| c.activation == name).expect("listed");
    let cw_if = |c: &Critical, class: Class| {
        if c.class == class {
            c.cw.unwrap_or(f64::NAN)
        } else {
            f64::NAN
        }
    };
    claims.push(Claim::within(
        "theory.crit_tanh",
        &format!("{PDLT} §5.3"),
        "tanh is in the K* = 0 class; critical at C_b = 0, C_W = 1",
        cw_if(find("tanh"), Class::KStarZero),
        1.0,
        1e-6,
        "σ'(0)² = 1 from finite differences",
    ));
    for (name, kstar, id) in [
        ("gelu", 3.56155281, "theory.crit_gelu"),
        ("silu", 14.3201736, "theory.crit_swish"),
    ] {
        let c = find(name);
        claims.push(Claim::within(
            id,
            &format!("{PDLT} §5.3.3"),
            &format!("{name} is half-stable with a critical K* > 0"),
            if c.class == Class::HalfStable {
                c.k_star.unwrap_or(f64::NAN)
            } else {
                f64::NAN
            },
            kstar,
            1e-5,
            "root bracketing to machine precision; quadrature error < 1e-10",
        ));
    }
    let none_count = ["sigmoid", "softplus"]
        .iter()
        .filter(|n| find(n).class == Class::None)
        .count();
    claims.push(Claim::within(
        "theory.no_criticality", &format!("{PDLT} §5.3"), "sigmoid and softplus have no critical initialisation (count of the two found critical-free)",
        none_count as f64, 2.0, 0.0, "class detection",
    ));
    out.write_records("criticality.csv", &crit)?;
    Ok(crit)
}

/// Part 2: ν, the optimal aspect ratio r* and the kernel's approach to its fixed point
/// (PDLT §5.3, §9.4, appendix A; docs/derivations/theory.md#nu-slope).
fn kernel_part(
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
    crit: &[Critical],
) -> Result<Vec<NuRow>, StudyError> {
    let find = |name: &str| crit.iter().find(|c| c.activation == name).expect("listed");
    // 2. ν, r* and the tanh kernel asymptotics (PDLT §5.3, §9.4, appendix A).
    let mut nus = vec![];
    for a in ["relu", "leaky_relu:0.1", "linear", "tanh", "sin", "gelu"] {
        if let Some(v) = nu(parse(a).expect("built-in"), 0.0) {
            nus.push(NuRow {
                activation: a.into(),
                nu: v,
                r_star_1: optimal_aspect_ratio(v, 1),
                r_star_10: optimal_aspect_ratio(v, 10),
            });
        }
    }
    let nu_of = |a: &str| {
        nus.iter()
            .find(|r| r.activation == a)
            .map_or(f64::NAN, |r| r.nu)
    };
    claims.push(Claim::within(
        "theory.nu_relu",
        &format!("{PDLT} §5.4 / §9.4"),
        "ReLU: V/(nK²) grows as ν l/n with ν = 5",
        nu_of("relu"),
        5.0,
        1e-9,
        "exact for scale-invariant σ",
    ));
    claims.push(Claim::within(
        "theory.nu_tanh",
        &format!("{PDLT} §5.4 / §9.4"),
        "K* = 0 class (tanh): ν = 2/3, independent of the activation",
        nu_of("tanh"),
        2.0 / 3.0,
        2e-3,
        "slope at depth 4000 converges as O(1/L)",
    ));
    let tanh_deep = profile(&ProfileConfig {
        ensemble: tanh_ensemble(Init::Gaussian),
        k1: 1.0,
        v1: 0.0,
        depth: 10_000,
        lr: LearningRates::default(),
    })?;
    let kl = |l: usize| tanh_deep[l - 1].k;
    claims.push(Claim::within(
        "theory.tanh_kernel_decay",
        &format!("{PDLT} §5.3.2"),
        "critical tanh kernel decays as K^(l) ≈ 1/(2l): 2l·K^(l) at l = 10⁴",
        2.0 * 1e4 * kl(10_000),
        1.0,
        1e-3,
        "the (5/12) ln l / l correction is 4e-4 at l = 10⁴",
    ));
    let relu_k = profile(&ProfileConfig {
        ensemble: Ensemble::new(parse("relu").expect("built-in"), 0.0, 2.0),
        k1: 1.0,
        v1: 0.0,
        depth: 200,
        lr: LearningRates::default(),
    })?;
    let gelu = find("gelu");
    let gelu_k = profile(&ProfileConfig {
        ensemble: Ensemble::new(
            parse("gelu").expect("built-in"),
            gelu.cb.unwrap_or(0.0),
            gelu.cw.unwrap_or(1.0),
        ),
        k1: 1.05 * gelu.k_star.unwrap_or(1.0),
        v1: 0.0,
        depth: 200,
        lr: LearningRates::default(),
    })?;
    let fig = Figure::new("Kernel at criticality", "layer l", "K^(l)")
        .log_log()
        .with(Series::line(
            "tanh (K* = 0 class)",
            tanh_deep[..2000]
                .iter()
                .map(|r| (r.l as f64, r.k))
                .collect(),
        ))
        .with(Series::dashed(
            "1/(2l)",
            (1..=2000)
                .step_by(10)
                .map(|l| (l as f64, 0.5 / l as f64))
                .collect(),
        ))
        .with(Series::line(
            "ReLU (scale-invariant)",
            relu_k.iter().map(|r| (r.l as f64, r.k)).collect(),
        ))
        .with(Series::line(
            "GELU from 1.05 K* (half-stable)",
            gelu_k.iter().map(|r| (r.l as f64, r.k)).collect(),
        ));
    fig.save_svg(&out.path("kernel.svg"))?;
    figures.push("kernel.svg".to_string());
    Ok(nus)
}

/// Part 3: the four-point vertex of tanh networks at two widths against the recursion
/// (docs/derivations/theory.md#four-point-vertex), Richardson-extrapolated in 1/n.
fn vertex_part(
    cfg: &Config,
    sc: &Scale,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<(Vec<McRow>, Vec<ExtrapolatedRow>), StudyError> {
    // 3. Four-point vertex: tanh MC at two widths vs the recursion (Gram sampler,
    // docs/derivations/theory.md#mc-samplers).
    let mut vertex_mc = vec![];
    let mut by_width = vec![];
    for (i, &n) in sc.gram_widths.iter().enumerate() {
        let c = McConfig {
            ensemble: tanh_ensemble(Init::Gaussian),
            k1: 1.0,
            width: n,
            depth: sc.gram_depth,
            networks: sc.gram_networks,
            ntk: false,
            lr: LearningRates::default(),
            first_layer: Init::Gaussian,
            seed: cfg.seed + i as u64,
            batches: 20,
            threads: cfg.threads,
        };
        let r = run_mc(&c, &format!("tanh V, n={n}"), cfg.quiet)?;
        let th = c.theory()?;
        for (m, t) in r.iter().zip(&th) {
            let e = m.get("V_over_K2").expect("always estimated");
            vertex_mc.push(McRow {
                l: m.l,
                n,
                stat: "V_over_nK2".into(),
                mc: e.value / n as f64,
                se: e.se / n as f64,
                theory: t.v_over_k2() / n as f64,
            });
        }
        by_width.push((n, r, th));
    }
    let vertex_extrapolated = extrapolate(
        &by_width[0].1,
        &by_width[1].1,
        &by_width[1].2,
        &["V_over_K2"],
    );
    let l_star = sc.gram_depth.min(10);
    let (n0, n1) = (sc.gram_widths[0], sc.gram_widths[1]);
    let at = |n: usize, l: usize| {
        vertex_mc
            .iter()
            .find(|r| r.n == n && r.l == l)
            .expect("row")
    };
    let (a0, a1) = (at(n0, l_star), at(n1, l_star));
    let ratio = a0.mc / a1.mc;
    let ratio_se = ratio * ((a0.se / a0.mc).powi(2) + (a1.se / a1.mc).powi(2)).sqrt();
    claims.push(Claim::monte_carlo(
        "theory.vertex_halves_with_width",
        &format!("{PDLT} §5.4; Why AI is hard (arXiv 2104.00008)"),
        &format!("doubling the width halves V/(nK²) (tanh, l = {l_star}, n = {n0} → {n1})"),
        (ratio, ratio_se),
        2.0,
        McBound {
            truncation: 0.25 * l_star as f64 / n0 as f64,
            ..EXTRAPOLATED
        },
        "the O(l/n) finite-width correction to the ratio, 0.5·l/n, i.e. 0.25·l/n relative",
    ));
    for row in vertex_extrapolated
        .iter()
        .filter(|r| r.l == l_star || r.l == sc.gram_depth)
    {
        claims.push(Claim::monte_carlo(
            &format!("theory.vertex_tanh_l{}", row.l),
            &format!("{PDLT} §4.3 (V recursion)"),
            &format!(
                "tanh V/K² at l = {} from MC (Richardson n = {n0}/{n1}) equals the 1/n recursion",
                row.l
            ),
            (row.extrapolated, row.se),
            row.theory,
            EXTRAPOLATED,
            EXTRAPOLATED_WHY,
        ));
    }
    let mut fig = Figure::new("Four-point vertex, tanh at criticality", "l/n", "V/(nK²)");
    for (n, _, th) in &by_width {
        fig = fig.with(Series::line(
            format!("recursion, n={n}"),
            th.iter()
                .map(|t| (t.l as f64 / *n as f64, t.v_over_k2() / *n as f64))
                .collect(),
        ));
        let rows: Vec<&McRow> = vertex_mc.iter().filter(|r| r.n == *n).collect();
        fig = fig.with(Series::points(
            format!("MC, n={n}"),
            rows.iter()
                .map(|r| (r.l as f64 / *n as f64, r.mc))
                .collect(),
            Some(rows.iter().map(|r| r.se).collect()),
        ));
    }
    fig = fig.with(Series::dashed(
        "ν l/n, ν = 2/3",
        (0..=20)
            .map(|i| {
                let x = i as f64 * sc.gram_depth as f64 / n0 as f64 / 20.0;
                (x, 2.0 / 3.0 * x)
            })
            .collect(),
    ));
    fig.save_svg(&out.path("vertex_mc.svg"))?;
    figures.push("vertex_mc.svg".into());
    out.write_records("vertex_mc.csv", &vertex_mc)?;
    Ok((vertex_mc, vertex_extrapolated))
}

/// Part 4: ReLU at finite width, V/(nK²) = (1 + 5/n)^{l−1} − 1
/// (docs/derivations/theory.md#relu-exact-finite-width), against Monte Carlo.
fn relu_part(
    cfg: &Config,
    sc: &Scale,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<ReluRow>, StudyError> {
    // 4. Exact finite-width ReLU (docs/derivations/theory.md#relu-exact-finite-width):
    // V/(nK²) = (1 + 5/n)^{l−1} − 1.
    let n = sc.relu_width;
    let c = McConfig {
        ensemble: Ensemble::new(parse("relu").expect("built-in"), 0.0, 2.0),
        k1: 1.0,
        width: n,
        depth: sc.relu_depth,
        networks: sc.gram_networks,
        ntk: false,
        lr: LearningRates::default(),
        first_layer: Init::Gaussian,
        seed: cfg.seed + 10,
        batches: 20,
        threads: cfg.threads,
    };
    let r = run_mc(&c, &format!("relu V, n={n}"), cfg.quiet)?;
    let relu_exact: Vec<ReluRow> = r
        .iter()
        .map(|m| {
            let e = m.get("V_over_K2").expect("always");
            ReluRow {
                l: m.l,
                n,
                mc: e.value / n as f64,
                se: e.se / n as f64,
                exact: mc::exact_scale_invariant_ratio(5.0 / n as f64, m.l),
                leading: 5.0 * (m.l as f64 - 1.0) / n as f64,
            }
        })
        .collect();
    let max_z = relu_exact
        .iter()
        .skip(1)
        .map(|r| ((r.mc - r.exact) / r.se).abs())
        .nan_max();
    let max_rel_se = relu_exact
        .iter()
        .skip(1)
        .map(|r| r.se / r.exact.abs())
        .nan_max();
    claims.push(
        Claim::at_most(
            "theory.relu_exact_finite_width", "PDLT §4.3 (leading order); exact at finite n: docs/derivations/theory.md#relu-exact-finite-width",
            &format!("ReLU E[z_i²z_j²]/K² − 1 = (1 + 5/n)^(l−1) − 1 exactly at n = {n}: max |z-score| over layers"),
            max_z, 3.5, &format!("every layer within 3.5 SE ({} layers)", relu_exact.len() - 1),
        )
        .from_theory()
        .require(
            max_rel_se <= 0.05,
            &format!("every layer's SE ≤ 5 % of the exact value (largest {})", fmt_num(max_rel_se)),
        ),
    );
    Figure::new(
        format!("ReLU at n = {n}: exact finite-width result"),
        "layer l",
        "V/(nK²)",
    )
    .with(Series::line(
        "exact (1+5/n)^(l−1) − 1",
        relu_exact.iter().map(|r| (r.l as f64, r.exact)).collect(),
    ))
    .with(Series::dashed(
        "leading order 5(l−1)/n",
        relu_exact.iter().map(|r| (r.l as f64, r.leading)).collect(),
    ))
    .with(Series::points(
        "MC",
        relu_exact.iter().map(|r| (r.l as f64, r.mc)).collect(),
        Some(relu_exact.iter().map(|r| r.se).collect()),
    ))
    .save_svg(&out.path("relu_exact.svg"))?;
    figures.push("relu_exact.svg".into());
    out.write_records("relu_exact.csv", &relu_exact)?;
    Ok(relu_exact)
}

/// Part 5: the NTK's fluctuations A, B, D, F against their recursions
/// (docs/derivations/theory.md#ntk-fluctuations).
fn ntk_part(
    cfg: &Config,
    sc: &Scale,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<(Vec<McRow>, Vec<ExtrapolatedRow>), StudyError> {
    // 5. NTK fluctuations: full networks, exact forward equation (the setting of the table in
    // docs/derivations/theory.md#ntk-fluctuations).
    let lr = LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: true,
    };
    let mut ntk_runs = vec![];
    let mut ntk_mc = vec![];
    let ntk_stats = [
        "V_over_K2",
        "A_over_theta2",
        "B_over_theta2",
        "D_over_Ktheta",
        "F_over_Ktheta",
    ];
    for (i, &n) in sc.ntk_widths.iter().enumerate() {
        let c = McConfig {
            ensemble: tanh_ensemble(Init::Gaussian),
            k1: 1.0,
            width: n,
            depth: sc.ntk_depth,
            networks: sc.ntk_networks[i],
            ntk: true,
            lr,
            first_layer: Init::Gaussian,
            seed: cfg.seed + 20 + i as u64,
            batches: 20,
            threads: cfg.threads,
        };
        let r = run_mc(&c, &format!("tanh NTK, n={n}"), cfg.quiet)?;
        let th = c.theory()?;
        for (m, t) in r.iter().zip(&th) {
            for s in ntk_stats.iter().chain(&["theta"]) {
                let e = m.get(s).expect("ntk stats");
                ntk_mc.push(McRow {
                    l: m.l,
                    n,
                    stat: s.to_string(),
                    mc: e.value,
                    se: e.se,
                    theory: t.stat(s).unwrap_or(f64::NAN),
                });
            }
        }
        ntk_runs.push((r, th));
    }
    let ntk_extrapolated = extrapolate(&ntk_runs[0].0, &ntk_runs[1].0, &ntk_runs[1].1, &ntk_stats);
    for row in ntk_extrapolated.iter().filter(|r| r.l == sc.ntk_depth) {
        claims.push(Claim::monte_carlo(
            &format!("theory.ntk_{}", row.stat),
            &format!("{PDLT} ch. 8 (NTK fluctuations; recursion: docs/derivations/theory.md#ntk-fluctuations)"),
            &format!(
                "tanh {} at l = {} (MC, Richardson n = {}/{}) equals the 1/n recursion",
                row.stat, row.l, sc.ntk_widths[0], sc.ntk_widths[1]
            ),
            (row.extrapolated, row.se),
            row.theory,
            EXTRAPOLATED,
            EXTRAPOLATED_WHY,
        ));
    }
    let mut fig = Figure::new(
        "NTK fluctuations, tanh (λ_b = 1/l, λ_W = 1)",
        "layer l",
        "normalised correlator",
    );
    for s in &ntk_stats[1..] {
        fig = fig.with(Series::line(
            format!("{s} recursion"),
            ntk_runs[1]
                .1
                .iter()
                .map(|t| (t.l as f64, t.stat(s).unwrap_or(f64::NAN)))
                .collect(),
        ));
        let rows: Vec<&ExtrapolatedRow> =
            ntk_extrapolated.iter().filter(|r| r.stat == *s).collect();
        fig = fig.with(Series::points(
            format!("{s} MC (extrap.)"),
            rows.iter().map(|r| (r.l as f64, r.extrapolated)).collect(),
            Some(rows.iter().map(|r| r.se).collect()),
        ));
    }
    fig.save_svg(&out.path("ntk_mc.svg"))?;
    figures.push("ntk_mc.svg".into());
    out.write_records("ntk_mc.csv", &ntk_mc)?;
    Ok((ntk_mc, ntk_extrapolated))
}

/// Part 6: with orthogonal weights V/K² saturates near −2 instead of growing (arXiv
/// 2310.07765; docs/derivations/orthogonal.md#haar-vertex).
fn orthogonal_part(
    cfg: &Config,
    sc: &Scale,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<McRow>, StudyError> {
    let (n0, n1) = (sc.gram_widths[0], sc.gram_widths[1]);
    // 6. Orthogonal weights: V/K² saturates near −2 instead of growing (arXiv 2310.07765;
    // docs/derivations/orthogonal.md#haar-vertex).
    let mut orthogonal = vec![];
    let mut orth_runs = vec![];
    for (i, &init) in [Init::Gaussian, Init::Orthogonal].iter().enumerate() {
        for (j, &n) in sc.gram_widths.iter().enumerate() {
            let c = McConfig {
                ensemble: tanh_ensemble(init),
                k1: 1.0,
                width: n,
                depth: sc.orth_depth,
                networks: sc.gram_networks,
                ntk: false,
                lr: LearningRates::default(),
                first_layer: init,
                seed: cfg.seed + 40 + (2 * i + j) as u64,
                batches: 20,
                threads: cfg.threads,
            };
            let name = if init == Init::Orthogonal {
                "orthogonal"
            } else {
                "gaussian"
            };
            let r = run_mc(&c, &format!("tanh {name} V, n={n}"), cfg.quiet)?;
            let th = c.theory()?;
            for (m, t) in r.iter().zip(&th) {
                let e = m.get("V_over_K2").expect("always");
                orthogonal.push(McRow {
                    l: m.l,
                    n,
                    stat: format!("V_over_K2_{name}"),
                    mc: e.value,
                    se: e.se,
                    theory: t.v_over_k2(),
                });
            }
            orth_runs.push((init, n, r, th));
        }
    }
    let orth_ex = extrapolate(
        &orth_runs[2].2,
        &orth_runs[3].2,
        &orth_runs[3].3,
        &["V_over_K2"],
    );
    if let Some(row) = orth_ex.iter().find(|r| r.l == sc.orth_depth) {
        claims.push(Claim::monte_carlo(
            "orthogonal.vertex_saturates", "Day, Kahn, Roberts (arXiv 2310.07765); recursion: docs/derivations/orthogonal.md#haar-vertex",
            &format!("orthogonal tanh V/K² at l = {} (MC, Richardson n = {n0}/{n1}) equals the Haar recursion (→ −2)", row.l),
            (row.extrapolated, row.se), row.theory, EXTRAPOLATED, EXTRAPOLATED_WHY,
        ));
    }
    let orth_deep = profile(&ProfileConfig {
        ensemble: tanh_ensemble(Init::Orthogonal),
        k1: 1.0,
        v1: -2.0,
        depth: 2000,
        lr: LearningRates::default(),
    })?;
    claims.push(Claim::within(
        "orthogonal.vertex_limit", "Day, Kahn, Roberts (arXiv 2310.07765)",
        "orthogonal tanh: V/K² → −2 at large depth (recursion at l = 2000), depth-independent fluctuations",
        orth_deep[1999].v_over_k2(), -2.0, 0.01, "O(1/l) approach",
    ));
    let mut fig = Figure::new("Gaussian vs orthogonal weights, tanh", "layer l", "V/K²");
    for (init, n, r, th) in &orth_runs {
        let name = if *init == Init::Orthogonal {
            "orthogonal"
        } else {
            "Gaussian"
        };
        if *n == n1 {
            fig = fig.with(Series::line(
                format!("{name} recursion"),
                th.iter().map(|t| (t.l as f64, t.v_over_k2())).collect(),
            ));
        }
        fig = fig.with(Series::points(
            format!("{name} MC n={n}"),
            r.iter()
                .map(|m| (m.l as f64, m.get("V_over_K2").expect("always").value))
                .collect(),
            Some(
                r.iter()
                    .map(|m| m.get("V_over_K2").expect("always").se)
                    .collect(),
            ),
        ));
    }
    fig.save_svg(&out.path("orthogonal.svg"))?;
    figures.push("orthogonal.svg".into());
    out.write_records("orthogonal.csv", &orthogonal)?;
    Ok(orthogonal)
}

/// Run the study and write `results.json`, CSV tables and SVG figures into `out`.
pub fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
    let t0 = Instant::now();
    let sc = Scale::for_mode(cfg.quick);
    let mut claims = vec![];
    let mut figures = vec![];

    let crit = criticality_part(out, &mut claims)?;

    let nus = kernel_part(out, &mut claims, &mut figures, &crit)?;

    let (vertex_mc, vertex_extrapolated) = vertex_part(cfg, &sc, out, &mut claims, &mut figures)?;

    let relu_exact = relu_part(cfg, &sc, out, &mut claims, &mut figures)?;

    let (ntk_mc, ntk_extrapolated) = ntk_part(cfg, &sc, out, &mut claims, &mut figures)?;

    let orthogonal = orthogonal_part(cfg, &sc, out, &mut claims, &mut figures)?;

    let results = Results {
        study: "theory",
        config: cfg.clone(),
        scale: sc,
        seconds: t0.elapsed().as_secs_f64(),
        criticality: crit,
        nu: nus,
        vertex_mc,
        vertex_extrapolated,
        relu_exact,
        ntk_mc,
        ntk_extrapolated,
        orthogonal,
        claims,
        figures,
    };
    out.write_json("results.json", &results)?;
    Ok(results)
}

/// The report section for this study.
/// The `theory` study ([`crate::study::Study`]).
pub struct Theory;

impl crate::study::Study for Theory {
    const NAME: &'static str = "theory";
    const TITLE: &'static str =
        "Principles of Deep Learning Theory; Why is AI hard and Physics simple?";
    const PAPER: &'static str =
        "Roberts, Yaida, Hanin (arXiv 2106.10165); Roberts (arXiv 2104.00008)";
    const ABOUT: &'static str = "Statistics of deep MLPs at initialisation: the kernel K, the four-point vertex V and the NTK's fluctuations (A, B, D, F) from the book's layer recursions, against ensembles of real networks; criticality, universality classes, the depth-to-width ratio and the exact finite-width ReLU result.";
    type Config = Config;
    type Results = Results;
    fn config(quick: bool, seed: u64, quiet: bool) -> Config {
        Config {
            quick,
            seed,
            threads: 0,
            quiet,
        }
    }
    fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
        run(cfg, out)
    }
}

/// Richardson extrapolation 2M(2n) − M(n) of the named statistics, layer by layer.
fn extrapolate(
    narrow: &[McLayer],
    wide: &[McLayer],
    theory: &[dlt_theory::Layer],
    stats: &[&str],
) -> Vec<ExtrapolatedRow> {
    let mut rows = vec![];
    for ((a, b), t) in narrow.iter().zip(wide).zip(theory).skip(1) {
        for s in stats {
            let (x, y) = (a.get(s).expect("stat"), b.get(s).expect("stat"));
            rows.push(ExtrapolatedRow {
                l: a.l,
                stat: s.to_string(),
                extrapolated: 2.0 * y.value - x.value,
                se: (4.0 * y.se * y.se + x.se * x.se).sqrt(),
                theory: t.stat(s).unwrap_or(f64::NAN),
            });
        }
    }
    rows
}
