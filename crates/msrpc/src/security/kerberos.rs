//! Kerberos, the provider of auth type 16 (`RPC_C_AUTHN_GSS_KERBEROS`)
//! and SPNEGO's preferred mechanism, on the acceptor side: the server
//! proves who the caller is from a service ticket decrypted with a key of
//! its keytab, as a Windows server does with its machine account's keys.
//!
//! The messages (AP-REQ, AP-REP, tickets, authenticators) are
//! `picky-krb`'s ASN.1 types and its AES crypto profiles (RFC 3962,
//! aes128/aes256-cts-hmac-sha1-96); what is written here is the GSS-API
//! mechanism over them ([RFC 4121] with the DCE style of [MS-KILE]
//! 3.4.5.1): the three legs RPC uses (AP-REQ → AP-REP with an acceptor
//! subkey → the client's AP-REP echoing the server's sequence number),
//! and the per-message tokens: Wrap tokens with confidentiality, in
//! place, rotated by RRC + EC ([MS-KILE] 3.4.5.4.1), and MIC tokens
//! ([RFC 4121] 4.2.6.1), both optionally covering the PDU's header and
//! sec_trailer (header signing).
//!
//! RC4-HMAC and DES tickets are refused (`etype not supported`): the key
//! types a keytab has for AES only are used.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use picky_asn1::wrapper::{
    ExplicitContextTag0, ExplicitContextTag1, ExplicitContextTag2, ExplicitContextTag3,
    IntegerAsn1, OctetStringAsn1, Optional,
};
use picky_krb::constants::key_usages;
use picky_krb::crypto::aes::{checksum_sha_aes, AesSize};
use picky_krb::crypto::CipherSuite;
use picky_krb::data_types::{
    Authenticator, EncApRepPart, EncApRepPartInner, EncTicketPart, EncryptedData, EncryptionKey,
    KerberosTime, PrincipalName,
};
use picky_krb::messages::{ApRep, ApRepInner, ApReq};

use super::{Identity, SecurityError, SEC_TRAILER_LEN};

mod ccache;
mod der;
mod tgs;
pub use ccache::{CachedTicket, CredentialCache, CredentialCacheError};

/// The Kerberos V5 GSS-API mechanism, 1.2.840.113554.1.2.2, DER-encoded.
pub(super) const KRB5_OID_DER: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
];
/// The token IDs of [RFC 4121] 4.1 and 4.2.6.
const TOK_AP_REQ: [u8; 2] = [0x01, 0x00];
const TOK_AP_REP: [u8; 2] = [0x02, 0x00];
const TOK_MIC: [u8; 2] = [0x04, 0x04];
const TOK_WRAP: [u8; 2] = [0x05, 0x04];
/// Token flags ([RFC 4121] 4.2.2).
const SENT_BY_ACCEPTOR: u8 = 0x01;
const SEALED: u8 = 0x02;
const ACCEPTOR_SUBKEY: u8 = 0x04;
/// GSS flags in the authenticator checksum ([RFC 4121] 4.1.1.1, [MS-KILE]).
const GSS_C_MUTUAL_FLAG: u32 = 0x02;
const GSS_C_DCE_STYLE: u32 = 0x1000;
/// The authenticator checksum type carrying those flags.
const GSS_CHECKSUM_TYPE: u32 = 0x8003;
/// RRC and EC of the Wrap tokens this side sends ([MS-KILE] 3.4.5.4.1:
/// EC is one block, RRC 28 so that the data is encrypted in place).
const RRC: usize = 28;
const EC: usize = 16;
/// Header, then confounder, filler, encrypted header and HMAC.
const HEADER_LEN: usize = 16;
const HMAC_LEN: usize = 12;
/// The Wrap token this side sends, as the auth_value of a sealed PDU.
pub const WRAP_TOKEN_LEN: usize = HEADER_LEN + 16 + EC + HEADER_LEN + HMAC_LEN;
/// A MIC token, as the auth_value of a signed PDU.
pub const MIC_TOKEN_LEN: usize = HEADER_LEN + HMAC_LEN;
/// How far the client's clock may be from ours.
const MAX_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum KeytabError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a keytab: {why}")]
    Format { path: String, why: &'static str },
    #[error("{path}: holds no AES key (aes256-cts or aes128-cts); RC4 and DES keys are not used")]
    NoUsableKey { path: String },
}

/// One key of a keytab.
#[derive(Clone)]
pub struct KeytabEntry {
    /// The principal's components (`host`, `web1.example.com`).
    pub components: Vec<String>,
    pub realm: String,
    pub kvno: u32,
    pub enctype: u16,
    key: Vec<u8>,
}

/// A principal as written: `host/web1.example.com@EXAMPLE.COM`.
fn principal_text(components: &[String], realm: &str) -> String {
    format!("{}@{realm}", components.join("/"))
}

impl KeytabEntry {
    /// `host/web1.example.com@EXAMPLE.COM`
    pub fn principal(&self) -> String {
        principal_text(&self.components, &self.realm)
    }
}

impl std::fmt::Debug for KeytabEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kvno {} etype {}",
            self.principal(),
            self.kvno,
            self.enctype
        )
    }
}

/// The keys a server accepts tickets for: an MIT keytab file (format
/// version 0x502, as `ktutil`, `kadmin ktadd`, `ktpass` and `msktutil`
/// write it; 0x501 too).
#[derive(Clone, Debug, Default)]
pub struct Keytab {
    entries: Vec<KeytabEntry>,
}

/// The binary files of MIT Kerberos (keytabs, credential caches).
struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        let b: [u8; 2] = self.take(2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    fn u32(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    /// Octets after a 16-bit length (keytabs).
    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.counted()?.to_vec()).ok()
    }
    /// Octets after a 32-bit length (credential caches).
    fn data(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(usize::try_from(n).ok()?)
    }
    fn data_text(&mut self) -> Option<String> {
        String::from_utf8(self.data()?.to_vec()).ok()
    }
}

impl Keytab {
    /// Reads a keytab file, keeping its AES keys.
    pub fn load(path: &Path) -> Result<Keytab, KeytabError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| KeytabError::Io {
            path: shown.clone(),
            error,
        })?;
        let keytab = Keytab::parse(&bytes).map_err(|why| KeytabError::Format {
            path: shown.clone(),
            why,
        })?;
        if keytab.entries.is_empty() {
            return Err(KeytabError::NoUsableKey { path: shown });
        }
        Ok(keytab)
    }

    /// Parses a keytab; entries with key types other than AES are left out.
    pub fn parse(bytes: &[u8]) -> Result<Keytab, &'static str> {
        let version = match bytes {
            [0x05, v @ (0x01 | 0x02), ..] => *v,
            _ => return Err("it does not start with 0x0501 or 0x0502"),
        };
        let mut reader = Reader {
            bytes: &bytes[2..],
            big_endian: version == 0x02,
        };
        let mut entries = Vec::new();
        while !reader.bytes.is_empty() {
            let size = reader.u32().ok_or("a truncated entry length")? as i32;
            let length = size.unsigned_abs() as usize;
            let record = reader.take(length).ok_or("an entry longer than the file")?;
            if size <= 0 {
                continue; // a hole left by a deleted entry
            }
            let entry = Keytab::entry(record, version).ok_or("a malformed entry")?;
            if CipherSuite::try_from(usize::from(entry.enctype)).is_ok_and(|c| is_aes(&c)) {
                entries.push(entry);
            }
        }
        Ok(Keytab { entries })
    }

    fn entry(record: &[u8], version: u8) -> Option<KeytabEntry> {
        let mut r = Reader {
            bytes: record,
            big_endian: version == 0x02,
        };
        let mut count = r.u16()?;
        if version == 0x01 {
            count = count.checked_sub(1)?; // 0x501 counts the realm
        }
        let realm = r.text()?;
        let components = (0..count).map(|_| r.text()).collect::<Option<Vec<_>>>()?;
        if version == 0x02 {
            r.u32()?; // name type
        }
        r.u32()?; // timestamp
        let kvno8 = r.take(1)?[0];
        let enctype = r.u16()?;
        let key = r.counted()?.to_vec();
        // A 32-bit kvno follows when the record has room for it.
        let kvno = match r.u32() {
            Some(k) if k != 0 => k,
            _ => u32::from(kvno8),
        };
        Some(KeytabEntry {
            components,
            realm,
            kvno,
            enctype,
            key,
        })
    }

    pub fn entries(&self) -> &[KeytabEntry] {
        &self.entries
    }

    /// The distinct principals, for the start-up summary.
    pub fn principals(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.iter().map(KeytabEntry::principal).collect();
        names.dedup();
        names
    }

    /// The key for a ticket: same principal (components compared as
    /// MIT's acceptor does, the realm case-sensitively), same key type,
    /// the given kvno or else the newest.
    fn key_for(
        &self,
        components: &[String],
        realm: &str,
        enctype: u16,
        kvno: Option<u32>,
    ) -> Option<&KeytabEntry> {
        self.entries
            .iter()
            .filter(|e| {
                e.components == components
                    && e.realm == realm
                    && e.enctype == enctype
                    && kvno.is_none_or(|k| k == e.kvno)
            })
            .max_by_key(|e| e.kvno)
    }

    /// Adds a key (tests, and keys derived from a password).
    pub fn push(
        &mut self,
        components: &[&str],
        realm: &str,
        kvno: u32,
        enctype: u16,
        key: Vec<u8>,
    ) {
        self.entries.push(KeytabEntry {
            components: components.iter().map(|c| c.to_string()).collect(),
            realm: realm.to_string(),
            kvno,
            enctype,
            key,
        });
    }
}

fn is_aes(cipher: &CipherSuite) -> bool {
    matches!(
        cipher,
        CipherSuite::Aes128CtsHmacSha196 | CipherSuite::Aes256CtsHmacSha196
    )
}

/// The AES profile of a key type, if it is one.
fn aes_suite(key_type: u16) -> Option<CipherSuite> {
    CipherSuite::try_from(usize::from(key_type))
        .ok()
        .filter(is_aes)
}

fn aes_size(cipher: &CipherSuite) -> AesSize {
    match cipher {
        CipherSuite::Aes128CtsHmacSha196 => AesSize::Aes128,
        _ => AesSize::Aes256,
    }
}

/// What the acceptors of one server share: the keytab and the replay
/// cache ([RFC 4120] 3.2.3: an authenticator is accepted once).
pub struct KerberosService {
    keytab: Keytab,
    seen: Mutex<HashMap<(String, String, u32), SystemTime>>,
}

impl KerberosService {
    pub fn new(keytab: Keytab) -> KerberosService {
        KerberosService {
            keytab,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn keytab(&self) -> &Keytab {
        &self.keytab
    }

    /// Records an authenticator; false if it was seen within the skew.
    fn first_sight(&self, client: &str, ctime: String, cusec: u32) -> bool {
        let now = SystemTime::now();
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        seen.retain(|_, at| now.duration_since(*at).unwrap_or_default() < 2 * MAX_SKEW);
        seen.insert((client.to_string(), ctime, cusec), now)
            .is_none()
    }
}

fn token_error(why: &'static str) -> SecurityError {
    SecurityError::Token(why)
}

fn logon(why: impl Into<String>) -> SecurityError {
    SecurityError::LogonFailure(why.into())
}

fn crypto(_: picky_krb::crypto::KerberosCryptoError) -> SecurityError {
    logon("a Kerberos message does not decrypt (wrong key or tampered)")
}

/// A DER length at the start of `bytes`: (length, octets it took).
fn der_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 || bytes.len() < 1 + n {
        return None;
    }
    let len = bytes[1..=n]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((len, 1 + n))
}

fn der_len_bytes(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// Removes the GSS-API framing of [RFC 2743] 3.1 with the Kerberos
/// OID and the given token ID, if the token has it; a DCE-style token
/// comes without it.
pub(super) fn unframe(token: &[u8], tok_id: [u8; 2]) -> Result<&[u8], SecurityError> {
    if token.first() != Some(&0x60) {
        return Ok(token);
    }
    let (len, used) = der_length(&token[1..]).ok_or(token_error("a malformed GSS-API token"))?;
    let inner = token
        .get(1 + used..1 + used + len)
        .ok_or(token_error("a GSS-API token longer than its data"))?;
    let rest = inner
        .strip_prefix(KRB5_OID_DER)
        .ok_or(token_error("a GSS-API token of another mechanism"))?;
    rest.strip_prefix(&tok_id)
        .ok_or(token_error("a Kerberos token of an unexpected type"))
}

/// Adds the GSS-API framing (a non-DCE AP-REP or AP-REQ).
pub(super) fn frame(tok_id: [u8; 2], message: &[u8]) -> Vec<u8> {
    let inner_len = KRB5_OID_DER.len() + 2 + message.len();
    let mut out = vec![0x60];
    out.extend(der_len_bytes(inner_len));
    out.extend_from_slice(KRB5_OID_DER);
    out.extend_from_slice(&tok_id);
    out.extend_from_slice(message);
    out
}

fn principal_components(name: &PrincipalName) -> Vec<String> {
    name.name_string
        .0
         .0
        .iter()
        .map(|c| c.0.to_string())
        .collect()
}

fn integer(value: &IntegerAsn1) -> Option<u32> {
    let bytes = value.as_unsigned_bytes_be();
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

fn small_integer(value: &IntegerAsn1) -> Option<u16> {
    integer(value).and_then(|v| u16::try_from(v).ok())
}

fn unsigned(value: u32) -> IntegerAsn1 {
    IntegerAsn1::from_bytes_be_unsigned(value.to_be_bytes().to_vec())
}

/// A time as Kerberos carries it: whole seconds.
fn kerberos_time(at: time::OffsetDateTime) -> KerberosTime {
    picky_asn1::date::GeneralizedTime::from(at.replace_nanosecond(0).unwrap_or(at)).into()
}

fn kerberos_time_to_system(time: &KerberosTime) -> Option<SystemTime> {
    let date: time::OffsetDateTime = time.0.clone().try_into().ok()?;
    let secs = u64::try_from(date.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn random_bytes(len: usize) -> Result<Vec<u8>, SecurityError> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).map_err(|_| logon("no randomness for a Kerberos subkey"))?;
    Ok(bytes)
}

/// The established context's keys and sequence numbers.
pub(super) struct KerberosSession {
    cipher: CipherSuite,
    key: Vec<u8>,
    /// This side is the acceptor (its tokens carry SentByAcceptor).
    acceptor: bool,
    /// The acceptor sent a subkey, which both sides then use.
    acceptor_subkey: bool,
    send_seq: u64,
    /// The lowest sequence number the peer's next token may carry.
    recv_seq: u64,
}

pub(super) struct Established {
    pub identity: Identity,
    pub session: KerberosSession,
}

enum AcceptorState {
    ApReq,
    /// DCE style: waiting for the client's AP-REP.
    ApRep {
        ticket_key: Vec<u8>,
        ticket_cipher: CipherSuite,
        our_seq: u32,
        established: Box<Established>,
    },
    Done,
}

/// The server side of one context.
pub(super) struct KerberosAcceptor {
    service: std::sync::Arc<KerberosService>,
    state: AcceptorState,
    /// Whether the client asked for the DCE style (known after the AP-REQ).
    pub dce_style: bool,
}

impl KerberosAcceptor {
    pub fn new(service: std::sync::Arc<KerberosService>) -> KerberosAcceptor {
        KerberosAcceptor {
            service,
            state: AcceptorState::ApReq,
            dce_style: false,
        }
    }

    /// One leg: the AP-REQ (answered with an AP-REP), then in the DCE
    /// style the client's AP-REP (answered with nothing).
    pub fn step(&mut self, token: &[u8]) -> Result<(Vec<u8>, Option<Established>), SecurityError> {
        match std::mem::replace(&mut self.state, AcceptorState::Done) {
            AcceptorState::ApReq => self.ap_req(token),
            AcceptorState::ApRep {
                ticket_key,
                ticket_cipher,
                our_seq,
                established,
            } => {
                let raw = unframe(token, TOK_AP_REP)?;
                let ap_rep: ApRep = der::decode(raw, "a malformed AP-REP")?;
                let plain = ticket_cipher
                    .cipher()
                    .decrypt(
                        &ticket_key,
                        key_usages::AP_REP_ENC,
                        &ap_rep.0.enc_part.0.cipher.0 .0,
                    )
                    .map_err(crypto)?;
                let part: EncApRepPart = der::decode(&plain, "a malformed EncAPRepPart")?;
                let echoed = part.0.seq_number.0.as_ref().and_then(|s| integer(&s.0));
                if echoed != Some(our_seq) {
                    return Err(logon(
                        "the client's AP-REP does not echo the server's sequence number",
                    ));
                }
                Ok((Vec::new(), Some(*established)))
            }
            AcceptorState::Done => Err(token_error(
                "a Kerberos leg after the context is established",
            )),
        }
    }

    fn ap_req(&mut self, token: &[u8]) -> Result<(Vec<u8>, Option<Established>), SecurityError> {
        let raw = unframe(token, TOK_AP_REQ)?;
        let ap_req: ApReq = der::decode(raw, "a malformed AP-REQ")?;
        let ticket = &ap_req.0.ticket.0 .0;
        let sname = principal_components(&ticket.sname.0);
        let realm = ticket.realm.0 .0.to_string();
        let enc = &ticket.enc_part.0;
        let etype = small_integer(&enc.etype.0).ok_or(token_error("a ticket with a bad etype"))?;
        let kvno = enc.kvno.0.as_ref().and_then(|k| integer(&k.0));
        let service_name = format!("{}@{realm}", sname.join("/"));
        let entry = self
            .service
            .keytab
            .key_for(&sname, &realm, etype, kvno)
            .ok_or_else(|| {
                logon(format!(
                    "no key in the keytab for {service_name} (etype {etype}{})",
                    kvno.map(|k| format!(", kvno {k}")).unwrap_or_default()
                ))
            })?;
        let ticket_cipher = CipherSuite::try_from(usize::from(etype))
            .map_err(|_| logon(format!("ticket etype {etype} is not supported")))?;
        let plain = ticket_cipher
            .cipher()
            .decrypt(&entry.key, key_usages::TICKET_REP, &enc.cipher.0 .0)
            .map_err(crypto)?;
        let part: EncTicketPart = der::decode(&plain, "a malformed EncTicketPart")?;
        let part = part.0;

        let session_type = small_integer(&part.key.0.key_type.0)
            .and_then(|t| CipherSuite::try_from(usize::from(t)).ok())
            .filter(is_aes)
            .ok_or_else(|| logon("the ticket's session key is not an AES key"))?;
        let session_key = part.key.0.key_value.0 .0.clone();

        let now = SystemTime::now();
        let end = kerberos_time_to_system(&part.endtime.0)
            .ok_or(token_error("a ticket with a bad end time"))?;
        if now > end + MAX_SKEW {
            return Err(logon(format!("the ticket for {service_name} has expired")));
        }
        if let Some(start) = part.starttime.0.as_ref() {
            let start = kerberos_time_to_system(&start.0)
                .ok_or(token_error("a ticket with a bad start time"))?;
            if start > now + MAX_SKEW {
                return Err(logon("the ticket is not valid yet"));
            }
        }

        let auth = &ap_req.0.authenticator.0;
        let auth_type = small_integer(&auth.etype.0)
            .and_then(|t| CipherSuite::try_from(usize::from(t)).ok())
            .ok_or(token_error("an authenticator with a bad etype"))?;
        let plain = auth_type
            .cipher()
            .decrypt(
                &session_key,
                key_usages::AP_REQ_AUTHENTICATOR,
                &auth.cipher.0 .0,
            )
            .map_err(crypto)?;
        let authenticator: Authenticator = der::decode(&plain, "a malformed authenticator")?;
        let authenticator = authenticator.0;
        let cname = principal_components(&authenticator.cname.0);
        let crealm = authenticator.crealm.0 .0.to_string();
        if cname != principal_components(&part.cname.0) || crealm != part.crealm.0 .0.to_string() {
            return Err(logon(
                "the authenticator names another client than the ticket",
            ));
        }
        let client = format!("{}@{crealm}", cname.join("/"));
        let ctime = kerberos_time_to_system(&authenticator.ctime.0)
            .ok_or(token_error("an authenticator with a bad time"))?;
        let skew = match now.duration_since(ctime) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > MAX_SKEW {
            return Err(logon(format!(
                "the clock of {client}'s machine is {} s from the server's",
                skew.as_secs()
            )));
        }
        let cusec = integer(&authenticator.cusec.0).unwrap_or(0);
        let ctime_key = format!("{:?}", authenticator.ctime.0);
        if !self.service.first_sight(&client, ctime_key, cusec) {
            return Err(logon(format!("a replayed authenticator of {client}")));
        }

        // The GSS checksum's flags ([RFC 4121] 4.1.1).
        let flags = authenticator
            .cksum
            .0
            .as_ref()
            .map(|c| &c.0)
            .filter(|c| integer(&c.cksumtype.0) == Some(GSS_CHECKSUM_TYPE))
            .and_then(|c| c.checksum.0 .0.get(20..24).map(|f| f.to_vec()))
            .map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]))
            .unwrap_or(0);
        self.dce_style = flags & GSS_C_DCE_STYLE != 0;
        let mutual =
            flags & GSS_C_MUTUAL_FLAG != 0 || ap_req.0.ap_options.0 .0.is_set(2) || self.dce_style;

        let initiator_seq = authenticator
            .seq_number
            .0
            .as_ref()
            .and_then(|s| integer(&s.0))
            .unwrap_or(0);
        let identity = Identity {
            user: client,
            domain: crealm,
        };

        if !mutual {
            // No AP-REP: the initiator's subkey (or the session key) keys
            // the messages.
            let (cipher, key) = match authenticator.subkey.0.as_ref() {
                Some(sub) => (
                    small_integer(&sub.0.key_type.0)
                        .and_then(|t| CipherSuite::try_from(usize::from(t)).ok())
                        .filter(is_aes)
                        .ok_or_else(|| logon("the client's subkey is not an AES key"))?,
                    sub.0.key_value.0 .0.clone(),
                ),
                None => (session_type, session_key),
            };
            let session = KerberosSession {
                cipher,
                key,
                acceptor: true,
                acceptor_subkey: false,
                send_seq: u64::from(initiator_seq),
                recv_seq: u64::from(initiator_seq),
            };
            self.state = AcceptorState::Done;
            return Ok((Vec::new(), Some(Established { identity, session })));
        }

        // The AP-REP: a fresh subkey of the session key's type, and as our
        // sequence number the initiator's, so that the client finds the
        // same number whichever of the two it takes as ours (DCE-style
        // initiators differ there).
        let subkey = random_bytes(session_type.cipher().key_size())?;
        let our_seq = initiator_seq;
        let enc_part = EncApRepPart::from(EncApRepPartInner {
            ctime: ExplicitContextTag0::from(authenticator.ctime.0.clone()),
            cusec: ExplicitContextTag1::from(authenticator.cusec.0.clone()),
            subkey: Optional::from(Some(ExplicitContextTag2::from(EncryptionKey {
                key_type: ExplicitContextTag0::from(unsigned(u32::from(u8::from(&session_type)))),
                key_value: ExplicitContextTag1::from(OctetStringAsn1::from(subkey.clone())),
            }))),
            seq_number: Optional::from(Some(ExplicitContextTag3::from(unsigned(our_seq)))),
        });
        let encoded = picky_asn1_der::to_vec(&enc_part).map_err(|_| token_error("an AP-REP"))?;
        let sealed = session_type
            .cipher()
            .encrypt(&session_key, key_usages::AP_REP_ENC, &encoded)
            .map_err(crypto)?;
        let ap_rep = ApRep::from(ApRepInner {
            pvno: ExplicitContextTag0::from(IntegerAsn1::from(vec![5])),
            msg_type: ExplicitContextTag1::from(IntegerAsn1::from(vec![15])),
            enc_part: ExplicitContextTag2::from(EncryptedData {
                etype: ExplicitContextTag0::from(unsigned(u32::from(u8::from(&session_type)))),
                kvno: Optional::from(None),
                cipher: ExplicitContextTag2::from(OctetStringAsn1::from(sealed)),
            }),
        });
        let ap_rep = picky_asn1_der::to_vec(&ap_rep).map_err(|_| token_error("an AP-REP"))?;
        let session = KerberosSession {
            cipher: session_type.clone(),
            key: subkey,
            acceptor: true,
            acceptor_subkey: true,
            send_seq: u64::from(our_seq),
            recv_seq: u64::from(initiator_seq),
        };
        let established = Established { identity, session };
        if self.dce_style {
            self.state = AcceptorState::ApRep {
                ticket_key: session_key,
                ticket_cipher: session_type,
                our_seq,
                established: Box::new(established),
            };
            Ok((ap_rep, None))
        } else {
            self.state = AcceptorState::Done;
            Ok((frame(TOK_AP_REP, &ap_rep), Some(established)))
        }
    }
}

/// The parts of a PDU a per-message token covers: with header signing
/// everything before the verifier (header, body, sec_trailer), else the
/// body alone.
struct Regions {
    body: std::ops::Range<usize>,
    token_start: usize,
    header_sign: bool,
}

impl Regions {
    fn of(
        len: usize,
        body_start: usize,
        token_len: usize,
        header_sign: bool,
    ) -> Result<Regions, SecurityError> {
        let token_start = len
            .checked_sub(token_len)
            .ok_or(token_error("a fragment too short for its verifier"))?;
        let trailer_start = token_start
            .checked_sub(SEC_TRAILER_LEN)
            .filter(|&t| t >= body_start)
            .ok_or(token_error("a fragment too short for its verifier"))?;
        Ok(Regions {
            body: body_start..trailer_start,
            token_start,
            header_sign,
        })
    }

    /// The signed bytes, with the body as given (plain text).
    fn signed(&self, frag: &[u8], body: &[u8]) -> Vec<u8> {
        if !self.header_sign {
            return body.to_vec();
        }
        let mut out = Vec::with_capacity(self.token_start);
        out.extend_from_slice(&frag[..self.body.start]);
        out.extend_from_slice(body);
        out.extend_from_slice(&frag[self.body.end..self.token_start]);
        out
    }
}

impl KerberosSession {
    fn usages(&self, outgoing: bool) -> (i32, i32) {
        let from_acceptor = self.acceptor == outgoing;
        if from_acceptor {
            (key_usages::ACCEPTOR_SEAL, key_usages::ACCEPTOR_SIGN)
        } else {
            (key_usages::INITIATOR_SEAL, key_usages::INITIATOR_SIGN)
        }
    }

    fn our_flags(&self) -> u8 {
        let mut flags = 0;
        if self.acceptor {
            flags |= SENT_BY_ACCEPTOR;
        }
        if self.acceptor_subkey {
            flags |= ACCEPTOR_SUBKEY;
        }
        flags
    }

    fn next_send(&mut self) -> u64 {
        let seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        seq
    }

    /// Checks a received token's header: the direction flag, the token ID
    /// and sequence numbers that only go up (a replayed or reordered PDU
    /// is refused).
    fn check_header(&mut self, header: &[u8], tok_id: [u8; 2]) -> Result<u64, SecurityError> {
        if header.len() < HEADER_LEN || header[..2] != tok_id {
            return Err(SecurityError::BadSignature);
        }
        let flags = header[2];
        if (flags & SENT_BY_ACCEPTOR != 0) == self.acceptor {
            // Sent by our own side: a reflected token.
            return Err(SecurityError::BadSignature);
        }
        let seq = u64::from_be_bytes(
            header[8..16]
                .try_into()
                .map_err(|_| SecurityError::BadSignature)?,
        );
        if seq < self.recv_seq {
            return Err(SecurityError::BadSignature);
        }
        Ok(seq)
    }

    /// The verifier length of the tokens this side sends at a level.
    pub fn token_len(seal: bool) -> usize {
        if seal {
            WRAP_TOKEN_LEN
        } else {
            MIC_TOKEN_LEN
        }
    }

    /// A MIC token over `data` ([RFC 4121] 4.2.6.1).
    pub fn get_mic(&mut self, data: &[u8]) -> Result<Vec<u8>, SecurityError> {
        let (_, sign) = self.usages(true);
        let seq = self.next_send();
        let mut token = Vec::with_capacity(MIC_TOKEN_LEN);
        token.extend_from_slice(&TOK_MIC);
        token.push(self.our_flags());
        token.extend_from_slice(&[0xff; 5]);
        token.extend_from_slice(&seq.to_be_bytes());
        let mut signed = data.to_vec();
        signed.extend_from_slice(&token);
        let checksum = checksum_sha_aes(&self.key, sign, &signed, &aes_size(&self.cipher))
            .map_err(|_| SecurityError::BadSignature)?;
        token.extend_from_slice(&checksum);
        Ok(token)
    }

    /// Verifies the peer's MIC token over `data`.
    pub fn verify_mic(&mut self, data: &[u8], token: &[u8]) -> Result<(), SecurityError> {
        if token.len() != MIC_TOKEN_LEN || token[3..8] != [0xff; 5] {
            return Err(SecurityError::BadSignature);
        }
        let seq = self.check_header(token, TOK_MIC)?;
        let (_, sign) = self.usages(false);
        let mut signed = data.to_vec();
        signed.extend_from_slice(&token[..HEADER_LEN]);
        let expected = checksum_sha_aes(&self.key, sign, &signed, &aes_size(&self.cipher))
            .map_err(|_| SecurityError::BadSignature)?;
        if !super::ntlm::constant_time_eq(&expected, &token[HEADER_LEN..]) {
            return Err(SecurityError::BadSignature);
        }
        self.recv_seq = seq + 1;
        Ok(())
    }

    /// Signs or seals a PDU in place: `frag` ends with a verifier of
    /// [`KerberosSession::token_len`] bytes after the sec_trailer.
    pub fn protect(
        &mut self,
        frag: &mut [u8],
        body_start: usize,
        seal: bool,
        header_sign: bool,
    ) -> Result<(), SecurityError> {
        let regions = Regions::of(frag.len(), body_start, Self::token_len(seal), header_sign)?;
        if !seal {
            let signed = regions.signed(frag, &frag[regions.body.clone()]);
            let token = self.get_mic(&signed)?;
            frag[regions.token_start..].copy_from_slice(&token);
            return Ok(());
        }
        let (seal_usage, _) = self.usages(true);
        let seq = self.next_send();
        let mut header = [0u8; HEADER_LEN];
        header[..2].copy_from_slice(&TOK_WRAP);
        header[2] = self.our_flags() | SEALED;
        header[3] = 0xff;
        header[4..6].copy_from_slice(&(EC as u16).to_be_bytes());
        // RRC is 0 in the encrypted copy ([RFC 4121] 4.2.4).
        header[8..16].copy_from_slice(&seq.to_be_bytes());

        let body = frag[regions.body.clone()].to_vec();
        let mut payload = body.clone();
        payload.extend_from_slice(&[0; EC]);
        payload.extend_from_slice(&header);
        let cipher = self.cipher.cipher();
        let encrypted = cipher
            .encrypt_no_checksum(&self.key, seal_usage, &payload)
            .map_err(|_| SecurityError::BadSignature)?;
        let mut signed = encrypted.confounder.clone();
        signed.extend(regions.signed(frag, &body));
        signed.extend_from_slice(&[0; EC]);
        signed.extend_from_slice(&header);
        let hmac = cipher
            .encryption_checksum(&self.key, seal_usage, &signed)
            .map_err(|_| SecurityError::BadSignature)?;
        let mut whole = encrypted.encrypted;
        whole.extend_from_slice(&hmac);
        // [MS-KILE] 3.4.5.4.1: rotated right by RRC + EC.
        whole.rotate_right(RRC + EC);
        header[6..8].copy_from_slice(&(RRC as u16).to_be_bytes());
        let in_token = WRAP_TOKEN_LEN - HEADER_LEN;
        frag[regions.body.clone()].copy_from_slice(&whole[in_token..]);
        let token = &mut frag[regions.token_start..];
        token[..HEADER_LEN].copy_from_slice(&header);
        token[HEADER_LEN..].copy_from_slice(&whole[..in_token]);
        Ok(())
    }

    /// Verifies (and when sealed decrypts in place) a PDU whose verifier
    /// is its last `token_len` bytes.
    pub fn unprotect(
        &mut self,
        frag: &mut [u8],
        body_start: usize,
        token_len: usize,
        seal: bool,
        header_sign: bool,
    ) -> Result<(), SecurityError> {
        let regions = Regions::of(frag.len(), body_start, token_len, header_sign)?;
        if !seal {
            let signed = regions.signed(frag, &frag[regions.body.clone()]);
            let token = frag[regions.token_start..].to_vec();
            return self.verify_mic(&signed, &token);
        }
        let token = frag[regions.token_start..].to_vec();
        if token.len() < HEADER_LEN || token[3] != 0xff || token[2] & SEALED == 0 {
            return Err(SecurityError::BadSignature);
        }
        let seq = self.check_header(&token, TOK_WRAP)?;
        let ec = usize::from(u16::from_be_bytes([token[4], token[5]]));
        let rrc = usize::from(u16::from_be_bytes([token[6], token[7]]));
        let body_len = regions.body.len();
        let mut whole = token[HEADER_LEN..].to_vec();
        whole.extend_from_slice(&frag[regions.body.clone()]);
        // The plain text must fill the body exactly: confounder, body,
        // filler, header and HMAC around it.
        if whole.len() != 16 + body_len + ec + HEADER_LEN + HMAC_LEN {
            return Err(SecurityError::BadSignature);
        }
        let rotation = (rrc + ec) % whole.len();
        whole.rotate_left(rotation);
        let (seal_usage, _) = self.usages(false);
        let cipher = self.cipher.cipher();
        let decrypted = cipher
            .decrypt_no_checksum(&self.key, seal_usage, &whole)
            .map_err(|_| SecurityError::BadSignature)?;
        let plain = &decrypted.plaintext;
        if plain.len() != body_len + ec + HEADER_LEN {
            return Err(SecurityError::BadSignature);
        }
        let (body, tail) = plain.split_at(body_len);
        let copied = &tail[ec..];
        // The encrypted copy of the header matches, RRC aside.
        if copied[..6] != token[..6] || copied[8..] != token[8..HEADER_LEN] {
            return Err(SecurityError::BadSignature);
        }
        let mut signed = decrypted.confounder.clone();
        signed.extend(regions.signed(frag, body));
        signed.extend_from_slice(tail);
        let expected = cipher
            .encryption_checksum(&self.key, seal_usage, &signed)
            .map_err(|_| SecurityError::BadSignature)?;
        if !super::ntlm::constant_time_eq(&expected, &decrypted.checksum) {
            return Err(SecurityError::BadSignature);
        }
        frag[regions.body.clone()].copy_from_slice(body);
        self.recv_seq = seq + 1;
        Ok(())
    }
}

/// The client side, for a client that holds a service ticket and its
/// session key (from a credential cache, or made by a test): builds the
/// AP-REQ and completes the context from the AP-REP.
pub(super) struct KerberosInitiator {
    ticket: picky_krb::data_types::Ticket,
    session_cipher: CipherSuite,
    session_key: Vec<u8>,
    client: Vec<String>,
    realm: String,
    dce_style: bool,
    seq: u32,
    ctime: Option<KerberosTime>,
}

impl KerberosInitiator {
    /// The initiator for a ticket of the credential cache.
    pub fn from_cache(ticket: &CachedTicket, dce_style: bool) -> Result<Self, SecurityError> {
        let (parsed, cipher) = ticket.for_ap_req()?;
        let client: Vec<&str> = ticket.client.iter().map(String::as_str).collect();
        KerberosInitiator::new(
            parsed,
            cipher,
            ticket.key.clone(),
            &client,
            &ticket.client_realm,
            dce_style,
        )
    }

    pub fn new(
        ticket: picky_krb::data_types::Ticket,
        session_cipher: CipherSuite,
        session_key: Vec<u8>,
        client: &[&str],
        realm: &str,
        dce_style: bool,
    ) -> Result<KerberosInitiator, SecurityError> {
        let seq_bytes = random_bytes(4)?;
        Ok(KerberosInitiator {
            ticket,
            session_cipher,
            session_key,
            client: client.iter().map(|c| c.to_string()).collect(),
            realm: realm.to_string(),
            dce_style,
            seq: u32::from_be_bytes([
                seq_bytes[0],
                seq_bytes[1],
                seq_bytes[2],
                seq_bytes[3] & 0x3f,
            ]),
            ctime: None,
        })
    }

    /// The AP-REQ (mutual authentication, the DCE style if asked).
    pub fn ap_req(&mut self) -> Result<Vec<u8>, SecurityError> {
        let mut flags = GSS_C_MUTUAL_FLAG | 0x04 | 0x08 | 0x10 | 0x20;
        if self.dce_style {
            flags |= GSS_C_DCE_STYLE;
        }
        let mut checksum = 16u32.to_le_bytes().to_vec();
        checksum.extend_from_slice(&[0; 16]);
        checksum.extend_from_slice(&flags.to_le_bytes());
        let client: Vec<&str> = self.client.iter().map(String::as_str).collect();
        let (ap_req, ctime) = build_ap_req(&ApReqParts {
            ticket: &self.ticket,
            cipher: &self.session_cipher,
            key: &self.session_key,
            key_usage: key_usages::AP_REQ_AUTHENTICATOR,
            client: &client,
            realm: &self.realm,
            checksum: (GSS_CHECKSUM_TYPE, checksum),
            seq: Some(self.seq),
            mutual: true,
        })?;
        self.ctime = Some(ctime);
        let encoded = picky_asn1_der::to_vec(&ap_req).map_err(|_| token_error("an AP-REQ"))?;
        // The initial token is framed in the DCE style too (only the
        // AP-REPs go bare), as Windows clients send it.
        Ok(frame(TOK_AP_REQ, &encoded))
    }

    /// Reads the server's AP-REP: the session (with the acceptor's subkey)
    /// and, in the DCE style, the AP-REP to send back.
    pub fn ap_rep(
        &mut self,
        token: &[u8],
    ) -> Result<(Option<Vec<u8>>, KerberosSession), SecurityError> {
        let raw = unframe(token, TOK_AP_REP)?;
        let ap_rep: ApRep = der::decode(raw, "a malformed AP-REP")?;
        let plain = self
            .session_cipher
            .cipher()
            .decrypt(
                &self.session_key,
                key_usages::AP_REP_ENC,
                &ap_rep.0.enc_part.0.cipher.0 .0,
            )
            .map_err(crypto)?;
        let part: EncApRepPart = der::decode(&plain, "a malformed EncAPRepPart")?;
        if Some(&part.0.ctime.0) != self.ctime.as_ref() {
            return Err(logon("the server's AP-REP answers another authenticator"));
        }
        let server_seq = part
            .0
            .seq_number
            .0
            .as_ref()
            .and_then(|s| integer(&s.0))
            .unwrap_or(0);
        let (cipher, key, subkey) = match part.0.subkey.0.as_ref() {
            Some(sub) => (
                small_integer(&sub.0.key_type.0)
                    .and_then(|t| CipherSuite::try_from(usize::from(t)).ok())
                    .filter(is_aes)
                    .ok_or_else(|| logon("the server's subkey is not an AES key"))?,
                sub.0.key_value.0 .0.clone(),
                true,
            ),
            None => (self.session_cipher.clone(), self.session_key.clone(), false),
        };
        let session = KerberosSession {
            cipher,
            key,
            acceptor: false,
            acceptor_subkey: subkey,
            send_seq: u64::from(self.seq),
            recv_seq: u64::from(server_seq),
        };
        if !self.dce_style {
            return Ok((None, session));
        }
        let reply = EncApRepPart::from(EncApRepPartInner {
            ctime: part.0.ctime.clone(),
            cusec: part.0.cusec.clone(),
            subkey: Optional::from(None),
            seq_number: Optional::from(Some(ExplicitContextTag3::from(unsigned(server_seq)))),
        });
        let encoded = picky_asn1_der::to_vec(&reply).map_err(|_| token_error("an AP-REP"))?;
        let sealed = self
            .session_cipher
            .cipher()
            .encrypt(&self.session_key, key_usages::AP_REP_ENC, &encoded)
            .map_err(crypto)?;
        let ap_rep = ApRep::from(ApRepInner {
            pvno: ExplicitContextTag0::from(IntegerAsn1::from(vec![5])),
            msg_type: ExplicitContextTag1::from(IntegerAsn1::from(vec![15])),
            enc_part: ExplicitContextTag2::from(EncryptedData {
                etype: ExplicitContextTag0::from(unsigned(u32::from(u8::from(
                    &self.session_cipher,
                )))),
                kvno: Optional::from(None),
                cipher: ExplicitContextTag2::from(OctetStringAsn1::from(sealed)),
            }),
        });
        let encoded = picky_asn1_der::to_vec(&ap_rep).map_err(|_| token_error("an AP-REP"))?;
        Ok((Some(encoded), session))
    }
}

/// What an AP-REQ is made of: the ticket and its session key, the
/// authenticator's key usage (an AP-REQ to a service, or the one inside a
/// TGS-REQ), the client, and the authenticator's checksum.
pub(super) struct ApReqParts<'a> {
    pub ticket: &'a picky_krb::data_types::Ticket,
    pub cipher: &'a CipherSuite,
    pub key: &'a [u8],
    pub key_usage: i32,
    pub client: &'a [&'a str],
    pub realm: &'a str,
    /// Checksum type and value.
    pub checksum: (u32, Vec<u8>),
    pub seq: Option<u32>,
    /// Ask for mutual authentication (an AP-REP).
    pub mutual: bool,
}

/// An AP-REQ ([RFC 4120] 5.5.1) and its authenticator's ctime, which the
/// AP-REP must echo.
pub(super) fn build_ap_req(parts: &ApReqParts<'_>) -> Result<(ApReq, KerberosTime), SecurityError> {
    use picky_asn1::wrapper::{ExplicitContextTag4, ExplicitContextTag5, ExplicitContextTag7};
    use picky_krb::data_types::{AuthenticatorInner, Checksum};
    let now = time::OffsetDateTime::now_utc();
    let ctime = kerberos_time(now);
    let authenticator = Authenticator::from(AuthenticatorInner {
        authenticator_vno: ExplicitContextTag0::from(IntegerAsn1::from(vec![5])),
        crealm: ExplicitContextTag1::from(realm_string(parts.realm)?),
        cname: ExplicitContextTag2::from(principal_name(1, parts.client)?),
        cksum: Optional::from(Some(ExplicitContextTag3::from(Checksum {
            cksumtype: ExplicitContextTag0::from(unsigned(parts.checksum.0)),
            checksum: ExplicitContextTag1::from(OctetStringAsn1::from(parts.checksum.1.clone())),
        }))),
        cusec: ExplicitContextTag4::from(unsigned(now.microsecond())),
        ctime: ExplicitContextTag5::from(ctime.clone()),
        subkey: Optional::from(None),
        seq_number: Optional::from(parts.seq.map(|s| ExplicitContextTag7::from(unsigned(s)))),
        authorization_data: Optional::from(None),
    });
    let encoded =
        picky_asn1_der::to_vec(&authenticator).map_err(|_| token_error("an authenticator"))?;
    let sealed = parts
        .cipher
        .cipher()
        .encrypt(parts.key, parts.key_usage, &encoded)
        .map_err(crypto)?;
    let mut options = picky_asn1::bit_string::BitString::with_len(32);
    options.set(2, parts.mutual); // mutual-required
    let ap_req = ApReq::from(picky_krb::messages::ApReqInner {
        pvno: ExplicitContextTag0::from(IntegerAsn1::from(vec![5])),
        msg_type: ExplicitContextTag1::from(IntegerAsn1::from(vec![14])),
        ap_options: ExplicitContextTag2::from(picky_asn1::wrapper::BitStringAsn1::from(options)),
        ticket: picky_asn1::wrapper::ExplicitContextTag3::from(parts.ticket.clone()),
        authenticator: picky_asn1::wrapper::ExplicitContextTag4::from(EncryptedData {
            etype: ExplicitContextTag0::from(unsigned(u32::from(u8::from(parts.cipher)))),
            kvno: Optional::from(None),
            cipher: ExplicitContextTag2::from(OctetStringAsn1::from(sealed)),
        }),
    });
    Ok((ap_req, ctime))
}

fn realm_string(realm: &str) -> Result<picky_asn1::wrapper::GeneralStringAsn1, SecurityError> {
    picky_asn1::restricted_string::Ia5String::from_string(realm.to_string())
        .map(picky_asn1::wrapper::GeneralStringAsn1::from)
        .map_err(|_| token_error("a realm that is not IA5"))
}

fn principal_name(name_type: u8, components: &[&str]) -> Result<PrincipalName, SecurityError> {
    use picky_asn1::wrapper::Asn1SequenceOf;
    let names = components
        .iter()
        .map(|c| realm_string(c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PrincipalName {
        name_type: ExplicitContextTag0::from(IntegerAsn1::from(vec![name_type])),
        name_string: ExplicitContextTag1::from(Asn1SequenceOf::from(names)),
    })
}

/// Makes a service ticket as a KDC would (for tests of the acceptor
/// without a KDC): the ticket, encrypted in `service_key`, and the
/// session key it carries.
#[cfg(test)]
pub(super) fn issue_ticket(
    service: &[&str],
    realm: &str,
    service_key: &[u8],
    kvno: u32,
    client: &[&str],
    lifetime: i64,
) -> (picky_krb::data_types::Ticket, Vec<u8>) {
    use picky_asn1::wrapper::{ExplicitContextTag4, ExplicitContextTag5, ExplicitContextTag7};
    use picky_krb::data_types::{EncTicketPartInner, TicketInner, TransitedEncoding};
    let session_key = random_bytes(32).unwrap();
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let time_of = |t: time::OffsetDateTime| -> KerberosTime {
        picky_asn1::date::GeneralizedTime::from(t).into()
    };
    let part = EncTicketPart::from(EncTicketPartInner {
        flags: ExplicitContextTag0::from(picky_asn1::wrapper::BitStringAsn1::from(
            picky_asn1::bit_string::BitString::with_len(32),
        )),
        key: ExplicitContextTag1::from(EncryptionKey {
            key_type: ExplicitContextTag0::from(IntegerAsn1::from(vec![18])),
            key_value: ExplicitContextTag1::from(OctetStringAsn1::from(session_key.clone())),
        }),
        crealm: ExplicitContextTag2::from(realm_string(realm).unwrap()),
        cname: ExplicitContextTag3::from(principal_name(1, client).unwrap()),
        transited: ExplicitContextTag4::from(TransitedEncoding {
            tr_type: ExplicitContextTag0::from(IntegerAsn1::from(vec![1])),
            contents: ExplicitContextTag1::from(OctetStringAsn1::from(Vec::new())),
        }),
        auth_time: ExplicitContextTag5::from(time_of(now)),
        starttime: Optional::from(None),
        endtime: ExplicitContextTag7::from(time_of(now + time::Duration::seconds(lifetime))),
        renew_till: Optional::from(None),
        caddr: Optional::from(None),
        authorization_data: Optional::from(None),
    });
    let encoded = picky_asn1_der::to_vec(&part).unwrap();
    let sealed = CipherSuite::Aes256CtsHmacSha196
        .cipher()
        .encrypt(service_key, key_usages::TICKET_REP, &encoded)
        .unwrap();
    let ticket = picky_krb::data_types::Ticket::from(TicketInner {
        tkt_vno: ExplicitContextTag0::from(IntegerAsn1::from(vec![5])),
        realm: ExplicitContextTag1::from(realm_string(realm).unwrap()),
        sname: ExplicitContextTag2::from(principal_name(2, service).unwrap()),
        enc_part: picky_asn1::wrapper::ExplicitContextTag3::from(EncryptedData {
            etype: ExplicitContextTag0::from(IntegerAsn1::from(vec![18])),
            kvno: Optional::from(Some(ExplicitContextTag1::from(unsigned(kvno)))),
            cipher: ExplicitContextTag2::from(OctetStringAsn1::from(sealed)),
        }),
    });
    (ticket, session_key)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const REALM: &str = "TEST.REALM";
    const SERVICE_KEY: [u8; 32] = [0x42; 32];

    fn service() -> Arc<KerberosService> {
        let mut keytab = Keytab::default();
        keytab.push(&["host", "localhost"], REALM, 3, 18, SERVICE_KEY.to_vec());
        Arc::new(KerberosService::new(keytab))
    }

    fn initiator(dce: bool, lifetime: i64, key: &[u8]) -> KerberosInitiator {
        let (ticket, session_key) =
            issue_ticket(&["host", "localhost"], REALM, key, 3, &["alice"], lifetime);
        KerberosInitiator::new(
            ticket,
            CipherSuite::Aes256CtsHmacSha196,
            session_key,
            &["alice"],
            REALM,
            dce,
        )
        .unwrap()
    }

    /// Both sides of an established DCE-style context.
    fn established() -> (KerberosSession, KerberosSession) {
        let mut client = initiator(true, 3600, &SERVICE_KEY);
        let mut server = KerberosAcceptor::new(service());
        let framed = client.ap_req().unwrap();
        assert_eq!(
            framed[0], 0x60,
            "the AP-REQ is GSS-framed in the DCE style too"
        );
        // Some DCE-style clients send it bare: the acceptor takes both.
        let ap_req = unframe(&framed, TOK_AP_REQ).unwrap();
        assert_eq!(ap_req[0], 0x6e, "an AP-REQ");
        let (ap_rep, done) = server.step(ap_req).unwrap();
        assert!(done.is_none() && server.dce_style);
        let (reply, client_session) = client.ap_rep(&ap_rep).unwrap();
        let (last, done) = server.step(&reply.unwrap()).unwrap();
        assert!(last.is_empty());
        let done = done.expect("established after the client's AP-REP");
        assert_eq!(done.identity.user, "alice@TEST.REALM");
        assert_eq!(done.identity.domain, REALM);
        (client_session, done.session)
    }

    /// A request-shaped fragment: 24-byte header, body, sec_trailer, and
    /// room for the verifier.
    fn fragment(body: &[u8], token_len: usize) -> Vec<u8> {
        let mut frag: Vec<u8> = (0..24).collect();
        frag.extend_from_slice(body);
        frag.extend_from_slice(&[16, 6, 0, 0, 1, 0, 0, 0]);
        frag.extend(std::iter::repeat_n(0, token_len));
        frag
    }

    #[test]
    fn a_keytab_is_read_in_both_versions_keeping_aes_keys_only() {
        fn entry(
            v2: bool,
            realm: &str,
            names: &[&str],
            etype: u16,
            key: &[u8],
            kvno: u32,
        ) -> Vec<u8> {
            let mut e = Vec::new();
            let count = names.len() as u16 + u16::from(!v2);
            e.extend(if v2 {
                count.to_be_bytes()
            } else {
                count.to_le_bytes()
            });
            let counted = |e: &mut Vec<u8>, b: &[u8]| {
                let n = b.len() as u16;
                e.extend(if v2 { n.to_be_bytes() } else { n.to_le_bytes() });
                e.extend_from_slice(b);
            };
            counted(&mut e, realm.as_bytes());
            for n in names {
                counted(&mut e, n.as_bytes());
            }
            if v2 {
                e.extend(1u32.to_be_bytes());
            }
            e.extend([0, 0, 0, 0]); // timestamp
            e.push(kvno as u8);
            e.extend(if v2 {
                etype.to_be_bytes()
            } else {
                etype.to_le_bytes()
            });
            counted(&mut e, key);
            e.extend(if v2 {
                kvno.to_be_bytes()
            } else {
                kvno.to_le_bytes()
            });
            let mut out = if v2 {
                (e.len() as u32).to_be_bytes()
            } else {
                (e.len() as u32).to_le_bytes()
            }
            .to_vec();
            out.extend(e);
            out
        }
        let mut file = vec![0x05, 0x02];
        file.extend(entry(true, REALM, &["host", "web1"], 18, &[1; 32], 300));
        file.extend(entry(true, REALM, &["host", "web1"], 23, &[2; 16], 300)); // RC4: left out
        file.extend((-6i32).to_be_bytes()); // a hole
        file.extend([0; 6]);
        file.extend(entry(true, REALM, &["host", "web1"], 17, &[3; 16], 301));
        let keytab = Keytab::parse(&file).unwrap();
        assert_eq!(keytab.entries().len(), 2);
        assert_eq!(
            keytab.principals(),
            vec!["host/web1@TEST.REALM".to_string()]
        );
        assert_eq!(
            keytab.entries()[0].kvno,
            300,
            "the 32-bit kvno wins over the 8-bit one"
        );
        let names = ["host".to_string(), "web1".to_string()];
        assert_eq!(keytab.key_for(&names, REALM, 17, None).unwrap().kvno, 301);
        assert!(keytab.key_for(&names, REALM, 18, Some(301)).is_none());
        assert!(keytab.key_for(&names, "OTHER", 18, None).is_none());

        let mut v1 = vec![0x05, 0x01];
        v1.extend(entry(false, REALM, &["HTTP", "web1"], 18, &[4; 32], 2));
        let keytab = Keytab::parse(&v1).unwrap();
        assert_eq!(keytab.entries()[0].principal(), "HTTP/web1@TEST.REALM");

        assert!(Keytab::parse(b"\x05\x03").is_err());
        assert!(
            Keytab::parse(&file[..file.len() - 3]).is_err(),
            "a truncated entry"
        );
        let mut long = vec![0x05, 0x02];
        long.extend(1000u32.to_be_bytes());
        assert!(Keytab::parse(&long).is_err());
    }

    #[test]
    fn seal_and_sign_both_ways_with_and_without_header_signing() {
        let (mut client, mut server) = established();
        for header_sign in [false, true] {
            for seal in [true, false] {
                let token_len = KerberosSession::token_len(seal);
                for body in [&b"0123456789abcdef"[..], &[0xAA; 37][..], &[][..]] {
                    let mut frag = fragment(body, token_len);
                    client.protect(&mut frag, 24, seal, header_sign).unwrap();
                    if seal && !body.is_empty() {
                        assert_ne!(&frag[24..24 + body.len()], body, "the body is sealed");
                    }
                    server
                        .unprotect(&mut frag, 24, token_len, seal, header_sign)
                        .unwrap();
                    assert_eq!(&frag[24..24 + body.len()], body);

                    let mut answer = fragment(body, token_len);
                    server.protect(&mut answer, 24, seal, header_sign).unwrap();
                    client
                        .unprotect(&mut answer, 24, token_len, seal, header_sign)
                        .unwrap();
                    assert_eq!(&answer[24..24 + body.len()], body);
                }
            }
        }
    }

    #[test]
    fn tampering_replays_and_reflections_are_refused() {
        let (mut client, mut server) = established();
        for seal in [true, false] {
            let token_len = KerberosSession::token_len(seal);
            let mut frag = fragment(b"some stub data..", token_len);
            client.protect(&mut frag, 24, seal, true).unwrap();
            // The header is covered when header signing is on.
            let mut tampered = frag.clone();
            tampered[2] ^= 1;
            assert!(server
                .unprotect(&mut tampered, 24, token_len, seal, true)
                .is_err());
            let mut tampered = frag.clone();
            tampered[30] ^= 1;
            assert!(server
                .unprotect(&mut tampered, 24, token_len, seal, true)
                .is_err());
            // Signed with the header but checked without: refused.
            assert!(server
                .unprotect(&mut frag.clone(), 24, token_len, seal, false)
                .is_err());
            let mut good = frag.clone();
            server
                .unprotect(&mut good, 24, token_len, seal, true)
                .unwrap();
            // The same PDU again: its sequence number is spent.
            assert!(server
                .unprotect(&mut frag, 24, token_len, seal, true)
                .is_err());
            // The server's own token sent back to it.
            let mut own = fragment(b"reflected.......", token_len);
            server.protect(&mut own, 24, seal, true).unwrap();
            assert!(server
                .unprotect(&mut own, 24, token_len, seal, true)
                .is_err());
        }
        // A verifier of the wrong size for the body.
        let mut frag = fragment(b"0123456789abcdef", WRAP_TOKEN_LEN);
        client.protect(&mut frag, 24, true, false).unwrap();
        frag.push(0);
        assert!(server
            .unprotect(&mut frag, 24, WRAP_TOKEN_LEN + 1, true, false)
            .is_err());
    }

    #[test]
    fn the_wrap_token_is_laid_out_as_ms_kile_says() {
        let (mut client, _) = established();
        let mut frag = fragment(&[0x11; 32], WRAP_TOKEN_LEN);
        client.protect(&mut frag, 24, true, false).unwrap();
        let token = &frag[frag.len() - WRAP_TOKEN_LEN..];
        assert_eq!(&token[..2], &TOK_WRAP);
        assert_eq!(
            token[2],
            SEALED | ACCEPTOR_SUBKEY,
            "from the initiator, with the acceptor's subkey"
        );
        assert_eq!(token[3], 0xff);
        assert_eq!(u16::from_be_bytes([token[4], token[5]]), 16, "EC");
        assert_eq!(u16::from_be_bytes([token[6], token[7]]), 28, "RRC");
        assert_eq!(WRAP_TOKEN_LEN, 76);
        let mut signed = fragment(&[0x11; 32], MIC_TOKEN_LEN);
        client.protect(&mut signed, 24, false, false).unwrap();
        let mic = &signed[signed.len() - MIC_TOKEN_LEN..];
        assert_eq!(
            &mic[..8],
            &[0x04, 0x04, ACCEPTOR_SUBKEY, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        // Sequence numbers follow: the MIC came after one Wrap token.
        let first = u64::from_be_bytes(token[8..16].try_into().unwrap());
        let second = u64::from_be_bytes(mic[8..16].try_into().unwrap());
        assert_eq!(second, first + 1);
    }

    #[test]
    fn without_the_dce_style_two_legs_with_framed_tokens() {
        let mut client = initiator(false, 3600, &SERVICE_KEY);
        let mut server = KerberosAcceptor::new(service());
        let ap_req = client.ap_req().unwrap();
        assert_eq!(ap_req[0], 0x60, "GSS-API framing");
        let (ap_rep, done) = server.step(&ap_req).unwrap();
        assert_eq!(ap_rep[0], 0x60);
        let mut server_session = done.expect("established at once").session;
        let (reply, mut client_session) = client.ap_rep(&ap_rep).unwrap();
        assert!(reply.is_none());
        let mic = client_session.get_mic(b"mech types").unwrap();
        server_session.verify_mic(b"mech types", &mic).unwrap();
        assert!(server_session
            .verify_mic(
                b"mech typez",
                &client_session.get_mic(b"mech types").unwrap()
            )
            .is_err());
    }

    #[test]
    fn bad_tickets_and_authenticators_are_logon_failures() {
        let refuse = |mut client: KerberosInitiator, service: Arc<KerberosService>, why: &str| {
            let mut server = KerberosAcceptor::new(service);
            match server.step(&client.ap_req().unwrap()) {
                Err(SecurityError::LogonFailure(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{why}: {:?}", other.map(|r| r.0)),
            }
        };
        refuse(
            initiator(true, 3600, &[0x43; 32]),
            service(),
            "does not decrypt",
        );
        refuse(initiator(true, -3600, &SERVICE_KEY), service(), "expired");
        let other = Arc::new(KerberosService::new(Keytab::default()));
        refuse(
            initiator(true, 3600, &SERVICE_KEY),
            other,
            "no key in the keytab for host/localhost@TEST.REALM",
        );

        // The same AP-REQ twice: a replay, even on another connection.
        let shared = service();
        let ap_req = initiator(true, 3600, &SERVICE_KEY).ap_req().unwrap();
        KerberosAcceptor::new(shared.clone()).step(&ap_req).unwrap();
        match KerberosAcceptor::new(shared).step(&ap_req) {
            Err(SecurityError::LogonFailure(m)) => assert!(m.contains("replayed"), "{m}"),
            _ => panic!("a replay was accepted"),
        }
        // Garbage and half tokens.
        for bad in [
            &b""[..],
            b"\x60\x03\x06\x01",
            b"\x6e\x82\xff\xff",
            &ap_req[..ap_req.len() / 2],
        ] {
            assert!(KerberosAcceptor::new(service()).step(bad).is_err());
        }
    }

    #[test]
    fn the_third_leg_must_echo_the_servers_sequence_number() {
        let mut client = initiator(true, 3600, &SERVICE_KEY);
        let mut server = KerberosAcceptor::new(service());
        let (ap_rep, _) = server.step(&client.ap_req().unwrap()).unwrap();
        // A second client's third leg, under another session key.
        let mut other = initiator(true, 3600, &SERVICE_KEY);
        let mut other_server = KerberosAcceptor::new(service());
        let (other_rep, _) = other_server.step(&other.ap_req().unwrap()).unwrap();
        let (wrong, _) = other.ap_rep(&other_rep).unwrap();
        assert!(server.step(&wrong.unwrap()).is_err());
        let _ = client.ap_rep(&ap_rep).unwrap();
    }
}
