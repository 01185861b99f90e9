//! Channel recycling ([MS-RPCH] 3.2.2.5.12 and 3.2.5.5.15, the IN_R1 and
//! OUT_R1 sequences) end to end: msrpc's client with a short IN channel
//! lifetime and this proxy with a short OUT channel lifetime, through the
//! listener, to an msrpc server's ncacn_http side handed over in memory —
//! all in one process, as `inetsrv start` runs them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use listener::{Listener, ListenerConfig};
use msrpc::client::{Connection, Options, ProxyRequest};
use msrpc::mgmt::{Management, MgmtClient, MgmtServer};
use msrpc::security::{Acceptors, Credentials};
use msrpc::server::{auth_level, Limits, Server};
use rpcproxy::{LocalServer, Logons, Proxy, ValidPorts};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection to the proxy that notes the method of the request it
/// carries (its first word).
struct Noted {
    inner: TcpStream,
    methods: Arc<Mutex<Vec<String>>>,
    noted: bool,
}

impl AsyncRead for Noted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Noted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !self.noted {
            self.noted = true;
            let method = String::from_utf8_lossy(data)
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_string();
            self.methods.lock().unwrap().push(method);
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connect(port: u16, methods: Arc<Mutex<Vec<String>>>) -> std::io::Result<Noted> {
    Ok(Noted {
        inner: TcpStream::connect(("127.0.0.1", port)).await?,
        methods,
        noted: false,
    })
}

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
async fn both_channels_are_recycled_while_calls_go_on() {
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
        out_channel_lifetime: 16384,
        schemes: Box::new(|_, _| rpcproxy::Schemes::ALL),
    };
    let _proxy = rpcproxy::start(
        listener.control_socket(),
        &[(format!("http://+:{port}/rpc/rpcproxy.dll/"), 0)],
        proxy,
    )
    .await
    .unwrap();

    let request = ProxyRequest {
        host: "localhost".into(),
        path_and_query: "/rpc/rpcproxy.dll?localhost:593".into(),
        authorization: None,
    };
    let methods = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&methods);
    let opener = Box::new(move || {
        Box::pin(connect(port, Arc::clone(&noted)))
            as Pin<Box<dyn std::future::Future<Output = _> + Send>>
    });
    let in_stream = connect(port, Arc::clone(&methods)).await.unwrap();
    let out_stream = connect(port, Arc::clone(&methods)).await.unwrap();
    // IN channels of 8 KB: a successor every 4 KB of requests; OUT
    // channels of 16 KB (the proxy's): one every 8 KB of responses.
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
    // came, or OUT_R1/A10): three of each mean two completed switches.
    let methods = methods.lock().unwrap().clone();
    let count = |m: &str| methods.iter().filter(|x| *x == m).count();
    assert!(count("RPC_IN_DATA") >= 3, "{methods:?}");
    assert!(count("RPC_OUT_DATA") >= 3, "{methods:?}");
    // Every call reached the server once (the bind's and this one too).
    let (_, stats, st) = mgmt.inq_stats(4).await.unwrap();
    assert_eq!(st, 0);
    assert!(stats.0[0] >= 1001, "calls in: {:?}", stats.0);
}
