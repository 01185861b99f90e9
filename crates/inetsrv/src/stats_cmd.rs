//! `inetsrv stats`: the Web service's counters through the Inetinfo
//! interface ([MS-IRP] R_W3QueryStatistics2) — of this server over its RPC
//! socket, or of another (`--server HOST`); `--clear` zeroes them
//! (R_W3ClearStatistics2).

use anyhow::{bail, Result};
use clap::Args;
use iisadmin::irp::{InetinfoClient, W3Statistics1, W3StatisticsStruct, INSTANCE_GLOBAL};
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
    #[arg(long)]
    clear: bool,
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

async fn stats(cli: &Cli, args: &StatsArgs, mut conn: Connection) -> Result<()> {
    let instance = args.site.unwrap_or(INSTANCE_GLOBAL);
    let mut inetinfo = InetinfoClient::bind(&mut conn).await?;
    let (info, status) = inetinfo
        .w3_query_statistics2(Unique::new(None), 0, instance, 0)
        .await?;
    if status != 0 {
        return Err(status_error(status, instance));
    }
    let W3StatisticsStruct::Info1(info) = info else {
        bail!("the server answered another level of statistics");
    };
    let Some(s) = info.get() else {
        bail!("the server answered no statistics");
    };
    print(cli, args.site, s)?;
    if args.clear {
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

fn print(cli: &Cli, site: Option<u32>, s: &W3Statistics1) -> Result<()> {
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
    Ok(())
}
