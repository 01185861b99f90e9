//! Objects to bytes ([MS-WMIO] 2.2). Layout choices the clients rely on:
//! the first item of every heap is the class name, so no value sits at
//! heap offset 0 (Impacket reads a zero HeapRef in an instance as "no
//! value"); the strings and objects of an array follow the array in the
//! heap in order; names and qualifier names use the dictionary (2.2.80),
//! values never do (the clients read values as heap offsets only).

use crate::{
    flavor, object_flags, Body, CimType, ClassDef, Instance, Object, Qualifier, Slot, Value,
    DICTIONARY, SIGNATURE,
};

/// A heap under construction (Heap, 2.2.66).
#[derive(Default)]
struct Heap {
    items: Vec<u8>,
}

impl Heap {
    fn offset(&self) -> u32 {
        self.items.len() as u32
    }

    /// Appends bytes; their HeapRef.
    fn push(&mut self, bytes: &[u8]) -> u32 {
        let at = self.offset();
        self.items.extend_from_slice(bytes);
        at
    }

    /// A name or a qualifier's name: a dictionary reference when the
    /// dictionary has it.
    fn name(&mut self, text: &str) -> u32 {
        match DICTIONARY.iter().position(|d| *d == text) {
            Some(i) => 0x8000_0000 | i as u32,
            None => self.value_string(text),
        }
    }

    fn value_string(&mut self, text: &str) -> u32 {
        let mut bytes = Vec::with_capacity(text.len() + 2);
        encoded_string(text, &mut bytes);
        self.push(&bytes)
    }

    fn finish(self, out: &mut Vec<u8>) {
        put_u32(out, 0x8000_0000 | self.items.len() as u32);
        out.extend_from_slice(&self.items);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn patch_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Encoded-String (2.2.78): one octet per character when every character
/// is below U+0100, UTF-16 otherwise.
pub(crate) fn encoded_string(text: &str, out: &mut Vec<u8>) {
    if text.chars().all(|c| (c as u32) < 0x100) {
        out.push(0);
        out.extend(text.chars().map(|c| c as u8));
        out.push(0);
    } else {
        out.push(1);
        for unit in text.encode_utf16() {
            out.extend_from_slice(&unit.to_le_bytes());
        }
        out.extend_from_slice(&[0, 0]);
    }
}

/// An EncodingUnit (2.2.1): the signature, the length, the ObjectBlock.
pub fn encode_unit(object: &Object) -> Vec<u8> {
    let block = encode_object_block(object);
    let mut out = Vec::with_capacity(block.len() + 8);
    put_u32(&mut out, SIGNATURE);
    put_u32(&mut out, block.len() as u32);
    out.extend_from_slice(&block);
    out
}

/// An ObjectBlock (2.2.5).
pub fn encode_object_block(object: &Object) -> Vec<u8> {
    let mut out = Vec::new();
    flags_and_decoration(object, &mut out);
    match &object.body {
        Body::Class { parent, current } => {
            class_and_methods(parent, &mut out);
            class_and_methods(current, &mut out);
        }
        Body::Instance(instance) => instance_type(instance, &mut out),
    }
    out
}

fn class_and_methods(class: &ClassDef, out: &mut Vec<u8>) {
    class_part(class, out);
    methods_part(class, out);
}

/// The bits of one property in an NdTable (2.2.27).
fn nd_set(table: &mut [u8], index: usize, bits: u8) {
    table[index / 4] |= (bits & 3) << ((index % 4) * 2);
}

fn nd_len(count: usize) -> usize {
    if count == 0 {
        0
    } else {
        (count - 1) / 4 + 1
    }
}

/// Where each property's value sits in the ValueTable, in declaration
/// order, and the table's length.
fn value_offsets(class: &ClassDef) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(class.properties.len());
    let mut at = 0;
    for p in &class.properties {
        offsets.push(at);
        at += p.cim_type.inline_size();
    }
    (offsets, at)
}

/// ClassPart (2.2.15).
fn class_part(class: &ClassDef, out: &mut Vec<u8>) {
    let start = out.len();
    let mut heap = Heap::default();
    // The class name first: nothing else is at offset 0.
    let name_ref = match &class.name {
        Some(name) => heap.value_string(name),
        None => u32::MAX,
    };
    let count = class.properties.len();
    let (offsets, table_len) = value_offsets(class);
    let nd_and_values = if count == 0 {
        0
    } else {
        nd_len(count) + table_len
    };
    // ClassHeader (2.2.16): the length is patched at the end.
    put_u32(out, 0);
    out.push(0);
    put_u32(out, name_ref);
    put_u32(out, nd_and_values as u32);
    // DerivationList (2.2.17).
    let list_start = out.len();
    put_u32(out, 0);
    for name in &class.derivation {
        let before = out.len();
        encoded_string(name, out);
        let chars = if out[before] == 0 {
            out.len() - before
        } else {
            2 + name.encode_utf16().count()
        };
        put_u32(out, chars as u32);
    }
    let list_len = (out.len() - list_start) as u32;
    patch_u32(out, list_start, list_len);
    qualifier_set(&class.qualifiers, &mut heap, out);
    // PropertyLookupTable (2.2.21), sorted by name; the PropertyInfos go
    // on the heap in declaration order.
    let mut lookups = Vec::with_capacity(count);
    for (order, p) in class.properties.iter().enumerate() {
        let name_ref = heap.name(&p.name);
        let mut info = Vec::new();
        let inherited = if p.inherited { 0x4000 } else { 0 };
        put_u32(&mut info, u32::from(p.cim_type.0) | inherited);
        info.extend_from_slice(&(order as u16).to_le_bytes());
        put_u32(&mut info, offsets[order] as u32);
        put_u32(&mut info, p.origin);
        qualifier_set(&p.qualifiers, &mut heap, &mut info);
        let info_ref = heap.push(&info);
        lookups.push((p.name.as_str(), name_ref, info_ref));
    }
    lookups.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    put_u32(out, count as u32);
    for (_, name_ref, info_ref) in &lookups {
        put_u32(out, *name_ref);
        put_u32(out, *info_ref);
    }
    if count > 0 {
        // NdTable and ValueTable (2.2.26, 2.2.29): the class's defaults.
        let mut nd = vec![0u8; nd_len(count)];
        let mut values = vec![0u8; table_len];
        for (i, p) in class.properties.iter().enumerate() {
            let slot = &mut values[offsets[i]..offsets[i] + p.cim_type.inline_size()];
            match &p.default {
                // A default of another type than its property's is not
                // encoded (it would be read as something else): NULL.
                Some(v) if v.cim_type() == p.cim_type => {
                    slot.copy_from_slice(&inline_value(v, p.cim_type, &mut heap))
                }
                // No default: NULL, inherited as NULL for an inherited
                // property.
                _ => {
                    slot.fill(0xff);
                    nd_set(&mut nd, i, if p.inherited { 3 } else { 1 });
                }
            }
        }
        out.extend_from_slice(&nd);
        out.extend_from_slice(&values);
    }
    heap.finish(out);
    let len = (out.len() - start) as u32;
    patch_u32(out, start, len);
}

/// QualifierSet (2.2.59).
fn qualifier_set(qualifiers: &[Qualifier], heap: &mut Heap, out: &mut Vec<u8>) {
    let start = out.len();
    put_u32(out, 0);
    for q in qualifiers {
        put_u32(out, heap.name(&q.name));
        out.push(q.flavor);
        let ty = q.value.cim_type();
        put_u32(out, u32::from(ty.0));
        out.extend_from_slice(&inline_value(&q.value, ty, heap));
    }
    let len = (out.len() - start) as u32;
    patch_u32(out, start, len);
}

/// An EncodedValue as it sits inline (2.2.71), its heap items pushed.
fn inline_value(value: &Value, ty: CimType, heap: &mut Heap) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    match value {
        Value::Sint8(v) => out.push(*v as u8),
        Value::Uint8(v) => out.push(*v),
        Value::Sint16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Uint16(v) | Value::Char16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Sint32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Uint32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Sint64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Uint64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Real32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Real64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Boolean(b) => out.extend_from_slice(&(if *b { 0xffffu16 } else { 0 }).to_le_bytes()),
        Value::String(s) | Value::DateTime(s) | Value::Reference(s) => {
            put_u32(&mut out, heap.value_string(s))
        }
        Value::Object(object) => {
            let block = encode_object_block(object);
            let mut item = Vec::with_capacity(block.len() + 4);
            put_u32(&mut item, block.len() as u32);
            item.extend_from_slice(&block);
            put_u32(&mut out, heap.push(&item));
        }
        Value::Array(base, items) => put_u32(&mut out, array(*base, items, heap)),
    }
    // A value whose type differs from its slot's (a caller's mistake)
    // still fills the slot exactly.
    out.resize(ty.inline_size(), 0);
    out
}

/// Encoded-Array (2.2.79): the count and the elements; strings and
/// objects right after it, in order.
fn array(base: CimType, items: &[Value], heap: &mut Heap) -> u32 {
    let mut head = Vec::with_capacity(4 + items.len() * base.inline_size());
    put_u32(&mut head, items.len() as u32);
    let by_ref = matches!(
        base,
        CimType::STRING | CimType::DATETIME | CimType::REFERENCE | CimType::OBJECT
    );
    if !by_ref {
        for item in items {
            head.extend_from_slice(&inline_value(item, base, heap));
        }
        return heap.push(&head);
    }
    head.resize(4 + items.len() * 4, 0);
    let at = heap.push(&head);
    for (i, item) in items.iter().enumerate() {
        let slot = inline_value(item, base, heap);
        let pos = at as usize + 4 + i * 4;
        heap.items[pos..pos + 4].copy_from_slice(&slot);
    }
    at
}

/// MethodsPart (2.2.38).
fn methods_part(class: &ClassDef, out: &mut Vec<u8>) {
    let start = out.len();
    put_u32(out, 0);
    out.extend_from_slice(&(class.methods.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    let mut heap = Heap::default();
    for m in &class.methods {
        put_u32(out, heap.value_string(&m.name));
        out.push(if m.inherited {
            flavor::ORIGIN_PROPAGATED
        } else {
            0
        });
        out.extend_from_slice(&[0, 0, 0]);
        put_u32(out, m.origin);
        let mut qualifiers = Vec::new();
        qualifier_set(&m.qualifiers, &mut heap, &mut qualifiers);
        put_u32(out, heap.push(&qualifiers));
        for signature in [&m.input, &m.output] {
            // MethodSignatureBlock (2.2.70): a __PARAMETERS class.
            let mut block = Vec::new();
            match signature {
                Some(params) => {
                    let object = encode_object_block(&Object {
                        decoration: None,
                        extra_flags: 0,
                        body: Body::Class {
                            parent: ClassDef::default(),
                            current: params.clone(),
                        },
                    });
                    put_u32(&mut block, object.len() as u32);
                    block.extend_from_slice(&object);
                }
                None => put_u32(&mut block, 0),
            }
            put_u32(out, heap.push(&block));
        }
    }
    heap.finish(out);
    let len = (out.len() - start) as u32;
    patch_u32(out, start, len);
}

/// InstanceType (2.2.53): the class part, then the instance's own.
fn instance_type(instance: &Instance, out: &mut Vec<u8>) {
    class_part(&instance.class, out);
    instance_rest(instance, out);
}

/// The ObjectFlags and Decoration of an object.
fn flags_and_decoration(object: &Object, out: &mut Vec<u8>) {
    let kind = match object.body {
        Body::Class { .. } => object_flags::CLASS,
        Body::Instance(_) => object_flags::INSTANCE,
    };
    let decorated = if object.decoration.is_some() {
        object_flags::DECORATED
    } else {
        0
    };
    out.push(kind | decorated | (object.extra_flags & !0x07));
    if let Some((server, namespace)) = &object.decoration {
        encoded_string(server, out);
        encoded_string(namespace, out);
    }
}

/// An instance without its class (EncodingUnitInstanceNoClass, 2.2.3),
/// as an ObjectArray sends the instances after the first of a class; None
/// for a class.
pub fn encode_instance_no_class(object: &Object) -> Option<Vec<u8>> {
    let Body::Instance(instance) = &object.body else {
        return None;
    };
    let mut out = Vec::new();
    flags_and_decoration(object, &mut out);
    instance_rest(instance, &mut out);
    Some(out)
}

/// The ClassPart of an instance's class, as the octets that identify the
/// class in an ObjectArray.
pub fn encode_class_part(class: &ClassDef) -> Vec<u8> {
    let mut out = Vec::new();
    class_part(class, &mut out);
    out
}

/// InstanceType after its CurrentClass.
fn instance_rest(instance: &Instance, out: &mut Vec<u8>) {
    let class = &instance.class;
    let start = out.len();
    put_u32(out, 0);
    out.push(0);
    let mut heap = Heap::default();
    put_u32(out, heap.value_string(class.name()));
    let count = class.properties.len();
    if count > 0 {
        let (offsets, table_len) = value_offsets(class);
        let mut nd = vec![0u8; nd_len(count)];
        let mut values = vec![0u8; table_len];
        for (i, p) in class.properties.iter().enumerate() {
            let slot = &mut values[offsets[i]..offsets[i] + p.cim_type.inline_size()];
            match instance.values.get(i).unwrap_or(&Slot::Null) {
                Slot::Value(v) if v.cim_type() == p.cim_type => {
                    slot.copy_from_slice(&inline_value(v, p.cim_type, &mut heap))
                }
                // NULL, or a value of another type than the property's
                // (which would be read as something else).
                Slot::Value(_) | Slot::Null => nd_set(&mut nd, i, 1),
                Slot::Default => nd_set(&mut nd, i, 2),
            }
        }
        out.extend_from_slice(&nd);
        out.extend_from_slice(&values);
    }
    qualifier_set(&instance.qualifiers, &mut heap, out);
    // InstancePropQualifierSet (2.2.65): no property qualifiers.
    out.push(1);
    heap.finish(out);
    let len = (out.len() - start) as u32;
    patch_u32(out, start, len);
}
