//! `dlt_llm::load` on an arbitrary `.gguf` file: `Ok` or an error, never a panic or an abort.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::env::temp_dir().join(format!("dlt-fuzz-{}.gguf", std::process::id()));
    std::fs::write(&p, data).unwrap();
    let _ = dlt_llm::load(&p);
});
