//! Metabase paths (`/LM/W3SVC/1/ROOT`): parsing, normalisation and
//! case-insensitive key names.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

use crate::error::{Error, Result};

/// ADMINDATA_MAX_NAME_LEN ([MS-IMSA] 2.2.1): the longest key name.
pub const MAX_NAME_LEN: usize = 256;

/// A parsed, absolute metabase path: the key names below the root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MbPath {
    parts: Vec<String>,
}

impl MbPath {
    /// The root key `/`.
    pub fn root() -> MbPath {
        MbPath::default()
    }

    /// Parses an absolute path (`/LM/W3SVC/1`). `\` is accepted as a
    /// separator, repeated separators collapse, a trailing one is ignored.
    pub fn parse(text: &str) -> Result<MbPath> {
        let invalid = |reason: &str| Error::InvalidPath {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = Vec::new();
        for part in text.split(['/', '\\']) {
            if part.is_empty() {
                continue;
            }
            if part.chars().count() > MAX_NAME_LEN {
                return Err(invalid("a key name is longer than 256 characters"));
            }
            if part.chars().any(|c| c.is_control()) {
                return Err(invalid("key names may not contain control characters"));
            }
            if part == "." || part == ".." {
                return Err(invalid("'.' and '..' are not key names"));
            }
            parts.push(part.to_string());
        }
        Ok(MbPath { parts })
    }

    /// Parses a path as the command line gives it, the way adsutil does:
    /// a path not starting with `/` is relative to `/LM`, so `W3SVC/1`
    /// means `/LM/W3SVC/1` (and `LM/W3SVC/1` is accepted too).
    pub fn parse_relaxed(text: &str) -> Result<MbPath> {
        let absolute = text.starts_with('/') || text.starts_with('\\');
        let mut path = MbPath::parse(text)?;
        if !absolute
            && path
                .parts
                .first()
                .is_none_or(|first| !first.eq_ignore_ascii_case("LM"))
        {
            path.parts.insert(0, "LM".to_string());
        }
        Ok(path)
    }

    pub fn from_parts<I: IntoIterator<Item = S>, S: Into<String>>(parts: I) -> Result<MbPath> {
        let joined: Vec<String> = parts.into_iter().map(Into::into).collect();
        MbPath::parse(&format!("/{}", joined.join("/")))
    }

    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn depth(&self) -> usize {
        self.parts.len()
    }

    pub fn name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    pub fn parent(&self) -> Option<MbPath> {
        if self.parts.is_empty() {
            None
        } else {
            Some(MbPath {
                parts: self.parts[..self.parts.len() - 1].to_vec(),
            })
        }
    }

    pub fn join(&self, name: &str) -> Result<MbPath> {
        let child = MbPath::parse(name)?;
        let mut parts = self.parts.clone();
        parts.extend(child.parts);
        Ok(MbPath { parts })
    }

    /// True when `self` is `other` or lies below it (case-insensitively).
    pub fn starts_with(&self, other: &MbPath) -> bool {
        other.parts.len() <= self.parts.len()
            && self
                .parts
                .iter()
                .zip(&other.parts)
                .all(|(a, b)| CiStr::new(a) == CiStr::new(b))
    }

    /// The path below `base`, as a relative string (`ROOT/images`).
    pub fn relative_to(&self, base: &MbPath) -> Option<String> {
        if !self.starts_with(base) {
            return None;
        }
        Some(self.parts[base.parts.len()..].join("/"))
    }

    pub fn eq_ignore_case(&self, other: &MbPath) -> bool {
        self.parts.len() == other.parts.len() && self.starts_with(other)
    }
}

impl fmt::Display for MbPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for part in &self.parts {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

/// A borrowed key name compared case-insensitively, as the metabase compares
/// names. Lets a map keyed by [`CiName`] be searched without allocating.
#[repr(transparent)]
#[derive(Debug)]
pub struct CiStr(str);

impl CiStr {
    #[allow(unsafe_code)]
    pub fn new(s: &str) -> &CiStr {
        // SAFETY: CiStr is a repr(transparent) wrapper around str.
        unsafe { &*(s as *const str as *const CiStr) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn folded(&self) -> impl Iterator<Item = char> + '_ {
        self.0.chars().flat_map(char::to_lowercase)
    }
}

impl PartialEq for CiStr {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for CiStr {}

impl Ord for CiStr {
    /// One pass over the bytes while they are ASCII; Unicode case folding
    /// only for names that need it. Both orders agree: up to the first
    /// difference the names are equal ASCII, and ASCII folds to itself.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        for (x, y) in a.iter().zip(b) {
            if (x | y) & 0x80 != 0 {
                return self.folded().cmp(other.folded());
            }
            match x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()) {
                Ordering::Equal => {}
                order => return order,
            }
        }
        match a.len().cmp(&b.len()) {
            Ordering::Equal => Ordering::Equal,
            // A longer name's non-ASCII tail folds to at least one char.
            _ if a.len() > b.len() && !a[b.len()..].is_ascii() => self.folded().cmp(other.folded()),
            _ if b.len() > a.len() && !b[a.len()..].is_ascii() => self.folded().cmp(other.folded()),
            order => order,
        }
    }
}

impl PartialOrd for CiStr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An owned key name compared case-insensitively.
#[derive(Clone, Debug)]
pub struct CiName(String);

impl CiName {
    pub fn new(s: impl Into<String>) -> CiName {
        CiName(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<CiStr> for CiName {
    fn borrow(&self) -> &CiStr {
        CiStr::new(&self.0)
    }
}

impl PartialEq for CiName {
    fn eq(&self, other: &Self) -> bool {
        CiStr::new(&self.0) == CiStr::new(&other.0)
    }
}

impl Eq for CiName {}

impl Ord for CiName {
    fn cmp(&self, other: &Self) -> Ordering {
        CiStr::new(&self.0).cmp(CiStr::new(&other.0))
    }
}

impl PartialOrd for CiName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(
            MbPath::parse("/LM/W3SVC/1/ROOT").unwrap().to_string(),
            "/LM/W3SVC/1/ROOT"
        );
        assert_eq!(
            MbPath::parse("\\LM\\W3SVC//1/").unwrap().to_string(),
            "/LM/W3SVC/1"
        );
        assert!(MbPath::parse("/").unwrap().is_root());
        assert_eq!(
            MbPath::parse_relaxed("W3SVC/1").unwrap().to_string(),
            "/LM/W3SVC/1"
        );
        assert_eq!(
            MbPath::parse_relaxed("lm/W3SVC").unwrap().to_string(),
            "/lm/W3SVC"
        );
        assert_eq!(MbPath::parse_relaxed("/").unwrap().to_string(), "/");
        assert_eq!(MbPath::parse_relaxed("").unwrap().to_string(), "/LM");
    }

    #[test]
    fn parse_rejections() {
        assert!(MbPath::parse("/LM/../x").is_err());
        assert!(MbPath::parse("/LM/a\u{1}b").is_err());
        assert!(MbPath::parse(&format!("/{}", "x".repeat(257))).is_err());
        assert!(MbPath::parse(&format!("/{}", "x".repeat(256))).is_ok());
    }

    #[test]
    fn relations() {
        let a = MbPath::parse("/LM/W3SVC/1/ROOT/images").unwrap();
        let b = MbPath::parse("/lm/w3svc/1").unwrap();
        assert!(a.starts_with(&b));
        assert_eq!(a.relative_to(&b).unwrap(), "ROOT/images");
        assert!(!b.starts_with(&a));
        assert_eq!(a.parent().unwrap().to_string(), "/LM/W3SVC/1/ROOT");
        assert!(MbPath::root().parent().is_none());
    }

    #[test]
    fn fast_comparison_agrees_with_unicode_folding() {
        let alphabet = ['a', 'B', 'z', 'Z', '0', '_', 'é', 'É', 'ß', 'İ', 'k', 'K'];
        let mut seed = 12345u64;
        let mut name = |len: u64| -> String {
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect()
        };
        for i in 0..20_000u64 {
            let (a, b) = (name(i % 5), name((i / 5) % 5));
            let reference = CiStr::new(&a).folded().cmp(CiStr::new(&b).folded());
            assert_eq!(
                CiStr::new(&a).cmp(CiStr::new(&b)),
                reference,
                "{a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn case_insensitive_names() {
        assert_eq!(CiStr::new("ROOT"), CiStr::new("root"));
        assert_eq!(CiStr::new("Ärger"), CiStr::new("äRGER"));
        assert!(CiName::new("a") < CiName::new("B"));
        assert!(CiStr::new("ab") < CiStr::new("abc"));
        assert!(CiStr::new("ABC") > CiStr::new("ab"));
        assert_ne!(CiStr::new("ab"), CiStr::new("abé"));
        assert!(CiStr::new("abé") > CiStr::new("ab"));
        let mut map = std::collections::BTreeMap::new();
        map.insert(CiName::new("Default"), 1);
        assert_eq!(map.get(CiStr::new("DEFAULT")), Some(&1));
    }
}
