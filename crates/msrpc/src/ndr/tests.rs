use super::*;

/// [MS-RPCE] 4.7: UNICODE_STRING, whose pointer's referent is a
/// conformant varying array correlated with the structure's fields:
/// max count = MaximumLength/2, actual count = Length/2.
#[derive(Debug, PartialEq)]
struct UnicodeString {
    length: u16,
    maximum_length: u16,
    buffer: Unique<Vec<u16>>,
}

impl Ndr for UnicodeString {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.align(Self::align(e.syntax));
        e.u16(self.length);
        e.u16(self.maximum_length);
        e.pointer(self.buffer.get().is_some());
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        if let Some(units) = self.buffer.get() {
            e.count(usize::from(self.maximum_length / 2));
            e.count(0);
            e.count(usize::from(self.length / 2));
            for u in units.iter().take(usize::from(self.length / 2)) {
                e.u16(*u);
            }
        }
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        d.align(Self::align(d.syntax))?;
        let length = d.u16()?;
        let maximum_length = d.u16()?;
        let present = d.pointer()?;
        Ok(UnicodeString {
            length,
            maximum_length,
            buffer: Unique {
                value: None,
                pending: present,
            },
        })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        if !self.buffer.pending {
            return Ok(());
        }
        let max = d.count("pString's maximum count", 2)?;
        d.correlate(
            "size_is(MaximumLength/2)",
            u64::from(self.maximum_length / 2),
            max as u64,
        )?;
        d.zero_offset("pString")?;
        let actual = d.count("pString's actual count", 2)?;
        d.correlate(
            "length_is(Length/2)",
            u64::from(self.length / 2),
            actual as u64,
        )?;
        let mut units = Vec::with_capacity(actual);
        for _ in 0..actual {
            units.push(d.u16()?);
        }
        self.buffer = Unique::new(Some(units));
        Ok(())
    }
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

#[test]
fn unicode_string_as_section_4_7_lays_it_out() {
    let value = UnicodeString {
        length: 6,
        maximum_length: 12,
        buffer: Unique::new(Some(utf16("abc"))),
    };
    let bytes = to_bytes(&value, Syntax::Ndr20);
    let expected: Vec<u8> = [
        &[6, 0, 12, 0][..], // Length, MaximumLength
        &[0, 0, 2, 0],      // pointer identifier
        &[6, 0, 0, 0],      // maximum count = MaximumLength/2
        &[0, 0, 0, 0],      // offset
        &[3, 0, 0, 0],      // actual count = Length/2
        &[b'a', 0, b'b', 0, b'c', 0],
    ]
    .concat();
    assert_eq!(bytes, expected);
    let back: UnicodeString = from_bytes(&bytes, Syntax::Ndr20, true).unwrap();
    assert_eq!(back, value);

    // Correlation validation: counts that disagree with the fields.
    let mut wrong_max = expected.clone();
    wrong_max[8] = 7;
    assert!(matches!(
        from_bytes::<UnicodeString>(&wrong_max, Syntax::Ndr20, true),
        Err(NdrError::Correlation {
            what: "size_is(MaximumLength/2)",
            expected: 6,
            found: 7
        })
    ));
    let mut wrong_actual = expected.clone();
    wrong_actual[16] = 2;
    assert!(matches!(
        from_bytes::<UnicodeString>(&wrong_actual, Syntax::Ndr20, true),
        Err(NdrError::Correlation {
            what: "length_is(Length/2)",
            ..
        })
    ));
    let mut offset = expected.clone();
    offset[12] = 1;
    assert!(matches!(
        from_bytes::<UnicodeString>(&offset, Syntax::Ndr20, true),
        Err(NdrError::Offset { offset: 1, .. })
    ));

    // NDR64: pointer and counts are 8 bytes, 8-aligned.
    let wide = to_bytes(&value, Syntax::Ndr64);
    assert_eq!(wide.len(), 8 + 8 + 24 + 6);
    assert_eq!(
        from_bytes::<UnicodeString>(&wide, Syntax::Ndr64, true).unwrap(),
        value
    );
}

/// [MS-RPCE] 4.8: { long l; short s; } has a 2-byte trailing gap in NDR64.
#[derive(Debug, PartialEq)]
struct StructWithPad {
    l: i32,
    s: i16,
}

impl Ndr for StructWithPad {
    fn align(_: Syntax) -> usize {
        4
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.align(4);
        let start = e.buf.len();
        self.l.encode_scalars(e);
        self.s.encode_scalars(e);
        e.end_struct(4, start);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        d.align(4)?;
        let start = d.position();
        let l = i32::decode_scalars(d)?;
        let s = i16::decode_scalars(d)?;
        d.end_struct(4, start)?;
        Ok(StructWithPad { l, s })
    }
}

#[test]
fn the_ndr64_trailing_gap_of_section_4_8() {
    let v = StructWithPad { l: -2, s: 7 };
    assert_eq!(to_bytes(&v, Syntax::Ndr20).len(), 6);
    let wide = to_bytes(&v, Syntax::Ndr64);
    assert_eq!(wide, vec![0xFE, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0]);
    let array = ConformantArray(vec![
        StructWithPad { l: 1, s: 2 },
        StructWithPad { l: 3, s: 4 },
    ]);
    let wide = to_bytes(&array, Syntax::Ndr64);
    assert_eq!(wide.len(), 8 + 2 * 8, "each element padded to 8");
    assert_eq!(
        from_bytes::<ConformantArray<StructWithPad>>(&wide, Syntax::Ndr64, true).unwrap(),
        array
    );
}

#[test]
fn primitives_strings_pointers_and_arrays_round_trip_in_both_syntaxes() {
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let s = WString("café 日本".into());
        assert_eq!(
            from_bytes::<WString>(&to_bytes(&s, syntax), syntax, true).unwrap(),
            s
        );
        let c = CString(b"ncacn_ip_tcp".to_vec());
        assert_eq!(
            from_bytes::<CString>(&to_bytes(&c, syntax), syntax, true).unwrap(),
            c
        );
        let list = ConformantArray(vec![
            Unique::new(Some(WString("one".into()))),
            Unique::new(None),
            Unique::new(Some(WString("three".into()))),
        ]);
        let bytes = to_bytes(&list, syntax);
        assert_eq!(
            from_bytes::<ConformantArray<Unique<WString>>>(&bytes, syntax, true).unwrap(),
            list
        );
        let u = Uuid::parse("e1af8308-5d1f-11c9-91a4-08002b14a0fa").unwrap();
        assert_eq!(
            from_bytes::<Uuid>(&to_bytes(&u, syntax), syntax, true).unwrap(),
            u
        );
        for v in [0u64, 1, u64::MAX] {
            assert_eq!(
                from_bytes::<u64>(&to_bytes(&v, syntax), syntax, true).unwrap(),
                v
            );
        }
    }
    // Big-endian streams are read.
    let be = [0, 0, 0, 2, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];
    assert_eq!(
        from_bytes::<ConformantArray<u32>>(&be, Syntax::Ndr20, false).unwrap(),
        ConformantArray(vec![0x1234_5678, 0x9abc_def0])
    );
}

#[test]
fn malformed_streams_are_refused() {
    // A count far beyond the stream: refused before allocating.
    let huge = [0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3, 4];
    assert!(matches!(
        from_bytes::<ConformantArray<u32>>(&huge, Syntax::Ndr20, true),
        Err(NdrError::CountTooLarge {
            count: 0x7FFF_FFFF,
            ..
        })
    ));
    let huge64 = [0xFF; 16];
    assert!(matches!(
        from_bytes::<ConformantArray<u8>>(&huge64, Syntax::Ndr64, true),
        Err(NdrError::CountTooLarge { .. })
    ));
    // Strings: actual above max, no NUL, NUL inside, empty, bad UTF-16.
    let string = |max: u32, offset: u32, actual: u32, units: &[u16]| {
        let mut b = Vec::new();
        for n in [max, offset, actual] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        for u in units {
            b.extend_from_slice(&u.to_le_bytes());
        }
        b
    };
    assert!(matches!(
        from_bytes::<WString>(&string(1, 0, 2, &[65, 0]), Syntax::Ndr20, true),
        Err(NdrError::Correlation { .. })
    ));
    assert!(from_bytes::<WString>(&string(2, 0, 2, &[65, 66]), Syntax::Ndr20, true).is_err());
    assert!(from_bytes::<WString>(&string(0, 0, 0, &[]), Syntax::Ndr20, true).is_err());
    assert!(matches!(
        from_bytes::<WString>(&string(2, 1, 2, &[65, 0]), Syntax::Ndr20, true),
        Err(NdrError::Offset { .. })
    ));
    assert!(from_bytes::<WString>(&string(2, 0, 2, &[0xD800, 0]), Syntax::Ndr20, true).is_err());
    assert_eq!(
        from_bytes::<WString>(&string(3, 0, 2, &[65, 0]), Syntax::Ndr20, true).unwrap(),
        WString("A".into())
    );
    let cstring = |bytes: &[u8]| {
        let mut b = Vec::new();
        for _ in 0..2 {
            b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            if b.len() == 4 {
                b.extend_from_slice(&0u32.to_le_bytes());
            }
        }
        b.extend_from_slice(bytes);
        b
    };
    assert!(from_bytes::<CString>(&cstring(b"ab\0c\0"), Syntax::Ndr20, true).is_err());
    assert!(from_bytes::<CString>(&cstring(b"abc"), Syntax::Ndr20, true).is_err());
    assert_eq!(
        from_bytes::<CString>(&cstring(b"abc\0"), Syntax::Ndr20, true).unwrap(),
        CString(b"abc".to_vec())
    );
    // Truncated: a pointer whose referent is missing.
    assert!(matches!(
        from_bytes::<Unique<u32>>(&[0, 0, 2, 0], Syntax::Ndr20, true),
        Err(NdrError::Insufficient { .. })
    ));
    // Leftover bytes are not ignored.
    assert!(from_bytes::<u32>(&[0; 12], Syntax::Ndr20, true).is_err());
}

/// A linked list, to bound pointer chains.
#[derive(Debug, PartialEq)]
struct Node {
    value: u32,
    next: Unique<Node>,
}

impl Ndr for Node {
    fn align(syntax: Syntax) -> usize {
        syntax.wide()
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        self.value.encode_scalars(e);
        self.next.encode_scalars(e);
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        self.next.encode_buffers(e);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> Result<Self> {
        Ok(Node {
            value: u32::decode_scalars(d)?,
            next: Unique::decode_scalars(d)?,
        })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> Result<()> {
        self.next.decode_buffers(d)
    }
}

#[test]
fn pointer_chains_are_bounded() {
    let chain = |n: u32| {
        let mut node = Node {
            value: n,
            next: Unique::new(None),
        };
        for i in (0..n).rev() {
            node = Node {
                value: i,
                next: Unique::new(Some(node)),
            };
        }
        node
    };
    let short = chain(10);
    let bytes = to_bytes(&short, Syntax::Ndr20);
    assert_eq!(
        from_bytes::<Node>(&bytes, Syntax::Ndr20, true).unwrap(),
        short
    );
    let long = chain(MAX_DEPTH as u32 + 5);
    let bytes = to_bytes(&long, Syntax::Ndr20);
    assert_eq!(
        from_bytes::<Node>(&bytes, Syntax::Ndr20, true).unwrap_err(),
        NdrError::TooDeep(MAX_DEPTH)
    );
}

/// The same structure as [`StructWithPad`], described once and derived.
#[derive(crate::Ndr, Debug, PartialEq)]
struct DerivedPad {
    l: i32,
    s: i16,
}

#[derive(crate::Ndr, Debug, PartialEq)]
struct Entry {
    object: Uuid,
    annotation: Unique<WString>,
    version: u16,
    next: Unique<Entry>,
}

#[test]
fn derived_structures_marshal_as_hand_written_ones() {
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let hand = to_bytes(&StructWithPad { l: 5, s: -1 }, syntax);
        let derived = to_bytes(&DerivedPad { l: 5, s: -1 }, syntax);
        assert_eq!(hand, derived, "{syntax:?}");
        assert_eq!(
            from_bytes::<DerivedPad>(&derived, syntax, true).unwrap(),
            DerivedPad { l: 5, s: -1 }
        );
    }
    let entry = Entry {
        object: Uuid::parse("e1af8308-5d1f-11c9-91a4-08002b14a0fa").unwrap(),
        annotation: Unique::new(Some(WString("x".into()))),
        version: 3,
        next: Unique::new(Some(Entry {
            object: Uuid::NIL,
            annotation: Unique::new(None),
            version: 4,
            next: Unique::new(None),
        })),
    };
    let bytes = to_bytes(&entry, Syntax::Ndr20);
    // Scalars: the UUID, a referent id, the version, a referent id; then
    // the buffers in field order: the string, then the next entry.
    assert_eq!(&bytes[16..20], &[0, 0, 2, 0]);
    assert_eq!(&bytes[20..22], &[3, 0]);
    assert_eq!(&bytes[24..28], &[4, 0, 2, 0]);
    assert_eq!(&bytes[28..40], &[2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(&bytes[40..44], &[b'x', 0, 0, 0]);
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let bytes = to_bytes(&entry, syntax);
        assert_eq!(
            from_bytes::<Entry>(&bytes, syntax, true).unwrap(),
            entry,
            "{syntax:?}"
        );
    }
}

/// MGMT's rpc_if_id_t and rpc_if_id_vector_t (C706 appendix): a
/// conformant structure whose array of unique pointers is sized by its
/// count field.
#[derive(crate::Ndr, Debug, PartialEq, Clone)]
struct IfId {
    uuid: Uuid,
    vers_major: u16,
    vers_minor: u16,
}

#[derive(crate::Ndr, Debug, PartialEq)]
struct IfIdVector {
    count: u32,
    #[ndr(size_is = "count")]
    if_id: Vec<Unique<IfId>>,
}

#[test]
fn a_conformant_structure_leads_with_its_conformance() {
    let epm = IfId {
        uuid: Uuid::parse("e1af8308-5d1f-11c9-91a4-08002b14a0fa").unwrap(),
        vers_major: 3,
        vers_minor: 0,
    };
    let v = IfIdVector {
        count: 2,
        if_id: vec![Unique::new(Some(epm.clone())), Unique::new(Some(epm))],
    };
    let bytes = to_bytes(&v, Syntax::Ndr20);
    // max count, count, two referent ids, then the two referents.
    assert_eq!(&bytes[0..4], &[2, 0, 0, 0]);
    assert_eq!(&bytes[4..8], &[2, 0, 0, 0]);
    assert_eq!(&bytes[8..12], &[0, 0, 2, 0]);
    assert_eq!(&bytes[12..16], &[4, 0, 2, 0]);
    assert_eq!(bytes.len(), 16 + 2 * 20);
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let bytes = to_bytes(&v, syntax);
        assert_eq!(
            from_bytes::<IfIdVector>(&bytes, syntax, true).unwrap(),
            v,
            "{syntax:?}"
        );
    }
    // The count field must equal the conformance.
    let mut wrong = to_bytes(&v, Syntax::Ndr20);
    wrong[4] = 3;
    assert!(matches!(
        from_bytes::<IfIdVector>(&wrong, Syntax::Ndr20, true),
        Err(NdrError::Correlation {
            what: "size_is(count) of IfIdVector.if_id",
            expected: 3,
            found: 2
        })
    ));
    // A conformance the stream cannot hold.
    let mut huge = to_bytes(&v, Syntax::Ndr20);
    huge[0..4].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    assert!(matches!(
        from_bytes::<IfIdVector>(&huge, Syntax::Ndr20, true),
        Err(NdrError::CountTooLarge { .. })
    ));
}

#[test]
fn booleans_fixed_arrays_and_context_handles() {
    #[derive(crate::Ndr, Debug, PartialEq)]
    struct Mixed {
        flag: bool,
        annotation: [u8; 5],
        handle: ContextHandle,
        listening: u32,
    }
    let m = Mixed {
        flag: true,
        annotation: *b"abc\0\0",
        handle: ContextHandle {
            attributes: 0,
            uuid: Uuid::parse("01234567-89ab-cdef-0123-456789abcdef").unwrap(),
        },
        listening: 1,
    };
    let bytes = to_bytes(&m, Syntax::Ndr20);
    assert_eq!(&bytes[0..6], &[1, b'a', b'b', b'c', 0, 0]);
    assert_eq!(&bytes[6..8], &[0, 0], "the handle is 4-aligned");
    assert_eq!(bytes.len(), 8 + 20 + 4);
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        assert_eq!(
            from_bytes::<Mixed>(&to_bytes(&m, syntax), syntax, true).unwrap(),
            m
        );
    }
    assert!(ContextHandle::default().is_null());
    assert!(!m.handle.is_null());
    // Any non-zero octet is true.
    assert!(from_bytes::<bool>(&[7], Syntax::Ndr20, true).unwrap());
}

/// ept_entry_t's shape: a varying string of fixed size, and twr_t's
/// ranged, conformant tower.
#[derive(crate::Ndr, Debug, PartialEq)]
struct Tower {
    #[ndr(range(0, 2000))]
    tower_length: u32,
    #[ndr(size_is = "tower_length")]
    tower_octet_string: Vec<u8>,
}

#[derive(crate::Ndr, Debug, PartialEq)]
struct EptEntry {
    object: Uuid,
    tower: Unique<Tower>,
    annotation: VaryingCString<64>,
}

#[test]
fn ranges_and_varying_strings() {
    let entry = EptEntry {
        object: Uuid::NIL,
        tower: Unique::new(Some(Tower {
            tower_length: 3,
            tower_octet_string: vec![1, 2, 3],
        })),
        annotation: VaryingCString(b"Impl friendly name".to_vec()),
    };
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let bytes = to_bytes(&entry, syntax);
        assert_eq!(from_bytes::<EptEntry>(&bytes, syntax, true).unwrap(), entry);
    }
    let bytes = to_bytes(&entry, Syntax::Ndr20);
    // UUID, referent id, then the annotation inline: offset 0, actual 19.
    assert_eq!(&bytes[20..28], &[0, 0, 0, 0, 19, 0, 0, 0]);
    // A tower over its range is refused.
    let big = Tower {
        tower_length: 2001,
        tower_octet_string: vec![0; 2001],
    };
    assert!(matches!(
        from_bytes::<Tower>(&to_bytes(&big, Syntax::Ndr20), Syntax::Ndr20, true),
        Err(NdrError::Range {
            value: 2001,
            max: 2000,
            ..
        })
    ));
    // A varying string longer than its fixed size is refused.
    let mut long = Vec::new();
    long.extend_from_slice(&0u32.to_le_bytes());
    long.extend_from_slice(&65u32.to_le_bytes());
    long.extend_from_slice(&[b'a'; 64]);
    long.push(0);
    assert!(matches!(
        from_bytes::<VaryingCString<64>>(&long, Syntax::Ndr20, true),
        Err(NdrError::Correlation { .. })
    ));
    // Text longer than the bound is cut to fit when written.
    let cut = VaryingCString::<4>(b"abcdef".to_vec());
    assert_eq!(
        from_bytes::<VaryingCString<4>>(&to_bytes(&cut, Syntax::Ndr20), Syntax::Ndr20, true)
            .unwrap(),
        VaryingCString(b"abc".to_vec())
    );
}

#[test]
fn conformant_varying_arrays_sized_strings_and_parameter_lists() {
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let w = syntax.wide();
        let a = ConformantVaryingArray {
            max: 5,
            items: vec![7u16, 8],
        };
        let bytes = to_bytes(&a, syntax);
        // max, offset 0, actual, then the elements.
        assert_eq!(bytes.len(), 3 * w + 4);
        assert_eq!(bytes[0], 5);
        assert_eq!(bytes[2 * w], 2);
        assert_eq!(
            from_bytes::<ConformantVaryingArray<u16>>(&bytes, syntax, true).unwrap(),
            a
        );
        // actual beyond max is refused.
        let mut bad = bytes.clone();
        bad[0] = 1;
        assert!(matches!(
            from_bytes::<ConformantVaryingArray<u16>>(&bad, syntax, true),
            Err(NdrError::Correlation { .. })
        ));

        let s = SizedCString {
            max: 16,
            text: b"host".to_vec(),
        };
        let bytes = to_bytes(&s, syntax);
        assert_eq!(bytes[0], 16);
        assert_eq!(bytes[2 * w], 5);
        assert_eq!(&bytes[3 * w..], b"host\0");
        assert_eq!(from_bytes::<SizedCString>(&bytes, syntax, true).unwrap(), s);
        // Text longer than the buffer is cut to fit with its NUL.
        let cut = SizedCString {
            max: 3,
            text: b"host".to_vec(),
        };
        assert_eq!(&to_bytes(&cut, syntax)[3 * w..], b"ho\0");

        // Top-level parameters: each whole before the next, no structure
        // alignment or trailing gap between them.
        let params = (1u8, Unique::new(Some(2u32)), 3u16);
        let bytes = params_to_bytes(&params, syntax);
        let mut expected = vec![1u8];
        expected.resize(w, 0);
        expected.extend_from_slice(&0x0002_0000u64.to_le_bytes()[..w]);
        expected.extend_from_slice(&[2, 0, 0, 0, 3, 0]);
        assert_eq!(bytes, expected);
        let back: (u8, Unique<u32>, u16) = params_from_bytes(&bytes, syntax, true).unwrap();
        assert_eq!(back, params);
        assert!(params_from_bytes::<(u8, Unique<u32>, u16)>(
            &bytes[..bytes.len() - 1],
            syntax,
            true
        )
        .is_err());
    }
}

/// An enumeration: 16 bits in NDR 2.0, a long in NDR64.
#[derive(msrpc_derive::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
enum Color {
    Red,
    Green = 5,
    Blue,
}

/// `[v1_enum]`: 32 bits in both syntaxes.
#[derive(msrpc_derive::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
enum Wide {
    Small = 1,
    Large = 0x10000,
    Negative = -2,
}

#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq, Eq)]
struct Paint {
    coats: u8,
    color: Color,
}

#[test]
fn enumerations_are_16_bits_in_ndr20_and_32_in_ndr64() {
    assert_eq!(to_bytes(&Color::Blue, Syntax::Ndr20), [6, 0]);
    assert_eq!(to_bytes(&Color::Blue, Syntax::Ndr64), [6, 0, 0, 0]);
    assert_eq!(to_bytes(&Wide::Large, Syntax::Ndr20), [0, 0, 1, 0]);
    assert_eq!(
        to_bytes(&Wide::Negative, Syntax::Ndr64),
        [0xfe, 0xff, 0xff, 0xff]
    );
    let paint = Paint {
        coats: 3,
        color: Color::Green,
    };
    assert_eq!(to_bytes(&paint, Syntax::Ndr20), [3, 0, 5, 0]);
    assert_eq!(to_bytes(&paint, Syntax::Ndr64), [3, 0, 0, 0, 5, 0, 0, 0]);
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        for color in [Color::Red, Color::Green, Color::Blue] {
            assert_eq!(
                from_bytes::<Color>(&to_bytes(&color, syntax), syntax, true).unwrap(),
                color
            );
        }
        for wide in [Wide::Small, Wide::Large, Wide::Negative] {
            assert_eq!(
                from_bytes::<Wide>(&to_bytes(&wide, syntax), syntax, true).unwrap(),
                wide
            );
        }
    }
    assert_eq!(
        from_bytes::<Color>(&[0, 5], Syntax::Ndr20, false).unwrap(),
        Color::Green,
        "big-endian"
    );
    // A value the enumeration lacks: RPC_X_ENUM_VALUE_OUT_OF_RANGE.
    let err = from_bytes::<Color>(&[7, 0], Syntax::Ndr20, true).unwrap_err();
    assert!(matches!(err, NdrError::EnumValue { value: 7, .. }), "{err}");
    assert_eq!(crate::server::Fault::stub(err).status, NdrError::ENUM_FAULT);
}

/// A non-encapsulated union with a pointer arm, an 8-byte arm, an empty
/// arm and a default.
#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq, Eq)]
#[ndr(switch_type = "u32")]
enum Info {
    #[ndr(case = 1)]
    Short(u16),
    #[ndr(case = 2)]
    Name(Unique<WString>),
    #[ndr(case = 3)]
    Hyper(u64),
    #[ndr(case = 4)]
    Empty,
    #[ndr(default)]
    Other(u32),
}

/// A union with no default, encapsulated.
#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq, Eq)]
#[ndr(switch_type = "u16", encapsulated)]
enum Tagged {
    #[ndr(case = 7)]
    Long(u32),
}

/// `DWORD Level; [switch_is(Level)] INFO Info;`
#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq, Eq)]
struct LevelAndInfo {
    level: u32,
    #[ndr(switch_is = "level")]
    info: Info,
}

#[test]
fn unions_carry_their_discriminant_and_align_as_each_syntax_says() {
    // NDR 2.0: the discriminant, then the arm aligned to its own type.
    assert_eq!(
        to_bytes(&Info::Short(0x1234), Syntax::Ndr20),
        [1, 0, 0, 0, 0x34, 0x12]
    );
    // NDR64: the union aligned to 8 (its largest arm), the arm too.
    assert_eq!(
        to_bytes(&Info::Short(0x1234), Syntax::Ndr64),
        [1, 0, 0, 0, 0, 0, 0, 0, 0x34, 0x12]
    );
    assert_eq!(
        to_bytes(&Info::Hyper(9), Syntax::Ndr20),
        [3, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(to_bytes(&Info::Empty, Syntax::Ndr20), [4, 0, 0, 0]);
    assert_eq!(to_bytes(&Info::Other(99), Syntax::Ndr20), [99, 0, 0, 0]);
    // The pointer arm's referent follows with the buffers.
    let named = Info::Name(Unique::new(Some(WString("ab".into()))));
    let bytes = to_bytes(&named, Syntax::Ndr20);
    assert_eq!(&bytes[..8], [2, 0, 0, 0, 0, 0, 2, 0]);
    assert_eq!(bytes.len(), 8 + 12 + 6);
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        for info in [
            Info::Short(7),
            named.clone(),
            Info::Name(Unique::new(None)),
            Info::Hyper(u64::MAX),
            Info::Empty,
            Info::Other(1000),
        ] {
            let value = LevelAndInfo {
                level: info.switch_value() as u32,
                info,
            };
            assert_eq!(
                from_bytes::<LevelAndInfo>(&to_bytes(&value, syntax), syntax, true).unwrap(),
                value,
                "{syntax:?}"
            );
        }
        let tagged = Tagged::Long(5);
        assert_eq!(
            from_bytes::<Tagged>(&to_bytes(&tagged, syntax), syntax, true).unwrap(),
            tagged
        );
    }
    // Encapsulated in NDR 2.0: aligned as a whole to 4 (its arm).
    let mut e = Encoder::new(Syntax::Ndr20);
    e.u8(1);
    Tagged::Long(5).encode_scalars(&mut e);
    assert_eq!(e.buf, [1, 0, 0, 0, 7, 0, 0, 0, 5, 0, 0, 0]);
    // No arm for the discriminant: RPC_S_INVALID_TAG.
    let err = from_bytes::<Tagged>(&[8, 0, 0, 0, 5, 0, 0, 0], Syntax::Ndr20, true).unwrap_err();
    assert!(
        matches!(err, NdrError::InvalidTag { value: 8, .. }),
        "{err}"
    );
    assert_eq!(crate::server::Fault::stub(err).status, NdrError::TAG_FAULT);
    // switch_is: the level and the union's discriminant must agree.
    let mismatched = [2, 0, 0, 0, 1, 0, 0, 0, 7, 0];
    let err = from_bytes::<LevelAndInfo>(&mismatched, Syntax::Ndr20, true).unwrap_err();
    assert!(matches!(err, NdrError::Correlation { .. }), "{err}");
}

/// A full pointer may alias another in the same stream.
#[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq)]
struct TwoOwners {
    first: Full<u32>,
    second: Full<u32>,
    third: Full<u32>,
}

#[test]
fn full_pointers_share_referents() {
    let shared = Arc::new(0xabcd_u32);
    let value = TwoOwners {
        first: Full::new(Some(shared.clone())),
        second: Full::new(Some(shared)),
        third: Full::new(None),
    };
    let bytes = to_bytes(&value, Syntax::Ndr20);
    // Two equal referent identifiers, a NULL, and the referent once.
    assert_eq!(
        bytes,
        [0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xcd, 0xab, 0, 0]
    );
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let decoded: TwoOwners = from_bytes(&to_bytes(&value, syntax), syntax, true).unwrap();
        assert_eq!(decoded, value);
        let (a, b) = (decoded.first.value.unwrap(), decoded.second.value.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "the aliases share one referent");
        assert!(decoded.third.value.is_none());
    }
    // Distinct referents with equal values stay distinct.
    let apart = TwoOwners {
        first: Full::new(Some(Arc::new(1))),
        second: Full::new(Some(Arc::new(1))),
        third: Full::new(None),
    };
    assert_eq!(to_bytes(&apart, Syntax::Ndr20).len(), 12 + 8);
    // An alias whose referent is of another type is refused.
    #[derive(msrpc_derive::Ndr, Clone, Debug, PartialEq)]
    struct Mixed {
        small: Full<u16>,
        large: Full<u32>,
    }
    let forged = [0, 0, 2, 0, 0, 0, 2, 0, 5, 0, 0, 0];
    assert!(from_bytes::<Mixed>(&forged, Syntax::Ndr20, true).is_err());
}

#[test]
fn type_serialization_v1_and_v2() {
    use serialization::{Deserializer, Serializer, Version};
    // Version 1: common header, private header, the structure padded to 8.
    let paint = Paint {
        coats: 2,
        color: Color::Blue,
    };
    let mut s = Serializer::v1();
    s.push(&paint).push(&0x1122_3344u32);
    let bytes = s.finish();
    assert_eq!(
        bytes,
        [
            1, 0x10, 8, 0, 0xcc, 0xcc, 0xcc, 0xcc, // common header
            8, 0, 0, 0, 0, 0, 0, 0, // private header: 8 bytes follow
            2, 0, 6, 0, 0, 0, 0, 0, // Paint, padded
            0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0, // a primitive: no private header
        ]
    );
    let mut d = Deserializer::new(&bytes).unwrap();
    assert_eq!(d.version(), Version::V1);
    assert_eq!(d.read::<Paint>().unwrap(), paint);
    assert_eq!(d.read::<u32>().unwrap(), 0x1122_3344);
    assert!(d.is_empty());
    // A big-endian version 1 stream is read.
    let be = [
        1, 0x00, 8, 0, 0xcc, 0xcc, 0xcc, 0xcc, 0, 0, 0, 8, 0, 0, 0, 0, 2, 0, 0, 6, 0, 0, 0, 0,
    ];
    assert_eq!(
        Deserializer::new(&be).unwrap().read::<Paint>().unwrap(),
        paint
    );
    // Version 2, in each syntax: 0x40-byte header, 16-byte private
    // headers, values padded to 16.
    let interface = crate::pdu::SyntaxId::new(
        Uuid::parse("12345678-1234-abcd-ef00-0123456789ab").unwrap(),
        1,
        0,
    );
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        let info = Info::Name(Unique::new(Some(WString("pickle".into()))));
        let mut s = Serializer::v2(syntax, interface);
        s.push(&info).push(&7u16);
        let bytes = s.finish();
        assert_eq!(&bytes[..4], [2, 0x10, 0x40, 0]);
        assert_eq!(bytes.len() % 16, 0);
        let length = u32::from_le_bytes([bytes[0x40], bytes[0x41], bytes[0x42], bytes[0x43]]);
        assert_eq!(length % 16, 0);
        let mut d = Deserializer::new(&bytes).unwrap();
        assert_eq!((d.version(), d.syntax()), (Version::V2, syntax));
        assert_eq!(d.read::<Info>().unwrap(), info);
        assert_eq!(d.read::<u16>().unwrap(), 7);
        assert!(d.is_empty());
    }
    // Malformed streams.
    for bad in [
        &[][..],
        &[3, 0x10, 8, 0, 0, 0, 0, 0][..],
        &[1, 0x10, 9, 0, 0, 0, 0, 0][..],
        &[2, 0x00, 0x40, 0][..],
        &[
            1, 0x10, 8, 0, 0xcc, 0xcc, 0xcc, 0xcc, 0xff, 0, 0, 0, 0, 0, 0, 0, 1,
        ][..],
    ] {
        let result = Deserializer::new(bad).and_then(|mut d| d.read::<Paint>());
        assert!(result.is_err(), "{bad:?}");
    }
}

#[test]
fn first_is_and_multidimensional_arrays() {
    // Of 10 elements, 3 from the fourth on.
    let window = OffsetVaryingArray {
        max: 10,
        offset: 3,
        items: vec![7u16, 8, 9],
    };
    assert_eq!(
        to_bytes(&window, Syntax::Ndr20),
        [10, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 7, 0, 8, 0, 9, 0]
    );
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        assert_eq!(
            from_bytes::<OffsetVaryingArray<u16>>(&to_bytes(&window, syntax), syntax, true)
                .unwrap(),
            window
        );
    }
    // Offset + actual count beyond the maximum count.
    let outside = [4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0];
    assert!(matches!(
        from_bytes::<OffsetVaryingArray<u16>>(&outside, Syntax::Ndr20, true),
        Err(NdrError::Correlation { .. })
    ));
    // Without first_is, an offset is still refused.
    let offset = [4, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0];
    assert!(matches!(
        from_bytes::<ConformantVaryingArray<u16>>(&offset, Syntax::Ndr20, true),
        Err(NdrError::Offset { .. })
    ));

    // [size_is(2, 3)]: both counts first, then six elements row by row.
    let matrix = ConformantMatrix {
        dims: [2, 3],
        items: vec![1u8, 2, 3, 4, 5, 6],
    };
    assert_eq!(
        to_bytes(&matrix, Syntax::Ndr20),
        [2, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    );
    for syntax in [Syntax::Ndr20, Syntax::Ndr64] {
        assert_eq!(
            from_bytes::<ConformantMatrix<u8, 2>>(&to_bytes(&matrix, syntax), syntax, true)
                .unwrap(),
            matrix
        );
    }
    // Counts whose product overflows or exceeds the stream: refused
    // before allocating.
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2];
    assert!(matches!(
        from_bytes::<ConformantMatrix<u8, 2>>(&huge, Syntax::Ndr20, true),
        Err(NdrError::CountTooLarge { .. })
    ));
    // A fixed multidimensional array (T m[2][3]) is arrays of arrays.
    let fixed: [[u16; 3]; 2] = [[1, 2, 3], [4, 5, 6]];
    assert_eq!(
        to_bytes(&fixed, Syntax::Ndr20),
        [1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0]
    );
    assert_eq!(
        from_bytes::<[[u16; 3]; 2]>(&to_bytes(&fixed, Syntax::Ndr64), Syntax::Ndr64, true).unwrap(),
        fixed
    );
}
