//! The relays of one virtual connection at the proxy ([MS-RPCH] 3.2.3
//! and 3.2.4): the OUT channel (the RPC_OUT_DATA response's body, fed
//! from the server) and the IN channel (the RPC_IN_DATA request's body,
//! fed to the server), each with its TCP connection to the server's
//! ncacn_http endpoint. Both pace what they forward by the receiving
//! side's window and acknowledge what they forwarded (3.2.1.5.1), and
//! forward RTS PDUs that name a destination (3.2.1.5.2).

use std::collections::VecDeque;
use std::time::Duration;

use httpapi::{Request, Response};
use msrpc::rts::{self, destination, flags, Ack, Command, Cookie, Rts, PTYPE_RTS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf};

use crate::ServerStream;

/// The proxy's receive window on each channel.
const WINDOW: u32 = 256 * 1024;
/// The OUT channel's lifetime: its response's Content-Length (1 GiB).
const LIFETIME: u32 = 1 << 30;
/// The connection time-out told to the client (2.2.3.5.3: at least 120 s).
const CONNECTION_TIMEOUT_MS: u32 = 120_000;
/// The client is pinged on an OUT channel idle this long (half the
/// time-out: 3.2.1.2.1).
const PING_INTERVAL: Duration = Duration::from_secs(60);
/// How long the server has to answer a channel's opening.
const SERVER_ANSWER: Duration = Duration::from_secs(30);

pub(crate) type RelayError = Box<dyn std::error::Error + Send + Sync>;

/// Whole PDUs out of a byte stream that comes in pieces.
#[derive(Default)]
struct Pdus {
    buffer: Vec<u8>,
}

impl Pdus {
    fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    fn next(&mut self) -> Result<Option<Vec<u8>>, RelayError> {
        let Some((_, len)) = rts::peek(&self.buffer) else {
            return Ok(None);
        };
        if len < 16 {
            return Err("a PDU shorter than its header".into());
        }
        if self.buffer.len() < len {
            return Ok(None);
        }
        let rest = self.buffer.split_off(len);
        Ok(Some(std::mem::replace(&mut self.buffer, rest)))
    }
}

/// What the server sends: PDUs, its legacy response skipped (3.2.3.5.12:
/// ignored, and not required).
struct FromServer<R> {
    read: R,
    pdus: Pdus,
    legacy_checked: bool,
}

impl<R: AsyncRead + Unpin> FromServer<R> {
    fn new(read: R) -> FromServer<R> {
        FromServer {
            read,
            pdus: Pdus::default(),
            legacy_checked: false,
        }
    }

    /// The next PDU; None when the server closed.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, RelayError> {
        loop {
            if !self.legacy_checked {
                let legacy = msrpc::server::LEGACY_RESPONSE;
                let held = &self.pdus.buffer;
                if held.first().is_some_and(|b| *b != legacy[0]) {
                    self.legacy_checked = true;
                } else if held.len() >= legacy.len() {
                    if held.starts_with(legacy) {
                        self.pdus.buffer.drain(..legacy.len());
                    }
                    self.legacy_checked = true;
                }
            }
            if self.legacy_checked {
                if let Some(pdu) = self.pdus.next()? {
                    return Ok(Some(pdu));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.read.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.pdus.push(&chunk[..n]);
        }
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

/// A sender's side of flow control (3.2.1.1.4): PDUs wait while the
/// receiver's window is short.
struct Sender {
    sent: u32,
    window: u32,
    queue: VecDeque<Vec<u8>>,
    queued: u32,
}

impl Sender {
    fn new(window: u32) -> Sender {
        Sender {
            sent: 0,
            window,
            queue: VecDeque::new(),
            queued: 0,
        }
    }

    fn push(&mut self, pdu: Vec<u8>) {
        self.queued = self.queued.saturating_add(pdu.len() as u32);
        self.queue.push_back(pdu);
    }

    /// A FlowControlAck from the receiver (3.2.1.5.1.2).
    fn acknowledged(&mut self, ack: &Ack) {
        self.window = ack
            .available_window
            .saturating_sub(self.sent.wrapping_sub(ack.bytes_received));
    }

    /// The PDUs the window lets go now.
    fn ready(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(pdu) = self.queue.front() {
            let len = pdu.len() as u32;
            if len > self.window {
                break;
            }
            self.window -= len;
            self.sent = self.sent.wrapping_add(len);
            self.queued -= len;
            out.extend(self.queue.pop_front());
        }
        out
    }
}

/// A receiver's side (3.2.1.4.1.1): PDUs are consumed when forwarded,
/// and the sender hears of the room that makes once its own idea of the
/// window is half a window short — after more arrived, or after queued
/// PDUs left (else a sender waiting for room and a receiver waiting for
/// data would wait for each other).
struct Receiver {
    received: u32,
    acknowledged: u32,
    /// The available window the last acknowledgment gave.
    advertised: u32,
}

impl Receiver {
    fn new() -> Receiver {
        Receiver {
            received: 0,
            acknowledged: 0,
            advertised: WINDOW,
        }
    }

    /// `len` more octets arrived.
    fn arrived(&mut self, len: usize) {
        self.received = self.received.wrapping_add(len as u32);
    }

    /// The acknowledgment to send now, if one is due, with `queued`
    /// octets still held.
    fn due(&mut self, queued: u32, channel: Cookie) -> Option<Ack> {
        let in_flight = self.received.wrapping_sub(self.acknowledged);
        let senders_view = self.advertised.saturating_sub(in_flight);
        let available = WINDOW.saturating_sub(queued);
        if available.saturating_sub(senders_view) < WINDOW / 2 {
            return None;
        }
        self.acknowledged = self.received;
        self.advertised = available;
        Some(Ack {
            bytes_received: self.received,
            available_window: available,
            channel_cookie: channel,
        })
    }
}

/// RPC_OUT_DATA: CONN/A1 from the client, CONN/A2 to the server, the
/// response with CONN/A3, C1 from the server as C2 to the client; then
/// the server's PDUs go to the client within its window.
pub(crate) async fn out_channel(
    mut request: Request,
    server: Box<dyn ServerStream>,
) -> Result<(), RelayError> {
    let body = request.read_body(120).await?;
    let a1 = Rts::decode(&body)?;
    let (version, connection, channel, client_window) = match (a1.flags, a1.commands.as_slice()) {
        (
            flags::NONE,
            [Command::Version(v), Command::Cookie(vc), Command::Cookie(out), Command::ReceiveWindowSize(w)],
        ) => (*v, *vc, *out, *w),
        _ => {
            let _ = request
                .respond(crate::rpc_error(
                    crate::PROTOCOL_ERROR,
                    "the OUT channel does not begin with CONN/A1 (recycling is not served)",
                ))
                .await;
            return Err("no CONN/A1".into());
        }
    };
    let (server_read, mut server_write): (ReadHalf<Box<dyn ServerStream>>, _) =
        tokio::io::split(server);
    let a2 = Rts::new(
        flags::OUT_CHANNEL,
        vec![
            Command::Version(version.min(1)),
            Command::Cookie(connection),
            Command::Cookie(channel),
            Command::ChannelLifetime(LIFETIME),
            Command::ReceiveWindowSize(WINDOW),
        ],
    );
    server_write.write_all(&a2.encode()).await?;
    let response = Response::new(200)
        .reason("Success")
        .header("Content-Type", "application/rpc");
    let mut client = request
        .start_response(response, Some(u64::from(LIFETIME)))
        .await?;
    let a3 = Rts::new(
        flags::NONE,
        vec![Command::ConnectionTimeout(CONNECTION_TIMEOUT_MS)],
    );
    client.send(&a3.encode()).await?;
    let mut from_server = FromServer::new(server_read);
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
    client.send(&c2.encode()).await?;
    let mut to_client = Sender::new(client_window);
    let mut from = Receiver::new();
    let mut last_sent = tokio::time::Instant::now();
    loop {
        tokio::select! {
            pdu = from_server.next() => {
                let Some(pdu) = pdu? else { return Ok(()) };
                if pdu[2] == PTYPE_RTS {
                    let rts = Rts::decode(&pdu)?;
                    tracing::trace!(?rts, "RPC proxy: RTS from the server on the OUT channel");
                    match rts.destination() {
                        Some(destination::CLIENT) => {
                            client.send(&pdu).await?;
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
                    tracing::trace!(len, ptype = pdu[2], window = to_client.window, "RPC proxy: to the client");
                    to_client.push(pdu);
                    from.arrived(len);
                }
                for ready in to_client.ready() {
                    client.send(&ready).await?;
                    last_sent = tokio::time::Instant::now();
                }
                if let Some(ack) = from.due(to_client.queued, channel) {
                    server_write.write_all(&Rts::flow_control_ack(ack).encode()).await?;
                }
            }
            _ = tokio::time::sleep_until(last_sent + PING_INTERVAL) => {
                client.send(&Rts::ping().encode()).await?;
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
    let mut body = request.take_body();
    let mut from_client = Pdus::default();
    let b1 = loop {
        if let Some(pdu) = from_client.next()? {
            break pdu;
        }
        match body.chunk().await? {
            Some(chunk) => from_client.push(&chunk),
            None => return Err("the IN channel ended before CONN/B1".into()),
        }
    };
    let b1 = Rts::decode(&b1)?;
    let (version, connection, channel, association) = match (b1.flags, b1.commands.as_slice()) {
        (
            flags::NONE,
            [Command::Version(v), Command::Cookie(vc), Command::Cookie(in_channel), Command::ChannelLifetime(_), Command::ClientKeepalive(_), Command::AssociationGroupId(group)],
        ) => (*v, *vc, *in_channel, *group),
        _ => {
            request.abort();
            return Err(
                "the IN channel does not begin with CONN/B1 (recycling is not served)".into(),
            );
        }
    };
    let (server_read, mut server_write): (ReadHalf<Box<dyn ServerStream>>, _) =
        tokio::io::split(server);
    let b2 = Rts::new(
        flags::IN_CHANNEL,
        vec![
            Command::Version(version.min(1)),
            Command::Cookie(connection),
            Command::Cookie(channel),
            Command::ReceiveWindowSize(WINDOW),
            Command::ConnectionTimeout(CONNECTION_TIMEOUT_MS),
            Command::AssociationGroupId(association),
            Command::ClientAddress(request.remote.ip()),
        ],
    );
    server_write.write_all(&b2.encode()).await?;
    let mut from_server = FromServer::new(server_read);
    // The channel stays plugged until the server's CONN/B3.
    let b3 = from_server.answer().await?;
    let server_window = match b3.commands.as_slice() {
        [Command::ReceiveWindowSize(w), Command::Version(_)] => *w,
        _ => {
            request.abort();
            return Err("the server's answer to CONN/B2 is not CONN/B3".into());
        }
    };
    let mut to_server = Sender::new(server_window);
    let mut from = Receiver::new();
    let outcome: Result<(), RelayError> = async {
        loop {
            // PDUs already held go first.
            while let Some(pdu) = from_client.next()? {
                if pdu[2] == PTYPE_RTS {
                    let rts = Rts::decode(&pdu)?;
                    tracing::trace!(?rts, "RPC proxy: RTS from the client");
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
                tracing::trace!(
                    len,
                    ptype = pdu[2],
                    window = to_server.window,
                    "RPC proxy: to the server"
                );
                to_server.push(pdu);
                from.arrived(len);
            }
            for ready in to_server.ready() {
                server_write.write_all(&ready).await?;
            }
            if let Some(ack) = from.due(to_server.queued, channel) {
                // To the client through the server and the outbound proxy.
                let to_client = Rts::flow_control_ack_to(destination::CLIENT, ack);
                server_write.write_all(&to_client.encode()).await?;
            }
            tokio::select! {
                chunk = body.chunk() => match chunk? {
                    Some(chunk) => from_client.push(&chunk),
                    None => return Ok(()),
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
    request.abort();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_made_by_forwarding_is_acknowledged_without_more_data() {
        let mut r = Receiver::new();
        // Half a window arrives and is forwarded at once: acknowledged.
        r.arrived(WINDOW as usize / 2);
        let ack = r.due(0, [1; 16]).unwrap();
        assert_eq!(
            (ack.bytes_received, ack.available_window),
            (WINDOW / 2, WINDOW)
        );
        // A whole window arrives while the next hop is closed: held.
        r.arrived(WINDOW as usize);
        assert_eq!(r.due(WINDOW, [1; 16]), None);
        // Then it drains, with nothing more arriving: the sender hears.
        let ack = r.due(0, [1; 16]).unwrap();
        assert_eq!(ack.available_window, WINDOW);
        assert_eq!(r.due(0, [1; 16]), None);
    }
}
