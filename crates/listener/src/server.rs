//! The listener itself: queues and URL prefixes, endpoints bound as
//! prefixes need them (several queues, several processes, one port), the
//! control socket programs connect to, and the cache scavenger.

use std::collections::HashMap;

use crate::session::Session;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use arc_swap::ArcSwap;
use httpapi::proto::{ApiError, ErrorCode};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::acl::UrlAcl;
use crate::cache::ResponseCache;
use crate::config::ListenerConfig;
use crate::http::Limits;
use crate::httperr::HttpErrLog;
use crate::queue::{Creator, DemandStartHook, Queue};
use crate::routing::{RoutingTable, UrlPrefix};
use crate::url::{Scheme, UrlOptions};

/// What a prefix routes to.
#[derive(Clone)]
pub(crate) struct Route {
    pub queue: Arc<Queue>,
    pub context: u64,
    pub site_id: Option<u32>,
    pub prefix: String,
}

/// The accept loops listening for each (scheme, port).
type Endpoints = HashMap<(Scheme, u16), Vec<JoinHandle<()>>>;

pub(crate) struct Shared {
    pub config: ListenerConfig,
    pub limits: Limits,
    pub url_options: UrlOptions,
    pub routes: ArcSwap<RoutingTable<Route>>,
    route_edit: Mutex<()>,
    queues: Mutex<QueueNames>,
    next_queue_id: AtomicU32,
    pub next_request_id: AtomicU64,
    endpoints: Mutex<Endpoints>,
    pub cache: ResponseCache,
    pub errlog: HttpErrLog,
    pub w3c: crate::w3c::W3cLogs,
    /// Requests being answered (heads read, responses not yet sent).
    pub busy: std::sync::atomic::AtomicUsize,
    /// MaxConnections, as permits.
    connections: Arc<Semaphore>,
    /// The Web service's counters ([MS-IRP]'s W3 statistics).
    pub stats: Arc<crate::stats::Statistics>,
    demand_hook: RwLock<Option<DemandStartHook>>,
    /// Control-socket sessions open, by user.
    sessions_by_uid: Mutex<HashMap<u32, usize>>,
    uid: u32,
    runtime: tokio::runtime::Handle,
    /// The SSL bindings in force, rebuilt when their file or the
    /// certificate store changes.
    pub tls: ArcSwap<crate::tls::TlsTable>,
    tls_policy: crate::tls::TlsPolicy,
    tls_resumption: crate::tls::Resumption,
    /// What the SSL files were when last read, and the problems found then.
    tls_seen: Mutex<(Option<TlsFilesStamp>, Vec<String>)>,
    /// The queue whose process filters every connection's raw data
    /// (IIS 5 isolation mode), if any.
    pub raw_filter: arc_swap::ArcSwapOption<crate::rawfilter::RawFilter>,
    /// Connection numbers, from 1.
    pub next_connection: AtomicU64,
    /// Sessions to tell when a connection closes, by connection
    /// (HttpWaitForDisconnect), and how many connections are watched.
    disconnect_watch: Mutex<HashMap<u64, Vec<std::sync::Weak<Session>>>>,
    watched: std::sync::atomic::AtomicUsize,
}

/// The SSL configuration file and the certificate store as they stood
/// (modification times, sizes, inodes): a change means a rebuild.
type TlsFilesStamp = Vec<Option<(std::time::SystemTime, u64, u64)>>;

fn tls_files_stamp(config: &ListenerConfig) -> TlsFilesStamp {
    use std::os::unix::fs::MetadataExt;
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p).ok().map(|m| {
            (
                m.modified().unwrap_or(std::time::UNIX_EPOCH),
                m.len(),
                m.ino(),
            )
        })
    };
    let mut out = vec![
        stamp(&config.ssl_config_file),
        stamp(&config.cert_store_dir),
    ];
    if let Ok(entries) = std::fs::read_dir(&config.cert_store_dir) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        out.extend(files.iter().map(|f| stamp(f)));
    }
    out
}

impl Shared {
    /// Rebuilds the TLS table when the SSL files changed since the last
    /// look (or always with `force`); returns the problems of the
    /// bindings in force (each also logged once, when found).
    pub(crate) fn reload_tls(&self, force: bool) -> Vec<String> {
        let mut seen = lock(&self.tls_seen);
        let stamp = tls_files_stamp(&self.config);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let stale = self.tls.load().stale_at.is_some_and(|at| now >= at);
        if !force && !stale && seen.0.as_ref() == Some(&stamp) {
            return seen.1.clone();
        }
        let store = certstore::Store::at(&self.config.cert_store_dir);
        let (table, mut problems) = match crate::tls::SslConfig::load(&self.config.ssl_config_file)
        {
            Ok(config) => {
                crate::tls::TlsTable::build(&config, &store, &self.tls_policy, &self.tls_resumption)
            }
            Err(e) => (
                crate::tls::TlsTable::default(),
                vec![format!("SSL bindings unreadable: {e}")],
            ),
        };
        problems.sort();
        for p in problems.iter().filter(|p| !seen.1.contains(p)) {
            tracing::warn!("{p}");
        }
        self.tls.store(Arc::new(table));
        *seen = (Some(stamp), problems.clone());
        problems
    }
}

/// Queues by name: the service's and programs' apart, so a program can
/// never take a name the service will use.
#[derive(Default)]
struct QueueNames {
    service: HashMap<String, Arc<Queue>>,
    programs: HashMap<String, Arc<Queue>>,
}

/// The most queues one user (not root, not the service's) may hold.
const MAX_QUEUES_PER_USER: usize = 64;
/// The most URL prefixes one user's queues may hold.
const MAX_URLS_PER_USER: usize = 256;
/// The most control-socket sessions one user may hold open.
const MAX_SESSIONS_PER_USER: usize = 128;

/// A session counted against its user while it lives.
pub(crate) struct SessionSlot {
    shared: Arc<Shared>,
    uid: u32,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.shared.sessions_by_uid);
        if let Some(n) = counts.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

impl Shared {
    /// Counts a new session of `uid`; `None` when the user holds the most
    /// one user may (root and the service's user are not limited).
    pub(crate) fn admit_session(self: &Arc<Self>, uid: u32) -> Option<SessionSlot> {
        let mut counts = lock(&self.sessions_by_uid);
        let n = counts.entry(uid).or_insert(0);
        if *n >= MAX_SESSIONS_PER_USER && uid != 0 && uid != self.uid {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            shared: self.clone(),
            uid,
        })
    }
}

/// Who asks, from the control socket's peer credentials.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller {
    pub uid: u32,
    pub pid: Option<u32>,
}

fn check_queue_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("'{name}' is not a valid queue name"),
        ));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Tells `session` when connection `connection` closes.
    pub(crate) fn watch_disconnect(&self, connection: u64, session: &Arc<Session>) {
        let mut watch = self
            .disconnect_watch
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let sessions = watch.entry(connection).or_insert_with(|| {
            self.watched.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        });
        if !sessions
            .iter()
            .any(|s| std::ptr::eq(s.as_ptr(), Arc::as_ptr(session)))
        {
            sessions.push(Arc::downgrade(session));
        }
    }

    /// A connection closed: the sessions waiting on it hear of it.
    pub(crate) fn disconnected(&self, connection: u64) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        let sessions = self
            .disconnect_watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&connection);
        if let Some(sessions) = sessions {
            self.watched.fetch_sub(1, Ordering::Relaxed);
            for session in sessions.iter().filter_map(std::sync::Weak::upgrade) {
                session.disconnected(connection);
            }
        }
    }

    pub(crate) fn demand_hook(&self) -> Option<DemandStartHook> {
        self.demand_hook
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A program creates a queue, or opens an existing one to serve it
    /// too. The service's queues are apart: a program never creates one
    /// (a name the service uses is refused) and opens one only when the
    /// service allowed its process.
    pub(crate) fn open_queue(
        &self,
        name: &str,
        caller: &Caller,
        open_existing: bool,
    ) -> Result<Arc<Queue>, ApiError> {
        check_queue_name(name)?;
        let mut queues = lock(&self.queues);
        if open_existing {
            if let Some(queue) = queues.service.get(name) {
                if queue.may_open(caller.uid, caller.pid) {
                    return Ok(queue.clone());
                }
                tracing::warn!(queue = name, pid = ?caller.pid, user = %crate::acl::user_name(caller.uid), "refused: a process the service did not start asked for its queue");
                return Err(ApiError::new(
                    ErrorCode::AccessDenied,
                    format!("queue {name} is the service's: only the worker processes it starts may open it"),
                ));
            }
            let Some(queue) = queues.programs.get(name) else {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no queue named {name}"),
                ));
            };
            if !queue.may_open(caller.uid, caller.pid) && caller.uid != self.uid {
                return Err(ApiError::new(
                    ErrorCode::AccessDenied,
                    format!("queue {name} belongs to another user"),
                ));
            }
            return Ok(queue.clone());
        }
        if queues.service.contains_key(name) {
            tracing::warn!(queue = name, pid = ?caller.pid, user = %crate::acl::user_name(caller.uid), "refused: a program asked to create a queue by a name the service uses");
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("queue {name} is the service's"),
            ));
        }
        if queues.programs.contains_key(name) {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("queue {name} exists"),
            ));
        }
        if caller.uid != 0 && caller.uid != self.uid {
            let held = queues
                .programs
                .values()
                .filter(|q| q.owner_uid == caller.uid)
                .count();
            if held >= MAX_QUEUES_PER_USER {
                return Err(ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "user {} holds {held} queues, the most one user may",
                        crate::acl::user_name(caller.uid)
                    ),
                ));
            }
        }
        let queue = self.new_queue(name, *caller, Creator::Program);
        queues.programs.insert(name.to_string(), queue.clone());
        Ok(queue)
    }

    /// The service creates one of its queues. A program's queue of the
    /// same name does not stand in its way (it stays the program's, and
    /// workers open the service's).
    pub(crate) fn create_service_queue(&self, name: &str) -> Result<Arc<Queue>, ApiError> {
        check_queue_name(name)?;
        let mut queues = lock(&self.queues);
        if queues.service.contains_key(name) {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("queue {name} exists"),
            ));
        }
        if let Some(other) = queues.programs.get(name) {
            tracing::warn!(queue = name, pid = ?other.owner_pid, user = %crate::acl::user_name(other.owner_uid), "a program holds a queue of the same name as the service's; it stays apart, and the service's queue serves the site");
        }
        let queue = self.new_queue(
            name,
            Caller {
                uid: self.uid,
                pid: None,
            },
            Creator::Service,
        );
        queues.service.insert(name.to_string(), queue.clone());
        Ok(queue)
    }

    fn new_queue(&self, name: &str, owner: Caller, creator: Creator) -> Arc<Queue> {
        let id = self.next_queue_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Queue::new(
            id,
            name,
            owner,
            creator,
            self.config.default_queue_length as usize,
        ))
    }

    /// Removes a queue nobody holds any more, with its prefixes.
    pub(crate) fn remove_queue(self: &Arc<Self>, queue: &Arc<Queue>) {
        {
            let mut queues = lock(&self.queues);
            let names = match queue.creator {
                Creator::Service => &mut queues.service,
                Creator::Program => &mut queues.programs,
            };
            if names
                .get(&queue.name)
                .is_some_and(|q| Arc::ptr_eq(q, queue))
            {
                names.remove(&queue.name);
            }
        }
        let _edit = lock(&self.route_edit);
        let mut table = RoutingTable::clone(&self.routes.load());
        let mut removed = Vec::new();
        table.retain(|prefix, route| {
            let keep = !Arc::ptr_eq(&route.queue, queue);
            if !keep {
                removed.push(prefix.clone());
            }
            keep
        });
        self.close_unused_endpoints();
        self.routes.store(Arc::new(table));
        for prefix in removed {
            self.cache.flush(&prefix);
        }
        queue.drain();
    }

    /// Registers a prefix for a queue. `uid` is the registering program's
    /// user, checked against the URL reservations (`None` in-process).
    pub(crate) fn add_url(
        self: &Arc<Self>,
        queue: &Arc<Queue>,
        prefix: &str,
        context: u64,
        site_id: Option<u32>,
        uid: Option<u32>,
    ) -> Result<(), ApiError> {
        let parsed = UrlPrefix::parse(prefix)
            .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, e.to_string()))?;
        if let Some(uid) = uid {
            if uid != 0 && uid != self.uid {
                let acl = UrlAcl::load(&self.config.url_acl_file).map_err(|e| {
                    ApiError::new(
                        ErrorCode::AccessDenied,
                        format!("URL reservations unreadable: {e}"),
                    )
                })?;
                let held = self
                    .routes
                    .load()
                    .iter()
                    .filter(|(_, r)| {
                        r.queue.owner_uid == uid && r.queue.creator == Creator::Program
                    })
                    .count();
                if held >= MAX_URLS_PER_USER {
                    return Err(ApiError::new(
                        ErrorCode::QuotaExceeded,
                        format!(
                            "user {} holds {held} URL prefixes, the most one user may",
                            crate::acl::user_name(uid)
                        ),
                    ));
                }
                if !acl.allows(uid, &parsed) {
                    return Err(ApiError::new(
                        ErrorCode::AccessDenied,
                        format!(
                            "no URL reservation lets user {} register {parsed}; an administrator can add one with: inetsrv urlacl add {parsed} --user {}",
                            crate::acl::user_name(uid),
                            crate::acl::user_name(uid)
                        ),
                    ));
                }
            }
        }
        let _edit = lock(&self.route_edit);
        let mut table = RoutingTable::clone(&self.routes.load());
        let route = Route {
            queue: queue.clone(),
            context,
            site_id,
            prefix: parsed.to_string(),
        };
        if let Err(existing) = table.insert(parsed.clone(), route) {
            return Err(if Arc::ptr_eq(&existing.queue, queue) {
                ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("{parsed} is already registered to this queue"),
                )
            } else {
                ApiError::new(
                    ErrorCode::SharingViolation,
                    format!("{parsed} is registered to queue {}", existing.queue.name),
                )
            });
        }
        self.ensure_endpoint(parsed.scheme, parsed.port)?;
        self.routes.store(Arc::new(table));
        Ok(())
    }

    pub(crate) fn remove_url(
        self: &Arc<Self>,
        queue: &Arc<Queue>,
        prefix: &str,
    ) -> Result<(), ApiError> {
        let parsed = UrlPrefix::parse(prefix)
            .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, e.to_string()))?;
        let _edit = lock(&self.route_edit);
        let mut table = RoutingTable::clone(&self.routes.load());
        let owned = table
            .iter()
            .any(|(p, r)| *p == parsed && Arc::ptr_eq(&r.queue, queue));
        if !owned {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{parsed} is not registered to this queue"),
            ));
        }
        table.remove(&parsed);
        self.close_unused_endpoints();
        self.routes.store(Arc::new(table));
        self.cache.flush(&parsed);
        Ok(())
    }

    /// Drops cached responses under `prefix`; for a program (`for_queue`)
    /// only those under the URLs its queue holds.
    pub(crate) fn flush_cache(
        &self,
        prefix: &str,
        for_queue: Option<&Arc<Queue>>,
    ) -> Result<usize, ApiError> {
        let parsed = UrlPrefix::parse(prefix)
            .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, e.to_string()))?;
        let Some(queue) = for_queue else {
            return Ok(self.cache.flush(&parsed));
        };
        let owned: Vec<UrlPrefix> = self
            .routes
            .load()
            .iter()
            .filter(|(_, route)| Arc::ptr_eq(&route.queue, queue))
            .map(|(prefix, _)| prefix.clone())
            .collect();
        Ok(self.cache.flush_within(&parsed, Some(&owned)))
    }

    /// Listens on (scheme, port) on every listen address, if not yet.
    fn ensure_endpoint(self: &Arc<Self>, scheme: Scheme, port: u16) -> Result<(), ApiError> {
        let mut endpoints = lock(&self.endpoints);
        if endpoints.contains_key(&(scheme, port)) {
            return Ok(());
        }
        let other = match scheme {
            Scheme::Http => Scheme::Https,
            Scheme::Https => Scheme::Http,
        };
        if endpoints.contains_key(&(other, port)) {
            return Err(ApiError::new(
                ErrorCode::AddressInUse,
                format!(
                    "port {port} serves {}; it cannot serve {} too",
                    other.as_str(),
                    scheme.as_str()
                ),
            ));
        }
        let mut listeners = Vec::new();
        let mut last_error = None;
        for ip in &self.config.listen_addresses {
            match bind_retrying(SocketAddr::new(*ip, port)) {
                Ok(l) => listeners.push(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(ApiError::new(
                        ErrorCode::AddressInUse,
                        format!("port {port} on {ip} is in use by another program"),
                    ));
                }
                Err(e) => last_error = Some(format!("{ip}:{port}: {e}")),
            }
        }
        if listeners.is_empty() {
            return Err(ApiError::new(
                ErrorCode::AddressInUse,
                last_error.unwrap_or_else(|| format!("cannot listen on port {port}")),
            ));
        }
        // Callers may be on any thread (the activation service's too).
        let _guard = self.runtime.enter();
        let mut tasks = Vec::new();
        for std_listener in listeners {
            let listener = TcpListener::from_std(std_listener)
                .map_err(|e| ApiError::new(ErrorCode::AddressInUse, e.to_string()))?;
            tasks.push(
                self.runtime
                    .spawn(accept_loop(self.clone(), listener, scheme)),
            );
        }
        endpoints.insert((scheme, port), tasks);
        Ok(())
    }

    /// Closes ports no prefix uses any more, after a grace period: a
    /// prefix moving between queues (a site paused, a pool replaced) keeps
    /// its port open instead of racing to bind it again.
    fn close_unused_endpoints(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(ENDPOINT_GRACE).await;
            let Some(me) = me.upgrade() else { return };
            let used: Vec<(Scheme, u16)> = me.routes.load().ports().collect();
            lock(&me.endpoints).retain(|key, tasks| {
                let keep = used.contains(key);
                if !keep {
                    for t in tasks.iter() {
                        t.abort();
                    }
                }
                keep
            });
        });
    }
}

/// How long an unused port stays open.
const ENDPOINT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Binds, giving a listener of ours that is closing a moment to let go.
fn bind_retrying(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// MaxConnections, or when it is 0 (not set) sized from the descriptors
/// this process may open ([`connections_for`]), its soft limit first
/// raised to the hard one.
fn connection_limit(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let descriptors = raise_descriptor_limit();
    let connections = connections_for(descriptors);
    tracing::info!(
        descriptors,
        connections,
        "MaxConnections not set: sized from the descriptor limit"
    );
    connections
}

/// Raises the soft descriptor limit to the hard one where it is lower;
/// returns the limit in force.
fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard))
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() =>
        {
            hard
        }
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// Three quarters of `descriptors` (at least 16): connections beyond it
/// get 503 ConnLimit instead of failing to be accepted, and the rest is
/// left for files, sessions and logs.
fn connections_for(descriptors: u64) -> usize {
    (descriptors.min(1 << 24) as usize * 3 / 4).max(16)
}

/// A warning for a failure that repeats fast (accept while descriptors
/// are out): shown at most once per period, with how many were not.
pub(crate) struct Throttle {
    period: std::time::Duration,
    last: Option<std::time::Instant>,
    unshown: u64,
}

impl Throttle {
    pub(crate) fn new(period: std::time::Duration) -> Throttle {
        Throttle {
            period,
            last: None,
            unshown: 0,
        }
    }

    /// `Some(unshown since the last one)` when this one is to be shown.
    pub(crate) fn show(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.period)
        {
            self.unshown += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unshown))
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, scheme: Scheme) {
    let mut warnings = Throttle::new(std::time::Duration::from_secs(10));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off, keep serving.
                if let Some(unshown) = warnings.show(std::time::Instant::now()) {
                    tracing::warn!(error = %e, more_since_last = unshown, "accept failed (shown once per 10 s)");
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| listener.local_addr().unwrap_or(remote));
        let shared = shared.clone();
        let permit = shared.connections.clone().try_acquire_owned();
        shared.stats.connection();
        match permit {
            Ok(permit) => {
                tokio::spawn(async move {
                    // The permit goes with the connection, also to a
                    // program that takes it over.
                    match scheme {
                        Scheme::Http => {
                            let stream = crate::transport::Transport::Plain(stream);
                            crate::conn::serve(shared, stream, remote, local, scheme, None, permit)
                                .await;
                        }
                        Scheme::Https => {
                            crate::conn::serve_tls(shared, stream, remote, local, permit).await;
                        }
                    }
                });
            }
            Err(_) => {
                tokio::spawn(crate::conn::refuse(shared, stream, remote, local));
            }
        }
    }
}

/// A queue held in-process (by the activation service, or a test): it
/// lives until the handle is dropped.
pub struct QueueHandle {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
}

impl QueueHandle {
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    pub fn add_url(
        &self,
        prefix: &str,
        context: u64,
        site_id: Option<u32>,
    ) -> Result<(), ApiError> {
        self.shared
            .add_url(&self.queue, prefix, context, site_id, None)
    }

    pub fn remove_url(&self, prefix: &str) -> Result<(), ApiError> {
        self.shared.remove_url(&self.queue, prefix)
    }
}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        if self.queue.remove_holder() {
            self.shared.remove_queue(&self.queue);
        }
    }
}

/// A running listener.
pub struct Listener {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    control_socket: PathBuf,
}

impl Listener {
    /// Starts the listener on the current tokio runtime: the control
    /// socket is bound at once; ports are bound as prefixes need them.
    pub async fn start(config: ListenerConfig) -> std::io::Result<Listener> {
        config.validate().map_err(std::io::Error::other)?;
        let runtime = tokio::runtime::Handle::current();
        let connection_permits = connection_limit(config.max_connections);
        let connections = Arc::new(Semaphore::new(connection_permits));
        let shared = Arc::new(Shared {
            limits: config.limits(),
            url_options: config.url_options(),
            routes: ArcSwap::from_pointee(RoutingTable::default()),
            route_edit: Mutex::new(()),
            queues: Mutex::new(QueueNames::default()),
            next_queue_id: AtomicU32::new(1),
            next_request_id: AtomicU64::new(1),
            endpoints: Mutex::new(HashMap::new()),
            cache: ResponseCache::new(config.uri_max_cache_megabyte_count.saturating_mul(1 << 20)),
            errlog: HttpErrLog::new(
                config.error_logging_dir.clone(),
                config.error_log_file_truncate_size,
                config.error_log_max_files,
            ),
            w3c: crate::w3c::W3cLogs::new(config.w3c_log_max_files),
            busy: std::sync::atomic::AtomicUsize::new(0),
            connections: connections.clone(),
            stats: Arc::new(crate::stats::Statistics::new({
                let connections = connections.clone();
                Box::new(move || {
                    connection_permits.saturating_sub(connections.available_permits()) as u64
                })
            })),
            demand_hook: RwLock::new(None),
            sessions_by_uid: Mutex::new(HashMap::new()),
            uid: current_uid(),
            runtime,
            tls: ArcSwap::from_pointee(crate::tls::TlsTable::default()),
            tls_policy: config.tls_policy().map_err(std::io::Error::other)?,
            tls_resumption: crate::tls::Resumption::new(),
            tls_seen: Mutex::new((None, Vec::new())),
            raw_filter: arc_swap::ArcSwapOption::empty(),
            next_connection: AtomicU64::new(1),
            disconnect_watch: Mutex::new(HashMap::new()),
            watched: std::sync::atomic::AtomicUsize::new(0),
            config,
        });
        shared.reload_tls(true);

        let socket_path = shared.config.control_socket.clone();
        if let Some(dir) = socket_path.parent() {
            // Others pass through to the socket (it is 0666, as HTTP.SYS's
            // handle is open to all), whatever the creator's umask; they
            // do not list the directory.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(dir)?;
        }
        remove_stale_socket(&socket_path)?;
        let control = UnixListener::bind(&socket_path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Anyone may connect; URL reservations decide what they may do.
            std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o666))?;
        }
        let mut tasks = Vec::new();
        let me = shared.clone();
        tasks.push(tokio::spawn(async move {
            let next = AtomicU64::new(1);
            let mut warnings = Throttle::new(std::time::Duration::from_secs(10));
            let mut refusals = Throttle::new(std::time::Duration::from_secs(10));
            loop {
                match control.accept().await {
                    Ok((stream, _)) => {
                        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
                        let Some(slot) = me.admit_session(uid) else {
                            if let Some(unshown) = refusals.show(std::time::Instant::now()) {
                                tracing::warn!(user = %crate::acl::user_name(uid), more_since_last = unshown, "refused a control-socket session: the user holds the most sessions one user may");
                            }
                            drop(stream);
                            continue;
                        };
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        let me = me.clone();
                        tokio::spawn(async move {
                            crate::session::run(me, stream, id).await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        if let Some(unshown) = warnings.show(std::time::Instant::now()) {
                            tracing::warn!(error = %e, more_since_last = unshown, "control socket accept failed (shown once per 10 s)");
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            }
        }));
        let me = shared.clone();
        tasks.push(tokio::spawn(async move {
            // Request logs reach their files at least once a second.
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                let logs = me.clone();
                let _ = tokio::task::spawn_blocking(move || logs.w3c.flush_all()).await;
            }
        }));
        let me = shared.clone();
        tasks.push(tokio::spawn(async move {
            // SSL bindings and certificates changed by hand or by another
            // process apply to new connections within a second.
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload_tls(false)).await;
            }
        }));
        let me = shared.clone();
        tasks.push(tokio::spawn(async move {
            let period = ListenerConfig::seconds(me.config.uri_scavenger_period);
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                me.cache.scavenge(period);
            }
        }));
        Ok(Listener {
            shared,
            tasks,
            control_socket: socket_path,
        })
    }

    pub fn control_socket(&self) -> &std::path::Path {
        &self.control_socket
    }

    /// Empties the response cache (IIS's FlushMemoryCache); how many
    /// entries went.
    pub fn flush_all_cached(&self) -> usize {
        self.shared.cache.flush_all()
    }

    /// The response cache's counters.
    pub fn cache_counters(&self) -> crate::cache::CacheCounters {
        self.shared.cache.counters()
    }

    /// Every queue's counters, the service's first, by name.
    pub fn queue_counters(&self) -> Vec<crate::queue::QueueCounters> {
        let queues = lock(&self.shared.queues);
        let mut out: Vec<_> = queues
            .service
            .values()
            .chain(queues.programs.values())
            .map(|q| q.counters())
            .collect();
        out.sort_by(|a, b| b.service.cmp(&a.service).then(a.name.cmp(&b.name)));
        out
    }

    /// The Web service's counters, kept as requests are answered.
    pub fn statistics(&self) -> Arc<crate::stats::Statistics> {
        self.shared.stats.clone()
    }

    /// Reads the SSL bindings and certificates again now if they changed
    /// (the service calls this after it changed them); returns the
    /// problems of the bindings in force.
    pub fn reload_tls(&self) -> Vec<String> {
        self.shared.reload_tls(false)
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.shared.config
    }

    /// Creates a queue held by this process (the activation service's
    /// queues, created before any worker exists).
    pub fn create_queue(&self, name: &str) -> Result<QueueHandle, ApiError> {
        let queue = self.shared.create_service_queue(name)?;
        queue.add_holder();
        Ok(QueueHandle {
            queue,
            shared: self.shared.clone(),
        })
    }

    /// Names the queue whose process filters the raw data of every
    /// connection accepted from now on (IIS 5 isolation mode: the
    /// process of SF_NOTIFY_READ_RAW_DATA and SF_NOTIFY_SEND_RAW_DATA
    /// filters), with the directions it filters; `None` stops it.
    pub fn set_raw_filter(&self, queue: Option<&QueueHandle>, read: bool, send: bool) {
        self.shared.raw_filter.store(queue.map(|q| {
            Arc::new(crate::rawfilter::RawFilter {
                queue: q.queue.clone(),
                read,
                send,
            })
        }));
    }

    /// Called when a request arrives for a queue nobody serves: the
    /// activation service starts a worker here.
    pub fn set_demand_start(&self, hook: DemandStartHook) {
        *self
            .shared
            .demand_hook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// The prefixes registered, as text.
    pub fn prefixes(&self) -> Vec<String> {
        self.shared
            .routes
            .load()
            .iter()
            .map(|(p, _)| p.to_string())
            .collect()
    }

    /// Sets a site's W3C request log (`None`: the site does not log).
    pub fn set_site_logging(&self, site_id: u32, settings: Option<crate::w3c::W3cSettings>) {
        self.shared.w3c.configure(site_id, settings);
    }

    /// Stops taking connections and waits (up to `grace`) for the
    /// requests being answered to finish; true if they all did.
    pub async fn drain(&self, grace: std::time::Duration) -> bool {
        for (_, tasks) in lock(&self.shared.endpoints).drain() {
            for t in tasks {
                t.abort();
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.busy.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.shared.w3c.flush_all();
        self.shared.errlog.flush();
        true
    }

    /// Writes buffered request log lines and waiting HTTPERR lines now.
    pub fn flush_logs(&self) {
        self.shared.w3c.flush_all();
        self.shared.errlog.flush();
    }

    /// Drops cached responses at or under a prefix; returns how many.
    pub fn flush_cache(&self, prefix: &str) -> Result<usize, ApiError> {
        self.shared.flush_cache(prefix, None)
    }

    pub fn cache_hits(&self) -> u64 {
        self.shared.cache.hits()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.w3c.flush_all();
        for t in &self.tasks {
            t.abort();
        }
        for (_, tasks) in lock(&self.shared.endpoints).drain() {
            for t in tasks {
                t.abort();
            }
        }
        let _ = std::fs::remove_file(&self.control_socket);
    }
}

fn current_uid() -> u32 {
    // The owner of our own /proc entry is our effective uid.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// A socket file left by a listener that is gone is removed; one that
/// answers belongs to a running listener, which is an error.
fn remove_stale_socket(path: &std::path::Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} belongs to a running listener", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_repeating_failure_is_shown_once_per_period_with_the_count_between() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.show(start), Some(0));
        for ms in [20, 40, 60] {
            assert_eq!(t.show(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.show(start + Duration::from_secs(10)), Some(3));
        assert_eq!(t.show(start + Duration::from_secs(11)), None);
    }

    #[test]
    fn an_unset_connection_limit_comes_from_the_descriptor_limit() {
        assert_eq!(connection_limit(500), 500);
        assert_eq!(connections_for(256), 192);
        assert_eq!(connections_for(1024), 768);
        assert_eq!(connections_for(8), 16);
        assert_eq!(connections_for(u64::MAX), (1 << 24) * 3 / 4);
    }
}
