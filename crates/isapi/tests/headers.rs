//! The C headers in `include/` and this crate describe one ABI: a program
//! compiled with `cc` against the headers prints every structure's size,
//! every field's offset and every constant, and each must equal the Rust
//! side's.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use isapi::ext::{self, *};
use isapi::filt::{self, *};
use isapi::types::error;

/// `(C expression, Rust value)` pairs.
type Checks = Vec<(String, u64)>;

/// A structure's size and each named field's offset: `C_TYPE RustType {
/// cField => rust_field, ... }`.
macro_rules! layout {
    ($checks:ident, $c:literal $rust:ty { $($cf:literal => $rf:ident),* $(,)? }) => {
        $checks.push((format!("sizeof({})", $c), size_of::<$rust>() as u64));
        $( $checks.push((format!("offsetof({}, {})", $c, $cf), offset_of!($rust, $rf) as u64)); )*
    };
}

/// Constants: `C_NAME => rust_value`.
macro_rules! constants {
    ($checks:ident, $($c:literal => $rust:expr),* $(,)?) => {
        $( $checks.push(($c.to_string(), ($rust) as u64)); )*
    };
}

fn extension_checks(checks: &mut Checks) {
    layout!(checks, "HSE_VERSION_INFO" HseVersionInfo {
        "dwExtensionVersion" => dw_extension_version, "lpszExtensionDesc" => lpsz_extension_desc,
    });
    layout!(checks, "EXTENSION_CONTROL_BLOCK" ExtensionControlBlock {
        "cbSize" => cb_size, "dwVersion" => dw_version, "ConnID" => conn_id,
        "dwHttpStatusCode" => dw_http_status_code, "lpszLogData" => lpsz_log_data,
        "lpszMethod" => lpsz_method, "lpszQueryString" => lpsz_query_string,
        "lpszPathInfo" => lpsz_path_info, "lpszPathTranslated" => lpsz_path_translated,
        "cbTotalBytes" => cb_total_bytes, "cbAvailable" => cb_available, "lpbData" => lpb_data,
        "lpszContentType" => lpsz_content_type, "GetServerVariable" => get_server_variable,
        "WriteClient" => write_client, "ReadClient" => read_client,
        "ServerSupportFunction" => server_support_function,
    });
    layout!(checks, "HSE_URL_MAPEX_INFO" HseUrlMapExInfo {
        "lpszPath" => lpsz_path, "dwFlags" => dw_flags, "cchMatchingPath" => cch_matching_path,
        "cchMatchingURL" => cch_matching_url, "dwReserved1" => dw_reserved1,
        "dwReserved2" => dw_reserved2,
    });
    layout!(checks, "HSE_UNICODE_URL_MAPEX_INFO" HseUnicodeUrlMapExInfo {
        "lpszPath" => lpsz_path, "dwFlags" => dw_flags, "cchMatchingPath" => cch_matching_path,
        "cchMatchingURL" => cch_matching_url,
    });
    layout!(checks, "HSE_TF_INFO" HseTfInfo {
        "pfnHseIO" => pfn_hse_io, "pContext" => p_context, "hFile" => h_file,
        "pszStatusCode" => psz_status_code, "BytesToWrite" => bytes_to_write,
        "Offset" => offset, "pHead" => p_head, "HeadLength" => head_length,
        "pTail" => p_tail, "TailLength" => tail_length, "dwFlags" => dw_flags,
    });
    layout!(checks, "HSE_SEND_HEADER_EX_INFO" HseSendHeaderExInfo {
        "pszStatus" => psz_status, "pszHeader" => psz_header, "cchStatus" => cch_status,
        "cchHeader" => cch_header, "fKeepConn" => f_keep_conn,
    });
    layout!(checks, "HSE_EXEC_URL_USER_INFO" HseExecUrlUserInfo {
        "hImpersonationToken" => h_impersonation_token,
        "pszCustomUserName" => psz_custom_user_name, "pszCustomAuthType" => psz_custom_auth_type,
    });
    layout!(checks, "HSE_EXEC_URL_ENTITY_INFO" HseExecUrlEntityInfo {
        "cbAvailable" => cb_available, "lpbData" => lpb_data,
    });
    layout!(checks, "HSE_EXEC_URL_STATUS" HseExecUrlStatus {
        "uHttpStatusCode" => u_http_status_code, "uHttpSubStatus" => u_http_sub_status,
        "dwWin32Error" => dw_win32_error,
    });
    layout!(checks, "HSE_EXEC_URL_INFO" HseExecUrlInfo {
        "pszUrl" => psz_url, "pszMethod" => psz_method, "pszChildHeaders" => psz_child_headers,
        "pUserInfo" => p_user_info, "pEntity" => p_entity, "dwExecUrlFlags" => dw_exec_url_flags,
    });
    layout!(checks, "HSE_EXEC_UNICODE_URL_USER_INFO" HseExecUnicodeUrlUserInfo {
        "hImpersonationToken" => h_impersonation_token,
        "pszCustomUserName" => psz_custom_user_name, "pszCustomAuthType" => psz_custom_auth_type,
    });
    layout!(checks, "HSE_EXEC_UNICODE_URL_INFO" HseExecUnicodeUrlInfo {
        "pszUrl" => psz_url, "pszMethod" => psz_method, "pszChildHeaders" => psz_child_headers,
        "pUserInfo" => p_user_info, "pEntity" => p_entity, "dwExecUrlFlags" => dw_exec_url_flags,
    });
    layout!(checks, "HSE_CUSTOM_ERROR_INFO" HseCustomErrorInfo {
        "pszStatus" => psz_status, "uHttpSubError" => u_http_sub_error, "fAsync" => f_async,
    });
    layout!(checks, "HSE_VECTOR_ELEMENT" HseVectorElement {
        "ElementType" => element_type, "pvContext" => pv_context, "cbOffset" => cb_offset,
        "cbSize" => cb_size,
    });
    layout!(checks, "HSE_RESPONSE_VECTOR" HseResponseVector {
        "dwFlags" => dw_flags, "pszStatus" => psz_status, "pszHeaders" => psz_headers,
        "nElementCount" => n_element_count, "lpElementArray" => lp_element_array,
    });
    layout!(checks, "CERT_CONTEXT" CertContext {
        "dwCertEncodingType" => dw_cert_encoding_type, "pbCertEncoded" => pb_cert_encoded,
        "cbCertEncoded" => cb_cert_encoded, "pCertInfo" => p_cert_info,
        "hCertStore" => h_cert_store,
    });
    layout!(checks, "CERT_CONTEXT_EX" CertContextEx {
        "CertContext" => cert_context, "cbAllocated" => cb_allocated,
        "dwCertificateFlags" => dw_certificate_flags,
    });
    layout!(checks, "HSE_TRACE_INFO" HseTraceInfo {
        "fTraceRequest" => f_trace_request, "TraceContextId" => trace_context_id,
        "dwReserved1" => dw_reserved1, "dwReserved2" => dw_reserved2,
    });
    constants!(checks,
        "HSE_VERSION" => ext::HSE_VERSION,
        "HSE_LOG_BUFFER_LEN" => ext::HSE_LOG_BUFFER_LEN,
        "HSE_MAX_EXT_DLL_NAME_LEN" => ext::HSE_MAX_EXT_DLL_NAME_LEN,
        "HSE_STATUS_SUCCESS" => ext::status::SUCCESS,
        "HSE_STATUS_SUCCESS_AND_KEEP_CONN" => ext::status::SUCCESS_AND_KEEP_CONN,
        "HSE_STATUS_PENDING" => ext::status::PENDING,
        "HSE_STATUS_ERROR" => ext::status::ERROR,
        "HSE_REQ_SEND_URL_REDIRECT_RESP" => ext::req::SEND_URL_REDIRECT_RESP,
        "HSE_REQ_SEND_URL" => ext::req::SEND_URL,
        "HSE_REQ_SEND_RESPONSE_HEADER" => ext::req::SEND_RESPONSE_HEADER,
        "HSE_REQ_DONE_WITH_SESSION" => ext::req::DONE_WITH_SESSION,
        "HSE_REQ_MAP_URL_TO_PATH" => ext::req::MAP_URL_TO_PATH,
        "HSE_REQ_GET_SSPI_INFO" => ext::req::GET_SSPI_INFO,
        "HSE_APPEND_LOG_PARAMETER" => ext::req::APPEND_LOG_PARAMETER,
        "HSE_REQ_IO_COMPLETION" => ext::req::IO_COMPLETION,
        "HSE_REQ_TRANSMIT_FILE" => ext::req::TRANSMIT_FILE,
        "HSE_REQ_REFRESH_ISAPI_ACL" => ext::req::REFRESH_ISAPI_ACL,
        "HSE_REQ_IS_KEEP_CONN" => ext::req::IS_KEEP_CONN,
        "HSE_REQ_ASYNC_READ_CLIENT" => ext::req::ASYNC_READ_CLIENT,
        "HSE_REQ_GET_IMPERSONATION_TOKEN" => ext::req::GET_IMPERSONATION_TOKEN,
        "HSE_REQ_MAP_URL_TO_PATH_EX" => ext::req::MAP_URL_TO_PATH_EX,
        "HSE_REQ_ABORTIVE_CLOSE" => ext::req::ABORTIVE_CLOSE,
        "HSE_REQ_GET_CERT_INFO_EX" => ext::req::GET_CERT_INFO_EX,
        "HSE_REQ_SEND_RESPONSE_HEADER_EX" => ext::req::SEND_RESPONSE_HEADER_EX,
        "HSE_REQ_CLOSE_CONNECTION" => ext::req::CLOSE_CONNECTION,
        "HSE_REQ_IS_CONNECTED" => ext::req::IS_CONNECTED,
        "HSE_REQ_MAP_UNICODE_URL_TO_PATH" => ext::req::MAP_UNICODE_URL_TO_PATH,
        "HSE_REQ_MAP_UNICODE_URL_TO_PATH_EX" => ext::req::MAP_UNICODE_URL_TO_PATH_EX,
        "HSE_REQ_EXEC_UNICODE_URL" => ext::req::EXEC_UNICODE_URL,
        "HSE_REQ_EXEC_URL" => ext::req::EXEC_URL,
        "HSE_REQ_GET_EXEC_URL_STATUS" => ext::req::GET_EXEC_URL_STATUS,
        "HSE_REQ_SEND_CUSTOM_ERROR" => ext::req::SEND_CUSTOM_ERROR,
        "HSE_REQ_IS_IN_PROCESS" => ext::req::IS_IN_PROCESS,
        "HSE_REQ_REPORT_UNHEALTHY" => ext::req::REPORT_UNHEALTHY,
        "HSE_REQ_NORMALIZE_URL" => ext::req::NORMALIZE_URL,
        "HSE_REQ_VECTOR_SEND" => ext::req::VECTOR_SEND,
        "HSE_REQ_GET_ANONYMOUS_TOKEN" => ext::req::GET_ANONYMOUS_TOKEN,
        "HSE_REQ_GET_CACHE_INVALIDATION_CALLBACK" => ext::req::GET_CACHE_INVALIDATION_CALLBACK,
        "HSE_REQ_GET_UNICODE_ANONYMOUS_TOKEN" => ext::req::GET_UNICODE_ANONYMOUS_TOKEN,
        "HSE_REQ_GET_TRACE_INFO" => ext::req::GET_TRACE_INFO,
        "HSE_REQ_SET_FLUSH_FLAG" => ext::req::SET_FLUSH_FLAG,
        "HSE_REQ_GET_TRACE_INFO_EX" => ext::req::GET_TRACE_INFO_EX,
        "HSE_REQ_RAISE_TRACE_EVENT" => ext::req::RAISE_TRACE_EVENT,
        "HSE_REQ_GET_CONFIG_OBJECT" => ext::req::GET_CONFIG_OBJECT,
        "HSE_REQ_GET_WORKER_PROCESS_SETTINGS" => ext::req::GET_WORKER_PROCESS_SETTINGS,
        "HSE_REQ_GET_PROTOCOL_MANAGER_CUSTOM_INTERFACE_CALLBACK" =>
            ext::req::GET_PROTOCOL_MANAGER_CUSTOM_INTERFACE_CALLBACK,
        "HSE_REQ_CANCEL_IO" => ext::req::CANCEL_IO,
        "HSE_TERM_ADVISORY_UNLOAD" => ext::HSE_TERM_ADVISORY_UNLOAD,
        "HSE_TERM_MUST_UNLOAD" => ext::HSE_TERM_MUST_UNLOAD,
        "HSE_IO_SYNC" => ext::io::SYNC,
        "HSE_IO_ASYNC" => ext::io::ASYNC,
        "HSE_IO_DISCONNECT_AFTER_SEND" => ext::io::DISCONNECT_AFTER_SEND,
        "HSE_IO_SEND_HEADERS" => ext::io::SEND_HEADERS,
        "HSE_IO_NODELAY" => ext::io::NODELAY,
        "HSE_IO_FINAL_SEND" => ext::io::FINAL_SEND,
        "HSE_IO_CACHE_RESPONSE" => ext::io::CACHE_RESPONSE,
        "HSE_IO_TRY_SKIP_CUSTOM_ERRORS" => ext::io::TRY_SKIP_CUSTOM_ERRORS,
        "HSE_URL_FLAGS_READ" => ext::url_flags::READ,
        "HSE_URL_FLAGS_WRITE" => ext::url_flags::WRITE,
        "HSE_URL_FLAGS_EXECUTE" => ext::url_flags::EXECUTE,
        "HSE_URL_FLAGS_SSL" => ext::url_flags::SSL,
        "HSE_URL_FLAGS_DONT_CACHE" => ext::url_flags::DONT_CACHE,
        "HSE_URL_FLAGS_NEGO_CERT" => ext::url_flags::NEGO_CERT,
        "HSE_URL_FLAGS_REQUIRE_CERT" => ext::url_flags::REQUIRE_CERT,
        "HSE_URL_FLAGS_MAP_CERT" => ext::url_flags::MAP_CERT,
        "HSE_URL_FLAGS_SSL128" => ext::url_flags::SSL128,
        "HSE_URL_FLAGS_SCRIPT" => ext::url_flags::SCRIPT,
        "HSE_URL_FLAGS_MASK" => ext::url_flags::MASK,
        "HSE_EXEC_URL_NO_HEADERS" => ext::exec_url::NO_HEADERS,
        "HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR" => ext::exec_url::IGNORE_CURRENT_INTERCEPTOR,
        "HSE_EXEC_URL_IGNORE_VALIDATION_AND_RANGE" => ext::exec_url::IGNORE_VALIDATION_AND_RANGE,
        "HSE_EXEC_URL_DISABLE_CUSTOM_ERROR" => ext::exec_url::DISABLE_CUSTOM_ERROR,
        "HSE_EXEC_URL_SSI_CMD" => ext::exec_url::SSI_CMD,
        "HSE_EXEC_URL_HTTP_CACHE_ELIGIBLE" => ext::exec_url::HTTP_CACHE_ELIGIBLE,
        "HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER" => ext::HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER,
        "HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE" => ext::HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE,
        "HSE_APP_FLAG_IN_PROCESS" => ext::HSE_APP_FLAG_IN_PROCESS,
        "HSE_APP_FLAG_ISOLATED_OOP" => ext::HSE_APP_FLAG_ISOLATED_OOP,
        "HSE_APP_FLAG_POOLED_OOP" => ext::HSE_APP_FLAG_POOLED_OOP,
        "X509_ASN_ENCODING" => ext::X509_ASN_ENCODING,
        "PKCS_7_ASN_ENCODING" => ext::PKCS_7_ASN_ENCODING,
        "ERROR_SUCCESS" => error::SUCCESS,
        "ERROR_FILE_NOT_FOUND" => error::FILE_NOT_FOUND,
        "ERROR_ACCESS_DENIED" => error::ACCESS_DENIED,
        "ERROR_INVALID_HANDLE" => error::INVALID_HANDLE,
        "ERROR_NOT_ENOUGH_MEMORY" => error::NOT_ENOUGH_MEMORY,
        "ERROR_NOT_SUPPORTED" => error::NOT_SUPPORTED,
        "ERROR_INVALID_PARAMETER" => error::INVALID_PARAMETER,
        "ERROR_INSUFFICIENT_BUFFER" => error::INSUFFICIENT_BUFFER,
        "ERROR_NO_DATA" => error::NO_DATA,
        "ERROR_MORE_DATA" => error::MORE_DATA,
        "ERROR_INVALID_INDEX" => error::INVALID_INDEX,
    );
}

fn filter_checks(checks: &mut Checks) {
    layout!(checks, "HTTP_FILTER_CONTEXT" HttpFilterContext {
        "cbSize" => cb_size, "Revision" => revision, "ServerContext" => server_context,
        "ulReserved" => ul_reserved, "fIsSecurePort" => f_is_secure_port,
        "pFilterContext" => p_filter_context, "GetServerVariable" => get_server_variable,
        "AddResponseHeaders" => add_response_headers, "WriteClient" => write_client,
        "AllocMem" => alloc_mem, "ServerSupportFunction" => server_support_function,
    });
    layout!(checks, "HTTP_FILTER_RAW_DATA" HttpFilterRawData {
        "pvInData" => pv_in_data, "cbInData" => cb_in_data, "cbInBuffer" => cb_in_buffer,
        "dwReserved" => dw_reserved,
    });
    layout!(checks, "HTTP_FILTER_PREPROC_HEADERS" HttpFilterPreprocHeaders {
        "GetHeader" => get_header, "SetHeader" => set_header, "AddHeader" => add_header,
        "HttpStatus" => http_status, "dwReserved" => dw_reserved,
    });
    layout!(checks, "HTTP_FILTER_AUTHENT" HttpFilterAuthent {
        "pszUser" => psz_user, "cbUserBuff" => cb_user_buff, "pszPassword" => psz_password,
        "cbPasswordBuff" => cb_password_buff,
    });
    layout!(checks, "HTTP_FILTER_URL_MAP" HttpFilterUrlMap {
        "pszURL" => psz_url, "pszPhysicalPath" => psz_physical_path, "cbPathBuff" => cb_path_buff,
    });
    layout!(checks, "HTTP_FILTER_URL_MAP_EX" HttpFilterUrlMapEx {
        "pszURL" => psz_url, "pszPhysicalPath" => psz_physical_path, "cbPathBuff" => cb_path_buff,
        "dwFlags" => dw_flags, "cchMatchingPath" => cch_matching_path,
        "cchMatchingURL" => cch_matching_url, "pszScriptMapEntry" => psz_script_map_entry,
    });
    layout!(checks, "HTTP_FILTER_ACCESS_DENIED" HttpFilterAccessDenied {
        "pszURL" => psz_url, "pszPhysicalPath" => psz_physical_path, "dwReason" => dw_reason,
    });
    layout!(checks, "HTTP_FILTER_LOG" HttpFilterLog {
        "pszClientHostName" => psz_client_host_name, "pszClientUserName" => psz_client_user_name,
        "pszServerName" => psz_server_name, "pszOperation" => psz_operation,
        "pszTarget" => psz_target, "pszParameters" => psz_parameters,
        "dwHttpStatus" => dw_http_status, "dwWin32Status" => dw_win32_status,
        "dwBytesSent" => dw_bytes_sent, "dwBytesRecvd" => dw_bytes_recvd,
        "msTimeForProcessing" => ms_time_for_processing,
    });
    layout!(checks, "HTTP_FILTER_AUTH_COMPLETE_INFO" HttpFilterAuthCompleteInfo {
        "GetHeader" => get_header, "SetHeader" => set_header, "AddHeader" => add_header,
        "GetUserToken" => get_user_token, "HttpStatus" => http_status,
        "fResetAuth" => f_reset_auth, "dwReserved" => dw_reserved,
    });
    layout!(checks, "HTTP_FILTER_VERSION" HttpFilterVersion {
        "dwServerFilterVersion" => dw_server_filter_version,
        "dwFilterVersion" => dw_filter_version, "lpszFilterDesc" => lpsz_filter_desc,
        "dwFlags" => dw_flags,
    });
    constants!(checks,
        "HTTP_FILTER_REVISION" => filt::HTTP_FILTER_REVISION,
        "SF_MAX_USERNAME" => filt::SF_MAX_USERNAME,
        "SF_MAX_PASSWORD" => filt::SF_MAX_PASSWORD,
        "SF_MAX_AUTH_TYPE" => filt::SF_MAX_AUTH_TYPE,
        "SF_MAX_FILTER_DESC_LEN" => filt::SF_MAX_FILTER_DESC_LEN,
        "SF_REQ_SEND_RESPONSE_HEADER" => filt::req::SEND_RESPONSE_HEADER,
        "SF_REQ_ADD_HEADERS_ON_DENIAL" => filt::req::ADD_HEADERS_ON_DENIAL,
        "SF_REQ_SET_NEXT_READ_SIZE" => filt::req::SET_NEXT_READ_SIZE,
        "SF_REQ_SET_PROXY_INFO" => filt::req::SET_PROXY_INFO,
        "SF_REQ_GET_CONNID" => filt::req::GET_CONNID,
        "SF_REQ_SET_CERTIFICATE_INFO" => filt::req::SET_CERTIFICATE_INFO,
        "SF_REQ_GET_PROPERTY" => filt::req::GET_PROPERTY,
        "SF_REQ_NORMALIZE_URL" => filt::req::NORMALIZE_URL,
        "SF_REQ_DISABLE_NOTIFICATIONS" => filt::req::DISABLE_NOTIFICATIONS,
        "SF_PROPERTY_SSL_CTXT" => filt::SF_PROPERTY_SSL_CTXT,
        "SF_PROPERTY_INSTANCE_NUM_ID" => filt::SF_PROPERTY_INSTANCE_NUM_ID,
        "SF_STATUS_REQ_FINISHED" => filt::status::REQ_FINISHED,
        "SF_STATUS_REQ_FINISHED_KEEP_CONN" => filt::status::REQ_FINISHED_KEEP_CONN,
        "SF_STATUS_REQ_NEXT_NOTIFICATION" => filt::status::REQ_NEXT_NOTIFICATION,
        "SF_STATUS_REQ_HANDLED_NOTIFICATION" => filt::status::REQ_HANDLED_NOTIFICATION,
        "SF_STATUS_REQ_ERROR" => filt::status::REQ_ERROR,
        "SF_STATUS_REQ_READ_NEXT" => filt::status::REQ_READ_NEXT,
        "SF_NOTIFY_SECURE_PORT" => filt::notify::SECURE_PORT,
        "SF_NOTIFY_NONSECURE_PORT" => filt::notify::NONSECURE_PORT,
        "SF_NOTIFY_READ_RAW_DATA" => filt::notify::READ_RAW_DATA,
        "SF_NOTIFY_PREPROC_HEADERS" => filt::notify::PREPROC_HEADERS,
        "SF_NOTIFY_AUTHENTICATION" => filt::notify::AUTHENTICATION,
        "SF_NOTIFY_URL_MAP" => filt::notify::URL_MAP,
        "SF_NOTIFY_ACCESS_DENIED" => filt::notify::ACCESS_DENIED,
        "SF_NOTIFY_SEND_RESPONSE" => filt::notify::SEND_RESPONSE,
        "SF_NOTIFY_SEND_RAW_DATA" => filt::notify::SEND_RAW_DATA,
        "SF_NOTIFY_LOG" => filt::notify::LOG,
        "SF_NOTIFY_END_OF_REQUEST" => filt::notify::END_OF_REQUEST,
        "SF_NOTIFY_END_OF_NET_SESSION" => filt::notify::END_OF_NET_SESSION,
        "SF_NOTIFY_AUTH_COMPLETE" => filt::notify::AUTH_COMPLETE,
        "SF_NOTIFY_ORDER_HIGH" => filt::notify::ORDER_HIGH,
        "SF_NOTIFY_ORDER_MEDIUM" => filt::notify::ORDER_MEDIUM,
        "SF_NOTIFY_ORDER_LOW" => filt::notify::ORDER_LOW,
        "SF_NOTIFY_ORDER_DEFAULT" => filt::notify::ORDER_DEFAULT,
        "SF_NOTIFY_ORDER_MASK" => filt::notify::ORDER_MASK,
        "SF_DENIED_LOGON" => filt::denied::LOGON,
        "SF_DENIED_RESOURCE" => filt::denied::RESOURCE,
        "SF_DENIED_FILTER" => filt::denied::FILTER,
        "SF_DENIED_APPLICATION" => filt::denied::APPLICATION,
        "SF_DENIED_BY_CONFIG" => filt::denied::BY_CONFIG,
    );
}

#[test]
fn the_c_headers_and_the_rust_types_describe_one_abi() {
    let mut checks = Checks::new();
    extension_checks(&mut checks);
    filter_checks(&mut checks);
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include");
    let dir = std::env::temp_dir().join(format!("isapi-headers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut program = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"httpext.h\"\n#include \"httpfilt.h\"\nint main(void) {\n",
    );
    for (expr, _) in &checks {
        program.push_str(&format!(
            "    printf(\"%llu\\n\", (unsigned long long)({expr}));\n"
        ));
    }
    program.push_str("    return 0;\n}\n");
    let source = dir.join("layout.c");
    std::fs::write(&source, program).unwrap();
    let exe = dir.join("layout");
    // Strict and pedantic: the headers are for authors' -Werror builds.
    let built = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I"])
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc is installed (the Rust toolchain links with it)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let values: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(values.len(), checks.len());
    let differ: Vec<String> = checks
        .iter()
        .zip(&values)
        .filter(|((_, rust), c)| rust != *c)
        .map(|((expr, rust), c)| format!("{expr}: C {c}, Rust {rust}"))
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(checks.len() > 250, "{} checks", checks.len());
}

#[test]
fn the_headers_compile_as_cplusplus_too() {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include");
    let dir = std::env::temp_dir().join(format!("isapi-cpp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("both.cpp");
    std::fs::write(
        &source,
        "#include \"httpext.h\"\n#include \"httpfilt.h\"\nint main() { HSE_VERSION_INFO v; v.dwExtensionVersion = HSE_VERSION; return (int)v.dwExtensionVersion == 0; }\n",
    )
    .unwrap();
    let built = Command::new("cc")
        .args(["-x", "c++", "-fsyntax-only", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg(&source)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
}
