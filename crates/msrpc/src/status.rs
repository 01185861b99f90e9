//! Status codes carried in fault PDUs and in methods' error_status
//! results (C706 Appendix E and N; [MS-ERREF] 2.2 and 2.3; [MS-RPCE]).

/// nca_s_op_rng_error: the opnum is beyond the interface's methods.
pub const NCA_S_OP_RNG_ERROR: u32 = 0x1C01_0002;
/// nca_s_unk_if: the presentation context does not name a bound interface.
pub const NCA_S_UNK_IF: u32 = 0x1C01_0003;
/// nca_s_proto_error: a protocol error ([MS-RPCE] 3.3.3.5.7).
pub const NCA_S_PROTO_ERROR: u32 = 0x1C01_000B;
/// nca_s_fault_context_mismatch: a context handle the server does not know.
pub const NCA_S_FAULT_CONTEXT_MISMATCH: u32 = 0x1C00_001A;
/// ERROR_ACCESS_DENIED: also the fault for a request over 4 MB
/// ([MS-RPCE] 3.3.3.5.4) and for a call below the interface's level.
pub const ERROR_ACCESS_DENIED: u32 = 0x0000_0005;
/// ERROR_INSUFFICIENT_BUFFER: an out-parameter buffer the caller sized
/// too small.
pub const ERROR_INSUFFICIENT_BUFFER: u32 = 0x0000_007A;
/// RPC_S_UNKNOWN_AUTHN_SERVICE.
pub const RPC_S_UNKNOWN_AUTHN_SERVICE: u32 = 0x0000_06D3;
/// RPC_X_BAD_STUB_DATA: stub data that breaks a consistency rule.
pub const RPC_X_BAD_STUB_DATA: u32 = 0x0000_06F7;
/// RPC_S_CALL_FAILED: the method ended abnormally.
pub const RPC_S_CALL_FAILED: u32 = 0x0000_06BE;
/// RPC_S_INVALID_BOUND: an out-of-range `[range]` value.
pub const RPC_S_INVALID_BOUND: u32 = 0x0000_06C6;
/// EPT_S_NOT_REGISTERED: no endpoint map element matches.
pub const EPT_S_NOT_REGISTERED: u32 = 0x16C9_A0D6;
/// EPT_S_CANT_PERFORM_OP ([MS-RPCE] 2.2.1.2.1).
pub const EPT_S_CANT_PERFORM_OP: u32 = 0x0000_06D8;

/// RPC_S_SEC_PKG_ERROR ([MS-ERREF] 2.2): the security provider failed,
/// as when a PDU's signature does not verify.
pub const RPC_S_SEC_PKG_ERROR: u32 = 0x0000_0721;

/// A readable name for a status, for errors shown to people.
pub fn name(status: u32) -> &'static str {
    match status {
        0 => "success",
        NCA_S_OP_RNG_ERROR => "nca_s_op_rng_error",
        NCA_S_UNK_IF => "nca_s_unk_if",
        NCA_S_PROTO_ERROR => "nca_s_proto_error",
        NCA_S_FAULT_CONTEXT_MISMATCH => "nca_s_fault_context_mismatch",
        ERROR_ACCESS_DENIED => "access denied",
        ERROR_INSUFFICIENT_BUFFER => "insufficient buffer",
        RPC_S_UNKNOWN_AUTHN_SERVICE => "rpc_s_unknown_authn_service",
        RPC_X_BAD_STUB_DATA => "rpc_x_bad_stub_data",
        RPC_S_INVALID_BOUND => "rpc_s_invalid_bound",
        EPT_S_NOT_REGISTERED => "ept_s_not_registered",
        EPT_S_CANT_PERFORM_OP => "ept_s_cant_perform_op",
        RPC_S_SEC_PKG_ERROR => "rpc_s_sec_pkg_error",
        _ => "unknown status",
    }
}
