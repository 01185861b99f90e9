//! WMI's errors: the WBEM status codes of [MS-WMI] 2.2.11, with a message
//! and, for queries, where in the text the problem is.

use std::fmt;

/// WBEMSTATUS values ([MS-WMI] 2.2.11) this provider returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WbemStatus {
    Failed,
    NotFound,
    AccessDenied,
    TypeMismatch,
    InvalidParameter,
    NotSupported,
    InvalidClass,
    InvalidOperation,
    InvalidQuery,
    InvalidQueryType,
    AlreadyExists,
    InvalidMethod,
    InvalidProperty,
    InvalidObjectPath,
}

impl WbemStatus {
    pub fn code(self) -> u32 {
        match self {
            Self::Failed => 0x8004_1001,
            Self::NotFound => 0x8004_1002,
            Self::AccessDenied => 0x8004_1003,
            Self::TypeMismatch => 0x8004_1005,
            Self::InvalidParameter => 0x8004_1008,
            Self::NotSupported => 0x8004_100C,
            Self::InvalidClass => 0x8004_1010,
            Self::InvalidOperation => 0x8004_1016,
            Self::InvalidQuery => 0x8004_1017,
            Self::InvalidQueryType => 0x8004_1018,
            Self::AlreadyExists => 0x8004_1019,
            Self::InvalidMethod => 0x8004_102E,
            Self::InvalidProperty => 0x8004_1031,
            Self::InvalidObjectPath => 0x8004_103A,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Failed => "WBEM_E_FAILED",
            Self::NotFound => "WBEM_E_NOT_FOUND",
            Self::AccessDenied => "WBEM_E_ACCESS_DENIED",
            Self::TypeMismatch => "WBEM_E_TYPE_MISMATCH",
            Self::InvalidParameter => "WBEM_E_INVALID_PARAMETER",
            Self::NotSupported => "WBEM_E_NOT_SUPPORTED",
            Self::InvalidClass => "WBEM_E_INVALID_CLASS",
            Self::InvalidOperation => "WBEM_E_INVALID_OPERATION",
            Self::InvalidQuery => "WBEM_E_INVALID_QUERY",
            Self::InvalidQueryType => "WBEM_E_INVALID_QUERY_TYPE",
            Self::AlreadyExists => "WBEM_E_ALREADY_EXISTS",
            Self::InvalidMethod => "WBEM_E_INVALID_METHOD",
            Self::InvalidProperty => "WBEM_E_INVALID_PROPERTY",
            Self::InvalidObjectPath => "WBEM_E_INVALID_OBJECT_PATH",
        }
    }
}

/// An error with its WBEM status; `position` is the 1-based character
/// column in the query or path text, when the error has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct WmiError {
    pub status: WbemStatus,
    pub message: String,
    pub position: Option<usize>,
}

impl WmiError {
    pub fn new(status: WbemStatus, message: impl Into<String>) -> WmiError {
        WmiError {
            status,
            message: message.into(),
            position: None,
        }
    }

    pub fn at(status: WbemStatus, position: usize, message: impl Into<String>) -> WmiError {
        WmiError {
            status,
            message: message.into(),
            position: Some(position),
        }
    }
}

impl fmt::Display for WmiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:08X})", self.status.name(), self.status.code())?;
        if let Some(p) = self.position {
            write!(f, " at column {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

pub type Result<T> = std::result::Result<T, WmiError>;
