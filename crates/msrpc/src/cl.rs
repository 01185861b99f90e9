//! Connectionless RPC PDUs (ncadg_ip_udp): the 80-octet header of
//! [C706] 12.1 (whose integers and UUIDs follow the sender's data
//! representation, little- or big-endian) and the bodies of the packet
//! types whose bodies are not stub data: fack and nocall (12.5.3.4),
//! cl_cancel ("quit") and cancel_ack ("quack"), fault and reject (a
//! status). [MS-RPCE] 2.2.3 adds PF2_UNRELATED to the second flags and
//! the sec_trailer_cl after stub data (2.2.3.4).
//!
//! Decoding checks every length against the datagram and keeps the
//! body's octets (stub data, or a typed body read with the accessors);
//! encoding writes the header in the representation the packet names.

pub mod protection;
pub mod window;

use crate::Uuid;

/// The header's length.
pub const HEADER_LEN: usize = 80;
/// rpc_vers of every connectionless PDU.
pub const RPC_VERSION: u8 = 4;

/// The packet types (ptype).
pub mod ptype {
    pub const REQUEST: u8 = 0;
    pub const PING: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const FAULT: u8 = 3;
    pub const WORKING: u8 = 4;
    pub const NOCALL: u8 = 5;
    pub const REJECT: u8 = 6;
    pub const ACK: u8 = 7;
    /// cl_cancel, once called quit.
    pub const CL_CANCEL: u8 = 8;
    pub const FACK: u8 = 9;
    /// cancel_ack, once called quack.
    pub const CANCEL_ACK: u8 = 10;
}

/// The first flags (flags1).
pub mod flags1 {
    pub const LAST_FRAG: u8 = 0x02;
    pub const FRAG: u8 = 0x04;
    /// The receiver need not acknowledge this fragment with a fack.
    pub const NO_FACK: u8 = 0x08;
    /// A `maybe` call: no response is wanted.
    pub const MAYBE: u8 = 0x10;
    pub const IDEMPOTENT: u8 = 0x20;
    pub const BROADCAST: u8 = 0x40;
}

/// The second flags (flags2).
pub mod flags2 {
    pub const CANCEL_PENDING: u8 = 0x02;
    /// [MS-RPCE] 2.2.3.3: the request does not end the activity's earlier
    /// calls.
    pub const UNRELATED: u8 = 0x04;
}

/// Why a datagram is not a connectionless PDU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClError {
    #[error("the datagram is {0} octets, shorter than the 80-octet header")]
    Short(usize),
    #[error("rpc_vers is {0}, not 4")]
    Version(u8),
    #[error("unknown packet type {0}")]
    PacketType(u8),
    #[error("the header says the body is {said} octets; the datagram holds {held}")]
    BodyLength { said: usize, held: usize },
    #[error("the {what} body is cut short")]
    ShortBody { what: &'static str },
    #[error("a body of {0} octets does not fit one datagram (65535 at most)")]
    TooLong(usize),
}

/// The sender's data representation, as far as the header cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drep {
    pub little_endian: bool,
    /// The character (ASCII 0, EBCDIC 1) and float representations,
    /// kept to send back.
    pub chars_floats: [u8; 2],
}

impl Drep {
    pub const LITTLE: Drep = Drep {
        little_endian: true,
        chars_floats: [0, 0],
    };
    pub const BIG: Drep = Drep {
        little_endian: false,
        chars_floats: [0, 0],
    };

    fn octets(&self) -> [u8; 3] {
        [
            (u8::from(self.little_endian) << 4) | (self.chars_floats[0] & 0x0f),
            self.chars_floats[1],
            0,
        ]
    }

    fn of(octets: [u8; 3]) -> Drep {
        Drep {
            little_endian: octets[0] >> 4 == 1,
            chars_floats: [octets[0] & 0x0f, octets[1]],
        }
    }
}

/// The header (dc_rpc_cl_pkt_hdr_t).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub ptype: u8,
    pub flags1: u8,
    pub flags2: u8,
    pub drep: Drep,
    pub object: Uuid,
    pub interface: Uuid,
    pub activity: Uuid,
    pub server_boot: u32,
    pub interface_version: u32,
    pub seqnum: u32,
    pub opnum: u16,
    pub interface_hint: u16,
    pub activity_hint: u16,
    pub fragnum: u16,
    pub auth_proto: u8,
    /// The fragment's serial number (serial_hi and serial_lo).
    pub serial: u16,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            ptype: ptype::REQUEST,
            flags1: 0,
            flags2: 0,
            drep: Drep::LITTLE,
            object: Uuid::NIL,
            interface: Uuid::NIL,
            activity: Uuid::NIL,
            server_boot: 0,
            interface_version: 0,
            seqnum: 0,
            opnum: 0,
            interface_hint: 0xffff,
            activity_hint: 0xffff,
            fragnum: 0,
            auth_proto: 0,
            serial: 0,
        }
    }
}

/// A connectionless PDU: its header and body octets (stub data, or the
/// body of a fack, fault, … read with the accessors below).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub header: Header,
    pub body: Vec<u8>,
}

/// The body of a fack, or of a nocall that carries one (12.5.3.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fack {
    pub version: u8,
    pub window_size: u16,
    pub max_tsdu: u32,
    pub max_frag_size: u32,
    /// The serial number of the fragment that caused this fack.
    pub serial_num: u16,
    /// Selective acknowledgement: bit n of word w set for fragment
    /// fragnum + 1 + 32w + n received.
    pub selack: Vec<u32>,
}

/// The body of a cl_cancel (`cancel_id`), or of a cancel_ack
/// (`server_is_accepting` too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cancel {
    pub version: u32,
    pub cancel_id: u32,
    pub server_is_accepting: Option<bool>,
}

/// sec_trailer_cl ([MS-RPCE] 2.2.3.4) and the authentication token after
/// its padding (2.2.3.5). The body before it is padded to a multiple of 8
/// octets, counted in the header's `len`, so that the trailer starts where
/// `len` ends (as Wireshark reads it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthTrailer {
    pub level: u8,
    pub key_vers_num: u8,
    pub token: Vec<u8>,
}

/// Octets between sec_trailer_cl and the token: MessageBlockSize rounded
/// up to 4, less 2, at the privacy level, and 2 otherwise (2.2.3.4); NTLM's
/// block size is 1, so 2 at every level.
const TRAILER_PADDING: usize = 2;

impl AuthTrailer {
    /// What a trailer with a token of `token_len` octets adds.
    pub const fn len(token_len: usize) -> usize {
        2 + TRAILER_PADDING + token_len
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.level, self.key_vers_num]);
        out.extend_from_slice(&[0; TRAILER_PADDING]);
        out.extend_from_slice(&self.token);
    }

    fn decode(bytes: &[u8]) -> Result<AuthTrailer, ClError> {
        if bytes.len() < 2 + TRAILER_PADDING {
            return Err(ClError::ShortBody {
                what: "authentication trailer",
            });
        }
        Ok(AuthTrailer {
            level: bytes[0],
            key_vers_num: bytes[1],
            token: bytes[2 + TRAILER_PADDING..].to_vec(),
        })
    }
}

/// Integers in the representation a packet names.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    little: bool,
}

impl Writer<'_> {
    fn u16(&mut self, v: u16) {
        let b = if self.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn uuid(&mut self, u: &Uuid) {
        self.u32(u.time_low);
        self.u16(u.time_mid);
        self.u16(u.time_hi_and_version);
        self.out.extend_from_slice(&u.clock_seq_and_node);
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    little: bool,
    what: &'static str,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ClError> {
        let bytes = self
            .data
            .get(self.at..self.at + N)
            .ok_or(ClError::ShortBody { what: self.what })?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, ClError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ClError> {
        let b = self.take::<2>()?;
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&mut self) -> Result<u32, ClError> {
        let b = self.take::<4>()?;
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn uuid(&mut self) -> Result<Uuid, ClError> {
        Ok(Uuid {
            time_low: self.u32()?,
            time_mid: self.u16()?,
            time_hi_and_version: self.u16()?,
            clock_seq_and_node: self.take::<8>()?,
        })
    }
}

impl Pdu {
    /// The datagram; a body longer than the header's `len` can say is
    /// refused (it goes in fragments).
    pub fn encode(&self) -> Result<Vec<u8>, ClError> {
        let len = u16::try_from(self.body.len()).map_err(|_| ClError::TooLong(self.body.len()))?;
        let h = &self.header;
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.extend_from_slice(&[RPC_VERSION, h.ptype, h.flags1, h.flags2]);
        out.extend_from_slice(&h.drep.octets());
        out.push((h.serial >> 8) as u8);
        let mut w = Writer {
            out: &mut out,
            little: h.drep.little_endian,
        };
        w.uuid(&h.object);
        w.uuid(&h.interface);
        w.uuid(&h.activity);
        w.u32(h.server_boot);
        w.u32(h.interface_version);
        w.u32(h.seqnum);
        w.u16(h.opnum);
        w.u16(h.interface_hint);
        w.u16(h.activity_hint);
        w.u16(len);
        w.u16(h.fragnum);
        out.push(h.auth_proto);
        out.push(h.serial as u8);
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// A datagram as a PDU. Octets after the body (an authentication
    /// trailer, whose token's length only the datagram gives) are allowed
    /// when `auth_proto` is set and refused otherwise; they are left out
    /// of the body ([`Pdu::decode_with_trailer`] reads them).
    pub fn decode(datagram: &[u8]) -> Result<Pdu, ClError> {
        Ok(Pdu::decode_with_trailer(datagram)?.0)
    }

    /// A datagram as a PDU and, when `auth_proto` is set and octets follow
    /// the body, its authentication trailer.
    pub fn decode_with_trailer(datagram: &[u8]) -> Result<(Pdu, Option<AuthTrailer>), ClError> {
        if datagram.len() < HEADER_LEN {
            return Err(ClError::Short(datagram.len()));
        }
        if datagram[0] != RPC_VERSION {
            return Err(ClError::Version(datagram[0]));
        }
        let ptype = datagram[1];
        if ptype > ptype::CANCEL_ACK {
            return Err(ClError::PacketType(ptype));
        }
        let drep = Drep::of([datagram[4], datagram[5], datagram[6]]);
        let mut r = Reader {
            data: datagram,
            at: 8,
            little: drep.little_endian,
            what: "header",
        };
        let object = r.uuid()?;
        let interface = r.uuid()?;
        let activity = r.uuid()?;
        let server_boot = r.u32()?;
        let interface_version = r.u32()?;
        let seqnum = r.u32()?;
        let opnum = r.u16()?;
        let interface_hint = r.u16()?;
        let activity_hint = r.u16()?;
        let len = r.u16()? as usize;
        let fragnum = r.u16()?;
        let auth_proto = r.u8()?;
        let serial_lo = r.u8()?;
        let held = datagram.len() - HEADER_LEN;
        let body_end = HEADER_LEN + len;
        let trailer = if auth_proto != 0 {
            // The trailer follows the body; the token runs to the end.
            if len > held {
                return Err(ClError::BodyLength { said: len, held });
            }
            let after = &datagram[body_end..];
            (!after.is_empty())
                .then(|| AuthTrailer::decode(after))
                .transpose()?
        } else {
            if len != held {
                return Err(ClError::BodyLength { said: len, held });
            }
            None
        };
        Ok((
            Pdu {
                header: Header {
                    ptype,
                    flags1: datagram[2],
                    flags2: datagram[3],
                    drep,
                    object,
                    interface,
                    activity,
                    server_boot,
                    interface_version,
                    seqnum,
                    opnum,
                    interface_hint,
                    activity_hint,
                    fragnum,
                    auth_proto,
                    serial: (u16::from(datagram[7]) << 8) | u16::from(serial_lo),
                },
                body: datagram[HEADER_LEN..body_end].to_vec(),
            },
            trailer,
        ))
    }

    /// The datagram with an authentication trailer after the body, which
    /// the caller has padded to a multiple of 8 octets.
    pub fn encode_with_trailer(&self, trailer: &AuthTrailer) -> Result<Vec<u8>, ClError> {
        let mut out = self.encode()?;
        trailer.encode(&mut out);
        Ok(out)
    }

    fn reader<'a>(&'a self, what: &'static str) -> Reader<'a> {
        Reader {
            data: &self.body,
            at: 0,
            little: self.header.drep.little_endian,
            what,
        }
    }

    fn writer(drep: Drep, out: &mut Vec<u8>) -> Writer<'_> {
        Writer {
            out,
            little: drep.little_endian,
        }
    }

    /// A fault's or reject's status.
    pub fn status(&self) -> Result<u32, ClError> {
        self.reader("fault or reject").u32()
    }

    /// The body of a fault or reject: a status.
    pub fn status_body(drep: Drep, status: u32) -> Vec<u8> {
        let mut out = Vec::new();
        Self::writer(drep, &mut out).u32(status);
        out
    }

    /// A fack's body (or a nocall's, when it carries one: `None` for an
    /// empty nocall).
    pub fn fack(&self) -> Result<Option<Fack>, ClError> {
        if self.body.is_empty() {
            return Ok(None);
        }
        let mut r = self.reader("fack");
        let version = r.u8()?;
        let _pad = r.u8()?;
        let window_size = r.u16()?;
        let max_tsdu = r.u32()?;
        let max_frag_size = r.u32()?;
        let serial_num = r.u16()?;
        let count = r.u16()? as usize;
        let mut selack = Vec::with_capacity(count.min(256));
        for _ in 0..count {
            selack.push(r.u32()?);
        }
        Ok(Some(Fack {
            version,
            window_size,
            max_tsdu,
            max_frag_size,
            serial_num,
            selack,
        }))
    }

    /// A fack's body.
    pub fn fack_body(drep: Drep, fack: &Fack) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Self::writer(drep, &mut out);
        w.out.extend_from_slice(&[fack.version, 0]);
        w.u16(fack.window_size);
        w.u32(fack.max_tsdu);
        w.u32(fack.max_frag_size);
        w.u16(fack.serial_num);
        w.u16(fack.selack.len() as u16);
        for word in &fack.selack {
            w.u32(*word);
        }
        out
    }

    /// A cl_cancel's or cancel_ack's body.
    pub fn cancel(&self) -> Result<Cancel, ClError> {
        let mut r = self.reader("cancel");
        let version = r.u32()?;
        let cancel_id = r.u32()?;
        let server_is_accepting = if self.header.ptype == ptype::CANCEL_ACK {
            Some(r.u32()? != 0)
        } else {
            None
        };
        Ok(Cancel {
            version,
            cancel_id,
            server_is_accepting,
        })
    }

    /// A cl_cancel's body, or a cancel_ack's with `server_is_accepting`.
    pub fn cancel_body(drep: Drep, cancel: &Cancel) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Self::writer(drep, &mut out);
        w.u32(cancel.version);
        w.u32(cancel.cancel_id);
        if let Some(accepting) = cancel.server_is_accepting {
            w.u32(u32::from(accepting));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(drep: Drep) -> Pdu {
        Pdu {
            header: Header {
                ptype: ptype::REQUEST,
                flags1: flags1::LAST_FRAG | flags1::IDEMPOTENT,
                flags2: flags2::UNRELATED,
                drep,
                object: Uuid::parse("00000000-0000-0000-0000-000000000000").unwrap(),
                interface: Uuid::parse("afa8bd80-7d8a-11c9-bef4-08002b102989").unwrap(),
                activity: Uuid::parse("6f1e3a48-95c2-4d6e-9b8e-1a2b3c4d5e6f").unwrap(),
                server_boot: 0x1234_5678,
                interface_version: 1,
                seqnum: 7,
                opnum: 2,
                fragnum: 0,
                serial: 0x0102,
                ..Header::default()
            },
            body: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn headers_round_trip_in_both_byte_orders_at_their_offsets() {
        for drep in [Drep::LITTLE, Drep::BIG] {
            let pdu = request(drep);
            let wire = pdu.encode().unwrap();
            assert_eq!(wire.len(), HEADER_LEN + 4);
            assert_eq!(Pdu::decode(&wire), Ok(pdu.clone()));
            // Offsets of C706 12.1: drep at 4, serial_hi at 7, the
            // interface at 24, opnum at 68, len at 74, serial_lo at 79.
            assert_eq!(wire[4], if drep.little_endian { 0x10 } else { 0x00 });
            assert_eq!((wire[7], wire[79]), (0x01, 0x02));
            let opnum = [wire[68], wire[69]];
            let len = [wire[74], wire[75]];
            if drep.little_endian {
                assert_eq!(u16::from_le_bytes(opnum), 2);
                assert_eq!(u16::from_le_bytes(len), 4);
                assert_eq!(&wire[24..28], &0xafa8_bd80u32.to_le_bytes());
            } else {
                assert_eq!(u16::from_be_bytes(opnum), 2);
                assert_eq!(u16::from_be_bytes(len), 4);
                assert_eq!(&wire[24..28], &0xafa8_bd80u32.to_be_bytes());
            }
        }
    }

    #[test]
    fn bodies_read_back_and_bad_datagrams_are_refused() {
        for drep in [Drep::LITTLE, Drep::BIG] {
            let fack = Fack {
                version: 1,
                window_size: 16,
                max_tsdu: 65528,
                max_frag_size: 1464,
                serial_num: 3,
                selack: vec![0b1011],
            };
            let pdu = Pdu {
                header: Header {
                    ptype: ptype::FACK,
                    drep,
                    ..Header::default()
                },
                body: Pdu::fack_body(drep, &fack),
            };
            let back = Pdu::decode(&pdu.encode().unwrap()).unwrap();
            assert_eq!(back.fack(), Ok(Some(fack)));
            let quack = Cancel {
                version: 0,
                cancel_id: 9,
                server_is_accepting: Some(true),
            };
            let pdu = Pdu {
                header: Header {
                    ptype: ptype::CANCEL_ACK,
                    drep,
                    ..Header::default()
                },
                body: Pdu::cancel_body(drep, &quack),
            };
            assert_eq!(
                Pdu::decode(&pdu.encode().unwrap()).unwrap().cancel(),
                Ok(quack)
            );
            let fault = Pdu {
                header: Header {
                    ptype: ptype::FAULT,
                    drep,
                    ..Header::default()
                },
                body: Pdu::status_body(drep, 0x1c01_0003),
            };
            assert_eq!(
                Pdu::decode(&fault.encode().unwrap()).unwrap().status(),
                Ok(0x1c01_0003)
            );
        }
        let huge = Pdu {
            header: Header::default(),
            body: vec![0; 65536],
        };
        assert_eq!(huge.encode(), Err(ClError::TooLong(65536)));
        let nocall = Pdu {
            header: Header {
                ptype: ptype::NOCALL,
                ..Header::default()
            },
            body: Vec::new(),
        };
        assert_eq!(
            Pdu::decode(&nocall.encode().unwrap()).unwrap().fack(),
            Ok(None)
        );
        let wire = request(Drep::LITTLE).encode().unwrap();
        assert_eq!(Pdu::decode(&wire[..40]), Err(ClError::Short(40)));
        assert!(matches!(
            Pdu::decode(&wire[..wire.len() - 1]),
            Err(ClError::BodyLength { said: 4, held: 3 })
        ));
        let mut v5 = wire.clone();
        v5[0] = 5;
        assert_eq!(Pdu::decode(&v5), Err(ClError::Version(5)));
        let mut odd = wire.clone();
        odd[1] = 11;
        assert_eq!(Pdu::decode(&odd), Err(ClError::PacketType(11)));
        // A fack body cut short says so.
        let short = Pdu {
            header: Header {
                ptype: ptype::FACK,
                ..Header::default()
            },
            body: vec![0; 5],
        };
        assert_eq!(short.fack(), Err(ClError::ShortBody { what: "fack" }));
    }
}
