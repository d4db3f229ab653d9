use super::*;
use crate::lm::Gpt;
use rand::SeedableRng;

/// Parameters of a small model: LayerNorm gains 1, everything else uniform in ±0.2.
fn small_model(cfg: LmConfig) -> Vec<Vec<f32>> {
    use rand::Rng;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    cfg.layout()
        .entries()
        .iter()
        .map(|e| {
            (0..e.len())
                .map(|_| {
                    if e.name.contains("ln") && e.name.ends_with("weight") {
                        1.0
                    } else {
                        rng.random_range(-0.2f32..0.2)
                    }
                })
                .collect()
        })
        .collect()
}

fn tiny(vocab: usize, ctx: usize, d_model: usize, n_head: usize, batch: usize) -> LmConfig {
    LmConfig {
        vocab,
        ctx,
        d_model,
        n_layer: 2,
        n_head,
        batch,
        lr: 3e-3,
        epochs: 1.0,
    }
}

#[test]
fn a_tiny_model_learns_a_repetitive_text() {
    let ids: Vec<u32> = (0..3200u32).map(|i| i % 8).collect();
    let cfg = LmConfig {
        n_layer: 1,
        epochs: 16.0,
        ..tiny(8, 16, 32, 2, 16)
    };
    let mut m = GptKernel::init(cfg, 0).unwrap();
    let before = m.evaluate(&ids).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    m.train(&ids, &mut rng, &mut |_, _| {}).unwrap();
    let after = m.evaluate(&ids).unwrap();
    // ln 8 = 2.08 nats for a uniform guess; a learnt cycle is near 0.
    assert!(before > 1.5 && after < 0.3, "{before} → {after}");
    let s = m.sample(4, 16, &[0], &mut rng);
    let good = s
        .iter()
        .flat_map(|q| q.windows(2))
        .filter(|w| w[1] == (w[0] + 1) % 8)
        .count();
    assert!(good as f64 > 0.9 * 4.0 * 15.0, "{good}");
    // Too short a held-out text is an error, not an empty mean.
    assert!(m.evaluate(&ids[..16]).is_err() && m.evaluate(&[]).is_err());
}

/// The reference model with weights 20× its init (so next-token distributions are far from
/// uniform and depend on the context), and the kernel holding the same values.
fn sharp_pair(cfg: LmConfig) -> (Gpt, GptKernel) {
    let m = Gpt::new(cfg, 5).unwrap();
    for (name, var) in m.varmap.data().lock().unwrap().iter() {
        if !name.contains("ln") {
            var.set(&(var.as_tensor() * 20.0).unwrap()).unwrap();
        }
    }
    let k = GptKernel::new(cfg, m.params_in_order().unwrap());
    (m, k)
}

#[test]
fn kv_cache_sampling_draws_what_the_reference_forward_draws() {
    // Reference: at every step candle's full forward over the whole prefix (no cache), its
    // last position's logits, the same draw. Both consume one uniform per stream per step,
    // so a stream differs only if some u falls within f32 rounding (≈ 1e-6) of a CDF
    // boundary: with 64 streams × 23 steps, a few at most.
    use rand::Rng;
    let cfg = tiny(13, 24, 24, 3, 4);
    let (m, k) = sharp_pair(cfg);
    let start = [1u32, 4, 7];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let mut reference: Vec<Vec<u32>> = (0..64)
        .map(|_| vec![start[rng.random_range(0..start.len())]])
        .collect();
    for t in 1..cfg.ctx {
        let ids: Vec<u32> = reference.concat();
        let ids = candle_core::Tensor::from_vec(ids, (64, t), &candle_core::Device::Cpu).unwrap();
        let logits = m.forward(&ids).unwrap().narrow(1, t - 1, 1).unwrap();
        let rows = logits.squeeze(1).unwrap().to_vec2::<f32>().unwrap();
        for (s, row) in reference.iter_mut().zip(&rows) {
            s.push(draw(row, rng.random()) as u32);
        }
    }
    let ours = k.sample(
        64,
        cfg.ctx,
        &start,
        &mut Xoshiro256PlusPlus::seed_from_u64(9),
    );
    let same = ours.iter().zip(&reference).filter(|(x, y)| x == y).count();
    assert!(same >= 60, "only {same} of 64 streams agree");
    assert!(ours
        .iter()
        .all(|q| q.len() == cfg.ctx && q.iter().all(|&t| t < 13)));
    assert!(ours.iter().any(|q| q != &ours[0]), "degenerate model");
}

#[test]
fn evaluation_equals_the_reference_loss() {
    // Same windows (consecutive, non-overlapping): f32 rounding only, 1e-5 relative.
    let cfg = tiny(13, 8, 16, 2, 4);
    let (m, k) = sharp_pair(cfg);
    let tokens: Vec<u32> = (0..8 * 70 + 1)
        .map(|i| ((i * 7 + i / 5) % 13) as u32)
        .collect();
    let ours = k.evaluate(&tokens).unwrap();
    let windows: Vec<u32> = (0..70)
        .flat_map(|i| tokens[i * 8..=(i + 1) * 8].iter().copied())
        .collect();
    let windows =
        candle_core::Tensor::from_vec(windows, (70, 9), &candle_core::Device::Cpu).unwrap();
    let reference = m.loss(&windows).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!(
        (ours - reference).abs() <= 1e-5 * reference,
        "{ours} vs {reference}"
    );
}

#[test]
fn the_kernel_trains_like_candle_autograd() {
    // Same init, same batches: the hand-written step and candle's autograd + AdamW give the
    // same losses (1e-4 relative: f32 rounding) and the same parameter updates (within 2 %
    // of the largest update: Adam divides by √v, which amplifies rounding where v ≈ 0).
    let cfg = tiny(13, 8, 16, 2, 4);
    let tokens: Vec<u32> = (0..160u32).map(|i| (i * 7 + i / 5) % 13).collect();
    let reference = Gpt::new(cfg, 5).unwrap();
    let p0 = reference.params_in_order().unwrap();
    let (mut lr, mut lk) = (vec![], vec![]);
    let sr = reference
        .train(
            &tokens,
            &mut Xoshiro256PlusPlus::seed_from_u64(9),
            &mut |_, l| lr.push(l),
        )
        .unwrap();
    let mut k = GptKernel::init(cfg, 5).unwrap();
    let sk = k
        .train(
            &tokens,
            &mut Xoshiro256PlusPlus::seed_from_u64(9),
            &mut |_, l| lk.push(l),
        )
        .unwrap();
    assert_eq!(sr, sk);
    assert!(sk >= 4);
    for (a, b) in lk.iter().zip(&lr) {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "losses {lk:?} vs {lr:?}");
    }
    let pr = reference.params_in_order().unwrap();
    for (((name, a), b), z) in k.names.iter().zip(&k.p).zip(&pr).zip(&p0) {
        let big = b.iter().zip(z).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(big > 0.0, "{name} did not move");
        assert!(
            diff <= 0.02 * big,
            "{name}: |kernel − candle| {diff} vs update {big}"
        );
    }
}

#[test]
fn every_instruction_set_gives_the_same_numbers() {
    let cfg = LmConfig {
        vocab: 11,
        ctx: 20,
        d_model: 24,
        n_layer: 2,
        n_head: 3,
        batch: 5,
        lr: 3e-3,
        epochs: 1.0,
    };
    let windows: Vec<u32> = (0..cfg.batch * (cfg.ctx + 1))
        .map(|i| ((i * 7 + i / 3) % cfg.vocab) as u32)
        .collect();
    let run = |isa: Isa| {
        let mut f = GptKernel::new(cfg, small_model(cfg));
        f.isa = isa;
        let losses: Vec<f64> = (0..4).map(|_| f.step(&windows, cfg.lr)).collect();
        (losses, f.p)
    };
    let (l0, p0) = run(Isa::Baseline);
    assert!(l0[3] < l0[0], "the step does not train: {l0:?}");
    let mut checked = 0;
    for isa in [Isa::Avx2, Isa::Avx512] {
        if !isa.available() {
            continue;
        }
        let (l, p) = run(isa);
        assert_eq!(l, l0, "{isa:?} losses differ from the baseline's");
        assert!(p == p0, "{isa:?} parameters differ from the baseline's");
        checked += 1;
    }
    eprintln!("compared {checked} vector instruction sets with the baseline");
}

#[test]
fn vectorisable_exp_and_erf_are_accurate() {
    let (mut e_exp, mut e_erf) = (0f64, 0f64);
    for k in -80_000..=80_000 {
        let x = k as f32 * 1e-3;
        let r = (x as f64).exp();
        e_exp = e_exp.max(((exp_f32(x) as f64) - r).abs() / r);
        let xe = k as f32 * 1e-4;
        e_erf = e_erf.max((erf_f32(xe) as f64 - libm::erf(xe as f64)).abs());
    }
    assert!(e_exp < 5e-7, "exp relative error {e_exp:e}");
    // 1.5e-7 from the approximation plus f32 rounding of its terms.
    assert!(e_erf < 1e-6, "erf absolute error {e_erf:e}");
    assert!(exp_f32(-200.0) < 1e-37);
}
