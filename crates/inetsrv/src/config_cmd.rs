//! `inetsrv config`: iiscnfg's verbs (save, export, import) and history.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use metabase::{ExportOptions, ImportOptions};
use serde_json::json;

use crate::output;
use crate::target::{self, PasswordArgs};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Write the configuration out again as a new version (SaveData).
    Save,
    /// Export a key (and the keys below it) to a file.
    Export {
        /// The key to export, e.g. W3SVC/1.
        #[arg(long)]
        path: String,
        /// The file to write.
        #[arg(long)]
        file: PathBuf,
        /// Seal SECURE data under a password, so the file can be imported
        /// on another machine.
        #[command(flatten)]
        password: PasswordArgs,
        /// Include the values the key inherits.
        #[arg(long)]
        inherited: bool,
        /// The key alone, without the keys below it.
        #[arg(long)]
        node_only: bool,
    },
    /// Import a key from an exported file.
    Import {
        #[arg(long)]
        file: PathBuf,
        /// The key in the file to import.
        #[arg(long)]
        source_path: String,
        /// Where to put it.
        #[arg(long)]
        dest_path: String,
        /// The password the file was exported with, if any.
        #[command(flatten)]
        password: PasswordArgs,
        /// Apply the inherited values the export carries.
        #[arg(long)]
        inherited: bool,
        /// The key alone, without the keys below it.
        #[arg(long)]
        node_only: bool,
        /// Merge into an existing key instead of replacing it.
        #[arg(long)]
        merge: bool,
    },
    /// List the versions kept in History/.
    History,
    /// Restore a version from History/ (MAJOR or MAJOR.MINOR).
    RestoreHistory { version: String },
}

/// `MAJOR` or `MAJOR.MINOR`.
fn parse_version(version: &str) -> Result<(u32, Option<u32>)> {
    let (major, minor) = match version.split_once('.') {
        Some((a, b)) => (
            a.parse().ok(),
            Some(b.parse().map_err(|_| anyhow!("bad version '{version}'"))?),
        ),
        None => (version.parse().ok(), None),
    };
    let major = major.ok_or_else(|| anyhow!("bad version '{version}' (MAJOR or MAJOR.MINOR)"))?;
    Ok((major, minor))
}

pub fn run(cli: &Cli, command: &ConfigCommand) -> Result<()> {
    let writes = !matches!(
        command,
        ConfigCommand::History | ConfigCommand::Export { .. }
    );
    let files = target::open(cli, writes)?;
    let message = match command {
        ConfigCommand::Save => {
            files.save()?;
            let (major, minor) = files.version();
            format!(
                "saved {} as version {major}.{minor}",
                files.location().metabase.display()
            )
        }
        ConfigCommand::Export {
            path,
            file,
            password,
            inherited,
            node_only,
        } => {
            let password = password.get()?;
            let path = target::path(path)?;
            let options = ExportOptions {
                inherited: *inherited,
                node_only: *node_only,
            };
            let n = files.export(&path, file, password.as_deref(), options)?;
            format!(
                "exported {path} ({n} key{}) to {}",
                if n == 1 { "" } else { "s" },
                file.display()
            )
        }
        ConfigCommand::Import {
            file,
            source_path,
            dest_path,
            password,
            inherited,
            node_only,
            merge,
        } => {
            let password = password.get()?;
            let (source, dest) = (target::path(source_path)?, target::path(dest_path)?);
            let options = ImportOptions {
                inherited: *inherited,
                node_only: *node_only,
                merge: *merge,
            };
            let n = files.import(file, &source, &dest, password.as_deref(), options)?;
            format!(
                "imported {source} from {} as {dest} ({n} key{})",
                file.display(),
                if n == 1 { "" } else { "s" }
            )
        }
        ConfigCommand::History => {
            let entries = files.history()?;
            if cli.json {
                output::print_json(&json!(entries
                    .iter()
                    .map(|e| json!({
                        "major": e.major,
                        "minor": e.minor,
                        "date": output::time(e.modified),
                        "file": e.metabase_file.display().to_string(),
                    }))
                    .collect::<Vec<_>>()));
            } else if entries.is_empty() {
                println!("no history in {}", files.location().history.display());
            } else {
                println!("{:>12}  {:<19}  file", "version", "date (UTC)");
                for e in entries {
                    println!(
                        "{:>12}  {:<19}  {}",
                        format!("{}.{}", e.major, e.minor),
                        output::time(e.modified),
                        e.metabase_file.display()
                    );
                }
            }
            return Ok(());
        }
        ConfigCommand::RestoreHistory { version } => {
            let (major, minor) = parse_version(version)?;
            let entry = files.restore_history(major, minor)?;
            let (now, _) = files.version();
            format!(
                "restored history version {}.{} (saved as version {now})",
                entry.major, entry.minor
            )
        }
    };
    if cli.json {
        output::print_json(&json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
    Ok(())
}

/// One History/ version, as IMSAdminBase2W's EnumHistory tells it.
struct RemoteVersion {
    major: u32,
    minor: u32,
    modified: Option<std::time::SystemTime>,
}

/// Every History/ version on the server, through EnumHistory.
async fn remote_history(
    conn: &mut msrpc::client::Connection,
    ipid: msrpc::Uuid,
) -> Result<Vec<RemoteVersion>> {
    use iisadmin::imsa::{MsAdminBase2WAddsClient, ERROR_NO_MORE_ITEMS, MAX_BACKUP_LEN};
    let mut admin = MsAdminBase2WAddsClient::bind(conn).await?.on_object(ipid);
    let mut found = Vec::new();
    for index in 0.. {
        let (_, _, major, minor, time, hr) = admin
            .enum_history(
                crate::mb_cmd::this(),
                msrpc::ndr::ConformantArray(vec![0u16; MAX_BACKUP_LEN + 1]),
                index,
            )
            .await?;
        if hr == ERROR_NO_MORE_ITEMS {
            break;
        }
        crate::mb_cmd::check(hr, "EnumHistory")?;
        found.push(RemoteVersion {
            major,
            minor,
            modified: time.to_system(),
        });
    }
    Ok(found)
}

/// The newest History/ version on the server, as `M.m`.
async fn newest(conn: &mut msrpc::client::Connection, ipid: msrpc::Uuid) -> Result<String> {
    let all = remote_history(conn, ipid).await?;
    Ok(all
        .iter()
        .max_by_key(|v| (v.major, v.minor))
        .map(|v| format!("{}.{}", v.major, v.minor))
        .unwrap_or_else(|| "-".into()))
}

/// `inetsrv config … --server HOST`: SaveData, IMSAdminBase2W's Export,
/// Import, EnumHistory and RestoreHistory on that server; the files named
/// are the server's.
pub fn run_remote(
    cli: &Cli,
    target: &crate::rpc_cmd::Target,
    command: &ConfigCommand,
) -> Result<()> {
    use crate::mb_cmd::{check, this};
    use iisadmin::imsa::MsAdminBase2WAddsClient;
    crate::mb_cmd::with_admin_base(cli, target, async |session| {
        let (mut guard, ipid) = (session.conn.lock().await, session.ipid);
        let conn = &mut *guard;
        let message = match command {
            ConfigCommand::Save => {
                crate::server_files::save(conn, session).await?;
                format!(
                    "saved the server's configuration as version {}",
                    newest(conn, ipid).await?
                )
            }
            ConfigCommand::Export {
                path,
                file,
                password,
                inherited,
                node_only,
            } => {
                let password = password.get()?;
                let path = target::path(path)?;
                let flags = u32::from(*inherited) | u32::from(*node_only) << 1;
                crate::server_files::export(
                    conn,
                    session,
                    &path.to_string(),
                    &file.display().to_string(),
                    password.as_deref(),
                    flags,
                )
                .await?;
                format!("exported {path} to {} on the server", file.display())
            }
            ConfigCommand::Import {
                file,
                source_path,
                dest_path,
                password,
                inherited,
                node_only,
                merge,
            } => {
                let password = password.get()?;
                let (source, dest) = (target::path(source_path)?, target::path(dest_path)?);
                let flags =
                    u32::from(*inherited) | u32::from(*node_only) << 1 | u32::from(*merge) << 2;
                crate::server_files::import(
                    conn,
                    session,
                    &file.display().to_string(),
                    &source.to_string(),
                    &dest.to_string(),
                    password.as_deref(),
                    flags,
                )
                .await?;
                format!(
                    "imported {source} from {} on the server as {dest}",
                    file.display()
                )
            }
            ConfigCommand::History => {
                let entries = remote_history(conn, ipid).await?;
                if cli.json {
                    output::print_json(&json!(entries
                        .iter()
                        .map(|e| json!({
                            "major": e.major,
                            "minor": e.minor,
                            "date": output::time(e.modified),
                            "file": null,
                        }))
                        .collect::<Vec<_>>()));
                } else if entries.is_empty() {
                    println!("no history on the server");
                } else {
                    println!("{:>12}  {:<19}", "version", "date (UTC)");
                    for e in entries {
                        println!(
                            "{:>12}  {:<19}",
                            format!("{}.{}", e.major, e.minor),
                            output::time(e.modified)
                        );
                    }
                }
                return Ok(());
            }
            ConfigCommand::RestoreHistory { version } => {
                let (major, minor) = parse_version(version)?;
                // MD_HISTORY_LATEST: the newest minor version of the major.
                let flags = u32::from(minor.is_none());
                let hr = MsAdminBase2WAddsClient::bind(conn)
                    .await?
                    .on_object(ipid)
                    .restore_history(
                        this(),
                        msrpc::ndr::Unique::new(None),
                        major,
                        minor.unwrap_or(0),
                        flags,
                    )
                    .await?
                    .1;
                check(hr, "RestoreHistory")?;
                format!(
                    "restored history version {version} (saved as version {})",
                    newest(conn, ipid).await?
                )
            }
        };
        if cli.json {
            output::print_json(&json!({ "ok": true, "message": message }));
        } else {
            println!("{message}");
        }
        Ok(())
    })
}
