//! Features of a whole dataset folder: every photo's cached (or freshly extracted) features with its
//! label and split, the files that failed, and near-duplicate groups kept within one split.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::error::Result;

use super::cache::{CachedFeatures, FeatureCache};
use super::extract::{Progress, extract};
use crate::dataset::Dataset;
use crate::dataset::split::{Split, SplitSpec};
use crate::pipeline::Pipeline;

/// Features of one dataset image.
#[derive(Debug, Clone)]
pub struct ItemFeatures {
    /// The file.
    pub path: PathBuf,
    /// Its class index.
    pub label: usize,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Its split.
    pub split: Split,
    /// Features and face info.
    pub value: CachedFeatures,
}

/// Features of a whole dataset, with the files that failed.
#[derive(Debug, Clone, Default)]
pub struct DatasetFeatures {
    /// Images that were read.
    pub items: Vec<ItemFeatures>,
    /// Files skipped, with the reason.
    pub failures: Vec<(PathBuf, String)>,
    /// Near-duplicate pairs `(i, j, cosine)` among `items`, at the audit's threshold; byte-identical
    /// copies are linked to the first of them only ([`crate::similarity::near_duplicate_pairs`]).
    pub near_duplicates: Vec<(usize, usize, f32)>,
}

/// Extracts (or reads from the cache) the features of every image of `ds`.
pub fn dataset_features(
    ds: &Dataset,
    pipeline: &Pipeline,
    cache: &FeatureCache,
    split: &SplitSpec,
    batch_size: usize,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<DatasetFeatures> {
    let files: Vec<PathBuf> = ds.items.iter().map(|i| i.path.clone()).collect();
    let mut last = Progress::default();
    let results = extract(
        pipeline,
        cache,
        &files,
        batch_size,
        &mut |p| {
            last = p.clone();
            on_progress(p)
        },
        cancel,
    )?;
    tracing::info!(
        total = last.total,
        computed = last.computed,
        from_cache = last.from_cache,
        failed = last.failed,
        secs = last.elapsed.as_secs_f64(),
        "features ready"
    );
    let mut out = DatasetFeatures::default();
    for (item, r) in ds.items.iter().zip(results) {
        match r {
            Ok(e) => out.items.push(ItemFeatures {
                path: item.path.clone(),
                label: item.label,
                split: split.assign(&e.sha256),
                sha256: e.sha256,
                value: e.value,
            }),
            Err(reason) => {
                tracing::warn!("skipping {}: {reason}", item.path.display());
                out.failures.push((item.path.clone(), reason.to_string()));
            }
        }
    }
    if let Some(threshold) = crate::similarity::near_duplicate_cosine(pipeline.spec.backbone) {
        out.near_duplicates = keep_near_duplicates_together(&mut out.items, split, threshold)?;
    }
    Ok(out)
}

/// Puts every near-duplicate group into the split of its representative (the member with the
/// smallest hash), so copies of one photo never sit on both sides of the train/test line.
/// Returns the near-duplicate pairs it found.
fn keep_near_duplicates_together(
    items: &mut [ItemFeatures],
    split: &SplitSpec,
    threshold: f32,
) -> Result<Vec<(usize, usize, f32)>> {
    let feats: Vec<&[f32]> = items.iter().map(|i| i.value.features.as_slice()).collect();
    let sha: Vec<String> = items.iter().map(|i| i.sha256.clone()).collect();
    let sha_refs: Vec<&str> = sha.iter().map(String::as_str).collect();
    let pairs = crate::similarity::near_duplicate_pairs(&feats, &sha_refs, threshold)?;
    let groups = crate::similarity::near_groups(items.len(), &pairs);
    let reps = crate::similarity::representatives(&sha_refs, &groups);
    let mut moved = 0;
    for (item, rep) in items.iter_mut().zip(reps) {
        let s = split.assign(&sha[rep]);
        moved += usize::from(s != item.split);
        item.split = s;
    }
    tracing::debug!(groups = groups.len(), moved, "near-duplicate groups kept in one split");
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_engine::weights::sha256_hex;

    fn item(i: u32, features: Vec<f32>, spec: &SplitSpec) -> ItemFeatures {
        let sha256 = sha256_hex(&i.to_le_bytes());
        ItemFeatures {
            path: PathBuf::from(format!("{i}.jpg")),
            label: 0,
            split: spec.assign(&sha256),
            sha256,
            value: CachedFeatures { features, n_faces: 1, crop: None, face_score: 0.9, image_size: (100, 100) },
        }
    }

    #[test]
    fn copies_of_one_photo_share_a_split_and_other_photos_keep_theirs() {
        let spec = SplitSpec::default();
        // Items 0..40 are distinct directions; each of 40..80 is a near copy of item (i - 40).
        let dir = |k: u32| (0..64).map(|d| if d == k as usize { 1.0 } else { 0.001 * (d as f32) }).collect::<Vec<_>>();
        let mut items: Vec<ItemFeatures> = (0..40).map(|i| item(i, dir(i), &spec)).collect();
        items.extend((40..80).map(|i| {
            let mut f = dir(i - 40);
            f[0] += 0.02;
            item(i, f, &spec)
        }));
        let before: Vec<Split> = items.iter().map(|i| i.split).collect();
        assert!((0..40).any(|i| before[i] != before[i + 40]), "the test needs copies that hashed apart");
        keep_near_duplicates_together(&mut items, &spec, crate::similarity::NEAR_DUPLICATE_COSINE).unwrap();
        for i in 0..40 {
            assert_eq!(items[i].split, items[i + 40].split, "copy {i} sits in another split");
            let rep = if items[i].sha256 < items[i + 40].sha256 { i } else { i + 40 };
            assert_eq!(items[i].split, before[rep], "the group takes its representative's split");
        }
    }
}
