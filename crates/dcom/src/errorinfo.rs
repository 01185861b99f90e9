//! Error information on the wire ([MS-DCOM] 2.2.21.1-2.2.21.3): a failing
//! call's ORPCTHAT may carry an ORPC extension (CLSID_ERROR_EXTENSION)
//! whose data is an OBJREF_CUSTOM of CLSID_ErrorObject, the words
//! IErrorInfo gives a caller: the source, a description, a help file.

use msrpc::ndr::{ConformantArray, Unique};
use msrpc::Uuid;

use crate::objref::{ObjRef, ObjRefError};
use crate::types::{OrpcExtent, OrpcExtentArray, OrpcThat};

/// CLSID_ERROR_EXTENSION (1.9): the ORPC extension's identifier.
pub const CLSID_ERROR_EXTENSION: Uuid = Uuid {
    time_low: 0x0000_031c,
    time_mid: 0,
    time_hi_and_version: 0,
    clock_seq_and_node: [0xc0, 0, 0, 0, 0, 0, 0, 0x46],
};
/// CLSID_ErrorObject (1.9): the OBJREF_CUSTOM's unmarshaler.
pub const CLSID_ERROR_OBJECT: Uuid = Uuid {
    time_low: 0x0000_031b,
    time_mid: 0,
    time_hi_and_version: 0,
    clock_seq_and_node: [0xc0, 0, 0, 0, 0, 0, 0, 0x46],
};
/// IID_IErrorInfo: the interface the error object is marshalled as.
pub const IID_IERROR_INFO: Uuid = Uuid {
    time_low: 0x1cf2_b120,
    time_mid: 0x547d,
    time_hi_and_version: 0x101b,
    clock_seq_and_node: [0x8e, 0x65, 0x08, 0x00, 0x2b, 0x2b, 0xd1, 0x19],
};

/// The most characters of one string taken from a peer.
const MAX_CHARS: usize = 32 * 1024;

/// What IErrorInfo says about a failure (2.2.21.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ErrorInfo {
    /// The interface whose call failed.
    pub iid: Uuid,
    pub source: Option<String>,
    pub description: Option<String>,
    pub help_file: Option<String>,
    pub help_context: u32,
}

impl ErrorInfo {
    /// A failure of a call on `iid`, in words.
    pub fn new(iid: Uuid, source: &str, description: &str) -> ErrorInfo {
        ErrorInfo {
            iid,
            source: Some(source.into()),
            description: Some(description.into()),
            ..ErrorInfo::default()
        }
    }

    /// The custom-marshalled format (the OBJREF_CUSTOM's pObjectData).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.help_context.to_le_bytes());
        out.extend_from_slice(&self.iid.to_le_bytes());
        for text in [&self.source, &self.description, &self.help_file] {
            match text {
                None => out.extend_from_slice(&0u32.to_le_bytes()),
                Some(text) => {
                    out.extend_from_slice(&u32::MAX.to_le_bytes());
                    // ErrorInfoString (2.2.21.3): counts include the NUL.
                    let units: Vec<u16> = text.encode_utf16().chain([0]).collect();
                    let n = units.len() as u32;
                    for field in [n, 0, n] {
                        out.extend_from_slice(&field.to_le_bytes());
                    }
                    for u in units {
                        out.extend_from_slice(&u.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    pub fn decode(data: &[u8]) -> Result<ErrorInfo, ObjRefError> {
        let mut at = 0;
        let mut take = |n: usize| -> Result<&[u8], ObjRefError> {
            let end = at + n;
            let bytes = data.get(at..end).ok_or(ObjRefError::Short)?;
            at = end;
            Ok(bytes)
        };
        let mut u32_at = || -> Result<u32, ObjRefError> {
            Ok(u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4])))
        };
        let _version = u32_at()?;
        let help_context = u32_at()?;
        let iid = Uuid::from_le_bytes(&take(16)?.try_into().unwrap_or([0; 16]));
        let mut texts = [None, None, None];
        for slot in &mut texts {
            let signature = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4]));
            if signature == 0 {
                continue;
            }
            let head = take(12)?;
            let max = u32::from_le_bytes(head[0..4].try_into().unwrap_or([0; 4])) as usize;
            if max > MAX_CHARS {
                return Err(ObjRefError::Bindings("an ErrorInfoString is too long"));
            }
            let units: Vec<u16> = take(max * 2)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|u| *u != 0)
                .collect();
            *slot = Some(String::from_utf16_lossy(&units));
        }
        let [source, description, help_file] = texts;
        Ok(ErrorInfo {
            iid,
            source,
            description,
            help_file,
            help_context,
        })
    }

    /// An ORPCTHAT carrying this error information.
    pub fn that(&self) -> OrpcThat {
        let objref = ObjRef::Custom {
            iid: IID_IERROR_INFO,
            clsid: CLSID_ERROR_OBJECT,
            data: self.encode(),
        }
        .encode();
        let size = objref.len() as u32;
        let extent = OrpcExtent {
            id: CLSID_ERROR_EXTENSION,
            size,
            data: objref,
        };
        // (size + 1) & ~1 pointers: one extent and a NULL.
        OrpcThat {
            flags: 0,
            extensions: Unique::new(Some(OrpcExtentArray {
                size: 1,
                reserved: 0,
                extent: Unique::new(Some(ConformantArray(vec![
                    Unique::new(Some(extent)),
                    Unique::new(None),
                ]))),
            })),
        }
    }

    /// The error information an ORPCTHAT carries, if any.
    pub fn of_that(that: &OrpcThat) -> Option<ErrorInfo> {
        let extents = that.extensions.get()?.extent.get()?;
        extents
            .0
            .iter()
            .filter_map(|e| e.get())
            .filter(|e| e.id == CLSID_ERROR_EXTENSION)
            .find_map(|e| {
                let data = e.data.get(..e.size as usize)?;
                match ObjRef::decode(data).ok()? {
                    ObjRef::Custom { clsid, data, .. } if clsid == CLSID_ERROR_OBJECT => {
                        ErrorInfo::decode(&data).ok()
                    }
                    _ => None,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrpc::ndr::{from_bytes, to_bytes, Syntax};

    #[test]
    fn error_information_travels_in_an_orpcthat() {
        let info = ErrorInfo::new(
            Uuid::parse("9556dc99-828c-11cf-a37e-00aa003240c7").unwrap(),
            "inetsrv",
            "there is no IIsWebServer named 'W3SVC/9'",
        );
        let that = info.that();
        let wire = to_bytes(&that, Syntax::Ndr20);
        let back: OrpcThat = from_bytes(&wire, Syntax::Ndr20, true).unwrap();
        assert_eq!(ErrorInfo::of_that(&back), Some(info));
        assert_eq!(ErrorInfo::of_that(&OrpcThat::default()), None);
    }

    #[test]
    fn absent_strings_and_cut_data() {
        let info = ErrorInfo {
            description: Some("only this".into()),
            ..ErrorInfo::default()
        };
        let data = info.encode();
        assert_eq!(ErrorInfo::decode(&data).unwrap(), info);
        for cut in 0..data.len() {
            assert!(ErrorInfo::decode(&data[..cut]).is_err(), "{cut}");
        }
    }
}
