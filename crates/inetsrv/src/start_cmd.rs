//! `inetsrv start`: the service host. It runs the listener (the HTTP.SYS
//! role: programs connect to `DIR/run/httpapi.sock` and own URL prefixes
//! through it) and the configuration service (it loads the metabase,
//! applies hand edits of MetaBase.xml while running and logs every
//! change). The activation service and workers join it as they land.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use listener::{Listener, ListenerConfig};
use metabase::LockMode;

use crate::target;
use crate::Cli;

#[derive(Args, Debug)]
pub struct StartArgs {
    /// How often to look for hand edits of MetaBase.xml, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    edit_poll_ms: u64,
    /// Threads serving connections (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

pub fn run(cli: &Cli, args: &StartArgs) -> Result<()> {
    let dir = target::state_dir(cli);
    let files = match &cli.metabase {
        Some(file) => metabase::MetabaseFiles::open_file(file, LockMode::WhileWriting)?,
        None => metabase::MetabaseFiles::open_state_dir(&dir, LockMode::WhileWriting)?,
    };
    let config_dir = files.location().dir.clone();
    let config = ListenerConfig::for_state_dir(&config_dir).map_err(anyhow::Error::msg)?;

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime.build().context("cannot start the runtime")?;
    let listener = runtime
        .block_on(Listener::start(config))
        .context("cannot start the listener")?;
    tracing::info!(control_socket = %listener.control_socket().display(), "listener started");

    for warning in files.load_warnings() {
        tracing::warn!(%warning, "MetaBase.xml");
    }
    let changes = files.metabase().subscribe();
    let _watcher = files.watch_edits(Duration::from_millis(args.edit_poll_ms.max(10)));
    let (major, minor) = files.version();
    tracing::info!(
        metabase = %files.location().metabase.display(),
        version = %format!("{major}.{minor}"),
        "configuration service started"
    );
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

    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        Ok::<(), std::io::Error>(())
    })?;
    drop(listener);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
