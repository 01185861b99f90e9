//! `--server https://HOST/`: the RPC endpoint reached through an RPC
//! proxy with RPC over HTTP v2 ([MS-RPCH]), as Windows clients reach RPC
//! and DCOM servers through port 443. The HTTP channels log on with Basic
//! (the --user and password), over TLS verified against the system's
//! roots, the certificates of this machine's server (its certificate
//! store) and --ca-file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use msrpc::client::{ClientAuth, Connection, Options, ProxyRequest};

/// A proxy URL: `https://HOST[:PORT][/PATH][?SERVER:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// The RPC server to reach, as the proxy's query names it; None: the
    /// proxy's own host on ncacn_http's ports.
    pub target: Option<String>,
}

impl ProxyUrl {
    pub fn parse(text: &str) -> Result<ProxyUrl> {
        let (tls, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("'{text}' is not an http:// or https:// URL");
        };
        let (authority, path_query) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (path, target) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string()).filter(|q| !q.is_empty())),
            None => (path_query, None),
        };
        let path = if path.is_empty() || path == "/" {
            "/rpc/rpcproxy.dll".to_string()
        } else {
            path.to_string()
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| anyhow!("{text}: an IPv6 address needs its closing ']'"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| anyhow!("{text}: '{p}' is not a port"))?,
                None => default_port,
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse()
                        .map_err(|_| anyhow!("{text}: '{p}' is not a port"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            bail!("{text}: no host");
        }
        Ok(ProxyUrl {
            tls,
            host,
            port,
            path,
            target,
        })
    }
}

/// The TLS client: the system's roots, this machine's server's
/// certificates, and `ca_file`.
fn tls_config(state_dir: &Path, ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    let mut pems = Vec::new();
    let store = certstore::Store::for_state_dir(state_dir);
    if let Ok(list) = store.list() {
        for cert in list {
            if let Ok((pem, _)) = store.export(&cert.thumbprint, false) {
                pems.push(pem.into_bytes());
            }
        }
    }
    if let Some(path) = ca_file {
        pems.push(
            std::fs::read(path)
                .with_context(|| format!("cannot read --ca-file {}", path.display()))?,
        );
    }
    for pem in pems {
        for cert in pem_certificates(&pem) {
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The certificates of a PEM text.
fn pem_certificates(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(|c| c.ok())
        .collect()
}

/// The IN channels' lifetime (their Content-Length), as Windows clients
/// use: 1 GiB; a successor replaces each when half of it is sent.
const IN_CHANNEL_LIFETIME: u32 = 1 << 30;

/// A stream to the proxy, TLS or not.
trait ProxyStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ProxyStream for T {}

async fn open(
    url: &ProxyUrl,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Box<dyn ProxyStream>> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| anyhow!("{}:{} does not answer in 10 seconds", url.host, url.port))?
    .with_context(|| format!("cannot connect to {}:{}", url.host, url.port))?;
    tcp.set_nodelay(true)?;
    let Some(connector) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|_| anyhow!("'{}' is not a host name", url.host))?;
    let stream = connector.connect(name, tcp).await.with_context(|| {
        format!(
            "TLS with {}:{} (is its certificate trusted? --ca-file adds one)",
            url.host, url.port
        )
    })?;
    Ok(Box::new(stream))
}

/// Connects through the proxy; says where, as `ncacn_http:…`.
pub async fn connect(
    url: &ProxyUrl,
    auth: Option<ClientAuth>,
    state_dir: &Path,
    ca_file: Option<&Path>,
) -> Result<(Connection, String)> {
    let authorization = match &auth {
        Some(a) if a.ticket.is_none() => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", a.user, a.password))
        )),
        Some(_) => bail!("the RPC proxy's HTTP channel logs on with a password: give --user"),
        None => None,
    };
    let tls = if url.tls {
        Some(tokio_rustls::TlsConnector::from(Arc::new(tls_config(
            state_dir, ca_file,
        )?)))
    } else {
        None
    };
    let targets = match &url.target {
        Some(t) => vec![t.clone()],
        None => [crate::rpc::HTTP_EPM_PORT, crate::rpc::HTTP_FALLBACK_PORT]
            .iter()
            .map(|p| format!("{}:{p}", url.host))
            .collect(),
    };
    let options = Options {
        auth,
        ..Options::default()
    };
    let mut last = None;
    for target in &targets {
        let request = ProxyRequest {
            host: url.host.clone(),
            path_and_query: format!("{}?{target}", url.path),
            authorization: authorization.clone(),
        };
        let in_stream = open(url, tls.as_ref()).await?;
        let out_stream = open(url, tls.as_ref()).await?;
        // Successor channels, when the channels' lifetimes run low.
        let (reopen_url, reopen_tls) = (url.clone(), tls.clone());
        let opener: msrpc::client::ChannelOpener<Box<dyn ProxyStream>> = Box::new(move || {
            let (url, tls) = (reopen_url.clone(), reopen_tls.clone());
            Box::pin(async move {
                open(&url, tls.as_ref())
                    .await
                    .map_err(|e| std::io::Error::other(format!("{e:#}")))
            })
        });
        let connected = Connection::over_http_proxy_recycling(
            in_stream,
            out_stream,
            &request,
            options.clone(),
            opener,
            IN_CHANNEL_LIFETIME,
        )
        .await;
        match connected {
            Ok(conn) => {
                let scheme = if url.tls { "https" } else { "http" };
                let reached = format!(
                    "ncacn_http:{target} via {scheme}://{}:{}{}",
                    url.host, url.port, url.path
                );
                return Ok((conn, reached));
            }
            Err(e) => last = Some(anyhow!("{target}: {e}")),
        }
    }
    let error = last.unwrap_or_else(|| anyhow!("no target"));
    let hint = if error.to_string().contains("401") {
        " (the proxy wants a logon: --user and its password)"
    } else {
        ""
    };
    Err(error).with_context(|| {
        format!(
            "cannot reach the RPC endpoint through the RPC proxy at {}:{}{hint}",
            url.host, url.port
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_their_defaults() {
        let u = ProxyUrl::parse("https://web1/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str(), u.target),
            (true, "web1", 443, "/rpc/rpcproxy.dll", None)
        );
        let u = ProxyUrl::parse("http://[::1]:8080/rpc/rpcproxy.dll?web1:8593").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8080));
        assert_eq!(u.target.as_deref(), Some("web1:8593"));
        assert!(ProxyUrl::parse("ftp://web1").is_err());
        assert!(ProxyUrl::parse("https://web1:x/").is_err());
        assert!(ProxyUrl::parse("https://").is_err());
    }
}
