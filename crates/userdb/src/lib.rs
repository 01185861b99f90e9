//! inetsrv's own user database, for Basic authentication and for NTLM on
//! the RPC endpoint (the role the Windows account database plays for IIS 6).
//!
//! One file (`DIR/users`), mode 0600, one user per line:
//! `name:$argon2id$v=19$...:NTHASH`. Passwords are kept only as hashes:
//! an Argon2id hash with a random salt each, for Basic, and the NT hash
//! (MD4 of the UTF-16LE password, [MS-NLMP] 3.3.1 NTOWFv1), which NTLM
//! needs to check a response. The NT hash is as secret as the password
//! itself, so the file is never readable by others. Lines written before
//! NT hashes were kept have no third field: those users can log on with
//! Basic but not with NTLM until their password is set again. Names compare without regard to case, as
//! Windows account names do. Every change is written to a temporary file,
//! synced and renamed over the old one, so a crash never leaves a torn
//! file and concurrent readers see the old or the new version whole.
//!
//! Beside it, `DIR/certmap` (0600) holds IIS's one-to-one client
//! certificate mappings: a client certificate, by its SHA-1 thumbprint,
//! logs on as a user of the database where `AccessSSLMapCert` is set. One
//! mapping per line: `THUMBPRINT:name:subject` (the subject only to list).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("user '{0}' already exists")]
    Exists(String),
    #[error("no user '{0}'")]
    NotFound(String),
    #[error("'{name}' is not a valid user name: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("no certificate {0} is mapped to a user")]
    NotMapped(String),
    #[error("'{0}' is not a certificate thumbprint (40 hex digits)")]
    BadThumbprint(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The PHC string of the password's hash.
    pub hash: String,
    /// The NT hash, when the password was set since NT hashes are kept.
    pub nt_hash: Option<[u8; 16]>,
    /// An administrator: may use the remote administration interfaces.
    pub admin: bool,
}

/// The user database file.
#[derive(Clone, Debug)]
pub struct UserDb {
    path: PathBuf,
}

/// A client certificate that logs on as a user (IIS's one-to-one mapping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertMapping {
    /// The SHA-1 thumbprint of the certificate (DER), 40 upper-case hex
    /// digits as Windows shows it.
    pub thumbprint: String,
    pub user: String,
    /// The certificate's subject, to show in lists.
    pub subject: String,
}

/// A thumbprint as users type it (any case, spaces or colons between
/// bytes) in the stored form.
fn normalise_thumbprint(text: &str) -> Result<String> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if compact.len() == 40 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(compact.to_ascii_uppercase())
    } else {
        Err(Error::BadThumbprint(text.to_string()))
    }
}

/// Checks a user name: 1 to 64 characters, none of them `:`, `\`, `/`,
/// white space or control characters.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.chars().count() > 64 {
        return bad("it must be 1 to 64 characters long");
    }
    if name
        .chars()
        .any(|c| c == ':' || c == '\\' || c == '/' || c.is_whitespace() || c.is_control())
    {
        return bad("it may not hold ':', '\\', '/', spaces or control characters");
    }
    Ok(())
}

impl UserDb {
    /// The database of a state directory.
    pub fn for_state_dir(dir: &Path) -> UserDb {
        UserDb {
            path: dir.join("users"),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> UserDb {
        UserDb { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every user; none when the file does not exist.
    pub fn users(&self) -> Result<Vec<User>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut users = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let corrupt = |reason: &str| Error::Corrupt {
                path: self.path.clone(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let mut fields = line.split(':');
            let (Some(name), Some(hash)) = (fields.next(), fields.next()) else {
                return Err(corrupt("expected NAME:HASH[:NTHASH[:admin]]"));
            };
            let nt_hash = match fields.next() {
                None | Some("") => None,
                Some(hex_text) => {
                    let mut bytes = [0u8; 16];
                    hex::decode_to_slice(hex_text, &mut bytes)
                        .map_err(|_| corrupt("the NT hash is not 32 hex digits"))?;
                    Some(bytes)
                }
            };
            let admin = match fields.next() {
                None => false,
                Some("admin") => true,
                Some(_) => return Err(corrupt("the fourth field may only be 'admin'")),
            };
            if fields.next().is_some() {
                return Err(corrupt("expected NAME:HASH[:NTHASH[:admin]]"));
            }
            check_name(name).map_err(|e| corrupt(&e.to_string()))?;
            PasswordHash::new(hash).map_err(|_| corrupt("the hash is not a PHC string"))?;
            users.push(User {
                name: name.to_string(),
                hash: hash.to_string(),
                nt_hash,
                admin,
            });
        }
        Ok(users)
    }

    /// The user of that name (compared without regard to case), if any.
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(Self::find(&self.users()?, name).cloned())
    }

    fn find<'a>(users: &'a [User], name: &str) -> Option<&'a User> {
        users
            .iter()
            .find(|u| u.name.to_lowercase() == name.to_lowercase())
    }

    /// Adds a user (an error if one of that name exists).
    pub fn add(&self, name: &str, password: &str) -> Result<()> {
        check_name(name)?;
        let mut users = self.users()?;
        if Self::find(&users, name).is_some() {
            return Err(Error::Exists(name.to_string()));
        }
        users.push(User {
            name: name.to_string(),
            hash: hash_password(password)?,
            nt_hash: Some(nt_hash(password)),
            admin: false,
        });
        self.write(&users)
    }

    /// Makes a user an administrator, or not.
    pub fn set_admin(&self, name: &str, admin: bool) -> Result<()> {
        self.update(name, |user| {
            user.admin = admin;
            Ok(())
        })
    }

    /// Changes an existing user and writes the file.
    fn update(&self, name: &str, change: impl FnOnce(&mut User) -> Result<()>) -> Result<()> {
        let mut users = self.users()?;
        let lower = name.to_lowercase();
        let user = users
            .iter_mut()
            .find(|u| u.name.to_lowercase() == lower)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        change(user)?;
        self.write(&users)
    }

    /// Sets an existing user's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        self.update(name, |user| {
            user.hash = hash_password(password)?;
            user.nt_hash = Some(nt_hash(password));
            Ok(())
        })
    }

    /// Deletes a user and the certificates mapped to it.
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut users = self.users()?;
        let before = users.len();
        let lower = name.to_lowercase();
        users.retain(|u| u.name.to_lowercase() != lower);
        if users.len() == before {
            return Err(Error::NotFound(name.to_string()));
        }
        self.write(&users)?;
        let mut mappings = self.cert_mappings()?;
        let before = mappings.len();
        mappings.retain(|m| m.user.to_lowercase() != lower);
        if mappings.len() != before {
            self.write_mappings(&mappings)?;
        }
        Ok(())
    }

    /// The certificate mapping file beside the database.
    pub fn certmap_path(&self) -> PathBuf {
        self.path.with_file_name("certmap")
    }

    /// Every certificate mapping; none when the file does not exist.
    pub fn cert_mappings(&self) -> Result<Vec<CertMapping>> {
        let path = self.certmap_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.splitn(3, ':');
            let (Some(thumb), Some(user)) = (fields.next(), fields.next()) else {
                return Err(Error::Corrupt {
                    path,
                    line: i + 1,
                    reason: "expected THUMBPRINT:name:subject".into(),
                });
            };
            let thumbprint = normalise_thumbprint(thumb).map_err(|_| Error::Corrupt {
                path: path.clone(),
                line: i + 1,
                reason: "the thumbprint is not 40 hex digits".into(),
            })?;
            out.push(CertMapping {
                thumbprint,
                user: user.to_string(),
                subject: fields.next().unwrap_or_default().to_string(),
            });
        }
        Ok(out)
    }

    /// Maps a certificate (by thumbprint) to an existing user, replacing
    /// the certificate's mapping before, if any.
    pub fn map_cert(&self, thumbprint: &str, subject: &str, name: &str) -> Result<CertMapping> {
        let thumbprint = normalise_thumbprint(thumbprint)?;
        let user = self
            .user(name)?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let mapping = CertMapping {
            thumbprint,
            user: user.name,
            // One line per mapping, whatever the subject holds.
            subject: subject.replace(['\r', '\n'], " "),
        };
        let mut mappings = self.cert_mappings()?;
        mappings.retain(|m| m.thumbprint != mapping.thumbprint);
        mappings.push(mapping.clone());
        self.write_mappings(&mappings)?;
        Ok(mapping)
    }

    /// Removes a certificate's mapping.
    pub fn unmap_cert(&self, thumbprint: &str) -> Result<CertMapping> {
        let thumbprint = normalise_thumbprint(thumbprint)?;
        let mut mappings = self.cert_mappings()?;
        let index = mappings
            .iter()
            .position(|m| m.thumbprint == thumbprint)
            .ok_or_else(|| Error::NotMapped(thumbprint.clone()))?;
        let removed = mappings.remove(index);
        self.write_mappings(&mappings)?;
        Ok(removed)
    }

    /// The user a certificate logs on as: mapped, and the user still in
    /// the database (its name as stored).
    pub fn user_for_cert(&self, thumbprint: &str) -> Result<Option<String>> {
        let thumbprint = normalise_thumbprint(thumbprint)?;
        let Some(mapping) = self
            .cert_mappings()?
            .into_iter()
            .find(|m| m.thumbprint == thumbprint)
        else {
            return Ok(None);
        };
        Ok(self.user(&mapping.user)?.map(|u| u.name))
    }

    fn write_mappings(&self, mappings: &[CertMapping]) -> Result<()> {
        let lines: Vec<String> = mappings
            .iter()
            .map(|m| format!("{}:{}:{}", m.thumbprint, m.user, m.subject))
            .collect();
        write_lines(&self.certmap_path(), &lines)
    }

    /// Whether the name and password match a user. Slow by design (the
    /// hash is Argon2id): callers cache successes.
    pub fn verify(&self, name: &str, password: &str) -> Result<bool> {
        let users = self.users()?;
        let Some(user) = Self::find(&users, name) else {
            // Spend the same time as a real check, so timing does not tell
            // which names exist.
            let _ = hash_password(password);
            return Ok(false);
        };
        let Ok(parsed) = PasswordHash::new(&user.hash) else {
            return Ok(false);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    }

    fn write(&self, users: &[User]) -> Result<()> {
        let lines: Vec<String> = users
            .iter()
            .map(|u| {
                let nt = u.nt_hash.map(hex::encode).unwrap_or_default();
                match (u.admin, u.nt_hash.is_some()) {
                    (true, _) => format!("{}:{}:{nt}:admin", u.name, u.hash),
                    (false, true) => format!("{}:{}:{nt}", u.name, u.hash),
                    (false, false) => format!("{}:{}", u.name, u.hash),
                }
            })
            .collect();
        write_lines(&self.path, &lines)
    }
}

/// Replaces `path` with `lines`, 0600, through a synced temporary file.
fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        for line in lines {
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// The NT hash of a password: MD4 of its UTF-16LE form ([MS-NLMP] 3.3.1).
pub fn nt_hash(password: &str) -> [u8; 16] {
    use md4::Digest;
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    md4::Md4::digest(&utf16).into()
}

fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_map_one_to_one_to_users_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::for_state_dir(dir.path());
        db.add("Alice", "pw").unwrap();
        db.add("bob", "pw").unwrap();
        let thumb = format!("ab:cd{}", "0".repeat(36));
        let mapped = db
            .map_cert(&thumb, "CN=alice, O=Corp: Sales", "alice")
            .unwrap();
        assert_eq!(mapped.thumbprint, format!("ABCD{}", "0".repeat(36)));
        assert_eq!(mapped.user, "Alice", "the name as stored");
        assert_eq!(
            db.user_for_cert(&thumb.to_lowercase()).unwrap().as_deref(),
            Some("Alice")
        );
        let mode = std::fs::metadata(db.certmap_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Mapped again: to the new user, one line still; the subject's
        // colons survive the file.
        db.map_cert(&thumb, "CN=x\nline", "bob").unwrap();
        let all = db.cert_mappings().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].subject, "CN=x line");
        db.map_cert(&"1".repeat(40), "CN=alice, O=Corp: Sales", "alice")
            .unwrap();
        assert_eq!(
            db.cert_mappings().unwrap()[1].subject,
            "CN=alice, O=Corp: Sales"
        );
        assert!(matches!(
            db.map_cert(&"2".repeat(40), "", "carol"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            db.map_cert("12345", "", "bob"),
            Err(Error::BadThumbprint(_))
        ));
        // A deleted user takes its mappings along.
        db.delete("bob").unwrap();
        assert_eq!(db.user_for_cert(&thumb).unwrap(), None);
        assert_eq!(db.cert_mappings().unwrap().len(), 1);
        db.unmap_cert(&"1".repeat(40)).unwrap();
        assert!(matches!(
            db.unmap_cert(&"1".repeat(40)),
            Err(Error::NotMapped(_))
        ));
        assert!(db.cert_mappings().unwrap().is_empty());
        // A hand-edited file with a bad line is an error naming the line.
        std::fs::write(db.certmap_path(), "nothex:alice:CN=a\n").unwrap();
        let e = db.cert_mappings().unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn add_verify_change_delete() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::for_state_dir(dir.path());
        assert!(db.users().unwrap().is_empty());
        db.add("alice", "s3cret").unwrap();
        db.add("bob", "pw").unwrap();
        assert!(matches!(db.add("ALICE", "x"), Err(Error::Exists(_))));
        assert!(db.verify("alice", "s3cret").unwrap());
        assert!(db.verify("Alice", "s3cret").unwrap(), "names ignore case");
        assert!(!db.verify("alice", "wrong").unwrap());
        assert!(!db.verify("nobody", "s3cret").unwrap());
        let text = std::fs::read_to_string(db.path()).unwrap();
        assert!(!text.contains("s3cret") && text.contains("alice:$argon2id$"));
        let mode = std::fs::metadata(db.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        db.set_password("alice", "new").unwrap();
        assert!(!db.verify("alice", "s3cret").unwrap() && db.verify("alice", "new").unwrap());
        db.delete("BOB").unwrap();
        assert!(matches!(db.delete("bob"), Err(Error::NotFound(_))));
        let names: Vec<String> = db.users().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, vec!["alice"]);
    }

    #[test]
    fn nt_hashes_are_kept_and_old_lines_still_read() {
        // [MS-NLMP] 4.2.1: the password "Password" has this NTOWFv1.
        assert_eq!(
            hex::encode(nt_hash("Password")),
            "a4f49c406510bdcab6824ee7c30fd852"
        );
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::for_state_dir(dir.path());
        db.add("alice", "Password").unwrap();
        let text = std::fs::read_to_string(db.path()).unwrap();
        assert!(
            text.trim_end()
                .ends_with(":a4f49c406510bdcab6824ee7c30fd852"),
            "{text}"
        );
        assert_eq!(
            db.user("ALICE").unwrap().unwrap().nt_hash,
            Some(nt_hash("Password"))
        );
        // A line from before NT hashes: read, usable for Basic, no NT hash.
        let old = text.rsplit_once(':').unwrap().0.to_string();
        std::fs::write(db.path(), format!("{}\n", old.replace("alice", "bob"))).unwrap();
        let bob = db.user("bob").unwrap().unwrap();
        assert_eq!(bob.nt_hash, None);
        assert!(db.verify("bob", "Password").unwrap());
        db.set_password("bob", "new").unwrap();
        assert_eq!(
            db.user("bob").unwrap().unwrap().nt_hash,
            Some(nt_hash("new"))
        );
        // A damaged NT hash is reported, not ignored.
        std::fs::write(db.path(), format!("{old}:xyz\n")).unwrap();
        let err = db.users().unwrap_err().to_string();
        assert!(err.contains("NT hash"), "{err}");
    }

    #[test]
    fn bad_names_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::for_state_dir(dir.path());
        for bad in ["", "a:b", "a b", "dom\\user", &"x".repeat(65)] {
            assert!(
                matches!(db.add(bad, "pw"), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        db.add("alice", "pw").unwrap();
        let mut text = std::fs::read_to_string(db.path()).unwrap();
        text.push_str("garbage\n");
        std::fs::write(db.path(), text).unwrap();
        let err = db.users().unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("NAME:HASH"), "{err}");
        assert!(
            db.add("bob", "x").is_err(),
            "a damaged file is not overwritten"
        );
    }
}
