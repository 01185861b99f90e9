//! Who may do what with a request queue: the service's queues are apart
//! from programs', open only to the processes the service allows and only
//! to receive; a program controls only the queues it created and flushes
//! only what its own URLs answered. (The same attacks by other Unix users,
//! against a running `inetsrv start`, are in inetsrv's `local_trust`
//! tests.)

use std::time::Duration;

use httpapi::proto::ErrorCode;
use httpapi::{CachePolicy, Response, Session};
use listener::{Listener, ListenerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn listener(dir: &std::path::Path) -> Listener {
    Listener::start(ListenerConfig {
        listen_addresses: vec!["127.0.0.1".parse().unwrap()],
        control_socket: dir.join("run/httpapi.sock"),
        url_acl_file: dir.join("urlacl.json"),
        ..ListenerConfig::default()
    })
    .await
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn code(e: httpapi::Error) -> ErrorCode {
    match e {
        httpapi::Error::Api(api) => api.code,
        other => panic!("not an API error: {other}"),
    }
}

async fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_queues_are_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let listener = listener(dir.path()).await;
    let pool = listener.create_queue("pool").unwrap();
    // Its directory lets others through to the socket, whatever the umask.
    {
        use std::os::unix::fs::PermissionsExt;
        let run = std::fs::metadata(dir.path().join("run")).unwrap();
        assert_eq!(run.permissions().mode() & 0o777, 0o711);
    }
    let session = Session::connect(listener.control_socket()).await.unwrap();

    // Not started by the service: refused, even as the same user (root).
    assert_eq!(
        code(session.open_queue("pool").await.unwrap_err()),
        ErrorCode::AccessDenied
    );
    // Nor may a program create a queue by that name.
    assert_eq!(
        code(session.create_queue("pool").await.unwrap_err()),
        ErrorCode::AlreadyExists
    );

    // Allowed by process: it may receive, and nothing more.
    pool.queue().allow_process(std::process::id());
    let worker = session.open_queue("pool").await.unwrap();
    assert_eq!(
        code(worker.set_stopped(true).await.unwrap_err()),
        ErrorCode::AccessDenied
    );
    assert_eq!(
        code(worker.set_max_length(1).await.unwrap_err()),
        ErrorCode::AccessDenied
    );
    let port = free_port();
    assert_eq!(
        code(
            worker
                .add_url(&format!("http://+:{port}/"), 0)
                .await
                .unwrap_err()
        ),
        ErrorCode::AccessDenied
    );
    assert!(!pool.queue().is_stopped());
    drop(worker);

    // Withdrawn (the worker exited): refused again.
    pool.queue().revoke_process(std::process::id());
    assert_eq!(
        code(session.open_queue("pool").await.unwrap_err()),
        ErrorCode::AccessDenied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_holding_a_name_first_does_not_stop_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let listener = listener(dir.path()).await;
    let squatter = Session::connect(listener.control_socket()).await.unwrap();
    let squatted = squatter.create_queue("SquatPool").await.unwrap();

    // The service creates its queue of that name all the same, and its
    // worker gets the service's, not the squatter's.
    let pool = listener.create_queue("SquatPool").unwrap();
    let port = free_port();
    pool.add_url(&format!("http://+:{port}/"), 0, Some(1))
        .unwrap();
    pool.queue().allow_process(std::process::id());
    let worker_session = Session::connect(listener.control_socket()).await.unwrap();
    let mut worker = worker_session.open_queue("SquatPool").await.unwrap();
    tokio::spawn(async move {
        while let Ok(req) = worker.receive().await {
            let _ = req.respond(Response::new(200).body("from the pool")).await;
        }
    });
    assert!(get(port, "/").await.ends_with("from the pool"));
    // The squatter's queue is its own, and gets nothing.
    assert_eq!(squatted.queued_requests().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_flushes_only_what_its_urls_answered() {
    let dir = tempfile::tempdir().unwrap();
    let listener = listener(dir.path()).await;
    let port = free_port();
    let owner_session = Session::connect(listener.control_socket()).await.unwrap();
    let mut owner = owner_session.create_queue("owner").await.unwrap();
    owner
        .add_url(&format!("http://+:{port}/site/"), 0)
        .await
        .unwrap();
    let owner_control = owner.control();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok(req) = owner.receive().await {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let _ = req
                .respond(
                    Response::new(200)
                        .body(format!("answer {n}"))
                        .cache(CachePolicy::UntilInvalidated),
                )
                .await;
        }
    });
    let hits_now = || hits.load(std::sync::atomic::Ordering::SeqCst);
    get(port, "/site/page").await;
    get(port, "/site/page").await;
    assert_eq!(hits_now(), 1, "the second came from the cache");

    // Another program, with a URL of its own on the same port, asks to
    // flush everything there: only its own entries may go (none).
    let other_session = Session::connect(listener.control_socket()).await.unwrap();
    let other = other_session.create_queue("other").await.unwrap();
    other
        .add_url(&format!("http://+:{port}/other/"), 0)
        .await
        .unwrap();
    assert_eq!(
        other
            .flush_cache(&format!("http://+:{port}/"))
            .await
            .unwrap(),
        0
    );
    get(port, "/site/page").await;
    assert_eq!(hits_now(), 1, "still from the cache");

    // The owner's own flush works, through its queue.
    assert_eq!(
        owner_control
            .flush_cache(&format!("http://+:{port}/"))
            .await
            .unwrap(),
        1
    );
    get(port, "/site/page").await;
    assert_eq!(hits_now(), 2);
}
