//! The MS-RPCE runtime ([MS-RPCE], on DCE 1.1 RPC, C706): independent of
//! the web server, so that any interface can be served or called with it.
//!
//! Today: [`pdu`], the connection-oriented PDUs — the common header with
//! both data representations, bind, bind_ack, bind_nak (with MS-RPCE's
//! signature), alter_context and its response, request, response, fault,
//! rpc_auth_3, shutdown, co_cancel, orphaned, and the sec_trailer with its
//! authentication token — decoded with every length checked, encoded
//! byte-exact. NDR, the connection state machine, transports and security
//! providers are built on it.

#![forbid(unsafe_code)]

// The derive names `::msrpc::ndr`; inside this crate that is `crate`.
extern crate self as msrpc;

pub mod client;
pub mod epm;
pub mod fuzz_checks;
pub mod mgmt;
pub mod ndr;
pub mod pdu;
pub mod server;
pub mod status;
pub mod uuid;

pub use msrpc_derive::{interface, Ndr};
pub use pdu::{Pdu, PduError, PduType};
pub use uuid::Uuid;
