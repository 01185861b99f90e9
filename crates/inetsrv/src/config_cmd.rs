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
            let (major, minor) = match version.split_once('.') {
                Some((a, b)) => (
                    a.parse().ok(),
                    Some(b.parse().map_err(|_| anyhow!("bad version '{version}'"))?),
                ),
                None => (version.parse().ok(), None),
            };
            let major =
                major.ok_or_else(|| anyhow!("bad version '{version}' (MAJOR or MAJOR.MINOR)"))?;
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
