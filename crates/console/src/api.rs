//! What the console's pages ask of the service, as JSON: the tree (sites
//! with their virtual directories, application pools with their worker
//! processes), a key's property sheet, a property changed (through the
//! metabase's own validated write, as `inetsrv mb set` does: a refused
//! value answers the same error), site and pool commands, and the live
//! counters the graphs draw.

use metabase::{GetMode, MbPath, Value};
use serde_json::{json, Value as Json};

use crate::Sources;

/// The most virtual directories listed for one site.
const MAX_VDIRS: usize = 500;

/// An answer: its status and JSON body.
pub type Answer = (u16, Json);

fn refused(status: u16, why: impl std::fmt::Display) -> Answer {
    (status, json!({ "error": why.to_string() }))
}

/// The sites (with their virtual directories) and pools.
pub async fn tree(sources: &Sources) -> Answer {
    let sites = sources.was.sites().await;
    let pools = sources.was.pools().await;
    let snapshot = sources.files.metabase().snapshot();
    let sites: Vec<Json> = sites
        .iter()
        .map(|s| {
            let root = format!("/LM/W3SVC/{}/ROOT", s.id);
            let mut vdirs = Vec::new();
            if let Ok(path) = MbPath::parse(&root) {
                virtual_directories(&snapshot, &path, 0, &mut vdirs);
            }
            json!({
                "id": s.id,
                "comment": s.comment,
                "state": s.state.to_string(),
                "bindings": s.bindings,
                "error": s.error,
                "path": format!("/LM/W3SVC/{}", s.id),
                "vdirs": vdirs,
            })
        })
        .collect();
    let pools: Vec<Json> = pools
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "state": p.state.to_string(),
                "reason": p.reason,
                "path": format!("/LM/W3SVC/AppPools/{}", p.name),
                "workers": p.workers.iter().map(|w| json!({
                    "pid": w.pid,
                    "state": w.state.to_string(),
                    "requests": w.requests,
                    "active": w.active_requests,
                    "uptime": w.uptime_seconds,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    (200, json!({ "sites": sites, "pools": pools }))
}

/// The virtual directories below `path` (ROOT itself first), depth-first.
fn virtual_directories(
    snapshot: &metabase::Snapshot,
    path: &MbPath,
    depth: usize,
    out: &mut Vec<String>,
) {
    if out.len() >= MAX_VDIRS || depth > 8 {
        return;
    }
    let Ok(key) = snapshot.key(path) else {
        return;
    };
    if key.key_type().eq_ignore_ascii_case("IIsWebVirtualDir") {
        out.push(path.to_string());
    }
    let children: Vec<String> = key.children().map(|c| c.name().to_string()).collect();
    for child in children {
        if let Ok(next) = path.join(&child) {
            virtual_directories(snapshot, &next, depth + 1, out);
        }
    }
}

/// A key's properties, its own and inherited, as the property sheet
/// shows them.
pub fn key(sources: &Sources, path: &str) -> Answer {
    let Ok(path) = MbPath::parse(path) else {
        return refused(400, format!("'{path}' is not a metabase path"));
    };
    let snapshot = sources.files.metabase().snapshot();
    let schema = snapshot.schema();
    let key = match snapshot.key(&path) {
        Ok(k) => k,
        Err(e) => return refused(404, e),
    };
    let records = match snapshot.enum_data(&path, GetMode::Inherited) {
        Ok(r) => r,
        Err(e) => return refused(404, e),
    };
    let properties: Vec<Json> = records
        .iter()
        .map(|r| {
            let def = schema
                .property(r.id)
                .filter(|d| d.data_type() == r.data_type());
            let boolean = def.is_some_and(|d| d.schema_type == metabase::SchemaType::Bool);
            let (kind, value) = if r.is_secure() {
                ("secret", json!(null))
            } else {
                match &r.value {
                    Value::Dword(v) if boolean => ("bool", json!(*v != 0)),
                    Value::Dword(v) => ("number", json!(v)),
                    Value::String(s) | Value::ExpandSz(s) => ("string", json!(s)),
                    Value::MultiSz(items) => ("list", json!(items)),
                    Value::Binary(b) => ("binary", json!(hex::encode(b))),
                }
            };
            json!({
                "name": r.name,
                "kind": kind,
                "value": value,
                "inherited": r.inherited,
                "defined_at": r.defined_at.to_string(),
                // What the sheet may change: properties the schema knows.
                "writable": schema.property_by_name(&r.name).is_some() && kind != "binary",
            })
        })
        .collect();
    (
        200,
        json!({
            "path": path.to_string(),
            "key_type": key.key_type(),
            "properties": properties,
        }),
    )
}

/// The most properties one sheet asks for.
const MAX_SHEET: usize = 64;

/// A property sheet's tab: the named properties (and flags, such as
/// AccessRead) with the values in effect on the key, set here, inherited
/// or not set at all (`null`: the server's default applies).
pub fn sheet(sources: &Sources, query: &str) -> Answer {
    let field = |name: &str| crate::service::query_field(query, name);
    let Some(path_text) = field("path") else {
        return refused(400, "give ?path=");
    };
    let Ok(path) = MbPath::parse(&path_text) else {
        return refused(400, format!("'{path_text}' is not a metabase path"));
    };
    let names: Vec<String> = field("names")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .take(MAX_SHEET)
        .map(str::to_string)
        .collect();
    let snapshot = sources.files.metabase().snapshot();
    let schema = snapshot.schema();
    if let Err(e) = snapshot.key(&path) {
        return refused(404, e);
    }
    let properties: Vec<Json> = names
        .iter()
        .map(|name| {
            // A flag reads its property's bit.
            let (def, bit) = match schema.property_by_name(name) {
                Some(def) => (def, None),
                None => match schema.flag_by_name(name) {
                    Some((def, bit)) => (def, Some(bit)),
                    None => return json!({ "name": name, "kind": "unknown" }),
                },
            };
            let found = snapshot.get(&path, def.id, GetMode::Inherited).ok();
            let boolean = bit.is_some() || def.schema_type == metabase::SchemaType::Bool;
            let secret = def.attributes.contains(metabase::Attributes::SECURE);
            let kind = if secret {
                "secret"
            } else if boolean {
                "bool"
            } else {
                match def.data_type() {
                    metabase::DataType::Dword => "number",
                    metabase::DataType::MultiSz => "list",
                    metabase::DataType::Binary => "binary",
                    _ => "string",
                }
            };
            let value = match (&found, bit) {
                (_, _) if secret => json!(null),
                (Some(r), Some(bit)) => match r.value {
                    Value::Dword(v) => json!(v & bit != 0),
                    _ => json!(null),
                },
                (Some(r), None) => match &r.value {
                    Value::Dword(v) if boolean => json!(*v != 0),
                    Value::Dword(v) => json!(v),
                    Value::String(s) | Value::ExpandSz(s) => json!(s),
                    Value::MultiSz(items) => json!(items),
                    Value::Binary(b) => json!(hex::encode(b)),
                },
                (None, _) => json!(null),
            };
            json!({
                "name": name,
                "kind": kind,
                "value": value,
                "inherited": found.as_ref().is_some_and(|r| r.inherited),
                "defined_at": found.as_ref().map(|r| r.defined_at.to_string()),
                "default": def.default,
                "writable": kind != "binary",
            })
        })
        .collect();
    (
        200,
        json!({ "path": path.to_string(), "properties": properties }),
    )
}

/// Sets a property from its text values, as `inetsrv mb set` does.
pub fn set(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let (Some(path), Some(name), Some(values)) = (
        request["path"].as_str(),
        request["name"].as_str(),
        request["values"].as_array(),
    ) else {
        return refused(400, "give path, name and values");
    };
    let values: Vec<String> = values
        .iter()
        .map(|v| match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let Ok(key) = MbPath::parse(path) else {
        return refused(400, format!("'{path}' is not a metabase path"));
    };
    match sources
        .files
        .metabase()
        .write(|t| t.set_text(&key, name, &values))
    {
        Ok(_) => {
            tracing::info!(
                user,
                path,
                name,
                ?values,
                "management console: property set"
            );
            (200, json!({ "ok": true }))
        }
        Err(e) => {
            tracing::info!(
                user,
                path,
                name,
                "management console: a change was refused: {e}"
            );
            refused(400, e)
        }
    }
}

/// The change the activation service has applied once it returns.
async fn settle(sources: &Sources) {
    let number = sources.files.metabase().snapshot().change_number();
    sources.was.synced(number).await;
}

/// A content directory named in a request: absolute, and a directory on
/// this machine (the console runs on the server).
fn content_dir(text: &str) -> Result<String, String> {
    let dir = std::path::Path::new(text.trim());
    if !dir.is_absolute() {
        return Err(format!(
            "{}: give the directory's absolute path",
            dir.display()
        ));
    }
    was::provision::existing_directory(dir).map_err(|e| e.to_string())?;
    Ok(dir.display().to_string())
}

/// A new site: `{"name", "port", "path", "host"?, "ip"?, "pool"?}`.
pub async fn create_site(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let name = request["name"].as_str().unwrap_or("");
    let port = match &request["port"] {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else {
        return refused(400, "give the site a TCP port (1 to 65535)");
    };
    let dir = match content_dir(request["path"].as_str().unwrap_or("")) {
        Ok(d) => d,
        Err(why) => return refused(400, why),
    };
    let host = request["host"]
        .as_str()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty());
    let ip = match request["ip"]
        .as_str()
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        None => None,
        Some(text) => match text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => return refused(400, format!("'{text}' is not an IP address")),
        },
    };
    let pool = request["pool"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or("DefaultAppPool");
    let site = was::provision::NewSite {
        name,
        dir: &dir,
        binding: was::Binding {
            ip,
            port,
            host,
            secure: false,
        },
        pool,
        id: None,
        auto_start: true,
    };
    match was::provision::create_site(sources.files.metabase(), &site) {
        Ok(id) => {
            settle(sources).await;
            tracing::info!(user, id, name, "management console: site created");
            (
                200,
                json!({ "id": id, "done": format!("site {id} ({name}) created") }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// A new virtual directory: `{"site", "alias", "path", "app"?}`.
pub async fn create_vdir(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let Some(site) = request["site"].as_u64().and_then(|s| u32::try_from(s).ok()) else {
        return refused(400, "give the site's ID");
    };
    let alias = request["alias"].as_str().unwrap_or("");
    let dir = match content_dir(request["path"].as_str().unwrap_or("")) {
        Ok(d) => d,
        Err(why) => return refused(400, why),
    };
    let vdir = was::provision::NewVirtualDirectory {
        site,
        alias,
        dir: &dir,
        app: request["app"].as_bool().unwrap_or(false),
        pool: None,
    };
    match was::provision::create_virtual_directory(sources.files.metabase(), &vdir) {
        Ok(key) => {
            settle(sources).await;
            tracing::info!(user, key, "management console: virtual directory created");
            (
                200,
                json!({ "key": key, "done": format!("virtual directory {key} created") }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// Deletes a virtual directory: `{"site", "alias"}`.
pub async fn delete_vdir(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let Some(site) = request["site"].as_u64().and_then(|s| u32::try_from(s).ok()) else {
        return refused(400, "give the site's ID");
    };
    let alias = request["alias"].as_str().unwrap_or("");
    match was::provision::delete_virtual_directory(sources.files.metabase(), site, alias) {
        Ok(key) => {
            settle(sources).await;
            tracing::info!(user, key, "management console: virtual directory deleted");
            (
                200,
                json!({ "done": format!("virtual directory {key} deleted") }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// Deletes a site: `{"id"}`.
pub async fn delete_site(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let Some(id) = request["id"].as_u64().and_then(|s| u32::try_from(s).ok()) else {
        return refused(400, "give the site's ID");
    };
    match was::provision::delete_site(sources.files.metabase(), id) {
        Ok(()) => {
            settle(sources).await;
            tracing::info!(user, id, "management console: site deleted");
            (200, json!({ "done": format!("site {id} deleted") }))
        }
        Err(e) => refused(400, e),
    }
}

/// A new application pool: `{"name"}`.
pub async fn create_pool(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let name = request["name"].as_str().unwrap_or("").trim();
    let pool = was::provision::NewPool {
        name,
        identity: None,
        max_processes: None,
    };
    match was::provision::create_pool(sources.files.metabase(), &pool) {
        Ok(()) => {
            settle(sources).await;
            tracing::info!(user, name, "management console: application pool created");
            (
                200,
                json!({ "done": format!("application pool {name} created") }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// Deletes an application pool no application uses: `{"name"}`.
pub async fn delete_pool(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let name = request["name"].as_str().unwrap_or("");
    match was::provision::delete_pool(sources.files.metabase(), name) {
        Ok(name) => {
            settle(sources).await;
            tracing::info!(user, name, "management console: application pool deleted");
            (
                200,
                json!({ "done": format!("application pool {name} deleted") }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// The backups (`MetaBack/`), by name then version.
pub fn backups(sources: &Sources) -> Answer {
    match sources.files.list_backups(None) {
        Ok(list) => (
            200,
            json!({ "backups": list.iter().map(|b| json!({
                "name": b.name,
                "version": b.version,
                "modified": b.modified
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                "password_protected": b.password_protected,
            })).collect::<Vec<_>>() }),
        ),
        Err(e) => refused(500, e),
    }
}

/// Backs the configuration up: `{"name", "password"?}` (the next version).
pub async fn backup(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let name = request["name"].as_str().unwrap_or("").trim().to_string();
    let password = request["password"]
        .as_str()
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    // A whole metabase written and synced: off the runtime's threads.
    let files = sources.files.clone();
    let made = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            files.backup(
                &name,
                metabase::BackupVersion::Next,
                password.as_deref(),
                false,
            )
        })
        .await
    };
    let Ok(made) = made else {
        return refused(500, "the backup failed unexpectedly");
    };
    match made {
        Ok(info) => {
            tracing::info!(
                user,
                name,
                version = info.version,
                "management console: backed up"
            );
            (
                200,
                json!({ "done": format!("backup {} version {} made", info.name, info.version) }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// Restores a backup: `{"name", "version", "password"?}`.
pub async fn restore(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let name = request["name"].as_str().unwrap_or("").trim();
    let Some(version) = request["version"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
    else {
        return refused(400, "give the backup's version");
    };
    let password = request["password"]
        .as_str()
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let files = sources.files.clone();
    let wanted = name.to_string();
    let restored = tokio::task::spawn_blocking(move || {
        files.restore_backup(
            &wanted,
            metabase::BackupVersion::Exact(version),
            password.as_deref(),
        )
    })
    .await;
    let Ok(restored) = restored else {
        return refused(500, "the restore failed unexpectedly");
    };
    match restored {
        Ok(info) => {
            settle(sources).await;
            tracing::warn!(
                user,
                name,
                version,
                "management console: configuration restored from a backup"
            );
            (
                200,
                json!({ "done": format!("restored backup {} version {}", info.name, info.version) }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// The Web Service Extensions list, as the metabase keeps it.
fn restriction_list(sources: &Sources) -> Vec<String> {
    let snapshot = sources.files.metabase().snapshot();
    let w3svc = MbPath::parse("/LM/W3SVC").unwrap_or_default();
    match snapshot.effective(&w3svc, metabase::ids::WEB_SVC_EXT_RESTRICTION_LIST) {
        Some(Value::MultiSz(v)) => v,
        _ => Vec::new(),
    }
}

/// The Web Service Extensions (which ISAPI modules and CGI programs may
/// run), as `inetsrv webext list` gives them.
pub fn web_extensions(sources: &Sources) -> Answer {
    let raw = restriction_list(sources);
    let restrictions = worker::isapi::Restrictions::parse(&raw);
    let groups: Vec<Json> = restrictions.groups().iter().map(|g| g.to_json()).collect();
    (200, json!({ "extensions": groups }))
}

/// Allows or prohibits an extension: `{"name", "allow"}`, as `inetsrv
/// webext enable|disable NAME` does.
pub async fn set_web_extension(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let (Some(name), Some(allow)) = (request["name"].as_str(), request["allow"].as_bool()) else {
        return refused(400, "give name and allow");
    };
    let raw = restriction_list(sources);
    let mut restrictions = match worker::isapi::Restrictions::parse_to_edit(&raw) {
        Ok(r) => r,
        Err(e) => return refused(409, e),
    };
    let changed = restrictions.set_group(name, allow);
    if changed == 0 {
        return refused(404, format!("no Web Service Extension '{name}'"));
    }
    let w3svc = MbPath::parse("/LM/W3SVC").unwrap_or_default();
    let list = restrictions.to_list();
    match sources
        .files
        .metabase()
        .write(|t| t.set_text(&w3svc, "WebSvcExtRestrictionList", &list))
    {
        Ok(_) => {
            settle(sources).await;
            let verb = if allow { "allowed" } else { "prohibited" };
            tracing::info!(
                user,
                name,
                verb,
                "management console: Web Service Extension changed"
            );
            (
                200,
                json!({ "done": format!("{name}: {verb} ({changed} file(s))") }),
            )
        }
        Err(e) => refused(400, e),
    }
}

/// A site or pool command.
pub async fn command(sources: &Sources, user: &str, body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<Json>(body) else {
        return refused(400, "the body is not JSON");
    };
    let (Some(kind), Some(target), Some(verb)) = (
        request["kind"].as_str(),
        request["target"].as_str(),
        request["command"].as_str(),
    ) else {
        return refused(400, "give kind, target and command");
    };
    let done = match kind {
        "site" => {
            let Ok(id) = target.parse::<u32>() else {
                return refused(400, format!("'{target}' is not a site ID"));
            };
            let command = match verb {
                "start" => was::SiteCommand::Start,
                "stop" => was::SiteCommand::Stop,
                "pause" => was::SiteCommand::Pause,
                "continue" => was::SiteCommand::Continue,
                _ => return refused(400, format!("a site cannot {verb}")),
            };
            sources.was.site_command(id, command).await
        }
        "pool" => {
            let command = match verb {
                "start" => was::PoolCommand::Start,
                "stop" => was::PoolCommand::Stop,
                "recycle" => was::PoolCommand::Recycle,
                _ => return refused(400, format!("a pool cannot {verb}")),
            };
            sources.was.pool_command(target, command).await
        }
        _ => return refused(400, format!("no such kind of object: {kind}")),
    };
    match done {
        Ok(done) => {
            tracing::info!(user, kind, target, verb, "management console: {done}");
            (200, json!({ "done": done.to_string() }))
        }
        Err(e) => refused(409, e),
    }
}

/// The counters the live graphs draw (the page takes rates from two).
pub async fn stats(sources: &Sources) -> Answer {
    let sample = sources.sample().await;
    let service = &sample.service;
    let requests: u64 = service.verbs.iter().sum();
    (
        200,
        json!({
            "requests": requests,
            "bytes_sent": service.bytes_sent,
            "bytes_received": service.bytes_received,
            "connections": service.current_connections,
            "rejected": service.rejected,
            "sites": sample.sites.iter().map(|(id, s)| json!({
                "id": id,
                "requests": s.verbs.iter().sum::<u64>(),
                "bytes_sent": s.bytes_sent,
            })).collect::<Vec<_>>(),
            "pools": sample.pools.iter().map(|p| json!({
                "name": p.name,
                "state": p.state.to_string(),
                "queue": p.queued,
                "arrivals": p.counters.queue_arrivals,
                "rejected": p.counters.queue_rejections,
                "workers": p.workers.iter().map(|w| {
                    let (cpu, memory) = sample.usage.get(&w.pid).copied().unzip();
                    json!({
                        "pid": w.pid,
                        "active": w.active_requests,
                        "requests": w.requests,
                        "cpu_seconds": cpu,
                        "memory_bytes": memory,
                    })
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    )
}

/// The most lines a log tail gives, and the bytes read from a file's end
/// to find them.
const MAX_TAIL_LINES: usize = 200;
const TAIL_BYTES: u64 = 256 * 1024;

/// The last `lines` lines of a site's request log (`?site=N`) or of
/// HTTPERR (`?httperr`): the newest file of its directory.
pub fn log(sources: &Sources, query: &str) -> Answer {
    let field = |name: &str| crate::service::query_field(query, name);
    let lines = field("lines")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, MAX_TAIL_LINES);
    let dir = if field("httperr").is_some() {
        match sources.listener.config().error_logging_dir.clone() {
            Some(d) => d,
            None => return refused(404, "HTTPERR logging is off"),
        }
    } else {
        let Some(id) = field("site").and_then(|s| s.parse::<u32>().ok()) else {
            return refused(400, "give ?site=ID or ?httperr");
        };
        let Ok(key) = MbPath::parse(&format!("/LM/W3SVC/{id}")) else {
            return refused(400, "no such site");
        };
        let snapshot = sources.files.metabase().snapshot();
        match snapshot.get(&key, metabase::ids::LOG_FILE_DIRECTORY, GetMode::Inherited) {
            Ok(r) => match &r.value {
                Value::String(d) | Value::ExpandSz(d) => {
                    std::path::Path::new(d).join(format!("W3SVC{id}"))
                }
                _ => return refused(404, "the site has no LogFileDirectory"),
            },
            Err(e) => return refused(404, e),
        }
    };
    let newest = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .map(|e| e.path())
    });
    let Some(file) = newest else {
        return (
            200,
            json!({ "file": null, "lines": [], "directory": dir.display().to_string() }),
        );
    };
    match tail(&file, lines) {
        Ok(found) => (
            200,
            json!({ "file": file.display().to_string(), "lines": found }),
        ),
        Err(e) => refused(500, format!("{}: {e}", file.display())),
    }
}

/// The last `lines` lines of a file (read from its last [`TAIL_BYTES`]).
fn tail(path: &std::path::Path, lines: usize) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    let start = length.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    // A read from the middle of the file starts in the middle of a line.
    if start > 0 && !all.is_empty() {
        all.remove(0);
    }
    let from = all.len().saturating_sub(lines);
    Ok(all[from..].iter().map(|l| l.to_string()).collect())
}
