//! inetsrv's own interface on the IMSAdminBase object: a branch of the
//! metabase in one call, and a batch of changes made as one transaction.
//!
//! [MS-IMSA] reads a key at a time (R_GetAllData) and writes a value at a
//! time, each its own commit. That is what Windows tools send, and it is
//! served; but the CLI copies the whole metabase before every verb and
//! makes what the verb changed after, and a verb such as `site add`
//! writes several keys that must appear together. So the CLI asks for the
//! copy with [`MetabaseTree::get_tree`] (every key's R_GetAllData buffer,
//! SECURE ones encrypted under the object's secure session, and the
//! server's schema) and sends the change with [`MetabaseTree::apply`]:
//! the same operations IMSAdminBaseW has (AddKey, DeleteKey, RenameKey,
//! SetData, DeleteData) plus a schema replacement, checked as those
//! methods check them and committed together or not at all, with the
//! refusal's own words sent back. Described once with the interface
//! macro; administrators only, as the object is.

use std::sync::Arc;

use metabase::{Attributes, MbPath};
use msrpc::ndr::{ConformantArray, Unique, WString};
use msrpc::server::{Call, CallResult};
use msrpc::Uuid;

use crate::imsa::{
    getall_buffer, hresult, incoming_property, Entry, IisCryptoBlob, MetadataRecord, MsAdminBase,
    ERROR_PATH_NOT_FOUND, E_FAIL, E_INVALIDARG, S_OK,
};
use crate::secure::CLEARTEXT_DATA_BLOB_SIGNATURE;

/// IInetsrvMetabaseTree's IID (inetsrv's own; no Windows class has it).
pub const IID_IMETABASE_TREE: Uuid = Uuid {
    time_low: 0x5c1e_7a20,
    time_mid: 0x43d9,
    time_hi_and_version: 0x4b7e,
    clock_seq_and_node: [0x9a, 0x51, 0x2f, 0x0c, 0x6e, 0x18, 0xd4, 0x73],
};

/// One key of a branch: its path and its own data as R_GetAllData lists
/// it (METADATA_GETALL_RECORDs, then the values), in an IIS_CRYPTO_BLOB:
/// encrypted under the secure session when it holds SECURE data.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct TreeKey {
    pub path: WString,
    pub data: IisCryptoBlob,
}

/// A branch of the metabase.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct TreeAnswer {
    /// The system change number the branch was read at.
    pub change_number: u64,
    /// The server's metabase file.
    pub metabase_file: WString,
    /// The server's schema as MBSchema.xml text.
    pub schema: Unique<WString>,
    /// The keys, parents before their children.
    pub keys: Unique<ConformantArray<TreeKey>>,
}

#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
#[ndr(v1_enum)]
pub enum OpKind {
    /// AddKey; `text` is the key type, when the key has one.
    AddKey = 1,
    DeleteKey = 2,
    /// RenameKey; `text` is the new name.
    RenameKey = 3,
    /// SetData: `record` as R_SetData takes it.
    SetData = 4,
    /// DeleteData: `record.identifier`.
    DeleteData = 5,
    /// The schema, replaced by `text` (MBSchema.xml text).
    ReplaceSchema = 6,
}

/// One change of a batch.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct TreeOp {
    pub kind: OpKind,
    pub path: WString,
    pub text: Unique<WString>,
    pub record: MetadataRecord,
}

/// What a batch did.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct ApplyAnswer {
    /// The system change number after the batch.
    pub change_number: u64,
    /// The operation refused, when one was.
    pub failed: u32,
    /// Why, in the words the metabase refuses it with locally.
    pub message: Unique<WString>,
}

/// A backup as the server's `MetaBack/` holds it: what EnumBackups tells
/// and whether a password seals its SECURE data.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct BackupEntry {
    pub name: WString,
    pub version: u32,
    pub modified: crate::imsa::FileTime,
    pub password_protected: u32,
}

#[msrpc::interface(uuid = "5c1e7a20-43d9-4b7e-9a51-2f0c6e18d473", version = "0.0")]
pub trait MetabaseTree {
    /// Every key at and below `path` with its own data, and the schema.
    #[opnum(3)]
    #[blocking]
    fn get_tree(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        path: WString,
    ) -> CallResult<(dcom::types::OrpcThat, TreeAnswer, u32)>;

    /// Makes every operation in one transaction, or none.
    #[opnum(4)]
    #[blocking]
    fn apply(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        ops: Unique<ConformantArray<TreeOp>>,
    ) -> CallResult<(dcom::types::OrpcThat, ApplyAnswer, u32)>;

    /// The backups named `name` (every one when absent), in EnumBackups'
    /// order, in one call.
    #[opnum(5)]
    #[blocking]
    fn list_backups(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        name: Unique<WString>,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        Unique<ConformantArray<BackupEntry>>,
        u32,
    )>;
}

fn wide(text: &str) -> WString {
    WString(text.to_string())
}

/// An operation checked and decoded outside the transaction.
enum Prepared {
    AddKey(MbPath, Option<String>),
    DeleteKey(MbPath),
    RenameKey(MbPath, String),
    SetData(MbPath, metabase::Property),
    DeleteData(MbPath, u32),
    ReplaceSchema(Arc<metabase::Schema>),
}

/// A refused operation: its HRESULT and why.
type Refusal = (u32, String);

fn prepare(
    op: &TreeOp,
    session: Option<&crate::secure::SecureSession>,
) -> Result<Prepared, Refusal> {
    let path =
        MbPath::parse(&op.path.0).map_err(|e| (E_INVALIDARG, format!("{}: {e}", op.path.0)))?;
    let text = op.text.get().map(|t| t.0.clone());
    Ok(match op.kind {
        OpKind::AddKey => Prepared::AddKey(path, text),
        OpKind::DeleteKey => Prepared::DeleteKey(path),
        OpKind::RenameKey => Prepared::RenameKey(
            path,
            text.ok_or((E_INVALIDARG, "RenameKey without a new name".to_string()))?,
        ),
        OpKind::SetData => Prepared::SetData(
            path.clone(),
            incoming_property(&op.record, &path, session).map_err(|hr| {
                let why = match hr {
                    crate::imsa::E_ACCESSDENIED => {
                        "SECURE data is sent only encrypted, after the key exchange"
                    }
                    _ => "the record's bytes are not a value of its data type and length",
                };
                (hr, format!("{path}: data {}: {why}", op.record.identifier))
            })?,
        ),
        OpKind::DeleteData => Prepared::DeleteData(path, op.record.identifier),
        OpKind::ReplaceSchema => {
            let text =
                text.ok_or((E_INVALIDARG, "a schema replacement without a schema".into()))?;
            let schema = metabase::Schema::from_file_text(&text, "the client's schema")
                .map_err(|e| (E_INVALIDARG, e.to_string()))?;
            Prepared::ReplaceSchema(Arc::new(schema))
        }
    })
}

impl MetabaseTree for MsAdminBase {
    fn get_tree(
        &self,
        call: &Call,
        _this: dcom::types::OrpcThis,
        path: WString,
    ) -> CallResult<(dcom::types::OrpcThat, TreeAnswer, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let secure = object.secure();
        let session = secure.session();
        let snapshot = self.base.files.metabase().snapshot();
        let mut answer = TreeAnswer {
            change_number: snapshot.change_number(),
            metabase_file: wide(&self.base.files.location().metabase.to_string_lossy()),
            schema: Unique::new(None),
            keys: Unique::new(None),
        };
        let Ok(top) = MbPath::parse(&path.0) else {
            return Ok((Default::default(), answer, E_INVALIDARG));
        };
        let Some(key) = snapshot.tree().find(&top) else {
            return Ok((Default::default(), answer, ERROR_PATH_NOT_FOUND));
        };
        let mut keys = Vec::new();
        let mut stack = vec![(top.to_string(), key)];
        while let Some((at, key)) = stack.pop() {
            // SECURE data only under a secure session, as GetAllData.
            let entries: Vec<Entry> = key
                .properties()
                .filter(|p| session.is_some() || !p.attributes.contains(Attributes::SECURE))
                .map(|p| (p.id, p.value.clone(), p.attributes, p.user_type))
                .collect();
            let buffer = getall_buffer(&entries);
            let has_secure = entries
                .iter()
                .any(|(_, _, a, _)| a.contains(Attributes::SECURE));
            let data = match session {
                Some(session) if has_secure => match session.encrypt(&buffer) {
                    Ok(blob) => blob,
                    Err(e) => {
                        tracing::error!("metabase tree: cannot encrypt {at}: {e}");
                        return Ok((Default::default(), answer, E_FAIL));
                    }
                },
                _ => IisCryptoBlob {
                    signature: CLEARTEXT_DATA_BLOB_SIGNATURE,
                    length: buffer.len() as u32,
                    data: buffer,
                },
            };
            let mut children: Vec<_> = key
                .children()
                .map(|c| {
                    let child = if at == "/" {
                        format!("/{}", c.name())
                    } else {
                        format!("{at}/{}", c.name())
                    };
                    (child, c)
                })
                .collect();
            children.reverse();
            stack.extend(children);
            keys.push(TreeKey {
                path: wide(&at),
                data,
            });
        }
        answer.schema = Unique::new(Some(wide(&metabase::schema::write_schema(
            snapshot.tree().schema(),
        ))));
        answer.keys = Unique::new(Some(ConformantArray(keys)));
        Ok((Default::default(), answer, S_OK))
    }

    fn apply(
        &self,
        call: &Call,
        _this: dcom::types::OrpcThis,
        ops: Unique<ConformantArray<TreeOp>>,
    ) -> CallResult<(dcom::types::OrpcThat, ApplyAnswer, u32)> {
        let object = self.base.this(call, &self.exporter)?;
        let ops = ops.get().map(|o| o.0.as_slice()).unwrap_or(&[]);
        let refused = |index: usize, (hr, message): Refusal| {
            tracing::info!(index, "metabase batch refused: {message}");
            let answer = ApplyAnswer {
                change_number: 0,
                failed: index as u32,
                message: Unique::new(Some(wide(&message))),
            };
            Ok((Default::default(), answer, hr))
        };
        let mut prepared = Vec::with_capacity(ops.len());
        {
            let secure = object.secure();
            for (index, op) in ops.iter().enumerate() {
                match prepare(op, secure.session()) {
                    Ok(p) => prepared.push(p),
                    Err(refusal) => return refused(index, refusal),
                }
            }
        }
        let mut at = 0usize;
        let metabase = self.base.files.metabase();
        let done = metabase.write(|t| {
            for (index, op) in prepared.into_iter().enumerate() {
                at = index;
                match op {
                    Prepared::AddKey(path, Some(key_type)) => t.create_key(&path, &key_type)?,
                    Prepared::AddKey(path, None) => t.add_untyped_key(&path)?,
                    Prepared::DeleteKey(path) => t.delete_key(&path)?,
                    Prepared::RenameKey(path, name) => t.rename_key(&path, &name)?,
                    Prepared::SetData(path, property) => t.set_property(&path, property)?,
                    Prepared::DeleteData(path, id) => t.delete_data(&path, id)?,
                    Prepared::ReplaceSchema(schema) => t.replace_schema(schema),
                }
            }
            Ok(())
        });
        match done {
            Ok(()) => Ok((
                Default::default(),
                ApplyAnswer {
                    change_number: metabase.snapshot().change_number(),
                    ..Default::default()
                },
                S_OK,
            )),
            Err(e) => refused(at, (hresult(&e), e.to_string())),
        }
    }

    fn list_backups(
        &self,
        call: &Call,
        _this: dcom::types::OrpcThis,
        name: Unique<WString>,
    ) -> CallResult<(
        dcom::types::OrpcThat,
        Unique<ConformantArray<BackupEntry>>,
        u32,
    )> {
        self.base.this(call, &self.exporter)?;
        let filter = name.get().map(|n| n.0.as_str()).filter(|n| !n.is_empty());
        Ok(match self.base.files.list_backups(filter) {
            Ok(list) => {
                let entries = list
                    .into_iter()
                    .map(|b| BackupEntry {
                        name: wide(&b.name),
                        version: b.version,
                        modified: crate::imsa::FileTime::from_system(b.modified),
                        password_protected: u32::from(b.password_protected),
                    })
                    .collect();
                (
                    Default::default(),
                    Unique::new(Some(ConformantArray(entries))),
                    S_OK,
                )
            }
            Err(e) => (Default::default(), Unique::new(None), hresult(&e)),
        })
    }
}
