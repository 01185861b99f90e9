//! The conversation manager, conv v3.0 (C706 Appendix P with [MS-RPCE]
//! 3.2.3): the interface a connectionless server calls back on its
//! client, over the client's own activity socket, to learn the client's
//! address space (conv_who_are_you2) before it runs a non-idempotent
//! call — what makes at-most-once execution hold across packet loss and
//! a client's restart — and, for an authenticated call, to build the
//! security context (conv_who_are_you_auth carries the server's first
//! token and brings back the client's answer, [MS-RPCE] 3.2.1.4.1). The
//! client answers it; the server calls it.

use std::sync::Arc;

use crate::ndr::{ConformantArray, ConformantVaryingArray};
use crate::security::DatagramInitiator;
use crate::server::{Call, CallResult};
use crate::uuid::Uuid;

/// The interface's UUID (C706 Appendix P).
pub const UUID: &str = "333a2276-0000-0000-0d00-00809c000000";

#[crate::interface(uuid = "333a2276-0000-0000-0d00-00809c000000", version = "3.0")]
pub trait Conv {
    /// conv_who_are_you: the lowest sequence number still in use on
    /// `actuid`, and a status. [MS-RPCE] 3.2.3.1.8: servers call
    /// conv_who_are_you2 instead; clients still answer this one.
    #[opnum(0)]
    fn conv_who_are_you(&self, call: &Call, actuid: Uuid, boot_time: u32)
        -> CallResult<(u32, u32)>;

    /// conv_who_are_you2: the sequence number, the client's address space
    /// UUID (CAS), and a status.
    #[opnum(1)]
    fn conv_who_are_you2(
        &self,
        call: &Call,
        actuid: Uuid,
        boot_time: u32,
    ) -> CallResult<(u32, Uuid, u32)>;

    /// conv_are_you_there: a status ([MS-RPCE] 3.2.3.1.8: not called by
    /// servers of these extensions; answered).
    #[opnum(2)]
    fn conv_are_you_there(&self, call: &Call, actuid: Uuid, boot_time: u32) -> CallResult<u32>;

    /// conv_who_are_you_auth: as conv_who_are_you2, and the security
    /// provider's answer (`out_data`, at most `out_max_len` octets) to
    /// the server's token `in_data` (`in_len` octets): the sequence
    /// number, the CAS UUID, the token, its length and a status.
    #[opnum(3)]
    #[allow(clippy::too_many_arguments)]
    fn conv_who_are_you_auth(
        &self,
        call: &Call,
        actuid: Uuid,
        boot_time: u32,
        in_data: ConformantArray<u8>,
        in_len: i32,
        out_max_len: i32,
    ) -> CallResult<(u32, Uuid, ConformantVaryingArray<u8>, i32, u32)>;
}

/// What a client tells a server that asks who it is.
pub struct ClientIdentity {
    /// The client address space: one per client runtime.
    pub cas: Uuid,
    /// The activity the client is using and its current sequence number.
    pub activity: Uuid,
    pub seq: u32,
    /// The activity's connectionless NTLM logon, when its calls are
    /// authenticated.
    pub logon: Option<Arc<DatagramInitiator>>,
}

/// nca_s_bad_actid: the callback asked about an activity the client does
/// not have.
pub const NCA_S_BAD_ACTID: u32 = 0x1C00_000A;

impl Conv for ClientIdentity {
    fn conv_who_are_you(&self, _call: &Call, actuid: Uuid, _boot: u32) -> CallResult<(u32, u32)> {
        if actuid != self.activity {
            return Ok((0, NCA_S_BAD_ACTID));
        }
        Ok((self.seq, 0))
    }

    fn conv_who_are_you2(
        &self,
        _call: &Call,
        actuid: Uuid,
        _boot: u32,
    ) -> CallResult<(u32, Uuid, u32)> {
        if actuid != self.activity {
            return Ok((0, Uuid::NIL, NCA_S_BAD_ACTID));
        }
        Ok((self.seq, self.cas, 0))
    }

    fn conv_are_you_there(&self, _call: &Call, actuid: Uuid, _boot: u32) -> CallResult<u32> {
        Ok(if actuid == self.activity {
            0
        } else {
            NCA_S_BAD_ACTID
        })
    }

    fn conv_who_are_you_auth(
        &self,
        _call: &Call,
        actuid: Uuid,
        _boot: u32,
        in_data: ConformantArray<u8>,
        in_len: i32,
        out_max_len: i32,
    ) -> CallResult<(u32, Uuid, ConformantVaryingArray<u8>, i32, u32)> {
        let refuse = |status| Ok((0, Uuid::NIL, ConformantVaryingArray::default(), 0, status));
        if actuid != self.activity {
            return refuse(NCA_S_BAD_ACTID);
        }
        if usize::try_from(in_len).ok() != Some(in_data.0.len()) {
            return refuse(crate::status::NCA_S_PROTO_ERROR);
        }
        // No logon, a token that is not a challenge this client takes, or
        // one too long to go back whole: access denied.
        let Some(token) = self
            .logon
            .as_ref()
            .and_then(|logon| logon.authenticate(&in_data.0).ok())
        else {
            return refuse(crate::status::ERROR_ACCESS_DENIED);
        };
        let max = usize::try_from(out_max_len).unwrap_or(0);
        if token.len() > max {
            // conv_who_are_you_auth_more is not spoken: tokens go whole.
            return refuse(crate::status::ERROR_ACCESS_DENIED);
        }
        let len = token.len() as i32;
        Ok((
            self.seq,
            self.cas,
            ConformantVaryingArray { max, items: token },
            len,
            0,
        ))
    }
}
