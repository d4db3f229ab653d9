//! The exact finite-width ReLU result, NTK fluctuations and the orthogonal-weight vertex of
//! `theory`.

use super::{
    extrapolate, run_mc, tanh_ensemble, Config, ExtrapolatedRow, McRow, ReluRow, Scale,
    EXTRAPOLATED, EXTRAPOLATED_WHY, PDLT,
};
use crate::claim::{Claim, NanFold};
use crate::output::{fmt_num, OutDir};
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_theory::activation::parse;
use dlt_theory::mc::{self, McConfig};
use dlt_theory::profile::{profile, Ensemble, Init, LearningRates, ProfileConfig};

/// Part 4: ReLU at finite width, V/(nK²) = (1 + 5/n)^{l−1} − 1
/// (docs/derivations/theory.md#relu-exact-finite-width), against Monte Carlo.
pub(super) fn relu_part(
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
pub(super) fn ntk_part(
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
pub(super) fn orthogonal_part(
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
