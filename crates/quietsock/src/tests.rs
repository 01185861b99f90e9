use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The inode of the socket descriptor `fd` is.
fn socket_inode(fd: RawFd) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let link = link.to_string_lossy();
    link.trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

/// The events the process's epoll instances watch for descriptor `fd`
/// (from /proc/self/fdinfo), one entry per registration. Tests run side by
/// side: an entry counts only for the same socket; an epoll instance open
/// under two descriptors (tokio holds a duplicate) counts once.
fn epoll_interest(fd: RawFd) -> Vec<u32> {
    let inode = format!("ino:{:x}", socket_inode(fd));
    let mut registrations = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        for line in info.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("tfd:")
                || words.next() != Some(&fd.to_string())
                || !line.split_whitespace().any(|w| w == inode)
            {
                continue;
            }
            registrations.insert(line.to_string());
        }
    }
    registrations
        .iter()
        .map(|line| {
            let mask = line
                .split_whitespace()
                .skip_while(|w| *w != "events:")
                .nth(1)
                .unwrap();
            u32::from_str_radix(mask, 16).unwrap()
        })
        .collect()
}

const EPOLLIN: u32 = libc::EPOLLIN as u32;
const EPOLLOUT: u32 = libc::EPOLLOUT as u32;

/// The descriptors of the process that are duplicates of `socket` (the
/// same inode), other than `socket` itself.
fn duplicates_of(socket: RawFd) -> Vec<RawFd> {
    let inode = |fd: RawFd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    let own = inode(socket).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<RawFd>().ok())
        .filter(|&fd| fd != socket && inode(fd).as_ref() == Some(&own))
        .collect()
}

#[tokio::test]
async fn a_socket_is_watched_for_reading_only_and_for_room_only_while_a_write_waits() {
    let (a, b) = QuietUnixStream::pair().unwrap();
    let fd = a.get_ref().as_raw_fd();
    assert_eq!(epoll_interest(fd).len(), 1, "registered once");
    assert_eq!(epoll_interest(fd)[0] & EPOLLOUT, 0, "not for writability");
    assert_ne!(epoll_interest(fd)[0] & EPOLLIN, 0, "for reading");

    let (mut a_read, mut a_write) = a.into_split();
    let (mut b_read, _b_write) = b.into_split();
    // More than the socket holds: the write waits for room.
    let payload: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        a_write.write_all(&sent).await.unwrap();
        a_write
    });
    // While it waits, one duplicate of the socket is watched for room.
    let mut watched_for_room = false;
    for _ in 0..200 {
        let dups = duplicates_of(fd);
        if dups.len() == 1 && epoll_interest(dups[0]).iter().any(|m| m & EPOLLOUT != 0) {
            watched_for_room = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(watched_for_room, "a waiting write registers writability");

    let mut got = vec![0u8; payload.len()];
    b_read.read_exact(&mut got).await.unwrap();
    assert!(got == payload, "every byte arrives, in order");
    let a_write = writer.await.unwrap();
    // The write done, the duplicate and its registration are gone.
    assert!(duplicates_of(fd).is_empty());
    assert_eq!(epoll_interest(fd).len(), 1);
    assert_eq!(epoll_interest(fd)[0] & EPOLLOUT, 0);

    // Dropping the writing half ends the stream for the peer.
    drop(a_write);
    let mut rest = Vec::new();
    b_read.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // The reading half still reads what the peer sends.
    let (mut b_read2, mut b_write) = (b_read, _b_write);
    b_write.write_all(b"still open").await.unwrap();
    let mut back = [0u8; 10];
    a_read.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still open");
    drop(b_write);
    assert_eq!(b_read2.read(&mut back).await.unwrap(), 0);
}

#[tokio::test]
async fn halves_reunite_only_with_their_own_socket() {
    let (a, b) = QuietUnixStream::pair().unwrap();
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let (ar, bw) = match QuietUnixStream::reunite(ar, bw) {
        Ok(_) => panic!("halves of two sockets reunited"),
        Err(halves) => halves,
    };
    let mut a = QuietUnixStream::reunite(ar, aw)
        .ok()
        .expect("its own halves");
    let mut b = QuietUnixStream::reunite(br, bw)
        .ok()
        .expect("its own halves");
    a.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
}

#[tokio::test]
async fn a_write_to_a_closed_peer_fails_instead_of_waiting() {
    let (a, b) = QuietUnixStream::pair().unwrap();
    drop(b);
    let (_r, mut w) = a.into_split();
    let big = vec![0u8; 1 << 20];
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), w.write_all(&big)).await;
    assert!(result.expect("does not hang").is_err());
}

#[tokio::test]
async fn read_with_and_write_with_run_the_callers_system_calls() {
    let (a, b) = QuietUnixStream::pair().unwrap();
    let (_ar, mut aw) = a.into_split();
    let (br, _bw) = b.into_split();
    let sent = aw.write_with(|fd| send(fd, b"by hand")).await.unwrap();
    assert_eq!(sent, 7);
    let mut buf = [0u8; 16];
    let n = br.read_with(|fd| receive(fd, &mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"by hand");
}

#[allow(unsafe_code)]
fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for reads of its length.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[allow(unsafe_code)]
fn receive(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
