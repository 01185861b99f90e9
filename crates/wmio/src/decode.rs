//! Bytes to objects ([MS-WMIO] 2.2), as a recursive-descent reader of the
//! grammar: every length is checked against what remains, every heap
//! reference against its heap, and embedded objects nest at most
//! [`MAX_DEPTH`] deep. A malformed block is an error that says where,
//! never a panic.

use crate::{
    object_flags, Body, CimType, ClassDef, Instance, Method, Object, Property, Qualifier, Slot,
    Value, DICTIONARY, SIGNATURE,
};

/// How deep embedded objects and method signatures may nest.
pub const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed WMI object: {problem} (at octet {at})")]
pub struct DecodeError {
    pub at: usize,
    pub problem: String,
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Reads little-endian fields, each failure saying where (its octet in
/// the outermost buffer) and what was read; shared by every decoder here.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pub(crate) pos: usize,
    /// Where `data` starts in the outermost block, for errors.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], base: usize) -> Reader<'a> {
        Reader { data, pos: 0, base }
    }

    pub(crate) fn fail<T>(&self, problem: impl Into<String>) -> Result<T> {
        Err(DecodeError {
            at: self.base + self.pos,
            problem: problem.into(),
        })
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return self.fail(format!(
                "{what} needs {n} octets, {} remain",
                self.data.len() - self.pos
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A UINT32 that must be `value`.
    pub(crate) fn expect(&mut self, value: u32, what: &str) -> Result<()> {
        let at = self.pos;
        let found = self.u32(what)?;
        if found != value {
            self.pos = at;
            return self.fail(format!("{what} is {found:#x}, not {value:#x}"));
        }
        Ok(())
    }

    /// A block that starts with an EncodingLength counting itself.
    fn sized_block(&mut self, what: &str) -> Result<Reader<'a>> {
        let at = self.pos;
        let len = self.u32(what)? as usize;
        if len < 4 {
            self.pos = at;
            return self.fail(format!(
                "{what}'s length {len} is less than its own 4 octets"
            ));
        }
        let body = self.take(len - 4, what)?;
        Ok(Reader::new(body, self.base + at + 4))
    }

    pub(crate) fn rest(&self) -> usize {
        self.data.len() - self.pos
    }
}

/// An Encoded-String at the reader (2.2.78).
fn encoded_string(r: &mut Reader<'_>, what: &str) -> Result<String> {
    let flag = r.u8(what)?;
    let rest = &r.data[r.pos..];
    match flag {
        0 => match rest.iter().position(|&b| b == 0) {
            Some(end) => {
                r.pos += end + 1;
                Ok(rest[..end].iter().map(|&b| b as char).collect())
            }
            None => r.fail(format!("{what} has no terminating NUL")),
        },
        1 => {
            let mut units = Vec::new();
            let mut i = 0;
            loop {
                if i + 2 > rest.len() {
                    return r.fail(format!("{what} has no terminating NUL"));
                }
                let u = u16::from_le_bytes([rest[i], rest[i + 1]]);
                i += 2;
                if u == 0 {
                    break;
                }
                units.push(u);
            }
            r.pos += i;
            String::from_utf16(&units).or_else(|_| r.fail(format!("{what} is not valid UTF-16")))
        }
        f => r.fail(format!("{what}'s flag is {f:#x}, not 0 or 1")),
    }
}

/// A heap (2.2.66) and the absolute offset of its first item.
#[derive(Clone, Copy)]
struct Heap<'a> {
    items: &'a [u8],
    base: usize,
}

impl<'a> Heap<'a> {
    fn read(r: &mut Reader<'a>, what: &str) -> Result<Heap<'a>> {
        let len = r.u32(what)?;
        if len & 0x8000_0000 == 0 {
            return r.fail(format!("{what}'s length {len:#x} lacks its top bit"));
        }
        let base = r.base + r.pos;
        let items = r.take((len & 0x7fff_ffff) as usize, what)?;
        Ok(Heap { items, base })
    }

    fn at(&self, reference: u32, what: &str) -> Result<Reader<'a>> {
        let offset = reference as usize;
        if reference & 0x8000_0000 != 0 || offset >= self.items.len() {
            return Err(DecodeError {
                at: self.base,
                problem: format!(
                    "{what}'s heap reference {reference:#x} is outside the heap of {} octets",
                    self.items.len()
                ),
            });
        }
        let mut r = Reader::new(self.items, self.base);
        r.pos = offset;
        Ok(r)
    }

    /// A HeapStringRef (2.2.68): a dictionary entry, or a string here.
    fn string(&self, reference: u32, what: &str) -> Result<String> {
        if reference & 0x8000_0000 != 0 {
            return match DICTIONARY.get((reference & 0x7fff_ffff) as usize) {
                Some(s) => Ok(s.to_string()),
                None => Err(DecodeError {
                    at: self.base,
                    problem: format!(
                        "{what} names dictionary entry {reference:#x}, which is not one"
                    ),
                }),
            };
        }
        let mut r = self.at(reference, what)?;
        encoded_string(&mut r, what)
    }
}

/// An EncodingUnit (2.2.1).
pub fn decode_unit(data: &[u8]) -> Result<Object> {
    let mut r = Reader::new(data, 0);
    let signature = r.u32("the signature")?;
    if signature != SIGNATURE {
        return Err(DecodeError {
            at: 0,
            problem: format!("the signature is {signature:#x}, not 0x12345678"),
        });
    }
    // The length may overstate the block ([MS-WMIO] section 3's own
    // example does): the ObjectBlock ends where its parts say.
    let len = (r.u32("ObjectEncodingLength")? as usize).min(r.rest());
    let block = r.take(len, "the ObjectBlock")?;
    object_block(&mut Reader::new(block, 8), 0)
}

/// An ObjectBlock (2.2.5) that fills `data`.
pub fn decode_object_block(data: &[u8]) -> Result<Object> {
    object_block(&mut Reader::new(data, 0), 0)
}

fn object_block(r: &mut Reader<'_>, depth: usize) -> Result<Object> {
    object_block_with_layout(r, depth).map(|(object, _)| object)
}

/// An ObjectBlock that fills `data`, and for an instance its class's
/// layout (what decoding more instances of the class needs).
pub(crate) fn object_block_layout(data: &[u8]) -> Result<(Object, Option<Layout>)> {
    object_block_with_layout(&mut Reader::new(data, 0), 0)
}

/// An instance without its class (EncodingUnitInstanceNoClass, 2.2.3)
/// of a class decoded before.
pub(crate) fn instance_no_class(
    data: &[u8],
    class: &std::sync::Arc<ClassDef>,
    layout: &Layout,
) -> Result<Object> {
    let mut r = Reader::new(data, 0);
    let at = r.pos;
    let flags = r.u8("ObjectFlags")?;
    if flags & object_flags::INSTANCE == 0 || flags & object_flags::CLASS != 0 {
        r.pos = at;
        return r.fail(format!(
            "ObjectFlags {flags:#x} of an instance without its class"
        ));
    }
    let decoration = if flags & object_flags::DECORATED != 0 {
        let server = encoded_string(&mut r, "DecServerName")?;
        let namespace = encoded_string(&mut r, "DecNamespaceName")?;
        Some((server, namespace))
    } else {
        None
    };
    let instance = instance_rest(&mut r, class.clone(), layout, 0)?;
    Ok(Object {
        decoration,
        extra_flags: flags & !0x07,
        body: Body::Instance(instance),
    })
}

fn object_block_with_layout(r: &mut Reader<'_>, depth: usize) -> Result<(Object, Option<Layout>)> {
    if depth > MAX_DEPTH {
        return r.fail(format!("objects nest more than {MAX_DEPTH} deep"));
    }
    let at = r.pos;
    let flags = r.u8("ObjectFlags")?;
    let class = flags & object_flags::CLASS != 0;
    let instance = flags & object_flags::INSTANCE != 0;
    if class == instance {
        r.pos = at;
        return r.fail(format!(
            "ObjectFlags {flags:#x} must say class (0x01) or instance (0x02), not both or neither"
        ));
    }
    let decoration = if flags & object_flags::DECORATED != 0 {
        let server = encoded_string(r, "DecServerName")?;
        let namespace = encoded_string(r, "DecNamespaceName")?;
        Some((server, namespace))
    } else {
        None
    };
    let (body, layout) = if class {
        let (parent, _) = class_and_methods(r, depth)?;
        let (current, _) = class_and_methods(r, depth)?;
        (Body::Class { parent, current }, None)
    } else {
        let (instance, layout) = instance_type(r, depth)?;
        (Body::Instance(instance), Some(layout))
    };
    Ok((
        Object {
            decoration,
            extra_flags: flags & !0x07,
            body,
        },
        layout,
    ))
}

/// What decoding an instance needs of its class beyond the definition.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// Each property's ValueTable offset, in declaration order.
    offsets: Vec<usize>,
    nd_and_values: usize,
}

fn class_and_methods(r: &mut Reader<'_>, depth: usize) -> Result<(ClassDef, Layout)> {
    let (mut class, layout) = class_part(r, depth)?;
    class.methods = methods_part(r, depth)?;
    Ok((class, layout))
}

/// ClassPart (2.2.15).
fn class_part(r: &mut Reader<'_>, depth: usize) -> Result<(ClassDef, Layout)> {
    let mut part = r.sized_block("ClassPart")?;
    let _reserved = part.u8("ClassHeader's reserved octet")?;
    let name_ref = part.u32("ClassNameRef")?;
    let nd_and_values = part.u32("NdTableValueTableLength")? as usize;
    let mut list = part.sized_block("DerivationList")?;
    let mut derivation = Vec::new();
    while list.rest() > 0 {
        derivation.push(encoded_string(&mut list, "a DerivationList class name")?);
        list.u32("a DerivationList name's length")?;
    }
    let qualifier_bytes = part.sized_block("ClassQualifierSet")?;
    let count = part.u32("PropertyCount")? as usize;
    if count > part.rest() / 8 {
        return part.fail(format!(
            "PropertyCount {count} is more than the ClassPart holds"
        ));
    }
    let mut lookups = Vec::with_capacity(count);
    for _ in 0..count {
        lookups.push((part.u32("PropertyNameRef")?, part.u32("PropertyInfoRef")?));
    }
    let nd_values = if count > 0 {
        part.take(nd_and_values, "the NdTable and ValueTable")?
    } else {
        &[][..]
    };
    let heap = Heap::read(&mut part, "ClassHeap")?;
    // Octets after the heap are garbage the encoder may leave (2.3.4).
    let nd_len = if count == 0 { 0 } else { (count - 1) / 4 + 1 };
    if count > 0 && nd_and_values < nd_len {
        return part.fail("NdTableValueTableLength is shorter than the NdTable");
    }
    let name = if name_ref == u32::MAX {
        None
    } else {
        Some(heap.string(name_ref, "ClassNameRef")?)
    };
    let qualifiers = qualifier_set(qualifier_bytes, &heap, depth)?;
    let mut props: Vec<Option<(Property, usize)>> = vec![None; count];
    for (name_ref, info_ref) in lookups {
        let name = heap.string(name_ref, "PropertyNameRef")?;
        let mut info = heap.at(info_ref, "PropertyInfoRef")?;
        let ty = info.u32("PropertyType")?;
        let order = info.u16("DeclarationOrder")? as usize;
        let offset = info.u32("ValueTableOffset")? as usize;
        let origin = info.u32("ClassOfOrigin")?;
        let quals = info.sized_block("PropertyQualifierSet")?;
        let cim_type = CimType((ty & 0xffff & !0x4000) as u16);
        if !cim_type.is_known() {
            return info.fail(format!("property {name} has unknown CIM type {ty:#x}"));
        }
        if order >= count || props[order].is_some() {
            return info.fail(format!(
                "property {name}'s DeclarationOrder {order} is out of range or repeated"
            ));
        }
        if offset + cim_type.inline_size() > nd_and_values - nd_len {
            return info.fail(format!(
                "property {name}'s ValueTableOffset {offset} is outside the ValueTable"
            ));
        }
        let qualifiers = qualifier_set(quals, &heap, depth)?;
        props[order] = Some((
            Property {
                name,
                cim_type,
                inherited: ty & 0x4000 != 0,
                origin,
                qualifiers,
                default: None,
            },
            offset,
        ));
    }
    let mut properties = Vec::with_capacity(count);
    let mut offsets = Vec::with_capacity(count);
    let values = nd_values.get(nd_len..).unwrap_or(&[]);
    for (i, p) in props.into_iter().enumerate() {
        let Some((mut p, offset)) = p else {
            return part.fail(format!("no property has DeclarationOrder {i}"));
        };
        let bits = (nd_values[i / 4] >> ((i % 4) * 2)) & 3;
        if bits == 0 {
            let slot = &values[offset..offset + p.cim_type.inline_size()];
            p.default = Some(value(slot, p.cim_type, &heap, depth)?);
        }
        offsets.push(offset);
        properties.push(p);
    }
    Ok((
        ClassDef {
            name,
            derivation,
            qualifiers,
            properties,
            methods: Vec::new(),
        },
        Layout {
            offsets,
            nd_and_values,
        },
    ))
}

/// QualifierSet (2.2.59), the length already taken.
fn qualifier_set(mut r: Reader<'_>, heap: &Heap<'_>, depth: usize) -> Result<Vec<Qualifier>> {
    let mut out = Vec::new();
    while r.rest() > 0 {
        let name = heap.string(r.u32("QualifierName")?, "QualifierName")?;
        let flavor = r.u8("QualifierFlavor")?;
        let ty = CimType((r.u32("QualifierType")? & 0xffff) as u16);
        if !ty.is_known() {
            return r.fail(format!("qualifier {name} has unknown CIM type {:#x}", ty.0));
        }
        let slot = r.take(ty.inline_size(), "QualifierValue")?;
        let value = value(slot, ty, heap, depth)?;
        out.push(Qualifier {
            name,
            flavor,
            value,
        });
    }
    Ok(out)
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// An EncodedValue (2.2.71) from its inline octets.
fn value(slot: &[u8], ty: CimType, heap: &Heap<'_>, depth: usize) -> Result<Value> {
    if ty.is_array() {
        return array(le_u32(slot), ty.base(), heap, depth);
    }
    let b = slot;
    Ok(match ty {
        CimType::SINT8 => Value::Sint8(b[0] as i8),
        CimType::UINT8 => Value::Uint8(b[0]),
        CimType::SINT16 => Value::Sint16(i16::from_le_bytes([b[0], b[1]])),
        CimType::UINT16 => Value::Uint16(u16::from_le_bytes([b[0], b[1]])),
        CimType::CHAR16 => Value::Char16(u16::from_le_bytes([b[0], b[1]])),
        CimType::BOOLEAN => Value::Boolean(u16::from_le_bytes([b[0], b[1]]) != 0),
        CimType::SINT32 => Value::Sint32(le_u32(b) as i32),
        CimType::UINT32 => Value::Uint32(le_u32(b)),
        CimType::REAL32 => Value::Real32(f32::from_bits(le_u32(b))),
        CimType::SINT64 | CimType::UINT64 | CimType::REAL64 => {
            let v = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
            match ty {
                CimType::SINT64 => Value::Sint64(v as i64),
                CimType::UINT64 => Value::Uint64(v),
                _ => Value::Real64(f64::from_bits(v)),
            }
        }
        CimType::STRING => Value::String(heap.string(le_u32(b), "a string value")?),
        CimType::DATETIME => Value::DateTime(heap.string(le_u32(b), "a datetime value")?),
        CimType::REFERENCE => Value::Reference(heap.string(le_u32(b), "a reference value")?),
        CimType::OBJECT => {
            let mut r = heap.at(le_u32(b), "an embedded object")?;
            let len = r.u32("an embedded object's length")? as usize;
            let block = r.take(len, "an embedded object")?;
            let base = r.base + r.pos - len;
            Value::Object(Box::new(object_block(
                &mut Reader::new(block, base),
                depth + 1,
            )?))
        }
        other => {
            return Err(DecodeError {
                at: heap.base,
                problem: format!("CIM type {:#x} has no encoding", other.0),
            })
        }
    })
}

/// Encoded-Array (2.2.79).
fn array(reference: u32, base: CimType, heap: &Heap<'_>, depth: usize) -> Result<Value> {
    let mut r = heap.at(reference, "an array")?;
    let count = r.u32("ArrayCount")? as usize;
    let size = base.inline_size();
    if count > r.rest() / size {
        return r.fail(format!("ArrayCount {count} is more than the heap holds"));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let slot = r.take(size, "an array element")?;
        items.push(value(slot, base, heap, depth)?);
    }
    Ok(Value::Array(base, items))
}

/// MethodsPart (2.2.38).
fn methods_part(r: &mut Reader<'_>, depth: usize) -> Result<Vec<Method>> {
    let mut part = r.sized_block("MethodsPart")?;
    let count = part.u16("MethodCount")? as usize;
    part.u16("MethodCountPadding")?;
    if count > part.rest() / 24 {
        return part.fail(format!(
            "MethodCount {count} is more than the MethodsPart holds"
        ));
    }
    let mut descriptions = Vec::with_capacity(count);
    for _ in 0..count {
        let name = part.u32("MethodName")?;
        let flags = part.u8("MethodFlags")?;
        part.take(3, "MethodPadding")?;
        let origin = part.u32("MethodOrigin")?;
        let qualifiers = part.u32("MethodQualifiers")?;
        let input = part.u32("InputSignature")?;
        let output = part.u32("OutputSignature")?;
        descriptions.push((name, flags, origin, qualifiers, input, output));
    }
    let heap = Heap::read(&mut part, "MethodHeap")?;
    let mut methods = Vec::with_capacity(count);
    for (name, flags, origin, quals, input, output) in descriptions {
        let name = heap.string(name, "MethodName")?;
        let qualifiers = if quals == u32::MAX {
            Vec::new()
        } else {
            let mut q = heap.at(quals, "MethodQualifiers")?;
            qualifier_set(q.sized_block("MethodQualifiers")?, &heap, depth)?
        };
        let signature = |reference: u32| -> Result<Option<ClassDef>> {
            if reference == u32::MAX {
                return Ok(None);
            }
            let mut s = heap.at(reference, "a method signature")?;
            let len = s.u32("MethodSignatureBlock's length")? as usize;
            if len == 0 {
                return Ok(None);
            }
            let base = s.base + s.pos;
            let block = s.take(len, "a method signature")?;
            match object_block(&mut Reader::new(block, base), depth + 1)?.body {
                Body::Class { current, .. } => Ok(Some(current)),
                Body::Instance(_) => Err(DecodeError {
                    at: base,
                    problem: "a method signature is an instance, not a class".into(),
                }),
            }
        };
        methods.push(Method {
            name,
            inherited: flags & crate::flavor::ORIGIN_PROPAGATED != 0,
            origin,
            qualifiers,
            input: signature(input)?,
            output: signature(output)?,
        });
    }
    Ok(methods)
}

/// InstanceType (2.2.53).
fn instance_type(r: &mut Reader<'_>, depth: usize) -> Result<(Instance, Layout)> {
    let (class, layout) = class_part(r, depth)?;
    let instance = instance_rest(r, std::sync::Arc::new(class), &layout, depth)?;
    Ok((instance, layout))
}

/// InstanceType after its CurrentClass.
fn instance_rest(
    r: &mut Reader<'_>,
    class: std::sync::Arc<ClassDef>,
    layout: &Layout,
    depth: usize,
) -> Result<Instance> {
    let mut part = r.sized_block("InstanceType")?;
    part.u8("InstanceFlags")?;
    let _name_ref = part.u32("InstanceClassName")?;
    let count = class.properties.len();
    let nd_values = if count > 0 {
        part.take(layout.nd_and_values, "the instance's NdTable and values")?
    } else {
        &[][..]
    };
    let qualifier_bytes = part.sized_block("InstanceQualifierSet")?;
    match part.u8("InstPropQualSetFlag")? {
        1 => {}
        2 => {
            for _ in 0..count {
                part.sized_block("a property's instance qualifiers")?;
            }
        }
        f => return part.fail(format!("InstPropQualSetFlag is {f}, not 1 or 2")),
    }
    let heap = Heap::read(&mut part, "InstanceHeap")?;
    let qualifiers = qualifier_set(qualifier_bytes, &heap, depth)?;
    let nd_len = if count == 0 { 0 } else { (count - 1) / 4 + 1 };
    let values_table = nd_values.get(nd_len..).unwrap_or(&[]);
    let mut values = Vec::with_capacity(count);
    for (i, p) in class.properties.iter().enumerate() {
        let bits = (nd_values[i / 4] >> ((i % 4) * 2)) & 3;
        values.push(if bits & 1 != 0 {
            Slot::Null
        } else if bits & 2 != 0 {
            Slot::Default
        } else {
            let at = layout.offsets[i];
            let slot = &values_table[at..at + p.cim_type.inline_size()];
            Slot::Value(value(slot, p.cim_type, &heap, depth)?)
        });
    }
    Ok(Instance {
        class,
        values,
        qualifiers,
    })
}
