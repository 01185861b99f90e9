//! `inetsrv webext`: IIS 6's Web Service Extensions lockdown (iisext's
//! verbs) over `W3SVC/WebSvcExtRestrictionList` (which modules may run)
//! and `W3SVC/ApplicationDependencies` (which extensions an application
//! needs). A module not allowed answers 404.2.

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use metabase::{ids, MbPath, Value};
use serde_json::json;
use worker::isapi::{wildcard, Restriction, Restrictions};

use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum WebextCommand {
    /// List the extensions (groups) with whether each is allowed.
    List,
    /// Allow every file of an extension (its group ID), or the unknown
    /// ones: `unknown-isapi` (*.dll, shared objects here), `unknown-cgi`
    /// (*.exe).
    Enable { name: String },
    /// Prohibit every file of an extension (or `unknown-isapi`,
    /// `unknown-cgi`).
    Disable { name: String },
    /// Add a module file to the list (prohibited unless --enable).
    AddFile {
        /// The module's absolute path.
        path: String,
        /// Allow it now.
        #[arg(long)]
        enable: bool,
        /// The extension (group ID) it belongs to; default: the file name.
        #[arg(long)]
        group: Option<String>,
        /// What it is, for lists.
        #[arg(long)]
        description: Option<String>,
    },
    /// Remove a module file from the list (it is then an unknown module).
    RemoveFile { path: String },
    /// Allow one module file.
    EnableFile { path: String },
    /// Prohibit one module file.
    DisableFile { path: String },
    /// List the module files with their extension and state.
    ListFiles,
    /// Record that an application needs an extension (ApplicationDependencies).
    AddDependency { app: String, group: String },
    /// Remove an application's dependency on an extension.
    RemoveDependency { app: String, group: String },
}

/// Whether the verb changes the metabase.
pub fn writes(command: &WebextCommand) -> bool {
    !matches!(command, WebextCommand::List | WebextCommand::ListFiles)
}

fn w3svc() -> MbPath {
    MbPath::parse("/LM/W3SVC").unwrap_or_default()
}

fn list(mb: &metabase::Metabase, id: u32) -> Vec<String> {
    match mb.snapshot().effective(&w3svc(), id) {
        Some(Value::MultiSz(v)) => v,
        _ => Vec::new(),
    }
}

fn save(mb: &metabase::Metabase, name: &str, values: Vec<String>) -> Result<()> {
    mb.write(|t| t.set_text(&w3svc(), name, &values))?;
    Ok(())
}

fn check_path(path: &str) -> Result<()> {
    if wildcard(path).is_some() || path.starts_with('/') {
        return Ok(());
    }
    bail!("'{path}' is not an absolute path (modules are named by their full path, as ScriptMaps names them)")
}

/// Runs a verb on `files`, writing what it prints to `out`.
pub fn execute(
    out: &mut String,
    cli: &Cli,
    mb: &metabase::Metabase,
    command: &WebextCommand,
) -> Result<()> {
    use std::fmt::Write as _;
    let raw = list(mb, ids::WEB_SVC_EXT_RESTRICTION_LIST);
    // A hand-written entry this cannot read would be lost by a rewrite.
    let mut restrictions = if writes(command) {
        Restrictions::parse_to_edit(&raw).map_err(|e| anyhow!(e))?
    } else {
        Restrictions::parse(&raw)
    };
    let restriction_name = "WebSvcExtRestrictionList";
    let message =
        |out: &mut String, text: String| crate::output::push_message(out, cli.json, &text);
    match command {
        WebextCommand::List => {
            let groups = restrictions.groups();
            if cli.json {
                let rows: Vec<_> = groups.iter().map(|g| g.to_json()).collect();
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&rows)?);
            } else if groups.is_empty() {
                let _ = writeln!(
                    out,
                    "no Web Service Extensions listed: every ISAPI module and CGI program is prohibited (inetsrv webext add-file PATH --enable)"
                );
            } else {
                for g in &groups {
                    let _ = writeln!(out, "{:<24} {:<15} {}", g.name, g.state(), g.description());
                }
            }
            Ok(())
        }
        WebextCommand::ListFiles => {
            if cli.json {
                let rows: Vec<_> = restrictions
                    .entries
                    .iter()
                    .map(|e| {
                        json!({"path": e.path, "allowed": e.allowed, "group": e.group,
                               "description": e.description, "deletable": e.deletable})
                    })
                    .collect();
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for e in &restrictions.entries {
                    let _ = writeln!(
                        out,
                        "{:<10} {:<40} {:<16} {}",
                        if e.allowed { "allowed" } else { "prohibited" },
                        e.path,
                        e.group,
                        e.description
                    );
                }
            }
            Ok(())
        }
        WebextCommand::Enable { name } | WebextCommand::Disable { name } => {
            let allow = matches!(command, WebextCommand::Enable { .. });
            let changed = restrictions.set_group(name, allow);
            if changed == 0 {
                bail!("no Web Service Extension '{name}' (inetsrv webext list; files are added with add-file --group)");
            }
            save(mb, restriction_name, restrictions.to_list())?;
            let verb = if allow { "allowed" } else { "prohibited" };
            message(out, format!("{name}: {verb} ({changed} file(s))"));
            Ok(())
        }
        WebextCommand::AddFile {
            path,
            enable,
            group,
            description,
        } => {
            check_path(path)?;
            if restrictions.entries.iter().any(|e| e.path == *path) {
                bail!("{path} is listed already (enable-file, disable-file, or remove-file first)");
            }
            let group = group.clone().unwrap_or_else(|| {
                std::path::Path::new(path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_uppercase())
                    .unwrap_or_default()
            });
            if group.contains(',') || description.as_deref().unwrap_or("").contains(',') {
                bail!("a group ID or description may not hold a comma (the list's separator)");
            }
            restrictions.entries.push(Restriction {
                allowed: *enable,
                path: path.clone(),
                deletable: true,
                group: group.clone(),
                description: description.clone().unwrap_or_default(),
            });
            save(mb, restriction_name, restrictions.to_list())?;
            let state = if *enable { "allowed" } else { "prohibited" };
            message(out, format!("{path} added to {group}, {state}"));
            Ok(())
        }
        WebextCommand::RemoveFile { path } => {
            let before = restrictions.entries.len();
            restrictions.entries.retain(|e| e.path != *path);
            if restrictions.entries.len() == before {
                bail!("{path} is not listed (inetsrv webext list-files)");
            }
            save(mb, restriction_name, restrictions.to_list())?;
            message(out, format!("{path} removed (it is now an unknown module)"));
            Ok(())
        }
        WebextCommand::EnableFile { path } | WebextCommand::DisableFile { path } => {
            let allow = matches!(command, WebextCommand::EnableFile { .. });
            let target = wildcard(path).unwrap_or(path);
            let entry = restrictions
                .entries
                .iter_mut()
                .find(|e| e.path == target)
                .ok_or_else(|| anyhow!("{path} is not listed (inetsrv webext add-file {path})"))?;
            entry.allowed = allow;
            save(mb, restriction_name, restrictions.to_list())?;
            let verb = if allow { "allowed" } else { "prohibited" };
            message(out, format!("{path}: {verb}"));
            Ok(())
        }
        WebextCommand::AddDependency { app, group }
        | WebextCommand::RemoveDependency { app, group } => {
            let add = matches!(command, WebextCommand::AddDependency { .. });
            if app.contains(';') || app.contains(',') || group.contains(',') || group.contains(';')
            {
                bail!("an application name or group ID may not hold ';' or ','");
            }
            // `AppName;GROUP,GROUP` per application.
            let mut deps: Vec<(String, Vec<String>)> = list(mb, ids::APPLICATION_DEPENDENCIES)
                .iter()
                .filter_map(|line| {
                    let (name, groups) = line.split_once(';')?;
                    Some((
                        name.trim().to_string(),
                        groups
                            .split(',')
                            .map(|g| g.trim().to_string())
                            .filter(|g| !g.is_empty())
                            .collect(),
                    ))
                })
                .collect();
            let found = deps.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(app));
            match (add, found) {
                (true, Some((_, groups))) => {
                    if !groups.iter().any(|g| g.eq_ignore_ascii_case(group)) {
                        groups.push(group.clone());
                    }
                }
                (true, None) => deps.push((app.clone(), vec![group.clone()])),
                (false, Some((_, groups))) => {
                    let before = groups.len();
                    groups.retain(|g| !g.eq_ignore_ascii_case(group));
                    if groups.len() == before {
                        bail!("{app} does not depend on {group}");
                    }
                }
                (false, None) => bail!("{app} has no dependencies"),
            }
            deps.retain(|(_, groups)| !groups.is_empty());
            let values: Vec<String> = deps
                .iter()
                .map(|(name, groups)| format!("{name};{}", groups.join(",")))
                .collect();
            save(mb, "ApplicationDependencies", values)?;
            let text = if add {
                format!("{app} depends on {group}")
            } else {
                format!("{app} no longer depends on {group}")
            };
            message(out, text);
            Ok(())
        }
    }
}

/// Runs a verb on the files (no server running), printing its output.
pub fn run(cli: &Cli, command: &WebextCommand) -> Result<()> {
    let files = crate::target::open(cli, writes(command))?;
    let mut out = String::new();
    let result = execute(&mut out, cli, files.metabase(), command);
    print!("{out}");
    result
}
