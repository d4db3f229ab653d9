//! The `dlt reproduce` report: one HTML page with every study's figures and a table of each
//! paper's claims beside what we measured, built only from the studies' `results.json` files.

use crate::output::{fmt_num, Claim, OutDir, OutputError};
use serde::{Deserialize, Serialize};

/// What a study contributes to the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    pub study: String,
    pub title: String,
    /// Authors and arXiv id.
    #[serde(default)]
    pub paper: String,
    /// What the study measures against which prediction.
    #[serde(default)]
    pub about: String,
    /// Figure paths relative to the report folder's parent (the `--out` root).
    pub figures: Vec<String>,
    pub claims: Vec<Claim>,
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

/// Write `root/report/index.html` and `root/report/claims.csv`.
pub fn write(
    root: &OutDir,
    sections: &[Section],
    quick: bool,
) -> Result<std::path::PathBuf, OutputError> {
    let mut h = String::new();
    let total: usize = sections.iter().map(|s| s.claims.len()).sum();
    let held: usize = sections
        .iter()
        .flat_map(|s| &s.claims)
        .filter(|c| c.holds)
        .count();
    h.push_str(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>dlt reproduce</title><style>",
    );
    h.push_str("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 6px;font-size:14px;vertical-align:top}th{background:#f4f4f4}.ok{color:#070}.no{color:#b00;font-weight:bold}img{max-width:100%;border:1px solid #eee;margin:4px 0}.fig{display:inline-block;width:49%}");
    h.push_str("</style></head><body>");
    h.push_str(&format!(
        "<h1>dlt reproduce</h1><p>{} mode. {held} of {total} claims hold. Every number below was measured by this run; \
         the <em>expected</em> column is the paper's (or its theory's) prediction.</p>",
        if quick { "Quick (laptop-scale)" } else { "Full" }
    ));
    h.push_str("<h2>Claims</h2><table><tr><th>study</th><th>paper</th><th>claim</th><th>measured</th><th>expected</th><th>criterion</th><th>verdict</th></tr>");
    let mut rows = vec![];
    for s in sections {
        for c in &s.claims {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&s.study), esc(&c.paper), esc(&c.claim), fmt_num(c.measured), fmt_num(c.expected), esc(&c.criterion),
                if c.holds { "ok" } else { "no" }, if c.holds { "holds" } else { "does not hold" }
            ));
            rows.push(vec![
                s.study.clone(),
                c.id.clone(),
                c.paper.clone(),
                c.claim.clone(),
                format!("{}", c.measured),
                format!("{}", c.expected),
                c.criterion.clone(),
                c.holds.to_string(),
            ]);
        }
    }
    h.push_str("</table>");
    for s in sections {
        h.push_str(&format!(
            "<h2>{}: {}</h2><p>{:.1} s.</p>",
            esc(&s.study),
            esc(&s.title),
            s.seconds
        ));
        if let Some(e) = &s.error {
            h.push_str(&format!(
                "<p class=\"no\">This study failed: {}</p>",
                esc(e)
            ));
        }
        for f in &s.figures {
            h.push_str(&format!(
                "<div class=\"fig\"><img src=\"../{0}\" alt=\"{0}\"></div>",
                esc(f)
            ));
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
            "expected",
            "criterion",
            "holds",
        ],
        &rows,
    )?;
    report.write_bytes("index.html", h.as_bytes())
}
