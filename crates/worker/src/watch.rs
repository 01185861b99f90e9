//! The listener keeps responses the worker marks cacheable until they are
//! flushed. This remembers which files each cached URL came from and
//! flushes the URL when one of them changes (the role of the file change
//! notifications IIS registers for its cached files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::content::Content;

/// What identifies a file's version: size, modification time, inode.
type Stamp = Option<(u64, SystemTime, u64)>;

fn stamp(content: &Content, path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = content.metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

/// URLs the listener may hold, with the files behind them.
#[derive(Default)]
pub struct CacheWatch {
    entries: Mutex<HashMap<String, Vec<(PathBuf, Stamp)>>>,
}

/// The most URLs watched; beyond it nothing more is registered (and the
/// responses are still correct: only the polling is bounded).
const MAX_WATCHED: usize = 50_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The flush prefix for a URL path; characters a prefix may not hold
/// make it the nearest directory above them.
pub fn flush_prefix(scheme: &str, port: u16, path: &str) -> Option<String> {
    let mut clean = path;
    if let Some(bad) = path.find(['?', '#', '%', '\\']) {
        clean = &path[..path[..bad].rfind('/')? + 1];
    }
    if clean.split('/').any(|s| s == "." || s == "..") {
        return None;
    }
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://+:{port}{clean}"))
}

impl CacheWatch {
    /// Remembers that `path` of the URL was cached from these files.
    pub fn register(
        &self,
        content: &Content,
        scheme: &str,
        port: u16,
        path: &str,
        files: Vec<PathBuf>,
    ) {
        let Some(prefix) = flush_prefix(scheme, port, path) else {
            return;
        };
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_WATCHED && !entries.contains_key(&prefix) {
            return;
        }
        let stamped = files.into_iter().map(|f| {
            let s = stamp(content, &f);
            (f, s)
        });
        entries.insert(prefix, stamped.collect());
    }

    /// The prefixes whose files changed; they are forgotten.
    pub fn changed(&self, content: &Content) -> Vec<String> {
        let snapshot: Vec<(String, Vec<(PathBuf, Stamp)>)> = lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let changed: Vec<String> = snapshot
            .into_iter()
            .filter(|(_, files)| files.iter().any(|(f, s)| stamp(content, f) != *s))
            .map(|(k, _)| k)
            .collect();
        let mut entries = lock(&self.entries);
        for k in &changed {
            entries.remove(k);
        }
        changed
    }

    /// Every prefix, forgotten (the configuration changed).
    pub fn take_all(&self) -> Vec<String> {
        lock(&self.entries).drain().map(|(k, _)| k).collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            flush_prefix("http", 80, "/a/b.htm").as_deref(),
            Some("http://+:80/a/b.htm")
        );
        assert_eq!(
            flush_prefix("http", 80, "/a/100%.htm").as_deref(),
            Some("http://+:80/a/")
        );
        assert_eq!(
            flush_prefix("https", 443, "/x").as_deref(),
            Some("https://+:443/x")
        );
    }

    #[test]
    fn changes_are_noticed_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.htm");
        std::fs::write(&file, "one").unwrap();
        let c = Content::new(vec![(
            dir.path().to_path_buf(),
            worker_control::open_root(dir.path()).unwrap(),
        )]);
        let w = CacheWatch::default();
        w.register(&c, "http", 80, "/a.htm", vec![file.clone()]);
        assert!(w.changed(&c).is_empty());
        std::fs::write(&file, "three").unwrap();
        assert_eq!(w.changed(&c), vec!["http://+:80/a.htm".to_string()]);
        assert!(w.changed(&c).is_empty() && w.is_empty());
        w.register(&c, "http", 80, "/a.htm", vec![file.clone()]);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(w.changed(&c).len(), 1);
    }
}
