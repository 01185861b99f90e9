//! Demand start: a request for a queue nobody serves asks the controller
//! (the activation service's hook) to start a process, and waits for one
//! to attach.

mod common;

use std::sync::Arc;
use std::time::Duration;

use httpapi::{Response, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_starts_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, pool, port) = common::pool_on_loopback(dir.path()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    listener.set_demand_start(Arc::new(move |queue: &listener::Queue| {
        let _ = tx.send(queue.name.clone());
    }));

    let mut clients = Vec::new();
    for i in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(
            format!("GET /app/{i} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        clients.push(s);
    }
    // Asked once, not once per request.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap(),
        "pool"
    );
    // Once all three wait in the queue, each has been dispatched (and
    // would have asked by now).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pool.queue().pending() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the requests never queued"
        );
        tokio::task::yield_now().await;
    }
    assert!(rx.try_recv().is_err());
    assert_eq!(pool.queue().pending(), 3);

    // The "started process" attaches to the queue and serves what waited.
    let session = Session::connect(listener.control_socket()).await.unwrap();
    let mut queue = session.open_queue("pool").await.unwrap();
    tokio::spawn(async move {
        while let Ok(req) = queue.receive().await {
            let path = req.url.path.clone();
            let _ = req.respond(Response::new(200).body(path)).await;
        }
    });
    for (i, mut s) in clients.into_iter().enumerate() {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with(&format!("/app/{i}")), "{text}");
    }
    assert_eq!(pool.queue().consumers(), 1);
}
