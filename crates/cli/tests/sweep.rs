//! `dlt sweep` and sharded `dlt theory mc` end to end: plans are deterministic and sweep files
//! are checked key by key; an interrupted local sweep resumes without redoing finished jobs;
//! merged Monte Carlo shards equal the unsharded run exactly; and a sweep submitted to a real
//! Slurm (scripts/slurm_local.sh) collects into the same table as `dlt sweep run`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dlt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlt"))
        .args(args)
        .output()
        .expect("run dlt")
}

fn ok(args: &[&str]) -> String {
    let o = dlt(args);
    assert!(
        o.status.success(),
        "dlt {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A clean one-line failure (exit 1, no panic) whose message contains every needle.
fn fails(args: &[&str], needles: &[&str]) {
    let o = dlt(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "dlt {args:?}: {err}");
    assert!(!err.contains("panicked"), "dlt {args:?} panicked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "dlt {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "dlt {args:?}: expected '{n}' in: {err}");
    }
}

/// Whether `sbatch` answers. Outside CI a missing Slurm skips the test (with a line saying so);
/// under CI it fails it.
fn slurm_available() -> bool {
    let have = Command::new("sbatch")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but sbatch is missing: start Slurm with scripts/slurm_local.sh start"
        );
        eprintln!("skipped: no sbatch (scripts/slurm_local.sh start brings up a local Slurm)");
    }
    have
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dlt-sweep-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

const SCALING: &str = r#"
command = "scaling simulate"
seeds = [0, 1]
[fixed]
alpha = 1.0
m = 200
seeds = 3
[grid]
n = [8, 32]
p = [64, 128]
"#;

/// A 2 × 2 grid of tiny tanh ensembles, every point as 4 shards (16 jobs, well under a second
/// each).
const MC: &str = r#"
command = "theory mc"
shards = 4
[fixed]
activation = "tanh"
cb = 0
cw = 1
k1 = 1
networks = 800
batches = 8
ntk = true
threads = 1
[grid]
width = [6, 10]
depth = [2, 4]
"#;

#[test]
fn sweep_plans_runs_resumes_and_collects() {
    let d = tmp("scaling");
    let file = d.join("s.toml");
    std::fs::write(&file, SCALING).unwrap();
    let out = d.join("sw");
    ok(&["sweep", "plan", s(&file), "--out", s(&out)]);
    let m = read(&out.join("sweep.json"));
    let jobs = m["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 8, "2 n × 2 p × 2 seeds");
    assert_eq!(
        jobs[3]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect::<Vec<_>>(),
        "scaling simulate --alpha 1.0 --m 200 --seeds 3 --n 8 --p 128 --seed 1 --out jobs/0003"
            .split(' ')
            .collect::<Vec<_>>()
    );
    // Planning the same file again changes nothing; another file into the folder is refused.
    ok(&["sweep", "plan", s(&file), "--out", s(&out)]);
    assert_eq!(read(&out.join("sweep.json")), m);
    let other = d.join("o.toml");
    std::fs::write(&other, SCALING.replace("m = 200", "m = 300")).unwrap();
    fails(
        &["sweep", "plan", s(&other), "--out", s(&out)],
        &["holds another sweep"],
    );
    ok(&["sweep", "run", s(&out), "-j", "2"]);
    ok(&["sweep", "collect", s(&out)]);
    let table = std::fs::read_to_string(out.join("collected.csv")).unwrap();
    assert!(table.starts_with("n,p,seed,"), "{table}");
    assert_eq!(table.lines().count(), 9);
    assert!(out.join("collected.svg").exists());
    // An interrupted sweep: job 5 lost its results (and left a stale marker of a dead process);
    // rerunning redoes job 5 only and the table is the same.
    let stamp = |i: usize| {
        std::fs::metadata(out.join(format!("jobs/{i:04}/results.json")))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before: Vec<_> = (0..8).filter(|&i| i != 5).map(stamp).collect();
    std::fs::remove_file(out.join("jobs/0005/results.json")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        out.join("jobs/0005/started"),
        format!("{} 999999999\n", host.trim()),
    )
    .unwrap();
    let st = ok(&["sweep", "status", s(&out)]);
    assert!(
        st.contains("7 done") && st.contains("1 interrupted"),
        "{st}"
    );
    fails(
        &["sweep", "collect", s(&out)],
        &["job(s) 5 have no results.json"],
    );
    let log = ok(&["sweep", "run", s(&out)]);
    assert!(log.contains("7 of 8 jobs done; running 1"), "{log}");
    let after: Vec<_> = (0..8).filter(|&i| i != 5).map(stamp).collect();
    assert_eq!(before, after, "finished jobs were not redone");
    ok(&["sweep", "collect", s(&out)]);
    assert_eq!(
        std::fs::read_to_string(out.join("collected.csv")).unwrap(),
        table
    );
    // The array script holds the pending jobs only.
    std::fs::remove_file(out.join("jobs/0002/results.json")).unwrap();
    std::fs::remove_file(out.join("jobs/0006/results.json")).unwrap();
    let script = ok(&[
        "sweep",
        "submit",
        s(&out),
        "--slurm",
        "--dry-run",
        "--max-parallel",
        "3",
        "--partition",
        "p1",
    ]);
    assert!(script.contains("#SBATCH --array=2,6%3\n"), "{script}");
    assert!(
        script.contains("#SBATCH --partition=p1\n") && script.contains("sweep task"),
        "{script}"
    );
    fails(&["sweep", "submit", s(&out)], &["--slurm"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_sweep_files_name_the_key_and_the_fix() {
    let d = tmp("bad");
    let cases: &[(&str, &[&str])] = &[
        (
            "command = \"scaling simulat\"",
            &["command:", "no subcommand 'simulat'", "simulate"],
        ),
        ("command = \"scaling\"", &["command:", "needs a subcommand"]),
        ("command = \"scaling theory\"", &["command:", "no --out"]),
        (
            "command = \"scaling simulate\"\n[grid]\nq = [1]",
            &["grid.q:", "no flag --q", "its flags are"],
        ),
        (
            "command = \"scaling simulate\"\n[fixed]\nout = \"x\"",
            &["fixed.out:", "set by the sweep"],
        ),
        (
            "command = \"scaling simulate\"\n[grid]\nn = 4",
            &["grid.n:", "non-empty list"],
        ),
        (
            "command = \"scaling simulate\"\nshards = 2",
            &["shards:", "only `theory mc`"],
        ),
        (
            "command = \"scaling simulate\"\nseeds = [-1]",
            &["seeds:", "whole number"],
        ),
        (
            "command = \"scaling simulate\"\ngird = 1",
            &["gird: unknown key"],
        ),
        (
            "command = \"theory mc\"\n[fixed]\nnetworks = 8\n[grid]\nnetworks = [8]",
            &["fixed.networks:", "also in [grid]"],
        ),
        (
            "command = \"theory mc\"\n[grid]\nfirst_layer = [\"gaussian\"]",
            &["grid.first_layer:", "write it as first-layer"],
        ),
        ("command = [1]", &["command:", "not a string"]),
        ("command = ", &["not valid TOML"]),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let f = d.join(format!("{i}.toml"));
        std::fs::write(&f, text).unwrap();
        fails(
            &["sweep", "plan", s(&f), "--out", s(&d.join(format!("o{i}")))],
            needles,
        );
    }
    fails(
        &["sweep", "run", s(&d.join("nowhere"))],
        &["sweep.json", "dlt sweep plan"],
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Rows of a collected sweep.
fn collected(dir: &Path) -> Value {
    read(&dir.join("collected.json"))
}

#[test]
fn sharded_mc_merges_exactly_and_bad_shards_are_refused() {
    // Shards hold whole batches summed in the unsharded order, and f64 survives JSON exactly
    // (serde_json float_roundtrip): the merged table equals the unsharded one bit for bit.
    let d = tmp("mc");
    let (f4, f1) = (d.join("mc4.toml"), d.join("mc1.toml"));
    std::fs::write(&f4, MC).unwrap();
    std::fs::write(&f1, MC.replace("shards = 4", "")).unwrap();
    let (a, b) = (d.join("a"), d.join("b"));
    ok(&["sweep", "plan", s(&f4), "--out", s(&a)]);
    ok(&["sweep", "plan", s(&f1), "--out", s(&b)]);
    ok(&["sweep", "run", s(&a), "-j", "2"]);
    ok(&["sweep", "run", s(&b), "-j", "2"]);
    ok(&["sweep", "collect", s(&a)]);
    ok(&["sweep", "collect", s(&b)]);
    let (ta, tb) = (collected(&a), collected(&b));
    assert_eq!(
        ta.as_array().unwrap().len(),
        2 * (2 + 4),
        "one row per point and layer"
    );
    assert_eq!(ta, tb);
    // mc-merge of jobs 0..3 (width 6, depth 2) equals job 0 of the unsharded sweep.
    let shards: Vec<String> = (0..4)
        .map(|i| s(&a.join(format!("jobs/{i:04}"))).to_string())
        .collect();
    let mut args = vec!["theory", "mc-merge", "--json"];
    args.extend(shards.iter().map(String::as_str));
    let merged: Value = serde_json::from_str(&ok(&args)).unwrap();
    let whole = read(&b.join("jobs/0000/results.json"));
    assert_eq!(merged["layers"], whole["layers"]);
    fails(
        &["theory", "mc-merge", &shards[0], &shards[1], &shards[2]],
        &["shard(s) 3/4 missing"],
    );
    fails(
        &[
            "theory", "mc-merge", &shards[0], &shards[1], &shards[2], &shards[2], &shards[3],
        ],
        &["shard 2/4 is given twice"],
    );
    let other = s(&a.join("jobs/0011")).to_string(); // depth 4, width 6, shard 3/4
    fails(
        &[
            "theory", "mc-merge", &shards[0], &shards[1], &shards[2], &other,
        ],
        &["different runs", "depth 2 vs 4"],
    );
    fails(
        &["theory", "mc-merge", s(&b.join("jobs/0000"))],
        &["not a Monte Carlo shard"],
    );
    fails(
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
            "2",
            "--width",
            "4",
            "--networks",
            "40",
            "--batches",
            "4",
            "--shard",
            "5/4",
            "--out",
            s(&d.join("x")),
        ],
        &["--shard"],
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_sweep_through_slurm_collects_the_same_table_as_a_local_run() {
    // Needs a running Slurm (scripts/slurm_local.sh start; .ci/run starts one). Skipped only
    // outside CI when sbatch is absent; under CI a missing Slurm fails the test.
    if !slurm_available() {
        return;
    }
    let d = tmp("slurm");
    let f = d.join("mc.toml");
    std::fs::write(&f, MC).unwrap();
    let (local, cluster) = (d.join("local"), d.join("cluster"));
    ok(&["sweep", "plan", s(&f), "--out", s(&local)]);
    ok(&["sweep", "plan", s(&f), "--out", s(&cluster)]);
    ok(&["sweep", "run", s(&local), "-j", "2"]);
    let sub = ok(&[
        "sweep",
        "submit",
        s(&cluster),
        "--slurm",
        "--time",
        "0:05:00",
        "--mem",
        "500M",
    ]);
    assert!(sub.contains("submitted array job"), "{sub}");
    // Poll the files (not the clock of a test: a bound on waiting for a scheduler).
    let mut status = String::new();
    for _ in 0..600 {
        status = ok(&["sweep", "status", s(&cluster)]);
        if status.contains("16 done") || status.contains("failed") && !status.contains(" 0 failed")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        status.contains("16 jobs: 16 done"),
        "{status}\nlogs in {}",
        cluster.join("logs").display()
    );
    ok(&["sweep", "collect", s(&local)]);
    ok(&["sweep", "collect", s(&cluster)]);
    assert_eq!(collected(&cluster), collected(&local));
    assert_eq!(
        std::fs::read_dir(cluster.join("logs")).unwrap().count(),
        16,
        "one log per task"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn reproduce_slurm_plans_study_jobs_then_a_report_job_after_any() {
    let d = tmp("repro-plan");
    let out = ok(&[
        "reproduce",
        "--slurm",
        "--dry-run",
        "--quick",
        "--only",
        "jacobian,hessian",
        "--out",
        s(&d),
        "--time",
        "0:30:00",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].contains("--job-name=dlt-jacobian")
            && lines[1].contains("--only jacobian --no-report"),
        "{out}"
    );
    assert!(
        lines[2].contains("--dependency=afterany:<hessian>:<jacobian>"),
        "{out}"
    );
    assert!(
        lines[2].contains("--only hessian,jacobian --report-only")
            && lines[2].contains("--time=0:30:00"),
        "{out}"
    );
    // The report job alone, with no study results: the report shows the study as failed.
    fails(
        &[
            "reproduce",
            "--report-only",
            "--quick",
            "--only",
            "jacobian",
            "--out",
            s(&d),
        ],
        &[
            "1 study(ies) failed",
            "jacobian",
            "--report-only runs no study",
        ],
    );
    assert!(d.join("report/index.html").exists());
    // A usage error (clap's exit 2) naming the missing flag.
    let o = dlt(&["reproduce", "--dry-run", "--out", s(&d)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--slurm"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn reproduce_through_slurm_runs_the_study_job_then_the_report_job() {
    if !slurm_available() {
        return;
    }
    let d = tmp("repro-slurm");
    let sub = ok(&[
        "reproduce",
        "--slurm",
        "--quick",
        "--only",
        "jacobian",
        "--out",
        s(&d),
        "--time",
        "0:20:00",
    ]);
    assert!(sub.contains("jacobian") && sub.contains("report"), "{sub}");
    // The report job writes OUT/report/index.html once the study job has ended (the study job
    // itself runs with --no-report); a bound on waiting for the scheduler, not a timed test.
    let report = d.join("report/index.html");
    for _ in 0..1200 {
        if report.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let log =
        |n: &str| std::fs::read_to_string(d.join(format!("slurm/{n}.out"))).unwrap_or_default();
    assert!(
        report.exists(),
        "no report; logs:\n{}\n{}",
        log("jacobian"),
        log("report")
    );
    let r = read(&d.join("jacobian/results.json"));
    let claims = r["claims"].as_array().unwrap();
    assert!(
        !claims.is_empty() && claims.iter().all(|c| c["holds"] == true),
        "{}",
        r["claims"]
    );
    for _ in 0..120 {
        if log("report").contains("claims hold") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        log("report").contains("reused") || log("report").contains("claims hold"),
        "{}",
        log("report")
    );
    let _ = std::fs::remove_dir_all(&d);
}
