//! SECURE properties at rest. IIS 6 encrypts them with a session key the
//! machine protects; inetsrv seals each value with XChaCha20-Poly1305 under
//! a 256-bit key kept in a file only its owner can read (`MetaBase.key`),
//! or, for exports and backups made with a password, under a key derived
//! from that password (PBKDF2-HMAC-SHA256). The property ID is bound into
//! each seal, so a sealed value cannot be moved to another property.
//!
//! A sealed value is written as hex: `ISV1` | 24-byte nonce | ciphertext.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;

use crate::error::{Error, Result};
use crate::value::{DataType, Value};

const MAGIC: &[u8; 4] = b"ISV1";
const NONCE_LEN: usize = 24;
const PBKDF2_ROUNDS: u32 = 200_000;
/// The plaintext sealed under a password key to check the password.
const PASSWORD_CHECK: &[u8] = b"inetsrv password check";
const PASSWORD_CHECK_ID: u32 = 0;

/// A 256-bit sealing key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// What reading a SECURE property's stored text gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    /// The value, decrypted (or given as plain text by a hand edit).
    Value(Value),
    /// Sealed under a key not available here (another machine's, or IIS's
    /// own): kept as it is, not readable.
    Foreign,
}

impl SecretKey {
    pub fn generate() -> Result<SecretKey> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Crypto(format!("no randomness: {e}")))?;
        Ok(SecretKey(key))
    }

    /// Derives a key from a password and salt.
    pub fn from_password(password: &str, salt: &[u8]) -> SecretKey {
        SecretKey(pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(
            password.as_bytes(),
            salt,
            PBKDF2_ROUNDS,
        ))
    }

    /// Loads the key file, or returns `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<SecretKey>> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let raw = hex::decode(text.trim()).map_err(|_| {
                    Error::Crypto(format!(
                        "{}: not a key file (expected 64 hex digits)",
                        path.display()
                    ))
                })?;
                let key: [u8; 32] = raw.try_into().map_err(|_| {
                    Error::Crypto(format!(
                        "{}: not a key file (expected 64 hex digits)",
                        path.display()
                    ))
                })?;
                Ok(Some(SecretKey(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Loads the key file, creating it (mode 0600) with a fresh key when
    /// there is none.
    pub fn load_or_create(path: &Path) -> Result<SecretKey> {
        if let Some(key) = SecretKey::load(path)? {
            return Ok(key);
        }
        let key = SecretKey::generate()?;
        write_private_file(path, format!("{}\n", hex::encode(key.0)).as_bytes())?;
        Ok(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // A 32-byte slice is always a valid XChaCha20-Poly1305 key.
        XChaCha20Poly1305::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// Seals a value of property `id`.
    pub fn seal(&self, id: u32, value: &Value) -> Result<String> {
        self.seal_bytes(id, &value.to_wire_bytes())
    }

    fn seal_bytes(&self, id: u32, plain: &[u8]) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Crypto(format!("no randomness: {e}")))?;
        let aad = id.to_le_bytes();
        let sealed = self
            .cipher()
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(4 + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(hex::encode(out))
    }

    fn open_bytes(&self, id: u32, text: &str) -> Option<Vec<u8>> {
        let raw = hex::decode(text.trim()).ok()?;
        let body = raw.strip_prefix(MAGIC.as_slice())?;
        if body.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().ok()?;
        let aad = id.to_le_bytes();
        self.cipher()
            .decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()
    }

    /// A token that proves knowledge of this (password) key.
    pub fn password_check(&self) -> Result<String> {
        self.seal_bytes(PASSWORD_CHECK_ID, PASSWORD_CHECK)
    }

    pub fn verify_password_check(&self, token: &str) -> bool {
        self.open_bytes(PASSWORD_CHECK_ID, token).as_deref() == Some(PASSWORD_CHECK)
    }
}

/// True when `text` is a value sealed by inetsrv (under some key).
pub fn is_sealed_text(text: &str) -> bool {
    text.len() > 8
        && text.len().is_multiple_of(2)
        && text.bytes().all(|b| b.is_ascii_hexdigit())
        && text[..8].eq_ignore_ascii_case(&hex::encode(MAGIC))
}

/// True when `text` looks like IIS's own encrypted form (hex beginning
/// with the `IcDb` signature).
fn is_iis_sealed_text(text: &str) -> bool {
    // All hex digits first: only then is slicing at byte 8 safe.
    text.len() > 8
        && text.bytes().all(|b| b.is_ascii_hexdigit())
        && text[..8].eq_ignore_ascii_case("49634462")
}

/// Reads the stored text of a SECURE property. Text that is neither
/// inetsrv's sealed form nor IIS's is plain text typed by hand (a hand edit
/// of MetaBase.xml may set a password in clear; it is sealed on the next
/// save).
pub fn unseal(
    key: Option<&SecretKey>,
    id: u32,
    data_type: DataType,
    text: &str,
    parse_plain: impl FnOnce(&str) -> std::result::Result<Value, String>,
) -> std::result::Result<Unsealed, String> {
    if is_sealed_text(text) {
        let Some(plain) = key.and_then(|k| k.open_bytes(id, text)) else {
            return Ok(Unsealed::Foreign);
        };
        return Value::from_wire_bytes(data_type, &plain)
            .map(Unsealed::Value)
            .ok_or_else(|| format!("sealed value does not decode as {data_type}"));
    }
    if is_iis_sealed_text(text) {
        return Ok(Unsealed::Foreign);
    }
    parse_plain(text).map(Unsealed::Value)
}

/// Writes a file readable by its owner only, durably.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp: PathBuf = path.with_extension("tmp-key");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    file.write_all(contents).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    crate::persist::sync_parent_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let key = SecretKey::generate().unwrap();
        let v = Value::String("s3cret".into());
        let text = key.seal(6021, &v).unwrap();
        assert!(is_sealed_text(&text));
        assert!(!text.contains("s3cret"));
        let plain = |_: &str| -> std::result::Result<Value, String> { panic!("not plain") };
        assert_eq!(
            unseal(Some(&key), 6021, DataType::String, &text, plain).unwrap(),
            Unsealed::Value(v.clone())
        );
        // Bound to the property ID.
        assert_eq!(
            unseal(Some(&key), 6022, DataType::String, &text, plain).unwrap(),
            Unsealed::Foreign
        );
        // Another key cannot open it; neither can no key.
        let other = SecretKey::generate().unwrap();
        assert_eq!(
            unseal(Some(&other), 6021, DataType::String, &text, plain).unwrap(),
            Unsealed::Foreign
        );
        assert_eq!(
            unseal(None, 6021, DataType::String, &text, plain).unwrap(),
            Unsealed::Foreign
        );
        // Two seals of one value differ (fresh nonce).
        assert_ne!(text, key.seal(6021, &v).unwrap());
    }

    #[test]
    fn plain_and_iis_forms() {
        let parse = |t: &str| Ok(Value::String(t.to_string()));
        assert_eq!(
            unseal(None, 1, DataType::String, "typed by hand", parse).unwrap(),
            Unsealed::Value(Value::String("typed by hand".into()))
        );
        // Not hex (a multi-byte character inside the signature): plain text.
        let odd = "495356\u{feff}32deadbeef";
        assert_eq!(
            unseal(None, 1, DataType::String, odd, parse).unwrap(),
            Unsealed::Value(Value::String(odd.into()))
        );
        let odd = "496344\u{feff}62deadbeef";
        assert_eq!(
            unseal(None, 1, DataType::String, odd, parse).unwrap(),
            Unsealed::Value(Value::String(odd.into()))
        );
        let iis = "4963446270000000220000004000000031b103f7";
        assert_eq!(
            unseal(None, 1, DataType::String, iis, parse).unwrap(),
            Unsealed::Foreign
        );
    }

    #[test]
    fn passwords() {
        let a = SecretKey::from_password("pw", b"salt");
        let b = SecretKey::from_password("pw", b"salt");
        let c = SecretKey::from_password("other", b"salt");
        let token = a.password_check().unwrap();
        assert!(b.verify_password_check(&token));
        assert!(!c.verify_password_check(&token));
    }

    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("MetaBase.key");
        assert!(SecretKey::load(&path).unwrap().is_none());
        let k1 = SecretKey::load_or_create(&path).unwrap();
        let k2 = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(k1.0, k2.0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "nonsense").unwrap();
        assert!(SecretKey::load(&path).is_err());
    }
}
