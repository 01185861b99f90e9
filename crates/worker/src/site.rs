//! From a request to the metabase: the site (the URL context the activation
//! service gave the prefix), the metabase path of the URL
//! (`/LM/W3SVC/<site>/ROOT/<segments>`), the physical path (the nearest
//! Path, with the URL segments below the key that sets it), and every
//! setting in force there, inherited as IIS inherits them.

use std::path::PathBuf;
use std::sync::Arc;

use metabase::{GetMode, MbPath, Snapshot, Value};

/// Metabase IDs the pipeline reads.
pub use metabase::ids;

/// AccessFlags bits.
pub mod access {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const EXECUTE: u32 = 0x4;
    pub const SOURCE: u32 = 0x10;
    pub const SCRIPT: u32 = 0x200;
    pub const NO_PHYSICAL_DIR: u32 = 0x8000;
}

/// DirBrowseFlags bits.
pub mod browse {
    pub const SHOW_DATE: u32 = 0x2;
    pub const SHOW_TIME: u32 = 0x4;
    pub const SHOW_SIZE: u32 = 0x8;
    pub const SHOW_EXTENSION: u32 = 0x10;
    pub const SHOW_LONG_DATE: u32 = 0x20;
    pub const ENABLE_DEFAULT_DOC: u32 = 0x4000_0000;
    pub const ENABLE_DIR_BROWSING: u32 = 0x8000_0000;
}

/// AuthFlags bits.
pub mod auth {
    pub const ANONYMOUS: u32 = 0x1;
    pub const BASIC: u32 = 0x2;
}

/// A request's place in the configuration.
pub struct Location {
    pub snapshot: Arc<Snapshot>,
    pub site_id: u32,
    /// The metabase path of the URL; it need not exist as a key.
    pub mb_path: MbPath,
    /// The file-system path, when a Path is in force.
    pub physical: Option<PathBuf>,
    /// The URL and file-system path of the key that sets Path (the
    /// virtual directory), as HSE_URL_MAPEX_INFO counts them.
    pub vdir: Option<(String, String)>,
}

impl Location {
    /// Resolves a decoded URL path of `site_id`.
    pub fn resolve(snapshot: Arc<Snapshot>, site_id: u32, url_path: &str) -> Option<Location> {
        let mut parts = vec![
            "LM".to_string(),
            "W3SVC".to_string(),
            site_id.to_string(),
            "ROOT".to_string(),
        ];
        let base = parts.len();
        for segment in url_path.split('/').filter(|s| !s.is_empty()) {
            // The listener removed dot segments and NUL; refuse what would
            // still step outside the tree.
            if segment == "." || segment == ".." || segment.contains('\0') {
                return None;
            }
            parts.push(segment.to_string());
        }
        let mb_path = MbPath::from_parts(parts).ok()?;
        let mut vdir = None;
        let physical = match snapshot
            .lookup(&mb_path, ids::PATH, GetMode::PartialPath)
            .ok()?
        {
            Some((property, depth)) => property.value.as_str().map(|root| {
                let depth = depth.max(base);
                let url: String = mb_path.parts()[base..depth]
                    .iter()
                    .map(|s| format!("/{s}"))
                    .collect();
                vdir = Some((url, root.to_string()));
                let mut p = PathBuf::from(root);
                // Segments below the key that sets Path are file-system names.
                for segment in &mb_path.parts()[depth..] {
                    p.push(segment);
                }
                p
            }),
            None => None,
        };
        Some(Location {
            snapshot,
            site_id,
            mb_path,
            physical,
            vdir,
        })
    }

    /// A DWORD (flags, BOOL) in force here, or the schema default.
    pub fn dword(&self, id: u32) -> u32 {
        self.snapshot
            .effective_dword(&self.mb_path, id)
            .unwrap_or(0)
    }

    pub fn string(&self, id: u32) -> Option<String> {
        match self.snapshot.effective(&self.mb_path, id)? {
            Value::String(s) | Value::ExpandSz(s) => Some(s),
            _ => None,
        }
    }

    pub fn list(&self, id: u32) -> Vec<String> {
        match self.snapshot.effective(&self.mb_path, id) {
            Some(Value::MultiSz(v)) => v,
            _ => Vec::new(),
        }
    }

    /// A value set on this key or inherited, without schema defaults.
    pub fn explicit_string(&self, id: u32) -> Option<String> {
        let (property, _) = self
            .snapshot
            .lookup(&self.mb_path, id, GetMode::PartialPath)
            .ok()??;
        property.value.as_str().map(str::to_string)
    }

    /// The metabase path of the site's root, `/LM/W3SVC/<id>/ROOT`.
    pub fn site_root(&self) -> MbPath {
        MbPath::from_parts(["LM", "W3SVC", &self.site_id.to_string(), "ROOT"]).unwrap_or_default()
    }

    /// The global MIME map (`/LM/MimeMap`) overlaid with the map in force
    /// here; `None` when the extension has no type.
    pub fn mime_type(&self, file_name: &str) -> Option<String> {
        let extension = match file_name.rfind('.') {
            Some(i) if i > 0 => file_name[i..].to_ascii_lowercase(),
            _ => String::new(),
        };
        let lookup = |entries: &[String]| -> Option<String> {
            let mut wildcard = None;
            for entry in entries {
                let (ext, mime) = entry.split_once(',')?;
                let ext = ext.trim();
                if ext.eq_ignore_ascii_case(&extension) && !extension.is_empty() {
                    return Some(mime.trim().to_string());
                }
                if ext == "*" {
                    wildcard = Some(mime.trim().to_string());
                }
            }
            wildcard
        };
        let local = self.list(ids::MIME_MAP);
        if let Some(found) = lookup(&local) {
            return Some(found);
        }
        let global_path = MbPath::from_parts(["LM", "MimeMap"]).ok()?;
        match self.snapshot.effective(&global_path, ids::MIME_MAP) {
            Some(Value::MultiSz(entries)) => lookup(&entries),
            _ => None,
        }
    }
}

/// Fixture helpers for the crate's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use metabase::MbPath;

    pub fn p(s: &str) -> MbPath {
        MbPath::parse(s).unwrap()
    }

    /// `mb set PATH/PROP VALUES…` inside a transaction.
    pub fn set(t: &mut metabase::Txn, path: &str, prop: &str, v: &[&str]) -> metabase::Result<()> {
        let values: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        t.set_text(&p(path), prop, &values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metabase::Metabase;

    use crate::site::testing::{p, set};

    fn snapshot() -> Arc<Snapshot> {
        let mb = Metabase::empty();
        mb.write(|t| {
            t.create_key(&p("/LM/MimeMap"), "IIsMimeMap")?;
            set(
                t,
                "/LM/MimeMap",
                "MimeMap",
                &[".htm,text/html", ".txt,text/plain"],
            )?;
            t.create_key(&p("/LM/W3SVC"), "IIsWebService")?;
            t.create_key(&p("/LM/W3SVC/1"), "IIsWebServer")?;
            t.create_key(&p("/LM/W3SVC/1/ROOT"), "IIsWebVirtualDir")?;
            set(t, "/LM/W3SVC/1/ROOT", "Path", &["/srv/www"])?;
            set(t, "/LM/W3SVC/1/ROOT", "AccessFlags", &["AccessRead"])?;
            t.create_key(&p("/LM/W3SVC/1/ROOT/docs"), "IIsWebVirtualDir")?;
            set(t, "/LM/W3SVC/1/ROOT/docs", "Path", &["/srv/documents"])?;
            set(
                t,
                "/LM/W3SVC/1/ROOT/docs",
                "MimeMap",
                &[".md,text/markdown"],
            )?;
            t.create_key(&p("/LM/W3SVC/1/ROOT/docs/private"), "IIsWebDirectory")?;
            set(t, "/LM/W3SVC/1/ROOT/docs/private", "AccessFlags", &["0"])
        })
        .unwrap();
        mb.snapshot()
    }

    #[test]
    fn physical_paths_follow_virtual_directories() {
        let s = snapshot();
        let at = |url: &str| Location::resolve(s.clone(), 1, url).unwrap();
        assert_eq!(at("/").physical.unwrap(), PathBuf::from("/srv/www"));
        assert_eq!(
            at("/a/b.htm").physical.unwrap(),
            PathBuf::from("/srv/www/a/b.htm")
        );
        assert_eq!(
            at("/docs/x/y.md").physical.unwrap(),
            PathBuf::from("/srv/documents/x/y.md")
        );
        // An IIsWebDirectory has no Path: the virtual directory's applies.
        assert_eq!(
            at("/docs/private/f").physical.unwrap(),
            PathBuf::from("/srv/documents/private/f")
        );
        assert_eq!(at("/docs/private/f").dword(ids::ACCESS_FLAGS), 0);
        assert_eq!(at("/docs/public/f").dword(ids::ACCESS_FLAGS), access::READ);
        assert_eq!(
            at("//a//b").physical.unwrap(),
            PathBuf::from("/srv/www/a/b")
        );
        assert!(Location::resolve(s.clone(), 1, "/a/../b").is_none());
        assert!(Location::resolve(s.clone(), 2, "/")
            .unwrap()
            .physical
            .is_none());
    }

    #[test]
    fn mime_types() {
        let s = snapshot();
        let root = Location::resolve(s.clone(), 1, "/").unwrap();
        assert_eq!(root.mime_type("index.HTM").as_deref(), Some("text/html"));
        assert_eq!(root.mime_type("notes.md"), None, "404.3 outside /docs");
        assert_eq!(root.mime_type("noext"), None);
        let docs = Location::resolve(s, 1, "/docs/").unwrap();
        assert_eq!(docs.mime_type("notes.md").as_deref(), Some("text/markdown"));
        assert_eq!(docs.mime_type("a.txt").as_deref(), Some("text/plain"));
    }
}
