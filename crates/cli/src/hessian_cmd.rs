//! `dlt hessian`: the gradient in the top Hessian eigenspace during training (Gur-Ari, Roberts,
//! Dyer, arXiv 1812.04754), with the Dom-/Bulk-SGD ablation of Song, Ahn, Yun.

use anyhow::{Context, Result};
use clap::Args;
use dlt_studies::output::OutDir;
use std::path::PathBuf;

#[derive(Args)]
pub struct HessianArgs {
    #[arg(long, default_value = "out/hessian")]
    out: PathBuf,
    /// CI scale: SGD, momentum and Adam runs (one seed), shorter ablation (full: three SGD seeds).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Folder with the Fashion-MNIST IDX files (default: located, or fetched with apt-get).
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Hidden widths, comma-separated (protocol: 32,32; docs/derivations/hessian.md#protocol).
    #[arg(long, value_delimiter = ',', default_value = "32,32")]
    hidden: Vec<usize>,
    /// Hidden activation: relu or tanh.
    #[arg(long, default_value = "relu")]
    act: String,
    /// Average-pooling factor of the 28×28 images (4 → 49 inputs; 1 → 784).
    #[arg(long, default_value_t = 4)]
    pool: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Training steps per run.
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    /// Training examples whose loss defines the Hessian.
    #[arg(long, default_value_t = 1000)]
    hessian_examples: usize,
    /// Lanczos steps per spectrum (full reorthogonalisation, exact R-operator HVPs).
    #[arg(long, default_value_t = 60)]
    lanczos_steps: usize,
    #[arg(long, default_value_t = 0.1)]
    sgd_lr: f64,
    #[arg(long, default_value_t = 0.01)]
    momentum_lr: f64,
    #[arg(long, default_value_t = 1e-3)]
    adam_lr: f64,
    /// Steps of each Dom-/Bulk-SGD ablation arm from step 400 (0: skip; default 1000 quick, 2000 full).
    #[arg(long)]
    ablation_steps: Option<usize>,
    /// Class counts C of the class-subset runs: each trains on the first C Fashion-MNIST
    /// classes with C outputs (docs/derivations/hessian.md#class-subsets).
    #[arg(long, value_delimiter = ',', default_value = "2,5,10")]
    class_counts: Vec<usize>,
    /// SGD steps of each class-subset run (default 1500 quick, 3000 full).
    #[arg(long)]
    subset_steps: Option<usize>,
    /// Seeds per class count (default 1 quick, 3 full).
    #[arg(long)]
    subset_seeds: Option<usize>,
    /// Skip the class-subset runs.
    #[arg(long)]
    no_subsets: bool,
    /// SGD steps of the LeNet-like CNN beside the MLP (0: skip; default 600 quick, 3000 full).
    #[arg(long)]
    cnn_steps: Option<usize>,
    /// Channels of the CNN's two convolutions (default 4,8 quick; 6,16 full = LeNet-5).
    #[arg(long, value_delimiter = ',')]
    cnn_channels: Option<Vec<usize>>,
    /// Hidden dense widths of the CNN (default 32 quick; 120,84 full = LeNet-5).
    #[arg(long, value_delimiter = ',')]
    cnn_hidden: Option<Vec<usize>>,
    /// SGD learning rate of the CNN.
    #[arg(long, default_value_t = 0.05)]
    cnn_lr: f64,
    /// Class counts k of the paper's Gaussian-mixture toy model (§3; docs/derivations/hessian.md#toy-model).
    #[arg(long, value_delimiter = ',', default_value = "2,5,10")]
    toy_classes: Vec<usize>,
    /// Within-class noise levels σ of the toy model (E|x − μ|² = σ²); the smallest is where
    /// the spectrum is compared with the σ² → 0 solution, all of them give the bulk's exponent.
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.1,0.05")]
    toy_sigmas: Vec<f64>,
    /// Input dimension of the toy model.
    #[arg(long, default_value_t = 64)]
    toy_dim: usize,
    /// Inputs per class of the toy model.
    #[arg(long, default_value_t = 64)]
    toy_per_class: usize,
    /// Full-batch GD learning rate of the toy model.
    #[arg(long, default_value_t = 1.0)]
    toy_lr: f64,
    /// GD steps of the toy model (Hessians at 0, 10, 30, 100, 300, 1000 and the last step).
    #[arg(long, default_value_t = 2000)]
    toy_steps: usize,
    /// Skip the toy model.
    #[arg(long)]
    no_toy: bool,
}

pub fn run(a: HessianArgs) -> Result<()> {
    use dlt_studies::hessian::{run, Config, Scale};
    for (name, lr) in [
        ("--sgd-lr", a.sgd_lr),
        ("--momentum-lr", a.momentum_lr),
        ("--adam-lr", a.adam_lr),
    ] {
        anyhow::ensure!(
            lr > 0.0 && lr.is_finite(),
            "{name}: must be a positive number"
        );
    }
    anyhow::ensure!(
        !a.hidden.is_empty() && a.hidden.iter().all(|&w| w > 0),
        "--hidden: give at least one positive width"
    );
    anyhow::ensure!(a.steps >= 1, "--steps: need at least 1");
    check_sizes(&a)?;
    let mut cfg = Config::for_mode(a.quick, a.seed, a.json);
    cfg.data = a.data_path;
    cfg.hidden = a.hidden;
    cfg.act = dlt_nn::model::ActKind::parse(&a.act).context("--act")?;
    if !dlt_nn::mlp::Mlp::supports(cfg.act) {
        anyhow::bail!(
            "--act {}: the Hessian study's MLP kernel has relu, tanh and linear",
            a.act
        );
    }
    cfg.pool = a.pool;
    cfg.batch = a.batch;
    cfg.hessian_examples = a.hessian_examples;
    cfg.lanczos_steps = a.lanczos_steps;
    cfg.scale = Scale::for_mode(a.quick, a.seed, (a.sgd_lr, a.momentum_lr, a.adam_lr));
    cfg.scale.steps = a.steps;
    if let Some(s) = a.ablation_steps {
        cfg.scale.ablation_steps = s;
    }
    for &c in &a.class_counts {
        anyhow::ensure!(
            (2..=10).contains(&c),
            "--class-counts {c}: Fashion-MNIST has 10 classes; give counts between 2 and 10"
        );
    }
    cfg.subsets.class_counts = if a.no_subsets { vec![] } else { a.class_counts };
    if let Some(s) = a.subset_steps {
        anyhow::ensure!(s >= 2, "--subset-steps {s}: need at least 2");
        cfg.subsets.steps = s;
    }
    if let Some(s) = a.subset_seeds {
        anyhow::ensure!(s >= 1, "--subset-seeds {s}: need at least 1");
        cfg.subsets.seeds = s;
    }
    if let Some(s) = a.cnn_steps {
        cfg.cnn.steps = s;
    }
    if let Some(c) = a.cnn_channels {
        anyhow::ensure!(
            c.len() == 2 && c.iter().all(|&v| v > 0),
            "--cnn-channels: give two positive channel counts, e.g. 6,16"
        );
        cfg.cnn.channels = [c[0], c[1]];
    }
    if let Some(h) = a.cnn_hidden {
        anyhow::ensure!(
            h.iter().all(|&v| v > 0),
            "--cnn-hidden: give positive widths, e.g. 120,84"
        );
        cfg.cnn.hidden = h;
    }
    anyhow::ensure!(
        a.cnn_lr > 0.0 && a.cnn_lr.is_finite(),
        "--cnn-lr: must be a positive number"
    );
    cfg.cnn.lr = a.cnn_lr;
    for &k in &a.toy_classes {
        anyhow::ensure!(
            k >= 2 && k <= a.toy_dim,
            "--toy-classes {k}: need 2 ≤ k ≤ --toy-dim ({}) (orthonormal class means)",
            a.toy_dim
        );
    }
    if let Some(&k) = a.toy_classes.iter().max() {
        anyhow::ensure!(
            k * a.toy_dim <= 2048,
            "--toy-classes {k} × --toy-dim {}: the toy model's dense Hessian has (k·d)² entries and is diagonalised whole; keep k·d ≤ 2048",
            a.toy_dim
        );
    }
    anyhow::ensure!(
        !a.toy_sigmas.is_empty() && a.toy_sigmas.iter().all(|s| s.is_finite() && *s >= 0.0),
        "--toy-sigmas {:?}: give noise levels ≥ 0, e.g. 0.2,0.1,0.05",
        a.toy_sigmas
    );
    anyhow::ensure!(
        a.toy_per_class >= 1 && a.toy_lr > 0.0 && a.toy_lr.is_finite() && a.toy_steps >= 1,
        "--toy-per-class / --toy-lr / --toy-steps: need ≥ 1 input per class, a positive learning rate and ≥ 1 step"
    );
    let mut toy_steps: Vec<usize> = [0, 10, 30, 100, 300, 1000]
        .into_iter()
        .filter(|&t| t < a.toy_steps)
        .collect();
    toy_steps.push(a.toy_steps);
    cfg.toy = dlt_studies::hessian::ToyScale {
        class_counts: if a.no_toy { vec![] } else { a.toy_classes },
        dim: a.toy_dim,
        per_class: a.toy_per_class,
        sigmas: a.toy_sigmas,
        lr: a.toy_lr,
        checkpoints: toy_steps,
    };
    let dir = OutDir::create(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let r = run(&cfg, &dir)?;
    crate::print_study(&r, &r.claims, a.json, &dir)
}

/// Sizes of the Hessian study, checked before the data are read (issue 12): pooling divides
/// the 28×28 images, counts are ≥ 1, and the network's parameters times the Lanczos basis (one
/// vector of every parameter per step) plus the activations of the Hessian examples fit in
/// memory.
fn check_sizes(a: &HessianArgs) -> Result<()> {
    use crate::limits::{at_least, check_memory, prod, sum};
    anyhow::ensure!(
        matches!(a.pool, 1 | 2 | 4 | 7 | 14 | 28),
        "--pool {}: must divide 28 (1, 2, 4, 7, 14 or 28)",
        a.pool
    );
    at_least("--batch", a.batch, 1)?;
    at_least("--hessian-examples", a.hessian_examples, 1)?;
    at_least("--lanczos-steps", a.lanczos_steps, 2)?;
    let inputs = (28 / a.pool) * (28 / a.pool);
    let mut widths = vec![inputs];
    widths.extend(&a.hidden);
    widths.push(10);
    let params = sum(&widths
        .windows(2)
        .map(|w| prod(&[w[0].saturating_add(1), w[1]]))
        .collect::<Vec<_>>());
    let width_sum = sum(&a.hidden.iter().map(|&h| Some(h as u64)).collect::<Vec<_>>());
    let widest = a.hidden.iter().copied().max().unwrap_or(1);
    check_memory(
        "hessian",
        &[
            (
                "--hidden",
                widest.to_string(),
                params.and_then(|p| p.checked_mul(prod(&[8, a.lanczos_steps.saturating_add(8)])?)),
            ),
            (
                "--hessian-examples",
                a.hessian_examples.to_string(),
                width_sum.and_then(|w| prod(&[a.hessian_examples, 4 * 8])?.checked_mul(w)),
            ),
            (
                "--lanczos-steps",
                a.lanczos_steps.to_string(),
                prod(&[a.lanczos_steps, a.lanczos_steps, 8]),
            ),
        ],
    )?;
    // Every step: a batch through the network, forward and backward.
    let (f, v) = crate::limits::larger(("--steps", a.steps), ("--batch", a.batch));
    crate::limits::check_work(
        "hessian",
        f,
        &v,
        params.and_then(|p| p.checked_mul(prod(&[a.steps, a.batch, 3])?)),
    )
}
