//! PEM in and out: certificates and private keys (PKCS#8, PKCS#1 RSA,
//! SEC1 EC) as OpenSSL and Windows' exports write them.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{invalid, Result};

/// Every certificate in the text, in order.
pub fn certificates(text: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("the certificate file is not valid PEM: {e:?}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "no certificate in the file (expected \"-----BEGIN CERTIFICATE-----\" blocks)",
        ));
    }
    Ok(certs)
}

/// The one private key in the text.
pub fn private_key(text: &[u8]) -> Result<PrivateKeyDer<'static>> {
    if text
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
    {
        return Err(invalid(
            "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN.pem) or import a .pfx with its password",
        ));
    }
    PrivateKeyDer::from_pem_slice(text).map_err(|e| {
        invalid(format!(
            "no private key in the key file (expected \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"): {e:?}"
        ))
    })
}

fn armour(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub fn encode_certificates(chain: &[CertificateDer<'_>]) -> String {
    chain.iter().map(|c| armour("CERTIFICATE", c)).collect()
}

pub fn encode_private_key(key: &PrivateKeyDer<'_>) -> String {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    armour(label, key.secret_der())
}
