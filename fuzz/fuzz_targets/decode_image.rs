//! Any bytes given as a photo: an image or a clear error, never a panic, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = gc_core::imaging::decode_rgb(data, std::path::Path::new("fuzz.jpg")) {
        assert!(u64::from(img.width()) * u64::from(img.height()) <= gc_core::imaging::MAX_PIXELS);
    }
});
