//! The workspace's shape, checked on its sources: no import cycle between the top-level
//! modules of any crate, no reference to notes outside the repository, and every
//! `docs/…md#anchor` a source cites exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir)
        .expect("readable source folder")
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Code of a file before its `#[cfg(test)]` module, without comment lines.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source");
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following `prefix` (e.g. `crate::`) in `text`.
fn idents_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (end > 0).then(|| &rest[..end])
        })
        .collect()
}

#[test]
fn no_import_cycle_between_modules() {
    for krate in ["theory", "nn", "llm", "studies", "cli"] {
        let src = workspace().join("crates").join(krate).join("src");
        let mut files = vec![];
        rust_files(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let rel = f.strip_prefix(&src).expect("under src");
            let top = rel.components().next().expect("a component");
            let top = top
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = code(f);
            let deps = graph.entry(top.clone()).or_default();
            for d in idents_after(&text, "crate::") {
                if d != top {
                    deps.insert(d.to_string());
                }
            }
        }
        let names: BTreeSet<String> = graph.keys().cloned().collect();
        // A cycle exists iff some module reaches itself.
        for start in &names {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&String> =
                graph[start].iter().filter(|d| names.contains(*d)).collect();
            while let Some(m) = stack.pop() {
                assert!(
                    m != start,
                    "{krate}: module {start} imports itself through a cycle"
                );
                if seen.insert(m.clone()) {
                    stack.extend(graph[m].iter().filter(|d| names.contains(*d)));
                }
            }
        }
    }
}

#[test]
fn sources_cite_only_the_repository_and_its_anchors_exist() {
    let root = workspace();
    let mut files = vec![];
    rust_files(&root.join("crates"), &mut files);
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        // Built at run time so that this file does not match itself.
        let external = ["spec", "§"].join(" ");
        assert!(
            !text.contains(&external),
            "{}: cites the external notes",
            f.display()
        );
        for (i, _) in text.match_indices("docs/derivations/") {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || "/_.-#".contains(c)))
                .unwrap_or(rest.len());
            let link = rest[..end].trim_end_matches('.');
            let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
            if !file.ends_with(".md") {
                continue;
            }
            let doc = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|_| panic!("{}: {file} does not exist", f.display()));
            if !anchor.is_empty() {
                assert!(
                    doc.contains(&format!("id=\"{anchor}\"")),
                    "{}: {file} has no anchor #{anchor}",
                    f.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 50,
        "only {checked} citations found: the scan is broken"
    );
}
