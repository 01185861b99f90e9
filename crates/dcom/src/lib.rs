//! DCOM ([MS-DCOM]) as a layer of the msrpc runtime: what makes an RPC
//! server an object resolver and object exporter.
//!
//! - [`types`]: ORPCTHIS/ORPCTHAT, MInterfacePointer, STDOBJREF,
//!   DUALSTRINGARRAY, REMQIRESULT and the activation properties, described
//!   once with `#[derive(Ndr)]`.
//! - [`objref`]: OBJREF's packet form (standard and custom; handler and
//!   extended refused cleanly) and string/security bindings.
//! - [`activation`]: the activation properties BLOB in and out.
//! - [`exporter`]: the OXID, the classes, objects (OIDs), interface
//!   pointers (IPIDs), reference counts, ping sets, and the reclamation
//!   of objects whose clients stopped pinging.
//! - [`errorinfo`]: the error information a failing call's ORPCTHAT
//!   carries (what IErrorInfo tells a caller).
//! - [`client`]: activation and release from the client side.
//! - [`callback`]: calling back an object a client handed the service
//!   (resolved at the client's own resolver, pinged while held), and the
//!   client's host for such objects.
//! - [`interfaces`]: IObjectExporter, IRemoteSCMActivator, IActivation,
//!   IRemUnknown and IRemUnknown2, each described once with
//!   `#[msrpc::interface]`, served by [`interfaces::Dcom`].
//!
//! [`serve`] registers them on a [`msrpc::server::Server`]; the interfaces
//! of the objects themselves (IMSAdminBaseW, …) are registered by whoever
//! defines them, and find their object with [`Exporter::object`].

pub mod activation;
pub mod callback;
pub mod client;
pub mod errorinfo;
pub mod exporter;
/// What the fuzz targets and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod ids;
pub mod interfaces;
pub mod objref;
pub mod types;

use std::sync::Arc;

pub use exporter::{ComClass, Created, Exporter};

/// Registers the resolver's and the Remote Unknown's interfaces: the
/// resolver's at `level` (ServerAlive must answer anyone the endpoint
/// does), the Remote Unknown's at `orpc_level`. None is listed in the
/// endpoint map: the resolver shares the endpoint mapper's well-known
/// endpoint ([MS-DCOM] 1.9), and the exporter's bindings travel in the
/// answers to activation and OXID resolution.
pub fn serve(server: &msrpc::server::Server, exporter: Arc<Exporter>, level: u8, orpc_level: u8) {
    use interfaces::*;
    // A call on an object that lacks its context's interface goes to the
    // interface its IPID names.
    let routes = std::sync::Arc::downgrade(&exporter);
    server.route_objects(Arc::new(move |ipid, bound| {
        routes.upgrade().and_then(|e| e.route(ipid, bound))
    }));
    let dcom = Dcom(exporter);
    server.register(ObjectExporterServer(dcom.clone()), level, false);
    server.register(RemoteScmActivatorServer(dcom.clone()), level, false);
    server.register(ActivationServer(dcom.clone()), level, false);
    server.register(ClassFactoryServer(dcom.clone()), orpc_level, false);
    server.register(RemUnknownServer(dcom.clone()), orpc_level, false);
    server.register(
        msrpc::server::Extends::new(
            msrpc::pdu::SyntaxId::new(ids::IID_IREM_UNKNOWN2, 0, 0),
            "RemUnknown2",
            vec![
                Box::new(RemUnknownServer(dcom.clone())),
                Box::new(RemUnknown2AddsServer(dcom)),
            ],
        ),
        orpc_level,
        false,
    );
}
