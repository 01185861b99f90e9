//! Hosting extensions: loading a module (`dlopen`, then its
//! GetExtensionVersion), calling HttpExtensionProc with an
//! EXTENSION_CONTROL_BLOCK whose callbacks lead to a [`Connection`] the
//! server implements in safe Rust, and TerminateExtension when the module
//! is unloaded.
//!
//! Everything unsafe about ISAPI stays in this file: the module's entry
//! points, the raw pointers of the control block, and the C callbacks,
//! which never let a Rust panic cross into C and check that the ConnID a
//! module hands back is one of the requests in progress.

use std::collections::HashSet;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::ext::{
    self, ExtensionControlBlock, GetExtensionVersionFn, HConn, HseSendHeaderExInfo, HseVersionInfo,
    HttpExtensionProcFn, TerminateExtensionFn,
};
use crate::types::{error, Bool, Dword, LpStr, LpVoid, FALSE, TRUE};

/// Why a module cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot load it: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: it does not export {symbol} (an ISAPI extension exports GetExtensionVersion and HttpExtensionProc)")]
    Missing { path: PathBuf, symbol: &'static str },
    #[error("{path}: its GetExtensionVersion returned FALSE (it refused to start)")]
    Refused { path: PathBuf },
}

/// What the server does for one request, on the extension's behalf.
/// Called on the thread the extension calls from.
pub trait Connection: Send {
    /// A server variable's value (without a terminating NUL); `None` when
    /// the server has no variable of that name.
    fn server_variable(&mut self, name: &str) -> Option<Vec<u8>>;
    /// Reads request body bytes beyond those handed over in the control
    /// block; `Ok(0)` at the end of the body.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Sends the response's status line and header fields: `status` as
    /// "200 OK", `headers` as CRLF-separated lines, possibly followed by
    /// an empty line and the start of the body.
    fn send_headers(&mut self, status: &str, headers: &str, keep_conn: bool)
        -> std::io::Result<()>;
    /// Sends response body bytes (a default "200 OK" head first when the
    /// extension sent none).
    fn write(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// HSE_REQ_SEND_URL_REDIRECT_RESP: a 302 to `url`.
    fn redirect(&mut self, url: &str) -> std::io::Result<()>;
    /// HSE_REQ_IS_KEEP_CONN.
    fn keep_conn(&self) -> bool;
    /// HSE_APPEND_LOG_PARAMETER: text for the request log's query field.
    fn append_log(&mut self, text: &str);
    /// HSE_REQ_CLOSE_CONNECTION and HSE_REQ_ABORTIVE_CLOSE.
    fn close_connection(&mut self);
    /// HSE_REQ_REPORT_UNHEALTHY: the module asks for its process to be
    /// replaced, giving a reason (NULL: none).
    fn report_unhealthy(&mut self, reason: &str);
    /// HSE_REQ_EXEC_URL: runs a child request that answers in this one's
    /// place; returns when the child has answered. `Err` with the Win32
    /// error when it cannot be run.
    fn exec_url(&mut self, request: &ExecUrl) -> Result<(), Dword> {
        let _ = request;
        Err(error::NOT_SUPPORTED)
    }
    /// HSE_REQ_GET_EXEC_URL_STATUS: how the last child request ended
    /// (status, sub-status, Win32 error).
    fn exec_url_status(&self) -> Option<(u16, u16, Dword)> {
        None
    }
    /// A ServerSupportFunction request this host does not carry out
    /// itself; `Err` with the Win32 error to report. The default knows
    /// none.
    fn other_request(&mut self, request: Dword) -> Result<(), Dword> {
        let _ = request;
        Err(error::INVALID_PARAMETER)
    }
}

/// A loaded extension.
pub struct Extension {
    path: PathBuf,
    description: String,
    version: Dword,
    proc_: HttpExtensionProcFn,
    terminate: Option<TerminateExtensionFn>,
    // Last: the entry points above point into it.
    library: Option<libloading::Library>,
}

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension")
            .field("path", &self.path)
            .field("description", &self.description)
            .finish()
    }
}

/// What one call of HttpExtensionProc came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// HSE_STATUS_*, or what HSE_REQ_DONE_WITH_SESSION reported for a
    /// pending request.
    pub status: Dword,
    /// The extension's dwHttpStatusCode, for the log.
    pub http_status: Dword,
    /// The extension's lpszLogData.
    pub log_data: String,
    /// A pending request the extension never finished in time.
    pub abandoned: bool,
}

/// A pending request's progress.
#[derive(Default)]
struct Pending {
    done: Option<Dword>,
    /// Asynchronous operations finished (bytes, Win32 error) whose
    /// completion function is still to be called.
    completions: Vec<(Dword, Dword)>,
}

/// The requests in progress, by the ConnID their extension was given.
static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request's state behind its ConnID.
struct Session<'a> {
    conn: Mutex<&'a mut dyn Connection>,
    /// What the request's waiter has to do: HSE_REQ_DONE_WITH_SESSION's
    /// status, and completions to deliver.
    state: Mutex<Pending>,
    finished: Condvar,
    /// HSE_REQ_IO_COMPLETION's function and context.
    completion: Mutex<Option<(ext::IoCompletionFn, usize)>>,
    /// The ECB the extension was handed: the callbacks take the session
    /// from its ConnID, never from the ECB.
    ecb: *mut ExtensionControlBlock,
}

#[allow(unsafe_code)]
fn set_last_error(code: Dword) {
    // SAFETY: errno is the calling thread's; the pointer libc returns
    // stays valid for the thread's life.
    unsafe { *libc::__errno_location() = code as i32 };
}

/// Copies `text` into a C string; NULs in it end it where they are.
fn c_string(text: &str) -> CString {
    let cut = text.split('\0').next().unwrap_or_default();
    CString::new(cut).unwrap_or_default()
}

impl Extension {
    /// Loads the module and runs its GetExtensionVersion.
    #[allow(unsafe_code)]
    pub fn load(path: &Path) -> Result<Extension, LoadError> {
        let open_error = |reason: String| LoadError::Open {
            path: path.to_path_buf(),
            reason,
        };
        // SAFETY: loading runs the module's initialisers: running the
        // administrator's module is what an ISAPI host is for.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|e| open_error(e.to_string()))?;
        let missing = |symbol| LoadError::Missing {
            path: path.to_path_buf(),
            symbol,
        };
        // SAFETY: the symbols are declared by httpext.h with these types.
        let (get_version, proc_, terminate) = unsafe {
            let get_version = *library
                .get::<GetExtensionVersionFn>(b"GetExtensionVersion\0")
                .map_err(|_| missing("GetExtensionVersion"))?;
            let proc_ = *library
                .get::<HttpExtensionProcFn>(b"HttpExtensionProc\0")
                .map_err(|_| missing("HttpExtensionProc"))?;
            let terminate = library
                .get::<TerminateExtensionFn>(b"TerminateExtension\0")
                .ok()
                .map(|s| *s);
            (get_version, proc_, terminate)
        };
        let mut info = HseVersionInfo {
            dw_extension_version: 0,
            lpsz_extension_desc: [0; ext::HSE_MAX_EXT_DLL_NAME_LEN],
        };
        // SAFETY: `info` is the structure the module expects, writable.
        let accepted = unsafe { get_version(&mut info) };
        if accepted == FALSE {
            return Err(LoadError::Refused {
                path: path.to_path_buf(),
            });
        }
        // The module may fill the whole array without a NUL.
        let bytes: Vec<u8> = info
            .lpsz_extension_desc
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(Extension {
            path: path.to_path_buf(),
            description: String::from_utf8_lossy(&bytes).into_owned(),
            version: info.dw_extension_version,
            proc_,
            terminate,
            library: Some(library),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What GetExtensionVersion said the module is.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The ISAPI version the module was written for (HSE_VERSION).
    pub fn version(&self) -> Dword {
        self.version
    }

    /// Runs HttpExtensionProc for one request, on this thread. A request
    /// the extension leaves pending is waited for (up to `pending_limit`)
    /// until it calls HSE_REQ_DONE_WITH_SESSION.
    #[allow(unsafe_code)]
    pub fn call(
        &self,
        conn: &mut dyn Connection,
        request: &RequestFacts,
        pending_limit: Duration,
    ) -> Outcome {
        let method = c_string(&request.method);
        let query = c_string(&request.query_string);
        let path_info = c_string(&request.path_info);
        let path_translated = c_string(&request.path_translated);
        let content_type = c_string(&request.content_type);
        let mut preloaded = request.preloaded.clone();
        let mut ecb = ExtensionControlBlock {
            cb_size: std::mem::size_of::<ExtensionControlBlock>() as Dword,
            dw_version: ext::HSE_VERSION,
            conn_id: std::ptr::null_mut(),
            dw_http_status_code: 200,
            lpsz_log_data: [0; ext::HSE_LOG_BUFFER_LEN],
            lpsz_method: method.as_ptr() as LpStr,
            lpsz_query_string: query.as_ptr() as LpStr,
            lpsz_path_info: path_info.as_ptr() as LpStr,
            lpsz_path_translated: path_translated.as_ptr() as LpStr,
            cb_total_bytes: request.total_bytes,
            cb_available: preloaded.len() as Dword,
            lpb_data: preloaded.as_mut_ptr(),
            lpsz_content_type: content_type.as_ptr() as LpStr,
            get_server_variable: Some(get_server_variable),
            write_client: Some(write_client),
            read_client: Some(read_client),
            server_support_function: Some(server_support_function),
        };
        let session = Session {
            conn: Mutex::new(conn),
            state: Mutex::new(Pending::default()),
            finished: Condvar::new(),
            completion: Mutex::new(None),
            ecb: &mut ecb,
        };
        let id = &session as *const Session as usize;
        ecb.conn_id = id as HConn;
        live().get_or_insert_with(HashSet::new).insert(id);
        // SAFETY: the ECB and everything it points to live until after the
        // call (and until a pending request is done or abandoned).
        let mut status = unsafe { (self.proc_)(session.ecb) };
        let mut abandoned = false;
        if status == ext::status::PENDING {
            let deadline = std::time::Instant::now() + pending_limit;
            let mut state = session.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(done) = state.done {
                    status = done;
                    break;
                }
                if let Some((bytes, error)) = state.completions.pop() {
                    drop(state);
                    let completion = *session.completion.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some((function, context)) = completion {
                        // SAFETY: the module registered this function for
                        // its asynchronous operations, with this context.
                        unsafe { function(session.ecb, context as LpVoid, bytes, error) };
                    }
                    state = session.state.lock().unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    abandoned = true;
                    status = ext::status::ERROR;
                    break;
                }
                state = session
                    .finished
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        live().get_or_insert_with(HashSet::new).remove(&id);
        let log: Vec<u8> = ecb
            .lpsz_log_data
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Outcome {
            status,
            http_status: ecb.dw_http_status_code,
            log_data: String::from_utf8_lossy(&log).into_owned(),
            abandoned,
        }
    }
}

impl Drop for Extension {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(terminate) = self.terminate {
            // SAFETY: the module is still loaded; it may not refuse.
            unsafe { terminate(ext::HSE_TERM_MUST_UNLOAD) };
        }
        drop(self.library.take());
    }
}

/// A child request (HSE_EXEC_URL_INFO): each part `None` keeps the
/// parent's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecUrl {
    /// The URL, with its query (not decoded).
    pub url: Option<String>,
    pub method: Option<String>,
    /// Header lines (`Name: value\r\n…`) that replace the parent's.
    pub headers: Option<String>,
    /// A body that replaces the parent's.
    pub entity: Option<Vec<u8>>,
    /// HSE_EXEC_URL_* flags.
    pub flags: Dword,
}

/// The request as the control block describes it.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub method: String,
    pub query_string: String,
    pub path_info: String,
    pub path_translated: String,
    pub content_type: String,
    /// The body's whole length (cbTotalBytes; 0xffffffff when chunked).
    pub total_bytes: Dword,
    /// The body bytes read ahead (cbAvailable, lpbData).
    pub preloaded: Vec<u8>,
}

/// The session behind a ConnID, if it is a request in progress.
#[allow(unsafe_code)]
fn session<'a>(hconn: HConn) -> Option<&'a Session<'a>> {
    let id = hconn as usize;
    if !live().as_ref().is_some_and(|set| set.contains(&id)) {
        return None;
    }
    // SAFETY: registered sessions are alive until removed, after the call
    // (and any pending wait) is over.
    Some(unsafe { &*(hconn as *const Session) })
}

/// An HSE_EXEC_URL_INFO in Rust's terms.
#[allow(unsafe_code)]
fn exec_url_info(info: &ext::HseExecUrlInfo) -> Result<ExecUrl, Dword> {
    let optional = |p: *const c_char| -> Result<Option<String>, Dword> {
        if p.is_null() {
            Ok(None)
        } else {
            text(p).map(|t| Some(t.to_string()))
        }
    };
    let entity = if info.p_entity.is_null() {
        None
    } else {
        // SAFETY: the module's entity info and its bytes.
        let entity = unsafe { &*info.p_entity };
        Some(if entity.lpb_data.is_null() || entity.cb_available == 0 {
            Vec::new()
        } else {
            unsafe {
                std::slice::from_raw_parts(
                    entity.lpb_data as *const u8,
                    entity.cb_available as usize,
                )
            }
            .to_vec()
        })
    };
    Ok(ExecUrl {
        url: optional(info.psz_url)?,
        method: optional(info.psz_method)?,
        headers: optional(info.psz_child_headers)?,
        entity,
        flags: info.dw_exec_url_flags,
    })
}

/// Runs a callback's body, turning a panic into FALSE with
/// ERROR_INVALID_PARAMETER rather than unwinding into C.
fn guarded(body: impl FnOnce() -> Result<(), Dword>) -> Bool {
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

/// A C string argument, or ERROR_INVALID_PARAMETER for NULL.
#[allow(unsafe_code)]
fn text<'a>(p: *const c_char) -> Result<&'a str, Dword> {
    if p.is_null() {
        return Err(error::INVALID_PARAMETER);
    }
    // SAFETY: the module passes a NUL-terminated string (httpext.h).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|_| error::INVALID_PARAMETER)
}

#[allow(unsafe_code)]
unsafe extern "C" fn get_server_variable(
    hconn: HConn,
    name: LpStr,
    buffer: LpVoid,
    size: *mut Dword,
) -> Bool {
    guarded(|| {
        let session = session(hconn).ok_or(error::INVALID_PARAMETER)?;
        let name = text(name)?;
        if size.is_null() {
            return Err(error::INVALID_PARAMETER);
        }
        let value = session
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .server_variable(name)
            .ok_or(error::INVALID_INDEX)?;
        let needed = value.len() + 1;
        // SAFETY: `size` is the module's DWORD; `buffer` holds `*size`
        // bytes when it is not NULL.
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
    })
}

#[allow(unsafe_code)]
unsafe extern "C" fn write_client(
    hconn: HConn,
    buffer: LpVoid,
    bytes: *mut Dword,
    flags: Dword,
) -> Bool {
    guarded(|| {
        let session = session(hconn).ok_or(error::INVALID_PARAMETER)?;
        if bytes.is_null() || (buffer.is_null() && unsafe { *bytes } != 0) {
            return Err(error::INVALID_PARAMETER);
        }
        if flags & ext::io::ASYNC != 0 {
            // Asynchronous writes need HSE_REQ_IO_COMPLETION: not yet.
            return Err(error::NOT_SUPPORTED);
        }
        // SAFETY: the module's buffer holds `*bytes` bytes.
        let data = unsafe { std::slice::from_raw_parts(buffer as *const u8, *bytes as usize) };
        let mut conn = session.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.write(data).map_err(|_| error::INVALID_HANDLE)
    })
}

#[allow(unsafe_code)]
unsafe extern "C" fn read_client(hconn: HConn, buffer: LpVoid, size: *mut Dword) -> Bool {
    guarded(|| {
        let session = session(hconn).ok_or(error::INVALID_PARAMETER)?;
        if size.is_null() || buffer.is_null() {
            return Err(error::INVALID_PARAMETER);
        }
        // SAFETY: the module's buffer holds `*size` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(buffer as *mut u8, *size as usize) };
        let mut conn = session.conn.lock().unwrap_or_else(|e| e.into_inner());
        let n = conn.read(buf).map_err(|_| error::INVALID_HANDLE)?;
        // SAFETY: as above.
        unsafe { *size = n as Dword };
        Ok(())
    })
}

#[allow(unsafe_code)]
unsafe extern "C" fn server_support_function(
    hconn: HConn,
    request: Dword,
    buffer: LpVoid,
    size: *mut Dword,
    data_type: *mut Dword,
) -> Bool {
    guarded(|| {
        let session = session(hconn).ok_or(error::INVALID_PARAMETER)?;
        let io = |r: std::io::Result<()>| r.map_err(|_| error::INVALID_HANDLE);
        let mut conn = session.conn.lock().unwrap_or_else(|e| e.into_inner());
        match request {
            ext::req::SEND_RESPONSE_HEADER => {
                // lpvBuffer: the status; lpdwDataType: the header lines.
                let status = if buffer.is_null() {
                    "200 OK"
                } else {
                    text(buffer as *const c_char)?
                };
                let headers = if data_type.is_null() {
                    ""
                } else {
                    text(data_type as *const c_char)?
                };
                let keep = conn.keep_conn();
                io(conn.send_headers(status, headers, keep))
            }
            ext::req::SEND_RESPONSE_HEADER_EX => {
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the module passes an HSE_SEND_HEADER_EX_INFO.
                let info = unsafe { &*(buffer as *const HseSendHeaderExInfo) };
                let status = if info.psz_status.is_null() {
                    "200 OK"
                } else {
                    text(info.psz_status)?
                };
                let headers = if info.psz_header.is_null() {
                    ""
                } else {
                    text(info.psz_header)?
                };
                io(conn.send_headers(status, headers, info.f_keep_conn != FALSE))
            }
            ext::req::SEND_URL_REDIRECT_RESP | ext::req::SEND_URL => {
                let url = text(buffer as *const c_char)?;
                io(conn.redirect(url))
            }
            ext::req::IS_KEEP_CONN => {
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the answer is a BOOL the module provides.
                unsafe { *(buffer as *mut Bool) = Bool::from(conn.keep_conn()) };
                Ok(())
            }
            ext::req::DONE_WITH_SESSION => {
                drop(conn);
                let status = if buffer.is_null() {
                    ext::status::SUCCESS
                } else {
                    // SAFETY: the status is a DWORD the module provides.
                    unsafe { *(buffer as *const Dword) }
                };
                session.state.lock().unwrap_or_else(|e| e.into_inner()).done = Some(status);
                session.finished.notify_all();
                Ok(())
            }
            ext::req::IO_COMPLETION => {
                // lpvBuffer: the function; lpdwDataType: its context.
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: httpext.h: the buffer is a PFN_HSE_IO_COMPLETION.
                let function: ext::IoCompletionFn = unsafe { std::mem::transmute(buffer) };
                *session.completion.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((function, data_type as usize));
                Ok(())
            }
            ext::req::EXEC_URL => {
                let request = if buffer.is_null() {
                    ExecUrl::default()
                } else {
                    // SAFETY: the module passes an HSE_EXEC_URL_INFO.
                    exec_url_info(unsafe { &*(buffer as *const ext::HseExecUrlInfo) })?
                };
                conn.exec_url(&request)?;
                drop(conn);
                // The child has answered: the completion function is called
                // once the module has returned HSE_STATUS_PENDING.
                session
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .completions
                    .push((0, error::SUCCESS));
                session.finished.notify_all();
                Ok(())
            }
            ext::req::GET_EXEC_URL_STATUS => {
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                let (status, sub, win32) =
                    conn.exec_url_status().ok_or(error::INVALID_PARAMETER)?;
                // SAFETY: the module passes an HSE_EXEC_URL_STATUS.
                unsafe {
                    *(buffer as *mut ext::HseExecUrlStatus) = ext::HseExecUrlStatus {
                        u_http_status_code: status,
                        u_http_sub_status: sub,
                        dw_win32_error: win32,
                    };
                }
                Ok(())
            }
            ext::req::APPEND_LOG_PARAMETER => {
                conn.append_log(text(buffer as *const c_char)?);
                Ok(())
            }
            ext::req::CLOSE_CONNECTION | ext::req::ABORTIVE_CLOSE => {
                conn.close_connection();
                Ok(())
            }
            ext::req::REPORT_UNHEALTHY => {
                let reason = if buffer.is_null() {
                    ""
                } else {
                    text(buffer as *const c_char)?
                };
                conn.report_unhealthy(reason);
                Ok(())
            }
            ext::req::GET_IMPERSONATION_TOKEN => Err(error::NOT_SUPPORTED),
            other => {
                let _ = size;
                conn.other_request(other)
            }
        }
    })
}
