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
use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::ext::{
    self, ExtensionControlBlock, GetExtensionVersionFn, HConn, HseSendHeaderExInfo, HseVersionInfo,
    HttpExtensionProcFn, TerminateExtensionFn,
};
use crate::ffi::{answer, array_text, entry, guarded, text};
use crate::types::{error, Bool, Dword, LpStr, LpVoid, FALSE, TRUE};

/// Why a module cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot load it: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: it does not export {symbol} (an ISAPI extension exports GetExtensionVersion and HttpExtensionProc)")]
    Missing { path: PathBuf, symbol: &'static str },
    #[error("{path}: its GetExtensionVersion (or GetFilterVersion) returned FALSE (it refused to start)")]
    Refused { path: PathBuf },
    #[error("{path}: the filter asks for SF_NOTIFY_READ_RAW_DATA, which needs IIS 5 isolation mode (in worker process isolation mode many worker processes cannot share one connection's raw data)")]
    RawData { path: PathBuf },
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
    /// HSE_REQ_MAP_URL_TO_PATH(_EX): a URL's physical path, with the
    /// access flags of its key and how much of the path and URL that key
    /// maps; `None` when the URL maps to no file.
    fn map_url(&mut self, url: &str) -> Option<UrlMapping> {
        let _ = url;
        None
    }
    /// HSE_REQ_TRANSMIT_FILE and file elements of HSE_REQ_VECTOR_SEND:
    /// `len` bytes of `file` from `offset` (0: to its end) as body bytes.
    fn send_file(&mut self, file: std::fs::File, offset: u64, len: u64) -> std::io::Result<u64> {
        let _ = (file, offset, len);
        Err(std::io::Error::other("not supported"))
    }
    /// HSE_REQ_GET_CERT_INFO_EX: the client certificate (DER), if any.
    fn client_certificate(&self) -> Option<Vec<u8>> {
        None
    }
    /// HSE_REQ_SET_FLUSH_FLAG: write through at once (TRUE) or let the
    /// server gather small writes (FALSE).
    fn set_flush(&mut self, flush: bool) {
        let _ = flush;
    }
    /// A ServerSupportFunction request this host does not carry out
    /// itself; `Err` with the Win32 error to report. The default knows
    /// none.
    fn other_request(&mut self, request: Dword) -> Result<(), Dword> {
        let _ = request;
        Err(error::INVALID_PARAMETER)
    }

    /// HSE_IO_CACHE_RESPONSE: the extension lets its response be cached
    /// (in IIS by HTTP.SYS; here by the listener), answering repeats of
    /// the request without it.
    fn cache_response(&mut self) {}

    /// A request the host cannot do here was refused: `why`, for the
    /// administrator (the module only sees the error code).
    fn refused(&mut self, request: &'static str, why: &'static str) {
        let _ = (request, why);
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

/// A completion function with its context.
type Completion = (ext::IoCompletionFn, usize);

/// A pending request's progress.
#[derive(Default)]
struct Pending {
    done: Option<Dword>,
    /// Asynchronous operations finished whose completion function is
    /// still to be called: the operation's own function (TransmitFile's)
    /// or, with `None`, HSE_REQ_IO_COMPLETION's; bytes; Win32 error.
    completions: Vec<(Option<Completion>, Dword, Dword)>,
}

/// The requests in progress, by the ConnID their extension was given.
static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request's state behind its ConnID.
struct Session<'a> {
    conn: Mutex<&'a mut dyn Connection>,
    /// What the request's waiter has to do. Shared: a module's thread
    /// that signals it (HSE_REQ_DONE_WITH_SESSION) may still hold it when
    /// the waiter has returned and this session is gone.
    signal: Arc<Signal>,
    /// HSE_REQ_IO_COMPLETION's function and context.
    completion: Mutex<Option<Completion>>,
    /// The ECB the extension was handed: the callbacks take the session
    /// from its ConnID, never from the ECB.
    ecb: *mut ExtensionControlBlock,
}

/// HSE_REQ_DONE_WITH_SESSION's status and completions to deliver, with
/// the condition the waiter sleeps on.
#[derive(Default)]
struct Signal {
    state: Mutex<Pending>,
    finished: Condvar,
}

impl Signal {
    fn update(&self, change: impl FnOnce(&mut Pending)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.finished.notify_all();
    }
}

impl Session<'_> {
    /// Queues a completion for the request's waiter to deliver.
    fn complete(&self, own: Option<Completion>, bytes: Dword, error: Dword) {
        let signal = self.signal.clone();
        signal.update(|p| p.completions.push((own, bytes, error)));
    }
}

impl Extension {
    /// Loads the module and runs its GetExtensionVersion.
    pub fn load(path: &Path) -> Result<Extension, LoadError> {
        Extension::load_from(path, path)
    }

    /// Loads the module `path` by another name for the same file
    /// (`/proc/self/fd/N` for a descriptor the host holds); errors name
    /// `path`.
    #[allow(unsafe_code)]
    pub fn load_from(path: &Path, open_as: &Path) -> Result<Extension, LoadError> {
        let library = crate::ffi::open(path, open_as)?;
        // SAFETY: the types are the ones httpext.h declares.
        let (get_version, proc_, terminate) = unsafe {
            (
                entry::<GetExtensionVersionFn>(&library, path, "GetExtensionVersion")?,
                entry::<HttpExtensionProcFn>(&library, path, "HttpExtensionProc")?,
                entry::<TerminateExtensionFn>(&library, path, "TerminateExtension").ok(),
            )
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
        Ok(Extension {
            path: path.to_path_buf(),
            // The module may fill the whole array without a NUL.
            description: array_text(&info.lpsz_extension_desc),
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
        // The ECB's strings, each up to a NUL it may hold and ended by
        // one, in one buffer.
        let texts = [
            &request.method,
            &request.query_string,
            &request.path_info,
            &request.path_translated,
            &request.content_type,
        ];
        let mut strings = Vec::with_capacity(texts.iter().map(|t| t.len() + 1).sum());
        let mut starts = [0usize; 5];
        for (start, text) in starts.iter_mut().zip(texts) {
            *start = strings.len();
            strings.extend_from_slice(text.split('\0').next().unwrap_or_default().as_bytes());
            strings.push(0u8);
        }
        let [method, query, path_info, path_translated, content_type] =
            starts.map(|start| strings[start..].as_ptr() as LpStr);
        let mut preloaded = request.preloaded.clone();
        let mut ecb = ExtensionControlBlock {
            cb_size: std::mem::size_of::<ExtensionControlBlock>() as Dword,
            dw_version: ext::HSE_VERSION,
            conn_id: std::ptr::null_mut(),
            dw_http_status_code: 200,
            lpsz_log_data: [0; ext::HSE_LOG_BUFFER_LEN],
            lpsz_method: method,
            lpsz_query_string: query,
            lpsz_path_info: path_info,
            lpsz_path_translated: path_translated,
            cb_total_bytes: request.total_bytes,
            cb_available: preloaded.len() as Dword,
            lpb_data: preloaded.as_mut_ptr(),
            lpsz_content_type: content_type,
            get_server_variable: Some(get_server_variable),
            write_client: Some(write_client),
            read_client: Some(read_client),
            server_support_function: Some(server_support_function),
        };
        let session = Session {
            conn: Mutex::new(conn),
            signal: Arc::default(),
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
            let signal = session.signal.clone();
            let mut state = signal.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(done) = state.done {
                    status = done;
                    break;
                }
                if !state.completions.is_empty() {
                    let (own, bytes, error) = state.completions.remove(0);
                    drop(state);
                    let completion =
                        own.or(*session.completion.lock().unwrap_or_else(|e| e.into_inner()));
                    if let Some((function, context)) = completion {
                        // SAFETY: the module registered this function for
                        // its asynchronous operations, with this context.
                        unsafe { function(session.ecb, context as LpVoid, bytes, error) };
                    }
                    state = signal.state.lock().unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    abandoned = true;
                    status = ext::status::ERROR;
                    break;
                }
                state = signal
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

/// What HSE_REQ_MAP_URL_TO_PATH_EX reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlMapping {
    pub path: String,
    /// HSE_URL_FLAGS_* (the key's AccessFlags and AccessSSLFlags).
    pub flags: Dword,
    pub matching_path: Dword,
    pub matching_url: Dword,
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

/// Writes `text` and a NUL at `to`.
///
/// # Safety
/// `to` holds at least `text.len() + 1` bytes.
#[allow(unsafe_code)]
unsafe fn copy_c_string(text: &str, to: *mut u8) {
    // SAFETY: the caller's promise.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), to, text.len());
        *to.add(text.len()) = 0;
    }
}

/// A copy of a module's bytes (NULL or empty: none).
#[allow(unsafe_code)]
fn bytes_at(p: LpVoid, len: Dword) -> Vec<u8> {
    if p.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the module's buffer holds `len` bytes.
    unsafe { std::slice::from_raw_parts(p as *const u8, len as usize) }.to_vec()
}

/// The file a module names by its descriptor (a HANDLE here holds a
/// descriptor), duplicated so the module keeps its own.
fn borrowed_file(handle: crate::types::Handle) -> Result<std::fs::File, Dword> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let fd = i32::try_from(handle as isize).map_err(|_| error::INVALID_HANDLE)?;
    if fd < 0 {
        return Err(error::INVALID_HANDLE);
    }
    // The descriptor must be open: fcntl says so without touching it.
    if descriptor_is_open(fd).is_none() {
        return Err(error::INVALID_HANDLE);
    }
    #[allow(unsafe_code)]
    // SAFETY: the descriptor is open (checked above) and the module keeps
    // it open for the call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed
        .try_clone_to_owned()
        .map_err(|_| error::INVALID_HANDLE)?;
    let file = std::fs::File::from(owned);
    debug_assert!(file.as_raw_fd() >= 0);
    Ok(file)
}

/// Whether a descriptor is open.
#[allow(unsafe_code)]
fn descriptor_is_open(fd: i32) -> Option<()> {
    // SAFETY: F_GETFD reads the descriptor's flags and changes nothing.
    (unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).then_some(())
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
        answer(&value, buffer, size)
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
        // SAFETY: the module's buffer holds `*bytes` bytes.
        let data = unsafe { std::slice::from_raw_parts(buffer as *const u8, *bytes as usize) };
        let mut conn = session.conn.lock().unwrap_or_else(|e| e.into_inner());
        let written = conn.write(data).map_err(|_| error::INVALID_HANDLE);
        drop(conn);
        if flags & ext::io::ASYNC != 0 {
            // Done at once; the module learns it from its completion
            // function, as for any asynchronous write.
            let (n, code) = match written {
                Ok(()) => (data.len() as Dword, error::SUCCESS),
                Err(code) => (0, code),
            };
            session.complete(None, n, code);
            return Ok(());
        }
        written
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
                // From here the session may end at any moment: only the
                // shared signal is touched.
                let signal = session.signal.clone();
                signal.update(|p| p.done = Some(status));
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
                session.complete(None, 0, error::SUCCESS);
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
            ext::req::MAP_URL_TO_PATH => {
                // lpvBuffer: the URL in, the path out; lpdwSize: its size.
                if buffer.is_null() || size.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                let url = text(buffer as *const c_char)?.to_string();
                let mapping = conn.map_url(&url).ok_or(error::FILE_NOT_FOUND)?;
                answer(mapping.path.as_bytes(), buffer, size)
            }
            ext::req::MAP_URL_TO_PATH_EX => {
                // lpvBuffer: the URL; lpdwDataType: the HSE_URL_MAPEX_INFO.
                if buffer.is_null() || data_type.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                let url = text(buffer as *const c_char)?.to_string();
                let mapping = conn.map_url(&url).ok_or(error::FILE_NOT_FOUND)?;
                if mapping.path.len() >= crate::types::MAX_PATH {
                    return Err(error::INSUFFICIENT_BUFFER);
                }
                // SAFETY: the module passes an HSE_URL_MAPEX_INFO.
                let info = unsafe { &mut *(data_type as *mut ext::HseUrlMapExInfo) };
                // SAFETY: lpszPath holds MAX_PATH bytes; the path is shorter.
                unsafe { copy_c_string(&mapping.path, info.lpsz_path.as_mut_ptr() as *mut u8) };
                info.dw_flags = mapping.flags;
                info.cch_matching_path = mapping.matching_path;
                info.cch_matching_url = mapping.matching_url;
                Ok(())
            }
            ext::req::TRANSMIT_FILE => {
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the module passes an HSE_TF_INFO.
                let info = unsafe { &*(buffer as *const ext::HseTfInfo) };
                let head = bytes_at(info.p_head, info.head_length);
                let tail = bytes_at(info.p_tail, info.tail_length);
                let file = borrowed_file(info.h_file)?;
                let io = |r: std::io::Result<()>| r.map_err(|_| error::INVALID_HANDLE);
                if info.dw_flags & ext::io::SEND_HEADERS != 0 {
                    let status = if info.psz_status_code.is_null() {
                        "200 OK"
                    } else {
                        text(info.psz_status_code)?
                    };
                    let headers = String::from_utf8_lossy(&head).into_owned();
                    let keep = conn.keep_conn();
                    io(conn.send_headers(status, &headers, keep))?;
                } else if !head.is_empty() {
                    io(conn.write(&head))?;
                }
                let sent = conn
                    .send_file(file, u64::from(info.offset), u64::from(info.bytes_to_write))
                    .map_err(|_| error::INVALID_HANDLE)?;
                if !tail.is_empty() {
                    io(conn.write(&tail))?;
                }
                if info.dw_flags & ext::io::DISCONNECT_AFTER_SEND != 0 {
                    conn.close_connection();
                }
                drop(conn);
                let own = info.pfn_hse_io.map(|f| (f, info.p_context as usize));
                let total = head.len() as u64 + sent + tail.len() as u64;
                session.complete(
                    own,
                    total.min(u64::from(Dword::MAX)) as Dword,
                    error::SUCCESS,
                );
                Ok(())
            }
            ext::req::VECTOR_SEND => {
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the module passes an HSE_RESPONSE_VECTOR.
                let vector = unsafe { &*(buffer as *const ext::HseResponseVector) };
                let io = |r: std::io::Result<()>| r.map_err(|_| error::INVALID_HANDLE);
                if vector.dw_flags & ext::io::CACHE_RESPONSE != 0 {
                    conn.cache_response();
                }
                if vector.dw_flags & ext::io::SEND_HEADERS != 0 {
                    let status = if vector.psz_status.is_null() {
                        "200 OK"
                    } else {
                        text(vector.psz_status)?
                    };
                    let headers = if vector.psz_headers.is_null() {
                        ""
                    } else {
                        text(vector.psz_headers)?
                    };
                    let keep =
                        conn.keep_conn() && vector.dw_flags & ext::io::DISCONNECT_AFTER_SEND == 0;
                    io(conn.send_headers(status, headers, keep))?;
                }
                let elements = if vector.lp_element_array.is_null() || vector.n_element_count == 0 {
                    &[][..]
                } else {
                    // SAFETY: the array holds nElementCount elements.
                    unsafe {
                        std::slice::from_raw_parts(
                            vector.lp_element_array,
                            vector.n_element_count as usize,
                        )
                    }
                };
                let mut total: u64 = 0;
                for element in elements {
                    match element.element_type {
                        ext::HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER => {
                            let len = usize::try_from(element.cb_size)
                                .map_err(|_| error::INVALID_PARAMETER)?;
                            let data = if len == 0 {
                                &[][..]
                            } else if element.pv_context.is_null() {
                                return Err(error::INVALID_PARAMETER);
                            } else {
                                // SAFETY: the element's buffer holds cbSize bytes.
                                unsafe {
                                    std::slice::from_raw_parts(element.pv_context as *const u8, len)
                                }
                            };
                            io(conn.write(data))?;
                            total += len as u64;
                        }
                        ext::HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE => {
                            let file = borrowed_file(element.pv_context)?;
                            total += conn
                                .send_file(file, element.cb_offset, element.cb_size)
                                .map_err(|_| error::INVALID_HANDLE)?;
                        }
                        _ => return Err(error::INVALID_PARAMETER),
                    }
                }
                if vector.dw_flags & ext::io::DISCONNECT_AFTER_SEND != 0 {
                    conn.close_connection();
                }
                drop(conn);
                if vector.dw_flags & ext::io::ASYNC != 0 {
                    session.complete(
                        None,
                        total.min(u64::from(Dword::MAX)) as Dword,
                        error::SUCCESS,
                    );
                }
                Ok(())
            }
            ext::req::GET_CERT_INFO_EX => {
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the module passes a CERT_CONTEXT_EX with its buffer.
                let info = unsafe { &mut *(buffer as *mut ext::CertContextEx) };
                let der = conn.client_certificate().unwrap_or_default();
                info.cert_context.dw_cert_encoding_type =
                    ext::X509_ASN_ENCODING | ext::PKCS_7_ASN_ENCODING;
                info.cert_context.cb_cert_encoded = der.len() as Dword;
                info.dw_certificate_flags = Dword::from(!der.is_empty());
                if der.len() > info.cb_allocated as usize
                    || (!der.is_empty() && info.cert_context.pb_cert_encoded.is_null())
                {
                    return Err(error::INSUFFICIENT_BUFFER);
                }
                if !der.is_empty() {
                    // SAFETY: pbCertEncoded holds cbAllocated bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            der.as_ptr(),
                            info.cert_context.pb_cert_encoded,
                            der.len(),
                        )
                    };
                }
                Ok(())
            }
            ext::req::IS_CONNECTED => {
                if buffer.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the answer is a BOOL the module provides.
                unsafe { *(buffer as *mut Bool) = TRUE };
                Ok(())
            }
            ext::req::SET_FLUSH_FLAG => {
                conn.set_flush(!buffer.is_null());
                Ok(())
            }
            ext::req::ASYNC_READ_CLIENT => {
                // lpvBuffer: where to read; lpdwSize: its size. The read is
                // done at once; the completion reports it.
                if buffer.is_null() || size.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the module's buffer holds `*size` bytes and stays
                // valid until its completion runs.
                let buf =
                    unsafe { std::slice::from_raw_parts_mut(buffer as *mut u8, *size as usize) };
                let read = conn.read(buf);
                drop(conn);
                match read {
                    Ok(n) => session.complete(None, n as Dword, error::SUCCESS),
                    Err(_) => session.complete(None, 0, error::INVALID_HANDLE),
                }
                Ok(())
            }
            ext::req::GET_IMPERSONATION_TOKEN => {
                conn.refused(
                    "HSE_REQ_GET_IMPERSONATION_TOKEN",
                    "there are no Windows access tokens here: the worker process already runs as the application pool's identity (or the user a request logs on as is in LOGON_USER)",
                );
                Err(error::NOT_SUPPORTED)
            }
            other => {
                let _ = size;
                conn.other_request(other)
            }
        }
    })
}
