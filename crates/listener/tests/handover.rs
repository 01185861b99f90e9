//! A process handing its queue over to the next one (a recycle) under
//! load loses no request: it stops receiving, answers everything handed
//! to it before the StopReceiving reply, and only then closes. A request
//! must never be handed to it after that reply, nor to a session that is
//! closing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use httpapi::{Response, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One process: its own session on the control socket, serving the queue
/// until told to hand over, then draining and closing.
async fn serve_until_handover(
    socket: std::path::PathBuf,
    attached: tokio::sync::oneshot::Sender<()>,
    handover: tokio::sync::oneshot::Receiver<()>,
    generation: u32,
) {
    let session = Session::connect(&socket).await.unwrap();
    let mut queue = session.open_queue("pool").await.unwrap();
    queue.set_receive_ahead(4);
    let answer = move |req: httpapi::Request| {
        tokio::spawn(async move {
            // A little work, so requests are in flight at the handover.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let _ = req
                .respond(Response::new(200).body(format!("generation {generation}")))
                .await;
        })
    };
    let mut in_flight = Vec::new();
    // The first request proves the credit reached the listener.
    let mut attached = Some(attached);
    let mut handover = handover;
    loop {
        tokio::select! {
            req = queue.receive() => {
                in_flight.push(answer(req.unwrap()));
                if let Some(tx) = attached.take() {
                    let _ = tx.send(());
                }
            }
            _ = &mut handover => break,
        }
    }
    queue.stop_receiving().await.unwrap();
    while let Some(req) = queue.try_receive() {
        in_flight.push(answer(req));
    }
    for task in in_flight {
        task.await.unwrap();
    }
    queue.close().await.unwrap();
    drop(session);
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.first_failure.lock().unwrap().get_or_insert(what);
    }
}

/// Reads one response (head and Content-Length body) from a keep-alive
/// connection.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, String), String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Err(format!("closed in the body after {head}")),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
            buf.drain(..end + 4 + length);
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok((status, body));
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) => return Err("the connection closed without an answer".into()),
            Err(e) => return Err(format!("read: {e}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn load(port: u16, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    while !stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => conn = Some((s, Vec::new())),
                Err(e) => {
                    tally.fail(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let (s, buf) = conn.as_mut().unwrap();
        if let Err(e) = s.write_all(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n").await {
            tally.fail(format!("write: {e}"));
            conn = None;
            continue;
        }
        match read_response(s, buf).await {
            Ok((200, body)) if body.starts_with("generation ") => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok((status, body)) => {
                tally.fail(format!("status {status}: {body}"));
                conn = None;
            }
            Err(e) => {
                tally.fail(e);
                conn = None;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_under_load_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, _pool, port) = common::pool_on_loopback(dir.path()).await;
    let socket = listener.control_socket().to_path_buf();

    let start = |generation: u32| {
        let (attached_tx, attached_rx) = tokio::sync::oneshot::channel();
        let (handover_tx, handover_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve_until_handover(
            socket.clone(),
            attached_tx,
            handover_rx,
            generation,
        ));
        (attached_rx, handover_tx, task)
    };

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (attached, mut handover, mut task) = start(0);
    let loads: Vec<_> = (0..6)
        .map(|_| tokio::spawn(load(port, tally.clone(), stop.clone())))
        .collect();
    attached.await.unwrap();

    // Two processes overlap at each handover, as in an overlapped recycle.
    const HANDOVERS: u32 = 200;
    for generation in 1..=HANDOVERS {
        let (attached, next_handover, next_task) = start(generation);
        tokio::time::timeout(Duration::from_secs(10), attached)
            .await
            .expect("the next process took a request")
            .unwrap();
        let _ = handover.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the old process drained")
            .unwrap();
        (handover, task) = (next_handover, next_task);
    }
    stop.store(true, Ordering::SeqCst);
    for l in loads {
        l.await.unwrap();
    }
    let _ = handover.send(());
    task.await.unwrap();

    let ok = tally.ok.load(Ordering::SeqCst);
    assert!(
        ok >= u64::from(HANDOVERS),
        "every process served: {ok} answers"
    );
    assert_eq!(
        tally.failed.load(Ordering::SeqCst),
        0,
        "{ok} answered; the first failure: {:?}",
        tally.first_failure.lock().unwrap()
    );
}
