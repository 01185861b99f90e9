//! Directory browsing as IIS 6 renders it: a `[To Parent Directory]` link
//! and one line per entry, with the columns DirBrowseFlags asks for
//! (date, time, size, extension, long date).

use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Local};

use crate::content::Content;
use crate::site::browse;

/// One entry of a directory.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub len: u64,
    pub modified: SystemTime,
}

/// Reads a directory's entries, sorted by name; names starting with a dot
/// (hidden files on Unix) and names that are not UTF-8 are left out.
pub fn read_entries(content: &Content, dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    // Symbolic links are described by what they point to.
    for (name, meta) in content.read_dir(dir)? {
        if name.starts_with('.') {
            continue;
        }
        entries.push(Entry {
            name,
            is_dir: meta.is_dir(),
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    entries.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.name.cmp(&b.name))
    });
    Ok(entries)
}

pub use httpapi::html_escape;

/// Percent-encodes a URL path segment (RFC 3986 unreserved characters and
/// the sub-delimiters a path may carry are kept).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'$'
            | b'&'
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes a whole path, keeping its slashes.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// The listing page of `url_path` (which ends in `/`) on `host`.
pub fn render(host: &str, url_path: &str, entries: &[Entry], flags: u32) -> String {
    let title = format!("{} - {}", html_escape(host), html_escape(url_path));
    let mut out =
        format!("<html><head><title>{title}</title></head><body><H1>{title}</H1><hr>\r\n\r\n<pre>");
    if url_path != "/" {
        let trimmed = url_path.trim_end_matches('/');
        let parent = &trimmed[..trimmed.rfind('/').map(|i| i + 1).unwrap_or(1)];
        out.push_str(&format!(
            "<A HREF=\"{}\">[To Parent Directory]</A><br><br>",
            encode_path(parent)
        ));
    }
    for entry in entries {
        let modified: DateTime<Local> = entry.modified.into();
        let mut line = String::new();
        if flags & browse::SHOW_DATE != 0 {
            let date = if flags & browse::SHOW_LONG_DATE != 0 {
                modified.format("%A, %B %e, %Y").to_string()
            } else {
                modified.format("%-m/%-d/%Y").to_string()
            };
            line.push_str(&format!("{date:>30}"));
        }
        if flags & browse::SHOW_TIME != 0 {
            line.push_str(&format!(" {:>8}", modified.format("%-I:%M %p").to_string()));
        }
        if flags & browse::SHOW_SIZE != 0 {
            if entry.is_dir {
                line.push_str(&format!(" {:>12}", "&lt;dir&gt;"));
            } else {
                line.push_str(&format!(" {:>12}", entry.len));
            }
        }
        let shown = if entry.is_dir || flags & browse::SHOW_EXTENSION != 0 {
            entry.name.as_str()
        } else {
            match entry.name.rfind('.') {
                Some(i) if i > 0 => &entry.name[..i],
                _ => entry.name.as_str(),
            }
        };
        let mut href = format!("{}{}", encode_path(url_path), encode_segment(&entry.name));
        if entry.is_dir {
            href.push('/');
        }
        out.push_str(&format!(
            "{line} <A HREF=\"{href}\">{}</A><br>",
            html_escape(shown)
        ));
    }
    out.push_str("</pre><hr></body></html>\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                name: "sub dir".into(),
                is_dir: true,
                len: 0,
                modified: SystemTime::UNIX_EPOCH,
            },
            Entry {
                name: "a<b>.txt".into(),
                is_dir: false,
                len: 1234,
                modified: SystemTime::UNIX_EPOCH,
            },
        ]
    }

    #[test]
    fn columns_follow_the_flags() {
        let all =
            browse::SHOW_DATE | browse::SHOW_TIME | browse::SHOW_SIZE | browse::SHOW_EXTENSION;
        let page = render("example", "/docs/", &entries(), all);
        assert!(page.contains("<title>example - /docs/</title>"));
        assert!(page.contains("<A HREF=\"/\">[To Parent Directory]</A>"));
        assert!(page.contains("&lt;dir&gt; <A HREF=\"/docs/sub%20dir/\">sub dir</A>"));
        assert!(page.contains("1234 <A HREF=\"/docs/a%3Cb%3E.txt\">a&lt;b&gt;.txt</A>"));
        let bare = render("example", "/docs/", &entries(), 0);
        assert!(
            bare.contains(" <A HREF=\"/docs/a%3Cb%3E.txt\">a&lt;b&gt;</A>"),
            "no extension: {bare}"
        );
        assert!(!bare.contains("1234"));
        let root = render("example", "/", &entries(), 0);
        assert!(!root.contains("Parent Directory"));
        let nested = render("h", "/a/b/", &[], 0);
        assert!(nested.contains("<A HREF=\"/a/\">[To Parent Directory]</A>"));
    }

    #[test]
    fn reads_a_directory_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("B.txt"), "x").unwrap();
        std::fs::write(dir.path().join("a.txt"), "xy").unwrap();
        std::fs::write(dir.path().join(".hidden"), "").unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        let content = Content::new(vec![(
            dir.path().to_path_buf(),
            worker_control::open_root(dir.path()).unwrap(),
        )]);
        let names: Vec<String> = read_entries(&content, dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["a.txt", "B.txt", "c"]);
    }
}
