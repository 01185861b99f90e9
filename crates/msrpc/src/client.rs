//! The client runtime: binds interfaces on a connection (ncacn_ip_tcp or
//! ncalrpc), negotiates transfer syntaxes, authenticates with NTLM,
//! SPNEGO or Kerberos (bind, bind_ack, rpc_auth_3, alter_context) at the
//! level asked for, fragments requests under the negotiated
//! max_xmit_frag, signs or seals them, and verifies and reassembles
//! responses. A connection may hold several security
//! contexts (alter_context with a new auth_context_id). The generated
//! `…Client` types marshal calls through it.
//!
//! Over ncadg_ip_udp the same [`Connection`] holds a connectionless
//! activity instead (`datagram.rs`): binding is local, and each call is
//! a connectionless exchange. Over ncacn_http through an RPC proxy it
//! runs over a virtual connection (`http.rs`).

mod datagram;
mod http;

pub use datagram::DatagramOptions;
pub use http::{ChannelOpener, ProxyRequest};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ndr::{NdrError, Syntax};
use crate::pdu::{self, flags, Bind, Body, ContextElem, Pdu, PduError, SyntaxId, HEADER_LEN};
use crate::security::{
    auth_level, protects_pdus, CachedTicket, Leg, SecurityContext, SecurityError,
};
use crate::server::{ndr20, ndr64};
use crate::status;

/// How much room a read is given when no fragment is partly read.
const INBOX_CHUNK: usize = 8192;

/// The auth_context_id this client gives its security context.
const AUTH_CONTEXT_ID: u32 = 1;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// (Not a source as well: the message already holds it once.)
    #[error("connection: {0}")]
    Io(std::io::Error),
    #[error("the server sent a malformed PDU: {0}")]
    Pdu(#[from] PduError),
    #[error("the server refused the bind: {} (bind_nak reason {})", pdu::nak::name(*.0), .0)]
    BindNak(u16),
    #[error("the server refused the interface (result {result}, reason {reason})")]
    Rejected { result: u16, reason: u16 },
    #[error("the call faulted: {} ({status:#010x})", status::name(*status))]
    Fault { status: u32 },
    #[error("the response's stub data is malformed: {0}")]
    Stub(NdrError),
    #[error("presentation context {0} is not bound")]
    UnknownContext(u16),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("authentication: {0}")]
    Security(#[from] SecurityError),
}

impl From<std::io::Error> for CallError {
    fn from(e: std::io::Error) -> CallError {
        CallError::Io(e)
    }
}

/// Who the client authenticates as, and at what level.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    /// [`auth_type`](crate::security::auth_type): WINNT (NTLM),
    /// GSS_NEGOTIATE (SPNEGO offering NTLM, or Kerberos with a ticket) or
    /// GSS_KERBEROS (with a ticket).
    pub auth_type: u8,
    /// [`auth_level`]: connect, packet, integrity or privacy.
    pub level: u8,
    /// The account and password NTLM logs on with.
    pub user: String,
    pub domain: String,
    pub password: String,
    /// A service ticket from the credential cache: Kerberos logs on with
    /// it instead of the password.
    pub ticket: Option<CachedTicket>,
}

/// How the client negotiates.
#[derive(Clone, Debug)]
pub struct Options {
    /// Offer NDR64 (alone) instead of NDR 2.0.
    pub ndr64: bool,
    /// The largest fragment offered (max_xmit_frag and max_recv_frag).
    pub max_frag: u16,
    /// Offer bind-time feature negotiation with this bitmask.
    pub features: Option<u64>,
    /// Join this association group.
    pub assoc_group_id: u32,
    /// Authenticate on the first bind.
    pub auth: Option<ClientAuth>,
    /// Ask for concurrent calls on the connection (PFC_CONC_MPX); see
    /// [`Connection::call_many`].
    pub multiplex: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ndr64: false,
            max_frag: 5840,
            features: None,
            assoc_group_id: 0,
            auth: None,
            multiplex: false,
        }
    }
}

/// A client security context for `auth`, and its first token.
fn new_context(auth: &ClientAuth, id: u32) -> Result<(SecurityContext, Vec<u8>), SecurityError> {
    match &auth.ticket {
        Some(ticket) => SecurityContext::kerberos_client(auth.auth_type, auth.level, id, ticket),
        None => SecurityContext::client(
            auth.auth_type,
            auth.level,
            id,
            &auth.user,
            &auth.domain,
            &auth.password,
        ),
    }
}

/// The server's answer to a bind (`alter` false) or an alter_context
/// (`alter` true), or why there is none.
fn acknowledgement(body: Body, alter: bool) -> Result<pdu::BindAck, CallError> {
    match body {
        Body::BindAck(ack) if !alter => Ok(ack),
        Body::AlterContextResp(ack) if alter => Ok(ack),
        Body::BindNak(nak) => Err(CallError::BindNak(nak.reason)),
        Body::Fault(f) => Err(CallError::Fault { status: f.status }),
        _ if alter => Err(CallError::Protocol(
            "the answer to an alter_context is not its response",
        )),
        _ => Err(CallError::Protocol(
            "the answer to a bind is not a bind_ack",
        )),
    }
}

/// One fragment of an answer.
enum Part {
    Data {
        stub: Vec<u8>,
        last: bool,
        little_endian: bool,
    },
    Fault(u32),
}

/// A reassembled response.
pub struct Reply {
    pub stub: Vec<u8>,
    pub little_endian: bool,
}

/// What a connection runs over.
enum Link {
    Stream(Box<dyn Stream>),
    Datagram(Box<datagram::Activity>),
}

pub struct Connection {
    link: Link,
    /// This end's address, over TCP.
    local_addr: Option<SocketAddr>,
    options: Options,
    bound: bool,
    max_xmit: usize,
    /// The association group the server put this connection in.
    pub assoc_group_id: u32,
    /// Features the server acknowledged in bind-time feature negotiation.
    pub features: Option<u64>,
    /// The presentation contexts the server accepted: id, interface,
    /// transfer syntax; a few at most, looked up on every call.
    contexts: Vec<(u16, SyntaxId, Syntax)>,
    next_context: u16,
    next_call_id: u32,
    security: Option<SecurityContext>,
    /// The server echoed PFC_SUPPORT_HEADER_SIGN in its bind_ack.
    header_sign: bool,
    /// Bytes read and not yet taken as a fragment.
    inbox: Vec<u8>,
    /// The buffer each fragment sent is encoded into, kept between calls.
    outbox: Vec<u8>,
    /// The first bind, whose presentation contexts an alter_context for
    /// a further security context presents again.
    first_bind: Option<Bind>,
    /// Security contexts built on this connection other than the one
    /// calls use now, by auth_context_id.
    parked: HashMap<u32, SecurityContext>,
    next_auth_context_id: u32,
}

impl Connection {
    fn new(stream: Box<dyn Stream>, options: Options) -> Connection {
        Connection::with_link(Link::Stream(stream), options)
    }

    fn with_link(link: Link, options: Options) -> Connection {
        Connection {
            link,
            local_addr: None,
            max_xmit: usize::from(options.max_frag),
            options,
            bound: false,
            assoc_group_id: 0,
            features: None,
            contexts: Vec::new(),
            next_context: 0,
            header_sign: false,
            next_call_id: 1,
            security: None,
            inbox: Vec::new(),
            outbox: Vec::new(),
            first_bind: None,
            parked: HashMap::new(),
            next_auth_context_id: AUTH_CONTEXT_ID + 1,
        }
    }

    /// ncacn_ip_tcp.
    pub async fn connect_tcp(addr: SocketAddr, options: Options) -> Result<Connection, CallError> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let local_addr = stream.local_addr().ok();
        let mut conn = Connection::new(Box::new(stream), options);
        conn.local_addr = local_addr;
        Ok(conn)
    }

    /// ncadg_ip_udp: a connectionless activity with the server at `addr`.
    /// Calls are not authenticated over it yet ([`Options::auth`] is
    /// refused).
    pub async fn connect_udp(
        addr: SocketAddr,
        options: Options,
        datagram: DatagramOptions,
    ) -> Result<Connection, CallError> {
        let activity = datagram::Activity::connect(addr, datagram, options.auth.clone()).await?;
        let local_addr = Some(activity.local_addr());
        let mut conn = Connection::with_link(Link::Datagram(Box::new(activity)), options);
        conn.local_addr = local_addr;
        conn.bound = true;
        Ok(conn)
    }

    /// ncacn_http through an RPC proxy (RPC over HTTP v2, [MS-RPCH]): a
    /// virtual connection over two streams the caller connected to the
    /// proxy (TCP, or TLS for https), its IN and OUT channels.
    pub async fn over_http_proxy<S>(
        in_stream: S,
        out_stream: S,
        request: &ProxyRequest,
        options: Options,
    ) -> Result<Connection, CallError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        http::connect(in_stream, out_stream, request, options).await
    }

    /// The same, with IN channels `in_lifetime` octets long that are
    /// recycled ([MS-RPCH] 3.2.2.5.12) over new connections from `opener`
    /// when half of one is sent.
    pub async fn over_http_proxy_recycling<S>(
        in_stream: S,
        out_stream: S,
        request: &ProxyRequest,
        options: Options,
        opener: ChannelOpener<S>,
        in_lifetime: u32,
    ) -> Result<Connection, CallError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        http::connect_recycling(
            in_stream,
            out_stream,
            request,
            options,
            Some(opener),
            in_lifetime,
        )
        .await
    }

    /// The byte stream, on a connection that has one.
    fn stream(&mut self) -> Result<&mut Box<dyn Stream>, CallError> {
        match &mut self.link {
            Link::Stream(stream) => Ok(stream),
            Link::Datagram(_) => Err(CallError::Protocol(
                "not available over ncadg_ip_udp, which has no connection",
            )),
        }
    }

    /// This end's address, on a TCP connection: the address the server
    /// knows the client by (where it would call the client back).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Any byte stream already connected to a server: a transport of the
    /// caller's own (a tunnel, a test harness, an event loop other than
    /// tokio's). The client needs only its reads and writes.
    pub fn over<S>(stream: S, options: Options) -> Connection
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Connection::new(Box::new(stream), options)
    }

    /// ncalrpc: the server's Unix socket.
    pub async fn connect_local(path: &Path, options: Options) -> Result<Connection, CallError> {
        let stream = tokio::net::UnixStream::connect(path).await?;
        Ok(Connection::new(Box::new(stream), options))
    }

    /// The transfer syntax negotiated for a presentation context.
    pub fn transfer_syntax(&self, context_id: u16) -> Result<Syntax, CallError> {
        self.contexts
            .iter()
            .find(|(id, _, _)| *id == context_id)
            .map(|(_, _, syntax)| *syntax)
            .ok_or(CallError::UnknownContext(context_id))
    }

    fn call_id(&mut self) -> u32 {
        let id = self.next_call_id;
        self.next_call_id = self.next_call_id.wrapping_add(1);
        id
    }

    /// Binds an interface (a bind on a new connection, an alter_context
    /// after) and returns its presentation context id; an interface bound
    /// already keeps its context, with no round trip.
    pub async fn bind(&mut self, interface: SyntaxId) -> Result<u16, CallError> {
        if let Some((id, _, _)) = self.contexts.iter().find(|(_, i, _)| *i == interface) {
            return Ok(*id);
        }
        let context_id = self.next_context;
        self.next_context += 1;
        if let Link::Datagram(_) = self.link {
            // Connectionless calls name their interface in every packet,
            // in NDR 2.0.
            self.contexts.push((context_id, interface, Syntax::Ndr20));
            return Ok(context_id);
        }
        let transfer = if self.options.ndr64 { ndr64() } else { ndr20() };
        let mut contexts = vec![ContextElem {
            context_id,
            abstract_syntax: interface,
            transfer_syntaxes: vec![transfer],
        }];
        if let (Some(bits), false) = (self.options.features, self.bound) {
            let mut uuid = crate::Uuid::parse("6cb71c2c-9812-4540-0000-000000000000")
                .unwrap_or(crate::Uuid::NIL);
            uuid.clock_seq_and_node = bits.to_le_bytes();
            contexts.push(ContextElem {
                context_id: self.next_context,
                abstract_syntax: interface,
                transfer_syntaxes: vec![SyntaxId::new(uuid, 1, 0)],
            });
            self.next_context += 1;
        }
        let bind_body = Bind {
            max_xmit_frag: self.options.max_frag,
            max_recv_frag: self.options.max_frag,
            assoc_group_id: self.options.assoc_group_id,
            contexts,
        };
        let call_id = self.call_id();
        let mut pfc = self.whole_pdu_flags();
        let mut auth = None;
        let body = if self.bound {
            Body::AlterContext(bind_body.clone())
        } else {
            if let Some(a) = &self.options.auth {
                let (context, token) = new_context(a, AUTH_CONTEXT_ID)?;
                if a.level >= auth_level::INTEGRITY {
                    pfc |= flags::SUPPORT_HEADER_SIGN;
                }
                auth = Some(self.trailer(&context, token));
                self.security = Some(context);
            }
            Body::Bind(bind_body.clone())
        };
        self.send(call_id, pfc, body, auth).await?;
        let reply = self.receive().await?;
        let ack = acknowledgement(reply.body, self.bound)?;
        if !self.bound {
            self.bound = true;
            self.first_bind = Some(bind_body.clone());
            self.header_sign = reply.flags & flags::SUPPORT_HEADER_SIGN != 0;
            self.assoc_group_id = ack.assoc_group_id;
            self.max_xmit = usize::from(ack.max_recv_frag.min(self.options.max_frag));
            if let Some(mut context) = self.security.take() {
                self.finish_security(&mut context, call_id, pfc, reply.auth, bind_body)
                    .await?;
                self.security = Some(context);
            }
        }
        let mut results = ack.results.iter();
        let first = results
            .next()
            .ok_or(CallError::Protocol("the bind_ack has no results"))?;
        if let Some(btfn) = results.next() {
            if btfn.result == 3 {
                self.features = Some(u64::from(btfn.reason));
            }
        }
        if first.result != 0 {
            return Err(CallError::Rejected {
                result: first.result,
                reason: first.reason,
            });
        }
        let syntax = if first.transfer_syntax == ndr64() {
            Syntax::Ndr64
        } else {
            Syntax::Ndr20
        };
        // Context ids are never reused (next_context only grows).
        self.contexts.push((context_id, interface, syntax));
        Ok(context_id)
    }

    /// The flags of an unfragmented bind or alter_context.
    fn whole_pdu_flags(&self) -> u8 {
        let mut pfc = flags::FIRST_FRAG | flags::LAST_FRAG;
        if self.options.multiplex {
            pfc |= flags::CONC_MPX;
        }
        pfc
    }

    /// Builds another security context on this bound connection: an
    /// alter_context carrying a new auth_context_id ([MS-RPCE] 3.3.1.5.2.2,
    /// several contexts per connection), then its further legs. Calls use
    /// it from then on; the earlier ones stay established for
    /// [`Connection::use_security_context`]. Returns its auth_context_id.
    pub async fn add_security_context(&mut self, auth: &ClientAuth) -> Result<u32, CallError> {
        let mut bind = self
            .first_bind
            .clone()
            .ok_or(CallError::Protocol("the connection is not bound yet"))?;
        // Only the presentation contexts the server accepted.
        bind.contexts
            .retain(|c| self.contexts.iter().any(|(id, _, _)| *id == c.context_id));
        let id = self.next_auth_context_id;
        self.next_auth_context_id += 1;
        let (mut context, token) = new_context(auth, id)?;
        let pfc = self.whole_pdu_flags();
        let call_id = self.call_id();
        let trailer = self.trailer(&context, token);
        self.send(
            call_id,
            pfc,
            Body::AlterContext(bind.clone()),
            Some(trailer),
        )
        .await?;
        let reply = self.receive().await?;
        let ack = acknowledgement(reply.body, true)?;
        if let Some(refused) = ack.results.iter().find(|r| r.result != 0) {
            return Err(CallError::Rejected {
                result: refused.result,
                reason: refused.reason,
            });
        }
        self.finish_security(&mut context, call_id, pfc, reply.auth, bind)
            .await?;
        if let Some(previous) = self.security.replace(context) {
            self.parked.insert(previous.context_id, previous);
        }
        Ok(id)
    }

    /// Makes calls use the security context with this auth_context_id
    /// (one built at the bind or by [`Connection::add_security_context`]).
    pub fn use_security_context(&mut self, auth_context_id: u32) -> Result<(), CallError> {
        if self
            .security
            .as_ref()
            .is_some_and(|c| c.context_id == auth_context_id)
        {
            return Ok(());
        }
        let chosen = self
            .parked
            .remove(&auth_context_id)
            .ok_or(CallError::Protocol("no security context has that id"))?;
        if let Some(previous) = self.security.replace(chosen) {
            self.parked.insert(previous.context_id, previous);
        }
        Ok(())
    }

    /// The legs after the bind_ack ([MS-RPCE] 3.3.1.5.2.1): a last token
    /// goes in rpc_auth_3, which is not answered; a token that expects
    /// an answer (SPNEGO's mechListMIC) goes in alter_context.
    async fn finish_security(
        &mut self,
        context: &mut SecurityContext,
        call_id: u32,
        pfc: u8,
        mut answer: Option<pdu::Auth>,
        bind: Bind,
    ) -> Result<(), CallError> {
        loop {
            let token = answer
                .take()
                .ok_or(CallError::Protocol("the server's answer carries no token"))?
                .token;
            match context.initiate(&token)? {
                Leg::Done(token) if token.is_empty() => return Ok(()),
                Leg::Done(token) => {
                    let auth = self.trailer(context, token);
                    return self.send(call_id, pfc, Body::Auth3, Some(auth)).await;
                }
                Leg::Continue(token) => {
                    let auth = self.trailer(context, token);
                    let call_id = self.call_id();
                    self.send(call_id, pfc, Body::AlterContext(bind.clone()), Some(auth))
                        .await?;
                    let reply = self.receive().await?;
                    acknowledgement(reply.body, true)?;
                    answer = reply.auth;
                }
            }
        }
    }

    /// Makes a call; fragments the request as negotiated.
    pub async fn call(
        &mut self,
        context_id: u16,
        opnum: u16,
        stub: Vec<u8>,
    ) -> Result<Reply, CallError> {
        self.call_on(context_id, opnum, None, stub).await
    }

    /// Makes a call on an object (PFC_OBJECT_UUID): a DCOM call names the
    /// interface pointer's IPID so.
    pub async fn call_on(
        &mut self,
        context_id: u16,
        opnum: u16,
        object: Option<crate::Uuid>,
        stub: Vec<u8>,
    ) -> Result<Reply, CallError> {
        if let Link::Datagram(activity) = &mut self.link {
            let interface = self
                .contexts
                .iter()
                .find(|(id, _, _)| *id == context_id)
                .map(|(_, interface, _)| *interface)
                .ok_or(CallError::UnknownContext(context_id))?;
            return activity.call(&interface, opnum, object, stub).await;
        }
        let call_id = self.send_request(context_id, opnum, object, stub).await?;
        let mut out = Vec::new();
        loop {
            let (id, part) = self.receive_part().await?;
            if id != call_id {
                return Err(CallError::Protocol("a response for another call"));
            }
            match part {
                Part::Data {
                    stub,
                    last,
                    little_endian,
                } => {
                    if last && out.is_empty() {
                        // An unfragmented answer: its stub as decoded.
                        return Ok(Reply {
                            stub,
                            little_endian,
                        });
                    }
                    out.extend_from_slice(&stub);
                    if last {
                        return Ok(Reply {
                            stub: out,
                            little_endian,
                        });
                    }
                }
                Part::Fault(status) => return Err(CallError::Fault { status }),
            }
        }
    }

    /// Several calls at once: every request is sent before any answer is
    /// read, and the answers are matched to their calls by call_id in
    /// whatever order the server sends them — on a connection bound with
    /// [`Options::multiplex`] a server may run them concurrently. The
    /// results are in the order of `calls`; a fault fails only its call.
    pub async fn call_many(
        &mut self,
        calls: Vec<(u16, u16, Vec<u8>)>,
    ) -> Result<Vec<Result<Reply, CallError>>, CallError> {
        let mut ids = Vec::with_capacity(calls.len());
        for (context_id, opnum, stub) in calls {
            ids.push(self.send_request(context_id, opnum, None, stub).await?);
        }
        let mut partial: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut done: HashMap<u32, Result<Reply, CallError>> = HashMap::new();
        while done.len() < ids.len() {
            let (id, part) = self.receive_part().await?;
            if !ids.contains(&id) || done.contains_key(&id) {
                return Err(CallError::Protocol("a response for another call"));
            }
            match part {
                Part::Data {
                    stub,
                    last,
                    little_endian,
                } => {
                    let out = partial.entry(id).or_default();
                    out.extend_from_slice(&stub);
                    if last {
                        let stub = partial.remove(&id).unwrap_or_default();
                        done.insert(
                            id,
                            Ok(Reply {
                                stub,
                                little_endian,
                            }),
                        );
                    }
                }
                Part::Fault(status) => {
                    partial.remove(&id);
                    done.insert(id, Err(CallError::Fault { status }));
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                done.remove(id)
                    .unwrap_or(Err(CallError::Protocol("a call was not answered")))
            })
            .collect())
    }

    /// Sends a request in fragments as negotiated, signed or sealed as the
    /// connection's security context says; returns its call_id.
    async fn send_request(
        &mut self,
        context_id: u16,
        opnum: u16,
        object: Option<crate::Uuid>,
        stub: Vec<u8>,
    ) -> Result<u32, CallError> {
        self.transfer_syntax(context_id)?;
        let call_id = self.call_id();
        let protected = self
            .security
            .as_ref()
            .is_some_and(|c| protects_pdus(c.level));
        // Room for the padding, sec_trailer and signature of each fragment
        // (a server's tiny max_recv_frag makes fragments small, not a panic).
        let max_frag = match &self.security {
            Some(c) if protected => self.max_xmit.saturating_sub(c.protection_overhead()),
            _ => self.max_xmit,
        };
        // The object UUID takes 16 bytes of each fragment's header.
        let max_frag = if object.is_some() {
            max_frag.saturating_sub(16)
        } else {
            max_frag
        };
        for (pfc, alloc_hint, stub) in pdu::stub_fragments(stub, max_frag) {
            let pfc = if object.is_some() {
                pfc | pdu::flags::OBJECT_UUID
            } else {
                pfc
            };
            let body = Body::Request(pdu::Request {
                alloc_hint,
                context_id,
                opnum,
                object,
                stub,
            });
            let auth = match &self.security {
                Some(c) if protected => Some(self.trailer(c, vec![0; c.token_len()])),
                _ => None,
            };
            self.send(call_id, pfc, body, auth).await?;
        }
        Ok(call_id)
    }

    /// Reads one fragment of an answer, verified (and unsealed) when the
    /// connection protects its PDUs.
    async fn receive_part(&mut self) -> Result<(u32, Part), CallError> {
        let protected = self
            .security
            .as_ref()
            .is_some_and(|c| protects_pdus(c.level));
        // The fragment is decoded (and unprotected) where it was read.
        let len = self.fill_fragment().await?;
        let part = self.take_part(len, protected);
        self.inbox.drain(..len);
        part
    }

    /// The answer fragment at the head of the inbox (`len` bytes),
    /// verified and unsealed in place.
    fn take_part(&mut self, len: usize, protected: bool) -> Result<(u32, Part), CallError> {
        let raw = &mut self.inbox[..len];
        let mut pdu = Pdu::decode(raw)?;
        if let (Some(auth), Body::Response(r)) = (&pdu.auth, &mut pdu.body) {
            let context = self
                .security
                .as_mut()
                .filter(|c| c.context_id == auth.context_id)
                .ok_or(CallError::Protocol(
                    "a signed response under another security context",
                ))?;
            let stub = context.unprotect(
                raw,
                pdu::CALL_HEADER_LEN,
                auth.pad_length,
                auth.token.len(),
                self.header_sign,
            )?;
            if context.level == auth_level::PRIVACY {
                r.stub = raw[stub].to_vec();
            }
        } else if protected && matches!(pdu.body, Body::Response(_)) {
            return Err(CallError::Protocol(
                "an unsigned response to a signed request",
            ));
        }
        let part = match pdu.body {
            Body::Response(r) => Part::Data {
                stub: r.stub,
                last: pdu.flags & flags::LAST_FRAG != 0,
                little_endian: pdu.drep[0] & 0xF0 != 0,
            },
            Body::Fault(f) => Part::Fault(f.status),
            _ => {
                return Err(CallError::Protocol(
                    "the answer to a request is not a response",
                ))
            }
        };
        Ok((pdu.call_id, part))
    }

    /// Sends raw bytes (for tests of malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), CallError> {
        self.stream()?.write_all(bytes).await?;
        Ok(())
    }

    fn trailer(&self, context: &SecurityContext, token: Vec<u8>) -> pdu::Auth {
        pdu::Auth {
            auth_type: context.auth_type,
            auth_level: context.level,
            pad_length: 0,
            context_id: context.context_id,
            token,
        }
    }

    /// Sends one fragment; a request with a signature placeholder is
    /// signed or sealed first.
    async fn send(
        &mut self,
        call_id: u32,
        pfc: u8,
        body: Body,
        auth: Option<pdu::Auth>,
    ) -> Result<(), CallError> {
        let is_request = matches!(body, Body::Request(_));
        let protect = is_request && auth.is_some();
        // The stub (what sealing encrypts) starts after the object UUID.
        let header_len = match &body {
            Body::Request(r) if r.object.is_some() => pdu::CALL_HEADER_LEN + 16,
            _ => pdu::CALL_HEADER_LEN,
        };
        let pdu = Pdu {
            rpc_vers_minor: 0,
            flags: pfc,
            drep: pdu::NDR_LITTLE_ENDIAN,
            call_id,
            body,
            auth,
        };
        let mut bytes = std::mem::take(&mut self.outbox);
        bytes.clear();
        pdu.encode_into(&mut bytes)?;
        if protect {
            if let Some(context) = self.security.as_mut() {
                context.protect(&mut bytes, header_len, self.header_sign)?;
            }
        }
        self.stream()?.write_all(&bytes).await?;
        self.outbox = bytes;
        Ok(())
    }

    /// Reads one whole fragment, decoded where it was read.
    pub async fn receive(&mut self) -> Result<Pdu, CallError> {
        let len = self.fill_fragment().await?;
        let pdu = Pdu::decode(&self.inbox[..len]);
        self.inbox.drain(..len);
        Ok(pdu?)
    }

    /// Reads until the inbox begins with one whole fragment; returns its
    /// length. Whatever the stream has is read at once (one read per
    /// fragment, not two), and what follows the fragment is kept for the
    /// next.
    async fn fill_fragment(&mut self) -> Result<usize, CallError> {
        loop {
            if self.inbox.len() >= HEADER_LEN {
                let len = pdu::frag_length(&self.inbox[..HEADER_LEN])?;
                if self.inbox.len() >= len {
                    return Ok(len);
                }
                self.inbox.reserve(len - self.inbox.len());
            } else {
                self.inbox.reserve(INBOX_CHUNK);
            }
            let Link::Stream(stream) = &mut self.link else {
                return Err(CallError::Protocol(
                    "not available over ncadg_ip_udp, which has no connection",
                ));
            };
            if stream.read_buf(&mut self.inbox).await? == 0 {
                return Err(CallError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}
