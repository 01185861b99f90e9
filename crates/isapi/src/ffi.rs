//! What both hosts (extensions and filters) need at the C boundary:
//! opening a module, the thread's last error, callbacks that never unwind
//! into C, and strings and buffers in the module's terms.

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

use crate::host::LoadError;
use crate::types::{error, Bool, Dword, LpVoid, FALSE, TRUE};

/// Loads the module `path` from `open_as` (the same file by another
/// name, such as `/proc/self/fd/N` for a descriptor the host was handed),
/// running its initialisers.
#[allow(unsafe_code)]
pub(crate) fn open(path: &Path, open_as: &Path) -> Result<libloading::Library, LoadError> {
    // SAFETY: loading runs the module's initialisers: running the
    // administrator's module is what an ISAPI host is for.
    unsafe { libloading::Library::new(open_as) }.map_err(|e| LoadError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// An entry point the module must export, as the type httpext.h or
/// httpfilt.h declares for it.
///
/// # Safety
/// `T` is the function type the headers declare for `symbol`.
#[allow(unsafe_code)]
pub(crate) unsafe fn entry<T: Copy>(
    library: &libloading::Library,
    path: &Path,
    symbol: &'static str,
) -> Result<T, LoadError> {
    let name = format!("{symbol}\0");
    // SAFETY: the caller's promise about `T`.
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| LoadError::Missing {
            path: path.to_path_buf(),
            symbol,
        })
}

/// A C character array a module filled, up to its NUL (or its end).
pub(crate) fn array_text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[allow(unsafe_code)]
pub(crate) fn set_last_error(code: Dword) {
    // SAFETY: errno is the calling thread's; the pointer libc returns
    // stays valid for the thread's life.
    unsafe { *libc::__errno_location() = code as i32 };
}

/// Runs a callback's body, turning `Err` into FALSE with that last error
/// and a panic into FALSE with ERROR_INVALID_PARAMETER, never unwinding
/// into C.
pub(crate) fn guarded(body: impl FnOnce() -> Result<(), Dword>) -> Bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => TRUE,
        Ok(Err(code)) => {
            set_last_error(code);
            FALSE
        }
        Err(_) => {
            set_last_error(error::INVALID_PARAMETER);
            FALSE
        }
    }
}

/// A C string argument, or ERROR_INVALID_PARAMETER for NULL or non-UTF-8.
#[allow(unsafe_code)]
pub(crate) fn text<'a>(p: *const c_char) -> Result<&'a str, Dword> {
    if p.is_null() {
        return Err(error::INVALID_PARAMETER);
    }
    // SAFETY: the module passes a NUL-terminated string.
    std::str::from_utf8(unsafe { CStr::from_ptr(p) }.to_bytes())
        .map_err(|_| error::INVALID_PARAMETER)
}

/// A C string of `text`, cut at an inner NUL.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.split('\0').next().unwrap_or_default()).unwrap_or_default()
}

/// Copies `value` and a NUL into the module's buffer of `*size` bytes and
/// sets `*size` to what was written; ERROR_INSUFFICIENT_BUFFER with the
/// size needed when it does not fit (as GetServerVariable answers).
#[allow(unsafe_code)]
pub(crate) fn answer(value: &[u8], buffer: LpVoid, size: *mut Dword) -> Result<(), Dword> {
    if size.is_null() {
        return Err(error::INVALID_PARAMETER);
    }
    let needed = value.len() + 1;
    // SAFETY: `size` is the module's DWORD; `buffer` holds `*size` bytes
    // when it is not NULL.
    unsafe {
        if buffer.is_null() || (*size as usize) < needed {
            *size = needed as Dword;
            return Err(error::INSUFFICIENT_BUFFER);
        }
        std::ptr::copy_nonoverlapping(value.as_ptr(), buffer as *mut u8, value.len());
        *(buffer as *mut u8).add(value.len()) = 0;
        *size = needed as Dword;
    }
    Ok(())
}
