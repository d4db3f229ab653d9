//! `dlt autoencode`: topological obstructions to autoencoding (Batson, Haaf, Kahn, Roberts,
//! arXiv 2102.08380): circle, sphere and a thinned circle with too few latent dimensions, and the
//! mock bump hunt on RAMBO phase space, knotted and linked curves, and the latent code during
//! training.

use anyhow::{Context, Result};
use clap::Args;
use dlt_studies::output::OutDir;
use std::path::PathBuf;

#[derive(Args)]
pub struct AutoencodeArgs {
    #[arg(long, default_value = "out/autoencode")]
    out: PathBuf,
    /// CI scale: one seed per setting (full: three).
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Seeds per setting.
    #[arg(long)]
    seeds: Option<usize>,
    /// Hidden widths of the encoder (mirrored in the decoder), comma-separated (protocol: 64,64;
    /// docs/derivations/autoencode.md#protocol).
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Adam steps for the circles (the sphere uses --sphere-steps).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    sphere_steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    /// Initial Adam learning rate (cosine decay to 3 %).
    #[arg(long)]
    lr: Option<f64>,
    /// Bump hunt: background training events (RAMBO, n = 3 at √s = 1; quick 50 000, full and
    /// the paper's reference run 100 000).
    #[arg(long)]
    bump_train: Option<usize>,
    /// Bump hunt: Adam steps per autoencoder (protocol: 5000).
    #[arg(long)]
    bump_steps: Option<usize>,
    /// Bump hunt: latent sizes, comma-separated (3n − 4 = 5 is the phase-space sphere's
    /// dimension; default 4,5,6,7,9).
    #[arg(long, value_delimiter = ',')]
    bump_latents: Option<Vec<usize>>,
    /// Bump hunt: the signal resonance's mass m_R in (0, 1) (default 0.5).
    #[arg(long)]
    resonance_mass: Option<f64>,
    /// Knotted and linked curves (unknot, trefoil, Hopf link, unlinked rings; d = 1, 2): Adam
    /// steps per autoencoder (default 1000, batch 64).
    #[arg(long)]
    knot_steps: Option<usize>,
    /// Knotted and linked curves: training points per component (default 2000).
    #[arg(long)]
    knot_points: Option<usize>,
}

pub fn run(a: AutoencodeArgs) -> Result<()> {
    use dlt_studies::autoencode::{run, Config};
    let mut cfg = Config::for_mode(a.quick, a.seed, a.json);
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { cfg.$f = v; } )* };
    }
    set!(seeds, hidden, steps, sphere_steps, batch, lr);
    if let Some(v) = a.bump_train {
        cfg.bump.n_train = v;
    }
    if let Some(v) = a.bump_steps {
        cfg.bump.steps = v;
    }
    if let Some(v) = a.bump_latents.clone() {
        cfg.bump.latents = v;
    }
    if let Some(v) = a.resonance_mass {
        cfg.bump.m_r = v;
    }
    if let Some(v) = a.knot_steps {
        cfg.knots.steps = v;
    }
    if let Some(v) = a.knot_points {
        cfg.knots.points = v;
    }
    cfg.validate()?; // every flag, before any work or output
                     // Weights, gradients and two Adam moments (f64) of the six settings × seeds trained at once,
                     // and each one's activations of a batch.
    let at_once = std::thread::available_parallelism()
        .map_or(1, |v| v.get())
        .min(cfg.seeds.saturating_mul(6)) as u64;
    let mut widths = vec![3];
    widths.extend(&cfg.hidden);
    widths.push(3);
    let params = widths.windows(2).try_fold(0u64, |a, w| {
        a.checked_add(crate::limits::prod(&[w[0], w[1]])?)
    });
    let acts = widths.iter().try_fold(0u64, |a, &w| {
        a.checked_add(crate::limits::prod(&[w, cfg.batch, 2 * 2 * 8])?)
    });
    crate::limits::check_memory(
        "autoencode",
        &[
            (
                "--hidden",
                dlt_studies::limits::list(&cfg.hidden),
                params.and_then(|p| p.checked_mul(4 * 8 * at_once)),
            ),
            (
                "--batch",
                cfg.batch.to_string(),
                acts.and_then(|p| p.checked_mul(at_once)),
            ),
        ],
    )?;
    let dir = OutDir::create(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let r = run(&cfg, &dir)?;
    crate::print_study(&r, &r.claims, a.json, &dir)
}
