//! `dlt theory finite-width`: the O(1/n) correction to the mean output of networks with one or
//! two hidden layers of width n, trained by full-batch GD on the user's inputs and read on their test
//! inputs (`dlt_theory::trajectory::dataset`; derivation: docs/derivations/trained_dataset.md).

use anyhow::Result;
use clap::Args;
use dlt_nn::data::npy;
use dlt_theory::activation::parse;
use dlt_theory::trajectory::dataset::finite_width_prediction;
use std::path::PathBuf;

/// The largest N_A + N_B: the statistics are O((N_A + N_B)⁴) Gaussian integrals of up to four
/// dimensions (≈ 1 s per 17 four-input sets at 32 nodes).
const MAX_INPUTS: usize = 24;

#[derive(Args)]
pub struct FiniteWidthArgs {
    /// Training inputs: an N_A×d .npy array.
    #[arg(long)]
    train_x: PathBuf,
    /// Training targets: a 1-D N_A-vector (one output).
    #[arg(long)]
    train_y: PathBuf,
    /// Test inputs: an N_B×d .npy array.
    #[arg(long)]
    test_x: PathBuf,
    /// Activation with σ'' and σ''' (tanh, sin, gelu, erf, …).
    #[arg(long)]
    activation: String,
    /// Depth L ≥ 2: L − 1 hidden layers of the same width (each layer adds one (N_A + N_B)⁴ pass
    /// of 4-D integrals).
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// Weight variance C_W of every layer (C_b = 0).
    #[arg(long, default_value_t = 1.0)]
    cw: f64,
    /// λ_W of every layer (default C_W; λ_b = 0).
    #[arg(long)]
    lambda_w: Option<f64>,
    /// Full-batch GD steps T on ½ Σ (z − y)².
    #[arg(long)]
    steps: usize,
    /// Learning rate η (default 0.5/λ_max(Θ_AA)); GD converges for η < 2/λ_max.
    #[arg(long)]
    lr: Option<f64>,
    /// Also print the corrected mean m∞ + C/n at this hidden width.
    #[arg(long)]
    width: Option<usize>,
    /// Gauss–Hermite nodes per dimension of the 3- and 4-D moments (tanh: 32 → ≈ 3e-4 of the
    /// largest statistic, sin: 24 → 1e-14).
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn matrix(flag: &str, path: &std::path::Path) -> Result<(Vec<f64>, usize, usize)> {
    let a = npy::read_ndim(path, &[2]).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    let (r, c) = a.dims2().expect("2-D");
    anyhow::ensure!(
        r > 0 && c > 0,
        "{flag}: {}: has shape ({r}, {c}); need at least one row and one column",
        path.display()
    );
    anyhow::ensure!(
        a.data.iter().all(|v| v.is_finite()),
        "{flag}: {}: contains a non-finite value; clean the array",
        path.display()
    );
    Ok((a.data, r, c))
}

pub fn run(a: FiniteWidthArgs) -> Result<()> {
    anyhow::ensure!(
        a.cw.is_finite() && a.cw > 0.0,
        "--cw: need a finite C_W > 0, got {}",
        a.cw
    );
    let lambda_w = a.lambda_w.unwrap_or(a.cw);
    anyhow::ensure!(
        lambda_w.is_finite() && lambda_w > 0.0,
        "--lambda-w: need a finite λ_W > 0, got {lambda_w}"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&a.steps),
        "--steps: need 1 ≤ T ≤ 1000000, got {}",
        a.steps
    );
    anyhow::ensure!(a.nodes >= 4, "--nodes: need at least 4, got {}", a.nodes);
    if let Some(w) = a.width {
        anyhow::ensure!(w >= 1, "--width: need a width ≥ 1");
    }
    let act = parse(&a.activation)?;
    let (x, na, d) = matrix("--train-x", &a.train_x)?;
    let (t, nb, dt) = matrix("--test-x", &a.test_x)?;
    anyhow::ensure!(
        dt == d,
        "--test-x: {} has {dt} columns but --train-x {} has {d}; test inputs must have the training inputs' dimension",
        a.test_x.display(),
        a.train_x.display()
    );
    anyhow::ensure!(
        na + nb <= MAX_INPUTS,
        "--train-x/--test-x: {na} + {nb} inputs; the statistics grow as (N_A + N_B)⁴ four-dimensional integrals, so at most {MAX_INPUTS} together"
    );
    let y = npy::read_ndim(&a.train_y, &[1, 2]).map_err(|e| anyhow::anyhow!("--train-y: {e}"))?;
    anyhow::ensure!(
        y.data.len() == na && y.data.iter().all(|v| v.is_finite()),
        "--train-y: {} has {} finite values; give one finite target per training input ({na}; one output)",
        a.train_y.display(),
        y.data.len()
    );
    let n = na + nb;
    let t0 = std::time::Instant::now();
    anyhow::ensure!(
        a.depth >= 2,
        "--depth: a network of depth {} has no hidden layer; give --depth 2 or more",
        a.depth
    );
    let pred = finite_width_prediction(
        &*act,
        (a.cw, lambda_w),
        a.depth,
        &x,
        &y.data,
        &t,
        d,
        a.steps,
        a.lr,
        a.nodes,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e} (inputs: --train-x and --test-x; a repeated or zero input makes their kernel singular)"
        )
    })?;
    let (eta, lam) = (pred.eta, pred.lambda_max);
    let traj = pred.trajectory;
    let secs = t0.elapsed().as_secs_f64();
    let last = traj.last().expect("steps ≥ 1");
    let test = |v: &[f64]| v[na..].to_vec();
    let mut out = serde_json::json!({
        "steps": a.steps,
        "depth": a.depth,
        "eta": eta,
        "lambda_max": lam,
        "infinite": test(&last.infinite),
        "coefficient": test(&last.coefficient),
        "theta1_term": test(&last.theta1_term),
        "variance_term": test(&last.variance_term),
        "dntk_term": test(&last.dntk_term),
        "ddntk_term": test(&last.ddntk_term),
        "train_infinite": last.infinite[..na].to_vec(),
        "train_coefficient": last.coefficient[..na].to_vec(),
        "seconds": secs,
    });
    if let Some(w) = a.width {
        let corrected: Vec<f64> = (na..n)
            .map(|k| last.infinite[k] + last.coefficient[k] / w as f64)
            .collect();
        out["width"] = serde_json::json!(w);
        out["corrected"] = serde_json::json!(corrected);
    }
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{na} training and {nb} test inputs, {} hidden layer{} of {}, {} GD steps at η = {eta:.6} (λ_max(Θ_AA) = {lam:.6}), in {secs:.2} s",
            a.depth - 1,
            if a.depth == 2 { "" } else { "s" },
            act.name(),
            a.steps
        );
        println!("test input   m∞ (infinite width)   C (E[z] = m∞ + C/n)");
        for k in na..n {
            println!(
                "{:>10}   {:>19.8}   {:>19.8}",
                k - na,
                last.infinite[k],
                last.coefficient[k]
            );
        }
    }
    Ok(())
}
