//! Connectionless NTLM ([MS-NLMP] 1.3.1.2, 3.1.5.2, 3.2.5.2), what
//! ncadg_ip_udp authenticates with ([MS-RPCE] 3.2.1.4.1), written here
//! because `sspi` has no datagram mode.
//!
//! The differences from the connection-oriented variant:
//!
//! - there is no NEGOTIATE_MESSAGE: the server opens with a
//!   CHALLENGE_MESSAGE (sent in the conv_who_are_you_auth callback) and
//!   the client answers with an AUTHENTICATE_MESSAGE whose flags are the
//!   final choice;
//! - key exchange is mandatory, so the client picks the exported session
//!   key before it has heard from the server and protects its first
//!   request with it; the AUTHENTICATE_MESSAGE carries that key to the
//!   server encrypted with the key the password proof yields;
//! - the caller gives each message's sequence number, and the RC4 state
//!   starts over for every message from MD5(SealingKey, SeqNum)
//!   ([MS-NLMP] 3.4), since datagrams come in any order.
//!
//! Only NTLMv2 with extended session security is spoken and accepted, as
//! on the connection-oriented side.

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rc4::{Rc4, StreamCipher};

use super::ntlm::{
    av_pair, by_side, constant_time_eq, flag, hmac_md5, message_type, ntowf_v2, seal_key_len,
    AuthenticateMessage, AUTHENTICATE_MESSAGE, CLIENT_SEAL, CLIENT_SIGN, NTLM_SIGNATURE,
    SERVER_SEAL, SERVER_SIGN,
};
use super::{auth_level, Credentials, Identity, SecurityError, SIGNATURE_LEN};

const CHALLENGE_MESSAGE: u32 = 2;

/// What a datagram session cannot do without.
const REQUIRED: u32 =
    flag::DATAGRAM | flag::KEY_EXCH | flag::EXTENDED_SESSION_SECURITY | flag::UNICODE;

/// AV_PAIR identifiers ([MS-NLMP] 2.2.2.1).
mod av {
    pub const EOL: u16 = 0;
    pub const NB_COMPUTER_NAME: u16 = 1;
    pub const NB_DOMAIN_NAME: u16 = 2;
    pub const TIMESTAMP: u16 = 7;
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn random<const N: usize>() -> Result<[u8; N], SecurityError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| SecurityError::Token("no randomness for NTLM"))?;
    Ok(bytes)
}

/// Now as a FILETIME: 100 ns ticks since 1601.
fn filetime_now() -> u64 {
    const UNIX_EPOCH_IN_TICKS: u64 = 116_444_736_000_000_000;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH_IN_TICKS + (since_unix.as_nanos() / 100) as u64
}

/// RC4 of `data` under `key`, in a fresh state (RC4K of [MS-NLMP] 6).
fn rc4k(key: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    Rc4::new_from_slice(key)
        .expect("RC4 takes 16-byte keys")
        .apply_keystream(&mut out);
    out
}

/// A payload field of an NTLM message: length, maximum length, offset.
fn put_field(message: &mut Vec<u8>, at: usize, payload: &[u8]) {
    let offset = message.len() as u32;
    let len = payload.len() as u16;
    message[at..at + 2].copy_from_slice(&len.to_le_bytes());
    message[at + 2..at + 4].copy_from_slice(&len.to_le_bytes());
    message[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
    message.extend_from_slice(payload);
}

fn read_field(message: &[u8], at: usize) -> Result<&[u8], SecurityError> {
    let bytes = message
        .get(at..at + 8)
        .ok_or(SecurityError::Token("a short NTLM message"))?;
    let len = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
    let offset = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    message
        .get(offset..offset.saturating_add(len))
        .ok_or(SecurityError::Token("a field outside the NTLM message"))
}

fn read_u32(message: &[u8], at: usize) -> Result<u32, SecurityError> {
    message
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(SecurityError::Token("a short NTLM message"))
}

/// The server's side: one CHALLENGE_MESSAGE, then the AUTHENTICATE_MESSAGE
/// that answers it.
pub struct DatagramChallenge {
    credentials: Arc<dyn Credentials>,
    server_challenge: [u8; 8],
    message: Vec<u8>,
}

impl DatagramChallenge {
    /// A fresh challenge from the server named `computer` ([MS-NLMP]
    /// 3.2.5.2.1 with 2.2.1.2), offering signing, sealing and 128-bit keys.
    pub fn new(
        credentials: Arc<dyn Credentials>,
        computer: &str,
    ) -> Result<DatagramChallenge, SecurityError> {
        let server_challenge = random::<8>()?;
        // NetBIOS names: the first label, upper case, at most 15.
        let netbios: String = computer
            .split('.')
            .next()
            .unwrap_or_default()
            .to_uppercase()
            .chars()
            .take(15)
            .collect();
        let netbios = if netbios.is_empty() {
            "INETSRV".to_string()
        } else {
            netbios
        };
        let name = utf16le(&netbios);
        let mut target_info = Vec::new();
        for (id, value) in [
            (av::NB_DOMAIN_NAME, name.clone()),
            (av::NB_COMPUTER_NAME, name.clone()),
            (av::TIMESTAMP, filetime_now().to_le_bytes().to_vec()),
            (av::EOL, Vec::new()),
        ] {
            target_info.extend_from_slice(&id.to_le_bytes());
            target_info.extend_from_slice(&(value.len() as u16).to_le_bytes());
            target_info.extend_from_slice(&value);
        }
        let flags = REQUIRED
            | flag::REQUEST_TARGET
            | flag::SIGN
            | flag::SEAL
            | flag::NTLM
            | flag::ALWAYS_SIGN
            | flag::TARGET_TYPE_SERVER
            | flag::TARGET_INFO
            | flag::NEGOTIATE_128
            | flag::NEGOTIATE_56;
        let mut message = vec![0u8; 48];
        message[..8].copy_from_slice(NTLM_SIGNATURE);
        message[8..12].copy_from_slice(&CHALLENGE_MESSAGE.to_le_bytes());
        message[20..24].copy_from_slice(&flags.to_le_bytes());
        message[24..32].copy_from_slice(&server_challenge);
        put_field(&mut message, 12, &name);
        put_field(&mut message, 40, &target_info);
        Ok(DatagramChallenge {
            credentials,
            server_challenge,
            message,
        })
    }

    /// The CHALLENGE_MESSAGE to send.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Checks the client's AUTHENTICATE_MESSAGE: who it is, and the keys
    /// it chose.
    pub fn accept(&self, token: &[u8]) -> Result<(Identity, DatagramSession), SecurityError> {
        if message_type(token)? != AUTHENTICATE_MESSAGE {
            return Err(SecurityError::Token("not an AUTHENTICATE_MESSAGE"));
        }
        let message = AuthenticateMessage::parse(token)?;
        if message.flags & REQUIRED != REQUIRED {
            return Err(SecurityError::LogonFailure(
                "connectionless NTLM needs the datagram, key exchange, Unicode and \
                 extended session security flags"
                    .to_string(),
            ));
        }
        let (account, nt_hash) = message.logon(&*self.credentials, &self.server_challenge)?;
        // [MS-NLMP] 3.3.2: SessionBaseKey = HMAC_MD5(ResponseKeyNT,
        // NTProofStr), which NTLMv2 uses as the KeyExchangeKey.
        let response_key = ntowf_v2(&nt_hash, &message.user, &message.domain);
        let session_base_key = hmac_md5(&response_key, &[&message.nt_response[..16]]);
        let encrypted = read_field(token, 52)?;
        let exported: [u8; 16] = rc4k(&session_base_key, encrypted)
            .try_into()
            .map_err(|_| SecurityError::Token("an encrypted session key that is not 16 octets"))?;
        if message.has_mic() {
            // MIC = HMAC_MD5(ExportedSessionKey, CHALLENGE || AUTHENTICATE
            // with the MIC zeroed); it follows the 8-octet Version.
            let mic = token
                .get(72..88)
                .ok_or(SecurityError::Token("a MIC outside the message"))?;
            let mut zeroed = token.to_vec();
            zeroed[72..88].fill(0);
            if !constant_time_eq(&hmac_md5(&exported, &[&self.message, &zeroed]), mic) {
                return Err(SecurityError::BadSignature);
            }
        }
        let identity = Identity {
            user: account,
            domain: message.domain.clone(),
        };
        Ok((
            identity,
            DatagramSession::new(&exported, message.flags, false),
        ))
    }
}

/// The client's side: the session exists from the start; the
/// AUTHENTICATE_MESSAGE is made when the server's challenge comes.
pub struct DatagramInitiator {
    user: String,
    domain: String,
    nt_hash: [u8; 16],
    exported: [u8; 16],
    flags: u32,
}

impl DatagramInitiator {
    /// A client that logs on as `user` at `level` (integrity, or privacy
    /// which seals too).
    pub fn new(
        level: u8,
        user: &str,
        domain: &str,
        password: &str,
    ) -> Result<DatagramInitiator, SecurityError> {
        use md4::Digest as _;
        let mut flags = REQUIRED
            | flag::SIGN
            | flag::NTLM
            | flag::ALWAYS_SIGN
            | flag::TARGET_INFO
            | flag::NEGOTIATE_128;
        if level == auth_level::PRIVACY {
            flags |= flag::SEAL;
        }
        Ok(DatagramInitiator {
            user: user.to_string(),
            domain: domain.to_string(),
            nt_hash: md4::Md4::digest(utf16le(password)).into(),
            exported: random::<16>()?,
            flags,
        })
    }

    /// The keys the client protects its requests with, before the
    /// handshake (its own random session key).
    pub fn session(&self) -> DatagramSession {
        DatagramSession::new(&self.exported, self.flags, true)
    }

    /// The AUTHENTICATE_MESSAGE answering the server's CHALLENGE_MESSAGE
    /// ([MS-NLMP] 3.1.5.2.1): the NTLMv2 response, and the session key
    /// encrypted with the key it yields.
    pub fn authenticate(&self, challenge: &[u8]) -> Result<Vec<u8>, SecurityError> {
        if message_type(challenge)? != CHALLENGE_MESSAGE || challenge.len() < 48 {
            return Err(SecurityError::Token("not a CHALLENGE_MESSAGE"));
        }
        let offered = read_u32(challenge, 20)?;
        if offered & self.flags != self.flags {
            return Err(SecurityError::LogonFailure(format!(
                "the server does not offer what connectionless NTLM needs \
                 (offered flags {offered:#010x}, needed {:#010x})",
                self.flags
            )));
        }
        let server_challenge = &challenge[24..32];
        let target_info = read_field(challenge, 40)?;
        let time = timestamp_of(target_info).unwrap_or_else(filetime_now);
        let client_challenge = random::<8>()?;
        let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        temp.extend_from_slice(&time.to_le_bytes());
        temp.extend_from_slice(&client_challenge);
        temp.extend_from_slice(&[0; 4]);
        temp.extend_from_slice(target_info);
        temp.extend_from_slice(&[0; 4]);
        let response_key = ntowf_v2(&self.nt_hash, &self.user, &self.domain);
        let proof = hmac_md5(&response_key, &[server_challenge, &temp]);
        let mut nt_response = proof.to_vec();
        nt_response.extend_from_slice(&temp);
        let session_base_key = hmac_md5(&response_key, &[&proof]);
        let encrypted_key = rc4k(&session_base_key, &self.exported);

        let mut message = vec![0u8; 64];
        message[..8].copy_from_slice(NTLM_SIGNATURE);
        message[8..12].copy_from_slice(&AUTHENTICATE_MESSAGE.to_le_bytes());
        message[60..64].copy_from_slice(&self.flags.to_le_bytes());
        // With a timestamp in the target information the LM response is
        // left out (3.1.5.2.1): an empty field at the payload's start.
        put_field(&mut message, 12, &[]);
        put_field(&mut message, 28, &utf16le(&self.domain));
        put_field(&mut message, 36, &utf16le(&self.user));
        put_field(&mut message, 44, &utf16le("INETSRV"));
        put_field(&mut message, 20, &nt_response);
        put_field(&mut message, 52, &encrypted_key);
        Ok(message)
    }
}

/// MsvAvTimestamp in a target information list.
fn timestamp_of(pairs: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(
        av_pair(pairs, av::TIMESTAMP)?.try_into().ok()?,
    ))
}

/// One direction's keys ([MS-NLMP] 3.4.5.2, 3.4.5.3).
struct Keys {
    /// HMAC_MD5 keyed with the signing key, copied for each message.
    keyed_mac: Hmac<Md5>,
    sealing_key: [u8; 16],
}

impl Keys {
    fn new(exported: &[u8; 16], seal_len: usize, sign_magic: &[u8], seal_magic: &[u8]) -> Keys {
        let md5 = |key: &[u8], magic: &[u8]| -> [u8; 16] {
            let mut hash = Md5::new();
            hash.update(key);
            hash.update(magic);
            hash.finalize().into()
        };
        Keys {
            keyed_mac: <Hmac<Md5> as KeyInit>::new_from_slice(&md5(exported, sign_magic))
                .expect("HMAC takes keys of any length"),
            sealing_key: md5(&exported[..seal_len], seal_magic),
        }
    }

    /// The RC4 state of message `seq`: SealingKey' = MD5(SealingKey,
    /// SeqNum) ([MS-NLMP] 3.4).
    fn handle(&self, seq: u32) -> Rc4 {
        let mut hash = Md5::new();
        hash.update(self.sealing_key);
        hash.update(seq.to_le_bytes());
        let key: [u8; 16] = hash.finalize().into();
        Rc4::new_from_slice(&key).expect("RC4 takes 16-byte keys")
    }

    /// SEAL (when `seal`) and MAC with extended session security and key
    /// exchange ([MS-NLMP] 3.4.3, 3.4.4.2): the checksum is of the plain
    /// text; the body goes through the RC4 state before the checksum.
    fn protect(&self, seq: u32, message: &mut [u8], seal: bool) -> [u8; SIGNATURE_LEN] {
        let checksum = self.checksum(seq, message);
        let mut handle = self.handle(seq);
        if seal {
            handle.apply_keystream(message);
        }
        signature(&mut handle, checksum, seq)
    }

    fn unprotect(
        &self,
        seq: u32,
        message: &mut [u8],
        seal: bool,
        received: &[u8],
    ) -> Result<(), SecurityError> {
        let mut handle = self.handle(seq);
        if seal {
            handle.apply_keystream(message);
        }
        let expected = signature(&mut handle, self.checksum(seq, message), seq);
        if constant_time_eq(&expected, received) {
            Ok(())
        } else {
            Err(SecurityError::BadSignature)
        }
    }

    fn checksum(&self, seq: u32, message: &[u8]) -> [u8; 8] {
        let mut mac = self.keyed_mac.clone();
        mac.update(&seq.to_le_bytes());
        mac.update(message);
        let digest: [u8; 16] = mac.finalize().into_bytes().into();
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&digest[..8]);
        checksum
    }
}

/// NTLMSSP_MESSAGE_SIGNATURE with extended session security: version 1,
/// the checksum through the RC4 state (key exchange is always on here),
/// the sequence number.
fn signature(handle: &mut Rc4, mut checksum: [u8; 8], seq: u32) -> [u8; SIGNATURE_LEN] {
    handle.apply_keystream(&mut checksum);
    let mut signature = [0u8; SIGNATURE_LEN];
    signature[0] = 1;
    signature[4..12].copy_from_slice(&checksum);
    signature[12..].copy_from_slice(&seq.to_le_bytes());
    signature
}

/// The keys of an established connectionless session. Messages carry
/// their own sequence numbers, so it holds no state that changes and is
/// shared freely.
pub struct DatagramSession {
    outbound: Keys,
    inbound: Keys,
    seals: bool,
}

impl DatagramSession {
    fn new(exported: &[u8; 16], flags: u32, client: bool) -> DatagramSession {
        let seal_len = seal_key_len(flags);
        let from_client = Keys::new(exported, seal_len, CLIENT_SIGN, CLIENT_SEAL);
        let from_server = Keys::new(exported, seal_len, SERVER_SIGN, SERVER_SEAL);
        let (outbound, inbound) = by_side(client, from_client, from_server);
        DatagramSession {
            outbound,
            inbound,
            seals: flags & flag::SEAL != 0,
        }
    }

    /// Whether the client asked for sealing (the privacy level).
    pub fn seals(&self) -> bool {
        self.seals
    }

    /// Signs message `seq`, sealing it in place when `seal`.
    pub fn protect(&self, seq: u32, message: &mut [u8], seal: bool) -> [u8; SIGNATURE_LEN] {
        self.outbound.protect(seq, message, seal)
    }

    /// Checks the signature of message `seq` from the peer, unsealing it
    /// in place first when `seal`.
    pub fn unprotect(
        &self,
        seq: u32,
        message: &mut [u8],
        seal: bool,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(SecurityError::Token(
                "a verifier that is not an NTLM signature",
            ));
        }
        self.inbound.unprotect(seq, message, seal, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Alice;

    impl Credentials for Alice {
        fn nt_hash(&self, user: &str) -> Option<(String, [u8; 16])> {
            use md4::Digest as _;
            user.eq_ignore_ascii_case("alice").then(|| {
                (
                    "alice".to_string(),
                    md4::Md4::digest(utf16le("Secret-1")).into(),
                )
            })
        }
    }

    fn handshake(
        password: &str,
        level: u8,
    ) -> Result<(DatagramInitiator, Identity, DatagramSession), SecurityError> {
        let client = DatagramInitiator::new(level, "Alice", "WORKGROUP", password)?;
        let server = DatagramChallenge::new(Arc::new(Alice), "testhost.example")?;
        let token = client.authenticate(server.message())?;
        let (identity, session) = server.accept(&token)?;
        Ok((client, identity, session))
    }

    #[test]
    fn the_client_protects_before_the_handshake_and_the_server_reads_it_after() {
        for (level, seal) in [(auth_level::INTEGRITY, false), (auth_level::PRIVACY, true)] {
            let client = DatagramInitiator::new(level, "Alice", "WORKGROUP", "Secret-1").unwrap();
            let early = client.session();
            let mut request = b"stub data of the first request".to_vec();
            let signature = early.protect(0x0001_0000, &mut request, seal);
            assert_eq!(request != b"stub data of the first request", seal);

            let server = DatagramChallenge::new(Arc::new(Alice), "testhost").unwrap();
            let token = client.authenticate(server.message()).unwrap();
            let (identity, session) = server.accept(&token).unwrap();
            assert_eq!(identity.user, "alice");
            assert_eq!(session.seals(), seal);
            session
                .unprotect(0x0001_0000, &mut request, seal, &signature)
                .unwrap();
            assert_eq!(request, b"stub data of the first request");

            // The answer, in the other direction.
            let mut response = b"response".to_vec();
            let signature = session.protect(0x0001_0000, &mut response, seal);
            early
                .unprotect(0x0001_0000, &mut response, seal, &signature)
                .unwrap();
            assert_eq!(response, b"response");
        }
    }

    #[test]
    fn messages_verify_in_any_order_and_not_under_another_number() {
        let (client, _, server) = handshake("Secret-1", auth_level::PRIVACY).unwrap();
        let session = client.session();
        let mut sent: Vec<(u32, Vec<u8>, [u8; 16])> = (0..4u32)
            .map(|n| {
                let mut body = format!("fragment {n}").into_bytes();
                let signature = session.protect(n, &mut body, true);
                (n, body, signature)
            })
            .collect();
        sent.reverse();
        for (n, body, signature) in &sent {
            let mut wrong = body.clone();
            assert!(server
                .unprotect(n + 1, &mut wrong, true, signature)
                .is_err());
            let mut plain = body.clone();
            server.unprotect(*n, &mut plain, true, signature).unwrap();
            assert_eq!(plain, format!("fragment {n}").into_bytes());
        }
        let (n, body, signature) = &sent[0];
        let mut tampered = body.clone();
        tampered[0] ^= 1;
        assert!(matches!(
            server.unprotect(*n, &mut tampered, true, signature),
            Err(SecurityError::BadSignature)
        ));
    }

    #[test]
    fn a_wrong_password_or_unknown_user_is_a_logon_failure() {
        assert!(matches!(
            handshake("wrong", auth_level::INTEGRITY),
            Err(SecurityError::LogonFailure(_))
        ));
        let client = DatagramInitiator::new(auth_level::INTEGRITY, "mallory", "", "x").unwrap();
        let server = DatagramChallenge::new(Arc::new(Alice), "testhost").unwrap();
        let token = client.authenticate(server.message()).unwrap();
        assert!(matches!(
            server.accept(&token),
            Err(SecurityError::LogonFailure(_))
        ));
    }

    #[test]
    fn the_challenge_is_a_datagram_challenge_with_a_timestamp() {
        let server = DatagramChallenge::new(Arc::new(Alice), "testhost.example").unwrap();
        let message = server.message();
        assert_eq!(message_type(message).unwrap(), CHALLENGE_MESSAGE);
        let flags = read_u32(message, 20).unwrap();
        assert_eq!(flags & REQUIRED, REQUIRED);
        assert_eq!(read_field(message, 12).unwrap(), utf16le("TESTHOST"));
        assert!(timestamp_of(read_field(message, 40).unwrap()).is_some());
    }

    #[test]
    fn malformed_messages_are_errors() {
        let client =
            DatagramInitiator::new(auth_level::INTEGRITY, "alice", "", "Secret-1").unwrap();
        assert!(client.authenticate(b"NTLMSSP\0\x02\0\0\0").is_err());
        let server = DatagramChallenge::new(Arc::new(Alice), "testhost").unwrap();
        let mut token = client.authenticate(server.message()).unwrap();
        // The encrypted session key's field pointing past the end.
        token[56] = 0xff;
        assert!(server.accept(&token).is_err());
        assert!(server.accept(&token[..40]).is_err());
    }
}
