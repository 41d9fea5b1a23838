//! Thumbnails: decoded off the UI thread by a small pool, cached on disk as small JPEGs, and kept
//! as textures in a bounded least-recently-used cache.
//!
//! Each frame the grid asks for the thumbnails of its visible cells ([`Thumbnails::get`]). Missing
//! ones are queued in the order asked, and at the end of the frame ([`Thumbnails::end_frame`]) the
//! queue is replaced by that frame's requests, so cells scrolled away are dropped before any work.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use egui::{ColorImage, TextureHandle, TextureOptions};
use sha2::{Digest, Sha256};

use super::tasks::{Job, Outcome, Runtime, Task};

/// Longest side of a generated thumbnail, in pixels.
pub const THUMB_PX: u32 = 160;

/// Most results turned into textures per frame (keeps frames short while scrolling fast).
const MAX_UPLOADS_PER_FRAME: usize = 48;

/// What the grid can show for a photo right now.
pub enum Thumb {
    /// The texture and its size in pixels.
    Ready(egui::load::SizedTexture),
    /// Still being made.
    Loading,
    /// The photo cannot be read; the reason in words.
    Failed(String),
}

struct Queue {
    jobs: VecDeque<PathBuf>,
    in_progress: HashSet<PathBuf>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

type Made = (PathBuf, Outcome<ColorImage>);

/// The thumbnail pool and caches.
pub struct Thumbnails {
    shared: Arc<Shared>,
    workers: Vec<Task<Made, ()>>,
    textures: HashMap<PathBuf, (TextureHandle, u64)>,
    failed: HashMap<PathBuf, String>,
    wanted: Vec<PathBuf>,
    wanted_set: HashSet<PathBuf>,
    frame: u64,
    capacity: usize,
    pending: usize,
}

impl Thumbnails {
    /// Starts `workers` decoding threads; thumbnails are cached under `disk_dir` when given.
    pub fn new(workers: usize, disk_dir: Option<PathBuf>, rt: &Runtime) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), in_progress: HashSet::new(), shutdown: false }),
            wake: Condvar::new(),
        });
        let workers = (0..workers.max(1))
            .map(|i| {
                let shared = shared.clone();
                let disk = disk_dir.clone();
                rt.spawn(&format!("thumbnails-{i}"), move |job: &Job<Made>| worker(&shared, job, disk.as_deref()))
            })
            .collect();
        Self {
            shared,
            workers,
            textures: HashMap::new(),
            failed: HashMap::new(),
            wanted: Vec::new(),
            wanted_set: HashSet::new(),
            frame: 0,
            capacity: 512,
            pending: 0,
        }
    }

    /// Turns finished thumbnails into textures. Call once at the start of each frame.
    pub fn begin_frame(&mut self, ctx: &egui::Context) {
        self.frame += 1;
        for w in &mut self.workers {
            if let Some(Err(panicked)) = w.finished() {
                tracing::error!("{panicked}");
            }
        }
        let made: Vec<Made> = self
            .workers
            .iter()
            .flat_map(|w| w.progress().take(MAX_UPLOADS_PER_FRAME))
            .take(MAX_UPLOADS_PER_FRAME)
            .collect();
        for (path, made) in made {
            match made {
                Ok(img) => {
                    let tex = ctx.load_texture(path.to_string_lossy(), img, TextureOptions::LINEAR);
                    self.textures.insert(path, (tex, self.frame));
                }
                Err(reason) => {
                    self.failed.insert(path, reason.to_string());
                }
            }
        }
        self.pending = self.workers.iter().map(Task::waiting).sum();
    }

    /// The thumbnail of `path`, queueing it when missing.
    pub fn get(&mut self, path: &Path) -> Thumb {
        if let Some((tex, used)) = self.textures.get_mut(path) {
            *used = self.frame;
            return Thumb::Ready(egui::load::SizedTexture::from_handle(tex));
        }
        if let Some(reason) = self.failed.get(path) {
            return Thumb::Failed(reason.clone());
        }
        if self.wanted_set.insert(path.to_path_buf()) {
            self.wanted.push(path.to_path_buf());
        }
        Thumb::Loading
    }

    /// Publishes this frame's requests (dropping older ones) and evicts old textures.
    ///
    /// Returns true while work is outstanding (the caller keeps repainting).
    pub fn end_frame(&mut self) -> bool {
        let wanted = std::mem::take(&mut self.wanted);
        self.wanted_set.clear();
        let busy;
        {
            let mut q = match self.shared.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            q.jobs.clear();
            for p in wanted {
                if !q.in_progress.contains(&p) {
                    q.jobs.push_back(p);
                }
            }
            busy = !q.jobs.is_empty() || !q.in_progress.is_empty();
        }
        self.shared.wake.notify_all();
        self.evict();
        busy || self.pending > 0
    }

    /// Keeps at least `n` textures (raise it to a few screens' worth of cells).
    pub fn ensure_capacity(&mut self, n: usize) {
        self.capacity = self.capacity.max(n);
    }

    fn evict(&mut self) {
        if self.textures.len() <= self.capacity {
            return;
        }
        let mut by_age: Vec<(u64, PathBuf)> = self.textures.iter().map(|(p, (_, used))| (*used, p.clone())).collect();
        by_age.sort();
        let excess = self.textures.len() - self.capacity;
        for (used, p) in by_age.into_iter().take(excess) {
            if used == self.frame {
                break;
            }
            self.textures.remove(&p);
        }
    }

    /// Follows a file that moved (relabel, exclude, undo) so its thumbnail is kept.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        if let Some(t) = self.textures.remove(from) {
            self.textures.insert(to.to_path_buf(), t);
        }
        if let Some(r) = self.failed.remove(from) {
            self.failed.insert(to.to_path_buf(), r);
        }
    }

    /// Forgets failures (after a rescan the files may have been fixed).
    pub fn forget_failures(&mut self) {
        self.failed.clear();
    }

    /// True when nothing is queued, being made, or waiting to become a texture.
    pub fn is_idle(&self) -> bool {
        let queue_empty = match self.shared.queue.lock() {
            Ok(q) => q.jobs.is_empty() && q.in_progress.is_empty(),
            Err(_) => true,
        };
        queue_empty && self.workers.iter().all(|w| w.waiting() == 0) && self.wanted.is_empty()
    }

    /// Number of textures held.
    pub fn texture_count(&self) -> usize {
        self.textures.len()
    }
}

impl Drop for Thumbnails {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.shutdown = true;
            q.jobs.clear();
        }
        self.shared.wake.notify_all();
    }
}

fn worker(shared: &Shared, job: &Job<Made>, disk: Option<&Path>) {
    loop {
        let path = {
            let Ok(mut q) = shared.queue.lock() else {
                return;
            };
            loop {
                if q.shutdown {
                    return;
                }
                if let Some(p) = q.jobs.pop_front() {
                    if q.in_progress.insert(p.clone()) {
                        break p;
                    }
                    continue;
                }
                q = match shared.wake.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        let made = make_thumbnail(&path, disk);
        if let Ok(mut q) = shared.queue.lock() {
            q.in_progress.remove(&path);
        }
        if !job.report((path, made)) {
            return;
        }
    }
}

/// Disk-cache key of a file's thumbnail: identity and size of the file, its modification time and
/// the thumbnail size. On Unix the identity is the inode, so a relabel (a rename) keeps the entry.
pub fn cache_key(path: &Path, px: u32) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mut h = Sha256::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        h.update(meta.dev().to_le_bytes());
        h.update(meta.ino().to_le_bytes());
    }
    #[cfg(not(unix))]
    h.update(path.as_os_str().as_encoded_bytes());
    h.update(meta.len().to_le_bytes());
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    h.update(mtime.as_nanos().to_le_bytes());
    h.update(px.to_le_bytes());
    Some(hex::encode(h.finalize()))
}

fn cache_file(disk: &Path, key: &str) -> PathBuf {
    disk.join(&key[..2]).join(format!("{key}.jpg"))
}

/// Makes (or reads from the disk cache) the thumbnail of one file.
pub fn make_thumbnail(path: &Path, disk: Option<&Path>) -> Outcome<ColorImage> {
    let cached = disk.and_then(|d| cache_key(path, THUMB_PX).map(|k| cache_file(d, &k)));
    if let Some(file) = &cached
        && let Ok(bytes) = std::fs::read(file)
        && let Ok(img) = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
    {
        let rgb = img.to_rgb8();
        return Ok(ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw()));
    }
    let rgb = gc_core::imaging::load_rgb(path).map_err(|e| short_reason(&e.to_string(), path))?;
    let small = image::DynamicImage::ImageRgb8(rgb).thumbnail(THUMB_PX, THUMB_PX).to_rgb8();
    if let Some(file) = &cached {
        write_cache(file, &small);
    }
    Ok(ColorImage::from_rgb([small.width() as usize, small.height() as usize], small.as_raw()))
}

fn write_cache(file: &Path, img: &image::RgbImage) {
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let mut buf = Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85);
    if img.write_with_encoder(enc).is_err() {
        return;
    }
    let tmp = dir.join(format!(".{}.{:?}.tmp", std::process::id(), std::thread::current().id()));
    if std::fs::write(&tmp, buf.get_ref()).is_ok() && std::fs::rename(&tmp, file).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The reason without the (long) path, which the grid shows elsewhere.
fn short_reason(reason: &str, path: &Path) -> String {
    reason.replace(&format!("{} ", path.display()), "").replace(&path.display().to_string(), "this file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Longest any wait below may take: a safety net against a hang, never what decides a test.
    const SAFETY_NET: Duration = Duration::from_secs(120);

    /// Overwrites `path` in place with bytes no decoder reads, keeping what the disk-cache key is
    /// made of (the inode, the length and the modification time), so only the cache can still
    /// give its thumbnail.
    fn make_undecodable_keeping_the_key(path: &Path) {
        let meta = std::fs::metadata(path).unwrap();
        let mtime = meta.modified().unwrap();
        std::fs::write(path, vec![0u8; meta.len() as usize]).unwrap();
        std::fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
        assert!(gc_core::imaging::load_rgb(path).is_err(), "the source must be unreadable now");
    }

    /// A pool on a runtime whose wake-ups arrive on the returned channel.
    fn pool(disk: Option<PathBuf>, cache_root: &Path) -> (Thumbnails, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rt = Runtime::new(
            gc_core::context::Context::cpu_with_cache(cache_root),
            Arc::new(move || {
                let _ = tx.lock().map(|t| t.send(()));
            }),
        );
        (Thumbnails::new(2, disk, &rt), rx)
    }

    /// Runs frames asking for `paths` until every one is ready or failed; each next frame waits for
    /// a worker's wake-up (the deadline is only a safety net).
    fn settle(t: &mut Thumbnails, woken: &mpsc::Receiver<()>, paths: &[&Path]) -> Vec<Thumb> {
        let ctx = egui::Context::default();
        let deadline = Instant::now() + SAFETY_NET;
        loop {
            ctx.run_ui(Default::default(), |_| {}).textures_delta.clear();
            t.begin_frame(&ctx);
            let got: Vec<Thumb> = paths.iter().map(|p| t.get(p)).collect();
            t.end_frame();
            if got.iter().all(|g| !matches!(g, Thumb::Loading)) {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(woken.recv_timeout(left).is_ok(), "the thumbnail pool never delivered");
        }
    }

    #[test]
    fn thumbnails_are_cached_on_disk_and_bad_files_explain_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(400, 200, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 9]));
        let p = dir.path().join("a.png");
        img.save(&p).unwrap();
        let disk = dir.path().join("cache");
        let t = make_thumbnail(&p, Some(&disk)).unwrap();
        assert_eq!(t.size, [THUMB_PX as usize, THUMB_PX as usize / 2]);
        let key = cache_key(&p, THUMB_PX).unwrap();
        let file = cache_file(&disk, &key);
        assert!(file.exists());

        // The second call reads the disk cache: the source no longer decodes, yet the thumbnail
        // comes back, pixel for pixel the cached JPEG.
        make_undecodable_keeping_the_key(&p);
        assert_eq!(cache_key(&p, THUMB_PX).unwrap(), key, "same inode, length and time: same key");
        let again = make_thumbnail(&p, Some(&disk)).expect("the thumbnail comes from the disk cache");
        let cached = image::open(&file).unwrap().to_rgb8();
        assert_eq!(again.size, [cached.width() as usize, cached.height() as usize]);
        assert!(again == ColorImage::from_rgb(again.size, cached.as_raw()), "the pixels are the cached JPEG's");
        assert!(make_thumbnail(&p, None).is_err(), "without the cache the file cannot be read");

        // A rename keeps the key (same inode, size and time).
        let q = dir.path().join("b.png");
        std::fs::rename(&p, &q).unwrap();
        #[cfg(unix)]
        assert_eq!(cache_key(&q, THUMB_PX).unwrap(), key);

        let bad = dir.path().join("bad.jpg");
        std::fs::write(&bad, b"not an image").unwrap();
        let e = make_thumbnail(&bad, Some(&disk)).unwrap_err().to_string();
        assert!(e.contains("not a readable image"), "{e}");
        assert!(!e.contains(&dir.path().display().to_string()), "{e}");
    }

    #[test]
    fn a_second_pool_shows_the_thumbnail_from_the_disk_cache() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        image::RgbImage::from_fn(300, 240, |x, y| image::Rgb([(x % 256) as u8, 40, (y % 256) as u8])).save(&p).unwrap();
        let disk = dir.path().join("thumbs");
        {
            let (mut first, woken) = pool(Some(disk.clone()), dir.path());
            let got = settle(&mut first, &woken, &[&p]);
            assert!(matches!(got[0], Thumb::Ready(_)), "the first pool decodes the photo");
        }
        make_undecodable_keeping_the_key(&p);
        let (mut second, woken) = pool(Some(disk), dir.path());
        let got = settle(&mut second, &woken, &[&p]);
        match &got[0] {
            Thumb::Ready(t) => assert_eq!(t.size, egui::vec2(THUMB_PX as f32, 128.0)),
            Thumb::Failed(why) => panic!("the disk cache was not read: {why}"),
            Thumb::Loading => unreachable!(),
        }
        assert_eq!(second.texture_count(), 1);
    }

    #[test]
    fn pool_delivers_and_failures_do_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("g.png");
        image::RgbImage::from_pixel(50, 50, image::Rgb([200, 10, 10])).save(&good).unwrap();
        let bad = dir.path().join("b.png");
        std::fs::write(&bad, b"").unwrap();
        let (mut t, woken) = pool(None, dir.path());
        let got = settle(&mut t, &woken, &[&good, &bad]);
        assert!(matches!(got[0], Thumb::Ready(_)));
        assert!(matches!(got[1], Thumb::Failed(_)));
        assert_eq!(t.texture_count(), 1);
    }
}
