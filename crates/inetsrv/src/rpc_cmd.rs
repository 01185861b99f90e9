//! `inetsrv rpc`: a server's RPC endpoint seen through the `msrpc` client
//! runtime — whether it listens, its interfaces, counters, principal name
//! and endpoint map — on this machine (the state directory's Unix
//! socket) or on another (`--server HOST[:PORT]`), anonymously or logged
//! on with NTLM, Negotiate or Kerberos (a ticket of the user's credential
//! cache) at any level.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use msrpc::client::{ClientAuth, Connection, Options};
use msrpc::epm::{inquiry, vers, Address, EpmClient, TowerInfo};
use msrpc::mgmt::MgmtClient;
use msrpc::ndr::{ContextHandle, Unique};
use msrpc::security::{auth_level, auth_type, CredentialCache};
use msrpc::status;
use serde_json::json;

use crate::user_cmd::PasswordSource;
use crate::{output, rpc, target, Cli};

#[derive(Subcommand, Debug)]
pub enum RpcCommand {
    /// Whether the server listens (rpc_mgmt_is_server_listening).
    Ping(Target),
    /// The interfaces the server offers (rpc_mgmt_inq_if_ids).
    Interfaces(Target),
    /// Calls and packets in and out so far (rpc_mgmt_inq_stats).
    Stats(Target),
    /// The name the server authenticates as (rpc_mgmt_inq_princ_name).
    Principal(Target),
    /// The endpoint map: each interface and where it listens (ept_lookup),
    /// as rpcdump lists it.
    Endpoints(Target),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// SPNEGO (what Windows clients use): NTLM with --user, Kerberos with
    /// --kerberos.
    Negotiate,
    /// NTLM alone.
    Ntlm,
    /// Kerberos alone (auth type 16), with a ticket of the credential
    /// cache.
    Kerberos,
}

impl Provider {
    fn auth_type(self) -> u8 {
        match self {
            Provider::Negotiate => auth_type::GSS_NEGOTIATE,
            Provider::Ntlm => auth_type::WINNT,
            Provider::Kerberos => auth_type::GSS_KERBEROS,
        }
    }
}

/// How the CLI reaches a server's RPC endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RpcTransport {
    /// ncacn_ip_tcp: connection-oriented RPC over TCP.
    Tcp,
    /// ncadg_ip_udp: connectionless RPC over UDP (anonymous, or NTLM with
    /// --user).
    Udp,
}

#[derive(Args, Debug)]
pub struct Target {
    /// The server's endpoint mapper: HOST or HOST:PORT ([::1]:135 for
    /// IPv6). Without a port, 135 and then 8135 are tried. Or an RPC
    /// proxy's URL, https://HOST[:PORT][/rpc/rpcproxy.dll[?SERVER:PORT]]:
    /// RPC over HTTP through port 443 (the HTTP channel logs on with
    /// --user and its password; the server's ncacn_http port 593, then
    /// 8593, unless the query names one). Without --server, the server
    /// of --state-dir on this machine, over its Unix socket.
    #[arg(long, global = true, value_name = "HOST[:PORT] | https://HOST/")]
    pub server: Option<String>,
    /// A PEM file of certificates to trust for an https:// --server, beside
    /// the system's and this machine's server's.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// The protocol to reach --server with: tcp (ncacn_ip_tcp) or udp
    /// (ncadg_ip_udp, the connectionless protocol; NTLM with --user).
    /// With udp and no --server, this machine's 127.0.0.1.
    #[arg(long, global = true, value_enum, default_value_t = RpcTransport::Tcp)]
    pub transport: RpcTransport,
    /// Log on as this user (added on the server with `inetsrv user add`);
    /// the password comes from --password, --password-file or standard
    /// input. Anonymous without it.
    #[arg(long, global = true)]
    user: Option<String>,
    /// The domain to log on in (informational: accounts are the server's).
    #[arg(long, global = true, default_value = "")]
    domain: String,
    #[command(flatten)]
    password: PasswordSource,
    /// The authentication level with --user: connect, integrity or privacy
    /// (signed and sealed).
    #[arg(long, global = true, default_value = "privacy", value_parser = parse_level)]
    level: u8,
    /// The security provider with --user or --kerberos.
    #[arg(long, global = true, value_enum, default_value_t = Provider::Negotiate)]
    auth: Provider,
    /// Log on with Kerberos, no password: the service ticket for --spn
    /// from the credential cache, or one the KDC issues for the cache's
    /// TGT (after `kinit`). Implied by --auth kerberos.
    #[arg(short = 'k', long, global = true)]
    kerberos: bool,
    /// The service principal to use the ticket of (default host/HOST, the
    /// --server name, or this machine's name without --server).
    #[arg(long, global = true, value_name = "SERVICE/HOST[@REALM]")]
    spn: Option<String>,
    /// The credential cache (default $KRB5CCNAME, else /tmp/krb5cc_UID).
    #[arg(long, global = true, value_name = "FILE")]
    ccache: Option<String>,
}

impl Target {
    /// The server of the state directory on this machine, with the
    /// options' defaults (for the verbs that take no --server).
    pub fn this_machine() -> Target {
        use clap::{Args, FromArgMatches};
        let matches =
            Target::augment_args(clap::Command::new("inetsrv")).get_matches_from(["inetsrv"]);
        Target::from_arg_matches(&matches).expect("the defaults parse")
    }

    /// A logon password given without a server to log on to: what the
    /// seal password of `backup` and `config` used to be called.
    pub fn stray_password(&self) -> Result<()> {
        if self.server.is_none() && self.password.given() {
            bail!("--password and --password-file are the logon password of --server; the password SECURE data is sealed under is --seal-password (or --seal-password-file)");
        }
        Ok(())
    }

    fn uses_kerberos(&self) -> bool {
        self.kerberos || self.auth == Provider::Kerberos
    }
}

fn parse_level(text: &str) -> Result<u8, String> {
    match auth_level::parse(text) {
        Some(level) if level > auth_level::NONE => Ok(level),
        _ => Err("connect, integrity or privacy (packet and call are taken as integrity)".into()),
    }
}

/// Well-known interfaces, to name what a server lists.
fn interface_name(uuid: &msrpc::Uuid) -> &'static str {
    match uuid.to_string().as_str() {
        "e1af8308-5d1f-11c9-91a4-08002b14a0fa" => "endpoint mapper (EPM)",
        "afa8bd80-7d8a-11c9-bef4-08002b102989" => "management (MGMT)",
        "70b51430-b6ca-11d0-b9b9-00a0c922e750" => "IIS admin base (IMSAdminBaseW)",
        "8298d101-f992-43b7-8eca-5052d885b995" => "IIS admin base 2 (IMSAdminBase2W)",
        "f612954d-3b0b-4c56-9563-227b7be624b4" => "IIS admin base 3 (IMSAdminBase3W)",
        "e8fb8620-588f-11d2-9d61-00c04f79c5fe" => "IIS reset (IIisServiceControl)",
        "82ad4280-036b-11cf-972c-00aa006887b0" => "IIS Inetinfo (statistics, MS-IRP)",
        "cd8c0e33-6a4c-4841-9a34-fa3474c0620c" => "inetsrv service control (sites, pools)",
        "5c1e7a20-43d9-4b7e-9a51-2f0c6e18d473" => "inetsrv metabase tree (copy, batch)",
        "99fcfec4-5260-101b-bbcb-00aa0021347a" => "DCOM object exporter (IObjectExporter)",
        "000001a0-0000-0000-c000-000000000046" => "DCOM activation (IRemoteSCMActivator)",
        "4d9f4ab8-7d1c-11cf-861e-0020af6e7c57" => "DCOM activation (IActivation)",
        _ => "",
    }
}

pub fn run(cli: &Cli, command: &RpcCommand) -> Result<()> {
    let target = match command {
        RpcCommand::Ping(t)
        | RpcCommand::Interfaces(t)
        | RpcCommand::Stats(t)
        | RpcCommand::Principal(t)
        | RpcCommand::Endpoints(t) => t,
    };
    run_connected(cli, target, |mut conn, reached| async move {
        match command {
            RpcCommand::Ping(_) => ping(cli, &mut conn, &reached).await,
            RpcCommand::Interfaces(_) => interfaces(cli, &mut conn).await,
            RpcCommand::Stats(_) => stats(cli, &mut conn).await,
            RpcCommand::Principal(_) => principal(cli, &mut conn, target).await,
            RpcCommand::Endpoints(_) => endpoints(cli, &mut conn).await,
        }
    })
}

/// Runs `work` on a connection to the target, logged on as its options
/// say, on a runtime of its own; errors say where and explain a refused
/// logon. `work` is also told the address reached.
pub(crate) fn run_connected<T, F>(
    cli: &Cli,
    target: &Target,
    work: impl FnOnce(Connection, String) -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let auth = client_auth(target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the RPC client")?;
    runtime.block_on(async {
        let (conn, reached) = connect(cli, target, auth).await?;
        let done = work(conn, reached.clone())
            .await
            .map_err(|e| explain(e, target));
        // This machine's server needs no naming: its errors read as a
        // command's on the files do.
        match &target.server {
            Some(_) => done.with_context(|| format!("on {reached}")),
            None => done,
        }
    })
}

/// How the target's options log on: NTLM/Negotiate with a password,
/// Kerberos with a cached ticket, or anonymously.
pub(crate) fn client_auth(target: &Target) -> Result<Option<ClientAuth>> {
    if target.uses_kerberos() {
        return Ok(Some(kerberos_auth(target)?));
    }
    Ok(match &target.user {
        Some(user) => Some(ClientAuth {
            auth_type: target.auth.auth_type(),
            level: target.level,
            user: user.clone(),
            domain: target.domain.clone(),
            password: target.password.get()?,
            ticket: None,
        }),
        None => None,
    })
}

/// Kerberos credentials: the cached ticket for the service principal.
fn kerberos_auth(target: &Target) -> Result<ClientAuth> {
    if target.auth == Provider::Ntlm {
        bail!("--kerberos goes with --auth negotiate or --auth kerberos, not ntlm");
    }
    let path = match &target.ccache {
        Some(name) => CredentialCache::resolve(name)?,
        None => CredentialCache::default_path()?,
    };
    let cache = CredentialCache::load(&path)?;
    if let Some(user) = &target.user {
        let named = user.split('@').next().unwrap_or(user);
        if !named.eq_ignore_ascii_case(&cache.principal.join("/")) {
            bail!(
                "the credential cache {} holds the tickets of {}, not of '{user}' (kinit {user})",
                path.display(),
                cache.principal_name()
            );
        }
    }
    let (service, realm) = service_principal(target)?;
    let ticket = cache.service_ticket(&service, realm.as_deref())?;
    Ok(ClientAuth {
        auth_type: target.auth.auth_type(),
        level: target.level,
        user: cache.principal.join("/"),
        domain: cache.realm.clone(),
        password: String::new(),
        ticket: Some(ticket),
    })
}

/// `--spn SERVICE/HOST[@REALM]`, or host/ and the server's name.
fn service_principal(target: &Target) -> Result<(Vec<String>, Option<String>)> {
    let text = match &target.spn {
        Some(spn) => spn.clone(),
        None => {
            let host = match &target.server {
                Some(server) => split_host_port(server)?.0,
                None => nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .ok_or_else(|| anyhow!("this machine has no host name: give --spn"))?,
            };
            if host.parse::<std::net::IpAddr>().is_ok() {
                bail!(
                    "Kerberos names the server, not its address: give --server by host name \
                     or --spn host/NAME"
                );
            }
            format!("host/{}", host.to_ascii_lowercase())
        }
    };
    let (name, realm) = match text.rsplit_once('@') {
        Some((name, realm)) => (name, Some(realm.to_string())),
        None => (text.as_str(), None),
    };
    let components: Vec<String> = name.split('/').map(str::to_string).collect();
    if components.iter().any(String::is_empty) {
        bail!("--spn {text}: expected SERVICE/HOST or SERVICE/HOST@REALM");
    }
    Ok((components, realm))
}

/// Says what a refused logon most likely means.
pub(crate) fn explain(error: anyhow::Error, target: &Target) -> anyhow::Error {
    use msrpc::client::CallError;
    use msrpc::pdu::nak;
    // A logon refused at the bind, or an access-denied fault after it.
    let denied = matches!(
        error.downcast_ref::<CallError>(),
        Some(CallError::Fault { status: 5 })
            | Some(CallError::BindNak(
                nak::INVALID_CHECKSUM | nak::AUTHENTICATION_TYPE_NOT_RECOGNIZED
            ))
    );
    if denied && target.uses_kerberos() {
        return error.context(
            "the server refused the Kerberos logon (it has no keytab with the key of the \
             ticket's service, or its clock is off; see its log)",
        );
    }
    match (&target.user, denied) {
        (Some(user), true) => error.context(format!(
            "the server refused the logon of '{user}' (unknown user, wrong password, or a \
             user added before NTLM was supported: `inetsrv user passwd {user}` on the server)"
        )),
        (None, true) => error.context("the server requires a logon: give --user"),
        _ => error,
    }
}

/// Connects to the named server or the local one; also says where.
pub(crate) async fn connect(
    cli: &Cli,
    target: &Target,
    auth: Option<ClientAuth>,
) -> Result<(Connection, String)> {
    let options = Options {
        auth,
        ..Options::default()
    };
    if target.transport == RpcTransport::Udp {
        return connect_udp(target, options).await;
    }
    if let Some(url) = target
        .server
        .as_deref()
        .filter(|s| s.starts_with("https://") || s.starts_with("http://"))
    {
        let url = crate::rpc_http::ProxyUrl::parse(url)?;
        return crate::rpc_http::connect(
            &url,
            options.auth,
            &target::server_dir(cli),
            target.ca_file.as_deref(),
        )
        .await;
    }
    let Some(server) = &target.server else {
        let socket = rpc::local_socket(&target::server_dir(cli));
        if !socket.exists() {
            bail!(
                "no server runs on {} (no RPC socket at {}): start one with `inetsrv start`, \
                 or name one with --server HOST",
                target::state_dir(cli).display(),
                socket.display()
            );
        }
        let conn = Connection::connect_local(&socket, options)
            .await
            .with_context(|| format!("cannot reach the RPC socket {}", socket.display()))?;
        return Ok((conn, format!("ncalrpc:{}", socket.display())));
    };
    let (host, ports) = endpoint_ports(server)?;
    let mut last_error = None;
    for port in ports {
        for addr in addresses(&host, port).await? {
            let attempt = tokio::time::timeout(
                Duration::from_secs(10),
                Connection::connect_tcp(addr, options.clone()),
            )
            .await;
            match attempt {
                Ok(Ok(conn)) => return Ok((conn, format!("ncacn_ip_tcp:{host}[{port}]"))),
                Ok(Err(e)) => last_error = Some(anyhow!("{addr}: {e}")),
                Err(_) => last_error = Some(anyhow!("{addr}: no answer in 10 seconds")),
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{host} has no address")))
        .with_context(|| format!("cannot reach the RPC endpoint of {server}"))
}

/// An activity with the server over UDP. Datagrams need no connection, so
/// without an explicit port each candidate is asked whether it listens.
async fn connect_udp(target: &Target, mut options: Options) -> Result<(Connection, String)> {
    if let Some(auth) = &mut options.auth {
        // Connectionless calls authenticate with NTLM alone ([MS-RPCE]
        // 3.2.1.4.1): Negotiate with a password means NTLM here.
        if auth.ticket.is_some() || auth.auth_type == auth_type::GSS_KERBEROS {
            bail!(
                "--transport udp authenticates with NTLM only (--user with a password): \
                 Kerberos needs a connection, use tcp"
            );
        }
        auth.auth_type = auth_type::WINNT;
    }
    let server = target.server.as_deref().unwrap_or("127.0.0.1");
    let (host, ports) = endpoint_ports(server)?;
    let probe = ports.len() > 1;
    let mut last_error = None;
    for port in ports {
        for addr in addresses(&host, port).await? {
            let datagram = msrpc::client::DatagramOptions::default();
            let mut conn = Connection::connect_udp(addr, options.clone(), datagram).await?;
            if probe {
                let mut mgmt = MgmtClient::bind(&mut conn).await?;
                let answer =
                    tokio::time::timeout(Duration::from_secs(5), mgmt.is_server_listening()).await;
                match answer {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        last_error = Some(anyhow!("{addr}: {e}"));
                        continue;
                    }
                    Err(_) => {
                        last_error = Some(anyhow!("{addr}: no answer in 5 seconds"));
                        continue;
                    }
                }
            }
            return Ok((conn, format!("ncadg_ip_udp:{host}[{port}]")));
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{host} has no address")))
        .with_context(|| format!("cannot reach the RPC endpoint of {server} over UDP"))
}

/// The host a --server names and the endpoint mapper's ports to try
/// there: the one given, else 135 and then 8135.
fn endpoint_ports(server: &str) -> Result<(String, Vec<u16>)> {
    let (host, port) = split_host_port(server)?;
    let ports = match port {
        Some(port) => vec![port],
        None => vec![rpc::EPM_PORT, rpc::FALLBACK_PORT],
    };
    Ok((host, ports))
}

async fn addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .collect())
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
fn split_host_port(text: &str) -> Result<(String, Option<u16>)> {
    let port = |p: &str| -> Result<u16> {
        p.parse()
            .map_err(|_| anyhow!("'{p}' is not a port number (in --server {text})"))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("--server {text}: an IPv6 address needs its closing ']'"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(port(p)?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => bail!("--server {text}: expected [ADDRESS]:PORT"),
        };
    }
    match text.rsplit_once(':') {
        // A bare IPv6 address has several colons.
        Some((host, p)) if !host.contains(':') => Ok((host.to_string(), Some(port(p)?))),
        _ if text.is_empty() => bail!("--server needs a host name or address"),
        _ => Ok((text.to_string(), None)),
    }
}

async fn ping(cli: &Cli, conn: &mut Connection, reached: &str) -> Result<()> {
    let mut mgmt = MgmtClient::bind(conn).await?;
    let (st, listening) = mgmt.is_server_listening().await?;
    let listening = st == 0 && listening != 0;
    if cli.json {
        output::print_json(&json!({ "server": reached, "listening": listening }));
    } else if listening {
        println!("{reached}: listening");
    } else {
        println!("{reached}: not listening ({})", status::name(st));
    }
    if !listening {
        bail!("the server does not listen");
    }
    Ok(())
}

async fn interfaces(cli: &Cli, conn: &mut Connection) -> Result<()> {
    let mut mgmt = MgmtClient::bind(conn).await?;
    let (vector, st) = mgmt.inq_if_ids().await?;
    if st != 0 {
        bail!("rpc_mgmt_inq_if_ids: {} ({st:#010x})", status::name(st));
    }
    let ids: Vec<_> = vector
        .get()
        .map(|v| v.if_id.iter().filter_map(|i| i.get().copied()).collect())
        .unwrap_or_default();
    if cli.json {
        let list: Vec<_> = ids
            .iter()
            .map(|i| {
                json!({
                    "uuid": i.uuid.to_string(),
                    "version": format!("{}.{}", i.vers_major, i.vers_minor),
                    "name": interface_name(&i.uuid),
                })
            })
            .collect();
        output::print_json(&json!(list));
    } else {
        for i in ids {
            println!(
                "{} v{}.{}  {}",
                i.uuid,
                i.vers_major,
                i.vers_minor,
                interface_name(&i.uuid)
            );
        }
    }
    Ok(())
}

async fn stats(cli: &Cli, conn: &mut Connection) -> Result<()> {
    let mut mgmt = MgmtClient::bind(conn).await?;
    let (_, counters, st) = mgmt.inq_stats(4).await?;
    if st != 0 {
        bail!("rpc_mgmt_inq_stats: {} ({st:#010x})", status::name(st));
    }
    let names = ["calls_in", "calls_out", "packets_in", "packets_out"];
    let pairs: Vec<(&str, u32)> = names.iter().copied().zip(counters.0).collect();
    if cli.json {
        let object: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        output::print_json(&serde_json::Value::Object(object));
    } else {
        for (name, value) in pairs {
            println!("{:<12} {value}", name.replace('_', " "));
        }
    }
    Ok(())
}

async fn principal(cli: &Cli, conn: &mut Connection, target: &Target) -> Result<()> {
    let mut mgmt = MgmtClient::bind(conn).await?;
    let service = target.auth.auth_type();
    let (name, st) = mgmt.inq_princ_name(u32::from(service), 1024).await?;
    if st != 0 {
        bail!("rpc_mgmt_inq_princ_name: {} ({st:#010x})", status::name(st));
    }
    let name = String::from_utf8_lossy(&name.text).to_string();
    if cli.json {
        output::print_json(&json!({ "principal": name }));
    } else {
        println!("{name}");
    }
    Ok(())
}

/// Every entry of the endpoint map, page by page.
async fn endpoints(cli: &Cli, conn: &mut Connection) -> Result<()> {
    let mut epm = EpmClient::bind(conn).await?;
    let mut handle = ContextHandle::default();
    let mut entries = Vec::new();
    loop {
        let (next, _, page, st) = epm
            .ept_lookup(
                inquiry::ALL_ELTS,
                Unique::new(None),
                Unique::new(None),
                vers::ALL,
                handle,
                100,
            )
            .await?;
        handle = next;
        match st {
            0 => entries.extend(page.items),
            status::EPT_S_NOT_REGISTERED => break,
            other => bail!("ept_lookup: {} ({other:#010x})", status::name(other)),
        }
        if handle.is_null() {
            break;
        }
    }
    if !handle.is_null() {
        let _ = epm.ept_lookup_handle_free(handle).await;
    }
    let rows: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|entry| {
            let annotation = String::from_utf8_lossy(&entry.annotation.0).to_string();
            match entry.tower.get().map(|t| TowerInfo::decode(&t.octets)) {
                Some(Ok(tower)) => (
                    tower.interface.uuid.to_string(),
                    format!("{}.{}", tower.interface.major(), tower.interface.minor()),
                    binding(&tower.address),
                    annotation,
                ),
                _ => (
                    entry.object.to_string(),
                    String::new(),
                    "(a tower this client does not read)".to_string(),
                    annotation,
                ),
            }
        })
        .collect();
    if cli.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(uuid, version, binding, annotation)| {
                json!({
                    "uuid": uuid,
                    "version": version,
                    "binding": binding,
                    "annotation": annotation,
                    "name": msrpc::Uuid::parse(uuid).map(|u| interface_name(&u)).unwrap_or(""),
                })
            })
            .collect();
        output::print_json(&json!(list));
    } else {
        for (uuid, version, binding, annotation) in rows {
            let name = msrpc::Uuid::parse(&uuid)
                .map(|u| interface_name(&u))
                .unwrap_or("");
            let label = if annotation.is_empty() {
                name
            } else {
                &annotation
            };
            println!("{uuid} v{version}  {binding}  {label}");
        }
    }
    Ok(())
}

fn binding(address: &Address) -> String {
    match address {
        Address::Tcp(addr) => format!("ncacn_ip_tcp:{}[{}]", addr.ip(), addr.port()),
        Address::Local(name) => format!("ncalrpc:[{name}]"),
        Address::Udp(addr) => format!("ncadg_ip_udp:{}[{}]", addr.ip(), addr.port()),
        Address::Http(addr) => format!("ncacn_http:{}[{}]", addr.ip(), addr.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_with_and_without_ports() {
        let split = |t: &str| split_host_port(t).map_err(|e| e.to_string());
        assert_eq!(split("host").unwrap(), ("host".into(), None));
        assert_eq!(
            split("10.0.0.1:8135").unwrap(),
            ("10.0.0.1".into(), Some(8135))
        );
        assert_eq!(split("[::1]:135").unwrap(), ("::1".into(), Some(135)));
        assert_eq!(split("[::1]").unwrap(), ("::1".into(), None));
        assert_eq!(split("::1").unwrap(), ("::1".into(), None));
        assert!(split("host:http").unwrap_err().contains("not a port"));
        assert!(split("[::1").unwrap_err().contains("closing"));
        assert!(split("").is_err());
    }
}
