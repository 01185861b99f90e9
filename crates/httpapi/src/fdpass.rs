//! File descriptors over the control socket (SCM_RIGHTS), for responses
//! whose body is a file: the program hands the listener its open file and
//! the listener sends it with sendfile(2), the way a worker gives HTTP.SYS
//! a file handle (HTTP_DATA_CHUNK FromFileHandle) for TransmitFile. The
//! listener reads only what the program itself could open.
//!
//! A descriptor travels with the first byte of the frame that announces
//! it ([`crate::proto::ToListener::SendFile`]); the receiver queues
//! descriptors in arrival order and each such frame takes the next one.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use quietsock::{ReadHalf, WriteHalf};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::UnboundedReceiver;

/// A frame to send, with the descriptor it carries, if any.
#[derive(Debug)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub fd: Option<OwnedFd>,
}

impl From<Vec<u8>> for Outgoing {
    fn from(bytes: Vec<u8>) -> Outgoing {
        Outgoing { bytes, fd: None }
    }
}

/// The most descriptors a receiver holds that no frame has claimed yet.
pub const MAX_PENDING_FDS: usize = 64;

/// Sends one frame with a descriptor attached to its first byte.
async fn send_with_fd(out: &mut WriteHalf, bytes: &[u8], fd: &OwnedFd) -> std::io::Result<()> {
    let sent = out
        .write_with(|raw| {
            let fds = [fd.as_raw_fd()];
            let cmsgs = [ControlMessage::ScmRights(&fds)];
            sendmsg::<()>(
                raw,
                &[IoSlice::new(bytes)],
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        })
        .await?;
    // The descriptor went with the first byte; the rest is plain.
    out.write_all(&bytes[sent..]).await
}

/// Writes frames until either side closes. Frames that are ready together
/// go out in one write; a frame with a descriptor goes out on its own.
pub async fn write_frames(mut frames: UnboundedReceiver<Outgoing>, mut out: WriteHalf) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut carry: Option<Outgoing> = None;
    loop {
        let first = match carry.take() {
            Some(f) => f,
            None => match frames.recv().await {
                Some(f) => f,
                None => break,
            },
        };
        if let Some(fd) = &first.fd {
            if send_with_fd(&mut out, &first.bytes, fd).await.is_err() {
                break;
            }
            continue;
        }
        // Let the other ready tasks queue their frames first.
        tokio::task::yield_now().await;
        batch.clear();
        batch.extend_from_slice(&first.bytes);
        while batch.len() < 256 * 1024 {
            match frames.try_recv() {
                Ok(more) if more.fd.is_some() => {
                    carry = Some(more);
                    break;
                }
                Ok(more) => batch.extend_from_slice(&more.bytes),
                Err(_) => break,
            }
        }
        if out.write_all(&batch).await.is_err() {
            break;
        }
    }
}

/// A reader's buffers: the bytes read and room for the descriptors that
/// come with them, allocated once.
pub struct FdReader {
    pub scratch: Vec<u8>,
    control: Vec<u8>,
}

impl FdReader {
    pub fn new(size: usize) -> FdReader {
        FdReader {
            scratch: vec![0u8; size],
            control: nix::cmsg_space!([RawFd; 8]),
        }
    }

    /// Reads what is available, queueing any descriptors that came with
    /// it; the bytes are `self.scratch[..n]`, 0 at the end of the stream.
    pub async fn read(
        &mut self,
        stream: &ReadHalf,
        fds: &mut VecDeque<OwnedFd>,
    ) -> std::io::Result<usize> {
        read_with_fds(stream, &mut self.scratch, &mut self.control, fds).await
    }
}

/// Reads what is available into `scratch`, queueing any descriptors that
/// came with it; 0 at the end of the stream.
async fn read_with_fds(
    stream: &ReadHalf,
    scratch: &mut [u8],
    control: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> std::io::Result<usize> {
    let mut received: Vec<RawFd> = Vec::new();
    let attempt = stream
        .read_with(|raw| {
            let mut iov = [IoSliceMut::new(&mut *scratch)];
            let msg = recvmsg::<()>(
                raw,
                &mut iov,
                Some(&mut *control),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        received.extend(list);
                    }
                }
            }
            Ok(msg.bytes)
        })
        .await;
    for fd in received {
        // SAFETY: the kernel just installed this descriptor in our
        // table for us (SCM_RIGHTS); nothing else owns it.
        #[allow(unsafe_code)]
        fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    attempt
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[tokio::test]
    async fn descriptors_travel_in_order_with_their_frames() {
        let (a, b) = quietsock::QuietUnixStream::pair().unwrap();
        let (_ra, wa) = a.into_split();
        let (b, _wb) = b.into_split();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn(write_frames(rx, wa));
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"from a file").unwrap();
        tx.send(Outgoing::from(b"plain;".to_vec())).unwrap();
        tx.send(Outgoing {
            bytes: b"with-fd;".to_vec(),
            fd: Some(OwnedFd::from(file.try_clone().unwrap())),
        })
        .unwrap();
        tx.send(Outgoing::from(b"after".to_vec())).unwrap();
        drop(tx);
        writer.await.unwrap();
        let mut got = Vec::new();
        let mut fds = VecDeque::new();
        let mut reader = FdReader::new(1024);
        loop {
            let n = reader.read(&b, &mut fds).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&reader.scratch[..n]);
        }
        assert_eq!(got, b"plain;with-fd;after");
        assert_eq!(fds.len(), 1);
        let mut received = std::fs::File::from(fds.pop_front().unwrap());
        received.rewind().unwrap();
        let mut text = String::new();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "from a file");
    }
}
