//! Outliers: images far from their class in feature space (drawings, non-photos, odd crops).

use crate::similarity::normalized;

/// Robust z-score above which an image counts as far from its class.
pub const OUTLIER_Z: f32 = 4.0;

/// For each item, a robust z-score of its cosine distance to its class centre
/// (median and MAD over the class, so the outliers themselves do not widen the scale).
pub fn class_distance_z<V: AsRef<[f32]>>(features: &[V], labels: &[usize], num_classes: usize) -> Vec<f32> {
    let unit = normalized(features);
    let d = unit.first().map_or(0, Vec::len);
    let mut z = vec![0f32; unit.len()];
    for c in 0..num_classes {
        let members: Vec<usize> = (0..unit.len()).filter(|&i| labels[i] == c).collect();
        if members.len() < 5 {
            continue;
        }
        let mut centre = vec![0f32; d];
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
}
