//! What the service's state machine asks of the machine it runs on: the
//! time, starting and killing worker processes, and their memory use. The
//! real host does it to the system; the state machine's tests give it a
//! fake that records what was started and killed and a clock they move by
//! hand, so timeouts, pings, recycling and rapid-fail protection are
//! tested without processes or waiting.

use std::time::Instant;

use tokio::sync::mpsc;
use worker_control::ToWorker;

use crate::process::{self, Launch};
use crate::service::Event;

/// A worker process the host started: its pid and the channel to it.
pub(crate) struct Started {
    pub pid: u32,
    pub to_worker: worker_control::Sender<ToWorker>,
}

/// The local wall-clock minute, for PeriodicRestartSchedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalMinute {
    pub hour: u32,
    pub minute: u32,
    /// Days since the common era, so the same minute on another day is new.
    pub day: i64,
}

pub(crate) trait Host: Send {
    /// The monotonic time every timeout is measured with.
    fn now(&self) -> Instant;
    fn local_minute(&self) -> LocalMinute;
    /// Starts worker `id`; what it says ([`Event::Worker`]) and its exit
    /// ([`Event::Exited`]) arrive on `events`.
    fn spawn(
        &mut self,
        launch: &Launch<'_>,
        id: u64,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Started>;
    fn kill(&mut self, pid: u32);
    /// (virtual, private) memory in KB.
    fn memory_kb(&self, pid: u32) -> Option<(u64, u64)>;
}

/// The real machine: `inetsrv worker` processes and the system clocks.
pub(crate) struct SystemHost;

impl Host for SystemHost {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn local_minute(&self) -> LocalMinute {
        use chrono::{Datelike, Timelike};
        let local = chrono::Local::now();
        LocalMinute {
            hour: local.hour(),
            minute: local.minute(),
            day: i64::from(local.num_days_from_ce()),
        }
    }

    fn spawn(
        &mut self,
        launch: &Launch<'_>,
        id: u64,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Started> {
        let spawned = process::spawn(launch, id, events.clone(), Event::Worker)?;
        let mut child = spawned.child;
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            let _ = events.send(Event::Exited(id, status));
        });
        Ok(Started {
            pid: spawned.pid,
            to_worker: spawned.to_worker,
        })
    }

    fn kill(&mut self, pid: u32) {
        process::kill(pid);
    }

    fn memory_kb(&self, pid: u32) -> Option<(u64, u64)> {
        process::memory_kb(pid)
    }
}
