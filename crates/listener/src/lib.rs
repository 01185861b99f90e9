//! The listener: the HTTP.SYS role.
pub mod http;
pub mod routing;
pub mod url;
