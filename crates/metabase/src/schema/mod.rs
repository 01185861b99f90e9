//! The metabase schema: every property's ID, type, user type, attributes,
//! default and range; the flag names of bit-field properties; the classes
//! (key types) with the properties each may carry and the key types each may
//! contain. It is read from and written to MBSchema.xml
//! (namespace `x-urn:microsoft-catalog:MetaData_V7`), and can be extended
//! at run time with new properties and new classes.

mod product;
mod xml;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::value::{parse_u32, Attributes, DataType, UserType, Value};

pub use product::{fastcgi, ALLOW_SYMLINKS_OUTSIDE_ROOT, PRODUCT_IDS};
pub use xml::{parse_schema, write_schema};

/// The schema as shipped: IIS 6's standard classes and properties.
const EMBEDDED_SCHEMA: &str = include_str!("../../data/MBSchema.xml");

/// The generic key type: a key of this type may carry any property.
pub const GENERIC_KEY_TYPE: &str = "IIsConfigObject";
/// The class that holds every property definition in MBSchema.xml.
pub(crate) const DEFINITIONS_CLASS: &str = "IIsConfigObject";
/// The generic child entry of container lists.
const GENERIC_CHILD: &str = "IIsObject";

/// MD_KEY_TYPE: the key type, stored on each key.
pub const KEY_TYPE_ID: u32 = 1002;

/// The type a property has in the schema. Several schema types share one
/// storage type: BOOL is a DWORD, NTACL and IPSECLIST are BINARY, MIMEMAP
/// is a MULTISZ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaType {
    Dword,
    Bool,
    String,
    ExpandSz,
    MultiSz,
    Binary,
    NtAcl,
    IpSecList,
    MimeMap,
}

impl SchemaType {
    pub fn parse(name: &str) -> Option<SchemaType> {
        Some(match name.to_ascii_uppercase().as_str() {
            "DWORD" => Self::Dword,
            "BOOL" => Self::Bool,
            "STRING" => Self::String,
            "EXPANDSZ" => Self::ExpandSz,
            "MULTISZ" => Self::MultiSz,
            "BINARY" => Self::Binary,
            "NTACL" => Self::NtAcl,
            "IPSECLIST" => Self::IpSecList,
            "MIMEMAP" => Self::MimeMap,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Dword => "DWORD",
            Self::Bool => "BOOL",
            Self::String => "STRING",
            Self::ExpandSz => "EXPANDSZ",
            Self::MultiSz => "MULTISZ",
            Self::Binary => "BINARY",
            Self::NtAcl => "NTACL",
            Self::IpSecList => "IPSECLIST",
            Self::MimeMap => "MIMEMAP",
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            Self::Dword | Self::Bool => DataType::Dword,
            Self::String => DataType::String,
            Self::ExpandSz => DataType::ExpandSz,
            Self::MultiSz | Self::MimeMap => DataType::MultiSz,
            Self::Binary | Self::NtAcl | Self::IpSecList => DataType::Binary,
        }
    }

    pub fn from_data_type(data_type: DataType) -> SchemaType {
        match data_type {
            DataType::Dword => Self::Dword,
            DataType::String => Self::String,
            DataType::ExpandSz => Self::ExpandSz,
            DataType::MultiSz => Self::MultiSz,
            DataType::Binary => Self::Binary,
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named bit of a bit-field property (`AccessRead` of `AccessFlags`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagDef {
    pub name: String,
    pub value: u32,
    pub id: Option<u32>,
}

/// A property definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyDef {
    pub id: u32,
    pub name: String,
    pub schema_type: SchemaType,
    pub user_type: UserType,
    pub attributes: Attributes,
    /// The default as the schema writes it (flag names for bit fields).
    pub default: Option<String>,
    pub starting_number: Option<u32>,
    pub ending_number: Option<u32>,
    pub flags: Vec<FlagDef>,
    /// Catalog attributes this crate does not interpret (MetaFlags,
    /// MetaFlagsEx, …), kept for the round trip.
    pub extra: Vec<(String, String)>,
}

impl PropertyDef {
    /// A definition for a property outside the schema, as a `Custom` element
    /// of MetaBase.xml describes it.
    pub fn custom(
        id: u32,
        name: &str,
        data_type: DataType,
        user_type: UserType,
        attributes: Attributes,
    ) -> PropertyDef {
        PropertyDef {
            id,
            name: name.to_string(),
            schema_type: SchemaType::from_data_type(data_type),
            user_type,
            attributes,
            default: None,
            starting_number: None,
            ending_number: None,
            flags: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn data_type(&self) -> DataType {
        self.schema_type.data_type()
    }

    /// The permitted range of a DWORD property, from the schema's
    /// StartingNumber/EndingNumber. An EndingNumber of 0 (or one below the
    /// start) means no upper bound, as in IIS's catalog.
    pub fn range(&self) -> Option<(u32, u32)> {
        if self.schema_type != SchemaType::Dword || !self.flags.is_empty() {
            return None;
        }
        let min = self.starting_number.unwrap_or(0);
        let max = match self.ending_number {
            Some(end) if end != 0 && end >= min => end,
            _ => u32::MAX,
        };
        (min, max).ne(&(0, u32::MAX)).then_some((min, max))
    }

    pub fn is_secure(&self) -> bool {
        self.attributes.contains(Attributes::SECURE)
    }

    /// Parses a value from its text form (MetaBase.xml attribute text, or a
    /// command-line argument). Bit fields take flag names joined by `|`
    /// or a number; BOOL takes TRUE/FALSE (or 1/0, yes/no, on/off);
    /// MULTISZ takes one entry per line; binary types take hex.
    pub fn parse_text(&self, text: &str) -> std::result::Result<Value, String> {
        let value = match self.schema_type {
            SchemaType::Dword if !self.flags.is_empty() => Value::Dword(self.parse_flags(text)?),
            SchemaType::Dword => Value::Dword(
                parse_u32(text)
                    .ok_or_else(|| format!("'{text}' is not a DWORD (0 to 4294967295)"))?,
            ),
            SchemaType::Bool => Value::Dword(parse_bool(text)?),
            SchemaType::String => Value::String(text.to_string()),
            SchemaType::ExpandSz => Value::ExpandSz(text.to_string()),
            SchemaType::MultiSz | SchemaType::MimeMap => Value::MultiSz(if text.is_empty() {
                Vec::new()
            } else {
                text.split('\n').map(str::to_string).collect()
            }),
            // Hex is taken as the stored form; anything else is the
            // readable GrantByDefault/IPGrant/IPDeny form.
            SchemaType::IpSecList => match parse_hex(text) {
                Ok(bytes) if !text.trim().is_empty() => Value::Binary(bytes),
                _ => Value::Binary(crate::ipsec::IpSecurity::parse_text(text)?.to_bytes()),
            },
            SchemaType::Binary | SchemaType::NtAcl => Value::Binary(parse_hex(text)?),
        };
        self.check(&value)?;
        Ok(value)
    }

    /// Parses a value from command-line arguments: each argument is one
    /// entry of a MULTISZ; for other types the arguments are joined by a
    /// space (so `AccessRead | AccessScript` may be given unquoted).
    pub fn parse_args(&self, args: &[String]) -> std::result::Result<Value, String> {
        match self.data_type() {
            DataType::MultiSz => {
                let value = Value::MultiSz(args.to_vec());
                self.check(&value)?;
                Ok(value)
            }
            _ => self.parse_text(&args.join(" ")),
        }
    }

    /// The text form of a value ([`PropertyDef::parse_text`]'s inverse);
    /// MULTISZ entries are joined by `\n`.
    pub fn format_text(&self, value: &Value) -> String {
        match (self.schema_type, value) {
            (SchemaType::Bool, Value::Dword(v)) => {
                if *v != 0 { "TRUE" } else { "FALSE" }.to_string()
            }
            (SchemaType::Dword, Value::Dword(v)) if !self.flags.is_empty() => self.format_flags(*v),
            (SchemaType::IpSecList, Value::Binary(bytes)) => {
                match crate::ipsec::IpSecurity::from_bytes(bytes) {
                    Some(list) => list.to_text(),
                    None => format_plain(value),
                }
            }
            (_, value) => format_plain(value),
        }
    }

    /// Checks a value's type and range against the definition.
    pub fn check(&self, value: &Value) -> std::result::Result<(), String> {
        if value.data_type() != self.data_type() {
            return Err(format!(
                "expects a {} value, got a {}",
                self.schema_type,
                value.data_type()
            ));
        }
        if let Value::Dword(v) = value {
            if self.schema_type == SchemaType::Bool && *v > 1 {
                return Err(format!("is a BOOL: 0 or 1 (FALSE or TRUE), not {v}"));
            }
            if let Some((min, max)) = self.range() {
                if *v < min || *v > max {
                    return Err(format!("{v} is out of range: {min} to {max}"));
                }
            }
        }
        Ok(())
    }

    /// Checks what the server will make of a value written through the
    /// API (set, import), beyond its type and range: a `ServerBindings`
    /// entry must have the `IP:port:host` form, a `Path` must not be
    /// empty. Files loaded from disk are not held to this (a hand edit
    /// that breaks a binding is reported by the service instead).
    pub fn check_meaning(&self, value: &Value) -> std::result::Result<(), String> {
        match (self.id, value) {
            (crate::ids::SERVER_BINDINGS, Value::MultiSz(entries)) => entries
                .iter()
                .filter(|e| !e.trim().is_empty())
                .try_for_each(|e| check_binding(e)),
            (fastcgi::EXE_PATH, Value::String(p)) if !p.starts_with('/') => Err(format!(
                "'{p}' is not an absolute path (the FastCGI application's program, e.g. /usr/bin/php-cgi)"
            )),
            (fastcgi::ENVIRONMENT_VARS, Value::MultiSz(entries)) => entries
                .iter()
                .filter(|e| !e.is_empty())
                .try_for_each(|e| match e.split_once('=') {
                    Some((name, _)) if !name.is_empty() && !name.contains('\0') => Ok(()),
                    _ => Err(format!("'{e}' is not NAME=VALUE")),
                }),
            (fastcgi::STDERR_MODE, Value::String(m))
                if !fastcgi::STDERR_MODES.iter().any(|k| k.eq_ignore_ascii_case(m)) =>
            {
                Err(format!(
                    "'{m}' is not a StderrMode: {}",
                    fastcgi::STDERR_MODES.join(", ")
                ))
            }
            (fastcgi::PROTOCOL, Value::String(m))
                if !fastcgi::PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(m)) =>
            {
                Err(format!("'{m}' is not a protocol: Unix (NamedPipe) or Tcp"))
            }
            (crate::ids::PATH, Value::String(p) | Value::ExpandSz(p)) if p.trim().is_empty() => {
                Err(
                    "a virtual directory's Path cannot be empty (give the directory it serves)"
                        .into(),
                )
            }
            _ => Ok(()),
        }
    }

    /// The schema default as a value, where the schema gives one that parses.
    pub fn default_value(&self) -> Option<Value> {
        self.parse_text(self.default.as_deref()?).ok()
    }

    fn parse_flags(&self, text: &str) -> std::result::Result<u32, String> {
        let mut bits = 0u32;
        for token in text.split(['|', ',', ' ', '\t']) {
            if token.is_empty() {
                continue;
            }
            if let Some(n) = parse_u32(token) {
                bits |= n;
            } else if let Some(flag) = self
                .flags
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(token))
            {
                bits |= flag.value;
            } else {
                let names: Vec<&str> = self.flags.iter().map(|f| f.name.as_str()).collect();
                return Err(format!(
                    "'{token}' is not a flag of {} (flags: {})",
                    self.name,
                    names.join(", ")
                ));
            }
        }
        Ok(bits)
    }

    /// Formats a bit field as IIS writes it: the flag names in ascending bit
    /// order, joined by ` | `, and any unnamed bits as a number.
    pub fn format_flags(&self, value: u32) -> String {
        if value == 0 {
            return "0".to_string();
        }
        let mut flags: Vec<&FlagDef> = self.flags.iter().filter(|f| f.value != 0).collect();
        flags.sort_by_key(|f| f.value);
        let mut parts = Vec::new();
        let mut rest = value;
        for flag in flags {
            if value & flag.value == flag.value && rest & flag.value != 0 {
                parts.push(flag.name.clone());
                rest &= !flag.value;
            }
        }
        if rest != 0 {
            parts.push(rest.to_string());
        }
        parts.join(" | ")
    }
}

/// Text form of a value without schema knowledge (Custom properties).
pub fn format_plain(value: &Value) -> String {
    match value {
        Value::Dword(v) => v.to_string(),
        Value::String(s) | Value::ExpandSz(s) => s.clone(),
        Value::MultiSz(items) => items.join("\n"),
        Value::Binary(bytes) => hex::encode(bytes),
    }
}

/// A BOOL in text: TRUE/FALSE, 1/0, YES/NO, ON/OFF (any case) → 1 or 0.
pub fn parse_bool(text: &str) -> std::result::Result<u32, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(1),
        "false" | "0" | "no" | "off" => Ok(0),
        _ => Err(format!("'{text}' is not a BOOL (TRUE or FALSE)")),
    }
}

fn parse_hex(text: &str) -> std::result::Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&compact).map_err(|e| format!("'{text}' is not hexadecimal binary data: {e}"))
}

/// One entry of a class's property list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassProperty {
    pub name: String,
    /// Attributes besides the reference itself (overrides such as
    /// `MetaFlagsEx="| MANDATORY"`, or a whole local definition for
    /// properties that are not IIsConfigObject references).
    pub extra: Vec<(String, String)>,
    /// False for a property defined locally (MetabaseBaseClass:Location).
    pub is_reference: bool,
}

/// A class (key type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassDef {
    pub name: String,
    /// The key types a key of this class may contain; `None` when the
    /// schema sets no rule (any child allowed).
    pub container_class_list: Option<Vec<String>>,
    pub properties: Vec<ClassProperty>,
    /// Catalog attributes kept for the round trip (MetaFlags, …).
    pub extra: Vec<(String, String)>,
}

impl ClassDef {
    pub fn new(name: &str, container_class_list: Option<Vec<String>>) -> ClassDef {
        ClassDef {
            name: name.to_string(),
            container_class_list,
            properties: Vec::new(),
            extra: vec![
                (
                    "MetaFlagsEx".into(),
                    "NOTABLESCHEMAHEAPENTRY | CONTAINERCLASS".into(),
                ),
                ("MetaFlags".into(), "HASUNKNOWNSIZES".into()),
                ("InheritsPropertiesFrom".into(), "MetabaseBaseClass".into()),
            ],
        }
    }

    /// Hidden classes (IIS_Global, IIS_ROOT, templates) are internal to IIS.
    pub fn is_hidden(&self) -> bool {
        self.extra
            .iter()
            .any(|(k, v)| k == "MetaFlags" && v.split('|').any(|f| f.trim() == "HIDDEN"))
    }
}

/// The whole schema. Cheap to share (held in an `Arc` by each snapshot);
/// extended by cloning.
#[derive(Clone, Debug)]
pub struct Schema {
    props: HashMap<u32, Arc<PropertyDef>>,
    /// Lower-cased names, and the names as defined (the common spelling,
    /// found without allocating).
    by_name: HashMap<String, u32>,
    by_exact_name: HashMap<String, u32>,
    /// Definition order, as written to MBSchema.xml.
    prop_order: Vec<u32>,
    classes: Vec<ClassDef>,
    class_index: HashMap<String, usize>,
    class_exact_index: HashMap<String, usize>,
    /// Per class: the IDs its property list allows.
    class_props: Vec<HashSet<u32>>,
    flags_by_name: HashMap<String, (u32, u32)>,
    /// Everything of the file this crate does not model, for the round trip.
    pub(crate) database_extra: Vec<(String, String)>,
    pub(crate) wiring: Vec<Vec<(String, String)>>,
}

impl Schema {
    /// A schema read from a file (a state directory's MBSchema.xml, a
    /// history version, a backup): parsed, then given inetsrv's own
    /// properties where it lacks them (conflicts are logged).
    pub fn from_file_text(text: &str, file: &str) -> Result<Schema> {
        let mut schema = parse_schema(text, file)?;
        for conflict in schema.add_product_properties() {
            tracing::warn!(file, "{conflict}");
        }
        Ok(schema)
    }

    /// The standard IIS 6 schema shipped with inetsrv.
    pub fn standard() -> Arc<Schema> {
        static STANDARD: OnceLock<Arc<Schema>> = OnceLock::new();
        STANDARD
            .get_or_init(|| {
                // The embedded file is tested to parse (tests::embedded_schema_loads),
                // and inetsrv's own properties to fit it.
                let mut schema = parse_schema(EMBEDDED_SCHEMA, "<embedded MBSchema.xml>")
                    .unwrap_or_else(|e| panic!("embedded schema is invalid: {e}"));
                let conflicts = schema.add_product_properties();
                assert!(conflicts.is_empty(), "{conflicts:?}");
                Arc::new(schema)
            })
            .clone()
    }

    pub(crate) fn from_parts(
        defs: Vec<PropertyDef>,
        classes: Vec<ClassDef>,
        database_extra: Vec<(String, String)>,
        wiring: Vec<Vec<(String, String)>>,
    ) -> Result<Schema> {
        let mut schema = Schema {
            props: HashMap::new(),
            by_name: HashMap::new(),
            by_exact_name: HashMap::new(),
            prop_order: Vec::new(),
            classes: Vec::new(),
            class_index: HashMap::new(),
            class_exact_index: HashMap::new(),
            class_props: Vec::new(),
            flags_by_name: HashMap::new(),
            database_extra,
            wiring,
        };
        for def in defs {
            schema.insert_def(def)?;
        }
        for class in classes {
            schema.insert_class(class)?;
        }
        Ok(schema)
    }

    fn insert_def(&mut self, def: PropertyDef) -> Result<()> {
        if self.props.contains_key(&def.id) {
            return Err(Error::Schema(format!(
                "property ID {} is defined twice ({} and {})",
                def.id, self.props[&def.id].name, def.name
            )));
        }
        let lower = def.name.to_ascii_lowercase();
        if self.by_name.contains_key(&lower) {
            return Err(Error::Schema(format!(
                "property name {} is defined twice",
                def.name
            )));
        }
        for flag in &def.flags {
            self.flags_by_name
                .entry(flag.name.to_ascii_lowercase())
                .or_insert((def.id, flag.value));
        }
        self.by_name.insert(lower, def.id);
        self.by_exact_name.insert(def.name.clone(), def.id);
        self.prop_order.push(def.id);
        self.props.insert(def.id, Arc::new(def));
        Ok(())
    }

    fn insert_class(&mut self, class: ClassDef) -> Result<()> {
        let lower = class.name.to_ascii_lowercase();
        if self.class_index.contains_key(&lower) {
            return Err(Error::Schema(format!(
                "class {} is defined twice",
                class.name
            )));
        }
        let allowed = self.resolve_class_props(&class)?;
        self.class_index.insert(lower, self.classes.len());
        self.class_exact_index
            .insert(class.name.clone(), self.classes.len());
        self.classes.push(class);
        self.class_props.push(allowed);
        Ok(())
    }

    fn resolve_class_props(&self, class: &ClassDef) -> Result<HashSet<u32>> {
        let mut allowed = HashSet::new();
        for p in class.properties.iter().filter(|p| p.is_reference) {
            let id = self
                .by_name
                .get(&p.name.to_ascii_lowercase())
                .ok_or_else(|| {
                    Error::Schema(format!(
                        "class {} lists property {}, which is not defined",
                        class.name, p.name
                    ))
                })?;
            allowed.insert(*id);
        }
        Ok(allowed)
    }

    pub fn property(&self, id: u32) -> Option<&Arc<PropertyDef>> {
        self.props.get(&id)
    }

    /// Looks a property up by name (case-insensitively), by `MD_<id>`
    /// spelling, or by decimal ID.
    pub fn property_by_name(&self, name: &str) -> Option<&Arc<PropertyDef>> {
        if let Some(id) = self.by_exact_name.get(name) {
            return self.props.get(id);
        }
        if let Some(id) = self.by_name.get(&name.to_ascii_lowercase()) {
            return self.props.get(id);
        }
        parse_u32(name).and_then(|id| self.props.get(&id))
    }

    /// The bit-field property and bit a flag name belongs to
    /// (`AccessRead` → (AccessFlags, 1)).
    pub fn flag_by_name(&self, name: &str) -> Option<(&Arc<PropertyDef>, u32)> {
        let (id, bit) = self.flags_by_name.get(&name.to_ascii_lowercase())?;
        Some((self.props.get(id)?, *bit))
    }

    /// All property definitions, in schema order.
    pub fn properties(&self) -> impl Iterator<Item = &Arc<PropertyDef>> {
        self.prop_order.iter().filter_map(|id| self.props.get(id))
    }

    /// The display name of a property ID: its schema name, else `MD_<id>`.
    pub fn name_of(&self, id: u32) -> String {
        self.props
            .get(&id)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| format!("MD_{id}"))
    }

    pub fn class(&self, name: &str) -> Option<&ClassDef> {
        self.class_position(name).map(|i| &self.classes[i])
    }

    fn class_position(&self, name: &str) -> Option<usize> {
        self.class_exact_index
            .get(name)
            .or_else(|| self.class_index.get(&name.to_ascii_lowercase()))
            .copied()
    }

    pub fn classes(&self) -> &[ClassDef] {
        &self.classes
    }

    /// The properties a key type may carry, in the class's order.
    pub fn class_properties(&self, class: &str) -> Vec<&Arc<PropertyDef>> {
        match self.class(class) {
            Some(c) => c
                .properties
                .iter()
                .filter(|p| p.is_reference)
                .filter_map(|p| self.property_by_name(&p.name))
                .collect(),
            None => Vec::new(),
        }
    }

    fn is_generic(key_type: &str) -> bool {
        key_type.eq_ignore_ascii_case(GENERIC_KEY_TYPE)
            || key_type.eq_ignore_ascii_case(GENERIC_CHILD)
    }

    /// Whether a key of `key_type` may carry property `id`. Generic keys,
    /// key types the schema does not know, and properties outside the
    /// schema (Custom data) are not restricted.
    pub fn property_allowed(&self, key_type: &str, id: u32) -> bool {
        if id == KEY_TYPE_ID || Self::is_generic(key_type) || !self.props.contains_key(&id) {
            return true;
        }
        match self.class_position(key_type) {
            Some(i) => self.class_props[i].contains(&id),
            None => true,
        }
    }

    /// Whether a key of `child_type` may be created under a key of
    /// `parent_type`; on refusal, the list of what is allowed there.
    pub fn may_contain(
        &self,
        parent_type: &str,
        child_type: &str,
    ) -> std::result::Result<(), String> {
        let Some(parent) = self.class(parent_type) else {
            return Ok(());
        };
        let Some(list) = &parent.container_class_list else {
            return Ok(());
        };
        let generic_child = Self::is_generic(child_type);
        let ok = list.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(child_type)
                || (generic_child && allowed.eq_ignore_ascii_case(GENERIC_CHILD))
        });
        if ok {
            Ok(())
        } else if list.is_empty() {
            Err("nothing".to_string())
        } else {
            Err(list.join(", "))
        }
    }

    /// Adds a property definition (schema extension). `classes` are the key
    /// types that may carry it; the generic key type always may.
    pub fn add_property(&mut self, def: PropertyDef, classes: &[String]) -> Result<()> {
        validate_identifier(&def.name, "property")?;
        if def.id == 0 {
            return Err(Error::Schema("property ID 0 is reserved".into()));
        }
        if let Some(existing) = self.props.get(&def.id) {
            return Err(Error::Schema(format!(
                "property ID {} is already {}",
                def.id, existing.name
            )));
        }
        if self.property_by_name(&def.name).is_some() || self.flag_by_name(&def.name).is_some() {
            return Err(Error::Schema(format!(
                "a property or flag named {} already exists",
                def.name
            )));
        }
        if self.class(&def.name).is_some() {
            return Err(Error::Schema(format!(
                "{} is already the name of a class",
                def.name
            )));
        }
        if let Some(default) = &def.default {
            def.parse_text(default)
                .map_err(|e| Error::Schema(format!("default of {}: {e}", def.name)))?;
        }
        for class in classes {
            if self.class(class).is_none() {
                return Err(Error::UnknownKeyType(class.clone()));
            }
        }
        let name = def.name.clone();
        self.insert_def(def)?;
        self.add_to_class(DEFINITIONS_CLASS, &name)?;
        for class in classes {
            if !class.eq_ignore_ascii_case(DEFINITIONS_CLASS) {
                self.add_to_class(class, &name)?;
            }
        }
        Ok(())
    }

    /// Lets an existing class carry an existing property.
    pub fn add_property_to_class(&mut self, class: &str, property: &str) -> Result<()> {
        let def = self
            .property_by_name(property)
            .ok_or_else(|| Error::UnknownProperty(property.to_string()))?
            .clone();
        self.add_to_class(class, &def.name)
    }

    fn add_to_class(&mut self, class: &str, property: &str) -> Result<()> {
        let index = *self
            .class_index
            .get(&class.to_ascii_lowercase())
            .ok_or_else(|| Error::UnknownKeyType(class.to_string()))?;
        let id = self.by_name[&property.to_ascii_lowercase()];
        if self.class_props[index].insert(id) && !class.eq_ignore_ascii_case(DEFINITIONS_CLASS) {
            self.classes[index].properties.push(ClassProperty {
                name: property.to_string(),
                extra: Vec::new(),
                is_reference: true,
            });
        }
        Ok(())
    }

    /// Adds a class (a new key type). `contains` are the key types it may
    /// contain; `allowed_under` are existing classes that may contain it.
    pub fn add_class(
        &mut self,
        name: &str,
        contains: Vec<String>,
        allowed_under: &[String],
        properties: &[String],
    ) -> Result<()> {
        validate_identifier(name, "class")?;
        if self.class(name).is_some() {
            return Err(Error::Schema(format!("class {name} already exists")));
        }
        if self.property_by_name(name).is_some() {
            return Err(Error::Schema(format!(
                "{name} is already the name of a property"
            )));
        }
        for parent in allowed_under {
            if self.class(parent).is_none() {
                return Err(Error::UnknownKeyType(parent.clone()));
            }
        }
        let mut class = ClassDef::new(name, Some(contains));
        class.properties.push(ClassProperty {
            name: "KeyType".into(),
            extra: Vec::new(),
            is_reference: true,
        });
        for p in properties {
            let def = self
                .property_by_name(p)
                .ok_or_else(|| Error::UnknownProperty(p.clone()))?;
            if !class.properties.iter().any(|c| c.name == def.name) {
                class.properties.push(ClassProperty {
                    name: def.name.clone(),
                    extra: Vec::new(),
                    is_reference: true,
                });
            }
        }
        self.insert_class(class)?;
        for parent in allowed_under {
            let index = self.class_index[&parent.to_ascii_lowercase()];
            let list = self.classes[index]
                .container_class_list
                .get_or_insert_with(Vec::new);
            if !list.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                list.push(name.to_string());
            }
        }
        Ok(())
    }
}

fn validate_identifier(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Schema(format!(
            "'{name}' is not a valid {what} name (letters, digits and _, starting with a letter)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_loads() {
        let schema = Schema::standard();
        assert!(schema.properties().count() > 450);
        assert!(schema.classes().len() > 60);
    }

    #[test]
    fn standard_property_facts() {
        let s = Schema::standard();
        let check = |name: &str, id: u32, ty: SchemaType, inherit: bool| {
            let def = s.property_by_name(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(def.id, id, "{name}");
            assert_eq!(def.schema_type, ty, "{name}");
            assert_eq!(
                def.attributes.contains(Attributes::INHERIT),
                inherit,
                "{name}"
            );
        };
        check("ServerBindings", 1023, SchemaType::MultiSz, false);
        check("ServerComment", 1015, SchemaType::String, true);
        check("Path", 3001, SchemaType::String, true);
        check("AccessFlags", 6016, SchemaType::Dword, true);
        check("DefaultDoc", 6006, SchemaType::String, true);
        check("AppPoolId", 9101, SchemaType::String, true);
        check("PeriodicRestartTime", 9001, SchemaType::Dword, true);
        check("AppPoolQueueLength", 9017, SchemaType::Dword, true);
        check("MimeMap", 6015, SchemaType::MimeMap, true);
        check("ServerAutoStart", 1017, SchemaType::Bool, false);
        assert!(s.property_by_name("AnonymousUserPass").unwrap().is_secure());
        assert_eq!(s.property_by_name("1015").unwrap().name, "ServerComment");
        assert_eq!(s.property_by_name("servercomment").unwrap().id, 1015);
        // IIS 6 leaves 9010, 9016, 9019, 9025 and 9033 unassigned.
        for id in (9001..=9038).filter(|id| ![9010, 9016, 9019, 9025, 9033].contains(id)) {
            assert!(s.property(id).is_some(), "app pool property {id}");
        }
    }

    #[test]
    fn flags() {
        let s = Schema::standard();
        let access = s.property_by_name("AccessFlags").unwrap();
        assert_eq!(
            access.parse_text("AccessRead | AccessScript").unwrap(),
            Value::Dword(0x201)
        );
        assert_eq!(
            access.format_text(&Value::Dword(0x201)),
            "AccessRead | AccessScript"
        );
        assert_eq!(
            access.parse_text("accessread,0x200").unwrap(),
            Value::Dword(0x201)
        );
        assert!(access.parse_text("AccessBogus").is_err());
        assert_eq!(access.format_text(&Value::Dword(0)), "0");
        let (def, bit) = s.flag_by_name("AccessWrite").unwrap();
        assert_eq!((def.id, bit), (6016, 2));
        assert_eq!(access.default_value(), Some(Value::Dword(1)));
    }

    #[test]
    fn ranges_and_bools() {
        let s = Schema::standard();
        let q = s.property_by_name("AppPoolQueueLength").unwrap();
        assert_eq!(q.range(), Some((10, 65535)));
        assert!(q.parse_text("9").is_err());
        assert!(q.parse_text("65536").is_err());
        assert_eq!(q.parse_text("1000").unwrap(), Value::Dword(1000));
        let restart = s.property_by_name("PeriodicRestartTime").unwrap();
        assert_eq!(restart.range(), Some((0, 71582)));
        let max_procs = s.property_by_name("MaxProcesses").unwrap();
        assert_eq!(max_procs.range(), Some((1, u32::MAX)));
        assert!(max_procs.parse_text("0").is_err());
        let auto = s.property_by_name("ServerAutoStart").unwrap();
        assert_eq!(auto.parse_text("TRUE").unwrap(), Value::Dword(1));
        assert_eq!(auto.format_text(&Value::Dword(0)), "FALSE");
        assert!(auto.check(&Value::Dword(2)).is_err());
        assert!(auto.parse_text("maybe").is_err());
    }

    #[test]
    fn containment_and_allowed_properties() {
        let s = Schema::standard();
        assert!(s.may_contain("IIsWebService", "IIsWebServer").is_ok());
        assert!(s.may_contain("IIsWebServer", "IIsWebVirtualDir").is_ok());
        assert!(s.may_contain("IIsWebVirtualDir", "IIsWebDirectory").is_ok());
        assert!(s
            .may_contain("IIsApplicationPools", "IIsApplicationPool")
            .is_ok());
        let refused = s
            .may_contain("IIsApplicationPools", "IIsWebServer")
            .unwrap_err();
        assert_eq!(refused, "IIsApplicationPool");
        assert_eq!(
            s.may_contain("IIsWebFile", "IIsWebFile").unwrap_err(),
            "nothing"
        );
        // The generic key type goes where IIsObject is listed.
        assert!(s.may_contain("IIsWebVirtualDir", "IIsConfigObject").is_ok());
        assert!(s
            .may_contain("IIsApplicationPools", "IIsConfigObject")
            .is_err());
        let bindings = s.property_by_name("ServerBindings").unwrap().id;
        assert!(s.property_allowed("IIsWebServer", bindings));
        assert!(!s.property_allowed("IIsWebVirtualDir", bindings));
        assert!(!s.property_allowed("IIsApplicationPool", bindings));
        assert!(s.property_allowed("IIsConfigObject", bindings));
        let pool_id = s.property_by_name("AppPoolId").unwrap().id;
        assert!(s.property_allowed("IIsWebVirtualDir", pool_id));
        assert!(!s.property_allowed("IIsMimeMap", pool_id));
    }

    #[test]
    fn extension() {
        let mut s = (*Schema::standard()).clone();
        let def = PropertyDef::custom(
            70000,
            "IIsWebCustomer",
            DataType::String,
            UserType::SERVER,
            Attributes::INHERIT,
        );
        s.add_property(def.clone(), &["IIsWebServer".into()])
            .unwrap();
        assert!(s.property_allowed("IIsWebServer", 70000));
        assert!(!s.property_allowed("IIsWebVirtualDir", 70000));
        assert!(s.add_property(def.clone(), &[]).is_err(), "duplicate ID");
        let mut other = def.clone();
        other.id = 70001;
        assert!(s.add_property(other, &[]).is_err(), "duplicate name");
        let mut bad = def;
        bad.id = 70002;
        bad.name = "has space".into();
        assert!(s.add_property(bad, &[]).is_err());

        s.add_class(
            "MySiteSettings",
            vec![],
            &["IIsWebServer".into()],
            &["IIsWebCustomer".into()],
        )
        .unwrap();
        assert!(s.may_contain("IIsWebServer", "MySiteSettings").is_ok());
        assert!(s.may_contain("MySiteSettings", "IIsWebServer").is_err());
        assert!(s.property_allowed("MySiteSettings", 70000));
        assert!(!s.property_allowed("MySiteSettings", 1023));
        assert!(s.add_class("MySiteSettings", vec![], &[], &[]).is_err());
        assert!(s
            .add_class("Other", vec![], &["NoSuchClass".into()], &[])
            .is_err());
    }
}

/// One `ServerBindings` entry: `IP:port:host`, the IP and host optional
/// (`:80:`, `10.0.0.1:80:`, `[::1]:8080:`, `:80:www.example.com`).
fn check_binding(entry: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        format!("'{entry}' is not a binding IP:port:host ({why}); for example ':80:' or '127.0.0.1:8080:'")
    };
    let text = entry.trim();
    let rest = if let Some(r) = text.strip_prefix('[') {
        let (ip, rest) = r
            .split_once(']')
            .ok_or_else(|| bad("unclosed IPv6 address"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("bad IPv6 address"))?;
        rest.strip_prefix(':').ok_or_else(|| bad("no port"))?
    } else {
        let (ip, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("no colon: the port needs one before it"))?;
        if !ip.is_empty() {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| bad("bad IP address"))?;
        }
        rest
    };
    let (port, host) = rest
        .split_once(':')
        .ok_or_else(|| bad("no colon after the port"))?;
    match port.trim().parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(bad("the port must be 1 to 65535")),
    }
    if host.contains(|c: char| c.is_whitespace() || matches!(c, '/' | ':' | '[' | ']')) {
        return Err(bad("bad host name"));
    }
    Ok(())
}

#[cfg(test)]
mod meaning_tests {
    use super::*;

    #[test]
    fn bindings_and_paths_are_checked_for_meaning() {
        let schema = Schema::standard();
        let bindings = schema.property(crate::ids::SERVER_BINDINGS).unwrap();
        let ok = |v: &[&str]| {
            bindings.check_meaning(&Value::MultiSz(v.iter().map(|s| s.to_string()).collect()))
        };
        assert!(ok(&[
            ":80:",
            "10.0.0.1:8080:",
            "[::1]:81:",
            ":80:www.example.com",
            ""
        ])
        .is_ok());
        let e = ok(&["8080"]).unwrap_err();
        assert!(e.contains("'8080' is not a binding"), "{e}");
        assert!(ok(&[":0:"]).is_err());
        assert!(ok(&[":80"]).is_err());
        assert!(ok(&["300.1.1.1:80:"]).is_err());
        assert!(ok(&["[::1:80:"]).is_err());
        assert!(ok(&[":80:a b"]).is_err());
        let path = schema.property(crate::ids::PATH).unwrap();
        assert!(path
            .check_meaning(&Value::String("/srv/www".into()))
            .is_ok());
        assert!(path.check_meaning(&Value::String("  ".into())).is_err());
    }
}
