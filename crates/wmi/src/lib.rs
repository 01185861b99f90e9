//! The IIS WMI provider's object model (namespace `root/MicrosoftIISv2`)
//! over the metabase: what `inetsrv query` and `inetsrv wmi` speak.
//!
//! - [`classes`]: the classes, generated from the metabase schema — for
//!   each key type an element class (`IIsWebServer`, read-only state) and
//!   a setting class (`IIsWebServerSetting`, the writable properties),
//!   the CIM base classes they derive from, and the embedded classes of
//!   structured values (`ServerBinding`, `ScriptMap`, …). A schema
//!   extension made through the metabase is a new property or class here.
//! - [`provider`]: instances — every metabase key of a key type is an
//!   instance of its element and setting classes, named by its path
//!   (`IIsWebServerSetting.Name="W3SVC/1"`); values are the metabase's,
//!   inherited as the server sees them.
//! - [`write`](mod@write): PutInstance and DeleteInstance, validated as the metabase
//!   validates every write.
//! - [`wql`]: the WMI Query Language ([MS-WMI] 2.2.1), parsed with the
//!   position of every error, and evaluated against instances.
//!
//! This crate reads and writes the metabase only through its public API;
//! it knows nothing of the server's processes.

pub mod classes;
pub mod computer;
pub mod error;
pub mod events;
pub mod extend;
/// What the fuzz targets and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod methods;
pub mod path;
pub mod provider;
pub mod value;
pub mod wql;
pub mod write;

pub use classes::{ClassKind, ClassModel, WmiClass, WmiProperty};
pub use error::{WbemStatus, WmiError};
pub use provider::{Instance, Provider, QueryResult};
pub use value::{CimType, WmiValue};
