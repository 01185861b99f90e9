//! The Inetinfo interface ([MS-IRP]): IIS's native RPC interface for
//! version, capabilities and statistics — R_W3QueryStatistics2 reads the
//! counters the listener keeps as it answers requests (bytes, requests by
//! verb, not-found errors, anonymous and authenticated requests,
//! connections), for the whole service or one site; R_W3ClearStatistics2
//! zeroes them; R_InetInfoGet/SetAdminInformation and the global forms
//! read and write the Web service's configuration in the metabase (the
//! default Web site, instance 1, as IIS maps these instance-less calls).
//! Administrators only, at packet integrity or privacy (as the DCOM
//! classes). The FTP methods and IISEnumerateUsers/IISDisconnectUser are
//! not served: FTP is not a service of inetsrv.

use std::sync::Arc;

use listener::stats::{Statistics, W3Snapshot};
use metabase::{MbPath, MetabaseFiles};
use msrpc::ndr::{ConformantArray, Unique, WString};
use msrpc::server::{Call, CallResult};

use crate::Admins;

pub const ERROR_SUCCESS: u32 = 0;
pub use msrpc::status::ERROR_ACCESS_DENIED;
pub const ERROR_FILE_NOT_FOUND: u32 = 2;
pub const ERROR_NOT_SUPPORTED: u32 = 50;
pub const ERROR_INVALID_LEVEL: u32 = 0x7c;
pub const ERROR_SERVICE_NOT_ACTIVE: u32 = 0x426;
/// dwInstance: the service's own counters, or all sites together.
pub const INSTANCE_GLOBAL: u32 = 0;
pub const INSTANCE_ALL: u32 = 0xf000_0003;

/// The version R_InetInfoGetVersion reports: IIS 6.0 (major in the low
/// word).
pub const VERSION: u32 = 6;

/// W3_STATISTICS_1 (2.2.19).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct W3Statistics1 {
    pub total_bytes_sent: i64,
    pub total_bytes_received: i64,
    pub total_files_sent: u32,
    pub total_files_received: u32,
    pub current_anonymous_users: u32,
    pub current_non_anonymous_users: u32,
    pub total_anonymous_users: u32,
    pub total_non_anonymous_users: u32,
    pub max_anonymous_users: u32,
    pub max_non_anonymous_users: u32,
    pub current_connections: u32,
    pub max_connections: u32,
    pub connection_attempts: u32,
    pub logon_attempts: u32,
    pub total_options: u32,
    pub total_gets: u32,
    pub total_posts: u32,
    pub total_heads: u32,
    pub total_puts: u32,
    pub total_deletes: u32,
    pub total_traces: u32,
    pub total_move: u32,
    pub total_copy: u32,
    pub total_mkcol: u32,
    pub total_propfind: u32,
    pub total_proppatch: u32,
    pub total_search: u32,
    pub total_lock: u32,
    pub total_unlock: u32,
    pub total_others: u32,
    pub total_cgi_requests: u32,
    pub total_bgi_requests: u32,
    pub total_not_found_errors: u32,
    pub total_locked_errors: u32,
    pub current_cal_auth: u32,
    pub max_cal_auth: u32,
    pub total_failed_cal_auth: u32,
    pub current_cal_ssl: u32,
    pub max_cal_ssl: u32,
    pub total_failed_cal_ssl: u32,
    pub current_cgi_requests: u32,
    pub current_bgi_requests: u32,
    pub max_cgi_requests: u32,
    pub max_bgi_requests: u32,
    pub current_blocked_requests: u32,
    pub total_blocked_requests: u32,
    pub total_allowed_requests: u32,
    pub total_rejected_requests: u32,
    pub measured_bw: u32,
    pub service_uptime: u32,
    pub time_of_last_clear: u32,
    pub aux_counters: u32,
    pub counters: [u32; 20],
}

impl W3Statistics1 {
    /// The counters as W3_STATISTICS_1 carries them (32-bit counts wrap,
    /// as IIS's do).
    pub fn from_snapshot(s: &W3Snapshot) -> W3Statistics1 {
        let n = |v: u64| v as u32;
        let requests: u64 = s.verbs.iter().sum();
        W3Statistics1 {
            total_bytes_sent: s.bytes_sent as i64,
            total_bytes_received: s.bytes_received as i64,
            total_files_sent: n(s.files_sent),
            current_anonymous_users: n(s.current[0]),
            current_non_anonymous_users: n(s.current[1]),
            total_anonymous_users: n(s.anonymous),
            total_non_anonymous_users: n(s.authenticated),
            max_anonymous_users: n(s.max[0]),
            max_non_anonymous_users: n(s.max[1]),
            total_cgi_requests: n(s.cgi),
            total_bgi_requests: n(s.isapi),
            current_cgi_requests: n(s.current[3]),
            current_bgi_requests: n(s.current[2]),
            max_cgi_requests: n(s.max[3]),
            max_bgi_requests: n(s.max[2]),
            current_connections: n(s.current_connections),
            max_connections: n(s.max_connections),
            connection_attempts: n(s.connection_attempts),
            logon_attempts: n(s.authenticated),
            total_options: n(s.verbs[0]),
            total_gets: n(s.verbs[1]),
            total_posts: n(s.verbs[2]),
            total_heads: n(s.verbs[3]),
            total_puts: n(s.verbs[4]),
            total_deletes: n(s.verbs[5]),
            total_traces: n(s.verbs[6]),
            total_move: n(s.verbs[7]),
            total_copy: n(s.verbs[8]),
            total_mkcol: n(s.verbs[9]),
            total_propfind: n(s.verbs[10]),
            total_proppatch: n(s.verbs[11]),
            total_search: n(s.verbs[12]),
            total_lock: n(s.verbs[13]),
            total_unlock: n(s.verbs[14]),
            total_others: n(s.verbs[15]),
            total_not_found_errors: n(s.not_found),
            total_locked_errors: n(s.locked),
            total_allowed_requests: n(requests.saturating_sub(s.rejected)),
            total_rejected_requests: n(s.rejected),
            service_uptime: n(s.uptime),
            time_of_last_clear: n(s.cleared_at),
            ..W3Statistics1::default()
        }
    }
}

/// W3_STATISTICS_STRUCT (2.2.18): level 0's statistics, or nothing.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
#[ndr(switch_type = "u32")]
pub enum W3StatisticsStruct {
    #[ndr(case = 0)]
    Info1(Unique<W3Statistics1>),
    #[ndr(default)]
    Other(u32),
}

/// INETA_CACHE_STATISTICS (2.2.15): the listener's response cache is
/// IIS's URI cache; there is no file or blob cache (workers read files).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct CacheStatistics {
    pub files_cached: u32,
    pub total_files_cached: u32,
    pub file_hits: u32,
    pub file_misses: u32,
    pub file_flushes: u32,
    pub current_file_cache_size: u64,
    pub maximum_file_cache_size: u64,
    pub flushed_entries: u32,
    pub total_flushed: u32,
    pub uri_cached: u32,
    pub total_uri_cached: u32,
    pub uri_hits: u32,
    pub uri_misses: u32,
    pub uri_flushes: u32,
    pub total_uri_flushed: u32,
    pub blob_cached: u32,
    pub total_blob_cached: u32,
    pub blob_hits: u32,
    pub blob_misses: u32,
    pub blob_flushes: u32,
    pub total_blob_flushed: u32,
}

/// INETA_ATQ_STATISTICS (2.2.14).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AtqStatistics {
    pub total_blocked_requests: u32,
    pub total_rejected_requests: u32,
    pub total_allowed_requests: u32,
    pub current_blocked_requests: u32,
    pub measured_bandwidth: u32,
}

/// INET_INFO_STATISTICS_0 (2.2.13).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct InetInfoStatistics0 {
    pub cache: CacheStatistics,
    pub atq: AtqStatistics,
    pub aux_counters: u32,
    pub counters: [u32; 20],
}

/// INET_INFO_STATISTICS_INFO (2.2.12).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
#[ndr(switch_type = "u32")]
pub enum InetInfoStatisticsInfo {
    #[ndr(case = 0)]
    Stats0(Unique<InetInfoStatistics0>),
    #[ndr(default)]
    Other(u32),
}

/// INET_HTTP_SVC_ID (2.2.2): the Web service in a server mask.
pub const INET_HTTP_SVC_ID: u32 = 0x4;
pub const ERROR_INVALID_PARAMETER: u32 = 87;

/// INET_INFO_CONFIG_INFO's FieldControl bits (2.2.3) inetsrv serves.
pub mod fc {
    pub const CONNECTION_TIMEOUT: u32 = 0x0000_0001;
    pub const MAX_CONNECTIONS: u32 = 0x0000_0002;
    pub const LOG_CONFIG: u32 = 0x0000_0004;
    pub const SERVER_COMMENT: u32 = 0x0000_0010;
    pub const AUTHENTICATION: u32 = 0x0001_0000;
    pub const ANON_USER_NAME: u32 = 0x0010_0000;
    pub const ANON_PASSWORD: u32 = 0x0020_0000;
    pub const PORT_NUMBER: u32 = 0x0040_0000;
    pub const VIRTUAL_ROOTS: u32 = 0x0100_0000;
    /// INET_INFO_GLOBAL_CONFIG_INFO's (2.2.11).
    pub const GLOBAL_BANDWIDTH_LEVEL: u32 = 0x0000_0001;
}

/// INET_LOG_CONFIGURATION (2.2.4).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct LogConfiguration {
    pub log_type: u32,
    pub period: u32,
    pub directory: [u16; 260],
    pub truncate_size: u32,
    pub data_source: [u16; 260],
    pub table_name: [u16; 30],
    pub user_name: [u16; 257],
    pub password: [u16; 257],
}

/// INET_INFO_IP_SEC_ENTRY (2.2.6).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IpSecEntry {
    pub mask: u32,
    pub network: u32,
}

/// INET_INFO_IP_SEC_LIST (2.2.5).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct IpSecList {
    pub count: u32,
    #[ndr(size_is = "count")]
    pub entries: Vec<IpSecEntry>,
}

/// INET_INFO_VIRTUAL_ROOT_ENTRY (2.2.8).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct VirtualRootEntry {
    pub root: Unique<WString>,
    pub address: Unique<WString>,
    pub directory: Unique<WString>,
    pub mask: u32,
    pub account_name: Unique<WString>,
    pub account_password: [u16; 257],
    pub error: u32,
}

/// INET_INFO_VIRTUAL_ROOT_LIST (2.2.7).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct VirtualRootList {
    pub count: u32,
    #[ndr(size_is = "count")]
    pub entries: Vec<VirtualRootEntry>,
}

/// INET_INFO_CONFIG_INFO (2.2.3).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct ConfigInfo {
    pub field_control: u32,
    pub connection_timeout: u32,
    pub max_connections: u32,
    pub admin_name: Unique<WString>,
    pub admin_email: Unique<WString>,
    pub server_comment: Unique<WString>,
    pub log_config: Unique<LogConfiguration>,
    pub lang_id: u16,
    pub locale_id: u32,
    pub product_id: [u8; 64],
    pub log_anonymous: u32,
    pub log_non_anonymous: u32,
    pub anon_user_name: Unique<WString>,
    pub anon_password: [u16; 257],
    pub authentication: u32,
    pub port: i16,
    pub deny_ip_list: Unique<IpSecList>,
    pub grant_ip_list: Unique<IpSecList>,
    pub virtual_roots: Unique<VirtualRootList>,
}

/// INET_INFO_GLOBAL_CONFIG_INFO (2.2.11).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GlobalConfigInfo {
    pub field_control: u32,
    pub bandwidth_level: u32,
    pub memory_cache_size: u32,
}

/// A fixed WCHAR array holding `text` (cut to fit, NUL-terminated).
pub fn wchars<const N: usize>(text: &str) -> [u16; N] {
    let mut out = [0u16; N];
    for (slot, unit) in out.iter_mut().take(N - 1).zip(text.encode_utf16()) {
        *slot = unit;
    }
    out
}

/// The text of a fixed WCHAR array, up to its NUL.
pub fn from_wchars(units: &[u16]) -> String {
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

impl ConfigInfo {
    /// Nothing set: FieldControl 0.
    pub fn empty() -> ConfigInfo {
        ConfigInfo {
            field_control: 0,
            connection_timeout: 0,
            max_connections: 0,
            admin_name: Unique::new(None),
            admin_email: Unique::new(None),
            server_comment: Unique::new(None),
            log_config: Unique::new(None),
            lang_id: 0,
            locale_id: 0,
            product_id: [0; 64],
            log_anonymous: 0,
            log_non_anonymous: 0,
            anon_user_name: Unique::new(None),
            anon_password: [0; 257],
            authentication: 0,
            port: 0,
            deny_ip_list: Unique::new(None),
            grant_ip_list: Unique::new(None),
            virtual_roots: Unique::new(None),
        }
    }
}

impl LogConfiguration {
    pub fn new(
        log_type: u32,
        period: u32,
        directory: &str,
        truncate_size: u32,
    ) -> LogConfiguration {
        LogConfiguration {
            log_type,
            period,
            directory: wchars(directory),
            truncate_size,
            data_source: [0; 260],
            table_name: [0; 30],
            user_name: [0; 257],
            password: [0; 257],
        }
    }
}

/// INET_INFO_SITE_ENTRY (2.2.10).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct SiteEntry {
    pub comment: Unique<WString>,
    pub instance: u32,
}

/// INET_INFO_SITE_LIST (2.2.9).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct SiteList {
    pub count: u32,
    #[ndr(size_is = "count")]
    pub entries: Vec<SiteEntry>,
}

/// INET_INFO_CAP_FLAGS (2.2.17).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CapFlags {
    pub flag: u32,
    pub mask: u32,
}

/// INET_INFO_CAPABILITIES_STRUCT (2.2.16).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub cap_version: u32,
    pub product_type: u32,
    pub major_version: u32,
    pub minor_version: u32,
    pub build_number: u32,
    pub num_cap_flags: u32,
    pub cap_flags: Unique<ConformantArray<CapFlags>>,
}

#[msrpc::interface(uuid = "82ad4280-036b-11cf-972c-00aa006887b0", version = "2.0")]
pub trait Inetinfo {
    /// R_InetInfoGetVersion (3.1.5.1).
    #[opnum(0)]
    fn get_version(
        &self,
        call: &Call,
        server: Unique<WString>,
        reserved: u32,
    ) -> CallResult<(u32, u32)>;

    /// R_InetInfoGetAdminInformation (3.1.5.2): the Web service's
    /// configuration (the default Web site's values, inherited included).
    #[opnum(1)]
    fn get_admin_information(
        &self,
        call: &Call,
        server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<(Unique<ConfigInfo>, u32)>;

    /// R_InetInfoSetAdminInformation (3.1.5.4): the fields FieldControl
    /// names, set on the default Web site in one change.
    #[opnum(3)]
    fn set_admin_information(
        &self,
        call: &Call,
        server: Unique<WString>,
        server_mask: u32,
        config: ConfigInfo,
    ) -> CallResult<u32>;

    /// R_InetInfoGetGlobalAdminInformation (3.1.5.5).
    #[opnum(4)]
    fn get_global_admin_information(
        &self,
        call: &Call,
        server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<(Unique<GlobalConfigInfo>, u32)>;

    /// R_InetInfoSetGlobalAdminInformation (3.1.5.6).
    #[opnum(5)]
    fn set_global_admin_information(
        &self,
        call: &Call,
        server: Unique<WString>,
        server_mask: u32,
        config: GlobalConfigInfo,
    ) -> CallResult<u32>;

    /// R_InetInfoGetSites (3.1.5.3): the Web sites, by instance and
    /// comment.
    #[opnum(2)]
    fn get_sites(
        &self,
        call: &Call,
        server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<(Unique<SiteList>, u32)>;

    /// R_InetInfoQueryStatistics (3.1.5.7): the cache's and the request
    /// throttle's counters.
    #[opnum(6)]
    fn query_statistics(
        &self,
        call: &Call,
        server: Unique<WString>,
        level: u32,
        server_mask: u32,
    ) -> CallResult<(InetInfoStatisticsInfo, u32)>;

    /// R_InetInfoClearStatistics (3.1.5.8): the Web service's counters
    /// and every site's, zeroed.
    #[opnum(7)]
    fn clear_statistics(
        &self,
        call: &Call,
        server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<u32>;

    /// R_InetInfoFlushMemoryCache (3.1.5.9).
    #[opnum(8)]
    fn flush_memory_cache(
        &self,
        call: &Call,
        server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<u32>;

    /// R_InetInfoGetServerCapabilities (3.1.5.10).
    #[opnum(9)]
    fn get_server_capabilities(
        &self,
        call: &Call,
        server: Unique<WString>,
        reserved: u32,
    ) -> CallResult<(Unique<Capabilities>, u32)>;

    /// R_W3QueryStatistics2 (3.1.5.11).
    #[opnum(10)]
    fn w3_query_statistics2(
        &self,
        call: &Call,
        server: Unique<WString>,
        level: u32,
        instance: u32,
        reserved: u32,
    ) -> CallResult<(W3StatisticsStruct, u32)>;

    /// R_W3ClearStatistics2 (3.1.5.12).
    #[opnum(11)]
    fn w3_clear_statistics2(
        &self,
        call: &Call,
        server: Unique<WString>,
        instance: u32,
    ) -> CallResult<u32>;
}

/// Serves the interface over the listener's counters.
pub struct InetinfoService {
    pub stats: Arc<Statistics>,
    pub files: MetabaseFiles,
    pub admins: Arc<dyn Admins>,
    /// Empties the listener's response cache; how many entries went.
    pub flush_cache: Box<dyn Fn() -> usize + Send + Sync>,
    /// The listener's response cache's counters.
    pub cache_counters: Box<dyn Fn() -> listener::cache::CacheCounters + Send + Sync>,
}

impl InetinfoService {
    /// Which counters an instance names: the service's, or a site's that
    /// exists (else ERROR_FILE_NOT_FOUND).
    fn site(&self, instance: u32) -> Result<Option<u32>, u32> {
        match instance {
            INSTANCE_GLOBAL | INSTANCE_ALL => Ok(None),
            id => {
                let path =
                    MbPath::parse(&format!("/LM/W3SVC/{id}")).map_err(|_| ERROR_FILE_NOT_FOUND)?;
                let snapshot = self.files.metabase().snapshot();
                match snapshot.tree().find(&path) {
                    Some(key) if key.key_type() == "IIsWebServer" => Ok(Some(id)),
                    _ => Err(ERROR_FILE_NOT_FOUND),
                }
            }
        }
    }
}

/// The key the instance-less configuration calls read and write.
const DEFAULT_SITE: &str = "/LM/W3SVC/1";

fn key(text: &str) -> MbPath {
    MbPath::parse(text).unwrap_or_default()
}

impl InetinfoService {
    /// INET_INFO_CONFIG_INFO of the default Web site.
    fn admin_information(&self) -> ConfigInfo {
        use metabase::ids;
        let snapshot = self.files.metabase().snapshot();
        let tree = snapshot.tree();
        let site = key(DEFAULT_SITE);
        let dword = |id| tree.effective_dword(&site, id);
        let text = |path: &MbPath, id| {
            tree.effective(path, id)
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let mut info = ConfigInfo::empty();
        if let Some(v) = dword(ids::CONNECTION_TIMEOUT) {
            info.connection_timeout = v;
            info.field_control |= fc::CONNECTION_TIMEOUT;
        }
        if let Some(v) = dword(ids::MAX_CONNECTIONS) {
            info.max_connections = v;
            info.field_control |= fc::MAX_CONNECTIONS;
        }
        if let Some(v) = text(&site, ids::SERVER_COMMENT) {
            info.server_comment = Unique::new(Some(WString(v)));
            info.field_control |= fc::SERVER_COMMENT;
        }
        if let Some(v) = text(&site, ids::ANONYMOUS_USER_NAME) {
            info.anon_user_name = Unique::new(Some(WString(v)));
            info.field_control |= fc::ANON_USER_NAME;
        }
        // The password is not read back (as Windows answers: 2.2.3 <4>).
        if let Some(v) = dword(ids::AUTH_FLAGS) {
            info.authentication = v;
            info.field_control |= fc::AUTHENTICATION;
        }
        info.log_config = Unique::new(Some(LogConfiguration::new(
            dword(ids::LOG_TYPE).unwrap_or(0),
            dword(ids::LOG_FILE_PERIOD).unwrap_or(0),
            &text(&site, ids::LOG_FILE_DIRECTORY).unwrap_or_default(),
            dword(ids::LOG_FILE_TRUNCATE_SIZE).unwrap_or(0),
        )));
        info.field_control |= fc::LOG_CONFIG;
        // The first binding's port.
        let port = tree.effective(&site, ids::SERVER_BINDINGS).and_then(|v| {
            v.as_multi_sz()?
                .iter()
                .find_map(|b| b.split(':').nth(1)?.parse::<u16>().ok())
        });
        if let Some(port) = port {
            info.port = port as i16;
            info.field_control |= fc::PORT_NUMBER;
        }
        // The virtual directories: the root and every IIsWebVirtualDir
        // below it.
        let root = key(&format!("{DEFAULT_SITE}/ROOT"));
        let mut roots = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(at) = stack.pop() {
            let Some(k) = tree.find(&at) else { continue };
            if k.key_type() == "IIsWebVirtualDir" {
                let below = at.parts()[root.parts().len()..].join("/");
                roots.push(VirtualRootEntry {
                    root: Unique::new(Some(WString(format!("/{below}")))),
                    address: Unique::new(Some(WString(String::new()))),
                    directory: Unique::new(text(&at, ids::PATH).map(WString)),
                    mask: tree.effective_dword(&at, ids::ACCESS_FLAGS).unwrap_or(0),
                    account_name: Unique::new(text(&at, ids::UNC_USER_NAME).map(WString)),
                    account_password: [0; 257],
                    error: 0,
                });
            }
            for child in k.children() {
                if let Ok(p) = at.join(child.name()) {
                    stack.push(p);
                }
            }
        }
        roots.sort_by(|a, b| {
            a.root
                .get()
                .map(|r| r.0.clone())
                .cmp(&b.root.get().map(|r| r.0.clone()))
        });
        info.virtual_roots = Unique::new(Some(VirtualRootList {
            count: roots.len() as u32,
            entries: roots,
        }));
        info.field_control |= fc::VIRTUAL_ROOTS;
        info
    }

    /// R_InetInfoSetAdminInformation's work: the flagged fields, in one
    /// change, validated as every write.
    fn set_admin(&self, config: &ConfigInfo) -> Result<(), metabase::Error> {
        use metabase::{ids, Value};
        let site = key(DEFAULT_SITE);
        let flags = config.field_control;
        let has = |flag| flags & flag != 0;
        let text = |u: &Unique<WString>| u.get().map(|w| w.0.clone()).unwrap_or_default();
        self.files.metabase().write(|t| {
            if has(fc::CONNECTION_TIMEOUT) {
                t.set(
                    &site,
                    ids::CONNECTION_TIMEOUT,
                    Value::Dword(config.connection_timeout),
                )?;
            }
            if has(fc::MAX_CONNECTIONS) {
                t.set(
                    &site,
                    ids::MAX_CONNECTIONS,
                    Value::Dword(config.max_connections),
                )?;
            }
            if has(fc::SERVER_COMMENT) {
                t.set(
                    &site,
                    ids::SERVER_COMMENT,
                    Value::String(text(&config.server_comment)),
                )?;
            }
            if has(fc::ANON_USER_NAME) {
                t.set(
                    &site,
                    ids::ANONYMOUS_USER_NAME,
                    Value::String(text(&config.anon_user_name)),
                )?;
            }
            if has(fc::ANON_PASSWORD) {
                t.set(
                    &site,
                    ids::ANONYMOUS_USER_PASS,
                    Value::String(from_wchars(&config.anon_password)),
                )?;
            }
            if has(fc::AUTHENTICATION) {
                t.set(&site, ids::AUTH_FLAGS, Value::Dword(config.authentication))?;
            }
            if has(fc::LOG_CONFIG) {
                if let Some(log) = config.log_config.get() {
                    t.set(&site, ids::LOG_TYPE, Value::Dword(log.log_type))?;
                    t.set(&site, ids::LOG_FILE_PERIOD, Value::Dword(log.period))?;
                    t.set(
                        &site,
                        ids::LOG_FILE_TRUNCATE_SIZE,
                        Value::Dword(log.truncate_size),
                    )?;
                    let directory = from_wchars(&log.directory);
                    if !directory.is_empty() {
                        t.set(&site, ids::LOG_FILE_DIRECTORY, Value::ExpandSz(directory))?;
                    }
                }
            }
            Ok(())
        })
    }
}

impl Inetinfo for InetinfoService {
    fn get_admin_information(
        &self,
        call: &Call,
        _server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<(Unique<ConfigInfo>, u32)> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok((Unique::new(None), ERROR_ACCESS_DENIED));
        }
        if server_mask != INET_HTTP_SVC_ID {
            return Ok((Unique::new(None), ERROR_SERVICE_NOT_ACTIVE));
        }
        Ok((Unique::new(Some(self.admin_information())), ERROR_SUCCESS))
    }

    fn set_admin_information(
        &self,
        call: &Call,
        _server: Unique<WString>,
        server_mask: u32,
        config: ConfigInfo,
    ) -> CallResult<u32> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok(ERROR_ACCESS_DENIED);
        }
        if server_mask != INET_HTTP_SVC_ID {
            return Ok(ERROR_SERVICE_NOT_ACTIVE);
        }
        match self.set_admin(&config) {
            Ok(()) => {
                tracing::info!(client = ?call.client, fields = config.field_control, "Inetinfo: the Web service's configuration set");
                Ok(ERROR_SUCCESS)
            }
            Err(e) => {
                tracing::info!(client = ?call.client, "Inetinfo SetAdminInformation refused: {e}");
                Ok(match e {
                    metabase::Error::PathNotFound(_) => ERROR_FILE_NOT_FOUND,
                    _ => ERROR_INVALID_PARAMETER,
                })
            }
        }
    }

    fn get_global_admin_information(
        &self,
        call: &Call,
        _server: Unique<WString>,
        _server_mask: u32,
    ) -> CallResult<(Unique<GlobalConfigInfo>, u32)> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok((Unique::new(None), ERROR_ACCESS_DENIED));
        }
        let snapshot = self.files.metabase().snapshot();
        let bandwidth = snapshot
            .tree()
            .effective_dword(&key("/LM/W3SVC"), metabase::ids::MAX_BANDWIDTH);
        // cbMemoryCacheSize has no IIS 6 metabase property: not reported.
        let info = GlobalConfigInfo {
            field_control: if bandwidth.is_some() {
                fc::GLOBAL_BANDWIDTH_LEVEL
            } else {
                0
            },
            bandwidth_level: bandwidth.unwrap_or(u32::MAX),
            memory_cache_size: 0,
        };
        Ok((Unique::new(Some(info)), ERROR_SUCCESS))
    }

    fn set_global_admin_information(
        &self,
        call: &Call,
        _server: Unique<WString>,
        _server_mask: u32,
        config: GlobalConfigInfo,
    ) -> CallResult<u32> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok(ERROR_ACCESS_DENIED);
        }
        if config.field_control & fc::GLOBAL_BANDWIDTH_LEVEL == 0 {
            return Ok(ERROR_SUCCESS);
        }
        let result = self.files.metabase().write(|t| {
            t.set(
                &key("/LM/W3SVC"),
                metabase::ids::MAX_BANDWIDTH,
                metabase::Value::Dword(config.bandwidth_level),
            )
        });
        Ok(match result {
            Ok(()) => ERROR_SUCCESS,
            Err(e) => {
                tracing::info!(client = ?call.client, "Inetinfo SetGlobalAdminInformation refused: {e}");
                ERROR_INVALID_PARAMETER
            }
        })
    }

    fn get_version(
        &self,
        call: &Call,
        _server: Unique<WString>,
        _reserved: u32,
    ) -> CallResult<(u32, u32)> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok((0, ERROR_ACCESS_DENIED));
        }
        Ok((VERSION, ERROR_SUCCESS))
    }

    fn get_sites(
        &self,
        call: &Call,
        _server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<(Unique<SiteList>, u32)> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok((Unique::new(None), ERROR_ACCESS_DENIED));
        }
        let mut entries = Vec::new();
        // The Web service is the only one inetsrv runs.
        if server_mask & INET_HTTP_SVC_ID != 0 {
            let snapshot = self.files.metabase().snapshot();
            let w3svc = MbPath::parse("/LM/W3SVC").unwrap_or_default();
            if let Some(key) = snapshot.tree().find(&w3svc) {
                for site in key.children().filter(|k| k.key_type() == "IIsWebServer") {
                    let Ok(instance) = site.name().parse::<u32>() else {
                        continue;
                    };
                    let comment = w3svc
                        .join(site.name())
                        .ok()
                        .and_then(|p| snapshot.tree().effective(&p, metabase::ids::SERVER_COMMENT))
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    entries.push(SiteEntry {
                        comment: Unique::new(Some(WString(comment))),
                        instance,
                    });
                }
            }
            entries.sort_by_key(|e| e.instance);
        }
        Ok((
            Unique::new(Some(SiteList {
                count: entries.len() as u32,
                entries,
            })),
            ERROR_SUCCESS,
        ))
    }

    fn query_statistics(
        &self,
        call: &Call,
        _server: Unique<WString>,
        level: u32,
        _server_mask: u32,
    ) -> CallResult<(InetInfoStatisticsInfo, u32)> {
        let none = || {
            if level == 0 {
                InetInfoStatisticsInfo::Stats0(Unique::new(None))
            } else {
                InetInfoStatisticsInfo::Other(level)
            }
        };
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok((none(), ERROR_ACCESS_DENIED));
        }
        if level != 0 {
            return Ok((none(), ERROR_INVALID_LEVEL));
        }
        let c = (self.cache_counters)();
        let w3 = self.stats.snapshot(None);
        let n = |v: u64| v as u32;
        let requests: u64 = w3.verbs.iter().sum();
        let stats = InetInfoStatistics0 {
            cache: CacheStatistics {
                current_file_cache_size: c.bytes,
                maximum_file_cache_size: c.max_bytes,
                flushed_entries: n(c.flushed),
                total_flushed: n(c.flushed),
                uri_cached: n(c.entries),
                total_uri_cached: n(c.inserted),
                uri_hits: n(c.hits),
                uri_misses: n(c.misses),
                uri_flushes: n(c.flushes),
                total_uri_flushed: n(c.flushed),
                ..CacheStatistics::default()
            },
            atq: AtqStatistics {
                total_rejected_requests: n(w3.rejected),
                total_allowed_requests: n(requests.saturating_sub(w3.rejected)),
                ..AtqStatistics::default()
            },
            aux_counters: 0,
            counters: [0; 20],
        };
        Ok((
            InetInfoStatisticsInfo::Stats0(Unique::new(Some(stats))),
            ERROR_SUCCESS,
        ))
    }

    fn clear_statistics(
        &self,
        call: &Call,
        _server: Unique<WString>,
        server_mask: u32,
    ) -> CallResult<u32> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok(ERROR_ACCESS_DENIED);
        }
        if server_mask & INET_HTTP_SVC_ID != 0 {
            self.stats.clear(None);
            tracing::info!(user = ?call.client, "Inetinfo: all statistics cleared");
        }
        Ok(ERROR_SUCCESS)
    }

    fn flush_memory_cache(
        &self,
        call: &Call,
        _server: Unique<WString>,
        _server_mask: u32,
    ) -> CallResult<u32> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok(ERROR_ACCESS_DENIED);
        }
        let flushed = (self.flush_cache)();
        tracing::info!(user = ?call.client, flushed, "Inetinfo: the response cache was flushed");
        Ok(ERROR_SUCCESS)
    }

    fn get_server_capabilities(
        &self,
        call: &Call,
        _server: Unique<WString>,
        _reserved: u32,
    ) -> CallResult<(Unique<Capabilities>, u32)> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok((Unique::new(None), ERROR_ACCESS_DENIED));
        }
        // [MS-IRP] 2.2.17: file logging (0x2), virtual servers (0x4),
        // IP access checks (0x10), connection limits (0x20), multiple
        // instances (0x80), SSL (0x100), compression (0x1000), pooled
        // out-of-process applications (0x10000); the mask names every
        // flag the answer speaks for.
        let offered = 0x2 | 0x4 | 0x10 | 0x20 | 0x80 | 0x100 | 0x1000 | 0x1_0000;
        let flags = CapFlags {
            flag: offered,
            mask: 0x1_ffff,
        };
        Ok((
            Unique::new(Some(Capabilities {
                cap_version: 1,
                product_type: 2,
                major_version: 6,
                minor_version: 0,
                build_number: 3790,
                num_cap_flags: 1,
                cap_flags: Unique::new(Some(ConformantArray(vec![flags]))),
            })),
            ERROR_SUCCESS,
        ))
    }

    fn w3_query_statistics2(
        &self,
        call: &Call,
        _server: Unique<WString>,
        level: u32,
        instance: u32,
        _reserved: u32,
    ) -> CallResult<(W3StatisticsStruct, u32)> {
        // An answer without statistics still carries the union the level
        // asked for, with a null pointer.
        let none = || {
            if level == 0 {
                W3StatisticsStruct::Info1(Unique::new(None))
            } else {
                W3StatisticsStruct::Other(level)
            }
        };
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok((none(), ERROR_ACCESS_DENIED));
        }
        if level != 0 {
            return Ok((W3StatisticsStruct::Other(level), ERROR_INVALID_LEVEL));
        }
        Ok(match self.site(instance) {
            Ok(site) => (
                W3StatisticsStruct::Info1(Unique::new(Some(W3Statistics1::from_snapshot(
                    &self.stats.snapshot(site),
                )))),
                ERROR_SUCCESS,
            ),
            Err(status) => (none(), status),
        })
    }

    fn w3_clear_statistics2(
        &self,
        call: &Call,
        _server: Unique<WString>,
        instance: u32,
    ) -> CallResult<u32> {
        if !crate::admitted(call, &self.admins, "Inetinfo") {
            return Ok(ERROR_ACCESS_DENIED);
        }
        Ok(match self.site(instance) {
            Ok(site) => {
                self.stats.clear(site);
                tracing::info!(user = ?call.client, instance, "Inetinfo: W3 statistics cleared");
                ERROR_SUCCESS
            }
            Err(status) => status,
        })
    }
}
