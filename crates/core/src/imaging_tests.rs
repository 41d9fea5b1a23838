//! Tests of [`decode_rgb_reduced`]: reduced JPEG decoding against the full decode, scale choice, EXIF
//! orientation, fallbacks and errors; plus an ignored timing run on the benchmark photo folders.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage};

use super::*;

/// Encodes an image as a JPEG of quality 90.
fn jpeg(img: &DynamicImage) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)).unwrap();
    buf.into_inner()
}

/// A photo-like test picture: red grows to the right, green downwards, blue in rings; textured, not flat.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let r = ((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt();
        let grain = ((x * 7 + y * 13) % 5) as f32 * 3.0;
        Rgb([(fx * 220.0 + grain) as u8, (fy * 220.0 + grain) as u8, (128.0 + 100.0 * (r * 25.0).sin()) as u8])
    })
}

/// Averages each `f`x`f` block (a partial block at the right and bottom edges averages what it has).
fn box_down(img: &RgbImage, f: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w.div_ceil(f), h.div_ceil(f), |bx, by| {
        let mut sum = [0u32; 3];
        let mut n = 0;
        for y in by * f..((by + 1) * f).min(h) {
            for x in bx * f..((bx + 1) * f).min(w) {
                let p = img.get_pixel(x, y);
                for c in 0..3 {
                    sum[c] += u32::from(p[c]);
                }
                n += 1;
            }
        }
        Rgb(sum.map(|s| ((s + n / 2) / n) as u8))
    })
}

/// Mean absolute difference per channel value of two same-sized images.
fn mad(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    total as f64 / a.as_raw().len() as f64
}

/// Inserts an APP1 Exif segment holding only `orientation` right after SOI (as benches/make_photos.sh does).
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0*".to_vec();
    tiff.extend(8u32.to_be_bytes());
    tiff.extend(1u16.to_be_bytes());
    tiff.extend(0x0112u16.to_be_bytes());
    tiff.extend(3u16.to_be_bytes());
    tiff.extend(1u32.to_be_bytes());
    tiff.extend(orientation.to_be_bytes());
    tiff.extend(0u16.to_be_bytes());
    tiff.extend(0u32.to_be_bytes());
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend((2 + 6 + tiff.len() as u16).to_be_bytes());
    out.extend(b"Exif\0\0");
    out.extend(tiff);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn reduced_jpeg_matches_the_full_decode_box_downscaled() {
    // 6.3 MP, so 1/2 is taken too.
    let bytes = jpeg(&DynamicImage::ImageRgb8(picture(3072, 2048)));
    let full = decode_rgb(&bytes, Path::new("p.jpg")).unwrap();
    for (min_long_side, scale) in [(1500, 2), (700, 4), (300, 8)] {
        let r = decode_rgb_reduced(&bytes, Path::new("p.jpg"), min_long_side).unwrap();
        assert_eq!(r.scale, scale as f32, "min_long_side {min_long_side}");
        assert_eq!(r.full_size, (3072, 2048));
        assert_eq!(r.image.dimensions(), (3072 / scale, 2048 / scale));
        let d = mad(&r.image, &box_down(&full, scale));
        assert!(d < 2.5, "1/{scale}: mean abs difference {d:.2} from the box-downscaled full decode");
    }
}

#[test]
fn scale_respects_min_long_side() {
    let bytes = jpeg(&DynamicImage::ImageRgb8(picture(1000, 600)));
    // 0.6 MP: 1/2 would be allowed by the long side but does not pay, so it decodes in full.
    let cases = [(0, 8.0), (125, 8.0), (126, 4.0), (250, 4.0), (251, 1.0), (500, 1.0), (501, 1.0), (4000, 1.0)];
    for (min_long_side, scale) in cases {
        let r = decode_rgb_reduced(&bytes, Path::new("p.jpg"), min_long_side).unwrap();
        assert_eq!(r.scale, scale, "min_long_side {min_long_side}");
        assert_eq!(r.full_size, (1000, 600));
        let long = r.image.width().max(r.image.height());
        assert!(long >= min_long_side.min(1000), "long side {long} under {min_long_side}");
        assert_eq!(long, 1000u32.div_ceil(scale as u32));
    }
    // Sides that are not a multiple of the block round up, like jpeg-decoder's output.
    let odd = jpeg(&DynamicImage::ImageRgb8(picture(1001, 603)));
    let r = decode_rgb_reduced(&odd, Path::new("p.jpg"), 100).unwrap();
    assert_eq!((r.scale, r.image.dimensions(), r.full_size), (8.0, (126, 76), (1001, 603)));
    // Already small: decoded in full, the very pixels decode_rgb gives.
    let small = jpeg(&DynamicImage::ImageRgb8(picture(320, 240)));
    let r = decode_rgb_reduced(&small, Path::new("s.jpg"), 640).unwrap();
    assert_eq!((r.scale, r.full_size), (1.0, (320, 240)));
    assert_eq!(r.image, decode_rgb(&small, Path::new("s.jpg")).unwrap());
}

#[test]
fn half_scale_only_from_six_megapixels() {
    assert_eq!(dct_denominator(4000, 3000, 1024), Some(2));
    assert_eq!(dct_denominator(3000, 4000, 1000), Some(4));
    assert_eq!(dct_denominator(4000, 3000, 640), Some(4));
    assert_eq!(dct_denominator(4000, 3000, 500), Some(8));
    assert_eq!(dct_denominator(4000, 3000, 2001), None);
    assert_eq!(dct_denominator(3000, 2000, 1500), Some(2), "exactly 6 MP");
    assert_eq!(dct_denominator(2999, 2000, 1499), None, "just under 6 MP");
    assert_eq!(dct_denominator(2048, 1536, 1024), None);
    assert_eq!(dct_denominator(2048, 1536, 512), Some(4));
    assert_eq!(dct_denominator(1, 1, 0), Some(8));
}

#[test]
fn exif_orientation_6_is_applied() {
    // Stored landscape, left half red and right half blue; orientation 6 turns it a quarter clockwise to show,
    // so the upright photo is portrait with red on top.
    let stored = RgbImage::from_fn(1024, 512, |x, _| if x < 512 { Rgb([220, 30, 30]) } else { Rgb([30, 30, 220]) });
    let bytes = with_exif_orientation(&jpeg(&DynamicImage::ImageRgb8(stored)), 6);
    let full = decode_rgb(&bytes, Path::new("o.jpg")).unwrap();
    assert_eq!(full.dimensions(), (512, 1024), "decode_rgb turns it too");
    let r = decode_rgb_reduced(&bytes, Path::new("o.jpg"), 200).unwrap();
    assert_eq!((r.scale, r.image.dimensions(), r.full_size), (4.0, (128, 256), (512, 1024)));
    let top = r.image.get_pixel(64, 20);
    let bottom = r.image.get_pixel(64, 236);
    assert!(top[0] > 180 && top[2] < 80, "top should be red: {top:?}");
    assert!(bottom[2] > 180 && bottom[0] < 80, "bottom should be blue: {bottom:?}");
    let d = mad(&r.image, &box_down(&full, 4));
    assert!(d < 2.5, "mean abs difference {d:.2} from the turned full decode");
}

#[test]
fn grayscale_jpeg_becomes_rgb() {
    let gray = GrayImage::from_fn(1024, 768, |x, y| Luma([((x / 4 + y / 3) % 256) as u8]));
    let bytes = jpeg(&DynamicImage::ImageLuma8(gray));
    let full = decode_rgb(&bytes, Path::new("g.jpg")).unwrap();
    let r = decode_rgb_reduced(&bytes, Path::new("g.jpg"), 256).unwrap();
    assert_eq!((r.scale, r.image.dimensions()), (4.0, (256, 192)));
    assert!(r.image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]), "gray stays gray in RGB");
    let d = mad(&r.image, &box_down(&full, 4));
    assert!(d < 2.5, "mean abs difference {d:.2}");
    // Too small to reduce: the same pixels as decode_rgb.
    let r = decode_rgb_reduced(&bytes, Path::new("g.jpg"), 1024).unwrap();
    assert_eq!((r.scale, &r.image), (1.0, &full));
}

#[test]
fn png_falls_back_to_the_full_decode() {
    let mut buf = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(picture(800, 600)).write_to(&mut buf, ImageFormat::Png).unwrap();
    let bytes = buf.into_inner();
    let r = decode_rgb_reduced(&bytes, Path::new("p.png"), 100).unwrap();
    assert_eq!((r.scale, r.full_size), (1.0, (800, 600)));
    assert_eq!(r.image, decode_rgb(&bytes, Path::new("p.png")).unwrap());
}

#[test]
fn bad_input_gives_the_same_errors_as_decode_rgb() {
    let good = jpeg(&DynamicImage::ImageRgb8(picture(256, 256)));
    // The frame header (SOF0) says 10000x10000: over MAX_PIXELS, refused before any pixel is decoded.
    let sof = good.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG has SOF0");
    let mut huge = good.clone();
    huge[sof + 5..sof + 9].copy_from_slice(&[0x27, 0x10, 0x27, 0x10]);
    let mut header_garbage = good[..2].to_vec();
    header_garbage.extend([0xFF, 0xC0, 0x00, 0x03, 0x42, 0x13, 0x37, 0xFF, 0xD9]);
    let cases: [(&str, &[u8]); 5] = [
        ("empty", &[]),
        ("text", b"hello, I am text"),
        ("truncated", &good[..good.len() / 2]),
        ("header garbage", &header_garbage),
        ("huge", &huge),
    ];
    for (what, bytes) in cases {
        let path = Path::new("bad.jpg");
        let want = decode_rgb(bytes, path).expect_err(what);
        let got = decode_rgb_reduced(bytes, path, 64).expect_err(what);
        assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want), "{what}: {got} vs {want}");
        assert_eq!(got.to_string(), want.to_string(), "{what}");
    }
    let e = decode_rgb_reduced(&huge, Path::new("bad.jpg"), 64).unwrap_err();
    assert!(matches!(e, ImageLoadError::TooLarge { w: 10000, h: 10000, .. }), "{e}");
    let e = decode_rgb_reduced(&good[..good.len() / 2], Path::new("bad.jpg"), 64).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn corrupted_jpegs_never_panic() {
    let good = jpeg(&DynamicImage::ImageRgb8(picture(512, 384)));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..60 {
        let mut bytes = good.clone();
        for _ in 0..1 + round % 8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Keep SOI and the end marker so the damage reaches the decoders, not the early checks.
            let i = 2 + (seed as usize) % (bytes.len() - 4);
            bytes[i] = (seed >> 32) as u8;
        }
        match decode_rgb_reduced(&bytes, Path::new("c.jpg"), 64) {
            Ok(r) => {
                let (w, h) = r.image.dimensions();
                assert!(w as f32 * r.scale >= r.full_size.0 as f32 && h as f32 * r.scale >= r.full_size.1 as f32);
            }
            Err(e) => assert!(matches!(e, ImageLoadError::Decode { .. } | ImageLoadError::TooLarge { .. }), "{e}"),
        }
    }
}

/// CPU time of this process so far (all threads), in milliseconds; 0 where unmeasured.
fn process_cpu_ms() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
        ms(u.ru_utime) + ms(u.ru_stime)
    }
    #[cfg(not(unix))]
    0.0
}

/// Milliseconds per photo (wall clock and process CPU, which counts jpeg-decoder's helper threads) of
/// `decode_rgb` against `decode_rgb_reduced(.., 1024)` and `(.., 640)` on the benchmark folders
/// (benches/make_photos.sh), alternating photo by photo, median of 3 rounds. Run with
/// `cargo test --locked -p gc-core --lib decode_speed -- --ignored --nocapture` (folders in `GC_DECODE_BENCH`,
/// colon-separated; default /tmp/bench/phone:/tmp/bench/portraits).
#[test]
#[ignore = "timing run over benchmark photo folders"]
fn decode_speed() {
    use std::time::Instant;
    let dirs = std::env::var("GC_DECODE_BENCH").unwrap_or_else(|_| "/tmp/bench/phone:/tmp/bench/portraits".into());
    eprintln!(
        "| folder | photos | decode_rgb ms wall / CPU | reduced 1024: scale, size, ms wall / CPU \
         | reduced 640: scale, size, ms wall / CPU | MAD at 640 |"
    );
    eprintln!("|---|---|---|---|---|---|");
    for dir in dirs.split(':') {
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| has_image_extension(p));
        files.sort();
        let photos: Vec<(std::path::PathBuf, Vec<u8>)> =
            files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
        let n = photos.len() as f64;
        let mut wall = [vec![], vec![], vec![]];
        let mut cpu = [vec![], vec![], vec![]];
        for _round in 0..3 {
            // Photo by photo, the three decodes side by side, so a change in the machine's load hits all three.
            let (mut w, mut c) = ([0.0; 3], [0.0; 3]);
            for (p, b) in &photos {
                for (k, min) in [(0, None), (1, Some(1024)), (2, Some(640))] {
                    let (t0, c0) = (Instant::now(), process_cpu_ms());
                    match min {
                        None => drop(std::hint::black_box(decode_rgb(b, p).unwrap())),
                        Some(min) => drop(std::hint::black_box(decode_rgb_reduced(b, p, min).unwrap())),
                    }
                    w[k] += t0.elapsed().as_secs_f64() * 1e3 / n;
                    c[k] += (process_cpu_ms() - c0) / n;
                }
            }
            for k in 0..3 {
                wall[k].push(w[k]);
                cpu[k].push(c[k]);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[1]
        };
        let mut ms = |k: usize| format!("{:.1} / {:.1}", median(&mut wall[k]), median(&mut cpu[k]));
        let (p, b) = &photos[0];
        let shape = |min| {
            let r = decode_rgb_reduced(b, p, min).unwrap();
            format!("1/{}, {}x{}", r.scale, r.image.width(), r.image.height())
        };
        let r = decode_rgb_reduced(b, p, 640).unwrap();
        let full = decode_rgb(b, p).unwrap();
        let d = mad(&r.image, &box_down(&full, r.scale as u32));
        eprintln!(
            "| {dir} | {} | {} | {}, {} | {}, {} | {d:.2} |",
            photos.len(),
            ms(0),
            shape(1024),
            ms(1),
            shape(640),
            ms(2)
        );
    }
}
