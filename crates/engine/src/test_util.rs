//! Seeded random tensors for the unit tests, so that a failing kernel test fails the same way on
//! every run and every machine (Candle's `Tensor::randn` is unseeded).
//!
//! The generator is splitmix64; normals come from the Box–Muller transform. Test-only.

use candle_core::{Device, Shape, Tensor};

/// A small seeded random source (splitmix64).
pub(crate) struct Rng {
    state: u64,
    /// The second normal of the last Box–Muller pair, not yet handed out.
    spare: Option<f64>,
}

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed, spare: None }
    }

    /// The next 64 random bits (splitmix64).
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller, both values of each pair used).
    pub(crate) fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        // 1 - uniform is in (0, 1], so the logarithm is finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let theta = std::f64::consts::TAU * self.uniform();
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    /// An f32 tensor of normals with this mean and standard deviation (like `Tensor::randn`).
    pub(crate) fn randn<S: Into<Shape>>(&mut self, mean: f32, std: f32, shape: S, device: &Device) -> Tensor {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count()).map(|_| mean + std * self.normal() as f32).collect();
        Tensor::from_vec(data, shape, device).expect("seeded randn tensor")
    }

    /// An f32 tensor uniform in `[lo, hi)` (like `Tensor::rand`).
    pub(crate) fn rand<S: Into<Shape>>(&mut self, lo: f32, hi: f32, shape: S, device: &Device) -> Tensor {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count()).map(|_| lo + (hi - lo) * self.uniform() as f32).collect();
        Tensor::from_vec(data, shape, device).expect("seeded rand tensor")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tensor_and_plausible_moments() {
        let a = Rng::new(7).randn(0.0, 1.0, 20_000, &Device::Cpu).to_vec1::<f32>().unwrap();
        let b = Rng::new(7).randn(0.0, 1.0, 20_000, &Device::Cpu).to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Rng::new(8).randn(0.0, 1.0, 20_000, &Device::Cpu).to_vec1::<f32>().unwrap());
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} variance {var}");
        let u = Rng::new(9).rand(-1.0, 3.0, 1000, &Device::Cpu).to_vec1::<f32>().unwrap();
        assert!(u.iter().all(|v| (-1.0..3.0).contains(v)));
    }
}
