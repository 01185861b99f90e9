//! The HTTPERR log: every error the listener answers itself, every timeout
//! and every dropped connection, one line each, in HTTP.SYS's W3C format.
//! Files are `httperr<N>.log`, rolled at ErrorLogFileTruncateSize.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// What the log's thread is asked to do.
enum Job {
    Line(String),
    /// Answers once every line before it is written.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Lines waiting for the log's thread; beyond this, lines are dropped and
/// counted (a flood of bad requests must not grow memory or slow the
/// listener), and the count is written to the log when there is room.
const BACKLOG: usize = 16 * 1024;

/// The log writer. The listener formats each line where the error
/// happens and hands it to the log's own thread, which writes it at once
/// (errors are rare, and each line should survive a crash); no runtime
/// thread ever waits on the file.
pub struct HttpErrLog {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    dropped: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The file side, owned by the log's thread.
struct Files {
    dir: PathBuf,
    truncate_size: u64,
    /// Files kept (0: all).
    max_files: u32,
    current: Option<Current>,
}

impl HttpErrLog {
    /// A log in `dir` (none: logging off), rolled at `truncate_size` bytes,
    /// keeping the newest `max_files` files (0: all).
    pub fn new(dir: Option<PathBuf>, truncate_size: u64, max_files: u32) -> HttpErrLog {
        let Some(dir) = dir else {
            return HttpErrLog {
                jobs: None,
                dropped: Arc::default(),
                thread: None,
            };
        };
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(BACKLOG);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        let mut files = Files {
            dir,
            truncate_size: truncate_size.max(1024),
            max_files,
            current: None,
        };
        let thread = std::thread::Builder::new()
            .name("httperr-log".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Line(line) => {
                            let lost = counted.swap(0, Ordering::Relaxed);
                            if lost > 0 {
                                files.write(&format!(
                                    "#Dropped: {lost} lines (the log fell behind)\r\n"
                                ));
                            }
                            files.write(&line);
                        }
                        Job::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .ok();
        HttpErrLog {
            jobs: thread.as_ref().map(|_| jobs),
            dropped,
            thread,
        }
    }

    pub fn write(&self, record: &ErrorRecord) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        let line = format!("{}\r\n", record.line(SystemTime::now()));
        if jobs.try_send(Job::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns once every line written before the call is in the file.
    pub fn flush(&self) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if jobs.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

impl Drop for HttpErrLog {
    /// The lines still waiting are written before the log goes.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Files {
    fn open(&self, index: u32) -> std::io::Result<Current> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("httperr{index}.log"));
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

    /// The indices of the logs in the directory.
    fn indices(&self) -> Vec<u32> {
        std::fs::read_dir(&self.dir)
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
            .collect()
    }

    /// The highest-numbered existing log, to continue after a restart.
    fn last_index(&self) -> u32 {
        self.indices().into_iter().max().unwrap_or(1)
    }

    /// Removes the logs older than the newest `max_files` (counting
    /// `newest` itself).
    fn prune(&self, newest: u32) {
        if self.max_files == 0 {
            return;
        }
        let keep_from = newest.saturating_sub(self.max_files - 1);
        for index in self.indices().into_iter().filter(|i| *i < keep_from) {
            let path = self.dir.join(format!("httperr{index}.log"));
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old HTTPERR log");
            }
        }
    }

    fn write(&mut self, line: &str) {
        let result = (|| -> std::io::Result<()> {
            if self.current.is_none() {
                let last = self.last_index();
                self.current = Some(self.open(last)?);
                self.prune(last);
            }
            if let Some(cur) = self.current.as_ref() {
                if cur.size + line.len() as u64 > self.truncate_size {
                    let next = cur.index + 1;
                    self.current = Some(self.open(next)?);
                    self.prune(next);
                }
            }
            if let Some(cur) = self.current.as_mut() {
                cur.file.write_all(line.as_bytes())?;
                cur.size += line.len() as u64;
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the HTTPERR log");
            self.current = None;
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
    fn a_flood_of_refusals_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (truncate, keep) = (64 * 1024, 3);
        let log = HttpErrLog::new(Some(dir.path().to_path_buf()), truncate, keep);
        let record = ErrorRecord {
            client: Some("192.0.2.1:40000".parse().unwrap()),
            reason: "BadRequest",
            uri: Some("/flood".into()),
            status: Some(400),
            ..ErrorRecord::default()
        };
        for i in 0..300_000 {
            log.write(&record);
            if i % 10_000 == 0 {
                // Let the writer keep up, so the lines reach the files
                // rather than the dropped count.
                log.flush();
            }
        }
        log.flush();
        let files: Vec<(String, u64)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        assert!(files.len() <= keep as usize, "{files:?}");
        let total: u64 = files.iter().map(|(_, len)| len).sum();
        assert!(total <= truncate * u64::from(keep), "{total} bytes");
        // It rolled far past the files it keeps: the old ones went.
        let newest = files
            .iter()
            .filter_map(|(n, _)| {
                n.strip_prefix("httperr")?
                    .strip_suffix(".log")?
                    .parse::<u32>()
                    .ok()
            })
            .max()
            .unwrap();
        assert!(newest > 50, "only {newest} files were written");
    }

    #[test]
    fn files_roll_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = HttpErrLog::new(Some(dir.path().to_path_buf()), 1024, 0);
        let record = ErrorRecord {
            reason: "BadRequest",
            uri: Some("/".repeat(100)),
            ..ErrorRecord::default()
        };
        for _ in 0..30 {
            log.write(&record);
        }
        log.flush();
        let first = std::fs::read_to_string(dir.path().join("httperr1.log")).unwrap();
        assert!(first.starts_with("#Software: "));
        assert!(first.contains(&format!("#Fields: {FIELDS}\r\n")));
        assert!(first.len() <= 1024);
        assert!(dir.path().join("httperr2.log").exists());
        let second = std::fs::read_to_string(dir.path().join("httperr2.log")).unwrap();
        assert!(second.starts_with("#Software: "));
        // A new writer continues with the newest file, not the first.
        drop(log);
        let first_before = std::fs::read(dir.path().join("httperr1.log")).unwrap();
        let again = HttpErrLog::new(Some(dir.path().to_path_buf()), 1024, 0);
        again.write(&record);
        drop(again);
        assert_eq!(
            std::fs::read(dir.path().join("httperr1.log")).unwrap(),
            first_before
        );
    }
}
