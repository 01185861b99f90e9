//! An ISAPI filter written in Rust with the `isapi` crate: the C test
//! filters' scenarios. It marks every request and drops its
//! `X-Remove-Me` header, rewrites /rust-old/ to /rust-new/, maps
//! /rust-mapped/ to another folder, answers /rust-blocked/ itself and
//! denials with its own page, marks every response, masks "rust-mask" in
//! what goes out and grows a "rust-grow" body (SEND_RAW_DATA), and keeps
//! /rust-secret/ out of the log.
//!
//! ```sh
//! cargo build -p isapi --example rust_filter    # target/debug/examples/librust_filter.so
//! inetsrv mb create W3SVC/1/Filters/RustFilter IIsFilter
//! inetsrv mb set W3SVC/1/Filters/RustFilter/FilterPath $PWD/target/debug/examples/librust_filter.so
//! inetsrv mb set W3SVC/1/Filters/FilterLoadOrder RustFilter
//! ```

use isapi::filt::notify;
use isapi::filter::{FilterContext, FilterStatus, Headers, HttpFilter, LogRecord, RawData, UrlMap};
use isapi::types::Dword;

struct Marker;

impl HttpFilter for Marker {
    fn description(&self) -> &str {
        "marker, in Rust"
    }

    fn flags(&self) -> Dword {
        notify::PREPROC_HEADERS
            | notify::URL_MAP
            | notify::ACCESS_DENIED
            | notify::SEND_RESPONSE
            | notify::LOG
            | notify::SEND_RAW_DATA
            | notify::ORDER_MEDIUM
    }

    fn preproc_headers(
        &self,
        ctx: &mut FilterContext<'_>,
        headers: &mut Headers<'_>,
    ) -> FilterStatus {
        let url = headers.get("url").unwrap_or_default();
        if url.starts_with(b"/rust-blocked/") {
            ctx.respond(
                "403 Forbidden",
                "Content-Type: text/plain\r\n\r\n",
                b"blocked by a Rust filter\n",
            );
            return FilterStatus::Finished;
        }
        if let Some(rest) = url.strip_prefix(b"/rust-old/") {
            let new = format!("/rust-new/{}", String::from_utf8_lossy(rest));
            headers.set("url", &new);
        }
        headers.set("X-Remove-Me", "");
        headers.add(
            "X-Rust-Filter",
            if ctx.is_secure() { "secure" } else { "plain" },
        );
        FilterStatus::Next
    }

    fn url_map(&self, _ctx: &mut FilterContext<'_>, map: &mut UrlMap<'_>) -> FilterStatus {
        if map.url().starts_with("/rust-mapped/") {
            let real = map.physical_path().replace("/rust-mapped/", "/rust-real/");
            map.set_physical_path(&real);
        }
        FilterStatus::Next
    }

    fn access_denied(
        &self,
        ctx: &mut FilterContext<'_>,
        url: &str,
        _reason: Dword,
    ) -> FilterStatus {
        let body = format!("{url} is closed, says Rust\n");
        ctx.respond(
            "403 Forbidden",
            "Content-Type: text/plain\r\n\r\n",
            body.as_bytes(),
        );
        FilterStatus::Finished
    }

    fn raw_data(
        &self,
        _ctx: &mut FilterContext<'_>,
        outbound: bool,
        data: &mut RawData<'_>,
    ) -> FilterStatus {
        const WORD: &[u8] = b"rust-mask";
        // A body that is just "rust-grow" goes out 5000 bytes long (more
        // than the buffer holds: the filter's own memory).
        if outbound && data.bytes_mut() == b"rust-grow" {
            data.replace(&[b'g'; 5000]);
            return FilterStatus::Next;
        }
        if outbound {
            let bytes = data.bytes_mut();
            let mut i = 0;
            while i + WORD.len() <= bytes.len() {
                if &bytes[i..i + WORD.len()] == WORD {
                    bytes[i..i + WORD.len()].fill(b'*');
                    i += WORD.len();
                } else {
                    i += 1;
                }
            }
        }
        FilterStatus::Next
    }

    fn log(&self, _ctx: &mut FilterContext<'_>, log: &mut LogRecord<'_>) -> FilterStatus {
        if log.target().starts_with("/rust-secret/") {
            log.set_target("/rust-hidden");
            let sizes = format!("sent={}", log.bytes_sent());
            log.set_parameters(&sizes);
        }
        FilterStatus::Next
    }

    fn send_response(
        &self,
        ctx: &mut FilterContext<'_>,
        headers: &mut Headers<'_>,
    ) -> FilterStatus {
        let status = headers.status();
        headers.set("X-Rust-Status", &status.to_string());
        ctx.add_response_headers("X-Filtered-In: Rust\r\n");
        FilterStatus::Next
    }
}

isapi::export_filter!(Marker);
