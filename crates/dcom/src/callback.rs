//! DCOM from the other side: a service calling back an object its client
//! handed it (a connection point's sink, WMI's IWbemObjectSink), and the
//! client's side of that, an [`ObjectHost`] serving such an object.
//!
//! The service resolves the object's OXID at the client's resolver (the
//! OBJREF's bindings; only at the address the call came from, so a client
//! cannot aim the service at a third machine), asks the client's Remote
//! Unknown for the interface it calls, and pings the object while it
//! holds it ([MS-DCOM] 3.2.4.1.1, 3.2.6). Calls go at
//! RPC_C_AUTHN_LEVEL_NONE: the service holds no credentials of the
//! client's machine.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use msrpc::client::{CallError, Connection, Options};
use msrpc::ndr::{ConformantArray, Unique};
use msrpc::server::{auth_level, Call, Transport};
use msrpc::Uuid;

use crate::client::PING_PERIOD;
use crate::ids::{COM_VERSION, S_OK};
use crate::interfaces::{ObjectExporterClient, RemUnknownClient};
use crate::objref::{Bindings, ObjRef, ObjRefError, TOWER_NCACN_IP_TCP};
use crate::types::{MInterfacePointer, OrpcThis};
use crate::{Created, Exporter};

/// How long one callback (or a step of reaching the client) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An object a client handed the service, and where to call it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The client's resolver.
    pub resolver: SocketAddr,
    pub oxid: u64,
    pub oid: u64,
    pub ipid: Uuid,
    /// The OBJREF's interface (IUnknown, or the one to be called).
    pub iid: Uuid,
}

/// Why an object handed to the service cannot be called back.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the object reference is malformed: {0}")]
    Malformed(#[from] ObjRefError),
    #[error("the object is custom-marshalled; only standard references can be called back")]
    Custom,
    #[error("the object's resolver is not at the address the client called from: {0:?}")]
    Elsewhere(Vec<String>),
}

impl Target {
    /// The callback target an interface pointer names, if its resolver is
    /// at the address `call` came from.
    pub fn of_pointer(call: &Call<'_>, pointer: &MInterfacePointer) -> Result<Target, TargetError> {
        let (iid, std, resolver) = match ObjRef::decode(&pointer.data)? {
            ObjRef::Standard { iid, std, resolver } => (iid, std, resolver),
            ObjRef::Custom { .. } => return Err(TargetError::Custom),
        };
        let hosts = callback_hosts(call);
        let address = resolver
            .strings
            .iter()
            .filter(|(tower, _)| *tower == TOWER_NCACN_IP_TCP)
            .find_map(|(_, s)| binding_address(s, &hosts, 135))
            .ok_or_else(|| {
                TargetError::Elsewhere(resolver.strings.iter().map(|(_, s)| s.clone()).collect())
            })?;
        Ok(Target {
            resolver: address,
            oxid: std.oxid,
            oid: std.oid,
            ipid: std.ipid,
            iid,
        })
    }

    /// Whether two targets are the same object (a client may marshal one
    /// object twice, with different IPIDs).
    pub fn same_object(&self, other: &Target) -> bool {
        self.resolver == other.resolver && self.oxid == other.oxid && self.oid == other.oid
    }
}

/// The address a client's binding string names, if it is `allowed` (the
/// host the client called from): `10.0.0.2[1234]` or `10.0.0.2` (the
/// resolver's well-known port).
pub fn binding_address(binding: &str, allowed: &[IpAddr], default_port: u16) -> Option<SocketAddr> {
    let (host, port) = match binding.split_once('[') {
        Some((host, rest)) => (host, rest.strip_suffix(']')?.parse::<u16>().ok()?),
        None => (binding, default_port),
    };
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    allowed.contains(&ip).then_some(SocketAddr::new(ip, port))
}

/// The addresses a caller may be called back at: the one it called from
/// (on this machine's socket, loopback).
fn callback_hosts(call: &Call<'_>) -> Vec<IpAddr> {
    match call.transport {
        Transport::Tcp { peer, .. } | Transport::Udp { peer, .. } => {
            let ip = peer.ip();
            match ip {
                // An IPv4 client on a dual-stack socket.
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => vec![ip, IpAddr::V4(v4)],
                    None => vec![ip],
                },
                IpAddr::V4(_) => vec![ip],
            }
        }
        // Called back at the client's own address, not its proxy's.
        Transport::Http { client, .. } => vec![*client],
        Transport::Local { .. } => vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ],
    }
}

/// Why a client's object could not be called.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("{what} answered {code:#010x}")]
    Status { what: &'static str, code: u32 },
    #[error("{0} took longer than {CALL_TIMEOUT:?}")]
    Timeout(&'static str),
    #[error("the client's exporter is at no address it called from: {0:?}")]
    Unreachable(Vec<String>),
}

/// `work`, failing as `what` if it takes longer than [`CALL_TIMEOUT`].
pub async fn timed<T>(
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, CallError>>,
) -> Result<T, CallbackError> {
    match tokio::time::timeout(CALL_TIMEOUT, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CallbackError::Timeout(what)),
    }
}

/// An ORPCTHIS for a callback.
pub fn this() -> OrpcThis {
    OrpcThis::new(COM_VERSION)
}

/// Keeps a client's object alive at its resolver while the service holds
/// it (ComplexPing adds it to a set, SimplePing keeps the set).
pub struct Pinger {
    resolver: Connection,
    /// None when the client's resolver keeps no ping sets.
    set: Option<u64>,
    timer: tokio::time::Interval,
}

impl Pinger {
    /// Waits for the next ping's time and pings; for a `select!` beside
    /// the work that uses the object.
    pub async fn tick(&mut self) -> Result<(), CallbackError> {
        self.timer.tick().await;
        if let Some(set) = self.set {
            let status = timed("SimplePing", async {
                ObjectExporterClient::bind(&mut self.resolver)
                    .await?
                    .simple_ping(set)
                    .await
            })
            .await?;
            if status != 0 {
                return Err(CallbackError::Status {
                    what: "SimplePing",
                    code: status,
                });
            }
        }
        Ok(())
    }
}

/// A connection to a client's object, on the interface asked for.
pub struct Callback {
    /// The connection to the client's exporter; bind the interface's
    /// client on it and call `on_object(ipid)`.
    pub conn: Connection,
    /// The IPID of the object's interface asked for.
    pub ipid: Uuid,
    pub pinger: Pinger,
}

impl Callback {
    /// Resolves the target's OXID, connects to its exporter, gets the
    /// interface `iid` (through the client's Remote Unknown unless the
    /// reference already is one) and starts pinging the object.
    pub async fn connect(target: &Target, iid: Uuid) -> Result<Callback, CallbackError> {
        let options = Options::default();
        let mut resolver = timed("connecting to the resolver", async {
            Connection::connect_tcp(target.resolver, options.clone()).await
        })
        .await?;
        let (bindings, rem_unknown, _, _, status) = timed("ResolveOxid2", async {
            ObjectExporterClient::bind(&mut resolver)
                .await?
                .resolve_oxid2(target.oxid, 1, ConformantArray(vec![TOWER_NCACN_IP_TCP]))
                .await
        })
        .await?;
        if status != 0 {
            return Err(CallbackError::Status {
                what: "ResolveOxid2",
                code: status,
            });
        }
        let bindings = bindings
            .get()
            .and_then(|b| Bindings::from_idl(b).ok())
            .unwrap_or_default();
        let allowed = [target.resolver.ip()];
        let exporter = bindings
            .strings
            .iter()
            .filter(|(tower, _)| *tower == TOWER_NCACN_IP_TCP)
            .find_map(|(_, s)| binding_address(s, &allowed, target.resolver.port()))
            .ok_or_else(|| {
                CallbackError::Unreachable(
                    bindings.strings.iter().map(|(_, s)| s.clone()).collect(),
                )
            })?;
        let mut conn = timed("connecting to the exporter", async {
            Connection::connect_tcp(exporter, options.clone()).await
        })
        .await?;
        let ipid = if target.iid == iid {
            target.ipid
        } else {
            let (_, results, hr) = timed("RemQueryInterface", async {
                RemUnknownClient::bind(&mut conn)
                    .await?
                    .on_object(rem_unknown)
                    .rem_query_interface(this(), target.ipid, 1, 1, ConformantArray(vec![iid]))
                    .await
            })
            .await?;
            match results.get().and_then(|r| r.0.first().copied()) {
                Some(r) if hr == S_OK && r.hresult == S_OK => r.std.ipid,
                Some(r) => {
                    return Err(CallbackError::Status {
                        what: "RemQueryInterface",
                        code: if hr == S_OK { r.hresult } else { hr },
                    })
                }
                None => {
                    return Err(CallbackError::Status {
                        what: "RemQueryInterface",
                        code: hr,
                    })
                }
            }
        };
        let (set, _, status) = timed("ComplexPing", async {
            ObjectExporterClient::bind(&mut resolver)
                .await?
                .complex_ping(
                    0,
                    1,
                    1,
                    0,
                    Unique::new(Some(ConformantArray(vec![target.oid]))),
                    Unique::new(None),
                )
                .await
        })
        .await?;
        if status != 0 {
            tracing::debug!(status, "the client's resolver keeps no ping set");
        }
        let start = tokio::time::Instant::now() + PING_PERIOD;
        Ok(Callback {
            conn,
            ipid,
            pinger: Pinger {
                resolver,
                set: (status == 0).then_some(set),
                timer: tokio::time::interval_at(start, PING_PERIOD),
            },
        })
    }
}

/// A client's side of a callback: an exporter of its own on an ephemeral
/// port, serving the objects it exports to services that call them back
/// unauthenticated.
pub struct ObjectHost {
    server: Arc<msrpc::server::Server>,
    exporter: Arc<Exporter>,
    address: SocketAddr,
}

impl ObjectHost {
    /// Starts serving on `ip` (the address the server knows this machine
    /// by: the local end of the connection to it), on a free port, on the
    /// current tokio runtime. `register` adds the objects' interfaces.
    pub async fn start(
        ip: IpAddr,
        register: impl FnOnce(&msrpc::server::Server, &Arc<Exporter>),
    ) -> std::io::Result<ObjectHost> {
        let server = msrpc::server::Server::new(msrpc::server::Limits::default(), String::new());
        // The objects never expire: the host lives as long as its process
        // wants to be called.
        let exporter = Exporter::new(u32::from(auth_level::NONE), Duration::MAX);
        crate::serve(
            &server,
            exporter.clone(),
            auth_level::NONE,
            auth_level::NONE,
        );
        register(&server, &exporter);
        let address = server.listen_tcp(SocketAddr::new(ip, 0)).await?;
        Ok(ObjectHost {
            server,
            exporter,
            address,
        })
    }

    /// Where the host serves.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn exporter(&self) -> &Arc<Exporter> {
        &self.exporter
    }

    pub fn server(&self) -> &msrpc::server::Server {
        &self.server
    }

    /// Exports `object` (implementing `iid`); its OID.
    pub fn export(
        &self,
        object: Arc<dyn std::any::Any + Send + Sync>,
        iid: Uuid,
        name: &'static str,
    ) -> Result<u64, u32> {
        self.exporter.export(
            Created {
                object,
                interfaces: vec![iid],
            },
            None,
            name,
        )
    }

    /// An interface pointer on an exported object whose resolver is this
    /// host's endpoint, as a service takes it.
    pub fn interface_pointer(&self, oid: u64, iid: Uuid) -> Result<MInterfacePointer, u32> {
        let std = self
            .exporter
            .std_objref(oid, iid, crate::exporter::PUBLIC_REFS)?;
        let binding = match self.address.ip() {
            IpAddr::V4(ip) => format!("{ip}[{}]", self.address.port()),
            IpAddr::V6(ip) => format!("{ip}[{}]", self.address.port()),
        };
        Ok(MInterfacePointer::new(
            ObjRef::Standard {
                iid,
                std,
                resolver: Bindings {
                    strings: vec![(TOWER_NCACN_IP_TCP, binding)],
                    security: Vec::new(),
                },
            }
            .encode(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_strings_are_taken_only_at_the_callers_address() {
        let allowed = [IpAddr::from([10, 0, 0, 2])];
        assert_eq!(
            binding_address("10.0.0.2[4000]", &allowed, 135),
            Some("10.0.0.2:4000".parse().unwrap())
        );
        assert_eq!(
            binding_address("10.0.0.2", &allowed, 135),
            Some("10.0.0.2:135".parse().unwrap())
        );
        assert_eq!(binding_address("10.0.0.3[4000]", &allowed, 135), None);
        assert_eq!(binding_address("evil.example[4000]", &allowed, 135), None);
        assert_eq!(binding_address("10.0.0.2[x]", &allowed, 135), None);
        let v6 = [IpAddr::from(std::net::Ipv6Addr::LOCALHOST)];
        assert_eq!(
            binding_address("::1[4000]", &v6, 135),
            Some("[::1]:4000".parse().unwrap())
        );
    }
}
