//! NTLM ([MS-NLMP]): the handshake over `sspi`'s provider, the server's
//! own check of the NTLMv2 response, and session security (signing and
//! sealing) done here.
//!
//! Session security is computed here from the exported session key
//! rather than by `sspi`, because SPNEGO needs what `sspi` keeps private:
//! the mechListMIC is signed with the first sequence number and the RC4
//! handle then put back as it was ([MS-SPNG] 3.2.5.1, 3.3.5.1), which
//! `sspi` only does for its own Negotiate provider.

use std::ops::Range;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rc4::{Rc4, StreamCipher};
use sspi::{
    AuthIdentityBuffers, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation, Ntlm,
    NtlmHash, SecurityBuffer, SecurityStatus, ServerRequestFlags, Sspi, SspiImpl,
};

use super::{auth_level, protects_pdus, Credentials, Identity, SecurityError};
use super::{SEC_TRAILER_LEN, SIGNATURE_LEN};

pub(super) const NEGOTIATE_MESSAGE: u32 = 1;
pub(super) const AUTHENTICATE_MESSAGE: u32 = 3;
pub(super) const NTLM_SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NegotiateFlags bits used here and by connectionless NTLM ([MS-NLMP]
/// 2.2.2.5).
pub(super) mod flag {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const SIGN: u32 = 0x0000_0010;
    pub const SEAL: u32 = 0x0000_0020;
    pub const DATAGRAM: u32 = 0x0000_0040;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
    pub const EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const NEGOTIATE_128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const NEGOTIATE_56: u32 = 0x8000_0000;
}

/// How much of the exported session key seals ([MS-NLMP] 3.4.5.3): 16
/// octets with 128-bit keys, 7 with 56-bit, else 5.
pub(super) fn seal_key_len(flags: u32) -> usize {
    if flags & flag::NEGOTIATE_128 != 0 {
        16
    } else if flags & flag::NEGOTIATE_56 != 0 {
        7
    } else {
        5
    }
}

/// A side's (outbound, inbound) pair of two directions' keys.
pub(super) fn by_side<T>(client: bool, from_client: T, from_server: T) -> (T, T) {
    if client {
        (from_client, from_server)
    } else {
        (from_server, from_client)
    }
}

/// NTOWFv2 ([MS-NLMP] 3.3.2): HMAC_MD5 of the upper-cased user and the
/// domain, keyed with the NT hash.
pub(super) fn ntowf_v2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    let user_domain: Vec<u8> = user
        .to_uppercase()
        .encode_utf16()
        .chain(domain.encode_utf16())
        .flat_map(u16::to_le_bytes)
        .collect();
    hmac_md5(nt_hash, &[&user_domain])
}

/// The value of AV pair `wanted` in a list ([MS-NLMP] 2.2.2.1), up to
/// MsvAvEOL.
pub(super) fn av_pair(mut pairs: &[u8], wanted: u16) -> Option<&[u8]> {
    const MSV_AV_EOL: u16 = 0;
    while pairs.len() >= 4 {
        let id = u16::from_le_bytes([pairs[0], pairs[1]]);
        let len = usize::from(u16::from_le_bytes([pairs[2], pairs[3]]));
        let value = pairs.get(4..4 + len)?;
        if id == MSV_AV_EOL {
            return None;
        }
        if id == wanted {
            return Some(value);
        }
        pairs = &pairs[4 + len..];
    }
    None
}

/// The type of an NTLM message, or an error if it is none.
pub(super) fn message_type(token: &[u8]) -> Result<u32, SecurityError> {
    if token.len() < 12 || &token[..8] != NTLM_SIGNATURE {
        return Err(SecurityError::Token("not an NTLM message"));
    }
    Ok(u32::from_le_bytes([
        token[8], token[9], token[10], token[11],
    ]))
}

/// What a completed handshake leaves: who logged on (server side) and the
/// keys of the session.
pub(super) struct Established {
    pub identity: Option<Identity>,
    pub session: NtlmSession,
    /// The AUTHENTICATE_MESSAGE carried a MIC, which makes SPNEGO's
    /// mechListMIC mandatory ([MS-SPNG] 3.1.5.1, note 8).
    pub authenticate_has_mic: bool,
}

/// The server side of the handshake.
pub(super) struct NtlmAcceptor {
    ntlm: Box<Ntlm>,
    credentials: Arc<dyn Credentials>,
    server_challenge: Option<[u8; 8]>,
}

impl NtlmAcceptor {
    pub fn new(credentials: Arc<dyn Credentials>) -> NtlmAcceptor {
        NtlmAcceptor {
            ntlm: Box::new(Ntlm::new()),
            credentials,
            server_challenge: None,
        }
    }

    /// One leg: NEGOTIATE → CHALLENGE, then AUTHENTICATE → established.
    pub fn step(&mut self, token: &[u8]) -> Result<(Vec<u8>, Option<Established>), SecurityError> {
        match message_type(token)? {
            NEGOTIATE_MESSAGE if self.server_challenge.is_none() => {
                let out = accept_step(&mut self.ntlm, token, None)?;
                let challenge = out
                    .get(24..32)
                    .and_then(|c| <[u8; 8]>::try_from(c).ok())
                    .ok_or(SecurityError::Token("the provider made a short challenge"))?;
                self.server_challenge = Some(challenge);
                Ok((out, None))
            }
            AUTHENTICATE_MESSAGE => {
                let challenge = self.server_challenge.ok_or(SecurityError::Token(
                    "an AUTHENTICATE_MESSAGE before a challenge",
                ))?;
                let message = AuthenticateMessage::parse(token)?;
                if message.flags & flag::EXTENDED_SESSION_SECURITY == 0 {
                    return Err(SecurityError::LogonFailure(
                        "NTLM without extended session security is refused".to_string(),
                    ));
                }
                let (account, nt_hash) = message.logon(&*self.credentials, &challenge)?;
                let hash = NtlmHash::from_bytes(nt_hash);
                let identity =
                    AuthIdentityBuffers::from_utf8_with_hash(&message.user, &message.domain, &hash);
                let out = accept_step(&mut self.ntlm, token, Some(identity))?;
                // Derives the session key and checks the MIC.
                self.ntlm.complete_auth_token(&mut [])?;
                let session = NtlmSession::new(&session_key(&self.ntlm)?, message.flags, false);
                Ok((
                    out,
                    Some(Established {
                        identity: Some(Identity {
                            user: account,
                            domain: message.domain.clone(),
                        }),
                        session,
                        authenticate_has_mic: message.has_mic(),
                    }),
                ))
            }
            _ => Err(SecurityError::Token("an NTLM message out of sequence")),
        }
    }
}

fn session_key(ntlm: &Ntlm) -> Result<[u8; 16], SecurityError> {
    let keys = ntlm.query_context_session_key()?;
    <[u8; 16]>::try_from(keys.session_key.as_ref().as_slice())
        .map_err(|_| SecurityError::Token("the provider's session key is not 16 bytes"))
}

fn accept_step(
    ntlm: &mut Ntlm,
    token: &[u8],
    identity: Option<AuthIdentityBuffers>,
) -> Result<Vec<u8>, SecurityError> {
    let mut credentials = identity;
    let mut input = vec![SecurityBuffer::new(token.to_vec(), BufferType::Token)];
    let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
    let builder = ntlm
        .accept_security_context()
        .with_credentials_handle(&mut credentials)
        .with_context_requirements(ServerRequestFlags::ALLOCATE_MEMORY)
        .with_target_data_representation(DataRepresentation::Native)
        .with_input(&mut input)
        .with_output(&mut output);
    ntlm.accept_security_context_impl(builder)?
        .resolve_to_result()?;
    Ok(std::mem::take(&mut output[0].buffer))
}

/// The client side of the handshake.
pub(super) struct NtlmInitiator {
    ntlm: Box<Ntlm>,
    credentials: Option<AuthIdentityBuffers>,
    level: u8,
}

impl NtlmInitiator {
    pub fn new(
        level: u8,
        user: &str,
        domain: &str,
        password: &str,
    ) -> Result<NtlmInitiator, SecurityError> {
        let mut ntlm = Box::new(Ntlm::new());
        let identity = sspi::AuthIdentity {
            username: sspi::Username::new(user, (!domain.is_empty()).then_some(domain))
                .map_err(|_| SecurityError::LogonFailure(format!("'{user}' is not a user name")))?,
            password: password.to_string().into(),
        };
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut *ntlm)?;
        Ok(NtlmInitiator {
            ntlm,
            credentials: acquired.credentials_handle,
            level,
        })
    }

    /// The next token given the server's last one (None for the
    /// NEGOTIATE_MESSAGE); the session once the AUTHENTICATE_MESSAGE is
    /// made.
    pub fn step(
        &mut self,
        input: Option<&[u8]>,
    ) -> Result<(Vec<u8>, Option<NtlmSession>), SecurityError> {
        let mut flags = ClientRequestFlags::ALLOCATE_MEMORY;
        if protects_pdus(self.level) {
            flags |= ClientRequestFlags::INTEGRITY;
        }
        if self.level == auth_level::PRIVACY {
            flags |= ClientRequestFlags::CONFIDENTIALITY;
        }
        let mut input_buffers = input
            .map(|t| vec![SecurityBuffer::new(t.to_vec(), BufferType::Token)])
            .unwrap_or_default();
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.credentials)
            .with_context_requirements(flags)
            .with_target_data_representation(DataRepresentation::Native)
            .with_output(&mut output);
        if input.is_some() {
            builder = builder.with_input(&mut input_buffers);
        }
        let result = self
            .ntlm
            .initialize_security_context_impl(&mut builder)?
            .resolve_to_result()?;
        let token = std::mem::take(&mut output[0].buffer);
        match result.status {
            SecurityStatus::ContinueNeeded => Ok((token, None)),
            SecurityStatus::Ok | SecurityStatus::CompleteNeeded => {
                if result.status == SecurityStatus::CompleteNeeded {
                    self.ntlm.complete_auth_token(&mut [])?;
                }
                let message = AuthenticateMessage::parse(&token)?;
                let session = NtlmSession::new(&session_key(&self.ntlm)?, message.flags, true);
                Ok((token, Some(session)))
            }
            _ => Err(SecurityError::Token("unexpected status from the provider")),
        }
    }
}

/// One direction of session security: its signing key, RC4 handle and
/// sequence number ([MS-NLMP] 3.4.1).
struct Direction {
    /// Kept for the tests, which check it against [MS-NLMP] 4.2.
    #[cfg(test)]
    signing_key: [u8; 16],
    /// HMAC_MD5 keyed with `signing_key` once: each message's MAC starts
    /// from a copy, which saves hashing the key's two pads per message
    /// (half of the MD5 work of a small PDU).
    keyed_mac: Hmac<Md5>,
    sealing_key: [u8; 16],
    handle: Rc4,
    sequence: u32,
}

impl Direction {
    fn new(exported: &[u8; 16], seal_key: &[u8], sign_magic: &[u8], seal_magic: &[u8]) -> Self {
        let md5 = |key: &[u8], magic: &[u8]| -> [u8; 16] {
            let mut hash = Md5::new();
            hash.update(key);
            hash.update(magic);
            hash.finalize().into()
        };
        let sealing_key = md5(seal_key, seal_magic);
        let signing_key = md5(exported, sign_magic);
        Direction {
            #[cfg(test)]
            signing_key,
            keyed_mac: <Hmac<Md5> as KeyInit>::new_from_slice(&signing_key)
                .expect("HMAC takes keys of any length"),
            sealing_key,
            handle: Rc4::new_from_slice(&sealing_key).expect("RC4 takes 16-byte keys"),
            sequence: 0,
        }
    }

    /// The first half of MAC() with extended session security ([MS-NLMP]
    /// 3.4.4.2): HMAC_MD5 of the next sequence number and the message.
    fn checksum(&self, parts: &[&[u8]]) -> [u8; 8] {
        let mut mac = self.keyed_mac.clone();
        mac.update(&self.sequence.to_le_bytes());
        for part in parts {
            mac.update(part);
        }
        let digest: [u8; 16] = mac.finalize().into_bytes().into();
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&digest[..8]);
        checksum
    }

    /// The second half: the checksum through the RC4 handle when keys
    /// were exchanged, then the signature; the sequence number moves on.
    fn finish(&mut self, key_exch: bool, mut checksum: [u8; 8]) -> [u8; SIGNATURE_LEN] {
        if key_exch {
            self.handle.apply_keystream(&mut checksum);
        }
        let mut signature = [0u8; SIGNATURE_LEN];
        signature[0] = 1; // Version
        signature[4..12].copy_from_slice(&checksum);
        signature[12..].copy_from_slice(&self.sequence.to_le_bytes());
        self.sequence = self.sequence.wrapping_add(1);
        signature
    }

    fn sign(&mut self, key_exch: bool, parts: &[&[u8]]) -> [u8; SIGNATURE_LEN] {
        let checksum = self.checksum(parts);
        self.finish(key_exch, checksum)
    }

    /// Puts the RC4 handle back to its initial state: [MS-SPNG] 3.2.5.1
    /// after the mechListMIC, which is always the handle's first use.
    fn reset_handle(&mut self) {
        self.handle = Rc4::new_from_slice(&self.sealing_key).expect("RC4 takes 16-byte keys");
    }
}

/// NTLM session security of an established context ([MS-NLMP] 3.4),
/// extended session security only.
pub(super) struct NtlmSession {
    outbound: Direction,
    inbound: Direction,
    key_exch: bool,
}

pub(super) const CLIENT_SIGN: &[u8] =
    b"session key to client-to-server signing key magic constant\0";
pub(super) const SERVER_SIGN: &[u8] =
    b"session key to server-to-client signing key magic constant\0";
pub(super) const CLIENT_SEAL: &[u8] =
    b"session key to client-to-server sealing key magic constant\0";
pub(super) const SERVER_SEAL: &[u8] =
    b"session key to server-to-client sealing key magic constant\0";

impl NtlmSession {
    /// Keys from the exported session key and the negotiated flags
    /// ([MS-NLMP] 3.4.5.2 SIGNKEY, 3.4.5.3 SEALKEY).
    pub fn new(exported: &[u8; 16], flags: u32, client: bool) -> NtlmSession {
        let seal_key = &exported[..seal_key_len(flags)];
        let from_client = Direction::new(exported, seal_key, CLIENT_SIGN, CLIENT_SEAL);
        let from_server = Direction::new(exported, seal_key, SERVER_SIGN, SERVER_SEAL);
        let (outbound, inbound) = by_side(client, from_client, from_server);
        NtlmSession {
            outbound,
            inbound,
            key_exch: flags & flag::KEY_EXCH != 0,
        }
    }

    /// GSS_GetMIC over SPNEGO's mechTypes, leaving the RC4 handle as it
    /// was ([MS-SPNG] 3.2.5.1).
    pub fn mech_list_mic(&mut self, mech_types: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mic = self.outbound.sign(self.key_exch, &[mech_types]);
        self.outbound.reset_handle();
        mic
    }

    /// GSS_VerifyMIC of the peer's mechListMIC, leaving the RC4 handle as
    /// it was.
    pub fn verify_mech_list_mic(&mut self, mech_types: &[u8], mic: &[u8]) -> bool {
        let expected = self.inbound.sign(self.key_exch, &[mech_types]);
        self.inbound.reset_handle();
        constant_time_eq(&expected, mic)
    }

    /// GSS_WrapEx ([MS-NLMP] 3.4.3, 3.4.4.2): the signature of
    /// `message`, whose `sealed` range is then encrypted in place. The
    /// checksum is of the plain text; the body goes through the RC4 handle
    /// before the checksum does.
    fn wrap(&mut self, message: &mut [u8], sealed: Option<Range<usize>>) -> [u8; SIGNATURE_LEN] {
        let checksum = self.outbound.checksum(&[message]);
        if let Some(range) = sealed {
            self.outbound.handle.apply_keystream(&mut message[range]);
        }
        self.outbound.finish(self.key_exch, checksum)
    }

    /// GSS_UnwrapEx: decrypts the `sealed` range in place, then checks
    /// the signature of the whole message.
    fn unwrap(
        &mut self,
        message: &mut [u8],
        sealed: Option<Range<usize>>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        if let Some(range) = sealed {
            self.inbound.handle.apply_keystream(&mut message[range]);
        }
        let expected = self.inbound.sign(self.key_exch, &[message]);
        if constant_time_eq(&expected, signature) {
            Ok(())
        } else {
            Err(SecurityError::BadSignature)
        }
    }

    /// Protects a PDU ([MS-RPCE] 3.3.1.5.2.2): `frag` ends with the
    /// sec_trailer and a signature to fill in; its body starts at
    /// `body_start`. Everything before the signature is signed, the body
    /// sealed when asked.
    pub fn protect(
        &mut self,
        frag: &mut [u8],
        body_start: usize,
        seal: bool,
    ) -> Result<(), SecurityError> {
        let trailer_start = trailer_start(frag.len(), body_start)?;
        let (message, signature) = frag.split_at_mut(trailer_start + SEC_TRAILER_LEN);
        signature.copy_from_slice(&self.wrap(message, seal.then_some(body_start..trailer_start)));
        Ok(())
    }

    /// Verifies (and when sealed, first decrypts) a PDU laid out as for
    /// [`NtlmSession::protect`].
    pub fn unprotect(
        &mut self,
        frag: &mut [u8],
        body_start: usize,
        seal: bool,
    ) -> Result<(), SecurityError> {
        let trailer_start = trailer_start(frag.len(), body_start)?;
        let (message, signature) = frag.split_at_mut(trailer_start + SEC_TRAILER_LEN);
        self.unwrap(
            message,
            seal.then_some(body_start..trailer_start),
            signature,
        )
    }
}

/// Where the sec_trailer starts, given that a signature ends the
/// fragment and the body must fit before the trailer.
fn trailer_start(len: usize, body_start: usize) -> Result<usize, SecurityError> {
    len.checked_sub(SIGNATURE_LEN + SEC_TRAILER_LEN)
        .filter(|&t| t >= body_start)
        .ok_or(SecurityError::Token(
            "a fragment too short for its verifier",
        ))
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The fields of an AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3) checked here.
pub(super) struct AuthenticateMessage {
    pub user: String,
    pub domain: String,
    pub nt_response: Vec<u8>,
    pub flags: u32,
}

impl AuthenticateMessage {
    pub fn parse(token: &[u8]) -> Result<AuthenticateMessage, SecurityError> {
        if token.len() < 64 || message_type(token)? != AUTHENTICATE_MESSAGE {
            return Err(SecurityError::Token("a short AUTHENTICATE_MESSAGE"));
        }
        let u16_at = |at: usize| u16::from_le_bytes([token[at], token[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([token[at], token[at + 1], token[at + 2], token[at + 3]])
        };
        // A field: length, maximum length, offset from the message start.
        let field = |at: usize| -> Result<&[u8], SecurityError> {
            let len = usize::from(u16_at(at));
            let offset = u32_at(at + 4) as usize;
            token
                .get(offset..offset.saturating_add(len))
                .ok_or(SecurityError::Token(
                    "a field outside the AUTHENTICATE_MESSAGE",
                ))
        };
        let flags = u32_at(60);
        let text = |bytes: &[u8]| -> Result<String, SecurityError> {
            if flags & flag::UNICODE != 0 {
                if !bytes.len().is_multiple_of(2) {
                    return Err(SecurityError::Token("odd-length UTF-16 text"));
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16(&units).map_err(|_| SecurityError::Token("invalid UTF-16 text"))
            } else {
                Ok(bytes.iter().map(|&b| char::from(b)).collect())
            }
        };
        Ok(AuthenticateMessage {
            nt_response: field(20)?.to_vec(),
            domain: text(field(28)?)?,
            user: text(field(36)?)?,
            flags,
        })
    }

    /// The account the message logs on as and its NT hash, once its
    /// NTLMv2 response to `challenge` is checked against the store.
    pub fn logon(
        &self,
        credentials: &dyn Credentials,
        challenge: &[u8; 8],
    ) -> Result<(String, [u8; 16]), SecurityError> {
        let (account, nt_hash) = credentials
            .nt_hash(&self.user)
            .filter(|_| !self.user.is_empty())
            .ok_or_else(|| {
                SecurityError::LogonFailure(format!(
                    "no account '{}' that can log on with NTLM",
                    self.user
                ))
            })?;
        if !self.verify_ntlmv2(&nt_hash, challenge)? {
            return Err(SecurityError::LogonFailure(format!(
                "wrong password for '{account}'"
            )));
        }
        Ok((account, nt_hash))
    }

    /// NTProofStr = HMAC_MD5(NTOWFv2, ServerChallenge || temp), where
    /// temp is the rest of the NTLMv2 response ([MS-NLMP] 3.3.2).
    pub fn verify_ntlmv2(
        &self,
        nt_hash: &[u8; 16],
        challenge: &[u8; 8],
    ) -> Result<bool, SecurityError> {
        // NTProofStr (16) and at least the fixed part of the client
        // challenge structure (28, [MS-NLMP] 2.2.2.7); 24 bytes is NTLMv1.
        if self.nt_response.len() < 16 + 28 {
            return Err(SecurityError::LogonFailure(
                "NTLMv1 responses are refused; use NTLMv2".to_string(),
            ));
        }
        let (proof, temp) = self.nt_response.split_at(16);
        let expected = hmac_md5(
            &ntowf_v2(nt_hash, &self.user, &self.domain),
            &[challenge, temp],
        );
        Ok(constant_time_eq(&expected, proof))
    }

    /// Whether the client says it put a MIC in the message: MsvAvFlags
    /// bit 0x2 among the AV pairs of the NTLMv2 response ([MS-NLMP]
    /// 2.2.2.1), which follow its 28 fixed bytes.
    pub fn has_mic(&self) -> bool {
        const MSV_AV_FLAGS: u16 = 6;
        let pairs = self.nt_response.get(16 + 28..).unwrap_or_default();
        av_pair(pairs, MSV_AV_FLAGS)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .is_some_and(|v| u32::from_le_bytes(v) & 2 != 0)
    }
}

pub(super) fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac =
        <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_name_is_upper_cased_the_domain_is_not_and_ntlmv1_is_refused() {
        let challenge = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let message = AuthenticateMessage::parse(&hex_bytes(NLMP_4_2_4_AUTHENTICATE)).unwrap();
        let lower_user = AuthenticateMessage {
            user: "user".into(),
            domain: message.domain.clone(),
            nt_response: message.nt_response.clone(),
            flags: message.flags,
        };
        assert!(lower_user
            .verify_ntlmv2(&NT_HASH_OF_PASSWORD, &challenge)
            .unwrap());
        let upper_domain = AuthenticateMessage {
            user: message.user.clone(),
            domain: "DOMAIN".into(),
            nt_response: message.nt_response.clone(),
            flags: message.flags,
        };
        assert!(!upper_domain
            .verify_ntlmv2(&NT_HASH_OF_PASSWORD, &challenge)
            .unwrap());
        let v1 = AuthenticateMessage {
            nt_response: vec![0; 24],
            ..message
        };
        assert!(matches!(
            v1.verify_ntlmv2(&NT_HASH_OF_PASSWORD, &challenge),
            Err(SecurityError::LogonFailure(_))
        ));
    }

    /// [MS-NLMP] 4.2.1.1: NTOWFv1("Password").
    const NT_HASH_OF_PASSWORD: [u8; 16] = [
        0xa4, 0xf4, 0x9c, 0x40, 0x65, 0x10, 0xbd, 0xca, 0xb6, 0x82, 0x4e, 0xe7, 0xc3, 0x0f, 0xd8,
        0x52,
    ];

    /// The AUTHENTICATE_MESSAGE of [MS-NLMP] 4.2.4.3, byte for byte.
    const NLMP_4_2_4_AUTHENTICATE: &str = "\
        4e544c4d5353500003000000180018006c00000054005400840000000c000c00\
        480000000800080054000000100010005c00000010001000d8000000358288e2\
        0501280a0000000f44006f006d00610069006e00550073006500720043004f00\
        4d005000550054004500520086c35097ac9cec102554764a57cccc19aaaaaaaa\
        aaaaaaaa68cd0ab851e51c96aabc927bebef6a1c010100000000000000000000\
        00000000aaaaaaaaaaaaaaaa0000000002000c0044006f006d00610069006e00\
        01000c005300650072007600650072000000000000000000c5dad2544fc97990\
        94ce1ce90bc9d03e";

    #[test]
    fn the_authenticate_message_of_ms_nlmp_4_2_4_3_parses_and_verifies() {
        let token = hex_bytes(NLMP_4_2_4_AUTHENTICATE);
        assert_eq!(message_type(&token).unwrap(), AUTHENTICATE_MESSAGE);
        let message = AuthenticateMessage::parse(&token).unwrap();
        assert_eq!(message.user, "User");
        assert_eq!(message.domain, "Domain");
        assert_eq!(message.nt_response.len(), 0x54);
        let nt_hash = NT_HASH_OF_PASSWORD;
        let challenge = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        assert!(message.verify_ntlmv2(&nt_hash, &challenge).unwrap());
        assert!(!message.verify_ntlmv2(&[0x11; 16], &challenge).unwrap());
        assert!(!message.verify_ntlmv2(&nt_hash, &[0; 8]).unwrap());
        // A tampered response no longer verifies.
        let mut tampered = token.clone();
        tampered[0xa0] ^= 1;
        let tampered = AuthenticateMessage::parse(&tampered).unwrap();
        assert!(!tampered.verify_ntlmv2(&nt_hash, &challenge).unwrap());
    }

    /// [MS-NLMP] 4.2.4.4: GSS_WrapEx with the random session key
    /// 0x55…, NTLMSSP_NEGOTIATE_KEY_EXCH | 128 | extended session
    /// security, sequence number 0, from the client.
    #[test]
    fn sealing_matches_ms_nlmp_4_2_4_4() {
        let flags = flag::KEY_EXCH | flag::NEGOTIATE_128 | flag::EXTENDED_SESSION_SECURITY;
        let mut client = NtlmSession::new(&[0x55; 16], flags, true);
        assert_eq!(
            client.outbound.sealing_key.to_vec(),
            hex_bytes("59f600973cc4960a25480a7c196e4c58")
        );
        assert_eq!(
            client.outbound.signing_key.to_vec(),
            hex_bytes("4788dc861b4782f35d43fd98fe1a2d39")
        );
        let plain: Vec<u8> = "Plaintext"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut message = plain.clone();
        let len = message.len();
        let signature = client.wrap(&mut message, Some(0..len));
        assert_eq!(message, hex_bytes("54e50165bf1936dc996020c1811b0f06fb5f"));
        assert_eq!(
            signature.to_vec(),
            hex_bytes("010000007fb38ec5c55d497600000000")
        );
        // The server's half of the same session reads it back, and the
        // next message from the client carries sequence number 1.
        let mut server = NtlmSession::new(&[0x55; 16], flags, false);
        server
            .unwrap(&mut message, Some(0..len), &signature)
            .unwrap();
        assert_eq!(message, plain);
        let second = client.wrap(&mut message, None);
        assert_eq!(second[12..], [1, 0, 0, 0]);
        server.unwrap(&mut message, None, &second).unwrap();
        // A replayed or altered message does not verify.
        assert!(matches!(
            server.unwrap(&mut message, None, &second),
            Err(SecurityError::BadSignature)
        ));
    }

    /// [MS-SPNG] 3.2.5.1: after the mechListMIC the RC4 handle is as it
    /// was, so the first sealed message encrypts as on a fresh session,
    /// while the sequence number has moved on.
    #[test]
    fn the_mech_list_mic_leaves_the_rc4_handle_as_it_was() {
        let flags = flag::KEY_EXCH | flag::NEGOTIATE_128 | flag::EXTENDED_SESSION_SECURITY;
        let mech_types = [
            0x30, 0x0c, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 2, 2, 10,
        ];
        let mut client = NtlmSession::new(&[7; 16], flags, true);
        let mut server = NtlmSession::new(&[7; 16], flags, false);
        let mic = client.mech_list_mic(&mech_types);
        assert!(server.verify_mech_list_mic(&mech_types, &mic));
        assert!(!NtlmSession::new(&[7; 16], flags, false).verify_mech_list_mic(b"other", &mic));
        let mut after_mic = *b"stub data";
        let mut fresh = after_mic;
        let signature = client.wrap(&mut after_mic, Some(0..9));
        NtlmSession::new(&[7; 16], flags, true).wrap(&mut fresh, Some(0..9));
        assert_eq!(after_mic, fresh, "the body's keystream starts over");
        assert_eq!(
            signature[12..],
            [1, 0, 0, 0],
            "the MIC used sequence number 0"
        );
        server
            .unwrap(&mut after_mic, Some(0..9), &signature)
            .unwrap();
        assert_eq!(&after_mic, b"stub data");
    }

    #[test]
    fn seal_keys_are_cut_to_the_negotiated_strength() {
        let base = flag::KEY_EXCH | flag::EXTENDED_SESSION_SECURITY;
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let strong = NtlmSession::new(&key, base | flag::NEGOTIATE_128, true);
        let medium = NtlmSession::new(&key, base | flag::NEGOTIATE_56, true);
        let weak = NtlmSession::new(&key, base, true);
        let mut seal_magic = key[..7].to_vec();
        seal_magic.extend_from_slice(CLIENT_SEAL);
        assert_eq!(
            medium.outbound.sealing_key,
            <[u8; 16]>::from(Md5::digest(&seal_magic))
        );
        assert_ne!(strong.outbound.sealing_key, medium.outbound.sealing_key);
        assert_ne!(medium.outbound.sealing_key, weak.outbound.sealing_key);
        assert_eq!(strong.outbound.signing_key, weak.outbound.signing_key);
    }

    #[test]
    fn the_mic_flag_is_read_from_the_av_pairs() {
        let message = AuthenticateMessage::parse(&hex_bytes(NLMP_4_2_4_AUTHENTICATE)).unwrap();
        assert!(!message.has_mic(), "4.2.4.3 has no MsvAvFlags");
        let mut with_flags = message.nt_response[..44].to_vec();
        with_flags.extend_from_slice(&[6, 0, 4, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        let with_mic = AuthenticateMessage {
            nt_response: with_flags,
            ..message
        };
        assert!(with_mic.has_mic());
    }

    fn hex_bytes(text: &str) -> Vec<u8> {
        let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn malformed_ntlm_tokens_are_errors() {
        assert!(message_type(b"short").is_err());
        assert!(message_type(b"NOTNTLM\0\x01\0\0\0").is_err());
        let mut token = vec![0u8; 64];
        token[..8].copy_from_slice(NTLM_SIGNATURE);
        token[8] = 3;
        // UserName field pointing past the end.
        token[36] = 10;
        token[40] = 200;
        assert!(AuthenticateMessage::parse(&token).is_err());
    }
}
