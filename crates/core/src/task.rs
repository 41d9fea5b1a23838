//! One runtime for background work.
//!
//! A [`Task`] runs a job on its own thread. The job reports progress through its [`Job`] handle,
//! checks a cancel flag between steps, and returns a result; a panic in the job becomes a
//! [`Panicked`] error instead of a lost thread. The owner never waits: it polls the task (the app
//! once per frame), and the [`Runtime`] wakes it whenever a job has news. The runtime also carries
//! the [`Context`] (device, models folder, cache root) that every job it starts works with.
//!
//! Jobs that borrow from their caller (feature extraction's producer) start with
//! [`Task::spawn_scoped`] and are the same type with the same rules.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Scope;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryIter, TryRecvError};

use crate::context::Context;

/// Called by a job whenever it has news for its owner (the app asks for a repaint).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Starts tasks that share one [`Context`] and one way of waking their owner.
#[derive(Clone)]
pub struct Runtime {
    ctx: Context,
    wake: Wake,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("ctx", &self.ctx).finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime whose jobs work with `ctx` and call `wake` when they have news.
    pub fn new(ctx: Context, wake: Wake) -> Self {
        Self { ctx, wake }
    }

    /// A runtime with nobody to wake (the CLI and tests poll or join).
    pub fn headless(ctx: Context) -> Self {
        Self::new(ctx, Arc::new(|| {}))
    }

    /// The device, models folder and cache root of every job.
    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// Runs `job` on a new thread named `name`.
    pub fn spawn<P, R>(&self, name: &str, job: impl FnOnce(&Job<P>) -> R + Send + 'static) -> Task<P, R>
    where
        P: Send + 'static,
        R: Send + 'static,
    {
        let (task, run) = Task::prepare(name, None, self.wake.clone(), job);
        if let Err(e) = std::thread::Builder::new().name(name.to_string()).spawn(run) {
            tracing::error!("cannot start background thread {name}: {e}");
        }
        task
    }
}

/// The job's side of a task: report progress, check for cancellation.
pub struct Job<P> {
    tx: Sender<P>,
    wake: Wake,
    cancel: Arc<AtomicBool>,
}

impl<P> Job<P> {
    /// Sends one progress message and wakes the owner. `false` once the owner has dropped the task,
    /// so a serving loop knows to stop.
    pub fn report(&self, p: P) -> bool {
        let sent = self.tx.send(p).is_ok();
        (self.wake)();
        sent
    }

    /// True once the owner asked the job to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The cancel flag, for library calls that take one.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

/// A job panicked; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the background task '{task}' stopped unexpectedly ({message}); see the log for details")]
pub struct Panicked {
    /// The task's name.
    pub task: String,
    /// The panic's message.
    pub message: String,
}

/// What polling a task found.
pub struct Polled<P, R> {
    /// Progress messages since the last poll, oldest first.
    pub progress: Vec<P>,
    /// The result, once (the task is then finished).
    pub done: Option<R>,
}

/// A job running on its own thread, owned by whoever polls it.
pub struct Task<P, R> {
    name: String,
    progress_rx: Receiver<P>,
    done_rx: Receiver<Result<R, Panicked>>,
    cancel: Arc<AtomicBool>,
    started: Instant,
    finished: bool,
}

impl<P: Send, R: Send> Task<P, R> {
    /// The task and the closure its thread runs. `capacity` bounds the progress queue (a job that
    /// gets ahead of its owner then waits), `None` leaves it unbounded.
    fn prepare<'a>(
        name: &str,
        capacity: Option<usize>,
        wake: Wake,
        job: impl FnOnce(&Job<P>) -> R + Send + 'a,
    ) -> (Self, impl FnOnce() + Send + 'a)
    where
        P: 'a,
        R: 'a,
    {
        let (ptx, prx) = capacity.map_or_else(crossbeam_channel::unbounded, crossbeam_channel::bounded);
        let (dtx, drx) = crossbeam_channel::bounded(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let handle = Job { tx: ptx, wake, cancel: cancel.clone() };
        let task_name = name.to_string();
        let run = move || {
            let result = catch_unwind(AssertUnwindSafe(|| job(&handle))).map_err(|payload| {
                let message = panic_message(payload.as_ref());
                tracing::error!("background task {task_name} panicked: {message}");
                Panicked { task: task_name, message }
            });
            let _ = dtx.send(result);
            let Job { tx, wake, .. } = handle;
            drop(tx);
            wake();
        };
        let task = Self {
            name: name.to_string(),
            progress_rx: prx,
            done_rx: drx,
            cancel,
            started: Instant::now(),
            finished: false,
        };
        (task, run)
    }

    /// Runs `job` on a thread of `scope`, so it may borrow from the caller; the progress queue
    /// holds at most `capacity` messages, so the job waits when it gets that far ahead.
    pub fn spawn_scoped<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        name: &str,
        capacity: usize,
        job: impl FnOnce(&Job<P>) -> R + Send + 'scope,
    ) -> Self
    where
        P: 'scope,
        R: 'scope,
    {
        let (task, run) = Self::prepare(name, Some(capacity), Arc::new(|| {}), job);
        if let Err(e) = std::thread::Builder::new().name(name.to_string()).spawn_scoped(scope, run) {
            tracing::error!("cannot start background thread {name}: {e}");
        }
        task
    }

    /// Collects progress and, once, the result. `Err` means the job panicked.
    pub fn poll(&mut self) -> Result<Polled<P, R>, Panicked> {
        let progress: Vec<P> = self.progress_rx.try_iter().collect();
        match self.finished() {
            None => Ok(Polled { progress, done: None }),
            Some(r) => r.map(|r| Polled { progress, done: Some(r) }),
        }
    }

    /// Progress messages waiting now, without blocking (take as many as a frame can use).
    pub fn progress(&self) -> TryIter<'_, P> {
        self.progress_rx.try_iter()
    }

    /// Progress messages sent and not yet collected.
    pub fn waiting(&self) -> usize {
        self.progress_rx.len()
    }

    /// The next progress message, waiting for it; `None` once the job has ended and every message
    /// was read (for consumers that are themselves background work).
    pub fn next_progress(&self) -> Option<P> {
        self.progress_rx.recv().ok()
    }

    /// The job's result once it ended, or `None` while it runs.
    pub fn finished(&mut self) -> Option<Result<R, Panicked>> {
        if self.finished {
            return None;
        }
        match self.done_rx.try_recv() {
            Ok(r) => {
                self.finished = true;
                Some(r)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.finished = true;
                Some(Err(Panicked { task: self.name.clone(), message: "its thread could not start".into() }))
            }
        }
    }

    /// Asks the job to stop (it checks the flag between steps).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// True once cancel was asked for.
    pub fn is_cancelling(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Seconds since the start.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn runtime(woken: Arc<AtomicUsize>) -> Runtime {
        let ctx = Context::cpu_with_cache(std::env::temp_dir().join("gc-task-tests"));
        Runtime::new(ctx, Arc::new(move || _ = woken.fetch_add(1, Ordering::SeqCst)))
    }

    /// Polls until the task is done; the deadline is only a safety net against a hang.
    fn wait<P: Send, R: Send>(t: &mut Task<P, R>) -> (Vec<P>, Result<R, Panicked>) {
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        let mut progress = Vec::new();
        loop {
            match t.poll() {
                Ok(p) => {
                    progress.extend(p.progress);
                    if let Some(r) = p.done {
                        return (progress, Ok(r));
                    }
                }
                Err(e) => return (progress, Err(e)),
            }
            assert!(Instant::now() < deadline, "the task never ended");
            std::thread::yield_now();
        }
    }

    #[test]
    fn progress_arrives_in_order_then_the_result_and_the_owner_is_woken() {
        let woken = Arc::new(AtomicUsize::new(0));
        let mut t = runtime(woken.clone()).spawn("count", |job: &Job<u32>| {
            for i in 0..5 {
                job.report(i);
            }
            "done"
        });
        let (progress, result) = wait(&mut t);
        assert_eq!(progress, vec![0, 1, 2, 3, 4]);
        assert_eq!(result, Ok("done"));
        assert!(woken.load(Ordering::SeqCst) >= 6, "woken per message and at the end");
        assert!(t.poll().unwrap().done.is_none(), "the result comes once");
    }

    #[test]
    fn a_panic_becomes_an_error_that_names_the_task() {
        let mut t = runtime(Arc::default()).spawn("boom", |_: &Job<()>| -> u8 { panic!("bad input 7") });
        let (_, result) = wait(&mut t);
        let e = result.unwrap_err();
        assert_eq!(e.task, "boom");
        assert!(e.message.contains("bad input 7"), "{e}");
    }

    #[test]
    fn cancel_reaches_the_job() {
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
        let mut t = runtime(Arc::default()).spawn("wait-for-cancel", move |job: &Job<()>| {
            go_rx.recv().unwrap();
            job.is_cancelled()
        });
        t.cancel();
        assert!(t.is_cancelling());
        go_tx.send(()).unwrap();
        assert_eq!(wait(&mut t).1, Ok(true));
    }

    #[test]
    fn a_scoped_job_borrows_and_waits_when_its_queue_is_full() {
        let data: Vec<u32> = (0..10).collect();
        let got: Vec<u32> = std::thread::scope(|s| {
            let t = Task::spawn_scoped(s, "scoped", 1, |job: &Job<u32>| {
                for v in &data {
                    if !job.report(*v) {
                        break;
                    }
                }
            });
            std::iter::from_fn(|| t.next_progress()).collect()
        });
        assert_eq!(got, data);
    }
}
