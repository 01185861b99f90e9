//! The Windows base types of `include/isapi_types.h`: DWORD is `u32`, BOOL
//! is a C `int`, strings are `char *`, handles are pointers, and the
//! thread's last error lives in `errno`.

use std::ffi::{c_char, c_int, c_void};

pub type Dword = u32;
pub type Bool = c_int;
pub type LpStr = *mut c_char;
pub type LpCStr = *const c_char;
pub type LpVoid = *mut c_void;
pub type Handle = *mut c_void;

pub const TRUE: Bool = 1;
pub const FALSE: Bool = 0;
pub const MAX_PATH: usize = 260;

/// `MAKELONG(low, high)`.
pub const fn make_long(low: u16, high: u16) -> Dword {
    (low as Dword) | ((high as Dword) << 16)
}

/// The Win32 error codes the callbacks report ([MS-ERREF] 2.2).
pub mod error {
    use super::Dword;
    pub const SUCCESS: Dword = 0;
    pub const FILE_NOT_FOUND: Dword = 2;
    pub const ACCESS_DENIED: Dword = 5;
    pub const INVALID_HANDLE: Dword = 6;
    pub const NOT_ENOUGH_MEMORY: Dword = 8;
    pub const NOT_SUPPORTED: Dword = 50;
    pub const INVALID_PARAMETER: Dword = 87;
    pub const INSUFFICIENT_BUFFER: Dword = 122;
    pub const NO_DATA: Dword = 232;
    pub const MORE_DATA: Dword = 234;
    pub const INVALID_INDEX: Dword = 1413;
}
