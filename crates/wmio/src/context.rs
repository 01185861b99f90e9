//! IWbemContext's marshalled form ([MS-WMI] 2.2.13): the named values a
//! client passes with a call (a partial PutInstance's
//! `__PUT_EXT_PROPERTIES`, a provider architecture, a locale).

use crate::decode::{DecodeError, Reader};

/// VARTYPEs a context carries ([MS-OAUT] 2.2.7).
pub mod vt {
    pub const NULL: u16 = 1;
    pub const I2: u16 = 2;
    pub const I4: u16 = 3;
    pub const R4: u16 = 4;
    pub const R8: u16 = 5;
    pub const BSTR: u16 = 8;
    pub const BOOL: u16 = 11;
    pub const UNKNOWN: u16 = 13;
    pub const I1: u16 = 16;
    pub const UI1: u16 = 17;
    pub const UI2: u16 = 18;
    pub const UI4: u16 = 19;
    pub const ARRAY: u16 = 0x2000;
}

/// One value of a context.
#[derive(Clone, Debug, PartialEq)]
pub enum ContextValue {
    Null,
    /// VT_I1 … VT_UI4, as a signed 64-bit number.
    Integer(i64),
    Bool(bool),
    Real(f64),
    String(String),
    Strings(Vec<String>),
    /// An object (VT_UNKNOWN) or an array of numbers: its type, not read.
    Other(u16),
}

/// A context: its properties in order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Context {
    pub properties: Vec<(String, ContextValue)>,
}

impl Context {
    pub fn get(&self, name: &str) -> Option<&ContextValue> {
        self.properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A VT_BOOL property that is there and TRUE.
    pub fn is_true(&self, name: &str) -> bool {
        matches!(self.get(name), Some(ContextValue::Bool(true)))
    }
}

/// IWbemContextString (2.2.13.3): a count of UTF-16 units, then them.
fn string(c: &mut Reader<'_>, what: &str) -> Result<String, DecodeError> {
    let n = c.u32(what)? as usize;
    if n > c.rest() / 2 {
        return c.fail(format!("the context's {what} is longer than the buffer"));
    }
    let units: Vec<u16> = c
        .take(n * 2, what)?
        .chunks(2)
        .map(|u| u16::from_le_bytes([u[0], u[1]]))
        .collect();
    String::from_utf16(&units).or_else(|_| c.fail(format!("the context's {what} is not UTF-16")))
}

/// Decodes an IWbemContextBuffer (2.2.13.1).
pub fn decode_context(data: &[u8]) -> Result<Context, DecodeError> {
    let mut c = Reader::new(data, 0);
    let guids = c.u32("NumGuids")? as usize;
    if guids > c.rest() / 16 {
        return c.fail("NumGuids is more than the buffer holds");
    }
    c.take(guids * 16, "GUIDs")?;
    let count = c.u32("NumProps")? as usize;
    if count > c.rest() / 10 {
        return c.fail("NumProps is more than the buffer holds");
    }
    let mut properties = Vec::with_capacity(count);
    for _ in 0..count {
        let name = string(&mut c, "property name")?;
        c.u32("PropertyFlags")?;
        let ty = u16::from_le_bytes(c.take(2, "PropertyType")?.try_into().unwrap_or([0; 2]));
        let value = if ty & vt::ARRAY != 0 {
            // IWbemContextArray (2.2.13.4).
            let n = c.u32("ElementCount")? as usize;
            let size = c.u32("ElementSize")? as usize;
            match ty & !vt::ARRAY {
                vt::BSTR => {
                    if n > c.rest() / 4 {
                        return c.fail("ElementCount is more than the buffer holds");
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(string(&mut c, "array string")?);
                    }
                    ContextValue::Strings(items)
                }
                base => {
                    let element = match base {
                        vt::I1 | vt::UI1 => 1,
                        vt::I2 | vt::UI2 | vt::BOOL => 2,
                        vt::I4 | vt::UI4 => 4,
                        vt::R4 | vt::R8 => 8,
                        vt::NULL => 0,
                        _ => size,
                    };
                    let bytes =
                        n.checked_mul(element)
                            .filter(|b| *b <= c.rest())
                            .ok_or(DecodeError {
                                at: c.pos,
                                problem: "an array is longer than the buffer".into(),
                            })?;
                    c.take(bytes, "array")?;
                    ContextValue::Other(ty)
                }
            }
        } else {
            match ty {
                vt::NULL => ContextValue::Null,
                vt::BSTR => ContextValue::String(string(&mut c, "string value")?),
                vt::UNKNOWN => {
                    // An IWbemClassObject's marshalled buffer: its length
                    // first, as an EncodingUnit carries it.
                    let at = c.pos;
                    c.u32("object signature")?;
                    let len = c.u32("object length")? as usize;
                    c.pos = at;
                    c.take(8 + len, "object")?;
                    ContextValue::Other(ty)
                }
                _ => {
                    let b = c.take(8, "value")?;
                    let word = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                    match ty {
                        vt::BOOL => ContextValue::Bool(u16::from_le_bytes([b[0], b[1]]) != 0),
                        vt::I1 => ContextValue::Integer(i64::from(b[0] as i8)),
                        vt::UI1 => ContextValue::Integer(i64::from(b[0])),
                        vt::I2 => {
                            ContextValue::Integer(i64::from(i16::from_le_bytes([b[0], b[1]])))
                        }
                        vt::UI2 => {
                            ContextValue::Integer(i64::from(u16::from_le_bytes([b[0], b[1]])))
                        }
                        vt::I4 => ContextValue::Integer(i64::from(i32::from_le_bytes([
                            b[0], b[1], b[2], b[3],
                        ]))),
                        vt::UI4 => ContextValue::Integer(i64::from(u32::from_le_bytes([
                            b[0], b[1], b[2], b[3],
                        ]))),
                        vt::R4 => ContextValue::Real(f64::from(f32::from_le_bytes([
                            b[0], b[1], b[2], b[3],
                        ]))),
                        vt::R8 => ContextValue::Real(f64::from_bits(word as u64)),
                        other => ContextValue::Other(other),
                    }
                }
            }
        };
        properties.push((name, value));
    }
    Ok(Context { properties })
}

/// Encodes an IWbemContextBuffer (what a client sends; the tests').
pub fn encode_context(context: &Context) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        let units: Vec<u16> = s.encode_utf16().collect();
        out.extend_from_slice(&(units.len() as u32).to_le_bytes());
        for u in units {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&[0; 16]);
    let written: Vec<_> = context
        .properties
        .iter()
        .filter(|(_, v)| !matches!(v, ContextValue::Other(_)))
        .collect();
    out.extend_from_slice(&(written.len() as u32).to_le_bytes());
    for (name, value) in written {
        string(&mut out, name);
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut word = [0u8; 8];
        let ty = match value {
            ContextValue::Null => vt::NULL,
            // Every number a context decodes to fits one of these.
            ContextValue::Integer(n) => match (i32::try_from(*n), u32::try_from(*n)) {
                (Ok(v), _) => {
                    word[..4].copy_from_slice(&v.to_le_bytes());
                    vt::I4
                }
                (_, Ok(v)) => {
                    word[..4].copy_from_slice(&v.to_le_bytes());
                    vt::UI4
                }
                _ => {
                    word = (*n as f64).to_le_bytes();
                    vt::R8
                }
            },
            ContextValue::Bool(b) => {
                word[..2].copy_from_slice(&(if *b { 0xffffu16 } else { 0 }).to_le_bytes());
                vt::BOOL
            }
            ContextValue::Real(r) => {
                word = r.to_le_bytes();
                vt::R8
            }
            ContextValue::String(_) => vt::BSTR,
            ContextValue::Strings(_) => vt::BSTR | vt::ARRAY,
            ContextValue::Other(_) => unreachable!("filtered out"),
        };
        out.extend_from_slice(&ty.to_le_bytes());
        match value {
            ContextValue::Null => {}
            ContextValue::String(s) => string(&mut out, s),
            ContextValue::Strings(items) => {
                out.extend_from_slice(&(items.len() as u32).to_le_bytes());
                out.extend_from_slice(&8u32.to_le_bytes());
                for s in items {
                    string(&mut out, s);
                }
            }
            _ => out.extend_from_slice(&word),
        }
    }
    out
}
