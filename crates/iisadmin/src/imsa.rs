//! IMSAdminBaseW ([MS-IMSA] 3.1) over the live metabase: the metabase
//! handles a client opens (with their read/write locks), keys, data, the
//! change number, SaveData. Every write goes through the same validated
//! metabase API as the CLI, so a refused value is refused here too.

// The methods take the parameters their IDL gives them.
#![allow(clippy::too_many_arguments)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use dcom::{ComClass, Created, Exporter};
use metabase::{Attributes, DataType, GetMode, MbPath, MetabaseFiles, Property, UserType, Value};
use msrpc::ndr::{ConformantArray, Unique, WString};
use msrpc::server::{Call, CallResult};
use msrpc::Uuid;

use crate::Admins;

/// CLSID_MSAdminBase_W ([MS-IMSA] 1.9).
pub const CLSID_MSADMIN_BASE_W: Uuid = Uuid {
    time_low: 0xa9e6_9610,
    time_mid: 0xb80d,
    time_hi_and_version: 0x11d0,
    clock_seq_and_node: [0xb9, 0xb9, 0x00, 0xa0, 0xc9, 0x22, 0xe7, 0x50],
};
/// IID_IMSAdminBaseW.
pub const IID_IMSADMIN_BASE_W: Uuid = Uuid {
    time_low: 0x70b5_1430,
    time_mid: 0xb6ca,
    time_hi_and_version: 0x11d0,
    clock_seq_and_node: [0xb9, 0xb9, 0x00, 0xa0, 0xc9, 0x22, 0xe7, 0x50],
};

/// METADATA_MASTER_ROOT_HANDLE (2.2.8).
pub const MASTER_ROOT_HANDLE: u32 = 0;
/// ADMINDATA_MAX_NAME_LEN (2.2.1).
pub const MAX_NAME_LEN: usize = 256;
pub const METADATA_PERMISSION_READ: u32 = 1;
pub const METADATA_PERMISSION_WRITE: u32 = 2;
use crate::secure::{SecureSession, ServerExchange, ServerKeys, CLEARTEXT_DATA_BLOB_SIGNATURE};

pub use dcom::ids::{E_ACCESSDENIED, E_INVALIDARG, S_OK};
pub const E_FAIL: u32 = 0x8000_4005;
pub const ERROR_PATH_NOT_FOUND: u32 = 0x8007_0003;
pub const ERROR_INVALID_HANDLE: u32 = 0x8007_0006;
pub const ERROR_NO_MORE_ITEMS: u32 = 0x8007_0103;
pub const ERROR_ALREADY_EXISTS: u32 = 0x8007_00b7;
pub const ERROR_PATH_BUSY: u32 = 0x8007_0094;
pub const ERROR_INSUFFICIENT_BUFFER: u32 = 0x8007_007a;
pub const MD_ERROR_DATA_NOT_FOUND: u32 = 0x800c_c801;
/// The secure session could not be negotiated, or is not.
pub const MD_ERROR_SECURE_CHANNEL_FAILURE: u32 = 0x800c_c806;

/// IIS_CRYPTO_BLOB (2.2.2).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct IisCryptoBlob {
    pub signature: u32,
    pub length: u32,
    #[ndr(size_is = "length")]
    pub data: Vec<u8>,
}

/// METADATA_RECORD (2.2.7).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct MetadataRecord {
    pub identifier: u32,
    pub attributes: u32,
    pub user_type: u32,
    pub data_type: u32,
    pub data_len: u32,
    pub data: Unique<ConformantArray<u8>>,
    pub data_tag: u32,
}

/// METADATA_HANDLE_INFO (2.2.6).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HandleInfo {
    pub permissions: u32,
    pub system_change_number: u32,
}

/// FILETIME ([MS-DTYP] 2.3.3): 100 ns intervals since 1601.
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileTime {
    pub low: u32,
    pub high: u32,
}

impl FileTime {
    pub fn from_system(t: Option<std::time::SystemTime>) -> FileTime {
        // 1601-01-01 to 1970-01-01 in 100 ns intervals.
        const EPOCH_DIFF: u64 = 116_444_736_000_000_000;
        let ticks = t
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| EPOCH_DIFF + d.as_nanos() as u64 / 100)
            .unwrap_or(0);
        FileTime {
            low: ticks as u32,
            high: (ticks >> 32) as u32,
        }
    }

    /// The time it names; `None` for zero (no time).
    pub fn to_system(self) -> Option<std::time::SystemTime> {
        const EPOCH_DIFF: u64 = 116_444_736_000_000_000;
        let ticks = u64::from(self.high) << 32 | u64::from(self.low);
        let since_unix = ticks.checked_sub(EPOCH_DIFF)?;
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_nanos(
            since_unix.saturating_mul(100),
        ))
    }
}

/// R_KeyExchangePhase1's answer: ORPCTHAT, the server's key-exchange
/// public key, signature public key and session key, the HRESULT.
pub type KeyExchange1Reply = (
    dcom::types::OrpcThat,
    Unique<IisCryptoBlob>,
    Unique<IisCryptoBlob>,
    Unique<IisCryptoBlob>,
    u32,
);

/// IID_IMSAdminBase2W ([MS-IMSA] 1.9).
pub const IID_IMSADMIN_BASE2_W: Uuid = Uuid {
    time_low: 0x8298_d101,
    time_mid: 0xf992,
    time_hi_and_version: 0x43b7,
    clock_seq_and_node: [0x8e, 0xca, 0x50, 0x52, 0xd8, 0x85, 0xb9, 0x95],
};
/// IID_IMSAdminBase3W.
pub const IID_IMSADMIN_BASE3_W: Uuid = Uuid {
    time_low: 0xf612_954d,
    time_mid: 0x3b0b,
    time_hi_and_version: 0x4c56,
    clock_seq_and_node: [0x95, 0x63, 0x22, 0x7b, 0x7b, 0xe6, 0x24, 0xb4],
};

/// What IMSAdminBase2W adds to IMSAdminBaseW (3.3.4); served with the
/// base's methods under 2W's IID by [`msrpc::server::Extends`].
#[msrpc::interface(uuid = "8298d101-f992-43b7-8eca-5052d885b995", version = "0.0")]
pub trait MsAdminBase2WAdds {
    /// BackupWithPasswd (3.3.4.1).
    #[opnum(34)]
    fn backup_with_password(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        name: Unique<WString>,
        version: u32,
        flags: u32,
        password: Unique<WString>,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// RestoreWithPasswd (3.3.4.6).
    #[opnum(35)]
    fn restore_with_password(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        name: Unique<WString>,
        version: u32,
        flags: u32,
        password: Unique<WString>,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// Export (3.3.4.3): a key (and its subtree) to a file on the server.
    #[opnum(36)]
    fn export(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        password: Unique<WString>,
        file: Unique<WString>,
        source: Unique<WString>,
        flags: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// Import (3.3.4.4).
    #[opnum(37)]
    fn import(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        password: Unique<WString>,
        file: Unique<WString>,
        source: Unique<WString>,
        dest: Unique<WString>,
        flags: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// RestoreHistory (3.3.4.5).
    #[opnum(38)]
    fn restore_history(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        location: Unique<WString>,
        major: u32,
        minor: u32,
        flags: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// EnumHistory (3.3.4.2): the index-th history version.
    #[opnum(39)]
    fn enum_history(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        location: ConformantArray<u16>,
        index: u32,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        ConformantArray<u16>,
        u32,
        u32,
        FileTime,
        u32,
    )>;
}

/// GetChildPaths' answer: ORPCTHAT, the buffer, the size it needs, the
/// HRESULT.
pub type ChildPathsReply = (
    dcom::types::OrpcThat,
    Unique<ConformantArray<u16>>,
    Unique<u32>,
    u32,
);

/// What IMSAdminBase3W adds (3.5.4).
#[msrpc::interface(uuid = "f612954d-3b0b-4c56-9563-227b7be624b4", version = "0.0")]
pub trait MsAdminBase3WAdds {
    /// GetChildPaths (3.5.4.1): every key below a path, as a MULTISZ.
    #[opnum(40)]
    fn get_child_paths(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        #[ndr(range(0, 0x100_0000))] buffer_size: u32,
        buffer: Unique<ConformantArray<u16>>,
        required: Unique<u32>,
    ) -> CallResult<ChildPathsReply>;
}

#[msrpc::interface(uuid = "70b51430-b6ca-11d0-b9b9-00a0c922e750", version = "0.0")]
pub trait MsAdminBaseW {
    /// AddKey (3.1.4.4).
    #[opnum(3)]
    fn add_key(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// DeleteKey (3.1.4.6).
    #[opnum(4)]
    fn delete_key(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// DeleteChildKeys (3.1.4.7).
    #[opnum(5)]
    fn delete_child_keys(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// EnumKeys (3.1.4.11): the name of the index-th child.
    #[opnum(6)]
    fn enum_keys(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        index: u32,
    ) -> CallResult<(dcom::types::OrpcThat, ConformantArray<u16>, u32)>;

    /// CopyKey (3.1.4.5): copy, or move when `copy` is false.
    #[opnum(7)]
    fn copy_key(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        source_handle: u32,
        source_path: Unique<WString>,
        dest_handle: u32,
        dest_path: Unique<WString>,
        overwrite: u32,
        copy: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// RenameKey (3.1.4.28).
    #[opnum(8)]
    fn rename_key(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        new_name: Unique<WString>,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// R_SetData (3.1.4.27).
    #[opnum(9)]
    fn set_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        record: MetadataRecord,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// R_GetData (3.1.4.23).
    #[opnum(10)]
    fn get_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        record: MetadataRecord,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        MetadataRecord,
        u32,
        Unique<IisCryptoBlob>,
        u32,
    )>;

    /// DeleteData (3.1.4.8).
    #[opnum(11)]
    fn delete_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        identifier: u32,
        data_type: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// R_EnumData (3.1.4.12): the index-th data item of a key.
    #[opnum(12)]
    fn enum_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        record: MetadataRecord,
        index: u32,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        MetadataRecord,
        u32,
        Unique<IisCryptoBlob>,
        u32,
    )>;

    /// R_GetAllData (3.1.4.22): the entries' METADATA_GETALL_RECORDs then
    /// their data, in one blob; the count, the data set number, the size.
    #[opnum(13)]
    fn get_all_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        attributes: u32,
        user_type: u32,
        data_type: u32,
        buffer_size: u32,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        u32,
        u32,
        u32,
        Unique<IisCryptoBlob>,
        u32,
    )>;

    /// DeleteAllData (3.1.4.9).
    #[opnum(14)]
    fn delete_all_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        user_type: u32,
        data_type: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// CopyData (3.1.4.10): data items from one key to another, copied or
    /// moved.
    #[opnum(15)]
    fn copy_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        source_handle: u32,
        source_path: Unique<WString>,
        dest_handle: u32,
        dest_path: Unique<WString>,
        attributes: u32,
        user_type: u32,
        data_type: u32,
        copy: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// GetDataPaths (3.1.4.17): the keys at or below a path where an
    /// identifier is set, as a MULTISZ.
    #[opnum(16)]
    fn get_data_paths(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        identifier: u32,
        data_type: u32,
        #[ndr(range(0, 0x10_0000))] buffer_size: u32,
    ) -> CallResult<(dcom::types::OrpcThat, ConformantArray<u16>, u32, u32)>;

    /// OpenKey (3.1.4.2): waits up to dwMDTimeOut for a conflicting
    /// handle to close.
    #[opnum(17)]
    #[blocking]
    fn open_key(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        access: u32,
        timeout_ms: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32, u32)>;

    /// CloseKey (3.1.4.3).
    #[opnum(18)]
    fn close_key(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// ChangePermissions (3.1.4.16): a handle from read to write or back,
    /// waiting up to dwMDTimeOut for conflicting handles to close.
    #[opnum(19)]
    #[blocking]
    fn change_permissions(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        timeout_ms: u32,
        access: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// SaveData (3.1.4.30).
    #[opnum(20)]
    fn save_data(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// GetHandleInfo (3.1.4.19).
    #[opnum(21)]
    fn get_handle_info(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
    ) -> CallResult<(dcom::types::OrpcThat, HandleInfo, u32)>;

    /// GetSystemChangeNumber (3.1.4.21).
    #[opnum(22)]
    fn get_system_change_number(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
    ) -> CallResult<(dcom::types::OrpcThat, u32, u32)>;

    /// GetDataSetNumber (3.1.4.18).
    #[opnum(23)]
    fn get_data_set_number(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(dcom::types::OrpcThat, u32, u32)>;

    /// SetLastChangeTime (3.1.4.31).
    #[opnum(24)]
    fn set_last_change_time(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        time: FileTime,
        local_time: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// GetLastChangeTime (3.1.4.20).
    #[opnum(25)]
    fn get_last_change_time(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        handle: u32,
        path: Unique<WString>,
        local_time: u32,
    ) -> CallResult<(dcom::types::OrpcThat, FileTime, u32)>;

    /// Backup (3.1.4.13).
    #[opnum(28)]
    fn backup(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        name: Unique<WString>,
        version: u32,
        flags: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// Restore (3.1.4.29).
    #[opnum(29)]
    fn restore(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        name: Unique<WString>,
        version: u32,
        flags: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// EnumBackups (3.1.4.14): the name (when none was given), version
    /// and time of the index-th backup.
    #[opnum(30)]
    fn enum_backups(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        name: ConformantArray<u16>,
        index: u32,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        ConformantArray<u16>,
        u32,
        FileTime,
        u32,
    )>;

    /// DeleteBackup (3.1.4.15).
    #[opnum(31)]
    fn delete_backup(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        name: Unique<WString>,
        version: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// R_KeyExchangePhase1 (3.1.4.25): the client's key-exchange and
    /// signature public keys in; the server's, and its session key, out.
    #[opnum(26)]
    fn key_exchange_phase1(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        client_exchange_key: Unique<IisCryptoBlob>,
        client_signature_key: Unique<IisCryptoBlob>,
    ) -> CallResult<KeyExchange1Reply>;

    /// R_KeyExchangePhase2 (3.1.4.26): the client's session key and hash
    /// in; the server's hash out.
    #[opnum(27)]
    fn key_exchange_phase2(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        client_session_key: Unique<IisCryptoBlob>,
        client_hash: Unique<IisCryptoBlob>,
    ) -> CallResult<(dcom::types::OrpcThat, Unique<IisCryptoBlob>, u32)>;

    /// UnmarshalInterface (3.1.4.32): this object's IMSAdminBaseW again.
    #[opnum(32)]
    fn unmarshal_interface(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        Unique<dcom::types::MInterfacePointer>,
        u32,
    )>;

    /// R_GetServerGuid (3.1.4.24).
    #[opnum(33)]
    fn get_server_guid(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
    ) -> CallResult<(dcom::types::OrpcThat, Uuid, u32)>;
}

/// The longest OpenKey waits for a busy path, whatever dwMDTimeOut says
/// (each wait holds a thread of the blocking pool).
pub const MAX_OPEN_WAIT: Duration = Duration::from_secs(60);

/// An open METADATA_HANDLE.
#[derive(Clone, Debug)]
struct Handle {
    path: MbPath,
    permissions: u32,
    /// The object that opened it: only it may use or close it, and its
    /// handles close when it goes (released, or its client stopped
    /// pinging).
    owner: u64,
}

/// The handles open on the metabase, shared by every IMSAdminBaseW object
/// (IIS's handles are the metabase's, not one client's).
#[derive(Default)]
struct Handles {
    open: HashMap<u32, Handle>,
}

/// Whether one path is the other or below it.
/// Whether a handle on `path` with `permissions` conflicts with an open
/// one (other than `except`): a write handle excludes every other handle
/// on its branch; read handles share ([MS-IMSA] 3.1.4.2).
fn conflicts(handles: &Handles, path: &MbPath, permissions: u32, except: Option<u32>) -> bool {
    handles.open.iter().any(|(id, other)| {
        Some(*id) != except
            && overlaps(&other.path, path)
            && (other.permissions & METADATA_PERMISSION_WRITE != 0
                || permissions & METADATA_PERMISSION_WRITE != 0)
    })
}

fn overlaps(a: &MbPath, b: &MbPath) -> bool {
    let (a, b) = (a.parts(), b.parts());
    let n = a.len().min(b.len());
    a[..n]
        .iter()
        .zip(&b[..n])
        .all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// What IMSAdminBaseW works on: the metabase, its handles, who may call.
pub struct AdminBase {
    pub(crate) files: MetabaseFiles,
    handles: Mutex<Handles>,
    /// Signalled when a handle closes or loses its write permission.
    handles_freed: Condvar,
    next_handle: AtomicU32,
    next_object: std::sync::atomic::AtomicU64,
    admins: Arc<dyn Admins>,
    server_guid: Uuid,
    /// When each key last changed, as the metabase's notifications say.
    changed: Arc<ChangeTimes>,
    /// The service's key-exchange and signature keys, made at the first
    /// R_KeyExchangePhase1.
    secure_keys: std::sync::OnceLock<Arc<ServerKeys>>,
    /// The change-notification sinks clients advised.
    sinks: Arc<crate::sink::Sinks>,
    started: FileTime,
}

/// When each key last changed (lower-cased path), as the metabase's
/// notifications say or as SetLastChangeTime set it; keys not changed since
/// the service started report its start. The notifications arrive on a
/// thread of their own, so readers wait for it to have seen the metabase's
/// current change number: a change made by the call before is never missed.
#[derive(Default)]
struct ChangeTimes {
    state: Mutex<ChangeTimesState>,
    caught_up: Condvar,
}

#[derive(Default)]
struct ChangeTimesState {
    times: HashMap<String, FileTime>,
    /// The highest change number whose notification was recorded.
    seen: u64,
}

impl ChangeTimes {
    fn lock(&self) -> MutexGuard<'_, ChangeTimesState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, batch: &metabase::ChangeBatch) {
        let now = FileTime::from_system(Some(std::time::SystemTime::now()));
        let mut state = self.lock();
        for change in &batch.changes {
            for path in std::iter::once(&change.path).chain(&change.new_path) {
                state.times.insert(path.to_string().to_lowercase(), now);
            }
        }
        state.seen = state.seen.max(batch.change_number);
        self.caught_up.notify_all();
    }

    /// The times once every change up to `change_number` is recorded (or,
    /// should the notification thread be stuck, after a second).
    fn up_to(&self, change_number: u64) -> MutexGuard<'_, ChangeTimesState> {
        let state = self.lock();
        self.caught_up
            .wait_timeout_while(state, Duration::from_secs(1), |s| s.seen < change_number)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }
}

/// One activated IMSAdminBaseW object.
pub struct AdminBaseObject {
    id: u64,
    base: std::sync::Weak<AdminBase>,
    /// Its secure session (R_KeyExchangePhase1/2), for SECURE values.
    secure: Mutex<ServerExchange>,
}

impl AdminBaseObject {
    pub(crate) fn secure(&self) -> MutexGuard<'_, ServerExchange> {
        self.secure.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for AdminBaseObject {
    fn drop(&mut self) {
        if let Some(base) = self.base.upgrade() {
            let mut handles = base.handles();
            let before = handles.open.len();
            handles.open.retain(|_, h| h.owner != self.id);
            let closed = before - handles.open.len();
            base.handles_freed.notify_all();
            if closed > 0 {
                tracing::info!(
                    closed,
                    "IMSAdminBaseW: an object went with handles open; they are closed"
                );
            }
        }
    }
}

impl AdminBase {
    pub fn new(files: MetabaseFiles, admins: Arc<dyn Admins>) -> Arc<AdminBase> {
        let notifications = files.metabase().subscribe();
        let changed = Arc::new(ChangeTimes::default());
        // Subscribed first: every change after this number is notified.
        changed.lock().seen = files.metabase().snapshot().change_number();
        let record = Arc::downgrade(&changed);
        let sinks = Arc::new(crate::sink::Sinks::default());
        let tell = Arc::downgrade(&sinks);
        // The notifications arrive on a thread of their own; it ends with
        // the metabase's sender or when the AdminBase is gone.
        let _ = std::thread::Builder::new()
            .name("imsa-change-times".into())
            .spawn(move || {
                while let Ok(batch) = notifications.recv() {
                    let Some(changed) = record.upgrade() else {
                        break;
                    };
                    changed.record(&batch);
                    if let Some(sinks) = tell.upgrade() {
                        sinks.publish(&batch);
                    }
                }
            });
        Arc::new(AdminBase {
            changed,
            secure_keys: std::sync::OnceLock::new(),
            sinks,
            started: FileTime::from_system(Some(std::time::SystemTime::now())),
            files,
            handles: Mutex::new(Handles::default()),
            handles_freed: Condvar::new(),
            next_handle: AtomicU32::new(1),
            next_object: std::sync::atomic::AtomicU64::new(1),
            admins,
            server_guid: Uuid::random(),
        })
    }

    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The change-notification sinks advised.
    pub fn sinks(&self) -> &Arc<crate::sink::Sinks> {
        &self.sinks
    }

    /// The service's secure-data keys (made once; 512-bit RSA is quick).
    fn secure_keys(&self) -> Result<Arc<ServerKeys>, crate::secure::SecureError> {
        if let Some(keys) = self.secure_keys.get() {
            return Ok(keys.clone());
        }
        let keys = Arc::new(ServerKeys::generate()?);
        Ok(self.secure_keys.get_or_init(|| keys).clone())
    }

    /// A number for a new object of this admin base.
    pub(crate) fn next_object_id(&self) -> u64 {
        self.next_object.fetch_add(1, Ordering::Relaxed)
    }

    /// The path `relative` names below `handle`, if the handle is open.
    fn resolve(
        &self,
        object: &AdminBaseObject,
        handle: u32,
        relative: &Unique<WString>,
    ) -> Result<(MbPath, u32), u32> {
        let (base, permissions) = if handle == MASTER_ROOT_HANDLE {
            (
                String::new(),
                METADATA_PERMISSION_READ | METADATA_PERMISSION_WRITE,
            )
        } else {
            let handles = self.handles();
            let h = handles
                .open
                .get(&handle)
                .filter(|h| h.owner == object.id)
                .ok_or(ERROR_INVALID_HANDLE)?;
            (h.path.to_string(), h.permissions)
        };
        let relative = relative.get().map(|s| s.0.as_str()).unwrap_or("");
        let joined = format!("{base}/{relative}");
        let cleaned: Vec<&str> = joined
            .split(['/', '\\'])
            .filter(|p| !p.is_empty())
            .collect();
        let text = format!("/{}", cleaned.join("/"));
        let path = MbPath::parse(&text).map_err(|_| E_INVALIDARG)?;
        Ok((path, permissions))
    }

    fn writable(
        &self,
        object: &AdminBaseObject,
        handle: u32,
        relative: &Unique<WString>,
    ) -> Result<MbPath, u32> {
        let (path, permissions) = self.resolve(object, handle, relative)?;
        if handle != MASTER_ROOT_HANDLE && permissions & METADATA_PERMISSION_WRITE == 0 {
            return Err(E_ACCESSDENIED);
        }
        Ok(path)
    }

    pub(crate) fn this(
        &self,
        call: &Call,
        exporter: &Exporter,
    ) -> CallResult<Arc<AdminBaseObject>> {
        exporter.object::<AdminBaseObject>(call)
    }
}

/// The HRESULT for a metabase error ([MS-IMSA] 3.1.4's return values).
pub fn hresult(e: &metabase::Error) -> u32 {
    use metabase::Error as E;
    match e {
        E::PathNotFound(_) => ERROR_PATH_NOT_FOUND,
        E::Backup(m) if m.contains("already exists") => ERROR_ALREADY_EXISTS,
        E::Backup(_) => ERROR_FILE_NOT_FOUND,
        E::Crypto(_) => E_ACCESSDENIED,
        E::InvalidArgument(_) | E::RootKey(_) => E_INVALIDARG,
        E::KeyExists(_) => ERROR_ALREADY_EXISTS,
        E::DataNotFound { .. } => MD_ERROR_DATA_NOT_FOUND,
        E::InvalidPath { .. }
        | E::InvalidValue { .. }
        | E::UnknownProperty(_)
        | E::UnknownKeyType(_)
        | E::PropertyNotAllowed { .. }
        | E::ContainmentViolation { .. } => E_INVALIDARG,
        _ => E_FAIL,
    }
}

fn status(result: Result<(), u32>) -> u32 {
    result.err().unwrap_or(S_OK)
}

/// The IMSAdminBaseW class: activation checks who calls.
pub struct AdminBaseClass(pub Arc<AdminBase>);

impl ComClass for AdminBaseClass {
    fn name(&self) -> &'static str {
        "IMSAdminBase"
    }
    fn admit(&self, call: &Call<'_>) -> Result<(), u32> {
        if !crate::admitted(call, &self.0.admins, "IMSAdminBaseW activation") {
            return Err(E_ACCESSDENIED);
        }
        Ok(())
    }

    fn create(&self, call: &Call<'_>) -> Result<Created, u32> {
        self.admit(call)?;
        Ok(Created {
            object: Arc::new(AdminBaseObject {
                id: self.0.next_object_id(),
                base: Arc::downgrade(&self.0),
                secure: Mutex::new(ServerExchange::default()),
            }),
            interfaces: vec![
                IID_IMSADMIN_BASE_W,
                IID_IMSADMIN_BASE2_W,
                IID_IMSADMIN_BASE3_W,
                crate::sink::IID_ICONNECTION_POINT_CONTAINER,
                crate::mbtree::IID_IMETABASE_TREE,
            ],
        })
    }
}

/// Serves IMSAdminBaseW for the objects of one exporter.
pub struct MsAdminBase {
    pub base: Arc<AdminBase>,
    pub exporter: Arc<Exporter>,
}

type That = dcom::types::OrpcThat;
type This = dcom::types::OrpcThis;
/// R_GetData's and R_EnumData's answer.
type DataReply = (That, MetadataRecord, u32, Unique<IisCryptoBlob>, u32);

/// What R_GetData and R_EnumData answer: the record and the value in a
/// cleartext blob, or the error (with the size needed when the client's
/// buffer is short).
fn data_answer(
    asked: MetadataRecord,
    found: Result<Entry, u32>,
    session: Option<&SecureSession>,
) -> DataReply {
    let (id, value, attributes, user_type) = match found {
        Ok(entry) => entry,
        Err(hr) => return (That::default(), asked, 0, Unique::new(None), hr),
    };
    let bytes = value.to_wire_bytes();
    let len = bytes.len() as u32;
    let record = MetadataRecord {
        identifier: id,
        attributes: attributes.0,
        user_type: user_type.0,
        data_type: value.data_type().code(),
        data_len: len,
        data: Unique::new(None),
        data_tag: 0,
    };
    if asked.data_len < len {
        return (
            That::default(),
            record,
            len,
            Unique::new(None),
            ERROR_INSUFFICIENT_BUFFER,
        );
    }
    let blob = if attributes.contains(Attributes::SECURE) {
        // Only with a session: the callers refused SECURE data without one.
        match session.map(|s| s.encrypt(&bytes)) {
            Some(Ok(blob)) => blob,
            Some(Err(e)) => {
                tracing::error!("IMSAdminBaseW: a SECURE value cannot be encrypted: {e}");
                return (That::default(), record, 0, Unique::new(None), E_FAIL);
            }
            None => {
                return (
                    That::default(),
                    record,
                    0,
                    Unique::new(None),
                    E_ACCESSDENIED,
                )
            }
        }
    } else {
        IisCryptoBlob {
            signature: CLEARTEXT_DATA_BLOB_SIGNATURE,
            length: len,
            data: bytes,
        }
    };
    (That::default(), record, len, Unique::new(Some(blob)), S_OK)
}

/// METADATA_ISINHERITED (2.2.4): marks data GetAllData found above the key.
const METADATA_ISINHERITED: u32 = 0x20;
/// METADATA_GETALL_RECORD's size: seven DWORDs.
const GETALL_RECORD_LEN: usize = 28;

/// One data item as GetAllData lists it.
pub(crate) type Entry = (u32, Value, Attributes, UserType);

/// The data an R_SetData record carries, checked and, when SECURE,
/// decrypted with the object's secure session.
pub(crate) fn incoming_property(
    record: &MetadataRecord,
    path: &MbPath,
    session: Option<&SecureSession>,
) -> Result<Property, u32> {
    let bytes = record.data.get().map(|a| a.0.as_slice()).unwrap_or(&[]);
    if bytes.len() != record.data_len as usize {
        return Err(E_INVALIDARG);
    }
    let attributes = Attributes(record.attributes);
    refuse_secure(attributes, path, record.identifier, session)?;
    let decrypted;
    let bytes = match session {
        Some(session) if attributes.contains(Attributes::SECURE) => {
            let blob = crypto_blob_in(bytes).ok_or(E_INVALIDARG)?;
            decrypted = session.decrypt(&blob).map_err(|e| {
                tracing::warn!(path = %path, id = record.identifier, "IMSAdminBaseW SetData: a SECURE value refused: {e}");
                E_INVALIDARG
            })?;
            decrypted.as_slice()
        }
        _ => bytes,
    };
    let data_type = DataType::from_code(record.data_type).ok_or(E_INVALIDARG)?;
    let value = Value::from_wire_bytes(data_type, bytes).ok_or(E_INVALIDARG)?;
    Ok(Property {
        id: record.identifier,
        value,
        attributes,
        user_type: UserType(record.user_type),
        custom_name: None,
    })
}

/// Refuses SECURE data: it travels encrypted with the session key of the
/// secure-data exchange (R_KeyExchangePhase1/2, [MS-IMSA] 3.1.4.1), which
/// is not served yet, and is never sent in the clear.
/// SECURE data crosses the wire only encrypted: without a secure session
/// (R_KeyExchangePhase1/2) it is refused.
fn refuse_secure(
    attributes: Attributes,
    path: &MbPath,
    id: u32,
    session: Option<&SecureSession>,
) -> Result<(), u32> {
    if attributes.contains(Attributes::SECURE) && session.is_none() {
        tracing::warn!(path = %path, id, "IMSAdminBaseW: SECURE data is sent or taken only after the secure-data key exchange (R_KeyExchangePhase1/2), which this client did not make");
        return Err(E_ACCESSDENIED);
    }
    Ok(())
}

/// An IIS_CRYPTO_BLOB as R_SetData carries it in pbMDData (3.2.4.4).
fn crypto_blob_in(bytes: &[u8]) -> Option<IisCryptoBlob> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (signature, length) = (word(0)?, word(4)?);
    let data = bytes.get(8..).filter(|d| d.len() == length as usize)?;
    Some(IisCryptoBlob {
        signature,
        length,
        data: data.to_vec(),
    })
}

/// The data a key holds and, with METADATA_INHERIT, what it inherits
/// (marked METADATA_ISINHERITED).
fn all_data(tree: &metabase::Tree, path: &MbPath, inherit: bool) -> Result<Vec<Entry>, u32> {
    let key = tree.find(path).ok_or(ERROR_PATH_NOT_FOUND)?;
    let mut out: Vec<Entry> = key
        .properties()
        .map(|p| (p.id, p.value.clone(), p.attributes, p.user_type))
        .collect();
    if inherit {
        let mut above = std::collections::BTreeSet::new();
        for depth in 0..path.depth() {
            let prefix = MbPath::from_parts(path.parts()[..depth].iter().cloned())
                .map_err(|_| E_INVALIDARG)?;
            if let Some(k) = tree.find(&prefix) {
                above.extend(k.properties().filter(|p| p.is_inheritable()).map(|p| p.id));
            }
        }
        for id in above {
            if out.iter().any(|(own, ..)| *own == id) {
                continue;
            }
            if let Ok(r) = tree.get(path, id, GetMode::Inherited) {
                out.push((
                    id,
                    r.value,
                    Attributes(r.attributes.0 | METADATA_ISINHERITED),
                    r.user_type,
                ));
            }
        }
    }
    Ok(out)
}

/// A number that is the same for keys whose data (inherited included) is
/// the same (GetDataSetNumber, 3.1.4.18).
fn data_set_number(entries: &[Entry]) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut sorted: Vec<_> = entries
        .iter()
        .map(|(id, v, a, u)| (*id, v.to_wire_bytes(), a.0 & !METADATA_ISINHERITED, u.0))
        .collect();
    sorted.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sorted.hash(&mut h);
    // 1 is the master root's own number; others avoid it and 0.
    (h.finish() as u32).max(2)
}

/// GetAllData's buffer: the records, then each value 4-aligned.
pub(crate) fn getall_buffer(chosen: &[Entry]) -> Vec<u8> {
    let mut records = Vec::with_capacity(chosen.len() * GETALL_RECORD_LEN);
    let mut data = Vec::new();
    let data_start = chosen.len() * GETALL_RECORD_LEN;
    for (id, value, attrs, user) in chosen {
        let bytes = value.to_wire_bytes();
        let offset = data_start + data.len();
        for field in [
            *id,
            attrs.0,
            user.0,
            value.data_type().code(),
            bytes.len() as u32,
            offset as u32,
            0,
        ] {
            records.extend_from_slice(&field.to_le_bytes());
        }
        data.extend_from_slice(&bytes);
        while data.len() % 4 != 0 {
            data.push(0);
        }
    }
    records.extend_from_slice(&data);
    records
}

impl MsAdminBaseW for MsAdminBase {
    fn delete_child_keys(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            let snapshot = self.base.files.metabase().snapshot();
            let key = snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
            let children: Vec<MbPath> = key
                .children()
                .filter_map(|c| path.join(c.name()).ok())
                .collect();
            self.base
                .files
                .metabase()
                .write(|t| children.iter().try_for_each(|c| t.delete_key(c)))
                .map_err(|e| hresult(&e))
        });
        Ok((That::default(), status(result)))
    }

    fn copy_key(
        &self,
        call: &Call,
        _this: This,
        source_handle: u32,
        source_path: Unique<WString>,
        dest_handle: u32,
        dest_path: Unique<WString>,
        overwrite: u32,
        copy: u32,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = (|| {
            // Moving takes the source away: it needs a write handle too.
            let source = if copy != 0 {
                self.base.resolve(&object, source_handle, &source_path)?.0
            } else {
                self.base.writable(&object, source_handle, &source_path)?
            };
            let dest = self.base.writable(&object, dest_handle, &dest_path)?;
            self.base
                .files
                .metabase()
                .write(|t| t.copy_key(&source, &dest, overwrite != 0, copy != 0))
                .map_err(|e| hresult(&e))
        })();
        Ok((That::default(), status(result)))
    }

    fn rename_key(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        new_name: Unique<WString>,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            let name = new_name.get().map(|n| n.0.clone()).ok_or(E_INVALIDARG)?;
            self.base
                .files
                .metabase()
                .write(|t| t.rename_key(&path, &name))
                .map_err(|e| hresult(&e))
        });
        Ok((That::default(), status(result)))
    }

    fn get_all_data(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        attributes: u32,
        user_type: u32,
        data_type: u32,
        buffer_size: u32,
    ) -> CallResult<(That, u32, u32, u32, Unique<IisCryptoBlob>, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let secured = object.secure().session().is_some();
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                if data_type > 5 {
                    return Err(E_INVALIDARG);
                }
                let snapshot = self.base.files.metabase().snapshot();
                let inherit = attributes & Attributes::INHERIT.0 != 0;
                let entries = all_data(snapshot.tree(), &path, inherit)?;
                let set_number = data_set_number(&entries);
                let chosen: Vec<Entry> = entries
                    .into_iter()
                    .filter(|(_, v, _, u)| {
                        (user_type == 0 || u.0 == user_type)
                            && (data_type == 0 || v.data_type().code() == data_type)
                    })
                    // SECURE data goes only encrypted: without a secure
                    // session it is left out (a copy of the metabase over
                    // the wire reads every key: not worth a warning each
                    // time).
                    .filter(|(id, _, a, _)| {
                        let secure = a.contains(Attributes::SECURE);
                        if secure && !secured {
                            tracing::debug!(path = %path, id, "IMSAdminBaseW GetAllData: SECURE data left out");
                        }
                        !secure || secured
                    })
                    .collect();
                let has_secure = chosen.iter().any(|(_, _, a, _)| a.contains(Attributes::SECURE));
                Ok((chosen.len() as u32, set_number, getall_buffer(&chosen), has_secure))
            });
        Ok(match answer {
            Ok((count, set_number, buffer, has_secure)) => {
                let required = buffer.len() as u32;
                if buffer_size < required {
                    (
                        That::default(),
                        0,
                        set_number,
                        required,
                        Unique::new(None),
                        ERROR_INSUFFICIENT_BUFFER,
                    )
                } else {
                    // With SECURE values in it, the whole buffer travels
                    // encrypted.
                    let blob = match object.secure().session() {
                        Some(session) if has_secure => match session.encrypt(&buffer) {
                            Ok(blob) => blob,
                            Err(e) => {
                                tracing::error!("IMSAdminBaseW GetAllData: cannot encrypt: {e}");
                                return Ok((That::default(), 0, 0, 0, Unique::new(None), E_FAIL));
                            }
                        },
                        _ => IisCryptoBlob {
                            signature: CLEARTEXT_DATA_BLOB_SIGNATURE,
                            length: required,
                            data: buffer,
                        },
                    };
                    (
                        That::default(),
                        count,
                        set_number,
                        required,
                        Unique::new(Some(blob)),
                        S_OK,
                    )
                }
            }
            Err(hr) => (That::default(), 0, 0, 0, Unique::new(None), hr),
        })
    }

    fn delete_all_data(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        user_type: u32,
        data_type: u32,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            if data_type > 5 {
                return Err(E_INVALIDARG);
            }
            let snapshot = self.base.files.metabase().snapshot();
            let key = snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
            let ids: Vec<u32> = key
                .properties()
                .filter(|p| {
                    (user_type == 0 || p.user_type.0 == user_type)
                        && (data_type == 0 || p.value.data_type().code() == data_type)
                })
                .map(|p| p.id)
                .collect();
            self.base
                .files
                .metabase()
                .write(|t| ids.iter().try_for_each(|id| t.delete_data(&path, *id)))
                .map_err(|e| hresult(&e))
        });
        Ok((That::default(), status(result)))
    }

    fn get_data_paths(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        identifier: u32,
        data_type: u32,
        buffer_size: u32,
    ) -> CallResult<(That, ConformantArray<u16>, u32, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                // Paths are given relative to the handle's key.
                let base = if handle == MASTER_ROOT_HANDLE {
                    0
                } else {
                    self.base
                        .handles()
                        .open
                        .get(&handle)
                        .map(|h| h.path.depth())
                        .unwrap_or(0)
                };
                let snapshot = self.base.files.metabase().snapshot();
                let key = snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
                let mut units: Vec<u16> = Vec::new();
                // Depth first, each key before its children.
                let mut stack = vec![(path.clone(), key)];
                while let Some((at, key)) = stack.pop() {
                    let holds = key.properties().any(|p| {
                        p.id == identifier
                            && (data_type == 0 || p.value.data_type().code() == data_type)
                    });
                    if holds {
                        let relative = at.parts()[base.min(at.depth())..].join("/");
                        let text = if relative.is_empty() {
                            "/".to_string()
                        } else {
                            format!("/{relative}/")
                        };
                        units.extend(text.encode_utf16());
                        units.push(0);
                    }
                    let mut children: Vec<_> = key
                        .children()
                        .filter_map(|c| at.join(c.name()).ok().map(|p| (p, c)))
                        .collect();
                    children.reverse();
                    stack.extend(children);
                }
                units.push(0);
                Ok(units)
            });
        let mut buffer = vec![0u16; buffer_size as usize];
        Ok(match answer {
            Ok(units) if units.len() <= buffer.len() => {
                buffer[..units.len()].copy_from_slice(&units);
                (
                    That::default(),
                    ConformantArray(buffer),
                    units.len() as u32,
                    S_OK,
                )
            }
            Ok(units) => (
                That::default(),
                ConformantArray(buffer),
                units.len() as u32,
                ERROR_INSUFFICIENT_BUFFER,
            ),
            Err(hr) => (That::default(), ConformantArray(buffer), 0, hr),
        })
    }

    fn change_permissions(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        timeout_ms: u32,
        access: u32,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let permissions = access & (METADATA_PERMISSION_READ | METADATA_PERMISSION_WRITE);
        let path = match self.base.handles().open.get(&handle) {
            Some(h) if h.owner == object.id && permissions != 0 => h.path.clone(),
            Some(h) if h.owner == object.id => return Ok((That::default(), E_INVALIDARG)),
            _ => return Ok((That::default(), ERROR_INVALID_HANDLE)),
        };
        // Every other handle on the branch conflicts with a write handle,
        // and a write handle with this one, as OpenKey decides; a conflict
        // is waited for up to dwMDTimeOut (off the endpoint's thread).
        let busy = |handles: &Handles| conflicts(handles, &path, permissions, Some(handle));
        let wait = Duration::from_millis(u64::from(timeout_ms)).min(MAX_OPEN_WAIT);
        if !wait.is_zero() && busy(&self.base.handles()) {
            tracing::info!(path = %path, ?wait, "IMSAdminBaseW ChangePermissions: the path is busy; waiting for it");
        }
        let (mut handles, timed_out) = self
            .base
            .handles_freed
            .wait_timeout_while(self.base.handles(), wait, |h| {
                h.open.contains_key(&handle) && busy(h)
            })
            .unwrap_or_else(|e| e.into_inner());
        let still_busy = timed_out.timed_out() && busy(&handles);
        let result = match handles.open.get_mut(&handle) {
            // Closed meanwhile (by another call of the same client).
            None => Err(ERROR_INVALID_HANDLE),
            Some(_) if still_busy => Err(ERROR_PATH_BUSY),
            Some(h) => {
                h.permissions = permissions;
                // A write handle made a read one frees its branch.
                self.base.handles_freed.notify_all();
                Ok(())
            }
        };
        Ok((That::default(), status(result)))
    }

    fn get_data_set_number(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(That, u32, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                let snapshot = self.base.files.metabase().snapshot();
                // The deepest key on the way that exists.
                let mut at = path;
                while !at.is_root() && snapshot.tree().find(&at).is_none() {
                    at = MbPath::from_parts(at.parts()[..at.depth() - 1].iter().cloned())
                        .map_err(|_| E_INVALIDARG)?;
                }
                if at.is_root() {
                    return Ok(1);
                }
                Ok(data_set_number(&all_data(snapshot.tree(), &at, true)?))
            });
        Ok(match answer {
            Ok(n) => (That::default(), n, S_OK),
            Err(hr) => (That::default(), 0, hr),
        })
    }

    fn add_key(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            self.base
                .files
                .metabase()
                .write(|t| t.add_untyped_key(&path))
                .map_err(|e| hresult(&e))
        });
        Ok((That::default(), status(result)))
    }

    fn delete_key(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            self.base
                .files
                .metabase()
                .write(|t| t.delete_key(&path))
                .map_err(|e| hresult(&e))
        });
        Ok((That::default(), status(result)))
    }

    fn enum_keys(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        index: u32,
    ) -> CallResult<(That, ConformantArray<u16>, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let mut name = vec![0u16; MAX_NAME_LEN];
        let result = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                let snapshot = self.base.files.metabase().snapshot();
                let key = snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
                let child = key
                    .children()
                    .nth(index as usize)
                    .ok_or(ERROR_NO_MORE_ITEMS)?;
                let units: Vec<u16> = child.name().encode_utf16().collect();
                if units.len() >= MAX_NAME_LEN {
                    return Err(ERROR_INSUFFICIENT_BUFFER);
                }
                name[..units.len()].copy_from_slice(&units);
                Ok(())
            });
        Ok((That::default(), ConformantArray(name), status(result)))
    }

    fn set_data(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        record: MetadataRecord,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            let property = incoming_property(&record, &path, object.secure().session())?;
            self.base
                .files
                .metabase()
                .write(|t| t.set_property(&path, property))
                .map_err(|e| {
                    tracing::info!(path = %path, id = record.identifier, "IMSAdminBaseW SetData refused: {e}");
                    hresult(&e)
                })
        });
        Ok((That::default(), status(result)))
    }

    fn get_data(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        record: MetadataRecord,
    ) -> CallResult<DataReply> {
        let object = self.base.this(call, &self.exporter)?;
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                let snapshot = self.base.files.metabase().snapshot();
                let inherit = record.attributes & Attributes::INHERIT.0 != 0;
                let mode = match (inherit, record.attributes & Attributes::PARTIAL_PATH.0 != 0) {
                    (true, true) => GetMode::PartialPath,
                    (true, false) => GetMode::Inherited,
                    _ => GetMode::Own,
                };
                let resolved = snapshot
                    .tree()
                    .get(&path, record.identifier, mode)
                    .map_err(|e| hresult(&e))?;
                if record.data_type != 0 && record.data_type != resolved.value.data_type().code() {
                    return Err(MD_ERROR_DATA_NOT_FOUND);
                }
                refuse_secure(
                    resolved.attributes,
                    &path,
                    resolved.id,
                    object.secure().session(),
                )?;
                Ok((
                    resolved.id,
                    resolved.value,
                    resolved.attributes,
                    resolved.user_type,
                ))
            });
        let secure = object.secure();
        let reply = data_answer(record, answer, secure.session());
        Ok(reply)
    }

    fn delete_data(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        identifier: u32,
        _data_type: u32,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            self.base
                .files
                .metabase()
                .write(|t| t.delete_data(&path, identifier))
                .map_err(|e| hresult(&e))
        });
        Ok((That::default(), status(result)))
    }

    fn enum_data(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        record: MetadataRecord,
        index: u32,
    ) -> CallResult<DataReply> {
        let object = self.base.this(call, &self.exporter)?;
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                let snapshot = self.base.files.metabase().snapshot();
                let key = snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
                let property = key
                    .properties()
                    .filter(|p| {
                        record.data_type == 0 || p.value.data_type().code() == record.data_type
                    })
                    .nth(index as usize)
                    .ok_or(ERROR_NO_MORE_ITEMS)?;
                refuse_secure(
                    property.attributes,
                    &path,
                    property.id,
                    object.secure().session(),
                )?;
                Ok((
                    property.id,
                    property.value.clone(),
                    property.attributes,
                    property.user_type,
                ))
            });
        let secure = object.secure();
        let reply = data_answer(record, answer, secure.session());
        Ok(reply)
    }

    fn open_key(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        access: u32,
        timeout_ms: u32,
    ) -> CallResult<(That, u32, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let permissions = access & (METADATA_PERMISSION_READ | METADATA_PERMISSION_WRITE);
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                if permissions == 0 {
                    return Err(E_INVALIDARG);
                }
                let snapshot = self.base.files.metabase().snapshot();
                let path = snapshot
                    .tree()
                    .canonical(&path)
                    .ok_or(ERROR_PATH_NOT_FOUND)?;
                // A write handle excludes every other handle on the same
                // branch; read handles share ([MS-IMSA] 3.1.4.2). A busy
                // path is waited for up to dwMDTimeOut (at most
                // MAX_OPEN_WAIT; the call runs off the endpoint's thread).
                let busy = |handles: &Handles| conflicts(handles, &path, permissions, None);
                let wait = Duration::from_millis(u64::from(timeout_ms)).min(MAX_OPEN_WAIT);
                if !wait.is_zero() && busy(&self.base.handles()) {
                    tracing::info!(path = %path, ?wait, "IMSAdminBaseW OpenKey: the path is busy; waiting for it");
                }
                let (mut handles, timed_out) = self
                    .base
                    .handles_freed
                    .wait_timeout_while(self.base.handles(), wait, |h| busy(h))
                    .unwrap_or_else(|e| e.into_inner());
                if timed_out.timed_out() && busy(&handles) {
                    return Err(ERROR_PATH_BUSY);
                }
                let id = self.base.next_handle.fetch_add(1, Ordering::Relaxed).max(1);
                handles.open.insert(
                    id,
                    Handle {
                        path,
                        permissions,
                        owner: object.id,
                    },
                );
                Ok(id)
            });
        Ok(match answer {
            Ok(id) => (That::default(), id, S_OK),
            Err(hr) => (That::default(), 0, hr),
        })
    }

    fn close_key(&self, call: &Call, _this: This, handle: u32) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let mut handles = self.base.handles();
        let removed = match handles.open.get(&handle) {
            Some(h) if h.owner == object.id => handles.open.remove(&handle).is_some(),
            _ => false,
        };
        if removed {
            self.base.handles_freed.notify_all();
        }
        Ok((
            That::default(),
            if removed { S_OK } else { ERROR_INVALID_HANDLE },
        ))
    }

    fn save_data(&self, call: &Call, _this: This) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let result = self.base.files.save().map_err(|e| {
            tracing::error!("IMSAdminBaseW SaveData failed: {e}");
            hresult(&e)
        });
        Ok((That::default(), status(result)))
    }

    fn get_handle_info(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
    ) -> CallResult<(That, HandleInfo, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let change = self.base.files.metabase().snapshot().change_number() as u32;
        let permissions = if handle == MASTER_ROOT_HANDLE {
            Some(METADATA_PERMISSION_READ)
        } else {
            self.base
                .handles()
                .open
                .get(&handle)
                .filter(|h| h.owner == object.id)
                .map(|h| h.permissions)
        };
        Ok(match permissions {
            Some(permissions) => (
                That::default(),
                HandleInfo {
                    permissions,
                    system_change_number: change,
                },
                S_OK,
            ),
            None => (That::default(), HandleInfo::default(), ERROR_INVALID_HANDLE),
        })
    }

    fn get_system_change_number(&self, call: &Call, _this: This) -> CallResult<(That, u32, u32)> {
        self.base.this(call, &self.exporter)?;
        let change = self.base.files.metabase().snapshot().change_number() as u32;
        Ok((That::default(), change, S_OK))
    }

    fn set_last_change_time(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        time: FileTime,
        _local_time: u32,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = self.base.writable(&object, handle, &path).and_then(|path| {
            let snapshot = self.base.files.metabase().snapshot();
            snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
            // Times are kept in UTC; the service's clock is UTC. Earlier
            // changes are recorded first, so theirs do not overwrite it.
            self.base
                .changed
                .up_to(snapshot.change_number())
                .times
                .insert(path.to_string().to_lowercase(), time);
            Ok(())
        });
        Ok((That::default(), status(result)))
    }

    fn get_last_change_time(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        _local_time: u32,
    ) -> CallResult<(That, FileTime, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                let snapshot = self.base.files.metabase().snapshot();
                snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
                Ok(self
                    .base
                    .changed
                    .up_to(snapshot.change_number())
                    .times
                    .get(&path.to_string().to_lowercase())
                    .copied()
                    .unwrap_or(self.base.started))
            });
        Ok(match answer {
            Ok(t) => (That::default(), t, S_OK),
            Err(hr) => (That::default(), FileTime::default(), hr),
        })
    }

    fn backup(
        &self,
        call: &Call,
        _this: This,
        name: Unique<WString>,
        version: u32,
        flags: u32,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let hr = self.base.backup(&name, version, flags, None);
        Ok((That::default(), hr))
    }

    fn restore(
        &self,
        call: &Call,
        _this: This,
        name: Unique<WString>,
        version: u32,
        _flags: u32,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let hr = self.base.restore(&name, version, None);
        Ok((That::default(), hr))
    }

    fn enum_backups(
        &self,
        call: &Call,
        _this: This,
        name: ConformantArray<u16>,
        index: u32,
    ) -> CallResult<(That, ConformantArray<u16>, u32, FileTime, u32)> {
        self.base.this(call, &self.exporter)?;
        let asked = wide_text(&name.0);
        let filter = (!asked.is_empty()).then_some(asked.as_str());
        let answer = self
            .base
            .files
            .list_backups(filter)
            .map_err(|e| hresult(&e))
            .and_then(|list| {
                list.into_iter()
                    .nth(index as usize)
                    .ok_or(ERROR_NO_MORE_ITEMS)
            });
        Ok(match answer {
            Ok(b) => (
                That::default(),
                ConformantArray(wide_buffer(&b.name, name.0.len().max(MAX_BACKUP_LEN))),
                b.version,
                FileTime::from_system(b.modified),
                S_OK,
            ),
            Err(hr) => (That::default(), name, 0, FileTime::default(), hr),
        })
    }

    fn delete_backup(
        &self,
        call: &Call,
        _this: This,
        name: Unique<WString>,
        version: u32,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let name = name.get().map(|n| n.0.as_str()).unwrap_or("");
        let result = metabase::BackupVersion::from_code(version)
            .and_then(|v| self.base.files.delete_backup(name, v))
            .map(drop)
            .map_err(|e| hresult(&e));
        if result.is_ok() {
            tracing::info!(backup = name, version, "IMSAdminBaseW: backup deleted");
        }
        Ok((That::default(), status(result)))
    }

    fn copy_data(
        &self,
        call: &Call,
        _this: This,
        source_handle: u32,
        source_path: Unique<WString>,
        dest_handle: u32,
        dest_path: Unique<WString>,
        attributes: u32,
        user_type: u32,
        data_type: u32,
        copy: u32,
    ) -> CallResult<(That, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let result = (|| {
            if data_type > 5 {
                return Err(E_INVALIDARG);
            }
            let source = if copy != 0 {
                self.base.resolve(&object, source_handle, &source_path)?.0
            } else {
                self.base.writable(&object, source_handle, &source_path)?
            };
            let dest = self.base.writable(&object, dest_handle, &dest_path)?;
            let snapshot = self.base.files.metabase().snapshot();
            if snapshot.tree().find(&dest).is_none() {
                return Err(ERROR_PATH_NOT_FOUND);
            }
            let inherit = attributes & Attributes::INHERIT.0 != 0;
            let chosen: Vec<Entry> = all_data(snapshot.tree(), &source, inherit)?
                .into_iter()
                .filter(|(_, v, _, u)| {
                    (user_type == 0 || u.0 == user_type)
                        && (data_type == 0 || v.data_type().code() == data_type)
                })
                .collect();
            self.base
                .files
                .metabase()
                .write(|t| {
                    for (id, value, attrs, user) in &chosen {
                        let inherited = attrs.0 & METADATA_ISINHERITED != 0;
                        t.set_property(
                            &dest,
                            Property {
                                id: *id,
                                value: value.clone(),
                                attributes: Attributes(attrs.0 & !METADATA_ISINHERITED),
                                user_type: *user,
                                custom_name: None,
                            },
                        )?;
                        // Moving takes the data away from where it is set.
                        if copy == 0 && !inherited {
                            t.delete_data(&source, *id)?;
                        }
                    }
                    Ok(())
                })
                .map_err(|e| hresult(&e))
        })();
        Ok((That::default(), status(result)))
    }

    fn unmarshal_interface(
        &self,
        call: &Call,
        _this: This,
    ) -> CallResult<(That, Unique<dcom::types::MInterfacePointer>, u32)> {
        self.base.this(call, &self.exporter)?;
        let pointer = self
            .exporter
            .oid_of_call(call)
            .ok_or(dcom::ids::RPC_E_INVALID_IPID)
            .and_then(|oid| self.exporter.marshal(call, oid, IID_IMSADMIN_BASE_W));
        Ok(match pointer {
            Ok(p) => (That::default(), Unique::new(Some(p)), S_OK),
            Err(hr) => (That::default(), Unique::new(None), hr),
        })
    }

    fn key_exchange_phase1(
        &self,
        call: &Call,
        _this: This,
        client_exchange_key: Unique<IisCryptoBlob>,
        client_signature_key: Unique<IisCryptoBlob>,
    ) -> CallResult<KeyExchange1Reply> {
        let object = self.base.this(call, &self.exporter)?;
        let refuse = |hr| {
            Ok((
                That::default(),
                Unique::new(None),
                Unique::new(None),
                Unique::new(None),
                hr,
            ))
        };
        let (Some(exchange), Some(signature)) =
            (client_exchange_key.get(), client_signature_key.get())
        else {
            return refuse(E_INVALIDARG);
        };
        let mut secure = object.secure();
        if secure.session().is_some() {
            // 3.1.4.25: a negotiated session is not negotiated again.
            return refuse(E_INVALIDARG);
        }
        let keys = match self.base.secure_keys() {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!("IMSAdminBaseW: cannot make the secure-data keys: {e}");
                return refuse(E_FAIL);
            }
        };
        match secure.phase1(&keys, exchange, signature) {
            Ok((exchange, signature, session)) => Ok((
                That::default(),
                Unique::new(Some(exchange)),
                Unique::new(Some(signature)),
                Unique::new(Some(session)),
                S_OK,
            )),
            Err(e) => {
                tracing::warn!(client = ?call.client, "IMSAdminBaseW R_KeyExchangePhase1 refused: {e}");
                refuse(E_INVALIDARG)
            }
        }
    }

    fn key_exchange_phase2(
        &self,
        call: &Call,
        _this: This,
        client_session_key: Unique<IisCryptoBlob>,
        client_hash: Unique<IisCryptoBlob>,
    ) -> CallResult<(That, Unique<IisCryptoBlob>, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let refuse = |hr| Ok((That::default(), Unique::new(None), hr));
        let mut secure = object.secure();
        if !matches!(*secure, ServerExchange::Offered { .. }) {
            return refuse(MD_ERROR_SECURE_CHANNEL_FAILURE);
        }
        let (Some(session), Some(hash)) = (client_session_key.get(), client_hash.get()) else {
            return refuse(E_INVALIDARG);
        };
        let keys = match self.base.secure_keys() {
            Ok(keys) => keys,
            Err(_) => return refuse(E_FAIL),
        };
        match secure.phase2(&keys, session, hash) {
            Ok(answer) => {
                tracing::info!(client = ?call.client, "IMSAdminBaseW: a secure session is negotiated");
                Ok((That::default(), Unique::new(Some(answer)), S_OK))
            }
            Err(e) => {
                tracing::warn!(client = ?call.client, "IMSAdminBaseW R_KeyExchangePhase2 refused: {e}");
                refuse(MD_ERROR_SECURE_CHANNEL_FAILURE)
            }
        }
    }

    fn get_server_guid(&self, call: &Call, _this: This) -> CallResult<(That, Uuid, u32)> {
        self.base.this(call, &self.exporter)?;
        Ok((That::default(), self.base.server_guid, S_OK))
    }
}

/// MD_BACKUP_MAX_LEN (2.2.12): the name buffers of EnumBackups and
/// EnumHistory, in WCHARs.
pub const MAX_BACKUP_LEN: usize = 100;
const MD_BACKUP_OVERWRITE: u32 = 1;
const MD_BACKUP_SAVE_FIRST: u32 = 2;
const MD_BACKUP_FORCE_BACKUP: u32 = 4;
/// MD_WARNING_SAVE_FAILED: backed up, though the save before it failed.
const MD_WARNING_SAVE_FAILED: u32 = 0x000c_c809;
pub const ERROR_FILE_NOT_FOUND: u32 = 0x8007_0002;

/// The text of a WCHAR buffer, up to its first NUL.
fn wide_text(units: &[u16]) -> String {
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

/// `text` NUL-terminated in a buffer of `len` WCHARs (cut to fit).
fn wide_buffer(text: &str, len: usize) -> Vec<u16> {
    let mut out: Vec<u16> = text.encode_utf16().take(len.saturating_sub(1)).collect();
    out.resize(len, 0);
    out
}

impl AdminBase {
    /// Backup and BackupWithPasswd (3.1.4.13, 3.3.4.1).
    fn backup(
        &self,
        name: &Unique<WString>,
        version: u32,
        flags: u32,
        password: Option<&str>,
    ) -> u32 {
        let name = match name.get().map(|n| n.0.as_str()) {
            Some("") | None => "SampleBackUp",
            Some(n) => n,
        };
        let mut warning = S_OK;
        if flags & MD_BACKUP_SAVE_FIRST != 0 {
            if let Err(e) = self.files.save() {
                if flags & MD_BACKUP_FORCE_BACKUP == 0 {
                    tracing::error!("IMSAdminBaseW Backup: the save before it failed: {e}");
                    return hresult(&e);
                }
                warning = MD_WARNING_SAVE_FAILED;
            }
        }
        let result = metabase::BackupVersion::from_code(version).and_then(|v| {
            self.files
                .backup(name, v, password, flags & MD_BACKUP_OVERWRITE != 0)
        });
        match result {
            Ok(info) => {
                tracing::info!(backup = %info.name, version = info.version, "IMSAdminBaseW: metabase backed up");
                warning
            }
            Err(e) => {
                tracing::info!(backup = name, "IMSAdminBaseW Backup refused: {e}");
                hresult(&e)
            }
        }
    }

    /// Restore and RestoreWithPasswd (3.1.4.29, 3.3.4.6).
    fn restore(&self, name: &Unique<WString>, version: u32, password: Option<&str>) -> u32 {
        let name = name.get().map(|n| n.0.as_str()).unwrap_or("");
        let result = metabase::BackupVersion::from_code(version)
            .and_then(|v| self.files.restore_backup(name, v, password));
        match result {
            Ok(info) => {
                tracing::info!(backup = %info.name, version = info.version, "IMSAdminBaseW: metabase restored");
                S_OK
            }
            Err(e) => {
                tracing::info!(backup = name, "IMSAdminBaseW Restore refused: {e}");
                hresult(&e)
            }
        }
    }
}

fn password_of(password: &Unique<WString>) -> Option<&str> {
    password
        .get()
        .map(|p| p.0.as_str())
        .filter(|p| !p.is_empty())
}

impl MsAdminBase2WAdds for MsAdminBase {
    fn backup_with_password(
        &self,
        call: &Call,
        _this: This,
        name: Unique<WString>,
        version: u32,
        flags: u32,
        password: Unique<WString>,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let hr = self
            .base
            .backup(&name, version, flags, password_of(&password));
        Ok((That::default(), hr))
    }

    fn restore_with_password(
        &self,
        call: &Call,
        _this: This,
        name: Unique<WString>,
        version: u32,
        _flags: u32,
        password: Unique<WString>,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let hr = self.base.restore(&name, version, password_of(&password));
        Ok((That::default(), hr))
    }

    fn export(
        &self,
        call: &Call,
        _this: This,
        password: Unique<WString>,
        file: Unique<WString>,
        source: Unique<WString>,
        flags: u32,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let result = (|| {
            let file = file.get().map(|f| f.0.clone()).ok_or(E_INVALIDARG)?;
            let source = source.get().map(|s| s.0.as_str()).unwrap_or("/");
            let source = MbPath::parse(source).map_err(|_| E_INVALIDARG)?;
            let file = std::path::Path::new(&file);
            if !file
                .parent()
                .is_some_and(|d| d.as_os_str().is_empty() || d.is_dir())
            {
                return Err(ERROR_PATH_NOT_FOUND);
            }
            let options = metabase::ExportOptions {
                inherited: flags & 1 != 0,
                node_only: flags & 2 != 0,
            };
            self.base
                .files
                .export(&source, file, password_of(&password), options)
                .map(|keys| tracing::info!(file = %file.display(), keys, "IMSAdminBaseW: exported"))
                .map_err(|e| hresult(&e))
        })();
        Ok((That::default(), status(result)))
    }

    fn import(
        &self,
        call: &Call,
        _this: This,
        password: Unique<WString>,
        file: Unique<WString>,
        source: Unique<WString>,
        dest: Unique<WString>,
        flags: u32,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        let result = (|| {
            let file = file.get().map(|f| f.0.clone()).ok_or(E_INVALIDARG)?;
            let file = std::path::Path::new(&file);
            if !file.is_file() {
                return Err(ERROR_FILE_NOT_FOUND);
            }
            let parse = |p: &Unique<WString>| {
                MbPath::parse(p.get().map(|s| s.0.as_str()).unwrap_or("/"))
                    .map_err(|_| E_INVALIDARG)
            };
            let (source, dest) = (parse(&source)?, parse(&dest)?);
            let options = metabase::ImportOptions {
                inherited: flags & 1 != 0,
                node_only: flags & 2 != 0,
                merge: flags & 4 != 0,
            };
            self.base
                .files
                .import(file, &source, &dest, password_of(&password), options)
                .map(|keys| tracing::info!(file = %file.display(), keys, "IMSAdminBaseW: imported"))
                .map_err(|e| hresult(&e))
        })();
        Ok((That::default(), status(result)))
    }

    fn restore_history(
        &self,
        call: &Call,
        _this: This,
        _location: Unique<WString>,
        major: u32,
        minor: u32,
        flags: u32,
    ) -> CallResult<(That, u32)> {
        self.base.this(call, &self.exporter)?;
        // MD_HISTORY_LATEST (1): the highest minor version of the major.
        let minor = (flags & 1 == 0).then_some(minor);
        let result = self
            .base
            .files
            .restore_history(major, minor)
            .map(|e| {
                tracing::info!(
                    major = e.major,
                    minor = e.minor,
                    "IMSAdminBaseW: history version restored"
                )
            })
            .map_err(|e| hresult(&e));
        Ok((That::default(), status(result)))
    }

    fn enum_history(
        &self,
        call: &Call,
        _this: This,
        location: ConformantArray<u16>,
        index: u32,
    ) -> CallResult<(That, ConformantArray<u16>, u32, u32, FileTime, u32)> {
        self.base.this(call, &self.exporter)?;
        let answer = self
            .base
            .files
            .history()
            .map_err(|e| hresult(&e))
            .and_then(|list| {
                list.into_iter()
                    .nth(index as usize)
                    .ok_or(ERROR_NO_MORE_ITEMS)
            });
        let history_dir = self.base.files.location().history.display().to_string();
        Ok(match answer {
            Ok(e) => (
                That::default(),
                ConformantArray(wide_buffer(
                    &history_dir,
                    location.0.len().max(MAX_BACKUP_LEN),
                )),
                e.major,
                e.minor,
                FileTime::from_system(e.modified),
                S_OK,
            ),
            Err(hr) => (That::default(), location, 0, 0, FileTime::default(), hr),
        })
    }
}

impl MsAdminBase3WAdds for MsAdminBase {
    fn get_child_paths(
        &self,
        call: &Call,
        _this: This,
        handle: u32,
        path: Unique<WString>,
        buffer_size: u32,
        _buffer: Unique<ConformantArray<u16>>,
        _required: Unique<u32>,
    ) -> CallResult<ChildPathsReply> {
        let object = self.base.this(call, &self.exporter)?;
        let answer = self
            .base
            .resolve(&object, handle, &path)
            .and_then(|(path, _)| {
                let snapshot = self.base.files.metabase().snapshot();
                let key = snapshot.tree().find(&path).ok_or(ERROR_PATH_NOT_FOUND)?;
                // Every key below, depth first, relative to the path asked.
                let mut units: Vec<u16> = Vec::new();
                let mut stack: Vec<(String, &metabase::Key)> =
                    key.children().map(|c| (c.name().to_string(), c)).collect();
                stack.reverse();
                while let Some((relative, key)) = stack.pop() {
                    units.extend(relative.encode_utf16());
                    units.push(0);
                    let mut children: Vec<_> = key
                        .children()
                        .map(|c| (format!("{relative}/{}", c.name()), c))
                        .collect();
                    children.reverse();
                    stack.extend(children);
                }
                units.push(0);
                Ok(units)
            });
        Ok(match answer {
            Ok(units) if units.len() <= buffer_size as usize => {
                let mut buffer = units.clone();
                buffer.resize(buffer_size as usize, 0);
                (
                    That::default(),
                    Unique::new(Some(ConformantArray(buffer))),
                    Unique::new(Some(units.len() as u32)),
                    S_OK,
                )
            }
            Ok(units) => (
                That::default(),
                Unique::new(Some(ConformantArray(vec![0; buffer_size as usize]))),
                Unique::new(Some(units.len() as u32)),
                ERROR_INSUFFICIENT_BUFFER,
            ),
            Err(hr) => (
                That::default(),
                Unique::new(Some(ConformantArray(vec![0; buffer_size as usize]))),
                Unique::new(Some(0)),
                hr,
            ),
        })
    }
}

/// Registers IMSAdminBaseW, IMSAdminBase2W and IMSAdminBase3W: the class
/// with the exporter, the interfaces with the server (at `level`, the
/// least the ORPC interfaces take). 2W and 3W are the base's methods and
/// what each adds, under their own IIDs.
pub fn serve(
    server: &msrpc::server::Server,
    exporter: &Arc<Exporter>,
    base: Arc<AdminBase>,
    level: u8,
) {
    exporter.register_class(CLSID_MSADMIN_BASE_W, Arc::new(AdminBaseClass(base.clone())));
    let part = || MsAdminBase {
        base: base.clone(),
        exporter: exporter.clone(),
    };
    server.register(MsAdminBaseWServer(part()), level, false);
    server.register(
        crate::sink::ConnectionPointContainerServer(part()),
        level,
        false,
    );
    server.register(crate::sink::ConnectionPointServer(part()), level, false);
    server.register(crate::mbtree::MetabaseTreeServer(part()), level, false);
    let syntax = |iid| msrpc::pdu::SyntaxId::new(iid, 0, 0);
    server.register(
        msrpc::server::Extends::new(
            syntax(IID_IMSADMIN_BASE2_W),
            "MsAdminBase2W",
            vec![
                Box::new(MsAdminBaseWServer(part())),
                Box::new(MsAdminBase2WAddsServer(part())),
            ],
        ),
        level,
        false,
    );
    server.register(
        msrpc::server::Extends::new(
            syntax(IID_IMSADMIN_BASE3_W),
            "MsAdminBase3W",
            vec![
                Box::new(MsAdminBaseWServer(part())),
                Box::new(MsAdminBase2WAddsServer(part())),
                Box::new(MsAdminBase3WAddsServer(part())),
            ],
        ),
        level,
        false,
    );
}
