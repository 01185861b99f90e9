//! The metabase: IIS 6's hierarchical configuration store, which every
//! other part of inetsrv reads.
//!
//! What this crate owns:
//! - the data model of [MS-IMSA] 2.2.7: keys addressed by case-insensitive
//!   paths (`/LM/W3SVC/1/ROOT`), each with a key type, holding data items
//!   identified by numeric ID with a data type, user type and attributes
//!   ([`value`], [`tree`]);
//! - inheritance as IIS does it, own and resolved reads, GetDataPaths
//!   ([`tree::Tree`]);
//! - the schema: every IIS 6 property and class, containment rules, run-time
//!   extension, MBSchema.xml ([`schema`]);
//! - the store: snapshot reads that never block, serialised atomic
//!   transactions validated on every write, change notification
//!   ([`store::Metabase`]);
//! - the files: MetaBase.xml in IIS 6's format ([`mbxml`]), durable saves,
//!   history, SECURE data sealed at rest, backups, export/import and
//!   edit-while-running ([`persist::MetabaseFiles`], [`backup`],
//!   [`exchange`], [`watch`]).
//!
//! What it must not touch: networking, processes, the HTTP side. Services
//! read it through snapshots and follow it through subscriptions.
//!
//! ```
//! use metabase::{GetMode, MbPath, Metabase, Value};
//! let mb = Metabase::empty();
//! let site = MbPath::parse("/LM/W3SVC/1").unwrap();
//! mb.write(|t| {
//!     t.create_key(&MbPath::parse("/LM/W3SVC")?, "IIsWebService")?;
//!     t.create_key(&site, "IIsWebServer")?;
//!     t.set_text(&site, "ServerBindings", &[":8080:".to_string()])
//! })
//! .unwrap();
//! let bindings = mb.snapshot().get(&site, 1023, GetMode::Own).unwrap();
//! assert_eq!(bindings.value, Value::MultiSz(vec![":8080:".into()]));
//! ```

pub mod backup;
pub mod error;
pub mod exchange;
#[doc(hidden)]
/// What the fuzz targets and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod ids;
pub mod image;
pub mod ipsec;
pub mod mbxml;
pub mod path;
pub mod persist;
pub mod schema;
pub mod secrets;
pub mod store;
pub mod tree;
pub mod value;
pub mod watch;
mod xmlutil;

pub use backup::{BackupInfo, BackupVersion};
pub use error::{Error, Result};
pub use exchange::{ExportOptions, ImportOptions};
pub use path::MbPath;
pub use persist::{HistoryEntry, LockMode, MetabaseFiles};
pub use schema::{ClassDef, FlagDef, PropertyDef, Schema, SchemaType};
pub use store::{Change, ChangeBatch, ChangeKind, Metabase, Snapshot, Txn};
pub use tree::{GetMode, Key, Property, Resolved, Tree};
pub use value::{Attributes, DataType, UserType, Value};
pub use watch::{EditOutcome, EditWatcher};
