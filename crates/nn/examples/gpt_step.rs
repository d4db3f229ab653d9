//! Times the character transformer's training step (the collapse study's LM at its quick
//! size): `cargo run --release -p dlt-nn --example gpt_step [steps]`. Prints tokens/s; the
//! PyTorch comparison is `dlt bench`.
use dlt_nn::gpt_kernel::GptKernel;
use dlt_nn::lm::LmConfig;
use rand::SeedableRng;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args().nth(1).map_or(Ok(100), |s| s.parse())?;
    let tokens: Vec<u32> = (0..200_000u32).map(|i| (i * 7919 + i / 13) % 72).collect();
    let cfg = LmConfig {
        vocab: 72,
        ctx: 64,
        d_model: 64,
        n_layer: 2,
        n_head: 4,
        batch: 32,
        lr: 3e-3,
        epochs: (steps * 32 * 64) as f64 / tokens.len() as f64,
    };
    let mut gpt = GptKernel::init(cfg, 0)?;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    let mut last = 0.0;
    let t = Instant::now();
    let n = gpt.train(&tokens, &mut rng, &mut |_, l| last = l)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "{n} steps, {:.0} tokens/s, {:.2} ms/step, last loss {last:.4}",
        (n * 32 * 64) as f64 / s,
        1e3 * s / n as f64
    );
    Ok(())
}
