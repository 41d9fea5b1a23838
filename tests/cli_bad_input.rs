//! The CLI on bad input: clear one-line errors, bad files skipped, nothing lost, Ctrl-C resumable.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gender-classifier"))
        .args(args)
        .env("GENDER_CLASSIFIER_CACHE", cache)
        .env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .output()
        .expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn empty_folder_single_class_and_missing_path_fail_with_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = cli(&["train", empty.to_str().unwrap()], &cache);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no class folders"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "one-line cause: {}", stderr(&o));

    let single = tmp.path().join("single");
    common::synthetic_dataset(&single, &["male"], 3);
    let o = cli(&["train", single.to_str().unwrap()], &cache);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at least two class folders"), "{}", stderr(&o));

    let o = cli(&["classify", tmp.path().join("nope.jpg").to_str().unwrap()], &cache);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn bad_files_in_a_folder_are_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    common::synthetic(1, 80, 60).save(dir.join("good.png")).unwrap();
    std::fs::write(dir.join("text.jpg"), b"this is not a picture").unwrap();
    std::fs::write(dir.join("empty.jpg"), b"").unwrap();
    let mut jpeg = Vec::new();
    common::synthetic(2, 300, 200).write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(dir.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    // A PNG header claiming 20000x20000 pixels (a decompression bomb): refused before decoding.
    let mut bomb = Vec::new();
    bomb.extend_from_slice(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR");
    bomb.extend_from_slice(&20000u32.to_be_bytes());
    bomb.extend_from_slice(&20000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = common::crc32(&bomb[12..]);
    bomb.extend_from_slice(&crc.to_be_bytes());
    // A tiny IDAT and IEND so the header parses as a complete PNG structure.
    let idat = [0u8, 0, 0, 4, b'I', b'D', b'A', b'T', 0x78, 0x9c, 0x03, 0x00];
    bomb.extend_from_slice(&idat);
    bomb.extend_from_slice(&common::crc32(&idat[4..]).to_be_bytes());
    bomb.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    std::fs::write(dir.join("bomb.png"), &bomb).unwrap();
    std::os::unix::fs::symlink(dir.join("gone.jpg"), dir.join("dangling.jpg")).unwrap();

    let before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    let o = cli(&["classify", dir.to_str().unwrap(), "--csv"], &tmp.path().join("cache"));
    let err = stderr(&o);
    assert!(o.status.success(), "one good image makes the run succeed: {err}");
    // Exactly one row, the good file's, and it parses: every column of the header, probabilities
    // that sum to 1.
    let mut rows = csv::Reader::from_reader(o.stdout.as_slice());
    let header = rows.headers().unwrap().clone();
    assert_eq!(header.len(), 11, "{header:?}");
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("a row that parses")).collect();
    let paths: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(paths, [dir.join("good.png").to_str().unwrap()], "one row, for the good file only");
    let row = &rows[0];
    assert_eq!(row.len(), header.len(), "{row:?}");
    let p: f64 = (8..10).map(|i| row[i].parse::<f64>().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-4, "probabilities sum to 1: {row:?}");
    assert!(["female", "male"].contains(&&row[7]), "{row:?}");
    for (name, why) in [
        ("text.jpg", "not a readable image"),
        ("empty.jpg", "empty file"),
        ("truncated.jpg", "truncated"),
        ("bomb.png", "megapixel limit"),
        ("dangling.jpg", "cannot read"),
    ] {
        let line = err.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} not reported: {err}"));
        assert!(line.contains(why), "{name}: {line}");
    }
    let after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(before.len(), after.len(), "no file was touched");
}

#[test]
fn a_model_for_another_backbone_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    let ctx = gc_core::context::Context::cpu_with_cache(tmp.path().join("cache"));
    let mut m = gc_core::train::run::zero_shot_model(&ctx, true).unwrap();
    m.meta.preprocess.backbone = gc_engine::BackboneKind::InceptionV3;
    m.meta.backbone_sha256 = gc_engine::weights::INCEPTION_V3.sha256.into();
    m.save(&model).unwrap();
    let sample = common::root().join("assets/samples/obama.jpg");
    let o = cli(&["classify", sample.to_str().unwrap(), "--model", model.to_str().unwrap()], &tmp.path().join("cache"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not fit its backbone inception-v3"), "{}", stderr(&o));
}

/// Runs the binary with the fault point `point` set to interrupt it (SIGINT through its own Ctrl-C
/// handler) on its `n`-th call: `n-1` calls pass, then the process signals itself and waits until
/// the handler has set the cancel flag (see `interrupt_point!` in `src/cli/mod.rs`). No sleep, no race.
fn cli_interrupted_at(point: &str, n: usize, args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gender-classifier"))
        .args(args)
        .env("GENDER_CLASSIFIER_CACHE", cache)
        .env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .env("FAILPOINTS", format!("{point}={}*off->return(sigint)", n - 1))
        .output()
        .expect("binary runs")
}

#[test]
fn ctrl_c_during_extraction_stops_and_the_next_run_resumes_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic_dataset(&data, &["female", "male"], 20);
    let cache = tmp.path().join("cache");
    let model = tmp.path().join("m.safetensors");
    // No validation split: the guard then scores no other model, so the cache holds these photos only.
    let train =
        ["train", data.to_str().unwrap(), "--no-face-crop", "--extract-batch", "8", "--validation-pct", "0", "--out"];
    let train: Vec<&str> = train.into_iter().chain([model.to_str().unwrap()]).collect();
    // Progress is reported before the first chunk and after each chunk of 8: the third report comes
    // after 16 photos, and Ctrl-C there stops the run before the third chunk is computed.
    let out = cli_interrupted_at("cli::progress", 3, &train, &cache);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(walk_count(&cache), 16, "the cache holds the two chunks finished before Ctrl-C");
    assert!(!model.exists(), "no model from an interrupted run");

    let mut rerun = vec!["-v"];
    rerun.extend_from_slice(&train);
    let o = cli(&rerun, &cache);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    let line = log.lines().find(|l| l.contains("features ready")).unwrap_or_else(|| panic!("no summary: {log}"));
    assert!(line.contains("from_cache=16") && line.contains("computed=24"), "resumed from the 16 cached: {line}");
    assert_eq!(walk_count(&cache), 40);
    assert!(model.exists());
}

#[test]
fn ctrl_c_during_classify_exits_130_with_valid_json_of_the_photos_done() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = common::root().join("assets/samples");
    // After the third of the six photos.
    let out = cli_interrupted_at("cli::classified", 3, &["classify", "--json", samples.to_str().unwrap()], tmp.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted after 3 of 6 photos"), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON after Ctrl-C");
    let done: Vec<&str> = doc["images"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    let first3: Vec<String> = ["astronaut-eileen-collins.png", "biden.jpg", "cameraman.png"]
        .map(|f| samples.join(f).display().to_string())
        .into();
    assert_eq!(done, first3, "exactly the photos classified before Ctrl-C");
    assert_eq!(doc["classes"], serde_json::json!(["female", "male"]));
}

fn walk_count(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| {
            if e.path().is_dir() {
                walk_count(&e.path())
            } else {
                usize::from(e.path().extension().is_some_and(|x| x == "bin"))
            }
        })
        .sum()
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_run_quietly() {
    use std::io::{BufRead, Read};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..6 {
        common::synthetic(i + 1, 80, 60).save(dir.join(format!("p{i}.png"))).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_gender-classifier"))
        .args(["classify", "--csv", "--no-face-crop"])
        .arg(&dir)
        .env("GENDER_CLASSIFIER_CACHE", tmp.path().join("cache"))
        .env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -1`: read the header, then close the pipe.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    out.read_line(&mut header).unwrap();
    assert!(header.starts_with("path,"), "{header}");
    drop(out);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(status.success() || status.signal() == Some(libc::SIGPIPE), "{status:?}: {err}");
}
