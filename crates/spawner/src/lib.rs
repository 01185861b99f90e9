//! The worker's program launcher. A worker runs under a seccomp filter
//! that refuses `execve` (see the worker's `sandbox.rs`), so it cannot
//! start the CGI programs and FastCGI applications its pipeline hands
//! requests to. Before it confines itself it starts this helper (`inetsrv
//! spawner`, with a socket as standard input), which stays outside the
//! filter and does one thing: start the programs the worker asks for, as
//! the pool's identity, and say when they end.
//!
//! - Every program runs as the pool's identity (its groups, group and
//!   user), with no-new-privileges, in its own process group, and is
//!   killed if the helper goes; the helper ends (and stops its programs)
//!   when the worker does.
//! - When the service runs as root, the helper keeps its programs in a
//!   mount namespace of their own where the content directories they are
//!   asked to reach are reachable by the identity: an ancestor the
//!   identity may not search (a 0700 home) is covered by an empty tmpfs
//!   showing only the directories on the way to the content ([`view`]).
//!   Paths stay the real ones (a PHP application's `__DIR__` is where its
//!   files are), nothing on disk changes, and the rest of that ancestor
//!   stays hidden.
//! - A FastCGI application's listening socket (its standard input, as
//!   FastCGI wants) is made here: a Unix socket in a directory only the
//!   identity can enter, or TCP on loopback.
//!
//! The protocol is one message per SEQPACKET packet (postcard), with
//! descriptors attached as SCM_RIGHTS.

mod server;
mod view;
mod wire;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use server::serve;

/// The identity programs run as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// What one of a program's standard descriptors is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stdio {
    /// A descriptor sent with the request (in the order stdin, stdout,
    /// stderr, for those that are `Passed`).
    Passed,
    /// `/dev/null`.
    Null,
    /// Standard input only: a listening Unix socket the helper makes (a
    /// FastCGI application's FCGI_LISTENSOCK_FILENO).
    ListenUnix,
    /// Standard input only: a listening TCP socket on 127.0.0.1.
    ListenTcp,
}

/// A program to start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Program {
    pub path: PathBuf,
    pub args: Vec<String>,
    /// The whole environment (nothing of the helper's is inherited).
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Directories the program must be able to reach (the content it
    /// serves).
    pub reach: Vec<PathBuf>,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl Program {
    pub fn new(path: impl Into<PathBuf>) -> Program {
        Program {
            path: path.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            reach: Vec::new(),
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
        }
    }
}

/// How a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The helper went away: the program is gone with it.
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::Unknown => write!(f, "an unknown end"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program could not be started (the helper's words: the path
    /// and the reason).
    #[error("{0}")]
    Failed(String),
    #[error("the program launcher is not running")]
    Gone,
    #[error("the program launcher: {0}")]
    Io(#[from] std::io::Error),
}

/// What the worker sends.
#[derive(Debug, Serialize, Deserialize)]
enum ToSpawner {
    Setup { identity: Option<Identity> },
    Spawn { id: u64, program: Program },
    Signal { pid: u32, signal: i32 },
}

/// What the helper answers.
#[derive(Debug, Serialize, Deserialize)]
enum FromSpawner {
    Spawned {
        id: u64,
        pid: u32,
        /// Where a listening socket it made is (`/path` or `127.0.0.1:N`).
        address: Option<String>,
    },
    Failed {
        id: u64,
        error: String,
    },
    Exited {
        pid: u32,
        exit: Exit,
    },
}

/// A started program.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
    pub address: Option<String>,
    /// Resolves when it ends.
    pub exited: oneshot::Receiver<Exit>,
}

/// The worker's handle on its launcher.
#[derive(Clone)]
pub struct Spawner {
    inner: Arc<Inner>,
}

struct Inner {
    socket: OwnedFd,
    send: Mutex<()>,
    next: AtomicU64,
    alive: AtomicBool,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Started, SpawnError>>>>,
    /// Kept so the helper is not left a zombie in the worker's table
    /// before the worker itself ends.
    _child: Mutex<Option<std::process::Child>>,
}

/// Room for the largest message (a CGI environment with large headers).
const SOCKET_BUFFER: usize = 4 << 20;

impl Spawner {
    /// Starts the helper: `program args…` with the control socket as its
    /// standard input (the worker passes its own executable and the
    /// hidden `spawner` verb). It runs with the rights the caller has now,
    /// so the caller starts it before giving any up; programs run as
    /// `identity` (`None`: as the helper itself).
    pub fn launch(
        program: &Path,
        args: &[&str],
        identity: Option<Identity>,
    ) -> std::io::Result<Spawner> {
        let (ours, theirs) = wire::pair(SOCKET_BUFFER)?;
        let child = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(std::env::var("INETSRV_LOG").map(|v| ("INETSRV_LOG", v)))
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let spawner = Spawner::over(ours, Some(child));
        spawner.send(&ToSpawner::Setup { identity }, &[])?;
        Ok(spawner)
    }

    /// A launcher over an already connected socket (tests run [`serve`]
    /// on a thread of their own).
    fn over(socket: OwnedFd, child: Option<std::process::Child>) -> Spawner {
        let inner = Arc::new(Inner {
            socket,
            send: Mutex::new(()),
            next: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            pending: Mutex::default(),
            _child: Mutex::new(child),
        });
        let reader = inner.clone();
        let _ = std::thread::Builder::new()
            .name("spawner-replies".into())
            .spawn(move || read_replies(reader));
        Spawner { inner }
    }

    fn send(&self, message: &ToSpawner, fds: &[&OwnedFd]) -> std::io::Result<()> {
        let bytes = postcard::to_stdvec(message).map_err(std::io::Error::other)?;
        let _guard = lock(&self.inner.send);
        wire::send(self.inner.socket.as_fd(), &bytes, fds)
    }

    /// Starts a program; `fds` are its `Passed` descriptors in order
    /// (stdin, stdout, stderr). The caller's copies may be closed once
    /// this returns.
    pub async fn spawn(&self, program: Program, fds: &[&OwnedFd]) -> Result<Started, SpawnError> {
        if !self.inner.alive.load(Ordering::SeqCst) {
            return Err(SpawnError::Gone);
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id, tx);
        if let Err(e) = self.send(&ToSpawner::Spawn { id, program }, fds) {
            lock(&self.inner.pending).remove(&id);
            return Err(e.into());
        }
        rx.await.unwrap_or(Err(SpawnError::Gone))
    }

    /// Sends a signal to a program it started (and its process group).
    pub fn signal(&self, pid: u32, signal: i32) {
        let _ = self.send(&ToSpawner::Signal { pid, signal }, &[]);
    }

    /// Stops a program at once (SIGKILL to its process group).
    pub fn kill(&self, pid: u32) {
        self.signal(pid, libc::SIGKILL);
    }

    /// Ends the launcher: it stops its programs and removes what it made
    /// (the worker's exit does the same).
    pub fn shutdown(&self) {
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.inner.socket),
            nix::sys::socket::Shutdown::Both,
        );
    }

    pub fn is_alive(&self) -> bool {
        self.inner.alive.load(Ordering::SeqCst)
    }
}

/// The reply thread: answers spawns and reports ends until the helper
/// goes, then fails what is waiting.
fn read_replies(inner: Arc<Inner>) {
    let mut exits: HashMap<u32, oneshot::Sender<Exit>> = HashMap::new();
    let mut buffer = vec![0u8; SOCKET_BUFFER];
    loop {
        let message = match wire::recv(inner.socket.as_fd(), &mut buffer) {
            Ok(Some((n, _fds))) => postcard::from_bytes::<FromSpawner>(&buffer[..n]),
            Ok(None) | Err(_) => break,
        };
        match message {
            Ok(FromSpawner::Spawned { id, pid, address }) => {
                let (tx, rx) = oneshot::channel();
                exits.insert(pid, tx);
                if let Some(waiting) = lock(&inner.pending).remove(&id) {
                    let _ = waiting.send(Ok(Started {
                        pid,
                        address,
                        exited: rx,
                    }));
                }
            }
            Ok(FromSpawner::Failed { id, error }) => {
                if let Some(waiting) = lock(&inner.pending).remove(&id) {
                    let _ = waiting.send(Err(SpawnError::Failed(error)));
                }
            }
            Ok(FromSpawner::Exited { pid, exit }) => {
                if let Some(tx) = exits.remove(&pid) {
                    let _ = tx.send(exit);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the program launcher sent what cannot be read");
                break;
            }
        }
    }
    inner.alive.store(false, Ordering::SeqCst);
    tracing::warn!("the program launcher has gone: CGI and FastCGI programs cannot start");
    for (_, waiting) in lock(&inner.pending).drain() {
        let _ = waiting.send(Err(SpawnError::Gone));
    }
    for (_, tx) in exits.drain() {
        let _ = tx.send(Exit::Unknown);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
