//! The properties the msrpc fuzz targets check (`pdu`, `ndr`,
//! `rpc_session`, `ntlm`, `cl_datagram`, `cl_server`, `rts_channel`),
//! shared with the test suite that replays their corpora.

use crate::pdu::Pdu;

/// Any bytes decode or are refused; what decodes encodes to bytes that
/// decode to the same PDU (the padding before a sec_trailer and the
/// bind_nak's tail may be normalised, so the second encoding is compared
/// with the first).
pub fn pdu(data: &[u8]) {
    let Ok(pdu) = Pdu::decode(data) else {
        return;
    };
    // What was decoded from a fragment fits in one, unless re-padding
    // the sec_trailer (at most 15 bytes) pushes it past 65535.
    let bytes = match pdu.encode() {
        Ok(b) => b,
        Err(e) => {
            assert!(
                data.len() > usize::from(u16::MAX) - 16,
                "a decoded PDU does not encode: {e}"
            );
            return;
        }
    };
    let again = Pdu::decode(&bytes).unwrap_or_else(|e| panic!("re-encoded PDU fails: {e}"));
    assert_eq!(again.encode(), Ok(bytes), "encoding is not stable");
}

/// A connectionless datagram ([`crate::cl`]): what decodes re-encodes to
/// a datagram that decodes to the same PDU, and its typed bodies read or
/// fail cleanly.
pub fn cl_datagram(data: &[u8]) {
    let Ok(pdu) = crate::cl::Pdu::decode(data) else {
        return;
    };
    let _ = pdu.fack();
    let _ = pdu.cancel();
    let _ = pdu.status();
    // An auth trailer may make the body longer than `len` can say.
    let Ok(bytes) = pdu.encode() else {
        assert!(pdu.body.len() > usize::from(u16::MAX));
        return;
    };
    let again = crate::cl::Pdu::decode(&bytes)
        .unwrap_or_else(|e| panic!("a re-encoded datagram fails: {e}"));
    assert_eq!(again, pdu);
}

/// The connectionless server's state machine: the input is a series of
/// datagrams (a peer byte picking one of four clients, a 16-bit length,
/// the octets), fed to a server with the endpoint mapper and the
/// management interface, timers run every fourth one. Nothing panics,
/// and everything the server sends back is a well-formed datagram.
pub fn cl_server(data: &[u8]) {
    use crate::epm::{EndpointMapper, EpmServer};
    use crate::mgmt::{Management, MgmtServer};
    use crate::server::{auth_level, Limits, Server};
    let mut datagrams = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 && datagrams.len() < 64 {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000 + u16::from(rest[0] & 3)));
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        datagrams.push((rest[3..3 + len].to_vec(), peer));
        rest = &rest[3 + len..];
    }
    let server = Server::new(Limits::default(), "fuzz".into());
    server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
    server.register(MgmtServer(Management), auth_level::NONE, false);
    for sent in server.datagrams_for_fuzzing(&datagrams, 4) {
        let pdu = crate::cl::Pdu::decode(&sent)
            .unwrap_or_else(|e| panic!("the server sent a datagram that does not decode: {e}"));
        assert_eq!(pdu.header.auth_proto, 0);
    }
}

/// RPC over HTTP's channels: the bytes are a stream of PDUs as an IN or
/// OUT channel carries them, cut at their frag_length as the proxy and
/// the server cut them; each RTS PDU decodes or is refused, and what
/// decodes re-encodes to a PDU that decodes to the same commands.
pub fn rts_channel(data: &[u8]) {
    let mut rest = data;
    while let Some((ptype, len)) = crate::rts::peek(rest) {
        if len < 16 || len > rest.len() {
            return;
        }
        let (pdu, after) = rest.split_at(len);
        rest = after;
        if ptype != crate::rts::PTYPE_RTS {
            continue;
        }
        let Ok(rts) = crate::rts::Rts::decode(pdu) else {
            continue;
        };
        let _ = (rts.destination(), rts.ack());
        let again = crate::rts::Rts::decode(&rts.encode())
            .unwrap_or_else(|e| panic!("a re-encoded RTS PDU fails: {e}"));
        assert_eq!(again, rts);
    }
}

/// NDR: the first byte picks the syntax and byte order, the rest is
/// decoded as strings, pointers and arrays; nothing panics or allocates
/// beyond the input, and what decodes re-encodes to a stream that decodes
/// to the same value.
pub fn ndr(data: &[u8]) {
    use crate::ndr::{
        from_bytes, to_bytes, CString, ConformantArray, Ndr, Syntax, Unique, WString,
    };
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let syntax = if selector & 1 == 0 {
        Syntax::Ndr20
    } else {
        Syntax::Ndr64
    };
    let little = selector & 2 == 0;
    fn check<T: Ndr + PartialEq + std::fmt::Debug>(rest: &[u8], syntax: Syntax, little: bool) {
        if let Ok(v) = from_bytes::<T>(rest, syntax, little) {
            let again = from_bytes::<T>(&to_bytes(&v, syntax), syntax, true)
                .unwrap_or_else(|e| panic!("re-encoded {v:?} fails: {e}"));
            assert_eq!(again, v);
        }
    }
    check::<WString>(rest, syntax, little);
    check::<CString>(rest, syntax, little);
    check::<ConformantArray<u16>>(rest, syntax, little);
    check::<ConformantArray<Unique<WString>>>(rest, syntax, little);
    check::<Unique<ConformantArray<Unique<u32>>>>(rest, syntax, little);
    check::<FuzzUnion>(rest, syntax, little);
    check::<crate::ndr::OffsetVaryingArray<u16>>(rest, syntax, little);
    check::<crate::ndr::ConformantMatrix<u16, 2>>(rest, syntax, little);
    check::<FuzzFull>(rest, syntax, little);
    if let Ok(mut stream) = crate::ndr::serialization::Deserializer::new(rest) {
        while stream.read::<FuzzUnion>().is_ok() && !stream.is_empty() {}
    }
}

#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq, Eq)]
enum FuzzEnum {
    First,
    Third = 3,
}

#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq, Eq)]
#[ndr(switch_type = "u16")]
enum FuzzUnion {
    #[ndr(case = 1)]
    Long(u32),
    #[ndr(case = 2)]
    Text(crate::ndr::Unique<crate::ndr::WString>),
    #[ndr(case = 3)]
    Enum(FuzzEnum),
    #[ndr(default)]
    Other(u16),
}

/// Two full pointers that may alias.
#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq)]
struct FuzzFull {
    first: crate::ndr::Full<FuzzUnion>,
    second: crate::ndr::Full<FuzzUnion>,
}

/// The server's connection state machine: `data` is what a client sends
/// on one connection (binds, requests, rpc_auth_3 — anything), over an
/// in-memory stream to a server with EPM and MGMT. The server answers or
/// closes; it never panics or hangs, and a second connection is served
/// afterwards.
pub fn rpc_session(data: &[u8]) {
    let _ = session_answers(data);
}

/// What the server sends back on a connection where a client sent
/// `data` and closed; then a second, empty connection is served too.
fn session_answers(data: &[u8]) -> Vec<u8> {
    use crate::epm::{EndpointMapper, EpmServer};
    use crate::mgmt::{Management, MgmtServer};
    use crate::server::{auth_level, Limits, Server, Transport};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return Vec::new();
    };
    runtime.block_on(async {
        let server = Server::new(Limits::default(), "fuzz".into());
        server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
        server.register(MgmtServer(Management), auth_level::NONE, false);
        let transport = Transport::Local {
            path: "fuzz".into(),
            peer_uid: None,
        };
        let mut first = Vec::new();
        for input in [data, &[][..]] {
            let (mut client, server_side) = tokio::io::duplex(1 << 16);
            let serving = server.serve_stream(server_side, transport.clone());
            let talking = async {
                let _ = client.write_all(input).await;
                let _ = client.shutdown().await;
                let mut answers = Vec::new();
                let _ = client.read_to_end(&mut answers).await;
                answers
            };
            let both = async { tokio::join!(serving, talking) };
            let Ok(((), answers)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), both).await
            else {
                panic!("the connection did not end after the client closed");
            };
            if first.is_empty() {
                first = answers;
            }
        }
        first
    })
}

#[cfg(test)]
#[test]
fn a_session_is_answered() {
    use crate::pdu::{Body, Pdu};
    // A bind of MGMT, then is_server_listening (the rpc_session corpus's
    // first case): a bind_ack and a response come back.
    let mut bind = crate::pdu::Pdu {
        rpc_vers_minor: 0,
        flags: 3,
        drep: crate::pdu::NDR_LITTLE_ENDIAN,
        call_id: 1,
        body: Body::Bind(crate::pdu::Bind {
            max_xmit_frag: 5840,
            max_recv_frag: 5840,
            assoc_group_id: 0,
            contexts: vec![crate::pdu::ContextElem {
                context_id: 0,
                abstract_syntax: crate::mgmt::MgmtClient::syntax(),
                transfer_syntaxes: vec![crate::server::ndr20()],
            }],
        }),
        auth: None,
    }
    .encode()
    .unwrap();
    bind.extend(
        Pdu {
            rpc_vers_minor: 0,
            flags: 3,
            drep: crate::pdu::NDR_LITTLE_ENDIAN,
            call_id: 2,
            body: Body::Request(crate::pdu::Request {
                alloc_hint: 0,
                context_id: 0,
                opnum: 2,
                object: None,
                stub: vec![],
            }),
            auth: None,
        }
        .encode()
        .unwrap(),
    );
    let answers = session_answers(&bind);
    let len = crate::pdu::frag_length(&answers).unwrap();
    let first = Pdu::decode(&answers[..len]).unwrap();
    assert!(matches!(first.body, Body::BindAck(_)));
    let second = Pdu::decode(&answers[len..]).unwrap();
    assert!(matches!(second.body, Body::Response(_)), "{second:?}");
}

/// NTLM tokens and verification trailers: whatever a client sends as the
/// first or the third leg, the server's provider refuses or accepts
/// without panicking, and with no accounts nothing logs on. The input is
/// also read as a keytab and as a credential cache.
pub fn ntlm(data: &[u8]) {
    use crate::security::{
        auth_level, auth_type, Acceptors, Credentials, KerberosService, Keytab, SecurityContext,
    };
    struct NoOne;
    impl Credentials for NoOne {
        fn nt_hash(&self, _user: &str) -> Option<(String, [u8; 16])> {
            None
        }
    }
    let _ = crate::server::verification::find(data);
    // Kerberos with a keytab of one key: the input as the keytab, and as
    // the AP-REQ (alone or in SPNEGO).
    let _ = Keytab::parse(data);
    // And as a client's credential cache.
    if let Ok(cache) = crate::security::CredentialCache::parse(data) {
        let _ = cache.ticket_for(&["host".into(), "localhost".into()], None);
    }
    let mut keytab = Keytab::default();
    keytab.push(&["host", "localhost"], "FUZZ.TEST", 1, 18, vec![7; 32]);
    let acceptors = Acceptors {
        credentials: std::sync::Arc::new(NoOne),
        kerberos: Some(std::sync::Arc::new(KerberosService::new(keytab))),
    };
    let new_of = |provider| SecurityContext::server(provider, auth_level::PRIVACY, 0, &acceptors);
    if let Ok(mut kerberos) = new_of(auth_type::GSS_KERBEROS) {
        let _ = kerberos.accept(data);
        let _ = kerberos.accept(data);
        assert!(
            !kerberos.is_established(),
            "a Kerberos logon without a ticket"
        );
    }
    let new = || new_of(auth_type::WINNT);
    if let Ok(mut first_leg) = new() {
        let _ = first_leg.accept(data);
    }
    // SPNEGO: the input as the NegTokenInit, and as the leg after one.
    if let Ok(mut spnego) = new_of(auth_type::GSS_NEGOTIATE) {
        let _ = spnego.accept(data);
        let _ = spnego.accept(data);
        assert!(!spnego.is_established(), "a logon without an account");
    }
    // A well-formed NEGOTIATE_MESSAGE first, then the input as the third
    // leg: never established, since no account exists.
    const NEGOTIATE: &[u8] = b"NTLMSSP\0\x01\0\0\0\x97\x82\x08\xe2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    if let Ok(mut context) = new() {
        if context.accept(NEGOTIATE).is_ok() {
            let _ = context.accept(data);
            assert!(!context.is_established(), "a logon without an account");
        }
    }
}
