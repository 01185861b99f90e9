//! Raw-data filtering: IIS 5 isolation mode's filter channel. When the
//! activation service names a queue as the raw-data filter
//! ([`crate::Listener::set_raw_filter`]), every connection's bytes pass
//! through the process serving that queue (the inetinfo role, where
//! SF_NOTIFY_READ_RAW_DATA and SF_NOTIFY_SEND_RAW_DATA filters run): what
//! the client sends (decrypted, for TLS) before it is parsed, what goes
//! out before it reaches the socket.
//!
//! The connection code reads and writes one end of an in-memory pipe as
//! it would the socket ([`crate::transport::Transport::Filtered`]); a
//! pump task between the pipe and the socket makes a round trip to the
//! filtering process for each piece, bounded in time. A filtering process
//! that goes away closes the connections it was filtering: bytes a filter
//! is meant to see never pass around it.

use std::sync::Arc;
use std::time::Duration;

use httpapi::proto::RawConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use crate::queue::Queue;
use crate::session::{RawDone, Session};
use crate::transport::Transport;

/// The queue whose process filters raw data, and which directions.
pub(crate) struct RawFilter {
    pub queue: Arc<Queue>,
    pub read: bool,
    pub send: bool,
}

/// How much one round trip carries.
const PIECE: usize = 16 * 1024;
/// How long a filter may take over one piece.
const FILTER_TIME: Duration = Duration::from_secs(60);
/// How long a connection waits for the filtering process to be ready.
const READY_TIME: Duration = Duration::from_secs(30);

/// Waits for the process serving the filter's queue, asking the service
/// to start it when none does.
pub(crate) async fn filtering_session(
    filter: &RawFilter,
    demand: Option<&crate::queue::DemandStartHook>,
) -> Option<Arc<Session>> {
    let deadline = tokio::time::Instant::now() + READY_TIME;
    let mut asked = false;
    loop {
        if let Some(session) = filter.queue.serving_session() {
            return Some(session);
        }
        if !asked {
            if let Some(hook) = demand {
                hook(&filter.queue);
            }
            asked = true;
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts the filter between the connection and its socket: returns the
/// stream the connection code uses instead.
pub(crate) fn wrap(
    session: Arc<Session>,
    filter: &RawFilter,
    client: Transport,
    connection: RawConnection,
    write_limit: Duration,
) -> Transport {
    let (inner, outer) = tokio::io::duplex(64 * 1024);
    let (read, send) = (filter.read, filter.send);
    tokio::spawn(async move {
        let conn = connection.conn;
        session.raw_opened(connection);
        pump(&session, conn, client, inner, read, send, write_limit).await;
        session.raw_closed(conn);
    });
    Transport::Filtered(outer)
}

/// One round trip, or the piece unchanged when this direction is not
/// filtered; `None` when the filter is gone or too slow.
async fn through(
    session: &Session,
    conn: u64,
    seq: &mut u64,
    outbound: bool,
    filtered: bool,
    data: Vec<u8>,
) -> Option<RawDone> {
    if !filtered {
        return Some(RawDone {
            data,
            to_client: Vec::new(),
            close: false,
            next_read: 0,
        });
    }
    *seq += 1;
    let answer = session.raw_call(conn, *seq, outbound, data);
    timeout(FILTER_TIME, answer).await.ok().flatten()
}

/// Writes to the client (through TLS, if any, to the socket) in time.
async fn write(to: &mut tokio::io::WriteHalf<Transport>, data: &[u8], limit: Duration) -> bool {
    let sent = async {
        to.write_all(data).await?;
        to.flush().await
    };
    matches!(timeout(limit, sent).await, Ok(Ok(())))
}

async fn pump(
    session: &Session,
    conn: u64,
    client: Transport,
    app: DuplexStream,
    read: bool,
    send: bool,
    write_limit: Duration,
) {
    let (mut client_in, mut client_out) = tokio::io::split(client);
    let (mut app_in, mut app_out) = tokio::io::split(app);
    let mut from_client = vec![0u8; PIECE];
    let mut from_app = vec![0u8; PIECE];
    let mut seq = 0u64;
    let mut client_open = true;
    // SF_REQ_SET_NEXT_READ_SIZE: the next read takes at most this.
    let mut read_size = PIECE;
    loop {
        tokio::select! {
            got = client_in.read(&mut from_client[..read_size]), if client_open => {
                match got {
                    Ok(0) | Err(_) => {
                        // The client is done sending: so is the pipe.
                        client_open = false;
                        let _ = app_out.shutdown().await;
                    }
                    Ok(n) => {
                        let piece = from_client[..n].to_vec();
                        let Some(done) = through(session, conn, &mut seq, false, read, piece).await else {
                            break;
                        };
                        read_size = match done.next_read as usize {
                            0 => PIECE,
                            n => n.min(PIECE),
                        };
                        if !done.to_client.is_empty() && !write(&mut client_out, &done.to_client, write_limit).await {
                            break;
                        }
                        if done.close {
                            break;
                        }
                        if !done.data.is_empty() && app_out.write_all(&done.data).await.is_err() {
                            break;
                        }
                    }
                }
            }
            got = app_in.read(&mut from_app) => {
                match got {
                    // The connection code closed its end: the connection ends.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let piece = from_app[..n].to_vec();
                        let Some(done) = through(session, conn, &mut seq, true, send, piece).await else {
                            break;
                        };
                        let mut out = done.to_client;
                        out.extend_from_slice(&done.data);
                        if !write(&mut client_out, &out, write_limit).await {
                            break;
                        }
                        if done.close {
                            break;
                        }
                    }
                }
            }
        }
    }
    let _ = timeout(write_limit, client_out.shutdown()).await;
}
