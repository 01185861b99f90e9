//! `inetsrv`: the one binary. `inetsrv start` runs the service host;
//! every other verb is an administration command in the manner of the IIS 6
//! tools (`mb` is adsutil, `backup` is iisback, `config` is iiscnfg,
//! `urlacl` is netsh http urlacl), working on a state directory or a
//! metabase file.

mod backup_cmd;
mod config_cmd;
mod mb_cmd;
mod output;
mod start_cmd;
mod target;
mod urlacl_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The listener allocates per request; mimalloc keeps that cheap under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// inetsrv: the IIS 6.0 architecture for Linux.
#[derive(Parser, Debug)]
#[command(name = "inetsrv", version, about, long_about = None)]
pub struct Cli {
    /// State directory: MetaBase.xml, MBSchema.xml, History/, MetaBack/,
    /// wwwroot/, logs/. Created with the default configuration if empty.
    #[arg(long, global = true, env = "INETSRV_HOME", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Work on this metabase file instead of a state directory (its schema,
    /// history and backups are looked for beside it).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "state_dir")]
    pub metabase: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show SECURE values (passwords) instead of masking them.
    #[arg(long, global = true)]
    pub show_secrets: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service host on the state directory's configuration.
    Start(start_cmd::StartArgs),
    /// Read and change the metabase (the IIS 6 adsutil verbs).
    Mb {
        #[command(subcommand)]
        command: mb_cmd::MbCommand,
    },
    /// Named, versioned backups of the whole metabase (iisback).
    Backup {
        #[command(subcommand)]
        command: backup_cmd::BackupCommand,
    },
    /// Save, export, import and history of the configuration (iiscnfg).
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// URL reservations: who may register which URL prefixes.
    Urlacl {
        #[command(subcommand)]
        command: urlacl_cmd::UrlAclCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Start(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("INETSRV_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let result = match &cli.command {
        Command::Start(args) => start_cmd::run(&cli, args),
        Command::Mb { command } => mb_cmd::run(&cli, command),
        Command::Backup { command } => backup_cmd::run(&cli, command),
        Command::Config { command } => config_cmd::run(&cli, command),
        Command::Urlacl { command } => urlacl_cmd::run(&cli, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inetsrv: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
