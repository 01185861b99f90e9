//! IIisServiceControl ([MS-IISS]): `iisreset` on the wire. Stop, Start,
//! Status and Kill act on the running service through the host's
//! [`ServiceHost`]; Reboot is not implemented (E_NOTIMPL, which 3.1.4.3
//! allows): a web administration interface does not restart the machine.

use std::sync::Arc;
use std::time::Duration;

use dcom::{ComClass, Created, Exporter};
use msrpc::ndr::ConformantArray;
use msrpc::server::{Call, CallResult};
use msrpc::Uuid;

use crate::Admins;

/// The class ([MS-IISS] 1.9).
pub const CLSID_IIS_SERVICE_CONTROL: Uuid = Uuid {
    time_low: 0xe8fb_8621,
    time_mid: 0x588f,
    time_hi_and_version: 0x11d2,
    clock_seq_and_node: [0x9d, 0x61, 0x00, 0xc0, 0x4f, 0x79, 0xc5, 0xfe],
};
/// IID_IIisServiceControl.
pub const IID_IIS_SERVICE_CONTROL: Uuid = Uuid {
    time_low: 0xe8fb_8620,
    time_mid: 0x588f,
    time_hi_and_version: 0x11d2,
    clock_seq_and_node: [0x9d, 0x61, 0x00, 0xc0, 0x4f, 0x79, 0xc5, 0xfe],
};

pub use dcom::ids::{E_ACCESSDENIED, S_OK};
pub const E_NOTIMPL: u32 = 0x8000_4001;
pub const E_ERROR_SERVICE_REQUEST_TIMEOUT: u32 = 0x8007_041d;
pub const E_ERROR_INSUFFICIENT_BUFFER: u32 = 0x8007_007a;

/// SERVICE_STATUS's dwCurrentState ([MS-SCMR] 2.2.47).
pub const SERVICE_STOPPED: u32 = 1;
pub const SERVICE_RUNNING: u32 = 4;
const SERVICE_WIN32_SHARE_PROCESS: u32 = 0x20;
/// SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_PAUSE_CONTINUE.
const ACCEPTS: u32 = 0x1 | 0x2;

/// One Internet service as Status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    pub name: String,
    pub display_name: String,
    pub state: u32,
}

/// What the running server does for IIisServiceControl.
pub trait ServiceHost: Send + Sync + 'static {
    /// Stops the web service (its sites and worker processes); false when
    /// it had not finished within `timeout`.
    fn stop(&self, timeout: Duration, force: bool) -> bool;
    /// Starts what is configured to start (ServerAutoStart,
    /// AppPoolAutoStart); false when not done within `timeout`.
    fn start(&self, timeout: Duration) -> bool;
    /// Ends every worker process now.
    fn kill(&self);
    fn status(&self) -> Vec<ServiceState>;
}

#[msrpc::interface(
    uuid = "e8fb8620-588f-11d2-9d61-00c04f79c5fe",
    version = "0.0",
    blocking
)]
pub trait IisServiceControl {
    /// Stop (3.1.4.1).
    #[opnum(7)]
    fn stop(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        timeout_ms: u32,
        force: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// Start (3.1.4.2).
    #[opnum(8)]
    fn start(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        timeout_ms: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// Reboot (3.1.4.3).
    #[opnum(9)]
    fn reboot(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        timeout_ms: u32,
        force_apps_closed: u32,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;

    /// Status (3.1.4.4): the STATUS_BLOB, its size, the number of services.
    #[opnum(10)]
    fn status(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
        #[ndr(range(0, 0x10_0000))] buffer_size: u32,
    ) -> CallResult<(dcom::types::OrpcThat, ConformantArray<u8>, u32, u32, u32)>;

    /// Kill (3.1.4.5).
    #[opnum(11)]
    fn kill(
        &self,
        call: &Call,
        this: dcom::types::OrpcThis,
    ) -> CallResult<(dcom::types::OrpcThat, u32)>;
}

/// The STATUS_BLOB (2.2.2): SERIALIZED_ENUM_SERVICE_STATUS entries, then
/// each service's name and display name, offsets in WCHARs from the start.
pub fn status_blob(services: &[ServiceState]) -> Vec<u8> {
    const ENTRY: usize = 4 + 4 + 28;
    let mut strings: Vec<u16> = Vec::new();
    let mut entries = Vec::with_capacity(services.len() * ENTRY);
    let strings_at = services.len() * ENTRY / 2;
    for s in services {
        let name_at = strings_at + strings.len();
        strings.extend(s.name.encode_utf16());
        strings.push(0);
        let display_at = strings_at + strings.len();
        strings.extend(s.display_name.encode_utf16());
        strings.push(0);
        let running = s.state == SERVICE_RUNNING;
        for v in [
            name_at as u32,
            display_at as u32,
            SERVICE_WIN32_SHARE_PROCESS,
            s.state,
            if running { ACCEPTS } else { 0 },
            0,
            0,
            0,
            0,
        ] {
            entries.extend_from_slice(&v.to_le_bytes());
        }
    }
    for u in strings {
        entries.extend_from_slice(&u.to_le_bytes());
    }
    entries
}

pub struct ServiceControlObject;

pub struct ServiceControlClass {
    pub admins: Arc<dyn Admins>,
}

impl ComClass for ServiceControlClass {
    fn name(&self) -> &'static str {
        "IIisServiceControl"
    }
    fn admit(&self, call: &Call<'_>) -> Result<(), u32> {
        if !crate::admitted(call, &self.admins, "IIisServiceControl activation") {
            return Err(E_ACCESSDENIED);
        }
        Ok(())
    }

    fn create(&self, call: &Call<'_>) -> Result<Created, u32> {
        self.admit(call)?;
        Ok(Created {
            object: Arc::new(ServiceControlObject),
            interfaces: vec![IID_IIS_SERVICE_CONTROL],
        })
    }
}

pub struct ServiceControl {
    pub host: Arc<dyn ServiceHost>,
    pub exporter: Arc<Exporter>,
}

type That = dcom::types::OrpcThat;
type This = dcom::types::OrpcThis;

fn timeout(ms: u32) -> Duration {
    // Zero would fail everything at once; clients mean "the default".
    if ms == 0 {
        Duration::from_secs(30)
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

impl IisServiceControl for ServiceControl {
    fn stop(
        &self,
        call: &Call,
        _this: This,
        timeout_ms: u32,
        force: u32,
    ) -> CallResult<(That, u32)> {
        self.exporter.object::<ServiceControlObject>(call)?;
        tracing::info!(user = ?call.client, "IIisServiceControl: Stop");
        let done = self.host.stop(timeout(timeout_ms), force != 0);
        Ok((
            That::default(),
            if done {
                S_OK
            } else {
                E_ERROR_SERVICE_REQUEST_TIMEOUT
            },
        ))
    }

    fn start(&self, call: &Call, _this: This, timeout_ms: u32) -> CallResult<(That, u32)> {
        self.exporter.object::<ServiceControlObject>(call)?;
        tracing::info!(user = ?call.client, "IIisServiceControl: Start");
        let done = self.host.start(timeout(timeout_ms));
        Ok((
            That::default(),
            if done {
                S_OK
            } else {
                E_ERROR_SERVICE_REQUEST_TIMEOUT
            },
        ))
    }

    fn reboot(
        &self,
        call: &Call,
        _this: This,
        _timeout_ms: u32,
        _force: u32,
    ) -> CallResult<(That, u32)> {
        self.exporter.object::<ServiceControlObject>(call)?;
        tracing::warn!(user = ?call.client, "IIisServiceControl: Reboot refused (not implemented: the server does not restart its machine)");
        Ok((That::default(), E_NOTIMPL))
    }

    fn status(
        &self,
        call: &Call,
        _this: This,
        buffer_size: u32,
    ) -> CallResult<(That, ConformantArray<u8>, u32, u32, u32)> {
        self.exporter.object::<ServiceControlObject>(call)?;
        let services = self.host.status();
        let blob = status_blob(&services);
        let required = blob.len() as u32;
        if buffer_size < required {
            return Ok((
                That::default(),
                ConformantArray(vec![0; buffer_size as usize]),
                required,
                services.len() as u32,
                E_ERROR_INSUFFICIENT_BUFFER,
            ));
        }
        let mut buffer = blob;
        buffer.resize(buffer_size as usize, 0);
        Ok((
            That::default(),
            ConformantArray(buffer),
            required,
            services.len() as u32,
            S_OK,
        ))
    }

    fn kill(&self, call: &Call, _this: This) -> CallResult<(That, u32)> {
        self.exporter.object::<ServiceControlObject>(call)?;
        tracing::warn!(user = ?call.client, "IIisServiceControl: Kill");
        self.host.kill();
        Ok((That::default(), S_OK))
    }
}

/// Registers IIisServiceControl: its class and interface.
pub fn serve(
    server: &msrpc::server::Server,
    exporter: &Arc<Exporter>,
    host: Arc<dyn ServiceHost>,
    admins: Arc<dyn Admins>,
    level: u8,
) {
    exporter.register_class(
        CLSID_IIS_SERVICE_CONTROL,
        Arc::new(ServiceControlClass { admins }),
    );
    server.register(
        IisServiceControlServer(ServiceControl {
            host,
            exporter: exporter.clone(),
        }),
        level,
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_blob_lays_out_entries_then_names() {
        let blob = status_blob(&[ServiceState {
            name: "W3SVC".into(),
            display_name: "World Wide Web Publishing Service".into(),
            state: SERVICE_RUNNING,
        }]);
        let u32_at = |i: usize| u32::from_le_bytes(blob[i..i + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 18, "the name follows the 36-byte entry");
        assert_eq!(u32_at(4), 18 + 6);
        assert_eq!(u32_at(8), SERVICE_WIN32_SHARE_PROCESS);
        assert_eq!(u32_at(12), SERVICE_RUNNING);
        let name: Vec<u16> = blob[36..46]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&name).unwrap(), "W3SVC");
    }
}
