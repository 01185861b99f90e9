//! SPNEGO, the Negotiate provider (auth type 9; [RFC 4178] as extended
//! by [MS-SPNG]), with NTLM and, where the server has a keytab, Kerberos
//! as its mechanisms (the client's first choice among them wins, as on
//! Windows).
//!
//! The tokens are DER, encoded and decoded with the `der` crate (which
//! fails cleanly on any malformed input). The exchange over RPC:
//! bind (NegTokenInit with the NEGOTIATE_MESSAGE) → bind_ack
//! (accept-incomplete, CHALLENGE) → alter_context or rpc_auth_3
//! (AUTHENTICATE_MESSAGE and the client's mechListMIC) → the server's
//! accept-completed with its own mechListMIC. A client whose first choice
//! is another mechanism (Kerberos) is told to use NTLM and sends its
//! NEGOTIATE_MESSAGE in a further leg.

use der::asn1::{Any, BitString, ContextSpecific, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Enumerated, Sequence, TagMode, TagNumber};

use super::kerberos::{KerberosAcceptor, KerberosInitiator};
use super::ntlm::{NtlmAcceptor, NtlmInitiator};
use super::{Identity, SecurityError, Session};

/// 1.3.6.1.5.5.2: SPNEGO itself, in the GSS-API framing of the first token.
const SPNEGO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.2");
/// 1.3.6.1.4.1.311.2.2.10: NTLMSSP.
const NTLMSSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.2.10");
/// 1.2.840.113554.1.2.2: Kerberos V5 ([RFC 4121]).
const KRB5: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113554.1.2.2");
/// 1.2.840.48018.1.2.2: Kerberos V5 as Windows 2000 misencoded it, which
/// Windows clients still list first ([MS-SPNG] 3.1.5.2).
const MS_KRB5: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.48018.1.2.2");

/// NegTokenInit ([RFC 4178] 4.2.1) or NegTokenInit2 ([MS-SPNG] 2.2.1),
/// which puts negHints at [3] and mechListMIC at [4]. Neither is used
/// from a first token, but both are read.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct NegTokenInit {
    #[asn1(context_specific = "0", optional = "true")]
    mech_types: Option<Vec<ObjectIdentifier>>,
    #[asn1(context_specific = "1", optional = "true")]
    req_flags: Option<BitString>,
    #[asn1(context_specific = "2", optional = "true")]
    mech_token: Option<OctetString>,
    /// mechListMIC (NegTokenInit) or negHints (NegTokenInit2).
    #[asn1(context_specific = "3", optional = "true")]
    mic_or_hints: Option<Any>,
    /// mechListMIC of a NegTokenInit2.
    #[asn1(context_specific = "4", optional = "true")]
    mech_list_mic: Option<OctetString>,
}

/// negState ([RFC 4178] 4.2.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u32)]
enum NegState {
    AcceptCompleted = 0,
    AcceptIncomplete = 1,
    Reject = 2,
    RequestMic = 3,
}

/// NegTokenResp ([RFC 4178] 4.2.2).
#[derive(Clone, Debug, Default, Eq, PartialEq, Sequence)]
struct NegTokenResp {
    #[asn1(context_specific = "0", optional = "true")]
    neg_state: Option<NegState>,
    #[asn1(context_specific = "1", optional = "true")]
    supported_mech: Option<ObjectIdentifier>,
    #[asn1(context_specific = "2", optional = "true")]
    response_token: Option<OctetString>,
    #[asn1(context_specific = "3", optional = "true")]
    mech_list_mic: Option<OctetString>,
}

/// The GSS-API framing of the first token ([RFC 2743] 3.1):
/// `[APPLICATION 0] IMPLICIT SEQUENCE { thisMech, innerContextToken }`,
/// where SPNEGO's inner token is `[0] NegTokenInit`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct InitialContextToken {
    this_mech: ObjectIdentifier,
    #[asn1(context_specific = "0")]
    neg_token_init: NegTokenInit,
}

fn malformed(_: der::Error) -> SecurityError {
    SecurityError::Token("a malformed SPNEGO token")
}

fn octets(bytes: Vec<u8>) -> Result<OctetString, SecurityError> {
    OctetString::new(bytes).map_err(|_| SecurityError::Token("an SPNEGO token too long"))
}

fn decode_init(token: &[u8]) -> Result<NegTokenInit, SecurityError> {
    let mut reader = der::SliceReader::new(token).map_err(malformed)?;
    let framed =
        der::asn1::Application::<InitialContextToken>::decode_implicit(&mut reader, TagNumber(0))
            .map_err(malformed)?
            .ok_or(SecurityError::Token(
                "the first Negotiate token is not a GSS-API initial token",
            ))?;
    der::Reader::finish(reader).map_err(malformed)?;
    if framed.value.this_mech != SPNEGO {
        return Err(SecurityError::Token("the first token is not SPNEGO's"));
    }
    Ok(framed.value.neg_token_init)
}

fn encode_init(init: NegTokenInit) -> Result<Vec<u8>, SecurityError> {
    der::asn1::Application {
        tag_number: TagNumber(0),
        tag_mode: TagMode::Implicit,
        value: InitialContextToken {
            this_mech: SPNEGO,
            neg_token_init: init,
        },
    }
    .to_der()
    .map_err(malformed)
}

/// `[1] NegTokenResp`, the choice of NegotiationToken every later token is.
fn decode_resp(token: &[u8]) -> Result<NegTokenResp, SecurityError> {
    let choice = ContextSpecific::<NegTokenResp>::from_der(token).map_err(malformed)?;
    if choice.tag_number != TagNumber(1) {
        return Err(SecurityError::Token(
            "an SPNEGO token that is not a NegTokenResp",
        ));
    }
    Ok(choice.value)
}

fn encode_resp(resp: NegTokenResp) -> Result<Vec<u8>, SecurityError> {
    ContextSpecific {
        tag_number: TagNumber(1),
        tag_mode: TagMode::Explicit,
        value: resp,
    }
    .to_der()
    .map_err(malformed)
}

/// The mechanism the server chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mech {
    Ntlm,
    Kerberos(ObjectIdentifier),
}

impl Mech {
    fn oid(self) -> ObjectIdentifier {
        match self {
            Mech::Ntlm => NTLMSSP,
            Mech::Kerberos(oid) => oid,
        }
    }
}

/// A context SPNEGO's mechanism established: who, and the keys.
pub(super) type Done = (Option<Identity>, Session);

/// One leg of the mechanism: the token to send and, once it is done, the
/// context and whether the mechanism requires the mechListMIC exchange.
type MechLeg = (Vec<u8>, Option<(Done, bool)>);

/// The server side.
pub(super) struct SpnegoAcceptor {
    ntlm: NtlmAcceptor,
    /// Kerberos, when the server has a keytab.
    kerberos: Option<KerberosAcceptor>,
    /// The chosen mechanism, once the NegTokenInit is read.
    mech: Option<Mech>,
    /// The client's MechTypeList as DER, which the mechListMICs cover.
    mech_types: Vec<u8>,
    /// The chosen mechanism was the client's first choice: the MIC
    /// exchange is then optional unless the mechanism asks for it
    /// ([RFC 4178] 5).
    preferred: bool,
}

impl SpnegoAcceptor {
    pub fn new(ntlm: NtlmAcceptor, kerberos: Option<KerberosAcceptor>) -> SpnegoAcceptor {
        SpnegoAcceptor {
            ntlm,
            kerberos,
            mech: None,
            mech_types: Vec::new(),
            preferred: false,
        }
    }

    /// One leg of the chosen mechanism.
    fn mech_step(&mut self, token: &[u8]) -> Result<MechLeg, SecurityError> {
        match self.mech {
            Some(Mech::Kerberos(_)) => {
                let krb = self
                    .kerberos
                    .as_mut()
                    .ok_or(SecurityError::Token("Kerberos is not configured"))?;
                let (out, done) = krb.step(token)?;
                Ok((
                    out,
                    done.map(|d| ((Some(d.identity), Session::Kerberos(d.session)), false)),
                ))
            }
            _ => {
                let (out, done) = self.ntlm.step(token)?;
                Ok((
                    out,
                    done.map(|d| {
                        let has_mic = d.authenticate_has_mic;
                        ((d.identity, Session::Ntlm(Box::new(d.session))), has_mic)
                    }),
                ))
            }
        }
    }

    pub fn step(&mut self, token: &[u8]) -> Result<(Vec<u8>, Option<Done>), SecurityError> {
        if self.mech.is_none() {
            return self.first(token);
        }
        let resp = decode_resp(token)?;
        if resp.neg_state == Some(NegState::Reject) {
            return Err(SecurityError::LogonFailure(
                "the client rejected the negotiation".to_string(),
            ));
        }
        let inner = resp.response_token.ok_or(SecurityError::Token(
            "a NegTokenResp without a mechanism token",
        ))?;
        let (out, established) = self.mech_step(inner.as_bytes())?;
        match established {
            Some((done, mech_wants_mic)) => {
                self.complete(out, done, mech_wants_mic, resp.mech_list_mic)
            }
            None => Ok((self.incomplete(out, false)?, None)),
        }
    }

    /// The mechanism is done: the mechListMICs are exchanged when the
    /// client sends one or must ([MS-SPNG] 3.2.5.1), and the negotiation
    /// completes.
    fn complete(
        &mut self,
        out: Vec<u8>,
        mut done: Done,
        mech_wants_mic: bool,
        client_mic: Option<OctetString>,
    ) -> Result<(Vec<u8>, Option<Done>), SecurityError> {
        let mic_required = !self.preferred || mech_wants_mic;
        let our_mic = match client_mic {
            Some(mic) => {
                if !verify_mech_list_mic(&mut done.1, &self.mech_types, mic.as_bytes()) {
                    return Err(SecurityError::LogonFailure(
                        "the client's mechListMIC does not verify".to_string(),
                    ));
                }
                Some(octets(mech_list_mic(&mut done.1, &self.mech_types)?)?)
            }
            None if mic_required => {
                return Err(SecurityError::LogonFailure(
                    "the client sent no mechListMIC".to_string(),
                ))
            }
            None => None,
        };
        let out = encode_resp(NegTokenResp {
            neg_state: Some(NegState::AcceptCompleted),
            response_token: (!out.is_empty()).then(|| octets(out)).transpose()?,
            mech_list_mic: our_mic,
            ..NegTokenResp::default()
        })?;
        Ok((out, Some(done)))
    }

    /// The NegTokenInit: the first mechanism of the client's list this
    /// server has (Kerberos only with a keytab) is chosen; its optimistic
    /// token is used when it is the client's first choice.
    fn first(&mut self, token: &[u8]) -> Result<(Vec<u8>, Option<Done>), SecurityError> {
        let init = decode_init(token)?;
        let offered = init.mech_types.unwrap_or_default();
        let kerberos = self.kerberos.is_some();
        let chosen = offered.iter().enumerate().find_map(|(i, m)| match *m {
            NTLMSSP => Some((i, Mech::Ntlm)),
            KRB5 | MS_KRB5 if kerberos => Some((i, Mech::Kerberos(*m))),
            _ => None,
        });
        let Some((position, mech)) = chosen else {
            let ours = if kerberos { "Kerberos, NTLM" } else { "NTLM" };
            return Err(SecurityError::LogonFailure(format!(
                "the client offers no mechanism this server has ({ours}); it offers {}",
                offered
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        self.mech = Some(mech);
        self.mech_types = offered.to_der().map_err(malformed)?;
        self.preferred = position == 0;
        let Some(optimistic) = init.mech_token.filter(|_| self.preferred) else {
            return Ok((self.incomplete(Vec::new(), true)?, None));
        };
        let (out, established) = self.mech_step(optimistic.as_bytes())?;
        match established {
            // A mechanism done in one leg (Kerberos without the DCE
            // style); the client's MIC can only come in a further leg.
            Some((done, false)) => {
                let out = encode_resp(NegTokenResp {
                    neg_state: Some(NegState::AcceptCompleted),
                    supported_mech: Some(mech.oid()),
                    response_token: (!out.is_empty()).then(|| octets(out)).transpose()?,
                    mech_list_mic: None,
                })?;
                Ok((out, Some(done)))
            }
            Some((_, true)) => Err(SecurityError::Token("a mechanism done out of turn")),
            None => Ok((self.incomplete(out, true)?, None)),
        }
    }

    fn incomplete(&self, out: Vec<u8>, first: bool) -> Result<Vec<u8>, SecurityError> {
        encode_resp(NegTokenResp {
            neg_state: Some(NegState::AcceptIncomplete),
            supported_mech: if first {
                self.mech.map(Mech::oid)
            } else {
                None
            },
            response_token: (!out.is_empty()).then(|| octets(out)).transpose()?,
            mech_list_mic: None,
        })
    }
}

/// GSS_GetMIC over the mechTypes with the chosen mechanism's session.
fn mech_list_mic(session: &mut Session, mech_types: &[u8]) -> Result<Vec<u8>, SecurityError> {
    match session {
        Session::Ntlm(s) => Ok(s.mech_list_mic(mech_types).to_vec()),
        Session::Kerberos(s) => s.get_mic(mech_types),
    }
}

fn verify_mech_list_mic(session: &mut Session, mech_types: &[u8], mic: &[u8]) -> bool {
    match session {
        Session::Ntlm(s) => s.verify_mech_list_mic(mech_types, mic),
        Session::Kerberos(s) => s.verify_mic(mech_types, mic).is_ok(),
    }
}

/// The mechanism a client runs inside SPNEGO.
pub(super) enum InitiatorMech {
    Ntlm(NtlmInitiator),
    /// Kerberos with a cached service ticket, in the DCE style.
    Kerberos(Box<KerberosInitiator>),
}

/// The client side: offers one mechanism, NTLM or Kerberos (as Windows
/// does, under both Kerberos OIDs, Microsoft's first), with its first
/// token as the optimistic one.
pub(super) struct SpnegoInitiator {
    mech: InitiatorMech,
    mech_types: Vec<u8>,
    /// Set once the mechanism is done, when the server's mechListMIC is
    /// still to come (NTLM): the session waiting for it.
    pending: Option<Session>,
}

impl SpnegoInitiator {
    /// The initiator and its NegTokenInit.
    pub fn new(mut mech: InitiatorMech) -> Result<(SpnegoInitiator, Vec<u8>), SecurityError> {
        let (mech_types, first) = match &mut mech {
            InitiatorMech::Ntlm(ntlm) => (vec![NTLMSSP], ntlm.step(None)?.0),
            InitiatorMech::Kerberos(krb) => (vec![MS_KRB5, KRB5], krb.ap_req()?),
        };
        let token = encode_init(NegTokenInit {
            mech_types: Some(mech_types.clone()),
            req_flags: None,
            mech_token: Some(octets(first)?),
            mic_or_hints: None,
            mech_list_mic: None,
        })?;
        let initiator = SpnegoInitiator {
            mech,
            mech_types: mech_types.to_der().map_err(malformed)?,
            pending: None,
        };
        Ok((initiator, token))
    }

    /// The next token given the server's; the session once the
    /// negotiation is complete on this side.
    pub fn step(&mut self, input: &[u8]) -> Result<(Vec<u8>, Option<Session>), SecurityError> {
        let resp = decode_resp(input)?;
        match resp.neg_state {
            Some(NegState::Reject) => {
                return Err(SecurityError::LogonFailure(
                    "the server rejected the negotiation".to_string(),
                ))
            }
            Some(NegState::RequestMic) => {
                return Err(SecurityError::Token(
                    "the server asks for a MIC out of turn",
                ))
            }
            _ => {}
        }
        if let Some(mut session) = self.pending.take() {
            let mic = resp
                .mech_list_mic
                .ok_or(SecurityError::Token("the server sent no mechListMIC"))?;
            if resp.neg_state != Some(NegState::AcceptCompleted)
                || !verify_mech_list_mic(&mut session, &self.mech_types, mic.as_bytes())
            {
                return Err(SecurityError::LogonFailure(
                    "the server's mechListMIC does not verify".to_string(),
                ));
            }
            return Ok((Vec::new(), Some(session)));
        }
        let offered: &[ObjectIdentifier] = match self.mech {
            InitiatorMech::Ntlm(_) => &[NTLMSSP],
            InitiatorMech::Kerberos(_) => &[MS_KRB5, KRB5],
        };
        if resp.supported_mech.is_some_and(|m| !offered.contains(&m)) {
            return Err(SecurityError::Token(
                "the server chose a mechanism not offered",
            ));
        }
        let answer = resp
            .response_token
            .ok_or(SecurityError::Token("the server sent no mechanism token"))?;
        match &mut self.mech {
            InitiatorMech::Ntlm(ntlm) => {
                let (authenticate, session) = ntlm.step(Some(answer.as_bytes()))?;
                let mut session =
                    session.ok_or(SecurityError::Token("NTLM did not finish on the challenge"))?;
                let mic = session.mech_list_mic(&self.mech_types);
                self.pending = Some(Session::Ntlm(Box::new(session)));
                let out = encode_resp(NegTokenResp {
                    response_token: Some(octets(authenticate)?),
                    mech_list_mic: Some(octets(mic.to_vec())?),
                    ..NegTokenResp::default()
                })?;
                Ok((out, None))
            }
            InitiatorMech::Kerberos(krb) => {
                // Kerberos was the first choice and needs no MIC exchange
                // ([RFC 4178] 5): in the DCE style the client's AP-REP
                // completes it; otherwise the server's AP-REP does.
                let (reply, session) = krb.ap_rep(answer.as_bytes())?;
                let out = match reply {
                    Some(reply) => encode_resp(NegTokenResp {
                        response_token: Some(octets(reply)?),
                        ..NegTokenResp::default()
                    })?,
                    None => Vec::new(),
                };
                Ok((out, Some(Session::Kerberos(session))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::security::{auth_level, Credentials};

    struct Alice;
    impl Credentials for Alice {
        fn nt_hash(&self, user: &str) -> Option<(String, [u8; 16])> {
            use md4::{Digest, Md4};
            let password: Vec<u8> = "Secret-1"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
            user.eq_ignore_ascii_case("alice")
                .then(|| ("alice".to_string(), Md4::digest(&password).into()))
        }
    }

    fn acceptor() -> SpnegoAcceptor {
        SpnegoAcceptor::new(NtlmAcceptor::new(Arc::new(Alice)), None)
    }

    fn initiator(password: &str) -> (SpnegoInitiator, Vec<u8>) {
        let ntlm = NtlmInitiator::new(auth_level::PRIVACY, "alice", "WORKGROUP", password).unwrap();
        SpnegoInitiator::new(InitiatorMech::Ntlm(ntlm)).unwrap()
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The NegTokenInit2 of [MS-SPNG] 4, byte for byte: NEGOEX first,
    /// NTLM second, negHints at [3].
    const MS_SPNG_4: &str = "6082015d06062b0601050502a08201513082014da01a3018060a2b0601040182\
        3702021e060a2b06010401823702020aa28201010481fe4e45474f455854530100000000000000\
        6000000070000000cffa11765e12599a347d766852bfce7097458710bb8242b4c7dfbad2da897a\
        a311a7d868463430952562dc13c554f2010000000000000000600000000100000000000000000000\
        005c33530deaf90d4db2ec4ae3786ec3084e45474f455854530300000001000000400000008e0000\
        00cffa11765e12599a347d766852bfce705c33530deaf90d4db2ec4ae3786ec308400000004e0000\
        00304ca04a3048302a80283026312430220603550403131b584d4c50726f76696465722049\
        6e7465726d656469617465204341301a80183016311430120603550403130b584d4c50726f7669\
        646572a32a3028a0261b246e6f745f646566696e65645f696e5f5246433431373840706c65617365\
        5f69676e6f7265";

    #[test]
    fn the_example_of_ms_spng_4_decodes_and_ntlm_is_chosen_without_its_token() {
        let clean: String = MS_SPNG_4.split_whitespace().collect();
        let token = hex(&clean);
        assert_eq!(token.len(), 0x161);
        let init = decode_init(&token).unwrap();
        let negoex = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.2.30");
        assert_eq!(init.mech_types, Some(vec![negoex, NTLMSSP]));
        assert!(init.mech_token.unwrap().as_bytes().starts_with(b"NEGOEXTS"));
        assert!(init.mic_or_hints.is_some(), "the negHints");
        // NTLM is not the first choice: the server names it and uses no
        // optimistic token (it is NEGOEX's).
        let mut server = acceptor();
        let (out, done) = server.step(&token).unwrap();
        assert!(done.is_none());
        let resp = decode_resp(&out).unwrap();
        assert_eq!(resp.neg_state, Some(NegState::AcceptIncomplete));
        assert_eq!(resp.supported_mech, Some(NTLMSSP));
        assert_eq!(resp.response_token, None);
        assert!(!server.preferred);
    }

    #[test]
    fn initiator_and_acceptor_agree_and_exchange_mics() {
        let (mut client, init) = initiator("Secret-1");
        let mut server = acceptor();
        let (challenge, done) = server.step(&init).unwrap();
        assert!(done.is_none());
        assert_eq!(
            decode_resp(&challenge).unwrap().supported_mech,
            Some(NTLMSSP)
        );
        let (authenticate, session) = client.step(&challenge).unwrap();
        assert!(session.is_none(), "the client waits for the server's MIC");
        let sent = decode_resp(&authenticate).unwrap();
        assert!(sent.mech_list_mic.is_some());
        let (last, done) = server.step(&authenticate).unwrap();
        let (identity, server_side) = done.expect("established");
        assert_eq!(identity.unwrap().user, "alice");
        let Session::Ntlm(mut server_side) = server_side else {
            panic!("not an NTLM session")
        };
        let answer = decode_resp(&last).unwrap();
        assert_eq!(answer.neg_state, Some(NegState::AcceptCompleted));
        assert!(answer.mech_list_mic.is_some());
        let (nothing, session) = client.step(&last).unwrap();
        assert!(nothing.is_empty());
        let Some(Session::Ntlm(mut client_side)) = session else {
            panic!("not an NTLM session")
        };
        // Both halves are in step after the MICs: a sealed PDU each way.
        let mut frag = vec![0u8; 16 + 8 + 8 + 16];
        frag[16..24].copy_from_slice(b"stubdata");
        client_side.protect(&mut frag, 16, true).unwrap();
        assert_ne!(&frag[16..24], b"stubdata");
        server_side.unprotect(&mut frag, 16, true).unwrap();
        assert_eq!(&frag[16..24], b"stubdata");
        server_side.protect(&mut frag, 16, true).unwrap();
        client_side.unprotect(&mut frag, 16, true).unwrap();
        assert_eq!(&frag[16..24], b"stubdata");
    }

    #[test]
    fn a_wrong_password_or_a_tampered_mic_is_refused() {
        let (mut client, init) = initiator("wrong");
        let mut server = acceptor();
        let (challenge, _) = server.step(&init).unwrap();
        let (authenticate, _) = client.step(&challenge).unwrap();
        assert!(matches!(
            server.step(&authenticate),
            Err(SecurityError::LogonFailure(_))
        ));

        let (mut client, init) = initiator("Secret-1");
        let mut server = acceptor();
        let (challenge, _) = server.step(&init).unwrap();
        let (authenticate, _) = client.step(&challenge).unwrap();
        let mut resp = decode_resp(&authenticate).unwrap();
        let mut mic = resp.mech_list_mic.unwrap().as_bytes().to_vec();
        mic[5] ^= 1;
        resp.mech_list_mic = Some(octets(mic).unwrap());
        let error = server.step(&encode_resp(resp).unwrap()).err().unwrap();
        assert!(error.to_string().contains("mechListMIC"), "{error}");
    }

    /// A client preferring Kerberos is steered to NTLM, sends its
    /// NEGOTIATE_MESSAGE in a further leg, and then must send a MIC.
    #[test]
    fn a_client_preferring_kerberos_is_steered_to_ntlm_and_must_send_a_mic() {
        let krb5 = ObjectIdentifier::new_unwrap("1.2.840.113554.1.2.2");
        let init = encode_init(NegTokenInit {
            mech_types: Some(vec![krb5, NTLMSSP]),
            req_flags: None,
            mech_token: Some(octets(b"an AP-REQ".to_vec()).unwrap()),
            mic_or_hints: None,
            mech_list_mic: None,
        })
        .unwrap();
        let mut server = acceptor();
        let (out, _) = server.step(&init).unwrap();
        let resp = decode_resp(&out).unwrap();
        assert_eq!(resp.supported_mech, Some(NTLMSSP));
        assert!(resp.response_token.is_none());

        let mut ntlm = NtlmInitiator::new(auth_level::INTEGRITY, "alice", "", "Secret-1").unwrap();
        let (negotiate, _) = ntlm.step(None).unwrap();
        let wrap = |token: Vec<u8>| {
            encode_resp(NegTokenResp {
                response_token: Some(octets(token).unwrap()),
                ..NegTokenResp::default()
            })
            .unwrap()
        };
        let (challenge, done) = server.step(&wrap(negotiate)).unwrap();
        assert!(done.is_none());
        let challenge = decode_resp(&challenge).unwrap().response_token.unwrap();
        let (authenticate, _) = ntlm.step(Some(challenge.as_bytes())).unwrap();
        let error = server.step(&wrap(authenticate)).err().unwrap();
        assert!(error.to_string().contains("no mechListMIC"), "{error}");
    }

    #[test]
    fn mechanisms_other_than_ntlm_and_malformed_tokens_are_refused() {
        let krb5 = ObjectIdentifier::new_unwrap("1.2.840.113554.1.2.2");
        let only_kerberos = encode_init(NegTokenInit {
            mech_types: Some(vec![krb5]),
            req_flags: None,
            mech_token: None,
            mic_or_hints: None,
            mech_list_mic: None,
        })
        .unwrap();
        let error = acceptor().step(&only_kerberos).err().unwrap();
        assert!(
            error.to_string().contains("1.2.840.113554.1.2.2"),
            "{error}"
        );

        let (_, init) = initiator("Secret-1");
        for bad in [
            &init[..init.len() - 1],
            &init[..2],
            b"NTLMSSP\0\x01\0\0\0".as_slice(),
            &[],
        ] {
            assert!(acceptor().step(bad).is_err());
        }
        // A NegTokenResp where the NegTokenInit belongs, and the reverse.
        let resp = encode_resp(NegTokenResp::default()).unwrap();
        assert!(acceptor().step(&resp).is_err());
        let mut server = acceptor();
        server.step(&init).unwrap();
        assert!(server.step(&init).is_err());
        assert!(
            server.step(&resp).is_err(),
            "a NegTokenResp without a token"
        );
    }

    /// Kerberos through SPNEGO as Impacket and Windows send it: the
    /// (misencoded) Microsoft OID first, an optimistic AP-REQ in the GSS
    /// framing with the DCE style asked for, a bare AP-REP back, the
    /// client's AP-REP in the third leg.
    #[test]
    fn kerberos_is_chosen_when_the_client_prefers_it_and_the_server_has_a_keytab() {
        use super::super::kerberos::{self, KerberosInitiator, KerberosService, Keytab};
        use picky_krb::crypto::CipherSuite;
        let mut keytab = Keytab::default();
        keytab.push(&["host", "localhost"], "TEST.REALM", 1, 18, vec![9; 32]);
        let service = Arc::new(KerberosService::new(keytab));
        let (ticket, key) = kerberos::issue_ticket(
            &["host", "localhost"],
            "TEST.REALM",
            &[9; 32],
            1,
            &["alice"],
            600,
        );
        let mut client = KerberosInitiator::new(
            ticket,
            CipherSuite::Aes256CtsHmacSha196,
            key,
            &["alice"],
            "TEST.REALM",
            true,
        )
        .unwrap();
        let framed = client.ap_req().unwrap();
        assert_eq!(framed[0], 0x60, "the AP-REQ is GSS-framed");
        let init = encode_init(NegTokenInit {
            mech_types: Some(vec![MS_KRB5, NTLMSSP]),
            req_flags: None,
            mech_token: Some(OctetString::new(framed).unwrap()),
            mic_or_hints: None,
            mech_list_mic: None,
        })
        .unwrap();
        let mut server = SpnegoAcceptor::new(
            NtlmAcceptor::new(Arc::new(Alice)),
            Some(KerberosAcceptor::new(service.clone())),
        );
        let (first, done) = server.step(&init).unwrap();
        assert!(done.is_none());
        let first = decode_resp(&first).unwrap();
        assert_eq!(first.supported_mech, Some(MS_KRB5), "the client's own OID");
        assert_eq!(first.neg_state, Some(NegState::AcceptIncomplete));
        let ap_rep = first.response_token.unwrap();
        let (reply, _session) = client.ap_rep(ap_rep.as_bytes()).unwrap();
        let third = encode_resp(NegTokenResp {
            response_token: Some(OctetString::new(reply.unwrap()).unwrap()),
            ..NegTokenResp::default()
        })
        .unwrap();
        let (last, done) = server.step(&third).unwrap();
        let (identity, session) = done.expect("established");
        assert_eq!(identity.unwrap().user, "alice@TEST.REALM");
        assert!(matches!(session, Session::Kerberos(_)));
        let last = decode_resp(&last).unwrap();
        assert_eq!(last.neg_state, Some(NegState::AcceptCompleted));
        assert!(
            last.mech_list_mic.is_none(),
            "Kerberos was the client's first choice"
        );

        // Without a keytab the same client is steered to NTLM.
        let mut plain = acceptor();
        let (answer, _) = plain.step(&init).unwrap();
        assert_eq!(decode_resp(&answer).unwrap().supported_mech, Some(NTLMSSP));
        // Kerberos alone, without a keytab: nothing in common.
        let only = encode_init(NegTokenInit {
            mech_types: Some(vec![KRB5]),
            req_flags: None,
            mech_token: None,
            mic_or_hints: None,
            mech_list_mic: None,
        })
        .unwrap();
        assert!(acceptor().step(&only).is_err());
    }

    /// This runtime's own client: SPNEGO offering Kerberos alone, in the
    /// DCE style, against the acceptor; then a sealed PDU each way.
    #[test]
    fn the_initiator_logs_on_with_kerberos_and_both_sides_seal() {
        use super::super::kerberos::{self, KerberosInitiator, KerberosService, Keytab};
        use picky_krb::crypto::CipherSuite;
        let mut keytab = Keytab::default();
        keytab.push(&["host", "web1"], "TEST.REALM", 3, 18, vec![5; 32]);
        let service = Arc::new(KerberosService::new(keytab));
        let (ticket, key) =
            kerberos::issue_ticket(&["host", "web1"], "TEST.REALM", &[5; 32], 3, &["bob"], 600);
        let krb = KerberosInitiator::new(
            ticket,
            CipherSuite::Aes256CtsHmacSha196,
            key,
            &["bob"],
            "TEST.REALM",
            true,
        )
        .unwrap();
        let (mut client, init) =
            SpnegoInitiator::new(InitiatorMech::Kerberos(Box::new(krb))).unwrap();
        let offered = decode_init(&init).unwrap().mech_types.unwrap();
        assert_eq!(offered, vec![MS_KRB5, KRB5]);
        let mut server = SpnegoAcceptor::new(
            NtlmAcceptor::new(Arc::new(Alice)),
            Some(KerberosAcceptor::new(service)),
        );
        let (first, done) = server.step(&init).unwrap();
        assert!(done.is_none(), "the DCE style takes a third leg");
        let (third, session) = client.step(&first).unwrap();
        let Some(Session::Kerberos(mut client_side)) = session else {
            panic!("the client is not done with Kerberos")
        };
        let (_, done) = server.step(&third).unwrap();
        let (identity, server_side) = done.expect("established");
        assert_eq!(identity.unwrap().user, "bob@TEST.REALM");
        let Session::Kerberos(mut server_side) = server_side else {
            panic!("not a Kerberos session")
        };
        let token = kerberos::WRAP_TOKEN_LEN;
        let mut frag = vec![0u8; 16 + 16 + 8 + token];
        frag[16..32].copy_from_slice(b"sixteen byte stb");
        client_side.protect(&mut frag, 16, true, true).unwrap();
        assert_ne!(&frag[16..32], b"sixteen byte stb");
        server_side
            .unprotect(&mut frag, 16, token, true, true)
            .unwrap();
        assert_eq!(&frag[16..32], b"sixteen byte stb");
        server_side.protect(&mut frag, 16, true, true).unwrap();
        client_side
            .unprotect(&mut frag, 16, token, true, true)
            .unwrap();
        assert_eq!(&frag[16..32], b"sixteen byte stb");

        // A server that answers with another mechanism is refused.
        let krb = KerberosInitiator::new(
            kerberos::issue_ticket(&["host", "web1"], "TEST.REALM", &[5; 32], 3, &["bob"], 600).0,
            CipherSuite::Aes256CtsHmacSha196,
            vec![1; 32],
            &["bob"],
            "TEST.REALM",
            true,
        )
        .unwrap();
        let (mut client, _) = SpnegoInitiator::new(InitiatorMech::Kerberos(Box::new(krb))).unwrap();
        let steered = encode_resp(NegTokenResp {
            neg_state: Some(NegState::AcceptIncomplete),
            supported_mech: Some(NTLMSSP),
            response_token: Some(octets(b"challenge".to_vec()).unwrap()),
            mech_list_mic: None,
        })
        .unwrap();
        let error = client.step(&steered).err().unwrap();
        assert!(error.to_string().contains("not offered"), "{error}");
    }
}
