//! Static compression as IIS 6 does it: a compressed copy of a file is made
//! once, kept in the compression directory (HcCompressionDirectory), and
//! served to every client that accepts the scheme until the file changes.

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

/// The compressed copy of `file` for `scheme` (`gzip` or `deflate`),
/// made now if there is none for this version of the file.
pub fn compressed_copy(
    content: &Content,
    directory: &Path,
    file: &Path,
    info: &FileInfo,
    scheme: &str,
    level: u32,
) -> std::io::Result<PathBuf> {
    let mut hash = Sha256::new();
    hash.update(file.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(info.etag().as_bytes());
    let name = format!("{}.{scheme}", hex(&hash.finalize()[..16]));
    let target = directory.join(name);
    if content.metadata(&target).is_ok_and(|m| m.is_file()) {
        return Ok(target);
    }
    let level = flate2::Compression::new(level.min(9));
    let input = content.read(file)?;
    let mut temp = content.create_temp(&target, ".inetsrv-gz-")?;
    let mut out = std::io::BufWriter::new(&mut temp.file);
    match scheme {
        "gzip" => {
            let mut enc = flate2::write::GzEncoder::new(&mut out, level);
            enc.write_all(&input)?;
            enc.finish()?;
        }
        _ => {
            let mut enc = flate2::write::ZlibEncoder::new(&mut out, level);
            enc.write_all(&input)?;
            enc.finish()?;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?;
    content.persist(temp, &target)?;
    Ok(target)
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
        let copy = compressed_copy(&c, &cache, &file, &info, "gzip", 10).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&copy).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello hello hello hello");
        assert_eq!(
            compressed_copy(&c, &cache, &file, &info, "gzip", 10).unwrap(),
            copy
        );
        let other = FileInfo { len: 1, ..info };
        assert_ne!(
            compressed_copy(&c, &cache, &file, &other, "gzip", 10).unwrap(),
            copy
        );
        let deflate = compressed_copy(&c, &cache, &file, &info, "deflate", 1).unwrap();
        let mut text = String::new();
        flate2::read::ZlibDecoder::new(std::fs::File::open(deflate).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello hello hello hello");
    }
}
