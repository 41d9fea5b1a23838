//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

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
