//! The properties the fuzz targets check, shared with the test suite that
//! replays the fuzz corpus. Each panics on a violation.

use crate::mbxml::{parse_metabase, write_metabase, WriteScope};
use crate::schema::{parse_schema, write_schema, Schema};

/// MetaBase.xml: any input parses or is refused with an error; whatever
/// parses writes back out, and that parses again to the same text.
pub fn metabase_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = Schema::standard();
    let Ok(doc) = parse_metabase(text, "fuzz", &schema, None) else {
        return;
    };
    let scope = WriteScope {
        include_volatile: true,
        ..WriteScope::default()
    };
    // Secure data read as plain text cannot be written without a key.
    let Ok(written) = write_metabase(&doc, &schema, None, scope) else {
        return;
    };
    let again = parse_metabase(&written, "rewritten", &schema, None)
        .unwrap_or_else(|e| panic!("a written file does not parse: {e}\n{written}"));
    let rewritten = write_metabase(&again, &schema, None, scope).expect("second write");
    assert_eq!(written, rewritten, "the round trip is not stable");
}

/// MBSchema.xml: any input parses or is refused; a parsed schema writes
/// out and parses back to the same text.
pub fn mbschema_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schema) = parse_schema(text, "fuzz") else {
        return;
    };
    let written = write_schema(&schema);
    let again = parse_schema(&written, "rewritten").expect("a written schema does not parse");
    assert_eq!(write_schema(&again), written);
}

/// IPSecurity: the text form parses or is refused; what parses survives
/// the stored form and its own text unchanged; any stored blob is read or
/// refused without panicking.
pub fn ipsecurity(data: &[u8]) {
    use crate::ipsec::IpSecurity;
    let _ = IpSecurity::from_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(list) = IpSecurity::parse_text(text) else {
        return;
    };
    assert_eq!(
        IpSecurity::from_bytes(&list.to_bytes()).as_ref(),
        Some(&list),
        "the stored form does not read back: {text:?}"
    );
    assert_eq!(
        IpSecurity::parse_text(&list.to_text()).as_ref(),
        Ok(&list),
        "the text form does not read back: {text:?}"
    );
}
