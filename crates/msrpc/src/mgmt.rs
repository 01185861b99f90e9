//! The management interface, MGMT v1.0 (C706 Appendix Q with [MS-RPCE]
//! 2.2.1.3): served on every endpoint of a [`Server`].

use crate::ndr::{ConformantArray, SizedCString, Unique};
use crate::server::{Call, CallResult, Server};
use crate::status;
use crate::uuid::Uuid;

/// RPC_IF_ID.
#[derive(crate::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcIfId {
    pub uuid: Uuid,
    pub vers_major: u16,
    pub vers_minor: u16,
}

/// rpc_if_id_vector_t ([MS-RPCE] 2.2.1.3.1).
#[derive(crate::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct IfIdVector {
    pub count: u32,
    #[ndr(size_is = "count")]
    pub if_id: Vec<Unique<RpcIfId>>,
}

/// RPC_C_AUTHN_* values rpc_mgmt_inq_princ_name answers for: SPNEGO (9)
/// and NTLM (10) always, Kerberos (16) when the server has a keytab.
pub const PRINCIPAL_AUTHN_SERVICES: [u32; 2] = [9, 10];
const AUTHN_KERBEROS: u32 = 16;

#[crate::interface(uuid = "afa8bd80-7d8a-11c9-bef4-08002b102989", version = "1.0")]
pub trait Mgmt {
    /// rpc_mgmt_inq_if_ids: the interfaces the server offers.
    #[opnum(0)]
    fn inq_if_ids(&self, call: &Call) -> CallResult<(Unique<IfIdVector>, u32)>;

    /// rpc_mgmt_inq_stats: up to `count` of calls in, calls out, packets
    /// in, packets out.
    #[opnum(1)]
    fn inq_stats(
        &self,
        call: &Call,
        #[ndr(range(0, 50))] count: u32,
    ) -> CallResult<(u32, ConformantArray<u32>, u32)>;

    /// rpc_mgmt_is_server_listening: status, then the boolean32 result.
    #[opnum(2)]
    fn is_server_listening(&self, call: &Call) -> CallResult<(u32, u32)>;

    /// rpc_mgmt_stop_server_listening: refused to callers ([MS-RPCE]
    /// 3.1.1.5.6 leaves it to the server; a remote stop is not allowed).
    #[opnum(3)]
    fn stop_server_listening(&self, call: &Call) -> CallResult<u32>;

    /// rpc_mgmt_inq_princ_name.
    #[opnum(4)]
    fn inq_princ_name(
        &self,
        call: &Call,
        authn_proto: u32,
        #[ndr(range(0, 4096))] princ_name_size: u32,
    ) -> CallResult<(SizedCString, u32)>;
}

/// The management interface of the server a call reaches.
pub struct Management;

fn listed_ids(server: &Server) -> Vec<Unique<RpcIfId>> {
    server
        .interfaces()
        .iter()
        .filter(|r| r.listed)
        .map(|r| {
            let s = r.interface.syntax();
            Unique::new(Some(RpcIfId {
                uuid: s.uuid,
                vers_major: s.major(),
                vers_minor: s.minor(),
            }))
        })
        .collect()
}

impl Mgmt for Management {
    fn inq_if_ids(&self, call: &Call) -> CallResult<(Unique<IfIdVector>, u32)> {
        let ids = listed_ids(call.server);
        Ok((
            Unique::new(Some(IfIdVector {
                count: ids.len() as u32,
                if_id: ids,
            })),
            0,
        ))
    }

    fn inq_stats(&self, call: &Call, count: u32) -> CallResult<(u32, ConformantArray<u32>, u32)> {
        let all = call.server.stats.snapshot();
        let n = (count as usize).min(all.len());
        Ok((n as u32, ConformantArray(all[..n].to_vec()), 0))
    }

    fn is_server_listening(&self, call: &Call) -> CallResult<(u32, u32)> {
        Ok((0, u32::from(call.server.is_listening())))
    }

    fn stop_server_listening(&self, _call: &Call) -> CallResult<u32> {
        Ok(status::ERROR_ACCESS_DENIED)
    }

    fn inq_princ_name(
        &self,
        call: &Call,
        authn_proto: u32,
        princ_name_size: u32,
    ) -> CallResult<(SizedCString, u32)> {
        let size = princ_name_size as usize;
        // Kerberos names the service its keytab holds keys for.
        let kerberos = (authn_proto == AUTHN_KERBEROS)
            .then(|| call.server.kerberos_principal())
            .flatten();
        if !PRINCIPAL_AUTHN_SERVICES.contains(&authn_proto) && kerberos.is_none() {
            return Ok((
                SizedCString {
                    max: size,
                    text: Vec::new(),
                },
                status::RPC_S_UNKNOWN_AUTHN_SERVICE,
            ));
        }
        let name = kerberos.unwrap_or_else(|| call.server.principal.clone());
        let name = name.as_bytes();
        if name.len() + 1 > size {
            // The name and its NUL do not fit the caller's buffer: an
            // empty string and the status say so, rather than a cut name.
            return Ok((
                SizedCString {
                    max: size,
                    text: Vec::new(),
                },
                status::ERROR_INSUFFICIENT_BUFFER,
            ));
        }
        Ok((
            SizedCString {
                max: size,
                text: name.to_vec(),
            },
            0,
        ))
    }
}
