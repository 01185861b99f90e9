//! Writes through the model: PutInstance (the SpawnInstance-then-Put
//! pattern: create the key when it is new, then set the properties given)
//! and DeleteInstance, with the metabase's own validation — the key type
//! must match the class, the parent must be allowed to contain it, every
//! value must fit its property — so a write here has exactly the effect of
//! the equivalent `inetsrv mb` (adsutil) command, and a refused one
//! changes nothing.

use metabase::{Error as MbError, MbPath, Metabase};

use crate::classes::{ClassKind, ClassModel, Source};
use crate::error::{Result, WbemStatus, WmiError};
use crate::path::ObjectPath;
use crate::provider::name_of;

/// A metabase refusal as WMI's error.
pub fn from_metabase(e: MbError) -> WmiError {
    let status = match &e {
        MbError::PathNotFound(_) | MbError::DataNotFound { .. } => WbemStatus::NotFound,
        MbError::KeyExists(_) => WbemStatus::AlreadyExists,
        MbError::InvalidValue { .. } => WbemStatus::TypeMismatch,
        MbError::UnknownProperty(_) => WbemStatus::InvalidProperty,
        MbError::UnknownKeyType(_) => WbemStatus::InvalidClass,
        MbError::InvalidPath { .. } => WbemStatus::InvalidObjectPath,
        MbError::PropertyNotAllowed { .. }
        | MbError::ContainmentViolation { .. }
        | MbError::KeyTypeMismatch { .. }
        | MbError::RootKey(_)
        | MbError::InvalidArgument(_) => WbemStatus::InvalidParameter,
        MbError::Backup(why) if why.starts_with("no backup") => WbemStatus::NotFound,
        _ => WbemStatus::Failed,
    };
    WmiError::new(status, e.to_string())
}

/// `W3SVC/1` → `/LM/W3SVC/1`; `LM` → `/LM`.
pub fn key_path(name: &str) -> Result<MbPath> {
    let trimmed = name.trim().trim_matches('/');
    let text = if trimmed.eq_ignore_ascii_case("LM") {
        "/LM".to_string()
    } else {
        trimmed.to_string()
    };
    MbPath::parse_relaxed(&text).map_err(|e| {
        WmiError::new(
            WbemStatus::InvalidObjectPath,
            format!("'{name}' is not a metabase path: {e}"),
        )
    })
}

/// Creates or updates an instance of `class`. `properties` are names
/// with their values in text form, as `inetsrv mb set` takes them
/// (several values for an array: `ServerBindings` `:80:` `:8080:`).
/// `Name` is required. Returns the instance's relative path.
pub fn put_instance(
    metabase: &Metabase,
    model: &ClassModel,
    class_name: &str,
    properties: &[(String, Vec<String>)],
) -> Result<String> {
    let class = model.class(class_name).ok_or_else(|| {
        WmiError::new(
            WbemStatus::InvalidClass,
            format!("there is no class {class_name} in root/MicrosoftIISv2"),
        )
    })?;
    let Some(key_type) = class
        .key_type
        .clone()
        .filter(|_| class.association.is_none())
    else {
        return Err(WmiError::new(
            WbemStatus::InvalidOperation,
            format!(
                "{} is {} and has no instances of its own",
                class.name,
                match class.kind {
                    ClassKind::Embedded => "an embedded class",
                    _ => "an abstract class",
                }
            ),
        ));
    };
    let name = properties
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Name"))
        .and_then(|(_, v)| v.first())
        .ok_or_else(|| {
            WmiError::new(
                WbemStatus::InvalidParameter,
                format!(
                    "Name, the key of {}, is required (Name=W3SVC/1)",
                    class.name
                ),
            )
        })?;
    let path = key_path(name)?;
    // What to set, checked against the class before anything changes.
    let mut sets: Vec<(String, Vec<String>)> = Vec::new();
    for (prop_name, values) in properties {
        if prop_name.eq_ignore_ascii_case("Name") {
            continue;
        }
        let prop = class.property(prop_name).ok_or_else(|| {
            WmiError::new(
                WbemStatus::InvalidProperty,
                format!("{} has no property {prop_name}", class.name),
            )
        })?;
        if prop.read_only {
            return Err(WmiError::new(
                WbemStatus::InvalidOperation,
                format!(
                    "{}.{} is read-only state; it changes through the element's methods",
                    class.name, prop.name
                ),
            ));
        }
        match prop.source {
            Source::Metabase(_) | Source::Flag { .. } => {
                sets.push((prop.name.clone(), values.clone()))
            }
            Source::Name | Source::Empty | Source::Reference => {
                return Err(WmiError::new(
                    WbemStatus::InvalidOperation,
                    format!("{}.{} is not stored in the metabase", class.name, prop.name),
                ))
            }
        }
    }
    let snapshot = metabase.snapshot();
    let existing = snapshot.find(&path).map(|k| k.key_type().to_string());
    if let Some(found) = &existing {
        if !found.eq_ignore_ascii_case(&key_type) {
            // The Susan example: /LM/W3SVC is not an IIsWebServer.
            return Err(WmiError::new(
                WbemStatus::InvalidParameter,
                format!(
                    "'{}' is a key of type {}; an instance of {} must be a key of type {key_type}",
                    name_of(&path),
                    if found.is_empty() { "(none)" } else { found },
                    class.name
                ),
            ));
        }
    }
    metabase
        .write(|t| {
            if existing.is_none() {
                t.create_key(&path, &key_type)?;
            }
            for (name, values) in &sets {
                t.set_text(&path, name, values)?;
            }
            Ok(())
        })
        .map_err(from_metabase)?;
    let canonical = metabase.snapshot().canonical(&path).unwrap_or(path);
    Ok(ObjectPath::format(
        &class.name,
        "Name",
        &name_of(&canonical),
    ))
}

/// Deletes the key an instance stands for, and everything below it.
pub fn delete_instance(metabase: &Metabase, model: &ClassModel, text: &str) -> Result<()> {
    let snapshot = metabase.snapshot();
    let provider = crate::Provider::new(model, &snapshot);
    let inst = provider.resolve(text)?;
    if inst.path.depth() <= 1 {
        return Err(WmiError::new(
            WbemStatus::InvalidOperation,
            "the computer (LM) cannot be deleted",
        ));
    }
    let path = inst.path.clone();
    metabase
        .write(|t| t.delete_key(&path))
        .map_err(from_metabase)
}
