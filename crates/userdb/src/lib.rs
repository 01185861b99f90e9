//! inetsrv's own user database, for Basic authentication (the role the
//! Windows account database plays for IIS 6).
//!
//! One file (`DIR/users`), mode 0600, one user per line:
//! `name:$argon2id$v=19$...`. Passwords are kept only as Argon2id hashes
//! with a random salt each. Names compare without regard to case, as
//! Windows account names do. Every change is written to a temporary file,
//! synced and renamed over the old one, so a crash never leaves a torn
//! file and concurrent readers see the old or the new version whole.

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
}

pub type Result<T> = std::result::Result<T, Error>;

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The PHC string of the password's hash.
    pub hash: String,
}

/// The user database file.
#[derive(Clone, Debug)]
pub struct UserDb {
    path: PathBuf,
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
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| corrupt("expected NAME:HASH"))?;
            check_name(name).map_err(|e| corrupt(&e.to_string()))?;
            PasswordHash::new(hash).map_err(|_| corrupt("the hash is not a PHC string"))?;
            users.push(User {
                name: name.to_string(),
                hash: hash.to_string(),
            });
        }
        Ok(users)
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
        });
        self.write(&users)
    }

    /// Sets an existing user's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let mut users = self.users()?;
        let lower = name.to_lowercase();
        let user = users
            .iter_mut()
            .find(|u| u.name.to_lowercase() == lower)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        user.hash = hash_password(password)?;
        self.write(&users)
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        let mut users = self.users()?;
        let before = users.len();
        let lower = name.to_lowercase();
        users.retain(|u| u.name.to_lowercase() != lower);
        if users.len() == before {
            return Err(Error::NotFound(name.to_string()));
        }
        self.write(&users)
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
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self
            .path
            .with_file_name(format!(".users.tmp.{}", std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            for u in users {
                writeln!(file, "{}:{}", u.name, u.hash)?;
            }
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
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
