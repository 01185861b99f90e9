//! The activation service (the WAS and W3SVC roles of IIS 6).
//!
//! It owns the run-time life of sites and application pools: it reads
//! `/LM/W3SVC` ([`model`]), registers each started site's URL prefixes in
//! the listener, one request queue per pool, starts `inetsrv worker`
//! processes when a pool's queue gets a request and none serves it, pings
//! them, replaces the ones that crash or hang, recycles them (overlapped:
//! the new one takes requests before the old one drains), stops pools that
//! keep failing (rapid-fail protection), shuts idle workers down, and
//! applies every metabase change while running.
//!
//! It never touches a client connection (the listener does) nor serves a
//! request (workers do). Its state machine runs on one task; everything
//! else talks to it through [`Was`].

/// What the fuzz targets and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod handover;
mod host;
pub mod model;
pub mod process;
pub mod provision;
mod service;

use std::path::PathBuf;
use std::sync::Arc;

use listener::Listener;
use metabase::MetabaseFiles;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use model::{Binding, Model, PoolSettings, Site};
pub use process::WorkerProgram;

/// What the activation service needs.
pub struct Options {
    pub listener: Arc<Listener>,
    pub files: MetabaseFiles,
    pub program: WorkerProgram,
    /// The state directory (logs, temporary files, the user database).
    pub state_dir: PathBuf,
}

/// What can be asked of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolCommand {
    Start,
    Stop,
    Recycle,
}

/// What can be asked of a site (ServerCommand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteCommand {
    Start,
    Stop,
    Pause,
    Continue,
}

/// Where a worker process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Started, not yet serving its queue.
    Starting,
    Running,
    /// Told to stop (or replaced): finishing the requests it holds.
    Stopping,
}

/// Whether a pool takes requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolState {
    Started,
    Stopped,
}

/// A site's ServerState, as the service keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteState {
    Started,
    Stopped,
    Paused,
}

impl SiteState {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Started => "started",
            SiteState::Stopped => "stopped",
            SiteState::Paused => "paused",
        }
    }
}

impl std::fmt::Display for SiteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // pad: a width in the format is honoured.
        f.pad(match self {
            PoolState::Started => "started",
            PoolState::Stopped => "stopped",
        })
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::Stopping => "stopping",
        })
    }
}

/// What a pool or site command did, in words for the administrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    PoolStarted { pool: String, already: bool },
    PoolStopped { pool: String },
    PoolRecycled { pool: String, workers: usize },
    Site { id: u32, command: SiteCommand },
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Done::PoolStarted {
                pool,
                already: true,
            } => {
                write!(f, "application pool {pool} is already started")
            }
            Done::PoolStarted { pool, .. } => write!(f, "application pool {pool} started"),
            Done::PoolStopped { pool } => write!(f, "application pool {pool} stopped"),
            Done::PoolRecycled { pool, workers } => write!(
                f,
                "application pool {pool} recycled ({workers} worker process(es) replaced)"
            ),
            Done::Site { id, command } => {
                let verb = match command {
                    SiteCommand::Start => "started",
                    SiteCommand::Stop => "stopped",
                    SiteCommand::Pause => "paused",
                    SiteCommand::Continue => "continued",
                };
                write!(f, "site {id} {verb}")
            }
        }
    }
}

/// Why a pool or site command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no application pool named '{0}'")]
    NoSuchPool(String),
    #[error("application pools are not used in IIS 5 isolation mode (W3SVC/IIs5IsolationModeEnabled is TRUE): '{0}' has no process; the one process of every site is IIS5Isolation")]
    Iis5Isolation(String),
    #[error("application pool '{0}' is not in the metabase")]
    PoolNotInMetabase(String),
    #[error("application pool {0} is stopped: start it first")]
    PoolIsStopped(String),
    #[error("no site with ID {0}")]
    NoSuchSite(u32),
    #[error("site {0} is not running: only a started site can be paused")]
    SiteNotRunning(u32),
    #[error("site {0} is not paused")]
    SiteNotPaused(u32),
    #[error("site {id} cannot start: {reason}")]
    SiteCannotStart { id: u32, reason: String },
    #[error("the activation service is not running")]
    ServiceGone,
}

/// A worker process, as `pool list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    pub pid: u32,
    pub state: WorkerState,
    pub uptime_seconds: u64,
    pub requests: u64,
    /// Requests it was answering at its last ping (W3SVC_W3WP's Active
    /// Requests).
    pub active_requests: u64,
    /// Its file cache's hits and misses (W3SVC_W3WP's File Cache Hits and
    /// Misses), at its last ping.
    pub file_cache_hits: u64,
    pub file_cache_misses: u64,
    pub user: String,
}

/// What happened to a pool's workers since the service started
/// (Performance Monitor's WAS_W3WP and W3SVC counters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolCounters {
    pub worker_starts: u64,
    /// Workers that could not start, crashed, hung or were killed.
    pub worker_failures: u64,
    /// Workers recycled (by schedule, request or memory limits, a
    /// command, a configuration change, or at their own request).
    pub recycles: u64,
    /// Times rapid-fail protection stopped the pool.
    pub rapid_fail_stops: u64,
    /// Requests routed to the pool's queue, and those it turned away
    /// (full, or the pool stopped): HTTP Service Request Queues'
    /// ArrivalRate and RejectedRequests.
    pub queue_arrivals: u64,
    pub queue_rejections: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub state: PoolState,
    /// Why a stopped pool stopped (rapid-fail protection, a command).
    pub reason: Option<String>,
    pub workers: Vec<WorkerStatus>,
    pub queued: usize,
    pub counters: PoolCounters,
    pub recent_failures: usize,
    /// Why the last worker failed, while it is among the recent failures
    /// (it could not start, crashed, hung, …).
    pub last_failure: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SiteStatus {
    pub id: u32,
    pub comment: String,
    pub state: SiteState,
    pub bindings: Vec<String>,
    pub apps: Vec<model::App>,
    /// Why the site could not start (a binding in use, …).
    pub error: Option<String>,
    /// Why its pool's identity cannot read its content directory, with
    /// the fix (the site runs; its requests would fail).
    pub content_problem: Option<String>,
}

pub(crate) enum AdminCall {
    Pools(oneshot::Sender<Vec<PoolStatus>>),
    Sites(oneshot::Sender<Vec<SiteStatus>>),
    Pool {
        name: String,
        command: PoolCommand,
        reply: oneshot::Sender<Result<Done, CommandError>>,
    },
    Site {
        id: u32,
        command: SiteCommand,
        reply: oneshot::Sender<Result<Done, CommandError>>,
    },
    Sync {
        change_number: u64,
        reply: oneshot::Sender<()>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// A handle on the running activation service.
#[derive(Clone)]
pub struct Was {
    tx: mpsc::UnboundedSender<service::Event>,
}

impl Was {
    /// Starts the service on the current tokio runtime: pools' queues are
    /// created and started sites' prefixes registered before it returns.
    pub fn start(options: Options) -> Was {
        let tx = service::start(options);
        Was { tx }
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> AdminCall) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(service::Event::Admin(make(reply))).ok()?;
        rx.await.ok()
    }

    pub async fn pools(&self) -> Vec<PoolStatus> {
        self.call(AdminCall::Pools).await.unwrap_or_default()
    }

    pub async fn sites(&self) -> Vec<SiteStatus> {
        self.call(AdminCall::Sites).await.unwrap_or_default()
    }

    pub async fn pool_command(
        &self,
        name: &str,
        command: PoolCommand,
    ) -> Result<Done, CommandError> {
        let name = name.to_string();
        self.call(|reply| AdminCall::Pool {
            name,
            command,
            reply,
        })
        .await
        .unwrap_or(Err(CommandError::ServiceGone))
    }

    pub async fn site_command(&self, id: u32, command: SiteCommand) -> Result<Done, CommandError> {
        self.call(|reply| AdminCall::Site { id, command, reply })
            .await
            .unwrap_or(Err(CommandError::ServiceGone))
    }

    /// Returns once metabase changes up to `change_number` are in effect.
    pub async fn synced(&self, change_number: u64) {
        self.call(|reply| AdminCall::Sync {
            change_number,
            reply,
        })
        .await;
    }

    /// Stops every worker (each finishes the requests it holds, within
    /// its pool's ShutdownTimeLimit) and ends the service.
    pub async fn shutdown(&self) {
        self.call(AdminCall::Shutdown).await;
    }
}
