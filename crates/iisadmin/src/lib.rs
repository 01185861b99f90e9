//! The IIS administration interfaces on the wire, served as DCOM classes
//! by the service host:
//!
//! - [`imsa`]: IMSAdminBaseW ([MS-IMSA]) over the live metabase, with
//!   METADATA_HANDLEs and their read/write locks.
//! - [`irp`]: the Inetinfo interface ([MS-IRP]): version, capabilities,
//!   the Web service's statistics, cache flush.
//! - [`secure`]: the secure-data exchange (R_KeyExchangePhase1/2) and the
//!   encryption of SECURE values, both sides.
//! - [`sink`]: the change-notification sinks (IConnectionPointContainer,
//!   IConnectionPoint, IMSAdminBaseSinkW callbacks), and a client's host
//!   for one.
//! - [`mbtree`]: inetsrv's own interface on the same object: a branch of
//!   the metabase in one call, a batch of changes in one transaction.
//! - [`wasctl`]: inetsrv's typed control of the activation service
//!   (sites, pools, workers), what `inetsrv site|pool --server` call.
//! - [`iiss`]: IIisServiceControl ([MS-IISS]): stop, start, status and
//!   kill the web service, through the host's [`iiss::ServiceHost`].
//!
//! Who may activate them is the host's decision ([`Admins`]): inetsrv
//! lets administrators of its user database in, at packet integrity or
//! privacy.

/// What the fuzz target and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod iiss;
pub mod imsa;
pub mod irp;
pub mod mbtree;
pub mod secure;
pub mod sink;
pub mod wasctl;

use std::sync::Arc;

use msrpc::server::{auth_level, Call, Transport};

/// This process's effective user: the owner of /proc/self.
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// Decides who is an administrator.
pub trait Admins: Send + Sync + 'static {
    fn is_admin(&self, user: &str) -> bool;
}

/// Whether a call may use the administration interfaces: an
/// authenticated administrator at packet integrity or above, or, on the
/// local socket, root or the server's own user. Refusals are logged with
/// who and why.
pub fn admitted(call: &Call<'_>, admins: &Arc<dyn Admins>, what: &str) -> bool {
    let Some(user) = call.client.as_deref() else {
        // On this machine's socket the kernel names the caller: root and
        // the server's own user administer it without a logon.
        if let Transport::Local {
            peer_uid: Some(uid),
            ..
        } = call.transport
        {
            if *uid == 0 || *uid == effective_uid() {
                return true;
            }
            tracing::warn!(what, uid, "administration refused: a local caller that is neither root nor the server's user, not logged on");
            return false;
        }
        tracing::warn!(
            what,
            "administration refused: the caller is not authenticated"
        );
        return false;
    };
    if call.auth_level < auth_level::INTEGRITY {
        tracing::warn!(
            what,
            user,
            level = call.auth_level,
            "administration refused: packet integrity or privacy is required"
        );
        return false;
    }
    if !admins.is_admin(user) {
        tracing::warn!(
            what,
            user,
            "administration refused: the user is not an administrator"
        );
        return false;
    }
    true
}
