//! Errors the listener answers itself, each with the status it sends and
//! the reason HTTP.SYS writes to the HTTPERR log (`s-reason`).

use std::fmt;

/// The `s-reason` values of the HTTPERR log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    AppOffline,
    BadRequest,
    ConnectionAbandonedByAppPool,
    ConnectionDropped,
    ConnLimit,
    EntityTooLarge,
    ExpectationFailed,
    FieldLength,
    Header,
    Hostname,
    InvalidCrLf,
    LengthRequired,
    NotImplemented,
    NotFound,
    QueueFull,
    RequestLength,
    TimerAppPool,
    TimerConnectionIdle,
    TimerEntityBody,
    TimerHeaderWait,
    TimerMinBytesPerSecond,
    Url,
    UrlLength,
    Verb,
    VersionNotSupported,
    Internal,
    /// A TLS handshake that failed (bad ClientHello, no shared protocol or
    /// cipher, a client certificate refused).
    TlsHandshake,
    /// A handshake on an endpoint no SSL binding covers.
    TlsNoBinding,
    /// Plain HTTP sent to an https endpoint.
    TlsPlainHttp,
    /// A handshake that did not finish in time.
    TimerTlsHandshake,
}

impl ErrorReason {
    /// The spelling in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppOffline => "AppOffline",
            Self::BadRequest => "BadRequest",
            Self::ConnectionAbandonedByAppPool => "Connection_Abandoned_By_AppPool",
            Self::ConnectionDropped => "Connection_Dropped",
            Self::ConnLimit => "ConnLimit",
            Self::EntityTooLarge => "EntityTooLarge",
            Self::ExpectationFailed => "Precondition",
            Self::FieldLength => "FieldLength",
            Self::Header => "Header",
            Self::Hostname => "Hostname",
            Self::InvalidCrLf => "Invalid_CR/LF",
            Self::LengthRequired => "LengthRequired",
            Self::NotImplemented => "N/I",
            Self::NotFound => "NotFound",
            Self::QueueFull => "QueueFull",
            Self::RequestLength => "RequestLength",
            Self::TimerAppPool => "Timer_AppPool",
            Self::TimerConnectionIdle => "Timer_ConnectionIdle",
            Self::TimerEntityBody => "Timer_EntityBody",
            Self::TimerHeaderWait => "Timer_HeaderWait",
            Self::TimerMinBytesPerSecond => "Timer_MinBytesPerSecond",
            Self::Url => "URL",
            Self::UrlLength => "URL_Length",
            Self::Verb => "Verb",
            Self::VersionNotSupported => "Version_N/S",
            Self::Internal => "Internal",
            Self::TlsHandshake => "TLS_Handshake_Failed",
            Self::TlsNoBinding => "TLS_No_Binding",
            Self::TlsPlainHttp => "TLS_Plain_HTTP",
            Self::TimerTlsHandshake => "Timer_TLS_Handshake",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the listener refuses, with what to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: ErrorReason,
    /// The short description in the error page's heading.
    pub detail: &'static str,
}

impl HttpError {
    pub const fn new(status: u16, reason: ErrorReason, detail: &'static str) -> HttpError {
        HttpError {
            status,
            reason,
            detail,
        }
    }

    pub const fn bad_request(reason: ErrorReason, detail: &'static str) -> HttpError {
        HttpError::new(400, reason, detail)
    }

    /// 503 for a request no process will serve (offline, full or
    /// abandoned queue, RequestQueue timeout).
    pub const fn unavailable(reason: ErrorReason) -> HttpError {
        HttpError::new(503, reason, "Service Unavailable")
    }

    /// The status line's reason phrase.
    pub fn status_text(&self) -> &'static str {
        status_text(self.status)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.status,
            self.status_text(),
            self.reason,
            self.detail
        )
    }
}

impl std::error::Error for HttpError {}

/// Reason phrases (RFC 9110 15).
pub fn status_text(status: u16) -> &'static str {
    httpapi::proto::reason_phrase(status)
}
