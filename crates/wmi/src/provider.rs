//! Instances over a metabase snapshot. Every key below /LM whose key type
//! has classes is one instance of its element class and one of its setting
//! class, named by its path below /LM (`W3SVC/1/ROOT`; `/LM` itself is
//! `LM`). Values are read when asked for, so a query touches only the
//! properties it names; a setting's value is the one in force at the key —
//! set there, inherited, or the schema's default — as ADSI reports it.

use metabase::ipsec::IpSecurity;
use metabase::{Key, MbPath, Snapshot, Value};

use crate::classes::{AssocKind, ClassKind, ClassModel, Source, WmiClass};
use crate::error::{Result, WbemStatus, WmiError};
use crate::path::ObjectPath;
use crate::value::{CimType, EmbeddedObject, WmiValue};
use crate::wql::{self, Expr, Literal, Op, Query};

/// One instance: its class and the key it stands for.
#[derive(Clone, Debug)]
pub struct InstanceRef<'m> {
    pub class: &'m WmiClass,
    pub path: MbPath,
}

/// An instance with its values, as returned to a client.
#[derive(Clone, Debug)]
pub struct Instance {
    pub class: String,
    /// The relative object path, `IIsWebServerSetting.Name="W3SVC/1"`.
    pub relpath: String,
    pub properties: Vec<(String, WmiValue)>,
}

impl Instance {
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("__CLASS".into(), self.class.clone().into());
        map.insert("__RELPATH".into(), self.relpath.clone().into());
        for (k, v) in &self.properties {
            map.insert(k.clone(), v.to_json());
        }
        serde_json::Value::Object(map)
    }

    pub fn get(&self, name: &str) -> Option<&WmiValue> {
        self.properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// One association an instance takes part in.
#[derive(Clone, Debug)]
pub struct Link<'m> {
    pub association: InstanceRef<'m>,
    /// The role the instance plays (`Element`, `GroupComponent`, …).
    pub role: &'static str,
    pub other_role: &'static str,
    pub other: InstanceRef<'m>,
}

/// What a query returned.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// The properties asked for (`None` for `*`).
    pub columns: Option<Vec<String>>,
    pub instances: Vec<Instance>,
}

/// The provider's view of one metabase snapshot.
pub struct Provider<'a> {
    pub model: &'a ClassModel,
    pub snapshot: &'a Snapshot,
    /// Show SECURE values (passwords) instead of masking them.
    pub show_secrets: bool,
    /// The backups, for IIsBackup (the caller lists them: they are files,
    /// not metabase keys).
    pub backups: Vec<metabase::BackupInfo>,
}

const MASK: &str = "**********";

/// The `/LM` key.
fn lm() -> MbPath {
    MbPath::parse("/LM").unwrap_or_default()
}

impl<'a> Provider<'a> {
    pub fn new(model: &'a ClassModel, snapshot: &'a Snapshot) -> Provider<'a> {
        Provider {
            model,
            snapshot,
            show_secrets: false,
            backups: Vec::new(),
        }
    }

    /// The paths of the keys below /LM (and /LM itself) whose key type is
    /// one of `wanted`, each with the index of its type in `wanted`.
    /// Paths are built only for the keys that match.
    fn keys_of_types(&self, wanted: &[&str]) -> Vec<(usize, MbPath)> {
        fn visit<'k>(
            key: &'k Key,
            parts: &mut Vec<&'k str>,
            wanted: &[&str],
            out: &mut Vec<(usize, MbPath)>,
        ) {
            if let Some(i) = wanted
                .iter()
                .position(|w| w.eq_ignore_ascii_case(key.key_type()))
            {
                if let Ok(path) = MbPath::from_parts(parts.iter().copied()) {
                    out.push((i, path));
                }
            }
            for child in key.children() {
                parts.push(child.name());
                visit(child, parts, wanted, out);
                parts.pop();
            }
        }
        let mut out = Vec::new();
        if let Some(lm_key) = self.snapshot.find(&lm()) {
            let mut parts = vec!["LM"];
            visit(lm_key, &mut parts, wanted, &mut out);
        }
        out
    }

    /// A class by name, or WBEM_E_INVALID_CLASS.
    pub fn class(&self, name: &str) -> Result<&'a WmiClass> {
        self.model.class(name).ok_or_else(|| {
            WmiError::new(
                WbemStatus::InvalidClass,
                format!("there is no class {name} in root/MicrosoftIISv2"),
            )
        })
    }

    /// Every instance of `class` and of the classes derived from it.
    pub fn instances_of(&self, class: &str) -> Result<Vec<InstanceRef<'a>>> {
        self.class(class)?;
        let model: &'a ClassModel = self.model;
        // Per class: the key type of the keys that are its instances, and
        // for a containment association the key type of their parent.
        let mut plan: Vec<(&'a WmiClass, &'a str, Option<&'a str>)> = Vec::new();
        for c in model.descendants(class) {
            match (&c.association, &c.key_type) {
                (Some((AssocKind::ElementSetting, element, _)), _) => plan.push((c, element, None)),
                (Some((AssocKind::Component, group, part)), _) => {
                    plan.push((c, part, Some(group.as_str())))
                }
                (None, Some(key_type)) => plan.push((c, key_type, None)),
                (None, None) => {}
            }
        }
        let mut wanted: Vec<&str> = Vec::new();
        for (_, t, _) in &plan {
            if !wanted.iter().any(|w| w.eq_ignore_ascii_case(t)) {
                wanted.push(t);
            }
        }
        // One walk finds the keys of every class asked for; instances come
        // class by class, as WMI enumerates them.
        let found = self.keys_of_types(&wanted);
        let mut out = Vec::with_capacity(found.len());
        for (class, key_type, parent_type) in plan {
            let i = wanted
                .iter()
                .position(|w| w.eq_ignore_ascii_case(key_type))
                .unwrap_or(usize::MAX);
            for (_, path) in found.iter().filter(|(w, _)| *w == i) {
                if let Some(parent_type) = parent_type {
                    let parent_ok = path
                        .parent()
                        .and_then(|p| self.snapshot.find(&p).map(|k| k.key_type().to_string()))
                        .is_some_and(|t| t.eq_ignore_ascii_case(parent_type));
                    if !parent_ok {
                        continue;
                    }
                }
                out.push(InstanceRef {
                    class,
                    path: path.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The instance an object path names.
    pub fn resolve(&self, text: &str) -> Result<InstanceRef<'a>> {
        let path = ObjectPath::parse(text)?;
        let class = self.class(&path.class)?;
        if let Some((kind, _, _)) = &class.association {
            return self.resolve_association(class, *kind, &path, text);
        }
        if !path.more_keys.is_empty() {
            return Err(WmiError::new(
                WbemStatus::InvalidObjectPath,
                format!("{} has one key, Name", class.name),
            ));
        }
        let Some((key_name, value)) = path.key else {
            return Err(WmiError::new(
                WbemStatus::InvalidObjectPath,
                format!("'{text}' names the class, not an instance: add .Name=\"…\""),
            ));
        };
        if let Some(k) = &key_name {
            if !k.eq_ignore_ascii_case("Name") {
                return Err(WmiError::new(
                    WbemStatus::InvalidObjectPath,
                    format!("the key of {} is Name, not {k}", class.name),
                ));
            }
        }
        let not_found = || {
            WmiError::new(
                WbemStatus::NotFound,
                format!("there is no {} named '{value}'", class.name),
            )
        };
        let Some(key_type) = &class.key_type else {
            return Err(not_found());
        };
        let mb_path = key_path(&value).ok_or_else(not_found)?;
        let key = self.snapshot.find(&mb_path).ok_or_else(not_found)?;
        if !key.key_type().eq_ignore_ascii_case(key_type) {
            // The seed's Susan example: /LM/W3SVC is not an IIsWebServer.
            return Err(WmiError::new(
                WbemStatus::NotFound,
                format!(
                    "'{value}' is a key of type {}, not {key_type}: there is no {} there",
                    if key.key_type().is_empty() {
                        "(none)"
                    } else {
                        key.key_type()
                    },
                    class.name
                ),
            ));
        }
        let canonical = self.snapshot.canonical(&mb_path).unwrap_or(mb_path);
        Ok(InstanceRef {
            class,
            path: canonical,
        })
    }

    /// An association instance by its two references.
    fn resolve_association(
        &self,
        class: &'a WmiClass,
        kind: AssocKind,
        path: &ObjectPath,
        text: &str,
    ) -> Result<InstanceRef<'a>> {
        let roles = match kind {
            AssocKind::ElementSetting => ["Element", "Setting"],
            AssocKind::Component => ["GroupComponent", "PartComponent"],
        };
        let (Some(first), Some(second)) = (path.key_value(roles[0]), path.key_value(roles[1]))
        else {
            return Err(WmiError::new(
                WbemStatus::InvalidObjectPath,
                format!("{} is named by {} and {}", class.name, roles[0], roles[1]),
            ));
        };
        // The instance lives at the second end's key (the setting, or the
        // part); both ends must be what the association relates.
        let end = self.resolve(second)?;
        let inst = InstanceRef {
            class,
            path: end.path.clone(),
        };
        let matches = |role: &str, given: &str| {
            let expected = self.reference(&inst, role);
            let given = self.resolve(given).ok().map(|g| self.relpath(&g));
            expected.is_some() && expected == given
        };
        if matches(roles[0], first) && matches(roles[1], second) {
            Ok(inst)
        } else {
            Err(WmiError::new(
                WbemStatus::NotFound,
                format!("there is no {} instance {text}", class.name),
            ))
        }
    }

    /// The instance's relative object path; an association's names both
    /// its ends: `A_B.Role1="A.Name=\"…\"",Role2="…"`.
    pub fn relpath(&self, inst: &InstanceRef<'_>) -> String {
        if inst.class.association.is_some() {
            let keys: Vec<String> = inst
                .class
                .properties
                .iter()
                .filter(|p| p.key)
                .map(|p| {
                    let target = self.reference(inst, &p.name).unwrap_or_default();
                    let escaped = target.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("{}=\"{escaped}\"", p.name)
                })
                .collect();
            return format!("{}.{}", inst.class.name, keys.join(","));
        }
        ObjectPath::format(&inst.class.name, "Name", &name_of(&inst.path))
    }

    /// The object path at one end (`role`) of an association instance.
    pub fn reference(&self, inst: &InstanceRef<'_>, role: &str) -> Option<String> {
        let (kind, first, second) = inst.class.association.as_ref()?;
        let setting = format!("{first}{}", crate::classes::SETTING_SUFFIX);
        let (class, path) = match (kind, role.to_ascii_lowercase().as_str()) {
            (AssocKind::ElementSetting, "element") => (first.as_str(), inst.path.clone()),
            (AssocKind::ElementSetting, "setting") => (
                if second.eq_ignore_ascii_case(&setting) {
                    second.as_str()
                } else {
                    setting.as_str()
                },
                inst.path.clone(),
            ),
            (AssocKind::Component, "groupcomponent") => (first.as_str(), inst.path.parent()?),
            (AssocKind::Component, "partcomponent") => (second.as_str(), inst.path.clone()),
            _ => return None,
        };
        let class = self.model.class(class)?;
        Some(ObjectPath::format(&class.name, "Name", &name_of(&path)))
    }

    /// One property's value; WBEM_E_INVALID_PROPERTY if the class has none
    /// of that name. System properties (__CLASS, …) are answered too.
    pub fn value(&self, inst: &InstanceRef<'_>, name: &str) -> Result<WmiValue> {
        if name.starts_with("__") {
            return self.system_property(inst, name);
        }
        let prop = inst.class.property(name).ok_or_else(|| {
            WmiError::new(
                WbemStatus::InvalidProperty,
                format!("{} has no property {name}", inst.class.name),
            )
        })?;
        Ok(match &prop.source {
            Source::Name => WmiValue::String(name_of(&inst.path)),
            Source::Reference => self
                .reference(inst, &prop.name)
                .map_or(WmiValue::Null, WmiValue::String),
            Source::Empty => WmiValue::Null,
            Source::Flag { id, mask } => match self.snapshot.effective_dword(&inst.path, *id) {
                Some(v) => WmiValue::Bool(v & mask == *mask && *mask != 0),
                None => WmiValue::Null,
            },
            Source::Metabase(id) => {
                let secure = self
                    .snapshot
                    .schema()
                    .property(*id)
                    .is_some_and(|d| d.is_secure());
                match self.snapshot.effective(&inst.path, *id) {
                    None => WmiValue::Null,
                    Some(_) if secure && !self.show_secrets => WmiValue::String(MASK.into()),
                    Some(v) => convert(&prop.ty.base, prop.ty.array, &prop.name, v),
                }
            }
        })
    }

    fn system_property(&self, inst: &InstanceRef<'_>, name: &str) -> Result<WmiValue> {
        let upper = name.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "__CLASS" => WmiValue::String(inst.class.name.clone()),
            "__RELPATH" => WmiValue::String(self.relpath(inst)),
            "__PATH" => WmiValue::String(format!(
                "\\\\.\\root\\MicrosoftIISv2:{}",
                self.relpath(inst)
            )),
            "__NAMESPACE" => WmiValue::String("root\\MicrosoftIISv2".into()),
            "__SUPERCLASS" => inst
                .class
                .superclass
                .clone()
                .map_or(WmiValue::Null, WmiValue::String),
            "__DERIVATION" => WmiValue::Array(
                self.model
                    .derivation(&inst.class.name)
                    .into_iter()
                    .map(WmiValue::String)
                    .collect(),
            ),
            _ => {
                return Err(WmiError::new(
                    WbemStatus::InvalidProperty,
                    format!("{name} is not a system property"),
                ))
            }
        })
    }

    /// The instance with the named properties (all of them for `None`).
    pub fn materialize(
        &self,
        inst: &InstanceRef<'_>,
        names: Option<&[String]>,
    ) -> Result<Instance> {
        let mut properties = Vec::new();
        match names {
            Some(list) => {
                for n in list {
                    properties.push((n.clone(), self.value(inst, n)?));
                }
            }
            None => {
                for p in &inst.class.properties {
                    properties.push((p.name.clone(), self.value(inst, &p.name)?));
                }
            }
        }
        Ok(Instance {
            class: inst.class.name.clone(),
            relpath: self.relpath(inst),
            properties,
        })
    }

    /// The IIsBackup instances.
    pub fn backup_instances(&self) -> Vec<Instance> {
        self.backups
            .iter()
            .map(|b| {
                let when = b
                    .modified
                    .map(dmtf_datetime)
                    .map_or(WmiValue::Null, WmiValue::String);
                Instance {
                    class: crate::classes::BACKUP_CLASS.into(),
                    relpath: crate::computer::backup_relpath(&b.name, b.version),
                    properties: vec![
                        ("Location".into(), WmiValue::String(b.name.clone())),
                        ("Version".into(), WmiValue::UInt32(b.version)),
                        ("DateTime".into(), when),
                        (
                            "PasswordProtected".into(),
                            WmiValue::Bool(b.password_protected),
                        ),
                    ],
                }
            })
            .collect()
    }

    /// GetObject: the instance at an object path, all its properties.
    pub fn get_object(&self, path: &str) -> Result<Instance> {
        let parsed = ObjectPath::parse(path)?;
        if let Some(class) = self.model.class(&parsed.class) {
            if class.kind == ClassKind::Backup {
                let (Some(location), Some(version)) =
                    (parsed.key_value("Location"), parsed.key_value("Version"))
                else {
                    return Err(WmiError::new(
                        WbemStatus::InvalidObjectPath,
                        "an IIsBackup is named by Location and Version: IIsBackup.Location=\"name\",Version=1",
                    ));
                };
                return self
                    .backup_instances()
                    .into_iter()
                    .find(|b| {
                        b.get("Location") == Some(&WmiValue::String(location.to_string()))
                            && b.get("Version").map(|v| v.to_string()).as_deref() == Some(version)
                    })
                    .ok_or_else(|| {
                        WmiError::new(
                            WbemStatus::NotFound,
                            format!("there is no backup {location} version {version}"),
                        )
                    });
            }
        }
        let inst = self.resolve(path)?;
        self.materialize(&inst, None)
    }

    /// Runs a WQL data query: SELECT, ASSOCIATORS OF or REFERENCES OF.
    pub fn query(&self, text: &str) -> Result<QueryResult> {
        match wql::parse_statement(text)? {
            wql::Statement::Select(query) => self.run(&query),
            wql::Statement::Assoc(query) => self.run_assoc(&query),
        }
    }

    /// The associations `src` takes part in: each association instance,
    /// the role `src` plays in it, the other role, and the other end.
    pub fn links(&self, src: &InstanceRef<'a>) -> Vec<Link<'a>> {
        let model: &'a ClassModel = self.model;
        let mut out = Vec::new();
        let Some(key_type) = src.class.key_type.as_deref() else {
            return out;
        };
        if src.class.association.is_some() {
            return out;
        }
        let element = model.class(key_type);
        let setting = model.class(&format!("{key_type}{}", crate::classes::SETTING_SUFFIX));
        let es = model.class(&format!(
            "{key_type}_{key_type}{}",
            crate::classes::SETTING_SUFFIX
        ));
        let at = |class: &'a WmiClass, path: &MbPath| InstanceRef {
            class,
            path: path.clone(),
        };
        match src.class.kind {
            ClassKind::Setting => {
                if let (Some(es), Some(element)) = (es, element) {
                    out.push(Link {
                        association: at(es, &src.path),
                        role: "Setting",
                        other_role: "Element",
                        other: at(element, &src.path),
                    });
                }
            }
            ClassKind::Element => {
                if let (Some(es), Some(setting)) = (es, setting) {
                    out.push(Link {
                        association: at(es, &src.path),
                        role: "Element",
                        other_role: "Setting",
                        other: at(setting, &src.path),
                    });
                }
                // The key above, when the schema's containment relates them.
                if let Some(parent) = src.path.parent().filter(|p| p.depth() >= 1) {
                    if let Some(parent_key) = self.snapshot.find(&parent) {
                        let parent_type = parent_key.key_type();
                        if let (Some(assoc), Some(parent_class)) = (
                            model.class(&format!("{parent_type}_{key_type}")),
                            model.class(parent_type),
                        ) {
                            if assoc.association.is_some() {
                                out.push(Link {
                                    association: at(assoc, &src.path),
                                    role: "PartComponent",
                                    other_role: "GroupComponent",
                                    other: at(parent_class, &parent),
                                });
                            }
                        }
                    }
                }
                // The keys directly below.
                if let Some(key) = self.snapshot.find(&src.path) {
                    for child in key.children() {
                        let child_type = child.key_type();
                        let (Some(assoc), Some(child_class)) = (
                            model.class(&format!("{key_type}_{child_type}")),
                            model.class(child_type),
                        ) else {
                            continue;
                        };
                        if assoc.association.is_none() {
                            continue;
                        }
                        if let Ok(child_path) = src.path.join(child.name()) {
                            out.push(Link {
                                association: at(assoc, &child_path),
                                role: "GroupComponent",
                                other_role: "PartComponent",
                                other: at(child_class, &child_path),
                            });
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn run_assoc(&self, q: &wql::AssocQuery) -> Result<QueryResult> {
        let src = self.resolve(&q.path).map_err(|mut e| {
            e.position = Some(q.path_position);
            e
        })?;
        for name in [&q.result_class, &q.assoc_class].into_iter().flatten() {
            if self.model.class(&name.text).is_none() {
                return Err(WmiError::at(
                    WbemStatus::InvalidClass,
                    name.position,
                    format!("there is no class {}", name.text),
                ));
            }
        }
        let is = |class: &str, filter: &Option<wql::Name>| {
            filter
                .as_ref()
                .is_none_or(|f| self.model.is_a(class, &f.text))
        };
        let role_is = |role: &str, filter: &Option<wql::Name>| {
            filter
                .as_ref()
                .is_none_or(|f| f.text.eq_ignore_ascii_case(role))
        };
        // Instances carry no qualifiers but on their classes: association
        // classes have Association, every other qualifier matches nothing.
        let assoc_qualifier_ok = q
            .required_assoc_qualifier
            .as_ref()
            .is_none_or(|n| n.text.eq_ignore_ascii_case("Association"));
        let qualifier_ok = q
            .required_qualifier
            .as_ref()
            .is_none_or(|n| q.references && n.text.eq_ignore_ascii_case("Association"));
        let mut rows: Vec<InstanceRef<'a>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        if assoc_qualifier_ok && qualifier_ok {
            for link in self.links(&src) {
                let assoc_class = link.association.class.name.as_str();
                if !role_is(link.role, &q.role) {
                    continue;
                }
                let row = if q.references {
                    if !is(assoc_class, &q.result_class) {
                        continue;
                    }
                    link.association
                } else {
                    if !is(assoc_class, &q.assoc_class)
                        || !is(&link.other.class.name, &q.result_class)
                        || !role_is(link.other_role, &q.result_role)
                    {
                        continue;
                    }
                    link.other
                };
                if seen.insert(self.relpath(&row)) {
                    rows.push(row);
                }
            }
        }
        let mut instances = Vec::new();
        if q.class_defs_only {
            let mut classes: Vec<&str> = Vec::new();
            for r in &rows {
                if !classes.contains(&r.class.name.as_str()) {
                    classes.push(&r.class.name);
                }
            }
            for c in classes {
                instances.push(Instance {
                    class: c.to_string(),
                    relpath: c.to_string(),
                    properties: Vec::new(),
                });
            }
        } else {
            for r in &rows {
                let keys: Vec<String> = r
                    .class
                    .properties
                    .iter()
                    .filter(|p| p.key)
                    .map(|p| p.name.clone())
                    .collect();
                instances.push(self.materialize(r, q.keys_only.then_some(keys.as_slice()))?);
            }
        }
        Ok(QueryResult {
            columns: None,
            instances,
        })
    }

    pub fn run(&self, query: &Query) -> Result<QueryResult> {
        let class = self.model.class(&query.class.text).ok_or_else(|| {
            WmiError::at(
                WbemStatus::InvalidClass,
                query.class.position,
                format!(
                    "there is no class {} in root/MicrosoftIISv2",
                    query.class.text
                ),
            )
        })?;
        if class.kind == ClassKind::Backup {
            return self.run_backups(class, query);
        }
        if class.kind == ClassKind::Event || query.within.is_some() {
            return Err(WmiError::at(
                WbemStatus::InvalidQuery,
                query.class.position,
                "an event query (an event class, WITHIN) is watched, not run: use `inetsrv wmi watch`",
            ));
        }
        // Names are checked against the queried class before anything runs.
        let columns: Option<Vec<String>> = match &query.properties {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for n in list {
                    out.push(self.check_property(class, n)?);
                }
                Some(out)
            }
        };
        if let Some(filter) = &query.filter {
            self.check_expr(class, filter)?;
        }
        let mut instances = Vec::new();
        for inst in self.instances_of(&class.name)? {
            if let Some(filter) = &query.filter {
                if !self.eval(&inst, filter)? {
                    continue;
                }
            }
            instances.push(self.materialize(&inst, columns.as_deref())?);
        }
        Ok(QueryResult { columns, instances })
    }

    fn run_backups(&self, class: &WmiClass, query: &Query) -> Result<QueryResult> {
        let columns: Option<Vec<String>> = match &query.properties {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|n| self.check_property(class, n))
                    .collect::<Result<_>>()?,
            ),
        };
        if let Some(filter) = &query.filter {
            self.check_expr(class, filter)?;
        }
        let mut instances = Vec::new();
        for inst in self.backup_instances() {
            if let Some(filter) = &query.filter {
                let get = |n: &str| inst.get(n).cloned().unwrap_or(WmiValue::Null);
                if !eval_with(self.model, &class.name, &get, filter)? {
                    continue;
                }
            }
            let inst = match &columns {
                None => inst,
                Some(cols) => Instance {
                    properties: cols
                        .iter()
                        .map(|c| (c.clone(), inst.get(c).cloned().unwrap_or(WmiValue::Null)))
                        .collect(),
                    ..inst
                },
            };
            instances.push(inst);
        }
        Ok(QueryResult { columns, instances })
    }

    fn check_property(&self, class: &WmiClass, name: &wql::Name) -> Result<String> {
        if name.text.starts_with("__") {
            const SYSTEM: [&str; 7] = [
                "__CLASS",
                "__RELPATH",
                "__PATH",
                "__NAMESPACE",
                "__SUPERCLASS",
                "__DERIVATION",
                "__THIS",
            ];
            return match SYSTEM.iter().find(|s| s.eq_ignore_ascii_case(&name.text)) {
                Some(s) => Ok(s.to_string()),
                None => Err(WmiError::at(
                    WbemStatus::InvalidQuery,
                    name.position,
                    format!("{} is not a system property", name.text),
                )),
            };
        }
        match class.property(&name.text) {
            Some(p) => Ok(p.name.clone()),
            None => Err(WmiError::at(
                WbemStatus::InvalidQuery,
                name.position,
                format!("{} has no property {}", class.name, name.text),
            )),
        }
    }

    fn check_expr(&self, class: &WmiClass, e: &Expr) -> Result<()> {
        match e {
            Expr::Compare { property, .. } | Expr::IsNull { property, .. } => {
                if property.text.eq_ignore_ascii_case("__THIS") {
                    return Err(WmiError::at(
                        WbemStatus::InvalidQuery,
                        property.position,
                        "__THIS is only tested with ISA",
                    ));
                }
                let name = self.check_property(class, property)?;
                if let Some(p) = class.property(&name) {
                    if (p.ty.array || matches!(p.ty.base, CimType::Object(_)))
                        && matches!(e, Expr::Compare { .. })
                    {
                        return Err(WmiError::at(
                            WbemStatus::InvalidQuery,
                            property.position,
                            format!(
                                "{} is {} and cannot be compared; test it with IS NULL or ISA",
                                p.name, p.ty
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Expr::Isa {
                property,
                class: target,
            } => {
                self.check_property(class, property)?;
                if self.model.class(&target.text).is_none() {
                    return Err(WmiError::at(
                        WbemStatus::InvalidClass,
                        target.position,
                        format!("there is no class {}", target.text),
                    ));
                }
                Ok(())
            }
            Expr::Not(inner) => self.check_expr(class, inner),
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.check_expr(class, a)?;
                self.check_expr(class, b)
            }
        }
    }

    fn eval(&self, inst: &InstanceRef<'_>, e: &Expr) -> Result<bool> {
        // A property a subclass lacks is NULL for it.
        let get = |name: &str| self.value(inst, name).unwrap_or(WmiValue::Null);
        eval_with(self.model, &inst.class.name, &get, e)
    }
}

/// Evaluates a WHERE clause for an object of class `this_class` whose
/// properties `get` gives (NULL for what it lacks).
pub fn eval_with(
    model: &ClassModel,
    this_class: &str,
    get: &dyn Fn(&str) -> WmiValue,
    e: &Expr,
) -> Result<bool> {
    Ok(match e {
        Expr::And(a, b) => {
            eval_with(model, this_class, get, a)? && eval_with(model, this_class, get, b)?
        }
        Expr::Or(a, b) => {
            eval_with(model, this_class, get, a)? || eval_with(model, this_class, get, b)?
        }
        Expr::Not(a) => !eval_with(model, this_class, get, a)?,
        Expr::IsNull { property, negated } => get(&property.text).is_null() != *negated,
        Expr::Isa { property, class } => {
            if property.text.eq_ignore_ascii_case("__THIS") {
                model.is_a(this_class, &class.text)
            } else {
                match get(&property.text) {
                    WmiValue::Object(o) => model.is_a(&o.class, &class.text),
                    WmiValue::String(s) if property.text.eq_ignore_ascii_case("__CLASS") => {
                        model.is_a(&s, &class.text)
                    }
                    WmiValue::Array(items) => items.iter().any(
                        |i| matches!(i, WmiValue::Object(o) if model.is_a(&o.class, &class.text)),
                    ),
                    _ => false,
                }
            }
        }
        Expr::Compare {
            property,
            op,
            value,
        } => compare(&get(&property.text), *op, value, property.position)?,
    })
}

/// `W3SVC/1` → `/LM/W3SVC/1`; `LM` → `/LM`.
fn key_path(name: &str) -> Option<MbPath> {
    let trimmed = name.trim_matches('/');
    if trimmed.eq_ignore_ascii_case("LM") {
        return Some(lm());
    }
    MbPath::parse_relaxed(trimmed).ok()
}

/// `/LM/W3SVC/1` → `W3SVC/1`; `/LM` → `LM`.
pub fn name_of(path: &MbPath) -> String {
    match path.relative_to(&lm()) {
        Some(rel) if !rel.is_empty() => rel,
        _ => "LM".to_string(),
    }
}

/// A WQL comparison; NULL compares false with everything.
fn compare(v: &WmiValue, op: Op, literal: &Literal, position: usize) -> Result<bool> {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (v, literal) {
        (WmiValue::Null, _) => return Ok(false),
        (WmiValue::String(s), Literal::String(l)) => {
            if op == Op::Like {
                return Ok(wql::like(s, l));
            }
            Some(s.to_lowercase().cmp(&l.to_lowercase()))
        }
        (WmiValue::UInt32(n), Literal::Int(l)) => Some(i64::from(*n).cmp(l)),
        (WmiValue::UInt32(n), Literal::Real(l)) => f64::from(*n).partial_cmp(l),
        (WmiValue::UInt32(n), Literal::Bool(b)) => Some(i64::from(*n).cmp(&i64::from(*b))),
        (WmiValue::UInt32(n), Literal::String(l)) => match l.trim().parse::<i64>() {
            Ok(l) => Some(i64::from(*n).cmp(&l)),
            Err(_) if op == Op::Like => return Ok(wql::like(&n.to_string(), l)),
            Err(_) => {
                return Err(WmiError::at(
                    WbemStatus::InvalidQuery,
                    position,
                    format!("'{l}' is not a number"),
                ))
            }
        },
        (WmiValue::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        (WmiValue::Bool(b), Literal::Int(l)) => Some(i64::from(*b).cmp(l)),
        (WmiValue::Bool(b), Literal::String(l)) => {
            let l = match l.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(WmiError::at(
                        WbemStatus::InvalidQuery,
                        position,
                        format!("'{l}' is not a boolean"),
                    ))
                }
            };
            Some(b.cmp(&l))
        }
        (WmiValue::String(s), Literal::Int(l)) => Some(s.to_lowercase().cmp(&l.to_string())),
        (WmiValue::String(s), Literal::Bool(l)) => {
            Some(s.to_lowercase().cmp(&l.to_string().to_lowercase()))
        }
        (WmiValue::String(s), Literal::Real(l)) => Some(s.to_lowercase().cmp(&l.to_string())),
        _ => {
            return Err(WmiError::at(
                WbemStatus::InvalidQuery,
                position,
                "the operator does not apply to this property's type",
            ))
        }
    };
    let Some(ord) = ordering else {
        return Ok(false);
    };
    Ok(match op {
        Op::Eq | Op::Like => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Gt => ord == Ordering::Greater,
        Op::Le => ord != Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    })
}

/// A metabase value as the property's CIM type.
fn convert(base: &CimType, array: bool, property: &str, value: Value) -> WmiValue {
    match (base, value) {
        (CimType::Boolean, Value::Dword(v)) => WmiValue::Bool(v != 0),
        (CimType::UInt32, Value::Dword(v)) => WmiValue::UInt32(v),
        (CimType::String, Value::String(s) | Value::ExpandSz(s)) if !array => WmiValue::String(s),
        (CimType::String, Value::MultiSz(v)) if array => {
            WmiValue::Array(v.into_iter().map(WmiValue::String).collect())
        }
        (CimType::UInt8, Value::Binary(b)) => WmiValue::Bytes(b),
        (CimType::Object(class), Value::Binary(b)) if class == "IPSecuritySetting" => {
            match IpSecurity::from_bytes(&b) {
                Some(list) => WmiValue::Object(EmbeddedObject {
                    class: class.clone(),
                    properties: vec![
                        (
                            "GrantByDefault".into(),
                            WmiValue::Bool(list.grant_by_default),
                        ),
                        (
                            "IPDeny".into(),
                            WmiValue::Array(
                                list.deny
                                    .iter()
                                    .map(|n| WmiValue::String(n.to_string()))
                                    .collect(),
                            ),
                        ),
                        (
                            "IPGrant".into(),
                            WmiValue::Array(
                                list.grant
                                    .iter()
                                    .map(|n| WmiValue::String(n.to_string()))
                                    .collect(),
                            ),
                        ),
                    ],
                }),
                None if b.is_empty() => WmiValue::Null,
                None => WmiValue::Bytes(b),
            }
        }
        (CimType::Object(class), Value::MultiSz(items)) => WmiValue::Array(
            items
                .iter()
                .map(|item| WmiValue::Object(embedded(class, property, item)))
                .collect(),
        ),
        (_, other) => WmiValue::String(metabase::schema::format_plain(&other)),
    }
}

/// One MULTISZ entry as its embedded object (`:80:` as a ServerBinding):
/// what a structured value's text form stands for.
pub fn embedded(class: &str, property: &str, item: &str) -> EmbeddedObject {
    let s = |v: &str| WmiValue::String(v.trim().to_string());
    let properties: Vec<(String, WmiValue)> = match class {
        "ServerBinding" => {
            let (ip, rest) = split_ip(item);
            let (port, host) = rest.split_once(':').unwrap_or((rest, ""));
            vec![
                ("Hostname".into(), s(host)),
                ("IP".into(), s(ip)),
                ("Port".into(), s(port)),
            ]
        }
        "SecureBinding" => {
            let (ip, rest) = split_ip(item);
            let port = rest.split(':').next().unwrap_or("");
            vec![("IP".into(), s(ip)), ("Port".into(), s(port))]
        }
        "ScriptMap" => {
            let mut f = item.splitn(4, ',');
            let ext = f.next().unwrap_or("");
            let exe = f.next().unwrap_or("");
            let flags = f.next().and_then(|x| x.trim().parse().ok()).unwrap_or(0);
            let verbs = f.next().unwrap_or("");
            vec![
                ("Extensions".into(), s(ext)),
                ("Flags".into(), WmiValue::UInt32(flags)),
                ("IncludedVerbs".into(), s(verbs)),
                ("ScriptProcessor".into(), s(exe)),
            ]
        }
        "HttpError" => {
            let mut f = item.splitn(4, ',');
            let code = f.next().unwrap_or("");
            let sub = f.next().unwrap_or("");
            let kind = f.next().unwrap_or("");
            let location = f.next().unwrap_or("");
            vec![
                ("HandlerLocation".into(), s(location)),
                ("HandlerType".into(), s(kind)),
                ("HttpErrorCode".into(), s(code)),
                ("HttpErrorSubcode".into(), s(sub)),
            ]
        }
        "HttpCustomHeader" => {
            let (k, v) = item.split_once(':').unwrap_or((item, ""));
            vec![("Keyname".into(), s(k)), ("Value".into(), s(v))]
        }
        "MimeMap" => {
            let (e, t) = item.split_once(',').unwrap_or((item, ""));
            vec![("Extension".into(), s(e)), ("MimeType".into(), s(t))]
        }
        _ => vec![(property.to_string(), s(item))],
    };
    EmbeddedObject {
        class: class.to_string(),
        properties,
    }
}

/// An embedded object as the MULTISZ entry it stands for (what
/// [`embedded`] reads), for writes that carry structured values as
/// objects (a PutInstance over MS-WMI); None for a class that is not one
/// of the structured values.
pub fn embedded_text(object: &EmbeddedObject) -> Option<String> {
    let get = |name: &str| match object.get(name) {
        Some(WmiValue::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    Some(match object.class.as_str() {
        c if c.eq_ignore_ascii_case("ServerBinding") => {
            format!("{}:{}:{}", get("IP"), get("Port"), get("Hostname"))
        }
        c if c.eq_ignore_ascii_case("SecureBinding") => format!("{}:{}:", get("IP"), get("Port")),
        c if c.eq_ignore_ascii_case("ScriptMap") => format!(
            "{},{},{},{}",
            get("Extensions"),
            get("ScriptProcessor"),
            get("Flags"),
            get("IncludedVerbs")
        ),
        c if c.eq_ignore_ascii_case("HttpError") => format!(
            "{},{},{},{}",
            get("HttpErrorCode"),
            get("HttpErrorSubcode"),
            get("HandlerType"),
            get("HandlerLocation")
        ),
        c if c.eq_ignore_ascii_case("HttpCustomHeader") => {
            format!("{}: {}", get("Keyname"), get("Value"))
        }
        c if c.eq_ignore_ascii_case("MimeMap") => {
            format!("{},{}", get("Extension"), get("MimeType"))
        }
        _ => return None,
    })
}

/// `IP:rest` where IP may be `[v6]` or empty.
fn split_ip(item: &str) -> (&str, &str) {
    if let Some(r) = item.strip_prefix('[') {
        if let Some(close) = r.find(']') {
            let rest = r[close + 1..].strip_prefix(':').unwrap_or(&r[close + 1..]);
            return (&item[..close + 2], rest);
        }
    }
    item.split_once(':').unwrap_or((item, ""))
}

/// Kinds of class that have instances.
pub fn has_instances(class: &WmiClass) -> bool {
    matches!(class.kind, ClassKind::Element | ClassKind::Setting)
}

/// A time as WMI's DMTF datetime, in UTC: `yyyymmddHHMMSS.000000+000`.
pub fn dmtf_datetime(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y%m%d%H%M%S.000000+000")
        .to_string()
}
