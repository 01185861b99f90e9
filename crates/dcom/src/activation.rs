//! The activation properties BLOB ([MS-DCOM] 2.2.22): what a client asks
//! of IRemoteSCMActivator (the class, the interfaces, the protocol
//! sequences it speaks) and what the resolver answers (the object
//! exporter, the interface pointers). The header and each property are
//! NDR type serialization version 1 streams ([MS-RPCE] 2.2.6).

use msrpc::ndr::serialization::{Deserializer, Serializer};
use msrpc::ndr::{ConformantArray, NdrError, Unique};
use msrpc::Uuid;

use crate::ids;
use crate::objref::{ObjRef, ObjRefError};
use crate::types::{
    check_count, CustomHeader, InstantiationInfoData, MInterfacePointer, PropsOutInfo,
    RemoteReplyScmInfo, RemoteRequestScmInfo, ScmReplyInfoData, ScmRequestInfoData,
};

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("the activation properties are not an OBJREF_CUSTOM: {0}")]
    ObjRef(#[from] ObjRefError),
    #[error("the activation properties' marshaller is {0}, not CLSID_ActivationPropertiesIn")]
    NotPropertiesIn(Uuid),
    #[error("the activation properties BLOB is cut short")]
    Short,
    #[error("the activation properties BLOB is malformed: {0}")]
    Ndr(#[from] NdrError),
    #[error("the activation properties lack {0}")]
    Missing(&'static str),
}

/// What the client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationRequest {
    pub clsid: Uuid,
    pub iids: Vec<Uuid>,
    /// The protocol sequences the client speaks (tower ids).
    pub protseqs: Vec<u16>,
}

fn read_u32(data: &[u8], at: usize) -> Result<u32, ActivationError> {
    let b = data.get(at..at + 4).ok_or(ActivationError::Short)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The properties of an activation properties BLOB (an OBJREF_CUSTOM's
/// data): each property's CLSID and bytes, as the CustomHeader lays them
/// out.
fn properties_of(data: &[u8]) -> Result<Vec<(Uuid, &[u8])>, ActivationError> {
    let total = read_u32(data, 0)? as usize;
    let blob = data
        .get(8..8usize.saturating_add(total))
        .ok_or(ActivationError::Short)?;
    let header: CustomHeader = Deserializer::new(blob)?.read()?;
    let n = u64::from(header.count);
    check_count("CustomHeader.pclsid", n, &header.clsids)?;
    check_count("CustomHeader.pSizes", n, &header.sizes)?;
    let clsids = header.clsids.get().map(|a| a.0.as_slice()).unwrap_or(&[]);
    let sizes = header.sizes.get().map(|a| a.0.as_slice()).unwrap_or(&[]);
    let mut at = header.header_size as usize;
    let mut out = Vec::with_capacity(clsids.len());
    for (clsid, size) in clsids.iter().zip(sizes) {
        let end = at
            .checked_add(*size as usize)
            .ok_or(ActivationError::Short)?;
        out.push((*clsid, blob.get(at..end).ok_or(ActivationError::Short)?));
        at = end;
    }
    Ok(out)
}

/// Reads the `pActProperties` of RemoteCreateInstance / RemoteGetClassObject.
pub fn parse_request(properties: &MInterfacePointer) -> Result<ActivationRequest, ActivationError> {
    let ObjRef::Custom { clsid, data, .. } = ObjRef::decode(&properties.data)? else {
        return Err(ActivationError::Missing("an OBJREF_CUSTOM"));
    };
    if clsid != ids::CLSID_ACTIVATION_PROPERTIES_IN {
        return Err(ActivationError::NotPropertiesIn(clsid));
    }
    let mut instantiation = None;
    let mut scm_request = None;
    // Properties the resolver does not use are skipped (3.1.2.5.2.3.3:
    // servers ignore those they do not recognize).
    for (clsid, property) in properties_of(&data)? {
        if clsid == ids::CLSID_INSTANTIATION_INFO {
            instantiation = Some(Deserializer::new(property)?.read::<InstantiationInfoData>()?);
        } else if clsid == ids::CLSID_SCM_REQUEST_INFO {
            scm_request = Some(Deserializer::new(property)?.read::<ScmRequestInfoData>()?);
        }
    }
    let instantiation = instantiation.ok_or(ActivationError::Missing("InstantiationInfoData"))?;
    check_count(
        "InstantiationInfoData.pIID",
        u64::from(instantiation.iid_count),
        &instantiation.iids,
    )?;
    let scm_request = scm_request.ok_or(ActivationError::Missing("ScmRequestInfoData"))?;
    let protseqs = match scm_request.remote_request.get() {
        Some(r) => {
            check_count(
                "customREMOTE_REQUEST_SCM_INFO.pRequestedProtseqs",
                u64::from(r.protseq_count),
                &r.protseqs,
            )?;
            r.protseqs.get().map(|a| a.0.clone()).unwrap_or_default()
        }
        None => return Err(ActivationError::Missing("customREMOTE_REQUEST_SCM_INFO")),
    };
    Ok(ActivationRequest {
        clsid: instantiation.class_id,
        iids: instantiation
            .iids
            .get()
            .map(|a| a.0.clone())
            .unwrap_or_default(),
        protseqs,
    })
}

/// Builds `ppActProperties`: the interfaces (PropsOutInfo) and the
/// object exporter (ScmReplyInfoData), as Windows orders them.
pub fn build_reply(
    iids: &[Uuid],
    results: &[(u32, Option<MInterfacePointer>)],
    reply: RemoteReplyScmInfo,
) -> MInterfacePointer {
    let props = PropsOutInfo {
        count: iids.len() as u32,
        iids: Unique::new(Some(ConformantArray(iids.to_vec()))),
        results: Unique::new(Some(ConformantArray(
            results.iter().map(|(hr, _)| *hr).collect(),
        ))),
        interfaces: Unique::new(Some(ConformantArray(
            results
                .iter()
                .map(|(_, ip)| Unique::new(ip.clone()))
                .collect(),
        ))),
    };
    let scm = ScmReplyInfoData {
        reserved: Unique::new(None),
        remote_reply: Unique::new(Some(reply)),
    };
    let mut props_bytes = Serializer::v1();
    props_bytes.push(&props);
    let props_bytes = props_bytes.finish();
    let mut scm_bytes = Serializer::v1();
    scm_bytes.push(&scm);
    let scm_bytes = scm_bytes.finish();
    let mut header = CustomHeader {
        total_size: 0,
        header_size: 0,
        reserved: 0,
        dest_ctx: 2,
        count: 2,
        class_info_clsid: Uuid::NIL,
        clsids: Unique::new(Some(ConformantArray(vec![
            ids::CLSID_PROPS_OUT_INFO,
            ids::CLSID_SCM_REPLY_INFO,
        ]))),
        sizes: Unique::new(Some(ConformantArray(vec![
            props_bytes.len() as u32,
            scm_bytes.len() as u32,
        ]))),
        reserved_ptr: Unique::new(None),
    };
    // The header's size does not depend on the values of its fields.
    let header_len = {
        let mut s = Serializer::v1();
        s.push(&header);
        s.finish().len()
    };
    header.header_size = header_len as u32;
    header.total_size = (header_len + props_bytes.len() + scm_bytes.len()) as u32;
    let mut header_bytes = Serializer::v1();
    header_bytes.push(&header);
    let header_bytes = header_bytes.finish();
    let mut blob = Vec::with_capacity(8 + header.total_size as usize);
    blob.extend_from_slice(&header.total_size.to_le_bytes());
    blob.extend_from_slice(&0u32.to_le_bytes());
    blob.extend_from_slice(&header_bytes);
    blob.extend_from_slice(&props_bytes);
    blob.extend_from_slice(&scm_bytes);
    MInterfacePointer::new(
        ObjRef::Custom {
            iid: ids::IID_IACTIVATION_PROPERTIES_OUT,
            clsid: ids::CLSID_ACTIVATION_PROPERTIES_OUT,
            data: blob,
        }
        .encode(),
    )
}

fn stream<T: msrpc::ndr::Ndr>(value: &T) -> Vec<u8> {
    let mut s = Serializer::v1();
    s.push(value);
    s.finish()
}

/// Builds ActivationPropertiesIn for RemoteCreateInstance: the class, the
/// interfaces, ncacn_ip_tcp as the protocol sequence.
pub fn build_request(clsid: Uuid, iids: &[Uuid]) -> MInterfacePointer {
    build_request_with(clsid, iids, None)
}

fn build_request_with(clsid: Uuid, iids: &[Uuid], unknown: Option<Vec<u8>>) -> MInterfacePointer {
    let instantiation = stream(&InstantiationInfoData {
        class_id: clsid,
        class_ctx: 0x14,
        activation_flags: 0,
        is_surrogate: 0,
        iid_count: iids.len() as u32,
        inst_flag: 0,
        iids: Unique::new(Some(ConformantArray(iids.to_vec()))),
        this_size: 0,
        client_version: ids::COM_VERSION,
    });
    let scm = stream(&ScmRequestInfoData {
        reserved: Unique::new(None),
        remote_request: Unique::new(Some(RemoteRequestScmInfo {
            client_imp_level: 2,
            protseq_count: 1,
            protseqs: Unique::new(Some(ConformantArray(vec![
                crate::objref::TOWER_NCACN_IP_TCP,
            ]))),
        })),
    });
    let mut properties = vec![(ids::CLSID_INSTANTIATION_INFO, instantiation)];
    if let Some(unknown) = unknown {
        properties.push((Uuid::random(), unknown));
    }
    properties.push((ids::CLSID_SCM_REQUEST_INFO, scm));
    let mut header = CustomHeader {
        total_size: 0,
        header_size: 0,
        reserved: 0,
        dest_ctx: 2,
        count: properties.len() as u32,
        class_info_clsid: Uuid::NIL,
        clsids: Unique::new(Some(ConformantArray(
            properties.iter().map(|(c, _)| *c).collect(),
        ))),
        sizes: Unique::new(Some(ConformantArray(
            properties.iter().map(|(_, p)| p.len() as u32).collect(),
        ))),
        reserved_ptr: Unique::new(None),
    };
    let header_len = stream(&header).len();
    header.header_size = header_len as u32;
    header.total_size =
        (header_len + properties.iter().map(|(_, p)| p.len()).sum::<usize>()) as u32;
    let mut blob = stream(&header);
    for (_, p) in &properties {
        blob.extend_from_slice(p);
    }
    let mut data = (blob.len() as u32).to_le_bytes().to_vec();
    data.extend_from_slice(&[0; 4]);
    data.extend_from_slice(&blob);
    MInterfacePointer::new(
        ObjRef::Custom {
            iid: ids::IID_IACTIVATION_PROPERTIES_IN,
            clsid: ids::CLSID_ACTIVATION_PROPERTIES_IN,
            data,
        }
        .encode(),
    )
}

/// What ActivationPropertiesOut says: the exporter, and for each IID
/// asked its HRESULT and object reference.
#[derive(Clone, Debug)]
pub struct ActivationReply {
    pub exporter: RemoteReplyScmInfo,
    pub interfaces: Vec<(Uuid, u32, Option<ObjRef>)>,
}

/// Reads `ppActProperties`.
pub fn parse_reply(properties: &MInterfacePointer) -> Result<ActivationReply, ActivationError> {
    let ObjRef::Custom { data, .. } = ObjRef::decode(&properties.data)? else {
        return Err(ActivationError::Missing("an OBJREF_CUSTOM"));
    };
    let (mut props, mut scm) = (None, None);
    for (clsid, property) in properties_of(&data)? {
        if clsid == ids::CLSID_PROPS_OUT_INFO {
            props = Some(Deserializer::new(property)?.read::<PropsOutInfo>()?);
        } else if clsid == ids::CLSID_SCM_REPLY_INFO {
            scm = Some(Deserializer::new(property)?.read::<ScmReplyInfoData>()?);
        }
    }
    let props = props.ok_or(ActivationError::Missing("PropsOutInfo"))?;
    let exporter = scm
        .and_then(|s| s.remote_reply.get().cloned())
        .ok_or(ActivationError::Missing("customREMOTE_REPLY_SCM_INFO"))?;
    let n = u64::from(props.count);
    check_count("PropsOutInfo.piid", n, &props.iids)?;
    check_count("PropsOutInfo.phresults", n, &props.results)?;
    check_count("PropsOutInfo.ppIntfData", n, &props.interfaces)?;
    let iids = props.iids.get().map(|a| a.0.clone()).unwrap_or_default();
    let results = props.results.get().map(|a| a.0.clone()).unwrap_or_default();
    let pointers = props
        .interfaces
        .get()
        .map(|a| a.0.clone())
        .unwrap_or_default();
    let mut interfaces = Vec::new();
    for ((iid, hr), pointer) in iids.into_iter().zip(results).zip(pointers) {
        let objref = match pointer.get() {
            Some(p) => Some(ObjRef::decode(&p.data)?),
            None => None,
        };
        interfaces.push((iid, hr, objref));
    }
    Ok(ActivationReply {
        exporter,
        interfaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with a property the resolver does not read in between
    /// (as clients may send).
    fn request(clsid: Uuid, iids: &[Uuid]) -> MInterfacePointer {
        build_request_with(clsid, iids, Some(vec![0xfa; 24]))
    }

    #[test]
    fn a_request_is_read_past_properties_it_does_not_know() {
        let clsid = Uuid::random();
        let iids = [Uuid::random(), Uuid::random()];
        let r = parse_request(&request(clsid, &iids)).unwrap();
        assert_eq!(r.clsid, clsid);
        assert_eq!(r.iids, iids);
        assert_eq!(r.protseqs, vec![7]);
    }

    #[test]
    fn damaged_requests_are_errors() {
        let good = request(Uuid::random(), &[Uuid::random()]);
        for cut in [8, 40, 60, good.data.len() - 20] {
            let mut bad = good.clone();
            bad.data.truncate(cut);
            bad.size = bad.data.len() as u32;
            assert!(parse_request(&bad).is_err(), "cut at {cut}");
        }
        // A standard OBJREF is not activation properties.
        let std = MInterfacePointer::new(
            ObjRef::Standard {
                iid: Uuid::random(),
                std: Default::default(),
                resolver: Default::default(),
            }
            .encode(),
        );
        assert!(matches!(
            parse_request(&std),
            Err(ActivationError::Missing(_))
        ));
    }

    #[test]
    fn the_reply_carries_the_interfaces_then_the_exporter() {
        let iids = [Uuid::random(), Uuid::random()];
        let pointer = MInterfacePointer::new(vec![1, 2, 3, 4]);
        let reply = build_reply(
            &iids,
            &[(0, Some(pointer.clone())), (ids::E_NOINTERFACE, None)],
            RemoteReplyScmInfo {
                oxid: 42,
                oxid_bindings: Unique::new(Some(Default::default())),
                ipid_rem_unknown: Uuid::random(),
                authn_hint: 5,
                server_version: ids::COM_VERSION,
            },
        );
        let ObjRef::Custom { clsid, data, .. } = ObjRef::decode(&reply.data).unwrap() else {
            panic!("not custom");
        };
        assert_eq!(clsid, ids::CLSID_ACTIVATION_PROPERTIES_OUT);
        let total = read_u32(&data, 0).unwrap() as usize;
        assert_eq!(total, data.len() - 8);
        let blob = &data[8..];
        let header: CustomHeader = Deserializer::new(blob).unwrap().read().unwrap();
        assert_eq!(header.total_size as usize, blob.len());
        let sizes = header.sizes.get().unwrap().0.clone();
        let start = header.header_size as usize;
        let props: PropsOutInfo = Deserializer::new(&blob[start..start + sizes[0] as usize])
            .unwrap()
            .read()
            .unwrap();
        assert_eq!(props.results.get().unwrap().0, vec![0, ids::E_NOINTERFACE]);
        assert_eq!(props.interfaces.get().unwrap().0[0].get(), Some(&pointer));
        let scm: ScmReplyInfoData = Deserializer::new(&blob[start + sizes[0] as usize..])
            .unwrap()
            .read()
            .unwrap();
        assert_eq!(scm.remote_reply.get().unwrap().oxid, 42);
    }
}
