//! `dlt reproduce --slurm`: one Slurm job per study (`dlt reproduce --only STUDY --no-report`)
//! and the report as a job that starts when they have all ended, however they ended
//! (`--dependency=afterany:…`, running `dlt reproduce --report-only`), so a full-scale
//! reproduction runs its studies in parallel on a cluster. Logs go to `OUT/slurm/NAME.out`.

use crate::sweep_run::SlurmOpts;
use anyhow::{Context, Result};
use dlt_studies::report::Section;
use dlt_studies::study::Entry;
use std::path::Path;
use std::process::Command;

/// What the jobs share: the output root (absolute), quick, seed, force.
pub struct Plan<'a> {
    pub out: &'a Path,
    pub quick: bool,
    pub seed: u64,
    pub force: bool,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `dlt reproduce …` command line of a study job (`Some(name)`) or of the report job.
fn command(exe: &Path, p: &Plan, study: Option<&str>, all: &[&str]) -> String {
    let mut c = format!(
        "exec {} reproduce --out {} --seed {}",
        quote(&exe.display().to_string()),
        quote(&p.out.display().to_string()),
        p.seed
    );
    if p.quick {
        c += " --quick";
    }
    match study {
        Some(s) => {
            c += &format!(" --only {s} --no-report");
            if p.force {
                c += " --force";
            }
        }
        None => c += &format!(" --only {} --report-only", all.join(",")),
    }
    c
}

/// The sbatch arguments of one job (its name, log, resources, dependency and command).
fn sbatch_args(name: &str, p: &Plan, o: &SlurmOpts, dep: Option<&str>, cmd: String) -> Vec<String> {
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name=dlt-{name}"),
        format!("--output={}/slurm/{name}.out", p.out.display()),
        format!("--cpus-per-task={}", o.cpus),
    ];
    for (k, v) in [
        ("partition", &o.partition),
        ("time", &o.time),
        ("mem", &o.mem),
    ] {
        if let Some(v) = v {
            a.push(format!("--{k}={v}"));
        }
    }
    if let Some(d) = dep {
        a.push(format!("--dependency=afterany:{d}"));
    }
    a.push(format!("--wrap={cmd}"));
    a
}

fn sbatch(args: &[String]) -> Result<String> {
    let o = Command::new("sbatch")
        .args(args)
        .output()
        .context("--slurm: cannot run sbatch; is Slurm installed and on PATH? (scripts/slurm_local.sh start brings up a local one)")?;
    anyhow::ensure!(
        o.status.success(),
        "sbatch failed: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&o.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string())
}

/// Submit the study jobs and the report job (or, with `dry_run`, print their sbatch lines).
pub fn submit(
    studies: &[&'static dyn Entry],
    p: &Plan,
    o: &SlurmOpts,
    dry_run: bool,
) -> Result<()> {
    anyhow::ensure!(o.cpus >= 1, "--cpus: need at least one CPU per job");
    let exe = std::env::current_exe().context("cannot locate the dlt executable")?;
    let names: Vec<&str> = studies.iter().map(|e| e.name()).collect();
    if !dry_run {
        std::fs::create_dir_all(p.out.join("slurm"))
            .with_context(|| format!("cannot create {}", p.out.join("slurm").display()))?;
    }
    let mut ids = Vec::new();
    let show = |a: &[String]| {
        a.iter()
            .map(|x| if x.contains(' ') { quote(x) } else { x.clone() })
            .collect::<Vec<_>>()
            .join(" ")
    };
    for name in &names {
        let a = sbatch_args(name, p, o, None, command(&exe, p, Some(name), &names));
        if dry_run {
            println!("sbatch {}", show(&a));
            ids.push(format!("<{name}>"));
        } else {
            let id = sbatch(&a)?;
            println!("{name:<11} job {id}");
            ids.push(id);
        }
    }
    let a = sbatch_args(
        "report",
        p,
        o,
        Some(&ids.join(":")),
        command(&exe, p, None, &names),
    );
    if dry_run {
        println!("sbatch {}", show(&a));
        return Ok(());
    }
    let id = sbatch(&a)?;
    ids.push(id.clone());
    std::fs::write(p.out.join("slurm").join("jobs"), ids.join("\n") + "\n")?;
    println!(
        "report      job {id} (after the {} study jobs end); logs in {}",
        names.len(),
        p.out.join("slurm").display()
    );
    Ok(())
}

/// The report's section of a study from its existing results (`--report-only`): reused when
/// its `results.json` has this configuration, else a failed section saying so.
pub fn existing_section(
    e: &'static dyn Entry,
    root: &dlt_studies::output::OutDir,
    opts: &dlt_studies::Options,
) -> Section {
    let results = root.path(e.name()).join("results.json");
    let hash = e.config_hash(opts);
    let same = std::fs::read(&results)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["config_hash"].as_str() == Some(hash.as_str()));
    if same {
        return e.reproduce(
            root,
            &dlt_studies::Options {
                force: false,
                ..*opts
            },
        );
    }
    Section {
        study: e.name().into(),
        title: e.title().into(),
        paper: e.paper().into(),
        about: String::new(),
        figures: vec![],
        claims: vec![],
        seconds: 0.0,
        error: Some(format!(
            "no results.json with this configuration in {} (--report-only runs no study; see {}/slurm/{}.out if it ran as a Slurm job)",
            root.path(e.name()).display(),
            root.root.display(),
            e.name()
        )),
        reused: false,
    }
}
