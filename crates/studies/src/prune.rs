//! Study `prune`: Gromov, Tirumala, Shapourian, Glorioso, Roberts, "The Unreasonable
//! Ineffectiveness of the Deeper Layers" (arXiv 2403.17887) on a real LLM (SmolLM2-135M-Instruct,
//! Q4_1 GGUF, dequantised to f32) and held-out Shakespeare:
//!
//! 1. the angular distance d(x^(l), x^(l+n)) between residual-stream states (§3.2, eq. (7)) for
//!    every (n, l), and the block l*(n) it selects;
//! 2. perplexity after dropping n blocks chosen by the angular rule, by the paper's simpler
//!    heuristic (the deepest n blocks before the final one) and by random blocks (control);
//! 3. LoRA healing of pruned models (§3.3; f32 base instead of 4-bit), perplexity before/after;
//! 4. export of a pruned model as GGUF, reloaded and re-evaluated.
//!
//! Block ranges are 0-based and end-exclusive everywhere (`start..end`).
//! Cost (2 cores): quick ≈ 4.5 min; full ≈ 45 min estimated (perplexity windows and healing
//! steps dominate: ≈ 330 tokens/s forward, ≈ 1.5 s per LoRA step of 128 tokens).

use std::path::PathBuf;
use std::time::Instant;

use dlt_llm::eval::{perplexity, Perplexity};
use dlt_llm::lora::{heal, HealConfig};
use dlt_llm::probe::{
    angular_distances, choose_start, kept_blocks, sequences, Distances, Position, Rule,
};
use serde::Serialize;

use crate::claim::{Claim, NanFold};
use crate::output::OutDir;
use crate::plot::{Figure, Heatmap, Series};
use crate::progress::bar;
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
}

impl Scale {
    /// The sizes for quick or full mode.
    pub fn for_mode(quick: bool) -> Self {
        Scale {
            probe_samples: if quick { 16 } else { 64 },
            probe_len: if quick { 128 } else { 256 },
            position: Position::LastToken,
            eval_tokens: if quick { 2048 } else { 8192 },
            ctx: 512,
            drops: if quick {
                vec![1, 2, 4, 6, 8, 10, 12]
            } else {
                vec![1, 2, 3, 4, 5, 6, 8, 10, 12, 14]
            },
            random_draws: if quick { 2 } else { 4 },
            heal_drops: if quick { vec![6] } else { vec![4, 8, 12] },
            heal: HealConfig {
                steps: if quick { 24 } else { 150 },
                seq: 128,
                ..HealConfig::default()
            },
            heal_chars: if quick { 300_000 } else { 2_000_000 },
            export_drop: Some(6),
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
    /// The sizes.
    pub scale: Scale,
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
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
}

/// One healed model.
#[derive(Debug, Clone, Serialize)]
pub struct HealRow {
    /// Block-choice rule: `angular` or `last`.
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
    /// Forward-pass throughput of the unpruned model on the perplexity windows.
    pub forward_tokens_per_second: f64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// The paper's claims with this run's measurements.
    pub claims: Vec<Claim>,
    /// SVG files written beside `results.json`.
    pub figures: Vec<String>,
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

/// Spearman's rank correlation of the pairs (no ties expected).
fn spearman(p: &[(f64, f64)]) -> f64 {
    let rank = |v: Vec<f64>| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        for (k, &i) in idx.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let n = p.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let rx = rank(p.iter().map(|x| x.0).collect());
    let ry = rank(p.iter().map(|x| x.1).collect());
    let d2: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - b).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// The first `n` bytes of `text` (extended to a char boundary).
pub fn head_chars(text: &str, n: usize) -> &str {
    let mut c = n.min(text.len());
    while !text.is_char_boundary(c) {
        c += 1;
    }
    &text[..c]
}

fn geo_mean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
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
    l_tot: usize,
    model_path: &'a std::path::Path,
}

/// `distances.csv` (every block), `perplexity.csv`, `healing.csv`.
fn write_tables(out: &OutDir, m: &Measured) -> Result<(), StudyError> {
    let Measured {
        distances,
        pruning,
        healing,
        ..
    } = m;
    let l_tot = m.l_tot;
    // Tables.
    let mut rows = vec![];
    for n in 1..=l_tot {
        for l in 0..=l_tot - n {
            rows.push(vec![
                n.to_string(),
                l.to_string(),
                (l + n).to_string(),
                format!("{:.6}", distances.table[n - 1][l]),
                format!("{:.6}", distances.se[n - 1][l]),
            ]);
        }
    }
    out.write_csv(
        "distances.csv",
        &["n", "start", "end", "distance", "se"],
        &rows,
    )?;
    out.write_records("perplexity.csv", pruning)?;
    out.write_records("healing.csv", healing)?;
    Ok(())
}

/// The distance heat map, perplexity against blocks dropped, the n = 1 distances and the
/// healing curves; the file names.
fn figures(out: &OutDir, sc: &Scale, m: &Measured) -> Result<Vec<String>, StudyError> {
    let Measured {
        base,
        distances,
        pruning,
        healing,
        heal_curves,
        ..
    } = m;
    let l_tot = m.l_tot;
    let model_path = m.model_path;
    // Figures.
    let mut figures = vec![];
    let hm = Heatmap {
        title: format!(
            "angular distance d(x^(l), x^(l+n)), {}",
            model_path
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        ),
        x_label: "l (first block dropped)".into(),
        y_label: "n (blocks dropped)".into(),
        xs: (0..l_tot).map(|l| l as f64).collect(),
        ys: (1..l_tot).map(|n| n as f64).collect(),
        z: (1..l_tot)
            .map(|n| {
                (0..l_tot)
                    .map(|l| distances.table[n - 1].get(l).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect(),
        log_z: false,
        diagonal: false,
    };
    hm.save_svg(&out.path("distances.svg"))?;
    figures.push("distances.svg".to_string());
    let mut fig = Figure::new(
        "perplexity on held-out text vs fraction of blocks dropped",
        "fraction of blocks dropped",
        "perplexity",
    );
    fig.log_y = true;
    fig = fig.with(Series::dashed(
        "unpruned",
        vec![
            (0.0, base.perplexity),
            (
                sc.drops.iter().max().copied().unwrap_or(1) as f64 / l_tot as f64,
                base.perplexity,
            ),
        ],
    ));
    for rule in ["angular", "last", "random"] {
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for &n in &sc.drops {
            let v: Vec<f64> = pruning
                .iter()
                .filter(|r| r.rule == rule && r.n == n)
                .map(|r| r.perplexity)
                .collect();
            if !v.is_empty() {
                pts.push((n as f64 / l_tot as f64, geo_mean(&v)));
            }
        }
        let label = if rule == "random" {
            format!("random block (geometric mean of {})", sc.random_draws)
        } else {
            format!("{rule} rule")
        };
        fig = fig.with(Series::line(label, pts));
    }
    for rule in ["angular", "last"] {
        let pts: Vec<(f64, f64)> = healing
            .iter()
            .filter(|h| h.rule == rule)
            .map(|h| (h.n as f64 / l_tot as f64, h.after))
            .collect();
        if !pts.is_empty() {
            fig = fig.with(Series::points(
                format!("{rule} rule + LoRA healing"),
                pts,
                None,
            ));
        }
    }
    fig.save_svg(&out.path("perplexity.svg"))?;
    figures.push("perplexity.svg".to_string());
    let mut d1 = Figure::new(
        "distance between the input and output of one block (n = 1)",
        "block l",
        "angular distance d(x^(l), x^(l+1))",
    );
    d1 = d1.with(Series::points(
        "mean over probe sequences ± SE",
        distances.table[0]
            .iter()
            .enumerate()
            .map(|(l, &d)| (l as f64, d))
            .collect(),
        Some(distances.se[0].clone()),
    ));
    d1.save_svg(&out.path("distance_n1.svg"))?;
    figures.push("distance_n1.svg".to_string());
    if !heal_curves.is_empty() {
        let mut hf = Figure::new(
            "LoRA healing: training loss",
            "step",
            "cross-entropy (nats/token)",
        );
        for (name, losses) in heal_curves.iter() {
            hf = hf.with(Series::line(
                name.clone(),
                losses
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as f64 + 1.0, l))
                    .collect(),
            ));
        }
        hf.save_svg(&out.path("healing.svg"))?;
        figures.push("healing.svg".to_string());
    }
    Ok(figures)
}

/// The paper's statements against the measurements.
fn claims(sc: &Scale, m: &Measured) -> Vec<Claim> {
    let Measured {
        base,
        distances,
        best,
        pruning,
        healing,
        export,
        ..
    } = m;
    let l_tot = m.l_tot;
    // Claims.
    let mut claims = vec![];
    claims.push(Claim::at_most(
        "prune.base_perplexity",
        "SmolLM2-135M-Instruct (Q4_1)",
        "the unpruned model is a working LM on held-out Shakespeare (perplexity far below the vocabulary size)",
        base.perplexity,
        100.0,
        "a 135M model on Early Modern English; uniform guessing gives 49152",
    ));
    let small: Vec<&Best> = best.iter().filter(|b| b.n <= l_tot / 2).collect();
    let kept_final =
        small.iter().filter(|b| b.end < l_tot).count() as f64 / small.len().max(1) as f64;
    claims.push(Claim::at_least(
        "prune.final_block_kept",
        &format!("{PAPER} §4"),
        "the angular rule keeps the final block (l*(n) + n < L) for n ≤ L/2",
        kept_final,
        0.8,
        "fraction of n ≤ L/2",
    ));
    let row1 = &distances.table[0];
    let mut mid: Vec<f64> = row1[2..l_tot - 1].to_vec();
    mid.sort_by(|a, b| a.total_cmp(b));
    let median = mid[mid.len() / 2];
    claims.push(Claim::at_least(
        "prune.edges_change_most",
        &format!("{PAPER} §4, Fig. 7"),
        "the first and the last block change the residual stream more than the middle ones: min(d(x^(0), x^(1)), d(x^(L−1), x^(L))) / median d(x^(l), x^(l+1))",
        row1[0].min(row1[l_tot - 1]) / median,
        1.5,
        "ratio to the median block",
    ));
    let per_n = |rule: &str, n: usize| -> f64 {
        let v: Vec<f64> = pruning
            .iter()
            .filter(|r| r.rule == rule && r.n == n)
            .map(|r| r.perplexity)
            .collect();
        geo_mean(&v)
    };
    let frac = |f: &dyn Fn(usize) -> bool| {
        sc.drops.iter().filter(|&&n| f(n)).count() as f64 / sc.drops.len() as f64
    };
    if sc.random_draws > 0 {
        claims.push(Claim::at_least(
            "prune.angular_beats_random",
            &format!("{PAPER} §4"),
            "dropping the block of least angular distance costs less perplexity than dropping a random block of the same size",
            frac(&|n| per_n("angular", n) <= per_n("random", n)),
            0.75,
            "fraction of n where angular ≤ geometric mean of random draws",
        ));
    }
    claims.push(Claim::at_least(
        "prune.angular_beats_last_unhealed",
        &format!("{PAPER} §4"),
        "without healing the angular rule beats dropping the deepest blocks before the last",
        frac(&|n| per_n("angular", n) <= per_n("last", n)),
        0.75,
        "fraction of n",
    ));
    let nll_angular: Vec<(f64, f64)> = sc
        .drops
        .iter()
        .map(|&n| (n as f64, per_n("angular", n).ln()))
        .collect();
    claims.push(Claim::at_least(
        "prune.loss_grows_with_n",
        &format!("{PAPER} §4, Fig. 2"),
        "the held-out loss grows with the number of blocks dropped (angular rule): Spearman rank correlation of (n, loss)",
        spearman(&nll_angular),
        0.8,
        "1 = strictly increasing; single steps may dip within the noise",
    ));
    if !healing.is_empty() {
        let worst = healing.iter().map(|h| h.after / h.before).nan_max();
        claims.push(Claim::at_most(
            "prune.healing_lowers_perplexity",
            &format!("{PAPER} §3.3, §4"),
            "LoRA healing lowers the perplexity of every pruned model (largest after/before ratio)",
            worst,
            1.0,
            "after < before",
        ));
        let gap = |n: usize, f: &dyn Fn(&HealRow) -> f64| -> Option<f64> {
            let a = healing.iter().find(|h| h.rule == "angular" && h.n == n)?;
            let l = healing.iter().find(|h| h.rule == "last" && h.n == n)?;
            Some((f(l) / f(a)).ln())
        };
        let narrow: Vec<f64> = sc
            .heal_drops
            .iter()
            .filter_map(|&n| Some(gap(n, &|h| h.after)? / gap(n, &|h| h.before)?))
            .collect();
        if !narrow.is_empty() {
            claims.push(Claim::at_most(
                "prune.healing_narrows_last_gap",
                &format!("{PAPER} §4"),
                "healing closes most of the gap between the drop-last heuristic and the angular rule: ln(ppl_last/ppl_angular) after / before healing",
                narrow.iter().copied().nan_max(),
                0.5,
                "largest ratio over healed n",
            )
            // The ratio means something only where drop-last was worse before healing.
            .require(
                sc.heal_drops
                    .iter()
                    .all(|&n| gap(n, &|h| h.before).is_some_and(|g| g > 0.0)),
                "drop-last's perplexity exceeds the angular rule's before healing at every n",
            ));
        }
    }
    if let Some(e) = export.iter().find(|e| !e.healed) {
        claims.push(Claim::within(
            "prune.export_gguf_exact",
            "dlt export",
            "the exported pruned GGUF reloads with the perplexity of the in-memory pruned model",
            e.reloaded / e.in_memory - 1.0,
            0.0,
            1e-9,
            "tensors are copied, so only summation order could differ",
        ));
    }
    if let Some(e) = export.iter().find(|e| e.healed) {
        claims.push(Claim::within(
            "prune.export_healed_requantised",
            "dlt export",
            "the healed model, merged and written with Q8_0 block weights, keeps its perplexity (relative change)",
            e.reloaded / e.in_memory - 1.0,
            0.0,
            0.02,
            "Q8_0 rounding of the merged weights; Q4_1 would undo the healing",
        ));
    }
    claims
}

/// Part 2: perplexity after dropping n blocks by each rule: the angular-distance choice
/// (arXiv 2403.17887 §3.2; docs/derivations/prune.md#block-selection), the last blocks, random
/// blocks.
fn prune_and_evaluate(
    cfg: &Config,
    model: &dlt_llm::Llama,
    distances: &Distances,
    eval_tokens: &[u32],
) -> Result<Vec<PruneRow>, StudyError> {
    let sc = &cfg.scale;
    let l_tot = model.blocks.len();
    let ppl = |blocks: &[usize], m: &dlt_llm::Llama| {
        perplexity(m, blocks, eval_tokens, sc.ctx, 0, |_, _| {})
    };
    // 2. Perplexity after pruning, three rules.
    let mut pruning = Vec::new();
    let jobs: usize = sc.drops.len() * (2 + sc.random_draws);
    let pb = bar(jobs as u64, "prune: evaluate", cfg.quiet);
    for &n in &sc.drops {
        let mut plan = vec![
            (
                Rule::Angular,
                0,
                choose_start(Rule::Angular, l_tot, n, Some(distances), 0)?,
            ),
            (Rule::Last, 0, choose_start(Rule::Last, l_tot, n, None, 0)?),
        ];
        for d in 0..sc.random_draws {
            let seed = cfg
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add((n * 100 + d) as u64);
            plan.push((
                Rule::Random,
                d,
                choose_start(Rule::Random, l_tot, n, None, seed)?,
            ));
        }
        for (rule, draw, start) in plan {
            let r = ppl(&kept_blocks(l_tot, start, n), model)?;
            pruning.push(PruneRow {
                rule: rule.name().into(),
                n,
                start,
                end: start + n,
                fraction: n as f64 / l_tot as f64,
                draw,
                perplexity: r.perplexity,
                nll: r.nll,
            });
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(pruning)
}

/// Healed rows, loss curves, and the merged healed model to export (when asked).
type Healed = (
    Vec<HealRow>,
    Vec<(String, Vec<f64>)>,
    Option<dlt_llm::Llama>,
);

/// Part 3: LoRA healing of the pruned models (docs/derivations/prune.md#healing), perplexity
/// before and after.
fn heal_pruned(
    cfg: &Config,
    ckpt: &dlt_llm::Checkpoint,
    distances: &Distances,
    eval_tokens: &[u32],
    train_text: &str,
) -> Result<Healed, StudyError> {
    let sc = &cfg.scale;
    let model = &ckpt.model;
    let l_tot = model.blocks.len();
    let ppl = |blocks: &[usize], m: &dlt_llm::Llama| {
        perplexity(m, blocks, eval_tokens, sc.ctx, 0, |_, _| {})
    };
    // 3. LoRA healing.
    let heal_text = head_chars(train_text, sc.heal_chars);
    let train_tokens = if sc.heal_drops.is_empty() {
        vec![]
    } else {
        ckpt.tokenizer.encode(heal_text)?
    };
    let mut healing = Vec::new();
    let mut heal_curves: Vec<(String, Vec<f64>)> = Vec::new();
    let mut healed_export: Option<dlt_llm::Llama> = None;
    for &n in &sc.heal_drops {
        for rule in [Rule::Angular, Rule::Last] {
            let start = choose_start(rule, l_tot, n, Some(distances), 0)?;
            let kept = kept_blocks(l_tot, start, n);
            let mut pruned = model.with_blocks(&kept)?;
            let before = ppl(&pruned.all_blocks(), &pruned)?.perplexity;
            let pb = bar(
                sc.heal.steps as u64,
                &format!("prune: heal {} n={n}", rule.name()),
                cfg.quiet,
            );
            let hc = HealConfig {
                seed: cfg.seed + n as u64,
                ..sc.heal.clone()
            };
            let (rep, _) = heal(&mut pruned, &train_tokens, &hc, |s, _, _| {
                pb.set_position(s as u64)
            })?;
            pb.finish_and_clear();
            let after = ppl(&pruned.all_blocks(), &pruned)?.perplexity;
            healing.push(HealRow {
                rule: rule.name().into(),
                n,
                start,
                end: start + n,
                before,
                after,
                steps: rep.steps,
                trainable_params: rep.trainable_params,
                first_loss: rep.losses.first().copied().unwrap_or(f64::NAN),
                last_loss: rep.losses.last().copied().unwrap_or(f64::NAN),
                seconds: rep.seconds,
            });
            heal_curves.push((
                format!("{} n={n} ({start}..{})", rule.name(), start + n),
                rep.losses,
            ));
            if rule == Rule::Angular && Some(n) == sc.export_drop {
                pruned.merge_lora()?;
                healed_export = Some(pruned);
            }
        }
    }
    Ok((healing, heal_curves, healed_export))
}

/// The model and text of a run, loaded and checked: every drop fits the model and the held-out
/// text holds the evaluation and probe tokens.
struct Inputs {
    model_path: PathBuf,
    text_path: PathBuf,
    ckpt: dlt_llm::Checkpoint,
    load_seconds: f64,
    train_text: String,
    heldout: Vec<u32>,
}

/// Part 0: locate (or fetch) and load the model and the text, split the text 90/10 and check
/// the sizes against the model and the held-out tokens.
fn load_inputs(cfg: &Config) -> Result<Inputs, StudyError> {
    let sc = &cfg.scale;
    use dlt_nn::data::fetch::{locate, Dataset};
    let model_path = match &cfg.model {
        Some(p) => p.clone(),
        None => locate(Dataset::Smollm2, None, true)?.0,
    };
    let text_path = match &cfg.text {
        Some(p) => p.clone(),
        None => locate(Dataset::Shakespeare, None, true)?.0,
    };
    let t_load = Instant::now();
    let ckpt = dlt_llm::load(&model_path)?;
    let load_seconds = t_load.elapsed().as_secs_f64();
    let l_tot = ckpt.model.blocks.len();
    for &n in sc
        .drops
        .iter()
        .chain(&sc.heal_drops)
        .chain(sc.export_drop.iter())
    {
        dlt_llm::probe::check_drop(l_tot, n)?;
    }
    let (train_text, heldout_text) = split_text(&text_path)?;
    let heldout = ckpt.tokenizer.encode(&heldout_text)?;
    if heldout.len() < sc.eval_tokens + sc.probe_len {
        return Err(dlt_nn::NnError::Data {
            what: text_path.display().to_string(),
            problem: format!(
                "its held-out 10 % has {} tokens, fewer than the {} needed",
                heldout.len(),
                sc.eval_tokens + sc.probe_len
            ),
            fix: "give a longer text".into(),
        }
        .into());
    }
    Ok(Inputs {
        model_path,
        text_path,
        ckpt,
        load_seconds,
        train_text,
        heldout,
    })
}

/// Part 1: the unpruned perplexity (and the forward throughput, tokens/s), the angular-distance
/// table d(x^(l), x^(l+n)) over the probe sequences (arXiv 2403.17887 §3.2 eq. (7);
/// docs/derivations/prune.md#angular-distance) and the block l*(n) of least distance per n.
fn probe_unpruned(
    cfg: &Config,
    model: &dlt_llm::Llama,
    eval_tokens: &[u32],
    probe_tokens: &[u32],
) -> Result<(Perplexity, f64, Distances, Vec<Best>), StudyError> {
    let sc = &cfg.scale;
    let l_tot = model.blocks.len();
    let probe = sequences(probe_tokens, sc.probe_len, sc.probe_samples)?;
    // 1. Unpruned perplexity and the angular-distance table.
    let t_base = Instant::now();
    let base = perplexity(
        model,
        &model.all_blocks(),
        eval_tokens,
        sc.ctx,
        0,
        |_, _| {},
    )?;
    let forward_tokens_per_second =
        (eval_tokens.len() / sc.ctx * sc.ctx) as f64 / t_base.elapsed().as_secs_f64();
    let pb = bar(probe.len() as u64, "prune: probe", cfg.quiet);
    let distances =
        angular_distances(model, &probe, sc.position, |d, _| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let best: Vec<Best> = (1..l_tot)
        .map(|n| {
            let (start, distance) = distances.best(n).expect("n < L");
            Best {
                n,
                start,
                end: start + n,
                distance,
                se: distances.se[n - 1][start],
            }
        })
        .collect();
    Ok((base, forward_tokens_per_second, distances, best))
}

/// Part 4: export the model pruned by the angular rule as GGUF (tensors copied) and the healed
/// one (re-quantised to Q8_0), reload each and evaluate it again.
fn export_pruned(
    cfg: &Config,
    out: &OutDir,
    ckpt: &dlt_llm::Checkpoint,
    distances: &Distances,
    eval_tokens: &[u32],
    healed_export: Option<dlt_llm::Llama>,
) -> Result<Vec<ExportRow>, StudyError> {
    let sc = &cfg.scale;
    let model = &ckpt.model;
    let l_tot = model.blocks.len();
    let ppl = |blocks: &[usize], m: &dlt_llm::Llama| {
        perplexity(m, blocks, eval_tokens, sc.ctx, 0, |_, _| {})
    };
    // 4. Export: the pruned model as GGUF (tensors copied), and the healed one (re-quantised).
    let mut export = Vec::new();
    if let Some(n) = sc.export_drop {
        let start = choose_start(Rule::Angular, l_tot, n, Some(distances), 0)?;
        let kept = kept_blocks(l_tot, start, n);
        let pruned = model.with_blocks(&kept)?;
        let mut items = vec![(
            format!("pruned-angular-{start}-{}.gguf", start + n),
            pruned,
            false,
        )];
        if let Some(h) = healed_export {
            items.push((
                format!("pruned-angular-{start}-{}-healed.gguf", start + n),
                h,
                true,
            ));
        }
        for (name, m, healed) in items {
            let path = out.path(&name);
            let rq = if healed {
                dlt_llm::export::Requant::To(candle_core::quantized::GgmlDType::Q8_0)
            } else {
                dlt_llm::export::Requant::Unchanged
            };
            dlt_llm::export::write_gguf(ckpt, &m, &kept, rq, &path)?;
            let back = dlt_llm::load(&path)?;
            export.push(ExportRow {
                file: name,
                healed,
                n_layers: back.model.blocks.len(),
                bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                in_memory: ppl(&m.all_blocks(), &m)?.perplexity,
                reloaded: ppl(&back.model.all_blocks(), &back.model)?.perplexity,
            });
        }
    }
    Ok(export)
}

/// Run the study into `out`, writing `results.json` last.
pub fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
    let t0 = Instant::now();
    let sc = &cfg.scale;
    let Inputs {
        model_path,
        text_path,
        ckpt,
        load_seconds,
        train_text,
        heldout,
    } = load_inputs(cfg)?;
    let model = &ckpt.model;
    let l_tot = model.blocks.len();
    let eval_tokens = &heldout[..sc.eval_tokens];
    let (base, forward_tokens_per_second, distances, best) =
        probe_unpruned(cfg, model, eval_tokens, &heldout[sc.eval_tokens..])?;

    let pruning = prune_and_evaluate(cfg, model, &distances, eval_tokens)?;

    let (healing, heal_curves, healed_export) =
        heal_pruned(cfg, &ckpt, &distances, eval_tokens, &train_text)?;

    let export = export_pruned(cfg, out, &ckpt, &distances, eval_tokens, healed_export)?;

    let m = Measured {
        base: &base,
        distances: &distances,
        best: &best,
        pruning: &pruning,
        healing: &healing,
        heal_curves: &heal_curves,
        export: &export,
        l_tot,
        model_path: &model_path,
    };
    write_tables(out, &m)?;

    let figures = figures(out, sc, &m)?;

    let claims = claims(sc, &m);
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
        forward_tokens_per_second,
        seconds: t0.elapsed().as_secs_f64(),
        claims,
        figures,
    };
    out.write_json("results.json", &results)?;
    Ok(results)
}

/// `results.json` of `dlt prune distances`: the (n, l) table of angular distances
/// d(x^(l), x^(l+n)) (arXiv 2403.17887 §3.2 eq. (7); docs/derivations/prune.md#angular-distance)
/// and, per n < L, the block of least distance with its standard error
/// (docs/derivations/prune.md#block-selection).
pub fn distances_results(d: &Distances) -> serde_json::Value {
    use serde_json::json;
    let l_tot = d.n_layers;
    let best: Vec<_> = (1..l_tot)
        .map(|n| {
            let (s, v) = d.best(n).expect("n < L");
            json!({"n": n, "start": s, "end": s + n, "distance": v, "se": d.se[n - 1][s]})
        })
        .collect();
    json!({"n_layers": l_tot, "samples": d.samples, "tokens_per_sample": d.tokens_per_sample,
           "position": d.position, "indexing": "0-based blocks, end-exclusive ranges; table[n-1][l] = d(x^(l), x^(l+n))",
           "table": d.table, "best": best})
}

/// Write the outputs of `dlt prune distances` into `out`: `distances.csv` (n, start, end,
/// distance), `distances.svg` (the (n, l) table as a heat map) and `results.json` (`results`,
/// from [`distances_results`]).
pub fn write_distances(
    out: &OutDir,
    d: &Distances,
    results: &serde_json::Value,
) -> Result<(), StudyError> {
    let l_tot = d.n_layers;
    let mut rows = vec![];
    for n in 1..=l_tot {
        for l in 0..=l_tot - n {
            rows.push(vec![
                n.to_string(),
                l.to_string(),
                (l + n).to_string(),
                format!("{:.6}", d.table[n - 1][l]),
            ]);
        }
    }
    out.write_csv("distances.csv", &["n", "start", "end", "distance"], &rows)?;
    // The (n, l) table as a heatmap: rows n (blocks dropped), columns l (first block); cells
    // past the last block are empty.
    Heatmap {
        title: "Angular distance d(x^(l), x^(l+n))".into(),
        x_label: "first block l".into(),
        y_label: "blocks n".into(),
        xs: (0..l_tot).map(|l| l as f64).collect(),
        ys: (1..=l_tot).map(|n| n as f64).collect(),
        z: (1..=l_tot)
            .map(|n| {
                (0..l_tot)
                    .map(|l| d.table[n - 1].get(l).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect(),
        log_z: false,
        diagonal: false,
    }
    .save_svg(&out.path("distances.svg"))?;
    out.write_json("results.json", results)?;
    Ok(())
}

/// Settings of one pruning run (`dlt prune run`).
#[derive(Debug, Clone)]
pub struct PruneRun {
    /// Blocks to drop.
    pub drop: usize,
    /// How the block is chosen.
    pub rule: Rule,
    /// Probe sequences (of 256 tokens) for the angular rule.
    pub samples: usize,
    /// Held-out tokens for perplexity.
    pub eval_tokens: usize,
    /// LoRA healing (None: no healing).
    pub heal: Option<HealConfig>,
    /// GGUF type of the healed (merged) block weights.
    pub healed_type: candle_core::quantized::GgmlDType,
    /// Also write the model as a Hugging Face safetensors directory.
    pub safetensors: bool,
    /// Seed of the random rule.
    pub seed: u64,
    /// Hide progress bars.
    pub quiet: bool,
}

/// One pruning run: drop `run.drop` blocks of `ckpt` chosen by `run.rule` (the angular rule
/// probes `run.samples` sequences of 256 held-out tokens after the evaluation tokens:
/// arXiv 2403.17887 §3.2, docs/derivations/prune.md#block-selection), evaluate the perplexity
/// on the first `run.eval_tokens` tokens of `heldout` before and after, optionally heal with
/// LoRA on the first 2 M characters of `train` (arXiv 2403.17887 §3.3;
/// docs/derivations/prune.md#healing), and export
/// `pruned.gguf` (and `pruned-safetensors/`) into `out` (docs/derivations/prune.md#protocol).
/// Writes `results.json` and returns it.
pub fn prune_model(
    ckpt: &dlt_llm::Checkpoint,
    train: &str,
    heldout: &str,
    run: &PruneRun,
    out: &OutDir,
) -> Result<serde_json::Value, StudyError> {
    let l_tot = ckpt.model.blocks.len();
    let toks = ckpt.tokenizer.encode(heldout)?;
    let eval = &toks[..run.eval_tokens.min(toks.len())];
    let distances = if run.rule == Rule::Angular {
        let seqs = sequences(&toks[eval.len().min(toks.len() / 2)..], 256, run.samples)?;
        Some(angular_distances(
            &ckpt.model,
            &seqs,
            Position::LastToken,
            |_, _| {},
        )?)
    } else {
        None
    };
    let start = choose_start(run.rule, l_tot, run.drop, distances.as_ref(), run.seed)?;
    let kept = kept_blocks(l_tot, start, run.drop);
    let ppl = |m: &dlt_llm::Llama| {
        perplexity(m, &m.all_blocks(), eval, 512.min(eval.len()), 0, |_, _| {})
    };
    let base = ppl(&ckpt.model)?;
    let mut pruned = ckpt.model.with_blocks(&kept)?;
    let before = ppl(&pruned)?;
    let mut healed = None;
    if let Some(cfg) = &run.heal {
        let t = head_chars(train, 2_000_000);
        let train_toks = ckpt.tokenizer.encode(t)?;
        let pb = bar(cfg.steps as u64, "heal", run.quiet);
        let (rep, _) = heal(&mut pruned, &train_toks, cfg, |s, _, _| {
            pb.set_position(s as u64)
        })?;
        pb.finish_and_clear();
        pruned.merge_lora()?;
        healed = Some((ppl(&pruned)?, rep));
    }
    let gguf = out.path("pruned.gguf");
    let rq = if healed.is_some() {
        dlt_llm::export::Requant::To(run.healed_type)
    } else {
        dlt_llm::export::Requant::Unchanged
    };
    dlt_llm::export::write_gguf(ckpt, &pruned, &kept, rq, &gguf)?;
    let mut files = vec![gguf.display().to_string()];
    if run.safetensors {
        let dir = out.path("pruned-safetensors");
        dlt_llm::export::write_safetensors(&pruned, &ckpt.tokenizer, &dir)?;
        files.push(dir.display().to_string());
    }
    let r = serde_json::json!({
        "rule": run.rule.name(), "n": run.drop, "start": start, "end": start + run.drop,
        "indexing": "0-based blocks, end-exclusive range start..end removed",
        "n_layers_before": l_tot, "n_layers_after": kept.len(),
        "perplexity_unpruned": base.perplexity, "perplexity_pruned": before.perplexity,
        "perplexity_healed": healed.as_ref().map(|h| h.0.perplexity),
        "heal_losses": healed.as_ref().map(|h| h.1.losses.clone()),
        "eval_tokens": before.tokens, "files": files,
    });
    out.write_json("results.json", &r)?;
    Ok(r)
}

/// The JSON of `dlt prune eval`: the perplexity `r` of a model on held-out text
/// (docs/derivations/prune.md#protocol) with its
/// negative log-likelihood and standard error, the throughput over `seconds` and the model's
/// weight types (`weight_types`, dequantised to f32 for the evaluation).
pub fn eval_results(
    r: &Perplexity,
    seconds: f64,
    weight_types: &std::collections::BTreeMap<String, usize>,
) -> serde_json::Value {
    serde_json::json!({"perplexity": r.perplexity, "tokens": r.tokens, "nll": r.nll, "nll_se": r.nll_se,
                       "windows": r.windows, "ctx": r.ctx, "seconds": seconds,
                       "tokens_per_second": (r.windows * r.ctx) as f64 / seconds,
                       "weights": "dequantised to f32", "weight_types": weight_types})
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
            scale: Scale::for_mode(quick),
        }
    }
    fn run(cfg: &Config, out: &OutDir) -> Result<Results, StudyError> {
        run(cfg, out)
    }
}
