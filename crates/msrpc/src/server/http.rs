//! ncacn_http: the server role of RPC over HTTP ([MS-RPCH] 3.1.3 and
//! 3.2.5). Each TCP connection (from an RPC proxy, or a client speaking
//! v1 directly) first gets the legacy server response `ncacn_http/1.0`.
//! Then:
//!
//! - RPC over HTTP v1: the peer sends connection-oriented PDUs at once;
//!   the connection is served as an ncacn_ip_tcp one is.
//! - v2: the first PDU is CONN/A2 (an outbound proxy's OUT channel) or
//!   CONN/B2 (an inbound proxy's IN channel). The two halves of a virtual
//!   connection are paired by its cookie; the server answers CONN/C1 and
//!   CONN/B3, then serves the connection-oriented state machine over the
//!   pair: requests from the IN channel, responses out on the OUT channel
//!   within the outbound proxy's receive window (its FlowControlAcks open
//!   it again), the IN channel's traffic acknowledged to the inbound
//!   proxy, and RTS PDUs with a destination forwarded (3.2.1.5.2).
//!
//! Channel recycling by the R1 sequences (the proxies here keep no table
//! of virtual connections, so R2 does not arise):
//!
//! - IN (3.2.5.5.5–7): a successor IN channel opens with IN_R1/A2 naming
//!   the virtual connection and its predecessor; the server tells the
//!   client (IN_R1/A3 on the OUT channel), and when IN_R1/A6 and IN_R1/B1
//!   come on the predecessor it switches to the successor (IN_R1/B2).
//! - OUT (3.2.5.5.9–10, 3.2.5.5.15): once half the OUT channel's lifetime
//!   is sent the server asks the client for a successor (OUT_R1/A1); the
//!   successor opens with OUT_R1/A4, the server answers OUT_R1/A5 on the
//!   predecessor, and when the client's OUT_R1/A8 comes on the IN channel
//!   it switches and sends OUT_R1/A9 on the predecessor.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A channel's byte stream: a TCP connection from a proxy, or one handed
/// over in memory by a proxy in the same process.
pub(crate) trait Channel: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Channel for T {}

use super::{Server, Transport};
use crate::rts::{
    self, destination, Command, Cookie, PduStream, ReceiveWindow, Rts, SendWindow, PTYPE_RTS,
};

/// The legacy server response (2.1.2.2.1).
pub const LEGACY_RESPONSE: &[u8] = b"ncacn_http/1.0";
/// The server's receive window for a virtual IN channel.
const RECEIVE_WINDOW: u32 = 256 * 1024;
/// How long one half of a virtual connection waits for the other
/// (3.2.5.2.1: the connection setup timer, 15 minutes).
const SETUP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Halves waiting at once; more are turned away.
const MAX_PENDING: usize = 1024;
/// How long the first PDU of a connection may take to come.
const FIRST_PDU_TIMEOUT: Duration = Duration::from_secs(60);

/// One half of a virtual connection, waiting for the other.
pub(super) struct Half {
    stream: Box<dyn Channel>,
    /// What its CONN/A2 or CONN/B2 said.
    opened: Opened,
    since: Instant,
}

/// The opening PDU of a channel from a proxy.
#[derive(Clone, Debug)]
enum Opened {
    /// CONN/A2: the outbound proxy's OUT channel.
    Out {
        channel: Cookie,
        proxy_window: u32,
        lifetime: u32,
    },
    /// CONN/B2: the inbound proxy's IN channel.
    In {
        channel: Cookie,
        proxy_window: u32,
        connection_timeout: u32,
        client: IpAddr,
    },
}

/// Waiting halves by virtual connection cookie.
pub(super) type Pending = std::sync::Mutex<HashMap<Cookie, Half>>;

/// A stream whose first octets were already read: they are read again.
struct Rewound<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A successor channel on its way to its virtual connection.
pub(super) struct Successor {
    stream: Box<dyn Channel>,
    /// An OUT channel (OUT_R1/A4), or an IN channel (IN_R1/A2).
    out: bool,
    predecessor: Cookie,
    channel: Cookie,
    proxy_window: u32,
    connection_timeout: u32,
    /// An OUT channel's lifetime.
    lifetime: u32,
}

/// The virtual connections being served, by cookie: where a successor
/// channel goes.
pub(super) type Live =
    std::sync::Mutex<HashMap<Cookie, tokio::sync::mpsc::UnboundedSender<Successor>>>;

/// Serves one accepted connection.
pub(super) async fn accept(
    server: Arc<Server>,
    mut stream: Box<dyn Channel>,
    local: SocketAddr,
    peer: SocketAddr,
) {
    if stream.write_all(LEGACY_RESPONSE).await.is_err() {
        return;
    }
    // Enough of the first PDU to tell v1 from v2.
    let mut first = Vec::new();
    let read = tokio::time::timeout(FIRST_PDU_TIMEOUT, async {
        loop {
            if let Some((ptype, len)) = rts::peek(&first) {
                if ptype != PTYPE_RTS || first.len() >= len {
                    return Ok::<_, std::io::Error>(Some(ptype));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            first.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let ptype = match read {
        Ok(Ok(Some(ptype))) => ptype,
        _ => return,
    };
    if ptype != PTYPE_RTS {
        // v1: plain connection-oriented RPC after the legacy response.
        let transport = Transport::Tcp { local, peer };
        let stream = Rewound {
            prefix: first,
            at: 0,
            inner: stream,
        };
        server.serve_stream(stream, transport).await;
        return;
    }
    let Some((_, len)) = rts::peek(&first) else {
        return;
    };
    let rest = first.split_off(len);
    if let Some((vc, out, predecessor, channel, proxy_window, connection_timeout, lifetime)) =
        Rts::decode(&first)
            .ok()
            .as_ref()
            .and_then(successor_opening)
    {
        let successor = Successor {
            stream,
            out,
            predecessor,
            channel,
            proxy_window,
            connection_timeout,
            lifetime,
        };
        let live = server.http_live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(&vc) {
            // Nothing may follow the opening before the server answers.
            Some(_) if !rest.is_empty() => tracing::debug!(
                "rpc: ncacn_http from {peer}: bytes after a successor channel's opening"
            ),
            Some(to) => {
                let _ = to.send(successor);
            }
            None => tracing::debug!(
                "rpc: ncacn_http from {peer}: a successor channel for no connection"
            ),
        }
        return;
    }
    let (vc, opened) = match Rts::decode(&first).map(|r| opening(&r)) {
        Ok(Some(found)) => found,
        other => {
            tracing::debug!("rpc: ncacn_http from {peer} does not open a channel: {other:?}");
            return;
        }
    };
    if !rest.is_empty() {
        // Nothing may follow the opening PDU before the server answers.
        return;
    }
    let other = {
        let mut pending = server
            .http_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, h| h.since.elapsed() < SETUP_TIMEOUT);
        match pending.remove(&vc) {
            Some(other) => other,
            None => {
                if pending.len() < MAX_PENDING {
                    pending.insert(
                        vc,
                        Half {
                            stream,
                            opened,
                            since: Instant::now(),
                        },
                    );
                }
                return;
            }
        }
    };
    let (inbound, outbound) = match (opened, other.opened) {
        (i @ Opened::In { .. }, o @ Opened::Out { .. }) => ((stream, i), (other.stream, o)),
        (o @ Opened::Out { .. }, i @ Opened::In { .. }) => ((other.stream, i), (stream, o)),
        _ => {
            tracing::debug!("rpc: two ncacn_http channels of one kind for one virtual connection");
            return;
        }
    };
    virtual_connection(server, local, peer, vc, inbound, outbound).await;
}

/// A successor channel's opening: IN_R1/A2 (2.2.4.11) or OUT_R1/A4
/// (2.2.4.26). The virtual connection, whether it is an OUT channel, the
/// predecessor and successor, the proxy's window and time-out, and an
/// OUT channel's lifetime.
type SuccessorOpening = (Cookie, bool, Cookie, Cookie, u32, u32, u32);

fn successor_opening(rts: &Rts) -> Option<SuccessorOpening> {
    use Command::*;
    const RECYCLE_IN: u16 = rts::flags::IN_CHANNEL | rts::flags::RECYCLE_CHANNEL;
    const RECYCLE_OUT: u16 = rts::flags::OUT_CHANNEL | rts::flags::RECYCLE_CHANNEL;
    match (rts.flags, rts.commands.as_slice()) {
        (
            RECYCLE_IN,
            [Version(_), Cookie(vc), Cookie(predecessor), Cookie(successor), ReceiveWindowSize(w), ConnectionTimeout(t)],
        ) => Some((*vc, false, *predecessor, *successor, *w, *t, 0)),
        (
            RECYCLE_OUT,
            [Version(_), Cookie(vc), Cookie(predecessor), Cookie(successor), ChannelLifetime(l), ReceiveWindowSize(w), ConnectionTimeout(t)],
        ) => Some((*vc, true, *predecessor, *successor, *w, *t, *l)),
        _ => None,
    }
}

/// The virtual connection cookie and channel a CONN/A2 or CONN/B2 opens.
fn opening(rts: &Rts) -> Option<(Cookie, Opened)> {
    use Command::*;
    match (rts.flags, rts.commands.as_slice()) {
        (
            rts::flags::OUT_CHANNEL,
            [Version(_), Cookie(vc), Cookie(channel), ChannelLifetime(l), ReceiveWindowSize(w)],
        ) => Some((
            *vc,
            Opened::Out {
                channel: *channel,
                proxy_window: *w,
                lifetime: *l,
            },
        )),
        (
            rts::flags::IN_CHANNEL,
            [Version(_), Cookie(vc), Cookie(channel), ReceiveWindowSize(w), ConnectionTimeout(t), AssociationGroupId(_), ClientAddress(client)],
        ) => Some((
            *vc,
            Opened::In {
                channel: *channel,
                proxy_window: *w,
                connection_timeout: *t,
                client: *client,
            },
        )),
        _ => None,
    }
}

/// Serves a paired virtual connection until either channel closes.
async fn virtual_connection(
    server: Arc<Server>,
    local: SocketAddr,
    proxy: SocketAddr,
    vc: Cookie,
    (mut in_stream, in_opened): (Box<dyn Channel>, Opened),
    (mut out_stream, out_opened): (Box<dyn Channel>, Opened),
) {
    let (
        Opened::In {
            channel: in_channel,
            proxy_window: in_proxy_window,
            connection_timeout,
            client,
        },
        Opened::Out {
            channel: out_channel,
            proxy_window: out_window,
            lifetime: out_lifetime,
        },
    ) = (in_opened, out_opened)
    else {
        return;
    };
    // CONN/C1 to the outbound proxy, CONN/B3 to the inbound proxy.
    let c1 = Rts::new(
        rts::flags::NONE,
        vec![
            Command::Version(1),
            Command::ReceiveWindowSize(in_proxy_window),
            Command::ConnectionTimeout(connection_timeout),
        ],
    );
    let b3 = Rts::new(
        rts::flags::NONE,
        vec![
            Command::ReceiveWindowSize(RECEIVE_WINDOW),
            Command::Version(1),
        ],
    );
    if out_stream.write_all(&c1.encode()).await.is_err()
        || in_stream.write_all(&b3.encode()).await.is_err()
    {
        return;
    }
    let (pipe, machine) = tokio::io::duplex(64 * 1024);
    let transport = Transport::Http {
        local,
        proxy,
        client,
    };
    let served = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.serve_stream(machine, transport).await })
    };
    let bridge = Bridge {
        in_channel,
        out_channel,
        out_lifetime,
    };
    // Where its successor channels come.
    let (successors_tx, successors) = tokio::sync::mpsc::unbounded_channel();
    server
        .http_live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(vc, successors_tx);
    let outcome = bridge
        .run(in_stream, out_stream, out_window, pipe, successors)
        .await;
    server
        .http_live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&vc);
    if let Err(e) = outcome {
        tracing::debug!("rpc: ncacn_http virtual connection from {client} ended: {e}");
    }
    served.abort();
}

/// The flow control of a virtual connection at the server.
struct Bridge {
    in_channel: Cookie,
    out_channel: Cookie,
    /// The OUT channel's lifetime, from its CONN/A2 or OUT_R1/A4.
    out_lifetime: u32,
}

/// Where the OUT channel's recycling is (3.2.5.5.9–10).
enum OutRecycling {
    Opened,
    /// OUT_R1/A1 sent: waiting for the successor's OUT_R1/A4.
    A4Wait,
    /// OUT_R1/A5 sent: waiting for the client's OUT_R1/A8.
    A8Wait(Successor),
}

impl Bridge {
    async fn run(
        mut self,
        in_stream: Box<dyn Channel>,
        out_stream: Box<dyn Channel>,
        out_window: u32,
        pipe: tokio::io::DuplexStream,
        mut successors: tokio::sync::mpsc::UnboundedReceiver<Successor>,
    ) -> std::io::Result<()> {
        let (mut in_read, mut in_write) = tokio::io::split(in_stream);
        // A successor IN channel announced to the client, and whether the
        // predecessor has said it is done (IN_R1/A6).
        let mut successor: Option<Successor> = None;
        let mut a6_seen = false;
        let mut out_recycling = OutRecycling::Opened;
        // Octets sent on the OUT channel.
        let mut out_sent: u64 = 0;
        let (mut out_read, mut out_write) = tokio::io::split(out_stream);
        let (mut pipe_read, mut pipe_write) = tokio::io::split(pipe);
        let (mut from_in, mut from_out, mut from_machine) = (
            PduStream::default(),
            PduStream::default(),
            PduStream::default(),
        );
        // The IN channel's PDUs go on to the state machine at once: the
        // window is whole again as soon as they arrive.
        let mut receiving = ReceiveWindow::new(RECEIVE_WINDOW);
        let mut sending = SendWindow::new(out_window);
        loop {
            tokio::select! {
                arrived = successors.recv(), if successor.is_none() => {
                    let Some(next) = arrived else { continue };
                    if next.out {
                        // OUT_R1/A4: OUT_R1/A5 to the client on the
                        // predecessor, then wait for its OUT_R1/A8.
                        if next.predecessor != self.out_channel
                            || !matches!(out_recycling, OutRecycling::A4Wait)
                        {
                            continue;
                        }
                        let a5 = Rts::new(
                            rts::flags::OUT_CHANNEL,
                            vec![
                                Command::Destination(destination::CLIENT),
                                Command::Version(1),
                                Command::ConnectionTimeout(next.connection_timeout),
                            ],
                        );
                        out_write.write_all(&a5.encode()).await?;
                        out_recycling = OutRecycling::A8Wait(next);
                        continue;
                    }
                    if next.predecessor != self.in_channel {
                        // 3.2.5.5.5: a protocol error; the successor goes.
                        continue;
                    }
                    // IN_R1/A3 to the client, through the outbound proxy.
                    let a3 = Rts::new(
                        rts::flags::NONE,
                        vec![
                            Command::Destination(destination::CLIENT),
                            Command::Version(1),
                            Command::ReceiveWindowSize(next.proxy_window),
                            Command::ConnectionTimeout(next.connection_timeout),
                        ],
                    );
                    out_write.write_all(&a3.encode()).await?;
                    successor = Some(next);
                    a6_seen = false;
                }
                pdu = from_in.read(&mut in_read) => {
                    let Some(pdu) = pdu? else { return Ok(()) };
                    if pdu[2] == PTYPE_RTS {
                        let rts = Rts::decode(&pdu).map_err(invalid)?;
                        tracing::trace!(?rts, "ncacn_http: RTS on the IN channel");
                        // OUT_R1/A8 from the client (3.2.5.5.10): the
                        // successor OUT channel becomes the default one,
                        // OUT_R1/A9 ends the predecessor.
                        let out_successor = match &out_recycling {
                            OutRecycling::A8Wait(next) => Some(next.channel),
                            _ => None,
                        };
                        if let (rts::flags::OUT_CHANNEL, [Command::Destination(destination::SERVER), Command::Cookie(c)]) =
                            (rts.flags, rts.commands.as_slice())
                        {
                            if out_successor == Some(*c) {
                                let OutRecycling::A8Wait(next) =
                                    std::mem::replace(&mut out_recycling, OutRecycling::Opened)
                                else {
                                    continue;
                                };
                                let a9 = Rts::new(rts::flags::NONE, vec![Command::Ance]);
                                out_write.write_all(&a9.encode()).await?;
                                let _ = out_write.shutdown().await;
                                (out_read, out_write) = tokio::io::split(next.stream);
                                from_out = PduStream::default();
                                sending.renew(next.proxy_window);
                                self.out_channel = next.channel;
                                self.out_lifetime = next.lifetime;
                                out_sent = 0;
                                continue;
                            }
                        }
                        let announced = successor.as_ref().map(|n| n.channel);
                        let (a6, b1) = match (rts.flags, rts.commands.as_slice()) {
                            (rts::flags::NONE, [Command::Cookie(c)]) => (announced == Some(*c), false),
                            (rts::flags::NONE, [Command::Empty]) => (false, announced.is_some() && a6_seen),
                            _ => (false, false),
                        };
                        match (a6, b1) {
                            // IN_R1/A6: the predecessor proxy is done.
                            (true, _) => {
                                a6_seen = true;
                                continue;
                            }
                            // IN_R1/B1: switch to the successor, IN_R1/B2.
                            (_, true) => {
                                let Some(next) = successor.take() else { continue };
                                let (read, mut write) = tokio::io::split(next.stream);
                                let b2 = Rts::new(
                                    rts::flags::NONE,
                                    vec![Command::ReceiveWindowSize(RECEIVE_WINDOW)],
                                );
                                write.write_all(&b2.encode()).await?;
                                (in_read, in_write) = (read, write);
                                from_in = PduStream::default();
                                receiving = ReceiveWindow::new(RECEIVE_WINDOW);
                                self.in_channel = next.channel;
                                continue;
                            }
                            _ => {}
                        }
                        // Toward the outbound proxy or the client: on the
                        // OUT channel; pings and keep-alives end here.
                        if matches!(rts.destination(), Some(destination::OUT_PROXY | destination::CLIENT)) {
                            out_write.write_all(&pdu).await?;
                        }
                        continue;
                    }
                    receiving.arrived(pdu.len());
                    pipe_write.write_all(&pdu).await?;
                    if let Some(ack) = receiving.due(0, self.in_channel) {
                        in_write.write_all(&Rts::flow_control_ack(ack).encode()).await?;
                    }
                }
                pdu = from_out.read(&mut out_read) => {
                    let Some(pdu) = pdu? else { return Ok(()) };
                    if pdu[2] != PTYPE_RTS {
                        return Err(invalid("an RPC PDU from the outbound proxy"));
                    }
                    let rts = Rts::decode(&pdu).map_err(invalid)?;
                    match rts.destination() {
                        Some(destination::IN_PROXY) => in_write.write_all(&pdu).await?,
                        Some(destination::CLIENT) => out_write.write_all(&pdu).await?,
                        _ => {
                            // An acknowledgment of the OUT channel (another
                            // channel's is discarded, 3.2.1.5.1.2).
                            if let Some(ack) = rts.ack().filter(|a| a.channel_cookie == self.out_channel) {
                                sending.acknowledged(&ack);
                            }
                        }
                    }
                }
                pdu = from_machine.read(&mut pipe_read) => {
                    let Some(pdu) = pdu? else { return Ok(()) };
                    sending.push(pdu);
                }
            }
            for pdu in sending.ready() {
                out_write.write_all(&pdu).await?;
                out_sent += pdu.len() as u64;
            }
            // Half the OUT channel's lifetime sent: OUT_R1/A1 asks the
            // client for a successor (3.2.5.5.15).
            if matches!(out_recycling, OutRecycling::Opened)
                && out_sent >= u64::from(self.out_lifetime / 2)
            {
                let a1 = Rts::new(
                    rts::flags::RECYCLE_CHANNEL,
                    vec![Command::Destination(destination::CLIENT)],
                );
                out_write.write_all(&a1.encode()).await?;
                out_recycling = OutRecycling::A4Wait;
            }
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}
