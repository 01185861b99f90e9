//! The property the `pdu` fuzz target checks, shared with the test suite
//! that replays its corpus.

use crate::pdu::Pdu;

/// Any bytes decode or are refused; what decodes encodes to bytes that
/// decode to the same PDU (the padding before a sec_trailer and the
/// bind_nak's tail may be normalised, so the second encoding is compared
/// with the first).
pub fn pdu(data: &[u8]) {
    let Ok(pdu) = Pdu::decode(data) else {
        return;
    };
    // What was decoded from a fragment fits in one, unless re-padding
    // the sec_trailer (at most 15 bytes) pushes it past 65535.
    let bytes = match pdu.encode() {
        Ok(b) => b,
        Err(e) => {
            assert!(
                data.len() > usize::from(u16::MAX) - 16,
                "a decoded PDU does not encode: {e}"
            );
            return;
        }
    };
    let again = Pdu::decode(&bytes).unwrap_or_else(|e| panic!("re-encoded PDU fails: {e}"));
    assert_eq!(again.encode(), Ok(bytes), "encoding is not stable");
}

/// NDR: the first byte picks the syntax and byte order, the rest is
/// decoded as strings, pointers and arrays; nothing panics or allocates
/// beyond the input, and what decodes re-encodes to a stream that decodes
/// to the same value.
pub fn ndr(data: &[u8]) {
    use crate::ndr::{
        from_bytes, to_bytes, CString, ConformantArray, Ndr, Syntax, Unique, WString,
    };
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let syntax = if selector & 1 == 0 {
        Syntax::Ndr20
    } else {
        Syntax::Ndr64
    };
    let little = selector & 2 == 0;
    fn check<T: Ndr + PartialEq + std::fmt::Debug>(rest: &[u8], syntax: Syntax, little: bool) {
        if let Ok(v) = from_bytes::<T>(rest, syntax, little) {
            let again = from_bytes::<T>(&to_bytes(&v, syntax), syntax, true)
                .unwrap_or_else(|e| panic!("re-encoded {v:?} fails: {e}"));
            assert_eq!(again, v);
        }
    }
    check::<WString>(rest, syntax, little);
    check::<CString>(rest, syntax, little);
    check::<ConformantArray<u16>>(rest, syntax, little);
    check::<ConformantArray<Unique<WString>>>(rest, syntax, little);
    check::<Unique<ConformantArray<Unique<u32>>>>(rest, syntax, little);
}
