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
//! ([`Session`], [`Queue`], [`Request`], [`ResponseWriter`]), and
//! [`ready_now`], the one-poll helper both sides of the wire use to arm a
//! timer only for work that waits. It must not depend on the listener: the
//! listener depends on it.

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

/// Polls `future` once: its output if it is ready now, `None` if it must
/// wait (its waker is then registered, as by any poll). The listener and
/// the worker arm a timer only for work that has to wait: a timer costs a
/// clock read and a registration with the runtime's timer wheel, and most
/// writes (and many reads) under load complete at the first try.
pub async fn ready_now<F: std::future::Future>(
    mut future: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

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

#[cfg(test)]
mod ready_now_tests {
    use super::ready_now;

    #[tokio::test]
    async fn a_ready_future_gives_its_output_and_a_waiting_one_none() {
        let ready = std::pin::pin!(async { 7 });
        assert_eq!(ready_now(ready).await, Some(7));
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut waiting = std::pin::pin!(rx);
        assert_eq!(ready_now(waiting.as_mut()).await, None);
        // Polled once and still usable: it completes when its value comes.
        tx.send(3).unwrap();
        assert_eq!(waiting.await, Ok(3));
    }
}
