//! Picking the compute device from `--device cpu|cuda|metal`.

use anyhow::{Result, bail};
use candle_core::Device;

/// Returns the requested device, or an error that says how to get it.
pub fn select(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                bail!(
                    "this build has no CUDA support: rebuild with `cargo build --release --features cuda`, or use --device cpu"
                );
            }
            Device::new_cuda(0).map_err(|e| anyhow::anyhow!("no usable CUDA GPU ({e}); use --device cpu"))
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                bail!(
                    "this build has no Metal support: rebuild with `cargo build --release --features metal`, or use --device cpu"
                );
            }
            Device::new_metal(0).map_err(|e| anyhow::anyhow!("no usable Metal GPU ({e}); use --device cpu"))
        }
        other => bail!("unknown device '{other}': use cpu, cuda or metal"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_and_missing_devices_are_clear_errors() {
        assert!(super::select("cpu").unwrap().is_cpu());
        assert!(super::select("tpu").unwrap_err().to_string().contains("use cpu, cuda or metal"));
        if !cfg!(feature = "cuda") {
            assert!(super::select("cuda").unwrap_err().to_string().contains("--features cuda"));
        }
    }
}
