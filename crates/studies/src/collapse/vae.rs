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

/// Per policy, 16 sampled images per generation (for the grid).
pub type Samples = Vec<(String, Vec<Vec<f32>>)>;

/// The VAE collapse experiment on Fashion-MNIST: a fresh VAE per generation; returns the rows
/// and the [`Samples`].
pub fn vae_runs(
    data_path: Option<&std::path::Path>,
    sc: &VaeScale,
    policies: &[Policy],
    seed: u64,
    quiet: bool,
    files: RunFiles<'_>,
) -> Result<(Vec<VaeRow>, Samples), StudyError> {
    let data = dlt_nn::data::fashion_mnist(data_path)?;
    let train = data.train.subset(sc.train_images, seed);
    let test = data.test.subset(sc.test_images, seed + 1);
    let (mut rows, mut grids) = (vec![], vec![]);
    files.run_policies(
        "vae",
        policies,
        sc.generations,
        seed,
        &format!(
            "{data_path:?}|{}",
            serde_json::to_string(sc).unwrap_or_default()
        ),
        quiet,
        &train,
        || models::VaeGenerative::new(sc.model, test.clone(), seed),
        |policy, model, out| {
            for g in out {
                rows.push(VaeRow {
                    policy: policy.as_str().into(),
                    g: g.g,
                    train_images: g.train_size,
                    test_neg_elbo: g.metrics[0].1,
                });
            }
            grids.push((policy.as_str().to_string(), model.grids.clone()));
        },
    )?;
    Ok((rows, grids))
}

/// Test −ELBO against the generation, one line per policy.
pub fn vae_figure(rows: &[VaeRow], sc: &VaeScale) -> Figure {
    let fig = Figure::new(
        format!("VAEs on Fashion-MNIST ({} real images)", sc.train_images),
        "generation",
        "test −ELBO (nats/image)",
    );
    super::policy_lines(fig, rows, |r| &r.policy, |r| (r.g as f64, r.test_neg_elbo))
}

/// `vae_samples_POLICY.png` per policy of [`vae_runs`]' grids: one row of 16 sampled images
/// per generation.
pub fn write_vae_samples(
    out: &OutDir,
    grids: &[(String, Vec<Vec<f32>>)],
) -> Result<(), StudyError> {
    for (policy, g) in grids {
        // One row of 16 samples per generation.
        out.write_bytes(
            &format!("vae_samples_{policy}.png"),
            &dlt_nn::vae::png_grid(g, 16)?,
        )?;
    }
    Ok(())
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
        vae_figure(&vae, vsc).save_svg(&out.path("vae.svg"))?;
        figures.push("vae.svg".into());
        write_vae_samples(out, &grids)?;
        out.write_records("vae.csv", &vae)?;
    }
    Ok(vae)
}
