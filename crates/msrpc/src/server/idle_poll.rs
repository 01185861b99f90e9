//! Polling between calls instead of sleeping.
//!
//! When the server has nothing to do, its thread sleeps in `epoll_wait`
//! and its CPU goes idle. Waking it costs far more than a small call does
//! where the CPU is a virtual one whose idle state is a halt (a guest with
//! halt polling off pays one VM exit and one host wake-up per sleep:
//! about 30 µs here, against 4 µs of work for the call). A client making
//! calls back to back then waits on that wake-up after each answer.
//!
//! So for a short window after each PDU the runtime keeps polling its I/O
//! driver without blocking, as a guest's halt polling would, and only then
//! sleeps. A task does it by yielding in a loop: tokio polls the driver
//! (with a zero timeout) before it runs a yielded task again, so a PDU
//! that arrives in the window is picked up with no wake-up at all. After
//! the window the task waits on a [`Notify`] that the next PDU signals.
//! An idle server costs nothing; a busy one already never sleeps; what is
//! spent is at most one window of polling per pause in the traffic.
//!
//! It needs a runtime whose one worker drives the I/O itself (a
//! current-thread runtime, or a multi-thread one with one worker): with
//! several workers the driver may be held by one asleep in `epoll_wait`
//! while the polling one spins for nothing, so it is refused there.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Notify;

/// The window inetsrv uses by default: a few client round trips.
pub const DEFAULT_IDLE_POLL: Duration = Duration::from_micros(100);

/// How many looks at the flag the polling task makes per clock read.
const LOOKS_PER_CLOCK_READ: u32 = 8;

thread_local! {
    /// The polling task of the runtime whose worker this thread is.
    static POLLER: OnceCell<Arc<IdlePoll>> = const { OnceCell::new() };
}

/// A PDU was read on this thread: its runtime's polling task, if it has
/// one, polls for another window. A runtime without one (where the RPC
/// proxy's channels are served when its runtime has several workers) is
/// left alone, and no other runtime's thread spins for PDUs it never
/// reads.
pub(crate) fn pdu_arrived() {
    POLLER.with(|poller| {
        if let Some(poll) = poller.get() {
            poll.pdu_arrived();
        }
    });
}

/// The shared state of one server's polling task.
pub(crate) struct IdlePoll {
    window: Duration,
    /// A PDU came since the polling task last looked. A flag, not a time:
    /// the clock is read by the polling task, never on a call's path.
    fresh: AtomicBool,
    sleeping: AtomicBool,
    wake: Notify,
}

/// Why polling between calls cannot be turned on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdlePollError {
    #[error("polling between calls needs to run inside a tokio runtime")]
    NoRuntime,
    #[error(
        "polling between calls needs a runtime with one worker thread (this one has {0}): \
         its worker must be the one that waits for I/O"
    )]
    SeveralWorkers(usize),
    #[error("polling between calls is already on")]
    AlreadyOn,
}

impl IdlePoll {
    /// Starts the polling task on the current runtime.
    pub(crate) fn start(window: Duration) -> Result<Arc<IdlePoll>, IdlePollError> {
        let runtime = Handle::try_current().map_err(|_| IdlePollError::NoRuntime)?;
        // A current-thread runtime counts one worker too.
        let workers = runtime.metrics().num_workers();
        if workers != 1 {
            return Err(IdlePollError::SeveralWorkers(workers));
        }
        let poll = Arc::new(IdlePoll {
            window,
            fresh: AtomicBool::new(false),
            sleeping: AtomicBool::new(true),
            wake: Notify::new(),
        });
        runtime.spawn(Arc::clone(&poll).run());
        Ok(poll)
    }

    /// A PDU came: poll for another window from now.
    fn pdu_arrived(&self) {
        self.fresh.store(true, Ordering::Relaxed);
        if self.sleeping.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    async fn run(self: Arc<Self>) {
        // The runtime's one worker: every task of it runs here. A second
        // polling task for the same runtime has nothing to do.
        if POLLER.with(|poller| poller.set(Arc::clone(&self)).is_err()) {
            return;
        }
        loop {
            self.wake.notified().await;
            self.sleeping.store(false, Ordering::Relaxed);
            let mut until = Instant::now() + self.window;
            // The clock is read once every few looks, not at each: a busy
            // server looks once per scheduler tick, and each read costs
            // about as much as a PDU's decoding. A PDU seen in between
            // moves the deadline at the next read, a few looks late.
            let mut fresh = false;
            let mut looks = 0u32;
            loop {
                tokio::task::yield_now().await;
                fresh |= self.fresh.swap(false, Ordering::Relaxed);
                looks = looks.wrapping_add(1);
                if !looks.is_multiple_of(LOOKS_PER_CLOCK_READ) {
                    continue;
                }
                // Politely, once every few looks: a thread of this process
                // that shares the CPU (the listener and the RPC proxy,
                // feeding this endpoint through RPC over HTTP) runs now
                // instead of after the window; alone on its CPU this
                // returns at once.
                std::thread::yield_now();
                let now = Instant::now();
                if std::mem::take(&mut fresh) {
                    until = now + self.window;
                } else if now >= until {
                    break;
                }
            }
            self.sleeping.store(true, Ordering::Relaxed);
            // A PDU between the last look and the flag: its notify_one
            // left a permit, so the next wait returns at once.
        }
    }

    /// Whether the task is polling now (for the tests).
    #[cfg(test)]
    fn is_polling(&self) -> bool {
        !self.sleeping.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_on_a_runtime_with_several_workers() {
        assert_eq!(
            IdlePoll::start(Duration::from_micros(50)).err(),
            Some(IdlePollError::NoRuntime)
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let _guard = runtime.enter();
        assert_eq!(
            IdlePoll::start(Duration::from_micros(50)).err(),
            Some(IdlePollError::SeveralWorkers(2))
        );
        drop(_guard);
        let one_worker = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let _guard = one_worker.enter();
        assert!(IdlePoll::start(Duration::from_micros(50)).is_ok());
    }

    #[test]
    fn polls_for_a_window_after_a_pdu_then_sleeps() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A window long enough that a busy machine cannot pass it
            // between two lines of this test.
            let poll = IdlePoll::start(Duration::from_millis(300)).unwrap();
            tokio::task::yield_now().await;
            assert!(!poll.is_polling(), "idle before any PDU");
            poll.pdu_arrived();
            // The polling task runs whenever this one yields or sleeps.
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(poll.is_polling(), "polling just after a PDU");
            // Sleeping here while the window runs out: the polling task
            // keeps the runtime busy and then lets it sleep.
            let deadline = Instant::now() + Duration::from_secs(5);
            while poll.is_polling() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(!poll.is_polling(), "asleep once the window has passed");
            poll.pdu_arrived();
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(poll.is_polling(), "a new PDU starts a new window");
            // PDUs inside the window keep extending it: polling at every
            // look, for twice the window.
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert!(poll.is_polling(), "PDUs within the window extend it");
                poll.pdu_arrived();
            }
        });
    }
}
