//! Schema extension through the model ("Schema Extensibility" in the WMI
//! seed): a new property on a class, or a new class, is written to the
//! metabase schema — the key type behind the class gains the property, or
//! a new key type appears — with the metabase's own validation, and saved
//! to MBSchema.xml. The model is generated from that schema, so the new
//! property or classes (element and setting) exist at once, for this
//! provider and for every other client of the metabase.

use metabase::{Attributes, DataType, Metabase, PropertyDef, SchemaType, UserType};

use crate::classes::{ClassModel, SETTING_SUFFIX};
use crate::error::{Result, WbemStatus, WmiError};
use crate::write::from_metabase;

/// The first ID given to properties created without one: above IIS's own.
pub const FIRST_USER_ID: u32 = 70_000;

fn key_type_of(model: &ClassModel, class: &str) -> Result<String> {
    let c = model.class(class).ok_or_else(|| {
        WmiError::new(
            WbemStatus::InvalidClass,
            format!("there is no class {class}"),
        )
    })?;
    match (&c.key_type, &c.association) {
        (Some(k), None) => Ok(k.clone()),
        _ => Err(WmiError::new(
            WbemStatus::InvalidOperation,
            format!(
                "{} is not an element or setting class of a metabase key type",
                c.name
            ),
        )),
    }
}

/// Adds property `name` of CIM type `cim_type` (boolean, uint32, string,
/// string[], uint8[]) to `class` — that is, to its key type, so both its
/// setting class and the metabase carry it. Returns the property's ID.
pub fn add_property(
    metabase: &Metabase,
    model: &ClassModel,
    class: &str,
    name: &str,
    cim_type: &str,
    id: Option<u32>,
    inherit: bool,
) -> Result<u32> {
    let key_type = key_type_of(model, class)?;
    let schema_type = match cim_type.to_ascii_lowercase().as_str() {
        "boolean" => SchemaType::Bool,
        "uint32" | "sint32" => SchemaType::Dword,
        "string" => SchemaType::String,
        "string[]" => SchemaType::MultiSz,
        "uint8[]" => SchemaType::Binary,
        other => {
            return Err(WmiError::new(
                WbemStatus::TypeMismatch,
                format!("'{other}' is not a type a metabase property can have (boolean, uint32, string, string[], uint8[])"),
            ))
        }
    };
    let snapshot = metabase.snapshot();
    let id = match id {
        Some(id) => id,
        None => snapshot
            .schema()
            .properties()
            .map(|p| p.id + 1)
            .filter(|n| *n > FIRST_USER_ID)
            .max()
            .unwrap_or(FIRST_USER_ID),
    };
    let mut def = PropertyDef::custom(
        id,
        name,
        match schema_type {
            SchemaType::Bool => DataType::Dword,
            other => other.data_type(),
        },
        UserType::SERVER,
        if inherit {
            Attributes::INHERIT
        } else {
            Attributes::NO_ATTRIBUTES
        },
    );
    def.schema_type = schema_type;
    metabase
        .write(|t| t.extend_schema(|s| s.add_property(def, std::slice::from_ref(&key_type))))
        .map_err(from_metabase)?;
    Ok(id)
}

/// Adds class `name`: a new key type allowed under the key types of the
/// `under` classes, carrying `properties` (existing ones). Its element
/// class is `name`, its setting class `nameSetting`.
pub fn add_class(
    metabase: &Metabase,
    model: &ClassModel,
    name: &str,
    under: &[String],
    properties: &[String],
) -> Result<()> {
    if model.class(name).is_some() || model.class(&format!("{name}{SETTING_SUFFIX}")).is_some() {
        return Err(WmiError::new(
            WbemStatus::AlreadyExists,
            format!("a class {name} (or {name}{SETTING_SUFFIX}) already exists"),
        ));
    }
    if under.is_empty() {
        return Err(WmiError::new(
            WbemStatus::InvalidParameter,
            "say where its instances live: --under IIsWebServer (a class whose keys may contain it)",
        ));
    }
    let parents = under
        .iter()
        .map(|c| key_type_of(model, c))
        .collect::<Result<Vec<_>>>()?;
    metabase
        .write(|t| t.extend_schema(|s| s.add_class(name, Vec::new(), &parents, properties)))
        .map_err(from_metabase)
}
