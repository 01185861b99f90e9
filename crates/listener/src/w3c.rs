//! W3C extended request logs, one set of files per site, as HTTP.SYS
//! writes them for IIS 6 (the application adds only what it alone knows:
//! the user, the sub-status and the Win32 status).
//!
//! Files are `<LogFileDirectory>/W3SVC<id>/ex<date>.log` by LogFilePeriod
//! (hourly `exYYMMDDHH`, daily `exYYMMDD`, weekly `exYYMMWW` with WW the
//! week of the month, monthly `exYYMM`) or `extend<N>.log` rolled at
//! LogFileTruncateSize. Each opening of a file starts with the
//! `#Software`, `#Version`, `#Date` and `#Fields` directives. Times are
//! UTC; LogFileLocaltimeRollover names and rolls files by local time.
//! Lines are buffered and written at least once a second.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use httpapi::dates::Civil;

/// LogExtFileFlags bits, in the order IIS 6 writes the fields.
const FIELDS: [(u32, &str); 22] = [
    (0x1, "date"),
    (0x2, "time"),
    (0x10, "s-sitename"),
    (0x20, "s-computername"),
    (0x40, "s-ip"),
    (0x80, "cs-method"),
    (0x100, "cs-uri-stem"),
    (0x200, "cs-uri-query"),
    (0x8000, "s-port"),
    (0x8, "cs-username"),
    (0x4, "c-ip"),
    (0x80000, "cs-version"),
    (0x10000, "cs(User-Agent)"),
    (0x20000, "cs(Cookie)"),
    (0x40000, "cs(Referer)"),
    (0x100000, "cs-host"),
    (0x400, "sc-status"),
    (0x200000, "sc-substatus"),
    (0x800, "sc-win32-status"),
    (0x1000, "sc-bytes"),
    (0x2000, "cs-bytes"),
    (0x4000, "time-taken"),
];

/// LogFilePeriod values.
pub mod period {
    pub const BY_SIZE: u32 = 0;
    pub const DAILY: u32 = 1;
    pub const WEEKLY: u32 = 2;
    pub const MONTHLY: u32 = 3;
    pub const HOURLY: u32 = 4;
}

/// A site's log settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct W3cSettings {
    /// LogFileDirectory; the site's files go in `W3SVC<id>` below it.
    pub directory: PathBuf,
    pub period: u32,
    pub truncate_size: u64,
    pub fields: u32,
    pub local_time_rollover: bool,
}

/// One request, as logged.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    pub site_id: u32,
    pub time: SystemTime,
    pub client: IpAddr,
    pub server: SocketAddr,
    pub method: &'a str,
    pub stem: &'a str,
    pub query: &'a str,
    pub user: &'a str,
    pub version: &'a str,
    pub user_agent: Option<&'a [u8]>,
    pub cookie: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    pub status: u16,
    pub substatus: u16,
    pub win32: u32,
    pub sent: u64,
    pub received: u64,
    pub taken_ms: u64,
}

/// Flush once this much is buffered.
const BUFFER: usize = 64 * 1024;

struct SiteLog {
    site_id: u32,
    settings: W3cSettings,
    buf: Vec<u8>,
    /// The file being written and its size.
    current: Option<(PathBuf, u64)>,
    broken: bool,
    /// Files kept in the site's directory (0: all).
    max_files: u32,
}

/// Every site's log.
#[derive(Default)]
pub struct W3cLogs {
    sites: RwLock<HashMap<u32, Arc<Mutex<SiteLog>>>>,
    computer: String,
    /// W3CLogMaxFiles: each site keeps its newest this many files (0: all).
    max_files: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A field value: `-` when empty, spaces as `+` (IIS's way), no control
/// characters.
fn field(out: &mut String, value: &[u8]) {
    if value.is_empty() {
        out.push('-');
        return;
    }
    for c in String::from_utf8_lossy(value).chars() {
        match c {
            ' ' => out.push('+'),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
}

/// The local time's offset from UTC now, in seconds.
fn local_offset() -> i64 {
    use chrono::Offset;
    i64::from(chrono::Local::now().offset().fix().local_minus_utc())
}

impl W3cLogs {
    /// Logs whose sites keep their newest `max_files` files (0: all).
    pub fn new(max_files: u32) -> W3cLogs {
        let computer = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        W3cLogs {
            sites: RwLock::new(HashMap::new()),
            computer,
            max_files,
        }
    }

    /// Sets (or with `None`, ends) a site's logging.
    pub fn configure(&self, site_id: u32, settings: Option<W3cSettings>) {
        let mut sites = self.sites.write().unwrap_or_else(|e| e.into_inner());
        match settings {
            None => {
                if let Some(old) = sites.remove(&site_id) {
                    lock(&old).flush();
                }
            }
            Some(settings) => match sites.get(&site_id) {
                Some(existing) => {
                    let mut log = lock(existing);
                    if log.settings != settings {
                        log.flush();
                        log.settings = settings;
                        log.current = None;
                        log.broken = false;
                    }
                }
                None => {
                    sites.insert(
                        site_id,
                        Arc::new(Mutex::new(SiteLog {
                            site_id,
                            settings,
                            buf: Vec::new(),
                            current: None,
                            broken: false,
                            max_files: self.max_files,
                        })),
                    );
                }
            },
        }
    }

    pub fn is_logging(&self, site_id: u32) -> bool {
        self.sites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&site_id)
    }

    /// Logs a request (if its site logs).
    pub fn write(&self, record: &Record<'_>) {
        let Some(site) = self
            .sites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&record.site_id)
            .cloned()
        else {
            return;
        };
        let fields = lock(&site).settings.fields;
        let line = self.line(record, fields);
        lock(&site).append(record.time, line.as_bytes());
    }

    /// Writes what is buffered.
    pub fn flush_all(&self) {
        let sites: Vec<Arc<Mutex<SiteLog>>> = self
            .sites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for site in sites {
            lock(&site).flush();
        }
    }

    fn line(&self, r: &Record<'_>, fields: u32) -> String {
        let when = Civil::from_system_time(r.time);
        let mut out = String::with_capacity(256);
        for (bit, _) in FIELDS.iter().filter(|(bit, _)| fields & bit != 0) {
            if !out.is_empty() {
                out.push(' ');
            }
            match *bit {
                0x1 => out.push_str(&when.date()),
                0x2 => out.push_str(&when.time()),
                0x10 => out.push_str(&format!("W3SVC{}", r.site_id)),
                0x20 => field(&mut out, self.computer.as_bytes()),
                0x40 => out.push_str(&r.server.ip().to_string()),
                0x80 => field(&mut out, r.method.as_bytes()),
                0x100 => field(&mut out, r.stem.as_bytes()),
                0x200 => field(&mut out, r.query.as_bytes()),
                0x8000 => out.push_str(&r.server.port().to_string()),
                0x8 => field(&mut out, r.user.as_bytes()),
                0x4 => out.push_str(&r.client.to_string()),
                0x80000 => field(&mut out, r.version.as_bytes()),
                0x10000 => field(&mut out, r.user_agent.unwrap_or_default()),
                0x20000 => field(&mut out, r.cookie.unwrap_or_default()),
                0x40000 => field(&mut out, r.referer.unwrap_or_default()),
                0x100000 => field(&mut out, r.host.unwrap_or_default()),
                0x400 => out.push_str(&r.status.to_string()),
                0x200000 => out.push_str(&r.substatus.to_string()),
                0x800 => out.push_str(&r.win32.to_string()),
                0x1000 => out.push_str(&r.sent.to_string()),
                0x2000 => out.push_str(&r.received.to_string()),
                0x4000 => out.push_str(&r.taken_ms.to_string()),
                _ => out.push('-'),
            }
        }
        out.push_str("\r\n");
        out
    }
}

/// The `#Fields` directive of a flag set.
pub fn fields_directive(fields: u32) -> String {
    let names: Vec<&str> = FIELDS
        .iter()
        .filter(|(bit, _)| fields & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("#Fields: {}", names.join(" "))
}

/// The file name for a moment under a period.
pub fn file_name(settings: &W3cSettings, time: SystemTime, dir: &Path) -> String {
    let time = if settings.local_time_rollover {
        let offset = local_offset();
        if offset >= 0 {
            time + std::time::Duration::from_secs(offset as u64)
        } else {
            time - std::time::Duration::from_secs(offset.unsigned_abs())
        }
    } else {
        time
    };
    let c = Civil::from_system_time(time);
    let yy = c.year.rem_euclid(100);
    match settings.period {
        period::HOURLY => format!("ex{yy:02}{:02}{:02}{:02}.log", c.month, c.day, c.hour),
        period::DAILY => format!("ex{yy:02}{:02}{:02}.log", c.month, c.day),
        period::WEEKLY => {
            // The week of the month, weeks starting on Sunday.
            let first_weekday = (c.weekday + 35 - (c.day - 1) % 7) % 7;
            let week = (c.day - 1 + first_weekday) / 7 + 1;
            format!("ex{yy:02}{:02}{week:02}.log", c.month)
        }
        period::MONTHLY => format!("ex{yy:02}{:02}.log", c.month),
        _ => {
            // By size: the highest extend<N>.log, or the next when full.
            let mut n = 1;
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(k) = name
                        .strip_prefix("extend")
                        .and_then(|r| r.strip_suffix(".log"))
                    {
                        if let Ok(k) = k.parse::<u32>() {
                            n = n.max(k);
                        }
                    }
                }
            }
            let current = dir.join(format!("extend{n}.log"));
            let size = std::fs::metadata(&current).map(|m| m.len()).unwrap_or(0);
            if settings.truncate_size > 0 && size >= settings.truncate_size {
                n += 1;
            }
            format!("extend{n}.log")
        }
    }
}

impl SiteLog {
    fn dir(&self) -> PathBuf {
        self.settings
            .directory
            .join(format!("W3SVC{}", self.site_id))
    }

    fn append(&mut self, time: SystemTime, line: &[u8]) {
        if self.broken {
            return;
        }
        let dir = self.dir();
        let by_size = self.settings.period == period::BY_SIZE;
        if by_size {
            let full = self.current.as_ref().is_some_and(|(_, size)| {
                self.settings.truncate_size > 0
                    && size + self.buf.len() as u64 >= self.settings.truncate_size
            });
            if full {
                // On disk first: the next name depends on the file's size.
                self.flush();
            }
        }
        let target = match (&self.current, by_size) {
            // By size: stay on the file until it is full.
            (Some((path, size)), true)
                if self.settings.truncate_size == 0
                    || size + (self.buf.len() as u64) < self.settings.truncate_size =>
            {
                path.clone()
            }
            _ => dir.join(file_name(&self.settings, time, &dir)),
        };
        if self.current.as_ref().map(|(p, _)| p) != Some(&target) {
            self.flush();
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot create the site's log directory; not logging");
                self.broken = true;
                return;
            }
            let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
            self.prune(&dir, &target);
            self.current = Some((target, size));
            let now = Civil::from_system_time(SystemTime::now());
            let header = format!(
                "#Software: inetsrv {}\r\n#Version: 1.0\r\n#Date: {} {}\r\n{}\r\n",
                env!("CARGO_PKG_VERSION"),
                now.date(),
                now.time(),
                fields_directive(self.settings.fields)
            );
            self.buf.extend_from_slice(header.as_bytes());
        }
        self.buf.extend_from_slice(line);
        if self.buf.len() >= BUFFER {
            self.flush();
        }
    }

    /// Removes the site's oldest log files (by modification time) beyond
    /// `max_files`, `current` counting as the newest.
    fn prune(&self, dir: &Path, current: &Path) {
        if self.max_files == 0 {
            return;
        }
        let mut files: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.starts_with("ex") || name.starts_with("extend")) && name.ends_with(".log")
            })
            .map(|e| e.path())
            .filter(|p| p != current)
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        files.sort();
        let keep_others = self.max_files as usize - 1;
        let excess = files.len().saturating_sub(keep_others);
        for (_, old) in files.into_iter().take(excess) {
            if let Err(e) = std::fs::remove_file(&old) {
                tracing::warn!(file = %old.display(), error = %e, "cannot remove an old request log");
            }
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let Some((path, size)) = &mut self.current else {
            self.buf.clear();
            return;
        };
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*path)
            .and_then(|mut f| f.write_all(&self.buf));
        match result {
            Ok(()) => *size += self.buf.len() as u64,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot write the request log")
            }
        }
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn settings(dir: &Path, period: u32) -> W3cSettings {
        W3cSettings {
            directory: dir.to_path_buf(),
            period,
            truncate_size: 300,
            fields: 0x1
                | 0x2
                | 0x4
                | 0x8
                | 0x80
                | 0x100
                | 0x200
                | 0x400
                | 0x200000
                | 0x800
                | 0x10000,
            local_time_rollover: false,
        }
    }

    fn record(time: SystemTime) -> Record<'static> {
        Record {
            site_id: 3,
            time,
            client: "192.0.2.7".parse().unwrap(),
            server: "127.0.0.1:8080".parse().unwrap(),
            method: "GET",
            stem: "/a b.htm",
            query: "",
            user: "alice",
            version: "HTTP/1.1",
            user_agent: Some(b"curl/8 (x)"),
            cookie: None,
            referer: None,
            host: None,
            status: 404,
            substatus: 3,
            win32: 2,
            sent: 10,
            received: 20,
            taken_ms: 5,
        }
    }

    #[test]
    fn names_by_period() {
        let dir = tempfile::tempdir().unwrap();
        // Sunday 2026-11-22 06:07:08 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_327_628);
        let name = |p| file_name(&settings(dir.path(), p), t, dir.path());
        assert_eq!(name(period::DAILY), "ex261122.log");
        assert_eq!(name(period::HOURLY), "ex26112206.log");
        assert_eq!(name(period::MONTHLY), "ex2611.log");
        // Nov 1 2026 is a Sunday: the 22nd is in week 4.
        assert_eq!(name(period::WEEKLY), "ex261104.log");
        assert_eq!(name(period::BY_SIZE), "extend1.log");
    }

    #[test]
    fn lines_directives_and_size_rollover() {
        let dir = tempfile::tempdir().unwrap();
        let logs = W3cLogs::new(0);
        logs.configure(3, Some(settings(dir.path(), period::BY_SIZE)));
        let t = UNIX_EPOCH + Duration::from_secs(1_795_327_628);
        logs.write(&record(t));
        logs.flush_all();
        let first = std::fs::read_to_string(dir.path().join("W3SVC3/extend1.log")).unwrap();
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(
            lines[0],
            format!("#Software: inetsrv {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(lines[1], "#Version: 1.0");
        assert!(lines[2].starts_with("#Date: "));
        assert_eq!(
            lines[3],
            "#Fields: date time cs-method cs-uri-stem cs-uri-query cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status"
        );
        assert_eq!(
            lines[4],
            "2026-11-22 06:07:08 GET /a+b.htm - alice 192.0.2.7 curl/8+(x) 404 3 2"
        );
        // Past LogFileTruncateSize: the next file.
        for _ in 0..5 {
            logs.write(&record(t));
        }
        logs.flush_all();
        assert!(dir.path().join("W3SVC3/extend2.log").exists());
        // A site that no longer logs writes nothing.
        logs.configure(3, None);
        logs.write(&record(t));
        assert!(!logs.is_logging(3));
    }

    #[test]
    fn a_site_keeps_its_newest_w3c_log_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let logs = W3cLogs::new(3);
        // By size at 300 bytes: a new file every few requests.
        logs.configure(3, Some(settings(dir.path(), period::BY_SIZE)));
        let t = UNIX_EPOCH + Duration::from_secs(1_795_327_628);
        for _ in 0..200 {
            logs.write(&record(t));
        }
        logs.flush_all();
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("W3SVC3"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        // The newest ones, the current among them.
        let numbers: Vec<u32> = names
            .iter()
            .map(|n| {
                n.trim_start_matches("extend")
                    .trim_end_matches(".log")
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(numbers.iter().all(|n| *n > 10), "{numbers:?}");
    }
}
