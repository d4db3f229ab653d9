//! The VAE part of the collapse study: a fresh VAE per generation on Fashion-MNIST.

use super::*;

/// Sizes of the VAE experiment.
#[derive(Debug, Clone, Serialize)]
pub struct VaeScale {
    /// Real Fashion-MNIST training images (a seeded subset).
    pub train_images: usize,
    /// Real test images for the −ELBO (a seeded subset).
    pub test_images: usize,
    /// Generations per policy.
    pub generations: usize,
    /// VAE sizes and training settings.
    pub model: dlt_nn::vae::VaeConfig,
}

impl VaeScale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        Self {
            train_images: if quick { 5000 } else { 20_000 },
            test_images: 2000,
            generations: if quick { 5 } else { 8 },
            model: dlt_nn::vae::VaeConfig {
                hidden: 256,
                latent: 16,
                batch: 128,
                lr: 1e-3,
                epochs: if quick { 3 } else { 5 },
            },
        }
    }
}

/// VAE: held-out −ELBO per generation and policy.
#[derive(Debug, Clone, Serialize)]
pub struct VaeRow {
    /// Data policy.
    pub policy: String,
    /// Generation (0 = trained on real images).
    pub g: usize,
    /// Training images of this generation.
    pub train_images: usize,
    /// −ELBO (nats per image) on real Fashion-MNIST test images.
    pub test_neg_elbo: f64,
}

/// The VAE collapse experiment on Fashion-MNIST: a fresh VAE per generation; returns the rows
/// and, per policy, 16 sampled images per generation (for the grid).
pub fn vae_runs(
    data_path: Option<&std::path::Path>,
    sc: &VaeScale,
    policies: &[Policy],
    seed: u64,
    quiet: bool,
    files: RunFiles<'_>,
) -> Result<(Vec<VaeRow>, Vec<(String, Vec<Vec<f32>>)>), StudyError> {
    let stream = files.stream;
    let data = dlt_nn::data::fashion_mnist(data_path)?;
    let train = data.train.subset(sc.train_images, seed);
    let test = data.test.subset(sc.test_images, seed + 1);
    let mut rows = vec![];
    let mut grids = vec![];
    let mut stream_err: Option<std::io::Error> = None;
    let pb = crate::progress::bar(
        (policies.len() * sc.generations) as u64,
        "VAE generations",
        quiet,
    );
    for &policy in policies {
        let mut model = models::VaeGenerative::new(sc.model, test.clone(), seed);
        let ckpt = files.checkpoint(
            "vae",
            policy,
            format!(
                "{data_path:?}|{}|{seed}",
                serde_json::to_string(sc).unwrap_or_default()
            ),
        );
        let out = run_generations_checkpointed(
            &mut model,
            &train,
            sc.generations,
            policy,
            seed,
            ckpt.as_ref(),
            &mut |m| {
                pb.inc(1);
                if let (Some(p), None) = (stream, &stream_err) {
                    if let Err(e) = append_generation(p, "vae", policy, m) {
                        stream_err = Some(e);
                    }
                }
            },
        )?;
        for g in out {
            rows.push(VaeRow {
                policy: policy.as_str().into(),
                g: g.g,
                train_images: g.train_size,
                test_neg_elbo: g.metrics[0].1,
            });
        }
        grids.push((policy.as_str().to_string(), model.grids.clone()));
    }
    pb.finish_and_clear();
    if let (Some(p), Some(e)) = (stream, stream_err) {
        return Err(dlt_nn::NnError::io(p, e).into());
    }
    Ok((rows, grids))
}

/// Part 4: VAEs on Fashion-MNIST, generation after generation.
pub(super) fn vae_part(
    cfg: &Config,
    out: &OutDir,
    claims: &mut Vec<Claim>,
    figures: &mut Vec<String>,
) -> Result<Vec<VaeRow>, StudyError> {
    // 4. VAEs on real images.
    let mut vae = vec![];
    if let Some(vsc) = &cfg.vae {
        let (rows, grids) = vae_runs(
            None,
            vsc,
            &Policy::ALL,
            cfg.seed + 7000,
            cfg.quiet,
            RunFiles {
                stream: Some(&out.path("generations.jsonl")),
                checkpoints: Some(&out.path("checkpoints")),
                resume: cfg.resume,
            },
        )?;
        vae = rows;
        let nelbo = |p: &str, g: usize| {
            vae.iter()
                .find(|r| r.policy == p && r.g == g)
                .map_or(f64::NAN, |r| r.test_neg_elbo)
        };
        let gl = vsc.generations - 1;
        claims.extend(degradation_claims(
            "vae",
            "VAE experiments",
            &format!(
                "VAE on Fashion-MNIST, replace: test −ELBO on real images rises from {} to {} nats over {gl} generations",
                fmt_num(nelbo("replace", 0)),
                fmt_num(nelbo("replace", gl))
            ),
            "the test −ELBO",
            nelbo,
            gl,
        ));
        let mut fig = Figure::new(
            format!("VAEs on Fashion-MNIST ({} real images)", vsc.train_images),
            "generation",
            "test −ELBO (nats/image)",
        );
        for policy in Policy::ALL {
            let rows: Vec<&VaeRow> = vae.iter().filter(|r| r.policy == policy.as_str()).collect();
            fig = fig.with(Series::line(
                policy.as_str(),
                rows.iter().map(|r| (r.g as f64, r.test_neg_elbo)).collect(),
            ));
        }
        fig.save_svg(&out.path("vae.svg"))?;
        figures.push("vae.svg".into());
        for (policy, g) in &grids {
            // One row of 16 samples per generation.
            out.write_bytes(
                &format!("vae_samples_{policy}.png"),
                &dlt_nn::vae::png_grid(g, 16)?,
            )?;
        }
        out.write_records("vae.csv", &vae)?;
    }
    Ok(vae)
}
