//! The management service: what IIS 6's management tools read from a
//! running server, served by the service host itself on its own https
//! binding (by default `https://127.0.0.1:8172/`, the IIS management
//! service's port). It is an application of the listener like any other:
//! it owns its URL prefix through the request-queue API (crate
//! `httpapi`), and the listener does its TLS with an SSL binding for its
//! address (made with the server's self-signed certificate when there is
//! none).
//!
//! - [`metrics`]: the performance counters (Web Service, HTTP Service
//!   Request Queues, W3SVC_W3WP, the activation service) as Prometheus
//!   metrics at `/metrics`.
//! - [`service`]: the requests: the pages, who may ask (administrators
//!   of the user database, with a session or HTTP Basic for a scraper;
//!   failures rate-limited per address), the security headers every
//!   answer carries.
//! - [`session`]: logons, their cookies and CSRF tokens.
//! - [`procinfo`]: worker processes' CPU time and memory, from /proc.
//! - [`api`]: the JSON the console's page uses: the tree, property
//!   sheets, changes through the metabase's validated writes, commands,
//!   live counters.

pub mod api;
pub mod metrics;
pub mod procinfo;
pub mod service;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use listener::tls::{SslBinding, SslConfig, SslEndpoint};
use listener::{Listener, ListenerConfig};

/// The IIS management service's port.
pub const DEFAULT_PORT: u16 = 8172;

/// The friendly name of the self-signed certificate a first run makes,
/// which the console's binding uses when the address has none.
pub const SELF_SIGNED_NAME: &str = "localhost (self-signed)";

/// The request queue the console owns.
pub const QUEUE_NAME: &str = "InetsrvManagement";
/// The request queue of `/metrics`' own binding.
pub const METRICS_QUEUE_NAME: &str = "InetsrvMetrics";

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console's SSL binding for {address}: {why}")]
    Binding { address: SocketAddr, why: String },
    #[error("the console cannot use the listener: {0}")]
    Listener(#[from] httpapi::Error),
}

/// What the console reads: the running listener and activation service.
#[derive(Clone)]
pub struct Sources {
    pub listener: Arc<Listener>,
    pub was: was::Was,
    pub users: userdb::UserDb,
    /// The configuration, read and changed as the CLI does.
    pub files: metabase::MetabaseFiles,
}

impl Sources {
    /// The service's counters now.
    pub async fn sample(&self) -> metrics::Sample {
        let stats = self.listener.statistics();
        // Every configured site, with zeros until it has traffic, so its
        // series exist from the start.
        let mut ids = stats.site_ids();
        ids.extend(self.was.sites().await.iter().map(|s| s.id));
        let pools = self.was.pools().await;
        ids.sort_unstable();
        ids.dedup();
        metrics::Sample {
            service: stats.snapshot(None),
            sites: ids
                .into_iter()
                .map(|id| (id, stats.snapshot(Some(id))))
                .collect(),
            queues: self.listener.queue_counters(),
            cache: Some(self.listener.cache_counters()),
            usage: pools
                .iter()
                .flat_map(|p| &p.workers)
                .filter_map(|w| procinfo::usage(w.pid).map(|u| (w.pid, u)))
                .collect(),
            pools,
        }
    }
}

/// The management service's settings: `STATE/management.json`
/// (`{"Address": "127.0.0.1:8172", "Enabled": true, "MetricsAddress":
/// "127.0.0.1:9172"}`; each optional), which `inetsrv start --console
/// ADDR:PORT`, `--no-console` and `--metrics ADDR:PORT` override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub address: SocketAddr,
    pub enabled: bool,
    /// `/metrics` alone on a plain-http binding of its own, if set.
    pub metrics_address: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            address: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            enabled: true,
            metrics_address: None,
        }
    }
}

/// The settings file of a state directory.
pub fn settings_file(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("management.json")
}

impl Settings {
    /// Reads the settings file; a missing file is the defaults, a file
    /// that does not read is an error that says where and why.
    pub fn load(state_dir: &Path) -> Result<Settings, String> {
        let path = settings_file(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let Some(fields) = json.as_object() else {
            return Err(format!("{}: expected a JSON object", path.display()));
        };
        let mut settings = Settings::default();
        for (name, value) in fields {
            match (name.as_str(), value) {
                ("Address", serde_json::Value::String(text)) => {
                    settings.address = text.parse().map_err(|_| {
                        format!(
                            "{}: Address '{text}' is not ADDRESS:PORT (127.0.0.1:8172, [::1]:8172)",
                            path.display()
                        )
                    })?;
                }
                ("MetricsAddress", serde_json::Value::String(text)) => {
                    settings.metrics_address = Some(text.parse().map_err(|_| {
                        format!(
                            "{}: MetricsAddress '{text}' is not ADDRESS:PORT",
                            path.display()
                        )
                    })?);
                }
                ("Enabled", serde_json::Value::Bool(on)) => settings.enabled = *on,
                ("Address" | "MetricsAddress" | "Enabled", other) => {
                    return Err(format!(
                        "{}: {name} cannot be {other} (Address and MetricsAddress are strings, Enabled true or false)",
                        path.display()
                    ))
                }
                (other, _) => {
                    return Err(format!(
                        "{}: unknown setting '{other}' (Address, MetricsAddress, Enabled)",
                        path.display()
                    ))
                }
            }
        }
        Ok(settings)
    }
}

/// The running console.
pub struct Console {
    /// Its address, as a URL.
    pub url: String,
    /// The SSL binding's certificate (SHA-1 thumbprint).
    pub certificate: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The URL of an address: `https://127.0.0.1:8172/`, `https://[::1]:8172/`.
pub fn url_of(address: SocketAddr) -> String {
    match address.ip() {
        IpAddr::V4(ip) => format!("https://{ip}:{}/", address.port()),
        IpAddr::V6(ip) => format!("https://[{ip}]:{}/", address.port()),
    }
}

/// Starts the console at `address` on the current tokio runtime.
pub async fn start(address: SocketAddr, sources: Sources) -> Result<Console, ConsoleError> {
    let config = sources.listener.config().clone();
    let certificate =
        ensure_binding(&config, address).map_err(|why| ConsoleError::Binding { address, why })?;
    for problem in sources.listener.reload_tls() {
        tracing::warn!("SSL bindings: {problem}");
    }
    let url = url_of(address);
    let task = serve(&config, QUEUE_NAME, "https", address, sources, false).await?;
    Ok(Console {
        url,
        certificate,
        task,
    })
}

/// Serves `/metrics` alone on a plain-http binding of its own (for a
/// Prometheus that scrapes without TLS): anyone who reaches the address
/// reads the counters, so it belongs on loopback or a monitoring network.
pub async fn start_metrics(address: SocketAddr, sources: Sources) -> Result<Console, ConsoleError> {
    let config = sources.listener.config().clone();
    let task = serve(&config, METRICS_QUEUE_NAME, "http", address, sources, true).await?;
    Ok(Console {
        url: url_of(address).replacen("https://", "http://", 1),
        certificate: String::new(),
        task,
    })
}

/// Owns `scheme://address/` through the request-queue API and serves it.
async fn serve(
    config: &ListenerConfig,
    queue_name: &str,
    scheme: &str,
    address: SocketAddr,
    sources: Sources,
    metrics_only: bool,
) -> Result<tokio::task::JoinHandle<()>, ConsoleError> {
    let session = httpapi::Session::connect(&config.control_socket).await?;
    let queue = session.create_queue(queue_name).await?;
    // A prefix with an IP address is a host name to the router (the Host
    // header); the service checks the address each request came to.
    let prefix = if address.ip().is_unspecified() {
        format!("{scheme}://+:{}/", address.port())
    } else {
        url_of(address).replacen("https", scheme, 1)
    };
    queue.add_url(&prefix, 0).await?;
    let served = service::Service::new(address, sources, metrics_only);
    Ok(tokio::spawn(served.run(session, queue)))
}

/// The SSL binding that serves `address`: its own, the port's wildcard
/// one, or one made now with the server's self-signed certificate.
fn ensure_binding(config: &ListenerConfig, address: SocketAddr) -> Result<String, String> {
    let own = SslEndpoint::IpPort(address);
    let any = SslEndpoint::IpPort(SocketAddr::new(
        match address.ip() {
            IpAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
        },
        address.port(),
    ));
    SslConfig::edit(&config.ssl_config_file, |ssl| {
        if let Some(b) = ssl.find(&own).or_else(|| ssl.find(&any)) {
            return Ok(b.cert_hash.clone());
        }
        let thumbprint = self_signed(&config.cert_store_dir)?;
        let mut binding = SslBinding::new(&own, &thumbprint);
        binding.source = Some("console".into());
        ssl.add(binding, false)?;
        tracing::info!(%address, certificate = %thumbprint, "SSL binding made for the management console");
        Ok(thumbprint)
    })
}

/// The server's self-signed certificate (made on the first run; made
/// again if it was deleted).
fn self_signed(store_dir: &Path) -> Result<String, String> {
    let store = certstore::Store::at(store_dir);
    let stored = store.list().map_err(|e| e.to_string())?;
    if let Some(c) = stored
        .into_iter()
        .find(|c| c.name.as_deref() == Some(SELF_SIGNED_NAME))
    {
        return Ok(c.thumbprint);
    }
    let names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    store
        .create_self_signed(
            &names,
            Some(SELF_SIGNED_NAME),
            certstore::NewKey::EcdsaP256,
            365 * 2,
        )
        .map(|c| c.thumbprint)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_file_with_clear_errors() {
        let dir = std::env::temp_dir().join(format!("console-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Settings::load(&dir), Ok(Settings::default()));
        let write = |text: &str| std::fs::write(settings_file(&dir), text).unwrap();
        write(r#"{"Address": "[::1]:9172", "Enabled": false}"#);
        assert_eq!(
            Settings::load(&dir),
            Ok(Settings {
                address: "[::1]:9172".parse().unwrap(),
                enabled: false,
                metrics_address: None,
            })
        );
        write(r#"{"Address": "localhost"}"#);
        assert!(Settings::load(&dir)
            .unwrap_err()
            .contains("is not ADDRESS:PORT"));
        write(r#"{"Port": 1}"#);
        assert!(Settings::load(&dir)
            .unwrap_err()
            .contains("unknown setting 'Port'"));
        write("{");
        assert!(Settings::load(&dir)
            .unwrap_err()
            .contains("management.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
