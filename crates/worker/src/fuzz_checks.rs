//! The properties the `config_values` fuzz target checks for the worker's
//! parsers of metabase values and request headers, shared with the test
//! suite that replays the fuzz corpus. Each panics on a violation.

use std::time::{Duration, SystemTime};

use crate::config::{parse_custom_error, parse_expires, parse_redirect, parse_script_map};
use crate::files::{ranges, Conditions, FileInfo, Ranges};

/// Every parser takes any text: HttpRedirect, HttpExpires, HttpErrors,
/// ScriptMaps, Basic credentials, Accept-Encoding; a Range header's answer
/// lies inside the file, sorted, merged and bounded in count.
pub fn url_settings(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_redirect(&text, "/base");
    let _ = parse_expires(&text);
    let _ = parse_custom_error(&text);
    if let Some(map) = parse_script_map(&text) {
        assert!(map.extension == "*" || map.extension.starts_with('.'));
    }
    let _ = crate::auth::parse_basic(&text);
    let _ = crate::compress::accepts(Some(&text), "gzip");
    for len in [0u64, 1, 1000, u64::MAX] {
        let file = FileInfo {
            len,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            variant: None,
        };
        let conditions = Conditions {
            range: Some(&text),
            ..Conditions::default()
        };
        if let Ranges::Parts(parts) = ranges(&conditions, &file) {
            assert!(
                !parts.is_empty() && parts.len() <= 16,
                "{text:?}: {parts:?}"
            );
            for (i, (first, last)) in parts.iter().enumerate() {
                assert!(
                    first <= last && *last < len,
                    "{text:?} len {len}: {parts:?}"
                );
                if i > 0 {
                    assert!(
                        parts[i - 1].1.saturating_add(1) < *first,
                        "{text:?}: {parts:?}"
                    );
                }
            }
        }
    }
}

/// The configuration a worker is handed (the `worker_config` target): any
/// line is a message or is skipped; any image builds a snapshot or is
/// refused with an error; a snapshot that builds answers URL lookups, and
/// its own image builds again to the same image. True when it built.
pub fn worker_config(data: &[u8]) -> bool {
    use std::sync::Arc;

    use metabase::image::Take;
    use metabase::{MbPath, Snapshot};
    use worker_control::ToWorker;

    let Some(ToWorker::Configure { config, .. }) = worker_control::decode::<ToWorker>(data) else {
        return false;
    };
    let Ok(snapshot) = Snapshot::from_image(&config.metabase, config.change_number) else {
        return false;
    };
    let everything = |_: &MbPath| Take::Subtree;
    let image = snapshot.image(&everything);
    let again = Snapshot::from_image(&image, 0)
        .unwrap_or_else(|e| panic!("the image of a built snapshot is refused: {e}"));
    assert_eq!(again.image(&everything), image, "the image is not stable");
    let built = crate::config::Config::new(
        Arc::new(snapshot),
        config.compression_dir.clone(),
        crate::content::Content::default(),
    );
    for site in [1, 2, 7] {
        for url in ["/", "/a/b.htm", "/docs/", "/x/../y", "/%zz"] {
            let _ = built.url(site, url);
        }
    }
    true
}

/// What a FastCGI application or a CGI program sends back: records
/// decoded from any bytes, whole or in pieces, agree and never read past
/// what came; a CGI header block, found and parsed from any bytes, ends
/// where `head_end` says and never panics.
pub fn gateway_output(data: &[u8]) {
    let decode = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut decoder = fastcgi::Decoder::new();
        let mut records = Vec::new();
        for piece in pieces {
            decoder.push(piece);
            loop {
                match decoder.next_record() {
                    Ok(Some(r)) => records.push(r),
                    Ok(None) => break,
                    Err(e) => return (records, Some(e)),
                }
            }
        }
        (records, None)
    };
    let whole = decode(&mut std::iter::once(data));
    let split = decode(&mut data.chunks(7));
    assert_eq!(whole, split, "records differ when the bytes come in pieces");
    for record in &whole.0 {
        if let fastcgi::Record::Stdout { data: d, .. } | fastcgi::Record::Stderr { data: d, .. } =
            record
        {
            assert!(d.len() <= fastcgi::MAX_CONTENT);
        }
    }
    if let Some(end) = crate::cgi::head_end(data) {
        assert!(end <= data.len());
        for nph in [false, true] {
            if let Ok(head) = crate::cgi::parse_head(&data[..end], nph) {
                if let Some((code, _)) = head.status {
                    assert!((100..=999).contains(&code));
                }
                for (name, value) in &head.fields {
                    assert!(!name.is_empty() && !value.contains('\r'));
                }
            }
        }
    }
}
