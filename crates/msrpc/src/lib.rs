//! The MS-RPCE runtime ([MS-RPCE], on DCE 1.1 RPC, C706): independent of
//! the web server, so that any interface can be served or called with it.
//!
//! - [`pdu`]: the connection-oriented PDUs, decoded from either data
//!   representation with every length checked, encoded byte-exact.
//! - [`ndr`]: NDR 2.0 and NDR64 marshalling with the strict consistency
//!   checks; `#[derive(Ndr)]` describes structures.
//! - `#[interface]` describes an interface once, as a trait; the server
//!   dispatch and the client stub are generated from it.
//! - [`server`] and [`client`]: the connection state machine over
//!   ncacn_ip_tcp and ncalrpc (negotiation, association groups,
//!   fragmentation, faults).
//! - [`security`]: the security providers, signing and sealing PDUs at
//!   every authentication level: NTLM (the `sspi` crate's messages, with
//!   the NTLMv2 check against a [`security::Credentials`] store done
//!   here), SPNEGO over NTLM or Kerberos, and Kerberos with a
//!   [`security::Keytab`] (`picky-krb`'s messages and crypto, the GSS-API
//!   mechanism and MS-KILE's DCE style here); the server also checks and
//!   strips verification trailers.
//! - [`epm`] and [`mgmt`]: the endpoint mapper and the management
//!   interface every server offers.
//!
//! The client runtime logs on with NTLM or SPNEGO/NTLM with a password,
//! and with Kerberos or SPNEGO/Kerberos with a service ticket of the
//! user's credential cache ([`security::CredentialCache`]).

#![forbid(unsafe_code)]

// The derive names `::msrpc::ndr`; inside this crate that is `crate`.
extern crate self as msrpc;

pub mod cl;
pub mod client;
pub mod conv;
pub mod epm;
/// What the fuzz targets and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod mgmt;
pub mod ndr;
pub mod pdu;
pub mod rts;
pub mod security;
pub mod server;
pub mod status;
pub mod uuid;

pub use msrpc_derive::{interface, Ndr};
pub use pdu::{Pdu, PduError, PduType};
pub use uuid::Uuid;
