//! The metabase: IIS 6's hierarchical configuration store.
pub mod error;
pub mod path;
pub mod schema;
pub mod value;
mod xmlutil;

pub use error::{Error, Result};
pub use path::MbPath;
pub use schema::{ClassDef, FlagDef, PropertyDef, Schema, SchemaType};
pub use value::{Attributes, DataType, UserType, Value};
pub mod mbxml;
pub mod secrets;
pub mod store;
pub mod tree;
pub mod persist;
