//! What the fuzz target and the corpus replay call.

/// The first byte chooses: even, an EncodingUnit ([`decode_unit`]); odd,
/// two ObjectArrays in a row through one decoder (the second may name
/// classes the first sent). Never a panic.
pub fn objects(data: &[u8]) {
    let [kind, rest @ ..] = data else {
        return;
    };
    if kind & 1 == 0 {
        decode_unit(rest);
        return;
    }
    let split = rest
        .windows(8)
        .skip(1)
        .position(|w| w == b"WBEMDATA")
        .and_then(|i| (i + 1).checked_sub(4))
        .unwrap_or(rest.len());
    let mut decoder = crate::ObjectArrayDecoder::default();
    if let Ok(objects) = decoder.decode(&rest[..split.min(rest.len())]) {
        // What decoded encodes, and decodes again to the same.
        let again = crate::ObjectArrayEncoder::new([0; 16]).encode(&objects, 1);
        let back = crate::ObjectArrayDecoder::default()
            .decode(&again)
            .expect("what was encoded decodes");
        assert_eq!(format!("{back:?}"), format!("{objects:?}"));
    }
    let _ = decoder.decode(rest.get(split..).unwrap_or_default());
}

/// Decodes arbitrary bytes as an EncodingUnit; whatever decodes must
/// encode and decode again to the same object.
pub fn decode_unit(data: &[u8]) {
    if let Ok(object) = crate::decode_unit(data) {
        let again = crate::encode_unit(&object);
        let back = crate::decode_unit(&again).expect("what was encoded decodes");
        assert_eq!(format!("{back:?}"), format!("{object:?}"));
    }
}
