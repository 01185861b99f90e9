//! What the activation service reads from `/LM/W3SVC`: sites with their
//! bindings and state, applications with their pools, and each
//! application pool's settings (inherited from `/LM/W3SVC/AppPools`).
//! From these come the URL prefixes each pool's queue serves.

use std::collections::BTreeMap;
use std::net::IpAddr;

use metabase::{GetMode, MbPath, Snapshot, Value};
use serde::Serialize;

pub use metabase::ids;

/// ServerState values (MD_SERVER_STATE_*).
pub mod server_state {
    pub const STARTING: u32 = 1;
    pub const STARTED: u32 = 2;
    pub const STOPPING: u32 = 3;
    pub const STOPPED: u32 = 4;
    pub const PAUSING: u32 = 5;
    pub const PAUSED: u32 = 6;
    pub const CONTINUING: u32 = 7;
}

/// ServerCommand values (MD_SERVER_COMMAND_*).
pub mod server_command {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const PAUSE: u32 = 3;
    pub const CONTINUE: u32 = 4;
}

/// AppPoolState and AppPoolCommand values.
pub mod pool_state {
    pub const STARTING: u32 = 1;
    pub const STARTED: u32 = 2;
    pub const STOPPING: u32 = 3;
    pub const STOPPED: u32 = 4;
    pub const COMMAND_START: u32 = 1;
    pub const COMMAND_STOP: u32 = 2;
}

/// One ServerBindings (or, `secure`, SecureBindings) entry, `IP:port:host`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Binding {
    pub ip: Option<IpAddr>,
    pub port: u16,
    pub host: Option<String>,
    /// From SecureBindings: served over TLS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secure: bool,
}

impl Binding {
    pub fn parse(text: &str) -> Result<Binding, String> {
        let text = text.trim();
        let bad = |why: &str| format!("'{text}' is not a binding (IP:port:host): {why}");
        let (ip, rest) = if let Some(r) = text.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| bad("unclosed IPv6 address"))?;
            let ip: IpAddr = r[..close].parse().map_err(|_| bad("bad IPv6 address"))?;
            let rest = r[close + 1..]
                .strip_prefix(':')
                .ok_or_else(|| bad("no port"))?;
            (Some(ip), rest)
        } else {
            let (ip, rest) = text.split_once(':').ok_or_else(|| bad("no port"))?;
            let ip = if ip.is_empty() {
                None
            } else {
                Some(ip.parse().map_err(|_| bad("bad IP address"))?)
            };
            (ip, rest)
        };
        let (port, host) = rest.split_once(':').unwrap_or((rest, ""));
        let port: u16 = port
            .trim()
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be 1 to 65535"))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if !host.is_empty() && !listener::routing::valid_host_name(&host) {
            return Err(bad(
                "a host name has letters, digits, '-' and '_' in labels separated by single dots",
            ));
        }
        let host = if host.is_empty() { None } else { Some(host) };
        Ok(Binding {
            ip,
            port,
            host,
            secure: false,
        })
    }

    /// The SSL endpoint a secure binding needs: `host:port` when it names
    /// a host (chosen by SNI), else `IP:port` (`0.0.0.0:port` for all).
    pub fn ssl_endpoint(&self) -> listener::tls::SslEndpoint {
        use listener::tls::SslEndpoint;
        match (&self.host, &self.ip) {
            (Some(h), _) => SslEndpoint::HostnamePort(h.clone(), self.port),
            (None, Some(ip)) => SslEndpoint::IpPort(std::net::SocketAddr::new(*ip, self.port)),
            (None, None) => {
                SslEndpoint::IpPort(std::net::SocketAddr::from(([0, 0, 0, 0], self.port)))
            }
        }
    }

    /// The URL prefix of `path` (`/` or `/app/`) on this binding, as
    /// HTTP.SYS spells it.
    pub fn prefix(&self, path: &str) -> String {
        let host = match (&self.host, &self.ip) {
            (Some(h), _) => h.clone(),
            (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => "*".to_string(),
        };
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

impl Binding {
    /// The binding as lists show it: `:8080:`, or `https :8443:` for a
    /// secure one ([`Binding::parse_label`] reads it back).
    pub fn label(&self) -> String {
        if self.secure {
            format!("https {self}")
        } else {
            self.to_string()
        }
    }

    /// Reads what [`Binding::label`] writes.
    pub fn parse_label(text: &str) -> Result<Binding, String> {
        match text.trim().strip_prefix("https ") {
            Some(rest) => Binding::parse(rest).map(|mut b| {
                b.secure = true;
                b
            }),
            None => Binding::parse(text),
        }
    }
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = match &self.ip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
            Some(ip) => ip.to_string(),
            None => String::new(),
        };
        write!(
            f,
            "{ip}:{}:{}",
            self.port,
            self.host.as_deref().unwrap_or("")
        )
    }
}

/// An application: a URL path of a site served by one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct App {
    /// `/` or `/path/` (ending in a slash).
    pub url: String,
    pub pool: String,
}

/// A site (`/LM/W3SVC/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Site {
    pub id: u32,
    pub comment: String,
    pub bindings: Vec<Binding>,
    /// Entries that did not parse, with the reason.
    pub bad_bindings: Vec<String>,
    pub auto_start: bool,
    pub apps: Vec<App>,
    pub log: LogSettings,
    /// SSLCertHash in force at the site: the certificate its secure
    /// bindings are served with (40 upper-case hex digits).
    pub ssl_cert_hash: Option<String>,
    /// SSLStoreName when it names a store other than `MY`: inetsrv has the
    /// one store (`inetsrv cert`), so the certificate is looked for there.
    pub other_ssl_store: Option<String>,
}

/// A site's W3C log settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogSettings {
    /// LogType 1 (enabled) with the W3C module.
    pub enabled: bool,
    pub directory: String,
    /// 0 by size, 1 daily, 2 weekly, 3 monthly, 4 hourly.
    pub period: u32,
    pub truncate_size: u64,
    pub fields: u32,
    pub local_time_rollover: bool,
}

/// An application pool's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolSettings {
    pub name: String,
    pub auto_start: bool,
    pub max_processes: u32,
    pub pinging_enabled: bool,
    /// Seconds.
    pub ping_interval: u32,
    pub ping_response_time: u32,
    pub startup_time_limit: u32,
    pub shutdown_time_limit: u32,
    /// Minutes (0: never).
    pub periodic_restart_time: u32,
    pub periodic_restart_requests: u32,
    /// `hh:mm`, local time.
    pub periodic_restart_schedule: Vec<(u32, u32)>,
    /// Kilobytes (0: no limit).
    pub periodic_restart_memory: u32,
    pub periodic_restart_private_memory: u32,
    pub rapid_fail_protection: bool,
    /// Minutes.
    pub rapid_fail_interval: u32,
    pub rapid_fail_max_crashes: u32,
    /// 1: drop the connection when stopped; 2: answer 503.
    pub load_balancer_capabilities: u32,
    /// Minutes (0: never).
    pub idle_timeout: u32,
    pub queue_length: u32,
    pub disallow_overlapping_rotation: bool,
    pub disallow_rotation_on_config_change: bool,
    /// 0 LocalSystem, 1 LocalService, 2 NetworkService, 3 the user in
    /// WAMUserName.
    pub identity_type: u32,
    pub wam_user: String,
}

impl PoolSettings {
    /// Settings that the worker process itself depends on: a change
    /// recycles the pool (unless DisallowRotationOnConfigChange).
    pub fn process_differs(&self, other: &PoolSettings) -> bool {
        self.identity_type != other.identity_type
            || self.wam_user != other.wam_user
            || self.periodic_restart_requests != other.periodic_restart_requests
    }
}

/// Everything the activation service acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Model {
    pub sites: BTreeMap<u32, Site>,
    /// By lower-case name (pool names ignore case, as key names do).
    pub pools: BTreeMap<String, PoolSettings>,
    /// IIs5IsolationModeEnabled: one process ([`IIS5_POOL`]) serves every
    /// site, application pools are not used, and the global filters see
    /// connections' raw data.
    pub iis5_isolation: bool,
    /// Whether `/LM/W3SVC/Filters` lists an enabled filter (in IIS 5
    /// isolation mode, the raw-data channel is opened for them).
    pub global_filters: bool,
    /// In IIS 5 isolation mode, the one process's settings (see
    /// [`Model::in_effect`]).
    pub iis5_process: Option<PoolSettings>,
}

/// The one process of IIS 5 isolation mode (the inetinfo role), as a
/// pool: its queue's and worker's name.
pub const IIS5_POOL: &str = "IIS5Isolation";

/// IIs5IsolationModeEnabled (absent: FALSE, as IIS 6 installs it).
const IIS5_ISOLATION_MODE_ENABLED: u32 = 9203;

fn path(text: &str) -> MbPath {
    MbPath::parse(text).unwrap_or_default()
}

fn dword(s: &Snapshot, p: &MbPath, id: u32, default: u32) -> u32 {
    s.effective_dword(p, id).unwrap_or(default)
}

fn string(s: &Snapshot, p: &MbPath, id: u32) -> String {
    match s.effective(p, id) {
        Some(Value::String(v)) | Some(Value::ExpandSz(v)) => v,
        _ => String::new(),
    }
}

fn own_string(s: &Snapshot, p: &MbPath, id: u32) -> Option<String> {
    s.lookup(p, id, GetMode::Own)
        .ok()
        .flatten()
        .and_then(|(prop, _)| prop.value.as_str().map(str::to_string))
}

impl Model {
    pub fn read(s: &Snapshot) -> Model {
        let mut model = Model::default();
        let pools_path = path("/LM/W3SVC/AppPools");
        if let Some(pools) = s.find(&pools_path) {
            for key in pools.children() {
                if !key.key_type().eq_ignore_ascii_case("IIsApplicationPool") {
                    continue;
                }
                let Ok(p) = pools_path.join(key.name()) else {
                    continue;
                };
                let settings = read_pool(s, &p, key.name());
                model.pools.insert(key.name().to_lowercase(), settings);
            }
        }
        let w3svc = path("/LM/W3SVC");
        if let Some(service) = s.find(&w3svc) {
            for key in service.children() {
                let Ok(id) = key.name().parse::<u32>() else {
                    continue;
                };
                if !key.key_type().eq_ignore_ascii_case("IIsWebServer") {
                    continue;
                }
                let Ok(site_path) = w3svc.join(key.name()) else {
                    continue;
                };
                model.sites.insert(id, read_site(s, &site_path, id));
            }
        }
        model.global_filters = s.find(&path("/LM/W3SVC/Filters")).is_some_and(|filters| {
            filters.children().any(|f| {
                f.key_type().eq_ignore_ascii_case("IIsFilter")
                    && !f.name().eq_ignore_ascii_case("Compression")
                    && !matches!(
                        f.property(ids::FILTER_ENABLED).map(|p| &p.value),
                        Some(Value::Dword(0))
                    )
            })
        });
        // Only a value set counts: the schema's default is TRUE (an IIS 5
        // upgrade's), while IIS 6 installs FALSE.
        let iis5 = s
            .lookup(&w3svc, IIS5_ISOLATION_MODE_ENABLED, GetMode::PartialPath)
            .ok()
            .flatten()
            .and_then(|(p, _)| p.value.as_dword())
            .is_some_and(|on| on != 0);
        if iis5 {
            model.iis5_isolation = true;
            model.iis5_process = Some(read_pool(s, &pools_path, IIS5_POOL));
        }
        model
    }

    /// What the service runs: the model itself, or in IIS 5 isolation
    /// mode every application in the one process, whose settings are the
    /// pools' common ones (those of `/LM/W3SVC/AppPools`). The pools stay
    /// configured (the CLI and WMI see them); they are just not used.
    pub fn in_effect(mut self) -> Model {
        if let Some(process) = self.iis5_process.take() {
            for app in self
                .sites
                .values_mut()
                .flat_map(|site| site.apps.iter_mut())
            {
                app.pool = IIS5_POOL.to_string();
            }
            self.pools = BTreeMap::from([(IIS5_POOL.to_lowercase(), process)]);
        }
        self
    }

    /// The pool an application names, if it exists.
    pub fn pool(&self, name: &str) -> Option<&PoolSettings> {
        self.pools.get(&name.to_lowercase())
    }
}

fn read_site(s: &Snapshot, site_path: &MbPath, id: u32) -> Site {
    let mut bindings = Vec::new();
    let mut bad_bindings = Vec::new();
    for (id, secure) in [(ids::SERVER_BINDINGS, false), (ids::SECURE_BINDINGS, true)] {
        if let Ok(Some((prop, _))) = s.lookup(site_path, id, GetMode::Own) {
            if let Value::MultiSz(entries) = &prop.value {
                for entry in entries.iter().filter(|e| !e.trim().is_empty()) {
                    match Binding::parse(entry) {
                        Ok(mut b) => {
                            b.secure = secure;
                            if !bindings.contains(&b) {
                                bindings.push(b);
                            }
                        }
                        Err(e) => bad_bindings.push(e),
                    }
                }
            }
        }
    }
    let ssl_cert_hash = match s.effective(site_path, ids::SSL_CERT_HASH) {
        Some(Value::Binary(hash)) if hash.len() == 20 => Some(hex::encode_upper(hash)),
        _ => None,
    };
    let other_ssl_store = Some(string(s, site_path, ids::SSL_STORE_NAME))
        .filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case("MY"));
    let mut apps = Vec::new();
    if let Ok(root) = site_path.join("ROOT") {
        if s.find(&root).is_some() {
            let base = root.depth();
            let _ = s.walk(&root, |p, key| {
                let is_root = p.depth() == base;
                let is_app = is_root
                    || key
                        .property(ids::APP_ROOT)
                        .and_then(|v| v.value.as_str())
                        .is_some_and(|v| !v.is_empty());
                if !is_app {
                    return;
                }
                let mut url = String::from("/");
                for part in &p.parts()[base..] {
                    url.push_str(part);
                    url.push('/');
                }
                let pool = string(s, p, ids::APP_POOL_ID);
                let pool = if pool.is_empty() {
                    "DefaultAppPool".to_string()
                } else {
                    pool
                };
                apps.push(App { url, pool });
            });
        }
    }
    let log_dir = string(s, site_path, ids::LOG_FILE_DIRECTORY);
    Site {
        id,
        comment: own_string(s, site_path, ids::SERVER_COMMENT).unwrap_or_default(),
        bindings,
        bad_bindings,
        auto_start: dword(s, site_path, ids::SERVER_AUTO_START, 1) != 0,
        apps,
        ssl_cert_hash,
        other_ssl_store,
        log: LogSettings {
            enabled: dword(s, site_path, ids::LOG_TYPE, 1) == 1,
            directory: log_dir,
            period: dword(s, site_path, ids::LOG_FILE_PERIOD, 1),
            truncate_size: u64::from(dword(s, site_path, ids::LOG_FILE_TRUNCATE_SIZE, 20 << 20)),
            fields: dword(s, site_path, ids::LOG_EXT_FILE_FLAGS, 0),
            local_time_rollover: dword(s, site_path, ids::LOG_FILE_LOCALTIME_ROLLOVER, 0) != 0,
        },
    }
}

fn read_pool(s: &Snapshot, p: &MbPath, name: &str) -> PoolSettings {
    let schedule = match s.effective(p, ids::PERIODIC_RESTART_SCHEDULE) {
        Some(Value::MultiSz(entries)) => entries
            .iter()
            .filter_map(|e| {
                let (h, m) = e.trim().split_once(':')?;
                let (h, m): (u32, u32) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
                (h < 24 && m < 60).then_some((h, m))
            })
            .collect(),
        _ => Vec::new(),
    };
    PoolSettings {
        name: name.to_string(),
        auto_start: dword(s, p, ids::APP_POOL_AUTO_START, 1) != 0,
        max_processes: dword(s, p, ids::MAX_PROCESSES, 1).max(1),
        pinging_enabled: dword(s, p, ids::PINGING_ENABLED, 1) != 0,
        ping_interval: dword(s, p, ids::PING_INTERVAL, 30).max(1),
        ping_response_time: dword(s, p, ids::PING_RESPONSE_TIME, 90).max(1),
        startup_time_limit: dword(s, p, ids::STARTUP_TIME_LIMIT, 90).max(1),
        shutdown_time_limit: dword(s, p, ids::SHUTDOWN_TIME_LIMIT, 90).max(1),
        periodic_restart_time: dword(s, p, ids::PERIODIC_RESTART_TIME, 1740),
        periodic_restart_requests: dword(s, p, ids::PERIODIC_RESTART_REQUESTS, 0),
        periodic_restart_schedule: schedule,
        periodic_restart_memory: dword(s, p, ids::PERIODIC_RESTART_MEMORY, 0),
        periodic_restart_private_memory: dword(s, p, ids::PERIODIC_RESTART_PRIVATE_MEMORY, 0),
        rapid_fail_protection: dword(s, p, ids::RAPID_FAIL_PROTECTION, 1) != 0,
        rapid_fail_interval: dword(s, p, ids::RAPID_FAIL_PROTECTION_INTERVAL, 5).max(1),
        rapid_fail_max_crashes: dword(s, p, ids::RAPID_FAIL_PROTECTION_MAX_CRASHES, 5).max(1),
        load_balancer_capabilities: dword(s, p, ids::LOAD_BALANCER_CAPABILITIES, 2),
        idle_timeout: dword(s, p, ids::IDLE_TIMEOUT, 20),
        queue_length: dword(s, p, ids::APP_POOL_QUEUE_LENGTH, 1000).max(10),
        disallow_overlapping_rotation: dword(s, p, ids::DISALLOW_OVERLAPPING_ROTATION, 0) != 0,
        disallow_rotation_on_config_change: dword(s, p, ids::DISALLOW_ROTATION_ON_CONFIG_CHANGE, 0)
            != 0,
        identity_type: dword(s, p, ids::APP_POOL_IDENTITY_TYPE, 2),
        wam_user: string(s, p, ids::WAM_USER_NAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metabase::Metabase;

    #[test]
    fn bindings() {
        let b = Binding::parse(":80:").unwrap();
        assert_eq!((b.ip, b.port, b.host.clone()), (None, 80, None));
        assert_eq!(b.prefix("/"), "http://*:80/");
        let h = Binding::parse("10.0.0.1:8080:WWW.Example.com").unwrap();
        assert_eq!(h.prefix("/app/"), "http://www.example.com:8080/app/");
        assert_eq!(h.to_string(), "10.0.0.1:8080:www.example.com");
        let ip = Binding::parse("127.0.0.1:81:").unwrap();
        assert_eq!(ip.prefix("/"), "http://127.0.0.1:81/");
        let v6 = Binding::parse("[::1]:82:").unwrap();
        assert_eq!(v6.prefix("/"), "http://[::1]:82/");
        assert_eq!(Binding::parse(":80").unwrap().port, 80);
        for bad in ["", "80", ":0:", ":99999:", "x:80:", "[::1:80:"] {
            assert!(Binding::parse(bad).is_err(), "{bad}");
        }
        // A secure binding: https prefixes, its SSL endpoint, its label.
        let s = Binding::parse_label("https :8443:").unwrap();
        assert!(s.secure);
        assert_eq!(s.prefix("/"), "https://*:8443/");
        assert_eq!(s.to_string(), ":8443:", "as SecureBindings holds it");
        assert_eq!(s.label(), "https :8443:");
        assert_eq!(s.ssl_endpoint().to_string(), "0.0.0.0:8443");
        let named = Binding::parse_label("https 10.0.0.1:443:shop.test").unwrap();
        assert_eq!(named.ssl_endpoint().to_string(), "shop.test:443");
        let ip = Binding::parse_label("https 10.0.0.1:443:").unwrap();
        assert_eq!(ip.ssl_endpoint().to_string(), "10.0.0.1:443");
        assert!(!Binding::parse_label(":80:").unwrap().secure);
    }

    #[test]
    fn sites_apps_and_pools() {
        let mb = Metabase::empty();
        let p = |s: &str| MbPath::parse(s).unwrap();
        let set = |t: &mut metabase::Txn, path: &str, prop: &str, v: &[&str]| {
            t.set_text(
                &p(path),
                prop,
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        mb.write(|t| {
            t.create_key(&p("/LM/W3SVC"), "IIsWebService")?;
            set(t, "/LM/W3SVC", "AppPoolId", &["DefaultAppPool"])?;
            t.create_key(&p("/LM/W3SVC/AppPools"), "IIsApplicationPools")?;
            set(t, "/LM/W3SVC/AppPools", "PingInterval", &["5"])?;
            t.create_key(
                &p("/LM/W3SVC/AppPools/DefaultAppPool"),
                "IIsApplicationPool",
            )?;
            t.create_key(&p("/LM/W3SVC/AppPools/Shop"), "IIsApplicationPool")?;
            set(t, "/LM/W3SVC/AppPools/Shop", "MaxProcesses", &["3"])?;
            set(
                t,
                "/LM/W3SVC/AppPools/Shop",
                "PeriodicRestartSchedule",
                &["03:30", "25:00", "x"],
            )?;
            t.create_key(&p("/LM/W3SVC/1"), "IIsWebServer")?;
            // One the metabase takes but the service cannot use (an empty
            // DNS label), as a hand edit might leave.
            set(
                t,
                "/LM/W3SVC/1",
                "ServerBindings",
                &[":80:", ":81:a..b", ":80:"],
            )?;
            set(t, "/LM/W3SVC/1", "ServerComment", &["Default Web Site"])?;
            t.create_key(&p("/LM/W3SVC/1/ROOT"), "IIsWebVirtualDir")?;
            t.create_key(&p("/LM/W3SVC/1/ROOT/shop"), "IIsWebVirtualDir")?;
            set(
                t,
                "/LM/W3SVC/1/ROOT/shop",
                "AppRoot",
                &["/LM/W3SVC/1/ROOT/shop"],
            )?;
            set(t, "/LM/W3SVC/1/ROOT/shop", "AppPoolId", &["Shop"])?;
            t.create_key(&p("/LM/W3SVC/1/ROOT/shop/img"), "IIsWebDirectory")?;
            t.create_key(&p("/LM/W3SVC/1/ROOT/docs"), "IIsWebVirtualDir")?;
            t.create_key(&p("/LM/W3SVC/Info"), "IIsWebInfo")?;
            t.create_key(&p("/LM/W3SVC/2"), "IIsWebServer")?;
            set(t, "/LM/W3SVC/2", "ServerAutoStart", &["FALSE"])?;
            // IIS's own store name is the one inetsrv has; another is noted.
            set(t, "/LM/W3SVC/1", "SSLStoreName", &["my"])?;
            set(t, "/LM/W3SVC/2", "SSLStoreName", &["WebHosting"])
        })
        .unwrap();
        let m = Model::read(&mb.snapshot());
        assert_eq!(m.sites.len(), 2);
        let site = &m.sites[&1];
        assert_eq!(site.comment, "Default Web Site");
        assert_eq!(site.bindings.len(), 1);
        assert_eq!(site.bad_bindings.len(), 1);
        assert_eq!(
            site.apps,
            vec![
                App {
                    url: "/".into(),
                    pool: "DefaultAppPool".into()
                },
                App {
                    url: "/shop/".into(),
                    pool: "Shop".into()
                },
            ]
        );
        assert!(!m.sites[&2].auto_start && m.sites[&2].apps.is_empty());
        assert_eq!(site.other_ssl_store, None);
        assert_eq!(m.sites[&2].other_ssl_store.as_deref(), Some("WebHosting"));
        let shop = m.pool("shop").unwrap();
        assert_eq!((shop.max_processes, shop.ping_interval), (3, 5));
        assert_eq!(shop.periodic_restart_schedule, vec![(3, 30)]);
        assert_eq!(m.pool("DefaultAppPool").unwrap().max_processes, 1);
        assert_eq!(m.pool("DefaultAppPool").unwrap().identity_type, 2);
        // Not set means worker process isolation mode, whatever the
        // schema's default (TRUE, for IIS 5 upgrades) says.
        assert!(!m.iis5_isolation);

        // IIS 5 isolation mode: every application in one process, whose
        // settings are the pools' common ones; the pools stay configured.
        mb.write(|t| set(t, "/LM/W3SVC", "IIs5IsolationModeEnabled", &["TRUE"]))
            .unwrap();
        let configured = Model::read(&mb.snapshot());
        assert!(configured.pool("Shop").is_some());
        let m = configured.in_effect();
        assert!(m.iis5_isolation);
        assert_eq!(m.pools.keys().collect::<Vec<_>>(), vec!["iis5isolation"]);
        assert_eq!(m.pool(IIS5_POOL).unwrap().ping_interval, 5);
        assert!(m.sites[&1].apps.iter().all(|a| a.pool == IIS5_POOL));
    }
}
