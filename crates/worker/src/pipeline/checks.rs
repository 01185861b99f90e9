//! The phases before a handler: the URL mapped (filters' URL_MAP), the
//! client's address and SSL checked, the logon (filters' AUTHENTICATION
//! and AUTH_COMPLETE), the entity size, HttpRedirect, and which handler
//! takes the request (a static file, or an ISAPI extension by script map).

use super::*;

impl Pipeline {
    pub(super) async fn process(
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
    pub(super) fn extension_call(
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
                let is_file = config.content.metadata(&module).is_ok_and(|m| m.is_file());
                if cfg.access & access::EXECUTE != 0 && !is_file {
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

    pub(super) async fn authenticate(
        &self,
        cfg: &Arc<UrlConfig>,
        req: &Request,
    ) -> Result<Ctx, HttpError> {
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
