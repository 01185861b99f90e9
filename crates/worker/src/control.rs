//! The channel between the activation service and a worker: JSON lines on
//! the worker's stdin (service to worker) and stdout (worker to service).
//! It carries what IIS 6 carries over its WAS–w3wp pipe: pings, orders to
//! shut down or recycle, configuration notices, and the worker's requests
//! to be recycled. Logon requests go the same way, so a worker running as
//! an unprivileged identity never reads the user database itself.

use serde::{Deserialize, Serialize};

/// The service to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// Answer with [`FromWorker::Pong`] carrying the same sequence number.
    Ping { seq: u64 },
    /// The metabase changed: read it again, then answer
    /// [`FromWorker::Reloaded`] with the same number.
    Reload { seq: u64 },
    /// Stop taking requests, finish those in hand, exit.
    Stop,
    /// The answer to [`FromWorker::Logon`].
    LogonResult { id: u64, ok: bool },
    /// The user database changed: forget cached logons.
    UsersChanged,
}

/// A worker to the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker serves its queue.
    Ready { pid: u32 },
    Pong {
        seq: u64,
        /// Requests answered since the worker started.
        requests: u64,
        /// Requests in hand now.
        active: u64,
    },
    /// The worker reached a limit of its own (PeriodicRestartRequests)
    /// and asks to be replaced.
    RecycleMe { reason: String },
    /// Checks a user name and password (Basic authentication).
    Logon {
        id: u64,
        user: String,
        password: String,
    },
    /// The configuration of [`ToWorker::Reload`] `seq` is in effect.
    Reloaded { seq: u64 },
    /// The worker stopped taking requests and is finishing those in hand.
    Draining,
    /// The worker cannot go on (its configuration or queue is gone).
    Fatal { message: String },
}

/// Encodes one message as a line.
pub fn encode<M: Serialize>(message: &M) -> String {
    let mut line = serde_json::to_string(message).unwrap_or_else(|_| "{}".into());
    line.push('\n');
    line
}

/// Decodes one line; `None` for a line that is not a message (it is
/// logged and skipped rather than ending the channel).
pub fn decode<'a, M: Deserialize<'a>>(line: &'a str) -> Option<M> {
    serde_json::from_str(line.trim_end()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_lines() {
        let line = encode(&ToWorker::Ping { seq: 7 });
        assert_eq!(line, "{\"type\":\"ping\",\"seq\":7}\n");
        assert_eq!(decode::<ToWorker>(&line), Some(ToWorker::Ping { seq: 7 }));
        let pong = FromWorker::Pong {
            seq: 7,
            requests: 10,
            active: 1,
        };
        assert_eq!(decode::<FromWorker>(&encode(&pong)), Some(pong));
        assert_eq!(decode::<ToWorker>("not json"), None);
        assert_eq!(decode::<ToWorker>("{\"type\":\"nonsense\"}"), None);
    }
}
