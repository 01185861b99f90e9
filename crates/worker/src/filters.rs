//! ISAPI filters in the worker, as IIS 6's worker process isolation mode
//! runs them: the global filters (`/LM/W3SVC/Filters`, in FilterLoadOrder)
//! and each site's (`/LM/W3SVC/<id>/Filters`), loaded in every worker that
//! serves the site and notified in order of priority, then load order.
//! Notified: PREPROC_HEADERS, AUTHENTICATION, URL_MAP, ACCESS_DENIED,
//! AUTH_COMPLETE, SEND_RESPONSE, LOG and END_OF_REQUEST (END_OF_NET_SESSION
//! is not: connections belong to the listener).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use httpapi::proto::{HeaderBlock, RequestHead};
use isapi::filt;
use isapi::filter_host::{Filter, FilterConnection, FilterState, LogFields, Notification};
use isapi::types::Dword;
use metabase::{ids, MbPath, Snapshot, Value};

/// The filters a site's requests pass through, in notification order, or
/// why they cannot be (a filter that does not load: the site answers 500,
/// as IIS's worker cannot serve a site whose filters failed).
#[derive(Clone, Default)]
pub struct SiteFilters {
    pub chain: Vec<Arc<Filter>>,
    pub broken: Option<String>,
    /// Per filter of the chain: its raw data passes through it in the
    /// listener's channel (a global filter in IIS 5 isolation mode), so
    /// requests do not give it SEND_RAW_DATA or END_OF_NET_SESSION again.
    pub raw_by_listener: Vec<bool>,
}

/// Loaded filters by path, kept across configurations.
#[derive(Default)]
pub struct FilterModules {
    loaded: Mutex<HashMap<PathBuf, Arc<Filter>>>,
    /// IIS 5 isolation mode: the listener hands this worker every
    /// connection's raw data, so SF_NOTIFY_READ_RAW_DATA filters load.
    raw_data: std::sync::atomic::AtomicBool,
    /// To the activation service: FilterState and FilterFlags.
    reports: Mutex<Option<tokio::sync::mpsc::UnboundedSender<worker_control::FromWorker>>>,
}

/// MD_FILTER_STATE_LOADED and MD_FILTER_STATE_UNLOADED.
const FILTER_STATE_LOADED: u32 = 1;
const FILTER_STATE_UNLOADED: u32 = 4;

/// `FilterLoadOrder` and the IIsFilter keys of one Filters key: enabled
/// filters' names, paths and keys, in load order.
fn listed(snapshot: &Snapshot, filters: &MbPath) -> Vec<(String, PathBuf, MbPath)> {
    let Some(key) = snapshot.find(filters) else {
        return Vec::new();
    };
    let order = match key.property(ids::FILTER_LOAD_ORDER).map(|p| &p.value) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    order
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .filter_map(|name| {
            let child = filters.join(name).ok()?;
            let filter = snapshot.find(&child)?;
            let enabled = !matches!(
                filter.property(ids::FILTER_ENABLED).map(|p| &p.value),
                Some(Value::Dword(0))
            );
            let path = filter
                .property(ids::FILTER_PATH)?
                .value
                .as_str()?
                .to_string();
            enabled.then(|| (name.to_string(), PathBuf::from(path), child.clone()))
        })
        .collect()
}

impl FilterModules {
    /// Lets SF_NOTIFY_READ_RAW_DATA filters load (IIS 5 isolation mode).
    pub fn allow_raw_data(&self) {
        self.raw_data
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The global filters (`/LM/W3SVC/Filters`), highest priority first:
    /// the chain that sees connections' raw data, before any request
    /// names its site.
    pub fn global(&self, snapshot: &Snapshot, load_as: &dyn Fn(&Path) -> PathBuf) -> SiteFilters {
        let mut filters = SiteFilters::default();
        let listed = MbPath::parse("/LM/W3SVC/Filters")
            .map(|p| listed(snapshot, &p))
            .unwrap_or_default();
        for (name, path, _) in listed {
            if name.eq_ignore_ascii_case("Compression") {
                continue;
            }
            if let Ok(f) = self.get(&path, load_as) {
                filters.chain.push(f);
            }
        }
        filters
            .chain
            .sort_by_key(|f| std::cmp::Reverse(f.priority()));
        filters
    }

    /// Where filters' states are reported.
    pub fn set_reports(&self, to: tokio::sync::mpsc::UnboundedSender<worker_control::FromWorker>) {
        *self.reports.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }

    fn report(&self, key: &MbPath, state: u32, flags: u32) {
        if let Some(to) = self
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = to.send(worker_control::FromWorker::FilterReport {
                key: key.to_string(),
                state,
                flags,
            });
        }
    }

    fn get(&self, path: &Path, load_as: &dyn Fn(&Path) -> PathBuf) -> Result<Arc<Filter>, String> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = loaded.get(path) {
            return Ok(found.clone());
        }
        let raw_data = self.raw_data.load(std::sync::atomic::Ordering::Relaxed);
        let filter =
            Arc::new(Filter::load_from(path, &load_as(path), raw_data).map_err(|e| e.to_string())?);
        tracing::info!(filter = %path.display(), description = filter.description(), flags = filter.flags(), "ISAPI filter loaded");
        loaded.insert(path.to_path_buf(), filter.clone());
        Ok(filter)
    }

    /// The filters of each site the configuration serves, each module
    /// loaded from what `load_as` gives for its path
    /// ([`crate::module_files::ModuleFiles::load_as`]).
    pub fn for_sites(
        &self,
        snapshot: &Snapshot,
        sites: &[u32],
        load_as: &dyn Fn(&Path) -> PathBuf,
    ) -> HashMap<u32, SiteFilters> {
        let global = MbPath::parse("/LM/W3SVC/Filters")
            .map(|p| listed(snapshot, &p))
            .unwrap_or_default();
        let mut out = HashMap::new();
        for &site in sites {
            let own = MbPath::parse(&format!("/LM/W3SVC/{site}/Filters"))
                .map(|p| listed(snapshot, &p))
                .unwrap_or_default();
            let mut filters = SiteFilters::default();
            for (name, path, key) in global.iter().chain(own.iter()) {
                // Compression is IIS's own filter entry, built into inetsrv.
                if name.eq_ignore_ascii_case("Compression") {
                    continue;
                }
                match self.get(path, load_as) {
                    Ok(f) => {
                        self.report(key, FILTER_STATE_LOADED, f.flags());
                        filters.chain.push(f)
                    }
                    Err(e) => {
                        self.report(key, FILTER_STATE_UNLOADED, 0);
                        tracing::error!(site, filter = %name, error = %e, "ISAPI filter not loaded: the site answers 500");
                        filters.broken = Some(e);
                    }
                }
            }
            // Highest priority first; ties keep the load order.
            filters
                .chain
                .sort_by_key(|f| std::cmp::Reverse(f.priority()));
            let iis5 = self.raw_data.load(std::sync::atomic::Ordering::Relaxed);
            filters.raw_by_listener = filters
                .chain
                .iter()
                .map(|f| iis5 && global.iter().any(|(_, path, _)| path == f.path()))
                .collect();
            out.insert(site, filters);
        }
        out
    }

    /// Unloads every filter (TerminateFilter).
    pub fn unload_all(&self) {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// What filters said about a request.
#[derive(Default)]
pub struct Outcome {
    /// A filter answered the request itself (SF_STATUS_REQ_FINISHED or
    /// an SF_REQ_SEND_RESPONSE_HEADER): status, headers, body.
    pub answer: Option<(u16, HeaderBlock, Vec<u8>)>,
    /// A filter failed the request (SF_STATUS_REQ_ERROR).
    pub error: bool,
    /// AddResponseHeaders and SF_REQ_ADD_HEADERS_ON_DENIAL lines.
    pub response_headers: HeaderBlock,
    pub denial_headers: HeaderBlock,
}

/// One request's filter state across its notifications (the default: no
/// filters).
#[derive(Default)]
pub struct RequestFilters {
    chain: Vec<Arc<Filter>>,
    states: Vec<FilterState>,
    disabled: Vec<Dword>,
    secure: bool,
    conn_id: Dword,
    /// AllocMem's blocks, freed with the request.
    memory: Vec<Box<[u8]>>,
    pub outcome: Outcome,
    /// For SF_NOTIFY_LOG: when the request came, the status and log
    /// fields of its response, and the bytes sent.
    started: Option<std::time::Instant>,
    answered: Option<(u16, Option<httpapi::proto::LogInfo>)>,
    bytes_sent: u64,
    /// SF_REQ_SET_NEXT_READ_SIZE's answer while raw data is read
    /// (`None`: not reading raw data).
    next_read: Option<Dword>,
    /// A raw-data filter answered SF_STATUS_REQ_READ_NEXT: the bytes it
    /// saw wait for the next piece.
    read_next: bool,
    held_raw: Vec<u8>,
}

fn parse_lines(lines: &str, into: &mut HeaderBlock) {
    for line in lines.split("\r\n").filter(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            into.push(name.trim(), value.trim().as_bytes());
        }
    }
}

/// A response head as text (`HTTP/1.1 200 OK`, fields, blank line):
/// its status, reason and fields.
fn parse_head(text: &[u8]) -> Option<(u16, String, HeaderBlock)> {
    let text = std::str::from_utf8(text).ok()?;
    let head = text.strip_suffix("\r\n\r\n").unwrap_or(text);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = parts
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = HeaderBlock::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        headers.push(name.trim(), value.trim().as_bytes());
    }
    Some((status, reason, headers))
}

/// `"403 Forbidden"` → 403.
fn status_of(status: &str) -> u16 {
    status
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .unwrap_or(200)
}

/// The header set a notification works on.
enum Headers<'a> {
    Request(&'a mut RequestHead),
    Response(&'a mut HeaderBlock),
    None,
}

struct Conn<'h, 'r> {
    headers: Headers<'h>,
    variables: &'r dyn Fn(&str) -> Option<Vec<u8>>,
    request: &'r mut RequestFilters,
    index: usize,
}

impl FilterConnection for Conn<'_, '_> {
    fn server_variable(&mut self, name: &str) -> Option<Vec<u8>> {
        (self.variables)(name)
    }

    fn header(&self, name: &str) -> Option<Vec<u8>> {
        match &self.headers {
            Headers::Request(head) => match name.to_ascii_lowercase().as_str() {
                "method" => Some(head.method.clone().into_bytes()),
                "url" => Some(head.raw_url.clone()),
                "version" => Some(
                    match head.version {
                        httpapi::proto::HttpVersion::Http10 => "HTTP/1.0",
                        httpapi::proto::HttpVersion::Http11 => "HTTP/1.1",
                    }
                    .into(),
                ),
                _ => head.headers.get(name).map(<[u8]>::to_vec),
            },
            Headers::Response(block) => block.get(name).map(<[u8]>::to_vec),
            Headers::None => None,
        }
    }

    fn set_header(&mut self, name: &str, value: &str) -> bool {
        match &mut self.headers {
            Headers::Request(head) => match name.to_ascii_lowercase().as_str() {
                "method" => {
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphabetic()) {
                        return false;
                    }
                    head.method = value.to_string();
                    true
                }
                "url" => {
                    let (path, query) = value.split_once('?').unwrap_or((value, ""));
                    match crate::isapi::child_path(path) {
                        Some(path) => {
                            head.url.path = path;
                            head.url.query = query.to_string();
                            head.raw_url = value.as_bytes().to_vec();
                            true
                        }
                        None => false,
                    }
                }
                "version" => false,
                _ => {
                    replace(&mut head.headers, name, value);
                    true
                }
            },
            Headers::Response(block) => {
                replace(block, name, value);
                true
            }
            Headers::None => false,
        }
    }

    fn add_header(&mut self, name: &str, value: &str) -> bool {
        match &mut self.headers {
            Headers::Request(head) => head.headers.push(name, value.as_bytes()),
            Headers::Response(block) => block.push(name, value.as_bytes()),
            Headers::None => return false,
        }
        true
    }

    fn add_response_headers(&mut self, lines: &str) {
        parse_lines(lines, &mut self.request.outcome.response_headers);
    }

    fn write(&mut self, data: &[u8]) {
        let answer = self
            .request
            .outcome
            .answer
            .get_or_insert_with(|| (200, HeaderBlock::new(), Vec::new()));
        answer.2.extend_from_slice(data);
    }

    fn send_response_header(&mut self, status: &str, headers: &str) {
        let (head, body) = headers.split_once("\r\n\r\n").unwrap_or((headers, ""));
        let mut block = HeaderBlock::new();
        parse_lines(head, &mut block);
        let answer = self
            .request
            .outcome
            .answer
            .get_or_insert_with(|| (200, HeaderBlock::new(), Vec::new()));
        answer.0 = status_of(status);
        answer.1 = block;
        answer.2.extend_from_slice(body.as_bytes());
    }

    fn add_headers_on_denial(&mut self, lines: &str) {
        parse_lines(lines, &mut self.request.outcome.denial_headers);
    }

    fn disable_notifications(&mut self, flags: Dword) {
        self.request.disabled[self.index] |= flags;
    }

    fn alloc(&mut self, size: usize) -> *mut std::ffi::c_void {
        let mut block = vec![0u8; size.max(1)].into_boxed_slice();
        let p = block.as_mut_ptr().cast();
        self.request.memory.push(block);
        p
    }

    fn conn_id(&self) -> Dword {
        self.request.conn_id
    }

    fn set_next_read_size(&mut self, size: Dword) -> bool {
        match &mut self.request.next_read {
            Some(next) if size > 0 => {
                *next = size;
                true
            }
            _ => false,
        }
    }
}

/// Sets a header: every field of that name replaced by one (an empty
/// value removes them).
fn replace(block: &mut HeaderBlock, name: &str, value: &str) {
    block.retain(|n, _| !n.eq_ignore_ascii_case(name));
    if !value.is_empty() {
        block.push(name, value.as_bytes());
    }
}

/// A connection's filter state between its requests: each filter's
/// pFilterContext and the AllocMem memory last as long as the connection,
/// as in IIS, until SF_NOTIFY_END_OF_NET_SESSION.
pub struct ConnFilters {
    chain: Vec<Arc<Filter>>,
    states: Vec<FilterState>,
    memory: Vec<Box<[u8]>>,
    secure: bool,
    conn_id: Dword,
}

impl ConnFilters {
    /// SF_NOTIFY_END_OF_NET_SESSION: the connection closed. Its memory
    /// goes with it.
    pub fn end_of_net_session(self) {
        let mut filters = RequestFilters {
            disabled: vec![0; self.chain.len()],
            chain: self.chain,
            states: self.states,
            memory: self.memory,
            secure: self.secure,
            conn_id: self.conn_id,
            ..RequestFilters::default()
        };
        filters.run(&mut Payload::EndOfNetSession, Headers::None, &|_| None);
    }
}

impl RequestFilters {
    /// The filters of a request on connection `conn_id`, with what they
    /// kept from the connection's earlier requests (when the chain is the
    /// same).
    pub fn new(
        site: &SiteFilters,
        secure: bool,
        conn_id: u64,
        kept: Option<ConnFilters>,
    ) -> RequestFilters {
        let same_chain = |k: &ConnFilters| {
            k.chain.len() == site.chain.len()
                && k.chain
                    .iter()
                    .zip(&site.chain)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        };
        let (states, memory) = match kept.filter(same_chain) {
            Some(k) => (k.states, k.memory),
            None => (
                site.chain.iter().map(|_| FilterState::default()).collect(),
                Vec::new(),
            ),
        };
        let disabled = (0..site.chain.len())
            .map(|i| match site.raw_by_listener.get(i) {
                // The listener's channel gives it these.
                Some(true) => filt::notify::SEND_RAW_DATA | filt::notify::END_OF_NET_SESSION,
                _ => 0,
            })
            .collect();
        RequestFilters {
            states,
            disabled,
            chain: site.chain.clone(),
            secure,
            conn_id: conn_id as Dword,
            memory,
            outcome: Outcome::default(),
            started: Some(std::time::Instant::now()),
            answered: None,
            bytes_sent: 0,
            next_read: None,
            read_next: false,
            held_raw: Vec::new(),
        }
    }

    /// What lasts beyond the request, for the connection's next one.
    pub fn keep(self) -> ConnFilters {
        ConnFilters {
            chain: self.chain,
            states: self.states,
            memory: self.memory,
            secure: self.secure,
            conn_id: self.conn_id,
        }
    }

    /// Whether a filter of the chain asked for END_OF_NET_SESSION or
    /// keeps a context: the connection's state must be kept.
    pub fn keeps_state(&self) -> bool {
        !self.memory.is_empty()
            || self.states.iter().any(|s| s.context != 0)
            || self.wants(filt::notify::END_OF_NET_SESSION)
    }

    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// Runs a notification through the chain; false when a filter
    /// finished the request or failed it (the outcome says which).
    fn run(
        &mut self,
        payload: &mut Payload,
        mut headers: Headers<'_>,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> bool {
        let bit = payload.notification().bit();
        let secure = self.secure;
        for index in 0..self.chain.len() {
            let filter = self.chain[index].clone();
            if !filter.wants(bit, secure) || self.disabled[index] & bit != 0 {
                continue;
            }
            let mut state = std::mem::take(&mut self.states[index]);
            let mut conn = Conn {
                headers: std::mem::replace(&mut headers, Headers::None),
                variables,
                request: self,
                index,
            };
            let answer = filter.notify(&mut conn, &mut state, secure, payload.notification());
            headers = std::mem::replace(&mut conn.headers, Headers::None);
            self.states[index] = state;
            match answer {
                filt::status::REQ_FINISHED | filt::status::REQ_FINISHED_KEEP_CONN => {
                    self.outcome
                        .answer
                        .get_or_insert_with(|| (200, HeaderBlock::new(), Vec::new()));
                    return false;
                }
                filt::status::REQ_ERROR => {
                    self.outcome.error = true;
                    return false;
                }
                filt::status::REQ_HANDLED_NOTIFICATION => break,
                // Raw data only: the filter wants more bytes before it
                // (and those after it) can act; the piece is held and
                // given again with the next one.
                filt::status::REQ_READ_NEXT if self.next_read.is_some() => {
                    self.read_next = true;
                    break;
                }
                _ => {}
            }
        }
        true
    }

    /// SF_NOTIFY_PREPROC_HEADERS on the request's head (which filters may
    /// change: its headers, method and URL).
    pub fn preproc_headers(
        &mut self,
        head: &mut RequestHead,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> bool {
        self.run(
            &mut Payload::PreprocHeaders,
            Headers::Request(head),
            variables,
        )
    }

    /// SF_NOTIFY_AUTHENTICATION: the user name and password the request
    /// logs on with (empty for anonymous), which filters may replace.
    pub fn authentication(
        &mut self,
        user: &mut String,
        password: &mut String,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> bool {
        let mut payload = Payload::Authentication(std::mem::take(user), std::mem::take(password));
        let go_on = self.run(&mut payload, Headers::None, variables);
        if let Payload::Authentication(u, p) = payload {
            *user = u;
            *password = p;
        }
        go_on
    }

    /// SF_NOTIFY_URL_MAP: the physical path a URL maps to, which filters
    /// may replace.
    pub fn url_map(
        &mut self,
        url: &str,
        physical: &mut String,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> bool {
        let mut payload = Payload::UrlMap(url.to_string(), std::mem::take(physical));
        let go_on = self.run(&mut payload, Headers::None, variables);
        if let Payload::UrlMap(_, p) = payload {
            *physical = p;
        }
        go_on
    }

    /// SF_NOTIFY_AUTH_COMPLETE on the request's headers.
    pub fn auth_complete(
        &mut self,
        head: &mut RequestHead,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> bool {
        self.run(
            &mut Payload::AuthComplete,
            Headers::Request(head),
            variables,
        )
    }

    /// SF_NOTIFY_ACCESS_DENIED: a 401 or 403 about to be sent.
    pub fn access_denied(
        &mut self,
        url: &str,
        physical: &str,
        reason: Dword,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> bool {
        let mut payload = Payload::AccessDenied(url.to_string(), physical.to_string(), reason);
        self.run(&mut payload, Headers::None, variables)
    }

    /// SF_NOTIFY_SEND_RESPONSE on the response's status and headers.
    pub fn send_response(
        &mut self,
        status: &mut u16,
        headers: &mut HeaderBlock,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> bool {
        // Each filter sees the status the one before it left.
        let mut payload = Payload::SendResponse(*status);
        let go_on = self.run(&mut payload, Headers::Response(headers), variables);
        if let Payload::SendResponse(s) = payload {
            *status = s;
        }
        go_on
    }

    /// SF_NOTIFY_LOG: the fields of the request's log line.
    pub fn log(&mut self, fields: &mut LogFields, variables: &dyn Fn(&str) -> Option<Vec<u8>>) {
        let mut payload = Payload::Log(std::mem::take(fields));
        self.run(&mut payload, Headers::None, variables);
        if let Payload::Log(f) = payload {
            *fields = f;
        }
    }

    /// SF_NOTIFY_SEND_RESPONSE on a response about to be sent: its status
    /// and headers, then the headers filters added. Its head's size
    /// counts toward the bytes SF_NOTIFY_LOG reports.
    pub fn on_response(
        &mut self,
        response: &mut httpapi::Response,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) {
        if self.chain.is_empty() {
            return;
        }
        let mut status = response.status;
        self.send_response(&mut status, &mut response.headers, variables);
        response.status = status;
        response.headers.append(&self.outcome.response_headers);
        if status == 401 {
            response.headers.append(&self.outcome.denial_headers);
        }
        // "HTTP/1.1 200 OK\r\n", the fields, the blank line.
        let head_size = 17
            + response
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + 2;
        self.bytes_sent += head_size as u64;
        self.answered = Some((status, response.log.clone()));
    }

    /// Whether a filter of the chain asked for SF_NOTIFY_SEND_RAW_DATA.
    pub fn wants_send_raw(&self) -> bool {
        self.wants(filt::notify::SEND_RAW_DATA)
    }

    /// Whether a filter of the chain takes notification `bit` on this
    /// request (asked for it, on this kind of port, not disabled).
    fn wants(&self, bit: Dword) -> bool {
        self.chain
            .iter()
            .zip(&self.disabled)
            .any(|(f, off)| f.wants(bit, self.secure) && off & bit == 0)
    }

    /// SF_NOTIFY_SEND_RAW_DATA on bytes of the response's body: what
    /// goes out in their place (with what filters wrote first).
    pub fn send_raw(
        &mut self,
        data: Vec<u8>,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Vec<u8> {
        let (data, mut out, _) = self.raw_data(true, data, variables);
        if out.is_empty() {
            return data;
        }
        out.extend_from_slice(&data);
        out
    }

    /// SF_NOTIFY_SEND_RAW_DATA on the response's head, as the raw text it
    /// goes out as (status line and fields; the listener adds framing and
    /// connection fields); what filters leave is read back into the
    /// response. A head they broke is left as it was.
    pub fn send_raw_head(
        &mut self,
        response: &mut httpapi::Response,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) {
        let reason = response
            .reason
            .clone()
            .unwrap_or_else(|| httpapi::proto::reason_phrase(response.status).to_string());
        let mut text = format!("HTTP/1.1 {} {reason}\r\n", response.status).into_bytes();
        for (name, value) in response.headers.iter() {
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(b": ");
            text.extend_from_slice(value);
            text.extend_from_slice(b"\r\n");
        }
        text.extend_from_slice(b"\r\n");
        let out = self.send_raw(text, variables);
        let Some((status, reason, headers)) = parse_head(&out) else {
            return;
        };
        response.status = status;
        response.reason = Some(reason);
        response.headers = headers;
    }

    /// Body bytes sent, for SF_NOTIFY_LOG.
    pub fn count_sent(&mut self, bytes: u64) {
        self.bytes_sent += bytes;
    }

    /// Whether a filter of the chain asked for SF_NOTIFY_LOG.
    pub fn wants_log(&self) -> bool {
        self.wants(filt::notify::LOG)
    }

    /// SF_NOTIFY_LOG once the response is sent: the log line's fields,
    /// with the bytes sent and received and the time taken, which filters
    /// may rewrite; what changed, for the response's end.
    pub fn log_at_end(
        &mut self,
        head: &RequestHead,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Option<httpapi::proto::LateLog> {
        let (status, log) = self.answered.take()?;
        let mut log = log.unwrap_or_default();
        let received_head = head.method.len()
            + head.raw_url.len()
            + 12
            + head
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + 2;
        let received_body = match head.body {
            httpapi::proto::BodyInfo::Length(n) => n,
            _ => 0,
        };
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let mut fields = LogFields {
            client_host: head.remote.ip().to_string(),
            user: log.user.clone(),
            server: head.local.ip().to_string(),
            operation: head.method.clone(),
            target: head.url.path.clone(),
            parameters: format!("{}{}", head.url.query, log.query_suffix),
            status: u32::from(status),
            win32_status: log.win32_status,
            bytes_sent: clamp(self.bytes_sent),
            bytes_received: clamp(received_head as u64 + received_body),
            time_taken_ms: self
                .started
                .map_or(0, |t| clamp(t.elapsed().as_millis() as u64)),
        };
        let before = fields.clone();
        self.log(&mut fields, variables);
        if fields == before {
            return None;
        }
        log.user = fields.user;
        log.win32_status = fields.win32_status;
        if fields.target != before.target {
            log.stem = Some(fields.target);
        }
        if fields.parameters != before.parameters {
            // The filter's parameters are the whole logged query.
            log.query = Some(fields.parameters);
            log.query_suffix.clear();
        }
        Some(httpapi::proto::LateLog {
            fields: Some(log),
            query_suffix: String::new(),
        })
    }

    /// SF_NOTIFY_END_OF_REQUEST.
    pub fn end_of_request(&mut self, variables: &dyn Fn(&str) -> Option<Vec<u8>>) {
        self.run(&mut Payload::EndOfRequest, Headers::None, variables);
    }

    /// SF_NOTIFY_READ_RAW_DATA (or SEND_RAW_DATA, `outbound`) on a piece
    /// of a connection's bytes: what goes on in their place, what the
    /// filters wrote to the client (WriteClient), and whether a filter
    /// ended the connection (SF_STATUS_REQ_FINISHED or an error).
    pub fn raw_data(
        &mut self,
        outbound: bool,
        data: Vec<u8>,
        variables: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> (Vec<u8>, Vec<u8>, bool) {
        // Bytes held back by SF_STATUS_REQ_READ_NEXT come first.
        let data = if outbound || self.held_raw.is_empty() {
            data
        } else {
            let mut all = std::mem::take(&mut self.held_raw);
            all.extend_from_slice(&data);
            all
        };
        let mut payload = Payload::RawData(outbound, data);
        self.next_read = (!outbound).then_some(0);
        self.read_next = false;
        let go_on = self.run(&mut payload, Headers::None, variables);
        let to_client = self
            .outcome
            .answer
            .take()
            .map(|(_, _, body)| body)
            .unwrap_or_default();
        self.outcome.error = false;
        let data = match payload {
            Payload::RawData(_, data) => data,
            _ => Vec::new(),
        };
        if self.read_next && go_on {
            // Nothing goes on until the filter has what it needs.
            self.held_raw = data;
            return (Vec::new(), to_client, false);
        }
        (data, to_client, !go_on)
    }

    /// The size a filter asked the next read from the client to take
    /// (SF_REQ_SET_NEXT_READ_SIZE during READ_RAW_DATA); 0 for the
    /// listener's own.
    pub fn take_next_read(&mut self) -> Dword {
        self.next_read.take().unwrap_or(0)
    }

    /// SF_NOTIFY_END_OF_NET_SESSION: the connection closed.
    pub fn end_of_net_session(&mut self, variables: &dyn Fn(&str) -> Option<Vec<u8>>) {
        self.run(&mut Payload::EndOfNetSession, Headers::None, variables);
    }
}

/// A notification's data, owned while the chain runs.
enum Payload {
    PreprocHeaders,
    Authentication(String, String),
    UrlMap(String, String),
    AuthComplete,
    AccessDenied(String, String, Dword),
    SendResponse(u16),
    Log(LogFields),
    EndOfRequest,
    RawData(bool, Vec<u8>),
    EndOfNetSession,
}

impl Payload {
    fn notification(&mut self) -> Notification<'_> {
        match self {
            Payload::PreprocHeaders => Notification::PreprocHeaders,
            Payload::Authentication(user, password) => {
                Notification::Authentication { user, password }
            }
            Payload::UrlMap(url, physical) => Notification::UrlMap { url, physical },
            Payload::AuthComplete => Notification::AuthComplete,
            Payload::AccessDenied(url, physical, reason) => Notification::AccessDenied {
                url,
                physical,
                reason: *reason,
            },
            Payload::SendResponse(status) => Notification::SendResponse { status },
            Payload::Log(fields) => Notification::Log(fields),
            Payload::EndOfRequest => Notification::EndOfRequest,
            Payload::RawData(outbound, data) => Notification::RawData {
                outbound: *outbound,
                data,
            },
            Payload::EndOfNetSession => Notification::EndOfNetSession,
        }
    }
}
