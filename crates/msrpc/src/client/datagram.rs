//! The connectionless client (ncadg_ip_udp), [MS-RPCE] 3.2.2: one
//! activity on a UDP socket connected to the server. A call's request
//! goes in fragments paced by the server's facks; then the client pings
//! until the response comes (a working doubles the interval), facks a
//! fragmented response and reassembles it; lost packets are sent again
//! when the retransmission timer runs out. The server's conversation
//! callbacks (conv_who_are_you2) are answered with this process's
//! client address space. A response is acknowledged by the next call,
//! or by an ack when the activity is dropped.
//!
//! With a logon, calls are authenticated with connectionless NTLM
//! ([MS-RPCE] 3.2.1.4.1): the client picks its session key at once and
//! signs (and seals) its request fragments with it; the server's
//! conv_who_are_you_auth callback brings the challenge, answered with the
//! AUTHENTICATE_MESSAGE; response fragments must verify against the same
//! keys or are dropped.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::{CallError, ClientAuth, Reply};
use crate::cl::protection;
use crate::cl::window::{Reassembly, Transmission};
use crate::cl::{flags1, ptype, Drep, Header, Pdu, HEADER_LEN};
use crate::conv::{ClientIdentity, ConvServer};
use crate::pdu::SyntaxId;
use crate::security::{auth_type, DatagramInitiator, DatagramSession};
use crate::server::{auth_level, Association, Call, Interface, Limits, Server, Transport};
use crate::uuid::Uuid;

/// How a connectionless client behaves.
#[derive(Clone, Debug)]
pub struct DatagramOptions {
    /// Calls are idempotent (`[idempotent]` in the IDL): the server runs
    /// them without identifying the client first. Off: at most once.
    pub idempotent: bool,
    /// Stub octets per request fragment; None: as the datagram allows.
    pub fragment_len: Option<usize>,
    /// Headers (and stub data, which must then be empty) big-endian.
    pub big_endian: bool,
    /// The retransmission timer's first interval ([MS-RPCE] 3.2.2.2.1:
    /// 1 second).
    pub retransmit: Duration,
    /// A call gives up when the server has said nothing for this long.
    pub give_up: Duration,
}

impl Default for DatagramOptions {
    fn default() -> DatagramOptions {
        DatagramOptions {
            idempotent: false,
            fragment_len: None,
            big_endian: false,
            retransmit: Duration::from_secs(1),
            give_up: Duration::from_secs(30),
        }
    }
}

/// The largest datagram taken or sent.
const MAX_DATAGRAM: usize = 65528;
/// The Maximum PDU Length of a first call (3.2.2.1.4).
const FIRST_PDU_LENGTH: usize = 1024;
/// The window offered in facks.
const WINDOW: u16 = 32;
/// The most a response may hold.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// The retransmission interval's ceiling (3.2.2.2.1).
const MAX_INTERVAL: Duration = Duration::from_secs(32);

/// This process's client address space: one UUID for all its activities.
fn client_address_space() -> Uuid {
    static CAS: OnceLock<Uuid> = OnceLock::new();
    *CAS.get_or_init(Uuid::random)
}

/// One activity.
pub struct Activity {
    socket: UdpSocket,
    local: SocketAddr,
    peer: SocketAddr,
    id: Uuid,
    /// The next call's sequence number.
    seq: u32,
    /// A call whose answer came and is not yet acknowledged.
    ack_pending: Option<Header>,
    server_boot: u32,
    max_pdu: usize,
    window: u16,
    serial: u16,
    options: DatagramOptions,
    /// What answers the server's conversation callbacks.
    callbacks: OnceLock<Arc<Server>>,
    /// Where datagrams are received, kept between calls.
    buffer: Vec<u8>,
    logon: Option<Logon>,
}

/// An activity's connectionless NTLM logon and the context of its
/// current key_vers_num.
struct Logon {
    auth: ClientAuth,
    key_vers_num: u8,
    initiator: Arc<DatagramInitiator>,
    session: DatagramSession,
}

impl Logon {
    fn new(auth: ClientAuth, key_vers_num: u8) -> Result<Logon, CallError> {
        let initiator =
            DatagramInitiator::new(auth.level, &auth.user, &auth.domain, &auth.password)
                .map_err(CallError::Security)?;
        let session = initiator.session();
        Ok(Logon {
            auth,
            key_vers_num,
            initiator: Arc::new(initiator),
            session,
        })
    }
}

/// Where a call is (3.2.2.1.10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    SendFrags,
    Dispatched,
    ReceiveFrags,
}

impl Activity {
    pub async fn connect(
        peer: SocketAddr,
        options: DatagramOptions,
        auth: Option<ClientAuth>,
    ) -> Result<Activity, CallError> {
        let logon = match auth {
            None => None,
            Some(auth) if auth.auth_type == auth_type::WINNT && auth.ticket.is_none() => {
                Some(Logon::new(auth, 0)?)
            }
            Some(_) => {
                return Err(CallError::Protocol(
                    "over ncadg_ip_udp only NTLM authenticates (Negotiate and Kerberos \
                     need a connection)",
                ))
            }
        };
        let bind: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0".parse().expect("an address")
        } else {
            "[::]:0".parse().expect("an address")
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(peer).await?;
        let local = socket.local_addr()?;
        Ok(Activity {
            socket,
            local,
            peer,
            id: Uuid::random(),
            seq: 0,
            ack_pending: None,
            server_boot: 0,
            max_pdu: FIRST_PDU_LENGTH,
            window: 1,
            serial: 0,
            options,
            callbacks: OnceLock::new(),
            buffer: vec![0; MAX_DATAGRAM + 8],
            logon,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn drep(&self) -> Drep {
        if self.options.big_endian {
            Drep::BIG
        } else {
            Drep::LITTLE
        }
    }

    fn next_serial(&mut self) -> u16 {
        let s = self.serial;
        self.serial = self.serial.wrapping_add(1);
        s
    }

    async fn send(&mut self, header: Header, body: Vec<u8>) -> Result<(), CallError> {
        let datagram = Pdu { header, body }
            .encode()
            .map_err(|_| CallError::Protocol("a fragment does not fit a datagram"))?;
        self.socket.send(&datagram).await?;
        Ok(())
    }

    /// Sends a request fragment, protected when the activity has a logon.
    async fn send_fragment(
        &mut self,
        mut header: Header,
        mut body: Vec<u8>,
    ) -> Result<(), CallError> {
        let Some(logon) = &self.logon else {
            return self.send(header, body).await;
        };
        let trailer = protection::protect(
            &logon.session,
            &mut header,
            &mut body,
            logon.auth.level,
            logon.key_vers_num,
        );
        let datagram = Pdu { header, body }
            .encode_with_trailer(&trailer)
            .map_err(|_| CallError::Protocol("a fragment does not fit a datagram"))?;
        self.socket.send(&datagram).await?;
        Ok(())
    }

    /// Makes a call; the request is fragmented as the server allows.
    pub async fn call(
        &mut self,
        interface: &SyntaxId,
        opnum: u16,
        object: Option<Uuid>,
        stub: Vec<u8>,
    ) -> Result<Reply, CallError> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        // A fresh context before a message number would repeat.
        if let Some(logon) = &self.logon {
            let key_vers_num = protection::key_vers_num(seq);
            if logon.key_vers_num != key_vers_num {
                self.logon = Some(Logon::new(logon.auth.clone(), key_vers_num)?);
            }
        }
        // This request acknowledges the previous answer.
        self.ack_pending = None;
        let mut request = Header {
            ptype: ptype::REQUEST,
            flags1: if self.options.idempotent {
                flags1::IDEMPOTENT
            } else {
                0
            },
            drep: self.drep(),
            object: object.unwrap_or(Uuid::NIL),
            interface: interface.uuid,
            activity: self.id,
            server_boot: self.server_boot,
            interface_version: u32::from(interface.major()) | (u32::from(interface.minor()) << 16),
            seqnum: seq,
            opnum,
            ..Header::default()
        };
        let overhead = if self.logon.is_some() {
            protection::OVERHEAD
        } else {
            0
        };
        let fragment_len = self
            .options
            .fragment_len
            .unwrap_or((self.max_pdu - HEADER_LEN - overhead) & !7)
            .max(8);
        let mut tx = Transmission::new(&stub, fragment_len, usize::from(self.window));
        let mut rx = Reassembly::new();
        let mut state = State::SendFrags;
        let mut interval = self.options.retransmit;
        let mut last_heard = Instant::now();
        self.send_burst(&request, &mut tx).await?;
        loop {
            let received = tokio::select! {
                r = self.socket.recv(&mut self.buffer) => Some(r.map_err(|e| unreachable_server(e, self.peer))?),
                _ = tokio::time::sleep(interval) => None,
            };
            let Some(n) = received else {
                if last_heard.elapsed() >= self.options.give_up {
                    return Err(CallError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the server at {} said nothing over UDP for {} s",
                            self.peer,
                            self.options.give_up.as_secs()
                        ),
                    )));
                }
                match state {
                    State::SendFrags => {
                        tx.on_timeout();
                        self.send_burst(&request, &mut tx).await?;
                    }
                    State::Dispatched => {
                        let mut ping = request.clone();
                        ping.ptype = ptype::PING;
                        ping.flags1 &= flags1::IDEMPOTENT;
                        ping.serial = self.next_serial();
                        self.send(ping, Vec::new()).await?;
                    }
                    State::ReceiveFrags => self.send_fack(&request, &rx).await?,
                }
                continue;
            };
            let Ok((mut pdu, trailer)) = Pdu::decode_with_trailer(&self.buffer[..n]) else {
                continue;
            };
            let h = &pdu.header;
            if h.ptype == ptype::REQUEST && h.interface == crate::conv::ConvClient::syntax().uuid {
                self.answer_callback(&pdu, seq).await?;
                continue;
            }
            if h.activity != self.id || h.seqnum != seq {
                continue;
            }
            last_heard = Instant::now();
            if h.server_boot != 0 && self.server_boot == 0 {
                self.server_boot = h.server_boot;
                request.server_boot = h.server_boot;
            }
            match h.ptype {
                ptype::RESPONSE => {
                    let fragmented = h.flags1 & flags1::FRAG != 0;
                    let last = !fragmented || h.flags1 & flags1::LAST_FRAG != 0;
                    let fragnum = if fragmented { h.fragnum } else { 0 };
                    if let Some(logon) = &self.logon {
                        let Some(trailer) = trailer.filter(|_| h.auth_proto == auth_type::WINNT)
                        else {
                            return Err(CallError::Protocol(
                                "the server answered an authenticated call without protection",
                            ));
                        };
                        // A fragment that does not verify is dropped, as
                        // if lost: the server sends it again.
                        let level = logon.auth.level;
                        if protection::unprotect(
                            &logon.session,
                            seq,
                            fragnum,
                            &mut pdu.body,
                            level,
                            &trailer.token,
                        )
                        .is_err()
                        {
                            tracing::debug!(
                                "rpc: a response fragment that does not verify dropped"
                            );
                            continue;
                        }
                    }
                    let h = &pdu.header;
                    tx.acknowledge_all();
                    state = State::ReceiveFrags;
                    if rx
                        .add(fragnum, last, h.serial, &pdu.body, MAX_RESPONSE)
                        .is_err()
                    {
                        return Err(CallError::Protocol(
                            "the server's response fragments do not fit together",
                        ));
                    }
                    if fragmented && h.flags1 & flags1::NO_FACK == 0 {
                        self.send_fack(&request, &rx).await?;
                    }
                    if rx.is_complete() {
                        self.ack_pending = Some(request);
                        return Ok(Reply {
                            stub: rx.take(),
                            little_endian: h.drep.little_endian,
                        });
                    }
                    interval = self.options.retransmit;
                }
                ptype::FACK | ptype::NOCALL => {
                    let fack = pdu.fack().ok().flatten();
                    match fack {
                        Some(fack) => {
                            self.window = fack.window_size.clamp(1, WINDOW);
                            let offered =
                                (fack.max_tsdu.min(fack.max_frag_size) as usize).min(MAX_DATAGRAM);
                            if offered >= FIRST_PDU_LENGTH {
                                self.max_pdu = offered & !7;
                            }
                            tx.on_fack(h.fragnum, &fack.selack, fack.window_size);
                        }
                        // A nocall without a body: the server holds
                        // nothing of the call; it all goes again.
                        None if h.ptype == ptype::NOCALL && state != State::ReceiveFrags => {
                            tx = Transmission::new(&stub, fragment_len, usize::from(self.window));
                            state = State::SendFrags;
                        }
                        None => {}
                    }
                    if state == State::SendFrags {
                        if tx.all_acknowledged() {
                            state = State::Dispatched;
                        } else {
                            self.send_burst(&request, &mut tx).await?;
                        }
                    }
                }
                ptype::WORKING => {
                    tx.acknowledge_all();
                    if state == State::SendFrags {
                        state = State::Dispatched;
                    }
                    interval = (interval * 2).min(MAX_INTERVAL);
                }
                ptype::FAULT | ptype::REJECT => {
                    let status = pdu
                        .status()
                        .map_err(|_| CallError::Protocol("a fault without a status"))?;
                    if h.ptype == ptype::FAULT {
                        self.ack_pending = Some(request);
                    }
                    return Err(CallError::Fault { status });
                }
                _ => {}
            }
        }
    }

    async fn send_burst(
        &mut self,
        request: &Header,
        tx: &mut Transmission,
    ) -> Result<(), CallError> {
        let fragmented = tx.is_fragmented();
        for s in tx.burst() {
            let mut header = request.clone();
            s.mark(&mut header, fragmented);
            header.serial = self.next_serial();
            self.send_fragment(header, tx.fragment(s.fragnum).to_vec())
                .await?;
        }
        Ok(())
    }

    async fn send_fack(&mut self, request: &Header, rx: &Reassembly) -> Result<(), CallError> {
        let (fragnum, fack) = rx.fack(WINDOW, MAX_DATAGRAM as u32, MAX_DATAGRAM as u32);
        let mut header = request.clone();
        header.ptype = ptype::FACK;
        header.flags1 = 0;
        header.fragnum = fragnum;
        header.serial = self.next_serial();
        let body = Pdu::fack_body(self.drep(), &fack);
        self.send(header, body).await
    }

    /// Answers a conversation callback from the server (C706 Appendix P).
    async fn answer_callback(&mut self, pdu: &Pdu, seq: u32) -> Result<(), CallError> {
        let h = &pdu.header;
        // Only an unfragmented request is a callback ([MS-RPCE] 3.2.2.5.1).
        if h.auth_proto != 0 || h.flags1 & flags1::FRAG != 0 {
            return Ok(());
        }
        // A method is told its server; this one serves nothing else.
        let server = self
            .callbacks
            .get_or_init(|| Server::new(Limits::default(), String::new()));
        let identity = ConvServer(ClientIdentity {
            cas: client_address_space(),
            activity: self.id,
            seq,
            logon: self.logon.as_ref().map(|l| Arc::clone(&l.initiator)),
        });
        let transport = Transport::Udp {
            local: self.local,
            peer: self.peer,
        };
        let association = Association::detached(Some(self.peer.ip()));
        let call = Call {
            syntax: crate::ndr::Syntax::Ndr20,
            little_endian: h.drep.little_endian,
            opnum: h.opnum,
            call_id: h.seqnum,
            object: None,
            auth_level: auth_level::NONE,
            client: None,
            transport: &transport,
            association: &association,
            server,
        };
        let mut answer = Header {
            drep: Drep::LITTLE,
            flags1: 0,
            flags2: 0,
            serial: 0,
            fragnum: 0,
            ..h.clone()
        };
        let body = match identity.dispatch(&call, h.opnum, &pdu.body) {
            Ok(stub) => {
                answer.ptype = ptype::RESPONSE;
                stub
            }
            Err(fault) => {
                answer.ptype = if fault.did_not_execute {
                    ptype::REJECT
                } else {
                    ptype::FAULT
                };
                Pdu::status_body(Drep::LITTLE, fault.status)
            }
        };
        self.send(answer, body).await
    }
}

impl Drop for Activity {
    /// The last answer is acknowledged, so the server can let it go.
    fn drop(&mut self) {
        if let Some(mut ack) = self.ack_pending.take() {
            ack.ptype = ptype::ACK;
            ack.flags1 = 0;
            ack.fragnum = 0;
            ack.serial = self.serial;
            if let Ok(datagram) = (Pdu {
                header: ack,
                body: Vec::new(),
            })
            .encode()
            {
                let _ = self.socket.try_send(&datagram);
            }
        }
    }
}

/// A send or receive error as the caller should read it.
fn unreachable_server(e: std::io::Error, peer: SocketAddr) -> CallError {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        return CallError::Io(std::io::Error::new(
            e.kind(),
            format!("nothing answers RPC over UDP at {peer} (port unreachable)"),
        ));
    }
    CallError::Io(e)
}
