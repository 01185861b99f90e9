//! RPC over HTTP v2's client role ([MS-RPCH] 3.2.2): a virtual
//! connection through an RPC proxy out of two HTTP requests the caller
//! has connected (plain or TLS): RPC_OUT_DATA, whose response body
//! carries the server's PDUs, and RPC_IN_DATA, whose request body carries
//! the client's. CONN/A1 and B1 open it; CONN/A3 and C2 complete it. The
//! connection-oriented client then runs over it unchanged: PDUs go out
//! within the inbound proxy's window (opened again by the acknowledgments
//! that come back on the OUT channel), what comes in is acknowledged to
//! the outbound proxy at half its window, and the IN channel is pinged
//! when idle so that nothing on the way closes it.
//!
//! Given a way to open more connections to the proxy, the client
//! recycles its channels. The IN channel (3.2.2.5.12, IN_R1) once half its
//! lifetime is sent: a successor RPC_IN_DATA request opens with IN_R1/A1;
//! when IN_R1/A4 comes on the OUT channel the predecessor gets IN_R1/A5
//! and the successor carries on. The OUT channel when the server asks
//! (OUT_R1/A2, 3.2.2.5.6–8): a successor RPC_OUT_DATA request opens with
//! OUT_R1/A3; OUT_R1/A6 is answered with OUT_R1/A7 on the IN channel, and
//! OUT_R1/A10, the predecessor's last PDU, with OUT_R1/A11 on the
//! successor, whose response then carries the server's PDUs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{CallError, Connection, Options};
use crate::rts::{
    self, destination, flags, Command, Cookie, PduStream, ReceiveWindow, Rts, SendWindow, PTYPE_RTS,
};

/// The client's receive window on the OUT channel.
const WINDOW: u32 = 256 * 1024;
/// The IN channel's declared length (its lifetime): 1 GiB.
const IN_LIFETIME: u32 = 1 << 30;
/// The keep-alive the client asks of the inbound proxy (2.2.3.5.6).
const KEEPALIVE_MS: u32 = 300_000;
/// The IN channel is pinged when idle this long.
const PING_INTERVAL: Duration = Duration::from_secs(60);
/// How long the proxy has to answer the OUT channel's opening.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP requests say.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    /// The proxy's host name (the Host header).
    pub host: String,
    /// `/rpc/rpcproxy.dll?SERVER:PORT`.
    pub path_and_query: String,
    /// The Authorization header's value (`Basic …`), if any.
    pub authorization: Option<String>,
}

/// Why the proxy did not open the virtual connection.
fn refused(status_line: &str) -> CallError {
    CallError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        format!("the RPC proxy answered {status_line}"),
    ))
}

fn request_head(method: &str, request: &ProxyRequest, length: u32) -> Vec<u8> {
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/rpc\r\nUser-Agent: MSRPC\r\n\
         Cache-Control: no-cache\r\nConnection: Keep-Alive\r\nPragma: No-cache\r\n\
         Content-Length: {length}\r\n",
        request.path_and_query, request.host
    );
    if let Some(auth) = &request.authorization {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Reads an HTTP response head; returns its status line and what of the
/// body came with it.
async fn response_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(String, Vec<u8>), CallError> {
    let mut got = Vec::new();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let rest = got[end + 4..].to_vec();
            let status = head.lines().next().unwrap_or_default().to_string();
            let lower = head.to_ascii_lowercase();
            if lower.contains("transfer-encoding: chunked") {
                return Err(CallError::Protocol(
                    "the RPC proxy's OUT channel is chunked, which this client does not read",
                ));
            }
            return Ok((status, rest));
        }
        if got.len() > 16 * 1024 {
            return Err(CallError::Protocol(
                "the RPC proxy's response head is too long",
            ));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(CallError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        got.extend_from_slice(&chunk[..n]);
    }
}

/// The next PDU of the OUT channel, which must not end yet.
async fn next_pdu<S: AsyncRead + Unpin>(
    pdus: &mut PduStream,
    stream: &mut S,
) -> Result<Vec<u8>, CallError> {
    pdus.read(stream)
        .await?
        .ok_or(CallError::Io(std::io::ErrorKind::UnexpectedEof.into()))
}

/// Opens another connection to the proxy: where successor IN channels go.
pub type ChannelOpener<S> =
    Box<dyn FnMut() -> Pin<Box<dyn Future<Output = std::io::Result<S>> + Send>> + Send>;

/// Opens a virtual connection over the two connected streams (`in_stream`
/// and `out_stream` to the proxy) and returns the connection-oriented
/// client running over it.
pub async fn connect<S>(
    in_stream: S,
    out_stream: S,
    request: &ProxyRequest,
    options: Options,
) -> Result<Connection, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connect_recycling(in_stream, out_stream, request, options, None, IN_LIFETIME).await
}

/// The same, with IN channels of `in_lifetime` octets that `opener`
/// replaces when half of one is sent.
pub async fn connect_recycling<S>(
    mut in_stream: S,
    mut out_stream: S,
    request: &ProxyRequest,
    options: Options,
    opener: Option<ChannelOpener<S>>,
    in_lifetime: u32,
) -> Result<Connection, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = rts::new_cookie();
    let in_channel = rts::new_cookie();
    let out_channel = rts::new_cookie();
    let a1 = Rts::new(
        flags::NONE,
        vec![
            Command::Version(1),
            Command::Cookie(connection),
            Command::Cookie(out_channel),
            Command::ReceiveWindowSize(WINDOW),
        ],
    )
    .encode();
    let mut out_request = request_head("RPC_OUT_DATA", request, a1.len() as u32);
    out_request.extend_from_slice(&a1);
    out_stream.write_all(&out_request).await?;
    let b1 = Rts::new(
        flags::NONE,
        vec![
            Command::Version(1),
            Command::Cookie(connection),
            Command::Cookie(in_channel),
            Command::ChannelLifetime(in_lifetime),
            Command::ClientKeepalive(KEEPALIVE_MS),
            Command::AssociationGroupId(rts::new_cookie()),
        ],
    )
    .encode();
    let mut in_request = request_head("RPC_IN_DATA", request, in_lifetime);
    in_request.extend_from_slice(&b1);
    in_stream.write_all(&in_request).await?;

    let opened = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let (status, rest) = response_head(&mut out_stream).await?;
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(refused(&status));
        }
        let mut pdus = PduStream::new(rest);
        let a3 = Rts::decode(&next_pdu(&mut pdus, &mut out_stream).await?)
            .map_err(|_| CallError::Protocol("the proxy's CONN/A3 does not decode"))?;
        if !matches!(a3.commands.as_slice(), [Command::ConnectionTimeout(_)]) {
            return Err(CallError::Protocol(
                "the OUT channel does not begin with CONN/A3",
            ));
        }
        let c2 = Rts::decode(&next_pdu(&mut pdus, &mut out_stream).await?)
            .map_err(|_| CallError::Protocol("the proxy's CONN/C2 does not decode"))?;
        let in_window = match c2.commands.as_slice() {
            [Command::Version(_), Command::ReceiveWindowSize(w), Command::ConnectionTimeout(_)] => {
                *w
            }
            _ => return Err(CallError::Protocol("CONN/C2 does not follow CONN/A3")),
        };
        Ok((pdus, in_window))
    })
    .await;
    let (pdus, in_window) = match opened {
        Ok(result) => result?,
        Err(_) => {
            return Err(CallError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the RPC proxy did not open the virtual connection in 30 s",
            )))
        }
    };
    let (machine, pipe) = tokio::io::duplex(64 * 1024);
    let bridge = Bridge {
        connection,
        in_channel,
        out_channel,
        request: request.clone(),
        opener,
        in_lifetime,
        in_stream,
        in_sent: b1.len() as u64,
    };
    tokio::spawn(async move {
        if let Err(e) = bridge.run(out_stream, pdus, in_window, pipe).await {
            tracing::debug!("rpc: the RPC over HTTP virtual connection ended: {e}");
        }
    });
    Ok(Connection::over(machine, options))
}

/// Where the OUT channel's recycling is, with the successor.
enum OutRecycling<S> {
    Opened,
    /// OUT_R1/A3 sent; waiting for OUT_R1/A6.
    A6Wait(S, Cookie),
    /// OUT_R1/A7 sent; waiting for OUT_R1/A10.
    A10Wait(S, Cookie),
}

/// The client's side of a virtual connection: which channels are whose,
/// and how they are replaced.
struct Bridge<S> {
    connection: Cookie,
    in_channel: Cookie,
    out_channel: Cookie,
    request: ProxyRequest,
    opener: Option<ChannelOpener<S>>,
    in_lifetime: u32,
    /// The current IN channel and the body octets sent on it.
    in_stream: S,
    in_sent: u64,
}

/// What an RTS PDU on the OUT channel did to the OUT channel's recycling.
enum OutStep<S> {
    /// Where the recycling is now.
    Stays(OutRecycling<S>),
    /// The successor took over: its stream, cookie, and what came after
    /// its response head.
    SwitchTo(S, Cookie, Vec<u8>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Bridge<S> {
    /// Writes on the IN channel, counting what its lifetime allows.
    async fn send_in(&mut self, bytes: &[u8]) -> Result<(), CallError> {
        self.in_stream.write_all(bytes).await?;
        self.in_sent += bytes.len() as u64;
        Ok(())
    }

    /// Starts a successor IN channel (IN_R1/A1) once half the current
    /// one's lifetime is sent; returns it and its cookie.
    async fn successor(&mut self) -> Result<Option<(S, Cookie)>, CallError> {
        if self.in_sent < u64::from(self.in_lifetime / 2) {
            return Ok(None);
        }
        let Some(opener) = self.opener.as_mut() else {
            return Ok(None);
        };
        let mut stream = opener().await?;
        let successor = rts::new_cookie();
        let a1 = Rts::new(
            flags::RECYCLE_CHANNEL,
            vec![
                Command::Version(1),
                Command::Cookie(self.connection),
                Command::Cookie(self.in_channel),
                Command::Cookie(successor),
            ],
        )
        .encode();
        let mut head = request_head("RPC_IN_DATA", &self.request, self.in_lifetime);
        head.extend_from_slice(&a1);
        stream.write_all(&head).await?;
        Ok(Some((stream, successor)))
    }

    /// IN_R1/A4 (3.2.2.5.5): the predecessor gets IN_R1/A5 after
    /// everything sent on it, and the successor carries on with the window
    /// its proxy offers.
    async fn in_r1_a4(
        &mut self,
        successor: (S, Cookie),
        window: u32,
        sending: &mut SendWindow,
    ) -> Result<(), CallError> {
        let (next, cookie) = successor;
        let a5 = Rts::new(flags::NONE, vec![Command::Cookie(cookie)]);
        self.in_stream.write_all(&a5.encode()).await?;
        self.in_stream = next;
        self.in_channel = cookie;
        self.in_sent = 0;
        sending.renew(window);
        Ok(())
    }

    /// The OUT_R1 step (3.2.2.5.6–8) `rts` makes, if any: OUT_R1/A2 opens
    /// a successor with OUT_R1/A3 (its body holds OUT_R1/A11 later),
    /// OUT_R1/A6 is answered with OUT_R1/A7 on the IN channel, and
    /// OUT_R1/A10, the predecessor's last PDU, with OUT_R1/A11 on the
    /// successor, whose response then carries on.
    async fn out_r1_step(
        &mut self,
        rts: &Rts,
        state: OutRecycling<S>,
    ) -> Result<OutStep<S>, CallError> {
        let step = match (rts.flags, rts.commands.as_slice(), state) {
            (flags::RECYCLE_CHANNEL, [Command::Destination(_)], OutRecycling::Opened)
                if self.opener.is_some() =>
            {
                let cookie = rts::new_cookie();
                let a3 = Rts::new(
                    flags::RECYCLE_CHANNEL,
                    vec![
                        Command::Version(1),
                        Command::Cookie(self.connection),
                        Command::Cookie(self.out_channel),
                        Command::Cookie(cookie),
                        Command::ReceiveWindowSize(WINDOW),
                    ],
                )
                .encode();
                let a11_len = Rts::new(flags::NONE, vec![Command::Ance]).encode().len();
                let length = (a3.len() + a11_len) as u32;
                let mut head = request_head("RPC_OUT_DATA", &self.request, length);
                head.extend_from_slice(&a3);
                let opener = self.opener.as_mut().expect("checked above");
                let mut next = opener().await?;
                next.write_all(&head).await?;
                OutStep::Stays(OutRecycling::A6Wait(next, cookie))
            }
            (
                flags::OUT_CHANNEL,
                [Command::Destination(_), Command::Version(_), Command::ConnectionTimeout(_)],
                OutRecycling::A6Wait(next, cookie),
            ) => {
                let a7 = Rts::new(
                    flags::OUT_CHANNEL,
                    vec![
                        Command::Destination(destination::SERVER),
                        Command::Cookie(cookie),
                    ],
                );
                self.send_in(&a7.encode()).await?;
                OutStep::Stays(OutRecycling::A10Wait(next, cookie))
            }
            (flags::NONE, [Command::Ance], OutRecycling::A10Wait(mut next, cookie)) => {
                next.write_all(&Rts::new(flags::NONE, vec![Command::Ance]).encode())
                    .await?;
                let (status, rest) = response_head(&mut next).await?;
                if status.split_whitespace().nth(1) != Some("200") {
                    return Err(refused(&status));
                }
                OutStep::SwitchTo(next, cookie, rest)
            }
            (_, _, state) => OutStep::Stays(state),
        };
        Ok(step)
    }

    async fn run(
        mut self,
        mut out_stream: S,
        mut from_out: PduStream,
        in_window: u32,
        pipe: tokio::io::DuplexStream,
    ) -> Result<(), CallError> {
        let (mut pipe_read, mut pipe_write) = tokio::io::split(pipe);
        // A successor IN channel waiting for IN_R1/A4.
        let mut successor: Option<(S, Cookie)> = None;
        let mut out_recycling = OutRecycling::Opened;
        let mut from_client = PduStream::default();
        // What comes on the OUT channel goes on to the client runtime at
        // once; what goes on the IN channel waits for the inbound proxy's
        // window.
        let mut receiving = ReceiveWindow::new(WINDOW);
        let mut sending = SendWindow::new(in_window);
        let mut last_sent = tokio::time::Instant::now();
        let mut in_answer = [0u8; 512];
        loop {
            // Whatever the OUT channel already holds goes first.
            while let Some(pdu) = from_out
                .take()
                .map_err(|_| CallError::Protocol("a PDU shorter than its header"))?
            {
                if pdu[2] != PTYPE_RTS {
                    receiving.arrived(pdu.len());
                    pipe_write.write_all(&pdu).await?;
                    if let Some(ack) = receiving.due(0, self.out_channel) {
                        let ack = Rts::flow_control_ack_to(destination::OUT_PROXY, ack);
                        self.send_in(&ack.encode()).await?;
                        last_sent = tokio::time::Instant::now();
                    }
                    continue;
                }
                let rts = Rts::decode(&pdu)
                    .map_err(|_| CallError::Protocol("an RTS PDU that does not decode"))?;
                if let Some(ack) = rts.ack().filter(|a| a.channel_cookie == self.in_channel) {
                    sending.acknowledged(&ack);
                }
                match self.out_r1_step(&rts, out_recycling).await? {
                    OutStep::Stays(state) => out_recycling = state,
                    OutStep::SwitchTo(next, cookie, rest) => {
                        out_stream = next;
                        from_out = PduStream::new(rest);
                        self.out_channel = cookie;
                        receiving = ReceiveWindow::new(WINDOW);
                        out_recycling = OutRecycling::Opened;
                    }
                }
                if let (
                    flags::NONE,
                    [Command::Destination(_), Command::Version(_), Command::ReceiveWindowSize(w), Command::ConnectionTimeout(_)],
                ) = (rts.flags, rts.commands.as_slice())
                {
                    if let Some(next) = successor.take() {
                        self.in_r1_a4(next, *w, &mut sending).await?;
                    }
                }
            }
            while let Some(pdu) = from_client
                .take()
                .map_err(|_| CallError::Protocol("a PDU shorter than its header"))?
            {
                sending.push(pdu);
            }
            for pdu in sending.ready() {
                self.send_in(&pdu).await?;
                last_sent = tokio::time::Instant::now();
            }
            if successor.is_none() {
                successor = self.successor().await?;
            }
            tokio::select! {
                more = from_out.fill(&mut out_stream) => {
                    if !more? {
                        return Ok(());
                    }
                }
                more = from_client.fill(&mut pipe_read) => {
                    if !more? {
                        return Ok(());
                    }
                }
                // Anything on the IN channel's response side is the proxy
                // giving up on it.
                n = self.in_stream.read(&mut in_answer) => {
                    let n = n?;
                    if n == 0 {
                        return Ok(());
                    }
                    let text = String::from_utf8_lossy(&in_answer[..n]).into_owned();
                    return Err(refused(text.lines().next().unwrap_or("nothing")));
                }
                _ = tokio::time::sleep_until(last_sent + PING_INTERVAL) => {
                    self.send_in(&Rts::ping().encode()).await?;
                    last_sent = tokio::time::Instant::now();
                }
            }
        }
    }
}
