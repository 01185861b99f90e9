//! The client side ([MS-DCOM] 3.2): activating a class on a server and
//! releasing the interface pointers it handed out. The object's calls
//! then go through the interface's generated client, made on the IPID
//! (`…Client::bind(conn).await?.on_object(remote.ipid)`).
//!
//! The exporter is reached on the connection the activation went over:
//! inetsrv's resolver and exporter share one endpoint. Another server's
//! exporter (at the string bindings the reply names) would need a
//! connection of its own.

use msrpc::client::{CallError, Connection};
use msrpc::ndr::{ConformantArray, Unique};
use msrpc::Uuid;

use crate::activation::{self, ActivationError};
use crate::ids;
use crate::interfaces::{ObjectExporterClient, RemUnknownClient, RemoteScmActivatorClient};
use crate::objref::ObjRef;
use crate::types::{OrpcThis, RemInterfaceRef};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the server answered HRESULT {hr:#010x}{meaning}", meaning = describe(*hr))]
    HResult { hr: u32 },
    #[error("the server's activation answer is malformed: {0}")]
    Reply(#[from] ActivationError),
    #[error("the server did not return a standard object reference")]
    NoReference,
    #[error("the server's object reference is malformed: {0}")]
    ObjRef(#[from] crate::objref::ObjRefError),
}

/// The HRESULTs a caller may meet, in words.
fn describe(hr: u32) -> &'static str {
    match hr {
        ids::E_ACCESSDENIED => " (E_ACCESSDENIED: the user is not an administrator of the server)",
        ids::REGDB_E_CLASSNOTREG => " (REGDB_E_CLASSNOTREG: the server has no such class)",
        ids::E_NOINTERFACE => " (E_NOINTERFACE)",
        ids::RPC_E_INVALID_IPID => " (RPC_E_INVALID_IPID: the object is gone)",
        _ => "",
    }
}

/// An interface pointer on a remote object.
#[derive(Clone, Debug)]
pub struct Remote {
    pub ipid: Uuid,
    pub oid: u64,
    pub oxid: u64,
    /// The exporter's Remote Unknown, for reference counting.
    pub rem_unknown: Uuid,
    pub public_refs: u32,
}

/// IRemoteSCMActivator::RemoteCreateInstance for one interface.
pub async fn create_instance(
    conn: &mut Connection,
    clsid: Uuid,
    iid: Uuid,
) -> Result<Remote, ClientError> {
    let properties = activation::build_request(clsid, &[iid]);
    let mut scm = RemoteScmActivatorClient::bind(conn).await?;
    let (_, reply, hr) = scm
        .remote_create_instance(
            OrpcThis::new(ids::COM_VERSION),
            Unique::new(None),
            Unique::new(Some(properties)),
        )
        .await?;
    if hr != ids::S_OK {
        return Err(ClientError::HResult { hr });
    }
    let reply = reply.get().ok_or(ClientError::NoReference)?;
    let reply = activation::parse_reply(reply)?;
    let (_, hr, objref) = reply
        .interfaces
        .into_iter()
        .find(|(i, _, _)| *i == iid)
        .ok_or(ClientError::NoReference)?;
    if hr != ids::S_OK {
        return Err(ClientError::HResult { hr });
    }
    match objref {
        Some(ObjRef::Standard { std, .. }) => Ok(Remote {
            ipid: std.ipid,
            oid: std.oid,
            oxid: std.oxid,
            rem_unknown: reply.exporter.ipid_rem_unknown,
            public_refs: std.public_refs,
        }),
        _ => Err(ClientError::NoReference),
    }
}

/// The interface pointer a call returned (a standard OBJREF in an
/// MInterfacePointer), on an exporter whose Remote Unknown is
/// `rem_unknown`.
pub fn remote_of(
    pointer: &crate::types::MInterfacePointer,
    rem_unknown: Uuid,
) -> Result<Remote, ClientError> {
    match ObjRef::decode(&pointer.data)? {
        ObjRef::Standard { std, .. } => Ok(Remote {
            ipid: std.ipid,
            oid: std.oid,
            oxid: std.oxid,
            rem_unknown,
            public_refs: std.public_refs,
        }),
        ObjRef::Custom { .. } => Err(ClientError::NoReference),
    }
}

/// IRemUnknown::RemQueryInterface: another interface of the object
/// `remote` points to, with one public reference.
pub async fn query_interface(
    conn: &mut Connection,
    remote: &Remote,
    iid: Uuid,
) -> Result<Remote, ClientError> {
    let mut unknown = RemUnknownClient::bind(conn)
        .await?
        .on_object(remote.rem_unknown);
    let (_, results, hr) = unknown
        .rem_query_interface(
            OrpcThis::new(ids::COM_VERSION),
            remote.ipid,
            1,
            1,
            ConformantArray(vec![iid]),
        )
        .await?;
    if hr != ids::S_OK {
        return Err(ClientError::HResult { hr });
    }
    let result = results
        .get()
        .and_then(|r| r.0.first().cloned())
        .ok_or(ClientError::NoReference)?;
    if result.hresult != ids::S_OK {
        return Err(ClientError::HResult { hr: result.hresult });
    }
    Ok(Remote {
        ipid: result.std.ipid,
        oid: result.std.oid,
        oxid: result.std.oxid,
        rem_unknown: remote.rem_unknown,
        public_refs: result.std.public_refs,
    })
}

/// IRemUnknown2::RemRelease of the references an interface pointer holds.
pub async fn release(conn: &mut Connection, remote: &Remote) -> Result<(), ClientError> {
    let mut unknown = RemUnknownClient::bind(conn)
        .await?
        .on_object(remote.rem_unknown);
    let (_, hr) = unknown
        .rem_release(
            OrpcThis::new(ids::COM_VERSION),
            1,
            ConformantArray(vec![RemInterfaceRef {
                ipid: remote.ipid,
                public_refs: remote.public_refs,
                private_refs: 0,
            }]),
        )
        .await?;
    if hr != ids::S_OK {
        return Err(ClientError::HResult { hr });
    }
    Ok(())
}

/// Keeps a client's objects alive on the server it holds them on
/// ([MS-DCOM] 3.2.6.2): ComplexPing makes a ping set of `oids`; call
/// [`PingSet::ping`] every [`PING_PERIOD`].
pub struct PingSet {
    set: u64,
}

/// How often a client pings the objects it holds (3.2.2: 2 minutes).
pub const PING_PERIOD: std::time::Duration = std::time::Duration::from_secs(120);

impl PingSet {
    /// ComplexPing: a new set holding `oids`.
    pub async fn new(conn: &mut Connection, oids: Vec<u64>) -> Result<PingSet, ClientError> {
        let count = oids.len() as u16;
        let (set, _, status) = ObjectExporterClient::bind(conn)
            .await?
            .complex_ping(
                0,
                1,
                count,
                0,
                Unique::new(Some(ConformantArray(oids))),
                Unique::new(None),
            )
            .await?;
        if status != 0 {
            return Err(ClientError::HResult { hr: status });
        }
        Ok(PingSet { set })
    }

    /// SimplePing: the set's objects are still wanted.
    pub async fn ping(&self, conn: &mut Connection) -> Result<(), ClientError> {
        let status = ObjectExporterClient::bind(conn)
            .await?
            .simple_ping(self.set)
            .await?;
        if status != 0 {
            return Err(ClientError::HResult { hr: status });
        }
        Ok(())
    }
}
