//! `inetsrv start`: the service host. It runs the listener (the HTTP.SYS
//! role: programs connect to `DIR/run/httpapi.sock` and own URL prefixes
//! through it), the configuration service (the metabase, with hand edits
//! of MetaBase.xml applied while running), the activation service (sites,
//! pools and worker processes) and the RPC endpoint whose administration
//! interfaces the CLI's verbs use (over its Unix socket here, over TCP from
//! elsewhere). It says on stdout where everything is, then prints `ready`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use listener::{Listener, ListenerConfig};
use metabase::{LockMode, MetabaseFiles};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::target;
use crate::Cli;

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Log everything to the terminal (stderr) as well as to
    /// DIR/logs/inetsrv.log; without it only warnings and errors go to the
    /// terminal. For service managers that collect stderr.
    #[arg(long)]
    foreground: bool,
    /// How often to look for hand edits of MetaBase.xml, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    edit_poll_ms: u64,
    /// Threads serving connections (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// The TCP port of the RPC endpoint (endpoint mapper and remote
    /// administration). Default: 135 when running as root and the port is
    /// free, else 8135. 0 picks a free port.
    #[arg(long, value_name = "PORT")]
    rpc_port: Option<u16>,
    /// The TCP port of ncacn_http, RPC over HTTP's server endpoint (what
    /// the RPC proxy at /rpc/rpcproxy.dll forwards to). Default: 593 when
    /// running as root and the port is free, else 8593; with --rpc-port 0,
    /// a free port. 0 picks a free port.
    #[arg(long, value_name = "PORT")]
    rpc_http_port: Option<u16>,
    /// The address the RPC endpoint listens on: loopback unless you open
    /// it (0.0.0.0 or an interface's address), then best with
    /// --rpc-auth-level.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    rpc_address: std::net::IpAddr,
    /// The least authentication level every RPC interface requires:
    /// none (anonymous callers allowed, as Windows' endpoint mapper does),
    /// connect, call, pkt, integrity or privacy.
    #[arg(long, default_value = "none", value_name = "LEVEL", value_parser = parse_auth_level)]
    rpc_auth_level: u8,
    /// How long the RPC endpoint's thread keeps polling for the next call
    /// after each one before it sleeps, in microseconds (0: it sleeps at
    /// once). Saves a CPU wake-up per call where waking is slow (virtual
    /// machines), for at most that much CPU per pause in the traffic.
    #[arg(long, default_value_t = 100, value_name = "US",
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    rpc_idle_poll_us: u64,
    /// How long a DCOM object (an IMSAdminBaseW a remote tool activated)
    /// outlives its client's last ping, in seconds: [MS-DCOM]'s three
    /// missed pings of 120 s by default.
    #[arg(long, default_value_t = 360, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    dcom_ping_timeout: u64,
    /// Do not start the RPC endpoint.
    #[arg(long, conflicts_with_all = ["rpc_port", "rpc_http_port", "keytab", "rpc_idle_poll_us"])]
    no_rpc: bool,
    /// The keytab whose keys RPC callers' Kerberos service tickets are
    /// decrypted with (for example host/NAME@REALM, from `kadmin ktadd`,
    /// `ktutil` or `ktpass`). Default: DIR/krb5.keytab if it exists, else
    /// $KRB5_KTNAME; without one Kerberos is off and Negotiate uses NTLM.
    #[arg(long, value_name = "FILE")]
    keytab: Option<PathBuf>,
    /// Where the management service (the browser console and /metrics)
    /// listens, over https: default 127.0.0.1:8172 (the IIS management
    /// service's port), or DIR/management.json's Address. Loopback unless
    /// you open it. An SSL binding with the server's self-signed
    /// certificate is made for it if it has none.
    #[arg(long, value_name = "ADDR:PORT")]
    console: Option<std::net::SocketAddr>,
    /// Also serve /metrics alone on a plain-http binding of its own, for a
    /// Prometheus that scrapes without TLS; anyone who reaches it reads the
    /// counters (keep it on loopback or a monitoring network). Or
    /// "MetricsAddress" in DIR/management.json.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Do not start the management service (or: "Enabled": false in
    /// DIR/management.json).
    #[arg(long, conflicts_with = "console")]
    no_console: bool,
}

/// Service log: a file in the state directory, and the terminal.
fn init_logging(log_dir: &Path, foreground: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let file_path = log_dir.join("inetsrv.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file_path)
        .with_context(|| format!("cannot open {}", file_path.display()))?;
    let level = || log_filter("info");
    let to_file = tracing_subscriber::fmt::layer()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_filter(level());
    let terminal_level = if foreground {
        level()
    } else {
        log_filter("warn")
    };
    let to_terminal = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(terminal_level);
    tracing_subscriber::registry()
        .with(to_file)
        .with(to_terminal)
        .init();
    Ok(file_path)
}

/// `INETSRV_LOG`, or `default`. rustls's own messages are kept to errors
/// unless `INETSRV_LOG` names rustls: it warns about client quirks (an IP
/// address sent as SNI, as wrk does) once per handshake, which would let
/// any client fill the log; failed handshakes are counted in HTTPERR.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let asked = std::env::var("INETSRV_LOG").ok();
    let filter = asked
        .as_deref()
        .and_then(|spec| tracing_subscriber::EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    if asked.is_some_and(|spec| spec.contains("rustls")) {
        return filter;
    }
    filter.add_directive("rustls=error".parse().expect("a valid directive"))
}

/// Tells a service manager we are up (sd_notify), when one asks.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = PathBuf::from(path);
    if let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = socket.send_to(b"READY=1", &path);
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

pub fn run(cli: &Cli, args: &StartArgs) -> Result<()> {
    let dir = target::state_dir(cli);
    let files = match &cli.metabase {
        Some(file) => MetabaseFiles::open_file(file, LockMode::WhileWriting)?,
        None => {
            let files = MetabaseFiles::open_state_dir(&dir, LockMode::WhileWriting)?;
            crate::first_run::complete(&files, &dir);
            files
        }
    };
    let location = files.location().clone();
    let state_dir = absolute(&location.dir);
    let log_file = init_logging(&state_dir.join("logs"), args.foreground)?;
    let config = ListenerConfig::for_state_dir(&state_dir).map_err(anyhow::Error::msg)?;
    let management = console::Settings::load(&state_dir).map_err(anyhow::Error::msg)?;
    let proxy_settings = rpcproxy::Settings::load(&state_dir).map_err(anyhow::Error::msg)?;
    // Read before anything starts: a keytab that does not load stops the
    // start with nothing left running.
    let keytab = if args.no_rpc {
        None
    } else {
        crate::rpc::find_keytab(args.keytab.as_deref(), &state_dir)?
    };

    // One thread (asked for, or all this process may use): a current-
    // thread runtime, with no hand-offs between a driver thread and a
    // worker thread on every wake-up; more: one worker thread each.
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut multi = tokio::runtime::Builder::new_multi_thread();
        multi.worker_threads(threads);
        multi
    };
    runtime.enable_all();
    let runtime = runtime.build().context("cannot start the runtime")?;
    let listener = Arc::new(
        runtime
            .block_on(Listener::start(config))
            .context("cannot start the listener")?,
    );
    tracing::info!(control_socket = %listener.control_socket().display(), "listener started");

    for warning in files.load_warnings() {
        tracing::warn!(%warning, "MetaBase.xml");
    }
    log_changes(&files)?;
    let _watcher = files.watch_edits(Duration::from_millis(args.edit_poll_ms.max(10)));
    let (major, minor) = files.version();
    tracing::info!(
        metabase = %location.metabase.display(),
        version = %format!("{major}.{minor}"),
        "configuration service started"
    );

    let program =
        std::env::current_exe().context("cannot find this program's path to start workers")?;
    let was = {
        let _guard = runtime.enter();
        was::Was::start(was::Options {
            listener: listener.clone(),
            files: files.clone(),
            program: was::WorkerProgram {
                program,
                args: vec!["worker".into()],
            },
            state_dir: state_dir.clone(),
        })
    };
    tracing::info!("activation service started");
    let rpc = if args.no_rpc {
        None
    } else {
        let options = crate::rpc::RpcOptions {
            address: args.rpc_address,
            min_auth_level: args.rpc_auth_level,
            port: args.rpc_port,
            http_port: args
                .rpc_http_port
                .or((args.rpc_port == Some(0)).then_some(0)),
            keytab,
            idle_poll: Duration::from_micros(args.rpc_idle_poll_us),
            dcom_ping_timeout: Duration::from_secs(args.dcom_ping_timeout),
        };
        let host = crate::rpc::WebServiceHost {
            was: was.clone(),
            files: files.clone(),
            runtime: runtime.handle().clone(),
            listener: listener.clone(),
        };
        crate::rpc::start(options, &state_dir, files.clone(), host)?
    };

    let sources = console::Sources {
        listener: listener.clone(),
        was: was.clone(),
        users: userdb::UserDb::for_state_dir(&state_dir),
        files: files.clone(),
    };
    let console = if args.no_console || (args.console.is_none() && !management.enabled) {
        None
    } else {
        let address = args.console.unwrap_or(management.address);
        let started = runtime.block_on(console::start(address, sources.clone()));
        if let Err(e) = &started {
            tracing::error!("the management service did not start: {e}");
        }
        Some(started.map_err(|e| e.to_string()))
    };
    let metrics = args.metrics.or(management.metrics_address).map(|address| {
        let started = runtime.block_on(console::start_metrics(address, sources.clone()));
        if let Err(e) = &started {
            tracing::error!("/metrics' own binding did not start: {e}");
        }
        started.map_err(|e| e.to_string())
    });

    let sites = runtime.block_on(was.sites());
    let proxy = if args.no_rpc {
        None
    } else {
        let started = runtime.block_on(crate::rpc_proxy::start(
            &proxy_settings,
            &listener.config().control_socket,
            &state_dir,
            rpc.as_ref(),
            &sites,
            files.metabase().clone(),
        ));
        if let Some(Err(e)) = &started {
            tracing::error!("the RPC proxy did not start: {e}");
        }
        started
    };
    print_summary(
        &state_dir,
        &absolute(&location.metabase),
        &log_file,
        &Services {
            rpc: rpc.as_ref(),
            console: console.as_ref(),
            metrics: metrics.as_ref(),
            proxy: proxy.as_ref(),
        },
        &sites,
    );
    notify_ready();

    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: worker processes finish the requests they hold");
        println!("stopping...");
        let _ = std::io::stdout().flush();
        if let Some(rpc) = &rpc {
            // IMSAdminBaseSinkW::ShutdownNotify to every advised sink, and
            // WBEM_E_SHUTTING_DOWN to every WMI sink, given a moment to
            // arrive.
            let sinks = rpc.admin_base.sinks();
            let operations = &rpc.wbem.operations;
            if sinks.count() > 0 || operations.count() > 0 {
                sinks.shutdown();
                operations.shutdown();
                let end = tokio::time::Instant::now() + Duration::from_secs(2);
                while (sinks.count() > 0 || operations.count() > 0)
                    && tokio::time::Instant::now() < end
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        was.shutdown().await;
        // Responses the listener is still sending (files handed over by
        // workers) finish too.
        if !listener.drain(Duration::from_secs(90)).await {
            tracing::warn!("responses still in progress after 90 s were cut");
        }
        Ok::<(), std::io::Error>(())
    })?;
    if let Some(rpc) = &rpc {
        let _ = std::fs::remove_file(&rpc.local);
    }
    drop(listener);
    runtime.shutdown_timeout(Duration::from_secs(2));
    tracing::info!("stopped");
    println!("stopped");
    Ok(())
}

/// Every metabase change goes to the service log.
fn log_changes(files: &MetabaseFiles) -> Result<()> {
    let changes = files.metabase().subscribe();
    let log_files = files.clone();
    std::thread::Builder::new()
        .name("config-changes".into())
        .spawn(move || {
            for batch in changes {
                let schema = log_files.metabase().snapshot();
                for change in &batch.changes {
                    let names: Vec<String> = change
                        .ids
                        .iter()
                        .map(|id| schema.schema().name_of(*id))
                        .collect();
                    tracing::info!(
                        change_number = batch.change_number,
                        origin = batch.origin.as_deref().unwrap_or("write"),
                        path = %change.path,
                        kind = change.kind.0,
                        properties = %names.join(","),
                        "metabase change"
                    );
                }
            }
        })?;
    Ok(())
}

/// The services beside the web server, as they started (or why not).
struct Services<'a> {
    rpc: Option<&'a crate::rpc::RpcEndpoint>,
    console: Option<&'a Result<console::Console, String>>,
    metrics: Option<&'a Result<console::Console, String>>,
    proxy: Option<&'a Result<crate::rpc_proxy::RunningProxy, String>>,
}

fn print_summary(
    state_dir: &Path,
    metabase: &Path,
    log_file: &Path,
    services: &Services,
    sites: &[was::SiteStatus],
) {
    let Services {
        rpc,
        console,
        metrics,
        proxy,
    } = *services;
    let mut out = String::new();
    out.push_str(&format!(
        "inetsrv {} is running\n",
        env!("CARGO_PKG_VERSION")
    ));
    let ssl = listener::ListenerConfig::for_state_dir(state_dir)
        .ok()
        .and_then(|c| listener::tls::SslConfig::load(&c.ssl_config_file).ok())
        .unwrap_or_default();
    let mut certificates = Vec::new();
    for site in sites {
        let urls: Vec<String> = site
            .bindings
            .iter()
            .filter_map(|b| was::Binding::parse_label(b).ok())
            .map(|b| {
                let host = match (&b.host, &b.ip) {
                    (Some(h), _) => h.clone(),
                    (None, Some(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
                    (None, Some(ip)) => ip.to_string(),
                    (None, None) => "localhost".into(),
                };
                if b.secure {
                    let endpoint = b.ssl_endpoint();
                    match ssl.find(&endpoint) {
                        Some(binding) => certificates.push(format!("{endpoint} {}", binding.cert_hash)),
                        None => certificates.push(format!("{endpoint} none: inetsrv sslcert add --ipport {endpoint} --cert NAME, or set the site's SSLCertHash")),
                    }
                    format!("https://{host}:{}/", b.port)
                } else {
                    format!("http://{host}:{}/", b.port)
                }
            })
            .collect();
        let state = match &site.error {
            Some(e) => format!("NOT STARTED: {e}"),
            None => site.state.to_string(),
        };
        out.push_str(&format!(
            "  site {} {:?}: {} ({state})\n",
            site.id,
            site.comment,
            if urls.is_empty() {
                "no bindings".into()
            } else {
                urls.join(" ")
            }
        ));
        if let Some(problem) = &site.content_problem {
            out.push_str(&format!("    warning: {problem}\n"));
        }
    }
    for c in &certificates {
        out.push_str(&format!("  certificate:     {c}\n"));
    }
    let www = state_dir.join("wwwroot");
    out.push_str(&format!("  state directory: {}\n", state_dir.display()));
    out.push_str(&format!("  configuration:   {}\n", metabase.display()));
    if www.is_dir() {
        out.push_str(&format!("  web content:     {}\n", www.display()));
    }
    out.push_str(&format!(
        "  logs:            {} (request logs in W3SVC<site>/, errors in HTTPERR/)\n",
        log_file.parent().unwrap_or(state_dir).display()
    ));
    out.push_str(&format!("  service log:     {}\n", log_file.display()));
    if let Some(rpc) = rpc {
        let udp = rpc
            .udp
            .map(|u| format!(" ncadg_ip_udp:{}[{}]", u.ip(), u.port()))
            .unwrap_or_default();
        let http = rpc
            .http
            .map(|h| format!(" ncacn_http:{}[{}]", h.ip(), h.port()))
            .unwrap_or_default();
        out.push_str(&format!(
            "  RPC endpoint:    ncacn_ip_tcp:{}[{}]{udp}{http} ncalrpc:{}\n",
            rpc.tcp.ip(),
            rpc.tcp.port(),
            rpc.local.display()
        ));
        let reach = if rpc.tcp.ip().is_loopback() {
            "this machine only (--rpc-address opens it to the network)"
        } else {
            "the network"
        };
        let callers = match rpc.min_auth_level {
            msrpc::server::auth_level::NONE => {
                "anonymous callers allowed (--rpc-auth-level requires authentication)".to_string()
            }
            level => format!(
                "authenticated callers only, at level {} or above",
                msrpc::server::auth_level::name(level)
            ),
        };
        out.push_str(&format!("  RPC reach:       {reach}; {callers}\n"));
        match &rpc.kerberos {
            Some((path, principals)) => out.push_str(&format!(
                "  RPC Kerberos:    {} ({})\n",
                path.display(),
                principals.join(", ")
            )),
            None => out.push_str("  RPC Kerberos:    off (no keytab; Negotiate uses NTLM)\n"),
        }
    }
    match console {
        Some(Ok(c)) => out.push_str(&format!(
            "  management:      {}metrics (administrators; certificate {})\n",
            c.url, c.certificate
        )),
        Some(Err(e)) => out.push_str(&format!("  management:      NOT STARTED: {e}\n")),
        None => {}
    }
    match metrics {
        Some(Ok(m)) => out.push_str(&format!(
            "  metrics:         {}metrics (anyone who reaches it)\n",
            m.url
        )),
        Some(Err(e)) => out.push_str(&format!("  metrics:         NOT STARTED: {e}\n")),
        None => {}
    }
    match proxy {
        Some(Ok(p)) => out.push_str(&format!(
            "  RPC proxy:       {} (RPC over HTTP to ncacn_http; users: NTLM, Negotiate, Basic over https)\n",
            p.urls.join(" ")
        )),
        Some(Err(e)) => out.push_str(&format!("  RPC proxy:       NOT STARTED: {e}\n")),
        None => {}
    }
    out.push_str("  Ctrl-C stops the server; requests in progress finish first.\n");
    out.push_str("ready\n");
    print!("{out}");
    let _ = std::io::stdout().flush();
}

fn parse_auth_level(text: &str) -> Result<u8, String> {
    msrpc::server::auth_level::parse(text).ok_or_else(|| {
        format!("'{text}' is not an authentication level (none, connect, call, pkt, integrity, privacy)")
    })
}
