//! Connections handed over by the listener to a program in its own
//! process ([`crate::Request::take_connection`]): after the request's
//! head, the program reads and writes the client's bytes itself, as
//! HTTP.SYS's opaque mode lets a program speak another protocol on the
//! connection (WebSocket, RPC over HTTP's channels). The connection object
//! (with its TLS state) moves from the listener's task to the program's
//! through this process-wide table, by a token the program chose; a
//! program in another process finds no connection under its token and
//! gets an error.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// A client connection's byte stream, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// What the listener hands over.
pub struct Handoff {
    pub stream: Box<dyn Stream>,
    /// Bytes the listener read from the client and did not pass on.
    pub buffered: Bytes,
    /// Request body bytes already passed on through the queue (they are
    /// on their way to the program's request).
    pub forwarded: u64,
    /// What the listener counts the connection by (its MaxConnections
    /// permit), released when the program drops the connection.
    pub held: Box<dyn std::any::Any + Send>,
}

/// A token names one hand-over.
pub type Token = [u8; 16];

type Waiting = Mutex<HashMap<Token, oneshot::Sender<Handoff>>>;

fn waiting() -> &'static Waiting {
    static WAITING: OnceLock<Waiting> = OnceLock::new();
    WAITING.get_or_init(Waiting::default)
}

/// The program's side: a new token and where its connection will come.
pub(crate) fn expect() -> std::io::Result<(Token, oneshot::Receiver<Handoff>)> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (tx, rx) = oneshot::channel();
    lock().insert(token, tx);
    Ok((token, rx))
}

/// Forgets a token whose connection did not come.
pub(crate) fn forget(token: &Token) {
    lock().remove(token);
}

/// The listener's side: hands the connection to the program waiting on
/// `token` in this process; gives it back when none does.
pub fn deliver(token: &Token, handoff: Handoff) -> Result<(), Handoff> {
    match lock().remove(token) {
        Some(waiter) => waiter.send(handoff),
        None => Err(handoff),
    }
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<Token, oneshot::Sender<Handoff>>> {
    waiting().lock().unwrap_or_else(|e| e.into_inner())
}
