//! `dlt prune …`: angular-distance layer pruning of Llama-architecture LLMs (GGUF or
//! safetensors), LoRA healing and export. Block ranges are 0-based and end-exclusive.

use anyhow::Result;
use clap::{Args, Subcommand};
use dlt_llm::lora::HealConfig;
use dlt_llm::probe::{angular_distances, sequences, Position, Rule};
use dlt_studies::output::OutDir;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum PruneCmd {
    /// The (n, l) table of angular distances d(x^(l), x^(l+n)) and the best block per n.
    Distances(DistancesArgs),
    /// Drop N blocks by a rule, evaluate, optionally heal with LoRA, and export.
    Run(RunArgs),
    /// Perplexity of a model on a text.
    Eval(EvalArgs),
    /// Multiple-choice benchmarks (ARC-Easy, HellaSwag, PIQA, BoolQ) scored as
    /// lm-evaluation-harness scores them, on a seeded subset of items.
    Bench(BenchArgs),
    /// Token ids of a text (to compare with another tokenizer).
    Tokenize {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        text: PathBuf,
    },
    /// The whole `prune` study (what `dlt reproduce` runs).
    Study {
        #[arg(long, default_value = "out/prune")]
        out: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        text: Option<PathBuf>,
        /// The `dlt data fetch benchmarks` folder (default: the cache, fetched).
        #[arg(long)]
        bench_data: Option<PathBuf>,
        /// Items per benchmark task in the accuracy sweep (default: 100 quick, 250 full).
        #[arg(long)]
        bench_items: Option<usize>,
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Read back the stages an earlier run of the same configuration left in
        /// OUT/checkpoints/ (each written as soon as it is done) instead of recomputing them:
        /// an interrupted run continues where it stopped.
        #[arg(long)]
        resume: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct DistancesArgs {
    /// A .gguf file or a Hugging Face directory (default: SmolLM2-135M-Instruct Q4_1, fetched).
    #[arg(long)]
    model: Option<PathBuf>,
    /// UTF-8 text or JSON lines with a "text" field (default: Shakespeare's plays); its
    /// last 10 % is used.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Number of probe sequences.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Tokens per probe sequence.
    #[arg(long, default_value_t = 256)]
    len: usize,
    /// Average the distance over all tokens instead of the last one.
    #[arg(long)]
    all_tokens: bool,
    #[arg(long)]
    json: bool,
    /// Also write distances.csv and distances.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunArgs {
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    drop: usize,
    /// angular, last (the deepest N before the final block) or random.
    #[arg(long, default_value = "angular")]
    rule: String,
    #[arg(long)]
    text: Option<PathBuf>,
    /// Probe sequences for the angular rule.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Held-out tokens for perplexity.
    #[arg(long, default_value_t = 4096)]
    eval_tokens: usize,
    /// LoRA healing steps (0: no healing).
    #[arg(long, default_value_t = 0)]
    heal_steps: usize,
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Comma-separated subset of q,k,v,o,gate,up,down.
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    lora_targets: String,
    #[arg(long, default_value_t = 3e-4)]
    heal_lr: f64,
    #[arg(long, default_value_t = 128)]
    heal_seq: usize,
    #[arg(long, default_value_t = 1)]
    heal_batch: usize,
    /// Dropout on the LoRA adapters' input while healing.
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// Learning-rate schedule after the warm-up: constant or cosine.
    #[arg(long, default_value = "constant")]
    heal_schedule: String,
    /// Linear warm-up steps of the learning rate.
    #[arg(long, default_value_t = 0)]
    heal_warmup: usize,
    /// `paper`: the paper's recipe (LoRA on gate/up/down only, α = r, dropout 0.05, cosine
    /// schedule after a warm-up of a tenth of the steps); overrides --lora-alpha,
    /// --lora-targets, --lora-dropout, --heal-schedule and --heal-warmup. `custom`: the flags.
    #[arg(long, default_value = "custom")]
    heal_recipe: String,
    /// GGUF type of healed (merged) block weights: q8_0, q4_0, q4_1, f16, f32 (q4_1 undoes
    /// most of the healing of SmolLM2-135M).
    #[arg(long, default_value = "q8_0")]
    healed_type: String,
    /// Also write the model as a Hugging Face safetensors directory.
    #[arg(long)]
    safetensors: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "out/prune-run")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    model: Option<PathBuf>,
    /// UTF-8 text or JSON lines with a "text" field, evaluated whole (default: the
    /// held-out 10 % of Shakespeare's plays).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Window length in tokens.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Evaluate at most this many tokens.
    #[arg(long)]
    tokens: Option<usize>,
    /// Score only the second half of each window (what llama.cpp's llama-perplexity does).
    #[arg(long)]
    second_half: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// A .gguf file or a Hugging Face directory (default: SmolLM2-135M-Instruct Q4_1, fetched).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated tasks: arc_easy, hellaswag, piqa, boolq, mmlu (5-shot).
    #[arg(long, default_value = "arc_easy,hellaswag,piqa")]
    tasks: String,
    /// Items per task, drawn without replacement with --seed (all when larger than the split).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Score the model with blocks START..END (0-based, end-exclusive) dropped, e.g. 13..19.
    #[arg(long)]
    drop: Option<String>,
    /// The benchmarks folder (default: `dlt data fetch benchmarks`, fetched if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also score the model with K·d²/12 of noise added to every quantised weight, d its block's
    /// step (comma-separated K ≥ 0, e.g. 1,2; Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 files): K = 1 repeats
    /// the file's own rounding (30/32 of it for Q4_1, whose block min and max are exact), so the
    /// change estimates what the quantisation cost (docs/derivations/prune.md#quantisation-noise).
    /// Each row is paired with the stored model; draws are averaged per K.
    #[arg(long, value_delimiter = ',')]
    rounding_noise: Vec<f64>,
    /// Noise draws per K (default 1). Draw r uses noise seed r at every K, so K = 2's noise is
    /// √2 times K = 1's (common random numbers: the comparison across K is sharper).
    #[arg(long)]
    noise_draws: Option<u64>,
    #[arg(long)]
    json: bool,
}

/// The change averaged over noise draws, with its standard error: items and draws both vary,
/// so SE² = SE²_items + s²_draws/R (one draw: the paired change of McNemar's comparison, mean of
/// per-item differences and sd/√n, to which only the items the two models disagree on contribute) — the first from the per-item changes averaged over the R
/// draws (sd/√n), the second from the spread of the R draws' mean changes (0 for one draw).
/// `draws[r][i]` is item i's change in draw r; `pick` chooses acc or acc_norm.
fn draws_mean(draws: &[Vec<(f64, f64)>], pick: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let r = draws.len() as f64;
    let n = draws.first().map_or(0, Vec::len);
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let item_means: Vec<f64> = (0..n)
        .map(|i| draws.iter().map(|d| pick(&d[i])).sum::<f64>() / r)
        .collect();
    let mean = item_means.iter().sum::<f64>() / n as f64;
    let var_items =
        item_means.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0).max(1.0);
    let draw_means: Vec<f64> = draws
        .iter()
        .map(|d| d.iter().map(&pick).sum::<f64>() / n as f64)
        .collect();
    let var_draws = if draws.len() > 1 {
        draw_means.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r - 1.0)
    } else {
        0.0
    };
    (mean, (var_items / n as f64 + var_draws / r).sqrt())
}

/// The kept blocks when `spec` = "START..END" of `l` blocks is dropped.
fn kept_blocks(spec: Option<&str>, l: usize) -> Result<Vec<usize>> {
    let Some(spec) = spec else {
        return Ok((0..l).collect());
    };
    let bad = || {
        anyhow::anyhow!(
            "--drop {spec:?}: not a block range START..END with START < END ≤ {l} (0-based, end-exclusive, e.g. 13..19)"
        )
    };
    let (a, b) = spec.split_once("..").ok_or_else(bad)?;
    let (a, b): (usize, usize) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    anyhow::ensure!(a < b && b <= l && b - a < l, bad());
    Ok((0..l).filter(|i| *i < a || *i >= b).collect())
}

fn run_bench(a: BenchArgs) -> Result<()> {
    use dlt_llm::bench::{load_task, score_task, subset, Task};
    // Every flag before the model and data are loaded.
    let tasks: Vec<Task> = a
        .tasks
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(Task::parse)
        .collect::<std::result::Result<_, _>>()?;
    anyhow::ensure!(
        !tasks.is_empty(),
        "--tasks {:?}: no task named; use e.g. arc_easy,hellaswag,piqa",
        a.tasks
    );
    anyhow::ensure!(
        a.limit > 0,
        "--limit 0: no items would be scored; use --limit ≥ 1 (e.g. 100)"
    );
    anyhow::ensure!(
        a.rounding_noise.iter().all(|k| k.is_finite() && *k >= 0.0),
        "--rounding-noise {:?}: each K must be a variance multiple ≥ 0 (e.g. 1,2)",
        a.rounding_noise
    );
    anyhow::ensure!(
        a.noise_draws.is_none() || !a.rounding_noise.is_empty(),
        "--noise-draws without --rounding-noise: no noisy model would be scored; add e.g. --rounding-noise 1,2"
    );
    let noise_draws = a.noise_draws.unwrap_or(1);
    anyhow::ensure!(
        noise_draws >= 1,
        "--noise-draws 0: no noisy model would be scored; use ≥ 1"
    );
    let dir = match &a.data {
        Some(d) => d.clone(),
        None => {
            dlt_nn::data::fetch::locate(dlt_nn::data::fetch::Dataset::Benchmarks, None, true)?.0
        }
    };
    let items: Vec<_> = tasks
        .iter()
        .map(|t| load_task(*t, &dir))
        .collect::<std::result::Result<_, _>>()?;
    let model_file = model_path(a.model.clone())?;
    let ck = dlt_llm::load(&model_file)?;
    if !a.rounding_noise.is_empty() {
        // Refuse a model without a rounding to repeat before its scoring, not after.
        dlt_llm::quant_noise::check_supported(&ck)?;
    }
    let blocks = kept_blocks(a.drop.as_deref(), ck.model.blocks.len())?;
    let subsets: Vec<Vec<dlt_llm::bench::Item>> = items
        .iter()
        .map(|all| {
            let idx = subset(all.len(), a.limit, a.seed)?;
            Ok(idx.iter().map(|&i| all[i].clone()).collect())
        })
        .collect::<Result<_>>()?;
    // Every task's subset scored on one model, a line per task off --json.
    let score_all = |ck: &dlt_llm::Checkpoint,
                     label: &str|
     -> Result<Vec<dlt_llm::bench::TaskScore>> {
        // A model that asks for BOS (Gemma 3) gets it before every context, as its Hugging Face
        // tokenizer gives lm-eval; context and context + continuation both carry it.
        let bos = ck.tokenizer.wanted_bos();
        let encode = |s: &str| -> dlt_llm::Result<Vec<u32>> {
            let ids = ck.tokenizer.encode(s)?;
            Ok(bos.into_iter().chain(ids).collect())
        };
        let mut rows = Vec::new();
        for (t, sel) in tasks.iter().zip(&subsets) {
            let pb = dlt_studies::progress::bar(sel.len() as u64, t.name(), a.json);
            let r = score_task(
                &ck.model,
                &blocks,
                t.name(),
                t.primary(),
                sel,
                &encode,
                |i, _| pb.set_position(i as u64),
            )?;
            pb.finish_and_clear();
            if !a.json {
                println!(
                    "{label}{:<10} n {:>5}  acc {:5.1} ± {:4.1} %  acc_norm {:5.1} ± {:4.1} %  (chance {:.1} %, majority {:.1} %; {} tokens, {:.0} tokens/s)",
                    r.task,
                    r.n,
                    100.0 * r.acc,
                    100.0 * r.acc_se,
                    100.0 * r.acc_norm,
                    100.0 * r.acc_norm_se,
                    100.0 * r.chance,
                    100.0 * r.majority,
                    r.tokens,
                    r.tokens as f64 / r.seconds
                );
            }
            rows.push(r);
        }
        Ok(rows)
    };
    let rows = score_all(&ck, "")?;
    // The same items on the model with its rounding error added again (quant_noise).
    let mut noisy = Vec::new();
    let mut means = Vec::new();
    for &k in &a.rounding_noise {
        // Per task and draw: each item's (acc, acc_norm) change against the stored model.
        let mut per_item: Vec<Vec<Vec<(f64, f64)>>> = vec![vec![]; rows.len()];
        for draw in 0..noise_draws {
            let mut ckn = dlt_llm::load(&model_file)?;
            let info = dlt_llm::quant_noise::add_rounding_noise(&mut ckn, k, draw)?;
            let label = format!("K = {k}, draw {draw}: ");
            if !a.json {
                println!(
                    "{label}noise added to {} weights ({:?}), rms {:.3e} against their rms {:.3e}; Q4_1 blocks on the reference grid: {}",
                    info.weights,
                    info.perturbed,
                    info.rms_noise,
                    info.rms_weight,
                    info.reference_grid_share
                        .map_or("none".into(), |x| format!("{:.4}", x))
                );
            }
            let scores = score_all(&ckn, &label)?;
            let mut per_task = Vec::new();
            for (ti, (b, s)) in rows.iter().zip(&scores).enumerate() {
                // Each item's (acc, acc_norm) change, right = 1, wrong = 0.
                let d = |p: bool, q: bool| f64::from(u8::from(q)) - f64::from(u8::from(p));
                let diffs: Vec<(f64, f64)> = b
                    .correct
                    .iter()
                    .zip(&s.correct)
                    .map(|(x, y)| (d(x.0, y.0), d(x.1, y.1)))
                    .collect();
                let one = std::slice::from_ref(&diffs);
                let (d_acc, d_acc_se) = draws_mean(one, |d| d.0);
                let (d_norm, d_norm_se) = draws_mean(one, |d| d.1);
                per_item[ti].push(diffs);
                if !a.json {
                    println!(
                        "{label}{:<10} change against the stored model: acc {:+.1} ± {:.1} pts, acc_norm {:+.1} ± {:.1} pts (paired)",
                        s.task,
                        100.0 * d_acc,
                        100.0 * d_acc_se,
                        100.0 * d_norm,
                        100.0 * d_norm_se
                    );
                }
                per_task.push(serde_json::json!({
                    "score": s,
                    "acc_change": d_acc,
                    "acc_change_se": d_acc_se,
                    "acc_norm_change": d_norm,
                    "acc_norm_change_se": d_norm_se,
                }));
            }
            noisy.push(serde_json::json!({"noise": info, "tasks": per_task}));
        }
        for (b, draws) in rows.iter().zip(&per_item) {
            let (acc, norm) = (draws_mean(draws, |d| d.0), draws_mean(draws, |d| d.1));
            if !a.json && noise_draws > 1 {
                println!(
                    "K = {k}, mean of {noise_draws} draws: {:<10} acc {:+.1} ± {:.1} pts, acc_norm {:+.1} ± {:.1} pts",
                    b.task,
                    100.0 * acc.0,
                    100.0 * acc.1,
                    100.0 * norm.0,
                    100.0 * norm.1
                );
            }
            means.push(serde_json::json!({
                "multiple": k,
                "draws": noise_draws,
                "task": b.task,
                "acc_change": acc.0,
                "acc_change_se": acc.1,
                "acc_norm_change": norm.0,
                "acc_norm_change_se": norm.1,
            }));
        }
    }
    let dropped: Vec<usize> = (0..ck.model.blocks.len())
        .filter(|i| !blocks.contains(i))
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "seed": a.seed,
                "limit": a.limit,
                "dropped_blocks": dropped,
                "tasks": rows,
                "rounding_noise": noisy,
                "rounding_noise_mean": means,
            }))?
        );
    } else if !dropped.is_empty() {
        println!("dropped blocks: {dropped:?}");
    }
    Ok(())
}

/// The `--model` argument: a path, or a model name (`smollm2`, `gemma3`) resolved to its cached
/// GGUF; SmolLM2 by default.
fn model_path(p: Option<PathBuf>) -> Result<PathBuf> {
    Ok(dlt_nn::data::fetch::resolve_model(p.as_deref())?)
}

/// The evaluation text: a given file whole, or the held-out 10 % of Shakespeare.
fn heldout_text(p: Option<&Path>) -> Result<(String, String)> {
    use dlt_nn::data::fetch::{locate, Dataset};
    let path = match p {
        Some(p) => p.to_path_buf(),
        None => locate(Dataset::Shakespeare, None, true)?.0,
    };
    let (train, held) = dlt_studies::prune::split_text(&path)?;
    Ok((train, held))
}

fn read_text(p: &Path) -> Result<String> {
    Ok(dlt_llm::eval::read_corpus(p)?)
}

fn load(p: Option<PathBuf>) -> Result<dlt_llm::Checkpoint> {
    let p = model_path(p)?;
    Ok(dlt_llm::load(&p)?)
}

pub fn run(cmd: PruneCmd) -> Result<()> {
    match cmd {
        PruneCmd::Distances(a) => run_distances(a),
        PruneCmd::Run(a) => run_prune(a),
        PruneCmd::Eval(a) => run_eval(a),
        PruneCmd::Bench(a) => run_bench(a),
        PruneCmd::Tokenize { model, text } => {
            let ck = load(model)?;
            let ids = ck.tokenizer.encode(&read_text(&text)?)?;
            println!("{}", serde_json::to_string(&ids)?);
            Ok(())
        }
        PruneCmd::Study {
            out,
            model,
            text,
            bench_data,
            bench_items,
            quick,
            seed,
            resume,
            json,
        } => {
            anyhow::ensure!(
                bench_items != Some(0),
                "--bench-items 0: no items would be scored; use ≥ 1 (e.g. 100)"
            );
            let dir = OutDir::create(&out)?;
            let mut scale = dlt_studies::prune::Scale::for_mode(quick);
            if let Some(k) = bench_items {
                scale.bench_items = k;
            }
            let cfg = dlt_studies::prune::Config {
                quick,
                seed,
                quiet: json,
                model,
                text,
                bench_data,
                scale,
                resume,
            };
            let r = dlt_studies::prune::run(&cfg, &dir)?;
            crate::print_study(&r, &r.claims, json, &dir)
        }
    }
}

/// Tokens per probe sequence of `dlt prune run` (the angular rule).
const PROBE_LEN: usize = 256;

/// Memory of the probe, checked before the model is loaded: per sequence and token one f32
/// hidden state of width ≥ 64 (a lower bound for any model), and one head's len × len
/// attention scores.
fn probe_memory(samples: usize, len: usize) -> Result<()> {
    use crate::limits::{check_memory, prod};
    check_memory(
        "prune distances",
        &[
            (
                "--samples",
                samples.to_string(),
                prod(&[samples, len, 64 * 4]),
            ),
            ("--len", len.to_string(), prod(&[len, len, 4])),
        ],
    )
}

/// `dlt prune distances`: check the flags, probe the model, write via
/// [`dlt_studies::prune::write_distances`], print.
fn run_distances(a: DistancesArgs) -> Result<()> {
    let DistancesArgs {
        model,
        text,
        samples,
        len,
        all_tokens,
        json,
        out,
    } = a;
    anyhow::ensure!(samples >= 1, "--samples {samples}: must be ≥ 1");
    anyhow::ensure!(len >= 1, "--len {len}: must be ≥ 1 token");
    probe_memory(samples, len)?;
    let ck = load(model)?;
    let (_, held) = heldout_text(text.as_deref())?;
    let mut toks = ck.tokenizer.encode(&held)?;
    // Each probe sequence starts with BOS when the model asks for one (Gemma 3).
    dlt_llm::eval::set_bos_every(&mut toks, len, ck.tokenizer.wanted_bos());
    let avail = toks.len() / len;
    anyhow::ensure!(
        samples <= avail,
        "--samples {samples}: the held-out text gives only {avail} sequences of --len {len} tokens; use --samples ≤ {avail}, a smaller --len or a longer --text"
    );
    let seqs = sequences(&toks, len, samples)?;
    let pos = if all_tokens {
        Position::AllTokens
    } else {
        Position::LastToken
    };
    let pb = dlt_studies::progress::bar(seqs.len() as u64, "probe", json);
    let d = angular_distances(&ck.model, &seqs, pos, |i, _| pb.set_position(i as u64))?;
    pb.finish_and_clear();
    let r = dlt_studies::prune::distances_results(&d);
    if let Some(o) = out {
        let o = OutDir::create(o)?;
        dlt_studies::prune::write_distances(&o, &d, &r)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{:>3} {:>9} {:>9}", "n", "block", "distance");
        for b in r["best"].as_array().expect("array") {
            let u = |k: &str| b[k].as_u64().unwrap_or(0);
            println!(
                "{:>3} {:>4}..{:<4} {:>9.4}",
                u("n"),
                u("start"),
                u("end"),
                b["distance"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// `dlt prune run`: check every flag before the model is loaded, then
/// [`dlt_studies::prune::prune_model`], print.
fn run_prune(a: RunArgs) -> Result<()> {
    let RunArgs {
        model,
        drop,
        rule,
        text,
        samples,
        eval_tokens,
        heal_steps,
        lora_rank,
        lora_alpha,
        lora_targets,
        heal_lr,
        heal_seq,
        heal_batch,
        lora_dropout,
        heal_schedule,
        heal_warmup,
        heal_recipe,
        healed_type,
        safetensors,
        seed,
        out,
        json,
    } = a;
    let schedule = dlt_llm::lora::LrSchedule::parse(&heal_schedule)?;
    anyhow::ensure!(
        (0.0..1.0).contains(&lora_dropout),
        "--lora-dropout {lora_dropout}: must be in [0, 1)"
    );
    anyhow::ensure!(
        heal_warmup <= heal_steps,
        "--heal-warmup {heal_warmup}: more warm-up steps than --heal-steps {heal_steps}"
    );
    anyhow::ensure!(
        heal_recipe == "custom" || heal_recipe == "paper",
        "--heal-recipe {heal_recipe:?}: use custom or paper"
    );
    // Every flag before the model is loaded (issue 12).
    anyhow::ensure!(samples >= 1, "--samples {samples}: must be ≥ 1");
    anyhow::ensure!(
        eval_tokens >= 2,
        "--eval-tokens {eval_tokens}: perplexity needs at least 2 held-out tokens"
    );
    anyhow::ensure!(lora_rank >= 1, "--lora-rank {lora_rank}: must be ≥ 1");
    crate::limits::positive("--lora-alpha", lora_alpha)?;
    crate::limits::positive("--heal-lr", heal_lr)?;
    anyhow::ensure!(heal_seq >= 2, "--heal-seq {heal_seq}: must be ≥ 2 tokens");
    anyhow::ensure!(heal_batch >= 1, "--heal-batch {heal_batch}: must be ≥ 1");
    anyhow::ensure!(
        drop >= 1,
        "--drop {drop}: must be ≥ 1 (the number of blocks to drop)"
    );
    {
        use crate::limits::{check_memory, prod};
        // Lower bounds of what the flags size, whatever the model: per layer of the probe and
        // of healing, one f32 hidden state of width ≥ 64 per token; one head's attention
        // scores per healing sequence; the LoRA factors (rank × (in + out) ≥ rank × 128) of the
        // seven targets.
        check_memory(
            "prune run",
            &[
                (
                    "--samples",
                    samples.to_string(),
                    prod(&[samples, PROBE_LEN, 64 * 4]),
                ),
                (
                    "--heal-batch",
                    heal_batch.to_string(),
                    prod(&[heal_batch, heal_seq, 64 * 4]),
                ),
                (
                    "--heal-seq",
                    heal_seq.to_string(),
                    prod(&[heal_batch, heal_seq, heal_seq, 4]),
                ),
                (
                    "--lora-rank",
                    lora_rank.to_string(),
                    prod(&[lora_rank, 128, 7, 4]),
                ),
            ],
        )?;
    }
    let rule = Rule::parse(&rule)?;
    use candle_core::quantized::GgmlDType;
    let healed_type = match healed_type.as_str() {
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "f16" => GgmlDType::F16,
        "f32" => GgmlDType::F32,
        other => anyhow::bail!("--healed-type {other:?}: use q8_0, q4_0, q4_1, f16 or f32"),
    };
    let model = model_path(model)?;
    // The block count from the header, so a --drop too large is refused before the weights
    // are read (and again against the loaded model).
    if let Some(n) = dlt_llm::checkpoint::declared_blocks(&model) {
        dlt_llm::probe::check_drop(n, drop)?;
    }
    let ck = dlt_llm::load(&model)?;
    dlt_llm::probe::check_drop(ck.model.blocks.len(), drop)?;
    let o = OutDir::create(&out)?;
    let (train, held) = heldout_text(text.as_deref())?;
    let heal = (heal_steps > 0).then(|| {
        let base = HealConfig {
            lr: heal_lr,
            seq: heal_seq,
            batch: heal_batch,
            seed,
            ..HealConfig::paper(lora_rank, heal_steps)
        };
        if heal_recipe == "paper" {
            base
        } else {
            HealConfig {
                alpha: lora_alpha,
                targets: lora_targets
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect(),
                dropout: lora_dropout,
                schedule,
                warmup: heal_warmup,
                ..base
            }
        }
    });
    let run = dlt_studies::prune::PruneRun {
        drop,
        rule,
        samples,
        eval_tokens,
        heal,
        healed_type,
        safetensors,
        seed,
        quiet: json,
    };
    let r = dlt_studies::prune::prune_model(&ck, &train, &held, &run, &o)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "dropped blocks {}..{} ({} rule): perplexity {:.2} → {:.2}",
            r["start"],
            r["end"],
            rule.name(),
            f("perplexity_unpruned"),
            f("perplexity_pruned")
        );
        if heal_steps > 0 {
            println!(
                "after {heal_steps} LoRA steps: {:.2}",
                f("perplexity_healed")
            );
        }
        for f in r["files"].as_array().expect("array") {
            println!("wrote {}", f.as_str().unwrap_or(""));
        }
    }
    Ok(())
}

/// `dlt prune eval`: the perplexity of a model on a text, printed.
fn run_eval(a: EvalArgs) -> Result<()> {
    let EvalArgs {
        model,
        text,
        ctx,
        tokens,
        second_half,
        json,
    } = a;
    // Every flag before the model is loaded (issue 12): a window scores its tokens after the
    // first (after the first half with --second-half); --tokens must hold one window; one
    // head's ctx × ctx attention scores (f32) must fit.
    let min_ctx = if second_half { 3 } else { 2 };
    anyhow::ensure!(
        ctx >= min_ctx,
        "--ctx {ctx}: a window of {ctx} tokens scores nothing; use --ctx ≥ {min_ctx}"
    );
    if let Some(n) = tokens {
        anyhow::ensure!(
            n >= ctx,
            "--tokens {n}: fewer than one window of --ctx {ctx} tokens; use --tokens ≥ {ctx} or a smaller --ctx"
        );
    }
    crate::limits::check_memory(
        "prune eval",
        &[(
            "--ctx",
            ctx.to_string(),
            crate::limits::prod(&[ctx, ctx, 4]),
        )],
    )?;
    let ck = load(model)?;
    let t = match &text {
        Some(p) => read_text(p)?,
        None => heldout_text(None)?.1,
    };
    let mut toks = ck.tokenizer.encode(&t)?;
    if let Some(n) = tokens {
        toks.truncate(n);
    }
    // As llama-perplexity: BOS first and at the start of every window when the model asks
    // for one (Gemma 3); unchanged otherwise (SmolLM2).
    let toks = dlt_llm::eval::bos_windows(&toks, ctx, ck.tokenizer.wanted_bos());
    let pb = dlt_studies::progress::bar((toks.len() / ctx.max(1)) as u64, "eval", json);
    let t0 = std::time::Instant::now();
    let r = dlt_llm::eval::perplexity(
        &ck.model,
        &ck.model.all_blocks(),
        &toks,
        ctx,
        if second_half { ctx / 2 } else { 0 },
        |i, _| pb.set_position(i as u64),
    )?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let out = dlt_studies::prune::eval_results(&r, secs, &ck.weight_types);
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "perplexity {:.4} (nll {:.4} ± {:.4} nats) over {} tokens, {:.0} tokens/s",
            r.perplexity,
            r.nll,
            r.nll_se,
            r.tokens,
            (r.windows * r.ctx) as f64 / secs
        );
    }
    Ok(())
}
