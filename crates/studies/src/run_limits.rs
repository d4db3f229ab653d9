//! Checks the CLI and the Python package make before any work starts: every size flag is in range, and a run whose estimated
//! memory exceeds what the machine has is refused with the number and the flag to change.
//!
//! The memory budget is `DLT_MAX_MEMORY` (bytes, or with a K/M/G/T suffix, powers of 1024) when
//! set, else `MemAvailable` from /proc/meminfo; where neither is known only estimates that
//! overflow 64 bits are refused. Estimates are the dominant buffers of a run (a lower bound),
//! computed with checked arithmetic: an overflow is "more than 16 EiB".

use anyhow::Result;

/// The memory a run may plan to use, in bytes (see the module doc).
pub fn memory_budget() -> Option<(u64, &'static str)> {
    if let Ok(v) = std::env::var("DLT_MAX_MEMORY") {
        return parse_bytes(&v).map(|b| (b, "DLT_MAX_MEMORY"));
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib.checked_mul(1024)?, "MemAvailable in /proc/meminfo"))
}

fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Bytes in human units.
pub fn human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// Checked product (`None` on overflow).
pub fn prod(xs: &[usize]) -> Option<u64> {
    xs.iter()
        .try_fold(1u64, |a, &x| a.checked_mul(u64::try_from(x).ok()?))
}

/// Checked sum of estimates (`None` when any is unknown or the sum overflows).
pub fn sum(xs: &[Option<u64>]) -> Option<u64> {
    xs.iter().try_fold(0u64, |a, x| a.checked_add((*x)?))
}

/// One flag's share of a run's memory: (flag, its value as given, bytes; `None` = overflow).
pub type Term<'a> = (&'a str, String, Option<u64>);

/// Refuse a run whose estimated memory (the sum of `terms`) exceeds the budget; the error names
/// the flag with the largest share, the estimate and the budget. Reading `MemAvailable` costs
/// about 30 µs (ten times a small Python call), so without `DLT_MAX_MEMORY` an estimate of at
/// most 16 MiB, which any machine running us has, passes without reading it.
pub fn check_memory(what: &str, terms: &[Term<'_>]) -> Result<()> {
    let total = sum(&terms.iter().map(|t| t.2).collect::<Vec<_>>());
    if total.is_some_and(|t| t <= 16 << 20) && std::env::var_os("DLT_MAX_MEMORY").is_none() {
        return Ok(());
    }
    let budget = memory_budget();
    let over = match (total, budget) {
        (None, _) => true,
        (Some(t), Some((b, _))) => t > b,
        (Some(_), None) => false,
    };
    if !over {
        return Ok(());
    }
    // The culprit: the largest share; among shares that overflow, the flag given the
    // largest value.
    let size = |v: &str| v.parse::<f64>().unwrap_or(f64::INFINITY);
    let (flag, value, _) = if terms.iter().any(|t| t.2.is_none()) {
        terms
            .iter()
            .filter(|t| t.2.is_none())
            .max_by(|a, b| size(&a.1).total_cmp(&size(&b.1)))
    } else {
        terms.iter().max_by_key(|t| t.2)
    }
    .expect("at least one term");
    let need = total.map_or("more than 16 EiB".to_string(), |t| {
        format!("about {}", human(t))
    });
    let have = budget.map_or("the 64-bit address space".to_string(), |(b, src)| {
        format!("the {} available ({src})", human(b))
    });
    anyhow::bail!(
        "{flag} {value}: {what} would need {need} of memory, more than {have}; use a smaller {flag}"
    )
}

/// The most arithmetic a run may plan: 10¹⁷ multiply-adds, more than a day at 10¹² per second.
pub const MAX_WORK: u64 = 100_000_000_000_000_000;

/// Refuse a run whose estimated arithmetic (multiply-adds; `None` = overflow) exceeds
/// [`MAX_WORK`], naming `flag`.
pub fn check_work(what: &str, flag: &str, value: &str, ops: Option<u64>) -> Result<()> {
    if ops.is_some_and(|o| o <= MAX_WORK) {
        return Ok(());
    }
    let need = ops.map_or("more than 1.8e19".to_string(), |o| {
        format!("about {:.1e}", o as f64)
    });
    anyhow::bail!(
        "{flag} {value}: {what} would take {need} multiply-adds, more than the {:.0e} this tool plans for (over a day); use a smaller {flag}",
        MAX_WORK as f64
    )
}

/// Of two flags whose product sizes a buffer, the one given the larger value (named when the
/// product is too large).
pub fn larger<'a>(a: (&'a str, usize), b: (&'a str, usize)) -> (&'a str, String) {
    let (f, v) = if b.1 > a.1 { b } else { a };
    (f, v.to_string())
}

/// A count that must be at least `min`.
pub fn at_least(flag: &str, v: usize, min: usize) -> Result<()> {
    anyhow::ensure!(v >= min, "{flag} {v}: must be ≥ {min}");
    Ok(())
}

/// A count that must be at most `max` (a documented cap), with the reason.
pub fn at_most(flag: &str, v: usize, max: usize, why: &str) -> Result<()> {
    anyhow::ensure!(v <= max, "{flag} {v}: must be ≤ {max} ({why})");
    Ok(())
}

/// A number that must be finite and > 0.
pub fn positive(flag: &str, v: f64) -> Result<()> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0,
        "{flag} {v}: must be a finite number > 0"
    );
    Ok(())
}

/// Sizes of `collapse linear` (CLI and Python), checked before any work (issue 12): the per-seed errors of every
/// generation and, when data accumulate, every generation's T samples per worker must fit.
pub fn collapse_linear(
    d: usize,
    t: usize,
    generations: usize,
    policy: dlt_theory::collapse::Policy,
    seeds: usize,
) -> Result<()> {
    at_least("--d", d, 1)?;
    at_least("--generations", generations, 1)?;
    at_least("--seeds", seeds, 2)?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |v| v.get())
        .min(seeds);
    let kept = if policy == dlt_theory::collapse::Policy::Replace {
        1
    } else {
        generations
    };
    check_memory(
        "collapse linear",
        &[
            (
                "--generations",
                generations.to_string(),
                prod(&[kept, t, d.saturating_add(1), workers, 8])
                    .and_then(|b| b.checked_add(prod(&[generations, seeds, 8])?)),
            ),
            ("--seeds", seeds.to_string(), prod(&[seeds, 8])),
            (
                "--t",
                t.to_string(),
                prod(&[t, d.saturating_add(1), workers, 8]),
            ),
            ("--d", d.to_string(), prod(&[d, d, workers, 8])),
        ],
    )?;
    anyhow::ensure!(
        t >= d.saturating_add(2),
        "--t {t}: OLS needs T ≥ d + 2 for a finite expected error (d = {d})"
    );
    Ok(())
}

/// Sizes of `collapse gaussian` (CLI and Python), checked before any work (issue 12): the samples a generation
/// keeps (all generations' when data accumulate), the d × d covariance and the per-seed
/// statistics of every generation fit in memory, and the fits (about T·d² multiply-adds per
/// kept sample set) are at most [`MAX_WORK`].
pub fn collapse_gaussian(
    dim: usize,
    t: usize,
    generations: usize,
    policy: dlt_theory::collapse::Policy,
    seeds: usize,
) -> Result<()> {
    at_least("--dim", dim, 1)?;
    at_least("--generations", generations, 1)?;
    at_least("--seeds", seeds, 2)?;
    let kept = if policy == dlt_theory::collapse::Policy::Replace {
        1
    } else {
        generations
    };
    check_memory(
        "collapse gaussian",
        &[
            (
                "--generations",
                generations.to_string(),
                prod(&[kept, t, dim, 8]),
            ),
            {
                let (f, v) = larger(("--seeds", seeds), ("--generations", generations));
                (f, v, prod(&[generations, seeds, 2 * 8]))
            },
            ("--t", t.to_string(), prod(&[t, dim, 8])),
            ("--dim", dim.to_string(), prod(&[dim, dim, 4 * 8])),
        ],
    )?;
    anyhow::ensure!(
        t > dim,
        "--t {t}: need more samples than dimensions for a full-rank MLE covariance (dim = {dim}); use --t ≥ {}",
        dim + 1
    );
    let (f, v) = larger(("--seeds", seeds), ("--generations", generations));
    check_work(
        "collapse gaussian",
        f,
        &v,
        prod(&[seeds, generations, kept.div_ceil(2), t, dim, dim]),
    )
}

/// Sizes of `scaling spectrum` (CLI and Python), checked before any work: m, n ≥ 1 and the
/// n × m features, the n × n Gram matrix and (tanh only) the input-scale samples in memory.
pub fn scaling_spectrum(m: usize, n: usize, samples: usize, tanh: bool) -> Result<()> {
    at_least("--m", m, 1)?;
    at_least("--n", n, 1)?;
    let samples_used = if tanh { samples } else { 0 };
    check_memory(
        "scaling spectrum",
        &[
            ("--m", m.to_string(), prod(&[n, m, 3 * 8])),
            ("--n", n.to_string(), prod(&[n, n, 3 * 8])),
            (
                "--samples",
                samples.to_string(),
                prod(&[samples_used, m.saturating_add(n), 8]),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_and_budget() {
        assert_eq!(prod(&[usize::MAX, 2]), None);
        assert_eq!(prod(&[3, 4]), Some(12));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert!(check_memory("x", &[("--a", "1".into(), Some(1))]).is_ok());
        let e = check_memory(
            "x",
            &[("--a", "1".into(), Some(1)), ("--b", "9".into(), None)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--b 9:") && e.contains("16 EiB"), "{e}");
    }
}
