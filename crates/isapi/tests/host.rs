//! The host against a real extension: `tests/c/echo.c`, compiled with cc
//! against `include/`, loaded, called with a recording connection.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use isapi::ext::status;
use isapi::host::{Connection, Extension, LoadError, RequestFacts};

/// A shared object built from `tests/c/NAME.c` in a new directory.
fn build(name: &str, dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join(format!("{name}.so"));
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-pthread", "-I"])
        .arg(root.join("../../include"))
        .arg(root.join(format!("tests/c/{name}.c")))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("cc is installed");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// Records what the extension does; serves a body from memory.
#[derive(Default)]
struct Recorder {
    head: Option<(String, String, bool)>,
    written: Vec<u8>,
    body: Vec<u8>,
    read_at: usize,
    log: Vec<String>,
}

impl Connection for Recorder {
    fn server_variable(&mut self, name: &str) -> Option<Vec<u8>> {
        (name == "SERVER_NAME").then(|| b"www.example.test".to_vec())
    }
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.body.len() - self.read_at);
        buf[..n].copy_from_slice(&self.body[self.read_at..self.read_at + n]);
        self.read_at += n;
        Ok(n)
    }
    fn send_headers(&mut self, status: &str, headers: &str, keep: bool) -> std::io::Result<()> {
        self.head = Some((status.into(), headers.into(), keep));
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.written.extend_from_slice(data);
        Ok(())
    }
    fn redirect(&mut self, url: &str) -> std::io::Result<()> {
        self.log.push(format!("redirect {url}"));
        Ok(())
    }
    fn keep_conn(&self) -> bool {
        true
    }
    fn append_log(&mut self, text: &str) {
        self.log.push(text.into());
    }
    fn close_connection(&mut self) {}
    fn report_unhealthy(&mut self, reason: &str) {
        self.log.push(format!("unhealthy {reason}"));
    }
}

fn facts(query: &str, body: &[u8], preload: usize) -> RequestFacts {
    RequestFacts {
        method: "POST".into(),
        query_string: query.into(),
        path_info: "/echo.isapi".into(),
        path_translated: "/srv/www/echo.isapi".into(),
        content_type: "application/octet-stream".into(),
        total_bytes: body.len() as u32,
        preloaded: body[..preload].to_vec(),
    }
}

#[test]
fn an_extension_in_c_is_loaded_called_and_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let so = build("echo", dir.path());
    let marker = dir.path().join("terminated");
    // The extension reads the marker's path from its environment.
    std::env::set_var("ECHO_TERMINATED_MARKER", &marker);
    let extension = Extension::load(&so).unwrap();
    assert_eq!(extension.description(), "echo test extension");
    assert_eq!(extension.version(), isapi::ext::HSE_VERSION);

    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut conn = Recorder {
        body: body[1000..].to_vec(),
        ..Recorder::default()
    };
    let outcome = extension.call(
        &mut conn,
        &facts("a=1", &body, 1000),
        Duration::from_secs(5),
    );
    assert_eq!(outcome.status, status::SUCCESS);
    assert_eq!(outcome.http_status, 200);
    assert_eq!(outcome.log_data, "echoed");
    let (status_line, headers, keep) = conn.head.clone().unwrap();
    assert_eq!(status_line, "200 OK");
    assert!(headers.contains("X-Echo: yes"), "{headers}");
    assert!(keep);
    let said = String::from_utf8(conn.written.clone()).unwrap();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    for line in [
        "method POST query a=1 path /echo.isapi",
        "SERVER_NAME www.example.test (17)",
        "small buffer: needs 17",
        "unknown variable: ERROR_INVALID_INDEX",
        "unknown request: ERROR_INVALID_PARAMETER",
        "bad ConnID: ERROR_INVALID_PARAMETER",
        &format!("body 100000 bytes (1000 preloaded), sum {sum}"),
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }

    // Pending: finished from the extension's own thread.
    let mut conn = Recorder::default();
    let outcome = extension.call(&mut conn, &facts("pending", b"", 0), Duration::from_secs(5));
    assert_eq!(outcome.status, status::SUCCESS_AND_KEEP_CONN);
    assert!(!outcome.abandoned);
    let said = String::from_utf8(conn.written).unwrap();
    assert!(said.ends_with("finished from another thread\n"), "{said}");

    drop(extension);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "terminated 2\n",
        "TerminateExtension(HSE_TERM_MUST_UNLOAD) at unload"
    );
}

#[test]
fn modules_that_cannot_be_used_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Extension::load(&dir.path().join("nothing.so")).unwrap_err();
    assert!(matches!(missing, LoadError::Open { .. }), "{missing}");
    assert!(missing.to_string().contains("nothing.so"), "{missing}");
    // A shared object that is not an extension.
    let source = dir.path().join("plain.c");
    std::fs::write(&source, "int not_an_extension(void) { return 1; }\n").unwrap();
    let so = dir.path().join("plain.so");
    assert!(Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&source)
        .status()
        .unwrap()
        .success());
    let e = Extension::load(&so).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not export GetExtensionVersion"),
        "{e}"
    );
}
