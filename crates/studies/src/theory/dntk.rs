//! Part 7: the dNTK and ddNTK correlators P, Q, R, S, T, U of one input (PDLT ch. 11 and ∞;
//! docs/derivations/dntk.md): the recursions to depth 20 for tanh and ReLU, and P, Q measured on
//! sampled tanh networks by their exact forward equations (docs/derivations/dntk.md
//! #forward-equations), against the recursions.

use super::{tanh_ensemble, Config, ExtrapolatedRow, McRow, Scale, EXTRAPOLATED, PDLT};
use crate::claim::{Claim, McBound};
use crate::output::OutDir;
use crate::plot::{Figure, Series};
use crate::progress;
use crate::study::StudyError;
use dlt_theory::activation::parse;
use dlt_theory::dntk::{dntk_profile, DntkLayer};
use dlt_theory::mc::dntk::{dntk_pair_means, DntkMcLayer};
use dlt_theory::mc::McConfig;
use dlt_theory::profile::{Ensemble, Init, LearningRates, ProfileConfig};
use serde::Serialize;

/// Depth of the recursion profiles in `dntk.csv` and the figure.
const PROFILE_DEPTH: usize = 20;

/// One layer of the recursions, normalised as PDLT's figures (P/Θ², Q/Θ², RK/Θ³, SK/Θ³, TK/Θ³,
/// UK/Θ³).
#[derive(Debug, Clone, Serialize)]
pub struct DntkRow {
    /// `tanh` (C_W = 1, λ_b = 1/l, λ_W = 1) or `relu` (C_W = 2, λ_b = 0, λ_W = 1).
    pub activation: String,
    /// Layer l.
    pub l: usize,
    /// P/Θ².
    pub p_over_theta2: f64,
    /// Q/Θ².
    pub q_over_theta2: f64,
    /// R K/Θ³.
    pub r_k_over_theta3: f64,
    /// S K/Θ³.
    pub s_k_over_theta3: f64,
    /// T K/Θ³.
    pub t_k_over_theta3: f64,
    /// U K/Θ³.
    pub u_k_over_theta3: f64,
}

/// What the part returns for `results.json`.
pub(super) struct DntkPart {
    pub rows: Vec<DntkRow>,
    pub mc: Vec<McRow>,
    pub extrapolated: Vec<ExtrapolatedRow>,
}

/// The learning rates of PDLT's dNTK figures for tanh: λ_b^(l) = 1/l, λ_W = 1.
fn tanh_lr() -> LearningRates {
    LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: true,
    }
}

/// The recursion profile of one ensemble, normalised.
fn normalised(name: &str, layers: &[DntkLayer]) -> Vec<DntkRow> {
    layers
        .iter()
        .map(|d| DntkRow {
            activation: name.into(),
            l: d.l,
            p_over_theta2: d.p_over_theta2(),
            q_over_theta2: d.q_over_theta2(),
            r_k_over_theta3: d.r_k_over_theta3(),
            s_k_over_theta3: d.s_k_over_theta3(),
            t_k_over_theta3: d.t_k_over_theta3(),
            u_k_over_theta3: d.u_k_over_theta3(),
        })
        .collect()
}

/// Run the part: recursions, Monte Carlo at two widths, claims, `dntk.csv`, `dntk_mc.csv` and
/// `dntk.svg`.
pub(super) fn dntk_part(
    cfg: &Config,
    sc: &Scale,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<DntkPart, StudyError> {
    let tanh_cfg = ProfileConfig {
        ensemble: tanh_ensemble(Init::Gaussian),
        k1: 1.0,
        v1: 0.0,
        depth: PROFILE_DEPTH,
        lr: tanh_lr(),
    };
    let tanh = dntk_profile(&tanh_cfg)?;
    let relu = dntk_profile(&ProfileConfig {
        ensemble: Ensemble::new(parse("relu").expect("built-in"), 0.0, 2.0),
        k1: 1.0,
        v1: 0.0,
        depth: PROFILE_DEPTH,
        lr: LearningRates {
            lambda_b: 0.0,
            lambda_w: 1.0,
            b_over_l: false,
        },
    })?;
    let mut rows = normalised("tanh", &tanh);
    rows.extend(normalised("relu", &relu));
    out.write_records("dntk.csv", &rows)?;

    // Monte Carlo of P and Q at two widths (tanh).
    let mut runs: Vec<Vec<DntkMcLayer>> = vec![];
    let mut mc = vec![];
    for (i, &n) in sc.dntk_widths.iter().enumerate() {
        let c = McConfig {
            ensemble: tanh_ensemble(Init::Gaussian),
            k1: 1.0,
            width: n,
            depth: sc.dntk_depth,
            networks: sc.dntk_networks,
            ntk: true,
            lr: tanh_lr(),
            first_layer: Init::Gaussian,
            seed: cfg.seed + 60 + i as u64,
            batches: 20,
            threads: cfg.threads,
        };
        let pb = progress::bar(1, &format!("tanh dNTK, n={n}"), cfg.quiet);
        let r = dntk_pair_means(&c)?;
        pb.finish_and_clear();
        for (m, t) in r.iter().zip(&tanh) {
            for (stat, e, th) in [("P", m.p, t.p), ("Q", m.q, t.q)] {
                mc.push(McRow {
                    l: m.l,
                    n,
                    stat: stat.into(),
                    mc: e.value,
                    se: e.se,
                    theory: th,
                });
            }
        }
        runs.push(r);
    }
    // Richardson: 2 M(2n) − M(n) removes the O(1/n) correction (docs/derivations/theory.md
    // #mc-tolerances).
    let mut extrapolated = vec![];
    for ((a, b), t) in runs[0].iter().zip(&runs[1]).zip(&tanh).skip(1) {
        for (stat, ea, eb, th) in [("P", a.p, b.p, t.p), ("Q", a.q, b.q, t.q)] {
            extrapolated.push(ExtrapolatedRow {
                l: a.l,
                stat: stat.into(),
                extrapolated: 2.0 * eb.value - ea.value,
                se: (4.0 * eb.se * eb.se + ea.se * ea.se).sqrt(),
                theory: th,
            });
        }
    }
    out.write_records("dntk_mc.csv", &mc)?;
    let n1 = sc.dntk_widths[1];
    let src = format!("{PDLT} ch. 11 (dNTK; recursion: docs/derivations/dntk.md#recursions)");
    for r in mc.iter().filter(|r| r.l == 2 && r.n == n1) {
        claims.push(Claim::monte_carlo(
            &format!("theory.dntk_{}_l2", r.stat),
            &src,
            &format!(
                "tanh {} = n E[dĤ z] at l = 2 on networks of width {n1} equals the recursion (exact at every width at l = 2)",
                r.stat
            ),
            (r.mc, r.se),
            r.theory,
            McBound {
                k: 3.0,
                max_rel_se: 0.025,
                truncation: 0.0,
            },
            "no truncation: at l = 2 the expectation is exact at any width (docs/derivations/dntk.md#derivation-rules)",
        ));
    }
    for r in extrapolated.iter().filter(|r| r.l == sc.dntk_depth) {
        claims.push(Claim::monte_carlo(
            &format!("theory.dntk_{}_l{}", r.stat, r.l),
            &src,
            &format!(
                "tanh {} at l = {} (MC, Richardson n = {}/{}) equals the 1/n recursion",
                r.stat, r.l, sc.dntk_widths[0], n1
            ),
            (r.extrapolated, r.se),
            r.theory,
            EXTRAPOLATED,
            "3 % for the O(1/n²) remainder of the extrapolation (docs/derivations/theory.md#mc-tolerances)",
        ));
    }

    let mut fig = Figure::new(
        "dNTK and ddNTK correlators, tanh (λ_b = 1/l, λ_W = 1)",
        "layer l",
        "normalised correlator",
    );
    type Get = fn(&DntkRow) -> f64;
    let stats: [(&str, Get); 6] = [
        ("P/Θ²", |r| r.p_over_theta2),
        ("Q/Θ²", |r| r.q_over_theta2),
        ("RK/Θ³", |r| r.r_k_over_theta3),
        ("SK/Θ³", |r| r.s_k_over_theta3),
        ("TK/Θ³", |r| r.t_k_over_theta3),
        ("UK/Θ³", |r| r.u_k_over_theta3),
    ];
    for (k, (name, get)) in stats.into_iter().enumerate() {
        fig = fig.with(
            Series::line(
                format!("{name} recursion"),
                rows.iter()
                    .filter(|r| r.activation == "tanh")
                    .map(|r| (r.l as f64, get(r)))
                    .collect(),
            )
            .in_colour(k),
        );
    }
    // The measured points in the colour of their recursion's line.
    for (k, stat) in ["P", "Q"].into_iter().enumerate() {
        let pts: Vec<&ExtrapolatedRow> = extrapolated.iter().filter(|r| r.stat == stat).collect();
        let theta2 = |l: usize| tanh[l - 1].theta.powi(2);
        fig = fig.with(
            Series::points(
                format!("{stat}/Θ² MC (extrap.)"),
                pts.iter()
                    .map(|r| (r.l as f64, r.extrapolated / theta2(r.l)))
                    .collect(),
                Some(pts.iter().map(|r| r.se / theta2(r.l)).collect()),
            )
            .in_colour(k),
        );
    }
    fig.save_svg(&out.path("dntk.svg"))?;
    figures.push("dntk.svg".into());
    Ok(DntkPart {
        rows,
        mc,
        extrapolated,
    })
}
