//! The ObjectArray ([MS-WMI] 2.2.14): several objects in one buffer, as
//! IWbemWCOSmartEnum::Next and the optimized IWbemObjectSink::Indicate
//! send them. The first instance of each class carries the class
//! (WBEMOBJECT_INSTANCE); later ones name it by a class ID and carry only
//! their own part (WBEMOBJECT_INSTANCE_NOCLASS). Both ends keep the
//! classes they have seen for the life of the enumerator.

use std::collections::HashMap;

use crate::decode::{DecodeError, Reader};
use crate::{encode, Body, Object};

const SIGNATURE: &[u8; 8] = b"WBEMDATA";
/// bPacketType: an optimized IWbemObjectSink::Indicate.
pub const PACKET_INDICATE: u8 = 0;
/// bPacketType: an optimized IWbemWCOSmartEnum::Next.
pub const PACKET_SMART_ENUM: u8 = 1;

const OBJECT_CLASS: u8 = 1;
const OBJECT_INSTANCE: u8 = 2;
const OBJECT_INSTANCE_NOCLASS: u8 = 3;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The sending end: the class IDs already sent. A class is known by its
/// identity (the `Arc` instances share), so its encoding is made once.
pub struct ObjectArrayEncoder {
    seed: [u8; 16],
    /// By the class's address, the class kept alive so the address is not
    /// reused.
    classes: HashMap<usize, ([u8; 16], std::sync::Arc<crate::ClassDef>)>,
}

impl ObjectArrayEncoder {
    /// `seed` makes the class IDs of this enumerator (a random GUID's
    /// octets: the IDs are the seed with a counter mixed in).
    pub fn new(seed: [u8; 16]) -> ObjectArrayEncoder {
        ObjectArrayEncoder {
            seed,
            classes: HashMap::new(),
        }
    }

    fn class_id(&mut self, class: &std::sync::Arc<crate::ClassDef>) -> ([u8; 16], bool) {
        let key = std::sync::Arc::as_ptr(class) as usize;
        if let Some((id, _)) = self.classes.get(&key) {
            return (*id, false);
        }
        let mut id = self.seed;
        let n = (self.classes.len() as u32).to_le_bytes();
        for (i, b) in n.iter().enumerate() {
            id[12 + i] ^= b;
        }
        self.classes.insert(key, (id, class.clone()));
        (id, true)
    }

    /// An ObjectArray of `objects`.
    pub fn encode(&mut self, objects: &[Object], packet_type: u8) -> Vec<u8> {
        let mut packets = Vec::new();
        for object in objects {
            let (kind, body) = match &object.body {
                Body::Class { .. } => {
                    let block = encode::encode_object_block(object);
                    let mut body = Vec::with_capacity(block.len() + 8);
                    put_u32(&mut body, 8);
                    put_u32(&mut body, block.len() as u32);
                    body.extend_from_slice(&block);
                    (OBJECT_CLASS, body)
                }
                Body::Instance(instance) => {
                    let (id, new) = self.class_id(&instance.class);
                    let (kind, data) = if new {
                        (OBJECT_INSTANCE, encode::encode_object_block(object))
                    } else {
                        (
                            OBJECT_INSTANCE_NOCLASS,
                            encode::encode_instance_no_class(object).unwrap_or_default(),
                        )
                    };
                    let mut body = Vec::with_capacity(data.len() + 24);
                    put_u32(&mut body, 0x18);
                    put_u32(&mut body, data.len() as u32);
                    body.extend_from_slice(&id);
                    body.extend_from_slice(&data);
                    (kind, body)
                }
            };
            // WBEM_DATAPACKET_OBJECT (2.2.14.1).
            put_u32(&mut packets, 9);
            put_u32(&mut packets, body.len() as u32);
            packets.push(kind);
            packets.extend_from_slice(&body);
        }
        let mut out = Vec::with_capacity(packets.len() + 50);
        put_u32(&mut out, 0);
        out.extend_from_slice(SIGNATURE);
        put_u32(&mut out, 0x1a);
        put_u32(&mut out, (packets.len() + 20) as u32);
        put_u32(&mut out, 0);
        out.push(1);
        out.push(packet_type);
        put_u32(&mut out, 8);
        put_u32(&mut out, (packets.len() + 12) as u32);
        put_u32(&mut out, 12);
        put_u32(&mut out, packets.len() as u32);
        put_u32(&mut out, objects.len() as u32);
        out.extend_from_slice(&packets);
        out
    }
}

/// The receiving end: the classes of the instances seen so far, decoded
/// once and shared by the instances that name them.
#[derive(Default)]
pub struct ObjectArrayDecoder {
    classes: HashMap<[u8; 16], (std::sync::Arc<crate::ClassDef>, crate::decode::Layout)>,
}

impl ObjectArrayDecoder {
    /// The objects of an ObjectArray.
    pub fn decode(&mut self, data: &[u8]) -> Result<Vec<Object>, DecodeError> {
        let mut c = Reader::new(data, 0);
        c.expect(0, "dwByteOrdering")?;
        if c.take(8, "abSignature")? != SIGNATURE {
            return c.fail("abSignature is not WBEMDATA");
        }
        c.expect(0x1a, "dwSizeOfHeader1")?;
        c.u32("dwDataSize1")?;
        c.u32("dwFlags")?;
        c.take(2, "bVersion and bPacketType")?;
        c.expect(8, "dwSizeOfHeader2")?;
        c.u32("dwDataSize2")?;
        c.expect(12, "dwSizeOfHeader3")?;
        c.u32("dwDataSize3")?;
        let count = c.u32("dwNumObjects")? as usize;
        if count > c.rest() / 9 {
            return c.fail(format!(
                "dwNumObjects {count} is more than the buffer holds"
            ));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            c.expect(9, "WBEM_DATAPACKET_OBJECT's dwSizeOfHeader")?;
            let size = c.u32("WBEM_DATAPACKET_OBJECT's dwSizeOfData")? as usize;
            let kind = c.u8("bObjectType")?;
            let body_at = c.pos;
            let mut b = Reader::new(c.take(size, "a WBEM_DATAPACKET_OBJECT")?, body_at);
            // The object blocks decode on their own: their errors are
            // placed in this buffer.
            let placed = |mut e: DecodeError, at: usize| {
                e.at += at;
                e
            };
            let object = match kind {
                OBJECT_CLASS => {
                    b.expect(8, "WBEMOBJECT_CLASS's dwSizeOfHeader")?;
                    let len = b.u32("dwSizeOfData")? as usize;
                    let at = body_at + b.pos;
                    let block = b.take(len, "the class")?;
                    crate::decode_object_block(block).map_err(|e| placed(e, at))?
                }
                OBJECT_INSTANCE | OBJECT_INSTANCE_NOCLASS => {
                    b.expect(0x18, "WBEMOBJECT_INSTANCE's dwSizeOfHeader")?;
                    let len = b.u32("dwSizeOfData")? as usize;
                    let mut id = [0u8; 16];
                    id.copy_from_slice(b.take(16, "classID")?);
                    let at = body_at + b.pos;
                    let block = b.take(len, "the instance")?;
                    if kind == OBJECT_INSTANCE {
                        let (object, layout) =
                            crate::decode::object_block_layout(block).map_err(|e| placed(e, at))?;
                        match (&object.body, layout) {
                            (Body::Instance(instance), Some(layout)) => {
                                self.classes.insert(id, (instance.class.clone(), layout));
                            }
                            _ => return b.fail("a WBEMOBJECT_INSTANCE holds a class"),
                        }
                        object
                    } else {
                        let Some((class, layout)) = self.classes.get(&id) else {
                            return b.fail("an instance names a class ID not sent before");
                        };
                        crate::decode::instance_no_class(block, class, layout)
                            .map_err(|e| placed(e, at))?
                    }
                }
                other => return c.fail(format!("bObjectType {other} is not 1, 2 or 3")),
            };
            out.push(object);
        }
        Ok(out)
    }
}
