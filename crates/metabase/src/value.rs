//! Data items: their storage types, values, attributes and user types
//! ([MS-IMSA] 2.2.7 METADATA_RECORD).

use std::fmt;

/// The storage type of a data item (`dwMDDataType`, [MS-IMSA] 2.2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Dword = 1,
    String = 2,
    Binary = 3,
    ExpandSz = 4,
    MultiSz = 5,
}

impl DataType {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Dword,
            2 => Self::String,
            3 => Self::Binary,
            4 => Self::ExpandSz,
            5 => Self::MultiSz,
            _ => return None,
        })
    }

    /// The name used in `Custom` elements of MetaBase.xml.
    pub fn xml_name(self) -> &'static str {
        match self {
            Self::Dword => "DWORD",
            Self::String => "STRING",
            Self::Binary => "BINARY",
            Self::ExpandSz => "EXPANDSZ",
            Self::MultiSz => "MULTISZ",
        }
    }

    pub fn from_xml_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "DWORD" | "BOOL" => Self::Dword,
            "STRING" => Self::String,
            "BINARY" | "NTACL" | "IPSECLIST" => Self::Binary,
            "EXPANDSZ" => Self::ExpandSz,
            "MULTISZ" | "MIMEMAP" => Self::MultiSz,
            _ => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.xml_name())
    }
}

/// A data item's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Value {
    Dword(u32),
    String(String),
    Binary(Vec<u8>),
    ExpandSz(String),
    MultiSz(Vec<String>),
}

impl Value {
    pub fn data_type(&self) -> DataType {
        match self {
            Self::Dword(_) => DataType::Dword,
            Self::String(_) => DataType::String,
            Self::Binary(_) => DataType::Binary,
            Self::ExpandSz(_) => DataType::ExpandSz,
            Self::MultiSz(_) => DataType::MultiSz,
        }
    }

    pub fn as_dword(&self) -> Option<u32> {
        match self {
            Self::Dword(v) => Some(*v),
            _ => None,
        }
    }

    /// The text of a STRING or EXPANDSZ value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) | Self::ExpandSz(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_multi_sz(&self) -> Option<&[String]> {
        match self {
            Self::MultiSz(v) => Some(v),
            _ => None,
        }
    }

    /// The value as the bytes [MS-IMSA] transfers (`pbMDData`): little-endian
    /// DWORD, UTF-16LE strings with their terminating NULs. Used for sealing
    /// secure values and by the remote administration interfaces.
    pub fn to_wire_bytes(&self) -> Vec<u8> {
        fn push_utf16(out: &mut Vec<u8>, s: &str) {
            for unit in s.encode_utf16() {
                out.extend_from_slice(&unit.to_le_bytes());
            }
            out.extend_from_slice(&[0, 0]);
        }
        let mut out = Vec::new();
        match self {
            Self::Dword(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::String(s) | Self::ExpandSz(s) => push_utf16(&mut out, s),
            Self::Binary(b) => out.extend_from_slice(b),
            Self::MultiSz(items) => {
                for item in items {
                    push_utf16(&mut out, item);
                }
                out.extend_from_slice(&[0, 0]);
            }
        }
        out
    }

    /// The inverse of [`Value::to_wire_bytes`]; `None` when the bytes are not
    /// a well-formed value of `data_type`.
    pub fn from_wire_bytes(data_type: DataType, bytes: &[u8]) -> Option<Value> {
        fn utf16_units(bytes: &[u8]) -> Option<Vec<u16>> {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            Some(
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            )
        }
        match data_type {
            DataType::Dword => {
                let arr: [u8; 4] = bytes.try_into().ok()?;
                Some(Value::Dword(u32::from_le_bytes(arr)))
            }
            DataType::Binary => Some(Value::Binary(bytes.to_vec())),
            DataType::String | DataType::ExpandSz => {
                let mut units = utf16_units(bytes)?;
                if units.last() == Some(&0) {
                    units.pop();
                }
                if units.contains(&0) {
                    return None;
                }
                let s = String::from_utf16(&units).ok()?;
                Some(if data_type == DataType::String {
                    Value::String(s)
                } else {
                    Value::ExpandSz(s)
                })
            }
            DataType::MultiSz => {
                // Each string ends with a NUL and the list with one more; an
                // empty list is a lone NUL (or the double NUL Windows writes).
                let mut units = utf16_units(bytes)?;
                if units.last() != Some(&0) {
                    return None;
                }
                units.pop();
                if units.is_empty() || units == [0] {
                    return Some(Value::MultiSz(Vec::new()));
                }
                if units.last() != Some(&0) {
                    return None;
                }
                units.pop();
                let items = units
                    .split(|&u| u == 0)
                    .map(String::from_utf16)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?;
                Some(Value::MultiSz(items))
            }
        }
    }
}

/// `dwMDAttributes` bit flags ([MS-IMSA] 2.2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Attributes(pub u32);

impl Attributes {
    pub const NO_ATTRIBUTES: Attributes = Attributes(0);
    pub const INHERIT: Attributes = Attributes(0x01);
    pub const PARTIAL_PATH: Attributes = Attributes(0x02);
    pub const SECURE: Attributes = Attributes(0x04);
    pub const REFERENCE: Attributes = Attributes(0x08);
    pub const VOLATILE: Attributes = Attributes(0x10);
    pub const ISINHERITED: Attributes = Attributes(0x20);
    pub const INSERT_PATH: Attributes = Attributes(0x40);
    pub const LOCAL_MACHINE_ONLY: Attributes = Attributes(0x80);

    const NAMES: [(&'static str, u32); 8] = [
        ("INHERIT", 0x01),
        ("PARTIAL_PATH", 0x02),
        ("SECURE", 0x04),
        ("REFERENCE", 0x08),
        ("VOLATILE", 0x10),
        ("ISINHERITED", 0x20),
        ("INSERT_PATH", 0x40),
        ("LOCAL_MACHINE_ONLY", 0x80),
    ];

    pub fn contains(self, other: Attributes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Attributes) -> Attributes {
        Attributes(self.0 | other.0)
    }

    pub fn without(self, other: Attributes) -> Attributes {
        Attributes(self.0 & !other.0)
    }

    /// Parses `INHERIT | SECURE`, `NO_ATTRIBUTES`, a `METADATA_`-prefixed
    /// spelling, or a number.
    pub fn parse(text: &str) -> Option<Attributes> {
        let mut bits = 0u32;
        for part in text.split(['|', ',']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if let Some(n) = parse_u32(part) {
                bits |= n;
                continue;
            }
            let upper = part.to_ascii_uppercase();
            let name = upper.strip_prefix("METADATA_").unwrap_or(&upper);
            if name == "NO_ATTRIBUTES" {
                continue;
            }
            bits |= Self::NAMES.iter().find(|(n, _)| *n == name)?.1;
        }
        Some(Attributes(bits))
    }
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("NO_ATTRIBUTES");
        }
        let mut rest = self.0;
        let mut first = true;
        for (name, bit) in Self::NAMES {
            if rest & bit != 0 {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !bit;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest}")?;
        }
        Ok(())
    }
}

/// `dwMDUserType` ([MS-IMSA] 2.2.7). Values outside the four named ones are
/// legal (applications register their own) and are kept as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserType(pub u32);

impl UserType {
    pub const SERVER: UserType = UserType(1);
    pub const FILE: UserType = UserType(2);
    pub const WAM: UserType = UserType(100);
    pub const ASP_APP: UserType = UserType(101);

    const NAMES: [(&'static str, u32); 5] = [
        ("UNKNOWN_UserType", 0),
        ("IIS_MD_UT_SERVER", 1),
        ("IIS_MD_UT_FILE", 2),
        ("IIS_MD_UT_WAM", 100),
        ("ASP_MD_UT_APP", 101),
    ];

    pub fn parse(text: &str) -> Option<UserType> {
        let text = text.trim();
        if let Some(n) = parse_u32(text) {
            return Some(UserType(n));
        }
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text))
            .map(|(_, v)| UserType(*v))
    }
}

impl fmt::Display for UserType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Self::NAMES.iter().find(|(_, v)| *v == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Parses a decimal or `0x`-prefixed hexadecimal DWORD.
pub fn parse_u32(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_and_format() {
        let a = Attributes::parse("INHERIT | SECURE").unwrap();
        assert_eq!(a, Attributes(5));
        assert_eq!(a.to_string(), "INHERIT | SECURE");
        assert_eq!(Attributes::parse("NO_ATTRIBUTES"), Some(Attributes(0)));
        assert_eq!(
            Attributes::parse("METADATA_INHERIT|METADATA_VOLATILE"),
            Some(Attributes(0x11))
        );
        assert_eq!(Attributes::parse("65"), Some(Attributes(65)));
        assert_eq!(Attributes::parse("INHERITED"), None);
        assert_eq!(Attributes(0x101).to_string(), "INHERIT | 256");
    }

    #[test]
    fn user_types() {
        assert_eq!(UserType::parse("IIS_MD_UT_WAM"), Some(UserType::WAM));
        assert_eq!(UserType::parse("asp_md_ut_app"), Some(UserType::ASP_APP));
        assert_eq!(UserType::parse("2000"), Some(UserType(2000)));
        assert_eq!(UserType(2000).to_string(), "2000");
        assert_eq!(UserType::FILE.to_string(), "IIS_MD_UT_FILE");
    }

    #[test]
    fn wire_bytes_round_trip() {
        for v in [
            Value::Dword(0xdeadbeef),
            Value::String("Default Web Site".into()),
            Value::ExpandSz("%windir%\\x".into()),
            Value::Binary(vec![1, 2, 3]),
            Value::MultiSz(vec![":80:".into(), "10.0.0.1:443:host".into()]),
            Value::MultiSz(vec![]),
            Value::String(String::new()),
        ] {
            let bytes = v.to_wire_bytes();
            assert_eq!(Value::from_wire_bytes(v.data_type(), &bytes), Some(v));
        }
        // MS-IMSA 2.2.7: a two-string list is (len(a)+1 + len(b)+1 + 1) WCHARs.
        let two = Value::MultiSz(vec!["ab".into(), "c".into()]);
        assert_eq!(two.to_wire_bytes().len(), (3 + 2 + 1) * 2);
        assert_eq!(Value::from_wire_bytes(DataType::Dword, &[1, 2]), None);
        assert_eq!(Value::from_wire_bytes(DataType::String, &[1]), None);
    }

    #[test]
    fn dword_parsing() {
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("0x1F"), Some(31));
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32(""), None);
    }
}
