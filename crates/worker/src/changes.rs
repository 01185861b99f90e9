//! File metadata validated by change notification, as IIS validates its
//! file cache: what a path names is looked up once and then trusted until
//! inotify reports a change in the directories on its way, instead of a
//! `stat` (here `openat2` + `fstat` + `close`) on every request.
//!
//! Each lookup first watches every directory from the content root down
//! to the path's parent (through `/proc/self/fd/N/…`, so the worker's
//! identity needs no way through the root's parents), then looks; an event
//! for a name in a watched directory forgets that name and everything
//! below it (a file written, a directory renamed, a link switched).
//! "Not found" is remembered the same way, so default documents and 404s
//! cost nothing either. A lost event (queue overflow) forgets everything.
//! Each configuration generation has its own [`MetaCache`]; the watches
//! are dropped when the configuration changes.

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::io::{Error, ErrorKind, Result};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};

use crate::content::Content;

/// What a path was found to be: its metadata, or not there.
#[derive(Clone, Debug)]
enum Found {
    Meta(Box<Metadata>),
    Missing,
}

/// One generation's remembered lookups.
#[derive(Debug, Default)]
pub struct MetaCache {
    entries: Mutex<BTreeMap<PathBuf, Found>>,
}

/// The most paths remembered; beyond it the memory starts over.
const MAX_ENTRIES: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MetaCache {
    fn get(&self, path: &Path) -> Option<Found> {
        lock(&self.entries).get(path).cloned()
    }

    fn put(&self, path: &Path, found: Found) {
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(path.to_path_buf(), found);
    }

    /// Forgets `path` and everything below it.
    /// Forgets a path the worker itself changed (PUT, DELETE), at once:
    /// inotify says so too, but later than the next request may ask.
    pub fn forget(&self, path: &Path) {
        self.forget_under(path);
    }

    fn forget_under(&self, path: &Path) {
        let mut entries = lock(&self.entries);
        let doomed: Vec<PathBuf> = entries
            .range(path.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(path))
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            entries.remove(&p);
        }
    }

    fn clear(&self) {
        lock(&self.entries).clear();
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The worker's inotify instance and the directories it watches.
pub struct Changes {
    inotify: Option<Inotify>,
    watched: Mutex<Watched>,
    disabled: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Watched {
    by_dir: HashMap<PathBuf, WatchDescriptor>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

/// The most directories watched; past it, lookups go to the disk each
/// time (correct, only slower).
const MAX_WATCHES: usize = 8192;

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl Default for Changes {
    fn default() -> Changes {
        Changes::new()
    }
}

impl Changes {
    /// An instance; without inotify (none left), every lookup goes to
    /// the disk.
    pub fn new() -> Changes {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| tracing::warn!(error = %e, "no inotify: file metadata is read on every request"))
            .ok();
        Changes {
            inotify,
            watched: Mutex::new(Watched::default()),
            disabled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The descriptor events arrive on.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inotify.as_ref().map(|i| i.as_fd())
    }

    /// Blocks until events are waiting.
    pub fn wait(&self) -> Result<()> {
        let Some(inotify) = &self.inotify else {
            return Err(Error::other("no inotify"));
        };
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::from(e)),
            }
        }
    }

    /// Stops remembering: every lookup goes to the disk from now on (the
    /// events can no longer be read).
    pub fn disable(&self) {
        self.disabled
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// What `path` names, from `cache` when a lookup since the last change
    /// said so, else from the disk (and then remembered).
    pub fn metadata(&self, cache: &MetaCache, content: &Content, path: &Path) -> Result<Metadata> {
        if self.disabled.load(std::sync::atomic::Ordering::Acquire) {
            return content.metadata(path);
        }
        match cache.get(path) {
            Some(Found::Meta(meta)) => return Ok(*meta),
            Some(Found::Missing) => return Err(Error::from(ErrorKind::NotFound)),
            None => {}
        }
        // Watched before it is looked at: a change in between is seen.
        let watched = self.watch_way_to(content, path);
        let result = content.metadata(path);
        if watched {
            match &result {
                Ok(meta) => cache.put(path, Found::Meta(Box::new(meta.clone()))),
                Err(e) if e.kind() == ErrorKind::NotFound => cache.put(path, Found::Missing),
                Err(_) => {}
            }
        }
        result
    }

    /// Watches every directory from `path`'s root down to its parent;
    /// false when one could not be watched (then nothing is remembered).
    fn watch_way_to(&self, content: &Content, path: &Path) -> bool {
        let Some(inotify) = &self.inotify else {
            return false;
        };
        let Some((root, _)) = content.root_of(path) else {
            return false;
        };
        let Some(parent) = path.parent() else {
            return false;
        };
        let mut watched = lock(&self.watched);
        let mut dir = root.to_path_buf();
        let rest: Vec<_> = parent
            .strip_prefix(root)
            .map(|r| r.components().collect())
            .unwrap_or_default();
        for step in std::iter::once(None).chain(rest.into_iter().map(Some)) {
            if let Some(step) = step {
                dir.push(step);
            }
            if watched.by_dir.contains_key(&dir) {
                continue;
            }
            if watched.by_dir.len() >= MAX_WATCHES {
                return false;
            }
            let Some(through) = content.proc_path(&dir) else {
                return false;
            };
            match inotify.add_watch(&through, mask()) {
                Ok(wd) => {
                    watched.by_dir.insert(dir.clone(), wd);
                    watched.by_wd.insert(wd, dir.clone());
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads the events waiting and forgets what they touch; `Err` with
    /// WouldBlock when there were none.
    pub fn process(&self, cache: &MetaCache) -> Result<usize> {
        let Some(inotify) = &self.inotify else {
            return Ok(0);
        };
        let events = inotify.read_events().map_err(Error::from)?;
        let count = events.len();
        let mut watched = lock(&self.watched);
        for event in events {
            self.apply(&mut watched, cache, event);
        }
        Ok(count)
    }

    fn apply(&self, watched: &mut Watched, cache: &MetaCache, event: InotifyEvent) {
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            cache.clear();
            return;
        }
        let Some(dir) = watched.by_wd.get(&event.wd).cloned() else {
            return;
        };
        match &event.name {
            Some(name) => cache.forget_under(&dir.join(name)),
            None => cache.forget_under(&dir),
        }
        if event.mask.intersects(
            AddWatchFlags::IN_IGNORED | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF,
        ) {
            // The directory went: whatever was looked up through it goes
            // too, and its watch (and those below) are dropped.
            let below: Vec<PathBuf> = watched
                .by_dir
                .keys()
                .filter(|d| d.starts_with(&dir))
                .cloned()
                .collect();
            for d in below {
                if let Some(wd) = watched.by_dir.remove(&d) {
                    watched.by_wd.remove(&wd);
                    if let Some(inotify) = &self.inotify {
                        let _ = inotify.rm_watch(wd);
                    }
                }
            }
        }
    }

    /// Drops every watch (the configuration changed: its roots may be
    /// other directories under the same paths).
    pub fn reset(&self) {
        let mut watched = lock(&self.watched);
        if let Some(inotify) = &self.inotify {
            for wd in watched.by_wd.keys() {
                let _ = inotify.rm_watch(*wd);
            }
        }
        *watched = Watched::default();
    }

    pub fn watches(&self) -> usize {
        lock(&self.watched).by_dir.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Content, Changes, MetaCache) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f.txt"), "one").unwrap();
        let content = Content::new(vec![(
            dir.path().to_path_buf(),
            worker_control::open_root(dir.path()).unwrap(),
        )]);
        (dir, content, Changes::new(), MetaCache::default())
    }

    /// Waits (briefly) for the events of what the test just did.
    fn settle(changes: &Changes, cache: &MetaCache) {
        for _ in 0..200 {
            if changes.process(cache).is_ok_and(|n| n > 0) {
                // Let any others of the same change arrive too.
                std::thread::sleep(std::time::Duration::from_millis(5));
                let _ = changes.process(cache);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_lookup_is_trusted_until_its_file_changes() {
        let (dir, content, changes, cache) = setup();
        let f = dir.path().join("a/b/f.txt");
        assert_eq!(changes.metadata(&cache, &content, &f).unwrap().len(), 3);
        assert_eq!(changes.watches(), 3, "the root, a and a/b");
        assert_eq!(cache.len(), 1);
        // Remembered: a second lookup touches no disk (nothing changes).
        assert_eq!(changes.metadata(&cache, &content, &f).unwrap().len(), 3);
        std::fs::write(&f, "three").unwrap();
        settle(&changes, &cache);
        assert!(cache.is_empty());
        assert_eq!(changes.metadata(&cache, &content, &f).unwrap().len(), 5);
    }

    #[test]
    fn missing_files_and_renamed_directories() {
        let (dir, content, changes, cache) = setup();
        let later = dir.path().join("a/later.htm");
        let err = changes.metadata(&cache, &content, &later).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(cache.len(), 1, "not found is remembered");
        std::fs::write(&later, "here").unwrap();
        settle(&changes, &cache);
        assert!(changes.metadata(&cache, &content, &later).is_ok());
        // A directory on the way renamed: what was under it is forgotten.
        let f = dir.path().join("a/b/f.txt");
        assert!(changes.metadata(&cache, &content, &f).is_ok());
        std::fs::rename(dir.path().join("a/b"), dir.path().join("a/c")).unwrap();
        settle(&changes, &cache);
        let err = changes.metadata(&cache, &content, &f).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        // Reset drops every watch.
        changes.reset();
        assert_eq!(changes.watches(), 0);
    }
}
