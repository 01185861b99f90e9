//! The connectionless server (ncadg_ip_udp): [MS-RPCE] 3.2.3 over C706
//! chapters 9 and 10. One task owns the socket and every activity:
//!
//! - requests are reassembled per call (facks with selective
//!   acknowledgement for fragmented ones), duplicates and retired
//!   sequence numbers dropped (3.2.3.5.4);
//! - a non-idempotent call of an activity whose client address space is
//!   unknown waits for a conv_who_are_you2 callback to the client
//!   (3.2.3.5.4.2), retransmitted until answered, so that it runs at most
//!   once;
//! - responses go out in bursts within the client's window, resent when
//!   a fack or ping shows them lost, kept until the client acknowledges
//!   them (an ack, or its next call on the activity);
//! - pings get working, nocall or the response again (3.2.3.5.5);
//!   cl_cancel gets cancel_ack (3.2.3.5.7);
//! - idle calls and activities are scavenged (3.2.3.6.1);
//! - an authenticated call (NTLM) whose key_vers_num names no context of
//!   its activity waits for a conv_who_are_you_auth callback that carries
//!   connectionless NTLM's CHALLENGE_MESSAGE to the client and brings
//!   back its AUTHENTICATE_MESSAGE (3.2.1.4.1); its fragments are then
//!   verified (and unsealed), and the response's fragments signed (and
//!   sealed) with the same context.
//!
//! Calls run on the task itself unless their interface says they may
//! block, as on a connection served in turn.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{auth_level, Association, Call, Fault, Registered, Server, Transport};
use crate::cl::protection;
use crate::cl::window::{Reassembly, Refused, Transmission};
use crate::cl::{flags1, flags2, ptype, AuthTrailer, Cancel, Drep, Header, Pdu};
use crate::ndr::{self, ConformantArray, ConformantVaryingArray, Syntax};
use crate::pdu::SyntaxId;
use crate::security::{auth_type, DatagramChallenge, DatagramSession, Identity};
use crate::status;
use crate::uuid::Uuid;

/// The largest datagram this side takes and sends (a UDP payload).
pub const MAX_DATAGRAM: usize = 65528;
/// What a client is told it may send unfragmented: the whole datagram
/// on loopback, an Ethernet frame's worth elsewhere.
const ETHERNET_FRAGMENT: usize = 1464;
/// The Maximum PDU Length of an activity's first call (3.2.3.1.5).
const FIRST_PDU_LENGTH: usize = 1024;
/// The window offered in facks: fragments a call may have unacknowledged.
const WINDOW: u16 = 32;
/// Activities held at once; requests that would start more are refused.
const MAX_ACTIVITIES: usize = 16384;
/// A call nobody has spoken about for this long is dropped (Windows: 15
/// seconds, [MS-RPCE] <96>).
const CALL_IDLE: Duration = Duration::from_secs(15);
/// An activity idle this long is forgotten with its context handles
/// (C706 TIMEOUT_IDLE, 5 minutes).
const ACTIVITY_IDLE: Duration = Duration::from_secs(300);
/// The longest token a client may answer conv_who_are_you_auth with (an
/// AUTHENTICATE_MESSAGE is a few hundred octets).
const AUTH_TOKEN_MAX: i32 = 4096;
/// conv_who_are_you2 is sent again after this, at most this many times.
const CALLBACK_RETRY: Duration = Duration::from_secs(1);
const CALLBACK_TRIES: u8 = 5;
/// How often timers are looked at.
const TICK: Duration = Duration::from_millis(250);

/// nca_s_wrong_boot_time: the request names another incarnation.
pub const NCA_S_WRONG_BOOT_TIME: u32 = 0x1C01_0006;
/// nca_s_server_too_busy.
pub const NCA_S_SERVER_TOO_BUSY: u32 = 0x1C01_0014;
/// nca_s_who_are_you_failed: the conversation callback got no answer.
pub const NCA_S_WHO_ARE_YOU_FAILED: u32 = 0x1C00_000B;

/// Statuses that go in a reject (the call was turned away by the
/// runtime); every other in a fault.
fn is_reject(status: u32) -> bool {
    matches!(
        status,
        status::NCA_S_UNK_IF
            | status::NCA_S_OP_RNG_ERROR
            | status::NCA_S_PROTO_ERROR
            | status::RPC_S_UNKNOWN_AUTHN_SERVICE
            | NCA_S_WRONG_BOOT_TIME
            | NCA_S_SERVER_TOO_BUSY
            | NCA_S_WHO_ARE_YOU_FAILED
    )
}

/// Where a server call is (3.2.3.1.8).
enum Phase {
    /// Fragments are coming in.
    Receiving,
    /// Complete; waiting for the client to say who it is.
    Identifying,
    /// Dispatched.
    Working,
    /// The response is going out.
    Sending(Transmission),
    /// A fault or reject was sent; kept to send again.
    Ended(Vec<u8>),
}

struct ServerCall {
    /// The header of the first fragment that came (every fragment
    /// carries the call's interface, opnum and flags).
    header: Header,
    fragments: Reassembly,
    stub: Vec<u8>,
    phase: Phase,
    last_heard: Instant,
    /// The highest serial number heard in this call (requests and pings).
    heard_serial: Option<u16>,
    send_serial: u16,
    cancel_id: u32,
    /// An authenticated call's context and each fragment's signature.
    auth: Option<CallAuth>,
}

struct CallAuth {
    key_vers_num: u8,
    tokens: BTreeMap<u16, Vec<u8>>,
}

/// An activity's authentication: the provider and level its first call
/// named (later packets must name the same, 3.2.3.5.3) and its contexts.
struct ActivityAuth {
    level: u8,
    contexts: HashMap<u8, Established>,
}

/// A security context built by a conv_who_are_you_auth callback.
struct Established {
    identity: Identity,
    session: Arc<DatagramSession>,
}

struct Activity {
    peer: SocketAddr,
    lowest_allowed: u32,
    lowest_unused: u32,
    calls: BTreeMap<u32, ServerCall>,
    /// The client address space, once a callback has said.
    cas: Option<Uuid>,
    association: Arc<Association>,
    last_heard: Instant,
    /// The largest datagram the client is known to take.
    max_pdu: usize,
    /// The client's receive window, from its facks.
    window: u16,
    callback: Option<Callback>,
    auth: Option<ActivityAuth>,
}

/// A conversation callback on its way to the client.
struct Callback {
    activity: Uuid,
    datagram: Vec<u8>,
    sent: Instant,
    tries: u8,
    /// conv_who_are_you_auth's challenge and the context it builds;
    /// None for conv_who_are_you2.
    auth: Option<(u8, DatagramChallenge)>,
}

/// A call that ran off the task.
struct Finished {
    activity: Uuid,
    seq: u32,
    outcome: Result<Vec<u8>, Fault>,
}

struct Endpoint {
    server: Arc<Server>,
    local: SocketAddr,
    boot_time: u32,
    activities: HashMap<Uuid, Activity>,
    /// Callback activity → the client activity it asks about.
    callbacks: HashMap<Uuid, Uuid>,
    /// Client address spaces and their context handles.
    spaces: HashMap<Uuid, Weak<Association>>,
    outbox: Vec<(Vec<u8>, SocketAddr)>,
    finished: mpsc::UnboundedSender<Finished>,
}

/// Serves datagrams on `socket` until the process ends.
pub(super) async fn serve(server: Arc<Server>, socket: UdpSocket, local: SocketAddr) {
    let (finished, mut done) = mpsc::unbounded_channel();
    let boot_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
        .max(1);
    let mut endpoint = Endpoint {
        server,
        local,
        boot_time,
        activities: HashMap::new(),
        callbacks: HashMap::new(),
        spaces: HashMap::new(),
        outbox: Vec::new(),
        finished,
    };
    let mut buffer = vec![0u8; MAX_DATAGRAM + 8];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok((n, peer)) => endpoint.datagram(&buffer[..n], peer),
                // An ICMP error for an earlier send (the client went
                // away): nothing to do for this socket.
                Err(e) => tracing::debug!("rpc: udp {local}: {e}"),
            },
            Some(finished) = done.recv() => {
                endpoint.finish(finished.activity, finished.seq, finished.outcome)
            }
            _ = tick.tick() => endpoint.tick(),
        }
        for (datagram, to) in endpoint.outbox.drain(..) {
            endpoint
                .server
                .stats
                .pkts_out
                .fetch_add(1, Ordering::Relaxed);
            if let Err(e) = socket.send_to(&datagram, to).await {
                tracing::debug!("rpc: udp send to {to}: {e}");
            }
        }
    }
}

/// Feeds datagrams to a fresh endpoint's state machine, as from the
/// addresses given, with its timers run every `tick_every` datagrams;
/// returns every datagram it would have sent (for the fuzz check).
#[cfg(feature = "fuzz-checks")]
pub(crate) fn run_for_fuzzing(
    server: Arc<Server>,
    datagrams: &[(Vec<u8>, SocketAddr)],
    tick_every: usize,
) -> Vec<Vec<u8>> {
    let (finished, _done) = mpsc::unbounded_channel();
    let mut endpoint = Endpoint {
        server,
        local: SocketAddr::from(([127, 0, 0, 1], 135)),
        boot_time: 1,
        activities: HashMap::new(),
        callbacks: HashMap::new(),
        spaces: HashMap::new(),
        outbox: Vec::new(),
        finished,
    };
    let mut sent = Vec::new();
    for (i, (datagram, peer)) in datagrams.iter().enumerate() {
        endpoint.datagram(datagram, *peer);
        if tick_every != 0 && i % tick_every == tick_every - 1 {
            endpoint.tick();
        }
        sent.extend(endpoint.outbox.drain(..).map(|(d, _)| d));
    }
    sent
}

/// A header answering `request`: same activity, call and interface.
fn reply_header(request: &Header, ptype: u8, boot_time: u32) -> Header {
    Header {
        ptype,
        flags1: 0,
        flags2: 0,
        drep: Drep::LITTLE,
        server_boot: boot_time,
        fragnum: 0,
        auth_proto: 0,
        serial: 0,
        interface_hint: 0xffff,
        activity_hint: 0xffff,
        ..request.clone()
    }
}

fn encode(header: Header, body: Vec<u8>) -> Vec<u8> {
    // Bodies here are a response fragment or a few octets: they fit.
    Pdu { header, body }.encode().unwrap_or_default()
}

impl Endpoint {
    fn send(&mut self, datagram: Vec<u8>, to: SocketAddr) {
        if !datagram.is_empty() {
            self.outbox.push((datagram, to));
        }
    }

    fn datagram(&mut self, bytes: &[u8], peer: SocketAddr) {
        self.server.stats.pkts_in.fetch_add(1, Ordering::Relaxed);
        self.server.pdu_arrived();
        let (pdu, trailer) = match Pdu::decode_with_trailer(bytes) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::debug!("rpc: udp datagram from {peer} dropped: {e}");
                return;
            }
        };
        match pdu.header.ptype {
            ptype::REQUEST => self.request(pdu, trailer, bytes.len(), peer),
            ptype::PING => self.ping(&pdu.header, peer),
            ptype::FACK => self.fack(&pdu, peer),
            ptype::ACK => self.ack(&pdu.header, peer),
            ptype::CL_CANCEL => self.cancel(&pdu, peer),
            ptype::RESPONSE | ptype::FAULT | ptype::REJECT => self.callback_answer(&pdu, peer),
            // Packets only a client takes (3.2.3.5.3).
            _ => {}
        }
    }

    /// Refuses a call with a reject, without creating state.
    fn reject(&mut self, request: &Header, status: u32, peer: SocketAddr) {
        let header = reply_header(request, ptype::REJECT, self.boot_time);
        let body = Pdu::status_body(Drep::LITTLE, status);
        self.send(encode(header, body), peer);
    }

    fn request(&mut self, pdu: Pdu, trailer: Option<AuthTrailer>, size: usize, peer: SocketAddr) {
        let h = &pdu.header;
        if h.server_boot != 0 && h.server_boot != self.boot_time {
            self.reject(h, NCA_S_WRONG_BOOT_TIME, peer);
            return;
        }
        // Connectionless NTLM is the one provider here (3.2.3.5.4.2: no
        // credentials for the provider named, 0x6D3).
        let trailer = match (h.auth_proto, trailer) {
            (0, _) => None,
            // An NTLM signature at the levels that sign, nothing at connect:
            // a token of any other length is not NTLM's (and would be
            // held per fragment until the call completes).
            (auth_type::WINNT, Some(t))
                if (auth_level::CONNECT..=auth_level::PRIVACY).contains(&t.level)
                    && t.token.len()
                        == if protection::signs(t.level) {
                            crate::security::SIGNATURE_LEN
                        } else {
                            0
                        } =>
            {
                Some(t)
            }
            (auth_type::WINNT, _) => {
                self.reject(h, status::NCA_S_PROTO_ERROR, peer);
                return;
            }
            _ => {
                self.reject(h, status::RPC_S_UNKNOWN_AUTHN_SERVICE, peer);
                return;
            }
        };
        let seq = h.seqnum;
        if !self.activities.contains_key(&h.activity) {
            if self.activities.len() >= MAX_ACTIVITIES {
                self.reject(h, NCA_S_SERVER_TOO_BUSY, peer);
                return;
            }
            let association = Arc::new(Association::detached(Some(peer.ip())));
            self.activities.insert(
                h.activity,
                Activity {
                    peer,
                    lowest_allowed: seq,
                    lowest_unused: seq,
                    calls: BTreeMap::new(),
                    cas: None,
                    association,
                    last_heard: Instant::now(),
                    max_pdu: FIRST_PDU_LENGTH,
                    window: 1,
                    callback: None,
                    auth: trailer.as_ref().map(|t| ActivityAuth {
                        level: t.level,
                        contexts: HashMap::new(),
                    }),
                },
            );
        }
        let Some(activity) = self.activities.get_mut(&h.activity) else {
            return;
        };
        // Another address using the activity: not its client.
        if activity.peer != peer || seq < activity.lowest_allowed {
            return;
        }
        // Neither provider nor level may change within an activity.
        if activity.auth.as_ref().map(|a| a.level) != trailer.as_ref().map(|t| t.level) {
            return;
        }
        let now = Instant::now();
        activity.last_heard = now;
        // A datagram this large came: the client takes as much back.
        activity.max_pdu = activity.max_pdu.max((size & !7).min(MAX_DATAGRAM));
        if seq >= activity.lowest_unused {
            // Overlapped calls (PF2_UNRELATED) keep the earlier ones: as
            // many at once as a connection may run.
            let overlapped = h.flags2 & flags2::UNRELATED != 0;
            if overlapped && activity.calls.len() >= self.server.limits.max_concurrent_calls {
                let header = reply_header(h, ptype::REJECT, self.boot_time);
                let body = Pdu::status_body(Drep::LITTLE, NCA_S_SERVER_TOO_BUSY);
                self.outbox.push((encode(header, body), peer));
                return;
            }
            activity.lowest_unused = seq.saturating_add(1);
            if !overlapped {
                // A new call ends the earlier ones (their responses were
                // received, or the client gave up on them).
                activity.calls.retain(|s, _| *s >= seq);
                activity.lowest_allowed = seq;
            }
            activity.calls.insert(
                seq,
                ServerCall {
                    header: h.clone(),
                    fragments: Reassembly::new(),
                    stub: Vec::new(),
                    phase: Phase::Receiving,
                    last_heard: now,
                    heard_serial: None,
                    send_serial: 0,
                    cancel_id: 0,
                    auth: trailer.as_ref().map(|t| CallAuth {
                        key_vers_num: t.key_vers_num,
                        tokens: BTreeMap::new(),
                    }),
                },
            );
        }
        let Some(call) = activity.calls.get_mut(&seq) else {
            return;
        };
        call.last_heard = now;
        call.heard_serial = Some(call.heard_serial.map_or(h.serial, |s| s.max(h.serial)));
        match &call.phase {
            Phase::Receiving => {}
            Phase::Identifying | Phase::Working => {
                let working = reply_header(h, ptype::WORKING, self.boot_time);
                self.send(encode(working, Vec::new()), peer);
                return;
            }
            Phase::Sending(_) => {
                self.send_burst(pdu.header.activity, seq);
                return;
            }
            Phase::Ended(datagram) => {
                let again = datagram.clone();
                self.send(again, peer);
                return;
            }
        }
        let fragmented = h.flags1 & flags1::FRAG != 0;
        let last = !fragmented || h.flags1 & flags1::LAST_FRAG != 0;
        let fragnum = if fragmented { h.fragnum } else { 0 };
        let limit = self.server.limits.max_input;
        if call.auth.as_ref().map(|a| a.key_vers_num) != trailer.as_ref().map(|t| t.key_vers_num) {
            return;
        }
        match call
            .fragments
            .add(fragnum, last, h.serial, &pdu.body, limit)
        {
            Ok(added) => {
                if let (true, Some(auth), Some(t)) = (added, &mut call.auth, trailer) {
                    auth.tokens.insert(fragnum, t.token);
                }
            }
            Err(Refused::TooLarge) => {
                tracing::warn!("rpc: a udp request from {peer} is larger than the server takes");
                let activity_id = h.activity;
                self.end(activity_id, seq, Fault::new(status::ERROR_ACCESS_DENIED));
                return;
            }
            Err(Refused::BeyondLast) => {
                let activity_id = h.activity;
                self.end(activity_id, seq, Fault::new(status::NCA_S_PROTO_ERROR));
                return;
            }
        }
        if fragmented && h.flags1 & flags1::NO_FACK == 0 {
            let (fragnum, fack) =
                call.fragments
                    .fack(WINDOW, MAX_DATAGRAM as u32, fragment_offer(peer) as u32);
            let mut header = reply_header(h, ptype::FACK, self.boot_time);
            header.fragnum = fragnum;
            let body = Pdu::fack_body(Drep::LITTLE, &fack);
            self.outbox.push((encode(header, body), peer));
        }
        if call.fragments.is_complete() {
            let activity_id = h.activity;
            self.begin(activity_id, seq);
        }
    }

    /// A complete request: verified and run if its context is known and
    /// its client identified; otherwise a callback asks the client first
    /// (conv_who_are_you_auth to build the context of an authenticated
    /// call, conv_who_are_you2 when a call must run at most once and the
    /// client's address space is unknown).
    fn begin(&mut self, activity_id: Uuid, seq: u32) {
        let boot_time = self.boot_time;
        let Some(activity) = self.activities.get_mut(&activity_id) else {
            return;
        };
        let Some(call) = activity.calls.get_mut(&seq) else {
            return;
        };
        let needs_context = match (&call.auth, &activity.auth) {
            (Some(auth), Some(activity_auth)) => {
                match activity_auth.contexts.get(&auth.key_vers_num) {
                    Some(context) => {
                        let level = activity_auth.level;
                        if let Err(e) = verify(call, level, &context.session) {
                            tracing::warn!("rpc: udp call from {} refused: {e}", activity.peer);
                            self.end(activity_id, seq, Fault::new(status::ERROR_ACCESS_DENIED));
                            return;
                        }
                        None
                    }
                    None => Some(auth.key_vers_num),
                }
            }
            _ => None,
        };
        let idempotent = call.header.flags1 & (flags1::IDEMPOTENT | flags1::MAYBE) != 0;
        if needs_context.is_none() && (idempotent || activity.cas.is_some()) {
            call.stub = call.fragments.take();
            self.dispatch(activity_id, seq);
            return;
        }
        call.phase = Phase::Identifying;
        if activity.callback.is_some() {
            return;
        }
        // conv_who_are_you2 or conv_who_are_you_auth on a fresh activity
        // of this server's own, idempotent as the IDL says. PF2_UNRELATED,
        // which 3.2.1.5.2 says a server SHOULD set to invite overlapped
        // calls, is left clear: Wireshark's dissector takes any flags2 bit
        // above 0x02 for "not DCE/RPC", which would hide the callback from
        // administrators reading a capture; clients then do not overlap
        // calls.
        let (opnum, body, auth) = match needs_context {
            None => (
                1,
                ndr::params_to_bytes(&(activity_id, boot_time), Syntax::Ndr20),
                None,
            ),
            Some(key_vers_num) => {
                let credentials = self.server.acceptors().credentials;
                let challenge = match DatagramChallenge::new(credentials, &self.server.principal) {
                    Ok(challenge) => challenge,
                    Err(e) => {
                        tracing::warn!("rpc: udp: {e}");
                        self.end(activity_id, seq, Fault::new(status::ERROR_ACCESS_DENIED));
                        return;
                    }
                };
                let token = challenge.message().to_vec();
                let in_len = token.len() as i32;
                let params = (
                    activity_id,
                    boot_time,
                    ConformantArray(token),
                    in_len,
                    AUTH_TOKEN_MAX,
                );
                let body = ndr::params_to_bytes(&params, Syntax::Ndr20);
                (3, body, Some((key_vers_num, challenge)))
            }
        };
        let callback_activity = Uuid::random();
        let header = Header {
            ptype: ptype::REQUEST,
            flags1: flags1::IDEMPOTENT,
            flags2: 0,
            drep: Drep::LITTLE,
            object: Uuid::NIL,
            interface: crate::conv::ConvClient::syntax().uuid,
            activity: callback_activity,
            server_boot: 0,
            interface_version: 3,
            seqnum: 0,
            opnum,
            ..Header::default()
        };
        let datagram = encode(header, body);
        let Some(activity) = self.activities.get_mut(&activity_id) else {
            return;
        };
        activity.callback = Some(Callback {
            activity: callback_activity,
            datagram: datagram.clone(),
            sent: Instant::now(),
            tries: 1,
            auth,
        });
        let peer = activity.peer;
        self.callbacks.insert(callback_activity, activity_id);
        self.send(datagram, peer);
    }

    /// The client answered a callback (or refused it).
    fn callback_answer(&mut self, pdu: &Pdu, peer: SocketAddr) {
        let h = &pdu.header;
        let Some(activity_id) = self.callbacks.get(&h.activity).copied() else {
            return;
        };
        let Some(activity) = self.activities.get_mut(&activity_id) else {
            self.callbacks.remove(&h.activity);
            return;
        };
        if activity.peer != peer {
            return;
        }
        self.callbacks.remove(&h.activity);
        let callback = activity.callback.take();
        let whole = h.ptype == ptype::RESPONSE && h.flags1 & flags1::FRAG == 0;
        let little = h.drep.little_endian;
        let answer = match callback.and_then(|c| c.auth) {
            None if whole => {
                ndr::params_from_bytes::<(u32, Uuid, u32)>(&pdu.body, Syntax::Ndr20, little).ok()
            }
            Some((key_vers_num, challenge)) if whole => {
                type AuthAnswer = (u32, Uuid, ConformantVaryingArray<u8>, i32, u32);
                match ndr::params_from_bytes::<AuthAnswer>(&pdu.body, Syntax::Ndr20, little) {
                    Ok((seq, cas, token, len, 0))
                        if usize::try_from(len).ok() == Some(token.items.len()) =>
                    {
                        match challenge.accept(&token.items) {
                            Ok((identity, session)) => {
                                tracing::debug!("rpc: udp logon of {identity} from {peer} (NTLM)");
                                if let Some(auth) = &mut activity.auth {
                                    auth.contexts.insert(
                                        key_vers_num,
                                        Established {
                                            identity,
                                            session: Arc::new(session),
                                        },
                                    );
                                }
                                Some((seq, cas, 0))
                            }
                            Err(e) => {
                                tracing::warn!("rpc: udp logon from {peer} failed: {e}");
                                None
                            }
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let waiting: Vec<u32> = activity
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Identifying))
            .map(|(s, _)| *s)
            .collect();
        match answer {
            Some((lowest_active, cas, 0)) if cas != Uuid::NIL => {
                activity.cas = Some(cas);
                // The client address space's handles live as long as any
                // of its activities.
                self.spaces.retain(|_, a| a.strong_count() > 0);
                match self.spaces.get(&cas).and_then(Weak::upgrade) {
                    Some(shared) if shared.peer_ip == Some(peer.ip()) => {
                        activity.association = shared;
                    }
                    _ => {
                        self.spaces
                            .insert(cas, Arc::downgrade(&activity.association));
                    }
                }
                for seq in waiting {
                    if seq < lowest_active {
                        // The client has moved past this call: a stale
                        // duplicate, never to run.
                        self.end(activity_id, seq, Fault::new(NCA_S_WHO_ARE_YOU_FAILED));
                    } else {
                        self.begin(activity_id, seq);
                    }
                }
            }
            _ => {
                tracing::debug!("rpc: {peer} did not say who it is; its calls are refused");
                // A logon that failed is access denied; a client that
                // would not answer, the callback's failure.
                let status = if activity.auth.is_some() {
                    status::ERROR_ACCESS_DENIED
                } else {
                    NCA_S_WHO_ARE_YOU_FAILED
                };
                for seq in waiting {
                    self.end(activity_id, seq, Fault::new(status));
                }
            }
        }
    }

    /// Runs a complete call (or refuses it).
    fn dispatch(&mut self, activity_id: Uuid, seq: u32) {
        let Some(activity) = self.activities.get_mut(&activity_id) else {
            return;
        };
        let Some(call) = activity.calls.get_mut(&seq) else {
            return;
        };
        let h = call.header.clone();
        self.server.stats.calls_in.fetch_add(1, Ordering::Relaxed);
        let wanted = SyntaxId::new(
            h.interface,
            (h.interface_version & 0xffff) as u16,
            (h.interface_version >> 16) as u16,
        );
        let object = (h.object != Uuid::NIL).then_some(h.object);
        let registered: Option<Registered> = self.server.find(&wanted).map(|bound| {
            object
                .and_then(|o| self.server.object_interface(&o, &bound.interface.syntax()))
                .unwrap_or(bound)
        });
        let Some(registered) = registered else {
            self.end(activity_id, seq, Fault::not_executed(status::NCA_S_UNK_IF));
            return;
        };
        if !registered.interface.opnums().contains(&h.opnum) {
            self.end(activity_id, seq, Fault::op_rng());
            return;
        }
        let (level, client) = match (&call.auth, &activity.auth) {
            (Some(auth), Some(activity_auth)) => (
                activity_auth.level,
                activity_auth
                    .contexts
                    .get(&auth.key_vers_num)
                    .map(|c| c.identity.user.clone()),
            ),
            _ => (auth_level::NONE, None),
        };
        if level < registered.min_auth_level {
            self.end(
                activity_id,
                seq,
                Fault::not_executed(status::ERROR_ACCESS_DENIED),
            );
            return;
        }
        call.phase = Phase::Working;
        let stub = std::mem::take(&mut call.stub);
        let transport = Transport::Udp {
            local: self.local,
            peer: activity.peer,
        };
        let association = Arc::clone(&activity.association);
        let may_block = registered.interface.may_block(h.opnum);
        let run = move |server: &Server| {
            let call = Call {
                syntax: Syntax::Ndr20,
                little_endian: h.drep.little_endian,
                opnum: h.opnum,
                call_id: seq,
                object,
                auth_level: level,
                client,
                transport: &transport,
                association: &association,
                server,
            };
            registered.interface.dispatch(&call, h.opnum, &stub)
        };
        if may_block {
            let server = Arc::clone(&self.server);
            let finished = self.finished.clone();
            tokio::task::spawn_blocking(move || {
                let outcome = run(&server);
                let _ = finished.send(Finished {
                    activity: activity_id,
                    seq,
                    outcome,
                });
            });
        } else {
            let outcome = run(&self.server);
            self.finish(activity_id, seq, outcome);
        }
    }

    /// A call's method returned.
    fn finish(&mut self, activity_id: Uuid, seq: u32, outcome: Result<Vec<u8>, Fault>) {
        let Some(activity) = self.activities.get_mut(&activity_id) else {
            return;
        };
        let Some(call) = activity.calls.get_mut(&seq) else {
            // Cancelled, or ended by a later call, meanwhile.
            return;
        };
        if !matches!(call.phase, Phase::Working) {
            return;
        }
        if call.header.flags1 & flags1::MAYBE != 0 {
            activity.calls.remove(&seq);
            retire(activity);
            return;
        }
        match outcome {
            Ok(stub) => {
                let overhead = if call.auth.is_some() {
                    protection::OVERHEAD
                } else {
                    0
                };
                let fragment_len = (activity.max_pdu - crate::cl::HEADER_LEN - overhead) & !7;
                let window = usize::from(activity.window);
                call.phase = Phase::Sending(Transmission::new(&stub, fragment_len, window));
                self.send_burst(activity_id, seq);
            }
            Err(fault) => self.end(activity_id, seq, fault),
        }
    }

    /// Ends a call with a fault or reject, kept to send again.
    fn end(&mut self, activity_id: Uuid, seq: u32, fault: Fault) {
        let Some(activity) = self.activities.get_mut(&activity_id) else {
            return;
        };
        let Some(call) = activity.calls.get_mut(&seq) else {
            return;
        };
        let kind = if is_reject(fault.status) {
            ptype::REJECT
        } else {
            ptype::FAULT
        };
        let header = reply_header(&call.header, kind, self.boot_time);
        let datagram = encode(header, Pdu::status_body(Drep::LITTLE, fault.status));
        call.phase = Phase::Ended(datagram.clone());
        let peer = activity.peer;
        self.send(datagram, peer);
    }

    /// Sends the next burst of a response.
    fn send_burst(&mut self, activity_id: Uuid, seq: u32) {
        let Some(activity) = self.activities.get_mut(&activity_id) else {
            return;
        };
        let peer = activity.peer;
        let Some(call) = activity.calls.get_mut(&seq) else {
            return;
        };
        let Phase::Sending(tx) = &mut call.phase else {
            return;
        };
        // The context the request came under protects the response.
        let protection = match (&call.auth, &activity.auth) {
            (Some(auth), Some(activity_auth)) => {
                activity_auth.contexts.get(&auth.key_vers_num).map(|c| {
                    (
                        Arc::clone(&c.session),
                        activity_auth.level,
                        auth.key_vers_num,
                    )
                })
            }
            _ => None,
        };
        let fragmented = tx.is_fragmented();
        for s in tx.burst() {
            let mut header = reply_header(&call.header, ptype::RESPONSE, self.boot_time);
            s.mark(&mut header, fragmented);
            header.serial = call.send_serial;
            call.send_serial = call.send_serial.wrapping_add(1);
            let mut body = tx.fragment(s.fragnum).to_vec();
            let datagram = match &protection {
                Some((session, level, key_vers_num)) => {
                    let trailer =
                        protection::protect(session, &mut header, &mut body, *level, *key_vers_num);
                    Pdu { header, body }
                        .encode_with_trailer(&trailer)
                        .unwrap_or_default()
                }
                None => encode(header, body),
            };
            self.outbox.push((datagram, peer));
        }
    }

    fn ping(&mut self, h: &Header, peer: SocketAddr) {
        let boot_time = self.boot_time;
        let nocall = |endpoint: &mut Endpoint| {
            let header = reply_header(h, ptype::NOCALL, boot_time);
            endpoint.send(encode(header, Vec::new()), peer);
        };
        let Some(activity) = self.activities.get_mut(&h.activity) else {
            nocall(self);
            return;
        };
        if activity.peer != peer {
            return;
        }
        activity.last_heard = Instant::now();
        if h.seqnum >= activity.lowest_unused {
            nocall(self);
            return;
        }
        let Some(call) = activity.calls.get_mut(&h.seqnum) else {
            return;
        };
        // Windows answers a ping only when its serial is new ([MS-RPCE]
        // <93>): a duplicated ping gets one answer.
        if call.heard_serial.is_some_and(|s| h.serial <= s) && h.serial != 0 {
            return;
        }
        call.heard_serial = Some(h.serial);
        call.last_heard = Instant::now();
        match &call.phase {
            Phase::Receiving => {
                let (fragnum, fack) =
                    call.fragments
                        .fack(WINDOW, MAX_DATAGRAM as u32, fragment_offer(peer) as u32);
                let mut header = reply_header(h, ptype::NOCALL, boot_time);
                header.fragnum = fragnum;
                self.send(encode(header, Pdu::fack_body(Drep::LITTLE, &fack)), peer);
            }
            Phase::Identifying | Phase::Working => {
                let header = reply_header(h, ptype::WORKING, boot_time);
                self.send(encode(header, Vec::new()), peer);
            }
            Phase::Sending(_) => self.send_burst(h.activity, h.seqnum),
            Phase::Ended(datagram) => {
                let again = datagram.clone();
                self.send(again, peer);
            }
        }
    }

    fn fack(&mut self, pdu: &Pdu, peer: SocketAddr) {
        let h = &pdu.header;
        let Some(activity) = self.activities.get_mut(&h.activity) else {
            return;
        };
        if activity.peer != peer {
            return;
        }
        activity.last_heard = Instant::now();
        let Ok(Some(fack)) = pdu.fack() else {
            return;
        };
        activity.window = fack.window_size.clamp(1, WINDOW);
        let offered = (fack.max_tsdu.min(fack.max_frag_size) as usize).min(MAX_DATAGRAM);
        if offered >= FIRST_PDU_LENGTH {
            activity.max_pdu = offered & !7;
        }
        let Some(call) = activity.calls.get_mut(&h.seqnum) else {
            return;
        };
        call.last_heard = Instant::now();
        let Phase::Sending(tx) = &mut call.phase else {
            return;
        };
        tx.on_fack(h.fragnum, &fack.selack, fack.window_size);
        self.send_burst(h.activity, h.seqnum);
    }

    fn ack(&mut self, h: &Header, peer: SocketAddr) {
        let Some(activity) = self.activities.get_mut(&h.activity) else {
            return;
        };
        if activity.peer != peer {
            return;
        }
        activity.last_heard = Instant::now();
        let done = activity
            .calls
            .get(&h.seqnum)
            .is_some_and(|c| matches!(c.phase, Phase::Sending(_) | Phase::Ended(_)));
        if done {
            activity.calls.remove(&h.seqnum);
            retire(activity);
        }
    }

    fn cancel(&mut self, pdu: &Pdu, peer: SocketAddr) {
        let h = &pdu.header;
        let Ok(cancel) = pdu.cancel() else {
            return;
        };
        let Some(activity) = self.activities.get_mut(&h.activity) else {
            return;
        };
        if activity.peer != peer {
            return;
        }
        let Some(call) = activity.calls.get_mut(&h.seqnum) else {
            return;
        };
        if cancel.cancel_id < call.cancel_id {
            return;
        }
        if cancel.cancel_id > call.cancel_id {
            call.cancel_id = cancel.cancel_id;
            // A running method is not interrupted; its answer is dropped.
            activity.calls.remove(&h.seqnum);
            retire(activity);
        }
        let header = reply_header(h, ptype::CANCEL_ACK, self.boot_time);
        let body = Pdu::cancel_body(
            Drep::LITTLE,
            &Cancel {
                version: 0,
                cancel_id: cancel.cancel_id,
                server_is_accepting: Some(true),
            },
        );
        self.send(encode(header, body), peer);
    }

    /// Timers: callbacks sent again or given up, idle calls and
    /// activities forgotten.
    fn tick(&mut self) {
        let now = Instant::now();
        let mut given_up = Vec::new();
        let mut resend = Vec::new();
        for (id, activity) in &mut self.activities {
            if let Some(callback) = &mut activity.callback {
                if now.duration_since(callback.sent) >= CALLBACK_RETRY {
                    if callback.tries >= CALLBACK_TRIES {
                        given_up.push((*id, callback.activity));
                    } else {
                        callback.tries += 1;
                        callback.sent = now;
                        resend.push((callback.datagram.clone(), activity.peer));
                    }
                }
            }
            let before = activity.calls.len();
            activity.calls.retain(|_, c| {
                matches!(c.phase, Phase::Working | Phase::Identifying)
                    || now.duration_since(c.last_heard) < CALL_IDLE
            });
            if activity.calls.len() != before {
                retire(activity);
            }
        }
        for (datagram, peer) in resend {
            self.send(datagram, peer);
        }
        for (activity_id, callback_activity) in given_up {
            self.callbacks.remove(&callback_activity);
            let waiting: Vec<u32> = match self.activities.get_mut(&activity_id) {
                Some(activity) => {
                    activity.callback = None;
                    activity
                        .calls
                        .iter()
                        .filter(|(_, c)| matches!(c.phase, Phase::Identifying))
                        .map(|(s, _)| *s)
                        .collect()
                }
                None => Vec::new(),
            };
            for seq in waiting {
                self.end(activity_id, seq, Fault::new(NCA_S_WHO_ARE_YOU_FAILED));
            }
        }
        self.activities
            .retain(|_, a| !a.calls.is_empty() || now.duration_since(a.last_heard) < ACTIVITY_IDLE);
        let live: std::collections::HashSet<Uuid> = self
            .activities
            .values()
            .filter_map(|a| a.callback.as_ref().map(|c| c.activity))
            .collect();
        self.callbacks.retain(|c, _| live.contains(c));
    }
}

/// Calls below the oldest one still held are retired (3.2.3.1.1).
fn retire(activity: &mut Activity) {
    activity.lowest_allowed = activity
        .calls
        .keys()
        .next()
        .copied()
        .unwrap_or(activity.lowest_unused);
}

/// The fragment size offered to a peer in facks.
fn fragment_offer(peer: SocketAddr) -> usize {
    if peer.ip().is_loopback() {
        MAX_DATAGRAM
    } else {
        ETHERNET_FRAGMENT
    }
}

/// Verifies (and unseals) every fragment of a complete authenticated
/// request in place against the signature it came with.
fn verify(
    call: &mut ServerCall,
    level: u8,
    session: &DatagramSession,
) -> Result<(), crate::security::SecurityError> {
    let Some(auth) = &call.auth else {
        return Ok(());
    };
    let seq = call.header.seqnum;
    for (fragnum, body) in call.fragments.fragments_mut() {
        let token = auth
            .tokens
            .get(&fragnum)
            .map(Vec::as_slice)
            .unwrap_or_default();
        protection::unprotect(session, seq, fragnum, body, level, token)?;
    }
    Ok(())
}
