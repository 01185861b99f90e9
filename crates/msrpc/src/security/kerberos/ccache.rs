//! The MIT credential cache file (`FILE:` ccache, format versions 0x0503
//! and 0x0504, as `kinit` and `kvno` write it): where a client finds the
//! service ticket it logs on with. Only reading: the cache is the
//! user's, and this runtime never changes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use picky_krb::crypto::CipherSuite;
use picky_krb::data_types::Ticket;

use super::{Reader, SecurityError};

/// One ticket of the cache, with what the client needs to use it.
#[derive(Clone)]
pub struct CachedTicket {
    /// The client principal's components and realm.
    pub client: Vec<String>,
    pub client_realm: String,
    /// The service principal's components and realm.
    pub server: Vec<String>,
    pub server_realm: String,
    /// The session key's type and value.
    pub(super) key_type: u16,
    pub(super) key: Vec<u8>,
    pub end_time: SystemTime,
    /// The ticket as the KDC sent it (DER).
    pub(super) ticket: Vec<u8>,
}

impl CachedTicket {
    /// `host/web1.example.com@EXAMPLE.COM`
    pub fn server_principal(&self) -> String {
        super::principal_text(&self.server, &self.server_realm)
    }

    /// `alice@EXAMPLE.COM`
    pub fn client_principal(&self) -> String {
        super::principal_text(&self.client, &self.client_realm)
    }

    /// The session key's AES profile, if it has one.
    pub(super) fn cipher(&self) -> Option<CipherSuite> {
        super::aes_suite(self.key_type)
    }

    /// What an AP-REQ is made with: the ticket, decoded, and the session
    /// key's profile (AES only).
    pub(super) fn for_ap_req(&self) -> Result<(Ticket, CipherSuite), SecurityError> {
        let ticket =
            super::der::decode(&self.ticket, "a malformed ticket in the credential cache")?;
        let cipher = self.cipher().ok_or_else(|| {
            SecurityError::LogonFailure(format!(
                "the ticket for {} has no AES session key (RC4 and DES are not used)",
                self.server_principal()
            ))
        })?;
        Ok((ticket, cipher))
    }
}

impl std::fmt::Debug for CachedTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} for {} (etype {})",
            self.client_principal(),
            self.server_principal(),
            self.key_type
        )
    }
}

/// A credential cache, read.
#[derive(Clone, Debug)]
pub struct CredentialCache {
    pub path: PathBuf,
    /// The default principal (who ran `kinit`).
    pub principal: Vec<String>,
    pub realm: String,
    pub tickets: Vec<CachedTicket>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialCacheError {
    #[error("{path}: {error} (log on with `kinit` first)")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a credential cache: {why}")]
    Format { path: String, why: &'static str },
    #[error("the credential cache {0} is not a file (only FILE: caches are read; set KRB5CCNAME=FILE:/path)")]
    Unsupported(String),
}

/// What a credential cache adds to the reader (its data is big-endian
/// in 0x0503 and 0x0504).
impl Reader<'_> {
    /// A principal: name type, component count, realm, components.
    fn principal(&mut self) -> Option<(Vec<String>, String)> {
        self.u32()?; // name type
        let count = self.u32()?;
        // Each component takes at least its 4-byte length.
        if usize::try_from(count).ok()? > self.bytes.len() / 4 {
            return None;
        }
        let realm = self.data_text()?;
        let components = (0..count)
            .map(|_| self.data_text())
            .collect::<Option<Vec<_>>>()?;
        Some((components, realm))
    }
    /// Addresses or authorization data: a count of (type, data) pairs.
    fn skip_list(&mut self) -> Option<()> {
        let count = self.u32()?;
        for _ in 0..count {
            self.u16()?;
            self.data()?;
        }
        Some(())
    }
}

impl CredentialCache {
    /// Where the user's cache is: `$KRB5CCNAME` (a `FILE:` name or a
    /// path), else `/tmp/krb5cc_UID` as MIT's library has it.
    pub fn default_path() -> Result<PathBuf, CredentialCacheError> {
        match std::env::var("KRB5CCNAME") {
            Ok(name) if !name.is_empty() => Self::resolve(&name),
            _ => {
                use std::os::unix::fs::MetadataExt;
                let uid = std::fs::metadata("/proc/self")
                    .map(|m| m.uid())
                    .unwrap_or(0);
                Ok(PathBuf::from(format!("/tmp/krb5cc_{uid}")))
            }
        }
    }

    /// A cache name: `FILE:/path` or a plain path; other types (DIR:,
    /// KEYRING:, KCM:, MEMORY:) are refused by name.
    pub fn resolve(name: &str) -> Result<PathBuf, CredentialCacheError> {
        if let Some(path) = name.strip_prefix("FILE:") {
            return Ok(PathBuf::from(path));
        }
        match name.split_once(':') {
            Some((kind, _)) if !kind.contains('/') => {
                Err(CredentialCacheError::Unsupported(name.to_string()))
            }
            _ => Ok(PathBuf::from(name)),
        }
    }

    pub fn load(path: &Path) -> Result<CredentialCache, CredentialCacheError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| CredentialCacheError::Io {
            path: shown.clone(),
            error,
        })?;
        CredentialCache::parse(&bytes)
            .map(|mut cache| {
                cache.path = path.to_path_buf();
                cache
            })
            .map_err(|why| CredentialCacheError::Format { path: shown, why })
    }

    pub fn parse(bytes: &[u8]) -> Result<CredentialCache, &'static str> {
        let version = match bytes {
            [0x05, v @ (0x03 | 0x04), ..] => *v,
            [0x05, 0x01 | 0x02, ..] => return Err("format versions 1 and 2 are not read"),
            _ => return Err("it does not start with 0x0503 or 0x0504"),
        };
        let mut r = Reader {
            bytes: &bytes[2..],
            big_endian: true,
        };
        if version == 0x04 {
            let header_len = r.u16().ok_or("a truncated header")?;
            r.take(usize::from(header_len))
                .ok_or("a header longer than the file")?;
        }
        let (principal, realm) = r.principal().ok_or("a malformed default principal")?;
        let mut tickets = Vec::new();
        while !r.bytes.is_empty() {
            let ticket = Self::credential(&mut r, version).ok_or("a malformed credential")?;
            // Configuration entries (X-CACHECONF:) carry no ticket to use.
            if ticket.server_realm != "X-CACHECONF:" {
                tickets.push(ticket);
            }
        }
        Ok(CredentialCache {
            path: PathBuf::new(),
            principal,
            realm,
            tickets,
        })
    }

    fn credential(r: &mut Reader<'_>, version: u8) -> Option<CachedTicket> {
        let (client, client_realm) = r.principal()?;
        let (server, server_realm) = r.principal()?;
        let key_type = r.u16()?;
        if version == 0x03 {
            r.u16()?; // the key type again
        }
        let key = r.data()?.to_vec();
        let _auth_time = r.u32()?;
        let _start_time = r.u32()?;
        let end_time = r.u32()?;
        let _renew_till = r.u32()?;
        let _is_skey = r.u8()?;
        let _flags = r.u32()?;
        r.skip_list()?; // addresses
        r.skip_list()?; // authorization data
        let ticket = r.data()?.to_vec();
        r.data()?; // the second ticket (user-to-user)
        Some(CachedTicket {
            client,
            client_realm,
            server,
            server_realm,
            key_type,
            key,
            end_time: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(end_time)),
            ticket,
        })
    }

    /// `alice@EXAMPLE.COM`
    pub fn principal_name(&self) -> String {
        super::principal_text(&self.principal, &self.realm)
    }

    /// A ticket for a service: the cache's (see [`Self::ticket_for`]), or
    /// else one the KDC issues for the cache's TGT (the TGS exchange, as
    /// `kvno` does; the realm's KDC from krb5.conf). The cache is not
    /// written.
    pub fn service_ticket(
        &self,
        service: &[String],
        realm: Option<&str>,
    ) -> Result<CachedTicket, SecurityError> {
        let missing = match self.ticket_for(service, realm) {
            Ok(ticket) => return Ok(ticket.clone()),
            Err(SecurityError::LogonFailure(why)) => why,
            Err(other) => return Err(other),
        };
        let realm = realm.unwrap_or(&self.realm);
        let tgs = ["krbtgt".to_string(), realm.to_string()];
        let tgt = self.ticket_for(&tgs, Some(realm)).map_err(|_| {
            SecurityError::LogonFailure(format!(
                "{missing} and no TGT for {realm} to ask the KDC with (kinit)"
            ))
        })?;
        super::tgs::service_ticket(tgt, service, realm)
    }

    /// The default principal's ticket for a service (`host/NAME`, in the
    /// given realm or, with None, in any): the newest one that has not
    /// expired and has an AES session key.
    pub fn ticket_for(
        &self,
        service: &[String],
        realm: Option<&str>,
    ) -> Result<&CachedTicket, SecurityError> {
        let now = SystemTime::now();
        let matching: Vec<&CachedTicket> = self
            .tickets
            .iter()
            .filter(|t| {
                t.client == self.principal
                    && t.client_realm == self.realm
                    && t.server.len() == service.len()
                    && t.server
                        .iter()
                        .zip(service)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
                    && realm.is_none_or(|r| t.server_realm.eq_ignore_ascii_case(r))
            })
            .collect();
        let shown = format!(
            "{}@{}",
            service.join("/"),
            realm.unwrap_or(self.realm.as_str())
        );
        let fresh: Vec<&CachedTicket> = matching
            .iter()
            .copied()
            .filter(|t| t.end_time > now)
            .collect();
        if fresh.is_empty() {
            let why = if matching.is_empty() {
                "holds no ticket"
            } else {
                "holds only an expired ticket"
            };
            return Err(SecurityError::LogonFailure(format!(
                "the credential cache {} of {} {why} for {shown}; get one with `kvno {}`",
                self.path.display(),
                self.principal_name(),
                service.join("/"),
            )));
        }
        fresh
            .into_iter()
            .filter(|t| t.cipher().is_some())
            .max_by_key(|t| t.end_time)
            .ok_or_else(|| {
                SecurityError::LogonFailure(format!(
                    "the ticket for {shown} has no AES session key (RC4 and DES are not used)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0x0504 cache as `kinit` + `kvno` leave it: a header tag, the
    /// default principal, a config entry, the TGT and a service ticket.
    fn sample(expired_service: bool) -> Vec<u8> {
        fn data(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend((bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        fn principal(out: &mut Vec<u8>, realm: &str, components: &[&str]) {
            out.extend(1u32.to_be_bytes());
            out.extend((components.len() as u32).to_be_bytes());
            data(out, realm.as_bytes());
            for c in components {
                data(out, c.as_bytes());
            }
        }
        fn credential(out: &mut Vec<u8>, server_realm: &str, server: &[&str], end: u32) {
            principal(out, "EXAMPLE.TEST", &["alice"]);
            principal(out, server_realm, server);
            out.extend(18u16.to_be_bytes());
            data(out, &[7; 32]);
            for t in [1, 1, end, 0] {
                out.extend(u32::to_be_bytes(t));
            }
            out.push(0);
            out.extend(0u32.to_be_bytes());
            out.extend(0u32.to_be_bytes()); // addresses
            out.extend(1u32.to_be_bytes()); // one authdata element
            out.extend(1u16.to_be_bytes());
            data(out, b"ad");
            data(out, b"TICKET");
            data(out, b"");
        }
        let later = (SystemTime::now() + Duration::from_secs(3600))
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let mut out = vec![0x05, 0x04, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x08];
        out.extend([0; 8]);
        principal(&mut out, "EXAMPLE.TEST", &["alice"]);
        credential(
            &mut out,
            "X-CACHECONF:",
            &["krb5_ccache_conf_data", "pa_type"],
            0,
        );
        credential(&mut out, "EXAMPLE.TEST", &["krbtgt", "EXAMPLE.TEST"], later);
        let end = if expired_service { 2 } else { later };
        credential(
            &mut out,
            "EXAMPLE.TEST",
            &["host", "web1.example.test"],
            end,
        );
        out
    }

    #[test]
    fn a_v4_cache_is_read_and_the_service_ticket_found() {
        let cache = CredentialCache::parse(&sample(false)).unwrap();
        assert_eq!(cache.principal_name(), "alice@EXAMPLE.TEST");
        assert_eq!(cache.tickets.len(), 2, "the config entry is left out");
        let service = ["host".to_string(), "WEB1.example.test".to_string()];
        let ticket = cache.ticket_for(&service, None).unwrap();
        assert_eq!(
            ticket.server_principal(),
            "host/web1.example.test@EXAMPLE.TEST"
        );
        assert_eq!(ticket.ticket, b"TICKET");
        assert_eq!(ticket.key, vec![7; 32]);
        assert!(cache.ticket_for(&service, Some("OTHER.TEST")).is_err());
    }

    #[test]
    fn a_missing_or_expired_ticket_says_how_to_get_one() {
        let cache = CredentialCache::parse(&sample(true)).unwrap();
        let service = ["host".to_string(), "web1.example.test".to_string()];
        let err = cache.ticket_for(&service, None).unwrap_err().to_string();
        assert!(err.contains("only an expired ticket"), "{err}");
        assert!(err.contains("kvno host/web1.example.test"), "{err}");
        let other = ["http".to_string(), "web1".to_string()];
        let err = cache.ticket_for(&other, None).unwrap_err().to_string();
        assert!(
            err.contains("holds no ticket for http/web1@EXAMPLE.TEST"),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_foreign_caches_are_refused_without_panicking() {
        let whole = sample(false);
        for cut in 0..whole.len() {
            let _ = CredentialCache::parse(&whole[..cut]);
        }
        assert!(CredentialCache::parse(&whole[..whole.len() - 3]).is_err());
        assert!(CredentialCache::parse(b"\x05\x02rest").is_err());
        assert!(CredentialCache::parse(b"not a cache").is_err());
        // A component count far beyond the data is refused before allocating.
        let mut huge = vec![0x05, 0x03];
        huge.extend(1u32.to_be_bytes());
        huge.extend(u32::MAX.to_be_bytes());
        assert!(CredentialCache::parse(&huge).is_err());
    }

    #[test]
    fn cache_names_resolve_to_files_or_are_refused() {
        assert_eq!(
            CredentialCache::resolve("FILE:/tmp/x").unwrap(),
            PathBuf::from("/tmp/x")
        );
        assert_eq!(
            CredentialCache::resolve("/tmp/y").unwrap(),
            PathBuf::from("/tmp/y")
        );
        assert!(CredentialCache::resolve("KEYRING:persistent:0").is_err());
        assert!(CredentialCache::resolve("KCM:").is_err());
    }
}
