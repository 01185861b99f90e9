//! What a worker gives up before it takes a request: the right to gain
//! rights (`PR_SET_NO_NEW_PRIVS`: no set-user-ID program it runs can
//! elevate), and every system call it does not need. A seccomp filter on
//! every thread admits the calls of [`ALLOWED`] (memory, threads, time,
//! files beneath its roots, sockets, inotify: what the worker, tokio, the
//! standard library and mimalloc make) and answers anything else with
//! EPERM, so a module that reaches for more gets an error it can report
//! rather than a crash. Debugging other processes, mounting, loading
//! kernel code or BPF, namespaces, the kernel keyring, changing the clock,
//! rebooting and running programs are all outside it.
//!
//! A module that needs another call (CGI will need `execve` and `wait4`)
//! adds it here, in the change that brings the module, with a test that
//! uses it; the list is reviewed as code.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// The system calls a worker may make, on every architecture.
pub const ALLOWED: &[(&str, i64)] = &[
    // Memory.
    ("brk", libc::SYS_brk),
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("mremap", libc::SYS_mremap),
    ("mprotect", libc::SYS_mprotect),
    ("madvise", libc::SYS_madvise),
    // Threads, signals, scheduling.
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("rseq", libc::SYS_rseq),
    ("futex", libc::SYS_futex),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("gettid", libc::SYS_gettid),
    ("getpid", libc::SYS_getpid),
    ("getppid", libc::SYS_getppid),
    ("tgkill", libc::SYS_tgkill),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("prctl", libc::SYS_prctl),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    // Time.
    ("nanosleep", libc::SYS_nanosleep),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_getres", libc::SYS_clock_getres),
    ("gettimeofday", libc::SYS_gettimeofday),
    // Descriptors and polling.
    ("read", libc::SYS_read),
    ("write", libc::SYS_write),
    ("readv", libc::SYS_readv),
    ("writev", libc::SYS_writev),
    ("pread64", libc::SYS_pread64),
    ("pwrite64", libc::SYS_pwrite64),
    ("lseek", libc::SYS_lseek),
    ("close", libc::SYS_close),
    ("dup", libc::SYS_dup),
    ("dup3", libc::SYS_dup3),
    ("fcntl", libc::SYS_fcntl),
    ("ioctl", libc::SYS_ioctl),
    ("pipe2", libc::SYS_pipe2),
    ("ppoll", libc::SYS_ppoll),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("eventfd2", libc::SYS_eventfd2),
    // Files (resolved beneath the handed roots by openat2).
    ("openat", libc::SYS_openat),
    ("openat2", libc::SYS_openat2),
    // A module the identity may not read is copied into memory to load
    // (module_files.rs).
    ("memfd_create", libc::SYS_memfd_create),
    ("statx", libc::SYS_statx),
    ("fstat", libc::SYS_fstat),
    ("newfstatat", libc::SYS_newfstatat),
    ("fstatfs", libc::SYS_fstatfs),
    ("readlinkat", libc::SYS_readlinkat),
    ("getdents64", libc::SYS_getdents64),
    ("fsync", libc::SYS_fsync),
    ("fdatasync", libc::SYS_fdatasync),
    ("ftruncate", libc::SYS_ftruncate),
    ("fallocate", libc::SYS_fallocate),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("unlinkat", libc::SYS_unlinkat),
    ("mkdirat", libc::SYS_mkdirat),
    ("linkat", libc::SYS_linkat),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchown", libc::SYS_fchown),
    ("fchownat", libc::SYS_fchownat),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("utimensat", libc::SYS_utimensat),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("getcwd", libc::SYS_getcwd),
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
    // Sockets (the listener's and the service's, and those a module
    // opens to a FastCGI server).
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("connect", libc::SYS_connect),
    ("sendto", libc::SYS_sendto),
    ("recvfrom", libc::SYS_recvfrom),
    ("sendmsg", libc::SYS_sendmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("shutdown", libc::SYS_shutdown),
    ("getsockopt", libc::SYS_getsockopt),
    ("setsockopt", libc::SYS_setsockopt),
    ("getsockname", libc::SYS_getsockname),
    ("getpeername", libc::SYS_getpeername),
    // Who and where it is.
    ("getrandom", libc::SYS_getrandom),
    ("uname", libc::SYS_uname),
    ("sysinfo", libc::SYS_sysinfo),
    ("prlimit64", libc::SYS_prlimit64),
    ("getrusage", libc::SYS_getrusage),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    ("getgroups", libc::SYS_getgroups),
    ("umask", libc::SYS_umask),
];

/// The older forms x86-64 still has and its C library may still use.
#[cfg(target_arch = "x86_64")]
const ALLOWED_X86_64: &[(&str, i64)] = &[
    ("open", libc::SYS_open),
    ("stat", libc::SYS_stat),
    ("lstat", libc::SYS_lstat),
    ("access", libc::SYS_access),
    ("readlink", libc::SYS_readlink),
    ("rename", libc::SYS_rename),
    ("unlink", libc::SYS_unlink),
    ("mkdir", libc::SYS_mkdir),
    ("poll", libc::SYS_poll),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("pipe", libc::SYS_pipe),
    ("dup2", libc::SYS_dup2),
    ("getdents", libc::SYS_getdents),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("time", libc::SYS_time),
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_X86_64: &[(&str, i64)] = &[];

fn arch() -> Option<TargetArch> {
    if cfg!(target_arch = "x86_64") {
        Some(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(TargetArch::aarch64)
    } else {
        None
    }
}

/// The filter, compiled for this architecture (`None` where seccomp is
/// not set up).
fn program() -> Result<Option<BpfProgram>, String> {
    let Some(arch) = arch() else {
        return Ok(None);
    };
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_X86_64)
        .map(|(_, nr)| (*nr, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| format!("the seccomp filter: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("the seccomp filter: {e}"))?;
    Ok(Some(program))
}

/// Sets no-new-privileges and installs the filter on every thread of the
/// process. An error says which step failed.
pub fn confine() -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    match program()? {
        Some(program) => seccompiler::apply_filter_all_threads(&program)
            .map_err(|e| format!("installing the seccomp filter: {e}")),
        None => {
            tracing::warn!("no seccomp filter on this architecture");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_and_leaves_out_what_a_worker_never_needs() {
        assert!(program().unwrap().is_some_and(|p| !p.is_empty()));
        let allowed: Vec<i64> = ALLOWED
            .iter()
            .chain(ALLOWED_X86_64)
            .map(|(_, n)| *n)
            .collect();
        for never in [
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_execve,
            libc::SYS_bpf,
            libc::SYS_init_module,
            libc::SYS_unshare,
            libc::SYS_setuid,
            libc::SYS_keyctl,
            libc::SYS_process_vm_readv,
        ] {
            assert!(!allowed.contains(&never), "syscall {never} is allowed");
        }
    }
}
