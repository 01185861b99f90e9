//! Security contexts ([MS-RPCE] 3.3.1.5.2): building one over the legs
//! of bind/bind_ack, alter_context/alter_context_resp and rpc_auth_3, and
//! using it to sign or seal request and response PDUs.
//!
//! The NTLM provider ([MS-NLMP]) is the `sspi` crate's. On the server
//! side this module adds what `sspi` leaves to its caller: it finds the
//! user's NT hash in a [`Credentials`] store (the product's user
//! database) and checks the NTLMv2 response (NTProofStr, [MS-NLMP] 3.3.2)
//! before the context is completed; `sspi` then derives the session keys
//! and checks the MIC. NTLMv1 responses are refused, as IIS with
//! LmCompatibilityLevel 5 refuses them.
//!
//! With NTLMv2 every segment of the PDU is covered by the signature
//! ([MS-NLMP] 3.4.6.1): header, body and sec_trailer; at the privacy
//! level the body is also encrypted.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sspi::{
    AuthIdentityBuffers, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation,
    EncryptionFlags, Ntlm, NtlmHash, SecurityBuffer, SecurityBufferFlags, SecurityBufferRef,
    SecurityStatus, ServerRequestFlags, Sspi, SspiImpl,
};

/// The authentication levels of [MS-RPCE] 2.2.1.1.8.
pub mod auth_level {
    pub const NONE: u8 = 1;
    pub const CONNECT: u8 = 2;
    pub const CALL: u8 = 3;
    pub const PKT: u8 = 4;
    pub const INTEGRITY: u8 = 5;
    pub const PRIVACY: u8 = 6;

    /// The level's name, as administrators write it.
    pub fn name(level: u8) -> &'static str {
        match level {
            NONE => "none",
            CONNECT => "connect",
            CALL => "call",
            PKT => "packet",
            INTEGRITY => "integrity",
            PRIVACY => "privacy",
            _ => "unknown",
        }
    }

    /// A level by name or number (`privacy` or `6`).
    pub fn parse(text: &str) -> Option<u8> {
        (NONE..=PRIVACY)
            .find(|&l| name(l).eq_ignore_ascii_case(text))
            .or_else(|| text.parse().ok().filter(|l| (NONE..=PRIVACY).contains(l)))
    }
}

/// Authentication types: the security provider identifiers of [MS-RPCE]
/// 2.2.1.1.7.
pub mod auth_type {
    pub const NONE: u8 = 0;
    pub const GSS_NEGOTIATE: u8 = 9;
    pub const WINNT: u8 = 10;
    pub const GSS_KERBEROS: u8 = 16;
}

/// An NTLM signature ([MS-NLMP] 2.2.2.9.1): the authentication token of
/// every signed or sealed PDU.
pub const SIGNATURE_LEN: usize = 16;

/// The sec_trailer ([MS-RPCE] 2.2.2.11).
pub const SEC_TRAILER_LEN: usize = 8;

/// What protecting a fragment adds after its stub data, for sizing
/// fragments: padding (at most 8 bytes when the stub of every fragment
/// but the last is a multiple of 8, and the last is no longer than they
/// are), the sec_trailer and the signature.
pub const PROTECTION_OVERHEAD: usize = 8 + SEC_TRAILER_LEN + SIGNATURE_LEN;

/// Where the server finds the accounts NTLM logs on with.
pub trait Credentials: Send + Sync {
    /// The account's name as stored and its NT hash (MD4 of the UTF-16LE
    /// password); None for an unknown user or one without an NT hash.
    fn nt_hash(&self, user: &str) -> Option<(String, [u8; 16])>;
}

/// Who a security context authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The account name as the credential store holds it.
    pub user: String,
    /// The domain the client named (informational: accounts are local).
    pub domain: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.user)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("authentication type {0} is not supported")]
    UnknownType(u8),
    #[error("authentication level {0} is not valid")]
    BadLevel(u8),
    #[error("malformed authentication token: {0}")]
    Token(&'static str),
    #[error("logon failure: {0}")]
    LogonFailure(String),
    #[error("the security provider failed: {0}")]
    Provider(#[from] sspi::Error),
    #[error("the security context is not established")]
    NotEstablished,
}

/// The outcome of one leg.
#[derive(Debug, PartialEq, Eq)]
pub enum Leg {
    /// Send this token; another leg follows.
    Continue(Vec<u8>),
    /// The context is established; send this token (often empty).
    Done(Vec<u8>),
}

enum Provider {
    NtlmServer {
        ntlm: Box<Ntlm>,
        credentials: Arc<dyn Credentials>,
        server_challenge: Option<[u8; 8]>,
    },
    NtlmClient {
        ntlm: Box<Ntlm>,
        credentials: Option<AuthIdentityBuffers>,
    },
}

/// One security context of a connection (one auth_context_id).
pub struct SecurityContext {
    pub auth_type: u8,
    pub level: u8,
    pub context_id: u32,
    identity: Option<Identity>,
    established: bool,
    provider: Provider,
}

impl fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityContext")
            .field("auth_type", &self.auth_type)
            .field("level", &self.level)
            .field("context_id", &self.context_id)
            .field("identity", &self.identity)
            .field("established", &self.established)
            .finish()
    }
}

/// Whether a level protects PDUs: packet and call are taken as integrity,
/// as Windows upgrades them on connection-oriented transports.
pub fn protects_pdus(level: u8) -> bool {
    level >= auth_level::CALL
}

fn check_level(level: u8) -> Result<(), SecurityError> {
    if (auth_level::CONNECT..=auth_level::PRIVACY).contains(&level) {
        Ok(())
    } else {
        Err(SecurityError::BadLevel(level))
    }
}

impl SecurityContext {
    /// The server side of a new context, from the first leg's trailer.
    pub fn server(
        auth_type: u8,
        level: u8,
        context_id: u32,
        credentials: Arc<dyn Credentials>,
    ) -> Result<SecurityContext, SecurityError> {
        check_level(level)?;
        let provider = match auth_type {
            auth_type::WINNT => Provider::NtlmServer {
                ntlm: Box::new(Ntlm::new()),
                credentials,
                server_challenge: None,
            },
            other => return Err(SecurityError::UnknownType(other)),
        };
        Ok(SecurityContext {
            auth_type,
            level,
            context_id,
            identity: None,
            established: false,
            provider,
        })
    }

    /// The client side of an NTLM context and its first token (the
    /// NEGOTIATE_MESSAGE).
    pub fn ntlm_client(
        level: u8,
        context_id: u32,
        user: &str,
        domain: &str,
        password: &str,
    ) -> Result<(SecurityContext, Vec<u8>), SecurityError> {
        check_level(level)?;
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
        let mut context = SecurityContext {
            auth_type: auth_type::WINNT,
            level,
            context_id,
            identity: Some(Identity {
                user: user.to_string(),
                domain: domain.to_string(),
            }),
            established: false,
            provider: Provider::NtlmClient {
                ntlm,
                credentials: acquired.credentials_handle,
            },
        };
        let first = match context.initiate(None)? {
            Leg::Continue(token) | Leg::Done(token) => token,
        };
        Ok((context, first))
    }

    pub fn is_established(&self) -> bool {
        self.established
    }

    /// The authenticated caller (server side, once established).
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref().filter(|_| self.established)
    }

    /// Server: processes a leg from the client.
    pub fn accept(&mut self, token: &[u8]) -> Result<Leg, SecurityError> {
        let Provider::NtlmServer {
            ntlm,
            credentials,
            server_challenge,
        } = &mut self.provider
        else {
            return Err(SecurityError::Token("a client context accepts no tokens"));
        };
        match ntlm_message_type(token)? {
            NEGOTIATE_MESSAGE if server_challenge.is_none() => {
                let out = accept_step(ntlm, token, None)?;
                let challenge = out
                    .get(24..32)
                    .and_then(|c| <[u8; 8]>::try_from(c).ok())
                    .ok_or(SecurityError::Token("the provider made a short challenge"))?;
                *server_challenge = Some(challenge);
                Ok(Leg::Continue(out))
            }
            AUTHENTICATE_MESSAGE => {
                let challenge = server_challenge.ok_or(SecurityError::Token(
                    "an AUTHENTICATE_MESSAGE before a challenge",
                ))?;
                let message = AuthenticateMessage::parse(token)?;
                let (account, nt_hash) = credentials
                    .nt_hash(&message.user)
                    .filter(|_| !message.user.is_empty())
                    .ok_or_else(|| {
                        SecurityError::LogonFailure(format!(
                            "no account '{}' that can log on with NTLM",
                            message.user
                        ))
                    })?;
                if !message.verify_ntlmv2(&nt_hash, &challenge)? {
                    return Err(SecurityError::LogonFailure(format!(
                        "wrong password for '{account}'"
                    )));
                }
                let hash = NtlmHash::from_bytes(nt_hash);
                let identity =
                    AuthIdentityBuffers::from_utf8_with_hash(&message.user, &message.domain, &hash);
                let out = accept_step(ntlm, token, Some(identity))?;
                ntlm.complete_auth_token(&mut [])?;
                self.identity = Some(Identity {
                    user: account,
                    domain: message.domain,
                });
                self.established = true;
                Ok(Leg::Done(out))
            }
            _ => Err(SecurityError::Token("an NTLM message out of sequence")),
        }
    }

    /// Client: the next token, given the server's last one (None for the
    /// first leg).
    pub fn initiate(&mut self, input: Option<&[u8]>) -> Result<Leg, SecurityError> {
        let Provider::NtlmClient { ntlm, credentials } = &mut self.provider else {
            return Err(SecurityError::Token("a server context initiates nothing"));
        };
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
        let mut builder = ntlm
            .initialize_security_context()
            .with_credentials_handle(credentials)
            .with_context_requirements(flags)
            .with_target_data_representation(DataRepresentation::Native)
            .with_output(&mut output);
        if input.is_some() {
            builder = builder.with_input(&mut input_buffers);
        }
        let result = ntlm
            .initialize_security_context_impl(&mut builder)?
            .resolve_to_result()?;
        let token = std::mem::take(&mut output[0].buffer);
        match result.status {
            SecurityStatus::ContinueNeeded => Ok(Leg::Continue(token)),
            SecurityStatus::Ok | SecurityStatus::CompleteNeeded => {
                if result.status == SecurityStatus::CompleteNeeded {
                    ntlm.complete_auth_token(&mut [])?;
                }
                self.established = true;
                Ok(Leg::Done(token))
            }
            _ => Err(SecurityError::Token("unexpected status from the provider")),
        }
    }

    fn ntlm(&mut self) -> Result<&mut Ntlm, SecurityError> {
        if !self.established {
            return Err(SecurityError::NotEstablished);
        }
        Ok(match &mut self.provider {
            Provider::NtlmServer { ntlm, .. } | Provider::NtlmClient { ntlm, .. } => ntlm,
        })
    }

    /// Signs (and at the privacy level seals) an encoded fragment in
    /// place. `frag` ends with a [`SIGNATURE_LEN`]-byte authentication
    /// token to fill in, after the sec_trailer; its body (stub data and
    /// padding) starts at `body_start`.
    pub fn protect(&mut self, frag: &mut [u8], body_start: usize) -> Result<(), SecurityError> {
        let seal = self.level == auth_level::PRIVACY;
        let ntlm = self.ntlm()?;
        let mut buffers = gss_buffers(frag, body_start, seal)?;
        ntlm.encrypt_message(EncryptionFlags::empty(), &mut buffers)?;
        Ok(())
    }

    /// Verifies (and at the privacy level decrypts) a received fragment
    /// in place, laid out as for [`SecurityContext::protect`], with
    /// `pad_length` bytes of authentication padding. Returns where its
    /// stub data (now plain text) lies in `frag`.
    pub fn unprotect(
        &mut self,
        frag: &mut [u8],
        body_start: usize,
        pad_length: u8,
    ) -> Result<std::ops::Range<usize>, SecurityError> {
        let seal = self.level == auth_level::PRIVACY;
        let ntlm = self.ntlm()?;
        let mut buffers = gss_buffers(frag, body_start, seal)?;
        ntlm.decrypt_message(&mut buffers)?;
        // gss_buffers checked that the body fits before the trailer.
        let body_end = frag.len() - SIGNATURE_LEN - SEC_TRAILER_LEN;
        let stub_end = body_end
            .checked_sub(usize::from(pad_length))
            .filter(|&end| end >= body_start)
            .ok_or(SecurityError::Token(
                "auth_pad_length is longer than the body",
            ))?;
        Ok(body_start..stub_end)
    }
}

/// The PDU as GSS_WrapEx's ordered buffers ([MS-RPCE] 3.3.1.5.2.2):
/// header and sec_trailer signed only, the body signed and, when sealing,
/// encrypted; then the signature.
fn gss_buffers(
    frag: &mut [u8],
    body_start: usize,
    seal: bool,
) -> Result<[SecurityBufferRef<'_>; 4], SecurityError> {
    let len = frag.len();
    let trailer_start = len
        .checked_sub(SIGNATURE_LEN + SEC_TRAILER_LEN)
        .filter(|&t| t >= body_start)
        .ok_or(SecurityError::Token(
            "a fragment too short for its verifier",
        ))?;
    let (header, rest) = frag.split_at_mut(body_start);
    let (body, rest) = rest.split_at_mut(trailer_start - body_start);
    let (trailer, signature) = rest.split_at_mut(SEC_TRAILER_LEN);
    let signed_only = SecurityBufferFlags::SECBUFFER_READONLY_WITH_CHECKSUM;
    let body = SecurityBufferRef::data_buf(body);
    Ok([
        SecurityBufferRef::data_buf(header).with_flags(signed_only),
        if seal {
            body
        } else {
            body.with_flags(signed_only)
        },
        SecurityBufferRef::data_buf(trailer).with_flags(signed_only),
        SecurityBufferRef::token_buf(signature),
    ])
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

const NEGOTIATE_MESSAGE: u32 = 1;
const AUTHENTICATE_MESSAGE: u32 = 3;
const NTLM_SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// NTLMSSP_NEGOTIATE_UNICODE ([MS-NLMP] 2.2.2.5, flag A).
const NEGOTIATE_UNICODE: u32 = 0x0000_0001;

fn ntlm_message_type(token: &[u8]) -> Result<u32, SecurityError> {
    if token.len() < 12 || &token[..8] != NTLM_SIGNATURE {
        return Err(SecurityError::Token("not an NTLM message"));
    }
    Ok(u32::from_le_bytes([
        token[8], token[9], token[10], token[11],
    ]))
}

/// The fields of an AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3) the server
/// checks itself.
struct AuthenticateMessage {
    user: String,
    domain: String,
    nt_response: Vec<u8>,
}

impl AuthenticateMessage {
    fn parse(token: &[u8]) -> Result<AuthenticateMessage, SecurityError> {
        if token.len() < 64 {
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
            if flags & NEGOTIATE_UNICODE != 0 {
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
        })
    }

    /// NTProofStr = HMAC_MD5(NTOWFv2, ServerChallenge || temp), where
    /// temp is the rest of the NTLMv2 response ([MS-NLMP] 3.3.2).
    fn verify_ntlmv2(
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
        let user_domain: Vec<u8> = self
            .user
            .to_uppercase()
            .encode_utf16()
            .chain(self.domain.encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect();
        let ntowf_v2 = hmac_md5(nt_hash, &[&user_domain]);
        let expected = hmac_md5(&ntowf_v2, &[challenge, temp]);
        // Constant time: no early exit on the first differing byte.
        Ok(expected
            .iter()
            .zip(proof)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0)
    }
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
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
        };
        assert!(lower_user
            .verify_ntlmv2(&NT_HASH_OF_PASSWORD, &challenge)
            .unwrap());
        let upper_domain = AuthenticateMessage {
            user: message.user.clone(),
            domain: "DOMAIN".into(),
            nt_response: message.nt_response.clone(),
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
        assert_eq!(ntlm_message_type(&token).unwrap(), AUTHENTICATE_MESSAGE);
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

    fn hex_bytes(text: &str) -> Vec<u8> {
        let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn levels_by_name_and_number() {
        assert_eq!(auth_level::parse("privacy"), Some(auth_level::PRIVACY));
        assert_eq!(auth_level::parse("Integrity"), Some(auth_level::INTEGRITY));
        assert_eq!(auth_level::parse("2"), Some(auth_level::CONNECT));
        assert_eq!(auth_level::parse("7"), None);
        assert_eq!(auth_level::parse("secret"), None);
    }

    #[test]
    fn malformed_ntlm_tokens_are_errors() {
        assert!(ntlm_message_type(b"short").is_err());
        assert!(ntlm_message_type(b"NOTNTLM\0\x01\0\0\0").is_err());
        let mut token = vec![0u8; 64];
        token[..8].copy_from_slice(NTLM_SIGNATURE);
        token[8] = 3;
        // UserName field pointing past the end.
        token[36] = 10;
        token[40] = 200;
        assert!(AuthenticateMessage::parse(&token).is_err());
    }
}
