//! The Inetinfo interface ([MS-IRP]): IIS's native RPC interface for
//! version, capabilities and statistics — R_W3QueryStatistics2 reads the
//! counters the listener keeps as it answers requests (bytes, requests by
//! verb, not-found errors, anonymous and authenticated requests,
//! connections), for the whole service or one site; R_W3ClearStatistics2
//! zeroes them. Administrators only, at packet integrity or privacy (as
//! the DCOM classes). The FTP methods and the configuration methods
//! (R_InetInfoGet/SetAdminInformation, GetSites) are not served: FTP is
//! not a service of inetsrv, and the configuration is IMSAdminBaseW's.

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
            total_anonymous_users: n(s.anonymous),
            total_non_anonymous_users: n(s.authenticated),
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

impl Inetinfo for InetinfoService {
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
