//! Properties inetsrv adds to IIS 6's schema, for behaviour IIS never had
//! on Windows (symbolic links, for one). They are defined here rather than
//! in the embedded MBSchema.xml, which stays IIS's own catalog, and are
//! added both to the shipped schema and to every schema read from disk: a
//! state directory made by an older inetsrv (or a schema copied from IIS)
//! gains them when it is opened, and its MBSchema.xml is rewritten with
//! them at the next save. A schema that already uses one of their IDs or
//! names for something else is left as it is, and the conflict reported.

use std::ops::RangeInclusive;

use crate::value::{Attributes, UserType};

use super::{PropertyDef, Schema, SchemaType};

/// IDs reserved for inetsrv's own properties: above the range IIS reserves
/// for itself (to 0xFFFF) and below the IDs given to properties an
/// administrator adds (70000 and up).
pub const PRODUCT_IDS: RangeInclusive<u32> = 66_000..=66_999;

/// AllowSymlinksOutsideRoot (BOOL, inherited): whether symbolic links in a
/// virtual directory's content may lead out of its Path.
pub const ALLOW_SYMLINKS_OUTSIDE_ROOT: u32 = 66_000;

struct Addition {
    def: PropertyDef,
    /// The key types that may carry it.
    classes: &'static [&'static str],
}

fn additions() -> Vec<Addition> {
    vec![Addition {
        def: PropertyDef {
            default: Some("FALSE".into()),
            ..PropertyDef::custom(
                ALLOW_SYMLINKS_OUTSIDE_ROOT,
                "AllowSymlinksOutsideRoot",
                crate::value::DataType::Dword,
                UserType::FILE,
                Attributes::INHERIT,
            )
        }
        .with_schema_type(SchemaType::Bool),
        // It is read where a Path is set: a virtual directory (a site's
        // ROOT is one), or above it to pass down.
        classes: &["IIsWebService", "IIsWebServer", "IIsWebVirtualDir"],
    }]
}

impl PropertyDef {
    fn with_schema_type(mut self, schema_type: SchemaType) -> PropertyDef {
        self.schema_type = schema_type;
        self
    }
}

impl Schema {
    /// Adds inetsrv's own properties this schema lacks. Returns one line
    /// per addition that could not be made (an ID or name already taken).
    pub fn add_product_properties(&mut self) -> Vec<String> {
        let mut conflicts = Vec::new();
        for Addition { def, classes } in additions() {
            debug_assert!(PRODUCT_IDS.contains(&def.id));
            match (self.property(def.id), self.property_by_name(&def.name)) {
                (Some(same), _) if same.name.eq_ignore_ascii_case(&def.name) => continue,
                (Some(other), _) => {
                    conflicts.push(format!(
                        "property ID {} is {} in this schema, so inetsrv's {} is not available",
                        def.id, other.name, def.name
                    ));
                    continue;
                }
                (None, Some(other)) => {
                    conflicts.push(format!(
                        "this schema defines {} with ID {}, not inetsrv's {}; it is used as defined",
                        other.name, other.id, def.id
                    ));
                    continue;
                }
                (None, None) => {}
            }
            let present: Vec<String> = classes
                .iter()
                .filter(|c| self.class(c).is_some())
                .map(|c| c.to_string())
                .collect();
            let name = def.name.clone();
            if let Err(e) = self.add_property(def, &present) {
                conflicts.push(format!("{name} could not be added: {e}"));
            }
        }
        conflicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{parse_schema, write_schema};

    #[test]
    fn the_shipped_schema_has_them_on_their_classes_only() {
        let schema = Schema::standard();
        let def = schema.property_by_name("AllowSymlinksOutsideRoot").unwrap();
        assert_eq!(def.id, ALLOW_SYMLINKS_OUTSIDE_ROOT);
        assert_eq!(def.schema_type, SchemaType::Bool);
        assert!(def.attributes.contains(Attributes::INHERIT));
        assert!(schema.property_allowed("IIsWebVirtualDir", def.id));
        assert!(schema.property_allowed("IIsWebServer", def.id));
        assert!(!schema.property_allowed("IIsWebDirectory", def.id));
        assert!(!schema.property_allowed("IIsWebFile", def.id));
        assert_eq!(def.default_value(), Some(crate::Value::Dword(0)));
    }

    #[test]
    fn an_older_schema_gains_them_and_writes_them_back() {
        // A schema as an older inetsrv wrote it: IIS's catalog alone.
        let older = parse_schema(super::super::EMBEDDED_SCHEMA, "older").unwrap();
        assert!(older.property(ALLOW_SYMLINKS_OUTSIDE_ROOT).is_none());
        let mut upgraded = older.clone();
        assert!(upgraded.add_product_properties().is_empty());
        assert!(upgraded.property_allowed("IIsWebVirtualDir", ALLOW_SYMLINKS_OUTSIDE_ROOT));
        let again = parse_schema(&write_schema(&upgraded), "written").unwrap();
        assert_eq!(
            again.property(ALLOW_SYMLINKS_OUTSIDE_ROOT).unwrap().name,
            "AllowSymlinksOutsideRoot"
        );
        assert!(again.property_allowed("IIsWebVirtualDir", ALLOW_SYMLINKS_OUTSIDE_ROOT));
        // Adding twice changes nothing.
        let mut twice = again.clone();
        assert!(twice.add_product_properties().is_empty());
        assert_eq!(write_schema(&twice), write_schema(&again));
    }

    #[test]
    fn an_id_or_name_taken_by_the_administrator_is_kept_and_reported() {
        let base = parse_schema(super::super::EMBEDDED_SCHEMA, "base").unwrap();
        let mut taken_id = base.clone();
        taken_id
            .add_property(
                PropertyDef::custom(
                    ALLOW_SYMLINKS_OUTSIDE_ROOT,
                    "SiteOwner",
                    crate::value::DataType::String,
                    UserType::SERVER,
                    Attributes::NO_ATTRIBUTES,
                ),
                &[],
            )
            .unwrap();
        let conflicts = taken_id.add_product_properties();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert!(conflicts[0].contains("SiteOwner"), "{conflicts:?}");
        assert_eq!(
            taken_id.property(ALLOW_SYMLINKS_OUTSIDE_ROOT).unwrap().name,
            "SiteOwner"
        );

        let mut taken_name = base.clone();
        taken_name
            .add_property(
                PropertyDef::custom(
                    70_001,
                    "AllowSymlinksOutsideRoot",
                    crate::value::DataType::Dword,
                    UserType::FILE,
                    Attributes::INHERIT,
                ),
                &[],
            )
            .unwrap();
        let conflicts = taken_name.add_product_properties();
        assert!(conflicts[0].contains("70001"), "{conflicts:?}");
        assert!(taken_name.property(ALLOW_SYMLINKS_OUTSIDE_ROOT).is_none());
    }
}
