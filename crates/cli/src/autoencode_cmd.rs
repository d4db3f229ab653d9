//! `dlt autoencode`: topological obstructions to autoencoding (Batson, Haaf, Kahn, Roberts,
//! arXiv 2102.08380): circle, sphere and a thinned circle with too few latent dimensions.

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
}

pub fn run(a: AutoencodeArgs) -> Result<()> {
    use dlt_studies::autoencode::{run, Config};
    let mut cfg = Config::for_mode(a.quick, a.seed, a.json);
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { cfg.$f = v; } )* };
    }
    set!(seeds, hidden, steps, sphere_steps, batch, lr);
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
