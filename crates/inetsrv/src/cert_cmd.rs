//! `inetsrv cert`: the server certificate store (the machine's `MY` store
//! as IIS uses it): import PEM or PFX, make a self-signed certificate,
//! list, export, rename, delete, and the OCSP response stapled to each. Certificates are named by SHA-1
//! thumbprint (IIS's SSLCertHash) or a friendly name.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use certstore::{CertInfo, NewKey, Store};
use clap::Subcommand;
use listener::tls::SslConfig;
use listener::ListenerConfig;
use serde_json::json;

use crate::output;
use crate::target;
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Import a certificate with its private key: PEM (--cert CHAIN.pem
    /// --key KEY.pem, the server's certificate first) or a PKCS#12 file as
    /// Windows exports it (FILE.pfx, the password on stdin with
    /// --password-stdin).
    Import {
        /// A .pfx/.p12 file.
        #[arg(conflicts_with_all = ["cert", "key"], required_unless_present = "cert")]
        pfx: Option<PathBuf>,
        /// The certificate chain as PEM, the server's certificate first.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The private key as PEM (PKCS#8, RSA or EC; not encrypted).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Read the PFX password from standard input (one line).
        #[arg(long, requires = "pfx")]
        password_stdin: bool,
        /// A friendly name to use instead of the thumbprint.
        #[arg(long)]
        name: Option<String>,
    },
    /// Make a self-signed certificate (for testing and first runs).
    New {
        /// Make it self-signed (the only kind this command makes).
        #[arg(long, required = true)]
        self_signed: bool,
        /// A DNS name it is for (repeat for more; the first is the subject).
        #[arg(long = "dns", value_name = "HOST", required = true)]
        dns: Vec<String>,
        /// A friendly name.
        #[arg(long)]
        name: Option<String>,
        /// An ECDSA P-256 key (the default).
        #[arg(long, conflicts_with = "rsa")]
        ecdsa: bool,
        /// An RSA 2048 key.
        #[arg(long)]
        rsa: bool,
        /// Days it is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// List certificates: thumbprint, name, subject, names, issuer, expiry
    /// and the SSL bindings that use each.
    List,
    /// Print a certificate chain as PEM (with --key, its private key too).
    Export {
        /// Thumbprint or friendly name.
        cert: String,
        /// Include the private key (keep the output safe).
        #[arg(long)]
        key: bool,
        /// Write to this file (0600 when it holds the key) instead of
        /// standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Set or clear (--clear) a certificate's friendly name.
    Rename {
        cert: String,
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        clear: bool,
    },
    /// Staple an OCSP response to a certificate's handshakes: --response
    /// FILE (DER, as `openssl ocsp -respout` writes it; `-` for standard
    /// input) stores it after checking it says the certificate is good and
    /// is current; --clear stops stapling; with neither, shows what is
    /// stored. Run it again with a fresh response before the next update.
    Ocsp {
        cert: String,
        #[arg(long, value_name = "FILE", conflicts_with = "clear")]
        response: Option<PathBuf>,
        #[arg(long)]
        clear: bool,
    },
    /// Delete a certificate and its key; refused while an SSL binding or a
    /// site's SSLCertHash uses it, unless --force.
    Delete {
        cert: String,
        #[arg(long)]
        force: bool,
    },
}

fn store(cli: &Cli) -> Result<(Store, ListenerConfig)> {
    let dir = target::state_dir(cli);
    let config = ListenerConfig::for_state_dir(&dir).map_err(anyhow::Error::msg)?;
    Ok((Store::at(&config.cert_store_dir), config))
}

/// Where certificates are used: (thumbprint, user) for SSL bindings (by
/// endpoint) and sites' SSLCertHash (by site), read once from the files,
/// whether or not the server runs.
fn usage(cli: &Cli, config: &ListenerConfig) -> Result<Vec<(String, String)>> {
    let ssl = SslConfig::load(&config.ssl_config_file).map_err(anyhow::Error::msg)?;
    let mut out: Vec<(String, String)> = ssl
        .bindings
        .iter()
        .filter_map(|b| {
            Some((
                b.cert_hash.to_ascii_uppercase(),
                b.endpoint().ok()?.to_string(),
            ))
        })
        .collect();
    if cli.metabase.is_none() {
        let files = target::open(cli, false)?;
        let snapshot = files.metabase().snapshot();
        if let Some(w3svc) = metabase::MbPath::parse("/LM/W3SVC")
            .ok()
            .and_then(|p| snapshot.find(&p))
        {
            for site in w3svc.children().filter(|k| k.name().parse::<u32>().is_ok()) {
                if let Some(metabase::Value::Binary(hash)) = site
                    .property(metabase::ids::SSL_CERT_HASH)
                    .map(|p| &p.value)
                {
                    out.push((
                        hex::encode_upper(hash),
                        format!("site {} (SSLCertHash)", site.name()),
                    ));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What uses one certificate, from [`usage`].
fn used_by(usage: &[(String, String)], thumb: &str) -> Vec<String> {
    usage
        .iter()
        .filter(|(t, _)| t.eq_ignore_ascii_case(thumb))
        .map(|(_, u)| u.clone())
        .collect()
}

/// A stored OCSP response in one line: what it says and until when.
fn ocsp_text(store: &Store, thumb: &str) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    match store.ocsp_status(thumb) {
        Ok(None) => None,
        Ok(Some(status)) => Some(match status.next_update {
            Some(next) if status.is_current(now) => {
                format!("good, stapled until {}", certstore::format_time(next))
            }
            Some(next) => format!(
                "out of date since {}, not stapled (inetsrv cert ocsp)",
                certstore::format_time(next)
            ),
            None => format!(
                "good as of {}, stapled",
                certstore::format_time(status.this_update)
            ),
        }),
        Err(e) => Some(format!("not stapled: {e}")),
    }
}

fn describe(info: &CertInfo, used_by: &[String]) -> serde_json::Value {
    json!({
        "thumbprint": info.thumbprint,
        "name": info.name,
        "subject": info.subject,
        "dns_names": info.sans,
        "issuer": info.issuer,
        "serial": info.serial,
        "not_before": certstore::format_time(info.not_before),
        "not_after": certstore::format_time(info.not_after),
        "key": info.key.to_string(),
        "self_signed": info.self_signed,
        "chain_length": info.chain_len,
        "used_by": used_by,
    })
}

fn print_one(cli: &Cli, verb: &str, info: &CertInfo, warnings: &[String]) {
    for w in warnings {
        eprintln!("inetsrv: warning: {w}");
    }
    if cli.json {
        let mut value = describe(info, &[]);
        value["warnings"] = json!(warnings);
        output::print_json(&value);
    } else {
        println!(
            "{verb} {}{}\n  subject   {}\n  names     {}\n  issuer    {}\n  valid     {} to {}\n  key       {}",
            info.thumbprint,
            info.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
            info.subject,
            info.sans.join(", "),
            info.issuer,
            certstore::format_time(info.not_before),
            certstore::format_time(info.not_after),
            info.key
        );
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(cli: &Cli, command: &CertCommand) -> Result<()> {
    let (store, config) = store(cli)?;
    match command {
        CertCommand::Import {
            pfx,
            cert,
            key,
            password_stdin,
            name,
        } => {
            let imported = match (pfx, cert, key) {
                (Some(pfx), _, _) => {
                    let mut password = String::new();
                    if *password_stdin {
                        std::io::stdin()
                            .read_to_string(&mut password)
                            .context("cannot read the password from standard input")?;
                    }
                    let password = password.trim_end_matches(['\r', '\n']);
                    store.import_pfx(&read(pfx)?, password, name.as_deref())?
                }
                (None, Some(cert), Some(key)) => {
                    store.import_pem(&read(cert)?, &read(key)?, name.as_deref())?
                }
                _ => bail!("give a .pfx file, or --cert CHAIN.pem with --key KEY.pem"),
            };
            let verb = if imported.already_present {
                "already in the store:"
            } else {
                "imported"
            };
            print_one(cli, verb, &imported.info, &imported.warnings);
            Ok(())
        }
        CertCommand::New {
            dns,
            name,
            rsa,
            days,
            ..
        } => {
            let kind = if *rsa {
                NewKey::Rsa2048
            } else {
                NewKey::EcdsaP256
            };
            let info = store.create_self_signed(dns, name.as_deref(), kind, *days)?;
            print_one(cli, "created", &info, &[]);
            Ok(())
        }
        CertCommand::List => {
            let certs = store.list()?;
            let usage = usage(cli, &config)?;
            let rows: Vec<_> = certs
                .iter()
                .map(|i| (i, used_by(&usage, &i.thumbprint)))
                .collect();
            if cli.json {
                output::print_json(&json!(rows
                    .iter()
                    .map(|(i, u)| {
                        let mut value = describe(i, u);
                        value["ocsp"] = json!(ocsp_text(&store, &i.thumbprint));
                        value
                    })
                    .collect::<Vec<_>>()));
            } else if rows.is_empty() {
                println!(
                    "no certificates in {} (inetsrv cert import, or inetsrv cert new --self-signed --dns HOST)",
                    store.dir().display()
                );
            } else {
                for (info, used_by) in rows {
                    println!(
                        "{}  {}\n  subject   {}\n  names     {}\n  issuer    {}\n  expires   {}\n  key       {}\n  used by   {}",
                        info.thumbprint,
                        info.name.as_deref().unwrap_or(""),
                        info.subject,
                        info.sans.join(", "),
                        info.issuer,
                        certstore::format_time(info.not_after),
                        info.key,
                        if used_by.is_empty() { "nothing".to_string() } else { used_by.join(", ") }
                    );
                    if let Some(ocsp) = ocsp_text(&store, &info.thumbprint) {
                        println!("  OCSP      {ocsp}");
                    }
                }
            }
            Ok(())
        }
        CertCommand::Export { cert, key, out } => {
            let (chain, private) = store.export(cert, *key)?;
            let text = format!("{chain}{}", private.unwrap_or_default());
            match out {
                Some(path) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mode = if *key { 0o600 } else { 0o644 };
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(mode)
                        .open(path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    file.write_all(text.as_bytes())?;
                    output::message(cli.json, &format!("wrote {}", path.display()))
                }
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        CertCommand::Rename { cert, name, clear } => {
            if name.is_none() && !clear {
                bail!("give the new name, or --clear to remove it");
            }
            let thumb = store.rename(cert, name.as_deref())?;
            output::message(
                cli.json,
                &match name {
                    Some(n) => format!("{thumb} is now named {n}"),
                    None => format!("{thumb} has no name now"),
                },
            )
        }
        CertCommand::Ocsp {
            cert,
            response,
            clear,
        } => {
            if *clear {
                let thumb = store.resolve(cert)?;
                let had = store.clear_ocsp(&thumb)?;
                return output::message(
                    cli.json,
                    &if had {
                        format!("{thumb}: OCSP stapling stopped")
                    } else {
                        format!("{thumb} had no OCSP response")
                    },
                );
            }
            let Some(path) = response else {
                let thumb = store.resolve(cert)?;
                let text = ocsp_text(&store, &thumb)
                    .unwrap_or_else(|| "no OCSP response stored".to_string());
                return output::message(cli.json, &format!("{thumb}: {text}"));
            };
            let bytes = if path.as_os_str() == "-" {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .context("cannot read the OCSP response from standard input")?;
                bytes
            } else {
                read(path)?
            };
            let (thumb, status) = store.set_ocsp(cert, &bytes)?;
            output::message(
                cli.json,
                &format!(
                    "{thumb}: OCSP response stored (good as of {}{}); stapled to new handshakes",
                    certstore::format_time(status.this_update),
                    status
                        .next_update
                        .map(|n| format!(", next update {}", certstore::format_time(n)))
                        .unwrap_or_default()
                ),
            )
        }
        CertCommand::Delete { cert, force } => {
            let thumb = store.resolve(cert)?;
            let used_by = used_by(&usage(cli, &config)?, &thumb);
            if !used_by.is_empty() && !force {
                bail!(
                    "certificate {thumb} is used by {}; change or delete those first, or use --force (they then fail their handshakes)",
                    used_by.join(", ")
                );
            }
            store.delete(&thumb)?;
            output::message(cli.json, &format!("deleted {thumb}"))
        }
    }
}
