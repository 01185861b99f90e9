//! Hosting filters: loading a module (GetFilterVersion, which says what
//! it wants to be notified of and at what priority), calling its
//! HttpFilterProc with an HTTP_FILTER_CONTEXT and each notification's
//! structure, whose callbacks lead to a [`FilterConnection`] the server
//! implements in safe Rust, and TerminateFilter at unload.
//!
//! As in IIS 6's worker process isolation mode, a filter asking for
//! SF_NOTIFY_READ_RAW_DATA is refused at load: many worker processes
//! cannot share one connection's raw stream.

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ffi::{answer, array_text, c_string, entry, guarded, text};
use crate::filt::{
    self, GetFilterVersionFn, HttpFilterContext, HttpFilterProcFn, HttpFilterVersion,
    TerminateFilterFn,
};
use crate::host::LoadError;
use crate::types::{error, Bool, Dword, LpStr, LpVoid, FALSE};

/// A loaded filter.
pub struct Filter {
    path: PathBuf,
    description: String,
    flags: Dword,
    proc_: HttpFilterProcFn,
    terminate: Option<TerminateFilterFn>,
    // Last: the entry points above point into it.
    library: Option<libloading::Library>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("path", &self.path)
            .field("flags", &self.flags)
            .finish()
    }
}

/// What the server does for a filter during one notification.
pub trait FilterConnection {
    fn server_variable(&mut self, name: &str) -> Option<Vec<u8>>;
    /// A header of the notification's header set (the request's for
    /// PREPROC_HEADERS and AUTH_COMPLETE, the response's for
    /// SEND_RESPONSE), by its name with the trailing ':' removed; the
    /// request's also answers `method`, `url` and `version`.
    fn header(&self, name: &str) -> Option<Vec<u8>>;
    /// Replaces a header (an empty value deletes it).
    fn set_header(&mut self, name: &str, value: &str) -> bool;
    fn add_header(&mut self, name: &str, value: &str) -> bool;
    /// AddResponseHeaders: lines added to the response.
    fn add_response_headers(&mut self, lines: &str);
    /// WriteClient: bytes sent to the client ahead of anything else.
    fn write(&mut self, data: &[u8]);
    /// SF_REQ_SEND_RESPONSE_HEADER: the filter answers the request.
    fn send_response_header(&mut self, status: &str, headers: &str);
    /// SF_REQ_ADD_HEADERS_ON_DENIAL.
    fn add_headers_on_denial(&mut self, lines: &str);
    /// SF_REQ_DISABLE_NOTIFICATIONS: no more of these for this request.
    fn disable_notifications(&mut self, flags: Dword);
    /// Memory the filter asked for (AllocMem), freed with the request.
    fn alloc(&mut self, size: usize) -> *mut c_void;
    /// The request's connection id (SF_REQ_GET_CONNID).
    fn conn_id(&self) -> Dword;
    /// SF_REQ_SET_NEXT_READ_SIZE: how much the next read from the client
    /// takes; false where the host does not read the raw stream.
    fn set_next_read_size(&mut self, _size: Dword) -> bool {
        false
    }
}

/// One notification, with what the filter may read and change.
pub enum Notification<'a> {
    PreprocHeaders,
    Authentication {
        user: &'a mut String,
        password: &'a mut String,
    },
    UrlMap {
        url: &'a str,
        physical: &'a mut String,
    },
    AccessDenied {
        url: &'a str,
        physical: &'a str,
        reason: Dword,
    },
    AuthComplete,
    SendResponse {
        status: &'a mut u16,
    },
    Log(&'a mut LogFields),
    EndOfRequest,
    EndOfNetSession,
    /// SF_NOTIFY_READ_RAW_DATA (`outbound` false) or
    /// SF_NOTIFY_SEND_RAW_DATA: the bytes, which the filter may change.
    RawData {
        outbound: bool,
        data: &'a mut Vec<u8>,
    },
}

/// The log line's fields a filter may rewrite (HTTP_FILTER_LOG).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFields {
    pub client_host: String,
    pub user: String,
    pub server: String,
    pub operation: String,
    pub target: String,
    pub parameters: String,
    pub status: u32,
    pub win32_status: u32,
    pub bytes_sent: u32,
    pub bytes_received: u32,
    pub time_taken_ms: u32,
}

impl Notification<'_> {
    /// Its SF_NOTIFY_* bit.
    pub fn bit(&self) -> Dword {
        use filt::notify::*;
        match self {
            Notification::PreprocHeaders => PREPROC_HEADERS,
            Notification::Authentication { .. } => AUTHENTICATION,
            Notification::UrlMap { .. } => URL_MAP,
            Notification::AccessDenied { .. } => ACCESS_DENIED,
            Notification::AuthComplete => AUTH_COMPLETE,
            Notification::SendResponse { .. } => SEND_RESPONSE,
            Notification::Log(_) => LOG,
            Notification::EndOfRequest => END_OF_REQUEST,
            Notification::EndOfNetSession => END_OF_NET_SESSION,
            Notification::RawData {
                outbound: false, ..
            } => READ_RAW_DATA,
            Notification::RawData { outbound: true, .. } => SEND_RAW_DATA,
        }
    }
}

/// Extra room after raw data a filter may rewrite in place.
const RAW_HEADROOM: usize = 4096;

/// A filter's per-request state: its pFilterContext, kept between
/// notifications.
#[derive(Debug, Default)]
pub struct FilterState {
    pub context: usize,
}

impl Filter {
    /// Loads the module and runs its GetFilterVersion (a filter that
    /// asks for SF_NOTIFY_READ_RAW_DATA is refused: see
    /// [`Filter::load_from`]).
    pub fn load(path: &Path) -> Result<Filter, LoadError> {
        Filter::load_from(path, path, false)
    }

    /// Loads the module `path` by another name for the same file
    /// (`/proc/self/fd/N` for a descriptor the host holds); errors name
    /// `path`. A filter asking for SF_NOTIFY_READ_RAW_DATA loads only
    /// where the host can give it the raw stream (`raw_data`: IIS 5
    /// isolation mode).
    #[allow(unsafe_code)]
    pub fn load_from(path: &Path, open_as: &Path, raw_data: bool) -> Result<Filter, LoadError> {
        let library = crate::ffi::open(path, open_as)?;
        // SAFETY: the types are the ones httpfilt.h declares.
        let (get_version, proc_, terminate) = unsafe {
            (
                entry::<GetFilterVersionFn>(&library, path, "GetFilterVersion")?,
                entry::<HttpFilterProcFn>(&library, path, "HttpFilterProc")?,
                entry::<TerminateFilterFn>(&library, path, "TerminateFilter").ok(),
            )
        };
        let mut version = HttpFilterVersion {
            dw_server_filter_version: filt::HTTP_FILTER_REVISION,
            dw_filter_version: 0,
            lpsz_filter_desc: [0; filt::SF_MAX_FILTER_DESC_LEN],
            dw_flags: 0,
        };
        // SAFETY: `version` is the structure the module expects, writable.
        if unsafe { get_version(&mut version) } == FALSE {
            return Err(LoadError::Refused {
                path: path.to_path_buf(),
            });
        }
        if version.dw_flags & filt::notify::READ_RAW_DATA != 0 && !raw_data {
            return Err(LoadError::RawData {
                path: path.to_path_buf(),
            });
        }
        let mut flags = version.dw_flags;
        // Neither port named: both, as IIS reads it.
        if flags & (filt::notify::SECURE_PORT | filt::notify::NONSECURE_PORT) == 0 {
            flags |= filt::notify::SECURE_PORT | filt::notify::NONSECURE_PORT;
        }
        Ok(Filter {
            path: path.to_path_buf(),
            description: array_text(&version.lpsz_filter_desc),
            flags,
            proc_,
            terminate,
            library: Some(library),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// What GetFilterVersion asked for (NotifyFlags / FilterFlags).
    pub fn flags(&self) -> Dword {
        self.flags
    }

    /// 3 for SF_NOTIFY_ORDER_HIGH, 2 for MEDIUM, 1 for LOW (the default).
    pub fn priority(&self) -> u8 {
        if self.flags & filt::notify::ORDER_HIGH != 0 {
            3
        } else if self.flags & filt::notify::ORDER_MEDIUM != 0 {
            2
        } else {
            1
        }
    }

    /// Whether the filter wants this notification on this kind of port.
    pub fn wants(&self, bit: Dword, secure: bool) -> bool {
        let port = if secure {
            filt::notify::SECURE_PORT
        } else {
            filt::notify::NONSECURE_PORT
        };
        self.flags & bit != 0 && self.flags & port != 0
    }

    /// Calls HttpFilterProc for one notification; its SF_STATUS_* answer.
    #[allow(unsafe_code)]
    pub fn notify(
        &self,
        conn: &mut dyn FilterConnection,
        state: &mut FilterState,
        secure: bool,
        notification: Notification<'_>,
    ) -> Dword {
        let bit = notification.bit();
        let session = FilterSession {
            conn: Mutex::new(conn),
        };
        let mut pfc = HttpFilterContext {
            cb_size: std::mem::size_of::<HttpFilterContext>() as Dword,
            revision: filt::HTTP_FILTER_REVISION,
            server_context: &session as *const FilterSession as *mut c_void,
            ul_reserved: 0,
            f_is_secure_port: Bool::from(secure),
            p_filter_context: state.context as *mut c_void,
            get_server_variable: Some(get_server_variable),
            add_response_headers: Some(add_response_headers),
            write_client: Some(write_client),
            alloc_mem: Some(alloc_mem),
            server_support_function: Some(server_support_function),
        };
        let headers = filt::HttpFilterPreprocHeaders {
            get_header: Some(get_header),
            set_header: Some(set_header),
            add_header: Some(add_header),
            http_status: 0,
            dw_reserved: 0,
        };
        // SAFETY (every arm): the structures live on this frame for the
        // call; strings handed to the module are NUL-terminated copies.
        let status = match notification {
            Notification::PreprocHeaders => {
                let mut h = headers;
                unsafe {
                    (self.proc_)(
                        &mut pfc,
                        bit,
                        (&mut h as *mut filt::HttpFilterPreprocHeaders).cast(),
                    )
                }
            }
            Notification::SendResponse { status } => {
                let mut h = headers;
                h.http_status = Dword::from(*status);
                let r = unsafe {
                    (self.proc_)(
                        &mut pfc,
                        bit,
                        (&mut h as *mut filt::HttpFilterPreprocHeaders).cast(),
                    )
                };
                if let Ok(s) = u16::try_from(h.http_status) {
                    if (100..600).contains(&s) {
                        *status = s;
                    }
                }
                r
            }
            Notification::AuthComplete => {
                let mut info = filt::HttpFilterAuthCompleteInfo {
                    get_header: Some(get_header),
                    set_header: Some(set_header),
                    add_header: Some(add_header),
                    get_user_token: Some(get_user_token),
                    http_status: 0,
                    f_reset_auth: FALSE,
                    dw_reserved: 0,
                };
                unsafe {
                    (self.proc_)(
                        &mut pfc,
                        bit,
                        (&mut info as *mut filt::HttpFilterAuthCompleteInfo).cast(),
                    )
                }
            }
            Notification::Authentication { user, password } => {
                let mut user_buf = buffer(user, filt::SF_MAX_USERNAME);
                let mut password_buf = buffer(password, filt::SF_MAX_PASSWORD);
                let mut info = filt::HttpFilterAuthent {
                    psz_user: user_buf.as_mut_ptr().cast(),
                    cb_user_buff: user_buf.len() as Dword,
                    psz_password: password_buf.as_mut_ptr().cast(),
                    cb_password_buff: password_buf.len() as Dword,
                };
                let r = unsafe {
                    (self.proc_)(
                        &mut pfc,
                        bit,
                        (&mut info as *mut filt::HttpFilterAuthent).cast(),
                    )
                };
                *user = from_buffer(&user_buf);
                *password = from_buffer(&password_buf);
                r
            }
            Notification::UrlMap { url, physical } => {
                let url_c = c_string(url);
                let mut path_buf = buffer(physical, crate::types::MAX_PATH);
                let mut info = filt::HttpFilterUrlMap {
                    psz_url: url_c.as_ptr(),
                    psz_physical_path: path_buf.as_mut_ptr().cast(),
                    cb_path_buff: path_buf.len() as Dword,
                };
                let r = unsafe {
                    (self.proc_)(
                        &mut pfc,
                        bit,
                        (&mut info as *mut filt::HttpFilterUrlMap).cast(),
                    )
                };
                *physical = from_buffer(&path_buf);
                r
            }
            Notification::AccessDenied {
                url,
                physical,
                reason,
            } => {
                let url_c = c_string(url);
                let path_c = c_string(physical);
                let mut info = filt::HttpFilterAccessDenied {
                    psz_url: url_c.as_ptr(),
                    psz_physical_path: path_c.as_ptr(),
                    dw_reason: reason,
                };
                unsafe {
                    (self.proc_)(
                        &mut pfc,
                        bit,
                        (&mut info as *mut filt::HttpFilterAccessDenied).cast(),
                    )
                }
            }
            Notification::Log(fields) => {
                let texts = [
                    c_string(&fields.client_host),
                    c_string(&fields.user),
                    c_string(&fields.server),
                    c_string(&fields.operation),
                    c_string(&fields.target),
                    c_string(&fields.parameters),
                ];
                let mut log = filt::HttpFilterLog {
                    psz_client_host_name: texts[0].as_ptr(),
                    psz_client_user_name: texts[1].as_ptr(),
                    psz_server_name: texts[2].as_ptr(),
                    psz_operation: texts[3].as_ptr(),
                    psz_target: texts[4].as_ptr(),
                    psz_parameters: texts[5].as_ptr(),
                    dw_http_status: fields.status,
                    dw_win32_status: fields.win32_status,
                    dw_bytes_sent: fields.bytes_sent,
                    dw_bytes_recvd: fields.bytes_received,
                    ms_time_for_processing: fields.time_taken_ms,
                };
                let r = unsafe {
                    (self.proc_)(&mut pfc, bit, (&mut log as *mut filt::HttpFilterLog).cast())
                };
                // The module may point the strings elsewhere (memory it
                // keeps until the next notification).
                let read = |p: *const c_char| {
                    if p.is_null() {
                        String::new()
                    } else {
                        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                    }
                };
                fields.client_host = read(log.psz_client_host_name);
                fields.user = read(log.psz_client_user_name);
                fields.server = read(log.psz_server_name);
                fields.operation = read(log.psz_operation);
                fields.target = read(log.psz_target);
                fields.parameters = read(log.psz_parameters);
                fields.status = log.dw_http_status;
                fields.win32_status = log.dw_win32_status;
                r
            }
            Notification::RawData { data, .. } => {
                // Room to grow in place (cbInBuffer); a filter wanting
                // more points pvInData at memory of its own (AllocMem).
                let len = data.len();
                let mut buffer = std::mem::take(data);
                buffer.resize(len + RAW_HEADROOM, 0);
                let mut raw = filt::HttpFilterRawData {
                    pv_in_data: buffer.as_mut_ptr().cast(),
                    cb_in_data: len as Dword,
                    cb_in_buffer: buffer.len() as Dword,
                    dw_reserved: 0,
                };
                let r = unsafe {
                    (self.proc_)(
                        &mut pfc,
                        bit,
                        (&mut raw as *mut filt::HttpFilterRawData).cast(),
                    )
                };
                *data = if raw.pv_in_data.is_null() || raw.cb_in_data == 0 {
                    Vec::new()
                } else if raw.pv_in_data == buffer.as_mut_ptr().cast() {
                    buffer.truncate((raw.cb_in_data as usize).min(buffer.len()));
                    buffer
                } else {
                    unsafe {
                        std::slice::from_raw_parts(
                            raw.pv_in_data as *const u8,
                            raw.cb_in_data as usize,
                        )
                    }
                    .to_vec()
                };
                r
            }
            Notification::EndOfRequest | Notification::EndOfNetSession => unsafe {
                (self.proc_)(&mut pfc, bit, std::ptr::null_mut())
            },
        };
        state.context = pfc.p_filter_context as usize;
        status
    }
}

impl Drop for Filter {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(terminate) = self.terminate {
            // SAFETY: the module is still loaded.
            unsafe { terminate(crate::ext::HSE_TERM_MUST_UNLOAD) };
        }
        drop(self.library.take());
    }
}

/// A writable buffer of at least `size` bytes holding `text`.
fn buffer(text: &str, size: usize) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    b.truncate(size.max(text.len() + 1) - 1);
    b.resize(size.max(text.len() + 1), 0);
    b
}

fn from_buffer(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The server's side of one notification, behind ServerContext.
struct FilterSession<'a> {
    conn: Mutex<&'a mut dyn FilterConnection>,
}

impl<'a> FilterSession<'a> {
    fn conn(&self) -> std::sync::MutexGuard<'_, &'a mut dyn FilterConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The notification in progress a filter context belongs to. Filters are
/// called on the thread that answers the request, and a context is only
/// valid during its notification.
#[allow(unsafe_code)]
fn session<'a>(pfc: *mut HttpFilterContext) -> Option<&'a FilterSession<'a>> {
    if pfc.is_null() {
        return None;
    }
    // SAFETY: the module passes back the context it was given.
    let context = unsafe { (*pfc).server_context };
    if context.is_null() {
        return None;
    }
    // SAFETY: ServerContext points at the live session of this call.
    Some(unsafe { &*(context as *const FilterSession) })
}

#[allow(unsafe_code)]
unsafe extern "C" fn get_server_variable(
    pfc: *mut HttpFilterContext,
    name: LpStr,
    buffer: LpVoid,
    size: *mut Dword,
) -> Bool {
    guarded(|| {
        let session = session(pfc).ok_or(error::INVALID_PARAMETER)?;
        let name = text(name)?;
        let value = session
            .conn()
            .server_variable(name)
            .ok_or(error::INVALID_INDEX)?;
        answer(&value, buffer, size)
    })
}

#[allow(unsafe_code)]
unsafe extern "C" fn get_header(
    pfc: *mut HttpFilterContext,
    name: LpStr,
    buffer: LpVoid,
    size: *mut Dword,
) -> Bool {
    guarded(|| {
        let session = session(pfc).ok_or(error::INVALID_PARAMETER)?;
        let name = text(name)?;
        let name = name.strip_suffix(':').unwrap_or(name);
        let value = session.conn().header(name).ok_or(error::INVALID_INDEX)?;
        answer(&value, buffer, size)
    })
}

/// SetHeader (`add` false) and AddHeader (`add` true).
fn change_header(pfc: *mut HttpFilterContext, name: LpStr, value: LpStr, add: bool) -> Bool {
    guarded(|| {
        let session = session(pfc).ok_or(error::INVALID_PARAMETER)?;
        let name = text(name)?;
        let value = if value.is_null() { "" } else { text(value)? };
        let name = name.strip_suffix(':').unwrap_or(name);
        let mut conn = session.conn();
        let done = if add {
            conn.add_header(name, value)
        } else {
            conn.set_header(name, value)
        };
        done.then_some(()).ok_or(error::INVALID_PARAMETER)
    })
}

#[allow(unsafe_code)]
unsafe extern "C" fn set_header(pfc: *mut HttpFilterContext, name: LpStr, value: LpStr) -> Bool {
    change_header(pfc, name, value, false)
}

#[allow(unsafe_code)]
unsafe extern "C" fn add_header(pfc: *mut HttpFilterContext, name: LpStr, value: LpStr) -> Bool {
    change_header(pfc, name, value, true)
}

#[allow(unsafe_code)]
unsafe extern "C" fn get_user_token(
    _pfc: *mut HttpFilterContext,
    _token: *mut crate::types::Handle,
) -> Bool {
    // Workers run as the pool's identity: there is no token to give.
    crate::ffi::set_last_error(error::NOT_SUPPORTED);
    FALSE
}

#[allow(unsafe_code)]
unsafe extern "C" fn add_response_headers(
    pfc: *mut HttpFilterContext,
    lines: LpStr,
    _reserved: Dword,
) -> Bool {
    guarded(|| {
        let session = session(pfc).ok_or(error::INVALID_PARAMETER)?;
        let lines = text(lines)?;
        session.conn().add_response_headers(lines);
        Ok(())
    })
}

#[allow(unsafe_code)]
unsafe extern "C" fn write_client(
    pfc: *mut HttpFilterContext,
    buffer: LpVoid,
    bytes: *mut Dword,
    _reserved: Dword,
) -> Bool {
    guarded(|| {
        let session = session(pfc).ok_or(error::INVALID_PARAMETER)?;
        if bytes.is_null() || buffer.is_null() {
            return Err(error::INVALID_PARAMETER);
        }
        // SAFETY: the module's buffer holds `*bytes` bytes.
        let data = unsafe { std::slice::from_raw_parts(buffer as *const u8, *bytes as usize) };
        session.conn().write(data);
        Ok(())
    })
}

#[allow(unsafe_code)]
unsafe extern "C" fn alloc_mem(
    pfc: *mut HttpFilterContext,
    size: Dword,
    _reserved: Dword,
) -> *mut c_void {
    let Some(session) = session(pfc) else {
        return std::ptr::null_mut();
    };
    session
        .conn
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .alloc(size as usize)
}

#[allow(unsafe_code)]
unsafe extern "C" fn server_support_function(
    pfc: *mut HttpFilterContext,
    request: Dword,
    data: *mut c_void,
    ul1: usize,
    _ul2: usize,
) -> Bool {
    guarded(|| {
        let session = session(pfc).ok_or(error::INVALID_PARAMETER)?;
        let mut conn = session.conn();
        match request {
            filt::req::SEND_RESPONSE_HEADER => {
                let status = if data.is_null() {
                    "200 OK"
                } else {
                    text(data as *const c_char)?
                };
                let headers = if ul1 == 0 {
                    ""
                } else {
                    text(ul1 as *const c_char)?
                };
                conn.send_response_header(status, headers);
                Ok(())
            }
            filt::req::ADD_HEADERS_ON_DENIAL => {
                conn.add_headers_on_denial(text(data as *const c_char)?);
                Ok(())
            }
            filt::req::DISABLE_NOTIFICATIONS => {
                conn.disable_notifications(ul1 as Dword);
                Ok(())
            }
            filt::req::GET_CONNID => {
                if data.is_null() {
                    return Err(error::INVALID_PARAMETER);
                }
                // SAFETY: the answer is a DWORD the module provides.
                unsafe { *(data as *mut Dword) = conn.conn_id() };
                Ok(())
            }
            // Only where the host reads the raw stream (IIS 5 isolation
            // mode): the size of the next read from the client.
            filt::req::SET_NEXT_READ_SIZE => match conn.set_next_read_size(ul1 as Dword) {
                true => Ok(()),
                false => Err(error::NOT_SUPPORTED),
            },
            _ => Err(error::INVALID_PARAMETER),
        }
    })
}
