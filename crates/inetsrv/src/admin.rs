//! The local admin socket (`DIR/run/admin.sock`): how `inetsrv query` and
//! `inetsrv wmi` reach the WMI provider of a running server (until it is
//! served over [MS-WMI]; `mb`, `site`, `vdir`, `pool`, `webext` and
//! `fastcgi` go through the admin interfaces on the RPC socket instead).
//! The client sends its command line; the server parses and runs it
//! against its live metabase and activation service and sends back what
//! to print. Only the server's own user (and root) may connect.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use metabase::MetabaseFiles;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use was::Was;

use crate::web_cmd::Ctx;
use crate::{Cli, Command};

/// The admin socket of a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("run/admin.sock")
}

/// The answer to a client that names a metabase file other than the
/// server's.
const OTHER_METABASE: i32 = 97;

/// The longest request accepted.
const MAX_REQUEST: u64 = 64 * 1024;

/// What the server answers.
pub struct Reply {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Serves the admin socket until the task is dropped.
pub fn serve(path: &Path, files: MetabaseFiles, was: Was) -> Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} belongs to a running server", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let me = nix::unistd::geteuid().as_raw();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            };
            let allowed = stream
                .peer_cred()
                .map(|c| c.uid() == me || c.uid() == 0)
                .unwrap_or(false);
            let (files, was) = (files.clone(), was.clone());
            tokio::spawn(async move {
                let _ = connection(stream, allowed, files, was).await;
            });
        }
    }))
}

async fn connection(
    stream: UnixStream,
    allowed: bool,
    files: MetabaseFiles,
    was: Was,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let wanted = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v["metabase"].as_str().map(PathBuf::from));
    let mine = std::fs::canonicalize(&files.location().metabase)
        .unwrap_or_else(|_| files.location().metabase.clone());
    let reply = if wanted.is_some_and(|w| w != mine) {
        // The client means another metabase file in this directory: it
        // works on that file itself.
        Reply {
            code: OTHER_METABASE,
            stdout: String::new(),
            stderr: String::new(),
        }
    } else if !allowed {
        Reply {
            code: 1,
            stdout: String::new(),
            stderr: "inetsrv: error: only the server's own user may administer it\n".into(),
        }
    } else if let Some(watch) = watch_request(&line) {
        // Events stream as they happen, then the final reply.
        watch_stream(&mut write, &files, watch).await?
    } else {
        execute(&line, &files, &was).await
    };
    let text = json!({"code": reply.code, "stdout": reply.stdout, "stderr": reply.stderr})
        .to_string()
        + "\n";
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// A `wmi watch` request: (json output, query, count, timeout).
struct Watch {
    json: bool,
    query: String,
    count: Option<usize>,
    timeout: Option<f64>,
}

fn watch_request(line: &str) -> Option<Watch> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let argv: Vec<String> = v["argv"]
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let cli = Cli::try_parse_from(std::iter::once("inetsrv".to_string()).chain(argv)).ok()?;
    match cli.command {
        Command::Wmi {
            command:
                crate::wmi_cmd::WmiCommand::Watch {
                    query,
                    count,
                    timeout,
                },
        } => Some(Watch {
            json: cli.json,
            query,
            count,
            timeout,
        }),
        _ => None,
    }
}

/// One line of streamed output.
async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    field: &str,
    text: &str,
) -> std::io::Result<()> {
    let line = json!({ field: text }).to_string() + "\n";
    write.write_all(line.as_bytes()).await
}

/// `wmi watch` on the running server: events from the metabase's change
/// notifications, as they happen — volatile state (ServerState,
/// AppPoolState) included — each instance at or below a changed key
/// compared before and after the change.
async fn watch_stream(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    files: &MetabaseFiles,
    watch: Watch,
) -> std::io::Result<Reply> {
    use wmi::events::EventQuery;
    let mut old = files.metabase().snapshot();
    let query = match EventQuery::parse(&wmi::ClassModel::from_schema(old.schema()), &watch.query) {
        Ok(q) => q,
        Err(e) => {
            return Ok(Reply {
                code: 1,
                stdout: String::new(),
                stderr: format!(
                    "inetsrv: error: {:#}\n",
                    crate::wmi_cmd::with_caret(e, &watch.query)
                ),
            })
        }
    };
    let notifications = files.metabase().subscribe();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(batch) = notifications.recv() {
            if tx.send(batch).is_err() {
                break;
            }
        }
    });
    send(
        write,
        "stderr",
        "watching the running server's configuration (change notifications)\n",
    )
    .await?;
    let deadline = watch
        .timeout
        .map(|t| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(t.max(0.0)));
    let mut seen = 0usize;
    loop {
        let batch = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(b) => b,
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some(batch) = batch else { break };
        let new = files.metabase().snapshot();
        let model = wmi::ClassModel::from_schema(new.schema());
        let scope: Vec<metabase::MbPath> = batch.changes.iter().map(|c| c.path.clone()).collect();
        let events = match query.events_within(&model, &old, &new, Some(&scope)) {
            Ok(e) => e,
            Err(e) => {
                return Ok(Reply {
                    code: 1,
                    stdout: String::new(),
                    stderr: format!("inetsrv: error: {e}\n"),
                })
            }
        };
        old = new;
        for event in events {
            send(
                write,
                "stdout",
                &crate::wmi_cmd::format_event(&event, watch.json),
            )
            .await?;
            seen += 1;
            if watch.count.is_some_and(|c| seen >= c) {
                return Ok(Reply {
                    code: 0,
                    stdout: String::new(),
                    stderr: String::new(),
                });
            }
        }
    }
    Ok(Reply {
        code: 0,
        stdout: String::new(),
        stderr: String::new(),
    })
}

async fn execute(line: &str, files: &MetabaseFiles, was: &Was) -> Reply {
    let fail = |code, text: String| Reply {
        code,
        stdout: String::new(),
        stderr: text,
    };
    let argv: Vec<String> = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) => v["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => return fail(2, format!("inetsrv: error: bad admin request: {e}\n")),
    };
    let cli = match Cli::try_parse_from(std::iter::once("inetsrv".to_string()).chain(argv)) {
        Ok(cli) => cli,
        Err(e) => return fail(2, e.render().to_string()),
    };
    let mut ctx = Ctx {
        metabase: files.metabase(),
        live: Some(crate::web_cmd::Live::Local(was)),
        json: cli.json,
        out: String::new(),
    };
    let result = match &cli.command {
        Command::Query { wql } => crate::wmi_cmd::execute(
            &mut ctx.out,
            &cli,
            files,
            crate::wmi_cmd::Request::Query(wql),
        )
        .map(|_| ()),
        Command::Wmi { command } => {
            let request = crate::wmi_cmd::Request::Wmi(command);
            let writes = request.writes();
            match crate::wmi_cmd::execute(&mut ctx.out, &cli, files, request) {
                Ok(Some(action)) => server_action(was, action, &mut ctx.out).await,
                Ok(None) => {
                    if writes {
                        // In effect (in every worker) on return, as mb.
                        was.synced(files.metabase().snapshot().change_number())
                            .await;
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        _ => Err(anyhow::anyhow!(
            "this command is not served over the admin socket"
        )),
    };
    match result {
        Ok(()) => Reply {
            code: 0,
            stdout: ctx.out,
            stderr: String::new(),
        },
        Err(e) => Reply {
            code: 1,
            stdout: ctx.out,
            stderr: format!("inetsrv: error: {e:#}\n"),
        },
    }
}

/// Sends a command line to the server running on `state_dir` (on the
/// metabase file `metabase`, when given); `None` when no such server runs.
pub fn call(state_dir: &Path, argv: Vec<String>, metabase: Option<&Path>) -> Result<Option<Reply>> {
    let path = socket_path(state_dir);
    if !path.exists() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut stream = match UnixStream::connect(&path).await {
            Ok(s) => s,
            // A socket left by a server that is gone.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot reach the server at {}", path.display()))
            }
        };
        let request = json!({ "argv": argv, "metabase": metabase }).to_string() + "\n";
        stream.write_all(request.as_bytes()).await?;
        // Streamed lines ({"stdout": …} or {"stderr": …}) come first, as
        // they happen; the line with "code" ends the answer.
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Some(line) = lines.next_line().await? {
            let v: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("unreadable answer from the server: {line:?}"))?;
            if let Some(code) = v["code"].as_i64() {
                let code = code as i32;
                if code == OTHER_METABASE {
                    return Ok(None);
                }
                return Ok(Some(Reply {
                    code,
                    stdout: v["stdout"].as_str().unwrap_or("").to_string(),
                    stderr: v["stderr"].as_str().unwrap_or("").to_string(),
                }));
            }
            use std::io::Write;
            if let Some(text) = v["stdout"].as_str() {
                let mut out = std::io::stdout();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            if let Some(text) = v["stderr"].as_str() {
                eprint!("{text}");
            }
        }
        anyhow::bail!("the server closed the admin connection without an answer")
    })
}

/// A WMI method only the running service can carry out.
async fn server_action(
    was: &Was,
    action: wmi::methods::ServerAction,
    out: &mut String,
) -> anyhow::Result<()> {
    use wmi::methods::ServerAction as A;
    let result = match action {
        A::StartSite(id) => was.site_command(id, was::SiteCommand::Start).await,
        A::StopSite(id) => was.site_command(id, was::SiteCommand::Stop).await,
        A::PauseSite(id) => was.site_command(id, was::SiteCommand::Pause).await,
        A::ContinueSite(id) => was.site_command(id, was::SiteCommand::Continue).await,
        A::StartPool(name) => was.pool_command(&name, was::PoolCommand::Start).await,
        A::StopPool(name) => was.pool_command(&name, was::PoolCommand::Stop).await,
        A::RecyclePool(name) => was.pool_command(&name, was::PoolCommand::Recycle).await,
    };
    let done = result?;
    out.push_str(&done.to_string());
    out.push('\n');
    Ok(())
}
