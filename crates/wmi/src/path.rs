//! WMI object paths: `IIsWebServerSetting.Name="W3SVC/1"`, the shorthand
//! `IIsWebServerSetting="W3SVC/1"` for a class with one key, a bare class
//! name for the class itself, optionally after a namespace
//! (`\\.\root\MicrosoftIISv2:` or `root/MicrosoftIISv2:`).

use crate::error::{Result, WbemStatus, WmiError};

/// A parsed object path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectPath {
    pub class: String,
    /// The key's value; `None` for a class path.
    pub key: Option<(Option<String>, String)>,
    /// Further keys of a class with several (`IIsBackup.Location="a",Version=1`).
    pub more_keys: Vec<(String, String)>,
}

/// The namespace the provider serves.
pub const NAMESPACE: &str = "root/MicrosoftIISv2";

impl ObjectPath {
    pub fn parse(text: &str) -> Result<ObjectPath> {
        let bad = |pos: usize, why: &str| {
            WmiError::at(
                WbemStatus::InvalidObjectPath,
                pos,
                format!("'{text}' is not an object path: {why}"),
            )
        };
        let trimmed = text.trim();
        // A namespace prefix ends at the first ':' outside quotes.
        let mut start = 0;
        if let Some(colon) = trimmed.find(':') {
            let before = &trimmed[..colon];
            if !before.contains(['"', '\'', '=']) {
                let ns = before
                    .trim_start_matches("\\\\.\\")
                    .trim_start_matches("//./")
                    .replace('\\', "/");
                if !ns.eq_ignore_ascii_case(NAMESPACE) {
                    return Err(WmiError::at(
                        WbemStatus::InvalidObjectPath,
                        1,
                        format!("namespace '{before}' is not {NAMESPACE}"),
                    ));
                }
                start = colon + 1;
            }
        }
        let body = &trimmed[start..];
        let class_end = body.find(['.', '=']).unwrap_or(body.len());
        let class = body[..class_end].trim();
        if class.is_empty() || !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(start + 1, "a class name comes first"));
        }
        if class_end == body.len() {
            return Ok(ObjectPath {
                class: class.to_string(),
                key: None,
                more_keys: Vec::new(),
            });
        }
        let mut rest = &body[class_end..];
        let mut key_name = None;
        if let Some(r) = rest.strip_prefix('.') {
            let eq = r
                .find('=')
                .ok_or_else(|| bad(start + class_end + 1, "a key is NAME=\"value\""))?;
            let name = r[..eq].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(start + class_end + 2, "a key name is a property name"));
            }
            key_name = Some(name.to_string());
            rest = &r[eq..];
        }
        let mut keys: Vec<(Option<String>, String)> = Vec::new();
        loop {
            let value_text = rest[1..].trim_start();
            let value_pos = start + body.len() - value_text.len() + 1;
            let (value, after) = parse_value(value_text).ok_or_else(|| {
                bad(
                    value_pos,
                    "a key's value is a quoted string (\"…\" or '…') or a number",
                )
            })?;
            keys.push((key_name.take(), value));
            let after = after.trim_start();
            if after.is_empty() {
                break;
            }
            let Some(next) = after.strip_prefix(',') else {
                return Err(bad(
                    start + body.len() - after.len() + 1,
                    "keys are separated by ',' and end the path",
                ));
            };
            let eq = next
                .find('=')
                .ok_or_else(|| bad(start + body.len() - next.len() + 1, "a key is NAME=value"))?;
            let name = next[..eq].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(
                    start + body.len() - next.len() + 1,
                    "a key name is a property name",
                ));
            }
            key_name = Some(name.to_string());
            rest = &next[eq..];
        }
        if keys.len() > 1 && keys.iter().any(|(n, _)| n.is_none()) {
            return Err(bad(start + 1, "with several keys, each is NAME=value"));
        }
        let mut keys = keys.into_iter();
        let first = keys.next();
        Ok(ObjectPath {
            class: class.to_string(),
            key: first,
            more_keys: keys.map(|(n, v)| (n.unwrap_or_default(), v)).collect(),
        })
    }

    /// The value of key `name` (the first key also answers to no name).
    pub fn key_value(&self, name: &str) -> Option<&str> {
        if let Some((n, v)) = &self.key {
            if n.as_deref().is_none_or(|n| n.eq_ignore_ascii_case(name)) {
                return Some(v);
            }
        }
        self.more_keys
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The canonical relative path: `Class.Key="value"`.
    pub fn format(class: &str, key: &str, value: &str) -> String {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("{class}.{key}=\"{escaped}\"")
    }
}

/// A key's value at the start of `text` — a quoted string or a number —
/// and what follows it.
fn parse_value(text: &str) -> Option<(String, &str)> {
    if text.starts_with(['"', '\'']) {
        let end = quoted_len(text)?;
        return Some((parse_quoted(&text[..end])?, &text[end..]));
    }
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(text.len());
    let number = &text[..end];
    number.parse::<i64>().ok()?;
    Some((number.to_string(), &text[end..]))
}

/// The length in bytes of the quoted string `text` starts with.
fn quoted_len(text: &str) -> Option<usize> {
    let quote = text.chars().next()?;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            return Some(i + c.len_utf8());
        }
    }
    None
}

/// A whole quoted string, with backslash escapes inside double quotes.
fn parse_quoted(text: &str) -> Option<String> {
    let mut chars = text.chars();
    let quote = chars.next().filter(|q| *q == '"' || *q == '\'')?;
    let mut out = String::new();
    let mut escaped = false;
    let mut closed = false;
    for c in chars.by_ref() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            closed = true;
            break;
        } else {
            out.push(c);
        }
    }
    (closed && chars.next().is_none()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_their_forms() {
        let p = ObjectPath::parse(r#"IIsWebServerSetting.Name="W3SVC/1""#).unwrap();
        assert_eq!(p.class, "IIsWebServerSetting");
        assert_eq!(p.key, Some((Some("Name".into()), "W3SVC/1".into())));
        let p = ObjectPath::parse("IIsWebServer='W3SVC/2'").unwrap();
        assert_eq!(p.key, Some((None, "W3SVC/2".into())));
        let p =
            ObjectPath::parse(r#"\\.\root\MicrosoftIISv2:IIsWebServer.Name="W3SVC/1""#).unwrap();
        assert_eq!(p.class, "IIsWebServer");
        assert_eq!(ObjectPath::parse("IIsComputer").unwrap().key, None);
        let p = ObjectPath::parse(r#"X.Name="a\"b\\c""#).unwrap();
        assert_eq!(p.key.unwrap().1, "a\"b\\c");
        assert_eq!(
            ObjectPath::format("X", "Name", "a\"b\\c"),
            r#"X.Name="a\"b\\c""#
        );
        for bad in [
            "",
            ".Name='x'",
            "X.Name='x",
            "X.Name=x",
            "X.='x'",
            "root/other:X",
            "X.Name='a' extra",
        ] {
            let e = ObjectPath::parse(bad).unwrap_err();
            assert_eq!(e.status, WbemStatus::InvalidObjectPath, "{bad}");
        }
    }
}
