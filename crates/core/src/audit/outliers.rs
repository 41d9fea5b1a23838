//! Outliers: images far from their class in feature space (drawings, non-photos, odd crops).

/// Robust z-score above which an image counts as far from its class.
pub const OUTLIER_Z: f32 = 4.0;

/// For each item, a robust z-score of its cosine distance to its class centre
/// (median and MAD over the class, so the outliers themselves do not widen the scale).
///
/// Works on the vectors in place, one length per vector, rather than on a normalised copy of them
/// all (400 MB for 100,000 1024-d vectors); the arithmetic is that of [`crate::similarity::normalized`].
pub fn class_distance_z<V: AsRef<[f32]>>(features: &[V], labels: &[usize], num_classes: usize) -> Vec<f32> {
    let norms: Vec<f32> = features.iter().map(|v| v.as_ref().iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
    // Element `x` of vector `i` after normalising (a zero vector stays zero).
    let unit = |x: f32, n: f32| if n > 0.0 { x / n } else { x };
    let d = features.first().map_or(0, |v| v.as_ref().len());
    let mut z = vec![0f32; features.len()];
    for c in 0..num_classes {
        let members: Vec<usize> = (0..features.len()).filter(|&i| labels[i] == c).collect();
        if members.len() < 5 {
            continue;
        }
        let mut centre = vec![0f32; d];
        for &i in &members {
            for (a, &b) in centre.iter_mut().zip(features[i].as_ref()) {
                *a += unit(b, norms[i]);
            }
        }
        let norm = centre.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let dist: Vec<f32> = members
            .iter()
            .map(|&i| {
                let dot = features[i].as_ref().iter().zip(&centre).map(|(&a, b)| unit(a, norms[i]) * b).sum::<f32>();
                1.0 - dot / norm
            })
            .collect();
        let med = median(&dist);
        let mad = median(&dist.iter().map(|x| (x - med).abs()).collect::<Vec<_>>()).max(1e-6);
        for (&i, &di) in members.iter().zip(&dist) {
            z[i] = (di - med) / (1.4826 * mad);
        }
    }
    z
}

fn median(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s[s.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odd_one_out_has_a_high_z_and_the_rest_do_not() {
        let mut f: Vec<Vec<f32>> = (0..40).map(|i| vec![1.0, 0.05 * ((i % 7) as f32 - 3.0), 0.0]).collect();
        f[17] = vec![0.0, 0.2, 1.0];
        let labels = vec![0; 40];
        let z = class_distance_z(&f, &labels, 1);
        assert!(z[17] > OUTLIER_Z, "{}", z[17]);
        assert!(z.iter().enumerate().filter(|(i, _)| *i != 17).all(|(_, &v)| v < OUTLIER_Z), "{z:?}");
    }

    #[test]
    fn z_scores_are_bit_for_bit_those_of_a_normalised_copy() {
        // The scores before the copy was dropped: normalise every vector, then the same steps.
        fn with_copy(features: &[Vec<f32>], labels: &[usize], num_classes: usize) -> Vec<f32> {
            let unit = crate::similarity::normalized(features);
            let mut z = vec![0f32; unit.len()];
            for c in 0..num_classes {
                let members: Vec<usize> = (0..unit.len()).filter(|&i| labels[i] == c).collect();
                let mut centre = vec![0f32; unit[0].len()];
                for &i in &members {
                    for (a, b) in centre.iter_mut().zip(&unit[i]) {
                        *a += b;
                    }
                }
                let norm = centre.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                let dist: Vec<f32> = members
                    .iter()
                    .map(|&i| 1.0 - unit[i].iter().zip(&centre).map(|(a, b)| a * b).sum::<f32>() / norm)
                    .collect();
                let med = median(&dist);
                let mad = median(&dist.iter().map(|x| (x - med).abs()).collect::<Vec<_>>()).max(1e-6);
                for (&i, &di) in members.iter().zip(&dist) {
                    z[i] = (di - med) / (1.4826 * mad);
                }
            }
            z
        }
        let mut rng = crate::train::rng::Rng::new(5);
        let mut f: Vec<Vec<f32>> = (0..300).map(|_| (0..64).map(|_| rng.normal()).collect()).collect();
        f[7] = vec![0.0; 64];
        let labels: Vec<usize> = (0..300).map(|i| i % 3).collect();
        let got = class_distance_z(&f, &labels, 3);
        let want = with_copy(&f, &labels, 3);
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{got:?}\n{want:?}");
        assert!(got.iter().any(|&v| v != 0.0));
    }
}
