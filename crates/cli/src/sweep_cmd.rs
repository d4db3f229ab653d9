//! `dlt sweep …`: plan a sweep file into jobs, run them here or as a Slurm job array, follow
//! them, and collect their results into one table ([`crate::sweep`], [`crate::sweep_run`],
//! [`crate::sweep_collect`]).

use crate::sweep_run::{self, SlurmOpts, State};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SweepCmd {
    /// Expand a sweep file (TOML: command, seeds, shards, [fixed], [grid]) into numbered jobs
    /// in OUT/sweep.json, each a full `dlt` command line with its own --out.
    Plan {
        /// The sweep file.
        file: PathBuf,
        /// The sweep folder (jobs write OUT/jobs/NNNN/).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the jobs that are not done, here, N at a time (a finished job's results.json is
    /// kept, so an interrupted sweep resumes where it stopped).
    Run {
        dir: PathBuf,
        /// Jobs at once.
        #[arg(short = 'j', long, default_value_t = 1)]
        jobs: usize,
    },
    /// Submit the jobs that are not done as one Slurm job array (`sbatch --array`; the
    /// script is DIR/submit.sbatch, each task's log DIR/logs/ID.out).
    Submit {
        dir: PathBuf,
        /// Submit to Slurm (the only back-end so far).
        #[arg(long)]
        slurm: bool,
        /// Slurm partition.
        #[arg(long)]
        partition: Option<String>,
        /// Time limit per task (Slurm format, e.g. 1:00:00).
        #[arg(long)]
        time: Option<String>,
        /// CPUs per task.
        #[arg(long, default_value_t = 1)]
        cpus: usize,
        /// Memory per task (Slurm format, e.g. 4G).
        #[arg(long)]
        mem: Option<String>,
        /// At most this many tasks at once (the array's %N).
        #[arg(long)]
        max_parallel: Option<usize>,
        /// Print the script instead of submitting it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Done / running / failed / pending jobs from their files, and Slurm's view when squeue or
    /// sacct are there.
    Status { dir: PathBuf },
    /// Merge every job's results.json into DIR/collected.csv and DIR/collected.json (shards of
    /// `theory mc` merged exactly) and draw DIR/collected.svg.
    Collect { dir: PathBuf },
    /// Run job ID of the sweep in DIR (what each Slurm array task runs).
    #[command(hide = true)]
    Task { dir: PathBuf, id: usize },
}

pub fn run(cmd: SweepCmd, root: &clap::Command) -> Result<()> {
    match cmd {
        SweepCmd::Plan { file, out } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read the sweep file", file.display()))?;
            let m = crate::sweep::plan(&text, &file.display().to_string(), root)?;
            let new = crate::sweep::write_manifest(&out, &m)?;
            dlt_studies::output::OutDir::create(&out)?
                .write_bytes("sweep.toml", text.as_bytes())?;
            println!(
                "{} {} jobs of `dlt {}` in {}",
                if new { "planned" } else { "already planned:" },
                m.jobs.len(),
                m.command.join(" "),
                out.join(crate::sweep::MANIFEST).display()
            );
            for j in m.jobs.iter().take(3) {
                println!("  job {:>4}: dlt {}", j.id, j.args.join(" "));
            }
            if m.jobs.len() > 3 {
                println!("  …");
            }
            Ok(())
        }
        SweepCmd::Run { dir, jobs } => sweep_run::run_local(&dir, jobs),
        SweepCmd::Submit {
            dir,
            slurm,
            partition,
            time,
            cpus,
            mem,
            max_parallel,
            dry_run,
        } => {
            anyhow::ensure!(
                slurm,
                "--slurm: Slurm is the only back-end so far; add --slurm (or run here with `dlt sweep run`)"
            );
            let o = SlurmOpts {
                partition,
                time,
                cpus,
                mem,
                max_parallel,
            };
            sweep_run::submit(&dir, &o, dry_run)
        }
        SweepCmd::Status { dir } => {
            let (m, states, slurm) = sweep_run::status(&dir)?;
            let count = |name: &str| states.iter().filter(|s| s.name() == name).count();
            println!(
                "{} jobs: {} done, {} running, {} interrupted, {} failed, {} pending",
                m.jobs.len(),
                count("done"),
                count("running"),
                count("interrupted"),
                count("failed"),
                count("pending")
            );
            for (j, s) in m.jobs.iter().zip(&states) {
                match s {
                    State::Done | State::Pending => {}
                    State::Failed(c) => println!(
                        "  job {:>4} failed (exit {c}): {}",
                        j.id,
                        sweep_run::log_path(&dir, j).display()
                    ),
                    s => println!("  job {:>4} {}", j.id, s.name()),
                }
            }
            if let Some(s) = slurm {
                print!("{s}");
            }
            Ok(())
        }
        SweepCmd::Collect { dir } => {
            let (n, files) = crate::sweep_collect::collect(&dir)?;
            println!("{n} rows");
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        SweepCmd::Task { dir, id } => sweep_run::task(&dir, id),
    }
}
