//! The properties the DCOM fuzz targets check (`dcom_structures`,
//! `dcom_requests`), shared with the test suite that replays their
//! corpora.

use msrpc::ndr::{from_bytes, to_bytes, Syntax};

use crate::activation::parse_request;
use crate::errorinfo::ErrorInfo;
use crate::interfaces::{
    ActivationServer, ClassFactoryServer, ObjectExporterServer, RemUnknown2AddsServer,
    RemUnknownServer, RemoteScmActivatorServer,
};
use crate::objref::{Bindings, ObjRef};
use crate::types::{MInterfacePointer, OrpcThat, OrpcThis};

/// The first byte picks the structure: OBJREF, a packet DUALSTRINGARRAY,
/// ORPCTHIS or ORPCTHAT (either byte order; an ORPCTHAT's error
/// information, and the error object's format alone), activation
/// properties.
/// Nothing panics; what decodes re-encodes to the same value.
pub fn structures(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            if let Ok(r) = ObjRef::decode(rest) {
                let again = ObjRef::decode(&r.encode()).expect("a re-encoded OBJREF decodes");
                assert_eq!(again, r);
            }
        }
        1 => {
            if let Ok(b) = Bindings::decode_packet(rest) {
                let mut bytes = Vec::new();
                b.encode_packet(&mut bytes);
                assert_eq!(Bindings::decode_packet(&bytes), Ok(b));
            }
        }
        2 | 3 => {
            let little = selector % 6 == 2;
            if let Ok(this) = from_bytes::<OrpcThis>(rest, Syntax::Ndr20, little) {
                let bytes = to_bytes(&this, Syntax::Ndr20);
                assert_eq!(
                    from_bytes::<OrpcThis>(&bytes, Syntax::Ndr20, true),
                    Ok(this)
                );
            }
        }
        4 => {
            if let Ok(that) = from_bytes::<OrpcThat>(rest, Syntax::Ndr20, true) {
                let bytes = to_bytes(&that, Syntax::Ndr20);
                assert_eq!(
                    from_bytes::<OrpcThat>(&bytes, Syntax::Ndr20, true),
                    Ok(that.clone())
                );
                // Error information in it reads, and reads back.
                if let Some(info) = ErrorInfo::of_that(&that) {
                    assert_eq!(ErrorInfo::of_that(&info.that()), Some(info));
                }
            }
            // The error object's own format, as the whole input.
            if let Ok(info) = ErrorInfo::decode(rest) {
                assert_eq!(ErrorInfo::decode(&info.encode()), Ok(info));
            }
        }
        _ => {
            let _ = parse_request(&MInterfacePointer::new(rest.to_vec()));
        }
    }
}

/// A request stub for one of the resolver's or the Remote Unknown's
/// methods: the first byte picks the interface, the second the opnum, the
/// third the byte order. Decoding never panics.
pub fn requests(data: &[u8]) {
    let [which, opnum, order, stub @ ..] = data else {
        return;
    };
    let (opnum, little) = (u16::from(*opnum), order & 1 == 0);
    let _ = match which % 6 {
        5 => ClassFactoryServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little),
        0 => ObjectExporterServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little),
        1 => RemoteScmActivatorServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little),
        2 => ActivationServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little),
        3 => RemUnknown2AddsServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little),
        _ => RemUnknownServer::<()>::decode_request(opnum, stub, Syntax::Ndr20, little),
    };
}
