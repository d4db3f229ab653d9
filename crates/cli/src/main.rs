//! `dlt`: a laboratory for the science of deep learning. A thin shell over `dlt-theory` and
//! `dlt-studies`: it parses flags, calls the libraries, and prints or writes their results.

mod autoencode_cmd;
mod bench;
mod bench_nt;
mod collapse_cmd;
mod finite_width_cmd;
mod hessian_cmd;
mod jacobian_cmd;
/// The size checks made before any work starts (shared with the Python package).
use dlt_studies::run_limits as limits;
mod mc_shard;
mod nn_cmd;
mod prune_cmd;
mod reproduce_slurm;
mod scaling_cmd;
mod sgd_gap_cmd;
mod sweep;
mod sweep_cmd;
mod sweep_collect;
mod sweep_run;
mod theory_cmd;
mod trained_cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "dlt",
    version,
    about = "dlt: compute each deep-learning theory's prediction, run the matching experiment, show both side by side",
    long_about = "dlt: compute each deep-learning theory's prediction, run the matching experiment on real networks, \
and show both side by side.\n\nStudies:\n  theory      Principles of Deep Learning Theory; Why is AI hard and Physics simple? \
(kernel / NTK / four-point-vertex recursions, criticality, universality classes, finite-width Monte Carlo)\n  \
trained     PDLT's trained networks: NNGP/NTK kernel regression vs depth beside trained networks; finite-width ensembles vs 1/n\n  \
orthogonal  Orthogonal weights: fluctuations and NTK statistics vs depth, orthogonal vs Gaussian; deep tanh training\n  \
scaling     Solvable model of scaling laws: power-law data + random features, theory and simulation of loss(N, P)\n  \
collapse    Model collapse: replace vs accumulate (linear regression, Gaussians, language models, VAEs, diffusion)\n  \
prune       Angular-distance layer pruning of real LLMs, LoRA healing, export\n  \
hessian     The gradient in the top Hessian eigenspace during training; Dom-/Bulk-SGD\n  \
sgd-gap     Predicted vs measured change of the generalisation gap under GD and SGD\n  \
jacobian    Random-projection Jacobian penalty, exact penalty gradients, robustness to noise and attacks\n  \
autoencode  Autoencoders on data with topology (circle, sphere, thinned circle): Borsuk-Ulam tears\n\n\
`dlt reproduce` runs every study at laptop scale and writes OUT/report/index.html."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Study `theory`: effective theory of deep MLPs (PDLT, arXiv 2106.10165; arXiv 2104.00008).
    Theory {
        #[command(subcommand)]
        cmd: theory_cmd::TheoryCmd,
    },
    /// Study `trained`: trained networks at infinite and finite width (PDLT, arXiv 2106.10165, ch. 6–∞).
    Trained(trained_cmd::TrainedArgs),
    /// Study `orthogonal`: Gaussian vs orthogonal weights (Day, Kahn, Roberts, arXiv 2310.07765).
    Orthogonal(nn_cmd::OrthogonalArgs),
    /// Study `scaling`: a solvable model of neural scaling laws (Maloney, Roberts, Sully, arXiv 2210.16859).
    Scaling {
        #[command(subcommand)]
        cmd: scaling_cmd::ScalingCmd,
    },
    /// Study `collapse`: model collapse, replace vs accumulate (Gerstgrasser et al., arXiv 2404.01413).
    Collapse {
        #[command(subcommand)]
        cmd: collapse_cmd::CollapseCmd,
    },
    /// Study `hessian`: the gradient lives in the top Hessian eigenspace (Gur-Ari, Roberts, Dyer, arXiv 1812.04754).
    Hessian(hessian_cmd::HessianArgs),
    /// Study `jacobian`: Jacobian regularisation and robustness (Hoffman, Roberts, Yaida, arXiv 1908.02729).
    Jacobian(jacobian_cmd::JacobianArgs),
    /// Study `autoencode`: topological obstructions to autoencoding (Batson, Haaf, Kahn, Roberts, arXiv 2102.08380).
    Autoencode(autoencode_cmd::AutoencodeArgs),
    /// Study `sgd-gap`: predicted vs measured change of the generalisation gap (Roberts, arXiv 2104.04874).
    #[command(name = "sgd-gap")]
    SgdGap(sgd_gap_cmd::SgdGapArgs),
    /// Angular-distance layer pruning of LLMs, LoRA healing, export (Gromov et al. 2024).
    Prune {
        #[command(subcommand)]
        cmd: prune_cmd::PruneCmd,
    },
    /// Data sets: list, fetch (apt-get / pip), path.
    Data {
        #[command(subcommand)]
        cmd: nn_cmd::DataCmd,
    },
    /// Train a model on real data (the code path every study uses).
    Train(nn_cmd::TrainArgs),
    /// Run every study and write OUT/report/index.html (figures + claims table). A study whose
    /// OUT/<study>/results.json has the same configuration is reused, so an interrupted run
    /// resumes where it stopped.
    Reproduce(ReproduceArgs),
    /// Sweeps: a TOML file of flag grids and seeds as numbered jobs, run here or as a Slurm job
    /// array, merged into one table (Monte Carlo shards exactly).
    Sweep {
        #[command(subcommand)]
        cmd: sweep_cmd::SweepCmd,
    },
    /// Benchmarks of the heavy kernels, each beside a baseline measured in the same run.
    Bench {
        /// Also write the results as Markdown to this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
        /// Fewer repetitions.
        #[arg(long)]
        quick: bool,
        /// Python interpreter for the PyTorch/numpy baseline (one with torch installed if you have it).
        #[arg(long, default_value = "python3")]
        python: String,
        /// A llama.cpp build/bin folder (with llama-bench) for the LLM prefill baseline;
        /// default: $DLT_LLAMA_CPP.
        #[arg(long, env = "DLT_LLAMA_CPP")]
        llama_cpp: Option<PathBuf>,
        /// Python with neural-tangents 0.6.5 (scripts/nt_venv.sh prints it) for the dataset-kernel
        /// rows; default: $DLT_NT_PYTHON, else the cache's nt-venv if present.
        #[arg(long, env = "DLT_NT_PYTHON")]
        nt_python: Option<PathBuf>,
        /// Seconds allowed to each neural-tangents call (its depth-100 tanh takes minutes).
        #[arg(long, default_value_t = 600.0)]
        nt_timeout: f64,
        /// Inputs of the neural-tangents rows: normal (256 × 784 standard normals, the reference
        /// set of docs/derivations/kernels.md) or fashion-mnist (256 standardised test images).
        #[arg(long, default_value = "normal")]
        nt_inputs: String,
        /// Run only these rows (comma-separated): profile, mc, gram, mlp, lm, scaling, llm, nt.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

fn main() {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`dlt … | head`)
    // instead of panicking on the write.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A flag value that does not parse (−1 or NaN for a count, …) is a bad input like any
    // other: one line naming the flag, exit 1. Other usage errors keep clap's exit 2.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::InvalidValue | clap::error::ErrorKind::ValueValidation
            ) =>
        {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default();
            eprintln!(
                "error: {}; see --help for the values this flag takes",
                one_line(first.strip_prefix("error: ").unwrap_or(first))
            );
            std::process::exit(1);
        }
        Err(e) => {
            // A negative number after a flag that takes a count reaches clap as an unknown
            // argument ("-1"): name the flag it was given to.
            if e.kind() == clap::error::ErrorKind::UnknownArgument {
                let args: Vec<String> = std::env::args().collect();
                if let Some(i) = args
                    .iter()
                    .position(|a| a.starts_with('-') && a.len() > 1 && a.parse::<f64>().is_ok())
                {
                    if let Some(flag) = args[..i].last().filter(|f| f.starts_with("--")) {
                        eprintln!(
                            "error: {flag} {}: must not be negative; see --help for the values this flag takes",
                            one_line(&args[i])
                        );
                        std::process::exit(1);
                    }
                }
            }
            e.exit()
        }
    };
    let result = match cli.cmd {
        Cmd::Theory { cmd } => theory_cmd::run(cmd),
        Cmd::Data { cmd } => nn_cmd::data(cmd),
        Cmd::Orthogonal(a) => nn_cmd::orthogonal(a),
        Cmd::Scaling { cmd } => scaling_cmd::run(cmd),
        Cmd::Collapse { cmd } => collapse_cmd::run(cmd),
        Cmd::Prune { cmd } => prune_cmd::run(cmd),
        Cmd::Hessian(a) => hessian_cmd::run(a),
        Cmd::SgdGap(a) => sgd_gap_cmd::run(a),
        Cmd::Jacobian(a) => jacobian_cmd::run(a),
        Cmd::Trained(a) => trained_cmd::run(a),
        Cmd::Autoencode(a) => autoencode_cmd::run(a),
        Cmd::Train(a) => nn_cmd::train(a),
        Cmd::Reproduce(a) => reproduce(a),
        Cmd::Sweep { cmd } => sweep_cmd::run(cmd, &Cli::command()),
        Cmd::Bench {
            write,
            quick,
            python,
            llama_cpp,
            nt_python,
            nt_timeout,
            nt_inputs,
            only,
        } => bench::run(
            write,
            quick,
            python,
            llama_cpp,
            bench::NtPeer {
                python: nt_python,
                timeout: nt_timeout,
                inputs: nt_inputs,
            },
            only,
        ),
    };
    if let Err(e) = result {
        eprintln!("error: {}", one_line(&format!("{e:#}")));
        std::process::exit(1);
    }
}

/// An error as one printable line, whatever the environment: a backtrace that a library
/// captured into its message (candle does under `RUST_BACKTRACE=1`) is dropped, and control
/// characters read from a file are escaped.
fn one_line(msg: &str) -> String {
    let frame = |l: &str| {
        let t = l.trim_start();
        t.starts_with("at ")
            || t.split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    msg.lines()
        .filter(|l| !frame(l))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Print a study's results: the whole JSON on stdout, or one line per claim and where
/// `results.json` was written.
pub fn print_study<R: serde::Serialize>(
    r: &R,
    claims: &[dlt_studies::claim::Claim],
    json: bool,
    dir: &dlt_studies::output::OutDir,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        for c in claims {
            println!(
                "{:<6} {:<44} {}",
                if c.holds { "holds" } else { "FAILS" },
                c.id,
                c.summary()
            );
        }
        println!("wrote {}", dir.path("results.json").display());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
struct ReproduceArgs {
    /// Output folder (each study writes OUT/<study>/, the report OUT/report/).
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Laptop scale (CI scale, a minute or a few per study).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the claims table as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// List the studies (name, paper) and exit.
    #[arg(long)]
    list: bool,
    /// Run only these studies (comma-separated names, see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Leave out these studies (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Rerun studies whose results.json has the same configuration (default: reuse them).
    #[arg(long)]
    force: bool,
    /// Run the studies only, without writing OUT/report (what each study job of --slurm runs).
    #[arg(long, conflicts_with = "report_only")]
    no_report: bool,
    /// Write OUT/report from the studies' existing results.json and run no study; a study
    /// without results of this configuration is shown as failed (the report job of --slurm).
    #[arg(long)]
    report_only: bool,
    /// Submit to Slurm instead of running here: one job per study and the report as a job
    /// that runs when they have all ended (--dependency=afterany); logs in OUT/slurm/.
    #[arg(long, conflicts_with_all = ["list", "report_only", "no_report"])]
    slurm: bool,
    /// With --slurm: the partition.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// With --slurm: the time limit of each job (Slurm format, e.g. 2:00:00).
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// With --slurm: CPUs per job.
    #[arg(long, requires = "slurm", default_value_t = 1)]
    cpus: usize,
    /// With --slurm: memory per job (Slurm format, e.g. 8G).
    #[arg(long, requires = "slurm")]
    mem: Option<String>,
    /// With --slurm: print the sbatch command lines instead of submitting.
    #[arg(long, requires = "slurm")]
    dry_run: bool,
}

fn reproduce(a: ReproduceArgs) -> anyhow::Result<()> {
    let studies = dlt_studies::registry::select(&a.only, &a.skip).map_err(anyhow::Error::msg)?;
    if a.list {
        let opts = dlt_studies::Options {
            quick: a.quick,
            seed: a.seed,
            quiet: true,
            force: false,
        };
        if a.json {
            let v: Vec<_> = studies
                .iter()
                .map(|e| serde_json::json!({"name": e.name(), "title": e.title(), "paper": e.paper(), "config_hash": e.config_hash(&opts)}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for e in &studies {
                println!("{:<11} {} — {}", e.name(), e.title(), e.paper());
            }
        }
        return Ok(());
    }
    let (quick, json) = (a.quick, a.json);
    let root = dlt_studies::output::OutDir::create(&a.out)?;
    if a.slurm {
        let out = std::fs::canonicalize(&a.out)?;
        let plan = reproduce_slurm::Plan {
            out: &out,
            quick,
            seed: a.seed,
            force: a.force,
        };
        let o = sweep_run::SlurmOpts {
            partition: a.partition,
            time: a.time,
            cpus: a.cpus,
            mem: a.mem,
            max_parallel: None,
        };
        return reproduce_slurm::submit(&studies, &plan, &o, a.dry_run);
    }
    let opts = dlt_studies::Options {
        quick,
        seed: a.seed,
        quiet: json,
        force: a.force,
    };
    let sections: Vec<_> = if a.report_only {
        studies
            .iter()
            .map(|e| reproduce_slurm::existing_section(*e, &root, &opts))
            .collect()
    } else {
        dlt_studies::reproduce(&root, &studies, &opts)
    };
    let index = if a.no_report {
        None
    } else {
        Some(dlt_studies::report::write(&root, &sections, quick)?)
    };
    let claims: Vec<_> = sections
        .iter()
        .flat_map(|s| s.claims.iter().map(move |c| (s.study.clone(), c)))
        .collect();
    if json {
        let v: Vec<_> = claims
            .iter()
            .map(|(s, c)| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                v["study"] = serde_json::json!(s);
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"report": index, "claims": v}))?
        );
    } else {
        for (s, c) in &claims {
            println!(
                "{:<10} {:<6} {:<40} {}",
                s,
                if c.holds { "holds" } else { "FAILS" },
                c.id,
                c.summary()
            );
        }
        let held = claims.iter().filter(|(_, c)| c.holds).count();
        println!(
            "{held}/{} claims hold; report: {}",
            claims.len(),
            index.map_or("none (--no-report)".into(), |p| p.display().to_string())
        );
    }
    let failed: Vec<_> = sections
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.study)))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("{} study(ies) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}
