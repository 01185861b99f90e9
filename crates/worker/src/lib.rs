//! The w3wp role: a worker process serving one application pool's request
//! queue with IIS 6's static-content pipeline.
//!
//! The activation service starts it (`inetsrv worker --pool NAME`) with
//! the control channel on its standard input ([`worker_control`]) and
//! hands it everything it needs there: its configuration (the keys of its
//! pool's sites, without secrets), the content directories as open
//! descriptors ([`content`]), and the identity to become. The worker
//! connects to the listener, becomes that identity, opens its pool's
//! queue, and answers requests until told to stop; then it stops taking
//! requests, finishes those in hand and exits, so a recycle loses nothing.
//! It never reads the state directory, owns no configuration and no
//! client connection: the service and the listener own those.

pub mod auth;
pub mod call_pool;
pub mod cgi;
pub mod changes;
pub mod compress;
pub mod config;
pub mod content;
pub mod errors;
pub mod fastcgi;
pub mod filecache;
pub mod files;
pub mod filters;
/// What the fuzz targets and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod ip_text;
pub mod isapi;
pub mod listing;
pub mod module_files;
pub mod pipeline;
pub mod raw_filters;
pub mod sandbox;
pub mod site;
pub mod watch;

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quietsock::QuietUnixStream;
use tokio::sync::{mpsc, Notify};
use worker_control::{FromWorker, Identity, Received, Sender, ToWorker, WorkerConfig};

use crate::auth::Logons;
use crate::config::Config;
use crate::content::{Content, HandedRoot};
use crate::pipeline::Pipeline;

/// How a worker is started.
#[derive(Clone, Debug)]
pub struct Options {
    /// The application pool (the queue's name), as the command line
    /// names it; the configuration must agree.
    pub pool: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the control channel: {0} (inetsrv worker is started by the activation service, with its control socket as standard input)")]
    Control(String),
    #[error("the configuration: {0}")]
    Config(#[from] metabase::Error),
    #[error("cannot reach the listener at {path}: {source}")]
    Listener {
        path: String,
        source: httpapi::Error,
    },
    #[error("cannot become user {user} (uid {uid}, gid {gid}): {reason}")]
    Identity {
        user: String,
        uid: u32,
        gid: u32,
        reason: String,
    },
    #[error("cannot open the queue of application pool {pool}: {source}")]
    Queue {
        pool: String,
        source: httpapi::Error,
    },
    #[error("cannot confine the worker: {0}")]
    Sandbox(String),
}

/// How often cached files are checked for changes.
const WATCH_PERIOD: Duration = Duration::from_millis(500);

type Inbox = mpsc::UnboundedReceiver<Received<ToWorker>>;

/// Runs the worker until it is told to stop (or its service goes away).
pub async fn run(options: Options) -> Result<(), WorkerError> {
    let stream = control_socket()?;
    let (out, inbox) = worker_control::channel::<FromWorker, ToWorker>(stream);
    let result = serve(options, out.clone(), inbox).await;
    if let Err(e) = &result {
        out.send(&FromWorker::Fatal {
            message: e.to_string(),
        });
        // Let the writer deliver the last word.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    result
}

/// The control socket: standard input, which must be a Unix socket.
fn control_socket() -> Result<QuietUnixStream, WorkerError> {
    let bad = |e: std::io::Error| WorkerError::Control(e.to_string());
    let fd: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned().map_err(bad)?;
    use nix::sys::stat::SFlag;
    let is_socket = nix::sys::stat::fstat(&fd)
        .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits());
    if !is_socket {
        return Err(WorkerError::Control(
            "standard input is not a socket".into(),
        ));
    }
    QuietUnixStream::from_std(std::os::unix::net::UnixStream::from(fd)).map_err(bad)
}

/// The roots and modules sent before a configuration, and the
/// configuration.
type Handed = (
    u64,
    Box<WorkerConfig>,
    Vec<HandedRoot>,
    Vec<(PathBuf, OwnedFd)>,
);

/// Waits for the first configuration (`None`: told to stop first).
async fn first_configuration(inbox: &mut Inbox) -> Result<Option<Handed>, WorkerError> {
    let mut roots = Vec::new();
    let mut modules = Vec::new();
    loop {
        let Some(Received { message, fd }) = inbox.recv().await else {
            return Err(WorkerError::Control(
                "closed before the configuration came".into(),
            ));
        };
        match message {
            ToWorker::Root { path, links } => {
                roots.extend(fd.map(|dir| HandedRoot { path, dir, links }))
            }
            ToWorker::Module { path } => modules.extend(fd.map(|file| (path, file))),
            ToWorker::Configure { seq, config } => return Ok(Some((seq, config, roots, modules))),
            ToWorker::Stop => return Ok(None),
            _ => {}
        }
    }
}

/// One configuration generation from what the service sent.
fn build_config(config: &WorkerConfig, roots: Vec<HandedRoot>) -> Result<Config, WorkerError> {
    let snapshot = metabase::Snapshot::from_image(&config.metabase, config.change_number)?;
    let mut built = Config::new(
        Arc::new(snapshot),
        config.compression_dir.clone(),
        Content::new(roots),
    );
    built.listener_caches = config.listener_caches;
    Ok(built)
}

/// Becomes the pool's identity: its groups, then its group and user, for
/// every thread of the process (glibc's set*id reach them all). Nothing
/// here can be undone: a worker that did this has no way back to root.
fn become_identity(identity: &Identity) -> Result<(), WorkerError> {
    use nix::unistd::{getegid, geteuid, getuid, setgid, setgroups, setuid, Gid, Uid};
    let fail = |reason: String| WorkerError::Identity {
        user: identity.name.clone(),
        uid: identity.uid,
        gid: identity.gid,
        reason,
    };
    let (uid, gid) = (Uid::from_raw(identity.uid), Gid::from_raw(identity.gid));
    if geteuid() == uid && getegid() == gid {
        return Ok(());
    }
    let groups = std::ffi::CString::new(identity.name.as_str())
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, gid).ok())
        .unwrap_or_else(|| vec![gid]);
    setgroups(&groups).map_err(|e| fail(format!("setgroups: {e}")))?;
    setgid(gid).map_err(|e| fail(format!("setgid: {e}")))?;
    setuid(uid).map_err(|e| fail(format!("setuid: {e}")))?;
    if getuid() != uid || geteuid() != uid || (!uid.is_root() && setuid(Uid::from_raw(0)).is_ok()) {
        return Err(fail("the change did not hold".into()));
    }
    Ok(())
}

/// The most requests taken from the queue between two looks at whether
/// the worker is told to stop (as many as a queue reads ahead by default).
const TAKEN_TOGETHER: usize = 64;

async fn serve(
    options: Options,
    out: Sender<FromWorker>,
    mut inbox: Inbox,
) -> Result<(), WorkerError> {
    let Some((seq, start, roots, modules)) = first_configuration(&mut inbox).await? else {
        return Ok(());
    };
    if !start.pool.eq_ignore_ascii_case(&options.pool) {
        return Err(WorkerError::Control(format!(
            "the configuration is for pool {}, not {}",
            start.pool, options.pool
        )));
    }
    let config = build_config(&start, roots)?;
    tracing::debug!(pool = %options.pool, "configuration received");
    // Connected with the rights the worker was started with; the socket
    // stays usable after the worker becomes its pool's identity.
    let session = httpapi::Session::connect(&start.listener_socket)
        .await
        .map_err(|source| WorkerError::Listener {
            path: start.listener_socket.display().to_string(),
            source,
        })?;
    // The program launcher keeps the rights the worker gives up next:
    // CGI and FastCGI programs start there, as the pool's identity.
    let programs = match spawner::Spawner::launch(
        Path::new("/proc/self/exe"),
        &["spawner"],
        start.identity.as_ref().map(|i| spawner::Identity {
            name: i.name.clone(),
            uid: i.uid,
            gid: i.gid,
        }),
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "the program launcher did not start: CGI and FastCGI programs will not run");
            None
        }
    };
    if let Some(identity) = &start.identity {
        become_identity(identity)?;
        tracing::debug!(user = %identity.name, "running as the pool's identity");
    }
    // Whatever the identity, rights only go down from here.
    sandbox::confine().map_err(WorkerError::Sandbox)?;
    let mut queue =
        session
            .open_queue(&options.pool)
            .await
            .map_err(|source| WorkerError::Queue {
                pool: options.pool.clone(),
                source,
            })?;
    tracing::debug!(pool = %options.pool, "queue open");
    // Logons (and reports from modules) travel the control channel: one
    // task forwards them.
    let (logon_tx, mut logon_rx) = mpsc::unbounded_channel::<FromWorker>();
    let reports = logon_tx.clone();
    let forward = out.clone();
    tokio::spawn(async move {
        while let Some(message) = logon_rx.recv().await {
            forward.send(&message);
        }
    });
    let pipeline = Arc::new(Pipeline::new(
        config,
        Logons::new(logon_tx),
        queue.control(),
    ));
    for (path, file) in modules {
        pipeline.module_files.hand(path, file);
    }
    if let Some(programs) = programs {
        let _ = pipeline.spawner.set(programs);
    }
    // Connections whose filters keep state close: END_OF_NET_SESSION.
    if let Some(mut closed) = session.disconnects() {
        let p = pipeline.clone();
        tokio::spawn(async move {
            while let Some(connection) = closed.recv().await {
                p.connection_closed(connection);
            }
        });
    }
    if start.iis5_isolation {
        pipeline.filter_modules.allow_raw_data();
        raw_filters::serve(pipeline.clone(), session.clone());
    }
    pipeline.modules.set_reports(reports.clone());
    pipeline.filter_modules.set_reports(reports);
    out.send(&FromWorker::Reloaded { seq });
    let active = Arc::new(AtomicU64::new(0));
    let idle = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());

    tokio::spawn(read_control(
        pipeline.clone(),
        inbox,
        active.clone(),
        stop.clone(),
        out.clone(),
    ));
    tokio::spawn(report_counters(
        pipeline.clone(),
        active.clone(),
        out.clone(),
    ));
    // File changes, as inotify reports them, forget what was looked up:
    // a thread of its own waits for them (the runtime has no safe way to
    // wait on a descriptor it does not own).
    if pipeline.changes.fd().is_some() {
        let changes = pipeline.clone();
        let _ = std::thread::Builder::new()
            .name("file-changes".into())
            .spawn(move || loop {
                if let Err(e) = changes.changes.wait() {
                    tracing::warn!(error = %e, "inotify failed; file metadata is no longer remembered");
                    changes.changes.disable();
                    break;
                }
                if let Err(e) = changes.changes.process(&changes.config.load().meta) {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::warn!(error = %e, "inotify failed; file metadata is no longer remembered");
                        changes.changes.disable();
                        break;
                    }
                }
            });
    }
    let watcher = pipeline.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_PERIOD);
        loop {
            tick.tick().await;
            if watcher.watch.is_empty() {
                continue;
            }
            let w = watcher.clone();
            let changed =
                tokio::task::spawn_blocking(move || w.watch.changed(&w.config.load().content))
                    .await
                    .unwrap_or_default();
            for prefix in changed {
                let _ = watcher.control.flush_cache(&prefix).await;
            }
        }
    });
    out.send(&FromWorker::Ready {
        pid: std::process::id(),
    });
    tracing::info!(pool = %options.pool, pid = std::process::id(), "worker ready");

    let restart_requests = start.restart_requests;
    let mut recycle_asked = false;
    let inline = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let answer = |req: httpapi::Request| {
        active.fetch_add(1, Ordering::SeqCst);
        let (p, a, i) = (pipeline.clone(), active.clone(), idle.clone());
        let mut task = Box::pin(async move {
            p.serve(req).await;
            if a.fetch_sub(1, Ordering::SeqCst) == 1 {
                i.notify_waiters();
            }
        });
        async move {
            // On one thread a request is polled here first: most (a file
            // from memory) are answered in that one poll, without a task
            // of their own. One that has to wait goes on as a task.
            let pending = inline
                && std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(task.as_mut().poll(cx).is_pending())
                })
                .await;
            if pending || !inline {
                tokio::spawn(task);
            }
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            received = queue.receive() => match received {
                Ok(first) => {
                    // Requests that came together are answered together,
                    // without a select (and its wake-up registrations) each;
                    // a bounded number, so a stop is seen under any load.
                    let mut next = Some(first);
                    let mut together = 0;
                    while let Some(req) = next {
                        together += 1;
                        answer(req).await;
                        let served = pipeline.served.load(Ordering::Relaxed) + active.load(Ordering::Relaxed);
                        if restart_requests > 0 && served >= restart_requests && !recycle_asked {
                            recycle_asked = true;
                            out.send(&FromWorker::RecycleMe {
                                reason: format!("{served} requests served (PeriodicRestartRequests)"),
                            });
                        }
                        next = if together < TAKEN_TOGETHER {
                            queue.receive_now().ok().flatten()
                        } else {
                            None
                        };
                    }
                }
                Err(e) => {
                    // The listener is gone: nothing more will come.
                    tracing::warn!(error = %e, "the queue closed");
                    break;
                }
            },
            _ = stop.notified() => break,
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => break,
        }
    }

    // Drain: the listener stops handing us requests; those already handed
    // over are answered before the process ends.
    out.send(&FromWorker::Draining);
    let _ = queue.stop_receiving().await;
    while let Some(req) = queue.try_receive() {
        answer(req).await;
    }
    loop {
        let notified = idle.notified();
        if active.load(Ordering::SeqCst) == 0 {
            break;
        }
        notified.await;
    }
    // Responses are written by the session's writer task: a call answered
    // after them is the proof that the listener has every byte.
    let _ = queue.close().await;
    // Extensions are told they are unloaded (TerminateExtension), as IIS
    // does when a worker is recycled or stopped.
    let modules = pipeline.modules.clone();
    let _ = tokio::task::spawn_blocking(move || modules.unload_all()).await;
    pipeline.filter_modules.unload_all();
    tracing::info!(pool = %options.pool, served = pipeline.served.load(Ordering::Relaxed), "worker stopped");
    Ok(())
}

/// How often the counters are reported while they change.
const COUNTER_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Reports the counters (FromWorker::Counters) once a period when they
/// changed; the service's view of this worker is then fresh between
/// pings.
async fn report_counters(pipeline: Arc<Pipeline>, active: Arc<AtomicU64>, out: Sender<FromWorker>) {
    let mut last = None;
    let mut tick = tokio::time::interval(COUNTER_PERIOD);
    loop {
        tick.tick().await;
        let (file_cache_hits, file_cache_misses) = pipeline.files.counters();
        let now = FromWorker::Counters {
            requests: pipeline.served.load(Ordering::Relaxed),
            active: active.load(Ordering::Relaxed),
            file_cache_hits,
            file_cache_misses,
        };
        if last.as_ref() != Some(&now) {
            if !out.send(&now) {
                return;
            }
            last = Some(now);
        }
    }
}

async fn read_control(
    pipeline: Arc<Pipeline>,
    mut inbox: Inbox,
    active: Arc<AtomicU64>,
    stop: Arc<Notify>,
    out: Sender<FromWorker>,
) {
    let mut roots = Vec::new();
    // The service is gone when the channel closes: an orphaned worker stops.
    while let Some(Received { message, fd }) = inbox.recv().await {
        match message {
            ToWorker::Ping { seq } => {
                let (file_cache_hits, file_cache_misses) = pipeline.files.counters();
                out.send(&FromWorker::Pong {
                    seq,
                    requests: pipeline.served.load(Ordering::Relaxed),
                    active: active.load(Ordering::Relaxed),
                    file_cache_hits,
                    file_cache_misses,
                    busiest_ms: pipeline.modules.busiest().as_millis() as u64,
                });
            }
            ToWorker::Root { path, links } => {
                roots.extend(fd.map(|dir| HandedRoot { path, dir, links }))
            }
            ToWorker::Module { path } => {
                if let Some(file) = fd {
                    pipeline.module_files.hand(path, file)
                }
            }
            ToWorker::Configure { seq, config } => {
                match build_config(&config, std::mem::take(&mut roots)) {
                    Ok(config) => {
                        pipeline.config.store(Arc::new(config));
                        // The new roots may be other directories under the
                        // same paths: watches are taken again as needed.
                        pipeline.changes.reset();
                        for prefix in pipeline.watch.take_all() {
                            let _ = pipeline.control.flush_cache(&prefix).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "configuration not applied"),
                }
                out.send(&FromWorker::Reloaded { seq });
            }
            ToWorker::LogonResult { id, ok } => pipeline.logons.answer(id, ok),
            ToWorker::CertLogonResult { id, user } => pipeline.logons.answer_user(id, user),
            ToWorker::UsersChanged => pipeline.logons.forget(),
            ToWorker::Stop => break,
        }
    }
    stop.notify_one();
}
