//! Replays the listener's fuzz corpus (fuzz/corpus/{http_head,chunked,url})
//! through the properties the fuzz targets check, with seeded mutations of
//! every file.

use std::path::Path;

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the {name} corpus is missing");
    files
}

fn mutations(data: &[u8], count: usize, mut seed: u64) -> Vec<Vec<u8>> {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const BYTES: &[u8] = b"\r\n:;% ./\\?#\x00\x7f\xc0\xafa0fF-";
    (0..count)
        .map(|_| {
            let mut m = data.to_vec();
            for _ in 0..(next() % 3 + 1) {
                let i = if m.is_empty() {
                    0
                } else {
                    (next() as usize) % m.len()
                };
                match next() % 3 {
                    0 if !m.is_empty() => m[i] = BYTES[(next() as usize) % BYTES.len()],
                    1 if !m.is_empty() => {
                        m.remove(i);
                    }
                    _ => m.insert(i, BYTES[(next() as usize) % BYTES.len()]),
                }
            }
            m
        })
        .collect()
}

fn replay(name: &str, check: fn(&[u8])) {
    for (file, data) in corpus(name) {
        check(&data);
        for m in mutations(&data, 300, file.len() as u64 * 31 + 1) {
            check(&m);
        }
    }
}

#[test]
fn http_head_corpus() {
    replay("http_head", listener::fuzz_checks::http_head);
}

#[test]
fn chunked_corpus() {
    replay("chunked", listener::fuzz_checks::chunked);
}

#[test]
fn url_corpus() {
    replay("url", listener::fuzz_checks::url);
}
