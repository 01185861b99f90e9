//! The console's requests, taken from its request queue: the pages (a
//! logon form, then the console itself, its script and style built into
//! the binary), the JSON API they use ([`crate::api`]), and `/metrics`.
//! Who may ask: administrators of the user database, logged on with a
//! session ([`crate::session`]; every change carries its CSRF token) or,
//! for a scraper, with HTTP Basic over the TLS connection. What a wrong
//! password costs: five failures a minute from one address, then 429 for
//! the rest of the minute. Every answer carries a strict
//! Content-Security-Policy (only the console's own script and style),
//! HSTS, and no caching or framing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use httpapi::{Request, Response};

use crate::Sources;

/// Failed logons one address may make in [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The most addresses whose failures are remembered.
const MAX_TRACKED: usize = 4096;

/// The largest request body taken (a logon form, a property's values).
const MAX_BODY: usize = 64 * 1024;

const LOGIN_PAGE: &str = include_str!("../assets/login.html");
const CONSOLE_PAGE: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");
const ICON: &str = include_str!("../assets/icon.svg");

/// Headers on every answer.
const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (
        "Strict-Transport-Security",
        "max-age=31536000; includeSubDomains",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
];

struct Failures {
    count: u32,
    since: Instant,
}

/// The console's request handling.
pub struct Service {
    address: SocketAddr,
    /// A binding of /metrics alone (plain http, no logon): what
    /// `--metrics ADDR:PORT` opens for a Prometheus without TLS.
    metrics_only: bool,
    sources: Sources,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    sessions: crate::session::Sessions,
}

/// Who asked, once their credentials were checked.
enum Caller {
    Admin(String),
    /// No credentials, or wrong ones: 401.
    Unknown,
    /// Right credentials, not an administrator: 403.
    NotAdmin(String),
    /// Too many failures from the address: 429.
    Limited,
}

impl Service {
    pub fn new(address: SocketAddr, sources: Sources, metrics_only: bool) -> Arc<Service> {
        Arc::new(Service {
            address,
            metrics_only,
            sources,
            failures: Mutex::new(HashMap::new()),
            sessions: crate::session::Sessions::default(),
        })
    }

    /// Takes requests until the queue closes, each on a task of its own.
    pub async fn run(self: Arc<Self>, session: httpapi::Session, mut queue: httpapi::Queue) {
        // The session carries the queue: it lives as long as the loop.
        let _session = session;
        loop {
            match queue.receive().await {
                Ok(request) => {
                    let service = self.clone();
                    tokio::spawn(async move { service.handle(request).await });
                }
                Err(e) => {
                    tracing::warn!("management console: its request queue closed: {e}");
                    return;
                }
            }
        }
    }

    async fn handle(&self, mut request: Request) {
        let body = if request.method == "POST" {
            match request.read_body(MAX_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    let _ = request
                        .respond(text(413, "The request body is too large\n"))
                        .await;
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let mut response = self.answer(&request, &body).await;
        for (name, value) in SECURITY_HEADERS {
            response = response.header(name, value);
        }
        if let Err(e) = request.respond(response).await {
            tracing::debug!("management console: a response was not sent: {e}");
        }
    }

    async fn answer(&self, request: &Request, body: &[u8]) -> Response {
        // The router matches the prefix's host against the Host header;
        // the console answers only on the address it was given.
        if !self.address.ip().is_unspecified() && request.local.ip() != self.address.ip() {
            return text(404, "Not Found\n");
        }
        // On loopback, only this machine's own names: a page elsewhere
        // whose name was made to point here (DNS rebinding) gets nothing.
        if self.address.ip().is_loopback() && !loopback_host(&request.url.host) {
            return text(421, "This service answers to localhost only\n");
        }
        let method = request.method.as_str();
        let read = matches!(method, "GET" | "HEAD");
        let path = request.url.path.as_str();
        if self.metrics_only {
            return match path {
                "/metrics" if read => {
                    let sample = self.sources.sample().await;
                    Response::new(200)
                        .header("Content-Type", crate::metrics::CONTENT_TYPE)
                        .body(crate::metrics::encode(&sample))
                }
                "/metrics" => text(405, "Method Not Allowed\n").header("Allow", "GET, HEAD"),
                _ => text(404, "Not Found\n"),
            };
        }
        let token = request
            .header_str("Cookie")
            .and_then(crate::session::token_of)
            .map(str::to_string);
        let session = token.as_deref().and_then(|t| self.sessions.find(t));
        match path {
            "/static/app.js" if read => asset("text/javascript; charset=utf-8", SCRIPT),
            "/static/app.css" if read => asset("text/css; charset=utf-8", STYLE),
            "/static/icon.svg" | "/favicon.ico" if read => asset("image/svg+xml", ICON),
            "/login" if read => match session {
                Some(_) => see_other("/"),
                None => login_page(200, ""),
            },
            "/login" if method == "POST" => self.login(request, body).await,
            "/logout" if method == "POST" => {
                let sent = form_field(body, "csrf");
                match (&session, token) {
                    (Some(s), Some(token))
                        if sent
                            .as_deref()
                            .is_some_and(|t| crate::session::same_token(t, &s.csrf)) =>
                    {
                        self.sessions.end(&token);
                        tracing::info!(user = s.user, "management console: logged off");
                        see_other("/login").header("Set-Cookie", crate::session::clear_cookie())
                    }
                    _ => text(403, "A logout needs the session's CSRF token\n"),
                }
            }
            "/" if read => match session {
                Some(s) => html(
                    200,
                    &CONSOLE_PAGE
                        .replace("{{CSRF}}", &s.csrf)
                        .replace("{{USER}}", &httpapi::html_escape(&s.user)),
                ),
                None => see_other("/login"),
            },
            "/metrics" if read => {
                let caller = match &session {
                    Some(s) => Caller::Admin(s.user.clone()),
                    None => self.basic_caller(request).await,
                };
                match caller {
                    Caller::Admin(user) => {
                        tracing::debug!(user, "management console: metrics read");
                        let sample = self.sources.sample().await;
                        Response::new(200)
                            .header("Content-Type", crate::metrics::CONTENT_TYPE)
                            .body(crate::metrics::encode(&sample))
                    }
                    refused => self.refusal(refused),
                }
            }
            p if p.starts_with("/api/") => {
                let Some(session) = session else {
                    return json(401, &serde_json::json!({"error": "log on first"}));
                };
                if method == "POST" {
                    let sent = request.header_str("X-CSRF-Token").unwrap_or("");
                    if !crate::session::same_token(sent, &session.csrf) {
                        tracing::warn!(
                            user = session.user,
                            "management console: a change without its CSRF token was refused"
                        );
                        return json(
                            403,
                            &serde_json::json!({"error": "missing or wrong CSRF token"}),
                        );
                    }
                }
                let (status, value) = match (method, p) {
                    ("GET", "/api/tree") => crate::api::tree(&self.sources).await,
                    ("GET", "/api/key") => {
                        let path = query_field(&request.url.query, "path").unwrap_or_default();
                        crate::api::key(&self.sources, &path)
                    }
                    ("GET", "/api/stats") => crate::api::stats(&self.sources).await,
                    ("GET", "/api/log") => crate::api::log(&self.sources, &request.url.query),
                    ("GET", "/api/sheet") => crate::api::sheet(&self.sources, &request.url.query),
                    ("POST", "/api/set") => crate::api::set(&self.sources, &session.user, body),
                    ("POST", "/api/command") => {
                        crate::api::command(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/site") => {
                        crate::api::create_site(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/vdir") => {
                        crate::api::create_vdir(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/vdir/delete") => {
                        crate::api::delete_vdir(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/site/delete") => {
                        crate::api::delete_site(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/pool") => {
                        crate::api::create_pool(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/pool/delete") => {
                        crate::api::delete_pool(&self.sources, &session.user, body).await
                    }
                    ("GET", "/api/backups") => crate::api::backups(&self.sources),
                    ("GET", "/api/webext") => crate::api::web_extensions(&self.sources),
                    ("POST", "/api/webext") => {
                        crate::api::set_web_extension(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/backup") => {
                        crate::api::backup(&self.sources, &session.user, body).await
                    }
                    ("POST", "/api/restore") => {
                        crate::api::restore(&self.sources, &session.user, body).await
                    }
                    _ => (404, serde_json::json!({"error": "no such call"})),
                };
                json(status, &value)
            }
            "/" | "/metrics" | "/login" | "/static/app.js" | "/static/app.css"
            | "/static/icon.svg" => text(405, "Method Not Allowed\n").header("Allow", "GET, HEAD"),
            "/logout" => text(405, "Method Not Allowed\n").header("Allow", "POST"),
            _ => text(404, "Not Found\n"),
        }
    }

    /// The logon form's POST: a session for an administrator.
    async fn login(&self, request: &Request, body: &[u8]) -> Response {
        let remote = request.remote.ip();
        let user = form_field(body, "user").unwrap_or_default();
        let password = form_field(body, "password").unwrap_or_default();
        match self.check_password(remote, user.clone(), password).await {
            Caller::Admin(user) => {
                let (token, _) = self.sessions.create(&user);
                tracing::info!(user, %remote, "management console: logged on");
                see_other("/").header("Set-Cookie", crate::session::set_cookie(&token))
            }
            Caller::NotAdmin(user) => login_page(
                403,
                &format!("{user} is not an administrator of this server."),
            ),
            Caller::Limited => login_page(
                429,
                "Too many failed logons from this address: try again in a minute.",
            ),
            Caller::Unknown => login_page(401, "The user name or password is wrong."),
        }
    }

    fn refusal(&self, caller: Caller) -> Response {
        match caller {
            Caller::Limited => text(
                429,
                "Too many failed logons from this address; try again in a minute\n",
            )
            .header("Retry-After", FAILURE_WINDOW.as_secs().to_string()),
            Caller::NotAdmin(user) => text(
                403,
                &format!("{user} is not an administrator (inetsrv user set {user} --admin true)\n"),
            ),
            _ => text(
                401,
                "An administrator's user name and password are needed\n",
            )
            .header(
                "WWW-Authenticate",
                "Basic realm=\"inetsrv management\", charset=\"UTF-8\"",
            ),
        }
    }

    /// The caller, by its HTTP Basic credentials.
    async fn basic_caller(&self, request: &Request) -> Caller {
        let remote = request.remote.ip();
        // A limited address hears so even without credentials.
        if self.limited(remote) {
            return Caller::Limited;
        }
        let Some((user, password)) = request
            .header_str("Authorization")
            .and_then(basic_credentials)
        else {
            return Caller::Unknown;
        };
        self.check_password(remote, user, password).await
    }

    /// Whether `user` is an administrator with this password (failures
    /// counted against the address).
    async fn check_password(&self, remote: IpAddr, user: String, password: String) -> Caller {
        if self.limited(remote) {
            return Caller::Limited;
        }
        let users = self.sources.users.clone();
        let name = user.clone();
        // Password hashes are slow on purpose: off the runtime's threads.
        let checked = tokio::task::spawn_blocking(move || {
            let ok = users.verify(&name, &password)?;
            let admin = ok && users.user(&name)?.is_some_and(|u| u.admin);
            Ok::<_, userdb::Error>((ok, admin))
        })
        .await;
        match checked {
            Ok(Ok((true, true))) => Caller::Admin(user),
            Ok(Ok((true, false))) => Caller::NotAdmin(user),
            Ok(Ok((false, _))) => {
                self.failed(remote);
                tracing::warn!(user, %remote, "management console: a failed logon");
                Caller::Unknown
            }
            Ok(Err(e)) => {
                tracing::error!("management console: cannot read the user database: {e}");
                Caller::Unknown
            }
            Err(_) => Caller::Unknown,
        }
    }

    fn limited(&self, remote: IpAddr) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&remote) {
            Some(f) if f.since.elapsed() >= FAILURE_WINDOW => {
                failures.remove(&remote);
                false
            }
            Some(f) => f.count >= MAX_FAILURES,
            None => false,
        }
    }

    fn failed(&self, remote: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(remote).or_insert(Failures {
            count: 0,
            since: Instant::now(),
        });
        entry.count += 1;
    }
}

/// Whether a request's host names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn asset(content_type: &str, body: &'static str) -> Response {
    Response::new(200)
        .header("Content-Type", content_type)
        .body(body)
}

fn html(status: u16, body: &str) -> Response {
    Response::new(status)
        .header("Content-Type", "text/html; charset=utf-8")
        .body(body.to_string())
}

fn json(status: u16, value: &serde_json::Value) -> Response {
    Response::new(status)
        .header("Content-Type", "application/json")
        .body(value.to_string())
}

fn see_other(location: &str) -> Response {
    Response::new(303).header("Location", location)
}

fn login_page(status: u16, error: &str) -> Response {
    html(
        status,
        &LOGIN_PAGE.replace("{{ERROR}}", &httpapi::html_escape(error)),
    )
}

/// A field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A field of a query string.
pub(crate) fn query_field(query: &str, name: &str) -> Option<String> {
    form_field(query.as_bytes(), name)
}

fn text(status: u16, body: &str) -> Response {
    Response::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body.to_string())
}

/// `Basic base64(user:password)` as its two parts.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_and_others_refused() {
        assert_eq!(
            basic_credentials("Basic Ym9zczpTZWNyZXQ6MQ=="),
            Some(("boss".into(), "Secret:1".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Basic Ym9zcw=="), None, "no colon");
    }

    #[test]
    fn loopback_hosts_are_this_machines_names_only() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "[::1]",
            "::1",
            "127.0.0.2",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in ["evil.example", "10.0.0.1", "localhost.evil.example", ""] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
