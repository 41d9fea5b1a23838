//! Picking the compute device from `--device auto|cpu|cuda|metal`.

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
            Device::new_cuda(0).map_err(|e| Error::DeviceUnavailable { device: "CUDA", reason: first_line(&e) })
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(Error::DeviceNotBuilt { device: "Metal", feature: "metal" });
            }
            Device::new_metal(0).map_err(|e| Error::DeviceUnavailable { device: "Metal", reason: first_line(&e) })
        }
        "auto" => Ok(auto()),
        other => Err(Error::UnknownDevice(other.to_owned())),
    }
}

/// The first line of Candle's error: it appends a backtrace to some, which a one-line message
/// should not carry.
fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().trim().to_owned()
}

/// The fastest device this build and machine have: a CUDA GPU, else a Metal GPU, else the CPU.
pub fn auto() -> Device {
    if cfg!(feature = "cuda")
        && let Ok(d) = Device::new_cuda(0)
    {
        return d;
    }
    if cfg!(feature = "metal")
        && let Ok(d) = Device::new_metal(0)
    {
        return d;
    }
    Device::Cpu
}

/// The device in a few words, for logs and status lines: "CPU", "CUDA GPU 0", "Metal GPU".
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "CPU".into(),
        Device::Cuda(_) => "CUDA GPU 0".into(),
        Device::Metal(_) => "Metal GPU".into(),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    #[test]
    fn unknown_and_missing_devices_are_clear_errors() {
        assert!(super::select("cpu").unwrap().is_cpu());
        // Without a GPU feature (or a GPU), auto is the CPU and says so.
        let auto = super::select("auto").unwrap();
        if !cfg!(feature = "cuda") && !cfg!(feature = "metal") {
            assert!(auto.is_cpu());
        }
        assert_eq!(super::describe(&Device::Cpu), "CPU");
        assert!(super::select("tpu").unwrap_err().to_string().contains("use auto, cpu, cuda or metal"));
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
