//! The collapse study's generation checkpoint (`OUT/checkpoints/*.ckpt`) resumed by
//! `run_generations_checkpointed` with the 2-D Gaussian model (3 generations, 20 real points,
//! seed 4, fingerprint `fuzz`): the first input byte picks the policy (mod 3), the rest is the
//! file. A checkpoint that resumes runs the generations it has left.
#![no_main]
use dlt_studies::collapse::generations::{
    run_generations_checkpointed, Checkpointing, GaussianModel, Policy,
};
use faer::Mat;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

fuzz_target!(|data: &[u8]| {
    let Some((&first, file)) = data.split_first() else {
        return;
    };
    let c = Checkpointing {
        path: std::env::temp_dir().join(format!("dlt-fuzz-{}.ckpt", std::process::id())),
        fingerprint: "fuzz".into(),
        resume: true,
    };
    std::fs::write(&c.path, file).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let real = GaussianModel::draw(&[0.0, 1.0], &Mat::identity(2, 2), 20, &mut rng).unwrap();
    let policy = Policy::ALL[first as usize % 3];
    let mut m = GaussianModel::standard(2);
    let _ = run_generations_checkpointed(&mut m, &real, 3, policy, 4, Some(&c), &mut |_| {});
});
