//! URL prefixes in the HTTP Server API's grammar and the table that routes
//! a cooked URL to the prefix that owns it.
//!
//! A prefix is `scheme://host:port/path/`, the host being `+` (strong
//! wildcard: every host), a name, an IP address, or `*` (weak wildcard:
//! what nothing else takes). Precedence follows HTTP.SYS: strong wildcard,
//! then an explicit host name (matched against the Host header), then an IP
//! address (matched against the address the connection arrived on), then
//! the weak wildcard; within each, the longest path prefix wins. Matching is
//! case-insensitive.
//!
//! The table is made of persistent collections (`imbl`): the listener
//! changes a copy and publishes it whole, and a copy costs nothing however
//! many prefixes there are, so registering ten thousand sites' prefixes
//! one by one is not quadratic.

use std::fmt;
use std::net::IpAddr;

use crate::url::Scheme;

/// The host part of a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostSpec {
    /// `+`
    Strong,
    /// `*`
    Weak,
    /// A host name, lower case.
    Name(String),
    /// An IP address.
    Ip(IpAddr),
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSpec::Strong => f.write_str("+"),
            HostSpec::Weak => f.write_str("*"),
            HostSpec::Name(n) => f.write_str(n),
            HostSpec::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            HostSpec::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
        }
    }
}

/// A URL prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UrlPrefix {
    pub scheme: Scheme,
    pub host: HostSpec,
    pub port: u16,
    /// Lower case, starting and ending with `/`.
    pub path: String,
}

impl fmt::Display for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.host,
            self.port,
            self.path
        )
    }
}

/// Why a prefix string is not a prefix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL prefix '{prefix}': {reason}")]
pub struct PrefixError {
    pub prefix: String,
    pub reason: &'static str,
}

/// A host name a prefix (or a site binding) may name: letters, digits,
/// `-`, `_` and dots between non-empty labels.
pub fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !h.starts_with('.')
        && !h.contains("..")
}

impl UrlPrefix {
    /// Parses `http://host:port/path/`. The port is required, as the HTTP
    /// Server API requires it; a missing final `/` is added.
    pub fn parse(text: &str) -> Result<UrlPrefix, PrefixError> {
        let err = |reason| PrefixError {
            prefix: text.to_string(),
            reason,
        };
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = if let Some(r) = lower.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = lower.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            return Err(err("the scheme must be http:// or https://"));
        };
        let slash = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(slash);
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| err("unclosed IPv6 address"))?;
            let port = r[close + 1..]
                .strip_prefix(':')
                .ok_or_else(|| err("a port is required"))?;
            (&authority[..close + 2], port)
        } else {
            authority
                .rsplit_once(':')
                .ok_or_else(|| err("a port is required"))?
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| err("the port must be a number from 1 to 65535"))?;
        let host = match host {
            "+" => HostSpec::Strong,
            "*" => HostSpec::Weak,
            h if h.starts_with('[') => HostSpec::Ip(IpAddr::V6(
                h[1..h.len() - 1]
                    .parse()
                    .map_err(|_| err("bad IPv6 address"))?,
            )),
            h => match h.parse::<IpAddr>() {
                Ok(ip) => HostSpec::Ip(ip),
                Err(_) => {
                    if !valid_host_name(h) {
                        return Err(err("bad host name"));
                    }
                    HostSpec::Name(h.to_string())
                }
            },
        };
        let mut path = if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        };
        if path.contains(['?', '#', '%', '\\']) || path.split('/').any(|s| s == "." || s == "..") {
            return Err(err("the path may not hold ?, #, %, \\, . or .. segments"));
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        Ok(UrlPrefix {
            scheme,
            host,
            port,
            path,
        })
    }

    /// Whether this prefix covers `other`: same scheme, host and port, and
    /// a path at or below this one. URL reservations use this.
    pub fn covers(&self, other: &UrlPrefix) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && self.port == other.port
            && other.path.starts_with(&self.path)
    }
}

/// Whether `path` (as the request has it) is at or below `prefix_path`
/// (lower case, ending in `/`), ignoring case. `/app` is under `/app/`.
fn path_matches(path: &str, prefix_path: &str) -> bool {
    let p = path.as_bytes();
    let q = prefix_path.as_bytes();
    if path.is_ascii() {
        if p.len() >= q.len() {
            return p[..q.len()].eq_ignore_ascii_case(q);
        }
        return p.len() + 1 == q.len() && p.eq_ignore_ascii_case(&q[..p.len()]);
    }
    let lower = path.to_lowercase();
    lower.starts_with(prefix_path) || format!("{lower}/") == prefix_path
}

#[derive(Clone)]
struct Entry<T> {
    prefix: UrlPrefix,
    target: T,
}

/// One host's prefixes, longest path first.
type List<T> = imbl::Vector<Entry<T>>;

#[derive(Clone)]
struct PortRoutes<T: Clone> {
    strong: List<T>,
    names: imbl::HashMap<String, List<T>>,
    ips: imbl::HashMap<IpAddr, List<T>>,
    weak: List<T>,
}

impl<T: Clone> Default for PortRoutes<T> {
    fn default() -> Self {
        PortRoutes {
            strong: List::new(),
            names: imbl::HashMap::new(),
            ips: imbl::HashMap::new(),
            weak: List::new(),
        }
    }
}

impl<T: Clone> PortRoutes<T> {
    fn list_mut(&mut self, host: &HostSpec) -> &mut List<T> {
        match host {
            HostSpec::Strong => &mut self.strong,
            HostSpec::Weak => &mut self.weak,
            HostSpec::Name(n) => self.names.entry(n.clone()).or_default(),
            HostSpec::Ip(ip) => self.ips.entry(*ip).or_default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.strong.is_empty()
            && self.names.is_empty()
            && self.ips.is_empty()
            && self.weak.is_empty()
    }
}

/// What routing found.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed<'a, T> {
    Found {
        target: &'a T,
        prefix: &'a UrlPrefix,
    },
    /// Something listens for this host, but no path matches (404).
    NoPath,
    /// Nothing listens for this host on this port (400 Hostname).
    NoHost,
}

/// Prefixes and what each routes to. Cloning it is cheap (persistent
/// collections share what the copies have in common).
#[derive(Clone)]
pub struct RoutingTable<T: Clone> {
    ports: imbl::HashMap<(Scheme, u16), PortRoutes<T>>,
    count: usize,
}

impl<T: Clone> Default for RoutingTable<T> {
    fn default() -> Self {
        RoutingTable {
            ports: imbl::HashMap::new(),
            count: 0,
        }
    }
}

impl<T: Clone> RoutingTable<T> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a prefix. A prefix may be registered once (ERROR_ALREADY_EXISTS
    /// in the HTTP Server API): the existing target is returned otherwise.
    pub fn insert(&mut self, prefix: UrlPrefix, target: T) -> Result<(), &T> {
        let routes = self.ports.entry((prefix.scheme, prefix.port)).or_default();
        let list = routes.list_mut(&prefix.host);
        if let Some(i) = list.iter().position(|e| e.prefix == prefix) {
            return Err(&list[i].target);
        }
        // Longest path first: the first match is the best.
        let at = list
            .iter()
            .position(|e| e.prefix.path.len() < prefix.path.len())
            .unwrap_or(list.len());
        list.insert(at, Entry { prefix, target });
        self.count += 1;
        Ok(())
    }

    pub fn remove(&mut self, prefix: &UrlPrefix) -> Option<T> {
        let key = (prefix.scheme, prefix.port);
        let routes = self.ports.get_mut(&key)?;
        let list = routes.list_mut(&prefix.host);
        let i = list.iter().position(|e| &e.prefix == prefix)?;
        let entry = list.remove(i);
        match &prefix.host {
            HostSpec::Name(n) if list.is_empty() => {
                routes.names.remove(n);
            }
            HostSpec::Ip(ip) if list.is_empty() => {
                routes.ips.remove(ip);
            }
            _ => {}
        }
        if routes.is_empty() {
            self.ports.remove(&key);
        }
        self.count -= 1;
        Some(entry.target)
    }

    /// Removes every prefix whose target `matches`.
    pub fn retain(&mut self, mut keep: impl FnMut(&UrlPrefix, &T) -> bool) {
        let doomed: Vec<UrlPrefix> = self
            .iter()
            .filter(|(p, t)| !keep(p, t))
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            self.remove(&p);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&UrlPrefix, &T)> {
        self.ports.values().flat_map(|r| {
            r.strong
                .iter()
                .chain(r.names.values().flatten())
                .chain(r.ips.values().flatten())
                .chain(r.weak.iter())
                .map(|e| (&e.prefix, &e.target))
        })
    }

    /// The (scheme, port) pairs something is registered on.
    pub fn ports(&self) -> impl Iterator<Item = (Scheme, u16)> + '_ {
        self.ports.keys().copied()
    }

    /// Routes a request: `host` is the cooked URL's host (lower case),
    /// `local_ip` the address the connection arrived on.
    pub fn route(
        &self,
        scheme: Scheme,
        port: u16,
        host: &str,
        local_ip: IpAddr,
        path: &str,
    ) -> Routed<'_, T> {
        let Some(routes) = self.ports.get(&(scheme, port)) else {
            return Routed::NoHost;
        };
        fn find<'t, T: Clone>(list: &'t List<T>, path: &str) -> Option<(&'t T, &'t UrlPrefix)> {
            list.iter()
                .find(|e| path_matches(path, &e.prefix.path))
                .map(|e| (&e.target, &e.prefix))
        }
        let names = routes.names.get(host);
        let ips = routes.ips.get(&local_ip);
        let found = find(&routes.strong, path)
            .or_else(|| names.and_then(|l| find(l, path)))
            .or_else(|| ips.and_then(|l| find(l, path)))
            .or_else(|| find(&routes.weak, path));
        match found {
            Some((target, prefix)) => Routed::Found { target, prefix },
            None if !routes.strong.is_empty()
                || names.is_some()
                || ips.is_some()
                || !routes.weak.is_empty() =>
            {
                Routed::NoPath
            }
            None => Routed::NoHost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(s: &str) -> UrlPrefix {
        UrlPrefix::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    fn route<'a>(t: &'a RoutingTable<&'static str>, host: &str, path: &str) -> Option<&'a str> {
        match t.route(Scheme::Http, 80, host, LOCAL, path) {
            Routed::Found { target, .. } => Some(target),
            _ => None,
        }
    }

    #[test]
    fn parsing() {
        let p = prefix("http://+:80/App");
        assert_eq!(p.to_string(), "http://+:80/app/");
        assert_eq!(prefix("HTTP://*:8080/").host, HostSpec::Weak);
        assert_eq!(
            prefix("http://Example.COM:80/x/").host,
            HostSpec::Name("example.com".into())
        );
        assert_eq!(prefix("http://127.0.0.1:80/").host, HostSpec::Ip(LOCAL));
        assert_eq!(
            prefix("https://[::1]:443/").to_string(),
            "https://[::1]:443/"
        );
        for bad in [
            "ftp://+:21/",
            "http://+/",
            "http://+:0/",
            "http://+:99999/",
            "http://+:x/",
            "http://a b:80/",
            "http://+:80/a/../b/",
            "http://+:80/a?b",
            "http://[zz]:80/",
            "http://+:80/%41/",
            "http://:80/",
        ] {
            assert!(UrlPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn precedence() {
        let mut t = RoutingTable::default();
        t.insert(prefix("http://*:80/"), "weak").unwrap();
        assert_eq!(route(&t, "anything", "/x"), Some("weak"));
        t.insert(prefix("http://127.0.0.1:80/"), "ip").unwrap();
        assert_eq!(route(&t, "anything", "/x"), Some("ip"));
        t.insert(prefix("http://www.example.com:80/"), "name")
            .unwrap();
        assert_eq!(route(&t, "www.example.com", "/x"), Some("name"));
        assert_eq!(route(&t, "other", "/x"), Some("ip"));
        t.insert(prefix("http://+:80/api/"), "strong-api").unwrap();
        assert_eq!(route(&t, "www.example.com", "/api/v1"), Some("strong-api"));
        assert_eq!(route(&t, "www.example.com", "/other"), Some("name"));
        // A strong wildcard takes every host, even over a longer name path.
        t.insert(prefix("http://www.example.com:80/api/deeper/"), "name-deep")
            .unwrap();
        assert_eq!(
            route(&t, "www.example.com", "/api/deeper/x"),
            Some("strong-api")
        );
    }

    #[test]
    fn longest_path_wins_case_insensitively() {
        let mut t = RoutingTable::default();
        t.insert(prefix("http://+:80/"), "root").unwrap();
        t.insert(prefix("http://+:80/a/b/"), "ab").unwrap();
        t.insert(prefix("http://+:80/a/"), "a").unwrap();
        assert_eq!(route(&t, "h", "/a/b/c"), Some("ab"));
        assert_eq!(route(&t, "h", "/A/B"), Some("ab"));
        assert_eq!(route(&t, "h", "/a/bc"), Some("a"));
        assert_eq!(route(&t, "h", "/a"), Some("a"));
        assert_eq!(route(&t, "h", "/ab"), Some("root"));
        assert_eq!(route(&t, "h", "/ÄRGER/"), Some("root"));
        t.insert(prefix("http://+:80/ärger/"), "umlaut").unwrap();
        assert_eq!(route(&t, "h", "/ÄRGER/x"), Some("umlaut"));
    }

    #[test]
    fn misses_and_removal() {
        let mut t = RoutingTable::default();
        t.insert(prefix("http://www.example.com:80/app/"), "app")
            .unwrap();
        assert_eq!(
            t.route(Scheme::Http, 80, "www.example.com", LOCAL, "/other"),
            Routed::NoPath
        );
        assert_eq!(
            t.route(Scheme::Http, 80, "elsewhere", LOCAL, "/app/"),
            Routed::NoHost
        );
        assert_eq!(
            t.route(Scheme::Http, 81, "www.example.com", LOCAL, "/app/"),
            Routed::NoHost
        );
        assert_eq!(
            t.route(Scheme::Https, 80, "www.example.com", LOCAL, "/app/"),
            Routed::NoHost
        );
        assert_eq!(
            t.insert(prefix("http://WWW.example.com:80/APP"), "again"),
            Err(&"app")
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.remove(&prefix("http://www.example.com:80/app/")),
            Some("app")
        );
        assert!(t.is_empty());
        assert_eq!(t.ports().count(), 0);
    }

    #[test]
    fn reservations_cover_deeper_paths() {
        let r = prefix("http://+:8080/app/");
        assert!(r.covers(&prefix("http://+:8080/app/")));
        assert!(r.covers(&prefix("http://+:8080/app/deeper/")));
        assert!(!r.covers(&prefix("http://+:8080/apple/")));
        assert!(!r.covers(&prefix("http://*:8080/app/")));
        assert!(!r.covers(&prefix("http://+:8081/app/")));
    }

    #[test]
    fn a_copy_changes_apart_from_the_table_it_came_from() {
        let mut table = RoutingTable::default();
        table.insert(prefix("http://a.example:80/"), "a").unwrap();
        let mut copy = table.clone();
        copy.insert(prefix("http://b.example:80/"), "b").unwrap();
        copy.remove(&prefix("http://a.example:80/"));
        assert_eq!(route(&table, "a.example", "/"), Some("a"));
        assert_eq!(route(&table, "b.example", "/"), None);
        assert_eq!(route(&copy, "a.example", "/"), None);
        assert_eq!(route(&copy, "b.example", "/"), Some("b"));
        assert_eq!((table.len(), copy.len()), (1, 1));
    }
}
