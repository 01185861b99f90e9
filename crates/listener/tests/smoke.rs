use std::time::Duration;

use httpapi::{Response, Session};
use listener::{Listener, ListenerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A listener on loopback with its files in `dir`.
fn config_in(dir: &std::path::Path) -> ListenerConfig {
    ListenerConfig {
        listen_addresses: vec!["127.0.0.1".parse().unwrap()],
        control_socket: dir.join("run/httpapi.sock"),
        url_acl_file: dir.join("urlacl.json"),
        error_logging_dir: Some(dir.join("logs")),
        ..ListenerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_through_a_queue() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(config_in(dir.path())).await.unwrap();
    let port = free_port();
    let session = Session::connect(listener.control_socket()).await.unwrap();
    let mut queue = session.create_queue("hello").await.unwrap();
    queue
        .add_url(&format!("http://+:{port}/hello/"), 7)
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let req = queue.receive().await.unwrap();
            let text = format!("{} {} ctx={}", req.method, req.url.full(), req.url_context);
            req.respond(Response::new(200).body(text)).await.unwrap();
        }
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /hello/x HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    println!("{text}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains(&format!("GET http://localhost:{port}/hello/x ctx=7")),
        "{text}"
    );
    assert!(text.contains("HTTP/1.1 404 Not Found"), "{text}");
}

/// A program in the listener's process takes a connection over (opaque
/// mode): it gets the body bytes the listener had passed on, then the
/// rest of the client's bytes unframed, and writes its own answer; an
/// earlier request on the connection was served as usual, and while the
/// program holds the connection it still counts against MaxConnections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_takes_a_connection_over() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(ListenerConfig {
        max_connections: 1,
        ..config_in(dir.path())
    })
    .await
    .unwrap();
    let port = free_port();
    let session = Session::connect(listener.control_socket()).await.unwrap();
    let mut queue = session.create_queue("tunnel").await.unwrap();
    queue
        .add_url(&format!("http://+:{port}/tunnel/"), 0)
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let mut req = queue.receive().await.unwrap();
            if req.method == "GET" {
                req.respond(Response::new(200).body("plain")).await.unwrap();
                continue;
            }
            // The body's first bytes through the queue, the rest direct.
            let first = req.body_chunk().await.unwrap().unwrap();
            let mut conn = req.take_connection(200).await.unwrap();
            let mut rest = vec![0u8; 14 - first.len() + 6];
            conn.read_exact(&mut rest).await.unwrap();
            let mut all = first.to_vec();
            all.extend_from_slice(&rest);
            conn.write_all(b"TUNNEL ").await.unwrap();
            conn.write_all(&all).await.unwrap();
            // Held a while: the connection still counts against
            // MaxConnections while the program has it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            conn.shutdown().await.unwrap();
        }
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /tunnel/a HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first[..n]);
    assert!(
        first.starts_with("HTTP/1.1 200 OK\r\n") && first.ends_with("plain"),
        "{first}"
    );
    // A body of 14 bytes, then 6 more the listener never frames.
    s.write_all(b"TUNNEL /tunnel/b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 14\r\n\r\n")
        .await
        .unwrap();
    s.write_all(b"fourteen bytes").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"+after").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut refused = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut refused)).await;
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert_eq!(String::from_utf8_lossy(&got), "TUNNEL fourteen bytes+after");
}

/// What the server sends next, as text.
async fn first_bytes(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Expect: 100-continue is answered when the program reads the body, not
/// before: a program that refuses at once (a 401 for a logon, say) sends
/// its answer with no 100 ahead of it, and the client keeps its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_goes_out_when_the_program_reads_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::start(config_in(dir.path())).await.unwrap();
    let port = free_port();
    let session = Session::connect(listener.control_socket()).await.unwrap();
    let mut queue = session.create_queue("expect").await.unwrap();
    queue
        .add_url(&format!("http://+:{port}/expect/"), 0)
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let mut req = queue.receive().await.unwrap();
            if req.url.path.ends_with("/deny") {
                req.respond(Response::new(401).body("no")).await.unwrap();
                continue;
            }
            let body = req.read_body(1024).await.unwrap();
            req.respond(Response::new(200).body(body)).await.unwrap();
        }
    });
    let head = |path: &str| {
        format!(
            "POST /expect/{path} HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\
             Content-Length: 5\r\n\r\n"
        )
    };
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(head("deny").as_bytes()).await.unwrap();
    let refused = first_bytes(&mut s).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(head("read").as_bytes()).await.unwrap();
    let interim = first_bytes(&mut s).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let answer = first_bytes(&mut s).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );
}
