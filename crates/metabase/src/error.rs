//! The metabase's error type. Every variant names what was wrong and where,
//! and maps to the HRESULT [MS-IMSA] returns for the same failure.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("path not found: {0}")]
    PathNotFound(String),

    #[error("key already exists: {0}")]
    KeyExists(String),

    #[error("{path}: property {property} is not set")]
    DataNotFound { path: String, property: String },

    #[error(
        "unknown property '{0}' (not in the schema; give its ID and type, or extend the schema)"
    )]
    UnknownProperty(String),

    #[error("unknown key type '{0}' (not a class in the schema)")]
    UnknownKeyType(String),

    #[error("invalid path '{path}': {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("{path}: {property}: {reason}")]
    InvalidValue {
        path: String,
        property: String,
        reason: String,
    },

    #[error("{path}: property {property} is not allowed on key type {key_type} (the schema class {key_type} does not list it)")]
    PropertyNotAllowed {
        path: String,
        property: String,
        key_type: String,
    },

    #[error("{path}: a key of type {child_type} may not be created under {parent_path}, a {parent_type} (allowed there: {allowed})")]
    ContainmentViolation {
        path: String,
        child_type: String,
        parent_path: String,
        parent_type: String,
        allowed: String,
    },

    #[error("{path}: the key is of type {actual}, not {expected}")]
    KeyTypeMismatch {
        path: String,
        expected: String,
        actual: String,
    },

    #[error("{0}: the root of the metabase cannot be deleted, renamed or moved")]
    RootKey(String),

    #[error("{path}: property {property} is encrypted with a key this machine does not have; its value is kept as it is but cannot be read")]
    Sealed { path: String, property: String },

    #[error("schema: {0}")]
    Schema(String),

    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// The cause is part of the message (not also a `source()`, which
    /// would print it twice in an error chain).
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("{0}")]
    Crypto(String),

    #[error("{0}")]
    Backup(String),

    #[error("{} was changed on disk by another writer since it was loaded; nothing was written (reload and retry)", .0.display())]
    Conflict(PathBuf),

    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// The HRESULT an IMSAdminBase server returns for this failure
    /// ([MS-IMSA] 3.1.4, codes from [MS-ERREF] 2.1 and 2.2).
    pub fn hresult(&self) -> u32 {
        const E_INVALIDARG: u32 = 0x8007_0057;
        match self {
            Error::PathNotFound(_) => 0x8007_0003, // ERROR_PATH_NOT_FOUND
            Error::KeyExists(_) => 0x8007_00B7,    // ERROR_ALREADY_EXISTS
            Error::DataNotFound { .. } => 0x800C_C801, // MD_ERROR_DATA_NOT_FOUND
            Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                0x8007_0002 // ERROR_FILE_NOT_FOUND
            }
            Error::Io { .. } => 0x8007_001F,     // ERROR_GEN_FAILURE
            Error::Conflict(_) => 0x8007_0094,   // ERROR_PATH_BUSY
            Error::Crypto(_) => 0x8007_052B,     // ERROR_WRONG_PASSWORD
            Error::Sealed { .. } => 0x8009_0005, // NTE_BAD_DATA
            _ => E_INVALIDARG,
        }
    }
}
