//! The static-content handler: GET and HEAD (files, ranges, default
//! documents, listings, compression), PUT and DELETE.

use super::*;

/// Files and directories: what answers when no extension is mapped.
pub(super) struct StaticFiles;

impl RequestHandler for StaticFiles {
    async fn handle(self, pipeline: &Pipeline, x: &mut Exchange) -> Result<Reply, HttpError> {
        let ctx = x.ctx.as_ref().expect("the request is authenticated");
        let cfg = &ctx.cfg;
        dynamic_content(cfg, &x.req, file_name(&x.req), ctx.skip.as_deref())?;
        match x.req.method.as_str() {
            "GET" | "HEAD" => pipeline.get(&x.config, ctx, &x.req).await,
            "PUT" => Box::pin(pipeline.put(&x.config, ctx, &mut x.req)).await,
            "DELETE" => Box::pin(pipeline.delete(&x.config, ctx, &x.req)).await,
            "OPTIONS" => Ok(Reply::new(200)
                .header("Allow", allowed_methods(cfg))
                .header("Public", allowed_methods(cfg))),
            "POST" => Err(HttpError::new(405, 0)),
            _ => Err(HttpError::new(501, 0)),
        }
    }
}

impl Pipeline {
    /// GET and HEAD: a file, a directory's default document or listing.
    pub(super) async fn get(
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
    pub(super) fn file(
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
    pub(super) fn compress_later(
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
    pub(super) fn source(
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
    pub(super) async fn put(
        &self,
        config: &Config,
        ctx: &Ctx,
        req: &mut Request,
    ) -> Result<Reply, HttpError> {
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
        config.meta.forget(&physical);
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
    pub(super) async fn delete(
        &self,
        config: &Config,
        ctx: &Ctx,
        req: &Request,
    ) -> Result<Reply, HttpError> {
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
        config.meta.forget(physical);
        self.flush_url(req).await;
        Ok(Reply::new(204))
    }

    /// Drops the listener's cached copy of the request's URL.
    pub(super) async fn flush_url(&self, req: &Request) {
        if let Some(prefix) =
            crate::watch::flush_prefix(&req.url.scheme, req.url.port, &req.url.path)
        {
            let _ = self.control.flush_cache(&prefix).await;
        }
    }
}

/// Sends a large file: its open descriptor goes to the listener, which
/// sends the bytes with sendfile(2) (HTTP.SYS's TransmitFile role); the
/// bytes never pass through this process.
pub(super) async fn stream_file(
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
pub(super) fn memory_parts(data: &Bytes, parts: &[Part]) -> Option<Bytes> {
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
pub(super) fn read_parts(file: &std::fs::File, parts: &[Part]) -> Option<Vec<u8>> {
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

pub(super) fn allowed_methods(cfg: &UrlConfig) -> String {
    if cfg.access & access::WRITE != 0 {
        "OPTIONS, TRACE, GET, HEAD, PUT, DELETE".into()
    } else {
        "OPTIONS, TRACE, GET, HEAD".into()
    }
}

pub(super) fn moved(status: u16, location: &str) -> Reply {
    let escaped = listing::html_escape(location);
    Reply::new(status).header("Location", location).html(format!(
        "<head><title>Object moved</title></head><body><h1>Object Moved</h1>This object may be found <a HREF=\"{escaped}\">here</a>.</body>"
    ))
}

/// The path part of a redirect destination (absolute URL or path).
pub(super) fn target_path(destination: &str) -> String {
    let d = destination.split(['$', '?']).next().unwrap_or("");
    if let Some(rest) = d.split_once("://").map(|(_, r)| r) {
        rest.find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_else(|| "/".into())
    } else {
        d.to_string()
    }
}
