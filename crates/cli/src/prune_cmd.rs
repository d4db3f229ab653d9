//! `dlt prune …`: angular-distance layer pruning of Llama-architecture LLMs (GGUF or
//! safetensors), LoRA healing and export. Block ranges are 0-based and end-exclusive.

use anyhow::Result;
use clap::Subcommand;
use dlt_llm::lora::HealConfig;
use dlt_llm::probe::{angular_distances, choose_start, kept_blocks, sequences, Position, Rule};
use dlt_studies::output::OutDir;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum PruneCmd {
    /// The (n, l) table of angular distances d(x^(l), x^(l+n)) and the best block per n.
    Distances {
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
    },
    /// Drop N blocks by a rule, evaluate, optionally heal with LoRA, and export.
    Run {
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
    },
    /// Perplexity of a model on a text.
    Eval {
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
    },
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
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
}

fn model_path(p: Option<PathBuf>) -> Result<PathBuf> {
    use dlt_nn::data::fetch::{locate, Dataset};
    Ok(match p {
        Some(p) => p,
        None => locate(Dataset::Smollm2, None, true)?.0,
    })
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
        PruneCmd::Distances {
            model,
            text,
            samples,
            len,
            all_tokens,
            json,
            out,
        } => {
            anyhow::ensure!(samples >= 1, "--samples {samples}: must be ≥ 1");
            anyhow::ensure!(len >= 1, "--len {len}: must be ≥ 1 token");
            let ck = load(model)?;
            let (_, held) = heldout_text(text.as_deref())?;
            let toks = ck.tokenizer.encode(&held)?;
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
            let l_tot = d.n_layers;
            let best: Vec<_> = (1..l_tot)
                .map(|n| {
                    let (s, v) = d.best(n).expect("n < L");
                    json!({"n": n, "start": s, "end": s + n, "distance": v, "se": d.se[n - 1][s]})
                })
                .collect();
            if let Some(o) = &out {
                let o = OutDir::create(o)?;
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
                o.write_csv("distances.csv", &["n", "start", "end", "distance"], &rows)?;
            }
            let r = json!({"n_layers": l_tot, "samples": d.samples, "tokens_per_sample": d.tokens_per_sample,
                           "position": d.position, "indexing": "0-based blocks, end-exclusive ranges; table[n-1][l] = d(x^(l), x^(l+n))",
                           "table": d.table, "best": best});
            if let Some(o) = out {
                let o = OutDir::create(o)?;
                // The (n, l) table as a heatmap: rows n (blocks dropped), columns l (first
                // block); cells past the last block are empty.
                dlt_studies::plot::Heatmap {
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
                .save_svg(&o.path("distances.svg"))?;
                o.write_json("results.json", &r)?;
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
        PruneCmd::Run {
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
            healed_type,
            safetensors,
            seed,
            out,
            json,
        } => {
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
            let ck = load(model)?;
            let l_tot = ck.model.blocks.len();
            dlt_llm::probe::check_drop(l_tot, drop)?;
            let o = OutDir::create(&out)?;
            let (train, held) = heldout_text(text.as_deref())?;
            let toks = ck.tokenizer.encode(&held)?;
            let eval = &toks[..eval_tokens.min(toks.len())];
            let distances = if rule == Rule::Angular {
                let seqs = sequences(&toks[eval.len().min(toks.len() / 2)..], 256, samples)?;
                Some(angular_distances(
                    &ck.model,
                    &seqs,
                    Position::LastToken,
                    |_, _| {},
                )?)
            } else {
                None
            };
            let start = choose_start(rule, l_tot, drop, distances.as_ref(), seed)?;
            let kept = kept_blocks(l_tot, start, drop);
            let ppl = |m: &dlt_llm::Llama| {
                dlt_llm::eval::perplexity(
                    m,
                    &m.all_blocks(),
                    eval,
                    512.min(eval.len()),
                    0,
                    |_, _| {},
                )
            };
            let base = ppl(&ck.model)?;
            let mut pruned = ck.model.with_blocks(&kept)?;
            let before = ppl(&pruned)?;
            let mut healed = None;
            if heal_steps > 0 {
                let cfg = HealConfig {
                    rank: lora_rank,
                    alpha: lora_alpha,
                    targets: lora_targets
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect(),
                    steps: heal_steps,
                    lr: heal_lr,
                    seq: heal_seq,
                    batch: heal_batch,
                    seed,
                };
                let t = dlt_studies::prune::head_chars(&train, 2_000_000);
                let train_toks = ck.tokenizer.encode(t)?;
                let pb = dlt_studies::progress::bar(heal_steps as u64, "heal", json);
                let (rep, _) = dlt_llm::lora::heal(&mut pruned, &train_toks, &cfg, |s, _, _| {
                    pb.set_position(s as u64)
                })?;
                pb.finish_and_clear();
                pruned.merge_lora()?;
                healed = Some((ppl(&pruned)?, rep));
            }
            let gguf = o.path("pruned.gguf");
            let rq = if healed.is_some() {
                dlt_llm::export::Requant::To(healed_type)
            } else {
                dlt_llm::export::Requant::Unchanged
            };
            dlt_llm::export::write_gguf(&ck, &pruned, &kept, rq, &gguf)?;
            let mut files = vec![gguf.display().to_string()];
            if safetensors {
                let dir = o.path("pruned-safetensors");
                dlt_llm::export::write_safetensors(&pruned, &ck.tokenizer, &dir)?;
                files.push(dir.display().to_string());
            }
            let r = json!({
                "rule": rule.name(), "n": drop, "start": start, "end": start + drop,
                "indexing": "0-based blocks, end-exclusive range start..end removed",
                "n_layers_before": l_tot, "n_layers_after": kept.len(),
                "perplexity_unpruned": base.perplexity, "perplexity_pruned": before.perplexity,
                "perplexity_healed": healed.as_ref().map(|h| h.0.perplexity),
                "heal_losses": healed.as_ref().map(|h| h.1.losses.clone()),
                "eval_tokens": before.tokens, "files": files,
            });
            o.write_json("results.json", &r)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "dropped blocks {start}..{} ({} rule): perplexity {:.2} → {:.2}",
                    start + drop,
                    rule.name(),
                    base.perplexity,
                    before.perplexity
                );
                if let Some((h, _)) = &healed {
                    println!("after {heal_steps} LoRA steps: {:.2}", h.perplexity);
                }
                for f in r["files"].as_array().expect("array") {
                    println!("wrote {}", f.as_str().unwrap_or(""));
                }
            }
            Ok(())
        }
        PruneCmd::Eval {
            model,
            text,
            ctx,
            tokens,
            second_half,
            json,
        } => {
            let ck = load(model)?;
            let t = match &text {
                Some(p) => read_text(p)?,
                None => heldout_text(None)?.1,
            };
            let mut toks = ck.tokenizer.encode(&t)?;
            if let Some(n) = tokens {
                toks.truncate(n);
            }
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
            let out = json!({"perplexity": r.perplexity, "tokens": r.tokens, "nll": r.nll, "nll_se": r.nll_se,
                             "windows": r.windows, "ctx": r.ctx, "seconds": secs,
                             "tokens_per_second": (r.windows * r.ctx) as f64 / secs,
                             "weights": "dequantised to f32", "weight_types": ck.weight_types});
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
            quick,
            seed,
            json,
        } => {
            let dir = OutDir::create(&out)?;
            let cfg = dlt_studies::prune::Config {
                quick,
                seed,
                quiet: json,
                model,
                text,
                scale: dlt_studies::prune::Scale::for_mode(quick),
            };
            let r = dlt_studies::prune::run(&cfg, &dir)?;
            crate::print_study(&r, &r.claims, json, &dir)
        }
    }
}
