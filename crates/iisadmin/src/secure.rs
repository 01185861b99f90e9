//! The secure-data exchange of IMSAdminBaseW ([MS-IMSA] 3.1.4.1): how
//! SECURE values (passwords) cross the wire. R_KeyExchangePhase1 and 2
//! trade 512-bit RSA key-exchange and signature keys and 40-bit RC4
//! session keys (one each way); a SECURE value then travels RC4-encrypted
//! under its sender's session key with an MD5 hash signed by its sender's
//! signature key. Both sides are here: [`ServerExchange`] for the service,
//! [`ClientExchange`] for `inetsrv mb … --server`.
//!
//! The blobs are CryptoAPI's as the specification lays them out
//! (2.2.2.1-2.2.2.5): PUBLICKEYBLOB and SIMPLEBLOB bodies, integers and
//! RSA outputs little-endian as CryptoAPI writes them, RC4 keys of 5
//! bytes used with CryptoAPI's 11 zero bytes of salt, a fresh cipher
//! state per value. These are 1990s export-grade ciphers: the protection
//! that counts is the RPC privacy level the administration interfaces
//! require; this exchange is kept because IIS's clients speak it.

use md5::{Digest, Md5};
use rc4::{KeyInit, Rc4, StreamCipher};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, Pkcs1v15Encrypt, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};

use crate::imsa::IisCryptoBlob;

pub const SESSION_KEY_BLOB_SIGNATURE: u32 = 0x624b_6349;
pub const PUBLIC_KEY_BLOB_SIGNATURE: u32 = 0x6250_6349;
pub const ENCRYPTED_DATA_BLOB_SIGNATURE: u32 = 0x6244_6349;
pub const HASH_BLOB_SIGNATURE: u32 = 0x6248_6349;
pub const CLEARTEXT_DATA_BLOB_SIGNATURE: u32 = 0x6243_6349;

const CALG_RSA_KEYX: u32 = 0xa400;
const CALG_RSA_SIGN: u32 = 0x2400;
const CALG_RC4: u32 = 0x6801;
/// "RSA1".
const RSA1: u32 = 0x3141_5352;
const PUBLICKEYBLOB: u8 = 6;
const SIMPLEBLOB: u8 = 1;
const CUR_BLOB_VERSION: u8 = 2;

/// 512-bit RSA (2.2.2.1: BitLen MUST be 0x200).
const KEY_BITS: usize = 512;
const KEY_BYTES: usize = KEY_BITS / 8;
/// A 40-bit RC4 session key.
pub const SESSION_KEY_LEN: usize = 5;
/// CryptoAPI's salt of a 40-bit key: 11 zero bytes after the key.
const SALT_LEN: usize = 11;

/// HASH_TEXT_STRING_1 and 2 (2.2.3).
const HASH_TEXT_1: &[u8] = b"IIS Key Exchange Phase 3";
const HASH_TEXT_2: &[u8] = b"IIS Key Exchange Phase 4";

/// MD5's DigestInfo prefix (RFC 8017 9.2), for PKCS #1 v1.5 signatures.
const MD5_DIGEST_INFO: [u8; 18] = [
    0x30, 0x20, 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05, 0x05, 0x00,
    0x04, 0x10,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecureError {
    #[error("a secure-data blob is malformed: {0}")]
    Malformed(&'static str),
    #[error("a secure-data blob has signature {found:#010x}, not {wanted:#010x}")]
    WrongBlob { found: u32, wanted: u32 },
    #[error("the signed hash does not verify: the data was changed or signed by another key")]
    BadSignature,
    #[error("the session key cannot be decrypted with this key-exchange key")]
    BadSessionKey,
    #[error("the key-exchange hash does not match: the peer does not hold its private key")]
    BadHash,
    #[error("RSA: {0}")]
    Rsa(String),
}

type Result<T> = std::result::Result<T, SecureError>;

fn rng() -> rand::rngs::ThreadRng {
    rand::rng()
}

/// A new 512-bit RSA key.
pub fn generate_key() -> Result<RsaPrivateKey> {
    // 512 bits is below the crate's checked minimum; the protocol fixes it.
    RsaPrivateKey::new_unchecked(&mut rng(), KEY_BITS).map_err(|e| SecureError::Rsa(e.to_string()))
}

fn blob(signature: u32, data: Vec<u8>) -> IisCryptoBlob {
    IisCryptoBlob {
        signature,
        length: data.len() as u32,
        data,
    }
}

fn expect(blob: &IisCryptoBlob, wanted: u32) -> Result<&[u8]> {
    if blob.signature != wanted {
        return Err(SecureError::WrongBlob {
            found: blob.signature,
            wanted,
        });
    }
    if blob.data.len() != blob.length as usize {
        return Err(SecureError::Malformed(
            "BlobDataLength is not the data's length",
        ));
    }
    Ok(&blob.data)
}

fn u32_at(data: &[u8], at: usize) -> Result<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(SecureError::Malformed("cut short"))
}

fn reversed(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().rev().copied().collect()
}

/// PUBLIC_KEY_BLOB (2.2.2.1) of a key, as key exchange (CALG_RSA_KEYX) or
/// signature (CALG_RSA_SIGN) key.
pub fn public_key_blob(key: &RsaPrivateKey, alg: u32) -> IisCryptoBlob {
    let public = key.to_public_key();
    let mut modulus = public.n().to_be_bytes().to_vec();
    // Big-endian, at most KEY_BYTES after leading zeros.
    let start = modulus.len().saturating_sub(KEY_BYTES);
    modulus.drain(..start);
    let mut little = reversed(&modulus);
    little.resize(KEY_BYTES, 0);
    let exponent = public
        .e()
        .to_be_bytes()
        .iter()
        .fold(0u32, |acc, b| acc << 8 | u32::from(*b));
    let mut body = vec![PUBLICKEYBLOB, CUR_BLOB_VERSION, 0, 0];
    body.extend_from_slice(&alg.to_le_bytes());
    body.extend_from_slice(&RSA1.to_le_bytes());
    body.extend_from_slice(&(KEY_BITS as u32).to_le_bytes());
    body.extend_from_slice(&exponent.to_le_bytes());
    body.extend_from_slice(&little);
    let mut data = Vec::with_capacity(body.len() + 8);
    data.extend_from_slice(&(body.len() as u32).to_le_bytes());
    data.extend_from_slice(&0u32.to_le_bytes());
    data.extend_from_slice(&body);
    blob(PUBLIC_KEY_BLOB_SIGNATURE, data)
}

/// The RSA public key a PUBLIC_KEY_BLOB holds, checked to be of `alg`.
pub fn read_public_key(blob: &IisCryptoBlob, alg: u32) -> Result<RsaPublicKey> {
    let data = expect(blob, PUBLIC_KEY_BLOB_SIGNATURE)?;
    let length = u32_at(data, 0)? as usize;
    let body = data
        .get(8..)
        .filter(|b| b.len() == length)
        .ok_or(SecureError::Malformed("PublicKeyBlobDataLength"))?;
    if body.len() < 20 || body[0] != PUBLICKEYBLOB || body[1] != CUR_BLOB_VERSION {
        return Err(SecureError::Malformed("not a PUBLICKEYBLOB"));
    }
    if u32_at(body, 4)? != alg || u32_at(body, 8)? != RSA1 {
        return Err(SecureError::Malformed("not an RSA key of the expected use"));
    }
    let bits = u32_at(body, 12)? as usize;
    if bits != KEY_BITS {
        return Err(SecureError::Malformed("BitLen is not 512"));
    }
    let exponent = u32_at(body, 16)?;
    let modulus = body
        .get(20..20 + KEY_BYTES)
        .filter(|_| body.len() == 20 + KEY_BYTES)
        .ok_or(SecureError::Malformed("the modulus is not 64 bytes"))?;
    let n = BoxedUint::from_be_slice(&reversed(modulus), KEY_BITS as u32)
        .map_err(|_| SecureError::Malformed("the modulus"))?;
    let e = BoxedUint::from(u64::from(exponent));
    RsaPublicKey::new(n, e).map_err(|e| SecureError::Rsa(e.to_string()))
}

/// MD5 of `parts`, one after the other.
fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut hash = Md5::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().into()
}

/// CryptSignHash's signature of an MD5 hash (little-endian).
fn sign(key: &RsaPrivateKey, hash: &[u8; 16]) -> Result<Vec<u8>> {
    let mut info = MD5_DIGEST_INFO.to_vec();
    info.extend_from_slice(hash);
    let signature = key
        .sign(Pkcs1v15Sign::new_unprefixed(), &info)
        .map_err(|e| SecureError::Rsa(e.to_string()))?;
    Ok(reversed(&signature))
}

fn verify(key: &RsaPublicKey, hash: &[u8; 16], signature: &[u8]) -> Result<()> {
    let mut info = MD5_DIGEST_INFO.to_vec();
    info.extend_from_slice(hash);
    key.verify(Pkcs1v15Sign::new_unprefixed(), &info, &reversed(signature))
        .map_err(|_| SecureError::BadSignature)
}

/// `[first length][second length][first][padding to 8][second]`, the
/// layout of SESSION_KEY_BLOB and ENCRYPTED_DATA_BLOB.
fn two_parts(first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + first.len() + 8 + second.len());
    out.extend_from_slice(&(first.len() as u32).to_le_bytes());
    out.extend_from_slice(&(second.len() as u32).to_le_bytes());
    out.extend_from_slice(first);
    out.resize(8 + first.len().next_multiple_of(8), 0);
    out.extend_from_slice(second);
    out
}

fn read_two_parts(data: &[u8]) -> Result<(&[u8], &[u8])> {
    let first_len = u32_at(data, 0)? as usize;
    let second_len = u32_at(data, 4)? as usize;
    let padded = first_len
        .checked_next_multiple_of(8)
        .ok_or(SecureError::Malformed("a length"))?;
    let first = data
        .get(8..8 + first_len)
        .ok_or(SecureError::Malformed("cut short"))?;
    let second = data
        .get(8 + padded..)
        .filter(|s| s.len() == second_len)
        .ok_or(SecureError::Malformed("the signed hash's length"))?;
    Ok((first, second))
}

/// A new random session key.
pub fn new_session_key() -> [u8; SESSION_KEY_LEN] {
    use rand::RngExt;
    let mut key = [0u8; SESSION_KEY_LEN];
    rng().fill(&mut key);
    key
}

/// SESSION_KEY_BLOB (2.2.2.2): `session` encrypted to `to`'s key-exchange
/// key (a SIMPLEBLOB), signed by `signer`.
pub fn session_key_blob(
    session: &[u8; SESSION_KEY_LEN],
    to: &RsaPublicKey,
    signer: &RsaPrivateKey,
) -> Result<IisCryptoBlob> {
    let encrypted = to
        .encrypt(&mut rng(), Pkcs1v15Encrypt, session)
        .map_err(|e| SecureError::Rsa(e.to_string()))?;
    let mut simple = vec![SIMPLEBLOB, CUR_BLOB_VERSION, 0, 0];
    simple.extend_from_slice(&CALG_RC4.to_le_bytes());
    simple.extend_from_slice(&CALG_RSA_KEYX.to_le_bytes());
    simple.extend_from_slice(&reversed(&encrypted));
    let signature = sign(signer, &md5(&[&simple]))?;
    Ok(blob(
        SESSION_KEY_BLOB_SIGNATURE,
        two_parts(&simple, &signature),
    ))
}

/// The session key a SESSION_KEY_BLOB carries, decrypted with `key` and
/// its signature checked with `signer`'s key.
pub fn read_session_key(
    blob: &IisCryptoBlob,
    key: &RsaPrivateKey,
    signer: &RsaPublicKey,
) -> Result<[u8; SESSION_KEY_LEN]> {
    let (simple, signature) = read_two_parts(expect(blob, SESSION_KEY_BLOB_SIGNATURE)?)?;
    verify(signer, &md5(&[simple]), signature)?;
    if simple.len() != 12 + KEY_BYTES
        || simple[0] != SIMPLEBLOB
        || u32_at(simple, 4)? != CALG_RC4
        || u32_at(simple, 8)? != CALG_RSA_KEYX
    {
        return Err(SecureError::Malformed("not an RC4 SIMPLEBLOB"));
    }
    let plain = key
        .decrypt(Pkcs1v15Encrypt, &reversed(&simple[12..]))
        .map_err(|_| SecureError::BadSessionKey)?;
    plain.try_into().map_err(|_| SecureError::BadSessionKey)
}

/// HASH_BLOB (2.2.2.3) of the MD5 of `parts`.
fn hash_blob(parts: &[&[u8]]) -> IisCryptoBlob {
    let hash = md5(parts);
    let mut data = Vec::with_capacity(24);
    data.extend_from_slice(&(hash.len() as u32).to_le_bytes());
    data.extend_from_slice(&0u32.to_le_bytes());
    data.extend_from_slice(&hash);
    blob(HASH_BLOB_SIGNATURE, data)
}

fn check_hash_blob(blob: &IisCryptoBlob, parts: &[&[u8]]) -> Result<()> {
    let data = expect(blob, HASH_BLOB_SIGNATURE)?;
    let length = u32_at(data, 0)? as usize;
    match data.get(8..) {
        Some(hash) if hash.len() == length && hash == md5(parts) => Ok(()),
        Some(_) => Err(SecureError::BadHash),
        None => Err(SecureError::Malformed("cut short")),
    }
}

/// RC4 under a 40-bit session key, from a fresh state.
fn rc4(session: &[u8; SESSION_KEY_LEN], data: &mut [u8]) {
    let mut key = [0u8; SESSION_KEY_LEN + SALT_LEN];
    key[..SESSION_KEY_LEN].copy_from_slice(session);
    let mut cipher =
        Rc4::new_from_slice(&key).expect("16 bytes is within RC4's key sizes (1 to 256)");
    cipher.apply_keystream(data);
}

/// A negotiated secure session, either side's: its own session key and
/// signature key, the peer's session key and signature public key.
pub struct SecureSession {
    mine: [u8; SESSION_KEY_LEN],
    theirs: [u8; SESSION_KEY_LEN],
    my_signature: RsaPrivateKey,
    their_signature: RsaPublicKey,
}

impl SecureSession {
    /// ENCRYPTED_DATA_BLOB (2.2.2.5, 3.1.4.1.2) of a value.
    pub fn encrypt(&self, value: &[u8]) -> Result<IisCryptoBlob> {
        let mut plain = Vec::with_capacity(4 + value.len());
        plain.extend_from_slice(&0u32.to_le_bytes());
        plain.extend_from_slice(value);
        let signature = sign(&self.my_signature, &md5(&[&plain]))?;
        rc4(&self.mine, &mut plain);
        Ok(blob(
            ENCRYPTED_DATA_BLOB_SIGNATURE,
            two_parts(&plain, &signature),
        ))
    }

    /// The value an ENCRYPTED_DATA_BLOB carries (3.1.4.1.3), its signed
    /// hash checked.
    pub fn decrypt(&self, blob: &IisCryptoBlob) -> Result<Vec<u8>> {
        let (encrypted, signature) = read_two_parts(expect(blob, ENCRYPTED_DATA_BLOB_SIGNATURE)?)?;
        if encrypted.len() < 4 {
            return Err(SecureError::Malformed("no CLEARTEXT_WITH_PREFIX_BLOB"));
        }
        let mut plain = encrypted.to_vec();
        rc4(&self.theirs, &mut plain);
        verify(&self.their_signature, &md5(&[&plain]), signature)?;
        Ok(plain.split_off(4))
    }
}

/// The service's keys: one key-exchange and one signature key for all
/// sessions.
pub struct ServerKeys {
    exchange: RsaPrivateKey,
    signature: RsaPrivateKey,
}

impl ServerKeys {
    pub fn generate() -> Result<ServerKeys> {
        Ok(ServerKeys {
            exchange: generate_key()?,
            signature: generate_key()?,
        })
    }
}

/// Where an object's negotiation is, on the service's side.
#[derive(Default)]
pub enum ServerExchange {
    #[default]
    Idle,
    /// After R_KeyExchangePhase1.
    Offered {
        client_exchange: RsaPublicKey,
        client_signature: RsaPublicKey,
        server_session: [u8; SESSION_KEY_LEN],
    },
    Ready(Box<SecureSession>),
}

/// R_KeyExchangePhase1's blobs, out: the server's key-exchange and
/// signature public keys, its session key.
pub type Phase1Answer = (IisCryptoBlob, IisCryptoBlob, IisCryptoBlob);

impl ServerExchange {
    /// R_KeyExchangePhase1 (3.1.4.25).
    pub fn phase1(
        &mut self,
        keys: &ServerKeys,
        client_exchange: &IisCryptoBlob,
        client_signature: &IisCryptoBlob,
    ) -> Result<Phase1Answer> {
        let client_exchange = read_public_key(client_exchange, CALG_RSA_KEYX)?;
        let client_signature = read_public_key(client_signature, CALG_RSA_SIGN)?;
        let server_session = new_session_key();
        let session = session_key_blob(&server_session, &client_exchange, &keys.signature)?;
        *self = ServerExchange::Offered {
            client_exchange,
            client_signature,
            server_session,
        };
        Ok((
            public_key_blob(&keys.exchange, CALG_RSA_KEYX),
            public_key_blob(&keys.signature, CALG_RSA_SIGN),
            session,
        ))
    }

    /// R_KeyExchangePhase2 (3.1.4.26): the server's hash blob, and the
    /// session is ready.
    pub fn phase2(
        &mut self,
        keys: &ServerKeys,
        client_session: &IisCryptoBlob,
        client_hash: &IisCryptoBlob,
    ) -> Result<IisCryptoBlob> {
        let ServerExchange::Offered {
            client_signature,
            server_session,
            ..
        } = std::mem::take(self)
        else {
            return Err(SecureError::Malformed("R_KeyExchangePhase2 before Phase1"));
        };
        let theirs = read_session_key(client_session, &keys.exchange, &client_signature)?;
        check_hash_blob(client_hash, &[&theirs, &server_session, HASH_TEXT_1])?;
        let answer = hash_blob(&[&theirs, HASH_TEXT_2]);
        *self = ServerExchange::Ready(Box::new(SecureSession {
            mine: server_session,
            theirs,
            my_signature: keys.signature.clone(),
            their_signature: client_signature,
        }));
        Ok(answer)
    }

    pub fn session(&self) -> Option<&SecureSession> {
        match self {
            ServerExchange::Ready(s) => Some(s),
            _ => None,
        }
    }
}

/// The client's side of the negotiation.
pub struct ClientExchange {
    exchange: RsaPrivateKey,
    signature: RsaPrivateKey,
}

/// The client between the phases.
pub struct ClientOffered {
    signature: RsaPrivateKey,
    server_signature: RsaPublicKey,
    server_session: [u8; SESSION_KEY_LEN],
    client_session: [u8; SESSION_KEY_LEN],
}

impl ClientExchange {
    /// New keys, and R_KeyExchangePhase1's two blobs.
    pub fn start() -> Result<(ClientExchange, IisCryptoBlob, IisCryptoBlob)> {
        let me = ClientExchange {
            exchange: generate_key()?,
            signature: generate_key()?,
        };
        let exchange = public_key_blob(&me.exchange, CALG_RSA_KEYX);
        let signature = public_key_blob(&me.signature, CALG_RSA_SIGN);
        Ok((me, exchange, signature))
    }

    /// The server's Phase1 answer read (3.2.4.2); R_KeyExchangePhase2's
    /// two blobs (3.2.4.3).
    pub fn answer(
        self,
        server_exchange: &IisCryptoBlob,
        server_signature: &IisCryptoBlob,
        server_session: &IisCryptoBlob,
    ) -> Result<(ClientOffered, IisCryptoBlob, IisCryptoBlob)> {
        let server_exchange = read_public_key(server_exchange, CALG_RSA_KEYX)?;
        let server_signature = read_public_key(server_signature, CALG_RSA_SIGN)?;
        let server_session = read_session_key(server_session, &self.exchange, &server_signature)?;
        let client_session = new_session_key();
        let session_blob = session_key_blob(&client_session, &server_exchange, &self.signature)?;
        let hash = hash_blob(&[&client_session, &server_session, HASH_TEXT_1]);
        Ok((
            ClientOffered {
                signature: self.signature,
                server_signature,
                server_session,
                client_session,
            },
            session_blob,
            hash,
        ))
    }
}

impl ClientOffered {
    /// The server's Phase2 hash checked: the session is ready.
    pub fn finish(self, server_hash: &IisCryptoBlob) -> Result<SecureSession> {
        check_hash_blob(server_hash, &[&self.client_session, HASH_TEXT_2])?;
        Ok(SecureSession {
            mine: self.client_session,
            theirs: self.server_session,
            my_signature: self.signature,
            their_signature: self.server_signature,
        })
    }
}

/// What the fuzz target checks: any bytes, taken as an IIS_CRYPTO_BLOB
/// (signature, then data), go through every reader a client's blob meets
/// on the service without a panic.
#[cfg(feature = "fuzz-checks")]
pub fn fuzz_blob(data: &[u8]) {
    use std::sync::OnceLock;
    static KEYS: OnceLock<Option<(ServerKeys, SecureSession)>> = OnceLock::new();
    let Some((keys, session)) = KEYS.get_or_init(|| {
        let keys = ServerKeys::generate().ok()?;
        let peer = generate_key().ok()?;
        let session = SecureSession {
            mine: [1; SESSION_KEY_LEN],
            theirs: [2; SESSION_KEY_LEN],
            my_signature: keys.signature.clone(),
            their_signature: peer.to_public_key(),
        };
        Some((keys, session))
    }) else {
        return;
    };
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let blob = IisCryptoBlob {
        signature: u32::from_le_bytes(*head),
        length: rest.len() as u32,
        data: rest.to_vec(),
    };
    let _ = read_public_key(&blob, CALG_RSA_KEYX);
    let _ = read_public_key(&blob, CALG_RSA_SIGN);
    let _ = read_session_key(&blob, &keys.exchange, &keys.signature.to_public_key());
    let _ = check_hash_blob(&blob, &[b"x"]);
    let _ = session.decrypt(&blob);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated() -> (SecureSession, ServerExchange) {
        let keys = ServerKeys::generate().unwrap();
        let mut server = ServerExchange::default();
        let (client, kx, sig) = ClientExchange::start().unwrap();
        let (skx, ssig, ssession) = server.phase1(&keys, &kx, &sig).unwrap();
        let (offered, csession, chash) = client.answer(&skx, &ssig, &ssession).unwrap();
        let shash = server.phase2(&keys, &csession, &chash).unwrap();
        (offered.finish(&shash).unwrap(), server)
    }

    #[test]
    fn both_sides_negotiate_and_values_cross_both_ways() {
        let (client, server) = negotiated();
        let server = server.session().unwrap();
        let secret = "Passw0rd!\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<_>>();
        let up = client.encrypt(&secret).unwrap();
        assert_eq!(up.signature, ENCRYPTED_DATA_BLOB_SIGNATURE);
        assert!(!up.data.windows(4).any(|w| w == &secret[..4]), "encrypted");
        assert_eq!(server.decrypt(&up).unwrap(), secret);
        let down = server.encrypt(b"another").unwrap();
        assert_eq!(client.decrypt(&down).unwrap(), b"another");
        // Each side's key: a blob decrypts only as its sender's.
        assert!(client.decrypt(&up).is_err());
    }

    #[test]
    fn the_blobs_are_laid_out_as_the_specification_says() {
        let key = generate_key().unwrap();
        let b = public_key_blob(&key, CALG_RSA_KEYX);
        assert_eq!(b.signature, PUBLIC_KEY_BLOB_SIGNATURE);
        assert_eq!(b.data.len(), 8 + 20 + 64);
        assert_eq!(u32_at(&b.data, 0).unwrap(), 84);
        assert_eq!(&b.data[8..12], &[6, 2, 0, 0]);
        assert_eq!(u32_at(&b.data, 12).unwrap(), 0xa400);
        assert_eq!(&b.data[16..20], b"RSA1");
        assert_eq!(u32_at(&b.data, 20).unwrap(), 512);
        assert_eq!(u32_at(&b.data, 24).unwrap(), 65537);
        let back = read_public_key(&b, CALG_RSA_KEYX).unwrap();
        assert_eq!(back, key.to_public_key());
        assert!(read_public_key(&b, CALG_RSA_SIGN).is_err());
        let signer = generate_key().unwrap();
        let s = session_key_blob(&[1, 2, 3, 4, 5], &back, &signer).unwrap();
        // Lengths, the SIMPLEBLOB (12 + 64), no padding, a 64-byte signature.
        assert_eq!(u32_at(&s.data, 0).unwrap(), 76);
        assert_eq!(u32_at(&s.data, 4).unwrap(), 64);
        assert_eq!(&s.data[8..12], &[1, 2, 0, 0]);
        assert_eq!(u32_at(&s.data, 12).unwrap(), 0x6801);
        assert_eq!(u32_at(&s.data, 16).unwrap(), 0xa400);
        assert_eq!(s.data.len(), 8 + 80 + 64);
        assert_eq!(
            read_session_key(&s, &key, &signer.to_public_key()).unwrap(),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let (client, server) = negotiated();
        let server = server.session().unwrap();
        let mut up = client.encrypt(b"secret").unwrap();
        up.data[9] ^= 1;
        assert_eq!(server.decrypt(&up), Err(SecureError::BadSignature));
        let mut cut = client.encrypt(b"secret").unwrap();
        cut.data.truncate(20);
        cut.length = 20;
        assert!(matches!(
            server.decrypt(&cut),
            Err(SecureError::Malformed(_))
        ));
        let cleartext = IisCryptoBlob {
            signature: CLEARTEXT_DATA_BLOB_SIGNATURE,
            length: 1,
            data: vec![0],
        };
        assert!(matches!(
            server.decrypt(&cleartext),
            Err(SecureError::WrongBlob { .. })
        ));
        // A hash that does not match (a client without the private key).
        let keys = ServerKeys::generate().unwrap();
        let mut exchange = ServerExchange::default();
        let (c, kx, sig) = ClientExchange::start().unwrap();
        let (skx, ssig, ssession) = exchange.phase1(&keys, &kx, &sig).unwrap();
        let (_, csession, _) = c.answer(&skx, &ssig, &ssession).unwrap();
        let forged = hash_blob(&[b"guess"]);
        assert_eq!(
            exchange.phase2(&keys, &csession, &forged).err(),
            Some(SecureError::BadHash)
        );
        assert!(exchange.session().is_none());
        assert!(ServerExchange::default()
            .phase2(&keys, &csession, &forged)
            .is_err());
    }
}
