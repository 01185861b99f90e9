//! Phase 6, the handler: what answers the request once the phases before
//! have passed. HttpRedirect answers first where it is set; then an ISAPI
//! extension the URL maps to (`extension.rs`), a CGI program
//! (`cgi.rs`), else the static-content handler (`static_files.rs`),
//! which refuses script-mapped files nothing here can run.

use super::*;

/// What answers a request.
pub(super) trait RequestHandler {
    async fn handle(self, pipeline: &Pipeline, x: &mut Exchange) -> Result<Reply, HttpError>;
}

impl Pipeline {
    pub(super) async fn handle(&self, x: &mut Exchange) -> Step {
        let ctx = x.ctx.as_ref().expect("the request is authenticated");
        let cfg = ctx.cfg.clone();
        let answered = if let Some(reply) = redirect(&cfg, &x.req) {
            Ok(reply)
        } else if cfg.access & access::NO_PHYSICAL_DIR != 0 {
            // Such a directory exists only for a handler (a wildcard
            // script map); with none that can run, there is nothing here.
            Err(HttpError::new(404, 0).win32(3))
        } else {
            let name = file_name(&x.req);
            match self.extension_call(&x.config, &cfg, ctx, name, x.skip.as_deref()) {
                Some(Ok(call)) => ExtensionHandler(call).handle(self, x).await,
                Some(Err(e)) => Err(e),
                None => {
                    // The URL as a whole names a script only when its
                    // name is one a program handles (static files pay no
                    // more than that look).
                    let mapped = cfg.script_map(name, x.skip.as_deref()).is_some();
                    let whole = (mapped || is_program_name(name)).then(|| ScriptUrl {
                        cfg: cfg.clone(),
                        name: x.req.url.path.clone(),
                        path_info: String::new(),
                    });
                    let program = match whole.and_then(|w| self.gateway_call(x, &w, ctx)) {
                        Some(found) => Some(found),
                        None => self
                            .default_document_script(x, &cfg)
                            .or_else(|| self.split_script(x, &cfg))
                            .and_then(|script| self.gateway_call(x, &script, ctx)),
                    };
                    match program {
                        Some(Ok(gateway)) => gateway.handle(self, x).await,
                        Some(Err(e)) => Err(e),
                        None => StaticFiles.handle(self, x).await,
                    }
                }
            }
        };
        match answered {
            Ok(mut reply) => {
                // The log line names the user the request ran as.
                if let Some(ctx) = &x.ctx {
                    reply.log.user = ctx.user.clone();
                }
                Step::Answer(reply)
            }
            Err(e) => Step::Refuse(e, false),
        }
    }
}

/// The last segment of the request's path: what script maps match.
pub(super) fn file_name(req: &Request) -> &str {
    req.url.path.rsplit('/').next().unwrap_or("")
}

/// What IIS 6 does with a request for a script-mapped or executable file
/// (AccessFlags Script, Execute and Source): without the access its handler
/// needs, 403.1; with it, the handler would run — and no script engine,
/// CGI program or ISAPI extension is enabled in inetsrv, so the request is
/// refused as IIS 6's Web Service Extension lockdown refuses a prohibited
/// one (404.2, Win32 1260). Such files are never sent as their source,
/// except with Source access: a GET or HEAD with `Translate: f` (what
/// WebDAV clients send) and Read, or a PUT or DELETE with Write.
pub(super) fn dynamic_content(
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

/// HttpRedirect: `None` when the request is served here.
pub(super) fn redirect(cfg: &UrlConfig, req: &Request) -> Option<Reply> {
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
