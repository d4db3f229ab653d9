//! The heavy measurements of `prune`: loading the model and texts, the angular-distance probe,
//! perplexity after pruning, LoRA healing and the GGUF export.

use super::accuracy::Scored;
use super::stages::Stages;
use super::{head_chars, split_text, Best, Config, ExportRow, HealRow, Inputs, PruneRow};
use crate::output::OutDir;
use crate::progress::bar;
use crate::study::StudyError;
use dlt_llm::eval::{perplexity, Perplexity, SharedPrefix};
use dlt_llm::lora::{heal, HealConfig};
use dlt_llm::probe::{angular_distances, choose_start, kept_blocks, sequences, Distances, Rule};
use std::time::Instant;

/// A pruned model of a sweep: (rule, n, random draw, first dropped block).
pub(super) type Planned = (Rule, usize, usize, usize);

/// The pruned models of a sweep: for each n of `drops`, the angular-distance choice
/// (arXiv 2403.17887 §3.2; docs/derivations/prune.md#block-selection), the last blocks, and
/// `random_draws` random blocks, each draw seeded by (seed, n, draw).
pub(super) fn sweep_plan(
    seed: u64,
    l_tot: usize,
    distances: &Distances,
    drops: &[usize],
    random_draws: usize,
) -> Result<Vec<Planned>, StudyError> {
    let mut plan = Vec::new();
    for &n in drops {
        plan.push((
            Rule::Angular,
            n,
            0,
            choose_start(Rule::Angular, l_tot, n, Some(distances), 0)?,
        ));
        plan.push((
            Rule::Last,
            n,
            0,
            choose_start(Rule::Last, l_tot, n, None, 0)?,
        ));
        for d in 0..random_draws {
            let seed = seed
                .wrapping_mul(1_000_003)
                .wrapping_add((n * 100 + d) as u64);
            plan.push((
                Rule::Random,
                n,
                d,
                choose_start(Rule::Random, l_tot, n, None, seed)?,
            ));
        }
    }
    Ok(plan)
}

/// Part 2: perplexity after dropping n blocks by each rule: the angular-distance choice
/// (arXiv 2403.17887 §3.2; docs/derivations/prune.md#block-selection), the last blocks, random
/// blocks.
pub(super) fn prune_and_evaluate(
    cfg: &Config,
    model: &dlt_llm::Llama,
    distances: &Distances,
    eval_tokens: &[u32],
) -> Result<Vec<PruneRow>, StudyError> {
    let sc = &cfg.scale;
    let l_tot = model.blocks.len();
    // 2. Perplexity after pruning, three rules.
    let plan = sweep_plan(cfg.seed, l_tot, distances, &sc.drops, sc.random_draws)?;
    // Every pruned model keeps blocks 0..start of the whole model: their residual streams are
    // computed once (eval::SharedPrefix; same numbers as a full pass per model).
    let starts: Vec<usize> = plan.iter().map(|p| p.3).collect();
    let pb = bar(plan.len() as u64 + 1, "prune: evaluate", cfg.quiet);
    let shared = SharedPrefix::new(model, eval_tokens, sc.ctx, 0, &starts)?;
    pb.inc(1);
    let mut pruning = Vec::new();
    for (rule, n, draw, start) in plan {
        let r = shared.perplexity(&kept_blocks(l_tot, start, n))?;
        pruning.push(PruneRow {
            rule: rule.name().into(),
            n,
            start,
            end: start + n,
            fraction: n as f64 / l_tot as f64,
            draw,
            perplexity: r.perplexity,
            nll: r.nll,
            token_nll: r.token_nll,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(pruning)
}

/// Healed rows, loss curves, the healed models' benchmark scores, and the merged healed model
/// to export (when asked).
type Healed = (
    Vec<HealRow>,
    Vec<(String, Vec<f64>)>,
    Vec<Scored>,
    Option<dlt_llm::Llama>,
);

/// Called with (rule, n, start) and the healed model after each healing, e.g. to score its
/// benchmarks.
pub(super) type OnHealed<'a> =
    &'a mut dyn FnMut((&str, usize, usize), &dlt_llm::Llama) -> Result<Scored, StudyError>;

/// What part 3 heals and compares against: parts 1 and 2's measurements and the texts.
pub(super) struct HealInputs<'a> {
    pub distances: &'a Distances,
    /// Held-out tokens the perplexities are measured on.
    pub eval_tokens: &'a [u32],
    /// The healing text.
    pub train_text: &'a str,
    /// The unpruned model's perplexity.
    pub base: &'a Perplexity,
    /// Part 2's pruned models before healing.
    pub pruning: &'a [PruneRow],
}

/// One healed model's measurements: a stage of its own (`heal-<rule>-<n>`).
type HealUnit = (HealRow, (String, Vec<f64>), Scored);

/// Part 3: LoRA healing of the pruned models (docs/derivations/prune.md#healing), perplexity
/// before and after.
pub(super) fn heal_pruned(
    cfg: &Config,
    ckpt: &dlt_llm::Checkpoint,
    inputs: HealInputs<'_>,
    stages: &mut Stages,
    on_healed: OnHealed<'_>,
) -> Result<Healed, StudyError> {
    let HealInputs {
        distances,
        eval_tokens,
        train_text,
        base,
        pruning,
    } = inputs;
    let sc = &cfg.scale;
    let model = &ckpt.model;
    let l_tot = model.blocks.len();
    let ppl = |blocks: &[usize], m: &dlt_llm::Llama| {
        perplexity(m, blocks, eval_tokens, sc.ctx, 0, |_, _| {})
    };
    // A model before healing is one that part 2 already scored on the same tokens: reuse that
    // row (the same numbers a fresh pass gives).
    let scored = |rule: Rule, n: usize, start: usize| {
        pruning
            .iter()
            .find(|r| r.rule == rule.name() && r.n == n && r.start == start)
            .map(|r| (r.perplexity, r.token_nll.clone()))
    };
    // 3. LoRA healing; the healing text is tokenized once, when the first healing runs.
    let heal_text = head_chars(train_text, sc.heal_chars);
    let train_tokens = std::cell::OnceCell::new();
    // Heal `m` with the study's recipe (seeded), then score it on the held-out tokens.
    let heal_and_score = |m: &mut dlt_llm::Llama, label: &str, seed: u64| {
        let tokens = match train_tokens.get() {
            Some(t) => t,
            None => {
                let t = ckpt.tokenizer.encode(heal_text)?;
                train_tokens.get_or_init(|| t)
            }
        };
        let pb = bar(
            sc.heal.steps as u64,
            &format!("prune: heal {label}"),
            cfg.quiet,
        );
        let hc = HealConfig {
            seed,
            ..sc.heal.clone()
        };
        let (rep, _) = heal(m, tokens, &hc, |s, _, _| pb.set_position(s as u64))?;
        pb.finish_and_clear();
        let after = ppl(&m.all_blocks(), m)?;
        Ok::<_, StudyError>((rep, after))
    };
    let mut healing = Vec::new();
    let mut heal_curves: Vec<(String, Vec<f64>)> = Vec::new();
    let mut healed_scores = Vec::new();
    let mut healed_export: Option<dlt_llm::Llama> = None;
    let mut keep = |(row, curve, s): HealUnit| {
        healing.push(row);
        heal_curves.push(curve);
        healed_scores.push(s);
    };
    // The control: the unpruned model healed the same way (the windows of the first healed n),
    // so that what fine-tuning on the healing text gains anyway is separated from the repair
    // of the cut (docs/derivations/prune.md#healing-recipe).
    if let Some(&n0) = sc.heal_drops.first() {
        keep(stages.run("heal-control", || {
            let mut full = model.clone();
            let before = (base.perplexity, base.token_nll.clone());
            let (rep, after) =
                heal_and_score(&mut full, "control (unpruned)", cfg.seed + n0 as u64)?;
            let s = on_healed(("control", 0, 0), &full)?;
            Ok((
                heal_row("control", 0, 0, before, after, &rep),
                ("control (unpruned)".to_string(), rep.losses),
                s,
            ))
        })?);
    }
    for &n in &sc.heal_drops {
        for rule in [Rule::Angular, Rule::Last] {
            let start = choose_start(rule, l_tot, n, Some(distances), 0)?;
            // The healed model exported in part 4 is needed in memory: never read back.
            let export = rule == Rule::Angular && Some(n) == sc.export_drop;
            let mut healed = None;
            let unit = stages.run_if(&format!("heal-{}-{n}", rule.name()), !export, || {
                let kept = kept_blocks(l_tot, start, n);
                let mut pruned = model.with_blocks(&kept)?;
                let before = match scored(rule, n, start) {
                    Some(b) => b,
                    None => {
                        let p = ppl(&pruned.all_blocks(), &pruned)?;
                        (p.perplexity, p.token_nll)
                    }
                };
                let (rep, after) = heal_and_score(
                    &mut pruned,
                    &format!("{} n={n}", rule.name()),
                    cfg.seed + n as u64,
                )?;
                let s = on_healed((rule.name(), n, start), &pruned)?;
                if export {
                    pruned.merge_lora()?;
                    healed = Some(pruned);
                }
                Ok((
                    heal_row(rule.name(), n, start, before, after, &rep),
                    (
                        format!("{} n={n} ({start}..{})", rule.name(), start + n),
                        rep.losses,
                    ),
                    s,
                ))
            })?;
            keep(unit);
            if healed.is_some() {
                healed_export = healed;
            }
        }
    }
    Ok((healing, heal_curves, healed_scores, healed_export))
}

/// Part 0: locate (or fetch) and load the model and the text, split the text 90/10 and check
/// the sizes against the model and the held-out tokens.
pub(super) fn load_inputs(cfg: &Config) -> Result<Inputs, StudyError> {
    use dlt_nn::data::fetch::{locate, Dataset};
    let model_path = dlt_nn::data::fetch::resolve_model(cfg.model.as_deref())?;
    let text_path = match &cfg.text {
        Some(p) => p.clone(),
        None => locate(Dataset::Shakespeare, None, true)?.0,
    };
    let t_load = Instant::now();
    let ckpt = dlt_llm::load(&model_path)?;
    let load_seconds = t_load.elapsed().as_secs_f64();
    let l_tot = ckpt.model.blocks.len();
    let scale = cfg.scale.for_depth(l_tot);
    if l_tot != super::REFERENCE_DEPTH {
        eprintln!(
            "prune: {} has {l_tot} blocks; block sizes scaled from {} blocks: drops {:?}, \
             accuracy sweep {:?}, healed {:?}",
            model_path.display(),
            super::REFERENCE_DEPTH,
            scale.drops,
            scale.acc_drops,
            scale.heal_drops
        );
    }
    let sc = &scale;
    for &n in sc
        .drops
        .iter()
        .chain(&sc.heal_drops)
        .chain(sc.export_drop.iter())
        .chain(&sc.acc_drops)
    {
        dlt_llm::probe::check_drop(l_tot, n)?;
    }
    let (train_text, heldout_text) = split_text(&text_path)?;
    let mut heldout = ckpt.tokenizer.encode(&heldout_text)?;
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
    // Every evaluation window and probe sequence starts with BOS when the model asks for one.
    let bos = ckpt.tokenizer.wanted_bos();
    let (eval, probe) = heldout.split_at_mut(sc.eval_tokens);
    dlt_llm::eval::set_bos_every(eval, sc.ctx, bos);
    dlt_llm::eval::set_bos_every(probe, sc.probe_len, bos);
    Ok(Inputs {
        scale,
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
pub(super) fn probe_unpruned(
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

/// One row of the healing table: `before` (perplexity and per-token NLL) and `after` healing.
fn heal_row(
    rule: &str,
    n: usize,
    start: usize,
    before: (f64, Vec<f64>),
    after: Perplexity,
    rep: &dlt_llm::lora::HealReport,
) -> HealRow {
    HealRow {
        rule: rule.into(),
        n,
        start,
        end: start + n,
        before: before.0,
        after: after.perplexity,
        before_tokens: before.1,
        after_tokens: after.token_nll,
        steps: rep.steps,
        trainable_params: rep.trainable_params,
        first_loss: rep.losses.first().copied().unwrap_or(f64::NAN),
        last_loss: rep.losses.last().copied().unwrap_or(f64::NAN),
        seconds: rep.seconds,
    }
}

/// Part 4: export the model pruned by the angular rule as GGUF (tensors copied) and the healed
/// one (re-quantised to Q8_0), reload each and evaluate it again.
pub(super) fn export_pruned(
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
