//! TLS, terminated here as HTTP.SYS terminates SSL in the kernel: the SSL
//! configuration (which certificate serves which endpoint: HTTP.SYS's
//! `SslBindingInfo`, edited by `inetsrv sslcert` and by the activation
//! service for sites' `SSLCertHash`), the rustls server configurations
//! built from it, and the handshake that turns an accepted connection on an
//! https endpoint into a decrypted stream plus the facts about it that
//! travel with every request.
//!
//! Bindings are chosen as HTTP.SYS chooses them: the SNI host name and port
//! first (`hostnameport` bindings), then the exact local address and port,
//! then the wildcard address (`0.0.0.0` / `[::]`) and port. A connection
//! no binding covers is closed after its ClientHello, and logged.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use httpapi::proto::{ClientCertInfo, TlsInfo};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::http::ErrorReason as R;

/// Whether a binding asks clients for a certificate. rustls has no
/// renegotiation, so the request is made in the first handshake (IIS 6
/// renegotiated when a URL needed one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertMode {
    #[default]
    Off,
    /// Asked for; a client without one is still served (and a URL that
    /// requires one answers 403.7).
    Negotiate,
    /// A handshake without a certificate the CA list accepts fails.
    Require,
}

impl std::str::FromStr for ClientCertMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "negotiate" => Ok(Self::Negotiate),
            "require" => Ok(Self::Require),
            _ => Err(format!("'{s}' is not off, negotiate or require")),
        }
    }
}

/// Where a binding applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SslEndpoint {
    /// `IP:port` (`0.0.0.0:443` for every IPv4 address, `[::]:443` for IPv6).
    IpPort(SocketAddr),
    /// `host:port`, chosen by the name the client sends (SNI).
    HostnamePort(String, u16),
}

impl SslEndpoint {
    pub fn parse_ipport(text: &str) -> Result<SslEndpoint, String> {
        text.parse::<SocketAddr>()
            .map(SslEndpoint::IpPort)
            .map_err(|_| format!("'{text}' is not IP:port (for example 0.0.0.0:443 or [::]:443)"))
    }

    pub fn parse_hostnameport(text: &str) -> Result<SslEndpoint, String> {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("'{text}' is not host:port (for example www.example.com:443)")
        })?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("'{port}' in '{text}' is not a port"))?;
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
            });
        if !valid || host.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "'{host}' is not a host name (use --ipport for addresses)"
            ));
        }
        Ok(SslEndpoint::HostnamePort(host, port))
    }

    pub fn port(&self) -> u16 {
        match self {
            SslEndpoint::IpPort(a) => a.port(),
            SslEndpoint::HostnamePort(_, p) => *p,
        }
    }
}

impl std::fmt::Display for SslEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SslEndpoint::IpPort(a) => write!(f, "{a}"),
            SslEndpoint::HostnamePort(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// One SSL binding as the configuration file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslBinding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipport: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostnameport: Option<String>,
    /// The certificate's SHA-1 thumbprint (IIS's SSLCertHash).
    pub cert_hash: String,
    #[serde(default)]
    pub client_cert: ClientCertMode,
    /// CA certificates (PEM) client certificates must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Who made it: absent for `inetsrv sslcert`, `W3SVC/<id>` for a
    /// site's SSLCertHash (the service keeps those in step with the site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl SslBinding {
    pub fn new(endpoint: &SslEndpoint, cert_hash: &str) -> SslBinding {
        let (ipport, hostnameport) = match endpoint {
            SslEndpoint::IpPort(a) => (Some(*a), None),
            SslEndpoint::HostnamePort(..) => (None, Some(endpoint.to_string())),
        };
        SslBinding {
            ipport,
            hostnameport,
            cert_hash: cert_hash.to_string(),
            client_cert: ClientCertMode::Off,
            client_ca: None,
            source: None,
        }
    }

    pub fn endpoint(&self) -> Result<SslEndpoint, String> {
        match (&self.ipport, &self.hostnameport) {
            (Some(a), None) => Ok(SslEndpoint::IpPort(*a)),
            (None, Some(h)) => SslEndpoint::parse_hostnameport(h),
            _ => Err("a binding has exactly one of ipport and hostnameport".into()),
        }
    }
}

/// The SSL configuration file (`STATE/sslcert.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslConfig {
    pub bindings: Vec<SslBinding>,
}

impl SslConfig {
    /// Reads the file; a missing file is no bindings.
    pub fn load(path: &Path) -> Result<SslConfig, String> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SslConfig::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file whole (a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                format!("{}: {e}", path.display())
            })
    }

    /// Reads, changes and writes the file under a lock (`.sslcert.json.lock`
    /// beside it), so the service and the command line never lose each
    /// other's edits. The file is written only when `change` changed it.
    pub fn edit<T>(
        path: &Path,
        change: impl FnOnce(&mut SslConfig) -> Result<T, String>,
    ) -> Result<T, String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock_path = path.with_file_name(format!(".{name}.lock"));
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("{}: {e}", lock_path.display()))?;
        let mut config = SslConfig::load(path)?;
        let before = config.clone();
        let out = change(&mut config)?;
        if config != before {
            config.save(path)?;
        }
        Ok(out)
    }

    pub fn find(&self, endpoint: &SslEndpoint) -> Option<&SslBinding> {
        self.bindings
            .iter()
            .find(|b| b.endpoint().as_ref() == Ok(endpoint))
    }

    /// Adds a binding; with `replace`, one for the same endpoint is
    /// replaced, else that is an error (as `netsh http add sslcert`).
    pub fn add(&mut self, binding: SslBinding, replace: bool) -> Result<(), String> {
        let endpoint = binding.endpoint()?;
        if let Some(i) = self
            .bindings
            .iter()
            .position(|b| b.endpoint().as_ref() == Ok(&endpoint))
        {
            if !replace {
                return Err(format!(
                    "{endpoint} already has a binding (certificate {}); delete it first or use --replace",
                    self.bindings[i].cert_hash
                ));
            }
            self.bindings[i] = binding;
        } else {
            self.bindings.push(binding);
        }
        Ok(())
    }

    pub fn delete(&mut self, endpoint: &SslEndpoint) -> Result<SslBinding, String> {
        let i = self
            .bindings
            .iter()
            .position(|b| b.endpoint().as_ref() == Ok(endpoint))
            .ok_or_else(|| format!("there is no SSL binding for {endpoint}"))?;
        Ok(self.bindings.remove(i))
    }
}

/// What serves one binding.
pub(crate) struct Served {
    pub(crate) config: Arc<ServerConfig>,
    /// The server certificate's subject and issuer (HTTPS_SERVER_*).
    subject: String,
    issuer: String,
    /// When the stapled OCSP response goes out of date (seconds since 1970).
    ocsp_until: Option<i64>,
}

/// The bindings in force, built into rustls configurations.
#[derive(Default)]
pub(crate) struct TlsTable {
    by_addr: HashMap<SocketAddr, Arc<Served>>,
    by_host: HashMap<(String, u16), Arc<Served>>,
    /// The first moment a stapled OCSP response goes out of date: the table
    /// is rebuilt then, so no client is sent a stale one.
    pub stale_at: Option<i64>,
}

/// TLS settings of the whole listener (httpsys.json).
#[derive(Clone, Debug)]
pub(crate) struct TlsPolicy {
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    pub suites: Vec<rustls::SupportedCipherSuite>,
}

/// The protocol versions by the names `httpsys.json` uses.
pub fn parse_versions(
    names: &[String],
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    names
        .iter()
        .map(
            |n| match n.to_ascii_uppercase().replace([' ', '_'], "").as_str() {
                "TLSV1.2" | "TLS1.2" => Ok(&rustls::version::TLS12),
                "TLSV1.3" | "TLS1.3" => Ok(&rustls::version::TLS13),
                "SSLV2" | "SSLV3" | "TLSV1" | "TLSV1.0" | "TLS1.0" | "TLSV1.1" | "TLS1.1" => {
                    Err(format!(
                        "{n} is broken and not offered by this server (TLSv1.2 and TLSv1.3 are)"
                    ))
                }
                _ => Err(format!(
                    "'{n}' is not a protocol version (TLSv1.2, TLSv1.3)"
                )),
            },
        )
        .collect()
}

/// Cipher suites by their IANA or rustls names; empty for the defaults
/// (forward-secret AEAD suites only).
pub fn parse_suites(names: &[String]) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let all = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
    if names.is_empty() {
        return Ok(rustls::crypto::aws_lc_rs::DEFAULT_CIPHER_SUITES.to_vec());
    }
    names
        .iter()
        .map(|n| {
            let want = n.to_ascii_uppercase();
            all.iter()
                .find(|s| {
                    let name = format!("{:?}", s.suite());
                    name == want
                        || name
                            .strip_prefix("TLS_")
                            .is_some_and(|rest| format!("TLS13_{rest}") == want)
                })
                .copied()
                .ok_or_else(|| {
                    let known: Vec<String> =
                        all.iter().map(|s| format!("{:?}", s.suite())).collect();
                    format!(
                        "'{n}' is not a cipher suite this server has ({})",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

fn client_verifier(
    binding: &SslBinding,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, String> {
    if binding.client_cert == ClientCertMode::Off {
        return Ok(None);
    }
    let ca = binding
        .client_ca
        .as_ref()
        .ok_or("asking for client certificates needs --client-ca (the CAs they must chain to)")?;
    let text = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| format!("{}: not PEM certificates: {e:?}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in it", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match binding.client_cert {
        ClientCertMode::Negotiate => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder.build().map(Some).map_err(|e| e.to_string())
}

/// A binding's rustls configuration, with a warning when the certificate
/// is served without the OCSP response stored for it.
fn server_config(
    binding: &SslBinding,
    store: &certstore::Store,
    policy: &TlsPolicy,
    resumption: &Resumption,
) -> Result<(Served, Option<String>), String> {
    let loaded = store.load(&binding.cert_hash).map_err(|e| e.to_string())?;
    let key = loaded.certified_key().map_err(|e| e.to_string())?;
    let warning = loaded
        .ocsp_problem()
        .map(|p| format!("certificate {}: {p}", loaded.info.thumbprint));
    let ocsp_until = match (&loaded.ocsp, &key.ocsp) {
        (Some(Ok((_, status))), Some(_)) => status.next_update,
        _ => None,
    };
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = policy.suites.clone();
    let builder = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&policy.versions)
        .map_err(|e| format!("the protocol versions and cipher suites do not fit together: {e}"))?;
    let builder = match client_verifier(binding)? {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(Single(key)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = resumption.cache.clone();
    // Without a ticket key (no randomness for one), the session cache
    // alone resumes sessions.
    if let Some(ticketer) = &resumption.ticketer {
        config.ticketer = ticketer.clone();
    }
    config.send_tls13_tickets = 2;
    Ok((
        Served {
            config: Arc::new(config),
            subject: loaded.info.subject,
            issuer: loaded.info.issuer,
            ocsp_until,
        },
        warning,
    ))
}

/// Always this certificate.
#[derive(Debug)]
struct Single(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Single {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Session resumption state shared by every binding, kept across reloads:
/// a session cache (TLS 1.2 ids, TLS 1.3 stateful) and a ticket key.
pub(crate) struct Resumption {
    cache: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
}

impl Resumption {
    pub fn new() -> Resumption {
        Resumption {
            cache: rustls::server::ServerSessionMemoryCache::new(16 * 1024),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new().ok(),
        }
    }
}

impl TlsTable {
    /// Builds every binding; a binding that cannot be built (its
    /// certificate gone, its CA file unreadable) is left out and named in
    /// the returned problems.
    pub fn build(
        config: &SslConfig,
        store: &certstore::Store,
        policy: &TlsPolicy,
        resumption: &Resumption,
    ) -> (TlsTable, Vec<String>) {
        let mut table = TlsTable::default();
        let mut problems = Vec::new();
        let mut built: HashMap<(String, ClientCertMode, Option<PathBuf>), Arc<Served>> =
            HashMap::new();
        for binding in &config.bindings {
            let endpoint = match binding.endpoint() {
                Ok(e) => e,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let key = (
                binding.cert_hash.to_ascii_uppercase(),
                binding.client_cert,
                binding.client_ca.clone(),
            );
            let served = match built.get(&key) {
                Some(s) => s.clone(),
                None => match server_config(binding, store, policy, resumption) {
                    Ok((s, warning)) => {
                        problems.extend(warning);
                        table.stale_at = match (table.stale_at, s.ocsp_until) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        let s = Arc::new(s);
                        built.insert(key, s.clone());
                        s
                    }
                    Err(e) => {
                        problems.push(format!("SSL binding {endpoint}: {e}"));
                        continue;
                    }
                },
            };
            match endpoint {
                SslEndpoint::IpPort(a) => {
                    table.by_addr.insert(a, served);
                }
                SslEndpoint::HostnamePort(h, p) => {
                    table.by_host.insert((h, p), served);
                }
            }
        }
        (table, problems)
    }

    pub(crate) fn choose(&self, sni: Option<&str>, local: SocketAddr) -> Option<&Arc<Served>> {
        let port = local.port();
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(s) = self.by_host.get(&(name.clone(), port)) {
                return Some(s);
            }
            // A wildcard binding (`*.example.com:443`) covers one label.
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(s) = self.by_host.get(&(format!("*.{parent}"), port)) {
                    return Some(s);
                }
            }
        }
        let ip = match local.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        let any = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.by_addr
            .get(&SocketAddr::new(ip, port))
            .or_else(|| self.by_addr.get(&SocketAddr::new(any, port)))
            // An IPv6 connection with only an IPv4 wildcard binding (or
            // the reverse): the port is what the administrator bound.
            .or_else(|| {
                let other = match any {
                    IpAddr::V4(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                };
                self.by_addr.get(&SocketAddr::new(other, port))
            })
    }
}

/// Why a connection on an https endpoint was not served.
pub(crate) struct Refused {
    pub reason: R,
    pub detail: String,
}

/// The answer to plain HTTP sent to an https port.
fn plain_http_answer() -> Vec<u8> {
    let body = "<html><head><title>Bad Request</title></head><body><h1>Bad Request</h1>\r\n<p>This port speaks HTTPS: use an https:// URL.</p></body></html>\r\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the first byte on an https endpoint says the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstByte {
    /// A TLS handshake record (0x16): a ClientHello follows.
    Handshake,
    /// An upper-case letter: a request line, someone typed http://.
    PlainHttp,
    Other,
}

impl FirstByte {
    pub(crate) fn of(byte: u8) -> FirstByte {
        match byte {
            0x16 => FirstByte::Handshake,
            b if b.is_ascii_uppercase() => FirstByte::PlainHttp,
            _ => FirstByte::Other,
        }
    }
}

/// Does the TLS handshake of an accepted connection within `limit`.
pub(crate) async fn handshake(
    table: &TlsTable,
    tcp: TcpStream,
    local: SocketAddr,
    limit: Duration,
) -> Result<(TlsStream<TcpStream>, TlsInfo), Refused> {
    let refused = |reason, detail: String| Refused { reason, detail };
    let deadline = tokio::time::Instant::now() + limit;
    // A TLS connection starts with a handshake record (0x16); a request
    // line means someone typed http:// for an https port.
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Err(_) => {
            return Err(refused(
                R::TimerTlsHandshake,
                "no bytes before the handshake timeout".into(),
            ))
        }
        Ok(Err(_)) | Ok(Ok(0)) => {
            return Err(refused(
                R::ConnectionDropped,
                "closed before the handshake".into(),
            ))
        }
        Ok(Ok(_)) => {}
    }
    match FirstByte::of(first[0]) {
        FirstByte::Handshake => {}
        FirstByte::PlainHttp => {
            let mut tcp = tcp;
            let _ =
                tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&plain_http_answer()))
                    .await;
            let _ = tcp.shutdown().await;
            return Err(refused(
                R::TlsPlainHttp,
                "plain HTTP on an https endpoint".into(),
            ));
        }
        FirstByte::Other => {
            return Err(refused(
                R::TlsHandshake,
                format!("not a TLS record (first byte {:#04x})", first[0]),
            ))
        }
    }
    let acceptor = LazyConfigAcceptor::new(Acceptor::default(), tcp);
    let start = match tokio::time::timeout_at(deadline, acceptor).await {
        Err(_) => {
            return Err(refused(
                R::TimerTlsHandshake,
                "the ClientHello did not arrive in time".into(),
            ))
        }
        Ok(Err(e)) => return Err(refused(R::TlsHandshake, format!("ClientHello: {e}"))),
        Ok(Ok(start)) => start,
    };
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let Some(served) = table.choose(sni.as_deref(), local) else {
        return Err(refused(
            R::TlsNoBinding,
            format!(
                "no SSL binding for {local}{} (inetsrv sslcert add)",
                sni.as_deref()
                    .map(|s| format!(" or {s}:{}", local.port()))
                    .unwrap_or_default()
            ),
        ));
    };
    let stream =
        match tokio::time::timeout_at(deadline, start.into_stream(served.config.clone())).await {
            Err(_) => {
                return Err(refused(
                    R::TimerTlsHandshake,
                    "the handshake did not finish in time".into(),
                ))
            }
            Ok(Err(e)) => return Err(refused(R::TlsHandshake, e.to_string())),
            Ok(Ok(s)) => s,
        };
    let info = facts(&stream, sni, served);
    Ok((stream, info))
}

/// What the request's owner learns of the connection.
fn facts(stream: &TlsStream<TcpStream>, server_name: Option<String>, served: &Served) -> TlsInfo {
    let (_, conn) = stream.get_ref();
    let suite = conn.negotiated_cipher_suite();
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let cipher = suite
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    // The bulk cipher's key: AES-128 or AES-256 / ChaCha20 (256).
    let key_size = if cipher.contains("AES_128") { 128 } else { 256 };
    let client_certificate = conn.peer_certificates().and_then(|c| c.first()).map(|der| {
        use x509_parser::prelude::{FromDer, X509Certificate};
        match X509Certificate::from_der(der) {
            Ok((_, c)) => ClientCertInfo {
                subject: c.subject().to_string(),
                issuer: c.issuer().to_string(),
                serial: c.raw_serial_as_string(),
                der: der.to_vec(),
            },
            Err(_) => ClientCertInfo {
                der: der.to_vec(),
                ..ClientCertInfo::default()
            },
        }
    });
    TlsInfo {
        protocol: protocol.into(),
        cipher,
        key_size,
        server_name,
        server_subject: served.subject.clone(),
        server_issuer: served.issuer.clone(),
        client_certificate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print_as_netsh_writes_them() {
        assert_eq!(
            SslEndpoint::parse_ipport("0.0.0.0:443")
                .unwrap()
                .to_string(),
            "0.0.0.0:443"
        );
        assert_eq!(
            SslEndpoint::parse_ipport("[::]:8443").unwrap().to_string(),
            "[::]:8443"
        );
        assert!(SslEndpoint::parse_ipport("www:443").is_err());
        assert_eq!(
            SslEndpoint::parse_hostnameport("WWW.Example.com.:443").unwrap(),
            SslEndpoint::HostnamePort("www.example.com".into(), 443)
        );
        for bad in [
            "www.example.com",
            "www:0",
            "10.0.0.1:443",
            "a b:443",
            ":443",
        ] {
            assert!(SslEndpoint::parse_hostnameport(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_file_keeps_one_binding_per_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sslcert.json");
        let mut config = SslConfig::load(&file).unwrap();
        let ep = SslEndpoint::parse_ipport("0.0.0.0:8443").unwrap();
        config.add(SslBinding::new(&ep, "AA"), false).unwrap();
        let e = config.add(SslBinding::new(&ep, "BB"), false).unwrap_err();
        assert!(e.contains("already has a binding"), "{e}");
        config.add(SslBinding::new(&ep, "BB"), true).unwrap();
        let sni = SslEndpoint::parse_hostnameport("www.example.com:8443").unwrap();
        config.add(SslBinding::new(&sni, "CC"), false).unwrap();
        config.save(&file).unwrap();
        let again = SslConfig::load(&file).unwrap();
        assert_eq!(again, config);
        assert_eq!(again.find(&ep).unwrap().cert_hash, "BB");
        let mut again = again;
        again.delete(&sni).unwrap();
        assert!(again.delete(&sni).unwrap_err().contains("no SSL binding"));
    }

    #[test]
    fn policy_names_are_checked() {
        assert_eq!(
            parse_versions(&["TLSv1.2".into(), "tlsv1.3".into()])
                .unwrap()
                .len(),
            2
        );
        let e = parse_versions(&["TLSv1.1".into()]).unwrap_err();
        assert!(e.contains("not offered"), "{e}");
        assert!(!parse_suites(&[]).unwrap().is_empty());
        let one = parse_suites(&["TLS13_AES_256_GCM_SHA384".into()]).unwrap();
        assert_eq!(one.len(), 1);
        let e = parse_suites(&["TLS_RSA_WITH_RC4_128_SHA".into()]).unwrap_err();
        assert!(e.contains("is not a cipher suite"), "{e}");
    }

    #[test]
    fn bindings_are_chosen_by_name_then_address_then_wildcard() {
        let dir = tempfile::tempdir().unwrap();
        let store = certstore::Store::for_state_dir(dir.path());
        let make = |n: &str| {
            store
                .create_self_signed(&[n.to_string()], None, certstore::NewKey::EcdsaP256, 5)
                .unwrap()
                .thumbprint
        };
        let (any, exact, named, wild) = (make("any"), make("exact"), make("named"), make("wild"));
        let mut config = SslConfig::default();
        let add = |config: &mut SslConfig, ep: SslEndpoint, t: &str| {
            config.add(SslBinding::new(&ep, t), false).unwrap()
        };
        add(
            &mut config,
            SslEndpoint::parse_ipport("0.0.0.0:443").unwrap(),
            &any,
        );
        add(
            &mut config,
            SslEndpoint::parse_ipport("127.0.0.1:443").unwrap(),
            &exact,
        );
        add(
            &mut config,
            SslEndpoint::parse_hostnameport("www.example.com:443").unwrap(),
            &named,
        );
        add(
            &mut config,
            SslEndpoint::parse_hostnameport("*.example.org:443").unwrap(),
            &wild,
        );
        let mut broken = SslBinding::new(&SslEndpoint::parse_ipport("0.0.0.0:444").unwrap(), "00");
        broken.cert_hash = "0".repeat(40);
        config.bindings.push(broken);
        let policy = TlsPolicy {
            versions: parse_versions(&["TLSv1.2".into(), "TLSv1.3".into()]).unwrap(),
            suites: parse_suites(&[]).unwrap(),
        };
        let (table, problems) = TlsTable::build(&config, &store, &policy, &Resumption::new());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("0.0.0.0:444"), "{problems:?}");
        let subject = |sni: Option<&str>, local: &str| {
            table
                .choose(sni, local.parse().unwrap())
                .map(|s| s.subject.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            subject(Some("WWW.example.com"), "127.0.0.1:443"),
            "CN=named"
        );
        assert_eq!(subject(Some("a.example.org"), "10.0.0.1:443"), "CN=wild");
        assert_eq!(subject(Some("other.test"), "127.0.0.1:443"), "CN=exact");
        assert_eq!(subject(None, "10.0.0.1:443"), "CN=any");
        assert_eq!(subject(None, "[::ffff:127.0.0.1]:443"), "CN=exact");
        assert_eq!(subject(None, "[::1]:443"), "CN=any");
        assert_eq!(subject(None, "10.0.0.1:444"), "");
    }
}
