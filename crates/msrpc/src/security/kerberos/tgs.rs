//! The TGS exchange ([RFC 4120] 3.3): a client whose credential cache
//! holds a TGT but no ticket for the service asks the realm's KDC for one,
//! as `kvno` would, over TCP ([RFC 4120] 7.2.2). The KDC is found in the
//! MIT configuration (`$KRB5_CONFIG`, else `/etc/krb5.conf`: the realm's
//! `kdc =` lines). The ticket is used for the logon and not written back
//! to the cache, which stays the user's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use picky_asn1::wrapper::{
    Asn1SequenceOf, ExplicitContextTag0, ExplicitContextTag1, ExplicitContextTag2,
    ExplicitContextTag3, ExplicitContextTag4, ExplicitContextTag5, ExplicitContextTag7,
    ExplicitContextTag8, IntegerAsn1, OctetStringAsn1, Optional,
};
use picky_krb::constants::key_usages;
use picky_krb::crypto::CipherSuite;
use picky_krb::data_types::PaData;
use picky_krb::messages::{
    EncAsRepPart, EncTgsRepPart, KdcReq, KdcReqBody, KrbError, TgsRep, TgsReq,
};

use super::{
    aes_suite, build_ap_req, crypto, integer, kerberos_time, kerberos_time_to_system, logon,
    principal_components, principal_name, random_bytes, realm_string, small_integer, token_error,
    unsigned, ApReqParts, CachedTicket, SecurityError,
};

/// How long one KDC may take to answer.
const KDC_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest KDC reply read (tickets with PACs are a few KiB).
const MAX_REPLY: usize = 1 << 20;
/// The PA-DATA type carrying the TGS-REQ's AP-REQ.
const PA_TGS_REQ: u8 = 1;
/// The checksum types of the AES profiles ([RFC 3962] 7).
const HMAC_SHA1_96_AES128: u32 = 15;
const HMAC_SHA1_96_AES256: u32 = 16;

/// The KDCs of a realm in the MIT configuration files.
pub fn kdcs_of(realm: &str) -> Result<Vec<String>, SecurityError> {
    let files: Vec<PathBuf> = match std::env::var("KRB5_CONFIG") {
        Ok(list) if !list.is_empty() => std::env::split_paths(&list).collect(),
        _ => vec![PathBuf::from("/etc/krb5.conf")],
    };
    let mut kdcs = Vec::new();
    for file in &files {
        if let Ok(text) = std::fs::read_to_string(file) {
            kdcs.extend(kdcs_in(&text, realm));
        }
    }
    if kdcs.is_empty() {
        return Err(logon(format!(
            "no KDC for the realm {realm} in {} (add `kdc = HOST` under [realms] {realm} = {{ … }}, \
             or get the ticket with `kvno` first)",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(kdcs)
}

/// The `kdc =` values of a realm's block of `[realms]` in a krb5.conf.
fn kdcs_in(text: &str, realm: &str) -> Vec<String> {
    let mut section = String::new();
    let mut in_realm = false;
    let mut kdcs = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_ascii_lowercase();
            in_realm = false;
            continue;
        }
        if section != "realms" {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let (key, value) = (key.trim(), value.trim());
            if value.starts_with('{') {
                in_realm = key == realm;
            } else if in_realm && key.eq_ignore_ascii_case("kdc") {
                kdcs.push(value.to_string());
            }
        } else if line.starts_with('}') {
            in_realm = false;
        }
    }
    kdcs
}

/// Asks the KDC for a ticket for `service` in `realm` with the TGT.
pub fn service_ticket(
    tgt: &CachedTicket,
    service: &[String],
    realm: &str,
) -> Result<CachedTicket, SecurityError> {
    let (request, nonce) = tgs_req(tgt, service, realm)?;
    let mut last = None;
    for kdc in kdcs_of(realm)? {
        match exchange(&kdc, &request) {
            Ok(reply) => return read_tgs_rep(&reply, tgt, service, realm, nonce),
            Err(e) => last = Some(format!("{kdc}: {e}")),
        }
    }
    Err(logon(format!(
        "no KDC of {realm} answered: {}",
        last.unwrap_or_default()
    )))
}

/// A `kdc =` value with the port: `host`, `host:port`, `[v6]`,
/// `[v6]:port` or a bare IPv6 address; 88 when none is given.
fn with_port(kdc: &str) -> String {
    let has_port = match kdc.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => kdc.matches(':').count() == 1,
    };
    match (has_port, kdc.contains(':') && !kdc.starts_with('[')) {
        (true, _) => kdc.to_string(),
        (false, true) => format!("[{kdc}]:88"),
        (false, false) => format!("{kdc}:88"),
    }
}

/// One request and its reply over TCP: each prefixed with its length.
/// Every address of the KDC's name is tried in turn.
fn exchange(kdc: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut last = std::io::Error::other("no address");
    for addr in with_port(kdc).to_socket_addrs()? {
        match exchange_with(addr, request) {
            Ok(reply) => return Ok(reply),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn exchange_with(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, KDC_TIMEOUT)?;
    stream.set_read_timeout(Some(KDC_TIMEOUT))?;
    stream.set_write_timeout(Some(KDC_TIMEOUT))?;
    let mut framed = (request.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_REPLY {
        return Err(std::io::Error::other(format!("a {len}-byte reply")));
    }
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

/// The TGS-REQ and its nonce.
fn tgs_req(
    tgt: &CachedTicket,
    service: &[String],
    realm: &str,
) -> Result<(Vec<u8>, u32), SecurityError> {
    let (ticket, cipher) = tgt.for_ap_req()?;
    let nonce_bytes = random_bytes(4)?;
    let nonce = u32::from_be_bytes([
        nonce_bytes[0] & 0x7f,
        nonce_bytes[1],
        nonce_bytes[2],
        nonce_bytes[3],
    ]);
    let components: Vec<&str> = service.iter().map(String::as_str).collect();
    let body = KdcReqBody {
        kdc_options: ExplicitContextTag0::from(picky_asn1::wrapper::BitStringAsn1::from(
            picky_asn1::bit_string::BitString::with_len(32),
        )),
        cname: Optional::from(None),
        realm: ExplicitContextTag2::from(realm_string(realm)?),
        // NT-SRV-INST, as kvno names a service.
        sname: Optional::from(Some(ExplicitContextTag3::from(principal_name(
            2,
            &components,
        )?))),
        from: Optional::from(None),
        till: ExplicitContextTag5::from(kerberos_time(tgt.end_time.into())),
        rtime: Optional::from(None),
        nonce: ExplicitContextTag7::from(unsigned(nonce)),
        etype: ExplicitContextTag8::from(Asn1SequenceOf::from(vec![
            IntegerAsn1::from(vec![18]),
            IntegerAsn1::from(vec![17]),
        ])),
        addresses: Optional::from(None),
        enc_authorization_data: Optional::from(None),
        additional_tickets: Optional::from(None),
    };
    let body_der = picky_asn1_der::to_vec(&body).map_err(|_| token_error("a KDC-REQ-BODY"))?;
    let checksum = cipher
        .cipher()
        .checksum_type()
        .hasher()
        .checksum(
            &tgt.key,
            key_usages::TGS_REQ_PA_DATA_AP_REQ_AUTHENTICATOR_CKSUM,
            &body_der,
        )
        .map_err(crypto)?;
    let checksum_type = match cipher {
        CipherSuite::Aes128CtsHmacSha196 => HMAC_SHA1_96_AES128,
        _ => HMAC_SHA1_96_AES256,
    };
    let client: Vec<&str> = tgt.client.iter().map(String::as_str).collect();
    let (ap_req, _) = build_ap_req(&ApReqParts {
        ticket: &ticket,
        cipher: &cipher,
        key: &tgt.key,
        key_usage: key_usages::TGS_REQ_PA_DATA_AP_REQ_AUTHENTICATOR,
        client: &client,
        realm: &tgt.client_realm,
        checksum: (checksum_type, checksum),
        seq: None,
        mutual: false,
    })?;
    let ap_req = picky_asn1_der::to_vec(&ap_req).map_err(|_| token_error("an AP-REQ"))?;
    let request = TgsReq::from(KdcReq {
        pvno: ExplicitContextTag1::from(IntegerAsn1::from(vec![5])),
        msg_type: ExplicitContextTag2::from(IntegerAsn1::from(vec![12])),
        padata: Optional::from(Some(ExplicitContextTag3::from(Asn1SequenceOf::from(vec![
            PaData {
                padata_type: ExplicitContextTag1::from(IntegerAsn1::from(vec![PA_TGS_REQ])),
                padata_data: ExplicitContextTag2::from(OctetStringAsn1::from(ap_req)),
            },
        ])))),
        req_body: ExplicitContextTag4::from(body),
    });
    let encoded = picky_asn1_der::to_vec(&request).map_err(|_| token_error("a TGS-REQ"))?;
    Ok((encoded, nonce))
}

/// What a KRB-ERROR's code means ([RFC 4120] 7.5.9), for the ones a
/// TGS-REQ meets.
fn krb_error_text(code: u32) -> &'static str {
    match code {
        7 => "the KDC does not know this service principal",
        12 => "the KDC's policy refuses the request",
        14 => "the KDC has no AES key for the service",
        31 => "the request's checksum does not verify",
        32 => "the TGT has expired (kinit again)",
        34 => "the KDC saw the request before (replay)",
        37 => "this machine's clock is too far from the KDC's",
        41 => "the KDC cannot check the request (modified message)",
        _ => "the KDC refused the request",
    }
}

fn read_tgs_rep(
    reply: &[u8],
    tgt: &CachedTicket,
    service: &[String],
    realm: &str,
    nonce: u32,
) -> Result<CachedTicket, SecurityError> {
    let shown = format!("{}@{realm}", service.join("/"));
    if reply.first() == Some(&0x7e) {
        let error: KrbError = super::der::decode(reply, "a malformed KRB-ERROR")?;
        let code = error.0.error_code.0;
        return Err(logon(format!(
            "the KDC refused a ticket for {shown}: {} (error {code})",
            krb_error_text(code)
        )));
    }
    let rep: TgsRep = super::der::decode(reply, "a malformed TGS-REP")?;
    let rep = rep.0;
    let cipher = tgt
        .cipher()
        .ok_or_else(|| logon("the TGT's session key is not an AES key"))?;
    let plain = cipher
        .cipher()
        .decrypt(
            &tgt.key,
            key_usages::TGS_REP_ENC_SESSION_KEY,
            &rep.enc_part.0.cipher.0 .0,
        )
        .map_err(crypto)?;
    // Some KDCs tag the part as an EncASRepPart ([RFC 4120] 5.4.2).
    let part = match super::der::decode::<EncTgsRepPart>(&plain, "a malformed EncTGSRepPart") {
        Ok(part) => part.0,
        Err(_) => super::der::decode::<EncAsRepPart>(&plain, "a malformed EncTGSRepPart")?.0,
    };
    if integer(&part.nonce.0) != Some(nonce) {
        return Err(logon("the KDC's reply answers another request"));
    }
    let key_type = small_integer(&part.key.0.key_type.0)
        .filter(|t| aes_suite(*t).is_some())
        .ok_or_else(|| logon(format!("the ticket for {shown} has no AES session key")))?;
    let end_time = kerberos_time_to_system(&part.end_time.0)
        .ok_or(token_error("a ticket with a bad end time"))?;
    let ticket = picky_asn1_der::to_vec(&rep.ticket.0).map_err(|_| token_error("a ticket"))?;
    Ok(CachedTicket {
        client: principal_components(&rep.cname.0),
        client_realm: rep.crealm.0 .0.to_string(),
        server: principal_components(&part.sname.0),
        server_realm: part.srealm.0 .0.to_string(),
        key_type,
        key: part.key.0.key_value.0 .0.clone(),
        end_time,
        ticket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kdcs_of_a_realm_are_read_from_krb5_conf() {
        let conf = "[libdefaults]\n default_realm = A.TEST\n kdc = not.this\n\
                    [realms]\n A.TEST = {\n  kdc = kdc1.a.test:88 # main\n  kdc = 10.0.0.2\n  \
                    admin_server = adm.a.test\n }\n B.TEST = {\n  kdc = kdc.b.test\n }\n\
                    [domain_realm]\n kdc = nope\n";
        assert_eq!(kdcs_in(conf, "A.TEST"), vec!["kdc1.a.test:88", "10.0.0.2"]);
        assert_eq!(kdcs_in(conf, "B.TEST"), vec!["kdc.b.test"]);
        assert!(kdcs_in(conf, "C.TEST").is_empty());
    }

    #[test]
    fn kdc_addresses_get_port_88_unless_they_name_one() {
        assert_eq!(with_port("kdc.a.test"), "kdc.a.test:88");
        assert_eq!(with_port("kdc.a.test:750"), "kdc.a.test:750");
        assert_eq!(with_port("10.0.0.2"), "10.0.0.2:88");
        assert_eq!(with_port("[::1]"), "[::1]:88");
        assert_eq!(with_port("[::1]:8888"), "[::1]:8888");
        assert_eq!(with_port("::1"), "[::1]:88");
    }

    #[test]
    fn krb_errors_are_named() {
        assert!(krb_error_text(7).contains("does not know"));
        assert!(krb_error_text(32).contains("kinit"));
        assert!(krb_error_text(99).contains("refused"));
    }
}
