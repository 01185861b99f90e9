//! The classes of `root/MicrosoftIISv2`, generated from the metabase
//! schema as the IIS 6 provider generates them: every key type `K` gives
//! an element class `K` (derived from CIM_LogicalElement: the key's state,
//! read-only) and a setting class `KSetting` (derived from IIsSetting and
//! CIM_Setting: every other property the key type may carry, and one
//! boolean per flag of a bit-field property, such as AccessRead of
//! AccessFlags). Structured values are embedded objects of their own
//! classes. Schema extensions appear as soon as the schema has them.

use std::collections::HashMap;

use metabase::schema::KEY_TYPE_ID;
use metabase::{Schema, SchemaType};

use crate::value::{CimType, PropType};

/// What a class is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassKind {
    /// A base class with no instances of its own.
    Abstract,
    /// State and methods of a metabase key (CIM_ManagedSystemElement).
    Element,
    /// The writable properties of a metabase key (CIM_Setting).
    Setting,
    /// The class of a structured value.
    Embedded,
    /// An association: two references (CIM_ElementSetting, CIM_Component).
    Association,
    /// An intrinsic event class (`__InstanceModificationEvent`, …).
    Event,
    /// IIsBackup: the metabase backups, an instance each.
    Backup,
}

/// Which relationship an association class models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssocKind {
    /// A key's element and its setting (roles Element, Setting).
    ElementSetting,
    /// A key and a key directly below it (roles GroupComponent,
    /// PartComponent), as the schema's containment allows.
    Component,
}

/// Where a property's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The key's path below /LM (`W3SVC/1`), the key property.
    Name,
    /// A metabase property by ID.
    Metabase(u32),
    /// One bit of a bit-field metabase property.
    Flag { id: u32, mask: u32 },
    /// Not backed by the metabase (CIM's Caption, Description, …): NULL.
    Empty,
    /// One end of an association: the object path of that instance.
    Reference,
}

#[derive(Clone, Debug)]
pub struct WmiProperty {
    pub name: String,
    pub ty: PropType,
    pub key: bool,
    pub read_only: bool,
    pub source: Source,
    /// The class that defines it (a base class, for inherited ones).
    pub origin: String,
}

#[derive(Clone, Debug)]
pub struct WmiClass {
    pub name: String,
    pub superclass: Option<String>,
    pub kind: ClassKind,
    /// The metabase key type whose keys are the instances.
    pub key_type: Option<String>,
    /// Own and inherited properties, inherited first.
    pub properties: Vec<WmiProperty>,
    /// For association classes: what they relate, and the class at each
    /// end (Element/GroupComponent first, Setting/PartComponent second).
    pub association: Option<(AssocKind, String, String)>,
    index: HashMap<String, usize>,
}

impl WmiClass {
    fn new(name: &str, superclass: Option<&WmiClass>, kind: ClassKind) -> WmiClass {
        let mut class = WmiClass {
            name: name.to_string(),
            superclass: superclass.map(|s| s.name.clone()),
            kind,
            key_type: None,
            properties: Vec::new(),
            association: None,
            index: HashMap::new(),
        };
        if let Some(parent) = superclass {
            for p in &parent.properties {
                class.push(p.clone());
            }
        }
        class
    }

    fn push(&mut self, property: WmiProperty) {
        let lower = property.name.to_ascii_lowercase();
        match self.index.get(&lower) {
            // A subclass redefines an inherited property (Name as a key).
            Some(&i) => self.properties[i] = property,
            None => {
                self.index.insert(lower, self.properties.len());
                self.properties.push(property);
            }
        }
    }

    fn add(&mut self, name: &str, ty: PropType, source: Source) {
        let origin = self.name.clone();
        self.push(WmiProperty {
            name: name.to_string(),
            ty,
            // An instance is named by its key, an association by its ends.
            key: matches!(source, Source::Name | Source::Reference),
            read_only: false,
            source,
            origin,
        });
    }

    /// A property by name, ignoring case as WMI does.
    pub fn property(&self, name: &str) -> Option<&WmiProperty> {
        if let Some(&i) = self.index.get(name) {
            return Some(&self.properties[i]);
        }
        self.index
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.properties[i])
    }

    pub fn key_property(&self) -> Option<&WmiProperty> {
        self.properties.iter().find(|p| p.key)
    }
}

/// Metabase properties the provider shows on element classes only, as
/// read-only state; everything else a key type carries is a setting.
const ELEMENT_PROPERTIES: &[&str] = &[
    "AppIsolated",
    "AppPackageID",
    "AppPackageName",
    "AppRoot",
    "ServerState",
    "AppPoolState",
    "Win32Error",
    "SSLCertHash",
    "SSLStoreName",
];

/// A structured metabase property, its embedded class, and that class's
/// properties.
pub type EmbeddedDef = (
    &'static str,
    &'static str,
    &'static [(&'static str, CimType)],
);

/// Structured metabase values and the embedded class each becomes.
pub const EMBEDDED: &[EmbeddedDef] = &[
    (
        "ServerBindings",
        "ServerBinding",
        &[
            ("Hostname", CimType::String),
            ("IP", CimType::String),
            ("Port", CimType::String),
        ],
    ),
    (
        "SecureBindings",
        "SecureBinding",
        &[("IP", CimType::String), ("Port", CimType::String)],
    ),
    (
        "ScriptMaps",
        "ScriptMap",
        &[
            ("Extensions", CimType::String),
            ("Flags", CimType::UInt32),
            ("IncludedVerbs", CimType::String),
            ("ScriptProcessor", CimType::String),
        ],
    ),
    (
        "HttpErrors",
        "HttpError",
        &[
            ("HandlerLocation", CimType::String),
            ("HandlerType", CimType::String),
            ("HttpErrorCode", CimType::String),
            ("HttpErrorSubcode", CimType::String),
        ],
    ),
    (
        "HttpCustomHeaders",
        "HttpCustomHeader",
        &[("Keyname", CimType::String), ("Value", CimType::String)],
    ),
    (
        "MimeMap",
        "MimeMap",
        &[
            ("Extension", CimType::String),
            ("MimeType", CimType::String),
        ],
    ),
    (
        "IPSecurity",
        "IPSecuritySetting",
        &[
            ("GrantByDefault", CimType::Boolean),
            ("IPDeny", CimType::String),
            ("IPGrant", CimType::String),
        ],
    ),
];

/// The embedded class a metabase property's values become, if any.
pub fn embedded_class_of(property: &str) -> Option<&'static str> {
    EMBEDDED
        .iter()
        .find(|(p, _, _)| p.eq_ignore_ascii_case(property))
        .map(|(_, c, _)| *c)
}

/// Every class of the namespace.
#[derive(Clone, Debug)]
pub struct ClassModel {
    classes: Vec<WmiClass>,
    index: HashMap<String, usize>,
}

/// The class whose instances are the metabase backups.
pub const BACKUP_CLASS: &str = "IIsBackup";

/// The key type of a setting class, or of an element class.
pub const SETTING_SUFFIX: &str = "Setting";

/// `First_Second`, relating instances of `first` and `second`.
fn association(
    base: &WmiClass,
    kind: AssocKind,
    first: &str,
    second: &str,
    roles: [&str; 2],
) -> WmiClass {
    let mut c = WmiClass::new(
        &format!("{first}_{second}"),
        Some(base),
        ClassKind::Association,
    );
    for (role, target) in roles.iter().zip([first, second]) {
        c.add(
            role,
            PropType::scalar(CimType::Reference(target.to_string())),
            Source::Reference,
        );
    }
    c.association = Some((kind, first.to_string(), second.to_string()));
    c
}

impl ClassModel {
    /// Generates the classes for a metabase schema.
    pub fn from_schema(schema: &Schema) -> ClassModel {
        let mut model = ClassModel {
            classes: Vec::new(),
            index: HashMap::new(),
        };
        let string = || PropType::scalar(CimType::String);

        let mut mse = WmiClass::new("CIM_ManagedSystemElement", None, ClassKind::Abstract);
        mse.add("Caption", string(), Source::Empty);
        mse.add("Description", string(), Source::Empty);
        mse.add("InstallDate", string(), Source::Empty);
        mse.add("Status", string(), Source::Empty);
        mse.add("Name", string(), Source::Empty);
        let logical = WmiClass::new("CIM_LogicalElement", Some(&mse), ClassKind::Abstract);
        let mut object = WmiClass::new("IIsObject", Some(&logical), ClassKind::Abstract);
        object.add("Name", string(), Source::Name);
        let mut setting = WmiClass::new("CIM_Setting", None, ClassKind::Abstract);
        setting.add("Caption", string(), Source::Empty);
        setting.add("Description", string(), Source::Empty);
        setting.add("SettingID", string(), Source::Empty);
        let mut iis_setting = WmiClass::new("IIsSetting", Some(&setting), ClassKind::Abstract);
        iis_setting.add("Name", string(), Source::Name);

        let mut element_setting = WmiClass::new("CIM_ElementSetting", None, ClassKind::Abstract);
        let mut component = WmiClass::new("CIM_Component", None, ClassKind::Abstract);
        for (c, roles) in [
            (&mut element_setting, ["Element", "Setting"]),
            (&mut component, ["GroupComponent", "PartComponent"]),
        ] {
            for role in roles {
                c.add(
                    role,
                    PropType::scalar(CimType::Reference(String::new())),
                    Source::Reference,
                );
            }
        }
        let mut associations = Vec::new();
        let generated_types: Vec<&str> = schema
            .classes()
            .iter()
            .filter(|c| !c.is_hidden() && !c.name.eq_ignore_ascii_case("IIsConfigObject"))
            .map(|c| c.name.as_str())
            .collect();
        for class in schema.classes() {
            if !generated_types.contains(&class.name.as_str()) {
                continue;
            }
            let setting_name = format!("{}{SETTING_SUFFIX}", class.name);
            associations.push(association(
                &element_setting,
                AssocKind::ElementSetting,
                &class.name,
                &setting_name,
                ["Element", "Setting"],
            ));
            for child in class.container_class_list.iter().flatten() {
                if let Some(child) = generated_types
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(child))
                {
                    associations.push(association(
                        &component,
                        AssocKind::Component,
                        &class.name,
                        child,
                        ["GroupComponent", "PartComponent"],
                    ));
                }
            }
        }
        let mut generated = Vec::new();
        for class in schema.classes() {
            if class.is_hidden() || class.name.eq_ignore_ascii_case("IIsConfigObject") {
                continue;
            }
            let mut element = WmiClass::new(&class.name, Some(&object), ClassKind::Element);
            element.key_type = Some(class.name.clone());
            let mut settings = WmiClass::new(
                &format!("{}{SETTING_SUFFIX}", class.name),
                Some(&iis_setting),
                ClassKind::Setting,
            );
            settings.key_type = Some(class.name.clone());
            for def in schema.class_properties(&class.name) {
                if def.id == KEY_TYPE_ID {
                    continue;
                }
                let is_element = ELEMENT_PROPERTIES
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(&def.name));
                let ty = match embedded_class_of(&def.name) {
                    Some(c) => PropType {
                        base: CimType::Object(c.to_string()),
                        array: def.name != "IPSecurity",
                    },
                    None => match def.schema_type {
                        SchemaType::Bool => PropType::scalar(CimType::Boolean),
                        SchemaType::Dword => PropType::scalar(CimType::UInt32),
                        SchemaType::String | SchemaType::ExpandSz => string(),
                        SchemaType::MultiSz | SchemaType::MimeMap => {
                            PropType::array(CimType::String)
                        }
                        SchemaType::Binary | SchemaType::NtAcl | SchemaType::IpSecList => {
                            PropType::array(CimType::UInt8)
                        }
                    },
                };
                let target = if is_element {
                    &mut element
                } else {
                    &mut settings
                };
                target.add(&def.name, ty, Source::Metabase(def.id));
                if is_element {
                    if let Some(p) = target.properties.last_mut() {
                        p.read_only = true;
                    }
                }
                if !is_element && def.schema_type == SchemaType::Dword {
                    for flag in &def.flags {
                        if settings.property(&flag.name).is_none() {
                            settings.add(
                                &flag.name,
                                PropType::scalar(CimType::Boolean),
                                Source::Flag {
                                    id: def.id,
                                    mask: flag.value,
                                },
                            );
                        }
                    }
                }
            }
            generated.push(element);
            generated.push(settings);
        }
        for c in [
            mse,
            logical,
            object,
            setting,
            iis_setting,
            element_setting,
            component,
        ] {
            model.insert(c);
        }
        for c in associations {
            model.insert(c);
        }
        // The backups: creating an instance makes one, deleting it deletes it.
        let mut backup = WmiClass::new(BACKUP_CLASS, None, ClassKind::Backup);
        for (name, ty, key) in [
            ("Location", CimType::String, true),
            ("Version", CimType::UInt32, true),
            ("DateTime", CimType::String, false),
            ("PasswordProtected", CimType::Boolean, false),
        ] {
            backup.add(name, PropType::scalar(ty), Source::Empty);
            if let Some(p) = backup.properties.last_mut() {
                p.key = key;
                p.read_only = !key;
            }
        }
        model.insert(backup);
        // Intrinsic events ([MS-WMI] 2.2.1.2), for `wmi watch`.
        let mut operation = WmiClass::new("__InstanceOperationEvent", None, ClassKind::Event);
        operation.add(
            "TargetInstance",
            PropType::scalar(CimType::Object(String::new())),
            Source::Empty,
        );
        let creation = WmiClass::new(
            "__InstanceCreationEvent",
            Some(&operation),
            ClassKind::Event,
        );
        let deletion = WmiClass::new(
            "__InstanceDeletionEvent",
            Some(&operation),
            ClassKind::Event,
        );
        let mut modification = WmiClass::new(
            "__InstanceModificationEvent",
            Some(&operation),
            ClassKind::Event,
        );
        modification.add(
            "PreviousInstance",
            PropType::scalar(CimType::Object(String::new())),
            Source::Empty,
        );
        for c in [operation, creation, deletion, modification] {
            model.insert(c);
        }
        for (_, name, props) in EMBEDDED {
            let mut c = WmiClass::new(name, None, ClassKind::Embedded);
            for (p, t) in *props {
                let ty = if *name == "IPSecuritySetting" && *p != "GrantByDefault" {
                    PropType::array(t.clone())
                } else {
                    PropType::scalar(t.clone())
                };
                c.add(p, ty, Source::Empty);
            }
            model.insert(c);
        }
        for c in generated {
            model.insert(c);
        }
        model
    }

    fn insert(&mut self, class: WmiClass) {
        let lower = class.name.to_ascii_lowercase();
        if self.index.contains_key(&lower) {
            return;
        }
        self.index.insert(lower, self.classes.len());
        self.classes.push(class);
    }

    pub fn classes(&self) -> &[WmiClass] {
        &self.classes
    }

    /// A class by name, ignoring case. The IIS 5.1 provider's names
    /// (`MicrosoftIIS_WebServerSetting`, in the WMI seed's examples) are
    /// accepted for their IIS 6 classes (`IIsWebServerSetting`).
    pub fn class(&self, name: &str) -> Option<&WmiClass> {
        let lower = name.to_ascii_lowercase();
        if let Some(&i) = self.index.get(&lower) {
            return Some(&self.classes[i]);
        }
        let rest = lower.strip_prefix("microsoftiis_")?;
        self.index
            .get(&format!("iis{rest}"))
            .map(|&i| &self.classes[i])
    }

    /// Whether `class` is `ancestor` or derives from it.
    pub fn is_a(&self, class: &str, ancestor: &str) -> bool {
        let mut current = self.class(class);
        while let Some(c) = current {
            if c.name.eq_ignore_ascii_case(ancestor) {
                return true;
            }
            current = c.superclass.as_deref().and_then(|s| self.class(s));
        }
        false
    }

    /// The class and every class derived from it.
    pub fn descendants(&self, class: &str) -> Vec<&WmiClass> {
        self.classes
            .iter()
            .filter(|c| self.is_a(&c.name, class))
            .collect()
    }

    /// The chain of superclasses, nearest first.
    pub fn derivation(&self, class: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = self.class(class).and_then(|c| c.superclass.clone());
        while let Some(name) = current {
            current = self.class(&name).and_then(|c| c.superclass.clone());
            out.push(name);
        }
        out
    }
}
