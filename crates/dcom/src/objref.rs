//! OBJREF ([MS-DCOM] 2.2.18) and the packet form of DUALSTRINGARRAY
//! (2.2.19.1): the object references carried inside MInterfacePointer,
//! always little-endian. Standard references are read and written;
//! custom ones only as the activation properties need them; handler and
//! extended references are refused with a clear error.

use msrpc::Uuid;

use crate::types::{DualStringArray, StdObjRef};

/// OBJREF's signature, "MEOW".
pub const SIGNATURE: u32 = 0x574f_454d;
pub const FLAGS_STANDARD: u32 = 1;
pub const FLAGS_HANDLER: u32 = 2;
pub const FLAGS_CUSTOM: u32 = 4;
pub const FLAGS_EXTENDED: u32 = 8;

/// RPC protocol sequence identifiers of STRINGBINDING (C706 Appendix I).
pub const TOWER_NCACN_IP_TCP: u16 = 0x07;

/// An object reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjRef {
    Standard {
        iid: Uuid,
        std: StdObjRef,
        resolver: Bindings,
    },
    Custom {
        iid: Uuid,
        clsid: Uuid,
        data: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjRefError {
    #[error("the object reference is cut short")]
    Short,
    #[error("the object reference's signature is {0:#x}, not MEOW")]
    Signature(u32),
    #[error("handler object references (OBJREF_HANDLER) are not supported")]
    Handler,
    #[error("extended object references (OBJREF_EXTENDED) are not supported")]
    Extended,
    #[error("unknown object reference flags {0:#x}")]
    Flags(u32),
    #[error("the object reference's interface is GUID_NULL")]
    NullIid,
    #[error("the string and security bindings are malformed: {0}")]
    Bindings(&'static str),
}

/// Reads little-endian fields off a byte slice.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ObjRefError> {
        let end = self.pos.checked_add(n).ok_or(ObjRefError::Short)?;
        let out = self.data.get(self.pos..end).ok_or(ObjRefError::Short)?;
        self.pos = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, ObjRefError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ObjRefError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ObjRefError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn uuid(&mut self) -> Result<Uuid, ObjRefError> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(Uuid::from_le_bytes(&a))
    }
    fn rest(&mut self) -> &'a [u8] {
        let out = &self.data[self.pos.min(self.data.len())..];
        self.pos = self.data.len();
        out
    }
}

fn put_std(out: &mut Vec<u8>, std: &StdObjRef) {
    out.extend_from_slice(&std.flags.to_le_bytes());
    out.extend_from_slice(&std.public_refs.to_le_bytes());
    out.extend_from_slice(&std.oxid.to_le_bytes());
    out.extend_from_slice(&std.oid.to_le_bytes());
    out.extend_from_slice(&std.ipid.to_le_bytes());
}

fn read_std(r: &mut Reader<'_>) -> Result<StdObjRef, ObjRefError> {
    Ok(StdObjRef {
        flags: r.u32()?,
        public_refs: r.u32()?,
        oxid: r.u64()?,
        oid: r.u64()?,
        ipid: r.uuid()?,
    })
}

impl ObjRef {
    pub fn iid(&self) -> Uuid {
        match self {
            ObjRef::Standard { iid, .. } | ObjRef::Custom { iid, .. } => *iid,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&SIGNATURE.to_le_bytes());
        match self {
            ObjRef::Standard { iid, std, resolver } => {
                out.extend_from_slice(&FLAGS_STANDARD.to_le_bytes());
                out.extend_from_slice(&iid.to_le_bytes());
                put_std(&mut out, std);
                resolver.encode_packet(&mut out);
            }
            ObjRef::Custom { iid, clsid, data } => {
                out.extend_from_slice(&FLAGS_CUSTOM.to_le_bytes());
                out.extend_from_slice(&iid.to_le_bytes());
                out.extend_from_slice(&clsid.to_le_bytes());
                // cbExtension, then the size of what follows (the data
                // and the two fields before it), which Windows puts in
                // the reserved field.
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&(data.len() as u32 + 8).to_le_bytes());
                out.extend_from_slice(data);
            }
        }
        out
    }

    pub fn decode(data: &[u8]) -> Result<ObjRef, ObjRefError> {
        let mut r = Reader { data, pos: 0 };
        let signature = r.u32()?;
        if signature != SIGNATURE {
            return Err(ObjRefError::Signature(signature));
        }
        let flags = r.u32()?;
        let iid = r.uuid()?;
        if iid == Uuid::NIL {
            return Err(ObjRefError::NullIid);
        }
        match flags {
            FLAGS_STANDARD => {
                let std = read_std(&mut r)?;
                let resolver = Bindings::decode_packet(r.rest())?;
                Ok(ObjRef::Standard { iid, std, resolver })
            }
            FLAGS_CUSTOM => {
                let clsid = r.uuid()?;
                let _extension = r.u32()?;
                let _reserved = r.u32()?;
                Ok(ObjRef::Custom {
                    iid,
                    clsid,
                    data: r.rest().to_vec(),
                })
            }
            FLAGS_HANDLER => Err(ObjRefError::Handler),
            FLAGS_EXTENDED => Err(ObjRefError::Extended),
            other => Err(ObjRefError::Flags(other)),
        }
    }
}

/// One SECURITYBINDING (2.2.19.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityBinding {
    pub authn_service: u16,
    pub principal: String,
}

/// A DUALSTRINGARRAY's content: string bindings (tower id, network
/// address with an optional `[endpoint]`) and security bindings.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Bindings {
    pub strings: Vec<(u16, String)>,
    pub security: Vec<SecurityBinding>,
}

impl Bindings {
    /// The unsigned shorts of the array, and the security offset.
    fn units(&self) -> (Vec<u16>, u16) {
        let mut units = Vec::new();
        for (tower, address) in &self.strings {
            units.push(*tower);
            units.extend(address.encode_utf16());
            units.push(0);
        }
        if self.strings.is_empty() {
            units.push(0);
        }
        units.push(0);
        let security_offset = units.len() as u16;
        for s in &self.security {
            units.push(s.authn_service);
            units.push(0xffff);
            units.extend(s.principal.encode_utf16());
            units.push(0);
        }
        if self.security.is_empty() {
            units.push(0);
        }
        units.push(0);
        (units, security_offset)
    }

    fn from_units(units: &[u16], security_offset: usize) -> Result<Bindings, ObjRefError> {
        if security_offset > units.len() {
            return Err(ObjRefError::Bindings("the security offset is past the end"));
        }
        let (strings_part, security_part) = units.split_at(security_offset);
        let mut strings = Vec::new();
        let mut i = 0;
        while i < strings_part.len() && strings_part[i] != 0 {
            let tower = strings_part[i];
            let start = i + 1;
            let end = strings_part[start..]
                .iter()
                .position(|&u| u == 0)
                .map(|p| start + p)
                .ok_or(ObjRefError::Bindings("a string binding has no terminator"))?;
            strings.push((tower, String::from_utf16_lossy(&strings_part[start..end])));
            i = end + 1;
        }
        let mut security = Vec::new();
        let mut i = 0;
        while i < security_part.len() && security_part[i] != 0 {
            let authn_service = security_part[i];
            let start = i + 2;
            if start > security_part.len() {
                return Err(ObjRefError::Bindings("a security binding is cut short"));
            }
            let end = security_part[start..]
                .iter()
                .position(|&u| u == 0)
                .map(|p| start + p)
                .ok_or(ObjRefError::Bindings(
                    "a security binding has no terminator",
                ))?;
            security.push(SecurityBinding {
                authn_service,
                principal: String::from_utf16_lossy(&security_part[start..end]),
            });
            i = end + 1;
        }
        Ok(Bindings { strings, security })
    }

    /// The IDL form (2.2.19.2), for parameters.
    pub fn to_idl(&self) -> DualStringArray {
        let (array, security_offset) = self.units();
        DualStringArray {
            num_entries: array.len() as u16,
            security_offset,
            array,
        }
    }

    pub fn from_idl(dsa: &DualStringArray) -> Result<Bindings, ObjRefError> {
        Bindings::from_units(&dsa.array, dsa.security_offset as usize)
    }

    /// The packet form (2.2.19.1), inside an OBJREF.
    pub fn encode_packet(&self, out: &mut Vec<u8>) {
        let (units, security_offset) = self.units();
        out.extend_from_slice(&(units.len() as u16).to_le_bytes());
        out.extend_from_slice(&security_offset.to_le_bytes());
        for u in units {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }

    pub fn decode_packet(data: &[u8]) -> Result<Bindings, ObjRefError> {
        let mut r = Reader { data, pos: 0 };
        let entries = r.u16()? as usize;
        let security_offset = r.u16()? as usize;
        let bytes = r.take(entries * 2)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Bindings::from_units(&units, security_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_references_round_trip_and_the_smallest_array_is_four_zeros() {
        let empty = Bindings::default().to_idl();
        assert_eq!((empty.num_entries, empty.security_offset), (4, 2));
        assert_eq!(empty.array, vec![0, 0, 0, 0]);
        let r = ObjRef::Standard {
            iid: Uuid::random(),
            std: StdObjRef {
                flags: 0,
                public_refs: 5,
                oxid: 0x1122_3344_5566_7788,
                oid: 42,
                ipid: Uuid::random(),
            },
            resolver: Bindings {
                strings: vec![(TOWER_NCACN_IP_TCP, "127.0.0.1".into())],
                security: vec![SecurityBinding {
                    authn_service: 10,
                    principal: String::new(),
                }],
            },
        };
        let bytes = r.encode();
        assert_eq!(&bytes[..4], b"MEOW");
        assert_eq!(ObjRef::decode(&bytes), Ok(r));
    }

    #[test]
    fn handler_extended_and_damaged_references_are_refused() {
        let mut bytes = SIGNATURE.to_le_bytes().to_vec();
        bytes.extend_from_slice(&FLAGS_HANDLER.to_le_bytes());
        bytes.extend_from_slice(&Uuid::random().to_le_bytes());
        assert_eq!(ObjRef::decode(&bytes), Err(ObjRefError::Handler));
        bytes[4] = FLAGS_EXTENDED as u8;
        assert_eq!(ObjRef::decode(&bytes), Err(ObjRefError::Extended));
        bytes[4] = FLAGS_STANDARD as u8;
        assert_eq!(ObjRef::decode(&bytes), Err(ObjRefError::Short));
        assert_eq!(
            ObjRef::decode(b"WOEM\x01\0\0\0"),
            Err(ObjRefError::Signature(0x4d45_4f57))
        );
        // A string binding that runs off the end.
        let mut dsa = vec![3u8, 0, 3, 0];
        dsa.extend_from_slice(&[7, 0, b'a', 0, b'b', 0]);
        assert!(Bindings::decode_packet(&dsa).is_err());
    }
}
