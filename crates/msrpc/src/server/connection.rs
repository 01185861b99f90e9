//! One connection's state machine (C706 12.5 CO_SERVER with [MS-RPCE]
//! 3.3.1.5 and 3.3.3.5): bind and alter_context negotiation, request
//! reassembly, dispatch, response fragmentation, faults.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::verification::{self, Command};
use super::{auth_level, Association, Call, Fault, Registered, Server, Transport};
use crate::ndr::Syntax;
use crate::pdu::{
    self, flags, Bind, BindAck, BindNak, Body, ContextResult, Pdu, PduType, SyntaxId,
    CALL_HEADER_LEN, HEADER_LEN,
};
use crate::security::{auth_type, protects_pdus, Leg, SecurityContext, SecurityError};
use crate::status;
use crate::uuid::Uuid;

/// C706's MustRecvFragSize: every implementation receives fragments of
/// this size, so no negotiation goes below it.
const MUST_RECV_FRAG_SIZE: u16 = 1432;

use crate::pdu::nak;

/// p_cont_def_result_t and p_provider_reason_t (C706 12.6.3.1).
mod result {
    pub const ACCEPTANCE: u16 = 0;
    pub const PROVIDER_REJECTION: u16 = 2;
    pub const NEGOTIATE_ACK: u16 = 3;
    pub const ABSTRACT_SYNTAX_NOT_SUPPORTED: u16 = 1;
    pub const TRANSFER_SYNTAXES_NOT_SUPPORTED: u16 = 2;
}

pub fn ndr20() -> SyntaxId {
    SyntaxId::new(
        Uuid::parse("8a885d04-1ceb-11c9-9fe8-08002b104860").unwrap_or(Uuid::NIL),
        2,
        0,
    )
}

pub fn ndr64() -> SyntaxId {
    SyntaxId::new(
        Uuid::parse("71710533-beba-4937-8319-b5dbef9ccc36").unwrap_or(Uuid::NIL),
        1,
        0,
    )
}

/// Bind-time feature negotiation ([MS-RPCE] 3.3.1.5.3): a transfer syntax
/// whose UUID starts 6cb71c2c-9812-4540 and whose last eight octets are
/// the client's feature bitmask.
fn feature_bitmask(syntax: &SyntaxId) -> Option<u64> {
    let u = &syntax.uuid;
    (u.time_low == 0x6cb7_1c2c && u.time_mid == 0x9812 && u.time_hi_and_version == 0x4540)
        .then(|| u64::from_le_bytes(u.clock_seq_and_node))
}

/// The features this server acknowledges ([MS-RPCE] 2.2.2.14): 0x1,
/// security context multiplexing, and 0x2, keep the connection on an
/// orphaned call.
const SUPPORTED_FEATURES: u64 = 0x3;

struct Context {
    registered: Registered,
    syntax: Syntax,
    /// The abstract and transfer syntaxes as negotiated, which a
    /// verification trailer's pcontext command repeats.
    abstract_syntax: SyntaxId,
    transfer_syntax: SyntaxId,
}

/// A map keyed by a context id the client chose (a presentation
/// context's u16, a security context's u32), hashed by one multiply.
/// SipHash guards a map against keys picked to collide; these maps are
/// capped by the server's limits and a multiply spreads every id, so
/// that guard would only cost each call a SipHash.
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.write_u64(u64::from(id));
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: the product's high bits depend on every bit
        // of the id; folding them down feeds the bucket index too.
        let product = (self.0 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = product ^ (product >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A request being reassembled.
struct Pending {
    call_id: u32,
    context_id: u16,
    opnum: u16,
    object: Option<Uuid>,
    drep: [u8; 4],
    stub: Vec<u8>,
    /// The security context the call came in on.
    auth_context: Option<u32>,
}

struct Connection {
    server: Arc<Server>,
    transport: Transport,
    association: Option<Arc<Association>>,
    contexts: IdMap<u16, Context>,
    /// Security contexts by auth_context_id, being built or established.
    security: IdMap<u32, SecurityContext>,
    /// A security context failed to build in rpc_auth_3: a request with
    /// no authentication information is no longer taken as the connect
    /// level's.
    security_failed: bool,
    rpc_vers_minor: u8,
    /// The largest fragment we send and the largest we accept.
    max_xmit: usize,
    max_recv: usize,
    conc_mpx: bool,
    /// PFC_SUPPORT_HEADER_SIGN was set on the bind (and echoed).
    header_sign: bool,
    last_call_id: Option<u32>,
    pending: Option<Pending>,
    /// The remaining fragments of a call already answered with a fault.
    discard_call_id: Option<u32>,
    out: Vec<u8>,
    /// Multiplexed connections: where running calls report, and which are
    /// running (an orphaned one's answer is dropped).
    finished: Option<mpsc::UnboundedSender<Finished>>,
    running: HashSet<u32>,
    orphaned: HashSet<u32>,
    /// A call that may block, on a connection served in turn: run off the
    /// task (the blocking pool) before the next fragment is read.
    deferred: Option<Ready>,
}

/// A call that passed every check, with what its method is told.
struct Ready {
    interface: Arc<dyn super::Interface>,
    syntax: Syntax,
    level: u8,
    client: Option<String>,
    pending: Pending,
}

impl Ready {
    /// Unmarshals, calls the method, marshals (once: the caller's name
    /// moves into the call).
    fn run(
        &mut self,
        transport: &Transport,
        association: &Association,
        server: &Server,
    ) -> Result<Vec<u8>, Fault> {
        let how = CallSetting {
            syntax: self.syntax,
            level: self.level,
            transport,
            association,
            server,
        };
        how.run(&*self.interface, &self.pending, self.client.take())
    }
}

/// What a method is told about its call besides its arguments.
struct CallSetting<'a> {
    syntax: Syntax,
    level: u8,
    transport: &'a Transport,
    association: &'a Association,
    server: &'a Server,
}

impl CallSetting<'_> {
    fn run(
        &self,
        interface: &dyn super::Interface,
        pending: &Pending,
        client: Option<String>,
    ) -> Result<Vec<u8>, Fault> {
        let call = Call {
            syntax: self.syntax,
            little_endian: pending.drep[0] & 0xF0 != 0,
            opnum: pending.opnum,
            call_id: pending.call_id,
            object: pending.object,
            auth_level: self.level,
            client,
            transport: self.transport,
            association: self.association,
            server: self.server,
        };
        interface.dispatch(&call, pending.opnum, &pending.stub)
    }
}

/// A call that ran on its own on a multiplexed connection.
struct Finished {
    call_id: u32,
    context_id: u16,
    auth_context: Option<u32>,
    outcome: Result<Vec<u8>, Fault>,
}

/// What to do after a PDU.
enum Next {
    Continue,
    Close,
}

pub(super) async fn serve<S>(server: Arc<Server>, mut stream: S, transport: Transport)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection {
        max_xmit: usize::from(server.limits.max_frag),
        max_recv: usize::from(u16::MAX),
        server,
        transport,
        association: None,
        contexts: IdMap::default(),
        security: IdMap::default(),
        security_failed: false,
        rpc_vers_minor: 0,
        conc_mpx: false,
        header_sign: false,
        last_call_id: None,
        pending: None,
        discard_call_id: None,
        out: Vec::new(),
        finished: None,
        running: HashSet::new(),
        orphaned: HashSet::new(),
        deferred: None,
    };
    // Calls are dispatched in turn, so reads and writes never overlap: one
    // stream, no split halves. What is read lands in one buffer, and each
    // whole fragment is handled where it lies: no copy, no buffered
    // reader between the socket and the decoder.
    let mut inbox: Vec<u8> = Vec::with_capacity(INBOX_ROOM);
    loop {
        let Some(taken) = handle_fragments(&mut conn, &mut inbox, &mut stream).await else {
            break;
        };
        inbox.drain(..taken);
        if conn.conc_mpx {
            // The client asked for concurrent calls: from here on reads
            // and running calls are waited for together.
            return serve_multiplexed(conn, stream, inbox).await;
        }
        make_room(&mut inbox);
        let idle = conn.server.limits.idle_timeout;
        match tokio::time::timeout(idle, stream.read_buf(&mut inbox)).await {
            Err(_) => {
                tracing::debug!("rpc: closing a connection idle for {idle:?}");
                break;
            }
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {}
        }
    }
    let _ = stream.shutdown().await;
}

/// How much the inbox reads at a time.
const INBOX_ROOM: usize = 16 * 1024;

/// Room in `inbox` for the next read, into its spare capacity (never
/// zeroed). A fragment is at most max_recv_frag bytes, so the inbox stays
/// bounded.
fn make_room(inbox: &mut Vec<u8>) {
    if inbox.capacity() - inbox.len() < INBOX_ROOM / 4 {
        inbox.reserve(INBOX_ROOM);
    }
}

/// Handles every whole fragment at the head of `received`, each where it
/// lies, and sends what each one queues. Returns how many bytes were
/// taken, or None when the connection closes. It stops after the
/// fragment that asks for concurrent calls on a connection still served
/// in turn, so that the caller changes how it reads first.
async fn handle_fragments<W>(
    conn: &mut Connection,
    received: &mut [u8],
    writer: &mut W,
) -> Option<usize>
where
    W: AsyncWrite + Unpin,
{
    let mut taken = 0;
    while let Some(len) = conn.whole_fragment(&received[taken..]) {
        let Ok(len) = len else {
            // The fault queued for an oversized fragment, if any.
            let _ = send_queued(conn, writer).await;
            return None;
        };
        let next = conn.process(&mut received[taken..taken + len]);
        taken += len;
        if let Some(ready) = conn.deferred.take() {
            conn.run_deferred(ready).await;
        }
        if send_queued(conn, writer).await.is_err() {
            return None;
        }
        if let Next::Close = next {
            return None;
        }
        if conn.conc_mpx && conn.finished.is_none() {
            break;
        }
    }
    Some(taken)
}

/// Sends what the connection has queued, if anything.
async fn send_queued<W>(conn: &mut Connection, writer: &mut W) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    if !conn.out.is_empty() {
        writer.write_all(&conn.out).await?;
        conn.out.clear();
    }
    Ok(())
}

/// A multiplexed connection ([MS-RPCE] 3.3.1.5.8, PFC_CONC_MPX): each
/// complete request runs on the blocking pool while further PDUs are
/// read; answers go out as calls end, each signed or sealed then, so the
/// security provider's sequence numbers follow the order on the wire.
/// `received` is what was read past the PDU that asked for it.
async fn serve_multiplexed<S>(mut conn: Connection, stream: S, mut received: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (finished, mut results) = mpsc::unbounded_channel();
    conn.finished = Some(finished);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut eof = false;
    loop {
        let Some(taken) = handle_fragments(&mut conn, &mut received, &mut writer).await else {
            break;
        };
        received.drain(..taken);
        let room = conn.running.len() < conn.server.limits.max_concurrent_calls;
        make_room(&mut received);
        tokio::select! {
            read = reader.read_buf(&mut received), if room && !eof => {
                // The client is done sending: the running calls are still
                // answered.
                if !matches!(read, Ok(n) if n > 0) {
                    eof = true;
                }
            }
            Some(done) = results.recv(), if !conn.running.is_empty() => conn.finish(done),
            _ = tokio::time::sleep(conn.server.limits.idle_timeout), if conn.running.is_empty() && !eof => {
                tracing::debug!("rpc: closing a connection idle for {:?}", conn.server.limits.idle_timeout);
                break;
            }
            else => break,
        }
        if send_queued(&mut conn, &mut writer).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

impl Connection {
    /// The length of the whole fragment `received` starts with; None
    /// while it is not all there yet. A header that cannot be one, or a
    /// fragment over max_recv_frag, closes the connection (with a fault
    /// queued for the latter).
    fn whole_fragment(&mut self, received: &[u8]) -> Option<Result<usize, Next>> {
        if received.len() < HEADER_LEN {
            return None;
        }
        let len = match pdu::frag_length(received) {
            Ok(len) => len,
            Err(e) => {
                tracing::debug!("rpc: closing a connection: {e}");
                return Some(Err(Next::Close));
            }
        };
        if len > self.max_recv {
            tracing::debug!(
                "rpc: a {len}-byte fragment exceeds max_recv_frag {}",
                self.max_recv
            );
            self.fault_raw(received, status::NCA_S_PROTO_ERROR);
            return Some(Err(Next::Close));
        }
        (received.len() >= len).then_some(Ok(len))
    }

    /// Decodes and handles one whole fragment.
    fn process(&mut self, frag: &mut [u8]) -> Next {
        self.server.stats.pkts_in.fetch_add(1, Ordering::Relaxed);
        self.server.pdu_arrived();
        match Pdu::decode(frag) {
            Ok(pdu) => self.handle(pdu, frag),
            Err(e) => {
                tracing::debug!("rpc: a malformed PDU: {e}");
                self.fault_raw(frag, status::NCA_S_PROTO_ERROR);
                Next::Close
            }
        }
    }

    /// Answers a call that ran on its own, unless it was orphaned.
    /// Runs a call that may block on the blocking pool and answers it:
    /// this connection waits (its client waits for the answer anyway),
    /// the endpoint's other connections do not.
    async fn run_deferred(&mut self, mut ready: Ready) {
        let Some(association) = self.association.clone() else {
            return;
        };
        let server = Arc::clone(&self.server);
        let transport = self.transport.clone();
        let (call_id, context_id) = (ready.pending.call_id, ready.pending.context_id);
        let ran = tokio::task::spawn_blocking(move || {
            let outcome = ready.run(&transport, &association, &server);
            (ready.pending, outcome)
        })
        .await;
        match ran {
            Ok((pending, Ok(stub))) => self.respond(
                pending.call_id,
                pending.context_id,
                stub,
                pending.auth_context,
            ),
            Ok((pending, Err(fault))) => self.fault(pending.call_id, pending.context_id, fault),
            Err(e) => {
                tracing::error!("rpc: a call ended abnormally: {e}");
                self.fault(call_id, context_id, Fault::new(status::RPC_S_CALL_FAILED));
            }
        }
    }

    fn finish(&mut self, done: Finished) {
        self.running.remove(&done.call_id);
        if self.orphaned.remove(&done.call_id) {
            return;
        }
        match done.outcome {
            Ok(stub) => self.respond(done.call_id, done.context_id, stub, done.auth_context),
            Err(fault) => self.fault(done.call_id, done.context_id, fault),
        }
    }

    fn send(&mut self, call_id: u32, pfc_flags: u8, body: Body) {
        self.send_with_auth(call_id, pfc_flags, body, None);
    }

    fn send_with_auth(&mut self, call_id: u32, pfc_flags: u8, body: Body, auth: Option<pdu::Auth>) {
        let pdu = Pdu {
            rpc_vers_minor: self.rpc_vers_minor,
            flags: pfc_flags,
            drep: pdu::NDR_LITTLE_ENDIAN,
            call_id,
            body,
            auth,
        };
        match pdu.encode_into(&mut self.out) {
            Ok(()) => {
                self.server.stats.pkts_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("rpc: could not encode a {:?}: {e}", pdu.pdu_type()),
        }
    }

    /// Sends a response fragment signed or sealed with a security context.
    fn send_protected(&mut self, call_id: u32, pfc_flags: u8, body: Body, context_id: u32) {
        let Some(context) = self.security.get(&context_id) else {
            return;
        };
        let auth = pdu::Auth {
            auth_type: context.auth_type,
            auth_level: context.level,
            pad_length: 0,
            context_id,
            token: vec![0; context.token_len()],
        };
        let start = self.out.len();
        self.send_with_auth(call_id, pfc_flags, body, Some(auth));
        let Some(context) = self.security.get_mut(&context_id) else {
            return;
        };
        if self.out.len() > start {
            if let Err(e) =
                context.protect(&mut self.out[start..], CALL_HEADER_LEN, self.header_sign)
            {
                tracing::warn!("rpc: could not protect a response: {e}");
                self.out.truncate(start);
            }
        }
    }

    fn peer(&self) -> String {
        match &self.transport {
            Transport::Tcp { peer, .. } | Transport::Udp { peer, .. } => peer.to_string(),
            Transport::Http { client, proxy, .. } => format!("{client} (through {proxy})"),
            Transport::Local { path, .. } => format!("ncalrpc:{}", path.display()),
        }
    }

    /// One leg of building a security context from the trailer of a bind,
    /// alter_context or rpc_auth_3 ([MS-RPCE] 3.3.1.5.2.1). Returns the
    /// trailer to answer with, if the provider has a token to send. A
    /// context whose leg fails is gone.
    fn security_leg(&mut self, auth: pdu::Auth) -> Result<Option<pdu::Auth>, SecurityError> {
        let id = auth.context_id;
        let mut context = match self.security.remove(&id) {
            Some(building) if !building.is_established() => {
                if building.auth_type != auth.auth_type || building.level != auth.auth_level {
                    return Err(SecurityError::Token(
                        "a leg for a security context that is not being built",
                    ));
                }
                building
            }
            // None, or the id of an established context: a client that
            // binds again with it starts it over (Impacket's helpers do, on
            // a second bind); the old one has ended, the new one must log
            // on anew.
            _ => {
                if self.security.len() >= self.server.limits.max_security_contexts {
                    return Err(SecurityError::Token(
                        "the connection's limit of security contexts",
                    ));
                }
                SecurityContext::server(
                    auth.auth_type,
                    auth.auth_level,
                    id,
                    &self.server.acceptors(),
                )?
            }
        };
        let token = match context.accept(&auth.token)? {
            Leg::Continue(token) => token,
            Leg::Done(token) => {
                if let Some(who) = context.identity() {
                    tracing::info!(
                        "rpc: {} logged on from {} with {} at level {}",
                        who,
                        self.peer(),
                        auth_type::name(auth.auth_type),
                        auth_level::name(auth.auth_level)
                    );
                }
                token
            }
        };
        self.security.insert(id, context);
        Ok((!token.is_empty()).then_some(pdu::Auth {
            auth_type: auth.auth_type,
            auth_level: auth.auth_level,
            pad_length: 0,
            context_id: id,
            token,
        }))
    }

    /// The security leg a bind or alter_context carries, if any; a
    /// failure is logged, and answered by the caller.
    fn bind_time_leg(
        &mut self,
        auth: Option<pdu::Auth>,
    ) -> Result<Option<pdu::Auth>, SecurityError> {
        let Some(auth) = auth.filter(|a| a.auth_type != auth_type::NONE) else {
            return Ok(None);
        };
        self.security_leg(auth)
            .inspect_err(|e| self.log_security_failure(e))
    }

    fn log_security_failure(&self, e: &SecurityError) {
        tracing::warn!("rpc: authentication from {} failed: {e}", self.peer());
    }

    fn fault(&mut self, call_id: u32, context_id: u16, fault: Fault) {
        tracing::debug!(
            call_id,
            status = format_args!("{:#x}", fault.status),
            "rpc: a call faults"
        );
        let mut pfc = flags::FIRST_FRAG | flags::LAST_FRAG;
        if fault.did_not_execute {
            pfc |= flags::DID_NOT_EXECUTE;
        }
        self.send(
            call_id,
            pfc,
            Body::Fault(pdu::Fault {
                alloc_hint: 0,
                context_id,
                cancel_count: 0,
                fault_flags: 0,
                status: fault.status,
                stub: Vec::new(),
            }),
        );
    }

    /// A fault for bytes that did not decode: the call_id is read from
    /// the header as it stands.
    fn fault_raw(&mut self, header: &[u8], status: u32) {
        let call_id = if header.len() >= 16 {
            let b = [header[12], header[13], header[14], header[15]];
            if header[4] & 0xF0 == 0 {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        } else {
            0
        };
        self.fault(call_id, 0, Fault::new(status));
    }

    fn bind_nak(&mut self, call_id: u32, reason: u16) {
        self.send(
            call_id,
            flags::FIRST_FRAG | flags::LAST_FRAG,
            Body::BindNak(BindNak {
                reason,
                versions: vec![(5, 0)],
                signature: None,
                extended_error: Vec::new(),
            }),
        );
    }

    fn handle(&mut self, pdu: Pdu, raw: &mut [u8]) -> Next {
        let call_id = pdu.call_id;
        let pfc = pdu.flags;
        match pdu.body {
            Body::Bind(bind) => self.bind(call_id, pfc, pdu.rpc_vers_minor, bind, pdu.auth),
            Body::AlterContext(alter) => self.alter_context(call_id, alter, pdu.auth),
            Body::Request(req) => self.request(call_id, pfc, pdu.drep, req, pdu.auth, raw),
            Body::Orphaned | Body::CoCancel => {
                // Calls run to completion once dispatched; an orphaned
                // request still being reassembled is dropped.
                if pdu.pdu_type() == PduType::Orphaned {
                    if self.pending.as_ref().is_some_and(|p| p.call_id == call_id) {
                        self.pending = None;
                        self.discard_call_id = Some(call_id);
                    } else if self.running.contains(&call_id) {
                        // Running on its own: it ends, unanswered.
                        self.orphaned.insert(call_id);
                    }
                }
                Next::Continue
            }
            Body::Auth3 => {
                let Some(auth) = pdu.auth.filter(|a| {
                    self.security
                        .get(&a.context_id)
                        .is_some_and(|c| !c.is_established())
                }) else {
                    // No security context awaits a third leg.
                    self.fault(call_id, 0, Fault::new(status::NCA_S_PROTO_ERROR));
                    return Next::Close;
                };
                // [MS-RPCE] 3.3.1.5.2.1: no answer to rpc_auth_3; when it
                // fails, the context is dropped and the first request
                // that names it gets a fault.
                if let Err(e) = self.security_leg(auth) {
                    self.log_security_failure(&e);
                    self.security_failed = true;
                }
                Next::Continue
            }
            // PDUs only a server sends.
            Body::BindAck(_)
            | Body::AlterContextResp(_)
            | Body::BindNak(_)
            | Body::Response(_)
            | Body::Fault(_)
            | Body::Shutdown => {
                self.fault(call_id, 0, Fault::new(status::NCA_S_PROTO_ERROR));
                Next::Close
            }
        }
    }

    fn bind(
        &mut self,
        call_id: u32,
        pfc: u8,
        minor: u8,
        bind: Bind,
        auth: Option<pdu::Auth>,
    ) -> Next {
        self.rpc_vers_minor = minor;
        let mut reply_flags = flags::FIRST_FRAG | flags::LAST_FRAG;
        match &self.association {
            // A second bind on a bound connection (Impacket's helpers send
            // one): taken as an alter_context that is answered with a
            // bind_ack, unless it names another association.
            Some(group) => {
                if bind.assoc_group_id != 0 && bind.assoc_group_id != group.id {
                    self.bind_nak(call_id, nak::PROTOCOL_ERROR);
                    return Next::Close;
                }
            }
            None => {
                let Some(group) = self
                    .server
                    .association(bind.assoc_group_id, &self.transport)
                else {
                    self.bind_nak(call_id, nak::NOT_SPECIFIED);
                    return Next::Close;
                };
                let ours = self.server.limits.max_frag.max(MUST_RECV_FRAG_SIZE);
                let negotiated = |theirs: u16| usize::from(theirs.clamp(MUST_RECV_FRAG_SIZE, ours));
                self.max_xmit = negotiated(bind.max_recv_frag);
                self.max_recv = negotiated(bind.max_xmit_frag);
                self.conc_mpx = pfc & flags::CONC_MPX != 0;
                self.header_sign = pfc & flags::SUPPORT_HEADER_SIGN != 0;
                reply_flags |= pfc & (flags::CONC_MPX | flags::SUPPORT_HEADER_SIGN);
                self.association = Some(group);
            }
        }
        let reply_auth = match self.bind_time_leg(auth) {
            Ok(reply) => reply,
            Err(e) => {
                // [MS-RPCE] 3.3.3.5.3: no security provider of this type;
                // 2.2.2.5: any other failure of the provider.
                let reason = match e {
                    SecurityError::UnknownType(_) => nak::AUTHENTICATION_TYPE_NOT_RECOGNIZED,
                    _ => nak::INVALID_CHECKSUM,
                };
                self.bind_nak(call_id, reason);
                return Next::Close;
            }
        };
        let Some(results) = self.negotiate(&bind) else {
            self.bind_nak(call_id, nak::LOCAL_LIMIT_EXCEEDED);
            return Next::Close;
        };
        let assoc_group_id = self.association.as_ref().map_or(0, |g| g.id);
        let secondary_address = self.secondary_address();
        self.send_with_auth(
            call_id,
            reply_flags,
            Body::BindAck(BindAck {
                max_xmit_frag: self.max_xmit as u16,
                max_recv_frag: self.max_recv as u16,
                assoc_group_id,
                secondary_address,
                results,
            }),
            reply_auth,
        );
        Next::Continue
    }

    /// The secondary address of a bind_ack: the port or socket name
    /// reached ([MS-RPCE] 3.3.1.5.5: the same as the primary).
    fn secondary_address(&self) -> Vec<u8> {
        match &self.transport {
            Transport::Tcp { local, .. }
            | Transport::Udp { local, .. }
            | Transport::Http { local, .. } => local.port().to_string().into_bytes(),
            Transport::Local { path, .. } => path
                .file_name()
                .map(|n| n.to_string_lossy().as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    fn alter_context(&mut self, call_id: u32, alter: Bind, auth: Option<pdu::Auth>) -> Next {
        let Some(group) = &self.association else {
            self.fault(call_id, 0, Fault::new(status::NCA_S_PROTO_ERROR));
            return Next::Close;
        };
        let assoc_group_id = group.id;
        let reply_auth = match self.bind_time_leg(auth) {
            Ok(reply) => reply,
            Err(e) => {
                // [MS-RPCE] 3.3.1.5.2.1: a fault answers a failed
                // alter_context; the connection and its other contexts stay.
                let status = match e {
                    SecurityError::UnknownType(_) => status::RPC_S_UNKNOWN_AUTHN_SERVICE,
                    _ => status::ERROR_ACCESS_DENIED,
                };
                self.fault(call_id, 0, Fault::new(status));
                return Next::Continue;
            }
        };
        let Some(results) = self.negotiate(&alter) else {
            self.fault(call_id, 0, Fault::new(status::NCA_S_PROTO_ERROR));
            return Next::Close;
        };
        self.send_with_auth(
            call_id,
            flags::FIRST_FRAG | flags::LAST_FRAG,
            Body::AlterContextResp(BindAck {
                max_xmit_frag: self.max_xmit as u16,
                max_recv_frag: self.max_recv as u16,
                assoc_group_id,
                secondary_address: Vec::new(),
                results,
            }),
            reply_auth,
        );
        Next::Continue
    }

    /// Presentation context negotiation ([MS-RPCE] 3.3.1.5.6): NDR64 is
    /// preferred when offered for an interface, else the first syntax the
    /// server knows; bind-time feature negotiation answered with
    /// negotiate_ack. None when the connection's context limit is reached.
    fn negotiate(&mut self, bind: &Bind) -> Option<Vec<ContextResult>> {
        let limit = self
            .server
            .limits
            .max_contexts
            .saturating_mul(self.server.interface_count());
        let ndr64 = ndr64();
        let ndr20 = ndr20();
        // Interfaces for which some element offers NDR64: their NDR 2.0
        // elements are turned down in its favour.
        let offers_ndr64: Vec<SyntaxId> = bind
            .contexts
            .iter()
            .filter(|c| c.transfer_syntaxes.contains(&ndr64))
            .map(|c| c.abstract_syntax)
            .collect();
        let rejected = |reason| ContextResult {
            result: result::PROVIDER_REJECTION,
            reason,
            transfer_syntax: SyntaxId::new(Uuid::NIL, 0, 0),
        };
        let mut results = Vec::with_capacity(bind.contexts.len());
        for elem in &bind.contexts {
            if let Some(bits) = elem.transfer_syntaxes.iter().find_map(feature_bitmask) {
                results.push(ContextResult {
                    result: result::NEGOTIATE_ACK,
                    reason: (bits & SUPPORTED_FEATURES) as u16,
                    transfer_syntax: SyntaxId::new(Uuid::NIL, 0, 0),
                });
                continue;
            }
            let Some(registered) = self.server.find(&elem.abstract_syntax) else {
                results.push(rejected(result::ABSTRACT_SYNTAX_NOT_SUPPORTED));
                continue;
            };
            let choice = if elem.transfer_syntaxes.contains(&ndr64) {
                Some((ndr64, Syntax::Ndr64))
            } else if elem.transfer_syntaxes.contains(&ndr20)
                && !offers_ndr64.contains(&elem.abstract_syntax)
            {
                Some((ndr20, Syntax::Ndr20))
            } else {
                None
            };
            let Some((transfer_syntax, syntax)) = choice else {
                results.push(rejected(result::TRANSFER_SYNTAXES_NOT_SUPPORTED));
                continue;
            };
            if !self.contexts.contains_key(&elem.context_id) && self.contexts.len() >= limit {
                return None;
            }
            // A context id already negotiated keeps its first meaning
            // unless it names the same interface (C706 12.6.3.1).
            match self.contexts.get(&elem.context_id) {
                Some(existing)
                    if existing.registered.interface.syntax().uuid
                        != registered.interface.syntax().uuid =>
                {
                    results.push(rejected(result::ABSTRACT_SYNTAX_NOT_SUPPORTED));
                    continue;
                }
                _ => {}
            }
            self.contexts.insert(
                elem.context_id,
                Context {
                    registered,
                    syntax,
                    abstract_syntax: elem.abstract_syntax,
                    transfer_syntax,
                },
            );
            results.push(ContextResult {
                result: result::ACCEPTANCE,
                reason: 0,
                transfer_syntax,
            });
        }
        Some(results)
    }

    fn request(
        &mut self,
        call_id: u32,
        pfc: u8,
        drep: [u8; 4],
        mut req: pdu::Request,
        auth: Option<pdu::Auth>,
        raw: &mut [u8],
    ) -> Next {
        if self.association.is_none() {
            self.fault(
                call_id,
                req.context_id,
                Fault::new(status::NCA_S_PROTO_ERROR),
            );
            return Next::Close;
        }
        // Every fragment is verified as it arrives, so that the security
        // provider's sequence numbers stay in step.
        let auth_context = match self.verify_request(&mut req, auth, raw) {
            Ok(id) => id,
            Err((fault, next)) => {
                self.fault(call_id, req.context_id, fault);
                return next;
            }
        };
        if pfc & flags::FIRST_FRAG != 0 {
            if self.pending.is_some() {
                // The fragments of one request are sent together, even on
                // a multiplexed connection ([MS-RPCE] 3.3.1.5.8).
                self.pending = None;
                self.fault(
                    call_id,
                    req.context_id,
                    Fault::new(status::NCA_S_PROTO_ERROR),
                );
                return Next::Close;
            }
            // [MS-RPCE] 3.3.3.5.2: call_ids increase.
            if self.last_call_id.is_some_and(|last| call_id <= last) {
                self.fault(
                    call_id,
                    req.context_id,
                    Fault::new(status::NCA_S_PROTO_ERROR),
                );
                return Next::Continue;
            }
            self.last_call_id = Some(call_id);
            self.discard_call_id = None;
            self.pending = Some(Pending {
                call_id,
                context_id: req.context_id,
                opnum: req.opnum,
                object: req.object,
                drep,
                stub: Vec::new(),
                auth_context,
            });
        } else {
            match &self.pending {
                Some(p) if p.call_id == call_id => {}
                Some(_) => {
                    self.pending = None;
                    self.fault(
                        call_id,
                        req.context_id,
                        Fault::new(status::NCA_S_PROTO_ERROR),
                    );
                    return Next::Close;
                }
                None => {
                    // [MS-RPCE] 3.3.3.5.6: a late fragment of a recent call
                    // is dropped; an older one is a protocol error.
                    let last = self.last_call_id.unwrap_or(0);
                    if self.discard_call_id == Some(call_id)
                        || (call_id <= last && last - call_id < 150)
                    {
                        return Next::Continue;
                    }
                    self.fault(
                        call_id,
                        req.context_id,
                        Fault::new(status::NCA_S_PROTO_ERROR),
                    );
                    return Next::Close;
                }
            }
        }
        let Some(pending) = self.pending.as_mut() else {
            return Next::Continue;
        };
        if pending.auth_context != auth_context {
            // All fragments of a call use one security context.
            self.pending = None;
            self.fault(
                call_id,
                req.context_id,
                Fault::new(status::NCA_S_PROTO_ERROR),
            );
            return Next::Close;
        }
        if pending.stub.len() + req.stub.len() > self.server.limits.max_input {
            // [MS-RPCE] 3.3.3.5.4, answered at once (3.3.3.5.8).
            let context_id = pending.context_id;
            self.pending = None;
            self.discard_call_id = Some(call_id);
            self.fault(call_id, context_id, Fault::new(status::ERROR_ACCESS_DENIED));
            return Next::Continue;
        }
        if pending.stub.is_empty() {
            // The first fragment's stub is taken as it is: a request in one
            // fragment is never copied.
            pending.stub = req.stub;
        } else {
            pending.stub.extend_from_slice(&req.stub);
        }
        if pfc & flags::LAST_FRAG == 0 {
            return Next::Continue;
        }
        let Some(call) = self.pending.take() else {
            return Next::Continue;
        };
        self.dispatch(call);
        Next::Continue
    }

    /// Checks a request fragment's authentication ([MS-RPCE]
    /// 3.3.1.5.2.2): the security context it names, its level, and at
    /// the integrity and privacy levels its signature, decrypting the
    /// stub data in place when sealed. Returns the context, or the fault
    /// to answer with and whether the connection goes on.
    fn verify_request(
        &mut self,
        req: &mut pdu::Request,
        auth: Option<pdu::Auth>,
        raw: &mut [u8],
    ) -> Result<Option<u32>, (Fault, Next)> {
        let denied = || {
            (
                Fault::not_executed(status::ERROR_ACCESS_DENIED),
                Next::Continue,
            )
        };
        let Some(auth) = auth else {
            // 3.3.1.5.4: with one security context, at the connect level,
            // requests may come without authentication information.
            let mut contexts = self.security.values();
            return match (contexts.next(), contexts.next()) {
                (None, _) if !self.security_failed => Ok(None),
                (Some(only), None)
                    if only.is_established() && only.level == auth_level::CONNECT =>
                {
                    Ok(Some(only.context_id))
                }
                _ => Err(denied()),
            };
        };
        let Some(context) = self
            .security
            .get_mut(&auth.context_id)
            .filter(|c| c.is_established())
        else {
            tracing::debug!(
                "rpc: a request from {} names no established security context",
                self.peer()
            );
            return Err(denied());
        };
        if context.auth_type != auth.auth_type {
            return Err(denied());
        }
        if context.level != auth.auth_level {
            // A client may raise an established context to packet privacy
            // (Impacket's wmiquery.py and wmiexec.py bind at integrity and
            // set privacy after NTLMLogin, on every interface of the
            // connection; Windows takes it): the context is sealed from
            // then on. Lowering a level is refused.
            let raise = auth.auth_level == auth_level::PRIVACY && protects_pdus(context.level);
            if !raise {
                return Err(denied());
            }
            tracing::debug!(
                context = auth.context_id,
                "rpc: a security context raised to packet privacy"
            );
            context.level = auth.auth_level;
        }
        if protects_pdus(context.level) {
            let body_start = CALL_HEADER_LEN + if req.object.is_some() { 16 } else { 0 };
            let sealed = context.level == auth_level::PRIVACY;
            let checked = context.unprotect(
                raw,
                body_start,
                auth.pad_length,
                auth.token.len(),
                self.header_sign,
            );
            match checked {
                // Signed only: the decoded stub data is the plain text.
                Ok(stub) if sealed => req.stub = raw[stub].to_vec(),
                Ok(_) => {}
                Err(e) => {
                    // The sequence numbers can no longer be trusted: fault
                    // and close ([MS-RPCE] 3.3.1.5.2.1, error on the server).
                    tracing::warn!(
                        "rpc: a request from {} failed verification: {e}",
                        self.peer()
                    );
                    return Err((Fault::new(status::RPC_S_SEC_PKG_ERROR), Next::Close));
                }
            }
        }
        Ok(Some(auth.context_id))
    }

    /// Checks a verification trailer's commands against the request and
    /// its connection ([MS-RPCE] 2.2.2.13.2 to .4).
    fn trailer_matches(&self, commands: &[Command], pending: &Pending, context: &Context) -> bool {
        commands.iter().all(|c| match c {
            Command::Bitmask(bits) => bits & 1 == 0 || self.header_sign,
            Command::PContext {
                interface,
                transfer,
            } => *interface == context.abstract_syntax && *transfer == context.transfer_syntax,
            Command::Header2 {
                ptype,
                drep,
                call_id,
                context_id,
                opnum,
            } => {
                *ptype == PduType::Request as u8
                    && *drep == pending.drep
                    && *call_id == pending.call_id
                    && *context_id == pending.context_id
                    && *opnum == pending.opnum
            }
            Command::UnknownMustProcess(_) => false,
        })
    }

    fn dispatch(&mut self, mut pending: Pending) {
        self.server.stats.calls_in.fetch_add(1, Ordering::Relaxed);
        let Some(context) = self.contexts.get(&pending.context_id) else {
            self.fault(
                pending.call_id,
                pending.context_id,
                Fault::not_executed(status::NCA_S_UNK_IF),
            );
            return;
        };
        if let Some((at, commands)) = verification::find(&pending.stub) {
            if !self.trailer_matches(&commands, &pending, context) {
                tracing::warn!(
                    "rpc: a request from {} has a verification trailer that does not match it",
                    self.peer()
                );
                self.fault(
                    pending.call_id,
                    pending.context_id,
                    Fault::not_executed(status::ERROR_ACCESS_DENIED),
                );
                return;
            }
            pending.stub.truncate(at);
        }
        // A call on an object goes to the object's interface.
        let routed = pending
            .object
            .and_then(|o| self.server.object_interface(&o, &context.abstract_syntax));
        let registered = routed.as_ref().unwrap_or(&context.registered);
        let security = pending.auth_context.and_then(|id| self.security.get(&id));
        let level = security.map_or(auth_level::NONE, |s| s.level);
        let client = security.and_then(|s| s.identity()).map(|i| i.user.clone());
        if level < registered.min_auth_level {
            self.fault(
                pending.call_id,
                pending.context_id,
                Fault::not_executed(status::ERROR_ACCESS_DENIED),
            );
            return;
        }
        let Some(association) = self.association.as_ref() else {
            return;
        };
        if self.finished.is_none() && registered.interface.may_block(pending.opnum) {
            // In turn, but off this task: handle_fragments runs it.
            self.deferred = Some(Ready {
                interface: Arc::clone(&registered.interface),
                syntax: context.syntax,
                level,
                client,
                pending,
            });
            return;
        }
        let Some(finished) = self.finished.clone() else {
            // In turn, on this task: nothing is shared, nothing cloned.
            let how = CallSetting {
                syntax: context.syntax,
                level,
                transport: &self.transport,
                association,
                server: &self.server,
            };
            let outcome = how.run(&*registered.interface, &pending, client);
            match outcome {
                Ok(stub) => self.respond(
                    pending.call_id,
                    pending.context_id,
                    stub,
                    pending.auth_context,
                ),
                Err(fault) => self.fault(pending.call_id, pending.context_id, fault),
            }
            return;
        };
        // Multiplexed: the call runs on the blocking pool and reports back.
        let association = Arc::clone(association);
        let mut ready = Ready {
            interface: Arc::clone(&registered.interface),
            syntax: context.syntax,
            level,
            client,
            pending,
        };
        let server = Arc::clone(&self.server);
        let transport = self.transport.clone();
        self.running.insert(ready.pending.call_id);
        tokio::task::spawn_blocking(move || {
            let outcome = ready.run(&transport, &association, &server);
            // The connection may have closed meanwhile.
            let _ = finished.send(Finished {
                call_id: ready.pending.call_id,
                context_id: ready.pending.context_id,
                auth_context: ready.pending.auth_context,
                outcome,
            });
        });
    }

    /// Sends a response in fragments of at most max_xmit_frag bytes,
    /// alloc_hint counting the stub data left ([MS-RPCE] 2.2.2.6), each
    /// fragment signed or sealed as the request was.
    fn respond(&mut self, call_id: u32, context_id: u16, stub: Vec<u8>, auth: Option<u32>) {
        let protect_with = auth.filter(|id| {
            self.security
                .get(id)
                .is_some_and(|c| protects_pdus(c.level))
        });
        let max_frag = match protect_with.and_then(|id| self.security.get(&id)) {
            Some(context) => self.max_xmit - context.protection_overhead(),
            None => self.max_xmit,
        };
        for (pfc, alloc_hint, stub) in pdu::stub_fragments(stub, max_frag) {
            let body = Body::Response(pdu::Response {
                alloc_hint,
                context_id,
                cancel_count: 0,
                stub,
            });
            match protect_with {
                Some(id) => self.send_protected(call_id, pfc, body, id),
                None => self.send(call_id, pfc, body),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Ids a client could pick to share bucket bits (the same low bits,
    /// or the same high bits) still spread over the low bits hashbrown
    /// indexes buckets by and the top seven it tags them with.
    #[test]
    fn context_ids_spread_over_buckets_and_tags() {
        let hasher = BuildHasherDefault::<IdHasher>::default();
        for ids in [
            (0..256u16).map(|i| i << 8).collect::<Vec<_>>(),
            (0..256u16).collect(),
            (0..256u16).map(|i| i << 4 | 7).collect(),
        ] {
            let hashes: Vec<u64> = ids.iter().map(|id| hasher.hash_one(id)).collect();
            let buckets: HashSet<u64> = hashes.iter().map(|h| h & 0xFF).collect();
            let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            assert!(buckets.len() > 128, "{} of 256 buckets used", buckets.len());
            assert!(tags.len() > 64, "{} of 128 tags used", tags.len());
        }
    }
}
