//! The request-queue API: the client side of the HTTP Server API's role.
//! Any program, not only inetsrv's own workers, links this library to own
//! URL prefixes on the shared listener and serve the requests routed to
//! them. Several programs share one port this way, each behind its own
//! prefixes.
//!
//! ```no_run
//! use httpapi::{Response, Session};
//! # async fn run() -> httpapi::Result<()> {
//! let session = Session::connect("inetsrv-data/run/httpapi.sock").await?;
//! let mut queue = session.create_queue("hello").await?;
//! queue.add_url("http://+:8081/hello/", 0).await?;
//! loop {
//!     let request = queue.receive().await?;
//!     let text = format!("hello from {}\n", request.url.path);
//!     request
//!         .respond(Response::new(200).header("Content-Type", "text/plain").body(text))
//!         .await?;
//! }
//! # }
//! ```
//!
//! What it owns: the wire protocol ([`proto`]) and the client library
//! ([`Session`], [`Queue`], [`Request`], [`ResponseWriter`]). It must not
//! depend on the listener: the listener depends on it.

mod client;
pub mod dates;
pub mod fdpass;
pub mod handoff;
pub mod proto;

pub use client::{
    socket_for_state_dir, BodyReader, Error, HeldEnd, Queue, QueueControl, RawEvent, Request,
    Responding, Response, ResponseWriter, Result, Session, TakenConnection,
};
pub use proto::{CachePolicy, Header, HeaderBlock, LogInfo};

/// Escapes text for an HTML page a response carries (a directory
/// listing, a redirect's body, a form's message).
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
