//! MBSchema.xml: the catalog format IIS 6 keeps its metabase schema in
//! (`<MetaData xmlns="x-urn:microsoft-catalog:MetaData_V7">`, one
//! `Collection` per class, property definitions in the `IIsConfigObject`
//! collection, the other collections referring to them by
//! `InheritsPropertiesFrom="IIsConfigObject:Name"`).

use quick_xml::events::Event;
use quick_xml::Reader;

use super::{ClassDef, ClassProperty, FlagDef, PropertyDef, Schema, SchemaType, DEFINITIONS_CLASS};
use crate::error::Result;
use crate::value::{parse_u32, Attributes, UserType};
use crate::xmlutil::{attributes, error_at, escape_attr, find, local_name};

pub const SCHEMA_NAMESPACE: &str = "x-urn:microsoft-catalog:MetaData_V7";

enum Open {
    Collection(ClassDef),
    Definition(PropertyDef),
    /// An element that builds nothing of its own (a reference, a wiring, a flag).
    Other,
}

/// Parses MBSchema.xml. `file` names the source in error messages.
pub fn parse_schema(text: &str, file: &str) -> Result<Schema> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut defs: Vec<PropertyDef> = Vec::new();
    let mut classes: Vec<ClassDef> = Vec::new();
    let mut database_extra = Vec::new();
    let mut wiring = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut saw_root = false;
    let mut depth = 0usize;

    loop {
        let offset = reader.buffer_position() as usize;
        let err = |msg: String| error_at(file, text, offset, msg);
        let event = reader
            .read_event()
            .map_err(|e| error_at(file, text, reader.error_position() as usize, e.to_string()))?;
        let (element, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth >= 2 {
                    close(&mut stack, &mut defs, &mut classes);
                }
                continue;
            }
            Event::Eof => break,
            Event::Text(t) if !t.as_ref().trim_ascii().is_empty() => {
                return Err(err("unexpected text in MBSchema.xml".into()));
            }
            _ => continue,
        };
        let name = local_name(&element);
        let attrs = attributes(&element).map_err(&err)?;
        match (depth, name.as_str()) {
            (0, "MetaData") => saw_root = true,
            (0, other) => {
                return Err(err(format!(
                    "root element is <{other}>, expected <MetaData>"
                )))
            }
            (1, "DatabaseMeta") => database_extra = attrs,
            (1, _) => {}
            (2, "ServerWiring") => {
                wiring.push(attrs);
                stack.push(Open::Other);
            }
            (2, "Collection") => stack.push(Open::Collection(parse_class(&attrs).map_err(&err)?)),
            (3, "Property") => {
                let Some(Open::Collection(class)) = stack.last_mut() else {
                    return Err(err("<Property> outside a <Collection>".into()));
                };
                if let Some(reference) = find(&attrs, "InheritsPropertiesFrom") {
                    let target = reference.split_once(':').map_or(reference, |(_, n)| n);
                    class.properties.push(ClassProperty {
                        name: target.to_string(),
                        extra: attrs
                            .iter()
                            .filter(|(k, _)| k != "InheritsPropertiesFrom")
                            .cloned()
                            .collect(),
                        is_reference: true,
                    });
                    stack.push(Open::Other);
                } else if class.name == DEFINITIONS_CLASS {
                    stack.push(Open::Definition(parse_definition(&attrs).map_err(&err)?));
                } else {
                    let name = find(&attrs, "InternalName")
                        .ok_or_else(|| err("<Property> without InternalName".into()))?;
                    class.properties.push(ClassProperty {
                        name: name.to_string(),
                        extra: attrs.clone(),
                        is_reference: false,
                    });
                    stack.push(Open::Other);
                }
            }
            (4, "Flag") => {
                let Some(Open::Definition(def)) = stack.last_mut() else {
                    return Err(err("<Flag> outside a property definition".into()));
                };
                let flag_name = find(&attrs, "InternalName")
                    .ok_or_else(|| err("<Flag> without InternalName".into()))?;
                let value = find(&attrs, "Value")
                    .and_then(parse_u32)
                    .ok_or_else(|| err(format!("flag {flag_name}: Value is not a DWORD")))?;
                def.flags.push(FlagDef {
                    name: flag_name.to_string(),
                    value,
                    id: find(&attrs, "ID").and_then(parse_u32),
                });
                stack.push(Open::Other);
            }
            (d, other) => {
                return Err(err(format!(
                    "unexpected <{other}> at depth {d} of MBSchema.xml"
                )))
            }
        }
        if empty {
            if depth >= 2 {
                close(&mut stack, &mut defs, &mut classes);
            }
        } else {
            depth += 1;
        }
    }
    if !saw_root {
        return Err(error_at(file, text, 0, "no <MetaData> element"));
    }
    if !classes.iter().any(|c| c.name == DEFINITIONS_CLASS) {
        return Err(error_at(
            file,
            text,
            0,
            format!("no {DEFINITIONS_CLASS} collection holding the property definitions"),
        ));
    }
    Schema::from_parts(defs, classes, database_extra, wiring)
        .map_err(|e| error_at(file, text, 0, e.to_string()))
}

/// Pops the innermost open element and files what it built.
fn close(stack: &mut Vec<Open>, defs: &mut Vec<PropertyDef>, classes: &mut Vec<ClassDef>) {
    match stack.pop() {
        Some(Open::Collection(class)) => classes.push(class),
        Some(Open::Definition(def)) => defs.push(def),
        Some(Open::Other) | None => {}
    }
}

fn parse_class(attrs: &[(String, String)]) -> Result<ClassDef, String> {
    let name = find(attrs, "InternalName").ok_or("<Collection> without InternalName")?;
    let container_class_list = find(attrs, "ContainerClassList").map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    Ok(ClassDef {
        name: name.to_string(),
        container_class_list,
        properties: Vec::new(),
        extra: attrs
            .iter()
            .filter(|(k, _)| k != "InternalName" && k != "ContainerClassList")
            .cloned()
            .collect(),
    })
}

fn parse_definition(attrs: &[(String, String)]) -> Result<PropertyDef, String> {
    let name = find(attrs, "InternalName").ok_or("<Property> without InternalName")?;
    let id = find(attrs, "ID")
        .and_then(parse_u32)
        .ok_or_else(|| format!("property {name}: ID is missing or not a number"))?;
    let type_name = find(attrs, "Type").unwrap_or("STRING");
    let schema_type = SchemaType::parse(type_name)
        .ok_or_else(|| format!("property {name}: unknown Type {type_name}"))?;
    let user_type = match find(attrs, "UserType") {
        Some(u) => {
            UserType::parse(u).ok_or_else(|| format!("property {name}: unknown UserType {u}"))?
        }
        None => UserType::SERVER,
    };
    let attributes = match find(attrs, "Attributes") {
        Some(a) => {
            Attributes::parse(a).ok_or_else(|| format!("property {name}: bad Attributes {a}"))?
        }
        None => Attributes::NO_ATTRIBUTES,
    };
    let number = |key: &str| -> Result<Option<u32>, String> {
        find(attrs, key)
            .map(|v| parse_u32(v).ok_or_else(|| format!("property {name}: {key} is not a number")))
            .transpose()
    };
    const MODELLED: [&str; 8] = [
        "InternalName",
        "ID",
        "Type",
        "UserType",
        "Attributes",
        "DefaultValue",
        "StartingNumber",
        "EndingNumber",
    ];
    Ok(PropertyDef {
        id,
        name: name.to_string(),
        schema_type,
        user_type,
        attributes,
        default: find(attrs, "DefaultValue").map(str::to_string),
        starting_number: number("StartingNumber")?,
        ending_number: number("EndingNumber")?,
        flags: Vec::new(),
        extra: attrs
            .iter()
            .filter(|(k, _)| !MODELLED.contains(&k.as_str()))
            .cloned()
            .collect(),
    })
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push_str("\t\t\t");
    out.push_str(name);
    out.push_str("=\"");
    escape_attr(value, out);
    out.push('"');
}

fn push_attrs(out: &mut String, attrs: &[(String, String)]) {
    for (k, v) in attrs {
        push_attr(out, k, v);
    }
}

/// Writes the schema as MBSchema.xml.
pub fn write_schema(schema: &Schema) -> String {
    let mut out = String::with_capacity(300_000);
    out.push('\u{feff}');
    out.push_str("<?xml version =\"1.0\"?>\n<!-- WARNING, DO NOT EDIT THIS FILE. -->\n");
    out.push_str(&format!(
        "<MetaData xmlns=\"{SCHEMA_NAMESPACE}\">\n\n\t<DatabaseMeta"
    ));
    push_attrs(&mut out, &schema.database_extra);
    out.push_str(">\n");
    for wiring in &schema.wiring {
        out.push_str("\t\t<ServerWiring");
        push_attrs(&mut out, wiring);
        out.push_str("/>\n");
    }
    for class in schema.classes() {
        out.push_str("\t\t<Collection");
        push_attr(&mut out, "InternalName", &class.name);
        push_attrs(&mut out, &class.extra);
        if let Some(list) = &class.container_class_list {
            push_attr(&mut out, "ContainerClassList", &list.join(","));
        }
        out.push_str(">\n");
        if class.name == DEFINITIONS_CLASS {
            for def in schema.properties() {
                write_definition(&mut out, def);
            }
        }
        for p in &class.properties {
            out.push_str("\t\t\t<Property");
            if p.is_reference {
                push_attr(
                    &mut out,
                    "InheritsPropertiesFrom",
                    &format!("{DEFINITIONS_CLASS}:{}", p.name),
                );
            }
            push_attrs(&mut out, &p.extra);
            out.push_str("/>\n");
        }
        out.push_str("\t\t</Collection>\n");
    }
    out.push_str("\t</DatabaseMeta>\n</MetaData>\n");
    out
}

fn write_definition(out: &mut String, def: &PropertyDef) {
    out.push_str("\t\t\t<Property");
    push_attr(out, "InternalName", &def.name);
    push_attr(out, "ID", &def.id.to_string());
    push_attr(out, "Type", def.schema_type.name());
    push_attr(out, "UserType", &def.user_type.to_string());
    push_attr(out, "Attributes", &def.attributes.to_string());
    push_attrs(out, &def.extra);
    if let Some(n) = def.starting_number {
        push_attr(out, "StartingNumber", &n.to_string());
    }
    if let Some(d) = &def.default {
        push_attr(out, "DefaultValue", d);
    }
    if let Some(n) = def.ending_number {
        push_attr(out, "EndingNumber", &n.to_string());
    }
    if def.flags.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    for flag in &def.flags {
        out.push_str("\t\t\t\t<Flag");
        push_attr(out, "InternalName", &flag.name);
        push_attr(out, "Value", &flag.value.to_string());
        if let Some(id) = flag.id {
            push_attr(out, "ID", &id.to_string());
        }
        out.push_str("\t/>\n");
    }
    out.push_str("\t\t\t</Property>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"<?xml version ="1.0"?>
<MetaData xmlns="x-urn:microsoft-catalog:MetaData_V7">
	<DatabaseMeta InternalName ="METABASE">
		<ServerWiring Interceptor="Core_XMLInterceptor"/>
		<Collection InternalName ="MetabaseBaseClass" MetaFlags="HIDDEN">
			<Property InternalName ="Location" Type="WSTR" MetaFlags="PRIMARYKEY"/>
		</Collection>
		<Collection InternalName ="IIsConfigObject" MetaFlags="HIDDEN">
			<Property InternalName ="KeyType" ID="1002" Type="STRING" UserType="IIS_MD_UT_SERVER" Attributes="NO_ATTRIBUTES" DefaultValue=""/>
			<Property InternalName ="AccessFlags" ID="6016" Type="DWORD" UserType="IIS_MD_UT_FILE" Attributes="INHERIT" DefaultValue="AccessRead">
				<Flag InternalName ="AccessRead" Value="1" ID="6000"/>
				<Flag InternalName ="AccessWrite" Value="2" ID="6001"/>
			</Property>
			<Property InternalName ="Widgets" ID="70000" Type="DWORD" UserType="IIS_MD_UT_SERVER" Attributes="INHERIT" StartingNumber="1" EndingNumber="9" DefaultValue="5"/>
		</Collection>
		<Collection InternalName ="Box" ContainerClassList="Box,IIsObject" InheritsPropertiesFrom="MetabaseBaseClass">
			<Property InheritsPropertiesFrom ="IIsConfigObject:KeyType"/>
			<Property InheritsPropertiesFrom ="IIsConfigObject:Widgets" MetaFlagsEx="| MANDATORY"/>
		</Collection>
	</DatabaseMeta>
</MetaData>
"#;

    #[test]
    fn parse_small_schema() {
        let s = parse_schema(SMALL, "small.xml").unwrap();
        let w = s.property_by_name("Widgets").unwrap();
        assert_eq!((w.id, w.range()), (70000, Some((1, 9))));
        assert_eq!(s.property_by_name("AccessFlags").unwrap().flags.len(), 2);
        assert!(s.property_allowed("Box", 70000));
        assert!(!s.property_allowed("Box", 6016));
        assert!(s.may_contain("Box", "Box").is_ok());
        assert!(s.may_contain("Box", "IIsConfigObject").is_ok());
    }

    #[test]
    fn write_then_parse_is_identity() {
        let s = parse_schema(SMALL, "small.xml").unwrap();
        let text = write_schema(&s);
        let again = parse_schema(&text, "again.xml").unwrap();
        assert_eq!(write_schema(&again), text);
        assert_eq!(again.class("Box").unwrap(), s.class("Box").unwrap());
        let standard = Schema::standard();
        let text = write_schema(&standard);
        let again = parse_schema(&text, "standard").unwrap();
        assert_eq!(write_schema(&again), text);
    }

    #[test]
    fn rejections_name_line() {
        let bad = SMALL.replace("ID=\"70000\"", "ID=\"seventy\"");
        let e = parse_schema(&bad, "bad.xml").unwrap_err().to_string();
        assert!(e.starts_with("bad.xml:14:4:"), "{e}");
        assert!(e.contains("Widgets"), "{e}");
        let dup = SMALL.replace("ID=\"70000\"", "ID=\"1002\"");
        assert!(parse_schema(&dup, "dup.xml")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let unknown_ref = SMALL.replace("IIsConfigObject:Widgets", "IIsConfigObject:Nope");
        assert!(parse_schema(&unknown_ref, "u.xml").is_err());
        assert!(parse_schema("<x/>", "x.xml").is_err());
        assert!(parse_schema("<MetaData><unclosed></MetaData>", "y.xml").is_err());
        let bad_type = SMALL.replace(
            "Type=\"DWORD\" UserType=\"IIS_MD_UT_SERVER\"",
            "Type=\"QWORD\" UserType=\"IIS_MD_UT_SERVER\"",
        );
        assert!(parse_schema(&bad_type, "t.xml")
            .unwrap_err()
            .to_string()
            .contains("QWORD"));
    }
}
