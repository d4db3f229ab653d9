//! Real Fashion-MNIST, located or fetched with `apt-get download dataset-fashion-mnist` (the
//! cache keeps it for later runs): structure of the files, and a small MLP that must reach
//! 80 % test accuracy within two epochs (published MLP baselines reach 84–88 %).

use candle_core::{DType, Device};
use dlt_nn::data::{fashion_mnist, fetch};
use dlt_nn::model::build;
use dlt_nn::train::{Loss, Optimizer, TrainConfig, Trainer};

#[test]
fn fashion_mnist_loads_and_a_small_mlp_learns_it() {
    let data =
        fashion_mnist(None).expect("Fashion-MNIST (fetched with apt-get download if missing)");
    assert_eq!(
        (data.train.len(), data.test.len(), data.train.dim),
        (60_000, 10_000, 784)
    );
    for c in 0..10u32 {
        assert_eq!(
            data.train.y.iter().filter(|&&y| y == c).count(),
            6000,
            "class {c}"
        );
    }
    let mean = data.train.x.iter().map(|&v| v as f64).sum::<f64>() / data.train.x.len() as f64;
    assert!(
        (mean - 0.286).abs() < 0.01,
        "mean pixel {mean} (Fashion-MNIST's is 0.286)"
    );
    let dev = Device::Cpu;
    let model = build(
        "mlp:784-128-10:relu",
        "critical",
        None,
        None,
        0,
        DType::F32,
        &dev,
    )
    .unwrap();
    let cfg = TrainConfig {
        optimizer: Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        loss: Loss::CrossEntropy,
        lr: 1e-3,
        batch: 128,
        epochs: 2,
        seed: 0,
        ..Default::default()
    };
    let r = Trainer::new(&*model, cfg, dev)
        .unwrap()
        .run(&data, None, &|_| {})
        .unwrap();
    assert!(r.test_accuracy >= 0.80, "test accuracy {}", r.test_accuracy);
    assert!(r.train_loss < 0.5, "train loss {}", r.train_loss);
}

#[test]
fn located_copy_passes_its_checksums() {
    let (dir, _) = fetch::locate(fetch::Dataset::FashionMnist, None, true).unwrap();
    for (f, h) in fetch::FASHION_FILES {
        assert_eq!(fetch::sha256_file(&dir.join(f)).unwrap(), h, "{f}");
    }
    let err = fetch::locate(
        fetch::Dataset::FashionMnist,
        Some(std::path::Path::new("/nonexistent/fm")),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("/nonexistent/fm") && err.contains("dlt data fetch fashion-mnist"),
        "{err}"
    );
}
