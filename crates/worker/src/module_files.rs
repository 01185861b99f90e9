//! The ISAPI modules this worker may load, as the service handed them
//! over ([`worker_control::ToWorker::Module`]): files opened with the
//! service's rights, so a module in a directory the pool's identity may
//! not enter (an administrator's 0700 home) loads all the same, as a
//! content root there is served.
//!
//! A module is loaded from `/proc/self/fd/N`. Descriptors are kept while
//! the worker lives, one per file (device and inode), so a number once
//! used to load a module never names another file: the dynamic loader
//! recognises a loaded module by that name. A file the identity may not
//! read even through its descriptor (mode 0700, another owner) is copied
//! once into an anonymous memory file the worker owns.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::content::Content;

#[derive(Default)]
pub struct ModuleFiles {
    inner: Mutex<Inner>,
}

/// A file by its device and inode.
type FileId = (u64, u64);

#[derive(Default)]
struct Inner {
    /// Each module path's file now.
    by_path: HashMap<PathBuf, FileId>,
    /// Every descriptor held.
    held: HashMap<FileId, OwnedFd>,
    /// What each held file is loaded from, once known.
    load_as: HashMap<FileId, PathBuf>,
    /// Copies of modules the identity could not read.
    copies: Vec<OwnedFd>,
}

fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl ModuleFiles {
    /// Takes a module the service opened for `path`.
    pub fn hand(&self, path: PathBuf, fd: OwnedFd) {
        let Ok(stat) = nix::sys::stat::fstat(&fd) else {
            return;
        };
        let id = (stat.st_dev, stat.st_ino);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.held.entry(id).or_insert(fd);
        inner.by_path.insert(path, id);
    }

    /// What to load the module `path` from: its handed descriptor, or,
    /// for a module reached by its URL, the file opened beneath its
    /// content root; the path itself when neither has it.
    pub fn load_as(&self, path: &Path, content: &Content) -> PathBuf {
        let known = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.by_path.contains_key(path)
        };
        if !known {
            match content.open(path) {
                Ok(file) => self.hand(path.to_path_buf(), OwnedFd::from(file)),
                Err(_) => return path.to_path_buf(),
            }
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&id) = inner.by_path.get(path) else {
            return path.to_path_buf();
        };
        if let Some(found) = inner.load_as.get(&id) {
            return found.clone();
        }
        let Some(fd) = inner.held.get(&id) else {
            return path.to_path_buf();
        };
        let direct = proc_path(fd);
        let chosen = if File::open(&direct).is_ok() {
            direct
        } else {
            match copy_to_memory(fd, path) {
                Ok(copy) => {
                    let at = proc_path(&copy);
                    inner.copies.push(copy);
                    at
                }
                Err(e) => {
                    tracing::warn!(module = %path.display(), error = %e, "module not copied for loading");
                    direct
                }
            }
        };
        inner.load_as.insert(id, chosen.clone());
        chosen
    }
}

/// The module behind `fd` copied into a memory file (memfd) of this
/// process, for a file its identity may not read by itself.
fn copy_to_memory(fd: &OwnedFd, path: &Path) -> std::io::Result<OwnedFd> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module".into());
    let name = std::ffi::CString::new(name).unwrap_or_default();
    let copy =
        nix::sys::memfd::memfd_create(name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
    // Read by offset through a duplicate: the held descriptor's own
    // offset is left alone.
    let source = File::from(fd.try_clone()?);
    let target = File::from(copy);
    let mut offset = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = source.read_at(&mut buffer, offset)?;
        if n == 0 {
            break;
        }
        target.write_all_at(&buffer[..n], offset)?;
        offset += n as u64;
    }
    Ok(OwnedFd::from(target))
}
