//! Running the jobs of a planned sweep ([`crate::sweep`]): one job at a time ([`run_job`], what
//! a Slurm array task runs), locally with N workers ([`run_local`]), as an `sbatch --array`
//! script ([`slurm_script`], [`submit`]), and the state of every job from its files
//! ([`status`]). A job is done when its `results.json` exists (written last and atomically by
//! every subcommand), so a killed sweep resumes without redoing finished jobs.

use crate::sweep::{read_manifest, Job, Manifest};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The state of one job, read from its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `results.json` exists.
    Done,
    /// Started (the `started` marker) and not finished; `alive` is false when the marker names
    /// a process on this machine that no longer exists (an interrupted local run).
    Running { alive: bool },
    /// Finished without `results.json` (exit code in `exit`).
    Failed(i32),
    /// Not started.
    Pending,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Running { alive: true } => "running",
            State::Running { alive: false } => "interrupted",
            State::Failed(_) => "failed",
            State::Pending => "pending",
        }
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The state of `job` in the sweep folder `root`.
pub fn state(root: &Path, job: &Job) -> State {
    let dir = root.join(&job.dir);
    if dir.join("results.json").exists() {
        return State::Done;
    }
    if let Ok(code) = std::fs::read_to_string(dir.join("exit")) {
        return State::Failed(code.trim().parse().unwrap_or(-1));
    }
    match std::fs::read_to_string(dir.join("started")) {
        Ok(marker) => {
            // "host pid": a process of this host that is gone means the run was killed.
            let mut it = marker.split_whitespace();
            let (h, pid) = (
                it.next().unwrap_or(""),
                it.next().and_then(|p| p.parse().ok()),
            );
            let alive = match pid {
                // SAFETY: kill with signal 0 only checks that the process exists.
                Some(pid) if h == host() => unsafe { libc::kill(pid, 0) == 0 },
                _ => true,
            };
            State::Running { alive }
        }
        Err(_) => State::Pending,
    }
}

/// Run one job (unless done): `dlt ARGS` in the sweep folder, its output in `JOB/log.txt`, its
/// exit code in `JOB/exit` when it fails. Returns the state afterwards.
pub fn run_job(root: &Path, job: &Job) -> Result<State> {
    if state(root, job) == State::Done {
        return Ok(State::Done);
    }
    let dir = root.join(&job.dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("exit"));
    std::fs::write(
        dir.join("started"),
        format!("{} {}\n", host(), std::process::id()),
    )
    .with_context(|| format!("cannot write {}", dir.join("started").display()))?;
    let log = std::fs::File::create(dir.join("log.txt"))
        .with_context(|| format!("cannot write {}", dir.join("log.txt").display()))?;
    let exe = std::env::current_exe().context("cannot locate the dlt executable")?;
    let status = Command::new(exe)
        .args(&job.args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("job {}: cannot start dlt", job.id))?;
    let _ = std::fs::remove_file(dir.join("started"));
    if status.success() && dir.join("results.json").exists() {
        return Ok(State::Done);
    }
    let code = status.code().unwrap_or(-1);
    std::fs::write(dir.join("exit"), format!("{code}\n"))?;
    Ok(State::Failed(code))
}

/// `dlt sweep task DIR ID`: run job ID of the sweep in DIR (what every array task runs).
pub fn task(root: &Path, id: usize) -> Result<()> {
    let m = read_manifest(root)?;
    let job = m.jobs.get(id).with_context(|| {
        format!(
            "job {id}: the sweep in {} has jobs 0..{}",
            root.display(),
            m.jobs.len()
        )
    })?;
    match run_job(root, job)? {
        State::Done => Ok(()),
        s => anyhow::bail!(
            "job {id} {} (exit {}): see {}",
            s.name(),
            match s {
                State::Failed(c) => c,
                _ => -1,
            },
            root.join(&job.dir).join("log.txt").display()
        ),
    }
}

/// `dlt sweep run DIR -j N`: run every job that is not done, N at a time.
pub fn run_local(root: &Path, workers: usize) -> Result<()> {
    anyhow::ensure!(workers >= 1, "-j: need at least one worker");
    let m = read_manifest(root)?;
    let todo: Vec<&Job> = m
        .jobs
        .iter()
        .filter(|j| state(root, j) != State::Done)
        .collect();
    println!(
        "{} of {} jobs done; running {} with {workers} worker(s)",
        m.jobs.len() - todo.len(),
        m.jobs.len(),
        todo.len()
    );
    let queue = std::sync::Mutex::new(todo.into_iter().rev().collect::<Vec<_>>());
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(job) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                    break;
                };
                let t0 = std::time::Instant::now();
                let st = run_job(root, job).unwrap_or(State::Failed(-1));
                println!(
                    "job {:>4} {:<7} {:>7.2} s  dlt {}",
                    job.id,
                    st.name(),
                    t0.elapsed().as_secs_f64(),
                    job.args.join(" ")
                );
                if st != State::Done {
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(job.id);
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort();
    anyhow::ensure!(
        failed.is_empty(),
        "{} job(s) failed: {}; see {}/jobs/NNNN/log.txt, fix, and run again (finished jobs are kept)",
        failed.len(),
        failed
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        root.display()
    );
    Ok(())
}

/// Slurm resources of `dlt sweep submit`.
#[derive(Debug, Clone, Default)]
pub struct SlurmOpts {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub cpus: usize,
    pub mem: Option<String>,
    pub max_parallel: Option<usize>,
}

/// Compact Slurm array ranges of sorted ids: `0-3,5,7-9`.
pub fn ranges(ids: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// The `sbatch --array` script of the jobs `ids` of the sweep in `root` (an absolute path):
/// one array task per job, each running `dlt sweep task ROOT $SLURM_ARRAY_TASK_ID`, its log
/// in `ROOT/logs/ID.out`.
pub fn slurm_script(root: &Path, exe: &Path, ids: &[usize], o: &SlurmOpts) -> String {
    let name = root
        .file_name()
        .map_or("sweep".into(), |n| n.to_string_lossy().to_string());
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut s = format!(
        "#!/bin/bash\n#SBATCH --job-name=dlt-{}\n#SBATCH --array={}{}\n#SBATCH --output={}/logs/%a.out\n#SBATCH --cpus-per-task={}\n",
        name.replace(char::is_whitespace, "_"),
        ranges(ids),
        o.max_parallel.map_or(String::new(), |p| format!("%{p}")),
        root.display(),
        o.cpus
    );
    for (k, v) in [
        ("partition", &o.partition),
        ("time", &o.time),
        ("mem", &o.mem),
    ] {
        if let Some(v) = v {
            s += &format!("#SBATCH --{k}={v}\n");
        }
    }
    s += &format!(
        "# one array task per job of {root}/sweep.json; the dlt binary must be on a shared file system\nset -eu\nexec {} sweep task {} \"$SLURM_ARRAY_TASK_ID\"\n",
        q(&exe.display().to_string()),
        q(&root.display().to_string()),
        root = root.display()
    );
    s
}

/// `dlt sweep submit DIR --slurm`: write `DIR/submit.sbatch` for the jobs not done and, unless
/// `dry_run`, submit it with `sbatch --parsable`, recording the job id in `DIR/slurm_jobs`.
pub fn submit(root: &Path, o: &SlurmOpts, dry_run: bool) -> Result<()> {
    anyhow::ensure!(o.cpus >= 1, "--cpus: need at least one CPU per task");
    anyhow::ensure!(
        o.max_parallel != Some(0),
        "--max-parallel: need at least 1 (or leave it out for no limit)"
    );
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("{}: no such sweep folder", root.display()))?;
    let m = read_manifest(&root)?;
    let ids: Vec<usize> = m
        .jobs
        .iter()
        .filter(|j| state(&root, j) != State::Done)
        .map(|j| j.id)
        .collect();
    if ids.is_empty() {
        println!("all {} jobs are done; nothing to submit", m.jobs.len());
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot locate the dlt executable")?;
    let script = slurm_script(&root, &exe, &ids, o);
    if dry_run {
        print!("{script}");
        return Ok(());
    }
    let out = dlt_studies::output::OutDir::create(&root)?;
    std::fs::create_dir_all(root.join("logs"))?;
    let path = out.write_bytes("submit.sbatch", script.as_bytes())?;
    let o = Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .context("--slurm: cannot run sbatch; is Slurm installed and on PATH? (scripts/slurm_local.sh start brings up a local one)")?;
    anyhow::ensure!(
        o.status.success(),
        "sbatch {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let id = String::from_utf8_lossy(&o.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("slurm_jobs"))?
        .write_all(format!("{id}\n").as_bytes())?;
    println!(
        "submitted array job {id}: {} task(s); follow with `dlt sweep status {}`",
        ids.len(),
        root.display()
    );
    Ok(())
}

/// The counts of every state, the jobs not done, and (when `squeue` exists and the sweep was
/// submitted) Slurm's view of its array tasks.
pub fn status(root: &Path) -> Result<(Manifest, Vec<State>, Option<String>)> {
    let m = read_manifest(root)?;
    let states: Vec<State> = m.jobs.iter().map(|j| state(root, j)).collect();
    let ids = std::fs::read_to_string(root.join("slurm_jobs")).unwrap_or_default();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let slurm = if ids.is_empty() {
        None
    } else {
        let q = Command::new("squeue")
            .args(["-h", "-r", "-o", "%i %T", "-j", &ids.join(",")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        let a = Command::new("sacct")
            .args([
                "-n",
                "-P",
                "-X",
                "-o",
                "JobID,State,ExitCode",
                "-j",
                &ids.join(","),
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        match (q, a) {
            (None, None) => None,
            (q, a) => Some(format!(
                "squeue (jobs {}):\n{}{}",
                ids.join(","),
                q.unwrap_or_else(|| "  (squeue unavailable)\n".into()),
                a.map_or(String::new(), |a| format!("sacct:\n{a}"))
            )),
        }
    };
    Ok((m, states, slurm))
}

/// The path of job `id`'s log.
pub fn log_path(root: &Path, job: &Job) -> PathBuf {
    root.join(&job.dir).join("log.txt")
}
