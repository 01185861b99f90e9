//! The mount namespace the helper's programs run in, when the service
//! runs as root: content the pool's identity may read but not reach by
//! its path (it lies under a directory the identity may not search, such
//! as a 0700 home) is made reachable without changing anything on disk.
//!
//! The helper unshares its mount namespace once; for each directory to
//! reach, it walks the path, and where the identity may not search a
//! directory it covers that directory with an empty tmpfs (mode 0755) and
//! binds into it only the entry on the way to the content. The entry
//! keeps its own permissions, so a second closed directory further down
//! is covered the same way. What else the covered directory holds stays
//! hidden from the programs.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{open, openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

pub struct View {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// Covered directories, with the directory they cover (opened before
    /// it was covered, to reach beneath it).
    covered: HashMap<PathBuf, OwnedFd>,
}

/// What stops the identity on the way to a directory.
enum Blocker {
    /// It may not search this directory.
    Closed(PathBuf),
    /// This entry is not there (it may be under a covered directory).
    Missing(PathBuf, OsString),
}

impl View {
    pub fn new(uid: Uid, gid: Gid, groups: Vec<Gid>) -> Result<View, String> {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
        // Nothing done here reaches the rest of the system.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| format!("making mounts private: {e}"))?;
        Ok(View {
            uid,
            gid,
            groups,
            covered: HashMap::new(),
        })
    }

    /// Makes `dir` reachable by the identity (if it may enter `dir`
    /// itself: that stays the directory's own permission).
    pub fn reach(&mut self, dir: &Path) -> Result<(), String> {
        let dir = normal(dir).ok_or("not an absolute path")?;
        // Each step opens one directory on the way; a path has few.
        for _ in 0..64 {
            match self.blocker(&dir) {
                None => return Ok(()),
                Some(Blocker::Closed(closed)) => {
                    let next = dir
                        .strip_prefix(&closed)
                        .ok()
                        .and_then(|rest| rest.components().next())
                        .map(|c| c.as_os_str().to_os_string())
                        .ok_or("the directory itself is closed to the identity")?;
                    self.cover(&closed)?;
                    self.expose(&closed, &next)?;
                }
                Some(Blocker::Missing(parent, name)) => {
                    if !self.covered.contains_key(&parent) {
                        return Err(format!("{} does not exist", parent.join(name).display()));
                    }
                    self.expose(&parent, &name)?;
                }
            }
        }
        Err("too many closed directories on the way".into())
    }

    fn blocker(&self, dir: &Path) -> Option<Blocker> {
        let mut at = PathBuf::from("/");
        for part in dir.components().skip(1) {
            let Component::Normal(name) = part else {
                continue;
            };
            let meta = match std::fs::metadata(&at) {
                Ok(m) => m,
                Err(_) => return None,
            };
            if !self.may_search(&meta) {
                return Some(Blocker::Closed(at));
            }
            let next = at.join(name);
            if std::fs::symlink_metadata(&next).is_err() {
                return Some(Blocker::Missing(at, name.to_os_string()));
            }
            at = next;
        }
        None
    }

    fn may_search(&self, meta: &std::fs::Metadata) -> bool {
        if self.uid.is_root() {
            return true;
        }
        let mode = meta.mode();
        if meta.uid() == self.uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == self.gid.as_raw()
            || self.groups.iter().any(|g| g.as_raw() == meta.gid())
        {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }

    /// Covers a closed directory with an empty tmpfs.
    fn cover(&mut self, dir: &Path) -> Result<(), String> {
        let original = open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("opening {}: {e}", dir.display()))?;
        mount(
            Some("inetsrv"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755,size=1m"),
        )
        .map_err(|e| format!("covering {}: {e}", dir.display()))?;
        self.covered.insert(dir.to_path_buf(), original);
        Ok(())
    }

    /// Binds one entry of a covered directory into its cover.
    fn expose(&mut self, dir: &Path, name: &std::ffi::OsStr) -> Result<(), String> {
        let original = self
            .covered
            .get(dir)
            .ok_or_else(|| format!("{} is not covered", dir.display()))?;
        let target = dir.join(name);
        let source = openat(
            original,
            name,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("opening {}: {e}", target.display()))?;
        let is_dir = std::fs::metadata(format!("/proc/self/fd/{}", source.as_raw_fd()))
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        }
        .map_err(|e| format!("making {} in the cover: {e}", target.display()))?;
        mount(
            Some(format!("/proc/self/fd/{}", source.as_raw_fd()).as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("binding {}: {e}", target.display()))?;
        Ok(())
    }
}

/// An absolute path with `.` and `..` resolved by name.
fn normal(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Some(out)
}
