//! The endpoint mapper, epm v3.0 (C706 Appendix O with [MS-RPCE] 2.2.1.2):
//! the server's interfaces on its endpoints as towers (C706 Appendix L),
//! ept_lookup with inquiry types and lookup handles, ept_map, and
//! ept_insert/ept_delete for callers on this machine only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use crate::mgmt::RpcIfId;
use crate::ndr::{ConformantArray, ConformantVaryingArray, ContextHandle, Unique, VaryingCString};
use crate::pdu::SyntaxId;
use crate::server::{Call, CallResult, Endpoint, Fault, Transport};
use crate::status;
use crate::uuid::Uuid;

/// twr_t ([MS-RPCE] 2.2.1.2.2).
#[derive(crate::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct Tower {
    #[ndr(range(0, 2000))]
    pub tower_length: u32,
    #[ndr(size_is = "tower_length")]
    pub octets: Vec<u8>,
}

impl Tower {
    pub fn new(octets: Vec<u8>) -> Tower {
        Tower {
            tower_length: octets.len() as u32,
            octets,
        }
    }
}

/// ept_entry_t.
#[derive(crate::Ndr, Clone, Debug, PartialEq, Eq)]
pub struct EptEntry {
    pub object: Uuid,
    pub tower: Unique<Tower>,
    /// `[string] char annotation[ept_max_annotation_size]` (64).
    pub annotation: VaryingCString<64>,
}

/// inquiry_type of ept_lookup.
pub mod inquiry {
    pub const ALL_ELTS: u32 = 0;
    pub const MATCH_BY_IF: u32 = 1;
    pub const MATCH_BY_OBJ: u32 = 2;
    pub const MATCH_BY_BOTH: u32 = 3;
}

/// vers_option of ept_lookup.
pub mod vers {
    pub const ALL: u32 = 1;
    pub const COMPATIBLE: u32 = 2;
    pub const EXACT: u32 = 3;
    pub const MAJOR_ONLY: u32 = 4;
    pub const UPTO: u32 = 5;
}

/// Protocol identifiers of tower floors (C706 Appendix I; [MS-RPCE]).
pub mod floor {
    pub const UUID: u8 = 0x0D;
    pub const NCACN: u8 = 0x0B;
    pub const NCALRPC: u8 = 0x0C;
    /// Connectionless RPC (ncadg).
    pub const NCADG: u8 = 0x0A;
    pub const TCP: u8 = 0x07;
    /// [MS-RPCE] 2.1.2.1: UDP's protocol identifier.
    pub const UDP: u8 = 0x08;
    /// ncacn_http's transport floor (C706 Appendix I: 0x1f, HTTP).
    pub const HTTP: u8 = 0x1F;
    pub const IP: u8 = 0x09;
    pub const PIPE: u8 = 0x10;
}

/// Where a tower leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Local(String),
    Udp(SocketAddr),
    /// ncacn_http.
    Http(SocketAddr),
}

/// A decoded protocol tower: interface, transfer syntax, address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TowerInfo {
    pub interface: SyntaxId,
    pub transfer: SyntaxId,
    /// The protocol of floor 3 onwards: ncacn_ip_tcp, ncadg_ip_udp or
    /// ncalrpc, with the
    /// address (port 0 and 0.0.0.0 in a map request).
    pub address: Address,
}

/// Why bytes are not a tower this server understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tower: {0}")]
pub struct TowerError(&'static str);

fn uuid_floor(syntax: &SyntaxId) -> (Vec<u8>, Vec<u8>) {
    let mut lhs = vec![floor::UUID];
    lhs.extend_from_slice(&syntax.uuid.to_le_bytes());
    lhs.extend_from_slice(&syntax.major().to_le_bytes());
    (lhs, syntax.minor().to_le_bytes().to_vec())
}

impl TowerInfo {
    /// The tower octets (C706 Appendix L): floor count, then each floor's
    /// left-hand side (protocol id and data) and right-hand side;
    /// lengths little-endian, port and address in network order.
    pub fn encode(&self) -> Vec<u8> {
        let mut floors = vec![uuid_floor(&self.interface), uuid_floor(&self.transfer)];
        match &self.address {
            Address::Tcp(addr) | Address::Udp(addr) | Address::Http(addr) => {
                let (rpc, transport) = match self.address {
                    Address::Udp(_) => (floor::NCADG, floor::UDP),
                    Address::Http(_) => (floor::NCACN, floor::HTTP),
                    _ => (floor::NCACN, floor::TCP),
                };
                floors.push((vec![rpc], vec![0, 0]));
                floors.push((vec![transport], addr.port().to_be_bytes().to_vec()));
                let ip = match addr.ip() {
                    IpAddr::V4(v4) => v4,
                    // Towers carry IPv4 only; a v6 listener is reached at
                    // the address the client used.
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                };
                floors.push((vec![floor::IP], ip.octets().to_vec()));
            }
            Address::Local(name) => {
                floors.push((vec![floor::NCALRPC], vec![0, 0]));
                let mut rhs = name.as_bytes().to_vec();
                rhs.push(0);
                floors.push((vec![floor::PIPE], rhs));
            }
        }
        let mut out = (floors.len() as u16).to_le_bytes().to_vec();
        for (lhs, rhs) in floors {
            out.extend_from_slice(&(lhs.len() as u16).to_le_bytes());
            out.extend_from_slice(&lhs);
            out.extend_from_slice(&(rhs.len() as u16).to_le_bytes());
            out.extend_from_slice(&rhs);
        }
        out
    }

    pub fn decode(octets: &[u8]) -> Result<TowerInfo, TowerError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], TowerError> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= octets.len())
                .ok_or(TowerError("truncated"))?;
            let s = &octets[at..end];
            at = end;
            Ok(s)
        };
        let u16_at = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
        let count = u16_at(take(2)?);
        if !(4..=8).contains(&count) {
            return Err(TowerError("a tower has 4 to 8 floors"));
        }
        let mut floors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let lhs_len = usize::from(u16_at(take(2)?));
            let lhs = take(lhs_len)?.to_vec();
            let rhs_len = usize::from(u16_at(take(2)?));
            let rhs = take(rhs_len)?.to_vec();
            if lhs.is_empty() {
                return Err(TowerError("a floor without a protocol identifier"));
            }
            floors.push((lhs, rhs));
        }
        let syntax = |(lhs, rhs): &(Vec<u8>, Vec<u8>)| -> Result<SyntaxId, TowerError> {
            if lhs.len() != 19 || lhs[0] != floor::UUID || rhs.len() != 2 {
                return Err(TowerError("floors 1 and 2 are UUID floors"));
            }
            let mut u = [0u8; 16];
            u.copy_from_slice(&lhs[1..17]);
            Ok(SyntaxId::new(
                Uuid::from_le_bytes(&u),
                u16::from_le_bytes([lhs[17], lhs[18]]),
                u16::from_le_bytes([rhs[0], rhs[1]]),
            ))
        };
        let interface = syntax(&floors[0])?;
        let transfer = syntax(&floors[1])?;
        let address = match (floors[2].0[0], floors[3].0[0]) {
            (
                rpc @ (floor::NCACN | floor::NCADG),
                transport @ (floor::TCP | floor::UDP | floor::HTTP),
            ) => {
                let port = match floors[3].1.as_slice() {
                    [a, b] => u16::from_be_bytes([*a, *b]),
                    _ => return Err(TowerError("a TCP or UDP floor holds a 2-byte port")),
                };
                let ip = match floors.get(4).map(|f| (f.0[0], f.1.as_slice())) {
                    Some((floor::IP, [a, b, c, d])) => Ipv4Addr::new(*a, *b, *c, *d),
                    Some(_) => return Err(TowerError("an IP floor holds a 4-byte address")),
                    None => Ipv4Addr::UNSPECIFIED,
                };
                let addr = SocketAddr::new(IpAddr::V4(ip), port);
                match (rpc, transport) {
                    (floor::NCACN, floor::TCP) => Address::Tcp(addr),
                    (floor::NCADG, floor::UDP) => Address::Udp(addr),
                    (floor::NCACN, floor::HTTP) => Address::Http(addr),
                    _ => return Err(TowerError("ncacn goes over TCP, ncadg over UDP")),
                }
            }
            (floor::NCALRPC, floor::PIPE) => {
                let name = floors[3].1.split(|b| *b == 0).next().unwrap_or_default();
                Address::Local(String::from_utf8_lossy(name).into_owned())
            }
            _ => {
                return Err(TowerError(
                    "only ncacn_ip_tcp, ncadg_ip_udp and ncalrpc towers are served",
                ))
            }
        };
        Ok(TowerInfo {
            interface,
            transfer,
            address,
        })
    }
}

/// Whether `have` satisfies an ept_lookup version constraint on `want`.
fn version_matches(option: u32, want: (u16, u16), have: (u16, u16)) -> bool {
    match option {
        vers::ALL => true,
        vers::COMPATIBLE => have.0 == want.0 && have.1 >= want.1,
        vers::EXACT => have == want,
        vers::MAJOR_ONLY => have.0 == want.0,
        vers::UPTO => have <= want,
        _ => false,
    }
}

/// An element of the endpoint map.
#[derive(Clone, Debug)]
struct Element {
    object: Uuid,
    tower: TowerInfo,
    annotation: Vec<u8>,
}

/// What an unfinished ept_lookup (entries) or ept_map (towers) has left
/// to return, kept under its context handle.
struct Paging<T> {
    remaining: Vec<T>,
}

#[crate::interface(uuid = "e1af8308-5d1f-11c9-91a4-08002b14a0fa", version = "3.0")]
pub trait Epm {
    #[opnum(0)]
    fn ept_insert(
        &self,
        call: &Call,
        num_ents: u32,
        entries: ConformantArray<EptEntry>,
        replace: u32,
    ) -> CallResult<u32>;

    #[opnum(1)]
    fn ept_delete(
        &self,
        call: &Call,
        num_ents: u32,
        entries: ConformantArray<EptEntry>,
    ) -> CallResult<u32>;

    /// Out: entry_handle, num_ents, entries, status.
    #[opnum(2)]
    #[allow(clippy::too_many_arguments)]
    fn ept_lookup(
        &self,
        call: &Call,
        inquiry_type: u32,
        object: Unique<Uuid>,
        ifid: Unique<RpcIfId>,
        vers_option: u32,
        entry_handle: ContextHandle,
        #[ndr(range(0, 500))] max_ents: u32,
    ) -> CallResult<(ContextHandle, u32, ConformantVaryingArray<EptEntry>, u32)>;

    /// Out: entry_handle, num_towers, towers, status.
    #[opnum(3)]
    fn ept_map(
        &self,
        call: &Call,
        object: Unique<Uuid>,
        map_tower: Unique<Tower>,
        entry_handle: ContextHandle,
        #[ndr(range(0, 500))] max_towers: u32,
    ) -> CallResult<(
        ContextHandle,
        u32,
        ConformantVaryingArray<Unique<Tower>>,
        u32,
    )>;

    #[opnum(4)]
    fn ept_lookup_handle_free(
        &self,
        call: &Call,
        entry_handle: ContextHandle,
    ) -> CallResult<(ContextHandle, u32)>;
}

/// The endpoint mapper: the server's own interfaces on its endpoints, and
/// the elements local callers inserted.
#[derive(Default)]
pub struct EndpointMapper {
    inserted: Mutex<Vec<Element>>,
}

/// The most elements local callers may insert.
pub const MAX_INSERTED: usize = 4096;

impl EndpointMapper {
    pub fn new() -> EndpointMapper {
        EndpointMapper::default()
    }

    /// The endpoint map as the caller sees it: each listed interface on
    /// each endpoint (a wildcard address shown as the one the caller
    /// reached), then the inserted elements.
    fn elements(&self, call: &Call) -> Vec<Element> {
        let reached = match call.transport {
            Transport::Tcp { local, .. } => Some(local.ip()),
            Transport::Http { local, .. } => Some(local.ip()),
            // A datagram's destination address is not known; the client
            // reads the wildcard as the address it used.
            Transport::Udp { .. } | Transport::Local { .. } => None,
        };
        let mut out = Vec::new();
        for registered in call.server.interfaces().iter().filter(|r| r.listed) {
            for endpoint in call.server.endpoints() {
                let address = match endpoint {
                    Endpoint::Tcp(mut addr) => {
                        if addr.ip().is_unspecified() {
                            if let Some(ip) = reached {
                                addr.set_ip(ip);
                            }
                        }
                        Address::Tcp(addr)
                    }
                    Endpoint::Udp(addr) => Address::Udp(addr),
                    Endpoint::Http(addr) => Address::Http(addr),
                    Endpoint::Local(path) => Address::Local(
                        path.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    ),
                };
                out.push(Element {
                    object: Uuid::NIL,
                    tower: TowerInfo {
                        interface: registered.interface.syntax(),
                        transfer: crate::server::ndr20(),
                        address,
                    },
                    annotation: registered.interface.name().as_bytes().to_vec(),
                });
            }
        }
        out.extend(
            self.inserted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        out
    }

    fn entry(element: &Element) -> EptEntry {
        EptEntry {
            object: element.object,
            tower: Unique::new(Some(Tower::new(element.tower.encode()))),
            annotation: VaryingCString(element.annotation.clone()),
        }
    }
}

/// Takes up to `max` items; the rest stay behind a context handle, which
/// is NULL when nothing is left. With `hold_full_page` a full page keeps
/// its handle even when nothing is left behind it: ept_lookup does, as
/// Windows answers, so a client that got as many entries as it asked for
/// asks again and that call ends the search with none (smbtorture's
/// epmapper tests check both cases). ept_map closes with the last towers.
fn first_page<T: Send + 'static>(
    call: &Call,
    mut items: Vec<T>,
    max: usize,
    hold_full_page: bool,
) -> CallResult<(ContextHandle, Vec<T>)> {
    let full = max > 0 && items.len() == max;
    if items.len() < max || (full && !hold_full_page) {
        return Ok((ContextHandle::default(), items));
    }
    let remaining = items.split_off(max);
    let handle = call
        .association
        .open_handle(Paging { remaining })
        .ok_or(Fault::new(status::EPT_S_CANT_PERFORM_OP))?;
    Ok((handle, items))
}

/// The next `max` items behind a handle from [`first_page`]; the handle is
/// closed (and NULL returned) with the last of them. A handle of another
/// kind — a map handle given to ept_lookup — is as unknown as a stale one.
fn next_page<T: Send + 'static>(
    call: &Call,
    handle: ContextHandle,
    max: usize,
    hold_full_page: bool,
) -> CallResult<(ContextHandle, Vec<T>)> {
    let taken = call.association.with_handle(&handle, |p: &mut Paging<T>| {
        let n = p.remaining.len().min(max);
        let items: Vec<T> = p.remaining.drain(..n).collect();
        (items, p.remaining.is_empty())
    });
    let Some((items, done)) = taken else {
        return Err(Fault::new(status::NCA_S_FAULT_CONTEXT_MISMATCH));
    };
    let full = max > 0 && items.len() == max;
    if done && !(full && hold_full_page) {
        call.association.close_handle(&handle);
        Ok((ContextHandle::default(), items))
    } else {
        Ok((handle, items))
    }
}

impl Epm for EndpointMapper {
    fn ept_insert(
        &self,
        call: &Call,
        num_ents: u32,
        entries: ConformantArray<EptEntry>,
        replace: u32,
    ) -> CallResult<u32> {
        if !call.transport.is_local() {
            return Ok(status::ERROR_ACCESS_DENIED);
        }
        if num_ents as usize != entries.0.len() {
            return Err(Fault::stub(crate::ndr::NdrError::Correlation {
                what: "ept_insert's num_ents against its entries",
                expected: u64::from(num_ents),
                found: entries.0.len() as u64,
            }));
        }
        let mut parsed = Vec::new();
        for e in &entries.0 {
            let Some(tower) = e.tower.get() else {
                return Ok(status::EPT_S_CANT_PERFORM_OP);
            };
            let Ok(tower) = TowerInfo::decode(&tower.octets) else {
                return Ok(status::EPT_S_CANT_PERFORM_OP);
            };
            parsed.push(Element {
                object: e.object,
                tower,
                annotation: e.annotation.0.clone(),
            });
        }
        let mut inserted = self.inserted.lock().unwrap_or_else(|e| e.into_inner());
        if replace != 0 {
            inserted.retain(|old| {
                !parsed.iter().any(|new| {
                    new.object == old.object && new.tower.interface == old.tower.interface
                })
            });
        }
        if inserted.len() + parsed.len() > MAX_INSERTED {
            return Ok(status::EPT_S_CANT_PERFORM_OP);
        }
        inserted.extend(parsed);
        Ok(0)
    }

    fn ept_delete(
        &self,
        call: &Call,
        _num_ents: u32,
        entries: ConformantArray<EptEntry>,
    ) -> CallResult<u32> {
        if !call.transport.is_local() {
            return Ok(status::ERROR_ACCESS_DENIED);
        }
        let mut inserted = self.inserted.lock().unwrap_or_else(|e| e.into_inner());
        let before = inserted.len();
        for e in &entries.0 {
            let Some(tower) = e
                .tower
                .get()
                .and_then(|t| TowerInfo::decode(&t.octets).ok())
            else {
                continue;
            };
            inserted.retain(|old| !(old.object == e.object && old.tower == tower));
        }
        Ok(if inserted.len() < before {
            0
        } else {
            status::EPT_S_NOT_REGISTERED
        })
    }

    fn ept_lookup(
        &self,
        call: &Call,
        inquiry_type: u32,
        object: Unique<Uuid>,
        ifid: Unique<RpcIfId>,
        vers_option: u32,
        entry_handle: ContextHandle,
        max_ents: u32,
    ) -> CallResult<(ContextHandle, u32, ConformantVaryingArray<EptEntry>, u32)> {
        let max = max_ents as usize;
        let (handle, entries) = if entry_handle.is_null() {
            let by_if = matches!(inquiry_type, inquiry::MATCH_BY_IF | inquiry::MATCH_BY_BOTH);
            let by_obj = matches!(inquiry_type, inquiry::MATCH_BY_OBJ | inquiry::MATCH_BY_BOTH);
            if inquiry_type > inquiry::MATCH_BY_BOTH {
                return Ok((
                    entry_handle,
                    0,
                    ConformantVaryingArray { max, items: vec![] },
                    status::EPT_S_CANT_PERFORM_OP,
                ));
            }
            let wanted_object = object.get().copied().unwrap_or(Uuid::NIL);
            let wanted_if = ifid.get().copied();
            let matching: Vec<EptEntry> = self
                .elements(call)
                .iter()
                .filter(|e| !by_obj || e.object == wanted_object)
                .filter(|e| {
                    !by_if
                        || wanted_if.is_some_and(|w| {
                            let have = &e.tower.interface;
                            have.uuid == w.uuid
                                && version_matches(
                                    vers_option,
                                    (w.vers_major, w.vers_minor),
                                    (have.major(), have.minor()),
                                )
                        })
                })
                .map(EndpointMapper::entry)
                .collect();
            first_page(call, matching, max, true)?
        } else {
            next_page(call, entry_handle, max, true)?
        };
        // [MS-RPCE] 2.2.1.2.4: 0 when at least one element is returned,
        // EPT_S_NOT_REGISTERED when none is. (Samba's own server also ends
        // a search with EPT_S_NOT_REGISTERED on a last page that holds
        // entries, which smbtorture's epmapper.Lookup_simple expects;
        // Impacket, like Windows, takes that status as a failure.)
        let status = if entries.is_empty() {
            status::EPT_S_NOT_REGISTERED
        } else {
            0
        };
        Ok((
            handle,
            entries.len() as u32,
            ConformantVaryingArray {
                max,
                items: entries,
            },
            status,
        ))
    }

    fn ept_map(
        &self,
        call: &Call,
        object: Unique<Uuid>,
        map_tower: Unique<Tower>,
        entry_handle: ContextHandle,
        max_towers: u32,
    ) -> CallResult<(
        ContextHandle,
        u32,
        ConformantVaryingArray<Unique<Tower>>,
        u32,
    )> {
        let max = max_towers as usize;
        let empty = |status| {
            Ok((
                ContextHandle::default(),
                0,
                ConformantVaryingArray { max, items: vec![] },
                status,
            ))
        };
        let (handle, towers) = if entry_handle.is_null() {
            let Some(wanted) = map_tower
                .get()
                .and_then(|t| TowerInfo::decode(&t.octets).ok())
            else {
                return empty(status::EPT_S_NOT_REGISTERED);
            };
            // Every interface here speaks both NDR syntaxes.
            if wanted.transfer != crate::server::ndr20()
                && wanted.transfer != crate::server::ndr64()
            {
                return empty(status::EPT_S_NOT_REGISTERED);
            }
            let object = object.get().copied().unwrap_or(Uuid::NIL);
            let same_protocol = |a: &Address| {
                matches!(
                    (a, &wanted.address),
                    (Address::Tcp(_), Address::Tcp(_))
                        | (Address::Udp(_), Address::Udp(_))
                        | (Address::Http(_), Address::Http(_))
                        | (Address::Local(_), Address::Local(_))
                )
            };
            let towers: Vec<Tower> = self
                .elements(call)
                .into_iter()
                .filter(|e| e.object == Uuid::NIL || e.object == object)
                .filter(|e| {
                    let have = &e.tower.interface;
                    have.uuid == wanted.interface.uuid
                        && have.major() == wanted.interface.major()
                        && have.minor() >= wanted.interface.minor()
                        && same_protocol(&e.tower.address)
                })
                .map(|mut e| {
                    e.tower.transfer = wanted.transfer;
                    Tower::new(e.tower.encode())
                })
                .collect();
            first_page(call, towers, max, false)?
        } else {
            next_page(call, entry_handle, max, false)?
        };
        if towers.is_empty() {
            return empty(status::EPT_S_NOT_REGISTERED);
        }
        Ok((
            handle,
            towers.len() as u32,
            ConformantVaryingArray {
                max,
                items: towers.into_iter().map(|t| Unique::new(Some(t))).collect(),
            },
            0,
        ))
    }

    fn ept_lookup_handle_free(
        &self,
        call: &Call,
        entry_handle: ContextHandle,
    ) -> CallResult<(ContextHandle, u32)> {
        if !entry_handle.is_null() && !call.association.close_handle(&entry_handle) {
            return Err(Fault::new(status::NCA_S_FAULT_CONTEXT_MISMATCH));
        }
        Ok((ContextHandle::default(), 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint mapper on 127.0.0.1[135] as a tower (C706 Appendix L
    /// floors, [MS-RPCE] 2.2.1.2.2), byte for byte.
    #[test]
    fn towers_encode_and_decode_exactly() {
        let epm = Uuid::parse("e1af8308-5d1f-11c9-91a4-08002b14a0fa").unwrap();
        let tower = TowerInfo {
            interface: SyntaxId::new(epm, 3, 0),
            transfer: crate::server::ndr20(),
            address: Address::Tcp("127.0.0.1:135".parse().unwrap()),
        };
        let mut expected = vec![5, 0];
        expected.extend([19, 0, 0x0d]);
        expected.extend([0x08, 0x83, 0xaf, 0xe1, 0x1f, 0x5d, 0xc9, 0x11]);
        expected.extend([0x91, 0xa4, 0x08, 0x00, 0x2b, 0x14, 0xa0, 0xfa]);
        expected.extend([3, 0, 2, 0, 0, 0]);
        expected.extend([19, 0, 0x0d]);
        expected.extend([0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11]);
        expected.extend([0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48, 0x60]);
        expected.extend([2, 0, 2, 0, 0, 0]);
        expected.extend([1, 0, 0x0b, 2, 0, 0, 0]);
        expected.extend([1, 0, 0x07, 2, 0, 0x00, 0x87]);
        expected.extend([1, 0, 0x09, 4, 0, 127, 0, 0, 1]);
        assert_eq!(tower.encode(), expected);
        assert_eq!(TowerInfo::decode(&expected).unwrap(), tower);

        let local = TowerInfo {
            address: Address::Local("epmapper".into()),
            ..tower.clone()
        };
        assert_eq!(TowerInfo::decode(&local.encode()).unwrap(), local);

        // ncadg_ip_udp: floor 3 is connectionless RPC (0x0a), floor 4 UDP
        // (0x08, [MS-RPCE] 2.1.2.1).
        let udp = TowerInfo {
            address: Address::Udp("127.0.0.1:135".parse().unwrap()),
            ..tower.clone()
        };
        let octets = udp.encode();
        let floors_3_to_5 = [
            1, 0, 0x0a, 2, 0, 0, 0, 1, 0, 0x08, 2, 0, 0x00, 0x87, 1, 0, 0x09, 4, 0, 127, 0, 0, 1,
        ];
        assert!(octets.ends_with(&floors_3_to_5));
        assert_eq!(TowerInfo::decode(&octets).unwrap(), udp);
    }

    #[test]
    fn malformed_towers_are_refused() {
        let good = TowerInfo {
            interface: SyntaxId::new(Uuid::random(), 1, 0),
            transfer: crate::server::ndr20(),
            address: Address::Tcp("127.0.0.1:135".parse().unwrap()),
        }
        .encode();
        for cut in 0..good.len() {
            assert!(TowerInfo::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut floors = good.clone();
        floors[0] = 200;
        assert!(TowerInfo::decode(&floors).is_err());
        let mut protocol = good.clone();
        // Floor 3's protocol identifier, after the floor count (2 bytes),
        // two UUID floors (25 bytes each) and its own lhs length (2):
        // ncadg over TCP is no protocol sequence.
        let at = 2 + 25 + 25 + 2;
        assert_eq!(protocol[at], floor::NCACN);
        protocol[at] = floor::NCADG;
        assert!(TowerInfo::decode(&protocol).is_err());
        protocol[at] = 0x0e;
        assert!(TowerInfo::decode(&protocol).is_err());
    }

    #[test]
    fn version_options_match_as_c706_says() {
        assert!(version_matches(vers::ALL, (1, 0), (9, 9)));
        assert!(version_matches(vers::COMPATIBLE, (3, 0), (3, 2)));
        assert!(!version_matches(vers::COMPATIBLE, (3, 2), (3, 1)));
        assert!(version_matches(vers::EXACT, (3, 0), (3, 0)));
        assert!(!version_matches(vers::EXACT, (3, 0), (3, 1)));
        assert!(version_matches(vers::MAJOR_ONLY, (3, 5), (3, 0)));
        assert!(version_matches(vers::UPTO, (3, 1), (2, 9)));
        assert!(!version_matches(vers::UPTO, (3, 1), (3, 2)));
        assert!(!version_matches(99, (3, 1), (3, 1)));
    }
}
