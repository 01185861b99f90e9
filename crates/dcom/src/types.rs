//! The DCOM structures that travel in NDR ([MS-DCOM] 2.2), each described
//! once: derived where the IDL is plain, written out where a `size_is`
//! is an expression the derive does not take (ORPC_EXTENT and its array).

use msrpc::ndr::{self, ConformantArray, Decoder, Encoder, Ndr, NdrError, Syntax, Unique};
use msrpc::Uuid;

/// COMVERSION (2.2.11).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ComVersion {
    pub major: u16,
    pub minor: u16,
}

/// ORPC_EXTENT (2.2.13.1): `[size_is((size+7) & ~7)] byte data[]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OrpcExtent {
    pub id: Uuid,
    pub size: u32,
    /// The data with its padding to a multiple of 8.
    pub data: Vec<u8>,
}

impl OrpcExtent {
    fn rounded(size: u32) -> u64 {
        (u64::from(size) + 7) & !7
    }
}

impl Ndr for OrpcExtent {
    fn align(syntax: Syntax) -> usize {
        syntax.wide().max(4)
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        // A conformant structure: its conformance leads it.
        let n = Self::rounded(self.size) as usize;
        e.count(n);
        self.id.encode_scalars(e);
        e.u32(self.size);
        for i in 0..n {
            e.u8(self.data.get(i).copied().unwrap_or(0));
        }
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> ndr::Result<Self> {
        let n = d.count("ORPC_EXTENT.data", 1)?;
        let id = Uuid::decode_scalars(d)?;
        let size = d.u32()?;
        d.correlate("ORPC_EXTENT.data", Self::rounded(size), n as u64)?;
        let mut data = Vec::with_capacity(n);
        for _ in 0..n {
            data.push(d.u8()?);
        }
        Ok(OrpcExtent { id, size, data })
    }
}

/// ORPC_EXTENT_ARRAY (2.2.13.2): `size` extents in an array of
/// `(size+1) & ~1` unique pointers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OrpcExtentArray {
    pub size: u32,
    pub reserved: u32,
    pub extent: Unique<ConformantArray<Unique<OrpcExtent>>>,
}

impl Ndr for OrpcExtentArray {
    fn align(syntax: Syntax) -> usize {
        syntax.wide().max(4)
    }
    fn encode_scalars(&self, e: &mut Encoder) {
        e.align(Self::align(e.syntax));
        e.u32(self.size);
        e.u32(self.reserved);
        self.extent.encode_scalars(e);
    }
    fn encode_buffers(&self, e: &mut Encoder) {
        self.extent.encode_buffers(e);
    }
    fn decode_scalars(d: &mut Decoder<'_>) -> ndr::Result<Self> {
        d.align(Self::align(d.syntax))?;
        Ok(OrpcExtentArray {
            size: d.u32()?,
            reserved: d.u32()?,
            extent: Unique::decode_scalars(d)?,
        })
    }
    fn decode_buffers(&mut self, d: &mut Decoder<'_>) -> ndr::Result<()> {
        self.extent.decode_buffers(d)?;
        if let Some(array) = self.extent.get() {
            d.correlate(
                "ORPC_EXTENT_ARRAY.extent",
                (u64::from(self.size) + 1) & !1,
                array.0.len() as u64,
            )?;
            let present = array.0.iter().filter(|e| e.get().is_some()).count();
            if present != self.size as usize {
                return Err(NdrError::Invalid(
                    "ORPC_EXTENT_ARRAY.size is not the number of extents",
                ));
            }
        }
        Ok(())
    }
}

/// ORPCTHIS (2.2.13.3): the first in-argument of every ORPC call.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct OrpcThis {
    pub version: ComVersion,
    pub flags: u32,
    pub reserved1: u32,
    pub cid: Uuid,
    pub extensions: Unique<OrpcExtentArray>,
}

impl OrpcThis {
    /// What a client sends on an ORPC call.
    pub fn new(version: ComVersion) -> OrpcThis {
        OrpcThis {
            version,
            flags: 0,
            reserved1: 0,
            cid: Uuid::random(),
            extensions: Unique::new(None),
        }
    }
}

/// ORPCTHAT (2.2.13.4): the first out-argument of every ORPC call.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct OrpcThat {
    pub flags: u32,
    pub extensions: Unique<OrpcExtentArray>,
}

/// MInterfacePointer (2.2.14): a hand-marshalled OBJREF.
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct MInterfacePointer {
    pub size: u32,
    #[ndr(size_is = "size")]
    pub data: Vec<u8>,
}

impl MInterfacePointer {
    pub fn new(data: Vec<u8>) -> MInterfacePointer {
        MInterfacePointer {
            size: data.len() as u32,
            data,
        }
    }
}

/// STDOBJREF, the IDL version (2.2.18.3).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StdObjRef {
    pub flags: u32,
    pub public_refs: u32,
    pub oxid: u64,
    pub oid: u64,
    pub ipid: Uuid,
}

/// DUALSTRINGARRAY, the IDL version (2.2.19.2).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct DualStringArray {
    pub num_entries: u16,
    pub security_offset: u16,
    #[ndr(size_is = "num_entries")]
    pub array: Vec<u16>,
}

/// REMINTERFACEREF (2.2.23).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemInterfaceRef {
    pub ipid: Uuid,
    pub public_refs: u32,
    pub private_refs: u32,
}

/// REMQIRESULT (2.2.24).
#[derive(msrpc::Ndr, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RemQiResult {
    pub hresult: u32,
    pub std: StdObjRef,
}

/// CustomHeader of the activation properties BLOB (2.2.22.1).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct CustomHeader {
    pub total_size: u32,
    pub header_size: u32,
    pub reserved: u32,
    pub dest_ctx: u32,
    #[ndr(range(1, 10))]
    pub count: u32,
    pub class_info_clsid: Uuid,
    pub clsids: Unique<ConformantArray<Uuid>>,
    pub sizes: Unique<ConformantArray<u32>>,
    pub reserved_ptr: Unique<u32>,
}

/// InstantiationInfoData (2.2.22.2.1).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct InstantiationInfoData {
    pub class_id: Uuid,
    pub class_ctx: u32,
    pub activation_flags: u32,
    pub is_surrogate: u32,
    #[ndr(range(1, 0x8000))]
    pub iid_count: u32,
    pub inst_flag: u32,
    pub iids: Unique<ConformantArray<Uuid>>,
    pub this_size: u32,
    pub client_version: ComVersion,
}

/// customREMOTE_REQUEST_SCM_INFO (2.2.22.2.4.1).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct RemoteRequestScmInfo {
    pub client_imp_level: u32,
    #[ndr(range(0, 0x8000))]
    pub protseq_count: u16,
    pub protseqs: Unique<ConformantArray<u16>>,
}

/// ScmRequestInfoData (2.2.22.2.4).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct ScmRequestInfoData {
    pub reserved: Unique<u32>,
    pub remote_request: Unique<RemoteRequestScmInfo>,
}

/// customREMOTE_REPLY_SCM_INFO (2.2.22.2.8.1).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct RemoteReplyScmInfo {
    pub oxid: u64,
    pub oxid_bindings: Unique<DualStringArray>,
    pub ipid_rem_unknown: Uuid,
    pub authn_hint: u32,
    pub server_version: ComVersion,
}

/// ScmReplyInfoData (2.2.22.2.8).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct ScmReplyInfoData {
    pub reserved: Unique<u32>,
    pub remote_reply: Unique<RemoteReplyScmInfo>,
}

/// PropsOutInfo (2.2.22.2.9).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct PropsOutInfo {
    #[ndr(range(1, 0x8000))]
    pub count: u32,
    pub iids: Unique<ConformantArray<Uuid>>,
    pub results: Unique<ConformantArray<u32>>,
    pub interfaces: Unique<ConformantArray<Unique<MInterfacePointer>>>,
}

/// Checks that a unique array holds `n` elements (the `size_is`
/// correlation of fields the derive cannot tie to a count).
pub(crate) fn check_count<T>(
    what: &'static str,
    n: u64,
    array: &Unique<ConformantArray<T>>,
) -> Result<(), NdrError> {
    match array.get() {
        Some(a) if a.0.len() as u64 == n => Ok(()),
        Some(_) => Err(NdrError::Invalid(what)),
        None if n == 0 => Ok(()),
        None => Err(NdrError::Invalid(what)),
    }
}

/// FLAGGED_WORD_BLOB ([MS-OAUT] 2.2.23.1): a BSTR on the wire. A wireBSTR
/// is a unique pointer to one ([`Bstr`]).
#[derive(msrpc::Ndr, Clone, Debug, PartialEq, Eq, Default)]
pub struct FlaggedWordBlob {
    /// The string's length in octets.
    pub bytes: u32,
    #[ndr(range(0, 0x100_0000))]
    pub chars: u32,
    #[ndr(size_is = "chars")]
    pub data: Vec<u16>,
}

/// A BSTR parameter (wireBSTR, [MS-OAUT] 2.2.23.2).
pub type Bstr = msrpc::ndr::Unique<FlaggedWordBlob>;

/// A BSTR holding `text`.
pub fn bstr(text: &str) -> Bstr {
    let data: Vec<u16> = text.encode_utf16().collect();
    msrpc::ndr::Unique::new(Some(FlaggedWordBlob {
        bytes: (data.len() * 2) as u32,
        chars: data.len() as u32,
        data,
    }))
}

/// A BSTR's text: NULL is the empty string, as OLE treats it; a
/// terminating NUL some clients count is dropped.
pub fn bstr_text(b: &Bstr) -> String {
    match b.get() {
        None => String::new(),
        Some(blob) => {
            let mut units = blob.data.as_slice();
            while let [rest @ .., 0] = units {
                units = rest;
            }
            String::from_utf16_lossy(units)
        }
    }
}
