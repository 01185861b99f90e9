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

/// FastCGI applications: the settings of IIS 6's FastCGI extension
/// (fcgiext.ini), one `IIsFastCgiApplication` key each under
/// `/LM/W3SVC/FastCGI` (an `IIsFastCgiApplications` key).
pub mod fastcgi {
    pub const EXE_PATH: u32 = 66_001;
    pub const ARGUMENTS: u32 = 66_002;
    pub const ENVIRONMENT_VARS: u32 = 66_003;
    pub const MAX_INSTANCES: u32 = 66_004;
    pub const INSTANCE_MAX_REQUESTS: u32 = 66_005;
    pub const REQUEST_TIMEOUT: u32 = 66_006;
    pub const ACTIVITY_TIMEOUT: u32 = 66_007;
    pub const IDLE_TIMEOUT: u32 = 66_008;
    pub const QUEUE_LENGTH: u32 = 66_009;
    pub const RAPID_FAILS_PER_MINUTE: u32 = 66_010;
    pub const RESPONSE_BUFFER_LIMIT: u32 = 66_011;
    pub const STDERR_MODE: u32 = 66_012;
    pub const PROTOCOL: u32 = 66_013;
    /// The key type of one application, and of the key holding them.
    pub const APPLICATION_CLASS: &str = "IIsFastCgiApplication";
    pub const CONTAINER_CLASS: &str = "IIsFastCgiApplications";
    /// Where the applications are.
    pub const CONTAINER_PATH: &str = "/LM/W3SVC/FastCGI";
    /// FastCgiStderrMode's values, as fcgiext.ini's StderrMode.
    pub const STDERR_MODES: [&str; 4] = [
        "ReturnStderrIn500",
        "ReturnGeneric500",
        "IgnoreAndReturn200",
        "TerminateProcess",
    ];
    /// FastCgiProtocol's values: a Unix socket (fcgiext.ini's NamedPipe
    /// is taken as it) or TCP on loopback.
    pub const PROTOCOLS: [&str; 3] = ["Unix", "Tcp", "NamedPipe"];
}

struct Addition {
    def: PropertyDef,
    /// The key types that may carry it.
    classes: &'static [&'static str],
}

/// A FastCGI application setting (not inherited).
fn fastcgi_property(
    id: u32,
    name: &str,
    schema_type: SchemaType,
    default: Option<&str>,
    range: Option<(u32, u32)>,
) -> Addition {
    let mut def = PropertyDef::custom(
        id,
        name,
        schema_type.data_type(),
        UserType::SERVER,
        Attributes::NO_ATTRIBUTES,
    )
    .with_schema_type(schema_type);
    def.default = default.map(str::to_string);
    if let Some((min, max)) = range {
        def.starting_number = Some(min);
        def.ending_number = Some(max);
    }
    Addition {
        def,
        classes: &[fastcgi::APPLICATION_CLASS],
    }
}

fn additions() -> Vec<Addition> {
    use fastcgi::*;
    use SchemaType::{Dword, MultiSz, String};
    let seconds = Some((1, 7 * 24 * 3600));
    let mut list = vec![
        fastcgi_property(EXE_PATH, "FastCgiExePath", String, None, None),
        fastcgi_property(ARGUMENTS, "FastCgiArguments", String, Some(""), None),
        fastcgi_property(
            ENVIRONMENT_VARS,
            "FastCgiEnvironmentVars",
            MultiSz,
            None,
            None,
        ),
        fastcgi_property(
            MAX_INSTANCES,
            "FastCgiMaxInstances",
            Dword,
            Some("4"),
            Some((1, 10_000)),
        ),
        fastcgi_property(
            INSTANCE_MAX_REQUESTS,
            "FastCgiInstanceMaxRequests",
            Dword,
            Some("1000"),
            Some((1, 10_000_000)),
        ),
        fastcgi_property(
            REQUEST_TIMEOUT,
            "FastCgiRequestTimeout",
            Dword,
            Some("90"),
            seconds,
        ),
        fastcgi_property(
            ACTIVITY_TIMEOUT,
            "FastCgiActivityTimeout",
            Dword,
            Some("30"),
            seconds,
        ),
        fastcgi_property(
            IDLE_TIMEOUT,
            "FastCgiIdleTimeout",
            Dword,
            Some("300"),
            seconds,
        ),
        fastcgi_property(
            QUEUE_LENGTH,
            "FastCgiQueueLength",
            Dword,
            Some("1000"),
            Some((0, 1_000_000)),
        ),
        fastcgi_property(
            RAPID_FAILS_PER_MINUTE,
            "FastCgiRapidFailsPerMinute",
            Dword,
            Some("10"),
            Some((0, 1_000_000)),
        ),
        fastcgi_property(
            RESPONSE_BUFFER_LIMIT,
            "FastCgiResponseBufferLimit",
            Dword,
            Some("4194304"),
            None,
        ),
        fastcgi_property(
            STDERR_MODE,
            "FastCgiStderrMode",
            String,
            Some("ReturnStderrIn500"),
            None,
        ),
        fastcgi_property(PROTOCOL, "FastCgiProtocol", String, Some("Unix"), None),
    ];
    list.insert(
        0,
        Addition {
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
        },
    );
    list
}

/// Key types inetsrv adds: (name, the types it contains, the types that
/// may contain it).
const CLASS_ADDITIONS: &[(&str, &[&str], &[&str])] = &[
    (
        fastcgi::CONTAINER_CLASS,
        &[fastcgi::APPLICATION_CLASS],
        &["IIsWebService"],
    ),
    (fastcgi::APPLICATION_CLASS, &[], &[]),
];

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
        for (name, contains, under) in CLASS_ADDITIONS {
            if self.class(name).is_some() {
                continue;
            }
            let under: Vec<std::string::String> = under
                .iter()
                .filter(|c| self.class(c).is_some())
                .map(|c| c.to_string())
                .collect();
            let contains = contains.iter().map(|c| c.to_string()).collect();
            if let Err(e) = self.add_class(name, contains, &under, &[]) {
                conflicts.push(format!("key type {name} could not be added: {e}"));
            }
        }
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
    fn fastcgi_applications_are_key_types_with_validated_settings() {
        let schema = Schema::standard();
        assert!(schema
            .may_contain("IIsWebService", fastcgi::CONTAINER_CLASS)
            .is_ok());
        assert!(schema
            .may_contain(fastcgi::CONTAINER_CLASS, fastcgi::APPLICATION_CLASS)
            .is_ok());
        assert!(schema
            .may_contain("IIsWebServer", fastcgi::APPLICATION_CLASS)
            .is_err());
        for name in [
            "FastCgiExePath",
            "FastCgiMaxInstances",
            "FastCgiStderrMode",
            "FastCgiProtocol",
        ] {
            let def = schema.property_by_name(name).unwrap();
            assert!(
                schema.property_allowed(fastcgi::APPLICATION_CLASS, def.id),
                "{name}"
            );
            assert!(
                !schema.property_allowed("IIsWebVirtualDir", def.id),
                "{name}"
            );
        }
        let max = schema.property(fastcgi::MAX_INSTANCES).unwrap();
        assert_eq!(max.default_value(), Some(crate::Value::Dword(4)));
        assert!(max.parse_text("0").is_err());
        let mode = schema.property(fastcgi::STDERR_MODE).unwrap();
        assert!(mode
            .check_meaning(&crate::Value::String("TerminateProcess".into()))
            .is_ok());
        assert!(mode
            .check_meaning(&crate::Value::String("Loud".into()))
            .is_err());
        let exe = schema.property(fastcgi::EXE_PATH).unwrap();
        assert!(exe
            .check_meaning(&crate::Value::String("C:\\PHP\\php-cgi.exe".into()))
            .is_err());
        let env = schema.property(fastcgi::ENVIRONMENT_VARS).unwrap();
        assert!(env
            .check_meaning(&crate::Value::MultiSz(vec!["PHPRC=/etc/php".into()]))
            .is_ok());
        assert!(env
            .check_meaning(&crate::Value::MultiSz(vec!["PHPRC".into()]))
            .is_err());
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
