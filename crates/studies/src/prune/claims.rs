//! The claims of `prune`, checked on the measurements against the paper.

use super::{Best, HealRow, Measured, Scale, PAPER};
use crate::claim::{Claim, NanFold};

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
pub(super) fn claims(sc: &Scale, m: &Measured) -> Vec<Claim> {
    let Measured {
        base,
        distances,
        best,
        pruning,
        healing,
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
    let mut mid: Vec<f64> = row1[2..l_tot - 1].to_vec();
    mid.sort_by(|a, b| a.total_cmp(b));
    let median = mid[mid.len() / 2];
    claims.push(Claim::at_least(
        "prune.edges_change_most",
        &format!("{PAPER} §4, Fig. 7"),
        "the first and the last block change the residual stream more than the middle ones: min(d(x^(0), x^(1)), d(x^(L−1), x^(L))) / median d(x^(l), x^(l+1))",
        row1[0].min(row1[l_tot - 1]) / median,
        1.5,
        "ratio to the median block",
    ));
    let per_n = |rule: &str, n: usize| -> f64 {
        let v: Vec<f64> = pruning
            .iter()
            .filter(|r| r.rule == rule && r.n == n)
            .map(|r| r.perplexity)
            .collect();
        geo_mean(&v)
    };
    let frac = |f: &dyn Fn(usize) -> bool| {
        sc.drops.iter().filter(|&&n| f(n)).count() as f64 / sc.drops.len() as f64
    };
    if sc.random_draws > 0 {
        claims.push(Claim::at_least(
            "prune.angular_beats_random",
            &format!("{PAPER} §4"),
            "dropping the block of least angular distance costs less perplexity than dropping a random block of the same size",
            frac(&|n| per_n("angular", n) <= per_n("random", n)),
            0.75,
            "fraction of n where angular ≤ geometric mean of random draws",
        ));
    }
    claims.push(Claim::at_least(
        "prune.angular_beats_last_unhealed",
        &format!("{PAPER} §4"),
        "without healing the angular rule beats dropping the deepest blocks before the last",
        frac(&|n| per_n("angular", n) <= per_n("last", n)),
        0.75,
        "fraction of n",
    ));
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
        "1 = strictly increasing; single steps may dip within the noise",
    ));
    if !healing.is_empty() {
        let worst = healing.iter().map(|h| h.after / h.before).nan_max();
        claims.push(Claim::at_most(
            "prune.healing_lowers_perplexity",
            &format!("{PAPER} §3.3, §4"),
            "LoRA healing lowers the perplexity of every pruned model (largest after/before ratio)",
            worst,
            1.0,
            "after < before",
        ));
        let gap = |n: usize, f: &dyn Fn(&HealRow) -> f64| -> Option<f64> {
            let a = healing.iter().find(|h| h.rule == "angular" && h.n == n)?;
            let l = healing.iter().find(|h| h.rule == "last" && h.n == n)?;
            Some((f(l) / f(a)).ln())
        };
        let narrow: Vec<f64> = sc
            .heal_drops
            .iter()
            .filter_map(|&n| Some(gap(n, &|h| h.after)? / gap(n, &|h| h.before)?))
            .collect();
        if !narrow.is_empty() {
            claims.push(Claim::at_most(
                "prune.healing_narrows_last_gap",
                &format!("{PAPER} §4"),
                "healing closes most of the gap between the drop-last heuristic and the angular rule: ln(ppl_last/ppl_angular) after / before healing",
                narrow.iter().copied().nan_max(),
                0.5,
                "largest ratio over healed n",
            )
            // The ratio means something only where drop-last was worse before healing.
            .require(
                sc.heal_drops
                    .iter()
                    .all(|&n| gap(n, &|h| h.before).is_some_and(|g| g > 0.0)),
                "drop-last's perplexity exceeds the angular rule's before healing at every n",
            ));
        }
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
    claims
}
