//! What the fuzz target and the corpus replay call.

/// Decodes arbitrary bytes as an EncodingUnit; whatever decodes must
/// encode and decode again to the same object.
pub fn decode_unit(data: &[u8]) {
    if let Ok(object) = crate::decode_unit(data) {
        let again = crate::encode_unit(&object);
        let back = crate::decode_unit(&again).expect("what was encoded decodes");
        assert_eq!(format!("{back:?}"), format!("{object:?}"));
    }
}
