//! The relays of one virtual connection at the proxy ([MS-RPCH] 3.2.3
//! and 3.2.4): the OUT channel (the RPC_OUT_DATA response's body, fed
//! from the server) and the IN channel (the RPC_IN_DATA request's body,
//! fed to the server), each with its TCP connection to the server's
//! ncacn_http endpoint. Both pace what they forward by the receiving
//! side's window and acknowledge what they forwarded (3.2.1.5.1), and
//! forward RTS PDUs that name a destination (3.2.1.5.2).
//!
//! Once a channel's opening is read, the proxy takes the client's
//! connection over from the listener (opaque mode,
//! [`httpapi::Request::take_connection`]) and reads and writes it
//! itself: each PDU then costs the connection's own reads and writes, not
//! a trip through the request queue as well. The version 1 mixed proxy
//! (RPC_CONNECT, 3.1.2) relays its one connection both ways.

use std::time::Duration;

use httpapi::Request;
use msrpc::rts::{
    destination, flags, Command, PduStream, ReceiveWindow, Rts, SendWindow, PTYPE_RTS,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf};

use crate::ServerStream;

/// The proxy's receive window on each channel.
const WINDOW: u32 = 256 * 1024;
/// The connection time-out told to the client (2.2.3.5.3: at least 120 s).
const CONNECTION_TIMEOUT_MS: u32 = 120_000;
/// The client is pinged on an OUT channel idle this long (half the
/// time-out: 3.2.1.2.1).
const PING_INTERVAL: Duration = Duration::from_secs(60);
/// How long the server has to answer a channel's opening.
const SERVER_ANSWER: Duration = Duration::from_secs(30);

pub(crate) type RelayError = Box<dyn std::error::Error + Send + Sync>;

/// What the server sends: PDUs, its legacy response skipped (3.2.3.5.12:
/// ignored, and not required).
struct FromServer<R> {
    read: R,
    pdus: PduStream,
    legacy_checked: bool,
}

impl<R: AsyncRead + Unpin> FromServer<R> {
    fn new(read: R) -> FromServer<R> {
        FromServer {
            read,
            pdus: PduStream::default(),
            legacy_checked: false,
        }
    }

    /// The next PDU; None when the server closed.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, RelayError> {
        let legacy = msrpc::server::LEGACY_RESPONSE;
        while !self.legacy_checked {
            let held = self.pdus.held();
            if held.first().is_some_and(|b| *b != legacy[0]) {
                self.legacy_checked = true;
            } else if held.len() >= legacy.len() {
                if held.starts_with(legacy) {
                    self.pdus.skip(legacy.len());
                }
                self.legacy_checked = true;
            } else if !self.pdus.fill(&mut self.read).await? {
                return Ok(None);
            }
        }
        Ok(self.pdus.read(&mut self.read).await?)
    }

    /// The server's answer to a channel's opening, in time.
    async fn answer(&mut self) -> Result<Rts, RelayError> {
        let pdu = tokio::time::timeout(SERVER_ANSWER, self.next())
            .await
            .map_err(|_| "the server did not answer the channel's opening")??
            .ok_or("the server closed the channel")?;
        if pdu[2] != PTYPE_RTS {
            return Err("the server answered the opening with an RPC PDU".into());
        }
        Ok(Rts::decode(&pdu)?)
    }
}

/// A channel's opening PDU, from the request's body as the listener
/// passes it on; what follows it stays in `from_client`.
async fn opening_pdu(
    request: &mut Request,
    from_client: &mut PduStream,
) -> Result<Rts, RelayError> {
    loop {
        if let Some(pdu) = from_client.take()? {
            return Ok(Rts::decode(&pdu)?);
        }
        match request.body_chunk().await? {
            Some(chunk) => from_client.push(&chunk),
            None => return Err("the channel ended before its opening PDU".into()),
        }
    }
}

/// The response head of an OUT channel (3.2.4.5.1): its body is the
/// channel, `lifetime` octets long.
fn out_channel_head(lifetime: u32) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 Success\r\nContent-Type: application/rpc\r\nDate: {}\r\n\
         Content-Length: {lifetime}\r\n\r\n",
        httpapi::dates::http_date(std::time::SystemTime::now())
    )
    .into_bytes()
}

/// RPC_OUT_DATA: CONN/A1 from the client, CONN/A2 to the server, the
/// response with CONN/A3, C1 from the server as C2 to the client; then
/// the server's PDUs go to the client within its window. Or a successor
/// OUT channel (3.2.4.5.6.2, OUT_R1): OUT_R1/A3 from the client, OUT_R1/A4
/// to the server, plugged until the client's OUT_R1/A11, then the
/// response and the server's PDUs.
pub(crate) async fn out_channel(
    mut request: Request,
    server: Box<dyn ServerStream>,
    lifetime: u32,
) -> Result<(), RelayError> {
    // The opening PDU (a successor's request body holds OUT_R1/A11 too,
    // which comes later).
    let mut from_client = PduStream::default();
    let opening = opening_pdu(&mut request, &mut from_client).await?;
    let (server_read, mut server_write): (ReadHalf<Box<dyn ServerStream>>, _) =
        tokio::io::split(server);
    let mut from_server = FromServer::new(server_read);
    match (opening.flags, opening.commands.as_slice()) {
        (
            flags::NONE,
            [Command::Version(v), Command::Cookie(vc), Command::Cookie(out), Command::ReceiveWindowSize(w)],
        ) => {
            let (channel, client_window) = (*out, *w);
            let mut client = request.take_connection(200).await?;
            let a2 = Rts::new(
                flags::OUT_CHANNEL,
                vec![
                    Command::Version((*v).min(1)),
                    Command::Cookie(*vc),
                    Command::Cookie(channel),
                    Command::ChannelLifetime(lifetime),
                    Command::ReceiveWindowSize(WINDOW),
                ],
            );
            server_write.write_all(&a2.encode()).await?;
            let a3 = Rts::new(
                flags::NONE,
                vec![Command::ConnectionTimeout(CONNECTION_TIMEOUT_MS)],
            );
            let mut head = out_channel_head(lifetime);
            head.extend_from_slice(&a3.encode());
            client.write_all(&head).await?;
            let c1 = from_server.answer().await?;
            let c2 = match c1.commands.as_slice() {
                [Command::Version(v), Command::ReceiveWindowSize(w), Command::ConnectionTimeout(t)] => {
                    Rts::new(
                        flags::NONE,
                        vec![
                            Command::Version(*v),
                            Command::ReceiveWindowSize(*w),
                            Command::ConnectionTimeout(*t),
                        ],
                    )
                }
                _ => return Err("the server's answer to CONN/A2 is not CONN/C1".into()),
            };
            client.write_all(&c2.encode()).await?;
            relay_out(client, from_server, server_write, client_window, channel).await
        }
        (
            flags::RECYCLE_CHANNEL,
            [Command::Version(v), Command::Cookie(vc), Command::Cookie(predecessor), Command::Cookie(successor), Command::ReceiveWindowSize(w)],
        ) => {
            let (channel, client_window) = (*successor, *w);
            let mut client = request.take_connection(200).await?;
            let a4 = Rts::new(
                flags::RECYCLE_CHANNEL | flags::OUT_CHANNEL,
                vec![
                    Command::Version((*v).min(1)),
                    Command::Cookie(*vc),
                    Command::Cookie(*predecessor),
                    Command::Cookie(channel),
                    Command::ChannelLifetime(lifetime),
                    Command::ReceiveWindowSize(WINDOW),
                    Command::ConnectionTimeout(CONNECTION_TIMEOUT_MS),
                ],
            );
            server_write.write_all(&a4.encode()).await?;
            // Plugged until OUT_R1/A11 (3.2.4.5.9); the server's PDUs wait
            // in the connection to it meanwhile.
            let a11 = from_client
                .read(&mut client)
                .await?
                .ok_or("the successor OUT channel ended before OUT_R1/A11")?;
            let a11 = Rts::decode(&a11)?;
            if !matches!(
                (a11.flags, a11.commands.as_slice()),
                (flags::NONE, [Command::Ance])
            ) {
                return Err("the successor OUT channel's second PDU is not OUT_R1/A11".into());
            }
            client.write_all(&out_channel_head(lifetime)).await?;
            relay_out(client, from_server, server_write, client_window, channel).await
        }
        _ => {
            let _ = request
                .respond(crate::rpc_error(
                    crate::PROTOCOL_ERROR,
                    "the OUT channel begins with neither CONN/A1 nor OUT_R1/A3",
                ))
                .await;
            Err("no CONN/A1 or OUT_R1/A3".into())
        }
    }
}

/// An open OUT channel: the server's PDUs go to the client within its
/// window; OUT_R1/A9 (3.2.4.5.8) ends it once what is queued went, with
/// OUT_R1/A10.
async fn relay_out<R: AsyncRead + Unpin, W: tokio::io::AsyncWrite + Unpin>(
    mut client: httpapi::TakenConnection,
    mut from_server: FromServer<R>,
    mut server_write: W,
    client_window: u32,
    channel: msrpc::rts::Cookie,
) -> Result<(), RelayError> {
    let mut to_client = SendWindow::new(client_window);
    let mut from = ReceiveWindow::new(WINDOW);
    let mut last_sent = tokio::time::Instant::now();
    loop {
        tokio::select! {
            pdu = from_server.next() => {
                let Some(pdu) = pdu? else { return Ok(()) };
                if pdu[2] == PTYPE_RTS {
                    let rts = Rts::decode(&pdu)?;
                    tracing::trace!(?rts, "RPC proxy: RTS from the server on the OUT channel");
                    if let (flags::NONE, [Command::Ance]) = (rts.flags, rts.commands.as_slice()) {
                        let mut out = Vec::new();
                        for queued in to_client.drain() {
                            out.extend_from_slice(&queued);
                        }
                        out.extend_from_slice(&Rts::new(flags::NONE, vec![Command::Ance]).encode());
                        client.write_all(&out).await?;
                        let _ = client.shutdown().await;
                        return Ok(());
                    }
                    match rts.destination() {
                        Some(destination::CLIENT) => {
                            client.write_all(&pdu).await?;
                            last_sent = tokio::time::Instant::now();
                        }
                        Some(destination::OUT_PROXY) => {
                            // The client's acknowledgment, forwarded by
                            // the inbound proxy and the server.
                            if let Some(ack) = rts.ack().filter(|a| a.channel_cookie == channel) {
                                to_client.acknowledged(&ack);
                            }
                        }
                        _ => {}
                    }
                } else {
                    let len = pdu.len();
                    to_client.push(pdu);
                    from.arrived(len);
                }
                // What is ready leaves in one write (one TLS record).
                let ready = to_client.ready();
                if !ready.is_empty() {
                    client.write_all(&ready.concat()).await?;
                    last_sent = tokio::time::Instant::now();
                }
                if let Some(ack) = from.due(to_client.queued(), channel) {
                    server_write.write_all(&Rts::flow_control_ack(ack).encode()).await?;
                }
            }
            _ = tokio::time::sleep_until(last_sent + PING_INTERVAL) => {
                client.write_all(&Rts::ping().encode()).await?;
                last_sent = tokio::time::Instant::now();
            }
        }
    }
}

/// RPC_IN_DATA: CONN/B1 from the client, CONN/B2 to the server, B3 from
/// it; then the client's PDUs go to the server within its window, and the
/// client hears its own acknowledgments through the server.
pub(crate) async fn in_channel(
    mut request: Request,
    server: Box<dyn ServerStream>,
) -> Result<(), RelayError> {
    let mut from_client = PduStream::default();
    let b1 = opening_pdu(&mut request, &mut from_client).await?;
    // A new virtual connection's IN channel (CONN/B1 → CONN/B2), or the
    // successor of one (IN_R1/A1 → IN_R1/A2, 3.2.3.5.5.2: this proxy keeps
    // no table of virtual connections, so it always takes the IN_R1 path).
    let (opening, channel) = match (b1.flags, b1.commands.as_slice()) {
        (
            flags::NONE,
            [Command::Version(v), Command::Cookie(vc), Command::Cookie(in_channel), Command::ChannelLifetime(_), Command::ClientKeepalive(_), Command::AssociationGroupId(group)],
        ) => (
            Rts::new(
                flags::IN_CHANNEL,
                vec![
                    Command::Version((*v).min(1)),
                    Command::Cookie(*vc),
                    Command::Cookie(*in_channel),
                    Command::ReceiveWindowSize(WINDOW),
                    Command::ConnectionTimeout(CONNECTION_TIMEOUT_MS),
                    Command::AssociationGroupId(*group),
                    Command::ClientAddress(request.remote.ip()),
                ],
            ),
            *in_channel,
        ),
        (
            flags::RECYCLE_CHANNEL,
            [Command::Version(v), Command::Cookie(vc), Command::Cookie(predecessor), Command::Cookie(successor)],
        ) => (
            Rts::new(
                flags::IN_CHANNEL | flags::RECYCLE_CHANNEL,
                vec![
                    Command::Version((*v).min(1)),
                    Command::Cookie(*vc),
                    Command::Cookie(*predecessor),
                    Command::Cookie(*successor),
                    Command::ReceiveWindowSize(WINDOW),
                    Command::ConnectionTimeout(CONNECTION_TIMEOUT_MS),
                ],
            ),
            *successor,
        ),
        _ => {
            request.abort();
            return Err("the IN channel begins with neither CONN/B1 nor IN_R1/A1".into());
        }
    };
    let (server_read, mut server_write): (ReadHalf<Box<dyn ServerStream>>, _) =
        tokio::io::split(server);
    // The IN channel's response is never sent: the connection is the
    // proxy's from here, and the client's bytes come straight.
    let mut client = request.take_connection(200).await?;
    server_write.write_all(&opening.encode()).await?;
    let mut from_server = FromServer::new(server_read);
    // The channel stays plugged until the server's CONN/B3 (or, for a
    // successor, IN_R1/B2 once the predecessor is done).
    let answer = from_server.answer().await?;
    let server_window =
        match answer.commands.as_slice() {
            [Command::ReceiveWindowSize(w), Command::Version(_)] => *w,
            [Command::ReceiveWindowSize(w)] => *w,
            _ => return Err(
                "the server answered the IN channel's opening with neither CONN/B3 nor IN_R1/B2"
                    .into(),
            ),
        };
    let mut to_server = SendWindow::new(server_window);
    let mut from = ReceiveWindow::new(WINDOW);
    let outcome: Result<(), RelayError> = async {
        loop {
            // PDUs already held go first.
            while let Some(pdu) = from_client.take()? {
                if pdu[2] == PTYPE_RTS {
                    let rts = Rts::decode(&pdu)?;
                    tracing::trace!(?rts, "RPC proxy: RTS from the client");
                    // IN_R1/A5: a successor takes over (3.2.3.5.6):
                    // IN_R1/A6, what is queued, IN_R1/B1, and this
                    // channel ends.
                    if let (flags::NONE, [Command::Cookie(successor)]) =
                        (rts.flags, rts.commands.as_slice())
                    {
                        let a6 = Rts::new(flags::NONE, vec![Command::Cookie(*successor)]);
                        let mut out = a6.encode();
                        for queued in to_server.drain() {
                            out.extend_from_slice(&queued);
                        }
                        out.extend_from_slice(
                            &Rts::new(flags::NONE, vec![Command::Empty]).encode(),
                        );
                        server_write.write_all(&out).await?;
                        return Ok(());
                    }
                    if matches!(
                        rts.destination(),
                        Some(destination::OUT_PROXY | destination::SERVER | destination::CLIENT)
                    ) {
                        server_write.write_all(&pdu).await?;
                    }
                    // Pings and keep-alives end here.
                    continue;
                }
                let len = pdu.len();
                to_server.push(pdu);
                from.arrived(len);
            }
            for ready in to_server.ready() {
                server_write.write_all(&ready).await?;
            }
            if let Some(ack) = from.due(to_server.queued(), channel) {
                // To the client through the server and the outbound proxy.
                let to_client = Rts::flow_control_ack_to(destination::CLIENT, ack);
                server_write.write_all(&to_client.encode()).await?;
            }
            tokio::select! {
                more = from_client.fill(&mut client) => if !more? {
                    return Ok(());
                },
                pdu = from_server.next() => {
                    let Some(pdu) = pdu? else { return Ok(()) };
                    if pdu[2] != PTYPE_RTS {
                        return Err("an RPC PDU from the server on the IN channel".into());
                    }
                    let rts = Rts::decode(&pdu)?;
                    if let Some(ack) = rts.ack().filter(|a| a.channel_cookie == channel) {
                        to_server.acknowledged(&ack);
                    }
                }
            }
        }
    }
    .await;
    let _ = client.shutdown().await;
    outcome
}

/// RPC_CONNECT (version 1, 3.1.2.5): the server's legacy response first,
/// then the RPC connect response's head, then the one connection relayed
/// both ways until either side closes it.
pub(crate) async fn mixed(
    request: Request,
    mut server: Box<dyn ServerStream>,
) -> Result<(), RelayError> {
    let legacy = msrpc::server::LEGACY_RESPONSE;
    let mut heard = vec![0u8; legacy.len()];
    let answered = tokio::time::timeout(SERVER_ANSWER, server.read_exact(&mut heard)).await;
    if !matches!(answered, Ok(Ok(_))) || heard != legacy {
        let why = "the server did not send the legacy server response";
        let _ = request
            .respond(crate::rpc_error(crate::SERVER_UNAVAILABLE, why))
            .await;
        return Err(why.into());
    }
    let mut client = request.take_connection(200).await?;
    // 2.1.1.1.2: "HTTP/1.1", a 2xx status, "OK"; the body is the PDUs.
    client.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
