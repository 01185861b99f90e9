//! The activation service's control interface on the wire: inetsrv's own,
//! typed, described once with the interface macro. What `inetsrv site` and
//! `inetsrv pool` ask of a running server besides its metabase (which they
//! change through IMSAdminBaseW): the live state of sites, pools and
//! their worker processes, start/stop/pause/continue/recycle, and waiting
//! until the configuration written so far is in effect. States and
//! commands are enumerations, errors a typed structure that names what was
//! refused — the same [`was::CommandError`] a local command meets, so the
//! CLI prints the same words either way. A plain RPC interface (listed in
//! the endpoint map), administrators only, as Inetinfo.

use std::sync::Arc;
use std::time::Duration;

use msrpc::ndr::{ConformantArray, Unique, WString};
use msrpc::server::{Call, CallResult};
use msrpc::status::ERROR_ACCESS_DENIED;
use was::{CommandError, Done, PoolCommand, PoolState, SiteCommand, SiteState, WorkerState};

use crate::Admins;

/// ERROR_TIMEOUT: the service did not answer within [`ANSWER_TIMEOUT`].
pub const ERROR_TIMEOUT: u32 = 1460;

/// The longest a call waits for the activation service (a recycle waits
/// for the new workers; a stop for the old ones' requests).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum WireSiteState {
    Started = 1,
    Stopped = 2,
    Paused = 3,
}

#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum WirePoolState {
    Started = 1,
    Stopped = 2,
}

#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum WireWorkerState {
    Starting = 1,
    Running = 2,
    Stopping = 3,
}

#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum WireSiteCommand {
    Start = 1,
    Stop = 2,
    Pause = 3,
    Continue = 4,
}

#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum WirePoolCommand {
    Start = 1,
    Stop = 2,
    Recycle = 3,
}

/// What a command did ([`was::Done`]).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum DoneKind {
    PoolStarted = 1,
    PoolAlreadyStarted = 2,
    PoolStopped = 3,
    PoolRecycled = 4,
    Site = 5,
}

/// Why a command was refused ([`was::CommandError`]).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum ErrorKind {
    None = 0,
    NoSuchPool = 1,
    Iis5Isolation = 2,
    PoolNotInMetabase = 3,
    PoolIsStopped = 4,
    NoSuchSite = 5,
    SiteNotRunning = 6,
    SiteNotPaused = 7,
    SiteCannotStart = 8,
    ServiceGone = 9,
}

/// A command's outcome: what was done, or why not.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub error: ErrorKind,
    pub done: DoneKind,
    /// The pool, for pool commands and pool errors.
    pub pool: Unique<WString>,
    /// The site, for site commands and site errors.
    pub site: u32,
    pub site_command: WireSiteCommand,
    /// Workers replaced by a recycle.
    pub workers: u32,
    /// Why a site cannot start.
    pub reason: Unique<WString>,
}

#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct WireSite {
    pub id: u32,
    pub state: WireSiteState,
    pub error: Unique<WString>,
    pub content_problem: Unique<WString>,
}

#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct WireWorker {
    pub pid: u32,
    pub state: WireWorkerState,
    pub uptime_seconds: u64,
    pub requests: u64,
    pub active_requests: u64,
    pub file_cache_hits: u64,
    pub file_cache_misses: u64,
    pub user: WString,
}

/// was::PoolCounters on the wire.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct WirePoolCounters {
    pub worker_starts: u64,
    pub worker_failures: u64,
    pub recycles: u64,
    pub rapid_fail_stops: u64,
    pub queue_arrivals: u64,
    pub queue_rejections: u64,
}

#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct WirePool {
    pub name: WString,
    pub state: WirePoolState,
    pub reason: Unique<WString>,
    pub worker_count: u32,
    pub workers: Unique<ConformantArray<WireWorker>>,
    pub queued: u32,
    pub counters: WirePoolCounters,
    pub recent_failures: u32,
    pub last_failure: Unique<WString>,
}

/// inetsrv's activation service control.
#[msrpc::interface(
    uuid = "cd8c0e33-6a4c-4841-9a34-fa3474c0620c",
    version = "1.0",
    blocking
)]
pub trait WasControl {
    /// The sites' live state.
    #[opnum(0)]
    fn sites(&self, call: &Call) -> CallResult<(Unique<ConformantArray<WireSite>>, u32)>;

    /// The pools with their worker processes.
    #[opnum(1)]
    fn pools(&self, call: &Call) -> CallResult<(Unique<ConformantArray<WirePool>>, u32)>;

    /// Start, stop, pause or continue a site.
    #[opnum(2)]
    fn site_command(
        &self,
        call: &Call,
        site: u32,
        command: WireSiteCommand,
    ) -> CallResult<(Outcome, u32)>;

    /// Start, stop or recycle a pool.
    #[opnum(3)]
    fn pool_command(
        &self,
        call: &Call,
        pool: WString,
        command: WirePoolCommand,
    ) -> CallResult<(Outcome, u32)>;

    /// Returns once every metabase change committed so far is in effect
    /// (in every worker).
    #[opnum(4)]
    fn synced(&self, call: &Call) -> CallResult<u32>;
}

fn text(s: Option<&str>) -> Unique<WString> {
    Unique::new(s.map(|s| WString(s.to_string())))
}

fn untext(s: &Unique<WString>) -> Option<String> {
    s.get().map(|w| w.0.clone())
}

impl From<SiteCommand> for WireSiteCommand {
    fn from(c: SiteCommand) -> Self {
        match c {
            SiteCommand::Start => WireSiteCommand::Start,
            SiteCommand::Stop => WireSiteCommand::Stop,
            SiteCommand::Pause => WireSiteCommand::Pause,
            SiteCommand::Continue => WireSiteCommand::Continue,
        }
    }
}

impl From<WireSiteCommand> for SiteCommand {
    fn from(c: WireSiteCommand) -> Self {
        match c {
            WireSiteCommand::Start => SiteCommand::Start,
            WireSiteCommand::Stop => SiteCommand::Stop,
            WireSiteCommand::Pause => SiteCommand::Pause,
            WireSiteCommand::Continue => SiteCommand::Continue,
        }
    }
}

impl From<PoolCommand> for WirePoolCommand {
    fn from(c: PoolCommand) -> Self {
        match c {
            PoolCommand::Start => WirePoolCommand::Start,
            PoolCommand::Stop => WirePoolCommand::Stop,
            PoolCommand::Recycle => WirePoolCommand::Recycle,
        }
    }
}

impl From<WirePoolCommand> for PoolCommand {
    fn from(c: WirePoolCommand) -> Self {
        match c {
            WirePoolCommand::Start => PoolCommand::Start,
            WirePoolCommand::Stop => PoolCommand::Stop,
            WirePoolCommand::Recycle => PoolCommand::Recycle,
        }
    }
}

impl From<SiteState> for WireSiteState {
    fn from(s: SiteState) -> Self {
        match s {
            SiteState::Started => WireSiteState::Started,
            SiteState::Stopped => WireSiteState::Stopped,
            SiteState::Paused => WireSiteState::Paused,
        }
    }
}

impl From<WireSiteState> for SiteState {
    fn from(s: WireSiteState) -> Self {
        match s {
            WireSiteState::Started => SiteState::Started,
            WireSiteState::Stopped => SiteState::Stopped,
            WireSiteState::Paused => SiteState::Paused,
        }
    }
}

impl Outcome {
    fn blank() -> Outcome {
        Outcome {
            error: ErrorKind::None,
            done: DoneKind::Site,
            pool: Unique::new(None),
            site: 0,
            site_command: WireSiteCommand::Start,
            workers: 0,
            reason: Unique::new(None),
        }
    }

    /// A command's result, on the wire.
    pub fn from_result(result: Result<Done, CommandError>) -> Outcome {
        let mut o = Outcome::blank();
        match result {
            Ok(Done::PoolStarted { pool, already }) => {
                o.done = if already {
                    DoneKind::PoolAlreadyStarted
                } else {
                    DoneKind::PoolStarted
                };
                o.pool = text(Some(&pool));
            }
            Ok(Done::PoolStopped { pool }) => {
                o.done = DoneKind::PoolStopped;
                o.pool = text(Some(&pool));
            }
            Ok(Done::PoolRecycled { pool, workers }) => {
                o.done = DoneKind::PoolRecycled;
                o.pool = text(Some(&pool));
                o.workers = workers as u32;
            }
            Ok(Done::Site { id, command }) => {
                o.done = DoneKind::Site;
                o.site = id;
                o.site_command = command.into();
            }
            Err(e) => {
                let (kind, pool, site, reason) = match e {
                    CommandError::NoSuchPool(p) => (ErrorKind::NoSuchPool, Some(p), 0, None),
                    CommandError::Iis5Isolation(p) => (ErrorKind::Iis5Isolation, Some(p), 0, None),
                    CommandError::PoolNotInMetabase(p) => {
                        (ErrorKind::PoolNotInMetabase, Some(p), 0, None)
                    }
                    CommandError::PoolIsStopped(p) => (ErrorKind::PoolIsStopped, Some(p), 0, None),
                    CommandError::NoSuchSite(id) => (ErrorKind::NoSuchSite, None, id, None),
                    CommandError::SiteNotRunning(id) => (ErrorKind::SiteNotRunning, None, id, None),
                    CommandError::SiteNotPaused(id) => (ErrorKind::SiteNotPaused, None, id, None),
                    CommandError::SiteCannotStart { id, reason } => {
                        (ErrorKind::SiteCannotStart, None, id, Some(reason))
                    }
                    CommandError::ServiceGone => (ErrorKind::ServiceGone, None, 0, None),
                };
                o.error = kind;
                o.pool = text(pool.as_deref());
                o.site = site;
                o.reason = text(reason.as_deref());
            }
        }
        o
    }

    /// The result it carries.
    pub fn into_result(self) -> Result<Done, CommandError> {
        let pool = untext(&self.pool).unwrap_or_default();
        let id = self.site;
        Err(match self.error {
            ErrorKind::None => {
                return Ok(match self.done {
                    DoneKind::PoolStarted => Done::PoolStarted {
                        pool,
                        already: false,
                    },
                    DoneKind::PoolAlreadyStarted => Done::PoolStarted {
                        pool,
                        already: true,
                    },
                    DoneKind::PoolStopped => Done::PoolStopped { pool },
                    DoneKind::PoolRecycled => Done::PoolRecycled {
                        pool,
                        workers: self.workers as usize,
                    },
                    DoneKind::Site => Done::Site {
                        id,
                        command: self.site_command.into(),
                    },
                })
            }
            ErrorKind::NoSuchPool => CommandError::NoSuchPool(pool),
            ErrorKind::Iis5Isolation => CommandError::Iis5Isolation(pool),
            ErrorKind::PoolNotInMetabase => CommandError::PoolNotInMetabase(pool),
            ErrorKind::PoolIsStopped => CommandError::PoolIsStopped(pool),
            ErrorKind::NoSuchSite => CommandError::NoSuchSite(id),
            ErrorKind::SiteNotRunning => CommandError::SiteNotRunning(id),
            ErrorKind::SiteNotPaused => CommandError::SiteNotPaused(id),
            ErrorKind::SiteCannotStart => CommandError::SiteCannotStart {
                id,
                reason: untext(&self.reason).unwrap_or_default(),
            },
            ErrorKind::ServiceGone => CommandError::ServiceGone,
        })
    }
}

/// A site's live state, as the CLI shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSite {
    pub id: u32,
    pub state: SiteState,
    pub error: Option<String>,
    pub content_problem: Option<String>,
}

impl From<&was::SiteStatus> for LiveSite {
    fn from(s: &was::SiteStatus) -> Self {
        LiveSite {
            id: s.id,
            state: s.state,
            error: s.error.clone(),
            content_problem: s.content_problem.clone(),
        }
    }
}

impl From<&LiveSite> for WireSite {
    fn from(s: &LiveSite) -> Self {
        WireSite {
            id: s.id,
            state: s.state.into(),
            error: text(s.error.as_deref()),
            content_problem: text(s.content_problem.as_deref()),
        }
    }
}

impl From<&WireSite> for LiveSite {
    fn from(s: &WireSite) -> Self {
        LiveSite {
            id: s.id,
            state: s.state.into(),
            error: untext(&s.error),
            content_problem: untext(&s.content_problem),
        }
    }
}

impl From<&was::PoolStatus> for WirePool {
    fn from(p: &was::PoolStatus) -> Self {
        let workers: Vec<WireWorker> = p
            .workers
            .iter()
            .map(|w| WireWorker {
                pid: w.pid,
                state: match w.state {
                    WorkerState::Starting => WireWorkerState::Starting,
                    WorkerState::Running => WireWorkerState::Running,
                    WorkerState::Stopping => WireWorkerState::Stopping,
                },
                uptime_seconds: w.uptime_seconds,
                requests: w.requests,
                active_requests: w.active_requests,
                file_cache_hits: w.file_cache_hits,
                file_cache_misses: w.file_cache_misses,
                user: WString(w.user.clone()),
            })
            .collect();
        WirePool {
            name: WString(p.name.clone()),
            state: match p.state {
                PoolState::Started => WirePoolState::Started,
                PoolState::Stopped => WirePoolState::Stopped,
            },
            reason: text(p.reason.as_deref()),
            worker_count: workers.len() as u32,
            workers: Unique::new(Some(ConformantArray(workers))),
            queued: p.queued as u32,
            counters: WirePoolCounters {
                worker_starts: p.counters.worker_starts,
                worker_failures: p.counters.worker_failures,
                recycles: p.counters.recycles,
                rapid_fail_stops: p.counters.rapid_fail_stops,
                queue_arrivals: p.counters.queue_arrivals,
                queue_rejections: p.counters.queue_rejections,
            },
            recent_failures: p.recent_failures as u32,
            last_failure: text(p.last_failure.as_deref()),
        }
    }
}

impl From<&WirePool> for was::PoolStatus {
    fn from(p: &WirePool) -> Self {
        was::PoolStatus {
            name: p.name.0.clone(),
            state: match p.state {
                WirePoolState::Started => PoolState::Started,
                WirePoolState::Stopped => PoolState::Stopped,
            },
            reason: untext(&p.reason),
            workers: p
                .workers
                .get()
                .map(|w| w.0.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|w| was::WorkerStatus {
                    pid: w.pid,
                    state: match w.state {
                        WireWorkerState::Starting => WorkerState::Starting,
                        WireWorkerState::Running => WorkerState::Running,
                        WireWorkerState::Stopping => WorkerState::Stopping,
                    },
                    uptime_seconds: w.uptime_seconds,
                    requests: w.requests,
                    active_requests: w.active_requests,
                    file_cache_hits: w.file_cache_hits,
                    file_cache_misses: w.file_cache_misses,
                    user: w.user.0.clone(),
                })
                .collect(),
            queued: p.queued as usize,
            counters: was::PoolCounters {
                worker_starts: p.counters.worker_starts,
                worker_failures: p.counters.worker_failures,
                recycles: p.counters.recycles,
                rapid_fail_stops: p.counters.rapid_fail_stops,
                queue_arrivals: p.counters.queue_arrivals,
                queue_rejections: p.counters.queue_rejections,
            },
            recent_failures: p.recent_failures as usize,
            last_failure: untext(&p.last_failure),
        }
    }
}

/// Serves the interface over a running activation service, whose own
/// runtime its work runs on.
pub struct WasControlService {
    pub was: was::Was,
    pub runtime: tokio::runtime::Handle,
    pub files: metabase::MetabaseFiles,
    pub admins: Arc<dyn Admins>,
}

impl WasControlService {
    /// Runs `work` on the service's runtime and waits for its answer.
    fn ask<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv_timeout(ANSWER_TIMEOUT).ok()
    }

    fn admitted(&self, call: &Call) -> bool {
        crate::admitted(call, &self.admins, "service control")
    }
}

impl WasControl for WasControlService {
    fn sites(&self, call: &Call) -> CallResult<(Unique<ConformantArray<WireSite>>, u32)> {
        if !self.admitted(call) {
            return Ok((Unique::new(None), ERROR_ACCESS_DENIED));
        }
        let was = self.was.clone();
        match self.ask(async move { was.sites().await }) {
            Some(sites) => {
                let wire = sites
                    .iter()
                    .map(|s| WireSite::from(&LiveSite::from(s)))
                    .collect();
                Ok((Unique::new(Some(ConformantArray(wire))), 0))
            }
            None => Ok((Unique::new(None), ERROR_TIMEOUT)),
        }
    }

    fn pools(&self, call: &Call) -> CallResult<(Unique<ConformantArray<WirePool>>, u32)> {
        if !self.admitted(call) {
            return Ok((Unique::new(None), ERROR_ACCESS_DENIED));
        }
        let was = self.was.clone();
        match self.ask(async move { was.pools().await }) {
            Some(pools) => Ok((
                Unique::new(Some(ConformantArray(
                    pools.iter().map(WirePool::from).collect(),
                ))),
                0,
            )),
            None => Ok((Unique::new(None), ERROR_TIMEOUT)),
        }
    }

    fn site_command(
        &self,
        call: &Call,
        site: u32,
        command: WireSiteCommand,
    ) -> CallResult<(Outcome, u32)> {
        if !self.admitted(call) {
            return Ok((Outcome::blank(), ERROR_ACCESS_DENIED));
        }
        let was = self.was.clone();
        let command = SiteCommand::from(command);
        tracing::info!(site, ?command, client = ?call.client, "service control: site command");
        match self.ask(async move { was.site_command(site, command).await }) {
            Some(result) => Ok((Outcome::from_result(result), 0)),
            None => Ok((Outcome::blank(), ERROR_TIMEOUT)),
        }
    }

    fn pool_command(
        &self,
        call: &Call,
        pool: WString,
        command: WirePoolCommand,
    ) -> CallResult<(Outcome, u32)> {
        if !self.admitted(call) {
            return Ok((Outcome::blank(), ERROR_ACCESS_DENIED));
        }
        let was = self.was.clone();
        let command = PoolCommand::from(command);
        tracing::info!(pool = %pool.0, ?command, client = ?call.client, "service control: pool command");
        match self.ask(async move { was.pool_command(&pool.0, command).await }) {
            Some(result) => Ok((Outcome::from_result(result), 0)),
            None => Ok((Outcome::blank(), ERROR_TIMEOUT)),
        }
    }

    fn synced(&self, call: &Call) -> CallResult<u32> {
        if !self.admitted(call) {
            return Ok(ERROR_ACCESS_DENIED);
        }
        let was = self.was.clone();
        let change = self.files.metabase().snapshot().change_number();
        match self.ask(async move { was.synced(change).await }) {
            Some(()) => Ok(0),
            None => Ok(ERROR_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_crosses_the_wire_unchanged() {
        let cases: Vec<Result<Done, CommandError>> = vec![
            Ok(Done::PoolStarted {
                pool: "A".into(),
                already: false,
            }),
            Ok(Done::PoolStarted {
                pool: "A".into(),
                already: true,
            }),
            Ok(Done::PoolStopped { pool: "B".into() }),
            Ok(Done::PoolRecycled {
                pool: "C".into(),
                workers: 3,
            }),
            Ok(Done::Site {
                id: 7,
                command: SiteCommand::Pause,
            }),
            Err(CommandError::NoSuchPool("x".into())),
            Err(CommandError::Iis5Isolation("x".into())),
            Err(CommandError::PoolNotInMetabase("x".into())),
            Err(CommandError::PoolIsStopped("x".into())),
            Err(CommandError::NoSuchSite(9)),
            Err(CommandError::SiteNotRunning(9)),
            Err(CommandError::SiteNotPaused(9)),
            Err(CommandError::SiteCannotStart {
                id: 9,
                reason: "port 80 is in use".into(),
            }),
            Err(CommandError::ServiceGone),
        ];
        for case in cases {
            let wire = Outcome::from_result(case.clone());
            let bytes = msrpc::ndr::to_bytes(&wire, msrpc::ndr::Syntax::Ndr20);
            let back: Outcome =
                msrpc::ndr::from_bytes(&bytes, msrpc::ndr::Syntax::Ndr20, true).unwrap();
            assert_eq!(back.into_result(), case);
        }
    }

    #[test]
    fn pools_cross_the_wire_unchanged() {
        let pool = was::PoolStatus {
            name: "DefaultAppPool".into(),
            state: PoolState::Stopped,
            reason: Some("rapid-fail protection".into()),
            workers: vec![was::WorkerStatus {
                pid: 42,
                state: WorkerState::Stopping,
                uptime_seconds: 5,
                requests: 17,
                active_requests: 1,
                file_cache_hits: 9,
                file_cache_misses: 2,
                user: "www-data".into(),
            }],
            queued: 3,
            counters: was::PoolCounters {
                worker_starts: 4,
                worker_failures: 2,
                recycles: 1,
                rapid_fail_stops: 1,
                queue_arrivals: 30,
                queue_rejections: 3,
            },
            recent_failures: 2,
            last_failure: None,
        };
        let wire = WirePool::from(&pool);
        let bytes = msrpc::ndr::to_bytes(&wire, msrpc::ndr::Syntax::Ndr20);
        let back: WirePool =
            msrpc::ndr::from_bytes(&bytes, msrpc::ndr::Syntax::Ndr20, true).unwrap();
        let back = was::PoolStatus::from(&back);
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&pool).unwrap()
        );
    }
}
