//! The property the `wbem_requests` fuzz target checks, shared with the
//! test suite that replays its corpus.

use msrpc::ndr::Syntax;

use crate::interfaces::*;

/// A request stub for one of the WMI interfaces (IWbemLevel1Login,
/// IWbemServices, IEnumWbemClassObject, the smart enumerator,
/// IWbemCallResult, and IWbemObjectSink, which a client serves for the
/// server's callbacks): the first byte is the opnum, the second the byte
/// order. Decoding never panics, and an IWbemClassObject or IWbemContext
/// a request carries (PutInstance's instance and context, ExecMethod's
/// in-parameters) decodes or fails cleanly.
pub fn wbem_requests(data: &[u8]) {
    let [opnum, order, stub @ ..] = data else {
        return;
    };
    let (opnum, little) = (u16::from(*opnum), order & 1 == 0);
    let _ = WbemLevel1LoginServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = WbemServicesServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = EnumWbemClassObjectServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = WbemFetchSmartEnumServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = WbemWcoSmartEnumServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = WbemCallResultServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    let _ = WbemObjectSinkServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little);
    // The objects inside: an OBJREF_CUSTOM's EncodingUnit wherever the
    // stub has the "MEOW" signature.
    for at in 0..stub.len().saturating_sub(4) {
        if &stub[at..at + 4] == b"MEOW" {
            let pointer = dcom::types::MInterfacePointer::new(stub[at..].to_vec());
            let pointer = msrpc::ndr::Unique::new(Some(pointer));
            let _ = crate::service::object_of(&pointer);
            let _ = crate::service::context_of(&pointer);
        }
    }
}
