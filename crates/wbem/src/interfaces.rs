//! The interfaces of [MS-WMI] Appendix A, each described once. An
//! `[in, out, unique] IWbemClassObject**` is two pointer levels on the
//! wire; methods that take one end with [`IgnoredRest`], since Impacket
//! marshals a single level and leaves the octets of the second behind
//! (Windows' NDR engine ignores them too).

// The methods take what the IDL gives them.
#![allow(clippy::too_many_arguments)]

use dcom::types::{Bstr, MInterfacePointer, OrpcThat, OrpcThis};
use msrpc::ndr::{ConformantArray, ConformantVaryingArray, IgnoredRest, Unique, WString};
use msrpc::server::{Call, CallResult};
use msrpc::Uuid;

/// An interface pointer parameter (`IWbemContext*`, `IWbemObjectSink*`,
/// an out `IEnumWbemClassObject**`).
pub type Itf = Unique<MInterfacePointer>;
/// An `[in, out, unique]` interface pointer pointer.
pub type ItfInOut = Unique<Unique<MInterfacePointer>>;
/// The answer of a call that returns one object and a call result.
pub type ObjectReply = (OrpcThat, ItfInOut, ItfInOut, u32);
/// IWbemWCOSmartEnum::Next's answer: the count, the buffer's size, the
/// ObjectArray.
pub type SmartNextReply = (OrpcThat, u32, u32, Unique<ConformantArray<u8>>, u32);
/// The answer of a call that returns only a call result.
pub type CallResultReply = (OrpcThat, ItfInOut, u32);

/// IWbemLevel1Login (3.1.4.1).
#[msrpc::interface(uuid = "f309ad18-d86a-11d0-a075-00c04fb68820", version = "0.0")]
pub trait WbemLevel1Login {
    /// EstablishPosition (3.1.4.1.1).
    #[opnum(3)]
    fn establish_position(
        &self,
        call: &Call,
        this: OrpcThis,
        reserved1: Unique<WString>,
        reserved2: u32,
    ) -> CallResult<(OrpcThat, u32, u32)>;

    /// RequestChallenge (3.1.4.1.2).
    #[opnum(4)]
    fn request_challenge(
        &self,
        call: &Call,
        this: OrpcThis,
        reserved1: Unique<WString>,
        reserved2: Unique<WString>,
    ) -> CallResult<(OrpcThat, ConformantVaryingArray<u8>, u32)>;

    /// WBEMLogin (3.1.4.1.3).
    #[opnum(5)]
    fn wbem_login(
        &self,
        call: &Call,
        this: OrpcThis,
        reserved1: Unique<WString>,
        reserved2: Unique<ConformantVaryingArray<u8>>,
        reserved3: u32,
        reserved4: Itf,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// NTLMLogin (3.1.4.1.4): an IWbemServices for a namespace.
    #[opnum(6)]
    fn ntlm_login(
        &self,
        call: &Call,
        this: OrpcThis,
        network_resource: Unique<WString>,
        preferred_locale: Unique<WString>,
        flags: u32,
        context: Itf,
    ) -> CallResult<(OrpcThat, Itf, u32)>;
}

/// IWbemServices (3.1.4.3).
#[msrpc::interface(uuid = "9556dc99-828c-11cf-a37e-00aa003240c7", version = "0.0")]
pub trait WbemServices {
    /// OpenNamespace (3.1.4.3.1).
    #[opnum(3)]
    fn open_namespace(
        &self,
        call: &Call,
        this: OrpcThis,
        namespace: Bstr,
        flags: u32,
        context: Itf,
        working_namespace: ItfInOut,
        result: ItfInOut,
        rest: IgnoredRest,
    ) -> CallResult<ObjectReply>;

    /// CancelAsyncCall (3.1.4.3.2).
    #[opnum(4)]
    fn cancel_async_call(
        &self,
        call: &Call,
        this: OrpcThis,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// QueryObjectSink (3.1.4.3.3).
    #[opnum(5)]
    fn query_object_sink(
        &self,
        call: &Call,
        this: OrpcThis,
        flags: u32,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// GetObject (3.1.4.3.4).
    #[opnum(6)]
    fn get_object(
        &self,
        call: &Call,
        this: OrpcThis,
        path: Bstr,
        flags: u32,
        context: Itf,
        object: ItfInOut,
        call_result: ItfInOut,
        rest: IgnoredRest,
    ) -> CallResult<ObjectReply>;

    /// GetObjectAsync (3.1.4.3.5).
    #[opnum(7)]
    fn get_object_async(
        &self,
        call: &Call,
        this: OrpcThis,
        path: Bstr,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// PutClass (3.1.4.3.6).
    #[opnum(8)]
    fn put_class(
        &self,
        call: &Call,
        this: OrpcThis,
        object: Itf,
        flags: u32,
        context: Itf,
        call_result: ItfInOut,
        rest: IgnoredRest,
    ) -> CallResult<CallResultReply>;

    /// PutClassAsync (3.1.4.3.7).
    #[opnum(9)]
    fn put_class_async(
        &self,
        call: &Call,
        this: OrpcThis,
        object: Itf,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// DeleteClass (3.1.4.3.8).
    #[opnum(10)]
    fn delete_class(
        &self,
        call: &Call,
        this: OrpcThis,
        class: Bstr,
        flags: u32,
        context: Itf,
        call_result: ItfInOut,
        rest: IgnoredRest,
    ) -> CallResult<CallResultReply>;

    /// DeleteClassAsync (3.1.4.3.9).
    #[opnum(11)]
    fn delete_class_async(
        &self,
        call: &Call,
        this: OrpcThis,
        class: Bstr,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// CreateClassEnum (3.1.4.3.10).
    #[opnum(12)]
    fn create_class_enum(
        &self,
        call: &Call,
        this: OrpcThis,
        superclass: Bstr,
        flags: u32,
        context: Itf,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// CreateClassEnumAsync (3.1.4.3.11).
    #[opnum(13)]
    fn create_class_enum_async(
        &self,
        call: &Call,
        this: OrpcThis,
        superclass: Bstr,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// PutInstance (3.1.4.3.12).
    #[opnum(14)]
    fn put_instance(
        &self,
        call: &Call,
        this: OrpcThis,
        instance: Itf,
        flags: u32,
        context: Itf,
        call_result: ItfInOut,
        rest: IgnoredRest,
    ) -> CallResult<CallResultReply>;

    /// PutInstanceAsync (3.1.4.3.13).
    #[opnum(15)]
    fn put_instance_async(
        &self,
        call: &Call,
        this: OrpcThis,
        instance: Itf,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// DeleteInstance (3.1.4.3.14).
    #[opnum(16)]
    fn delete_instance(
        &self,
        call: &Call,
        this: OrpcThis,
        path: Bstr,
        flags: u32,
        context: Itf,
        call_result: ItfInOut,
        rest: IgnoredRest,
    ) -> CallResult<CallResultReply>;

    /// DeleteInstanceAsync (3.1.4.3.15).
    #[opnum(17)]
    fn delete_instance_async(
        &self,
        call: &Call,
        this: OrpcThis,
        path: Bstr,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// CreateInstanceEnum (3.1.4.3.16).
    #[opnum(18)]
    fn create_instance_enum(
        &self,
        call: &Call,
        this: OrpcThis,
        class: Bstr,
        flags: u32,
        context: Itf,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// CreateInstanceEnumAsync (3.1.4.3.17).
    #[opnum(19)]
    fn create_instance_enum_async(
        &self,
        call: &Call,
        this: OrpcThis,
        class: Bstr,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// ExecQuery (3.1.4.3.18).
    #[opnum(20)]
    fn exec_query(
        &self,
        call: &Call,
        this: OrpcThis,
        language: Bstr,
        query: Bstr,
        flags: u32,
        context: Itf,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// ExecQueryAsync (3.1.4.3.19).
    #[opnum(21)]
    fn exec_query_async(
        &self,
        call: &Call,
        this: OrpcThis,
        language: Bstr,
        query: Bstr,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// ExecNotificationQuery (3.1.4.3.20).
    #[opnum(22)]
    fn exec_notification_query(
        &self,
        call: &Call,
        this: OrpcThis,
        language: Bstr,
        query: Bstr,
        flags: u32,
        context: Itf,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// ExecNotificationQueryAsync (3.1.4.3.21).
    #[opnum(23)]
    fn exec_notification_query_async(
        &self,
        call: &Call,
        this: OrpcThis,
        language: Bstr,
        query: Bstr,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// ExecMethod (3.1.4.3.22).
    #[opnum(24)]
    fn exec_method(
        &self,
        call: &Call,
        this: OrpcThis,
        path: Bstr,
        method: Bstr,
        flags: u32,
        context: Itf,
        in_params: Itf,
        out_params: ItfInOut,
        call_result: ItfInOut,
        rest: IgnoredRest,
    ) -> CallResult<ObjectReply>;

    /// ExecMethodAsync (3.1.4.3.23).
    #[opnum(25)]
    fn exec_method_async(
        &self,
        call: &Call,
        this: OrpcThis,
        path: Bstr,
        method: Bstr,
        flags: u32,
        context: Itf,
        in_params: Itf,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;
}

/// IEnumWbemClassObject (3.1.4.4).
#[msrpc::interface(uuid = "027947e1-d731-11ce-a357-000000000001", version = "0.0")]
pub trait EnumWbemClassObject {
    /// Reset (3.1.4.4.1).
    #[opnum(3)]
    fn reset(&self, call: &Call, this: OrpcThis) -> CallResult<(OrpcThat, u32)>;

    /// Next (3.1.4.4.2): up to `count` objects, waiting at most `timeout`
    /// milliseconds (for events, which may take that long: off the
    /// connection's task).
    #[opnum(4)]
    #[blocking]
    fn next(
        &self,
        call: &Call,
        this: OrpcThis,
        timeout: u32,
        count: u32,
    ) -> CallResult<(OrpcThat, ConformantVaryingArray<Itf>, u32, u32)>;

    /// NextAsync (3.1.4.4.3).
    #[opnum(5)]
    fn next_async(
        &self,
        call: &Call,
        this: OrpcThis,
        count: u32,
        sink: Itf,
    ) -> CallResult<(OrpcThat, u32)>;

    /// Clone (3.1.4.4.4).
    #[opnum(6)]
    fn clone_enum(&self, call: &Call, this: OrpcThis) -> CallResult<(OrpcThat, Itf, u32)>;

    /// Skip (3.1.4.4.5).
    #[opnum(7)]
    #[blocking]
    fn skip(
        &self,
        call: &Call,
        this: OrpcThis,
        timeout: u32,
        count: u32,
    ) -> CallResult<(OrpcThat, u32)>;
}

/// IWbemFetchSmartEnum (3.1.4.6).
#[msrpc::interface(uuid = "1c1c45ee-4395-11d2-b60b-00104b703efd", version = "0.0")]
pub trait WbemFetchSmartEnum {
    /// GetSmartEnum (3.1.4.6.1). aiowmi sends the enumerator's IPID after
    /// ORPCTHIS; like Windows, the octets past the parameters are ignored.
    #[opnum(3)]
    fn get_smart_enum(
        &self,
        call: &Call,
        this: OrpcThis,
        rest: IgnoredRest,
    ) -> CallResult<(OrpcThat, Itf, u32)>;
}

/// IWbemWCOSmartEnum (3.1.4.7).
#[msrpc::interface(uuid = "423ec01e-2e35-11d2-b604-00104b703efd", version = "0.0")]
pub trait WbemWcoSmartEnum {
    /// Next (3.1.4.7.1): objects as an ObjectArray (2.2.14).
    #[opnum(3)]
    #[blocking]
    fn next(
        &self,
        call: &Call,
        this: OrpcThis,
        // REFGUID: a top-level [ref] pointer, the GUID alone on the wire.
        proxy: Uuid,
        timeout: u32,
        count: u32,
    ) -> CallResult<SmartNextReply>;
}

/// IWbemCallResult (3.1.4.5).
#[msrpc::interface(uuid = "44aca675-e8fc-11d0-a07c-00c04fb68820", version = "0.0")]
pub trait WbemCallResult {
    /// GetResultObject (3.1.4.5.1).
    #[opnum(3)]
    fn get_result_object(
        &self,
        call: &Call,
        this: OrpcThis,
        timeout: u32,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// GetResultString (3.1.4.5.2).
    #[opnum(4)]
    fn get_result_string(
        &self,
        call: &Call,
        this: OrpcThis,
        timeout: u32,
    ) -> CallResult<(OrpcThat, Bstr, u32)>;

    /// GetResultServices (3.1.4.5.3).
    #[opnum(5)]
    fn get_result_services(
        &self,
        call: &Call,
        this: OrpcThis,
        timeout: u32,
    ) -> CallResult<(OrpcThat, Itf, u32)>;

    /// GetCallStatus (3.1.4.5.4).
    #[opnum(6)]
    fn get_call_status(
        &self,
        call: &Call,
        this: OrpcThis,
        timeout: u32,
    ) -> CallResult<(OrpcThat, u32, u32)>;
}

/// IWbemObjectSink (3.1.4.2): served by a client that makes asynchronous
/// calls; the server calls it with the results, then the final status.
#[msrpc::interface(uuid = "7c857801-7381-11cf-884d-00aa004b2e24", version = "0.0")]
pub trait WbemObjectSink {
    /// Indicate (3.1.4.2.1): more result objects.
    #[opnum(3)]
    fn indicate(
        &self,
        call: &Call,
        this: OrpcThis,
        #[ndr(range(0, 65536))] count: u32,
        objects: ConformantArray<Itf>,
    ) -> CallResult<(OrpcThat, u32)>;

    /// SetStatus (3.1.4.2.2): the operation's final status
    /// (WBEM_STATUS_COMPLETE) or its progress, with the result string
    /// and an error object.
    #[opnum(4)]
    fn set_status(
        &self,
        call: &Call,
        this: OrpcThis,
        flags: u32,
        result: u32,
        text: Bstr,
        object: Itf,
    ) -> CallResult<(OrpcThat, u32)>;
}
