//! `dlt sgd-gap`: predicted vs measured change of the generalisation gap under GD and SGD
//! (Roberts, arXiv 2104.04874).

use anyhow::{Context, Result};
use clap::Args;
use dlt_studies::output::OutDir;
use std::path::PathBuf;

#[derive(Args)]
pub struct SgdGapArgs {
    #[arg(long, default_value = "out/sgd-gap")]
    out: PathBuf,
    /// CI scale (held-out 50 000, 10 000 of them in the SGD comparison, 4000 shuffles; full: 200 000, 20 000, 16 000).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Training examples N.
    #[arg(long)]
    n_train: Option<usize>,
    /// Held-out examples.
    #[arg(long)]
    n_test: Option<usize>,
    /// Held-out examples used as B in the SGD-vs-GD comparison (the first of --n-test).
    #[arg(long)]
    n_test_sgd: Option<usize>,
    /// Hidden width of the 5-H-1 tanh MLP.
    #[arg(long)]
    hidden: Option<usize>,
    /// Step sizes of the one-step check, comma-separated.
    #[arg(long, value_delimiter = ',')]
    etas: Option<Vec<f64>>,
    /// Training sets redrawn for E[δG].
    #[arg(long)]
    redraws: Option<usize>,
    /// Step size of the SGD-vs-GD comparison (keep η n λ_max ≤ 0.02).
    #[arg(long)]
    sgd_eta: Option<f64>,
    /// Batch size B (must divide N).
    #[arg(long)]
    batch: Option<usize>,
    /// SGD shuffles averaged.
    #[arg(long)]
    shuffles: Option<usize>,
}

pub fn run(a: SgdGapArgs) -> Result<()> {
    use dlt_studies::sgd_gap::{run, Config};
    let mut cfg = Config::for_mode(a.quick, a.seed, a.json);
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { cfg.$f = v; } )* };
    }
    set!(n_train, n_test, n_test_sgd, hidden, etas, redraws, sgd_eta, batch, shuffles);
    anyhow::ensure!(
        cfg.sgd_eta > 0.0 && cfg.sgd_eta.is_finite(),
        "--sgd-eta: must be a positive number"
    );
    anyhow::ensure!(
        !cfg.etas.is_empty() && cfg.etas.iter().all(|e| *e > 0.0 && e.is_finite()),
        "--etas: give positive step sizes"
    );
    anyhow::ensure!(cfg.hidden > 0, "--hidden: must be positive");
    {
        use crate::limits::{at_least, check_memory, prod};
        at_least("--n-train", cfg.n_train, 2)?;
        at_least("--n-test", cfg.n_test, 1)?;
        at_least("--n-test-sgd", cfg.n_test_sgd, 1)?;
        at_least("--redraws", cfg.redraws, 1)?;
        at_least("--batch", cfg.batch, 1)?;
        at_least("--shuffles", cfg.shuffles, 1)?;
        anyhow::ensure!(
            cfg.n_test_sgd <= cfg.n_test,
            "--n-test-sgd {}: the SGD comparison uses the first --n-test-sgd of the --n-test {} held-out examples; use --n-test-sgd ≤ --n-test",
            cfg.n_test_sgd,
            cfg.n_test
        );
        anyhow::ensure!(
            cfg.n_train.is_multiple_of(cfg.batch),
            "--batch {}: must divide --n-train {}",
            cfg.batch,
            cfg.n_train
        );
        // The 5-H-1 network's per-example Jacobians (H·7 parameters) over train and test sets.
        let params = prod(&[cfg.hidden, 7]);
        check_memory(
            "sgd-gap",
            &[
                (
                    "--hidden",
                    cfg.hidden.to_string(),
                    params.and_then(|p| p.checked_mul(p)?.checked_mul(8)),
                ),
                (
                    "--n-train",
                    cfg.n_train.to_string(),
                    params.and_then(|p| p.checked_mul(prod(&[cfg.n_train, 8])?)),
                ),
                (
                    "--n-test",
                    cfg.n_test.to_string(),
                    params.and_then(|p| p.checked_mul(prod(&[cfg.n_test, 8])?)),
                ),
            ],
        )?;
        // Each redraw and each shuffle passes over the training set at least once.
        for (flag, v) in [("--redraws", cfg.redraws), ("--shuffles", cfg.shuffles)] {
            crate::limits::check_work(
                "sgd-gap",
                flag,
                &v.to_string(),
                params.and_then(|p| p.checked_mul(prod(&[v, cfg.n_train])?)),
            )?;
        }
    }
    let dir = OutDir::create(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let r = run(&cfg, &dir)?;
    crate::print_study(&r, &r.claims, a.json, &dir)
}
