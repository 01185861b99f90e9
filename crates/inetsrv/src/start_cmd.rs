//! `inetsrv start`: the service host. Today it hosts the configuration
//! service: it loads the state directory's metabase, applies hand edits of
//! MetaBase.xml while running, and logs every change it commits. The
//! listener, activation service and workers join it as they land.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use metabase::LockMode;

use crate::target;
use crate::Cli;

#[derive(Args, Debug)]
pub struct StartArgs {
    /// How often to look for hand edits of MetaBase.xml, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    edit_poll_ms: u64,
}

pub fn run(cli: &Cli, args: &StartArgs) -> Result<()> {
    let dir = target::state_dir(cli);
    let files = match &cli.metabase {
        Some(file) => metabase::MetabaseFiles::open_file(file, LockMode::WhileWriting)?,
        None => metabase::MetabaseFiles::open_state_dir(&dir, LockMode::WhileWriting)?,
    };
    for warning in files.load_warnings() {
        tracing::warn!(%warning, "MetaBase.xml");
    }
    let changes = files.metabase().subscribe();
    let _watcher = files.watch_edits(Duration::from_millis(args.edit_poll_ms.max(10)));
    let (major, minor) = files.version();
    tracing::info!(
        metabase = %files.location().metabase.display(),
        version = %format!("{major}.{minor}"),
        "configuration service started (HTTP serving is not part of this build yet)"
    );
    for batch in changes {
        for change in &batch.changes {
            let names: Vec<String> = change
                .ids
                .iter()
                .map(|id| files.metabase().snapshot().schema().name_of(*id))
                .collect();
            tracing::info!(
                change_number = batch.change_number,
                origin = batch.origin.as_deref().unwrap_or("write"),
                path = %change.path,
                kind = change.kind.0,
                properties = %names.join(","),
                "metabase change"
            );
        }
    }
    Ok(())
}
