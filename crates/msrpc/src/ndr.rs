//! NDR: the Network Data Representation of C706 chapter 14, in both
//! transfer syntaxes — NDR 2.0 and NDR64 ([MS-RPCE] 2.2.5) — with the
//! strict data consistency checks of [MS-RPCE] 3.1.1.5.3.
//!
//! A type is marshalled in two phases, as C706 orders the octet stream:
//! its scalars (fixed-size parts, pointer identifiers in place of the
//! data pointed to), then its buffers (the referents of its embedded
//! pointers, deferred until the containing type's scalars are done).
//! [`Ndr`] is implemented here for the primitives, UUIDs, unique pointers,
//! conformant arrays and strings; interfaces describe their structures
//! once and the marshalling is generated from that description.
//!
//! Decoding never trusts a count: every conformance, variance and string
//! count is checked against the bytes present before anything is
//! allocated, offsets must be zero where the IDL gives none, strings must
//! end with their terminator, and pointer chains are bounded in depth.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::uuid::Uuid;

pub mod serialization;

/// The transfer syntax of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// NDR 2.0: 8a885d04-1ceb-11c9-9fe8-08002b104860 v2.
    Ndr20,
    /// NDR64: 71710533-beba-4937-8319-b5dbef9ccc36 v1.
    Ndr64,
}

impl Syntax {
    /// The size and alignment of pointers, conformance and variance
    /// counts: 4 in NDR 2.0, 8 in NDR64.
    pub fn wide(self) -> usize {
        match self {
            Syntax::Ndr20 => 4,
            Syntax::Ndr64 => 8,
        }
    }
}

/// Why a stream is not valid stub data. Each is a fault for the caller:
/// RPC_X_BAD_STUB_DATA, [MS-RPCE] 3.1.1.5.3.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NdrError {
    #[error("the stub data ends at {have} bytes; {needed} are needed for {what}")]
    Insufficient {
        what: &'static str,
        needed: usize,
        have: usize,
    },
    #[error("{what}: a count of {count} does not fit the {remaining} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("{what}: {found} where {expected} was required (correlation)")]
    Correlation {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{what}: offset {offset} where the IDL gives none (it must be 0)")]
    Offset { what: &'static str, offset: u64 },
    #[error("{0}")]
    Invalid(&'static str),
    #[error("pointers nest deeper than {0}")]
    TooDeep(usize),
    #[error("{what}: {value} is outside its range [{min}, {max}]")]
    Range {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("{what}: {value} is not one of the enumeration's values")]
    EnumValue { what: &'static str, value: u64 },
    #[error("{what}: no arm for the discriminant {value}")]
    InvalidTag { what: &'static str, value: u64 },
}

impl NdrError {
    /// RPC_X_BAD_STUB_DATA ([MS-ERREF] 2.2).
    pub const FAULT: u32 = 0x0000_06F7;
    /// RPC_X_ENUM_VALUE_OUT_OF_RANGE.
    pub const ENUM_FAULT: u32 = 0x0000_06F5;
    /// RPC_S_INVALID_TAG.
    pub const TAG_FAULT: u32 = 0x0000_06C5;
}

pub type Result<T> = std::result::Result<T, NdrError>;

/// Writes an octet stream, little-endian.
pub struct Encoder {
    pub syntax: Syntax,
    pub buf: Vec<u8>,
    next_referent: u32,
    /// Full pointers: the referent identifier given to each referent (by
    /// address), and those whose referent is already in the stream.
    full_ids: HashMap<usize, u32>,
    full_written: HashSet<u32>,
}

impl Encoder {
    pub fn new(syntax: Syntax) -> Encoder {
        Encoder {
            syntax,
            buf: Vec::new(),
            next_referent: 0x0002_0000,
            full_ids: HashMap::new(),
            full_written: HashSet::new(),
        }
    }

    fn referent_id(&mut self) -> u32 {
        let id = self.next_referent;
        self.next_referent = self.next_referent.wrapping_add(4);
        id
    }

    fn write_referent_id(&mut self, id: u32) {
        match self.syntax {
            Syntax::Ndr20 => self.u32(id),
            Syntax::Ndr64 => self.u64(u64::from(id)),
        }
    }

    /// An enumeration's value: 16 bits in NDR 2.0 unless `[v1_enum]`, a
    /// signed long in NDR64 ([MS-RPCE] 2.2.5.2).
    pub fn enum_value(&mut self, value: u32, v1_enum: bool) {
        if v1_enum || self.syntax == Syntax::Ndr64 {
            self.u32(value)
        } else {
            self.u16(value as u16)
        }
    }

    pub fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.align(2);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A conformance, variance or offset count in the syntax's width.
    pub fn count(&mut self, n: usize) {
        match self.syntax {
            Syntax::Ndr20 => self.u32(n as u32),
            Syntax::Ndr64 => self.u64(n as u64),
        }
    }

    /// A pointer's referent identifier (0 for null).
    pub fn pointer(&mut self, present: bool) {
        let id = if present { self.referent_id() } else { 0 };
        self.write_referent_id(id);
    }

    /// The end of a structure of alignment `align`: NDR64 pads a structure
    /// to a multiple of its alignment (the trailing gap, [MS-RPCE] 4.8).
    pub fn end_struct(&mut self, align: usize, start: usize) {
        if self.syntax == Syntax::Ndr64 {
            while !(self.buf.len() - start).is_multiple_of(align) {
                self.buf.push(0);
            }
        }
    }
}

/// The deepest chain of pointers decoded.
pub const MAX_DEPTH: usize = 64;

/// Reads an octet stream in either byte order.
pub struct Decoder<'a> {
    pub syntax: Syntax,
    data: &'a [u8],
    pos: usize,
    little: bool,
    depth: usize,
    /// Full pointers: the referents decoded so far by identifier; None
    /// while one is being decoded (a cycle, which cannot be represented).
    full: HashMap<u64, Option<Arc<dyn Any + Send + Sync>>>,
}

impl<'a> Decoder<'a> {
    pub fn new(data: &'a [u8], syntax: Syntax, little_endian: bool) -> Decoder<'a> {
        Decoder {
            syntax,
            data,
            pos: 0,
            little: little_endian,
            depth: 0,
            full: HashMap::new(),
        }
    }

    pub fn is_little_endian(&self) -> bool {
        self.little
    }

    /// An enumeration's value, as [`Encoder::enum_value`] writes it.
    pub fn enum_value(&mut self, v1_enum: bool) -> Result<u32> {
        if v1_enum || self.syntax == Syntax::Ndr64 {
            self.u32()
        } else {
            self.u16().map(u32::from)
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(NdrError::Insufficient {
                what,
                needed: self.pos.saturating_add(n),
                have: self.data.len(),
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn align(&mut self, n: usize) -> Result<()> {
        let pad = (n - self.pos % n) % n;
        self.take(pad, "alignment").map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1, "a byte")?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        self.align(2)?;
        let b = self.take(2, "a short")?;
        let b = [b[0], b[1]];
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    pub fn u32(&mut self) -> Result<u32> {
        self.align(4)?;
        let b = self.take(4, "a long")?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    pub fn u64(&mut self) -> Result<u64> {
        self.align(8)?;
        let b = self.take(8, "a hyper")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }

    fn raw_count(&mut self) -> Result<u64> {
        match self.syntax {
            Syntax::Ndr20 => self.u32().map(u64::from),
            Syntax::Ndr64 => self.u64(),
        }
    }

    /// A count of elements of `element_size` bytes each that must follow:
    /// refused when the rest of the stream cannot hold them, so no count
    /// ever makes the decoder allocate more than the stream's size.
    pub fn count(&mut self, what: &'static str, element_size: usize) -> Result<usize> {
        let count = self.raw_count()?;
        let remaining = self.remaining();
        let fits = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(element_size.max(1)))
            .is_some_and(|bytes| bytes <= remaining);
        if !fits {
            return Err(NdrError::CountTooLarge {
                what,
                count,
                remaining,
            });
        }
        Ok(count as usize)
    }

    /// A varying array's offset, which must be 0 when the IDL gives no
    /// first_is ([MS-RPCE] 3.1.1.5.3.2.1.7).
    pub fn zero_offset(&mut self, what: &'static str) -> Result<()> {
        match self.raw_count()? {
            0 => Ok(()),
            offset => Err(NdrError::Offset { what, offset }),
        }
    }

    /// A pointer's referent identifier: whether the referent follows.
    pub fn pointer(&mut self) -> Result<bool> {
        Ok(self.raw_count()? != 0)
    }

    fn referent_id(&mut self) -> Result<u64> {
        self.raw_count()
    }

    /// Checks a correlation ([MS-RPCE] 3.1.1.5.3.1).
    pub fn correlate(&self, what: &'static str, expected: u64, found: u64) -> Result<()> {
        if expected == found {
            Ok(())
        } else {
            Err(NdrError::Correlation {
                what,
                expected,
                found,
            })
        }
    }

    pub fn end_struct(&mut self, align: usize, start: usize) -> Result<()> {
        if self.syntax == Syntax::Ndr64 {
            let pad = (align - (self.pos - start) % align) % align;
            self.take(pad, "a structure's trailing gap")?;
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(NdrError::TooDeep(MAX_DEPTH));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }
}

/// A type with an NDR representation.
pub trait Ndr: Sized {
    /// A primitive type (type serialization writes no private header
    /// before one, [MS-RPCE] 2.2.6.3).
    const PRIMITIVE: bool = false;
    /// The alignment of the type's scalars in `syntax`.
    fn align(syntax: Syntax) -> usize;
    /// The fixed-size part, pointers as referent identifiers.
    fn encode_scalars(&self, e: &mut Encoder);
    /// The referents of embedded pointers, after the scalars.
    fn encode_buffers(&self, _e: &mut Encoder) {}
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self>;
    fn decode_buffers(&mut self, _d: &mut Decoder<'_>) -> Result<()> {
        Ok(())
    }
}

/// Marshals a value (a top-level parameter: its scalars, then its buffers).
pub fn encode<T: Ndr>(value: &T, e: &mut Encoder) {
    value.encode_scalars(e);
    value.encode_buffers(e);
}

pub fn decode<T: Ndr>(d: &mut Decoder<'_>) -> Result<T> {
    let mut v = T::decode_scalars(d)?;
    v.decode_buffers(d)?;
    Ok(v)
}

/// Marshals one value into a fresh stream.
pub fn to_bytes<T: Ndr>(value: &T, syntax: Syntax) -> Vec<u8> {
    let mut e = Encoder::new(syntax);
    encode(value, &mut e);
    e.buf
}

/// Unmarshals one value that must use the whole stream (up to alignment
/// padding of fewer than 8 bytes).
pub fn from_bytes<T: Ndr>(data: &[u8], syntax: Syntax, little_endian: bool) -> Result<T> {
    let mut d = Decoder::new(data, syntax, little_endian);
    let v = decode(&mut d)?;
    if d.remaining() >= 8 {
        return Err(NdrError::Invalid("bytes are left over after the stub data"));
    }
    Ok(v)
}

macro_rules! primitive {
    ($t:ty, $size:expr, $put:ident, $get:ident, $conv_out:expr, $conv_in:expr) => {
        impl Ndr for $t {
            const PRIMITIVE: bool = true;
            fn align(_: Syntax) -> usize {
                $size
            }
            fn encode_scalars(&self, e: &mut Encoder) {
                e.$put($conv_out(*self));
            }
            fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
                d.$get().map($conv_in)
            }
        }
    };
}

primitive!(u8, 1, u8, u8, |v| v, |v| v);
primitive!(i8, 1, u8, u8, |v: i8| v as u8, |v: u8| v as i8);
primitive!(u16, 2, u16, u16, |v| v, |v| v);
primitive!(i16, 2, u16, u16, |v: i16| v as u16, |v: u16| v as i16);
primitive!(u32, 4, u32, u32, |v| v, |v| v);
primitive!(i32, 4, u32, u32, |v: i32| v as u32, |v: u32| v as i32);
primitive!(u64, 8, u64, u64, |v| v, |v| v);
primitive!(i64, 8, u64, u64, |v: i64| v as u64, |v: u64| v as i64);

impl Ndr for Uuid {
    fn align(_: Syntax) -> usize {
        4
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.u32(self.time_low);
        e.u16(self.time_mid);
        e.u16(self.time_hi_and_version);
        e.buf.extend_from_slice(&self.clock_seq_and_node);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let time_low = d.u32()?;
        let time_mid = d.u16()?;
        let time_hi_and_version = d.u16()?;
        let mut clock_seq_and_node = [0u8; 8];
        clock_seq_and_node.copy_from_slice(d.take(8, "a UUID")?);
        Ok(Uuid {
            time_low,
            time_mid,
            time_hi_and_version,
            clock_seq_and_node,
        })
    }
}

/// NDR's boolean: one octet, 0 false, anything else true (C706 14.2.3).
impl Ndr for bool {
    const PRIMITIVE: bool = true;
    fn align(_: Syntax) -> usize {
        1
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.u8(u8::from(*self));
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        Ok(d.u8()? != 0)
    }
}

/// A fixed array (`T a[N]`): its elements, no counts.
impl<T: Ndr, const N: usize> Ndr for [T; N] {
    fn align(syntax: Syntax) -> usize {
        T::align(syntax)
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        for item in self {
            item.encode_scalars(e);
        }
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        for item in self {
            item.encode_buffers(e);
        }
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let mut items = Vec::with_capacity(N.min(d.remaining()));
        for _ in 0..N {
            items.push(T::decode_scalars(d)?);
        }
        items
            .try_into()
            .map_err(|_| NdrError::Invalid("a fixed array has the wrong number of elements"))
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        for item in self.iter_mut() {
            item.decode_buffers(d)?;
        }
        Ok(())
    }
}

/// A context handle on the wire (ndr_context_handle, C706 14.3.12.4):
/// 20 octets, attributes then a UUID; all zero is the NULL handle.
#[derive(msrpc_derive::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct ContextHandle {
    pub attributes: u32,
    pub uuid: Uuid,
}

impl ContextHandle {
    pub fn is_null(&self) -> bool {
        self.attributes == 0 && self.uuid == Uuid::NIL
    }
}

/// A `[unique]` pointer: NULL, or a referent marshalled with the buffers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Unique<T> {
    pub value: Option<Box<T>>,
    /// Decoding: a referent identifier was seen; the referent comes with
    /// the buffers.
    pending: bool,
}

impl<T> Unique<T> {
    pub fn new(value: Option<T>) -> Unique<T> {
        Unique {
            value: value.map(Box::new),
            pending: false,
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.value.as_deref()
    }
}

impl<T: Ndr> Ndr for Unique<T> {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.pointer(self.value.is_some());
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        if let Some(v) = &self.value {
            encode(v.as_ref(), e);
        }
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        Ok(Unique {
            value: None,
            pending: d.pointer()?,
        })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        if self.pending {
            d.enter()?;
            let v = decode(d);
            d.leave();
            self.value = Some(Box::new(v?));
            self.pending = false;
        }
        Ok(())
    }
}

/// A `[ptr]` (full) pointer: NULL, or a referent that other full
/// pointers in the same stream may alias (C706 14.3.12.1). Pointers that
/// share an `Arc` share one referent identifier, and the referent is
/// marshalled once, with the first of them; decoding gives aliases the
/// same `Arc`.
#[derive(Debug, Default)]
pub struct Full<T> {
    pub value: Option<Arc<T>>,
    /// Decoding: the referent identifier seen with the scalars.
    pending: Option<u64>,
}

impl<T> Clone for Full<T> {
    fn clone(&self) -> Full<T> {
        Full {
            value: self.value.clone(),
            pending: self.pending,
        }
    }
}

impl<T: PartialEq> PartialEq for Full<T> {
    fn eq(&self, other: &Full<T>) -> bool {
        self.value == other.value
    }
}

impl<T> Full<T> {
    pub fn new(value: Option<Arc<T>>) -> Full<T> {
        Full {
            value,
            pending: None,
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.value.as_deref()
    }
}

impl<T: Ndr + Send + Sync + 'static> Ndr for Full<T> {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        let id = match &self.value {
            None => 0,
            Some(referent) => {
                let address = Arc::as_ptr(referent) as usize;
                match e.full_ids.get(&address) {
                    Some(&id) => id,
                    None => {
                        let id = e.referent_id();
                        e.full_ids.insert(address, id);
                        id
                    }
                }
            }
        };
        e.write_referent_id(id);
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        if let Some(referent) = &self.value {
            let id = e.full_ids[&(Arc::as_ptr(referent) as usize)];
            if e.full_written.insert(id) {
                encode(referent.as_ref(), e);
            }
        }
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let id = d.referent_id()?;
        Ok(Full {
            value: None,
            pending: (id != 0).then_some(id),
        })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        let Some(id) = self.pending.take() else {
            return Ok(());
        };
        let referent = match d.full.get(&id) {
            Some(Some(seen)) => Arc::clone(seen).downcast::<T>().map_err(|_| {
                NdrError::Invalid("a full pointer aliases a referent of another type")
            })?,
            Some(None) => {
                return Err(NdrError::Invalid(
                    "a full pointer points into its own referent (a cycle)",
                ))
            }
            None => {
                d.full.insert(id, None);
                d.enter()?;
                let decoded = decode::<T>(d);
                d.leave();
                let referent = Arc::new(decoded?);
                d.full
                    .insert(id, Some(referent.clone() as Arc<dyn Any + Send + Sync>));
                referent
            }
        };
        self.value = Some(referent);
        Ok(())
    }
}

/// A conformant array (`[size_is(n)] T a[]`), as a referent or a
/// parameter: its maximum count, then its elements.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConformantArray<T>(pub Vec<T>);

/// The least number of bytes one element occupies in the stream: counts
/// are checked against it.
fn min_size<T: Ndr>(syntax: Syntax) -> usize {
    T::align(syntax).min(8)
}

impl<T: Ndr> Ndr for ConformantArray<T> {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.count(self.0.len());
        for item in &self.0 {
            item.encode_scalars(e);
        }
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        for item in &self.0 {
            item.encode_buffers(e);
        }
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let n = d.count("a conformant array", min_size::<T>(d.syntax))?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(T::decode_scalars(d)?);
        }
        Ok(ConformantArray(items))
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        for item in &mut self.0 {
            item.decode_buffers(d)?;
        }
        Ok(())
    }
}

/// A `[string] wchar_t *` referent: a conformant varying array of UTF-16
/// code units ending with a NUL that the text does not include.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WString(pub String);

impl Ndr for WString {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        let units: Vec<u16> = self.0.encode_utf16().chain([0]).collect();
        e.count(units.len());
        e.count(0);
        e.count(units.len());
        for u in units {
            e.u16(u);
        }
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let max = d.count("a string's maximum count", 2)?;
        d.zero_offset("a string")?;
        let actual = d.count("a string's actual count", 2)?;
        if actual > max {
            return Err(NdrError::Correlation {
                what: "a string's actual count against its maximum count",
                expected: max as u64,
                found: actual as u64,
            });
        }
        if actual == 0 {
            return Err(NdrError::Invalid("a string has no terminating NUL"));
        }
        let mut units = Vec::with_capacity(actual);
        for _ in 0..actual {
            units.push(d.u16()?);
        }
        if units.pop() != Some(0) {
            return Err(NdrError::Invalid("a string does not end with NUL"));
        }
        String::from_utf16(&units)
            .map(WString)
            .map_err(|_| NdrError::Invalid("a string is not valid UTF-16"))
    }
}

/// A `[string] char *` referent: bytes ending with NUL.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CString(pub Vec<u8>);

impl Ndr for CString {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.count(self.0.len() + 1);
        e.count(0);
        e.count(self.0.len() + 1);
        e.buf.extend_from_slice(&self.0);
        e.buf.push(0);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let max = d.count("a string's maximum count", 1)?;
        d.zero_offset("a string")?;
        let actual = d.count("a string's actual count", 1)?;
        d.correlate(
            "a string's actual count within its maximum",
            1,
            u64::from(actual <= max),
        )?;
        let bytes = d.take(actual, "a string")?;
        match bytes.split_last() {
            Some((0, text)) if !text.contains(&0) => Ok(CString(text.to_vec())),
            _ => Err(NdrError::Invalid("a string does not end with its only NUL")),
        }
    }
}

/// A `[string] char a[MAX]` field: a varying array — offset (0) and actual
/// count, no maximum (it is fixed by the IDL) — of at most MAX bytes
/// ending with NUL, as ept_entry_t's annotation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VaryingCString<const MAX: usize>(pub Vec<u8>);

impl<const MAX: usize> Ndr for VaryingCString<MAX> {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        // Text longer than the IDL's bound is cut to fit with its NUL.
        let text = &self.0[..self.0.len().min(MAX.saturating_sub(1))];
        e.count(0);
        e.count(text.len() + 1);
        e.buf.extend_from_slice(text);
        e.buf.push(0);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        d.zero_offset("a varying string")?;
        let actual = d.count("a varying string's actual count", 1)?;
        if actual > MAX {
            return Err(NdrError::Correlation {
                what: "a varying string's actual count within its fixed size",
                expected: MAX as u64,
                found: actual as u64,
            });
        }
        let bytes = d.take(actual, "a varying string")?;
        match bytes.split_last() {
            Some((0, text)) if !text.contains(&0) => Ok(VaryingCString(text.to_vec())),
            _ => Err(NdrError::Invalid("a string does not end with its only NUL")),
        }
    }
}

/// Stub data past a call's last parameter, read and dropped. Windows'
/// NDR engine ignores such octets, and some clients send them (Impacket
/// marshals each `[in, out, unique] IWbemClassObject**` of MS-WMI as one
/// pointer level, leaving the octets of a second behind); a method that
/// must accept those clients ends its parameters with this.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IgnoredRest;

impl Ndr for IgnoredRest {
    fn align(_syntax: Syntax) -> usize {
        1
    }
    fn encode_scalars(&self, _e: &mut Encoder) {}
    fn encode_buffers(&self, _e: &mut Encoder) {}
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let n = d.remaining();
        d.take(n, "ignored stub data")?;
        Ok(IgnoredRest)
    }
    fn decode_buffers(&mut self, _d: &mut Decoder<'_>) -> Result<()> {
        Ok(())
    }
}

/// A conformant varying array (`[size_is(max), length_is(n)] T a[]`):
/// the maximum count, the offset (0) and the actual count, then the
/// elements present — as ept_lookup's entries.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConformantVaryingArray<T> {
    /// The maximum count (size_is); at least `items.len()`.
    pub max: usize,
    pub items: Vec<T>,
}

impl<T: Ndr> Ndr for ConformantVaryingArray<T> {
    fn align(syntax: Syntax) -> usize {
        syntax.wide().max(T::align(syntax))
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        encode_varying(e, self.max, 0, &self.items);
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        encode_items_buffers(&self.items, e);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let (max, _, items) = decode_varying(d, "a conformant varying array", false)?;
        Ok(ConformantVaryingArray { max, items })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        decode_items_buffers(&mut self.items, d)
    }
}

/// A varying array's counts and elements: the maximum count (at least
/// what is sent), the offset, the actual count, then the elements.
fn encode_varying<T: Ndr>(e: &mut Encoder, max: usize, offset: usize, items: &[T]) {
    e.count(max.max(offset.saturating_add(items.len())));
    e.count(offset);
    e.count(items.len());
    for item in items {
        item.encode_scalars(e);
    }
}

/// Reads what [`encode_varying`] writes. Without `first_is` the offset
/// must be 0 ([MS-RPCE] 3.1.1.5.3.2.1.7); with it, the elements sent must
/// lie within the maximum count.
fn decode_varying<T: Ndr>(
    d: &mut Decoder<'_>,
    what: &'static str,
    first_is: bool,
) -> Result<(usize, usize, Vec<T>)> {
    let max = d.raw_count()?;
    let offset = if first_is {
        d.raw_count()?
    } else {
        d.zero_offset(what)?;
        0
    };
    let actual = d.count(what, min_size::<T>(d.syntax))?;
    let end = offset.saturating_add(actual as u64);
    if end > max {
        return Err(NdrError::Correlation {
            what: "a varying array's offset and actual count within its maximum count",
            expected: max,
            found: end,
        });
    }
    let mut items = Vec::with_capacity(actual);
    for _ in 0..actual {
        items.push(T::decode_scalars(d)?);
    }
    Ok((max as usize, offset as usize, items))
}

fn encode_items_buffers<T: Ndr>(items: &[T], e: &mut Encoder) {
    for item in items {
        item.encode_buffers(e);
    }
}

fn decode_items_buffers<T: Ndr>(items: &mut [T], d: &mut Decoder<'_>) -> Result<()> {
    for item in items {
        item.decode_buffers(d)?;
    }
    Ok(())
}

/// A conformant varying array with `[first_is]` (`[size_is(max),
/// first_is(offset), length_is(n)] T a[]`): of the array's `max`
/// elements, those from `offset` on are transmitted (C706 14.3.3.3).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OffsetVaryingArray<T> {
    pub max: usize,
    pub offset: usize,
    pub items: Vec<T>,
}

impl<T: Ndr> Ndr for OffsetVaryingArray<T> {
    fn align(syntax: Syntax) -> usize {
        syntax.wide().max(T::align(syntax))
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        encode_varying(e, self.max, self.offset, &self.items);
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        encode_items_buffers(&self.items, e);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let (max, offset, items) = decode_varying(d, "a varying array", true)?;
        Ok(OffsetVaryingArray { max, offset, items })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        decode_items_buffers(&mut self.items, d)
    }
}

/// A multidimensional conformant array (`[size_is(a, b)] T m[][]`,
/// C706 14.3.3.4): the maximum count of each of its `D` dimensions, then
/// the elements in row-major order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformantMatrix<T, const D: usize> {
    pub dims: [usize; D],
    /// `dims` multiplied out, the last dimension varying fastest.
    pub items: Vec<T>,
}

impl<T: Ndr, const D: usize> Ndr for ConformantMatrix<T, D> {
    fn align(syntax: Syntax) -> usize {
        syntax.wide().max(T::align(syntax))
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        for dim in self.dims {
            e.count(dim);
        }
        for item in &self.items {
            item.encode_scalars(e);
        }
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        encode_items_buffers(&self.items, e);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let mut dims = [0usize; D];
        let mut total: u64 = 1;
        for dim in &mut dims {
            let count = d.raw_count()?;
            total = total.saturating_mul(count);
            *dim = usize::try_from(count).unwrap_or(usize::MAX);
        }
        let remaining = d.remaining();
        let fits = usize::try_from(total)
            .ok()
            .and_then(|t| t.checked_mul(min_size::<T>(d.syntax)))
            .is_some_and(|bytes| bytes <= remaining);
        if !fits {
            return Err(NdrError::CountTooLarge {
                what: "a multidimensional conformant array",
                count: total,
                remaining,
            });
        }
        let mut items = Vec::with_capacity(total as usize);
        for _ in 0..total {
            items.push(T::decode_scalars(d)?);
        }
        Ok(ConformantMatrix { dims, items })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        decode_items_buffers(&mut self.items, d)
    }
}

/// A `[string, size_is(max)] char a[]` parameter: a conformant varying
/// string whose maximum count is the caller's buffer size, not its length
/// (rpc_mgmt_inq_princ_name's princ_name).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SizedCString {
    pub max: usize,
    pub text: Vec<u8>,
}

impl Ndr for SizedCString {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        // Cut to the buffer, keeping room for the NUL.
        let text = &self.text[..self.text.len().min(self.max.saturating_sub(1))];
        e.count(self.max.max(1));
        e.count(0);
        e.count(text.len() + 1);
        e.buf.extend_from_slice(text);
        e.buf.push(0);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        let max = d.raw_count()?;
        d.zero_offset("a string")?;
        let actual = d.count("a string's actual count", 1)?;
        if actual as u64 > max {
            return Err(NdrError::Correlation {
                what: "a string's actual count within its maximum count",
                expected: max,
                found: actual as u64,
            });
        }
        let bytes = d.take(actual, "a string")?;
        match bytes.split_last() {
            Some((0, text)) if !text.contains(&0) => Ok(SizedCString {
                max: max as usize,
                text: text.to_vec(),
            }),
            _ => Err(NdrError::Invalid("a string does not end with its only NUL")),
        }
    }
}

/// The parameters of a call in one direction: each marshalled whole — its
/// scalars, then its referents — before the next (C706 14.3.12: top-level
/// parameters are not a structure; a `[ref]` pointer parameter is
/// represented by its referent alone).
pub trait Params: Sized {
    fn encode_params(&self, e: &mut Encoder);
    fn decode_params(d: &mut Decoder<'_>) -> Result<Self>;
}

impl Params for () {
    fn encode_params(&self, _: &mut Encoder) {}
    fn decode_params(_: &mut Decoder<'_>) -> Result<Self> {
        Ok(())
    }
}

impl<T: Ndr> Params for T {
    fn encode_params(&self, e: &mut Encoder) {
        encode(self, e);
    }
    fn decode_params(d: &mut Decoder<'_>) -> Result<Self> {
        decode(d)
    }
}

macro_rules! tuple_params {
    ($($name:ident),+) => {
        impl<$($name: Ndr),+> Params for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode_params(&self, e: &mut Encoder) {
                let ($($name,)+) = self;
                $( encode($name, e); )+
            }
            fn decode_params(d: &mut Decoder<'_>) -> Result<Self> {
                Ok(($( decode::<$name>(d)?, )+))
            }
        }
    };
}

tuple_params!(A);
tuple_params!(A, B);
tuple_params!(A, B, C);
tuple_params!(A, B, C, D);
tuple_params!(A, B, C, D, E);
tuple_params!(A, B, C, D, E, F);
tuple_params!(A, B, C, D, E, F, G);
tuple_params!(A, B, C, D, E, F, G, H);
tuple_params!(A, B, C, D, E, F, G, H, I);
tuple_params!(A, B, C, D, E, F, G, H, I, J);
tuple_params!(A, B, C, D, E, F, G, H, I, J, K);
tuple_params!(A, B, C, D, E, F, G, H, I, J, K, L);

/// Marshals parameters into a fresh stream.
pub fn params_to_bytes<P: Params>(params: &P, syntax: Syntax) -> Vec<u8> {
    let mut e = Encoder::new(syntax);
    params.encode_params(&mut e);
    e.buf
}

/// Unmarshals parameters that must use the whole stream (up to alignment
/// padding of fewer than 8 bytes).
pub fn params_from_bytes<P: Params>(data: &[u8], syntax: Syntax, little_endian: bool) -> Result<P> {
    let mut d = Decoder::new(data, syntax, little_endian);
    let v = P::decode_params(&mut d)?;
    if d.remaining() >= 8 {
        return Err(NdrError::Invalid("bytes are left over after the stub data"));
    }
    Ok(v)
}

/// Checks a `[range(min, max)]` value ([MS-RPCE] 2.2.4.2 and 3.1.1.5.3).
pub fn check_range(what: &'static str, value: u64, min: u64, max: u64) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(NdrError::Range {
            what,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests;
