//! Edit-while-running (`EnableEditWhileRunning` on `/LM`): a hand edit of
//! MetaBase.xml is noticed, parsed and validated, and applied as a change
//! that subscribers are told of, recorded in History as a minor version.
//! An edit that does not parse or validate is refused: the running
//! configuration stays, the bad file is kept as
//! `History/MetaBaseError_<n>.xml`, the error is logged, and MetaBase.xml
//! is written back from the running configuration.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mbxml::parse_metabase;
use crate::path::MbPath;
use crate::persist::{
    acquire_lock, digest, dir_entries, ids, load_schema, lock_state, save, stamp, write_durably,
    Adopt, MetabaseFiles, ORIGIN_EDIT,
};

/// What one look at the file found.
#[derive(Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// EnableEditWhileRunning is off.
    Disabled,
    /// The file is as this process last wrote or read it.
    Unchanged,
    /// A valid edit, applied: this many keys changed.
    Applied { keys_changed: usize },
    /// An invalid edit, refused.
    Rejected { error: String, saved_as: PathBuf },
}

/// The background thread that looks for edits; stops when dropped.
pub struct EditWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EditWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long a replaced file (a new inode: an editor's save by rename, a
/// `mv`) must stay unchanged before it is read.
const SETTLE: Duration = Duration::from_millis(100);
/// How long a file written in place must stay unchanged: such a save may
/// come in several writes (a script's `>` then `>>`, a slow copy), and a
/// half-written file judged and refused would lose the rest.
const IN_PLACE_QUIET: Duration = Duration::from_millis(1500);
/// A file that never stops changing is judged after this long.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

impl MetabaseFiles {
    /// Starts watching MetaBase.xml for hand edits, looking every
    /// `interval`.
    pub fn watch_edits(&self, interval: Duration) -> EditWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let files = self.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metabase-edits".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    if let Err(e) = files.check_for_edit() {
                        tracing::error!(error = %e, "checking MetaBase.xml for edits failed");
                    }
                }
            })
            .ok();
        EditWatcher { stop, thread }
    }

    /// Looks once for a hand edit and applies or refuses it.
    pub fn check_for_edit(&self) -> Result<EditOutcome> {
        let lm = MbPath::parse("/LM")?;
        let snapshot = self.metabase.snapshot();
        if snapshot
            .effective_dword(&lm, ids::ENABLE_EDIT_WHILE_RUNNING)
            .unwrap_or(0)
            != 1
        {
            return Ok(EditOutcome::Disabled);
        }
        let path = &self.location.metabase;
        let mut seen = stamp(path);
        if seen == lock_state(&self.disk).stamp {
            return Ok(EditOutcome::Unchanged);
        }
        let known_inode = lock_state(&self.disk).stamp.as_ref().map(|s| s.inode);
        let in_place = seen.as_ref().map(|s| s.inode) == known_inode;
        let quiet = if in_place { IN_PLACE_QUIET } else { SETTLE };
        let started = Instant::now();
        let mut last_change = started;
        loop {
            std::thread::sleep(SETTLE);
            let now = stamp(path);
            if now != seen {
                seen = now;
                last_change = Instant::now();
            }
            if last_change.elapsed() >= quiet || started.elapsed() > SETTLE_LIMIT {
                break;
            }
        }

        // The file lock is taken without the state's held (a commit takes
        // the file lock first, then the state's).
        let held = lock_state(&self.disk).held_lock.is_some();
        let lock = match held {
            true => None,
            false => Some(acquire_lock(&self.location)?),
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let now = stamp(path);
        let file_digest = digest(&bytes);
        {
            let mut disk = lock_state(&self.disk);
            if Some(file_digest) == disk.digest {
                disk.stamp = now;
                return Ok(EditOutcome::Unchanged);
            }
        }
        let parsed = (|| {
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Error::InvalidArgument(format!("{}: the file is not UTF-8", path.display()))
            })?;
            let schema_changed = std::fs::read(&self.location.schema)
                .ok()
                .map(|b| digest(&b))
                != lock_state(&self.disk).schema_digest;
            let schema = if schema_changed {
                load_schema(&self.location.schema)?
            } else {
                snapshot.schema_arc().clone()
            };
            let key = lock_state(&self.disk).key.clone();
            let doc = parse_metabase(text, &path.display().to_string(), &schema, key.as_ref())?;
            if doc.root.child("LM").is_none() {
                return Err(Error::InvalidArgument(format!(
                    "{}: the edit removed /LM",
                    path.display()
                )));
            }
            Ok((text.to_string(), doc, schema))
        })();

        match parsed {
            Ok((text, doc, schema)) => {
                for warning in &doc.warnings {
                    tracing::warn!(%warning, "MetaBase.xml edit");
                }
                lock_state(&self.disk).adopt = Some(Adopt {
                    text,
                    stamp: now,
                    global: doc.global.clone(),
                    extra_elements: doc.extra_elements.clone(),
                });
                drop(lock);
                let rx = self.metabase.subscribe();
                let root = Arc::unwrap_or_clone(doc.root);
                let result = self.metabase.write_as(Some(ORIGIN_EDIT), |t| {
                    t.replace_schema(schema);
                    t.replace_subtree(&MbPath::root(), root)
                });
                let leftover = lock_state(&self.disk).adopt.take();
                result?;
                if let Some(adopt) = leftover {
                    // Nothing that matters changed (formatting only).
                    let mut disk = lock_state(&self.disk);
                    disk.stamp = adopt.stamp;
                    disk.digest = Some(digest(adopt.text.as_bytes()));
                    return Ok(EditOutcome::Unchanged);
                }
                let keys_changed = rx.try_iter().map(|b| b.changes.len()).sum();
                tracing::info!(keys_changed, "applied a hand edit of MetaBase.xml");
                Ok(EditOutcome::Applied { keys_changed })
            }
            Err(error) => {
                let saved_as = self.save_error_file(&bytes)?;
                let message = error.to_string();
                // Put the running configuration back on disk, then say so.
                let mut disk = lock_state(&self.disk);
                save(&self.location, &mut disk, &self.metabase.snapshot())?;
                drop(disk);
                drop(lock);
                tracing::error!(
                    error = %message,
                    saved_as = %saved_as.display(),
                    "refused a hand edit of MetaBase.xml; the running configuration is unchanged"
                );
                Ok(EditOutcome::Rejected {
                    error: message,
                    saved_as,
                })
            }
        }
    }

    /// Keeps a refused edit as `History/MetaBaseError_<n>.xml`, at most
    /// MaxErrorFiles of them.
    fn save_error_file(&self, bytes: &[u8]) -> Result<PathBuf> {
        let dir = &self.location.history;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut numbers: Vec<u64> = dir_entries(dir)?
            .into_iter()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("MetaBaseError_")?
                    .strip_suffix(".xml")?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        let next = numbers.last().map_or(0, |n| n + 1);
        let file = dir.join(format!("MetaBaseError_{next:010}.xml"));
        write_durably(&file, bytes)?;
        let keep = self
            .metabase
            .snapshot()
            .effective_dword(&MbPath::parse("/LM")?, ids::MAX_ERROR_FILES)
            .unwrap_or(10)
            .max(1) as usize;
        numbers.push(next);
        if numbers.len() > keep {
            for old in &numbers[..numbers.len() - keep] {
                let _ = std::fs::remove_file(dir.join(format!("MetaBaseError_{old:010}.xml")));
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::LockMode;
    use crate::tree::GetMode;
    use crate::value::Value;

    fn p(s: &str) -> MbPath {
        MbPath::parse(s).unwrap()
    }

    fn service() -> (tempfile::TempDir, MetabaseFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::WhileWriting).unwrap();
        (dir, files)
    }

    fn edit(dir: &std::path::Path, from: &str, to: &str) {
        let file = dir.join("MetaBase.xml");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(from), "fixture lacks {from}");
        // Saved by rename, as most editors save.
        let tmp = dir.join("MetaBase.xml.edit");
        std::fs::write(&tmp, text.replace(from, to)).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    }

    /// Writes `text` into `file` in place in two parts, the second 0.5 s
    /// after the first (a script's `>` then `>>`), on a thread.
    fn write_in_two_parts(file: &std::path::Path, text: &str) -> std::thread::JoinHandle<()> {
        let (first, second) = text.split_at(text.len() / 2);
        std::fs::write(file, first).unwrap();
        let (file, second) = (file.to_path_buf(), second.to_string());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            std::io::Write::write_all(&mut f, second.as_bytes()).unwrap();
        })
    }

    #[test]
    fn the_services_writes_and_the_edit_watcher_never_wait_on_each_other() {
        // Hand edits keep coming while the service writes: the watcher
        // takes the file lock to read each edit as a write commits. The two
        // once took the file lock and the state's in opposite orders and
        // could block each other for ever.
        let (dir, files) = service();
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        let (writer_files, writer_stop, writes_done) =
            (files.clone(), stop.clone(), done_tx.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !writer_stop.load(Ordering::Relaxed) {
                // A write may be refused for an edit it would overwrite.
                let _ = writer_files.metabase().write(|t| {
                    t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &[format!("write {n}")])
                });
                n += 1;
            }
            let _ = writes_done.send(());
        }));
        let (edit_dir, edit_stop) = (dir.path().to_path_buf(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let file = edit_dir.join("MetaBase.xml");
            while !edit_stop.load(Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(&file) else {
                    continue;
                };
                let tmp = edit_dir.join("MetaBase.xml.edit");
                let (from, to) = if text.contains("AppPoolQueueLength=\"1000\"") {
                    ("AppPoolQueueLength=\"1000\"", "AppPoolQueueLength=\"1001\"")
                } else {
                    ("AppPoolQueueLength=\"1001\"", "AppPoolQueueLength=\"1000\"")
                };
                if std::fs::write(&tmp, text.replace(from, to)).is_ok() {
                    let _ = std::fs::rename(&tmp, &file);
                }
                // Long enough for the watcher to judge the edit settled.
                std::thread::sleep(Duration::from_millis(150));
            }
        }));
        let watcher_files = files.clone();
        threads.push(std::thread::spawn(move || {
            for _ in 0..12 {
                let _ = watcher_files.check_for_edit();
            }
            let _ = done_tx.send(());
        }));
        let watched = done_rx.recv_timeout(Duration::from_secs(120));
        stop.store(true, Ordering::Relaxed);
        let wrote = done_rx.recv_timeout(Duration::from_secs(60));
        assert!(
            watched.is_ok() && wrote.is_ok(),
            "a write and the edit watcher blocked each other"
        );
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_refused_edit_in_two_parts_is_kept_whole() {
        let (dir, files) = service();
        let file = dir.path().join("MetaBase.xml");
        let text = std::fs::read_to_string(&file).unwrap();
        let broken = text.replace("AppPoolQueueLength=\"1000\"", "AppPoolQueueLength=\"5\"");
        let writer = write_in_two_parts(&file, &broken);
        let outcome = files.check_for_edit().unwrap();
        writer.join().unwrap();
        let EditOutcome::Rejected { error, saved_as } = outcome else {
            panic!("accepted: {outcome:?}");
        };
        // Refused for what the user wrote, not for half of it, and kept
        // in full.
        assert!(error.contains("AppPoolQueueLength"), "{error}");
        assert_eq!(std::fs::read_to_string(&saved_as).unwrap(), broken);
    }

    #[test]
    fn an_edit_written_in_two_parts_in_place_is_judged_whole() {
        let (dir, files) = service();
        let file = dir.path().join("MetaBase.xml");
        let text = std::fs::read_to_string(&file).unwrap();
        let edited = text.replace(
            "ServerComment=\"Default Web Site\"",
            "ServerComment=\"Two writes\"",
        );
        let writer = write_in_two_parts(&file, &edited);
        let outcome = files.check_for_edit().unwrap();
        writer.join().unwrap();
        assert!(
            matches!(outcome, EditOutcome::Applied { .. }),
            "{outcome:?}"
        );
        let comment = files
            .metabase()
            .snapshot()
            .get(&p("/LM/W3SVC/1"), 1015, GetMode::Own)
            .unwrap()
            .value;
        assert_eq!(comment, Value::String("Two writes".into()));
    }

    #[test]
    fn a_valid_edit_is_applied_with_notifications_and_history() {
        let (dir, files) = service();
        let rx = files.metabase().subscribe();
        assert_eq!(files.check_for_edit().unwrap(), EditOutcome::Unchanged);
        edit(
            dir.path(),
            "ServerComment=\"Default Web Site\"",
            "ServerComment=\"Edited by hand\"",
        );
        assert_eq!(
            files.check_for_edit().unwrap(),
            EditOutcome::Applied { keys_changed: 1 }
        );
        let s = files.metabase().snapshot();
        assert_eq!(
            s.get(&p("/LM/W3SVC/1"), 1015, GetMode::Own).unwrap().value,
            Value::String("Edited by hand".into())
        );
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.origin.as_deref(), Some(ORIGIN_EDIT));
        assert_eq!(batch.changes[0].path.to_string(), "/LM/W3SVC/1");
        assert_eq!(batch.changes[0].ids, vec![1015]);
        // Recorded as a minor version of the same major.
        let history = files.history().unwrap();
        let last = history.last().unwrap();
        assert_eq!((last.major, last.minor), (1, 1));
        let kept = std::fs::read_to_string(&last.metabase_file).unwrap();
        assert!(kept.contains("Edited by hand"));
        // Seen once only; the service's own later writes are not edits.
        assert_eq!(files.check_for_edit().unwrap(), EditOutcome::Unchanged);
        files
            .metabase()
            .write(|t| {
                t.set_text(
                    &p("/LM/W3SVC/1"),
                    "ServerComment",
                    &["by the service".to_string()],
                )
            })
            .unwrap();
        assert_eq!(files.check_for_edit().unwrap(), EditOutcome::Unchanged);
        let on_disk = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
        assert!(on_disk.contains("by the service"));
    }

    #[test]
    fn an_invalid_edit_is_refused_and_kept() {
        let (dir, files) = service();
        let rx = files.metabase().subscribe();
        // AppPoolQueueLength 5 is below its range (10 to 65535).
        edit(
            dir.path(),
            "AppPoolQueueLength=\"1000\"",
            "AppPoolQueueLength=\"5\"",
        );
        let broken = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
        let outcome = files.check_for_edit().unwrap();
        let EditOutcome::Rejected { error, saved_as } = outcome else {
            panic!("accepted: {outcome:?}");
        };
        assert!(error.contains("AppPoolQueueLength"), "{error}");
        assert!(saved_as.ends_with("History/MetaBaseError_0000000000.xml"));
        assert_eq!(std::fs::read_to_string(&saved_as).unwrap(), broken);
        // The running configuration is unchanged and back on disk.
        assert!(rx.try_recv().is_err());
        let s = files.metabase().snapshot();
        assert_eq!(
            s.effective_dword(&p("/LM/W3SVC/AppPools"), 9017),
            Some(1000)
        );
        let on_disk = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
        assert!(on_disk.contains("AppPoolQueueLength=\"1000\""));
        assert_eq!(files.check_for_edit().unwrap(), EditOutcome::Unchanged);
        // Malformed XML likewise.
        std::fs::write(
            dir.path().join("MetaBase.xml"),
            "<configuration><MBProperty>",
        )
        .unwrap();
        assert!(matches!(
            files.check_for_edit().unwrap(),
            EditOutcome::Rejected { .. }
        ));
        assert!(dir
            .path()
            .join("History/MetaBaseError_0000000001.xml")
            .exists());
    }

    #[test]
    fn edits_are_ignored_when_disabled() {
        let (dir, files) = service();
        files
            .metabase()
            .write(|t| t.set_text(&p("/LM"), "EnableEditWhileRunning", &["0".to_string()]))
            .unwrap();
        edit(
            dir.path(),
            "ServerComment=\"Default Web Site\"",
            "ServerComment=\"ignored\"",
        );
        assert_eq!(files.check_for_edit().unwrap(), EditOutcome::Disabled);
    }

    #[test]
    fn the_watcher_thread_applies_edits() {
        let (dir, files) = service();
        let rx = files.metabase().subscribe();
        let _watcher = files.watch_edits(Duration::from_millis(50));
        edit(
            dir.path(),
            "ServerComment=\"Default Web Site\"",
            "ServerComment=\"from the thread\"",
        );
        let batch = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the edit was not applied");
        assert_eq!(batch.origin.as_deref(), Some(ORIGIN_EDIT));
    }
}
