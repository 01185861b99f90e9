//! `inetsrv site` (iisweb), `inetsrv vdir` (iisvdir) and `inetsrv pool`
//! (iisapp): sites, virtual directories and application pools.
//!
//! With a server running on the state directory, each verb is carried out
//! through the server's admin interfaces: the metabase change and its
//! effect (a site listening, a pool recycled) happen before the command
//! returns. Without one, the verbs that only change configuration work on
//! the metabase files, and take effect when the server starts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use iisadmin::wasctl::{LiveSite, WasControlClient};
use metabase::{MbPath, Value};
use serde_json::json;
use was::model::{ids, Binding, Model};
use was::{Done, PoolCommand, PoolStatus, SiteCommand};

use crate::mb_cmd::RemoteCopy;

/// What a verb works with: the metabase, and the activation service when
/// a server runs it.
pub struct Ctx<'a> {
    pub metabase: &'a metabase::Metabase,
    /// The running server whose metabase copy this is, when there is one.
    pub live: Option<&'a RemoteCopy<'a>>,
    pub json: bool,
    pub out: String,
}

/// A service-control status other than success, as an error.
pub(crate) fn control_status(status: u32, what: &str) -> Result<()> {
    match status {
        0 => Ok(()),
        msrpc::status::ERROR_ACCESS_DENIED => {
            bail!("{what}: access denied (the user is not an administrator of the server)")
        }
        iisadmin::wasctl::ERROR_TIMEOUT => {
            bail!("{what}: the server's activation service did not answer in time")
        }
        other => bail!("{what}: the server answered {other:#010x}"),
    }
}

/// The running server's activation service, reached through the
/// service-control interface on the copy's connection (the RPC socket
/// here, or TCP with `--server`).
impl RemoteCopy<'_> {
    async fn sites(&self) -> Result<Vec<LiveSite>> {
        let mut conn = self.session.conn.lock().await;
        let (sites, status) = WasControlClient::bind(&mut conn).await?.sites().await?;
        control_status(status, "site states")?;
        Ok(sites
            .get()
            .map(|s| s.0.iter().map(LiveSite::from).collect())
            .unwrap_or_default())
    }

    async fn pools(&self) -> Result<Vec<PoolStatus>> {
        let mut conn = self.session.conn.lock().await;
        let (pools, status) = WasControlClient::bind(&mut conn).await?.pools().await?;
        control_status(status, "application pools")?;
        Ok(pools
            .get()
            .map(|p| p.0.iter().map(PoolStatus::from).collect())
            .unwrap_or_default())
    }

    pub(crate) async fn site_command(&self, id: u32, command: SiteCommand) -> Result<Done> {
        let mut conn = self.session.conn.lock().await;
        let (outcome, status) = WasControlClient::bind(&mut conn)
            .await?
            .site_command(id, command.into())
            .await?;
        control_status(status, "site command")?;
        Ok(outcome.into_result()?)
    }

    pub(crate) async fn pool_command(&self, name: &str, command: PoolCommand) -> Result<Done> {
        let mut conn = self.session.conn.lock().await;
        let (outcome, status) = WasControlClient::bind(&mut conn)
            .await?
            .pool_command(msrpc::ndr::WString(name.to_string()), command.into())
            .await?;
        control_status(status, "application pool command")?;
        Ok(outcome.into_result()?)
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum SiteVerb {
    /// Create a site: its root serves DIR; it starts at once unless
    /// --dont-start.
    Create {
        /// The site's name (ServerComment).
        name: String,
        /// The directory the site's root serves (it must exist).
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
        /// TCP port of the binding.
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// Bind to this local IP address only.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// Host header the site answers to.
        #[arg(long)]
        host: Option<String>,
        /// Application pool of the root application.
        #[arg(long, default_value = "DefaultAppPool")]
        pool: String,
        /// Site ID (default: the next free one).
        #[arg(long)]
        id: Option<u32>,
        /// Leave the site stopped (ServerAutoStart FALSE).
        #[arg(long)]
        dont_start: bool,
    },
    /// Delete a site and everything under it.
    Delete {
        /// Site ID or name.
        site: String,
    },
    /// Start a site (it also starts with the server from now on).
    Start {
        /// Site ID or name.
        site: String,
    },
    /// Stop a site (it stays stopped across restarts).
    Stop {
        /// Site ID or name.
        site: String,
    },
    /// Pause a running site: its requests get 503 until `continue`.
    Pause {
        /// Site ID or name.
        site: String,
    },
    /// Resume a paused site.
    Continue {
        /// Site ID or name.
        site: String,
    },
    /// List sites with their state, bindings and root directory.
    List,
    /// Add a binding (IP:port:host) to a site; `https :443:` (or
    /// --secure) adds a secure binding (SecureBindings), served with the
    /// site's SSLCertHash.
    Bind {
        /// Site ID or name.
        site: String,
        /// `:8081:`, `127.0.0.1:80:`, `:80:www.example.com`, `https :443:`.
        binding: String,
        /// A secure (https) binding.
        #[arg(long)]
        secure: bool,
    },
    /// Remove a binding from a site.
    Unbind {
        /// Site ID or name.
        site: String,
        /// The binding as `site list` shows it, e.g. `:8081:` or `https :8443:`.
        binding: String,
        /// A secure (https) binding.
        #[arg(long)]
        secure: bool,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum VdirVerb {
    /// Create a virtual directory ALIAS in SITE serving DIR.
    Create {
        /// Site ID or name.
        site: String,
        /// URL path under the site, e.g. `docs` or `docs/2026`.
        alias: String,
        /// The directory it serves.
        path: PathBuf,
        /// Make it an application (its own AppRoot).
        #[arg(long)]
        app: bool,
        /// The application's pool (with --app; default: inherited).
        #[arg(long, requires = "app")]
        pool: Option<String>,
    },
    /// Delete a virtual directory.
    Delete {
        /// Site ID or name.
        site: String,
        /// The virtual directory's URL path under the site.
        alias: String,
    },
    /// List a site's virtual directories.
    List {
        /// Site ID or name.
        site: String,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum PoolVerb {
    /// Create an application pool.
    Create {
        /// The pool's name: its key under /LM/W3SVC/AppPools.
        name: String,
        /// LocalSystem, LocalService, NetworkService (default), or a Unix
        /// user name (SpecifiedUser).
        #[arg(long)]
        identity: Option<String>,
        /// Worker processes (a web garden when more than 1).
        #[arg(long)]
        max_processes: Option<u32>,
    },
    /// Delete an application pool no application uses.
    Delete {
        /// The pool's name.
        name: String,
    },
    /// Start a pool (also after rapid-fail protection stopped it).
    Start {
        /// The pool's name.
        name: String,
    },
    /// Stop a pool: its workers finish their requests and exit; its
    /// requests get 503 (or a dropped connection, LoadBalancerCapabilities 1).
    Stop {
        /// The pool's name.
        name: String,
    },
    /// Replace a pool's worker processes (overlapped unless
    /// DisallowOverlappingRotation): no request is lost.
    Recycle {
        /// The pool's name.
        name: String,
    },
    /// List pools with their worker processes (PIDs).
    List,
}

impl SiteVerb {
    pub fn writes(&self) -> bool {
        !matches!(self, SiteVerb::List)
    }
}

impl VdirVerb {
    pub fn writes(&self) -> bool {
        !matches!(self, VdirVerb::List { .. })
    }
}

impl PoolVerb {
    pub fn writes(&self) -> bool {
        !matches!(self, PoolVerb::List)
    }
}

fn p(text: &str) -> MbPath {
    MbPath::parse(text).unwrap_or_default()
}

fn args(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

impl Ctx<'_> {
    fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    fn model(&self) -> Model {
        Model::read(&self.metabase.snapshot())
    }

    /// A site by ID, `W3SVC/ID`, or name (ServerComment).
    fn site_id(&self, site: &str) -> Result<u32> {
        let model = self.model();
        let trimmed = site.trim_start_matches("/LM/").trim_start_matches("W3SVC/");
        if let Ok(id) = trimmed.parse::<u32>() {
            if model.sites.contains_key(&id) {
                return Ok(id);
            }
        }
        let named: Vec<u32> = model
            .sites
            .values()
            .filter(|s| s.comment.eq_ignore_ascii_case(site))
            .map(|s| s.id)
            .collect();
        match named.as_slice() {
            [id] => Ok(*id),
            [] => bail!("no site '{site}' (give its ID or name; `inetsrv site list` shows them)"),
            _ => bail!("several sites are named '{site}': give the ID"),
        }
    }

    /// Waits until the running server has applied what was just written
    /// (a remote one: once it is made there).
    async fn settle(&self) -> Result<()> {
        match self.live {
            Some(live) => live.settle().await,
            None => Ok(()),
        }
    }

    /// A content directory a verb names: absolute, and a directory here;
    /// on another server (`--server`) absolute, and that server's to check.
    fn content_dir(&self, path: &Path) -> Result<PathBuf> {
        if self.live.is_some_and(|copy| !copy.on_this_machine) {
            if !path.is_absolute() {
                bail!(
                    "{}: give the directory's absolute path on the server",
                    path.display()
                );
            }
            return Ok(path.to_path_buf());
        }
        let dir = absolute(path)?;
        was::provision::existing_directory(&dir)?;
        Ok(dir)
    }

    fn write(&self, f: impl FnOnce(&mut metabase::Txn) -> metabase::Result<()>) -> Result<()> {
        self.metabase.write(f)?;
        Ok(())
    }
}

pub async fn site(ctx: &mut Ctx<'_>, verb: &SiteVerb) -> Result<()> {
    match verb {
        SiteVerb::Create {
            name,
            path,
            port,
            ip,
            host,
            pool,
            id,
            dont_start,
        } => {
            let binding = Binding {
                ip: *ip,
                port: *port,
                host: host.as_ref().map(|h| h.to_ascii_lowercase()),
                secure: false,
            };
            let dir = ctx.content_dir(path)?;
            let dir_text = dir.display().to_string();
            let id = was::provision::create_site(
                ctx.metabase,
                &was::provision::NewSite {
                    name,
                    dir: &dir_text,
                    binding: binding.clone(),
                    pool,
                    id: *id,
                    auto_start: !*dont_start,
                },
            )?;
            ctx.settle().await?;
            ctx.line(format!(
                "site {id} ({name}) created: {} serves {}",
                binding.prefix("/"),
                dir.display()
            ));
            report_site_error(ctx, id).await
        }
        SiteVerb::Delete { site } => {
            let id = ctx.site_id(site)?;
            was::provision::delete_site(ctx.metabase, id)?;
            ctx.settle().await?;
            ctx.line(format!("site {id} deleted"));
            Ok(())
        }
        SiteVerb::Start { site } | SiteVerb::Stop { site } => {
            let id = ctx.site_id(site)?;
            let start = matches!(verb, SiteVerb::Start { .. });
            // IIS keeps a stopped site stopped across restarts.
            ctx.write(|t| {
                t.set_text(
                    &p(&format!("/LM/W3SVC/{id}")),
                    "ServerAutoStart",
                    &args(&[if start { "TRUE" } else { "FALSE" }]),
                )
            })?;
            ctx.settle().await?;
            match ctx.live {
                Some(live) => {
                    let command = if start {
                        SiteCommand::Start
                    } else {
                        SiteCommand::Stop
                    };
                    let done = live.site_command(id, command).await?;
                    ctx.line(done.to_string());
                }
                None => ctx.line(format!(
                    "site {id} will {} when the server starts (no server is running)",
                    if start { "start" } else { "stay stopped" }
                )),
            }
            Ok(())
        }
        SiteVerb::Pause { site } | SiteVerb::Continue { site } => {
            let id = ctx.site_id(site)?;
            let Some(live) = ctx.live else {
                bail!("no server is running on this state directory: only a running site can be paused or continued");
            };
            let command = if matches!(verb, SiteVerb::Pause { .. }) {
                SiteCommand::Pause
            } else {
                SiteCommand::Continue
            };
            let done = live.site_command(id, command).await?;
            ctx.line(done.to_string());
            Ok(())
        }
        SiteVerb::Bind {
            site,
            binding,
            secure,
        }
        | SiteVerb::Unbind {
            site,
            binding,
            secure,
        } => {
            let id = ctx.site_id(site)?;
            let mut parsed = Binding::parse_label(binding).map_err(|e| anyhow!(e))?;
            parsed.secure |= *secure;
            let label = parsed.label();
            let model = ctx.model();
            // ServerBindings or SecureBindings, whichever the binding is.
            let mut bindings: Vec<Binding> = model.sites[&id]
                .bindings
                .iter()
                .filter(|b| b.secure == parsed.secure)
                .cloned()
                .collect();
            let adding = matches!(verb, SiteVerb::Bind { .. });
            if adding {
                if let Some(other) = model.sites.values().find(|s| s.bindings.contains(&parsed)) {
                    bail!(
                        "binding {label} is used by site {} ({})",
                        other.id,
                        other.comment
                    );
                }
                bindings.push(parsed.clone());
            } else {
                let before = bindings.len();
                bindings.retain(|b| *b != parsed);
                if bindings.len() == before {
                    bail!("site {id} has no binding {label}");
                }
            }
            let texts: Vec<String> = bindings.iter().map(|b| b.to_string()).collect();
            let property = if parsed.secure {
                ids::SECURE_BINDINGS
            } else {
                ids::SERVER_BINDINGS
            };
            ctx.write(|t| {
                t.set(
                    &p(&format!("/LM/W3SVC/{id}")),
                    property,
                    Value::MultiSz(texts),
                )
            })?;
            ctx.settle().await?;
            ctx.line(format!(
                "site {id}: {} {label}",
                if adding {
                    "added binding"
                } else {
                    "removed binding"
                }
            ));
            report_site_error(ctx, id).await
        }
        SiteVerb::List => {
            let model = ctx.model();
            let live = match ctx.live {
                Some(live) => Some(live.sites().await?),
                None => None,
            };
            let snapshot = ctx.metabase.snapshot();
            let rows: Vec<serde_json::Value> = model
                .sites
                .values()
                .map(|s| {
                    let status = live.as_ref().and_then(|l| l.iter().find(|x| x.id == s.id));
                    let state = match status {
                        Some(st) => st.state.to_string(),
                        None => "not running".to_string(),
                    };
                    let root = snapshot
                        .effective(&p(&format!("/LM/W3SVC/{}/ROOT", s.id)), ids::PATH)
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    json!({
                        "id": s.id,
                        "name": s.comment,
                        "state": state,
                        "auto_start": s.auto_start,
                        "bindings": s.bindings.iter().map(|b| b.label()).collect::<Vec<_>>(),
                        "path": root,
                        "apps": s.apps,
                        "error": status.and_then(|st| st.error.clone()),
                        "content_problem": status.and_then(|st| st.content_problem.clone()),
                    })
                })
                .collect();
            if ctx.json {
                ctx.out = serde_json::to_string_pretty(&rows)? + "\n";
                return Ok(());
            }
            ctx.line(format!(
                "{:<5} {:<24} {:<12} {:<28} PATH",
                "ID", "NAME", "STATE", "BINDINGS"
            ));
            for r in &rows {
                let bindings: Vec<&str> = r["bindings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.as_str())
                    .collect();
                let mut line = String::new();
                let _ = write!(
                    line,
                    "{:<5} {:<24} {:<12} {:<28} {}",
                    r["id"].as_u64().unwrap_or(0),
                    r["name"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    bindings.join(","),
                    r["path"].as_str().unwrap_or("")
                );
                if let Some(e) = r["error"].as_str() {
                    let _ = write!(line, "  ({e})");
                }
                ctx.line(line);
                if let Some(problem) = r["content_problem"].as_str() {
                    ctx.line(format!("      warning: {problem}"));
                }
            }
            Ok(())
        }
    }
}

async fn report_site_error(ctx: &mut Ctx<'_>, id: u32) -> Result<()> {
    if let Some(live) = ctx.live {
        if let Some(site) = live.sites().await?.into_iter().find(|s| s.id == id) {
            if let Some(error) = site.error {
                bail!("site {id} cannot start: {error}");
            }
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

fn alias_path(id: u32, alias: &str) -> Result<(String, Vec<String>)> {
    Ok(was::provision::alias_path(id, alias)?)
}

pub async fn vdir(ctx: &mut Ctx<'_>, verb: &VdirVerb) -> Result<()> {
    match verb {
        VdirVerb::Create {
            site,
            alias,
            path,
            app,
            pool,
        } => {
            let id = ctx.site_id(site)?;
            let (_, parts) = alias_path(id, alias)?;
            let dir = ctx.content_dir(path)?;
            let dir_text = dir.display().to_string();
            was::provision::create_virtual_directory(
                ctx.metabase,
                &was::provision::NewVirtualDirectory {
                    site: id,
                    alias,
                    dir: &dir_text,
                    app: *app,
                    pool: pool.as_deref(),
                },
            )?;
            ctx.settle().await?;
            ctx.line(format!(
                "virtual directory /{} of site {id} created: serves {}{}",
                parts.join("/"),
                dir.display(),
                if *app { " (an application)" } else { "" }
            ));
            Ok(())
        }
        VdirVerb::Delete { site, alias } => {
            let id = ctx.site_id(site)?;
            let (_, parts) = alias_path(id, alias)?;
            was::provision::delete_virtual_directory(ctx.metabase, id, alias)?;
            ctx.settle().await?;
            ctx.line(format!(
                "virtual directory /{} of site {id} deleted",
                parts.join("/")
            ));
            Ok(())
        }
        VdirVerb::List { site } => {
            let id = ctx.site_id(site)?;
            let snapshot = ctx.metabase.snapshot();
            let root = p(&format!("/LM/W3SVC/{id}/ROOT"));
            let mut rows = Vec::new();
            let base = root.depth();
            let _ = snapshot.walk(&root, |path, key| {
                if !key.key_type().eq_ignore_ascii_case("IIsWebVirtualDir") {
                    return;
                }
                let url = format!("/{}", path.parts()[base..].join("/"));
                let physical = key
                    .property(ids::PATH)
                    .and_then(|v| v.value.as_str().map(str::to_string))
                    .unwrap_or_default();
                let app = key
                    .property(ids::APP_ROOT)
                    .and_then(|v| v.value.as_str())
                    .is_some_and(|v| !v.is_empty());
                let pool = snapshot
                    .effective(path, ids::APP_POOL_ID)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                rows.push(
                    json!({"alias": url, "path": physical, "application": app, "pool": pool}),
                );
            });
            if ctx.json {
                ctx.out = serde_json::to_string_pretty(&rows)? + "\n";
                return Ok(());
            }
            ctx.line(format!("{:<30} {:<6} {:<20} PATH", "ALIAS", "APP", "POOL"));
            for r in rows {
                ctx.line(format!(
                    "{:<30} {:<6} {:<20} {}",
                    r["alias"].as_str().unwrap_or(""),
                    if r["application"].as_bool().unwrap_or(false) {
                        "yes"
                    } else {
                        "no"
                    },
                    r["pool"].as_str().unwrap_or(""),
                    r["path"].as_str().unwrap_or("")
                ));
            }
            Ok(())
        }
    }
}

/// AppPoolIdentityType and WAMUserName for an --identity value; any
/// other name must be a Unix user of this machine (a `DOMAIN\\` prefix is
/// ignored, as the service ignores it).
fn identity(text: &str) -> Result<(u32, Option<&str>)> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "localsystem" => (0, None),
        "localservice" => (1, None),
        "networkservice" => (2, None),
        _ => {
            let user = text.rsplit('\\').next().unwrap_or("").trim();
            if !matches!(nix::unistd::User::from_name(user), Ok(Some(_))) {
                bail!(
                    "'{text}' is not an identity: give LocalSystem, LocalService, NetworkService or the name of a Unix user of this machine"
                );
            }
            (3, Some(text))
        }
    })
}

pub async fn pool(ctx: &mut Ctx<'_>, verb: &PoolVerb) -> Result<()> {
    match verb {
        PoolVerb::Create {
            name,
            identity: who,
            max_processes,
        } => {
            let who = who.as_deref().map(identity).transpose()?;
            was::provision::create_pool(
                ctx.metabase,
                &was::provision::NewPool {
                    name,
                    identity: who,
                    max_processes: *max_processes,
                },
            )?;
            ctx.settle().await?;
            ctx.line(format!("application pool {name} created"));
            Ok(())
        }
        PoolVerb::Delete { name } => {
            let name = was::provision::delete_pool(ctx.metabase, name)?;
            ctx.settle().await?;
            ctx.line(format!("application pool {name} deleted"));
            Ok(())
        }
        PoolVerb::Start { name } | PoolVerb::Stop { name } => {
            let model = ctx.model();
            let Some(settings) = model.pool(name) else {
                bail!("no application pool '{name}'");
            };
            let start = matches!(verb, PoolVerb::Start { .. });
            let key = p("/LM/W3SVC/AppPools").join(&settings.name)?;
            ctx.write(|t| {
                t.set(
                    &key,
                    ids::APP_POOL_AUTO_START,
                    Value::Dword(u32::from(start)),
                )
            })?;
            ctx.settle().await?;
            match ctx.live {
                Some(live) => {
                    let command = if start {
                        PoolCommand::Start
                    } else {
                        PoolCommand::Stop
                    };
                    let done = live.pool_command(&settings.name, command).await?;
                    ctx.line(done.to_string());
                }
                None => ctx.line(format!(
                    "application pool {} will {} when the server starts (no server is running)",
                    settings.name,
                    if start { "start" } else { "stay stopped" }
                )),
            }
            Ok(())
        }
        PoolVerb::Recycle { name } => {
            let Some(live) = ctx.live else {
                bail!("no server is running on this state directory: there is nothing to recycle");
            };
            let done = live.pool_command(name, PoolCommand::Recycle).await?;
            ctx.line(done.to_string());
            Ok(())
        }
        PoolVerb::List => {
            let model = ctx.model();
            let rows: Vec<serde_json::Value> = match ctx.live {
                Some(live) => live
                    .pools()
                    .await?
                    .into_iter()
                    .map(|s| serde_json::to_value(s).unwrap_or_default())
                    .collect(),
                None => model
                    .pools
                    .values()
                    .map(|s| json!({"name": s.name, "state": "not running", "reason": null, "workers": [], "queued": 0, "recent_failures": 0, "last_failure": null}))
                    .collect(),
            };
            if ctx.json {
                ctx.out = serde_json::to_string_pretty(&rows)? + "\n";
                return Ok(());
            }
            ctx.line(format!(
                "{:<24} {:<12} WORKER PROCESSES (PID state requests-at-last-ping user)",
                "POOL", "STATE"
            ));
            for r in rows {
                let workers: Vec<String> = r["workers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| {
                        format!(
                            "{} {} {} {}",
                            w["pid"].as_u64().unwrap_or(0),
                            w["state"].as_str().unwrap_or(""),
                            w["requests"].as_u64().unwrap_or(0),
                            w["user"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                let mut line = format!(
                    "{:<24} {:<12} {}",
                    r["name"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    if workers.is_empty() {
                        "-".to_string()
                    } else {
                        workers.join("; ")
                    }
                );
                if let Some(reason) = r["reason"].as_str() {
                    let _ = write!(line, "  ({reason})");
                } else if let Some(failure) = r["last_failure"].as_str() {
                    let _ = write!(line, "  (last failure: {failure})");
                }
                ctx.line(line);
            }
            Ok(())
        }
    }
}

/// A `site`, `vdir` or `pool` verb.
#[derive(Clone, Copy)]
pub enum Verb<'a> {
    Site(&'a SiteVerb),
    Vdir(&'a VdirVerb),
    Pool(&'a PoolVerb),
}

impl Verb<'_> {
    /// Runs the verb with `ctx`.
    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<()> {
        match self {
            Verb::Site(v) => site(ctx, v).await,
            Verb::Vdir(v) => vdir(ctx, v).await,
            Verb::Pool(v) => pool(ctx, v).await,
        }
    }
}

/// `inetsrv site|vdir|pool … --server HOST`: the verb runs on a copy of the
/// remote metabase (see `mb_cmd::with_remote_copy`) with the server's
/// activation service behind it (the service-control interface): what it
/// writes is made on the server through IMSAdminBaseW before it waits for
/// the change to take effect or commands a site or pool, so it prints
/// and refuses what it does locally.
pub fn run_remote(cli: &crate::Cli, target: &crate::rpc_cmd::Target, verb: Verb<'_>) -> Result<()> {
    let mut out = String::new();
    let result = crate::mb_cmd::with_remote_copy(cli, target, async |copy: &RemoteCopy<'_>| {
        let mut ctx = Ctx {
            metabase: &copy.metabase,
            live: Some(copy),
            json: cli.json,
            out: String::new(),
        };
        let done = verb.run(&mut ctx).await;
        // What the verb wrote before it failed stays written, as locally.
        let pushed = copy.push().await;
        out = ctx.out;
        done.and(pushed.map(|_| ()))
    });
    print!("{out}");
    result
}
