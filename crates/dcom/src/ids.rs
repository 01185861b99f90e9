//! Well-known identifiers ([MS-DCOM] 1.9) and the HRESULTs and status
//! codes DCOM answers with ([MS-ERREF] 2.1, 2.2).

use msrpc::Uuid;

/// A GUID of COM's own family, `{XXXXXXXX-0000-0000-C000-000000000046}`.
pub const fn com_guid(time_low: u32) -> Uuid {
    Uuid {
        time_low,
        time_mid: 0,
        time_hi_and_version: 0,
        clock_seq_and_node: [0xc0, 0, 0, 0, 0, 0, 0, 0x46],
    }
}

pub const IID_IUNKNOWN: Uuid = com_guid(0x0000_0000);
pub const IID_ICLASS_FACTORY: Uuid = com_guid(0x0000_0001);
pub const IID_IREM_UNKNOWN: Uuid = com_guid(0x0000_0131);
pub const IID_IREM_UNKNOWN2: Uuid = com_guid(0x0000_0143);
pub const IID_IREMOTE_SCM_ACTIVATOR: Uuid = com_guid(0x0000_01a0);
pub const IID_IACTIVATION_PROPERTIES_IN: Uuid = com_guid(0x0000_01a2);
pub const IID_IACTIVATION_PROPERTIES_OUT: Uuid = com_guid(0x0000_01a3);
pub const CLSID_ACTIVATION_PROPERTIES_IN: Uuid = com_guid(0x0000_0338);
pub const CLSID_ACTIVATION_PROPERTIES_OUT: Uuid = com_guid(0x0000_0339);
pub const CLSID_PROPS_OUT_INFO: Uuid = com_guid(0x0000_0339);
pub const CLSID_INSTANTIATION_INFO: Uuid = com_guid(0x0000_01ab);
pub const CLSID_SCM_REQUEST_INFO: Uuid = com_guid(0x0000_01aa);
pub const CLSID_SCM_REPLY_INFO: Uuid = com_guid(0x0000_01b6);

/// The version this implementation speaks: 5.7 (Windows Server 2003 SP1
/// and later), with IRemUnknown2 and ServerAlive2.
pub const COM_VERSION: crate::types::ComVersion = crate::types::ComVersion { major: 5, minor: 7 };

pub const S_OK: u32 = 0;
pub const E_NOINTERFACE: u32 = 0x8000_4002;
pub const E_ACCESSDENIED: u32 = 0x8007_0005;
pub const E_INVALIDARG: u32 = 0x8007_0057;
pub const E_OUTOFMEMORY: u32 = 0x8007_000e;
pub const REGDB_E_CLASSNOTREG: u32 = 0x8004_0154;
pub const RPC_E_VERSION_MISMATCH: u32 = 0x8001_0110;
pub const RPC_E_INVALID_OBJREF: u32 = 0x8001_011d;
pub const RPC_E_INVALID_IPID: u32 = 0x8001_0113;
pub const CO_E_OBJNOTCONNECTED: u32 = 0x8004_01fd;
pub const OR_INVALID_OXID: u32 = 1910;
pub const OR_INVALID_OID: u32 = 1911;
pub const OR_INVALID_SET: u32 = 1912;
pub use msrpc::status::ERROR_ACCESS_DENIED;
pub const ERROR_OUTOFMEMORY: u32 = 14;
