//! `inetsrv iisreset`: IIS's iisreset, through IIisServiceControl
//! ([MS-IISS]) over DCOM — on this machine's RPC socket (as root or the
//! server's user, no logon) or on another server (`--server HOST`, as an
//! administrator of its user database).

use anyhow::{bail, Context, Result};
use clap::Args;
use iisadmin::iiss::{
    IisServiceControlClient, CLSID_IIS_SERVICE_CONTROL, IID_IIS_SERVICE_CONTROL, SERVICE_RUNNING,
    SERVICE_STOPPED,
};
use msrpc::client::Connection;
use serde_json::json;

use crate::rpc_cmd::{self, Target};
use crate::{output, Cli};

#[derive(Args, Debug)]
pub struct IisresetArgs {
    /// Stop, then start the web service (the default, as iisreset /RESTART).
    #[arg(long, group = "action")]
    restart: bool,
    /// Start what is configured to start (ServerAutoStart, AppPoolAutoStart).
    #[arg(long, group = "action")]
    start: bool,
    /// Stop every site and application pool (their worker processes end).
    #[arg(long, group = "action")]
    stop: bool,
    /// Show whether the web service runs.
    #[arg(long, group = "action")]
    status: bool,
    /// End every worker process now (each pool starts new ones on demand).
    #[arg(long, group = "action")]
    kill: bool,
    /// How long to wait for a stop or a start, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    timeout: u32,
    /// Do not end worker processes that do not stop in time (iisreset's
    /// /NOFORCE).
    #[arg(long)]
    noforce: bool,
    #[command(flatten)]
    target: Target,
}

/// One call's HRESULT as an error the administrator can act on.
fn check(hr: u32, what: &str) -> Result<()> {
    match hr {
        0 => Ok(()),
        iisadmin::iiss::E_ERROR_SERVICE_REQUEST_TIMEOUT => {
            bail!("{what}: not done within the timeout (--timeout)")
        }
        iisadmin::iiss::E_NOTIMPL => bail!("{what}: not supported by the server"),
        hr => bail!("{what}: the server answered HRESULT {hr:#010x}"),
    }
}

pub fn run(cli: &Cli, args: &IisresetArgs) -> Result<()> {
    rpc_cmd::run_connected(cli, &args.target, |conn, _| reset(cli, args, conn))
}

async fn reset(cli: &Cli, args: &IisresetArgs, mut conn: Connection) -> Result<()> {
    let remote = dcom::client::create_instance(
        &mut conn,
        CLSID_IIS_SERVICE_CONTROL,
        IID_IIS_SERVICE_CONTROL,
    )
    .await
    .context("cannot activate IIisServiceControl")?;
    let this = || dcom::types::OrpcThis::new(dcom::ids::COM_VERSION);
    let timeout_ms = args.timeout.saturating_mul(1000);
    let force = u32::from(!args.noforce);
    let result = async {
        let mut control = IisServiceControlClient::bind(&mut conn)
            .await?
            .on_object(remote.ipid);
        if args.status {
            let (_, buffer, _, count, hr) = control.status(this(), 64 * 1024).await?;
            check(hr, "status")?;
            let services = parse_status(&buffer.0, count as usize);
            if cli.json {
                output::print_json(&json!(services
                    .iter()
                    .map(|(name, display, state)| json!({
                        "name": name,
                        "display_name": display,
                        "state": state_name(*state),
                    }))
                    .collect::<Vec<_>>()));
            } else {
                for (name, display, state) in services {
                    println!("Status for {display} ( {name} ) : {}", state_name(state));
                }
            }
            return Ok(());
        }
        if args.kill {
            let (_, hr) = control.kill(this()).await?;
            check(hr, "kill")?;
            output::message(cli.json, "Internet services' worker processes ended")?;
            return Ok(());
        }
        let (stop, start) = match (args.stop, args.start) {
            (true, _) => (true, false),
            (_, true) => (false, true),
            _ => (true, true),
        };
        if stop {
            if !cli.json {
                println!("Attempting stop...");
            }
            let (_, hr) = control.stop(this(), timeout_ms, force).await?;
            check(hr, "stop")?;
            if !start {
                output::message(cli.json, "Internet services successfully stopped")?;
            }
        }
        if start {
            if !cli.json {
                println!("Attempting start...");
            }
            let (_, hr) = control.start(this(), timeout_ms).await?;
            check(hr, "start")?;
            let done = if stop {
                "Internet services successfully restarted"
            } else {
                "Internet services successfully started"
            };
            output::message(cli.json, done)?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    // The object goes whether or not the calls worked.
    let released = dcom::client::release(&mut conn, &remote).await;
    result?;
    released.context("cannot release IIisServiceControl")?;
    Ok(())
}

fn state_name(state: u32) -> &'static str {
    match state {
        SERVICE_RUNNING => "Running",
        SERVICE_STOPPED => "Stopped",
        2 => "Start pending",
        3 => "Stop pending",
        7 => "Paused",
        _ => "Unknown",
    }
}

/// The services of a STATUS_BLOB ([MS-IISS] 2.2.2): name, display name,
/// state.
fn parse_status(blob: &[u8], count: usize) -> Vec<(String, String, u32)> {
    let u32_at = |i: usize| {
        blob.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let string_at = |units: u32| -> String {
        let start = units as usize * 2;
        let mut out = Vec::new();
        let mut i = start;
        while let Some(b) = blob.get(i..i + 2) {
            let u = u16::from_le_bytes([b[0], b[1]]);
            if u == 0 {
                break;
            }
            out.push(u);
            i += 2;
        }
        String::from_utf16_lossy(&out)
    };
    (0..count)
        .filter_map(|n| {
            let at = n * 36;
            Some((
                string_at(u32_at(at)?),
                string_at(u32_at(at + 4)?),
                u32_at(at + 12)?,
            ))
        })
        .collect()
}
