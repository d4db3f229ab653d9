//! The claims of `prune`, checked on the measurements against the paper.

use super::{Best, Comparison, Measured, Scale, PAPER};
use crate::claim::{Claim, NanFold};
use dlt_llm::eval::paired_difference;

/// Standard errors by which a paired comparison must clear its bound to count as resolved
/// (two-sided 95 % under the batch-means normal approximation).
const K_SE: f64 = 2.0;

/// The paired per-token comparisons behind the claims (docs/derivations/prune.md
/// #paired-differences): per dropped n, the angular rule against the mean of the random draws
/// and against drop-last; per healed n, healed against unhealed for each rule, and drop-last
/// against angular before and after healing.
pub(super) fn comparisons(sc: &Scale, m: &Measured) -> Vec<Comparison> {
    let mut out = vec![];
    let mut push = |kind: &str, n: usize, a: &[f64], b: &[f64]| {
        let (dnll, se) = paired_difference(a, b, sc.se_block);
        out.push(Comparison {
            kind: kind.into(),
            n,
            dnll,
            se,
        });
    };
    let rows = |rule: &str, n: usize| {
        m.pruning
            .iter()
            .filter(|r| r.rule == rule && r.n == n)
            .collect::<Vec<_>>()
    };
    for &n in &sc.drops {
        let (Some(ang), Some(last)) = (rows("angular", n).pop(), rows("last", n).pop()) else {
            continue;
        };
        let random = rows("random", n);
        if !random.is_empty() {
            // The random rule's per-token loss, averaged over its draws: its mean is the log of
            // the geometric mean of the draws' perplexities.
            let mean: Vec<f64> = (0..ang.token_nll.len())
                .map(|t| {
                    random
                        .iter()
                        .map(|r| r.token_nll.get(t).copied().unwrap_or(f64::NAN))
                        .sum::<f64>()
                        / random.len() as f64
                })
                .collect();
            push("angular_vs_random", n, &ang.token_nll, &mean);
        }
        push("angular_vs_last", n, &ang.token_nll, &last.token_nll);
    }
    for &n in &sc.heal_drops {
        let row = |rule: &str| m.healing.iter().find(|h| h.rule == rule && h.n == n);
        for rule in ["angular", "last"] {
            if let Some(h) = row(rule) {
                push(
                    &format!("healed_vs_unhealed_{rule}"),
                    n,
                    &h.after_tokens,
                    &h.before_tokens,
                );
            }
        }
        if let (Some(a), Some(c)) = (
            row("angular"),
            m.healing.iter().find(|h| h.rule == "control"),
        ) {
            // Per token: the pruned model's healing change minus the control's (same tokens).
            let gain = |h: &super::HealRow| -> Vec<f64> {
                h.after_tokens
                    .iter()
                    .zip(&h.before_tokens)
                    .map(|(x, y)| x - y)
                    .collect()
            };
            push("repair_vs_control_angular", n, &gain(a), &gain(c));
        }
        if let (Some(a), Some(l)) = (row("angular"), row("last")) {
            push(
                "last_vs_angular_unhealed",
                n,
                &l.before_tokens,
                &a.before_tokens,
            );
            push(
                "last_vs_angular_healed",
                n,
                &l.after_tokens,
                &a.after_tokens,
            );
        }
    }
    out
}

/// The comparisons of one kind.
fn of_kind<'a>(c: &'a [Comparison], kind: &str) -> Vec<&'a Comparison> {
    c.iter().filter(|c| c.kind == kind).collect()
}

/// Among the comparisons resolved by the noise (|ΔNLL| > [`K_SE`] SE), the fraction in which
/// model a is better, and the fraction resolved at all (NaN when there are none or any is
/// unmeasured). An unresolved comparison is evidence neither way.
fn resolved_wins(c: &[&Comparison]) -> (f64, f64) {
    if c.is_empty() || c.iter().any(|c| !(c.dnll.is_finite() && c.se.is_finite())) {
        return (f64::NAN, f64::NAN);
    }
    let resolved: Vec<_> = c.iter().filter(|c| c.dnll.abs() > K_SE * c.se).collect();
    let wins = resolved.iter().filter(|c| c.dnll < 0.0).count() as f64;
    (
        wins / resolved.len().max(1) as f64,
        resolved.len() as f64 / c.len() as f64,
    )
}

/// Spearman's rank correlation of the pairs (no ties expected).
fn spearman(p: &[(f64, f64)]) -> f64 {
    let rank = |v: Vec<f64>| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        for (k, &i) in idx.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let n = p.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let rx = rank(p.iter().map(|x| x.0).collect());
    let ry = rank(p.iter().map(|x| x.1).collect());
    let d2: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - b).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

pub(super) fn geo_mean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

/// The paper's statements against the measurements.
pub(super) fn claims(sc: &Scale, m: &Measured, cmp: &[Comparison]) -> Vec<Claim> {
    let Measured {
        base,
        distances,
        best,
        pruning,
        export,
        ..
    } = m;
    let l_tot = m.l_tot;
    // Claims.
    let mut claims = vec![];
    claims.push(Claim::at_most(
        "prune.base_perplexity",
        "SmolLM2-135M-Instruct (Q4_1)",
        "the unpruned model is a working LM on held-out Shakespeare (perplexity far below the vocabulary size)",
        base.perplexity,
        100.0,
        "a 135M model on Early Modern English; uniform guessing gives 49152",
    ));
    let small: Vec<&Best> = best.iter().filter(|b| b.n <= l_tot / 2).collect();
    let kept_final =
        small.iter().filter(|b| b.end < l_tot).count() as f64 / small.len().max(1) as f64;
    claims.push(Claim::at_least(
        "prune.final_block_kept",
        &format!("{PAPER} §4"),
        "the angular rule keeps the final block (l*(n) + n < L) for n ≤ L/2",
        kept_final,
        0.8,
        "fraction of n ≤ L/2",
    ));
    let row1 = &distances.table[0];
    let se1 = &distances.se[0];
    let mut mid: Vec<(f64, f64)> = row1[2..l_tot - 1]
        .iter()
        .copied()
        .zip(se1[2..l_tot - 1].iter().copied())
        .collect();
    mid.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median, median_se) = mid[mid.len() / 2];
    let (edge, edge_se) = if row1[0] <= row1[l_tot - 1] {
        (row1[0], se1[0])
    } else {
        (row1[l_tot - 1], se1[l_tot - 1])
    };
    let ratio = edge / median;
    // Delta method, the two distances treated as independent (they are averages over the same
    // probe sequences, positively correlated, which makes this SE conservative).
    let ratio_se = ratio * ((edge_se / edge).powi(2) + (median_se / median).powi(2)).sqrt();
    claims.push(
        Claim::at_least(
            "prune.edges_change_most",
            &format!("{PAPER} §4, Fig. 7"),
            "the first and the last block change the residual stream more than the middle ones: min(d(x^(0), x^(1)), d(x^(L−1), x^(L))) / median d(x^(l), x^(l+1)), − 2 SE (delta method over the probe sequences)",
            ratio - K_SE * ratio_se,
            1.5,
            "our bound: the edges 50 % above the median block, beyond the noise",
        )
        .with_se(ratio_se),
    );
    let per_n = |rule: &str, n: usize| -> f64 {
        let v: Vec<f64> = pruning
            .iter()
            .filter(|r| r.rule == rule && r.n == n)
            .map(|r| r.perplexity)
            .collect();
        geo_mean(&v)
    };
    let why = "fraction of the n whose paired comparison is resolved (|ΔNLL| > 2 SE, batch means over 128-token blocks) in which the angular rule's loss is lower";
    let need = "at least half of the n resolved";
    if sc.random_draws > 0 {
        let (wins, resolved) = resolved_wins(&of_kind(cmp, "angular_vs_random"));
        claims.push(
            Claim::at_least(
                "prune.angular_beats_random",
                &format!("{PAPER} §4"),
                "dropping the block of least angular distance costs less perplexity than dropping a random block of the same size",
                wins,
                0.75,
                why,
            )
            .require(resolved >= 0.5, need),
        );
    }
    let (wins, resolved) = resolved_wins(&of_kind(cmp, "angular_vs_last"));
    claims.push(
        Claim::at_least(
            "prune.angular_beats_last_unhealed",
            &format!("{PAPER} §4"),
            "without healing the angular rule beats dropping the deepest blocks before the last",
            wins,
            0.75,
            why,
        )
        .require(resolved >= 0.5, need),
    );
    let nll_angular: Vec<(f64, f64)> = sc
        .drops
        .iter()
        .map(|&n| (n as f64, per_n("angular", n).ln()))
        .collect();
    claims.push(Claim::at_least(
        "prune.loss_grows_with_n",
        &format!("{PAPER} §4, Fig. 2"),
        "the held-out loss grows with the number of blocks dropped (angular rule): Spearman rank correlation of (n, loss)",
        spearman(&nll_angular),
        0.8,
        "1 = strictly increasing; all n share the same tokens, so noise can only swap near-equal neighbours (their paired differences are in `comparisons`)",
    ));
    let healed: Vec<&Comparison> = cmp
        .iter()
        .filter(|c| c.kind.starts_with("healed_vs_unhealed"))
        .collect();
    if !healed.is_empty() {
        // The healed model's loss minus the unhealed one's, plus 2 SE: below 0 for every model
        // means healing lowered each loss by more than its noise.
        let worst = healed.iter().map(|c| c.dnll + K_SE * c.se).nan_max();
        claims.push(Claim::at_most(
            "prune.healing_lowers_perplexity",
            &format!("{PAPER} §3.3, §4"),
            "LoRA healing lowers the held-out loss of every pruned model: largest ln(ppl_after/ppl_before) + 2 paired SE (nats)",
            worst,
            0.0,
            "below 0: every healed model is better by more than 2 SE",
        ));
        let gap = |kind: &str| of_kind(cmp, kind);
        let ratios: Vec<(f64, f64, f64)> = gap("last_vs_angular_healed")
            .iter()
            .zip(gap("last_vs_angular_unhealed"))
            .map(|(a, b)| {
                // r = a/b with the delta-method SE, treating the two gaps as independent.
                let r = a.dnll / b.dnll;
                let se = ((a.se / b.dnll).powi(2) + (r * b.se / b.dnll).powi(2)).sqrt();
                (r, se, b.dnll / b.se)
            })
            .collect();
        if !ratios.is_empty() {
            let (r, se, _) = ratios
                .iter()
                .copied()
                .max_by(|x, y| (x.0 + K_SE * x.1).total_cmp(&(y.0 + K_SE * y.1)))
                .unwrap_or((f64::NAN, f64::NAN, f64::NAN));
            claims.push(
                Claim::at_most(
                    "prune.healing_narrows_last_gap",
                    &format!("{PAPER} §4"),
                    "healing closes most of the gap between the drop-last heuristic and the angular rule: ln(ppl_last/ppl_angular) after / before healing, + 2 SE (delta method), largest over healed n",
                    r + K_SE * se,
                    0.5,
                    "our bound: at least half the gap closed, beyond the noise",
                )
                .with_se(se)
                // The ratio means something only where drop-last was resolvably worse before.
                .require(
                    ratios.iter().all(|x| x.2 > 3.0),
                    "drop-last's loss exceeds the angular rule's before healing by more than 3 SE at every healed n",
                ),
            );
        }
    }
    let repair = of_kind(cmp, "repair_vs_control_angular");
    if !repair.is_empty() {
        let worst = repair.iter().map(|c| c.dnll + K_SE * c.se).nan_max();
        claims.push(Claim::at_most(
            "prune.healing_repairs_the_cut",
            &format!("{PAPER} §3.3"),
            "healing repairs the cut, not only fine-tunes on the healing text: the angular-pruned model's healing change in held-out loss minus the unpruned control's (same recipe, same tokens), + 2 paired SE, largest over healed n (nats)",
            worst,
            0.0,
            "below 0: the pruned model gains more from healing than the unpruned one, beyond the noise",
        ));
    }
    if let Some(e) = export.iter().find(|e| !e.healed) {
        claims.push(Claim::within(
            "prune.export_gguf_exact",
            "dlt export",
            "the exported pruned GGUF reloads with the perplexity of the in-memory pruned model",
            e.reloaded / e.in_memory - 1.0,
            0.0,
            1e-9,
            "tensors are copied, so only summation order could differ",
        ));
    }
    if let Some(e) = export.iter().find(|e| e.healed) {
        claims.push(Claim::within(
            "prune.export_healed_requantised",
            "dlt export",
            "the healed model, merged and written with Q8_0 block weights, keeps its perplexity (relative change)",
            e.reloaded / e.in_memory - 1.0,
            0.0,
            0.02,
            "Q8_0 rounding of the merged weights; Q4_1 would undo the healing",
        ));
    }
    claims.extend(accuracy_claims(sc, m));
    claims
}

/// The claims of part 5 (docs/derivations/prune.md#accuracy-claims), per task of the sweep:
/// accuracy under the angular rule stays flat, then falls to chance within one step of the
/// sweep; and healing a model whose accuracy has collapsed (drop-last) repairs its loss on a
/// text it was not healed on, while its accuracy stays at chance.
fn accuracy_claims(sc: &Scale, m: &Measured) -> Vec<Claim> {
    let acc = m.accuracy;
    let mut out = Vec::new();
    for c in acc.collapse.iter().filter(|c| c.rule == "angular") {
        let width = match (c.flat_until, c.collapse_fraction) {
            (Some(f), Some(k)) => k - f,
            _ => f64::NAN,
        };
        // The sweep's step right after the last flat fraction.
        let step = c.flat_until.map_or(f64::NAN, |f| {
            let n_flat = (f * m.l_tot as f64).round() as usize;
            sc.acc_drops
                .iter()
                .find(|&&n| n > n_flat)
                .map_or(f64::NAN, |&n| (n - n_flat) as f64 / m.l_tot as f64)
        });
        out.push(
            Claim::at_most(
                &format!("prune.{}_flat_then_collapse", c.task),
                &format!("{PAPER} §4.1, Fig. 1"),
                &format!(
                    "{} accuracy under the angular rule stays at the unpruned model's (within 2 paired SE) up to some fraction of blocks dropped, then reaches chance (within 2 SE of a guess) by the next fraction measured: the width between the last flat and the first collapsed fraction",
                    c.task
                ),
                width,
                step + 1e-9,
                "the sweep's next step after the last flat fraction: collapsed by the next model measured is as sharp as the sweep resolves; a gradual decline spreads over several steps",
            )
            .require(
                c.flat_until.is_some(),
                "at least one pruned model is flat",
            )
            .require(
                c.base - c.chance > 2.0 * (c.chance * (1.0 - c.chance) / sc.bench_items as f64).sqrt(),
                "the unpruned model is above chance by more than 2 SE",
            ),
        );
    }
    // Healing a collapsed model: the drop-last model at the first healed n that the sweep also
    // scored unhealed (the full scale heals n = 4, 8, 12 and sweeps n = 3, 6, …: n = 12).
    let Some(&n) = sc.heal_drops.iter().find(|n| sc.acc_drops.contains(n)) else {
        return out;
    };
    let text = "boolq_passages";
    let loss = |rule: &str, n: usize, healed: bool| {
        acc.loss
            .iter()
            .find(|l| l.text == text && l.rule == rule && l.n == n && l.healed == healed)
            .map_or(f64::NAN, |l| l.normalised)
    };
    let (l0, lb, la) = (
        loss("none", 0, false),
        loss("last", n, false),
        loss("last", n, true),
    );
    let repaired = (lb - la) / (lb - l0);
    let mut tasks: Vec<&str> = acc.collapse.iter().map(|c| c.task.as_str()).collect();
    tasks.dedup();
    for task in &tasks {
        let row = |rule: &str, healed: bool| {
            acc.rows.iter().find(|r| {
                r.task == *task
                    && r.rule == rule
                    && r.healed == healed
                    && (r.n == n || rule == "none")
            })
        };
        let (Some(base), Some(after)) = (row("none", false), row("last", true)) else {
            continue;
        };
        let guess_se = (base.chance * (1.0 - base.chance) / base.items as f64).sqrt();
        out.push(
            Claim::at_least(
                &format!("prune.healing_restores_loss_not_{task}"),
                &format!("{PAPER} §4.1–4.2"),
                &format!(
                    "healing the model with the deepest {n} blocks before the last dropped (whose {task} accuracy has collapsed) closes most of its loss gap on BoolQ's passages (a text it is not healed on): the fraction (NLL_before − NLL_after)/(NLL_before − NLL_unpruned) — while its {task} accuracy stays within 2 SE of chance"
                ),
                repaired,
                0.5,
                "half the gap: healing repairs most of the loss (the paper's healed loss grows smoothly with the fraction dropped) [calibration: quick runs close 74 %]",
            )
            .calibrated()
            .require(
                after.accuracy <= base.chance + 2.0 * guess_se,
                &format!(
                    "healed accuracy {:.3} ≤ chance + 2 SE = {:.3}",
                    after.accuracy,
                    base.chance + 2.0 * guess_se
                ),
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{resolved_wins, Comparison};

    fn c(dnll: f64, se: f64) -> Comparison {
        Comparison {
            kind: "angular_vs_random".into(),
            n: 1,
            dnll,
            se,
        }
    }

    #[test]
    fn unresolved_comparisons_count_neither_way() {
        // Two wins beyond 2 SE, one loss beyond 2 SE, one tie inside the noise.
        let v = [c(-1.0, 0.1), c(-0.5, 0.2), c(0.3, 0.1), c(-0.01, 0.02)];
        let refs: Vec<&Comparison> = v.iter().collect();
        let (wins, resolved) = resolved_wins(&refs);
        assert!((wins - 2.0 / 3.0).abs() < 1e-15 && (resolved - 0.75).abs() < 1e-15);
        // A missing SE makes the statistic missing, not a win.
        let bad = [c(-1.0, f64::NAN)];
        assert!(resolved_wins(&bad.iter().collect::<Vec<_>>()).0.is_nan());
        assert!(resolved_wins(&[]).0.is_nan());
    }
}
