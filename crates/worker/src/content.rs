//! The worker's files: directories the service opened and handed over
//! ([`worker_control::ToWorker::Root`]), and every path beneath them.
//!
//! The configuration names files by their full paths, as IIS does. Each
//! is resolved from the nearest root that holds it with
//! `openat2(RESOLVE_BENEATH)`: the worker's identity needs no right on a
//! root's parents (a site under a 0700 home works), and neither `..` nor a
//! symbolic link leads out of the root. A root whose virtual directory
//! sets AllowSymlinksOutsideRoot ([`Links::Anywhere`]) follows links
//! wherever they lead (the worker's identity must still be able to read
//! there); `..` in a path still never climbs above it. Rights on the root itself and
//! below it are checked as usual, against the worker's identity.
//! Changes (PUT, DELETE, compressed copies) go through a descriptor of the
//! parent directory, resolved the same way, and a single name.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{Error, ErrorKind, Result};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat2, renameat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};
pub use worker_control::Links;

/// One directory handed over, the path the configuration knows it by,
/// and where links beneath it may lead.
#[derive(Debug)]
pub struct HandedRoot {
    pub path: PathBuf,
    pub dir: OwnedFd,
    pub links: Links,
}

/// A root whose links stay beneath it.
impl From<(PathBuf, OwnedFd)> for HandedRoot {
    fn from((path, dir): (PathBuf, OwnedFd)) -> HandedRoot {
        HandedRoot {
            path,
            dir,
            links: Links::Beneath,
        }
    }
}

/// The roots of one configuration generation.
#[derive(Debug, Default)]
pub struct Content {
    /// Longest path first: nested roots (a vdir inside another's
    /// directory) resolve from the nearest.
    roots: Vec<HandedRoot>,
}

fn to_io(e: Errno) -> Error {
    match e {
        // A path that would leave its root is, for the worker, not there.
        Errno::EXDEV => Error::new(
            ErrorKind::NotFound,
            "the path leads out of its content root",
        ),
        e => Error::from(e),
    }
}

fn how(flags: OFlag, links: Links) -> OpenHow {
    // openat2 refuses O_PATH with any flag but these three.
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::O_CLOEXEC
    } else {
        OFlag::O_CLOEXEC | OFlag::O_NOCTTY
    };
    let resolve = match links {
        Links::Beneath => ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        Links::Anywhere => ResolveFlag::RESOLVE_NO_MAGICLINKS,
    };
    OpenHow::new().flags(flags | extra).resolve(resolve)
}

/// Without RESOLVE_BENEATH, `..` would climb from the root: refused here
/// (the listener already removed dot segments from URLs; this is for
/// paths from the configuration).
fn check_no_parent(rest: &Path) -> Result<()> {
    if rest
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(to_io(Errno::EXDEV));
    }
    Ok(())
}

impl Content {
    pub fn new(roots: impl IntoIterator<Item = impl Into<HandedRoot>>) -> Content {
        let mut roots: Vec<HandedRoot> = roots.into_iter().map(Into::into).collect();
        roots.sort_by_key(|r| std::cmp::Reverse(r.path.components().count()));
        Content { roots }
    }

    /// The paths of the roots, nearest-first.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|r| r.path.as_path())
    }

    /// The root holding `path`, and the rest of the path below it. Paths
    /// are compared as bytes, on a `/` boundary (this runs several times
    /// a request; `Path::strip_prefix`'s component walk showed in
    /// profiles); slashes left at the front of the rest are dropped, so
    /// `//` in a path resolves as it would from `/`.
    fn locate<'a>(&'a self, path: &'a Path) -> Result<(BorrowedFd<'a>, &'a Path, Links)> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        for root in &self.roots {
            let prefix = root.path.as_os_str().as_bytes();
            let Some(rest) = bytes.strip_prefix(prefix) else {
                continue;
            };
            if !(rest.is_empty() || rest[0] == b'/' || prefix.ends_with(b"/")) {
                continue;
            }
            let start = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
            let rest = &rest[start..];
            let rest = if rest.is_empty() {
                Path::new(".")
            } else {
                Path::new(OsStr::from_bytes(rest))
            };
            return Ok((root.dir.as_fd(), rest, root.links));
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} is in no directory the service handed this worker",
                path.display()
            ),
        ))
    }

    /// The root path holding `path`, and the rest below it.
    pub fn root_of<'a>(&'a self, path: &'a Path) -> Option<(&'a Path, &'a Path)> {
        let (dir, rest, _) = self.locate(path).ok()?;
        let root = self
            .roots
            .iter()
            .find(|r| r.dir.as_fd().as_raw_fd() == dir.as_raw_fd())?;
        Some((root.path.as_path(), rest))
    }

    /// A path to `dir` through this process's descriptor of its root
    /// (`/proc/self/fd/N/…`), for calls that take only a path (inotify):
    /// it needs no right on the root's parents.
    pub fn proc_path(&self, dir: &Path) -> Option<PathBuf> {
        let (fd, rest, _) = self.locate(dir).ok()?;
        Some(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(rest))
    }

    fn open_with(&self, path: &Path, flags: OFlag) -> Result<OwnedFd> {
        self.open_with_links(path, flags).map(|(fd, _)| fd)
    }

    /// Opens `path` as its root allows, and says how that root treats
    /// links (for what is opened relative to the result).
    fn open_with_links(&self, path: &Path, flags: OFlag) -> Result<(OwnedFd, Links)> {
        let (dir, rest, links) = self.locate(path)?;
        if links == Links::Anywhere {
            check_no_parent(rest)?;
        }
        let fd = openat2(dir, rest, how(flags, links)).map_err(to_io)?;
        Ok((fd, links))
    }

    /// Opens a file (or directory) for reading.
    pub fn open(&self, path: &Path) -> Result<File> {
        self.open_with(path, OFlag::O_RDONLY).map(File::from)
    }

    /// What a path names, following a final symbolic link (which must
    /// stay inside the root too).
    pub fn metadata(&self, path: &Path) -> Result<Metadata> {
        File::from(self.open_with(path, OFlag::O_PATH)?).metadata()
    }

    /// What a path names, not following a final symbolic link.
    pub fn symlink_metadata(&self, path: &Path) -> Result<Metadata> {
        File::from(self.open_with(path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?).metadata()
    }

    /// Reads a whole file.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut self.open(path)?, &mut data)?;
        Ok(data)
    }

    /// A directory's entries (without `.` and `..`), each described by
    /// what it names; entries that cannot be described (a link out of
    /// the root, a file gone meanwhile) are left out.
    pub fn read_dir(&self, path: &Path) -> Result<Vec<(String, Metadata)>> {
        let (dir, links) = self.open_with_links(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let listing = nix::dir::Dir::from_fd(dir.try_clone()?).map_err(Error::from)?;
        let mut entries = Vec::new();
        for entry in listing {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let Ok(fd) = openat2(&dir, name, how(OFlag::O_PATH, links)) else {
                continue;
            };
            if let Ok(meta) = File::from(fd).metadata() {
                entries.push((name.to_string(), meta));
            }
        }
        Ok(entries)
    }

    /// The parent directory of `path`, opened beneath its root, and the
    /// last name.
    fn parent<'a>(&self, path: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "the path has no file name"))?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let dir = self.open_with(parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        Ok((dir, name))
    }

    /// Creates a new, empty file beside `target` (mode 0600) that
    /// [`Content::persist`] later puts in its place.
    pub fn create_temp(&self, target: &Path, prefix: &str) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (dir, _) = self.parent(target)?;
        for _ in 0..16 {
            let name = format!(
                "{prefix}{:x}-{:x}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
                    ^ std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos() as u64)
                        .unwrap_or(0)
                        << 20
            );
            let create = how(
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                Links::Beneath,
            )
            .mode(Mode::from_bits_truncate(0o600));
            match openat2(&dir, name.as_str(), create) {
                Ok(fd) => {
                    return Ok(TempFile {
                        file: File::from(fd),
                        dir,
                        name: Some(name),
                    })
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(to_io(e)),
            }
        }
        Err(Error::new(
            ErrorKind::AlreadyExists,
            "no free temporary name",
        ))
    }

    /// Renames a temporary file over `target`, in the same directory.
    pub fn persist(&self, mut temp: TempFile, target: &Path) -> Result<()> {
        let (dir, name) = self.parent(target)?;
        let from = temp.name.take().unwrap_or_default();
        renameat(&temp.dir, from.as_str(), &dir, name).map_err(|e| {
            let _ = unlinkat(&temp.dir, from.as_str(), UnlinkatFlags::NoRemoveDir);
            to_io(e)
        })
    }

    /// Removes a file (not a directory).
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir).map_err(to_io)
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &Path) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        unlinkat(&dir, name, UnlinkatFlags::RemoveDir).map_err(to_io)
    }
}

/// A file being written beside its final place; removed unless persisted.
#[derive(Debug)]
pub struct TempFile {
    pub file: File,
    dir: OwnedFd,
    name: Option<String>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = unlinkat(&self.dir, name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use worker_control::open_root;

    fn content_of(dir: &Path) -> Content {
        Content::new(vec![(dir.to_path_buf(), open_root(dir).unwrap())])
    }

    #[test]
    fn paths_resolve_beneath_the_nearest_root() {
        let top = tempfile::tempdir().unwrap();
        let www = top.path().join("www");
        let docs = top.path().join("elsewhere/docs");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(www.join("sub/a.txt"), "a").unwrap();
        std::fs::write(docs.join("b.txt"), "bb").unwrap();
        std::fs::write(top.path().join("secret.txt"), "no").unwrap();
        let content = Content::new(vec![
            (www.clone(), open_root(&www).unwrap()),
            (www.join("sub"), open_root(&docs).unwrap()),
        ]);
        assert_eq!(content.read(&www.join("sub/b.txt")).unwrap(), b"bb");
        assert!(content.metadata(&www).unwrap().is_dir());
        assert!(content.metadata(&www.join("sub")).unwrap().is_dir());
        // A root is matched on a `/` boundary only: www2 is not under www.
        std::fs::create_dir_all(top.path().join("www2")).unwrap();
        std::fs::write(top.path().join("www2/c.txt"), "c").unwrap();
        let sibling = PathBuf::from(format!("{}2/c.txt", www.display()));
        assert_eq!(
            content.read(&sibling).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(content.read(&www.join("sub//b.txt")).unwrap(), b"bb");
        // Nothing outside a root, by `..` or by a link.
        let e = content.read(&top.path().join("secret.txt")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = content.read(&www.join("../secret.txt")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        std::os::unix::fs::symlink(top.path().join("secret.txt"), www.join("out")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", www.join("up")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", www.join("in")).unwrap();
        assert_eq!(
            content.read(&www.join("out")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            content.read(&www.join("up")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert!(content
            .symlink_metadata(&www.join("up"))
            .unwrap()
            .is_symlink());
        // A link inside the root is followed... within the root it was
        // found in (sub is another root: www/sub/a.txt is not under it).
        assert_eq!(content.read(&www.join("in")).unwrap(), b"a");
        let names: Vec<String> = content
            .read_dir(&www)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"sub".to_string()) && names.contains(&"in".to_string()));
        assert!(!names.contains(&"out".to_string()), "{names:?}");
    }

    #[test]
    fn a_root_that_allows_it_follows_links_out_but_never_climbs_by_dot_dot() {
        let top = tempfile::tempdir().unwrap();
        let www = top.path().join("www");
        let shared = top.path().join("shared");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("logo.txt"), "logo").unwrap();
        std::fs::write(top.path().join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(&shared, www.join("assets")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", www.join("up")).unwrap();
        let content = Content::new([HandedRoot {
            path: www.clone(),
            dir: open_root(&www).unwrap(),
            links: Links::Anywhere,
        }]);
        assert_eq!(content.read(&www.join("assets/logo.txt")).unwrap(), b"logo");
        // Where the link points is what the administrator allowed.
        assert_eq!(content.read(&www.join("up")).unwrap(), b"no");
        let names: Vec<String> = content
            .read_dir(&www)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"assets".to_string()), "{names:?}");
        // A path that climbs by `..` itself is still refused.
        let e = content.read(&www.join("../secret.txt")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let e = content
            .read(&www.join("assets/../../secret.txt"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn files_are_written_beside_their_place_and_removed() {
        let top = tempfile::tempdir().unwrap();
        let content = content_of(top.path());
        let target = top.path().join("new.txt");
        let mut temp = content.create_temp(&target, ".put-").unwrap();
        temp.file.write_all(b"stored").unwrap();
        content.persist(temp, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"stored");
        // An abandoned temporary file leaves nothing behind.
        drop(content.create_temp(&target, ".put-").unwrap());
        assert_eq!(std::fs::read_dir(top.path()).unwrap().count(), 1);
        content.remove_file(&target).unwrap();
        assert!(!target.exists());
        std::fs::create_dir(top.path().join("d")).unwrap();
        content.remove_dir(&top.path().join("d")).unwrap();
        assert!(!top.path().join("d").exists());
    }
}
