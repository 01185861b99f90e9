//! `inetsrv query` and `inetsrv wmi`: the IIS WMI provider's object model
//! (root/MicrosoftIISv2) on the command line, offline on the metabase
//! files or on a running server through its admin socket.

use anyhow::Result;
use clap::Subcommand;
use metabase::MetabaseFiles;
use wmi::methods::{Outcome, ServerAction};
use wmi::{ClassModel, Provider};

use crate::Cli;

#[derive(Subcommand, Debug, Clone)]
pub enum WmiCommand {
    /// Print an instance by its object path, e.g. IIsWebServerSetting.Name="W3SVC/1".
    Get {
        /// The object path (Class.Name="value", or Class="value").
        path: String,
    },
    /// Create or update an instance (SpawnInstance then Put): CLASS
    /// Name=W3SVC/20 Prop=value …; repeat a property for an array
    /// (ServerBindings=:83: ServerBindings=:84:).
    Put {
        /// The class, e.g. IIsWebServerSetting.
        class: String,
        /// Name=… (the key, required) and Property=value pairs.
        #[arg(value_name = "PROP=VALUE", required = true)]
        properties: Vec<String>,
    },
    /// Delete an instance: the metabase key and everything below it.
    Delete {
        /// The object path, e.g. IIsWebVirtualDir.Name="W3SVC/1/ROOT/old".
        path: String,
    },
    /// Call a method: PATH METHOD Arg=value …, e.g.
    /// IIsWebServer='W3SVC/1' Stop, or IIsWebService='W3SVC' CreateNewSite
    /// ServerComment=Shop ServerBindings=:83: PathOfRootVirtualDir=/srv/shop.
    Call {
        /// The object path of the instance.
        path: String,
        /// The method: Start, Stop, Pause, Continue, CreateNewSite, Recycle,
        /// EnumAppsInPool, AppCreate, AppCreate2, AppCreate3, AppDelete,
        /// AppEnable, AppDisable, AppUnload, AppGetStatus.
        method: String,
        /// Arguments as Name=value (repeat a name for an array).
        #[arg(value_name = "ARG=VALUE")]
        args: Vec<String>,
    },
    /// Print events as they happen: SELECT * FROM __InstanceModificationEvent
    /// WITHIN 2 WHERE TargetInstance ISA 'IIsWebServerSetting' (also
    /// __InstanceCreationEvent, __InstanceDeletionEvent,
    /// __InstanceOperationEvent). On a running server they come from its
    /// change notifications, state changes included; offline MetaBase.xml
    /// is compared every WITHIN seconds (default 1). Ctrl-C stops.
    Watch {
        /// The event query.
        query: String,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Extend the schema: a new property on CLASS's key type (and so on its
    /// setting class), written to MBSchema.xml.
    AddProperty {
        /// An element or setting class, e.g. IIsWebServerSetting.
        class: String,
        /// The new property's name.
        name: String,
        /// boolean, uint32, string, string[] or uint8[].
        #[arg(long = "type", value_name = "TYPE")]
        cim_type: String,
        /// Its metabase ID (default: the next free one from 70000).
        #[arg(long)]
        id: Option<u32>,
        /// Inherited by keys below, as INHERIT metabase properties are.
        #[arg(long)]
        inherit: bool,
    },
    /// Extend the schema: a new class (a new metabase key type, with its
    /// element and setting classes), written to MBSchema.xml.
    AddClass {
        /// The class's name (its setting class is NAMESetting).
        name: String,
        /// Classes whose keys may contain it (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        under: Vec<String>,
        /// Existing properties it carries (repeat or comma-separate).
        #[arg(long = "property", value_delimiter = ',')]
        properties: Vec<String>,
    },
    /// List the classes of root/MicrosoftIISv2, or one class's properties.
    Classes {
        /// Show this class's properties: type, key, read-only, defining class.
        #[arg(long, value_name = "CLASS")]
        schema: Option<String>,
    },
}

/// What to run: a query or a wmi verb.
pub enum Request<'a> {
    Query(&'a str),
    Wmi(&'a WmiCommand),
}

impl Request<'_> {
    /// Whether it may change the metabase.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Request::Wmi(
                WmiCommand::Put { .. } | WmiCommand::Delete { .. } | WmiCommand::Call { .. }
            )
        )
    }
}

/// Offline, on the files: a method that needs the running server fails.
pub fn run(cli: &Cli, request: Request<'_>) -> Result<()> {
    if let Request::Wmi(WmiCommand::Watch {
        query,
        count,
        timeout,
    }) = request
    {
        return watch(cli, query, *count, *timeout);
    }
    let files = crate::target::open(cli, request.writes())?;
    let mut out = String::new();
    let result = execute(&mut out, cli, &files, request);
    print!("{out}");
    match result? {
        None => Ok(()),
        Some(action) if !action.needs_server() => Ok(()),
        Some(action) => anyhow::bail!(
            "{action:?} needs the running server (inetsrv start) on this state directory"
        ),
    }
}

/// `NAME=VALUE` arguments, a name repeated for an array.
fn pairs(items: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            anyhow::bail!("'{item}' is not NAME=VALUE");
        };
        let name = name.trim();
        if name.is_empty() {
            anyhow::bail!("'{item}' has no name before '='");
        }
        match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, values)) => values.push(value.to_string()),
            None => out.push((name.to_string(), vec![value.to_string()])),
        }
    }
    Ok(out)
}

/// Runs a request; returns what only the running server can do, when the
/// request needs it.
pub fn execute(
    out: &mut String,
    cli: &Cli,
    files: &MetabaseFiles,
    request: Request<'_>,
) -> Result<Option<ServerAction>> {
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let mut provider = Provider::new(&model, &snapshot);
    provider.show_secrets = cli.show_secrets;
    provider.backups = files.list_backups(None).unwrap_or_default();
    match request {
        Request::Query(text) => {
            let result = provider.query(text).map_err(|e| with_caret(e, text))?;
            if cli.json {
                let rows: Vec<_> = result.instances.iter().map(|i| i.to_json()).collect();
                *out = serde_json::to_string_pretty(&rows)? + "\n";
                return Ok(None);
            }
            match &result.columns {
                Some(_) if result.instances.is_empty() => {}
                Some(columns) => table(out, columns, &result.instances),
                None => {
                    for (i, inst) in result.instances.iter().enumerate() {
                        if i > 0 {
                            out.push('\n');
                        }
                        block(out, inst);
                    }
                }
            }
            if result.instances.is_empty() {
                out.push_str("(no instances)\n");
            }
        }
        Request::Wmi(WmiCommand::Put { class, properties }) => {
            let props = pairs(properties)?;
            let is_backup = model
                .class(class)
                .is_some_and(|c| c.kind == wmi::ClassKind::Backup);
            let relpath = if is_backup {
                wmi::computer::put_backup(files, &props)?
            } else {
                wmi::write::put_instance(files.metabase(), &model, class, &props)?
            };
            out.push_str(&relpath);
            out.push('\n');
        }
        Request::Wmi(WmiCommand::Delete { path }) => {
            let parsed = wmi::path::ObjectPath::parse(path)?;
            let is_backup = model
                .class(&parsed.class)
                .is_some_and(|c| c.kind == wmi::ClassKind::Backup);
            if is_backup {
                wmi::computer::delete_backup(files, &parsed)?;
            } else {
                wmi::write::delete_instance(files.metabase(), &model, path)?;
            }
            out.push_str(&format!("deleted {path}\n"));
        }
        Request::Wmi(WmiCommand::Call { path, method, args }) => {
            match wmi::methods::call_with_files(files, &model, path, method, &pairs(args)?)? {
                Outcome::Server(action) => return Ok(Some(action)),
                Outcome::Done(params) => {
                    if cli.json {
                        let mut map = serde_json::Map::new();
                        for (k, v) in &params {
                            map.insert(k.clone(), v.to_json());
                        }
                        *out = serde_json::to_string_pretty(&map)? + "\n";
                    } else {
                        for (k, v) in params.iter().filter(|(_, v)| !v.is_null()) {
                            out.push_str(&format!("{k} = {v}\n"));
                        }
                    }
                }
            }
        }
        Request::Wmi(WmiCommand::AddProperty {
            class,
            name,
            cim_type,
            id,
            inherit,
        }) => {
            let id = wmi::extend::add_property(
                files.metabase(),
                &model,
                class,
                name,
                cim_type,
                *id,
                *inherit,
            )?;
            out.push_str(&format!("added property {name} (ID {id}) to {class}\n"));
        }
        Request::Wmi(WmiCommand::AddClass {
            name,
            under,
            properties,
        }) => {
            wmi::extend::add_class(files.metabase(), &model, name, under, properties)?;
            out.push_str(&format!("added classes {name} and {name}Setting\n"));
        }
        Request::Wmi(WmiCommand::Watch { .. }) => {
            anyhow::bail!("wmi watch reads the configuration file itself; run it directly")
        }
        Request::Wmi(WmiCommand::Get { path }) => {
            let inst = provider.get_object(path)?;
            if cli.json {
                *out = serde_json::to_string_pretty(&inst.to_json())? + "\n";
            } else {
                block(out, &inst);
            }
        }
        Request::Wmi(WmiCommand::Classes { schema: None }) => {
            let mut rows: Vec<_> = model
                .classes()
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        c.superclass.clone().unwrap_or_default(),
                        format!("{:?}", c.kind).to_lowercase(),
                    )
                })
                .collect();
            rows.sort_by_key(|r| r.0.to_ascii_lowercase());
            if cli.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, s, k)| serde_json::json!({"name": n, "superclass": s, "kind": k}))
                    .collect();
                *out = serde_json::to_string_pretty(&v)? + "\n";
            } else {
                out.push_str(&format!("{:<40} {:<26} KIND\n", "CLASS", "SUPERCLASS"));
                for (n, s, k) in rows {
                    out.push_str(&format!("{n:<40} {s:<26} {k}\n"));
                }
            }
        }
        Request::Wmi(WmiCommand::Classes { schema: Some(name) }) => {
            let class = provider.class(name)?;
            if cli.json {
                let props: Vec<_> = class
                    .properties
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "name": p.name, "type": p.ty.to_string(), "key": p.key,
                            "read_only": p.read_only, "origin": p.origin,
                        })
                    })
                    .collect();
                let v = serde_json::json!({
                    "name": class.name,
                    "superclass": class.superclass,
                    "derivation": model.derivation(&class.name),
                    "kind": format!("{:?}", class.kind).to_lowercase(),
                    "key_type": class.key_type,
                    "properties": props,
                });
                *out = serde_json::to_string_pretty(&v)? + "\n";
            } else {
                let mut chain = vec![class.name.clone()];
                chain.extend(model.derivation(&class.name));
                out.push_str(&format!("class {}\n", chain.join(" : ")));
                if let Some(k) = &class.key_type {
                    out.push_str(&format!("instances: metabase keys of type {k}\n"));
                }
                out.push_str(&format!(
                    "{:<36} {:<26} {:<10} FROM\n",
                    "PROPERTY", "TYPE", "QUALIFIERS"
                ));
                for p in &class.properties {
                    let mut q = Vec::new();
                    if p.key {
                        q.push("key");
                    }
                    if p.read_only {
                        q.push("read");
                    }
                    out.push_str(&format!(
                        "{:<36} {:<26} {:<10} {}\n",
                        p.name,
                        p.ty.to_string(),
                        q.join(","),
                        p.origin
                    ));
                }
            }
        }
    }
    Ok(None)
}

fn table(out: &mut String, columns: &[String], rows: &[wmi::Instance]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(c).map(|v| v.to_string()).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut String, values: &[String]| {
        let parts: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(out, columns);
    for row in &cells {
        line(out, row);
    }
}

/// `Class.Name="…"` and its non-NULL properties, one per line.
fn block(out: &mut String, inst: &wmi::Instance) {
    out.push_str(&inst.relpath);
    out.push('\n');
    for (name, value) in &inst.properties {
        if !value.is_null() {
            out.push_str(&format!("  {name} = {value}\n"));
        }
    }
}

/// A query error with the query and a caret under the column at fault.
pub fn with_caret(e: wmi::WmiError, text: &str) -> anyhow::Error {
    match e.position {
        Some(p) if !text.contains('\n') => {
            let pad = " ".repeat(p.saturating_sub(1));
            anyhow::anyhow!("{e}\n  {text}\n  {pad}^")
        }
        _ => e.into(),
    }
}

/// `wmi watch`: compares the configuration every WITHIN seconds and prints
/// the events the query selects. It reads MetaBase.xml, which a running
/// server rewrites on every change, so it sees changes made by any path
/// (volatile state such as ServerState is not in the file).
fn watch(cli: &Cli, text: &str, count: Option<usize>, timeout: Option<f64>) -> Result<()> {
    use std::io::Write;
    use std::time::{Duration, Instant};
    use wmi::events::EventQuery;

    let files = crate::target::open(cli, false)?;
    let path = files.location().metabase.clone();
    let mut snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let query = EventQuery::parse(&model, text).map_err(|e| with_caret(e, text))?;
    let interval = Duration::from_secs_f64(query.within.unwrap_or(1.0).clamp(0.05, 3600.0));
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = stamp(&path);
    eprintln!(
        "watching {} every {:.2} s{}",
        path.display(),
        interval.as_secs_f64(),
        if deadline.is_none() && count.is_none() {
            "; Ctrl-C stops"
        } else {
            ""
        }
    );
    let mut seen = 0usize;
    let mut stdout = std::io::stdout();
    loop {
        let mut wait = interval;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            wait = wait.min(left);
        }
        std::thread::sleep(wait);
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        let fresh =
            match metabase::MetabaseFiles::open_file(&path, metabase::LockMode::WhileWriting) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("inetsrv: warning: {}: {e}", path.display());
                    continue;
                }
            };
        let next = fresh.metabase().snapshot();
        // The classes follow schema extensions.
        let model = ClassModel::from_schema(next.schema());
        for event in query.events(&model, &snapshot, &next)? {
            write!(stdout, "{}", format_event(&event, cli.json))?;
            stdout.flush()?;
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
        }
        snapshot = next;
    }
}

/// An event as `wmi watch` prints it: one JSON line, or the event class
/// and instance with each changed property as `before -> after`.
pub fn format_event(event: &wmi::events::Event, json: bool) -> String {
    if json {
        return format!("{}\n", event.to_json());
    }
    let mut out = format!("{} {}\n", event.class, event.target.relpath);
    for (name, before, after) in event.changes() {
        out.push_str(&format!("  {name}: {before} -> {after}\n"));
    }
    out
}
