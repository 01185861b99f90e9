//! `inetsrv start` as a real process: hand edits of MetaBase.xml while it
//! runs, and writes that are killed half-way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_inetsrv");
const WAIT: Duration = Duration::from_secs(30);

struct Service {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Service {
    fn start(state: &Path) -> Service {
        // No site: these tests are about the configuration service, and
        // must not compete for the default site's port.
        let out = inetsrv(state, &["mb", "set", "W3SVC/1/ServerAutoStart", "FALSE"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut child = Command::new(BIN)
            .arg("--state-dir")
            .arg(state)
            .args(["start", "--foreground", "--edit-poll-ms", "50", "--no-rpc"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut service = Service {
            child,
            lines,
            seen: Vec::new(),
        };
        service.expect(&["configuration service started"]);
        service
    }

    /// Waits for a log line holding every one of `needles`.
    fn expect(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needles:?}; the service said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn inetsrv(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn get(state: &Path, prop: &str) -> serde_json::Value {
    let out = inetsrv(state, &["--json", "mb", "get", prop]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["value"].clone()
}

fn edit(state: &Path, from: &str, to: &str) {
    let file = state.join("MetaBase.xml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(from), "MetaBase.xml lacks {from}");
    std::fs::write(&file, text.replace(from, to)).unwrap();
}

#[test]
fn edit_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut service = Service::start(&state);

    // A valid hand edit is applied and announced.
    edit(
        &state,
        "ServerComment=\"Default Web Site\"",
        "ServerComment=\"Edited by hand\"",
    );
    service.expect(&[
        "metabase change",
        "edit-while-running",
        "/LM/W3SVC/1",
        "ServerComment",
    ]);
    let history = std::fs::read_dir(state.join("History"))
        .unwrap()
        .flatten()
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("MetaBase_") && name.ends_with("_0000000001.xml")
        });
    assert!(history, "the edit is kept as a minor version");

    // An invalid one is refused, kept aside, and the file put back.
    edit(
        &state,
        "AppPoolQueueLength=\"1000\"",
        "AppPoolQueueLength=\"70000\"",
    );
    let line = service.expect(&["refused a hand edit"]);
    assert!(line.contains("AppPoolQueueLength"), "{line}");
    let error_file = state.join("History/MetaBaseError_0000000000.xml");
    assert!(std::fs::read_to_string(&error_file)
        .unwrap()
        .contains("AppPoolQueueLength=\"70000\""));
    let on_disk = std::fs::read_to_string(state.join("MetaBase.xml")).unwrap();
    assert!(on_disk.contains("AppPoolQueueLength=\"1000\"") && on_disk.contains("Edited by hand"));
    assert_eq!(get(&state, "W3SVC/AppPools/AppPoolQueueLength"), 1000);

    // A command-line write while the service runs reaches it as well.
    let out = inetsrv(&state, &["mb", "set", "W3SVC/1/ServerBindings", ":8081:"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    service.expect(&["metabase change", "/LM/W3SVC/1", "ServerBindings"]);
    assert_eq!(get(&state, "W3SVC/1/ServerComment"), "Edited by hand");
}

/// Kills `inetsrv mb set` at random moments, over and over. After every
/// kill the file parses and holds the last acknowledged value, or the one
/// being written when the process died; never anything torn.
#[test]
fn killed_writes_never_tear_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert_eq!(get(&state, "W3SVC/1/ServerComment"), "Default Web Site");
    let started = Instant::now();
    let out = inetsrv(
        &state,
        &["mb", "set", "W3SVC/1/ServerComment", "calibration"],
    );
    assert!(out.status.success());
    let run_time = started.elapsed().as_micros().max(1000) as u64;

    let mut acked = "calibration".to_string();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let (mut killed, mut completed) = (0, 0);
    for i in 0..60 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let value = format!("write {i} {}", "x".repeat((seed % 3000) as usize));
        let mut child = Command::new(BIN)
            .arg("--state-dir")
            .arg(&state)
            .args(["mb", "set", "W3SVC/1/ServerComment", &value])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % (run_time * 12 / 10)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let now = get(&state, "W3SVC/1/ServerComment");
        if status.success() {
            completed += 1;
            assert_eq!(now, value.as_str(), "an acknowledged write was lost");
            acked = value;
        } else {
            killed += 1;
            assert!(
                now == acked.as_str() || now == value.as_str(),
                "after kill {i}: unexpected value"
            );
            if now == value.as_str() {
                acked = value;
            }
        }
    }
    assert!(
        killed > 0 && completed > 0,
        "killed {killed}, completed {completed}: the timing never raced"
    );
    // The next writer clears what killed writers left behind.
    assert!(
        inetsrv(&state, &["mb", "set", "W3SVC/1/ServerComment", "final"])
            .status
            .success()
    );
    let leftovers: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
