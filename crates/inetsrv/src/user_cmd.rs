//! `inetsrv user`: the user database Basic authentication checks
//! (`DIR/users`, 0600, Argon2id hashes), and the client certificates
//! mapped to its users (`DIR/certmap`). A running server notices changes
//! at once; cached logons of a changed or deleted user are forgotten.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use userdb::UserDb;

use crate::output;
use crate::target;
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user. The password is read from --password-file, or from
    /// standard input (asked for when it is a terminal).
    Add {
        /// The user name (compared without regard to case, as Windows does).
        name: String,
        #[command(flatten)]
        password: PasswordSource,
        /// An administrator: may administer the server remotely (the
        /// DCOM administration interfaces, at packet integrity or privacy).
        #[arg(long)]
        admin: bool,
    },
    /// Change what a user may do.
    Set {
        /// The user name.
        name: String,
        /// Whether the user is an administrator.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        admin: bool,
    },
    /// Change a user's password.
    Passwd {
        /// The user name.
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Delete a user.
    Delete {
        /// The user name.
        name: String,
    },
    /// List user names, with the client certificates mapped to each.
    List,
    /// Map a client certificate to a user (IIS's one-to-one mapping):
    /// where AccessSSLFlags has AccessSSLMapCert, a request presenting it
    /// is logged on as that user. The binding must ask for certificates
    /// (inetsrv sslcert add … --client-cert negotiate|require).
    MapCert {
        /// The user name.
        name: String,
        /// The client's certificate: PEM (its first certificate) or DER.
        cert: PathBuf,
    },
    /// Remove a certificate's mapping.
    UnmapCert {
        /// The certificate's SHA-1 thumbprint, or its file.
        cert: String,
    },
}

/// A certificate file's thumbprint and subject.
fn certificate(path: &std::path::Path) -> Result<certstore::CertInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    certstore::certificate_file_info(&bytes).with_context(|| format!("{}", path.display()))
}

#[derive(clap::Args, Debug)]
pub struct PasswordSource {
    /// The password (visible in the process list: prefer --password-file
    /// or standard input).
    #[arg(long, global = true, conflicts_with = "password_file")]
    password: Option<String>,
    /// Read the password from the first line of FILE.
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

impl PasswordSource {
    /// Whether a password was given (not to be read from standard input).
    pub fn given(&self) -> bool {
        self.password.is_some() || self.password_file.is_some()
    }

    pub fn get(&self) -> Result<String> {
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read password file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            (None, None) => {
                let stdin = std::io::stdin();
                if stdin.is_terminal() {
                    eprint!("password: ");
                }
                let mut line = String::new();
                stdin
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            }
        };
        if password.is_empty() {
            bail!("the password is empty");
        }
        Ok(password)
    }
}

pub fn run(cli: &Cli, command: &UserCommand) -> Result<()> {
    let db = UserDb::for_state_dir(&target::state_dir(cli));
    match command {
        UserCommand::Add {
            name,
            password,
            admin,
        } => {
            userdb::check_name(name)?;
            db.add(name, &password.get()?)?;
            if *admin {
                db.set_admin(name, true)?;
                println!("user {name} added (an administrator)");
            } else {
                println!("user {name} added");
            }
        }
        UserCommand::Set { name, admin } => {
            db.set_admin(name, *admin)?;
            if *admin {
                println!("{name} is now an administrator");
            } else {
                println!("{name} is no longer an administrator");
            }
        }
        UserCommand::Passwd { name, password } => {
            db.set_password(name, &password.get()?)?;
            println!("password of {name} changed");
        }
        UserCommand::Delete { name } => {
            db.delete(name)?;
            println!("user {name} deleted");
        }
        UserCommand::List => {
            let users = db.users()?;
            let mappings = db.cert_mappings()?;
            let mapped = |name: &str| {
                mappings
                    .iter()
                    .filter(|m| m.user.eq_ignore_ascii_case(name))
                    .collect::<Vec<_>>()
            };
            if cli.json {
                output::print_json(&json!(users
                    .iter()
                    .map(|u| json!({
                        "name": u.name,
                        "admin": u.admin,
                        "certificates": mapped(&u.name)
                            .iter()
                            .map(|m| json!({"thumbprint": m.thumbprint, "subject": m.subject}))
                            .collect::<Vec<_>>(),
                    }))
                    .collect::<Vec<_>>()));
            } else if users.is_empty() {
                println!("no users in {}", db.path().display());
            } else {
                for u in users {
                    if u.admin {
                        println!("{}  (administrator)", u.name);
                    } else {
                        println!("{}", u.name);
                    }
                    for m in mapped(&u.name) {
                        println!("  certificate {}  {}", m.thumbprint, m.subject);
                    }
                }
            }
        }
        UserCommand::MapCert { name, cert } => {
            let info = certificate(cert)?;
            let mapping = db.map_cert(&info.thumbprint, &info.subject, name)?;
            output::message(
                cli.json,
                &format!(
                    "certificate {} ({}) now logs on as {}",
                    mapping.thumbprint, mapping.subject, mapping.user
                ),
            )?;
        }
        UserCommand::UnmapCert { cert } => {
            let path = std::path::Path::new(cert);
            let thumbprint = match certstore::normalise_thumbprint(cert) {
                Some(t) => t,
                None if path.exists() => certificate(path)?.thumbprint,
                None => bail!("'{cert}' is neither a certificate thumbprint nor a file"),
            };
            let removed = db.unmap_cert(&thumbprint)?;
            output::message(
                cli.json,
                &format!(
                    "certificate {} no longer logs on as {}",
                    removed.thumbprint, removed.user
                ),
            )?;
        }
    }
    Ok(())
}
