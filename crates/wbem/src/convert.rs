//! The provider's classes and instances as [MS-WMIO] objects: the CIM
//! types, the qualifiers Windows puts on IIS's classes (CIMTYPE, key,
//! read, write, dynamic, provider), derivation lists and the origin of
//! every inherited property.

use std::collections::HashMap;
use std::sync::Arc;

use wmi::classes::{ClassKind, Source};
use wmi::value::{CimType as WmiType, EmbeddedObject, PropType};
use wmi::{ClassModel, WmiClass, WmiValue};
use wmio::{
    flavor, Body, CimType, ClassDef, Instance, Method, Object, Property, Qualifier, Slot, Value,
};

/// The namespace the provider serves, as objects are decorated with it.
pub const IIS_NAMESPACE: &str = "root\\MicrosoftIISv2";
/// The provider IIS 6 registered for the namespace's dynamic classes.
pub const PROVIDER: &str = "IIS__PROVIDER";

/// A property's CIM type on the wire.
pub fn cim_type(ty: &PropType) -> CimType {
    let base = match ty.base {
        WmiType::Boolean => CimType::BOOLEAN,
        WmiType::UInt32 => CimType::UINT32,
        WmiType::String => CimType::STRING,
        WmiType::UInt8 => CimType::UINT8,
        WmiType::Object(_) => CimType::OBJECT,
        WmiType::Reference(_) => CimType::REFERENCE,
    };
    if ty.array {
        CimType::array_of(base)
    } else {
        base
    }
}

/// The CIMTYPE qualifier's value (MS-WMIO 2.3.1, 2.3.2).
fn cimtype_name(ty: &PropType) -> String {
    match &ty.base {
        WmiType::Object(class) if class.is_empty() => "object".to_string(),
        WmiType::Object(class) => format!("object:{class}"),
        WmiType::Reference(class) if class.is_empty() => "ref:object".to_string(),
        WmiType::Reference(class) => format!("ref:{class}"),
        _ => cim_type(ty).name().to_string(),
    }
}

fn qualifier(name: &str, flavor: u8, value: Value) -> Qualifier {
    Qualifier::new(name, flavor, value)
}

/// The class's own qualifiers.
fn class_qualifiers(class: &WmiClass) -> Vec<Qualifier> {
    let restricted = 0;
    let mut out = Vec::new();
    match class.kind {
        ClassKind::Abstract => out.push(qualifier("abstract", restricted, Value::Boolean(true))),
        ClassKind::Element | ClassKind::Setting | ClassKind::Backup => {
            out.push(qualifier("dynamic", restricted, Value::Boolean(true)));
            out.push(qualifier(
                "provider",
                restricted,
                Value::String(PROVIDER.into()),
            ));
        }
        ClassKind::Association => {
            out.push(qualifier(
                "Association",
                flavor::PROPAGATE_TO_DERIVED_CLASS | flavor::PROPAGATE_TO_INSTANCE,
                Value::Boolean(true),
            ));
            out.push(qualifier("dynamic", restricted, Value::Boolean(true)));
            out.push(qualifier(
                "provider",
                restricted,
                Value::String(PROVIDER.into()),
            ));
        }
        ClassKind::Embedded | ClassKind::Event => {}
    }
    out
}

/// A class of the model as a ClassDef: derivation list, qualifiers, and
/// its properties in declaration order (inherited ones first).
pub fn class_def(model: &ClassModel, class: &WmiClass) -> ClassDef {
    let derivation = model.derivation(&class.name);
    let properties = class
        .properties
        .iter()
        .map(|p| {
            let inherited = !p.origin.eq_ignore_ascii_case(&class.name);
            let origin = derivation
                .iter()
                .position(|d| d.eq_ignore_ascii_case(&p.origin))
                .unwrap_or(derivation.len()) as u32;
            let from_parent = if inherited {
                flavor::ORIGIN_PROPAGATED
            } else {
                0
            };
            let propagated = flavor::PROPAGATE_TO_INSTANCE | flavor::PROPAGATE_TO_DERIVED_CLASS;
            let mut qualifiers = vec![qualifier(
                "CIMTYPE",
                propagated | from_parent,
                Value::String(cimtype_name(&p.ty)),
            )];
            if p.key {
                qualifiers.push(qualifier(
                    "key",
                    propagated | flavor::NOT_OVERRIDABLE | from_parent,
                    Value::Boolean(true),
                ));
            }
            qualifiers.push(qualifier("read", from_parent, Value::Boolean(true)));
            // Writable: what a Setting class stores in the metabase.
            let stored = matches!(p.source, Source::Metabase(_) | Source::Flag { .. });
            if !p.read_only && stored && class.kind == ClassKind::Setting {
                qualifiers.push(qualifier("write", from_parent, Value::Boolean(true)));
            }
            Property {
                name: p.name.clone(),
                cim_type: cim_type(&p.ty),
                inherited,
                origin,
                qualifiers,
                default: None,
            }
        })
        .collect();
    let methods = wmi::methods::methods_of(model, &class.name)
        .into_iter()
        .map(|name| method(name, derivation.len() as u32))
        .collect();
    ClassDef {
        name: Some(class.name.clone()),
        derivation,
        qualifiers: class_qualifiers(class),
        properties,
        methods,
    }
}

/// Named, typed parameters.
type Params = Vec<(&'static str, PropType)>;

/// The parameters of the provider's methods, as IIS 6 declared them: the
/// in-parameters, then the out-parameters (ReturnValue first).
fn signature(method: &str) -> (Params, Params) {
    let string = || PropType::scalar(WmiType::String);
    let uint32 = || PropType::scalar(WmiType::UInt32);
    let boolean = || PropType::scalar(WmiType::Boolean);
    let recursive = || vec![("Recursive", boolean())];
    let backup = || {
        vec![
            ("BackupLocation", string()),
            ("BackupVersion", uint32()),
            ("BackupFlags", uint32()),
        ]
    };
    match method {
        "EnumAppsInPool" => (
            vec![],
            vec![("Applications", PropType::array(WmiType::String))],
        ),
        "CreateNewSite" => (
            vec![
                ("PathOfRootVirtualDir", string()),
                (
                    "ServerBindings",
                    PropType::array(WmiType::Object("ServerBinding".into())),
                ),
                ("ServerComment", string()),
                ("ServerId", uint32()),
            ],
            vec![("ReturnValue", string())],
        ),
        "AppCreate" => (vec![("InProcFlag", boolean())], vec![]),
        "AppCreate2" => (vec![("AppMode", uint32())], vec![]),
        "AppCreate3" => (
            vec![
                ("AppMode", uint32()),
                ("AppPoolName", string()),
                ("bCreatePool", boolean()),
            ],
            vec![],
        ),
        "AppDelete" | "AppDisable" | "AppEnable" | "AppUnload" => (recursive(), vec![]),
        "AppGetStatus" => (vec![], vec![("ReturnValue", uint32())]),
        "Backup" | "Restore" => (backup(), vec![]),
        "BackupWithPassword" | "RestoreWithPassword" => {
            let mut p = backup();
            p.push(("BackupPassword", string()));
            (p, vec![])
        }
        "EnumBackups" => (
            vec![("BackupLocation", string()), ("IndexIn", uint32())],
            vec![
                ("BackupDateTimeOut", string()),
                ("BackupLocation", string()),
                ("BackupVersionOut", uint32()),
            ],
        ),
        "DeleteBackup" => (
            vec![("BackupLocation", string()), ("BackupVersion", uint32())],
            vec![],
        ),
        "Export" => (
            vec![
                ("Passwd", string()),
                ("FileName", string()),
                ("SourcePath", string()),
                ("MDFlags", uint32()),
            ],
            vec![],
        ),
        "Import" => (
            vec![
                ("Passwd", string()),
                ("FileName", string()),
                ("SourcePath", string()),
                ("DestPath", string()),
                ("MDFlags", uint32()),
            ],
            vec![],
        ),
        _ => (vec![], vec![]),
    }
}

/// A method's description: the `__PARAMETERS` classes of its in- and
/// out-parameters ([MS-WMIO] 2.3.3), each parameter with its position.
fn method(name: &str, origin: u32) -> Method {
    let (inputs, outputs) = signature(name);
    let mut position = 0;
    // No in-parameters: no input signature; the output signature is
    // always there (clients build the out-parameters from it), empty for
    // a method that returns nothing.
    let mut params = |list: Vec<(&str, PropType)>, direction: &str| -> Option<ClassDef> {
        if list.is_empty() && direction == "in" {
            return None;
        }
        let properties = list
            .into_iter()
            .map(|(param, ty)| {
                let id = if param == "ReturnValue" {
                    None
                } else {
                    position += 1;
                    Some(position - 1)
                };
                let mut qualifiers = vec![
                    qualifier("CIMTYPE", 0, Value::String(cimtype_name(&ty))),
                    qualifier(direction, 0, Value::Boolean(true)),
                ];
                if let Some(id) = id {
                    qualifiers.push(qualifier("ID", 0, Value::Sint32(id)));
                }
                Property {
                    name: param.to_string(),
                    cim_type: cim_type(&ty),
                    inherited: false,
                    origin: 0,
                    qualifiers,
                    default: None,
                }
            })
            .collect();
        Some(ClassDef {
            name: Some("__PARAMETERS".into()),
            qualifiers: vec![qualifier("abstract", 0, Value::Boolean(true))],
            properties,
            ..ClassDef::default()
        })
    };
    let input = params(inputs, "in");
    let output = params(outputs, "out");
    Method {
        name: name.to_string(),
        inherited: false,
        origin,
        qualifiers: vec![qualifier("Implemented", 0, Value::Boolean(true))],
        input,
        output,
    }
}

/// A class as GetObject and CreateClassEnum return it: with its parent
/// (empty for a class without a superclass).
pub fn class_object(model: &ClassModel, class: &WmiClass, decoration: &Decoration) -> Object {
    let parent = class
        .superclass
        .as_deref()
        .and_then(|s| model.class(s))
        .map(|s| class_def(model, s))
        .unwrap_or_default();
    Object {
        decoration: decoration.pair(),
        extra_flags: 0,
        body: Body::Class {
            parent,
            current: class_def(model, class),
        },
    }
}

/// Where objects come from: the server's name and the namespace.
#[derive(Clone, Debug)]
pub struct Decoration {
    pub server: String,
    pub namespace: String,
}

impl Decoration {
    fn pair(&self) -> Option<(String, String)> {
        Some((self.server.clone(), self.namespace.clone()))
    }
}

/// A class made for the wire and the model's type of each of its
/// properties.
type Made = (Arc<ClassDef>, Arc<Vec<PropType>>);

/// The classes of one answer, each made once: its instances share it
/// (the smart enumerator then sends it once, and nothing is built twice).
/// With `columns` (a SELECT with a property list) the classes carry only
/// those properties, as Windows sends a query's partial instances.
pub struct ClassCache {
    columns: Option<Vec<String>>,
    classes: HashMap<String, Made>,
    embedded: HashMap<String, Made>,
}

impl ClassCache {
    pub fn new(columns: Option<&[String]>) -> ClassCache {
        ClassCache {
            columns: columns.map(<[String]>::to_vec),
            classes: HashMap::new(),
            embedded: HashMap::new(),
        }
    }

    fn instance_class(&mut self, model: &ClassModel, class: &WmiClass) -> Made {
        if let Some(made) = self.classes.get(&class.name) {
            return made.clone();
        }
        let mut def = class_def(model, class);
        if let Some(columns) = &self.columns {
            def.properties
                .retain(|p| columns.iter().any(|c| c.eq_ignore_ascii_case(&p.name)));
        }
        let made = typed(def, Some(class));
        self.classes.insert(class.name.clone(), made.clone());
        made
    }

    fn embedded_class(&mut self, model: &ClassModel, object: &EmbeddedObject) -> Made {
        if let Some(made) = self.embedded.get(&object.class) {
            return made.clone();
        }
        let class = model.class(&object.class);
        let def = match class {
            Some(class) => class_def(model, class),
            None => ClassDef {
                name: Some(object.class.clone()),
                properties: object
                    .properties
                    .iter()
                    .map(|(name, v)| Property {
                        name: name.clone(),
                        cim_type: match v {
                            WmiValue::Bool(_) => CimType::BOOLEAN,
                            WmiValue::UInt32(_) => CimType::UINT32,
                            _ => CimType::STRING,
                        },
                        inherited: false,
                        origin: 0,
                        qualifiers: Vec::new(),
                        default: None,
                    })
                    .collect(),
                ..ClassDef::default()
            },
        };
        let made = typed(def, class);
        self.embedded.insert(object.class.clone(), made.clone());
        made
    }
}

/// A class with each property's type in the model's terms: the model's
/// where the class is the model's (an event's TargetInstance is a whole
/// instance), else what the wire type says.
fn typed(def: ClassDef, class: Option<&WmiClass>) -> Made {
    let types = def
        .properties
        .iter()
        .map(|p| match class.and_then(|c| c.property(&p.name)) {
            Some(wp) => wp.ty.clone(),
            None => match p.cim_type {
                CimType::BOOLEAN => PropType::scalar(WmiType::Boolean),
                CimType::UINT32 => PropType::scalar(WmiType::UInt32),
                _ => PropType::scalar(WmiType::String),
            },
        })
        .collect();
    (Arc::new(def), Arc::new(types))
}

/// The values of `properties` in the order of `def`'s, found by walking
/// both in step (they are in the class's order), by name otherwise.
fn values_of(
    model: &ClassModel,
    cache: &mut ClassCache,
    (def, types): &Made,
    properties: &[(String, WmiValue)],
) -> Vec<Slot> {
    let mut next = 0;
    def.properties
        .iter()
        .zip(types.iter())
        .map(|(p, ty)| {
            let found = match properties.get(next) {
                Some((name, v)) if name.eq_ignore_ascii_case(&p.name) => {
                    next += 1;
                    Some(v)
                }
                _ => properties
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&p.name))
                    .map(|(_, v)| v),
            };
            match found {
                Some(v) => slot(model, cache, v, ty),
                None => Slot::Null,
            }
        })
        .collect()
}

/// An instance of the provider as an object, its class from `cache`.
pub fn instance_object(
    model: &ClassModel,
    cache: &mut ClassCache,
    instance: &wmi::Instance,
    decoration: Option<&Decoration>,
) -> Option<Object> {
    let class = model.class(&instance.class)?;
    let made = cache.instance_class(model, class);
    let values = values_of(model, cache, &made, &instance.properties);
    Some(Object {
        decoration: decoration.and_then(Decoration::pair),
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: made.0,
            values,
            qualifiers: Vec::new(),
        }),
    })
}

fn slot(model: &ClassModel, cache: &mut ClassCache, value: &WmiValue, ty: &PropType) -> Slot {
    match wire_value(model, cache, value, ty) {
        Some(v) => Slot::Value(v),
        None => Slot::Null,
    }
}

/// A provider value as the property's type encodes it; None for NULL.
fn wire_value(
    model: &ClassModel,
    cache: &mut ClassCache,
    value: &WmiValue,
    ty: &PropType,
) -> Option<Value> {
    let scalar = || PropType::scalar(ty.base.clone());
    Some(match value {
        WmiValue::Null => return None,
        WmiValue::Array(items) if ty.array => {
            let scalar = scalar();
            Value::Array(
                cim_type(&scalar),
                items
                    .iter()
                    .filter_map(|item| wire_value(model, cache, item, &scalar))
                    .collect(),
            )
        }
        WmiValue::Bytes(bytes) => Value::Array(
            CimType::UINT8,
            bytes.iter().map(|b| Value::Uint8(*b)).collect(),
        ),
        WmiValue::Array(items) => {
            // An array where a scalar is declared: its first element.
            return items
                .first()
                .and_then(|v| wire_value(model, cache, v, &scalar()));
        }
        v if ty.array => {
            let scalar = scalar();
            Value::Array(
                cim_type(&scalar),
                wire_value(model, cache, v, &scalar).into_iter().collect(),
            )
        }
        WmiValue::Bool(b) => match ty.base {
            WmiType::UInt32 => Value::Uint32(u32::from(*b)),
            _ => Value::Boolean(*b),
        },
        WmiValue::UInt32(n) => match ty.base {
            WmiType::Boolean => Value::Boolean(*n != 0),
            WmiType::UInt8 => Value::Uint8(*n as u8),
            WmiType::String => Value::String(n.to_string()),
            _ => Value::Uint32(*n),
        },
        WmiValue::String(s) => match ty.base {
            WmiType::Reference(_) => Value::Reference(s.clone()),
            _ => Value::String(s.clone()),
        },
        WmiValue::Object(object) => Value::Object(Box::new(embedded(model, cache, object))),
    })
}

/// A structured value (a ServerBinding, …) as an embedded instance.
fn embedded(model: &ClassModel, cache: &mut ClassCache, object: &EmbeddedObject) -> Object {
    let made = cache.embedded_class(model, object);
    let values = values_of(model, cache, &made, &object.properties);
    Object {
        decoration: None,
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: made.0,
            values,
            qualifiers: Vec::new(),
        }),
    }
}

/// A method's out-parameters as the `__PARAMETERS` instance ExecMethod
/// returns ([MS-WMIO] 2.3.3): each value's type is what it holds.
pub fn out_parameters(model: &ClassModel, values: &[(String, WmiValue)]) -> Object {
    fn type_of(value: &WmiValue) -> PropType {
        match value {
            WmiValue::Bool(_) => PropType::scalar(WmiType::Boolean),
            WmiValue::UInt32(_) => PropType::scalar(WmiType::UInt32),
            WmiValue::Bytes(_) => PropType::array(WmiType::UInt8),
            WmiValue::Object(o) => PropType::scalar(WmiType::Object(o.class.clone())),
            WmiValue::Array(items) => {
                let mut t = items
                    .first()
                    .map(type_of)
                    .unwrap_or(PropType::scalar(WmiType::String));
                t.array = true;
                t
            }
            WmiValue::String(_) | WmiValue::Null => PropType::scalar(WmiType::String),
        }
    }
    let mut properties = Vec::new();
    let mut slots = Vec::new();
    let mut cache = ClassCache::new(None);
    for (i, (name, value)) in values.iter().enumerate() {
        let ty = type_of(value);
        properties.push(Property {
            name: name.clone(),
            cim_type: cim_type(&ty),
            inherited: false,
            origin: 0,
            qualifiers: vec![
                qualifier("CIMTYPE", 0, Value::String(cimtype_name(&ty))),
                qualifier("out", 0, Value::Boolean(true)),
                qualifier("ID", 0, Value::Sint32(i as i32)),
            ],
            default: None,
        });
        slots.push(slot(model, &mut cache, value, &ty));
    }
    Object {
        decoration: None,
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: Arc::new(ClassDef {
                name: Some("__PARAMETERS".into()),
                qualifiers: vec![qualifier("abstract", 0, Value::Boolean(true))],
                properties,
                ..ClassDef::default()
            }),
            values: slots,
            qualifiers: Vec::new(),
        }),
    }
}
