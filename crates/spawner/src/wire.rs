//! One message per SEQPACKET packet, with descriptors as SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// The most descriptors one message carries.
const MAX_FDS: usize = 4;

/// A connected pair, both ends close-on-exec (the helper's end is given
/// to it as standard input, which `Command` duplicates without the flag).
pub fn pair(buffer: usize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    for end in [&a, &b] {
        // Best effort: a smaller buffer only limits the largest message.
        let _ = setsockopt(end, sockopt::SndBuf, &buffer);
        let _ = setsockopt(end, sockopt::RcvBuf, &buffer);
    }
    Ok((a, b))
}

pub fn send(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[&OwnedFd]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The next message: its length in `buffer` and its descriptors; `None`
/// when the peer has gone.
pub fn recv(
    socket: BorrowedFd<'_>,
    buffer: &mut [u8],
) -> std::io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut control = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut received: Vec<RawFd> = Vec::new();
        let result = {
            let mut iov = [IoSliceMut::new(&mut *buffer)];
            recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map(|msg| {
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(list) = c {
                            received.extend(list);
                        }
                    }
                }
                (msg.bytes, msg.flags)
            })
        };
        let fds: Vec<OwnedFd> = received
            .into_iter()
            // SAFETY: the kernel has just installed these descriptors in
            // this process's table for this message (SCM_RIGHTS); nothing
            // else owns them.
            .map(|fd| {
                #[allow(unsafe_code)]
                unsafe {
                    OwnedFd::from_raw_fd(fd)
                }
            })
            .collect();
        match result {
            Ok((0, _)) if fds.is_empty() => return Ok(None),
            Ok((_, flags)) if flags.contains(MsgFlags::MSG_TRUNC) => {
                return Err(std::io::Error::other("a message larger than the buffer"))
            }
            Ok((n, _)) => return Ok(Some((n, fds))),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
