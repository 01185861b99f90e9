//! Decoding a caller's Kerberos message safely.
//!
//! `picky-asn1-der` trusts the lengths it reads: a CHOICE whose length is
//! near `usize::MAX` overflows its arithmetic (a panic where overflow
//! checks are on, a wrong length where they are not). Every DER message
//! that comes from the network, or out of a decryption, is first walked
//! here: each element's length must fit inside its parent, lengths are
//! definite and at most eight octets, and nesting is bounded. Only a
//! message that passes reaches `picky`.

use serde::Deserialize;

use crate::security::SecurityError;

/// Deeper than any Kerberos message nests (a ticket inside an AP-REQ is
/// about ten levels).
const MAX_DEPTH: usize = 32;

/// Decodes one DER message of type `T`; a malformed one is the token
/// error `what` ("a malformed AP-REQ"). Octets after the first element
/// are allowed (a decrypted part may carry padding), as `picky` allows.
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, SecurityError> {
    let first = element_len(bytes, 0).ok_or(SecurityError::Token(what))?;
    picky_asn1_der::from_bytes(&bytes[..first]).map_err(|_| SecurityError::Token(what))
}

/// The total length (identifier, length octets and contents) of the DER
/// element at the start of `bytes`, checked all the way down through its
/// constructed contents; `None` when any length does not fit.
fn element_len(bytes: &[u8], depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let identifier = *bytes.first()?;
    let mut at = 1;
    if identifier & 0x1f == 0x1f {
        // A high tag number (X.690 8.1.2.4) in at most four octets, the
        // last without bit 8: far beyond any tag Kerberos uses.
        let octets = bytes.get(1..)?.iter().take(4).position(|o| o & 0x80 == 0)? + 1;
        at += octets;
    }
    let first_length = *bytes.get(at)?;
    at += 1;
    let contents_len = match first_length {
        0x80 => return None, // indefinite: not DER
        short @ 0..=0x7f => usize::from(short),
        long => {
            let octets = usize::from(long & 0x7f);
            if octets > 8 {
                return None;
            }
            let digits = bytes.get(at..at + octets)?;
            at += octets;
            let value = digits.iter().fold(0u64, |n, &d| (n << 8) | u64::from(d));
            usize::try_from(value).ok()?
        }
    };
    let end = at.checked_add(contents_len)?;
    let contents = bytes.get(at..end)?;
    if identifier & 0x20 != 0 {
        let mut rest = contents;
        while !rest.is_empty() {
            let inner = element_len(rest, depth + 1)?;
            rest = &rest[inner..];
        }
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use picky_asn1::wrapper::IntegerAsn1;
    use picky_krb::messages::ApReq;

    #[test]
    fn well_formed_elements_measure_their_whole_length() {
        // SEQUENCE { INTEGER 5, OCTET STRING "ab" } and two octets after it.
        let seq = [0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, b'a', b'b', 0, 0];
        assert_eq!(element_len(&seq, 0), Some(9));
        // A long-form length (0x81 0x80: 128 octets of contents).
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 128]);
        assert_eq!(element_len(&long, 0), Some(131));
        // A high tag number ([APPLICATION 31] constructed, empty).
        assert_eq!(element_len(&[0x7f, 0x1f, 0x00], 0), Some(3));
        let n: IntegerAsn1 = decode(&[0x02, 0x01, 0x05, 0xff], "an integer").unwrap();
        assert_eq!(n.as_unsigned_bytes_be(), [5]);
    }

    #[test]
    fn lengths_that_do_not_fit_are_refused() {
        // The fuzzer's find: a constructed element claiming usize::MAX octets.
        let mut huge = vec![0x32, 0x88];
        huge.extend([0xff; 83]);
        assert_eq!(element_len(&huge, 0), None);
        assert!(matches!(
            decode::<ApReq>(&huge, "a malformed AP-REQ"),
            Err(SecurityError::Token("a malformed AP-REQ"))
        ));
        // Longer than what follows, at the top and inside a SEQUENCE.
        assert_eq!(element_len(&[0x04, 0x03, 1, 2], 0), None);
        assert_eq!(element_len(&[0x30, 0x04, 0x04, 0x05, 1, 2], 0), None);
        // Indefinite length, and a length of nine octets.
        assert_eq!(element_len(&[0x30, 0x80, 0, 0], 0), None);
        assert_eq!(
            element_len(&[0x04, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 0),
            None
        );
        // A length octet missing, and a high tag number in five octets.
        assert_eq!(element_len(&[0x04], 0), None);
        assert_eq!(
            element_len(&[0x1f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00], 0),
            None
        );
        assert_eq!(
            element_len(&[0x1f, 0x81, 0x81, 0x81, 0x01, 0x00], 0),
            Some(6)
        );
        assert_eq!(element_len(&[], 0), None);
    }

    #[test]
    fn nesting_is_bounded() {
        // 40 SEQUENCEs each holding the next: deeper than any Kerberos message.
        let mut nested = vec![0x30, 0x00];
        for _ in 0..40 {
            let mut outer = vec![0x30, nested.len() as u8];
            outer.extend(&nested);
            nested = outer;
        }
        assert!(nested.len() < 128);
        assert_eq!(element_len(&nested, 0), None);
        assert_eq!(element_len(&nested[2 * 10..], 0), Some(nested.len() - 20));
    }
}
