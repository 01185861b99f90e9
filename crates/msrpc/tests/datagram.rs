//! The connectionless runtime (ncadg_ip_udp) over real UDP sockets on
//! loopback: the client and server against each other directly and
//! through a relay that drops, duplicates and reorders datagrams both
//! ways; raw datagrams for what a client of ours would never send; and
//! every datagram of a relayed run read back by Wireshark's dissector.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msrpc::cl::{flags1, flags2, protection, ptype, Drep, Header, Pdu};
use msrpc::client::{CallError, ClientAuth, Connection, DatagramOptions, Options};
use msrpc::epm::{inquiry, vers, Address, EndpointMapper, EpmClient, EpmServer, Tower, TowerInfo};
use msrpc::mgmt::{Management, MgmtClient, MgmtServer};
use msrpc::ndr::{self, ConformantArray, ConformantVaryingArray, ContextHandle, Syntax, Unique};
use msrpc::security::{auth_type, Credentials, DatagramInitiator};
use msrpc::server::{auth_level, ndr20, Call, CallResult, Limits, Server};
use msrpc::{status, Uuid};
use tokio::net::UdpSocket;

/// A method with a side effect, to count how often it ran, and one that
/// sends back what it gets.
#[msrpc::interface(uuid = "7d1c0a52-94e3-4f5b-8a66-0c2b9e4d1f37", version = "1.0")]
pub trait Tally {
    #[opnum(0)]
    fn add(&self, call: &Call, n: u32) -> CallResult<u32>;
    #[opnum(1)]
    fn echo(&self, call: &Call, data: ConformantArray<u8>) -> CallResult<ConformantArray<u8>>;
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU32>);

impl Tally for Counter {
    fn add(&self, _call: &Call, n: u32) -> CallResult<u32> {
        Ok(self.0.fetch_add(n, Ordering::SeqCst) + n)
    }
    fn echo(&self, _call: &Call, data: ConformantArray<u8>) -> CallResult<ConformantArray<u8>> {
        Ok(data)
    }
}

/// Who called, at what level: for calls that must be authenticated.
#[msrpc::interface(uuid = "0b6f5a3e-2c4d-4e8f-9a1b-3c5d7e9f1a2b", version = "1.0")]
pub trait Guarded {
    #[opnum(0)]
    fn whoami(&self, call: &Call) -> CallResult<(u32, ConformantArray<u8>)>;
}

struct Guard;

impl Guarded for Guard {
    fn whoami(&self, call: &Call) -> CallResult<(u32, ConformantArray<u8>)> {
        let user = call.client.clone().unwrap_or_default();
        Ok((
            u32::from(call.auth_level),
            ConformantArray(user.into_bytes()),
        ))
    }
}

/// One account: alice / "Secret-1".
struct Accounts;

impl Credentials for Accounts {
    fn nt_hash(&self, user: &str) -> Option<(String, [u8; 16])> {
        use md4::Digest;
        let utf16: Vec<u8> = "Secret-1"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        user.eq_ignore_ascii_case("alice")
            .then(|| ("alice".to_string(), md4::Md4::digest(&utf16).into()))
    }
}

fn alice(level: u8, password: &str) -> Options {
    Options {
        auth: Some(ClientAuth {
            auth_type: auth_type::WINNT,
            level,
            user: "alice".into(),
            domain: String::new(),
            password: password.into(),
            ticket: None,
        }),
        ..Options::default()
    }
}

struct Running {
    server: Arc<Server>,
    udp: SocketAddr,
    counter: Counter,
}

async fn start() -> Running {
    let server = Server::new(Limits::default(), "testhost".into());
    server.register(EpmServer(EndpointMapper::new()), auth_level::NONE, true);
    server.register(MgmtServer(Management), auth_level::NONE, false);
    let counter = Counter::default();
    server.register(TallyServer(counter.clone()), auth_level::NONE, true);
    server.register(GuardedServer(Guard), auth_level::INTEGRITY, true);
    server.set_credentials(Arc::new(Accounts));
    server
        .listen_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let udp = server
        .listen_udp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Running {
        server,
        udp,
        counter,
    }
}

async fn udp(to: SocketAddr, datagram: DatagramOptions) -> Connection {
    Connection::connect_udp(to, Options::default(), datagram)
        .await
        .unwrap()
}

#[tokio::test]
async fn management_and_endpoint_mapper_answer_over_udp() {
    let r = start().await;
    for idempotent in [true, false] {
        let mut conn = udp(
            r.udp,
            DatagramOptions {
                idempotent,
                ..DatagramOptions::default()
            },
        )
        .await;
        let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
        assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
        let (ids, st) = mgmt.inq_if_ids().await.unwrap();
        assert_eq!(st, 0);
        let listed: Vec<Uuid> = ids
            .get()
            .unwrap()
            .if_id
            .iter()
            .map(|i| i.get().unwrap().uuid)
            .collect();
        assert_eq!(
            listed,
            vec![
                EpmClient::syntax().uuid,
                TallyClient::syntax().uuid,
                GuardedClient::syntax().uuid
            ]
        );
        let (name, st) = mgmt.inq_princ_name(10, 100).await.unwrap();
        assert_eq!((name.text.as_slice(), st), (&b"testhost"[..], 0));
        let (_, stats, _) = mgmt.inq_stats(4).await.unwrap();
        assert!(stats.0[2] >= stats.0[0] && stats.0[3] > 0, "{:?}", stats.0);

        // ept_map of a UDP tower answers with the UDP endpoint.
        let mut epm = EpmClient::bind(&mut conn).await.unwrap();
        let wanted = TowerInfo {
            interface: TallyClient::syntax(),
            transfer: ndr20(),
            address: Address::Udp("0.0.0.0:0".parse().unwrap()),
        };
        let (_, n, towers, st) = epm
            .ept_map(
                Unique::new(None),
                Unique::new(Some(Tower::new(wanted.encode()))),
                ContextHandle::default(),
                4,
            )
            .await
            .unwrap();
        assert_eq!((n, st), (1, 0));
        let tower = TowerInfo::decode(&towers.items[0].get().unwrap().octets).unwrap();
        assert_eq!(tower.address, Address::Udp(r.udp));

        // A lookup one entry at a time: its context handle lives in the
        // activity between calls. EPM, Tally and Guarded on TCP and UDP.
        let mut handle = ContextHandle::default();
        let mut seen = Vec::new();
        loop {
            let (next, n, entries, st) = epm
                .ept_lookup(
                    inquiry::ALL_ELTS,
                    Unique::new(None),
                    Unique::new(None),
                    vers::ALL,
                    handle,
                    1,
                )
                .await
                .unwrap();
            if st == status::EPT_S_NOT_REGISTERED {
                break;
            }
            assert_eq!((n, st), (1, 0));
            let tower = entries.items[0].tower.get().unwrap();
            seen.push(TowerInfo::decode(&tower.octets).unwrap().address);
            handle = next;
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert!(seen.contains(&Address::Udp(r.udp)));
    }
}

/// A relay between one client and the server that drops, duplicates and
/// holds back (reorders) datagrams both ways, by a fixed pseudo-random
/// sequence from `seed` (or delivers them all, without one), and logs
/// every datagram it delivers.
struct Relay {
    front: SocketAddr,
    log: Arc<Mutex<Vec<common::Datagram>>>,
    /// How often each fault was played, each way: [to the server, back].
    played: Arc<Mutex<[[u32; 3]; 2]>>,
}

/// Which fault the relay plays on a datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
    HoldBack,
}

struct Faults(u64);

impl Faults {
    fn next(&mut self) -> Fate {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        match (self.0 >> 33) % 100 {
            0..=9 => Fate::Drop,
            10..=19 => Fate::Duplicate,
            20..=29 => Fate::HoldBack,
            _ => Fate::Deliver,
        }
    }
}

async fn relay(server: SocketAddr, seed: Option<u64>) -> Relay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let log: Arc<Mutex<Vec<common::Datagram>>> = Arc::default();
    let played: Arc<Mutex<[[u32; 3]; 2]>> = Arc::default();
    let front_addr = front.local_addr().unwrap();
    for to_server in [true, false] {
        let (front, back, client, log, played) = (
            Arc::clone(&front),
            Arc::clone(&back),
            Arc::clone(&client),
            Arc::clone(&log),
            Arc::clone(&played),
        );
        let way = usize::from(!to_server);
        tokio::spawn(async move {
            let mut faults = seed.map(|seed| Faults(seed ^ u64::from(to_server)));
            let mut held: Option<Vec<u8>> = None;
            let mut buffer = vec![0u8; 65536];
            loop {
                let received = tokio::time::timeout(Duration::from_millis(40), async {
                    if to_server {
                        let (n, from) = front.recv_from(&mut buffer).await.ok()?;
                        *client.lock().unwrap() = Some(from);
                        Some(buffer[..n].to_vec())
                    } else {
                        let n = back.recv(&mut buffer).await.ok()?;
                        Some(buffer[..n].to_vec())
                    }
                })
                .await;
                let mut deliver = Vec::new();
                match received {
                    Ok(Some(datagram)) => {
                        let fate = faults.as_mut().map_or(Fate::Deliver, Faults::next);
                        if fate != Fate::Deliver {
                            played.lock().unwrap()[way][fate as usize - 1] += 1;
                        }
                        match fate {
                            Fate::Drop => {}
                            Fate::Deliver => deliver.push(datagram),
                            Fate::Duplicate => {
                                deliver.push(datagram.clone());
                                deliver.push(datagram);
                            }
                            Fate::HoldBack => {
                                if let Some(earlier) = held.replace(datagram) {
                                    deliver.push(earlier);
                                }
                                continue;
                            }
                        }
                    }
                    Ok(None) => return,
                    Err(_) => {}
                }
                // What was held back goes after what came later.
                deliver.extend(held.take());
                for datagram in deliver {
                    let (from, to) = if to_server { (1025, 135) } else { (135, 1025) };
                    let client_at = *client.lock().unwrap();
                    if to_server {
                        let _ = back.send(&datagram).await;
                    } else if let Some(c) = client_at {
                        let _ = front.send_to(&datagram, c).await;
                    }
                    log.lock().unwrap().push(common::Datagram {
                        from,
                        to,
                        bytes: datagram,
                    });
                }
            }
        });
    }
    Relay {
        front: front_addr,
        log,
        played,
    }
}

#[tokio::test]
async fn calls_complete_exactly_once_through_a_relay_that_loses_and_reorders() {
    let r = start().await;
    let relay = relay(r.udp, Some(0x1cedc0de)).await;
    let mut conn = udp(relay.front, DatagramOptions::default()).await;
    let mut tally = TallyClient::bind(&mut conn).await.unwrap();
    for i in 1..=20 {
        assert_eq!(tally.add(1).await.unwrap(), i);
    }
    // Many fragments each way (a first call's datagrams are 1024 octets).
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    let back = tally.echo(ConformantArray(big.clone())).await.unwrap();
    assert_eq!(back.0, big);
    assert_eq!(tally.add(0).await.unwrap(), 20, "each add ran exactly once");
    // Every fault was played in each direction.
    let played = *relay.played.lock().unwrap();
    assert!(played.iter().flatten().all(|n| *n > 0), "{played:?}");
    drop(conn);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let log = std::mem::take(&mut *relay.log.lock().unwrap());
    let text = common::tshark_verbose("cl-relay", &log);
    common::assert_no_complaints(&text);
    for seen in [
        "Packet type: Request (0)",
        "Packet type: Response (2)",
        "Packet type: Fack (9)",
        // The server asked who the client is before the first add ran.
        "Operation: who_are_you2 (1)",
    ] {
        assert!(text.contains(seen), "{seen}:\n{text}");
    }
    for frame in text.split("\nFrame ").skip(1) {
        assert!(
            frame.contains("Distributed Computing Environment / Remote Procedure Call (DCE/RPC)"),
            "every datagram is DCE/RPC:\n{frame}"
        );
    }
    assert_eq!(text.matches("\nFrame ").count() + 1, log.len());
}

#[tokio::test]
async fn big_endian_headers_and_eight_octet_fragments_are_answered() {
    let r = start().await;
    // Big-endian: calls whose requests carry no stub data.
    let mut conn = udp(
        r.udp,
        DatagramOptions {
            big_endian: true,
            idempotent: true,
            ..DatagramOptions::default()
        },
    )
    .await;
    let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
    assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
    assert_eq!(mgmt.inq_if_ids().await.unwrap().1, 0);

    // Eight octets of stub data per request fragment.
    let mut conn = udp(
        r.udp,
        DatagramOptions {
            fragment_len: Some(8),
            ..DatagramOptions::default()
        },
    )
    .await;
    let mut tally = TallyClient::bind(&mut conn).await.unwrap();
    let data: Vec<u8> = (0..200).collect();
    assert_eq!(
        tally.echo(ConformantArray(data.clone())).await.unwrap().0,
        data
    );
    assert_eq!(tally.add(5).await.unwrap(), 5);
}

/// A request datagram of a raw client.
fn request(activity: Uuid, seq: u32, flags: u8, opnum: u16, stub: Vec<u8>) -> Vec<u8> {
    let tally = TallyClient::syntax();
    Pdu {
        header: Header {
            ptype: ptype::REQUEST,
            flags1: flags,
            interface: tally.uuid,
            interface_version: 1,
            activity,
            seqnum: seq,
            opnum,
            ..Header::default()
        },
        body: stub,
    }
    .encode()
    .unwrap()
}

async fn receive(socket: &UdpSocket) -> Pdu {
    let mut buffer = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buffer))
        .await
        .expect("an answer in time")
        .unwrap();
    Pdu::decode(&buffer[..n]).unwrap()
}

#[tokio::test]
async fn non_idempotent_calls_wait_for_the_conversation_callback() {
    let r = start().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(r.udp).await.unwrap();
    let activity = Uuid::random();
    let add = |n: u32| ndr::params_to_bytes(&(n,), Syntax::Ndr20);
    socket
        .send(&request(activity, 0, 0, 0, add(3)))
        .await
        .unwrap();
    // conv_who_are_you2 about our activity (PF2_UNRELATED clear: see
    // datagram.rs), idempotent.
    let callback = receive(&socket).await;
    assert_eq!(callback.header.ptype, ptype::REQUEST);
    assert_eq!(
        callback.header.interface,
        Uuid::parse(msrpc::conv::UUID).unwrap()
    );
    assert_eq!(callback.header.opnum, 1);
    assert_eq!(callback.header.flags2 & flags2::UNRELATED, 0);
    assert_ne!(callback.header.flags1 & flags1::IDEMPOTENT, 0);
    let (asked, boot): (Uuid, u32) =
        ndr::params_from_bytes(&callback.body, Syntax::Ndr20, true).unwrap();
    assert_eq!(asked, activity);
    assert_ne!(boot, 0);
    assert_eq!(
        r.counter.0.load(Ordering::SeqCst),
        0,
        "not run before the answer"
    );
    let answer = Pdu {
        header: Header {
            ptype: ptype::RESPONSE,
            ..callback.header.clone()
        },
        body: ndr::params_to_bytes(&(0u32, Uuid::random(), 0u32), Syntax::Ndr20),
    };
    socket.send(&answer.encode().unwrap()).await.unwrap();
    let response = receive(&socket).await;
    assert_eq!(response.header.ptype, ptype::RESPONSE);
    assert_eq!(response.header.server_boot, boot);
    assert_eq!(response.body, 3u32.to_le_bytes());
    // The request again (its answer lost): the answer again, not a rerun.
    socket
        .send(&request(activity, 0, 0, 0, add(3)))
        .await
        .unwrap();
    assert_eq!(receive(&socket).await.body, 3u32.to_le_bytes());
    assert_eq!(r.counter.0.load(Ordering::SeqCst), 3);

    // A client that never answers the callback: the call is refused
    // (nca_s_who_are_you_failed) and never runs.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    silent.connect(r.udp).await.unwrap();
    silent
        .send(&request(Uuid::random(), 0, 0, 0, add(100)))
        .await
        .unwrap();
    let mut callbacks = 0;
    let reject = loop {
        let pdu = receive(&silent).await;
        if pdu.header.ptype == ptype::REQUEST {
            callbacks += 1;
            continue;
        }
        break pdu;
    };
    assert_eq!(callbacks, 5, "sent again each second, five times");
    assert_eq!(reject.header.ptype, ptype::REJECT);
    assert_eq!(reject.status(), Ok(0x1C00_000B));
    assert_eq!(r.counter.0.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bad_datagrams_get_clear_answers_and_the_server_serves_on() {
    let r = start().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(r.udp).await.unwrap();
    for garbage in [&b""[..], b"\x04\x00", &[0xff; 100], &[4u8; 80]] {
        socket.send(garbage).await.unwrap();
    }
    // An idempotent call with a boot time of another incarnation.
    let mut wrong_boot = Pdu::decode(&request(
        Uuid::random(),
        0,
        flags1::IDEMPOTENT,
        0,
        vec![0; 4],
    ))
    .unwrap();
    wrong_boot.header.server_boot = 12345;
    socket.send(&wrong_boot.encode().unwrap()).await.unwrap();
    let reject = receive(&socket).await;
    assert_eq!(reject.header.ptype, ptype::REJECT);
    assert_eq!(reject.status(), Ok(0x1C01_0006), "nca_s_wrong_boot_time");
    // An interface the server does not have; an opnum Tally lacks.
    let mut unknown =
        Pdu::decode(&request(Uuid::random(), 0, flags1::IDEMPOTENT, 0, vec![])).unwrap();
    unknown.header.interface = Uuid::random();
    socket.send(&unknown.encode().unwrap()).await.unwrap();
    assert_eq!(receive(&socket).await.status(), Ok(status::NCA_S_UNK_IF));
    socket
        .send(&request(Uuid::random(), 0, flags1::IDEMPOTENT, 9, vec![]))
        .await
        .unwrap();
    assert_eq!(
        receive(&socket).await.status(),
        Ok(status::NCA_S_OP_RNG_ERROR)
    );
    // Stub data that does not decode: a fault, not a reject.
    socket
        .send(&request(Uuid::random(), 0, flags1::IDEMPOTENT, 0, vec![1]))
        .await
        .unwrap();
    let fault = receive(&socket).await;
    assert_eq!(fault.header.ptype, ptype::FAULT);
    assert_eq!(fault.status(), Ok(status::RPC_X_BAD_STUB_DATA));
    // A ping about an activity the server never saw: nocall.
    let mut ping = Pdu::decode(&request(Uuid::random(), 0, 0, 0, vec![])).unwrap();
    ping.header.ptype = ptype::PING;
    socket.send(&ping.encode().unwrap()).await.unwrap();
    assert_eq!(receive(&socket).await.header.ptype, ptype::NOCALL);

    // Overlapped calls (PF2_UNRELATED) on one activity, none finishing
    // (their client never answers who it is): past the limit a connection
    // has, refused as too busy.
    let overlapped = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    overlapped.connect(r.udp).await.unwrap();
    let activity = Uuid::random();
    for seq in 0..40 {
        let mut pdu = Pdu::decode(&request(activity, seq, 0, 0, vec![0; 4])).unwrap();
        pdu.header.flags2 = flags2::UNRELATED;
        overlapped.send(&pdu.encode().unwrap()).await.unwrap();
    }
    let busy = loop {
        let pdu = receive(&overlapped).await;
        if pdu.header.ptype == ptype::REJECT {
            break pdu;
        }
    };
    assert_eq!(busy.header.seqnum, 32, "calls 0 to 31 are held");
    assert_eq!(busy.status(), Ok(0x1C01_0014), "nca_s_server_too_busy");

    // And the server goes on serving.
    let mut conn = udp(r.udp, DatagramOptions::default()).await;
    let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
    assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
    assert!(r.server.stats.snapshot()[2] >= 10);
    let _ = Drep::BIG;
}

#[tokio::test]
async fn a_port_nobody_answers_on_is_a_clear_error() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let closed = socket.local_addr().unwrap();
    drop(socket);
    let mut conn = udp(closed, DatagramOptions::default()).await;
    let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
    match mgmt.is_server_listening().await {
        Err(CallError::Io(e)) => {
            assert!(
                e.to_string().contains("nothing answers RPC over UDP"),
                "{e}"
            )
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// How many endpoints one ept_lookup of up to ten lists, and its status.
async fn endpoints_in_one_lookup(conn: &mut Connection) -> (u32, u32) {
    let mut epm = EpmClient::bind(conn).await.unwrap();
    let (_, n, _, st) = epm
        .ept_lookup(
            inquiry::ALL_ELTS,
            Unique::new(None),
            Unique::new(None),
            vers::ALL,
            ContextHandle::default(),
            10,
        )
        .await
        .unwrap();
    (n, st)
}

#[tokio::test]
async fn ntlm_authenticates_calls_over_udp_at_integrity_and_privacy() {
    let r = start().await;
    let relay = relay(r.udp, Some(0x5eed_a11ce)).await;
    // Unauthenticated, the guarded interface refuses.
    let mut anonymous = udp(r.udp, DatagramOptions::default()).await;
    let mut guarded = GuardedClient::bind(&mut anonymous).await.unwrap();
    assert!(matches!(
        guarded.whoami().await,
        Err(CallError::Fault { status: 5 })
    ));
    for level in [auth_level::INTEGRITY, auth_level::PRIVACY] {
        for idempotent in [true, false] {
            // Through the relay that loses, duplicates and reorders.
            let options = DatagramOptions {
                idempotent,
                ..DatagramOptions::default()
            };
            let mut conn = Connection::connect_udp(relay.front, alice(level, "Secret-1"), options)
                .await
                .unwrap();
            let mut guarded = GuardedClient::bind(&mut conn).await.unwrap();
            let (seen_level, user) = guarded.whoami().await.unwrap();
            assert_eq!(
                (seen_level, user.0.as_slice()),
                (u32::from(level), &b"alice"[..])
            );
            let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
            assert_eq!(mgmt.inq_if_ids().await.unwrap().1, 0);
            assert_eq!(endpoints_in_one_lookup(&mut conn).await, (6, 0));
            // Fragments both ways, each signed (and sealed) on its own.
            let mut tally = TallyClient::bind(&mut conn).await.unwrap();
            let big: Vec<u8> = (0..20_000u32).map(|i| (i * 13) as u8).collect();
            assert_eq!(
                tally.echo(ConformantArray(big.clone())).await.unwrap().0,
                big
            );
        }
    }
    drop(relay);

    // A wrong password: the logon fails, the call is refused.
    let mut wrong = Connection::connect_udp(
        r.udp,
        alice(auth_level::INTEGRITY, "wrong"),
        DatagramOptions::default(),
    )
    .await
    .unwrap();
    let mut guarded = GuardedClient::bind(&mut wrong).await.unwrap();
    assert!(matches!(
        guarded.whoami().await,
        Err(CallError::Fault { status: 5 })
    ));
    // Negotiate and Kerberos need a connection.
    let mut negotiate = alice(auth_level::INTEGRITY, "Secret-1");
    negotiate.auth.as_mut().unwrap().auth_type = auth_type::GSS_NEGOTIATE;
    let refused = Connection::connect_udp(r.udp, negotiate, DatagramOptions::default()).await;
    assert!(matches!(refused, Err(CallError::Protocol(_))));
}

/// Every datagram of authenticated runs, through a relay that only
/// delivers, read by Wireshark: the conv_who_are_you_auth callback and
/// the signed requests and responses; at the privacy level the stub data
/// is sealed, so the EPM and MGMT dissectors, which would read cipher
/// text as arguments, are turned off and the DCE/RPC layer is read.
#[tokio::test]
async fn wireshark_reads_every_datagram_of_an_authenticated_run() {
    let r = start().await;
    for (level, name, options) in [
        (auth_level::INTEGRITY, "cl-integrity", &[][..]),
        (
            auth_level::PRIVACY,
            "cl-privacy",
            &["--disable-protocol", "epm", "--disable-protocol", "mgmt"][..],
        ),
    ] {
        let relay = relay(r.udp, None).await;
        let mut conn = Connection::connect_udp(
            relay.front,
            alice(level, "Secret-1"),
            DatagramOptions::default(),
        )
        .await
        .unwrap();
        let mut mgmt = MgmtClient::bind(&mut conn).await.unwrap();
        assert_eq!(mgmt.is_server_listening().await.unwrap(), (0, 1));
        assert_eq!(endpoints_in_one_lookup(&mut conn).await, (6, 0));
        drop(conn);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = std::mem::take(&mut *relay.log.lock().unwrap());
        let text = common::tshark_verbose_with(name, &log, options);
        common::assert_no_complaints(&text);
        for seen in [
            "Operation: who_are_you_auth (3)",
            "Auth proto: NTLMSSP (10)",
            "Authentication verifier",
        ] {
            assert!(text.contains(seen), "{seen}:\n{text}");
        }
        if level == auth_level::INTEGRITY {
            assert!(text.contains("Operation: Lookup (2)"), "{text}");
        }
        assert_eq!(text.matches("\nFrame ").count() + 1, log.len());
    }
}

/// A request whose body was changed on the way: the callback builds the
/// context, the fragment does not verify against it, and the method
/// never runs.
#[tokio::test]
async fn a_tampered_request_is_refused_and_never_runs() {
    let r = start().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(r.udp).await.unwrap();
    let logon = DatagramInitiator::new(auth_level::INTEGRITY, "alice", "", "Secret-1").unwrap();
    let session = logon.session();
    let activity = Uuid::random();
    let tally = TallyClient::syntax();
    let mut header = Header {
        ptype: ptype::REQUEST,
        interface: tally.uuid,
        interface_version: 1,
        activity,
        opnum: 0,
        ..Header::default()
    };
    let mut body = ndr::params_to_bytes(&(50u32,), Syntax::Ndr20);
    let trailer = protection::protect(&session, &mut header, &mut body, auth_level::INTEGRITY, 0);
    body[0] ^= 0x01;
    let datagram = Pdu { header, body }.encode_with_trailer(&trailer).unwrap();
    socket.send(&datagram).await.unwrap();
    let callback = receive(&socket).await;
    assert_eq!(callback.header.opnum, 3, "conv_who_are_you_auth");
    let (asked, _boot, challenge, in_len, max): (Uuid, u32, ConformantArray<u8>, i32, i32) =
        ndr::params_from_bytes(&callback.body, Syntax::Ndr20, true).unwrap();
    assert_eq!((asked, in_len as usize), (activity, challenge.0.len()));
    let token = logon.authenticate(&challenge.0).unwrap();
    assert!(token.len() <= max as usize);
    let len = token.len() as i32;
    let answer = Pdu {
        header: Header {
            ptype: ptype::RESPONSE,
            ..callback.header.clone()
        },
        body: ndr::params_to_bytes(
            &(
                0u32,
                Uuid::random(),
                ConformantVaryingArray {
                    max: max as usize,
                    items: token,
                },
                len,
                0u32,
            ),
            Syntax::Ndr20,
        ),
    };
    socket.send(&answer.encode().unwrap()).await.unwrap();
    let refused = receive(&socket).await;
    assert_eq!(refused.header.ptype, ptype::FAULT);
    assert_eq!(refused.status(), Ok(5));
    assert_eq!(
        r.counter.0.load(Ordering::SeqCst),
        0,
        "the method never ran"
    );

    // A verifier that is not an NTLM signature is refused, not held.
    let mut header = Header {
        ptype: ptype::REQUEST,
        interface: tally.uuid,
        interface_version: 1,
        activity: Uuid::random(),
        flags1: flags1::IDEMPOTENT,
        ..Header::default()
    };
    let mut body = ndr::params_to_bytes(&(1u32,), Syntax::Ndr20);
    let mut trailer =
        protection::protect(&session, &mut header, &mut body, auth_level::INTEGRITY, 0);
    trailer.token = vec![0xab; 1000];
    let datagram = Pdu { header, body }.encode_with_trailer(&trailer).unwrap();
    socket.send(&datagram).await.unwrap();
    let reject = receive(&socket).await;
    assert_eq!(reject.header.ptype, ptype::REJECT);
    assert_eq!(reject.status(), Ok(status::NCA_S_PROTO_ERROR));

    // Another provider than NTLM is refused at once (0x6D3).
    let mut header = Header {
        ptype: ptype::REQUEST,
        interface: tally.uuid,
        interface_version: 1,
        activity: Uuid::random(),
        flags1: flags1::IDEMPOTENT,
        ..Header::default()
    };
    header.auth_proto = auth_type::GSS_KERBEROS;
    let mut body = ndr::params_to_bytes(&(1u32,), Syntax::Ndr20);
    let trailer = protection::protect(&session, &mut header, &mut body, auth_level::INTEGRITY, 0);
    header.auth_proto = auth_type::GSS_KERBEROS;
    let datagram = Pdu { header, body }.encode_with_trailer(&trailer).unwrap();
    socket.send(&datagram).await.unwrap();
    let reject = receive(&socket).await;
    assert_eq!(reject.header.ptype, ptype::REJECT);
    assert_eq!(reject.status(), Ok(status::RPC_S_UNKNOWN_AUTHN_SERVICE));
}
