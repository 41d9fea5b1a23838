//! Turning a file into RGB pixels safely: format sniffing, pixel limit, EXIF orientation,
//! grayscale/16-bit/alpha to 8-bit RGB.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// Largest accepted image, in pixels (refused before decoding, so no decompression bombs).
pub const MAX_PIXELS: u64 = 64_000_000;

/// File extensions treated as images when scanning folders.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "jfif"];

/// Why an image could not be loaded, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    /// The file could not be read from disk.
    #[error("cannot read {path}: {source}; check that it exists and that you may read it")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file has no bytes.
    #[error("{0} is an empty file (0 bytes); copy the photo again or remove it")]
    Empty(String),
    /// The bytes are not a supported image.
    #[error("{path} is not a readable image ({reason}); re-save it as JPEG, PNG, WebP, BMP, GIF or TIFF, or remove it")]
    Decode {
        /// The file.
        path: String,
        /// The decoder's message.
        reason: String,
    },
    /// The image is larger than [`MAX_PIXELS`].
    #[error("{path} is {w}x{h} pixels, over the {}-megapixel limit; downscale it first", MAX_PIXELS / 1_000_000)]
    TooLarge {
        /// The file.
        path: String,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
}

/// True when the path has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Reads and decodes a file into upright 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageLoadError> {
    let bytes =
        std::fs::read(path).map_err(|source| ImageLoadError::Read { path: path.display().to_string(), source })?;
    decode_rgb(&bytes, path)
}

/// Decodes bytes (already read from `path`, which is used for messages) into upright 8-bit RGB.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage, ImageLoadError> {
    let name = || path.display().to_string();
    if bytes.is_empty() {
        return Err(ImageLoadError::Empty(name()));
    }
    let decode_err = |e: image::ImageError| ImageLoadError::Decode { path: name(), reason: e.to_string() };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageLoadError::Decode { path: name(), reason: e.to_string() })?;
    // The pixel limit below is checked before any pixel is decoded.
    reader.no_limits();
    if reader.format().is_none() {
        return Err(ImageLoadError::Decode { path: name(), reason: "unknown file format".into() });
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !has_jpeg_end_marker(bytes) {
        return Err(ImageLoadError::Decode {
            path: name(),
            reason: "the JPEG is truncated (no end-of-image marker); re-copy or re-download it".into(),
        });
    }
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(ImageLoadError::TooLarge { path: name(), w, h });
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(to_rgb_over_white(img))
}

/// True when a JPEG's end-of-image marker (FF D9) is among its last 4 KiB (some files carry trailing bytes).
fn has_jpeg_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Converts any pixel format to 8-bit RGB; transparent pixels are composited over white.
pub fn to_rgb_over_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(src[3]);
        for c in 0..3 {
            dst[c] = ((u16::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, Rgba, RgbaImage};

    fn encode(img: &DynamicImage, fmt: image::ImageFormat) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, fmt).unwrap();
        buf.into_inner()
    }

    #[test]
    fn grayscale_16bit_and_alpha_become_rgb() {
        let g = DynamicImage::ImageLuma8(GrayImage::from_pixel(4, 3, Luma([77])));
        let rgb = decode_rgb(&encode(&g, image::ImageFormat::Png), Path::new("g.png")).unwrap();
        assert_eq!(rgb.dimensions(), (4, 3));
        assert_eq!(rgb.get_pixel(0, 0).0, [77, 77, 77]);

        let g16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(2, 2, Luma([65535]));
        let rgb =
            decode_rgb(&encode(&DynamicImage::ImageLuma16(g16), image::ImageFormat::Png), Path::new("a")).unwrap();
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 255, 255]);

        let mut a = RgbaImage::from_pixel(2, 1, Rgba([0, 0, 0, 0]));
        a.put_pixel(1, 0, Rgba([10, 20, 30, 255]));
        let rgb = decode_rgb(&encode(&DynamicImage::ImageRgba8(a), image::ImageFormat::Png), Path::new("a")).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255], "transparent goes to white");
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn empty_and_garbage_are_clear_errors() {
        assert!(matches!(decode_rgb(&[], Path::new("e.jpg")), Err(ImageLoadError::Empty(_))));
        let e = decode_rgb(b"hello, I am text", Path::new("t.jpg")).unwrap_err();
        assert!(e.to_string().contains("not a readable image"), "{e}");
    }
}
