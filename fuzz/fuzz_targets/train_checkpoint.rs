//! `Trainer::load_checkpoint` (`dlt train --resume`) on an arbitrary `checkpoint.safetensors`,
//! into a tiny MLP [3, 4, 2] trained by Adam (keys `param.*`, `opt.m.*`, `opt.v.*`,
//! `meta.step`).
#![no_main]
use candle_core::{DType, Device};
use dlt_nn::model::{ActKind, Init, Mlp};
use dlt_nn::train::{Optimizer, TrainConfig, Trainer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::env::temp_dir().join(format!("dlt-fuzz-{}.safetensors", std::process::id()));
    std::fs::write(&p, data).unwrap();
    let init = Init::Gaussian { cb: 0.1, cw: 1.0 };
    let model = Mlp::new(&[3, 4, 2], ActKind::Tanh, &init, 1, DType::F32, &Device::Cpu).unwrap();
    let cfg = TrainConfig {
        optimizer: Optimizer::ADAM,
        ..Default::default()
    };
    let mut trainer = Trainer::new(&model, cfg, Device::Cpu).unwrap();
    let _ = trainer.load_checkpoint(&p);
});
