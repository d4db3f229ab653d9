//! `dlt_llm::load` on a Hugging Face folder built from the input: the bytes up to the first two
//! NUL bytes are `config.json` and `tokenizer.json`, the rest is `model.safetensors`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = std::env::temp_dir().join(format!("dlt-fuzz-hf-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let mut parts = data.splitn(3, |&b| b == 0);
    let config = parts.next().unwrap_or_default();
    let tokenizer = parts.next().unwrap_or_default();
    let weights = parts.next().unwrap_or_default();
    std::fs::write(d.join("config.json"), config).unwrap();
    std::fs::write(d.join("tokenizer.json"), tokenizer).unwrap();
    std::fs::write(d.join("model.safetensors"), weights).unwrap();
    let _ = dlt_llm::load(&d);
});
