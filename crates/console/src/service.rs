//! The console's requests, taken from its request queue: who may ask
//! (administrators of the user database; a scraper with HTTP Basic over
//! the TLS connection), what a wrong password costs (five failures a
//! minute from one address, then 429 for the rest of the minute), and
//! the headers every answer carries (no caching, no framing, no content
//! from anywhere, HSTS).

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

/// Headers on every answer.
const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
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
    sources: Sources,
    failures: Mutex<HashMap<IpAddr, Failures>>,
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
    pub fn new(address: SocketAddr, sources: Sources) -> Arc<Service> {
        Arc::new(Service {
            address,
            sources,
            failures: Mutex::new(HashMap::new()),
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

    async fn handle(&self, request: Request) {
        let mut response = self.answer(&request).await;
        for (name, value) in SECURITY_HEADERS {
            response = response.header(name, value);
        }
        if let Err(e) = request.respond(response).await {
            tracing::debug!("management console: a response was not sent: {e}");
        }
    }

    async fn answer(&self, request: &Request) -> Response {
        // The router matches the prefix's host against the Host header;
        // the console answers only on the address it was given.
        if !self.address.ip().is_unspecified() && request.local.ip() != self.address.ip() {
            return text(404, "Not Found\n");
        }
        let read = matches!(request.method.as_str(), "GET" | "HEAD");
        match request.url.path.as_str() {
            "/metrics" if read => match self.caller(request).await {
                Caller::Admin(user) => {
                    tracing::debug!(user, "management console: metrics read");
                    let sample = self.sources.sample().await;
                    Response::new(200)
                        .header("Content-Type", crate::metrics::CONTENT_TYPE)
                        .body(crate::metrics::encode(&sample))
                }
                refused => self.refusal(refused),
            },
            "/" if read => text(
                200,
                "inetsrv management service\n\n/metrics  the performance counters (Prometheus; an administrator's credentials)\n",
            ),
            "/" | "/metrics" => text(405, "Method Not Allowed\n").header("Allow", "GET, HEAD"),
            _ => text(404, "Not Found\n"),
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
    async fn caller(&self, request: &Request) -> Caller {
        let remote = request.remote.ip();
        if self.limited(remote) {
            return Caller::Limited;
        }
        let Some((user, password)) = request
            .header_str("Authorization")
            .and_then(basic_credentials)
        else {
            return Caller::Unknown;
        };
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
}
