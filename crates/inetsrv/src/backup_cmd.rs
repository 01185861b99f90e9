//! `inetsrv backup`: iisback's verbs.

use anyhow::Result;
use clap::Subcommand;
use metabase::{BackupInfo, BackupVersion};
use serde_json::json;

use crate::output;
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

/// MD_BACKUP_NEXT_VERSION ([MS-IMSA] 3.1.4.3).
const NEXT_VERSION: u32 = 0xFFFF_FFFF;
/// MD_BACKUP_OVERWRITE, MD_BACKUP_SAVE_FIRST.
const OVERWRITE: u32 = 1;
const SAVE_FIRST: u32 = 2;

/// A backup as IMSAdminBaseW's EnumBackups tells it: name, version, time
/// (not whether a password protects it, nor its file on the server).
struct RemoteBackup {
    name: String,
    version: u32,
    modified: Option<std::time::SystemTime>,
}

fn describe_remote(b: &RemoteBackup, password_protected: Option<bool>) -> serde_json::Value {
    json!({
        "name": b.name,
        "version": b.version,
        "date": output::time(b.modified),
        "password_protected": password_protected,
        "file": null,
    })
}

/// Every backup (named `name`, or all), through EnumBackups.
async fn remote_backups(
    conn: &mut msrpc::client::Connection,
    ipid: msrpc::Uuid,
    name: Option<&str>,
) -> Result<Vec<RemoteBackup>> {
    use iisadmin::imsa::{MsAdminBaseWClient, ERROR_NO_MORE_ITEMS, MAX_BACKUP_LEN};
    let mut admin = MsAdminBaseWClient::bind(conn).await?.on_object(ipid);
    let mut found = Vec::new();
    for index in 0.. {
        let mut asked: Vec<u16> = name.unwrap_or("").encode_utf16().collect();
        asked.resize(MAX_BACKUP_LEN + 1, 0);
        let (_, got, version, time, hr) = admin
            .enum_backups(
                crate::mb_cmd::this(),
                msrpc::ndr::ConformantArray(asked),
                index,
            )
            .await?;
        if hr == ERROR_NO_MORE_ITEMS {
            break;
        }
        crate::mb_cmd::check(hr, "EnumBackups")?;
        let end = got.0.iter().position(|&u| u == 0).unwrap_or(got.0.len());
        found.push(RemoteBackup {
            name: String::from_utf16_lossy(&got.0[..end]),
            version,
            modified: time.to_system(),
        });
    }
    Ok(found)
}

/// `inetsrv backup … --server HOST`: IMSAdminBaseW's Backup, Restore,
/// EnumBackups and DeleteBackup (and IMSAdminBase2W's password forms) on
/// that server's `MetaBack/`.
pub fn run_remote(
    cli: &Cli,
    target: &crate::rpc_cmd::Target,
    command: &BackupCommand,
) -> Result<()> {
    use crate::mb_cmd::{check, this, wide};
    use iisadmin::imsa::{MsAdminBase2WAddsClient, MsAdminBaseWClient};
    crate::mb_cmd::with_admin_base(cli, target, async |session| {
        let (mut guard, ipid) = (session.conn.lock().await, session.ipid);
        let conn = &mut *guard;
        // The version a verb means: the one given, else the highest there
        // is of the name (what the server will pick).
        let highest = async |conn: &mut msrpc::client::Connection, name: &str| {
            let all = remote_backups(conn, ipid, Some(name)).await?;
            all.iter()
                .map(|b| b.version)
                .max()
                .ok_or_else(|| anyhow::anyhow!("no backup named '{name}' on the server"))
        };
        let (name, version, verb, password_protected) = match command {
            BackupCommand::List { name } => {
                let all = remote_backups(conn, ipid, name.as_deref()).await?;
                if cli.json {
                    output::print_json(&json!(all
                        .iter()
                        .map(|b| describe_remote(b, None))
                        .collect::<Vec<_>>()));
                } else if all.is_empty() {
                    println!("no backups on the server");
                } else {
                    // EnumBackups does not say whether a password protects
                    // a backup.
                    print_table(
                        all.iter()
                            .map(|b| (b.name.as_str(), b.version, b.modified, "-")),
                    );
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
                let code = version.unwrap_or(NEXT_VERSION);
                let flags = SAVE_FIRST | if *overwrite { OVERWRITE } else { 0 };
                let hr = match &password {
                    Some(p) => {
                        MsAdminBase2WAddsClient::bind(conn)
                            .await?
                            .on_object(ipid)
                            .backup_with_password(this(), wide(name), code, flags, wide(p))
                            .await?
                            .1
                    }
                    None => {
                        MsAdminBaseWClient::bind(conn)
                            .await?
                            .on_object(ipid)
                            .backup(this(), wide(name), code, flags)
                            .await?
                            .1
                    }
                };
                // MD_WARNING_SAVE_FAILED is a success with a warning.
                if hr & 0x8000_0000 != 0 {
                    check(hr, "Backup")?;
                }
                let made = match version {
                    Some(v) => *v,
                    None => highest(conn, name).await?,
                };
                (name, made, "created", Some(password.is_some()))
            }
            BackupCommand::Restore {
                name,
                version,
                password,
            } => {
                let password = password.get()?;
                let version = match version {
                    Some(v) => *v,
                    None => highest(conn, name).await?,
                };
                let hr = match &password {
                    Some(p) => {
                        MsAdminBase2WAddsClient::bind(conn)
                            .await?
                            .on_object(ipid)
                            .restore_with_password(this(), wide(name), version, 0, wide(p))
                            .await?
                            .1
                    }
                    None => {
                        MsAdminBaseWClient::bind(conn)
                            .await?
                            .on_object(ipid)
                            .restore(this(), wide(name), version, 0)
                            .await?
                            .1
                    }
                };
                check(hr, "Restore")?;
                (name, version, "restored", None)
            }
            BackupCommand::Delete { name, version } => {
                let version = match version {
                    Some(v) => *v,
                    None => highest(conn, name).await?,
                };
                let hr = MsAdminBaseWClient::bind(conn)
                    .await?
                    .on_object(ipid)
                    .delete_backup(this(), wide(name), version)
                    .await?
                    .1;
                check(hr, "DeleteBackup")?;
                (name, version, "deleted", None)
            }
        };
        if cli.json {
            let when = remote_backups(conn, ipid, Some(name))
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|b| b.version == version))
                .and_then(|b| b.modified);
            let mut obj = describe_remote(
                &RemoteBackup {
                    name: name.clone(),
                    version,
                    modified: when,
                },
                password_protected,
            );
            obj["action"] = json!(verb);
            output::print_json(&obj);
        } else {
            println!("{verb} backup {name} version {version}");
        }
        Ok(())
    })
}
