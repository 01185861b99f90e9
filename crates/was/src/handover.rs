//! What a worker is handed at start and after every change (the service's
//! side of [`worker_control`]): the part of the metabase its pool serves,
//! without secrets; the directories it serves from, opened here with the
//! service's rights; the directory for its compressed copies, made here
//! and given to its identity; and the identity it becomes.
//!
//! It also finds, before a client does, the content a pool's identity
//! cannot read.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use metabase::image::Take;
use metabase::{ids, MbPath, Snapshot, Value};
use worker_control::{Identity, Links, ToWorker, WorkerConfig};

use crate::model::Model;
use crate::process::Account;

/// HcCompressionDirectory.
const COMPRESSION_DIRECTORY: u32 = 2210;

/// The sites with an application in `pool` (by lower-case name).
pub fn sites_of_pool(model: &Model, pool: &str) -> BTreeSet<u32> {
    model
        .sites
        .values()
        .filter(|s| s.apps.iter().any(|a| a.pool.eq_ignore_ascii_case(pool)))
        .map(|s| s.id)
        .collect()
}

/// The keys a worker of these sites reads: `/LM` and `/LM/W3SVC` for
/// what they pass down, the MIME map, the service's own subkeys
/// (compression filters, …) but not the application pools, and the sites.
pub fn select_for(sites: &BTreeSet<u32>) -> impl Fn(&MbPath) -> Take + '_ {
    move |path: &MbPath| {
        let parts = path.parts();
        let is = |i: usize, name: &str| parts[i].eq_ignore_ascii_case(name);
        match parts.len() {
            1 if is(0, "LM") => Take::Key,
            2 if is(1, "W3SVC") => Take::Key,
            2 if is(1, "MimeMap") => Take::Subtree,
            3 if is(1, "W3SVC") => match parts[2].parse::<u32>() {
                Ok(id) if sites.contains(&id) => Take::Subtree,
                Ok(_) => Take::Skip,
                Err(_) if is(2, "AppPools") => Take::Skip,
                Err(_) => Take::Subtree,
            },
            _ => Take::Skip,
        }
    }
}

/// The directories the sites serve from: every absolute Path set in them,
/// and the folders of HttpErrors files set in them or above them; each
/// with where links beneath it may lead. A directory is
/// [`Links::Anywhere`] only when every key that serves it as its Path has
/// AllowSymlinksOutsideRoot in force (an error-page folder alone never).
pub fn content_dirs(snapshot: &Snapshot, sites: &BTreeSet<u32>) -> BTreeMap<PathBuf, Links> {
    // `None`: no Path names it (yet).
    let mut dirs: BTreeMap<PathBuf, Option<bool>> = BTreeMap::new();
    let mut note = |at: &MbPath, key: &metabase::Key| {
        if let Some(Value::String(p)) | Some(Value::ExpandSz(p)) =
            key.property(ids::PATH).map(|p| &p.value)
        {
            if p.starts_with('/') {
                let allows =
                    snapshot.effective_dword(at, ids::ALLOW_SYMLINKS_OUTSIDE_ROOT) == Some(1);
                // `/srv/www/` and `/srv/www` are one directory.
                let dir: PathBuf = Path::new(p).components().collect();
                let entry = dirs.entry(dir).or_insert(None);
                *entry = Some(entry.unwrap_or(true) && allows);
            }
        }
        if let Some(Value::MultiSz(errors)) = key.property(ids::HTTP_ERRORS).map(|p| &p.value) {
            for entry in errors {
                let mut parts = entry.splitn(4, ',').map(str::trim);
                let kind = parts.nth(2).unwrap_or("");
                if let (true, Some(file)) = (kind.eq_ignore_ascii_case("FILE"), parts.next()) {
                    if let Some(dir) = Path::new(file).parent().filter(|d| d.is_absolute()) {
                        dirs.entry(dir.components().collect()).or_insert(None);
                    }
                }
            }
        }
    };
    visit_keys(snapshot, sites, &mut note);
    dirs.into_iter()
        .map(|(dir, allows)| {
            let links = if allows == Some(true) {
                Links::Anywhere
            } else {
                Links::Beneath
            };
            (dir, links)
        })
        .collect()
}

/// Calls `visit` with every key a worker of `sites` reads settings from:
/// `/LM`, `/LM/W3SVC` and each site's whole subtree.
fn visit_keys(
    snapshot: &Snapshot,
    sites: &BTreeSet<u32>,
    visit: &mut dyn FnMut(&MbPath, &metabase::Key),
) {
    for above in ["/LM", "/LM/W3SVC"] {
        let Ok(at) = MbPath::parse(above) else {
            continue;
        };
        if let Some(key) = snapshot.find(&at) {
            visit(&at, key);
        }
    }
    for id in sites {
        let Some((at, site)) = MbPath::parse(&format!("/LM/W3SVC/{id}"))
            .ok()
            .and_then(|at| snapshot.find(&at).map(|key| (at, key)))
        else {
            continue;
        };
        let mut stack = vec![(at, site)];
        while let Some((at, key)) = stack.pop() {
            visit(&at, key);
            stack.extend(
                key.children()
                    .filter_map(|child| Some((at.join(child.name()).ok()?, child))),
            );
        }
    }
}

/// The ISAPI modules the sites may load: every absolute executable of a
/// ScriptMaps entry in the keys they read, and the FilterPath of the
/// global filters and theirs. They are opened here and handed over like
/// the content roots, so a module in a directory only the administrator
/// may enter (a 0700 home) still loads in a worker of another identity.
pub fn module_files(snapshot: &Snapshot, sites: &BTreeSet<u32>) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let mut note = |_: &MbPath, key: &metabase::Key| {
        if let Some(Value::MultiSz(maps)) = key.property(ids::SCRIPT_MAPS).map(|p| &p.value) {
            for entry in maps {
                let module = entry.split(',').nth(1).map(str::trim).unwrap_or("");
                if module.starts_with('/') {
                    files.insert(PathBuf::from(module));
                }
            }
        }
    };
    visit_keys(snapshot, sites, &mut note);
    let filter_keys = std::iter::once("/LM/W3SVC/Filters".to_string())
        .chain(sites.iter().map(|id| format!("/LM/W3SVC/{id}/Filters")));
    for at in filter_keys {
        let Some(key) = MbPath::parse(&at).ok().and_then(|at| snapshot.find(&at)) else {
            continue;
        };
        for filter in key.children() {
            if let Some(Value::String(p) | Value::ExpandSz(p)) =
                filter.property(ids::FILTER_PATH).map(|p| &p.value)
            {
                if p.starts_with('/') {
                    files.insert(PathBuf::from(p));
                }
            }
        }
    }
    files
}

/// A pool name as a directory name: characters other than letters,
/// digits, `-`, `_` and `.` become `_`.
pub fn safe_dir_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("_{clean}")
    } else {
        clean
    }
}

/// Where a pool's compressed copies go: HcCompressionDirectory (when it
/// is an absolute path) or the state directory's temp folder, then one
/// folder per pool, since pools may run as different users.
pub fn compression_dir(snapshot: &Snapshot, state_dir: &Path, pool: &str) -> PathBuf {
    let configured = MbPath::parse("/LM/W3SVC/Filters/Compression/Parameters")
        .ok()
        .and_then(|p| snapshot.effective(&p, COMPRESSION_DIRECTORY))
        .and_then(|v| match v {
            Value::String(s) | Value::ExpandSz(s) if s.starts_with('/') => Some(PathBuf::from(s)),
            _ => None,
        });
    configured
        .unwrap_or_else(|| state_dir.join("temp/IIS Temporary Compressed Files"))
        .join(safe_dir_name(pool))
}

/// Makes the compression folder and gives it to the pool's identity.
pub fn prepare_compression_dir(dir: &Path, account: Option<&Account>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Some(a) = account {
        nix::unistd::chown(
            dir,
            Some(nix::unistd::Uid::from_raw(a.uid)),
            Some(nix::unistd::Gid::from_raw(a.gid)),
        )?;
    }
    Ok(())
}

/// Whether `account` may list and enter `dir` by its mode bits (the
/// parents do not matter: the worker gets the directory opened). `None`
/// means the service's own user, which opened it.
pub fn readable_by(dir: &Path, account: Option<&Account>) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let Some(a) = account else { return Ok(()) };
    let mode = meta.mode();
    let bits = if a.uid == 0 {
        0o5
    } else if meta.uid() == a.uid {
        (mode >> 6) & 0o7
    } else if meta.gid() == a.gid || in_group(a, meta.gid()) {
        (mode >> 3) & 0o7
    } else {
        mode & 0o7
    };
    if bits & 0o5 == 0o5 {
        Ok(())
    } else {
        Err(format!(
            "{} (mode {:o}, owner uid {} gid {}) cannot be read by user {}, the identity of its application pool; make it readable (for example chmod o+rx, or chgrp {} and chmod g+rx) or choose another identity",
            dir.display(),
            mode & 0o7777,
            meta.uid(),
            meta.gid(),
            a.name,
            a.gid,
        ))
    }
}

fn in_group(account: &Account, gid: u32) -> bool {
    std::ffi::CString::new(account.name.as_str())
        .ok()
        .and_then(|name| {
            nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(account.gid)).ok()
        })
        .is_some_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

/// Everything one worker is sent, ready to go.
pub struct Handover {
    pub config: WorkerConfig,
    pub roots: Vec<(PathBuf, Links)>,
    /// The ISAPI modules it may load ([`module_files`]).
    pub modules: BTreeSet<PathBuf>,
}

impl Handover {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        snapshot: &Snapshot,
        model: &Model,
        state_dir: &Path,
        pool: &str,
        listener_socket: &Path,
        listener_caches: bool,
        restart_requests: u32,
        account: Option<&Account>,
    ) -> Handover {
        let sites = sites_of_pool(model, pool);
        let select = select_for(&sites);
        let metabase = snapshot.image(&select);
        let compression = compression_dir(snapshot, state_dir, pool);
        let mut roots: Vec<(PathBuf, Links)> = content_dirs(snapshot, &sites).into_iter().collect();
        let compression_dir = match prepare_compression_dir(&compression, account) {
            Ok(()) => {
                roots.push((compression.clone(), Links::Beneath));
                Some(compression)
            }
            Err(e) => {
                tracing::warn!(pool, dir = %compression.display(), error = %e, "no directory for compressed files; files are sent uncompressed");
                None
            }
        };
        Handover {
            config: WorkerConfig {
                pool: pool.to_string(),
                listener_socket: listener_socket.to_path_buf(),
                restart_requests: u64::from(restart_requests),
                identity: account.map(|a| Identity {
                    name: a.name.clone(),
                    uid: a.uid,
                    gid: a.gid,
                }),
                metabase,
                change_number: snapshot.change_number(),
                compression_dir,
                listener_caches,
                iis5_isolation: model.iis5_isolation,
            },
            roots,
            modules: module_files(snapshot, &sites),
        }
    }

    /// Sends it: each root and module that opens, with its descriptor,
    /// then the configuration. Roots that do not open are left out (requests for
    /// them get 404, as for a missing directory); they are logged. Returns
    /// what each root path named when it was opened, for
    /// [`roots_moved`].
    pub fn send(&self, to: &worker_control::Sender<ToWorker>, seq: u64) -> HandedRoots {
        let mut handed = Vec::with_capacity(self.roots.len() + self.modules.len());
        let mut hand = |path: &Path,
                        opened: std::io::Result<std::os::fd::OwnedFd>,
                        message: ToWorker| match opened {
            Ok(fd) => {
                let file = std::fs::File::from(fd);
                let id = file.metadata().ok().map(|m| (m.dev(), m.ino()));
                handed.push((path.to_path_buf(), id));
                to.send_with_fd(&message, file.into());
            }
            Err(e) => {
                handed.push((path.to_path_buf(), None));
                tracing::debug!(path = %path.display(), error = %e, "not handed over")
            }
        };
        for (path, links) in &self.roots {
            let message = ToWorker::Root {
                path: path.clone(),
                links: *links,
            };
            hand(path, worker_control::open_root(path), message);
        }
        for path in &self.modules {
            let message = ToWorker::Module { path: path.clone() };
            hand(path, worker_control::open_module(path), message);
        }
        to.send(&ToWorker::Configure {
            seq,
            config: Box::new(self.config.clone()),
        });
        handed
    }
}

/// Each root (or module) path handed to a worker and the directory or
/// file (device, inode) it named then; `None` where it did not open.
pub type HandedRoots = Vec<(PathBuf, Option<(u64, u64)>)>;

/// The directory a path names now, by device and inode.
fn identity_of(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether a root path names another directory than the one handed over:
/// a symbolic link switched to a new release, a directory renamed into
/// place, one created since (or a module path another file). A worker holds the directory it was handed,
/// so it must be handed the new one.
pub fn roots_moved(handed: &HandedRoots) -> bool {
    handed.iter().any(|(path, id)| identity_of(path) != *id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metabase::Metabase;

    fn snapshot() -> std::sync::Arc<Snapshot> {
        metabase().snapshot()
    }

    fn metabase() -> Metabase {
        let mb = Metabase::empty();
        let p = |s: &str| MbPath::parse(s).unwrap();
        mb.write(|t| {
            t.create_key(&p("/LM/W3SVC"), "IIsWebService")?;
            t.create_key(&p("/LM/W3SVC/1"), "IIsWebServer")?;
            t.create_key(&p("/LM/W3SVC/1/ROOT"), "IIsWebVirtualDir")?;
            t.set(
                &p("/LM/W3SVC/1/ROOT"),
                ids::PATH,
                Value::String("/srv/one/".into()),
            )?;
            t.create_key(&p("/LM/W3SVC/1/ROOT/docs"), "IIsWebVirtualDir")?;
            t.set(
                &p("/LM/W3SVC/1/ROOT/docs"),
                ids::PATH,
                Value::String("/srv/docs".into()),
            )?;
            t.set(
                &p("/LM/W3SVC/1/ROOT"),
                ids::HTTP_ERRORS,
                Value::MultiSz(vec![
                    "404,*,FILE,/srv/errors/404.htm".into(),
                    "500,*,URL,/e".into(),
                ]),
            )?;
            t.create_key(&p("/LM/W3SVC/2"), "IIsWebServer")?;
            t.create_key(&p("/LM/W3SVC/2/ROOT"), "IIsWebVirtualDir")?;
            t.set(
                &p("/LM/W3SVC/2/ROOT"),
                ids::PATH,
                Value::String("/srv/two".into()),
            )?;
            t.create_key(&p("/LM/W3SVC/AppPools"), "IIsApplicationPools")?;
            Ok(())
        })
        .unwrap();
        mb
    }

    #[test]
    fn links_may_leave_a_root_only_where_every_key_serving_it_allows() {
        let mb = metabase();
        let p = |s: &str| MbPath::parse(s).unwrap();
        let sites: BTreeSet<u32> = [1].into();
        let links = |mb: &Metabase| content_dirs(&mb.snapshot(), &sites);
        let all_beneath = links(&mb).values().all(|l| *l == Links::Beneath);
        assert!(all_beneath, "the default keeps links beneath their roots");
        let allow = |t: &mut metabase::Txn, at: &str, on: u32| {
            t.set(&p(at), ids::ALLOW_SYMLINKS_OUTSIDE_ROOT, Value::Dword(on))
        };
        // Set on a site's ROOT: its directory and the vdir below inherit it;
        // an error-page folder never does.
        mb.write(|t| allow(t, "/LM/W3SVC/1/ROOT", 1)).unwrap();
        let got = links(&mb);
        assert_eq!(got[Path::new("/srv/one")], Links::Anywhere);
        assert_eq!(got[Path::new("/srv/docs")], Links::Anywhere);
        assert_eq!(got[Path::new("/srv/errors")], Links::Beneath);
        // A vdir that turns it off keeps its own directory closed.
        mb.write(|t| allow(t, "/LM/W3SVC/1/ROOT/docs", 0)).unwrap();
        assert_eq!(links(&mb)[Path::new("/srv/docs")], Links::Beneath);
        // The same directory served by a key that does not allow it is
        // closed for both.
        mb.write(|t| {
            t.create_key(&p("/LM/W3SVC/1/ROOT/docs/again"), "IIsWebVirtualDir")?;
            t.set(
                &p("/LM/W3SVC/1/ROOT/docs/again"),
                ids::PATH,
                Value::String("/srv/one".into()),
            )
        })
        .unwrap();
        assert_eq!(links(&mb)[Path::new("/srv/one")], Links::Beneath);
    }

    #[test]
    fn a_worker_gets_its_sites_and_their_directories() {
        let snap = snapshot();
        let sites: BTreeSet<u32> = [1].into();
        let dirs: Vec<PathBuf> = content_dirs(&snap, &sites).into_keys().collect();
        assert_eq!(
            dirs,
            ["/srv/docs", "/srv/errors", "/srv/one"].map(PathBuf::from)
        );
        let image = snap.image(&select_for(&sites));
        let copy = Snapshot::from_image(&image, 1).unwrap();
        let p = |s: &str| MbPath::parse(s).unwrap();
        assert!(copy.find(&p("/LM/W3SVC/1/ROOT/docs")).is_some());
        assert!(copy.find(&p("/LM/W3SVC/2")).is_none());
        assert!(copy.find(&p("/LM/W3SVC/AppPools")).is_none());
    }

    #[test]
    fn a_worker_is_handed_the_modules_its_sites_and_the_service_name() {
        let mb = metabase();
        let p = |s: &str| MbPath::parse(s).unwrap();
        let maps = |list: &[&str]| Value::MultiSz(list.iter().map(|s| s.to_string()).collect());
        mb.write(|t| {
            t.set(
                &p("/LM/W3SVC"),
                ids::SCRIPT_MAPS,
                maps(&[".asp,C:\\WINDOWS\\asp.dll,5", ".all,/opt/all.so,1"]),
            )?;
            t.set(
                &p("/LM/W3SVC/1/ROOT/docs"),
                ids::SCRIPT_MAPS,
                maps(&["*,/opt/front.so,0", ".x, /opt/x.so ,1,GET"]),
            )?;
            t.set(
                &p("/LM/W3SVC/2/ROOT"),
                ids::SCRIPT_MAPS,
                maps(&[".two,/opt/two.so,1"]),
            )?;
            t.create_key(&p("/LM/W3SVC/Filters"), "IIsFilters")?;
            t.create_key(&p("/LM/W3SVC/Filters/Global"), "IIsFilter")?;
            t.set(
                &p("/LM/W3SVC/Filters/Global"),
                ids::FILTER_PATH,
                Value::String("/opt/global.so".into()),
            )?;
            t.create_key(&p("/LM/W3SVC/2/Filters"), "IIsFilters")?;
            t.create_key(&p("/LM/W3SVC/2/Filters/Own"), "IIsFilter")?;
            t.set(
                &p("/LM/W3SVC/2/Filters/Own"),
                ids::FILTER_PATH,
                Value::String("/opt/own.so".into()),
            )
        })
        .unwrap();
        let of = |site: u32| -> Vec<PathBuf> {
            module_files(&mb.snapshot(), &[site].into())
                .into_iter()
                .collect()
        };
        // Windows paths are nothing to open; another site's modules are
        // not handed over.
        assert_eq!(
            of(1),
            [
                "/opt/all.so",
                "/opt/front.so",
                "/opt/global.so",
                "/opt/x.so"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            of(2),
            [
                "/opt/all.so",
                "/opt/global.so",
                "/opt/own.so",
                "/opt/two.so"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_replaced_root_is_noticed() {
        let top = tempfile::tempdir().unwrap();
        for d in ["one", "two"] {
            std::fs::create_dir(top.path().join(d)).unwrap();
        }
        let current = top.path().join("current");
        std::os::unix::fs::symlink("one", &current).unwrap();
        let missing = top.path().join("later");
        let handed: HandedRoots = vec![
            (current.clone(), identity_of(&current)),
            (missing.clone(), None),
        ];
        assert!(!roots_moved(&handed));
        // The release switch: a new link renamed over the old one.
        std::os::unix::fs::symlink("two", top.path().join("next")).unwrap();
        std::fs::rename(top.path().join("next"), &current).unwrap();
        assert!(roots_moved(&handed));
        // A directory that appears where none was.
        let handed: HandedRoots = vec![
            (current.clone(), identity_of(&current)),
            (missing.clone(), None),
        ];
        std::fs::create_dir(&missing).unwrap();
        assert!(roots_moved(&handed));
    }

    #[test]
    fn unreadable_content_is_named_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = nix::unistd::getuid().as_raw();
        let other = Account {
            name: "nobody".into(),
            uid: if me == 65534 { 65533 } else { 65534 },
            gid: 65534,
        };
        assert!(readable_by(dir.path(), None).is_ok());
        let e = readable_by(dir.path(), Some(&other)).unwrap_err();
        assert!(
            e.contains("cannot be read by user nobody") && e.contains("chmod o+rx"),
            "{e}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(readable_by(dir.path(), Some(&other)).is_ok());
        assert!(readable_by(&dir.path().join("missing"), None).is_err());
    }
}
