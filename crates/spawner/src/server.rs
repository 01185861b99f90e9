//! The helper process: one thread, polling its control socket and a
//! signalfd for SIGCHLD.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use crate::view::View;
use crate::{wire, Exit, FromSpawner, Identity, Program, Stdio, ToSpawner, SOCKET_BUFFER};

/// Runs the helper over `control` (its standard input, as the worker
/// started it) until the worker goes; then stops the programs it started
/// and removes what it made.
pub fn serve(control: OwnedFd) -> Result<(), String> {
    // SIGTERM (the worker's end, as its parent-death signal) stops it
    // in order, as the socket's end does.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .map_err(|e| format!("blocking SIGCHLD and SIGTERM: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let mut helper = Helper::default();
    let mut buffer = vec![0u8; SOCKET_BUFFER];
    let result = loop {
        let (control_ready, signalled) = {
            let mut fds = [
                PollFd::new(control.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            // SIGCHLD reaches the signalfd only where every thread blocks
            // it (the helper has one; a test's thread is not alone): a
            // periodic look finds ends it missed.
            match poll(&mut fds, PollTimeout::from(250u16)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => break Err(format!("poll: {e}")),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if signalled {
            let mut terminate = false;
            while let Ok(Some(info)) = signals.read_signal() {
                terminate |= info.ssi_signo == Signal::SIGTERM as u32;
            }
            if terminate {
                break Ok(());
            }
        }
        helper.reap(&control);
        if control_ready {
            match wire::recv(control.as_fd(), &mut buffer) {
                Ok(Some((n, fds))) => match postcard::from_bytes::<ToSpawner>(&buffer[..n]) {
                    Ok(message) => helper.handle(&control, message, fds),
                    Err(e) => break Err(format!("an unreadable request: {e}")),
                },
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("reading the control socket: {e}")),
            }
        }
    };
    helper.stop_all();
    result
}

#[derive(Default)]
struct Helper {
    /// `None` until Setup; then who programs run as (`Some(None)`: as
    /// the helper itself).
    identity: Option<Option<Target>>,
    children: HashSet<u32>,
    /// The Unix sockets made for programs still running, removed when
    /// they end (a pool that replaces its processes would leave many).
    sockets: std::collections::HashMap<u32, PathBuf>,
    view: Option<View>,
    /// Where listening Unix sockets go: a directory only the identity
    /// may enter.
    socket_dir: Option<PathBuf>,
}

/// An identity resolved to what the child's switch needs, prepared before
/// the fork (nothing is allocated between fork and exec).
#[derive(Clone)]
struct Target {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

impl Helper {
    fn handle(&mut self, control: &OwnedFd, message: ToSpawner, fds: Vec<OwnedFd>) {
        match message {
            ToSpawner::Setup { identity } => self.setup(identity),
            ToSpawner::Spawn { id, program } => {
                let reply = match self.spawn(id, &program, fds) {
                    Ok((pid, address)) => {
                        self.children.insert(pid);
                        if program.stdin == Stdio::ListenUnix {
                            if let Some(path) = &address {
                                self.sockets.insert(pid, PathBuf::from(path));
                            }
                        }
                        FromSpawner::Spawned { id, pid, address }
                    }
                    Err(error) => FromSpawner::Failed {
                        id,
                        error: format!("{}: {error}", program.path.display()),
                    },
                };
                reply_to(control, &reply);
            }
            ToSpawner::Signal { pid, signal } => {
                // Only programs of its own, and their process groups.
                if self.children.contains(&pid) {
                    if let Ok(signal) = Signal::try_from(signal) {
                        let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), signal);
                    }
                }
            }
        }
    }

    fn setup(&mut self, identity: Option<Identity>) {
        let target = identity.and_then(|id| {
            let uid = Uid::from_raw(id.uid);
            if uid == Uid::effective() {
                return None;
            }
            let gid = Gid::from_raw(id.gid);
            let groups = std::ffi::CString::new(id.name.as_str())
                .ok()
                .and_then(|name| nix::unistd::getgrouplist(&name, gid).ok())
                .unwrap_or_else(|| vec![gid]);
            Some(Target { uid, gid, groups })
        });
        if let Some(t) = &target {
            if Uid::effective().is_root() {
                match View::new(t.uid, t.gid, t.groups.clone()) {
                    Ok(view) => self.view = Some(view),
                    Err(e) => {
                        tracing::warn!(error = %e, "no mount namespace for CGI and FastCGI programs; content the identity cannot reach will not be found")
                    }
                }
            }
        }
        self.socket_dir = make_socket_dir(target.as_ref());
        self.identity = Some(target);
    }

    fn spawn(
        &mut self,
        id: u64,
        program: &Program,
        fds: Vec<OwnedFd>,
    ) -> Result<(u32, Option<String>), String> {
        let Some(target) = self.identity.clone() else {
            return Err("the launcher has not been set up".into());
        };
        if let Some(view) = &mut self.view {
            for dir in &program.reach {
                if let Err(e) = view.reach(dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot make a directory reachable for the pool's identity");
                }
            }
        }
        let mut passed = fds.into_iter();
        let mut next_passed = || {
            passed
                .next()
                .ok_or_else(|| "a descriptor is missing from the request".to_string())
        };
        let mut command = std::process::Command::new(&program.path);
        command
            .args(&program.args)
            .env_clear()
            .envs(program.env.iter().map(|(k, v)| (k, v)))
            .process_group(0);
        if let Some(cwd) = &program.cwd {
            command.current_dir(cwd);
        }
        let mut address = None;
        match program.stdin {
            Stdio::Passed => {
                command.stdin(next_passed()?);
            }
            Stdio::Null => {
                command.stdin(std::process::Stdio::null());
            }
            Stdio::ListenUnix => {
                let dir = self
                    .socket_dir
                    .as_ref()
                    .ok_or("no directory for its socket")?;
                let path = dir.join(format!("app-{id}.sock"));
                let _ = std::fs::remove_file(&path);
                let listener = std::os::unix::net::UnixListener::bind(&path)
                    .map_err(|e| format!("binding {}: {e}", path.display()))?;
                if let Some(t) = &target {
                    let _ = nix::unistd::chown(&path, Some(t.uid), Some(t.gid));
                }
                address = Some(path.display().to_string());
                command.stdin(OwnedFd::from(listener));
            }
            Stdio::ListenTcp => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")
                    .map_err(|e| format!("binding a loopback port: {e}"))?;
                address = Some(
                    listener
                        .local_addr()
                        .map_err(|e| e.to_string())?
                        .to_string(),
                );
                command.stdin(OwnedFd::from(listener));
            }
        }
        for (which, stdio) in [(1, program.stdout), (2, program.stderr)] {
            let value = match stdio {
                Stdio::Passed => std::process::Stdio::from(next_passed()?),
                _ => std::process::Stdio::null(),
            };
            if which == 1 {
                command.stdout(value);
            } else {
                command.stderr(value);
            }
        }
        let switch = target.clone();
        // SAFETY: runs in the child between fork and exec; it only makes
        // system calls (setgroups, setgid, setuid, prctl) with what was
        // prepared before the fork, allocating nothing.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                if let Some(t) = &switch {
                    nix::unistd::setgroups(&t.groups)?;
                    nix::unistd::setgid(t.gid)?;
                    nix::unistd::setuid(t.uid)?;
                }
                nix::sys::prctl::set_no_new_privs()?;
                // Set after the identity change, which clears it.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| e.to_string())?;
        Ok((child.id(), address))
    }

    /// Reports every program of its own that has ended (by pid: what
    /// else runs in this process is not its business).
    fn reap(&mut self, control: &OwnedFd) {
        let ended: Vec<(u32, Exit)> = self
            .children
            .iter()
            .filter_map(|&pid| {
                match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => Some((pid, Exit::Code(code))),
                    Ok(WaitStatus::Signaled(_, signal, _)) => {
                        Some((pid, Exit::Signal(signal as i32)))
                    }
                    Err(_) => Some((pid, Exit::Unknown)),
                    Ok(_) => None,
                }
            })
            .collect();
        for (pid, exit) in ended {
            self.children.remove(&pid);
            if let Some(socket) = self.sockets.remove(&pid) {
                let _ = std::fs::remove_file(socket);
            }
            reply_to(control, &FromSpawner::Exited { pid, exit });
        }
    }

    /// The worker has gone: its programs go too (SIGTERM, then SIGKILL
    /// to those still there a second later).
    fn stop_all(&mut self) {
        for pid in &self.children {
            let _ = nix::sys::signal::killpg(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !self.children.is_empty() && std::time::Instant::now() < deadline {
            self.children.retain(|&pid| {
                matches!(
                    waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive)
                )
            });
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for pid in &self.children {
            let _ = nix::sys::signal::killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        if let Some(dir) = &self.socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn reply_to(control: &OwnedFd, reply: &FromSpawner) {
    if let Ok(bytes) = postcard::to_stdvec(reply) {
        let _ = wire::send(control.as_fd(), &bytes, &[]);
    }
}

/// A private directory for listening sockets, owned by the identity.
fn make_socket_dir(target: Option<&Target>) -> Option<PathBuf> {
    let dir = nix::unistd::mkdtemp("/tmp/inetsrv-fcgi-XXXXXX").ok()?;
    if let Some(t) = target {
        if nix::unistd::chown(&dir, Some(t.uid), Some(t.gid)).is_err() {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
    }
    Some(dir)
}
