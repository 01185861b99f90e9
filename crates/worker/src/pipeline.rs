//! The request pipeline, in IIS 6's order: map the URL to its settings,
//! check the client's address, SSL and authentication, apply HttpRedirect,
//! then hand the request to the static-content handler (files, default
//! documents, directory listings, PUT and DELETE). Every answer passes
//! through the same last phase: custom headers, HttpErrors pages, and the
//! fields the listener logs.

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
    /// ISAPI filters loaded in this worker.
    pub filter_modules: crate::filters::FilterModules,
    /// Each site's filters under the configuration (change number) in force.
    site_filters: Mutex<(
        u64,
        std::collections::HashMap<u32, crate::filters::SiteFilters>,
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
    fn site_filters(&self, config: &Config, site: u32) -> crate::filters::SiteFilters {
        let generation = config.snapshot.change_number();
        let mut cache = self.site_filters.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != generation {
            *cache = (generation, std::collections::HashMap::new());
        }
        cache
            .1
            .entry(site)
            .or_insert_with(|| {
                self.filter_modules
                    .for_sites(&config.snapshot, &[site])
                    .remove(&site)
                    .unwrap_or_default()
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

    async fn process(
        &self,
        config: &Arc<Config>,
        cfg: Option<Arc<UrlConfig>>,
        req: &mut Request,
        skip: Option<&Path>,
        mut filters: Option<&mut crate::filters::RequestFilters>,
    ) -> Result<Reply, (HttpError, bool)> {
        let Some(mut cfg) = cfg else {
            return Err((HttpError::new(404, 0).win32(2), false));
        };
        if let Some(request) = filters.as_deref_mut() {
            // SF_NOTIFY_URL_MAP: a filter may map the URL elsewhere.
            if let Some(physical) = &cfg.physical {
                let vars = crate::isapi::Variables::unmapped(req, cfg.site_id);
                let before = physical.display().to_string();
                let mut path = before.clone();
                if !request.url_map(&req.url.path, &mut path, &|n| vars.get(n)) {
                    return Ok(filter_reply(request));
                }
                if path != before {
                    let mut changed = (*cfg).clone();
                    changed.physical = Some(PathBuf::from(path));
                    cfg = Arc::new(changed);
                }
            }
        }
        let fail = |e: HttpError| Err((e, false));
        if !cfg.ip_allowed(&req.remote.ip()) {
            return fail(HttpError::new(403, 6));
        }
        if let Some((status, sub)) = ssl_refusal(cfg.access_ssl, req.tls.as_ref()) {
            return fail(HttpError::new(status, sub));
        }
        if let Some(request) = filters.as_deref_mut() {
            // SF_NOTIFY_AUTHENTICATION: the credentials (empty for an
            // anonymous request), which a filter may replace.
            let vars = crate::isapi::Variables::unmapped(req, cfg.site_id);
            let sent = header(req, "authorization")
                .and_then(auth::parse_basic)
                .unwrap_or_default();
            let (mut user, mut password) = sent.clone();
            if !request.authentication(&mut user, &mut password, &|n| vars.get(n)) {
                return Ok(filter_reply(request));
            }
            if (user.as_str(), password.as_str()) != (sent.0.as_str(), sent.1.as_str()) {
                use base64::Engine;
                let head = req.head_mut();
                head.headers
                    .retain(|n, _| !n.eq_ignore_ascii_case("authorization"));
                if !user.is_empty() {
                    let token = base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{password}"));
                    head.headers
                        .push("Authorization", format!("Basic {token}").as_bytes());
                }
            }
        }
        let mut ctx = match self.authenticate(&cfg, req).await {
            Ok(ctx) => ctx,
            Err(e) => return Err((e, true)),
        };
        ctx.skip = skip.map(Path::to_path_buf);
        if let Some(request) = filters {
            // SF_NOTIFY_AUTH_COMPLETE on the request's headers.
            let vars = crate::isapi::Variables::unmapped(req, cfg.site_id);
            if !request.auth_complete(req.head_mut(), &|n| vars.get(n)) {
                return Ok(filter_reply(request));
            }
        }
        if let BodyInfo::Length(n) = req.body {
            if n > cfg.max_entity {
                return Err((HttpError::new(413, 0), false));
            }
        }
        if let Some(reply) = redirect(&cfg, req) {
            return Ok(self.finish(&ctx, reply));
        }
        if cfg.access & access::NO_PHYSICAL_DIR != 0 {
            // Such a directory exists only for a handler (a wildcard
            // script map); with none that can run, there is nothing here.
            return fail(HttpError::new(404, 0).win32(3));
        }
        let name = req.url.path.rsplit('/').next().unwrap_or("");
        if let Some(call) = self.extension_call(config, &cfg, &ctx, name, skip) {
            return match call {
                Ok(call) => {
                    let mut reply = Reply::new(200);
                    reply.body = Body::Extension(Box::new(call));
                    Ok(self.finish(&ctx, reply))
                }
                Err(e) => fail(e),
            };
        }
        if let Err(e) = dynamic_content(&cfg, req, name, ctx.skip.as_deref()) {
            return fail(e);
        }
        let reply = match req.method.as_str() {
            "GET" | "HEAD" => self.get(config, &ctx, req).await,
            "PUT" => Box::pin(self.put(config, &ctx, req)).await,
            "DELETE" => Box::pin(self.delete(config, &ctx, req)).await,
            "OPTIONS" => Ok(Reply::new(200)
                .header("Allow", allowed_methods(&cfg))
                .header("Public", allowed_methods(&cfg))),
            "POST" => Err(HttpError::new(405, 0)),
            _ => Err(HttpError::new(501, 0)),
        };
        match reply {
            Ok(reply) => Ok(self.finish(&ctx, reply)),
            Err(e) => Err((e, false)),
        }
    }

    /// The ISAPI extension that answers this request: a script map (or
    /// wildcard map) naming a shared object by its absolute path, where
    /// the access flags let it run and WebSvcExtRestrictionList allows
    /// it; `None` when no extension is mapped here.
    fn extension_call(
        &self,
        config: &Config,
        cfg: &Arc<UrlConfig>,
        ctx: &Ctx,
        name: &str,
        skip: Option<&Path>,
    ) -> Option<Result<crate::isapi::Call, HttpError>> {
        let (module, script) = match cfg.script_map(name, skip) {
            Some(map) if map.executable.starts_with('/') => {
                (PathBuf::from(&map.executable), map.script)
            }
            // A Windows path (asp.dll): nothing here can run it (404.2
            // from dynamic_content, as IIS for a prohibited extension).
            Some(_) => return None,
            // A URL to a module itself, where Execute access allows it.
            None if name.ends_with(".so") => {
                let module = cfg.physical.clone()?;
                if cfg.access & access::EXECUTE != 0 && !module.is_file() {
                    return Some(Err(HttpError::new(404, 0).win32(2)));
                }
                (module, false)
            }
            None => return None,
        };
        let needed = if script {
            access::SCRIPT | access::EXECUTE
        } else {
            access::EXECUTE
        };
        if cfg.access & needed == 0 {
            return Some(Err(HttpError::new(403, 1).win32(5)));
        }
        if !config
            .restrictions
            .allows_extension(&module.to_string_lossy())
        {
            return Some(Err(HttpError::new(404, 2).win32(1260)));
        }
        Some(Ok(crate::isapi::Call {
            module,
            cache: cfg.cache_isapi,
            physical: cfg.physical.clone(),
            site_id: cfg.site_id,
            meta_path: cfg.app_root.clone(),
            user: ctx.user.clone(),
            auth_type: ctx.auth_type,
            read_ahead: cfg.read_ahead as usize,
        }))
    }

    fn finish(&self, ctx: &Ctx, mut reply: Reply) -> Reply {
        reply.log.user = ctx.user.clone();
        reply
    }

    async fn authenticate(&self, cfg: &Arc<UrlConfig>, req: &Request) -> Result<Ctx, HttpError> {
        // A client certificate mapped to a user logs on as that user
        // (AccessSSLMapCert: IIS's one-to-one mapping, AUTH_TYPE SSL/PCT);
        // one not mapped leaves the decision to the other methods.
        if cfg.access_ssl & access_ssl::MAP_CERT != 0 {
            if let Some(cert) = req.tls.as_ref().and_then(|t| t.client_certificate.as_ref()) {
                match self.logons.certificate_user(&cert.der).await {
                    Ok(Some(user)) => {
                        return Ok(Ctx {
                            cfg: cfg.clone(),
                            user,
                            auth_type: "SSL/PCT",
                            authenticated: true,
                            skip: None,
                        })
                    }
                    Ok(None) => {}
                    Err(_) => return Err(HttpError::new(500, 0)),
                }
            }
        }
        let anonymous = cfg.auth & auth_flags::ANONYMOUS != 0;
        let basic = cfg.auth & auth_flags::BASIC != 0;
        let sent = header(req, "authorization");
        let is_basic = sent.is_some_and(|s| {
            s.trim_start()
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("basic "))
        });
        match sent.and_then(auth::parse_basic) {
            Some((user, password)) if basic => {
                match Box::pin(self.logons.check(&user, &password)).await {
                    Ok(true) => Ok(Ctx {
                        cfg: cfg.clone(),
                        user,
                        auth_type: "Basic",
                        authenticated: true,
                        skip: None,
                    }),
                    Ok(false) => Err(HttpError::new(401, 1)),
                    Err(_) => Err(HttpError::new(500, 0)),
                }
            }
            // Credentials of a kind not enabled here are ignored where
            // anonymous access is allowed, as IIS ignores them.
            _ if anonymous => Ok(Ctx {
                cfg: cfg.clone(),
                user: String::new(),
                auth_type: "",
                authenticated: sent.is_some(),
                skip: None,
            }),
            // Basic credentials that do not decode are a failed logon.
            None if basic && is_basic => Err(HttpError::new(401, 1)),
            _ => Err(HttpError::new(401, 2)),
        }
    }

    /// GET and HEAD: a file, a directory's default document or listing.
    async fn get(
        &self,
        config: &Arc<Config>,
        ctx: &Ctx,
        req: &Request,
    ) -> Result<Reply, HttpError> {
        let cfg = &ctx.cfg;
        if cfg.access & access::READ == 0 {
            return Err(HttpError::new(403, 2).win32(5));
        }
        let physical = cfg
            .physical
            .as_ref()
            .ok_or(HttpError::new(404, 0).win32(3))?;
        let content = &config.content;
        let meta = self
            .changes
            .metadata(&config.meta, content, physical)
            .map_err(io_error)?;
        let path = &req.url.path;
        if !meta.is_dir() {
            if path.ends_with('/') {
                return Err(HttpError::new(404, 0).win32(2));
            }
            return self.file(config, ctx, cfg, req, physical, &meta, None);
        }
        if !path.ends_with('/') {
            // The courtesy redirect: relative links in the directory's
            // pages need the slash.
            let mut location = format!("{}{}/", origin(req), listing::encode_path(path));
            if !req.url.query.is_empty() {
                location.push('?');
                location.push_str(&req.url.query);
            }
            return Ok(moved(302, &location));
        }
        if cfg.browse & browse::ENABLE_DEFAULT_DOC != 0 {
            for doc in &cfg.default_docs {
                let candidate = physical.join(doc);
                let Ok(doc_meta) = self.changes.metadata(&config.meta, content, &candidate) else {
                    continue;
                };
                if !doc_meta.is_file() {
                    continue;
                }
                // The document is served as its own URL would be.
                let doc_url = format!("{path}{doc}");
                let doc_cfg = config
                    .url(cfg.site_id, &doc_url)
                    .unwrap_or_else(|| cfg.clone());
                dynamic_content(&doc_cfg, req, doc, ctx.skip.as_deref())?;
                if doc_cfg.access & access::READ == 0 {
                    return Err(HttpError::new(403, 2).win32(5));
                }
                return self.file(
                    config,
                    ctx,
                    &doc_cfg,
                    req,
                    &candidate,
                    &doc_meta,
                    Some(physical),
                );
            }
        }
        if cfg.browse & browse::ENABLE_DIR_BROWSING != 0 {
            let entries = listing::read_entries(content, physical).map_err(io_error)?;
            let page = listing::render(&req.url.host, path, &entries, cfg.browse);
            return Ok(Reply::new(200).html(page));
        }
        Err(HttpError::new(403, 14))
    }

    /// A file, whole or in ranges, compressed where configured.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &self,
        config: &Arc<Config>,
        ctx: &Ctx,
        cfg: &Arc<UrlConfig>,
        req: &Request,
        physical: &Path,
        meta: &std::fs::Metadata,
        directory: Option<&Path>,
    ) -> Result<Reply, HttpError> {
        let name = physical.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let content_type = cfg
            .mime_type(name)
            .ok_or(HttpError::new(404, 3))?
            .to_string();
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let plain = FileInfo {
            len: meta.len(),
            modified,
            variant: None,
        };
        let content = &config.content;
        let compression = &config.compression;
        let extension = crate::config::extension_of(name);
        let compressible = compression.enabled
            && cfg.compress_static != Some(false)
            && compression.schemes_for(&extension).next().is_some();
        let accept_encoding = header(req, "accept-encoding");
        let mut chosen = None;
        if compressible
            && plain.len >= compression.min_size
            && header(req, "range").is_none()
            && !(compression.no_http10 && req.version == HttpVersion::Http10)
            && !(compression.no_proxies && header(req, "via").is_some())
        {
            for (scheme, _, level) in compression.schemes_for(&extension) {
                if !crate::compress::accepts(accept_encoding, scheme) {
                    continue;
                }
                let Some(dir) = &compression.directory else {
                    break;
                };
                let copy = crate::compress::copy_path(dir, physical, &plain, scheme);
                if content.metadata(&copy).is_ok_and(|m| m.is_file()) {
                    let coding: &'static str = if scheme == "gzip" { "gzip" } else { "deflate" };
                    chosen = Some((copy, coding));
                } else {
                    // As IIS 6 does: this answer goes as it is, and the
                    // copy is made in the background for the next ones.
                    self.compress_later(config, physical, copy, scheme, *level);
                }
                break;
            }
        }
        let info = FileInfo {
            variant: chosen.as_ref().map(|(_, c)| *c),
            ..plain
        };
        let conditions = Conditions {
            if_match: header(req, "if-match"),
            if_none_match: header(req, "if-none-match"),
            if_modified_since: header(req, "if-modified-since"),
            if_unmodified_since: header(req, "if-unmodified-since"),
            range: header(req, "range"),
            if_range: header(req, "if-range"),
        };
        let mut reply = Reply::new(200)
            .header("Content-Type", &content_type)
            .header(
                "Last-Modified",
                httpapi::dates::http_date(info.last_modified()),
            )
            .header("ETag", info.etag());
        if compressible {
            reply = reply.header("Vary", "Accept-Encoding");
        }
        match &cfg.expires {
            Some(Expires::After(0)) => reply = reply.header("Cache-Control", "no-cache"),
            Some(Expires::After(secs)) => {
                reply = reply.header("Cache-Control", format!("max-age={secs}"))
            }
            Some(Expires::At(date)) => reply = reply.header("Expires", date),
            None => {}
        }
        match files::evaluate(&conditions, &info, true) {
            Precondition::NotModified => {
                reply.status = 304;
                reply.headers.retain(|name, _| name != "Content-Type");
                return Ok(reply);
            }
            Precondition::Failed => return Err(HttpError::new(412, 0)),
            Precondition::Proceed => {}
        }
        if let Some((copy, coding)) = chosen {
            let copy_file = content.open(&copy).map_err(io_error)?;
            let len = copy_file.metadata().map_err(io_error)?.len();
            reply = reply.header("Content-Encoding", coding);
            if let Some((cache_control, expires)) = &compression.cache_headers {
                if !cache_control.is_empty() {
                    reply = reply.header("Cache-Control", cache_control);
                }
                if !expires.is_empty() {
                    reply = reply.header("Expires", expires);
                }
            }
            reply.body = Body::File {
                source: Source::Open(copy_file),
                parts: vec![Part::Range { offset: 0, len }],
            };
            return Ok(reply);
        }
        reply = reply.header("Accept-Ranges", "bytes");
        match files::ranges(&conditions, &info) {
            Ranges::Whole => {
                reply.body = Body::File {
                    source: self.source(content, physical, meta)?,
                    parts: vec![Part::Range {
                        offset: 0,
                        len: info.len,
                    }],
                };
                // The listener may keep what everyone would get alike.
                reply.cache = config.listener_caches
                    && req.method == "GET"
                    && !ctx.authenticated
                    && cfg.ip_security.is_none()
                    && !compressible
                    && cfg.auth & auth_flags::ANONYMOUS != 0;
                if reply.cache {
                    let mut deps = vec![physical.to_path_buf()];
                    deps.extend(directory.map(Path::to_path_buf));
                    self.watch.register(
                        content,
                        &req.url.scheme,
                        req.url.port,
                        &req.url.path,
                        deps,
                    );
                }
            }
            Ranges::Parts(parts) if parts.len() == 1 => {
                let (first, last) = parts[0];
                reply.status = 206;
                reply = reply.header(
                    "Content-Range",
                    format!("bytes {first}-{last}/{}", info.len),
                );
                reply.body = Body::File {
                    source: self.source(content, physical, meta)?,
                    parts: vec![Part::Range {
                        offset: first,
                        len: last - first + 1,
                    }],
                };
            }
            Ranges::Parts(parts) => {
                let boundary = format!(
                    "{:016x}",
                    info.modified
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0)
                        ^ info.len
                );
                reply.status = 206;
                reply.headers.retain(|name, _| name != "Content-Type");
                reply = reply.header(
                    "Content-Type",
                    format!("multipart/byteranges; boundary={boundary}"),
                );
                let mut body = Vec::new();
                for (first, last) in parts {
                    body.push(Part::Literal(Bytes::from(format!(
                        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {first}-{last}/{}\r\n\r\n",
                        info.len
                    ))));
                    body.push(Part::Range {
                        offset: first,
                        len: last - first + 1,
                    });
                }
                body.push(Part::Literal(Bytes::from(format!(
                    "\r\n--{boundary}--\r\n"
                ))));
                reply.body = Body::File {
                    source: self.source(content, physical, meta)?,
                    parts: body,
                };
            }
            Ranges::Unsatisfiable => {
                let mut e =
                    Reply::new(416).header("Content-Range", format!("bytes */{}", info.len));
                e.log.substatus = 0;
                return Ok(e);
            }
        }
        Ok(reply)
    }

    /// Queues the compressed copy of a file on the blocking pool, once
    /// while it is being made.
    fn compress_later(
        &self,
        config: &Arc<Config>,
        file: &Path,
        copy: PathBuf,
        scheme: &str,
        level: u32,
    ) {
        if !lock(&self.compressing).insert(copy.clone()) {
            return;
        }
        let (config, file, scheme) = (config.clone(), file.to_path_buf(), scheme.to_string());
        let compressing = self.compressing.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) =
                crate::compress::make_copy(&config.content, &file, &copy, &scheme, level)
            {
                tracing::warn!(file = %file.display(), error = %e, "cannot compress; the file is sent as it is");
            }
            lock(&compressing).remove(&copy);
        });
    }

    /// The bytes of a file to send: small ones from the file cache (read
    /// on first use), large ones opened (sent with sendfile).
    fn source(
        &self,
        content: &Content,
        physical: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<Source, HttpError> {
        if meta.len() <= SMALL_FILE {
            if let Some(data) = self.files.get(physical, meta) {
                return Ok(Source::Memory(data));
            }
            let data = Bytes::from(content.read(physical).map_err(io_error)?);
            // Changed while being read: send what was read, keep nothing.
            if data.len() as u64 == meta.len() {
                self.files.put(physical, meta, data.clone());
            }
            return Ok(Source::Memory(data));
        }
        Ok(Source::Open(content.open(physical).map_err(io_error)?))
    }

    /// PUT: stores the body as the file, where AccessWrite allows.
    async fn put(&self, config: &Config, ctx: &Ctx, req: &mut Request) -> Result<Reply, HttpError> {
        let cfg = &ctx.cfg;
        if cfg.access & access::WRITE == 0 {
            return Err(HttpError::new(403, 3).win32(5));
        }
        let physical = cfg
            .physical
            .clone()
            .ok_or(HttpError::new(404, 0).win32(3))?;
        if req.url.path.ends_with('/') {
            return Err(HttpError::new(405, 0));
        }
        let content = &config.content;
        let parent = physical.parent().ok_or(HttpError::new(409, 0))?;
        if !content.metadata(parent).is_ok_and(|m| m.is_dir()) {
            return Err(HttpError::new(409, 0).win32(3));
        }
        let existing = content.metadata(&physical).ok();
        if existing.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(HttpError::new(405, 0));
        }
        let conditions = Conditions {
            if_match: header(req, "if-match"),
            if_none_match: header(req, "if-none-match"),
            if_unmodified_since: header(req, "if-unmodified-since"),
            ..Default::default()
        };
        match &existing {
            Some(meta) => {
                let info = FileInfo {
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    variant: None,
                };
                if files::evaluate(&conditions, &info, false) != Precondition::Proceed {
                    return Err(HttpError::new(412, 0));
                }
            }
            None if conditions.if_match.is_some() => return Err(HttpError::new(412, 0)),
            None => {}
        }
        let mut temp = content
            .create_temp(&physical, ".inetsrv-put-")
            .map_err(io_error)?;
        let mut total: u64 = 0;
        loop {
            let chunk = match req.body_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                // The client went away: nothing is stored.
                Err(_) => return Err(HttpError::new(400, 0)),
            };
            total += chunk.len() as u64;
            if total > cfg.max_entity {
                return Err(HttpError::new(413, 0));
            }
            std::io::Write::write_all(&mut temp.file, &chunk).map_err(io_error)?;
        }
        temp.file.sync_all().map_err(io_error)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = existing
                .as_ref()
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644);
            let _ = temp
                .file
                .set_permissions(std::fs::Permissions::from_mode(mode));
        }
        content.persist(temp, &physical).map_err(io_error)?;
        self.flush_url(req).await;
        Ok(if existing.is_some() {
            Reply::new(204)
        } else {
            let location = format!("{}{}", origin(req), listing::encode_path(&req.url.path));
            Reply::new(201).header("Location", location)
        })
    }

    /// DELETE: removes a file (or an empty directory), where AccessWrite
    /// allows.
    async fn delete(&self, config: &Config, ctx: &Ctx, req: &Request) -> Result<Reply, HttpError> {
        let cfg = &ctx.cfg;
        if cfg.access & access::WRITE == 0 {
            return Err(HttpError::new(403, 3).win32(5));
        }
        let physical = cfg
            .physical
            .as_ref()
            .ok_or(HttpError::new(404, 0).win32(3))?;
        let content = &config.content;
        let meta = content.symlink_metadata(physical).map_err(io_error)?;
        if meta.is_dir() {
            content.remove_dir(physical).map_err(|e| match e.kind() {
                std::io::ErrorKind::DirectoryNotEmpty => HttpError::new(409, 0),
                _ => io_error(e),
            })?;
        } else {
            content.remove_file(physical).map_err(io_error)?;
        }
        self.flush_url(req).await;
        Ok(Reply::new(204))
    }

    /// Drops the listener's cached copy of the request's URL.
    async fn flush_url(&self, req: &Request) {
        if let Some(prefix) =
            crate::watch::flush_prefix(&req.url.scheme, req.url.port, &req.url.path)
        {
            let _ = self.control.flush_cache(&prefix).await;
        }
    }

    /// An error as the site wants it shown: HttpErrors' file or URL, or
    /// the built-in page.
    fn error_reply(
        &self,
        config: &Config,
        cfg: Option<&UrlConfig>,
        req: &Request,
        error: HttpError,
        challenge: bool,
    ) -> Reply {
        let mut reply = Reply::new(error.status);
        reply.log.substatus = error.substatus;
        reply.log.win32_status = error.win32;
        if let Some(cfg) = cfg {
            reply.log.dont_log = cfg.dont_log;
            if challenge && error.status == 401 && cfg.auth & auth_flags::BASIC != 0 {
                let realm = if cfg.realm.is_empty() {
                    req.url.host.as_str()
                } else {
                    cfg.realm.as_str()
                };
                reply = reply.header(
                    "WWW-Authenticate",
                    format!("Basic realm=\"{}\"", realm.replace('"', "")),
                );
            }
            if error.status == 405 {
                reply = reply.header("Allow", allowed_methods(cfg));
            }
            let custom = cfg
                .errors
                .iter()
                .filter(|e| e.status == error.status)
                .find(|e| e.substatus == Some(error.substatus))
                .or_else(|| {
                    cfg.errors
                        .iter()
                        .find(|e| e.status == error.status && e.substatus.is_none())
                });
            let page = custom.and_then(|entry| match &entry.kind {
                CustomErrorKind::File(path) => read_error_file(&config.content, path, cfg),
                CustomErrorKind::Url(url) => {
                    let target = config.url(cfg.site_id, url.split('?').next().unwrap_or(url))?;
                    let path = target.physical.as_ref()?;
                    read_error_file(&config.content, path, &target)
                }
                CustomErrorKind::Default => None,
            });
            if let Some((content_type, body)) = page {
                reply.headers.push("Content-Type", content_type.as_bytes());
                reply.body = Body::Bytes(body);
                return reply;
            }
        }
        reply.html(error.page())
    }

    async fn send(
        self: &Arc<Self>,
        req: Request,
        reply: Reply,
        cfg: Option<&UrlConfig>,
        filters: Option<(
            &mut crate::filters::RequestFilters,
            &crate::isapi::Variables,
        )>,
    ) {
        let is_head = req.method == "HEAD";
        let Reply {
            status,
            headers,
            body,
            cache,
            mut log,
        } = reply;
        if let Some(cfg) = cfg {
            log.dont_log |= cfg.dont_log;
        }
        let mut response = Response::new(status).log(log);
        match cfg.map(|c| &c.custom_headers) {
            Some(custom) if !custom.is_empty() => {
                // HttpCustomHeaders first, then the handler's.
                for (name, value) in custom {
                    response.headers.push(name, value.as_bytes());
                }
                response.headers.append(&headers);
            }
            _ => response.headers = headers,
        }
        // The listener's cache answers without the worker, so without
        // filters: a filtered site's answers are not cached (as HTTP.SYS's
        // cache is off for sites with filters in IIS 6).
        let filtered = filters.is_some();
        let mut filters = filters;
        if let Some((request, vars)) = filters.as_mut() {
            // An extension's answer is filtered when it makes it.
            if !matches!(body, Body::Extension(_)) {
                request.on_response(&mut response, &req, &|n| vars.get(n));
            }
        }
        if cache && !filtered {
            response = response.cache(CachePolicy::UntilInvalidated);
        }
        let total = body.len();
        match body {
            Body::Empty => {
                let _ = req.respond(response).await;
            }
            Body::Extension(call) => {
                // The request's filters go with the extension and come back
                // for the notifications after it.
                let taken = filters
                    .as_mut()
                    .map(|(request, _)| std::mem::take(&mut **request));
                let back = crate::isapi::run(self.clone(), *call, req, response, taken).await;
                if let (Some((request, _)), Some(back)) = (filters, back) {
                    *request = back;
                }
            }
            Body::Bytes(bytes) => {
                let _ = req.respond(response.body(bytes)).await;
            }
            Body::File { source, parts } => {
                if is_head {
                    if let Ok(w) = req.start_response(response, Some(total)).await {
                        let _ = w.finish(Vec::new()).await;
                    }
                    return;
                }
                let file = match source {
                    Source::Memory(data) => {
                        match memory_parts(&data, &parts) {
                            Some(bytes) => {
                                let _ = req.respond(response.body(bytes)).await;
                            }
                            None => req.abort(),
                        }
                        return;
                    }
                    Source::Open(file) => file,
                };
                if total <= SMALL_FILE {
                    // Small: read now and send with the head.
                    match read_parts(&file, &parts) {
                        Some(bytes) => {
                            let _ = req.respond(response.body(bytes)).await;
                        }
                        // Changed since it was examined: the client must
                        // not get a head that lies about it.
                        None => req.abort(),
                    }
                    return;
                }
                // Boxed: the common (small) path keeps a small future.
                Box::pin(stream_file(req, response, file, parts, total)).await;
            }
        }
    }
}

/// Sends a large file: its open descriptor goes to the listener, which
/// sends the bytes with sendfile(2) (HTTP.SYS's TransmitFile role); the
/// bytes never pass through this process.
async fn stream_file(
    req: Request,
    response: Response,
    file: std::fs::File,
    parts: Vec<Part>,
    total: u64,
) {
    let Ok(mut writer) = req.start_response(response, Some(total)).await else {
        return;
    };
    for part in parts {
        let sent = match part {
            Part::Literal(bytes) => writer.send(&bytes).await,
            Part::Range { offset, len } => writer.send_file(&file, offset, len).await,
        };
        if sent.is_err() {
            return;
        }
    }
    let _ = writer.finish(Vec::new()).await;
}

/// A response body made of parts of a file in memory (the whole file is
/// shared, not copied).
fn memory_parts(data: &Bytes, parts: &[Part]) -> Option<Bytes> {
    if let [Part::Range { offset, len }] = parts {
        let (start, end) = (*offset as usize, (*offset + *len) as usize);
        return (end <= data.len()).then(|| data.slice(start..end));
    }
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Literal(bytes) => out.extend_from_slice(bytes),
            Part::Range { offset, len } => {
                let (start, end) = (*offset as usize, (*offset + *len) as usize);
                out.extend_from_slice(data.get(start..end)?);
            }
        }
    }
    Some(Bytes::from(out))
}

/// The bytes of a small response made of file parts; `None` if the file
/// is shorter than it was.
fn read_parts(file: &std::fs::File, parts: &[Part]) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Literal(bytes) => out.extend_from_slice(bytes),
            Part::Range { offset, len } => {
                let start = out.len();
                out.resize(start + *len as usize, 0);
                file.read_exact_at(&mut out[start..], *offset).ok()?;
            }
        }
    }
    Some(out)
}

fn read_error_file(content: &Content, path: &Path, cfg: &UrlConfig) -> Option<(String, Bytes)> {
    let meta = content.metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_ERROR_FILE {
        return None;
    }
    let body = content.read(path).ok()?;
    let name = path.file_name()?.to_str()?;
    let content_type = cfg.mime_type(name).unwrap_or("text/html").to_string();
    Some((content_type, Bytes::from(body)))
}

fn io_error(e: std::io::Error) -> HttpError {
    match e.kind() {
        std::io::ErrorKind::NotFound => HttpError::new(404, 0).win32(2),
        std::io::ErrorKind::NotADirectory => HttpError::new(404, 0).win32(3),
        // The file system refuses the worker's identity: IIS's "denied by
        // the resource's ACL".
        std::io::ErrorKind::PermissionDenied => HttpError::new(401, 3).win32(5),
        _ => {
            tracing::warn!(error = %e, "file system error");
            HttpError::new(500, 0)
        }
    }
}

/// What IIS 6 does with a request for a script-mapped or executable file
/// (AccessFlags Script, Execute and Source): without the access its handler
/// needs, 403.1; with it, the handler would run — and no script engine,
/// CGI program or ISAPI extension is enabled in inetsrv, so the request is
/// refused as IIS 6's Web Service Extension lockdown refuses a prohibited
/// one (404.2, Win32 1260). Such files are never sent as their source,
/// except with Source access: a GET or HEAD with `Translate: f` (what
/// WebDAV clients send) and Read, or a PUT or DELETE with Write.
fn dynamic_content(
    cfg: &UrlConfig,
    req: &Request,
    name: &str,
    skip: Option<&Path>,
) -> Result<(), HttpError> {
    let needed = match cfg.handler(name, skip) {
        Handler::Static => return Ok(()),
        Handler::ScriptMapped {
            script_access_suffices: true,
        } => access::SCRIPT | access::EXECUTE,
        Handler::ScriptMapped { .. } | Handler::Executable => access::EXECUTE,
    };
    if cfg.access & access::SOURCE != 0 {
        let raw = match req.method.as_str() {
            "GET" | "HEAD" => {
                header(req, "translate").is_some_and(|t| t.trim().eq_ignore_ascii_case("f"))
            }
            "PUT" | "DELETE" => true,
            _ => false,
        };
        if raw {
            return Ok(());
        }
    }
    if matches!(req.method.as_str(), "PUT" | "DELETE") && cfg.access & access::WRITE != 0 {
        // Writing a script needs Source access besides Write.
        return Err(HttpError::new(403, 3).win32(5));
    }
    if cfg.access & needed == 0 {
        return Err(HttpError::new(403, 1).win32(5));
    }
    Err(HttpError::new(404, 2).win32(1260))
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

fn allowed_methods(cfg: &UrlConfig) -> String {
    if cfg.access & access::WRITE != 0 {
        "OPTIONS, TRACE, GET, HEAD, PUT, DELETE".into()
    } else {
        "OPTIONS, TRACE, GET, HEAD".into()
    }
}

fn moved(status: u16, location: &str) -> Reply {
    let escaped = listing::html_escape(location);
    Reply::new(status).header("Location", location).html(format!(
        "<head><title>Object moved</title></head><body><h1>Object Moved</h1>This object may be found <a HREF=\"{escaped}\">here</a>.</body>"
    ))
}

/// HttpRedirect: `None` when the request is served here.
fn redirect(cfg: &UrlConfig, req: &Request) -> Option<Reply> {
    let r = cfg.redirect.as_ref()?;
    let path = &req.url.path;
    let suffix = path
        .get(r.base.trim_end_matches('/').len()..)
        .unwrap_or("")
        .to_string();
    let query = &req.url.query;
    let has_variables = r.destination.contains('$');
    let mut target = if r.exact || has_variables {
        r.destination
            .replace("$S", &listing::encode_path(&suffix))
            .replace("$V", &listing::encode_path(path))
            .replace(
                "$Q",
                &if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                },
            )
            .replace("$P", query)
    } else {
        let base = r.destination.trim_end_matches('/');
        let rest = listing::encode_path(&suffix);
        if rest.is_empty() && r.destination.ends_with('/') {
            r.destination.clone()
        } else {
            format!("{base}{rest}")
        }
    };
    if r.child_only {
        // The destination lies below the redirecting URL: requests that
        // already reached it are served, not sent round again.
        let dest_path = target_path(&r.destination);
        if !dest_path.is_empty()
            && path
                .to_ascii_lowercase()
                .starts_with(&dest_path.to_ascii_lowercase())
        {
            return None;
        }
    }
    if target.starts_with('/') {
        target = format!("{}{}", origin(req), target);
    }
    let mut reply = moved(if r.permanent { 301 } else { 302 }, &target);
    reply.log.substatus = 0;
    Some(reply)
}

/// The path part of a redirect destination (absolute URL or path).
fn target_path(destination: &str) -> String {
    let d = destination.split(['$', '?']).next().unwrap_or("");
    if let Some(rest) = d.split_once("://").map(|(_, r)| r) {
        rest.find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_else(|| "/".into())
    } else {
        d.to_string()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
