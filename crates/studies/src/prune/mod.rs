//! Study `prune`: Gromov, Tirumala, Shapourian, Glorioso, Roberts, "The Unreasonable
//! Ineffectiveness of the Deeper Layers" (arXiv 2403.17887) on a real LLM (SmolLM2-135M-Instruct,
//! Q4_1 GGUF, dequantised to f32) and held-out Shakespeare:
//!
//! 1. the angular distance d(x^(l), x^(l+n)) between residual-stream states (§3.2, eq. (7)) for
//!    every (n, l), and the block l*(n) it selects;
//! 2. perplexity after dropping n blocks chosen by the angular rule, by the paper's simpler
//!    heuristic (the deepest n blocks before the final one) and by random blocks (control);
//! 3. LoRA healing of pruned models with the paper's recipe (§3.3; f32 base instead of 4-bit),
//!    perplexity before/after, beside the unpruned model healed the same way (control);
//! 4. export of a pruned model as GGUF, reloaded and re-evaluated;
//! 5. benchmark accuracy (lm-eval's conventions) against the fraction of blocks dropped, before
//!    and after healing, beside the normalised loss NLL / ln V on two texts (the paper's Fig. 1;
//!    docs/derivations/prune.md#accuracy-sweep).
//!
//! Block ranges are 0-based and end-exclusive everywhere (`start..end`).
//! Cost (2 cores): quick ≈ 8 min (part 5 ≈ 3 of them). Full 145 min (8710 s), measured whole on
//! 2026-12-04 from a fresh cache (`stage_seconds`): probe 4.4 min (beside a test build; 42 s
//! alone), part 2 12.8 min (61 pruned models), the seven healed models 75.8 min (150 LoRA steps
//! and scoring each: 13.7 min for the unpruned control down to 8.7 min at n = 12), part 5's two
//! texts 7.4 min (25 models × 2 × 8192 tokens), ARC-Easy 6.9 min, PIQA 10.8 min and HellaSwag
//! 26.4 min (25 models × 250 items each).
//! Each heavy stage is checkpointed as it finishes, and `Config::resume` reads matching
//! checkpoints back (`stages.rs`), so the full run can be done in pieces.

mod accuracy;
mod claims;
mod figures;
mod measure;
mod model;
pub mod stages;

pub use accuracy::{Accuracy, AccuracyRow, CollapseRow, LossRow};
use claims::{claims, comparisons};
use figures::{accuracy_figure, figures, write_tables};
use measure::{
    export_pruned, heal_pruned, load_inputs, probe_unpruned, prune_and_evaluate, HealInputs,
};
pub use model::{distances_results, eval_results, prune_model, write_distances, PruneRun};

use std::path::PathBuf;
use std::time::Instant;

use dlt_llm::eval::Perplexity;
use dlt_llm::lora::HealConfig;
use dlt_llm::probe::{Distances, Position};
use serde::{Deserialize, Serialize};

use crate::claim::Claim;
use crate::output::OutDir;
use crate::study::StudyError;

const PAPER: &str = "Gromov et al. 2024 (arXiv 2403.17887)";

/// Sizes of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// Probe sequences and their length in tokens.
    pub probe_samples: usize,
    /// Length of each probe sequence in tokens.
    pub probe_len: usize,
    /// Token positions at which the angular distances are taken.
    pub position: Position,
    /// Held-out tokens for perplexity, window length (every prediction in a window is scored).
    pub eval_tokens: usize,
    /// Perplexity window length in tokens.
    pub ctx: usize,
    /// Tokens per batch of the batch-means SE of paired comparisons (docs/derivations/prune.md
    /// #paired-differences).
    pub se_block: usize,
    /// Block sizes n to drop.
    pub drops: Vec<usize>,
    /// Random blocks drawn per n (control).
    pub random_draws: usize,
    /// Block sizes healed with LoRA (angular and drop-last rules).
    pub heal_drops: Vec<usize>,
    /// LoRA healing settings.
    pub heal: HealConfig,
    /// Characters of training text given to healing.
    pub heal_chars: usize,
    /// Block size of the exported GGUF files (angular rule), if any.
    pub export_drop: Option<usize>,
    /// Benchmark tasks of part 5 (lm-eval names).
    pub bench_tasks: Vec<String>,
    /// Items per task (a seeded subset).
    pub bench_items: usize,
    /// Block sizes n of the accuracy sweep (n = 0 is always scored).
    pub acc_drops: Vec<usize>,
    /// Random draws per n in the accuracy sweep.
    pub acc_random_draws: usize,
    /// Healed models also scored on the benchmarks and texts: `angular`, `last`, `control`.
    pub acc_healed: Vec<String>,
    /// Tokens of each text for the normalised loss of part 5.
    pub acc_text_tokens: usize,
}

/// The depth the block sizes of [`Scale::for_mode`] are written for: SmolLM2-135M's 30 blocks.
pub const REFERENCE_DEPTH: usize = 30;

impl Scale {
    /// The sizes for a model of `depth` blocks: every block size n (written for
    /// [`REFERENCE_DEPTH`] blocks) becomes round(n·depth/30), kept within 1..depth−1 and without
    /// repeats, so the fractions dropped stay what they were (Gemma 3's 18 blocks: the quick
    /// sweep's n = 3…24 become 2…14). The identity at depth 30.
    pub fn for_depth(&self, depth: usize) -> Scale {
        if depth == REFERENCE_DEPTH || depth < 2 {
            return self.clone();
        }
        let map = |n: usize| {
            ((n as f64 * depth as f64 / REFERENCE_DEPTH as f64).round() as usize)
                .clamp(1, depth - 1)
        };
        let list = |v: &[usize]| {
            let mut out: Vec<usize> = Vec::with_capacity(v.len());
            for n in v.iter().map(|&n| map(n)) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            out
        };
        Scale {
            drops: list(&self.drops),
            heal_drops: list(&self.heal_drops),
            export_drop: self.export_drop.map(map),
            acc_drops: list(&self.acc_drops),
            ..self.clone()
        }
    }

    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        Scale {
            probe_samples: if quick { 16 } else { 64 },
            probe_len: if quick { 128 } else { 256 },
            position: Position::LastToken,
            eval_tokens: if quick { 2048 } else { 8192 },
            ctx: 512,
            se_block: 128,
            drops: if quick {
                vec![2, 4, 6, 8, 12]
            } else {
                vec![1, 2, 3, 4, 5, 6, 8, 10, 12, 14]
            },
            random_draws: if quick { 2 } else { 4 },
            heal_drops: if quick { vec![6] } else { vec![4, 8, 12] },
            // The paper's recipe at 4× our former constant rate: we heal with ~10⁻³ of the
            // paper's tokens, and at 3e-4 the gentler recipe (α = r, FFN only, cosine) closed
            // only 26 % of the drop-last gap in 24 steps; at 1.2e-3, 80 % (calibration,
            // docs/derivations/prune.md#healing-recipe).
            heal: HealConfig {
                seq: 128,
                lr: 1.2e-3,
                ..HealConfig::paper(8, if quick { 24 } else { 150 })
            },
            heal_chars: if quick { 300_000 } else { 2_000_000 },
            export_drop: Some(6),
            bench_tasks: if quick {
                vec!["arc_easy".into()]
            } else {
                vec!["arc_easy".into(), "hellaswag".into(), "piqa".into()]
            },
            bench_items: if quick { 100 } else { 250 },
            acc_drops: if quick {
                vec![3, 6, 9, 12, 18, 24]
            } else {
                vec![3, 6, 9, 12, 15, 18, 21, 24]
            },
            acc_random_draws: if quick { 0 } else { 1 },
            acc_healed: if quick {
                vec!["last".into()]
            } else {
                vec!["angular".into(), "last".into(), "control".into()]
            },
            acc_text_tokens: if quick { 1024 } else { 8192 },
        }
    }
}

/// Study configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Quick sizes instead of the full ones.
    pub quick: bool,
    /// Seed of the random-block control.
    pub seed: u64,
    /// Hide progress bars.
    pub quiet: bool,
    /// A .gguf file or Hugging Face directory; default: SmolLM2-135M-Instruct Q4_1 (fetched).
    pub model: Option<PathBuf>,
    /// A UTF-8 text file; default: Shakespeare's plays (fetched). The last 10 % is held out.
    pub text: Option<PathBuf>,
    /// The `dlt data fetch benchmarks` folder; default: the cache (fetched).
    pub bench_data: Option<PathBuf>,
    /// The sizes.
    pub scale: Scale,
    /// Read back the stages of an earlier run of the same configuration from
    /// `OUT/checkpoints/` instead of recomputing them (`--resume`; the numbers do not depend on
    /// it).
    #[serde(skip)]
    pub resume: bool,
}

/// The model that was studied.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Model file or directory.
    pub path: String,
    /// Number of blocks L.
    pub n_layers: usize,
    /// Residual-stream width.
    pub hidden: usize,
    /// Number of parameters.
    pub params: usize,
    /// Storage types in the file; the forward pass runs on weights dequantised to f32.
    pub weight_types: std::collections::BTreeMap<String, usize>,
    /// Wall-clock seconds to load (and dequantise) the model.
    pub load_seconds: f64,
}

/// l*(n) for one n.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Best {
    /// Number of blocks n to drop.
    pub n: usize,
    /// First dropped block l*(n) (0-based).
    pub start: usize,
    /// One past the last dropped block (start + n).
    pub end: usize,
    /// Mean angular distance d(x^(l*), x^(l*+n)), in [0, 1].
    pub distance: f64,
    /// Standard error of `distance` across probe sequences.
    pub se: f64,
}

/// Perplexity after dropping blocks `start..end`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneRow {
    /// Block-choice rule: `angular`, `last` or `random`.
    pub rule: String,
    /// Number of blocks dropped.
    pub n: usize,
    /// First dropped block (0-based).
    pub start: usize,
    /// One past the last dropped block.
    pub end: usize,
    /// n / L, the fraction of blocks dropped.
    pub fraction: f64,
    /// Index of the random draw (0 for the other rules).
    pub draw: usize,
    /// Perplexity on the held-out tokens.
    pub perplexity: f64,
    /// Mean next-token cross-entropy, nats per token.
    pub nll: f64,
    /// Per-token cross-entropies on the held-out tokens (only in checkpoints, `dlt_llm::detail`),
    /// for the claims' paired comparisons.
    #[serde(default, skip_serializing_if = "dlt_llm::detail::hidden")]
    pub token_nll: Vec<f64>,
}

/// One healed model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealRow {
    /// Block-choice rule: `angular` or `last`; `control` is the unpruned model healed the same
    /// way (n = 0).
    pub rule: String,
    /// Number of blocks dropped.
    pub n: usize,
    /// First dropped block (0-based).
    pub start: usize,
    /// One past the last dropped block.
    pub end: usize,
    /// Perplexity of the pruned model before healing.
    pub before: f64,
    /// Perplexity after healing.
    pub after: f64,
    /// Per-token cross-entropies before healing (only in checkpoints; paired comparisons).
    #[serde(default, skip_serializing_if = "dlt_llm::detail::hidden")]
    pub before_tokens: Vec<f64>,
    /// Per-token cross-entropies after healing (only in checkpoints).
    #[serde(default, skip_serializing_if = "dlt_llm::detail::hidden")]
    pub after_tokens: Vec<f64>,
    /// LoRA training steps.
    pub steps: usize,
    /// Number of adapter parameters trained.
    pub trainable_params: usize,
    /// Training loss (nats/token) of the first healing step.
    pub first_loss: f64,
    /// Training loss (nats/token) of the last healing step.
    pub last_loss: f64,
    /// Wall-clock seconds of healing.
    pub seconds: f64,
}

/// One exported file, reloaded and evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRow {
    /// File name of the exported GGUF.
    pub file: String,
    /// Whether it is the healed model (LoRA merged, weights requantised to Q8_0).
    pub healed: bool,
    /// Number of blocks in the reloaded file.
    pub n_layers: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Perplexity of the in-memory model and of the reloaded file.
    pub in_memory: f64,
    /// Perplexity of the model reloaded from the file.
    pub reloaded: f64,
}

/// `results.json` of the study.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Quick sizes were used.
    pub quick: bool,
    /// Base seed.
    pub seed: u64,
    /// The sizes used.
    pub scale: Scale,
    /// The model that was studied.
    pub model: ModelInfo,
    /// Path of the text corpus.
    pub text: String,
    /// Tokens in the held-out last 10 % of the text.
    pub heldout_tokens: usize,
    /// Perplexity of the unpruned model.
    pub base: Perplexity,
    /// The (n, l) table of angular distances.
    pub distances: Distances,
    /// The block l*(n) chosen by the angular rule for each n = 1..L−1.
    pub best: Vec<Best>,
    /// Perplexity after pruning, per rule, n and draw.
    pub pruning: Vec<PruneRow>,
    /// Perplexity before and after LoRA healing.
    pub healing: Vec<HealRow>,
    /// Exported GGUF files, reloaded and evaluated.
    pub export: Vec<ExportRow>,
    /// Part 5: benchmark accuracy and normalised loss against the fraction dropped.
    pub accuracy: Accuracy,
    /// Paired per-token comparisons behind the claims: ΔNLL = ln(ppl_a/ppl_b) with its
    /// batch-means SE, per n.
    pub comparisons: Vec<Comparison>,
    /// Forward-pass throughput of the unpruned model on the perplexity windows.
    pub forward_tokens_per_second: f64,
    /// Wall-clock seconds of the run (this invocation's: stages read back cost ≈ 0).
    pub seconds: f64,
    /// Stages read back from `checkpoints/` (`--resume`) instead of computed in this run:
    /// `probe`, `pruning`, `accuracy-texts`, `accuracy-<task>`, `heal-<rule>-<n>`.
    pub resumed: Vec<String>,
    /// Each stage's wall time when it was computed (in this run or the one whose checkpoint
    /// was read back): the cost of a run done in pieces.
    pub stage_seconds: Vec<stages::StageTime>,
    /// The paper's claims with this run's measurements.
    pub claims: Vec<Claim>,
    /// SVG files written beside `results.json`.
    pub figures: Vec<String>,
}

/// One paired comparison of two models on the same held-out tokens
/// (docs/derivations/prune.md#paired-differences).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `angular_vs_random` (against the mean of the random draws' per-token losses),
    /// `angular_vs_last`, `healed_vs_unhealed_angular`, `healed_vs_unhealed_last`,
    /// `last_vs_angular_unhealed`, `last_vs_angular_healed`.
    pub kind: String,
    /// Number of blocks dropped.
    pub n: usize,
    /// Mean per-token difference of cross-entropies a − b (nats) = ln(ppl_a/ppl_b).
    pub dnll: f64,
    /// Its standard error by batch means over blocks of [`Scale::se_block`] tokens.
    pub se: f64,
}

/// Read a corpus (UTF-8 text, or JSON lines with a `"text"` field) and split it: (first 90 %,
/// last 10 %) at a line break.
pub fn split_text(path: &std::path::Path) -> Result<(String, String), StudyError> {
    let text = dlt_llm::eval::read_corpus(path)?;
    let mut cut = text.len() * 9 / 10;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let cut = text[cut..].find('\n').map_or(cut, |i| cut + i + 1);
    Ok((text[..cut].to_string(), text[cut..].to_string()))
}

/// The first `n` bytes of `text` (extended to a char boundary).
pub fn head_chars(text: &str, n: usize) -> &str {
    let mut c = n.min(text.len());
    while !text.is_char_boundary(c) {
        c += 1;
    }
    &text[..c]
}

/// What the run measured, for its tables, figures and claims.
struct Measured<'a> {
    base: &'a Perplexity,
    distances: &'a Distances,
    best: &'a [Best],
    pruning: &'a [PruneRow],
    healing: &'a [HealRow],
    heal_curves: &'a [(String, Vec<f64>)],
    export: &'a [ExportRow],
    accuracy: &'a Accuracy,
    l_tot: usize,
    model_path: &'a std::path::Path,
}

/// The model and text of a run, loaded and checked: every drop fits the model and the held-out
/// text holds the evaluation and probe tokens.
struct Inputs {
    /// The sizes fitted to the model's depth ([`Scale::for_depth`]).
    scale: Scale,
    model_path: PathBuf,
    text_path: PathBuf,
    ckpt: dlt_llm::Checkpoint,
    load_seconds: f64,
    train_text: String,
    heldout: Vec<u32>,
}

/// Run the study into `out`, writing `results.json` last.
pub fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
    let t0 = Instant::now();
    let Inputs {
        scale,
        model_path,
        text_path,
        ckpt,
        load_seconds,
        train_text,
        heldout,
    } = load_inputs(cfg)?;
    let cfg = &Config {
        scale,
        ..cfg.clone()
    };
    let sc = &cfg.scale;
    let model = &ckpt.model;
    let l_tot = model.blocks.len();
    let mut stages = stages::Stages::new(
        out.path("checkpoints"),
        serde_json::json!({
            "quick": cfg.quick,
            "seed": cfg.seed,
            "scale": sc,
            "model": stages::file_stamp(&model_path),
            "text": stages::file_stamp(&text_path),
            "bench_data": cfg.bench_data,
        }),
        cfg.resume,
    );
    let eval_tokens = &heldout[..sc.eval_tokens];
    let (base, forward_tokens_per_second, distances, best) = stages.run("probe", || {
        probe_unpruned(cfg, model, eval_tokens, &heldout[sc.eval_tokens..])
    })?;

    let pruning = stages.run("pruning", || {
        prune_and_evaluate(cfg, model, &distances, eval_tokens)
    })?;

    let bench = accuracy::load_bench(
        cfg,
        &ckpt,
        &eval_tokens[..sc.acc_text_tokens.min(eval_tokens.len())],
    )?;
    // Part 3 (healing, whose models part 5 also scores) runs before part 5's sweep: the order
    // changes no number (every stage is seeded on its own), and a full run done in pieces
    // reaches its costliest unknown, the seven healed models, first.
    let (healing, heal_curves, healed_scores, healed_export) = heal_pruned(
        cfg,
        &ckpt,
        HealInputs {
            distances: &distances,
            eval_tokens,
            train_text: &train_text,
            base: &base,
            pruning: &pruning,
        },
        &mut stages,
        &mut |(rule, n, start), m| {
            if !sc.acc_healed.iter().any(|r| r == rule) {
                return Ok(accuracy::Scored::default());
            }
            accuracy::score_healed(&bench, m, (rule, n, start), l_tot, cfg.quiet)
        },
    )?;
    let mut accuracy = accuracy::sweep(cfg, model, &distances, &bench, &mut stages)?;
    for s in healed_scores {
        accuracy.add(s);
    }

    let export = export_pruned(cfg, out, &ckpt, &distances, eval_tokens, healed_export)?;

    let m = Measured {
        base: &base,
        distances: &distances,
        best: &best,
        pruning: &pruning,
        healing: &healing,
        heal_curves: &heal_curves,
        export: &export,
        accuracy: &accuracy,
        l_tot,
        model_path: &model_path,
    };
    write_tables(out, &m)?;

    let mut figures = figures(out, sc, &m)?;
    figures.extend(accuracy_figure(out, &m)?);

    let comparisons = comparisons(sc, &m);
    let claims = claims(sc, &m, &comparisons);
    let results = Results {
        quick: cfg.quick,
        seed: cfg.seed,
        scale: sc.clone(),
        model: ModelInfo {
            path: model_path.display().to_string(),
            n_layers: l_tot,
            hidden: model.cfg.hidden,
            params: model.n_params(),
            weight_types: ckpt.weight_types.clone(),
            load_seconds,
        },
        text: text_path.display().to_string(),
        heldout_tokens: heldout.len(),
        base,
        distances,
        best,
        pruning,
        healing,
        export,
        accuracy,
        comparisons,
        forward_tokens_per_second,
        seconds: t0.elapsed().as_secs_f64(),
        resumed: stages.resumed(),
        stage_seconds: stages.seconds(),
        claims,
        figures,
    };
    out.write_json("results.json", &results)?;
    Ok(results)
}

/// The `prune` study ([`crate::study::Study`]).
pub struct Prune;

impl crate::study::Study for Prune {
    const NAME: &'static str = "prune";
    const TITLE: &'static str = "The unreasonable ineffectiveness of the deeper layers";
    const PAPER: &'static str =
        "Gromov, Tirumala, Shapourian, Glorioso, Roberts (arXiv 2403.17887)";
    const ABOUT: &'static str = "Layer pruning of SmolLM2-135M: the angular distance between residual streams picks the block of layers to drop; perplexity after pruning against dropping the last or random blocks, and LoRA healing.";
    type Config = Config;
    type Results = Results;
    fn config(quick: bool, seed: u64, quiet: bool) -> Config {
        Config {
            quick,
            seed,
            quiet,
            model: None,
            text: None,
            bench_data: None,
            scale: Scale::for_mode(quick),
            // `dlt reproduce` reuses a finished study of the same configuration; likewise the
            // finished stages of an interrupted one (their key is the configuration).
            resume: true,
        }
    }
    fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
        run(cfg, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_scale_with_the_models_depth() {
        for quick in [true, false] {
            let sc = Scale::for_mode(quick);
            // The identity at the reference depth (SmolLM2-135M).
            let same = sc.for_depth(REFERENCE_DEPTH);
            assert_eq!(
                (
                    &same.drops,
                    &same.heal_drops,
                    same.export_drop,
                    &same.acc_drops
                ),
                (&sc.drops, &sc.heal_drops, sc.export_drop, &sc.acc_drops)
            );
            // Every size fits any depth and keeps its fraction to within half a block.
            for depth in [2, 4, 18, 26, 40] {
                let d = sc.for_depth(depth);
                for (from, to) in [(&sc.drops, &d.drops), (&sc.acc_drops, &d.acc_drops)] {
                    assert!(
                        to.iter().all(|&n| (1..depth).contains(&n)),
                        "{depth}: {to:?}"
                    );
                    let mut u = to.clone();
                    u.dedup();
                    assert_eq!(&u, to, "repeats at depth {depth}");
                    for &n in from.iter() {
                        let want = n as f64 * depth as f64 / REFERENCE_DEPTH as f64;
                        if want >= 1.0 && want <= (depth - 1) as f64 {
                            assert!(
                                to.iter().any(|&m| (m as f64 - want).abs() <= 0.5),
                                "{depth}: {n} → {to:?}"
                            );
                        }
                    }
                }
            }
        }
        // Gemma 3 270M (18 blocks), quick: the accuracy sweep's 3…24 of 30 become 2…14 of 18.
        let g = Scale::for_mode(true).for_depth(18);
        assert_eq!(g.acc_drops, vec![2, 4, 5, 7, 11, 14]);
        assert_eq!((g.heal_drops.clone(), g.export_drop), (vec![4], Some(4)));
    }
}
