//! `gender-classifier export --onnx`: the subcommand writes a whole ONNX model, and refuses what it
//! cannot export without leaving a file. (The numbers of the exported graph are checked against
//! Candle with tract in crates/core/tests/onnx_export.rs.)

mod common;

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gender-classifier"));
    c.env("GENDER_CLASSIFIER_MODELS", common::root().join("models"));
    c
}

#[test]
fn export_writes_an_onnx_model_and_describes_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nested/model.onnx");
    let o = bin().args(["export", "--onnx"]).arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
    assert!(err.contains("224") && err.contains("RGB"), "the input contract is printed: {err}");
    let bytes = std::fs::read(&out).unwrap();
    // The backbone's float32 weights are in it (12.8 MB without faceres' unused age head), not a stub.
    assert!(bytes.len() > 12_000_000, "{} bytes", bytes.len());
    // ModelProto field 1 (ir_version) is the first varint field: tag 0x08.
    assert_eq!(bytes[0], 0x08);
    let names = ["image", "probs", "female", "male"];
    for n in names {
        assert!(bytes.windows(n.len()).any(|w| w == n.as_bytes()), "{n} missing from the graph");
    }
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 1, "no temp file left");
}

#[test]
fn export_of_a_missing_model_fails_with_its_path_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.onnx");
    let missing = tmp.path().join("nope.safetensors");
    let o = bin().args(["export", "--onnx"]).arg(&out).arg("--model").arg(&missing).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!out.exists());
    let o = bin().arg("export").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "--onnx is required");
}
