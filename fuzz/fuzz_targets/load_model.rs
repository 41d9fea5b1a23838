//! Any bytes given as a model file: a validated model or a clear error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("gc-fuzz-model-{}.safetensors", std::process::id()));
    std::fs::write(&path, data).expect("temp folder is writable");
    if let Err(e) = gc_core::model_file::Model::load(&path, &candle_core::Device::Cpu) {
        let text = gc_core::error::describe(&e);
        let stem = path.with_extension("");
        assert!(text.contains(&*stem.to_string_lossy()), "the error names the file: {text}");
    }
});
