//! `dlt jacobian`: Jacobian regularisation and robustness (Hoffman, Roberts, Yaida, arXiv
//! 1908.02729).

use anyhow::{Context, Result};
use clap::Args;
use dlt_studies::output::OutDir;
use std::path::PathBuf;

#[derive(Args)]
pub struct JacobianArgs {
    #[arg(long, default_value = "out/jacobian")]
    out: PathBuf,
    /// CI scale: one seed, 1000 evaluation points (full: two seeds, 2000).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Folder with the Fashion-MNIST IDX files (default: located, or fetched with apt-get).
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Penalty strengths λ, comma-separated (0 is the baseline; the claims compare 0.01 with 0).
    #[arg(long, value_delimiter = ',')]
    lambdas: Option<Vec<f64>>,
    /// Seeds per λ.
    #[arg(long)]
    seeds: Option<usize>,
    /// Hidden widths, comma-separated (protocol: 100,100; docs/derivations/jacobian.md#protocol).
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Test points attacked (FGSM, PGD) and used for |J|_F, margins and cells.
    #[arg(long)]
    eval_points: Option<usize>,
    /// Baseline L2 weight decay μ (gradient + μθ); 0 skips it (full default 3e-3; quick 0).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Baseline dropout probability on the hidden units; 0 skips it (full default 0.5; quick 0).
    #[arg(long)]
    dropout: Option<f64>,
    /// Baseline FGSM adversarial training radius ε (L∞); 0 skips it (full default 0.05; quick 0).
    #[arg(long)]
    fgsm_train_eps: Option<f64>,
    /// Test points attacked by Carlini–Wagner L2 (quick 100, full 300; 0 skips the attack).
    #[arg(long)]
    cw_points: Option<usize>,
    /// CW binary-search steps on c (quick 4, full 6).
    #[arg(long)]
    cw_steps: Option<usize>,
    /// CW Adam iterations per search step (quick 40, full 100).
    #[arg(long)]
    cw_iters: Option<usize>,
    /// Test inputs through which decision cells are cut (quick 3, full 4; 0: none).
    #[arg(long)]
    cells: Option<usize>,
    /// Half-width R of each decision-cell cross-section, L2 pixel units (default 50).
    #[arg(long)]
    cell_radius: Option<f64>,
    /// Lattice points per side of a cross-section (quick 41, full 81).
    #[arg(long)]
    cell_grid: Option<usize>,
    /// Adam steps of the LeNet-like CNN trained with and without the penalty (0: skip; quick
    /// skips it, full 3000).
    #[arg(long)]
    cnn_steps: Option<usize>,
    /// The CNN's penalty strength λ (compared with λ = 0; default 0.01).
    #[arg(long)]
    cnn_lambda: Option<f64>,
    /// Channels of the CNN's two convolutions (default 4,8; 6,16 is LeNet-5).
    #[arg(long, value_delimiter = ',')]
    cnn_channels: Option<Vec<usize>>,
}

pub fn run(a: JacobianArgs) -> Result<()> {
    use dlt_studies::jacobian::{run, Config};
    let mut cfg = Config::for_mode(a.quick, a.seed, a.json);
    cfg.data = a.data_path.clone();
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { cfg.$f = v; } )* };
    }
    set!(
        lambdas,
        seeds,
        hidden,
        epochs,
        batch,
        lr,
        eval_points,
        weight_decay,
        dropout,
        fgsm_train_eps,
        cw_points,
        cells,
        cell_radius,
        cell_grid
    );
    if let Some(v) = a.cw_steps {
        cfg.cw.search_steps = v;
    }
    if let Some(v) = a.cw_iters {
        cfg.cw.iters = v;
    }
    if let Some(v) = a.cnn_steps {
        cfg.cnn.steps = v;
    }
    if let Some(l) = a.cnn_lambda {
        anyhow::ensure!(
            l > 0.0 && l.is_finite(),
            "--cnn-lambda {l}: give a positive strength (λ = 0 always runs beside it)"
        );
        cfg.cnn.lambda = l;
    }
    if let Some(c) = &a.cnn_channels {
        anyhow::ensure!(
            c.len() == 2 && c.iter().all(|&v| v > 0),
            "--cnn-channels: give two positive channel counts, e.g. 6,16"
        );
        cfg.cnn.channels = [c[0], c[1]];
    }
    cfg.validate()?; // every flag, before any data are read or output created
                     // Weights, gradients and two Adam moments (f64) of every model trained at once.
    let mut widths = vec![784];
    widths.extend(&cfg.hidden);
    widths.push(10);
    let at_once = std::thread::available_parallelism()
        .map_or(1, |v| v.get())
        .min(
            cfg.seeds
                .saturating_mul(cfg.lambdas.len() + cfg.baselines().len()),
        );
    let params = widths.windows(2).try_fold(0u64, |a, w| {
        a.checked_add(crate::limits::prod(&[w[0], w[1]])?)
    });
    crate::limits::check_memory(
        "jacobian",
        &[(
            "--hidden",
            dlt_studies::limits::list(&cfg.hidden),
            params.and_then(|p| p.checked_mul(4 * 8 * at_once as u64)),
        )],
    )?;
    let dir = OutDir::create(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let r = run(&cfg, &dir)?;
    crate::print_study(&r, &r.claims, a.json, &dir)
}
