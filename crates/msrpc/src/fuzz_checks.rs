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
    let bytes = pdu.encode();
    // Lengths that do not fit the 16-bit fields cannot be re-encoded.
    if bytes.len() > usize::from(u16::MAX) {
        return;
    }
    let again = Pdu::decode(&bytes).unwrap_or_else(|e| panic!("re-encoded PDU fails: {e}"));
    assert_eq!(again.encode(), bytes, "encoding is not stable");
}
