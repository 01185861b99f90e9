//! The Web service's counters, kept as requests are answered: what
//! IIS 6's W3_STATISTICS_1 ([MS-IRP] 2.2.19) and Performance Monitor's
//! "Web Service" object report — bytes, requests by verb, not-found and
//! locked errors, anonymous and authenticated requests, connections —
//! for the whole service and per site. Relaxed atomics: a request pays a
//! few increments on its site's counters, which its connection keeps at
//! hand; the service's counters are the sum of every site's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The verbs W3_STATISTICS_1 counts apart, in its order.
pub const VERBS: [&str; 15] = [
    "OPTIONS",
    "GET",
    "POST",
    "HEAD",
    "PUT",
    "DELETE",
    "TRACE",
    "MOVE",
    "COPY",
    "MKCOL",
    "PROPFIND",
    "PROPPATCH",
    "SEARCH",
    "LOCK",
    "UNLOCK",
];

/// One set of counters (the service's, or a site's).
#[derive(Default)]
pub struct W3Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// VERBS, then every other verb.
    verbs: [AtomicU64; 16],
    not_found: AtomicU64,
    locked: AtomicU64,
    anonymous: AtomicU64,
    authenticated: AtomicU64,
    files_sent: AtomicU64,
    rejected: AtomicU64,
    /// Requests ISAPI extensions (FastCGI included) and CGI programs
    /// answered.
    isapi: AtomicU64,
    cgi: AtomicU64,
    /// Requests being answered now, and the most at once.
    busy: InFlight,
    /// Seconds since 1970 of the last clear (0: never).
    cleared_at: AtomicU64,
}

/// What a request being answered counts as in IIS's Current and Maximum
/// counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Busy {
    Anonymous = 0,
    Authenticated = 1,
    Isapi = 2,
    Cgi = 3,
}

/// Requests in progress by kind ([`Busy`]), and the most seen at once.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    current: [AtomicU64; 4],
    max: [AtomicU64; 4],
}

impl InFlight {
    fn enter(&self, kind: Busy) {
        let i = kind as usize;
        let now = self.current[i].fetch_add(1, Ordering::Relaxed) + 1;
        self.max[i].fetch_max(now, Ordering::Relaxed);
    }

    fn leave(&self, kind: Busy) {
        let _ =
            self.current[kind as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    fn read(&self) -> ([u64; 4], [u64; 4]) {
        let r = Ordering::Relaxed;
        (
            std::array::from_fn(|i| self.current[i].load(r)),
            std::array::from_fn(|i| self.max[i].load(r)),
        )
    }

    /// The maxima start again from what is in progress.
    fn clear(&self) {
        for i in 0..4 {
            self.max[i].store(self.current[i].load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// A request being answered, counted on its site's and the service's
/// in-progress counters until it is dropped (whatever ends the exchange).
pub(crate) struct InProgress {
    site: Arc<W3Counters>,
    service: Arc<Statistics>,
    /// The user's kind, and the handler's if an extension or a program.
    kinds: (Busy, Option<Busy>),
}

impl Drop for InProgress {
    fn drop(&mut self) {
        for kind in std::iter::once(self.kinds.0).chain(self.kinds.1) {
            self.site.busy.leave(kind);
            self.service.busy.leave(kind);
        }
    }
}

/// The counters at one moment, plain numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct W3Snapshot {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// By [`VERBS`], then all others.
    pub verbs: [u64; 16],
    pub not_found: u64,
    pub locked: u64,
    /// Requests answered without a logged-on user, and with one.
    pub anonymous: u64,
    pub authenticated: u64,
    /// Successful GET and HEAD answers.
    pub files_sent: u64,
    /// Requests the listener turned away (503: queue full, offline,
    /// connection limit).
    pub rejected: u64,
    pub current_connections: u64,
    pub max_connections: u64,
    pub connection_attempts: u64,
    /// Seconds the service has run.
    pub uptime: u64,
    /// Seconds since 1970 of the last clear (0: never).
    pub cleared_at: u64,
    /// Requests ISAPI extensions (FastCGI included) and CGI programs
    /// answered.
    pub isapi: u64,
    pub cgi: u64,
    /// Requests being answered now, by [`Busy`] kind: anonymous,
    /// authenticated, by an extension, by a CGI program.
    pub current: [u64; 4],
    /// The most at once since the service started or was cleared.
    pub max: [u64; 4],
}

impl W3Counters {
    pub(crate) fn record(
        &self,
        verb: usize,
        status: u16,
        sent: u64,
        received: u64,
        user: bool,
        handler: u8,
    ) {
        let r = Ordering::Relaxed;
        match handler {
            httpapi::proto::HANDLER_ISAPI => {
                self.isapi.fetch_add(1, r);
            }
            httpapi::proto::HANDLER_CGI => {
                self.cgi.fetch_add(1, r);
            }
            _ => {}
        }
        self.bytes_sent.fetch_add(sent, r);
        self.bytes_received.fetch_add(received, r);
        self.verbs[verb.min(15)].fetch_add(1, r);
        match status {
            404 => {
                self.not_found.fetch_add(1, r);
            }
            423 => {
                self.locked.fetch_add(1, r);
            }
            503 => {
                self.rejected.fetch_add(1, r);
            }
            200..=299 if verb == 1 || verb == 3 => {
                self.files_sent.fetch_add(1, r);
            }
            _ => {}
        }
        if user {
            self.authenticated.fetch_add(1, r);
        } else {
            self.anonymous.fetch_add(1, r);
        }
    }

    fn snapshot(&self) -> W3Snapshot {
        let r = Ordering::Relaxed;
        W3Snapshot {
            bytes_sent: self.bytes_sent.load(r),
            bytes_received: self.bytes_received.load(r),
            verbs: std::array::from_fn(|i| self.verbs[i].load(r)),
            not_found: self.not_found.load(r),
            locked: self.locked.load(r),
            anonymous: self.anonymous.load(r),
            authenticated: self.authenticated.load(r),
            files_sent: self.files_sent.load(r),
            rejected: self.rejected.load(r),
            cleared_at: self.cleared_at.load(r),
            isapi: self.isapi.load(r),
            cgi: self.cgi.load(r),
            current: self.busy.read().0,
            max: self.busy.read().1,
            ..W3Snapshot::default()
        }
    }

    fn clear(&self) {
        let r = Ordering::Relaxed;
        for c in [
            &self.bytes_sent,
            &self.bytes_received,
            &self.not_found,
            &self.locked,
            &self.anonymous,
            &self.authenticated,
            &self.files_sent,
            &self.rejected,
            &self.isapi,
            &self.cgi,
        ] {
            c.store(0, r);
        }
        self.busy.clear();
        for v in &self.verbs {
            v.store(0, r);
        }
        self.cleared_at.store(now_secs(), r);
    }
}

/// The index of a verb in [`VERBS`] (15: another).
pub fn verb_index(method: &[u8]) -> usize {
    VERBS
        .iter()
        .position(|v| v.as_bytes() == method)
        .unwrap_or(15)
}

impl W3Snapshot {
    fn add(&mut self, o: &W3Snapshot) {
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        for (a, b) in self.verbs.iter_mut().zip(o.verbs) {
            *a += b;
        }
        self.not_found += o.not_found;
        self.locked += o.locked;
        self.anonymous += o.anonymous;
        self.authenticated += o.authenticated;
        self.files_sent += o.files_sent;
        self.rejected += o.rejected;
        self.isapi += o.isapi;
        self.cgi += o.cgi;
        for i in 0..4 {
            self.current[i] += o.current[i];
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The service's counters and each site's. A request counts once, on its
/// site's counters (or the unrouted ones); the service's are their sum.
pub struct Statistics {
    /// Requests no site took (refused before routing, unknown hosts).
    unrouted: Arc<W3Counters>,
    sites: RwLock<HashMap<u32, Arc<W3Counters>>>,
    started: Instant,
    /// When the service's counters were last cleared (seconds since 1970).
    cleared_at: AtomicU64,
    connection_attempts: AtomicU64,
    max_connections: AtomicU64,
    /// Connections open now (the listener's permits in use).
    current: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Requests in progress over the whole service (its maxima are its
    /// own, not the sum of the sites').
    busy: InFlight,
}

impl Statistics {
    pub(crate) fn new(current: Box<dyn Fn() -> u64 + Send + Sync>) -> Statistics {
        Statistics {
            unrouted: Arc::default(),
            sites: RwLock::new(HashMap::new()),
            started: Instant::now(),
            cleared_at: AtomicU64::new(0),
            connection_attempts: AtomicU64::new(0),
            max_connections: AtomicU64::new(0),
            current,
            busy: InFlight::default(),
        }
    }

    /// Counts a request in progress on `site`'s counters and the
    /// service's until the returned guard is dropped.
    pub(crate) fn in_progress(
        self: &Arc<Self>,
        site: &Arc<W3Counters>,
        kinds: (Busy, Option<Busy>),
    ) -> InProgress {
        for kind in std::iter::once(kinds.0).chain(kinds.1) {
            site.busy.enter(kind);
            self.busy.enter(kind);
        }
        InProgress {
            site: site.clone(),
            service: self.clone(),
            kinds,
        }
    }

    /// The counters a request of `site` goes to (a connection keeps them
    /// for its next requests).
    pub(crate) fn counters(&self, site: Option<u32>) -> Arc<W3Counters> {
        let Some(id) = site else {
            return self.unrouted.clone();
        };
        if let Some(c) = self
            .sites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return c.clone();
        }
        self.sites
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    /// A connection accepted (or turned away at the limit).
    pub(crate) fn connection(&self) {
        self.connection_attempts.fetch_add(1, Ordering::Relaxed);
        self.max_connections
            .fetch_max((self.current)(), Ordering::Relaxed);
    }

    /// The service's counters (`None`) or a site's; a site never seen has
    /// none yet (all zero).
    pub fn snapshot(&self, site: Option<u32>) -> W3Snapshot {
        let mut s = match site {
            None => {
                let mut total = self.unrouted.snapshot();
                for c in self
                    .sites
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                {
                    total.add(&c.snapshot());
                }
                total.cleared_at = self.cleared_at.load(Ordering::Relaxed);
                total.max = self.busy.read().1;
                total
            }
            Some(_) => self.counters(site).snapshot(),
        };
        s.current_connections = (self.current)();
        s.max_connections = self
            .max_connections
            .load(Ordering::Relaxed)
            .max(s.current_connections);
        s.connection_attempts = self.connection_attempts.load(Ordering::Relaxed);
        s.uptime = self.started.elapsed().as_secs();
        s
    }

    /// The sites that have counters (a site never requested has none).
    pub fn site_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .sites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Zeroes the service's counters and every site's (`None`), or one
    /// site's; connections open are not counters and stay.
    pub fn clear(&self, site: Option<u32>) {
        match site {
            None => {
                self.unrouted.clear();
                for c in self
                    .sites
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                {
                    c.clear();
                }
                self.cleared_at.store(now_secs(), Ordering::Relaxed);
                self.connection_attempts.store(0, Ordering::Relaxed);
                self.max_connections
                    .store((self.current)(), Ordering::Relaxed);
                self.busy.clear();
            }
            Some(_) => self.counters(site).clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_programs_count_and_requests_in_progress_have_maxima() {
        let s = Arc::new(Statistics::new(Box::new(|| 0)));
        let site = s.counters(Some(1));
        site.record(1, 200, 10, 10, false, httpapi::proto::HANDLER_ISAPI);
        site.record(1, 200, 10, 10, true, httpapi::proto::HANDLER_CGI);
        site.record(1, 200, 10, 10, false, 0);
        let a = s.in_progress(&site, (Busy::Anonymous, Some(Busy::Isapi)));
        let b = s.in_progress(&site, (Busy::Anonymous, Some(Busy::Isapi)));
        let c = s.in_progress(&site, (Busy::Authenticated, Some(Busy::Cgi)));
        let now = s.snapshot(None);
        assert_eq!((now.isapi, now.cgi), (1, 1));
        assert_eq!(now.current, [2, 1, 2, 1]);
        drop((a, b));
        let later = s.snapshot(Some(1));
        assert_eq!(later.current, [0, 1, 0, 1]);
        assert_eq!(later.max, [2, 1, 2, 1]);
        drop(c);
        assert_eq!(s.snapshot(None).current, [0; 4]);
        assert_eq!(s.snapshot(None).max, [2, 1, 2, 1]);
        // A clear starts the maxima again from what runs.
        let d = s.in_progress(&site, (Busy::Anonymous, None));
        s.clear(None);
        let cleared = s.snapshot(None);
        assert_eq!((cleared.isapi, cleared.max), (0, [1, 0, 0, 0]));
        drop(d);
    }

    #[test]
    fn requests_count_by_verb_status_user_and_site() {
        let s = Statistics::new(Box::new(|| 3));
        let record = |site, verb: &[u8], status, sent, received, user| {
            s.counters(site)
                .record(verb_index(verb), status, sent, received, user, 0)
        };
        record(Some(1), b"GET", 200, 100, 50, false);
        record(Some(1), b"GET", 404, 10, 50, true);
        record(Some(2), b"BREW", 503, 5, 5, false);
        record(None, b"POST", 423, 0, 500, false);
        s.connection();
        let all = s.snapshot(None);
        assert_eq!((all.bytes_sent, all.bytes_received), (115, 605));
        assert_eq!((all.verbs[1], all.verbs[2], all.verbs[15]), (2, 1, 1));
        assert_eq!((all.not_found, all.locked, all.rejected), (1, 1, 1));
        assert_eq!(
            (all.anonymous, all.authenticated, all.files_sent),
            (3, 1, 1)
        );
        assert_eq!((all.current_connections, all.max_connections), (3, 3));
        let one = s.snapshot(Some(1));
        assert_eq!((one.verbs[1], one.not_found, one.bytes_sent), (2, 1, 110));
        s.clear(Some(2));
        assert_eq!(s.snapshot(Some(2)).verbs[15], 0);
        assert!(s.snapshot(Some(2)).cleared_at > 0);
        assert_eq!(s.snapshot(None).verbs[1], 2, "site 1's stay in the total");
        s.clear(None);
        assert_eq!(
            s.snapshot(None),
            W3Snapshot {
                current_connections: 3,
                max_connections: 3,
                uptime: s.snapshot(None).uptime,
                cleared_at: s.snapshot(None).cleared_at,
                ..W3Snapshot::default()
            }
        );
    }
}
