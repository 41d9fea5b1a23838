//! Classifying a list of photos at the network's speed, from ten photos to a hundred thousand.
//!
//! Worker threads (one per core) take the photos in order and read, decode, find the faces and
//! prepare the network inputs of each; meanwhile this thread gathers whatever inputs are ready,
//! from any photos, into batches and runs the network and the head on them. A slow photo delays
//! only its own result, never a batch. Results are handed back in the order of the input; at most
//! [`StreamOptions::window`] photos are between being taken and being handed back, so memory stays
//! bounded however long the list (the list itself is an iterator, read as the workers need it).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::classify::{Classifier, FacePrediction, ImagePrediction};
use crate::error::Result;
use crate::face::FaceRegion;
use crate::metrics::argmax;

/// How a stream is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Threads that decode and find faces (default: one per core).
    pub workers: usize,
    /// Network inputs per batch once the workers keep up (default 16).
    pub batch: usize,
    /// Most photos taken but not yet handed back (default 64).
    pub window: usize,
    /// Longest wait for more inputs before a batch smaller than `batch` runs (default 30 ms).
    pub linger: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { workers: cores, batch: 16, window: 64, linger: Duration::from_millis(30) }
    }
}

/// One photo of the list: its path, or the path with the reason it cannot be read.
pub type StreamItem = std::result::Result<PathBuf, (PathBuf, String)>;

/// What became of one photo: its prediction, or why it was skipped (a sentence for the user).
pub type Outcome = std::result::Result<ImagePrediction, String>;

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    /// Photos handed back (classified or skipped).
    pub handed_back: usize,
    /// True when `cancel` or `emit` stopped the stream before the end of the list.
    pub cancelled: bool,
}

/// A photo whose inputs are ready for the network.
struct Prepared {
    index: usize,
    path: PathBuf,
    size: (u32, u32),
    regions: Vec<FaceRegion>,
    inputs: Vec<Vec<f32>>,
}

/// What a worker sends.
enum Message {
    Ready(Prepared),
    Skipped(usize, PathBuf, String),
}

/// The list and how far it has been taken and handed back, shared by the workers and this thread.
struct Gate<I> {
    items: I,
    taken: usize,
    handed_back: usize,
    stop: bool,
}

/// Classifies every photo of `items` with `classifier`, calling `emit` once per photo in input
/// order. Stops early when `cancel` is set or `emit` breaks (the photos handed back so far stay
/// handed back). A photo that cannot be decoded is handed back as an `Err` outcome and the others
/// go on; an error of the network itself ends the stream with that error.
pub fn classify_stream<I>(
    classifier: &Classifier,
    items: I,
    opts: &StreamOptions,
    cancel: &AtomicBool,
    mut emit: impl FnMut(PathBuf, Outcome) -> ControlFlow<()>,
) -> Result<StreamEnd>
where
    I: Iterator<Item = StreamItem> + Send,
{
    let window = opts.window.max(1);
    let gate = Mutex::new(Gate { items, taken: 0, handed_back: 0, stop: false });
    let moved = Condvar::new();
    let (tx, rx) = sync_channel::<Message>(window);
    std::thread::scope(|scope| {
        for w in 0..opts.workers.max(1) {
            let tx = tx.clone();
            let (gate, moved) = (&gate, &moved);
            std::thread::Builder::new()
                .name(format!("classify-prepare-{w}"))
                .spawn_scoped(scope, move || worker(classifier, gate, moved, window, cancel, &tx))
                .expect("spawn a classify worker thread");
        }
        drop(tx);
        let result = consume(classifier, &rx, opts, cancel, &gate, &moved, &mut emit);
        // Whatever ended the stream, let the workers go.
        lock(&gate).stop = true;
        moved.notify_all();
        drop(rx);
        result
    })
}

/// Locks the gate, whatever a panicking thread left in it (its fields stay consistent).
fn lock<I>(gate: &Mutex<Gate<I>>) -> MutexGuard<'_, Gate<I>> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// A worker: takes the next photo while the window allows, prepares it, sends it on.
fn worker<I: Iterator<Item = StreamItem>>(
    classifier: &Classifier,
    gate: &Mutex<Gate<I>>,
    moved: &Condvar,
    window: usize,
    cancel: &AtomicBool,
    tx: &SyncSender<Message>,
) {
    loop {
        let (index, item) = {
            let mut g = lock(gate);
            while !g.stop && g.taken >= g.handed_back + window && !cancel.load(Ordering::Relaxed) {
                g = moved
                    .wait_timeout(g, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            if g.stop || cancel.load(Ordering::Relaxed) {
                return;
            }
            let Some(item) = g.items.next() else { return };
            g.taken += 1;
            (g.taken - 1, item)
        };
        let message = match item {
            Err((path, why)) => Message::Skipped(index, path, why),
            Ok(path) => {
                let kept = path.clone();
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(classifier, index, path))) {
                    Ok(Ok(prepared)) => Message::Ready(prepared),
                    Ok(Err((path, why))) => Message::Skipped(index, path, why),
                    Err(_) => {
                        Message::Skipped(index, kept, "an internal error stopped its decoding (see the log)".into())
                    }
                }
            }
        };
        if tx.send(message).is_err() {
            return;
        }
    }
}

/// Decodes one photo and prepares one network input per face (or the whole image); on failure
/// the path back with the reason.
fn prepare(classifier: &Classifier, index: usize, path: PathBuf) -> std::result::Result<Prepared, (PathBuf, String)> {
    let p = &classifier.pipeline;
    let photo = match p.load_photo(&path) {
        Ok(photo) => photo,
        Err(e) => return Err((path, crate::error::describe(&e))),
    };
    let regions = match p.regions(&photo.image) {
        Ok(r) => r,
        Err(e) => return Err((path, crate::error::describe(&e))),
    };
    let inputs = regions.iter().map(|r| p.input(&photo.image, r)).collect();
    // Boxes in the full photo's pixels, as `Classifier::classify_file` gives them.
    let regions = regions.into_iter().map(|r| r.scaled(photo.scale)).collect();
    Ok(Prepared { index, path, size: photo.full_size, regions, inputs })
}

/// This thread's side: batches ready inputs, runs the network, hands results back in order.
fn consume<I>(
    classifier: &Classifier,
    rx: &Receiver<Message>,
    opts: &StreamOptions,
    cancel: &AtomicBool,
    gate: &Mutex<Gate<I>>,
    moved: &Condvar,
    emit: &mut impl FnMut(PathBuf, Outcome) -> ControlFlow<()>,
) -> Result<StreamEnd> {
    let mut pending: Vec<Prepared> = Vec::new();
    let mut pending_inputs = 0usize;
    let mut oldest = Instant::now();
    let mut finished: BTreeMap<usize, (PathBuf, Outcome)> = BTreeMap::new();
    let mut next = 0usize;
    let mut open = true;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(StreamEnd { handed_back: next, cancelled: true });
        }
        // Gather: block when there is nothing to run, else wait at most until the oldest pending
        // input has lingered `opts.linger`.
        let message = if !open {
            None
        } else if pending.is_empty() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            }
        } else {
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    None
                }
                Err(TryRecvError::Empty) => {
                    let left = opts.linger.saturating_sub(oldest.elapsed());
                    if pending_inputs >= opts.batch || left.is_zero() {
                        None
                    } else {
                        match rx.recv_timeout(left) {
                            Ok(m) => Some(m),
                            Err(RecvTimeoutError::Timeout) => None,
                            Err(RecvTimeoutError::Disconnected) => {
                                open = false;
                                None
                            }
                        }
                    }
                }
            }
        };
        let waited_out = message.is_none();
        match message {
            Some(Message::Skipped(index, path, why)) => {
                finished.insert(index, (path, Err(why)));
            }
            Some(Message::Ready(p)) => {
                if pending.is_empty() {
                    oldest = Instant::now();
                }
                pending_inputs += p.inputs.len();
                pending.push(p);
                if pending_inputs < opts.batch.max(1) {
                    continue;
                }
            }
            None => {}
        }
        if !pending.is_empty() && (waited_out || pending_inputs >= opts.batch.max(1)) {
            for (index, path, outcome) in run_batch(classifier, std::mem::take(&mut pending))? {
                finished.insert(index, (path, outcome));
            }
            pending_inputs = 0;
        }
        let before = next;
        // Cancel is checked before each photo handed back, so none is handed back after it.
        while !cancel.load(Ordering::Relaxed)
            && let Some((path, outcome)) = finished.remove(&next)
        {
            let flow = emit(path, outcome);
            next += 1;
            if flow.is_break() {
                return Ok(StreamEnd { handed_back: next, cancelled: true });
            }
        }
        if next != before {
            lock(gate).handed_back = next;
            moved.notify_all();
        }
        // A cancel during the hand-back leaves photos finished but not handed back; the workers
        // stop on it too, so the channel may close in the same round.
        if cancel.load(Ordering::Relaxed) {
            return Ok(StreamEnd { handed_back: next, cancelled: true });
        }
        if !open && pending.is_empty() {
            debug_assert!(finished.is_empty(), "every photo taken was handed back");
            return Ok(StreamEnd { handed_back: next, cancelled: false });
        }
    }
}

/// Runs the network and the head on the inputs of `batch`; one outcome per photo.
fn run_batch(classifier: &Classifier, mut batch: Vec<Prepared>) -> Result<Vec<(usize, PathBuf, Outcome)>> {
    let inputs: Vec<Vec<f32>> = batch.iter_mut().flat_map(|p| std::mem::take(&mut p.inputs)).collect();
    let feats = classifier.pipeline.features(&inputs)?;
    drop(inputs);
    let mut probs = classifier.probs_of_features(&feats)?.into_iter();
    Ok(batch
        .into_iter()
        .map(|p| {
            let faces = p
                .regions
                .into_iter()
                .map(|region| {
                    let probs = probs.next().expect("one probability vector per input");
                    FacePrediction { class: argmax(&probs), region, probs }
                })
                .collect();
            (p.index, p.path.clone(), Ok(ImagePrediction { path: p.path, image_size: p.size, faces }))
        })
        .collect())
}
