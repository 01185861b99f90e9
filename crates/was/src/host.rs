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
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_log(stderr, launch.pool.to_string(), spawned.pid));
        }
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

/// Writes what a worker prints on stderr (its own log lines) into the
/// service's log, at the level the line gives, with its pool and pid.
async fn forward_log(stderr: tokio::process::ChildStderr, pool: String, pid: u32) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (level, text) = split_level(&line);
        match level {
            "ERROR" => tracing::error!(target: "worker", %pool, pid, "{text}"),
            "WARN" => tracing::warn!(target: "worker", %pool, pid, "{text}"),
            "INFO" => tracing::info!(target: "worker", %pool, pid, "{text}"),
            "DEBUG" => tracing::debug!(target: "worker", %pool, pid, "{text}"),
            "TRACE" => tracing::trace!(target: "worker", %pool, pid, "{text}"),
            // Not a log line (a panic, a library's message): kept whole.
            _ => tracing::warn!(target: "worker", %pool, pid, "{text}"),
        }
    }
}

/// A worker's log line (`TIMESTAMP  LEVEL target: message`) as its level
/// and the rest; anything else as no level and the whole line.
fn split_level(line: &str) -> (&str, &str) {
    let mut words = line.trim_start().splitn(2, char::is_whitespace);
    let (Some(stamp), Some(rest)) = (words.next(), words.next()) else {
        return ("", line);
    };
    let rest = rest.trim_start();
    let level_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let level = &rest[..level_end];
    let is_level = matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE");
    if !is_level || !stamp.contains('T') {
        return ("", line);
    }
    (level, rest[level_end..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::split_level;

    #[test]
    fn worker_log_lines_keep_their_level() {
        assert_eq!(
            split_level("2026-12-05T06:42:48.158951Z  WARN worker::content: gone"),
            ("WARN", "worker::content: gone")
        );
        assert_eq!(
            split_level("2026-12-05T06:42:48Z ERROR x: y"),
            ("ERROR", "x: y")
        );
        let panic = "thread 'main' panicked at src/lib.rs:1:1:";
        assert_eq!(split_level(panic), ("", panic));
        assert_eq!(split_level(""), ("", ""));
    }
}
