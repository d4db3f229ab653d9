//! A claim: one statement of a paper that a study tests, the number this run measured, and the
//! criterion that decided it. The two numbers a reader compares are kept apart: `expected` is a
//! *prediction* (the paper's number, or the theory's, computed in this run), and `threshold` is
//! what the criterion compares with — a tolerance or a bound — labelled with where it comes from
//! (`threshold_source`): the paper, the theory (an error bar or truncation error), or our own
//! calibration on reference runs of this code, which is not a prediction.
//!
//! Every constructor refuses to call a missing value a success: a non-finite measurement,
//! prediction, bound or standard error makes the claim fail, and says so in its criterion.

use crate::output::fmt_num;
use serde::{Deserialize, Serialize};

/// Where a claim's threshold comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A number or an inequality the paper states.
    Paper,
    /// The theory's own error: k standard errors of a Monte Carlo estimate, or a stated
    /// truncation error of an expansion or a quadrature.
    Theory,
    /// Our threshold, calibrated on reference runs of this code (docs/derivations/*.md
    /// #reference-runs): evidence that the run behaves as the reference runs did, not a
    /// prediction of the paper.
    Calibration,
}

impl Source {
    /// Lower-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Paper => "paper",
            Source::Theory => "theory",
            Source::Calibration => "calibration",
        }
    }
}

/// The tolerance of a Monte Carlo claim: `k` standard errors plus a relative `truncation`
/// error of the prediction (its neglected higher orders, stated in the claim's reason; 0 where
/// none), with the standard error itself at most `max_rel_se` of the prediction.
#[derive(Debug, Clone, Copy)]
pub struct McBound {
    /// Standard errors allowed.
    pub k: f64,
    /// Largest SE, relative to |expected|.
    pub max_rel_se: f64,
    /// Relative truncation error of the prediction.
    pub truncation: f64,
}

/// One statement of a paper that a study tests, with our measured number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    /// Stable identifier, e.g. `theory.relu_vertex_slope`.
    pub id: String,
    /// Short paper reference, e.g. "PDLT (arXiv 2106.10165) §5.2".
    pub paper: String,
    /// The claim in words.
    pub claim: String,
    /// What we measured in this run.
    pub measured: f64,
    /// Standard error of `measured`, where it is a Monte Carlo estimate.
    pub se: Option<f64>,
    /// The paper's or the theory's predicted value; `None` for an inequality.
    pub expected: Option<f64>,
    /// What the criterion compares with: the tolerance on |measured − expected|, or the bound.
    pub threshold: f64,
    /// Where `threshold` comes from.
    pub threshold_source: Source,
    /// How `holds` was decided, with the reason for the threshold.
    pub criterion: String,
    /// Whether the measurement meets `criterion`.
    pub holds: bool,
}

/// "" when every value is finite, else the reason the claim cannot hold.
fn missing(values: &[(&str, f64)]) -> Option<String> {
    values
        .iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(name, v)| format!("NOT MEASURED: {name} is {v}; "))
}

impl Claim {
    #[allow(clippy::too_many_arguments)]
    fn build(
        id: &str,
        paper: &str,
        claim: &str,
        measured: f64,
        expected: Option<f64>,
        threshold: f64,
        source: Source,
        criterion: String,
        holds: bool,
        inputs: &[(&str, f64)],
    ) -> Self {
        let miss = missing(inputs);
        Self {
            id: id.into(),
            paper: paper.into(),
            claim: claim.into(),
            measured,
            se: None,
            expected,
            threshold,
            threshold_source: source,
            holds: holds && miss.is_none(),
            criterion: miss.unwrap_or_default() + &criterion,
        }
    }

    /// Holds when |measured − expected| ≤ tol. The tolerance is the theory's (a truncation or
    /// rounding error, stated in `why`) unless marked [`Claim::calibrated`].
    pub fn within(
        id: &str,
        paper: &str,
        claim: &str,
        measured: f64,
        expected: f64,
        tol: f64,
        why: &str,
    ) -> Self {
        Self::build(
            id,
            paper,
            claim,
            measured,
            Some(expected),
            tol,
            Source::Theory,
            format!("|measured − expected| ≤ {} ({why})", fmt_num(tol)),
            (measured - expected).abs() <= tol,
            &[
                ("measured", measured),
                ("expected", expected),
                ("tolerance", tol),
            ],
        )
    }

    /// A Monte Carlo estimate against a prediction: holds when
    /// |measured − expected| ≤ k·SE + truncation·|expected| *and* SE ≤ max_rel_se·|expected|,
    /// so the tolerance cannot grow with the noise: a prediction off by more than
    /// (k·max_rel_se + truncation) relative cannot pass.
    pub fn monte_carlo(
        id: &str,
        paper: &str,
        claim: &str,
        (measured, se): (f64, f64),
        expected: f64,
        b: McBound,
        why: &str,
    ) -> Self {
        let tol = b.k * se + b.truncation * expected.abs();
        let se_max = b.max_rel_se * expected.abs();
        let trunc = if b.truncation > 0.0 {
            format!(" + {}·|expected|", fmt_num(b.truncation))
        } else {
            String::new()
        };
        let mut c = Self::build(
            id,
            paper,
            claim,
            measured,
            Some(expected),
            tol,
            Source::Theory,
            format!(
                "|measured − expected| ≤ {} SE{trunc} = {}, and SE = {} ≤ {}·|expected| ({why})",
                b.k,
                fmt_num(tol),
                fmt_num(se),
                fmt_num(b.max_rel_se),
            ),
            (measured - expected).abs() <= tol && se <= se_max,
            &[("measured", measured), ("expected", expected), ("SE", se)],
        );
        c.se = Some(se);
        c
    }

    /// Holds when measured ≤ bound: an inequality the paper states, unless marked
    /// [`Claim::calibrated`] or [`Claim::from_theory`].
    pub fn at_most(
        id: &str,
        paper: &str,
        claim: &str,
        measured: f64,
        bound: f64,
        why: &str,
    ) -> Self {
        Self::inequality(
            id,
            paper,
            claim,
            measured,
            "≤",
            measured <= bound,
            bound,
            why,
        )
    }

    /// Holds when measured ≥ bound (see [`Claim::at_most`]).
    pub fn at_least(
        id: &str,
        paper: &str,
        claim: &str,
        measured: f64,
        bound: f64,
        why: &str,
    ) -> Self {
        Self::inequality(
            id,
            paper,
            claim,
            measured,
            "≥",
            measured >= bound,
            bound,
            why,
        )
    }

    /// Holds when measured > bound strictly (see [`Claim::at_most`]).
    pub fn above(id: &str, paper: &str, claim: &str, measured: f64, bound: f64, why: &str) -> Self {
        Self::inequality(
            id,
            paper,
            claim,
            measured,
            ">",
            measured > bound,
            bound,
            why,
        )
    }

    /// The shared body of the inequalities: no prediction, the bound as the paper's threshold.
    #[allow(clippy::too_many_arguments)]
    fn inequality(
        id: &str,
        paper: &str,
        claim: &str,
        measured: f64,
        op: &str,
        holds: bool,
        bound: f64,
        why: &str,
    ) -> Self {
        Self::build(
            id,
            paper,
            claim,
            measured,
            None,
            bound,
            Source::Paper,
            format!("measured {op} {} ({why})", fmt_num(bound)),
            holds,
            &[("measured", measured), ("bound", bound)],
        )
    }

    /// A further condition the claim needs (e.g. a ratio's denominator has the sign that makes
    /// the ratio meaningful), stated in the criterion.
    pub fn require(mut self, ok: bool, condition: &str) -> Self {
        self.holds &= ok;
        self.criterion = format!("{}, and {condition}", self.criterion);
        self
    }

    /// One line for a terminal: measured (± SE), the prediction if any, the threshold and
    /// whose it is.
    pub fn summary(&self) -> String {
        format!(
            "measured {}{}{}  threshold {} ({})",
            fmt_num(self.measured),
            self.se
                .map_or(String::new(), |se| format!(" ± {}", fmt_num(se))),
            self.expected
                .map_or(String::new(), |e| format!("  expected {}", fmt_num(e))),
            fmt_num(self.threshold),
            self.threshold_source.as_str()
        )
    }

    /// The threshold is our calibration on reference runs, not the paper's or the theory's.
    pub fn calibrated(mut self) -> Self {
        self.threshold_source = Source::Calibration;
        self
    }

    /// The threshold is computed from the theory (e.g. a bound plus its standard errors).
    pub fn from_theory(mut self) -> Self {
        self.threshold_source = Source::Theory;
        self
    }

    /// Attach the standard error of the measurement.
    pub fn with_se(mut self, se: f64) -> Self {
        self.se = Some(se);
        if !se.is_finite() && self.holds {
            self.holds = false;
            self.criterion = format!("NOT MEASURED: SE is {se}; {}", self.criterion);
        }
        self
    }
}

/// Maximum and minimum that do not hide a missing value: NaN when the sequence is empty or any
/// element is NaN (`f64::max` would skip it, and a fold from 0 would report 0 for nothing).
pub trait NanFold: Iterator<Item = f64> + Sized {
    /// The largest element, or NaN.
    fn nan_max(self) -> f64 {
        self.fold(None, |m: Option<f64>, x| {
            Some(match m {
                None => x,
                Some(m) if m.is_nan() || x.is_nan() => f64::NAN,
                Some(m) => m.max(x),
            })
        })
        .unwrap_or(f64::NAN)
    }
    /// The smallest element, or NaN.
    fn nan_min(self) -> f64 {
        -self.map(|x| -x).nan_max()
    }
}

impl<I: Iterator<Item = f64>> NanFold for I {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_decide_by_tolerance_and_refuse_missing_values() {
        assert!(Claim::within("a", "p", "c", 1.0, 1.05, 0.1, "t").holds);
        assert!(!Claim::within("a", "p", "c", 1.0, 1.2, 0.1, "t").holds);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let w = Claim::within("a", "p", "c", bad, 1.0, 0.1, "t");
            assert!(!w.holds && w.criterion.starts_with("NOT MEASURED"), "{w:?}");
            assert!(!Claim::at_most("a", "p", "c", bad, 1.0, "t").holds);
            assert!(!Claim::at_least("a", "p", "c", bad, 1.0, "t").holds);
            assert!(!Claim::at_least("a", "p", "c", 2.0, bad, "t").holds);
            assert!(!Claim::within("a", "p", "c", 1.0, 1.0, bad, "t").holds);
        }
    }

    #[test]
    fn folds_propagate_missing_values() {
        assert_eq!([1.0, 3.0, 2.0].into_iter().nan_max(), 3.0);
        assert_eq!([1.0, 3.0, 2.0].into_iter().nan_min(), 1.0);
        assert!([1.0, f64::NAN, 2.0].into_iter().nan_max().is_nan());
        assert!([f64::NAN, 1.0].into_iter().nan_min().is_nan());
        assert!(std::iter::empty::<f64>().nan_max().is_nan());
    }

    #[test]
    fn a_monte_carlo_claim_bounds_its_noise() {
        // Within 3 SE, and SE small: holds.
        let b = McBound {
            k: 3.0,
            max_rel_se: 0.02,
            truncation: 0.0,
        };
        let c = Claim::monte_carlo("a", "p", "c", (1.02, 0.01), 1.0, b, "t");
        assert!(c.holds && c.se == Some(0.01) && c.threshold_source == Source::Theory);
        // Within 3 SE only because the SE is large: fails (a 20 % error cannot pass).
        assert!(!Claim::monte_carlo("a", "p", "c", (1.2, 0.1), 1.0, b, "t").holds);
        // Precise and wrong: fails.
        assert!(!Claim::monte_carlo("a", "p", "c", (1.1, 0.01), 1.0, b, "t").holds);
        assert!(!Claim::monte_carlo("a", "p", "c", (1.0, f64::NAN), 1.0, b, "t").holds);
        // A stated truncation error widens the tolerance by a fixed fraction only.
        let t = McBound {
            truncation: 0.05,
            ..b
        };
        assert!(Claim::monte_carlo("a", "p", "c", (1.079, 0.01), 1.0, t, "t").holds);
        assert!(!Claim::monte_carlo("a", "p", "c", (1.09, 0.01), 1.0, t, "t").holds);
        let cal = Claim::at_least("a", "p", "c", 2.0, 1.0, "t").calibrated();
        assert_eq!(cal.threshold_source, Source::Calibration);
        assert_eq!(cal.expected, None);
    }
}
