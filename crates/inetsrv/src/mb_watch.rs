//! `inetsrv mb watch`: the metabase's changes as a running server makes
//! them, through the admin base's change-notification sink — IIS's
//! IMSAdminBaseSinkW advised on IMSAdminBaseW's connection point, on this
//! machine's RPC socket or on another server (`--server HOST`). The
//! command serves the sink itself, on the address the server knows it by.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use dcom::client::{PingSet, Remote, PING_PERIOD};
use dcom::objref::ObjRef;
use dcom::types::OrpcThis;
use iisadmin::imsa::CLSID_MSADMIN_BASE_W;
use iisadmin::sink::{
    ChangeObject, ConnectionPointClient, ConnectionPointContainerClient, Notice, SinkHost,
    IID_ICONNECTION_POINT_CONTAINER, IID_IMSADMIN_BASE_SINK_W,
};
use metabase::{ChangeKind, MbPath, Schema};
use msrpc::client::Connection;
use serde_json::json;

use crate::rpc_cmd::{self, Target};
use crate::Cli;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only changes at or below this key (default: all of them).
    #[arg(default_value = "/LM")]
    path: String,
    /// Stop after this many changes.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = crate::target::parse_seconds)]
    timeout: Option<f64>,
}

/// The change kinds a change object's bits name, in IIS's words.
fn kinds(bits: u32) -> Vec<&'static str> {
    [
        (ChangeKind::DELETE_OBJECT, "delete_object"),
        (ChangeKind::ADD_OBJECT, "add_object"),
        (ChangeKind::SET_DATA, "set_data"),
        (ChangeKind::DELETE_DATA, "delete_data"),
        (ChangeKind::RENAME_OBJECT, "rename_object"),
        (ChangeKind::RESTORE, "restore"),
    ]
    .into_iter()
    .filter(|(kind, _)| ChangeKind(bits).contains(*kind))
    .map(|(_, name)| name)
    .collect()
}

/// One change as a line (or a JSON object): the kinds, the key, the data
/// by name where this build's schema knows the ID (else `MD_<id>`).
fn describe(change: &ChangeObject, schema: &Schema, json: bool) -> String {
    let names: Vec<String> = change
        .data_ids()
        .iter()
        .map(|id| schema.name_of(*id))
        .collect();
    if json {
        return json!({
            "path": change.key(),
            "change": kinds(change.change_type),
            "ids": change.data_ids(),
            "properties": names,
        })
        .to_string();
    }
    let mut line = format!("{} {}", kinds(change.change_type).join("|"), change.key());
    if !names.is_empty() {
        line.push_str(": ");
        line.push_str(&names.join(", "));
    }
    line
}

/// Whether a change is at or below the watched key.
fn within(change: &ChangeObject, path: &MbPath) -> bool {
    MbPath::parse(&change.key()).is_ok_and(|p| p.starts_with(path))
}

pub fn run(cli: &Cli, target: &Target, args: &WatchArgs) -> Result<()> {
    let path = crate::target::path(&args.path)?;
    rpc_cmd::run_connected(cli, target, |conn, reached| {
        watch(cli, args, path, conn, reached)
    })
}

fn this() -> OrpcThis {
    OrpcThis::new(dcom::ids::COM_VERSION)
}

async fn watch(
    cli: &Cli,
    args: &WatchArgs,
    path: MbPath,
    mut conn: Connection,
    reached: String,
) -> Result<()> {
    let schema = Schema::standard();
    let mut seen = 0usize;
    follow(
        &mut conn,
        args.timeout,
        |sink| {
            // On stderr, JSON or not: stdout carries only the changes.
            eprintln!(
                "watching {path} on {reached} (change notifications, sink at {sink}); Ctrl-C stops"
            )
        },
        async |_, list| {
            for change in list.iter().filter(|c| within(c, &path)) {
                println!("{}", describe(change, &schema, cli.json));
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) {
                    return Ok(true);
                }
            }
            Ok(false)
        },
    )
    .await
}

/// Advises a notification sink on the server's IMSAdminBase object (on
/// `conn`), says where it is served (`started`), then hands each batch of
/// changes to `on_changes` until it answers true (enough), the server
/// shuts down, `timeout` seconds pass or Ctrl-C; keeps the server's objects
/// pinged meanwhile, and unadvises and releases them at the end.
pub async fn follow(
    conn: &mut Connection,
    timeout: Option<f64>,
    started: impl FnOnce(std::net::SocketAddr),
    mut on_changes: impl AsyncFnMut(&mut Connection, Vec<ChangeObject>) -> Result<bool>,
) -> Result<()> {
    let container =
        dcom::client::create_instance(conn, CLSID_MSADMIN_BASE_W, IID_ICONNECTION_POINT_CONTAINER)
            .await
            .context("cannot activate IMSAdminBase on the server")?;
    let (_, pointer, hr) = ConnectionPointContainerClient::bind(conn)
        .await?
        .on_object(container.ipid)
        .find_connection_point(this(), IID_IMSADMIN_BASE_SINK_W)
        .await?;
    crate::mb_cmd::check(hr, "FindConnectionPoint")?;
    let point = match pointer.get().map(|p| ObjRef::decode(&p.data)) {
        Some(Ok(ObjRef::Standard { std, .. })) => Remote {
            ipid: std.ipid,
            oid: std.oid,
            oxid: std.oxid,
            rem_unknown: container.rem_unknown,
            public_refs: std.public_refs,
        },
        _ => bail!("the server's FindConnectionPoint answered no usable connection point"),
    };
    // The sink is served where the server can call back: the address this
    // end of the connection has (loopback over the local socket).
    let ip = conn
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let mut host = SinkHost::start(ip)
        .await
        .with_context(|| format!("cannot serve the notification sink on {ip}"))?;
    let sink = host
        .interface_pointer()
        .map_err(|hr| anyhow::anyhow!("cannot marshal the sink: {hr:#010x}"))?;
    let (_, cookie, hr) = ConnectionPointClient::bind(conn)
        .await?
        .on_object(point.ipid)
        .advise(this(), msrpc::ndr::Unique::new(Some(sink)))
        .await?;
    crate::mb_cmd::check(hr, "Advise")?;
    let pings = PingSet::new(conn, vec![container.oid, point.oid])
        .await
        .context("cannot keep the server's objects alive (ComplexPing)")?;
    started(host.address());
    let deadline = timeout.map(|t| tokio::time::Instant::now() + Duration::from_secs_f64(t));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_PERIOD, PING_PERIOD);
    let outcome: Result<()> = async {
        loop {
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                notice = host.notices.recv() => match notice {
                    Some(Notice::Changes(list)) => {
                        if on_changes(conn, list).await? {
                            return Ok(());
                        }
                    }
                    Some(Notice::Shutdown) => {
                        eprintln!("the server is shutting down");
                        return Ok(());
                    }
                    None => return Ok(()),
                },
                _ = ping.tick() => pings.ping(conn).await.context("SimplePing")?,
                _ = expired => return Ok(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    .await;
    // Done watching: the server stops calling, the objects go.
    if let Ok(point_client) = ConnectionPointClient::bind(conn).await {
        let _ = point_client
            .on_object(point.ipid)
            .unadvise(this(), cookie)
            .await;
    }
    let _ = dcom::client::release(conn, &point).await;
    let _ = dcom::client::release(conn, &container).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrpc::ndr::{ConformantArray, Unique, WString};

    fn change(path: &str, bits: u32, ids: Vec<u32>) -> ChangeObject {
        ChangeObject {
            path: Unique::new(Some(WString(path.into()))),
            change_type: bits,
            id_count: ids.len() as u32,
            ids: Unique::new(Some(ConformantArray(ids))),
        }
    }

    #[test]
    fn changes_are_described_by_name_and_filtered_by_key() {
        let schema = Schema::standard();
        let c = change("/LM/W3SVC/1/", 4 | 8, vec![1015, 999_999]);
        assert_eq!(
            describe(&c, &schema, false),
            "set_data|delete_data /LM/W3SVC/1: ServerComment, MD_999999"
        );
        let v: serde_json::Value = serde_json::from_str(&describe(&c, &schema, true)).unwrap();
        assert_eq!(v["path"], "/LM/W3SVC/1");
        assert_eq!(v["change"], json!(["set_data", "delete_data"]));
        assert_eq!(v["ids"], json!([1015, 999_999]));
        assert_eq!(v["properties"], json!(["ServerComment", "MD_999999"]));
        assert_eq!(
            describe(&change("/LM/W3SVC/2/", 2, vec![]), &schema, false),
            "add_object /LM/W3SVC/2"
        );
        let w3svc1 = MbPath::parse("/LM/W3SVC/1").unwrap();
        assert!(within(&c, &w3svc1));
        assert!(within(&change("/LM/W3SVC/1/ROOT/", 4, vec![]), &w3svc1));
        assert!(!within(&change("/LM/W3SVC/10/", 4, vec![]), &w3svc1));
        assert!(!within(&change("/LM/W3SVC/", 4, vec![]), &w3svc1));
    }
}
