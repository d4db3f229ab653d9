//! `dlt bench`: timings of the heavy kernels, each beside a baseline measured in the same run.
//!
//! * Recursion: a depth-10⁴ tanh profile (goal: milliseconds), beside the cost of the bare
//!   Gauss–Hermite quadrature it performs (10⁴ × 192 evaluations of tanh).
//! * Full-NTK Monte Carlo: networks/s and GFLOP/s (4n³ per layer: two n×n GEMMs), beside this
//!   machine's own f64 GEMM rate for the same n×n products on the same number of threads (faer).
//!   Goal: ≥ 50 % of that rate.
//! * Gram sampler: neuron-layers per second.
//! * Dataset NNGP/NTK (256 inputs, tanh and ReLU, 10 and 100 hidden layers) beside
//!   neural-tangents 0.6.5 in float64 ([`crate::bench_nt`]).

use anyhow::Result;
use dlt_theory::activation::parse;
use dlt_theory::mc::{self, McConfig};
use dlt_theory::profile::{profile, Ensemble, Init, LearningRates, ProfileConfig};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use std::path::PathBuf;
use std::time::Instant;

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// f64 GEMM GFLOP/s for n×n products, `threads` independent streams (one per core).
fn gemm_rate(n: usize, threads: usize, seconds: f64) -> f64 {
    let counts: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let a =
                        Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3 + t) % 11) as f64 * 0.1);
                    let b = Mat::<f64>::from_fn(n, n, |i, j| ((i + 2 * j) % 5) as f64 * 0.2);
                    let mut c = Mat::<f64>::zeros(n, n);
                    let t0 = Instant::now();
                    let mut k = 0u64;
                    while t0.elapsed().as_secs_f64() < seconds {
                        for _ in 0..16 {
                            matmul(
                                c.as_mut(),
                                Accum::Replace,
                                a.as_ref(),
                                b.as_ref(),
                                1.0,
                                Par::Seq,
                            );
                        }
                        k += 16;
                    }
                    std::hint::black_box(&c);
                    k as f64 * 2.0 * (n * n * n) as f64 / t0.elapsed().as_secs_f64()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).collect()
    });
    counts.iter().sum::<f64>() / 1e9
}

/// Samples/s of SGD training of a 784-512-512-10 tanh MLP (batch 128, cross-entropy) with our
/// trainer, after 10 warm-up steps: its hand-written faer step (`fast`, what `dlt train` uses)
/// or candle's autograd.
fn candle_mlp_rate(steps: usize, fast: bool) -> Result<f64> {
    use candle_core::{DType, Device};
    use dlt_nn::data::{synthetic, TrainTest};
    use dlt_nn::train::{Optimizer, TrainConfig, Trainer};
    let dev = Device::Cpu;
    let all = synthetic::gaussian_mixture(128 * 8, 784, 10, 0.1, 0);
    let data = TrainTest {
        train: all.clone(),
        test: all.select(&[0]),
    };
    let model = dlt_nn::model::build(
        "mlp:784-512-512-10:tanh",
        "gaussian",
        None,
        None,
        0,
        DType::F32,
        &dev,
    )?;
    let cfg = TrainConfig {
        optimizer: Optimizer::Sgd,
        lr: 0.05,
        batch: 128,
        epochs: 1000,
        ..Default::default()
    };
    let mut tr = Trainer::new(&*model, cfg, dev)?;
    tr.mlp_kernel = fast;
    let idx: Vec<Vec<usize>> = (0..8).map(|k| (k * 128..(k + 1) * 128).collect()).collect();
    for i in 0..10 {
        tr.step_on(&data.train, &idx[i % 8])?;
    }
    let t = Instant::now();
    for i in 0..steps {
        tr.step_on(&data.train, &idx[i % 8])?;
    }
    tr.publish()?;
    Ok((steps * 128) as f64 / t.elapsed().as_secs_f64())
}

/// The neural-tangents peer of the dataset-kernel rows.
pub struct NtPeer {
    /// Its interpreter (`--nt-python`); None: the cache's nt-venv if present.
    pub python: Option<PathBuf>,
    /// Seconds allowed to each of its calls.
    pub timeout: f64,
    /// The shared inputs (`--nt-inputs`: normal or fashion-mnist).
    pub inputs: String,
}

/// The row names `--only` accepts.
const ROWS: [&str; 9] = [
    "profile", "mc", "gram", "mlp", "cnn", "lm", "scaling", "llm", "nt",
];

pub fn run(
    write: Option<PathBuf>,
    quick: bool,
    python: String,
    llama_cpp: Option<PathBuf>,
    nt: NtPeer,
    only: Vec<String>,
) -> Result<()> {
    if let Some(bad) = only.iter().find(|o| !ROWS.contains(&o.as_str())) {
        anyhow::bail!(
            "--only: unknown row '{bad}'; use a comma-separated list of {}",
            ROWS.join(", ")
        );
    }
    anyhow::ensure!(
        nt.timeout > 0.0 && nt.timeout.is_finite(),
        "--nt-timeout: need a positive number of seconds, got {}",
        nt.timeout
    );
    let want = |r: &str| only.is_empty() || only.iter().any(|o| o == r);
    let threads = std::thread::available_parallelism()
        .map(|v| v.get())
        .unwrap_or(1);
    let reps = if quick { 3 } else { 7 };
    let mut lines = vec![];
    let mut say = |s: String| {
        println!("{s}");
        lines.push(s);
    };
    say(format!("# dlt benchmarks\n\nMachine: {threads} threads. Rerun: `cargo run --release -p dlt -- bench --write BENCHMARKS.md`.\n"));
    say("| kernel | measured | baseline (same run) | ratio |".into());
    say("|---|---|---|---|".into());

    type RowFn<'a> = Box<dyn FnOnce() -> Result<Vec<String>> + 'a>;
    let table: Vec<(&str, RowFn)> = vec![
        ("profile", Box::new(|| profile_row(reps))),
        ("mc", Box::new(|| ntk_mc_rows(quick, threads))),
        ("gram", Box::new(|| gram_row(quick, threads))),
        ("mlp", Box::new(|| mlp_row(quick, threads, &python))),
        ("cnn", Box::new(|| cnn_row(quick, threads, &python))),
        ("lm", Box::new(|| lm_row(quick, threads, &python))),
        ("scaling", Box::new(|| scaling_row(threads, &python))),
    ];
    for (name, f) in table {
        if want(name) {
            f()?.into_iter().for_each(&mut say);
        }
    }
    // LLM prefill: our f32 forward on SmolLM2-135M Q4_1 (dequantised) vs llama.cpp's own
    // quantised kernels (llama-bench -p 512 -n 0) on the same file and thread count.
    if want("llm") {
        match llm_prefill(reps.min(3), threads, llama_cpp.as_deref()) {
            Ok(line) => say(line),
            Err(e) => say(format!(
                "| SmolLM2-135M prefill, 512 tokens | not run: {e} | – | – |"
            )),
        }
    }
    if want("nt") {
        let py = crate::bench_nt::default_python(nt.python);
        crate::bench_nt::rows(quick, &nt.inputs, py.as_deref(), nt.timeout)?
            .into_iter()
            .for_each(&mut say);
    }
    if let Some(path) = write {
        dlt_studies::output::write_atomic(&path, (lines.join("\n") + "\n").as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Row 1: the depth-10⁴ tanh profile beside the bare quadrature it performs.
fn profile_row(reps: usize) -> Result<Vec<String>> {
    let mut rows = vec![];
    // 1. Depth-10⁴ profile vs the bare quadrature it performs.
    let tanh = parse("tanh")?;
    let cfg = ProfileConfig {
        ensemble: Ensemble::new(tanh.clone(), 0.0, 1.0),
        k1: 1.0,
        v1: 0.0,
        depth: 10_000,
        lr: LearningRates::default(),
    };
    let t_prof = best_of(reps, || profile(&cfg).map(|p| p.len()));
    let rule = dlt_theory::gauss::hermite(192);
    let t_quad = best_of(reps, || {
        let mut acc = 0.0;
        for l in 0..10_000 {
            let sk = (1.0 / (1.0 + l as f64)).sqrt();
            for (&x, &w) in rule.x.iter().zip(&rule.w) {
                let (s, d) = tanh.f_d1(sk * x);
                acc += w * (s * s + d * d);
            }
        }
        acc
    });
    rows.push(format!(
        "| tanh profile, depth 10⁴ (K, χ, V, Θ, A, B, D, F) | {:.1} ms | bare 192-node quadrature × 10⁴: {:.1} ms | {:.2} |",
        t_prof * 1e3,
        t_quad * 1e3,
        t_prof / t_quad
    ));

    Ok(rows)
}

/// Rows 2: the full-NTK Monte Carlo beside f64 GEMM at the same size and thread count.
fn ntk_mc_rows(quick: bool, threads: usize) -> Result<Vec<String>> {
    let mut rows = vec![];
    let tanh = parse("tanh")?;
    // 2. Full-NTK Monte Carlo vs GEMM at the same size and thread count.
    for n in [64usize, 128] {
        let depth = 8;
        let networks = if quick { 400 } else { 2000 } * 64 / n;
        let c = McConfig {
            ensemble: Ensemble::new(tanh.clone(), 0.0, 1.0),
            k1: 1.0,
            width: n,
            depth,
            networks,
            ntk: true,
            lr: LearningRates::default(),
            first_layer: Init::Gaussian,
            seed: 1,
            batches: 16,
            threads,
        };
        let t = best_of(2, || mc::run(&c, &|_| {}).map(|r| r.len()));
        let flops = networks as f64 * (depth - 1) as f64 * 4.0 * (n * n * n) as f64;
        let mc_rate = flops / t / 1e9;
        let gemm = gemm_rate(n, threads, if quick { 0.5 } else { 1.5 });
        rows.push(format!(
            "| full-NTK MC, tanh, n = {n}, L = {depth}: {:.0} networks/s | {:.2} GFLOP/s | f64 GEMM {n}×{n}, {threads} threads: {:.2} GFLOP/s | {:.0} % |",
            networks as f64 / t,
            mc_rate,
            gemm,
            100.0 * mc_rate / gemm
        ));
    }

    Ok(rows)
}

/// Row 3: the Gram sampler beside drawing its normals alone.
fn gram_row(quick: bool, threads: usize) -> Result<Vec<String>> {
    let mut rows = vec![];
    let tanh = parse("tanh")?;
    // 3. Gram sampler throughput.
    let n = 256;
    let depth = 50;
    let networks = if quick { 2000 } else { 10_000 };
    let c = McConfig {
        ensemble: Ensemble::new(tanh, 0.0, 1.0),
        k1: 1.0,
        width: n,
        depth,
        networks,
        ntk: false,
        lr: LearningRates::default(),
        first_layer: Init::Gaussian,
        seed: 1,
        batches: 16,
        threads,
    };
    let t = best_of(2, || mc::run(&c, &|_| {}).map(|r| r.len()));
    let per = (networks * n * depth) as f64 / t;
    // Baseline: drawing the same number of standard normals alone (the sampler's floor).
    let t_norm = best_of(2, || {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let mut acc = 0.0;
        for _ in 0..(networks * n * depth / threads) {
            acc += rng.sample::<f64, _>(rand_distr::StandardNormal);
        }
        acc
    });
    rows.push(format!(
        "| Gram sampler, tanh, n = {n}, L = {depth}: {:.1} M neuron-layers/s | {:.2} s for {networks} networks | drawing the normals alone (per thread share): {:.2} s | {:.2} |",
        per / 1e6,
        t,
        t_norm,
        t / t_norm
    ));
    Ok(rows)
}

/// Row 4: MLP training throughput beside PyTorch (or numpy), same run.
fn mlp_row(quick: bool, threads: usize, python: &str) -> Result<Vec<String>> {
    let mut rows = vec![];
    // 4. MLP training throughput vs PyTorch (or numpy) on this machine, same run.
    let steps = if quick { 30 } else { 100 };
    let ours = candle_mlp_rate(steps, true)?;
    let autograd = candle_mlp_rate(steps / 3, false)?;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_mlp.py");
    let base = std::process::Command::new(python)
        .arg(&script)
        .arg(threads.to_string())
        .arg(steps.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    match base {
        Some(v) => {
            let rate = v["samples_per_s"].as_f64().unwrap_or(f64::NAN);
            rows.push(format!(
                "| MLP 784-512-512-10 tanh, SGD, batch 128, {threads} threads (dlt-nn trainer: faer step; candle autograd {autograd:.0} samples/s) | {ours:.0} samples/s | {}: {rate:.0} samples/s | {:.2}× |",
                v["framework"].as_str().unwrap_or("?"),
                ours / rate
            ));
        }
        None => rows.push(format!("| MLP 784-512-512-10 tanh, SGD, batch 128 | {ours:.0} samples/s | baseline not run ({python} {} failed) | – |", script.display())),
    }
    Ok(rows)
}

/// Row 4b: the CNN kernel's loss gradient (forward + backward, f64, as the hessian and jacobian
/// studies use it) beside PyTorch (or numpy's im2col + GEMM), same run.
fn cnn_row(quick: bool, threads: usize, python: &str) -> Result<Vec<String>> {
    use dlt_nn::cnn::Cnn;
    use dlt_nn::mlp::Batch;
    use rand::{Rng, SeedableRng};
    let (channels, hidden) = ([4usize, 8usize], 32usize);
    let steps = if quick { 10 } else { 40 };
    let model = Cnn::lenet(channels, &[hidden], 10, dlt_nn::model::ActKind::Relu)?;
    let theta = model.init(0);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
    let batch = 128;
    let x: Vec<f64> = (0..4 * batch * 784).map(|_| rng.random::<f64>()).collect();
    let y: Vec<u32> = (0..4 * batch).map(|_| rng.random_range(0..10)).collect();
    let step = |i: usize| -> Result<()> {
        let k = i % 4;
        let pt = model.at(
            &theta,
            Batch::labels(
                &x[k * batch * 784..(k + 1) * batch * 784],
                &y[k * batch..(k + 1) * batch],
            ),
        )?;
        std::hint::black_box(pt.grad());
        Ok(())
    };
    for i in 0..3 {
        step(i)?;
    }
    let t = Instant::now();
    for i in 0..steps {
        step(i)?;
    }
    let ours = (steps * batch) as f64 / t.elapsed().as_secs_f64();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_cnn.py");
    let base = std::process::Command::new(python)
        .arg(&script)
        .args([threads, steps, channels[0], channels[1], hidden].map(|v| v.to_string()))
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let what = format!(
        "CNN loss gradient ({}, P = {}), f64, batch 128, {threads} threads (dlt-nn CNN kernel: im2col + faer GEMM)",
        model.describe(),
        model.num_params()
    );
    Ok(vec![match base {
        Some(v) => {
            let rate = v["samples_per_s"].as_f64().unwrap_or(f64::NAN);
            format!(
                "| {what} | {ours:.0} samples/s | {}: {rate:.0} samples/s | {:.2}× |",
                v["framework"].as_str().unwrap_or("?"),
                ours / rate
            )
        }
        None => format!(
            "| {what} | {ours:.0} samples/s | baseline not run ({python} {} failed) | – |",
            script.display()
        ),
    }])
}

/// Row 5: the collapse study's character transformer, training tokens/s beside PyTorch.
fn lm_row(quick: bool, threads: usize, python: &str) -> Result<Vec<String>> {
    let mut rows = vec![];
    // 5. Character-level transformer training throughput (the collapse study's LM, quick size).
    {
        use dlt_nn::gpt_kernel::GptKernel;
        use dlt_nn::lm::LmConfig;
        use rand::SeedableRng;
        let cfg = LmConfig {
            vocab: 72,
            ctx: 64,
            d_model: 64,
            n_layer: 2,
            n_head: 4,
            batch: 32,
            lr: 3e-3,
            epochs: 1.0,
        };
        let steps = if quick { 20 } else { 60 };
        let tokens: Vec<u32> = (0..200_000u32).map(|i| (i * 7919 + i / 13) % 72).collect();
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0);
        // epochs = steps·batch·ctx / tokens, so that `train` runs exactly `steps` steps.
        let mut timed = GptKernel::init(
            LmConfig {
                epochs: (steps * 32 * 64) as f64 / tokens.len() as f64,
                ..cfg
            },
            0,
        )?;
        let t = Instant::now();
        let n = timed.train(&tokens, &mut rng, &mut |_, _| {})?;
        let ours = (n * 32 * 64) as f64 / t.elapsed().as_secs_f64();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_lm.py");
        let base = std::process::Command::new(python)
            .arg(&script)
            .args([
                threads.to_string(),
                steps.to_string(),
                "72".into(),
                "64".into(),
                "64".into(),
                "2".into(),
                "4".into(),
                "32".into(),
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
        match base {
            Some(v) => {
                let rate = v["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
                rows.push(format!(
                    "| char transformer (2 layers, d = 64, ctx 64, batch 32), AdamW training, {threads} threads (dlt-nn gpt_kernel step) | {ours:.0} tokens/s | {}: {rate:.0} tokens/s | {:.2}× |",
                    v["framework"].as_str().unwrap_or("?"),
                    ours / rate
                ));
            }
            None => rows.push(format!("| char transformer training (dlt-nn gpt_kernel step) | {ours:.0} tokens/s | PyTorch not available to {python} (install torch and pass --python) | – |")),
        }
    }

    Ok(rows)
}

/// Row 6: one scaling-law simulation beside numpy.
fn scaling_row(threads: usize, python: &str) -> Result<Vec<String>> {
    let mut rows = vec![];
    // 6. Scaling-law simulation, one seed at N = P = 4000 (M = 2000, γ = 1e-3), vs numpy.
    let model = dlt_theory::scaling::ScalingModel::new(1.0, 2000);
    let t = Instant::now();
    let sim = dlt_theory::scaling::simulate(
        &model,
        4000,
        4000,
        1e-3,
        dlt_theory::scaling::Features::Linear,
        1,
        0,
        0,
    )?;
    let ours = t.elapsed().as_secs_f64();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_scaling.py");
    // numpy may live in another interpreter than torch: try --python, then python3.
    let base = [python, "python3"].iter().find_map(|py| {
        std::process::Command::new(py)
            .arg(&script)
            .env("OMP_NUM_THREADS", threads.to_string())
            .env("OPENBLAS_NUM_THREADS", threads.to_string())
            .env_remove("OPENBLAS_CORETYPE")
            .env_remove("OPENBLAS_L2_SIZE")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
    });
    match base {
        Some(v) => {
            let secs = v["seconds"].as_f64().unwrap_or(f64::NAN);
            rows.push(format!(
                "| scaling simulate, N = P = 4000, M = 2000, one seed (faer; loss {:.3e}) | {ours:.2} s | {}: {secs:.2} s (loss {:.3e}) | {:.2}× |",
                sim.loss,
                v["framework"].as_str().unwrap_or("?"),
                v["loss"].as_f64().unwrap_or(f64::NAN),
                secs / ours
            ));
        }
        None => rows.push(format!("| scaling simulate, N = P = 4000, one seed | {ours:.2} s | numpy baseline not run | – |")),
    }
    Ok(rows)
}

/// Prefill tokens/s of our forward (512 tokens, SmolLM2-135M) and of llama.cpp's llama-bench.
fn llm_prefill(reps: usize, threads: usize, llama_cpp: Option<&std::path::Path>) -> Result<String> {
    use dlt_nn::data::fetch::{locate, Dataset};
    let gguf = locate(Dataset::Smollm2, None, true)?.0;
    let ck = dlt_llm::load(&gguf)?;
    let ids: Vec<u32> = (0..512u32).map(|i| (i * 7919 + 13) % 40_000).collect();
    let ids = candle_core::Tensor::new(ids.as_slice(), &candle_core::Device::Cpu)?.unsqueeze(0)?;
    let blocks = ck.model.all_blocks();
    let secs = best_of(reps.max(1), || {
        ck.model
            .logits(&ids, &blocks, false)
            .map(|t| t.dims().len())
    });
    let ours = 512.0 / secs;
    let Some(bin) = llama_cpp.map(|p| p.join("llama-bench")) else {
        return Ok(format!(
            "| SmolLM2-135M Q4_1 prefill, 512 tokens (f32 dequantised) | {ours:.0} tokens/s | llama.cpp not given (--llama-cpp DIR with llama-bench) | – |"
        ));
    };
    let out = std::process::Command::new(&bin)
        .args([
            "-m",
            gguf.to_str().unwrap_or(""),
            "-p",
            "512",
            "-n",
            "0",
            "-t",
            &threads.to_string(),
            "-r",
            "3",
            "-o",
            "json",
        ])
        .output()
        .map_err(|e| anyhow::anyhow!("{}: {e}", bin.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{} printed no JSON ({e})", bin.display()))?;
    let theirs = v[0]["avg_ts"].as_f64().unwrap_or(f64::NAN);
    Ok(format!(
        "| SmolLM2-135M Q4_1 prefill, 512 tokens, {threads} threads (ours: f32 dequantised) | {ours:.0} tokens/s | llama.cpp llama-bench (build {}): {theirs:.0} tokens/s | {:.2}× |",
        v[0]["build_number"].as_i64().map_or("?".to_string(), |b| b.to_string()),
        ours / theirs
    ))
}
