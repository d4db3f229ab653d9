//! Checks made before any work starts: every size flag is in range, and a run whose estimated
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
/// the flag with the largest share, the estimate and the budget.
pub fn check_memory(what: &str, terms: &[Term<'_>]) -> Result<()> {
    let total = sum(&terms.iter().map(|t| t.2).collect::<Vec<_>>());
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
