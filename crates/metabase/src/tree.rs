//! The key tree and every read of it: own and inherited data
//! ([MS-IMSA] 3.1.1: data set on a key closer to the root is inherited by
//! the keys below it when it carries METADATA_INHERIT), enumeration, and
//! GetDataPaths ([MS-IMSA] 3.1.4.17).
//!
//! Keys are shared between snapshots (`Arc`); a write copies only the keys
//! on the paths it changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::path::{CiName, CiStr, MbPath};
use crate::schema::{Schema, GENERIC_KEY_TYPE, KEY_TYPE_ID};
use crate::value::{Attributes, DataType, UserType, Value};

/// The token METADATA_INSERT_PATH replaces ([MS-IMSA] 2.2.7).
pub const INSERT_PATH_TOKEN: &str = "<%INSERT_PATH%>";

/// A data item set on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub id: u32,
    pub value: Value,
    pub attributes: Attributes,
    pub user_type: UserType,
    /// The name a `Custom` element gave data outside the schema.
    pub custom_name: Option<String>,
}

impl Property {
    /// A data item with the schema's attributes and user type for `id`
    /// (or plain server data when the schema does not know `id`).
    pub fn from_schema(schema: &Schema, id: u32, value: Value) -> Property {
        let (attributes, user_type) = match schema.property(id) {
            Some(def) => (def.attributes, def.user_type),
            None => (Attributes::NO_ATTRIBUTES, UserType::SERVER),
        };
        Property {
            id,
            value,
            attributes,
            user_type,
            custom_name: None,
        }
    }

    pub fn data_type(&self) -> DataType {
        self.value.data_type()
    }

    pub fn is_inheritable(&self) -> bool {
        self.attributes.contains(Attributes::INHERIT)
    }
}

/// A SECURE data item sealed under a key this machine does not have. It is
/// written back exactly as it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedValue {
    pub id: u32,
    pub name: String,
    /// The stored text, as read.
    pub text: String,
    /// For a `Custom` element: its Type, UserType and Attributes.
    pub custom: Option<(DataType, UserType, Attributes)>,
}

/// A key: its data, its children, and what a loaded file held that inetsrv
/// does not model (kept for the round trip).
#[derive(Clone, Debug, Default)]
pub struct Key {
    pub(crate) name: String,
    pub(crate) props: BTreeMap<u32, Property>,
    pub(crate) sealed: BTreeMap<u32, SealedValue>,
    /// Attributes outside the schema: (name, raw attribute text).
    pub(crate) unknown_attrs: Vec<(String, String)>,
    /// Child elements other than `Custom`, verbatim.
    pub(crate) raw_children: Vec<String>,
    pub(crate) children: BTreeMap<CiName, Arc<Key>>,
}

impl Key {
    pub(crate) fn new(name: &str, key_type: &str) -> Key {
        let mut key = Key {
            name: name.to_string(),
            ..Key::default()
        };
        key.set_key_type(key_type);
        key
    }

    pub(crate) fn set_key_type(&mut self, key_type: &str) {
        self.props.insert(
            KEY_TYPE_ID,
            Property {
                id: KEY_TYPE_ID,
                value: Value::String(key_type.to_string()),
                attributes: Attributes::NO_ATTRIBUTES,
                user_type: UserType::SERVER,
                custom_name: None,
            },
        );
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key type (MD_KEY_TYPE); a key without one is generic.
    pub fn key_type(&self) -> &str {
        self.props
            .get(&KEY_TYPE_ID)
            .and_then(|p| p.value.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(GENERIC_KEY_TYPE)
    }

    pub fn property(&self, id: u32) -> Option<&Property> {
        self.props.get(&id)
    }

    /// The data set on this key, by ID.
    pub fn properties(&self) -> impl Iterator<Item = &Property> {
        self.props.values()
    }

    pub fn sealed(&self) -> impl Iterator<Item = &SealedValue> {
        self.sealed.values()
    }

    pub fn child(&self, name: &str) -> Option<&Key> {
        self.children.get(CiStr::new(name)).map(|k| &**k)
    }

    /// The child keys, in case-insensitive name order.
    pub fn children(&self) -> impl Iterator<Item = &Key> {
        self.children.values().map(|k| &**k)
    }

    pub fn child_count(&self) -> usize {
        self.children.len()
    }

    pub(crate) fn child_mut(&mut self, name: &str) -> Option<&mut Key> {
        self.children.get_mut(CiStr::new(name)).map(Arc::make_mut)
    }

    /// A key copied from elsewhere (another server's metabase, read over
    /// the wire): made as it was there, without the schema's checks, which
    /// that server made.
    pub fn copied(name: &str, key_type: &str) -> Key {
        Key::new(name, key_type)
    }

    /// Adds data to a copied key, as it was there.
    pub fn put_copied(&mut self, property: Property) {
        self.props.insert(property.id, property);
    }

    /// Adds a copied child; the child's key, to fill in.
    pub fn child_copied(&mut self, key: Key) -> &mut Key {
        let slot = self
            .children
            .entry(CiName::new(key.name.clone()))
            .or_insert_with(|| Arc::new(key));
        Arc::make_mut(slot)
    }

    /// A child to fill in, if there is one of that name.
    pub fn child_copied_mut(&mut self, name: &str) -> Option<&mut Key> {
        self.child_mut(name)
    }

    pub(crate) fn insert_child(&mut self, key: Key) {
        self.children
            .insert(CiName::new(key.name.clone()), Arc::new(key));
    }

    pub(crate) fn remove_child(&mut self, name: &str) -> Option<Arc<Key>> {
        self.children.remove(CiStr::new(name))
    }

    /// Keys in this subtree, this one included.
    pub fn subtree_len(&self) -> usize {
        1 + self.children().map(Key::subtree_len).sum::<usize>()
    }
}

/// How a read treats inheritance (the METADATA_INHERIT and
/// METADATA_PARTIAL_PATH attributes of a Get, [MS-IMSA] 2.2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetMode {
    /// Only data set on the key itself.
    Own,
    /// Data set on the key, or inheritable data set above it.
    Inherited,
    /// As `Inherited`, and a path that does not exist (in whole) still
    /// inherits from its deepest existing ancestor.
    PartialPath,
}

/// A read's answer: the value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub id: u32,
    pub name: String,
    pub value: Value,
    /// The stored attributes, plus METADATA_ISINHERITED when inherited.
    pub attributes: Attributes,
    pub user_type: UserType,
    /// The key the value is set on.
    pub defined_at: MbPath,
    pub inherited: bool,
}

impl Resolved {
    pub fn data_type(&self) -> DataType {
        self.value.data_type()
    }

    pub fn is_secure(&self) -> bool {
        self.attributes.contains(Attributes::SECURE)
    }
}

/// A consistent view of the whole metabase: the key tree and the schema it
/// was validated against.
#[derive(Clone, Debug)]
pub struct Tree {
    pub(crate) root: Arc<Key>,
    pub(crate) schema: Arc<Schema>,
}

impl Tree {
    pub fn new(root: Key, schema: Arc<Schema>) -> Tree {
        Tree {
            root: Arc::new(root),
            schema,
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn schema_arc(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn root(&self) -> &Key {
        &self.root
    }

    pub fn find(&self, path: &MbPath) -> Option<&Key> {
        let mut key = &*self.root;
        for part in path.parts() {
            key = key.child(part)?;
        }
        Some(key)
    }

    pub fn exists(&self, path: &MbPath) -> bool {
        self.find(path).is_some()
    }

    pub fn key(&self, path: &MbPath) -> Result<&Key> {
        self.find(path)
            .ok_or_else(|| Error::PathNotFound(path.to_string()))
    }

    /// The key at `path`, checked to be of type `expected`. An object model
    /// that addresses keys as classes uses this: an IIsWebServer object at
    /// `/LM/W3SVC` is refused because that key is the IIsWebService (the
    /// IIS WMI Provider seed's example).
    pub fn expect_key_type(&self, path: &MbPath, expected: &str) -> Result<&Key> {
        let key = self.key(path)?;
        if key.key_type().eq_ignore_ascii_case(expected) {
            Ok(key)
        } else {
            Err(Error::KeyTypeMismatch {
                path: path.to_string(),
                expected: expected.to_string(),
                actual: key.key_type().to_string(),
            })
        }
    }

    /// The path with each name as the key stores it (its own case).
    pub fn canonical(&self, path: &MbPath) -> Option<MbPath> {
        let mut key = &*self.root;
        let mut names = Vec::with_capacity(path.depth());
        for part in path.parts() {
            key = key.child(part)?;
            names.push(key.name.clone());
        }
        MbPath::from_parts(names).ok()
    }

    /// The keys from the root down `path`, as far as they exist.
    fn chain<'a>(&'a self, path: &MbPath) -> Vec<&'a Key> {
        let mut chain = Vec::with_capacity(path.depth() + 1);
        let mut key = &*self.root;
        chain.push(key);
        for part in path.parts() {
            match key.child(part) {
                Some(child) => {
                    key = child;
                    chain.push(key);
                }
                None => break,
            }
        }
        chain
    }

    /// Finds data `id` for `path` without copying it: the item and the
    /// depth of the key it is set on. The nearest inheritable setting above
    /// the key wins; settings above it without METADATA_INHERIT are passed
    /// over, not obeyed.
    pub fn lookup(
        &self,
        path: &MbPath,
        id: u32,
        mode: GetMode,
    ) -> Result<Option<(&Property, usize)>> {
        let mut key = &*self.root;
        let mut found: Option<(&Property, usize)> = None;
        for (depth, part) in path.parts().iter().enumerate() {
            if mode != GetMode::Own {
                if let Some(p) = key.props.get(&id).filter(|p| p.is_inheritable()) {
                    found = Some((p, depth));
                }
            }
            match key.child(part) {
                Some(child) => key = child,
                // The deepest existing key is an ancestor of the path: its
                // inheritable data was taken above; its other data does not
                // apply.
                None if mode == GetMode::PartialPath => return Ok(found),
                None => return Err(Error::PathNotFound(path.to_string())),
            }
        }
        if let Some(p) = key.props.get(&id) {
            return Ok(Some((p, path.depth())));
        }
        Ok(found)
    }

    /// Reads data `id` at `path`.
    pub fn get(&self, path: &MbPath, id: u32, mode: GetMode) -> Result<Resolved> {
        match self.lookup(path, id, mode)? {
            Some((property, depth)) => Ok(self.resolved(path, property, depth)),
            None => {
                if let Some(key) = self.find(path) {
                    if key.sealed.contains_key(&id) {
                        return Err(Error::Sealed {
                            path: path.to_string(),
                            property: self.schema.name_of(id),
                        });
                    }
                }
                Err(Error::DataNotFound {
                    path: path.to_string(),
                    property: self.schema.name_of(id),
                })
            }
        }
    }

    /// The value in force at `path`: set or inherited, else the schema's
    /// default. This is what the server acts on.
    pub fn effective(&self, path: &MbPath, id: u32) -> Option<Value> {
        match self.lookup(path, id, GetMode::PartialPath) {
            Ok(Some((p, _))) => Some(p.value.clone()),
            _ => self.schema.property(id).and_then(|d| d.default_value()),
        }
    }

    /// [`Tree::effective`] for a DWORD (BOOL, flags) property.
    pub fn effective_dword(&self, path: &MbPath, id: u32) -> Option<u32> {
        self.effective(path, id).and_then(|v| v.as_dword())
    }

    fn resolved(&self, path: &MbPath, property: &Property, depth: usize) -> Resolved {
        let inherited = depth < path.depth();
        let defined = MbPath::from_parts(path.parts()[..depth].iter().cloned()).unwrap_or_default();
        let defined_at = self.canonical(&defined).unwrap_or(defined);
        let mut value = property.value.clone();
        if property.attributes.contains(Attributes::INSERT_PATH) {
            let relative = path.parts()[depth..].join("/");
            match &mut value {
                Value::String(s) | Value::ExpandSz(s) => {
                    *s = s.replace(INSERT_PATH_TOKEN, &relative)
                }
                Value::MultiSz(items) => {
                    for s in items {
                        *s = s.replace(INSERT_PATH_TOKEN, &relative);
                    }
                }
                _ => {}
            }
        }
        let mut attributes = property.attributes;
        if inherited {
            attributes = attributes.union(Attributes::ISINHERITED);
        }
        Resolved {
            id: property.id,
            name: property
                .custom_name
                .clone()
                .unwrap_or_else(|| self.schema.name_of(property.id)),
            value,
            attributes,
            user_type: property.user_type,
            defined_at,
            inherited,
        }
    }

    /// All data at `path` (R_EnumData / R_GetAllData): what is set on the
    /// key, and with inheritance, what it inherits. Ordered by ID.
    pub fn enum_data(&self, path: &MbPath, mode: GetMode) -> Result<Vec<Resolved>> {
        let chain = self.chain(path);
        let complete = chain.len() == path.depth() + 1;
        if !complete && mode != GetMode::PartialPath {
            return Err(Error::PathNotFound(path.to_string()));
        }
        let mut found: BTreeMap<u32, (&Property, usize)> = BTreeMap::new();
        for (depth, key) in chain.iter().enumerate() {
            let own = complete && depth == path.depth();
            if !own && mode == GetMode::Own {
                continue;
            }
            for p in key.props.values() {
                if own || p.is_inheritable() {
                    found.insert(p.id, (p, depth));
                }
            }
        }
        Ok(found
            .into_values()
            .map(|(p, depth)| self.resolved(path, p, depth))
            .collect())
    }

    /// GetDataPaths ([MS-IMSA] 3.1.4.17): `path` itself when data `id` is
    /// found there (set or inherited), then every key below it that sets
    /// `id` itself. `data_type` narrows the match.
    pub fn data_paths(
        &self,
        path: &MbPath,
        id: u32,
        data_type: Option<DataType>,
    ) -> Result<Vec<MbPath>> {
        let start = self.key(path)?;
        let start_path = self.canonical(path).unwrap_or_else(|| path.clone());
        let matches = |p: &Property| data_type.is_none_or(|t| p.data_type() == t);
        let mut out = Vec::new();
        if let Some((p, _)) = self.lookup(path, id, GetMode::Inherited)? {
            if matches(p) {
                out.push(start_path.clone());
            }
        }
        let mut stack: Vec<(MbPath, &Key)> = start
            .children
            .values()
            .rev()
            .map(|k| (start_path.join(&k.name).unwrap_or_default(), &**k))
            .collect();
        while let Some((p, key)) = stack.pop() {
            if key.props.get(&id).is_some_and(&matches) {
                out.push(p.clone());
            }
            for child in key.children.values().rev() {
                stack.push((p.join(&child.name).unwrap_or_default(), child));
            }
        }
        Ok(out)
    }

    /// Visits `path` and every key below it, parents before children,
    /// children in name order.
    pub fn walk<'a>(
        &'a self,
        path: &MbPath,
        mut visit: impl FnMut(&MbPath, &'a Key),
    ) -> Result<()> {
        let start = self.key(path)?;
        let start_path = self.canonical(path).unwrap_or_else(|| path.clone());
        let mut stack = vec![(start_path, start)];
        while let Some((p, key)) = stack.pop() {
            visit(&p, key);
            for child in key.children.values().rev() {
                stack.push((p.join(&child.name).unwrap_or_default(), child));
            }
        }
        Ok(())
    }

    /// The names and key types of the keys directly below `path`.
    pub fn child_keys(&self, path: &MbPath) -> Result<Vec<(String, String)>> {
        Ok(self
            .key(path)?
            .children()
            .map(|k| (k.name.clone(), k.key_type().to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> MbPath {
        MbPath::parse(s).unwrap()
    }

    /// /LM/W3SVC (AccessFlags=1 INHERIT, ServerComment="svc" not inheritable)
    ///   /1 (ServerComment="site" INHERIT)
    ///     /ROOT (AccessFlags=3)
    ///       /images
    fn sample() -> Tree {
        let schema = Schema::standard();
        let prop = |id, value, attributes| Property {
            id,
            value,
            attributes,
            user_type: UserType::SERVER,
            custom_name: None,
        };
        let mut images = Key::new("images", "IIsWebDirectory");
        images.props.insert(
            3001,
            prop(
                3001,
                Value::String("/srv/<%INSERT_PATH%>".into()),
                Attributes(0x41),
            ),
        );
        let mut root_vdir = Key::new("ROOT", "IIsWebVirtualDir");
        root_vdir
            .props
            .insert(6016, prop(6016, Value::Dword(3), Attributes::INHERIT));
        root_vdir.insert_child(images);
        let mut site = Key::new("1", "IIsWebServer");
        site.props.insert(
            1015,
            prop(1015, Value::String("site".into()), Attributes::INHERIT),
        );
        site.insert_child(root_vdir);
        let mut svc = Key::new("W3SVC", "IIsWebService");
        svc.props
            .insert(6016, prop(6016, Value::Dword(1), Attributes::INHERIT));
        svc.props.insert(
            1015,
            prop(1015, Value::String("svc".into()), Attributes::NO_ATTRIBUTES),
        );
        svc.props.insert(
            6006,
            prop(6006, Value::String("index.htm".into()), Attributes::INHERIT),
        );
        svc.insert_child(site);
        let mut lm = Key::new("LM", "IIsComputer");
        lm.insert_child(svc);
        let mut root = Key::new("", "IIS_ROOT");
        root.insert_child(lm);
        Tree::new(root, schema)
    }

    #[test]
    fn own_versus_inherited() {
        let t = sample();
        let r = t
            .get(&p("/LM/W3SVC/1/ROOT"), 6016, GetMode::Inherited)
            .unwrap();
        assert_eq!((r.value, r.inherited), (Value::Dword(3), false));
        assert!(!r.attributes.contains(Attributes::ISINHERITED));
        let r = t.get(&p("/lm/w3svc/1"), 6016, GetMode::Inherited).unwrap();
        assert_eq!(r.value, Value::Dword(1));
        assert!(r.inherited && r.attributes.contains(Attributes::ISINHERITED));
        assert_eq!(r.defined_at.to_string(), "/LM/W3SVC");
        assert!(matches!(
            t.get(&p("/LM/W3SVC/1"), 6016, GetMode::Own),
            Err(Error::DataNotFound { .. })
        ));
    }

    #[test]
    fn non_inheritable_data_is_passed_over() {
        let t = sample();
        // ServerComment on W3SVC lacks INHERIT: ROOT inherits the site's.
        let r = t
            .get(&p("/LM/W3SVC/1/ROOT"), 1015, GetMode::Inherited)
            .unwrap();
        assert_eq!(r.value, Value::String("site".into()));
        assert_eq!(r.defined_at.to_string(), "/LM/W3SVC/1");
        // And W3SVC's own non-inheritable value is still its own.
        let r = t.get(&p("/LM/W3SVC"), 1015, GetMode::Inherited).unwrap();
        assert_eq!(r.value, Value::String("svc".into()));
    }

    #[test]
    fn nearest_setting_wins_at_depth() {
        let t = sample();
        let r = t
            .get(&p("/LM/W3SVC/1/ROOT/images"), 6016, GetMode::Inherited)
            .unwrap();
        assert_eq!(r.value, Value::Dword(3));
        assert_eq!(r.defined_at.to_string(), "/LM/W3SVC/1/ROOT");
    }

    #[test]
    fn partial_paths() {
        let t = sample();
        let missing = p("/LM/W3SVC/1/ROOT/nope/deeper");
        assert!(matches!(
            t.get(&missing, 6016, GetMode::Inherited),
            Err(Error::PathNotFound(_))
        ));
        let r = t.get(&missing, 6016, GetMode::PartialPath).unwrap();
        assert_eq!(r.value, Value::Dword(3));
        assert!(r.inherited);
        // Non-inheritable data of the deepest existing key does not apply.
        let r = t.get(&p("/LM/W3SVC/none"), 1015, GetMode::PartialPath);
        assert!(matches!(r, Err(Error::DataNotFound { .. })));
    }

    #[test]
    fn insert_path() {
        let t = sample();
        let r = t
            .get(&p("/LM/W3SVC/1/ROOT/images"), 3001, GetMode::Inherited)
            .unwrap();
        assert_eq!(r.value, Value::String("/srv/".into()));
        let r = t
            .get(
                &p("/LM/W3SVC/1/ROOT/images/a/b"),
                3001,
                GetMode::PartialPath,
            )
            .unwrap();
        assert_eq!(r.value, Value::String("/srv/a/b".into()));
    }

    #[test]
    fn enumeration() {
        let t = sample();
        let own: Vec<u32> = t
            .enum_data(&p("/LM/W3SVC/1/ROOT"), GetMode::Own)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(own, vec![KEY_TYPE_ID, 6016]);
        let all = t
            .enum_data(&p("/LM/W3SVC/1/ROOT"), GetMode::Inherited)
            .unwrap();
        let ids: Vec<(u32, bool)> = all.iter().map(|r| (r.id, r.inherited)).collect();
        // KeyType is never inherited (not INHERIT); ServerComment from the
        // site, DefaultDoc from the service, AccessFlags own.
        assert_eq!(
            ids,
            vec![(1002, false), (1015, true), (6006, true), (6016, false)]
        );
    }

    #[test]
    fn get_data_paths() {
        let t = sample();
        let paths: Vec<String> = t
            .data_paths(&p("/LM/W3SVC"), 6016, None)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(paths, vec!["/LM/W3SVC", "/LM/W3SVC/1/ROOT"]);
        // The start key counts when it only inherits.
        let paths = t.data_paths(&p("/LM/W3SVC/1"), 6016, None).unwrap();
        assert_eq!(paths.len(), 2);
        let none = t
            .data_paths(&p("/LM/W3SVC"), 6016, Some(DataType::String))
            .unwrap();
        assert!(none.is_empty());
        assert!(t.data_paths(&p("/LM/X"), 6016, None).is_err());
    }

    #[test]
    fn effective_values_fall_back_to_schema_defaults() {
        let t = sample();
        // ServerAutoStart is set nowhere: the schema default (TRUE).
        assert_eq!(t.effective_dword(&p("/LM/W3SVC/1"), 1017), Some(1));
        assert_eq!(t.effective_dword(&p("/LM/W3SVC/1/ROOT"), 6016), Some(3));
    }

    #[test]
    fn walk_order_and_canonical_names() {
        let t = sample();
        let mut seen = Vec::new();
        t.walk(&p("/lm/w3svc"), |path, _| seen.push(path.to_string()))
            .unwrap();
        assert_eq!(
            seen,
            vec![
                "/LM/W3SVC",
                "/LM/W3SVC/1",
                "/LM/W3SVC/1/ROOT",
                "/LM/W3SVC/1/ROOT/images"
            ]
        );
    }
}
