//! Writing an ISAPI filter in Rust: implement [`HttpFilter`] (each
//! notification a method with a default that lets the request go on) and
//! export it with [`export_filter!`] from a `cdylib` crate. A panic in a
//! method fails the request (SF_STATUS_REQ_ERROR) instead of unwinding
//! into the server.

use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;

use crate::filt::{self, HttpFilterContext, HttpFilterPreprocHeaders, HttpFilterVersion};
use crate::types::{error, Bool, Dword, FALSE, TRUE};

/// What a notification says (SF_STATUS_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterStatus {
    /// The next filter is notified.
    Next,
    /// No other filter is notified of this.
    Handled,
    /// The filter answered the request.
    Finished,
    /// The request fails.
    Error,
}

impl FilterStatus {
    fn code(self) -> Dword {
        match self {
            FilterStatus::Next => filt::status::REQ_NEXT_NOTIFICATION,
            FilterStatus::Handled => filt::status::REQ_HANDLED_NOTIFICATION,
            FilterStatus::Finished => filt::status::REQ_FINISHED,
            FilterStatus::Error => filt::status::REQ_ERROR,
        }
    }
}

/// A filter. One value serves every request, on many threads at once.
pub trait HttpFilter: Send + Sync + 'static {
    /// What GetFilterVersion reports.
    fn description(&self) -> &str {
        "an ISAPI filter written in Rust"
    }

    /// The SF_NOTIFY_* notifications, ports and priority it wants.
    fn flags(&self) -> Dword;

    /// SF_NOTIFY_PREPROC_HEADERS: the request's headers (and `method`,
    /// `url`, `version`).
    fn preproc_headers(
        &self,
        _ctx: &mut FilterContext<'_>,
        _headers: &mut Headers<'_>,
    ) -> FilterStatus {
        FilterStatus::Next
    }

    /// SF_NOTIFY_SEND_RESPONSE: the response's headers and status.
    fn send_response(
        &self,
        _ctx: &mut FilterContext<'_>,
        _headers: &mut Headers<'_>,
    ) -> FilterStatus {
        FilterStatus::Next
    }

    /// SF_NOTIFY_URL_MAP: the URL and the physical path it maps to,
    /// which the filter may change.
    fn url_map(&self, _ctx: &mut FilterContext<'_>, _map: &mut UrlMap<'_>) -> FilterStatus {
        FilterStatus::Next
    }

    /// SF_NOTIFY_ACCESS_DENIED: a 401 or 403 is about to be sent for
    /// `url` (`reason`: SF_DENIED_*); the filter may answer instead.
    fn access_denied(
        &self,
        _ctx: &mut FilterContext<'_>,
        _url: &str,
        _reason: Dword,
    ) -> FilterStatus {
        FilterStatus::Next
    }

    /// SF_NOTIFY_LOG: the request's log line, once the response has gone.
    fn log(&self, _ctx: &mut FilterContext<'_>, _log: &mut LogRecord<'_>) -> FilterStatus {
        FilterStatus::Next
    }

    /// SF_NOTIFY_END_OF_REQUEST.
    fn end_of_request(&self, _ctx: &mut FilterContext<'_>) -> FilterStatus {
        FilterStatus::Next
    }

    /// SF_NOTIFY_READ_RAW_DATA (`outbound` false; IIS 5 isolation mode
    /// only) or SF_NOTIFY_SEND_RAW_DATA: bytes on their way in or out,
    /// which the filter may change.
    fn raw_data(
        &self,
        _ctx: &mut FilterContext<'_>,
        _outbound: bool,
        _data: &mut RawData<'_>,
    ) -> FilterStatus {
        FilterStatus::Next
    }

    /// SF_NOTIFY_END_OF_NET_SESSION: the client's connection closed.
    fn end_of_net_session(&self, _ctx: &mut FilterContext<'_>) -> FilterStatus {
        FilterStatus::Next
    }
}

#[allow(unsafe_code)]
fn c_text<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        return "";
    }
    // SAFETY: the server's strings live for the notification.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .unwrap_or("")
}

/// SF_NOTIFY_URL_MAP's data.
pub struct UrlMap<'a> {
    map: &'a mut filt::HttpFilterUrlMap,
}

impl UrlMap<'_> {
    pub fn url(&self) -> &str {
        c_text(self.map.psz_url)
    }

    pub fn physical_path(&self) -> &str {
        c_text(self.map.psz_physical_path)
    }

    /// Maps the URL to `path` instead; false if it does not fit
    /// (MAX_PATH).
    #[allow(unsafe_code)]
    pub fn set_physical_path(&mut self, path: &str) -> bool {
        let bytes = path.as_bytes();
        if bytes.len() >= self.map.cb_path_buff as usize || bytes.contains(&0) {
            return false;
        }
        // SAFETY: the buffer holds cbPathBuff bytes; the path and its NUL
        // fit.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.psz_physical_path.cast(),
                bytes.len(),
            );
            *self.map.psz_physical_path.add(bytes.len()) = 0;
        }
        true
    }
}

/// Raw bytes of a connection (HTTP_FILTER_RAW_DATA).
pub struct RawData<'a> {
    pfc: *mut HttpFilterContext,
    raw: &'a mut filt::HttpFilterRawData,
}

impl RawData<'_> {
    /// The bytes, to read or to change in place.
    #[allow(unsafe_code)]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        if self.raw.pv_in_data.is_null() {
            return &mut [];
        }
        // SAFETY: pvInData holds cbInData bytes for the notification.
        unsafe {
            std::slice::from_raw_parts_mut(self.raw.pv_in_data.cast(), self.raw.cb_in_data as usize)
        }
    }

    /// Puts `data` in the bytes' place: in the buffer when it fits
    /// (cbInBuffer), else in the connection's memory (AllocMem).
    #[allow(unsafe_code)]
    pub fn replace(&mut self, data: &[u8]) -> bool {
        let target =
            if data.len() <= self.raw.cb_in_buffer as usize && !self.raw.pv_in_data.is_null() {
                self.raw.pv_in_data as *mut u8
            } else {
                // SAFETY: the server's context for this notification.
                let Some(alloc) = (unsafe { (*self.pfc).alloc_mem }) else {
                    return false;
                };
                // SAFETY: AllocMem returns `len` writable bytes, or NULL.
                let at = unsafe { alloc(self.pfc, data.len().max(1) as Dword, 0) } as *mut u8;
                if at.is_null() {
                    return false;
                }
                self.raw.pv_in_data = at.cast();
                self.raw.cb_in_buffer = data.len() as Dword;
                at
            };
        // SAFETY: `target` holds at least `data.len()` bytes.
        unsafe { std::ptr::copy(data.as_ptr(), target, data.len()) };
        self.raw.cb_in_data = data.len() as Dword;
        true
    }
}

/// SF_NOTIFY_LOG's data: the log line's fields, and its sizes and time.
pub struct LogRecord<'a> {
    pfc: *mut HttpFilterContext,
    log: &'a mut filt::HttpFilterLog,
}

impl LogRecord<'_> {
    pub fn user(&self) -> &str {
        c_text(self.log.psz_client_user_name)
    }

    /// The logged URL path (cs-uri-stem).
    pub fn target(&self) -> &str {
        c_text(self.log.psz_target)
    }

    /// The logged query (cs-uri-query).
    pub fn parameters(&self) -> &str {
        c_text(self.log.psz_parameters)
    }

    pub fn status(&self) -> Dword {
        self.log.dw_http_status
    }

    pub fn bytes_sent(&self) -> Dword {
        self.log.dw_bytes_sent
    }

    pub fn bytes_received(&self) -> Dword {
        self.log.dw_bytes_recvd
    }

    pub fn time_taken_ms(&self) -> Dword {
        self.log.ms_time_for_processing
    }

    /// A copy of `text` in the connection's memory (AllocMem), which the
    /// log fields may point at after the notification.
    #[allow(unsafe_code)]
    fn keep(&mut self, text: &str) -> Option<*const c_char> {
        let text = CString::new(text).ok()?;
        let bytes = text.as_bytes_with_nul();
        // SAFETY: the server's context for this notification.
        let alloc = unsafe { (*self.pfc).alloc_mem }?;
        // SAFETY: AllocMem returns `len` writable bytes, or NULL.
        let at = unsafe { alloc(self.pfc, bytes.len() as Dword, 0) } as *mut u8;
        if at.is_null() {
            return None;
        }
        // SAFETY: `at` holds `bytes.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len()) };
        Some(at as *const c_char)
    }

    pub fn set_user(&mut self, user: &str) -> bool {
        self.keep(user)
            .map(|p| self.log.psz_client_user_name = p)
            .is_some()
    }

    pub fn set_target(&mut self, target: &str) -> bool {
        self.keep(target).map(|p| self.log.psz_target = p).is_some()
    }

    pub fn set_parameters(&mut self, parameters: &str) -> bool {
        self.keep(parameters)
            .map(|p| self.log.psz_parameters = p)
            .is_some()
    }
}

/// The filter context of one notification.
pub struct FilterContext<'a> {
    pfc: &'a mut HttpFilterContext,
}

fn last_error() -> Dword {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as Dword
}

/// Calls a server function that fills a buffer, growing it once when the
/// server says it is too small.
fn fetch(mut call: impl FnMut(*mut c_void, *mut Dword) -> Bool) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    for _ in 0..2 {
        let mut size = buf.len() as Dword;
        if call(buf.as_mut_ptr().cast(), &mut size) != FALSE {
            buf.truncate((size as usize).saturating_sub(1));
            return Some(buf);
        }
        if last_error() != error::INSUFFICIENT_BUFFER {
            return None;
        }
        buf.resize(size as usize, 0);
    }
    None
}

impl FilterContext<'_> {
    /// Whether the request came over TLS.
    pub fn is_secure(&self) -> bool {
        self.pfc.f_is_secure_port != FALSE
    }

    /// A server variable.
    #[allow(unsafe_code)]
    pub fn server_variable(&mut self, name: &str) -> Option<Vec<u8>> {
        let get = self.pfc.get_server_variable?;
        let name = CString::new(name).ok()?;
        let pfc: *mut HttpFilterContext = self.pfc;
        // SAFETY: the buffer holds `*size` bytes; the name is a C string.
        fetch(|buf, size| unsafe { get(pfc, name.as_ptr() as *mut c_char, buf, size) })
    }

    /// Lines added to the response (`Name: value\r\n…`).
    #[allow(unsafe_code)]
    pub fn add_response_headers(&mut self, lines: &str) -> bool {
        let (Some(add), Ok(lines)) = (self.pfc.add_response_headers, CString::new(lines)) else {
            return false;
        };
        // SAFETY: a C string the server copies.
        unsafe { add(self.pfc, lines.as_ptr() as *mut c_char, 0) != FALSE }
    }

    /// Answers the request: its status line and headers, then `body`.
    /// Return [`FilterStatus::Finished`] after it.
    #[allow(unsafe_code)]
    pub fn respond(&mut self, status: &str, headers: &str, body: &[u8]) -> bool {
        let (Some(ssf), Some(write)) = (self.pfc.server_support_function, self.pfc.write_client)
        else {
            return false;
        };
        let (Ok(status), Ok(headers)) = (CString::new(status), CString::new(headers)) else {
            return false;
        };
        let mut n = body.len() as Dword;
        // SAFETY: C strings and a buffer of `n` bytes the server copies.
        unsafe {
            ssf(
                self.pfc,
                filt::req::SEND_RESPONSE_HEADER,
                status.as_ptr() as *mut c_void,
                headers.as_ptr() as usize,
                0,
            ) != FALSE
                && write(self.pfc, body.as_ptr() as *mut c_void, &mut n, 0) != FALSE
        }
    }
}

/// The headers of a notification.
pub struct Headers<'a> {
    pfc: *mut HttpFilterContext,
    table: &'a mut HttpFilterPreprocHeaders,
}

impl Headers<'_> {
    /// A header by name (without the ':'); `method`, `url` and `version`
    /// name the request line's parts.
    #[allow(unsafe_code)]
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        let get = self.table.get_header?;
        let name = CString::new(format!("{name}:")).ok()?;
        let pfc = self.pfc;
        // SAFETY: the buffer holds `*size` bytes; the name is a C string.
        fetch(|buf, size| unsafe { get(pfc, name.as_ptr() as *mut c_char, buf, size) })
    }

    /// Replaces a header (an empty value deletes it).
    #[allow(unsafe_code)]
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        let (Some(set), Ok(name), Ok(value)) = (
            self.table.set_header,
            CString::new(format!("{name}:")),
            CString::new(value),
        ) else {
            return false;
        };
        // SAFETY: C strings the server copies.
        unsafe {
            set(
                self.pfc,
                name.as_ptr() as *mut c_char,
                value.as_ptr() as *mut c_char,
            ) != FALSE
        }
    }

    /// Adds a header.
    #[allow(unsafe_code)]
    pub fn add(&mut self, name: &str, value: &str) -> bool {
        let (Some(add), Ok(name), Ok(value)) = (
            self.table.add_header,
            CString::new(format!("{name}:")),
            CString::new(value),
        ) else {
            return false;
        };
        // SAFETY: C strings the server copies.
        unsafe {
            add(
                self.pfc,
                name.as_ptr() as *mut c_char,
                value.as_ptr() as *mut c_char,
            ) != FALSE
        }
    }

    /// The response status (SEND_RESPONSE only).
    pub fn status(&self) -> u32 {
        self.table.http_status
    }

    pub fn set_status(&mut self, status: u32) {
        self.table.http_status = status;
    }
}

/// The one filter of a module, made on its first use.
pub type Slot = OnceLock<Box<dyn HttpFilter>>;

/// GetFilterVersion's body, for [`export_filter!`].
///
/// # Safety
/// `version` is NULL or a writable HTTP_FILTER_VERSION.
#[allow(unsafe_code)]
pub unsafe fn get_filter_version(
    slot: &Slot,
    make: impl FnOnce() -> Box<dyn HttpFilter>,
    version: *mut HttpFilterVersion,
) -> Bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let filter = slot.get_or_init(make);
        if version.is_null() {
            return FALSE;
        }
        // SAFETY: the caller's promise.
        let version = unsafe { &mut *version };
        version.dw_filter_version = filt::HTTP_FILTER_REVISION;
        version.dw_flags = filter.flags();
        let description = filter.description().as_bytes();
        let n = description.len().min(filt::SF_MAX_FILTER_DESC_LEN - 1);
        for (to, from) in version.lpsz_filter_desc.iter_mut().zip(&description[..n]) {
            *to = *from as c_char;
        }
        version.lpsz_filter_desc[n] = 0;
        TRUE
    }))
    .unwrap_or(FALSE)
}

/// HttpFilterProc's body, for [`export_filter!`].
///
/// # Safety
/// `pfc` and `data` are what the server passes for `notification`.
#[allow(unsafe_code)]
pub unsafe fn http_filter_proc(
    slot: &Slot,
    pfc: *mut HttpFilterContext,
    notification: Dword,
    data: *mut c_void,
) -> Dword {
    let Some(filter) = slot.get() else {
        return filt::status::REQ_ERROR;
    };
    if pfc.is_null() {
        return filt::status::REQ_ERROR;
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the caller's promise.
        let mut ctx = FilterContext {
            pfc: unsafe { &mut *pfc },
        };
        let pfc_ptr: *mut HttpFilterContext = pfc;
        let headers = |data: *mut c_void| {
            // SAFETY: PREPROC_HEADERS and SEND_RESPONSE pass this table.
            (!data.is_null()).then(|| Headers {
                pfc: pfc_ptr,
                table: unsafe { &mut *(data as *mut HttpFilterPreprocHeaders) },
            })
        };
        let status = match notification {
            filt::notify::PREPROC_HEADERS => match headers(data) {
                Some(mut h) => filter.preproc_headers(&mut ctx, &mut h),
                None => FilterStatus::Error,
            },
            filt::notify::SEND_RESPONSE => match headers(data) {
                Some(mut h) => filter.send_response(&mut ctx, &mut h),
                None => FilterStatus::Error,
            },
            filt::notify::END_OF_REQUEST => filter.end_of_request(&mut ctx),
            filt::notify::END_OF_NET_SESSION => filter.end_of_net_session(&mut ctx),
            // SAFETY (the three below): the server passes the
            // notification's structure, valid for the call.
            filt::notify::URL_MAP if !data.is_null() => {
                let map = unsafe { &mut *(data as *mut filt::HttpFilterUrlMap) };
                filter.url_map(&mut ctx, &mut UrlMap { map })
            }
            filt::notify::ACCESS_DENIED if !data.is_null() => {
                let denied = unsafe { &*(data as *const filt::HttpFilterAccessDenied) };
                filter.access_denied(&mut ctx, c_text(denied.psz_url), denied.dw_reason)
            }
            filt::notify::READ_RAW_DATA | filt::notify::SEND_RAW_DATA if !data.is_null() => {
                let raw = unsafe { &mut *(data as *mut filt::HttpFilterRawData) };
                let outbound = notification == filt::notify::SEND_RAW_DATA;
                filter.raw_data(&mut ctx, outbound, &mut RawData { pfc: pfc_ptr, raw })
            }
            filt::notify::LOG if !data.is_null() => {
                let log = unsafe { &mut *(data as *mut filt::HttpFilterLog) };
                filter.log(&mut ctx, &mut LogRecord { pfc: pfc_ptr, log })
            }
            _ => FilterStatus::Next,
        };
        status.code()
    }))
    .unwrap_or(filt::status::REQ_ERROR)
}

/// TerminateFilter's body, for [`export_filter!`].
pub fn terminate_filter(_slot: &Slot) -> Bool {
    TRUE
}

/// Exports an [`HttpFilter`] as the module's ISAPI filter entry points:
/// `isapi::export_filter!(MyFilter);` in a `cdylib` crate.
#[macro_export]
macro_rules! export_filter {
    ($make:expr) => {
        static ISAPI_FILTER: $crate::filter::Slot = $crate::filter::Slot::new();

        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn GetFilterVersion(
            version: *mut $crate::filt::HttpFilterVersion,
        ) -> $crate::types::Bool {
            // SAFETY: the server calls with its HTTP_FILTER_VERSION.
            unsafe {
                $crate::filter::get_filter_version(&ISAPI_FILTER, || Box::new($make), version)
            }
        }

        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn HttpFilterProc(
            pfc: *mut $crate::filt::HttpFilterContext,
            notification: $crate::types::Dword,
            data: *mut ::std::ffi::c_void,
        ) -> $crate::types::Dword {
            // SAFETY: the server calls with the notification's structures.
            unsafe { $crate::filter::http_filter_proc(&ISAPI_FILTER, pfc, notification, data) }
        }

        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn TerminateFilter(_flags: $crate::types::Dword) -> $crate::types::Bool {
            $crate::filter::terminate_filter(&ISAPI_FILTER)
        }
    };
}
