//! The one registry of studies that `dlt reproduce` iterates, selection by name, and the
//! reproduce pass itself.

use crate::output::OutDir;
use crate::report::Section;
use crate::study::{entry, Entry, Options};

/// Every study, in report order.
pub fn registry() -> Vec<&'static dyn Entry> {
    vec![
        entry::<crate::theory::Theory>(),
        entry::<crate::trained::Trained>(),
        entry::<crate::orthogonal::Orthogonal>(),
        entry::<crate::scaling::Scaling>(),
        entry::<crate::collapse::Collapse>(),
        entry::<crate::prune::Prune>(),
        entry::<crate::hessian::Hessian>(),
        entry::<crate::sgd_gap::SgdGap>(),
        entry::<crate::jacobian::Jacobian>(),
        entry::<crate::autoencode::Autoencode>(),
    ]
}

/// Which studies a `reproduce` pass runs: all, those named by `only`, less those in `skip`.
/// An unknown name is an error that lists the known ones.
pub fn select(only: &[String], skip: &[String]) -> Result<Vec<&'static dyn Entry>, String> {
    let all = registry();
    let known: Vec<&str> = all.iter().map(|e| e.name()).collect();
    for n in only.iter().chain(skip) {
        if !known.contains(&n.as_str()) {
            return Err(format!(
                "unknown study '{n}' in --only/--skip; the studies are {}",
                known.join(", ")
            ));
        }
    }
    Ok(all
        .into_iter()
        .filter(|e| only.is_empty() || only.iter().any(|n| n == e.name()))
        .filter(|e| !skip.iter().any(|n| n == e.name()))
        .collect())
}

/// Run (or reuse) each study of `studies` under `root/<study>/` and return the report
/// sections.
pub fn reproduce(root: &OutDir, studies: &[&'static dyn Entry], opts: &Options) -> Vec<Section> {
    studies.iter().map(|e| e.reproduce(root, opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_selection_checks_them() {
        let names: Vec<_> = registry().iter().map(|e| e.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        let s = |o: &[&str], k: &[&str]| {
            select(
                &o.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &k.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .map(|v| v.iter().map(|e| e.name()).collect::<Vec<_>>())
        };
        assert_eq!(s(&[], &[]).unwrap(), names);
        assert_eq!(
            s(&["hessian", "theory"], &[]).unwrap(),
            vec!["theory", "hessian"]
        );
        assert_eq!(s(&[], &["prune"]).unwrap().len(), names.len() - 1);
        assert!(s(&["nope"], &[]).unwrap_err().contains("sgd-gap"));
    }
}
