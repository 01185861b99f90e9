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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_through_a_queue() {
    let dir = tempfile::tempdir().unwrap();
    let config = ListenerConfig {
        listen_addresses: vec!["127.0.0.1".parse().unwrap()],
        control_socket: dir.path().join("run/httpapi.sock"),
        url_acl_file: dir.path().join("urlacl.json"),
        error_logging_dir: Some(dir.path().join("logs")),
        ..ListenerConfig::default()
    };
    let listener = Listener::start(config).await.unwrap();
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
