//! `dlt theory …`: criticality, profile, mc, the study, and the dataset kernels (`kernels`,
//! `predict`: NNGP/NTK on .npy inputs and the infinite-width predictions).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use dlt_nn::data::npy;
use dlt_studies::output::OutDir;
use dlt_studies::theory::runs;
use dlt_theory::activation::parse;
use dlt_theory::criticality::criticality;
use dlt_theory::kernels::{
    dataset_kernels, nngp_posterior, ntk_ensemble, Inputs, KernelConfig, NtkTime, PairMethod,
};
use dlt_theory::mc::{self, McConfig};
use dlt_theory::multi::profile_multi;
use dlt_theory::profile::{profile, Ensemble, Init, LearningRates, ProfileConfig};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TheoryCmd {
    /// Critical (C_b, C_W), K* and universality class of an activation.
    Criticality {
        /// Activation: linear, relu, leaky_relu:A, tanh, sin, erf, sigmoid, softplus, gelu, silu|swish, elu[:A], selu, …
        #[arg(long)]
        activation: String,
        #[arg(long)]
        json: bool,
    },
    /// Layer-by-layer K, χ_∥, χ_⊥, V, Θ, A, B, D, F from the recursions.
    Profile(ProfileArgs),
    /// Monte Carlo over real networks beside the theory, with standard errors and z-scores.
    Mc(McArgs),
    /// Merge the shards of `theory mc --shard i/k` into the unsharded run's estimates and
    /// standard errors (exactly: the same numbers bit for bit).
    McMerge(McMergeArgs),
    /// NNGP kernel K and NTK Θ of an infinitely wide MLP on a data set (.npy inputs).
    Kernels(KernelsArgs),
    /// Infinite-width predictions on test inputs: the NNGP posterior or the NTK-trained ensemble.
    Predict(PredictArgs),
    /// The O(1/n) correction to the GD-trained mean on test inputs, one or two hidden layers of width n
    /// (NTK fluctuation, dNTK, ddNTKs; docs/derivations/trained_dataset.md).
    FiniteWidth(crate::finite_width_cmd::FiniteWidthArgs),
    /// Run the whole `theory` study (figures, CSV, results.json with claims).
    Study {
        #[arg(long, default_value = "out/theory")]
        out: PathBuf,
        #[arg(long)]
        quick: bool,
        #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct NetArgs {
    /// Activation name (see `dlt theory criticality --help`).
    #[arg(long)]
    activation: String,
    /// Bias variance C_b (≥ 0).
    #[arg(long, allow_negative_numbers = true)]
    cb: f64,
    /// Weight variance C_W (> 0); weights have variance C_W/fan_in.
    #[arg(long, allow_negative_numbers = true)]
    cw: f64,
    /// K^(1) = C_b + C_W|x|²/n₀ (required by `theory mc`; `theory profile` takes it or
    /// --k1-matrix).
    #[arg(long, allow_negative_numbers = true)]
    k1: Option<f64>,
    /// Number of layers L (≥ 1).
    #[arg(long, allow_negative_numbers = true)]
    depth: usize,
    /// Weight ensemble: gaussian or orthogonal (Haar).
    #[arg(long, default_value = "gaussian")]
    init: Init,
    /// NTK bias learning rate λ_b.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    lambda_b: f64,
    /// NTK weight learning rate λ_W.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    lambda_w: f64,
    /// Use λ_b^(l) = λ_b / l (the K* = 0 equivalence-principle scaling).
    #[arg(long)]
    lambda_b_over_l: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write results.json, CSV and SVG figures into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    net: NetArgs,
    /// V^(1) (default 0: a Gaussian first layer).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    v1: f64,
    /// Residual skip weight γ: z' = γz + ξ(b + Wσ(z)).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    gamma: f64,
    /// Residual branch weight ξ.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    xi: f64,
    /// p inputs: K^(1) as a p×p matrix, rows separated by ';', e.g. "1,0.5;0.5,1".
    #[arg(long, conflicts_with = "k1")]
    k1_matrix: Option<String>,
    /// Gauss–Hermite order for 1-D expectations of smooth activations.
    #[arg(long, allow_negative_numbers = true, default_value_t = 192)]
    quad_order: usize,
}

#[derive(Args)]
pub struct McArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Width n of every hidden layer (and of the input).
    #[arg(long, allow_negative_numbers = true)]
    width: usize,
    /// Number of sampled networks S.
    #[arg(long, allow_negative_numbers = true)]
    networks: usize,
    /// Measure the NTK with the exact forward equation (full weight matrices).
    #[arg(long)]
    ntk: bool,
    /// First-layer ensemble (default: same as --init).
    #[arg(long)]
    first_layer: Option<Init>,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// Batches for batch-means standard errors.
    #[arg(long, allow_negative_numbers = true, default_value_t = 20)]
    batches: usize,
    /// Worker threads (0: all cores).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    threads: usize,
    /// Run only shard i of k (e.g. 0/4): the batches b ≡ i (mod k), whole, with the networks
    /// the unsharded run draws for them. Needs --out, where the shard's per-batch sums go;
    /// `dlt theory mc-merge` (or `dlt sweep collect`) merges the k shards exactly.
    #[arg(long, requires = "out")]
    shard: Option<String>,
}

#[derive(Args)]
pub struct McMergeArgs {
    /// The --out folders (or results.json files) of all k shards of one run.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Write results.json, mc.csv and the figures of the merged run into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: TheoryCmd) -> Result<()> {
    match cmd {
        TheoryCmd::Criticality { activation, json } => {
            let act = parse(&activation)?;
            let c = criticality(&*act);
            let v = runs::criticality_results(&c);
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let f = |x: Option<f64>| x.map_or("none".to_string(), |v| format!("{v:.10}"));
                println!(
                    "activation {}\nclass      {}\nC_b        {}\nC_W        {}\nK*         {}",
                    c.activation,
                    c.class.as_str(),
                    f(c.cb),
                    f(c.cw),
                    f(c.k_star)
                );
            }
            Ok(())
        }
        TheoryCmd::Profile(a) => run_profile(a),
        TheoryCmd::Kernels(a) => run_kernels(a),
        TheoryCmd::Predict(a) => run_predict(a),
        TheoryCmd::FiniteWidth(a) => crate::finite_width_cmd::run(a),
        TheoryCmd::Mc(a) => run_mc(a),
        TheoryCmd::McMerge(a) => {
            let (cfg, secs, res) = crate::mc_shard::merge_files(&a.shards, 0)?;
            report_mc(&cfg, secs, &res, a.out.as_deref(), a.json)
        }
        TheoryCmd::Study {
            out,
            quick,
            seed,
            json,
        } => {
            let dir = OutDir::create(&out)?;
            let r = dlt_studies::theory::run(
                &dlt_studies::theory::Config {
                    quick,
                    seed,
                    threads: 0,
                    quiet: json,
                },
                &dir,
            )?;
            crate::print_study(&r, &r.claims, json, &dir)?;
            Ok(())
        }
    }
}

fn ensemble(n: &NetArgs) -> Result<Ensemble> {
    Ok(Ensemble::new(parse(&n.activation)?, n.cb, n.cw).with_init(n.init))
}

fn lr(n: &NetArgs) -> Result<LearningRates> {
    for (flag, v) in [("--lambda-b", n.lambda_b), ("--lambda-w", n.lambda_w)] {
        anyhow::ensure!(
            v.is_finite() && v >= 0.0,
            "{flag}: learning rates must be finite and ≥ 0, got {v}"
        );
    }
    Ok(LearningRates {
        lambda_b: n.lambda_b,
        lambda_w: n.lambda_w,
        b_over_l: n.lambda_b_over_l,
    })
}

/// Parse "1,0.5;0.5,1" into (row-major values, p).
pub fn parse_matrix(s: &str) -> Result<(Vec<f64>, usize)> {
    let rows: Vec<Vec<f64>> = s
        .split(';')
        .map(|r| {
            r.split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!("--k1-matrix: cannot parse '{s}' (expected numbers like \"1,0.5;0.5,1\")")
        })?;
    let p = rows.len();
    anyhow::ensure!(
        rows.iter().all(|r| r.len() == p),
        "--k1-matrix: the matrix must be square ({p} rows)"
    );
    Ok((rows.concat(), p))
}

/// Size flags of `theory profile`, checked before any work (issue 12): depth, quadrature
/// order (at most 4096 nodes: the rule's nodes cost O(order²) to compute, and beyond a few
/// hundred nodes the 1-D expectations no longer change), and the memory of the layer table.
fn check_profile(a: &ProfileArgs) -> Result<()> {
    use crate::limits::{at_least, at_most, check_memory, prod};
    at_least("--depth", a.net.depth, 1)?;
    at_least("--quad-order", a.quad_order, 8)?;
    at_most(
        "--quad-order",
        a.quad_order,
        4096,
        "more nodes do not change the 1-D expectations",
    )?;
    // p inputs: K, Θ (p² each), V (p⁴) per layer; one input: a few dozen numbers per layer.
    let p = a
        .k1_matrix
        .as_deref()
        .map_or(1, |m| m.split(';').count().max(1));
    check_memory(
        "theory profile",
        &[(
            "--depth",
            a.net.depth.to_string(),
            prod(&[a.net.depth, p, p, p, p, 8 * 4 + 512]),
        )],
    )
}

fn run_profile(a: ProfileArgs) -> Result<()> {
    check_profile(&a)?;
    let mut e = ensemble(&a.net)?;
    e.gamma = a.gamma;
    e.xi = a.xi;
    e.quad.gh1 = a.quad_order;
    let lr = lr(&a.net)?;
    let header = runs::profile_header(&e, a.net.depth, &lr);
    if let Some(m) = &a.k1_matrix {
        let (k1, p) = parse_matrix(m)?;
        let rows = profile_multi(&e, &k1, p, a.net.depth, &lr)?;
        let v = runs::profile_multi_results(header, &k1, p, &rows);
        if let Some(out) = &a.net.out {
            runs::write_profile_multi(&OutDir::create(out)?, p, &rows, &v)?;
        }
        if a.net.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for r in &rows {
                println!("l={:<5} K={:?}", r.l, r.k);
            }
        }
        return Ok(());
    }
    let k1 = a
        .net
        .k1
        .context("--k1 is required (or --k1-matrix for several inputs)")?;
    let pc = ProfileConfig {
        ensemble: e,
        k1,
        v1: a.v1,
        depth: a.net.depth,
        lr,
    };
    let rows = profile(&pc)?;
    let mut v = runs::profile_results(header, k1, a.v1, &rows);
    runs::add_dntk(&mut v, dlt_theory::dntk::dntk_profile(&pc));
    if let Some(out) = &a.net.out {
        runs::write_profile(&OutDir::create(out)?, &rows, &v)?;
    }
    if a.net.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:>6} {:>14} {:>10} {:>10} {:>12} {:>12} {:>12}",
            "l", "K", "chi_par", "chi_perp", "V/K^2", "theta", "A/theta^2"
        );
        let step = (rows.len() / 40).max(1);
        for r in rows
            .iter()
            .filter(|r| r.l == 1 || r.l % step == 0 || r.l == rows.len())
        {
            println!(
                "{:>6} {:>14.8e} {:>10.6} {:>10.6} {:>12.6} {:>12.6} {:>12}",
                r.l,
                r.k,
                r.chi_par,
                r.chi_perp,
                r.v_over_k2(),
                r.theta,
                r.a_over_theta2().map_or("-".into(), |x| format!("{x:.6}"))
            );
        }
    }
    Ok(())
}

/// Size flags of `theory mc`, checked before any work (issue 12): the weight matrices of every
/// worker (n² each; four with --ntk) and the per-batch sums of every layer must fit in memory.
fn check_mc(a: &McArgs) -> Result<()> {
    use crate::limits::{at_least, at_most, check_memory, prod};
    at_least("--depth", a.net.depth, 1)?;
    at_least("--batches", a.batches, 2)?;
    anyhow::ensure!(
        a.networks >= a.batches.saturating_mul(2),
        "--networks {}: need at least two networks per batch (networks ≥ 2 × --batches {})",
        a.networks,
        a.batches
    );
    at_least("--width", a.width, 1)?;
    at_most("--threads", a.threads, 4096, "one worker per thread")?;
    let cores = std::thread::available_parallelism().map_or(1, |v| v.get());
    let workers = if a.threads == 0 { cores } else { a.threads }.min(a.networks.max(1));
    check_memory(
        "theory mc",
        &[
            (
                "--width",
                a.width.to_string(),
                prod(&[workers, a.width, a.width, if a.ntk { 4 * 8 } else { 8 }]),
            ),
            (
                "--depth",
                a.net.depth.to_string(),
                prod(&[a.batches, a.net.depth, 64 * 8]),
            ),
        ],
    )?;
    crate::limits::check_work(
        "theory mc",
        "--networks",
        &a.networks.to_string(),
        prod(&[
            a.networks,
            a.net.depth,
            a.width,
            a.width,
            if a.ntk { a.width } else { 1 },
        ]),
    )
}

fn run_mc(a: McArgs) -> Result<()> {
    check_mc(&a)?;
    let k1 = a.net.k1.context("--k1 is required")?;
    anyhow::ensure!(
        a.batches >= 2,
        "--batches: need at least 2 batches for a standard error"
    );
    let lr = lr(&a.net)?;
    let spec = crate::mc_shard::McSpec {
        activation: a.net.activation.clone(),
        cb: a.net.cb,
        cw: a.net.cw,
        k1,
        width: a.width,
        depth: a.net.depth,
        networks: a.networks,
        init: a.net.init,
        first_layer: a.first_layer.unwrap_or(a.net.init),
        ntk: a.ntk,
        lambda_b: lr.lambda_b,
        lambda_w: lr.lambda_w,
        lambda_b_over_l: lr.b_over_l,
        seed: a.seed,
        batches: a.batches,
    };
    let cfg = spec.config(a.threads)?;
    let shard = a.shard.as_deref().map(mc::Shard::parse).transpose()?;
    let runs_networks = match shard {
        // networks s ≡ b (mod batches) for the shard's batches b
        Some(sh) => sh
            .batches(cfg.batches)
            .iter()
            .map(|&b| (cfg.networks + cfg.batches - 1 - b) / cfg.batches)
            .sum::<usize>(),
        None => cfg.networks,
    };
    let pb = dlt_studies::progress::bar(runs_networks as u64, "networks", a.net.json);
    let t0 = std::time::Instant::now();
    let Some(sh) = shard else {
        let res = mc::run(&cfg, &|k| pb.inc(k));
        pb.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        return report_mc(&cfg, secs, &res?, a.net.out.as_deref(), a.net.json);
    };
    let batches = mc::run_shard(&cfg, sh, &|k| pb.inc(k));
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let batches = batches?;
    let file = crate::mc_shard::ShardFile {
        kind: crate::mc_shard::SHARD_KIND.into(),
        config: spec,
        shard: sh,
        seconds: secs,
        batches,
    };
    let out = a
        .net
        .out
        .as_ref()
        .context("--shard: needs --out, where the shard's sums go")?;
    let path = OutDir::create(out)?.write_json("results.json", &file)?;
    if a.net.json {
        println!("{}", serde_json::to_string_pretty(&file)?);
    } else {
        println!(
            "shard {}/{}: {runs_networks} of {} networks ({} batches) in {secs:.2} s; wrote {}\nmerge all {} shards with `dlt theory mc-merge DIR…`",
            sh.index,
            sh.count,
            cfg.networks,
            file.batches.len(),
            path.display(),
            sh.count
        );
    }
    Ok(())
}

/// Write (with `out`) and print a finished Monte Carlo run beside its 1/n theory.
fn report_mc(
    cfg: &McConfig,
    secs: f64,
    res: &[mc::McLayer],
    out: Option<&Path>,
    json: bool,
) -> Result<()> {
    let theory = cfg.theory()?;
    let v = runs::mc_results(cfg, secs, res, &theory);
    if let Some(out) = out {
        runs::write_mc(&OutDir::create(out)?, cfg, res, &theory, &v)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} networks of width {} in {:.2} s ({} sampler)",
            cfg.networks,
            cfg.width,
            secs,
            if cfg.ntk { "full" } else { "Gram" }
        );
        println!(
            "{:>4} {:>16} {:>24} {:>12} {:>7}",
            "l", "stat", "MC ± SE", "theory", "z"
        );
        for (m, t) in res.iter().zip(&theory) {
            for (name, est) in &m.stats {
                let th = t.stat(name).unwrap_or(f64::NAN);
                println!(
                    "{:>4} {:>16} {:>12.6} ± {:<9.6} {:>12.6} {:>7.2}",
                    m.l,
                    name,
                    est.value,
                    est.se,
                    th,
                    (est.value - th) / est.se
                );
            }
        }
    }
    Ok(())
}

/// The network and method flags shared by `theory kernels` and `theory predict`.
#[derive(Args)]
pub struct KernelNetArgs {
    /// Activation name (see `dlt theory criticality --help`).
    #[arg(long)]
    activation: String,
    /// Bias variance C_b (≥ 0).
    #[arg(long, allow_negative_numbers = true)]
    cb: f64,
    /// Weight variance C_W (> 0); weights have variance C_W/fan_in.
    #[arg(long, allow_negative_numbers = true)]
    cw: f64,
    /// Number of Dense layers L ≥ 1 (L − 1 hidden Dense+σ layers and a Dense readout); the
    /// kernels are those of the output z^(L).
    #[arg(long, allow_negative_numbers = true)]
    depth: usize,
    /// NTK bias learning rate λ_b (default: C_b, neural-tangents' NTK parameterisation).
    #[arg(long, allow_negative_numbers = true)]
    lambda_b: Option<f64>,
    /// NTK weight learning rate λ_W (default: C_W).
    #[arg(long, allow_negative_numbers = true)]
    lambda_w: Option<f64>,
    /// Pair integrals: auto (closed form if the activation has one, else an adaptive Mehler
    /// series to 1e-13 per pair for smooth σ, or a kink-aware 2-D quadrature), closed,
    /// mehler:M[:NODES] (Hermite orders 0..M, NODES Gauss–Hermite nodes, default 200),
    /// quadrature:N (N×N Gauss–Hermite per pair), adaptive (kink-aware 2-D quadrature).
    #[arg(long, default_value = "auto")]
    method: String,
    /// Worker threads (0: all cores); the result does not depend on it.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    threads: usize,
}

#[derive(Args)]
pub struct KernelsArgs {
    /// Training inputs X: an N×d .npy array (float32 or float64, C order).
    #[arg(long)]
    inputs: PathBuf,
    /// Test inputs: an M×d .npy array; adds the test × train blocks.
    #[arg(long)]
    inputs2: Option<PathBuf>,
    #[command(flatten)]
    net: KernelNetArgs,
    /// Print JSON on stdout: {"nngp": N×N, "ntk": N×N[, "nngp_test_train": M×N,
    /// "ntk_test_train": M×N]}.
    #[arg(long)]
    json: bool,
    /// Write nngp.npy, ntk.npy (and nngp_test_train.npy, ntk_test_train.npy) and results.json
    /// into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictKind {
    /// Exact Bayesian posterior of the NNGP.
    Nngp,
    /// Ensemble of infinitely wide networks trained by gradient flow / descent (NTK).
    Ntk,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Training inputs: an N×d .npy array.
    #[arg(long)]
    train_x: PathBuf,
    /// Training targets: an N×k .npy array, or a 1-D N-vector (one output).
    #[arg(long)]
    train_y: PathBuf,
    /// Test inputs: an M×d .npy array.
    #[arg(long)]
    test_x: PathBuf,
    /// nngp (Bayesian posterior) or ntk (trained ensemble).
    #[arg(long)]
    kind: PredictKind,
    /// ntk: gradient-flow time t (τ = η·t with η = --lr, default 1); default t = ∞.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "steps")]
    time: Option<f64>,
    /// ntk: number of full-batch gradient-descent steps (with --lr).
    #[arg(long, allow_negative_numbers = true)]
    steps: Option<i64>,
    /// ntk: learning rate η of --steps (required there) or of --time (default 1).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// nngp: observation-noise variance added to the training kernel's diagonal (absolute).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    noise: f64,
    #[command(flatten)]
    net: KernelNetArgs,
    /// Print JSON on stdout: {"mean": M×k, "cov": M×M}.
    #[arg(long)]
    json: bool,
    /// Write mean.npy, cov.npy and results.json into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The pair method from `--method` ([`PairMethod::parse`]; its errors name `--method`).
fn parse_method(s: &str, act: &dlt_theory::Act) -> Result<PairMethod> {
    Ok(PairMethod::parse(s, &**act)?)
}

/// The kernel configuration, fully validated (no data read yet).
fn kernel_config(n: &KernelNetArgs) -> Result<KernelConfig> {
    let act = parse(&n.activation)?;
    let method = parse_method(&n.method, &act)?;
    // Every layer costs each pair of inputs at least ~10³ multiply-adds (a Mehler series or
    // a Gauss–Hermite quadrature of ≥ 200 nodes), so the depth alone bounds the work.
    crate::limits::check_work(
        "the kernel recursion",
        "--depth",
        &n.depth.to_string(),
        crate::limits::prod(&[n.depth, 1000]),
    )?;
    let mut cfg = KernelConfig::new(act, n.cb, n.cw, n.depth);
    cfg.lambda_b = n.lambda_b.unwrap_or(n.cb);
    cfg.lambda_w = n.lambda_w.unwrap_or(n.cw);
    cfg.method = method;
    cfg.threads = n.threads;
    cfg.validate()?;
    Ok(cfg)
}

/// A 2-D float array read from `path` for `flag`: (values, rows, cols), at least 1×1.
fn read_matrix(flag: &str, path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    let a = npy::read_ndim(path, &[2]).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    let (r, c) = a.dims2().expect("2-D");
    anyhow::ensure!(
        r > 0 && c > 0,
        "{flag}: {}: has shape ({r}, {c}); need at least one row and one column",
        path.display()
    );
    Ok((a.data, r, c))
}

fn print_block(name: &str, v: &[f64], rows: usize, cols: usize) {
    println!("{name} ({rows}×{cols})");
    if rows <= 8 && cols <= 8 {
        for r in v.chunks(cols) {
            let cells: Vec<String> = r.iter().map(|x| format!("{x:>14.8e}")).collect();
            println!("  {}", cells.join(" "));
        }
    } else {
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        println!("  entries in [{lo:.8e}, {hi:.8e}] (use --json or --out for all)");
    }
}

fn run_kernels(a: KernelsArgs) -> Result<()> {
    let cfg = kernel_config(&a.net)?;
    let (x, n, d) = read_matrix("--inputs", &a.inputs)?;
    let test = match &a.inputs2 {
        Some(p) => {
            let (t, m, d2) = read_matrix("--inputs2", p)?;
            anyhow::ensure!(
                d2 == d,
                "--inputs2: {} has {d2} columns but --inputs {} has {d}; both must be N×d with the same d",
                p.display(),
                a.inputs.display()
            );
            Some((t, m))
        }
        None => None,
    };
    let t0 = std::time::Instant::now();
    let k = dataset_kernels(
        &cfg,
        Inputs::new(&x, n, d),
        test.as_ref().map(|(t, m)| Inputs::new(t, *m, d)),
        false,
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let m = k.n_test;
    let v = runs::kernels_json(&k, n, test.is_some());
    if let Some(out) = &a.out {
        let inputs = runs::KernelsInputs {
            inputs: &a.inputs,
            shape: [n, d],
            inputs2: a
                .inputs2
                .as_deref()
                .zip(test.as_ref().map(|(_, m)| [*m, d])),
        };
        let dir = OutDir::create(out)?;
        runs::write_kernels(&dir, &cfg, &a.net.method, &k, &inputs, secs)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "{} inputs of dimension {d}, depth {}, {} ({}) in {secs:.3} s",
            n,
            cfg.depth,
            cfg.act.name(),
            runs::method_used(&cfg, &k)
        );
        print_block("nngp", &k.k_train, n, n);
        print_block("ntk", &k.ntk_train, n, n);
        if test.is_some() {
            print_block("nngp_test_train", &k.k_test_train, m, n);
            print_block("ntk_test_train", &k.ntk_test_train, m, n);
        }
        if let Some(out) = &a.out {
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

fn run_predict(a: PredictArgs) -> Result<()> {
    let cfg = kernel_config(&a.net)?;
    // Time flags, before any data is read.
    let ntk = a.kind == PredictKind::Ntk;
    if !ntk {
        for (flag, set) in [
            ("--time", a.time.is_some()),
            ("--steps", a.steps.is_some()),
            ("--lr", a.lr.is_some()),
        ] {
            anyhow::ensure!(
                !set,
                "{flag}: applies to --kind ntk only (the NNGP posterior has no training time)"
            );
        }
    } else {
        anyhow::ensure!(
            a.noise == 0.0,
            "--noise: applies to --kind nngp only (the NTK ensemble fits the targets exactly as t → ∞); drop it, or use a finite --time"
        );
    }
    if let Some(lr) = a.lr {
        anyhow::ensure!(
            lr.is_finite() && lr > 0.0,
            "--lr: the learning rate must be finite and > 0, got {lr}"
        );
    }
    let time = match (a.time, a.steps) {
        (Some(t), _) => {
            anyhow::ensure!(
                t.is_finite() && t >= 0.0,
                "--time: the training time must be finite and ≥ 0, got {t} (omit it for t = ∞)"
            );
            NtkTime::Flow {
                tau: t * a.lr.unwrap_or(1.0),
            }
        }
        (None, Some(s)) => {
            let steps = u32::try_from(s).map_err(|_| {
                anyhow::anyhow!("--steps: need a whole number in 0..={}, got {s}", u32::MAX)
            })?;
            let eta = a.lr.context(
                "--lr: --steps needs a learning rate (e.g. --lr 0.1; converges for η < 2/λ_max(Θ))",
            )?;
            NtkTime::Steps { eta, steps }
        }
        (None, None) => NtkTime::Infinity,
    };
    anyhow::ensure!(
        a.noise.is_finite() && a.noise >= 0.0,
        "--noise: the observation-noise variance must be finite and ≥ 0, got {}",
        a.noise
    );
    let (x, n, d) = read_matrix("--train-x", &a.train_x)?;
    let ya = npy::read_ndim(&a.train_y, &[1, 2]).map_err(|e| anyhow::anyhow!("--train-y: {e}"))?;
    let (yrows, outputs) = match ya.shape[..] {
        [r] => (r, 1),
        [r, c] => (r, c),
        _ => unreachable!("1-D or 2-D"),
    };
    anyhow::ensure!(
        yrows == n,
        "--train-y: {} has {yrows} rows but --train-x {} has {n}; give one target row per training input",
        a.train_y.display(),
        a.train_x.display()
    );
    anyhow::ensure!(
        outputs > 0,
        "--train-y: {} has 0 columns; give at least one output",
        a.train_y.display()
    );
    let (t, m, dt) = read_matrix("--test-x", &a.test_x)?;
    anyhow::ensure!(
        dt == d,
        "--test-x: {} has {dt} columns but --train-x {} has {d}; test inputs must have the training inputs' dimension",
        a.test_x.display(),
        a.train_x.display()
    );
    let t0 = std::time::Instant::now();
    let k = dataset_kernels(
        &cfg,
        Inputs::new(&x, n, d),
        Some(Inputs::new(&t, m, d)),
        true,
    )?;
    let kb = k.nngp_blocks().expect("test × test block requested");
    let pred = match a.kind {
        PredictKind::Nngp => nngp_posterior(kb, &ya.data, outputs, a.noise)?,
        PredictKind::Ntk => ntk_ensemble(kb, k.ntk_blocks(), &ya.data, outputs, time)?,
    };
    let secs = t0.elapsed().as_secs_f64();
    let v = runs::predict_json(&pred, outputs, m);
    if let Some(out) = &a.out {
        let data = runs::PredictInputs {
            train_x: &a.train_x,
            train_y: &a.train_y,
            test_x: &a.test_x,
            n_train: n,
            n_test: m,
            dim: d,
            outputs,
            ntk: ntk.then_some(time),
            noise: a.noise,
        };
        let dir = OutDir::create(out)?;
        runs::write_predict(&dir, &cfg, &a.net.method, &k, &pred, &data, secs)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "{} prediction: {n} training inputs, {m} test inputs, {outputs} output(s), in {secs:.3} s",
            if ntk { "NTK ensemble" } else { "NNGP posterior" }
        );
        print_block("mean", &pred.mean, m, outputs);
        print_block("cov", &pred.cov, m, m);
        if let Some(out) = &a.out {
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}
