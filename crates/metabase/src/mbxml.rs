//! MetaBase.xml, in IIS 6's format: `<configuration>` holding
//! `<MBProperty>`, one element per key named by its key type with the
//! key's path in `Location`, schema properties as attributes (MULTISZ
//! entries one per line), data outside the schema as `Custom` elements,
//! and the file's bookkeeping in `IIS_Global`.
//!
//! What the reader does not model (attributes outside the schema, unknown
//! child elements, other top-level elements) is kept verbatim and written
//! back unchanged.

use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::{Error, Result};
use crate::path::MbPath;
use crate::schema::{format_plain, PropertyDef, Schema, KEY_TYPE_ID};
use crate::secrets::{unseal, SecretKey, Unsealed};
use crate::tree::{Key, Property, SealedValue};
use crate::value::{parse_u32, Attributes, DataType, UserType, Value};
use crate::xmlutil::{self, error_at, escape_attr, find, local_name, raw_attributes};

pub const METABASE_NAMESPACE: &str = "urn:microsoft-catalog:XML_Metabase_V64_0";
const GLOBAL_ELEMENT: &str = "IIS_Global";
/// Holds the inherited values an export made with MD_EXPORT_INHERITED
/// carries for the exported key ([MS-IMSA] 3.3.4.3).
pub(crate) const INHERITED_ELEMENT: &str = "IIS_Inherited";
const MULTISZ_SEPARATOR: &str = "\n\t\t\t";

/// The `IIS_Global` bookkeeping of a MetaBase.xml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalInfo {
    /// The system change number at the time of the save.
    pub change_number: u64,
    /// HistoryMajorVersionNumber: the version this file is.
    pub history_major: u32,
    /// Other IIS_Global attributes, verbatim (name, raw text).
    pub extra: Vec<(String, String)>,
}

/// A parsed MetaBase.xml.
#[derive(Clone, Debug)]
pub struct Document {
    pub root: Arc<Key>,
    pub global: GlobalInfo,
    /// Elements of `<configuration>` other than `<MBProperty>`, verbatim.
    pub extra_elements: Vec<String>,
    /// Inherited values carried by an export, with the key they belong to.
    pub inherited: Vec<(MbPath, Vec<Property>)>,
    /// Things accepted but worth telling: unknown properties and key types,
    /// properties outside their key type's list.
    pub warnings: Vec<String>,
}

impl Document {
    pub fn new(root: Arc<Key>, global: GlobalInfo) -> Document {
        Document {
            root,
            global,
            extra_elements: Vec::new(),
            inherited: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

struct Parser<'t, 's> {
    reader: Reader<&'t [u8]>,
    text: &'t str,
    file: &'s str,
    schema: &'s Schema,
    key: Option<&'s SecretKey>,
    warnings: Vec<String>,
}

/// Parses MetaBase.xml. Type, range and flag errors, duplicate or invalid
/// Locations and malformed XML are errors naming file, line and property;
/// unknown properties and key types are kept and reported as warnings.
pub fn parse_metabase(
    text: &str,
    file: &str,
    schema: &Schema,
    key: Option<&SecretKey>,
) -> Result<Document> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        reader: Reader::from_str(text),
        text,
        file,
        schema,
        key,
        warnings: Vec::new(),
    };
    let mut root = Key::default();
    let mut global = GlobalInfo::default();
    let mut extra_elements = Vec::new();
    let mut inherited = Vec::new();

    // The prologue, up to <configuration>.
    let config_empty = loop {
        let at = p.pos();
        match p.next()? {
            Event::Start(e) if local_name(&e) == "configuration" => break false,
            Event::Empty(e) if local_name(&e) == "configuration" => break true,
            Event::Start(e) | Event::Empty(e) => {
                return Err(p.err(
                    at,
                    format!(
                        "root element is <{}>, expected <configuration>",
                        local_name(&e)
                    ),
                ))
            }
            Event::Eof => return Err(p.err(at, "no <configuration> element")),
            Event::Text(t) if !t.as_ref().trim_ascii().is_empty() => {
                return Err(p.err(at, "text outside the root element"))
            }
            _ => {}
        }
    };

    if !config_empty {
        loop {
            let at = p.pos();
            match p.next()? {
                Event::End(_) => break,
                Event::Start(e) if local_name(&e) == "MBProperty" => {
                    p.keys(&mut root, &mut global, &mut inherited)?;
                }
                Event::Empty(e) if local_name(&e) == "MBProperty" => {}
                Event::Start(e) => {
                    p.reader
                        .read_to_end(e.name())
                        .map_err(|err| p.err(at, err.to_string()))?;
                    extra_elements.push(p.text[at..p.pos()].to_string());
                }
                Event::Empty(_) => extra_elements.push(p.text[at..p.pos()].to_string()),
                Event::Eof => return Err(p.err(at, "<configuration> is not closed")),
                Event::Text(t) if !t.as_ref().trim_ascii().is_empty() => {
                    return Err(p.err(at, "unexpected text in <configuration>"))
                }
                _ => {}
            }
        }
    }
    loop {
        let at = p.pos();
        match p.next()? {
            Event::Eof => break,
            Event::Start(_) | Event::Empty(_) => {
                return Err(p.err(at, "content after the <configuration> element"))
            }
            Event::Text(t) if !t.as_ref().trim_ascii().is_empty() => {
                return Err(p.err(at, "text after the <configuration> element"))
            }
            _ => {}
        }
    }
    if !root.props.contains_key(&KEY_TYPE_ID) {
        root.set_key_type("IIS_ROOT");
    }
    Ok(Document {
        root: Arc::new(root),
        global,
        extra_elements,
        inherited,
        warnings: p.warnings,
    })
}

impl<'t> Parser<'t, '_> {
    fn pos(&self) -> usize {
        self.reader.buffer_position() as usize
    }

    fn err(&self, at: usize, message: impl Into<String>) -> Error {
        error_at(self.file, self.text, at, message)
    }

    fn next(&mut self) -> Result<Event<'t>> {
        self.reader.read_event().map_err(|e| {
            error_at(
                self.file,
                self.text,
                self.reader.error_position() as usize,
                e.to_string(),
            )
        })
    }

    /// The key elements inside `<MBProperty>`.
    fn keys(
        &mut self,
        root: &mut Key,
        global: &mut GlobalInfo,
        inherited: &mut Vec<(MbPath, Vec<Property>)>,
    ) -> Result<()> {
        loop {
            let at = self.pos();
            let (element, has_content) = match self.next()? {
                Event::End(_) => return Ok(()),
                Event::Start(e) => (e, true),
                Event::Empty(e) => (e, false),
                Event::Eof => return Err(self.err(at, "<MBProperty> is not closed")),
                Event::Text(t) if !t.as_ref().trim_ascii().is_empty() => {
                    return Err(self.err(at, "unexpected text in <MBProperty>"))
                }
                _ => continue,
            };
            let key_type = local_name(&element);
            // A namespace prefix is dropped (`<x:IIsWebServer>`), but what
            // is left must be one name: a second colon would lose itself
            // one prefix at a time through each save and reload.
            if !xmlutil::is_xml_name(&key_type) || key_type.contains(':') {
                let raw = element.name().as_ref().to_string();
                return Err(self.err(
                    at,
                    format!("<{raw}> is not a key type: a class name is one XML name, without ':'"),
                ));
            }
            let attrs = raw_attributes(&element).map_err(|m| self.err(at, m))?;
            let location = find(&attrs, "Location")
                .ok_or_else(|| self.err(at, format!("<{key_type}> has no Location")))?;
            let location = xmlutil::unescape(location).map_err(|m| self.err(at, m))?;
            let mut customs = Vec::new();
            let mut raw_children = Vec::new();
            if has_content {
                self.key_children(&mut customs, &mut raw_children)?;
            }
            if key_type == GLOBAL_ELEMENT {
                *global = self.global(&attrs, at)?;
                continue;
            }
            let path = MbPath::parse(&location).map_err(|e| self.err(at, e.to_string()))?;
            let (props, sealed, unknown) =
                self.properties(&path, &key_type, &attrs, &customs, at)?;
            if key_type == INHERITED_ELEMENT {
                inherited.push((path, props.into_values().collect()));
                continue;
            }
            if self.schema.class(&key_type).is_none() {
                self.warnings.push(format!(
                    "{path}: key type {key_type} is not in the schema (kept as it is)"
                ));
            }
            let key = slot(root, &path);
            // Every element sets a KeyType; intermediate keys made for a
            // deeper Location have none until their own element comes.
            if key.props.contains_key(&KEY_TYPE_ID) {
                return Err(self.err(at, format!("Location {path} appears twice")));
            }
            key.props = props;
            key.set_key_type(&key_type);
            key.sealed = sealed;
            key.unknown_attrs = unknown;
            key.raw_children = raw_children;
        }
    }

    /// The children of a key element: `Custom` data items (their
    /// attributes and offset), anything else verbatim.
    fn key_children(
        &mut self,
        customs: &mut Vec<(Vec<(String, String)>, usize)>,
        raw_children: &mut Vec<String>,
    ) -> Result<()> {
        loop {
            let at = self.pos();
            match self.next()? {
                Event::End(_) => return Ok(()),
                Event::Start(e) => {
                    self.reader
                        .read_to_end(e.name())
                        .map_err(|err| self.err(at, err.to_string()))?;
                    if local_name(&e) == "Custom" {
                        customs.push((self.attrs(&e, at)?, at));
                    } else {
                        raw_children.push(self.text[at..self.pos()].to_string());
                    }
                }
                Event::Empty(e) => {
                    if local_name(&e) == "Custom" {
                        customs.push((self.attrs(&e, at)?, at));
                    } else {
                        raw_children.push(self.text[at..self.pos()].to_string());
                    }
                }
                Event::Eof => return Err(self.err(at, "key element is not closed")),
                Event::Text(t) if !t.as_ref().trim_ascii().is_empty() => {
                    return Err(self.err(at, "unexpected text in a key element"))
                }
                _ => {}
            }
        }
    }

    fn attrs(&self, e: &BytesStart<'_>, at: usize) -> Result<Vec<(String, String)>> {
        raw_attributes(e).map_err(|m| self.err(at, m))
    }

    fn global(&self, attrs: &[(String, String)], at: usize) -> Result<GlobalInfo> {
        let mut global = GlobalInfo::default();
        for (name, raw) in attrs {
            match name.as_str() {
                "Location" => {}
                "ChangeNumber" => {
                    global.change_number = raw.trim().parse().map_err(|_| {
                        self.err(
                            at,
                            format!("IIS_Global ChangeNumber '{raw}' is not a number"),
                        )
                    })?
                }
                "HistoryMajorVersionNumber" => {
                    global.history_major = parse_u32(raw).ok_or_else(|| {
                        self.err(
                            at,
                            format!("IIS_Global HistoryMajorVersionNumber '{raw}' is not a number"),
                        )
                    })?
                }
                _ => global.extra.push((name.clone(), raw.clone())),
            }
        }
        Ok(global)
    }

    /// A key element's data: its attributes and `Custom` children.
    #[allow(clippy::type_complexity)]
    fn properties(
        &mut self,
        path: &MbPath,
        key_type: &str,
        attrs: &[(String, String)],
        customs: &[(Vec<(String, String)>, usize)],
        element_at: usize,
    ) -> Result<(
        std::collections::BTreeMap<u32, Property>,
        std::collections::BTreeMap<u32, SealedValue>,
        Vec<(String, String)>,
    )> {
        let mut props = std::collections::BTreeMap::new();
        let mut sealed = std::collections::BTreeMap::new();
        let mut unknown = Vec::new();
        for (name, raw) in attrs {
            if name == "Location" || name.starts_with("xmlns") {
                continue;
            }
            let Some(def) = self
                .schema
                .property_by_name(name)
                .filter(|d| d.name.eq_ignore_ascii_case(name))
            else {
                self.warnings.push(format!(
                    "{path}: {name} is not a property in the schema (kept as it is)"
                ));
                unknown.push((name.clone(), raw.clone()));
                continue;
            };
            if def.id == KEY_TYPE_ID {
                continue;
            }
            if !self.schema.property_allowed(key_type, def.id) {
                self.warnings.push(format!(
                    "{path}: {} is not a property of {key_type} in the schema",
                    def.name
                ));
            }
            let value = self.attribute_value(def, raw).map_err(|reason| {
                let attr_at = self.text[element_at..]
                    .find(&format!("{name}="))
                    .map_or(element_at, |i| element_at + i);
                self.err(attr_at, format!("{path}: {}: {reason}", def.name))
            })?;
            match value {
                Unsealed::Value(value) => {
                    props.insert(
                        def.id,
                        Property {
                            id: def.id,
                            value,
                            attributes: def.attributes,
                            user_type: def.user_type,
                            custom_name: None,
                        },
                    );
                }
                Unsealed::Foreign => {
                    sealed.insert(
                        def.id,
                        SealedValue {
                            id: def.id,
                            name: def.name.clone(),
                            text: xmlutil::unescape(raw).unwrap_or_else(|_| raw.clone()),
                            custom: None,
                        },
                    );
                }
            }
        }
        for (custom, offset) in customs {
            let (id, parsed) = self
                .custom(custom)
                .map_err(|m| self.err(*offset, format!("{path}: Custom data: {m}")))?;
            match parsed {
                Ok(property) => {
                    props.insert(id, property);
                }
                Err(s) => {
                    sealed.insert(id, s);
                }
            }
        }
        Ok((props, sealed, unknown))
    }

    fn attribute_value(
        &self,
        def: &PropertyDef,
        raw: &str,
    ) -> std::result::Result<Unsealed, String> {
        let text = if def.data_type() == DataType::MultiSz {
            split_multisz(raw)?.join("\n")
        } else {
            xmlutil::unescape(raw)?
        };
        if def.is_secure() {
            return unseal(self.key, def.id, def.data_type(), &text, |t| {
                def.parse_text(t)
            });
        }
        def.parse_text(&text).map(Unsealed::Value)
    }

    /// A `Custom` element: Name, ID, Value, Type, UserType, Attributes.
    fn custom(
        &self,
        attrs: &[(String, String)],
    ) -> std::result::Result<(u32, std::result::Result<Property, SealedValue>), String> {
        // Every attribute but Value (split into lines first) is plain text.
        let get = |k: &str| find(attrs, k).map(xmlutil::unescape).transpose();
        let id = get("ID")?
            .as_deref()
            .and_then(parse_u32)
            .ok_or("ID is missing or not a number")?;
        let name = get("Name")?.unwrap_or_else(|| self.schema.name_of(id));
        let type_name = get("Type")?.ok_or("Type is missing")?;
        let type_name = type_name.as_str();
        let data_type = DataType::from_xml_name(type_name)
            .ok_or_else(|| format!("unknown Type {type_name}"))?;
        let user_type = match get("UserType")? {
            Some(u) => UserType::parse(&u).ok_or_else(|| format!("unknown UserType {u}"))?,
            None => UserType::SERVER,
        };
        let attributes = match get("Attributes")? {
            Some(a) => Attributes::parse(&a).ok_or_else(|| format!("bad Attributes {a}"))?,
            None => Attributes::NO_ATTRIBUTES,
        };
        let raw = find(attrs, "Value").unwrap_or("");
        let def = PropertyDef::custom(id, &name, data_type, user_type, attributes);
        let text = if data_type == DataType::MultiSz {
            split_multisz(raw)?.join("\n")
        } else {
            xmlutil::unescape(raw)?
        };
        let parse = |t: &str| def.parse_text(t).map_err(|e| format!("{name}: {e}"));
        let outcome = if attributes.contains(Attributes::SECURE) {
            unseal(self.key, id, data_type, &text, parse)?
        } else {
            Unsealed::Value(parse(&text)?)
        };
        Ok((
            id,
            match outcome {
                Unsealed::Value(value) => Ok(Property {
                    id,
                    value,
                    attributes,
                    user_type,
                    custom_name: Some(name),
                }),
                Unsealed::Foreign => Err(SealedValue {
                    id,
                    name,
                    text,
                    custom: Some((data_type, user_type, attributes)),
                }),
            },
        ))
    }
}

/// The entries of a MULTISZ attribute: one per line, indentation removed,
/// references expanded after the split.
fn split_multisz(raw: &str) -> std::result::Result<Vec<String>, String> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    raw.split('\n')
        .map(|line| xmlutil::unescape(line.trim_end_matches('\r').trim_start_matches([' ', '\t'])))
        .collect()
}

/// The key at `path`, created (with generic intermediate keys) if needed.
fn slot<'a>(root: &'a mut Key, path: &MbPath) -> &'a mut Key {
    let mut key = root;
    for part in path.parts() {
        if key.child(part).is_none() {
            key.insert_child(Key {
                name: part.clone(),
                ..Key::default()
            });
        }
        // Just inserted or already present.
        key = key.child_mut(part).unwrap_or_else(|| unreachable!());
    }
    key
}

/// How much of the tree to write (by default: all of it).
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteScope<'a> {
    /// Write only this key and (unless `node_only`) the keys below it.
    pub subtree: Option<&'a MbPath>,
    pub node_only: bool,
    /// VOLATILE data is not saved to disk ([MS-IMSA] 2.2.7) unless asked.
    pub include_volatile: bool,
}

/// Writes a document as MetaBase.xml. SECURE data is sealed with `key`,
/// which must be given when there is any.
pub fn write_metabase(
    doc: &Document,
    schema: &Schema,
    key: Option<&SecretKey>,
    scope: WriteScope<'_>,
) -> Result<String> {
    let mut out = String::with_capacity(64 * 1024);
    out.push('\u{feff}');
    out.push_str("<?xml version =\"1.0\"?>\n");
    out.push_str(&format!(
        "<configuration xmlns=\"{METABASE_NAMESPACE}\">\n<MBProperty>\n"
    ));
    write_global(&mut out, &doc.global);
    let writer = Writer { schema, key, scope };
    let mut path = MbPath::root();
    writer.key_tree(&mut out, &doc.root, &mut path)?;
    for (path, props) in &doc.inherited {
        let mut key = Key::default();
        for p in props {
            key.props.insert(p.id, p.clone());
        }
        writer.element(&mut out, INHERITED_ELEMENT, &path.to_string(), &key)?;
    }
    out.push_str("</MBProperty>\n");
    for extra in &doc.extra_elements {
        out.push_str(extra);
        out.push('\n');
    }
    out.push_str("</configuration>\n");
    Ok(out)
}

fn write_global(out: &mut String, global: &GlobalInfo) {
    let mut attrs: Vec<(String, String)> = vec![
        ("ChangeNumber".into(), global.change_number.to_string()),
        (
            "HistoryMajorVersionNumber".into(),
            global.history_major.to_string(),
        ),
    ];
    attrs.extend(global.extra.iter().cloned());
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    out.push_str("<IIS_Global\tLocation =\".\"\n");
    for (k, v) in attrs {
        out.push_str(&format!("\t\t{k}=\"{v}\"\n"));
    }
    out.push_str("\t>\n</IIS_Global>\n");
}

struct Writer<'a> {
    schema: &'a Schema,
    key: Option<&'a SecretKey>,
    scope: WriteScope<'a>,
}

impl Writer<'_> {
    fn key_tree(&self, out: &mut String, key: &Key, path: &mut MbPath) -> Result<()> {
        let in_scope = match self.scope.subtree {
            None => true,
            Some(sub) => path.starts_with(sub),
        };
        if in_scope {
            self.element(out, key.key_type(), &path.to_string(), key)?;
            if self.scope.node_only && self.scope.subtree.is_some() {
                return Ok(());
            }
        }
        for child in key.children() {
            let child_path = path.join(child.name())?;
            if let Some(sub) = self.scope.subtree {
                if !child_path.starts_with(sub) && !sub.starts_with(&child_path) {
                    continue;
                }
            }
            let saved = std::mem::replace(path, child_path);
            self.key_tree(out, child, path)?;
            *path = saved;
        }
        Ok(())
    }

    fn element(&self, out: &mut String, element: &str, location: &str, key: &Key) -> Result<()> {
        let mut attrs: Vec<(String, String)> = Vec::new();
        let mut customs: Vec<String> = Vec::new();
        for p in key.properties() {
            if p.id == KEY_TYPE_ID
                || (p.attributes.contains(Attributes::VOLATILE) && !self.scope.include_volatile)
            {
                continue;
            }
            let def = self.schema.property(p.id);
            match def.filter(|d| written_as_attribute(p, d)) {
                Some(def) => {
                    let text = self.value_text(location, p, Some(def))?;
                    attrs.push((def.name.clone(), text));
                }
                None => customs.push(self.custom(location, p)?),
            }
        }
        for s in key.sealed() {
            let mut escaped = String::new();
            escape_attr(&s.text, &mut escaped);
            match s.custom {
                None => attrs.push((s.name.clone(), escaped)),
                Some((data_type, user_type, attributes)) => customs.push(custom_element(
                    &s.name, s.id, &escaped, data_type, user_type, attributes,
                )),
            }
        }
        attrs.extend(key.unknown_attrs.iter().cloned());
        attrs.sort_by(|a, b| a.0.cmp(&b.0));

        out.push('<');
        out.push_str(element);
        out.push_str("\tLocation =\"");
        escape_attr(location, out);
        out.push_str("\"\n");
        for (name, text) in attrs {
            out.push_str("\t\t");
            out.push_str(&name);
            out.push_str("=\"");
            out.push_str(&text);
            out.push_str("\"\n");
        }
        out.push_str("\t>\n");
        for c in customs {
            out.push_str(&c);
        }
        for raw in &key.raw_children {
            out.push('\t');
            out.push_str(raw);
            out.push('\n');
        }
        out.push_str("</");
        out.push_str(element);
        out.push_str(">\n");
        Ok(())
    }

    /// The escaped attribute text of a value.
    fn value_text(
        &self,
        location: &str,
        p: &Property,
        def: Option<&PropertyDef>,
    ) -> Result<String> {
        let mut out = String::new();
        if p.attributes.contains(Attributes::SECURE) {
            let key = self.key.ok_or_else(|| {
                Error::Crypto(format!(
                    "{location}: cannot save SECURE property {} without a key",
                    self.schema.name_of(p.id)
                ))
            })?;
            out.push_str(&key.seal(p.id, &p.value)?);
            return Ok(out);
        }
        match &p.value {
            Value::MultiSz(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(MULTISZ_SEPARATOR);
                    }
                    // A leading blank would read back as indentation.
                    match item.strip_prefix(' ') {
                        Some(rest) => {
                            out.push_str("&#x20;");
                            escape_attr(rest, &mut out);
                        }
                        None => escape_attr(item, &mut out),
                    }
                }
            }
            value => {
                let text = match def {
                    Some(def) => def.format_text(value),
                    None => format_plain(value),
                };
                escape_attr(&text, &mut out);
            }
        }
        Ok(out)
    }

    fn custom(&self, location: &str, p: &Property) -> Result<String> {
        let name = p
            .custom_name
            .clone()
            .or_else(|| self.schema.property(p.id).map(|d| d.name.clone()))
            .unwrap_or_else(|| format!("UnknownName_{}", p.id));
        let value = self.value_text(location, p, None)?;
        Ok(custom_element(
            &name,
            p.id,
            &value,
            p.data_type(),
            p.user_type,
            p.attributes,
        ))
    }
}

/// Whether a data item is written as an attribute (it is the schema's
/// property, with the schema's type, attributes and user type) or needs a
/// `Custom` element to carry its own.
fn written_as_attribute(p: &Property, def: &PropertyDef) -> bool {
    p.custom_name.is_none()
        && p.data_type() == def.data_type()
        && p.attributes == def.attributes
        && p.user_type == def.user_type
}

fn custom_element(
    name: &str,
    id: u32,
    escaped_value: &str,
    data_type: DataType,
    user_type: UserType,
    attributes: Attributes,
) -> String {
    let mut escaped_name = String::new();
    escape_attr(name, &mut escaped_name);
    format!(
        "\t<Custom\n\t\tName=\"{escaped_name}\"\n\t\tID=\"{id}\"\n\t\tValue=\"{escaped_value}\"\n\t\tType=\"{data_type}\"\n\t\tUserType=\"{user_type}\"\n\t\tAttributes=\"{attributes}\"\n\t/>\n"
    )
}

#[cfg(test)]
mod tests;
