//! Extensions (`include/httpext.h`): the control block a request is handed
//! in, the structures of ServerSupportFunction's requests, and their
//! constants.

use std::ffi::{c_char, c_void};

use crate::types::{Bool, Dword, Handle, LpCStr, LpStr, LpVoid, MAX_PATH};

pub const HSE_VERSION_MAJOR: u16 = 7;
pub const HSE_VERSION_MINOR: u16 = 0;
pub const HSE_LOG_BUFFER_LEN: usize = 80;
pub const HSE_MAX_EXT_DLL_NAME_LEN: usize = 256;
pub const HSE_VERSION: Dword = crate::types::make_long(HSE_VERSION_MINOR, HSE_VERSION_MAJOR);

/// What HttpExtensionProc returns.
pub mod status {
    use crate::types::Dword;
    pub const SUCCESS: Dword = 1;
    pub const SUCCESS_AND_KEEP_CONN: Dword = 2;
    pub const PENDING: Dword = 3;
    pub const ERROR: Dword = 4;
}

/// ServerSupportFunction's requests (`HSE_REQ_*`).
pub mod req {
    use crate::types::Dword;
    pub const SEND_URL_REDIRECT_RESP: Dword = 1;
    pub const SEND_URL: Dword = 2;
    pub const SEND_RESPONSE_HEADER: Dword = 3;
    pub const DONE_WITH_SESSION: Dword = 4;
    pub const END_RESERVED: Dword = 1000;
    pub const MAP_URL_TO_PATH: Dword = END_RESERVED + 1;
    pub const GET_SSPI_INFO: Dword = END_RESERVED + 2;
    pub const APPEND_LOG_PARAMETER: Dword = END_RESERVED + 3;
    pub const IO_COMPLETION: Dword = END_RESERVED + 5;
    pub const TRANSMIT_FILE: Dword = END_RESERVED + 6;
    pub const REFRESH_ISAPI_ACL: Dword = END_RESERVED + 7;
    pub const IS_KEEP_CONN: Dword = END_RESERVED + 8;
    pub const ASYNC_READ_CLIENT: Dword = END_RESERVED + 10;
    pub const GET_IMPERSONATION_TOKEN: Dword = END_RESERVED + 11;
    pub const MAP_URL_TO_PATH_EX: Dword = END_RESERVED + 12;
    pub const ABORTIVE_CLOSE: Dword = END_RESERVED + 14;
    pub const GET_CERT_INFO_EX: Dword = END_RESERVED + 15;
    pub const SEND_RESPONSE_HEADER_EX: Dword = END_RESERVED + 16;
    pub const CLOSE_CONNECTION: Dword = END_RESERVED + 17;
    pub const IS_CONNECTED: Dword = END_RESERVED + 18;
    pub const MAP_UNICODE_URL_TO_PATH: Dword = END_RESERVED + 23;
    pub const MAP_UNICODE_URL_TO_PATH_EX: Dword = END_RESERVED + 24;
    pub const EXEC_UNICODE_URL: Dword = END_RESERVED + 25;
    pub const EXEC_URL: Dword = END_RESERVED + 26;
    pub const GET_EXEC_URL_STATUS: Dword = END_RESERVED + 27;
    pub const SEND_CUSTOM_ERROR: Dword = END_RESERVED + 28;
    pub const IS_IN_PROCESS: Dword = END_RESERVED + 30;
    pub const REPORT_UNHEALTHY: Dword = END_RESERVED + 32;
    pub const NORMALIZE_URL: Dword = END_RESERVED + 33;
    pub const VECTOR_SEND: Dword = END_RESERVED + 37;
    pub const GET_ANONYMOUS_TOKEN: Dword = END_RESERVED + 38;
    pub const GET_CACHE_INVALIDATION_CALLBACK: Dword = END_RESERVED + 40;
    pub const GET_UNICODE_ANONYMOUS_TOKEN: Dword = END_RESERVED + 41;
    pub const GET_TRACE_INFO: Dword = END_RESERVED + 42;
    pub const SET_FLUSH_FLAG: Dword = END_RESERVED + 43;
    pub const GET_TRACE_INFO_EX: Dword = END_RESERVED + 44;
    pub const RAISE_TRACE_EVENT: Dword = END_RESERVED + 45;
    pub const GET_CONFIG_OBJECT: Dword = END_RESERVED + 46;
    pub const GET_WORKER_PROCESS_SETTINGS: Dword = END_RESERVED + 47;
    pub const GET_PROTOCOL_MANAGER_CUSTOM_INTERFACE_CALLBACK: Dword = END_RESERVED + 48;
    pub const CANCEL_IO: Dword = END_RESERVED + 49;
}

/// TerminateExtension's flags.
pub const HSE_TERM_ADVISORY_UNLOAD: Dword = 0x1;
pub const HSE_TERM_MUST_UNLOAD: Dword = 0x2;

/// I/O flags (`HSE_IO_*`).
pub mod io {
    use crate::types::Dword;
    pub const SYNC: Dword = 0x1;
    pub const ASYNC: Dword = 0x2;
    pub const DISCONNECT_AFTER_SEND: Dword = 0x4;
    pub const SEND_HEADERS: Dword = 0x8;
    pub const NODELAY: Dword = 0x1000;
    pub const FINAL_SEND: Dword = 0x10;
    pub const CACHE_RESPONSE: Dword = 0x20;
    pub const TRY_SKIP_CUSTOM_ERRORS: Dword = 0x40;
}

/// A virtual directory's flags (`HSE_URL_FLAGS_*`).
pub mod url_flags {
    use crate::types::Dword;
    pub const READ: Dword = 0x1;
    pub const WRITE: Dword = 0x2;
    pub const EXECUTE: Dword = 0x4;
    pub const SSL: Dword = 0x8;
    pub const DONT_CACHE: Dword = 0x10;
    pub const NEGO_CERT: Dword = 0x20;
    pub const REQUIRE_CERT: Dword = 0x40;
    pub const MAP_CERT: Dword = 0x80;
    pub const SSL128: Dword = 0x100;
    pub const SCRIPT: Dword = 0x200;
    pub const MASK: Dword = 0x3ff;
}

/// HSE_REQ_EXEC_URL's flags (`HSE_EXEC_URL_*`).
pub mod exec_url {
    use crate::types::Dword;
    pub const NO_HEADERS: Dword = 0x02;
    pub const IGNORE_CURRENT_INTERCEPTOR: Dword = 0x04;
    pub const IGNORE_VALIDATION_AND_RANGE: Dword = 0x10;
    pub const DISABLE_CUSTOM_ERROR: Dword = 0x20;
    pub const SSI_CMD: Dword = 0x40;
    pub const HTTP_CACHE_ELIGIBLE: Dword = 0x80;
}

pub const HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER: Dword = 0;
pub const HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE: Dword = 1;
pub const HSE_APP_FLAG_IN_PROCESS: Dword = 0;
pub const HSE_APP_FLAG_ISOLATED_OOP: Dword = 1;
pub const HSE_APP_FLAG_POOLED_OOP: Dword = 2;
pub const X509_ASN_ENCODING: Dword = 0x1;
pub const PKCS_7_ASN_ENCODING: Dword = 0x10000;

pub type HConn = *mut c_void;

#[repr(C)]
pub struct HseVersionInfo {
    pub dw_extension_version: Dword,
    pub lpsz_extension_desc: [c_char; HSE_MAX_EXT_DLL_NAME_LEN],
}

pub type GetServerVariableFn = unsafe extern "C" fn(HConn, LpStr, LpVoid, *mut Dword) -> Bool;
pub type WriteClientFn = unsafe extern "C" fn(HConn, LpVoid, *mut Dword, Dword) -> Bool;
pub type ReadClientFn = unsafe extern "C" fn(HConn, LpVoid, *mut Dword) -> Bool;
pub type ServerSupportFunctionFn =
    unsafe extern "C" fn(HConn, Dword, LpVoid, *mut Dword, *mut Dword) -> Bool;

/// One request (`EXTENSION_CONTROL_BLOCK`).
#[repr(C)]
pub struct ExtensionControlBlock {
    pub cb_size: Dword,
    pub dw_version: Dword,
    pub conn_id: HConn,
    pub dw_http_status_code: Dword,
    pub lpsz_log_data: [c_char; HSE_LOG_BUFFER_LEN],
    pub lpsz_method: LpStr,
    pub lpsz_query_string: LpStr,
    pub lpsz_path_info: LpStr,
    pub lpsz_path_translated: LpStr,
    pub cb_total_bytes: Dword,
    pub cb_available: Dword,
    pub lpb_data: *mut u8,
    pub lpsz_content_type: LpStr,
    pub get_server_variable: Option<GetServerVariableFn>,
    pub write_client: Option<WriteClientFn>,
    pub read_client: Option<ReadClientFn>,
    pub server_support_function: Option<ServerSupportFunctionFn>,
}

#[repr(C)]
pub struct HseUrlMapExInfo {
    pub lpsz_path: [c_char; MAX_PATH],
    pub dw_flags: Dword,
    pub cch_matching_path: Dword,
    pub cch_matching_url: Dword,
    pub dw_reserved1: Dword,
    pub dw_reserved2: Dword,
}

#[repr(C)]
pub struct HseUnicodeUrlMapExInfo {
    pub lpsz_path: [u16; MAX_PATH],
    pub dw_flags: Dword,
    pub cch_matching_path: Dword,
    pub cch_matching_url: Dword,
}

pub type IoCompletionFn = unsafe extern "C" fn(*mut ExtensionControlBlock, LpVoid, Dword, Dword);

#[repr(C)]
pub struct HseTfInfo {
    pub pfn_hse_io: Option<IoCompletionFn>,
    pub p_context: LpVoid,
    pub h_file: Handle,
    pub psz_status_code: LpCStr,
    pub bytes_to_write: Dword,
    pub offset: Dword,
    pub p_head: LpVoid,
    pub head_length: Dword,
    pub p_tail: LpVoid,
    pub tail_length: Dword,
    pub dw_flags: Dword,
}

#[repr(C)]
pub struct HseSendHeaderExInfo {
    pub psz_status: LpCStr,
    pub psz_header: LpCStr,
    pub cch_status: Dword,
    pub cch_header: Dword,
    pub f_keep_conn: Bool,
}

#[repr(C)]
pub struct HseExecUrlUserInfo {
    pub h_impersonation_token: Handle,
    pub psz_custom_user_name: LpStr,
    pub psz_custom_auth_type: LpStr,
}

#[repr(C)]
pub struct HseExecUrlEntityInfo {
    pub cb_available: Dword,
    pub lpb_data: LpVoid,
}

#[repr(C)]
pub struct HseExecUrlStatus {
    pub u_http_status_code: u16,
    pub u_http_sub_status: u16,
    pub dw_win32_error: Dword,
}

#[repr(C)]
pub struct HseExecUrlInfo {
    pub psz_url: LpStr,
    pub psz_method: LpStr,
    pub psz_child_headers: LpStr,
    pub p_user_info: *mut HseExecUrlUserInfo,
    pub p_entity: *mut HseExecUrlEntityInfo,
    pub dw_exec_url_flags: Dword,
}

#[repr(C)]
pub struct HseExecUnicodeUrlUserInfo {
    pub h_impersonation_token: Handle,
    pub psz_custom_user_name: *mut u16,
    pub psz_custom_auth_type: LpStr,
}

#[repr(C)]
pub struct HseExecUnicodeUrlInfo {
    pub psz_url: *mut u16,
    pub psz_method: LpStr,
    pub psz_child_headers: LpStr,
    pub p_user_info: *mut HseExecUnicodeUrlUserInfo,
    pub p_entity: *mut HseExecUrlEntityInfo,
    pub dw_exec_url_flags: Dword,
}

#[repr(C)]
pub struct HseCustomErrorInfo {
    pub psz_status: LpStr,
    pub u_http_sub_error: u16,
    pub f_async: Bool,
}

#[repr(C)]
pub struct HseVectorElement {
    pub element_type: Dword,
    pub pv_context: LpVoid,
    pub cb_offset: u64,
    pub cb_size: u64,
}

#[repr(C)]
pub struct HseResponseVector {
    pub dw_flags: Dword,
    pub psz_status: LpStr,
    pub psz_headers: LpStr,
    pub n_element_count: Dword,
    pub lp_element_array: *mut HseVectorElement,
}

#[repr(C)]
pub struct CertContext {
    pub dw_cert_encoding_type: Dword,
    pub pb_cert_encoded: *mut u8,
    pub cb_cert_encoded: Dword,
    pub p_cert_info: LpVoid,
    pub h_cert_store: Handle,
}

#[repr(C)]
pub struct CertContextEx {
    pub cert_context: CertContext,
    pub cb_allocated: Dword,
    pub dw_certificate_flags: Dword,
}

#[repr(C)]
pub struct HseTraceInfo {
    pub f_trace_request: Bool,
    pub trace_context_id: [u8; 16],
    pub dw_reserved1: Dword,
    pub dw_reserved2: Dword,
}

pub type GetExtensionVersionFn = unsafe extern "C" fn(*mut HseVersionInfo) -> Bool;
pub type HttpExtensionProcFn = unsafe extern "C" fn(*mut ExtensionControlBlock) -> Dword;
pub type TerminateExtensionFn = unsafe extern "C" fn(Dword) -> Bool;
