//! The `dlt reproduce` report: one HTML page with every study's figures and a table of each
//! paper's claims beside what we measured, built only from the studies' `results.json` files.

use crate::claim::Claim;
use crate::output::{fmt_num, OutDir, OutputError};
use serde::{Deserialize, Serialize};

/// What a study contributes to the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    /// The study's name (its folder and command), e.g. `sgd-gap`.
    pub study: String,
    /// The paper's title.
    pub title: String,
    /// Authors and arXiv id.
    #[serde(default)]
    pub paper: String,
    /// What the study measures against which prediction.
    #[serde(default)]
    pub about: String,
    /// Figure paths relative to the report folder's parent (the `--out` root).
    pub figures: Vec<String>,
    /// The claims with their measurements (empty when the study failed).
    pub claims: Vec<Claim>,
    /// Wall-clock seconds of the run (of the earlier run when reused).
    pub seconds: f64,
    /// Set when the study failed; the report says so instead of hiding it.
    pub error: Option<String>,
    /// Taken from an earlier run with the same configuration hash, not rerun.
    #[serde(default)]
    pub reused: bool,
}

impl Section {
    /// A study's section: its figures (paths under `prefix`, the study's folder) and claims.
    pub fn of_study(
        study: &str,
        title: &str,
        figures: &[String],
        claims: &[Claim],
        seconds: f64,
        prefix: &str,
    ) -> Self {
        Self {
            study: study.into(),
            title: title.into(),
            figures: figures.iter().map(|f| format!("{prefix}{f}")).collect(),
            claims: claims.to_vec(),
            seconds,
            error: None,
            paper: String::new(),
            about: String::new(),
            reused: false,
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The overview table: one row per study with its paper, claims holding, time and headline
/// figure (the first one the study lists).
fn overview(sections: &[Section]) -> String {
    let mut h = String::from(
        "<table class=\"overview\"><tr><th>study</th><th>paper</th><th>claims holding</th><th>time</th><th>headline figure</th></tr>",
    );
    for s in sections {
        let held = s.claims.iter().filter(|c| c.holds).count();
        let status = match (&s.error, held == s.claims.len()) {
            (Some(_), _) => "<span class=\"no\">failed</span>".to_string(),
            (None, true) => format!("<span class=\"ok\">{held} / {}</span>", s.claims.len()),
            (None, false) => format!("<span class=\"no\">{held} / {}</span>", s.claims.len()),
        };
        let fig = s
            .figures
            .first()
            .map(|f| {
                format!(
                    "<a href=\"#{0}\"><img class=\"thumb\" src=\"../{1}\" alt=\"{1}\"></a>",
                    esc(&s.study),
                    esc(f)
                )
            })
            .unwrap_or_default();
        h.push_str(&format!(
            "<tr><td><a href=\"#{0}\">{0}</a></td><td>{1}<br><small>{2}</small></td><td>{status}</td><td>{3}{4}</td><td>{fig}</td></tr>",
            esc(&s.study),
            esc(&s.title),
            esc(&s.paper),
            crate::progress::fmt_duration(s.seconds),
            if s.reused { " <small>(reused)</small>" } else { "" },
        ));
    }
    h.push_str("</table>");
    h
}

/// One study's section: what it tests, what this run shows, its figures beside its claims.
fn study_section(s: &Section) -> String {
    let held = s.claims.iter().filter(|c| c.holds).count();
    let mut h = format!(
        "<section id=\"{0}\"><h2>{0}: {1}</h2><p class=\"paper\">{2}</p><p>{3}</p>",
        esc(&s.study),
        esc(&s.title),
        esc(&s.paper),
        esc(&s.about)
    );
    if let Some(e) = &s.error {
        h.push_str(&format!(
            "<p class=\"no\">This study failed: {}</p></section>",
            esc(e)
        ));
        return h;
    }
    let failing: Vec<&str> = s
        .claims
        .iter()
        .filter(|c| !c.holds)
        .map(|c| c.id.as_str())
        .collect();
    h.push_str(&format!(
        "<p>This run ({}): <b>{held} of {} claims hold</b>{}.</p>",
        crate::progress::fmt_duration(s.seconds),
        s.claims.len(),
        if failing.is_empty() {
            String::new()
        } else {
            format!("; not holding: {}", esc(&failing.join(", ")))
        }
    ));
    h.push_str("<div class=\"cols\"><div class=\"figs\">");
    for f in &s.figures {
        h.push_str(&format!("<img src=\"../{0}\" alt=\"{0}\">", esc(f)));
    }
    h.push_str("</div><div class=\"claims\"><table><tr><th>claim</th><th>measured</th><th>expected (prediction)</th><th>threshold (from)</th><th>verdict</th></tr>");
    for c in &s.claims {
        h.push_str(&format!(
            "<tr><td title=\"{}\">{}<br><small>{}</small></td><td>{}{}</td><td>{}</td><td>{} <small>({})</small></td><td class=\"{}\">{}</td></tr>",
            esc(&c.criterion),
            esc(&c.claim),
            esc(&c.criterion),
            fmt_num(c.measured),
            c.se.map_or(String::new(), |se| format!(" ± {}", fmt_num(se))),
            c.expected.map_or("–".into(), fmt_num),
            fmt_num(c.threshold),
            c.threshold_source.as_str(),
            if c.holds { "ok" } else { "no" },
            if c.holds { "holds" } else { "does not hold" }
        ));
    }
    h.push_str("</table></div></div></section>");
    h
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:4px 6px;font-size:13px;vertical-align:top;text-align:left}\
th{background:#f4f4f4}small{color:#666}.ok{color:#1a7f37;font-weight:bold}.no{color:#b00;font-weight:bold}\
.thumb{height:90px;border:1px solid #eee}.paper{color:#555;font-style:italic}\
.cols{display:flex;gap:1em;align-items:flex-start}.figs{flex:1 1 55%}.figs img{width:100%;border:1px solid #eee;margin:0 0 6px}\
.claims{flex:1 1 45%}section{border-top:2px solid #eee;margin-top:2em}";

/// Write `root/report/index.html` and `root/report/claims.csv`.
pub fn write(
    root: &OutDir,
    sections: &[Section],
    quick: bool,
) -> Result<std::path::PathBuf, OutputError> {
    let total: usize = sections.iter().map(|s| s.claims.len()).sum();
    let held: usize = sections
        .iter()
        .flat_map(|s| &s.claims)
        .filter(|c| c.holds)
        .count();
    let calibrated = sections
        .iter()
        .flat_map(|s| &s.claims)
        .filter(|c| c.threshold_source == crate::claim::Source::Calibration)
        .count();
    let mut h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>dlt reproduce</title><style>{STYLE}</style></head><body>"
    );
    h.push_str(&format!(
        "<h1>dlt reproduce</h1><p>{} scale. <b>{held} of {total} claims hold.</b> Every number below was measured by this run; \
         <i>expected</i> is a prediction (the paper's number, or the theory's computed in this run); <i>threshold</i> is what the \
         criterion compares with, and <i>from</i> says whose it is: the paper, the theory (its standard errors or truncation error), \
         or <b>calibration</b> — our own threshold from reference runs of this code, evidence that the run behaves as those did, \
         not a prediction ({calibrated} of {total} claims). The full table is in <a href=\"claims.csv\">claims.csv</a>.</p>",
        if quick { "Quick (laptop)" } else { "Full" }
    ));
    h.push_str(&overview(sections));
    let mut rows = vec![];
    for s in sections {
        h.push_str(&study_section(s));
        for c in &s.claims {
            rows.push(vec![
                s.study.clone(),
                c.id.clone(),
                c.paper.clone(),
                c.claim.clone(),
                format!("{}", c.measured),
                c.se.map_or(String::new(), |v| v.to_string()),
                c.expected.map_or(String::new(), |v| v.to_string()),
                format!("{}", c.threshold),
                c.threshold_source.as_str().into(),
                c.criterion.clone(),
                c.holds.to_string(),
            ]);
        }
    }
    h.push_str("</body></html>\n");
    let report = OutDir::create(root.path("report"))?;
    report.write_csv(
        "claims.csv",
        &[
            "study",
            "id",
            "paper",
            "claim",
            "measured",
            "se",
            "expected",
            "threshold",
            "threshold_source",
            "criterion",
            "holds",
        ],
        &rows,
    )?;
    report.write_bytes("index.html", h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_opens_with_one_row_per_study_and_shows_failures() {
        let dir = std::env::temp_dir().join(format!("dlt-report-{}", std::process::id()));
        let root = OutDir::create(&dir).unwrap();
        let ok = Claim::within("a.x", "P", "holds", 1.0, 1.0, 0.1, "why");
        let bad = Claim::within("a.y", "P", "fails", 2.0, 1.0, 0.1, "why");
        let mut a = Section::of_study("a", "Paper A", &["f.svg".into()], &[ok, bad], 3.0, "a/");
        a.about = "What A tests.".into();
        let mut b = Section::of_study("b", "Paper B", &[], &[], 1.0, "b/");
        b.error = Some("no data <here>".into());
        let path = write(&root, &[a, b], true).unwrap();
        let h = std::fs::read_to_string(path).unwrap();
        let overview = h.split("</table>").next().unwrap();
        assert_eq!(overview.matches("<tr><td><a href=\"#").count(), 2);
        assert!(overview.contains("1 / 2") && overview.contains("failed"));
        assert!(h.contains("1 of 2 claims hold</b>; not holding: a.y"));
        assert!(h.contains("no data &lt;here&gt;"), "errors are escaped");
        assert!(h.contains("src=\"../a/f.svg\"") && h.contains("What A tests."));
        let csv = std::fs::read_to_string(dir.join("report/claims.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
