//! NTLM security contexts between the server and client runtimes over
//! real sockets: every level, the caller's identity and level as the
//! method sees them, per-interface minimum levels, fragmented protected
//! calls, and the failures (wrong password, unknown user, tampered PDUs,
//! requests naming no context).

use std::net::SocketAddr;
use std::sync::Arc;

use msrpc::client::{CallError, ClientAuth, Connection, Options};
use msrpc::epm::{EndpointMapper, EpmClient, EpmServer, EptEntry};
use msrpc::mgmt::{Management, MgmtClient, MgmtServer};
use msrpc::ndr::{ConformantArray, ConformantVaryingArray, ContextHandle, Unique, VaryingCString};
use msrpc::pdu::{self, flags, Bind, Body, ContextElem, Pdu};
use msrpc::security::{auth_level, auth_type, Credentials};
use msrpc::server::{ndr20, Call, CallResult, Limits, Server};
use msrpc::status;

/// A method that reports who called it and at what level.
#[msrpc::interface(uuid = "5b8f3e1a-7c2d-4e6f-9a0b-1c2d3e4f5a6b", version = "1.0")]
pub trait Whoami {
    #[opnum(0)]
    fn whoami(&self, call: &Call) -> CallResult<(VaryingCString<256>, u32)>;

    /// Echoes `data`: a large request and a large response.
    #[opnum(1)]
    fn echo(&self, call: &Call, data: ConformantArray<u8>) -> CallResult<ConformantArray<u8>>;

    /// Waits until `count` calls are inside at once (1), or 10 seconds
    /// have passed (0): only concurrent calls meet.
    #[opnum(2)]
    fn meet(&self, call: &Call, count: u32) -> CallResult<u32>;
}

static INSIDE: std::sync::Mutex<u32> = std::sync::Mutex::new(0);
static ARRIVED: std::sync::Condvar = std::sync::Condvar::new();

struct Reporter;

impl Whoami for Reporter {
    fn whoami(&self, call: &Call) -> CallResult<(VaryingCString<256>, u32)> {
        let who = call.client.clone().unwrap_or_default();
        Ok((VaryingCString(who.into_bytes()), u32::from(call.auth_level)))
    }

    fn echo(&self, _call: &Call, data: ConformantArray<u8>) -> CallResult<ConformantArray<u8>> {
        Ok(data)
    }

    fn meet(&self, _call: &Call, count: u32) -> CallResult<u32> {
        let mut inside = INSIDE.lock().unwrap_or_else(|e| e.into_inner());
        *inside += 1;
        ARRIVED.notify_all();
        let (inside, wait) = ARRIVED
            .wait_timeout_while(inside, std::time::Duration::from_secs(10), |n| *n < count)
            .unwrap_or_else(|e| e.into_inner());
        drop(inside);
        Ok(u32::from(!wait.timed_out()))
    }
}

/// A secured interface: integrity or better.
#[msrpc::interface(uuid = "5b8f3e1a-7c2d-4e6f-9a0b-1c2d3e4f5a6c", version = "1.0")]
pub trait Guarded {
    #[opnum(0)]
    fn ping(&self, call: &Call) -> CallResult<u32>;
}

struct Guard;

impl Guarded for Guard {
    fn ping(&self, _call: &Call) -> CallResult<u32> {
        Ok(7)
    }
}

/// Accounts: alice / "Secret-1", and bob who has no NT hash.
struct Accounts;

impl Credentials for Accounts {
    fn nt_hash(&self, user: &str) -> Option<(String, [u8; 16])> {
        user.eq_ignore_ascii_case("alice")
            .then(|| ("alice".to_string(), nt_hash("Secret-1")))
    }
}

fn nt_hash(password: &str) -> [u8; 16] {
    use md4::Digest;
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    md4::Md4::digest(&utf16).into()
}

async fn start() -> (Arc<Server>, SocketAddr) {
    let server = Server::new(Limits::default(), "testhost".into());
    server.set_credentials(Arc::new(Accounts));
    server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
    server.register(MgmtServer(Management), auth_level::NONE, false);
    server.register(WhoamiServer(Reporter), auth_level::NONE, true);
    server.register(GuardedServer(Guard), auth_level::INTEGRITY, true);
    let addr = server
        .listen_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (server, addr)
}

fn as_user(level: u8, user: &str, password: &str) -> Options {
    by(auth_type::WINNT, level, user, password)
}

/// The providers a client can use: NTLM, and SPNEGO negotiating NTLM.
const PROVIDERS: [u8; 2] = [auth_type::WINNT, auth_type::GSS_NEGOTIATE];

fn by(provider: u8, level: u8, user: &str, password: &str) -> Options {
    Options {
        auth: Some(logon(provider, level, user, password)),
        ..Options::default()
    }
}

/// A logon with a password.
fn logon(provider: u8, level: u8, user: &str, password: &str) -> ClientAuth {
    ClientAuth {
        auth_type: provider,
        level,
        user: user.into(),
        domain: "WORKGROUP".into(),
        password: password.into(),
        ticket: None,
    }
}

#[tokio::test]
async fn every_level_authenticates_and_the_method_sees_who_and_how() {
    let (_server, addr) = start().await;
    for (provider, level) in PROVIDERS.into_iter().flat_map(|p| {
        [
            auth_level::CONNECT,
            auth_level::PKT,
            auth_level::INTEGRITY,
            auth_level::PRIVACY,
        ]
        .map(|l| (p, l))
    }) {
        let mut conn = Connection::connect_tcp(addr, by(provider, level, "ALICE", "Secret-1"))
            .await
            .unwrap();
        let mut who = WhoamiClient::bind(&mut conn).await.unwrap();
        let (name, seen_level) = who.whoami().await.unwrap();
        assert_eq!(
            name.0, b"alice",
            "the stored account name, with provider {provider} at level {level}"
        );
        assert_eq!(seen_level, u32::from(level));
        // Several calls: sequence numbers advance on both sides.
        for _ in 0..3 {
            assert_eq!(who.whoami().await.unwrap().1, u32::from(level));
        }
        let mut mgmt = MgmtClient::bind(who.connection).await.unwrap();
        assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
    }
}

/// Calls sent together on a multiplexed connection run at once on the
/// server, and their sealed answers, sent as each call ends, verify.
#[tokio::test]
async fn sealed_calls_run_concurrently_on_a_multiplexed_connection() {
    let (_server, addr) = start().await;
    for provider in PROVIDERS {
        let mut options = by(provider, auth_level::PRIVACY, "alice", "Secret-1");
        options.multiplex = true;
        let mut conn = Connection::connect_tcp(addr, options).await.unwrap();
        let who = WhoamiClient::bind(&mut conn).await.unwrap();
        let conn = who.connection;
        let three = msrpc::ndr::to_bytes(&3u32, msrpc::ndr::Syntax::Ndr20);
        let echo =
            msrpc::ndr::to_bytes(&ConformantArray(vec![9u8; 3000]), msrpc::ndr::Syntax::Ndr20);
        *INSIDE.lock().unwrap() = 0;
        let replies = conn
            .call_many(vec![
                (0, 2, three.clone()),
                (0, 1, echo.clone()),
                (0, 2, three.clone()),
                (0, 2, three),
            ])
            .await
            .unwrap();
        let met: Vec<Vec<u8>> = replies
            .into_iter()
            .map(|r| r.map(|reply| reply.stub).unwrap())
            .collect();
        assert_eq!(met[0], [1, 0, 0, 0], "provider {provider}: the calls met");
        assert_eq!(met[2], [1, 0, 0, 0]);
        assert_eq!(met[3], [1, 0, 0, 0]);
        assert_eq!(met[1], echo, "the echo answered between them");
    }
}

#[tokio::test]
async fn protected_calls_fragment_both_ways() {
    let (_server, addr) = start().await;
    for (provider, level) in PROVIDERS
        .into_iter()
        .flat_map(|p| [auth_level::INTEGRITY, auth_level::PRIVACY].map(|l| (p, l)))
    {
        let mut options = by(provider, level, "alice", "Secret-1");
        options.max_frag = 1432;
        let mut conn = Connection::connect_tcp(addr, options).await.unwrap();
        let mut who = WhoamiClient::bind(&mut conn).await.unwrap();
        // 20 000 bytes: 15 fragments each way at 1432 bytes.
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let back = who.echo(ConformantArray(data.clone())).await.unwrap();
        assert_eq!(back.0, data);
        let back = who.echo(ConformantArray(vec![1, 2, 3])).await.unwrap();
        assert_eq!(back.0, vec![1, 2, 3]);
    }
}

#[tokio::test]
async fn interfaces_demand_their_minimum_level() {
    let (_server, addr) = start().await;
    for (level, allowed) in [
        (None, false),
        (Some(auth_level::CONNECT), false),
        (Some(auth_level::INTEGRITY), true),
        (Some(auth_level::PRIVACY), true),
    ] {
        let options = match level {
            Some(l) => as_user(l, "alice", "Secret-1"),
            None => Options::default(),
        };
        let mut conn = Connection::connect_tcp(addr, options).await.unwrap();
        let mut guarded = GuardedClient::bind(&mut conn).await.unwrap();
        match guarded.ping().await {
            Ok(7) if allowed => {}
            Err(CallError::Fault { status }) if !allowed => {
                assert_eq!(status, status::ERROR_ACCESS_DENIED)
            }
            other => panic!("level {level:?}: {:?}", other.map_err(|e| e.to_string())),
        }
    }
}

/// The client builds further security contexts on a bound connection
/// (alter_context with a new auth_context_id) and chooses which one its
/// calls use; the server sees each call's own level.
#[tokio::test]
async fn a_connection_carries_several_client_security_contexts() {
    let (_server, addr) = start().await;
    let auth = |provider, level| logon(provider, level, "alice", "Secret-1");
    for provider in PROVIDERS {
        // Anonymous at the bind, then logged on at integrity, then privacy.
        let mut conn = Connection::connect_tcp(addr, Options::default())
            .await
            .unwrap();
        let mut who = WhoamiClient::bind(&mut conn).await.unwrap();
        assert_eq!(who.whoami().await.unwrap().1, u32::from(auth_level::NONE));
        let signed = who
            .connection
            .add_security_context(&auth(provider, auth_level::INTEGRITY))
            .await
            .unwrap();
        let (name, level) = who.whoami().await.unwrap();
        assert_eq!((name.0.as_slice(), level), (b"alice".as_slice(), 5));
        let sealed = who
            .connection
            .add_security_context(&auth(provider, auth_level::PRIVACY))
            .await
            .unwrap();
        assert_ne!(signed, sealed);
        for _ in 0..2 {
            assert_eq!(who.whoami().await.unwrap().1, 6);
        }
        // Back to the signed context: its sequence numbers carry on.
        who.connection.use_security_context(signed).unwrap();
        for _ in 0..2 {
            assert_eq!(who.whoami().await.unwrap().1, 5);
        }
        who.connection.use_security_context(sealed).unwrap();
        assert_eq!(who.whoami().await.unwrap().1, 6);
        assert!(who.connection.use_security_context(99).is_err());
        // A context whose logon fails leaves the others usable.
        let wrong = logon(provider, auth_level::PRIVACY, "alice", "wrong");
        match who.connection.add_security_context(&wrong).await {
            // SPNEGO's last leg is answered: the alter_context is refused.
            Err(CallError::Fault { status }) => {
                assert_eq!(status, status::ERROR_ACCESS_DENIED, "provider {provider}")
            }
            // NTLM's rpc_auth_3 is not: the first call under it is.
            Ok(_) => match who.whoami().await {
                Err(CallError::Fault { status }) => {
                    assert_eq!(status, status::ERROR_ACCESS_DENIED)
                }
                other => panic!("a wrong password: {:?}", other.map(|_| ())),
            },
            Err(e) => panic!("provider {provider}: {e}"),
        }
        who.connection.use_security_context(signed).unwrap();
        assert_eq!(who.whoami().await.unwrap().1, 5, "provider {provider}");
    }
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_are_denied() {
    let (_server, addr) = start().await;
    for (user, password) in [
        ("alice", "wrong"),
        ("bob", "Secret-1"),
        ("nobody", "x"),
        ("", ""),
    ] {
        for level in [auth_level::CONNECT, auth_level::PRIVACY] {
            let mut conn = Connection::connect_tcp(addr, as_user(level, user, password))
                .await
                .unwrap();
            // The bind succeeds (NTLM's third leg is rpc_auth_3, which is
            // not answered); the first call is refused.
            let mut who = match WhoamiClient::bind(&mut conn).await {
                Ok(who) => who,
                Err(e) => {
                    // sspi refuses an empty user name before sending.
                    assert!(user.is_empty(), "{user}: {e}");
                    continue;
                }
            };
            match who.whoami().await {
                Err(CallError::Fault { status }) => {
                    assert_eq!(status, status::ERROR_ACCESS_DENIED, "{user}")
                }
                other => panic!("{user}/{password}: {:?}", other.map(|_| ())),
            }
            // SPNEGO's third leg is an alter_context, answered: the bind
            // itself is refused.
            let spnego = by(auth_type::GSS_NEGOTIATE, level, user, password);
            let mut conn = Connection::connect_tcp(addr, spnego).await.unwrap();
            match WhoamiClient::bind(&mut conn).await {
                Err(CallError::Fault { status }) => {
                    assert_eq!(status, status::ERROR_ACCESS_DENIED, "{user}")
                }
                Err(e) => assert!(user.is_empty(), "{user}: {e}"),
                Ok(_) => panic!("{user}/{password} logged on with SPNEGO"),
            }
        }
    }
}

/// A bind of the Whoami interface carrying one sec_trailer.
fn bind_with_auth(pfc: u8, auth_type: u8, level: u8, context_id: u32, token: Vec<u8>) -> Vec<u8> {
    Pdu {
        rpc_vers_minor: 0,
        flags: pfc,
        drep: pdu::NDR_LITTLE_ENDIAN,
        call_id: 1,
        body: Body::Bind(Bind {
            max_xmit_frag: 4280,
            max_recv_frag: 4280,
            assoc_group_id: 0,
            contexts: vec![ContextElem {
                context_id: 0,
                abstract_syntax: WhoamiClient::syntax(),
                transfer_syntaxes: vec![ndr20()],
            }],
        }),
        auth: Some(pdu::Auth {
            auth_type,
            auth_level: level,
            pad_length: 0,
            context_id,
            token,
        }),
    }
    .encode()
    .unwrap()
}

/// A raw connection that binds with an NTLM context built by the client
/// runtime's provider, to send hand-made PDUs after it.
async fn raw_bind(addr: SocketAddr) -> (tokio::net::TcpStream, msrpc::security::SecurityContext) {
    use msrpc::security::{Leg, SecurityContext};
    use tokio::io::AsyncWriteExt;
    let (mut context, negotiate) = SecurityContext::client(
        auth_type::WINNT,
        auth_level::INTEGRITY,
        5,
        "alice",
        "",
        "Secret-1",
    )
    .unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let bind = bind_with_auth(
        flags::FIRST_FRAG | flags::LAST_FRAG | flags::SUPPORT_HEADER_SIGN,
        auth_type::WINNT,
        auth_level::INTEGRITY,
        5,
        negotiate,
    );
    stream.write_all(&bind).await.unwrap();
    let ack = read_pdu(&mut stream).await;
    assert_eq!(
        ack.flags & flags::SUPPORT_HEADER_SIGN,
        flags::SUPPORT_HEADER_SIGN,
        "header signing is acknowledged"
    );
    let challenge = ack.auth.expect("a challenge in the bind_ack").token;
    let Leg::Done(authenticate) = context.initiate(&challenge).unwrap() else {
        panic!("NTLM has three legs")
    };
    let auth3 = Pdu {
        rpc_vers_minor: 0,
        flags: flags::FIRST_FRAG | flags::LAST_FRAG,
        drep: pdu::NDR_LITTLE_ENDIAN,
        call_id: 1,
        body: Body::Auth3,
        auth: Some(pdu::Auth {
            auth_type: auth_type::WINNT,
            auth_level: auth_level::INTEGRITY,
            pad_length: 0,
            context_id: 5,
            token: authenticate,
        }),
    };
    stream.write_all(&auth3.encode().unwrap()).await.unwrap();
    (stream, context)
}

async fn read_pdu(stream: &mut tokio::net::TcpStream) -> Pdu {
    use tokio::io::AsyncReadExt;
    let mut frag = vec![0u8; pdu::HEADER_LEN];
    stream.read_exact(&mut frag).await.unwrap();
    let len = pdu::frag_length(&frag).unwrap();
    frag.resize(len, 0);
    stream
        .read_exact(&mut frag[pdu::HEADER_LEN..])
        .await
        .unwrap();
    Pdu::decode(&frag).unwrap()
}

fn signed_request(
    context: &mut msrpc::security::SecurityContext,
    call_id: u32,
    context_id: u32,
) -> Vec<u8> {
    let mut bytes = Pdu {
        rpc_vers_minor: 0,
        flags: flags::FIRST_FRAG | flags::LAST_FRAG,
        drep: pdu::NDR_LITTLE_ENDIAN,
        call_id,
        body: Body::Request(pdu::Request {
            alloc_hint: 0,
            context_id: 0,
            opnum: 0,
            object: None,
            stub: Vec::new(),
        }),
        auth: Some(pdu::Auth {
            auth_type: auth_type::WINNT,
            auth_level: auth_level::INTEGRITY,
            pad_length: 0,
            context_id,
            token: vec![0; 16],
        }),
    }
    .encode()
    .unwrap();
    context
        .protect(&mut bytes, pdu::CALL_HEADER_LEN, true)
        .unwrap();
    bytes
}

#[tokio::test]
async fn tampered_and_unsigned_requests_are_refused() {
    use tokio::io::AsyncWriteExt;
    let (_server, addr) = start().await;

    // A good signed call works; the signed response names the context.
    let (mut stream, mut context) = raw_bind(addr).await;
    stream
        .write_all(&signed_request(&mut context, 2, 5))
        .await
        .unwrap();
    let reply = read_pdu(&mut stream).await;
    assert!(matches!(reply.body, Body::Response(_)), "{reply:?}");
    assert_eq!(reply.auth.as_ref().map(|a| a.context_id), Some(5));

    // An unsigned request on a connection secured at integrity: denied.
    let mut plain = signed_request(&mut context, 3, 5);
    plain.truncate(pdu::CALL_HEADER_LEN);
    plain[8..10].copy_from_slice(&(pdu::CALL_HEADER_LEN as u16).to_le_bytes());
    plain[10..12].copy_from_slice(&0u16.to_le_bytes());
    stream.write_all(&plain).await.unwrap();
    let reply = read_pdu(&mut stream).await;
    assert!(
        matches!(&reply.body, Body::Fault(f) if f.status == status::ERROR_ACCESS_DENIED),
        "{reply:?}"
    );

    // A request naming a security context that does not exist: denied.
    let (mut stream, mut context) = raw_bind(addr).await;
    stream
        .write_all(&signed_request(&mut context, 2, 6))
        .await
        .unwrap();
    let reply = read_pdu(&mut stream).await;
    assert!(
        matches!(&reply.body, Body::Fault(f) if f.status == status::ERROR_ACCESS_DENIED),
        "{reply:?}"
    );

    // One flipped bit of the signed header: rpc_s_sec_pkg_error, and the
    // connection is closed.
    let (mut stream, mut context) = raw_bind(addr).await;
    let mut tampered = signed_request(&mut context, 2, 5);
    tampered[20] ^= 0x01; // the context id of the request header
    stream.write_all(&tampered).await.unwrap();
    let reply = read_pdu(&mut stream).await;
    assert!(
        matches!(&reply.body, Body::Fault(f) if f.status == status::RPC_S_SEC_PKG_ERROR),
        "{reply:?}"
    );
    let mut rest = Vec::new();
    use tokio::io::AsyncReadExt;
    assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0, "closed");

    // The server still serves everyone else.
    let mut conn = Connection::connect_tcp(addr, as_user(auth_level::PRIVACY, "alice", "Secret-1"))
        .await
        .unwrap();
    let mut who = WhoamiClient::bind(&mut conn).await.unwrap();
    assert_eq!(
        who.whoami().await.unwrap().1,
        u32::from(auth_level::PRIVACY)
    );
}

#[tokio::test]
async fn binds_with_unknown_providers_or_bad_tokens_are_refused() {
    use tokio::io::AsyncWriteExt;
    let (_server, addr) = start().await;
    for (auth_type, level, token, reason) in [
        (0x44u8, auth_level::CONNECT, b"x".to_vec(), 8u16),
        (
            auth_type::WINNT,
            auth_level::CONNECT,
            b"not ntlm".to_vec(),
            9,
        ),
        (auth_type::WINNT, 9, b"NTLMSSP\0\x01\0\0\0".to_vec(), 9),
        // A raw NTLM message where SPNEGO's NegTokenInit belongs.
        (
            auth_type::GSS_NEGOTIATE,
            auth_level::CONNECT,
            b"NTLMSSP\0\x01\0\0\0".to_vec(),
            9,
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let bind = bind_with_auth(
            flags::FIRST_FRAG | flags::LAST_FRAG,
            auth_type,
            level,
            1,
            token,
        );
        stream.write_all(&bind).await.unwrap();
        match read_pdu(&mut stream).await.body {
            Body::BindNak(nak) => assert_eq!(nak.reason, reason, "type {auth_type} level {level}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn the_endpoint_mapper_answers_sealed_paged_lookups() {
    let (_server, addr) = start().await;
    let mut conn = Connection::connect_tcp(addr, as_user(auth_level::PRIVACY, "alice", "Secret-1"))
        .await
        .unwrap();
    let mut epm = EpmClient::bind(&mut conn).await.unwrap();
    // One entry a page: EPM and the two listed test interfaces.
    let mut handle = ContextHandle::default();
    let mut seen = 0;
    loop {
        let (next, n, page, st): (ContextHandle, u32, ConformantVaryingArray<EptEntry>, u32) = epm
            .ept_lookup(
                msrpc::epm::inquiry::ALL_ELTS,
                Unique::new(None),
                Unique::new(None),
                msrpc::epm::vers::ALL,
                handle,
                1,
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), n as usize);
        seen += n;
        handle = next;
        if handle.is_null() {
            // Three full pages keep the handle; the fourth call ends it.
            assert_eq!((n, st), (0, status::EPT_S_NOT_REGISTERED));
            break;
        }
        assert_eq!((n, st), (1, 0));
    }
    assert_eq!(seen, 3);
}
