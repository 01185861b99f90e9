//! The channel between the activation service and a worker process.
//!
//! It carries what IIS 6 carries over its WAS–w3wp pipe: the worker's
//! configuration, pushed again on every change; pings; orders to shut
//! down; the worker's requests to be recycled. Logon requests go the same
//! way, so a worker running as an unprivileged identity never reads the
//! user database itself.
//!
//! The channel is a Unix stream socket, the worker's standard input,
//! carrying one JSON message a line. Messages that hand over a directory
//! ([`ToWorker::Root`]) or a module ([`ToWorker::Module`]) carry its
//! descriptor (SCM_RIGHTS) with their first byte: a worker never opens
//! configuration, content or modules by a path its identity would have to
//! traverse.
//!
//! Both the service (`was`) and the worker (`worker`) depend on this crate
//! and on nothing of each other.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use httpapi::fdpass::{FdReader, Outgoing};
use metabase::image::KeyImage;
use quietsock::QuietUnixStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The Unix account a worker becomes before it takes a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Everything a worker needs to serve its pool, taken from the metabase
/// by the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The application pool (its queue's name).
    pub pool: String,
    /// The listener's control socket.
    pub listener_socket: PathBuf,
    /// PeriodicRestartRequests: ask to be recycled after this many
    /// requests (0: never).
    pub restart_requests: u64,
    /// Whom to become once connected (`None`: stay who it was started
    /// as). Applied by the first configuration only.
    pub identity: Option<Identity>,
    /// The keys the pool serves (its sites, the MIME map, compression
    /// settings, and the data they inherit), without secrets.
    pub metabase: KeyImage,
    pub change_number: u64,
    /// Where compressed copies of static files are kept: one of the
    /// roots, writable by the pool's identity.
    pub compression_dir: Option<PathBuf>,
    /// Whether the listener keeps cacheable responses (UriEnableCache):
    /// when it does not, the worker neither marks responses cacheable nor
    /// watches their files.
    pub listener_caches: bool,
    /// IIS 5 isolation mode: this worker is the one process of every
    /// site (the inetinfo role) and filters every connection's raw data,
    /// so SF_NOTIFY_READ_RAW_DATA filters load.
    #[serde(default)]
    pub iis5_isolation: bool,
}

/// Where symbolic links beneath a content root may lead
/// (AllowSymlinksOutsideRoot of the virtual directory that serves it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Links {
    /// Only to files beneath the root: the default.
    #[default]
    Beneath,
    /// Anywhere the worker's identity may read.
    Anywhere,
}

/// The service to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// A directory the worker serves files from, by the path the
    /// configuration names it with; its descriptor travels with the
    /// message. The roots sent since the last [`ToWorker::Configure`] are
    /// the next configuration's whole set.
    Root {
        path: PathBuf,
        #[serde(default)]
        links: Links,
    },
    /// An ISAPI module (extension or filter) the configuration names, by
    /// its path; the file's descriptor travels with the message, so the
    /// worker loads it whatever directories its identity may enter. Like
    /// the roots, the modules sent since the last [`ToWorker::Configure`]
    /// belong to the next configuration.
    Module { path: PathBuf },
    /// The configuration, first at start and again after every change;
    /// answered with [`FromWorker::Reloaded`] carrying the same number.
    Configure { seq: u64, config: Box<WorkerConfig> },
    /// Answer with [`FromWorker::Pong`] carrying the same sequence number.
    Ping { seq: u64 },
    /// Stop taking requests, finish those in hand, exit.
    Stop,
    /// The answer to [`FromWorker::Logon`].
    LogonResult { id: u64, ok: bool },
    /// The answer to [`FromWorker::CertLogon`]: the user the certificate
    /// logs on as, if it is mapped to one.
    CertLogonResult { id: u64, user: Option<String> },
    /// The user database or its certificate mappings changed: forget
    /// cached logons.
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
        /// The file cache's hits and misses since the worker started.
        file_cache_hits: u64,
        file_cache_misses: u64,
        /// How long the longest module call in progress (an ISAPI
        /// extension's) has run, in milliseconds: the service counts a
        /// worker whose module has hung past PingResponseTime as hung.
        #[serde(default)]
        busiest_ms: u64,
    },
    /// The counters a ping reports, sent unasked about once a second while
    /// they change, so what the service shows (W3SVC_W3WP's counters,
    /// `/metrics`) is at most a second old whatever the PingInterval.
    Counters {
        requests: u64,
        active: u64,
        file_cache_hits: u64,
        file_cache_misses: u64,
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
    /// Which user a client certificate (by SHA-1 thumbprint) is mapped to
    /// (AccessSSLMapCert, IIS's one-to-one mapping).
    CertLogon { id: u64, thumbprint: String },
    /// An ISAPI filter was loaded (or failed to load): the service records
    /// FilterState and FilterFlags on its key, as IIS reports them.
    FilterReport {
        /// The IIsFilter key's metabase path.
        key: String,
        /// MD_FILTER_STATE_LOADED (1) or MD_FILTER_STATE_UNLOADED (4).
        state: u32,
        /// The notifications GetFilterVersion asked for.
        flags: u32,
    },
    /// The configuration of [`ToWorker::Configure`] `seq` is in effect.
    Reloaded { seq: u64 },
    /// The worker stopped taking requests and is finishing those in hand.
    Draining,
    /// The worker cannot go on (its configuration or queue is gone).
    Fatal { message: String },
}

/// A message of the channel: whether it carries a descriptor.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    fn carries_fd(&self) -> bool {
        false
    }
}

impl Message for ToWorker {
    fn carries_fd(&self) -> bool {
        matches!(self, ToWorker::Root { .. } | ToWorker::Module { .. })
    }
}

impl Message for FromWorker {}

/// Encodes one message as a line.
pub fn encode<M: Serialize>(message: &M) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

/// Decodes one line; `None` for a line that is not a message (it is
/// logged and skipped rather than ending the channel).
pub fn decode<M: DeserializeOwned>(line: &[u8]) -> Option<M> {
    serde_json::from_slice(line.trim_ascii_end()).ok()
}

/// A message received, with the descriptor it carried.
#[derive(Debug)]
pub struct Received<M> {
    pub message: M,
    pub fd: Option<OwnedFd>,
}

/// The sending half of a channel.
#[derive(Clone, Debug)]
pub struct Sender<M> {
    frames: mpsc::UnboundedSender<Outgoing>,
    _message: std::marker::PhantomData<fn(M)>,
}

impl<M: Message> Sender<M> {
    /// Queues a message; false once the channel is closed.
    pub fn send(&self, message: &M) -> bool {
        self.frames.send(Outgoing::from(encode(message))).is_ok()
    }

    /// Queues a message with the descriptor it announces.
    pub fn send_with_fd(&self, message: &M, fd: OwnedFd) -> bool {
        self.frames
            .send(Outgoing {
                bytes: encode(message),
                fd: Some(fd),
            })
            .is_ok()
    }
}

/// The longest line accepted (a configuration image of a large metabase
/// fits many times over).
pub const MAX_LINE: usize = 64 << 20;

/// Runs a channel over a connected socket: messages sent on the returned
/// sender go out in order; messages read arrive on the receiver, which
/// closes when the other side does (or breaks the protocol).
pub fn channel<Out: Message, In: Message>(
    stream: QuietUnixStream,
) -> (Sender<Out>, mpsc::UnboundedReceiver<Received<In>>) {
    let (read, write) = stream.into_split();
    let (frames, frames_rx) = mpsc::unbounded_channel();
    tokio::spawn(httpapi::fdpass::write_frames(frames_rx, write));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let stream = &read;
        let mut reader = FdReader::new(64 * 1024);
        let mut fds: VecDeque<OwnedFd> = VecDeque::new();
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match reader.read(stream, &mut fds).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&reader.scratch[..n]);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = &pending[start..start + end];
                start += end + 1;
                let Some(message) = decode::<In>(line) else {
                    tracing::warn!(line = %String::from_utf8_lossy(line), "unreadable control message");
                    continue;
                };
                let fd = if message.carries_fd() {
                    fds.pop_front()
                } else {
                    None
                };
                if tx.send(Received { message, fd }).is_err() {
                    return;
                }
            }
            pending.drain(..start);
            if pending.len() > MAX_LINE || fds.len() > httpapi::fdpass::MAX_PENDING_FDS {
                tracing::warn!("control channel overrun; closing it");
                break;
            }
        }
    });
    (
        Sender {
            frames,
            _message: std::marker::PhantomData,
        },
        rx,
    )
}

/// Opens a directory to hand to a worker as a root (the service's side,
/// with the service's rights).
pub fn open_root(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECTORY.bits())
        .open(path)?;
    Ok(OwnedFd::from(file))
}

/// Opens a module file to hand to a worker: a regular file, for reading.
pub fn open_module(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn messages_round_trip_as_lines() {
        let line = encode(&ToWorker::Ping { seq: 7 });
        assert_eq!(line, b"{\"type\":\"ping\",\"seq\":7}\n");
        assert_eq!(decode::<ToWorker>(&line), Some(ToWorker::Ping { seq: 7 }));
        let pong = FromWorker::Pong {
            busiest_ms: 0,
            seq: 7,
            requests: 10,
            active: 1,
            file_cache_hits: 3,
            file_cache_misses: 1,
        };
        assert_eq!(decode::<FromWorker>(&encode(&pong)), Some(pong));
        let counters = FromWorker::Counters {
            requests: 10,
            active: 0,
            file_cache_hits: 4,
            file_cache_misses: 1,
        };
        assert_eq!(decode::<FromWorker>(&encode(&counters)), Some(counters));
        assert_eq!(decode::<ToWorker>(b"not json"), None);
        assert_eq!(decode::<ToWorker>(b"{\"type\":\"nonsense\"}"), None);
    }

    #[tokio::test]
    async fn directories_travel_with_their_messages() {
        let (a, b) = QuietUnixStream::pair().unwrap();
        let (service, _from_worker) = channel::<ToWorker, FromWorker>(a);
        let (_to_service, mut worker) = channel::<FromWorker, ToWorker>(b);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"content").unwrap();
        assert!(service.send(&ToWorker::Ping { seq: 1 }));
        assert!(service.send_with_fd(
            &ToWorker::Root {
                path: "/srv/www".into(),
                links: Links::Anywhere,
            },
            OwnedFd::from(file.try_clone().unwrap())
        ));
        // A line that is not a message is skipped, not fatal.
        service
            .frames
            .send(Outgoing::from(b"garbage\n".to_vec()))
            .unwrap();
        assert!(service.send(&ToWorker::Stop));
        let first = worker.recv().await.unwrap();
        assert_eq!(first.message, ToWorker::Ping { seq: 1 });
        assert!(first.fd.is_none());
        let root = worker.recv().await.unwrap();
        assert_eq!(
            root.message,
            ToWorker::Root {
                path: "/srv/www".into(),
                links: Links::Anywhere,
            }
        );
        let mut got = std::fs::File::from(root.fd.unwrap());
        got.rewind().unwrap();
        let mut text = String::new();
        got.read_to_string(&mut text).unwrap();
        assert_eq!(text, "content");
        assert_eq!(worker.recv().await.unwrap().message, ToWorker::Stop);
        drop(service);
        assert!(worker.recv().await.is_none());
    }
}
