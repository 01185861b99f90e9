//! The client side: a program connects to the listener's control socket,
//! creates or opens request queues, registers URL prefixes, and serves the
//! requests that arrive. Everything is asynchronous (tokio); many requests
//! may be in flight at once, each answered when the program is ready.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::fdpass::Outgoing;
use crate::proto::{
    self, decode_frame, decode_message, encode_message, encode_response_body, ApiError,
    CachePolicy, ErrorCode, Frame, Header, HeaderBlock, LateLog, LogInfo, QueueProperty,
    RequestHead, ResponseBody, ResponseHead, ToApp, ToListener,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot reach the listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("the listener closed the connection")]
    Closed,
    #[error("the request was aborted (its client went away)")]
    Aborted,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
enum BodyEvent {
    Data(Bytes),
    Trailers(Vec<Header>),
    End,
    Aborted,
}

struct Slot {
    /// Where the request's body goes; none for a request without one.
    body: Option<mpsc::UnboundedSender<BodyEvent>>,
    window: Arc<Semaphore>,
}

struct Shared {
    tx: mpsc::UnboundedSender<Outgoing>,
    calls: Mutex<HashMap<u32, oneshot::Sender<Result<u64, ApiError>>>>,
    next_call: AtomicU32,
    queues: Mutex<HashMap<u32, mpsc::UnboundedSender<Request>>>,
    requests: Mutex<HashMap<u64, Slot>>,
    closed: AtomicBool,
    /// Raw-data events, and their receiver until [`Session::raw_events`]
    /// takes it.
    raw: mpsc::UnboundedSender<RawEvent>,
    raw_rx: Mutex<Option<mpsc::UnboundedReceiver<RawEvent>>>,
    /// Closed connections this session waits on, and their receiver
    /// until [`Session::disconnects`] takes it.
    disconnects: mpsc::UnboundedSender<u64>,
    disconnects_rx: Mutex<Option<mpsc::UnboundedReceiver<u64>>>,
}

/// What the listener hands the session of a queue that filters raw data
/// (set by the queue's owner: the activation service in IIS 5 isolation
/// mode). Each [`RawEvent::Data`] is answered with
/// [`Session::raw_data_done`].
#[derive(Debug)]
pub enum RawEvent {
    Opened(proto::RawConnection),
    Data {
        conn: u64,
        seq: u64,
        outbound: bool,
        data: Vec<u8>,
    },
    Closed {
        conn: u64,
    },
}

impl Shared {
    fn send(&self, msg: &ToListener) -> Result<()> {
        let mut frame = Vec::with_capacity(128);
        encode_message(msg, &mut frame);
        self.tx.send(frame.into()).map_err(|_| Error::Closed)
    }

    async fn call(&self, make: impl FnOnce(u32) -> ToListener) -> Result<u64> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.calls).insert(call, tx);
        if self.closed.load(Ordering::Acquire) {
            lock(&self.calls).remove(&call);
            return Err(Error::Closed);
        }
        self.send(&make(call))?;
        Ok(rx.await.map_err(|_| Error::Closed)??)
    }
}

/// A connection to the listener. Cheap to clone; closed when the last
/// clone (and every queue and request from it) is dropped.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// The control socket of a state directory (`DIR/run/httpapi.sock`).
pub fn socket_for_state_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("run/httpapi.sock")
}

impl Session {
    /// Connects to the listener's control socket.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Session> {
        let stream = quietsock::QuietUnixStream::connect(path.as_ref()).await?;
        let (mut reader, mut writer) = stream.into_split();
        let program = std::env::args().next().unwrap_or_default();
        let mut hello = Vec::new();
        encode_message(
            &ToListener::Hello {
                version: proto::PROTOCOL_VERSION,
                program,
            },
            &mut hello,
        );
        writer.write_all(&hello).await?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            if let Some((frame, len)) =
                decode_frame(&buf).map_err(|e| Error::Io(std::io::Error::other(e)))?
            {
                let Frame::Message(bytes) = frame else {
                    return Err(Error::Closed);
                };
                match decode_message::<ToApp>(bytes)
                    .map_err(|e| Error::Io(std::io::Error::other(e)))?
                {
                    ToApp::Welcome { .. } => {
                        buf.advance(len);
                        break;
                    }
                    _ => return Err(Error::Closed),
                }
            }
            if reader.read_buf(&mut buf).await? == 0 {
                return Err(Error::Closed);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
        let (raw, raw_rx) = mpsc::unbounded_channel();
        let (disconnects, disconnects_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            raw,
            raw_rx: Mutex::new(Some(raw_rx)),
            disconnects,
            disconnects_rx: Mutex::new(Some(disconnects_rx)),
            tx,
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU32::new(1),
            queues: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(crate::fdpass::write_frames(rx, writer));
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            read_loop(weak.clone(), reader, buf).await;
            if let Some(shared) = weak.upgrade() {
                shut(&shared);
            }
        });
        Ok(Session { shared })
    }

    async fn queue(&self, name: &str, open_existing: bool) -> Result<Queue> {
        // The channel exists before the listener can route to the queue.
        let (tx, rx) = mpsc::unbounded_channel();
        let name_owned = name.to_string();
        let id = self
            .shared
            .call(|call| ToListener::OpenQueue {
                call,
                name: name_owned,
                open_existing,
            })
            .await? as u32;
        lock(&self.shared.queues).insert(id, tx);
        Ok(Queue {
            shared: self.shared.clone(),
            id,
            name: name.to_string(),
            rx,
            receive_ahead: 64,
            granted: false,
            ungranted: 0,
        })
    }

    /// Asks to hear when client connection `connection` (a request's
    /// [`RequestHead::connection`]) closes, through
    /// [`Session::disconnects`] (HttpWaitForDisconnect's role).
    pub fn wait_for_disconnect(&self, connection: u64) -> Result<()> {
        self.shared
            .send(&ToListener::WaitForDisconnect { connection })
    }

    /// The connections waited on, as they close; `None` after the first
    /// call.
    pub fn disconnects(&self) -> Option<mpsc::UnboundedReceiver<u64>> {
        lock(&self.shared.disconnects_rx).take()
    }

    /// The raw-data events of the connections this session filters (see
    /// [`RawEvent`]); `None` after the first call.
    pub fn raw_events(&self) -> Option<mpsc::UnboundedReceiver<RawEvent>> {
        lock(&self.shared.raw_rx).take()
    }

    /// Answers [`RawEvent::Data`] `seq` of `conn`: `data` goes on in its
    /// place, `to_client` goes to the client first, `close` closes the
    /// connection, and the next read from the client takes at most
    /// `next_read` bytes (0: the listener's own size).
    pub fn raw_data_done(
        &self,
        conn: u64,
        seq: u64,
        data: Vec<u8>,
        to_client: Vec<u8>,
        close: bool,
        next_read: u32,
    ) -> Result<()> {
        self.shared.send(&ToListener::RawDataDone {
            conn,
            seq,
            data,
            to_client,
            close,
            next_read,
        })
    }

    /// Creates a queue (an error if one of that name exists).
    pub async fn create_queue(&self, name: &str) -> Result<Queue> {
        self.queue(name, false).await
    }

    /// Opens an existing queue to serve it too: several processes may
    /// serve one queue.
    pub async fn open_queue(&self, name: &str) -> Result<Queue> {
        self.queue(name, true).await
    }
}

/// Marks the session dead: calls fail, queues end, requests abort.
fn shut(shared: &Shared) {
    shared.closed.store(true, Ordering::Release);
    for (_, tx) in lock(&shared.calls).drain() {
        let _ = tx.send(Err(ApiError::new(
            ErrorCode::Protocol,
            "the listener closed the connection",
        )));
    }
    lock(&shared.queues).clear();
    for (_, slot) in lock(&shared.requests).drain() {
        if let Some(body) = &slot.body {
            let _ = body.send(BodyEvent::Aborted);
        }
        slot.window.close();
    }
}

async fn read_loop(
    shared: std::sync::Weak<Shared>,
    mut reader: quietsock::ReadHalf,
    mut buf: BytesMut,
) {
    loop {
        loop {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let (frame_len, outcome) = match decode_frame(&buf) {
                Ok(Some((Frame::Message(bytes), len))) => {
                    (len, decode_message::<ToApp>(bytes).map(Some))
                }
                Ok(Some((Frame::RequestBody { request, end, data }, len))) => {
                    let start = len - data.len();
                    let frame = buf.split_to(len).freeze();
                    let data = frame.slice(start..);
                    let slot_body = lock(&shared.requests)
                        .get(&request)
                        .and_then(|s| s.body.clone());
                    if let Some(body) = slot_body {
                        if !data.is_empty() {
                            let _ = body.send(BodyEvent::Data(data));
                        }
                        if end {
                            let _ = body.send(BodyEvent::End);
                        }
                    }
                    continue;
                }
                Ok(Some((Frame::ResponseBody { .. }, _))) => return,
                Ok(None) => break,
                Err(_) => return,
            };
            let msg = match outcome {
                Ok(Some(msg)) => msg,
                _ => return,
            };
            buf.advance(frame_len);
            dispatch(&shared, msg);
        }
        // Keep room to read into: consumed frames shrink the buffer.
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn dispatch(shared: &Arc<Shared>, msg: ToApp) {
    match msg {
        ToApp::Welcome { .. } => {}
        ToApp::Reply { call, result } => {
            if let Some(tx) = lock(&shared.calls).remove(&call) {
                let _ = tx.send(result);
            }
        }
        ToApp::Request(head) => {
            // A request without a body has no channel for one.
            let (body_tx, body_rx) = if matches!(head.body, proto::BodyInfo::None) {
                (None, None)
            } else {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            };
            let window = Arc::new(Semaphore::new(proto::BODY_WINDOW as usize));
            let id = head.id;
            let queue = head.queue;
            // Only a client that waits for 100 Continue needs telling
            // that the body is read.
            let body_wanted = !expects_continue(&head);
            lock(&shared.requests).insert(
                id,
                Slot {
                    body: body_tx,
                    window: window.clone(),
                },
            );
            let request = Request {
                body_done: matches!(head.body, proto::BodyInfo::None),
                unacked: 0,
                head: Arc::from(head),
                body: body_rx,
                trailers: Vec::new(),
                shared: shared.clone(),
                window,
                answered: false,
                replacement: None,
                held: None,
                body_read: 0,
                body_wanted,
            };
            let delivered = lock(&shared.queues)
                .get(&queue)
                .map(|q| q.send(request).is_ok())
                .unwrap_or(false);
            if !delivered {
                // The queue was closed here: give the request back.
                lock(&shared.requests).remove(&id);
                let _ = shared.send(&ToListener::Abort { request: id });
            }
        }
        ToApp::RequestTrailers { request, trailers } => {
            if let Some(body) = lock(&shared.requests)
                .get(&request)
                .and_then(|s| s.body.as_ref())
            {
                let _ = body.send(BodyEvent::Trailers(trailers));
            }
        }
        ToApp::ResponseConsumed { request, bytes } => {
            if let Some(slot) = lock(&shared.requests).get(&request) {
                slot.window.add_permits(bytes as usize);
            }
        }
        ToApp::Aborted { request } => {
            if let Some(slot) = lock(&shared.requests).remove(&request) {
                if let Some(body) = &slot.body {
                    let _ = body.send(BodyEvent::Aborted);
                }
                slot.window.close();
            }
        }
        ToApp::Disconnected { connection } => {
            let _ = shared.disconnects.send(connection);
        }
        ToApp::RawOpened(connection) => {
            let _ = shared.raw.send(RawEvent::Opened(connection));
        }
        ToApp::RawData {
            conn,
            seq,
            outbound,
            data,
        } => {
            let _ = shared.raw.send(RawEvent::Data {
                conn,
                seq,
                outbound,
                data,
            });
        }
        ToApp::RawClosed { conn } => {
            let _ = shared.raw.send(RawEvent::Closed { conn });
        }
    }
}

/// A request queue this program serves.
pub struct Queue {
    shared: Arc<Shared>,
    id: u32,
    name: String,
    rx: mpsc::UnboundedReceiver<Request>,
    receive_ahead: u32,
    granted: bool,
    ungranted: u32,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

/// The operations on a queue other than receiving; cheap to clone and
/// usable while another task receives.
#[derive(Clone)]
pub struct QueueControl {
    shared: Arc<Shared>,
    id: u32,
}

impl QueueControl {
    /// Asks to hear when client connection `connection` closes (see
    /// [`Session::wait_for_disconnect`]).
    pub fn wait_for_disconnect(&self, connection: u64) -> Result<()> {
        self.shared
            .send(&ToListener::WaitForDisconnect { connection })
    }

    /// Routes `prefix` (`http://+:8080/app/`) to this queue; each request
    /// it routes carries `context`. Refused without a URL reservation for
    /// this program's user.
    pub async fn add_url(&self, prefix: &str, context: u64) -> Result<()> {
        let (queue, prefix) = (self.id, prefix.to_string());
        self.shared
            .call(|call| ToListener::AddUrl {
                call,
                queue,
                prefix,
                context,
            })
            .await
            .map(|_| ())
    }

    pub async fn remove_url(&self, prefix: &str) -> Result<()> {
        let (queue, prefix) = (self.id, prefix.to_string());
        self.shared
            .call(|call| ToListener::RemoveUrl {
                call,
                queue,
                prefix,
            })
            .await
            .map(|_| ())
    }

    async fn set(&self, property: QueueProperty) -> Result<()> {
        let queue = self.id;
        self.shared
            .call(|call| ToListener::SetQueue {
                call,
                queue,
                property,
            })
            .await
            .map(|_| ())
    }

    /// A stopped queue answers 503 (AppOffline) until started again.
    pub async fn set_stopped(&self, stopped: bool) -> Result<()> {
        self.set(QueueProperty::Stopped(stopped)).await
    }

    /// How many requests wait in the queue, not yet taken by a process.
    pub async fn queued_requests(&self) -> Result<usize> {
        let queue = self.id;
        self.shared
            .call(|call| ToListener::QueuedRequests { call, queue })
            .await
            .map(|n| n as usize)
    }

    /// Requests waiting beyond this answer 503 (QueueFull).
    pub async fn set_max_length(&self, length: u32) -> Result<()> {
        self.set(QueueProperty::MaxLength(length)).await
    }

    /// Drops the listener's cached responses at or under `prefix`;
    /// returns how many.
    pub async fn flush_cache(&self, prefix: &str) -> Result<usize> {
        let (queue, prefix) = (self.id, prefix.to_string());
        self.shared
            .call(|call| ToListener::FlushCache {
                call,
                queue,
                prefix,
            })
            .await
            .map(|n| n as usize)
    }
}

impl Queue {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle for the operations other than receiving.
    pub fn control(&self) -> QueueControl {
        QueueControl {
            shared: self.shared.clone(),
            id: self.id,
        }
    }

    /// See [`QueueControl::add_url`].
    pub async fn add_url(&self, prefix: &str, context: u64) -> Result<()> {
        self.control().add_url(prefix, context).await
    }

    pub async fn remove_url(&self, prefix: &str) -> Result<()> {
        self.control().remove_url(prefix).await
    }

    pub async fn set_stopped(&self, stopped: bool) -> Result<()> {
        self.control().set_stopped(stopped).await
    }

    /// See [`QueueControl::queued_requests`].
    pub async fn queued_requests(&self) -> Result<usize> {
        self.control().queued_requests().await
    }

    pub async fn set_max_length(&self, length: u32) -> Result<()> {
        self.control().set_max_length(length).await
    }

    pub async fn flush_cache(&self, prefix: &str) -> Result<usize> {
        self.control().flush_cache(prefix).await
    }

    /// Stops the listener delivering requests of this queue to this
    /// program. When it returns, every request already delivered is in
    /// hand: take them with [`Queue::try_receive`] and answer them, and
    /// nothing is lost (a worker being recycled does this).
    pub async fn stop_receiving(&mut self) -> Result<()> {
        let queue = self.id;
        self.shared
            .call(|call| ToListener::StopReceiving { call, queue })
            .await
            .map(|_| ())
    }

    /// A request already delivered, if there is one.
    pub fn try_receive(&mut self) -> Option<Request> {
        self.rx.try_recv().ok()
    }

    /// How many requests the listener may hand this program ahead of
    /// `receive` calls (default 64). Set before the first `receive`.
    pub fn set_receive_ahead(&mut self, count: u32) {
        self.receive_ahead = count.max(1);
    }

    fn grant(&mut self, count: u32) -> Result<()> {
        self.shared.send(&ToListener::Receive {
            queue: self.id,
            count,
        })
    }

    /// The next request routed to this queue.
    pub async fn receive(&mut self) -> Result<Request> {
        if !self.granted {
            self.granted = true;
            let n = self.receive_ahead;
            self.grant(n)?;
        }
        let request = match self.rx.try_recv() {
            Ok(r) => r,
            Err(_) => {
                if self.ungranted > 0 {
                    let n = std::mem::take(&mut self.ungranted);
                    self.grant(n)?;
                }
                self.rx.recv().await.ok_or(Error::Closed)?
            }
        };
        self.taken()?;
        Ok(request)
    }

    /// A request already routed to this queue, if one waits (`None`
    /// otherwise): a server that took one with `receive` takes those that
    /// came with it without waiting again.
    pub fn receive_now(&mut self) -> Result<Option<Request>> {
        if !self.granted {
            return Ok(None);
        }
        match self.rx.try_recv() {
            Ok(request) => {
                self.taken()?;
                Ok(Some(request))
            }
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(Error::Closed),
        }
    }

    /// Counts a request taken, and gives the listener credit for more
    /// every quarter of the read-ahead.
    fn taken(&mut self) -> Result<()> {
        self.ungranted += 1;
        if self.ungranted >= (self.receive_ahead / 4).max(1) {
            let n = std::mem::take(&mut self.ungranted);
            self.grant(n)?;
        }
        Ok(())
    }

    /// Stops serving the queue (it goes away once nobody holds it).
    pub async fn close(self) -> Result<()> {
        let queue = self.id;
        lock(&self.shared.queues).remove(&queue);
        self.shared
            .call(|call| ToListener::CloseQueue { call, queue })
            .await
            .map(|_| ())
    }
}

/// A request to answer. Dropping it unanswered aborts it (its client's
/// connection is closed).
pub struct Request {
    /// Behind a pointer (a request is handed by value from phase to phase,
    /// and its head is most of it), and shared, so that what reads the
    /// head while the request is answered (an extension's server
    /// variables) needs no copy of its own.
    head: Arc<RequestHead>,
    body: Option<mpsc::UnboundedReceiver<BodyEvent>>,
    body_done: bool,
    /// Body bytes taken but not yet acknowledged to the listener.
    unacked: u64,
    trailers: Vec<Header>,
    shared: Arc<Shared>,
    window: Arc<Semaphore>,
    answered: bool,
    /// A body given in place of the client's ([`Request::replace_body`]):
    /// `Some` until it is read.
    replacement: Option<Option<Bytes>>,
    /// Where the response's end waits ([`Request::hold_end`]).
    held: Option<Arc<HeldState>>,
    /// Body bytes read so far.
    body_read: u64,
    /// The listener was told the body is wanted ([`ToListener::WantBody`]).
    body_wanted: bool,
}

/// A response's end held back (see [`Request::hold_end`]): what it will
/// say once the response is otherwise complete, and, once its holder let
/// it go, what the holder added to the log line.
#[derive(Default)]
struct Held {
    pending: Option<(Vec<Header>, LateLog)>,
    released: Option<LateLog>,
}

/// One hold on a response's end; an earlier hold (`outer`) gets the end
/// when this one lets it go.
#[derive(Default)]
struct HeldState {
    held: Mutex<Held>,
    outer: Option<Arc<HeldState>>,
}

/// The end of a response held back while its request is handed on (an
/// ISAPI extension's HSE_REQ_EXEC_URL) or its log line is still being
/// decided (an ISAPI filter's SF_NOTIFY_LOG): the response goes out as
/// it is answered, but is complete only when this is released, with what
/// the holder adds to its log line. Holds nest. Dropping it releases it.
pub struct HeldEnd {
    state: Arc<HeldState>,
    shared: Arc<Shared>,
    id: u64,
    done: bool,
}

impl HeldEnd {
    /// Completes the response (as soon as its owner has), adding
    /// `log_suffix` to its log line's query.
    pub fn release(self, log_suffix: &str) {
        self.release_with_log(LateLog {
            fields: None,
            query_suffix: log_suffix.to_string(),
        });
    }

    /// Completes the response (as soon as its owner has) with these
    /// changes to its log line.
    pub fn release_with_log(mut self, late: LateLog) {
        self.let_go(late);
    }

    fn let_go(&mut self, late: LateLog) {
        self.done = true;
        let mut held = lock(&self.state.held);
        match held.pending.take() {
            Some((trailers, mut pending)) => {
                drop(held);
                pending.merge(late);
                let _ = end_response(
                    &self.shared,
                    self.state.outer.clone(),
                    self.id,
                    trailers,
                    pending,
                );
            }
            // Still being answered: the end goes when the answer does.
            None => held.released = Some(late),
        }
    }
}

impl Drop for HeldEnd {
    fn drop(&mut self) {
        if !self.done {
            self.let_go(LateLog::default());
        }
    }
}

/// Sends a response's end, or leaves it to the holder of its
/// [`HeldEnd`] while that holds it.
fn end_response(
    shared: &Shared,
    held: Option<Arc<HeldState>>,
    id: u64,
    trailers: Vec<Header>,
    mut late: LateLog,
) -> Result<()> {
    if let Some(state) = held {
        let mut guard = lock(&state.held);
        match guard.released.take() {
            Some(extra) => {
                drop(guard);
                late.merge(extra);
                return end_response(shared, state.outer.clone(), id, trailers, late);
            }
            None => {
                guard.pending = Some((trailers, late));
                return Ok(());
            }
        }
    }
    shared.send(&ToListener::ResponseEnd {
        request: id,
        trailers,
        late_log: late,
    })
}

impl Deref for Request {
    type Target = RequestHead;
    fn deref(&self) -> &RequestHead {
        &self.head
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("head", &self.head).finish()
    }
}

impl Request {
    /// Holds back the end of this request's response, whoever answers
    /// it, until the [`HeldEnd`] is released: for a program that hands
    /// the request on (HSE_REQ_EXEC_URL) and still adds to its log line
    /// afterwards.
    pub fn hold_end(&mut self) -> HeldEnd {
        let state = Arc::new(HeldState {
            held: Mutex::default(),
            outer: self.held.take(),
        });
        self.held = Some(state.clone());
        HeldEnd {
            state,
            shared: self.shared.clone(),
            id: self.head.id,
            done: false,
        }
    }

    /// The request's head, to change before the request is handed on: a
    /// child request made from it (ISAPI's HSE_REQ_EXEC_URL) answers on the
    /// same connection.
    /// The head to change (copied first if it is shared).
    pub fn head_mut(&mut self) -> &mut RequestHead {
        Arc::make_mut(&mut self.head)
    }

    /// The head, shared (no copy).
    pub fn shared_head(&self) -> Arc<RequestHead> {
        self.head.clone()
    }

    /// Gives the request `body` in place of the client's, as a child
    /// request made from it (ISAPI's HSE_REQ_EXEC_URL with an entity)
    /// needs: what the client sent beyond what was read is not read.
    pub fn replace_body(&mut self, body: Bytes) {
        self.head_mut().body = if body.is_empty() {
            proto::BodyInfo::None
        } else {
            proto::BodyInfo::Length(body.len() as u64)
        };
        self.replacement = Some(Some(body));
    }

    /// The first header field of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.headers.get(name)
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The next piece of the request body; `None` at its end.
    pub async fn body_chunk(&mut self) -> Result<Option<Bytes>> {
        if let Some(replacement) = self.replacement.as_mut() {
            return Ok(replacement.take().filter(|b| !b.is_empty()));
        }
        want_body(
            &mut self.body_wanted,
            self.body_done,
            &self.shared,
            self.head.id,
        )?;
        let chunk = next_body_chunk(
            &mut self.body,
            &mut self.body_done,
            &mut self.unacked,
            &mut self.trailers,
            &self.shared,
            self.head.id,
        )
        .await?;
        self.body_read += chunk.as_ref().map_or(0, |c| c.len() as u64);
        Ok(chunk)
    }

    /// Takes the client's connection over, as HTTP.SYS's opaque mode
    /// does: the listener stops reading and writing it (and logs the
    /// request with `status`), and the program then reads the rest of the
    /// client's bytes (the body not yet read, and whatever follows it,
    /// unframed) and writes its own response, head included. The program
    /// must be in the listener's process; elsewhere this is an error and
    /// the connection is closed.
    pub async fn take_connection(mut self, status: u16) -> Result<TakenConnection> {
        let (token, handed) = crate::handoff::expect()?;
        self.answered = true;
        let id = self.head.id;
        let sent = self.shared.send(&ToListener::TakeConnection {
            request: id,
            token,
            status,
        });
        let handoff = match sent {
            Ok(()) => tokio::time::timeout(std::time::Duration::from_secs(30), handed).await,
            Err(e) => {
                crate::handoff::forget(&token);
                lock(&self.shared.requests).remove(&id);
                return Err(e);
            }
        };
        let Ok(Ok(handoff)) = handoff else {
            crate::handoff::forget(&token);
            lock(&self.shared.requests).remove(&id);
            return Err(Error::Io(std::io::Error::other(
                "the listener did not hand the connection over (the program is not in its \
                 process, or the client went away)",
            )));
        };
        // The body bytes the listener passed on before it let go come
        // first, then what it had read past them.
        let mut pending = BytesMut::new();
        let mut wanted = handoff.forwarded.saturating_sub(self.body_read);
        while wanted > 0 && !self.body_done {
            let Some(body) = self.body.as_mut() else {
                break;
            };
            match body.recv().await {
                Some(BodyEvent::Data(data)) => {
                    wanted = wanted.saturating_sub(data.len() as u64);
                    pending.extend_from_slice(&data);
                }
                Some(BodyEvent::Trailers(_)) => {}
                Some(BodyEvent::End) | Some(BodyEvent::Aborted) | None => break,
            }
        }
        pending.extend_from_slice(&handoff.buffered);
        lock(&self.shared.requests).remove(&id);
        Ok(TakenConnection {
            pending: pending.freeze(),
            stream: handoff.stream,
            _held: handoff.held,
        })
    }

    /// Takes the rest of the body out of the request, to read while the
    /// response is being sent (a CGI program's input and output flow at
    /// the same time). The request itself then has no more body.
    pub fn take_body(&mut self) -> BodyReader {
        let reader = BodyReader {
            id: self.head.id,
            body: self.body.take(),
            done: self.body_done,
            unacked: std::mem::take(&mut self.unacked),
            trailers: Vec::new(),
            shared: self.shared.clone(),
            replacement: self.replacement.take(),
            wanted: self.body_wanted,
        };
        self.body_done = true;
        self.replacement = Some(None);
        reader
    }

    /// The whole body, refused beyond `limit` bytes.
    pub async fn read_body(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.body_chunk().await? {
            if all.len() + chunk.len() > limit {
                return Err(Error::TooLarge(limit));
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    /// The trailer fields of a chunked body, once it is read.
    pub fn trailers(&self) -> &[Header] {
        &self.trailers
    }

    /// Answers with a complete response. A body within the flow-control
    /// window goes out with its head in a single write, at once: the
    /// future returned is then ready (and small, in the futures that
    /// await it). A larger body goes as the window allows.
    pub fn respond(self, response: Response) -> Responding {
        if response.body.len() as u64 > proto::BODY_WINDOW {
            Responding::Windowed(Box::pin(self.respond_windowed(response)))
        } else {
            Responding::Sent(std::future::ready(self.respond_at_once(response)))
        }
    }

    async fn respond_windowed(self, response: Response) -> Result<()> {
        let body = response.body.clone();
        let mut writer = self.start(response.into_head(ResponseBody::Length(body.len() as u64)))?;
        writer.send(&body).await?;
        writer.finish(Vec::new()).await
    }

    fn respond_at_once(self, response: Response) -> Result<()> {
        let body = response.body.clone();
        let head = response.into_head(ResponseBody::Length(body.len() as u64));
        proto::validate_response_head(&head).map_err(Error::InvalidResponse)?;
        let mut this = self;
        this.answered = true;
        let id = this.head.id;
        let mut frames = Vec::with_capacity(body.len() + 256);
        encode_message(&ToListener::Respond { request: id, head }, &mut frames);
        // The end flag on the body frame completes the response, unless
        // its end is held.
        let held = this.held.take();
        encode_response_body(id, held.is_none(), &body, &mut frames);
        lock(&this.shared.requests).remove(&id);
        this.shared
            .tx
            .send(frames.into())
            .map_err(|_| Error::Closed)?;
        match held {
            Some(held) => {
                end_response(&this.shared, Some(held), id, Vec::new(), LateLog::default())
            }
            None => Ok(()),
        }
    }

    /// Starts a response whose body is sent piece by piece (chunked to
    /// HTTP/1.1 clients); `length` if it is known. The head goes at once:
    /// the future returned is ready (and small).
    pub fn start_response(
        self,
        response: Response,
        length: Option<u64>,
    ) -> std::future::Ready<Result<ResponseWriter>> {
        let body = match length {
            Some(n) => ResponseBody::Length(n),
            None => ResponseBody::Streamed,
        };
        std::future::ready(self.start(response.into_head(body)))
    }

    fn start(mut self, head: ResponseHead) -> Result<ResponseWriter> {
        proto::validate_response_head(&head).map_err(Error::InvalidResponse)?;
        self.shared.send(&ToListener::Respond {
            request: self.head.id,
            head,
        })?;
        self.answered = true;
        Ok(ResponseWriter {
            id: self.head.id,
            shared: self.shared.clone(),
            window: self.window.clone(),
            finished: false,
            held: self.held.take(),
        })
    }

    /// Gives the request up: its client's connection is closed.
    pub fn abort(mut self) {
        self.answered = true;
        let _ = self.shared.send(&ToListener::Abort {
            request: self.head.id,
        });
        lock(&self.shared.requests).remove(&self.head.id);
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.shared.send(&ToListener::Abort {
                request: self.head.id,
            });
            lock(&self.shared.requests).remove(&self.head.id);
        }
    }
}

/// The answer of [`Request::respond`]: already sent, or being sent as the
/// flow-control window allows.
pub enum Responding {
    Sent(std::future::Ready<Result<()>>),
    Windowed(std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>),
}

impl std::future::Future for Responding {
    type Output = Result<()>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        match self.get_mut() {
            Responding::Sent(result) => std::pin::Pin::new(result).poll(cx),
            Responding::Windowed(sending) => sending.as_mut().poll(cx),
        }
    }
}

/// A client connection a program took over ([`Request::take_connection`]).
pub struct TakenConnection {
    /// Bytes read from the client before the hand-over, read first.
    pending: Bytes,
    stream: Box<dyn crate::handoff::Stream>,
    /// The listener's count of the connection, until it is dropped.
    _held: Box<dyn std::any::Any + Send>,
}

impl tokio::io::AsyncRead for TakenConnection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.remaining());
            buf.put_slice(&self.pending[..n]);
            self.pending.advance(n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TakenConnection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request's body taken out of it ([`Request::take_body`]).
pub struct BodyReader {
    id: u64,
    body: Option<mpsc::UnboundedReceiver<BodyEvent>>,
    done: bool,
    unacked: u64,
    trailers: Vec<Header>,
    shared: Arc<Shared>,
    replacement: Option<Option<Bytes>>,
    /// The listener was told the body is wanted.
    wanted: bool,
}

impl BodyReader {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        if let Some(replacement) = self.replacement.as_mut() {
            return Ok(replacement.take().filter(|b| !b.is_empty()));
        }
        want_body(&mut self.wanted, self.done, &self.shared, self.id)?;
        next_body_chunk(
            &mut self.body,
            &mut self.done,
            &mut self.unacked,
            &mut self.trailers,
            &self.shared,
            self.id,
        )
        .await
    }
}

/// Whether the client waits for `100 Continue` before it sends the body
/// (the listener passes on no other expectation).
fn expects_continue(head: &RequestHead) -> bool {
    head.headers.get("expect").is_some()
}

/// Tells the listener, once, that the body is being read: its `100
/// Continue` goes out then.
fn want_body(wanted: &mut bool, done: bool, shared: &Shared, id: u64) -> Result<()> {
    if !*wanted && !done {
        *wanted = true;
        shared.send(&ToListener::WantBody { request: id })?;
    }
    Ok(())
}

/// The next piece of a body from the listener, acknowledging what was
/// taken so the client may send more.
async fn next_body_chunk(
    body: &mut Option<mpsc::UnboundedReceiver<BodyEvent>>,
    done: &mut bool,
    unacked: &mut u64,
    trailers: &mut Vec<Header>,
    shared: &Shared,
    id: u64,
) -> Result<Option<Bytes>> {
    loop {
        if *done {
            return Ok(None);
        }
        // Without a channel there is no body (or it was taken).
        let Some(receiver) = body.as_mut() else {
            return Ok(None);
        };
        match receiver.recv().await {
            Some(BodyEvent::Data(data)) => {
                *unacked += data.len() as u64;
                if *unacked >= proto::ACK_STEP {
                    shared.send(&ToListener::BodyConsumed {
                        request: id,
                        bytes: std::mem::take(unacked),
                    })?;
                }
                return Ok(Some(data));
            }
            Some(BodyEvent::Trailers(t)) => *trailers = t,
            Some(BodyEvent::End) => *done = true,
            Some(BodyEvent::Aborted) | None => return Err(Error::Aborted),
        }
    }
}

/// A response being sent.
pub struct ResponseWriter {
    id: u64,
    shared: Arc<Shared>,
    window: Arc<Semaphore>,
    finished: bool,
    held: Option<Arc<HeldState>>,
}

impl ResponseWriter {
    /// Sends body bytes, waiting while the client is slower than this
    /// program (the listener acknowledges what it has written).
    pub async fn send(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(proto::MAX_BODY_CHUNK) {
            let permit = self
                .window
                .acquire_many(piece.len() as u32)
                .await
                .map_err(|_| Error::Aborted)?;
            permit.forget();
            let mut frame = Vec::with_capacity(piece.len() + 14);
            encode_response_body(self.id, false, piece, &mut frame);
            self.shared
                .tx
                .send(frame.into())
                .map_err(|_| Error::Closed)?;
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `offset` as body bytes. The listener
    /// sends them from the file itself (sendfile), without the bytes
    /// passing through this program; the file must hold them.
    pub async fn send_file(&mut self, file: &std::fs::File, offset: u64, len: u64) -> Result<()> {
        let fd = std::os::fd::OwnedFd::from(file.try_clone()?);
        let mut frame = Vec::with_capacity(32);
        encode_message(
            &ToListener::SendFile {
                request: self.id,
                offset,
                len,
            },
            &mut frame,
        );
        self.shared
            .tx
            .send(Outgoing {
                bytes: frame,
                fd: Some(fd),
            })
            .map_err(|_| Error::Closed)
    }

    /// Completes the response, with trailer fields for a chunked one.
    pub async fn finish(self, trailers: Vec<Header>) -> Result<()> {
        self.finish_with_log(trailers, LateLog::default()).await
    }

    /// Completes the response, with changes to its log line decided
    /// since its head went (what an ISAPI extension appends once its
    /// head has gone).
    pub async fn finish_with_log(mut self, trailers: Vec<Header>, late: LateLog) -> Result<()> {
        self.finished = true;
        lock(&self.shared.requests).remove(&self.id);
        end_response(&self.shared, self.held.take(), self.id, trailers, late)
    }
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.shared.send(&ToListener::Abort { request: self.id });
            lock(&self.shared.requests).remove(&self.id);
        }
    }
}

/// A response to send.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: Option<String>,
    pub headers: HeaderBlock,
    pub body: Bytes,
    pub cache: Option<CachePolicy>,
    pub log: Option<LogInfo>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: None,
            headers: HeaderBlock::new(),
            body: Bytes::new(),
            cache: None,
            log: None,
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Response {
        self.headers.push(name, value.as_ref());
        self
    }

    pub fn reason(mut self, reason: &str) -> Response {
        self.reason = Some(reason.to_string());
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Response {
        self.body = body.into();
        self
    }

    /// Lets the listener keep the response and serve it itself.
    pub fn cache(mut self, policy: CachePolicy) -> Response {
        self.cache = Some(policy);
        self
    }

    /// Fields for the request log that only the application knows.
    pub fn log(mut self, log: LogInfo) -> Response {
        self.log = Some(log);
        self
    }

    fn into_head(self, body: ResponseBody) -> ResponseHead {
        ResponseHead {
            status: self.status,
            reason: self.reason,
            headers: self.headers,
            body,
            cache: self.cache,
            log: self.log,
        }
    }
}
