//! The listener's settings. Names and defaults are HTTP.SYS's registry
//! parameters (HKLM\System\CurrentControlSet\Services\HTTP\Parameters);
//! a JSON file with those names overrides any of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::http::Limits;
use crate::url::UrlOptions;

/// A switch as the registry holds it (a DWORD, 0 or 1) or as JSON does.
fn registry_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Switch {
        Bool(bool),
        Dword(u32),
    }
    match Switch::deserialize(d)? {
        Switch::Bool(b) => Ok(b),
        Switch::Dword(0) => Ok(false),
        Switch::Dword(1) => Ok(true),
        Switch::Dword(n) => Err(serde::de::Error::custom(format!(
            "{n} is not a switch: use 0 or 1 (or false or true)"
        ))),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct ListenerConfig {
    pub max_field_length: usize,
    pub max_request_bytes: usize,
    pub url_segment_max_length: usize,
    pub url_segment_max_count: usize,
    /// Concurrent client connections; 0 sizes it from the descriptor
    /// limit (three quarters of it).
    pub max_connections: usize,
    #[serde(rename = "EnableNonUTF8")]
    #[serde(deserialize_with = "registry_bool")]
    pub enable_non_utf8: bool,
    #[serde(rename = "FavorUTF8")]
    #[serde(deserialize_with = "registry_bool")]
    pub favor_utf8: bool,
    #[serde(deserialize_with = "registry_bool")]
    pub percent_u_allowed: bool,
    #[serde(deserialize_with = "registry_bool")]
    pub allow_restricted_chars: bool,
    /// Seconds; fractions are accepted (tests use them).
    pub idle_connection_timeout: f64,
    pub header_wait_timeout: f64,
    pub entity_body_timeout: f64,
    pub drain_entity_body_timeout: f64,
    pub request_queue_timeout: f64,
    /// Bytes per second below which a response send is abandoned.
    pub min_send_rate: u64,
    /// The largest request body accepted (413 beyond); 0 for no limit,
    /// HTTP.SYS's own behaviour (IIS limits bodies per URL in the worker).
    pub max_request_entity_bytes: u64,
    /// The default request queue length (AppPoolQueueLength).
    pub default_queue_length: u32,
    /// Addresses endpoints listen on (HTTP.SYS's IP listen list).
    pub listen_addresses: Vec<IpAddr>,
    /// Where HTTPERR logs go; none turns error logging off.
    pub error_logging_dir: Option<PathBuf>,
    pub error_log_file_truncate_size: u64,
    /// How many HTTPERR files are kept (an inetsrv addition: HTTP.SYS
    /// keeps them all). With ErrorLogFileTruncateSize it bounds the
    /// directory, so a flood of refusals cannot fill the disk; 0 keeps
    /// every file.
    pub error_log_max_files: u32,
    /// How many request log (W3C) files each site keeps (an inetsrv
    /// addition; IIS keeps them all, as 0 does).
    #[serde(rename = "W3CLogMaxFiles")]
    pub w3c_log_max_files: u32,
    #[serde(deserialize_with = "registry_bool")]
    pub uri_enable_cache: bool,
    /// The largest response the cache keeps (UriMaxUriBytes).
    pub uri_max_uri_bytes: u64,
    /// The largest response head the cache keeps.
    pub uri_max_header_bytes: usize,
    /// Seconds an unused entry survives (UriScavengerPeriod).
    pub uri_scavenger_period: f64,
    /// The cache's total size (UriMaxCacheMegabyteCount).
    pub uri_max_cache_megabyte_count: u64,
    /// The control socket programs connect to.
    pub control_socket: PathBuf,
    /// The URL reservations (URL ACLs).
    pub url_acl_file: PathBuf,
    /// The SSL bindings (HTTP.SYS's SslBindingInfo), as `inetsrv sslcert`
    /// edits them.
    pub ssl_config_file: PathBuf,
    /// The certificate store the bindings name certificates in.
    pub cert_store_dir: PathBuf,
    /// TLS protocol versions offered: `TLSv1.2`, `TLSv1.3` (older ones are
    /// refused by name).
    pub ssl_protocols: Vec<String>,
    /// Cipher suites offered, by IANA name; empty for the defaults
    /// (forward-secret AEAD suites only).
    pub ssl_cipher_suites: Vec<String>,
    /// Seconds a TLS handshake may take, from accept to its end.
    pub ssl_handshake_timeout: f64,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            max_field_length: 16_384,
            max_request_bytes: 16_384,
            url_segment_max_length: 260,
            url_segment_max_count: 255,
            max_connections: 0,
            enable_non_utf8: true,
            favor_utf8: true,
            percent_u_allowed: true,
            allow_restricted_chars: false,
            idle_connection_timeout: 120.0,
            header_wait_timeout: 120.0,
            entity_body_timeout: 120.0,
            drain_entity_body_timeout: 120.0,
            request_queue_timeout: 120.0,
            min_send_rate: 150,
            max_request_entity_bytes: 0,
            default_queue_length: 1000,
            listen_addresses: vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            error_logging_dir: None,
            error_log_file_truncate_size: 1024 * 1024,
            error_log_max_files: 10,
            w3c_log_max_files: 0,
            uri_enable_cache: true,
            uri_max_uri_bytes: 256 * 1024,
            uri_max_header_bytes: 1024,
            uri_scavenger_period: 120.0,
            uri_max_cache_megabyte_count: 64,
            control_socket: PathBuf::from("run/httpapi.sock"),
            url_acl_file: PathBuf::from("urlacl.json"),
            ssl_config_file: PathBuf::from("sslcert.json"),
            cert_store_dir: PathBuf::from("certs"),
            ssl_protocols: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            ssl_cipher_suites: Vec::new(),
            ssl_handshake_timeout: 30.0,
        }
    }
}

impl ListenerConfig {
    /// The settings of a state directory: defaults with its paths, then
    /// `DIR/httpsys.json` if present.
    pub fn for_state_dir(dir: &Path) -> Result<ListenerConfig, String> {
        let file = dir.join("httpsys.json");
        let mut config = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str::<ListenerConfig>(&text)
                .map_err(|e| format!("{}: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ListenerConfig::default(),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let defaults = ListenerConfig::default();
        if config.control_socket == defaults.control_socket {
            config.control_socket = dir.join(&defaults.control_socket);
        }
        if config.url_acl_file == defaults.url_acl_file {
            config.url_acl_file = dir.join(&defaults.url_acl_file);
        }
        if config.ssl_config_file == defaults.ssl_config_file {
            config.ssl_config_file = dir.join(&defaults.ssl_config_file);
        }
        if config.cert_store_dir == defaults.cert_store_dir {
            config.cert_store_dir = dir.join(&defaults.cert_store_dir);
        }
        if config.error_logging_dir.is_none() {
            config.error_logging_dir = Some(dir.join("logs/HTTPERR"));
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("IdleConnectionTimeout", self.idle_connection_timeout),
            ("HeaderWaitTimeout", self.header_wait_timeout),
            ("EntityBodyTimeout", self.entity_body_timeout),
            ("DrainEntityBodyTimeout", self.drain_entity_body_timeout),
            ("RequestQueueTimeout", self.request_queue_timeout),
            ("UriScavengerPeriod", self.uri_scavenger_period),
            ("SslHandshakeTimeout", self.ssl_handshake_timeout),
        ];
        for (name, value) in positive {
            if !(value > 0.0 && value < 1e7) {
                return Err(format!(
                    "{name} must be a positive number of seconds, not {value}"
                ));
            }
        }
        if self.max_field_length < 64 || self.max_request_bytes < 64 {
            return Err("MaxFieldLength and MaxRequestBytes must be at least 64".into());
        }
        if self.url_segment_max_length == 0 || self.url_segment_max_count == 0 {
            return Err("UrlSegmentMaxLength and UrlSegmentMaxCount must be positive".into());
        }
        if self.listen_addresses.is_empty() {
            return Err("ListenAddresses may not be empty".into());
        }
        self.tls_policy()?;
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_field_length: self.max_field_length,
            max_request_bytes: self.max_request_bytes,
            url_segment_max_length: self.url_segment_max_length,
            url_segment_max_count: self.url_segment_max_count,
            ..Limits::default()
        }
    }

    pub fn url_options(&self) -> UrlOptions {
        UrlOptions {
            enable_non_utf8: self.enable_non_utf8,
            favor_utf8: self.favor_utf8,
            percent_u_allowed: self.percent_u_allowed,
            allow_restricted_chars: self.allow_restricted_chars,
        }
    }

    pub(crate) fn tls_policy(&self) -> Result<crate::tls::TlsPolicy, String> {
        let versions = crate::tls::parse_versions(&self.ssl_protocols)
            .map_err(|e| format!("SslProtocols: {e}"))?;
        if versions.is_empty() {
            return Err("SslProtocols may not be empty".into());
        }
        let suites = crate::tls::parse_suites(&self.ssl_cipher_suites)
            .map_err(|e| format!("SslCipherSuites: {e}"))?;
        Ok(crate::tls::TlsPolicy { versions, suites })
    }

    pub(crate) fn seconds(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_http_sys_defaults() {
        let c = ListenerConfig::default();
        assert_eq!((c.max_field_length, c.max_request_bytes), (16_384, 16_384));
        assert_eq!(
            (c.url_segment_max_length, c.url_segment_max_count),
            (260, 255)
        );
        assert_eq!(c.idle_connection_timeout, 120.0);
        assert_eq!(c.min_send_rate, 150);
        assert_eq!(c.default_queue_length, 1000);
        assert_eq!(c.uri_max_uri_bytes, 256 * 1024);
    }

    #[test]
    fn a_state_dir_file_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("httpsys.json"),
            r#"{"MaxFieldLength": 1000, "HeaderWaitTimeout": 0.5, "ListenAddresses": ["127.0.0.1"], "EnableNonUTF8": false}"#,
        )
        .unwrap();
        let c = ListenerConfig::for_state_dir(dir.path()).unwrap();
        assert_eq!(c.max_field_length, 1000);
        assert_eq!(c.header_wait_timeout, 0.5);
        assert!(!c.enable_non_utf8);
        assert_eq!(c.control_socket, dir.path().join("run/httpapi.sock"));
        assert_eq!(c.error_logging_dir, Some(dir.path().join("logs/HTTPERR")));
        std::fs::write(dir.path().join("httpsys.json"), r#"{"MaxFieldLenght": 1}"#).unwrap();
        let e = ListenerConfig::for_state_dir(dir.path()).unwrap_err();
        assert!(e.contains("MaxFieldLenght"), "{e}");
        std::fs::write(
            dir.path().join("httpsys.json"),
            r#"{"HeaderWaitTimeout": -1}"#,
        )
        .unwrap();
        assert!(ListenerConfig::for_state_dir(dir.path()).is_err());
        // Switches as the registry writes them.
        std::fs::write(dir.path().join("httpsys.json"), r#"{"UriEnableCache": 0}"#).unwrap();
        assert!(
            !ListenerConfig::for_state_dir(dir.path())
                .unwrap()
                .uri_enable_cache
        );
        std::fs::write(dir.path().join("httpsys.json"), r#"{"UriEnableCache": 2}"#).unwrap();
        let e = ListenerConfig::for_state_dir(dir.path()).unwrap_err();
        assert!(e.contains("use 0 or 1"), "{e}");
    }
}
