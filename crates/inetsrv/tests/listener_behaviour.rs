//! The listener's behaviour over real sockets: routing precedence between
//! queues, full, stopped and unserved queues, every timeout (slow clients
//! included), the connection limit, and the HTTPERR log field by field.

mod common;

use std::time::{Duration, Instant};

use common::{echo, exchange, free_port, Client, Server};
use serde_json::json;

fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

async fn queue_of(port: u16, path: &str, host: &str) -> String {
    let reply = exchange(port, &get(path, host)).await.expect("no response");
    assert_eq!(reply.status, 200, "{path} on {host}: {}", reply.head);
    reply.json()["queue"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_precedence_across_queues() {
    let server = Server::start(json!({}));
    let port = free_port();
    let s = server.socket();
    let _weak = echo(&s, "weak", &[format!("http://*:{port}/")]).await;
    assert_eq!(queue_of(port, "/x", "anything").await, "weak");
    let _ip = echo(&s, "ip", &[format!("http://127.0.0.1:{port}/")]).await;
    assert_eq!(queue_of(port, "/x", "anything").await, "ip");
    let _name = echo(
        &s,
        "name",
        &[
            format!("http://www.example.com:{port}/"),
            format!("http://www.example.com:{port}/deep/path/"),
        ],
    )
    .await;
    assert_eq!(queue_of(port, "/x", "www.example.com").await, "name");
    assert_eq!(queue_of(port, "/x", "WWW.EXAMPLE.COM:80").await, "name");
    assert_eq!(queue_of(port, "/x", "other.example.com").await, "ip");
    let _strong = echo(&s, "strong", &[format!("http://+:{port}/api/")]).await;
    assert_eq!(queue_of(port, "/api/v1", "www.example.com").await, "strong");
    assert_eq!(queue_of(port, "/API", "anything").await, "strong");
    assert_eq!(queue_of(port, "/apix", "www.example.com").await, "name");
    // Longest path within a category; the prefix and its context reach the app.
    let reply = exchange(port, &get("/deep/path/file", "www.example.com"))
        .await
        .unwrap();
    assert_eq!(
        reply.json()["prefix"],
        json!(format!("http://www.example.com:{port}/deep/path/"))
    );
    assert_eq!(reply.json()["context"], json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_and_paths() {
    let server = Server::start(json!({}));
    let port = free_port();
    let _app = echo(
        &server.socket(),
        "named",
        &[format!("http://shop.example:{port}/store/")],
    )
    .await;
    let reply = exchange(port, &get("/store/x", "shop.example"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let reply = exchange(port, &get("/elsewhere", "shop.example"))
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    server.wait_httperr(&["/elsewhere", "404", "NotFound"]);
    let reply = exchange(port, &get("/store/x", "other.example"))
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    server.wait_httperr(&["/store/x", "400", "Hostname"]);
}

/// Waits (10 s at most) until `n` requests wait in `queue`.
async fn wait_queued(queue: &httpapi::Queue, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued = queue.queued_requests().await.unwrap();
        if queued == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queued} requests queued, not {n}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stopped_and_unserved_queues() {
    let server = Server::start(json!({ "RequestQueueTimeout": 1.5 }));
    // Nobody receives from this queue: requests wait in it.
    let (port, _session, queue) = server.queue_on_free_port("idle").await;
    queue.set_max_length(2).await.unwrap();
    let mut waiting = Vec::new();
    for i in 0..2 {
        let mut c = Client::connect(port).await;
        c.send(&get(&format!("/wait{i}"), "h")).await;
        waiting.push(c);
    }
    wait_queued(&queue, 2).await;
    let full = exchange(port, &get("/third", "h")).await.unwrap();
    assert_eq!(full.status, 503);
    server.wait_httperr(&["/third", "503", "QueueFull", "idle"]);
    // The waiting ones time out (RequestQueue) with 503 too.
    let started = Instant::now();
    for c in &mut waiting {
        let reply = c.read(false, Duration::from_secs(10)).await.unwrap();
        assert_eq!(reply.status, 503);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    server.wait_httperr(&["/wait0", "503", "Timer_AppPool", "idle"]);
    // A stopped queue is offline, for the requests waiting in it too.
    let mut held = Client::connect(port).await;
    held.send(&get("/held-when-stopped", "h")).await;
    wait_queued(&queue, 1).await;
    queue.set_stopped(true).await.unwrap();
    let reply = held.read(false, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.status, 503);
    server.wait_httperr(&["/held-when-stopped", "503", "AppOffline", "idle"]);
    let offline = exchange(port, &get("/off", "h")).await.unwrap();
    assert_eq!(offline.status, 503);
    server.wait_httperr(&["/off", "503", "AppOffline", "idle"]);
    queue.set_stopped(false).await.unwrap();
    drop(queue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_process_to_attach() {
    let server = Server::start(json!({ "RequestQueueTimeout": 30 }));
    let (port, _session, mut queue) = server.queue_on_free_port("later").await;
    let mut c = Client::connect(port).await;
    c.send(&get("/held", "h")).await;
    // Nothing answers while nobody serves the queue…
    assert!(c.read(false, Duration::from_millis(500)).await.is_none());
    // …and the request is delivered once someone does.
    let req = queue.receive().await.unwrap();
    assert_eq!(req.url.path, "/held");
    req.respond(httpapi::Response::new(200).body("late"))
        .await
        .unwrap();
    let reply = c.read(false, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, b"late".as_slice())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_leaves_abandons_its_requests() {
    let server = Server::start(json!({}));
    let (port, session, mut queue) = server.queue_on_free_port("leaver").await;
    let mut c = Client::connect(port).await;
    c.send(&get("/abandoned", "h")).await;
    let req = queue.receive().await.unwrap();
    drop(req);
    let reply = c.read(false, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.status, 503);
    server.wait_httperr(&["/abandoned", "Connection_Abandoned_By_AppPool", "leaver"]);
    // A session that goes away releases its queue and its prefixes.
    drop(queue);
    drop(session);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match exchange(port, &get("/gone", "h")).await {
            None => break,
            Some(r) if r.status == 400 => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the prefix outlived its queue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_slow_clients() {
    let server = Server::start(json!({
        "IdleConnectionTimeout": 1.0,
        "HeaderWaitTimeout": 1.0,
        "EntityBodyTimeout": 1.0,
    }));
    let port = free_port();
    let _app = echo(&server.socket(), "slow", &[format!("http://+:{port}/")]).await;

    // An idle connection is closed.
    let mut idle = Client::connect(port).await;
    let started = Instant::now();
    assert!(idle.closed(Duration::from_secs(10)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.wait_httperr(&["Timer_ConnectionIdle"]);

    // So is one kept alive after a request and then idle.
    let mut kept = Client::connect(port).await;
    kept.send(&get("/first", "h")).await;
    assert_eq!(
        kept.read(false, Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    assert!(kept.closed(Duration::from_secs(10)).await);

    // A head that never completes.
    let mut partial = Client::connect(port).await;
    partial.send(b"GET /partial HTTP/1.1\r\nHost: h\r\n").await;
    assert!(partial.closed(Duration::from_secs(10)).await);
    server.wait_httperr(&["Timer_HeaderWait"]);

    // Slowloris: a byte every 200 ms keeps nothing open past HeaderWait.
    let mut loris = Client::connect(port).await;
    let started = Instant::now();
    let mut closed = false;
    for byte in
        b"GET /loris HTTP/1.1\r\nHost: h\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
    {
        if loris.stream.try_write(&[*byte]).is_err()
            || loris.closed(Duration::from_millis(200)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling client was kept");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        started.elapsed()
    );

    // A body that stops arriving.
    let mut stalled = Client::connect(port).await;
    stalled
        .send(b"POST /stall HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    assert!(stalled.closed(Duration::from_secs(10)).await);
    server.wait_httperr(&["/stall", "Timer_EntityBody", "slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped() {
    let server = Server::start(json!({ "MinSendRate": 50_000_000 }));
    let (port, _session, mut queue) = server.queue_on_free_port("big").await;
    tokio::spawn(async move {
        while let Ok(req) = queue.receive().await {
            tokio::spawn(async move {
                let mut w = req
                    .start_response(httpapi::Response::new(200), Some(64 << 20))
                    .await
                    .unwrap();
                let block = vec![b'x'; 1 << 20];
                for _ in 0..64 {
                    if w.send(&block).await.is_err() {
                        return;
                    }
                }
                let _ = w.finish(Vec::new()).await;
            });
        }
    });
    let mut c = Client::connect(port).await;
    c.send(&get("/big", "h")).await;
    // Read nothing: the listener gives up on the send.
    server.wait_httperr(&["/big", "Timer_MinBytesPerSecond", "big"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit() {
    let server = Server::start(json!({ "MaxConnections": 2 }));
    let port = free_port();
    let _app = echo(&server.socket(), "limited", &[format!("http://+:{port}/")]).await;
    let mut a = Client::connect(port).await;
    let mut b = Client::connect(port).await;
    a.send(&get("/a", "h")).await;
    b.send(&get("/b", "h")).await;
    assert_eq!(
        a.read(false, Duration::from_secs(5)).await.unwrap().status,
        200
    );
    assert_eq!(
        b.read(false, Duration::from_secs(5)).await.unwrap().status,
        200
    );
    let third = exchange(port, &get("/c", "h")).await.unwrap();
    assert_eq!(third.status, 503);
    server.wait_httperr(&["503", "ConnLimit"]);
    drop(a);
    // A freed slot serves again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if exchange(port, &get("/d", "h"))
            .await
            .is_some_and(|r| r.status == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httperr_lines_field_by_field() {
    let server = Server::start(json!({}));
    let port = free_port();
    let _app = echo(&server.socket(), "fields", &[format!("http://+:{port}/")]).await;
    let mut c = Client::connect(port).await;
    let client_port = c.stream.local_addr().unwrap().port();
    c.send(b"GET /bad%zz HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(
        c.read(false, Duration::from_secs(5)).await.unwrap().status,
        400
    );
    let line = server.wait_httperr(&["/bad%zz"]);
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 13, "{line}");
    assert!(
        f[0].len() == 10 && f[0].as_bytes()[4] == b'-' && f[0].as_bytes()[7] == b'-',
        "date {}",
        f[0]
    );
    assert!(
        f[1].len() == 8 && f[1].as_bytes()[2] == b':',
        "time {}",
        f[1]
    );
    assert_eq!(f[2], "127.0.0.1");
    assert_eq!(f[3], client_port.to_string());
    assert_eq!(f[4], "127.0.0.1");
    assert_eq!(f[5], port.to_string());
    assert_eq!(f[6], "HTTP/1.1");
    assert_eq!(f[7], "GET");
    assert_eq!(f[8], "/bad%zz");
    assert_eq!(f[9], "400");
    assert_eq!(f[10], "-");
    assert_eq!(f[11], "URL");
    assert_eq!(f[12], "-");
    let file = std::fs::read_to_string(server.state().join("logs/HTTPERR/httperr1.log")).unwrap();
    let header: Vec<&str> = file.lines().take(4).collect();
    assert!(header[0].starts_with("#Software: "));
    assert_eq!(header[1], "#Version: 1.0");
    assert!(header[2].starts_with("#Date: "));
    assert_eq!(
        header[3],
        "#Fields: date time c-ip c-port s-ip s-port cs-version cs-method cs-uri sc-status s-siteid s-reason s-queuename"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_keep_alive_and_continue() {
    let server = Server::start(json!({}));
    let port = free_port();
    let _app = echo(&server.socket(), "pipe", &[format!("http://+:{port}/")]).await;
    let mut c = Client::connect(port).await;
    c.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: h\r\n\r\n").await;
    for (path, body) in [("/1", ""), ("/2", "abc"), ("/3", "")] {
        let r = c.read(false, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.json()["path"], json!(path));
        assert_eq!(r.json()["body"], json!(body));
    }
    // Expect: 100-continue: the head alone, then the body after the 100.
    c.send(b"PUT /cont HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await;
    let mut interim = [0u8; 25];
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut interim),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello").await;
    let r = c.read(false, Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.json()["body"], json!("hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_early_answers_and_dropped_clients() {
    let server =
        Server::start(json!({ "MaxRequestEntityBytes": 1000, "DrainEntityBodyTimeout": 1.0 }));
    let (port, _session, mut queue) = server.queue_on_free_port("bodies").await;
    // The program says which requests it took.
    let (took, mut taken) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(mut req) = queue.receive().await {
            let _ = took.send(req.url.path.clone());
            tokio::spawn(async move {
                if req.url.path == "/early" {
                    // Answer without reading the body: the listener drains it.
                    let _ = req.respond(httpapi::Response::new(202).body("early")).await;
                } else {
                    let body = req.read_body(1 << 20).await.unwrap_or_default();
                    let _ = req
                        .respond(httpapi::Response::new(200).body(format!("{}", body.len())))
                        .await;
                }
            });
        }
    });
    let big = exchange(
        port,
        b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(big.status, 413);
    server.wait_httperr(&["/big", "413", "EntityTooLarge"]);
    let mut chunked =
        b"POST /chunky HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"190\r\n");
        chunked.extend(std::iter::repeat_n(b'c', 400));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(port, &chunked).await.unwrap();
    assert_eq!(r.status, 413);
    server.wait_httperr(&["/chunky", "413", "EntityTooLarge"]);
    let ok = exchange(
        port,
        b"POST /fits HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'f', 1000))
            .collect::<Vec<u8>>()
            .as_slice(),
    )
    .await
    .unwrap();
    assert_eq!((ok.status, ok.body.as_slice()), (200, b"1000".as_slice()));

    // An early answer: the unread body is drained and the connection kept.
    let mut c = Client::connect(port).await;
    let mut early = b"POST /early HTTP/1.1\r\nHost: h\r\nContent-Length: 900\r\n\r\n".to_vec();
    early.extend(std::iter::repeat_n(b'e', 900));
    early.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
    c.send(&early).await;
    let first = c.read(false, Duration::from_secs(5)).await.unwrap();
    assert_eq!((first.status, first.closes()), (202, false));
    let second = c.read(false, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (second.status, second.body.as_slice()),
        (200, b"0".as_slice())
    );

    // An early answer whose body never comes: draining gives up.
    let mut stuck = Client::connect(port).await;
    stuck
        .send(b"POST /early HTTP/1.1\r\nHost: h\r\nContent-Length: 900\r\n\r\nonly this")
        .await;
    assert_eq!(
        stuck
            .read(false, Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        202
    );
    let started = Instant::now();
    assert!(stuck.closed(Duration::from_secs(10)).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    server.wait_httperr(&["/early", "Timer_EntityBody", "bodies"]);

    // A client that leaves half-way through its body.
    let mut leaver = Client::connect(port).await;
    leaver
        .send(b"POST /leaving HTTP/1.1\r\nHost: h\r\nContent-Length: 500\r\n\r\nonly a little")
        .await;
    // Gone once the program holds the request and waits for the rest.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(path) = taken.recv().await {
            if path == "/leaving" {
                return;
            }
        }
        panic!("the program stopped taking requests");
    })
    .await
    .expect("the program took /leaving");
    drop(leaver);
    server.wait_httperr(&["/leaving", "Connection_Dropped", "bodies"]);
}
