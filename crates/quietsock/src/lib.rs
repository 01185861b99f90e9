//! A Unix stream socket that wakes its event loop only for what a task
//! waits on.
//!
//! Linux tells a Unix stream socket's writer "writable" (EPOLLOUT) every
//! time its peer reads: the buffers the reader frees call the writer's
//! `unix_write_space`, whether or not the writer ever ran short of room.
//! tokio registers its sockets for both directions, so between two busy
//! processes (the listener and a worker, a worker and its FastCGI
//! processes) each read one side makes wakes the other side's event loop
//! for nothing: a wake-up, an epoll event and a scheduler turn per message.
//!
//! [`QuietUnixStream`] registers the socket for reading only. A write that
//! finds no room registers writability then, on a duplicate of the
//! descriptor (one epoll holds a descriptor once), and drops that
//! registration when a write goes through whole, so a socket that is not
//! short of room is never reported writable.

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected Unix stream socket, registered for reading only (see the
/// crate's documentation). Reads and writes as tokio's `UnixStream` does;
/// [`QuietUnixStream::into_split`] gives halves for two tasks.
pub struct QuietUnixStream {
    read: ReadHalf,
    write: WriteHalf,
}

impl QuietUnixStream {
    /// Takes over a connected socket (made non-blocking here).
    pub fn from_std(stream: StdUnixStream) -> io::Result<QuietUnixStream> {
        stream.set_nonblocking(true)?;
        let socket = Arc::new(register(stream, Interest::READABLE)?);
        Ok(QuietUnixStream {
            read: ReadHalf {
                socket: socket.clone(),
            },
            write: WriteHalf {
                socket,
                waiting: None,
            },
        })
    }

    /// Takes over a tokio socket (which leaves tokio's registration).
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<QuietUnixStream> {
        QuietUnixStream::from_std(stream.into_std()?)
    }

    /// Connects to the socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<QuietUnixStream> {
        QuietUnixStream::from_tokio(tokio::net::UnixStream::connect(path).await?)
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(QuietUnixStream, QuietUnixStream)> {
        let (a, b) = StdUnixStream::pair()?;
        Ok((QuietUnixStream::from_std(a)?, QuietUnixStream::from_std(b)?))
    }

    /// Halves that two tasks can own. Dropping the writing half alone
    /// shuts the sending direction, as tokio's halves do.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (self.read, self.write)
    }

    /// The socket whole again; the halves back if they are of two sockets.
    pub fn reunite(
        read: ReadHalf,
        write: WriteHalf,
    ) -> Result<QuietUnixStream, (ReadHalf, WriteHalf)> {
        if Arc::ptr_eq(&read.socket, &write.socket) {
            Ok(QuietUnixStream { read, write })
        } else {
            Err((read, write))
        }
    }

    /// The socket itself, for what is asked of it directly (its
    /// descriptor, its peer's credentials).
    pub fn get_ref(&self) -> &StdUnixStream {
        self.read.socket.get_ref()
    }
}

/// The reading half of a [`QuietUnixStream`].
pub struct ReadHalf {
    socket: Arc<AsyncFd<StdUnixStream>>,
}

impl ReadHalf {
    /// Runs `op` on the descriptor when the socket may have something to
    /// read, again after each `WouldBlock` or interruption (for reads of a
    /// kind tokio has no method for, such as `recvmsg` with descriptors),
    /// as the writing half's `write_with` does.
    pub async fn read_with<R>(&self, mut op: impl FnMut(RawFd) -> io::Result<R>) -> io::Result<R> {
        loop {
            let mut guard = self.socket.readable().await?;
            match guard.try_io(|socket| op(socket.as_raw_fd())) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(done) => return done,
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsRawFd for ReadHalf {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = ready!(self.socket.poll_read_ready(cx))?;
            match guard.try_io(|socket| receive_into(socket.as_raw_fd(), buf)) {
                Ok(done) => return Poll::Ready(done),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Registers a descriptor with the runtime's event loop for `interest`.
/// Only values that own their descriptor (convertible into an `OwnedFd`)
/// are taken.
#[allow(unsafe_code)]
fn register<T: AsRawFd + Into<OwnedFd>>(owner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `owner` owns its descriptor (it converts into an `OwnedFd`),
    // so the descriptor stays open and the same while the `AsyncFd` holds
    // it, and `as_raw_fd` always returns it.
    unsafe { AsyncFd::register_with_interest(owner, interest) }.map_err(|e| e.into_parts().1)
}

/// One `recv` into the buffer's unfilled room, which may be uninitialised
/// (a `BytesMut`'s spare capacity): zeroing it first would cost as much as
/// the read.
#[allow(unsafe_code)]
fn receive_into(fd: RawFd, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    // SAFETY: the kernel only writes into the room; nothing here
    // de-initialises bytes that were initialised.
    let room = unsafe { buf.unfilled_mut() };
    let n = loop {
        // SAFETY: `room` is valid for writes of `room.len()` bytes for the
        // duration of the call.
        let n = unsafe { libc::recv(fd, room.as_mut_ptr().cast(), room.len(), 0) };
        if n >= 0 {
            break n as usize;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    // SAFETY: `recv` initialised the first `n` bytes of the room.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(())
}

/// The writing half of a [`QuietUnixStream`]. Dropped, it shuts the
/// sending direction.
pub struct WriteHalf {
    socket: Arc<AsyncFd<StdUnixStream>>,
    /// The socket's writability registration, while a write waits for
    /// room.
    waiting: Option<AsyncFd<OwnedFd>>,
}

impl WriteHalf {
    /// Runs `op` on the descriptor until it does something other than
    /// `WouldBlock`, waiting for room in between (for writes of a kind
    /// tokio has no method for, such as `sendmsg` with descriptors).
    pub async fn write_with<R>(
        &mut self,
        mut op: impl FnMut(RawFd) -> io::Result<R>,
    ) -> io::Result<R> {
        let done =
            std::future::poll_fn(|cx| poll_write_op(&self.socket, &mut self.waiting, cx, &mut op))
                .await;
        self.waiting = None;
        done
    }

    /// Counts a write that went through: when it took everything offered,
    /// the socket is not short of room and stops being watched for it.
    fn wrote(&mut self, written: usize, offered: usize) {
        if written == offered {
            self.waiting = None;
        }
    }
}

/// Runs a write `op` on `socket` until it does something other than
/// `WouldBlock`; in between, `waiting` holds the socket's writability
/// registration (made on the first `WouldBlock`).
fn poll_write_op<R>(
    socket: &AsyncFd<StdUnixStream>,
    waiting: &mut Option<AsyncFd<OwnedFd>>,
    cx: &mut Context<'_>,
    op: &mut impl FnMut(RawFd) -> io::Result<R>,
) -> Poll<io::Result<R>> {
    let fd = socket.as_raw_fd();
    loop {
        match op(fd) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            done => return Poll::Ready(done),
        }
        let registration = match waiting {
            Some(registration) => registration,
            None => {
                let duplicate = socket.get_ref().as_fd().try_clone_to_owned()?;
                waiting.insert(register(duplicate, Interest::WRITABLE)?)
            }
        };
        let mut guard = ready!(registration.poll_write_ready(cx))?;
        guard.clear_ready();
    }
}

impl AsRawFd for WriteHalf {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        let _ = self.socket.get_ref().shutdown(Shutdown::Write);
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // One slice through writev costs what write does.
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut socket: &StdUnixStream = this.socket.get_ref();
        let n = ready!(poll_write_op(
            &this.socket,
            &mut this.waiting,
            cx,
            &mut |_| { socket.write_vectored(data) }
        ))?;
        this.wrote(n, data.iter().map(|d| d.len()).sum());
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.get_ref().shutdown(Shutdown::Write))
    }
}

impl AsyncRead for QuietUnixStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuietUnixStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().write).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().write).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
