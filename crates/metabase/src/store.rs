//! The store: snapshot reads that never block, serialised writers, atomic
//! multi-key transactions validated against the schema, and change
//! notification (the IMSAdminBaseSink role).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::error::{Error, Result};
use crate::path::MbPath;
use crate::schema::{Schema, KEY_TYPE_ID};
use crate::tree::{GetMode, Key, Property, Tree};
use crate::value::{Attributes, Value};
use crate::xmlutil::check_xml_chars;

/// What happened to a key (MD_CHANGE_TYPE_* bits of the IIS admin sink,
/// from the IIS SDK's iiscnfg.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChangeKind(pub u32);

impl ChangeKind {
    pub const DELETE_OBJECT: ChangeKind = ChangeKind(0x01);
    pub const ADD_OBJECT: ChangeKind = ChangeKind(0x02);
    pub const SET_DATA: ChangeKind = ChangeKind(0x04);
    pub const DELETE_DATA: ChangeKind = ChangeKind(0x08);
    pub const RENAME_OBJECT: ChangeKind = ChangeKind(0x10);
    pub const RESTORE: ChangeKind = ChangeKind(0x20);

    pub fn contains(self, other: ChangeKind) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One key's change within a committed transaction (MD_CHANGE_OBJECT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: MbPath,
    pub kind: ChangeKind,
    /// The data IDs set or deleted on the key.
    pub ids: Vec<u32>,
    /// For a rename or move: where the key went.
    pub new_path: Option<MbPath>,
}

/// Everything one committed transaction changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The system change number after the commit ([MS-IMSA] 3.1.4.21).
    pub change_number: u64,
    pub changes: Vec<Change>,
    pub schema_changed: bool,
    /// Where the change came from (`edit-while-running`, `restore`, …),
    /// for logs; `None` for ordinary writes.
    pub origin: Option<String>,
}

impl ChangeBatch {
    /// True when `path` or a key below it changed.
    pub fn touches(&self, path: &MbPath) -> bool {
        self.changes.iter().any(|c| {
            c.path.starts_with(path) || c.new_path.as_ref().is_some_and(|n| n.starts_with(path))
        })
    }
}

/// A committed, immutable state of the metabase.
#[derive(Clone, Debug)]
pub struct Snapshot {
    tree: Tree,
    change_number: u64,
}

impl Snapshot {
    pub fn new(tree: Tree, change_number: u64) -> Snapshot {
        Snapshot {
            tree,
            change_number,
        }
    }

    pub fn change_number(&self) -> u64 {
        self.change_number
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }
}

impl Deref for Snapshot {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.tree
    }
}

/// Called inside the writer lock with the state about to be published; an
/// error abandons the transaction (nothing changes). Persistence hooks in
/// here, so a write is acknowledged only once it is durable.
pub trait CommitHook: Send {
    fn commit(&mut self, next: &Snapshot, batch: &ChangeBatch) -> Result<()>;
}

struct Shared {
    current: ArcSwap<Snapshot>,
    writer: Mutex<Option<Box<dyn CommitHook>>>,
    subscribers: Mutex<Vec<Sender<Arc<ChangeBatch>>>>,
}

/// The metabase store. Clones share one store.
#[derive(Clone)]
pub struct Metabase {
    shared: Arc<Shared>,
}

impl Metabase {
    pub fn new(snapshot: Snapshot) -> Metabase {
        Metabase {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(snapshot),
                writer: Mutex::new(None),
                subscribers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A store holding only the root and `/LM`, with the standard schema.
    pub fn empty() -> Metabase {
        let mut root = Key::new("", "IIS_ROOT");
        root.insert_child(Key::new("LM", "IIsComputer"));
        Metabase::new(Snapshot::new(Tree::new(root, Schema::standard()), 0))
    }

    pub fn set_commit_hook(&self, hook: Box<dyn CommitHook>) {
        *lock(&self.shared.writer) = Some(hook);
    }

    /// The current state. Never blocks; the snapshot stays consistent
    /// however long it is held.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// Receives every committed change from now on.
    pub fn subscribe(&self) -> Receiver<Arc<ChangeBatch>> {
        let (tx, rx) = mpsc::channel();
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    /// Runs `f` as one atomic transaction: either every change it makes is
    /// committed (and persisted, and notified) or, if it or the commit hook
    /// fails, none is. Writers are serialised; readers are not blocked.
    pub fn write<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        self.write_as(None, f)
    }

    /// [`Metabase::write`], labelling the change's origin for subscribers.
    pub fn write_as<R>(
        &self,
        origin: Option<&str>,
        f: impl FnOnce(&mut Txn) -> Result<R>,
    ) -> Result<R> {
        let mut writer = lock(&self.shared.writer);
        let current = self.shared.current.load_full();
        let mut txn = Txn {
            tree: current.tree.clone(),
            log: ChangeLog::default(),
            schema_changed: false,
        };
        let result = f(&mut txn)?;
        if txn.log.entries.is_empty() && !txn.schema_changed {
            return Ok(result);
        }
        let next = Snapshot::new(txn.tree, current.change_number + 1);
        let batch = ChangeBatch {
            change_number: next.change_number,
            changes: txn.log.entries,
            schema_changed: txn.schema_changed,
            origin: origin.map(str::to_string),
        };
        if let Some(hook) = writer.as_mut() {
            hook.commit(&next, &batch)?;
        }
        self.shared.current.store(Arc::new(next));
        drop(writer);
        self.notify(batch);
        Ok(result)
    }

    fn notify(&self, batch: ChangeBatch) {
        let batch = Arc::new(batch);
        lock(&self.shared.subscribers).retain(|tx| tx.send(batch.clone()).is_ok());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer leaves no partial state behind (it never
    // published), so a poisoned lock is safe to take over.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct ChangeLog {
    entries: Vec<Change>,
    index: HashMap<String, usize>,
}

impl ChangeLog {
    fn record(&mut self, path: &MbPath, kind: ChangeKind, id: Option<u32>) {
        let lookup = path.to_string().to_lowercase();
        let index = *self.index.entry(lookup).or_insert_with(|| {
            self.entries.push(Change {
                path: path.clone(),
                kind: ChangeKind(0),
                ids: Vec::new(),
                new_path: None,
            });
            self.entries.len() - 1
        });
        let entry = &mut self.entries[index];
        entry.kind.0 |= kind.0;
        if let Some(id) = id {
            if !entry.ids.contains(&id) {
                entry.ids.push(id);
            }
        }
    }
}

/// A transaction in progress: a private copy of the tree that the
/// operations change, validating each one. Reads through `Deref` see the
/// transaction's own changes.
pub struct Txn {
    tree: Tree,
    log: ChangeLog,
    schema_changed: bool,
}

impl Deref for Txn {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.tree
    }
}

impl Txn {
    fn key_mut(&mut self, path: &MbPath) -> Result<&mut Key> {
        let mut key = Arc::make_mut(&mut self.tree.root);
        for part in path.parts() {
            key = key
                .child_mut(part)
                .ok_or_else(|| Error::PathNotFound(path.to_string()))?;
        }
        Ok(key)
    }

    fn check_containment(&self, path: &MbPath, parent: &MbPath, child_type: &str) -> Result<()> {
        let parent_type = self.key(parent)?.key_type().to_string();
        self.tree
            .schema
            .may_contain(&parent_type, child_type)
            .map_err(|allowed| Error::ContainmentViolation {
                path: path.to_string(),
                child_type: child_type.to_string(),
                parent_path: parent.to_string(),
                parent_type,
                allowed,
            })
    }

    /// Creates the key `path` of type `key_type` (AddKey). Its parent must
    /// exist and be allowed to contain that key type.
    pub fn create_key(&mut self, path: &MbPath, key_type: &str) -> Result<()> {
        let (parent, name) = split(path)?;
        let class = self
            .tree
            .schema
            .class(key_type)
            .ok_or_else(|| Error::UnknownKeyType(key_type.to_string()))?;
        let key_type = class.name.clone();
        self.check_new_key(path, &parent)?;
        self.check_containment(path, &parent, &key_type)?;
        self.key_mut(&parent)?
            .insert_child(Key::new(&name, &key_type));
        self.log.record(path, ChangeKind::ADD_OBJECT, None);
        Ok(())
    }

    /// A new key may go at `path`: nothing is there, its parent is.
    fn check_new_key(&self, path: &MbPath, parent: &MbPath) -> Result<()> {
        if self.exists(path) {
            return Err(Error::KeyExists(
                self.canonical(path)
                    .unwrap_or_else(|| path.clone())
                    .to_string(),
            ));
        }
        if !self.exists(parent) {
            return Err(Error::PathNotFound(parent.to_string()));
        }
        Ok(())
    }

    /// Creates a key with no type yet (IIsConfigObject) under any key: IIS
    /// 6's AddKey ([MS-IMSA] 3.1.4.2), for clients that type the key
    /// with its KeyType next, as ADSI does. The metabase below ADSI has no
    /// classes; setting KeyType is what is checked against the parent.
    pub fn add_untyped_key(&mut self, path: &MbPath) -> Result<()> {
        let (parent, name) = split(path)?;
        self.check_new_key(path, &parent)?;
        self.key_mut(&parent)?
            .insert_child(Key::new(&name, crate::schema::GENERIC_KEY_TYPE));
        self.log.record(path, ChangeKind::ADD_OBJECT, None);
        Ok(())
    }

    /// Deletes a key and everything below it (DeleteKey).
    pub fn delete_key(&mut self, path: &MbPath) -> Result<()> {
        let (parent, name) = split(path)?;
        let path = self
            .canonical(path)
            .ok_or_else(|| Error::PathNotFound(path.to_string()))?;
        self.key_mut(&parent)?.remove_child(&name);
        self.log.record(&path, ChangeKind::DELETE_OBJECT, None);
        Ok(())
    }

    /// Sets a data item with full control of its attributes and user type
    /// (R_SetData). Validated: the key exists; data the schema knows has
    /// the schema's type and range and is allowed on the key's type; a
    /// key type change must be one the parent may contain.
    pub fn set_property(&mut self, path: &MbPath, property: Property) -> Result<()> {
        let key = self.key(path)?;
        let key_type = key.key_type().to_string();
        let schema = self.tree.schema.clone();
        let name = property
            .custom_name
            .clone()
            .unwrap_or_else(|| schema.name_of(property.id));
        let invalid = |reason: String| Error::InvalidValue {
            path: path.to_string(),
            property: name.clone(),
            reason,
        };
        if property.attributes.contains(Attributes::ISINHERITED)
            || property.attributes.contains(Attributes::PARTIAL_PATH)
        {
            return Err(invalid(
                "ISINHERITED and PARTIAL_PATH are read flags; they cannot be stored".into(),
            ));
        }
        match &property.value {
            Value::String(text) | Value::ExpandSz(text) => check_xml_chars(text),
            Value::MultiSz(items) => items.iter().try_for_each(|t| check_xml_chars(t)),
            Value::Dword(_) | Value::Binary(_) => Ok(()),
        }
        .map_err(invalid)?;
        if let Some(def) = schema.property(property.id) {
            def.check(&property.value).map_err(invalid)?;
            def.check_meaning(&property.value).map_err(invalid)?;
            if !schema.property_allowed(&key_type, property.id) {
                return Err(Error::PropertyNotAllowed {
                    path: path.to_string(),
                    property: def.name.clone(),
                    key_type,
                });
            }
        }
        if let Some(existing) = key.property(property.id) {
            // MD_ERROR_CANNOT_REMOVE_SECURE_ATTRIBUTE ([MS-IMSA] 3.1.4.27).
            if existing.attributes.contains(Attributes::SECURE)
                && !property.attributes.contains(Attributes::SECURE)
            {
                return Err(invalid(
                    "the SECURE attribute cannot be removed by a set; delete the data first".into(),
                ));
            }
            if *existing == property {
                return Ok(());
            }
        }
        if property.id == KEY_TYPE_ID {
            let new_type = property
                .value
                .as_str()
                .ok_or_else(|| invalid("KeyType is a STRING".into()))?
                .to_string();
            if schema.class(&new_type).is_none() {
                return Err(Error::UnknownKeyType(new_type));
            }
            if let Some(parent) = path.parent() {
                self.check_containment(path, &parent, &new_type)?;
            }
        }
        let id = property.id;
        let key = self.key_mut(path)?;
        key.sealed.remove(&id);
        key.props.insert(id, property);
        self.log.record(path, ChangeKind::SET_DATA, Some(id));
        Ok(())
    }

    /// Sets a property the schema knows, with the schema's attributes.
    pub fn set(&mut self, path: &MbPath, id: u32, value: Value) -> Result<()> {
        if self.tree.schema.property(id).is_none() {
            return Err(Error::UnknownProperty(id.to_string()));
        }
        let property = Property::from_schema(&self.tree.schema, id, value);
        self.set_property(path, property)
    }

    /// Sets a property by name (or ID) from its text form; a flag name
    /// (`AccessRead`) sets or clears that bit of its bit field, starting
    /// from the value in force at `path`.
    pub fn set_text(&mut self, path: &MbPath, name: &str, args: &[String]) -> Result<()> {
        let schema = self.tree.schema.clone();
        if let Some(def) = schema.property_by_name(name) {
            let value = def.parse_args(args).map_err(|reason| Error::InvalidValue {
                path: path.to_string(),
                property: def.name.clone(),
                reason,
            })?;
            return self.set(path, def.id, value);
        }
        if let Some((def, bit)) = schema.flag_by_name(name) {
            let enable = crate::schema::parse_bool(&args.join(" ")).map_err(|reason| {
                Error::InvalidValue {
                    path: path.to_string(),
                    property: name.to_string(),
                    reason,
                }
            })? == 1;
            self.key(path)?;
            let current = self.tree.effective_dword(path, def.id).unwrap_or(0);
            let next = if enable {
                current | bit
            } else {
                current & !bit
            };
            return self.set(path, def.id, Value::Dword(next));
        }
        Err(Error::UnknownProperty(name.to_string()))
    }

    /// Deletes a data item set on the key (DeleteData).
    pub fn delete_data(&mut self, path: &MbPath, id: u32) -> Result<()> {
        let key = self.key(path)?;
        if !key.props.contains_key(&id) && !key.sealed.contains_key(&id) {
            return Err(Error::DataNotFound {
                path: path.to_string(),
                property: self.tree.schema.name_of(id),
            });
        }
        let key = self.key_mut(path)?;
        key.props.remove(&id);
        key.sealed.remove(&id);
        self.log.record(path, ChangeKind::DELETE_DATA, Some(id));
        Ok(())
    }

    /// Copies or moves a key with its subtree (CopyKey, [MS-IMSA] 3.1.4.5).
    /// The destination's parent must exist and accept the key's type. When
    /// the destination exists, `overwrite` replaces it; otherwise the two
    /// are merged, the source's data winning.
    pub fn copy_key(
        &mut self,
        src: &MbPath,
        dst: &MbPath,
        overwrite: bool,
        copy: bool,
    ) -> Result<()> {
        let source = self.key(src)?.clone();
        let (dst_parent, dst_name) = split(dst)?;
        if !copy && src.is_root() {
            return Err(Error::RootKey(src.to_string()));
        }
        if dst.starts_with(src) {
            return Err(Error::InvalidArgument(format!(
                "cannot copy or move {src} into itself ({dst})"
            )));
        }
        if !self.exists(&dst_parent) {
            return Err(Error::PathNotFound(dst_parent.to_string()));
        }
        self.check_containment(dst, &dst_parent, source.key_type())?;
        let mut moved = source;
        moved.name = dst_name.clone();
        let parent = self.key_mut(&dst_parent)?;
        match parent.child_mut(&dst_name) {
            Some(existing) if !overwrite => {
                merge_into(existing, &moved);
            }
            _ => {
                parent.remove_child(&dst_name);
                parent.insert_child(moved);
            }
        }
        if !copy {
            self.delete_key(src)?;
            if let Some(entry) = self.log.entries.last_mut() {
                entry.new_path = Some(dst.clone());
            }
        }
        self.log.record(dst, ChangeKind::ADD_OBJECT, None);
        Ok(())
    }

    /// Renames a key in place (RenameKey, [MS-IMSA] 3.1.4.28).
    pub fn rename_key(&mut self, path: &MbPath, new_name: &str) -> Result<()> {
        let (parent, old_name) = split(path)?;
        let new_path = parent.join(new_name)?;
        if new_path.depth() != path.depth() {
            return Err(Error::InvalidArgument(format!(
                "'{new_name}' is not a single key name"
            )));
        }
        let old = self
            .canonical(path)
            .ok_or_else(|| Error::PathNotFound(path.to_string()))?;
        let same_key = crate::path::CiStr::new(&old_name) == crate::path::CiStr::new(new_name);
        if !same_key && self.exists(&new_path) {
            return Err(Error::KeyExists(new_path.to_string()));
        }
        let parent_key = self.key_mut(&parent)?;
        let Some(node) = parent_key.remove_child(&old_name) else {
            return Err(Error::PathNotFound(path.to_string()));
        };
        let mut node = Arc::unwrap_or_clone(node);
        node.name = new_name.to_string();
        parent_key.insert_child(node);
        self.log.record(&old, ChangeKind::RENAME_OBJECT, None);
        if let Some(entry) = self.log.entries.last_mut() {
            entry.new_path = Some(new_path);
        }
        Ok(())
    }

    /// Replaces the key at `path` (with its subtree) by `replacement`,
    /// recording precisely what differs. Restores, imports and hand edits
    /// of MetaBase.xml apply through this.
    pub fn replace_subtree(&mut self, path: &MbPath, replacement: Key) -> Result<()> {
        let old = self.find(path).cloned();
        match &old {
            Some(old) => diff_keys(&mut self.log, path, old, &replacement),
            None => self.log.record(path, ChangeKind::ADD_OBJECT, None),
        }
        if path.is_root() {
            self.tree.root = Arc::new(replacement);
            return Ok(());
        }
        let (parent, name) = split(path)?;
        let parent_key = self.key_mut(&parent)?;
        let mut replacement = replacement;
        replacement.name = match &old {
            Some(old) => old.name.clone(),
            None => name.clone(),
        };
        parent_key.remove_child(&name);
        parent_key.insert_child(replacement);
        Ok(())
    }

    /// Replaces the schema (restores and hand edits of MBSchema.xml).
    pub fn replace_schema(&mut self, schema: Arc<Schema>) {
        if !Arc::ptr_eq(&schema, &self.tree.schema) {
            self.tree.schema = schema;
            self.schema_changed = true;
        }
    }

    /// Changes the schema (run-time extension): `f` edits a copy, which
    /// takes effect with the transaction.
    pub fn extend_schema<R>(&mut self, f: impl FnOnce(&mut Schema) -> Result<R>) -> Result<R> {
        let mut schema = (*self.tree.schema).clone();
        let result = f(&mut schema)?;
        self.tree.schema = Arc::new(schema);
        self.schema_changed = true;
        Ok(result)
    }

    /// Reads within the transaction, inheritance included.
    pub fn get_inherited(&self, path: &MbPath, id: u32) -> Result<crate::tree::Resolved> {
        self.tree.get(path, id, GetMode::Inherited)
    }
}

fn split(path: &MbPath) -> Result<(MbPath, String)> {
    match (path.parent(), path.name()) {
        (Some(parent), Some(name)) => Ok((parent, name.to_string())),
        _ => Err(Error::RootKey(path.to_string())),
    }
}

/// Merges `source` into `target`: source data wins; children merge.
pub(crate) fn merge_into(target: &mut Key, source: &Key) {
    for (id, p) in &source.props {
        target.props.insert(*id, p.clone());
        target.sealed.remove(id);
    }
    for (id, s) in &source.sealed {
        target.props.remove(id);
        target.sealed.insert(*id, s.clone());
    }
    for child in source.children() {
        match target.child_mut(&child.name) {
            Some(existing) => merge_into(existing, child),
            None => target.insert_child(child.clone()),
        }
    }
}

/// Records the differences between two versions of a key, recursively.
fn diff_keys(log: &mut ChangeLog, path: &MbPath, old: &Key, new: &Key) {
    for (id, p) in &new.props {
        if old.props.get(id) != Some(p) {
            log.record(path, ChangeKind::SET_DATA, Some(*id));
        }
    }
    for (id, s) in &new.sealed {
        if old.sealed.get(id) != Some(s) {
            log.record(path, ChangeKind::SET_DATA, Some(*id));
        }
    }
    for id in old.props.keys().chain(old.sealed.keys()) {
        if !new.props.contains_key(id) && !new.sealed.contains_key(id) {
            log.record(path, ChangeKind::DELETE_DATA, Some(*id));
        }
    }
    for (name, old_child) in &old.children {
        let child_path = path.join(old_child.name()).unwrap_or_default();
        match new.children.get(name) {
            Some(new_child) if Arc::ptr_eq(old_child, new_child) => {}
            Some(new_child) => diff_keys(log, &child_path, old_child, new_child),
            None => log.record(&child_path, ChangeKind::DELETE_OBJECT, None),
        }
    }
    for (name, new_child) in &new.children {
        if !old.children.contains_key(name) {
            let child_path = path.join(new_child.name()).unwrap_or_default();
            log.record(&child_path, ChangeKind::ADD_OBJECT, None);
        }
    }
}

#[cfg(test)]
mod tests;
