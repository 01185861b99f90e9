//! The admin base's change notifications on the wire: IIS's connectable
//! object. An IMSAdminBaseW object is also an IConnectionPointContainer
//! whose one connection point is for IMSAdminBaseSinkW; a client advises
//! its sink there, and the service calls it back — SinkNotify with the
//! metabase's own change notifications (MD_CHANGE_OBJECT_W lists of at
//! most [`MD_MAX_CHANGE_ENTRIES`]), ShutdownNotify when the service stops.
//! IConnectionPoint and IConnectionPointContainer are COM's (MSDN
//! "Connectable objects", named by [MS-OAUT] <29>); IMSAdminBaseSinkW and
//! MD_CHANGE_OBJECT_W are the IIS SDK's (iadmw.h, mddefw.h).
//!
//! Calling a sink back is DCOM from the other side ([`dcom::callback`]:
//! resolved at the client's own resolver, at the address the Advise came
//! from, pinged while held, called unauthenticated). A sink that cannot be
//! reached, fails a call, or falls [`MAX_PENDING`] notifications behind is
//! dropped, with a log line.
//!
//! [`SinkHost`] is the client's side: a [`dcom::callback::ObjectHost`]
//! serving one IMSAdminBaseSinkW object, whose calls arrive as
//! [`Notice`]s.

// The methods take the parameters their IDL gives them.
#![allow(clippy::too_many_arguments)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use dcom::callback::{this, timed, Callback, CallbackError, ObjectHost, Target, TargetError};
use dcom::exporter::identity;
use dcom::ids::{E_INVALIDARG, S_OK};
use dcom::types::{MInterfacePointer, OrpcThat, OrpcThis};
use dcom::{Created, Exporter};
use metabase::{ChangeBatch, MbPath};
use msrpc::ndr::{ConformantArray, Unique, WString};
use msrpc::server::{auth_level, Call, CallResult};
use msrpc::Uuid;

use crate::imsa::{AdminBaseObject, MsAdminBase};

/// IID_IConnectionPointContainer.
pub const IID_ICONNECTION_POINT_CONTAINER: Uuid = Uuid {
    time_low: 0xb196_b284,
    time_mid: 0xbab4,
    time_hi_and_version: 0x101a,
    clock_seq_and_node: [0xb6, 0x9c, 0x00, 0xaa, 0x00, 0x34, 0x1d, 0x07],
};

/// IID_IConnectionPoint.
pub const IID_ICONNECTION_POINT: Uuid = Uuid {
    time_low: 0xb196_b286,
    time_mid: 0xbab4,
    time_hi_and_version: 0x101a,
    clock_seq_and_node: [0xb6, 0x9c, 0x00, 0xaa, 0x00, 0x34, 0x1d, 0x07],
};

/// IID_IMSAdminBaseSink_W.
pub const IID_IMSADMIN_BASE_SINK_W: Uuid = Uuid {
    time_low: 0xa9e6_9612,
    time_mid: 0xb80d,
    time_hi_and_version: 0x11d0,
    clock_seq_and_node: [0xb9, 0xb9, 0x00, 0xa0, 0xc9, 0x22, 0xe7, 0x50],
};

/// The most change entries in one SinkNotify (mddefw.h), as IIS splits
/// its notifications.
pub const MD_MAX_CHANGE_ENTRIES: usize = 100;

/// The most notifications a sink may be behind before it is dropped.
pub const MAX_PENDING: usize = 1024;

/// CONNECT_E_NOCONNECTION: no such connection (Unadvise), or no such
/// connection point (FindConnectionPoint).
pub const CONNECT_E_NOCONNECTION: u32 = 0x8004_0200;
/// CONNECT_E_CANNOTCONNECT: the sink cannot be called back.
pub const CONNECT_E_CANNOTCONNECT: u32 = 0x8004_0202;
/// CONNECT_E_ADVISELIMIT: the service holds as many sinks as it takes.
pub const CONNECT_E_ADVISELIMIT: u32 = 0x8004_0201;
pub const E_NOTIMPL: u32 = 0x8000_4001;

/// The most sinks advised at once, across clients.
pub const MAX_SINKS: usize = 256;

/// MD_CHANGE_OBJECT_W (mddefw.h): what happened to one key.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct ChangeObject {
    /// The key's full path, ending in `/` as IIS sends it.
    pub path: Unique<WString>,
    /// MD_CHANGE_TYPE_* bits.
    pub change_type: u32,
    pub id_count: u32,
    /// The data IDs set or deleted.
    pub ids: Unique<ConformantArray<u32>>,
}

impl ChangeObject {
    /// The key's path without IIS's trailing `/`.
    pub fn key(&self) -> String {
        let path = self.path.get().map(|p| p.0.as_str()).unwrap_or("");
        match path.trim_end_matches('/') {
            "" => "/".into(),
            p => p.into(),
        }
    }

    pub fn data_ids(&self) -> &[u32] {
        self.ids.get().map(|a| a.0.as_slice()).unwrap_or(&[])
    }
}

/// IConnectionPointContainer's remote methods.
#[msrpc::interface(uuid = "b196b284-bab4-101a-b69c-00aa00341d07", version = "0.0")]
pub trait ConnectionPointContainer {
    /// EnumConnectionPoints.
    #[opnum(3)]
    fn enum_connection_points(
        &self,
        call: &Call,
        this: OrpcThis,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)>;

    /// FindConnectionPoint: the connection point for `riid`.
    #[opnum(4)]
    fn find_connection_point(
        &self,
        call: &Call,
        this: OrpcThis,
        riid: Uuid,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)>;
}

/// IConnectionPoint's remote methods.
#[msrpc::interface(uuid = "b196b286-bab4-101a-b69c-00aa00341d07", version = "0.0")]
pub trait ConnectionPoint {
    /// GetConnectionInterface: the IID of the sinks it takes.
    #[opnum(3)]
    fn get_connection_interface(
        &self,
        call: &Call,
        this: OrpcThis,
    ) -> CallResult<(OrpcThat, Uuid, u32)>;

    /// GetConnectionPointContainer.
    #[opnum(4)]
    fn get_connection_point_container(
        &self,
        call: &Call,
        this: OrpcThis,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)>;

    /// Advise: calls `sink` back from now on; the cookie to Unadvise with.
    #[opnum(5)]
    fn advise(
        &self,
        call: &Call,
        this: OrpcThis,
        sink: Unique<MInterfacePointer>,
    ) -> CallResult<(OrpcThat, u32, u32)>;

    /// Unadvise.
    #[opnum(6)]
    fn unadvise(&self, call: &Call, this: OrpcThis, cookie: u32) -> CallResult<(OrpcThat, u32)>;

    /// EnumConnections.
    #[opnum(7)]
    fn enum_connections(
        &self,
        call: &Call,
        this: OrpcThis,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)>;
}

/// IMSAdminBaseSinkW (iadmw.h): what the client serves.
#[msrpc::interface(uuid = "a9e69612-b80d-11d0-b9b9-00a0c922e750", version = "0.0")]
pub trait MsAdminBaseSinkW {
    /// SinkNotify: keys changed.
    #[opnum(3)]
    fn sink_notify(
        &self,
        call: &Call,
        this: OrpcThis,
        #[ndr(range(0, 100))] count: u32,
        changes: ConformantArray<ChangeObject>,
    ) -> CallResult<(OrpcThat, u32)>;

    /// ShutdownNotify: the service is stopping.
    #[opnum(4)]
    fn shutdown_notify(&self, call: &Call, this: OrpcThis) -> CallResult<(OrpcThat, u32)>;
}

/// What a sink is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Changes(Vec<ChangeObject>),
    Shutdown,
}

/// One committed change batch as SinkNotify lists, at most
/// [`MD_MAX_CHANGE_ENTRIES`] entries each.
pub fn change_lists(batch: &ChangeBatch) -> Vec<Vec<ChangeObject>> {
    let entries: Vec<ChangeObject> = batch
        .changes
        .iter()
        .map(|change| {
            // A rename names the key where it went (IIS sends the new
            // name, not the old).
            let path = change.new_path.as_ref().unwrap_or(&change.path);
            ChangeObject {
                path: Unique::new(Some(WString(wire_path(path)))),
                change_type: change.kind.0,
                id_count: change.ids.len() as u32,
                ids: Unique::new(Some(ConformantArray(change.ids.clone()))),
            }
        })
        .collect();
    entries
        .chunks(MD_MAX_CHANGE_ENTRIES)
        .map(<[ChangeObject]>::to_vec)
        .collect()
}

/// A key's path as IIS puts it in a change object: `/LM/W3SVC/1/`.
fn wire_path(path: &MbPath) -> String {
    let text = path.to_string();
    if text.ends_with('/') {
        text
    } else {
        text + "/"
    }
}

/// An advised sink, as the service holds it.
struct Advised {
    /// The connection point object it was advised on.
    point: u64,
    queue: tokio::sync::mpsc::Sender<Notice>,
}

/// The sinks advised on the admin base.
#[derive(Default)]
pub struct Sinks {
    advised: Mutex<HashMap<u32, Advised>>,
    next_cookie: AtomicU32,
}

impl Sinks {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Advised>> {
        self.advised.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells every sink about a committed change batch.
    pub fn publish(&self, batch: &ChangeBatch) {
        if self.lock().is_empty() {
            return;
        }
        let lists = change_lists(batch);
        self.tell_all(|queue| {
            lists
                .iter()
                .all(|list| queue.try_send(Notice::Changes(list.clone())).is_ok())
        });
    }

    /// Tells every sink the service stops.
    pub fn shutdown(&self) {
        self.tell_all(|queue| queue.try_send(Notice::Shutdown).is_ok());
    }

    fn tell_all(&self, tell: impl Fn(&tokio::sync::mpsc::Sender<Notice>) -> bool) {
        self.lock().retain(|cookie, sink| {
            if sink.queue.is_closed() {
                return false;
            }
            let kept = tell(&sink.queue);
            if !kept {
                tracing::warn!(
                    cookie,
                    "IMSAdminBaseSinkW: a sink fell {MAX_PENDING} notifications behind; it is dropped"
                );
            }
            kept
        });
    }

    /// How many sinks are advised.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn add(&self, point: u64, queue: tokio::sync::mpsc::Sender<Notice>) -> Option<u32> {
        let mut advised = self.lock();
        advised.retain(|_, s| !s.queue.is_closed());
        if advised.len() >= MAX_SINKS {
            return None;
        }
        let cookie = loop {
            let c = self
                .next_cookie
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if c != 0 && !advised.contains_key(&c) {
                break c;
            }
        };
        advised.insert(cookie, Advised { point, queue });
        Some(cookie)
    }

    fn remove(&self, point: u64, cookie: u32) -> bool {
        let mut advised = self.lock();
        match advised.get(&cookie) {
            Some(s) if s.point == point => {
                advised.remove(&cookie);
                true
            }
            _ => false,
        }
    }

    fn remove_point(&self, point: u64) {
        self.lock().retain(|_, s| s.point != point);
    }
}

/// A connection point object (FindConnectionPoint's answer): its sinks go
/// when it does (released, or its client stopped pinging).
pub struct ConnectionPointObject {
    id: u64,
    /// The container's object (GetConnectionPointContainer).
    container: u64,
    sinks: Weak<Sinks>,
}

impl Drop for ConnectionPointObject {
    fn drop(&mut self) {
        if let Some(sinks) = self.sinks.upgrade() {
            sinks.remove_point(self.id);
        }
    }
}

fn this_that() -> OrpcThat {
    OrpcThat::default()
}

impl ConnectionPointContainer for MsAdminBase {
    fn enum_connection_points(
        &self,
        call: &Call,
        _this: OrpcThis,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)> {
        self.exporter.object::<AdminBaseObject>(call)?;
        Ok((this_that(), Unique::new(None), E_NOTIMPL))
    }

    fn find_connection_point(
        &self,
        call: &Call,
        _this: OrpcThis,
        riid: Uuid,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)> {
        self.exporter.object::<AdminBaseObject>(call)?;
        let none = |hr| Ok((this_that(), Unique::new(None), hr));
        if riid != IID_IMSADMIN_BASE_SINK_W {
            return none(CONNECT_E_NOCONNECTION);
        }
        let Some(container) = self.exporter.oid_of_call(call) else {
            return none(CONNECT_E_NOCONNECTION);
        };
        let point = ConnectionPointObject {
            id: self.base.next_object_id(),
            container,
            sinks: Arc::downgrade(self.base.sinks()),
        };
        let created = Created {
            object: Arc::new(point),
            interfaces: vec![IID_ICONNECTION_POINT],
        };
        let oid = match self
            .exporter
            .export(created, identity(call), "IConnectionPoint")
        {
            Ok(oid) => oid,
            Err(hr) => return none(hr),
        };
        match self.exporter.marshal(call, oid, IID_ICONNECTION_POINT) {
            Ok(pointer) => Ok((this_that(), Unique::new(Some(pointer)), S_OK)),
            Err(hr) => {
                self.exporter.forget(oid);
                none(hr)
            }
        }
    }
}

impl ConnectionPoint for MsAdminBase {
    fn get_connection_interface(
        &self,
        call: &Call,
        _this: OrpcThis,
    ) -> CallResult<(OrpcThat, Uuid, u32)> {
        self.exporter.object::<ConnectionPointObject>(call)?;
        Ok((this_that(), IID_IMSADMIN_BASE_SINK_W, S_OK))
    }

    fn get_connection_point_container(
        &self,
        call: &Call,
        _this: OrpcThis,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)> {
        let point = self.exporter.object::<ConnectionPointObject>(call)?;
        match self
            .exporter
            .marshal(call, point.container, IID_ICONNECTION_POINT_CONTAINER)
        {
            Ok(pointer) => Ok((this_that(), Unique::new(Some(pointer)), S_OK)),
            Err(hr) => Ok((this_that(), Unique::new(None), hr)),
        }
    }

    fn advise(
        &self,
        call: &Call,
        _this: OrpcThis,
        sink: Unique<MInterfacePointer>,
    ) -> CallResult<(OrpcThat, u32, u32)> {
        let point = self.exporter.object::<ConnectionPointObject>(call)?;
        let refuse = |hr| Ok((this_that(), 0, hr));
        let Some(pointer) = sink.get() else {
            return refuse(E_INVALIDARG);
        };
        let target = match Target::of_pointer(call, pointer) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(client = ?identity(call), "IMSAdminBaseSinkW: Advise refused: {e}");
                return refuse(match e {
                    TargetError::Malformed(_) => E_INVALIDARG,
                    _ => CONNECT_E_CANNOTCONNECT,
                });
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return refuse(CONNECT_E_CANNOTCONNECT);
        };
        let (queue, notices) = tokio::sync::mpsc::channel(MAX_PENDING);
        let sinks = self.base.sinks().clone();
        let Some(cookie) = sinks.add(point.id, queue) else {
            tracing::warn!("IMSAdminBaseSinkW: Advise refused: {MAX_SINKS} sinks are advised");
            return refuse(CONNECT_E_ADVISELIMIT);
        };
        tracing::info!(cookie, client = ?identity(call), resolver = %target.resolver, "IMSAdminBaseSinkW: a sink is advised");
        let point_id = point.id;
        let weak = Arc::downgrade(&sinks);
        runtime.spawn(async move {
            if let Err(e) = call_back(&target, notices).await {
                tracing::warn!(cookie, resolver = %target.resolver, "IMSAdminBaseSinkW: the sink is dropped: {e}");
            }
            if let Some(sinks) = weak.upgrade() {
                sinks.remove(point_id, cookie);
            }
        });
        Ok((this_that(), cookie, S_OK))
    }

    fn unadvise(&self, call: &Call, _this: OrpcThis, cookie: u32) -> CallResult<(OrpcThat, u32)> {
        let point = self.exporter.object::<ConnectionPointObject>(call)?;
        let hr = if self.base.sinks().remove(point.id, cookie) {
            tracing::info!(cookie, "IMSAdminBaseSinkW: a sink is unadvised");
            S_OK
        } else {
            CONNECT_E_NOCONNECTION
        };
        Ok((this_that(), hr))
    }

    fn enum_connections(
        &self,
        call: &Call,
        _this: OrpcThis,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)> {
        self.exporter.object::<ConnectionPointObject>(call)?;
        Ok((this_that(), Unique::new(None), E_NOTIMPL))
    }
}

/// Connects to the sink, then calls it with each notice until it is
/// unadvised (the queue closes), keeping its object alive with pings.
async fn call_back(
    target: &Target,
    mut notices: tokio::sync::mpsc::Receiver<Notice>,
) -> Result<(), CallbackError> {
    let mut callback = Callback::connect(target, IID_IMSADMIN_BASE_SINK_W).await?;
    let mut sink = MsAdminBaseSinkWClient::bind(&mut callback.conn)
        .await?
        .on_object(callback.ipid);
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Some(Notice::Changes(list)) => {
                    let (_, hr) = timed("SinkNotify", sink.sink_notify(this(), list.len() as u32, ConformantArray(list))).await?;
                    if hr != S_OK {
                        tracing::debug!(hr, "IMSAdminBaseSinkW: SinkNotify answered an error");
                    }
                }
                Some(Notice::Shutdown) => {
                    let _ = timed("ShutdownNotify", sink.shutdown_notify(this())).await?;
                    return Ok(());
                }
                None => return Ok(()),
            },
            pinged = callback.pinger.tick() => pinged?,
        }
    }
}

/// The client's side: a host serving one IMSAdminBaseSinkW object, whose
/// calls arrive as notices.
pub struct SinkHost {
    host: ObjectHost,
    oid: u64,
    /// The notices, in the order the service sent them.
    pub notices: tokio::sync::mpsc::UnboundedReceiver<Notice>,
}

/// The sink object of a [`SinkHost`].
struct SinkObject {
    notices: tokio::sync::mpsc::UnboundedSender<Notice>,
}

/// Serves IMSAdminBaseSinkW on a host's objects.
struct SinkService(Arc<Exporter>);

impl MsAdminBaseSinkW for SinkService {
    fn sink_notify(
        &self,
        call: &Call,
        _this: OrpcThis,
        count: u32,
        changes: ConformantArray<ChangeObject>,
    ) -> CallResult<(OrpcThat, u32)> {
        let sink = self.0.object::<SinkObject>(call)?;
        if count as usize != changes.0.len() {
            return Ok((this_that(), E_INVALIDARG));
        }
        let _ = sink.notices.send(Notice::Changes(changes.0));
        Ok((this_that(), S_OK))
    }

    fn shutdown_notify(&self, call: &Call, _this: OrpcThis) -> CallResult<(OrpcThat, u32)> {
        let sink = self.0.object::<SinkObject>(call)?;
        let _ = sink.notices.send(Notice::Shutdown);
        Ok((this_that(), S_OK))
    }
}

impl SinkHost {
    /// Starts serving on `ip` (the address the server knows this machine
    /// by), on a free port, on the current tokio runtime.
    pub async fn start(ip: IpAddr) -> std::io::Result<SinkHost> {
        let host = ObjectHost::start(ip, |server, exporter| {
            server.register(
                MsAdminBaseSinkWServer(SinkService(exporter.clone())),
                auth_level::NONE,
                false,
            );
        })
        .await?;
        let (tx, notices) = tokio::sync::mpsc::unbounded_channel();
        let oid = host
            .export(
                Arc::new(SinkObject { notices: tx }),
                IID_IMSADMIN_BASE_SINK_W,
                "IMSAdminBaseSinkW",
            )
            .map_err(|hr| std::io::Error::other(format!("cannot export the sink: {hr:#010x}")))?;
        Ok(SinkHost { host, oid, notices })
    }

    /// Where the host serves.
    pub fn address(&self) -> SocketAddr {
        self.host.address()
    }

    /// The sink's IUnknown as Advise takes it: an OBJREF whose resolver is
    /// this host's endpoint.
    pub fn interface_pointer(&self) -> Result<MInterfacePointer, u32> {
        self.host
            .interface_pointer(self.oid, dcom::ids::IID_IUNKNOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metabase::{Change, ChangeKind};

    #[test]
    fn a_batch_becomes_lists_of_at_most_a_hundred_entries_with_iis_paths() {
        let change = |i: usize| Change {
            path: MbPath::parse(&format!("/LM/W3SVC/{i}")).unwrap(),
            kind: ChangeKind::SET_DATA,
            ids: vec![1015, 1016],
            new_path: None,
        };
        let batch = ChangeBatch {
            change_number: 7,
            changes: (1..=250).map(change).collect(),
            ..ChangeBatch::default()
        };
        let lists = change_lists(&batch);
        assert_eq!(
            lists.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let first = &lists[0][0];
        assert_eq!(first.path.get().unwrap().0, "/LM/W3SVC/1/");
        assert_eq!(first.key(), "/LM/W3SVC/1");
        assert_eq!(first.change_type, 4);
        assert_eq!(first.data_ids(), [1015, 1016]);
        let rename = ChangeBatch {
            changes: vec![Change {
                path: MbPath::parse("/LM/W3SVC/1/ROOT/a").unwrap(),
                kind: ChangeKind::RENAME_OBJECT,
                ids: vec![],
                new_path: Some(MbPath::parse("/LM/W3SVC/1/ROOT/b").unwrap()),
            }],
            ..ChangeBatch::default()
        };
        let lists = change_lists(&rename);
        assert_eq!(lists[0][0].key(), "/LM/W3SVC/1/ROOT/b");
        assert_eq!(lists[0][0].change_type, 16);
    }

    #[test]
    fn sinks_fall_behind_and_are_dropped_and_unadvise_checks_the_point() {
        let sinks = Sinks::default();
        let (tx, _rx) = tokio::sync::mpsc::channel(2);
        let cookie = sinks.add(1, tx).unwrap();
        assert!(!sinks.remove(2, cookie), "another point's cookie");
        let batch = ChangeBatch {
            changes: vec![Change {
                path: MbPath::parse("/LM/W3SVC").unwrap(),
                kind: ChangeKind::SET_DATA,
                ids: vec![1],
                new_path: None,
            }],
            ..ChangeBatch::default()
        };
        sinks.publish(&batch);
        sinks.publish(&batch);
        assert_eq!(sinks.count(), 1);
        sinks.publish(&batch);
        assert_eq!(sinks.count(), 0, "a third notice overflows a queue of two");
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let cookie = sinks.add(1, tx).unwrap();
        drop(rx);
        sinks.publish(&batch);
        assert_eq!(sinks.count(), 0, "a sink whose task ended");
        assert!(!sinks.remove(1, cookie));
    }
}
