//! Phase 4, authenticate: the client's address and SSL requirements
//! checked, then the logon (the user database for Basic, a client
//! certificate mapped to a user), with hooks seeing and replacing the
//! credentials first (filters' AUTHENTICATION).

use super::*;

impl Pipeline {
    pub(super) async fn authenticate(&self, x: &mut Exchange) -> Step {
        let site = x.site;
        let cfg = x.cfg.clone().expect("the URL is mapped");
        if !cfg.ip_allowed(&x.req.remote.ip()) {
            return Step::Refuse(HttpError::new(403, 6), false);
        }
        if let Some((status, sub)) = ssl_refusal(cfg.access_ssl, x.req.tls.as_ref()) {
            return Step::Refuse(HttpError::new(status, sub), false);
        }
        if x.filters.is_some() {
            let sent = header(&x.req, "authorization")
                .and_then(auth::parse_basic)
                .unwrap_or_default();
            let (mut user, mut password) = sent.clone();
            let (hooks, req) = x.hooks_and_request();
            if !hooks.authentication(req, site, &mut user, &mut password) {
                return Step::Answer(x.hooks().answer());
            }
            if (user.as_str(), password.as_str()) != (sent.0.as_str(), sent.1.as_str()) {
                use base64::Engine;
                let head = x.req.head_mut();
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
        match self.logon(&cfg, &x.req).await {
            Ok(mut ctx) => {
                ctx.skip = x.skip.clone();
                x.ctx = Some(ctx);
                Step::Next
            }
            Err(e) => Step::Refuse(e, true),
        }
    }

    async fn logon(&self, cfg: &Arc<UrlConfig>, req: &Request) -> Result<Ctx, HttpError> {
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
