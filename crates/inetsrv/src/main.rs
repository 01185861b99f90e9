//! `inetsrv`: the one binary. `inetsrv start` runs the service host and
//! `inetsrv worker` is the worker process it starts; every other verb is
//! an administration command in the manner of the IIS 6 tools (`mb` is
//! adsutil, `site` iisweb, `vdir` iisvdir, `pool` iisapp, `backup`
//! iisback, `config` iiscnfg, `urlacl` netsh http urlacl), working on a
//! running server or on a state directory or metabase file.

mod backup_cmd;
mod cert_cmd;
mod config_cmd;
mod fastcgi_cmd;
mod first_run;
mod iisreset_cmd;
mod mb_cmd;
mod mb_watch;
mod output;
mod rpc;
mod rpc_cmd;
mod rpc_http;
mod rpc_proxy;
mod server_files;
mod sslcert_cmd;
mod start_cmd;
mod stats_cmd;
mod target;
mod urlacl_cmd;
mod user_cmd;
mod web_cmd;
mod webext_cmd;
mod wmi_cmd;
mod wmi_remote;
mod worker_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The listener allocates per request; mimalloc keeps that cheap under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// inetsrv: the IIS 6.0 architecture for Linux.
#[derive(Parser, Debug)]
#[command(name = "inetsrv", version, about, long_about = None)]
pub struct Cli {
    /// State directory: MetaBase.xml, MBSchema.xml, History/, MetaBack/,
    /// wwwroot/, logs/. Created with the default configuration if empty.
    #[arg(long, global = true, env = "INETSRV_HOME", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Work on this metabase file instead of a state directory (its schema,
    /// history and backups are looked for beside it).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "state_dir")]
    pub metabase: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show SECURE values (passwords) instead of masking them.
    #[arg(long, global = true)]
    pub show_secrets: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service host on the state directory's configuration.
    Start(start_cmd::StartArgs),
    /// Sites: create, delete, start, stop, pause, continue, list (iisweb).
    Site {
        /// With --server HOST: on another server, through IMSAdminBaseW
        /// and its service control.
        #[command(flatten)]
        remote: rpc_cmd::Target,
        #[command(subcommand)]
        command: web_cmd::SiteVerb,
    },
    /// Virtual directories: create, delete, list (iisvdir).
    Vdir {
        /// With --server HOST: on another server, through IMSAdminBaseW.
        #[command(flatten)]
        remote: rpc_cmd::Target,
        #[command(subcommand)]
        command: web_cmd::VdirVerb,
    },
    /// Application pools and their worker processes (iisapp).
    Pool {
        /// With --server HOST: on another server, through IMSAdminBaseW
        /// and its service control.
        #[command(flatten)]
        remote: rpc_cmd::Target,
        #[command(subcommand)]
        command: web_cmd::PoolVerb,
    },
    /// Users: Basic authentication over HTTP and NTLM on the RPC endpoint.
    User {
        #[command(subcommand)]
        command: user_cmd::UserCommand,
    },
    /// A worker process (started by the activation service, not by hand).
    Worker(worker_cmd::WorkerArgs),
    /// A worker's program launcher for CGI and FastCGI (started by the
    /// worker, not by hand).
    #[command(hide = true)]
    Spawner,
    /// Read and change the metabase (the IIS 6 adsutil verbs).
    Mb {
        /// With --server HOST: the reading verbs on another server's
        /// metabase, through IMSAdminBaseW.
        #[command(flatten)]
        remote: rpc_cmd::Target,
        #[command(subcommand)]
        command: mb_cmd::MbCommand,
    },
    /// Named, versioned backups of the whole metabase (iisback).
    Backup {
        /// With --server HOST: on another server, through IMSAdminBaseW.
        #[command(flatten)]
        remote: rpc_cmd::Target,
        #[command(subcommand)]
        command: backup_cmd::BackupCommand,
    },
    /// Save, export, import and history of the configuration (iiscnfg).
    Config {
        /// With --server HOST: on another server, through IMSAdminBase2W.
        #[command(flatten)]
        remote: rpc_cmd::Target,
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// The server certificate store: import, new, list, export, rename,
    /// delete.
    Cert {
        #[command(subcommand)]
        command: cert_cmd::CertCommand,
    },
    /// SSL bindings: which certificate serves which IP:port or host:port
    /// (netsh http sslcert).
    Sslcert {
        #[command(subcommand)]
        command: sslcert_cmd::SslCertCommand,
    },
    /// Web Service Extensions: which ISAPI modules and CGI programs may
    /// run (iisext).
    Webext {
        #[command(subcommand)]
        command: webext_cmd::WebextCommand,
    },
    /// FastCGI applications (PHP and others): add, set, list, delete,
    /// import-ini (IIS 6's fcgiconfig and fcgiext.ini).
    Fastcgi {
        #[command(subcommand)]
        command: fastcgi_cmd::FastcgiCommand,
    },
    /// URL reservations: who may register which URL prefixes.
    Urlacl {
        #[command(subcommand)]
        command: urlacl_cmd::UrlAclCommand,
    },
    /// A WMI query (WQL) on the IIS provider's classes, e.g.
    /// "select * from IIsWebVirtualDirSetting where AccessWrite != TRUE".
    Query {
        /// With --server HOST: another server's classes, through MS-WMI
        /// (WMI over DCOM), as any WMI client reaches them.
        #[command(flatten)]
        remote: rpc_cmd::Target,
        /// With --server: an asynchronous call (ExecQueryAsync); the server
        /// calls this command back with the results (IWbemObjectSink).
        #[arg(long = "async")]
        asynchronous: bool,
        /// The query: SELECT props|* FROM class [WHERE …].
        wql: String,
    },
    /// The IIS WMI provider's object model: instances and classes.
    Wmi {
        /// With --server HOST: get, put, delete, call and watch on another
        /// server, through MS-WMI (WMI over DCOM).
        #[command(flatten)]
        remote: rpc_cmd::Target,
        /// With --server: asynchronous calls (GetObjectAsync,
        /// PutInstanceAsync, ExecMethodAsync, ExecNotificationQueryAsync,
        /// …); the server calls this command back with the results
        /// (IWbemObjectSink), as it calls Windows' unsecapp.
        #[arg(long = "async", global = true)]
        asynchronous: bool,
        #[command(subcommand)]
        command: wmi_cmd::WmiCommand,
    },
    /// Stop, start, restart the web service or show its status (IIS's
    /// iisreset), here or on another server (--server HOST), through
    /// IIisServiceControl over DCOM.
    Iisreset(iisreset_cmd::IisresetArgs),
    /// The Web service's counters (requests by verb, bytes, errors,
    /// connections), here or on another server (--server HOST), through
    /// the Inetinfo interface (MS-IRP).
    Stats(stats_cmd::StatsArgs),
    /// The RPC endpoint of this server or another (--server HOST): ping,
    /// interfaces, stats, principal name, endpoint map.
    Rpc {
        #[command(subcommand)]
        command: rpc_cmd::RpcCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service host sets up its own logs (a file in the state directory).
    if !matches!(cli.command, Command::Start(_)) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("INETSRV_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }

    let result = match &cli.command {
        Command::Start(args) => start_cmd::run(&cli, args),
        Command::Site { remote, command } if remote.server.is_some() => {
            web_cmd::run_remote(&cli, remote, web_cmd::Verb::Site(command))
        }
        Command::Vdir { remote, command } if remote.server.is_some() => {
            web_cmd::run_remote(&cli, remote, web_cmd::Verb::Vdir(command))
        }
        Command::Pool { remote, command } if remote.server.is_some() => {
            web_cmd::run_remote(&cli, remote, web_cmd::Verb::Pool(command))
        }
        Command::Site { remote, command } => run_web(&cli, remote, WebVerb::Site(command)),
        Command::Vdir { remote, command } => run_web(&cli, remote, WebVerb::Vdir(command)),
        Command::Pool { remote, command } => run_web(&cli, remote, WebVerb::Pool(command)),
        Command::User { command } => user_cmd::run(&cli, command),
        Command::Worker(args) => worker_cmd::run(args),
        Command::Spawner => worker_cmd::run_spawner(),
        Command::Mb {
            remote,
            command: mb_cmd::MbCommand::Watch(args),
        } => mb_watch::run(&cli, remote, args),
        Command::Mb { remote, command } if remote.server.is_some() => {
            mb_cmd::run_remote(&cli, remote, command)
        }
        Command::Mb { remote, command } => run_web(&cli, remote, WebVerb::Mb(command)),
        Command::Backup { remote, command } if remote.server.is_some() => {
            backup_cmd::run_remote(&cli, remote, command)
        }
        Command::Backup { remote, command } => remote
            .stray_password()
            .and_then(|()| backup_cmd::run(&cli, command)),
        Command::Config { remote, command } if remote.server.is_some() => {
            config_cmd::run_remote(&cli, remote, command)
        }
        Command::Config { remote, command } => remote
            .stray_password()
            .and_then(|()| config_cmd::run(&cli, command)),
        Command::Urlacl { command } => urlacl_cmd::run(&cli, command),
        Command::Webext { command } => run_web(
            &cli,
            &rpc_cmd::Target::this_machine(),
            WebVerb::Webext(command),
        ),
        Command::Fastcgi { command } => run_web(
            &cli,
            &rpc_cmd::Target::this_machine(),
            WebVerb::Fastcgi(command),
        ),
        Command::Cert { command } => cert_cmd::run(&cli, command),
        Command::Sslcert { command } => sslcert_cmd::run(&cli, command),
        Command::Query {
            remote,
            asynchronous: true,
            ..
        }
        | Command::Wmi {
            remote,
            asynchronous: true,
            ..
        } if remote.server.is_none() => Err(anyhow::anyhow!(
            "--async is for MS-WMI calls to a server: add --server HOST (calls on this machine are made in process)"
        )),
        Command::Query {
            remote,
            asynchronous,
            wql,
        } if remote.server.is_some() => {
            wmi_remote::run(&cli, remote, *asynchronous, wmi_cmd::Request::Query(wql))
        }
        Command::Query { wql, .. } => {
            run_web(&cli, &rpc_cmd::Target::this_machine(), WebVerb::Query(wql))
        }
        Command::Wmi {
            remote,
            asynchronous,
            command,
        } if remote.server.is_some() => {
            wmi_remote::run(&cli, remote, *asynchronous, wmi_cmd::Request::Wmi(command))
        }
        Command::Wmi { command, .. } => run_web(
            &cli,
            &rpc_cmd::Target::this_machine(),
            WebVerb::Wmi(command),
        ),
        Command::Rpc { command } => rpc_cmd::run(&cli, command),
        Command::Iisreset(args) => iisreset_cmd::run(&cli, args),
        Command::Stats(args) => stats_cmd::run(&cli, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inetsrv: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum WebVerb<'a> {
    Mb(&'a mb_cmd::MbCommand),
    Query(&'a str),
    Wmi(&'a wmi_cmd::WmiCommand),
    Site(&'a web_cmd::SiteVerb),
    Vdir(&'a web_cmd::VdirVerb),
    Pool(&'a web_cmd::PoolVerb),
    Webext(&'a webext_cmd::WebextCommand),
    Fastcgi(&'a fastcgi_cmd::FastcgiCommand),
}

/// Runs an mb, site, vdir or pool verb on the running server when there
/// is one, else on the metabase files.
fn run_web(cli: &Cli, local: &rpc_cmd::Target, verb: WebVerb<'_>) -> anyhow::Result<()> {
    // A server on this state directory (or this metabase file): the verb
    // goes through its admin interfaces on its Unix socket, as `--server`
    // goes to another machine's.
    if target::server_runs(cli) {
        let done = match &verb {
            WebVerb::Mb(v) => Some(mb_cmd::run_remote(cli, local, v)),
            WebVerb::Site(v) => Some(web_cmd::run_remote(cli, local, web_cmd::Verb::Site(v))),
            WebVerb::Vdir(v) => Some(web_cmd::run_remote(cli, local, web_cmd::Verb::Vdir(v))),
            WebVerb::Pool(v) => Some(web_cmd::run_remote(cli, local, web_cmd::Verb::Pool(v))),
            WebVerb::Webext(v) => Some(mb_cmd::run_on_copy(cli, local, |mb, out| {
                webext_cmd::execute(out, cli, mb, v)
            })),
            WebVerb::Fastcgi(v) => Some(mb_cmd::run_on_copy(cli, local, |mb, out| {
                fastcgi_cmd::execute(out, cli, mb, v)
            })),
            WebVerb::Query(q) => Some(wmi_cmd::run_on_server(
                cli,
                local,
                wmi_cmd::Request::Query(q),
            )),
            WebVerb::Wmi(v) => Some(wmi_cmd::run_on_server(cli, local, wmi_cmd::Request::Wmi(v))),
        };
        match done {
            // It serves another metabase file: this one is worked on here.
            Some(Err(e)) if e.downcast_ref::<mb_cmd::OtherMetabase>().is_some() => {}
            Some(done) => return done,
            None => {}
        }
    }
    let writes = match &verb {
        WebVerb::Mb(v) => return mb_cmd::run(cli, v),
        WebVerb::Webext(v) => return webext_cmd::run(cli, v),
        WebVerb::Fastcgi(v) => return fastcgi_cmd::run(cli, v),
        WebVerb::Query(q) => return wmi_cmd::run(cli, wmi_cmd::Request::Query(q)),
        WebVerb::Wmi(v) => return wmi_cmd::run(cli, wmi_cmd::Request::Wmi(v)),
        WebVerb::Site(v) => v.writes(),
        WebVerb::Vdir(v) => v.writes(),
        WebVerb::Pool(v) => v.writes(),
    };
    let files = target::open(cli, writes)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut ctx = web_cmd::Ctx {
        metabase: files.metabase(),
        live: None,
        json: cli.json,
        out: String::new(),
    };
    let result = runtime.block_on(async {
        match verb {
            WebVerb::Mb(_)
            | WebVerb::Query(_)
            | WebVerb::Wmi(_)
            | WebVerb::Webext(_)
            | WebVerb::Fastcgi(_) => Ok(()),
            WebVerb::Site(v) => web_cmd::site(&mut ctx, v).await,
            WebVerb::Vdir(v) => web_cmd::vdir(&mut ctx, v).await,
            WebVerb::Pool(v) => web_cmd::pool(&mut ctx, v).await,
        }
    });
    print!("{}", ctx.out);
    result
}
