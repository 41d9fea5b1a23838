//! The bad-input corpus: over 40 hostile files, names and folders, made here, through `classify`,
//! `faces`, `eval`, `train` and `audit`. No run may panic or hang; each bad file is skipped with a
//! message that names it and says what to do, and the good ones (odd but valid) are classified.

mod common;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::{ImageFormat, Rgb, RgbImage};

/// What the corpus expects of one file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Odd but valid: it is classified.
    Read,
    /// Not an image it can use: skipped with a message naming it.
    Refused,
}

struct Case {
    name: OsString,
    expect: Expect,
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).unwrap();
    out
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let crc = common::crc32(&c[4..]);
    c.extend_from_slice(&crc.to_be_bytes());
    c
}

/// A PNG whose header claims `w`x`h` pixels, with no pixel data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

/// Deterministic noise (a fixed LCG; the corpus is the same every run).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::root().join("tests/fixtures").join(name)).unwrap()
}

#[cfg(unix)]
fn non_utf8(prefix: &str, ext: &str) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(b"\xff\xfe");
    bytes.extend_from_slice(ext.as_bytes());
    OsString::from_vec(bytes)
}

/// Writes the corpus into `dir/male` and `dir/female` (bad files spread over both) and returns it.
fn make_corpus(dir: &Path) -> Vec<Case> {
    let samples = common::root().join("assets/samples");
    let face = |name: &str| std::fs::read(samples.join(name)).unwrap();
    let grace = image::load_from_memory(&face("grace-hopper.jpg")).unwrap().to_rgb8();
    let small = image::imageops::thumbnail(&grace, 160, 200);
    let jpeg = encode(&small, ImageFormat::Jpeg);
    let png = encode(&small, ImageFormat::Png);
    let mut files: Vec<(OsString, Vec<u8>, Expect)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, e: Expect| files.push((name.into(), bytes, e));
    use Expect::*;

    // Good photos, so that every subcommand has work; trailing bytes make each copy unique.
    for (i, (name, bytes)) in [
        ("obama.jpg", face("obama.jpg")),
        ("biden.jpg", face("biden.jpg")),
        ("cameraman.png", face("cameraman.png")),
        ("grace.jpg", face("grace-hopper.jpg")),
        ("eileen.png", face("astronaut-eileen-collins.png")),
    ]
    .into_iter()
    .enumerate()
    {
        add(name, bytes.clone(), Read);
        let mut copy = bytes;
        copy.extend_from_slice(&[i as u8; 3]);
        add(&format!("copy-{name}"), copy, Read);
    }
    // Broken or lying files.
    add("empty.jpg", Vec::new(), Refused);
    add("truncated-no-eoi.jpg", jpeg[..jpeg.len() / 3].to_vec(), Refused);
    let mut cut = jpeg[..jpeg.len() / 3].to_vec();
    cut.extend_from_slice(&[0xFF, 0xD9]);
    // Cut, then closed with an end marker: the decoder gives the rows that are there (as image
    // viewers show them), and the photo is classified from those.
    add("truncated-with-eoi.jpg", cut, Read);
    add("soi-only.jpg", vec![0xFF, 0xD8], Refused);
    add("random.jpg", noise(4096, 1), Refused);
    add("random.png", noise(4096, 2), Refused);
    add("random.webp", noise(4096, 3), Refused);
    add("random.tiff", noise(4096, 4), Refused);
    add("random.bmp", noise(4096, 5), Refused);
    add("random.gif", noise(4096, 6), Refused);
    add("text.jpg", b"this is not a picture\n".to_vec(), Refused);
    add("html.png", b"<!doctype html><title>404 Not Found</title>".to_vec(), Refused);
    add("lying-header-40000x40000.png", png_header_only(40_000, 40_000), Refused);
    add("zero-size.png", png_header_only(0, 0), Refused);
    add("truncated.png", png[..png.len() / 2].to_vec(), Refused);
    let mut bad_crc = png.clone();
    let last = bad_crc.len() - 20;
    bad_crc[last] ^= 0xFF;
    add("bad-crc.png", bad_crc, Refused);
    let bmp = encode(&small, ImageFormat::Bmp);
    add("truncated.bmp", bmp[..bmp.len() / 4].to_vec(), Refused);
    let webp = encode(&small, ImageFormat::WebP);
    add("truncated.webp", webp[..webp.len() / 3].to_vec(), Refused);
    add("png-named.jpg", png.clone(), Read);
    add("jpeg-named.png", jpeg.clone(), Read);
    add("heic-unsupported.jpg", [b"\0\0\0\x18ftypheic".as_slice(), &noise(512, 7)].concat(), Refused);
    // Odd but valid images.
    add("1x1.png", encode(&RgbImage::from_pixel(1, 1, Rgb([200, 10, 10])), ImageFormat::Png), Read);
    add("1x1.jpg", encode(&RgbImage::from_pixel(1, 1, Rgb([10, 200, 10])), ImageFormat::Jpeg), Read);
    add("1x4000.png", encode(&RgbImage::from_pixel(1, 4000, Rgb([9, 9, 9])), ImageFormat::Png), Read);
    let rgb16 = image::DynamicImage::ImageRgb8(small.clone()).into_rgb16();
    let mut p16 = Vec::new();
    rgb16.write_to(&mut std::io::Cursor::new(&mut p16), ImageFormat::Png).unwrap();
    add("16-bit.png", p16, Read);
    let rgba = image::DynamicImage::ImageRgb8(small.clone()).into_rgba8();
    let mut pa = Vec::new();
    rgba.write_to(&mut std::io::Cursor::new(&mut pa), ImageFormat::Png).unwrap();
    add("alpha.png", pa, Read);
    let gray = image::DynamicImage::ImageRgb8(small.clone()).into_luma8();
    let mut pg = Vec::new();
    gray.write_to(&mut std::io::Cursor::new(&mut pg), ImageFormat::Jpeg).unwrap();
    add("gray.jpg", pg, Read);
    add("cmyk.jpg", fixture("cmyk.jpg"), Read);
    add("progressive.jpg", fixture("progressive.jpg"), Read);
    add("gray16-lzw.tif", fixture("gray16-lzw.tif"), Read);
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        for shade in [40u8, 220] {
            let frame = image::RgbaImage::from_pixel(32, 24, image::Rgba([shade, shade, 90, 255]));
            enc.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    add("animated.gif", gif, Read);
    for o in 1..=8 {
        add(&format!("exif-orientation-{o}.jpg"), common::with_exif_orientation(&jpeg, o), Read);
    }
    // Names a shell or a CSV reader trips on.
    add("comma, and \"quotes\".jpg", jpeg.clone(), Read);
    add("new\nline.jpg", jpeg.clone(), Read);
    add("UPPER.JPG", jpeg.clone(), Read);

    let mut cases = Vec::new();
    for (i, (name, bytes, expect)) in files.into_iter().enumerate() {
        let class = if i % 2 == 0 { "male" } else { "female" };
        std::fs::create_dir_all(dir.join(class)).unwrap();
        std::fs::write(dir.join(class).join(&name), bytes).unwrap();
        cases.push(Case { name, expect });
    }
    #[cfg(unix)]
    {
        let bad = non_utf8("not-utf8-", ".jpg");
        std::fs::write(dir.join("male").join(&bad), &jpeg).unwrap();
        cases.push(Case { name: bad, expect: Expect::Read });
        // Links: a loop back to the dataset and to its class folder, a dangling link, a link to a photo.
        std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
        std::os::unix::fs::symlink("..", dir.join("female/loop")).unwrap();
        std::os::unix::fs::symlink("no-such-file.jpg", dir.join("male/dangling.jpg")).unwrap();
        std::os::unix::fs::symlink("obama.jpg", dir.join("male/link-to-obama.jpg")).unwrap();
        // A folder named like a photo, and a FIFO that would block any reader forever.
        std::fs::create_dir(dir.join("female/folder.jpg")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("male/fifo.jpg").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    }
    // An empty extra folder and one with no photos: neither may become a class.
    std::fs::create_dir(dir.join("empty-class")).unwrap();
    std::fs::create_dir(dir.join("notes")).unwrap();
    std::fs::write(dir.join("notes/readme.txt"), b"notes").unwrap();
    cases
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with a deadline; a run past it is killed and fails the test as a hang.
fn run(args: &[&std::ffi::OsStr], cache: &Path, deadline: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gender-classifier"))
        .args(args)
        .env("GENDER_CLASSIFIER_CACHE", cache)
        .env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out_pipe.read_to_end(&mut v).unwrap();
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        err_pipe.read_to_end(&mut v).unwrap();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} hung: still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
    }
}

fn assert_no_panic(what: &str, r: &Run) {
    assert!(matches!(r.code, Some(0) | Some(1)), "{what}: exit code {:?}\n{}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{what} panicked:\n{}", r.stderr);
}

/// Each refused file is named on stderr in a line that says what to do.
fn assert_refusals_named(what: &str, r: &Run, cases: &[Case]) {
    for c in cases.iter().filter(|c| c.expect == Expect::Refused) {
        let name = c.name.to_string_lossy();
        let text = format!("{}\n{}", r.stderr, r.stdout).replace("[unreadable] ", "skipped ");
        let line = text.split("skipped ").find(|l| l.contains(name.as_ref()));
        let Some(line) = line else { panic!("{what}: no message names {name:?}:\n{text}") };
        let advice = ["remove it", "re-save it", "downscale it", "copy the photo again"];
        assert!(advice.iter().any(|a| line.contains(a)), "{what}: {name:?} gets no advice: {line}");
    }
}

#[test]
fn every_subcommand_survives_the_bad_input_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("corpus");
    let cases = make_corpus(&data);
    assert!(cases.len() >= 40, "the corpus holds {} files", cases.len());
    let n_read = cases.iter().filter(|c| c.expect == Expect::Read).count();
    let cache = tmp.path().join("cache");
    let deadline = Duration::from_secs(300);
    let d = data.as_os_str();
    let os = |s: &'static str| std::ffi::OsStr::new(s);

    // classify --json: each readable photo once (loops and the link to a photo add none), each
    // refused one named, the non-UTF-8 name carried as bytes.
    let r = run(&[os("classify"), os("--json"), d], &cache, deadline);
    assert_no_panic("classify", &r);
    assert_refusals_named("classify", &r, &cases);
    assert!(r.stderr.contains("symbolic link loop"), "{}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("classify prints valid JSON");
    let images = json["images"].as_array().unwrap();
    let refused: Vec<String> =
        cases.iter().filter(|c| c.expect == Expect::Refused).map(|c| c.name.to_string_lossy().into_owned()).collect();
    let read_anyway: Vec<&str> = images
        .iter()
        .filter_map(|i| i["path"].as_str())
        .filter(|p| refused.iter().any(|r| p.ends_with(&format!("/{r}"))))
        .collect();
    assert!(read_anyway.is_empty(), "classified, though broken: {read_anyway:?}");
    assert_eq!(images.len(), n_read, "each readable photo is classified once");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = images.iter().find(|i| i.get("path_bytes").is_some()).expect("a record with path_bytes");
        let bytes: Vec<u8> = bad["path_bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
        assert!(std::path::Path::new(std::ffi::OsStr::from_bytes(&bytes)).exists(), "path_bytes finds the file");
    }

    // faces: a record per file, each refused file with its error.
    let r = run(&[os("faces"), d], &cache, deadline);
    assert_no_panic("faces", &r);
    assert_refusals_named("faces", &r, &cases);
    let records: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("faces prints valid JSON");
    let errors = records.iter().filter(|r| r.get("error").is_some()).count();
    assert_eq!(records.len() - errors, n_read, "{}", r.stderr);

    // eval, train and audit read the folder as a dataset: two classes, whatever else lies there.
    let r = run(&[os("eval"), os("--json"), d], &cache, deadline);
    assert_no_panic("eval", &r);
    assert_refusals_named("eval", &r, &cases);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("eval prints valid JSON");
    assert_eq!(report["metrics"]["count"].as_u64().map(|n| n as usize), Some(n_read + 1), "{}", r.stdout);

    let model = tmp.path().join("model.safetensors");
    let r = run(
        &[os("train"), d, os("--epochs"), os("3"), os("--out"), model.as_os_str(), os("--validation-pct"), os("20")],
        &cache,
        deadline,
    );
    assert_no_panic("train", &r);
    assert_eq!(r.code, Some(0), "train on the corpus: {}", r.stderr);
    assert_refusals_named("train", &r, &cases);
    let m = gc_core::model_file::Model::load(&model, &candle_core::Device::Cpu).expect("the trained model loads");
    assert_eq!(m.meta.classes, vec!["female", "male"], "empty and photo-less folders are not classes");

    let r = run(&[os("audit"), os("--folds"), os("2"), d], &cache, deadline);
    assert_no_panic("audit", &r);
    assert_refusals_named("audit", &r, &cases);
}

#[test]
fn given_paths_that_cannot_be_read_fail_with_advice_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let deadline = Duration::from_secs(120);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for sub in ["classify", "faces"] {
        let r = run(&[sub.as_ref(), empty.as_os_str()], &cache, deadline);
        assert_eq!(r.code, Some(1), "{sub} on an empty folder: {}", r.stderr);
        assert!(r.stderr.contains("no image files found"), "{}", r.stderr);
        let r = run(&[sub.as_ref(), tmp.path().join("missing.jpg").as_os_str()], &cache, deadline);
        assert_eq!(r.code, Some(1), "{sub} on a missing file: {}", r.stderr);
        assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
        // Every file unreadable: a failure, not a success with nothing in it.
        let bad = tmp.path().join(format!("{sub}-bad.jpg"));
        std::fs::write(&bad, b"not a picture").unwrap();
        let r = run(&[sub.as_ref(), bad.as_os_str()], &cache, deadline);
        assert_eq!(r.code, Some(1), "{sub} with every file bad: {}", r.stderr);
        assert!(r.stderr.contains(&format!("{sub}-bad.jpg")), "{}", r.stderr);
    }
    #[cfg(unix)]
    {
        let fifo = tmp.path().join("pipe.jpg");
        let c = std::ffi::CString::new(fifo.clone().into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let r = run(&["classify".as_ref(), fifo.as_os_str()], &cache, deadline);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    }
    let _: PathBuf = cache;
}

#[cfg(unix)]
#[test]
fn training_a_folder_whose_path_is_not_utf8_over_an_old_model_writes_one_whole_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = tmp.path().join(non_utf8("data-", ""));
    common::synthetic_dataset(&data, &["female", "male"], 4);
    let model = tmp.path().join("m.safetensors");
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let r = run(&[os("zero-shot"), os("--out"), model.as_os_str()], &cache, Duration::from_secs(120));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let args = [os("train"), data.as_os_str(), os("--epochs"), os("2"), os("--out"), model.as_os_str()];
    let r = run(&args, &cache, Duration::from_secs(300));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let m = gc_core::model_file::Model::load(&model, &candle_core::Device::Cpu).expect("the new model loads");
    assert_eq!(m.meta.dataset.expect("trained on a dataset").root, data, "the folder's name survives byte for byte");
    assert!(m.meta.training.is_some(), "the new model replaced the zero-shot one whole");
}
