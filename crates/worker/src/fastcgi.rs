//! FastCGI applications, as IIS 6's FastCGI extension ran them: each
//! application (an `IIsFastCgiApplication` key, fcgiext.ini's section)
//! has a pool of processes in each worker, started on demand through the
//! worker's launcher up to MaxInstances, each listening on a socket of
//! its own (a Unix socket, or TCP on loopback) and reused with
//! FCGI_KEEP_CONN. A request waits for a free process (up to QueueLength
//! waiting; then 503), runs within RequestTimeout and ActivityTimeout,
//! and streams both ways; a process is retired after InstanceMaxRequests
//! and stopped after IdleTimeout unused. A process that ends before it
//! answers gets the request again on a fresh one (once); too many ends in
//! a minute (RapidFailsPerMinute) stop the application until its
//! configuration changes. FCGI_GET_VALUES asks each process how many
//! connections it takes (FCGI_MAX_CONNS).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fastcgi::{ProtocolStatus, Record};
use httpapi::{BodyReader, Request, Response};
use metabase::schema::fastcgi as ids;
use metabase::{MbPath, Snapshot, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cgi::{bad_gateway, each_meta_variable, relay, RelayOptions, Relayed, Script};
use crate::pipeline::Pipeline;

/// A request body kept for a retry up to this size.
const REPLAYABLE_BODY: usize = 1 << 20;
/// How long a new process has to answer FCGI_GET_VALUES.
const GET_VALUES_WAIT: Duration = Duration::from_secs(2);
/// How much standard error text a ReturnStderrIn500 page shows.
const MAX_STDERR_PAGE: usize = 64 * 1024;

/// What to do with what an application writes to FCGI_STDERR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StderrMode {
    /// Before any output: a 500 showing the text (IIS's default).
    ReturnStderrIn500,
    /// Before any output: a 500 with a generic page.
    ReturnGeneric500,
    /// Logged; the response goes on.
    IgnoreAndReturn200,
    /// The process is stopped and the request fails.
    TerminateProcess,
}

/// One application's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSettings {
    pub name: String,
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub max_instances: u32,
    pub instance_max_requests: u32,
    pub request_timeout: Duration,
    pub activity_timeout: Duration,
    pub idle_timeout: Duration,
    pub queue_length: u32,
    pub rapid_fails_per_minute: u32,
    pub response_buffer_limit: usize,
    pub stderr_mode: StderrMode,
    pub tcp: bool,
}

/// The applications the configuration defines, by lower-case name.
pub fn applications(snapshot: &Snapshot) -> HashMap<String, Arc<AppSettings>> {
    let mut apps = HashMap::new();
    let Ok(container) = MbPath::parse(ids::CONTAINER_PATH) else {
        return apps;
    };
    let Ok(children) = snapshot.child_keys(&container) else {
        return apps;
    };
    for (name, key_type) in children {
        if !key_type.eq_ignore_ascii_case(ids::APPLICATION_CLASS) {
            continue;
        }
        let Ok(path) = MbPath::parse(&format!("{}/{name}", ids::CONTAINER_PATH)) else {
            continue;
        };
        let text = |id| match snapshot.effective(&path, id) {
            Some(Value::String(s)) | Some(Value::ExpandSz(s)) => s,
            _ => String::new(),
        };
        let dword = |id, default: u32| snapshot.effective_dword(&path, id).unwrap_or(default);
        let exe = text(ids::EXE_PATH);
        if !exe.starts_with('/') {
            tracing::warn!(application = %name, "a FastCGI application without an absolute FastCgiExePath is left out");
            continue;
        }
        let env = match snapshot.effective(&path, ids::ENVIRONMENT_VARS) {
            Some(Value::MultiSz(entries)) => entries
                .iter()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _ => Vec::new(),
        };
        let stderr_mode = match text(ids::STDERR_MODE).to_ascii_lowercase().as_str() {
            "returngeneric500" => StderrMode::ReturnGeneric500,
            "ignoreandreturn200" => StderrMode::IgnoreAndReturn200,
            "terminateprocess" => StderrMode::TerminateProcess,
            _ => StderrMode::ReturnStderrIn500,
        };
        let settings = AppSettings {
            name: name.clone(),
            exe: PathBuf::from(exe),
            args: crate::config::split_command_line(&text(ids::ARGUMENTS)),
            env,
            max_instances: dword(ids::MAX_INSTANCES, 4).max(1),
            instance_max_requests: dword(ids::INSTANCE_MAX_REQUESTS, 1000).max(1),
            request_timeout: Duration::from_secs(u64::from(dword(ids::REQUEST_TIMEOUT, 90).max(1))),
            activity_timeout: Duration::from_secs(u64::from(
                dword(ids::ACTIVITY_TIMEOUT, 30).max(1),
            )),
            idle_timeout: Duration::from_secs(u64::from(dword(ids::IDLE_TIMEOUT, 300).max(1))),
            queue_length: dword(ids::QUEUE_LENGTH, 1000),
            rapid_fails_per_minute: dword(ids::RAPID_FAILS_PER_MINUTE, 10),
            response_buffer_limit: dword(ids::RESPONSE_BUFFER_LIMIT, 4 << 20) as usize,
            stderr_mode,
            tcp: text(ids::PROTOCOL).eq_ignore_ascii_case("tcp"),
        };
        apps.insert(name.to_ascii_lowercase(), Arc::new(settings));
    }
    apps
}

/// A request for a FastCGI application.
#[derive(Clone, Debug)]
pub struct FastCgiCall {
    pub app: Arc<AppSettings>,
    pub script: Script,
    /// Directories its processes must reach (the sites' content).
    pub reach: Arc<[PathBuf]>,
}

/// The process pools of this worker, one per application.
#[derive(Default)]
pub struct Pools {
    /// By name; a handful, looked through without a lower-case copy of
    /// the name per request.
    pools: Mutex<Vec<Arc<AppPool>>>,
}

impl Pools {
    /// The pool for these settings; a pool of older settings is retired
    /// (its processes stop as their requests end).
    fn get(&self, settings: &Arc<AppSettings>, spawner: &spawner::Spawner) -> Arc<AppPool> {
        let mut pools = lock(&self.pools);
        let found = pools
            .iter()
            .position(|pool| pool.settings.name.eq_ignore_ascii_case(&settings.name));
        if let Some(at) = found {
            let pool = &pools[at];
            // The same configuration's settings are the same Arc.
            if Arc::ptr_eq(&pool.settings, settings) || pool.settings == *settings {
                return pool.clone();
            }
            pool.retire();
            pools.swap_remove(at);
        }
        let pool = AppPool::new(settings.clone(), spawner.clone());
        pools.push(pool.clone());
        pool
    }
}

struct AppPool {
    settings: Arc<AppSettings>,
    spawner: spawner::Spawner,
    state: Mutex<PoolState>,
    /// A slot came free (a request ended, a process went).
    freed: Notify,
    waiting: AtomicUsize,
    retired: AtomicBool,
}

#[derive(Default)]
struct PoolState {
    instances: Vec<Arc<Instance>>,
    /// Processes being started.
    starting: u32,
    /// When processes ended unasked, for RapidFailsPerMinute.
    failures: VecDeque<std::time::Instant>,
    /// Why the application was stopped.
    stopped: Option<String>,
}

/// One process.
struct Instance {
    pid: u32,
    address: String,
    /// Requests at once (FCGI_MAX_CONNS; 1 unless it says more).
    capacity: u32,
    in_use: AtomicU32,
    served: AtomicU32,
    alive: AtomicBool,
    /// Asked to stop (retired, idle, timed out): its end is no failure.
    stopping: AtomicBool,
    /// A connection to it closed before its answer: it takes no more
    /// requests (it has ended, or goes).
    broken: AtomicBool,
    /// Connections between requests, each with its record decoder (and
    /// the decoder's buffer, reused).
    idle_connections: Mutex<Vec<(Stream, fastcgi::Decoder)>>,
    last_used: Mutex<std::time::Instant>,
}

/// Why a request got no process.
enum Refusal {
    /// QueueLength requests wait already, or none came free in time.
    Busy,
    /// Stopped by RapidFailsPerMinute, or the program would not start.
    Failed(String),
}

impl AppPool {
    fn new(settings: Arc<AppSettings>, spawner: spawner::Spawner) -> Arc<AppPool> {
        let pool = Arc::new(AppPool {
            settings,
            spawner,
            state: Mutex::default(),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
        });
        // Idle processes stop after IdleTimeout.
        let weak = Arc::downgrade(&pool);
        let period = (pool.settings.idle_timeout / 4)
            .clamp(Duration::from_millis(250), Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = weak.upgrade() else { break };
                if pool.retired.load(Ordering::SeqCst) {
                    break;
                }
                pool.stop_idle();
            }
        });
        pool
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        let instances = std::mem::take(&mut lock(&self.state).instances);
        for instance in instances {
            if instance.in_use.load(Ordering::SeqCst) == 0 {
                self.stop(&instance);
            } else {
                // Stops when its request ends (release).
                instance.stopping.store(true, Ordering::SeqCst);
            }
        }
        self.freed.notify_waiters();
    }

    fn stop(&self, instance: &Arc<Instance>) {
        instance.stopping.store(true, Ordering::SeqCst);
        lock(&instance.idle_connections).clear();
        self.spawner.signal(instance.pid, libc::SIGTERM);
        // One that ignores SIGTERM goes anyway.
        self.kill_later(instance, Duration::from_secs(5));
    }

    /// Kills a process after `delay` if it is still there (its pid is not
    /// signalled once it has ended: another program may have it by then).
    fn kill_later(&self, instance: &Arc<Instance>, delay: Duration) {
        let spawner = self.spawner.clone();
        let instance = instance.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if instance.alive.load(Ordering::SeqCst) {
                spawner.kill(instance.pid);
            }
        });
    }

    fn stop_idle(&self) {
        let limit = self.settings.idle_timeout;
        let mut state = lock(&self.state);
        let (idle, keep): (Vec<_>, Vec<_>) = state.instances.drain(..).partition(|i| {
            i.in_use.load(Ordering::SeqCst) == 0 && lock(&i.last_used).elapsed() >= limit
        });
        state.instances = keep;
        drop(state);
        for instance in idle {
            tracing::debug!(application = %self.settings.name, pid = instance.pid, "an idle FastCGI process stops (IdleTimeout)");
            self.stop(&instance);
        }
    }

    /// A process with room for one more request, started if none has
    /// room and MaxInstances allows; else a wait in the queue.
    async fn acquire(
        self: &Arc<Self>,
        reach: &[PathBuf],
        deadline: Instant,
    ) -> Result<Lease, Refusal> {
        /// What the pool's state allows now.
        enum Next {
            Lent(Arc<Instance>),
            Start,
            Wait,
        }
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut state = lock(&self.state);
                if let Some(reason) = &state.stopped {
                    return Err(Refusal::Failed(reason.clone()));
                }
                state.instances.retain(|i| i.alive.load(Ordering::SeqCst));
                let free = state
                    .instances
                    .iter()
                    .filter(|i| {
                        !i.stopping.load(Ordering::SeqCst) && !i.broken.load(Ordering::SeqCst)
                    })
                    .filter(|i| i.in_use.load(Ordering::SeqCst) < i.capacity)
                    .min_by_key(|i| i.in_use.load(Ordering::SeqCst))
                    .cloned();
                match free {
                    Some(instance) => {
                        instance.in_use.fetch_add(1, Ordering::SeqCst);
                        Next::Lent(instance)
                    }
                    None if (state.instances.len() as u32 + state.starting)
                        < self.settings.max_instances =>
                    {
                        state.starting += 1;
                        Next::Start
                    }
                    None => Next::Wait,
                }
            };
            match next {
                Next::Lent(instance) => {
                    return Ok(Lease {
                        pool: self.clone(),
                        instance,
                    })
                }
                Next::Start => {
                    let started = self.start(reach).await;
                    lock(&self.state).starting -= 1;
                    return match started {
                        Ok(instance) => {
                            instance.in_use.fetch_add(1, Ordering::SeqCst);
                            lock(&self.state).instances.push(instance.clone());
                            Ok(Lease {
                                pool: self.clone(),
                                instance,
                            })
                        }
                        Err(e) => {
                            self.failed(&format!("it could not be started: {e}"));
                            self.freed.notify_one();
                            Err(Refusal::Failed(e))
                        }
                    };
                }
                Next::Wait => {}
            }
            // Every process is busy: wait in the queue.
            let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
            if queued >= self.settings.queue_length as usize {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(Refusal::Busy);
            }
            let woke = tokio::time::timeout_at(deadline, notified).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if woke.is_err() {
                return Err(Refusal::Busy);
            }
        }
    }

    /// Starts a process and asks it FCGI_GET_VALUES.
    async fn start(self: &Arc<Self>, reach: &[PathBuf]) -> Result<Arc<Instance>, String> {
        let s = &self.settings;
        let mut program = spawner::Program::new(&s.exe);
        program.args = s.args.clone();
        program.env = s.env.clone();
        let has = |env: &[(String, String)], name: &str| env.iter().any(|(k, _)| k == name);
        if !has(&program.env, "PATH") {
            program
                .env
                .push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        }
        // PHP ends its process after 500 requests unless told otherwise:
        // InstanceMaxRequests decides here (PHP's own limit a little
        // above it, so the pool retires the process first).
        if !has(&program.env, "PHP_FCGI_MAX_REQUESTS") {
            program.env.push((
                "PHP_FCGI_MAX_REQUESTS".into(),
                s.instance_max_requests.saturating_add(16).to_string(),
            ));
        }
        program.cwd = s.exe.parent().map(PathBuf::from);
        program.reach = reach.to_vec();
        program.stdin = if s.tcp {
            spawner::Stdio::ListenTcp
        } else {
            spawner::Stdio::ListenUnix
        };
        program.stdout = spawner::Stdio::Null;
        program.stderr = spawner::Stdio::Passed;
        let (err_r, err_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let started = self
            .spawner
            .spawn(program, &[&err_w])
            .await
            .map_err(|e| e.to_string())?;
        drop(err_w);
        let address = started
            .address
            .clone()
            .ok_or("the launcher gave no address")?;
        if let Ok(err) = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r) {
            tokio::spawn(crate::cgi::log_stderr(format!("FastCGI {}", s.name), err));
        }
        let capacity = max_conns(&address, s.tcp).await.unwrap_or(1).clamp(1, 64);
        let instance = Arc::new(Instance {
            pid: started.pid,
            address,
            capacity,
            in_use: AtomicU32::new(0),
            served: AtomicU32::new(0),
            alive: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            idle_connections: Mutex::default(),
            last_used: Mutex::new(std::time::Instant::now()),
        });
        tracing::info!(application = %s.name, pid = started.pid, capacity, "FastCGI process started");
        // Its end: a failure unless it was asked to stop.
        let watched = instance.clone();
        let pool = Arc::downgrade(self);
        let exited = started.exited;
        tokio::spawn(async move {
            let exit = exited.await.unwrap_or(spawner::Exit::Unknown);
            watched.alive.store(false, Ordering::SeqCst);
            lock(&watched.idle_connections).clear();
            let Some(pool) = pool.upgrade() else { return };
            // A process that ends well (exit code 0: an application
            // retiring itself after its own request limit) did not fail.
            if !watched.stopping.load(Ordering::SeqCst) && exit != spawner::Exit::Code(0) {
                pool.failed(&format!("process {} ended with {exit}", watched.pid));
            }
            pool.freed.notify_one();
        });
        Ok(instance)
    }

    /// A process failed: past RapidFailsPerMinute in a minute, the
    /// application stops.
    fn failed(&self, what: &str) {
        let s = &self.settings;
        tracing::warn!(application = %s.name, "FastCGI application: {what}");
        let now = std::time::Instant::now();
        let mut state = lock(&self.state);
        state.failures.push_back(now);
        while state
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            state.failures.pop_front();
        }
        if s.rapid_fails_per_minute > 0
            && state.failures.len() as u32 >= s.rapid_fails_per_minute
            && state.stopped.is_none()
        {
            let reason = format!(
                "it failed {} times within a minute (RapidFailsPerMinute {}); it stays stopped until its configuration changes",
                state.failures.len(),
                s.rapid_fails_per_minute
            );
            tracing::error!(application = %s.name, "FastCGI application stopped: {reason}");
            state.stopped = Some(reason);
            drop(state);
            self.freed.notify_waiters();
        }
    }
}

/// FCGI_MAX_CONNS, as a new process answers FCGI_GET_VALUES.
async fn max_conns(address: &str, tcp: bool) -> Option<u32> {
    let ask = async {
        let mut stream = Stream::connect(address, tcp).await.ok()?;
        let mut out = BytesMut::new();
        fastcgi::encode_get_values(
            &mut out,
            &["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"],
        );
        stream.write_all(&out).await.ok()?;
        let mut decoder = fastcgi::Decoder::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            decoder.push(&buf[..n]);
            match decoder.next_record() {
                Ok(Some(Record::GetValuesResult(values))) => {
                    return values
                        .iter()
                        .find(|(k, _)| k == "FCGI_MAX_CONNS")
                        .and_then(|(_, v)| v.trim().parse().ok());
                }
                Ok(Some(_)) | Err(_) => return None,
                Ok(None) => {}
            }
        }
    };
    tokio::time::timeout(GET_VALUES_WAIT, ask)
        .await
        .ok()
        .flatten()
}

/// A process lent to one request.
struct Lease {
    pool: Arc<AppPool>,
    instance: Arc<Instance>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let instance = &self.instance;
        let served = instance.served.fetch_add(1, Ordering::SeqCst) + 1;
        *lock(&instance.last_used) = std::time::Instant::now();
        let left = instance.in_use.fetch_sub(1, Ordering::SeqCst) - 1;
        if served >= self.pool.settings.instance_max_requests {
            // Retired: no new requests; it stops once its last ends.
            instance.stopping.store(true, Ordering::SeqCst);
            tracing::debug!(application = %self.pool.settings.name, pid = instance.pid, served, "FastCGI process retired (InstanceMaxRequests)");
        }
        // A request that did not end cleanly gives its connection up but
        // not its process: one that died is found by its end (and counted
        // for RapidFailsPerMinute there); one that lives takes new
        // connections.
        if left == 0 {
            if instance.stopping.load(Ordering::SeqCst) {
                lock(&self.pool.state)
                    .instances
                    .retain(|i| !Arc::ptr_eq(i, instance));
                self.pool.stop(instance);
            } else if instance.broken.load(Ordering::SeqCst) {
                // Its place goes to a fresh process; one still alive is
                // made to go (and its end counts as a failure).
                lock(&self.pool.state)
                    .instances
                    .retain(|i| !Arc::ptr_eq(i, instance));
                lock(&instance.idle_connections).clear();
                self.pool.kill_later(instance, Duration::from_secs(1));
            }
        }
        self.pool.freed.notify_one();
    }
}

/// A connection to a process. A Unix socket is registered for reading
/// only: the process's read of each request would otherwise wake the
/// worker's event loop (see quietsock).
enum Stream {
    Unix(quietsock::QuietUnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Stream {
    async fn connect(address: &str, tcp: bool) -> std::io::Result<Stream> {
        if tcp {
            Ok(Stream::Tcp(tokio::net::TcpStream::connect(address).await?))
        } else {
            Ok(Stream::Unix(
                quietsock::QuietUnixStream::connect(address).await?,
            ))
        }
    }
}

/// AsyncRead or AsyncWrite for an enum with a `Unix` and a `Tcp` variant:
/// each call goes to the variant's stream.
macro_rules! by_variant {
    (AsyncRead for $kind:ident) => {
        impl AsyncRead for $kind {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $kind::Unix(s) => Pin::new(s).poll_read(cx, buf),
                    $kind::Tcp(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
    (AsyncWrite for $kind:ident) => {
        impl AsyncWrite for $kind {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $kind::Unix(s) => Pin::new(s).poll_write(cx, data),
                    $kind::Tcp(s) => Pin::new(s).poll_write(cx, data),
                }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $kind::Unix(s) => Pin::new(s).poll_flush(cx),
                    $kind::Tcp(s) => Pin::new(s).poll_flush(cx),
                }
            }
            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $kind::Unix(s) => Pin::new(s).poll_shutdown(cx),
                    $kind::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

by_variant!(AsyncRead for Stream);
by_variant!(AsyncWrite for Stream);

/// The reading half of a [`Stream`] whose request body is being sent.
enum StreamReader {
    Unix(quietsock::ReadHalf),
    Tcp(tokio::net::tcp::OwnedReadHalf),
}

/// The writing half of a [`Stream`]. Dropped alone, it shuts the
/// connection's sending side: only a connection given up is.
enum StreamWriter {
    Unix(quietsock::WriteHalf),
    Tcp(tokio::net::tcp::OwnedWriteHalf),
}

impl Stream {
    fn into_split(self) -> (StreamReader, StreamWriter) {
        match self {
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (StreamReader::Unix(r), StreamWriter::Unix(w))
            }
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (StreamReader::Tcp(r), StreamWriter::Tcp(w))
            }
        }
    }
}

impl StreamReader {
    /// The connection whole again (`None` for halves of two connections,
    /// which cannot happen here).
    fn reunite(self, writer: StreamWriter) -> Option<Stream> {
        match (self, writer) {
            (StreamReader::Unix(r), StreamWriter::Unix(w)) => {
                quietsock::QuietUnixStream::reunite(r, w)
                    .ok()
                    .map(Stream::Unix)
            }
            (StreamReader::Tcp(r), StreamWriter::Tcp(w)) => r.reunite(w).ok().map(Stream::Tcp),
            _ => None,
        }
    }
}

by_variant!(AsyncRead for StreamReader);
by_variant!(AsyncWrite for StreamWriter);

/// How the application's side of a request ended.
enum AppEnd {
    /// END_REQUEST, with its protocol status.
    Complete { protocol: ProtocolStatus },
    /// The connection closed first: the process ended or gave up.
    Closed,
    /// It sent what is not FastCGI.
    Broken(String),
    /// ActivityTimeout or RequestTimeout passed.
    TimedOut(&'static str),
    /// Standard error before any output, in a mode that fails the request.
    Stderr(String),
    /// The response was no longer wanted.
    Abandoned,
}

/// Where the request's body comes from.
enum BodySource {
    Client(BodyReader),
    Kept(Bytes),
}

/// Runs the request on the application and relays its answer.
pub(crate) async fn run(
    pipeline: Arc<Pipeline>,
    // Boxed: an async fn keeps its arguments twice in its state.
    call: Box<FastCgiCall>,
    req: Request,
    template: Response,
    mut filters: Option<(
        &mut crate::filters::RequestFilters,
        &crate::isapi::Variables,
    )>,
) {
    let settings = call.app.clone();
    let deadline = Instant::now() + settings.request_timeout;
    let name = call.script.name.as_str();
    let Some(spawner) = pipeline.spawner.get().cloned() else {
        tracing::error!(script = %name, "FastCGI applications cannot run: this worker has no program launcher");
        bad_gateway(req, &template, 500, "it could not be started");
        return;
    };
    let pool = pipeline.fastcgi.get(&settings, &spawner);
    // A chunked body is gathered: PHP reads CONTENT_LENGTH bytes, no more.
    let Some((mut req, length, gathered)) = crate::cgi::body_length(req).await else {
        return;
    };
    let mut records = fastcgi::RequestRecords::new(REQUEST_ID, true, 2048);
    each_meta_variable(&req, &call.script, length, &mut |k, v| records.add(k, v));
    let mut body = Some(match (gathered, length) {
        (Some(all), _) => BodySource::Kept(all),
        // No body to read: none to take (taking one costs a channel).
        (None, None | Some(0)) => BodySource::Kept(Bytes::new()),
        (None, Some(_)) => BodySource::Client(req.take_body()),
    });
    let length = length.unwrap_or(0);
    // Without a body the request ends with its records: one write.
    let records = records.finish(length != 0);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let lease = match pool.acquire(&call.reach, deadline).await {
            Ok(lease) => lease,
            Err(Refusal::Busy) => {
                tracing::warn!(application = %settings.name, script = %name, "every FastCGI process is busy and the queue is full (QueueLength) or no process came free in time");
                let mut busy = Response::new(503);
                busy.log = template.log.clone();
                let _ = req
                    .respond(busy.header("Content-Type", "text/html").header("Retry-After", "5").body(
                        "<html><body><h1>Service Unavailable</h1><p>The application is busy.</p></body></html>",
                    ))
                    .await;
                return;
            }
            Err(Refusal::Failed(reason)) => {
                tracing::error!(application = %settings.name, script = %name, %reason, "the FastCGI application is not available");
                bad_gateway(req, &template, 500, "it is not available");
                return;
            }
        };
        let how = RelayOptions {
            name,
            nph: false,
            buffer_limit: settings.response_buffer_limit,
            error_status: 500,
        };
        // The relay reads the application's records as it needs its
        // output; the application's side ends once the relay is done with
        // it (so an application still writing learns the answer is no
        // longer wanted).
        let source = body.take().unwrap_or(BodySource::Kept(Bytes::new()));
        let (relayed, (end, kept)) =
            match AppExchange::open(lease, &records, source, length, deadline).await {
                Ok(mut app) => {
                    let relayed = relay(
                        &pipeline,
                        &how,
                        &mut app,
                        req,
                        &template,
                        filters.as_mut().map(|(f, v)| (&mut **f, *v)),
                    )
                    .await;
                    (relayed, app.finish().await)
                }
                Err(failed) => (Relayed::Nothing(Box::new(req)), failed),
            };
        match relayed {
            Relayed::Answered | Relayed::Failed => {
                match &end {
                    AppEnd::Broken(why) | AppEnd::Stderr(why) => {
                        tracing::error!(application = %settings.name, script = %name, "{why}");
                    }
                    AppEnd::TimedOut(which) => {
                        tracing::error!(application = %settings.name, script = %name, "the FastCGI request exceeded {which}; its process was stopped and the response cut");
                    }
                    _ => {}
                }
                return;
            }
            Relayed::Nothing(back) => {
                req = *back;
                match end {
                    AppEnd::Closed if attempt == 1 && kept.is_some() => {
                        tracing::warn!(application = %settings.name, script = %name, "the FastCGI process ended before it answered; the request is tried once more on a fresh one");
                        body = kept.map(BodySource::Kept);
                        continue;
                    }
                    AppEnd::Stderr(text) => {
                        tracing::error!(application = %settings.name, script = %name, "the application wrote to its standard error before any output (StderrMode {:?})", settings.stderr_mode);
                        let mut page = Response::new(500);
                        page.log = template.log.clone();
                        let body = if settings.stderr_mode == StderrMode::ReturnStderrIn500 {
                            text
                        } else {
                            "The FastCGI application wrote to its standard error.".to_string()
                        };
                        let _ = req
                            .respond(
                                page.header("Content-Type", "text/plain; charset=utf-8")
                                    .body(body),
                            )
                            .await;
                    }
                    AppEnd::TimedOut(which) => {
                        tracing::error!(application = %settings.name, script = %name, "the FastCGI request exceeded {which}; its process was stopped");
                        bad_gateway(req, &template, 500, "it did not answer in time");
                    }
                    AppEnd::Complete { protocol, .. } => {
                        let why = match protocol {
                            ProtocolStatus::Overloaded => "it is overloaded",
                            ProtocolStatus::CantMpxConn => {
                                "it refused a second request on a connection"
                            }
                            ProtocolStatus::UnknownRole => "it does not take the Responder role",
                            _ => "it wrote no answer",
                        };
                        tracing::error!(application = %settings.name, script = %name, "the FastCGI request failed: {why}");
                        bad_gateway(
                            req,
                            &template,
                            if protocol == ProtocolStatus::Overloaded {
                                503
                            } else {
                                500
                            },
                            why,
                        );
                    }
                    AppEnd::Closed => {
                        tracing::error!(application = %settings.name, script = %name, "the FastCGI process ended before it answered");
                        bad_gateway(req, &template, 500, "its process ended before it answered");
                    }
                    AppEnd::Broken(why) => {
                        tracing::error!(application = %settings.name, script = %name, "{why}");
                        bad_gateway(req, &template, 500, "it broke the FastCGI protocol");
                    }
                    AppEnd::Abandoned => {}
                }
                return;
            }
        }
    }
}

/// One request over a connection to the lent process: the request's
/// records sent (the body streamed by a task of its own), then the
/// application's records read as the relay asks for its output.
struct AppExchange {
    lease: Lease,
    connection: Connection,
    decoder: fastcgi::Decoder,
    deadline: Instant,
    /// Standard output passed on: an end other than END_REQUEST is then
    /// a cut response, not an empty one.
    wrote_output: bool,
    /// Standard error before any output, in a mode that fails the
    /// request with it.
    stderr_text: String,
    fail_on_stderr: bool,
    /// How the application's side ended, once it has.
    end: Option<Ended>,
}

impl AppExchange {
    /// Connects to the lent process (or takes an idle connection to it)
    /// and sends the request. On failure, how it ended and a copy of a
    /// small body, for a retry.
    async fn open(
        lease: Lease,
        records: &Bytes,
        body: BodySource,
        length: u64,
        deadline: Instant,
    ) -> Result<AppExchange, (AppEnd, Option<Bytes>)> {
        let settings = &lease.pool.settings;
        let instance = &lease.instance;
        let reused = lock(&instance.idle_connections).pop();
        let (stream, decoder) = match reused {
            Some(idle) => idle,
            None => match tokio::time::timeout_at(
                deadline,
                Stream::connect(&instance.address, settings.tcp),
            )
            .await
            {
                Ok(Ok(s)) => (s, fastcgi::Decoder::new()),
                Ok(Err(e)) => {
                    tracing::warn!(application = %settings.name, error = %e, "cannot connect to the FastCGI process");
                    instance.broken.store(true, Ordering::SeqCst);
                    return Err((AppEnd::Closed, gather(body).await));
                }
                Err(_) => return Err((AppEnd::TimedOut("RequestTimeout"), None)),
            },
        };
        let connection = if length == 0 {
            // No body: the whole request in one write, and the connection
            // stays whole (no task, no halves).
            let mut stream = stream;
            let sent = stream.write_all(records).await.is_ok();
            Connection::Whole { stream, sent }
        } else {
            // The body goes on a task of its own: input and output flow at once.
            let (reader, writer) = stream.into_split();
            Connection::Split {
                reader,
                body: tokio::spawn(send_body(writer, records.clone(), body)),
            }
        };
        let fail_on_stderr = matches!(
            settings.stderr_mode,
            StderrMode::ReturnStderrIn500 | StderrMode::ReturnGeneric500
        );
        Ok(AppExchange {
            lease,
            connection,
            decoder,
            deadline,
            wrote_output: false,
            stderr_text: String::new(),
            fail_on_stderr,
            end: None,
        })
    }

    /// Records how the application's side ended; what the relay reads of
    /// it: the end of the output, or (after output) a cut one.
    fn ended(&mut self, end: Ended) -> std::io::Result<Option<Bytes>> {
        let cut = match &end {
            Ended::Other(AppEnd::TimedOut(_)) if self.wrote_output => {
                Some(std::io::Error::from(std::io::ErrorKind::TimedOut))
            }
            Ended::Other(_) if self.wrote_output => {
                Some(std::io::Error::other("the FastCGI output broke off"))
            }
            _ => None,
        };
        self.end = Some(end);
        match cut {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// How the application's side ended, with the connection given back
    /// to the process's idle ones when it can carry another request, and
    /// a copy of a small body (for a retry). An end the relay did not
    /// read up to is an abandoned request.
    async fn finish(self) -> (AppEnd, Option<Bytes>) {
        let AppExchange {
            lease,
            connection,
            decoder,
            wrote_output,
            stderr_text,
            fail_on_stderr,
            end,
            ..
        } = self;
        match end.unwrap_or(Ended::Other(AppEnd::Abandoned)) {
            Ended::Complete(protocol) => {
                // The connection carries the next request once the body went.
                let (stream, kept) = connection.finish().await;
                if protocol == ProtocolStatus::RequestComplete {
                    if let Some(stream) = stream {
                        // Bytes past END_REQUEST belong to no request:
                        // they go with their decoder.
                        let decoder = if decoder.pending() == 0 {
                            decoder
                        } else {
                            fastcgi::Decoder::new()
                        };
                        lock(&lease.instance.idle_connections).push((stream, decoder));
                    }
                }
                if !stderr_text.is_empty() && !wrote_output && fail_on_stderr {
                    return (AppEnd::Stderr(stderr_text), kept);
                }
                (AppEnd::Complete { protocol }, kept)
            }
            Ended::Other(other) => {
                // The body task ends (and gives its copy) once the client's
                // body is read; the process's side is given up.
                let (_, kept) = connection.finish().await;
                if matches!(other, AppEnd::Closed | AppEnd::Broken(_)) {
                    lease.instance.broken.store(true, Ordering::SeqCst);
                }
                if matches!(other, AppEnd::TimedOut(_) | AppEnd::Stderr(_)) {
                    // A process past its time (or told to end on stderr) is
                    // stopped.
                    lease.instance.stopping.store(true, Ordering::SeqCst);
                    lease.pool.spawner.kill(lease.instance.pid);
                }
                (other, kept)
            }
        }
    }
}

impl AppExchange {
    /// What the records read so far give: a chunk of output, or the end;
    /// `None` when more must be read first.
    fn output_so_far(&mut self) -> Option<std::io::Result<Option<Bytes>>> {
        loop {
            match self.decoder.next_record() {
                Ok(None) => return None,
                Err(e) => {
                    let why = format!("the FastCGI process sent {e}");
                    return Some(self.ended(Ended::Other(AppEnd::Broken(why))));
                }
                Ok(Some(Record::Stdout { data, .. })) => {
                    let held_back =
                        !self.stderr_text.is_empty() && !self.wrote_output && self.fail_on_stderr;
                    if data.is_empty() || held_back {
                        continue;
                    }
                    self.wrote_output = true;
                    return Some(Ok(Some(data)));
                }
                Ok(Some(Record::Stderr { data, .. })) => {
                    let settings = &self.lease.pool.settings;
                    let text = String::from_utf8_lossy(&data);
                    for line in text.lines().filter(|l| !l.is_empty()) {
                        tracing::warn!(application = %settings.name, "stderr: {line}");
                    }
                    if settings.stderr_mode == StderrMode::TerminateProcess {
                        let text = text.into_owned();
                        return Some(self.ended(Ended::Other(AppEnd::Stderr(text))));
                    }
                    if !self.wrote_output
                        && self.fail_on_stderr
                        && self.stderr_text.len() < MAX_STDERR_PAGE
                    {
                        self.stderr_text.push_str(&text);
                    }
                }
                Ok(Some(Record::EndRequest {
                    protocol_status, ..
                })) => return Some(self.ended(Ended::Complete(protocol_status))),
                Ok(Some(Record::GetValuesResult(_))) | Ok(Some(Record::UnknownType(_))) => {}
            }
        }
    }
}

impl crate::cgi::ProgramOutput for AppExchange {
    async fn next_chunk(&mut self, timed: bool) -> std::io::Result<Option<Bytes>> {
        if self.end.is_some() {
            return Ok(None);
        }
        loop {
            if let Some(output) = self.output_so_far() {
                return output;
            }
            let room = self.decoder.buffer_mut();
            room.reserve(16 * 1024);
            let read = if timed {
                let mut reading = std::pin::pin!(self.connection.reading().read_buf(room));
                // What the process has already written is taken without a
                // timer (and without reading the clock).
                let now_or_timed = match httpapi::ready_now(reading.as_mut()).await {
                    Some(read) => Ok(read),
                    None => {
                        let settings = &self.lease.pool.settings;
                        let limit = (Instant::now() + settings.activity_timeout).min(self.deadline);
                        tokio::time::timeout_at(limit, reading).await
                    }
                };
                match now_or_timed {
                    Ok(read) => read,
                    Err(_) => {
                        let which = if Instant::now() >= self.deadline {
                            "RequestTimeout"
                        } else {
                            "ActivityTimeout"
                        };
                        return self.ended(Ended::Other(AppEnd::TimedOut(which)));
                    }
                }
            } else {
                self.connection.reading().read_buf(room).await
            };
            if !matches!(read, Ok(n) if n > 0) {
                return self.ended(Ended::Other(AppEnd::Closed));
            }
        }
    }
}

/// The one request a connection carries at a time.
const REQUEST_ID: u16 = 1;

/// A connection carrying a request: whole when the request went in one
/// write, in halves while a task sends the body (owned halves: no lock
/// between reading and writing).
enum Connection {
    Whole {
        stream: Stream,
        sent: bool,
    },
    Split {
        reader: StreamReader,
        body: tokio::task::JoinHandle<SentBody>,
    },
}

/// The writer, if still sound, and a copy of a small body.
type SentBody = (Option<StreamWriter>, Option<Bytes>);

impl Connection {
    /// Where the application's records are read from.
    fn reading(&mut self) -> &mut (dyn AsyncRead + Unpin + Send) {
        match self {
            Connection::Whole { stream, .. } => stream,
            Connection::Split { reader, .. } => reader,
        }
    }

    /// The connection back whole, if it is still sound, once the body has
    /// gone, and a copy of a small body (for a retry).
    async fn finish(self) -> (Option<Stream>, Option<Bytes>) {
        match self {
            Connection::Whole { stream, sent } => (sent.then_some(stream), Some(Bytes::new())),
            Connection::Split { reader, body } => {
                let (writer, kept) = body.await.unwrap_or((None, None));
                (writer.and_then(|w| reader.reunite(w)), kept)
            }
        }
    }
}

/// Sends the request's records, then its body as STDIN records as the
/// client sends it.
async fn send_body(mut writer: StreamWriter, head: Bytes, body: BodySource) -> SentBody {
    let mut copy: Option<Vec<u8>> = Some(Vec::new());
    let mut ok = writer.write_all(&head).await.is_ok();
    let mut records = BytesMut::new();
    match body {
        BodySource::Kept(all) => {
            copy = Some(all.to_vec());
            if ok && !all.is_empty() {
                fastcgi::encode_stream(&mut records, fastcgi::kind::STDIN, REQUEST_ID, &all);
            }
        }
        BodySource::Client(mut reader) => {
            // Read to the end even when the process stops taking it: a
            // small body is kept whole for a retry.
            while ok || copy.is_some() {
                match reader.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Some(c) = copy.as_mut() {
                            if c.len() + chunk.len() <= REPLAYABLE_BODY {
                                c.extend_from_slice(&chunk);
                            } else {
                                copy = None;
                            }
                        }
                        if ok {
                            records.clear();
                            fastcgi::encode_stream(
                                &mut records,
                                fastcgi::kind::STDIN,
                                REQUEST_ID,
                                &chunk,
                            );
                            ok = writer.write_all(&records).await.is_ok();
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        copy = None;
                        ok = false;
                    }
                }
            }
            // Each piece went as it came: only the stream's end is left.
            records.clear();
        }
    }
    fastcgi::encode_stream(&mut records, fastcgi::kind::STDIN, REQUEST_ID, &[]);
    if ok {
        ok = writer.write_all(&records).await.is_ok();
    }
    (ok.then_some(writer), copy.map(Bytes::from))
}

/// How the read loop ended.
enum Ended {
    Complete(ProtocolStatus),
    Other(AppEnd),
}

/// A body read whole for a retry (`None` past the size kept).
async fn gather(body: BodySource) -> Option<Bytes> {
    match body {
        BodySource::Kept(all) => Some(all),
        BodySource::Client(mut reader) => {
            let mut all = Vec::new();
            while let Ok(Some(chunk)) = reader.chunk().await {
                if all.len() + chunk.len() > REPLAYABLE_BODY {
                    return None;
                }
                all.extend_from_slice(&chunk);
            }
            Some(Bytes::from(all))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
