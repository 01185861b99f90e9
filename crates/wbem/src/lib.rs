//! WMI on the wire ([MS-WMI]): the IIS WMI provider's model
//! (crate `wmi`) served to the clients people already use, as DCOM
//! objects of the service host's exporter.
//!
//! - [`interfaces`]: IWbemLevel1Login, IWbemServices,
//!   IEnumWbemClassObject, IWbemFetchSmartEnum, IWbemWCOSmartEnum and
//!   IWbemCallResult, each described once from the specification's IDL.
//! - [`convert`]: the provider's classes and instances as [MS-WMIO]
//!   objects (crate `wmio`), with the qualifiers and derivation lists
//!   clients read.
//! - [`service`]: the objects themselves: a login that opens a namespace
//!   (`root`, `root\cimv2`, `root\MicrosoftIISv2`), the services object
//!   that queries, reads and writes through the provider on the live
//!   metabase, and the enumerators and call results it hands out.
//! - [`asynchronous`]: the asynchronous calls, whose results go to the
//!   client's IWbemObjectSink (called back over DCOM), and
//!   CancelAsyncCall.
//! - The smart enumerator (IWbemWCOSmartEnum) sends ObjectArrays
//!   (2.2.14, `wmio::object_array`), each class once.
//!
//! Who may log on is the host's decision ([`iisadmin::Admins`]):
//! administrators, at packet integrity or privacy, as for the metabase
//! interfaces.

pub mod asynchronous;
pub mod convert;
/// What the fuzz target and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod interfaces;
pub mod service;

pub use service::{serve, Wbem};

use msrpc::Uuid;

/// CLSID_WbemLevel1Login ([MS-WMI] Appendix A).
pub const CLSID_WBEM_LEVEL1_LOGIN: Uuid = Uuid {
    time_low: 0x8bc3_f05e,
    time_mid: 0xd86b,
    time_hi_and_version: 0x11d0,
    clock_seq_and_node: [0xa0, 0x75, 0x00, 0xc0, 0x4f, 0xb6, 0x88, 0x20],
};
/// The unmarshaler of IWbemClassObject's custom OBJREF (2.2.4).
pub const CLSID_WBEM_CLASS_OBJECT: Uuid = Uuid {
    time_low: 0x4590_f812,
    time_mid: 0x1d3a,
    time_hi_and_version: 0x11d0,
    clock_seq_and_node: [0x89, 0x1f, 0x00, 0xaa, 0x00, 0x4b, 0x2e, 0x24],
};
pub const IID_IWBEM_CLASS_OBJECT: Uuid = Uuid {
    time_low: 0xdc12_a681,
    time_mid: 0x737f,
    time_hi_and_version: 0x11cf,
    clock_seq_and_node: [0x88, 0x4d, 0x00, 0xaa, 0x00, 0x4b, 0x2e, 0x24],
};
pub const IID_IWBEM_LEVEL1_LOGIN: Uuid = Uuid {
    time_low: 0xf309_ad18,
    time_mid: 0xd86a,
    time_hi_and_version: 0x11d0,
    clock_seq_and_node: [0xa0, 0x75, 0x00, 0xc0, 0x4f, 0xb6, 0x88, 0x20],
};
pub const IID_IWBEM_SERVICES: Uuid = Uuid {
    time_low: 0x9556_dc99,
    time_mid: 0x828c,
    time_hi_and_version: 0x11cf,
    clock_seq_and_node: [0xa3, 0x7e, 0x00, 0xaa, 0x00, 0x32, 0x40, 0xc7],
};
pub const IID_IENUM_WBEM_CLASS_OBJECT: Uuid = Uuid {
    time_low: 0x0279_47e1,
    time_mid: 0xd731,
    time_hi_and_version: 0x11ce,
    clock_seq_and_node: [0xa3, 0x57, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
};
pub const IID_IWBEM_FETCH_SMART_ENUM: Uuid = Uuid {
    time_low: 0x1c1c_45ee,
    time_mid: 0x4395,
    time_hi_and_version: 0x11d2,
    clock_seq_and_node: [0xb6, 0x0b, 0x00, 0x10, 0x4b, 0x70, 0x3e, 0xfd],
};
pub const IID_IWBEM_WCO_SMART_ENUM: Uuid = Uuid {
    time_low: 0x423e_c01e,
    time_mid: 0x2e35,
    time_hi_and_version: 0x11d2,
    clock_seq_and_node: [0xb6, 0x04, 0x00, 0x10, 0x4b, 0x70, 0x3e, 0xfd],
};
pub const IID_IWBEM_CALL_RESULT: Uuid = Uuid {
    time_low: 0x44ac_a675,
    time_mid: 0xe8fc,
    time_hi_and_version: 0x11d0,
    clock_seq_and_node: [0xa0, 0x7c, 0x00, 0xc0, 0x4f, 0xb6, 0x88, 0x20],
};

/// IWbemObjectSink (3.1.4.2): what a client serves to take the results
/// of asynchronous calls.
pub const IID_IWBEM_OBJECT_SINK: Uuid = Uuid {
    time_low: 0x7c85_7801,
    time_mid: 0x7381,
    time_hi_and_version: 0x11cf,
    clock_seq_and_node: [0x88, 0x4d, 0x00, 0xaa, 0x00, 0x4b, 0x2e, 0x24],
};

/// WBEMSTATUS values this service returns ([MS-WMI] 2.2.11) beyond the
/// provider's own ([`wmi::WbemStatus`]).
pub mod status {
    pub const WBEM_S_NO_ERROR: u32 = 0;
    pub const WBEM_S_FALSE: u32 = 1;
    pub const WBEM_S_TIMEDOUT: u32 = 0x0004_0004;
    /// A sink's first Indicate: it takes ObjectArrays too (3.1.4.2.1).
    pub const WBEM_S_NEW_STYLE: u32 = 0x0004_00ff;
    pub const WBEM_E_FAILED: u32 = 0x8004_1001;
    pub const WBEM_E_NOT_FOUND: u32 = 0x8004_1002;
    pub const WBEM_E_ACCESS_DENIED: u32 = 0x8004_1003;
    pub const WBEM_E_INVALID_CONTEXT: u32 = 0x8004_1007;
    pub const WBEM_E_INVALID_PARAMETER: u32 = 0x8004_1008;
    pub const WBEM_E_NOT_SUPPORTED: u32 = 0x8004_100c;
    pub const WBEM_E_INVALID_NAMESPACE: u32 = 0x8004_100e;
    pub const WBEM_E_INVALID_OBJECT: u32 = 0x8004_100f;
    pub const WBEM_E_INVALID_CLASS: u32 = 0x8004_1010;
    pub const WBEM_E_INVALID_OPERATION: u32 = 0x8004_1016;
    pub const WBEM_E_INVALID_QUERY: u32 = 0x8004_1017;
    pub const WBEM_E_INVALID_QUERY_TYPE: u32 = 0x8004_1018;
    pub const WBEM_E_ALREADY_EXISTS: u32 = 0x8004_1019;
    pub const WBEM_E_TYPE_MISMATCH: u32 = 0x8004_1005;
    pub const WBEM_E_QUOTA_VIOLATION: u32 = 0x8004_106c;
    pub const WBEM_E_CALL_CANCELLED: u32 = 0x8004_1032;
    pub const WBEM_E_SHUTTING_DOWN: u32 = 0x8004_1033;
    /// SetStatus's flags (2.2.7 WBEM_STATUS_TYPE): the final status, or
    /// progress.
    pub const WBEM_STATUS_COMPLETE: u32 = 0;
    pub const WBEM_STATUS_PROGRESS: u32 = 2;
    pub const E_NOTIMPL: u32 = 0x8000_4001;
}
