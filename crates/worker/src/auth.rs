//! Basic authentication. The worker does not hold the user database: it
//! asks the activation service (as w3wp asks LSA through LogonUser) and
//! keeps successful logons for UserTokenTTL (15 minutes), so a browser
//! sending the same credentials on every request costs one check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use worker_control::FromWorker;

/// How long a successful logon is remembered (IIS's UserTokenTTL default).
const TOKEN_TTL: Duration = Duration::from_secs(900);
/// How long the service may take to answer.
const LOGON_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CACHED: usize = 4096;

/// `Basic <base64(user:password)>` to its parts.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Why a logon could not be decided.
#[derive(Debug, PartialEq, Eq)]
pub struct LogonUnavailable;

pub struct Logons {
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<bool>>>,
    next: AtomicU64,
    out: mpsc::UnboundedSender<FromWorker>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Logons {
    pub fn new(out: mpsc::UnboundedSender<FromWorker>) -> Logons {
        Logons {
            cache: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            out,
        }
    }

    fn fingerprint(user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether the user database accepts these credentials.
    pub async fn check(&self, user: &str, password: &str) -> Result<bool, LogonUnavailable> {
        let print = Self::fingerprint(user, password);
        if let Some(at) = lock(&self.cache).get(&print) {
            if at.elapsed() < TOKEN_TTL {
                return Ok(true);
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let asked = self.out.send(FromWorker::Logon {
            id,
            user: user.to_string(),
            password: password.to_string(),
        });
        if asked.is_err() {
            lock(&self.pending).remove(&id);
            return Err(LogonUnavailable);
        }
        let ok = match tokio::time::timeout(LOGON_TIMEOUT, rx).await {
            Ok(Ok(ok)) => ok,
            _ => {
                lock(&self.pending).remove(&id);
                return Err(LogonUnavailable);
            }
        };
        if ok {
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, at| at.elapsed() < TOKEN_TTL);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(print, Instant::now());
        }
        Ok(ok)
    }

    /// The service's answer to a logon.
    pub fn answer(&self, id: u64, ok: bool) {
        if let Some(tx) = lock(&self.pending).remove(&id) {
            let _ = tx.send(ok);
        }
    }

    /// The user database changed.
    pub fn forget(&self) {
        lock(&self.cache).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjp0"),
            Some(("alice".into(), "s3cr:t".into()))
        );
        assert_eq!(
            parse_basic("basic YWxpY2U6"),
            Some(("alice".into(), "".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic YWxpY2U="), None, "no colon");
    }

    #[tokio::test]
    async fn logons_go_to_the_service_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let logons = std::sync::Arc::new(Logons::new(tx));
        let l = logons.clone();
        let answerer = tokio::spawn(async move {
            let mut asked = 0;
            while let Some(FromWorker::Logon { id, password, .. }) = rx.recv().await {
                asked += 1;
                l.answer(id, password == "right");
                if asked == 3 {
                    break;
                }
            }
            asked
        });
        assert_eq!(logons.check("alice", "right").await, Ok(true));
        assert_eq!(logons.check("alice", "right").await, Ok(true));
        assert_eq!(logons.check("alice", "wrong").await, Ok(false));
        logons.forget();
        assert_eq!(logons.check("alice", "right").await, Ok(true));
        assert_eq!(
            answerer.await.unwrap(),
            3,
            "the second check came from the cache"
        );
    }
}
