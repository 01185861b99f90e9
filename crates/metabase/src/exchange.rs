//! Export and import of a subtree (iiscnfg /export and /import;
//! [MS-IMSA] 3.3.4.3 Export, 3.3.4.4 Import). The file is a MetaBase.xml
//! holding only the exported keys; SECURE data is sealed under the
//! password when one is given (so the file travels between machines),
//! otherwise under this machine's key.

use std::path::Path;
use std::sync::Arc;

use crate::backup::{read_sealed, write_sealed};
use crate::error::{Error, Result};
use crate::mbxml::{Document, GlobalInfo, WriteScope};
use crate::path::MbPath;
use crate::persist::{write_durably, MetabaseFiles};
use crate::store::{merge_into, Txn};
use crate::tree::{GetMode, Key};
use crate::value::Attributes;

/// MD_EXPORT_* flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// MD_EXPORT_INHERITED: include the values the key inherits.
    pub inherited: bool,
    /// MD_EXPORT_NODE_ONLY: the key alone, without the keys below it.
    pub node_only: bool,
}

/// MD_IMPORT_* flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// MD_IMPORT_INHERITED: apply the inherited values the export carries.
    pub inherited: bool,
    /// MD_IMPORT_NODE_ONLY: the key alone, without the keys below it.
    pub node_only: bool,
    /// MD_IMPORT_MERGE: merge into an existing key instead of replacing it.
    pub merge: bool,
}

impl MetabaseFiles {
    /// Exports the key at `path` (and, unless `node_only`, its subtree) to
    /// `file`.
    pub fn export(
        &self,
        path: &MbPath,
        file: &Path,
        password: Option<&str>,
        options: ExportOptions,
    ) -> Result<usize> {
        let snapshot = self.metabase.snapshot();
        let path = snapshot
            .canonical(path)
            .ok_or_else(|| Error::PathNotFound(path.to_string()))?;
        let mut doc = Document::new(
            snapshot.tree().root.clone(),
            GlobalInfo {
                change_number: snapshot.change_number(),
                history_major: self.version().0,
                extra: Vec::new(),
            },
        );
        if options.inherited {
            let inherited: Vec<_> = snapshot
                .enum_data(&path, GetMode::Inherited)?
                .into_iter()
                .filter(|r| r.inherited)
                .filter_map(|r| {
                    let mut property = snapshot.find(&r.defined_at)?.property(r.id)?.clone();
                    property.attributes = property.attributes.without(Attributes::ISINHERITED);
                    Some(property)
                })
                .collect();
            if !inherited.is_empty() {
                doc.inherited.push((path.clone(), inherited));
            }
        }
        let scope = WriteScope {
            subtree: Some(&path),
            node_only: options.node_only,
            include_volatile: false,
        };
        let text = write_sealed(self, doc, snapshot.schema(), scope, password)?;
        write_durably(file, text.as_bytes())?;
        let key = snapshot.key(&path)?;
        Ok(if options.node_only {
            1
        } else {
            key.subtree_len()
        })
    }

    /// Imports the key `source` of an exported file as `dest`. The
    /// destination's parent must exist and accept the key's type; the
    /// data is validated as any write is. Returns the number of keys
    /// imported.
    pub fn import(
        &self,
        file: &Path,
        source: &MbPath,
        dest: &MbPath,
        password: Option<&str>,
        options: ImportOptions,
    ) -> Result<usize> {
        let schema = self.metabase.snapshot().schema_arc().clone();
        let doc = read_sealed(self, file, &schema, password)?;
        let mut key = {
            let mut node = &*doc.root;
            for part in source.parts() {
                node = node.child(part).ok_or_else(|| {
                    Error::PathNotFound(format!("{source} (in {})", file.display()))
                })?;
            }
            node.clone()
        };
        if options.node_only {
            key.children.clear();
        }
        if options.inherited {
            if let Some((_, props)) = doc.inherited.iter().find(|(p, _)| p.eq_ignore_case(source)) {
                // Values inherited from keys of other types (MaxBandwidth
                // from /LM) apply only where this key type may carry them.
                let key_type = key.key_type().to_string();
                for p in props
                    .iter()
                    .filter(|p| schema.property_allowed(&key_type, p.id))
                {
                    key.props.entry(p.id).or_insert_with(|| p.clone());
                }
            }
        }
        let count = key.subtree_len();
        let key = Arc::new(key);
        self.metabase.write_as(Some("import"), |t| {
            let parent = dest
                .parent()
                .ok_or_else(|| Error::InvalidArgument("cannot import over the root key".into()))?;
            if !t.exists(&parent) {
                return Err(Error::PathNotFound(parent.to_string()));
            }
            let existing = t.find(dest).cloned();
            let replacement = match (existing, options.merge) {
                (Some(mut existing), true) => {
                    merge_into(&mut existing, &key);
                    existing
                }
                _ => (*key).clone(),
            };
            validate_subtree(t, dest, &replacement)?;
            t.replace_subtree(dest, replacement)
        })?;
        Ok(count)
    }
}

/// Checks an imported subtree as writes are checked: each key's type may
/// sit under its parent, each value fits its definition and key type.
fn validate_subtree(t: &Txn, path: &MbPath, key: &Key) -> Result<()> {
    let schema = t.schema();
    if let Some(parent) = path.parent() {
        let parent_type = t.key(&parent)?.key_type().to_string();
        check_child(schema, path, &parent, &parent_type, key)?;
    }
    let mut stack = vec![(path.clone(), key)];
    while let Some((p, k)) = stack.pop() {
        for prop in k.properties() {
            if let Some(def) = schema.property(prop.id) {
                def.check(&prop.value)
                    .and_then(|()| def.check_meaning(&prop.value))
                    .map_err(|reason| Error::InvalidValue {
                        path: p.to_string(),
                        property: def.name.clone(),
                        reason,
                    })?;
                if !schema.property_allowed(k.key_type(), prop.id) {
                    return Err(Error::PropertyNotAllowed {
                        path: p.to_string(),
                        property: def.name.clone(),
                        key_type: k.key_type().to_string(),
                    });
                }
            }
        }
        for child in k.children() {
            let child_path = p.join(child.name())?;
            check_child(schema, &child_path, &p, k.key_type(), child)?;
            stack.push((child_path, child));
        }
    }
    Ok(())
}

fn check_child(
    schema: &crate::schema::Schema,
    path: &MbPath,
    parent: &MbPath,
    parent_type: &str,
    key: &Key,
) -> Result<()> {
    schema
        .may_contain(parent_type, key.key_type())
        .map_err(|allowed| Error::ContainmentViolation {
            path: path.to_string(),
            child_type: key.key_type().to_string(),
            parent_path: parent.to_string(),
            parent_type: parent_type.to_string(),
            allowed,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::LockMode;
    use crate::value::Value;

    fn p(s: &str) -> MbPath {
        MbPath::parse(s).unwrap()
    }

    fn setup() -> (tempfile::TempDir, MetabaseFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        files
            .metabase()
            .write(|t| {
                t.set_text(
                    &p("/LM/W3SVC/1"),
                    "ServerComment",
                    &["Exported".to_string()],
                )?;
                t.set_text(&p("/LM/W3SVC/1"), "ServerBindings", &[":81:".to_string()])?;
                t.set_text(&p("/LM/W3SVC"), "AnonymousUserPass", &["pw".to_string()])?;
                t.create_key(&p("/LM/W3SVC/1/ROOT/app"), "IIsWebVirtualDir")?;
                t.set_text(
                    &p("/LM/W3SVC/1/ROOT/app"),
                    "Path",
                    &["/srv/app".to_string()],
                )
            })
            .unwrap();
        (dir, files)
    }

    fn value(files: &MetabaseFiles, path: &str, id: u32, mode: GetMode) -> Option<Value> {
        files
            .metabase()
            .snapshot()
            .get(&p(path), id, mode)
            .ok()
            .map(|r| r.value)
    }

    #[test]
    fn export_then_import_as_a_new_site() {
        let (dir, files) = setup();
        let out = dir.path().join("site1.xml");
        let n = files
            .export(&p("/LM/W3SVC/1"), &out, None, ExportOptions::default())
            .unwrap();
        assert_eq!(n, 4); // site, Filters, ROOT, ROOT/app
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("Location =\"/LM/W3SVC/1\"") && !text.contains("Location =\"/LM/W3SVC\"")
        );
        let rx = files.metabase().subscribe();
        files
            .import(
                &out,
                &p("/LM/W3SVC/1"),
                &p("/LM/W3SVC/2"),
                None,
                ImportOptions::default(),
            )
            .unwrap();
        assert_eq!(
            value(&files, "/LM/W3SVC/2", 1015, GetMode::Own),
            Some(Value::String("Exported".into()))
        );
        assert_eq!(
            value(&files, "/LM/W3SVC/2/ROOT/app", 3001, GetMode::Own),
            Some(Value::String("/srv/app".into()))
        );
        assert_eq!(rx.try_recv().unwrap().origin.as_deref(), Some("import"));
    }

    #[test]
    fn inherited_values_and_node_only() {
        let (dir, files) = setup();
        let out = dir.path().join("app.xml");
        files
            .export(
                &p("/LM/W3SVC/1/ROOT/app"),
                &out,
                Some("pw"),
                ExportOptions {
                    inherited: true,
                    node_only: true,
                },
            )
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("<IIS_Inherited"));
        assert!(!text.contains(">pw<") && !text.contains("\"pw\""));
        files
            .metabase()
            .write(|t| t.create_key(&p("/LM/W3SVC/1/ROOT/plain"), "IIsWebVirtualDir"))
            .unwrap();
        // Without MD_IMPORT_INHERITED the inherited values stay behind.
        files
            .import(
                &out,
                &p("/LM/W3SVC/1/ROOT/app"),
                &p("/LM/W3SVC/1/ROOT/plain"),
                Some("pw"),
                ImportOptions::default(),
            )
            .unwrap();
        assert!(value(&files, "/LM/W3SVC/1/ROOT/plain", 6021, GetMode::Own).is_none());
        files
            .import(
                &out,
                &p("/LM/W3SVC/1/ROOT/app"),
                &p("/LM/W3SVC/1/ROOT/copy"),
                Some("pw"),
                ImportOptions {
                    inherited: true,
                    ..ImportOptions::default()
                },
            )
            .unwrap();
        assert_eq!(
            value(&files, "/LM/W3SVC/1/ROOT/copy", 6021, GetMode::Own),
            Some(Value::String("pw".into()))
        );
        assert!(files
            .import(
                &out,
                &p("/LM/W3SVC/1/ROOT/app"),
                &p("/LM/W3SVC/1/ROOT/x"),
                Some("bad"),
                ImportOptions::default()
            )
            .is_err());
        assert!(files
            .import(
                &out,
                &p("/LM/W3SVC/1/ROOT/app"),
                &p("/LM/W3SVC/1/ROOT/x"),
                None,
                ImportOptions::default()
            )
            .is_err());
    }

    #[test]
    fn merge_versus_replace() {
        let (dir, files) = setup();
        let out = dir.path().join("site.xml");
        files
            .export(
                &p("/LM/W3SVC/1"),
                &out,
                None,
                ExportOptions {
                    node_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
        files
            .metabase()
            .write(|t| {
                t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &["changed".to_string()])?;
                t.set_text(&p("/LM/W3SVC/1"), "MaxConnections", &["5".to_string()])
            })
            .unwrap();
        files
            .import(
                &out,
                &p("/LM/W3SVC/1"),
                &p("/LM/W3SVC/1"),
                None,
                ImportOptions {
                    merge: true,
                    node_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            value(&files, "/LM/W3SVC/1", 1015, GetMode::Own),
            Some(Value::String("Exported".into()))
        );
        assert_eq!(
            value(&files, "/LM/W3SVC/1", 1014, GetMode::Own),
            Some(Value::Dword(5))
        );
        assert!(
            files
                .metabase()
                .snapshot()
                .exists(&p("/LM/W3SVC/1/ROOT/app")),
            "merge keeps children"
        );
        files
            .import(
                &out,
                &p("/LM/W3SVC/1"),
                &p("/LM/W3SVC/1"),
                None,
                ImportOptions::default(),
            )
            .unwrap();
        assert_eq!(
            value(&files, "/LM/W3SVC/1", 1014, GetMode::Own),
            None,
            "replace drops local-only data"
        );
        assert!(
            !files.metabase().snapshot().exists(&p("/LM/W3SVC/1/ROOT")),
            "the export held the node only"
        );
    }

    #[test]
    fn imports_are_validated() {
        let (dir, files) = setup();
        let out = dir.path().join("site.xml");
        files
            .export(&p("/LM/W3SVC/1"), &out, None, ExportOptions::default())
            .unwrap();
        // A site may not go under the app pools container.
        let err = files
            .import(
                &out,
                &p("/LM/W3SVC/1"),
                &p("/LM/W3SVC/AppPools/1"),
                None,
                ImportOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::ContainmentViolation { .. }), "{err}");
        assert!(files
            .import(
                &out,
                &p("/LM/W3SVC/9"),
                &p("/LM/W3SVC/3"),
                None,
                ImportOptions::default()
            )
            .is_err());
        assert!(files
            .import(
                &out,
                &p("/LM/W3SVC/1"),
                &p("/LM/nowhere/3"),
                None,
                ImportOptions::default()
            )
            .is_err());
        assert!(files
            .export(&p("/LM/none"), &out, None, ExportOptions::default())
            .is_err());
        assert!(!files
            .metabase()
            .snapshot()
            .exists(&p("/LM/W3SVC/AppPools/1")));
    }
}
