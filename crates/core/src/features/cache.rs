//! On-disk cache of bottleneck features, keyed by (preprocessing spec id, sha256 of the file's bytes).
//!
//! Renaming or relabelling a file never recomputes it. Entries are written to a temp file and renamed,
//! and carry a checksum, so a partial or corrupt entry is detected and recomputed.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use sha2::{Digest, Sha256};

use crate::preprocess::PreprocessSpec;

const MAGIC: &[u8; 4] = b"GCF1";
const HEADER_LEN: usize = 4 + 5 * 4 + 5 * 4;
const CHECKSUM_LEN: usize = 8;

/// Cached result of running the pipeline on one file.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedFeatures {
    /// The feature vector of the face used for training (or of the whole image).
    pub features: Vec<f32>,
    /// How many faces the detector found (0 when cropping is off or none was found).
    pub n_faces: u32,
    /// The crop used, `[x1,y1,x2,y2]` in image pixels; `None` means the whole image.
    pub crop: Option<[f32; 4]>,
    /// Detector score of the face used (0 for the whole image).
    pub face_score: f32,
    /// Upright image size in pixels.
    pub image_size: (u32, u32),
}

/// The feature cache rooted at one folder.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    root: PathBuf,
}

impl FeatureCache {
    /// A cache stored under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the cache lives.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_path(&self, spec: &PreprocessSpec, sha: &str) -> PathBuf {
        self.root.join(spec.id()).join(&sha[..2.min(sha.len())]).join(format!("{sha}.bin"))
    }

    /// Reads an entry; `None` when absent, truncated, corrupt or of the wrong length.
    pub fn get(&self, spec: &PreprocessSpec, sha: &str) -> Option<CachedFeatures> {
        let path = self.entry_path(spec, sha);
        let bytes = std::fs::read(&path).ok()?;
        match decode(&bytes, spec.backbone.feature_dim()) {
            Some(f) => Some(f),
            None => {
                tracing::warn!(path = %path.display(), "corrupt feature cache entry; it will be recomputed");
                None
            }
        }
    }

    /// Writes an entry atomically (temp file + rename); on any error the temp file is removed.
    ///
    /// No fsync: a torn entry after a power cut fails its checksum and is recomputed. Fault points:
    /// `cache::write` (the temp file written, not renamed) and `cache::renamed`.
    pub fn put(&self, spec: &PreprocessSpec, sha: &str, value: &CachedFeatures) -> Result<()> {
        let path = self.entry_path(spec, sha);
        let dir = path.parent().expect("entry path has a parent");
        std::fs::create_dir_all(dir).io(|| format!("cannot create cache folder {}", dir.display()))?;
        let tmp = crate::durable::temp_path(&path);
        let written = (|| -> std::io::Result<()> {
            std::fs::write(&tmp, encode(value))?;
            crate::fault_point!("cache::write");
            std::fs::rename(&tmp, &path)?;
            crate::fault_point!("cache::renamed");
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.io(|| format!("cannot write cache entry {}", path.display()))
    }

    /// Entries that fail their checksum or length check (a torn or corrupt write), for tests and
    /// tools; temp files (hidden names) are not entries and are not listed.
    pub fn damaged_entries(&self) -> Vec<PathBuf> {
        let entries = walkdir::WalkDir::new(&self.root).into_iter().filter_map(|e| e.ok());
        entries
            .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "bin"))
            .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
            .filter(|e| {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                let dim = bytes.get(4..8).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
                decode(&bytes, dim).is_none()
            })
            .map(|e| e.into_path())
            .collect()
    }

    /// The file an entry is stored in (for tests and tools).
    pub fn path_of(&self, spec: &PreprocessSpec, sha: &str) -> PathBuf {
        self.entry_path(spec, sha)
    }
}

fn encode(v: &CachedFeatures) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + v.features.len() * 4 + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    let crop = v.crop.unwrap_or([0.0; 4]);
    for x in [v.features.len() as u32, v.n_faces, u32::from(v.crop.is_some()), v.image_size.0] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.extend_from_slice(&v.image_size.1.to_le_bytes());
    for x in crop.iter().chain(std::iter::once(&v.face_score)) {
        out.extend_from_slice(&x.to_le_bytes());
    }
    for x in &v.features {
        out.extend_from_slice(&x.to_le_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum[..CHECKSUM_LEN]);
    out
}

fn decode(bytes: &[u8], dim: usize) -> Option<CachedFeatures> {
    if bytes.len() != HEADER_LEN + dim * 4 + CHECKSUM_LEN || &bytes[..4] != MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::digest(body)[..CHECKSUM_LEN] != *sum {
        return None;
    }
    let u = |i: usize| u32::from_le_bytes(body[4 + 4 * i..8 + 4 * i].try_into().unwrap());
    let f = |o: usize| f32::from_le_bytes(body[o..o + 4].try_into().unwrap());
    if u(0) as usize != dim {
        return None;
    }
    let crop_at = 4 + 5 * 4;
    let crop = [f(crop_at), f(crop_at + 4), f(crop_at + 8), f(crop_at + 12)];
    let features = (0..dim).map(|i| f(HEADER_LEN + 4 * i)).collect();
    Some(CachedFeatures {
        features,
        n_faces: u(1),
        crop: (u(2) == 1).then_some(crop),
        face_score: f(crop_at + 16),
        image_size: (u(3), u(4)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_engine::BackboneKind;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::new(dir.path());
        let spec = PreprocessSpec::new(BackboneKind::Faceres, true);
        let v = CachedFeatures {
            features: (0..1024).map(|i| i as f32 * 0.5).collect(),
            n_faces: 2,
            crop: Some([1.0, 2.0, 3.0, 4.0]),
            face_score: 0.9,
            image_size: (640, 480),
        };
        let sha = "ab".repeat(32);
        assert!(cache.get(&spec, &sha).is_none());
        cache.put(&spec, &sha, &v).unwrap();
        assert_eq!(cache.get(&spec, &sha).unwrap(), v);
        // Another spec is another namespace.
        assert!(cache.get(&PreprocessSpec::new(BackboneKind::Faceres, false), &sha).is_none());
        // Flip a byte: detected.
        let path = cache.path_of(&spec, &sha);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(cache.damaged_entries().is_empty());
        bytes[100] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(cache.get(&spec, &sha).is_none());
        assert_eq!(cache.damaged_entries(), vec![path.clone()]);
        // Truncate: detected.
        std::fs::write(&path, &bytes[..50]).unwrap();
        assert!(cache.get(&spec, &sha).is_none());
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::new(dir.path());
        let spec = PreprocessSpec::new(BackboneKind::Faceres, true);
        let v =
            CachedFeatures { features: vec![0.0; 1024], n_faces: 0, crop: None, face_score: 0.0, image_size: (1, 1) };
        let sha = "cd".repeat(32);
        // A folder in the entry's place makes the rename fail after the temp file is written.
        std::fs::create_dir_all(cache.path_of(&spec, &sha)).unwrap();
        std::fs::write(cache.path_of(&spec, &sha).join("x"), b"x").unwrap();
        assert!(cache.put(&spec, &sha, &v).is_err());
        let shard = cache.path_of(&spec, &sha).parent().unwrap().to_path_buf();
        let names: Vec<_> = std::fs::read_dir(shard).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "only the blocking folder is left: {names:?}");
    }
}
