//! `prune`'s stage checkpoints on the real SmolLM2-135M (fetched into the cache if missing):
//! a run resumed from its checkpoints reports the same numbers, claims and paired comparisons
//! as the run that wrote them (so the per-token detail vectors behind the comparisons survive
//! the round trip), a stage whose checkpoint is corrupt is recomputed, and the healed model
//! that is exported is always recomputed (it is needed in memory).

use dlt_llm::lora::HealConfig;
use dlt_studies::output::OutDir;
use dlt_studies::prune::{run, Config, Scale};
use serde_json::Value;

/// A run of a few tens of seconds that still passes through every stage.
fn tiny(resume: bool) -> Config {
    let mut scale = Scale::for_mode(true);
    scale.probe_samples = 4;
    scale.probe_len = 32;
    scale.eval_tokens = 512;
    scale.ctx = 256;
    scale.drops = vec![4];
    scale.random_draws = 1;
    scale.heal_drops = vec![4];
    scale.heal = HealConfig {
        seq: 64,
        lr: 1.2e-3,
        ..HealConfig::paper(8, 3)
    };
    scale.heal_chars = 20_000;
    scale.export_drop = Some(4);
    scale.bench_tasks = vec!["arc_easy".into()];
    scale.bench_items = 12;
    scale.acc_drops = vec![8];
    scale.acc_random_draws = 0;
    scale.acc_healed = vec!["last".into()];
    scale.acc_text_tokens = 512;
    Config {
        quick: true,
        seed: 3,
        quiet: true,
        model: None,
        text: None,
        bench_data: None,
        scale,
        resume,
    }
}

/// The results without what legitimately differs between a run and its resumption: wall
/// times, the list of resumed stages.
fn numbers(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.contains("seconds") && *k != "resumed")
                .map(|(k, v)| (k.clone(), numbers(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(numbers).collect()),
        other => other.clone(),
    }
}

#[test]
fn a_resumed_run_reports_what_the_interrupted_one_would_have() {
    let dir = std::env::temp_dir().join(format!("dlt-prune-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = OutDir::create(&dir).unwrap();
    let json = |r: &dlt_studies::prune::Results| serde_json::to_value(r).unwrap();

    let first = run(&tiny(false), &out).unwrap();
    assert!(first.resumed.is_empty());
    // In the order they run: the healed models before part 5's sweep.
    let stages = [
        "probe",
        "pruning",
        "heal-control",
        "heal-angular-4",
        "heal-last-4",
        "accuracy-texts",
        "accuracy-arc_easy",
    ];
    for s in stages {
        assert!(
            dir.join("checkpoints").join(format!("{s}.json")).exists(),
            "no checkpoint for {s}"
        );
    }
    // The paired comparisons need the per-token vectors: finite only if they were there.
    assert!(!first.comparisons.is_empty());
    assert!(first
        .comparisons
        .iter()
        .all(|c| c.dnll.is_finite() && c.se.is_finite()));

    // Everything read back but the exported healed model's stage.
    let second = run(&tiny(true), &out).unwrap();
    let expected: Vec<String> = stages
        .iter()
        .filter(|s| **s != "heal-angular-4")
        .map(|s| s.to_string())
        .collect();
    assert_eq!(second.resumed, expected);
    // A stage read back carries the time it took when it was computed.
    for t in &second.stage_seconds {
        let first_t = first
            .stage_seconds
            .iter()
            .find(|f| f.stage == t.stage)
            .expect("same stages");
        assert_eq!(t.resumed, expected.contains(&t.stage), "{}", t.stage);
        if t.resumed {
            assert_eq!(t.seconds, first_t.seconds, "{}", t.stage);
        }
    }
    assert_eq!(second.stage_seconds.len(), stages.len());
    assert_eq!(numbers(&json(&second)), numbers(&json(&first)));

    // A truncated checkpoint is recomputed, with the same numbers.
    let p = dir.join("checkpoints").join("pruning.json");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    let third = run(&tiny(true), &out).unwrap();
    assert!(!third.resumed.iter().any(|s| s == "pruning"));
    assert!(third.resumed.iter().any(|s| s == "probe"));
    assert_eq!(numbers(&json(&third)), numbers(&json(&first)));

    // Another seed is another configuration: its stages are computed, not read back.
    let mut other = tiny(true);
    other.seed = 4;
    other.scale.bench_tasks = vec![];
    other.scale.heal_drops = vec![];
    other.scale.export_drop = None;
    let fourth = run(&other, &out).unwrap();
    assert!(fourth.resumed.is_empty(), "{:?}", fourth.resumed);
    let _ = std::fs::remove_dir_all(&dir);
}
