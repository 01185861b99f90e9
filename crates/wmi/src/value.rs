//! CIM types and values as the provider exposes metabase data: DWORDs as
//! uint32, BOOLs as boolean, strings, string arrays, byte arrays, and
//! embedded objects for structured values.

use std::fmt;

/// A property's CIM type ([MS-WMIO] 2.2.6 CimType, the subset used here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CimType {
    Boolean,
    UInt32,
    String,
    UInt8,
    /// An embedded object of this class.
    Object(String),
    /// A reference (an object path) to an instance of this class.
    Reference(String),
}

/// The type of a property: a CIM type, or an array of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropType {
    pub base: CimType,
    pub array: bool,
}

impl PropType {
    pub fn scalar(base: CimType) -> PropType {
        PropType { base, array: false }
    }

    pub fn array(base: CimType) -> PropType {
        PropType { base, array: true }
    }
}

impl fmt::Display for PropType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.base {
            CimType::Boolean => f.write_str("boolean")?,
            CimType::UInt32 => f.write_str("uint32")?,
            CimType::String => f.write_str("string")?,
            CimType::UInt8 => f.write_str("uint8")?,
            CimType::Object(c) => write!(f, "object:{c}")?,
            CimType::Reference(c) if c.is_empty() => f.write_str("ref")?,
            CimType::Reference(c) => write!(f, "ref:{c}")?,
        }
        if self.array {
            f.write_str("[]")?;
        }
        Ok(())
    }
}

/// An embedded object: a structured value such as a ServerBinding.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddedObject {
    pub class: String,
    pub properties: Vec<(String, WmiValue)>,
}

impl EmbeddedObject {
    pub fn get(&self, name: &str) -> Option<&WmiValue> {
        self.properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// A property value.
#[derive(Clone, Debug, PartialEq)]
pub enum WmiValue {
    Null,
    Bool(bool),
    UInt32(u32),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<WmiValue>),
    Object(EmbeddedObject),
}

impl WmiValue {
    pub fn is_null(&self) -> bool {
        matches!(self, WmiValue::Null)
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            WmiValue::Null => J::Null,
            WmiValue::Bool(b) => J::Bool(*b),
            WmiValue::UInt32(n) => J::from(*n),
            WmiValue::String(s) => J::String(s.clone()),
            WmiValue::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            WmiValue::Array(items) => J::Array(items.iter().map(WmiValue::to_json).collect()),
            WmiValue::Object(o) => {
                let mut map = serde_json::Map::new();
                map.insert("__CLASS".into(), J::String(o.class.clone()));
                for (k, v) in &o.properties {
                    map.insert(k.clone(), v.to_json());
                }
                J::Object(map)
            }
        }
    }
}

/// The text form, as a table cell or a `Name = value` line shows it.
impl fmt::Display for WmiValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WmiValue::Null => f.write_str("NULL"),
            WmiValue::Bool(true) => f.write_str("TRUE"),
            WmiValue::Bool(false) => f.write_str("FALSE"),
            WmiValue::UInt32(n) => write!(f, "{n}"),
            WmiValue::String(s) => f.write_str(s),
            WmiValue::Bytes(b) => {
                for x in b {
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
            WmiValue::Array(items) => {
                f.write_str("{")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match item {
                        WmiValue::String(s) => write!(f, "{s:?}")?,
                        other => write!(f, "{other}")?,
                    }
                }
                f.write_str("}")
            }
            WmiValue::Object(o) => {
                write!(f, "{}{{", o.class)?;
                for (i, (k, v)) in o.properties.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    match v {
                        WmiValue::String(s) => write!(f, "{k} = {s:?}")?,
                        other => write!(f, "{k} = {other}")?,
                    }
                }
                f.write_str("}")
            }
        }
    }
}
