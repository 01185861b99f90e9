//! What a certificate says: subject, names, issuer, validity, key; and
//! the checks an import makes of a chain.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::{invalid, thumbprint, Result};

/// The kind and size of a certificate's public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyKind {
    /// `RSA`, `ECDSA`, or the algorithm's OID.
    pub algorithm: String,
    pub bits: usize,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.algorithm, self.bits)
    }
}

/// One stored certificate, as `inetsrv cert list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CertInfo {
    pub thumbprint: String,
    pub name: Option<String>,
    pub subject: String,
    pub issuer: String,
    /// Subject alternative names (DNS names and IP addresses).
    pub sans: Vec<String>,
    pub serial: String,
    /// Seconds since 1970, UTC.
    pub not_before: i64,
    pub not_after: i64,
    pub key: KeyKind,
    pub self_signed: bool,
    /// Certificates in the stored chain, the leaf included.
    pub chain_len: usize,
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| invalid(format!("a certificate is not valid X.509 DER: {e}")))
}

/// A time as `2026-12-05 09:00:00 UTC`.
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

impl CertInfo {
    pub fn of(chain: &[CertificateDer<'_>], name: Option<String>) -> Result<CertInfo> {
        let leaf_der = chain.first().ok_or_else(|| invalid("the chain is empty"))?;
        let leaf = parse(leaf_der)?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = leaf.subject_alternative_name() {
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => sans.push(d.to_string()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => sans.push(
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                                .to_string(),
                        ),
                        16 => sans.push(
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                                .to_string(),
                        ),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let spki = leaf.public_key();
        let key = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyKind {
                algorithm: "RSA".into(),
                bits: rsa.key_size(),
            },
            Ok(x509_parser::public_key::PublicKey::EC(point)) => KeyKind {
                algorithm: "ECDSA".into(),
                bits: point.key_size(),
            },
            _ => KeyKind {
                algorithm: spki.algorithm.algorithm.to_id_string(),
                bits: spki.subject_public_key.data.len() * 8,
            },
        };
        Ok(CertInfo {
            thumbprint: thumbprint(leaf_der),
            name,
            subject: leaf.subject().to_string(),
            issuer: leaf.issuer().to_string(),
            sans,
            serial: leaf.raw_serial_as_string(),
            not_before: leaf.validity().not_before.timestamp(),
            not_after: leaf.validity().not_after.timestamp(),
            key,
            self_signed: leaf.subject().as_raw() == leaf.issuer().as_raw(),
            chain_len: chain.len(),
        })
    }

    /// Warnings for a certificate outside its validity at `now`.
    pub fn validity_warnings(&self, now: SystemTime) -> Vec<String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64;
        let mut out = Vec::new();
        if now > self.not_after {
            out.push(format!(
                "the certificate expired on {} (valid from {}); clients will refuse it",
                format_time(self.not_after),
                format_time(self.not_before)
            ));
        } else if now < self.not_before {
            out.push(format!(
                "the certificate is not valid until {} (check the clock); clients will refuse it until then",
                format_time(self.not_before)
            ));
        }
        out
    }
}

/// Each certificate after the first must be the issuer of the one before.
pub fn check_chain_order(chain: &[CertificateDer<'_>]) -> Result<()> {
    let parsed = chain.iter().map(parse).collect::<Result<Vec<_>>>()?;
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
            return Err(invalid(format!(
                "the chain is out of order: certificate {} ({}) was not issued by certificate {} ({}); give the server's certificate first, then each issuer after what it issued",
                i + 1,
                pair[0].subject(),
                i + 2,
                pair[1].subject()
            )));
        }
    }
    Ok(())
}

/// Puts the key's certificate first and each issuer after what it issued
/// (PKCS#12 files hold their certificates in any order); certificates
/// outside that chain are left out.
pub fn order_chain(
    certs: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<Vec<CertificateDer<'static>>> {
    let leaf = certs
        .iter()
        .position(|c| crate::certified_key(std::slice::from_ref(c), key).is_ok())
        .ok_or_else(|| invalid("no certificate in the file belongs to its private key"))?;
    let mut rest = certs;
    let mut last = rest.remove(leaf);
    let mut chain = Vec::new();
    loop {
        let parsed = parse(&last)?;
        // A self-signed certificate ends the chain.
        let issuer = (parsed.issuer().as_raw() != parsed.subject().as_raw())
            .then(|| parsed.issuer().as_raw().to_vec());
        chain.push(last);
        let Some(next) = issuer.and_then(|issuer| {
            rest.iter()
                .position(|c| parse(c).is_ok_and(|p| p.subject().as_raw() == issuer.as_slice()))
        }) else {
            return Ok(chain);
        };
        last = rest.remove(next);
    }
}
