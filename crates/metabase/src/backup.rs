//! Named, versioned backups in `MetaBack/` (iisback; [MS-IMSA] 3.1.4.13
//! Backup, 3.1.4.14 EnumBackups, 3.1.4.15 DeleteBackup, 3.1.4.29 Restore,
//! 3.3.4.1 BackupWithPasswd, 3.3.4.6 RestoreWithPasswd). A backup is the
//! pair `NAME.MD<version>` (the metabase) and `NAME.SC<version>` (its
//! schema). A backup made with a password seals SECURE data under that
//! password, so it can be restored on another machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::mbxml::{parse_metabase, write_metabase, Document, GlobalInfo, WriteScope};
use crate::persist::{dir_entries, lock_state, write_durably, MetabaseFiles};
use crate::schema::{write_schema, Schema};
use crate::secrets::SecretKey;

/// MD_BACKUP_MAX_VERSION ([MS-IMSA] 3.1.4.29).
pub const MAX_BACKUP_VERSION: u32 = 9999;
/// MD_BACKUP_MAX_LEN ([MS-IMSA] 2.2.12), terminating NUL included.
pub const MAX_BACKUP_NAME: usize = 99;

const SALT_ATTR: &str = "InetsrvPasswordSalt";
const CHECK_ATTR: &str = "InetsrvPasswordCheck";

/// Which version of a backup an operation means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupVersion {
    /// MD_BACKUP_NEXT_VERSION: one above the highest that exists.
    Next,
    /// MD_BACKUP_HIGHEST_VERSION: the highest that exists.
    Highest,
    Exact(u32),
}

impl BackupVersion {
    /// From [MS-IMSA]'s encoding (0xFFFFFFFF next, 0xFFFFFFFE highest).
    pub fn from_code(code: u32) -> Result<BackupVersion> {
        match code {
            0xFFFF_FFFF => Ok(Self::Next),
            0xFFFF_FFFE => Ok(Self::Highest),
            n if n <= MAX_BACKUP_VERSION => Ok(Self::Exact(n)),
            n => Err(Error::InvalidArgument(format!(
                "backup version {n} is above the maximum, {MAX_BACKUP_VERSION}"
            ))),
        }
    }
}

/// One backup in `MetaBack/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    pub name: String,
    pub version: u32,
    pub modified: Option<SystemTime>,
    pub password_protected: bool,
    pub metabase_file: PathBuf,
    pub schema_file: PathBuf,
}

fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.chars().count() > MAX_BACKUP_NAME
        || name.starts_with('.')
        || name.chars().any(|c| {
            c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
        });
    if bad {
        return Err(Error::InvalidArgument(format!(
            "'{name}' is not a valid backup name (1 to {MAX_BACKUP_NAME} characters, no path separators or wildcards, not starting with '.')"
        )));
    }
    Ok(())
}

/// Writes a document with SECURE data sealed under a password (its salt
/// and a check token go into IIS_Global) or under the machine key.
pub(crate) fn write_sealed(
    files: &MetabaseFiles,
    mut doc: Document,
    schema: &Schema,
    scope: WriteScope<'_>,
    password: Option<&str>,
) -> Result<String> {
    let key = match password {
        Some(password) => {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| Error::Crypto(format!("no randomness: {e}")))?;
            let key = SecretKey::from_password(password, &salt);
            doc.global
                .extra
                .retain(|(k, _)| k != SALT_ATTR && k != CHECK_ATTR);
            doc.global.extra.push((SALT_ATTR.into(), hex::encode(salt)));
            doc.global
                .extra
                .push((CHECK_ATTR.into(), key.password_check()?));
            key
        }
        None => files.key()?,
    };
    write_metabase(&doc, schema, Some(&key), scope)
}

/// Reads a file written by [`write_sealed`], checking the password.
pub(crate) fn read_sealed(
    files: &MetabaseFiles,
    path: &Path,
    schema: &Schema,
    password: Option<&str>,
) -> Result<Document> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    let outline = parse_metabase(&text, &name, schema, None)?;
    let find = |attr: &str| {
        outline
            .global
            .extra
            .iter()
            .find(|(k, _)| k == attr)
            .map(|(_, v)| v.clone())
    };
    let key = match (find(SALT_ATTR), password) {
        (Some(salt), Some(password)) => {
            let salt = hex::decode(&salt)
                .map_err(|_| Error::Crypto(format!("{name}: damaged password salt")))?;
            let key = SecretKey::from_password(password, &salt);
            let check = find(CHECK_ATTR).unwrap_or_default();
            if !key.verify_password_check(&check) {
                return Err(Error::Crypto(format!("{name}: wrong password")));
            }
            Some(key)
        }
        (Some(_), None) => {
            return Err(Error::Crypto(format!(
                "{name} is protected by a password; give it to read the file"
            )))
        }
        (None, _) => lock_state(&files.disk).key.clone(),
    };
    let mut doc = parse_metabase(&text, &name, schema, key.as_ref())?;
    doc.global
        .extra
        .retain(|(k, _)| k != SALT_ATTR && k != CHECK_ATTR);
    Ok(doc)
}

impl MetabaseFiles {
    fn backup_files(&self, name: &str, version: u32) -> (PathBuf, PathBuf) {
        let dir = &self.location.backups;
        (
            dir.join(format!("{name}.MD{version}")),
            dir.join(format!("{name}.SC{version}")),
        )
    }

    /// The backups in `MetaBack/`, by name then version; only those named
    /// `name` when given.
    pub fn list_backups(&self, name: Option<&str>) -> Result<Vec<BackupInfo>> {
        let mut out = Vec::new();
        for entry in dir_entries(&self.location.backups)? {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some((base, version)) = file_name.rsplit_once(".MD") else {
                continue;
            };
            let Ok(version) = version.parse::<u32>() else {
                continue;
            };
            if name.is_some_and(|n| !n.eq_ignore_ascii_case(base)) {
                continue;
            }
            let protected = std::fs::read_to_string(entry.path())
                .map(|t| t.contains(SALT_ATTR))
                .unwrap_or(false);
            let (metabase_file, schema_file) = self.backup_files(base, version);
            out.push(BackupInfo {
                name: base.to_string(),
                version,
                modified: entry.metadata().ok().and_then(|m| m.modified().ok()),
                password_protected: protected,
                metabase_file,
                schema_file,
            });
        }
        out.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.version.cmp(&b.version))
        });
        Ok(out)
    }

    fn resolve_version(&self, name: &str, version: BackupVersion) -> Result<BackupInfo> {
        let all = self.list_backups(Some(name))?;
        let found = match version {
            BackupVersion::Highest | BackupVersion::Next => all.last(),
            BackupVersion::Exact(v) => all.iter().find(|b| b.version == v),
        };
        found.cloned().ok_or_else(|| {
            Error::Backup(match version {
                BackupVersion::Exact(v) => format!("no backup {name} version {v}"),
                _ => format!("no backup named {name}"),
            })
        })
    }

    /// Backs up the whole metabase under `name`. Without `overwrite`, an
    /// existing backup of that name and version is an error.
    pub fn backup(
        &self,
        name: &str,
        version: BackupVersion,
        password: Option<&str>,
        overwrite: bool,
    ) -> Result<BackupInfo> {
        validate_name(name)?;
        let existing = self.list_backups(Some(name))?;
        let highest = existing.last().map(|b| b.version);
        let version = match version {
            BackupVersion::Next => highest.map_or(0, |v| v + 1),
            BackupVersion::Highest => highest.unwrap_or(0),
            BackupVersion::Exact(v) => v,
        };
        if version > MAX_BACKUP_VERSION {
            return Err(Error::InvalidArgument(format!(
                "backup version {version} is above the maximum, {MAX_BACKUP_VERSION}"
            )));
        }
        if !overwrite && existing.iter().any(|b| b.version == version) {
            return Err(Error::Backup(format!(
                "backup {name} version {version} already exists (overwrite it, or use the next version)"
            )));
        }
        let snapshot = self.metabase.snapshot();
        let global = GlobalInfo {
            change_number: snapshot.change_number(),
            history_major: self.version().0,
            extra: Vec::new(),
        };
        let doc = Document::new(snapshot.tree().root.clone(), global);
        let text = write_sealed(
            self,
            doc,
            snapshot.schema(),
            WriteScope::default(),
            password,
        )?;
        std::fs::create_dir_all(&self.location.backups)
            .map_err(|e| Error::io(&self.location.backups, e))?;
        let (md, sc) = self.backup_files(name, version);
        write_durably(&sc, write_schema(snapshot.schema()).as_bytes())?;
        write_durably(&md, text.as_bytes())?;
        self.resolve_version(name, BackupVersion::Exact(version))
    }

    /// Restores a backup: the metabase (and schema) become what it holds,
    /// as one change that subscribers see, saved as a new version.
    pub fn restore_backup(
        &self,
        name: &str,
        version: BackupVersion,
        password: Option<&str>,
    ) -> Result<BackupInfo> {
        validate_name(name)?;
        let info = self.resolve_version(name, version)?;
        let schema = match std::fs::read_to_string(&info.schema_file) {
            Ok(text) => Arc::new(Schema::from_file_text(
                &text,
                &info.schema_file.display().to_string(),
            )?),
            Err(_) => Schema::standard(),
        };
        let doc = read_sealed(self, &info.metabase_file, &schema, password)?;
        if doc.root.child("LM").is_none() {
            return Err(Error::Backup(format!(
                "{} holds no /LM key; it is not a backup",
                info.metabase_file.display()
            )));
        }
        self.replace_all(Arc::unwrap_or_clone(doc.root), schema, "restore")?;
        Ok(info)
    }

    /// Deletes one version of a backup (the highest with
    /// `BackupVersion::Highest`).
    pub fn delete_backup(&self, name: &str, version: BackupVersion) -> Result<BackupInfo> {
        validate_name(name)?;
        let info = self.resolve_version(name, version)?;
        for f in [&info.metabase_file, &info.schema_file] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(f, e)),
            }
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::MbPath;
    use crate::persist::LockMode;
    use crate::tree::GetMode;
    use crate::value::Value;

    fn p(s: &str) -> MbPath {
        MbPath::parse(s).unwrap()
    }

    fn comment(files: &MetabaseFiles) -> Value {
        files
            .metabase()
            .snapshot()
            .get(&p("/LM/W3SVC/1"), 1015, GetMode::Own)
            .unwrap()
            .value
    }

    fn set_comment(files: &MetabaseFiles, value: &str) {
        files
            .metabase()
            .write(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &[value.to_string()]))
            .unwrap();
    }

    #[test]
    fn backup_list_restore_delete() {
        let dir = tempfile::tempdir().unwrap();
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        set_comment(&files, "before");
        files
            .metabase()
            .write(|t| t.set_text(&p("/LM/W3SVC"), "AnonymousUserPass", &["pw1".to_string()]))
            .unwrap();
        let b0 = files
            .backup("nightly", BackupVersion::Next, None, false)
            .unwrap();
        assert_eq!(b0.version, 0);
        assert!(dir.path().join("MetaBack/nightly.MD0").exists());
        assert!(dir.path().join("MetaBack/nightly.SC0").exists());
        let text = std::fs::read_to_string(dir.path().join("MetaBack/nightly.MD0")).unwrap();
        assert!(!text.contains("pw1"));
        set_comment(&files, "middle");
        let b1 = files
            .backup("nightly", BackupVersion::Next, None, false)
            .unwrap();
        assert_eq!(b1.version, 1);
        assert!(files
            .backup("nightly", BackupVersion::Exact(1), None, false)
            .is_err());
        files
            .backup("nightly", BackupVersion::Exact(1), None, true)
            .unwrap();
        files
            .backup("other", BackupVersion::Next, None, false)
            .unwrap();
        let all: Vec<(String, u32)> = files
            .list_backups(None)
            .unwrap()
            .into_iter()
            .map(|b| (b.name, b.version))
            .collect();
        assert_eq!(
            all,
            vec![
                ("nightly".into(), 0),
                ("nightly".into(), 1),
                ("other".into(), 0)
            ]
        );

        set_comment(&files, "after");
        files
            .metabase()
            .write(|t| t.delete_key(&p("/LM/W3SVC/AppPools/DefaultAppPool")))
            .unwrap();
        let rx = files.metabase().subscribe();
        files
            .restore_backup("nightly", BackupVersion::Exact(0), None)
            .unwrap();
        assert_eq!(comment(&files), Value::String("before".into()));
        let s = files.metabase().snapshot();
        assert!(s.exists(&p("/LM/W3SVC/AppPools/DefaultAppPool")));
        assert_eq!(
            s.get(&p("/LM/W3SVC"), 6021, GetMode::Own).unwrap().value,
            Value::String("pw1".into())
        );
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.origin.as_deref(), Some("restore"));
        // Restored state is saved: it survives a reopen.
        drop(files);
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        assert_eq!(comment(&files), Value::String("before".into()));
        files
            .restore_backup("nightly", BackupVersion::Highest, None)
            .unwrap();
        assert_eq!(comment(&files), Value::String("middle".into()));

        files
            .delete_backup("nightly", BackupVersion::Highest)
            .unwrap();
        assert_eq!(files.list_backups(Some("nightly")).unwrap().len(), 1);
        assert!(files
            .delete_backup("nightly", BackupVersion::Exact(7))
            .is_err());
        assert!(files
            .restore_backup("missing", BackupVersion::Highest, None)
            .is_err());
    }

    #[test]
    fn password_protected_backups() {
        let dir = tempfile::tempdir().unwrap();
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        files
            .metabase()
            .write(|t| t.set_text(&p("/LM/W3SVC"), "AnonymousUserPass", &["pw1".to_string()]))
            .unwrap();
        let info = files
            .backup("portable", BackupVersion::Next, Some("s3cret"), false)
            .unwrap();
        assert!(info.password_protected);
        // Another machine (another state dir, another key) restores it with
        // the password.
        let copy = tempfile::tempdir().unwrap();
        let other = MetabaseFiles::open_state_dir(copy.path(), LockMode::Exclusive).unwrap();
        std::fs::create_dir_all(copy.path().join("MetaBack")).unwrap();
        for ext in ["MD0", "SC0"] {
            std::fs::copy(
                dir.path().join(format!("MetaBack/portable.{ext}")),
                copy.path().join(format!("MetaBack/portable.{ext}")),
            )
            .unwrap();
        }
        let no_pw = other
            .restore_backup("portable", BackupVersion::Highest, None)
            .unwrap_err();
        assert!(no_pw.to_string().contains("password"), "{no_pw}");
        let wrong = other
            .restore_backup("portable", BackupVersion::Highest, Some("guess"))
            .unwrap_err();
        assert!(wrong.to_string().contains("wrong password"), "{wrong}");
        other
            .restore_backup("portable", BackupVersion::Highest, Some("s3cret"))
            .unwrap();
        assert_eq!(
            other
                .metabase()
                .snapshot()
                .get(&p("/LM/W3SVC"), 6021, GetMode::Own)
                .unwrap()
                .value,
            Value::String("pw1".into())
        );
    }

    #[test]
    fn names_and_versions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        for bad in [
            "",
            "../escape",
            "a/b",
            ".hidden",
            &"x".repeat(100),
            "tab\tname",
        ] {
            assert!(
                files.backup(bad, BackupVersion::Next, None, false).is_err(),
                "{bad:?}"
            );
        }
        assert!(files
            .backup("ok", BackupVersion::Exact(10_000), None, false)
            .is_err());
        assert!(BackupVersion::from_code(10_000).is_err());
        assert_eq!(
            BackupVersion::from_code(0xFFFF_FFFE).unwrap(),
            BackupVersion::Highest
        );
    }
}
