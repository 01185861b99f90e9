//! Shared by the listener tests: the real `inetsrv start` on a temporary
//! state directory, an echo application serving a queue through
//! `httpapi`, and a raw HTTP client that reads one response at a time.

#![allow(dead_code)]

pub mod modules;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use httpapi::{Response, Session};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_inetsrv");

/// The Python the RPC, DCOM and WMI tests run their clients with:
/// INETSRV_TEST_PYTHON (scripts/test.sh's environment with Impacket and
/// aiowmi), else python3.
pub fn python() -> PathBuf {
    std::env::var_os("INETSRV_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `inetsrv start`.
pub struct Server {
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// A session with queue `name` registered for every host on a free
    /// port: (port, session, queue). Keep the session while using the queue.
    pub async fn queue_on_free_port(&self, name: &str) -> (u16, Session, httpapi::Queue) {
        let port = free_port();
        let session = Session::connect(self.socket()).await.unwrap();
        let queue = session.create_queue(name).await.unwrap();
        queue
            .add_url(&format!("http://+:{port}/"), 0)
            .await
            .unwrap();
        (port, session, queue)
    }

    /// Starts the server with `httpsys` (HTTP.SYS parameters as JSON
    /// fields) added to a loopback-only configuration.
    pub fn start(httpsys: Value) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let mut config = json!({ "ListenAddresses": ["127.0.0.1"] });
        if let (Some(c), Some(extra)) = (config.as_object_mut(), httpsys.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(state.join("httpsys.json"), config.to_string()).unwrap();
        // No site: these tests register their own prefixes, and must not
        // compete for the default site's port.
        let out = Command::new(BIN)
            .arg("--state-dir")
            .arg(&state)
            .args(["mb", "set", "W3SVC/1/ServerAutoStart", "FALSE"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = Command::new(BIN)
            .arg("--state-dir")
            .arg(&state)
            .args(["start", "--threads", "2", "--no-rpc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { dir, child };
        let socket = server.socket();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the listener did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        httpapi::socket_for_state_dir(&self.state())
    }

    /// The HTTPERR lines written so far (headers skipped).
    pub fn httperr(&self) -> Vec<String> {
        log_lines(&self.state().join("logs/HTTPERR"))
    }

    /// Waits for an HTTPERR line holding all of `needles`.
    pub fn wait_httperr(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self
                .httperr()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no HTTPERR line with {needles:?}: {:?}",
                self.httperr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `prefixes` on a queue: each request is answered with a JSON
/// description of what the application received.
pub async fn echo(socket: &Path, queue: &str, prefixes: &[String]) -> Session {
    let session = Session::connect(socket).await.unwrap();
    let mut q = session.create_queue(queue).await.unwrap();
    for (i, p) in prefixes.iter().enumerate() {
        q.add_url(p, i as u64 + 1).await.unwrap();
    }
    let name = queue.to_string();
    tokio::spawn(async move {
        while let Ok(mut req) = q.receive().await {
            let name = name.clone();
            tokio::spawn(async move {
                let body = match req.read_body(64 << 20).await {
                    Ok(b) => b,
                    Err(_) => return,
                };
                let described = json!({
                    "queue": name,
                    "method": req.method,
                    "raw_url": String::from_utf8_lossy(&req.raw_url),
                    "url": req.url.full(),
                    "host": req.url.host,
                    "port": req.url.port,
                    "path": req.url.path,
                    "query": req.url.query,
                    "version": format!("{:?}", req.version),
                    "headers": req.headers.iter().map(|(name, value)| json!([name, String::from_utf8_lossy(value)])).collect::<Vec<_>>(),
                    "body": String::from_utf8_lossy(&body),
                    "body_len": body.len(),
                    "trailers": req.trailers().iter().map(|h| json!([h.name, String::from_utf8_lossy(&h.value)])).collect::<Vec<_>>(),
                    "context": req.url_context,
                    "prefix": req.prefix,
                });
                let _ = req
                    .respond(
                        Response::new(200)
                            .header("Content-Type", "application/json")
                            .body(described.to_string()),
                    )
                    .await;
            });
        }
    });
    session
}

/// One response as read off the wire.
#[derive(Debug, Default)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    /// Informational responses (100 Continue) seen before it.
    pub interim: Vec<u16>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A client connection reading one response at a time.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        Client {
            stream: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self, deadline: tokio::time::Instant) -> bool {
        self.buf.reserve(64 * 1024);
        matches!(
            tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await,
            Ok(Ok(n)) if n > 0
        )
    }

    /// Reads one response; `None` if the connection closed (or nothing
    /// came for `wait`).
    pub async fn read(&mut self, head_request: bool, wait: Duration) -> Option<Reply> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut interim = Vec::new();
        loop {
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if !self.fill(deadline).await {
                    return None;
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end);
            let status: u16 = head.get(9..12)?.parse().ok()?;
            if (100..200).contains(&status) {
                interim.push(status);
                continue;
            }
            let mut reply = Reply {
                status,
                head,
                body: Vec::new(),
                interim,
            };
            if head_request || status == 204 || status == 304 {
                return Some(reply);
            }
            if let Some(len) = reply
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
            {
                while self.buf.len() < len {
                    if !self.fill(deadline).await {
                        return Some(reply);
                    }
                }
                reply.body = self.buf.drain(..len).collect();
            } else if reply
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                loop {
                    let line_end = loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        if !self.fill(deadline).await {
                            return Some(reply);
                        }
                    };
                    let size = usize::from_str_radix(
                        String::from_utf8_lossy(&self.buf[..line_end]).trim(),
                        16,
                    )
                    .ok()?;
                    self.buf.drain(..line_end + 2);
                    if size == 0 {
                        // Trailers, up to the empty line.
                        loop {
                            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                                if line.len() == 2 {
                                    return Some(reply);
                                }
                                reply.head.push_str(&String::from_utf8_lossy(&line));
                            } else if !self.fill(deadline).await {
                                return Some(reply);
                            }
                        }
                    }
                    while self.buf.len() < size + 2 {
                        if !self.fill(deadline).await {
                            return Some(reply);
                        }
                    }
                    reply.body.extend(self.buf.drain(..size));
                    self.buf.drain(..2);
                }
            } else {
                while self.fill(deadline).await {}
                reply.body = std::mem::take(&mut self.buf);
            }
            return Some(reply);
        }
    }

    /// True when the server has closed the connection (EOF within `wait`).
    pub async fn closed(&mut self, wait: Duration) -> bool {
        loop {
            self.buf.reserve(4096);
            match tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Sends `request` on a fresh connection and reads the response; `None`
/// if nothing answers (a refused connection included).
pub async fn exchange(port: u16, request: &[u8]) -> Option<Reply> {
    let mut c = Client {
        stream: TcpStream::connect(("127.0.0.1", port)).await.ok()?,
        buf: Vec::new(),
    };
    c.send(request).await;
    let head_request = request.starts_with(b"HEAD ");
    c.read(head_request, Duration::from_secs(10)).await
}

/// The lines of the log files in `dir`, oldest file first, without the
/// `#` directives.
pub fn log_lines(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.starts_with('#'))
        .collect()
}

/// Starts `command`, again while the kernel says its file is busy: a copy
/// another test thread just wrote stays "busy" until a process forked
/// meanwhile (which inherited the writing descriptor for an instant) has
/// exec'd. A race of the test harness, not of the server.
pub fn spawn_copied(command: &mut std::process::Command) -> std::process::Child {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match command.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            other => return other.unwrap(),
        }
    }
}
