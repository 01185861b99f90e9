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
use isapi::host::{Connection, Extension, RequestFacts};

/// How long a request an extension left pending may take to be finished.
const PENDING_LIMIT: Duration = Duration::from_secs(300);
/// The most request body kept in memory when an extension sends its
/// response before reading the body (the listener's request must be
/// answered whole, so the rest is read first).
const MAX_BUFFERED_BODY: usize = 64 << 20;

/// WebSvcExtRestrictionList: `allowed,path[,deletable,group,description]`
/// entries. An entry naming the module decides; otherwise `*.dll`
/// (IIS's "all unknown ISAPI extensions", which covers shared objects
/// here) does; with neither, the module may not run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restrictions {
    entries: Vec<(bool, String)>,
}

impl Restrictions {
    pub fn parse(list: &[String]) -> Restrictions {
        let entries = list
            .iter()
            .filter_map(|entry| {
                let mut fields = entry.split(',').map(str::trim);
                let allowed = fields.next()? == "1";
                let path = fields.next().filter(|p| !p.is_empty())?;
                Some((allowed, path.to_string()))
            })
            .collect();
        Restrictions { entries }
    }

    /// Whether the ISAPI module at `path` may run.
    pub fn allows_extension(&self, path: &str) -> bool {
        let named = self.entries.iter().find(|(_, p)| p == path);
        let unknown = || {
            self.entries
                .iter()
                .find(|(_, p)| p.eq_ignore_ascii_case("*.dll"))
        };
        named.or_else(unknown).is_some_and(|(allowed, _)| *allowed)
    }
}

/// Extensions loaded by this worker, by path (CacheISAPI: loaded once,
/// unloaded with the worker).
#[derive(Default)]
pub struct Modules {
    loaded: Mutex<HashMap<PathBuf, Arc<Extension>>>,
}

impl Modules {
    /// The extension at `path`, loaded on first use.
    pub fn get(&self, path: &Path) -> Result<Arc<Extension>, String> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = loaded.get(path) {
            return Ok(found.clone());
        }
        let extension = Arc::new(Extension::load(path).map_err(|e| e.to_string())?);
        tracing::info!(module = %path.display(), description = extension.description(), "ISAPI extension loaded");
        loaded.insert(path.to_path_buf(), extension.clone());
        Ok(extension)
    }
}

/// What the pipeline decided for a request an extension answers.
pub struct Call {
    pub module: PathBuf,
    /// The file the URL maps to (PATH_TRANSLATED).
    pub physical: Option<PathBuf>,
    pub site_id: u32,
    pub meta_path: String,
    pub user: String,
    pub auth_type: &'static str,
    pub read_ahead: usize,
}

/// Runs the extension for the request and sends its response. A module
/// that cannot be loaded answers 500 and is named in the service log.
pub async fn run(modules: Arc<Modules>, call: Call, req: Request, template: Response) {
    let runtime = tokio::runtime::Handle::current();
    let _ = tokio::task::spawn_blocking(move || {
        let extension = match modules.get(&call.module) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "ISAPI extension not loaded");
                let page = Response::new(500).header("Content-Type", "text/html").body(
                    "<html><body><h1>500 Internal Server Error</h1><p>The application for this URL could not be started.</p></body></html>",
                );
                let _ = runtime.block_on(req.respond(page));
                return;
            }
        };
        let vars = Variables::of(&req, &call);
        let mut conn = Conn {
            runtime: runtime.clone(),
            request: Some(req),
            writer: None,
            template: Some(template),
            buffered: Vec::new(),
            body_done: false,
            vars,
            close: false,
        };
        let facts = conn.facts(&call);
        let outcome = extension.call(&mut conn, &facts, PENDING_LIMIT);
        if outcome.abandoned {
            tracing::warn!(module = %call.module.display(), "an ISAPI extension left a request pending past the limit");
        }
        conn.finish(outcome.status, outcome.http_status);
    })
    .await;
}

/// One request's side of the host.
struct Conn {
    runtime: tokio::runtime::Handle,
    /// Until the response starts.
    request: Option<Request>,
    writer: Option<ResponseWriter>,
    /// The response's fixed part (custom headers, log fields).
    template: Option<Response>,
    /// Body bytes read but not yet given to the extension.
    buffered: Vec<u8>,
    body_done: bool,
    vars: Variables,
    close: bool,
}

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
                .map(|p| p.display().to_string())
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

    /// Starts the response with `status` and the extension's header lines.
    fn start(&mut self, status: u16, headers: &str) -> std::io::Result<()> {
        if self.writer.is_some() {
            return Err(std::io::Error::other("the response has started"));
        }
        // The listener answers a request whole: what is left of the body
        // is read now, for ReadClient after the head.
        while self.buffered.len() < MAX_BUFFERED_BODY {
            match self.next_chunk() {
                Some(chunk) => self.buffered.extend_from_slice(&chunk),
                None => break,
            }
        }
        let mut response = self.template.take().unwrap_or_else(|| Response::new(200));
        response.status = status;
        let mut length = None;
        let (head, first_body) = match headers.split_once("\r\n\r\n") {
            Some((head, rest)) => (head, rest),
            None => (headers, ""),
        };
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            } else if !name.eq_ignore_ascii_case("transfer-encoding")
                && !name.eq_ignore_ascii_case("connection")
            {
                response.headers.push(name, value.as_bytes());
            }
        }
        let req = self
            .request
            .take()
            .ok_or_else(|| std::io::Error::other("the request is gone"))?;
        let is_head = req.method == "HEAD";
        let length = if is_head { Some(0) } else { length };
        let writer = self
            .runtime
            .block_on(req.start_response(response, length))
            .map_err(std::io::Error::other)?;
        self.writer = Some(writer);
        if !first_body.is_empty() {
            self.write(first_body.as_bytes())?;
        }
        Ok(())
    }

    /// Ends the response: the extension's status decides an error answer
    /// when it sent nothing.
    fn finish(mut self, status: u32, http_status: u32) {
        if let Some(writer) = self.writer.take() {
            let _ = self.runtime.block_on(writer.finish(Vec::new()));
            return;
        }
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
        let _ = self.runtime.block_on(req.respond(response));
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
        self.start(status_code(status), headers)
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.writer.is_none() {
            self.start(200, "")?;
        }
        let writer = self.writer.as_mut().expect("started above");
        self.runtime
            .block_on(writer.send(data))
            .map_err(std::io::Error::other)
    }

    fn redirect(&mut self, url: &str) -> std::io::Result<()> {
        let headers = format!("Location: {url}\r\nContent-Length: 0\r\n\r\n");
        self.start(302, &headers)
    }

    fn keep_conn(&self) -> bool {
        !self.close && self.vars.keep_alive
    }

    fn append_log(&mut self, text: &str) {
        // Into the log of the response still to start; once it has
        // started, its log fields have gone to the listener.
        if let Some(template) = self.template.as_mut() {
            let mut log = template.log.clone().unwrap_or_default();
            log.query_suffix.push_str(text);
            template.log = Some(log);
        }
    }

    fn close_connection(&mut self) {
        self.close = true;
    }
}

/// The server variables of one request, computed before the extension
/// runs (the request itself is consumed by the response).
struct Variables {
    fixed: HashMap<&'static str, String>,
    /// The request's header fields in order, as sent.
    headers: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
}

impl Variables {
    fn of(req: &Request, call: &Call) -> Variables {
        let url = &req.url;
        let secure = req.tls.is_some();
        let mut fixed: HashMap<&'static str, String> = HashMap::new();
        let mut set = |name: &'static str, value: String| {
            fixed.insert(name, value);
        };
        set("REQUEST_METHOD", req.method.clone());
        set("QUERY_STRING", url.query.clone());
        set("URL", url.path.clone());
        set("SCRIPT_NAME", url.path.clone());
        set("PATH_INFO", url.path.clone());
        set(
            "PATH_TRANSLATED",
            call.physical
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        set("SERVER_NAME", url.host.clone());
        set("SERVER_PORT", url.port.to_string());
        set("SERVER_PORT_SECURE", if secure { "1" } else { "0" }.into());
        set(
            "SERVER_PROTOCOL",
            match req.version {
                HttpVersion::Http10 => "HTTP/1.0",
                HttpVersion::Http11 => "HTTP/1.1",
            }
            .into(),
        );
        set("SERVER_SOFTWARE", "Microsoft-IIS/6.0".into());
        set("GATEWAY_INTERFACE", "CGI/1.1".into());
        set("REMOTE_ADDR", req.remote.ip().to_string());
        set("REMOTE_HOST", req.remote.ip().to_string());
        set("REMOTE_PORT", req.remote.port().to_string());
        set("LOCAL_ADDR", req.local.ip().to_string());
        set(
            "CONTENT_LENGTH",
            match req.body {
                BodyInfo::Length(n) => n.to_string(),
                _ => "0".into(),
            },
        );
        set(
            "CONTENT_TYPE",
            req.header_str("content-type").unwrap_or_default().into(),
        );
        set("INSTANCE_ID", call.site_id.to_string());
        set("INSTANCE_META_PATH", format!("/LM/W3SVC/{}", call.site_id));
        set("APPL_MD_PATH", call.meta_path.clone());
        set(
            "APPL_PHYSICAL_PATH",
            call.physical
                .as_ref()
                .and_then(|p| p.parent())
                .map(|p| format!("{}/", p.display()))
                .unwrap_or_default(),
        );
        set("AUTH_TYPE", call.auth_type.into());
        set("LOGON_USER", call.user.clone());
        set("AUTH_USER", call.user.clone());
        set("REMOTE_USER", call.user.clone());
        set("HTTPS", if secure { "on" } else { "off" }.into());
        if let Some(tls) = &req.tls {
            set("HTTPS_KEYSIZE", tls.key_size.to_string());
            set("HTTPS_SECRETKEYSIZE", tls.key_size.to_string());
            set("HTTPS_SERVER_SUBJECT", tls.server_subject.clone());
            set("HTTPS_SERVER_ISSUER", tls.server_issuer.clone());
            match &tls.client_certificate {
                Some(cert) => {
                    set("CERT_FLAGS", "1".into());
                    set("CERT_SUBJECT", cert.subject.clone());
                    set("CERT_ISSUER", cert.issuer.clone());
                    set("CERT_SERIALNUMBER", cert.serial.clone());
                }
                None => set("CERT_FLAGS", "0".into()),
            }
        } else {
            set("CERT_FLAGS", "0".into());
        }
        let headers = req
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        let keep_alive = match req.version {
            HttpVersion::Http11 => !req
                .header_str("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            HttpVersion::Http10 => req
                .header_str("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")),
        };
        Variables {
            fixed,
            headers,
            keep_alive,
        }
    }

    /// A variable by IIS's name; `None` for names IIS would not know.
    fn get(&self, name: &str) -> Option<Vec<u8>> {
        let upper = name.to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("UNICODE_") {
            // IIS gives the UNICODE_ forms as UTF-16LE.
            let value = self.get(rest)?;
            let text = String::from_utf8_lossy(&value);
            return Some(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
        }
        if let Some(value) = self.fixed.get(upper.as_str()) {
            return Some(value.clone().into_bytes());
        }
        match upper.as_str() {
            "ALL_HTTP" => Some(
                self.headers
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
            ),
            "ALL_RAW" => Some(
                self.headers
                    .iter()
                    .flat_map(|(n, v)| {
                        let mut line = format!("{n}: ").into_bytes();
                        line.extend_from_slice(v);
                        line.extend_from_slice(b"\r\n");
                        line
                    })
                    .collect(),
            ),
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
                self.headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&wanted))
                    .map(|(_, v)| v.clone())
            }
        }
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
    fn status_lines_give_their_code() {
        assert_eq!(status_code("404 Not Found"), 404);
        assert_eq!(status_code("302"), 302);
        assert_eq!(status_code("OK"), 200);
        assert_eq!(status_code("999 Nope"), 200);
    }
}
