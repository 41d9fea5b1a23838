//! The models built into the binary, so that it runs from anywhere: faceres, BlazeFace and the
//! default head (about 14 MB). Inception-v3 (44 MB, an optional backbone) is not built in.
//!
//! On a run that uses them, they are written once into the user's data folder
//! (`<data root>/builtin`, see [`gc_core::context::Context::builtin_models_dir`]) and loaded from
//! there like any other model file, so every error and every list names a real file. A file that
//! is already there with the same bytes is left alone; one that differs (an older version, a
//! damaged copy) is replaced atomically. See docs/DESIGN.md, "Where the models come from".

use std::path::Path;

use anyhow::{Context as _, Result};
use gc_engine::weights::{BLAZEFACE, FACERES, sha256_hex};

/// One model file built into the binary.
struct Builtin {
    /// File name in the models folder.
    name: &'static str,
    /// Its bytes.
    bytes: &'static [u8],
}

/// The built-in files.
const FILES: [Builtin; 3] = [
    Builtin { name: FACERES.file_name, bytes: include_bytes!("../models/faceres_deep.f32.safetensors") },
    Builtin { name: BLAZEFACE.file_name, bytes: include_bytes!("../models/blazeface.safetensors") },
    Builtin { name: "default.safetensors", bytes: include_bytes!("../models/default.safetensors") },
];

/// Writes the built-in models into `dir` where they are missing or differ; returns how many it wrote.
pub fn install(dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {} for the built-in models: make the folder writable, or set {} (or --models) \
             to a folder that holds them",
            dir.display(),
            gc_engine::weights::MODELS_ENV
        )
    })?;
    let mut written = 0;
    for f in &FILES {
        let path = dir.join(f.name);
        if std::fs::read(&path).is_ok_and(|old| old == f.bytes) {
            continue;
        }
        gc_core::durable::write_atomic(&path, f.bytes, "builtin").with_context(|| {
            format!("cannot write the built-in model {}: check free space and permissions", path.display())
        })?;
        tracing::info!(path = %path.display(), "wrote a built-in model");
        written += 1;
    }
    Ok(written)
}

/// The `--version` text: the version, then each built-in model with its sha256.
pub fn version_text() -> String {
    let mut text = format!("{}\nbuilt-in models (sha256):", env!("CARGO_PKG_VERSION"));
    for f in &FILES {
        text.push_str(&format!("\n  {}  {}", f.name, sha256_hex(f.bytes)));
    }
    text.push_str("\nnot built in: inception_v3.safetensors (optional backbone; see models/README.md)");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_weights_are_the_checked_ones() {
        assert_eq!(sha256_hex(FILES[0].bytes), FACERES.sha256);
        assert_eq!(sha256_hex(FILES[1].bytes), BLAZEFACE.sha256);
    }

    #[test]
    fn install_writes_missing_and_changed_files_and_leaves_equal_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(install(dir.path()).unwrap(), 3);
        assert_eq!(install(dir.path()).unwrap(), 0, "a second run writes nothing");
        std::fs::write(dir.path().join("blazeface.safetensors"), b"damaged").unwrap();
        assert_eq!(install(dir.path()).unwrap(), 1, "a damaged copy is replaced");
        assert_eq!(std::fs::read(dir.path().join("blazeface.safetensors")).unwrap(), FILES[1].bytes);
    }

    #[test]
    fn the_version_names_each_built_in_model_with_its_hash() {
        let text = version_text();
        for f in &FILES {
            assert!(text.contains(f.name), "{text}");
        }
        assert!(text.contains(FACERES.sha256) && text.contains(BLAZEFACE.sha256), "{text}");
    }
}
