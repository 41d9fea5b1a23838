//! The command-line conventions of a good Unix citizen (issue 20, item 4 and 8), on the bundled
//! sample photos (`assets/samples/`, see its `PROVENANCE.md`): CSV written by a real CSV writer and
//! read back by a real parser, `--jsonl` streamed a line per photo, `--files-from` a list or stdin,
//! clap's exit code 2 with the choices for a bad value, exit code 130 with valid partial output
//! after a real SIGINT, and the exit codes in `--help`.

mod common;

use common::cli::{bin, ok, run, samples, stderr};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

/// The class names of the shipped model, read from the model file itself.
fn model_classes() -> Vec<String> {
    let m =
        gc_core::model_file::Model::load(&common::root().join("models/default.safetensors"), &candle_core::Device::Cpu)
            .expect("the shipped model loads");
    m.meta.classes.clone()
}

/// Parses `--jsonl` output: every line one JSON object, or the test fails naming the line.
fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

/// A name with a comma, both quote kinds and a newline: what a hand-written CSV line gets wrong.
const ODD: &str = "o'brien, \"jr\"\nsecond line.jpg";

#[test]
fn csv_of_classify_quotes_a_name_with_a_comma_quotes_and_a_newline_and_reads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(samples().join("obama.jpg"), dir.join(ODD)).unwrap();
    std::fs::copy(samples().join("obama.jpg"), dir.join("obama.jpg")).unwrap();
    std::fs::copy(samples().join("biden.jpg"), dir.join("plain, comma.jpg")).unwrap();
    let out = ok(&run(&["classify", "--csv", dir.to_str().unwrap()], &tmp.path().join("cache")));

    let mut r = csv::Reader::from_reader(out.as_bytes());
    let header = r.headers().unwrap().clone();
    assert_eq!(&header[0], "path");
    let classes = model_classes();
    let mut rows: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap_or_else(|e| panic!("a row that does not parse ({e}): {out}"));
        assert_eq!(rec.len(), header.len(), "{rec:?}");
        assert!(classes.iter().any(|c| c == &rec[7]), "predicted is one of {classes:?}: {rec:?}");
        // Face 0 of each photo: the path column must name the file exactly, byte for byte.
        if &rec[1] == "0" {
            let prev = rows.insert(PathBuf::from(&rec[0]), rec.iter().skip(1).map(String::from).collect());
            assert!(prev.is_none(), "one face 0 per photo: {rec:?}");
        }
    }
    let expected: BTreeSet<PathBuf> = [ODD, "obama.jpg", "plain, comma.jpg"].iter().map(|n| dir.join(n)).collect();
    assert_eq!(rows.keys().cloned().collect::<BTreeSet<_>>(), expected, "{out}");
    for p in rows.keys() {
        assert!(p.is_file(), "the path read back opens the file: {}", p.display());
    }
    // The odd name holds a copy of obama.jpg: its row reads back column for column the same.
    assert_eq!(rows[&dir.join(ODD)], rows[&dir.join("obama.jpg")], "{out}");
}

#[test]
fn csv_of_eval_and_audit_reads_back_with_the_odd_name_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    let mut labels = BTreeMap::new();
    for (file, class) in [
        ("astronaut-eileen-collins.png", "female"),
        ("grace-hopper.jpg", "female"),
        ("biden.jpg", "male"),
        ("obama.jpg", "male"),
    ] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        std::fs::copy(samples().join(file), data.join(class).join(file)).unwrap();
        labels.insert(data.join(class).join(file), class);
    }
    // An exact copy under the odd name: the audit reports it with obama.jpg as exact duplicates.
    std::fs::copy(samples().join("obama.jpg"), data.join("male").join(ODD)).unwrap();
    labels.insert(data.join("male").join(ODD), "male");

    let out = ok(&run(&["eval", "--csv", data.to_str().unwrap()], &cache));
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..6], ["path", "split", "label", "predicted", "correct", "faces"], "{out}");
    let classes = model_classes();
    assert_eq!(header[6..], classes.iter().map(|c| format!("p_{c}")).collect::<Vec<_>>());
    let mut seen = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap_or_else(|e| panic!("a row that does not parse ({e}): {out}"));
        assert_eq!(rec.len(), header.len(), "{rec:?}");
        assert!(classes.iter().any(|c| c == &rec[3]), "{rec:?}");
        assert_eq!(&rec[4], if rec[2] == rec[3] { "true" } else { "false" }, "{rec:?}");
        seen.insert(PathBuf::from(&rec[0]), rec[2].to_string());
    }
    let expected: BTreeMap<PathBuf, String> = labels.iter().map(|(p, c)| (p.clone(), c.to_string())).collect();
    assert_eq!(seen, expected, "a row per photo, with its folder as the label: {out}");

    let out = ok(&run(&["audit", "--csv", "--folds", "2", data.to_str().unwrap()], &cache));
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["finding", "kind", "score", "path", "class", "suggested_class", "reason", "sha256"]);
    let mut groups: BTreeMap<(String, String), BTreeSet<PathBuf>> = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap_or_else(|e| panic!("a row that does not parse ({e}): {out}"));
        assert!(labels.contains_key(Path::new(&rec[3])), "a path of the dataset, whole: {rec:?}");
        groups.entry((rec[0].to_string(), rec[1].to_string())).or_default().insert(PathBuf::from(&rec[3]));
    }
    let duplicates: Vec<_> = groups.iter().filter(|((_, kind), _)| kind == "exact-duplicate").collect();
    let pair = BTreeSet::from([data.join("male").join(ODD), data.join("male").join("obama.jpg")]);
    assert_eq!(duplicates.len(), 1, "{out}");
    assert_eq!(duplicates[0].1, &pair, "{out}");
}

#[test]
fn jsonl_prints_one_object_per_photo_with_the_class_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&run(&["classify", "--jsonl", samples().to_str().unwrap()], tmp.path()));
    let lines = json_lines(&out);
    let photos = gc_core::dataset::collect_images(&[samples()]).unwrap();
    assert_eq!(lines.len(), photos.len(), "one line per photo: {out}");
    let paths: Vec<PathBuf> = lines.iter().map(|l| PathBuf::from(l["path"].as_str().unwrap())).collect();
    assert_eq!(paths, photos, "the paths as found, in order");
    let classes = model_classes();
    for l in &lines {
        assert!(l.get("error").is_none() && l.get("path_bytes").is_none(), "{l}");
        let predicted = l["predicted"].as_str().unwrap_or_else(|| panic!("no class name: {l}"));
        assert!(classes.iter().any(|c| c == predicted), "{predicted} is not among {classes:?}");
        let faces = l["faces"].as_array().unwrap();
        assert!(!faces.is_empty(), "{l}");
        for f in faces {
            let probs = f["probs"].as_object().unwrap();
            assert_eq!(probs.keys().collect::<BTreeSet<_>>(), classes.iter().collect(), "{l}");
            let best = probs.iter().max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap())).unwrap();
            assert_eq!(f["predicted"], best.0.as_str(), "a face's class is its likeliest: {l}");
            assert!(f["box"].as_array().is_some_and(|b| b.len() == 4), "each sample shows a face: {l}");
        }
        assert_eq!(l["predicted"], faces[0]["predicted"], "the photo's class is its first face's: {l}");
    }
    // The shipped model's answers on two unambiguous samples.
    let by_name = |n: &str| &lines[photos.iter().position(|p| p.ends_with(n)).unwrap()];
    assert_eq!(by_name("obama.jpg")["predicted"], "male");
    assert_eq!(by_name("astronaut-eileen-collins.png")["predicted"], "female");
}

#[test]
fn files_from_reads_a_list_file_and_stdin_and_reports_a_missing_entry_as_a_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("gone.jpg");
    let picked = [samples().join("obama.jpg"), samples().join("biden.jpg"), samples().join("cameraman.png")];
    let mut list = String::new();
    for p in &picked {
        list.push_str(&format!("{}\n\n", p.display()));
    }
    list.push_str(&format!("{}\n", missing.display()));
    let list_file = tmp.path().join("list.txt");
    std::fs::write(&list_file, &list).unwrap();

    let check = |out: &str, how: &str| {
        let lines = json_lines(out);
        let paths: Vec<PathBuf> = lines.iter().map(|l| PathBuf::from(l["path"].as_str().unwrap())).collect();
        let mut expected = picked.to_vec();
        expected.push(missing.clone());
        assert_eq!(paths, expected, "{how}: the listed files, in the list's order: {out}");
        for l in &lines[..3] {
            assert!(l["predicted"].is_string(), "{how}: {l}");
        }
        let err = lines[3]["error"].as_str().unwrap_or_else(|| panic!("{how}: no error for the missing file: {out}"));
        assert!(lines[3].get("predicted").is_none() && !err.is_empty(), "{how}: {}", lines[3]);
    };
    let o = run(&["classify", "--jsonl", "--files-from", list_file.to_str().unwrap()], tmp.path());
    check(&ok(&o), "list file");
    assert!(stderr(&o).contains(&format!("skipped {}", missing.display())), "{}", stderr(&o));

    let mut child = bin(tmp.path())
        .args(["classify", "--jsonl", "--files-from", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    check(&ok(&o), "stdin");

    // A list that does not exist is a failure that names it, not a usage error.
    let o = run(&["classify", "--files-from", tmp.path().join("nolist").to_str().unwrap()], tmp.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot read the list of photos") && stderr(&o).contains("nolist"), "{}", stderr(&o));
}

#[test]
fn a_value_not_among_the_choices_exits_2_with_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--device", "tpu", "classify", "x.jpg"], "[possible values: auto, cpu, cuda, metal]"),
        (&["app", "--device", "tpu"], "[possible values: auto, cpu, cuda, metal]"),
        (&["train", "--backbone", "x", "d"], "[possible values: faceres, inception-v3]"),
        (&["audit", "--backbone", "x", "d"], "[possible values: faceres, inception-v3]"),
        (&["eval", "--split", "x", "d"], "[possible values: all, train, validation, test]"),
    ];
    for (args, choices) in cases {
        let o = run(args, tmp.path());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("invalid value") && err.contains(choices), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_lists_the_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["classify", "--help"], &["bench", "-h"]] {
        let help = ok(&run(args, tmp.path()));
        let tail = help.split_once("Exit codes:").unwrap_or_else(|| panic!("{args:?}: no exit codes in {help}")).1;
        for code in ["0    success", "1    failure", "2    usage error", "130  cancelled by Ctrl-C"] {
            assert!(tail.contains(code), "{args:?}: {code:?} missing from {tail}");
        }
    }
}

/// A folder of `n` photos: copies of one small JPEG made from a sample. (Not hard links: the
/// folder walk reads a file with several names once.)
fn many_photos(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let img = image::open(samples().join("obama.jpg")).unwrap().thumbnail(240, 240).to_rgb8();
    let bytes = common::jpeg_bytes(&img, 90);
    let all: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("p{i:04}.jpg"))).collect();
    for p in &all {
        std::fs::write(p, &bytes).unwrap();
    }
    all
}

#[test]
fn sigint_during_classify_jsonl_exits_130_and_every_line_printed_is_whole_json() {
    const N: usize = 400;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    let photos = many_photos(&dir, N);
    let mut child = bin(&tmp.path().join("cache"))
        .args(["classify", "--jsonl"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err_pipe.read_to_string(&mut s).unwrap();
        s
    });
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.ends_with('\n'), "a first whole line before the end of the run: {first:?}");
    // SAFETY: sending SIGINT to the child this test started and has not yet waited for.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "kill(SIGINT) failed");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let err = err_reader.join().unwrap();

    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let all = format!("{first}{rest}");
    assert!(all.ends_with('\n'), "the output ends with a whole line: {:?}", &all[all.len().saturating_sub(200)..]);
    let lines = json_lines(&all);
    assert!(!lines.is_empty() && lines.len() < N, "stopped early: {} lines of {N}", lines.len());
    let classes = model_classes();
    for (l, p) in lines.iter().zip(&photos) {
        assert_eq!(l["path"], p.to_str().unwrap(), "the photos done, in order");
        assert!(classes.iter().any(|c| l["predicted"] == c.as_str()), "{l}");
    }
    let said = format!("interrupted after {} of {N} photos", lines.len());
    assert!(err.contains(&said), "stderr says how far it got ({said}): {err}");
}
