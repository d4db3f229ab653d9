//! The substrate on small generated data: resume matches an uninterrupted run, divergence and
//! corrupt files are reported, the empirical NTK of candle MLPs matches both the theory engine
//! and its Monte Carlo.

use candle_core::{DType, Device, Tensor};
use dlt_nn::data::{idx, load_fashion_mnist, synthetic, TrainTest};
use dlt_nn::model::{ActKind, Init, Mlp, Model};
use dlt_nn::ntk::empirical_ntk;
use dlt_nn::train::{Loss, Optimizer, RunDir, TrainConfig, Trainer};
use dlt_nn::NnError;
use dlt_theory::{Ensemble, LearningRates, ProfileConfig};
use std::io::Write;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dlt-nn-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mixture() -> TrainTest {
    let all = synthetic::gaussian_mixture(600, 8, 3, 1.5, 11);
    TrainTest {
        train: all.select(&(0..500).collect::<Vec<_>>()),
        test: all.select(&(500..600).collect::<Vec<_>>()),
    }
}

fn params_of(m: &dyn Model) -> Vec<f32> {
    m.params()
        .iter()
        .flat_map(|p| {
            p.var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn resume_from_checkpoint_matches_uninterrupted_run() {
    let data = mixture();
    let dev = Device::Cpu;
    let init = Init::Gaussian { cb: 0.0, cw: 1.0 };
    // Both gradient paths (the MLP kernel and candle's autograd) restore the same store.
    for (opt, kernel) in [
        (Optimizer::Momentum { beta: 0.9 }, true),
        (Optimizer::ADAM, true),
        (Optimizer::ADAM, false),
    ] {
        let cfg = TrainConfig {
            optimizer: opt,
            lr: 0.01,
            batch: 64,
            epochs: 3,
            seed: 5,
            ..Default::default()
        };
        let full = Mlp::new(&[8, 16, 3], ActKind::Tanh, &init, 1, DType::F32, &dev).unwrap();
        let mut t = Trainer::new(&full, cfg.clone(), dev.clone()).unwrap();
        t.mlp_kernel = kernel;
        t.run(&data, None, &|_| {}).unwrap();

        let dir = tmpdir("resume");
        let half = Mlp::new(&[8, 16, 3], ActKind::Tanh, &init, 1, DType::F32, &dev).unwrap();
        let mut t1 = Trainer::new(
            &half,
            TrainConfig {
                max_steps: Some(10),
                ..cfg.clone()
            },
            dev.clone(),
        )
        .unwrap();
        t1.mlp_kernel = kernel;
        t1.run(&data, Some(&RunDir { dir: dir.clone() }), &|_| {})
            .unwrap();
        // A fresh model with different weights, restored from the checkpoint.
        let resumed = Mlp::new(&[8, 16, 3], ActKind::Tanh, &init, 99, DType::F32, &dev).unwrap();
        let mut t2 = Trainer::new(&resumed, cfg.clone(), dev.clone()).unwrap();
        t2.mlp_kernel = kernel;
        t2.load_checkpoint(&dir.join("checkpoint.safetensors"))
            .unwrap();
        assert_eq!(t2.step, 10);
        t2.run(&data, None, &|_| {}).unwrap();
        assert_eq!(t2.step, t.step);
        assert_eq!(
            params_of(&full),
            params_of(&resumed),
            "{opt:?} (kernel {kernel}): resumed run differs"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn training_reduces_loss_and_is_deterministic() {
    let data = mixture();
    let dev = Device::Cpu;
    let run = || {
        let m = Mlp::new(
            &[8, 32, 3],
            ActKind::Relu,
            &Init::Gaussian { cb: 0.0, cw: 2.0 },
            3,
            DType::F32,
            &dev,
        )
        .unwrap();
        let cfg = TrainConfig {
            optimizer: Optimizer::Sgd,
            loss: Loss::Mse,
            lr: 0.05,
            batch: 32,
            epochs: 5,
            seed: 1,
            ..Default::default()
        };
        let r = Trainer::new(&m, cfg, dev.clone())
            .unwrap()
            .run(&data, None, &|_| {})
            .unwrap();
        (r, params_of(&m))
    };
    let (a, pa) = run();
    let (_, pb) = run();
    assert_eq!(pa, pb, "same seed, same weights");
    assert!(
        a.metrics.last().unwrap().train_loss < 0.5 * a.metrics[0].train_loss,
        "{:?}",
        (a.metrics[0].train_loss, a.train_loss)
    );
    assert!(a.test_accuracy > 0.8, "{}", a.test_accuracy);
}

#[test]
fn lenet_trains_through_autograd_into_the_store() {
    // LeNet has no kernel: its gradient comes from candle's autograd and its update from the
    // trainer's store. Ten classes of 28×28 Gaussian blobs (separation 1.5) are learnable in
    // 60 Adam steps; a store that never reached the variables would leave the loss at ln 10.
    let all = synthetic::gaussian_mixture(400, 784, 10, 1.5, 2);
    let data = TrainTest {
        train: all.select(&(0..320).collect::<Vec<_>>()),
        test: all.select(&(320..400).collect::<Vec<_>>()),
    };
    let m = dlt_nn::model::LeNet::new(
        10,
        ActKind::Relu,
        &Init::Gaussian { cb: 0.0, cw: 2.0 },
        0,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let cfg = TrainConfig {
        optimizer: Optimizer::ADAM,
        lr: 1e-3,
        batch: 32,
        epochs: 6,
        ..Default::default()
    };
    let r = Trainer::new(&m, cfg, Device::Cpu)
        .unwrap()
        .run(&data, None, &|_| {})
        .unwrap();
    assert!(
        r.train_loss < 0.5 * 10f64.ln(),
        "train loss {} after {} steps",
        r.train_loss,
        r.steps
    );
}

#[test]
fn divergence_is_reported_with_its_step() {
    let data = TrainTest {
        train: synthetic::teacher_student(64, 4, 1, 0.0, 1),
        test: synthetic::teacher_student(16, 4, 1, 0.0, 2),
    };
    let dev = Device::Cpu;
    let m = Mlp::new(
        &[4, 16, 1],
        ActKind::Relu,
        &Init::Gaussian { cb: 0.0, cw: 2.0 },
        1,
        DType::F32,
        &dev,
    )
    .unwrap();
    let cfg = TrainConfig {
        optimizer: Optimizer::Gd,
        loss: Loss::Mse,
        lr: 1e6,
        epochs: 50,
        ..Default::default()
    };
    let err = Trainer::new(&m, cfg, dev)
        .unwrap()
        .run(&data, None, &|_| {})
        .unwrap_err();
    match &err {
        NnError::Diverged { step, .. } => assert!(*step < 50),
        e => panic!("expected divergence, got {e}"),
    }
    assert!(err.to_string().contains("step"), "{err}");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn corrupt_idx_files_get_clear_errors() {
    let write_set = |dir: &std::path::Path, n_img: usize, n_lab: usize| {
        let img = idx::encode(&[n_img, 28, 28], &vec![7u8; n_img * 784]);
        let lab = idx::encode(&[n_lab], &vec![3u8; n_lab]);
        for (name, bytes) in [
            ("train-images-idx3-ubyte.gz", &img),
            ("t10k-images-idx3-ubyte.gz", &img),
        ] {
            std::fs::write(dir.join(name), gz(bytes)).unwrap();
        }
        for (name, bytes) in [
            ("train-labels-idx1-ubyte.gz", &lab),
            ("t10k-labels-idx1-ubyte.gz", &lab),
        ] {
            std::fs::write(dir.join(name), gz(bytes)).unwrap();
        }
    };
    let dir = tmpdir("idx");
    write_set(&dir, 5, 5);
    let ok = load_fashion_mnist(&dir).unwrap();
    assert_eq!((ok.train.len(), ok.train.dim), (5, 784));
    // Count mismatch.
    write_set(&dir, 5, 4);
    let e = load_fashion_mnist(&dir).unwrap_err().to_string();
    assert!(
        e.contains("5 images but 4 labels") && e.contains("fetch"),
        "{e}"
    );
    // Truncated gzip.
    write_set(&dir, 5, 5);
    let p = dir.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_fashion_mnist(&dir).unwrap_err().to_string();
    assert!(e.contains("train-images") && e.contains("gzip"), "{e}");
    // Corrupt gzip payload.
    let mut bad = bytes.clone();
    for b in bad.iter_mut().skip(20).take(40) {
        *b ^= 0x5a;
    }
    std::fs::write(&p, &bad).unwrap();
    assert!(load_fashion_mnist(&dir)
        .unwrap_err()
        .to_string()
        .contains("train-images"));
    // Wrong magic (a label file where images are expected).
    std::fs::write(&p, gz(&idx::encode(&[5], &[1, 2, 3, 4, 5]))).unwrap();
    let e = load_fashion_mnist(&dir).unwrap_err().to_string();
    assert!(e.contains("dimensions") || e.contains("magic"), "{e}");
    // Truncated payload (uncompressed).
    std::fs::write(&p, &idx::encode(&[5, 28, 28], &vec![0u8; 5 * 784])[..1000]).unwrap();
    assert!(load_fashion_mnist(&dir)
        .unwrap_err()
        .to_string()
        .contains("truncated"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn empirical_ntk_matches_theory_and_monte_carlo() {
    // tanh at criticality, width 24, depth 3 (three weight layers), λ_b = λ_W = 1, one input with
    // |x|²/n₀ = 1 (K^(1) = 1). The mean of tr Ĥ/n_L over seeds estimates Θ^(L) at finite n;
    // the theory engine's Monte Carlo (exact forward equation, same n) estimates the same
    // quantity, so the two agree within their combined 3 SE; the 1/n recursion is leading order,
    // so it gets 3 SE plus an O(L/n) allowance (5 %).
    let (n, depth, seeds) = (24usize, 3usize, 300u64);
    let dev = Device::Cpu;
    let x = Tensor::ones((1, n), DType::F64, &dev).unwrap();
    let lr = LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: false,
    };
    let mut vals = vec![];
    for s in 0..seeds {
        let m = Mlp::new(
            &vec![n; depth + 1],
            ActKind::Tanh,
            &Init::Gaussian { cb: 0.0, cw: 1.0 },
            s,
            DType::F64,
            &dev,
        )
        .unwrap();
        let (_, h) = empirical_ntk(&m, &x, &lr).unwrap();
        vals.push((0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64);
    }
    let mean = vals.iter().sum::<f64>() / seeds as f64;
    let se = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
        / (seeds as f64 - 1.0)
        / seeds as f64)
        .sqrt();
    let ens = Ensemble::new(dlt_theory::activation::parse("tanh").unwrap(), 0.0, 1.0);
    // widths [n; depth+1] make `depth` weight layers: the output is z^(depth).
    let theory = dlt_theory::profile::profile(&ProfileConfig {
        ensemble: ens.clone(),
        k1: 1.0,
        v1: 0.0,
        depth,
        lr,
    })
    .unwrap();
    let th = theory.last().unwrap().theta;
    assert!(
        (mean - th).abs() <= 3.0 * se + 0.05 * th,
        "candle NTK {mean} ± {se} vs recursion {th}"
    );
    let mc = dlt_theory::mc::run(
        &dlt_theory::mc::McConfig {
            ensemble: ens,
            k1: 1.0,
            width: n,
            depth,
            networks: 4000,
            ntk: true,
            lr,
            first_layer: dlt_theory::Init::Gaussian,
            seed: 3,
            batches: 20,
            threads: 0,
        },
        &|_| {},
    )
    .unwrap();
    let m = mc.last().unwrap().get("theta").unwrap();
    let comb = (se * se + m.se * m.se).sqrt();
    assert!(
        (mean - m.value).abs() <= 3.0 * comb,
        "candle NTK {mean} ± {se} vs MC {} ± {}",
        m.value,
        m.se
    );
}

#[test]
fn kernel_tanh_is_accurate_to_float_precision() {
    // The rational tanh against f64 over the whole range (and its saturation): max error
    // ≤ 4 ulp of 1.0 (≈ 5e-7); the f32 libm tanh itself is within 1 ulp.
    let mut worst = 0.0f64;
    for k in -200_000..=200_000 {
        let x = k as f32 * 1e-4;
        let e = (dlt_nn::real::tanh_f32(x) as f64 - (x as f64).tanh()).abs();
        worst = worst.max(e);
    }
    for x in [-30.0f32, -9.0, 9.0, 30.0, 1e-8, -1e-8] {
        worst = worst.max((dlt_nn::real::tanh_f32(x) as f64 - (x as f64).tanh()).abs());
    }
    assert!(worst < 5e-7, "max |error| {worst:e}");
}

#[test]
fn mlp_kernel_trains_like_the_candle_path() {
    // Same init, same batches: the MLP kernel's step and candle's autograd step must give
    // the same parameters up to f32 rounding (relative 1e-4 after 6 steps), for every
    // optimizer, both losses, tanh and ReLU, with and without NTK learning-rate scaling.
    let data = mixture();
    let reg = synthetic::teacher_student(96, 12, 3, 0.1, 4);
    let cases: Vec<(&str, Optimizer, Loss, bool)> = vec![
        ("tanh", Optimizer::Sgd, Loss::CrossEntropy, false),
        ("tanh", Optimizer::Momentum { beta: 0.9 }, Loss::Mse, true),
        (
            "relu",
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            Loss::CrossEntropy,
            false,
        ),
        ("tanh", Optimizer::Sgd, Loss::Mse, false),
        (
            "relu",
            Optimizer::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            Loss::Mse,
            false,
        ),
    ];
    for (k, (act, opt, loss, ntk)) in cases.into_iter().enumerate() {
        let regression = k == 3;
        let train = if regression {
            reg.clone()
        } else {
            data.train.clone()
        };
        let widths = if regression {
            vec![12, 24, 16, 3]
        } else {
            vec![train.dim, 32, 16, train.classes]
        };
        let act = ActKind::parse(act).unwrap();
        let build = || {
            Mlp::new(
                &widths,
                act,
                &Init::Gaussian { cb: 0.0, cw: 1.0 },
                3,
                DType::F32,
                &Device::Cpu,
            )
            .unwrap()
        };
        let (a, b) = (build(), build());
        let cfg = TrainConfig {
            optimizer: opt,
            loss,
            lr: if ntk { 0.1 } else { 0.02 },
            batch: 32,
            ntk_lr: ntk.then(LearningRates::default),
            ..Default::default()
        };
        let mut fast = Trainer::new(&a, cfg.clone(), Device::Cpu).unwrap();
        let mut slow = Trainer::new(&b, cfg, Device::Cpu).unwrap();
        slow.mlp_kernel = false;
        for s in 0..6 {
            let idx: Vec<usize> = (s * 16..s * 16 + 32).map(|i| i % train.len()).collect();
            let lf = fast.step_on(&train, &idx).unwrap();
            let ls = slow.step_on(&train, &idx).unwrap();
            assert!(
                (lf - ls).abs() <= 1e-4 * ls.abs().max(1.0),
                "case {k} step {s}: loss {lf} vs {ls}"
            );
        }
        fast.publish().unwrap();
        slow.publish().unwrap();
        let (pa, pb) = (params_of(&a), params_of(&b));
        let scale = pb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = pa
            .iter()
            .zip(&pb)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "case {k}: max |Δθ| {diff} (scale {scale})"
        );
        // The parameters moved (the comparison is not vacuous).
        let init = params_of(&build());
        assert!(pa.iter().zip(&init).any(|(x, y)| (x - y).abs() > 1e-3));
    }
}
