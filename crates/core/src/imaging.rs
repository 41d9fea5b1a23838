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

/// A photo decoded by [`decode_rgb_reduced`], possibly at a fraction of its resolution.
#[derive(Debug, Clone)]
pub struct ReducedImage {
    /// The upright 8-bit RGB pixels.
    pub image: RgbImage,
    /// Full-resolution upright pixels per decoded pixel along each side: 1.0 (not reduced), 2.0, 4.0 or 8.0.
    /// Multiply a coordinate in `image` by it to get one in the full photo (the last row and column may
    /// cover a partial block: `image.width() * scale` can pass `full_size.0` by less than `scale`).
    pub scale: f32,
    /// The upright full-resolution size (width, height), as [`decode_rgb`] would return it.
    pub full_size: (u32, u32),
}

/// DCT scale denominators jpeg-decoder decodes at, smallest image first.
const DCT_DENOMINATORS: [u32; 3] = [8, 4, 2];

/// Below this many pixels a 1/2-scale decode does not pay: zune-jpeg's full decode is as fast (jpeg-decoder's
/// entropy decoding is slower; measured even at 5 MP, 1.2x slower at 3 MP, 1.4x at 1.2 MP).
const HALF_SCALE_MIN_PIXELS: u64 = 6_000_000;

/// The DCT scale denominator (8, 4 or 2) to decode a stored `w`x`h` JPEG at, or None for full scale.
fn dct_denominator(w: u32, h: u32, min_long_side: u32) -> Option<u32> {
    let long = w.max(h);
    let denom = DCT_DENOMINATORS.into_iter().find(|d| long.div_ceil(*d) >= min_long_side)?;
    (denom > 2 || u64::from(w) * u64::from(h) >= HALF_SCALE_MIN_PIXELS).then_some(denom)
}

/// Decodes like [`decode_rgb`], but an 8-bit baseline or progressive JPEG (RGB or grayscale) is decoded at
/// 1/2, 1/4 or 1/8 scale inside the inverse DCT: the smallest whose upright long side stays at least
/// `min_long_side` (1/2 only from 6 megapixels, where it starts to pay). Any other file, and a JPEG that is
/// too small, CMYK, 16-bit, lossless or that jpeg-decoder cannot read (or panics on), goes through
/// [`decode_rgb`] at full scale, with its checks and errors.
pub fn decode_rgb_reduced(bytes: &[u8], path: &Path, min_long_side: u32) -> Result<ReducedImage, ImageLoadError> {
    let full = || {
        let image = decode_rgb(bytes, path)?;
        Ok(ReducedImage { full_size: image.dimensions(), image, scale: 1.0 })
    };
    // Empty, non-JPEG and truncated files: decode_rgb gives the answer (and the error) for them.
    if bytes.is_empty()
        || image::guess_format(bytes).ok() != Some(image::ImageFormat::Jpeg)
        || !has_jpeg_end_marker(bytes)
    {
        return full();
    }
    let scaled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_jpeg_scaled(bytes, min_long_side)));
    match scaled {
        Ok(Scaled::Done(reduced)) => Ok(reduced),
        Ok(Scaled::TooLarge { w, h }) => Err(ImageLoadError::TooLarge { path: path.display().to_string(), w, h }),
        Ok(Scaled::FullScale(why)) => {
            tracing::trace!(path = %path.display(), why, "decoding at full scale");
            full()
        }
        Ok(Scaled::Failed(reason)) => {
            tracing::debug!(path = %path.display(), reason, "jpeg-decoder failed; decoding at full scale");
            full()
        }
        Err(_) => {
            tracing::warn!(path = %path.display(), "jpeg-decoder panicked; decoding at full scale");
            full()
        }
    }
}

/// What [`decode_jpeg_scaled`] made of a JPEG.
enum Scaled {
    /// Decoded at a reduced scale.
    Done(ReducedImage),
    /// Over [`MAX_PIXELS`] (stored width and height, as decode_rgb reports them).
    TooLarge { w: u32, h: u32 },
    /// Not a case for reduced decoding (the reason, for the log).
    FullScale(&'static str),
    /// jpeg-decoder's error.
    Failed(String),
}

/// Decodes a JPEG with jpeg-decoder at the smallest DCT scale whose long side is at least `min_long_side`.
fn decode_jpeg_scaled(bytes: &[u8], min_long_side: u32) -> Scaled {
    use image::metadata::Orientation;
    use jpeg_decoder::{CodingProcess, PixelFormat};

    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    if let Err(e) = decoder.read_info() {
        return Scaled::Failed(e.to_string());
    }
    let Some(info) = decoder.info() else { return Scaled::Failed("no frame header".into()) };
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Scaled::TooLarge { w, h };
    }
    if info.coding_process == CodingProcess::Lossless {
        return Scaled::FullScale("lossless JPEG");
    }
    if !matches!(info.pixel_format, PixelFormat::RGB24 | PixelFormat::L8) {
        return Scaled::FullScale("not 8-bit RGB or grayscale");
    }
    // Orientation only swaps the sides, so the long side is known before the EXIF is read.
    let Some(denom) = dct_denominator(w, h, min_long_side) else {
        return Scaled::FullScale("too small to reduce, or only to 1/2 under 6 MP");
    };
    let (sw, sh) = (w.div_ceil(denom), h.div_ceil(denom));
    match decoder.scale(sw as u16, sh as u16) {
        Ok((ow, oh)) if (u32::from(ow), u32::from(oh)) == (sw, sh) => {}
        Ok((ow, oh)) => return Scaled::Failed(format!("asked for {sw}x{sh}, jpeg-decoder offers {ow}x{oh}")),
        Err(e) => return Scaled::Failed(e.to_string()),
    }
    let pixels = match decoder.decode() {
        Ok(p) => p,
        Err(e) => return Scaled::Failed(e.to_string()),
    };
    let img = match info.pixel_format {
        PixelFormat::L8 => image::GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8),
        _ => RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8),
    };
    let Some(mut img) = img else { return Scaled::Failed("fewer pixels than the image size".into()) };
    let orientation = decoder.exif_data().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    img.apply_orientation(orientation);
    let turned = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    let full_size = if turned { (h, w) } else { (w, h) };
    // No alpha here: RGB is taken as is, grayscale spread to R = G = B, as decode_rgb does.
    Scaled::Done(ReducedImage { image: img.into_rgb8(), scale: denom as f32, full_size })
}

/// True when a JPEG's end-of-image marker (FF D9) is among its last 4 KiB (some files carry trailing bytes).
fn has_jpeg_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Converts any pixel format to 8-bit RGB; transparent pixels are composited over white.
pub fn to_rgb_over_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        // No copy when it is already 8-bit RGB (a 12 MP photo is 36 MB).
        return img.into_rgb8();
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
#[path = "imaging_tests.rs"]
mod reduced_tests;

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
