use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use super::*;

/// A launcher served by a thread of this process, ended (its socket
/// directory removed) when the test is done with it.
struct Local {
    spawner: Spawner,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl std::ops::Deref for Local {
    type Target = Spawner;
    fn deref(&self) -> &Spawner {
        &self.spawner
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.spawner.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn local(identity: Option<Identity>) -> Local {
    let (ours, theirs) = wire::pair(SOCKET_BUFFER).unwrap();
    let thread = std::thread::spawn(move || serve(theirs));
    let spawner = Spawner::over(ours, None);
    spawner.send(&ToSpawner::Setup { identity }, &[]).unwrap();
    Local {
        spawner,
        thread: Some(thread),
    }
}

fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (std::fs::File::from(r), w)
}

fn shell(script: &str) -> Program {
    let mut p = Program::new("/bin/sh");
    p.args = vec!["-c".into(), script.into()];
    p.env = vec![("GREETING".into(), "hello".into())];
    p
}

#[tokio::test]
async fn a_program_gets_its_environment_and_pipes_and_its_end_is_reported() {
    let spawner = local(None);
    let (mut out_r, out_w) = pipe();
    let (in_r, in_w) = pipe();
    let mut program = shell("read line; echo \"$GREETING $line $HOME\"; exit 3");
    program.stdin = Stdio::Passed;
    program.stdout = Stdio::Passed;
    let started = spawner
        .spawn(program, &[&OwnedFd::from(in_r), &out_w])
        .await
        .unwrap();
    drop(out_w);
    let mut in_w = std::fs::File::from(in_w);
    in_w.write_all(b"world\n").unwrap();
    drop(in_w);
    let mut got = String::new();
    out_r.read_to_string(&mut got).unwrap();
    // Only the environment it was given.
    assert_eq!(got, "hello world \n");
    assert_eq!(started.exited.await.unwrap(), Exit::Code(3));
}

#[tokio::test]
async fn a_program_that_cannot_start_is_named_with_the_reason() {
    let spawner = local(None);
    let err = spawner
        .spawn(Program::new("/nonexistent/cgi-program"), &[])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/nonexistent/cgi-program"), "{text}");
    assert!(text.contains("No such file"), "{text}");
    // A missing descriptor is refused, not guessed.
    let mut program = shell("true");
    program.stdout = Stdio::Passed;
    let err = spawner.spawn(program, &[]).await.unwrap_err();
    assert!(err.to_string().contains("descriptor"), "{err}");
}

#[tokio::test]
async fn a_kill_reaches_the_whole_process_group() {
    let spawner = local(None);
    let (mut out_r, out_w) = pipe();
    let mut program = shell("sleep 30 & echo started; wait");
    program.stdout = Stdio::Passed;
    let started = spawner.spawn(program, &[&out_w]).await.unwrap();
    drop(out_w);
    let mut first = [0u8; 8];
    out_r.read_exact(&mut first).unwrap();
    spawner.kill(started.pid);
    assert_eq!(started.exited.await.unwrap(), Exit::Signal(libc::SIGKILL));
    // The grandchild (sleep) went too: the pipe's last writer is gone.
    let mut rest = Vec::new();
    out_r.read_to_end(&mut rest).unwrap();
    // A pid it did not start is not signalled.
    spawner.kill(std::process::id());
}

#[tokio::test]
async fn listening_sockets_are_made_for_fastcgi_applications() {
    let spawner = local(None);
    let mut socket_dir = None;
    for kind in [Stdio::ListenUnix, Stdio::ListenTcp] {
        let mut program = Program::new("/usr/bin/python3");
        program.args = vec![
            "-c".into(),
            "import socket,sys; s=socket.socket(fileno=0); c,_=s.accept(); c.sendall(b'accepted')"
                .into(),
        ];
        program.stdin = kind;
        let started = spawner.spawn(program, &[]).await.unwrap();
        let address = started.address.clone().unwrap();
        let mut got = Vec::new();
        if kind == Stdio::ListenUnix {
            assert!(address.starts_with("/tmp/inetsrv-fcgi-"), "{address}");
            socket_dir = std::path::Path::new(&address).parent().map(PathBuf::from);
            std::os::unix::net::UnixStream::connect(&address)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
        } else {
            assert!(address.starts_with("127.0.0.1:"), "{address}");
            std::net::TcpStream::connect(&address)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
        }
        assert_eq!(got, b"accepted");
        assert_eq!(started.exited.await.unwrap(), Exit::Code(0));
        // A program's socket goes when it ends.
        if kind == Stdio::ListenUnix {
            assert!(
                !std::path::Path::new(&address).exists(),
                "{address} is left"
            );
        }
    }
    // Its directory goes with the launcher.
    let socket_dir = socket_dir.unwrap();
    assert!(socket_dir.is_dir());
    drop(spawner);
    assert!(!socket_dir.exists(), "{} is left", socket_dir.display());
}

#[tokio::test]
async fn programs_run_as_the_identity_when_the_launcher_is_root() {
    if !nix::unistd::geteuid().is_root() {
        // As another user there is no identity to switch to: the
        // launcher runs programs as itself (tested above).
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let spawner = local(Some(Identity {
        name: "nobody".into(),
        uid: nobody.uid.as_raw(),
        gid: nobody.gid.as_raw(),
    }));
    let (mut out_r, out_w) = pipe();
    let mut program = shell("echo $(id -u) $(id -g) $(id -G); grep NoNewPrivs /proc/self/status");
    program.stdout = Stdio::Passed;
    let started = spawner.spawn(program, &[&out_w]).await.unwrap();
    drop(out_w);
    let mut got = String::new();
    out_r.read_to_string(&mut got).unwrap();
    let uid = nobody.uid.as_raw();
    let gid = nobody.gid.as_raw();
    let first = got.lines().next().unwrap();
    assert_eq!(first, format!("{uid} {gid} {gid}"), "{got}");
    assert!(got.contains("NoNewPrivs:\t1"), "{got}");
    assert_eq!(started.exited.await.unwrap(), Exit::Code(0));
}
