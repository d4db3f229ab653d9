//! Tiny random Llama models that the tests create and save: layouts, export round trips,
//! LoRA gradients and bad input. Tolerances: f32 forward passes that differ only in the order
//! of summation agree to ≈ 1e-6 relative; we allow 1e-4 absolute on logits of size O(1).

use candle_core::{Device, Tensor};
use dlt_llm::model::{permute_rope_rows, Llama, LlamaConfig, RopeStyle};
use dlt_llm::tokenizer::{PreTokenizer, Tokenizer};

fn byte_tokens() -> Vec<String> {
    // GPT-2's byte alphabet, in byte order (as in every byte-level vocabulary).
    dlt_llm::tokenizer::byte_alphabet()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

fn tiny_tokenizer() -> Tokenizer {
    let mut tokens = byte_tokens();
    tokens.extend(["th", "the", "Ġt", "Ġth"].map(String::from));
    tokens.push("<|endoftext|>".into());
    let merges = [("t", "h"), ("th", "e"), ("Ġ", "t"), ("Ġt", "h")]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .to_vec();
    let mut special = vec![false; tokens.len()];
    *special.last_mut().unwrap() = true;
    Tokenizer::new(
        tokens,
        merges,
        special,
        PreTokenizer::Gpt2SplitDigits,
        "smollm".into(),
    )
    .unwrap()
}

fn tiny_cfg(rope: RopeStyle) -> LlamaConfig {
    LlamaConfig {
        n_layers: 4,
        hidden: 32,
        n_heads: 4,
        n_kv_heads: 2,
        ffn: 48,
        vocab: 261,
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        rope,
        context: 64,
        gemma: None,
    }
}

fn ids() -> Tensor {
    let v: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % 261).collect();
    Tensor::new(v.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn interleaved_and_half_rope_agree_after_permuting_q_k_rows() {
    let m = Llama::random(tiny_cfg(RopeStyle::Interleaved), 1).unwrap();
    let mut h = m.clone();
    h.cfg.rope = RopeStyle::Half;
    for b in &mut h.blocks {
        b.q.w = permute_rope_rows(&b.q.w, h.cfg.n_heads, false).unwrap();
        b.k.w = permute_rope_rows(&b.k.w, h.cfg.n_kv_heads, false).unwrap();
    }
    let blocks = m.all_blocks();
    let a = m.logits(&ids(), &blocks, false).unwrap();
    let b = h.logits(&ids(), &blocks, false).unwrap();
    assert!(max_diff(&a, &b) < 1e-4, "{}", max_diff(&a, &b));
    // Without the permutation the two layouts disagree (the test can fail).
    let mut wrong = m.clone();
    wrong.cfg.rope = RopeStyle::Half;
    let c = wrong.logits(&ids(), &blocks, false).unwrap();
    assert!(max_diff(&a, &c) > 1e-2);
    // And the permutation is an involution pair.
    let w = &m.blocks[0].q.w;
    let back = permute_rope_rows(&permute_rope_rows(w, 4, false).unwrap(), 4, true).unwrap();
    assert_eq!(max_diff(w, &back), 0.0);
}

#[test]
fn differentiable_forward_equals_fused_forward() {
    for rope in [RopeStyle::Interleaved, RopeStyle::Half] {
        let m = Llama::random(tiny_cfg(rope), 2).unwrap();
        let blocks = m.all_blocks();
        let a = m.logits(&ids(), &blocks, false).unwrap();
        let b = m.logits(&ids(), &blocks, true).unwrap();
        assert!(max_diff(&a, &b) < 1e-4, "{rope:?}: {}", max_diff(&a, &b));
    }
}

#[test]
fn causal_attention_ignores_the_future() {
    let m = Llama::random(tiny_cfg(RopeStyle::Interleaved), 3).unwrap();
    let blocks = m.all_blocks();
    let full = m.logits(&ids(), &blocks, false).unwrap();
    let head = m
        .logits(&ids().narrow(1, 0, 10).unwrap(), &blocks, false)
        .unwrap();
    assert!(max_diff(&full.narrow(1, 0, 10).unwrap(), &head) < 1e-5);
}

#[test]
fn every_lora_parameter_gets_a_gradient_and_healing_lowers_the_loss() {
    let mut m = Llama::random(tiny_cfg(RopeStyle::Interleaved), 4).unwrap();
    let text: Vec<u32> = (0..400u32)
        .map(|i| [5, 9, 12, 9, 40, 7][(i % 6) as usize])
        .collect();
    let cfg = dlt_llm::lora::HealConfig {
        steps: 30,
        lr: 1e-2,
        seq: 16,
        batch: 2,
        ..Default::default()
    };
    let (rep, vars) = dlt_llm::lora::heal(&mut m, &text, &cfg, |_, _, _| {}).unwrap();
    assert_eq!(vars.len(), 2 * 7 * 4);
    assert!(
        rep.losses.last().unwrap() < &(rep.losses[0] * 0.8),
        "{:?}",
        rep.losses
    );
    // One more backward pass: after training B ≠ 0, so A and B both receive gradients; the
    // fused ops (no backward) would leave them at zero silently.
    let ids = Tensor::new(&text[..16], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let (loss, _) = m.nll(&ids, &m.all_blocks(), 0, true).unwrap();
    let grads = loss.backward().unwrap();
    for v in &vars {
        let g = grads
            .get(v.as_tensor())
            .expect("gradient reaches every LoRA variable");
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0);
    }
    // Merging folds the adapters into the weights without changing the function.
    let before = m.logits(&ids, &m.all_blocks(), false).unwrap();
    m.merge_lora().unwrap();
    let after = m.logits(&ids, &m.all_blocks(), false).unwrap();
    assert!(max_diff(&before, &after) < 1e-4);
}

#[test]
fn the_paper_recipe_adapts_the_ffn_only_with_reproducible_dropout() {
    let text: Vec<u32> = (0..400u32)
        .map(|i| [5, 9, 12, 9, 40, 7][(i % 6) as usize])
        .collect();
    let cfg = dlt_llm::lora::HealConfig {
        lr: 1e-2,
        seq: 16,
        batch: 2,
        ..dlt_llm::lora::HealConfig::paper(4, 30)
    };
    let run = |c: &dlt_llm::lora::HealConfig| {
        let mut m = Llama::random(tiny_cfg(RopeStyle::Interleaved), 4).unwrap();
        let (rep, vars) = dlt_llm::lora::heal(&mut m, &text, c, |_, _, _| {}).unwrap();
        (rep, vars.len(), m)
    };
    let (a, nvars, m) = run(&cfg);
    // gate, up and down of 4 blocks, an A and a B each.
    assert_eq!(nvars, 2 * 3 * 4);
    // Same seed, same dropout masks and windows: the same losses, bit for bit.
    let (b, _, _) = run(&cfg);
    assert_eq!(a.losses, b.losses);
    // Dropout is part of the computation: without it the losses differ (from the first step,
    // where B = 0 hides it only in the forward pass; the masked A-gradient differs).
    let (c, _, _) = run(&dlt_llm::lora::HealConfig {
        dropout: 0.0,
        ..cfg.clone()
    });
    assert_ne!(a.losses, c.losses);
    assert!(
        a.losses.last().unwrap() < &(a.losses[0] * 0.8),
        "{:?}",
        a.losses
    );
    // After healing the adapters run without dropout: evaluation is deterministic.
    let ids = Tensor::new(&text[..16], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let x = m.logits(&ids, &m.all_blocks(), false).unwrap();
    let y = m.logits(&ids, &m.all_blocks(), false).unwrap();
    assert_eq!(max_diff(&x, &y), 0.0);
    // Impossible settings are refused before any step.
    let mut m2 = Llama::random(tiny_cfg(RopeStyle::Interleaved), 4).unwrap();
    let bad = dlt_llm::lora::HealConfig {
        dropout: 1.0,
        ..cfg.clone()
    };
    let e = dlt_llm::lora::heal(&mut m2, &text, &bad, |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("--lora-dropout"), "{e}");
}

#[test]
fn safetensors_and_gguf_exports_reload_to_the_same_function() {
    let dir = std::env::temp_dir().join(format!("dlt-llm-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tok = tiny_tokenizer();
    let m = Llama::random(tiny_cfg(RopeStyle::Interleaved), 5).unwrap();
    let hf = dir.join("hf");
    dlt_llm::export::write_safetensors(&m, &tok, &hf).unwrap();
    let ck = dlt_llm::load(&hf).unwrap();
    assert_eq!(ck.model.cfg.rope, RopeStyle::Half);
    assert_eq!(
        ck.tokenizer.encode("the 12 theft").unwrap(),
        tok.encode("the 12 theft").unwrap()
    );
    let blocks = m.all_blocks();
    let a = m.logits(&ids(), &blocks, false).unwrap();
    let b = ck.model.logits(&ids(), &blocks, false).unwrap();
    assert!(max_diff(&a, &b) < 1e-4);

    // Prune blocks 1..3 of the safetensors model and write it as GGUF (F32): llama layout.
    let kept = dlt_llm::probe::kept_blocks(4, 1, 2);
    let pruned = ck.model.with_blocks(&kept).unwrap();
    let gguf = dir.join("pruned.gguf");
    dlt_llm::export::write_gguf(
        &ck,
        &pruned,
        &kept,
        dlt_llm::export::Requant::Unchanged,
        &gguf,
    )
    .unwrap();
    let back = dlt_llm::load(&gguf).unwrap();
    assert_eq!(back.model.blocks.len(), 2);
    assert_eq!(back.model.cfg.rope, RopeStyle::Interleaved);
    let c = pruned.logits(&ids(), &pruned.all_blocks(), false).unwrap();
    let d = back
        .model
        .logits(&ids(), &back.model.all_blocks(), false)
        .unwrap();
    assert!(max_diff(&c, &d) < 1e-4);
    // Same as running the unpruned model through the kept blocks.
    let e = m.logits(&ids(), &kept, false).unwrap();
    assert!(max_diff(&c, &e) < 1e-4);
    assert_eq!(
        back.tokenizer.encode("the 12 theft").unwrap(),
        tok.encode("the 12 theft").unwrap()
    );
    // No partial files left behind.
    assert!(!dir.join("pruned.gguf.partial").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("dlt-llm-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tok = tiny_tokenizer();
    let m = Llama::random(tiny_cfg(RopeStyle::Half), 6).unwrap();
    let hf = dir.join("hf");
    dlt_llm::export::write_safetensors(&m, &tok, &hf).unwrap();
    let ck = dlt_llm::load(&hf).unwrap();
    let gguf = dir.join("m.gguf");
    dlt_llm::export::write_gguf(
        &ck,
        &ck.model,
        &ck.model.all_blocks(),
        dlt_llm::export::Requant::Unchanged,
        &gguf,
    )
    .unwrap();
    // --rounding-noise needs a rounding to repeat: refused for safetensors and all-f32 GGUF.
    let mut hf_ck = dlt_llm::load(&hf).unwrap();
    let e = dlt_llm::quant_noise::add_rounding_noise(&mut hf_ck, 1.0, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not loaded from a quantised GGUF"), "{e}");
    let mut f32_ck = dlt_llm::load(&gguf).unwrap();
    let e = dlt_llm::quant_noise::add_rounding_noise(&mut f32_ck, 1.0, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tensor of the model is quantised"), "{e}");
    let bytes = std::fs::read(&gguf).unwrap();

    // Truncated GGUF.
    let t = dir.join("truncated.gguf");
    std::fs::write(&t, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = dlt_llm::load(&t).unwrap_err().to_string();
    assert!(
        e.contains("truncated.gguf") && e.contains("truncated or corrupt"),
        "{e}"
    );
    // Not a GGUF at all.
    let g = dir.join("garbage.gguf");
    std::fs::write(&g, b"this is not a model").unwrap();
    let e = dlt_llm::load(&g).unwrap_err().to_string();
    assert!(
        e.contains("garbage.gguf") && e.contains("not a readable GGUF"),
        "{e}"
    );
    // An unsupported architecture.
    let arch = dir.join("gpt2.gguf");
    let mut b2 = bytes.clone();
    let pos = b2.windows(5).position(|w| w == b"llama").unwrap();
    b2[pos..pos + 5].copy_from_slice(b"gpt2x");
    std::fs::write(&arch, &b2).unwrap();
    let e = dlt_llm::load(&arch).unwrap_err().to_string();
    assert!(
        e.contains("unsupported architecture") && e.contains("gpt2x"),
        "{e}"
    );
    // An unknown quantisation type id in the first tensor's header.
    let q = dir.join("quant.gguf");
    let mut b3 = bytes.clone();
    let name = b"token_embd.weight";
    let at = b3.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let dims = u32::from_le_bytes(b3[at..at + 4].try_into().unwrap()) as usize;
    let dtype_at = at + 4 + 8 * dims;
    b3[dtype_at..dtype_at + 4].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&q, &b3).unwrap();
    let e = dlt_llm::load(&q).unwrap_err().to_string();
    assert!(
        e.contains("quant.gguf") && e.contains("not a readable GGUF"),
        "{e}"
    );
    // Corrupt safetensors.
    let st = hf.join("model.safetensors");
    let sb = std::fs::read(&st).unwrap();
    std::fs::write(&st, &sb[..sb.len() / 2]).unwrap();
    let e = dlt_llm::load(&hf).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("truncated or corrupt"),
        "{e}"
    );
    // Unsupported architecture in config.json.
    std::fs::write(&st, &sb).unwrap();
    let cfg = std::fs::read_to_string(hf.join("config.json")).unwrap();
    std::fs::write(
        hf.join("config.json"),
        cfg.replace("LlamaForCausalLM", "GPT2LMHeadModel")
            .replace("\"llama\"", "\"gpt2\""),
    )
    .unwrap();
    let e = dlt_llm::load(&hf).unwrap_err().to_string();
    assert!(
        e.contains("config.json") && e.contains("unsupported architecture"),
        "{e}"
    );
    // Missing path.
    let e = dlt_llm::load(&dir.join("nope.gguf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dlt data fetch smollm2"), "{e}");
    // Dropping every block, or none.
    assert!(dlt_llm::probe::check_drop(4, 4)
        .unwrap_err()
        .to_string()
        .contains("--drop"));
    assert!(dlt_llm::probe::check_drop(4, 0).is_err());
    assert!(dlt_llm::probe::check_drop(4, 3).is_ok());
    // An empty text cannot be evaluated.
    let e = dlt_llm::eval::perplexity(&m, &m.all_blocks(), &[], 8, 0, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("fewer than one window"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn angular_distance_of_identical_states_is_zero_and_rules_pick_valid_blocks() {
    let m = Llama::random(tiny_cfg(RopeStyle::Interleaved), 7).unwrap();
    let seqs: Vec<Vec<u32>> = (0..3)
        .map(|s| (0..12u32).map(|i| (i * 7 + s) % 261).collect())
        .collect();
    let d = dlt_llm::probe::angular_distances(
        &m,
        &seqs,
        dlt_llm::probe::Position::LastToken,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(d.table.len(), 4);
    assert_eq!(d.table[0].len(), 4);
    assert_eq!(d.table[3].len(), 1);
    for row in &d.table {
        for &v in row {
            assert!((0.0..=1.0).contains(&v));
        }
    }
    // A block whose output projections are zero is the identity on the residual stream:
    // distance 0 across it, so the angular rule must pick it.
    let mut z = m.clone();
    z.blocks[2].o.w = z.blocks[2].o.w.zeros_like().unwrap();
    z.blocks[2].down.w = z.blocks[2].down.w.zeros_like().unwrap();
    let dz = dlt_llm::probe::angular_distances(
        &z,
        &seqs,
        dlt_llm::probe::Position::AllTokens,
        |_, _| {},
    )
    .unwrap();
    assert!(dz.table[0][2] < 1e-3, "{}", dz.table[0][2]);
    use dlt_llm::probe::{choose_start, Rule};
    assert_eq!(choose_start(Rule::Angular, 4, 1, Some(&dz), 0).unwrap(), 2);
    assert_eq!(choose_start(Rule::Last, 4, 2, None, 0).unwrap(), 1);
    for s in 0..20 {
        assert!(choose_start(Rule::Random, 4, 2, None, s).unwrap() <= 2);
    }
}

/// Issue 12, defect 8: the angular-distance probe refuses a model whose forward gives NaN
/// (RoPE base θ = 0), as perplexity does, instead of returning null distances.
#[test]
fn angular_distances_refuse_broken_weights() {
    let mut m = dlt_llm::Llama::random(tiny_cfg(RopeStyle::Half), 3).unwrap();
    m.cfg.rope_theta = 0.0;
    let seqs = vec![(0..16).collect::<Vec<u32>>(); 2];
    let e = dlt_llm::probe::angular_distances(
        &m,
        &seqs,
        dlt_llm::probe::Position::LastToken,
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("weights are broken"), "{e}");
}

/// The KV-cached forward used by the benchmarks: a prefix run once and then a continuation
/// on its cache gives the same logits as the whole sequence in one pass, for both RoPE layouts,
/// GQA and a pruned block list (f32, tolerance 1e-4 as above); and the model scorer's
/// log-likelihood equals the sum of the one-pass log-probabilities of the continuation.
#[test]
fn kv_cached_logits_equal_the_one_pass_logits() {
    use dlt_llm::bench::{LogLikelihood, ModelScorer};
    for rope in [RopeStyle::Interleaved, RopeStyle::Half] {
        let mut cfg = tiny_cfg(rope);
        cfg.n_kv_heads = 2;
        let m = Llama::random(cfg, 3).unwrap();
        let ids: Vec<u32> = vec![5, 9, 200, 17, 3, 88, 41, 7];
        for blocks in [m.all_blocks(), vec![0, 2, 3]] {
            let full = m
                .logits(
                    &Tensor::new(&ids[..], &Device::Cpu)
                        .unwrap()
                        .unsqueeze(0)
                        .unwrap(),
                    &blocks,
                    false,
                )
                .unwrap()
                .squeeze(0)
                .unwrap();
            let (a, cache) = m.logits_cached(&ids[..5], &blocks, None, false).unwrap();
            let (last, _) = m.logits_cached(&ids[..5], &blocks, None, true).unwrap();
            assert_eq!(last.dims(), &[1, m.cfg.vocab]);
            let d = (last - a.narrow(0, 4, 1).unwrap()).unwrap().abs().unwrap();
            assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-5);
            assert_eq!(cache.len(), 5);
            let (b, cache2) = m
                .logits_cached(&ids[5..], &blocks, Some(&cache), false)
                .unwrap();
            assert_eq!(cache2.len(), 8);
            let got = Tensor::cat(&[a, b], 0).unwrap();
            let d = (got - &full)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-4, "{rope:?} {blocks:?}: max |Δlogit| {d}");
            // Scorer: ℓ(ids[5..] | ids[..5]) = Σ_{t=4}^{6} log softmax(full[t])[ids[t+1]].
            let lp = candle_nn::ops::log_softmax(&full, candle_core::D::Minus1)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let want: f64 = (4..7).map(|t| lp[t][ids[t + 1] as usize] as f64).sum();
            let mut s = ModelScorer::new(&m, blocks.clone());
            let got = s
                .loglik(&ids[..5], &[ids[5..].to_vec(), ids[5..6].to_vec()])
                .unwrap();
            assert!((got[0] - want).abs() < 1e-4, "{got:?} vs {want}");
            assert!((got[1] - lp[4][ids[5] as usize] as f64).abs() < 1e-4);
            assert_eq!(s.tokens_run, 5 + 2);
        }
    }
}

fn tiny_gemma(n_layers: usize, window: usize) -> Llama {
    let mut cfg = tiny_cfg(RopeStyle::Half);
    cfg.n_layers = n_layers;
    cfg.n_kv_heads = 1;
    cfg.gemma = Some(dlt_llm::model::Gemma3Config {
        head_dim: 16, // 4 heads × 16 = 64 ≠ hidden 32, as Gemma 3's queries are wider than d
        sliding_window: window,
        rope_local_theta: 10_000.0,
    });
    cfg.rope_theta = 1e6;
    Llama::random(cfg, 7).unwrap()
}

/// A local (sliding-window) block at position i reads only positions i − w + 1 ..= i: with one
/// local block and w = 3, changing tokens 0..=20 leaves the logits at 23 unchanged, and
/// changing token 21 (inside the window) changes them. The same model with the block made
/// global sees the change at 0 (the test can fail both ways).
#[test]
fn gemma_sliding_window_blocks_see_only_their_window() {
    let m = tiny_gemma(1, 3);
    assert!(!m.blocks[0].gemma.as_ref().unwrap().global);
    let base: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % 261).collect();
    let last = |m: &Llama, v: &[u32]| {
        let t = Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        m.logits(&t, &m.all_blocks(), false)
            .unwrap()
            .narrow(1, 23, 1)
            .unwrap()
    };
    let mut far = base.clone();
    for t in far.iter_mut().take(21) {
        *t = (*t + 1) % 261;
    }
    let mut near = base.clone();
    near[21] = (near[21] + 1) % 261;
    assert!(max_diff(&last(&m, &base), &last(&m, &far)) < 1e-6);
    assert!(max_diff(&last(&m, &base), &last(&m, &near)) > 1e-4);
    let mut g = m.clone();
    g.blocks[0].gemma.as_mut().unwrap().global = true;
    assert!(max_diff(&last(&g, &base), &last(&g, &far)) > 1e-4);
}

/// The Gemma forward through the KV cache (masks offset by the cached positions) and through
/// the differentiable ops equals the one-pass fused forward, with local blocks whose window
/// (4) is shorter than the sequence.
#[test]
fn gemma_cached_and_differentiable_forwards_equal_the_fused_forward() {
    let m = tiny_gemma(6, 4);
    let globals: Vec<bool> = m
        .blocks
        .iter()
        .map(|b| b.gemma.as_ref().unwrap().global)
        .collect();
    assert_eq!(globals, [false, false, false, false, false, true]);
    let ids: Vec<u32> = vec![5, 9, 200, 17, 3, 88, 41, 7, 120, 64];
    let t = Tensor::new(&ids[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    for blocks in [m.all_blocks(), vec![0, 2, 5]] {
        let full = m.logits(&t, &blocks, false).unwrap();
        let train = m.logits(&t, &blocks, true).unwrap();
        assert!(
            max_diff(&full, &train) < 1e-4,
            "{}",
            max_diff(&full, &train)
        );
        let full = full.squeeze(0).unwrap();
        let (a, cache) = m.logits_cached(&ids[..6], &blocks, None, false).unwrap();
        let (b, _) = m
            .logits_cached(&ids[6..], &blocks, Some(&cache), false)
            .unwrap();
        let got = Tensor::cat(&[a, b], 0).unwrap();
        assert!(max_diff(&got, &full) < 1e-4, "{}", max_diff(&got, &full));
    }
}

/// `SharedPrefix` scores a pruned model from the kept prefix's stored residual stream: for
/// every contiguous drop of a 6-block model (and the whole model, and a drop of block 0 that
/// shares no prefix), on a Llama and a Gemma 3 model, its per-token cross-entropies equal a
/// full pass of `perplexity` bit for bit (the same operations on the same inputs). A state
/// taken at the wrong boundary or a skipped block would change them at O(1).
#[test]
fn shared_prefix_perplexity_equals_a_full_pass_for_every_drop() {
    let mut cfg = tiny_cfg(RopeStyle::Interleaved);
    cfg.n_layers = 6;
    let gemma = tiny_gemma(6, 5);
    for m in [Llama::random(cfg, 9).unwrap(), gemma] {
        let tokens: Vec<u32> = (0..96u32).map(|i| (i * 53 + 11) % 261).collect();
        let l = m.blocks.len();
        let mut subsets = vec![m.all_blocks()];
        for start in 0..l {
            for n in 1..=(l - start).min(3) {
                subsets.push(dlt_llm::probe::kept_blocks(l, start, n));
            }
        }
        let starts: Vec<usize> = (0..l).collect();
        let shared = dlt_llm::eval::SharedPrefix::new(&m, &tokens, 32, 0, &starts[1..4]).unwrap();
        for kept in &subsets {
            let full = dlt_llm::eval::perplexity(&m, kept, &tokens, 32, 0, |_, _| {}).unwrap();
            let fast = shared.perplexity(kept).unwrap();
            assert_eq!(full.token_nll, fast.token_nll, "blocks {kept:?}");
            assert_eq!(full.nll_se.to_bits(), fast.nll_se.to_bits());
            assert_eq!((full.tokens, full.windows), (fast.tokens, fast.windows));
        }
        assert!(dlt_llm::eval::SharedPrefix::new(&m, &tokens[..10], 32, 0, &[1]).is_err());
    }
}

/// The benchmark sweep scores every pruned model from the whole model's residual streams at
/// its first dropped block (bench::SharedItems): the same log-likelihoods as scoring each
/// pruned model from scratch with its own KV cache (ModelScorer), on Llama and on Gemma 3
/// (sliding-window blocks), including one-token continuations. The blocks run the same
/// operations on the same inputs; the output map runs on many rows at once, so the sums agree
/// to f32 rounding: a few ulps of each of ≤ 5 log-probabilities of size ≤ ln V ≈ 5.6 here,
/// bounded by 1e-5 relative.
#[test]
fn shared_item_scores_equal_a_fresh_scorer_for_every_drop() {
    use dlt_llm::bench::{EncodedItem, LogLikelihood, ModelScorer, SharedItems};
    let mut cfg = tiny_cfg(RopeStyle::Interleaved);
    cfg.n_layers = 6;
    let gemma = tiny_gemma(6, 5);
    let items: Vec<EncodedItem> = (0..3u32)
        .map(|k| EncodedItem {
            ctx: (0..9 + 4 * k).map(|i| (i * 37 + 5 * k + 3) % 261).collect(),
            conts: vec![
                vec![17 + k],
                (0..4).map(|i| (i * 11 + k) % 261).collect(),
                (0..2 + k).map(|i| (i * 29 + 7) % 261).collect(),
            ],
        })
        .collect();
    for m in [Llama::random(cfg, 9).unwrap(), gemma] {
        let l = m.blocks.len();
        let mut subsets = vec![m.all_blocks()];
        for start in 0..l {
            for n in 1..=(l - start).min(3) {
                subsets.push(dlt_llm::probe::kept_blocks(l, start, n));
            }
        }
        let shared = SharedItems::new(&m, &items, &[1, 2, 4], |_, _| {}).unwrap();
        for kept in &subsets {
            let fast = shared.loglik(kept).unwrap();
            let mut scorer = ModelScorer::new(&m, kept.clone());
            for (it, f) in items.iter().zip(&fast) {
                let slow = scorer.loglik(&it.ctx, &it.conts).unwrap();
                for (a, b) in slow.iter().zip(f) {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                        "blocks {kept:?}: {a} vs {b}"
                    );
                }
                assert_eq!(slow.len(), f.len());
            }
        }
        assert!(SharedItems::new(&m, &items, &[l + 1], |_, _| {}).is_err());
    }
}

/// `dlt prune bench` scores a task through `bench::score_task` (all items through
/// `SharedItems`, output map batched): the same verdicts, log-likelihood-driven accuracies and
/// token count as scoring item by item with `ModelScorer` (`bench::evaluate`), whole and pruned.
/// Accuracies are compared exactly: each item's choices differ by far more than the 1e-5
/// relative rounding the test above bounds (checked here, or the comparison is skipped).
#[test]
fn score_task_equals_item_by_item_scoring() {
    use dlt_llm::bench::{encode_item, evaluate, score_task, Item, LogLikelihood, ModelScorer};
    let m = Llama::random(tiny_cfg(RopeStyle::Interleaved), 4).unwrap();
    let encode = |s: &str| -> dlt_llm::Result<Vec<u32>> {
        Ok(s.bytes().map(|b| (b as u32 * 7 + 1) % 261).collect())
    };
    let items: Vec<Item> = (0..6)
        .map(|k| Item {
            context: format!("Question {k}: which?\nAnswer:"),
            choices: vec!["a".into(), format!("bb{k}"), "ccc dd".into()],
            gold: k % 3,
            group: String::new(),
        })
        .collect();
    for kept in [
        m.all_blocks(),
        dlt_llm::probe::kept_blocks(m.blocks.len(), 1, 1),
    ] {
        let fast = score_task(&m, &kept, "t", "acc", &items, &encode, |_, _| {}).unwrap();
        let mut scorer = ModelScorer::new(&m, kept.clone());
        // Margins between choices, to know the exact comparison is meaningful.
        for it in &items {
            let e = encode_item(&encode, it).unwrap();
            let l = scorer.loglik(&e.ctx, &e.conts).unwrap();
            for i in 0..l.len() {
                for j in 0..i {
                    assert!((l[i] - l[j]).abs() > 1e-3, "near tie {l:?}");
                }
            }
        }
        let mut scorer = ModelScorer::new(&m, kept.clone());
        let slow = evaluate("t", "acc", &items, &encode, &mut scorer, |_, _| {}).unwrap();
        assert_eq!(fast.correct, slow.correct, "blocks {kept:?}");
        assert_eq!(
            (fast.acc, fast.acc_norm, fast.n),
            (slow.acc, slow.acc_norm, slow.n)
        );
        assert_eq!(fast.tokens, scorer.tokens_run);
    }
    assert!(score_task(&m, &m.all_blocks(), "t", "acc", &[], &encode, |_, _| {}).is_err());
}
