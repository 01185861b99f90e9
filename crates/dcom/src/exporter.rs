//! The object exporter and its resolver's tables ([MS-DCOM] 3.1.1.1,
//! 3.1.2.1): one OXID for the process, the classes it can activate, its
//! objects (OIDs) with their interface pointers (IPIDs) and public
//! reference counts, the ping sets clients keep them alive with, and the
//! reclamation of objects whose clients went away (3.1.1.6.2, 3.1.2.6).

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use msrpc::server::{Call, Endpoint, Fault, Transport};
use msrpc::Uuid;

use crate::ids;
use crate::objref::{Bindings, ObjRef, SecurityBinding, TOWER_NCACN_IP_TCP};
use crate::types::{MInterfacePointer, StdObjRef};

/// References handed out with each new interface pointer, as Windows does.
pub const PUBLIC_REFS: u32 = 5;

/// The ping period (3.2.2: 120 s) times the three periods a client may
/// miss before its objects are reclaimed (3.1.2.2).
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(3 * 120);

/// A new object, as a class creates it.
pub struct Created {
    pub object: Arc<dyn Any + Send + Sync>,
    /// The IIDs it implements (IUnknown is implied).
    pub interfaces: Vec<Uuid>,
}

/// A class the resolver can activate (the class factory's role).
pub trait ComClass: Send + Sync + 'static {
    /// A readable name for the log.
    fn name(&self) -> &'static str;
    /// Whether the caller may use the class at all (asked before a class
    /// factory is handed out); `create` asks again.
    fn admit(&self, _call: &Call<'_>) -> Result<(), u32> {
        Ok(())
    }
    /// Creates an object for the caller, or says why not (an HRESULT).
    fn create(&self, call: &Call<'_>) -> Result<Created, u32>;
}

/// The most objects one caller may hold at once: enough for any tool,
/// few enough that a runaway client cannot exhaust the service.
pub const MAX_OBJECTS_PER_CALLER: usize = 1024;

/// The most ping sets alive at once (ComplexPing answers anyone the
/// endpoint does; sets live until their timeout).
pub const MAX_PING_SETS: usize = 65_536;

struct ObjectEntry {
    object: Arc<dyn Any + Send + Sync>,
    interfaces: Vec<Uuid>,
    /// Who activated it: only they may call it.
    owner: Option<String>,
    /// Ping sets that hold it.
    sets: u32,
    last_seen: Instant,
    class: &'static str,
}

struct IpidEntry {
    oid: u64,
    iid: Uuid,
    public_refs: u32,
}

struct PingSet {
    oids: HashSet<u64>,
    sequence: u16,
    last_ping: Instant,
}

#[derive(Default)]
struct Table {
    objects: HashMap<u64, ObjectEntry>,
    ipids: HashMap<Uuid, IpidEntry>,
    sets: HashMap<u64, PingSet>,
}

/// The process's object exporter.
pub struct Exporter {
    oxid: u64,
    rem_unknown: Uuid,
    classes: RwLock<HashMap<Uuid, Arc<dyn ComClass>>>,
    table: Mutex<Table>,
    ping_timeout: Duration,
    /// The least authentication level its ORPC interfaces take (the
    /// authentication hint of activation and OXID resolution).
    pub authn_hint: u32,
}

fn random_u64() -> u64 {
    let u = Uuid::random().to_le_bytes();
    let mut b = [0u8; 8];
    b.copy_from_slice(&u[..8]);
    // Zero is "no set" in ComplexPing.
    u64::from_le_bytes(b).max(1)
}

impl Exporter {
    pub fn new(authn_hint: u32, ping_timeout: Duration) -> Arc<Exporter> {
        Arc::new(Exporter {
            oxid: random_u64(),
            rem_unknown: Uuid::random(),
            classes: RwLock::new(HashMap::new()),
            table: Mutex::new(Table::default()),
            ping_timeout,
            authn_hint,
        })
    }

    pub fn oxid(&self) -> u64 {
        self.oxid
    }

    pub fn rem_unknown_ipid(&self) -> Uuid {
        self.rem_unknown
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a class activatable.
    pub fn register_class(&self, clsid: Uuid, class: Arc<dyn ComClass>) {
        self.classes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(clsid, class);
    }

    pub fn class(&self, clsid: &Uuid) -> Option<Arc<dyn ComClass>> {
        self.classes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(clsid)
            .cloned()
    }

    /// Exports a new object; its OID, or E_OUTOFMEMORY when the caller
    /// holds [`MAX_OBJECTS_PER_CALLER`] already.
    pub fn export(
        &self,
        created: Created,
        owner: Option<String>,
        class: &'static str,
    ) -> Result<u64, u32> {
        let oid = random_u64();
        let mut table = self.table();
        let held = table
            .objects
            .values()
            .filter(|o| {
                same_user(o.owner.as_deref(), owner.as_deref())
                    && o.owner.is_some() == owner.is_some()
            })
            .count();
        if held >= MAX_OBJECTS_PER_CALLER {
            tracing::warn!(owner = ?owner, held, "DCOM: activation refused: the caller holds too many objects");
            return Err(ids::E_OUTOFMEMORY);
        }
        table.objects.insert(
            oid,
            ObjectEntry {
                object: created.object,
                interfaces: created.interfaces,
                owner,
                sets: 0,
                last_seen: Instant::now(),
                class,
            },
        );
        Ok(oid)
    }

    /// A reference to `iid` on object `oid` with `refs` public references
    /// (a new IPID, or more references on the one there is), or the
    /// HRESULT that says why not.
    pub fn std_objref(&self, oid: u64, iid: Uuid, refs: u32) -> Result<StdObjRef, u32> {
        let mut table = self.table();
        let Some(object) = table.objects.get(&oid) else {
            return Err(ids::CO_E_OBJNOTCONNECTED);
        };
        if iid != ids::IID_IUNKNOWN && !object.interfaces.contains(&iid) {
            return Err(ids::E_NOINTERFACE);
        }
        let existing = table
            .ipids
            .iter()
            .find(|(_, e)| e.oid == oid && e.iid == iid)
            .map(|(ipid, _)| *ipid);
        let ipid = match existing {
            Some(ipid) => ipid,
            None => {
                let ipid = Uuid::random();
                table.ipids.insert(
                    ipid,
                    IpidEntry {
                        oid,
                        iid,
                        public_refs: 0,
                    },
                );
                ipid
            }
        };
        if let Some(entry) = table.ipids.get_mut(&ipid) {
            entry.public_refs = entry.public_refs.saturating_add(refs);
        }
        Ok(StdObjRef {
            flags: 0,
            public_refs: refs,
            oxid: self.oxid,
            oid,
            ipid,
        })
    }

    /// An OBJREF_STANDARD for `iid` on `oid`, as MInterfacePointer.
    pub fn marshal(&self, call: &Call<'_>, oid: u64, iid: Uuid) -> Result<MInterfacePointer, u32> {
        let std = self.std_objref(oid, iid, PUBLIC_REFS)?;
        Ok(MInterfacePointer::new(
            ObjRef::Standard {
                iid,
                std,
                resolver: self.bindings(call, false),
            }
            .encode(),
        ))
    }

    /// The object a call is made on (its IPID is the request's object
    /// UUID), if it is of type `T` and the caller may use it: the one who
    /// activated it, at the authentication level the exporter asks
    /// (this machine's socket needs none: the kernel names the caller).
    pub fn object<T: Any + Send + Sync>(&self, call: &Call<'_>) -> Result<Arc<T>, Fault> {
        let local = matches!(call.transport, Transport::Local { .. });
        if !local && u32::from(call.auth_level) < self.authn_hint {
            return Err(Fault::not_executed(ids::E_ACCESSDENIED));
        }
        let ipid = call
            .object
            .ok_or(Fault::not_executed(ids::RPC_E_INVALID_IPID))?;
        let mut table = self.table();
        let oid = table
            .ipids
            .get(&ipid)
            .map(|e| e.oid)
            .ok_or(Fault::not_executed(ids::RPC_E_INVALID_IPID))?;
        let entry = table
            .objects
            .get_mut(&oid)
            .ok_or(Fault::not_executed(ids::RPC_E_INVALID_IPID))?;
        if !same_user(entry.owner.as_deref(), identity(call).as_deref()) {
            return Err(Fault::not_executed(ids::E_ACCESSDENIED));
        }
        entry.last_seen = Instant::now();
        entry
            .object
            .clone()
            .downcast::<T>()
            .map_err(|_| Fault::not_executed(ids::RPC_E_INVALID_IPID))
    }

    /// Where a call on `ipid` through a context bound to `bound` goes: to
    /// the interface the IPID is a pointer to when its object does not
    /// have `bound` (the Remote Unknown's IPID is IRemUnknown2's); None to
    /// keep the bound one.
    pub fn route(&self, ipid: &Uuid, bound: &Uuid) -> Option<Uuid> {
        if *ipid == self.rem_unknown {
            let remote_unknown = [ids::IID_IREM_UNKNOWN, ids::IID_IREM_UNKNOWN2];
            return (!remote_unknown.contains(bound)).then_some(ids::IID_IREM_UNKNOWN2);
        }
        let table = self.table();
        let entry = table.ipids.get(ipid)?;
        let object = table.objects.get(&entry.oid)?;
        let has_bound = *bound == ids::IID_IUNKNOWN || object.interfaces.contains(bound);
        (!has_bound).then_some(entry.iid)
    }

    /// How long an object lives without pings or calls.
    pub fn ping_timeout(&self) -> Duration {
        self.ping_timeout
    }

    /// The OID of the object a call is made on (after [`Exporter::object`]
    /// admitted it).
    pub fn oid_of_call(&self, call: &Call<'_>) -> Option<u64> {
        let ipid = call.object?;
        self.table().ipids.get(&ipid).map(|e| e.oid)
    }

    /// The OID an IPID belongs to, if the caller may use it.
    fn oid_of(&self, ipid: &Uuid, client: Option<&str>) -> Result<u64, u32> {
        let table = self.table();
        let oid = table
            .ipids
            .get(ipid)
            .map(|e| e.oid)
            .ok_or(ids::RPC_E_INVALID_IPID)?;
        match table.objects.get(&oid) {
            Some(o) if same_user(o.owner.as_deref(), client) => Ok(oid),
            Some(_) => Err(ids::E_ACCESSDENIED),
            None => Err(ids::RPC_E_INVALID_IPID),
        }
    }

    /// IRemUnknown::RemQueryInterface's work for one IID.
    pub fn query_interface(
        &self,
        ipid: &Uuid,
        client: Option<&str>,
        iid: Uuid,
        refs: u32,
    ) -> Result<StdObjRef, u32> {
        let oid = self.oid_of(ipid, client)?;
        self.std_objref(oid, iid, refs.max(1))
    }

    /// RemAddRef for one interface pointer.
    pub fn add_ref(&self, ipid: &Uuid, client: Option<&str>, refs: u32) -> u32 {
        if let Err(hr) = self.oid_of(ipid, client) {
            return hr;
        }
        if let Some(e) = self.table().ipids.get_mut(ipid) {
            e.public_refs = e.public_refs.saturating_add(refs);
        }
        ids::S_OK
    }

    /// RemRelease for one interface pointer: at zero references the IPID
    /// goes, and with the object's last IPID the object.
    pub fn release(&self, ipid: &Uuid, client: Option<&str>, refs: u32) -> u32 {
        if let Err(hr) = self.oid_of(ipid, client) {
            return hr;
        }
        let mut table = self.table();
        let Some(entry) = table.ipids.get_mut(ipid) else {
            return ids::RPC_E_INVALID_IPID;
        };
        entry.public_refs = entry.public_refs.saturating_sub(refs);
        if entry.public_refs == 0 {
            let oid = entry.oid;
            table.ipids.remove(ipid);
            if !table.ipids.values().any(|e| e.oid == oid) {
                if let Some(o) = table.objects.remove(&oid) {
                    tracing::info!(class = o.class, oid, "DCOM: object released");
                }
            }
        }
        ids::S_OK
    }

    /// ComplexPing (3.1.2.5.1.3): the set (a new one for zero), or a
    /// status.
    pub fn complex_ping(
        &self,
        set: u64,
        sequence: u16,
        add: &[u64],
        del: &[u64],
    ) -> Result<u64, u32> {
        let mut table = self.table();
        let now = Instant::now();
        let set = if set == 0 {
            if table.sets.len() >= MAX_PING_SETS {
                tracing::warn!("DCOM: ComplexPing refused: {MAX_PING_SETS} ping sets are alive");
                return Err(ids::ERROR_OUTOFMEMORY);
            }
            let id = random_u64();
            table.sets.insert(
                id,
                PingSet {
                    oids: HashSet::new(),
                    sequence,
                    last_ping: now,
                },
            );
            id
        } else {
            match table.sets.get(&set) {
                None => return Err(ids::OR_INVALID_SET),
                // An older request that arrives late changes nothing.
                Some(s) if sequence_is_older(sequence, s.sequence) => return Ok(set),
                Some(_) => set,
            }
        };
        let Table { objects, sets, .. } = &mut *table;
        let Some(entry) = sets.get_mut(&set) else {
            return Err(ids::OR_INVALID_SET);
        };
        for oid in add {
            if entry.oids.contains(oid) {
                continue;
            }
            match objects.get_mut(oid) {
                Some(o) => {
                    o.sets += 1;
                    o.last_seen = now;
                    entry.oids.insert(*oid);
                }
                None => return Err(ids::OR_INVALID_OID),
            }
        }
        for oid in del {
            if entry.oids.remove(oid) {
                if let Some(o) = objects.get_mut(oid) {
                    o.sets = o.sets.saturating_sub(1);
                    o.last_seen = now;
                }
            }
        }
        entry.sequence = sequence;
        entry.last_ping = now;
        for oid in &entry.oids {
            if let Some(o) = objects.get_mut(oid) {
                o.last_seen = now;
            }
        }
        Ok(set)
    }

    /// SimplePing (3.1.2.5.1.2).
    pub fn simple_ping(&self, set: u64) -> u32 {
        let mut table = self.table();
        let now = Instant::now();
        let Table { objects, sets, .. } = &mut *table;
        match sets.get_mut(&set) {
            None => ids::OR_INVALID_SET,
            Some(s) => {
                s.last_ping = now;
                for oid in &s.oids {
                    if let Some(o) = objects.get_mut(oid) {
                        o.last_seen = now;
                    }
                }
                ids::S_OK
            }
        }
    }

    /// Reclaims what clients stopped pinging: sets not pinged within the
    /// timeout, then objects in no live set and not used within it.
    /// Returns how many objects went.
    pub fn collect_garbage(&self) -> usize {
        let mut table = self.table();
        let now = Instant::now();
        let timeout = self.ping_timeout;
        let Table {
            objects,
            ipids,
            sets,
        } = &mut *table;
        sets.retain(|_, s| {
            let alive = now.duration_since(s.last_ping) < timeout;
            if !alive {
                for oid in &s.oids {
                    if let Some(o) = objects.get_mut(oid) {
                        o.sets = o.sets.saturating_sub(1);
                    }
                }
            }
            alive
        });
        let before = objects.len();
        objects.retain(|oid, o| {
            // A call running on it holds it (an OpenKey waiting for a
            // handle, an event enumerator's Next): in use now, so its time
            // counts from now.
            if Arc::strong_count(&o.object) > 1 {
                o.last_seen = now;
            }
            let alive = o.sets > 0 || now.duration_since(o.last_seen) < timeout;
            if !alive {
                tracing::info!(
                    class = o.class,
                    oid,
                    "DCOM: object reclaimed (its client stopped pinging)"
                );
            }
            alive
        });
        ipids.retain(|_, e| objects.contains_key(&e.oid));
        before - objects.len()
    }

    /// Drops an object and its interface pointers at once (one nothing
    /// refers to).
    pub fn forget(&self, oid: u64) {
        let mut table = self.table();
        table.objects.remove(&oid);
        table.ipids.retain(|_, e| e.oid != oid);
    }

    /// How many objects are exported.
    pub fn object_count(&self) -> usize {
        self.table().objects.len()
    }

    /// The string and security bindings of this exporter (`endpoints`
    /// true) or its resolver, as a call reached them: each TCP endpoint by
    /// the address the call came in on (or the one it listens on) and by
    /// the host's name.
    pub fn bindings(&self, call: &Call<'_>, endpoints: bool) -> Bindings {
        let host = hostname();
        let local_ip = match call.transport {
            Transport::Tcp { local, .. }
            | Transport::Udp { local, .. }
            | Transport::Http { local, .. } => Some(local.ip()).filter(|ip| !ip.is_unspecified()),
            Transport::Local { .. } => None,
        };
        let mut strings = Vec::new();
        for endpoint in call.server.endpoints() {
            let Endpoint::Tcp(addr) = endpoint else {
                continue;
            };
            let ip: IpAddr = if addr.ip().is_unspecified() {
                local_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]))
            } else {
                addr.ip()
            };
            // A client on this machine may know it as localhost (the name
            // a Kerberos service ticket for host/localhost is asked by).
            let mut names = vec![ip.to_string(), host.clone()];
            if ip.is_loopback() {
                names.push("localhost".into());
            }
            for name in names {
                let text = if endpoints {
                    format!("{name}[{}]", addr.port())
                } else {
                    name
                };
                if !strings.iter().any(|(_, s)| s == &text) {
                    strings.push((TOWER_NCACN_IP_TCP, text));
                }
            }
        }
        let mut security = vec![
            SecurityBinding {
                authn_service: 10,
                principal: String::new(),
            },
            SecurityBinding {
                authn_service: 9,
                principal: String::new(),
            },
        ];
        if let Some(principal) = call.server.kerberos_principal() {
            security.push(SecurityBinding {
                authn_service: 16,
                principal,
            });
        }
        Bindings { strings, security }
    }
}

/// Who makes a call, for the objects it owns: the authenticated user, or
/// on this machine's socket the calling process's user.
pub fn identity(call: &Call<'_>) -> Option<String> {
    match (&call.client, call.transport) {
        (Some(user), _) => Some(user.clone()),
        (
            None,
            Transport::Local {
                peer_uid: Some(uid),
                ..
            },
        ) => Some(format!("uid {uid}")),
        _ => None,
    }
}

/// Whether a later ping's sequence number is older than the set's (with
/// wrap-around).
fn sequence_is_older(incoming: u16, current: u16) -> bool {
    let diff = current.wrapping_sub(incoming);
    diff != 0 && diff < 0x8000
}

fn same_user(owner: Option<&str>, caller: Option<&str>) -> bool {
    match (owner, caller) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, _) => true,
        (Some(_), None) => false,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter(timeout_ms: u64) -> Arc<Exporter> {
        Exporter::new(5, Duration::from_millis(timeout_ms))
    }

    fn object() -> Created {
        Created {
            object: Arc::new(7u32),
            interfaces: vec![ids::IID_IREM_UNKNOWN2],
        }
    }

    #[test]
    fn a_call_on_an_object_without_its_contexts_interface_goes_to_its_ipids() {
        let e = exporter(60_000);
        let (a, b) = (Uuid::random(), Uuid::random());
        let oid = e
            .export(
                Created {
                    object: Arc::new(1u8),
                    interfaces: vec![a, b],
                },
                None,
                "test",
            )
            .unwrap();
        let ipid = e.std_objref(oid, a, 1).unwrap().ipid;
        // The object has the bound interface (or it is IUnknown): kept.
        assert_eq!(e.route(&ipid, &a), None);
        assert_eq!(e.route(&ipid, &b), None);
        assert_eq!(e.route(&ipid, &ids::IID_IUNKNOWN), None);
        // It has not: the IPID's interface.
        assert_eq!(e.route(&ipid, &Uuid::random()), Some(a));
        // The Remote Unknown's IPID is IRemUnknown2's.
        let remote = e.rem_unknown_ipid();
        assert_eq!(e.route(&remote, &a), Some(ids::IID_IREM_UNKNOWN2));
        assert_eq!(e.route(&remote, &ids::IID_IREM_UNKNOWN), None);
        // An IPID no one handed out: nothing to say.
        assert_eq!(e.route(&Uuid::random(), &a), None);
    }

    #[test]
    fn references_hand_out_ipids_and_the_last_release_ends_the_object() {
        let e = exporter(60_000);
        let oid = e.export(object(), Some("Boss".into()), "test").unwrap();
        let a = e
            .std_objref(oid, ids::IID_IREM_UNKNOWN2, PUBLIC_REFS)
            .unwrap();
        assert_eq!((a.oxid, a.oid, a.public_refs), (e.oxid(), oid, 5));
        // The same interface again: the same IPID, more references.
        let b = e.std_objref(oid, ids::IID_IREM_UNKNOWN2, 2).unwrap();
        assert_eq!(a.ipid, b.ipid);
        assert_eq!(
            e.std_objref(oid, Uuid::random(), 1),
            Err(ids::E_NOINTERFACE)
        );
        // Only its owner (names compare without case) may touch it.
        assert_eq!(e.release(&a.ipid, Some("someone"), 7), ids::E_ACCESSDENIED);
        assert_eq!(e.add_ref(&a.ipid, Some("boss"), 1), ids::S_OK);
        assert_eq!(e.release(&a.ipid, Some("boss"), 7), ids::S_OK);
        assert_eq!(e.object_count(), 1);
        assert_eq!(e.release(&a.ipid, Some("boss"), 1), ids::S_OK);
        assert_eq!(e.object_count(), 0);
        assert_eq!(e.release(&a.ipid, Some("boss"), 1), ids::RPC_E_INVALID_IPID);
    }

    #[test]
    fn a_client_that_never_pings_loses_its_objects_and_one_that_pings_keeps_them() {
        let e = exporter(150);
        let forgotten = e.export(object(), None, "test").unwrap();
        let kept = e.export(object(), None, "test").unwrap();
        let set = e.complex_ping(0, 1, &[kept], &[]).unwrap();
        assert_ne!(set, 0);
        assert_eq!(
            e.complex_ping(0, 1, &[12345], &[]),
            Err(ids::OR_INVALID_OID)
        );
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(60));
            assert_eq!(e.simple_ping(set), ids::S_OK);
            e.collect_garbage();
        }
        // 240 ms without a ping: the unpinged object is gone, the pinged
        // one stays.
        assert_eq!(e.object_count(), 1);
        assert!(e.std_objref(forgotten, ids::IID_IUNKNOWN, 1).is_err());
        assert!(e.std_objref(kept, ids::IID_IUNKNOWN, 1).is_ok());
        // The client goes quiet: its set, then its object, are reclaimed.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(e.collect_garbage(), 1);
        assert_eq!(e.simple_ping(set), ids::OR_INVALID_SET);
        assert_eq!(e.object_count(), 0);
    }

    #[test]
    fn an_object_a_running_call_holds_is_not_reclaimed_until_after_it() {
        let e = exporter(100);
        let held: Arc<dyn Any + Send + Sync> = Arc::new(9u32);
        let oid = e
            .export(
                Created {
                    object: held.clone(),
                    interfaces: vec![],
                },
                None,
                "test",
            )
            .unwrap();
        // A call holds it (as Exporter::object hands it to one) for
        // longer than the ping timeout: it stays.
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(e.collect_garbage(), 0);
        assert!(e.std_objref(oid, ids::IID_IUNKNOWN, 1).is_ok());
        // The call is over; its time counts from when it was last seen in
        // use, and then it goes.
        drop(held);
        assert_eq!(e.collect_garbage(), 0);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(e.collect_garbage(), 1);
    }

    #[test]
    fn a_caller_holds_a_bounded_number_of_objects() {
        let e = exporter(60_000);
        for _ in 0..MAX_OBJECTS_PER_CALLER {
            e.export(object(), Some("alice".into()), "test").unwrap();
        }
        assert_eq!(
            e.export(object(), Some("ALICE".into()), "test"),
            Err(ids::E_OUTOFMEMORY)
        );
        // Another caller is not held back by alice's objects.
        assert!(e.export(object(), Some("bob".into()), "test").is_ok());
    }

    #[test]
    fn ping_sets_are_bounded() {
        let e = exporter(60_000);
        for _ in 0..MAX_PING_SETS {
            e.complex_ping(0, 1, &[], &[]).unwrap();
        }
        assert_eq!(e.complex_ping(0, 1, &[], &[]), Err(ids::ERROR_OUTOFMEMORY));
    }

    #[test]
    fn late_pings_change_nothing_and_removals_release() {
        let e = exporter(60_000);
        let oid = e.export(object(), None, "test").unwrap();
        let set = e.complex_ping(0, 10, &[oid], &[]).unwrap();
        // Sequence 9 is older than 10: ignored, the OID stays in the set.
        assert_eq!(e.complex_ping(set, 9, &[], &[oid]), Ok(set));
        assert_eq!(e.table().objects[&oid].sets, 1);
        assert_eq!(e.complex_ping(set, 11, &[], &[oid]), Ok(set));
        assert_eq!(e.table().objects[&oid].sets, 0);
        // Wrapping around counts as newer.
        assert!(!sequence_is_older(0, 0xffff));
        assert!(sequence_is_older(0xffff, 0));
        assert_eq!(e.complex_ping(99, 1, &[], &[]), Err(ids::OR_INVALID_SET));
    }
}
