//! `inetsrv fastcgi`: FastCGI applications, as IIS 6's fcgiconfig.js
//! managed fcgiext.ini: add (with the script map that reaches the
//! application), set, list, delete, and import-ini (a real fcgiext.ini).
//! Each application is an `IIsFastCgiApplication` key under
//! `/LM/W3SVC/FastCGI`, validated like every other write; a script map
//! reaches it as `.php,fastcgi:PHP,5,GET,HEAD,POST`.

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use metabase::schema::fastcgi as fcgi;
use metabase::{ids, MbPath, Value};
use serde_json::json;
use worker::isapi::{Restriction, Restrictions};

use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum FastcgiCommand {
    /// Add an application (fcgiconfig -add): its program, and with
    /// --extension the script map that sends requests to it.
    Add {
        /// The application's name (fcgiext.ini's section).
        name: String,
        /// The program, by its absolute path (e.g. /usr/bin/php-cgi).
        #[arg(long)]
        exe: String,
        #[command(flatten)]
        settings: SettingArgs,
        /// A file extension to map to it (`.php`), as a script map.
        #[arg(long)]
        extension: Option<String>,
        /// Map the extension for this site only (its root), not for every
        /// site.
        #[arg(long, requires = "extension")]
        site: Option<u32>,
        /// Allow the program in the Web Service Extensions list too
        /// (otherwise requests answer 404.2 until it is allowed).
        #[arg(long)]
        allow: bool,
    },
    /// Change an application's settings (one option per setting).
    Set {
        name: String,
        /// A new program path.
        #[arg(long)]
        exe: Option<String>,
        #[command(flatten)]
        settings: SettingArgs,
    },
    /// List the applications with their settings and script maps.
    List,
    /// Delete an application and the script maps that name it.
    Delete { name: String },
    /// Import a fcgiext.ini from IIS 6: its [Types] as script maps and one
    /// application per section. Windows paths are mapped to a program of
    /// the same name on this machine where there is one, else reported.
    ImportIni {
        /// The fcgiext.ini file.
        file: std::path::PathBuf,
    },
}

/// The settings of the IIS 6 FastCGI extension, one option each.
#[derive(Args, Debug, Default, Clone)]
pub struct SettingArgs {
    /// Arguments for the program (Arguments).
    #[arg(long = "args", allow_hyphen_values = true)]
    pub arguments: Option<String>,
    /// An environment variable NAME=VALUE (EnvironmentVars); repeat for
    /// more. Replaces the list.
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// Processes at most (MaxInstances).
    #[arg(long)]
    pub max_instances: Option<u32>,
    /// Requests a process serves before it is replaced
    /// (InstanceMaxRequests).
    #[arg(long)]
    pub instance_max_requests: Option<u32>,
    /// Seconds a request may take (RequestTimeout).
    #[arg(long)]
    pub request_timeout: Option<u32>,
    /// Seconds without output before a request is given up
    /// (ActivityTimeout).
    #[arg(long)]
    pub activity_timeout: Option<u32>,
    /// Seconds an unused process is kept (IdleTimeout).
    #[arg(long)]
    pub idle_timeout: Option<u32>,
    /// Requests waiting for a process at most; more answer 503
    /// (QueueLength).
    #[arg(long)]
    pub queue_length: Option<u32>,
    /// Process failures in a minute that stop the application
    /// (RapidFailsPerMinute).
    #[arg(long)]
    pub rapid_fails_per_minute: Option<u32>,
    /// Bytes of output gathered before they are sent (ResponseBufferLimit;
    /// a pause in the output sends what came).
    #[arg(long)]
    pub response_buffer_limit: Option<u32>,
    /// ReturnStderrIn500, ReturnGeneric500, IgnoreAndReturn200 or
    /// TerminateProcess (StderrMode).
    #[arg(long)]
    pub stderr_mode: Option<String>,
    /// unix (a Unix socket) or tcp (loopback) (Protocol).
    #[arg(long)]
    pub protocol: Option<String>,
}

impl SettingArgs {
    /// (property name, arguments) for each option given.
    fn assignments(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out = Vec::new();
        if let Some(a) = &self.arguments {
            out.push(("FastCgiArguments", vec![a.clone()]));
        }
        if !self.env.is_empty() {
            out.push(("FastCgiEnvironmentVars", self.env.clone()));
        }
        let dwords = [
            ("FastCgiMaxInstances", self.max_instances),
            ("FastCgiInstanceMaxRequests", self.instance_max_requests),
            ("FastCgiRequestTimeout", self.request_timeout),
            ("FastCgiActivityTimeout", self.activity_timeout),
            ("FastCgiIdleTimeout", self.idle_timeout),
            ("FastCgiQueueLength", self.queue_length),
            ("FastCgiRapidFailsPerMinute", self.rapid_fails_per_minute),
            ("FastCgiResponseBufferLimit", self.response_buffer_limit),
        ];
        for (name, value) in dwords {
            if let Some(v) = value {
                out.push((name, vec![v.to_string()]));
            }
        }
        if let Some(m) = &self.stderr_mode {
            out.push(("FastCgiStderrMode", vec![m.clone()]));
        }
        if let Some(p) = &self.protocol {
            out.push(("FastCgiProtocol", vec![p.clone()]));
        }
        out
    }
}

/// Whether the verb changes the metabase.
pub fn writes(command: &FastcgiCommand) -> bool {
    !matches!(command, FastcgiCommand::List)
}

fn path(text: &str) -> MbPath {
    MbPath::parse(text).unwrap_or_default()
}

fn app_path(name: &str) -> Result<MbPath> {
    if name.is_empty() || name.contains('/') || name.contains('\\') {
        bail!("'{name}' is not an application name (no slashes)");
    }
    MbPath::parse(&format!("{}/{name}", fcgi::CONTAINER_PATH))
        .map_err(|e| anyhow!("'{name}' is not an application name: {e}"))
}

/// The script map entry that reaches an application.
fn script_map_entry(extension: &str, app: &str) -> Result<String> {
    let ext = extension.trim();
    let ext = if ext == "*" || ext.starts_with('.') {
        ext.to_ascii_lowercase()
    } else {
        format!(".{}", ext.to_ascii_lowercase())
    };
    if ext.len() < 2 && ext != "*" || ext.contains(',') || ext.contains(' ') {
        bail!("'{extension}' is not a file extension (like .php)");
    }
    Ok(format!("{ext},fastcgi:{app},5,GET,HEAD,POST"))
}

/// Where `--site` (or its absence) puts a script map.
fn script_map_key(site: Option<u32>) -> MbPath {
    match site {
        Some(n) => path(&format!("/LM/W3SVC/{n}/ROOT")),
        None => path("/LM/W3SVC"),
    }
}

/// Adds (or replaces) the entry for its extension in the ScriptMaps in
/// force at `key`, written on `key`.
fn map_extension(t: &mut metabase::Txn, key: &MbPath, entry: &str) -> Result<()> {
    if !t.exists(key) {
        bail!("{key} does not exist (is the site number right? inetsrv site list)");
    }
    let ext = entry.split(',').next().unwrap_or_default().to_string();
    let mut maps = match t.effective(key, ids::SCRIPT_MAPS) {
        Some(Value::MultiSz(v)) => v,
        _ => Vec::new(),
    };
    maps.retain(|m| {
        !m.split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case(&ext)
    });
    maps.push(entry.to_string());
    t.set(key, ids::SCRIPT_MAPS, Value::MultiSz(maps))?;
    Ok(())
}

/// `index.EXT` joins the default documents in force at `key` (last), as
/// IIS's PHP installers added index.php.
fn add_default_document(t: &mut metabase::Txn, key: &MbPath, entry: &str) -> metabase::Result<()> {
    let ext = entry.split(',').next().unwrap_or_default();
    if !ext.starts_with('.') {
        return Ok(());
    }
    let doc = format!("index{ext}");
    let current = match t.effective(key, ids::DEFAULT_DOC) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    if current
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case(&doc))
    {
        return Ok(());
    }
    let docs = if current.trim().is_empty() {
        doc
    } else {
        format!("{current},{doc}")
    };
    t.set(key, ids::DEFAULT_DOC, Value::String(docs))
}

/// Allows the program in WebSvcExtRestrictionList.
fn allow_program(t: &mut metabase::Txn, exe: &str, app: &str) -> Result<()> {
    let w3svc = path("/LM/W3SVC");
    let list = match t.effective(&w3svc, ids::WEB_SVC_EXT_RESTRICTION_LIST) {
        Some(Value::MultiSz(v)) => v,
        _ => Vec::new(),
    };
    let mut restrictions = Restrictions::parse(&list);
    match restrictions.entries.iter_mut().find(|e| e.path == exe) {
        Some(e) => e.allowed = true,
        None => restrictions.entries.push(Restriction {
            allowed: true,
            path: exe.to_string(),
            deletable: true,
            group: app.to_ascii_uppercase(),
            description: format!("FastCGI application {app}"),
        }),
    }
    t.set(
        &w3svc,
        ids::WEB_SVC_EXT_RESTRICTION_LIST,
        Value::MultiSz(restrictions.to_list()),
    )?;
    Ok(())
}

fn is_allowed(mb: &metabase::Metabase, exe: &str) -> bool {
    match mb
        .snapshot()
        .effective(&path("/LM/W3SVC"), ids::WEB_SVC_EXT_RESTRICTION_LIST)
    {
        Some(Value::MultiSz(v)) => Restrictions::parse(&v).allows_program(exe),
        _ => false,
    }
}

/// Creates the application's key (and the container) with its settings.
fn create_app(
    t: &mut metabase::Txn,
    name: &str,
    exe: &str,
    settings: &[(&'static str, Vec<String>)],
) -> Result<()> {
    let container = path(fcgi::CONTAINER_PATH);
    if !t.exists(&container) {
        t.create_key(&container, fcgi::CONTAINER_CLASS)?;
    }
    let key = app_path(name)?;
    if t.exists(&key) {
        bail!("a FastCGI application {name} exists already (inetsrv fastcgi set {name} …)");
    }
    t.create_key(&key, fcgi::APPLICATION_CLASS)?;
    t.set_text(&key, "FastCgiExePath", &[exe.to_string()])?;
    for (property, args) in settings {
        t.set_text(&key, property, args)?;
    }
    Ok(())
}

/// Runs a verb on `files`, writing what it prints to `out`.
pub fn execute(
    out: &mut String,
    cli: &Cli,
    mb: &metabase::Metabase,
    command: &FastcgiCommand,
) -> Result<()> {
    let message =
        |out: &mut String, text: String| crate::output::push_message(out, cli.json, &text);
    match command {
        FastcgiCommand::Add {
            name,
            exe,
            settings,
            extension,
            site,
            allow,
        } => {
            let entry = extension
                .as_deref()
                .map(|e| script_map_entry(e, name))
                .transpose()?;
            mb.write(|t| {
                create_app(t, name, exe, &settings.assignments())
                    .map_err(|e| metabase::Error::Schema(format!("{e:#}")))?;
                if let Some(entry) = &entry {
                    map_extension(t, &script_map_key(*site), entry)
                        .map_err(|e| metabase::Error::Schema(format!("{e:#}")))?;
                    add_default_document(t, &script_map_key(*site), entry)?;
                }
                if *allow {
                    allow_program(t, exe, name)
                        .map_err(|e| metabase::Error::Schema(format!("{e:#}")))?;
                }
                Ok(())
            })?;
            let mut text = format!("FastCGI application {name} added ({exe})");
            if let Some(entry) = &entry {
                let at = match site {
                    Some(n) => format!("site {n}"),
                    None => "every site".into(),
                };
                let _ = write!(
                    text,
                    "; {} requests go to it on {at}",
                    entry.split(',').next().unwrap_or("")
                );
            }
            if *allow {
                let _ = write!(text, "; {exe} is allowed in the Web Service Extensions");
            } else if !is_allowed(mb, exe) {
                let _ = write!(
                    text,
                    "\nnote: {exe} is not allowed in the Web Service Extensions list, so requests answer 404.2 until it is: inetsrv webext add-file {exe} --enable (or add with --allow)"
                );
            }
            message(out, text);
            Ok(())
        }
        FastcgiCommand::Set {
            name,
            exe,
            settings,
        } => {
            let key = app_path(name)?;
            let mut assignments = settings.assignments();
            if let Some(exe) = exe {
                assignments.insert(0, ("FastCgiExePath", vec![exe.clone()]));
            }
            if assignments.is_empty() {
                bail!("nothing to set: give at least one setting (inetsrv fastcgi set --help)");
            }
            mb.write(|t| {
                if !t.exists(&key) {
                    return Err(metabase::Error::PathNotFound(format!(
                        "{key} (no FastCGI application {name}; inetsrv fastcgi list)"
                    )));
                }
                for (property, args) in &assignments {
                    t.set_text(&key, property, args)?;
                }
                Ok(())
            })?;
            let names: Vec<&str> = assignments
                .iter()
                .map(|(p, _)| p.trim_start_matches("FastCgi"))
                .collect();
            message(out, format!("{name}: {} set", names.join(", ")));
            Ok(())
        }
        FastcgiCommand::List => list(out, cli, mb),
        FastcgiCommand::Delete { name } => {
            let key = app_path(name)?;
            let target = format!("fastcgi:{}", name.to_ascii_lowercase());
            let removed = mb.write(|t| {
                if !t.exists(&key) {
                    return Err(metabase::Error::PathNotFound(format!(
                        "{key} (no FastCGI application {name}; inetsrv fastcgi list)"
                    )));
                }
                t.delete_key(&key)?;
                // The script maps that named it go too.
                let paths = t.data_paths(&path("/LM/W3SVC"), ids::SCRIPT_MAPS, None)?;
                let mut removed = 0;
                for p in paths {
                    let Some(Value::MultiSz(maps)) = t
                        .get(&p, ids::SCRIPT_MAPS, metabase::GetMode::Own)
                        .ok()
                        .map(|r| r.value)
                    else {
                        continue;
                    };
                    let kept: Vec<String> = maps
                        .iter()
                        .filter(|m| {
                            m.split(',').nth(1).map(|e| e.trim().to_ascii_lowercase())
                                != Some(target.clone())
                        })
                        .cloned()
                        .collect();
                    if kept.len() != maps.len() {
                        removed += maps.len() - kept.len();
                        t.set(&p, ids::SCRIPT_MAPS, Value::MultiSz(kept))?;
                    }
                }
                Ok(removed)
            })?;
            message(out, format!("FastCGI application {name} deleted, with {removed} script map(s) that named it"));
            Ok(())
        }
        FastcgiCommand::ImportIni { file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let ini = parse_ini(&text).with_context(|| format!("{}", file.display()))?;
            let report = import(mb, &ini)?;
            if cli.json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&report)?);
            } else {
                for line in report["lines"].as_array().into_iter().flatten() {
                    let _ = writeln!(out, "{}", line.as_str().unwrap_or_default());
                }
            }
            Ok(())
        }
    }
}

fn list(out: &mut String, cli: &Cli, mb: &metabase::Metabase) -> Result<()> {
    let snapshot = mb.snapshot();
    let container = path(fcgi::CONTAINER_PATH);
    let apps = snapshot.child_keys(&container).unwrap_or_default();
    // Which script maps reach each application.
    let mut maps: Vec<(String, String, String)> = Vec::new();
    for p in snapshot
        .data_paths(&path("/LM/W3SVC"), ids::SCRIPT_MAPS, None)
        .unwrap_or_default()
    {
        if let Ok(r) = snapshot.get(&p, ids::SCRIPT_MAPS, metabase::GetMode::Own) {
            if let Value::MultiSz(entries) = r.value {
                for e in entries {
                    let mut fields = e.split(',');
                    let ext = fields.next().unwrap_or_default().trim().to_string();
                    let exe = fields.next().unwrap_or_default().trim().to_string();
                    if let Some(app) = exe
                        .strip_prefix("fastcgi:")
                        .or_else(|| exe.strip_prefix("FastCGI:"))
                    {
                        maps.push((app.to_ascii_lowercase(), ext, p.to_string()));
                    }
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (name, _) in apps {
        let key = path(&format!("{}/{name}", fcgi::CONTAINER_PATH));
        let text = |id| match snapshot.effective(&key, id) {
            Some(Value::String(s)) => s,
            Some(Value::MultiSz(v)) => v.join(" "),
            Some(Value::Dword(d)) => d.to_string(),
            _ => String::new(),
        };
        let mapped: Vec<String> = maps
            .iter()
            .filter(|(a, _, _)| *a == name.to_ascii_lowercase())
            .map(|(_, ext, at)| format!("{ext} at {at}"))
            .collect();
        rows.push(json!({
            "name": name,
            "exePath": text(fcgi::EXE_PATH),
            "arguments": text(fcgi::ARGUMENTS),
            "environmentVars": text(fcgi::ENVIRONMENT_VARS),
            "maxInstances": text(fcgi::MAX_INSTANCES),
            "instanceMaxRequests": text(fcgi::INSTANCE_MAX_REQUESTS),
            "requestTimeout": text(fcgi::REQUEST_TIMEOUT),
            "activityTimeout": text(fcgi::ACTIVITY_TIMEOUT),
            "idleTimeout": text(fcgi::IDLE_TIMEOUT),
            "queueLength": text(fcgi::QUEUE_LENGTH),
            "rapidFailsPerMinute": text(fcgi::RAPID_FAILS_PER_MINUTE),
            "responseBufferLimit": text(fcgi::RESPONSE_BUFFER_LIMIT),
            "stderrMode": text(fcgi::STDERR_MODE),
            "protocol": text(fcgi::PROTOCOL),
            "allowed": is_allowed(mb, &text(fcgi::EXE_PATH)),
            "scriptMaps": mapped,
        }));
    }
    if cli.json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "no FastCGI applications (inetsrv fastcgi add NAME --exe PATH --extension .EXT)"
        );
        return Ok(());
    }
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let _ = writeln!(out, "{}  {} {}", s("name"), s("exePath"), s("arguments"));
        let _ = writeln!(
            out,
            "  MaxInstances {}  InstanceMaxRequests {}  RequestTimeout {}s  ActivityTimeout {}s  IdleTimeout {}s",
            s("maxInstances"),
            s("instanceMaxRequests"),
            s("requestTimeout"),
            s("activityTimeout"),
            s("idleTimeout")
        );
        let _ = writeln!(
            out,
            "  QueueLength {}  RapidFailsPerMinute {}  ResponseBufferLimit {}  StderrMode {}  Protocol {}",
            s("queueLength"),
            s("rapidFailsPerMinute"),
            s("responseBufferLimit"),
            s("stderrMode"),
            s("protocol")
        );
        if !s("environmentVars").is_empty() {
            let _ = writeln!(out, "  EnvironmentVars {}", s("environmentVars"));
        }
        let maps: Vec<&str> = r["scriptMaps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  script maps: {}",
            if maps.is_empty() {
                "none".to_string()
            } else {
                maps.join(", ")
            }
        );
        if !r["allowed"].as_bool().unwrap_or(false) {
            let _ = writeln!(
                out,
                "  not allowed in the Web Service Extensions (requests answer 404.2)"
            );
        }
    }
    Ok(())
}

/// Settings to write: (property name, arguments).
type Settings = Vec<(&'static str, Vec<String>)>;

/// A fcgiext.ini, as sections of key-value pairs in file order.
type Ini = Vec<(String, Vec<(String, String, usize)>)>;

fn parse_ini(text: &str) -> Result<Ini> {
    let mut sections: Ini = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| anyhow!("line {}: a section header without ']': {line}", n + 1))?;
            sections.push((name.trim().to_string(), Vec::new()));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("line {}: neither a [section] nor key=value: {line}", n + 1))?;
        let Some((_, entries)) = sections.last_mut() else {
            bail!("line {}: a setting before any [section]", n + 1);
        };
        entries.push((key.trim().to_string(), value.trim().to_string(), n + 1));
    }
    Ok(sections)
}

/// A Windows program path mapped to one on this machine: the same file
/// name (without .exe) in the usual directories.
fn map_windows_path(exe: &str) -> Option<String> {
    if exe.starts_with('/') {
        return Some(exe.to_string());
    }
    let file = exe.rsplit(['\\', '/']).next()?;
    let stem = file
        .strip_suffix(".exe")
        .or_else(|| file.strip_suffix(".EXE"))
        .unwrap_or(file);
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{}", stem.to_ascii_lowercase()))
        .find(|p| std::path::Path::new(p).is_file())
}

/// The fcgiext.ini keys and the settings they become.
const INI_KEYS: &[(&str, &str)] = &[
    ("Arguments", "FastCgiArguments"),
    ("MaxInstances", "FastCgiMaxInstances"),
    ("InstanceMaxRequests", "FastCgiInstanceMaxRequests"),
    ("RequestTimeout", "FastCgiRequestTimeout"),
    ("InstanceTimeout", "FastCgiRequestTimeout"),
    ("ActivityTimeout", "FastCgiActivityTimeout"),
    ("IdleTimeout", "FastCgiIdleTimeout"),
    ("QueueLength", "FastCgiQueueLength"),
    ("RapidFailsPerMinute", "FastCgiRapidFailsPerMinute"),
    ("ResponseBufferLimit", "FastCgiResponseBufferLimit"),
    ("StderrMode", "FastCgiStderrMode"),
    ("Protocol", "FastCgiProtocol"),
];

fn import(mb: &metabase::Metabase, ini: &Ini) -> Result<serde_json::Value> {
    let mut lines = Vec::new();
    let mut imported = Vec::new();
    let mut skipped = Vec::new();
    // Applications first, then [Types] naming those that came in.
    let mut apps: Vec<(String, String, Settings)> = Vec::new();
    for (section, entries) in ini {
        if section.eq_ignore_ascii_case("types") {
            continue;
        }
        let mut exe = None;
        let mut settings = Vec::new();
        for (key, value, line) in entries {
            if key.eq_ignore_ascii_case("ExePath") {
                match map_windows_path(value) {
                    Some(p) => {
                        if !value.starts_with('/') {
                            lines.push(format!("[{section}] ExePath {value} is mapped to {p}"));
                        }
                        exe = Some(p);
                    }
                    None => lines.push(format!(
                        "[{section}] line {line}: ExePath {value} is a Windows path with no program of that name here; the application is not imported (inetsrv fastcgi add {section} --exe /path/to/program)"
                    )),
                }
            } else if key.eq_ignore_ascii_case("EnvironmentVars") {
                // NAME:VALUE,NAME:VALUE
                let vars: Vec<String> = value
                    .split(',')
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| match v.split_once(':') {
                        Some((n, val)) => format!("{}={}", n.trim(), val.trim()),
                        None => v.trim().to_string(),
                    })
                    .collect();
                settings.push(("FastCgiEnvironmentVars", vars));
            } else if let Some((_, property)) =
                INI_KEYS.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))
            {
                let value =
                    if *property == "FastCgiProtocol" && value.eq_ignore_ascii_case("NamedPipe") {
                        "Unix".to_string()
                    } else {
                        value.clone()
                    };
                settings.push((property, vec![value]));
            } else {
                lines.push(format!(
                    "[{section}] line {line}: {key} is not a setting inetsrv has; ignored"
                ));
            }
        }
        match exe {
            Some(exe) => apps.push((section.clone(), exe, settings)),
            None => {
                if !entries
                    .iter()
                    .any(|(k, _, _)| k.eq_ignore_ascii_case("ExePath"))
                {
                    lines.push(format!("[{section}] has no ExePath; not imported"));
                }
                skipped.push(section.clone());
            }
        }
    }
    let types: Vec<(String, Option<u32>, String, usize)> = ini
        .iter()
        .filter(|(s, _)| s.eq_ignore_ascii_case("types"))
        .flat_map(|(_, entries)| entries.iter())
        .map(|(key, app, line)| {
            let (ext, site) = match key.split_once(':') {
                Some((e, s)) => (e.trim().to_string(), s.trim().parse().ok()),
                None => (key.trim().to_string(), None),
            };
            (ext, site, app.clone(), *line)
        })
        .collect();
    // The script maps [Types] asks for, checked before anything is written.
    let mut maps = Vec::new();
    for (ext, site, app, line) in types {
        if !apps.iter().any(|(n, _, _)| n.eq_ignore_ascii_case(&app)) {
            lines.push(format!(
                "[Types] line {line}: {ext} names {app}, which was not imported; no script map"
            ));
            continue;
        }
        let entry = script_map_entry(&ext, &app).with_context(|| format!("[Types] line {line}"))?;
        maps.push((ext, app, script_map_key(site), entry));
    }
    // One write: the applications and their script maps all go in, or
    // (on an error) none of them.
    mb.write(|t| {
        for (name, exe, settings) in &apps {
            let key = app_path(name).map_err(|e| metabase::Error::Schema(format!("{e:#}")))?;
            if t.exists(&key) {
                t.delete_key(&key)?;
            }
            create_app(t, name, exe, settings)
                .map_err(|e| metabase::Error::Schema(format!("[{name}]: {e:#}")))?;
        }
        for (_, _, key, entry) in &maps {
            map_extension(t, key, entry).map_err(|e| metabase::Error::Schema(format!("{e:#}")))?;
        }
        Ok(())
    })?;
    for (name, exe, _) in &apps {
        imported.push(name.clone());
        lines.push(format!(
            "[{name}] imported as FastCGI application {name} ({exe})"
        ));
        if !is_allowed(mb, exe) {
            lines.push(format!(
                "  note: {exe} is not allowed yet: inetsrv webext add-file {exe} --enable"
            ));
        }
    }
    for (ext, app, key, _) in &maps {
        lines.push(format!("[Types] {ext} → {app} as a script map on {key}"));
    }
    let mapped = maps.len();
    Ok(json!({
        "imported": imported,
        "skipped": skipped,
        "scriptMaps": mapped,
        "lines": lines,
    }))
}

/// Runs a verb on the files (no server running), printing its output.
pub fn run(cli: &Cli, command: &FastcgiCommand) -> Result<()> {
    let files = crate::target::open(cli, writes(command))?;
    let mut out = String::new();
    let result = execute(&mut out, cli, files.metabase(), command);
    print!("{out}");
    result
}
