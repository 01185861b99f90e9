//! The metabase bound to its files: MetaBase.xml and MBSchema.xml, written
//! durably on every commit (temporary file, fsync, rename, fsync of the
//! directory: a crash leaves the old file or the new one, never a torn
//! one), history versions, the sealing key, and a fresh state directory's
//! default configuration.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::mbxml::{parse_metabase, write_metabase, Document, GlobalInfo, WriteScope};
use crate::path::MbPath;
use crate::schema::{write_schema, Schema};
use crate::secrets::SecretKey;
use crate::store::{ChangeBatch, CommitHook, Metabase, Snapshot};
use crate::tree::{Key, Tree};

/// The change origin of hand edits applied while running.
pub const ORIGIN_EDIT: &str = "edit-while-running";

/// MD_* IDs of the IIsComputer settings that govern the files.
pub(crate) mod ids {
    pub const ENABLE_EDIT_WHILE_RUNNING: u32 = 9998;
    pub const ENABLE_HISTORY: u32 = 9996;
    pub const MAX_HISTORY_FILES: u32 = 9995;
    pub const MAX_ERROR_FILES: u32 = 9988;
}

const DEFAULT_METABASE: &str = include_str!("../data/default-MetaBase.xml");
const START_PAGE: &str = include_str!("../data/iisstart.htm");

/// Where a metabase's files live.
#[derive(Clone, Debug)]
pub struct Location {
    pub dir: PathBuf,
    pub metabase: PathBuf,
    pub schema: PathBuf,
    pub history: PathBuf,
    pub backups: PathBuf,
    pub key_file: PathBuf,
    pub lock_file: PathBuf,
}

impl Location {
    /// The files of a state directory (`MetaBase.xml`, `MBSchema.xml`,
    /// `History/`, `MetaBack/`).
    pub fn state_dir(dir: &Path) -> Location {
        Location::with_file(dir, &dir.join("MetaBase.xml"))
    }

    /// A metabase file anywhere; its schema, history, backups and key sit
    /// beside it.
    pub fn file(file: &Path) -> Location {
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Location::with_file(&dir, file)
    }

    fn with_file(dir: &Path, file: &Path) -> Location {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "MetaBase.xml".into());
        Location {
            dir: dir.to_path_buf(),
            metabase: file.to_path_buf(),
            schema: dir.join("MBSchema.xml"),
            history: dir.join("History"),
            backups: dir.join("MetaBack"),
            key_file: dir.join("MetaBase.key"),
            lock_file: dir.join(format!(".{name}.lock")),
        }
    }
}

/// How an opened metabase shares its files with other processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Hold the write lock from open to drop: a command-line edit. Other
    /// writers wait; this one never works on a stale copy.
    Exclusive,
    /// Take the lock only while writing: a long-running service. A file
    /// changed by someone else since it was read is never overwritten.
    WhileWriting,
}

/// Identity of a file's contents as last seen, to tell our own writes from
/// other writers'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    pub(crate) inode: u64,
}

pub(crate) fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What the process knows of the files, shared by the commit hook, the
/// edit watcher, backups and restores.
pub(crate) struct DiskState {
    pub(crate) global: GlobalInfo,
    pub(crate) extra_elements: Vec<String>,
    /// The MetaBase.xml we last wrote or read.
    pub(crate) stamp: Option<FileStamp>,
    pub(crate) digest: Option<[u8; 32]>,
    pub(crate) schema_digest: Option<[u8; 32]>,
    pub(crate) minor: u32,
    /// Set by the edit watcher: the commit applies a file already on disk,
    /// which is adopted rather than rewritten.
    pub(crate) adopt: Option<Adopt>,
    /// The write lock, when held for the whole life (LockMode::Exclusive).
    pub(crate) held_lock: Option<File>,
    pub(crate) key: Option<SecretKey>,
}

pub(crate) struct Adopt {
    pub(crate) text: String,
    pub(crate) stamp: Option<FileStamp>,
    pub(crate) global: GlobalInfo,
    pub(crate) extra_elements: Vec<String>,
}

/// The metabase bound to its files.
#[derive(Clone)]
pub struct MetabaseFiles {
    pub(crate) location: Location,
    pub(crate) metabase: Metabase,
    pub(crate) disk: Arc<Mutex<DiskState>>,
    warnings: Arc<Vec<String>>,
    created: bool,
}

pub(crate) fn lock_state(m: &Mutex<DiskState>) -> MutexGuard<'_, DiskState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MetabaseFiles {
    /// Opens a state directory, initialising it with the default metabase
    /// (Default Web Site on :8080, its root in `DIR/wwwroot` with a start
    /// page, DefaultAppPool, logs in `DIR/logs`) when it holds none.
    pub fn open_state_dir(dir: &Path, mode: LockMode) -> Result<MetabaseFiles> {
        let location = Location::state_dir(dir);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = acquire_lock(&location)?;
        let created = !location.metabase.exists();
        if created {
            initialise(&location)?;
        } else {
            close_to_others(&location);
        }
        let mut files = Self::open_locked(location, mode, Some(lock))?;
        files.created = created;
        Ok(files)
    }

    /// Whether this open made the state directory's default metabase (the
    /// first run): what completes a first run (a certificate) runs once.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Opens an existing metabase file.
    pub fn open_file(file: &Path, mode: LockMode) -> Result<MetabaseFiles> {
        let location = Location::file(file);
        if !file.exists() {
            return Err(Error::io(
                file,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such metabase file"),
            ));
        }
        // A reader of a file in a directory it may not write to can still
        // read; it just cannot coordinate with writers (it will fail to
        // save, cleanly, if it ever tries).
        let lock = match (acquire_lock(&location), mode) {
            (Ok(lock), _) => Some(lock),
            (Err(_), LockMode::WhileWriting) => None,
            (Err(e), LockMode::Exclusive) => return Err(e),
        };
        Self::open_locked(location, mode, lock)
    }

    fn open_locked(
        location: Location,
        mode: LockMode,
        lock: Option<File>,
    ) -> Result<MetabaseFiles> {
        if lock.is_some() {
            remove_stale_temporaries(&location);
        }
        let schema = load_schema(&location.schema)?;
        let key = SecretKey::load(&location.key_file)?;
        let bytes =
            std::fs::read(&location.metabase).map_err(|e| Error::io(&location.metabase, e))?;
        let text = decode(&location.metabase, &bytes)?;
        let file_name = location.metabase.display().to_string();
        let doc = parse_metabase(text, &file_name, &schema, key.as_ref())?;
        let schema_digest = std::fs::read(&location.schema).ok().map(|b| digest(&b));
        let disk = DiskState {
            global: doc.global.clone(),
            extra_elements: doc.extra_elements.clone(),
            stamp: stamp(&location.metabase),
            digest: Some(digest(&bytes)),
            schema_digest,
            minor: 0,
            adopt: None,
            held_lock: if mode == LockMode::Exclusive {
                lock
            } else {
                None
            },
            key,
        };
        let tree = Tree {
            root: doc.root.clone(),
            schema,
        };
        let metabase = Metabase::new(Snapshot::new(tree, doc.global.change_number));
        let disk = Arc::new(Mutex::new(disk));
        metabase.set_commit_hook(Box::new(Persister {
            location: location.clone(),
            disk: disk.clone(),
        }));
        Ok(MetabaseFiles {
            location,
            metabase,
            disk,
            warnings: Arc::new(doc.warnings),
            created: false,
        })
    }

    pub fn metabase(&self) -> &Metabase {
        &self.metabase
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What loading the file reported without refusing it.
    pub fn load_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The version the file on disk is (HistoryMajorVersionNumber, minor).
    pub fn version(&self) -> (u32, u32) {
        let disk = lock_state(&self.disk);
        (disk.global.history_major, disk.minor)
    }

    /// SaveData: writes the current state out again (a new version).
    pub fn save(&self) -> Result<()> {
        let snapshot = self.metabase.snapshot();
        let mut persister = Persister {
            location: self.location.clone(),
            disk: self.disk.clone(),
        };
        persister.commit(&snapshot, &ChangeBatch::default())
    }

    /// The sealing key, created on first use.
    pub(crate) fn key(&self) -> Result<SecretKey> {
        let mut disk = lock_state(&self.disk);
        ensure_key(&self.location, &mut disk)
    }

    /// Replaces the whole metabase (root and schema) as one change, as a
    /// restore does.
    pub(crate) fn replace_all(&self, root: Key, schema: Arc<Schema>, origin: &str) -> Result<()> {
        self.metabase.write_as(Some(origin), |t| {
            t.replace_schema(schema);
            t.replace_subtree(&MbPath::root(), root)
        })
    }

    /// The history versions on disk, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        list_history(&self.location.history)
    }

    /// Restores a history version ([MS-IMSA] 3.3.4.5 RestoreHistory):
    /// the metabase becomes what that version held, as a new version.
    pub fn restore_history(&self, major: u32, minor: Option<u32>) -> Result<HistoryEntry> {
        let entries = self.history()?;
        let entry = entries
            .iter()
            .rev()
            .find(|e| e.major == major && minor.is_none_or(|m| e.minor == m))
            .cloned()
            .ok_or_else(|| {
                Error::Backup(format!(
                    "no history version {major}{} in {}",
                    minor.map(|m| format!(".{m}")).unwrap_or_default(),
                    self.location.history.display()
                ))
            })?;
        let schema = match std::fs::read_to_string(&entry.schema_file) {
            Ok(text) => Arc::new(Schema::from_file_text(
                &text,
                &entry.schema_file.display().to_string(),
            )?),
            Err(_) => self.metabase.snapshot().schema_arc().clone(),
        };
        let bytes =
            std::fs::read(&entry.metabase_file).map_err(|e| Error::io(&entry.metabase_file, e))?;
        let key = lock_state(&self.disk).key.clone();
        let doc = parse_metabase(
            decode(&entry.metabase_file, &bytes)?,
            &entry.metabase_file.display().to_string(),
            &schema,
            key.as_ref(),
        )?;
        self.replace_all(Arc::unwrap_or_clone(doc.root), schema, "history-restore")?;
        Ok(entry)
    }
}

/// Reads a metabase without opening it for writing: no lock, no key file
/// created, nothing written. Worker processes read their configuration
/// this way. SECURE values sealed under a key this process cannot read
/// stay sealed.
pub fn read_snapshot(location: &Location) -> Result<Arc<Snapshot>> {
    let schema = load_schema(&location.schema)?;
    let key = SecretKey::load(&location.key_file).ok().flatten();
    let bytes = std::fs::read(&location.metabase).map_err(|e| Error::io(&location.metabase, e))?;
    let text = decode(&location.metabase, &bytes)?;
    let doc = parse_metabase(
        text,
        &location.metabase.display().to_string(),
        &schema,
        key.as_ref(),
    )?;
    let tree = Tree {
        root: doc.root,
        schema,
    };
    Ok(Arc::new(Snapshot::new(tree, doc.global.change_number)))
}

fn decode<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| Error::Parse {
        file: path.display().to_string(),
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        column: 1,
        message: "the file is not UTF-8".into(),
    })
}

pub(crate) fn load_schema(path: &Path) -> Result<Arc<Schema>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Arc::new(Schema::from_file_text(
            &text,
            &path.display().to_string(),
        )?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Schema::standard()),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn ensure_key(location: &Location, disk: &mut DiskState) -> Result<SecretKey> {
    if let Some(key) = &disk.key {
        return Ok(key.clone());
    }
    let key = SecretKey::load_or_create(&location.key_file)?;
    disk.key = Some(key.clone());
    Ok(key)
}

/// Takes the cross-process write lock (flock on a lock file beside the
/// metabase), waiting for another writer to finish.
pub(crate) fn acquire_lock(location: &Location) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&location.lock_file)
        .map_err(|e| Error::io(&location.lock_file, e))?;
    file.lock().map_err(|e| Error::io(&location.lock_file, e))?;
    Ok(file)
}

/// A state directory made before its files were kept from other users:
/// the metabase, its history and its backups become its owner's alone, and
/// the directory itself can be passed through but not listed or written
/// by others (0711, as a fresh one is made); only what this process owns,
/// anything else is left as it is.
fn close_to_others(location: &Location) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // The owner of our own /proc entry is our effective user.
    let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return;
    };
    // (path, mode to set, the bits for others that make it too open)
    for (path, private, too_open) in [
        (&location.dir, 0o711, 0o066),
        (&location.metabase, 0o600, 0o077),
        (&location.history, 0o700, 0o077),
        (&location.backups, 0o700, 0o077),
    ] {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if meta.uid() != me || meta.mode() & too_open == 0 || is_shared(&meta) {
            continue;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)) {
            Ok(()) => tracing::info!(path = %path.display(), "closed to other users"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot close to other users")
            }
        }
    }
}

/// A sticky directory (`/tmp`) is everyone's: its mode is never changed,
/// even when it is given as the state directory.
fn is_shared(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.is_dir() && meta.mode() & 0o1000 != 0
}

/// Writes a fresh state directory.
fn initialise(location: &Location) -> Result<()> {
    let dir = &location.dir;
    let www = dir.join("wwwroot");
    let logs = dir.join("logs");
    let fresh_www = !www.exists();
    for d in [
        &www,
        &logs.join("W3SVC1"),
        &logs.join("HTTPERR"),
        &location.history,
        &location.backups,
    ] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let start = www.join("iisstart.htm");
    if !start.exists() {
        write_durably(&start, START_PAGE.as_bytes())?;
    }
    // The default pool's identity must read the default content, whatever
    // the creator's umask (a root shell with umask 077 is common).
    if fresh_www {
        use std::os::unix::fs::PermissionsExt;
        let readable = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(p, e))
        };
        readable(&www, 0o755)?;
        readable(&start, 0o644)?;
    }
    // Not world-readable: others may pass through (to the httpapi socket
    // in run/), not list it; the history and backups are the owner's.
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(p, e))
        };
        if !std::fs::metadata(dir).is_ok_and(|m| is_shared(&m)) {
            set(dir, 0o711)?;
        }
        set(&location.history, 0o700)?;
        set(&location.backups, 0o700)?;
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let escape = |p: &Path| {
        let mut out = String::new();
        crate::xmlutil::escape_attr(&absolute(p).display().to_string(), &mut out);
        out
    };
    let text = DEFAULT_METABASE
        .replace("{{WWW_ROOT}}", &escape(&www))
        .replace("{{LOG_DIR}}", &escape(&logs));
    // Parse it as any file is parsed, then save it the ordinary way.
    let schema = Schema::standard();
    let doc = parse_metabase(&text, "<default metabase>", &schema, None)?;
    let mut disk = DiskState {
        global: doc.global.clone(),
        extra_elements: Vec::new(),
        stamp: None,
        digest: None,
        schema_digest: None,
        minor: 0,
        adopt: None,
        held_lock: None,
        key: None,
    };
    let snapshot = Snapshot::new(
        Tree {
            root: doc.root,
            schema,
        },
        0,
    );
    save(location, &mut disk, &snapshot)
}

/// The commit hook: a commit is durable before it is acknowledged.
struct Persister {
    location: Location,
    disk: Arc<Mutex<DiskState>>,
}

/// True when a batch only sets or deletes VOLATILE data (run-time state
/// such as ServerState): nothing on disk would change.
fn only_volatile(next: &Snapshot, batch: &ChangeBatch) -> bool {
    use crate::store::ChangeKind;
    use crate::value::Attributes;
    !batch.schema_changed
        && batch.origin.is_none()
        && !batch.changes.is_empty()
        && batch.changes.iter().all(|c| {
            let data_only =
                ChangeKind(c.kind.0 & !(ChangeKind::SET_DATA.0 | ChangeKind::DELETE_DATA.0))
                    == ChangeKind(0);
            data_only
                && !c.ids.is_empty()
                && c.ids.iter().all(|id| {
                    next.schema()
                        .property(*id)
                        .is_some_and(|d| d.attributes.contains(Attributes::VOLATILE))
                })
        })
}

impl CommitHook for Persister {
    fn commit(&mut self, next: &Snapshot, batch: &ChangeBatch) -> Result<()> {
        if only_volatile(next, batch) {
            return Ok(());
        }
        // The file lock before the state's: the edit watcher takes them in
        // that order too (the other order deadlocks against it).
        let held = lock_state(&self.disk).held_lock.is_some();
        let _lock = match held {
            true => None,
            false => Some(acquire_lock(&self.location)?),
        };
        let mut disk = lock_state(&self.disk);
        if let Some(adopt) = disk.adopt.take() {
            return adopt_edit(&self.location, &mut disk, next, adopt);
        }
        // Never overwrite a file someone else changed since we saw it.
        let now = stamp(&self.location.metabase);
        if now != disk.stamp {
            let on_disk = std::fs::read(&self.location.metabase)
                .ok()
                .map(|b| digest(&b));
            if on_disk != disk.digest {
                return Err(Error::Conflict(self.location.metabase.clone()));
            }
            disk.stamp = now;
        }
        save(&self.location, &mut disk, next)
    }
}

/// Records a hand edit that was applied: the file on disk is the new
/// version (same major, next minor), copied to History as IIS does.
fn adopt_edit(
    location: &Location,
    disk: &mut DiskState,
    next: &Snapshot,
    adopt: Adopt,
) -> Result<()> {
    disk.minor += 1;
    disk.global.change_number = next.change_number();
    disk.global.extra = adopt.global.extra;
    disk.extra_elements = adopt.extra_elements;
    disk.stamp = adopt.stamp;
    disk.digest = Some(digest(adopt.text.as_bytes()));
    let schema_text = write_schema(next.schema());
    write_history(location, disk, next, &adopt.text, &schema_text)
}

/// Writes MetaBase.xml (and MBSchema.xml when it changed) durably, then
/// the history copy.
pub(crate) fn save(location: &Location, disk: &mut DiskState, snapshot: &Snapshot) -> Result<()> {
    let key = ensure_key(location, disk)?;
    let mut global = disk.global.clone();
    global.change_number = snapshot.change_number();
    global.history_major = global.history_major.wrapping_add(1);
    let doc = Document {
        root: snapshot.tree().root.clone(),
        global: global.clone(),
        extra_elements: disk.extra_elements.clone(),
        inherited: Vec::new(),
        warnings: Vec::new(),
    };
    let text = write_metabase(&doc, snapshot.schema(), Some(&key), WriteScope::default())?;
    let schema_text = write_schema(snapshot.schema());
    let schema_digest = digest(schema_text.as_bytes());
    if disk.schema_digest != Some(schema_digest) {
        write_durably(&location.schema, schema_text.as_bytes())?;
        disk.schema_digest = Some(schema_digest);
    }
    write_durably(&location.metabase, text.as_bytes())?;
    disk.global = global;
    disk.minor = 0;
    disk.stamp = stamp(&location.metabase);
    disk.digest = Some(digest(text.as_bytes()));
    write_history(location, disk, snapshot, &text, &schema_text)
}

fn history_enabled(tree: &Tree) -> (bool, usize) {
    let lm = MbPath::parse("/LM").unwrap_or_default();
    let enabled = tree.effective_dword(&lm, ids::ENABLE_HISTORY).unwrap_or(1) != 0;
    let keep = tree
        .effective_dword(&lm, ids::MAX_HISTORY_FILES)
        .unwrap_or(10) as usize;
    (enabled, keep)
}

fn write_history(
    location: &Location,
    disk: &DiskState,
    snapshot: &Snapshot,
    text: &str,
    schema_text: &str,
) -> Result<()> {
    let (enabled, keep) = history_enabled(snapshot.tree());
    if !enabled {
        return Ok(());
    }
    let dir = &location.history;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (major, minor) = (disk.global.history_major, disk.minor);
    let name = |prefix: &str| dir.join(format!("{prefix}_{major:010}_{minor:010}.xml"));
    write_durably(&name("MBSchema"), schema_text.as_bytes())?;
    write_durably(&name("MetaBase"), text.as_bytes())?;
    prune_history(dir, keep.max(1))
}

/// One history version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub major: u32,
    pub minor: u32,
    pub metabase_file: PathBuf,
    pub schema_file: PathBuf,
    pub modified: Option<SystemTime>,
}

/// Parses `MetaBase_<major>_<minor>.xml`.
fn history_version(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("MetaBase_")?.strip_suffix(".xml")?;
    let (major, minor) = rest.split_once('_')?;
    if major.len() != 10 || minor.len() != 10 {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The entries of a directory; none when it does not exist.
pub(crate) fn dir_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

pub(crate) fn list_history(dir: &Path) -> Result<Vec<HistoryEntry>> {
    let mut out = Vec::new();
    for entry in dir_entries(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((major, minor)) = history_version(&name) {
            out.push(HistoryEntry {
                major,
                minor,
                metabase_file: entry.path(),
                schema_file: dir.join(format!("MBSchema_{major:010}_{minor:010}.xml")),
                modified: entry.metadata().ok().and_then(|m| m.modified().ok()),
            });
        }
    }
    out.sort_by_key(|e| (e.major, e.minor));
    Ok(out)
}

fn prune_history(dir: &Path, keep: usize) -> Result<()> {
    let entries = list_history(dir)?;
    if entries.len() <= keep {
        return Ok(());
    }
    for old in &entries[..entries.len() - keep] {
        for f in [&old.metabase_file, &old.schema_file] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(f, e)),
            }
        }
    }
    Ok(())
}

/// Writes a file so that a crash at any instant leaves either the old
/// contents or the new: a temporary file in the same directory, fsync,
/// rename over the target, fsync of the directory.
pub fn write_durably(path: &Path, contents: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        // Owner-only: the metabase, its history and backups name users,
        // paths and settings no other local user needs (files meant for
        // others, like the start page, are opened up by their writer).
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| Error::io(&tmp, e))?
        };
        file.write_all(contents).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        sync_parent_dir(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes what writers killed mid-save left behind. Only called with the
/// write lock held, when no save can be in progress.
fn remove_stale_temporaries(location: &Location) {
    let Ok(entries) = std::fs::read_dir(&location.dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp.") && !name.ends_with(".lock") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// fsyncs the directory holding `path`, making a rename into it durable.
pub fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests;
