//! The conversation manager, conv v3.0 (C706 Appendix P with [MS-RPCE]
//! 3.2.3): the interface a connectionless server calls back on its
//! client, over the client's own activity socket, to learn the client's
//! address space (conv_who_are_you2) before it runs a non-idempotent
//! call — what makes at-most-once execution hold across packet loss and
//! a client's restart. The client answers it; the server calls it.

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
}

/// What a client tells a server that asks who it is.
pub struct ClientIdentity {
    /// The client address space: one per client runtime.
    pub cas: Uuid,
    /// The activity the client is using and its current sequence number.
    pub activity: Uuid,
    pub seq: u32,
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
}
