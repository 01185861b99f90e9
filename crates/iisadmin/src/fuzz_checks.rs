//! The property the `imsa_requests` fuzz target checks, shared with the
//! test suite that replays its corpus.

use msrpc::ndr::Syntax;

use crate::imsa::MsAdminBaseWServer;

/// A request stub for IMSAdminBaseW (and what 2W and 3W add), for
/// IIisServiceControl, Inetinfo, inetsrv's metabase tree and service
/// control, IConnectionPointContainer,
/// IConnectionPoint and IMSAdminBaseSinkW: the first
/// byte is the opnum, the second the byte order. Decoding never panics.
pub fn imsa_requests(data: &[u8]) {
    let [opnum, order, stub @ ..] = data else {
        return;
    };
    let (opnum, little) = (u16::from(*opnum), order & 1 == 0);
    let _ = MsAdminBaseWServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = crate::imsa::MsAdminBase2WAddsServer::<()>::decode_request(
        opnum,
        stub,
        Syntax::Ndr20,
        little,
    );
    let _ = crate::imsa::MsAdminBase3WAddsServer::<()>::decode_request(
        opnum,
        stub,
        Syntax::Ndr20,
        little,
    );
    let _ = crate::irp::InetinfoServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    // inetsrv's service control and metabase tree.
    let _ =
        crate::wasctl::WasControlServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ =
        crate::mbtree::MetabaseTreeServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = crate::iiss::IisServiceControlServer::<()>::decode_request(
        opnum,
        stub,
        Syntax::Ndr20,
        little,
    );
    // The connectable object's interfaces, and the sink's (what a client
    // hosting one decodes from the service).
    let _ = crate::sink::ConnectionPointContainerServer::<()>::decode_request(
        opnum,
        stub,
        Syntax::Ndr20,
        little,
    );
    let _ = crate::sink::ConnectionPointServer::<()>::decode_request(
        opnum,
        stub,
        Syntax::Ndr20,
        little,
    );
    let _ = crate::sink::MsAdminBaseSinkWServer::<()>::decode_request(
        opnum,
        stub,
        Syntax::Ndr20,
        little,
    );
    // The secure-data blobs a client sends (R_KeyExchangePhase1/2,
    // R_SetData's SECURE values), read on the service.
    crate::secure::fuzz_blob(stub);
}
