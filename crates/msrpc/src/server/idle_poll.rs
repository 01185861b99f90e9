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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;

/// The window inetsrv uses by default: a few client round trips.
pub const DEFAULT_IDLE_POLL: Duration = Duration::from_micros(100);

/// The shared state of one server's polling task.
pub(crate) struct IdlePoll {
    window: Duration,
    epoch: Instant,
    /// When the last PDU came, in nanoseconds since `epoch`.
    last_pdu: AtomicU64,
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
        let workers = runtime.metrics().num_workers();
        if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread && workers != 1 {
            return Err(IdlePollError::SeveralWorkers(workers));
        }
        let poll = Arc::new(IdlePoll {
            window,
            epoch: Instant::now(),
            last_pdu: AtomicU64::new(0),
            sleeping: AtomicBool::new(true),
            wake: Notify::new(),
        });
        runtime.spawn(Arc::clone(&poll).run());
        Ok(poll)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A PDU came: poll for another window from now.
    pub(crate) fn pdu_arrived(&self) {
        self.last_pdu.store(self.now(), Ordering::Relaxed);
        if self.sleeping.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    fn in_window(&self) -> bool {
        let since = self
            .now()
            .saturating_sub(self.last_pdu.load(Ordering::Relaxed));
        since < u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX)
    }

    async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            self.sleeping.store(false, Ordering::Relaxed);
            while self.in_window() {
                tokio::task::yield_now().await;
            }
            self.sleeping.store(true, Ordering::Relaxed);
            // A PDU between the last check and the flag: its notify_one
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
    }

    #[test]
    fn polls_for_a_window_after_a_pdu_then_sleeps() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let poll = IdlePoll::start(Duration::from_millis(20)).unwrap();
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
        });
    }
}
