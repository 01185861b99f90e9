//! A load client for `bench/rpc.sh`: C connections, each binding once and
//! making back-to-back small calls for D seconds; prints calls per second
//! and latency percentiles. The same client runs against inetsrv's
//! endpoint and Samba's, so the ratio compares servers.
//!
//! usage: rpc_bench ADDR [is_server_listening|ept_lookup_handle_free]
//!                  [CONNECTIONS] [SECONDS] [LEVEL USER PASSWORD [PROVIDER]]
//!
//! LEVEL is an authentication level (none, connect, integrity, privacy);
//! above none each connection logs on as USER with PROVIDER: ntlm (the
//! default) or spnego.

use std::time::{Duration, Instant};

use msrpc::client::{ClientAuth, Connection, Options};
use msrpc::epm::EpmClient;
use msrpc::mgmt::MgmtClient;
use msrpc::ndr::ContextHandle;
use msrpc::security::{auth_level, auth_type};

// One thread: the benchmark pins the client to one CPU.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args.next().ok_or("usage: rpc_bench ADDR")?.parse()?;
    let call = args.next().unwrap_or_else(|| "is_server_listening".into());
    let connections: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let level = args.next().unwrap_or_else(|| "none".into());
    let level = auth_level::parse(&level).ok_or("LEVEL: none, connect, integrity or privacy")?;
    let auth = (level > auth_level::NONE)
        .then(|| -> Result<ClientAuth, &str> {
            let user = args.next().ok_or("USER")?;
            let password = args.next().ok_or("PASSWORD")?;
            let provider = match args.next().as_deref() {
                None | Some("ntlm") => auth_type::WINNT,
                Some("spnego") => auth_type::GSS_NEGOTIATE,
                Some(_) => return Err("PROVIDER: ntlm or spnego"),
            };
            Ok(ClientAuth {
                auth_type: provider,
                level,
                user,
                domain: String::new(),
                password,
                ticket: None,
            })
        })
        .transpose()?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let call = call.clone();
        let options = Options {
            auth: auth.clone(),
            ..Options::default()
        };
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::connect_tcp(addr, options).await?;
            let mut latencies = Vec::new();
            if call == "is_server_listening" {
                let mut mgmt = MgmtClient::bind(&mut conn).await?;
                while Instant::now() < until {
                    let t = Instant::now();
                    mgmt.is_server_listening().await?;
                    latencies.push(t.elapsed());
                }
            } else {
                let mut epm = EpmClient::bind(&mut conn).await?;
                while Instant::now() < until {
                    let t = Instant::now();
                    epm.ept_lookup_handle_free(ContextHandle::default()).await?;
                    latencies.push(t.elapsed());
                }
            }
            Ok::<_, msrpc::client::CallError>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "calls={} calls_per_sec={:.0} p50_us={:.1} p99_us={:.1}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
