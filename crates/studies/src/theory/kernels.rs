//! Criticality, the kernel K and the four-point vertex V of `theory`, recursions against
//! ensembles of networks.

use super::{
    extrapolate, run_mc, tanh_ensemble, Config, ExtrapolatedRow, McRow, NuRow, Scale, ACTIVATIONS,
    EXTRAPOLATED, EXTRAPOLATED_WHY, PDLT,
};
use crate::claim::{Claim, McBound};
use crate::output::OutDir;
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_theory::activation::parse;
use dlt_theory::criticality::{criticality, nu, optimal_aspect_ratio, Class, Critical};
use dlt_theory::mc::McConfig;
use dlt_theory::profile::{profile, Ensemble, Init, LearningRates, ProfileConfig};

/// Part 1: criticality and universality classes of every listed activation (PDLT ch. 5;
/// docs/derivations/theory.md#criticality).
pub(super) fn criticality_part(
    out: &OutDir,
    claims: &mut Vec<Claim>,
) -> Result<Vec<Critical>, StudyError> {
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
pub(super) fn kernel_part(
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
pub(super) fn vertex_part(
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
