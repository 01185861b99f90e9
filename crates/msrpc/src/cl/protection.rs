//! Authenticated connectionless calls ([MS-RPCE] 3.2.1.4.1.1): each
//! request and response fragment carries a sec_trailer_cl and an NTLM
//! signature of its body, which is also sealed at the privacy level.
//! Header signing does not exist in connectionless RPC, so the header
//! goes as it is.
//!
//! Connectionless NTLM takes each message's sequence number from the
//! application ([MS-NLMP] 3.4.4); [MS-RPCE] does not say which, and
//! inetsrv gives the call's sequence number in the upper 16 bits and the
//! fragment number in the lower: every fragment of every call has a
//! number of its own, and a fragment moved to another call or position
//! does not verify. A client starts a new security context (the next
//! key_vers_num) every 65,536 calls, before a number would repeat.

use super::{AuthTrailer, Header};
use crate::security::{auth_level, auth_type, DatagramSession, SecurityError, SIGNATURE_LEN};

/// The NTLM sequence number of fragment `fragnum` of call `seq`.
pub fn message_number(seq: u32, fragnum: u16) -> u32 {
    (seq << 16) | u32::from(fragnum)
}

/// The key_vers_num of the context that protects call `seq`.
pub fn key_vers_num(seq: u32) -> u8 {
    (seq >> 16) as u8
}

/// Whether fragments at `level` carry a signature (packet and above;
/// connect authenticates the caller only).
pub fn signs(level: u8) -> bool {
    level >= auth_level::PKT
}

/// The octets protection adds to a fragment: padding to 8 and the
/// trailer with its signature.
pub const OVERHEAD: usize = 7 + AuthTrailer::len(SIGNATURE_LEN);

/// Protects a fragment about to be sent under `header`: pads the body to
/// 8 octets, signs it (sealing it at the privacy level) and marks the
/// header as NTLM's; returns the trailer that follows the body.
pub fn protect(
    session: &DatagramSession,
    header: &mut Header,
    body: &mut Vec<u8>,
    level: u8,
    key_vers_num: u8,
) -> AuthTrailer {
    header.auth_proto = auth_type::WINNT;
    body.resize(body.len().next_multiple_of(8), 0);
    let token = if signs(level) {
        let number = message_number(header.seqnum, header.fragnum);
        session
            .protect(number, body, level == auth_level::PRIVACY)
            .to_vec()
    } else {
        Vec::new()
    };
    AuthTrailer {
        level,
        key_vers_num,
        token,
    }
}

/// Checks (and at the privacy level unseals, in place) the body of
/// fragment `fragnum` of call `seq` against its signature.
pub fn unprotect(
    session: &DatagramSession,
    seq: u32,
    fragnum: u16,
    body: &mut [u8],
    level: u8,
    token: &[u8],
) -> Result<(), SecurityError> {
    if !signs(level) {
        return Ok(());
    }
    session.unprotect(
        message_number(seq, fragnum),
        body,
        level == auth_level::PRIVACY,
        token,
    )
}
