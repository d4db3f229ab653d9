//! The claims of `hessian`: top-subspace gradient fraction, subspace overlaps, Lanczos check and
//! the ablation.

use super::{
    Ablation, Checkpoint, CnnRun, Config, RunResult, Scale, SubsetRun, ToyRun, PAPER, SONG,
};
use crate::claim::{Claim, NanFold};
use crate::output::fmt_num;

/// The fraction of a random direction's norm in a fixed k-dimensional subspace of R^P:
/// E[f_top] = k/P, here for the top k = 10 (docs/derivations/hessian.md#random-baseline).
pub(super) fn random_baseline(p: usize) -> f64 {
    10.0 / p as f64
}

/// The Dom-/Bulk-SGD ablation's statements (Song, Ahn, Yun, arXiv 2405.16002 §4).
fn ablation_claims(a: &Ablation) -> Vec<Claim> {
    let mut claims = vec![];
    claims.push(Claim::at_most(
        "hessian.dom_sgd_stalls",
        &format!("{SONG} §4"),
        "training on only the top-subspace part of the gradient (Dom-SGD) barely lowers the loss: its loss drop over plain SGD's",
        a.dom_drop / a.sgd_drop,
        0.5,
        "not calibrated on reference runs; our threshold",
    )
.calibrated());
    claims.push(Claim::at_least(
        "hessian.bulk_sgd_trains",
        &format!("{SONG} §4"),
        "training on only the rest (Bulk-SGD) lowers the loss about as much as SGD: its loss drop over plain SGD's",
        a.bulk_drop / a.sgd_drop,
        0.7,
        "not calibrated on reference runs; our threshold",
    )
.calibrated());
    claims
}

/// The worst (smallest) of `f` over the runs (NaN if any run's is NaN).
fn min_over(runs: &[&RunResult], f: impl Fn(&RunResult) -> f64) -> f64 {
    runs.iter().map(|r| f(r)).nan_min()
}

/// The largest of `f` over the runs (NaN if any run's is NaN).
fn max_over(runs: &[&RunResult], f: impl Fn(&RunResult) -> f64) -> f64 {
    runs.iter().map(|r| f(r)).nan_max()
}

/// The median run's `f` (NaN if there are no runs or any run's is NaN). The reference ranges
/// come from five runs, so one run of three falling below them says little; the typical run
/// should sit inside them.
fn median_over(runs: &[&RunResult], f: impl Fn(&RunResult) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
    if v.iter().any(|x| x.is_nan()) || v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let k = v.len();
    if k % 2 == 1 {
        v[k / 2]
    } else {
        0.5 * (v[k / 2 - 1] + v[k / 2])
    }
}

/// `f` of run `r`'s checkpoint at step `t` (NaN if the run has none there).
fn at_step(r: &RunResult, t: usize, f: fn(&Checkpoint) -> f64) -> f64 {
    r.checkpoints
        .iter()
        .find(|c| c.step == t)
        .map_or(f64::NAN, f)
}

/// Run `r`'s overlap of the top subspaces at steps `a` and `b` (NaN if not measured).
fn overlap_at(r: &RunResult, a: usize, b: usize) -> f64 {
    r.overlaps
        .iter()
        .find(|o| o.from == a && o.to == b)
        .map_or(f64::NAN, |o| o.overlap)
}

/// The paper's §2 statements on f_top (the gradient's share in the top-k Hessian eigenspace):
/// its level after the transient, the knee at k = C, and the short transient; each with
/// whether the run is long enough for its checkpoints.
fn ftop_claims(sc: &Scale, runs: &[&RunResult]) -> Vec<(bool, Claim)> {
    vec![
        (
            sc.steps >= 200,
            Claim::at_least(
                "hessian.ftop10_median",
                &format!("{PAPER} §2"),
                "after a short transient the gradient lies mostly in the top-C (C = 10) Hessian eigenspace: median f_top over steps ≥ 200, worst run (SGD, momentum, Adam)",
                min_over(runs, |r| r.median_ftop10),
                0.85,
                "docs/derivations/hessian.md#reference-runs: observed 0.89–0.93",
            )
.calibrated(),
        ),
        (
            sc.steps >= 200,
            Claim::at_least(
                "hessian.ftop10_mean",
                &format!("{PAPER} §2"),
                "mean f_top(k = 10) over steps ≥ 200, worst run",
                min_over(runs, |r| r.mean_ftop10),
                0.85,
                "docs/derivations/hessian.md#reference-runs: observed 0.88–0.91",
            )
.calibrated(),
        ),
        (
            sc.steps >= 200,
            Claim::at_least(
                "hessian.knee_5_to_10",
                &format!("{PAPER} §2"),
                &format!(
                    "the number that matters is the number of classes: median f_top(10) − f_top(5), median run (smallest: {})",
                    fmt_num(min_over(runs, |r| r.median_ftop10 - r.median_ftop5))
                ),
                median_over(runs, |r| r.median_ftop10 - r.median_ftop5),
                0.07,
                "the lower end of docs/derivations/hessian.md#reference-runs: observed 0.07–0.18 (no margin)",
            )
.calibrated(),
        ),
        (
            sc.steps >= 200,
            Claim::at_most(
                "hessian.knee_10_to_20",
                &format!("{PAPER} §2"),
                "little is gained past k = C: median f_top(20) − f_top(10), largest over runs",
                max_over(runs, |r| r.median_ftop20 - r.median_ftop10),
                0.07,
                "docs/derivations/hessian.md#reference-runs: observed 0.03–0.05",
            )
.calibrated(),
        ),
        (
            sc.steps >= 10,
            Claim::at_most(
                "hessian.transient_step10",
                &format!("{PAPER} §2"),
                "at first the gradient is not in the top subspace: f_top(10) at step 10, largest over runs",
                max_over(runs, |r| at_step(r, 10, |c| c.ftop10)),
                0.3,
                "docs/derivations/hessian.md#reference-runs: observed 0.08–0.19",
            )
.calibrated(),
        ),
        (
            sc.steps >= 100,
            Claim::at_least(
                "hessian.sgd_step100",
                &format!("{PAPER} §2"),
                "the transient is short: f_top(10) at step 100 with SGD",
                at_step(runs[0], 100, |c| c.ftop10),
                0.75,
                "docs/derivations/hessian.md#reference-runs: observed 0.83–0.94",
            )
.calibrated(),
        ),
    ]
}

/// The paper's §3 statements: the top subspace settles (overlaps between checkpoints, up to
/// the last checkpoint `last`); each with whether the run reaches its checkpoints.
fn overlap_claims(sc: &Scale, runs: &[&RunResult], last: usize) -> Vec<(bool, Claim)> {
    vec![
        (
            sc.steps >= 400,
            Claim::at_least(
                "hessian.overlap_200_400",
                &format!("{PAPER} §3"),
                "the top subspace changes slowly: overlap of the top-10 subspaces at steps 200 and 400, worst run",
                min_over(runs, |r| overlap_at(r, 200, 400)),
                0.8,
                "docs/derivations/hessian.md#reference-runs: observed 0.84–0.94",
            )
.calibrated(),
        ),
        (
            last > 1000,
            Claim::at_least(
                "hessian.overlap_1000_end",
                &format!("{PAPER} §3"),
                &format!(
                    "overlap of the top-10 subspaces at steps 1000 and {last}, median run (worst: {})",
                    fmt_num(min_over(runs, |r| overlap_at(r, 1000, last)))
                ),
                median_over(runs, |r| overlap_at(r, 1000, last)),
                0.71,
                "the lower end of docs/derivations/hessian.md#reference-runs: observed 0.71–0.83 (no margin)",
            )
.calibrated(),
        ),
        (
            last > 200,
            Claim::at_least(
                "hessian.overlap_200_end",
                &format!("{PAPER} §3"),
                &format!("overlap of the top-10 subspaces at steps 200 and {last}, worst run"),
                min_over(runs, |r| overlap_at(r, 200, last)),
                0.4,
                "docs/derivations/hessian.md#reference-runs: observed 0.52–0.64",
            )
.calibrated(),
        ),
    ]
}

/// The numerics check: Lanczos Ritz residuals of the top 10 at every checkpoint after step 0;
/// with whether the run reaches one.
fn lanczos_claim(sc: &Scale, runs: &[&RunResult]) -> (bool, Claim) {
    (
        sc.steps >= 10,
        Claim::at_most(
            "hessian.lanczos_residual",
            "numerics (docs/derivations/hessian.md#lanczos)",
            "Lanczos Ritz residuals |Hy − θy|/|λ₁| of the top 10 with exact R-operator HVPs, every checkpoint after step 0",
            max_over(runs, |r| {
                r.checkpoints
                    .iter()
                    .filter(|c| c.step > 0)
                    .map(|c| c.max_residual)
                    .nan_max()
            }),
            1e-5,
            "docs/derivations/hessian.md#reference-runs: observed ≤ 1.1e-6",
        )
.calibrated(),
    )
}

/// The paper's statements (and the ablation's) against the runs, in a fixed order: f_top
/// ([`ftop_claims`]), overlaps ([`overlap_claims`]), numerics ([`lanczos_claim`]), ablation
/// ([`ablation_claims`]); claims whose checkpoints a short run does not reach are left out.
pub(super) fn claims(cfg: &Config, runs: &[&RunResult], abl: Option<&Ablation>) -> Vec<Claim> {
    let sc = &cfg.scale;
    // docs/derivations/hessian.md#acceptance-criteria, calibrated on the reference runs.
    let last = sc.steps / 100 * 100;
    // Each claim needs its checkpoints to exist (short runs from the CLI skip the rest).
    let mut candidates = ftop_claims(sc, runs);
    candidates.extend(overlap_claims(sc, runs, last));
    candidates.push(lanczos_claim(sc, runs));
    let mut claims: Vec<Claim> = candidates
        .into_iter()
        .filter_map(|(ok, c)| ok.then_some(c))
        .collect();
    claims.extend(abl.map(ablation_claims).unwrap_or_default());
    claims
}

/// The median over seeds of `f` for the class-subset runs with `c` classes (NaN if none).
fn subset_median(runs: &[SubsetRun], c: usize, f: impl Fn(&SubsetRun) -> f64) -> f64 {
    super::median(runs.iter().filter(|r| r.classes == c).map(f).collect())
}

/// The class-subset statements (abstract and §2: the top subspace has as many directions as
/// there are classes), per class count C, each on the median run over seeds:
/// the outlier count (location of the largest eigengap), the outlier gap against the bulk's
/// own largest gap, and the share of f_top(top) already held by the top C directions
/// (docs/derivations/hessian.md#class-subsets).
pub(super) fn subset_claims(runs: &[SubsetRun]) -> Vec<Claim> {
    let mut cs: Vec<usize> = runs.iter().map(|r| r.classes).collect();
    cs.sort_unstable();
    cs.dedup();
    let mut claims = vec![];
    for c in cs {
        let n = runs.iter().filter(|r| r.classes == c).count();
        let seeds = if n == 1 {
            "one seed".to_string()
        } else {
            format!("median of {n} seeds")
        };
        claims.push(
            Claim::within(
                &format!("hessian.subsets.outliers_c{c}"),
                &format!("{PAPER} abstract, §2"),
                &format!(
                    "C = {c} classes: the number of outlier eigenvalues (location k of the largest gap λ_k/λ_(k+1) among the top 20, median over checkpoints; {seeds}) is about C − 1 = {}",
                    c - 1
                ),
                subset_median(runs, c, |r| r.largest_gap_at),
                (c - 1) as f64,
                2.0,
                "expected C − 1: the softmax logit Hessian diag(p) − ppᵀ has rank C − 1 (docs/derivations/hessian.md#class-subsets; the paper says C); tolerance 2 from our runs: C − 1, C − 1, C − 3 at C = 2, 5, 10 in 3 seeds × 1500 and 3000 steps",
            )
            .calibrated(),
        );
        claims.push(
            Claim::at_least(
                &format!("hessian.subsets.gap_c{c}"),
                &format!("{PAPER} abstract, §2"),
                &format!(
                    "C = {c}: the outliers stand apart — the largest gap λ_k/λ_(k+1) with k ≤ C over the largest gap inside the bulk (C < k < 20), medians over checkpoints; {seeds}"
                ),
                subset_median(runs, c, |r| r.gap_at_c / r.bulk_gap),
                1.0,
                "1: the bulk's own largest gap, measured in the same spectrum, is the size a fluctuation reaches; observed 1.4–2.7 in our 18 runs (docs/derivations/hessian.md#class-subsets)",
            )
            .calibrated(),
        );
        claims.push(
            Claim::at_least(
                &format!("hessian.subsets.ftop_c{c}"),
                &format!("{PAPER} §2"),
                &format!(
                    "C = {c}: the top C directions hold most of the gradient the top 20 hold — f_top(C)/f_top(20), medians over checkpoints; {seeds}"
                ),
                subset_median(runs, c, |r| {
                    match (r.ftop.get(c - 1), r.ftop.last()) {
                        (Some(a), Some(b)) if *b > 0.0 => a / b,
                        _ => f64::NAN,
                    }
                }),
                0.75,
                "docs/derivations/hessian.md#class-subsets: observed 0.77–0.97 in our 18 runs (C = 2, 5, 10; 3 seeds; 1500 and 3000 steps)",
            )
            .calibrated(),
        );
    }
    claims
}

/// The class-subset statements for the CNN on all 10 classes (§2: the picture holds for
/// convolutional networks too), with the MLP's criteria (docs/derivations/hessian.md#cnn).
pub(super) fn cnn_claims(cnn: &CnnRun) -> Vec<Claim> {
    let r = &cnn.run;
    let net = &cnn.model;
    let carried = "criterion carried over from the MLP class-subset runs; not calibrated on CNN runs (one run per scale so far)";
    vec![
        Claim::within(
            "hessian.cnn.outliers",
            &format!("{PAPER} abstract, §2"),
            &format!("CNN {net}: the number of outlier eigenvalues (location k of the largest gap λ_k/λ_(k+1) among the top 20, median over checkpoints) is about C − 1 = 9"),
            r.largest_gap_at,
            9.0,
            2.0,
            &format!("expected C − 1 (rank of the softmax logit Hessian, docs/derivations/hessian.md#class-subsets); tolerance 2: {carried}"),
        )
        .calibrated(),
        Claim::at_least(
            "hessian.cnn.gap",
            &format!("{PAPER} abstract, §2"),
            &format!("CNN {net}: the outliers stand apart — the largest gap λ_k/λ_(k+1) with k ≤ 10 over the largest gap inside the bulk (10 < k < 20), medians over checkpoints"),
            r.gap_at_c / r.bulk_gap,
            1.0,
            &format!("1: the bulk's own largest gap, measured in the same spectrum, is the size a fluctuation reaches; {carried}"),
        )
        .calibrated(),
        Claim::at_least(
            "hessian.cnn.ftop",
            &format!("{PAPER} §2"),
            &format!("CNN {net}: the top 10 directions hold most of the gradient the top 20 hold — f_top(10)/f_top(20), medians over checkpoints"),
            match (r.ftop.get(9), r.ftop.last()) {
                (Some(a), Some(b)) if *b > 0.0 => a / b,
                _ => f64::NAN,
            },
            0.75,
            &format!("0.75 as for the MLP (observed 0.77–0.97 there); {carried}"),
        )
        .calibrated(),
    ]
}

/// The toy model's statements (§3), read at the last step of the runs with the smallest σ
/// (the spectrum) or every σ (the gradient, the bulk's scaling).
pub(super) fn toy_claims(runs: &[ToyRun]) -> Vec<Claim> {
    if runs.is_empty() {
        return vec![];
    }
    let s_min = runs.iter().map(|r| r.sigma).fold(f64::INFINITY, f64::min);
    let smallest: Vec<&ToyRun> = runs.iter().filter(|r| r.sigma == s_min).collect();
    let ks: Vec<usize> = smallest.iter().map(|r| r.classes).collect();
    let top_err = smallest.iter().map(|r| r.top_rel_error).nan_max();
    let mid_err = smallest
        .iter()
        .filter(|r| r.classes >= 3)
        .map(|r| r.middle_rel_error)
        .nan_max();
    let ftop_min = runs
        .iter()
        .map(|r| r.checkpoints.last().map_or(f64::NAN, |c| c.ftop[1]))
        .nan_min();
    let exp_err = ks
        .iter()
        .map(|&k| (super::toy::bulk_exponent(runs, k) - 2.0).abs())
        .nan_max();
    let s = fmt_num(s_min);
    let mut claims = vec![Claim::at_most(
            "hessian.toy.k_outliers",
            &format!("{PAPER} §3"),
            &format!("softmax regression on a k-class Gaussian mixture (k = {ks:?}, σ = {s}): at every checkpoint the top k Hessian eigenvalues equal the solved σ² → 0 model's ε_t(1 − (k−1)ε_t); worst relative deviation"),
            top_err,
            0.02,
            "our threshold, 2.5× the largest of seeds 0–2 (0.0055, 0.0081, 0.0078); the σ = 0 simulation equals the theory to 1e-9 (test), the σ corrections are O(σ²) and O(σ/√n_c), and the paper's late-time 1/(ηt) is off by up to 4.2 on the same spectra",
        )
        .calibrated()];
    // Made only where they can be measured: a k ≥ 3 (k = 2 has no middle group), two noise levels.
    if ks.iter().any(|&k| k >= 3) {
        claims.push(Claim::at_most(
            "hessian.toy.middle_eigenvalues",
            &format!("{PAPER} §3 (k-class case stated from experiment; solved here)"),
            &format!("below the k outliers sit k(k−2) eigenvalues ε_t/k, a factor k(1 − (k−1)ε_t) lower (k ≥ 3, σ = {s}, every checkpoint); worst relative deviation"),
            mid_err,
            0.05,
            "our threshold, 3× the largest of seeds 0–2 (0.016, 0.015, 0.012)",
        )
        .calibrated());
    }
    claims.push(Claim::at_least(
            "hessian.toy.gradient_in_top_k",
            &format!("{PAPER} §3"),
            "with sample noise the gradient still lies in the top-k subspace: smallest f_top(k) at the last step over every k and σ",
            ftop_min,
            0.99,
            "our threshold: the theory gives 1 at σ = 0, less by O(σ²)",
        )
        .calibrated());
    let mut sigmas: Vec<f64> = runs.iter().map(|r| r.sigma).filter(|s| *s > 0.0).collect();
    sigmas.sort_by(f64::total_cmp);
    sigmas.dedup();
    if sigmas.len() >= 2 {
        claims.push(Claim::at_most(
            "hessian.toy.bulk_suppressed_by_sigma2",
            &format!("{PAPER} §3"),
            "the bulk (the eigenvalues that vanish at σ = 0) is suppressed by σ²: worst |p − 2| over k of the fitted exponent of λ_bulk/λ_top ∝ σ^p",
            exp_err,
            0.3,
            "our threshold for the corrections to the leading σ² over σ = 0.05…0.2; seeds 0–2 gave 0.07, 0.06, 0.04",
        )
        .calibrated());
    }
    claims
}
