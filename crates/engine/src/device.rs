//! Picking the compute device from `--device cpu|cuda|metal`.

use candle_core::Device;

use crate::{Error, Result};

/// Returns the requested device, or an error that says how to get it.
pub fn select(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                return Err(Error::DeviceNotBuilt { device: "CUDA", feature: "cuda" });
            }
            Device::new_cuda(0).map_err(|e| Error::DeviceUnavailable { device: "CUDA", reason: e.to_string() })
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(Error::DeviceNotBuilt { device: "Metal", feature: "metal" });
            }
            Device::new_metal(0).map_err(|e| Error::DeviceUnavailable { device: "Metal", reason: e.to_string() })
        }
        other => Err(Error::UnknownDevice(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_and_missing_devices_are_clear_errors() {
        assert!(super::select("cpu").unwrap().is_cpu());
        assert!(super::select("tpu").unwrap_err().to_string().contains("use cpu, cuda or metal"));
        if !cfg!(feature = "cuda") {
            assert_eq!(
                super::select("cuda").unwrap_err().to_string(),
                "this build has no CUDA support: rebuild with `cargo build --release --features cuda`, or use --device cpu"
            );
        }
        if !cfg!(feature = "metal") {
            assert_eq!(
                super::select("metal").unwrap_err().to_string(),
                "this build has no Metal support: rebuild with `cargo build --release --features metal`, or use --device cpu"
            );
        }
    }
}
