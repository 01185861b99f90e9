//! Phase 7, send the response: an error as the site wants it shown
//! (hooks first see a 401 or 403: filters' ACCESS_DENIED; then
//! HttpErrors), custom headers, filters' SEND_RESPONSE and LOG, and the
//! response sent to the listener with the log fields it writes (phase 8,
//! log).

use super::*;

impl Pipeline {
    /// The reply the phases came to: the handler's or a hook's answer, or
    /// an error page.
    pub(super) fn reply_for(&self, x: &mut Exchange, step: Step) -> Reply {
        let (error, challenge) = match step {
            Step::Answer(reply) => return reply,
            Step::Refuse(error, challenge) => (error, challenge),
            Step::Next => (HttpError::new(500, 0), false),
        };
        if matches!(error.status, 401 | 403) && x.filters.is_some() {
            // A hook may answer a denial itself.
            let physical = x
                .cfg
                .as_ref()
                .and_then(|c| c.physical.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let reason = if error.status == 401 {
                isapi::filt::denied::LOGON
            } else {
                isapi::filt::denied::RESOURCE
            };
            let site = x.site;
            let (hooks, req) = x.hooks_and_request();
            if !hooks.access_denied(req, site, &physical, reason) {
                return x.hooks().answer();
            }
        }
        self.error_reply(&x.config, x.cfg.as_deref(), &x.req, error, challenge)
    }

    /// An error as the site wants it shown: HttpErrors' file or URL, or
    /// the built-in page.
    pub(super) fn error_reply(
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

    /// Sends the reply: custom headers, filters' SEND_RESPONSE, the body
    /// (or the extension that makes it), then filters' LOG with the
    /// response's sizes and time, which the log line waits for.
    pub(super) async fn send(
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
        let (mut response, body, cache) = response_of(reply, cfg);
        match filters {
            None => {
                if cache {
                    response = response.cache(CachePolicy::UntilInvalidated);
                }
                self.deliver(req, response, body, is_head, None).await;
            }
            // Boxed: the filters' path holds a second delivery and their
            // state, which the common path's future need not carry.
            Some(filters) => {
                Box::pin(self.send_filtered(req, response, body, is_head, filters)).await;
            }
        }
    }

    /// [`Pipeline::send`] for a request with filters.
    async fn send_filtered(
        self: &Arc<Self>,
        mut req: Request,
        mut response: Response,
        mut body: Body,
        is_head: bool,
        (request, vars): (
            &mut crate::filters::RequestFilters,
            &crate::isapi::Variables,
        ),
    ) {
        // The listener's cache answers without the worker, so without
        // filters: a filtered site's answers are not cached (as HTTP.SYS's
        // cache is off for sites with filters in IIS 6).
        if !matches!(body, Body::Extension(_) | Body::Cgi(_) | Body::FastCgi(_)) {
            // An extension's (or a program's) answer is filtered when it
            // makes it.
            request.on_response(&mut response, &|n| vars.get(n));
            request.count_sent(if is_head { 0 } else { body.len() });
            if request.wants_send_raw() {
                // SF_NOTIFY_SEND_RAW_DATA: the head as text, then the body.
                request.send_raw_head(&mut response, &|n| vars.get(n));
                body = raw_filtered(body, is_head, request, vars);
            }
        }
        // SF_NOTIFY_LOG comes once the response is sent: its end waits.
        let held = request.wants_log().then(|| req.hold_end());
        self.deliver(req, response, body, is_head, Some((&mut *request, vars)))
            .await;
        if let Some(held) = held {
            match request.log_at_end(&vars.head, &|n| vars.get(n)) {
                Some(late) => held.release_with_log(late),
                None => held.release(""),
            }
        }
    }

    /// Sends the response with its body, or runs the extension that
    /// answers (with the request's filters, given back after it).
    async fn deliver(
        self: &Arc<Self>,
        req: Request,
        response: Response,
        body: Body,
        is_head: bool,
        filters: Option<(
            &mut crate::filters::RequestFilters,
            &crate::isapi::Variables,
        )>,
    ) {
        let total = body.len();
        match body {
            Body::Empty => {
                let _ = req.respond(response).await;
            }
            Body::Extension(call) => {
                let mut filters = filters;
                // Boxed for the call: most requests have none, and the
                // call's state is moved to the pool's thread and back.
                let taken = filters
                    .as_mut()
                    .map(|(request, _)| Box::new(std::mem::take(&mut **request)));
                let back = crate::isapi::run(self.clone(), *call, req, response, taken).await;
                if let (Some((request, _)), Some(back)) = (filters, back) {
                    *request = *back;
                }
            }
            // Boxed, as the streamed files below: a program's exchange
            // holds kilobytes of state that every other request's future
            // would otherwise carry (and copy) too.
            Body::Cgi(call) => {
                Box::pin(crate::cgi::run(self.clone(), call, req, response, filters)).await;
            }
            Body::FastCgi(call) => {
                Box::pin(crate::fastcgi::run(
                    self.clone(),
                    call,
                    req,
                    response,
                    filters,
                ))
                .await;
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
                match filters {
                    // A large file a SEND_RAW_DATA filter sees, piece by
                    // piece (its length may change: chunked).
                    Some((request, vars)) if request.wants_send_raw() => {
                        Box::pin(stream_filtered(req, response, file, parts, request, vars)).await
                    }
                    // Boxed: the common (small) path keeps a small future.
                    _ => Box::pin(stream_file(req, response, file, parts, total)).await,
                }
            }
        }
    }
}

/// A body as SEND_RAW_DATA filters leave it: in memory, filtered whole
/// (a large open file is filtered as it streams, in `deliver`).
fn raw_filtered(
    body: Body,
    is_head: bool,
    request: &mut crate::filters::RequestFilters,
    vars: &crate::isapi::Variables,
) -> Body {
    if is_head {
        return body;
    }
    let total = body.len();
    let bytes = match body {
        Body::Bytes(bytes) => bytes,
        Body::File {
            source: Source::Memory(data),
            parts,
        } => match memory_parts(&data, &parts) {
            Some(bytes) => bytes,
            None => {
                return Body::File {
                    source: Source::Memory(data),
                    parts,
                }
            }
        },
        Body::File {
            source: Source::Open(file),
            parts,
        } if total <= SMALL_FILE => match read_parts(&file, &parts) {
            Some(bytes) => Bytes::from(bytes),
            None => {
                return Body::File {
                    source: Source::Open(file),
                    parts,
                }
            }
        },
        other => return other,
    };
    Body::Bytes(Bytes::from(
        request.send_raw(bytes.to_vec(), &|n| vars.get(n)),
    ))
}

/// Streams parts of a file through SEND_RAW_DATA filters.
async fn stream_filtered(
    req: Request,
    response: Response,
    file: std::fs::File,
    parts: Vec<Part>,
    request: &mut crate::filters::RequestFilters,
    vars: &crate::isapi::Variables,
) {
    use std::os::unix::fs::FileExt;
    let Ok(mut writer) = req.start_response(response, None).await else {
        return;
    };
    let mut piece = vec![0u8; 64 * 1024];
    for part in parts {
        match part {
            Part::Literal(bytes) => {
                let out = request.send_raw(bytes.to_vec(), &|n| vars.get(n));
                if writer.send(&out).await.is_err() {
                    return;
                }
            }
            Part::Range { offset, len } => {
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(piece.len() as u64) as usize;
                    if file.read_exact_at(&mut piece[..n], offset + done).is_err() {
                        return;
                    }
                    done += n as u64;
                    let out = request.send_raw(piece[..n].to_vec(), &|n| vars.get(n));
                    if writer.send(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = writer.finish(Vec::new()).await;
}

pub(super) fn read_error_file(
    content: &Content,
    path: &Path,
    cfg: &UrlConfig,
) -> Option<(String, Bytes)> {
    let meta = content.metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_ERROR_FILE {
        return None;
    }
    let body = content.read(path).ok()?;
    let name = path.file_name()?.to_str()?;
    let content_type = cfg.mime_type(name).unwrap_or("text/html").to_string();
    Some((content_type, Bytes::from(body)))
}

pub(super) fn io_error(e: std::io::Error) -> HttpError {
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

/// The response a reply makes (HttpCustomHeaders first, then the
/// handler's; DontLog from the URL's settings), its body, and whether the
/// listener may keep it.
fn response_of(reply: Reply, cfg: Option<&UrlConfig>) -> (Response, Body, bool) {
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
    log.handler = match body {
        Body::Extension(_) | Body::FastCgi(_) => httpapi::proto::HANDLER_ISAPI,
        Body::Cgi(_) => httpapi::proto::HANDLER_CGI,
        _ => 0,
    };
    let mut response = Response::new(status).log(log);
    match cfg.map(|c| &c.custom_headers) {
        Some(custom) if !custom.is_empty() => {
            for (name, value) in custom {
                response.headers.push(name, value.as_bytes());
            }
            response.headers.append(&headers);
        }
        _ => response.headers = headers,
    }
    (response, body, cache)
}
