//! IN channel recycling ([MS-RPCH] 3.2.2.5.12, the IN_R1 sequence) end to
//! end: msrpc's client with a short IN channel lifetime, through the
//! listener and this proxy, to an msrpc server's ncacn_http side handed
//! over in memory — all in one process, as `inetsrv start` runs them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use listener::{Listener, ListenerConfig};
use msrpc::client::{Connection, Options, ProxyRequest};
use msrpc::mgmt::{Management, MgmtClient, MgmtServer};
use msrpc::security::{Acceptors, Credentials};
use msrpc::server::{auth_level, Limits, Server};
use rpcproxy::{LocalServer, Logons, Proxy, ValidPorts};
use tokio::net::TcpStream;

struct Nobody;

impl Logons for Nobody {
    fn basic(&self, _user: &str, _password: &str) -> bool {
        false
    }
}

impl Credentials for Nobody {
    fn nt_hash(&self, _user: &str) -> Option<(String, [u8; 16])> {
        None
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_channel_is_recycled_while_calls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(ListenerConfig {
        listen_addresses: vec!["127.0.0.1".parse().unwrap()],
        control_socket: dir.path().join("run/httpapi.sock"),
        url_acl_file: dir.path().join("urlacl.json"),
        error_logging_dir: Some(dir.path().join("logs")),
        ..ListenerConfig::default()
    })
    .await
    .unwrap();
    let port = free_port();
    let server = Server::new(Limits::default(), "testhost".into());
    server.register(MgmtServer(Management), auth_level::NONE, false);
    // The server's ncacn_http endpoint as the proxy knows it by name; its
    // channels are handed over in memory.
    let endpoint: SocketAddr = "127.0.0.1:593".parse().unwrap();
    let reached_as = ValidPorts::own(593, &["localhost".to_string()]);
    let local = LocalServer {
        reached_as: reached_as.clone(),
        connect: Box::new(move |_client| {
            let (ours, theirs) = tokio::io::duplex(256 * 1024);
            tokio::spawn(
                server
                    .clone()
                    .serve_http_channel(theirs, endpoint, endpoint),
            );
            Box::new(ours) as Box<dyn rpcproxy::ServerStream>
        }),
    };
    let proxy = Proxy {
        local: Some(local),
        valid_ports: reached_as,
        allow_anonymous: true,
        logons: Arc::new(Nobody),
        acceptors: Acceptors {
            credentials: Arc::new(Nobody),
            kerberos: None,
        },
        handshakes: Default::default(),
    };
    let _proxy = rpcproxy::start(
        listener.control_socket(),
        &[format!("http://+:{port}/rpc/rpcproxy.dll/")],
        proxy,
    )
    .await
    .unwrap();

    let request = ProxyRequest {
        host: "localhost".into(),
        path_and_query: "/rpc/rpcproxy.dll?localhost:593".into(),
        authorization: None,
    };
    let opened = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&opened);
    let opener = Box::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Box::pin(TcpStream::connect(("127.0.0.1", port)))
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
    });
    let in_stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let out_stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // IN channels of 8 KB: a successor every 4 KB of requests.
    let mut conn = Connection::over_http_proxy_recycling(
        in_stream,
        out_stream,
        &request,
        Options::default(),
        opener,
        8192,
    )
    .await
    .unwrap();
    let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
    for call in 0..1000 {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            mgmt.is_server_listening(),
        )
        .await
        .unwrap_or_else(|_| panic!("call {call} timed out"))
        .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(answer, (0, 1), "call {call}");
    }
    // A successor is opened only once the one before took over (IN_R1/A4
    // came, IN_R1/B2 unplugged it): three mean two completed switches.
    let successors = opened.load(Ordering::SeqCst);
    assert!(successors >= 3, "{successors} successor IN channels");
    // Every call reached the server once (the bind's and this one too).
    let (_, stats, st) = mgmt.inq_stats(4).await.unwrap();
    assert_eq!(st, 0);
    assert!(stats.0[0] >= 1001, "calls in: {:?}", stats.0);
}
