//! The DCOM interfaces every object resolver and exporter serves
//! ([MS-DCOM] 3.1.1.5.6-7, 3.1.2.5), each described once as a trait:
//! IObjectExporter (OXID resolution and pinging), IRemoteSCMActivator and
//! IActivation (activation), IRemUnknown2 (interface pointers and their
//! reference counts). ORPC methods take ORPCTHIS first and return ORPCTHAT
//! first, as their IDL's implicit arguments.

// The methods take the parameters their IDL gives them.
#![allow(clippy::too_many_arguments)]

use std::sync::Arc;

use msrpc::ndr::{ConformantArray, Unique, WString};
use msrpc::server::{Call, CallResult, Fault};
use msrpc::Uuid;

use crate::activation::{self, ActivationRequest};
use crate::exporter::Exporter;
use crate::ids;
use crate::types::{
    ComVersion, DualStringArray, MInterfacePointer, OrpcThat, OrpcThis, RemInterfaceRef,
    RemQiResult, RemoteReplyScmInfo, StdObjRef,
};

#[msrpc::interface(uuid = "99fcfec4-5260-101b-bbcb-00aa0021347a", version = "0.0")]
pub trait ObjectExporter {
    /// ResolveOxid (3.1.2.5.1.1).
    #[opnum(0)]
    fn resolve_oxid(
        &self,
        call: &Call,
        oxid: u64,
        protseq_count: u16,
        protseqs: ConformantArray<u16>,
    ) -> CallResult<(Unique<DualStringArray>, Uuid, u32, u32)>;

    /// SimplePing (3.1.2.5.1.2).
    #[opnum(1)]
    fn simple_ping(&self, call: &Call, set: u64) -> CallResult<u32>;

    /// ComplexPing (3.1.2.5.1.3): the set, the ping back-off factor.
    #[opnum(2)]
    fn complex_ping(
        &self,
        call: &Call,
        set: u64,
        sequence: u16,
        add_count: u16,
        del_count: u16,
        add: Unique<ConformantArray<u64>>,
        del: Unique<ConformantArray<u64>>,
    ) -> CallResult<(u64, u16, u32)>;

    /// ServerAlive (3.1.2.5.1.4).
    #[opnum(3)]
    fn server_alive(&self, call: &Call) -> CallResult<u32>;

    /// ResolveOxid2 (3.1.2.5.1.5).
    #[opnum(4)]
    fn resolve_oxid2(
        &self,
        call: &Call,
        oxid: u64,
        protseq_count: u16,
        protseqs: ConformantArray<u16>,
    ) -> CallResult<(Unique<DualStringArray>, Uuid, u32, ComVersion, u32)>;

    /// ServerAlive2 (3.1.2.5.1.6): the resolver's version and bindings.
    #[opnum(5)]
    fn server_alive2(
        &self,
        call: &Call,
    ) -> CallResult<(ComVersion, Unique<DualStringArray>, u32, u32)>;
}

#[msrpc::interface(uuid = "000001a0-0000-0000-c000-000000000046", version = "0.0")]
pub trait RemoteScmActivator {
    /// RemoteGetClassObject (3.1.2.5.2.3.2).
    #[opnum(3)]
    fn remote_get_class_object(
        &self,
        call: &Call,
        this: OrpcThis,
        properties: Unique<MInterfacePointer>,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)>;

    /// RemoteCreateInstance (3.1.2.5.2.3.3).
    #[opnum(4)]
    fn remote_create_instance(
        &self,
        call: &Call,
        this: OrpcThis,
        outer: Unique<MInterfacePointer>,
        properties: Unique<MInterfacePointer>,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)>;
}

/// IClassFactory's remote methods (objidl's `call_as` forms): what
/// RemoteGetClassObject hands out.
#[msrpc::interface(uuid = "00000001-0000-0000-c000-000000000046", version = "0.0")]
pub trait ClassFactory {
    /// RemoteCreateInstance: an object of the factory's class, as `riid`.
    #[opnum(3)]
    fn remote_create_instance(
        &self,
        call: &Call,
        this: OrpcThis,
        riid: Uuid,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)>;

    /// RemoteLockServer: accepted; the service does not unload classes.
    #[opnum(4)]
    fn remote_lock_server(
        &self,
        call: &Call,
        this: OrpcThis,
        lock: u32,
    ) -> CallResult<(OrpcThat, u32)>;
}

/// A class factory object: the class it makes.
pub struct ClassFactoryObject {
    pub clsid: Uuid,
}

/// RemoteActivation's answer: ORPCTHAT, OXID, its bindings, the IRemUnknown
/// IPID, the authentication hint, the server's version, the HRESULT, the
/// interface pointers, their HRESULTs, the status.
pub type RemoteActivationReply = (
    OrpcThat,
    u64,
    Unique<DualStringArray>,
    Uuid,
    u32,
    ComVersion,
    u32,
    ConformantArray<Unique<MInterfacePointer>>,
    ConformantArray<u32>,
    u32,
);

#[msrpc::interface(uuid = "4d9f4ab8-7d1c-11cf-861e-0020af6e7c57", version = "0.0")]
pub trait Activation {
    /// RemoteActivation (3.1.2.5.2.3.1).
    #[opnum(0)]
    fn remote_activation(
        &self,
        call: &Call,
        this: OrpcThis,
        clsid: Uuid,
        object_name: Unique<WString>,
        object_storage: Unique<MInterfacePointer>,
        client_imp_level: u32,
        mode: u32,
        #[ndr(range(1, 0x8000))] interfaces: u32,
        iids: Unique<ConformantArray<Uuid>>,
        #[ndr(range(0, 0x8000))] protseq_count: u16,
        protseqs: ConformantArray<u16>,
    ) -> CallResult<RemoteActivationReply>;
}

/// RemQueryInterface2's answer: ORPCTHAT, an HRESULT per IID, the
/// interface pointers, the HRESULT.
pub type RemQueryInterface2Reply = (
    OrpcThat,
    ConformantArray<u32>,
    ConformantArray<Unique<MInterfacePointer>>,
    u32,
);

/// IRemUnknown ([MS-DCOM] 3.1.1.5.6): interface pointers and their
/// reference counts, on the exporter's Remote Unknown.
#[msrpc::interface(uuid = "00000131-0000-0000-c000-000000000046", version = "0.0")]
pub trait RemUnknown {
    /// RemQueryInterface (3.1.1.5.6.1.1).
    #[opnum(3)]
    fn rem_query_interface(
        &self,
        call: &Call,
        this: OrpcThis,
        ipid: Uuid,
        refs: u32,
        iid_count: u16,
        iids: ConformantArray<Uuid>,
    ) -> CallResult<(OrpcThat, Unique<ConformantArray<RemQiResult>>, u32)>;

    /// RemAddRef (3.1.1.5.6.1.2).
    #[opnum(4)]
    fn rem_add_ref(
        &self,
        call: &Call,
        this: OrpcThis,
        count: u16,
        refs: ConformantArray<RemInterfaceRef>,
    ) -> CallResult<(OrpcThat, ConformantArray<u32>, u32)>;

    /// RemRelease (3.1.1.5.6.1.3).
    #[opnum(5)]
    fn rem_release(
        &self,
        call: &Call,
        this: OrpcThis,
        count: u16,
        refs: ConformantArray<RemInterfaceRef>,
    ) -> CallResult<(OrpcThat, u32)>;
}

/// What IRemUnknown2 adds to IRemUnknown; served with IRemUnknown's
/// methods under IRemUnknown2's IID (`msrpc::server::Extends`).
#[msrpc::interface(uuid = "00000143-0000-0000-c000-000000000046", version = "0.0")]
pub trait RemUnknown2Adds {
    /// RemQueryInterface2 (3.1.1.5.7.1.1).
    #[opnum(6)]
    fn rem_query_interface2(
        &self,
        call: &Call,
        this: OrpcThis,
        ipid: Uuid,
        iid_count: u16,
        iids: ConformantArray<Uuid>,
    ) -> CallResult<RemQueryInterface2Reply>;
}

/// The resolver and the exporter's Remote Unknown, over one [`Exporter`].
#[derive(Clone)]
pub struct Dcom(pub Arc<Exporter>);

fn that() -> OrpcThat {
    OrpcThat::default()
}

/// Capability negotiation (1.7): the client's major version must be ours
/// and its minor not above ours.
fn version_ok(v: ComVersion) -> bool {
    v.major == ids::COM_VERSION.major && v.minor <= ids::COM_VERSION.minor
}

impl Dcom {
    fn check_orpc(&self, call: &Call, this: &OrpcThis) -> CallResult<()> {
        if call.object != Some(self.0.rem_unknown_ipid()) {
            return Err(Fault::not_executed(ids::RPC_E_INVALID_IPID));
        }
        if !version_ok(this.version) {
            return Err(Fault::not_executed(ids::RPC_E_VERSION_MISMATCH));
        }
        Ok(())
    }

    /// Activation's common part: the object, one result per IID.
    fn activate(
        &self,
        call: &Call,
        request: &ActivationRequest,
        factory: bool,
    ) -> Result<Vec<(u32, Option<MInterfacePointer>)>, u32> {
        let Some(class) = self.0.class(&request.clsid) else {
            tracing::warn!(clsid = %request.clsid, client = ?call.client, "DCOM: activation of a class that is not registered");
            return Err(ids::REGDB_E_CLASSNOTREG);
        };
        if !request.protseqs.is_empty()
            && !request
                .protseqs
                .contains(&crate::objref::TOWER_NCACN_IP_TCP)
        {
            tracing::warn!(protseqs = ?request.protseqs, "DCOM: the client speaks none of this server's protocol sequences");
        }
        let created = if factory {
            // The class decides who may use it when the factory makes an
            // object; the factory itself is for authenticated callers.
            class.admit(call)?;
            crate::exporter::Created {
                object: Arc::new(ClassFactoryObject {
                    clsid: request.clsid,
                }),
                interfaces: vec![ids::IID_ICLASS_FACTORY],
            }
        } else {
            class.create(call).inspect_err(|hr| {
                tracing::warn!(class = class.name(), client = ?crate::exporter::identity(call), hresult = format!("{hr:#010x}"), "DCOM: activation refused");
            })?
        };
        let oid = self
            .0
            .export(created, crate::exporter::identity(call), class.name())?;
        let results: Vec<_> = request
            .iids
            .iter()
            .map(|iid| match self.0.marshal(call, oid, *iid) {
                Ok(ip) => (ids::S_OK, Some(ip)),
                Err(hr) => (hr, None),
            })
            .collect();
        if results.iter().all(|(hr, _)| *hr != ids::S_OK) {
            // Nothing refers to the object: it goes at once.
            self.0.forget(oid);
            return Err(ids::E_NOINTERFACE);
        }
        tracing::info!(class = class.name(), client = ?crate::exporter::identity(call), oid, "DCOM: object activated");
        Ok(results)
    }

    fn reply_info(&self, call: &Call) -> RemoteReplyScmInfo {
        RemoteReplyScmInfo {
            oxid: self.0.oxid(),
            oxid_bindings: Unique::new(Some(self.0.bindings(call, true).to_idl())),
            ipid_rem_unknown: self.0.rem_unknown_ipid(),
            authn_hint: self.0.authn_hint,
            server_version: ids::COM_VERSION,
        }
    }

    fn query_interface(
        &self,
        call: &Call,
        ipid: &Uuid,
        refs: u32,
        iids: &[Uuid],
    ) -> Vec<RemQiResult> {
        iids.iter()
            .map(|iid| {
                match self.0.query_interface(
                    ipid,
                    crate::exporter::identity(call).as_deref(),
                    *iid,
                    refs,
                ) {
                    Ok(std) => RemQiResult {
                        hresult: ids::S_OK,
                        std,
                    },
                    Err(hresult) => RemQiResult {
                        hresult,
                        std: StdObjRef::default(),
                    },
                }
            })
            .collect()
    }
}

impl ObjectExporter for Dcom {
    fn resolve_oxid(
        &self,
        call: &Call,
        oxid: u64,
        _protseq_count: u16,
        _protseqs: ConformantArray<u16>,
    ) -> CallResult<(Unique<DualStringArray>, Uuid, u32, u32)> {
        if oxid != self.0.oxid() {
            return Ok((Unique::new(None), Uuid::NIL, 0, ids::OR_INVALID_OXID));
        }
        Ok((
            Unique::new(Some(self.0.bindings(call, true).to_idl())),
            self.0.rem_unknown_ipid(),
            self.0.authn_hint,
            0,
        ))
    }

    fn simple_ping(&self, _call: &Call, set: u64) -> CallResult<u32> {
        Ok(self.0.simple_ping(set))
    }

    fn complex_ping(
        &self,
        _call: &Call,
        set: u64,
        sequence: u16,
        add_count: u16,
        del_count: u16,
        add: Unique<ConformantArray<u64>>,
        del: Unique<ConformantArray<u64>>,
    ) -> CallResult<(u64, u16, u32)> {
        let bad = |n: u16, a: &Unique<ConformantArray<u64>>| {
            a.get().map(|a| a.0.len()).unwrap_or(0) != n as usize
        };
        if bad(add_count, &add) || bad(del_count, &del) {
            return Err(Fault::stub(msrpc::ndr::NdrError::Invalid(
                "ComplexPing: a count is not its array's length",
            )));
        }
        let add = add.get().map(|a| a.0.as_slice()).unwrap_or(&[]);
        let del = del.get().map(|a| a.0.as_slice()).unwrap_or(&[]);
        match self.0.complex_ping(set, sequence, add, del) {
            Ok(set) => Ok((set, 0, 0)),
            Err(status) => Ok((set, 0, status)),
        }
    }

    fn server_alive(&self, _call: &Call) -> CallResult<u32> {
        Ok(0)
    }

    fn resolve_oxid2(
        &self,
        call: &Call,
        oxid: u64,
        protseq_count: u16,
        protseqs: ConformantArray<u16>,
    ) -> CallResult<(Unique<DualStringArray>, Uuid, u32, ComVersion, u32)> {
        let (bindings, ipid, hint, status) =
            self.resolve_oxid(call, oxid, protseq_count, protseqs)?;
        Ok((bindings, ipid, hint, ids::COM_VERSION, status))
    }

    fn server_alive2(
        &self,
        call: &Call,
    ) -> CallResult<(ComVersion, Unique<DualStringArray>, u32, u32)> {
        Ok((
            ids::COM_VERSION,
            Unique::new(Some(self.0.bindings(call, false).to_idl())),
            0,
            0,
        ))
    }
}

impl Dcom {
    /// RemoteGetClassObject's and RemoteCreateInstance's work: the
    /// activation properties read, the object (or its class factory) made,
    /// the ActivationPropertiesOut answered.
    fn scm_activation(
        &self,
        call: &Call,
        this: &OrpcThis,
        properties: &Unique<MInterfacePointer>,
        factory: bool,
    ) -> (OrpcThat, Unique<MInterfacePointer>, u32) {
        if !version_ok(this.version) {
            return (that(), Unique::new(None), ids::RPC_E_VERSION_MISMATCH);
        }
        let Some(properties) = properties.get() else {
            return (that(), Unique::new(None), ids::E_INVALIDARG);
        };
        let request = match activation::parse_request(properties) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(client = ?call.client, "DCOM: activation refused: {e}");
                return (that(), Unique::new(None), ids::RPC_E_INVALID_OBJREF);
            }
        };
        match self.activate(call, &request, factory) {
            Ok(results) => {
                let reply = activation::build_reply(&request.iids, &results, self.reply_info(call));
                (that(), Unique::new(Some(reply)), ids::S_OK)
            }
            Err(hr) => (that(), Unique::new(None), hr),
        }
    }
}

impl RemoteScmActivator for Dcom {
    fn remote_get_class_object(
        &self,
        call: &Call,
        this: OrpcThis,
        properties: Unique<MInterfacePointer>,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)> {
        Ok(self.scm_activation(call, &this, &properties, true))
    }

    fn remote_create_instance(
        &self,
        call: &Call,
        this: OrpcThis,
        _outer: Unique<MInterfacePointer>,
        properties: Unique<MInterfacePointer>,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)> {
        Ok(self.scm_activation(call, &this, &properties, false))
    }
}

impl Activation for Dcom {
    fn remote_activation(
        &self,
        call: &Call,
        this: OrpcThis,
        clsid: Uuid,
        _object_name: Unique<WString>,
        _object_storage: Unique<MInterfacePointer>,
        _client_imp_level: u32,
        _mode: u32,
        interfaces: u32,
        iids: Unique<ConformantArray<Uuid>>,
        protseq_count: u16,
        protseqs: ConformantArray<u16>,
    ) -> CallResult<RemoteActivationReply> {
        let iids = iids.get().map(|a| a.0.clone()).unwrap_or_default();
        if iids.len() != interfaces as usize || protseqs.0.len() != protseq_count as usize {
            return Err(Fault::stub(msrpc::ndr::NdrError::Invalid(
                "RemoteActivation: a count is not its array's length",
            )));
        }
        let failed = |hr: u32| {
            Ok((
                that(),
                0,
                Unique::new(None),
                Uuid::NIL,
                0,
                ids::COM_VERSION,
                hr,
                ConformantArray(iids.iter().map(|_| Unique::new(None)).collect()),
                ConformantArray(vec![0; iids.len()]),
                0,
            ))
        };
        if !version_ok(this.version) {
            return failed(ids::RPC_E_VERSION_MISMATCH);
        }
        let request = ActivationRequest {
            clsid,
            iids: iids.clone(),
            protseqs: protseqs.0,
        };
        match self.activate(call, &request, false) {
            Ok(results) => {
                let info = self.reply_info(call);
                Ok((
                    that(),
                    info.oxid,
                    info.oxid_bindings,
                    info.ipid_rem_unknown,
                    info.authn_hint,
                    ids::COM_VERSION,
                    ids::S_OK,
                    ConformantArray(
                        results
                            .iter()
                            .map(|(_, ip)| Unique::new(ip.clone()))
                            .collect(),
                    ),
                    ConformantArray(results.iter().map(|(hr, _)| *hr).collect()),
                    0,
                ))
            }
            Err(hr) => failed(hr),
        }
    }
}

impl RemUnknown for Dcom {
    fn rem_query_interface(
        &self,
        call: &Call,
        this: OrpcThis,
        ipid: Uuid,
        refs: u32,
        iid_count: u16,
        iids: ConformantArray<Uuid>,
    ) -> CallResult<(OrpcThat, Unique<ConformantArray<RemQiResult>>, u32)> {
        self.check_orpc(call, &this)?;
        if iids.0.len() != iid_count as usize {
            return Err(Fault::stub(msrpc::ndr::NdrError::Invalid(
                "RemQueryInterface: cIids is not the array's length",
            )));
        }
        let results = self.query_interface(call, &ipid, refs, &iids.0);
        let hr = if results.iter().all(|r| r.hresult == ids::S_OK) {
            ids::S_OK
        } else if results.iter().any(|r| r.hresult == ids::S_OK) {
            // S_FALSE: some of the interfaces.
            1
        } else {
            results
                .first()
                .map(|r| r.hresult)
                .unwrap_or(ids::E_INVALIDARG)
        };
        Ok((that(), Unique::new(Some(ConformantArray(results))), hr))
    }

    fn rem_add_ref(
        &self,
        call: &Call,
        this: OrpcThis,
        count: u16,
        refs: ConformantArray<RemInterfaceRef>,
    ) -> CallResult<(OrpcThat, ConformantArray<u32>, u32)> {
        self.check_orpc(call, &this)?;
        if refs.0.len() != count as usize {
            return Err(Fault::stub(msrpc::ndr::NdrError::Invalid(
                "RemAddRef: the count is not the array's length",
            )));
        }
        let results: Vec<u32> = refs
            .0
            .iter()
            .map(|r| {
                self.0.add_ref(
                    &r.ipid,
                    crate::exporter::identity(call).as_deref(),
                    r.public_refs,
                )
            })
            .collect();
        let hr = results
            .iter()
            .copied()
            .find(|hr| *hr != ids::S_OK)
            .unwrap_or(ids::S_OK);
        Ok((that(), ConformantArray(results), hr))
    }

    fn rem_release(
        &self,
        call: &Call,
        this: OrpcThis,
        count: u16,
        refs: ConformantArray<RemInterfaceRef>,
    ) -> CallResult<(OrpcThat, u32)> {
        self.check_orpc(call, &this)?;
        if refs.0.len() != count as usize {
            return Err(Fault::stub(msrpc::ndr::NdrError::Invalid(
                "RemRelease: the count is not the array's length",
            )));
        }
        let mut hr = ids::S_OK;
        for r in &refs.0 {
            let one = self.0.release(
                &r.ipid,
                crate::exporter::identity(call).as_deref(),
                r.public_refs,
            );
            if one != ids::S_OK {
                hr = one;
            }
        }
        Ok((that(), hr))
    }
}

impl RemUnknown2Adds for Dcom {
    fn rem_query_interface2(
        &self,
        call: &Call,
        this: OrpcThis,
        ipid: Uuid,
        iid_count: u16,
        iids: ConformantArray<Uuid>,
    ) -> CallResult<RemQueryInterface2Reply> {
        self.check_orpc(call, &this)?;
        if iids.0.len() != iid_count as usize {
            return Err(Fault::stub(msrpc::ndr::NdrError::Invalid(
                "RemQueryInterface2: cIids is not the array's length",
            )));
        }
        let results = self.query_interface(call, &ipid, crate::exporter::PUBLIC_REFS, &iids.0);
        let resolver = self.0.bindings(call, false);
        let pointers = results
            .iter()
            .zip(&iids.0)
            .map(|(r, iid)| {
                Unique::new((r.hresult == ids::S_OK).then(|| {
                    MInterfacePointer::new(
                        crate::objref::ObjRef::Standard {
                            iid: *iid,
                            std: r.std,
                            resolver: resolver.clone(),
                        }
                        .encode(),
                    )
                }))
            })
            .collect();
        let hr = results
            .iter()
            .map(|r| r.hresult)
            .find(|hr| *hr != ids::S_OK)
            .unwrap_or(ids::S_OK);
        Ok((
            that(),
            ConformantArray(results.iter().map(|r| r.hresult).collect()),
            ConformantArray(pointers),
            hr,
        ))
    }
}

impl ClassFactory for Dcom {
    fn remote_create_instance(
        &self,
        call: &Call,
        _this: OrpcThis,
        riid: Uuid,
    ) -> CallResult<(OrpcThat, Unique<MInterfacePointer>, u32)> {
        let factory = self.0.object::<ClassFactoryObject>(call)?;
        let request = ActivationRequest {
            clsid: factory.clsid,
            iids: vec![riid],
            protseqs: Vec::new(),
        };
        Ok(match self.activate(call, &request, false) {
            Ok(mut results) => {
                let (hr, pointer) = results.pop().unwrap_or((ids::E_NOINTERFACE, None));
                (that(), Unique::new(pointer), hr)
            }
            Err(hr) => (that(), Unique::new(None), hr),
        })
    }

    fn remote_lock_server(
        &self,
        call: &Call,
        _this: OrpcThis,
        _lock: u32,
    ) -> CallResult<(OrpcThat, u32)> {
        self.0.object::<ClassFactoryObject>(call)?;
        Ok((that(), ids::S_OK))
    }
}
