//! Stable train/validation/test assignment from a hash of the file's bytes (as retrain.py did with names).

use serde::{Deserialize, Serialize};

/// Which part of the data an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to fit the head.
    Train,
    /// Used for early stopping and model selection.
    Validation,
    /// Held out for the reported accuracy.
    Test,
}

impl Split {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// Percentages of validation and test data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// Percent for validation (0..100).
    pub validation_pct: f64,
    /// Percent for test (0..100).
    pub test_pct: f64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self { validation_pct: 10.0, test_pct: 20.0 }
    }
}

impl SplitSpec {
    /// The split of an image from the hex sha256 of its bytes (or of its group's representative).
    ///
    /// Depends on nothing else, so adding or relabelling one file never moves another.
    pub fn assign(&self, sha256_hex: &str) -> Split {
        let prefix = sha256_hex.get(..12).and_then(|s| u64::from_str_radix(s, 16).ok()).unwrap_or(0);
        let pct = (prefix as f64 / (1u64 << 48) as f64) * 100.0;
        if pct < self.validation_pct {
            Split::Validation
        } else if pct < self.validation_pct + self.test_pct {
            Split::Test
        } else {
            Split::Train
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_engine::weights::sha256_hex;

    #[test]
    fn splits_have_their_lowercase_names_and_exact_boundaries() {
        let names: Vec<_> = [Split::Train, Split::Validation, Split::Test].iter().map(|s| s.name()).collect();
        assert_eq!(names, ["train", "validation", "test"]);
        // A hash prefix exactly at a boundary belongs to the split above it.
        let spec = SplitSpec { validation_pct: 25.0, test_pct: 25.0 };
        assert_eq!(spec.assign(&format!("{:012x}", 0)), Split::Validation);
        assert_eq!(spec.assign(&format!("{:012x}", 1u64 << 46)), Split::Test, "25% exactly");
        assert_eq!(spec.assign(&format!("{:012x}", 1u64 << 47)), Split::Train, "50% exactly");
    }

    #[test]
    fn proportions_are_close_and_assignment_is_a_pure_function() {
        let spec = SplitSpec::default();
        let mut counts = [0usize; 3];
        for i in 0..10_000u32 {
            let h = sha256_hex(&i.to_le_bytes());
            let s = spec.assign(&h);
            assert_eq!(s, spec.assign(&h));
            counts[s as usize] += 1;
        }
        assert!((6700..7300).contains(&counts[0]), "{counts:?}");
        assert!((800..1200).contains(&counts[1]), "{counts:?}");
        assert!((1800..2200).contains(&counts[2]), "{counts:?}");
    }
}
