//! The listener: the HTTP.SYS role. It reads from the network, parses and
//! validates every request against HTTP/1.1, canonicalises its URL, and
//! routes it by URL prefix to a request queue that a separate process
//! serves through the request-queue API (`httpapi`). Several processes
//! share one port this way. It also answers cacheable responses itself,
//! enforces HTTP.SYS's limits and timeouts, and writes the HTTPERR log.
//!
//! What it owns: client connections, the routing table, queues, the
//! response cache, URL reservations. What it must not touch: the
//! metabase, processes, anything an application decides (that arrives
//! through a queue).

pub mod acl;
mod admit;
pub mod cache;
mod completion;
pub mod config;
mod conn;
#[doc(hidden)]
/// What the fuzz targets and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod http;
pub mod httperr;
pub mod queue;
mod rawfilter;
pub mod response;
pub mod routing;
mod server;
mod session;
pub mod stats;
pub mod tls;
mod transport;
pub mod url;
pub mod w3c;

pub use config::ListenerConfig;
pub use queue::{DemandStartHook, Queue, QueueCounters};
pub use server::{Listener, QueueHandle};
