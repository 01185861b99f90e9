//! A server that takes one request with `receive` and those that came
//! with it with `receive_now` (as the worker does) keeps getting
//! requests: each one taken either way gives the listener its credit
//! back. Were `receive_now` to take requests without counting them, the
//! credit (4 here) would run out and the load below would stall.

mod common;

use std::time::Duration;

use httpapi::{Response, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections, and the requests each sends one after another.
const CONNECTIONS: usize = 16;
const REQUESTS_EACH: usize = 25;

/// Sends `REQUESTS_EACH` requests on one keep-alive connection, each
/// after the last answer; the number answered with 200.
async fn client(port: u16) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut answered = 0;
    let mut buf = Vec::new();
    for _ in 0..REQUESTS_EACH {
        s.write_all(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        // Each answer is "HTTP/1.1 200 ..." with a 2-byte body "ok".
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if buf.len() >= end + 6 {
                    assert!(buf.starts_with(b"HTTP/1.1 200 "), "{buf:?}");
                    assert_eq!(&buf[end + 4..end + 6], b"ok");
                    buf.drain(..end + 6);
                    answered += 1;
                    break;
                }
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed after {answered} answers");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_taken_without_waiting_give_the_listener_its_credit_back() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, _pool, port) = common::pool_on_loopback(dir.path()).await;

    let session = Session::connect(listener.control_socket()).await.unwrap();
    let mut queue = session.open_queue("pool").await.unwrap();
    queue.set_receive_ahead(4);
    let server = tokio::spawn(async move {
        let (mut by_receive, mut by_receive_now) = (0usize, 0usize);
        while by_receive + by_receive_now < CONNECTIONS * REQUESTS_EACH {
            let first = queue.receive().await.unwrap();
            by_receive += 1;
            let mut next = Some(first);
            while let Some(req) = next {
                // Answered on a task of its own, as the worker answers one
                // that has to wait.
                tokio::spawn(async move {
                    let _ = req.respond(Response::new(200).body("ok")).await;
                });
                next = queue.receive_now().unwrap();
                if next.is_some() {
                    by_receive_now += 1;
                }
            }
        }
        (by_receive, by_receive_now)
    });

    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(client(port)))
        .collect();
    let mut answered = 0;
    for c in clients {
        answered += tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("the clients were answered (the credit did not run out)")
            .unwrap();
    }
    assert_eq!(answered, CONNECTIONS * REQUESTS_EACH);
    let (by_receive, by_receive_now) = server.await.unwrap();
    assert_eq!(by_receive + by_receive_now, CONNECTIONS * REQUESTS_EACH);
    // With sixteen clients at once, requests arrive together: some were
    // taken without waiting.
    assert!(
        by_receive_now > 0,
        "{by_receive} taken by receive, none by receive_now"
    );
}
