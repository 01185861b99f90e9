//! The HTTPERR log: every error the listener answers itself, every timeout
//! and every dropped connection, one line each, in HTTP.SYS's W3C format.
//! Files are `httperr<N>.log`, rolled at ErrorLogFileTruncateSize.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

pub const FIELDS: &str =
    "date time c-ip c-port s-ip s-port cs-version cs-method cs-uri sc-status s-siteid s-reason s-queuename";

/// One HTTPERR line. Absent values are written as `-`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorRecord {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    pub version: Option<&'static str>,
    pub method: Option<String>,
    pub uri: Option<String>,
    pub status: Option<u16>,
    pub site_id: Option<u32>,
    pub reason: &'static str,
    pub queue: Option<String>,
}

/// `YYYY-MM-DD` and `HH:MM:SS` in UTC, as W3C logs write them.
pub fn w3c_date_time(t: SystemTime) -> (String, String) {
    let c = httpapi::dates::Civil::from_system_time(t);
    (c.date(), c.time())
}

/// A log field: spaces would split it, so they become `+` as W3C logs do.
fn field(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v
            .chars()
            .map(|c| if c == ' ' || c.is_control() { '+' } else { c })
            .collect(),
        _ => "-".to_string(),
    }
}

impl ErrorRecord {
    pub fn line(&self, at: SystemTime) -> String {
        let (date, time) = w3c_date_time(at);
        let ip = |a: Option<SocketAddr>| a.map(|a| a.ip().to_string());
        let port = |a: Option<SocketAddr>| a.map(|a| a.port().to_string());
        [
            date,
            time,
            field(ip(self.client).as_deref()),
            field(port(self.client).as_deref()),
            field(ip(self.server).as_deref()),
            field(port(self.server).as_deref()),
            field(self.version),
            field(self.method.as_deref()),
            field(self.uri.as_deref()),
            field(self.status.map(|s| s.to_string()).as_deref()),
            field(self.site_id.map(|s| s.to_string()).as_deref()),
            field(Some(self.reason)),
            field(self.queue.as_deref()),
        ]
        .join(" ")
    }
}

struct Current {
    file: File,
    size: u64,
    index: u32,
}

/// The log writer. Lines are written as they happen (errors are rare, and
/// each line should survive a crash).
pub struct HttpErrLog {
    dir: Option<PathBuf>,
    truncate_size: u64,
    current: Mutex<Option<Current>>,
}

impl HttpErrLog {
    pub fn new(dir: Option<PathBuf>, truncate_size: u64) -> HttpErrLog {
        HttpErrLog {
            dir,
            truncate_size: truncate_size.max(1024),
            current: Mutex::new(None),
        }
    }

    fn open(&self, index: u32) -> std::io::Result<Current> {
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no log directory"))?;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("httperr{index}.log"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut size = file.metadata()?.len();
        if size == 0 {
            let (date, time) = w3c_date_time(SystemTime::now());
            let header = format!(
                "#Software: inetsrv HTTP API 1.0\r\n#Version: 1.0\r\n#Date: {date} {time}\r\n#Fields: {FIELDS}\r\n"
            );
            file.write_all(header.as_bytes())?;
            size = header.len() as u64;
        }
        Ok(Current { file, size, index })
    }

    /// The highest-numbered existing log, to continue after a restart.
    fn last_index(&self) -> u32 {
        let Some(dir) = &self.dir else { return 1 };
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("httperr")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(1)
    }

    pub fn write(&self, record: &ErrorRecord) {
        if self.dir.is_none() {
            return;
        }
        let line = format!("{}\r\n", record.line(SystemTime::now()));
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let result = (|| -> std::io::Result<()> {
            if guard.is_none() {
                *guard = Some(self.open(self.last_index())?);
            }
            if let Some(cur) = guard.as_ref() {
                if cur.size + line.len() as u64 > self.truncate_size {
                    let next = cur.index + 1;
                    *guard = Some(self.open(next)?);
                }
            }
            if let Some(cur) = guard.as_mut() {
                cur.file.write_all(line.as_bytes())?;
                cur.size += line.len() as u64;
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the HTTPERR log");
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(w3c_date_time(t), ("2026-11-18".into(), "11:06:40".into()));
        let leap = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(w3c_date_time(leap).0, "2000-02-29");
    }

    #[test]
    fn line_format() {
        let r = ErrorRecord {
            client: Some("127.0.0.1:5000".parse().unwrap()),
            server: Some("[::1]:8080".parse().unwrap()),
            version: Some("HTTP/1.1"),
            method: Some("GET".into()),
            uri: Some("/a b".into()),
            status: Some(400),
            site_id: None,
            reason: "BadRequest",
            queue: None,
        };
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(
            r.line(t),
            "2026-11-18 11:06:40 127.0.0.1 5000 ::1 8080 HTTP/1.1 GET /a+b 400 - BadRequest -"
        );
        let idle = ErrorRecord {
            reason: "Timer_ConnectionIdle",
            ..ErrorRecord::default()
        };
        assert_eq!(
            idle.line(t),
            "2026-11-18 11:06:40 - - - - - - - - - Timer_ConnectionIdle -"
        );
    }

    #[test]
    fn files_roll_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = HttpErrLog::new(Some(dir.path().to_path_buf()), 1024);
        let record = ErrorRecord {
            reason: "BadRequest",
            uri: Some("/".repeat(100)),
            ..ErrorRecord::default()
        };
        for _ in 0..30 {
            log.write(&record);
        }
        let first = std::fs::read_to_string(dir.path().join("httperr1.log")).unwrap();
        assert!(first.starts_with("#Software: "));
        assert!(first.contains(&format!("#Fields: {FIELDS}\r\n")));
        assert!(first.len() <= 1024);
        assert!(dir.path().join("httperr2.log").exists());
        let second = std::fs::read_to_string(dir.path().join("httperr2.log")).unwrap();
        assert!(second.starts_with("#Software: "));
        // A new writer continues with the newest file.
        let again = HttpErrLog::new(Some(dir.path().to_path_buf()), 1024);
        assert_eq!(again.last_index(), log.last_index());
    }
}
