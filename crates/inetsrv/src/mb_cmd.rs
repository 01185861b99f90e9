//! `inetsrv mb`: adsutil's verbs over the metabase.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use metabase::{
    Attributes, DataType, GetMode, MbPath, Metabase, MetabaseFiles, Property, PropertyDef,
    SchemaType, Snapshot, UserType,
};
use serde_json::json;

use iisadmin::mbtree::{MetabaseTreeClient, OpKind, TreeOp};
use iisadmin::secure::SecureSession;

use crate::output;

/// `println!` into the command's output.
macro_rules! say {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
use crate::target::{self, split_property};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum MbCommand {
    /// Print a property's value (set on the key or inherited):
    /// `mb get W3SVC/1/ServerBindings`. A flag name (AccessRead) reads
    /// that bit of its bit field.
    Get {
        /// PATH/PROPERTY; the property by name or ID.
        path: String,
        /// Only a value set on the key itself, not an inherited one.
        #[arg(long)]
        own: bool,
    },
    /// Set a property: `mb set W3SVC/1/ServerBindings :80: 10.0.0.1:443:host`.
    /// Each VALUE is one entry of a list; flags are names joined by `|` or
    /// a number; BOOL is TRUE or FALSE; binary is hex.
    Set(SetArgs),
    /// List a key's properties, those it inherits marked, then its child
    /// keys.
    Enum {
        /// The key (default /LM).
        #[arg(default_value = "/LM")]
        path: String,
        /// Only properties set on the key itself.
        #[arg(long)]
        own: bool,
    },
    /// List a key and every key below it with their own properties.
    #[command(name = "enum_all", visible_alias = "enum-all")]
    EnumAll {
        #[arg(default_value = "/LM")]
        path: String,
    },
    /// Create a key: `mb create W3SVC/1/ROOT/images IIsWebDirectory`.
    Create {
        path: String,
        /// Its key type (IIsWebServer, IIsWebVirtualDir, …).
        key_type: String,
    },
    /// Delete a key with everything below it, or a property:
    /// `mb delete W3SVC/2`, `mb delete W3SVC/1/ServerComment`.
    Delete { path: String },
    /// Copy a key with its subtree. An existing destination is merged
    /// into (the source's values win) unless --overwrite.
    Copy {
        source: String,
        destination: String,
        #[arg(long)]
        overwrite: bool,
    },
    /// Rename a key (the destination is a new name or a path under the
    /// same parent).
    Rename { source: String, destination: String },
    /// Move a key with its subtree to another parent.
    Move {
        source: String,
        destination: String,
        #[arg(long)]
        overwrite: bool,
    },
    /// Where a property is set (GetDataPaths): the starting key if it has
    /// the property (set or inherited), then every key below that sets it.
    Find {
        /// The property, by name or ID.
        property: String,
        /// Where to start (default /LM).
        #[arg(default_value = "/LM")]
        path: String,
    },
    /// The schema: classes (key types), properties, and extending them.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Print the changes a running server makes, as they happen (through
    /// the IIS admin base's change-notification sink): `mb watch W3SVC/1
    /// --count 5`, or `--server HOST` for another server's.
    Watch(crate::mb_watch::WatchArgs),
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// PATH/PROPERTY; the property by name, flag name or ID.
    path: String,
    /// The value (several for a list).
    #[arg(num_args = 0..)]
    values: Vec<String>,
    /// For data outside the schema (PROPERTY given as an ID): its type,
    /// DWORD, STRING, EXPANDSZ, MULTISZ or BINARY.
    #[arg(long = "type", value_name = "TYPE")]
    data_type: Option<String>,
    /// For data outside the schema: attributes such as `INHERIT`.
    #[arg(long)]
    attributes: Option<String>,
    /// For data outside the schema: user type (IIS_MD_UT_SERVER, …).
    #[arg(long)]
    user_type: Option<String>,
    /// For data outside the schema: the name to write it under.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// List the classes (key types).
    Classes {
        /// Include IIS's hidden internal classes.
        #[arg(long)]
        all: bool,
    },
    /// Show a class: what it may contain and the properties it may carry.
    Class { name: String },
    /// Show a property's definition: ID, type, attributes, default, range,
    /// flags.
    Property { name: String },
    /// Add a property to the schema (saved to MBSchema.xml).
    AddProperty {
        name: String,
        /// Its numeric ID (unused; 65536 and above are outside IIS's own).
        #[arg(long)]
        id: u32,
        /// DWORD, BOOL, STRING, EXPANDSZ, MULTISZ or BINARY.
        #[arg(long = "type", value_name = "TYPE")]
        data_type: String,
        /// Attributes, e.g. `INHERIT` (default NO_ATTRIBUTES).
        #[arg(long, default_value = "NO_ATTRIBUTES")]
        attributes: String,
        #[arg(long, default_value = "IIS_MD_UT_SERVER")]
        user_type: String,
        #[arg(long)]
        default: Option<String>,
        /// Lowest value of a DWORD.
        #[arg(long)]
        min: Option<u32>,
        /// Highest value of a DWORD.
        #[arg(long)]
        max: Option<u32>,
        /// Key types that may carry it (repeat or comma-separate).
        #[arg(long = "class", value_delimiter = ',')]
        classes: Vec<String>,
    },
    /// Add a class (a new key type) to the schema.
    AddClass {
        name: String,
        /// Key types it may contain.
        #[arg(long, value_delimiter = ',')]
        contains: Vec<String>,
        /// Existing key types that may contain it.
        #[arg(long, value_delimiter = ',')]
        under: Vec<String>,
        /// Properties it may carry.
        #[arg(long = "property", value_delimiter = ',')]
        properties: Vec<String>,
    },
    /// Let a class carry an existing property.
    Allow { class: String, property: String },
}

/// Runs a verb on the metabase files (no server running).
pub fn run(cli: &Cli, command: &MbCommand) -> Result<()> {
    let files = target::open(cli, writes(command))?;
    let mut out = String::new();
    let result = execute(&mut out, cli, &files, command);
    print!("{out}");
    result
}

/// Whether a verb changes the metabase.
pub fn writes(command: &MbCommand) -> bool {
    matches!(
        command,
        MbCommand::Set(_)
            | MbCommand::Create { .. }
            | MbCommand::Delete { .. }
            | MbCommand::Copy { .. }
            | MbCommand::Rename { .. }
            | MbCommand::Move { .. }
            | MbCommand::Schema {
                command: SchemaCommand::AddProperty { .. }
                    | SchemaCommand::AddClass { .. }
                    | SchemaCommand::Allow { .. }
            }
    )
}

/// Runs a verb on `files`, writing what it prints to `out`.
pub fn execute(
    out: &mut String,
    cli: &Cli,
    files: &MetabaseFiles,
    command: &MbCommand,
) -> Result<()> {
    execute_on(out, cli, files.metabase(), command)
}

/// Runs a verb on a metabase: the server's or a file's, or a copy of a
/// remote server's (`--server`).
pub fn execute_on(out: &mut String, cli: &Cli, mb: &Metabase, command: &MbCommand) -> Result<()> {
    match command {
        MbCommand::Get { path, own } => get(out, cli, mb, path, *own),
        MbCommand::Set(args) => set(out, cli, mb, args),
        MbCommand::Enum { path, own } => enumerate(out, cli, mb, path, *own),
        MbCommand::EnumAll { path } => enum_all(out, cli, mb, path),
        MbCommand::Create { path, key_type } => {
            let path = target::path(path)?;
            mb.write(|t| t.create_key(&path, key_type))?;
            done(out, cli, &format!("created {path} ({key_type})"))
        }
        MbCommand::Delete { path } => delete(out, cli, mb, path),
        MbCommand::Copy {
            source,
            destination,
            overwrite,
        } => copy(out, cli, mb, source, destination, *overwrite, true),
        MbCommand::Move {
            source,
            destination,
            overwrite,
        } => copy(out, cli, mb, source, destination, *overwrite, false),
        MbCommand::Rename {
            source,
            destination,
        } => rename(out, cli, mb, source, destination),
        MbCommand::Find { property, path } => find(out, cli, mb, property, path),
        MbCommand::Schema { command } => schema(out, cli, mb, command),
        MbCommand::Watch(_) => bail!("`mb watch` needs a running server"),
    }
}

fn done(out: &mut String, cli: &Cli, message: &str) -> Result<()> {
    output::push_message(out, cli.json, message);
    Ok(())
}

fn get(out: &mut String, cli: &Cli, mb: &Metabase, path: &str, own: bool) -> Result<()> {
    let (key_path, name) = split_property(path)?;
    let snap = mb.snapshot();
    let schema = snap.schema();
    let mode = if own {
        GetMode::Own
    } else {
        GetMode::Inherited
    };
    let id = property_id(&snap, &name).or_else(|| custom_id(&snap, &key_path, &name));
    let resolved = if let Some(id) = id {
        snap.get(&key_path, id, mode)
            .map_err(|e| not_set_hint(&snap, e, &key_path, &name))?
    } else if let Some((def, bit)) = schema.flag_by_name(&name) {
        // A flag reads as a BOOLEAN from its bit field.
        let field = snap.get(&key_path, def.id, mode).ok();
        let set = field
            .as_ref()
            .and_then(|r| r.value.as_dword())
            .or_else(|| {
                if own {
                    None
                } else {
                    def.default_value()?.as_dword()
                }
            })
            .ok_or_else(|| anyhow!("{} is not set at {key_path}", def.name))?;
        let flag_name = def
            .flags
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&name))
            .map_or(name.clone(), |f| f.name.clone());
        let on = set & bit == bit;
        if cli.json {
            output::push_json(
                out,
                &json!({ "name": flag_name, "value": on, "flag_of": def.name }),
            );
        } else {
            say!(
                out,
                "{:<31} : (BOOLEAN) {}",
                flag_name,
                if on { "True" } else { "False" }
            );
        }
        return Ok(());
    } else if snap.exists(&key_path.join(&name)?) {
        bail!(
            "{} is a key, not a property: list it with `inetsrv mb enum {}`",
            key_path.join(&name)?,
            key_path.join(&name)?
        )
    } else {
        bail!("unknown property '{name}'")
    };
    if cli.json {
        let mut obj = output::json(schema, &resolved, cli.show_secrets);
        obj["path"] = json!(snap.canonical(&key_path).unwrap_or(key_path).to_string());
        output::push_json(out, &obj);
    } else {
        say!(out, "{}", output::text(schema, &resolved, cli.show_secrets));
    }
    Ok(())
}

/// A property named by schema name, `MD_<id>`-style name, ID, or the
/// name of custom data set somewhere on the path.
fn property_id(snap: &Snapshot, name: &str) -> Option<u32> {
    if let Some(def) = snap.schema().property_by_name(name) {
        return Some(def.id);
    }
    if let Some(id) = name.strip_prefix("MD_").and_then(|n| n.parse().ok()) {
        return Some(id);
    }
    name.parse().ok()
}

/// Data outside the schema named (`--name`) on the key or above it, the
/// nearest first.
fn custom_id(snap: &Snapshot, path: &MbPath, name: &str) -> Option<u32> {
    let mut at = Some(path.clone());
    while let Some(p) = at {
        let found = snap.find(&p).and_then(|key| custom_on_key(key, name));
        if found.is_some() {
            return found;
        }
        at = p.parent();
    }
    None
}

/// Data outside the schema set on this key under `name`.
fn custom_on_key(key: &metabase::Key, name: &str) -> Option<u32> {
    key.properties()
        .find(|p| {
            p.custom_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|p| p.id)
}

fn not_set_hint(snap: &Snapshot, e: metabase::Error, path: &MbPath, name: &str) -> anyhow::Error {
    if let metabase::Error::DataNotFound { .. } = e {
        if let Some(def) = snap.schema().property_by_name(name) {
            if let Some(default) = def.default.as_ref().filter(|d| !d.is_empty()) {
                return anyhow!(
                    "{} is not set at {path} (nor inherited); its schema default is {default}",
                    def.name
                );
            }
            return anyhow!("{} is not set at {path} (nor inherited)", def.name);
        }
    }
    e.into()
}

fn set(out: &mut String, cli: &Cli, mb: &Metabase, args: &SetArgs) -> Result<()> {
    let (path, name) = split_property(&args.path)?;
    let snap = mb.snapshot();
    let known = snap.schema().property_by_name(&name).is_some()
        || snap.schema().flag_by_name(&name).is_some();
    if known {
        if args.data_type.is_some() || args.attributes.is_some() || args.user_type.is_some() {
            bail!("{name} is in the schema: its type, attributes and user type come from there");
        }
        mb.write(|t| t.set_text(&path, &name, &args.values))?;
    } else {
        // Data outside the schema: the ID and type must be given.
        let id: u32 = name.strip_prefix("MD_").unwrap_or(&name).parse().map_err(|_| {
            anyhow!("unknown property '{name}': give a numeric ID with --type to set data outside the schema, or add it with `inetsrv mb schema add-property`")
        })?;
        let type_name = args
            .data_type
            .as_deref()
            .ok_or_else(|| anyhow!("property {id} is not in the schema: give its --type"))?;
        let data_type = DataType::from_xml_name(type_name).ok_or_else(|| {
            anyhow!("unknown type {type_name} (DWORD, STRING, EXPANDSZ, MULTISZ, BINARY)")
        })?;
        let attributes = match &args.attributes {
            Some(a) => Attributes::parse(a).ok_or_else(|| anyhow!("bad attributes '{a}'"))?,
            None => Attributes::NO_ATTRIBUTES,
        };
        let user_type = match &args.user_type {
            Some(u) => UserType::parse(u).ok_or_else(|| anyhow!("bad user type '{u}'"))?,
            None => UserType::SERVER,
        };
        let def = PropertyDef::custom(
            id,
            args.name.as_deref().unwrap_or(&name),
            data_type,
            user_type,
            attributes,
        );
        let value = def
            .parse_args(&args.values)
            .map_err(|reason| anyhow!("{path}: {id}: {reason}"))?;
        let property = Property {
            id,
            value,
            attributes,
            user_type,
            custom_name: args.name.clone(),
        };
        mb.write(|t| t.set_property(&path, property))?;
    }
    if cli.json {
        return get(out, cli, mb, &args.path, true);
    }
    Ok(())
}

fn key_listing(
    out: &mut String,
    cli: &Cli,
    snap: &Snapshot,
    path: &MbPath,
    mode: GetMode,
) -> Result<serde_json::Value> {
    let schema = snap.schema();
    let key = snap.key(path)?;
    let canonical = snap.canonical(path).unwrap_or_else(|| path.clone());
    let props = snap.enum_data(path, mode)?;
    let children: Vec<String> = key
        .children()
        .map(|c| {
            canonical
                .join(c.name())
                .map(|p| p.to_string())
                .unwrap_or_default()
        })
        .collect();
    let sealed: Vec<String> = key.sealed().map(|s| s.name.clone()).collect();
    if cli.json {
        Ok(json!({
            "path": canonical.to_string(),
            "key_type": key.key_type(),
            "properties": props.iter().map(|r| output::json(schema, r, cli.show_secrets)).collect::<Vec<_>>(),
            "sealed": sealed,
            "children": children,
        }))
    } else {
        for r in &props {
            say!(out, "{}", output::text(schema, r, cli.show_secrets));
        }
        for name in sealed {
            say!(
                out,
                "{name:<31} : (SEALED) encrypted under another machine's key; kept unchanged"
            );
        }
        Ok(json!(children))
    }
}

fn enumerate(out: &mut String, cli: &Cli, mb: &Metabase, path: &str, own: bool) -> Result<()> {
    let path = target::path(path)?;
    let snap = mb.snapshot();
    let mode = if own {
        GetMode::Own
    } else {
        GetMode::Inherited
    };
    let listing = key_listing(out, cli, &snap, &path, mode)?;
    if cli.json {
        output::push_json(out, &listing);
    } else {
        if let Some(children) = listing.as_array() {
            if !children.is_empty() {
                say!(out);
            }
            for c in children {
                say!(out, "[{}]", c.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

fn enum_all(out: &mut String, cli: &Cli, mb: &Metabase, path: &str) -> Result<()> {
    let path = target::path(path)?;
    let snap = mb.snapshot();
    let mut paths = Vec::new();
    snap.walk(&path, |p, _| paths.push(p.clone()))?;
    let mut all = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        if !cli.json {
            if i > 0 {
                say!(out);
            }
            say!(out, "[{p}]  ({})", snap.key(p)?.key_type());
        }
        all.push(key_listing(out, cli, &snap, p, GetMode::Own)?);
    }
    if cli.json {
        output::push_json(out, &json!(all));
    }
    Ok(())
}

fn delete(out: &mut String, cli: &Cli, mb: &Metabase, path: &str) -> Result<()> {
    let full = target::path(path)?;
    let snap = mb.snapshot();
    if let (Some(parent), Some(name)) = (full.parent(), full.name()) {
        if let Some(key) = snap.find(&parent) {
            let id = property_id(&snap, name).or_else(|| custom_on_key(key, name));
            if let Some(id) =
                id.filter(|id| key.property(*id).is_some() || key.sealed().any(|s| s.id == *id))
            {
                mb.write(|t| t.delete_data(&parent, id))?;
                return done(
                    out,
                    cli,
                    &format!("deleted {} from {parent}", snap.schema().name_of(id)),
                );
            }
        }
    }
    if !snap.exists(&full) {
        bail!(
            "{full} is neither a key nor a property set on {}",
            full.parent().unwrap_or_default()
        );
    }
    let count = snap.key(&full)?.subtree_len();
    mb.write(|t| t.delete_key(&full))?;
    done(
        out,
        cli,
        &format!(
            "deleted {full} ({count} key{})",
            if count == 1 { "" } else { "s" }
        ),
    )
}

fn copy(
    out: &mut String,
    cli: &Cli,
    mb: &Metabase,
    source: &str,
    destination: &str,
    overwrite: bool,
    keep_source: bool,
) -> Result<()> {
    let src = target::path(source)?;
    let dst = target::path(destination)?;
    mb.write(|t| t.copy_key(&src, &dst, overwrite, keep_source))?;
    done(
        out,
        cli,
        &format!(
            "{} {src} to {dst}",
            if keep_source { "copied" } else { "moved" }
        ),
    )
}

fn rename(
    out: &mut String,
    cli: &Cli,
    mb: &Metabase,
    source: &str,
    destination: &str,
) -> Result<()> {
    let src = target::path(source)?;
    let new_name = if destination.contains(['/', '\\']) {
        let dst = target::path(destination)?;
        if dst.parent() != src.parent()
            && !dst
                .parent()
                .zip(src.parent())
                .is_some_and(|(a, b)| a.eq_ignore_case(&b))
        {
            bail!("rename keeps a key under the same parent; to put {src} elsewhere use `inetsrv mb move`");
        }
        dst.name().unwrap_or_default().to_string()
    } else {
        destination.to_string()
    };
    mb.write(|t| t.rename_key(&src, &new_name))?;
    done(out, cli, &format!("renamed {src} to {new_name}"))
}

fn find(out: &mut String, cli: &Cli, mb: &Metabase, property: &str, path: &str) -> Result<()> {
    let path = target::path(path)?;
    let snap = mb.snapshot();
    let id =
        property_id(&snap, property).ok_or_else(|| anyhow!("unknown property '{property}'"))?;
    let paths = snap.data_paths(&path, id, None)?;
    if cli.json {
        output::push_json(
            out,
            &json!({
                "property": snap.schema().name_of(id),
                "id": id,
                "paths": paths.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
    } else if paths.is_empty() {
        say!(
            out,
            "{} is not set at or below {path}",
            snap.schema().name_of(id)
        );
    } else {
        say!(out, "{} is set at:", snap.schema().name_of(id));
        for p in paths {
            say!(out, "  {p}");
        }
    }
    Ok(())
}

fn schema(out: &mut String, cli: &Cli, mb: &Metabase, command: &SchemaCommand) -> Result<()> {
    let snap = mb.snapshot();
    let schema = snap.schema();
    match command {
        SchemaCommand::Classes { all } => {
            let classes: Vec<_> = schema
                .classes()
                .iter()
                .filter(|c| *all || (!c.is_hidden() && c.name != "MetabaseBaseClass"))
                .collect();
            if cli.json {
                output::push_json(
                    out,
                    &json!(classes.iter().map(|c| &c.name).collect::<Vec<_>>()),
                );
            } else {
                for c in classes {
                    say!(out, "{}", c.name);
                }
            }
        }
        SchemaCommand::Class { name } => {
            let class = schema
                .class(name)
                .ok_or_else(|| anyhow!("unknown class '{name}'"))?;
            let props: Vec<String> = schema
                .class_properties(&class.name)
                .iter()
                .map(|d| d.name.clone())
                .collect();
            if cli.json {
                output::push_json(
                    out,
                    &json!({
                        "name": class.name,
                        "contains": class.container_class_list,
                        "properties": props,
                    }),
                );
            } else {
                say!(out, "{}", class.name);
                match &class.container_class_list {
                    Some(list) if list.is_empty() => say!(out, "  contains: nothing"),
                    Some(list) => say!(out, "  contains: {}", list.join(", ")),
                    None => say!(out, "  contains: anything"),
                }
                say!(out, "  properties ({}):", props.len());
                for p in props {
                    say!(out, "    {p}");
                }
            }
        }
        SchemaCommand::Property { name } => {
            let def = schema
                .property_by_name(name)
                .ok_or_else(|| anyhow!("unknown property '{name}'"))?;
            let classes: Vec<&str> = schema
                .classes()
                .iter()
                .filter(|c| {
                    c.properties
                        .iter()
                        .any(|p| p.is_reference && p.name.eq_ignore_ascii_case(&def.name))
                })
                .map(|c| c.name.as_str())
                .collect();
            if cli.json {
                output::push_json(
                    out,
                    &json!({
                        "name": def.name,
                        "id": def.id,
                        "type": def.schema_type.to_string(),
                        "user_type": def.user_type.to_string(),
                        "attributes": def.attributes.to_string(),
                        "default": def.default,
                        "range": def.range(),
                        "flags": def.flags.iter().map(|f| json!({"name": f.name, "value": f.value})).collect::<Vec<_>>(),
                        "classes": classes,
                    }),
                );
            } else {
                say!(out, "{} (ID {})", def.name, def.id);
                say!(out, "  type:       {}", def.schema_type);
                say!(out, "  user type:  {}", def.user_type);
                say!(out, "  attributes: {}", def.attributes);
                if let Some(d) = &def.default {
                    say!(out, "  default:    {d}");
                }
                if let Some((lo, hi)) = def.range() {
                    say!(out, "  range:      {lo} to {hi}");
                }
                for f in &def.flags {
                    say!(out, "  flag:       {} = {}", f.name, f.value);
                }
                say!(out, "  classes:    {}", classes.join(", "));
            }
        }
        SchemaCommand::AddProperty {
            name,
            id,
            data_type,
            attributes,
            user_type,
            default,
            min,
            max,
            classes,
        } => {
            let schema_type = SchemaType::parse(data_type).ok_or_else(|| {
                anyhow!("unknown type {data_type} (DWORD, BOOL, STRING, EXPANDSZ, MULTISZ, BINARY)")
            })?;
            let mut def = PropertyDef::custom(
                *id,
                name,
                schema_type.data_type(),
                UserType::parse(user_type).ok_or_else(|| anyhow!("bad user type '{user_type}'"))?,
                Attributes::parse(attributes)
                    .ok_or_else(|| anyhow!("bad attributes '{attributes}'"))?,
            );
            def.schema_type = schema_type;
            def.default = default.clone();
            if min.is_some() || max.is_some() {
                if schema_type != SchemaType::Dword {
                    bail!("--min and --max apply to DWORD properties");
                }
                def.starting_number = Some(min.unwrap_or(0));
                def.ending_number = Some(max.unwrap_or(u32::MAX));
            }
            mb.write(|t| t.extend_schema(|s| s.add_property(def, classes)))
                .context("cannot add the property")?;
            done(out, cli, &format!("added property {name} (ID {id})"))?;
        }
        SchemaCommand::AddClass {
            name,
            contains,
            under,
            properties,
        } => {
            mb.write(|t| {
                t.extend_schema(|s| s.add_class(name, contains.clone(), under, properties))
            })
            .context("cannot add the class")?;
            done(out, cli, &format!("added class {name}"))?;
        }
        SchemaCommand::Allow { class, property } => {
            mb.write(|t| t.extend_schema(|s| s.add_property_to_class(class, property)))?;
            done(out, cli, &format!("{class} may now carry {property}"))?;
        }
    }
    Ok(())
}

/// `inetsrv mb …` on a running server, this machine's (over its Unix
/// socket) or another (`--server HOST`): the verb runs on a copy of the
/// server's metabase (see [`copy_of`]), so it prints what it prints on the
/// files and refuses what it refuses there; what a writing verb changed
/// in the copy is then made on the server in one transaction (see
/// [`send_ops`]), whose own checks it passes again. SECURE values travel
/// encrypted under the secure session negotiated first
/// (R_KeyExchangePhase1/2).
pub fn run_remote(cli: &Cli, target: &crate::rpc_cmd::Target, command: &MbCommand) -> Result<()> {
    run_on_copy(cli, target, |mb, out| execute_on(out, cli, mb, command))
}

/// Runs `work` on a copy of a remote server's metabase (what it prints
/// goes to `out`), then makes on the server what it changed in the copy
/// and returns once that is in effect there.
pub fn run_on_copy(
    cli: &Cli,
    target: &crate::rpc_cmd::Target,
    work: impl FnOnce(&Metabase, &mut String) -> Result<()>,
) -> Result<()> {
    let mut out = String::new();
    let result = with_remote_copy(cli, target, async |copy: &RemoteCopy<'_>| {
        let done = work(&copy.metabase, &mut out);
        // What the verb wrote before it failed stays written, as locally.
        let settled = copy.settle().await;
        done.and(settled)
    });
    print!("{out}");
    result
}

/// A remote server's metabase, copied here, and the connection that
/// reaches the server: what a verb changes in the copy is made on the
/// server by [`RemoteCopy::push`].
pub struct RemoteCopy<'s> {
    pub metabase: Metabase,
    /// The connection to the server and its IMSAdminBase object.
    pub session: &'s AdminSession,
    /// The server runs on this machine (its Unix socket): paths a verb
    /// names are this machine's, checked here.
    pub on_this_machine: bool,
    changes: std::sync::Mutex<std::sync::mpsc::Receiver<std::sync::Arc<metabase::ChangeBatch>>>,
}

impl RemoteCopy<'_> {
    /// Makes on the server what the copy committed since the last push.
    pub async fn push(&self) -> Result<bool> {
        let snapshot = self.metabase.snapshot();
        let mut ops = Vec::new();
        while let Ok(batch) = self
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_recv()
        {
            ops_of(&batch, &snapshot, self.session.secure.as_ref(), &mut ops)?;
        }
        let sent = !ops.is_empty();
        let mut conn = self.session.conn.lock().await;
        send_ops(&mut conn, self.session, ops)
            .await
            .context("the change was checked here but not made on the server")?;
        Ok(sent)
    }

    /// Pushes, and returns once what was pushed is in effect (in every
    /// worker) on an inetsrv server.
    pub async fn settle(&self) -> Result<()> {
        if !self.push().await? || !self.session.tree {
            return Ok(());
        }
        let mut conn = self.session.conn.lock().await;
        let status = iisadmin::wasctl::WasControlClient::bind(&mut conn)
            .await?
            .synced()
            .await?;
        crate::web_cmd::control_status(status, "waiting for the change to take effect")
    }
}

/// Connects to the server `target` names, activates IMSAdminBase there,
/// copies its metabase and runs `work` on the copy; the object is released
/// after.
pub fn with_remote_copy<T>(
    cli: &Cli,
    target: &crate::rpc_cmd::Target,
    work: impl AsyncFnOnce(&RemoteCopy<'_>) -> Result<T>,
) -> Result<T> {
    with_admin_base(cli, target, async |session| {
        let (metabase, server_file) = {
            let mut conn = session.conn.lock().await;
            copy_of(&mut conn, session).await?
        };
        if let (true, Some(mine), Some(served)) =
            (target.server.is_none(), &cli.metabase, &server_file)
        {
            let canonical = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if canonical(mine) != canonical(served) {
                return Err(OtherMetabase.into());
            }
        }
        let changes = metabase.subscribe();
        let copy = RemoteCopy {
            metabase,
            session,
            changes: std::sync::Mutex::new(changes),
            on_this_machine: target.server.is_none(),
        };
        work(&copy).await
    })
}

/// The server on this machine serves another metabase file than the one
/// the command names.
#[derive(Debug)]
pub struct OtherMetabase;

impl std::fmt::Display for OtherMetabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server here serves another metabase file")
    }
}

impl std::error::Error for OtherMetabase {}

/// A connection to a server with an IMSAdminBase object activated on it
/// (IMSAdminBase3W: 2W and the base are the same object).
pub struct AdminSession {
    pub conn: tokio::sync::Mutex<msrpc::client::Connection>,
    /// The object's IPID.
    pub ipid: msrpc::Uuid,
    /// The secure session SECURE values travel under, when the server
    /// negotiated one.
    pub secure: Option<SecureSession>,
    /// Whether the object serves inetsrv's metabase-tree interface (a copy
    /// in one call, a change in one transaction); else key by key.
    pub tree: bool,
}

/// R_KeyExchangePhase1 and 2 ([MS-IMSA] 3.2.4.2-3): a secure session for
/// SECURE values.
async fn negotiate(
    conn: &mut msrpc::client::Connection,
    ipid: msrpc::Uuid,
) -> Result<SecureSession> {
    use iisadmin::secure::ClientExchange;
    use msrpc::ndr::Unique;
    let (client, exchange, signature) = ClientExchange::start()?;
    let mut admin = iisadmin::imsa::MsAdminBaseWClient::bind(conn)
        .await?
        .on_object(ipid);
    let (_, server_exchange, server_signature, server_session, hr) = admin
        .key_exchange_phase1(
            this(),
            Unique::new(Some(exchange)),
            Unique::new(Some(signature)),
        )
        .await?;
    check(hr, "R_KeyExchangePhase1")?;
    let (Some(server_exchange), Some(server_signature), Some(server_session)) = (
        server_exchange.get(),
        server_signature.get(),
        server_session.get(),
    ) else {
        bail!("R_KeyExchangePhase1: the server's answer lacks a key");
    };
    let (offered, session, hash) =
        client.answer(server_exchange, server_signature, server_session)?;
    let (_, server_hash, hr) = admin
        .key_exchange_phase2(this(), Unique::new(Some(session)), Unique::new(Some(hash)))
        .await?;
    check(hr, "R_KeyExchangePhase2")?;
    let server_hash = server_hash
        .get()
        .ok_or_else(|| anyhow!("R_KeyExchangePhase2: the server's answer lacks its hash"))?;
    Ok(offered.finish(server_hash)?)
}

/// Connects to the server `target` names and activates IMSAdminBase there;
/// `work` gets the session, and the object is released after.
pub fn with_admin_base<T>(
    cli: &Cli,
    target: &crate::rpc_cmd::Target,
    work: impl AsyncFnOnce(&AdminSession) -> Result<T>,
) -> Result<T> {
    crate::rpc_cmd::run_connected(cli, target, async |mut conn, _| {
        use iisadmin::imsa::{CLSID_MSADMIN_BASE_W, IID_IMSADMIN_BASE3_W};
        let remote =
            dcom::client::create_instance(&mut conn, CLSID_MSADMIN_BASE_W, IID_IMSADMIN_BASE3_W)
                .await
                .context("cannot activate IMSAdminBase on the server")?;
        // A server that does not negotiate (an older one) still serves
        // everything but SECURE values.
        let secure = match negotiate(&mut conn, remote.ipid).await {
            Ok(secure) => Some(secure),
            Err(e) => {
                tracing::debug!("no secure session: {e:#}");
                None
            }
        };
        // inetsrv's own interface on the object, when the server has it.
        let tree = MetabaseTreeClient::bind(&mut conn).await.is_ok();
        let session = AdminSession {
            conn: tokio::sync::Mutex::new(conn),
            ipid: remote.ipid,
            secure,
            tree,
        };
        let done = work(&session).await;
        let mut conn = session.conn.into_inner();
        let _ = dcom::client::release(&mut conn, &remote).await;
        done
    })
}

/// What one committed change batch of the copy made, as the operations
/// that make it on the server (appended to `ops`).
fn ops_of(
    batch: &metabase::ChangeBatch,
    snapshot: &metabase::Snapshot,
    secure: Option<&SecureSession>,
    ops: &mut Vec<TreeOp>,
) -> Result<()> {
    use metabase::ChangeKind;
    if batch.schema_changed {
        ops.push(op(
            OpKind::ReplaceSchema,
            &MbPath::root(),
            Some(metabase::schema::write_schema(snapshot.tree().schema())),
        ));
    }
    // Keys made with their subtree: the changes below them are made too.
    let mut added: Vec<&MbPath> = Vec::new();
    for change in &batch.changes {
        let kind = change.kind;
        let path = &change.path;
        if added.iter().any(|a| path.starts_with(a) && path != *a) {
            continue;
        }
        if kind.contains(ChangeKind::RENAME_OBJECT) {
            if let Some(new_name) = change.new_path.as_ref().and_then(|p| p.name()) {
                ops.push(op(OpKind::RenameKey, path, Some(new_name.to_string())));
            }
            continue;
        }
        match snapshot.tree().find(path) {
            None if kind.contains(ChangeKind::DELETE_OBJECT) => {
                ops.push(op(OpKind::DeleteKey, path, None));
            }
            Some(key) if kind.contains(ChangeKind::ADD_OBJECT) => {
                subtree_ops(path, key, secure, ops)?;
                added.push(path);
            }
            Some(key) => {
                for id in &change.ids {
                    match key.property(*id) {
                        Some(p) => {
                            let mut set = op(OpKind::SetData, path, None);
                            set.record = record_of(path, p, secure)?;
                            ops.push(set);
                        }
                        None => {
                            let mut delete = op(OpKind::DeleteData, path, None);
                            delete.record.identifier = *id;
                            ops.push(delete);
                        }
                    }
                }
            }
            None => {}
        }
    }
    Ok(())
}

fn op(kind: OpKind, path: &MbPath, text: Option<String>) -> TreeOp {
    TreeOp {
        kind,
        path: msrpc::ndr::WString(path.to_string()),
        text: msrpc::ndr::Unique::new(text.map(msrpc::ndr::WString)),
        record: iisadmin::imsa::MetadataRecord::default(),
    }
}

/// A key of the copy and everything below it, as operations.
fn subtree_ops(
    path: &MbPath,
    key: &metabase::Key,
    secure: Option<&SecureSession>,
    ops: &mut Vec<TreeOp>,
) -> Result<()> {
    let key_type = key
        .property(metabase::schema::KEY_TYPE_ID)
        .and_then(|p| p.value.as_str().map(str::to_string));
    ops.push(op(OpKind::AddKey, path, key_type));
    // The key type first: the data allowed on the key depends on it.
    let mut properties: Vec<&Property> = key.properties().collect();
    properties.sort_by_key(|p| p.id != metabase::schema::KEY_TYPE_ID);
    for property in properties {
        let mut set = op(OpKind::SetData, path, None);
        set.record = record_of(path, property, secure)?;
        ops.push(set);
    }
    for child in key.children() {
        subtree_ops(&path.join(child.name())?, child, secure, ops)?;
    }
    Ok(())
}

/// The METADATA_RECORD R_SetData takes for a value of the copy.
fn record_of(
    path: &MbPath,
    property: &Property,
    secure: Option<&SecureSession>,
) -> Result<iisadmin::imsa::MetadataRecord> {
    use msrpc::ndr::{ConformantArray, Unique};
    let mut bytes = property.value.to_wire_bytes();
    if property.attributes.contains(Attributes::SECURE) {
        // 3.2.4.4: pbMDData is the IIS_CRYPTO_BLOB of the encrypted value.
        let Some(secure) = secure else {
            bail!(
                "{path}: data {} is SECURE and the server negotiated no secure session (R_KeyExchangePhase1/2) to send it encrypted; set it on the server",
                property.id
            );
        };
        let blob = secure.encrypt(&bytes)?;
        bytes = Vec::with_capacity(8 + blob.data.len());
        bytes.extend_from_slice(&blob.signature.to_le_bytes());
        bytes.extend_from_slice(&blob.length.to_le_bytes());
        bytes.extend_from_slice(&blob.data);
    }
    Ok(iisadmin::imsa::MetadataRecord {
        identifier: property.id,
        attributes: property.attributes.0,
        user_type: property.user_type.0,
        data_type: property.value.data_type().code(),
        data_len: bytes.len() as u32,
        data: Unique::new(Some(ConformantArray(bytes))),
        data_tag: 0,
    })
}

/// Makes the operations on the server: in one transaction through
/// inetsrv's metabase-tree interface, or one IMSAdminBaseW call each on a
/// server without it.
async fn send_ops(
    conn: &mut msrpc::client::Connection,
    session: &AdminSession,
    ops: Vec<TreeOp>,
) -> Result<()> {
    use iisadmin::imsa::MsAdminBaseWClient;
    use msrpc::ndr::{ConformantArray, Unique};
    if ops.is_empty() {
        return Ok(());
    }
    if session.tree {
        let mut tree = MetabaseTreeClient::bind(conn)
            .await?
            .on_object(session.ipid);
        let (_, answer, hr) = tree
            .apply(this(), Unique::new(Some(ConformantArray(ops))))
            .await?;
        if hr != 0 {
            let message = answer
                .message
                .get()
                .map(|m| m.0.clone())
                .unwrap_or_default();
            check(hr, "the change")
                .with_context(|| message)
                .context("the server refused the change (none of it was made)")?;
        }
        return Ok(());
    }
    let mut admin = MsAdminBaseWClient::bind(conn)
        .await?
        .on_object(session.ipid);
    for op in ops {
        let path = op.path.0.clone();
        let (what, hr) = match op.kind {
            OpKind::AddKey => ("AddKey", admin.add_key(this(), 0, wide(&path)).await?.1),
            OpKind::DeleteKey => (
                "DeleteKey",
                admin.delete_key(this(), 0, wide(&path)).await?.1,
            ),
            OpKind::RenameKey => {
                let name = op.text.get().map(|t| t.0.as_str()).unwrap_or_default();
                let hr = admin
                    .rename_key(this(), 0, wide(&path), wide(name))
                    .await?
                    .1;
                ("RenameKey", hr)
            }
            OpKind::SetData => {
                let id = op.record.identifier;
                let hr = admin.set_data(this(), 0, wide(&path), op.record).await?.1;
                check(hr, &format!("SetData {path} {id}"))?;
                continue;
            }
            OpKind::DeleteData => {
                let id = op.record.identifier;
                let hr = admin.delete_data(this(), 0, wide(&path), id, 0).await?.1;
                check(hr, &format!("DeleteData {path} {id}"))?;
                continue;
            }
            OpKind::ReplaceSchema => {
                bail!("the server takes no schema change over the wire (it is not inetsrv); change its schema there")
            }
        };
        check(hr, &format!("{what} {path}"))?;
    }
    Ok(())
}

pub(crate) fn this() -> dcom::types::OrpcThis {
    dcom::types::OrpcThis::new(dcom::ids::COM_VERSION)
}

pub(crate) fn wide(s: &str) -> msrpc::ndr::Unique<msrpc::ndr::WString> {
    msrpc::ndr::Unique::new(Some(msrpc::ndr::WString(s.to_string())))
}

/// An HRESULT the server answered, as an error.
pub(crate) fn check(hr: u32, what: &str) -> Result<()> {
    if hr == 0 {
        return Ok(());
    }
    Err(Refused {
        what: what.to_string(),
        hr,
    }
    .into())
}

/// A call the server answered with a failing HRESULT.
#[derive(Debug)]
pub(crate) struct Refused {
    pub what: String,
    pub hr: u32,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meaning = match self.hr {
            iisadmin::imsa::E_INVALIDARG => " (E_INVALIDARG: the server refused the value)",
            iisadmin::imsa::E_ACCESSDENIED => " (E_ACCESSDENIED)",
            iisadmin::imsa::ERROR_PATH_NOT_FOUND => " (ERROR_PATH_NOT_FOUND)",
            iisadmin::imsa::ERROR_ALREADY_EXISTS => " (ERROR_ALREADY_EXISTS)",
            iisadmin::imsa::ERROR_PATH_BUSY => {
                " (ERROR_PATH_BUSY: another client holds the key open for writing)"
            }
            _ => "",
        };
        write!(
            f,
            "{}: the server answered HRESULT {:#010x}{meaning}",
            self.what, self.hr
        )
    }
}

impl std::error::Error for Refused {}

/// Every key below /LM and its own data, into a metabase here: in one
/// call where the server has inetsrv's metabase-tree interface (with its
/// schema, and the metabase file it serves), else key by key through
/// IMSAdminBase3W (GetChildPaths, then R_GetAllData of each key).
pub(crate) async fn copy_of(
    conn: &mut msrpc::client::Connection,
    session: &AdminSession,
) -> Result<(Metabase, Option<PathBuf>)> {
    let ipid = session.ipid;
    use iisadmin::imsa::{MsAdminBase3WAddsClient, MsAdminBaseWClient};
    use msrpc::ndr::{ConformantArray, Unique};
    if session.tree {
        let mut tree = MetabaseTreeClient::bind(conn).await?.on_object(ipid);
        let (_, answer, hr) = tree
            .get_tree(this(), msrpc::ndr::WString("/LM".into()))
            .await?;
        check(hr, "reading the metabase")?;
        let schema = match answer.schema.get() {
            Some(text) => std::sync::Arc::new(
                metabase::Schema::from_file_text(&text.0, "the server's schema")
                    .context("the server's schema")?,
            ),
            None => metabase::Schema::standard(),
        };
        let mut data = Vec::new();
        for key in answer.keys.get().map(|k| k.0.as_slice()).unwrap_or(&[]) {
            let blob = getall_blob(session, &key.path.0, &key.data)?;
            data.push((key.path.0.clone(), getall_entries(&blob)?));
        }
        let file = PathBuf::from(&answer.metabase_file.0);
        return Ok((copied(&data, schema)?, Some(file)));
    }
    // Every key's path below /LM, as a MULTISZ sized by a first call.
    let mut v3 = MsAdminBase3WAddsClient::bind(conn).await?.on_object(ipid);
    let mut size = 4096u32;
    let units = loop {
        let (_, buffer, required, hr) = v3
            .get_child_paths(
                this(),
                0,
                wide("/LM"),
                size,
                Unique::new(Some(ConformantArray(vec![0; size as usize]))),
                Unique::new(Some(0)),
            )
            .await?;
        let required = required.get().copied().unwrap_or(0);
        if hr == iisadmin::imsa::ERROR_INSUFFICIENT_BUFFER && required > size {
            size = required;
            continue;
        }
        check(hr, "GetChildPaths")?;
        break buffer.get().map(|b| b.0.clone()).unwrap_or_default();
    };
    let mut keys = vec!["/LM".to_string()];
    for part in units.split(|&u| u == 0).filter(|p| !p.is_empty()) {
        keys.push(format!("/LM/{}", String::from_utf16_lossy(part)));
    }
    // Each key's own data.
    let mut admin = MsAdminBaseWClient::bind(conn).await?.on_object(ipid);
    let mut data = Vec::with_capacity(keys.len());
    for key in &keys {
        let mut size = 16 * 1024u32;
        let blob = loop {
            let (_, _, _, required, blob, hr) = admin
                .get_all_data(this(), 0, wide(key), 0, 0, 0, size)
                .await?;
            if hr == iisadmin::imsa::ERROR_INSUFFICIENT_BUFFER && required > size {
                size = required;
                continue;
            }
            check(hr, &format!("GetAllData {key}"))?;
            break match blob.get() {
                Some(b) => getall_blob(session, key, b)?,
                None => Vec::new(),
            };
        };
        data.push((key.clone(), getall_entries(&blob)?));
    }
    Ok((copied(&data, metabase::Schema::standard())?, None))
}

/// A GetAllData buffer as it came: in the clear, or encrypted under the
/// secure session.
fn getall_blob(
    session: &AdminSession,
    key: &str,
    blob: &iisadmin::imsa::IisCryptoBlob,
) -> Result<Vec<u8>> {
    if blob.signature != iisadmin::secure::ENCRYPTED_DATA_BLOB_SIGNATURE {
        return Ok(blob.data.clone());
    }
    let secure = session.secure.as_ref().ok_or_else(|| {
        anyhow!("the server sent {key}'s data encrypted without a secure session")
    })?;
    secure
        .decrypt(blob)
        .with_context(|| format!("GetAllData {key}"))
}

/// The keys a server listed (parents first) with their data, as a
/// metabase here. It is made as the server holds it: its checks were made
/// there.
fn copied(
    data: &[(String, Vec<Property>)],
    schema: std::sync::Arc<metabase::Schema>,
) -> Result<Metabase> {
    let type_of = |entries: &[Property]| {
        entries
            .iter()
            .find(|p| p.id == metabase::schema::KEY_TYPE_ID)
            .and_then(|p| p.value.as_str().map(str::to_string))
            .unwrap_or_else(|| metabase::schema::GENERIC_KEY_TYPE.to_string())
    };
    let mut root = metabase::Key::copied("", "IIS_ROOT");
    for (key, entries) in data {
        let path = MbPath::parse(key)?;
        let mut at = &mut root;
        for (depth, part) in path.parts().iter().enumerate() {
            at = if depth + 1 == path.depth() {
                at.child_copied(metabase::Key::copied(part, &type_of(entries)))
            } else {
                match at.child_copied_mut(part) {
                    Some(k) => k,
                    None => bail!("the server listed {key} before its parent"),
                }
            };
        }
        for property in entries {
            at.put_copied(property.clone());
        }
    }
    Ok(Metabase::new(metabase::Snapshot::new(
        metabase::Tree::new(root, schema),
        0,
    )))
}

/// The data of an R_GetAllData buffer: METADATA_GETALL_RECORDs, then the
/// values they point into.
fn getall_entries(blob: &[u8]) -> Result<Vec<Property>> {
    let u32_at = |at: usize| {
        blob.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| anyhow!("the server's GetAllData buffer is cut short"))
    };
    // The records end where the first value begins.
    let mut out = Vec::new();
    let mut at = 0;
    let mut first_value = blob.len();
    while at + 28 <= first_value {
        let (id, attributes, user_type, data_type, len, offset) = (
            u32_at(at)?,
            u32_at(at + 4)?,
            u32_at(at + 8)?,
            u32_at(at + 12)?,
            u32_at(at + 16)? as usize,
            u32_at(at + 20)? as usize,
        );
        first_value = first_value.min(offset);
        let bytes = blob
            .get(offset..offset + len)
            .ok_or_else(|| anyhow!("a GetAllData value lies outside the buffer"))?;
        let data_type = DataType::from_code(data_type)
            .ok_or_else(|| anyhow!("data {id} has an unknown data type {data_type}"))?;
        let value = metabase::Value::from_wire_bytes(data_type, bytes)
            .ok_or_else(|| anyhow!("data {id} is not a valid {data_type:?}"))?;
        out.push(Property {
            id,
            value,
            attributes: Attributes(attributes),
            user_type: UserType(user_type),
            custom_name: None,
        });
        at += 28;
    }
    Ok(out)
}
