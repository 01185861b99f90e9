//! Serves the endpoint mapper and the management interface on a TCP port
//! (default 8135) and, with a second argument, a Unix socket — to try
//! clients against the runtime alone: `cargo run -p msrpc --example
//! rpc_server -- 127.0.0.1:8135 /tmp/epmapper`.

use std::sync::Arc;

use msrpc::epm::{EndpointMapper, EpmServer};
use msrpc::mgmt::{Management, MgmtServer};
use msrpc::server::{auth_level, Limits, Server};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8135".into());
    let addr = addr.parse().map_err(std::io::Error::other)?;
    let server: Arc<Server> = Server::new(Limits::default(), "inetsrv".into());
    server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
    server.register(MgmtServer(Management), auth_level::NONE, false);
    let bound = server.listen_tcp(addr).await?;
    println!("ncacn_ip_tcp:{bound}");
    if let Some(path) = args.next() {
        server.listen_local(path.clone().into()).await?;
        println!("ncalrpc:{path}");
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
