//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

pub mod cli;

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The development dataset; panics (fails the test) with a clear message when absent.
pub fn web_faces() -> PathBuf {
    let p = root().join("../shared/datasets/web-faces");
    assert!(
        p.join("male").is_dir() && p.join("female").is_dir(),
        "development dataset missing: expected {} with male/ and female/ (see README.md)",
        p.display()
    );
    p
}

/// Sorted image files of one class folder.
pub fn class_files(dir: &Path, class: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(class)).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// A synthetic photo: a gradient with a coloured disc, different per `seed`.
pub fn synthetic(seed: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (cx, cy) = ((seed * 37 % w) as i64, (seed * 53 % h) as i64);
        let d = (x as i64 - cx).pow(2) + (y as i64 - cy).pow(2);
        if d < (w as i64 / 4).pow(2) {
            Rgb([(seed * 40 % 255) as u8, 200, (seed * 90 % 255) as u8])
        } else {
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, (seed % 255) as u8])
        }
    })
}

/// Writes a small synthetic dataset with `per_class` images in each of `classes`.
pub fn synthetic_dataset(dir: &Path, classes: &[&str], per_class: u32) {
    for (c, class) in classes.iter().enumerate() {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..per_class {
            synthetic(i * 7 + c as u32 * 1000 + 1, 64, 64)
                .save(dir.join(class).join(format!("{class}_{i}.png")))
                .unwrap();
        }
    }
}

/// A CPU context whose cache root is shared by the tests that read web-faces, so each photo is
/// extracted once per build.
pub fn shared_web_faces_ctx() -> gc_core::context::Context {
    gc_core::context::Context::cpu_with_cache(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-faces-cache"))
}

/// `n` photos per class of web-faces, spread over the whole folder (for `n` ≤ 250, the first `n`
/// of the same 250 picks in every test).
pub fn web_faces_sample(class: &str, n: usize) -> Vec<PathBuf> {
    let files = class_files(&web_faces(), class);
    let spread = n.clamp(250, files.len());
    (0..n.min(files.len())).map(|i| files[i * files.len() / spread].clone()).collect()
}

/// `n` web-faces photos per class copied under `dir/{female,male}`.
pub fn copy_web_faces_sample(dir: &Path, n: usize) {
    for class in ["female", "male"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for p in web_faces_sample(class, n) {
            std::fs::copy(&p, dir.join(class).join(p.file_name().unwrap())).unwrap();
        }
    }
}
/// A bundled sample photo (`assets/samples/`, see its PROVENANCE.md).
pub fn sample(name: &str) -> PathBuf {
    root().join("assets/samples").join(name)
}

/// The expected class of a single-person sample photo, from `assets/samples/labels.csv`.
pub fn sample_label(name: &str) -> String {
    let csv = std::fs::read_to_string(sample("labels.csv")).unwrap();
    csv.lines()
        .filter_map(|l| l.split_once(','))
        .find(|(file, _)| *file == name)
        .map(|(_, class)| class.trim().to_string())
        .unwrap_or_else(|| panic!("{name} is not in assets/samples/labels.csv"))
}

/// `img` as JPEG bytes at `quality` (deterministic: the same pixels give the same bytes).
pub fn jpeg_bytes(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(img).unwrap();
    out
}

/// The CRC-32 of PNG chunks (for hand-made, possibly lying, PNG files).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A JPEG with an EXIF APP1 segment holding only the orientation tag (1-8), inserted after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], [0xFF, 0xD8], "not a JPEG");
    // APP1 length 34 = 2 (length) + 6 ("Exif\0\0") + 8 (TIFF header) + 2 (count) + 12 (entry) + 4 (next IFD).
    let mut app1 = vec![0xFF, 0xE1, 0, 34];
    app1.extend_from_slice(b"Exif\0\0MM\0\x2A\0\0\0\x08\0\x01");
    app1.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    app1.extend_from_slice(&orientation.to_be_bytes());
    app1.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The most confident face BlazeFace finds in `img`, `[x1, y1, x2, y2]` in pixels; panics when none.
pub fn face_box(finder: &gc_core::face::FaceFinder, img: &RgbImage) -> [f32; 4] {
    let regions = finder.regions(img).unwrap();
    regions[0].detection.as_ref().expect("a face in the sample").bbox
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    inter / (area(a) + area(b) - inter).max(1e-6)
}

/// A photo of two people made from two licensed samples (see `assets/samples/PROVENANCE.md`):
/// the face of `obama.jpg` (Barack Obama, White House photo, public domain, from the
/// `face_recognition==1.3.0` sdist) on the left and of `astronaut-eileen-collins.png` (Eileen
/// Collins, NASA portrait, public domain, from the `scikit-image==0.25.2` wheel) on the right, each
/// cropped to a square of twice the face's size around it, scaled to 300 pixels and pasted on a
/// plain grey 760x420 canvas. (`grace-hopper.jpg` is a known miss of the shipped model, called male:
/// docs/PERFORMANCE.md.) Returns the canvas and, per pasted face (left first), the face box
/// BlazeFace finds in the sample mapped to where it was pasted, and the sample's label (`labels.csv`).
pub fn two_face_photo(finder: &gc_core::face::FaceFinder) -> (RgbImage, Vec<([f32; 4], String)>) {
    const SIDE: u32 = 300;
    let mut canvas = RgbImage::from_pixel(760, 420, Rgb([128, 128, 128]));
    let mut faces = Vec::new();
    for (name, at) in [("obama.jpg", (40u32, 60u32)), ("astronaut-eileen-collins.png", (420, 60))] {
        let img = gc_core::imaging::load_rgb(&sample(name)).unwrap();
        let b = face_box(finder, &img);
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let half = (b[2] - b[0]).max(b[3] - b[1]);
        let (x0, y0) = ((cx - half).max(0.0) as u32, (cy - half).max(0.0) as u32);
        let side = ((2.0 * half) as u32).min(img.width() - x0).min(img.height() - y0);
        let crop = image::imageops::crop_imm(&img, x0, y0, side, side).to_image();
        let scaled = image::imageops::resize(&crop, SIDE, SIDE, image::imageops::FilterType::Triangle);
        image::imageops::replace(&mut canvas, &scaled, at.0 as i64, at.1 as i64);
        let s = SIDE as f32 / side as f32;
        let map = |v: f32, from: u32, to: u32| to as f32 + (v - from as f32) * s;
        let pasted = [map(b[0], x0, at.0), map(b[1], y0, at.1), map(b[2], x0, at.0), map(b[3], y0, at.1)];
        faces.push((pasted, sample_label(name)));
    }
    (canvas, faces)
}

/// A small deterministic generator (xorshift), so generated test sets are the same on every machine.
pub struct Xs(pub u64);

impl Xs {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next() % n as u64) as u32
    }
}
