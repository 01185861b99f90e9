//! Which metabase a command works on: a state directory (default
//! `$INETSRV_HOME`, else `./inetsrv-data`) or a file given with
//! `--metabase`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use metabase::{LockMode, MbPath, MetabaseFiles};

use crate::Cli;

/// The state directory the command line names.
pub fn state_dir(cli: &Cli) -> PathBuf {
    cli.state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("inetsrv-data"))
}

/// Where the server of a command's metabase keeps its state: the state
/// directory, or the directory of --metabase FILE.
pub fn server_dir(cli: &Cli) -> PathBuf {
    match &cli.metabase {
        Some(file) => {
            let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            file.parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default()
        }
        None => state_dir(cli),
    }
}

/// Whether a server runs on the command's state directory: its RPC socket
/// answers.
pub fn server_runs(cli: &Cli) -> bool {
    let socket = crate::rpc::local_socket(&server_dir(cli));
    socket.exists() && std::os::unix::net::UnixStream::connect(&socket).is_ok()
}

/// Opens the metabase for a command. Commands that change it hold the
/// write lock until they finish, so concurrent commands never lose each
/// other's changes.
pub fn open(cli: &Cli, writes: bool) -> Result<MetabaseFiles> {
    let mode = if writes {
        LockMode::Exclusive
    } else {
        LockMode::WhileWriting
    };
    let files = match &cli.metabase {
        Some(file) => MetabaseFiles::open_file(file, mode)
            .with_context(|| format!("cannot open metabase file {}", file.display()))?,
        None => {
            let dir = state_dir(cli);
            let files = MetabaseFiles::open_state_dir(&dir, mode)
                .with_context(|| format!("cannot open state directory {}", dir.display()))?;
            crate::first_run::complete(&files, &dir);
            files
        }
    };
    for warning in files.load_warnings() {
        eprintln!("inetsrv: warning: {warning}");
    }
    Ok(files)
}

/// The longest wait a `--timeout SECONDS` takes: a year.
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// A `--timeout SECONDS` value: a number of seconds, 0 or more, at most a
/// year (fractions allowed).
pub fn parse_seconds(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..=MAX_SECONDS).contains(&s) => Ok(s),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0 to {MAX_SECONDS}"
        )),
    }
}

/// Parses a command-line metabase path (`W3SVC/1` means `/LM/W3SVC/1`).
pub fn path(text: &str) -> Result<MbPath> {
    Ok(MbPath::parse_relaxed(text)?)
}

/// Splits `PATH/PROPERTY` into the key path and the property name.
pub fn split_property(text: &str) -> Result<(MbPath, String)> {
    let full = path(text)?;
    match (full.parent(), full.name()) {
        (Some(parent), Some(name)) if !parent.is_root() => Ok((parent, name.to_string())),
        _ => anyhow::bail!(
            "'{text}' does not name a property: give PATH/PROPERTY, as in W3SVC/1/ServerComment"
        ),
    }
}

/// A password for sealing or unsealing SECURE data (iisback's /bpw),
/// given on the command line or, kept out of the process list, in a file.
/// (`--password` is the logon password of `--server`.)
#[derive(clap::Args, Debug)]
pub struct PasswordArgs {
    /// The password SECURE data is sealed under.
    #[arg(
        id = "seal_password",
        long = "seal-password",
        value_name = "PASSWORD",
        conflicts_with = "seal_password_file"
    )]
    password: Option<String>,
    /// Read the seal password from the first line of FILE.
    #[arg(
        id = "seal_password_file",
        long = "seal-password-file",
        value_name = "FILE"
    )]
    password_file: Option<PathBuf>,
}

impl PasswordArgs {
    pub fn get(&self) -> Result<Option<String>> {
        match (&self.password, &self.password_file) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read password file {}", f.display()))?;
                Ok(Some(text.lines().next().unwrap_or("").to_string()))
            }
            (None, None) => Ok(None),
        }
    }
}
