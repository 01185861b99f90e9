//! `inetsrv worker`: a worker process (w3wp). The activation service
//! starts it for an application pool with its control socket as standard
//! input, and hands it its configuration there; it is not meant to be
//! started by hand.

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The application pool whose queue to serve (its configuration
    /// comes from the activation service on standard input).
    #[arg(long)]
    pool: String,
}

/// Fault injection for tests of StartupTimeLimit: a worker whose pool is
/// named in this variable (comma-separated) hangs before it registers with
/// the service, as a worker stuck in its start-up would.
const STALL_ON_START: &str = "INETSRV_TEST_STALL_WORKER_START";

pub fn run(args: &WorkerArgs) -> Result<()> {
    if let Ok(pools) = std::env::var(STALL_ON_START) {
        if pools
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(&args.pool))
        {
            eprintln!(
                "{STALL_ON_START}: pool {} stalls before registering",
                args.pool
            );
            loop {
                std::thread::park();
            }
        }
    }
    // As many threads as CPUs this process may use (taskset narrows it);
    // on one CPU, one thread does everything (no cross-thread wake-ups).
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("cannot start the runtime")?;
    let options = worker::Options {
        pool: args.pool.clone(),
    };
    // The serving loop runs as a task, on the runtime's own threads.
    runtime.block_on(async { tokio::spawn(worker::run(options)).await })??;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
