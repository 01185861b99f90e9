//! Separate programs on the listener: the `hello` example (httpapi's
//! example program) run as real processes sharing one port, serving one
//! queue together, and refused a prefix it has no reservation for; and
//! the response cache, seen from the program's side.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{exchange, free_port, Client, Server, BIN};
use httpapi::{CachePolicy, Response};
use serde_json::json;

/// The `hello` example, built by `cargo test --workspace` with the rest.
fn hello_binary() -> PathBuf {
    let exe = Path::new(BIN).parent().unwrap().join("examples/hello");
    assert!(
        exe.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (it builds httpapi's examples)",
        exe.display()
    );
    exe
}

/// A copy of `exe` in a new world-readable directory (kept while the
/// returned directory lives).
fn install_for_everyone(exe: &Path) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join(exe.file_name().unwrap());
    std::fs::copy(exe, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, copy)
}

#[derive(Debug)]
struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `hello` and waits for it to say it serves; `Err` with what it
/// printed if it exits instead.
fn hello(socket: &Path, args: &[&str], uid: Option<u32>) -> Result<Program, String> {
    // Run as another user, the program is installed where that user can
    // run it, as an administrator would install it: the build tree may
    // sit in a 0700 home.
    let installed = uid.map(|_| install_for_everyone(&hello_binary()));
    let program = installed
        .as_ref()
        .map(|(_, exe)| exe.clone())
        .unwrap_or_else(hello_binary);
    let mut cmd = Command::new(&program);
    cmd.arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let mut child = common::spawn_copied(&mut cmd);
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    if line.starts_with("serving") {
        return Ok(Program(child));
    }
    let out = child.wait_with_output().unwrap();
    Err(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes()
}

fn served_by(reply: &common::Reply) -> String {
    reply.header("x-served-by").unwrap_or("-").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_programs_share_one_port() {
    let server = Server::start(json!({}));
    let port = free_port().to_string();
    let a = hello(
        &server.socket(),
        &["--port", &port, "--path", "/a/", "--queue", "qa"],
        None,
    )
    .unwrap();
    let b = hello(
        &server.socket(),
        &["--port", &port, "--path", "/b/", "--queue", "qb"],
        None,
    )
    .unwrap();
    let port: u16 = port.parse().unwrap();
    let ra = exchange(port, &get("/a/x")).await.unwrap();
    let rb = exchange(port, &get("/b/y")).await.unwrap();
    assert_eq!((ra.status, rb.status), (200, 200));
    assert_eq!(served_by(&ra), a.0.id().to_string());
    assert_eq!(served_by(&rb), b.0.id().to_string());
    assert!(String::from_utf8_lossy(&rb.body).contains("GET /b/y"));
    // A third program may not take a prefix another queue owns.
    let taken = hello(
        &server.socket(),
        &[
            "--port",
            &port.to_string(),
            "--path",
            "/a/",
            "--queue",
            "qc",
        ],
        None,
    )
    .unwrap_err();
    assert!(taken.contains("registered to queue qa"), "{taken}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_serve_one_queue() {
    let server = Server::start(json!({}));
    let port = free_port();
    let p = port.to_string();
    let first = hello(&server.socket(), &["--port", &p, "--queue", "shared"], None).unwrap();
    let second = hello(
        &server.socket(),
        &["--port", &p, "--queue", "shared", "--open"],
        None,
    )
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let r = exchange(port, &get(&format!("/hello/{i}"))).await.unwrap();
        assert_eq!(r.status, 200);
        seen.insert(served_by(&r));
    }
    let expected: std::collections::HashSet<String> =
        [first.0.id().to_string(), second.0.id().to_string()].into();
    assert_eq!(seen, expected, "both processes serve the queue");
    // When one goes, the other serves on.
    drop(first);
    for i in 0..10 {
        let r = exchange(port, &get(&format!("/hello/after{i}")))
            .await
            .unwrap();
        if r.status == 200 {
            assert_eq!(served_by(&r), second.0.id().to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_reservations_decide_who_may_register() {
    let server = Server::start(json!({}));
    // Let another user reach the control socket (and nothing else).
    let mut dir = server.socket();
    while dir.pop() && dir.starts_with(server.dir.path()) {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = free_port().to_string();
    let prefix = format!("http://+:{port}/hello/");
    let refused = hello(&server.socket(), &["--port", &port], Some(65534)).unwrap_err();
    assert!(
        refused.contains("no URL reservation lets user nobody register"),
        "{refused}"
    );
    assert!(
        refused.contains("error 5"),
        "ERROR_ACCESS_DENIED: {refused}"
    );
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--state-dir")
            .arg(server.state())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // A reservation for another path does not help.
    run(&[
        "urlacl",
        "add",
        &format!("http://+:{port}/other/"),
        "--user",
        "nobody",
    ]);
    assert!(hello(&server.socket(), &["--port", &port], Some(65534)).is_err());
    run(&["urlacl", "add", &prefix, "--user", "nobody"]);
    assert!(run(&["urlacl", "show"]).contains(&format!("{prefix}  nobody")));
    let program = hello(&server.socket(), &["--port", &port], Some(65534)).unwrap();
    let r = exchange(port.parse().unwrap(), &get("/hello/as-nobody"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(served_by(&r), program.0.id().to_string());
    drop(program);
    run(&["urlacl", "delete", &prefix]);
    assert!(hello(&server.socket(), &["--port", &port], Some(65534)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_cache() {
    let server = Server::start(json!({}));
    let (port, _session, mut queue) = server.queue_on_free_port("cached").await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let (flush_tx, mut flush_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (flushed_tx, mut flushed_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                req = queue.receive() => {
                    let Ok(req) = req else { break };
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut response = Response::new(200)
                        .header("Content-Type", "text/plain")
                        .header("ETag", "\"v1\"")
                        .header("Last-Modified", "Sun, 22 Nov 2026 00:00:00 GMT")
                        .body(format!("generated {n} for {}", req.url.path));
                    if req.url.path.starts_with("/ttl") {
                        response = response.cache(CachePolicy::TimeToLive { seconds: 1 });
                    } else if !req.url.path.starts_with("/nocache") {
                        response = response.cache(CachePolicy::UntilInvalidated);
                    }
                    let _ = req.respond(response).await;
                }
                prefix = flush_rx.recv() => {
                    let Some(prefix) = prefix else { break };
                    let _ = flushed_tx.send(queue.flush_cache(&prefix).await.unwrap());
                }
            }
        }
    });
    let fetch = |req: String| async move { exchange(port, req.as_bytes()).await.unwrap() };
    let plain = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");

    let first = fetch(plain("/page")).await;
    assert_eq!(first.body, b"generated 1 for /page");
    let second = fetch(plain("/page")).await;
    assert_eq!(
        second.body, b"generated 1 for /page",
        "served from the cache"
    );
    assert!(second.header("date").is_some() && second.header("content-length") == Some("21"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // File names on Linux are case-sensitive: so are cache keys.
    let other_case = fetch(plain("/PAGE")).await;
    assert_eq!(other_case.body, b"generated 2 for /PAGE");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // HEAD from the GET's entry, without a body.
    let head = fetch("HEAD /page HTTP/1.1\r\nHost: h\r\n\r\n".into()).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    // Conditional requests answered from the cache.
    let r = fetch("GET /page HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"v1\"\r\n\r\n".into()).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    let r = fetch(
        "GET /page HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Mon, 23 Nov 2026 00:00:00 GMT\r\n\r\n"
            .into(),
    )
    .await;
    assert_eq!(r.status, 304);
    let r = fetch("GET /page HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"v0\"\r\n\r\n".into()).await;
    assert_eq!(r.status, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // What the cache must not answer reaches the program.
    for bypass in [
        "GET /page?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /page HTTP/1.1\r\nHost: h\r\nAuthorization: Basic eDp5\r\n\r\n",
        "GET /page HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n",
        "GET /page HTTP/1.1\r\nHost: h\r\nIf-Range: \"v1\"\r\n\r\n",
        "POST /page HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    ] {
        let before = hits.load(Ordering::SeqCst);
        fetch(bypass.into()).await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            before + 1,
            "{bypass:?} came from the cache"
        );
    }
    // Responses not marked cacheable are not kept.
    fetch(plain("/nocache")).await;
    fetch(plain("/nocache")).await;
    assert_eq!(hits.load(Ordering::SeqCst), 9);
    // The owner flushes (prefixes match without regard to case); the next
    // request reaches it again.
    flush_tx.send(format!("http://+:{port}/PAGE")).unwrap();
    assert_eq!(flushed_rx.recv().await.unwrap(), 2, "/page and /PAGE");
    let again = fetch(plain("/page")).await;
    assert_eq!(again.body, b"generated 10 for /page");
    // A time to live runs out.
    fetch(plain("/ttl")).await;
    fetch(plain("/ttl")).await;
    assert_eq!(hits.load(Ordering::SeqCst), 11);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    fetch(plain("/ttl")).await;
    assert_eq!(hits.load(Ordering::SeqCst), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_streamed_bodies() {
    let server = Server::start(json!({}));
    let (port, _session, mut queue) = server.queue_on_free_port("stream").await;
    tokio::spawn(async move {
        while let Ok(mut req) = queue.receive().await {
            tokio::spawn(async move {
                // Count the upload, then stream back that many bytes in
                // pieces, with a trailer.
                let mut total = 0usize;
                while let Ok(Some(chunk)) = req.body_chunk().await {
                    total += chunk.len();
                }
                let mut w = req
                    .start_response(
                        Response::new(200).header("X-Upload", total.to_string()),
                        None,
                    )
                    .await
                    .unwrap();
                let piece = vec![b'z'; 100_000];
                let mut left = total;
                while left > 0 {
                    let n = left.min(piece.len());
                    w.send(&piece[..n]).await.unwrap();
                    left -= n;
                }
                w.finish(vec![httpapi::Header::new("X-Done", "yes")])
                    .await
                    .unwrap();
            });
        }
    });
    let size = 5 * 1024 * 1024 + 7;
    let mut c = Client::connect(port).await;
    let mut request =
        format!("PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n").into_bytes();
    request.extend(std::iter::repeat_n(b'u', size));
    let (mut reader, mut writer) = c.stream.split();
    let send = async {
        tokio::io::AsyncWriteExt::write_all(&mut writer, &request)
            .await
            .unwrap();
    };
    let mut got = Vec::new();
    let recv = async {
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let n = tokio::io::AsyncReadExt::read_buf(&mut reader, &mut got)
                    .await
                    .unwrap_or(0);
                if n == 0 || got.ends_with(b"X-Done: yes\r\n\r\n") {
                    break;
                }
            }
        })
        .await;
    };
    tokio::join!(send, recv);
    let text = String::from_utf8_lossy(&got[..got.len().min(400)]).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains(&format!("X-Upload: {size}\r\n")), "{text}");
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(got.ends_with(b"0\r\nX-Done: yes\r\n\r\n"));
    let z = got.iter().filter(|&&b| b == b'z').count();
    assert_eq!(z, size, "every byte came back");
    let _ = &mut c;
}
