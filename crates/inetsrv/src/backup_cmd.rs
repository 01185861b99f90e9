//! `inetsrv backup`: iisback's verbs.

use anyhow::Result;
use clap::Subcommand;
use metabase::{BackupInfo, BackupVersion};
use serde_json::json;

use crate::output;
use crate::server_files::ServerBackup;
use crate::target::{self, PasswordArgs};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Back up the whole metabase (and its schema) to MetaBack/NAME.MD<version>.
    Create {
        name: String,
        /// The version number (default: the next free one).
        #[arg(long)]
        version: Option<u32>,
        /// Seal SECURE data under a password, so the backup can be
        /// restored on another machine.
        #[command(flatten)]
        password: PasswordArgs,
        /// Replace a backup of the same name and version.
        #[arg(long)]
        overwrite: bool,
    },
    /// List backups (all, or those named NAME).
    List { name: Option<String> },
    /// Restore a backup: the running configuration becomes what it holds.
    Restore {
        name: String,
        /// The version (default: the highest).
        #[arg(long)]
        version: Option<u32>,
        /// The password the backup was made with, if any.
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a backup version (default: the highest).
    Delete {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
}

fn version(v: Option<u32>, default: BackupVersion) -> BackupVersion {
    v.map_or(default, BackupVersion::Exact)
}

/// The backup listing: name, version, date, password protection.
fn print_table<'a>(
    rows: impl Iterator<Item = (&'a str, u32, Option<std::time::SystemTime>, &'a str)>,
) {
    println!(
        "{:<24} {:>7}  {:<19}  password",
        "name", "version", "date (UTC)"
    );
    for (name, version, modified, password) in rows {
        println!(
            "{:<24} {:>7}  {:<19}  {password}",
            name,
            version,
            output::time(modified)
        );
    }
}

fn describe(b: &BackupInfo) -> serde_json::Value {
    json!({
        "name": b.name,
        "version": b.version,
        "date": output::time(b.modified),
        "password_protected": b.password_protected,
        "file": b.metabase_file.display().to_string(),
    })
}

pub fn run(cli: &Cli, command: &BackupCommand) -> Result<()> {
    let writes = !matches!(command, BackupCommand::List { .. });
    let files = target::open(cli, writes)?;
    let (info, verb) = match command {
        BackupCommand::Create {
            name,
            version: v,
            password,
            overwrite,
        } => {
            let password = password.get()?;
            let info = files.backup(
                name,
                version(*v, BackupVersion::Next),
                password.as_deref(),
                *overwrite,
            )?;
            (info, "created")
        }
        BackupCommand::List { name } => {
            let all = files.list_backups(name.as_deref())?;
            if cli.json {
                output::print_json(&json!(all.iter().map(describe).collect::<Vec<_>>()));
            } else if all.is_empty() {
                println!("no backups in {}", files.location().backups.display());
            } else {
                print_table(all.iter().map(|b| {
                    let password = if b.password_protected { "yes" } else { "no" };
                    (b.name.as_str(), b.version, b.modified, password)
                }));
            }
            return Ok(());
        }
        BackupCommand::Restore {
            name,
            version: v,
            password,
        } => {
            let password = password.get()?;
            let info = files.restore_backup(
                name,
                version(*v, BackupVersion::Highest),
                password.as_deref(),
            )?;
            (info, "restored")
        }
        BackupCommand::Delete { name, version: v } => (
            files.delete_backup(name, version(*v, BackupVersion::Highest))?,
            "deleted",
        ),
    };
    if cli.json {
        let mut obj = describe(&info);
        obj["action"] = json!(verb);
        output::print_json(&obj);
    } else {
        println!("{verb} backup {} version {}", info.name, info.version);
    }
    Ok(())
}

/// MD_BACKUP_OVERWRITE, MD_BACKUP_SAVE_FIRST.
const OVERWRITE: u32 = 1;
const SAVE_FIRST: u32 = 2;

fn describe_remote(b: &ServerBackup) -> serde_json::Value {
    json!({
        "name": b.name,
        "version": b.version,
        "date": output::time(b.modified),
        "password_protected": b.password_protected,
        "file": null,
    })
}

/// `inetsrv backup … --server HOST`: IMSAdminBaseW's Backup, Restore,
/// EnumBackups and DeleteBackup (and IMSAdminBase2W's password forms) on
/// that server's `MetaBack/`.
pub fn run_remote(
    cli: &Cli,
    target: &crate::rpc_cmd::Target,
    command: &BackupCommand,
) -> Result<()> {
    use crate::server_files::{self as server, HIGHEST_VERSION, NEXT_VERSION};
    crate::mb_cmd::with_admin_base(cli, target, async |session| {
        let mut guard = session.conn.lock().await;
        let conn = &mut *guard;
        let (name, version, verb) = match command {
            BackupCommand::List { name } => {
                let all = server::backups(conn, session, name.as_deref()).await?;
                if cli.json {
                    output::print_json(&json!(all.iter().map(describe_remote).collect::<Vec<_>>()));
                } else if all.is_empty() {
                    println!("no backups on the server");
                } else {
                    print_table(all.iter().map(|b| {
                        let password = match b.password_protected {
                            Some(true) => "yes",
                            Some(false) => "no",
                            // IIS's EnumBackups does not say.
                            None => "-",
                        };
                        (b.name.as_str(), b.version, b.modified, password)
                    }));
                }
                return Ok(());
            }
            BackupCommand::Create {
                name,
                version,
                password,
                overwrite,
            } => {
                let password = password.get()?;
                let flags = SAVE_FIRST | if *overwrite { OVERWRITE } else { 0 };
                let code = version.unwrap_or(NEXT_VERSION);
                let made =
                    server::backup(conn, session, name, code, flags, password.as_deref()).await?;
                (name, made, "created")
            }
            BackupCommand::Restore {
                name,
                version,
                password,
            } => {
                let password = password.get()?;
                let code = version.unwrap_or(HIGHEST_VERSION);
                let restored =
                    server::restore(conn, session, name, code, password.as_deref()).await?;
                (name, restored, "restored")
            }
            BackupCommand::Delete { name, version } => {
                let code = version.unwrap_or(HIGHEST_VERSION);
                (
                    name,
                    server::delete_backup(conn, session, name, code).await?,
                    "deleted",
                )
            }
        };
        if cli.json {
            let found = server::backups(conn, session, Some(name))
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|b| b.version == version));
            let mut obj = describe_remote(&found.unwrap_or(ServerBackup {
                name: name.clone(),
                version,
                modified: None,
                password_protected: None,
            }));
            obj["action"] = json!(verb);
            output::print_json(&obj);
        } else {
            println!("{verb} backup {name} version {version}");
        }
        Ok(())
    })
}
