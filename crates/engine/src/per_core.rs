//! How a backbone's forward pass uses the CPU's cores.
//!
//! Every forward pass runs on a worker of rayon's pool ([`on_pool`]). A large batch instead runs
//! its images on the cores separately, each core running the whole network on its own
//! single-thread pool ([`map_balanced`]). Splitting every layer across the cores (what each GEMM
//! does on its own) costs a barrier per layer, tiles of unequal size and caches that both cores
//! fill with each other's data; with images per core, each core keeps its activations in its own
//! cache and never waits for the other until the end. Both backbones use it: at batch 16
//! Inception-v3 ran 11% faster in five alternating runs (6.08 -> 6.74 images/s on average, CNHW
//! kernels), and faceres in NHWC had medians of 75.4 against 63.5 images/s over sixteen repeats.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use candle_core::{Result, Tensor};

/// Smallest slice, in images, worth running on a core of its own.
pub const MIN_IMAGES_PER_CORE: usize = 2;

/// One single-thread pool per core of rayon's global pool, built on first use.
fn pools() -> &'static [rayon::ThreadPool] {
    static POOLS: OnceLock<Vec<rayon::ThreadPool>> = OnceLock::new();
    POOLS.get_or_init(|| {
        (0..rayon::current_num_threads())
            .map_while(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("gc-core-{i}"))
                    .build()
                    .inspect_err(|e| tracing::warn!("no per-core pool {i}: {e}; layers split across cores instead"))
                    .ok()
            })
            .collect()
    })
}

/// Runs `f` on a worker thread of rayon's global pool and waits for it.
///
/// A network makes one parallel loop per layer. Started from a thread outside the pool, each loop
/// hands its work to the pool and sleeps until it is done, a wake-up per layer; started on a
/// worker, the caller does its share and the other workers steal the rest.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Runs the batch `x` (images along dim 0) through a network split in two phases, and returns
/// the rows of `late`'s output in the batch's order.
///
/// `early` runs on units of `unit` images, `late` on chunks of up to `per_late` units' early
/// outputs, concatenated (its rows one per image). With two or more cores and a large enough
/// batch, each core runs on its own single-thread pool: it takes units in turn from a shared
/// counter and runs `early` on them, then puts its outputs, in chunks, on a shared queue, from
/// which every core takes chunks for `late` until none are left. A core that the host slows down
/// (on a shared machine the two cores' speeds often differ by 1.3-2x for seconds at a time) so
/// takes less of both phases, and both finish within about one chunk of each other; a fixed half
/// of the batch each made the faster core wait for the slower. Small batches, and machines with
/// one core, run on the global pool ([`on_pool`]), where each layer splits across the cores.
pub fn map_balanced<E, L>(x: &Tensor, unit: usize, per_late: usize, early: E, late: L) -> Result<Tensor>
where
    E: Fn(&Tensor) -> Result<Tensor> + Sync,
    L: Fn(&Tensor) -> Result<Tensor> + Sync,
{
    let n = x.dim(0)?;
    let unit = unit.max(1);
    let units = n.div_ceil(unit);
    let len = |i: usize| unit.min(n - i * unit);
    let take = |i: usize| x.narrow(0, i * unit, len(i));
    let pools = pools();
    let cores = pools.len().min(n / MIN_IMAGES_PER_CORE);
    // One balanced map at a time: two at once would each hold one core's pool while waiting for
    // its other core's chunks, queued behind the other map's job (a deadlock). A map that finds
    // the cores taken runs on one pool instead, which waits on nothing of another map's.
    static BALANCED: Mutex<()> = Mutex::new(());
    let balanced = match BALANCED.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    #[cfg(test)]
    tests::LAST_BALANCED.set(cores >= 2 && balanced.is_some());
    if cores < 2 || balanced.is_none() {
        return on_pool(|| {
            let parts = (0..units).map(|i| early(&take(i)?)).collect::<Result<Vec<_>>>()?;
            late(&cat_all(parts)?)
        });
    }
    let next = AtomicUsize::new(0);
    let queue = LateQueue::new(cores);
    // One core's work: early units while any are left, then late chunks while any are left.
    let run_core = || -> Result<Vec<(Vec<usize>, Tensor)>> {
        // A panic on this core must not leave the others waiting for its chunks.
        let _guard = FailOnPanic(&queue);
        let (mut taken, mut parts) = (Vec::new(), Vec::new());
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= units {
                break;
            }
            match take(i).and_then(|u| early(&u)) {
                Ok(part) => parts.push(part),
                Err(e) => {
                    // Stop the other cores taking more work; the error is what the caller gets.
                    next.store(units, Ordering::Relaxed);
                    queue.fail();
                    return Err(e);
                }
            }
            taken.push(i);
        }
        // Chunks of near-equal size (9 units at 4 per chunk: 3, 3, 3 rather than 4, 4, 1).
        let (mut chunks, mut parts) = (Vec::new(), parts.into_iter());
        let count = taken.len().div_ceil(per_late.max(1));
        for i in 0..count {
            let ids = &taken[taken.len() * i / count..taken.len() * (i + 1) / count];
            chunks.push((ids.to_vec(), cat_all(parts.by_ref().take(ids.len()).collect())?));
        }
        queue.publish(chunks);
        let mut done = Vec::new();
        while let Some((ids, input)) = queue.next() {
            match late(&input) {
                Ok(out) => done.push((ids, out)),
                Err(e) => {
                    queue.fail();
                    return Err(e);
                }
            }
        }
        Ok(done)
    };
    let per_core = std::thread::scope(|s| {
        let running = pools[..cores].iter().map(|pool| s.spawn(|| pool.install(run_core))).collect::<Vec<_>>();
        running
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<_>>>()
    })?;
    // Put each unit's rows back in its place in the batch.
    let mut rows = Vec::with_capacity(units);
    for (ids, out) in per_core.into_iter().flatten() {
        let mut at = 0;
        for i in ids {
            rows.push((i, out.narrow(0, at, len(i))?));
            at += len(i);
        }
    }
    rows.sort_by_key(|(i, _)| *i);
    cat_all(rows.into_iter().map(|(_, r)| r).collect())
}

/// The late phase's shared work: chunks of early outputs (with their unit numbers), filled by
/// each core once its early phase ends.
struct LateQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

struct QueueState {
    chunks: Vec<(Vec<usize>, Tensor)>,
    /// Cores yet to publish their chunks.
    pending: usize,
    failed: bool,
}

/// Fails the queue if dropped during a panic.
struct FailOnPanic<'a>(&'a LateQueue);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail();
        }
    }
}

impl LateQueue {
    fn new(cores: usize) -> Self {
        Self {
            state: Mutex::new(QueueState { chunks: Vec::new(), pending: cores, failed: false }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one core's chunks.
    fn publish(&self, chunks: Vec<(Vec<usize>, Tensor)>) {
        let mut st = self.lock();
        st.chunks.extend(chunks);
        st.pending -= 1;
        self.changed.notify_all();
    }

    /// Ends the work of every core (one failed).
    fn fail(&self) {
        self.lock().failed = true;
        self.changed.notify_all();
    }

    /// The next chunk, waiting while other cores may still publish some; `None` when all is done.
    fn next(&self) -> Option<(Vec<usize>, Tensor)> {
        let mut st = self.lock();
        loop {
            if st.failed {
                return None;
            }
            if let Some(chunk) = st.chunks.pop() {
                return Some(chunk);
            }
            if st.pending == 0 {
                return None;
            }
            st = self.changed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Concatenates along dim 0, without a copy for a single part.
fn cat_all(mut parts: Vec<Tensor>) -> Result<Tensor> {
    if parts.len() == 1 { Ok(parts.remove(0)) } else { Tensor::cat(&parts, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `early` doubles each unit and tags it with its size; `late` adds the number of rows it got.
    fn run(x: &Tensor, unit: usize, seen: &std::sync::Mutex<Vec<(usize, usize)>>) -> Tensor {
        map_balanced(
            x,
            unit,
            2,
            |u| {
                seen.lock().unwrap().push((u.dim(0)?, rayon::current_num_threads()));
                u * 2.0
            },
            |v| v + v.dim(0)? as f64 * 1000.0,
        )
        .unwrap()
    }

    /// Tests that check which path a map took run one at a time (a map running elsewhere in
    /// this process sends the next to one pool).
    static PATH_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    thread_local! {
        /// Whether this thread's last map took the per-core path.
        pub(super) static LAST_BALANCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn units_come_back_in_order_and_small_batches_run_whole() {
        let _one_at_a_time = PATH_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let x = Tensor::arange(0f32, 14.0, &Device::Cpu).unwrap().reshape((7, 2)).unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let y = run(&x, 2, &seen);
        let doubled = (&x * 2.0).unwrap().to_vec2::<f32>().unwrap();
        let got = y.to_vec2::<f32>().unwrap();
        // Each row is its image doubled, plus 1000 x the rows `late` ran on with it.
        let mut late_rows = 0;
        for (g, d) in got.iter().zip(&doubled) {
            let extra = g[0] - d[0];
            assert_eq!(g[1] - d[1], extra, "one offset per row");
            assert!(extra >= 1000.0 && extra % 1000.0 == 0.0, "late ran on every row: {got:?}");
            late_rows = late_rows.max(extra as usize / 1000);
        }
        let seen = seen.into_inner().unwrap();
        let sizes: Vec<usize> = seen.iter().map(|s| s.0).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert_eq!(sizes.iter().filter(|&&s| s == 2).count(), 3, "units of 2 and a last one of 1: {sizes:?}");
        if LAST_BALANCED.get() {
            assert!(seen.iter().all(|&(_, threads)| threads == 1), "units run on single-thread pools");
            assert!(late_rows <= 4, "late chunks hold at most 2 units of 2 images: {got:?}");
        } else {
            assert_eq!(late_rows, 7, "one late pass over the whole batch");
        }
        let outside = std::thread::current().id();
        let (inside, on_worker) = on_pool(|| (std::thread::current().id(), rayon::current_thread_index().is_some()));
        assert!(on_worker && inside != outside, "runs on a worker of the global pool");
        let one = Tensor::zeros((1, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let y = run(&one, 4, &std::sync::Mutex::new(Vec::new()));
        assert_eq!(y.to_vec2::<f32>().unwrap(), vec![vec![1000.0; 3]]);
    }

    #[test]
    fn maps_from_several_threads_at_once_all_finish_with_their_own_rows() {
        // Two balanced maps at once used to deadlock: each held one core's pool and waited for
        // chunks queued behind the other's job. The deadline only stops a hang.
        let _one_at_a_time = PATH_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = std::sync::mpsc::channel();
        for t in 0..3 {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let base = (t * 100 + round) as f32;
                    let x = (Tensor::arange(0f32, 16.0, &Device::Cpu).unwrap() + f64::from(base)).unwrap();
                    let x = x.reshape((8, 2)).unwrap();
                    let y = map_balanced(&x, 1, 2, |u| u * 2.0, |v| Ok(v.clone())).unwrap();
                    assert_eq!(y.to_vec2::<f32>().unwrap(), (&x * 2.0).unwrap().to_vec2::<f32>().unwrap());
                }
                tx.send(t).unwrap();
            });
        }
        drop(tx);
        let deadline = std::time::Duration::from_secs(120);
        let finished: Vec<_> = (0..3).map(|_| rx.recv_timeout(deadline).expect("a map hung")).collect();
        assert_eq!(finished.len(), 3);
    }

    #[test]
    fn an_error_in_any_unit_or_late_pass_is_returned() {
        let _one_at_a_time = PATH_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let x = Tensor::zeros((8, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let first = |u: &Tensor| u.narrow(0, 0, 1)?.to_vec2::<f32>().map(|v| v[0][0]);
        // Image 6 is marked: whichever core takes its unit fails.
        let marked = x
            .slice_assign(&[6..7, 0..1], &Tensor::ones((1, 1), candle_core::DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let early_fails = map_balanced(
            &marked,
            1,
            2,
            |u| if first(u)? > 0.0 { candle_core::bail!("unit failed") } else { Ok(u.clone()) },
            |v| Ok(v.clone()),
        );
        assert!(early_fails.is_err());
        let late_fails = map_balanced(&x, 2, 1, |u| Ok(u.clone()), |_| candle_core::bail!("late failed"));
        assert!(late_fails.is_err());
        // A panic in one core's unit reaches the caller instead of leaving the other core waiting.
        let panics = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            map_balanced(
                &marked,
                1,
                2,
                |u| if first(u)? > 0.0 { panic!("unit panicked") } else { Ok(u.clone()) },
                |v| Ok(v.clone()),
            )
        }));
        assert!(panics.is_err());
        let fine = map_balanced(&marked, 3, 2, |u| Ok(u.clone()), |v| Ok(v.clone())).unwrap();
        assert_eq!(fine.to_vec2::<f32>().unwrap(), marked.to_vec2::<f32>().unwrap());
    }
}
