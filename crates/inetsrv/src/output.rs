//! How values are printed: adsutil's text layout
//! (`ServerComment : (STRING) "Default Web Site"`) or JSON.

use metabase::{Attributes, PropertyDef, Resolved, Schema, SchemaType, Value};
use serde_json::{json, Value as Json};

const MASK: &str = "**********";

/// The type label adsutil prints.
fn label(def: Option<&PropertyDef>, value: &Value) -> &'static str {
    match (def.map(|d| d.schema_type), value) {
        (Some(SchemaType::Bool), _) => "BOOLEAN",
        (_, Value::Dword(_)) => "INTEGER",
        (_, Value::String(_)) => "STRING",
        (_, Value::ExpandSz(_)) => "EXPANDSZ",
        (_, Value::MultiSz(_)) => "LIST",
        (_, Value::Binary(_)) => "BINARY",
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One property in adsutil's layout; a LIST continues on further lines.
pub fn text(schema: &Schema, r: &Resolved, show_secrets: bool) -> String {
    let def = schema
        .property(r.id)
        .map(|d| &**d)
        .filter(|d| d.data_type() == r.data_type());
    let masked = r.is_secure() && !show_secrets;
    let body = if masked {
        quote(MASK)
    } else {
        match (&r.value, def) {
            (Value::Dword(v), Some(d)) if d.schema_type == SchemaType::Bool => {
                if *v != 0 { "True" } else { "False" }.to_string()
            }
            (Value::Dword(v), Some(d)) if !d.flags.is_empty() => {
                format!("{v} ({})", d.format_flags(*v))
            }
            (Value::Dword(v), _) => v.to_string(),
            (Value::String(s) | Value::ExpandSz(s), _) => quote(s),
            (Value::Binary(b), Some(d)) if ipsec_text(d, b).is_some() => {
                quote(&ipsec_text(d, b).unwrap_or_default())
            }
            (Value::Binary(b), _) => format!("{} bytes: {}", b.len(), hex(b)),
            (Value::MultiSz(items), _) => {
                let mut out = format!("({} Items)", items.len());
                for item in items {
                    out.push_str("\n  ");
                    out.push_str(&quote(item));
                }
                out
            }
        }
    };
    let mut line = format!("{:<31} : ({}) {body}", r.name, label(def, &r.value));
    if r.inherited {
        line.push_str(&format!("  [inherited from {}]", r.defined_at));
    }
    line
}

/// IPSecurity in its readable form, when it is in inetsrv's format.
fn ipsec_text(def: &PropertyDef, bytes: &[u8]) -> Option<String> {
    (def.schema_type == SchemaType::IpSecList)
        .then(|| metabase::ipsec::IpSecurity::from_bytes(bytes))
        .flatten()
        .map(|list| list.to_text())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value as JSON: numbers, booleans, strings, arrays; flags also by name.
pub fn json_value(def: Option<&PropertyDef>, value: &Value) -> Json {
    match (value, def.map(|d| d.schema_type)) {
        (Value::Dword(v), Some(SchemaType::Bool)) => json!(*v != 0),
        (Value::Dword(v), _) => json!(v),
        (Value::String(s) | Value::ExpandSz(s), _) => json!(s),
        (Value::MultiSz(items), _) => json!(items),
        (Value::Binary(b), Some(SchemaType::IpSecList)) => match def.and_then(|d| ipsec_text(d, b))
        {
            Some(text) => json!(text),
            None => json!(hex(b)),
        },
        (Value::Binary(b), _) => json!(hex(b)),
    }
}

/// One property as a JSON object.
pub fn json(schema: &Schema, r: &Resolved, show_secrets: bool) -> Json {
    let def = schema
        .property(r.id)
        .map(|d| &**d)
        .filter(|d| d.data_type() == r.data_type());
    let value = if r.is_secure() && !show_secrets {
        json!(MASK)
    } else {
        json_value(def, &r.value)
    };
    let mut obj = json!({
        "name": r.name,
        "id": r.id,
        "type": def.map_or_else(|| r.data_type().to_string(), |d| d.schema_type.to_string()),
        "value": value,
        "attributes": r.attributes.without(Attributes::ISINHERITED).to_string(),
        "user_type": r.user_type.to_string(),
        "inherited": r.inherited,
        "defined_at": r.defined_at.to_string(),
    });
    if let (Some(d), Value::Dword(v)) = (def, &r.value) {
        let visible = !r.is_secure() || show_secrets;
        if !d.flags.is_empty() && visible {
            let names: Vec<String> = d
                .flags
                .iter()
                .filter(|f| f.value != 0 && v & f.value == f.value)
                .map(|f| f.name.clone())
                .collect();
            obj["flags"] = json!(names);
        }
    }
    obj
}

/// Appends JSON with a trailing newline to a command's output.
pub fn push_json(out: &mut String, value: &Json) {
    out.push_str(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
    out.push('\n');
}

/// Appends a command's one-line outcome to its output: the text, or
/// `{"ok": true, "message": …}` with `--json`.
pub fn push_message(out: &mut String, json: bool, text: &str) {
    if json {
        push_json(out, &serde_json::json!({ "ok": true, "message": text }));
    } else {
        out.push_str(text);
        out.push('\n');
    }
}

/// A command's one-line outcome: the text, or `{"ok": true, "message": …}`
/// with `--json`.
pub fn message(json: bool, text: &str) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!({ "ok": true, "message": text }));
    } else {
        println!("{text}");
    }
    Ok(())
}

/// Prints JSON with a trailing newline.
pub fn print_json(value: &Json) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A time as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(t: Option<std::time::SystemTime>) -> String {
    match t {
        Some(t) => {
            let (date, time) = listener::httperr::w3c_date_time(t);
            format!("{date} {time}")
        }
        None => "-".into(),
    }
}
