//! `inetsrv sslcert`: the listener's SSL bindings (`netsh http add|show|
//! delete sslcert`, `httpcfg set ssl` on IIS 6): which certificate serves
//! which IP:port, or which host:port by SNI. A running server applies a
//! change to new connections within a second.

use std::path::PathBuf;

use anyhow::{bail, Result};
use certstore::Store;
use clap::{Args, Subcommand};
use listener::tls::{ClientCertMode, SslBinding, SslConfig, SslEndpoint};
use listener::ListenerConfig;
use serde_json::json;

use crate::output;
use crate::target;
use crate::Cli;

/// The endpoint of a binding: one of --ipport and --hostnameport.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Endpoint {
    /// IP:port (0.0.0.0:443 for every IPv4 address, [::]:443 for IPv6).
    #[arg(long)]
    ipport: Option<String>,
    /// host:port, chosen by the host name the client sends (SNI).
    #[arg(long)]
    hostnameport: Option<String>,
}

impl Endpoint {
    fn parse(&self) -> Result<SslEndpoint> {
        match (&self.ipport, &self.hostnameport) {
            (Some(ip), None) => SslEndpoint::parse_ipport(ip).map_err(anyhow::Error::msg),
            (None, Some(h)) => SslEndpoint::parse_hostnameport(h).map_err(anyhow::Error::msg),
            _ => bail!("give --ipport or --hostnameport"),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SslCertCommand {
    /// Bind a certificate to an endpoint.
    Add {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The certificate: thumbprint or friendly name (inetsrv cert list).
        #[arg(long)]
        cert: String,
        /// Ask clients for a certificate: off, negotiate (optional) or
        /// require. Asked in the handshake (there is no renegotiation).
        #[arg(long, default_value = "off")]
        client_cert: ClientCertMode,
        /// CA certificates (PEM) client certificates must chain to.
        #[arg(long)]
        client_ca: Option<PathBuf>,
        /// Replace a binding the endpoint has.
        #[arg(long)]
        replace: bool,
    },
    /// List the bindings (all, or one endpoint's).
    List {
        #[arg(long)]
        ipport: Option<String>,
        #[arg(long, conflicts_with = "ipport")]
        hostnameport: Option<String>,
    },
    /// Remove an endpoint's binding.
    Delete {
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

fn config(cli: &Cli) -> Result<ListenerConfig> {
    ListenerConfig::for_state_dir(&target::state_dir(cli)).map_err(anyhow::Error::msg)
}

pub fn run(cli: &Cli, command: &SslCertCommand) -> Result<()> {
    let config = config(cli)?;
    let store = Store::at(&config.cert_store_dir);
    let file = &config.ssl_config_file;
    match command {
        SslCertCommand::Add {
            endpoint,
            cert,
            client_cert,
            client_ca,
            replace,
        } => {
            let endpoint = endpoint.parse()?;
            let thumb = store.resolve(cert)?;
            // Loaded now so a key that does not fit is refused here, not at
            // the first handshake.
            store.load(&thumb)?.certified_key()?;
            let client_ca = match (client_cert, client_ca) {
                (ClientCertMode::Off, Some(_)) => {
                    bail!("--client-ca is for --client-cert negotiate or require")
                }
                (ClientCertMode::Off, None) => None,
                (_, None) => bail!("--client-cert {client_cert:?} needs --client-ca CA.pem (the CAs client certificates must chain to)"),
                (_, Some(ca)) => {
                    let ca = std::path::absolute(ca)?;
                    let text = std::fs::read(&ca).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?;
                    if !String::from_utf8_lossy(&text).contains("BEGIN CERTIFICATE") {
                        bail!("{} holds no PEM certificate", ca.display());
                    }
                    Some(ca)
                }
            };
            let mut binding = SslBinding::new(&endpoint, &thumb);
            binding.client_cert = *client_cert;
            binding.client_ca = client_ca;
            SslConfig::edit(file, |c| c.add(binding, *replace)).map_err(anyhow::Error::msg)?;
            output::message(
                cli.json,
                &format!("{endpoint} is served with certificate {thumb}"),
            )
        }
        SslCertCommand::List {
            ipport,
            hostnameport,
        } => {
            let wanted = match (ipport, hostnameport) {
                (Some(i), _) => Some(SslEndpoint::parse_ipport(i).map_err(anyhow::Error::msg)?),
                (_, Some(h)) => {
                    Some(SslEndpoint::parse_hostnameport(h).map_err(anyhow::Error::msg)?)
                }
                _ => None,
            };
            let all = SslConfig::load(file).map_err(anyhow::Error::msg)?;
            let shown: Vec<&SslBinding> = all
                .bindings
                .iter()
                .filter(|b| wanted.is_none() || b.endpoint().ok() == wanted)
                .collect();
            if cli.json {
                let names: Vec<(String, Option<String>)> = store
                    .list()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| (c.thumbprint, c.name))
                    .collect();
                output::print_json(&json!(shown
                    .iter()
                    .map(|b| json!({
                        "endpoint": b.endpoint().map(|e| e.to_string()).unwrap_or_default(),
                        "kind": if b.hostnameport.is_some() { "hostnameport" } else { "ipport" },
                        "cert_hash": b.cert_hash,
                        "cert_name": names.iter().find(|(t, _)| t.eq_ignore_ascii_case(&b.cert_hash)).and_then(|(_, n)| n.clone()),
                        "client_cert": b.client_cert,
                        "client_ca": b.client_ca,
                        "made_by": b.source.clone().unwrap_or_else(|| "sslcert".into()),
                    }))
                    .collect::<Vec<_>>()));
            } else if shown.is_empty() {
                println!("no SSL bindings in {}", file.display());
            } else {
                for b in shown {
                    let endpoint = b.endpoint().map(|e| e.to_string()).unwrap_or_default();
                    let kind = if b.hostnameport.is_some() {
                        "Hostname:port"
                    } else {
                        "IP:port"
                    };
                    println!(
                        "{kind:<16}: {endpoint}\n  Certificate   : {}\n  Client certs  : {:?}{}\n  Made by       : {}",
                        b.cert_hash,
                        b.client_cert,
                        b.client_ca.as_ref().map(|c| format!(" (CAs in {})", c.display())).unwrap_or_default(),
                        b.source.as_deref().map(|s| format!("{s} SSLCertHash")).unwrap_or_else(|| "inetsrv sslcert".into())
                    );
                }
            }
            Ok(())
        }
        SslCertCommand::Delete { endpoint } => {
            let endpoint = endpoint.parse()?;
            let removed =
                SslConfig::edit(file, |c| c.delete(&endpoint)).map_err(anyhow::Error::msg)?;
            if let Some(site) = &removed.source {
                eprintln!(
                    "inetsrv: warning: this binding came from {site}'s SSLCertHash; the running server makes it again unless the site's SecureBindings or SSLCertHash change"
                );
            }
            output::message(cli.json, &format!("removed the SSL binding of {endpoint}"))
        }
    }
}
