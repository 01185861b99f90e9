//! The RPC over HTTP proxy: [MS-RPCH] version 2's inbound and outbound
//! proxy roles at `/rpc/rpcproxy.dll` (and `/rpcwithcert/rpcproxy.dll`),
//! what IIS 6 ran as an ISAPI extension for Windows clients to reach RPC
//! and DCOM servers through port 443.
//!
//! The web server routes the URL prefixes to this request-queue
//! application (`httpapi`), which owns:
//!
//! - who may use it: the HTTP channel is authenticated against the
//!   server's users, with NTLM or Negotiate (the connection's handshake,
//!   [MS-NTHT]) or Basic (over TLS only), unless anonymous use is
//!   allowed;
//! - where it may go: the target `HOST:PORT` of the URL's query must be
//!   in `ValidPorts` (IIS 6's registry value, same syntax), by default the
//!   server's own ncacn_http endpoint;
//! - the relays (`relay.rs`): an RPC_OUT_DATA request becomes the OUT
//!   channel (CONN/A1 → A2, A3, and C1 → C2), an RPC_IN_DATA request the
//!   IN channel (CONN/B1 → B2), each a TCP connection to the server's
//!   ncacn_http endpoint, with the flow control and forwarding of
//!   3.2.1.5; an RPC_CONNECT request (version 1) the mixed proxy of
//!   3.1.2, one connection relayed both ways; echo requests are answered.
//!   Once a channel is open the proxy takes the client's connection over
//!   from the listener (it lives in the listener's process, as IIS 6's
//!   proxy lived in the web server) and relays without the request
//!   queue in between.
//! - channel recycling by the R1 sequences (IN_R1/A1 opening a successor
//!   IN channel, OUT_R1/A3 a successor OUT channel; relay.rs): with no
//!   table of virtual connections here, every successor is treated as a
//!   channel to another proxy would be, and the R2 sequences do not arise.

mod relay;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use httpapi::{Queue, Request, Response, Session};

/// The settings file in the state directory, IIS 6's
/// `HKLM\Software\Microsoft\Rpc\RpcProxy` as JSON.
pub const SETTINGS_FILE: &str = "rpcproxy.json";

/// The proxy's settings (`DIR/rpcproxy.json`; every field optional).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct Settings {
    /// Serve `/rpc/rpcproxy.dll` at all.
    pub enabled: bool,
    /// The sites whose bindings serve it.
    pub sites: Vec<u32>,
    /// `HOST:PORT[-PORT];…` the proxy may forward to; empty: the server's
    /// own ncacn_http endpoint under its names.
    pub valid_ports: String,
    /// Channels without a logon are served (as IIS 6's AllowAnonymous).
    pub allow_anonymous: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            enabled: true,
            sites: vec![1],
            valid_ports: String::new(),
            allow_anonymous: false,
        }
    }
}

impl Settings {
    /// The state directory's settings; defaults when the file is absent.
    /// A file that does not read is an error that says why.
    pub fn load(state_dir: &Path) -> Result<Settings, String> {
        let path = state_dir.join(SETTINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// One entry of ValidPorts: a host name (or `*`, or `*.suffix`) and a
/// port range.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Allowed {
    host: String,
    ports: std::ops::RangeInclusive<u16>,
}

/// Where the proxy may forward to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidPorts(Vec<Allowed>);

impl ValidPorts {
    /// `HOST:PORT;HOST:LOW-HIGH;…` (IIS 6's syntax).
    pub fn parse(text: &str) -> Result<ValidPorts, String> {
        let mut out = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (host, ports) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("ValidPorts entry '{entry}' is not HOST:PORT"))?;
            let port = |p: &str| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("ValidPorts entry '{entry}': '{p}' is not a port"))
            };
            let ports = match ports.split_once('-') {
                Some((low, high)) => port(low)?..=port(high)?,
                None => {
                    let p = port(ports)?;
                    p..=p
                }
            };
            if host.is_empty() {
                return Err(format!("ValidPorts entry '{entry}' has no host"));
            }
            out.push(Allowed {
                host: host.to_ascii_lowercase(),
                ports,
            });
        }
        Ok(ValidPorts(out))
    }

    /// The server's own endpoint under the names a client may give it.
    pub fn own(port: u16, names: &[String]) -> ValidPorts {
        ValidPorts(
            names
                .iter()
                .map(|n| Allowed {
                    host: n.to_ascii_lowercase(),
                    ports: port..=port,
                })
                .collect(),
        )
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.0.iter().any(|a| {
            let named = a.host == "*"
                || a.host == host
                || a.host
                    .strip_prefix("*.")
                    .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")));
            named && a.ports.contains(&port)
        })
    }
}

/// Checks a Basic logon: the web server's users.
pub trait Logons: Send + Sync {
    fn basic(&self, user: &str, password: &str) -> bool;
}

/// A connection to an RPC server's ncacn_http endpoint.
pub trait ServerStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ServerStream for T {}

/// The RPC server in this process: the channels for it are handed over
/// in memory instead of through a loopback TCP connection.
pub struct LocalServer {
    /// The names and port it is reached by.
    pub reached_as: ValidPorts,
    /// A new channel to it.
    pub connect: Box<dyn Fn(SocketAddr) -> Box<dyn ServerStream> + Send + Sync>,
}

/// The proxy as it runs.
pub struct Proxy {
    /// This process's own RPC server, when it has one.
    pub local: Option<LocalServer>,
    pub valid_ports: ValidPorts,
    pub allow_anonymous: bool,
    pub logons: Arc<dyn Logons>,
    /// NTLM's and Negotiate's accounts (the same users).
    pub acceptors: msrpc::security::Acceptors,
    /// NTLM handshakes under way, by client connection: the challenge
    /// goes out on one request, the answer comes on the next.
    pub handshakes: Mutex<HashMap<u64, msrpc::security::SecurityContext>>,
    /// An OUT channel's lifetime: its response's Content-Length, after
    /// half of which the server recycles it ([`OUT_CHANNEL_LIFETIME`]).
    pub out_channel_lifetime: u32,
    /// The logons a request's directory takes now (the site's settings:
    /// AuthFlags), by the context its prefix was added with and its path.
    pub schemes: SchemesOf,
}

/// Which logons a directory takes, by its prefix's context and its path.
pub type SchemesOf = Box<dyn Fn(u64, &str) -> Schemes + Send + Sync>;

/// Which logons the HTTP channel may use, as IIS's AuthFlags say of the
/// proxy's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schemes {
    /// AuthAnonymous: no logon (and the proxy's AllowAnonymous too).
    pub anonymous: bool,
    /// AuthBasic (over https only).
    pub basic: bool,
    /// AuthNTLM, Integrated Windows authentication: NTLM and Negotiate.
    pub integrated: bool,
}

impl Schemes {
    /// Every logon: for a proxy outside any site's settings.
    pub const ALL: Schemes = Schemes {
        anonymous: true,
        basic: true,
        integrated: true,
    };

    /// From AuthFlags (MD_AUTH_ANONYMOUS 1, MD_AUTH_BASIC 2, MD_AUTH_NT 4).
    pub fn from_auth_flags(flags: u32) -> Schemes {
        Schemes {
            anonymous: flags & 1 != 0,
            basic: flags & 2 != 0,
            integrated: flags & 4 != 0,
        }
    }
}

/// The OUT channel lifetime IIS 6's proxy announced: 1 GiB.
pub const OUT_CHANNEL_LIFETIME: u32 = 1 << 30;

/// Handshakes held at once; at the limit all held are dropped (those
/// clients are challenged again).
const MAX_HANDSHAKES: usize = 4096;

/// Serves `prefixes` (`https://+:443/rpc/rpcproxy.dll`, …, each with
/// the context [`Proxy::schemes`] is asked with: the site) on the listener
/// of `control_socket` until the task is dropped.
pub async fn start(
    control_socket: &Path,
    prefixes: &[(String, u64)],
    proxy: Proxy,
) -> httpapi::Result<tokio::task::JoinHandle<()>> {
    let session = Session::connect(control_socket).await?;
    let queue = session.create_queue("RpcProxy").await?;
    for (prefix, context) in prefixes {
        queue.add_url(prefix, *context).await?;
    }
    let proxy = Arc::new(proxy);
    Ok(tokio::spawn(async move {
        serve(session, queue, proxy).await;
    }))
}

async fn serve(_session: Session, mut queue: Queue, proxy: Arc<Proxy>) {
    loop {
        match queue.receive().await {
            Ok(request) => {
                tokio::spawn(Arc::clone(&proxy).handle(request));
            }
            Err(e) => {
                tracing::warn!("RPC proxy: the request queue ended: {e}");
                return;
            }
        }
    }
}

async fn reply(request: Request, response: Response) {
    if let Err(e) = request.respond(response).await {
        tracing::debug!("RPC proxy: an answer was not sent: {e}");
    }
}

/// A proxy error as 2.1.2.1.3 has it: 503, "RPC Error: <hex>".
fn rpc_error(code: u32, why: &str) -> Response {
    Response::new(503)
        .reason(&format!("RPC Error: {code:x}"))
        .header("Content-Type", "text/plain")
        .body(format!("{why}\r\n"))
}

/// ERROR_ACCESS_DENIED.
const ACCESS_DENIED: u32 = 5;
/// RPC_S_SERVER_UNAVAILABLE: the target does not answer.
const SERVER_UNAVAILABLE: u32 = 0x6ba;
/// RPC_S_PROTOCOL_ERROR.
const PROTOCOL_ERROR: u32 = 0x6c0;

impl Proxy {
    async fn handle(self: Arc<Self>, request: Request) {
        let method = request.method.clone();
        if !matches!(
            method.as_str(),
            "RPC_IN_DATA" | "RPC_OUT_DATA" | "RPC_CONNECT"
        ) {
            reply(
                request,
                Response::new(405)
                    .header("Allow", "RPC_IN_DATA, RPC_OUT_DATA, RPC_CONNECT")
                    .header("Content-Type", "text/plain")
                    .body("the RPC proxy takes RPC_IN_DATA, RPC_OUT_DATA and RPC_CONNECT\r\n"),
            )
            .await;
            return;
        }
        if let Err(response) = self.authenticate(&request) {
            reply(request, *response).await;
            return;
        }
        let (host, port) = match target(&request.url.query) {
            Some(t) => t,
            None => {
                let why = "the URL's query names no HOST:PORT to forward to";
                reply(request, rpc_error(PROTOCOL_ERROR, why)).await;
                return;
            }
        };
        let length: u64 = request
            .header_str("Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        // Version 1's RPC_CONNECT has no Content-Length at all.
        if length <= 0x10 && method != "RPC_CONNECT" {
            // An echo request (2.1.2.1.5): the echo response.
            reply(
                request,
                Response::new(200)
                    .reason("Success")
                    .header("Content-Type", "application/rpc")
                    .header("Connection", "Keep-Alive")
                    .body(msrpc::rts::Rts::echo().encode()),
            )
            .await;
            return;
        }
        if !self.valid_ports.allows(&host, port) {
            tracing::warn!(
                "RPC proxy: {} asked for {host}:{port}, which ValidPorts does not allow",
                request.remote
            );
            let why = format!("{host}:{port} is not in the proxy's ValidPorts");
            reply(request, rpc_error(ACCESS_DENIED, &why)).await;
            return;
        }
        let local = self
            .local
            .as_ref()
            .filter(|l| l.reached_as.allows(&host, port));
        let server = match local {
            Some(local) => Ok((local.connect)(request.remote)),
            None => connect(&host, port).await,
        };
        let server = match server {
            Ok(server) => server,
            Err(e) => {
                let why = format!("{host}:{port} does not answer: {e}");
                reply(request, rpc_error(SERVER_UNAVAILABLE, &why)).await;
                return;
            }
        };
        let outcome = match method.as_str() {
            "RPC_OUT_DATA" => relay::out_channel(request, server, self.out_channel_lifetime).await,
            "RPC_IN_DATA" => relay::in_channel(request, server).await,
            _ => relay::mixed(request, server).await,
        };
        if let Err(e) = outcome {
            tracing::debug!("RPC proxy: a {method} channel to {host}:{port} ended: {e}");
        }
    }

    /// The logon of a request, or the 401 that asks for one (or goes on
    /// with NTLM's handshake). Basic goes over TLS only: in clear it would
    /// hand the password to anyone on the path; NTLM never sends it.
    fn authenticate(&self, request: &Request) -> Result<(), Box<Response>> {
        let schemes = (self.schemes)(request.url_context, &request.url.path);
        if self.allow_anonymous && schemes.anonymous {
            return Ok(());
        }
        let challenge = || {
            let mut response = Response::new(401).header("Content-Type", "text/plain");
            let mut offered = Vec::new();
            if schemes.integrated {
                response = response
                    .header("WWW-Authenticate", "Negotiate")
                    .header("WWW-Authenticate", "NTLM");
                offered.push("NTLM, Negotiate");
            }
            if schemes.basic {
                response = response.header("WWW-Authenticate", "Basic realm=\"RPC proxy\"");
                offered.push("Basic over https");
            }
            let text = if offered.is_empty() {
                "the RPC proxy's directory allows no logon it takes (AuthFlags)\r\n".to_string()
            } else {
                format!(
                    "the RPC proxy needs a logon ({})\r\n",
                    offered.join(", or ")
                )
            };
            Box::new(response.body(text))
        };
        let Some(value) = request.header_str("Authorization") else {
            return Err(challenge());
        };
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("NTLM") || scheme.eq_ignore_ascii_case("Negotiate") {
            if !schemes.integrated {
                return Err(challenge());
            }
            return self.handshake(request, scheme, token.trim(), challenge);
        }
        if !scheme.eq_ignore_ascii_case("Basic") || !schemes.basic {
            return Err(challenge());
        }
        let encoded = token;
        if request.tls.is_none() {
            return Err(Box::new(
                Response::new(403)
                    .header("Content-Type", "text/plain")
                    .body("Basic logons to the RPC proxy go over https only\r\n"),
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(challenge());
        };
        // DOMAIN\user: the accounts are this server's.
        let user = user.rsplit_once('\\').map_or(user, |(_, u)| u);
        if self.logons.basic(user, password) {
            Ok(())
        } else {
            tracing::warn!(
                "RPC proxy: the logon of '{user}' from {} was refused",
                request.remote
            );
            Err(challenge())
        }
    }
}

impl Proxy {
    /// One leg of an NTLM (or Negotiate) handshake on the request's
    /// connection: the challenge in a 401, or the logon done.
    fn handshake(
        &self,
        request: &Request,
        scheme: &str,
        token: &str,
        challenge: impl Fn() -> Box<Response>,
    ) -> Result<(), Box<Response>> {
        use msrpc::security::{auth_level, auth_type, Leg, SecurityContext};
        let Ok(token) = base64::engine::general_purpose::STANDARD.decode(token) else {
            return Err(challenge());
        };
        let provider = if scheme.eq_ignore_ascii_case("NTLM") {
            auth_type::WINNT
        } else {
            auth_type::GSS_NEGOTIATE
        };
        let mut handshakes = self.handshakes.lock().unwrap_or_else(|e| e.into_inner());
        let mut context = match handshakes.remove(&request.connection) {
            Some(context) if context.auth_type == provider => context,
            _ => match SecurityContext::server(provider, auth_level::CONNECT, 0, &self.acceptors) {
                Ok(context) => context,
                Err(_) => return Err(challenge()),
            },
        };
        match context.accept(&token) {
            Ok(Leg::Continue(out)) => {
                if handshakes.len() >= MAX_HANDSHAKES {
                    handshakes.clear();
                }
                handshakes.insert(request.connection, context);
                let value = format!(
                    "{scheme} {}",
                    base64::engine::general_purpose::STANDARD.encode(out)
                );
                Err(Box::new(
                    Response::new(401).header("WWW-Authenticate", value),
                ))
            }
            Ok(Leg::Done(_)) => match context.identity() {
                Some(identity) => {
                    tracing::debug!(
                        "RPC proxy: {} logged on from {} with {scheme}",
                        identity.user,
                        request.remote
                    );
                    Ok(())
                }
                None => Err(challenge()),
            },
            Err(e) => {
                tracing::warn!(
                    "RPC proxy: an {scheme} logon from {} was refused: {e}",
                    request.remote
                );
                Err(challenge())
            }
        }
    }
}

/// The `HOST:PORT` of the URL query (2.2.2); an IPv6 host in brackets.
fn target(query: &str) -> Option<(String, u16)> {
    let query = query.split('&').next()?;
    let (host, port) = query.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// A TCP connection to the RPC server.
async fn connect(host: &str, port: u16) -> std::io::Result<Box<dyn ServerStream>> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addresses {
        match tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(Box::new(stream));
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "10 s"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ports_reads_iis_syntax() {
        let v = ValidPorts::parse("web1:593; WEB1.example.com:49152-65535;*.corp:6001").unwrap();
        assert!(v.allows("web1", 593));
        assert!(!v.allows("web1", 594));
        assert!(v.allows("web1.EXAMPLE.com", 50000));
        assert!(v.allows("mail.corp", 6001));
        assert!(!v.allows("corp", 6001));
        assert!(!v.allows("other", 593));
        assert!(ValidPorts::parse("web1").is_err());
        assert!(ValidPorts::parse("web1:x").is_err());
        assert!(ValidPorts::parse(":593").is_err());
        assert_eq!(ValidPorts::parse("").unwrap(), ValidPorts::default());
    }

    #[test]
    fn the_target_is_the_query() {
        assert_eq!(target("web1:593"), Some(("web1".into(), 593)));
        assert_eq!(target("[::1]:593"), Some(("::1".into(), 593)));
        assert_eq!(target(""), None);
        assert_eq!(target("web1"), None);
    }
}
