//! OCSP responses to staple (RFC 6960): the checks made before a response
//! is stored beside its certificate, and again each time the listener
//! loads it. The response's signature is the client's to verify; here we
//! make sure the response is one worth sending: successful, about this
//! certificate, saying "good", and current.
//!
//! The response is read with a small DER walker: the few fields needed are
//! at fixed places in RFC 6960's structures (section 4.2.1).

use rustls::pki_types::CertificateDer;
use sha1::{Digest, Sha1};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{invalid, Result};

/// What a stored response says, for `inetsrv cert list`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OcspStatus {
    /// Seconds since 1970, UTC.
    pub this_update: i64,
    /// When the responder will have newer information; absent when the
    /// responder did not say (the response is then used until replaced).
    pub next_update: Option<i64>,
}

impl OcspStatus {
    /// Whether a client would still accept it at `now` (seconds since 1970).
    pub fn is_current(&self, now: i64) -> bool {
        self.this_update <= now + CLOCK_SKEW && self.next_update.is_none_or(|n| now < n)
    }
}

/// Clocks differ; a response made a moment ago on the responder's clock is
/// not "from the future".
const CLOCK_SKEW: i64 = 300;

/// One DER element: its tag byte and contents.
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
}

/// Reads the elements of a constructed element's contents in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn next(&mut self) -> Result<Element<'a>> {
        let bad = || invalid("the OCSP response is not valid DER");
        let (&tag, after_tag) = self.rest.split_first().ok_or_else(bad)?;
        // Tags above 30 take more bytes; RFC 6960 uses none.
        if tag & 0x1f == 0x1f {
            return Err(bad());
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or_else(bad)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || after_len.len() < count {
                return Err(bad());
            }
            let (bytes, rest) = after_len.split_at(count);
            after_len = rest;
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
        };
        if after_len.len() < len {
            return Err(bad());
        }
        let (content, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok(Element { tag, content })
    }

    /// The next element, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<Element<'a>> {
        let element = self.next()?;
        if element.tag != tag {
            return Err(invalid(format!(
                "the OCSP response is malformed: expected {what}"
            )));
        }
        Ok(element)
    }

    /// The next element when it has `tag`; otherwise nothing is read.
    fn optional(&mut self, tag: u8) -> Result<Option<Element<'a>>> {
        match self.rest.first() {
            Some(&t) if t == tag => self.next().map(Some),
            _ => Ok(None),
        }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

const SEQUENCE: u8 = 0x30;
const ENUMERATED: u8 = 0x0a;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const INTEGER: u8 = 0x02;
const GENERALIZED_TIME: u8 = 0x18;
/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1.
const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// id-sha1, 1.3.14.3.2.26: the hash of CertIDs that name their issuer by it.
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

/// `YYYYMMDDHHMMSS[.fff]Z` as seconds since 1970.
fn generalized_time(bytes: &[u8]) -> Result<i64> {
    let bad = || invalid("the OCSP response has a malformed time");
    let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
    let text = text.strip_suffix('Z').ok_or_else(bad)?;
    let whole = text.split('.').next().unwrap_or_default();
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| whole[r].parse::<u32>().map_err(|_| bad());
    let month = time::Month::try_from(num(4..6)? as u8).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8)
        .map_err(|_| bad())?;
    let clock = time::Time::from_hms(num(8..10)? as u8, num(10..12)? as u8, num(12..14)? as u8)
        .map_err(|_| bad())?;
    Ok(time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp())
}

/// An INTEGER's value bytes without the leading zero DER adds to keep a
/// number positive, so serials compare as X.509 shows them.
fn unsigned(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    }
}

/// Checks that `response` (DER) is a successful basic OCSP response saying
/// the leaf of `chain` is good, and returns its times. The issuer, when
/// the chain holds it, must be the one the response names.
pub fn check(response: &[u8], chain: &[CertificateDer<'_>]) -> Result<OcspStatus> {
    let leaf_der = chain.first().ok_or_else(|| invalid("the chain is empty"))?;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| invalid(format!("the certificate is not valid X.509: {e}")))?;
    let issuer_key_hash = chain
        .get(1)
        .and_then(|der| X509Certificate::from_der(der).ok())
        .map(|(_, issuer)| Sha1::digest(&issuer.public_key().subject_public_key.data).to_vec());

    let mut top = Reader::new(response);
    let outer = top.expect(SEQUENCE, "an OCSPResponse")?;
    if !top.is_empty() {
        return Err(invalid("the OCSP response has bytes after its end"));
    }
    let mut outer = Reader::new(outer.content);
    let status = outer.expect(ENUMERATED, "the response status")?;
    match status.content {
        [0] => {}
        [code] => {
            let meaning = match code {
                1 => "malformedRequest",
                2 => "internalError",
                3 => "tryLater",
                5 => "sigRequired",
                6 => "unauthorized",
                _ => "an unknown status",
            };
            return Err(invalid(format!(
                "the OCSP responder did not answer the request: {meaning} ({code})"
            )));
        }
        _ => return Err(invalid("the OCSP response status is malformed")),
    }
    let bytes = outer.expect(0xa0, "the response bytes")?;
    let mut bytes = Reader::new(
        Reader::new(bytes.content)
            .expect(SEQUENCE, "ResponseBytes")?
            .content,
    );
    if bytes.expect(OID, "the response type")?.content != OCSP_BASIC {
        return Err(invalid(
            "the OCSP response is not a basic OCSP response (id-pkix-ocsp-basic)",
        ));
    }
    let basic = bytes.expect(OCTET_STRING, "the response")?;
    let basic = Reader::new(basic.content).expect(SEQUENCE, "a BasicOCSPResponse")?;
    let tbs = Reader::new(basic.content).expect(SEQUENCE, "the ResponseData")?;
    let mut data = Reader::new(tbs.content);
    data.optional(0xa0)?; // version
    let responder = data.next()?;
    if responder.tag != 0xa1 && responder.tag != 0xa2 {
        return Err(invalid(
            "the OCSP response is malformed: expected a responder id",
        ));
    }
    data.expect(GENERALIZED_TIME, "producedAt")?;
    let responses = data.expect(SEQUENCE, "the responses")?;
    let mut responses = Reader::new(responses.content);
    let leaf_serial = unsigned(leaf.raw_serial());
    while !responses.is_empty() {
        let single = responses.expect(SEQUENCE, "a SingleResponse")?;
        let mut single = Reader::new(single.content);
        let cert_id = single.expect(SEQUENCE, "a CertID")?;
        let mut cert_id = Reader::new(cert_id.content);
        let algorithm = cert_id.expect(SEQUENCE, "the CertID hash algorithm")?;
        let algorithm = Reader::new(algorithm.content).expect(OID, "a hash algorithm")?;
        cert_id.expect(OCTET_STRING, "issuerNameHash")?;
        let key_hash = cert_id.expect(OCTET_STRING, "issuerKeyHash")?;
        let serial = cert_id.expect(INTEGER, "the serial number")?;
        if unsigned(serial.content) != leaf_serial {
            continue;
        }
        if let Some(expected) = &issuer_key_hash {
            if algorithm.content == SHA1 && key_hash.content != expected.as_slice() {
                continue;
            }
        }
        let cert_status = single.next()?;
        match cert_status.tag {
            0x80 => {}
            0xa1 => {
                let when = Reader::new(cert_status.content)
                    .expect(GENERALIZED_TIME, "the revocation time")
                    .and_then(|t| generalized_time(t.content))
                    .map(crate::format_time)
                    .unwrap_or_else(|_| "an unreadable time".into());
                return Err(invalid(format!(
                    "the OCSP response says the certificate was revoked (at {when}); replace the certificate instead"
                )));
            }
            _ => {
                return Err(invalid(
                    "the OCSP responder does not know the certificate (status unknown): ask the CA that issued it",
                ))
            }
        }
        let this_update = generalized_time(single.expect(GENERALIZED_TIME, "thisUpdate")?.content)?;
        let next_update = match single.optional(0xa0)? {
            Some(n) => Some(generalized_time(
                Reader::new(n.content)
                    .expect(GENERALIZED_TIME, "nextUpdate")?
                    .content,
            )?),
            None => None,
        };
        return Ok(OcspStatus {
            this_update,
            next_update,
        });
    }
    Err(invalid(format!(
        "the OCSP response is not about this certificate (serial {}): it answers for others",
        leaf.raw_serial_as_string()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a DER element.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            let len = (content.len() as u32).to_be_bytes();
            let skip = len.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn response(serial: &[u8], status: Vec<u8>, next: Option<&str>) -> Vec<u8> {
        let cert_id = der(
            SEQUENCE,
            &[
                der(SEQUENCE, &der(OID, SHA1)),
                der(OCTET_STRING, &[1; 20]),
                der(OCTET_STRING, &[2; 20]),
                der(INTEGER, serial),
            ]
            .concat(),
        );
        let mut single = [cert_id, status, der(GENERALIZED_TIME, b"20261201000000Z")].concat();
        if let Some(next) = next {
            single.extend(der(0xa0, &der(GENERALIZED_TIME, next.as_bytes())));
        }
        let data = der(
            SEQUENCE,
            &[
                der(0xa2, &der(OCTET_STRING, &[3; 20])),
                der(GENERALIZED_TIME, b"20261201000000Z"),
                der(SEQUENCE, &der(SEQUENCE, &single)),
            ]
            .concat(),
        );
        let basic = der(
            SEQUENCE,
            &[data, der(SEQUENCE, &[]), der(0x03, &[0])].concat(),
        );
        let bytes = der(
            SEQUENCE,
            &[der(OID, OCSP_BASIC), der(OCTET_STRING, &basic)].concat(),
        );
        der(
            SEQUENCE,
            &[der(ENUMERATED, &[0]), der(0xa0, &bytes)].concat(),
        )
    }

    fn leaf() -> (CertificateDer<'static>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let serial = X509Certificate::from_der(&der)
            .unwrap()
            .1
            .raw_serial()
            .to_vec();
        (der, serial)
    }

    #[test]
    fn a_good_response_for_the_certificate_is_accepted_with_its_times() {
        let (cert, serial) = leaf();
        let status = check(
            &response(&serial, der(0x80, &[]), Some("20261208000000Z")),
            &[cert],
        )
        .unwrap();
        assert_eq!(status.this_update, 1_796_083_200);
        assert_eq!(status.next_update, Some(1_796_083_200 + 7 * 86_400));
        assert!(status.is_current(1_796_083_200 + 86_400));
        assert!(!status.is_current(1_796_083_200 + 7 * 86_400));
    }

    #[test]
    fn revoked_unknown_other_certificates_and_failures_are_refused_by_name() {
        let (cert, serial) = leaf();
        let chain = [cert];
        let revoked = der(0xa1, &der(GENERALIZED_TIME, b"20261202000000Z"));
        let e = check(&response(&serial, revoked, None), &chain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("revoked (at 2026-12-02 00:00:00 UTC)"), "{e}");
        let e = check(&response(&serial, der(0x82, &[]), None), &chain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("status unknown"), "{e}");
        let e = check(&response(&[0x7f, 1], der(0x80, &[]), None), &chain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not about this certificate"), "{e}");
        let try_later = der(SEQUENCE, &der(ENUMERATED, &[3]));
        let e = check(&try_later, &chain).unwrap_err().to_string();
        assert!(e.contains("tryLater"), "{e}");
        let good = response(&serial, der(0x80, &[]), None);
        for cut in [1, 10, good.len() / 2, good.len() - 1] {
            let e = check(&good[..cut], &chain).unwrap_err().to_string();
            assert!(e.contains("OCSP response"), "{cut}: {e}");
        }
        assert!(check(b"-----BEGIN", &chain).is_err());
    }
}
