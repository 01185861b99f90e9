//! RTS PDUs of RPC over HTTP v2 ([MS-RPCH] 2.2.3 and 2.2.4): the
//! connection-oriented common header with PTYPE 20, always little-endian
//! and unfragmented, then Flags, NumberOfCommands and the commands. The
//! client, the proxies and the server route and pace a virtual
//! connection with them; every one is decoded with its lengths checked
//! and encoded byte-exact.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// PTYPE of an RTS PDU.
pub const PTYPE_RTS: u8 = 20;
/// The common header plus Flags and NumberOfCommands.
pub const HEADER_LEN: usize = 20;

/// The Flags of the RTS header (2.2.3.6.1).
pub mod flags {
    pub const NONE: u16 = 0x0000;
    pub const PING: u16 = 0x0001;
    pub const OTHER_CMD: u16 = 0x0002;
    pub const RECYCLE_CHANNEL: u16 = 0x0004;
    pub const IN_CHANNEL: u16 = 0x0008;
    pub const OUT_CHANNEL: u16 = 0x0010;
    pub const EOF: u16 = 0x0020;
    pub const ECHO: u16 = 0x0040;
}

/// Forward destinations (2.2.3.3).
pub mod destination {
    pub const CLIENT: u32 = 0;
    pub const IN_PROXY: u32 = 1;
    pub const SERVER: u32 = 2;
    pub const OUT_PROXY: u32 = 3;
}

/// An RTS cookie (2.2.3.1): 16 random octets naming a virtual connection
/// or channel.
pub type Cookie = [u8; 16];

/// A fresh cookie.
pub fn new_cookie() -> Cookie {
    crate::Uuid::random().to_le_bytes()
}

/// A flow control acknowledgment (2.2.3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub bytes_received: u32,
    pub available_window: u32,
    pub channel_cookie: Cookie,
}

/// An RTS command (2.2.3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    ReceiveWindowSize(u32),
    FlowControlAck(Ack),
    ConnectionTimeout(u32),
    Cookie(Cookie),
    ChannelLifetime(u32),
    ClientKeepalive(u32),
    Version(u32),
    Empty,
    /// Padding of this many octets.
    Padding(u32),
    NegativeAnce,
    Ance,
    ClientAddress(IpAddr),
    AssociationGroupId(Cookie),
    Destination(u32),
    PingTrafficSentNotify(u32),
}

/// Why octets are not an RTS PDU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtsError {
    #[error("an RTS PDU is cut short ({0} octets)")]
    Short(usize),
    #[error("not an RTS PDU: {0}")]
    Header(&'static str),
    #[error("unknown RTS command type {0}")]
    Command(u32),
    #[error("the RTS PDU has octets after its {0} commands")]
    Trailing(u16),
    #[error("an RTS client address of type {0}")]
    AddressType(u32),
}

/// An RTS PDU: its flags and commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rts {
    pub flags: u16,
    pub commands: Vec<Command>,
}

/// The fragment length a connection-oriented PDU's header gives, and its
/// PTYPE, once 10 octets are there.
pub fn peek(header: &[u8]) -> Option<(u8, usize)> {
    if header.len() < 10 {
        return None;
    }
    let little = header[4] & 0xf0 != 0;
    let len = if little {
        u16::from_le_bytes([header[8], header[9]])
    } else {
        u16::from_be_bytes([header[8], header[9]])
    };
    Some((header[2], usize::from(len)))
}

impl Command {
    fn code(&self) -> u32 {
        match self {
            Command::ReceiveWindowSize(_) => 0,
            Command::FlowControlAck(_) => 1,
            Command::ConnectionTimeout(_) => 2,
            Command::Cookie(_) => 3,
            Command::ChannelLifetime(_) => 4,
            Command::ClientKeepalive(_) => 5,
            Command::Version(_) => 6,
            Command::Empty => 7,
            Command::Padding(_) => 8,
            Command::NegativeAnce => 9,
            Command::Ance => 10,
            Command::ClientAddress(_) => 11,
            Command::AssociationGroupId(_) => 12,
            Command::Destination(_) => 13,
            Command::PingTrafficSentNotify(_) => 14,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code().to_le_bytes());
        match self {
            Command::ReceiveWindowSize(v)
            | Command::ConnectionTimeout(v)
            | Command::ChannelLifetime(v)
            | Command::ClientKeepalive(v)
            | Command::Version(v)
            | Command::Destination(v)
            | Command::PingTrafficSentNotify(v) => out.extend_from_slice(&v.to_le_bytes()),
            Command::FlowControlAck(ack) => {
                out.extend_from_slice(&ack.bytes_received.to_le_bytes());
                out.extend_from_slice(&ack.available_window.to_le_bytes());
                out.extend_from_slice(&ack.channel_cookie);
            }
            Command::Cookie(c) | Command::AssociationGroupId(c) => out.extend_from_slice(c),
            Command::Empty | Command::NegativeAnce | Command::Ance => {}
            Command::Padding(n) => {
                out.extend_from_slice(&n.to_le_bytes());
                out.resize(out.len() + *n as usize, 0);
            }
            Command::ClientAddress(ip) => {
                match ip {
                    IpAddr::V4(v4) => {
                        out.extend_from_slice(&0u32.to_le_bytes());
                        out.extend_from_slice(&v4.octets());
                    }
                    IpAddr::V6(v6) => {
                        out.extend_from_slice(&1u32.to_le_bytes());
                        out.extend_from_slice(&v6.octets());
                    }
                }
                out.extend_from_slice(&[0; 12]);
            }
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RtsError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(RtsError::Short(self.data.len()))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, RtsError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn cookie(&mut self) -> Result<Cookie, RtsError> {
        let mut c = [0u8; 16];
        c.copy_from_slice(self.take(16)?);
        Ok(c)
    }
}

impl Rts {
    pub fn new(flags: u16, commands: Vec<Command>) -> Rts {
        Rts { flags, commands }
    }

    /// The PDU's octets.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![5, 0, PTYPE_RTS, 0x03, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&(self.commands.len() as u16).to_le_bytes());
        for command in &self.commands {
            command.encode(&mut out);
        }
        let len = out.len() as u16;
        out[8..10].copy_from_slice(&len.to_le_bytes());
        out
    }

    /// One whole PDU (its frag_length octets).
    pub fn decode(pdu: &[u8]) -> Result<Rts, RtsError> {
        if pdu.len() < HEADER_LEN {
            return Err(RtsError::Short(pdu.len()));
        }
        if pdu[0] != 5 || pdu[2] != PTYPE_RTS {
            return Err(RtsError::Header("rpc_vers is not 5 or PTYPE is not 20"));
        }
        if pdu[4] & 0xf0 != 0x10 {
            return Err(RtsError::Header("RTS PDUs are little-endian"));
        }
        let frag_length = usize::from(u16::from_le_bytes([pdu[8], pdu[9]]));
        if frag_length != pdu.len() {
            return Err(RtsError::Header("frag_length is not the PDU's length"));
        }
        if u16::from_le_bytes([pdu[10], pdu[11]]) != 0 {
            return Err(RtsError::Header("an RTS PDU has no authentication"));
        }
        let flags = u16::from_le_bytes([pdu[16], pdu[17]]);
        let count = u16::from_le_bytes([pdu[18], pdu[19]]);
        let mut r = Reader {
            data: pdu,
            at: HEADER_LEN,
        };
        let mut commands = Vec::with_capacity(usize::from(count).min(16));
        for _ in 0..count {
            let command = match r.u32()? {
                0 => Command::ReceiveWindowSize(r.u32()?),
                1 => Command::FlowControlAck(Ack {
                    bytes_received: r.u32()?,
                    available_window: r.u32()?,
                    channel_cookie: r.cookie()?,
                }),
                2 => Command::ConnectionTimeout(r.u32()?),
                3 => Command::Cookie(r.cookie()?),
                4 => Command::ChannelLifetime(r.u32()?),
                5 => Command::ClientKeepalive(r.u32()?),
                6 => Command::Version(r.u32()?),
                7 => Command::Empty,
                8 => {
                    let n = r.u32()?;
                    r.take(n as usize)?;
                    Command::Padding(n)
                }
                9 => Command::NegativeAnce,
                10 => Command::Ance,
                11 => {
                    let ip = match r.u32()? {
                        0 => {
                            let b = r.take(4)?;
                            IpAddr::from([b[0], b[1], b[2], b[3]])
                        }
                        1 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(r.take(16)?);
                            IpAddr::from(b)
                        }
                        other => return Err(RtsError::AddressType(other)),
                    };
                    r.take(12)?;
                    Command::ClientAddress(ip)
                }
                12 => Command::AssociationGroupId(r.cookie()?),
                13 => Command::Destination(r.u32()?),
                14 => Command::PingTrafficSentNotify(r.u32()?),
                other => return Err(RtsError::Command(other)),
            };
            commands.push(command);
        }
        if r.at != pdu.len() {
            return Err(RtsError::Trailing(count));
        }
        Ok(Rts { flags, commands })
    }

    /// The destination a PDU is to be forwarded to, if it names one.
    pub fn destination(&self) -> Option<u32> {
        self.commands.iter().find_map(|c| match c {
            Command::Destination(d) => Some(*d),
            _ => None,
        })
    }

    /// The flow control acknowledgment it carries, if any.
    pub fn ack(&self) -> Option<Ack> {
        self.commands.iter().find_map(|c| match c {
            Command::FlowControlAck(a) => Some(*a),
            _ => None,
        })
    }

    /// A Ping RTS PDU (2.2.4.49).
    pub fn ping() -> Rts {
        Rts::new(flags::PING, Vec::new())
    }

    /// The Echo RTS PDU of an echo response (2.2.4.48).
    pub fn echo() -> Rts {
        Rts::new(flags::ECHO, Vec::new())
    }

    /// A FlowControlAck RTS PDU (2.2.4.50).
    pub fn flow_control_ack(ack: Ack) -> Rts {
        Rts::new(flags::OTHER_CMD, vec![Command::FlowControlAck(ack)])
    }

    /// A FlowControlAckWithDestination RTS PDU (2.2.4.51).
    pub fn flow_control_ack_to(destination: u32, ack: Ack) -> Rts {
        Rts::new(
            flags::OTHER_CMD,
            vec![
                Command::Destination(destination),
                Command::FlowControlAck(ack),
            ],
        )
    }
}

/// Whole connection-oriented PDUs (RPC or RTS) out of a byte stream
/// that arrives in pieces, cut at each PDU's frag_length, as every role
/// of RPC over HTTP reads its channels.
#[derive(Debug, Default)]
pub struct PduStream {
    held: Vec<u8>,
}

impl PduStream {
    /// A stream whose first octets were already read.
    pub fn new(held: Vec<u8>) -> PduStream {
        PduStream { held }
    }

    /// Octets that came by other means (an HTTP body's pieces).
    pub fn push(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
    }

    /// What is held and not yet taken as a PDU.
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Drops `n` octets from the front (what is not a PDU: the legacy
    /// server response).
    pub fn skip(&mut self, n: usize) {
        self.held.drain(..n.min(self.held.len()));
    }

    /// The next whole PDU held, if there is one.
    pub fn take(&mut self) -> Result<Option<Vec<u8>>, RtsError> {
        let Some((_, len)) = peek(&self.held) else {
            return Ok(None);
        };
        if len < 16 {
            return Err(RtsError::Header("a PDU shorter than its header"));
        }
        if self.held.len() < len {
            return Ok(None);
        }
        let rest = self.held.split_off(len);
        Ok(Some(std::mem::replace(&mut self.held, rest)))
    }

    /// Reads what `from` has into the stream; false at its end.
    /// Cancel-safe: nothing read is lost if the future is dropped.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, from: &mut R) -> std::io::Result<bool> {
        self.held.reserve(16 * 1024);
        Ok(from.read_buf(&mut self.held).await? != 0)
    }

    /// The next PDU, read from `from` as needed; None at its end.
    pub async fn read<R: AsyncRead + Unpin>(
        &mut self,
        from: &mut R,
    ) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            let pdu = self
                .take()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if pdu.is_some() {
                return Ok(pdu);
            }
            if !self.fill(from).await? {
                return Ok(None);
            }
        }
    }
}

/// A sending channel's flow control (3.2.1.1.4, 3.2.1.5.1.2): RPC PDUs
/// wait while the receiver's window is short, and its acknowledgments
/// open it again.
#[derive(Debug)]
pub struct SendWindow {
    sent: u32,
    window: u32,
    queue: std::collections::VecDeque<Vec<u8>>,
    queued: u32,
}

impl SendWindow {
    /// `window`: the receiver's ReceiveWindowSize.
    pub fn new(window: u32) -> SendWindow {
        SendWindow {
            sent: 0,
            window,
            queue: Default::default(),
            queued: 0,
        }
    }

    /// Octets waiting for the window.
    pub fn queued(&self) -> u32 {
        self.queued
    }

    pub fn push(&mut self, pdu: Vec<u8>) {
        self.queued = self.queued.saturating_add(pdu.len() as u32);
        self.queue.push_back(pdu);
    }

    /// A FlowControlAck from the receiver: AvailableWindow less what is
    /// still on the way.
    pub fn acknowledged(&mut self, ack: &Ack) {
        self.window = ack
            .available_window
            .saturating_sub(self.sent.wrapping_sub(ack.bytes_received));
    }

    /// The PDUs the window lets go now, in order.
    pub fn ready(&mut self) -> Vec<Vec<u8>> {
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

    /// Every PDU still queued, whatever the window: what a channel being
    /// replaced sends before it goes (3.2.3.5.6).
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        self.queued = 0;
        self.queue.drain(..).collect()
    }

    /// A new channel to the same receiver, whose window is `window`: what
    /// is queued stays queued for it (the client's IN channel recycling,
    /// 3.2.2.5.5).
    pub fn renew(&mut self, window: u32) {
        self.sent = 0;
        self.window = window;
    }
}

/// A receiving channel's flow control (3.2.1.4.1.1): PDUs are consumed
/// when handed on, and the sender hears of the room that makes once its
/// own idea of the window is half a window short — after more arrived,
/// or after held PDUs left (else a sender waiting for room and a receiver
/// waiting for data would wait for each other).
#[derive(Debug)]
pub struct ReceiveWindow {
    size: u32,
    received: u32,
    acknowledged: u32,
    /// The available window the last acknowledgment gave.
    advertised: u32,
}

impl ReceiveWindow {
    /// `size`: the ReceiveWindowSize this side advertised.
    pub fn new(size: u32) -> ReceiveWindow {
        ReceiveWindow {
            size,
            received: 0,
            acknowledged: 0,
            advertised: size,
        }
    }

    /// `len` more octets of RPC PDUs arrived.
    pub fn arrived(&mut self, len: usize) {
        self.received = self.received.wrapping_add(len as u32);
    }

    /// The acknowledgment to send now, if one is due, with `queued`
    /// octets still held.
    pub fn due(&mut self, queued: u32, channel: Cookie) -> Option<Ack> {
        let in_flight = self.received.wrapping_sub(self.acknowledged);
        let senders_view = self.advertised.saturating_sub(in_flight);
        let available = self.size.saturating_sub(queued);
        if available.saturating_sub(senders_view) < self.size / 2 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_a1_is_76_octets_as_the_out_channel_request_says() {
        // 2.1.2.1.2: the OUT channel's Content-Length is 76, CONN/A1.
        let a1 = Rts::new(
            flags::NONE,
            vec![
                Command::Version(1),
                Command::Cookie([1; 16]),
                Command::Cookie([2; 16]),
                Command::ReceiveWindowSize(65536),
            ],
        );
        let octets = a1.encode();
        assert_eq!(octets.len(), 76);
        assert_eq!(&octets[..4], &[5, 0, 20, 3]);
        assert_eq!(u16::from_le_bytes([octets[8], octets[9]]), 76);
        assert_eq!(&octets[16..20], &[0, 0, 4, 0]);
        assert_eq!(Rts::decode(&octets), Ok(a1));
    }

    #[test]
    fn every_command_round_trips_and_bad_pdus_are_refused() {
        let all = Rts::new(
            flags::OTHER_CMD,
            vec![
                Command::ReceiveWindowSize(1),
                Command::FlowControlAck(Ack {
                    bytes_received: 2,
                    available_window: 3,
                    channel_cookie: [4; 16],
                }),
                Command::ConnectionTimeout(120_000),
                Command::Cookie([5; 16]),
                Command::ChannelLifetime(1 << 30),
                Command::ClientKeepalive(300_000),
                Command::Version(1),
                Command::Empty,
                Command::Padding(7),
                Command::NegativeAnce,
                Command::Ance,
                Command::ClientAddress("192.0.2.1".parse().unwrap()),
                Command::ClientAddress("2001:db8::1".parse().unwrap()),
                Command::AssociationGroupId([6; 16]),
                Command::Destination(destination::OUT_PROXY),
                Command::PingTrafficSentNotify(20),
            ],
        );
        let octets = all.encode();
        assert_eq!(Rts::decode(&octets), Ok(all.clone()));
        for cut in 0..octets.len() {
            assert!(Rts::decode(&octets[..cut]).is_err(), "cut at {cut}");
        }
        let mut unknown = Rts::ping().encode();
        unknown[18] = 1;
        unknown.extend_from_slice(&99u32.to_le_bytes());
        let len = unknown.len() as u16;
        unknown[8..10].copy_from_slice(&len.to_le_bytes());
        assert_eq!(Rts::decode(&unknown), Err(RtsError::Command(99)));
        let mut big_endian = Rts::ping().encode();
        big_endian[4] = 0;
        assert!(Rts::decode(&big_endian).is_err());
        assert_eq!(peek(&octets), Some((PTYPE_RTS, octets.len())));
    }

    #[test]
    fn room_made_by_forwarding_is_acknowledged_without_more_data() {
        let window = 256 * 1024;
        let mut r = ReceiveWindow::new(window);
        // Half a window arrives and is handed on at once: acknowledged.
        r.arrived(window as usize / 2);
        let ack = r.due(0, [1; 16]).unwrap();
        assert_eq!(
            (ack.bytes_received, ack.available_window),
            (window / 2, window)
        );
        // A whole window arrives while the next hop is closed: held.
        r.arrived(window as usize);
        assert_eq!(r.due(window, [1; 16]), None);
        // Then it drains, with nothing more arriving: the sender hears.
        let ack = r.due(0, [1; 16]).unwrap();
        assert_eq!(ack.available_window, window);
        assert_eq!(r.due(0, [1; 16]), None);
    }

    #[test]
    fn a_send_window_holds_what_does_not_fit_until_acknowledged() {
        let mut w = SendWindow::new(100);
        w.push(vec![0; 60]);
        w.push(vec![0; 60]);
        assert_eq!(w.ready().len(), 1);
        assert_eq!(w.queued(), 60);
        // The receiver took the first 60 and has 100 free again.
        w.acknowledged(&Ack {
            bytes_received: 60,
            available_window: 100,
            channel_cookie: [0; 16],
        });
        assert_eq!(w.ready().len(), 1);
        assert_eq!(w.queued(), 0);
    }

    #[test]
    fn a_pdu_stream_cuts_at_frag_length() {
        let ping = Rts::ping().encode();
        let mut two = ping.clone();
        two.extend_from_slice(&ping);
        let mut s = PduStream::new(two[..25].to_vec());
        assert_eq!(s.take(), Ok(Some(ping.clone())));
        assert_eq!(s.take(), Ok(None));
        let mut short = ping.clone();
        short[8] = 8;
        assert!(PduStream::new(short).take().is_err());
    }
}
