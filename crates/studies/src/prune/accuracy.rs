//! Part 5 of `prune`: the paper's headline figure (arXiv 2403.17887 Fig. 1 and §4.1):
//! question-answering accuracy against the fraction of blocks dropped, by the angular rule, the
//! drop-last heuristic and random blocks, before and after healing, with chance drawn; beside it
//! the normalised held-out loss NLL / ln V on two texts (Shakespeare, the study's text, and the
//! Wikipedia passages of BoolQ, a genre the model is not healed on).
//!
//! Every pruned model keeps blocks 0..start of the whole model, so each task's items run once
//! through the whole model and each pruned model runs only its blocks past `start`
//! (`dlt_llm::bench::SharedItems`, bit-identical to scoring it alone); the texts likewise
//! (`dlt_llm::eval::SharedPrefix`). Healed models are scored whole (their LoRA changes every
//! block). Scoring follows lm-evaluation-harness (docs/derivations/prune.md#benchmarks).

use serde::{Deserialize, Serialize};

use super::measure::{sweep_plan, Planned};
use super::stages::Stages;
use super::Config;
use crate::progress::bar;
use crate::study::StudyError;
use dlt_llm::bench::{encode_item, load_task, subset, tally, EncodedItem, Item, SharedItems, Task};
use dlt_llm::eval::{perplexity, SharedPrefix};
use dlt_llm::probe::{kept_blocks, Distances, Rule};
use dlt_llm::Llama;

/// Accuracy of one model on one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccuracyRow {
    /// lm-eval's task name.
    pub task: String,
    /// Block-choice rule: `none` (the unpruned model), `angular`, `last` or `random`;
    /// `control` is the unpruned model healed (with `healed`).
    pub rule: String,
    /// Number of blocks dropped.
    pub n: usize,
    /// First dropped block (0-based).
    pub start: usize,
    /// n / L.
    pub fraction: f64,
    /// Index of the random draw (0 for the other rules).
    pub draw: usize,
    /// Whether the model was healed with LoRA first.
    pub healed: bool,
    /// Items scored.
    pub items: usize,
    /// The metric lm-eval's model cards report for the task (`acc` or `acc_norm`).
    pub metric: String,
    /// Its value.
    pub accuracy: f64,
    /// Its binomial SE √(p(1−p)/items).
    pub se: f64,
    /// Accuracy of guessing (mean of 1/choices over the items).
    pub chance: f64,
    /// Per-item right/wrong by `metric` (only in checkpoints; paired comparisons).
    #[serde(default, skip_serializing_if = "dlt_llm::detail::hidden")]
    pub correct: Vec<bool>,
}

/// Mean next-token loss of one model on one text, normalised by ln V (1 = a uniform guess over
/// the V tokens of the vocabulary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossRow {
    /// `shakespeare` (the study's held-out text) or `boolq_passages`.
    pub text: String,
    /// As in [`AccuracyRow::rule`].
    pub rule: String,
    /// Number of blocks dropped.
    pub n: usize,
    /// First dropped block.
    pub start: usize,
    /// n / L.
    pub fraction: f64,
    /// Index of the random draw.
    pub draw: usize,
    /// Healed with LoRA first.
    pub healed: bool,
    /// Mean NLL, nats per token.
    pub nll: f64,
    /// Its SE (batch means over windows).
    pub nll_se: f64,
    /// NLL / ln V.
    pub normalised: f64,
}

/// Where a task's accuracy reaches chance under one rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollapseRow {
    /// lm-eval's task name.
    pub task: String,
    /// Block-choice rule.
    pub rule: String,
    /// Accuracy of the unpruned model and chance.
    pub base: f64,
    /// Accuracy of guessing.
    pub chance: f64,
    /// Smallest fraction dropped whose accuracy is within 2 SE of chance (the SE of a guess,
    /// √(c(1−c)/items)); null if none of the fractions measured reaches it.
    pub collapse_fraction: Option<f64>,
    /// Largest fraction dropped below the collapse whose accuracy is still within 2 SE of the
    /// unpruned model's (the paired SE of the difference); null if none.
    pub flat_until: Option<f64>,
}

/// What part 5 measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Accuracy {
    /// Accuracy per task, model (rule, n, draw) and healing.
    pub rows: Vec<AccuracyRow>,
    /// Normalised loss per text, model and healing.
    pub loss: Vec<LossRow>,
    /// Collapse points per task and rule (unhealed).
    pub collapse: Vec<CollapseRow>,
    /// Tokens of each text scored.
    pub text_tokens: usize,
    /// Wall-clock seconds of the part (healed models' scoring included).
    pub seconds: f64,
}

/// The loaded benchmark items and texts of part 5, kept for scoring healed models.
pub(super) struct Bench {
    tasks: Vec<(Task, Vec<Item>, Vec<EncodedItem>)>,
    /// (name, token ids) of the two texts.
    texts: Vec<(String, Vec<u32>)>,
    ctx: usize,
    vocab: usize,
}

/// The sweep of part 5: n = 0 (the whole model) and every `acc_drops` n under each rule, as
/// part 2 plans its own (random draws seeded alike, so the same blocks).
fn plan(cfg: &Config, l_tot: usize, distances: &Distances) -> Result<Vec<Planned>, StudyError> {
    let sc = &cfg.scale;
    let mut plan = vec![(Rule::Last, 0, 0, l_tot)];
    plan.extend(sweep_plan(
        cfg.seed,
        l_tot,
        distances,
        &sc.acc_drops,
        sc.acc_random_draws,
    )?);
    Ok(plan)
}

fn rule_name(rule: Rule, n: usize) -> String {
    if n == 0 {
        "none".into()
    } else {
        rule.name().into()
    }
}

/// Load the tasks' items (a seeded subset of `bench_items` each) and the two texts.
pub(super) fn load_bench(
    cfg: &Config,
    ckpt: &dlt_llm::Checkpoint,
    shakespeare: &[u32],
) -> Result<Bench, StudyError> {
    let sc = &cfg.scale;
    let dir = match &cfg.bench_data {
        Some(d) => d.clone(),
        None => {
            dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Benchmarks, None, true)?.0
        }
    };
    let bos = ckpt.tokenizer.wanted_bos();
    let encode = |s: &str| -> dlt_llm::Result<Vec<u32>> {
        let ids = ckpt.tokenizer.encode(s)?;
        Ok(bos.into_iter().chain(ids).collect())
    };
    let mut tasks = Vec::new();
    for name in &sc.bench_tasks {
        let task = Task::parse(name)?;
        let all = load_task(task, &dir)?;
        let idx = subset(all.len(), sc.bench_items, cfg.seed)?;
        let items: Vec<Item> = idx.iter().map(|&i| all[i].clone()).collect();
        let enc = items
            .iter()
            .map(|it| encode_item(&encode, it))
            .collect::<Result<Vec<_>, _>>()?;
        tasks.push((task, items, enc));
    }
    let mut passages = ckpt
        .tokenizer
        .encode(&dlt_llm::bench::boolq_passages(&dir)?)?;
    let need = shakespeare.len();
    if passages.len() < need {
        return Err(dlt_nn::NnError::Data {
            what: dir.display().to_string(),
            problem: format!(
                "BoolQ's passages have {} tokens, fewer than the {need} scored",
                passages.len()
            ),
            fix: "run `dlt data fetch benchmarks` again".into(),
        }
        .into());
    }
    passages.truncate(need);
    dlt_llm::eval::set_bos_every(&mut passages, sc.ctx, bos);
    Ok(Bench {
        tasks,
        texts: vec![
            ("shakespeare".into(), shakespeare.to_vec()),
            ("boolq_passages".into(), passages),
        ],
        ctx: sc.ctx,
        vocab: ckpt.model.cfg.vocab,
    })
}

/// The sweep: every planned pruned model scored on every task and text, each text's and each
/// task's scores a stage of their own (`accuracy-texts`, `accuracy-<task>`; [`Stages`]).
pub(super) fn sweep(
    cfg: &Config,
    model: &Llama,
    distances: &Distances,
    bench: &Bench,
    stages: &mut Stages,
) -> Result<Accuracy, StudyError> {
    let l_tot = model.blocks.len();
    let plan = plan(cfg, l_tot, distances)?;
    let starts: Vec<usize> = plan.iter().map(|p| p.3).collect();
    let mut acc = Accuracy {
        text_tokens: bench.texts.first().map_or(0, |t| t.1.len()),
        ..Default::default()
    };
    let ln_v = (bench.vocab as f64).ln();
    let (loss, seconds) = stages.run("accuracy-texts", || {
        let t0 = std::time::Instant::now();
        let mut loss = Vec::new();
        let pb = bar(bench.texts.len() as u64, "prune: accuracy texts", cfg.quiet);
        for (name, tokens) in &bench.texts {
            pb.inc(1);
            let shared = SharedPrefix::new(model, tokens, bench.ctx, 0, &starts)?;
            for &(rule, n, draw, start) in &plan {
                let r = shared.perplexity(&kept_blocks(l_tot, start, n))?;
                loss.push(LossRow {
                    text: name.clone(),
                    rule: rule_name(rule, n),
                    n,
                    start,
                    fraction: n as f64 / l_tot as f64,
                    draw,
                    healed: false,
                    nll: r.nll,
                    nll_se: r.nll_se,
                    normalised: r.nll / ln_v,
                });
            }
        }
        pb.finish_and_clear();
        Ok((loss, t0.elapsed().as_secs_f64()))
    })?;
    acc.loss = loss;
    acc.seconds = seconds;
    // The tasks' stages run cheapest first (fewest tokens to score), so a full run done in
    // pieces measures as many stages as it can before it is cut; rows are kept in the listed
    // order, and the order changes no number (each stage is computed on its own).
    let work = |enc: &[EncodedItem]| -> usize {
        enc.iter()
            .map(|e| e.ctx.len() + e.conts.iter().map(Vec::len).sum::<usize>())
            .sum()
    };
    let mut order: Vec<usize> = (0..bench.tasks.len()).collect();
    order.sort_by_key(|&i| work(&bench.tasks[i].2));
    let mut per_task: Vec<Vec<AccuracyRow>> = bench.tasks.iter().map(|_| Vec::new()).collect();
    for i in order {
        let (task, items, enc) = &bench.tasks[i];
        let (rows, seconds) = stages.run(&format!("accuracy-{}", task.name()), || {
            let t0 = std::time::Instant::now();
            let pb = bar(
                (items.len() + plan.len()) as u64,
                &format!("prune: accuracy {}", task.name()),
                cfg.quiet,
            );
            let shared = SharedItems::new(model, enc, &starts, |i, _| pb.set_position(i as u64))?;
            let mut rows = Vec::new();
            for &(rule, n, draw, start) in &plan {
                let lls = shared.loglik(&kept_blocks(l_tot, start, n))?;
                rows.push(row(
                    *task,
                    items,
                    &lls,
                    rule_name(rule, n),
                    n,
                    start,
                    draw,
                    false,
                    l_tot,
                )?);
                pb.inc(1);
            }
            pb.finish_and_clear();
            Ok((rows, t0.elapsed().as_secs_f64()))
        })?;
        per_task[i] = rows;
        acc.seconds += seconds;
    }
    acc.rows.extend(per_task.into_iter().flatten());
    acc.collapse = collapse_points(&acc.rows);
    Ok(acc)
}

/// A healed model's scores on every task and text ([`score_healed`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Scored {
    rows: Vec<AccuracyRow>,
    loss: Vec<LossRow>,
    seconds: f64,
}

impl Accuracy {
    /// Add a healed model's scores.
    pub(super) fn add(&mut self, s: Scored) {
        self.rows.extend(s.rows);
        self.loss.extend(s.loss);
        self.seconds += s.seconds;
    }
}

/// Score a healed model (all its blocks) on every task and text.
pub(super) fn score_healed(
    bench: &Bench,
    healed: &Llama,
    (rule, n, start): (&str, usize, usize),
    l_tot: usize,
    quiet: bool,
) -> Result<Scored, StudyError> {
    let t0 = std::time::Instant::now();
    let mut out = Scored::default();
    let pb = bar(
        (bench.texts.len() + bench.tasks.len()) as u64,
        &format!("prune: accuracy {rule} n={n} healed"),
        quiet,
    );
    let blocks = healed.all_blocks();
    let ln_v = (bench.vocab as f64).ln();
    for (name, tokens) in &bench.texts {
        let r = perplexity(healed, &blocks, tokens, bench.ctx, 0, |_, _| {})?;
        out.loss.push(LossRow {
            text: name.clone(),
            rule: rule.into(),
            n,
            start,
            fraction: n as f64 / l_tot as f64,
            draw: 0,
            healed: true,
            nll: r.nll,
            nll_se: r.nll_se,
            normalised: r.nll / ln_v,
        });
        pb.inc(1);
    }
    for (task, items, enc) in &bench.tasks {
        // No shared prefix (boundary 0 only): SharedItems for its batched output map.
        let lls = SharedItems::new(healed, enc, &[], |_, _| {})?.loglik(&blocks)?;
        out.rows.push(row(
            *task,
            items,
            &lls,
            rule.into(),
            n,
            start,
            0,
            true,
            l_tot,
        )?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    out.seconds = t0.elapsed().as_secs_f64();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn row(
    task: Task,
    items: &[Item],
    lls: &[Vec<f64>],
    rule: String,
    n: usize,
    start: usize,
    draw: usize,
    healed: bool,
    l_tot: usize,
) -> Result<AccuracyRow, StudyError> {
    let s = tally(task.name(), task.primary(), items, lls, 0.0)?;
    let norm = task.primary() == "acc_norm";
    let accuracy = if norm { s.acc_norm } else { s.acc };
    Ok(AccuracyRow {
        task: task.name().into(),
        rule,
        n,
        start,
        fraction: n as f64 / l_tot as f64,
        draw,
        healed,
        items: s.n,
        metric: task.primary().into(),
        accuracy,
        se: if norm { s.acc_norm_se } else { s.acc_se },
        chance: s.chance,
        correct: s
            .correct
            .iter()
            .map(|&(a, b)| if norm { b } else { a })
            .collect(),
    })
}

/// SE of the paired difference of two models' accuracies on the same items: √(Σ (a_i − b_i −
/// mean)²) / n (the SE of a mean of per-item differences in {−1, 0, 1}).
pub fn paired_se(a: &[bool], b: &[bool]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| x as u8 as f64 - y as u8 as f64)
        .collect();
    let m = d.iter().sum::<f64>() / n;
    (d.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
}

/// Each task of `rows` once, in first-seen order (healed models' rows follow the sweep's, so a
/// consecutive dedup would repeat the tasks).
pub(super) fn task_names(rows: &[AccuracyRow]) -> Vec<&str> {
    let mut tasks: Vec<&str> = Vec::new();
    for r in rows {
        if !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
    }
    tasks
}

/// Collapse and flat points of each task under the angular and last rules (unhealed).
fn collapse_points(rows: &[AccuracyRow]) -> Vec<CollapseRow> {
    let mut out = Vec::new();
    for task in task_names(rows) {
        let Some(base) = rows
            .iter()
            .find(|r| r.task == task && r.n == 0 && !r.healed)
        else {
            continue;
        };
        for rule in ["angular", "last"] {
            let mut curve: Vec<&AccuracyRow> = rows
                .iter()
                .filter(|r| r.task == task && r.rule == rule && !r.healed)
                .collect();
            curve.sort_by_key(|r| r.n);
            let guess_se = (base.chance * (1.0 - base.chance) / base.items as f64).sqrt();
            let collapse = curve
                .iter()
                .find(|r| r.accuracy <= base.chance + 2.0 * guess_se)
                .map(|r| r.fraction);
            let flat_until = curve
                .iter()
                .filter(|r| collapse.is_none_or(|c| r.fraction < c))
                .take_while(|r| {
                    base.accuracy - r.accuracy <= 2.0 * paired_se(&base.correct, &r.correct)
                })
                .last()
                .map(|r| r.fraction);
            out.push(CollapseRow {
                task: task.into(),
                rule: rule.into(),
                base: base.accuracy,
                chance: base.chance,
                collapse_fraction: collapse,
                flat_until,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_lists_each_task_once_when_healed_rows_interleave() {
        let row = |task: &str, healed: bool| AccuracyRow {
            task: task.into(),
            rule: "last".into(),
            n: 4,
            start: 0,
            fraction: 0.1,
            draw: 0,
            healed,
            items: 1,
            metric: "acc".into(),
            accuracy: 0.5,
            se: 0.5,
            chance: 0.25,
            correct: Vec::new(),
        };
        // The sweep's rows (task by task), then two healed models' rows (every task each).
        let rows: Vec<AccuracyRow> = [("a", false), ("b", false)]
            .into_iter()
            .chain([("a", true), ("b", true), ("a", true), ("b", true)])
            .map(|(t, h)| row(t, h))
            .collect();
        assert_eq!(task_names(&rows), vec!["a", "b"]);
    }
}
