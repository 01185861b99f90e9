//! A load client for `bench/rpc.sh`: C connections, each binding once and
//! making back-to-back small calls for D seconds; prints calls per second
//! and latency percentiles. The same client runs against inetsrv's
//! endpoint and Samba's, so the ratio compares servers.
//!
//! usage: rpc_bench [udp:|tokio:]ADDR [is_server_listening|ept_lookup_handle_free|imsa_get_data]
//!                  [CONNECTIONS] [SECONDS] [LEVEL USER PASSWORD [PROVIDER]]
//!
//! `udp:ADDR` calls over ncadg_ip_udp, one activity per "connection";
//! `tokio:ADDR` over TCP with the same tokio-driven client, so that the
//! two transports are compared with one client (the connectionless
//! client needs tokio's UDP sockets; the default TCP client runs on the
//! event loop below). `https:PROXY:PORT/SERVER:PORT` goes through an RPC
//! proxy (RPC over HTTP v2 over TLS to 127.0.0.1:PROXY_PORT, ncacn_http
//! at SERVER:PORT), its HTTP channel logged on as RPC_BENCH_PROXY_USER
//! (`user:password`), the proxy's certificate trusted from the PEM file
//! RPC_BENCH_CA.
//!
//! imsa_get_data (`bench/dcom.sh`, against `inetsrv start`): each
//! connection activates CLSID_MSAdminBase_W over DCOM, opens /LM/W3SVC and
//! reads site 1's ServerComment with IMSAdminBaseW R_GetData per call.
//!
//! LEVEL is an authentication level (none, connect, integrity, privacy);
//! above none each connection logs on as USER with PROVIDER: ntlm (the
//! default) or spnego.
//!
//! The calls go through msrpc's client runtime (binding, NTLM or SPNEGO,
//! sealing, the generated MGMT and EPM stubs) over `Connection::over`,
//! driven by a small event loop of its own instead of tokio's: one
//! thread, plain non-blocking sockets and one epoll set. A load generator
//! should cost less than the server it measures; at 16 connections the
//! two are close (about 5 µs of CPU a call each on the 2-vCPU machine of
//! `BENCHMARKS.md`), and this loop spends about 5% less CPU a call than
//! the same client on a tokio runtime.

// A load client, not product code: it calls epoll and recv itself.
#![allow(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use iisadmin::imsa::{
    MetadataRecord, MsAdminBaseWClient, CLSID_MSADMIN_BASE_W, IID_IMSADMIN_BASE_W,
};
use msrpc::client::{CallError, ClientAuth, Connection, Options};
use msrpc::epm::EpmClient;
use msrpc::mgmt::MgmtClient;
use msrpc::ndr::{ContextHandle, Unique, WString};
use msrpc::security::{auth_level, auth_type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args.next().ok_or("usage: rpc_bench ADDR")?;
    let (mode, addr) = match target.split_once(':') {
        Some((mode @ ("udp" | "tokio" | "https"), addr)) => (mode, addr),
        _ => ("epoll", target.as_str()),
    };
    // https:PROXY_PORT/SERVER:PORT: the proxy on loopback.
    let (addr, proxy_target) = match addr.split_once('/') {
        Some((port, server)) if mode == "https" => {
            (format!("127.0.0.1:{port}"), Some(server.to_string()))
        }
        _ => (addr.to_string(), None),
    };
    let addr: SocketAddr = addr.parse()?;
    let call = args.next().unwrap_or_else(|| "is_server_listening".into());
    if ![
        "is_server_listening",
        "ept_lookup_handle_free",
        "imsa_get_data",
    ]
    .contains(&call.as_str())
    {
        return Err(
            "the call: is_server_listening, ept_lookup_handle_free or imsa_get_data".into(),
        );
    }
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
    if mode != "epoll" {
        let transport = match (mode, proxy_target) {
            ("udp", _) => Transport::Udp,
            ("https", Some(server)) => Transport::Https(server),
            _ => Transport::Tcp,
        };
        let latencies = on_tokio(transport, addr, &call, connections, auth, until)?;
        report(latencies, seconds);
        return Ok(());
    }
    let mut sockets = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    for _ in 0..connections {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let drained = Arc::new(AtomicBool::new(false));
        sockets.push((stream.as_raw_fd(), Arc::clone(&drained)));
        let options = Options {
            auth: auth.clone(),
            ..Options::default()
        };
        let mut conn = Connection::over(Socket { stream, drained }, options);
        let call = call.clone();
        tasks.push(Box::pin(async move {
            calls_until(&mut conn, &call, until).await
        }));
    }
    let mut all = Vec::new();
    for result in run_to_completion(&sockets, tasks)? {
        all.extend(result?);
    }
    report(all, seconds);
    Ok(())
}

/// Calls per second and latency percentiles, as bench/rpc.sh reads them.
fn report(mut all: Vec<Duration>, seconds: u64) {
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
}

/// How the tokio-driven client reaches the server.
#[derive(Clone)]
enum Transport {
    Tcp,
    Udp,
    /// Through the RPC proxy at the address, to this ncacn_http server.
    Https(String),
}

/// A TLS connection to the RPC proxy, trusting RPC_BENCH_CA.
async fn tls_to(
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, CallError> {
    use rustls::pki_types::pem::PemObject;
    let path = std::env::var("RPC_BENCH_CA").map_err(|_| CallError::Protocol("RPC_BENCH_CA"))?;
    let pem = std::fs::read(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(cert);
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| CallError::Protocol("TLS versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")
        .map_err(|_| CallError::Protocol("server name"))?;
    Ok(
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await?,
    )
}

/// A virtual connection through the RPC proxy at `addr` to `server`.
async fn through_proxy(
    addr: SocketAddr,
    server: &str,
    options: Options,
) -> Result<Connection, CallError> {
    use base64::Engine;
    let user = std::env::var("RPC_BENCH_PROXY_USER")
        .map_err(|_| CallError::Protocol("RPC_BENCH_PROXY_USER"))?;
    let request = msrpc::client::ProxyRequest {
        host: "localhost".into(),
        path_and_query: format!("/rpc/rpcproxy.dll?{server}"),
        authorization: Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user)
        )),
    };
    let in_stream = tls_to(addr).await?;
    let out_stream = tls_to(addr).await?;
    Connection::over_http_proxy(in_stream, out_stream, &request, options).await
}

/// The calls on a one-thread tokio runtime: `connections` activities over
/// UDP, or connections over TCP or through an RPC proxy.
fn on_tokio(
    transport: Transport,
    addr: SocketAddr,
    call: &str,
    connections: usize,
    auth: Option<ClientAuth>,
    until: Instant,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let options = Options {
                auth: auth.clone(),
                ..Options::default()
            };
            let call = call.to_string();
            let transport = transport.clone();
            tasks.spawn(async move {
                let mut conn = match transport {
                    Transport::Udp => {
                        let datagram = msrpc::client::DatagramOptions::default();
                        Connection::connect_udp(addr, options, datagram).await?
                    }
                    Transport::Tcp => Connection::connect_tcp(addr, options).await?,
                    Transport::Https(server) => through_proxy(addr, &server, options).await?,
                };
                calls_until(&mut conn, &call, until).await
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.extend(done??);
        }
        Ok(all)
    })
}

/// Binds the call's interface on `conn` and calls it back to back until
/// `until`: each call's latency.
async fn calls_until(conn: &mut Connection, call: &str, until: Instant) -> TaskResult {
    let mut client = match call {
        "ept_lookup_handle_free" => Client::Epm(EpmClient::bind(conn).await?),
        "imsa_get_data" => Client::admin_base(conn).await?,
        _ => Client::Mgmt(MgmtClient::bind(conn).await?),
    };
    let mut latencies = Vec::new();
    // One clock read a call: a call's end is the next one's start.
    let mut start = Instant::now();
    while start < until {
        client.call().await?;
        let end = Instant::now();
        latencies.push(end - start);
        start = end;
    }
    Ok(latencies)
}

/// The interface a connection calls, bound.
enum Client<'c> {
    Mgmt(MgmtClient<'c>),
    Epm(EpmClient<'c>),
    /// IMSAdminBaseW on an activated object, with an open handle.
    AdminBase(MsAdminBaseWClient<'c>, u32),
}

fn this() -> dcom::types::OrpcThis {
    dcom::types::OrpcThis::new(dcom::ids::COM_VERSION)
}

impl<'c> Client<'c> {
    /// Activates IMSAdminBaseW and opens /LM/W3SVC for reading.
    async fn admin_base(conn: &'c mut Connection) -> Result<Client<'c>, CallError> {
        let remote = dcom::client::create_instance(conn, CLSID_MSADMIN_BASE_W, IID_IMSADMIN_BASE_W)
            .await
            .map_err(|e| match e {
                dcom::client::ClientError::Call(e) => e,
                other => panic!("activation: {other}"),
            })?;
        let mut client = MsAdminBaseWClient::bind(conn).await?.on_object(remote.ipid);
        let path = Unique::new(Some(WString("/LM/W3SVC".into())));
        let (_, handle, hr) = client.open_key(this(), 0, path, 1, 1000).await?;
        assert_eq!(hr, 0, "OpenKey");
        Ok(Client::AdminBase(client, handle))
    }

    /// The small call of its interface.
    async fn call(&mut self) -> Result<(), CallError> {
        match self {
            Client::Mgmt(mgmt) => mgmt.is_server_listening().await.map(drop),
            Client::Epm(epm) => epm
                .ept_lookup_handle_free(ContextHandle::default())
                .await
                .map(drop),
            Client::AdminBase(admin, handle) => {
                let record = MetadataRecord {
                    identifier: 1015,
                    data_len: 4096,
                    ..MetadataRecord::default()
                };
                let path = Unique::new(Some(WString("1".into())));
                let (_, _, _, blob, hr) = admin.get_data(this(), *handle, path, record).await?;
                assert!(hr == 0 && blob.get().is_some(), "GetData answered {hr:#x}");
                Ok(())
            }
        }
    }
}

/// One connection's calls, start to end: each call's latency.
type TaskResult = Result<Vec<Duration>, CallError>;
type Task = Pin<Box<dyn Future<Output = TaskResult>>>;

/// Runs each task until it ends: a task is polled at first, then again
/// whenever epoll reports its socket (`sockets[i]` for `tasks[i]`)
/// readable or writable. Edge-triggered, so a task is parked only once a
/// read or write of its socket would block (or its socket is known
/// drained), which is the only way its future waits: the waker has
/// nothing to do. A readable event clears the socket's drained flag.
fn run_to_completion(
    sockets: &[(RawFd, Arc<AtomicBool>)],
    mut tasks: Vec<Task>,
) -> io::Result<Vec<TaskResult>> {
    // SAFETY: plain syscalls on descriptors this process owns; the epoll
    // descriptor is closed before returning.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = (|| {
        for (i, (fd, _)) in sockets.iter().enumerate() {
            let mut event = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, *fd, &mut event) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut results: Vec<Option<TaskResult>> = tasks.iter().map(|_| None).collect();
        let mut running = tasks.len();
        let mut poll_task =
            |i: usize, results: &mut Vec<Option<TaskResult>>, running: &mut usize| {
                if results[i].is_none() {
                    if let Poll::Ready(result) = tasks[i].as_mut().poll(&mut cx) {
                        results[i] = Some(result);
                        *running -= 1;
                    }
                }
            };
        for i in 0..sockets.len() {
            poll_task(i, &mut results, &mut running);
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; sockets.len().max(1)];
        while running > 0 {
            let n =
                unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in &events[..n as usize] {
                let i = event.u64 as usize;
                let arrived = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR;
                if event.events & arrived as u32 != 0 {
                    sockets[i].1.store(false, Ordering::Relaxed);
                }
                poll_task(i, &mut results, &mut running);
            }
        }
        Ok(results.into_iter().flatten().collect())
    })();
    unsafe { libc::close(epoll) };
    result
}

/// A connected non-blocking socket read and written with one syscall
/// each: a read or write that would block is `Pending`, and the event
/// loop polls again when the socket is ready. A read that filled less
/// than its room left the socket drained: the next read is `Pending`
/// with no syscall until epoll reports the socket readable again (as
/// tokio does; what arrives after the read raises a new edge), which
/// saves a `recv` that would fail with EAGAIN before every answer.
struct Socket {
    stream: TcpStream,
    drained: Arc<AtomicBool>,
}

/// The outcome of a syscall that returned `n`: a count, or `Pending` when
/// it would block.
fn syscall_result(n: isize) -> Poll<io::Result<usize>> {
    if n >= 0 {
        return Poll::Ready(Ok(n as usize));
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock => Poll::Pending,
        _ => Poll::Ready(Err(e)),
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.drained.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        loop {
            // SAFETY: recv writes at most `room.len()` bytes into the
            // unfilled part, and only the `n` it wrote are marked filled.
            let room = unsafe { buf.unfilled_mut() };
            let fd = self.stream.as_raw_fd();
            let n = unsafe { libc::recv(fd, room.as_mut_ptr().cast(), room.len(), 0) };
            match syscall_result(n) {
                Poll::Ready(Ok(n)) => {
                    if n > 0 && n < room.len() {
                        self.drained.store(true, Ordering::Relaxed);
                    }
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.drained.store(true, Ordering::Relaxed);
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            // SAFETY: send reads `bytes.len()` bytes of a live slice.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            match syscall_result(n) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.shutdown(std::net::Shutdown::Write))
    }
}
