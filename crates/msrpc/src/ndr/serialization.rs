//! Type serialization ([MS-RPCE] 2.2.6 version 1, 2.2.7 version 2): NDR
//! types in an application's own octet stream rather than in a call, as
//! `MesEncode`/`MesDecode` and the `*_Encode`/`*_Decode` pickling stubs
//! write them (Kerberos PACs, DNS records, many stored blobs).
//!
//! One common header per stream, then each top-level value: a private
//! header giving its length (version 1 omits it for a primitive type),
//! the value in NDR, and padding to 8 (version 1) or 16 (version 2).

use super::{Decoder, Encoder, Ndr, NdrError, Result, Syntax};
use crate::pdu::SyntaxId;
use crate::server::{ndr20, ndr64};
use crate::uuid::Uuid;

/// The fillers the headers carry ([MS-RPCE] 2.2.6.1, 2.2.7.1).
const FILLER: [u8; 4] = [0xcc; 4];
const LITTLE_ENDIAN: u8 = 0x10;
const BIG_ENDIAN: u8 = 0x00;
const V1_HEADER_LEN: usize = 8;
const V2_HEADER_LEN: usize = 0x40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// NDR 2.0 in either byte order, 8-byte alignment.
    V1,
    /// NDR 2.0 or NDR64, little-endian, 16-byte alignment.
    V2,
}

impl Version {
    fn unit(self) -> usize {
        match self {
            Version::V1 => 8,
            Version::V2 => 16,
        }
    }
}

/// Writes a serialization stream (little-endian).
pub struct Serializer {
    version: Version,
    syntax: Syntax,
    buf: Vec<u8>,
}

impl Serializer {
    /// Version 1 (NDR 2.0).
    pub fn v1() -> Serializer {
        let mut buf = vec![1, LITTLE_ENDIAN];
        buf.extend_from_slice(&(V1_HEADER_LEN as u16).to_le_bytes());
        buf.extend_from_slice(&FILLER);
        Serializer {
            version: Version::V1,
            syntax: Syntax::Ndr20,
            buf,
        }
    }

    /// Version 2 in `syntax`, naming the interface the types come from.
    pub fn v2(syntax: Syntax, interface: SyntaxId) -> Serializer {
        let mut buf = vec![2, LITTLE_ENDIAN];
        buf.extend_from_slice(&(V2_HEADER_LEN as u16).to_le_bytes());
        buf.extend_from_slice(&FILLER); // endianInfo
        for _ in 0..4 {
            buf.extend_from_slice(&FILLER); // Reserved
        }
        let transfer = match syntax {
            Syntax::Ndr20 => ndr20(),
            Syntax::Ndr64 => ndr64(),
        };
        for id in [transfer, interface] {
            buf.extend_from_slice(&id.uuid.to_le_bytes());
            buf.extend_from_slice(&id.version.to_le_bytes());
        }
        Serializer {
            version: Version::V2,
            syntax,
            buf,
        }
    }

    /// Appends one top-level value.
    pub fn push<T: Ndr>(&mut self, value: &T) -> &mut Serializer {
        let unit = self.version.unit();
        let mut e = Encoder::new(self.syntax);
        super::encode(value, &mut e);
        let mut data = e.buf;
        data.resize(data.len().next_multiple_of(unit), 0);
        if self.version == Version::V2 || !T::PRIMITIVE {
            self.buf
                .extend_from_slice(&(data.len() as u32).to_le_bytes());
            self.buf.resize(self.buf.len() + unit - 4, 0);
        }
        self.buf.extend_from_slice(&data);
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a serialization stream of either version and byte order.
pub struct Deserializer<'a> {
    version: Version,
    syntax: Syntax,
    little_endian: bool,
    data: &'a [u8],
    pos: usize,
}

fn malformed(what: &'static str) -> NdrError {
    NdrError::Invalid(what)
}

impl<'a> Deserializer<'a> {
    /// Reads the common header.
    pub fn new(data: &'a [u8]) -> Result<Deserializer<'a>> {
        let header = |len: usize| {
            data.get(..len).ok_or(NdrError::Insufficient {
                what: "a type serialization header",
                needed: len,
                have: data.len(),
            })
        };
        let common = header(4)?;
        let length = usize::from(u16::from_le_bytes([common[2], common[3]]));
        let (version, syntax, little_endian) = match (common[0], common[1]) {
            (1, endian @ (LITTLE_ENDIAN | BIG_ENDIAN)) => {
                if length != V1_HEADER_LEN {
                    return Err(malformed("a version 1 header whose length is not 8"));
                }
                header(V1_HEADER_LEN)?;
                (Version::V1, Syntax::Ndr20, endian == LITTLE_ENDIAN)
            }
            (2, LITTLE_ENDIAN) => {
                if length != V2_HEADER_LEN {
                    return Err(malformed("a version 2 header whose length is not 0x40"));
                }
                let h = header(V2_HEADER_LEN)?;
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(&h[24..40]);
                let version = u32::from_le_bytes([h[40], h[41], h[42], h[43]]);
                let transfer = SyntaxId {
                    uuid: Uuid::from_le_bytes(&uuid),
                    version,
                };
                let syntax = if transfer == ndr20() {
                    Syntax::Ndr20
                } else if transfer == ndr64() {
                    Syntax::Ndr64
                } else {
                    return Err(malformed(
                        "a version 2 stream in an unknown transfer syntax",
                    ));
                };
                (Version::V2, syntax, true)
            }
            (1 | 2, _) => return Err(malformed("a type serialization byte order not allowed")),
            _ => {
                return Err(malformed(
                    "not a type serialization stream (version 1 or 2)",
                ))
            }
        };
        Ok(Deserializer {
            version,
            syntax,
            little_endian,
            data,
            pos: length,
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// Whether every value has been read (up to trailing padding).
    pub fn is_empty(&self) -> bool {
        self.data.len() - self.pos < self.version.unit()
    }

    /// The next top-level value.
    pub fn read<T: Ndr>(&mut self) -> Result<T> {
        let unit = self.version.unit();
        let rest = &self.data[self.pos..];
        if self.version == Version::V1 && T::PRIMITIVE {
            let mut d = Decoder::new(rest, self.syntax, self.little_endian);
            let value = super::decode(&mut d)?;
            self.pos += d.position().next_multiple_of(unit).min(rest.len());
            return Ok(value);
        }
        let mut d = Decoder::new(rest, self.syntax, self.little_endian);
        let length = d.u32()? as usize;
        let body = rest.get(unit..).ok_or(NdrError::Insufficient {
            what: "a type serialization private header",
            needed: self.pos + unit,
            have: self.data.len(),
        })?;
        // The length should include the padding to the alignment; writers
        // that leave it out (Impacket's DCOM activation properties) are
        // read too, their padding skipped below.
        let object = body.get(..length).ok_or(NdrError::CountTooLarge {
            what: "a type serialization object buffer",
            count: length as u64,
            remaining: body.len(),
        })?;
        let mut d = Decoder::new(object, self.syntax, self.little_endian);
        let value = super::decode(&mut d)?;
        if d.remaining() >= unit {
            return Err(malformed("bytes are left over in an object buffer"));
        }
        self.pos += unit + length.next_multiple_of(unit).min(body.len());
        Ok(value)
    }
}
