//! Basic authentication and client certificate mapping. The worker does
//! not hold the user database: it asks the activation service (as w3wp
//! asks LSA through LogonUser) and keeps successful logons for
//! UserTokenTTL (15 minutes), so a browser sending the same credentials on
//! every request costs one check.

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
    /// Client certificates by thumbprint: the user each maps to, or none.
    /// Unmapped answers are kept too: any change to the mappings clears
    /// the cache ([`Logons::forget`]).
    certificates: Mutex<HashMap<String, (Instant, Option<String>)>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Option<String>>>>,
    next: AtomicU64,
    out: mpsc::UnboundedSender<FromWorker>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bounds a cache: expired entries go first, then everything.
fn make_room<K, V>(cache: &mut HashMap<K, V>, at: impl Fn(&V) -> Instant) {
    if cache.len() >= MAX_CACHED {
        cache.retain(|_, v| at(v).elapsed() < TOKEN_TTL);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
    }
}

impl Logons {
    pub fn new(out: mpsc::UnboundedSender<FromWorker>) -> Logons {
        Logons {
            cache: Mutex::new(HashMap::new()),
            certificates: Mutex::new(HashMap::new()),
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

    /// Sends the service the question `ask` makes with a call id and waits
    /// for its answer.
    async fn ask(
        &self,
        ask: impl FnOnce(u64) -> FromWorker,
    ) -> Result<Option<String>, LogonUnavailable> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if self.out.send(ask(id)).is_err() {
            lock(&self.pending).remove(&id);
            return Err(LogonUnavailable);
        }
        match tokio::time::timeout(LOGON_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                lock(&self.pending).remove(&id);
                Err(LogonUnavailable)
            }
        }
    }

    /// Whether the user database accepts these credentials.
    pub async fn check(&self, user: &str, password: &str) -> Result<bool, LogonUnavailable> {
        let print = Self::fingerprint(user, password);
        if let Some(at) = lock(&self.cache).get(&print) {
            if at.elapsed() < TOKEN_TTL {
                return Ok(true);
            }
        }
        let ok = self
            .ask(|id| FromWorker::Logon {
                id,
                user: user.to_string(),
                password: password.to_string(),
            })
            .await?
            .is_some();
        if ok {
            let mut cache = lock(&self.cache);
            make_room(&mut cache, |at| *at);
            cache.insert(print, Instant::now());
        }
        Ok(ok)
    }

    /// The user a client certificate (DER) is mapped to, if any
    /// (AccessSSLMapCert).
    pub async fn certificate_user(&self, der: &[u8]) -> Result<Option<String>, LogonUnavailable> {
        use sha1::Digest as _;
        let thumbprint = hex::encode_upper(sha1::Sha1::digest(der));
        if let Some((at, user)) = lock(&self.certificates).get(&thumbprint) {
            if at.elapsed() < TOKEN_TTL {
                return Ok(user.clone());
            }
        }
        let user = self
            .ask(|id| FromWorker::CertLogon {
                id,
                thumbprint: thumbprint.clone(),
            })
            .await?;
        let mut cache = lock(&self.certificates);
        make_room(&mut cache, |(at, _)| *at);
        cache.insert(thumbprint, (Instant::now(), user.clone()));
        Ok(user)
    }

    /// The service's answer to a password logon.
    pub fn answer(&self, id: u64, ok: bool) {
        self.answer_user(id, ok.then(String::new));
    }

    /// The service's answer to a certificate logon: the mapped user.
    pub fn answer_user(&self, id: u64, user: Option<String>) {
        if let Some(tx) = lock(&self.pending).remove(&id) {
            let _ = tx.send(user);
        }
    }

    /// The user database or the certificate mappings changed.
    pub fn forget(&self) {
        lock(&self.cache).clear();
        lock(&self.certificates).clear();
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

    #[tokio::test]
    async fn certificate_logons_are_asked_by_thumbprint_and_cached() {
        use sha1::Digest as _;
        let alice = hex::encode_upper(sha1::Sha1::digest(b"alice's certificate"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let logons = std::sync::Arc::new(Logons::new(tx));
        let l = logons.clone();
        let mapped = alice.clone();
        let answerer = tokio::spawn(async move {
            let mut asked = Vec::new();
            while let Some(FromWorker::CertLogon { id, thumbprint }) = rx.recv().await {
                let user = (thumbprint == mapped).then(|| "alice".to_string());
                asked.push(thumbprint);
                l.answer_user(id, user);
                if asked.len() == 3 {
                    break;
                }
            }
            asked
        });
        let user = |der: &'static [u8]| {
            let logons = logons.clone();
            async move { logons.certificate_user(der).await }
        };
        assert_eq!(user(b"alice's certificate").await, Ok(Some("alice".into())));
        assert_eq!(user(b"alice's certificate").await, Ok(Some("alice".into())));
        assert_eq!(user(b"unmapped").await, Ok(None));
        assert_eq!(user(b"unmapped").await, Ok(None));
        logons.forget();
        assert_eq!(user(b"alice's certificate").await, Ok(Some("alice".into())));
        let asked = answerer.await.unwrap();
        assert_eq!(asked[0], alice);
        assert_eq!(asked.len(), 3, "repeats came from the cache: {asked:?}");
    }
}
