//! `dlt_nn::data::idx::read` on an arbitrary file (plain or gzip IDX), as 1 and 3 dimensions.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::env::temp_dir().join(format!("dlt-fuzz-{}.idx", std::process::id()));
    std::fs::write(&p, data).unwrap();
    let _ = dlt_nn::data::idx::read(&p, 1);
    let _ = dlt_nn::data::idx::read(&p, 3);
});
