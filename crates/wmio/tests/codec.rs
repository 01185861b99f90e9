//! The codec against [MS-WMIO]'s own examples, and round trips of every
//! CIM type.

mod vectors;

use wmio::{Body, CimType, ClassDef, Instance, Method, Object, Property, Qualifier, Slot, Value};

fn class_of(object: &Object) -> (&ClassDef, &ClassDef) {
    match &object.body {
        Body::Class { parent, current } => (parent, current),
        Body::Instance(_) => panic!("a class was expected"),
    }
}

#[test]
fn the_specifications_base_class_is_the_derived_ones_parent() {
    // Section 3's listing of Base alone is cut short; MyClass carries
    // Base whole as its parent.
    let object = wmio::decode_unit(&vectors::bytes(vectors::MY_CLASS)).unwrap();
    assert_eq!(
        object.decoration,
        Some(("DPRAVAT-DEV".to_string(), "ROOT".to_string()))
    );
    let (base, _) = class_of(&object);
    assert_eq!(base.name(), "Base");
    assert!(base.derivation.is_empty());
    assert_eq!(base.properties.len(), 1);
    let id = &base.properties[0];
    assert_eq!((id.name.as_str(), id.cim_type), ("Id", CimType::SINT32));
    assert_eq!(id.default, None);
    let names: Vec<_> = id.qualifiers.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["CIMTYPE", "key"]);
    assert_eq!(id.qualifiers[0].value, Value::String("sint32".into()));
    assert_eq!(id.qualifiers[1].value, Value::Boolean(true));
}

#[test]
fn the_specifications_derived_class_decodes_with_defaults_and_origins() {
    let object = wmio::decode_unit(&vectors::bytes(vectors::MY_CLASS)).unwrap();
    let (parent, my) = class_of(&object);
    assert_eq!(parent.name(), "Base");
    assert_eq!(my.name(), "MyClass");
    assert_eq!(my.derivation, ["Base"]);
    assert_eq!(
        my.qualifiers,
        [Qualifier::new(
            "Description",
            0,
            Value::String("MyClass Example".into())
        )]
    );
    let names: Vec<_> = my.properties.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Id", "Data1", "Data2", "Array"]);
    let id = my.property("Id").unwrap();
    assert!(id.inherited);
    assert_eq!(id.origin, 0);
    let data2 = my.property("Data2").unwrap();
    assert_eq!(data2.default, Some(Value::String("defaultValue".into())));
    assert_eq!(data2.origin, 1);
    let array = my.property("Array").unwrap();
    assert_eq!(array.cim_type, CimType::array_of(CimType::UINT32));
    let data1 = my.property("Data1").unwrap();
    let names: Vec<_> = data1.qualifiers.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["CIMTYPE", "read", "write"]);
}

#[test]
fn the_specifications_instance_decodes() {
    let object = wmio::decode_unit(&vectors::bytes(vectors::MY_INSTANCE)).unwrap();
    let Body::Instance(instance) = &object.body else {
        panic!("an instance was expected");
    };
    assert_eq!(instance.class.name(), "MyClass");
    assert_eq!(instance.get("Id"), Some(&Value::Sint32(123)));
    assert_eq!(
        instance.get("Data1"),
        Some(&Value::String("StringField".into()))
    );
    // Data2 keeps the class's default.
    assert_eq!(
        instance.get("Data2"),
        Some(&Value::String("defaultValue".into()))
    );
    assert_eq!(
        instance.get("Array"),
        Some(&Value::Array(
            CimType::UINT32,
            vec![Value::Uint32(1), Value::Uint32(2), Value::Uint32(3)]
        ))
    );
}

#[test]
fn the_specifications_objects_survive_a_round_trip() {
    for listing in [vectors::MY_CLASS, vectors::MY_INSTANCE] {
        let object = wmio::decode_unit(&vectors::bytes(listing)).unwrap();
        let again = wmio::decode_unit(&wmio::encode_unit(&object)).unwrap();
        assert_eq!(again, object);
    }
}

fn property(name: &str, cim_type: CimType, default: Option<Value>) -> Property {
    Property {
        name: name.into(),
        cim_type,
        inherited: false,
        origin: 0,
        qualifiers: vec![Qualifier::new(
            "CIMTYPE",
            3,
            Value::String(cim_type.name().into()),
        )],
        default,
    }
}

#[test]
fn every_cim_type_round_trips_in_classes_instances_and_arrays() {
    let embedded_class = ClassDef {
        name: Some("ServerBinding".into()),
        properties: vec![property("Port", CimType::STRING, None)],
        ..ClassDef::default()
    };
    let embedded = Object {
        decoration: None,
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: embedded_class.into(),
            values: vec![Slot::Value(Value::String(":80:".into()))],
            qualifiers: vec![],
        }),
    };
    let values = vec![
        Value::Sint8(-5),
        Value::Uint8(250),
        Value::Sint16(-300),
        Value::Uint16(65000),
        Value::Sint32(-70000),
        Value::Uint32(4_000_000_000),
        Value::Sint64(-5_000_000_000),
        Value::Uint64(u64::MAX),
        Value::Real32(1.5),
        Value::Real64(-2.25),
        Value::Boolean(true),
        Value::String("Ünïcödé ✓ and plain".into()),
        Value::DateTime("20261206203151.000000+000".into()),
        Value::Reference("IIsWebServer.Name=\"W3SVC/1\"".into()),
        Value::Char16(0x263a),
        Value::Object(Box::new(embedded.clone())),
        Value::Array(
            CimType::STRING,
            vec![Value::String("a".into()), Value::String("".into())],
        ),
        Value::Array(
            CimType::BOOLEAN,
            vec![Value::Boolean(false), Value::Boolean(true)],
        ),
        Value::Array(CimType::UINT8, vec![Value::Uint8(1), Value::Uint8(2)]),
        Value::Array(CimType::OBJECT, vec![Value::Object(Box::new(embedded))]),
        Value::Array(CimType::UINT64, vec![]),
    ];
    let properties: Vec<Property> = values
        .iter()
        .enumerate()
        .map(|(i, v)| property(&format!("P{i:02}"), v.cim_type(), None))
        .collect();
    let mut class = ClassDef {
        name: Some("Everything".into()),
        derivation: vec!["CIM_Setting".into()],
        qualifiers: vec![Qualifier::new("dynamic", 0, Value::Boolean(true))],
        properties,
        methods: vec![Method {
            name: "Start".into(),
            inherited: false,
            origin: 1,
            qualifiers: vec![Qualifier::new("Implemented", 0, Value::Boolean(true))],
            input: None,
            output: Some(ClassDef {
                name: Some("__PARAMETERS".into()),
                properties: vec![property("ReturnValue", CimType::UINT32, None)],
                ..ClassDef::default()
            }),
        }],
    };
    // Defaults of every type in the class, too.
    for (p, v) in class.properties.iter_mut().zip(&values) {
        p.default = Some(v.clone());
    }
    let as_class = Object {
        decoration: Some(("host".into(), "root\\MicrosoftIISv2".into())),
        extra_flags: 0,
        body: Body::Class {
            parent: ClassDef::default(),
            current: class.clone(),
        },
    };
    let back = wmio::decode_unit(&wmio::encode_unit(&as_class)).unwrap();
    assert_eq!(back, as_class);

    class.methods.clear();
    let mut slots: Vec<Slot> = values.iter().cloned().map(Slot::Value).collect();
    slots[0] = Slot::Null;
    slots[1] = Slot::Default;
    let as_instance = Object {
        decoration: None,
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: class.into(),
            values: slots,
            qualifiers: vec![],
        }),
    };
    let back = wmio::decode_unit(&wmio::encode_unit(&as_instance)).unwrap();
    assert_eq!(back, as_instance);
    let Body::Instance(instance) = &back.body else {
        unreachable!()
    };
    assert_eq!(instance.get("P00"), None);
    assert_eq!(instance.get("P01"), Some(&Value::Uint8(250)));
}

#[test]
fn no_value_sits_at_heap_offset_zero() {
    // Impacket reads a zero HeapRef in an instance as "no value": the
    // class name takes offset 0 of every heap.
    let class = ClassDef {
        name: Some("C".into()),
        properties: vec![property("S", CimType::STRING, None)],
        ..ClassDef::default()
    };
    let object = Object {
        decoration: None,
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: class.into(),
            values: vec![Slot::Value(Value::String("v".into()))],
            qualifiers: vec![],
        }),
    };
    let bytes = wmio::encode_unit(&object);
    // The instance's value table is its last four octets before the
    // qualifier set; find the string "v" and check its reference.
    let at = bytes.windows(3).rposition(|w| w == [0, b'v', 0]).unwrap();
    assert!(at > 0);
    let back = wmio::decode_unit(&bytes).unwrap();
    assert_eq!(back, object);
}

#[test]
fn malformed_blocks_are_errors_that_say_where() {
    let good = vectors::bytes(vectors::MY_INSTANCE);
    // Every truncation is an error, never a panic.
    for len in 0..good.len() - 1 {
        let _ = wmio::decode_unit(&good[..len]);
    }
    let mut bad = good.clone();
    bad[0] = 0;
    let e = wmio::decode_unit(&bad).unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
    let mut flags = good.clone();
    flags[8] = 0x07;
    let e = wmio::decode_unit(&flags).unwrap_err();
    assert!(e.to_string().contains("ObjectFlags"), "{e}");
    assert_eq!(e.at, 8);
    // Each single-octet corruption decodes or fails cleanly.
    for i in 8..good.len() {
        let mut c = good.clone();
        c[i] ^= 0xa5;
        let _ = wmio::decode_unit(&c);
    }
}

#[test]
fn an_object_array_sends_each_class_once_and_decodes_whole() {
    let class = ClassDef {
        name: Some("IIsWebServerSetting".into()),
        derivation: vec!["IIsSetting".into()],
        properties: vec![
            property("Name", CimType::STRING, None),
            property("ServerAutoStart", CimType::BOOLEAN, None),
        ],
        ..ClassDef::default()
    };
    // The instances share their class, as a server's result set does.
    let class = std::sync::Arc::new(class);
    let instance = |name: &str, start: bool| Object {
        decoration: Some(("web1".into(), "root\\MicrosoftIISv2".into())),
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: class.clone(),
            values: vec![
                Slot::Value(Value::String(name.into())),
                Slot::Value(Value::Boolean(start)),
            ],
            qualifiers: vec![],
        }),
    };
    let objects: Vec<Object> = (1..=5)
        .map(|i| instance(&format!("W3SVC/{i}"), i % 2 == 0))
        .collect();
    let mut encoder = wmio::ObjectArrayEncoder::new([7; 16]);
    let first = encoder.encode(&objects[..2], wmio::object_array::PACKET_SMART_ENUM);
    let second = encoder.encode(&objects[2..], wmio::object_array::PACKET_SMART_ENUM);
    // The class travels once: the second buffer is instances alone.
    let class_bytes = wmio::encode_class_part(&class);
    let has_class = |buf: &[u8]| buf.windows(class_bytes.len()).any(|w| w == class_bytes);
    assert!(has_class(&first));
    assert!(!has_class(&second));
    let mut decoder = wmio::ObjectArrayDecoder::default();
    let mut back = decoder.decode(&first).unwrap();
    back.extend(decoder.decode(&second).unwrap());
    assert_eq!(back, objects);
    // A receiver that missed the first buffer cannot place the rest.
    let e = wmio::ObjectArrayDecoder::default()
        .decode(&second)
        .unwrap_err();
    assert!(e.to_string().contains("class ID"), "{e}");
}

#[test]
fn embedded_objects_nest_with_arrays_of_objects_inside() {
    let binding_class = ClassDef {
        name: Some("ServerBinding".into()),
        properties: vec![property("Port", CimType::STRING, None)],
        ..ClassDef::default()
    };
    let binding = |port: &str| {
        Value::Object(Box::new(Object {
            decoration: None,
            extra_flags: 0,
            body: Body::Instance(Instance {
                class: binding_class.clone().into(),
                values: vec![Slot::Value(Value::String(port.into()))],
                qualifiers: vec![],
            }),
        }))
    };
    let setting_class = ClassDef {
        name: Some("IIsWebServerSetting".into()),
        properties: vec![
            property("Name", CimType::STRING, None),
            property("ServerBindings", CimType::array_of(CimType::OBJECT), None),
            property("ServerComment", CimType::STRING, None),
        ],
        ..ClassDef::default()
    };
    let setting = |comment: &str| {
        Value::Object(Box::new(Object {
            decoration: None,
            extra_flags: 0,
            body: Body::Instance(Instance {
                class: setting_class.clone().into(),
                values: vec![
                    Slot::Value(Value::String("W3SVC/1".into())),
                    Slot::Value(Value::Array(
                        CimType::OBJECT,
                        vec![binding(":80:"), binding(":81:")],
                    )),
                    Slot::Value(Value::String(comment.into())),
                ],
                qualifiers: vec![],
            }),
        }))
    };
    let event = Object {
        decoration: Some(("host".into(), "root\\MicrosoftIISv2".into())),
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: std::sync::Arc::new(ClassDef {
                name: Some("__InstanceModificationEvent".into()),
                properties: vec![
                    property("TargetInstance", CimType::OBJECT, None),
                    property("PreviousInstance", CimType::OBJECT, None),
                ],
                ..ClassDef::default()
            }),
            values: vec![
                Slot::Value(setting("after")),
                Slot::Value(setting("before")),
            ],
            qualifiers: vec![],
        }),
    };
    let back = wmio::decode_unit(&wmio::encode_unit(&event)).unwrap();
    assert_eq!(back, event);
}

#[test]
fn a_value_of_another_type_than_its_property_goes_as_null() {
    let object = Object {
        decoration: None,
        extra_flags: 0,
        body: Body::Instance(Instance {
            class: std::sync::Arc::new(ClassDef {
                name: Some("C".into()),
                properties: vec![property("Count", CimType::UINT32, None)],
                ..ClassDef::default()
            }),
            values: vec![Slot::Value(Value::String("not a number".into()))],
            qualifiers: vec![],
        }),
    };
    let back = wmio::decode_unit(&wmio::encode_unit(&object)).unwrap();
    let Body::Instance(instance) = back.body else {
        unreachable!()
    };
    assert_eq!(instance.values, vec![Slot::Null]);
}

#[test]
fn a_context_round_trips_and_malformed_ones_are_errors() {
    use wmio::context::{decode_context, encode_context, Context, ContextValue};
    let context = Context {
        properties: vec![
            ("__PUT_EXTENSIONS".into(), ContextValue::Bool(true)),
            (
                "__PUT_EXT_PROPERTIES".into(),
                ContextValue::Strings(vec!["ServerComment".into(), "Ünï".into()]),
            ),
            ("__ProviderArchitecture".into(), ContextValue::Integer(64)),
            ("__CorrelationId".into(), ContextValue::String("{1}".into())),
            ("Nothing".into(), ContextValue::Null),
        ],
    };
    let bytes = encode_context(&context);
    let back = decode_context(&bytes).unwrap();
    assert_eq!(back, context);
    assert!(back.is_true("__put_extensions"));
    for len in 0..bytes.len() {
        let _ = decode_context(&bytes[..len]);
    }
    let mut huge = bytes.clone();
    huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_context(&huge).is_err());
}
