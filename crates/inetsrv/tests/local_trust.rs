//! The local attacks on request queues, as another Unix user would make
//! them against a running `inetsrv start` (as root, default settings):
//! squatting a pool's queue name or a paused site's, taking or stopping a
//! pool's queue, flushing a site's cache, opening queues without end.
//! Each must fail with a clear refusal while the site keeps serving.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::web::Web;
use common::BIN;

const NOBODY: u32 = 65534;
const WWW_DATA: u32 = 33;

/// The `queue_probe` example, copied where any user may run it (the
/// build tree may sit in a 0700 home).
fn probe_binary() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let built = Path::new(BIN)
        .parent()
        .unwrap()
        .join("examples/queue_probe");
    assert!(
        built.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (it builds httpapi's examples)",
        built.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("queue_probe");
    std::fs::copy(&built, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, copy)
}

/// Lets other users reach the control socket, as an administrator who
/// runs the server from a 0700 home and wants other users' programs on it
/// would: the home becomes passable (0711). The state directory and its
/// `run/` are left as the server made them.
fn expose_socket(web: &Web) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(web.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    httpapi::socket_for_state_dir(&web.state())
}

/// Runs the probe's steps as `uid` and returns what it printed.
fn probe(exe: &Path, socket: &Path, uid: u32, steps: &[&str]) -> String {
    let child = common::spawn_copied(
        Command::new(exe)
            .arg("--socket")
            .arg(socket)
            .args(steps)
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    );
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates pool `pool` and a site in it serving site 1's content on a free
/// loopback port; returns the port.
fn site_in_new_pool(web: &Web, site: &str, pool: &str) -> u16 {
    web.cli_ok(&["pool", "create", pool]);
    let port = common::free_port();
    web.cli_ok(&[
        "site",
        "create",
        site,
        "--path",
        web.www().to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--ip",
        "127.0.0.1",
        "--pool",
        pool,
    ]);
    port
}

/// A probe that holds its queues until dropped.
struct Holder(Child);

impl Holder {
    fn start(exe: &Path, socket: &Path, uid: u32, steps: &[&str]) -> (Holder, String) {
        let mut child = common::spawn_copied(
            Command::new(exe)
                .arg("--socket")
                .arg(socket)
                .args(steps)
                .arg("hold")
                .uid(uid)
                .gid(uid)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let mut said = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("the probe ended early: {said}");
            }
            said.push_str(&line);
            if line.starts_with("hold:") {
                break;
            }
        }
        (Holder(child), said)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn squatted_queue_names_stop_no_site() {
    let web = Web::start();
    let socket = expose_socket(&web);
    let (_dir, exe) = probe_binary();
    // Another user takes the names first: a pool's that does not exist
    // yet, and the queue of site 1 paused.
    let (squatter, said) = Holder::start(
        &exe,
        &socket,
        NOBODY,
        &["create", "SquatPool", "create", "W3SVC-1-paused"],
    );
    assert!(
        said.contains("create: ok SquatPool") && said.contains("create: ok W3SVC-1-paused"),
        "{said}"
    );

    // The administrator creates that pool and a site in it: it serves.
    let port = site_in_new_pool(&web, "Squat", "SquatPool");
    let got = common::web::curl(&format!("http://127.0.0.1:{port}/"), &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(web.pool("SquatPool")["state"], "started");
    assert!(
        web.log()
            .contains("a program holds a queue of the same name"),
        "the log names the other party: {}",
        web.log()
    );

    // Pausing site 1 pauses it (503) and continuing brings it back; the
    // squatter's queue of the paused name changes nothing.
    web.cli_ok(&["site", "pause", "1"]);
    assert_eq!(web.curl("/", &[]).status, 503);
    assert!(web.cli_ok(&["site", "list"]).contains("paused"));
    web.cli_ok(&["site", "continue", "1"]);
    assert_eq!(web.curl("/", &[]).status, 200);
    drop(squatter);
    assert_eq!(web.curl("/", &[]).status, 200);
}

#[test]
fn a_pools_queue_cannot_be_taken_or_stopped_by_another_process() {
    let web = Web::start();
    assert_eq!(web.curl("/", &[]).status, 200);
    let socket = expose_socket(&web);
    let (_dir, exe) = probe_binary();
    // As the pool's own identity (another pool's worker, or nginx or
    // php-fpm as www-data), as nobody, and as root: none was started by
    // the service, so none may receive the pool's requests or stop it.
    // Nor take its name.
    let said = probe(&exe, &socket, NOBODY, &["create", "DefaultAppPool"]);
    assert!(
        said.contains("create: error AlreadyExists: queue DefaultAppPool is the service's"),
        "{said}"
    );
    for uid in [WWW_DATA, NOBODY, 0] {
        let said = probe(&exe, &socket, uid, &["open", "DefaultAppPool", "stop"]);
        assert!(
            said.contains("open: error AccessDenied")
                && said.contains("only the worker processes it starts may open it"),
            "uid {uid}: {said}"
        );
        assert!(!said.contains("stop: ok"), "uid {uid}: {said}");
    }
    assert_eq!(web.curl("/", &[]).status, 200);
    assert_eq!(web.pool("DefaultAppPool")["state"], "started");
    assert!(
        web.log()
            .contains("a process the service did not start asked for its queue"),
        "{}",
        web.log()
    );
}

#[test]
fn another_user_flushes_nothing_of_a_site_and_holds_bounded_queues_and_sessions() {
    let web = Web::start();
    let socket = expose_socket(&web);
    let (_dir, exe) = probe_binary();
    let site = format!("http://+:{}/", web.port);
    let said = probe(&exe, &socket, NOBODY, &["create", "mine", "flush", &site]);
    assert!(said.contains("flush: ok 0"), "{said}");

    let said = probe(&exe, &socket, NOBODY, &["many", "100"]);
    assert!(
        said.contains("many (after 64): error QuotaExceeded")
            && said.contains("the most one user may"),
        "{said}"
    );
    // The limit is per user: another user still may.
    let said = probe(&exe, &socket, WWW_DATA, &["many", "3"]);
    assert!(said.contains("many: ok 3"), "{said}");
    // Sessions too are bounded per user (the probe's own is the first).
    let said = probe(&exe, &socket, NOBODY, &["sessions", "200"]);
    assert!(said.contains("sessions (after 127): error"), "{said}");
    assert!(
        web.log().contains("refused a control-socket session"),
        "{}",
        web.log()
    );
    assert_eq!(web.curl("/", &[]).status, 200);
    // The queues went with the session that held them: the user may
    // open queues again (once the listener has seen it go).
    web.wait_for("nobody's queues to go", Duration::from_secs(10), || {
        probe(&exe, &socket, NOBODY, &["many", "10"]).contains("many: ok 10")
    });
}

#[test]
fn workers_hold_nothing_extra() {
    let mut web = Web::prepare();
    // Something of the service's environment a worker must not see, and a
    // pool whose worker stalls at start, printing why.
    web.env
        .push(("INETSRV_TEST_SECRET".into(), "service-only".into()));
    web.env
        .push(("INETSRV_TEST_STALL_WORKER_START".into(), "Stuck".into()));
    web.launch();
    assert_eq!(web.curl("/", &[]).status, 200);
    let pid = web.worker_pids("DefaultAppPool", "running")[0];

    // Its environment: the pool's name, PATH, and the service's own
    // logging and test settings.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let text = String::from_utf8_lossy(v);
            text.split('=').next().unwrap_or("").to_string()
        })
        .collect();
    names.sort();
    for name in &names {
        assert!(
            [
                "APP_POOL_ID",
                "PATH",
                "INETSRV_LOG",
                "INETSRV_TEST_STALL_WORKER_START"
            ]
            .contains(&name.as_str()),
            "the worker inherited {name}: {names:?}"
        );
    }
    assert!(names.contains(&"APP_POOL_ID".to_string()), "{names:?}");

    // No new privileges, whatever it runs, and a seccomp filter (mode 2)
    // on the system calls a web worker never makes.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");

    // None of the service's files among its descriptors.
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap_or_default();
        let target = target.to_string_lossy();
        for private in ["inetsrv.log", "MetaBase.xml", ".lock", "users"] {
            assert!(!target.contains(private), "the worker holds {target}");
        }
    }

    // What a worker prints reaches the service's log, with its pool and pid.
    let port = site_in_new_pool(&web, "StuckSite", "Stuck");
    // The request starts the worker, which stalls (the answer does not
    // matter here).
    let _ = std::process::Command::new("curl")
        .args(["-s", "-m", "2", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .status();
    web.wait_for(
        "the worker's line in the service log",
        Duration::from_secs(10),
        || {
            web.log().lines().any(|l| {
                l.contains("stalls before registering")
                    && l.contains("pool=Stuck")
                    && l.contains("pid=")
            })
        },
    );
}

#[test]
fn a_flood_of_connections_is_answered_within_the_descriptor_limit() {
    use std::io::Read;
    let mut web = Web::prepare();
    // 256 descriptors: MaxConnections, not set, becomes 192.
    web.launcher = ["prlimit", "--nofile=256:256", "--"]
        .map(String::from)
        .to_vec();
    web.launch();
    assert_eq!(web.curl("/", &[]).status, 200);
    // 260 clients connect and hold their connections.
    let mut held = Vec::new();
    for _ in 0..260 {
        let s = std::net::TcpStream::connect(("127.0.0.1", web.port)).unwrap();
        s.set_nonblocking(true).unwrap();
        held.push((s, false));
    }
    // Those past the limit are told so (503) and closed, not left
    // unaccepted.
    let mut refused = 0;
    web.wait_for(
        "the connections past the limit to be refused",
        Duration::from_secs(20),
        || {
            for (s, answered) in held.iter_mut().filter(|(_, a)| !*a) {
                let mut buf = [0u8; 512];
                if let Ok(n) = s.read(&mut buf) {
                    *answered = true;
                    if n > 0 && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") {
                        refused += 1;
                    }
                }
            }
            refused >= 260 - 192
        },
    );
    assert_eq!(refused, 260 - 192, "exactly those past MaxConnections");
    drop(held);
    // Serving goes on, the refusals are in HTTPERR, and the log holds no
    // stream of accept failures.
    web.wait_for(
        "a request to be served again",
        Duration::from_secs(10),
        || web.curl("/", &[]).status == 200,
    );
    web.wait_for("ConnLimit in HTTPERR", Duration::from_secs(10), || {
        common::log_lines(&web.state().join("logs/HTTPERR"))
            .iter()
            .any(|l| l.contains("ConnLimit"))
    });
    let accept_failures = web.log().matches("accept failed").count();
    assert!(accept_failures <= 1, "{accept_failures} accept warnings");
}
