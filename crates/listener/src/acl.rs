//! URL reservations (URL ACLs): which users may register which prefixes.
//! A program is known by the Unix credentials of its control-socket
//! connection (SO_PEERCRED). Root and the user the listener runs as may
//! register anything; anyone else needs a reservation that covers the
//! prefix (same scheme, host and port, a path at or above it).
//!
//! Reservations live in a JSON file that `inetsrv urlacl` edits; the
//! listener reads it at each registration, so changes apply at once.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::routing::UrlPrefix;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub prefix: String,
    /// The users (uids) it is reserved for.
    pub users: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlAcl {
    pub reservations: Vec<Reservation>,
}

impl UrlAcl {
    /// Reads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<UrlAcl, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UrlAcl::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file (readable by all: reservations are not secret).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reserves `prefix` for `uid` (adding to an existing reservation).
    pub fn add(&mut self, prefix: &str, uid: u32) -> Result<(), String> {
        let parsed = UrlPrefix::parse(prefix).map_err(|e| e.to_string())?;
        let canonical = parsed.to_string();
        match self.reservations.iter_mut().find(|r| r.prefix == canonical) {
            Some(r) if r.users.contains(&uid) => {}
            Some(r) => r.users.push(uid),
            None => self.reservations.push(Reservation {
                prefix: canonical,
                users: vec![uid],
            }),
        }
        Ok(())
    }

    /// Removes the reservation of `prefix`.
    pub fn delete(&mut self, prefix: &str) -> Result<Reservation, String> {
        let canonical = UrlPrefix::parse(prefix)
            .map_err(|e| e.to_string())?
            .to_string();
        let i = self
            .reservations
            .iter()
            .position(|r| r.prefix == canonical)
            .ok_or_else(|| format!("no reservation for {canonical}"))?;
        Ok(self.reservations.remove(i))
    }

    /// Whether `uid` may register `prefix` under these reservations.
    pub fn allows(&self, uid: u32, prefix: &UrlPrefix) -> bool {
        self.reservations.iter().any(|r| {
            r.users.contains(&uid) && UrlPrefix::parse(&r.prefix).is_ok_and(|p| p.covers(prefix))
        })
    }
}

/// The uid of a user name, from /etc/passwd; numbers are taken as uids.
pub fn resolve_user(name: &str) -> Result<u32, String> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let user = f.next()?;
            let uid = f.nth(1)?.parse::<u32>().ok()?;
            (user == name).then_some(uid)
        })
        .next()
        .ok_or_else(|| format!("no user named '{name}' (give a uid instead)"))
}

/// The name of a uid, for display.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let user = f.next()?;
                (f.nth(1)? == uid.to_string()).then(|| user.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("urlacl.json");
        let mut acl = UrlAcl::load(&file).unwrap();
        acl.add("http://+:8080/app", 1000).unwrap();
        acl.add("HTTP://+:8080/app/", 1001).unwrap();
        acl.save(&file).unwrap();
        let acl = UrlAcl::load(&file).unwrap();
        assert_eq!(acl.reservations.len(), 1);
        assert_eq!(acl.reservations[0].users, vec![1000, 1001]);
        let p = |s: &str| UrlPrefix::parse(s).unwrap();
        assert!(acl.allows(1000, &p("http://+:8080/app/sub/")));
        assert!(!acl.allows(1002, &p("http://+:8080/app/")));
        assert!(!acl.allows(1000, &p("http://+:8080/")));
        assert!(!acl.allows(1000, &p("http://*:8080/app/")));
        let mut acl = acl;
        assert!(acl.delete("http://+:8080/app/").is_ok());
        assert!(acl.delete("http://+:8080/app/").is_err());
        assert!(acl.add("not a prefix", 1).is_err());
        std::fs::write(&file, "{broken").unwrap();
        assert!(UrlAcl::load(&file).is_err());
    }

    #[test]
    fn users() {
        assert_eq!(resolve_user("root").unwrap(), 0);
        assert_eq!(resolve_user("4242").unwrap(), 4242);
        assert!(resolve_user("no-such-user-here").is_err());
        assert_eq!(user_name(0), "root");
    }
}
