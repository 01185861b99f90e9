//! Asynchronous calls ([MS-WMI] 3.1.1.1.3): GetObjectAsync, ExecQueryAsync,
//! ExecMethodAsync, ExecNotificationQueryAsync and the rest take the
//! client's IWbemObjectSink and return at once; the service then calls the
//! sink back (`dcom::callback`) with the results (Indicate) and the final
//! status (SetStatus, with the result string and, on failure, an
//! `__ExtendedStatus` error object saying why).
//!
//! The AsyncOperationTable is [`Operations`]: CancelAsyncCall finds an
//! operation by its sink's object and stops it; the sink then gets
//! WBEM_E_CALL_CANCELLED. A sink that fails a call (or an Indicate that
//! answers an error) ends its operation, as 3.2.4.1.1 says. Objects go
//! marshalled one by one as DCOM does (never as ObjectArrays: a sink's
//! WBEM_S_NEW_STYLE allows them but does not ask for them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dcom::callback::{this, timed, Callback, CallbackError, Target};
use dcom::exporter::identity;
use dcom::types::bstr;
use msrpc::ndr::{ConformantArray, Unique};
use msrpc::server::Call;
use wmio::{Body, ClassDef, Object, Property, Slot, Value};

use crate::interfaces::{Itf, WbemObjectSinkClient};
use crate::service::{object_pointer, EventFeed, Refusal, Wbem};
use crate::status::*;
use crate::IID_IWBEM_OBJECT_SINK;

/// The most asynchronous operations pending at once, across clients (the
/// MaxRequestLimit of 3.1.4.3).
pub const MAX_OPERATIONS: usize = 256;
/// The most objects in one Indicate.
const INDICATE_OBJECTS: usize = 64;
/// The encoded size beyond which an Indicate's batch is cut.
const INDICATE_BYTES: usize = 512 * 1024;
/// How long one wait for events lasts before the feed checks its sink is
/// still wanted.
const EVENT_SLICE_MS: u32 = 1000;

/// What a finished operation gives its sink: objects (Indicate), then the
/// final status and the result string (SetStatus).
pub(crate) struct Outcome {
    pub objects: Vec<Object>,
    pub status: u32,
    pub text: Option<String>,
}

impl Outcome {
    pub fn objects(objects: Vec<Object>) -> Outcome {
        Outcome {
            objects,
            status: WBEM_S_NO_ERROR,
            text: None,
        }
    }
}

/// What an asynchronous operation does.
pub(crate) enum Work {
    /// Runs once (off the runtime's threads: it reads or writes the
    /// metabase, or waits for the activation service).
    Once(Box<dyn FnOnce() -> Result<Outcome, Refusal> + Send>),
    /// Delivers events as they happen, until cancelled or the sink fails.
    Events(Arc<EventFeed>),
}

struct Pending {
    id: u64,
    target: Target,
    /// Why it stops: 0 while it runs, else the final status it ends with.
    cancel: tokio::sync::watch::Sender<u32>,
}

/// The operations whose sinks are being called (AsyncOperationTable).
#[derive(Default)]
pub struct Operations {
    pending: Mutex<Vec<Pending>>,
    next_id: AtomicU64,
}

impl Operations {
    fn lock(&self) -> MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, target: Target) -> Option<(u64, tokio::sync::watch::Receiver<u32>)> {
        let mut pending = self.lock();
        if pending.len() >= MAX_OPERATIONS {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (cancel, cancelled) = tokio::sync::watch::channel(0);
        pending.push(Pending { id, target, cancel });
        Some((id, cancelled))
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|p| p.id != id);
    }

    /// Cancels every operation whose sink is `target`'s object; whether
    /// there was one.
    fn cancel(&self, target: &Target) -> bool {
        let pending = self.lock();
        let mut found = false;
        // One cancelled already is as good as gone: its sink is being told.
        let live = pending
            .iter()
            .filter(|p| p.target.same_object(target) && *p.cancel.borrow() == 0);
        for p in live {
            let _ = p.cancel.send(WBEM_E_CALL_CANCELLED);
            found = true;
        }
        found
    }

    /// The service stops: every operation ends, its sink told
    /// WBEM_E_SHUTTING_DOWN.
    pub fn shutdown(&self) {
        for p in self.lock().iter() {
            let _ = p.cancel.send(WBEM_E_SHUTTING_DOWN);
        }
    }

    /// How many operations are pending.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

/// The sink an asynchronous call names, or the HRESULT it is refused with.
fn sink_target(call: &Call<'_>, what: &str, sink: &Itf) -> Result<Target, u32> {
    let Some(pointer) = sink.get() else {
        return Err(WBEM_E_INVALID_PARAMETER);
    };
    Target::of_pointer(call, pointer).map_err(|e| {
        tracing::warn!(client = ?identity(call), "WMI {what}: the response handler cannot be called back: {e}");
        WBEM_E_INVALID_PARAMETER
    })
}

/// Starts an asynchronous operation whose results go to `sink`: the
/// HRESULT the call itself answers.
pub(crate) fn start(
    wbem: &Arc<Wbem>,
    call: &Call<'_>,
    what: &'static str,
    namespace: crate::service::Namespace,
    sink: &Itf,
    work: Work,
) -> u32 {
    let target = match sink_target(call, what, sink) {
        Ok(t) => t,
        Err(hr) => return hr,
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return WBEM_E_FAILED;
    };
    let Some((id, cancelled)) = wbem.operations.add(target.clone()) else {
        tracing::warn!("WMI {what}: refused: {MAX_OPERATIONS} asynchronous operations are pending");
        return WBEM_E_QUOTA_VIOLATION;
    };
    let client = identity(call);
    tracing::debug!(?client, resolver = %target.resolver, "WMI {what}: started");
    let wbem = wbem.clone();
    runtime.spawn(async move {
        let server = wbem.server_name.clone();
        let delivery = Delivery {
            what,
            decoration: (server, namespace.path().to_string()),
            cancelled,
        };
        if let Err(e) = delivery.run(&wbem, &target, work).await {
            tracing::warn!(?client, resolver = %target.resolver, "WMI {what}: the client's sink was dropped: {e}");
        }
        wbem.operations.remove(id);
    });
    WBEM_S_NO_ERROR
}

/// CancelAsyncCall: the HRESULT it answers.
pub(crate) fn cancel(wbem: &Wbem, call: &Call<'_>, sink: &Itf) -> u32 {
    match sink_target(call, "CancelAsyncCall", sink) {
        Ok(target) if wbem.operations.cancel(&target) => WBEM_S_NO_ERROR,
        Ok(_) => WBEM_E_NOT_FOUND,
        Err(hr) => hr,
    }
}

/// One operation's calls to its sink.
struct Delivery {
    what: &'static str,
    /// The server and namespace of the error object.
    decoration: (String, String),
    /// Why the operation stops (0 while it runs).
    cancelled: tokio::sync::watch::Receiver<u32>,
}

/// Returns, with the status to end with, when the operation is stopped
/// (never, if its table entry goes without).
async fn until_cancelled(mut cancelled: tokio::sync::watch::Receiver<u32>) -> u32 {
    let status = cancelled.wait_for(|c| *c != 0).await.map(|s| *s);
    match status {
        Ok(status) => status,
        Err(_) => std::future::pending().await,
    }
}

/// How an operation ends: its status and result string, or a failure.
type Final = Result<(u32, Option<String>), Refusal>;

/// The final status of a stopped operation, in words.
fn stopped(status: u32) -> Final {
    let why = match status {
        WBEM_E_SHUTTING_DOWN => "the service is stopping",
        _ => "the call was cancelled (CancelAsyncCall)",
    };
    Err((status, why.into()))
}

/// The final status when the sink refused what it was sent.
fn refused_by_sink() -> Final {
    Err((
        WBEM_E_CALL_CANCELLED,
        "the sink refused Indicate; the call is cancelled".into(),
    ))
}

/// Whether an HRESULT is a failure.
fn failed(hr: u32) -> bool {
    hr & 0x8000_0000 != 0
}

impl Delivery {
    async fn run(
        mut self,
        wbem: &Arc<Wbem>,
        target: &Target,
        work: Work,
    ) -> Result<(), CallbackError> {
        let mut callback = Callback::connect(target, IID_IWBEM_OBJECT_SINK).await?;
        let mut sink = WbemObjectSinkClient::bind(&mut callback.conn)
            .await?
            .on_object(callback.ipid);
        match work {
            Work::Once(operation) => {
                let outcome = tokio::select! {
                    done = tokio::task::spawn_blocking(operation) => done.unwrap_or_else(|_| {
                        Err((WBEM_E_FAILED, "the operation failed unexpectedly".into()))
                    }),
                    status = until_cancelled(self.cancelled.clone()) => {
                        return self.finish(&mut sink, stopped(status)).await;
                    }
                };
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(refusal) => return self.finish(&mut sink, Err(refusal)).await,
                };
                if let Some(end) = self.deliver(&mut sink, &outcome.objects).await? {
                    return self.finish(&mut sink, end).await;
                }
                self.finish(&mut sink, Ok((outcome.status, outcome.text)))
                    .await
            }
            Work::Events(feed) => {
                let mut events = feed_events(wbem.clone(), feed);
                loop {
                    tokio::select! {
                        batch = events.recv() => match batch {
                            Some(Ok(objects)) => {
                                if let Some(end) = self.deliver(&mut sink, &objects).await? {
                                    return self.finish(&mut sink, end).await;
                                }
                            }
                            Some(Err(hr)) => {
                                return self.finish(&mut sink, Err((hr, "the event subscription ended".into()))).await;
                            }
                            None => return Ok(()),
                        },
                        status = until_cancelled(self.cancelled.clone()) => {
                            return self.finish(&mut sink, stopped(status)).await;
                        }
                        pinged = callback.pinger.tick() => pinged?,
                    }
                }
            }
        }
    }

    /// Indicates `objects`, in batches; the final status to end with when
    /// the operation was stopped meanwhile or the sink refused them.
    async fn deliver(
        &mut self,
        sink: &mut WbemObjectSinkClient<'_>,
        objects: &[Object],
    ) -> Result<Option<Final>, CallbackError> {
        for batch in batches(objects) {
            let stop = *self.cancelled.borrow();
            if stop != 0 {
                return Ok(Some(stopped(stop)));
            }
            if !self.indicate(sink, batch).await? {
                return Ok(Some(refused_by_sink()));
            }
        }
        Ok(None)
    }

    /// Indicate: whether the sink took the objects.
    async fn indicate(
        &mut self,
        sink: &mut WbemObjectSinkClient<'_>,
        pointers: Vec<Itf>,
    ) -> Result<bool, CallbackError> {
        let (_, hr) = timed(
            "Indicate",
            sink.indicate(this(), pointers.len() as u32, ConformantArray(pointers)),
        )
        .await?;
        if failed(hr) {
            tracing::debug!(hr, "WMI {}: the sink refused Indicate", self.what);
            return Ok(false);
        }
        Ok(true)
    }

    /// The final SetStatus: the status and result string, or the failure
    /// with its error object.
    async fn finish(
        &self,
        sink: &mut WbemObjectSinkClient<'_>,
        result: Final,
    ) -> Result<(), CallbackError> {
        let (status, text, error) = match result {
            Ok((status, text)) => (status, text, None),
            Err((hr, why)) => {
                tracing::info!("WMI {}: {why} ({hr:#010x})", self.what);
                let error = extended_status(hr, self.what, &why, &self.decoration);
                (hr, None, Some(error))
            }
        };
        let text = match text {
            Some(t) => bstr(&t),
            None => Unique::new(None),
        };
        let error = Unique::new(error.as_ref().map(object_pointer));
        timed(
            "SetStatus",
            sink.set_status(this(), WBEM_STATUS_COMPLETE, status, text, error),
        )
        .await?;
        Ok(())
    }
}

/// The objects marshalled (each once), in batches of at most
/// [`INDICATE_OBJECTS`] objects and about [`INDICATE_BYTES`].
fn batches(objects: &[Object]) -> Vec<Vec<Itf>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for object in objects {
        let pointer = object_pointer(object);
        bytes += pointer.data.len();
        batch.push(Unique::new(Some(pointer)));
        if batch.len() >= INDICATE_OBJECTS || bytes >= INDICATE_BYTES {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// The events of a feed as they happen, taken on a thread of their own
/// (the feed waits on the metabase's notifications); it stops when the
/// receiver goes.
fn feed_events(
    wbem: Arc<Wbem>,
    feed: Arc<EventFeed>,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Object>, u32>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let longest = wbem.exporter.ping_timeout();
        loop {
            let alive = || !tx.is_closed();
            let (objects, status) = feed.take(
                &wbem.files,
                INDICATE_OBJECTS,
                EVENT_SLICE_MS,
                longest,
                &alive,
            );
            if !objects.is_empty() && tx.blocking_send(Ok(objects)).is_err() {
                return;
            }
            if failed(status) {
                let _ = tx.blocking_send(Err(status));
                return;
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// `__ExtendedStatus` (a system class: `__NotifyStatus`'s StatusCode and
/// what went wrong in words), the error object of a failed operation.
fn extended_status_class() -> ClassDef {
    let string = |name: &str| Property {
        name: name.into(),
        cim_type: wmio::CimType::STRING,
        inherited: false,
        origin: 2,
        qualifiers: vec![wmio::Qualifier::new(
            "CIMTYPE",
            3,
            Value::String("string".into()),
        )],
        default: None,
    };
    ClassDef {
        name: Some("__ExtendedStatus".into()),
        derivation: vec!["__NotifyStatus".into(), "__SystemClass".into()],
        qualifiers: Vec::new(),
        properties: vec![
            string("Description"),
            string("Operation"),
            string("ParameterInfo"),
            string("ProviderName"),
            Property {
                name: "StatusCode".into(),
                cim_type: wmio::CimType::UINT32,
                inherited: true,
                origin: 0,
                qualifiers: vec![wmio::Qualifier::new(
                    "CIMTYPE",
                    3 | wmio::flavor::ORIGIN_PROPAGATED,
                    Value::String("uint32".into()),
                )],
                default: None,
            },
        ],
        methods: Vec::new(),
    }
}

/// The error object of a failed operation.
pub(crate) fn extended_status(
    hr: u32,
    operation: &str,
    description: &str,
    decoration: &(String, String),
) -> Object {
    let text = |t: &str| Slot::Value(Value::String(t.into()));
    Object {
        decoration: Some(decoration.clone()),
        extra_flags: 0,
        body: Body::Instance(wmio::Instance {
            class: Arc::new(extended_status_class()),
            values: vec![
                text(description),
                text(operation),
                Slot::Null,
                text("IIS_PROVIDER"),
                Slot::Value(Value::Uint32(hr)),
            ],
            qualifiers: Vec::new(),
        }),
    }
}

/// What a client's sink was told.
#[derive(Debug)]
pub enum SinkEvent {
    /// Indicate: result objects.
    Objects(Vec<Object>),
    /// SetStatus: the final status (or progress), the result string, and
    /// the error object of a failure.
    Status {
        flags: u32,
        status: u32,
        text: Option<String>,
        error: Option<Box<Object>>,
    },
}

/// A sink of a [`SinkHost`], for one asynchronous call.
pub struct Sink {
    /// The sink as the call takes it.
    pub pointer: dcom::types::MInterfacePointer,
    /// What the server called it with, in order.
    pub events: tokio::sync::mpsc::UnboundedReceiver<SinkEvent>,
    oid: u64,
    exporter: Arc<dcom::Exporter>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.exporter.forget(self.oid);
    }
}

/// A client's side of asynchronous calls: a host serving IWbemObjectSink
/// objects the server calls back.
pub struct SinkHost {
    host: dcom::callback::ObjectHost,
}

struct SinkObject {
    events: tokio::sync::mpsc::UnboundedSender<SinkEvent>,
}

/// Serves IWbemObjectSink on a host's objects.
struct SinkService(Arc<dcom::Exporter>);

impl crate::interfaces::WbemObjectSink for SinkService {
    fn indicate(
        &self,
        call: &Call,
        _this: dcom::types::OrpcThis,
        count: u32,
        objects: ConformantArray<Itf>,
    ) -> msrpc::server::CallResult<(dcom::types::OrpcThat, u32)> {
        let sink = self.0.object::<SinkObject>(call)?;
        let answer = |hr| Ok((dcom::types::OrpcThat::default(), hr));
        if count as usize != objects.0.len() {
            return answer(WBEM_E_INVALID_PARAMETER);
        }
        let mut decoded = Vec::with_capacity(objects.0.len());
        for pointer in &objects.0 {
            match crate::service::object_of(pointer) {
                Ok(o) => decoded.push(o),
                Err((hr, why)) => {
                    tracing::warn!("IWbemObjectSink::Indicate: an object does not decode: {why}");
                    return answer(hr);
                }
            }
        }
        let _ = sink.events.send(SinkEvent::Objects(decoded));
        answer(WBEM_S_NO_ERROR)
    }

    fn set_status(
        &self,
        call: &Call,
        _this: dcom::types::OrpcThis,
        flags: u32,
        status: u32,
        text: dcom::types::Bstr,
        object: Itf,
    ) -> msrpc::server::CallResult<(dcom::types::OrpcThat, u32)> {
        let sink = self.0.object::<SinkObject>(call)?;
        let text = text.get().map(|_| dcom::types::bstr_text(&text));
        let error = crate::service::object_of(&object).ok().map(Box::new);
        let _ = sink.events.send(SinkEvent::Status {
            flags,
            status,
            text,
            error,
        });
        Ok((dcom::types::OrpcThat::default(), WBEM_S_NO_ERROR))
    }
}

impl SinkHost {
    /// Starts serving on `ip` (the address the server knows this machine
    /// by: the local end of the connection to it), on a free port.
    pub async fn start(ip: std::net::IpAddr) -> std::io::Result<SinkHost> {
        let host = dcom::callback::ObjectHost::start(ip, |server, exporter| {
            server.register(
                crate::interfaces::WbemObjectSinkServer(SinkService(exporter.clone())),
                msrpc::server::auth_level::NONE,
                false,
            );
        })
        .await?;
        Ok(SinkHost { host })
    }

    /// A new sink, for one call.
    pub fn sink(&self) -> Result<Sink, u32> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let oid = self.host.export(
            Arc::new(SinkObject { events: tx }),
            IID_IWBEM_OBJECT_SINK,
            "IWbemObjectSink",
        )?;
        let pointer = self
            .host
            .interface_pointer(oid, IID_IWBEM_OBJECT_SINK)
            .inspect_err(|_| self.host.exporter().forget(oid))?;
        Ok(Sink {
            pointer,
            events,
            oid,
            exporter: self.host.exporter().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_object_round_trips_and_names_the_failure() {
        let object = extended_status(
            WBEM_E_NOT_FOUND,
            "GetObjectAsync",
            "no instance IIsWebServer='W3SVC/9'",
            &("WEB1".into(), "root\\MicrosoftIISv2".into()),
        );
        let decoded = wmio::decode_unit(&wmio::encode_unit(&object)).unwrap();
        assert_eq!(decoded.class_name(), "__ExtendedStatus");
        let Body::Instance(instance) = &decoded.body else {
            panic!("an instance");
        };
        assert_eq!(
            instance.get("StatusCode"),
            Some(&Value::Uint32(WBEM_E_NOT_FOUND))
        );
        assert_eq!(
            instance.get("Description"),
            Some(&Value::String("no instance IIsWebServer='W3SVC/9'".into()))
        );
        assert_eq!(instance.get("ParameterInfo"), None);
    }

    #[test]
    fn batches_are_cut_by_count() {
        let object = extended_status(1, "x", "y", &("s".into(), "n".into()));
        let objects = vec![object; 150];
        let sizes: Vec<usize> = batches(&objects).iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 22]);
        assert!(batches(&[]).is_empty());
    }
}
