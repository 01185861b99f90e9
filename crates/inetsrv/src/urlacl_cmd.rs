//! `inetsrv urlacl`: URL reservations (netsh http add/delete/show urlacl):
//! which users may register which URL prefixes on the listener.

use anyhow::{Context, Result};
use clap::Subcommand;
use listener::acl::{resolve_user, user_name, UrlAcl};
use listener::ListenerConfig;
use serde_json::json;

use crate::output;
use crate::target;
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum UrlAclCommand {
    /// Reserve a prefix for a user: that user's programs may then register
    /// it (and the paths below it).
    Add {
        /// The prefix, e.g. http://+:8080/app/
        prefix: String,
        /// The user, by name or uid.
        #[arg(long)]
        user: String,
    },
    /// Remove a reservation.
    Delete { prefix: String },
    /// List reservations (all, or the one for PREFIX).
    Show { prefix: Option<String> },
}

pub fn run(cli: &Cli, command: &UrlAclCommand) -> Result<()> {
    let dir = target::state_dir(cli);
    let config = ListenerConfig::for_state_dir(&dir).map_err(anyhow::Error::msg)?;
    let file = config.url_acl_file;
    let mut acl = UrlAcl::load(&file).map_err(anyhow::Error::msg)?;
    match command {
        UrlAclCommand::Add { prefix, user } => {
            let uid = resolve_user(user).map_err(anyhow::Error::msg)?;
            acl.add(prefix, uid).map_err(anyhow::Error::msg)?;
            acl.save(&file)
                .map_err(anyhow::Error::msg)
                .context("cannot save the reservations")?;
            output::message(
                cli.json,
                &format!("reserved {prefix} for {}", user_name(uid)),
            )
        }
        UrlAclCommand::Delete { prefix } => {
            let removed = acl.delete(prefix).map_err(anyhow::Error::msg)?;
            acl.save(&file)
                .map_err(anyhow::Error::msg)
                .context("cannot save the reservations")?;
            output::message(
                cli.json,
                &format!("removed the reservation of {}", removed.prefix),
            )
        }
        UrlAclCommand::Show { prefix } => {
            let wanted = prefix
                .as_deref()
                .map(|p| listener::routing::UrlPrefix::parse(p).map(|p| p.to_string()))
                .transpose()?;
            let shown: Vec<_> = acl
                .reservations
                .iter()
                .filter(|r| wanted.as_ref().is_none_or(|w| *w == r.prefix))
                .collect();
            if cli.json {
                output::print_json(&json!(shown
                    .iter()
                    .map(|r| json!({
                        "prefix": r.prefix,
                        "users": r.users.iter().map(|u| json!({"uid": u, "name": user_name(*u)})).collect::<Vec<_>>(),
                    }))
                    .collect::<Vec<_>>()));
            } else if shown.is_empty() {
                println!("no URL reservations in {}", file.display());
            } else {
                for r in shown {
                    let users: Vec<String> = r.users.iter().map(|u| user_name(*u)).collect();
                    println!("{}  {}", r.prefix, users.join(", "));
                }
            }
            Ok(())
        }
    }
}
