//! Filters (`include/httpfilt.h`): the filter context every notification
//! gets, each notification's structure, and the constants.

use std::ffi::{c_char, c_void};

use crate::types::{Bool, Dword, Handle, LpStr, LpVoid};

pub const HTTP_FILTER_REVISION: Dword = crate::types::make_long(0, 10);
pub const SF_MAX_USERNAME: usize = 256 + 1;
pub const SF_MAX_PASSWORD: usize = 256 + 1;
pub const SF_MAX_AUTH_TYPE: usize = 32 + 1;
pub const SF_MAX_FILTER_DESC_LEN: usize = 256 + 1;

/// `enum SF_REQ_TYPE`.
pub mod req {
    use crate::types::Dword;
    pub const SEND_RESPONSE_HEADER: Dword = 0;
    pub const ADD_HEADERS_ON_DENIAL: Dword = 1;
    pub const SET_NEXT_READ_SIZE: Dword = 2;
    pub const SET_PROXY_INFO: Dword = 3;
    pub const GET_CONNID: Dword = 4;
    pub const SET_CERTIFICATE_INFO: Dword = 5;
    pub const GET_PROPERTY: Dword = 6;
    pub const NORMALIZE_URL: Dword = 7;
    pub const DISABLE_NOTIFICATIONS: Dword = 8;
}

/// `enum SF_PROPERTY_IIS`.
pub const SF_PROPERTY_SSL_CTXT: Dword = 0;
pub const SF_PROPERTY_INSTANCE_NUM_ID: Dword = 1;

/// What HttpFilterProc returns (`enum SF_STATUS_TYPE`).
pub mod status {
    use crate::types::Dword;
    pub const REQ_FINISHED: Dword = 0x8000000;
    pub const REQ_FINISHED_KEEP_CONN: Dword = 0x8000001;
    pub const REQ_NEXT_NOTIFICATION: Dword = 0x8000002;
    pub const REQ_HANDLED_NOTIFICATION: Dword = 0x8000003;
    pub const REQ_ERROR: Dword = 0x8000004;
    pub const REQ_READ_NEXT: Dword = 0x8000005;
}

/// Notifications and port choices (`SF_NOTIFY_*`).
pub mod notify {
    use crate::types::Dword;
    pub const SECURE_PORT: Dword = 0x1;
    pub const NONSECURE_PORT: Dword = 0x2;
    pub const READ_RAW_DATA: Dword = 0x8000;
    pub const PREPROC_HEADERS: Dword = 0x4000;
    pub const AUTHENTICATION: Dword = 0x2000;
    pub const URL_MAP: Dword = 0x1000;
    pub const ACCESS_DENIED: Dword = 0x800;
    pub const SEND_RESPONSE: Dword = 0x40;
    pub const SEND_RAW_DATA: Dword = 0x400;
    pub const LOG: Dword = 0x200;
    pub const END_OF_REQUEST: Dword = 0x80;
    pub const END_OF_NET_SESSION: Dword = 0x100;
    pub const AUTH_COMPLETE: Dword = 0x0400_0000;
    pub const ORDER_HIGH: Dword = 0x80000;
    pub const ORDER_MEDIUM: Dword = 0x40000;
    pub const ORDER_LOW: Dword = 0x20000;
    pub const ORDER_DEFAULT: Dword = ORDER_LOW;
    pub const ORDER_MASK: Dword = ORDER_HIGH | ORDER_MEDIUM | ORDER_LOW;
}

/// SF_NOTIFY_ACCESS_DENIED's reasons (`SF_DENIED_*`).
pub mod denied {
    use crate::types::Dword;
    pub const LOGON: Dword = 0x1;
    pub const RESOURCE: Dword = 0x2;
    pub const FILTER: Dword = 0x4;
    pub const APPLICATION: Dword = 0x8;
    pub const BY_CONFIG: Dword = 0x10000;
}

pub type FilterGetServerVariableFn =
    unsafe extern "C" fn(*mut HttpFilterContext, LpStr, LpVoid, *mut Dword) -> Bool;
pub type AddResponseHeadersFn = unsafe extern "C" fn(*mut HttpFilterContext, LpStr, Dword) -> Bool;
pub type FilterWriteClientFn =
    unsafe extern "C" fn(*mut HttpFilterContext, LpVoid, *mut Dword, Dword) -> Bool;
pub type AllocMemFn = unsafe extern "C" fn(*mut HttpFilterContext, Dword, Dword) -> *mut c_void;
pub type FilterServerSupportFunctionFn =
    unsafe extern "C" fn(*mut HttpFilterContext, Dword, *mut c_void, usize, usize) -> Bool;
pub type GetHeaderFn =
    unsafe extern "C" fn(*mut HttpFilterContext, LpStr, LpVoid, *mut Dword) -> Bool;
pub type SetHeaderFn = unsafe extern "C" fn(*mut HttpFilterContext, LpStr, LpStr) -> Bool;
pub type GetUserTokenFn = unsafe extern "C" fn(*mut HttpFilterContext, *mut Handle) -> Bool;

#[repr(C)]
pub struct HttpFilterContext {
    pub cb_size: Dword,
    pub revision: Dword,
    pub server_context: *mut c_void,
    pub ul_reserved: Dword,
    pub f_is_secure_port: Bool,
    pub p_filter_context: *mut c_void,
    pub get_server_variable: Option<FilterGetServerVariableFn>,
    pub add_response_headers: Option<AddResponseHeadersFn>,
    pub write_client: Option<FilterWriteClientFn>,
    pub alloc_mem: Option<AllocMemFn>,
    pub server_support_function: Option<FilterServerSupportFunctionFn>,
}

#[repr(C)]
pub struct HttpFilterRawData {
    pub pv_in_data: *mut c_void,
    pub cb_in_data: Dword,
    pub cb_in_buffer: Dword,
    pub dw_reserved: Dword,
}

/// SF_NOTIFY_PREPROC_HEADERS and SF_NOTIFY_SEND_RESPONSE.
#[repr(C)]
pub struct HttpFilterPreprocHeaders {
    pub get_header: Option<GetHeaderFn>,
    pub set_header: Option<SetHeaderFn>,
    pub add_header: Option<SetHeaderFn>,
    pub http_status: Dword,
    pub dw_reserved: Dword,
}

#[repr(C)]
pub struct HttpFilterAuthent {
    pub psz_user: *mut c_char,
    pub cb_user_buff: Dword,
    pub psz_password: *mut c_char,
    pub cb_password_buff: Dword,
}

#[repr(C)]
pub struct HttpFilterUrlMap {
    pub psz_url: *const c_char,
    pub psz_physical_path: *mut c_char,
    pub cb_path_buff: Dword,
}

#[repr(C)]
pub struct HttpFilterUrlMapEx {
    pub psz_url: *const c_char,
    pub psz_physical_path: *mut c_char,
    pub cb_path_buff: Dword,
    pub dw_flags: Dword,
    pub cch_matching_path: Dword,
    pub cch_matching_url: Dword,
    pub psz_script_map_entry: *const c_char,
}

#[repr(C)]
pub struct HttpFilterAccessDenied {
    pub psz_url: *const c_char,
    pub psz_physical_path: *const c_char,
    pub dw_reason: Dword,
}

#[repr(C)]
pub struct HttpFilterLog {
    pub psz_client_host_name: *const c_char,
    pub psz_client_user_name: *const c_char,
    pub psz_server_name: *const c_char,
    pub psz_operation: *const c_char,
    pub psz_target: *const c_char,
    pub psz_parameters: *const c_char,
    pub dw_http_status: Dword,
    pub dw_win32_status: Dword,
    pub dw_bytes_sent: Dword,
    pub dw_bytes_recvd: Dword,
    pub ms_time_for_processing: Dword,
}

#[repr(C)]
pub struct HttpFilterAuthCompleteInfo {
    pub get_header: Option<GetHeaderFn>,
    pub set_header: Option<SetHeaderFn>,
    pub add_header: Option<SetHeaderFn>,
    pub get_user_token: Option<GetUserTokenFn>,
    pub http_status: Dword,
    pub f_reset_auth: Bool,
    pub dw_reserved: Dword,
}

#[repr(C)]
pub struct HttpFilterVersion {
    pub dw_server_filter_version: Dword,
    pub dw_filter_version: Dword,
    pub lpsz_filter_desc: [c_char; SF_MAX_FILTER_DESC_LEN],
    pub dw_flags: Dword,
}

pub type GetFilterVersionFn = unsafe extern "C" fn(*mut HttpFilterVersion) -> Bool;
pub type HttpFilterProcFn =
    unsafe extern "C" fn(*mut HttpFilterContext, Dword, *mut c_void) -> Dword;
pub type TerminateFilterFn = unsafe extern "C" fn(Dword) -> Bool;
