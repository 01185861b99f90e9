//! A real `inetsrv start` serving sites through real worker processes, on
//! a temporary state directory with site 1 bound to a free port, and
//! curl as the HTTP client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{free_port, BIN};

pub struct Web {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Site 1's secure binding (the first run's `:8443:` moved to a free
    /// port).
    pub tls_port: u16,
    /// The management service's port (8172 moved to a free one).
    pub console_port: u16,
    /// How the management service is started: on `console_port`.
    pub console_args: Vec<String>,
    /// Extra environment for the server (and so its workers).
    pub env: Vec<(String, String)>,
    /// Work on this metabase file (`--metabase`) instead of the state
    /// directory (`--state-dir`).
    pub metabase_file: Option<PathBuf>,
    child: Option<Child>,
    stdout: Option<mpsc::Receiver<String>>,
    /// What the server printed before `ready`.
    pub summary: Vec<String>,
    /// How the RPC endpoint is started: loopback, a free port.
    pub rpc_args: Vec<String>,
    /// A program the server is started through (`prlimit …`), if any.
    pub launcher: Vec<String>,
}

/// A response as curl got it.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        // The last response's head (after any 100 Continue).
        let last = self
            .head
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()
            .unwrap_or("");
        last.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Web {
    /// A state directory (not started yet) whose site 1 listens on a free
    /// loopback port.
    pub fn prepare() -> Web {
        // A 0700 directory, as a user's home is: workers running as
        // another user (the tests run as root) need no way through it.
        let dir = tempfile::tempdir().unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("httpsys.json"),
            r#"{"ListenAddresses": ["127.0.0.1"]}"#,
        )
        .unwrap();
        let mut web = Web {
            dir,
            port: free_port(),
            tls_port: free_port(),
            console_port: free_port(),
            console_args: Vec::new(),
            env: Vec::new(),
            metabase_file: None,
            child: None,
            stdout: None,
            summary: Vec::new(),
            rpc_args: ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
                .map(String::from)
                .to_vec(),
            launcher: Vec::new(),
        };
        web.console_args = vec![
            "--console".into(),
            format!("127.0.0.1:{}", web.console_port),
        ];
        web.cli_ok(&[
            "mb",
            "set",
            "W3SVC/1/ServerBindings",
            &format!(":{}:", web.port),
        ]);
        web.cli_ok(&[
            "mb",
            "set",
            "W3SVC/1/SecureBindings",
            &format!(":{}:", web.tls_port),
        ]);
        web
    }

    /// The JSON object a test client printed last (its answer), or a
    /// panic with what it and the server said.
    pub fn last_json(&self, out: &Output) -> serde_json::Value {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{e}: stdout {stdout:?} stderr {stderr}\nserver log:\n{}",
                self.log()
            )
        })
    }

    /// Adds the tests' administrator (boss, Secret-1) and a user who is
    /// not one (clerk, Secret-2).
    pub fn add_boss_and_clerk(&self) {
        self.cli_ok(&["user", "add", "boss", "--password", "Secret-1", "--admin"]);
        self.cli_ok(&["user", "add", "clerk", "--password", "Secret-2"]);
    }

    /// The arguments that reach this server's RPC endpoint over TCP as
    /// boss (`--server 127.0.0.1:PORT --user boss --password Secret-1`).
    pub fn as_boss(&self) -> Vec<String> {
        let server = format!("127.0.0.1:{}", self.rpc_port());
        [
            "--server",
            &server,
            "--user",
            "boss",
            "--password",
            "Secret-1",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Prepares, adds boss and clerk, and starts.
    pub fn start_with_users() -> Web {
        let mut web = Web::prepare();
        web.add_boss_and_clerk();
        web.launch();
        web
    }

    /// Prepares and starts.
    pub fn start() -> Web {
        let mut web = Web::prepare();
        web.launch();
        web
    }

    /// Starts `inetsrv start` and waits for its `ready` line.
    pub fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("stderr.log")).unwrap();
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(self.target())
            // One thread, as on a one-CPU machine (the listener then runs a
            // current-thread runtime); the listener tests run two.
            .args([
                "start",
                "--foreground",
                "--edit-poll-ms",
                "100",
                "--threads",
                "1",
            ])
            .args(&self.rpc_args)
            .args(&self.console_args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line == "ready" => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "the server did not get ready; it said:\n{}\n{}",
                    seen.join("\n"),
                    self.log()
                ),
            }
        }
        self.child = Some(child);
        self.stdout = Some(rx);
        self.summary = seen;
    }

    /// The RPC endpoint's TCP port, from the start-up summary.
    pub fn rpc_port(&self) -> u16 {
        self.endpoint_port("ncacn_ip_tcp:")
    }

    /// The ncacn_http endpoint's port (RPC over HTTP's server role), from
    /// the start-up summary.
    pub fn rpc_http_port(&self) -> u16 {
        self.endpoint_port("ncacn_http:")
    }

    /// The port of a binding (`ncacn_ip_tcp:127.0.0.1[PORT]`) the summary's
    /// RPC endpoint line shows.
    fn endpoint_port(&self, protocol: &str) -> u16 {
        let line = self
            .summary
            .iter()
            .find(|l| l.contains("RPC endpoint:"))
            .unwrap_or_else(|| panic!("no RPC endpoint in {:?}", self.summary));
        let at = line
            .find(protocol)
            .unwrap_or_else(|| panic!("no {protocol} in {line}"));
        let rest = &line[at..];
        let start = rest.find('[').unwrap() + 1;
        let end = rest.find(']').unwrap();
        rest[start..end].parse().unwrap()
    }

    /// Lines the server printed on stdout after `ready`.
    pub fn stdout_lines(&self, wait: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(rx) = &self.stdout {
            let deadline = Instant::now() + wait;
            while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                lines.push(line);
            }
        }
        lines
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the server to exit; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A folder `name` of site 1's content that the worker's identity may
    /// write to (NTFS rights in IIS; Unix permissions here). Not yet
    /// writable through HTTP: see [`Web::allow_writes`].
    pub fn writable_folder(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.www().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    /// Sets AccessRead | AccessWrite on site 1's folder `name` (PUT and
    /// DELETE allowed there).
    pub fn allow_writes(&self, name: &str) {
        self.cli_ok(&[
            "mb",
            "create",
            &format!("W3SVC/1/ROOT/{name}"),
            "IIsWebDirectory",
        ]);
        self.cli_ok(&[
            "mb",
            "set",
            &format!("W3SVC/1/ROOT/{name}/AccessFlags"),
            "AccessRead | AccessWrite",
        ]);
    }

    pub fn www(&self) -> PathBuf {
        self.state().join("wwwroot")
    }

    /// What the server and its workers logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// `--state-dir DIR`, or `--metabase FILE` once `metabase_file` is set.
    pub fn target(&self) -> [std::ffi::OsString; 2] {
        match &self.metabase_file {
            Some(file) => ["--metabase".into(), file.into()],
            None => ["--state-dir".into(), self.state().into()],
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// The CLI with more environment (KRB5_CONFIG, …).
    pub fn cli_env(&self, args: &[&str], env: &[(&str, std::path::PathBuf)]) -> Output {
        Command::new(BIN)
            .args(self.target())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "inetsrv {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; its stderr.
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "inetsrv {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs a command that must fail saying `needle`; its stderr.
    pub fn cli_fails_with(&self, args: &[&str], needle: &str) -> String {
        let err = self.cli_err(args);
        assert!(err.contains(needle), "inetsrv {args:?}: {err}");
        err
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The https URL of `path` on site 1, by the name `localhost`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.tls_port)
    }

    /// `curl` with `args`, then the URL of `path` on site 1.
    pub fn curl(&self, path: &str, args: &[&str]) -> Got {
        curl(&self.url(path), args)
    }

    /// Creates pool POOL and site "Site B" in it, served from a folder of
    /// the test's directory on a port of its own: the folder and port.
    pub fn second_site(&self, pool: &str) -> (PathBuf, u16) {
        let port = super::free_port();
        let dir = self.dir.path().join("site-b");
        std::fs::create_dir_all(&dir).unwrap();
        self.cli_ok(&["pool", "create", pool]);
        self.cli_ok(&[
            "site",
            "create",
            "Site B",
            "--path",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--pool",
            pool,
        ]);
        (dir, port)
    }

    /// The JSON `pool list` prints.
    pub fn pools(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["--json", "pool", "list"])).unwrap()
    }

    /// One pool as `pool list --json` shows it.
    pub fn pool(&self, name: &str) -> serde_json::Value {
        let pools = self.pools();
        pools
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .unwrap_or_else(|| panic!("no pool {name}: {pools}"))
            .clone()
    }

    /// The PIDs of a pool's workers in a state (`running`, …).
    pub fn worker_pids(&self, pool: &str, state: &str) -> Vec<u32> {
        self.pools()
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(pool))
            })
            .flat_map(|p| p["workers"].as_array().cloned().unwrap_or_default())
            .filter(|w| w["state"] == state)
            .map(|w| w["pid"].as_u64().unwrap() as u32)
            .collect()
    }

    /// Waits until `check` holds.
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The W3C log lines of a site written so far (directives skipped).
    pub fn w3c_lines(&self, site: u32) -> Vec<String> {
        super::log_lines(&self.state().join(format!("logs/W3SVC{site}")))
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs curl on a URL: status, head and body.
pub fn curl(url: &str, args: &[&str]) -> Got {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Got {
        status,
        head: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

/// Writes a file under a directory, creating its parents.
pub fn write(root: &Path, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path
}
