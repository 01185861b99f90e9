//! `inetsrv query` and `inetsrv wmi`: the IIS WMI provider's object model
//! (root/MicrosoftIISv2) on the command line, offline on the metabase
//! files or on a running server through its admin interfaces.

use anyhow::Result;
use clap::Subcommand;
use metabase::Metabase;
use wmi::computer::FileOp;
use wmi::methods::{Outcome, ServerAction};
use wmi::{ClassModel, Provider, WbemStatus};

use crate::rpc_cmd::Target;
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
        #[arg(long, value_name = "SECONDS", value_parser = crate::target::parse_seconds)]
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

/// What a request leaves to be done where the configuration lives: by
/// the files here, or by the running server.
pub enum Pending {
    /// A method only the running service carries out (or, for a site's
    /// Start and Stop, the service as well as ServerAutoStart).
    Server(ServerAction),
    /// An operation on the metabase's files, and how its answer shows.
    Files(FileOp, Shown),
}

/// How a file operation's answer is printed.
pub enum Shown {
    /// A method's out-parameters.
    Params,
    /// A Put on IIsBackup: the new instance's path.
    Created,
    /// A Delete on IIsBackup: the path deleted.
    Deleted(String),
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
    let backups = files.list_backups(None).unwrap_or_default();
    let mut out = String::new();
    let result =
        execute(&mut out, cli, files.metabase(), backups, request).and_then(
            |pending| match pending {
                None => Ok(()),
                Some(Pending::Files(op, shown)) => {
                    let outcome = wmi::computer::run(&files, &op)?;
                    show(&mut out, cli, shown, outcome)
                }
                Some(Pending::Server(action)) if !action.needs_server() => Ok(()),
                Some(Pending::Server(action)) => anyhow::bail!(
                    "{action:?} needs the running server (inetsrv start) on this state directory"
                ),
            },
        );
    print!("{out}");
    result
}

/// On a running server (this machine's, over its RPC socket): the request
/// runs on a copy of the server's metabase, what it changed is made on the
/// server in one transaction, and methods the service or the files carry
/// out go through the service control and IMSAdminBaseW.
pub fn run_on_server(cli: &Cli, target: &Target, request: Request<'_>) -> Result<()> {
    if let Request::Wmi(WmiCommand::Watch {
        query,
        count,
        timeout,
    }) = request
    {
        return watch_server(cli, target, query, *count, *timeout);
    }
    let mut out = String::new();
    let result = crate::mb_cmd::with_remote_copy(cli, target, async |copy| {
        let backups = {
            let mut conn = copy.session.conn.lock().await;
            crate::server_files::backups(&mut conn, copy.session, None).await?
        };
        let backups = backups.into_iter().map(backup_info).collect();
        let pending = execute(&mut out, cli, &copy.metabase, backups, request);
        // What the request wrote before it failed stays written, as on the
        // files.
        let settled = copy.settle().await;
        let pending = pending?;
        settled?;
        match pending {
            None => Ok(()),
            Some(Pending::Server(action)) => {
                let done = server_action(copy, action).await?;
                out.push_str(&format!("{done}\n"));
                Ok(())
            }
            Some(Pending::Files(op, shown)) => {
                let outcome = server_file_op(copy.session, &op).await?;
                show(&mut out, cli, shown, outcome)
            }
        }
    });
    print!("{out}");
    result
}

/// A backup as the server listed it, as the provider shows one.
fn backup_info(b: crate::server_files::ServerBackup) -> metabase::BackupInfo {
    metabase::BackupInfo {
        name: b.name,
        version: b.version,
        modified: b.modified,
        password_protected: b.password_protected.unwrap_or(false),
        metabase_file: Default::default(),
        schema_file: Default::default(),
    }
}

/// A WMI method the running service carries out.
async fn server_action(
    live: &crate::mb_cmd::RemoteCopy<'_>,
    action: ServerAction,
) -> Result<was::Done> {
    use was::{PoolCommand, SiteCommand};
    use ServerAction as A;
    match action {
        A::StartSite(id) => live.site_command(id, SiteCommand::Start).await,
        A::StopSite(id) => live.site_command(id, SiteCommand::Stop).await,
        A::PauseSite(id) => live.site_command(id, SiteCommand::Pause).await,
        A::ContinueSite(id) => live.site_command(id, SiteCommand::Continue).await,
        A::StartPool(name) => live.pool_command(&name, PoolCommand::Start).await,
        A::StopPool(name) => live.pool_command(&name, PoolCommand::Stop).await,
        A::RecyclePool(name) => live.pool_command(&name, PoolCommand::Recycle).await,
    }
}

/// An IIsComputer method (or an IIsBackup Put or Delete) carried out by
/// the server on its files, with the out-parameters the files here give.
async fn server_file_op(session: &crate::mb_cmd::AdminSession, op: &FileOp) -> Result<Outcome> {
    use crate::server_files as server;
    use wmi::computer::backup_params;
    let mut conn = session.conn.lock().await;
    let conn = &mut *conn;
    // The server's refusal in WMI's terms.
    let as_wmi = |e: anyhow::Error| -> anyhow::Error {
        use iisadmin::imsa::{ERROR_PATH_NOT_FOUND, E_ACCESSDENIED, E_INVALIDARG};
        let status = match e.downcast_ref::<crate::mb_cmd::Refused>().map(|r| r.hr) {
            Some(E_ACCESSDENIED) => WbemStatus::AccessDenied,
            Some(ERROR_PATH_NOT_FOUND) => WbemStatus::NotFound,
            Some(E_INVALIDARG) => WbemStatus::InvalidParameter,
            _ if e.is::<server::NoSuchBackup>() => WbemStatus::NotFound,
            _ => WbemStatus::Failed,
        };
        wmi::WmiError::new(status, format!("{e:#}")).into()
    };
    let outcome = match op {
        FileOp::Backup {
            location,
            version,
            password,
            flags,
        } => {
            let made = server::backup(
                conn,
                session,
                location,
                *version,
                *flags,
                password.as_deref(),
            )
            .await
            .map_err(as_wmi)?;
            backup_params(location, made)
        }
        FileOp::Restore {
            location,
            version,
            password,
        } => {
            let restored = server::restore(conn, session, location, *version, password.as_deref())
                .await
                .map_err(as_wmi)?;
            backup_params(location, restored)
        }
        FileOp::EnumBackups { location, index } => {
            let list = server::backups(conn, session, location.as_deref())
                .await
                .map_err(as_wmi)?;
            let list: Vec<_> = list.into_iter().map(backup_info).collect();
            wmi::computer::enum_backups_answer(&list, *index)?
        }
        FileOp::DeleteBackup { location, version } => {
            let deleted = server::delete_backup(conn, session, location, *version)
                .await
                .map_err(as_wmi)?;
            backup_params(location, deleted)
        }
        FileOp::SaveData => {
            server::save(conn, session).await.map_err(as_wmi)?;
            Outcome::Done(Vec::new())
        }
        FileOp::Export {
            file,
            source,
            password,
            flags,
        } => {
            server::export(
                conn,
                session,
                &source.to_string(),
                file,
                password.as_deref(),
                *flags,
            )
            .await
            .map_err(as_wmi)?;
            Outcome::Done(Vec::new())
        }
        FileOp::Import {
            file,
            source,
            dest,
            password,
            flags,
        } => {
            server::import(
                conn,
                session,
                file,
                &source.to_string(),
                &dest.to_string(),
                password.as_deref(),
                *flags,
            )
            .await
            .map_err(as_wmi)?;
            Outcome::Done(Vec::new())
        }
    };
    Ok(outcome)
}

/// Prints what a file operation answered.
fn show(out: &mut String, cli: &Cli, shown: Shown, outcome: Outcome) -> Result<()> {
    match shown {
        Shown::Created => {
            out.push_str(&wmi::computer::backup_path(&outcome));
            out.push('\n');
        }
        Shown::Deleted(path) => out.push_str(&format!("deleted {path}\n")),
        Shown::Params => {
            if let Outcome::Done(params) = outcome {
                show_params(out, cli, &params)?;
            }
        }
    }
    Ok(())
}

/// A method's out-parameters: `Name = value` lines, or a JSON object.
pub(crate) fn show_params(
    out: &mut String,
    cli: &Cli,
    params: &[(String, wmi::WmiValue)],
) -> Result<()> {
    if cli.json {
        let mut map = serde_json::Map::new();
        for (k, v) in params {
            map.insert(k.clone(), v.to_json());
        }
        *out = serde_json::to_string_pretty(&map)? + "\n";
    } else {
        for (k, v) in params.iter().filter(|(_, v)| !v.is_null()) {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    Ok(())
}

/// `NAME=VALUE` arguments, a name repeated for an array.
pub(crate) fn pairs(items: &[String]) -> Result<Vec<(String, Vec<String>)>> {
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

/// Runs a request on a metabase (the backups listed beside it); returns
/// what is left for the running server or the files to do.
pub fn execute(
    out: &mut String,
    cli: &Cli,
    metabase: &Metabase,
    backups: Vec<metabase::BackupInfo>,
    request: Request<'_>,
) -> Result<Option<Pending>> {
    let snapshot = metabase.snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let mut provider = Provider::new(&model, &snapshot);
    provider.show_secrets = cli.show_secrets;
    provider.backups = backups;
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
            if is_backup {
                let op = wmi::computer::put_backup(&props)?;
                return Ok(Some(Pending::Files(op, Shown::Created)));
            }
            let relpath = wmi::write::put_instance(metabase, &model, class, &props)?;
            out.push_str(&relpath);
            out.push('\n');
        }
        Request::Wmi(WmiCommand::Delete { path }) => {
            let parsed = wmi::path::ObjectPath::parse(path)?;
            let is_backup = model
                .class(&parsed.class)
                .is_some_and(|c| c.kind == wmi::ClassKind::Backup);
            if is_backup {
                let op = wmi::computer::delete_backup(&parsed)?;
                return Ok(Some(Pending::Files(op, Shown::Deleted(path.clone()))));
            }
            wmi::write::delete_instance(metabase, &model, path)?;
            out.push_str(&format!("deleted {path}\n"));
        }
        Request::Wmi(WmiCommand::Call { path, method, args }) => {
            match wmi::methods::call(metabase, &model, path, method, &pairs(args)?)? {
                Outcome::Server(action) => return Ok(Some(Pending::Server(action))),
                Outcome::Files(op) => return Ok(Some(Pending::Files(op, Shown::Params))),
                Outcome::Done(params) => show_params(out, cli, &params)?,
            }
        }
        Request::Wmi(WmiCommand::AddProperty {
            class,
            name,
            cim_type,
            id,
            inherit,
        }) => {
            let id =
                wmi::extend::add_property(metabase, &model, class, name, cim_type, *id, *inherit)?;
            out.push_str(&format!("added property {name} (ID {id}) to {class}\n"));
        }
        Request::Wmi(WmiCommand::AddClass {
            name,
            under,
            properties,
        }) => {
            wmi::extend::add_class(metabase, &model, name, under, properties)?;
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
            let rows: Vec<_> = model
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
            class_list(out, cli, rows)?;
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

/// `wmi classes`: name, superclass and kind of each class, by name.
pub(crate) fn class_list(
    out: &mut String,
    cli: &Cli,
    mut rows: Vec<(String, String, String)>,
) -> Result<()> {
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
    Ok(())
}

pub(crate) fn table(out: &mut String, columns: &[String], rows: &[wmi::Instance]) {
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
pub(crate) fn block(out: &mut String, inst: &wmi::Instance) {
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
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
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

/// `wmi watch` on a running server: events as they happen, from the
/// server's change notifications (IMSAdminBaseSinkW) — volatile state such
/// as ServerState included — each instance at or below a changed key
/// compared in copies of the server's metabase before and after.
fn watch_server(
    cli: &Cli,
    target: &Target,
    text: &str,
    count: Option<usize>,
    timeout: Option<f64>,
) -> Result<()> {
    use std::io::Write;
    use wmi::events::EventQuery;
    crate::mb_cmd::with_admin_base(cli, target, async |session| {
        let mut conn = session.conn.lock().await;
        let (copy, _) = crate::mb_cmd::copy_of(&mut conn, session).await?;
        let mut old = copy.snapshot();
        let query = EventQuery::parse(&ClassModel::from_schema(old.schema()), text)
            .map_err(|e| with_caret(e, text))?;
        let mut seen = 0usize;
        crate::mb_watch::follow(
            &mut conn,
            timeout,
            |_| eprintln!("watching the running server's configuration (change notifications)"),
            async |conn, changes| {
                let (copy, _) = crate::mb_cmd::copy_of(conn, session).await?;
                let new = copy.snapshot();
                // The classes follow schema extensions.
                let model = ClassModel::from_schema(new.schema());
                let scope: Vec<metabase::MbPath> = changes
                    .iter()
                    .filter_map(|c| metabase::MbPath::parse(&c.key()).ok())
                    .collect();
                let events = query.events_within(&model, &old, &new, Some(&scope))?;
                old = new;
                let mut stdout = std::io::stdout();
                for event in events {
                    write!(stdout, "{}", format_event(&event, cli.json))?;
                    stdout.flush()?;
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        return Ok(true);
                    }
                }
                Ok(false)
            },
        )
        .await
    })
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
