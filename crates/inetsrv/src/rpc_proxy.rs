//! The RPC proxy of `inetsrv start`: `/rpc/rpcproxy.dll` (and
//! `/rpcwithcert/rpcproxy.dll`) on the bindings of the sites
//! `DIR/rpcproxy.json` names (site 1 by default), forwarding to this
//! server's ncacn_http endpoint — or where its ValidPorts allow — for the
//! server's users (NTLM, Negotiate, or Basic over https), as the
//! directory's AuthFlags allow.

use std::path::Path;

use metabase::{ids, MbPath, Metabase};
use rpcproxy::{Logons, Proxy, Schemes, Settings, ValidPorts};
use userdb::UserDb;

/// What IIS 6's RPC proxy set on its `Rpc` and `RpcWithCert` directories
/// when it was installed: Basic and Integrated Windows authentication.
/// Without such a key, the proxy behaves so.
const INSTALLED_AUTH_FLAGS: u32 = 2 | 4;

/// The logons the proxy's directory takes now: the effective AuthFlags of
/// `/LM/W3SVC/SITE/ROOT/Rpc` (or `RpcWithCert`), read at each request so
/// that a change applies at once; [`INSTALLED_AUTH_FLAGS`] while the key
/// does not exist.
fn schemes(metabase: &Metabase, site: u64, url_path: &str) -> Schemes {
    let directory = if url_path
        .trim_start_matches('/')
        .to_ascii_lowercase()
        .starts_with("rpcwithcert")
    {
        "RpcWithCert"
    } else {
        "Rpc"
    };
    let Ok(path) = MbPath::parse(&format!("/LM/W3SVC/{site}/ROOT/{directory}")) else {
        return Schemes::from_auth_flags(INSTALLED_AUTH_FLAGS);
    };
    let snapshot = metabase.snapshot();
    let tree = snapshot.tree();
    let flags = if tree.exists(&path) {
        tree.effective_dword(&path, ids::AUTH_FLAGS).unwrap_or(0)
    } else {
        INSTALLED_AUTH_FLAGS
    };
    Schemes::from_auth_flags(flags)
}

/// The proxy as started, for the start-up summary.
pub struct RunningProxy {
    /// The URLs it answers at.
    pub urls: Vec<String>,
    _task: tokio::task::JoinHandle<()>,
}

struct UserDbLogons(UserDb);

impl Logons for UserDbLogons {
    fn basic(&self, user: &str, password: &str) -> bool {
        self.0.verify(user, password).unwrap_or_else(|e| {
            tracing::error!("RPC proxy: cannot read the user database: {e}");
            false
        })
    }
}

/// Starts the proxy on the sites' bindings; None when it is off or there
/// is no ncacn_http endpoint to forward to.
pub async fn start(
    settings: &Settings,
    control_socket: &Path,
    state_dir: &Path,
    rpc: Option<&crate::rpc::RpcEndpoint>,
    sites: &[was::SiteStatus],
    metabase: Metabase,
) -> Option<Result<RunningProxy, String>> {
    if !settings.enabled {
        return None;
    }
    // This server's own endpoint, under the names a client may give it:
    // its channels are handed over in memory.
    let own = rpc.and_then(|rpc| {
        let http = rpc.http?;
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            http.ip().to_string(),
        ];
        if let Ok(host) = nix::unistd::gethostname() {
            names.push(host.to_string_lossy().into_owned());
        }
        Some((ValidPorts::own(http.port(), &names), http, rpc))
    });
    let local = own.as_ref().map(|(reached_as, http, rpc)| {
        let (server, http) = (rpc.server.clone(), *http);
        // Those channels are served here, on the web server's runtime: it
        // polls between their calls as the endpoint's own thread does,
        // where it can (a runtime of one worker).
        if !rpc.idle_poll.is_zero() {
            if let Err(e) = msrpc::server::Server::poll_between_calls_here(rpc.idle_poll) {
                tracing::debug!("RPC proxy: no polling between calls on the web runtime: {e}");
            }
        }
        rpcproxy::LocalServer {
            reached_as: reached_as.clone(),
            connect: Box::new(move |_client| {
                let (ours, theirs) = tokio::io::duplex(256 * 1024);
                // As if from the endpoint's own address: the proxy is
                // this process. Served on the proxy's own runtime (the
                // web server's), not the RPC endpoint's thread: a call
                // then goes from the client's TLS stream to the method
                // and back without waking another thread.
                tokio::spawn(server.clone().serve_http_channel(theirs, http, http));
                Box::new(ours) as Box<dyn rpcproxy::ServerStream>
            }),
        }
    });
    let valid_ports = if settings.valid_ports.trim().is_empty() {
        own.as_ref()?.0.clone()
    } else {
        match ValidPorts::parse(&settings.valid_ports) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        }
    };
    let mut prefixes = Vec::new();
    let mut urls = Vec::new();
    for site in sites.iter().filter(|s| settings.sites.contains(&s.id)) {
        for label in &site.bindings {
            let Ok(binding) = was::model::Binding::parse_label(label) else {
                continue;
            };
            for path in ["/rpc/rpcproxy.dll/", "/rpcwithcert/rpcproxy.dll/"] {
                prefixes.push((binding.prefix(path), u64::from(site.id)));
            }
            urls.push(binding.prefix("/rpc/rpcproxy.dll"));
        }
    }
    if prefixes.is_empty() {
        return Some(Err(format!(
            "none of the sites {:?} has a binding to serve it on",
            settings.sites
        )));
    }
    let proxy = Proxy {
        local,
        valid_ports,
        allow_anonymous: settings.allow_anonymous,
        logons: std::sync::Arc::new(UserDbLogons(UserDb::for_state_dir(state_dir))),
        acceptors: msrpc::security::Acceptors {
            credentials: std::sync::Arc::new(crate::rpc::UserDbCredentials(UserDb::for_state_dir(
                state_dir,
            ))),
            kerberos: None,
        },
        handshakes: Default::default(),
        out_channel_lifetime: rpcproxy::OUT_CHANNEL_LIFETIME,
        schemes: Box::new(move |site, path| schemes(&metabase, site, path)),
    };
    Some(
        rpcproxy::start(control_socket, &prefixes, proxy)
            .await
            .map(|task| RunningProxy { urls, _task: task })
            .map_err(|e| e.to_string()),
    )
}
