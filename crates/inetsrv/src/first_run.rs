//! What completes a first run beyond the default metabase: https. The
//! Default Web Site gets a self-signed certificate for `localhost`, this
//! host's name and the loopback addresses, a secure binding on `:8443:`
//! and its SSLCertHash, so a newcomer has https on the first command.

use std::path::Path;

use anyhow::Result;
use listener::ListenerConfig;
use metabase::{ids, MbPath, MetabaseFiles, Value};

/// The port of the Default Web Site's secure binding on a first run.
pub const FIRST_RUN_HTTPS_PORT: u16 = 8443;

/// Runs once, right after the state directory was made.
pub fn complete(files: &MetabaseFiles, state_dir: &Path) {
    if !files.created() {
        return;
    }
    if let Err(e) = secure_default_site(files, state_dir) {
        eprintln!("inetsrv: warning: the Default Web Site got no https binding: {e:#}");
    }
}

fn secure_default_site(files: &MetabaseFiles, state_dir: &Path) -> Result<()> {
    let site = MbPath::parse("/LM/W3SVC/1")?;
    let snapshot = files.metabase().snapshot();
    if snapshot.find(&site).is_none()
        || snapshot
            .get(&site, ids::SECURE_BINDINGS, metabase::GetMode::Own)
            .is_ok()
    {
        return Ok(());
    }
    let config = ListenerConfig::for_state_dir(state_dir).map_err(anyhow::Error::msg)?;
    let store = certstore::Store::at(&config.cert_store_dir);
    let mut names = vec!["localhost".to_string()];
    if let Ok(host) = nix::unistd::gethostname() {
        let host = host.to_string_lossy().to_ascii_lowercase();
        if !host.is_empty() && host != "localhost" && host.parse::<std::net::IpAddr>().is_err() {
            names.push(host);
        }
    }
    names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    let cert = store.create_self_signed(
        &names,
        Some("localhost (self-signed)"),
        certstore::NewKey::EcdsaP256,
        365 * 2,
    )?;
    let hash = hex::decode(&cert.thumbprint)?;
    files.metabase().write(|t| {
        t.set(
            &site,
            ids::SECURE_BINDINGS,
            Value::MultiSz(vec![format!(":{FIRST_RUN_HTTPS_PORT}:")]),
        )?;
        t.set(&site, ids::SSL_CERT_HASH, Value::Binary(hash))
    })?;
    Ok(())
}
