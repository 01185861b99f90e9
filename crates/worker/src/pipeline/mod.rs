//! The request pipeline: IIS 6's request phases in their fixed order,
//! one file each, which a reader follows top to bottom. A request is read
//! from the queue (`Pipeline::serve`), then, in `Pipeline::answer`:
//!
//! 1. read headers: done by the listener, which parsed and checked them;
//! 2. preprocess headers (`preprocess.rs`);
//! 3. map the URL to its settings and file (`map_url.rs`);
//! 4. authenticate: address and SSL checks, the logon (`authenticate.rs`);
//! 5. authorize: the logon seen, the entity's size (`authorize.rs`);
//! 6. the handler: HttpRedirect, an ISAPI extension (`extension.rs`) or
//!    the static-content handler (`static_files.rs`), behind the
//!    [`handler::RequestHandler`] trait (`handler.rs`);
//! 7. send the response: HttpErrors pages, custom headers, the log fields
//!    the listener writes (`respond.rs`);
//! 8. log, then end of request (here).
//!
//! Hooks (ISAPI filters; wildcard script maps are handlers that may hand
//! the request on) watch the phases through [`hooks::PhaseHooks`], whose
//! methods all default to "go on".

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use httpapi::proto::{BodyInfo, CachePolicy, HeaderBlock, HttpVersion, LogInfo};
use httpapi::{QueueControl, Request, Response};

use crate::auth::{self, Logons};
use crate::config::{
    access_ssl, ssl_refusal, Config, CustomErrorKind, Expires, Handler, UrlConfig,
};
use crate::content::Content;
use crate::errors::HttpError;
use crate::files::{self, Conditions, FileInfo, Precondition, Ranges};
use crate::listing;
use crate::site::{access, auth as auth_flags, browse};
use crate::watch::CacheWatch;

mod authenticate;
mod authorize;
mod cgi;
mod extension;
mod handler;
mod hooks;
mod map_url;
mod preprocess;
mod respond;
mod static_files;

use self::cgi::*;
use extension::*;
use handler::*;
use hooks::*;
use respond::*;
use static_files::*;

/// Files up to this size are read whole and sent with their head.
const SMALL_FILE: u64 = 64 * 1024;
/// Custom error files larger than this are not used.
const MAX_ERROR_FILE: u64 = 1 << 20;

/// The state every request shares.
pub struct Pipeline {
    pub config: ArcSwap<Config>,
    pub logons: Logons,
    pub watch: CacheWatch,
    pub control: QueueControl,
    /// Requests answered.
    pub served: AtomicU64,
    /// Small files' contents, checked against the file on every use.
    pub files: crate::filecache::FileCache,
    /// Compressed copies being made.
    compressing: Arc<Mutex<HashSet<PathBuf>>>,
    /// File metadata validated by inotify.
    pub changes: crate::changes::Changes,
    /// ISAPI extensions loaded in this worker.
    pub modules: Arc<crate::isapi::Modules>,
    /// The threads extensions run on.
    pub calls: crate::call_pool::CallPool,
    /// The module files the service handed over.
    pub module_files: crate::module_files::ModuleFiles,
    /// ISAPI filters loaded in this worker.
    pub filter_modules: crate::filters::FilterModules,
    /// Starts CGI and FastCGI programs (the worker itself may not).
    pub spawner: std::sync::OnceLock<spawner::Spawner>,
    /// FastCGI applications' processes.
    pub fastcgi: crate::fastcgi::Pools,
    /// What filters keep between a connection's requests.
    connections: Mutex<Connections>,
    /// Each site's filters under the configuration (change number) in force.
    site_filters: Mutex<(
        u64,
        std::collections::HashMap<u32, Arc<crate::filters::SiteFilters>>,
    )>,
}

/// What to send.
struct Reply {
    status: u16,
    /// In the form the response carries them (moved, not copied, into it).
    headers: HeaderBlock,
    body: Body,
    cache: bool,
    log: LogInfo,
}

enum Body {
    Empty,
    Bytes(Bytes),
    /// An ISAPI extension answers, when the response is sent.
    Extension(Box<crate::isapi::Call>),
    /// A CGI program answers, when the response is sent.
    Cgi(Box<crate::cgi::CgiCall>),
    /// A FastCGI application answers, when the response is sent.
    FastCgi(Box<crate::fastcgi::FastCgiCall>),
    /// Parts of a file, with literal bytes between them (multipart).
    File {
        source: Source,
        parts: Vec<Part>,
    },
}

/// Where a file's bytes come from.
enum Source {
    Open(std::fs::File),
    /// A small file, from the worker's file cache.
    Memory(Bytes),
}

enum Part {
    Literal(Bytes),
    Range { offset: u64, len: u64 },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty | Body::Extension(_) | Body::Cgi(_) | Body::FastCgi(_) => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { parts, .. } => parts
                .iter()
                .map(|p| match p {
                    Part::Literal(b) => b.len() as u64,
                    Part::Range { len, .. } => *len,
                })
                .sum(),
        }
    }
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: HeaderBlock::new(),
            body: Body::Empty,
            cache: false,
            log: LogInfo::default(),
        }
    }

    /// Adds a field; the value is copied into the block (a `&'static str`
    /// costs no allocation of its own).
    fn header(mut self, name: &str, value: impl AsRef<str>) -> Reply {
        self.headers.push(name, value.as_ref().as_bytes());
        self
    }

    fn html(mut self, page: String) -> Reply {
        self.headers
            .push("Content-Type", b"text/html; charset=utf-8".as_slice());
        self.body = Body::Bytes(Bytes::from(page));
        self
    }
}

/// What the phases before the handler learned.
struct Ctx {
    cfg: Arc<UrlConfig>,
    user: String,
    /// AUTH_TYPE: "" (anonymous), "Basic", or "SSL/PCT" for a mapped
    /// client certificate.
    auth_type: &'static str,
    /// The request carried credentials (its answer is not for everyone).
    authenticated: bool,
    /// The wildcard extension whose child request this is (it does not
    /// take the request again).
    skip: Option<PathBuf>,
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header_str(name)
}

/// `scheme://host[:port]` of the request, for absolute Locations.
fn origin(req: &Request) -> String {
    let url = &req.url;
    let default_port = if url.scheme == "https" { 443 } else { 80 };
    let host = if url.host.contains(':') && !url.host.starts_with('[') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    if url.port == default_port {
        format!("{}://{host}", url.scheme)
    } else {
        format!("{}://{host}:{}", url.scheme, url.port)
    }
}

impl Pipeline {
    pub fn new(config: Config, logons: Logons, control: QueueControl) -> Pipeline {
        Pipeline {
            config: ArcSwap::from_pointee(config),
            logons,
            watch: CacheWatch::default(),
            control,
            served: AtomicU64::new(0),
            files: crate::filecache::FileCache::default(),
            compressing: Arc::default(),
            changes: crate::changes::Changes::new(),
            modules: Arc::default(),
            calls: crate::call_pool::CallPool::new(crate::isapi::MAX_CALL_THREADS),
            module_files: Default::default(),
            filter_modules: Default::default(),
            spawner: std::sync::OnceLock::new(),
            fastcgi: Default::default(),
            site_filters: Mutex::new((u64::MAX, Default::default())),
            connections: Mutex::default(),
        }
    }

    /// The filter state a connection's earlier requests left.
    fn resume_connection(&self, connection: u64) -> Option<crate::filters::ConnFilters> {
        lock(&self.connections).kept.remove(&connection)
    }

    /// Keeps a request's filter state for its connection's next request;
    /// the listener is asked to say when the connection closes.
    fn keep_connection(&self, connection: u64, filters: crate::filters::RequestFilters) {
        if !filters.keeps_state() {
            return;
        }
        let kept = filters.keep();
        let mut connections = lock(&self.connections);
        if connections.closed.remove(&connection) {
            // It closed while this request was answered.
            drop(connections);
            self.calls.spawn(move || kept.end_of_net_session());
            return;
        }
        connections.kept.insert(connection, kept);
        if connections.watched.insert(connection) {
            let _ = self.control.wait_for_disconnect(connection);
        }
    }

    /// A connection closed: its filters hear of it
    /// (SF_NOTIFY_END_OF_NET_SESSION), on the call pool.
    pub fn connection_closed(&self, connection: u64) {
        let mut connections = lock(&self.connections);
        if !connections.watched.remove(&connection) {
            return;
        }
        match connections.kept.remove(&connection) {
            Some(kept) => {
                drop(connections);
                self.calls.spawn(move || kept.end_of_net_session());
            }
            // A request on it is being answered: it ends the session.
            None => {
                connections.closed.insert(connection);
            }
        }
    }

    /// Answers one request.
    pub async fn serve(self: &Arc<Self>, req: Request) {
        self.answer(req, None, true).await;
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers a child request an ISAPI extension made (HSE_REQ_EXEC_URL),
    /// with `skip` the wildcard extension that made it
    /// (HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR). Returns the answer's
    /// status, sub-status and Win32 error (HSE_REQ_GET_EXEC_URL_STATUS).
    pub async fn serve_child(
        self: &Arc<Self>,
        req: Request,
        skip: Option<&Path>,
    ) -> (u16, u16, u32) {
        self.answer(req, skip, false).await
    }

    /// [`Pipeline::serve_child`] for a request a gateway program sent
    /// elsewhere (a CGI local redirect), boxed: it runs inside the
    /// pipeline's own future.
    pub fn serve_child_boxed(
        self: Arc<Self>,
        req: Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (u16, u16, u32)> + Send>> {
        Box::pin(async move { self.answer(req, None, false).await })
    }

    /// The filters of a site under the configuration in force, loaded on
    /// first use.
    fn site_filters(&self, config: &Config, site: u32) -> Arc<crate::filters::SiteFilters> {
        let generation = config.snapshot.change_number();
        let mut cache = self.site_filters.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != generation {
            *cache = (generation, std::collections::HashMap::new());
        }
        cache
            .1
            .entry(site)
            .or_insert_with(|| {
                Arc::new(
                    self.filter_modules
                        .for_sites(&config.snapshot, &[site], &|path| {
                            self.module_files.load_as(path, &config.content)
                        })
                        .remove(&site)
                        .unwrap_or_default(),
                )
            })
            .clone()
    }

    async fn answer(
        self: &Arc<Self>,
        req: Request,
        skip: Option<&Path>,
        top: bool,
    ) -> (u16, u16, u32) {
        let site = req.url_context as u32;
        // The phases' state ends before the response is sent: the send's
        // future does not sit beside it in this one.
        let (req, reply, cfg, filters) = {
            let mut x = Exchange {
                req,
                site,
                config: self.config.load_full(),
                cfg: None,
                ctx: None,
                skip: skip.map(Path::to_path_buf),
                top,
                filters: None,
                no_hooks: NoHooks,
            };
            let mut step = self.preprocess_headers(&mut x);
            if let Step::Next = step {
                step = self.map_url(&mut x);
            }
            if let Step::Next = step {
                step = self.authenticate(&mut x).await;
            }
            if let Step::Next = step {
                step = self.authorize(&mut x);
            }
            if let Step::Next = step {
                step = self.handle(&mut x).await;
            }
            let reply = self.reply_for(&mut x, step);
            // Boxed (rare): the filters' state is not carried by every
            // request's future.
            (x.req, reply, x.cfg, x.filters.map(Box::new))
        };
        let outcome = (reply.status, reply.log.substatus, reply.log.win32_status);
        match filters {
            Some(request) => {
                Box::pin(self.send_with_filters(req, reply, cfg, request, site)).await;
            }
            None => self.send(req, reply, cfg.as_deref(), None).await,
        }
        outcome
    }

    /// The response of a request with filters, and its end for them. Boxed
    /// by [`Pipeline::answer`]: the filters' state and server variables
    /// stay out of every other request's future.
    async fn send_with_filters(
        self: &Arc<Self>,
        req: Request,
        reply: Reply,
        cfg: Option<Arc<UrlConfig>>,
        mut request: Box<crate::filters::RequestFilters>,
        site: u32,
    ) {
        let vars = crate::isapi::Variables::unmapped(&req, site);
        let connection = req.connection;
        self.send(req, reply, cfg.as_deref(), Some((&mut request, &vars)))
            .await;
        PhaseHooks::end_of_request(&mut *request, &vars);
        self.keep_connection(connection, *request);
    }
}

/// Filter state kept between the requests of client connections.
#[derive(Default)]
struct Connections {
    kept: std::collections::HashMap<u64, crate::filters::ConnFilters>,
    /// Connections the listener will say closed.
    watched: HashSet<u64>,
    /// Watched connections that closed while a request of theirs was
    /// being answered.
    closed: HashSet<u64>,
}

/// A request on its way through the phases, with what each learned.
struct Exchange {
    req: Request,
    site: u32,
    config: Arc<Config>,
    /// The URL's settings, once mapped.
    cfg: Option<Arc<UrlConfig>>,
    /// The logon, once authenticated.
    ctx: Option<Ctx>,
    /// The wildcard extension whose child request this is.
    skip: Option<PathBuf>,
    /// A request a client sent (filters see those), not a child request.
    top: bool,
    filters: Option<crate::filters::RequestFilters>,
    no_hooks: NoHooks,
}

impl Exchange {
    /// The request's hooks: its filters, or none.
    fn hooks(&mut self) -> &mut dyn PhaseHooks {
        match &mut self.filters {
            Some(filters) => filters,
            None => &mut self.no_hooks,
        }
    }

    /// The hooks and the request, to hand one to the other.
    fn hooks_and_request(&mut self) -> (&mut dyn PhaseHooks, &mut Request) {
        let hooks: &mut dyn PhaseHooks = match &mut self.filters {
            Some(filters) => filters,
            None => &mut self.no_hooks,
        };
        (hooks, &mut self.req)
    }
}

/// What a phase decided. Not boxed: every request ends in an `Answer`,
/// and a box would cost each one an allocation.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// On to the next phase.
    Next,
    /// The answer (a handler's, or a hook's that stopped the request).
    Answer(Reply),
    /// An error to show as the site shows errors; `true` when a 401
    /// should carry the logon challenge.
    Refuse(HttpError, bool),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
