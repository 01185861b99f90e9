//! The server certificate store (the role of Windows' machine `MY` store
//! for IIS): certificates with their private keys in `STATE/certs/`,
//! addressed by their SHA-1 thumbprint (IIS's `SSLCertHash`) or an
//! optional friendly name.
//!
//! Each certificate is three files named by its thumbprint: `T.crt` (the
//! chain as PEM, leaf first), `T.key` (the private key as PKCS#8 PEM, mode
//! 0600) and `T.json` (its friendly name), and optionally a fourth,
//! `T.ocsp`: an OCSP response (DER) the listener staples to handshakes. The directory is 0700: only the
//! service's user reads keys; workers never do (the listener terminates
//! TLS in the service). Every write goes to a temporary file renamed into
//! place, key before certificate, so a certificate listed is always
//! usable, and a refused import leaves the store as it was.

mod info;
mod ocsp;
mod pem;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

pub use info::{format_time, CertInfo, KeyKind};
pub use ocsp::OcspStatus;

/// What can go wrong; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("no certificate {0} in the store (see `inetsrv cert list`)")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

fn invalid(text: impl Into<String>) -> Error {
    Error::Invalid(text.into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The SHA-1 thumbprint of a DER certificate, as Windows shows it:
/// 40 upper-case hex digits.
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

/// A thumbprint as users type it (any case, spaces or colons between
/// bytes), in the store's form; `None` when it is not 20 hex bytes.
pub fn normalise_thumbprint(text: &str) -> Option<String> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    (compact.len() == 40 && compact.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| compact.to_ascii_uppercase())
}

/// What a certificate file says (PEM, its first certificate, or DER): a
/// client's certificate to map to a user, for instance.
pub fn certificate_file_info(bytes: &[u8]) -> Result<CertInfo> {
    let is_pem = bytes.windows(10).any(|w| w == b"-----BEGIN");
    let chain = if is_pem {
        pem::certificates(bytes)?
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    CertInfo::of(&chain[..1], None)
}

/// The key algorithm of a new self-signed certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NewKey {
    /// ECDSA P-256: fast handshakes, what modern servers default to.
    #[default]
    EcdsaP256,
    /// RSA 2048, for old clients.
    Rsa2048,
}

/// A certificate with its key, as the listener loads it.
#[derive(Debug)]
pub struct Loaded {
    pub info: CertInfo,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The stored OCSP response, with what it says, or why it cannot be
    /// stapled (it expired, or no longer fits the certificate).
    pub ocsp: Option<std::result::Result<(Vec<u8>, OcspStatus), String>>,
}

impl Loaded {
    /// rustls's form: the chain with a signing key, and the OCSP response
    /// to staple when one is stored and current.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>> {
        let mut key = certified_key(&self.chain, &self.key)?;
        if let Some(Ok((response, status))) = &self.ocsp {
            if status.is_current(now()) {
                key.ocsp = Some(response.clone());
            }
        }
        Ok(Arc::new(key))
    }

    /// Why the stored OCSP response is not stapled, when one is stored and
    /// is not.
    pub fn ocsp_problem(&self) -> Option<String> {
        match &self.ocsp {
            Some(Err(e)) => Some(e.clone()),
            Some(Ok((_, status))) if !status.is_current(now()) => Some(format!(
                "its OCSP response is out of date (next update was {}); store a fresh one with `inetsrv cert ocsp`",
                status.next_update.map(format_time).unwrap_or_default()
            )),
            _ => None,
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    pub info: CertInfo,
    /// Facts the user should know that do not stop the import (an expired
    /// certificate, one not valid yet).
    pub warnings: Vec<String>,
    /// The certificate was in the store already (its name may be new).
    pub already_present: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// The store in one directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

fn certified_key(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider.key_provider.load_private_key(key.clone_key()).map_err(|e| {
        invalid(format!(
            "the private key is of a kind the server cannot use ({e}); use RSA (2048 bits or more) or ECDSA P-256/P-384"
        ))
    })?;
    let certified = CertifiedKey::new(chain.to_vec(), signer);
    certified.keys_match().map_err(|_| {
        invalid("the private key does not belong to the certificate (its public key is another one); give the key the certificate was issued for")
    })?;
    Ok(certified)
}

impl Store {
    /// The store of a state directory: `STATE/certs`.
    pub fn for_state_dir(state: &Path) -> Store {
        Store {
            dir: state.join("certs"),
        }
    }

    /// The store in any directory.
    pub fn at(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, thumb: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{thumb}.{ext}"))
    }

    /// Every certificate, by thumbprint order.
    pub fn list(&self) -> Result<Vec<CertInfo>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut thumbs: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let thumb = name.strip_suffix(".crt")?;
                normalise_thumbprint(thumb).filter(|t| t == thumb)
            })
            .collect();
        thumbs.sort();
        let mut out = Vec::new();
        for thumb in thumbs {
            match self.info(&thumb) {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::warn!(thumbprint = %thumb, error = %e, "unreadable certificate in the store")
                }
            }
        }
        Ok(out)
    }

    fn info(&self, thumb: &str) -> Result<CertInfo> {
        let path = self.file(thumb, "crt");
        let text = std::fs::read(&path).map_err(io(&path))?;
        let chain =
            pem::certificates(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let meta = self.meta(thumb);
        CertInfo::of(&chain, meta.name)
    }

    fn meta(&self, thumb: &str) -> Meta {
        std::fs::read(self.file(thumb, "json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The thumbprint a user's word names: a thumbprint (any case and
    /// spacing) or a friendly name.
    pub fn resolve(&self, which: &str) -> Result<String> {
        if let Some(thumb) = normalise_thumbprint(which) {
            if self.file(&thumb, "crt").exists() {
                return Ok(thumb);
            }
        }
        self.list()?
            .into_iter()
            .find(|c| {
                c.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(which))
            })
            .map(|c| c.thumbprint)
            .ok_or_else(|| Error::NotFound(which.to_string()))
    }

    /// A certificate with its key.
    pub fn load(&self, which: &str) -> Result<Loaded> {
        let thumb = self.resolve(which)?;
        let crt = self.file(&thumb, "crt");
        let chain = pem::certificates(&std::fs::read(&crt).map_err(io(&crt))?)
            .map_err(|e| invalid(format!("{}: {e}", crt.display())))?;
        let key_path = self.file(&thumb, "key");
        let key = pem::private_key(&std::fs::read(&key_path).map_err(io(&key_path))?)
            .map_err(|e| invalid(format!("{}: {e}", key_path.display())))?;
        let info = CertInfo::of(&chain, self.meta(&thumb).name)?;
        let ocsp = self.read_ocsp(&thumb).map(|read| {
            read.and_then(|response| {
                ocsp::check(&response, &chain)
                    .map(|status| (response, status))
                    .map_err(|e| e.to_string())
            })
        });
        Ok(Loaded {
            info,
            chain,
            key,
            ocsp,
        })
    }

    fn read_ocsp(&self, thumb: &str) -> Option<std::result::Result<Vec<u8>, String>> {
        let path = self.file(thumb, "ocsp");
        match std::fs::read(&path) {
            Ok(bytes) => Some(Ok(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(format!("{}: {e}", path.display()))),
        }
    }

    /// What the stored OCSP response of a certificate says, if it has one.
    pub fn ocsp_status(&self, which: &str) -> Result<Option<OcspStatus>> {
        let loaded = self.load(which)?;
        match loaded.ocsp {
            None => Ok(None),
            Some(Ok((_, status))) => Ok(Some(status)),
            Some(Err(e)) => Err(invalid(e)),
        }
    }

    /// Stores an OCSP response (DER, as `openssl ocsp -respout` writes it)
    /// for a certificate, after checking it is a successful response saying
    /// the certificate is good and is current. Replaces the one before.
    pub fn set_ocsp(&self, which: &str, response: &[u8]) -> Result<(String, OcspStatus)> {
        let loaded = self.load(which)?;
        let status = ocsp::check(response, &loaded.chain)?;
        if !status.is_current(now()) {
            return Err(invalid(format!(
                "the OCSP response is out of date (valid {} to {}); fetch a fresh one",
                format_time(status.this_update),
                status.next_update.map(format_time).unwrap_or_default()
            )));
        }
        let thumb = loaded.info.thumbprint;
        self.write_file(&self.file(&thumb, "ocsp"), response, 0o600)?;
        Ok((thumb, status))
    }

    /// Stops stapling for a certificate; true when a response was stored.
    pub fn clear_ocsp(&self, which: &str) -> Result<bool> {
        let thumb = self.resolve(which)?;
        let path = self.file(&thumb, "ocsp");
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Imports a chain (leaf first) and its key, as PEM.
    pub fn import_pem(
        &self,
        chain_pem: &[u8],
        key_pem: &[u8],
        name: Option<&str>,
    ) -> Result<Imported> {
        let chain = pem::certificates(chain_pem)?;
        let key = pem::private_key(key_pem)?;
        self.import(chain, key, name)
    }

    /// Imports a PKCS#12 (.pfx/.p12) file as Windows exports it: the
    /// certificate with its private key and, when exported, its chain.
    pub fn import_pfx(&self, pfx: &[u8], password: &str, name: Option<&str>) -> Result<Imported> {
        let store = p12_keystore::KeyStore::from_pkcs12(
            pfx,
            password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| match e {
            p12_keystore::error::Error::MacError(_) => {
                invalid("the PFX password is wrong (the file's integrity check failed); nothing was imported")
            }
            e => invalid(format!("not a PKCS#12 (.pfx) file this server can read: {e}")),
        })?;
        let (_, keychain) = store.private_key_chain().ok_or_else(|| {
            invalid("the PFX file holds no private key with its certificate; export it from Windows with \"Yes, export the private key\"")
        })?;
        let key = PrivateKeyDer::Pkcs8(keychain.key().as_der().to_vec().into());
        let certs: Vec<CertificateDer<'static>> = keychain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(invalid(
                "the PFX file holds a private key without its certificate",
            ));
        }
        // Windows writes the chain in any order: put the key's
        // certificate first, then each issuer after what it issued.
        let chain = info::order_chain(certs, &key)?;
        self.import(chain, key, name)
    }

    fn import(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        name: Option<&str>,
    ) -> Result<Imported> {
        if chain.is_empty() {
            return Err(invalid(
                "no certificate was given (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            ));
        }
        info::check_chain_order(&chain)?;
        certified_key(&chain, &key)?;
        let mut info = CertInfo::of(&chain, name.map(str::to_string))?;
        let warnings = info.validity_warnings(std::time::SystemTime::now());
        if let Some(name) = name {
            self.check_name(name, &info.thumbprint)?;
        }
        let thumb = info.thumbprint.clone();
        let already_present = self.file(&thumb, "crt").exists();
        if already_present && name.is_none() {
            info.name = self.meta(&thumb).name;
        }
        self.write_entry(&thumb, &chain, &key, info.name.as_deref())?;
        Ok(Imported {
            info,
            warnings,
            already_present,
        })
    }

    fn check_name(&self, name: &str, thumb: &str) -> Result<()> {
        if name.trim().is_empty() || name.chars().any(|c| c.is_control()) {
            return Err(invalid("a friendly name must be printable and not empty"));
        }
        if normalise_thumbprint(name).is_some() {
            return Err(invalid(format!(
                "'{name}' looks like a thumbprint; choose a friendly name that does not"
            )));
        }
        if let Some(other) = self.list()?.into_iter().find(|c| {
            c.thumbprint != thumb
                && c.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        }) {
            return Err(invalid(format!(
                "the name '{name}' is already certificate {}'s",
                other.thumbprint
            )));
        }
        Ok(())
    }

    /// Makes and stores a self-signed certificate for `dns` names (the
    /// first is the subject's common name), valid from an hour ago for
    /// `days`.
    pub fn create_self_signed(
        &self,
        dns: &[String],
        name: Option<&str>,
        kind: NewKey,
        days: u32,
    ) -> Result<CertInfo> {
        if dns.is_empty() {
            return Err(invalid("give at least one DNS name (--dns HOST)"));
        }
        let mut params = rcgen::CertificateParams::new(dns.to_vec())
            .map_err(|e| invalid(format!("cannot make a certificate for {dns:?}: {e}")))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, dns[0].clone());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(days.max(1)));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let key = match kind {
            NewKey::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            NewKey::Rsa2048 => {
                params
                    .key_usages
                    .push(rcgen::KeyUsagePurpose::KeyEncipherment);
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        }
        .map_err(|e| invalid(format!("cannot generate a key: {e}")))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| invalid(format!("cannot sign the certificate: {e}")))?;
        let chain = vec![cert.der().clone()];
        let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        Ok(self.import(chain, key_der, name)?.info)
    }

    /// The chain as PEM, and the key as PEM when `with_key`.
    pub fn export(&self, which: &str, with_key: bool) -> Result<(String, Option<String>)> {
        let loaded = self.load(which)?;
        let chain = pem::encode_certificates(&loaded.chain);
        let key = with_key.then(|| pem::encode_private_key(&loaded.key));
        Ok((chain, key))
    }

    /// Sets or clears a certificate's friendly name.
    pub fn rename(&self, which: &str, name: Option<&str>) -> Result<String> {
        let thumb = self.resolve(which)?;
        if let Some(name) = name {
            self.check_name(name, &thumb)?;
        }
        self.write_meta(&thumb, name)?;
        Ok(thumb)
    }

    /// Removes a certificate and its key.
    pub fn delete(&self, which: &str) -> Result<String> {
        let thumb = self.resolve(which)?;
        // The certificate first: without it the entry is not listed.
        for ext in ["crt", "key", "json", "ocsp"] {
            let path = self.file(&thumb, ext);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(thumb)
    }

    fn ensure_dir(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !self.dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(io(&self.dir))?;
        }
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&self.dir))
    }

    fn write_entry(
        &self,
        thumb: &str,
        chain: &[CertificateDer<'static>],
        key: &PrivateKeyDer<'static>,
        name: Option<&str>,
    ) -> Result<()> {
        self.ensure_dir()?;
        self.write_file(
            &self.file(thumb, "key"),
            pem::encode_private_key(key).as_bytes(),
            0o600,
        )?;
        self.write_meta(thumb, name)?;
        self.write_file(
            &self.file(thumb, "crt"),
            pem::encode_certificates(chain).as_bytes(),
            0o644,
        )
    }

    fn write_meta(&self, thumb: &str, name: Option<&str>) -> Result<()> {
        let meta = Meta {
            name: name.map(str::to_string),
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| invalid(e.to_string()))?;
        self.write_file(&self.file(thumb, "json"), &text, 0o600)
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&temp)?;
            file.write_all(data)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(io(path))
    }
}

#[cfg(test)]
mod tests;
