//! Connection-oriented PDUs (C706 section 12.6 with [MS-RPCE] 2.2.2):
//! decoded from either data representation with every count and length
//! checked against the bytes present, and encoded in little-endian NDR
//! representation, as Windows sends them.

use crate::uuid::Uuid;

/// bind_nak reasons ([MS-RPCE] 2.2.2.5, C706 12.6.3.1).
pub mod nak {
    pub const NOT_SPECIFIED: u16 = 0;
    pub const TEMPORARY_CONGESTION: u16 = 1;
    pub const LOCAL_LIMIT_EXCEEDED: u16 = 2;
    pub const CALLED_PADDR_UNKNOWN: u16 = 3;
    pub const PROTOCOL_ERROR: u16 = 4;
    pub const DEFAULT_CONTEXT_NOT_SUPPORTED: u16 = 5;
    pub const USER_DATA_NOT_READABLE: u16 = 6;
    pub const NO_PSAP_AVAILABLE: u16 = 7;
    pub const AUTHENTICATION_TYPE_NOT_RECOGNIZED: u16 = 8;
    pub const INVALID_CHECKSUM: u16 = 9;

    /// What a reason means, for messages.
    pub fn name(reason: u16) -> &'static str {
        match reason {
            NOT_SPECIFIED => "reason not specified",
            TEMPORARY_CONGESTION => "temporary congestion",
            LOCAL_LIMIT_EXCEEDED => "local limit exceeded",
            CALLED_PADDR_UNKNOWN => "called address unknown",
            PROTOCOL_ERROR => "protocol version not supported",
            DEFAULT_CONTEXT_NOT_SUPPORTED => "default context not supported",
            USER_DATA_NOT_READABLE => "user data not readable",
            NO_PSAP_AVAILABLE => "no presentation service access point available",
            AUTHENTICATION_TYPE_NOT_RECOGNIZED => "authentication type not recognized",
            INVALID_CHECKSUM => "the authentication failed",
            _ => "unknown reason",
        }
    }
}

/// The PDU types of connection-oriented RPC (C706 12.6.4, [MS-RPCE]
/// 2.2.2.10 for rpc_auth_3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PduType {
    Request = 0,
    Response = 2,
    Fault = 3,
    Bind = 11,
    BindAck = 12,
    BindNak = 13,
    AlterContext = 14,
    AlterContextResp = 15,
    Auth3 = 16,
    Shutdown = 17,
    CoCancel = 18,
    Orphaned = 19,
}

impl PduType {
    pub fn from_u8(v: u8) -> Result<PduType, PduError> {
        Ok(match v {
            0 => Self::Request,
            2 => Self::Response,
            3 => Self::Fault,
            11 => Self::Bind,
            12 => Self::BindAck,
            13 => Self::BindNak,
            14 => Self::AlterContext,
            15 => Self::AlterContextResp,
            16 => Self::Auth3,
            17 => Self::Shutdown,
            18 => Self::CoCancel,
            19 => Self::Orphaned,
            // ping, working, nocall, reject, ack, cl_cancel, fack, cancel_ack
            1 | 4..=10 => return Err(PduError::Connectionless(v)),
            other => return Err(PduError::UnknownType(other)),
        })
    }
}

/// pfc_flags (C706 12.6.3.1; [MS-RPCE] 2.2.2.3).
pub mod flags {
    pub const FIRST_FRAG: u8 = 0x01;
    pub const LAST_FRAG: u8 = 0x02;
    /// PFC_PENDING_CANCEL, except on bind, bind_ack, alter_context,
    /// alter_context_resp and rpc_auth_3, where it is
    /// PFC_SUPPORT_HEADER_SIGN.
    pub const PENDING_CANCEL: u8 = 0x04;
    pub const SUPPORT_HEADER_SIGN: u8 = 0x04;
    pub const CONC_MPX: u8 = 0x10;
    pub const DID_NOT_EXECUTE: u8 = 0x20;
    pub const MAYBE: u8 = 0x40;
    pub const OBJECT_UUID: u8 = 0x80;
}

/// The size of the common header.
pub const HEADER_LEN: usize = 16;
/// The size of the sec_trailer ([MS-RPCE] 2.2.2.11).
pub const SEC_TRAILER_LEN: usize = 8;
/// packed_drep for little-endian integers, ASCII, IEEE floats.
pub const NDR_LITTLE_ENDIAN: [u8; 4] = [0x10, 0, 0, 0];

/// Why bytes are not a PDU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("{needed} bytes are needed for {what}, {have} are there")]
    Truncated {
        what: &'static str,
        needed: usize,
        have: usize,
    },
    #[error("protocol version {0}.{1} is not 5.0 or 5.1")]
    Version(u8, u8),
    #[error("PDU type {0} is connectionless, not connection-oriented")]
    Connectionless(u8),
    #[error("PDU type {0} is unknown")]
    UnknownType(u8),
    #[error("frag_length {declared} does not match the {actual} bytes of the fragment")]
    FragLength { declared: usize, actual: usize },
    #[error("auth_length {auth_length} does not fit a fragment of {frag_length} bytes")]
    AuthLength {
        auth_length: usize,
        frag_length: usize,
    },
    #[error("the data representation {0:#04x} is not ASCII with IEEE floats")]
    DataRep(u8),
    #[error("{0}")]
    Invalid(&'static str),
}

/// A presentation syntax: an interface or transfer syntax and its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyntaxId {
    pub uuid: Uuid,
    /// major in the low 16 bits, minor in the high 16 (as on the wire).
    pub version: u32,
}

impl SyntaxId {
    pub fn new(uuid: Uuid, major: u16, minor: u16) -> SyntaxId {
        SyntaxId {
            uuid,
            version: u32::from(major) | (u32::from(minor) << 16),
        }
    }

    pub fn major(&self) -> u16 {
        self.version as u16
    }

    pub fn minor(&self) -> u16 {
        (self.version >> 16) as u16
    }
}

/// p_cont_elem_t: one presentation context offered in a bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextElem {
    pub context_id: u16,
    pub abstract_syntax: SyntaxId,
    pub transfer_syntaxes: Vec<SyntaxId>,
}

/// p_result_t: the answer for one offered context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextResult {
    /// 0 acceptance, 1 user rejection, 2 provider rejection,
    /// 3 negotiate_ack ([MS-RPCE] 2.2.2.4).
    pub result: u16,
    pub reason: u16,
    pub transfer_syntax: SyntaxId,
}

/// The body of a bind or alter_context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    pub assoc_group_id: u32,
    pub contexts: Vec<ContextElem>,
}

/// The body of a bind_ack or alter_context_resp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindAck {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    pub assoc_group_id: u32,
    /// The secondary address (port_any_t), without its terminating NUL;
    /// empty in an alter_context_resp.
    pub secondary_address: Vec<u8>,
    pub results: Vec<ContextResult>,
}

/// The body of a bind_nak ([MS-RPCE] 2.2.2.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindNak {
    pub reason: u16,
    /// (major, minor) protocol versions supported.
    pub versions: Vec<(u8, u8)>,
    /// The optional signature; with the extended error signature, the
    /// extended error information follows.
    pub signature: Option<Uuid>,
    pub extended_error: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub opnum: u16,
    /// Present when PFC_OBJECT_UUID is set.
    pub object: Option<Uuid>,
    pub stub: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub cancel_count: u8,
    pub stub: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub cancel_count: u8,
    /// [MS-RPCE] 2.2.2.6: bit 0x01 extended error information present.
    pub fault_flags: u8,
    pub status: u32,
    pub stub: Vec<u8>,
}

/// A PDU's body, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Bind(Bind),
    AlterContext(Bind),
    BindAck(BindAck),
    AlterContextResp(BindAck),
    BindNak(BindNak),
    Request(Request),
    Response(Response),
    Fault(Fault),
    Auth3,
    Shutdown,
    CoCancel,
    Orphaned,
}

impl Body {
    pub fn pdu_type(&self) -> PduType {
        match self {
            Body::Bind(_) => PduType::Bind,
            Body::AlterContext(_) => PduType::AlterContext,
            Body::BindAck(_) => PduType::BindAck,
            Body::AlterContextResp(_) => PduType::AlterContextResp,
            Body::BindNak(_) => PduType::BindNak,
            Body::Request(_) => PduType::Request,
            Body::Response(_) => PduType::Response,
            Body::Fault(_) => PduType::Fault,
            Body::Auth3 => PduType::Auth3,
            Body::Shutdown => PduType::Shutdown,
            Body::CoCancel => PduType::CoCancel,
            Body::Orphaned => PduType::Orphaned,
        }
    }
}

/// The sec_trailer ([MS-RPCE] 2.2.2.11) and the authentication token
/// after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    pub auth_type: u8,
    pub auth_level: u8,
    /// auth_pad_length: padding octets before the trailer.
    pub pad_length: u8,
    pub context_id: u32,
    pub token: Vec<u8>,
}

/// A whole fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub rpc_vers_minor: u8,
    pub flags: u8,
    pub drep: [u8; 4],
    pub call_id: u32,
    pub body: Body,
    pub auth: Option<Auth>,
}

/// The size of a request or response header, before the stub data.
pub const CALL_HEADER_LEN: usize = 24;

/// How a stub of `len` bytes is cut into the fragments of one call whose
/// fragments may be `max_frag` bytes long: for each, its PFC flags
/// (first/last) and its byte range. The stub data of every fragment but
/// the last is a multiple of 8 bytes, as NDR64 alignment expects; an empty
/// stub is one fragment.
pub fn fragments(
    len: usize,
    max_frag: usize,
) -> impl Iterator<Item = (u8, std::ops::Range<usize>)> {
    let room = (max_frag.saturating_sub(CALL_HEADER_LEN) & !7).max(8);
    let count = len.div_ceil(room).max(1);
    (0..count).map(move |i| {
        let start = i * room;
        let end = (start + room).min(len);
        let mut pfc = 0;
        if i == 0 {
            pfc |= flags::FIRST_FRAG;
        }
        if i + 1 == count {
            pfc |= flags::LAST_FRAG;
        }
        (pfc, start..end)
    })
}

/// A call's stub cut as [`fragments`] cuts it: for each fragment its PFC
/// flags, its alloc_hint (the stub bytes from its start to the end,
/// [MS-RPCE] 2.2.2.6) and its stub data. A stub that fits in one fragment
/// is handed over as it is, not copied.
pub fn stub_fragments(
    mut stub: Vec<u8>,
    max_frag: usize,
) -> impl Iterator<Item = (u8, u32, Vec<u8>)> {
    let len = stub.len();
    fragments(len, max_frag).map(move |(pfc, range)| {
        let alloc_hint = (len - range.start) as u32;
        let data = if range.len() == len {
            std::mem::take(&mut stub)
        } else {
            stub[range].to_vec()
        };
        (pfc, alloc_hint, data)
    })
}

/// The frag_length of a fragment whose first 16 bytes are `header`, to
/// frame PDUs on a byte stream.
pub fn frag_length(header: &[u8]) -> Result<usize, PduError> {
    if header.len() < HEADER_LEN {
        return Err(PduError::Truncated {
            what: "the common header",
            needed: HEADER_LEN,
            have: header.len(),
        });
    }
    check_version(header[0], header[1])?;
    let bytes = [header[8], header[9]];
    let len = usize::from(if header[4] & 0xF0 == 0 {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    });
    if len < HEADER_LEN {
        return Err(PduError::Invalid("frag_length is shorter than the header"));
    }
    Ok(len)
}

fn check_version(major: u8, minor: u8) -> Result<(), PduError> {
    if major != 5 || minor > 1 {
        return Err(PduError::Version(major, minor));
    }
    Ok(())
}

/// A bounds-checked reader in the PDU's byte order.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    little: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PduError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(PduError::Truncated {
                what,
                needed: self.at.saturating_add(n),
                have: self.data.len(),
            })?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PduError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, PduError> {
        let b = self.take(2, what)?;
        let b = [b[0], b[1]];
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PduError> {
        let b = self.take(4, what)?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn uuid(&mut self, what: &'static str) -> Result<Uuid, PduError> {
        let time_low = self.u32(what)?;
        let time_mid = self.u16(what)?;
        let time_hi_and_version = self.u16(what)?;
        let mut clock_seq_and_node = [0u8; 8];
        clock_seq_and_node.copy_from_slice(self.take(8, what)?);
        Ok(Uuid {
            time_low,
            time_mid,
            time_hi_and_version,
            clock_seq_and_node,
        })
    }

    fn syntax(&mut self, what: &'static str) -> Result<SyntaxId, PduError> {
        Ok(SyntaxId {
            uuid: self.uuid(what)?,
            version: self.u32(what)?,
        })
    }

    fn align(&mut self, n: usize) -> Result<(), PduError> {
        let pad = (n - self.at % n) % n;
        self.take(pad, "alignment padding").map(|_| ())
    }

    fn rest(&mut self) -> &'a [u8] {
        let s = &self.data[self.at.min(self.data.len())..];
        self.at = self.data.len();
        s
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.at)
    }
}

/// The extended error information signature ([MS-RPCE] 2.2.1.1.2).
pub fn extended_error_signature() -> Uuid {
    Uuid::parse("90740320-fad0-11d3-82d7-009027b130ab").unwrap_or(Uuid::NIL)
}

impl Pdu {
    pub fn pdu_type(&self) -> PduType {
        self.body.pdu_type()
    }

    /// Decodes one whole fragment.
    pub fn decode(bytes: &[u8]) -> Result<Pdu, PduError> {
        let declared = frag_length(bytes)?;
        if declared != bytes.len() {
            return Err(PduError::FragLength {
                declared,
                actual: bytes.len(),
            });
        }
        let ptype = PduType::from_u8(bytes[2])?;
        let flags = bytes[3];
        let drep = [bytes[4], bytes[5], bytes[6], bytes[7]];
        if drep[0] & 0x0F != 0 || drep[1] != 0 {
            return Err(PduError::DataRep(drep[0]));
        }
        let little = drep[0] & 0xF0 != 0;
        let mut header = Reader {
            data: bytes,
            at: 10,
            little,
        };
        let auth_length = usize::from(header.u16("auth_length")?);
        let call_id = header.u32("call_id")?;
        // The body ends where the sec_trailer begins.
        let (body_end, auth) = if auth_length == 0 {
            (bytes.len(), None)
        } else {
            let trailer_at = bytes
                .len()
                .checked_sub(auth_length + SEC_TRAILER_LEN)
                .filter(|at| *at >= HEADER_LEN)
                .ok_or(PduError::AuthLength {
                    auth_length,
                    frag_length: bytes.len(),
                })?;
            let mut t = Reader {
                data: bytes,
                at: trailer_at,
                little,
            };
            let auth_type = t.u8("sec_trailer")?;
            let auth_level = t.u8("sec_trailer")?;
            let pad_length = t.u8("sec_trailer")?;
            let _reserved = t.u8("sec_trailer")?;
            let context_id = t.u32("sec_trailer")?;
            let token = t.rest().to_vec();
            if usize::from(pad_length) > trailer_at - HEADER_LEN {
                return Err(PduError::Invalid("auth_pad_length is longer than the body"));
            }
            (
                trailer_at,
                Some(Auth {
                    auth_type,
                    auth_level,
                    pad_length,
                    context_id,
                    token,
                }),
            )
        };
        let mut r = Reader {
            data: &bytes[..body_end],
            at: HEADER_LEN,
            little,
        };
        // Stub data ends before the authentication padding.
        let pad = auth.as_ref().map_or(0, |a| usize::from(a.pad_length));
        let stub = |r: &mut Reader<'_>| -> Result<Vec<u8>, PduError> {
            let rest = r.rest();
            let len = rest.len().checked_sub(pad).ok_or(PduError::Invalid(
                "auth_pad_length is longer than the stub data",
            ))?;
            Ok(rest[..len].to_vec())
        };
        let body = match ptype {
            PduType::Bind | PduType::AlterContext => {
                let b = decode_bind(&mut r)?;
                if ptype == PduType::Bind {
                    Body::Bind(b)
                } else {
                    Body::AlterContext(b)
                }
            }
            PduType::BindAck | PduType::AlterContextResp => {
                let b = decode_bind_ack(&mut r)?;
                if ptype == PduType::BindAck {
                    Body::BindAck(b)
                } else {
                    Body::AlterContextResp(b)
                }
            }
            PduType::BindNak => {
                let reason = r.u16("provider_reject_reason")?;
                let n = r.u8("n_protocols")?;
                let mut versions = Vec::with_capacity(usize::from(n).min(r.remaining() / 2));
                for _ in 0..n {
                    versions.push((r.u8("a protocol version")?, r.u8("a protocol version")?));
                }
                // The signature is present when the fragment holds it:
                // C706 pads to 4 after the versions ([MS-RPCE] 2.2.2.9).
                let mut signature = None;
                let mut extended_error = Vec::new();
                let save = r.at;
                if r.align(4).is_ok() && r.remaining() >= 16 {
                    let sig = r.uuid("the signature")?;
                    if sig == extended_error_signature() {
                        // Up to the authentication padding, as stub data.
                        extended_error = stub(&mut r)?;
                    }
                    signature = Some(sig);
                } else {
                    r.at = save;
                }
                r.rest();
                Body::BindNak(BindNak {
                    reason,
                    versions,
                    signature,
                    extended_error,
                })
            }
            PduType::Request => {
                let alloc_hint = r.u32("alloc_hint")?;
                let context_id = r.u16("p_cont_id")?;
                let opnum = r.u16("opnum")?;
                let object = if flags & flags::OBJECT_UUID != 0 {
                    Some(r.uuid("the object UUID")?)
                } else {
                    None
                };
                Body::Request(Request {
                    alloc_hint,
                    context_id,
                    opnum,
                    object,
                    stub: stub(&mut r)?,
                })
            }
            PduType::Response => {
                let alloc_hint = r.u32("alloc_hint")?;
                let context_id = r.u16("p_cont_id")?;
                let cancel_count = r.u8("cancel_count")?;
                let _reserved = r.u8("reserved")?;
                Body::Response(Response {
                    alloc_hint,
                    context_id,
                    cancel_count,
                    stub: stub(&mut r)?,
                })
            }
            PduType::Fault => {
                let alloc_hint = r.u32("alloc_hint")?;
                let context_id = r.u16("p_cont_id")?;
                let cancel_count = r.u8("cancel_count")?;
                let fault_flags = r.u8("fault_flags")?;
                let status = r.u32("status")?;
                let _reserved = r.u32("reserved")?;
                Body::Fault(Fault {
                    alloc_hint,
                    context_id,
                    cancel_count,
                    fault_flags,
                    status,
                    stub: stub(&mut r)?,
                })
            }
            PduType::Auth3 => {
                if auth.is_none() {
                    return Err(PduError::Invalid(
                        "rpc_auth_3 carries no authentication token",
                    ));
                }
                r.rest();
                Body::Auth3
            }
            PduType::Shutdown => Body::Shutdown,
            PduType::CoCancel => Body::CoCancel,
            PduType::Orphaned => Body::Orphaned,
        };
        Ok(Pdu {
            rpc_vers_minor: bytes[1],
            flags,
            drep,
            call_id,
            body,
            auth,
        })
    }

    /// Encodes the fragment, little-endian, padding the stub data of a
    /// request or response to 16 bytes before a sec_trailer, and other
    /// bodies to 4 (the padding is counted in `auth.pad_length`, which is
    /// recomputed). A list longer than its
    /// 8-bit count, or a fragment longer than 65535 bytes, is refused
    /// rather than cut: fragmenting is the caller's work.
    pub fn encode(&self) -> Result<Vec<u8>, PduError> {
        let mut w = Vec::with_capacity(64);
        self.encode_into(&mut w)?;
        Ok(w)
    }

    /// Appends the encoded fragment to `out` (a connection's output
    /// buffer); on error `out` is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), PduError> {
        let start = out.len();
        let result = self.encode_at(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_at(&self, w: &mut Vec<u8>, start: usize) -> Result<(), PduError> {
        fn count8(n: usize, what: &'static str) -> Result<u8, PduError> {
            u8::try_from(n).map_err(|_| PduError::Invalid(what))
        }
        w.extend_from_slice(&[5, self.rpc_vers_minor, self.pdu_type() as u8, self.flags]);
        w.extend_from_slice(&NDR_LITTLE_ENDIAN);
        w.extend_from_slice(&[0, 0, 0, 0]); // frag_length, auth_length
        w.extend_from_slice(&self.call_id.to_le_bytes());
        // The padding before a sec_trailer ([MS-RPCE] 2.2.2.11): the stub
        // data of a request or response is padded to 16 bytes, as Windows
        // does; other PDUs only align the trailer to 4 (Impacket, like
        // Windows, expects no padding after a bind_ack's results).
        let mut pad_from = start;
        let mut align = 4;
        match &self.body {
            Body::Bind(b) | Body::AlterContext(b) => {
                w.extend_from_slice(&b.max_xmit_frag.to_le_bytes());
                w.extend_from_slice(&b.max_recv_frag.to_le_bytes());
                w.extend_from_slice(&b.assoc_group_id.to_le_bytes());
                w.extend_from_slice(&[
                    count8(b.contexts.len(), "more than 255 presentation contexts")?,
                    0,
                    0,
                    0,
                ]);
                for c in &b.contexts {
                    w.extend_from_slice(&c.context_id.to_le_bytes());
                    w.extend_from_slice(&[
                        count8(c.transfer_syntaxes.len(), "more than 255 transfer syntaxes")?,
                        0,
                    ]);
                    put_syntax(w, &c.abstract_syntax);
                    for t in &c.transfer_syntaxes {
                        put_syntax(w, t);
                    }
                }
            }
            Body::BindAck(b) | Body::AlterContextResp(b) => {
                w.extend_from_slice(&b.max_xmit_frag.to_le_bytes());
                w.extend_from_slice(&b.max_recv_frag.to_le_bytes());
                w.extend_from_slice(&b.assoc_group_id.to_le_bytes());
                // port_any_t: length including the NUL, the string, NUL;
                // an empty address is length 0 and nothing else.
                if b.secondary_address.is_empty() {
                    w.extend_from_slice(&0u16.to_le_bytes());
                } else {
                    let len = u16::try_from(b.secondary_address.len() + 1)
                        .map_err(|_| PduError::Invalid("a secondary address over 65534 bytes"))?;
                    w.extend_from_slice(&len.to_le_bytes());
                    w.extend_from_slice(&b.secondary_address);
                    w.push(0);
                }
                while !(w.len() - start).is_multiple_of(4) {
                    w.push(0);
                }
                w.extend_from_slice(&[count8(b.results.len(), "more than 255 results")?, 0, 0, 0]);
                for r in &b.results {
                    w.extend_from_slice(&r.result.to_le_bytes());
                    w.extend_from_slice(&r.reason.to_le_bytes());
                    put_syntax(w, &r.transfer_syntax);
                }
            }
            Body::BindNak(n) => {
                w.extend_from_slice(&n.reason.to_le_bytes());
                w.push(count8(n.versions.len(), "more than 255 protocol versions")?);
                for (major, minor) in &n.versions {
                    w.extend_from_slice(&[*major, *minor]);
                }
                if let Some(sig) = &n.signature {
                    while !(w.len() - start).is_multiple_of(4) {
                        w.push(0);
                    }
                    put_uuid(w, sig);
                    w.extend_from_slice(&n.extended_error);
                }
            }
            Body::Request(q) => {
                w.extend_from_slice(&q.alloc_hint.to_le_bytes());
                w.extend_from_slice(&q.context_id.to_le_bytes());
                w.extend_from_slice(&q.opnum.to_le_bytes());
                if let Some(o) = &q.object {
                    put_uuid(w, o);
                }
                pad_from = w.len();
                align = 16;
                w.extend_from_slice(&q.stub);
            }
            Body::Response(p) => {
                w.extend_from_slice(&p.alloc_hint.to_le_bytes());
                w.extend_from_slice(&p.context_id.to_le_bytes());
                w.extend_from_slice(&[p.cancel_count, 0]);
                pad_from = w.len();
                align = 16;
                w.extend_from_slice(&p.stub);
            }
            Body::Fault(f) => {
                w.extend_from_slice(&f.alloc_hint.to_le_bytes());
                w.extend_from_slice(&f.context_id.to_le_bytes());
                w.extend_from_slice(&[f.cancel_count, f.fault_flags]);
                w.extend_from_slice(&f.status.to_le_bytes());
                w.extend_from_slice(&0u32.to_le_bytes());
                w.extend_from_slice(&f.stub);
            }
            Body::Auth3 => w.extend_from_slice(&[0; 4]),
            Body::Shutdown | Body::CoCancel | Body::Orphaned => {}
        }
        let mut auth_length = 0usize;
        if let Some(a) = &self.auth {
            let pad = (align - (w.len() - pad_from) % align) % align;
            w.resize(w.len() + pad, 0);
            w.extend_from_slice(&[a.auth_type, a.auth_level, pad as u8, 0]);
            w.extend_from_slice(&a.context_id.to_le_bytes());
            w.extend_from_slice(&a.token);
            auth_length = a.token.len();
        }
        let frag = u16::try_from(w.len() - start)
            .map_err(|_| PduError::Invalid("a fragment over 65535 bytes"))?;
        let auth_length = u16::try_from(auth_length)
            .map_err(|_| PduError::Invalid("an authentication token over 65535 bytes"))?;
        w[start + 8..start + 10].copy_from_slice(&frag.to_le_bytes());
        w[start + 10..start + 12].copy_from_slice(&auth_length.to_le_bytes());
        Ok(())
    }
}

fn put_uuid(w: &mut Vec<u8>, u: &Uuid) {
    w.extend_from_slice(&u.time_low.to_le_bytes());
    w.extend_from_slice(&u.time_mid.to_le_bytes());
    w.extend_from_slice(&u.time_hi_and_version.to_le_bytes());
    w.extend_from_slice(&u.clock_seq_and_node);
}

fn put_syntax(w: &mut Vec<u8>, s: &SyntaxId) {
    put_uuid(w, &s.uuid);
    w.extend_from_slice(&s.version.to_le_bytes());
}

/// A syntax is 20 bytes on the wire.
const SYNTAX_LEN: usize = 20;

fn decode_bind(r: &mut Reader<'_>) -> Result<Bind, PduError> {
    let max_xmit_frag = r.u16("max_xmit_frag")?;
    let max_recv_frag = r.u16("max_recv_frag")?;
    let assoc_group_id = r.u32("assoc_group_id")?;
    let n = r.u8("n_context_elem")?;
    r.take(3, "reserved")?;
    // Each element takes at least 4 + 2 * 20 bytes: the count cannot ask
    // for more than the fragment holds.
    let mut contexts = Vec::with_capacity(usize::from(n).min(r.remaining() / (4 + SYNTAX_LEN)));
    for _ in 0..n {
        let context_id = r.u16("p_cont_id")?;
        let n_transfer = r.u8("n_transfer_syn")?;
        r.u8("reserved")?;
        let abstract_syntax = r.syntax("the abstract syntax")?;
        if n_transfer == 0 {
            return Err(PduError::Invalid(
                "a presentation context offers no transfer syntax",
            ));
        }
        let mut transfer_syntaxes =
            Vec::with_capacity(usize::from(n_transfer).min(r.remaining() / SYNTAX_LEN));
        for _ in 0..n_transfer {
            transfer_syntaxes.push(r.syntax("a transfer syntax")?);
        }
        contexts.push(ContextElem {
            context_id,
            abstract_syntax,
            transfer_syntaxes,
        });
    }
    // Anything after the list (bind-time padding) is ignored.
    r.rest();
    Ok(Bind {
        max_xmit_frag,
        max_recv_frag,
        assoc_group_id,
        contexts,
    })
}

fn decode_bind_ack(r: &mut Reader<'_>) -> Result<BindAck, PduError> {
    let max_xmit_frag = r.u16("max_xmit_frag")?;
    let max_recv_frag = r.u16("max_recv_frag")?;
    let assoc_group_id = r.u32("assoc_group_id")?;
    let len = usize::from(r.u16("sec_addr length")?);
    let mut secondary_address = r.take(len, "the secondary address")?.to_vec();
    if secondary_address.last() == Some(&0) {
        secondary_address.pop();
    }
    r.align(4)?;
    let n = r.u8("n_results")?;
    r.take(3, "reserved")?;
    let mut results = Vec::with_capacity(usize::from(n).min(r.remaining() / (4 + SYNTAX_LEN)));
    for _ in 0..n {
        results.push(ContextResult {
            result: r.u16("a result")?,
            reason: r.u16("a reason")?,
            transfer_syntax: r.syntax("a transfer syntax")?,
        });
    }
    r.rest();
    Ok(BindAck {
        max_xmit_frag,
        max_recv_frag,
        assoc_group_id,
        secondary_address,
        results,
    })
}

#[cfg(test)]
mod tests;
