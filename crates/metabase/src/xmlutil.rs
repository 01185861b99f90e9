//! Small helpers shared by the MetaBase.xml and MBSchema.xml codecs:
//! error positions, attribute access and escaping.

use quick_xml::events::BytesStart;

use crate::error::Error;

/// A parse error at a byte offset of `text`, reported as file:line:column.
pub(crate) fn error_at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Error {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Error::Parse {
        file: file.to_string(),
        line,
        column,
        message: message.into(),
    }
}

/// The element's name without namespace prefix.
pub(crate) fn local_name(e: &BytesStart<'_>) -> String {
    e.local_name().as_ref().to_string()
}

/// Whether `name` is an XML name (XML 1.0 production 5, with every
/// non-ASCII character allowed): what the writer can put back as it was
/// read. The parser is lenient about names, and an unknown attribute or
/// class is kept and written back verbatim, so a name holding `"`, `<` or
/// `/` would write a file that no longer parses.
pub(crate) fn is_xml_name(name: &str) -> bool {
    let name_char = |c: char| !c.is_ascii() || c.is_ascii_alphanumeric() || "_:.-".contains(c);
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if name_char(first) && !first.is_ascii_digit() && !".-".contains(first) => {
            chars.all(name_char)
        }
        _ => false,
    }
}

/// The element's attributes as (name, raw value) pairs, in document order.
/// Values are not unescaped: callers that split MULTISZ lines must see the
/// literal newlines before character references are expanded.
pub(crate) fn raw_attributes(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("malformed attribute: {err}"))?;
        let name = attr.key.as_ref().to_string();
        if !is_xml_name(&name) {
            return Err(format!("`{name}` is not an attribute name"));
        }
        out.push((name, attr.value.to_string()));
    }
    Ok(out)
}

/// Expands the five predefined entities and character references.
pub(crate) fn unescape(raw: &str) -> Result<String, String> {
    quick_xml::escape::unescape(raw)
        .map(|s| s.into_owned())
        .map_err(|e| format!("bad character or entity reference: {e}"))
}

/// Unescaped attributes, for elements where no value is split by lines.
pub(crate) fn attributes(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    raw_attributes(e)?
        .into_iter()
        .map(|(k, v)| Ok((k, unescape(&v)?)))
        .collect()
}

pub(crate) fn find<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Escapes text for a double-quoted attribute. Tabs and line breaks are
/// written as character references so that literal newlines only ever
/// separate MULTISZ entries.
pub(crate) fn escape_attr(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// Characters XML 1.0 cannot carry at all, not even as references.
pub(crate) fn check_xml_chars(text: &str) -> Result<(), String> {
    match text.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    }) {
        Some(c) => Err(format!(
            "character U+{:04X} cannot be stored in an XML file",
            c as u32
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_names() {
        for good in [
            "Location",
            "x:IIsWebServer",
            "_a.b-c1",
            "Größe",
            "AppPoolId",
        ] {
            assert!(is_xml_name(good), "{good}");
        }
        for bad in [
            "", "1st", "-a", ".a", "a\"b", "a<b", "/x", "a=b", "a b", "a&b", "a'b",
        ] {
            assert!(!is_xml_name(bad), "{bad}");
        }
    }

    #[test]
    fn positions() {
        let text = "ab\ncd\nxyz";
        match error_at("f", text, 7, "bad") {
            Error::Parse { line, column, .. } => assert_eq!((line, column), (3, 2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_attr("a&b<\"\n\t", &mut s);
        assert_eq!(s, "a&amp;b&lt;&quot;&#xA;&#x9;");
        assert_eq!(unescape(&s).unwrap(), "a&b<\"\n\t");
        assert!(check_xml_chars("ok\n").is_ok());
        assert!(check_xml_chars("bad\u{1}").is_err());
    }
}
