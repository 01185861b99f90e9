//! What the fuzz target and the corpus replay call.

/// The first byte chooses, by its remainder by 3: 0, an EncodingUnit
/// ([`decode_unit`]); 1, two ObjectArrays in a row through one decoder (the
/// second may name classes the first sent); 2, an IWbemContext buffer.
/// Never a panic.
pub fn objects(data: &[u8]) {
    let [kind, rest @ ..] = data else {
        return;
    };
    match kind % 3 {
        0 => return decode_unit(rest),
        2 => return context(rest),
        _ => {}
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

/// An IWbemContext buffer: what decodes (values of types it does not read
/// aside) encodes and decodes again to the same.
fn context(data: &[u8]) {
    use crate::context::{decode_context, encode_context, ContextValue};
    if let Ok(mut context) = decode_context(data) {
        context
            .properties
            .retain(|(_, v)| !matches!(v, ContextValue::Other(_)));
        let back = decode_context(&encode_context(&context)).expect("what was encoded decodes");
        assert_eq!(format!("{back:?}"), format!("{context:?}"));
    }
}
