//! Range checks shared by the studies' `validate` functions (issue 12): every size in a
//! configuration is refused before any data are read or any work starts when it is 0, not
//! finite, larger than the data set it indexes, or when the arithmetic it implies exceeds
//! [`MAX_WORK`]. Messages name the `dlt` flag that sets the value and say how to fix it.

use crate::study::StudyError;

/// The most arithmetic a study run may plan: 10¹⁷ multiply-adds, more than a day at 10¹²
/// per second (the same bound as the CLI's `limits::MAX_WORK`).
pub const MAX_WORK: f64 = 1e17;

/// A configuration error naming `what` (the flag and its value) and the fix.
pub fn invalid(what: impl Into<String>, fix: impl Into<String>) -> StudyError {
    StudyError::Nn(dlt_nn::NnError::Invalid {
        what: what.into(),
        fix: fix.into(),
    })
}

/// A count that must be at least `min`.
pub fn at_least(flag: &str, v: usize, min: usize) -> Result<(), StudyError> {
    if v < min {
        return Err(invalid(format!("{flag} {v}"), format!("must be ≥ {min}")));
    }
    Ok(())
}

/// A count that must be at most `max`, with the reason (a data set's size, a model's width).
pub fn at_most(flag: &str, v: usize, max: usize, why: &str) -> Result<(), StudyError> {
    if v > max {
        return Err(invalid(
            format!("{flag} {v}"),
            format!("must be ≤ {max} ({why})"),
        ));
    }
    Ok(())
}

/// Every element of a comma-separated list flag at least `min` (and the list not empty).
pub fn each_at_least(flag: &str, v: &[usize], min: usize) -> Result<(), StudyError> {
    if v.is_empty() {
        return Err(invalid(
            format!("{flag} (empty)"),
            "give at least one value",
        ));
    }
    if let Some(x) = v.iter().find(|&&x| x < min) {
        return Err(invalid(
            format!("{flag} {}", list(v)),
            format!("every value must be ≥ {min}, not {x}"),
        ));
    }
    Ok(())
}

/// A number that must be finite and > 0.
pub fn positive(flag: &str, v: f64) -> Result<(), StudyError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(invalid(
            format!("{flag} {v}"),
            "must be a finite number > 0",
        ));
    }
    Ok(())
}

/// A list as it is typed on the command line.
pub fn list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Refuse a run whose estimated arithmetic, `base` times the product of the factors, exceeds
/// [`MAX_WORK`] (or is not finite). Each factor is (flag, its value as typed, its share of the
/// work); the error names the flag with the largest share.
pub fn check_work(
    what: &str,
    base: f64,
    factors: &[(&str, String, f64)],
) -> Result<(), StudyError> {
    let total = factors.iter().fold(base, |a, f| a * f.2);
    if total.is_finite() && total <= MAX_WORK {
        return Ok(());
    }
    let (flag, value, _) = factors
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("at least one factor");
    Err(invalid(
        format!("{flag} {value}"),
        format!(
            "{what} would take about {total:.1e} multiply-adds, more than the {MAX_WORK:.0e} this tool plans for (over a day); use a smaller {flag}"
        ),
    ))
}

/// Parameters of a dense network with the given layer widths (as f64: no overflow).
pub fn dense_params(widths: &[usize]) -> f64 {
    widths
        .windows(2)
        .map(|w| w[0] as f64 * w[1] as f64 + w[1] as f64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_flag() {
        let e = check_work(
            "x",
            1.0,
            &[("--a", "2".into(), 2.0), ("--b", "1e30".into(), 1e30)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("invalid --b 1e30:"), "{e}");
        assert!(check_work("x", 1.0, &[("--a", "2".into(), 2.0)]).is_ok());
        let e = each_at_least("--hidden", &[3, 0], 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--hidden 3,0"), "{e}");
        assert!(positive("--lr", f64::NAN).is_err());
    }
}
