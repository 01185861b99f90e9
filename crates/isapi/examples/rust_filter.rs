//! An ISAPI filter written in Rust with the `isapi` crate: it marks every
//! request, answers /rust-blocked/ itself, and marks every response.
//!
//! ```sh
//! cargo build -p isapi --example rust_filter    # target/debug/examples/librust_filter.so
//! inetsrv mb create W3SVC/1/Filters/RustFilter IIsFilter
//! inetsrv mb set W3SVC/1/Filters/RustFilter/FilterPath $PWD/target/debug/examples/librust_filter.so
//! inetsrv mb set W3SVC/1/Filters/FilterLoadOrder RustFilter
//! ```

use isapi::filt::notify;
use isapi::filter::{FilterContext, FilterStatus, Headers, HttpFilter};
use isapi::types::Dword;

struct Marker;

impl HttpFilter for Marker {
    fn description(&self) -> &str {
        "marker, in Rust"
    }

    fn flags(&self) -> Dword {
        notify::PREPROC_HEADERS | notify::SEND_RESPONSE | notify::ORDER_MEDIUM
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
        headers.add(
            "X-Rust-Filter",
            if ctx.is_secure() { "secure" } else { "plain" },
        );
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
