//! The property the `imsa_requests` fuzz target checks, shared with the
//! test suite that replays its corpus.

use msrpc::ndr::Syntax;

use crate::imsa::MsAdminBaseWServer;

/// An IMSAdminBaseW request stub: the first byte is the opnum, the second
/// the byte order. Decoding never panics.
pub fn imsa_requests(data: &[u8]) {
    let [opnum, order, stub @ ..] = data else {
        return;
    };
    let _ = MsAdminBaseWServer::<()>::decode_request(
        u16::from(*opnum),
        stub,
        Syntax::Ndr20,
        order & 1 == 0,
    );
}
