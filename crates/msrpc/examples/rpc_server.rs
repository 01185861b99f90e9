//! Serves the endpoint mapper and the management interface on a TCP port
//! (default 8135), the same UDP port and, with a second argument, a Unix
//! socket — to try
//! clients against the runtime alone: `cargo run -p msrpc --example
//! rpc_server -- 127.0.0.1:8135 /tmp/epmapper`. With
//! `RPC_SERVER_USER=name:password` in the environment, that one account
//! can log on with NTLM. It runs as `inetsrv start` runs its endpoint: on
//! a one-thread runtime, polling between calls for the default window
//! (`RPC_IDLE_POLL_US` sets another; 0 turns it off).

use std::sync::Arc;
use std::time::Duration;

use msrpc::epm::{EndpointMapper, EpmServer};
use msrpc::mgmt::{Management, MgmtServer};
use msrpc::security::Credentials;
use msrpc::server::{auth_level, Limits, Server, DEFAULT_IDLE_POLL};

/// The one account of `RPC_SERVER_USER`.
struct OneAccount {
    name: String,
    nt_hash: [u8; 16],
}

impl Credentials for OneAccount {
    fn nt_hash(&self, user: &str) -> Option<(String, [u8; 16])> {
        user.eq_ignore_ascii_case(&self.name)
            .then(|| (self.name.clone(), self.nt_hash))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8135".into());
    let addr = addr.parse().map_err(std::io::Error::other)?;
    let server: Arc<Server> = Server::new(Limits::default(), "inetsrv".into());
    if let Ok(account) = std::env::var("RPC_SERVER_USER") {
        use md4::Digest;
        let (name, password) = account.split_once(':').unwrap_or((&account, ""));
        let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
        server.set_credentials(Arc::new(OneAccount {
            name: name.to_string(),
            nt_hash: md4::Md4::digest(&utf16).into(),
        }));
    }
    // As inetsrv runs it: polling between calls for the default window,
    // or RPC_IDLE_POLL_US microseconds (0: off).
    let window = match std::env::var("RPC_IDLE_POLL_US") {
        Ok(us) => Duration::from_micros(us.parse().map_err(std::io::Error::other)?),
        Err(_) => DEFAULT_IDLE_POLL,
    };
    if !window.is_zero() {
        server
            .poll_between_calls(window)
            .map_err(std::io::Error::other)?;
    }
    server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
    server.register(MgmtServer(Management), auth_level::NONE, false);
    let bound = server.listen_tcp(addr).await?;
    println!("ncacn_ip_tcp:{bound}");
    let udp = server.listen_udp(bound).await?;
    println!("ncadg_ip_udp:{udp}");
    if let Some(path) = args.next() {
        server.listen_local(path.clone().into()).await?;
        println!("ncalrpc:{path}");
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
