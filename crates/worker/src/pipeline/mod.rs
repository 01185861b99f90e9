//! The request pipeline, in IIS 6's order of phases. A request is read
//! from the queue (`Pipeline::serve`), then, in `Pipeline::answer`:
//!
//! 1. preprocess headers: filters' PREPROC_HEADERS (here);
//! 2. map the URL to its settings and file, with filters' URL_MAP, check
//!    the client's address and SSL, authenticate (filters' AUTHENTICATION,
//!    the user database, mapped client certificates) and AUTH_COMPLETE,
//!    the entity size and HttpRedirect (`checks.rs`);
//! 3. choose the handler: an ISAPI extension by script map or wildcard
//!    map (`crate::isapi`), else the static-content handler: files,
//!    default documents, listings, PUT and DELETE (`static_files.rs`);
//! 4. send the response: HttpErrors pages, custom headers, filters'
//!    ACCESS_DENIED, SEND_RESPONSE and LOG, the log fields the listener
//!    writes (`respond.rs`); then END_OF_REQUEST (here).

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

mod checks;
mod respond;
mod static_files;

use checks::*;
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
    /// The module files the service handed over.
    pub module_files: crate::module_files::ModuleFiles,
    /// ISAPI filters loaded in this worker.
    pub filter_modules: crate::filters::FilterModules,
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
            Body::Empty | Body::Extension(_) => 0,
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
            module_files: Default::default(),
            filter_modules: Default::default(),
            site_filters: Mutex::new((u64::MAX, Default::default())),
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
        mut req: Request,
        skip: Option<&Path>,
        top: bool,
    ) -> (u16, u16, u32) {
        let config = self.config.load_full();
        let site = req.url_context as u32;
        // Filters see the requests clients send (not child requests).
        let mut filters = None;
        if top {
            let site_filters = self.site_filters(&config, site);
            if site_filters.broken.is_some() {
                // A filter that did not load (the service log says why).
                let reply = self.error_reply(&config, None, &req, HttpError::new(500, 0), false);
                let outcome = (reply.status, 0, 0);
                self.send(req, reply, None, None).await;
                return outcome;
            }
            if !site_filters.chain.is_empty() {
                let mut request =
                    crate::filters::RequestFilters::new(&site_filters, req.tls.is_some(), req.id);
                let vars = crate::isapi::Variables::unmapped(&req, site);
                let go_on = request.preproc_headers(req.head_mut(), &|n| vars.get(n));
                if !go_on {
                    let reply = filter_reply(&mut request);
                    let outcome = (reply.status, 0, 0);
                    self.send(req, reply, None, None).await;
                    return outcome;
                }
                filters = Some(request);
            }
        }
        let cfg = config.url(site, &req.url.path);
        let processed = self
            .process(&config, cfg.clone(), &mut req, skip, filters.as_mut())
            .await;
        let reply = match processed {
            Ok(reply) => reply,
            Err((error, challenge)) => {
                // SF_NOTIFY_ACCESS_DENIED: a filter may answer instead.
                let denied = match filters.as_mut() {
                    Some(request) if matches!(error.status, 401 | 403) => {
                        let vars = crate::isapi::Variables::unmapped(&req, site);
                        let physical = cfg
                            .as_ref()
                            .and_then(|c| c.physical.as_ref())
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        let reason = if error.status == 401 {
                            isapi::filt::denied::LOGON
                        } else {
                            isapi::filt::denied::RESOURCE
                        };
                        (!request.access_denied(&req.url.path, &physical, reason, &|n| vars.get(n)))
                            .then(|| filter_reply(request))
                    }
                    _ => None,
                };
                denied.unwrap_or_else(|| {
                    self.error_reply(&config, cfg.as_deref(), &req, error, challenge)
                })
            }
        };
        let outcome = (reply.status, reply.log.substatus, reply.log.win32_status);
        match filters.as_mut() {
            Some(request) => {
                let vars = crate::isapi::Variables::unmapped(&req, site);
                self.send(req, reply, cfg.as_deref(), Some((&mut *request, &vars)))
                    .await;
                request.end_of_request(&|n| vars.get(n));
            }
            None => self.send(req, reply, cfg.as_deref(), None).await,
        }
        outcome
    }

    fn finish(&self, ctx: &Ctx, mut reply: Reply) -> Reply {
        reply.log.user = ctx.user.clone();
        reply
    }
}

/// The answer a filter made itself (SF_STATUS_REQ_FINISHED), or 500 for
/// SF_STATUS_REQ_ERROR.
fn filter_reply(request: &mut crate::filters::RequestFilters) -> Reply {
    let outcome = &mut request.outcome;
    match outcome.answer.take() {
        Some((status, headers, body)) if !outcome.error => {
            let mut reply = Reply::new(status);
            reply.headers = headers;
            reply.body = Body::Bytes(Bytes::from(body));
            reply
        }
        _ => Reply::new(500).html(
            "<html><body><h1>500 Internal Server Error</h1><p>An ISAPI filter failed the request.</p></body></html>"
                .into(),
        ),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
