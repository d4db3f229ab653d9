//! Single-model entry points used by `dlt prune`: angular distances of one model, one pruned
//! model evaluated, and their JSON results.

use super::head_chars;
use crate::output::OutDir;
use crate::plot::Heatmap;
use crate::progress::bar;
use crate::study::StudyError;
use dlt_llm::eval::{perplexity, Perplexity};
use dlt_llm::lora::{heal, HealConfig};
use dlt_llm::probe::{
    angular_distances, choose_start, kept_blocks, sequences, Distances, Position, Rule,
};

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
    let mut toks = ckpt.tokenizer.encode(heldout)?;
    // Windows and probe sequences start with BOS when the model asks for one.
    let n_eval = run.eval_tokens.min(toks.len());
    let bos = ckpt.tokenizer.wanted_bos();
    dlt_llm::eval::set_bos_every(&mut toks[..n_eval], 512.min(n_eval), bos);
    let probe_from = n_eval.min(toks.len() / 2);
    dlt_llm::eval::set_bos_every(&mut toks[probe_from..], 256, bos);
    let eval = &toks[..n_eval];
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
