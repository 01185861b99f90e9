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
                println!(
                    "{:<24} {:>7}  {:<19}  password",
                    "name", "version", "date (UTC)"
                );
                for b in &all {
                    println!(
                        "{:<24} {:>7}  {:<19}  {}",
                        b.name,
                        b.version,
                        output::time(b.modified),
                        if b.password_protected { "yes" } else { "no" }
                    );
                }
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
