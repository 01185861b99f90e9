//! The response cache (the kernel cache's role). A response its sender
//! marks cacheable is kept and served by the listener itself, without
//! reaching the queue, under HTTP.SYS's rules: only GET (and HEAD from a
//! GET's entry), no query string, no Authorization, no Range or If-Range,
//! no request body, a 200 with a known length within UriMaxUriBytes and a
//! head within its limit. Conditional GETs are answered from the cache;
//! entries unused for UriScavengerPeriod, past their time to live or
//! flushed by their owner are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::response::push_date;
use crate::routing::{HostSpec, UrlPrefix};

/// A cached response.
pub struct CacheEntry {
    /// Status line and headers, without Date, Content-Length, Connection
    /// and the final empty line.
    pub head: Vec<u8>,
    pub body: Bytes,
    pub etag: Option<Vec<u8>>,
    pub last_modified: Option<SystemTime>,
    pub expires: Option<Instant>,
    pub host: String,
    pub port: u16,
    /// As requested (file names are case-sensitive).
    pub path: String,
    /// `Content-Length: N\r\n`, made once.
    length_line: Vec<u8>,
    last_used: AtomicU64,
    /// The application's DontLog: hits are not logged either.
    pub dont_log: bool,
}

impl CacheEntry {
    pub fn new(
        head: Vec<u8>,
        body: Bytes,
        host: &str,
        port: u16,
        path: &str,
        ttl: Option<Duration>,
    ) -> CacheEntry {
        let header = |name: &str| -> Option<Vec<u8>> {
            let text = std::str::from_utf8(&head).ok()?;
            text.split("\r\n").skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().as_bytes().to_vec())
            })
        };
        let etag = header("etag");
        let last_modified = header("last-modified")
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| httpapi::dates::parse_http_date(&v));
        CacheEntry {
            length_line: format!("Content-Length: {}\r\n", body.len()).into_bytes(),
            head,
            body,
            etag,
            last_modified,
            expires: ttl.map(|t| Instant::now() + t),
            host: host.to_string(),
            port,
            path: path.to_string(),
            last_used: AtomicU64::new(0),
            dont_log: false,
        }
    }

    fn size(&self) -> u64 {
        (self.head.len() + self.body.len() + self.path.len() + self.host.len()) as u64
    }

    /// Whether a conditional request (If-None-Match, else
    /// If-Modified-Since) is satisfied by this entry: a 304 is due.
    pub fn not_modified(
        &self,
        if_none_match: Option<&[u8]>,
        if_modified_since: Option<&[u8]>,
    ) -> bool {
        if let Some(inm) = if_none_match {
            let Some(etag) = &self.etag else { return false };
            let strip = |t: &[u8]| -> Vec<u8> { t.strip_prefix(b"W/").unwrap_or(t).to_vec() };
            return inm
                .split(|&b| b == b',')
                .map(|t| t.trim_ascii())
                .any(|t| t == b"*" || strip(t) == strip(etag));
        }
        if let (Some(ims), Some(lm)) = (if_modified_since, self.last_modified) {
            let Ok(ims) = std::str::from_utf8(ims) else {
                return false;
            };
            if let Some(since) = httpapi::dates::parse_http_date(ims) {
                return lm <= since;
            }
        }
        false
    }

    /// The full response: 200 (or 304), the body unless `head_only`.
    pub fn render(
        &self,
        not_modified: bool,
        head_only: bool,
        keep_alive: bool,
        http10: bool,
        out: &mut Vec<u8>,
    ) {
        if not_modified {
            out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\n");
            // RFC 9110 15.4.5: the validators and caching fields only.
            let text = String::from_utf8_lossy(&self.head);
            for line in text.split("\r\n").skip(1) {
                let name = line.split(':').next().unwrap_or("").trim();
                if [
                    "etag",
                    "last-modified",
                    "cache-control",
                    "expires",
                    "vary",
                    "content-location",
                    "server",
                ]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
                {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        } else {
            out.extend_from_slice(&self.head);
            out.extend_from_slice(&self.length_line);
        }
        push_date(out);
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !not_modified && !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The cache.
pub struct ResponseCache {
    entries: RwLock<HashMap<String, Arc<CacheEntry>>>,
    total: AtomicU64,
    max_total: u64,
    started: Instant,
    hits: AtomicU64,
    misses: AtomicU64,
    inserted: AtomicU64,
    flushes: AtomicU64,
    flushed: AtomicU64,
}

/// The cache's counters (IIS's URI cache counters, [MS-IRP] 2.2.15).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    /// Entries ever cached.
    pub inserted: u64,
    /// Flushes asked for, and the entries they removed.
    pub flushes: u64,
    pub flushed: u64,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl ResponseCache {
    pub fn new(max_total: u64) -> ResponseCache {
        ResponseCache {
            entries: RwLock::new(HashMap::new()),
            total: AtomicU64::new(0),
            max_total,
            started: Instant::now(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserted: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
        }
    }

    /// The key of a cooked URL without query: `host:port/path` (the host
    /// is lower case already; the path keeps its case, as file names do).
    pub fn key(host: &str, port: u16, path: &str) -> String {
        let mut k = String::with_capacity(host.len() + path.len() + 7);
        k.push_str(host);
        k.push(':');
        k.push_str(itoa::Buffer::new().format(port));
        k.push_str(path);
        k
    }

    fn now_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn get(&self, key: &str) -> Option<Arc<CacheEntry>> {
        let Some(entry) = read(&self.entries).get(key).cloned() else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if entry.expires.is_some_and(|e| Instant::now() >= e) {
            self.remove(key);
            return None;
        }
        entry.last_used.store(self.now_secs(), Ordering::Relaxed);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The counters, now.
    pub fn counters(&self) -> CacheCounters {
        let r = Ordering::Relaxed;
        CacheCounters {
            entries: self.len() as u64,
            bytes: self.total.load(r),
            max_bytes: self.max_total,
            hits: self.hits.load(r),
            misses: self.misses.load(r),
            inserted: self.inserted.load(r),
            flushes: self.flushes.load(r),
            flushed: self.flushed.load(r),
        }
    }

    pub fn len(&self) -> usize {
        read(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&self, key: String, entry: CacheEntry) {
        let size = entry.size();
        if size > self.max_total {
            return;
        }
        entry.last_used.store(self.now_secs(), Ordering::Relaxed);
        let mut map = write(&self.entries);
        self.inserted.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = map.insert(key, Arc::new(entry)) {
            self.total.fetch_sub(old.size(), Ordering::Relaxed);
        }
        self.total.fetch_add(size, Ordering::Relaxed);
        // Over budget: drop the least recently used entries.
        while self.total.load(Ordering::Relaxed) > self.max_total {
            let Some(victim) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = map.remove(&victim) {
                self.total.fetch_sub(old.size(), Ordering::Relaxed);
            }
        }
    }

    fn remove(&self, key: &str) {
        if let Some(old) = write(&self.entries).remove(key) {
            self.total.fetch_sub(old.size(), Ordering::Relaxed);
        }
    }

    /// Drops every entry; returns how many.
    pub fn flush_all(&self) -> usize {
        let mut map = write(&self.entries);
        let n = map.len();
        map.clear();
        self.total.store(0, Ordering::Relaxed);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flushed.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Drops the entries at or under a prefix; returns how many.
    pub fn flush(&self, prefix: &UrlPrefix) -> usize {
        self.flush_within(prefix, None)
    }

    /// [`ResponseCache::flush`], limited (when `owned` is given) to
    /// entries under one of `owned`: a program flushes only what its own
    /// URLs answered.
    pub fn flush_within(&self, prefix: &UrlPrefix, owned: Option<&[UrlPrefix]>) -> usize {
        // Prefixes match paths without regard to case, as routing does;
        // each path is lowered once, not once per comparison.
        fn lowered(p: &UrlPrefix) -> (&UrlPrefix, String) {
            (p, p.path.to_lowercase())
        }
        let target = lowered(prefix);
        let owned: Option<Vec<(&UrlPrefix, String)>> =
            owned.map(|list| list.iter().map(lowered).collect());
        let mut map = write(&self.entries);
        let before = map.len();
        map.retain(|_, e| {
            let path = e.path.to_lowercase();
            let doomed = entry_under(&target, e, &path)
                && owned
                    .as_ref()
                    .is_none_or(|owned| owned.iter().any(|o| entry_under(o, e, &path)));
            if doomed {
                self.total.fetch_sub(e.size(), Ordering::Relaxed);
            }
            !doomed
        });
        let gone = before - map.len();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flushed.fetch_add(gone as u64, Ordering::Relaxed);
        gone
    }

    /// Drops entries unused for `period` and expired ones.
    pub fn scavenge(&self, period: Duration) -> usize {
        let now = self.now_secs();
        let instant = Instant::now();
        let mut map = write(&self.entries);
        let before = map.len();
        map.retain(|_, e| {
            let idle =
                now.saturating_sub(e.last_used.load(Ordering::Relaxed)) >= period.as_secs().max(1);
            let expired = e.expires.is_some_and(|x| instant >= x);
            if idle || expired {
                self.total.fetch_sub(e.size(), Ordering::Relaxed);
            }
            !(idle || expired)
        });
        before - map.len()
    }
}

/// Whether a cached response (its path given lowered) lies under a
/// prefix (with its path lowered): its port, its host or a wildcard, its
/// path at or below the prefix's.
fn entry_under(
    (prefix, prefix_path): &(&UrlPrefix, String),
    e: &CacheEntry,
    lower_path: &str,
) -> bool {
    let host_matches = match &prefix.host {
        HostSpec::Strong | HostSpec::Weak => true,
        HostSpec::Name(n) => *n == e.host,
        HostSpec::Ip(ip) => e.host.trim_matches(['[', ']']) == ip.to_string(),
    };
    let under = lower_path.starts_with(prefix_path.as_str())
        || (lower_path.len() + 1 == prefix_path.len() && prefix_path.starts_with(lower_path));
    e.port == prefix.port && host_matches && under
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, body: &str) -> CacheEntry {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\nLast-Modified: Sun, 22 Nov 2026 00:00:00 GMT\r\n".to_vec();
        CacheEntry::new(head, Bytes::from(body.to_string()), "h", 80, path, None)
    }

    #[test]
    fn get_insert_flush() {
        let c = ResponseCache::new(1 << 20);
        c.insert(
            ResponseCache::key("h", 80, "/A/b.txt"),
            entry("/A/b.txt", "hello"),
        );
        c.insert(ResponseCache::key("h", 80, "/other"), entry("/other", "x"));
        assert!(c.get(&ResponseCache::key("h", 80, "/A/b.txt")).is_some());
        assert!(
            c.get(&ResponseCache::key("h", 80, "/a/B.TXT")).is_none(),
            "paths are case-sensitive"
        );
        assert!(c.get(&ResponseCache::key("h", 81, "/a/b.txt")).is_none());
        assert_eq!(c.flush(&UrlPrefix::parse("http://+:80/a/").unwrap()), 1);
        assert!(c.get(&ResponseCache::key("h", 80, "/A/b.txt")).is_none());
        assert_eq!(c.flush(&UrlPrefix::parse("http://other:80/").unwrap()), 0);
        assert_eq!(c.flush(&UrlPrefix::parse("http://h:80/").unwrap()), 1);
        assert!(c.is_empty());
        assert_eq!(c.total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn conditional_requests() {
        let e = entry("/x", "body");
        assert!(e.not_modified(Some(b"\"v1\""), None));
        assert!(e.not_modified(Some(b"\"v0\", W/\"v1\""), None));
        assert!(e.not_modified(Some(b"*"), None));
        assert!(!e.not_modified(Some(b"\"v2\""), None));
        assert!(e.not_modified(None, Some(b"Sun, 22 Nov 2026 00:00:00 GMT")));
        assert!(e.not_modified(None, Some(b"Mon, 23 Nov 2026 00:00:00 GMT")));
        assert!(!e.not_modified(None, Some(b"Sat, 21 Nov 2026 00:00:00 GMT")));
        assert!(!e.not_modified(None, Some(b"yesterday")));
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3).
        assert!(!e.not_modified(Some(b"\"v2\""), Some(b"Mon, 23 Nov 2026 00:00:00 GMT")));
    }

    #[test]
    fn rendering() {
        let e = entry("/x", "body");
        let mut out = Vec::new();
        e.render(false, false, true, false, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nbody"));
        assert!(text.contains("Content-Length: 4\r\n") && text.contains("Date: "));
        out.clear();
        e.render(true, false, false, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n") && text.contains("ETag: \"v1\""));
        assert!(!text.contains("Content-Type") && text.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn budget_and_scavenging() {
        let c = ResponseCache::new(600);
        for i in 0..10 {
            c.insert(format!("k{i}"), entry("/p", &"x".repeat(100)));
        }
        assert!(c.total.load(Ordering::Relaxed) <= 600);
        assert!(c.len() < 10);
        let ttl = CacheEntry::new(
            b"HTTP/1.1 200 OK\r\n".to_vec(),
            Bytes::new(),
            "h",
            80,
            "/t",
            Some(Duration::ZERO),
        );
        c.insert("ttl".into(), ttl);
        assert!(c.get("ttl").is_none(), "expired at once");
        assert_eq!(c.scavenge(Duration::from_secs(3600)), 0);
    }

    #[test]
    fn unused_entries_are_scavenged() {
        let c = ResponseCache::new(1 << 20);
        c.insert("idle".into(), entry("/idle", "x"));
        c.insert("busy".into(), entry("/busy", "y"));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(c.get("busy").is_some());
        assert_eq!(c.scavenge(Duration::from_secs(1)), 1);
        assert!(c.get("idle").is_none() && c.get("busy").is_some());
    }
}
