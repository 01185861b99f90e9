//! The RPC endpoint of `inetsrv start`: the `msrpc` runtime serving the
//! endpoint mapper and the management interface over ncacn_ip_tcp (port
//! 135 when the process may bind it, else 8135, or `--rpc-port`) and
//! ncalrpc (`DIR/run/rpc/epmapper`, for tools on this machine). Callers
//! authenticate with NTLM as the users of `inetsrv user add`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use msrpc::epm::{EndpointMapper, EpmServer};
use msrpc::mgmt::{Management, MgmtServer};
use msrpc::security::Credentials;
use msrpc::server::{auth_level, Limits, Server};
use userdb::UserDb;

/// The endpoint mapper's well-known port.
pub const EPM_PORT: u16 = 135;
/// Where the endpoint goes when 135 is out of reach.
pub const FALLBACK_PORT: u16 = 8135;

/// Where the RPC endpoint listens.
pub struct RpcOptions {
    pub address: IpAddr,
    /// None: 135 if this process may bind it, else 8135.
    pub port: Option<u16>,
}

/// The running endpoint, for the start-up summary.
pub struct RpcEndpoint {
    pub tcp: SocketAddr,
    pub local: PathBuf,
}

pub fn local_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("run").join("rpc").join("epmapper")
}

/// NTLM's accounts: the user database, read at each logon so that
/// `inetsrv user add/passwd/delete` take effect at once.
struct UserDbCredentials(UserDb);

impl Credentials for UserDbCredentials {
    fn nt_hash(&self, user: &str) -> Option<(String, [u8; 16])> {
        match self.0.user(user) {
            Ok(Some(u)) => match u.nt_hash {
                Some(hash) => Some((u.name, hash)),
                None => {
                    tracing::warn!(
                        "RPC: user '{}' has no NT hash (set before NTLM was supported); \
                         `inetsrv user passwd {}` adds one",
                        u.name,
                        u.name
                    );
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::error!("RPC: cannot read the user database: {e}");
                None
            }
        }
    }
}

fn principal() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Starts the endpoint (inside the runtime). An explicit port that cannot
/// be bound is an error; the default falls back from 135 to 8135, and
/// when neither is free the server runs without RPC (with a warning).
pub async fn start(options: &RpcOptions, state_dir: &Path) -> Result<Option<RpcEndpoint>> {
    match start_endpoint(options, state_dir).await {
        Ok(endpoint) => Ok(Some(endpoint)),
        Err(e) if options.port.is_none() => {
            tracing::warn!("the RPC endpoint is not started: {e:#}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn start_endpoint(options: &RpcOptions, state_dir: &Path) -> Result<RpcEndpoint> {
    let server = Server::new(Limits::default(), principal());
    server.set_credentials(std::sync::Arc::new(UserDbCredentials(
        UserDb::for_state_dir(state_dir),
    )));
    server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
    server.register(MgmtServer(Management), auth_level::NONE, false);
    let tcp = match options.port {
        Some(port) => server
            .listen_tcp(SocketAddr::new(options.address, port))
            .await
            .with_context(|| format!("cannot listen for RPC on {}:{port}", options.address))?,
        None => {
            let privileged = nix::unistd::geteuid().is_root();
            let first = if privileged { EPM_PORT } else { FALLBACK_PORT };
            match server
                .listen_tcp(SocketAddr::new(options.address, first))
                .await
            {
                Ok(addr) => addr,
                Err(e) if first == EPM_PORT => {
                    tracing::warn!(
                        "RPC: port {EPM_PORT} is not available ({e}); using {FALLBACK_PORT}"
                    );
                    server
                        .listen_tcp(SocketAddr::new(options.address, FALLBACK_PORT))
                        .await
                        .with_context(|| {
                            format!("cannot listen for RPC on port {EPM_PORT} or {FALLBACK_PORT}")
                        })?
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot listen for RPC on port {FALLBACK_PORT}"))
                }
            }
        }
    };
    let local = local_socket(state_dir);
    if let Some(parent) = local.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    server
        .listen_local(local.clone())
        .await
        .with_context(|| format!("cannot listen on {}", local.display()))?;
    tracing::info!(tcp = %tcp, local = %local.display(), "RPC endpoint started");
    Ok(RpcEndpoint { tcp, local })
}
