//! The threads ISAPI extensions run on, as IIS's worker keeps a thread
//! pool for them: an extension may block (a database call, a read of the
//! request body), so it never runs on the thread that serves the queue.
//!
//! The pool is built for the common case of fast calls under load: calls
//! queue up and the threads already running take them one after another,
//! without a thread switch or a wake-up for each call (a general-purpose
//! blocking pool hands every call to a thread of its own, and on a busy
//! machine those hand-offs cost as much as the calls). A thread is added
//! only when the oldest queued call has waited [`GROW_AFTER`] (every
//! thread is busy, perhaps blocked), up to the pool's limit, by a watcher
//! thread that sleeps while nothing is queued; a thread idle for
//! [`IDLE_EXIT`] ends, the last one excepted. Finished calls wake their
//! callers in batches, through one task on the caller's runtime
//! ([`Finished`]), for the same reason.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How long a queued call may wait before another thread is started.
pub const GROW_AFTER: Duration = Duration::from_millis(10);
/// How long a thread with nothing to do waits before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(30);
/// How long the watcher looks at an empty queue before it sleeps until
/// the next call.
const WATCH_IDLE: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce() + Send>;

pub struct CallPool {
    shared: Arc<Shared>,
    finished: Arc<Finished>,
}

/// One call's result, as its caller waits for it.
enum Slot<T> {
    Waiting(Option<Waker>),
    Done(Option<T>),
    Taken,
}

fn lock_slot<T>(slot: &Mutex<Slot<T>>) -> MutexGuard<'_, Slot<T>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where finished calls wake their callers. Waking a task of the
/// runtime from a pool thread costs a system call (the runtime's event
/// loop is woken through a file descriptor) and a call takes a few
/// microseconds, so a wake-up for each would cost as much as the call:
/// instead the callers' wakers are gathered here and one task on the
/// runtime, woken once for all those gathered, wakes them from there
/// (which is as cheap as a function call).
struct Finished {
    state: Mutex<FinishedState>,
}

#[derive(Default)]
struct FinishedState {
    /// Callers whose calls have ended, to be woken by the dispatcher.
    pending: Vec<Waker>,
    /// The dispatcher, while it waits for finished calls.
    dispatcher: Option<Waker>,
    /// A dispatcher task runs (on the runtime of the first caller); with
    /// none (no runtime, or its runtime ended) pool threads wake callers
    /// themselves.
    running: bool,
    /// The pool is gone: the dispatcher ends.
    closed: bool,
}

impl Finished {
    fn lock(&self) -> MutexGuard<'_, FinishedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the dispatcher on the caller's runtime if none runs.
    fn ensure_dispatcher(self: &Arc<Self>) {
        let mut state = self.lock();
        if state.running || state.closed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.running = true;
        drop(state);
        // The guard goes into the task at once: dropped with it even if it
        // never ran (a runtime may end before polling it).
        runtime.spawn(dispatch(DispatcherGone(self.clone())));
    }

    /// A pool thread's call for `waker`'s task has ended.
    fn wake(&self, waker: Waker) {
        let mut state = self.lock();
        if !state.running {
            drop(state);
            waker.wake();
            return;
        }
        state.pending.push(waker);
        // Only the first of a batch wakes the dispatcher: it takes all
        // that are there when it runs.
        let dispatcher = if state.pending.len() == 1 {
            state.dispatcher.take()
        } else {
            None
        };
        drop(state);
        if let Some(d) = dispatcher {
            d.wake();
        }
    }
}

/// Ends the dispatcher's watch when its task ends (the pool closed, or
/// the runtime shut down with the task in it): callers still pending are
/// woken, and later ones are woken by the pool threads.
struct DispatcherGone(Arc<Finished>);

impl Drop for DispatcherGone {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.running = false;
        state.dispatcher = None;
        let pending = std::mem::take(&mut state.pending);
        drop(state);
        pending.into_iter().for_each(Waker::wake);
    }
}

/// The dispatcher: wakes, from the runtime's own thread, the callers
/// whose calls have ended.
async fn dispatch(gone: DispatcherGone) {
    loop {
        let batch = std::future::poll_fn(|cx| {
            let mut state = gone.0.lock();
            if !state.pending.is_empty() {
                return Poll::Ready(Some(std::mem::take(&mut state.pending)));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            state.dispatcher = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match batch {
            Some(wakers) => wakers.into_iter().for_each(Waker::wake),
            None => return,
        }
    }
}

impl Drop for CallPool {
    fn drop(&mut self) {
        let mut state = self.finished.lock();
        state.closed = true;
        let dispatcher = state.dispatcher.take();
        drop(state);
        if let Some(d) = dispatcher {
            d.wake();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Pool threads wait here for calls.
    ready: Condvar,
    /// The watcher waits here while nothing is queued.
    wake_watcher: Condvar,
    max_threads: usize,
}

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum Watcher {
    #[default]
    None,
    Running,
    Parked,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<(Instant, Job)>,
    threads: usize,
    idle: usize,
    watcher: Watcher,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl CallPool {
    pub fn new(max_threads: usize) -> CallPool {
        CallPool {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                ready: Condvar::new(),
                wake_watcher: Condvar::new(),
                max_threads: max_threads.max(1),
            }),
            finished: Arc::new(Finished {
                state: Mutex::default(),
            }),
        }
    }

    /// Runs `call` on a pool thread; its result, or `None` if it
    /// panicked.
    pub fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Option<T>> {
        let slot = Arc::new(Mutex::new(Slot::Waiting(None)));
        let filled = slot.clone();
        let finished = self.finished.clone();
        finished.ensure_dispatcher();
        self.submit(Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).ok();
            let waiting = std::mem::replace(&mut *lock_slot(&filled), Slot::Done(result));
            if let Slot::Waiting(Some(waker)) = waiting {
                finished.wake(waker);
            }
        }));
        std::future::poll_fn(move |cx| {
            let mut slot = lock_slot(&slot);
            match std::mem::replace(&mut *slot, Slot::Taken) {
                Slot::Done(result) => Poll::Ready(result),
                Slot::Waiting(_) => {
                    *slot = Slot::Waiting(Some(cx.waker().clone()));
                    Poll::Pending
                }
                Slot::Taken => Poll::Ready(None),
            }
        })
    }

    /// Runs `call` on a pool thread, not waiting for it.
    pub fn spawn(&self, call: impl FnOnce() + Send + 'static) {
        self.submit(Box::new(call));
    }

    fn submit(&self, job: Job) {
        let mut state = lock(&self.shared);
        state.jobs.push_back((Instant::now(), job));
        let wake_thread = state.idle > 0;
        let start_thread = state.threads == 0;
        if start_thread {
            state.threads += 1;
        }
        // Whatever the threads do, the watcher sees that calls are
        // taken in time (a woken thread may take another call first and
        // block in it).
        let watcher = state.watcher;
        if watcher != Watcher::Running {
            state.watcher = Watcher::Running;
        }
        drop(state);
        if wake_thread {
            self.shared.ready.notify_one();
        }
        if start_thread {
            spawn_thread(&self.shared);
        }
        match watcher {
            Watcher::None => spawn_watcher(&self.shared),
            Watcher::Parked => self.shared.wake_watcher.notify_one(),
            Watcher::Running => {}
        }
    }
}

fn spawn_thread(shared: &Arc<Shared>) {
    let pool = shared.clone();
    let started = std::thread::Builder::new()
        .name("isapi".into())
        .spawn(move || serve(&pool));
    if let Err(e) = started {
        tracing::warn!(error = %e, "no thread for ISAPI calls could be started");
        lock(shared).threads -= 1;
    }
}

/// A pool thread: calls, one after another, until idle too long.
fn serve(shared: &Shared) {
    let mut state = lock(shared);
    loop {
        if let Some((_, job)) = state.jobs.pop_front() {
            drop(state);
            // A panic is the call's: the thread goes on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            state = lock(shared);
            continue;
        }
        state.idle += 1;
        let (next, waited) = shared
            .ready
            .wait_timeout(state, IDLE_EXIT)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if waited.timed_out() && state.jobs.is_empty() && state.threads > 1 {
            state.threads -= 1;
            return;
        }
    }
}

/// Adds a thread whenever the oldest queued call has waited too long
/// (every thread is busy, perhaps blocked in a module); sleeps while
/// nothing is queued.
fn spawn_watcher(shared: &Arc<Shared>) {
    let watched = shared.clone();
    let started = std::thread::Builder::new()
        .name("isapi-watch".into())
        .spawn(move || watch(&watched));
    if started.is_err() {
        lock(shared).watcher = Watcher::None;
    }
}

fn watch(shared: &Arc<Shared>) {
    let mut empty_since: Option<Instant> = None;
    loop {
        std::thread::sleep(GROW_AFTER);
        let mut state = lock(shared);
        let Some(oldest) = state.jobs.front().map(|(at, _)| *at) else {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= WATCH_IDLE {
                state.watcher = Watcher::Parked;
                while state.watcher == Watcher::Parked {
                    state = shared
                        .wake_watcher
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                }
                empty_since = None;
            }
            continue;
        };
        empty_since = None;
        if oldest.elapsed() >= GROW_AFTER && state.threads < shared.max_threads {
            state.threads += 1;
            drop(state);
            spawn_thread(shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_and_a_blocked_thread_gets_company() {
        let pool = CallPool::new(4);
        assert_eq!(pool.run(|| 2 + 2).await, Some(4));
        // A call that blocks does not hold up the next one for long.
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let stuck = pool.run(move || blocked.recv().is_ok());
        let started = Instant::now();
        assert_eq!(pool.run(|| "next").await, Some("next"));
        assert!(started.elapsed() < Duration::from_secs(2));
        release.send(()).unwrap();
        assert_eq!(stuck.await, Some(true));
        // A panicking call gives `None`, and the pool goes on.
        assert_eq!(pool.run(|| -> u8 { panic!("in the call") }).await, None);
        assert_eq!(pool.run(|| 1).await, Some(1));
    }

    #[test]
    fn callers_are_woken_through_their_runtime_and_after_it_ends() {
        let pool = Arc::new(CallPool::new(2));
        for _ in 0..2 {
            // A runtime of its own each time: the dispatcher of the first
            // ends with it, and the second starts another.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let pool = pool.clone();
            let sum = runtime.block_on(async move {
                let calls: Vec<_> = (0..200u64).map(|i| pool.run(move || i)).collect();
                let mut sum = 0;
                for call in calls {
                    sum += call.await.unwrap();
                }
                sum
            });
            assert_eq!(sum, (0..200).sum::<u64>());
        }
        // Outside any runtime, the pool threads wake the caller.
        let call = pool.run(|| "no runtime");
        assert_eq!(block_on_here(call), Some("no runtime"));
    }

    /// Polls a future to its end on this thread, parking between polls.
    fn block_on_here<F: std::future::Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }
}
