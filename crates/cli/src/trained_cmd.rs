//! `dlt trained`: trained networks at infinite and finite width (PDLT, arXiv 2106.10165,
//! ch. 6, 7, 10, ∞).

use anyhow::{Context, Result};
use clap::Args;
use dlt_studies::output::OutDir;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainedArgs {
    #[arg(long, default_value = "out/trained")]
    out: PathBuf,
    /// CI scale: 1000 train / 1000 test images, 2 pairs of width-256 networks beside the
    /// kernels, ensembles at widths 32–256 from 512·n/32 pairs, trajectories at widths 32, 64
    /// from 80000 pairs, part 4 from 20000 pairs and 12 steps (full: 4000 / 2000 images, 4
    /// pairs of width 512, ensembles at 32–512 from 1024·n/32 pairs, trajectories at 32, 64, 128
    /// from 160000 pairs, part 4 from 60000 pairs and 100 steps).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Folder with the Fashion-MNIST IDX files (default: located, or fetched with apt-get).
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Training images of the kernel-regression part.
    #[arg(long)]
    n_train: Option<usize>,
    /// Test images of the kernel-regression part.
    #[arg(long)]
    n_test: Option<usize>,
    /// Depths L (Dense layers) of the kernel-regression sweep, comma-separated.
    #[arg(long, value_delimiter = ',')]
    depths: Option<Vec<usize>>,
    /// GD steps of the finite-time NTK prediction and of the trained networks (part 1).
    #[arg(long)]
    steps: Option<usize>,
    /// Hidden width of the networks trained beside the kernels.
    #[arg(long)]
    net_width: Option<usize>,
    /// Antithetic pairs of networks per activation beside the kernels.
    #[arg(long)]
    net_pairs: Option<usize>,
    /// Widths of the finite-width ensembles, comma-separated (at least two, increasing).
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<usize>>,
    /// Antithetic pairs per ensemble width (≥ 2).
    #[arg(long)]
    pairs: Option<usize>,
    /// GD steps of the finite-width ensembles.
    #[arg(long)]
    ensemble_steps: Option<usize>,
    /// Widths of the one-input trajectories against the 1/n theory, comma-separated (at least
    /// two, increasing; the two largest are extrapolated).
    #[arg(long, value_delimiter = ',')]
    trajectory_widths: Option<Vec<usize>>,
    /// Antithetic pairs of the trajectories at the smallest width (∝ n above it).
    #[arg(long)]
    trajectory_pairs: Option<usize>,
    /// GD steps of the trajectories.
    #[arg(long)]
    trajectory_steps: Option<usize>,
    /// Depth L ≥ 2 of the trajectory networks (part 3, the training and the test input).
    #[arg(long)]
    trajectory_depth: Option<usize>,
    /// Cosine between the training input and the test input the trajectories are read on.
    #[arg(long, allow_negative_numbers = true)]
    trajectory_test_cos: Option<f64>,
    /// Real training images of part 4 (N_A + N_B ≤ 24; this and the other --dataset-* flags set
    /// every depth of part 4).
    #[arg(long)]
    dataset_train: Option<usize>,
    /// Real test images of part 4.
    #[arg(long)]
    dataset_test: Option<usize>,
    /// Widths of part 4's networks, comma-separated (at least two, increasing).
    #[arg(long, value_delimiter = ',')]
    dataset_widths: Option<Vec<usize>>,
    /// Antithetic pairs of part 4 at the smallest width (∝ n above it).
    #[arg(long)]
    dataset_pairs: Option<usize>,
    /// GD steps of part 4.
    #[arg(long)]
    dataset_steps: Option<usize>,
    /// Skip part 4's networks with two hidden layers.
    #[arg(long)]
    no_dataset_depth3: bool,
    /// Skip part 4's networks with three hidden layers.
    #[arg(long)]
    no_dataset_depth4: bool,
}

pub fn run(a: TrainedArgs) -> Result<()> {
    use dlt_studies::trained::{run, Config};
    let mut cfg = Config::for_mode(a.quick, a.seed, a.json);
    cfg.data = a.data_path.clone();
    if let Some(v) = a.n_train {
        cfg.n_train = v;
    }
    if let Some(v) = a.n_test {
        cfg.n_test = v;
    }
    let r = &mut cfg.regression;
    // Config::validate refuses impossible values below, naming the flag.
    if let Some(v) = a.depths.clone() {
        r.net_depths.retain(|d| v.contains(d));
        r.depths = v;
    }
    if let Some(v) = a.steps {
        r.steps = v;
    }
    if let Some(v) = a.net_width {
        r.net_width = v;
    }
    if let Some(v) = a.net_pairs {
        r.net_pairs = v;
    }
    let e = &mut cfg.ensembles;
    if let Some(v) = a.widths.clone() {
        e.widths = v;
    }
    if let Some(v) = a.pairs {
        e.pairs = v;
    }
    if let Some(v) = a.ensemble_steps {
        e.steps = v;
    }
    let t = &mut cfg.trajectory;
    if let Some(v) = a.trajectory_widths.clone() {
        t.widths = v;
    }
    if let Some(v) = a.trajectory_pairs {
        t.pairs = v;
    }
    if let Some(v) = a.trajectory_steps {
        t.steps = v;
    }
    if let Some(v) = a.trajectory_depth {
        t.depth = v;
    }
    if let Some(v) = a.trajectory_test_cos {
        t.test_cos = v;
    }
    if a.no_dataset_depth3 {
        cfg.dataset_depth3 = None;
    }
    if a.no_dataset_depth4 {
        cfg.dataset_depth4 = None;
    }
    // The --dataset-* flags set every depth of part 4.
    for d in std::iter::once(&mut cfg.dataset)
        .chain(cfg.dataset_depth3.as_mut())
        .chain(cfg.dataset_depth4.as_mut())
    {
        if let Some(v) = a.dataset_train {
            d.n_train = v;
        }
        if let Some(v) = a.dataset_test {
            d.n_test = v;
        }
        if let Some(v) = a.dataset_widths.clone() {
            d.widths = v;
        }
        if let Some(v) = a.dataset_pairs {
            d.pairs = v;
        }
        if let Some(v) = a.dataset_steps {
            d.steps = v;
        }
    }
    cfg.validate()?; // before any output is created
    let dir = OutDir::create(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let r = run(&cfg, &dir)?;
    crate::print_study(&r, &r.claims, a.json, &dir)
}
