//! Worker processes: how one is started (its program, arguments and
//! control socket), which account a pool identity is, what a worker's
//! memory use is, and how it is killed.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use worker_control::{FromWorker, ToWorker};

/// How to run `inetsrv worker`.
#[derive(Clone, Debug)]
pub struct WorkerProgram {
    pub program: PathBuf,
    /// Arguments before the worker's own (`["worker"]`).
    pub args: Vec<String>,
}

/// The Unix account a worker runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Whether this process may start workers as other users.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Why a pool identity has no account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("AppPoolIdentityType is 3 (SpecifiedUser) but WAMUserName is empty")]
    NoUserName,
    #[error("AppPoolIdentityType {0} is not 0 to 3")]
    UnknownType(u32),
    #[error("there is no Unix user '{0}' for the pool identity")]
    NoSuchUser(String),
}

/// The account of a pool identity (AppPoolIdentityType): LocalSystem is
/// root, LocalService `nobody`, NetworkService `www-data` (or `nobody`
/// where there is none), SpecifiedUser the Unix user named by WAMUserName
/// (a `DOMAIN\` prefix is ignored).
pub fn account_for(identity_type: u32, wam_user: &str) -> Result<Account, IdentityError> {
    let name = match identity_type {
        0 => "root".to_string(),
        1 => "nobody".to_string(),
        2 => {
            if nix::unistd::User::from_name("www-data")
                .ok()
                .flatten()
                .is_some()
            {
                "www-data".to_string()
            } else {
                "nobody".to_string()
            }
        }
        3 => {
            let user = wam_user
                .rsplit('\\')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if user.is_empty() {
                return Err(IdentityError::NoUserName);
            }
            user
        }
        other => return Err(IdentityError::UnknownType(other)),
    };
    match nix::unistd::User::from_name(&name) {
        Ok(Some(user)) => Ok(Account {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }),
        _ => Err(IdentityError::NoSuchUser(name)),
    }
}

/// A worker's PATH (it runs no shell; CGI programs get their own).
const WORKER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The service's variables a worker inherits: its log filter, and the
/// hooks the test suite uses to make a worker misbehave.
const PASSED_ENV: [&str; 2] = ["INETSRV_LOG", "INETSRV_TEST_STALL_WORKER_START"];

/// A started worker: its pid, the channel to it, and the child.
pub struct Spawned {
    pub pid: u32,
    pub to_worker: worker_control::Sender<ToWorker>,
    pub child: Child,
}

/// What a worker needs to know to start; the rest comes over its
/// control channel ([`crate::handover`]).
pub struct Launch<'a> {
    pub program: &'a WorkerProgram,
    pub pool: &'a str,
}

/// Starts a worker with the service's own rights (it becomes its pool's
/// identity itself, once handed what it needs) and its control channel,
/// a socket, as its standard input. Messages it sends arrive on
/// `from_worker` tagged with `id`; the channel closing ends them.
pub fn spawn<T: Send + 'static>(
    launch: &Launch<'_>,
    id: u64,
    from_worker: mpsc::UnboundedSender<T>,
    wrap: fn(u64, FromWorker) -> T,
) -> std::io::Result<Spawned> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut cmd = Command::new(&launch.program.program);
    // A clean environment: the pool's name and what the service's own
    // logging and test hooks say, nothing else of the service's (or of the
    // shell that started it).
    cmd.env_clear()
        .env("PATH", WORKER_PATH)
        .env("APP_POOL_ID", launch.pool);
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.args(&launch.program.args)
        .arg("--pool")
        .arg(launch.pool)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        // Read by the service and written to its log, by pool and pid.
        .stderr(Stdio::piped())
        // Its own process group: Ctrl-C at the service's terminal reaches
        // the service, which then stops the workers in order.
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let (to_worker, mut inbox) = worker_control::channel::<ToWorker, FromWorker>(
        quietsock::QuietUnixStream::from_std(ours)?,
    );
    tokio::spawn(async move {
        while let Some(received) = inbox.recv().await {
            if from_worker.send(wrap(id, received.message)).is_err() {
                break;
            }
        }
    });
    Ok(Spawned {
        pid,
        to_worker,
        child,
    })
}

/// Kills a process outright (a hung worker, or one past its shutdown
/// time limit).
pub fn kill(pid: u32) {
    if pid == 0 {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A process's memory in kilobytes: (virtual, private). Private is the
/// resident anonymous memory plus what is swapped out.
pub fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some((field("VmSize:"), field("RssAnon:") + field("VmSwap:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_map_to_accounts() {
        assert_eq!(account_for(0, "").unwrap().uid, 0);
        assert_eq!(account_for(1, "").unwrap().name, "nobody");
        let network = account_for(2, "").unwrap();
        assert!(network.name == "www-data" || network.name == "nobody");
        assert_eq!(account_for(3, "DOMAIN\\root").unwrap().uid, 0);
        assert_eq!(account_for(3, ""), Err(IdentityError::NoUserName));
        assert_eq!(
            account_for(3, "no-such-user-here"),
            Err(IdentityError::NoSuchUser("no-such-user-here".into()))
        );
        assert_eq!(account_for(9, ""), Err(IdentityError::UnknownType(9)));
    }

    #[test]
    fn memory_of_this_process() {
        let (virt, private) = memory_kb(std::process::id()).unwrap();
        assert!(virt > 0 && private > 0 && virt >= private);
        assert!(memory_kb(u32::MAX).is_none());
    }
}
