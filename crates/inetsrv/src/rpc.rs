//! The RPC endpoint of `inetsrv start`: the `msrpc` runtime serving the
//! endpoint mapper and the management interface over ncacn_ip_tcp (port
//! 135 when the process may bind it, else 8135, or `--rpc-port`),
//! ncadg_ip_udp on the same port number, and ncalrpc
//! (`DIR/run/rpc/epmapper`, for tools on this machine). Callers
//! authenticate with NTLM as the users of `inetsrv user add`, or with
//! Kerberos service tickets when a keytab is configured.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use metabase::MetabaseFiles;
use msrpc::epm::{EndpointMapper, EpmServer};
use msrpc::mgmt::{Management, MgmtServer};
use msrpc::security::{Credentials, Keytab};
use msrpc::server::{auth_level, Limits, Server};
use userdb::UserDb;

/// The endpoint mapper's well-known port.
pub const EPM_PORT: u16 = 135;
/// Where the endpoint goes when 135 is out of reach.
pub const FALLBACK_PORT: u16 = 8135;

/// Where the RPC endpoint listens.
pub struct RpcOptions {
    pub address: IpAddr,
    /// The least authentication level every interface requires.
    pub min_auth_level: u8,
    /// None: 135 if this process may bind it, else 8135.
    pub port: Option<u16>,
    /// ncacn_http's port. None: 593 if this process may bind it, else
    /// 8593.
    pub http_port: Option<u16>,
    /// The keytab Kerberos uses, read at start-up.
    pub keytab: Option<(PathBuf, Keytab)>,
    /// How long the endpoint's thread polls after each PDU before it
    /// sleeps (zero: not at all).
    pub idle_poll: Duration,
    /// How long a DCOM object lives after its client's last ping.
    pub dcom_ping_timeout: Duration,
}

/// The running endpoint, for the start-up summary.
pub struct RpcEndpoint {
    pub tcp: SocketAddr,
    /// ncadg_ip_udp, on the same port number when it was free.
    pub udp: Option<SocketAddr>,
    /// ncacn_http, RPC over HTTP's server role.
    pub http: Option<SocketAddr>,
    /// The server, for the RPC proxy to hand channels to in memory.
    pub server: std::sync::Arc<Server>,
    /// How long the endpoint polls after each PDU (zero: it does not).
    pub idle_poll: std::time::Duration,
    pub local: PathBuf,
    /// The keytab and its principals, when Kerberos is on.
    pub kerberos: Option<(PathBuf, Vec<String>)>,
    /// The least authentication level callers need.
    pub min_auth_level: u8,
    /// IMSAdminBaseW's state: its change-notification sinks are told when
    /// the service stops.
    pub admin_base: std::sync::Arc<iisadmin::imsa::AdminBase>,
    /// The WMI service: its asynchronous calls' sinks are told too.
    pub wbem: std::sync::Arc<wbem::Wbem>,
}

/// The keytab to use: `--keytab` (which must load), else
/// `DIR/krb5.keytab`, else `$KRB5_KTNAME` (`FILE:` prefix allowed) when
/// they exist. One that exists but does not load is an error: a server
/// started without the Kerberos its administrator set up would refuse
/// every Kerberos logon with no clue why.
pub fn find_keytab(explicit: Option<&Path>, state_dir: &Path) -> Result<Option<(PathBuf, Keytab)>> {
    let candidate = match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let in_state = state_dir.join("krb5.keytab");
            let from_env = std::env::var("KRB5_KTNAME")
                .ok()
                .map(|v| PathBuf::from(v.strip_prefix("FILE:").unwrap_or(&v).to_string()));
            [Some(in_state), from_env]
                .into_iter()
                .flatten()
                .find(|p| p.exists())
        }
    };
    let Some(path) = candidate else {
        return Ok(None);
    };
    let keytab = Keytab::load(&path).context("cannot use the Kerberos keytab")?;
    Ok(Some((path, keytab)))
}

pub fn local_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("run").join("rpc").join("epmapper")
}

/// NTLM's accounts: the user database, read at each logon so that
/// `inetsrv user add/passwd/delete` take effect at once.
pub(crate) struct UserDbCredentials(pub(crate) UserDb);

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

/// Starts the endpoint on a thread of its own, with a runtime of one
/// thread: administration is kept apart from the web traffic, and the
/// endpoint can poll between calls (which needs a runtime whose one
/// worker waits for the I/O). The thread serves until the process ends.
/// An explicit port that cannot be bound is an error; the default falls
/// back from 135 to 8135, and when neither is free the server runs
/// without RPC (with a warning).
pub fn start(
    options: RpcOptions,
    state_dir: &Path,
    files: MetabaseFiles,
    host: WebServiceHost,
) -> Result<Option<RpcEndpoint>> {
    let explicit_port = options.port.is_some();
    let state_dir = state_dir.to_path_buf();
    let (started, result) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("rpc".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started
                        .send(Err(anyhow::Error::new(e)
                            .context("cannot start the RPC endpoint's runtime")));
                    return;
                }
            };
            runtime.block_on(async {
                let endpoint = start_endpoint(&options, &state_dir, files, host).await;
                let serving = endpoint.is_ok();
                let _ = started.send(endpoint);
                if serving {
                    std::future::pending::<()>().await;
                }
            });
        })
        .context("cannot start the RPC endpoint's thread")?;
    let endpoint = result
        .recv()
        .context("the RPC endpoint's thread ended while starting")?;
    match endpoint {
        Ok(endpoint) => Ok(Some(endpoint)),
        Err(e) if !explicit_port => {
            tracing::warn!("the RPC endpoint is not started: {e:#}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The well-known port of RPC over HTTP's endpoint mapper (ncacn_http).
pub const HTTP_EPM_PORT: u16 = 593;
/// Where ncacn_http goes when 593 is out of reach.
pub const HTTP_FALLBACK_PORT: u16 = 8593;

/// ncacn_http: an explicit port that cannot be bound is an error; the
/// default falls back from 593 to 8593, then goes without (a warning).
async fn listen_http(
    server: &std::sync::Arc<Server>,
    options: &RpcOptions,
) -> Result<Option<SocketAddr>> {
    if let Some(port) = options.http_port {
        let addr = SocketAddr::new(options.address, port);
        return server
            .listen_http(addr)
            .await
            .map(Some)
            .with_context(|| format!("cannot listen for ncacn_http on {addr}"));
    }
    let privileged = nix::unistd::geteuid().is_root();
    let ports: &[u16] = if privileged {
        &[HTTP_EPM_PORT, HTTP_FALLBACK_PORT]
    } else {
        &[HTTP_FALLBACK_PORT]
    };
    for port in ports {
        match server
            .listen_http(SocketAddr::new(options.address, *port))
            .await
        {
            Ok(addr) => return Ok(Some(addr)),
            Err(e) => tracing::warn!("RPC: ncacn_http port {port} is not available: {e}"),
        }
    }
    Ok(None)
}

/// Administrators are the users of the database marked so (`inetsrv user
/// add NAME --admin`), read at each activation.
struct UserDbAdmins(UserDb);

impl iisadmin::Admins for UserDbAdmins {
    fn is_admin(&self, user: &str) -> bool {
        // A Kerberos caller is named user@REALM: the realm is the one the
        // server's keytab trusts, the user the database's.
        let name = match self.0.user(user) {
            Ok(None) => user.split_once('@').map(|(name, _)| name).unwrap_or(user),
            _ => user,
        };
        match self.0.user(name) {
            Ok(Some(u)) => u.admin,
            Ok(None) => false,
            Err(e) => {
                tracing::error!("RPC: cannot read the user database: {e}");
                false
            }
        }
    }
}

/// The web service as IIisServiceControl sees it: the activation
/// service, driven on the service's own runtime (the RPC endpoint has a
/// thread and runtime of its own).
pub struct WebServiceHost {
    pub was: was::Was,
    pub files: MetabaseFiles,
    pub runtime: tokio::runtime::Handle,
    /// Its counters and response cache, for the Inetinfo interface.
    pub listener: std::sync::Arc<listener::Listener>,
}

impl WebServiceHost {
    /// Runs `work` on the service's runtime; whether it ended in time.
    fn run(
        &self,
        timeout: Duration,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> bool {
        let (done, finished) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            work.await;
            let _ = done.send(());
        });
        finished.recv_timeout(timeout).is_ok()
    }

    /// The pools and sites, asked of the activation service.
    fn statuses(&self) -> (Vec<was::PoolStatus>, Vec<was::SiteStatus>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let was = self.was.clone();
        self.runtime.spawn(async move {
            let _ = tx.send((was.pools().await, was.sites().await));
        });
        rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default()
    }

    fn auto_start(&self, path: &str, id: u32) -> bool {
        let snapshot = self.files.metabase().snapshot();
        metabase::MbPath::parse(path)
            .ok()
            .and_then(|p| snapshot.tree().effective_dword(&p, id))
            .unwrap_or(1)
            != 0
    }
}

impl iisadmin::iiss::ServiceHost for WebServiceHost {
    fn stop(&self, timeout: Duration, _force: bool) -> bool {
        // Pools stop within their ShutdownTimeLimit, ending their workers
        // if need be: a forced stop is what every stop does here.
        let was = self.was.clone();
        self.run(timeout, async move {
            for site in was.sites().await {
                if site.state != was::SiteState::Stopped {
                    if let Err(e) = was.site_command(site.id, was::SiteCommand::Stop).await {
                        tracing::warn!(site = site.id, "remote stop: {e}");
                    }
                }
            }
            for pool in was.pools().await {
                if pool.state == was::PoolState::Started {
                    if let Err(e) = was.pool_command(&pool.name, was::PoolCommand::Stop).await {
                        tracing::warn!(pool = %pool.name, "remote stop: {e}");
                    }
                }
            }
        })
    }

    fn start(&self, timeout: Duration) -> bool {
        let was = self.was.clone();
        let pools_to_start: Vec<String>;
        let sites_to_start: Vec<u32>;
        {
            let pools = self.statuses();
            pools_to_start = pools
                .0
                .iter()
                .filter(|p| p.state == was::PoolState::Stopped)
                .filter(|p| {
                    self.auto_start(
                        &format!("/LM/W3SVC/AppPools/{}", p.name),
                        metabase::ids::APP_POOL_AUTO_START,
                    )
                })
                .map(|p| p.name.clone())
                .collect();
            sites_to_start = pools
                .1
                .iter()
                .filter(|s| s.state == was::SiteState::Stopped)
                .filter(|s| {
                    self.auto_start(
                        &format!("/LM/W3SVC/{}", s.id),
                        metabase::ids::SERVER_AUTO_START,
                    )
                })
                .map(|s| s.id)
                .collect();
        }
        self.run(timeout, async move {
            for pool in pools_to_start {
                if let Err(e) = was.pool_command(&pool, was::PoolCommand::Start).await {
                    tracing::warn!(pool = %pool, "remote start: {e}");
                }
            }
            for site in sites_to_start {
                if let Err(e) = was.site_command(site, was::SiteCommand::Start).await {
                    tracing::warn!(site, "remote start: {e}");
                }
            }
        })
    }

    fn kill(&self) {
        let was = self.was.clone();
        self.run(Duration::from_secs(30), async move {
            for pool in was.pools().await {
                if !pool.workers.is_empty() {
                    let _ = was
                        .pool_command(&pool.name, was::PoolCommand::Recycle)
                        .await;
                }
            }
        });
    }

    fn status(&self) -> Vec<iisadmin::iiss::ServiceState> {
        let (_, sites) = self.statuses();
        let running = sites.iter().any(|s| s.state != was::SiteState::Stopped);
        vec![iisadmin::iiss::ServiceState {
            name: "W3SVC".into(),
            display_name: "World Wide Web Publishing Service".into(),
            state: if running {
                iisadmin::iiss::SERVICE_RUNNING
            } else {
                iisadmin::iiss::SERVICE_STOPPED
            },
        }]
    }
}

async fn start_endpoint(
    options: &RpcOptions,
    state_dir: &Path,
    files: MetabaseFiles,
    host: WebServiceHost,
) -> Result<RpcEndpoint> {
    let server = Server::new(Limits::default(), principal());
    server.set_credentials(std::sync::Arc::new(UserDbCredentials(
        UserDb::for_state_dir(state_dir),
    )));
    let kerberos = options.keytab.as_ref().map(|(path, keytab)| {
        let principals = keytab.principals();
        tracing::info!(
            "RPC: Kerberos with {} ({})",
            path.display(),
            principals.join(", ")
        );
        (path.clone(), principals)
    });
    server.set_keytab(options.keytab.as_ref().map(|(_, k)| k.clone()));
    if !options.idle_poll.is_zero() {
        server
            .poll_between_calls(options.idle_poll)
            .context("cannot poll between RPC calls")?;
    }
    let level = options.min_auth_level.max(auth_level::NONE);
    server.register(EpmServer(EndpointMapper::new()), level, true);
    server.register(MgmtServer(Management), level, false);
    // DCOM and the IIS administration classes: their objects are called at
    // packet integrity or above.
    let orpc_level = level.max(auth_level::INTEGRITY);
    let exporter = dcom::Exporter::new(u32::from(orpc_level), options.dcom_ping_timeout);
    // The ORPC interfaces take any level the endpoint does: the exporter
    // asks for orpc_level of every call on an object (the local socket
    // excepted), and activation for an administrator.
    dcom::serve(&server, exporter.clone(), level, level);
    let admins: std::sync::Arc<dyn iisadmin::Admins> =
        std::sync::Arc::new(UserDbAdmins(UserDb::for_state_dir(state_dir)));
    // WMI ([MS-WMI]) over the same metabase, for the same administrators.
    let wmi_service = std::sync::Arc::new(wbem::Wbem {
        files: files.clone(),
        admins: admins.clone(),
        server_name: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        exporter: exporter.clone(),
        service: Some(wbem::service::ServiceControl {
            was: host.was.clone(),
            runtime: host.runtime.clone(),
        }),
        operations: Default::default(),
    });
    wbem::serve(&server, wmi_service.clone(), level);
    let admin_base = iisadmin::imsa::AdminBase::new(files, admins.clone());
    iisadmin::imsa::serve(&server, &exporter, admin_base.clone(), level);
    let listener = host.listener.clone();
    server.register(
        iisadmin::irp::InetinfoServer(iisadmin::irp::InetinfoService {
            stats: listener.statistics(),
            files: host.files.clone(),
            admins: admins.clone(),
            flush_cache: Box::new({
                let listener = listener.clone();
                move || listener.flush_all_cached()
            }),
            cache_counters: Box::new(move || listener.cache_counters()),
        }),
        level,
        true,
    );
    server.register(
        iisadmin::wasctl::WasControlServer(iisadmin::wasctl::WasControlService {
            was: host.was.clone(),
            runtime: host.runtime.clone(),
            files: host.files.clone(),
            admins: admins.clone(),
        }),
        level,
        true,
    );
    iisadmin::iiss::serve(&server, &exporter, std::sync::Arc::new(host), admins, level);
    // Objects whose clients stopped pinging are reclaimed.
    let sweep = (options.dcom_ping_timeout / 4).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(sweep).await;
            exporter.collect_garbage();
        }
    });
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
    // The connectionless protocol on the same port number over UDP; a
    // port taken there costs only UDP.
    let udp = match server.listen_udp(tcp).await {
        Ok(addr) => Some(addr),
        Err(e) => {
            tracing::warn!("RPC: not serving ncadg_ip_udp on {tcp}: {e}");
            None
        }
    };
    let http = listen_http(&server, options).await?;
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
    Ok(RpcEndpoint {
        admin_base,
        wbem: wmi_service,
        min_auth_level: level,
        tcp,
        udp,
        http,
        server: server.clone(),
        idle_poll: options.idle_poll,
        local,
        kerberos,
    })
}
