//! Writing an ISAPI extension in Rust: implement [`HttpExtension`] and
//! export it with [`export_extension!`]; build the crate as a `cdylib`.
//! The shared object has the C entry points IIS and inetsrv call
//! (GetExtensionVersion, HttpExtensionProc, TerminateExtension), and a
//! panic in the handler answers the request with an error instead of
//! unwinding into the server.
//!
//! ```no_run
//! struct Hello;
//! impl isapi::extension::HttpExtension for Hello {
//!     fn handle(&self, request: &mut isapi::extension::Request<'_>) -> isapi::extension::Status {
//!         let _ = request.send_headers("200 OK", "Content-Type: text/plain\r\n\r\n", true);
//!         let _ = request.write(b"hello from Rust\n");
//!         isapi::extension::Status::Success
//!     }
//! }
//! isapi::export_extension!(Hello);
//! ```

use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

use crate::ext::{self, ExtensionControlBlock, HseSendHeaderExInfo, HseVersionInfo};
use crate::types::{error, Bool, Dword, FALSE, TRUE};

/// What a request came to (HSE_STATUS_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    /// Success, and the connection may be kept for the next request.
    SuccessKeepConn,
    Error,
    /// The request goes on after `handle` returns: a completion (of
    /// [`Request::exec_url`] or [`Request::read_async`]) finishes it.
    Pending,
}

impl Status {
    fn code(self) -> Dword {
        match self {
            Status::Success => ext::status::SUCCESS,
            Status::SuccessKeepConn => ext::status::SUCCESS_AND_KEEP_CONN,
            Status::Error => ext::status::ERROR,
            Status::Pending => ext::status::PENDING,
        }
    }
}

/// An extension. One value serves every request, on many threads at once.
pub trait HttpExtension: Send + Sync + 'static {
    /// What GetExtensionVersion reports.
    fn description(&self) -> &str {
        "an ISAPI extension written in Rust"
    }

    /// Answers one request.
    fn handle(&self, request: &mut Request<'_>) -> Status;

    /// The module is being unloaded (TerminateExtension).
    fn terminate(&self) {}
}

/// A Win32 error a callback reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Win32Error(pub Dword);

impl std::fmt::Display for Win32Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Win32 error {}", self.0)
    }
}

impl std::error::Error for Win32Error {}

/// One request, over its EXTENSION_CONTROL_BLOCK.
pub struct Request<'a> {
    ecb: &'a mut ExtensionControlBlock,
}

fn last_error() -> Win32Error {
    Win32Error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as Dword)
}

#[allow(unsafe_code)]
fn field<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        return "";
    }
    // SAFETY: the server's strings live as long as the request.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
}

impl Request<'_> {
    pub fn method(&self) -> &str {
        field(self.ecb.lpsz_method)
    }

    pub fn query_string(&self) -> &str {
        field(self.ecb.lpsz_query_string)
    }

    pub fn path_info(&self) -> &str {
        field(self.ecb.lpsz_path_info)
    }

    pub fn path_translated(&self) -> &str {
        field(self.ecb.lpsz_path_translated)
    }

    pub fn content_type(&self) -> &str {
        field(self.ecb.lpsz_content_type)
    }

    /// The body's length as the request declares it (cbTotalBytes).
    pub fn total_bytes(&self) -> u32 {
        self.ecb.cb_total_bytes
    }

    /// Sets the status the server logs (dwHttpStatusCode).
    pub fn set_log_status(&mut self, status: u32) {
        self.ecb.dw_http_status_code = status;
    }

    /// A server variable, `None` when the server has none of that name.
    #[allow(unsafe_code)]
    pub fn server_variable(&self, name: &str) -> Option<Vec<u8>> {
        let get = self.ecb.get_server_variable?;
        let name = CString::new(name).ok()?;
        let mut buf = vec![0u8; 256];
        for _ in 0..2 {
            let mut size = buf.len() as Dword;
            // SAFETY: the buffer holds `size` bytes; the name is a C string.
            let ok = unsafe {
                get(
                    self.ecb.conn_id,
                    name.as_ptr() as *mut c_char,
                    buf.as_mut_ptr().cast(),
                    &mut size,
                )
            };
            if ok != FALSE {
                buf.truncate((size as usize).saturating_sub(1));
                return Some(buf);
            }
            if last_error().0 != error::INSUFFICIENT_BUFFER {
                return None;
            }
            buf.resize(size as usize, 0);
        }
        None
    }

    /// The body bytes handed with the request (lpbData, cbAvailable).
    #[allow(unsafe_code)]
    pub fn preloaded(&self) -> &[u8] {
        let available = self.ecb.cb_available as usize;
        if available == 0 || self.ecb.lpb_data.is_null() {
            return &[];
        }
        // SAFETY: lpbData holds cbAvailable bytes for the request's life.
        unsafe { std::slice::from_raw_parts(self.ecb.lpb_data, available) }
    }

    /// The whole request body: the bytes handed with the request, then
    /// the rest by ReadClient.
    #[allow(unsafe_code)]
    pub fn read_body(&mut self) -> Result<Vec<u8>, Win32Error> {
        let available = self.ecb.cb_available as usize;
        let mut body = if available == 0 || self.ecb.lpb_data.is_null() {
            Vec::new()
        } else {
            // SAFETY: lpbData holds cbAvailable bytes.
            unsafe { std::slice::from_raw_parts(self.ecb.lpb_data, available) }.to_vec()
        };
        let read = self
            .ecb
            .read_client
            .ok_or(Win32Error(error::NOT_SUPPORTED))?;
        let total = self.ecb.cb_total_bytes;
        let mut chunk = vec![0u8; 64 * 1024];
        while total == u32::MAX || body.len() < total as usize {
            let mut size = chunk.len() as Dword;
            // SAFETY: the buffer holds `size` bytes.
            let ok = unsafe { read(self.ecb.conn_id, chunk.as_mut_ptr().cast(), &mut size) };
            if ok == FALSE {
                return Err(last_error());
            }
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size as usize]);
        }
        Ok(body)
    }

    /// Sends the status line and header lines (HSE_REQ_SEND_RESPONSE_HEADER_EX):
    /// `headers` as `Name: value\r\n…\r\n`.
    #[allow(unsafe_code)]
    pub fn send_headers(
        &mut self,
        status: &str,
        headers: &str,
        keep_conn: bool,
    ) -> Result<(), Win32Error> {
        let status = CString::new(status).map_err(|_| Win32Error(error::INVALID_PARAMETER))?;
        let headers = CString::new(headers).map_err(|_| Win32Error(error::INVALID_PARAMETER))?;
        let mut info = HseSendHeaderExInfo {
            psz_status: status.as_ptr(),
            psz_header: headers.as_ptr(),
            cch_status: status.as_bytes().len() as Dword,
            cch_header: headers.as_bytes().len() as Dword,
            f_keep_conn: Bool::from(keep_conn),
        };
        // SAFETY: SEND_RESPONSE_HEADER_EX takes an HSE_SEND_HEADER_EX_INFO.
        unsafe {
            self.support(
                ext::req::SEND_RESPONSE_HEADER_EX,
                (&mut info as *mut HseSendHeaderExInfo).cast(),
            )
        }
    }

    /// Sends body bytes (WriteClient, synchronously).
    #[allow(unsafe_code)]
    pub fn write(&mut self, data: &[u8]) -> Result<(), Win32Error> {
        let write = self
            .ecb
            .write_client
            .ok_or(Win32Error(error::NOT_SUPPORTED))?;
        let mut size = data.len() as Dword;
        // SAFETY: the data holds `size` bytes; the server only reads them.
        let ok = unsafe {
            write(
                self.ecb.conn_id,
                data.as_ptr() as *mut _,
                &mut size,
                ext::io::SYNC,
            )
        };
        if ok == FALSE {
            return Err(last_error());
        }
        Ok(())
    }

    /// Answers with a redirect to `url` (HSE_REQ_SEND_URL_REDIRECT_RESP).
    #[allow(unsafe_code)]
    pub fn redirect(&mut self, url: &str) -> Result<(), Win32Error> {
        let url = CString::new(url).map_err(|_| Win32Error(error::INVALID_PARAMETER))?;
        // SAFETY: SEND_URL_REDIRECT_RESP takes a C string.
        unsafe { self.support(ext::req::SEND_URL_REDIRECT_RESP, url.as_ptr() as *mut _) }
    }

    /// Asks the server to replace this worker process
    /// (HSE_REQ_REPORT_UNHEALTHY).
    #[allow(unsafe_code)]
    pub fn report_unhealthy(&mut self, reason: &str) -> Result<(), Win32Error> {
        let reason = CString::new(reason).map_err(|_| Win32Error(error::INVALID_PARAMETER))?;
        // SAFETY: REPORT_UNHEALTHY takes a C string.
        unsafe { self.support(ext::req::REPORT_UNHEALTHY, reason.as_ptr() as *mut _) }
    }

    /// Adds text to the request's logged query (HSE_APPEND_LOG_PARAMETER).
    #[allow(unsafe_code)]
    pub fn append_log(&mut self, text: &str) -> Result<(), Win32Error> {
        let text = CString::new(text).map_err(|_| Win32Error(error::INVALID_PARAMETER))?;
        // SAFETY: APPEND_LOG_PARAMETER takes a C string.
        unsafe { self.support(ext::req::APPEND_LOG_PARAMETER, text.as_ptr() as *mut _) }
    }

    /// Sends the status line, `head` (header lines and the blank line),
    /// `len` bytes of `file` from `offset` (0: to its end), then `tail`
    /// (HSE_REQ_TRANSMIT_FILE, synchronously): the file's bytes go from
    /// the file to the client without passing through this module.
    #[allow(unsafe_code)]
    pub fn transmit_file(
        &mut self,
        file: &std::fs::File,
        status: &str,
        head: &str,
        range: (u32, u32),
        tail: &[u8],
    ) -> Result<(), Win32Error> {
        use std::os::fd::AsRawFd;
        let status = CString::new(status).map_err(|_| Win32Error(error::INVALID_PARAMETER))?;
        let mut info = ext::HseTfInfo {
            pfn_hse_io: None,
            p_context: std::ptr::null_mut(),
            // A file handle is its descriptor (isapi_types.h).
            h_file: file.as_raw_fd() as isize as crate::types::Handle,
            psz_status_code: status.as_ptr(),
            bytes_to_write: range.1,
            offset: range.0,
            p_head: head.as_ptr() as *mut _,
            head_length: head.len() as Dword,
            p_tail: tail.as_ptr() as *mut _,
            tail_length: tail.len() as Dword,
            dw_flags: ext::io::SYNC | ext::io::SEND_HEADERS,
        };
        // SAFETY: TRANSMIT_FILE takes an HSE_TF_INFO, whose buffers live
        // for the call.
        unsafe {
            self.support(
                ext::req::TRANSMIT_FILE,
                (&mut info as *mut ext::HseTfInfo).cast(),
            )
        }
    }

    /// Hands the request on as a child request (HSE_REQ_EXEC_URL), which
    /// answers the client; `then` runs once it has answered, with its
    /// outcome, and the request ends after it. Return the
    /// [`Status::Pending`] this gives from `handle`.
    #[allow(unsafe_code)]
    pub fn exec_url(
        &mut self,
        child: &ExecUrl<'_>,
        then: impl FnOnce(&mut Request<'_>, Option<ChildStatus>) + Send + 'static,
    ) -> Result<Status, Win32Error> {
        let text = |s: Option<&str>| {
            s.map(|s| CString::new(s).map_err(|_| Win32Error(error::INVALID_PARAMETER)))
                .transpose()
        };
        let (url, method, headers) = (text(child.url)?, text(child.method)?, text(child.headers)?);
        let mut entity = child.entity.map(|body| ext::HseExecUrlEntityInfo {
            cb_available: body.len() as Dword,
            lpb_data: body.as_ptr() as *mut _,
        });
        let ptr = |s: &Option<CString>| {
            s.as_ref()
                .map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut c_char)
        };
        let mut info = ext::HseExecUrlInfo {
            psz_url: ptr(&url),
            psz_method: ptr(&method),
            psz_child_headers: ptr(&headers),
            p_user_info: std::ptr::null_mut(),
            p_entity: entity.as_mut().map_or(std::ptr::null_mut(), |e| {
                e as *mut ext::HseExecUrlEntityInfo
            }),
            dw_exec_url_flags: if child.ignore_current_interceptor {
                ext::exec_url::IGNORE_CURRENT_INTERCEPTOR
            } else {
                0
            },
        };
        self.on_completion(Box::new(move |request: &mut Request<'_>, _, _| {
            let status = request.exec_url_status();
            then(request, status);
            request.done(Status::SuccessKeepConn);
        }))?;
        // SAFETY: EXEC_URL takes an HSE_EXEC_URL_INFO, whose strings and
        // entity live for the call.
        unsafe {
            self.support(
                ext::req::EXEC_URL,
                (&mut info as *mut ext::HseExecUrlInfo).cast(),
            )?
        };
        Ok(Status::Pending)
    }

    /// How the last child request ended (HSE_REQ_GET_EXEC_URL_STATUS).
    #[allow(unsafe_code)]
    pub fn exec_url_status(&mut self) -> Option<ChildStatus> {
        let mut status = ext::HseExecUrlStatus {
            u_http_status_code: 0,
            u_http_sub_status: 0,
            dw_win32_error: 0,
        };
        // SAFETY: GET_EXEC_URL_STATUS fills an HSE_EXEC_URL_STATUS.
        unsafe {
            self.support(
                ext::req::GET_EXEC_URL_STATUS,
                (&mut status as *mut ext::HseExecUrlStatus).cast(),
            )
        }
        .ok()?;
        Some(ChildStatus {
            status: status.u_http_status_code,
            substatus: status.u_http_sub_status,
            win32: status.dw_win32_error,
        })
    }

    /// Reads up to `size` body bytes asynchronously
    /// (HSE_REQ_ASYNC_READ_CLIENT); `then` gets them (empty at the body's
    /// end) and may read again or finish the request. Return the
    /// [`Status::Pending`] this gives from `handle`.
    #[allow(unsafe_code)]
    pub fn read_async(
        &mut self,
        size: usize,
        then: impl FnOnce(&mut Request<'_>, Result<Vec<u8>, Win32Error>) -> Status + Send + 'static,
    ) -> Result<Status, Win32Error> {
        let len = size.max(1);
        // The server writes here until the completion runs, which takes
        // the buffer back (an I/O that never starts leaves it behind).
        let data = Box::into_raw(vec![0u8; len].into_boxed_slice()) as *mut u8;
        let at = data as usize;
        self.on_completion(Box::new(move |request: &mut Request<'_>, bytes, status| {
            // SAFETY: the buffer made above; its one completion takes it.
            let buffer =
                unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(at as *mut u8, len)) };
            let result = if status == error::SUCCESS {
                Ok(buffer[..(bytes as usize).min(len)].to_vec())
            } else {
                Err(Win32Error(status))
            };
            // Pending: `then` started another read, whose completion goes on.
            let next = then(request, result);
            if next != Status::Pending {
                request.done(next);
            }
        }))?;
        let mut size = len as Dword;
        // SAFETY: the buffer holds `size` bytes and lives until the
        // completion runs.
        unsafe {
            self.support_with(
                ext::req::ASYNC_READ_CLIENT,
                data.cast(),
                &mut size,
                std::ptr::null_mut(),
            )?
        };
        Ok(Status::Pending)
    }

    /// Registers `then` as the request's completion (HSE_REQ_IO_COMPLETION).
    #[allow(unsafe_code)]
    fn on_completion(&mut self, then: Completion) -> Result<(), Win32Error> {
        let context = Box::into_raw(Box::new(then));
        // SAFETY: IO_COMPLETION takes the function and its context.
        let registered = unsafe {
            self.support_with(
                ext::req::IO_COMPLETION,
                completion_trampoline as *mut std::ffi::c_void,
                std::ptr::null_mut(),
                context as *mut Dword,
            )
        };
        if registered.is_err() {
            // SAFETY: not handed over: ours to free.
            drop(unsafe { Box::from_raw(context) });
        }
        registered
    }

    /// Ends a pending request (HSE_REQ_DONE_WITH_SESSION).
    #[allow(unsafe_code)]
    fn done(&mut self, status: Status) {
        let mut code = status.code();
        // SAFETY: DONE_WITH_SESSION takes a pointer to the status.
        let _ = unsafe {
            self.support(
                ext::req::DONE_WITH_SESSION,
                (&mut code as *mut Dword).cast(),
            )
        };
    }

    /// A ServerSupportFunction request whose argument is `buffer`.
    ///
    /// # Safety
    /// `buffer` is what `request` expects, per httpext.h.
    #[allow(unsafe_code)]
    unsafe fn support(
        &mut self,
        request: Dword,
        buffer: *mut std::ffi::c_void,
    ) -> Result<(), Win32Error> {
        // SAFETY: the caller's promise.
        unsafe { self.support_with(request, buffer, std::ptr::null_mut(), std::ptr::null_mut()) }
    }

    /// A ServerSupportFunction request with all three arguments.
    ///
    /// # Safety
    /// `buffer`, `size` and `data_type` are what `request` expects, per
    /// httpext.h.
    #[allow(unsafe_code)]
    unsafe fn support_with(
        &mut self,
        request: Dword,
        buffer: *mut std::ffi::c_void,
        size: *mut Dword,
        data_type: *mut Dword,
    ) -> Result<(), Win32Error> {
        let ssf = self
            .ecb
            .server_support_function
            .ok_or(Win32Error(error::NOT_SUPPORTED))?;
        // SAFETY: the caller's promise.
        let ok = unsafe { ssf(self.ecb.conn_id, request, buffer, size, data_type) };
        if ok == FALSE {
            return Err(last_error());
        }
        Ok(())
    }
}

/// A child request for [`Request::exec_url`]: each part `None` keeps the
/// request's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecUrl<'a> {
    /// The URL (with its query), a local absolute path.
    pub url: Option<&'a str>,
    pub method: Option<&'a str>,
    /// Header lines (`Name: value\r\n…`) in place of the request's.
    pub headers: Option<&'a str>,
    /// A body in place of the client's.
    pub entity: Option<&'a [u8]>,
    /// Skip this extension for the child (a wildcard map's front end).
    pub ignore_current_interceptor: bool,
}

/// How a child request ended (HSE_EXEC_URL_STATUS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildStatus {
    pub status: u16,
    pub substatus: u16,
    pub win32: Dword,
}

/// A completion: the request, the bytes and Win32 status of the I/O.
type Completion = Box<dyn FnOnce(&mut Request<'_>, Dword, Dword) + Send>;

/// The C completion function every Rust completion goes through: it
/// runs the closure registered as its context, once; a panic in it ends
/// the request with an error.
#[allow(unsafe_code)]
unsafe extern "C" fn completion_trampoline(
    ecb: *mut ExtensionControlBlock,
    context: *mut std::ffi::c_void,
    bytes: Dword,
    status: Dword,
) {
    if ecb.is_null() || context.is_null() {
        return;
    }
    // SAFETY: the context is the box on_completion made, given once.
    let then = unsafe { Box::from_raw(context as *mut Completion) };
    // SAFETY: the server's control block is valid for the completion.
    let mut request = Request {
        ecb: unsafe { &mut *ecb },
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        then(&mut request, bytes, status)
    }));
    if outcome.is_err() {
        request.done(Status::Error);
    }
}

/// The one extension of a module, made on its first use.
pub type Slot = OnceLock<Box<dyn HttpExtension>>;

/// GetExtensionVersion's body, for [`export_extension!`].
///
/// # Safety
/// `info` is NULL or a writable HSE_VERSION_INFO, as the server passes it.
#[allow(unsafe_code)]
pub unsafe fn get_version(
    slot: &Slot,
    make: impl FnOnce() -> Box<dyn HttpExtension>,
    info: *mut HseVersionInfo,
) -> Bool {
    let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let extension = slot.get_or_init(make);
        if info.is_null() {
            return FALSE;
        }
        // SAFETY: the server passes a writable HSE_VERSION_INFO.
        let info = unsafe { &mut *info };
        info.dw_extension_version = ext::HSE_VERSION;
        let description = extension.description().as_bytes();
        let n = description.len().min(ext::HSE_MAX_EXT_DLL_NAME_LEN - 1);
        for (to, from) in info.lpsz_extension_desc.iter_mut().zip(&description[..n]) {
            *to = *from as c_char;
        }
        info.lpsz_extension_desc[n] = 0;
        TRUE
    }));
    made.unwrap_or(FALSE)
}

/// HttpExtensionProc's body, for [`export_extension!`].
///
/// # Safety
/// `ecb` is NULL or the server's control block, valid for the call.
#[allow(unsafe_code)]
pub unsafe fn http_extension_proc(slot: &Slot, ecb: *mut ExtensionControlBlock) -> Dword {
    let Some(extension) = slot.get() else {
        return ext::status::ERROR;
    };
    if ecb.is_null() {
        return ext::status::ERROR;
    }
    // SAFETY: the server's control block is valid for the call.
    let mut request = Request {
        ecb: unsafe { &mut *ecb },
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        extension.handle(&mut request).code()
    }))
    .unwrap_or(ext::status::ERROR)
}

/// TerminateExtension's body, for [`export_extension!`].
pub fn terminate_extension(slot: &Slot) -> Bool {
    if let Some(extension) = slot.get() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extension.terminate()));
    }
    TRUE
}

/// Exports an [`HttpExtension`] as the module's ISAPI entry points:
/// `isapi::export_extension!(MyExtension::new());` in a `cdylib` crate.
#[macro_export]
macro_rules! export_extension {
    ($make:expr) => {
        static ISAPI_EXTENSION: $crate::extension::Slot = $crate::extension::Slot::new();

        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn GetExtensionVersion(
            info: *mut $crate::ext::HseVersionInfo,
        ) -> $crate::types::Bool {
            // SAFETY: the server calls with its HSE_VERSION_INFO.
            unsafe { $crate::extension::get_version(&ISAPI_EXTENSION, || Box::new($make), info) }
        }

        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn HttpExtensionProc(
            ecb: *mut $crate::ext::ExtensionControlBlock,
        ) -> $crate::types::Dword {
            // SAFETY: the server calls with its control block.
            unsafe { $crate::extension::http_extension_proc(&ISAPI_EXTENSION, ecb) }
        }

        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn TerminateExtension(_flags: $crate::types::Dword) -> $crate::types::Bool {
            $crate::extension::terminate_extension(&ISAPI_EXTENSION)
        }
    };
}
