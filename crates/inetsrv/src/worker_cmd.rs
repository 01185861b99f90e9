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
    // A worker does not outlive the service that started it, even one
    // hung in a module (or in the fault injection below) that never reads
    // the service's Stop: the kernel kills it when the service goes.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("cannot ask to be stopped with the service: {e}");
    }
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
    // One serving thread, as an nginx worker has: a request's work is
    // short and asynchronous (files are opened and stat'ed in place, large
    // bodies leave by sendfile from the listener), and a multi-threaded
    // scheduler's hand-offs cost more than they give: measured on two
    // CPUs, 3.8 us of worker CPU per 1 KB request against 2.1 with one
    // thread (BENCHMARKS.md). What may block for long (compression, change
    // scans) runs on the blocking pool; a pool scales out across CPUs with
    // MaxProcesses (a web garden), as IIS's does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let options = worker::Options {
        pool: args.pool.clone(),
    };
    // The serving loop runs as a task, on the runtime's own threads.
    runtime.block_on(async { tokio::spawn(worker::run(options)).await })??;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// `inetsrv spawner`: the worker's program launcher, with its control
/// socket as standard input ([`spawner`]).
pub fn run_spawner() -> Result<()> {
    use std::os::fd::AsFd;
    // Gone with the worker that started it, should it miss the socket's end.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    let control = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("the control socket (standard input)")?;
    spawner::serve(control).map_err(|e| anyhow::anyhow!("the program launcher: {e}"))
}
