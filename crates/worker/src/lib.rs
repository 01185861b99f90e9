//! The w3wp role: a worker process serving one application pool's request
//! queue with IIS 6's static-content pipeline.
//!
//! The activation service starts it (`inetsrv worker --pool NAME …`) and
//! talks to it over stdin/stdout ([`control`]). The worker reads the
//! metabase read-only ([`metabase::persist::read_snapshot`]), opens its
//! pool's queue on the listener, and answers requests until told to stop;
//! then it stops taking requests, finishes those in hand and exits, so a
//! recycle loses nothing. It owns no configuration and no client
//! connection: the listener owns those.

pub mod auth;
pub mod compress;
pub mod config;
pub mod control;
pub mod errors;
pub mod filecache;
pub mod files;
pub mod fuzz_checks;
pub mod listing;
pub mod pipeline;
pub mod site;
pub mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metabase::persist::Location;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::auth::Logons;
use crate::config::Config;
use crate::control::{FromWorker, ToWorker};
use crate::pipeline::Pipeline;

/// How a worker is started.
#[derive(Clone, Debug)]
pub struct Options {
    /// The application pool (the queue's name).
    pub pool: String,
    /// The listener's control socket.
    pub socket: PathBuf,
    /// The metabase to read.
    pub metabase: Location,
    /// PeriodicRestartRequests: ask to be recycled after this many
    /// requests (0: never).
    pub restart_requests: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot read the configuration: {0}")]
    Config(#[from] metabase::Error),
    #[error("cannot reach the listener at {path}: {source}")]
    Listener {
        path: String,
        source: httpapi::Error,
    },
    #[error("cannot open the queue of application pool {pool}: {source}")]
    Queue {
        pool: String,
        source: httpapi::Error,
    },
}

/// How often cached files are checked for changes.
const WATCH_PERIOD: Duration = Duration::from_millis(500);

/// Runs the worker until it is told to stop (or its service goes away).
pub async fn run(options: Options) -> Result<(), WorkerError> {
    let (out_tx, out_rx) = mpsc::unbounded_channel::<FromWorker>();
    tokio::spawn(write_control(out_rx));
    let result = serve(options, out_tx.clone()).await;
    if let Err(e) = &result {
        let _ = out_tx.send(FromWorker::Fatal {
            message: e.to_string(),
        });
        // Let the writer deliver the last word.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    result
}

async fn load(location: &Location, pool: &str) -> Result<Config, WorkerError> {
    let location = location.clone();
    let dir = location.dir.clone();
    let snapshot = tokio::task::spawn_blocking(move || metabase::persist::read_snapshot(&location))
        .await
        .map_err(|e| metabase::Error::Io {
            path: "MetaBase.xml".into(),
            error: std::io::Error::other(e),
        })??;
    Ok(Config::new(snapshot, &dir, pool))
}

async fn serve(
    options: Options,
    out: mpsc::UnboundedSender<FromWorker>,
) -> Result<(), WorkerError> {
    let config = load(&options.metabase, &options.pool).await?;
    tracing::debug!(pool = %options.pool, "configuration read");
    let session = httpapi::Session::connect(&options.socket)
        .await
        .map_err(|source| WorkerError::Listener {
            path: options.socket.display().to_string(),
            source,
        })?;
    let mut queue =
        session
            .open_queue(&options.pool)
            .await
            .map_err(|source| WorkerError::Queue {
                pool: options.pool.clone(),
                source,
            })?;
    tracing::debug!(pool = %options.pool, "queue open");
    let pipeline = Arc::new(Pipeline::new(
        config,
        Logons::new(out.clone()),
        queue.control(),
    ));
    let active = Arc::new(AtomicU64::new(0));
    let idle = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());

    tokio::spawn(read_control(
        pipeline.clone(),
        options.metabase.clone(),
        options.pool.clone(),
        active.clone(),
        stop.clone(),
        out.clone(),
    ));
    let watcher = pipeline.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_PERIOD);
        loop {
            tick.tick().await;
            if watcher.watch.is_empty() {
                continue;
            }
            let w = watcher.clone();
            let changed = tokio::task::spawn_blocking(move || w.watch.changed())
                .await
                .unwrap_or_default();
            for prefix in changed {
                let _ = watcher.control.flush_cache(&prefix).await;
            }
        }
    });
    let _ = out.send(FromWorker::Ready {
        pid: std::process::id(),
    });
    tracing::info!(pool = %options.pool, pid = std::process::id(), "worker ready");

    let mut recycle_asked = false;
    let spawn = |req: httpapi::Request| {
        active.fetch_add(1, Ordering::SeqCst);
        let (p, a, i) = (pipeline.clone(), active.clone(), idle.clone());
        tokio::spawn(async move {
            p.serve(req).await;
            if a.fetch_sub(1, Ordering::SeqCst) == 1 {
                i.notify_waiters();
            }
        });
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            received = queue.receive() => match received {
                Ok(req) => {
                    spawn(req);
                    let served = pipeline.served.load(Ordering::Relaxed) + active.load(Ordering::Relaxed);
                    if options.restart_requests > 0 && served >= options.restart_requests && !recycle_asked {
                        recycle_asked = true;
                        let _ = out.send(FromWorker::RecycleMe {
                            reason: format!("{served} requests served (PeriodicRestartRequests)"),
                        });
                    }
                }
                Err(e) => {
                    // The listener is gone: nothing more will come.
                    tracing::warn!(error = %e, "the queue closed");
                    break;
                }
            },
            _ = stop.notified() => break,
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => break,
        }
    }

    // Drain: the listener stops handing us requests; those already handed
    // over are answered before the process ends.
    let _ = out.send(FromWorker::Draining);
    let _ = queue.stop_receiving().await;
    while let Some(req) = queue.try_receive() {
        spawn(req);
    }
    loop {
        let notified = idle.notified();
        if active.load(Ordering::SeqCst) == 0 {
            break;
        }
        notified.await;
    }
    // Responses are written by the session's writer task: a call answered
    // after them is the proof that the listener has every byte.
    let _ = queue.close().await;
    tracing::info!(pool = %options.pool, served = pipeline.served.load(Ordering::Relaxed), "worker stopped");
    Ok(())
}

async fn write_control(mut rx: mpsc::UnboundedReceiver<FromWorker>) {
    let mut stdout = tokio::io::stdout();
    while let Some(message) = rx.recv().await {
        let line = control::encode(&message);
        if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
            return;
        }
    }
}

async fn read_control(
    pipeline: Arc<Pipeline>,
    location: Location,
    pool: String,
    active: Arc<AtomicU64>,
    stop: Arc<Notify>,
    out: mpsc::UnboundedSender<FromWorker>,
) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            // The service is gone: an orphaned worker stops.
            _ => break,
        };
        let Some(message) = control::decode::<ToWorker>(&line) else {
            tracing::warn!(%line, "unknown control message");
            continue;
        };
        match message {
            ToWorker::Ping { seq } => {
                let _ = out.send(FromWorker::Pong {
                    seq,
                    requests: pipeline.served.load(Ordering::Relaxed),
                    active: active.load(Ordering::Relaxed),
                });
            }
            ToWorker::Reload { seq } => {
                match load(&location, &pool).await {
                    Ok(config) => {
                        pipeline.config.store(Arc::new(config));
                        for prefix in pipeline.watch.take_all() {
                            let _ = pipeline.control.flush_cache(&prefix).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "configuration not reloaded"),
                }
                let _ = out.send(FromWorker::Reloaded { seq });
            }
            ToWorker::LogonResult { id, ok } => pipeline.logons.answer(id, ok),
            ToWorker::UsersChanged => pipeline.logons.forget(),
            ToWorker::Stop => break,
        }
    }
    stop.notify_one();
}
