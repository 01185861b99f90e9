//! Static compression as IIS 6 does it: a compressed copy of a file is made
//! once, in the background (the first requests get the file as it is),
//! kept in the compression directory (HcCompressionDirectory), and served
//! to every client that accepts the scheme until the file changes.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::content::Content;
use crate::files::FileInfo;

/// Whether an Accept-Encoding value accepts `coding` (q > 0, directly or
/// through `*`).
pub fn accepts(header: Option<&str>, coding: &str) -> bool {
    let Some(header) = header else { return false };
    let mut star = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .filter_map(|v| v.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case(coding) {
            return q > 0.0;
        }
        if name == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

/// Where the compressed copy of this version of `file` for `scheme`
/// (`gzip` or `deflate`) is kept: one name per file, version and scheme.
pub fn copy_path(directory: &Path, file: &Path, info: &FileInfo, scheme: &str) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(file.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(info.etag().as_bytes());
    directory.join(format!("{}.{scheme}", hex(&hash.finalize()[..16])))
}

/// Makes the compressed copy `target` of `file`, streaming (the file is
/// never in memory whole). It runs on the blocking pool: compressing a
/// large file takes a while, and no request waits for it.
pub fn make_copy(
    content: &Content,
    file: &Path,
    target: &Path,
    scheme: &str,
    level: u32,
) -> std::io::Result<()> {
    let level = flate2::Compression::new(level.min(9));
    let mut input = std::io::BufReader::with_capacity(64 * 1024, content.open(file)?);
    let mut temp = content.create_temp(target, ".inetsrv-gz-")?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, &mut temp.file);
    match scheme {
        "gzip" => {
            let mut enc = flate2::write::GzEncoder::new(&mut out, level);
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?;
        }
        _ => {
            let mut enc = flate2::write::ZlibEncoder::new(&mut out, level);
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?;
        }
    }
    out.flush()?;
    drop(out);
    content.persist(temp, target)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn accept_encoding() {
        assert!(accepts(Some("gzip, deflate, br"), "gzip"));
        assert!(accepts(Some("deflate;q=0.5, GZIP;q=1.0"), "gzip"));
        assert!(!accepts(Some("gzip;q=0"), "gzip"));
        assert!(!accepts(Some("br"), "gzip"));
        assert!(accepts(Some("*"), "gzip"));
        assert!(!accepts(Some("*;q=0"), "gzip"));
        assert!(!accepts(Some("gzip;q=0, *"), "gzip"));
        assert!(!accepts(None, "gzip"));
    }

    #[test]
    fn copies_are_made_once_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("page.htm");
        std::fs::write(&file, "hello hello hello hello").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let info = FileInfo {
            len: meta.len(),
            modified: meta.modified().unwrap(),
            variant: None,
        };
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let root = |p: &Path| (p.to_path_buf(), worker_control::open_root(p).unwrap());
        let c = Content::new(vec![root(dir.path()), root(&cache)]);
        let copy = copy_path(&cache, &file, &info, "gzip");
        make_copy(&c, &file, &copy, "gzip", 10).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&copy).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello hello hello hello");
        // One name per version and scheme.
        assert_eq!(copy_path(&cache, &file, &info, "gzip"), copy);
        let other = FileInfo { len: 1, ..info };
        assert_ne!(copy_path(&cache, &file, &other, "gzip"), copy);
        let deflate = copy_path(&cache, &file, &info, "deflate");
        assert_ne!(deflate, copy);
        make_copy(&c, &file, &deflate, "deflate", 1).unwrap();
        let mut text = String::new();
        flate2::read::ZlibDecoder::new(std::fs::File::open(deflate).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello hello hello hello");
        // Nothing but the two copies is left in the directory.
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    }
}
