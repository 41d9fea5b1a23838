//! Similarity grouping: exact duplicates (same bytes) and near duplicates (re-encoded, resized or
//! slightly cropped copies, found by cosine similarity of the cached bottleneck features).

use std::collections::{BTreeMap, HashMap};

use crate::error::{Result, invalid};
use candle_core::{Device, Tensor};
use gc_engine::BackboneKind;

/// Cosine similarity at or above which two images count as copies of one photo.
///
/// Measured on web-faces (faceres features of face crops):
/// of the 14 pairs of different files at 0.94 or more, 12 are one photo re-encoded, resized or
/// re-cropped and 2 are neighbouring frames of one film scene; just below, at 0.93, different
/// photos of the same person begin (two portraits of one actor at 0.931).
pub const NEAR_DUPLICATE_COSINE: f32 = 0.94;

/// The cosine at and above which two images' features from `backbone` count as copies of one
/// photo, or `None` where that backbone's features cannot tell copies from different photos.
///
/// Inception-v3's features of faces are all alike: on web-faces, 318,658 pairs of different
/// photos reach 0.94 (raw) and the 14 real copies score from 0.68 to 0.98 after centring, so no
/// threshold separates them.
pub fn near_duplicate_cosine(backbone: BackboneKind) -> Option<f32> {
    match backbone {
        BackboneKind::Faceres => Some(NEAR_DUPLICATE_COSINE),
        BackboneKind::InceptionV3 => None,
    }
}

/// Vectors per side of one tile of the similarity matrix: memory stays at a few tiles (4 MiB
/// each for 1024-d features) however many vectors there are.
const TILE: usize = 1024;

/// Groups of indices whose keys are equal (only groups of two or more), in order of first member.
pub fn exact_groups(sha256: &[&str]) -> Vec<Vec<usize>> {
    let mut by_hash: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, h) in sha256.iter().enumerate() {
        by_hash.entry(h).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_hash.into_values().filter(|g| g.len() > 1).collect();
    groups.sort_by_key(|g| g[0]);
    groups
}

/// Union-find over indices.
struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, i: usize) -> usize {
        let mut r = i;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut i = i;
        while self.0[i] != r {
            let next = self.0[i];
            self.0[i] = r;
            i = next;
        }
        r
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// L2-normalised copy of each vector (zero vectors stay zero).
pub fn normalized<V: AsRef<[f32]>>(features: &[V]) -> Vec<Vec<f32>> {
    features
        .iter()
        .map(|v| {
            let mut v = v.as_ref().to_vec();
            normalize_in_place(&mut v);
            v
        })
        .collect()
}

/// Scales `v` to unit length (a zero vector stays zero).
fn normalize_in_place(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Every pair `(i, j, cosine)` with `i < j` and cosine ≥ `threshold`, in index order.
pub fn similar_pairs<V: AsRef<[f32]>>(features: &[V], threshold: f32) -> Result<Vec<(usize, usize, f32)>> {
    let n = features.len();
    let d = features.first().map_or(0, |v| v.as_ref().len());
    if n < 2 || d == 0 {
        return Ok(Vec::new());
    }
    if let Some(bad) = features.iter().find(|v| v.as_ref().len() != d) {
        invalid!(
            "feature vectors differ in length ({} and {d}): they come from different backbones",
            bad.as_ref().len()
        );
    }
    // The unit vectors of the tile starting at `start`, as a `[rows, d]` tensor.
    let unit_tile = |start: usize| -> Result<Tensor> {
        let rows = &features[start..(start + TILE).min(n)];
        let mut unit = Vec::with_capacity(rows.len() * d);
        for v in rows {
            let at = unit.len();
            unit.extend_from_slice(v.as_ref());
            normalize_in_place(&mut unit[at..]);
        }
        Ok(Tensor::from_vec(unit, (rows.len(), d), &Device::Cpu)?)
    };
    let mut pairs = Vec::new();
    for ti in (0..n).step_by(TILE) {
        let rows = unit_tile(ti)?;
        // Tiles left of the diagonal hold only pairs that earlier tiles have scored.
        for tj in (ti..n).step_by(TILE) {
            let cols = if tj == ti { rows.clone() } else { unit_tile(tj)? };
            let sims: Vec<Vec<f32>> = rows.matmul(&cols.t()?)?.to_vec2()?;
            for (r, row) in sims.iter().enumerate() {
                let i = ti + r;
                for (c, &s) in row.iter().enumerate() {
                    if tj + c > i && s >= threshold {
                        pairs.push((i, tj + c, s));
                    }
                }
            }
        }
    }
    pairs.sort_by_key(|&(i, j, _)| (i, j));
    Ok(pairs)
}

/// Near-duplicate pairs of `features` as [`similar_pairs`] finds them, searched once per set of copies.
///
/// Items with the same sha256 and the same features are byte-identical copies. The search runs on
/// the first of each set only, so copies cost nothing, and each later copy gets one pair
/// `(first, copy, 1.0)` instead of a pair with every other copy: the list grows with the number of
/// files, never with its square, and [`near_groups`] forms the same groups as from every pair.
pub fn near_duplicate_pairs<V: AsRef<[f32]>>(
    features: &[V],
    sha256: &[&str],
    threshold: f32,
) -> Result<Vec<(usize, usize, f32)>> {
    if sha256.len() != features.len() {
        invalid!("{} hashes for {} feature vectors: give one sha256 per vector", sha256.len(), features.len());
    }
    let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(features.len());
    let mut distinct = Vec::new();
    let mut copies = Vec::new();
    for (i, (v, &h)) in features.iter().zip(sha256).enumerate() {
        match first_of.get(h) {
            Some(&f) if features[f].as_ref() == v.as_ref() => copies.push((f, i)),
            Some(_) => distinct.push(i),
            None => {
                first_of.insert(h, i);
                distinct.push(i);
            }
        }
    }
    let vectors: Vec<&[f32]> = distinct.iter().map(|&i| features[i].as_ref()).collect();
    let mut pairs: Vec<(usize, usize, f32)> =
        similar_pairs(&vectors, threshold)?.into_iter().map(|(a, b, s)| (distinct[a], distinct[b], s)).collect();
    // A copy's cosine with its first is 1, except for a zero vector, whose cosine with anything is 0.
    let cosine = |f: usize| if features[f].as_ref().iter().any(|&x| x != 0.0) { 1.0 } else { 0.0 };
    pairs.extend(copies.into_iter().map(|(f, i)| (f, i, cosine(f))).filter(|p| p.2 >= threshold));
    pairs.sort_by_key(|&(i, j, _)| (i, j));
    tracing::debug!(items = features.len(), distinct = distinct.len(), pairs = pairs.len(), "near-duplicate search");
    Ok(pairs)
}

/// Groups (two or more members, each sorted) of images linked by near-duplicate pairs, transitively.
pub fn near_groups(n: usize, pairs: &[(usize, usize, f32)]) -> Vec<Vec<usize>> {
    let mut uf = UnionFind((0..n).collect());
    for &(i, j, _) in pairs {
        uf.union(i, j);
    }
    let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let r = uf.find(i);
        by_root.entry(r).or_default().push(i);
    }
    by_root.into_values().filter(|g| g.len() > 1).collect()
}

/// For every image, the index of its group's representative (the member with the smallest hash),
/// so a whole group of copies can share one split.
pub fn representatives(sha256: &[&str], groups: &[Vec<usize>]) -> Vec<usize> {
    let mut rep: Vec<usize> = (0..sha256.len()).collect();
    for g in groups {
        let best = *g.iter().min_by_key(|&&i| sha256[i]).expect("groups are non-empty");
        for &i in g {
            rep[i] = best;
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_groups_need_two_members() {
        let g = exact_groups(&["a", "b", "a", "c", "b", "b"]);
        assert_eq!(g, vec![vec![0, 2], vec![1, 4, 5]]);
    }

    #[test]
    fn near_groups_are_transitive_and_thresholded() {
        let f = vec![vec![1.0, 0.0], vec![0.999, 0.04], vec![0.997, 0.08], vec![0.0, 1.0], vec![2.0, 0.0]];
        let pairs = similar_pairs(&f, 0.998).unwrap();
        // 0~1 (0.9992), 0~4 (1.0), 1~4; 2 is 0.9968 from 0 but 0.9992 from 1, so it joins through 1.
        let groups = near_groups(f.len(), &pairs);
        assert_eq!(groups, vec![vec![0, 1, 2, 4]]);
        let reps = representatives(&["d", "c", "b", "a", "e"], &groups);
        assert_eq!(reps, vec![2, 2, 2, 3, 2]);
    }

    #[test]
    fn blocks_cover_every_pair() {
        // More rows than one block: identical vectors at both ends must still pair up.
        let mut f: Vec<Vec<f32>> = (0..TILE + 10).map(|i| vec![(i as f32).sin(), (i as f32).cos(), 0.0]).collect();
        f[TILE + 9] = vec![0.0, 0.0, 1.0];
        f[1] = vec![0.0, 0.0, 1.0];
        let pairs = similar_pairs(&f, 0.999_999).unwrap();
        assert!(pairs.iter().any(|&(i, j, _)| i == 1 && j == TILE + 9), "{pairs:?}");
        // Every pair, in index order, as a direct computation finds them.
        let unit = normalized(&f);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let mut want = Vec::new();
        for i in 0..f.len() {
            for j in i + 1..f.len() {
                if dot(&unit[i], &unit[j]) >= 0.99 {
                    want.push((i, j));
                }
            }
        }
        let got: Vec<(usize, usize)> = similar_pairs(&f, 0.99).unwrap().iter().map(|&(i, j, _)| (i, j)).collect();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "pairs come in index order");
        let close = |(i, j): (usize, usize)| (dot(&unit[i], &unit[j]) - 0.99).abs() < 1e-5;
        let differ: Vec<_> =
            got.iter().filter(|p| !want.contains(p)).chain(want.iter().filter(|p| !got.contains(p))).copied().collect();
        assert!(want.len() > 1000 && differ.iter().all(|&p| close(p)), "{} pairs, {} differ", want.len(), differ.len());
    }

    #[test]
    fn copies_are_searched_once_and_linked_in_a_star_with_the_groups_of_a_full_search() {
        // 30 distinct directions; 0 and 1 are near copies of each other; file 5 has 200 byte copies
        // spread through the list; file 9 has one copy; one vector is zero, twice.
        let mut rng = crate::train::rng::Rng::new(9);
        let mut f: Vec<Vec<f32>> = (0..30).map(|_| (0..16).map(|_| rng.normal()).collect()).collect();
        f[1] = f[0].iter().map(|x| x + 0.01).collect();
        f[20] = vec![0.0; 16];
        let mut sha: Vec<String> = (0..30).map(|i| format!("h{i}")).collect();
        let five = f[5].clone();
        for k in 0..200 {
            let at = (k * 7) % f.len();
            f.insert(at, five.clone());
            sha.insert(at, "h5".into());
        }
        let nine = sha.iter().position(|h| h == "h9").unwrap();
        f.push(f[nine].clone());
        sha.push("h9".into());
        let zero = sha.iter().position(|h| h == "h20").unwrap();
        f.push(vec![0.0; 16]);
        sha.push("h20".into());
        let sha: Vec<&str> = sha.iter().map(String::as_str).collect();

        let every = similar_pairs(&f, NEAR_DUPLICATE_COSINE).unwrap();
        let star = near_duplicate_pairs(&f, &sha, NEAR_DUPLICATE_COSINE).unwrap();
        assert_eq!(near_groups(f.len(), &star), near_groups(f.len(), &every), "the same groups");
        assert!(every.len() > 20_000, "a full search pairs every two copies: {}", every.len());
        // One pair per later copy (200 of file 5, 1 of file 9) plus the near copies 0~1; none for
        // the zero vectors, whose cosine is 0.
        assert_eq!(star.len(), 202, "{star:?}");
        assert!(star.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)), "in index order");
        assert!(!star.iter().any(|p| p.0 == zero || p.1 == zero));
        let distinct = |pairs: &[(usize, usize, f32)]| -> Vec<(usize, usize, f32)> {
            pairs.iter().filter(|p| sha[p.0] != sha[p.1]).copied().collect()
        };
        let (want, got) = (distinct(&every), distinct(&star));
        assert_eq!(got.len(), want.len(), "pairs of different files are those of the full search");
        assert!(got.iter().zip(&want).all(|(g, w)| (g.0, g.1) == (w.0, w.1) && (g.2 - w.2).abs() < 1e-6));
    }

    #[test]
    fn the_same_hash_with_other_features_is_searched_as_its_own_vector() {
        let f = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, 1.0]];
        let pairs = near_duplicate_pairs(&f, &["a", "a", "b"], 0.9).unwrap();
        assert_eq!(pairs.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), vec![(1, 2)]);
        let err = near_duplicate_pairs(&f, &["a"], 0.9).unwrap_err().to_string();
        assert!(err.contains("1 hashes for 3 feature vectors"), "{err}");
    }

    /// Time of the near-duplicate search on synthetic unit 1024-d vectors (docs/PERFORMANCE.md):
    /// `cargo test --locked -p gc-core --lib near_duplicate_search_scaling -- --ignored --nocapture`;
    /// `NEAR_DUP_SIZES=1000,3000` picks other sizes.
    #[test]
    #[ignore = "a measurement of minutes, not a test"]
    fn near_duplicate_search_scaling() {
        let sizes: Vec<usize> = std::env::var("NEAR_DUP_SIZES")
            .ok()
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![10_000, 30_000, 100_000]);
        let d = 1024;
        let mut rng = crate::train::rng::Rng::new(21);
        let mut last: Option<(usize, f64)> = None;
        for n in sizes {
            // Random unit vectors (cosines near 0), with every 100th a near copy of the one before.
            let mut f: Vec<Vec<f32>> = Vec::with_capacity(n);
            for i in 0..n {
                let v: Vec<f32> = if i % 100 == 99 {
                    f[i - 1].iter().map(|x| x + 0.005 * rng.normal()).collect()
                } else {
                    (0..d).map(|_| rng.normal()).collect()
                };
                f.push(v);
            }
            let f = normalized(&f);
            let t = std::time::Instant::now();
            let pairs = similar_pairs(&f, NEAR_DUPLICATE_COSINE).unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(pairs.len(), n / 100, "the planted near copies, and nothing else");
            let gflops = (n as f64).powi(2) * d as f64 / secs / 1e9;
            let growth = last.map_or(String::new(), |(m, s)| {
                format!(", x{:.2} the time for x{:.2} the vectors", secs / s, n as f64 / m as f64)
            });
            println!("near-duplicate search: n = {n}: {secs:.2} s, {gflops:.1} GFLOP/s{growth}");
            last = Some((n, secs));
        }
    }
}
