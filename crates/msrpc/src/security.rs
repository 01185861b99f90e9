//! Security contexts ([MS-RPCE] 3.3.1.5.2): building one over the legs
//! of bind/bind_ack, alter_context/alter_context_resp and rpc_auth_3, and
//! using it to sign or seal request and response PDUs.
//!
//! Two providers: NTLM (auth type 10, [MS-NLMP]) and SPNEGO (auth type 9,
//! [MS-SPNG]) negotiating NTLM. The NTLM messages are made and read by
//! the `sspi` crate; on the server side the `ntlm` module adds what `sspi` leaves
//! to its caller: it finds the user's NT hash in a [`Credentials`] store
//! (the product's user database) and checks the NTLMv2 response
//! (NTProofStr, [MS-NLMP] 3.3.2) before the context is completed; `sspi`
//! then derives the session key and checks the MIC. NTLMv1 responses are
//! refused, as IIS with LmCompatibilityLevel 5 refuses them.
//!
//! Kerberos (auth type 16, and as SPNEGO's mechanism) where the server
//! has a keytab: the `kerberos` module accepts service tickets with its keys and
//! makes the RFC 4121 per-message tokens in [MS-KILE]'s DCE style. A
//! client logs on with a service ticket from the user's credential cache
//! ([`CredentialCache`], what `kinit` and `kvno` leave).
//!
//! With NTLMv2 every segment of the PDU is covered by the signature
//! ([MS-NLMP] 3.4.6.1): header, body and sec_trailer; at the privacy
//! level the body is also encrypted.

mod kerberos;
mod ntlm;
mod ntlm_datagram;
mod spnego;

pub use kerberos::{
    CachedTicket, CredentialCache, CredentialCacheError, KerberosService, Keytab, KeytabEntry,
    KeytabError,
};
pub use ntlm_datagram::{DatagramChallenge, DatagramInitiator, DatagramSession};

use std::fmt;
use std::sync::Arc;

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

    /// The provider's name, for logs.
    pub fn name(auth_type: u8) -> &'static str {
        match auth_type {
            NONE => "none",
            GSS_NEGOTIATE => "Negotiate (SPNEGO)",
            WINNT => "NTLM",
            GSS_KERBEROS => "Kerberos",
            _ => "unknown",
        }
    }
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
    #[error("a signature does not verify")]
    BadSignature,
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

impl fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityContext")
            .field("auth_type", &self.auth_type)
            .field("level", &self.level)
            .field("context_id", &self.context_id)
            .field("identity", &self.identity)
            .field("established", &self.is_established())
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

/// The handshake a context is in, by provider and side.
enum Handshake {
    NtlmServer(ntlm::NtlmAcceptor),
    NtlmClient(ntlm::NtlmInitiator),
    SpnegoServer(spnego::SpnegoAcceptor),
    SpnegoClient(Box<spnego::SpnegoInitiator>),
    KerberosServer(kerberos::KerberosAcceptor),
    KerberosClient(Box<kerberos::KerberosInitiator>),
    Done,
}

/// What an established context protects PDUs with.
enum Session {
    Ntlm(Box<ntlm::NtlmSession>),
    Kerberos(kerberos::KerberosSession),
}

/// The providers a server accepts logons with: NTLM against its
/// credential store, and Kerberos when it has a keytab.
#[derive(Clone)]
pub struct Acceptors {
    pub credentials: Arc<dyn Credentials>,
    pub kerberos: Option<Arc<KerberosService>>,
}

/// One security context of a connection (one auth_context_id).
pub struct SecurityContext {
    pub auth_type: u8,
    pub level: u8,
    pub context_id: u32,
    identity: Option<Identity>,
    handshake: Handshake,
    /// The keys, once established.
    session: Option<Session>,
}

impl SecurityContext {
    /// The server side of a new context, from the first leg's trailer.
    pub fn server(
        auth_type: u8,
        level: u8,
        context_id: u32,
        acceptors: &Acceptors,
    ) -> Result<SecurityContext, SecurityError> {
        check_level(level)?;
        let handshake = match auth_type {
            auth_type::WINNT => {
                Handshake::NtlmServer(ntlm::NtlmAcceptor::new(acceptors.credentials.clone()))
            }
            auth_type::GSS_NEGOTIATE => Handshake::SpnegoServer(spnego::SpnegoAcceptor::new(
                ntlm::NtlmAcceptor::new(acceptors.credentials.clone()),
                acceptors
                    .kerberos
                    .clone()
                    .map(kerberos::KerberosAcceptor::new),
            )),
            auth_type::GSS_KERBEROS => match &acceptors.kerberos {
                Some(service) => {
                    Handshake::KerberosServer(kerberos::KerberosAcceptor::new(service.clone()))
                }
                // Without a keytab the provider is not there at all.
                None => return Err(SecurityError::UnknownType(auth_type)),
            },
            other => return Err(SecurityError::UnknownType(other)),
        };
        Ok(SecurityContext {
            auth_type,
            level,
            context_id,
            identity: None,
            handshake,
            session: None,
        })
    }

    /// The client side of a context (NTLM, or SPNEGO offering NTLM) and
    /// its first token.
    pub fn client(
        auth_type: u8,
        level: u8,
        context_id: u32,
        user: &str,
        domain: &str,
        password: &str,
    ) -> Result<(SecurityContext, Vec<u8>), SecurityError> {
        check_level(level)?;
        let mut ntlm = ntlm::NtlmInitiator::new(level, user, domain, password)?;
        let (handshake, first) = match auth_type {
            auth_type::WINNT => {
                let (token, _) = ntlm.step(None)?;
                (Handshake::NtlmClient(ntlm), token)
            }
            auth_type::GSS_NEGOTIATE => {
                let (spnego, token) =
                    spnego::SpnegoInitiator::new(spnego::InitiatorMech::Ntlm(ntlm))?;
                (Handshake::SpnegoClient(Box::new(spnego)), token)
            }
            other => return Err(SecurityError::UnknownType(other)),
        };
        let identity = Identity {
            user: user.to_string(),
            domain: domain.to_string(),
        };
        Ok((
            SecurityContext::initiator(auth_type, level, context_id, identity, handshake),
            first,
        ))
    }

    /// A client context about to send its first token.
    fn initiator(
        auth_type: u8,
        level: u8,
        context_id: u32,
        identity: Identity,
        handshake: Handshake,
    ) -> SecurityContext {
        SecurityContext {
            auth_type,
            level,
            context_id,
            identity: Some(identity),
            handshake,
            session: None,
        }
    }

    /// The client side of a Kerberos context (auth type 16, or SPNEGO
    /// offering Kerberos) with a service ticket of the credential cache,
    /// in the DCE style of [MS-KILE] 3.4.5.1, and its first token (the
    /// AP-REQ).
    pub fn kerberos_client(
        auth_type: u8,
        level: u8,
        context_id: u32,
        ticket: &CachedTicket,
    ) -> Result<(SecurityContext, Vec<u8>), SecurityError> {
        check_level(level)?;
        let mut krb = kerberos::KerberosInitiator::from_cache(ticket, true)?;
        let (handshake, first) = match auth_type {
            auth_type::GSS_KERBEROS => {
                let token = krb.ap_req()?;
                (Handshake::KerberosClient(Box::new(krb)), token)
            }
            auth_type::GSS_NEGOTIATE => {
                let (spnego, token) =
                    spnego::SpnegoInitiator::new(spnego::InitiatorMech::Kerberos(Box::new(krb)))?;
                (Handshake::SpnegoClient(Box::new(spnego)), token)
            }
            other => return Err(SecurityError::UnknownType(other)),
        };
        let identity = Identity {
            user: ticket.client_principal(),
            domain: ticket.client_realm.clone(),
        };
        let context = SecurityContext::initiator(auth_type, level, context_id, identity, handshake);
        Ok((context, first))
    }

    pub fn is_established(&self) -> bool {
        self.session.is_some()
    }

    /// The authenticated caller (server side, once established).
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref().filter(|_| self.is_established())
    }

    /// Server: processes a leg from the client.
    pub fn accept(&mut self, token: &[u8]) -> Result<Leg, SecurityError> {
        let (out, established) = match &mut self.handshake {
            Handshake::NtlmServer(ntlm) => {
                let (out, done) = ntlm.step(token)?;
                (
                    out,
                    done.map(|d| (d.identity, Session::Ntlm(Box::new(d.session)))),
                )
            }
            Handshake::SpnegoServer(spnego) => spnego.step(token)?,
            Handshake::KerberosServer(krb) => {
                let (out, done) = krb.step(token)?;
                (
                    out,
                    done.map(|d| (Some(d.identity), Session::Kerberos(d.session))),
                )
            }
            Handshake::Done => {
                return Err(SecurityError::Token(
                    "a leg after the context is established",
                ))
            }
            Handshake::NtlmClient(_)
            | Handshake::SpnegoClient(_)
            | Handshake::KerberosClient(_) => {
                return Err(SecurityError::Token("a client context accepts no tokens"))
            }
        };
        Ok(match established {
            Some((identity, session)) => {
                self.identity = identity;
                self.session = Some(session);
                self.handshake = Handshake::Done;
                Leg::Done(out)
            }
            None => Leg::Continue(out),
        })
    }

    /// Client: the next token, given the server's last one.
    pub fn initiate(&mut self, input: &[u8]) -> Result<Leg, SecurityError> {
        let (out, session) = match &mut self.handshake {
            Handshake::NtlmClient(ntlm) => {
                let (out, session) = ntlm.step(Some(input))?;
                (out, session.map(|s| Session::Ntlm(Box::new(s))))
            }
            Handshake::SpnegoClient(spnego) => spnego.step(input)?,
            Handshake::KerberosClient(krb) => {
                let (reply, session) = krb.ap_rep(input)?;
                (reply.unwrap_or_default(), Some(Session::Kerberos(session)))
            }
            Handshake::Done => {
                return Err(SecurityError::Token(
                    "a leg after the context is established",
                ))
            }
            Handshake::NtlmServer(_)
            | Handshake::SpnegoServer(_)
            | Handshake::KerberosServer(_) => {
                return Err(SecurityError::Token("a server context initiates nothing"))
            }
        };
        Ok(match session {
            Some(session) => {
                self.session = Some(session);
                self.handshake = Handshake::Done;
                Leg::Done(out)
            }
            None => Leg::Continue(out),
        })
    }

    fn session(&mut self) -> Result<&mut Session, SecurityError> {
        self.session.as_mut().ok_or(SecurityError::NotEstablished)
    }

    /// The length of the verifier this side puts after the sec_trailer of
    /// a protected PDU: an NTLM signature, or a Kerberos MIC or Wrap token.
    pub fn token_len(&self) -> usize {
        match self.session {
            Some(Session::Kerberos(_)) => {
                kerberos::KerberosSession::token_len(self.level == auth_level::PRIVACY)
            }
            _ => SIGNATURE_LEN,
        }
    }

    /// What protecting a fragment adds after its stub data: padding to
    /// 16, the sec_trailer and the verifier.
    pub fn protection_overhead(&self) -> usize {
        15 + SEC_TRAILER_LEN + self.token_len()
    }

    /// Signs (and at the privacy level seals) an encoded fragment in
    /// place. `frag` ends with a [`SecurityContext::token_len`]-byte
    /// verifier to fill in, after the sec_trailer; its body (stub data and
    /// padding) starts at `body_start`. With `header_sign`
    /// (PFC_SUPPORT_HEADER_SIGN negotiated), Kerberos covers the header
    /// and sec_trailer too; NTLMv2 always does.
    pub fn protect(
        &mut self,
        frag: &mut [u8],
        body_start: usize,
        header_sign: bool,
    ) -> Result<(), SecurityError> {
        let seal = self.level == auth_level::PRIVACY;
        match self.session()? {
            Session::Ntlm(s) => s.protect(frag, body_start, seal),
            Session::Kerberos(s) => s.protect(frag, body_start, seal, header_sign),
        }
    }

    /// Verifies (and at the privacy level decrypts) a received fragment
    /// in place, laid out as for [`SecurityContext::protect`] with a
    /// verifier of `token_len` bytes, with `pad_length` bytes of
    /// authentication padding. Returns where its stub data (now plain
    /// text) lies in `frag`.
    pub fn unprotect(
        &mut self,
        frag: &mut [u8],
        body_start: usize,
        pad_length: u8,
        token_len: usize,
        header_sign: bool,
    ) -> Result<std::ops::Range<usize>, SecurityError> {
        let seal = self.level == auth_level::PRIVACY;
        match self.session()? {
            Session::Ntlm(s) => {
                if token_len != SIGNATURE_LEN {
                    return Err(SecurityError::Token(
                        "a verifier that is not an NTLM signature",
                    ));
                }
                s.unprotect(frag, body_start, seal)?
            }
            Session::Kerberos(s) => s.unprotect(frag, body_start, token_len, seal, header_sign)?,
        }
        // unprotect checked that the body fits before the trailer.
        let body_end = frag.len() - token_len - SEC_TRAILER_LEN;
        let stub_end = body_end
            .checked_sub(usize::from(pad_length))
            .filter(|&end| end >= body_start)
            .ok_or(SecurityError::Token(
                "auth_pad_length is longer than the body",
            ))?;
        Ok(body_start..stub_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_name_and_number() {
        assert_eq!(auth_level::parse("privacy"), Some(auth_level::PRIVACY));
        assert_eq!(auth_level::parse("Integrity"), Some(auth_level::INTEGRITY));
        assert_eq!(auth_level::parse("2"), Some(auth_level::CONNECT));
        assert_eq!(auth_level::parse("7"), None);
        assert_eq!(auth_level::parse("secret"), None);
    }
}
