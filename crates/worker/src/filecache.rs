//! The worker's file cache (IIS's user-mode cache of small static files):
//! a small file's bytes are kept after the first read and used again as
//! long as a stat of the file shows the same size, modification time and
//! inode, so a changed file is never served stale. One stat replaces an
//! open, a read and a close.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

/// The cache's size; past it, it starts over.
const BUDGET: usize = 64 << 20;

#[derive(Clone, PartialEq, Eq)]
struct Version {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

impl Version {
    fn of(meta: &std::fs::Metadata) -> Version {
        Version {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

#[derive(Default)]
pub struct FileCache {
    inner: Mutex<Inner>,
    /// Lookups answered from the cache, and those that were not (W3SVC_W3WP's
    /// File Cache Hits and Misses).
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Inner {
    files: HashMap<PathBuf, (Version, Bytes)>,
    size: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FileCache {
    /// The bytes of `path` if they are cached for the version `meta`
    /// describes.
    pub fn get(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Bytes> {
        let inner = lock(&self.inner);
        let found = inner
            .files
            .get(path)
            .filter(|(version, _)| *version == Version::of(meta))
            .map(|(_, data)| data.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        found
    }

    /// Hits and misses since the worker started.
    pub fn counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    pub fn put(&self, path: &Path, meta: &std::fs::Metadata, data: Bytes) {
        let mut inner = lock(&self.inner);
        if inner.size + data.len() > BUDGET {
            inner.files.clear();
            inner.size = 0;
        }
        inner.size += data.len();
        if let Some((_, old)) = inner
            .files
            .insert(path.to_path_buf(), (Version::of(meta), data))
        {
            inner.size -= old.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_not_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "one").unwrap();
        let cache = FileCache::default();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(cache.get(&path, &meta).is_none());
        cache.put(&path, &meta, Bytes::from_static(b"one"));
        assert_eq!(
            cache
                .get(&path, &std::fs::metadata(&path).unwrap())
                .unwrap(),
            "one"
        );
        std::fs::write(&path, "two!").unwrap();
        assert!(
            cache
                .get(&path, &std::fs::metadata(&path).unwrap())
                .is_none(),
            "size and time changed"
        );
        // Replaced by another file of the same size: another inode.
        let other = dir.path().join("b.txt");
        std::fs::write(&other, "one").unwrap();
        cache.put(
            &path,
            &std::fs::metadata(&path).unwrap(),
            Bytes::from_static(b"two!"),
        );
        std::fs::rename(&other, &path).unwrap();
        assert!(cache
            .get(&path, &std::fs::metadata(&path).unwrap())
            .is_none());
    }
}
