//! ISAPI extensions in the worker: the lockdown that decides which modules
//! may run (WebSvcExtRestrictionList, IIS 6's Web Service Extensions), the
//! modules loaded once per worker, and one request's run: its server
//! variables, its body and its response, given to the extension through
//! the `isapi` crate's host on a blocking thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use httpapi::proto::{BodyInfo, HttpVersion};
use httpapi::{Request, Response, ResponseWriter};
use isapi::host::{Connection, ExecUrl, Extension, RequestFacts, UrlMapping};
use isapi::types::{error, Dword};

use crate::ip_text::IpText;
use crate::pipeline::Pipeline;

/// How long a request an extension left pending may take to be finished.
const PENDING_LIMIT: Duration = Duration::from_secs(300);

/// The most threads extensions run on at once in one worker (the calls
/// blocked in modules, and one more).
pub const MAX_CALL_THREADS: usize = 64;
/// The most request body kept in memory when an extension sends its
/// response before reading the body (the listener's request must be
/// answered whole, so the rest is read first).
const MAX_BUFFERED_BODY: usize = 64 << 20;

/// WebSvcExtRestrictionList, IIS 6's Web Service Extensions: entries
/// `allowed,path,deletable,group,description`. An entry naming the module
/// decides whether it runs; otherwise `*.dll` (IIS's "All Unknown ISAPI
/// Extensions", which covers shared objects here) does; with neither, the
/// module may not run. `*.exe` is the same for CGI programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub entries: Vec<Restriction>,
}

/// One Web Service Extension file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restriction {
    pub allowed: bool,
    /// The module's path, or `*.dll` / `*.exe`.
    pub path: String,
    /// Whether IIS Manager may delete it (UIDeletableFlag).
    pub deletable: bool,
    /// The extension (group) it belongs to: what `enable NAME` names.
    pub group: String,
    pub description: String,
}

/// One Web Service Extension: its files.
pub struct ExtensionGroup<'a> {
    pub name: String,
    pub files: Vec<&'a Restriction>,
}

impl ExtensionGroup<'_> {
    /// `allowed`, `partly allowed` or `prohibited`.
    pub fn state(&self) -> &'static str {
        match (
            self.files.iter().all(|e| e.allowed),
            self.files.iter().any(|e| e.allowed),
        ) {
            (true, _) => "allowed",
            (false, true) => "partly allowed",
            _ => "prohibited",
        }
    }

    /// As `inetsrv webext list --json` and the console give it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "state": self.state(),
            "description": self.description(),
            "files": self.files.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        })
    }

    /// The first description one of its files has.
    pub fn description(&self) -> &str {
        self.files
            .iter()
            .map(|e| e.description.as_str())
            .find(|d| !d.is_empty())
            .unwrap_or("")
    }
}

/// The wildcard entry `unknown-isapi` (or `*.dll`) and `unknown-cgi` (or
/// `*.exe`) name.
pub fn wildcard(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "unknown-isapi" | "*.dll" => Some(UNKNOWN_ISAPI),
        "unknown-cgi" | "*.exe" => Some(UNKNOWN_CGI),
        _ => None,
    }
}

/// The wildcard entries: all unknown ISAPI extensions and CGI programs.
pub const UNKNOWN_ISAPI: &str = "*.dll";
pub const UNKNOWN_CGI: &str = "*.exe";

impl Restriction {
    fn parse(entry: &str) -> Option<Restriction> {
        let mut fields = entry.splitn(5, ',').map(str::trim);
        let allowed = match fields.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let path = fields.next().filter(|p| !p.is_empty())?.to_string();
        let deletable = fields.next() == Some("1");
        Some(Restriction {
            allowed,
            path,
            deletable,
            group: fields.next().unwrap_or_default().to_string(),
            description: fields.next().unwrap_or_default().to_string(),
        })
    }
}

impl std::fmt::Display for Restriction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{},{},{}",
            u8::from(self.allowed),
            self.path,
            u8::from(self.deletable),
            self.group,
            self.description
        )
    }
}

impl Restrictions {
    /// Entries that do not parse are left out (and logged by the caller
    /// that cares).
    pub fn parse(list: &[String]) -> Restrictions {
        Restrictions {
            entries: list.iter().filter_map(|e| Restriction::parse(e)).collect(),
        }
    }

    /// Parses a list that will be written back: an entry that does not
    /// read would be lost by the rewrite, so it is an error naming it.
    pub fn parse_to_edit(list: &[String]) -> Result<Restrictions, String> {
        let parsed = Restrictions::parse(list);
        if let Some(bad) = list
            .iter()
            .find(|e| !e.trim().is_empty() && Restriction::parse(e).is_none())
        {
            return Err(format!("W3SVC/WebSvcExtRestrictionList has an entry that is not `0|1,path,…`: '{bad}'; correct it with inetsrv mb set first (nothing was changed)"));
        }
        Ok(parsed)
    }

    /// The extensions, as IIS Manager lists them: the files of a group
    /// together (a file of no group by its path), and the two wildcard
    /// entries as `unknown-isapi` and `unknown-cgi`.
    pub fn groups(&self) -> Vec<ExtensionGroup<'_>> {
        let mut groups: Vec<ExtensionGroup<'_>> = Vec::new();
        for e in &self.entries {
            let name = match e.path.as_str() {
                p if p.eq_ignore_ascii_case(UNKNOWN_ISAPI) => "unknown-isapi".to_string(),
                p if p.eq_ignore_ascii_case(UNKNOWN_CGI) => "unknown-cgi".to_string(),
                _ if !e.group.is_empty() => e.group.clone(),
                p => p.to_string(),
            };
            match groups.iter_mut().find(|g| g.name == name) {
                Some(g) => g.files.push(e),
                None => groups.push(ExtensionGroup {
                    name,
                    files: vec![e],
                }),
            }
        }
        groups
    }

    /// Allows or prohibits every file of an extension (its group ID), or
    /// a wildcard entry (`unknown-isapi`, `unknown-cgi`, made if absent);
    /// how many entries changed (0: no such extension).
    pub fn set_group(&mut self, name: &str, allow: bool) -> usize {
        if let Some(path) = wildcard(name) {
            match self
                .entries
                .iter_mut()
                .find(|e| e.path.eq_ignore_ascii_case(path))
            {
                Some(e) => e.allowed = allow,
                None => self.entries.push(Restriction {
                    allowed: allow,
                    path: path.to_string(),
                    deletable: false,
                    group: String::new(),
                    description: String::new(),
                }),
            }
            return 1;
        }
        let mut changed = 0;
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.group.eq_ignore_ascii_case(name))
        {
            e.allowed = allow;
            changed += 1;
        }
        changed
    }

    /// The entries as the metabase keeps them.
    pub fn to_list(&self) -> Vec<String> {
        self.entries.iter().map(Restriction::to_string).collect()
    }

    /// Whether the ISAPI module at `path` may run.
    pub fn allows_extension(&self, path: &str) -> bool {
        self.allows(path, UNKNOWN_ISAPI)
    }

    /// Whether the CGI program (or FastCGI application) at `path` may run.
    pub fn allows_program(&self, path: &str) -> bool {
        self.allows(path, UNKNOWN_CGI)
    }

    fn allows(&self, path: &str, unknown: &str) -> bool {
        let named = self.entries.iter().find(|e| e.path == path);
        let wildcard = || {
            self.entries
                .iter()
                .find(|e| e.path.eq_ignore_ascii_case(unknown))
        };
        named.or_else(wildcard).is_some_and(|e| e.allowed)
    }
}

/// Extensions loaded by this worker, by path (CacheISAPI: loaded once,
/// unloaded with the worker).
#[derive(Default)]
pub struct Modules {
    loaded: Mutex<HashMap<PathBuf, Arc<Extension>>>,
    /// To the activation service: HSE_REQ_REPORT_UNHEALTHY.
    reports: Mutex<Option<tokio::sync::mpsc::UnboundedSender<worker_control::FromWorker>>>,
    /// Refusals already explained in the service log, by module.
    explained: Mutex<std::collections::HashSet<(PathBuf, &'static str)>>,
    /// Extension calls in progress, by number, with when each began.
    calls: Mutex<HashMap<u64, std::time::Instant>>,
    next_call: std::sync::atomic::AtomicU64,
}

/// An extension call in progress, known to [`Modules::busiest`] until
/// dropped.
struct InCall<'a> {
    modules: &'a Modules,
    id: u64,
}

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        self.modules
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Modules {
    /// How long the longest extension call in progress has run: a call
    /// hung in a module is a hang pings of the worker's own thread miss.
    pub fn busiest(&self) -> Duration {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|t| t.elapsed())
            .max()
            .unwrap_or_default()
    }

    fn begin_call(&self) -> InCall<'_> {
        let id = self
            .next_call
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, std::time::Instant::now());
        InCall { modules: self, id }
    }

    /// Where a module's report that the worker is unhealthy goes.
    pub fn set_reports(&self, to: tokio::sync::mpsc::UnboundedSender<worker_control::FromWorker>) {
        *self.reports.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }

    /// Asks the service to replace this worker, with the module's reason.
    fn report_unhealthy(&self, module: &Path, reason: &str) {
        tracing::warn!(module = %module.display(), %reason, "an ISAPI extension reports the worker unhealthy");
        if let Some(to) = self
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = to.send(worker_control::FromWorker::RecycleMe {
                reason: format!(
                    "HSE_REQ_REPORT_UNHEALTHY from {}: {reason}",
                    module.display()
                ),
            });
        }
    }

    /// Unloads every extension (TerminateExtension), once no request
    /// uses it.
    pub fn unload_all(&self) {
        let loaded = std::mem::take(&mut *self.loaded.lock().unwrap_or_else(|e| e.into_inner()));
        for (path, extension) in loaded {
            tracing::info!(module = %path.display(), "ISAPI extension unloaded");
            drop(extension);
        }
    }

    /// The extension at `path` (loaded from `load_as`: see
    /// [`crate::module_files`]), loaded on first use and kept (CacheISAPI),
    /// or loaded for this request alone and unloaded after it.
    pub fn get(
        &self,
        path: &Path,
        load_as: impl FnOnce() -> PathBuf,
        cache: bool,
    ) -> Result<Arc<Extension>, String> {
        if !cache {
            // A copy kept from before CacheISAPI was turned off goes (once
            // the requests using it end), so this one is loaded afresh.
            let kept = self
                .loaded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(path);
            drop(kept);
            return Extension::load_from(path, &load_as())
                .map(Arc::new)
                .map_err(|e| e.to_string());
        }
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = loaded.get(path) {
            return Ok(found.clone());
        }
        let extension =
            Arc::new(Extension::load_from(path, &load_as()).map_err(|e| e.to_string())?);
        tracing::info!(module = %path.display(), description = extension.description(), "ISAPI extension loaded");
        loaded.insert(path.to_path_buf(), extension.clone());
        Ok(extension)
    }
}

/// What the pipeline decided for a request an extension answers.
pub struct Call {
    pub module: PathBuf,
    /// CacheISAPI: keep the module loaded between requests.
    pub cache: bool,
    /// The file the URL maps to (PATH_TRANSLATED).
    pub physical: Option<PathBuf>,
    pub site_id: u32,
    /// The application (APPL_MD_PATH, APPL_PHYSICAL_PATH).
    pub app: Arc<crate::config::Application>,
    pub user: String,
    pub auth_type: &'static str,
    pub read_ahead: usize,
}

/// Runs the extension for the request and sends its response. A module
/// that cannot be loaded answers 500 and is named in the service log.
/// Gives back the request's filters, for the notifications after it.
pub async fn run(
    pipeline: Arc<Pipeline>,
    call: Call,
    req: Request,
    template: Response,
    filters: Option<Box<crate::filters::RequestFilters>>,
) -> Option<Box<crate::filters::RequestFilters>> {
    let runtime = tokio::runtime::Handle::current();
    let modules = pipeline.modules.clone();
    let calls = pipeline.clone();
    calls.calls.run(move || {
        let load_as = || {
            pipeline
                .module_files
                .load_as(&call.module, &pipeline.config.load().content)
        };
        let extension = match modules.get(&call.module, load_as, call.cache) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "ISAPI extension not loaded");
                let page = Response::new(500).header("Content-Type", "text/html").body(
                    "<html><body><h1>500 Internal Server Error</h1><p>The application for this URL could not be started.</p></body></html>",
                );
                let _ = runtime.block_on(req.respond(page));
                return filters;
            }
        };
        let vars = Variables::of(&req, &call);
        let mut conn = Conn {
            pipeline,
            child_status: None,
            modules: modules.clone(),
            module: call.module.clone(),
            runtime: runtime.clone(),
            request: Some(req),
            output: Output::NotStarted,
            template: Some(template),
            buffered: Vec::new(),
            body_done: false,
            vars,
            close: false,
            flush: false,
            filters,
            held: None,
            late_log: String::new(),
            cacheable: false,
        };
        let facts = conn.facts(&call);
        let in_call = modules.begin_call();
        let outcome = extension.call(&mut conn, &facts, PENDING_LIMIT);
        drop(in_call);
        if outcome.abandoned {
            tracing::warn!(module = %call.module.display(), "an ISAPI extension left a request pending past the limit");
        }
        conn.finish(outcome.status, outcome.http_status)
    })
    .await
    .flatten()
}

/// One request's side of the host.
struct Conn {
    /// For child requests (HSE_REQ_EXEC_URL).
    pipeline: Arc<Pipeline>,
    /// How the last child request ended.
    child_status: Option<(u16, u16, u32)>,
    modules: Arc<Modules>,
    module: PathBuf,
    runtime: tokio::runtime::Handle,
    /// Until the response starts streaming.
    request: Option<Request>,
    output: Output,
    /// The response's fixed part (custom headers, log fields).
    template: Option<Response>,
    /// Body bytes read but not yet given to the extension.
    buffered: Vec<u8>,
    body_done: bool,
    vars: Variables,
    close: bool,
    /// HSE_REQ_SET_FLUSH_FLAG: writes go out at once, not gathered.
    flush: bool,
    /// The request's ISAPI filters: SEND_RESPONSE and LOG see the
    /// extension's answer.
    filters: Option<Box<crate::filters::RequestFilters>>,
    /// The end of the response a child request gave (HSE_REQ_EXEC_URL),
    /// held until this extension is done with the request.
    held: Option<httpapi::HeldEnd>,
    /// HSE_APPEND_LOG_PARAMETER text that came after the head went: it
    /// goes with the response's end.
    late_log: String,
    /// HSE_IO_CACHE_RESPONSE: the listener may keep the response.
    cacheable: bool,
}

/// Where the response stands. Small responses are gathered and sent
/// whole when the extension returns (one message to the listener, with
/// its length); a response that grows past [`GATHER_LIMIT`] streams.
enum Output {
    NotStarted,
    Gathering {
        response: Box<Response>,
        body: Vec<u8>,
    },
    Streaming(ResponseWriter),
}

/// The most response body kept before it streams.
const GATHER_LIMIT: usize = 64 * 1024;

impl Conn {
    fn facts(&mut self, call: &Call) -> RequestFacts {
        let (method, query, path, content_type, total) = match &self.request {
            Some(req) => (
                req.method.clone(),
                req.url.query.clone(),
                req.url.path.clone(),
                req.header_str("content-type")
                    .unwrap_or_default()
                    .to_string(),
                match req.body {
                    BodyInfo::None => 0,
                    BodyInfo::Length(n) => u32::try_from(n).unwrap_or(u32::MAX),
                    BodyInfo::Chunked => u32::MAX,
                },
            ),
            None => Default::default(),
        };
        // Read ahead up to UploadReadAheadSize, as IIS fills lpbData.
        let mut preloaded = Vec::new();
        while preloaded.len() < call.read_ahead && total > 0 {
            match self.next_chunk() {
                Some(chunk) => preloaded.extend_from_slice(&chunk),
                None => break,
            }
        }
        if preloaded.len() > call.read_ahead {
            self.buffered = preloaded.split_off(call.read_ahead);
        }
        RequestFacts {
            method,
            query_string: query,
            path_info: path,
            path_translated: call
                .physical
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            content_type,
            total_bytes: total,
            preloaded,
        }
    }

    /// The next piece of the request body from the listener.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.body_done {
            return None;
        }
        let req = self.request.as_mut()?;
        match self.runtime.block_on(req.body_chunk()) {
            Ok(Some(chunk)) => Some(chunk),
            _ => {
                self.body_done = true;
                None
            }
        }
    }

    /// Decides the response head: `status` and the extension's header
    /// lines; body bytes after the header block are the body's start.
    fn head(&mut self, status: u16, headers: &str) -> std::io::Result<()> {
        if !matches!(self.output, Output::NotStarted) {
            return Err(std::io::Error::other("the response has started"));
        }
        let mut response = self.template.take().unwrap_or_else(|| Response::new(200));
        response.status = status;
        let (head, first_body) = match headers.split_once("\r\n\r\n") {
            Some((head, rest)) => (head, rest),
            None => (headers, ""),
        };
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            // The listener frames the body itself.
            if !name.eq_ignore_ascii_case("content-length")
                && !name.eq_ignore_ascii_case("transfer-encoding")
                && !name.eq_ignore_ascii_case("connection")
            {
                response.headers.push(name, value.as_bytes());
            }
        }
        if let Some(filters) = self.filters.as_mut() {
            let vars = &self.vars;
            filters.on_response(&mut response, &|n| vars.get(n));
            if filters.wants_send_raw() {
                filters.send_raw_head(&mut response, &|n| vars.get(n));
            }
        }
        self.output = Output::Gathering {
            response: Box::new(response),
            body: Vec::new(),
        };
        if !first_body.is_empty() {
            self.write(first_body.as_bytes())?;
        }
        Ok(())
    }

    /// Turns a gathered response into a streamed one.
    fn stream(&mut self) -> std::io::Result<&mut ResponseWriter> {
        if let Output::Gathering { .. } = self.output {
            // The listener answers a request whole: what is left of the
            // body is read now, for ReadClient after this.
            while self.buffered.len() < MAX_BUFFERED_BODY {
                match self.next_chunk() {
                    Some(chunk) => self.buffered.extend_from_slice(&chunk),
                    None => break,
                }
            }
            let Output::Gathering { response, body } =
                std::mem::replace(&mut self.output, Output::NotStarted)
            else {
                unreachable!("matched above");
            };
            let req = self
                .request
                .take()
                .ok_or_else(|| std::io::Error::other("the request is gone"))?;
            let mut writer = self
                .runtime
                .block_on(req.start_response(*response, None))
                .map_err(std::io::Error::other)?;
            self.runtime
                .block_on(writer.send(&body))
                .map_err(std::io::Error::other)?;
            self.output = Output::Streaming(writer);
        }
        match &mut self.output {
            Output::Streaming(writer) => Ok(writer),
            _ => Err(std::io::Error::other("no response to stream")),
        }
    }

    /// Ends the response: the extension's status decides an error answer
    /// when it sent nothing.
    fn finish(
        mut self,
        status: u32,
        http_status: u32,
    ) -> Option<Box<crate::filters::RequestFilters>> {
        self.send_last(status, http_status);
        if let Some(held) = self.held.take() {
            held.release(&self.late_log);
        }
        self.filters.take()
    }

    fn send_last(&mut self, status: u32, http_status: u32) {
        match std::mem::replace(&mut self.output, Output::NotStarted) {
            Output::Streaming(writer) => {
                let late = httpapi::proto::LateLog {
                    fields: None,
                    query_suffix: std::mem::take(&mut self.late_log),
                };
                let _ = self
                    .runtime
                    .block_on(writer.finish_with_log(Vec::new(), late));
            }
            Output::Gathering { response, body } => {
                if let Some(req) = self.request.take() {
                    let mut response = response.body(body);
                    // Cached only as asked, and never past filters (they
                    // see every request) or for a request that logged on.
                    if self.cacheable
                        && self.filters.is_none()
                        && response.status == 200
                        && req.method == "GET"
                        && self.vars.user.is_empty()
                    {
                        response = response.cache(httpapi::CachePolicy::UntilInvalidated);
                    }
                    let _ = self.runtime.block_on(req.respond(response));
                }
            }
            Output::NotStarted => {
                let Some(req) = self.request.take() else {
                    return;
                };
                let code = if status == isapi::ext::status::ERROR {
                    500
                } else {
                    u16::try_from(http_status)
                        .ok()
                        .filter(|s| (100..600).contains(s))
                        .unwrap_or(200)
                };
                let mut response = self.template.take().unwrap_or_else(|| Response::new(code));
                response.status = code;
                if let Some(filters) = self.filters.as_mut() {
                    let vars = &self.vars;
                    filters.on_response(&mut response, &|n| vars.get(n));
                }
                let _ = self.runtime.block_on(req.respond(response));
            }
        }
    }
}

/// `"404 Not Found"` → 404; anything unreadable → 200.
fn status_code(status: &str) -> u16 {
    status
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .unwrap_or(200)
}

impl Connection for Conn {
    fn cache_response(&mut self) {
        self.cacheable = true;
    }

    fn refused(&mut self, request: &'static str, why: &'static str) {
        // Once per module: a module asking on every request would flood
        // the log.
        let first = self
            .modules
            .explained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((self.module.clone(), request));
        if first {
            tracing::warn!(module = %self.module.display(), request, "refused: {why}");
        }
    }

    fn server_variable(&mut self, name: &str) -> Option<Vec<u8>> {
        self.vars.get(name)
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.buffered.is_empty() {
            if let Some(chunk) = self.next_chunk() {
                self.buffered.extend_from_slice(&chunk);
            }
        }
        let n = buf.len().min(self.buffered.len());
        buf[..n].copy_from_slice(&self.buffered[..n]);
        self.buffered.drain(..n);
        Ok(n)
    }

    fn send_headers(&mut self, status: &str, headers: &str, keep: bool) -> std::io::Result<()> {
        self.close |= !keep;
        self.head(status_code(status), headers)
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if matches!(self.output, Output::NotStarted) {
            self.head(200, "")?;
        }
        // SF_NOTIFY_SEND_RAW_DATA sees the body as it is written.
        let filtered;
        let data = match self.filters.as_mut() {
            Some(filters) => {
                filters.count_sent(data.len() as u64);
                if filters.wants_send_raw() {
                    let vars = &self.vars;
                    filtered = filters.send_raw(data.to_vec(), &|n| vars.get(n));
                    filtered.as_slice()
                } else {
                    data
                }
            }
            None => data,
        };
        if let Output::Gathering { body, .. } = &mut self.output {
            if !self.flush && body.len() + data.len() <= GATHER_LIMIT {
                body.extend_from_slice(data);
                return Ok(());
            }
        }
        let runtime = self.runtime.clone();
        let writer = self.stream()?;
        runtime
            .block_on(writer.send(data))
            .map_err(std::io::Error::other)
    }

    fn redirect(&mut self, url: &str) -> std::io::Result<()> {
        self.head(302, &format!("Location: {url}\r\n\r\n"))
    }

    fn keep_conn(&self) -> bool {
        !self.close && self.vars.keep_alive()
    }

    fn append_log(&mut self, text: &str) {
        // Into the log of the response still to be sent; once its head has
        // gone (it streams, or a child request answered), with its end.
        let target = match &mut self.output {
            Output::Gathering { response, .. } => Some(&mut **response),
            Output::NotStarted => self.template.as_mut(),
            Output::Streaming(_) => None,
        };
        match target {
            Some(response) => {
                let mut log = response.log.clone().unwrap_or_default();
                log.query_suffix.push_str(text);
                response.log = Some(log);
            }
            None => self.late_log.push_str(text),
        }
    }

    fn close_connection(&mut self) {
        self.close = true;
    }

    fn report_unhealthy(&mut self, reason: &str) {
        self.modules.report_unhealthy(&self.module, reason);
    }

    fn exec_url(&mut self, child: &ExecUrl) -> Result<(), Dword> {
        if !matches!(self.output, Output::NotStarted) {
            // The child answers in the parent's place: not after it began.
            return Err(error::INVALID_PARAMETER);
        }
        let mut req = self.request.take().ok_or(error::INVALID_PARAMETER)?;
        if let Some(entity) = &child.entity {
            // The child reads this body instead of the client's.
            req.replace_body(Bytes::from(entity.clone()));
        }
        let head = req.head_mut();
        if let Some(url) = &child.url {
            let (path, query) = url.split_once('?').unwrap_or((url, ""));
            match child_path(path) {
                Some(path) => head.url.path = path,
                None => {
                    self.request = Some(req);
                    return Err(error::INVALID_PARAMETER);
                }
            }
            head.url.query = query.to_string();
        }
        if let Some(method) = &child.method {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                self.request = Some(req);
                return Err(error::INVALID_PARAMETER);
            }
            head.method = method.clone();
        }
        if let Some(headers) = &child.headers {
            let mut block = httpapi::proto::HeaderBlock::new();
            for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
                if let Some((name, value)) = line.split_once(':') {
                    block.push(name.trim(), value.trim().as_bytes());
                }
            }
            head.headers = block;
        }
        let skip = (child.flags & isapi::ext::exec_url::IGNORE_CURRENT_INTERCEPTOR != 0)
            .then(|| self.module.clone());
        // The child answers; the response ends when this extension is
        // done, so what it appends to the log line still counts.
        self.held = Some(req.hold_end());
        // The template's fields go with the child's own answer.
        self.template = None;
        let status = self
            .runtime
            .block_on(self.pipeline.serve_child(req, skip.as_deref()));
        self.child_status = Some((status.0, status.1, status.2));
        Ok(())
    }

    fn exec_url_status(&self) -> Option<(u16, u16, Dword)> {
        self.child_status
    }

    fn map_url(&mut self, url: &str) -> Option<UrlMapping> {
        use crate::site::access;
        let path = child_path(url.split('?').next().unwrap_or(url))?;
        let config = self.pipeline.config.load();
        let cfg = config.url(self.vars.site_id, &path)?;
        let physical = cfg.physical.as_ref()?.display().to_string();
        let (vdir_url, vdir_path) = cfg.vdir.clone().unwrap_or_default();
        let url_flags = access::READ | access::WRITE | access::EXECUTE | access::SCRIPT;
        let ssl_flags = isapi::ext::url_flags::SSL
            | isapi::ext::url_flags::NEGO_CERT
            | isapi::ext::url_flags::REQUIRE_CERT
            | isapi::ext::url_flags::MAP_CERT
            | isapi::ext::url_flags::SSL128;
        Some(UrlMapping {
            path: physical,
            flags: (cfg.access & url_flags) | (cfg.access_ssl & ssl_flags),
            matching_path: vdir_path.trim_end_matches('/').len() as Dword,
            matching_url: vdir_url.len() as Dword,
        })
    }

    fn send_file(&mut self, file: std::fs::File, offset: u64, len: u64) -> std::io::Result<u64> {
        let size = file.metadata()?.len();
        if offset > size {
            return Err(std::io::Error::other("the offset is past the file's end"));
        }
        let len = if len == 0 {
            size - offset
        } else {
            len.min(size - offset)
        };
        if matches!(self.output, Output::NotStarted) {
            self.head(200, "")?;
        }
        if let Some(filters) = self.filters.as_mut() {
            filters.count_sent(len);
        }
        let runtime = self.runtime.clone();
        // The listener sends the bytes from the file itself.
        let writer = self.stream()?;
        runtime
            .block_on(writer.send_file(&file, offset, len))
            .map_err(std::io::Error::other)?;
        Ok(len)
    }

    fn client_certificate(&self) -> Option<Vec<u8>> {
        self.vars
            .head
            .tls
            .as_ref()?
            .client_certificate
            .as_ref()
            .map(|c| c.der.clone())
    }

    fn set_flush(&mut self, flush: bool) {
        self.flush = flush;
    }
}

/// A child request's URL path: decoded, dot segments resolved, never
/// above the root; `None` when it is not a local absolute path.
pub(crate) fn child_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).ok()?;
    if text.contains('\0') || text.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in text.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// The server variables of one request, made when asked from the
/// request's head, shared with it (the request itself is consumed by the
/// response).
pub(crate) struct Variables {
    pub(crate) head: Arc<httpapi::proto::RequestHead>,
    physical: Option<PathBuf>,
    site_id: u32,
    /// `None` before the URL is mapped (the site's root application).
    app: Option<Arc<crate::config::Application>>,
    user: String,
    auth_type: &'static str,
}

impl Variables {
    /// A request's variables before its URL is mapped (what a filter
    /// sees): no physical path or logon yet.
    pub(crate) fn unmapped(req: &Request, site_id: u32) -> Variables {
        Variables {
            head: req.shared_head(),
            physical: None,
            site_id,
            app: None,
            user: String::new(),
            auth_type: "",
        }
    }

    fn of(req: &Request, call: &Call) -> Variables {
        Variables {
            head: req.shared_head(),
            physical: call.physical.clone(),
            site_id: call.site_id,
            app: Some(call.app.clone()),
            user: call.user.clone(),
            auth_type: call.auth_type,
        }
    }

    fn keep_alive(&self) -> bool {
        let connection = self.head.headers.get("connection");
        let says = |word: &str| {
            connection.is_some_and(|c| String::from_utf8_lossy(c).trim().eq_ignore_ascii_case(word))
        };
        match self.head.version {
            HttpVersion::Http11 => !says("close"),
            HttpVersion::Http10 => says("keep-alive"),
        }
    }

    /// A variable by IIS's name; `None` for names IIS would not know.
    pub(crate) fn get(&self, name: &str) -> Option<Vec<u8>> {
        // Names are most often asked for in capitals already.
        let upper: std::borrow::Cow<str> = if name.bytes().any(|b| b.is_ascii_lowercase()) {
            name.to_ascii_uppercase().into()
        } else {
            name.into()
        };
        if let Some(rest) = upper.strip_prefix("UNICODE_") {
            // IIS gives the UNICODE_ forms as UTF-16LE.
            let value = self.get(rest)?;
            let text = String::from_utf8_lossy(&value);
            return Some(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
        }
        let head = &self.head;
        let url = &head.url;
        let tls = head.tls.as_ref();
        let cert = tls.and_then(|t| t.client_certificate.as_ref());
        let physical = || {
            self.physical
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let header = |n: &str| {
            head.headers
                .get(n)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let text = match &*upper {
            "REQUEST_METHOD" => head.method.clone(),
            "QUERY_STRING" => url.query.clone(),
            "URL" | "SCRIPT_NAME" | "PATH_INFO" => url.path.clone(),
            "PATH_TRANSLATED" => physical(),
            "SERVER_NAME" => url.host.clone(),
            "SERVER_PORT" => url.port.to_string(),
            "SERVER_PORT_SECURE" => if tls.is_some() { "1" } else { "0" }.into(),
            "SERVER_PROTOCOL" => match head.version {
                HttpVersion::Http10 => "HTTP/1.0",
                HttpVersion::Http11 => "HTTP/1.1",
            }
            .into(),
            "SERVER_SOFTWARE" => "Microsoft-IIS/6.0".into(),
            "GATEWAY_INTERFACE" => "CGI/1.1".into(),
            "REMOTE_ADDR" | "REMOTE_HOST" => IpText::new().format(head.remote.ip()).to_string(),
            "REMOTE_PORT" => head.remote.port().to_string(),
            "LOCAL_ADDR" => IpText::new().format(head.local.ip()).to_string(),
            "CONTENT_LENGTH" => match head.body {
                BodyInfo::Length(n) => n.to_string(),
                _ => "0".into(),
            },
            "CONTENT_TYPE" => header("content-type").unwrap_or_default(),
            "INSTANCE_ID" => self.site_id.to_string(),
            "INSTANCE_META_PATH" => format!("/LM/W3SVC/{}", self.site_id),
            "APPL_MD_PATH" => match &self.app {
                Some(app) => app.md_path.clone(),
                None => format!("/LM/W3SVC/{}/ROOT", self.site_id),
            },
            "APPL_PHYSICAL_PATH" => self
                .app
                .as_ref()
                .and_then(|app| app.physical_path.clone())
                .unwrap_or_default(),
            "AUTH_TYPE" => self.auth_type.into(),
            "LOGON_USER" | "AUTH_USER" | "REMOTE_USER" => self.user.clone(),
            "HTTPS" => if tls.is_some() { "on" } else { "off" }.into(),
            "HTTPS_KEYSIZE" | "HTTPS_SECRETKEYSIZE" => {
                tls.map(|t| t.key_size.to_string()).unwrap_or_default()
            }
            "HTTPS_SERVER_SUBJECT" => tls.map(|t| t.server_subject.clone()).unwrap_or_default(),
            "HTTPS_SERVER_ISSUER" => tls.map(|t| t.server_issuer.clone()).unwrap_or_default(),
            "CERT_FLAGS" => if cert.is_some() { "1" } else { "0" }.into(),
            "CERT_SUBJECT" => cert.map(|c| c.subject.clone()).unwrap_or_default(),
            "CERT_ISSUER" => cert.map(|c| c.issuer.clone()).unwrap_or_default(),
            "CERT_SERIALNUMBER" => cert.map(|c| c.serial.clone()).unwrap_or_default(),
            "ALL_HTTP" => {
                return Some(
                    head.headers
                        .iter()
                        .flat_map(|(n, v)| {
                            let mut line =
                                format!("HTTP_{}:", n.to_ascii_uppercase().replace('-', "_"))
                                    .into_bytes();
                            line.extend_from_slice(v);
                            line.push(b'\n');
                            line
                        })
                        .collect(),
                )
            }
            "ALL_RAW" => {
                return Some(
                    head.headers
                        .iter()
                        .flat_map(|(n, v)| {
                            let mut line = format!("{n}: ").into_bytes();
                            line.extend_from_slice(v);
                            line.extend_from_slice(b"\r\n");
                            line
                        })
                        .collect(),
                )
            }
            _ => {
                // HTTP_ACCEPT_LANGUAGE is Accept-Language; HEADER_ takes
                // the name as sent.
                let wanted = if let Some(h) = upper.strip_prefix("HTTP_") {
                    h.replace('_', "-")
                } else if let Some(h) = name.get(7..).filter(|_| upper.starts_with("HEADER_")) {
                    h.to_string()
                } else {
                    return None;
                };
                return head.headers.get(&wanted).map(<[u8]>::to_vec);
            }
        };
        Some(text.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restriction_list_decides_by_path_then_unknown_extensions() {
        let list = |entries: &[&str]| {
            Restrictions::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        let none = list(&[]);
        assert!(!none.allows_extension("/opt/app/hello.so"));
        let locked = list(&["0,*.dll", "0,*.exe", "1,/opt/app/hello.so,0,HELLO,Hello"]);
        assert!(locked.allows_extension("/opt/app/hello.so"));
        assert!(!locked.allows_extension("/opt/app/other.so"));
        assert!(
            !locked.allows_extension("/OPT/APP/HELLO.SO"),
            "paths are case-sensitive"
        );
        let open = list(&["1,*.dll", "0,/opt/app/bad.so"]);
        assert!(open.allows_extension("/opt/app/other.so"));
        assert!(!open.allows_extension("/opt/app/bad.so"));
    }

    #[test]
    fn child_urls_are_decoded_and_stay_beneath_the_root() {
        assert_eq!(child_path("/a/b%20c.htm").as_deref(), Some("/a/b c.htm"));
        assert_eq!(child_path("/a/./b/../c").as_deref(), Some("/a/c"));
        assert_eq!(child_path("/a/"), Some("/a/".into()));
        assert_eq!(child_path("/../etc/passwd"), None);
        assert_eq!(child_path("relative"), None);
        assert_eq!(child_path("/a%2"), None);
        assert_eq!(child_path("/a%00b"), None);
        assert_eq!(child_path("/a%5cb"), None);
    }

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(status_code("404 Not Found"), 404);
        assert_eq!(status_code("302"), 302);
        assert_eq!(status_code("OK"), 200);
        assert_eq!(status_code("999 Nope"), 200);
    }
}
