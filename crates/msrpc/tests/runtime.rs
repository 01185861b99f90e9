//! The server and client runtimes against each other over real sockets on
//! loopback and a Unix socket: negotiation, the built-in interfaces,
//! fragmentation, association groups, and the protocol's error rules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use msrpc::client::{CallError, Connection, Options};
use msrpc::epm::{
    inquiry, vers, Address, EndpointMapper, EpmClient, EpmServer, EptEntry, Tower, TowerInfo,
};
use msrpc::mgmt::{IfIdVector, Management, MgmtClient, MgmtServer, RpcIfId};
use msrpc::ndr::{
    ConformantArray, ConformantVaryingArray, ContextHandle, Syntax, Unique, VaryingCString,
};
use msrpc::pdu::{self, flags, Bind, Body, ContextElem, Pdu, SyntaxId};
use msrpc::server::{auth_level, ndr20, ndr64, Limits, Server};
use msrpc::{status, Uuid};

struct Running {
    server: Arc<Server>,
    tcp: SocketAddr,
    local: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start() -> Running {
    let dir = std::env::temp_dir().join(format!(
        "msrpc-test-{}-{}",
        std::process::id(),
        Uuid::random()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::new(Limits::default(), "testhost".into());
    server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
    server.register(MgmtServer(Management), auth_level::NONE, false);
    let tcp = server
        .listen_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let local = dir.join("epmapper");
    server.listen_local(local.clone()).await.unwrap();
    Running {
        server,
        tcp,
        local,
        _dir: TempDir(dir),
    }
}

async fn connect(r: &Running, options: Options) -> Connection {
    Connection::connect_tcp(r.tcp, options).await.unwrap()
}

type LookupOut = (ContextHandle, u32, ConformantVaryingArray<EptEntry>, u32);

/// ept_lookup of every element, from `handle` on.
async fn all_elts(
    epm: &mut EpmClient<'_>,
    handle: ContextHandle,
    max: u32,
) -> Result<LookupOut, CallError> {
    epm.ept_lookup(
        inquiry::ALL_ELTS,
        Unique::new(None),
        Unique::new(None),
        vers::ALL,
        handle,
        max,
    )
    .await
}

fn epm_syntax() -> SyntaxId {
    EpmClient::syntax()
}

#[tokio::test]
async fn mgmt_calls_in_both_transfer_syntaxes() {
    let r = start().await;
    for ndr64 in [false, true] {
        let mut conn = connect(
            &r,
            Options {
                ndr64,
                ..Options::default()
            },
        )
        .await;
        let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
        let expected = if ndr64 { Syntax::Ndr64 } else { Syntax::Ndr20 };
        assert_eq!(mgmt.connection.transfer_syntax(0).unwrap(), expected);
        assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
        let (ids, st) = mgmt.inq_if_ids().await.unwrap();
        assert_eq!(st, 0);
        let ids: &IfIdVector = ids.get().unwrap();
        assert_eq!(ids.count, 1, "EPM is listed, MGMT is implicit");
        assert_eq!(
            ids.if_id[0].get().copied(),
            Some(RpcIfId {
                uuid: epm_syntax().uuid,
                vers_major: 3,
                vers_minor: 0
            })
        );
        let (n, stats, st) = mgmt.inq_stats(4).await.unwrap();
        assert_eq!((n, st), (4, 0));
        assert!(stats.0[0] >= 2, "calls in so far: {:?}", stats.0);
        assert_eq!(stats.0[1], 0, "a server makes no calls out");
        assert!(stats.0[2] > stats.0[0] && stats.0[3] > 0);
        let (name, st) = mgmt.inq_princ_name(10, 100).await.unwrap();
        assert_eq!((name.text.as_slice(), st), (&b"testhost"[..], 0));
        // "testhost" and its NUL need 9 bytes.
        let (name, st) = mgmt.inq_princ_name(10, 8).await.unwrap();
        assert_eq!(
            (name.text.len(), st),
            (0, status::ERROR_INSUFFICIENT_BUFFER)
        );
        let (_, st) = mgmt.inq_princ_name(99, 100).await.unwrap();
        assert_eq!(st, status::RPC_S_UNKNOWN_AUTHN_SERVICE);
        assert_eq!(
            mgmt.stop_server_listening().await.unwrap(),
            status::ERROR_ACCESS_DENIED
        );
        assert!(r.server.is_listening());
        // [range(0, 50)] on the count: 51 is refused before the method runs.
        match mgmt.inq_stats(51).await {
            Err(CallError::Fault { status }) => assert_eq!(status, status::RPC_S_INVALID_BOUND),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn endpoint_mapper_lists_and_maps_every_endpoint() {
    let r = start().await;
    let mut conn = connect(&r, Options::default()).await;
    let mut epm = EpmClient::bind(&mut conn).await.unwrap();
    let (handle, n, entries, st) = all_elts(&mut epm, ContextHandle::default(), 500)
        .await
        .unwrap();
    assert_eq!((n, st), (2, 0));
    assert!(
        handle.is_null(),
        "everything fit in a page that was not full"
    );
    let towers: Vec<TowerInfo> = entries
        .items
        .iter()
        .map(|e| TowerInfo::decode(&e.tower.get().unwrap().octets).unwrap())
        .collect();
    assert_eq!(towers[0].address, Address::Tcp(r.tcp));
    assert_eq!(towers[1].address, Address::Local("epmapper".into()));
    assert!(towers.iter().all(|t| t.interface == epm_syntax()));
    assert_eq!(entries.items[0].annotation.0, b"Epm");

    // ept_map: where is EPM over TCP?
    let wanted = TowerInfo {
        interface: epm_syntax(),
        transfer: ndr20(),
        address: Address::Tcp("0.0.0.0:0".parse().unwrap()),
    };
    let (handle, n, towers, st) = epm
        .ept_map(
            Unique::new(None),
            Unique::new(Some(Tower::new(wanted.encode()))),
            ContextHandle::default(),
            4,
        )
        .await
        .unwrap();
    assert_eq!((n, st), (1, 0));
    assert!(handle.is_null());
    let found = TowerInfo::decode(&towers.items[0].get().unwrap().octets).unwrap();
    assert_eq!(found.address, Address::Tcp(r.tcp));

    // An interface nobody serves.
    let unknown = TowerInfo {
        interface: SyntaxId::new(Uuid::random(), 1, 0),
        ..wanted
    };
    let (_, n, _, st) = epm
        .ept_map(
            Unique::new(None),
            Unique::new(Some(Tower::new(unknown.encode()))),
            ContextHandle::default(),
            4,
        )
        .await
        .unwrap();
    assert_eq!((n, st), (0, status::EPT_S_NOT_REGISTERED));
}

fn entry(i: u32) -> EptEntry {
    let tower = TowerInfo {
        interface: SyntaxId::new(Uuid::random(), 1, 0),
        transfer: ndr20(),
        address: Address::Tcp(format!("127.0.0.1:{}", 10000 + i).parse().unwrap()),
    };
    EptEntry {
        object: Uuid::NIL,
        tower: Unique::new(Some(Tower::new(tower.encode()))),
        annotation: VaryingCString(format!("inserted {i}").into_bytes()),
    }
}

#[tokio::test]
async fn local_inserts_fragmented_both_ways_and_lookup_handles_page() {
    let r = start().await;
    // ncalrpc is local: ept_insert is accepted. 300 entries make a request
    // of many fragments at the smallest fragment size.
    let mut local = Connection::connect_local(
        &r.local,
        Options {
            max_frag: 1432,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let mut epm = EpmClient::bind(&mut local).await.unwrap();
    let entries: Vec<EptEntry> = (0..300).map(entry).collect();
    let st = epm
        .ept_insert(300, ConformantArray(entries.clone()), 0)
        .await
        .unwrap();
    assert_eq!(st, 0);

    // Over TCP (also loopback, so local) page through 302 entries 100 at
    // a time; the 300-entry first page would not fit one fragment.
    let mut conn = connect(&r, Options::default()).await;
    let mut epm = EpmClient::bind(&mut conn).await.unwrap();
    let mut handle = ContextHandle::default();
    let mut seen = Vec::new();
    for round in 0.. {
        let (next, n, page, st) = all_elts(&mut epm, handle, 100).await.unwrap();
        assert_eq!(st, 0, "round {round}");
        assert_eq!(n as usize, page.items.len());
        seen.extend(page.items);
        handle = next;
        if handle.is_null() {
            assert_eq!(round, 3);
            break;
        }
    }
    assert_eq!(seen.len(), 302);
    assert_eq!(&seen[2..], &entries[..]);

    // Match by interface, then free a handle mid-way.
    let wanted = TowerInfo::decode(&entries[7].tower.get().unwrap().octets).unwrap();
    let ifid = RpcIfId {
        uuid: wanted.interface.uuid,
        vers_major: 1,
        vers_minor: 0,
    };
    let (_, n, page, _) = epm
        .ept_lookup(
            inquiry::MATCH_BY_IF,
            Unique::new(None),
            Unique::new(Some(ifid)),
            vers::EXACT,
            ContextHandle::default(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(page.items[0], entries[7]);
    let (handle, ..) = all_elts(&mut epm, ContextHandle::default(), 1)
        .await
        .unwrap();
    assert!(!handle.is_null());
    let (freed, st) = epm.ept_lookup_handle_free(handle).await.unwrap();
    assert!(freed.is_null());
    assert_eq!(st, 0);
    // A freed handle is unknown.
    match all_elts(&mut epm, handle, 1).await {
        Err(CallError::Fault { status }) => {
            assert_eq!(status, status::NCA_S_FAULT_CONTEXT_MISMATCH)
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn association_groups_share_handles_and_unknown_groups_are_refused() {
    let r = start().await;
    let mut first = connect(&r, Options::default()).await;
    let mut epm = EpmClient::bind(&mut first).await.unwrap();
    let (handle, ..) = all_elts(&mut epm, ContextHandle::default(), 1)
        .await
        .unwrap();
    assert!(!handle.is_null());
    let group = first.assoc_group_id;
    assert_ne!(group, 0);

    let mut second = connect(
        &r,
        Options {
            assoc_group_id: group,
            ..Options::default()
        },
    )
    .await;
    let mut epm2 = EpmClient::bind(&mut second).await.unwrap();
    assert_eq!(epm2.connection.assoc_group_id, group);
    let (next, n, _, _) = all_elts(&mut epm2, handle, 10).await.unwrap();
    assert_eq!(n, 1, "the second connection continues the first's lookup");
    assert!(next.is_null());

    let mut stranger = connect(
        &r,
        Options {
            assoc_group_id: group ^ 0x5555,
            ..Options::default()
        },
    )
    .await;
    match EpmClient::bind(&mut stranger).await {
        Err(CallError::BindNak(reason)) => assert_eq!(reason, 0),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn negotiation_rejects_unknown_interfaces_and_prefers_ndr64() {
    let r = start().await;
    let mut conn = connect(&r, Options::default()).await;
    match conn.bind(SyntaxId::new(Uuid::random(), 1, 0)).await {
        // provider_rejection, abstract_syntax_not_supported.
        Err(CallError::Rejected { result, reason }) => assert_eq!((result, reason), (2, 1)),
        other => panic!("{other:?}"),
    }
    // A newer minor version than served is not compatible either.
    let mut newer = epm_syntax();
    newer.version = 3 | (1 << 16);
    assert!(matches!(
        conn.bind(newer).await,
        Err(CallError::Rejected { .. })
    ));
    // alter_context on the same connection still binds what is served.
    let ctx = conn.bind(epm_syntax()).await.unwrap();
    assert_eq!(conn.transfer_syntax(ctx).unwrap(), Syntax::Ndr20);

    // Raw bind offering NDR 2.0 and NDR64 for MGMT in two elements, plus
    // bind-time feature negotiation: NDR64 wins, features acknowledged.
    let mgmt = MgmtClient::syntax();
    let mut btfn = Uuid::parse("6cb71c2c-9812-4540-0300-000000000000").unwrap();
    btfn.clock_seq_and_node[0] = 3;
    let bind = Pdu {
        rpc_vers_minor: 0,
        flags: flags::FIRST_FRAG | flags::LAST_FRAG | flags::CONC_MPX,
        drep: pdu::NDR_LITTLE_ENDIAN,
        call_id: 1,
        body: Body::Bind(Bind {
            max_xmit_frag: 4280,
            max_recv_frag: 4280,
            assoc_group_id: 0,
            contexts: vec![
                ContextElem {
                    context_id: 0,
                    abstract_syntax: mgmt,
                    transfer_syntaxes: vec![ndr20()],
                },
                ContextElem {
                    context_id: 1,
                    abstract_syntax: mgmt,
                    transfer_syntaxes: vec![ndr64()],
                },
                ContextElem {
                    context_id: 2,
                    abstract_syntax: mgmt,
                    transfer_syntaxes: vec![SyntaxId::new(btfn, 1, 0)],
                },
            ],
        }),
        auth: None,
    };
    let mut raw = connect(&r, Options::default()).await;
    raw.send_raw(&bind.encode().unwrap()).await.unwrap();
    let ack = raw.receive().await.unwrap();
    assert_ne!(ack.flags & flags::CONC_MPX, 0, "multiplexing acknowledged");
    let Body::BindAck(ack) = ack.body else {
        panic!("{ack:?}")
    };
    assert_eq!((ack.max_xmit_frag, ack.max_recv_frag), (4280, 4280));
    assert_eq!(ack.secondary_address, r.tcp.port().to_string().into_bytes());
    let results: Vec<(u16, u16)> = ack.results.iter().map(|c| (c.result, c.reason)).collect();
    // Both features acknowledged: security context multiplexing (0x1) and
    // keeping the connection on an orphaned call (0x2).
    assert_eq!(results, vec![(2, 2), (0, 0), (3, 3)]);
    assert_eq!(ack.results[1].transfer_syntax, ndr64());
}

/// A request PDU on context 0 for raw tests.
fn request(call_id: u32, pfc: u8, opnum: u16, stub: Vec<u8>) -> Vec<u8> {
    Pdu {
        rpc_vers_minor: 0,
        flags: pfc,
        drep: pdu::NDR_LITTLE_ENDIAN,
        call_id,
        body: Body::Request(pdu::Request {
            alloc_hint: stub.len() as u32,
            context_id: 0,
            opnum,
            object: None,
            stub,
        }),
        auth: None,
    }
    .encode()
    .unwrap()
}

fn fault_status(pdu: &Pdu) -> u32 {
    match &pdu.body {
        Body::Fault(f) => f.status,
        other => panic!("not a fault: {other:?}"),
    }
}

const WHOLE: u8 = flags::FIRST_FRAG | flags::LAST_FRAG;

#[tokio::test]
async fn protocol_errors_get_the_specified_faults() {
    let r = start().await;
    let mut conn = connect(&r, Options::default()).await;
    conn.bind(MgmtClient::syntax()).await.unwrap();

    // Unknown opnum.
    conn.send_raw(&request(10, WHOLE, 9, vec![])).await.unwrap();
    let f = conn.receive().await.unwrap();
    assert_eq!(fault_status(&f), status::NCA_S_OP_RNG_ERROR);
    assert_ne!(f.flags & flags::DID_NOT_EXECUTE, 0);

    // Stub data too short for inq_stats' count.
    conn.send_raw(&request(11, WHOLE, 1, vec![1, 0]))
        .await
        .unwrap();
    assert_eq!(
        fault_status(&conn.receive().await.unwrap()),
        status::RPC_X_BAD_STUB_DATA
    );

    // call_ids must increase.
    conn.send_raw(&request(11, WHOLE, 2, vec![])).await.unwrap();
    assert_eq!(
        fault_status(&conn.receive().await.unwrap()),
        status::NCA_S_PROTO_ERROR
    );

    // An unbound presentation context.
    let mut other_context = request(12, WHOLE, 2, vec![]);
    other_context[20] = 7;
    conn.send_raw(&other_context).await.unwrap();
    assert_eq!(
        fault_status(&conn.receive().await.unwrap()),
        status::NCA_S_UNK_IF
    );

    // A request in two fragments is reassembled.
    conn.send_raw(&request(13, flags::FIRST_FRAG, 1, vec![4, 0]))
        .await
        .unwrap();
    conn.send_raw(&request(13, flags::LAST_FRAG, 1, vec![0, 0]))
        .await
        .unwrap();
    let reply = conn.receive().await.unwrap();
    assert!(matches!(reply.body, Body::Response(_)), "{reply:?}");

    // Still serving normally.
    conn.send_raw(&request(14, WHOLE, 2, vec![])).await.unwrap();
    assert!(matches!(
        conn.receive().await.unwrap().body,
        Body::Response(_)
    ));
}

#[tokio::test]
async fn oversized_requests_are_refused_at_once() {
    let r = start().await;
    let mut conn = connect(&r, Options::default()).await;
    conn.bind(MgmtClient::syntax()).await.unwrap();
    // 4 MB and a little more, in fragments of 5000 bytes; the fault comes
    // as soon as the limit is crossed, not after the last fragment.
    let chunk = vec![0u8; 5000];
    let mut sent = 0;
    let mut first = true;
    while sent <= 4 * 1024 * 1024 {
        let pfc = if first { flags::FIRST_FRAG } else { 0 };
        first = false;
        conn.send_raw(&request(1, pfc, 1, chunk.clone()))
            .await
            .unwrap();
        sent += chunk.len();
    }
    let f = conn.receive().await.unwrap();
    assert_eq!(fault_status(&f), status::ERROR_ACCESS_DENIED);
    // The rest of that call is dropped; the next call is served.
    conn.send_raw(&request(1, flags::LAST_FRAG, 1, chunk.clone()))
        .await
        .unwrap();
    conn.send_raw(&request(2, WHOLE, 2, vec![])).await.unwrap();
    assert!(matches!(
        conn.receive().await.unwrap().body,
        Body::Response(_)
    ));
}

#[tokio::test]
async fn a_local_endpoint_never_takes_a_live_socket_or_another_file() {
    let r = start().await;
    // The running server's socket answers: a second server may not take it.
    let other = Server::new(Limits::default(), "other".into());
    other.register(MgmtServer(Management), auth_level::NONE, false);
    let e = other.listen_local(r.local.clone()).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    let mut conn = Connection::connect_local(&r.local, Options::default())
        .await
        .unwrap();
    assert!(MgmtClient::bind(&mut conn).await.is_ok());
    // A file that is not a socket is left as it was.
    let file = r.local.with_file_name("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let e = other.listen_local(file.clone()).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    // A stale socket (its server gone) is replaced.
    let stale = r.local.with_file_name("stale");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    other.listen_local(stale.clone()).await.unwrap();
    let mut conn = Connection::connect_local(&stale, Options::default())
        .await
        .unwrap();
    assert!(MgmtClient::bind(&mut conn).await.is_ok());
}

#[tokio::test]
async fn malformed_pdus_close_only_their_connection() {
    let r = start().await;
    let mut bad = connect(&r, Options::default()).await;
    // Version 4.0 is not connection-oriented RPC.
    bad.send_raw(&[4, 0, 11, 3, 0x10, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0])
        .await
        .unwrap();
    assert!(bad.receive().await.is_err(), "the connection is closed");

    // A request before any bind: a fault, then the connection closes.
    let mut unbound = connect(&r, Options::default()).await;
    unbound
        .send_raw(&request(1, WHOLE, 2, vec![]))
        .await
        .unwrap();
    assert_eq!(
        fault_status(&unbound.receive().await.unwrap()),
        status::NCA_S_PROTO_ERROR
    );
    assert!(unbound.receive().await.is_err());

    // A bind with an authentication type no provider serves.
    let mut auth = connect(&r, Options::default()).await;
    let bind = bind_one(
        WHOLE,
        MgmtClient::syntax(),
        Some(pdu::Auth {
            auth_type: 0x44,
            auth_level: auth_level::CONNECT,
            pad_length: 0,
            context_id: 0,
            token: vec![1, 2, 3, 4],
        }),
    );
    auth.send_raw(&bind).await.unwrap();
    match auth.receive().await.unwrap().body {
        Body::BindNak(nak) => assert_eq!(nak.reason, 8),
        other => panic!("{other:?}"),
    }

    let mut good = connect(&r, Options::default()).await;
    let mut mgmt = MgmtClient::bind(&mut good).await.unwrap();
    assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
}

/// A bind of one interface in NDR 2.0 (context 0), 4280-byte fragments.
fn bind_one(pfc: u8, interface: SyntaxId, auth: Option<pdu::Auth>) -> Vec<u8> {
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
                abstract_syntax: interface,
                transfer_syntaxes: vec![ndr20()],
            }],
        }),
        auth,
    }
    .encode()
    .unwrap()
}

/// A method that takes as long as it is asked to.
#[msrpc::interface(uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", version = "1.0")]
pub trait Sleeper {
    #[opnum(0)]
    fn nap(&self, call: &msrpc::server::Call, millis: u32) -> msrpc::server::CallResult<u32>;
}

struct Napper;

impl Sleeper for Napper {
    fn nap(&self, _call: &msrpc::server::Call, millis: u32) -> msrpc::server::CallResult<u32> {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(millis)));
        Ok(millis)
    }
}

/// A raw connection bound to Sleeper, multiplexed or not.
async fn sleeper_connection(r: &Running, multiplexed: bool) -> Connection {
    let mut pfc = flags::FIRST_FRAG | flags::LAST_FRAG;
    if multiplexed {
        pfc |= flags::CONC_MPX;
    }
    let bind = bind_one(pfc, SleeperClient::syntax(), None);
    let mut raw = connect(r, Options::default()).await;
    raw.send_raw(&bind).await.unwrap();
    let ack = raw.receive().await.unwrap();
    assert_eq!(ack.flags & flags::CONC_MPX != 0, multiplexed);
    raw
}

/// The call_id and the returned milliseconds of the next response.
async fn next_nap(raw: &mut Connection) -> (u32, u32) {
    let reply = raw.receive().await.unwrap();
    let Body::Response(response) = reply.body else {
        panic!("{reply:?}")
    };
    let millis = u32::from_le_bytes(response.stub[..4].try_into().unwrap());
    (reply.call_id, millis)
}

#[tokio::test]
async fn a_multiplexed_connection_runs_calls_concurrently() {
    let r = start().await;
    r.server
        .register(SleeperServer(Napper), auth_level::NONE, false);
    let nap = |call_id: u32, millis: u32| {
        request(
            call_id,
            flags::FIRST_FRAG | flags::LAST_FRAG,
            0,
            millis.to_le_bytes().to_vec(),
        )
    };

    // Multiplexed: the quick call is answered while the slow one runs.
    let mut raw = sleeper_connection(&r, true).await;
    raw.send_raw(&nap(2, 300)).await.unwrap();
    raw.send_raw(&nap(3, 0)).await.unwrap();
    assert_eq!(next_nap(&mut raw).await, (3, 0));
    assert_eq!(next_nap(&mut raw).await, (2, 300));

    // An orphaned running call ends unanswered: call 4 (200 ms) is
    // orphaned, so the next answer after call 5 is call 6 (400 ms), not 4.
    raw.send_raw(&nap(4, 200)).await.unwrap();
    let orphan = Pdu {
        rpc_vers_minor: 0,
        flags: flags::FIRST_FRAG | flags::LAST_FRAG,
        drep: pdu::NDR_LITTLE_ENDIAN,
        call_id: 4,
        body: Body::Orphaned,
        auth: None,
    };
    raw.send_raw(&orphan.encode().unwrap()).await.unwrap();
    raw.send_raw(&nap(5, 0)).await.unwrap();
    raw.send_raw(&nap(6, 400)).await.unwrap();
    assert_eq!(next_nap(&mut raw).await, (5, 0));
    assert_eq!(next_nap(&mut raw).await, (6, 400));

    // Calls still running when the client stops sending are answered.
    raw.send_raw(&nap(7, 100)).await.unwrap();
    assert_eq!(next_nap(&mut raw).await, (7, 100));

    // Not multiplexed: calls are answered in turn.
    let mut raw = sleeper_connection(&r, false).await;
    raw.send_raw(&nap(2, 300)).await.unwrap();
    raw.send_raw(&nap(3, 0)).await.unwrap();
    assert_eq!(next_nap(&mut raw).await, (2, 300));
    assert_eq!(next_nap(&mut raw).await, (3, 0));
}

/// A TCP stream that hands over at most 7 bytes a read, so that every
/// fragment reaches the client in pieces.
struct Trickle(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let mut piece = [0u8; 7];
        let want = buf.remaining().min(piece.len());
        let mut small = tokio::io::ReadBuf::new(&mut piece[..want]);
        std::task::ready!(std::pin::Pin::new(&mut self.0).poll_read(cx, &mut small))?;
        buf.put_slice(small.filled());
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Trickle {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, bytes)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_connection_over_a_stream_of_the_callers_own() {
    let r = start().await;
    // 60 more entries make an ept_lookup answer of several fragments.
    let mut local = Connection::connect_local(&r.local, Options::default())
        .await
        .unwrap();
    let mut epm = EpmClient::bind(&mut local).await.unwrap();
    let entries: Vec<EptEntry> = (0..60).map(entry).collect();
    assert_eq!(
        epm.ept_insert(60, ConformantArray(entries.clone()), 0)
            .await
            .unwrap(),
        0
    );

    // The same calls over the whole stream (several fragments per read)
    // and over one that trickles (a fragment over many reads).
    for trickle in [false, true] {
        let stream = tokio::net::TcpStream::connect(r.tcp).await.unwrap();
        let options = Options {
            max_frag: 1432,
            ..Options::default()
        };
        let mut conn = if trickle {
            Connection::over(Trickle(stream), options)
        } else {
            Connection::over(stream, options)
        };
        let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
        for _ in 0..3 {
            assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
        }
        let mut epm = EpmClient::bind(&mut conn).await.unwrap();
        let (handle, n, page, st) = all_elts(&mut epm, ContextHandle::default(), 500)
            .await
            .unwrap();
        assert_eq!((st, n as usize), (0, 62), "trickle {trickle}");
        assert!(handle.is_null(), "everything in one answer");
        assert_eq!(&page.items[2..], &entries[..], "trickle {trickle}");
        // A fault still comes back as one, and the connection goes on.
        let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
        match mgmt.inq_stats(51).await {
            Err(CallError::Fault { status }) => assert_eq!(status, status::RPC_S_INVALID_BOUND),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
    }
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    use tokio::io::AsyncReadExt;
    let server = Server::new(
        Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        "testhost".into(),
    );
    server.register(MgmtServer(Management), auth_level::NONE, false);
    let tcp = server
        .listen_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // A client that connects and says nothing is let go.
    let mut silent = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte))
        .await
        .expect("the server kept an idle connection");
    assert!(matches!(read, Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_millis(250));
    // One that keeps calling is served past the idle time.
    let mut conn = Connection::connect_tcp(tcp, Options::default())
        .await
        .unwrap();
    for _ in 0..6 {
        let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
        assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A method that waits until the test lets it go (or, should it never,
/// 20 s): 1 when it was let go.
#[msrpc::interface(
    uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f1",
    version = "1.0",
    blocking
)]
pub trait Gatekeeper {
    #[opnum(0)]
    fn wait(&self, call: &msrpc::server::Call) -> msrpc::server::CallResult<u32>;
}

struct Gate {
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    open: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Gatekeeper for Gate {
    fn wait(&self, _call: &msrpc::server::Call) -> msrpc::server::CallResult<u32> {
        let _ = self.entered.lock().unwrap().send(());
        let released = self
            .open
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20))
            .is_ok();
        Ok(u32::from(released))
    }
}

/// On a connection served in turn, a call of a `blocking` interface runs
/// off the runtime: the endpoint (here on one thread, as inetsrv's RPC
/// thread) serves its other connections meanwhile.
#[tokio::test]
async fn a_blocking_call_leaves_the_endpoints_other_connections_served() {
    let r = start().await;
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (open, open_rx) = std::sync::mpsc::channel();
    r.server.register(
        GatekeeperServer(Gate {
            entered: std::sync::Mutex::new(entered_tx),
            open: std::sync::Mutex::new(open_rx),
        }),
        auth_level::NONE,
        false,
    );
    let mut a = connect(&r, Options::default()).await;
    let waiting = tokio::spawn(async move {
        let mut gate = GatekeeperClient::bind(&mut a).await.unwrap();
        gate.wait().await.unwrap()
    });
    // The call is in its method (were it on the runtime's only thread,
    // this loop would not run again until the method gave up).
    while entered.try_recv().is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut b = connect(&r, Options::default()).await;
    let mut mgmt = MgmtClient::bind(&mut b).await.unwrap();
    assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
    open.send(()).unwrap();
    assert_eq!(waiting.await.unwrap(), 1, "let go by the test");
}
