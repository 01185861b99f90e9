//! `inetsrv stats`: the Web service's counters through the Inetinfo
//! interface ([MS-IRP] R_W3QueryStatistics2), and the application pools'
//! (their queues, worker processes, starts, failures and recycles)
//! through the service-control interface — of this server over its RPC
//! socket, or of another (`--server HOST`); `--clear` zeroes the Web
//! service's (R_W3ClearStatistics2); `--watch` refreshes them with rates
//! per second, as Performance Monitor shows them.

use anyhow::{bail, Result};
use clap::Args;
use iisadmin::irp::{InetinfoClient, W3Statistics1, W3StatisticsStruct, INSTANCE_GLOBAL};
use iisadmin::wasctl::WasControlClient;
use msrpc::client::Connection;
use msrpc::ndr::Unique;
use serde_json::json;

use crate::rpc_cmd::{self, Target};
use crate::{output, Cli};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// One site's counters (its ID) instead of the whole service's.
    #[arg(long, value_name = "ID")]
    site: Option<u32>,
    /// Zero the counters (the site's, or all) after showing them.
    #[arg(long, conflicts_with = "watch")]
    clear: bool,
    /// Refresh every SECONDS (2 if not given) until Ctrl-C, with rates
    /// per second; with --json, one JSON object a line.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = crate::target::parse_seconds)]
    watch: Option<f64>,
    /// With --watch: stop after this many refreshes.
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
    #[command(flatten)]
    target: Target,
}

pub fn run(cli: &Cli, args: &StatsArgs) -> Result<()> {
    rpc_cmd::run_connected(cli, &args.target, |conn, _| stats(cli, args, conn))
}

fn status_error(status: u32, instance: u32) -> anyhow::Error {
    match status {
        iisadmin::irp::ERROR_ACCESS_DENIED => anyhow::anyhow!(
            "access denied: the statistics are for administrators (inetsrv user set NAME --admin true), at packet integrity or privacy"
        ),
        iisadmin::irp::ERROR_FILE_NOT_FOUND => anyhow::anyhow!("there is no site {instance}"),
        s => anyhow::anyhow!("the server answered error {s}"),
    }
}

/// The Web service's counters (one site's, or all).
async fn web_counters(conn: &mut Connection, instance: u32) -> Result<W3Statistics1> {
    let (info, status) = InetinfoClient::bind(conn)
        .await?
        .w3_query_statistics2(Unique::new(None), 0, instance, 0)
        .await?;
    if status != 0 {
        return Err(status_error(status, instance));
    }
    let W3StatisticsStruct::Info1(info) = info else {
        bail!("the server answered another level of statistics");
    };
    info.get()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the server answered no statistics"))
}

/// The URI cache's hits and misses (R_InetInfoQueryStatistics), if the
/// server answers them.
async fn uri_cache(conn: &mut Connection) -> Result<Option<(u32, u32)>> {
    let (info, status) = InetinfoClient::bind(conn)
        .await?
        .query_statistics(Unique::new(None), 0, iisadmin::irp::INET_HTTP_SVC_ID)
        .await?;
    if status != 0 {
        return Ok(None);
    }
    Ok(match info {
        iisadmin::irp::InetInfoStatisticsInfo::Stats0(s) => {
            s.get().map(|s| (s.cache.uri_hits, s.cache.uri_misses))
        }
        _ => None,
    })
}

/// The application pools, with their queues' and workers' counters.
async fn pools(conn: &mut Connection) -> Result<Vec<was::PoolStatus>> {
    let (pools, status) = WasControlClient::bind(conn).await?.pools().await?;
    crate::web_cmd::control_status(status, "application pools")?;
    Ok(pools
        .get()
        .map(|p| p.0.iter().map(was::PoolStatus::from).collect())
        .unwrap_or_default())
}

async fn stats(cli: &Cli, args: &StatsArgs, mut conn: Connection) -> Result<()> {
    let instance = args.site.unwrap_or(INSTANCE_GLOBAL);
    if let Some(period) = args.watch {
        return watch(cli, args, &mut conn, instance, period).await;
    }
    let s = web_counters(&mut conn, instance).await?;
    let pools = pools(&mut conn).await?;
    let cache = uri_cache(&mut conn).await?;
    print(cli, args.site, &s, &pools, cache)?;
    if args.clear {
        let mut inetinfo = InetinfoClient::bind(&mut conn).await?;
        let status = inetinfo
            .w3_clear_statistics2(Unique::new(None), instance)
            .await?;
        if status != 0 {
            return Err(status_error(status, instance));
        }
        output::message(cli.json, "statistics cleared")?;
    }
    Ok(())
}

fn requests(s: &W3Statistics1) -> u64 {
    [
        s.total_gets,
        s.total_posts,
        s.total_heads,
        s.total_puts,
        s.total_deletes,
        s.total_options,
        s.total_traces,
        s.total_move,
        s.total_copy,
        s.total_mkcol,
        s.total_propfind,
        s.total_proppatch,
        s.total_search,
        s.total_lock,
        s.total_unlock,
        s.total_others,
    ]
    .iter()
    .map(|n| u64::from(*n))
    .sum()
}

fn pools_json(pools: &[was::PoolStatus]) -> serde_json::Value {
    json!(pools
        .iter()
        .map(|p| json!({
            "name": p.name,
            "state": p.state,
            "queue_length": p.queued,
            "queue_arrivals": p.counters.queue_arrivals,
            "queue_rejections": p.counters.queue_rejections,
            "worker_starts": p.counters.worker_starts,
            "worker_failures": p.counters.worker_failures,
            "recycles": p.counters.recycles,
            "rapid_fail_stops": p.counters.rapid_fail_stops,
            "workers": p.workers.iter().map(|w| json!({
                "pid": w.pid,
                "state": w.state,
                "active_requests": w.active_requests,
                "requests": w.requests,
                "file_cache_hits": w.file_cache_hits,
                "file_cache_misses": w.file_cache_misses,
                "uptime_seconds": w.uptime_seconds,
            })).collect::<Vec<_>>(),
        }))
        .collect::<Vec<_>>())
}

/// `--watch`: the counters every `period` seconds, with rates per second
/// from the refresh before.
async fn watch(
    cli: &Cli,
    args: &StatsArgs,
    conn: &mut Connection,
    instance: u32,
    period: f64,
) -> Result<()> {
    use std::io::Write;
    let period = std::time::Duration::from_secs_f64(period.max(0.1));
    let mut before: Option<(std::time::Instant, W3Statistics1, Vec<was::PoolStatus>)> = None;
    let mut shown = 0u64;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let s = web_counters(conn, instance).await?;
        let pools = pools(conn).await?;
        let now = std::time::Instant::now();
        let rate = |new: u64, old: Option<u64>| -> f64 {
            match (&before, old) {
                (Some((t, _, _)), Some(old)) => {
                    new.saturating_sub(old) as f64 / now.duration_since(*t).as_secs_f64().max(1e-3)
                }
                _ => 0.0,
            }
        };
        let old = before.as_ref().map(|(_, s, _)| s);
        let old_pool = |name: &str| {
            before
                .as_ref()
                .and_then(|(_, _, p)| p.iter().find(|p| p.name == name))
        };
        let requests_rate = rate(requests(&s), old.map(requests));
        let sent_rate = rate(
            s.total_bytes_sent as u64,
            old.map(|o| o.total_bytes_sent as u64),
        );
        let received_rate = rate(
            s.total_bytes_received as u64,
            old.map(|o| o.total_bytes_received as u64),
        );
        let rejected_rate = rate(
            u64::from(s.total_rejected_requests),
            old.map(|o| u64::from(o.total_rejected_requests)),
        );
        if cli.json {
            let line = json!({
                "site": args.site,
                "requests_per_second": requests_rate,
                "bytes_sent_per_second": sent_rate,
                "bytes_received_per_second": received_rate,
                "rejected_per_second": rejected_rate,
                "current_connections": s.current_connections,
                "requests": requests(&s),
                "pools": pools_json(&pools),
            });
            println!("{line}");
        } else {
            let mut out = String::new();
            if terminal {
                // Clear the screen, as `watch` does.
                out.push_str("\x1b[H\x1b[2J");
            }
            out.push_str(&format!(
                "inetsrv stats{}, every {:.1} s (Ctrl-C stops)\n",
                args.site
                    .map(|id| format!(", site {id}"))
                    .unwrap_or_default(),
                period.as_secs_f64()
            ));
            out.push_str(&format!(
                "Web service   {requests_rate:8.1} requests/s  {:>9}/s sent  {:>9}/s received  {} connections  {rejected_rate:.1} rejected/s\n",
                bytes(sent_rate),
                bytes(received_rate),
                s.current_connections
            ));
            for p in &pools {
                let previous = old_pool(&p.name);
                out.push_str(&format!(
                    "pool {:<20} {:<8} queue {:<4} {:8.1} arrivals/s  {:.1} rejected/s  {} worker(s)\n",
                    p.name,
                    p.state,
                    p.queued,
                    rate(p.counters.queue_arrivals, previous.map(|o| o.counters.queue_arrivals)),
                    rate(p.counters.queue_rejections, previous.map(|o| o.counters.queue_rejections)),
                    p.workers.len()
                ));
                for w in &p.workers {
                    let was = previous
                        .and_then(|o| o.workers.iter().find(|x| x.pid == w.pid))
                        .map(|x| x.requests);
                    out.push_str(&format!(
                        "  worker {:<8} {:<9} {} active  {:8.1} requests/s  {} s up\n",
                        w.pid,
                        w.state,
                        w.active_requests,
                        rate(w.requests, was),
                        w.uptime_seconds
                    ));
                }
            }
            print!("{out}");
        }
        let _ = std::io::stdout().flush();
        shown += 1;
        if args.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        before = Some((now, s, pools));
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// A byte rate in words: 512 B, 3.4 KB, 12.0 MB.
fn bytes(rate: f64) -> String {
    match rate {
        r if r >= 1024.0 * 1024.0 => format!("{:.1} MB", r / (1024.0 * 1024.0)),
        r if r >= 1024.0 => format!("{:.1} KB", r / 1024.0),
        r => format!("{r:.0} B"),
    }
}

fn print(
    cli: &Cli,
    site: Option<u32>,
    s: &W3Statistics1,
    pools: &[was::PoolStatus],
    cache: Option<(u32, u32)>,
) -> Result<()> {
    let verbs = [
        ("GET", s.total_gets),
        ("POST", s.total_posts),
        ("HEAD", s.total_heads),
        ("PUT", s.total_puts),
        ("DELETE", s.total_deletes),
        ("OPTIONS", s.total_options),
        ("TRACE", s.total_traces),
        ("MOVE", s.total_move),
        ("COPY", s.total_copy),
        ("MKCOL", s.total_mkcol),
        ("PROPFIND", s.total_propfind),
        ("PROPPATCH", s.total_proppatch),
        ("SEARCH", s.total_search),
        ("LOCK", s.total_lock),
        ("UNLOCK", s.total_unlock),
        ("other", s.total_others),
    ];
    if cli.json {
        output::print_json(&json!({
            "site": site,
            "bytes_sent": s.total_bytes_sent,
            "bytes_received": s.total_bytes_received,
            "requests": verbs.iter().map(|(v, n)| (v.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "files_sent": s.total_files_sent,
            "not_found_errors": s.total_not_found_errors,
            "locked_errors": s.total_locked_errors,
            "anonymous_requests": s.total_anonymous_users,
            "authenticated_requests": s.total_non_anonymous_users,
            "current_anonymous": s.current_anonymous_users,
            "current_authenticated": s.current_non_anonymous_users,
            "max_anonymous": s.max_anonymous_users,
            "max_authenticated": s.max_non_anonymous_users,
            "isapi_requests": s.total_bgi_requests,
            "current_isapi_requests": s.current_bgi_requests,
            "max_isapi_requests": s.max_bgi_requests,
            "cgi_requests": s.total_cgi_requests,
            "current_cgi_requests": s.current_cgi_requests,
            "max_cgi_requests": s.max_cgi_requests,
            "rejected_requests": s.total_rejected_requests,
            "current_connections": s.current_connections,
            "max_connections": s.max_connections,
            "connection_attempts": s.connection_attempts,
            "uptime_seconds": s.service_uptime,
            "last_cleared": s.time_of_last_clear,
            "uri_cache_hits": cache.map(|c| c.0),
            "uri_cache_misses": cache.map(|c| c.1),
            "pools": pools_json(pools),
        }));
        return Ok(());
    }
    match site {
        Some(id) => println!("Web service statistics, site {id}"),
        None => println!("Web service statistics"),
    }
    println!("  bytes sent            {}", s.total_bytes_sent);
    println!("  bytes received        {}", s.total_bytes_received);
    let listed: Vec<String> = verbs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    println!(
        "  requests              {}",
        if listed.is_empty() {
            "none".to_string()
        } else {
            listed.join(", ")
        }
    );
    println!("  files sent            {}", s.total_files_sent);
    println!("  not found errors      {}", s.total_not_found_errors);
    println!(
        "  anonymous requests    {} ({} now, {} at most)",
        s.total_anonymous_users, s.current_anonymous_users, s.max_anonymous_users
    );
    println!(
        "  authenticated         {} ({} now, {} at most)",
        s.total_non_anonymous_users, s.current_non_anonymous_users, s.max_non_anonymous_users
    );
    println!(
        "  ISAPI requests        {} ({} now, {} at most)",
        s.total_bgi_requests, s.current_bgi_requests, s.max_bgi_requests
    );
    println!(
        "  CGI requests          {} ({} now, {} at most)",
        s.total_cgi_requests, s.current_cgi_requests, s.max_cgi_requests
    );
    println!("  rejected (503)        {}", s.total_rejected_requests);
    println!(
        "  connections           {} now, {} at most, {} attempts",
        s.current_connections, s.max_connections, s.connection_attempts
    );
    println!("  uptime                {} s", s.service_uptime);
    if let Some((hits, misses)) = cache {
        println!("  URI cache             {hits} hits, {misses} misses");
    }
    if !pools.is_empty() {
        println!("Application pools");
    }
    for p in pools {
        println!(
            "  {} ({}): queue {} now, {} arrived, {} rejected; workers started {}, failed {}, recycled {}{}",
            p.name,
            p.state,
            p.queued,
            p.counters.queue_arrivals,
            p.counters.queue_rejections,
            p.counters.worker_starts,
            p.counters.worker_failures,
            p.counters.recycles,
            if p.counters.rapid_fail_stops > 0 {
                format!(", stopped by rapid-fail protection {} time(s)", p.counters.rapid_fail_stops)
            } else {
                String::new()
            }
        );
        for w in &p.workers {
            println!(
                "    worker {} {}: {} active, {} requests, {} file cache hits, up {} s",
                w.pid, w.state, w.active_requests, w.requests, w.file_cache_hits, w.uptime_seconds
            );
        }
    }
    Ok(())
}
