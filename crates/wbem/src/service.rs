//! The WMI service's objects: the login (the activatable class), the
//! services object of one namespace, the enumerators and smart
//! enumerators over a result set, and call results. Every call finds its
//! object through the exporter, which checks that the caller is the one
//! who activated it; the login admits administrators only.

// The methods take what the IDL gives them.
#![allow(clippy::too_many_arguments)]

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

use dcom::exporter::identity;
use dcom::objref::ObjRef;
use dcom::types::{bstr, bstr_text, Bstr, MInterfacePointer, OrpcThat, OrpcThis};
use dcom::{ComClass, Created, Exporter};
use iisadmin::Admins;
use metabase::MetabaseFiles;
use msrpc::ndr::{ConformantArray, ConformantVaryingArray, IgnoredRest, Unique, WString};
use msrpc::server::{Call, CallResult};
use msrpc::Uuid;
use wmi::{ClassModel, Provider, WbemStatus, WmiError};
use wmio::{Body, ClassDef, Object, Slot, Value};

use crate::asynchronous::{Outcome, Work};
use crate::convert::{self, Decoration};
use crate::interfaces::*;
use crate::status::*;
use crate::*;

/// WBEM_FLAG_RETURN_IMMEDIATELY: semisynchronous.
const FLAG_RETURN_IMMEDIATELY: u32 = 0x10;
/// WBEM_FLAG_FORWARD_ONLY: the enumerator cannot Reset or Clone.
const FLAG_FORWARD_ONLY: u32 = 0x20;
/// WBEM_FLAG_SHALLOW (CreateClassEnum, CreateInstanceEnum).
const FLAG_SHALLOW: u32 = 0x1;
/// WBEM_FLAG_PROTOTYPE (ExecQuery): the result's class, not its objects.
const FLAG_PROTOTYPE: u32 = 0x2;
const FLAG_UPDATE_ONLY: u32 = 0x1;
const FLAG_CREATE_ONLY: u32 = 0x2;
/// The longest namespace name NTLMLogin takes (Windows: 2,048 characters).
const MAX_NAMESPACE: usize = 2048;
/// The most objects one Next hands out.
const MAX_BATCH: u32 = 65_536;

/// The namespaces served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    Root,
    Cimv2,
    Iis,
}

impl Namespace {
    pub fn path(self) -> &'static str {
        match self {
            Namespace::Root => "root",
            Namespace::Cimv2 => "root\\cimv2",
            Namespace::Iis => convert::IIS_NAMESPACE,
        }
    }

    fn children(self) -> &'static [&'static str] {
        match self {
            Namespace::Root => &["cimv2", "MicrosoftIISv2"],
            _ => &[],
        }
    }

    /// A namespace path ([MS-WMI] 2.2.2): `root\cimv2`, `//./root/cimv2`,
    /// `\\host\root\MicrosoftIISv2`, any case, either slash.
    pub fn parse(text: &str) -> Option<Namespace> {
        let text = text.trim().replace('/', "\\");
        let local = match text.strip_prefix("\\\\") {
            Some(rest) => rest.split_once('\\')?.1.to_string(),
            None => text,
        };
        match local.trim_end_matches('\\').to_ascii_lowercase().as_str() {
            "root" => Some(Namespace::Root),
            "root\\cimv2" => Some(Namespace::Cimv2),
            "root\\microsoftiisv2" => Some(Namespace::Iis),
            _ => None,
        }
    }

    /// A namespace below this one, by relative name (or a full path).
    fn open(self, relative: &str) -> Option<Namespace> {
        let relative = relative.trim().replace('/', "\\");
        Namespace::parse(&format!("{}\\{relative}", self.path()))
            .or_else(|| Namespace::parse(&relative))
    }
}

/// What the WMI service works on.
pub struct Wbem {
    pub files: MetabaseFiles,
    pub admins: Arc<dyn Admins>,
    /// The name objects are decorated with (__SERVER).
    pub server_name: String,
    pub exporter: Arc<Exporter>,
    /// The running activation service, for the methods only it can carry
    /// out (Start, Stop, Pause, Continue, Recycle).
    pub service: Option<ServiceControl>,
    /// The asynchronous operations whose sinks are being called.
    pub operations: crate::asynchronous::Operations,
}

/// The activation service and the runtime its work runs on.
pub struct ServiceControl {
    pub was: was::Was,
    pub runtime: tokio::runtime::Handle,
}

/// How long a method waits for the activation service.
const SERVICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl ServiceControl {
    /// Carries out what a method asked of the running service.
    fn run(&self, action: wmi::methods::ServerAction) -> Result<(), String> {
        use was::{PoolCommand, SiteCommand};
        use wmi::methods::ServerAction as A;
        let was = self.was.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let done = match action {
                A::StartSite(id) => was.site_command(id, SiteCommand::Start).await,
                A::StopSite(id) => was.site_command(id, SiteCommand::Stop).await,
                A::PauseSite(id) => was.site_command(id, SiteCommand::Pause).await,
                A::ContinueSite(id) => was.site_command(id, SiteCommand::Continue).await,
                A::StartPool(name) => was.pool_command(&name, PoolCommand::Start).await,
                A::StopPool(name) => was.pool_command(&name, PoolCommand::Stop).await,
                A::RecyclePool(name) => was.pool_command(&name, PoolCommand::Recycle).await,
            };
            let _ = tx.send(done.map(|_| ()).map_err(|e| e.to_string()));
        });
        rx.recv_timeout(SERVICE_TIMEOUT)
            .unwrap_or_else(|_| Err("the activation service did not answer".into()))
    }
}

struct LoginObject;

struct ServicesObject {
    namespace: Namespace,
}

/// A result set and the position of one enumerator in it.
struct Results {
    objects: Arc<Vec<Object>>,
    position: Mutex<usize>,
    forward_only: bool,
}

impl Results {
    fn position(&self) -> MutexGuard<'_, usize> {
        self.position.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An enumerator: over a result set, or over the events of a
/// notification query as they happen.
#[derive(Clone)]
enum EnumObject {
    Results(Arc<Results>),
    Events(Arc<EventFeed>),
}

struct SmartEnumObject {
    source: EnumObject,
    encoder: Mutex<wmio::ObjectArrayEncoder>,
}

/// The events of one ExecNotificationQuery: the metabase's change
/// notifications, each compared with the configuration seen before.
pub(crate) struct EventFeed {
    query: wmi::events::EventQuery,
    decoration: Decoration,
    state: Mutex<FeedState>,
}

struct FeedState {
    changes: std::sync::mpsc::Receiver<Arc<metabase::ChangeBatch>>,
    last: Arc<metabase::Snapshot>,
    pending: std::collections::VecDeque<Object>,
}

/// How long one wait for a change lasts before the feed checks that its
/// client still holds it.
const FEED_SLICE: std::time::Duration = std::time::Duration::from_millis(500);
/// WBEM_INFINITE.
const INFINITE: u32 = u32::MAX;

impl EventFeed {
    /// Up to `count` events, waiting up to `timeout_ms` (or while `alive`
    /// holds, for WBEM_INFINITE) for them to happen.
    pub(crate) fn take(
        &self,
        files: &MetabaseFiles,
        count: usize,
        timeout_ms: u32,
        longest_wait: std::time::Duration,
        alive: &dyn Fn() -> bool,
    ) -> (Vec<Object>, u32) {
        // WBEM_INFINITE waits at most the exporter's ping timeout: a wait
        // never outlives a client that went away (one still there calls
        // again).
        let wait = match timeout_ms {
            INFINITE => longest_wait,
            ms => std::time::Duration::from_millis(u64::from(ms)),
        };
        let deadline = std::time::Instant::now() + wait;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.pending.len() >= count {
                return (state.pending.drain(..count).collect(), WBEM_S_NO_ERROR);
            }
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                // Fewer than asked (else they went above): what there is.
                let n = state.pending.len();
                return (state.pending.drain(..n).collect(), WBEM_S_TIMEDOUT);
            };
            let wait = left.min(FEED_SLICE);
            match state.changes.recv_timeout(wait) {
                Ok(_) => {
                    // Later notifications are in the same snapshot.
                    while state.changes.try_recv().is_ok() {}
                    let now = files.metabase().snapshot();
                    let model = ClassModel::from_schema(now.schema());
                    match self.query.events(&model, &state.last, &now) {
                        Ok(events) => {
                            for event in events {
                                if let Some(o) = event_object(&model, &event, &self.decoration) {
                                    state.pending.push_back(o);
                                }
                            }
                        }
                        Err(e) => tracing::warn!("WMI event query: {e}"),
                    }
                    state.last = now;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // Released by its client meanwhile: nothing to wait for.
                    if !alive() {
                        return (Vec::new(), WBEM_E_FAILED);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return (Vec::new(), WBEM_E_FAILED);
                }
            }
        }
    }
}

/// An intrinsic event as the instance a client receives: its class
/// (__InstanceModificationEvent, …) with TargetInstance and, for a
/// modification, PreviousInstance embedded.
fn event_object(
    model: &ClassModel,
    event: &wmi::events::Event,
    decoration: &Decoration,
) -> Option<Object> {
    let embed = |i: &wmi::Instance| {
        wmi::WmiValue::Object(wmi::value::EmbeddedObject {
            class: i.class.clone(),
            properties: i.properties.clone(),
        })
    };
    let mut properties = vec![("TargetInstance".to_string(), embed(&event.target))];
    if let Some(previous) = &event.previous {
        properties.push(("PreviousInstance".to_string(), embed(previous)));
    }
    let instance = wmi::Instance {
        class: event.class.to_string(),
        relpath: String::new(),
        properties,
    };
    convert::instance_object(
        model,
        &mut convert::ClassCache::new(None),
        &instance,
        Some(decoration),
    )
}

impl EnumObject {
    /// Up to `count` objects from the current position.
    fn take(
        &self,
        wbem: &Wbem,
        count: u32,
        timeout_ms: u32,
        alive: &dyn Fn() -> bool,
    ) -> (Vec<Object>, u32) {
        let wanted = count.min(MAX_BATCH) as usize;
        match self {
            EnumObject::Results(results) => {
                // Every result is ready when the enumerator is made.
                let mut position = results.position();
                let available = results.objects.len().saturating_sub(*position);
                let n = wanted.min(available);
                let batch = results.objects[*position..*position + n].to_vec();
                *position += n;
                let status = if n < count as usize {
                    WBEM_S_FALSE
                } else {
                    WBEM_S_NO_ERROR
                };
                (batch, status)
            }
            EnumObject::Events(feed) => feed.take(
                &wbem.files,
                wanted,
                timeout_ms,
                wbem.exporter.ping_timeout(),
                alive,
            ),
        }
    }
}

struct CallResultObject {
    status: u32,
    object: Option<Object>,
    text: Option<String>,
    namespace: Option<Namespace>,
}

/// The login class (CLSID_WbemLevel1Login).
struct LoginClass(Arc<Wbem>);

impl ComClass for LoginClass {
    fn name(&self) -> &'static str {
        "WbemLevel1Login"
    }

    fn admit(&self, call: &Call<'_>) -> Result<(), u32> {
        if !iisadmin::admitted(call, &self.0.admins, "WMI (IWbemLevel1Login) activation") {
            return Err(dcom::ids::E_ACCESSDENIED);
        }
        Ok(())
    }

    fn create(&self, call: &Call<'_>) -> Result<Created, u32> {
        self.admit(call)?;
        Ok(Created {
            object: Arc::new(LoginObject),
            interfaces: vec![IID_IWBEM_LEVEL1_LOGIN],
        })
    }
}

type That = OrpcThat;
type This = OrpcThis;

fn none() -> Itf {
    Unique::new(None)
}

fn none_in_out() -> ItfInOut {
    Unique::new(None)
}

/// What an `[in, out, unique]` pointer answers: the pointer when the
/// client passed one (and the object is there), NULL otherwise.
fn in_out(asked: &ItfInOut, pointer: Option<MInterfacePointer>) -> ItfInOut {
    if asked.get().is_none() {
        return Unique::new(None);
    }
    Unique::new(Some(Unique::new(pointer)))
}

/// An object as IWbemClassObject's custom OBJREF (2.2.4).
pub fn object_pointer(object: &Object) -> MInterfacePointer {
    MInterfacePointer::new(
        ObjRef::Custom {
            iid: IID_IWBEM_CLASS_OBJECT,
            clsid: CLSID_WBEM_CLASS_OBJECT,
            data: wmio::encode_unit(object),
        }
        .encode(),
    )
}

/// The object an IWbemClassObject pointer carries.
pub fn object_of(pointer: &Itf) -> Result<Object, (u32, String)> {
    let Some(p) = pointer.get() else {
        return Err((WBEM_E_INVALID_PARAMETER, "no object was given".into()));
    };
    match ObjRef::decode(&p.data) {
        Ok(ObjRef::Custom { data, .. }) => {
            wmio::decode_unit(&data).map_err(|e| (WBEM_E_INVALID_OBJECT, e.to_string()))
        }
        Ok(ObjRef::Standard { .. }) => Err((
            WBEM_E_INVALID_OBJECT,
            "an IWbemClassObject must be marshalled by value (OBJREF_CUSTOM), not by reference"
                .into(),
        )),
        Err(e) => Err((WBEM_E_INVALID_OBJECT, e.to_string())),
    }
}

/// The IWbemContext a call carries, if any (custom-marshalled, 2.2.13).
pub fn context_of(pointer: &Itf) -> Result<Option<wmio::context::Context>, (u32, String)> {
    let Some(p) = pointer.get() else {
        return Ok(None);
    };
    match ObjRef::decode(&p.data) {
        Ok(ObjRef::Custom { data, .. }) => wmio::context::decode_context(&data)
            .map(Some)
            .map_err(|e| (WBEM_E_INVALID_CONTEXT, e.to_string())),
        Ok(ObjRef::Standard { .. }) => Err((
            WBEM_E_INVALID_CONTEXT,
            "an IWbemContext must be marshalled by value (OBJREF_CUSTOM)".into(),
        )),
        Err(e) => Err((WBEM_E_INVALID_CONTEXT, e.to_string())),
    }
}

/// The object an optional IWbemClassObject pointer carries (ExecMethod's
/// input parameters).
fn optional_object(pointer: &Itf) -> Result<Option<Object>, Refusal> {
    match pointer.get() {
        None => Ok(None),
        Some(_) => object_of(pointer).map(Some),
    }
}

/// PutInstance's instance and context, checked before it starts.
fn put_arguments(
    namespace: Namespace,
    instance: &Itf,
    context: &Itf,
) -> Result<(Object, Option<wmio::context::Context>), Refusal> {
    if namespace != Namespace::Iis {
        return Err((
            WBEM_E_NOT_SUPPORTED,
            format!("{} has no instances to write", namespace.path()),
        ));
    }
    Ok((object_of(instance)?, context_of(context)?))
}

/// Checks a query's language: WQL is the only one.
fn wql(language: &Bstr) -> Result<(), Refusal> {
    let language = bstr_text(language);
    if language.eq_ignore_ascii_case("WQL") {
        Ok(())
    } else {
        Err((
            WBEM_E_INVALID_QUERY_TYPE,
            format!("query language {language:?} is not WQL"),
        ))
    }
}

/// A provider error as a refusal: its status, and its message (the
/// status is the HRESULT; the words need not repeat it).
fn refusal(e: &WmiError) -> Refusal {
    let message = match e.position {
        Some(p) => format!("at column {p}: {}", e.message),
        None => e.message.clone(),
    };
    (e.status.code(), message)
}

/// `__NAMESPACE` ([MS-WMI] 2.2.31): one instance per namespace below.
fn namespace_class() -> ClassDef {
    ClassDef {
        name: Some("__NAMESPACE".into()),
        derivation: vec!["__SystemClass".into()],
        qualifiers: Vec::new(),
        properties: vec![wmio::Property {
            name: "Name".into(),
            cim_type: wmio::CimType::STRING,
            inherited: false,
            origin: 1,
            qualifiers: vec![
                wmio::Qualifier::new("CIMTYPE", 3, Value::String("string".into())),
                wmio::Qualifier::new("key", 0x13, Value::Boolean(true)),
            ],
            default: None,
        }],
        methods: Vec::new(),
    }
}

/// The Source of the error information a refused call carries.
const ERROR_SOURCE: &str = "inetsrv WMI (IIS_PROVIDER)";

/// An answer that is an HRESULT alone.
fn plain(hr: u32) -> (That, u32) {
    (That::default(), hr)
}

/// A pending answer: HRESULT and what to log.
pub(crate) type Refusal = (u32, String);

impl Wbem {
    /// An event subscription's feed: subscribed to the metabase's changes
    /// before the first look, so no change falls between them.
    fn event_feed(
        &self,
        namespace: Namespace,
        language: &Bstr,
        text: &str,
    ) -> Result<Arc<EventFeed>, Refusal> {
        wql(language)?;
        if namespace != Namespace::Iis {
            return Err((
                WBEM_E_INVALID_CLASS,
                format!("{} has no events", namespace.path()),
            ));
        }
        let changes = self.files.metabase().subscribe();
        let last = self.files.metabase().snapshot();
        let model = ClassModel::from_schema(last.schema());
        let query = wmi::events::EventQuery::parse(&model, text).map_err(|e| refusal(&e))?;
        Ok(Arc::new(EventFeed {
            query,
            decoration: self.decoration(namespace),
            state: Mutex::new(FeedState {
                changes,
                last,
                pending: std::collections::VecDeque::new(),
            }),
        }))
    }

    /// Deletes the instance at `path`; its path in the namespace.
    fn delete_instance(&self, namespace: Namespace, path: &str) -> Result<String, Refusal> {
        if namespace != Namespace::Iis {
            return Err((
                WBEM_E_NOT_SUPPORTED,
                format!("{} has no instances to delete", namespace.path()),
            ));
        }
        let local = strip_namespace(path, namespace)?.to_string();
        let snapshot = self.files.metabase().snapshot();
        let model = ClassModel::from_schema(snapshot.schema());
        wmi::write::delete_instance(self.files.metabase(), &model, &local)
            .map_err(|e| refusal(&e))?;
        Ok(local)
    }

    fn decoration(&self, namespace: Namespace) -> Decoration {
        Decoration {
            server: self.server_name.clone(),
            namespace: namespace.path().to_string(),
        }
    }

    /// Exports a new object and marshals `iid` on it.
    fn export(
        &self,
        call: &Call<'_>,
        object: Arc<dyn Any + Send + Sync>,
        interfaces: Vec<Uuid>,
        class: &'static str,
        iid: Uuid,
    ) -> Result<MInterfacePointer, u32> {
        let oid = self
            .exporter
            .export(Created { object, interfaces }, identity(call), class)?;
        self.exporter.marshal(call, oid, iid).inspect_err(|_| {
            self.exporter.forget(oid);
        })
    }

    fn services(&self, call: &Call<'_>, namespace: Namespace) -> Result<MInterfacePointer, u32> {
        self.export(
            call,
            Arc::new(ServicesObject { namespace }),
            vec![IID_IWBEM_SERVICES],
            "IWbemServices",
            IID_IWBEM_SERVICES,
        )
    }

    fn enumerator(
        &self,
        call: &Call<'_>,
        objects: Vec<Object>,
        flags: u32,
    ) -> Result<MInterfacePointer, u32> {
        let results = Arc::new(Results {
            objects: Arc::new(objects),
            position: Mutex::new(0),
            forward_only: flags & FLAG_FORWARD_ONLY != 0,
        });
        self.export_enum(call, EnumObject::Results(results))
    }

    fn export_enum(&self, call: &Call<'_>, object: EnumObject) -> Result<MInterfacePointer, u32> {
        self.export(
            call,
            Arc::new(object),
            vec![IID_IENUM_WBEM_CLASS_OBJECT, IID_IWBEM_FETCH_SMART_ENUM],
            "IEnumWbemClassObject",
            IID_IENUM_WBEM_CLASS_OBJECT,
        )
    }

    fn call_result(
        &self,
        call: &Call<'_>,
        result: CallResultObject,
    ) -> Result<MInterfacePointer, u32> {
        self.export(
            call,
            Arc::new(result),
            vec![IID_IWBEM_CALL_RESULT],
            "IWbemCallResult",
            IID_IWBEM_CALL_RESULT,
        )
    }

    /// An IWbemCallResult for a successful call when the client asked for
    /// one (its `[in, out]` pointer is not NULL).
    fn optional_call_result(
        &self,
        call: &Call<'_>,
        asked: &ItfInOut,
        result: CallResultObject,
    ) -> Result<Option<MInterfacePointer>, u32> {
        if asked.get().is_none() {
            return Ok(None);
        }
        self.call_result(call, result).map(Some)
    }

    /// The answer of a call that produced one object (GetObject,
    /// ExecMethod): in `object`, or, semisynchronously, in an
    /// IWbemCallResult.
    fn object_answer(
        &self,
        call: &Call<'_>,
        flags: u32,
        object: &ItfInOut,
        call_result: &ItfInOut,
        found: Object,
    ) -> ObjectReply {
        let failed = |hr| (That::default(), none_in_out(), none_in_out(), hr);
        if flags & FLAG_RETURN_IMMEDIATELY == 0 {
            return (
                That::default(),
                in_out(object, Some(object_pointer(&found))),
                in_out(call_result, None),
                WBEM_S_NO_ERROR,
            );
        }
        let result = CallResultObject {
            status: WBEM_S_NO_ERROR,
            object: Some(found),
            text: None,
            namespace: None,
        };
        match self.call_result(call, result) {
            Ok(p) => (
                That::default(),
                in_out(object, None),
                in_out(call_result, Some(p)),
                WBEM_S_NO_ERROR,
            ),
            Err(hr) => failed(hr),
        }
    }

    fn with_provider<T>(
        &self,
        f: impl FnOnce(&Provider<'_>, &ClassModel) -> Result<T, WmiError>,
    ) -> Result<T, Refusal> {
        let snapshot = self.files.metabase().snapshot();
        let model = ClassModel::from_schema(snapshot.schema());
        let mut provider = Provider::new(&model, &snapshot);
        provider.backups = self.files.list_backups(None).unwrap_or_default();
        f(&provider, &model).map_err(|e| refusal(&e))
    }

    fn namespace_instances(&self, namespace: Namespace) -> Vec<Object> {
        let decoration = self.decoration(namespace);
        namespace
            .children()
            .iter()
            .map(|name| Object {
                decoration: Some((decoration.server.clone(), decoration.namespace.clone())),
                extra_flags: 0,
                body: Body::Instance(wmio::Instance {
                    class: Arc::new(namespace_class()),
                    values: vec![Slot::Value(Value::String(name.to_string()))],
                    qualifiers: Vec::new(),
                }),
            })
            .collect()
    }

    fn namespace_class_object(&self, namespace: Namespace) -> Object {
        Object {
            decoration: Some((self.server_name.clone(), namespace.path().to_string())),
            extra_flags: 0,
            body: Body::Class {
                parent: ClassDef {
                    name: Some("__SystemClass".into()),
                    ..ClassDef::default()
                },
                current: namespace_class(),
            },
        }
    }

    /// A WQL query's objects (or, with WBEM_FLAG_PROTOTYPE, its class).
    fn query(&self, namespace: Namespace, text: &str, flags: u32) -> Result<Vec<Object>, Refusal> {
        if namespace != Namespace::Iis {
            let statement = wmi::wql::parse_statement(text).map_err(|e| refusal(&e))?;
            let wmi::wql::Statement::Select(query) = statement else {
                return Ok(Vec::new());
            };
            if !query.class.text.eq_ignore_ascii_case("__NAMESPACE") {
                return Err((
                    WBEM_E_INVALID_CLASS,
                    format!(
                        "there is no class {} in {} (the IIS classes are in {})",
                        query.class.text,
                        namespace.path(),
                        convert::IIS_NAMESPACE
                    ),
                ));
            }
            let mut out = self.namespace_instances(namespace);
            if let Some(filter) = &query.filter {
                let snapshot = self.files.metabase().snapshot();
                let model = ClassModel::from_schema(snapshot.schema());
                out.retain(|o| {
                    let name = o.class_name().to_string();
                    let get = |p: &str| match &o.body {
                        Body::Instance(i) => match i.get(p) {
                            Some(Value::String(s)) => wmi::WmiValue::String(s.clone()),
                            _ => wmi::WmiValue::Null,
                        },
                        Body::Class { .. } => wmi::WmiValue::Null,
                    };
                    wmi::provider::eval_with(&model, &name, &get, filter).unwrap_or(false)
                });
            }
            return Ok(out);
        }
        let decoration = self.decoration(namespace);
        self.with_provider(|provider, model| {
            let result = provider.query(text)?;
            if flags & FLAG_PROTOTYPE != 0 {
                let class_name = match wmi::wql::parse_statement(text)? {
                    wmi::wql::Statement::Select(q) => q.class.text,
                    wmi::wql::Statement::Assoc(_) => {
                        return Err(WmiError::new(
                            WbemStatus::InvalidQuery,
                            "WBEM_FLAG_PROTOTYPE takes a SELECT query",
                        ))
                    }
                };
                let class = model.class(&class_name).ok_or_else(|| {
                    WmiError::new(WbemStatus::InvalidClass, format!("no class {class_name}"))
                })?;
                let mut object = convert::class_object(model, class, &decoration);
                if let (Some(columns), Body::Class { current, .. }) =
                    (&result.columns, &mut object.body)
                {
                    let is_key = |p: &wmio::Property| {
                        p.qualifiers
                            .iter()
                            .any(|q| q.name.eq_ignore_ascii_case("key"))
                    };
                    let selected = |p: &wmio::Property| {
                        columns.iter().any(|c| c.eq_ignore_ascii_case(&p.name))
                    };
                    // [MS-WMI] 2.2.4.1: 0x40 when a key property is left out.
                    let keys_missing = current.properties.iter().any(|p| is_key(p) && !selected(p));
                    current.properties.retain(selected);
                    object.extra_flags = wmio::object_flags::PROTOTYPE
                        | if keys_missing {
                            wmio::object_flags::KEYS_MISSING
                        } else {
                            0
                        };
                }
                return Ok(vec![object]);
            }
            let mut cache = convert::ClassCache::new(result.columns.as_deref());
            Ok(result
                .instances
                .iter()
                .filter_map(|i| convert::instance_object(model, &mut cache, i, Some(&decoration)))
                .collect())
        })
    }

    fn get_object(&self, namespace: Namespace, path: &str) -> Result<Object, Refusal> {
        let path = path.trim();
        if path.is_empty() {
            // An empty class, for a client to build a new one in.
            return Ok(Object {
                decoration: None,
                extra_flags: 0,
                body: Body::Class {
                    parent: ClassDef::default(),
                    current: ClassDef::default(),
                },
            });
        }
        let local = strip_namespace(path, namespace)?;
        let is_class = !local.contains(['.', '=']);
        if namespace != Namespace::Iis {
            if is_class && local.eq_ignore_ascii_case("__NAMESPACE") {
                return Ok(self.namespace_class_object(namespace));
            }
            let wanted = local
                .split_once('=')
                .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_string());
            if let Some(name) = wanted {
                if local.to_ascii_lowercase().starts_with("__namespace") {
                    if let Some(found) = self.namespace_instances(namespace).into_iter().find(|o| {
                        matches!(&o.body, Body::Instance(i) if i.get("Name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(&name)))
                    }) {
                        return Ok(found);
                    }
                }
            }
            return Err((
                WBEM_E_NOT_FOUND,
                format!("there is no object {local} in {}", namespace.path()),
            ));
        }
        let decoration = self.decoration(namespace);
        self.with_provider(|provider, model| {
            if is_class {
                let class = model.class(local).ok_or_else(|| {
                    WmiError::new(
                        WbemStatus::NotFound,
                        format!("there is no class {local} in {}", convert::IIS_NAMESPACE),
                    )
                })?;
                return Ok(convert::class_object(model, class, &decoration));
            }
            let instance = provider.get_object(local)?;
            let mut cache = convert::ClassCache::new(None);
            convert::instance_object(model, &mut cache, &instance, Some(&decoration)).ok_or_else(
                || WmiError::new(WbemStatus::NotFound, format!("no class {}", instance.class)),
            )
        })
    }

    fn class_enum(
        &self,
        namespace: Namespace,
        superclass: &str,
        flags: u32,
    ) -> Result<Vec<Object>, Refusal> {
        if namespace != Namespace::Iis {
            return Ok(
                if superclass.is_empty() || superclass.eq_ignore_ascii_case("__SystemClass") {
                    vec![self.namespace_class_object(namespace)]
                } else {
                    Vec::new()
                },
            );
        }
        let decoration = self.decoration(namespace);
        self.with_provider(|_, model| {
            if !superclass.is_empty() && model.class(superclass).is_none() {
                return Err(WmiError::new(
                    WbemStatus::InvalidClass,
                    format!(
                        "there is no class {superclass} in {}",
                        convert::IIS_NAMESPACE
                    ),
                ));
            }
            Ok(model
                .classes()
                .iter()
                .filter(|c| {
                    let parent = c.superclass.as_deref().unwrap_or("");
                    if flags & FLAG_SHALLOW != 0 {
                        parent.eq_ignore_ascii_case(superclass)
                    } else {
                        superclass.is_empty()
                            || (!c.name.eq_ignore_ascii_case(superclass)
                                && model.is_a(&c.name, superclass))
                    }
                })
                .map(|c| convert::class_object(model, c, &decoration))
                .collect())
        })
    }

    fn instance_enum(
        &self,
        namespace: Namespace,
        class: &str,
        flags: u32,
    ) -> Result<Vec<Object>, Refusal> {
        if class.trim().is_empty() || class.contains(|c: char| !(c.is_alphanumeric() || c == '_')) {
            return Err((
                WBEM_E_INVALID_CLASS,
                format!("'{class}' is not a class name"),
            ));
        }
        let mut objects = self.query(namespace, &format!("SELECT * FROM {class}"), 0)?;
        if flags & FLAG_SHALLOW != 0 {
            objects.retain(|o| o.class_name().eq_ignore_ascii_case(class));
        }
        Ok(objects)
    }

    /// PutInstance: the instance's non-NULL properties that differ from
    /// what the key has now are written, in one transaction; NULL ones are
    /// left as they are. The new instance's path.
    /// PutInstance, with a client's context: a partial update
    /// (`__PUT_EXTENSIONS` with `__PUT_EXT_PROPERTIES`, [MS-WMI] 3.1.4.3.12)
    /// writes only the properties it lists, and with
    /// `__PUT_EXT_STRICT_NULLS` a listed NULL removes the key's own value
    /// (the inherited one shows again).
    fn put_instance(
        &self,
        object: &Object,
        flags: u32,
        context: Option<&wmio::context::Context>,
    ) -> Result<String, Refusal> {
        use wmio::context::ContextValue;
        let partial = context.filter(|c| c.is_true("__PUT_EXTENSIONS"));
        let listed: Option<Vec<String>> = match partial.and_then(|c| c.get("__PUT_EXT_PROPERTIES"))
        {
            Some(ContextValue::Strings(names)) => Some(names.clone()),
            Some(ContextValue::String(name)) => Some(vec![name.clone()]),
            _ => None,
        };
        let strict_nulls = partial.is_some_and(|c| c.is_true("__PUT_EXT_STRICT_NULLS"));
        let wanted = |name: &str| {
            listed
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n.eq_ignore_ascii_case(name)))
        };
        let Body::Instance(instance) = &object.body else {
            return Err((
                WBEM_E_INVALID_PARAMETER,
                "PutInstance takes an instance, not a class".into(),
            ));
        };
        let class = instance.class.name().to_string();
        let name = match instance.get("Name") {
            Some(Value::String(n)) => n.clone(),
            _ => {
                return Err((
                    WBEM_E_INVALID_PARAMETER,
                    format!("Name, the key of {class}, is required"),
                ))
            }
        };
        let path = wmi::path::ObjectPath::format(&class, "Name", &name);
        let existing = self.with_provider(|provider, _| Ok(provider.get_object(&path).ok()))?;
        if existing.is_some() && flags & FLAG_CREATE_ONLY != 0 {
            return Err((WBEM_E_ALREADY_EXISTS, format!("{path} exists")));
        }
        if existing.is_none() && flags & FLAG_UPDATE_ONLY != 0 {
            return Err((WBEM_E_NOT_FOUND, format!("there is no {path}")));
        }
        let mut properties: Vec<(String, Vec<String>)> = vec![("Name".into(), vec![name.clone()])];
        let mut cleared: Vec<&str> = Vec::new();
        for (p, slot) in instance.class.properties.iter().zip(&instance.values) {
            if p.name.eq_ignore_ascii_case("Name") || !wanted(&p.name) {
                continue;
            }
            // The class's default when it has none is NULL too (Impacket
            // marks its NULLs so).
            let value = match (slot, &p.default) {
                (Slot::Value(v), _) | (Slot::Default, Some(v)) => v,
                (Slot::Null | Slot::Default, _) if strict_nulls && listed.is_some() => {
                    cleared.push(&p.name);
                    continue;
                }
                (Slot::Null | Slot::Default, _) => continue,
            };
            let text = texts(value)
                .map_err(|why| (WBEM_E_TYPE_MISMATCH, format!("{class}.{}: {why}", p.name)))?;
            if let Some(current) = existing.as_ref().and_then(|e| e.get(&p.name)) {
                if current_texts(current) == text {
                    continue;
                }
            }
            properties.push((p.name.clone(), text));
        }
        let snapshot = self.files.metabase().snapshot();
        let model = ClassModel::from_schema(snapshot.schema());
        let done = wmi::write::put_instance(self.files.metabase(), &model, &class, &properties)
            .map_err(|e| refusal(&e))?;
        if !cleared.is_empty() {
            self.clear(&model, &class, &name, &cleared)?;
        }
        Ok(done)
    }

    /// Removes the key's own values of `properties` (metabase-backed ones;
    /// a flag is one bit of another's value and stays).
    fn clear(
        &self,
        model: &ClassModel,
        class: &str,
        name: &str,
        properties: &[&str],
    ) -> Result<(), Refusal> {
        let path = wmi::write::key_path(name).map_err(|e| refusal(&e))?;
        let ids: Vec<u32> = properties
            .iter()
            .filter_map(|p| match model.class(class)?.property(p)?.source {
                wmi::classes::Source::Metabase(id) => Some(id),
                _ => None,
            })
            .collect();
        let snapshot = self.files.metabase().snapshot();
        let own: Vec<u32> = match snapshot.find(&path) {
            Some(key) => ids
                .into_iter()
                .filter(|id| key.property(*id).is_some())
                .collect(),
            None => Vec::new(),
        };
        if own.is_empty() {
            return Ok(());
        }
        self.files
            .metabase()
            .write(|t| {
                for id in &own {
                    t.delete_data(&path, *id)?;
                }
                Ok(())
            })
            .map_err(|e| (WBEM_E_FAILED, e.to_string()))
    }
}

impl Wbem {
    /// ExecMethod: the method of the instance at `path`, its in-parameters
    /// taken by name from `input`; the out-parameters.
    fn exec_method(
        &self,
        namespace: Namespace,
        path: &str,
        method: &str,
        input: Option<&Object>,
    ) -> Result<Object, Refusal> {
        if namespace != Namespace::Iis {
            return Err((
                WBEM_E_NOT_SUPPORTED,
                format!("{} has no methods", namespace.path()),
            ));
        }
        let local = strip_namespace(path, namespace)?;
        let mut args: Vec<(String, Vec<String>)> = Vec::new();
        if let Some(object) = input {
            let Body::Instance(params) = &object.body else {
                return Err((
                    WBEM_E_INVALID_PARAMETER,
                    "the in-parameters are a class, not an instance".into(),
                ));
            };
            for (p, slot) in params.class.properties.iter().zip(&params.values) {
                if let Slot::Value(v) = slot {
                    let text = texts(v)
                        .map_err(|why| (WBEM_E_TYPE_MISMATCH, format!("{}: {why}", p.name)))?;
                    args.push((p.name.clone(), text));
                }
            }
        }
        let snapshot = self.files.metabase().snapshot();
        let model = ClassModel::from_schema(snapshot.schema());
        let wmi_error = |e: WmiError| refusal(&e);
        let outcome = wmi::methods::call(self.files.metabase(), &model, local, method, &args)
            .map_err(wmi_error)?;
        let values = match outcome {
            wmi::methods::Outcome::Done(values) => values,
            wmi::methods::Outcome::Files(op) => {
                match wmi::computer::run(&self.files, &op).map_err(wmi_error)? {
                    wmi::methods::Outcome::Done(values) => values,
                    _ => Vec::new(),
                }
            }
            wmi::methods::Outcome::Server(action) => {
                let Some(service) = &self.service else {
                    return Err((
                        WBEM_E_FAILED,
                        "the activation service is not running".into(),
                    ));
                };
                service
                    .run(action)
                    .map_err(|why| (WBEM_E_FAILED, format!("{method}: {why}")))?;
                Vec::new()
            }
        };
        Ok(convert::out_parameters(&model, &values))
    }
}

/// A value as the text forms `inetsrv mb set` takes (several for an
/// array).
fn texts(value: &Value) -> Result<Vec<String>, String> {
    Ok(match value {
        Value::Array(_, items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.extend(texts(item)?);
            }
            out
        }
        Value::Boolean(b) => vec![if *b { "TRUE" } else { "FALSE" }.to_string()],
        Value::String(s) | Value::DateTime(s) | Value::Reference(s) => vec![s.clone()],
        Value::Sint8(v) => vec![v.to_string()],
        Value::Uint8(v) => vec![v.to_string()],
        Value::Sint16(v) => vec![v.to_string()],
        Value::Uint16(v) | Value::Char16(v) => vec![v.to_string()],
        Value::Sint32(v) => vec![v.to_string()],
        Value::Uint32(v) => vec![v.to_string()],
        Value::Sint64(v) => vec![v.to_string()],
        Value::Uint64(v) => vec![v.to_string()],
        Value::Real32(v) => vec![v.to_string()],
        Value::Real64(v) => vec![v.to_string()],
        Value::Object(object) => {
            let Body::Instance(instance) = &object.body else {
                return Err("an embedded class where an instance belongs".into());
            };
            let embedded = wmi::value::EmbeddedObject {
                class: instance.class.name().to_string(),
                properties: instance
                    .class
                    .properties
                    .iter()
                    .map(|p| {
                        let v = match instance.get(&p.name) {
                            Some(Value::String(s)) => wmi::WmiValue::String(s.clone()),
                            Some(Value::Uint32(n)) => wmi::WmiValue::UInt32(*n),
                            Some(Value::Boolean(b)) => wmi::WmiValue::Bool(*b),
                            Some(other) => wmi::WmiValue::String(
                                texts(other).map(|t| t.join(",")).unwrap_or_default(),
                            ),
                            None => wmi::WmiValue::Null,
                        };
                        (p.name.clone(), v)
                    })
                    .collect(),
            };
            vec![wmi::provider::embedded_text(&embedded).ok_or_else(|| {
                format!(
                    "{} is not a structured value of the metabase",
                    embedded.class
                )
            })?]
        }
    })
}

/// The provider's current value in the same text forms.
fn current_texts(value: &wmi::WmiValue) -> Vec<String> {
    use wmi::WmiValue as W;
    match value {
        W::Null => Vec::new(),
        W::Bool(b) => vec![if *b { "TRUE" } else { "FALSE" }.to_string()],
        W::UInt32(n) => vec![n.to_string()],
        W::String(s) => vec![s.clone()],
        W::Bytes(b) => b.iter().map(|x| x.to_string()).collect(),
        W::Array(items) => items.iter().flat_map(current_texts).collect(),
        W::Object(o) => wmi::provider::embedded_text(o).into_iter().collect(),
    }
}

/// A path with its namespace prefix (`\\.\root\MicrosoftIISv2:Class…`)
/// checked against the services object's namespace and removed.
fn strip_namespace(path: &str, namespace: Namespace) -> Result<&str, Refusal> {
    let Some(colon) = path.find(':') else {
        return Ok(path);
    };
    let before = &path[..colon];
    if before.contains(['"', '\'', '=']) {
        return Ok(path);
    }
    match Namespace::parse(before) {
        Some(ns) if ns == namespace => Ok(&path[colon + 1..]),
        _ => Err((
            WBEM_E_INVALID_NAMESPACE,
            format!(
                "'{before}' is not this connection's namespace ({})",
                namespace.path()
            ),
        )),
    }
}

/// Serves IWbemLevel1Login and the interfaces of the objects it leads to.
pub struct WbemService(pub Arc<Wbem>);

impl WbemService {
    /// A refused call's answer: its HRESULT, and an ORPCTHAT whose error
    /// information ([MS-DCOM] 2.2.21) says why, as IErrorInfo tells a
    /// Windows caller.
    fn refuse(&self, what: &str, (hr, why): Refusal) -> (That, u32) {
        tracing::info!(hr = format_args!("{hr:#010x}"), "WMI {what}: {why}");
        let info = dcom::errorinfo::ErrorInfo::new(IID_IWBEM_SERVICES, ERROR_SOURCE, &why);
        (info.that(), hr)
    }
}

impl WbemLevel1Login for WbemService {
    fn establish_position(
        &self,
        call: &Call,
        _this: This,
        _reserved1: Unique<WString>,
        _reserved2: u32,
    ) -> CallResult<(That, u32, u32)> {
        self.0.exporter.object::<LoginObject>(call)?;
        // Locales it does not know are ignored: LocaleVersion 1.
        Ok((That::default(), 1, WBEM_S_NO_ERROR))
    }

    fn request_challenge(
        &self,
        call: &Call,
        _this: This,
        _reserved1: Unique<WString>,
        _reserved2: Unique<WString>,
    ) -> CallResult<(That, ConformantVaryingArray<u8>, u32)> {
        self.0.exporter.object::<LoginObject>(call)?;
        let empty = ConformantVaryingArray {
            max: 16,
            items: Vec::new(),
        };
        Ok((That::default(), empty, WBEM_E_NOT_SUPPORTED))
    }

    fn wbem_login(
        &self,
        call: &Call,
        _this: This,
        _reserved1: Unique<WString>,
        _reserved2: Unique<ConformantVaryingArray<u8>>,
        _reserved3: u32,
        _reserved4: Itf,
    ) -> CallResult<(That, Itf, u32)> {
        self.0.exporter.object::<LoginObject>(call)?;
        Ok((That::default(), none(), E_NOTIMPL))
    }

    fn ntlm_login(
        &self,
        call: &Call,
        _this: This,
        network_resource: Unique<WString>,
        _preferred_locale: Unique<WString>,
        flags: u32,
        _context: Itf,
    ) -> CallResult<(That, Itf, u32)> {
        self.0.exporter.object::<LoginObject>(call)?;
        let fail = |(that, hr): (That, u32)| Ok((that, none(), hr));
        if !iisadmin::admitted(call, &self.0.admins, "WMI NTLMLogin") {
            return fail(plain(WBEM_E_ACCESS_DENIED));
        }
        if flags != 0 {
            return fail(plain(WBEM_E_INVALID_PARAMETER));
        }
        let Some(resource) = network_resource.get().map(|w| w.0.clone()) else {
            return fail(plain(WBEM_E_INVALID_PARAMETER));
        };
        if resource.chars().count() > MAX_NAMESPACE {
            return fail(plain(WBEM_E_QUOTA_VIOLATION));
        }
        let Some(namespace) = Namespace::parse(&resource) else {
            tracing::info!(resource, "WMI NTLMLogin: no such namespace");
            return fail(plain(WBEM_E_INVALID_NAMESPACE));
        };
        tracing::info!(user = ?call.client, namespace = namespace.path(), "WMI: logged on");
        match self.0.services(call, namespace) {
            Ok(p) => Ok((That::default(), Unique::new(Some(p)), WBEM_S_NO_ERROR)),
            Err(hr) => fail(plain(hr)),
        }
    }
}

impl WbemServices for WbemService {
    fn open_namespace(
        &self,
        call: &Call,
        _this: This,
        namespace: Bstr,
        _flags: u32,
        _context: Itf,
        working_namespace: ItfInOut,
        result: ItfInOut,
        _rest: IgnoredRest,
    ) -> CallResult<ObjectReply> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let name = bstr_text(&namespace);
        let fail = |(that, hr): (That, u32)| Ok((that, none_in_out(), none_in_out(), hr));
        let Some(opened) = services.namespace.open(&name) else {
            return fail(self.refuse(
                "OpenNamespace",
                (
                    WBEM_E_INVALID_NAMESPACE,
                    format!("no namespace {name} below {}", services.namespace.path()),
                ),
            ));
        };
        let pointer = match self.0.services(call, opened) {
            Ok(p) => p,
            Err(hr) => return fail(plain(hr)),
        };
        let call_result = match self.0.optional_call_result(
            call,
            &result,
            CallResultObject {
                status: WBEM_S_NO_ERROR,
                object: None,
                text: None,
                namespace: Some(opened),
            },
        ) {
            Ok(p) => p,
            Err(hr) => return fail(plain(hr)),
        };
        Ok((
            That::default(),
            in_out(&working_namespace, Some(pointer)),
            in_out(&result, call_result),
            WBEM_S_NO_ERROR,
        ))
    }

    fn cancel_async_call(&self, call: &Call, _this: This, sink: Itf) -> CallResult<(That, u32)> {
        self.0.exporter.object::<ServicesObject>(call)?;
        Ok((
            That::default(),
            crate::asynchronous::cancel(&self.0, call, &sink),
        ))
    }

    fn query_object_sink(
        &self,
        call: &Call,
        _this: This,
        _flags: u32,
    ) -> CallResult<(That, Itf, u32)> {
        self.0.exporter.object::<ServicesObject>(call)?;
        Ok((That::default(), none(), WBEM_E_NOT_SUPPORTED))
    }

    fn get_object(
        &self,
        call: &Call,
        _this: This,
        path: Bstr,
        flags: u32,
        _context: Itf,
        object: ItfInOut,
        call_result: ItfInOut,
        _rest: IgnoredRest,
    ) -> CallResult<ObjectReply> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let path = bstr_text(&path);
        let fail = |(that, hr): (That, u32)| Ok((that, none_in_out(), none_in_out(), hr));
        let found = match self.0.get_object(services.namespace, &path) {
            Ok(o) => o,
            Err(refusal) => return fail(self.refuse("GetObject", refusal)),
        };
        if flags & FLAG_RETURN_IMMEDIATELY != 0 && call_result.get().is_none() {
            return fail(plain(WBEM_E_INVALID_PARAMETER));
        }
        Ok(self
            .0
            .object_answer(call, flags, &object, &call_result, found))
    }

    fn get_object_async(
        &self,
        call: &Call,
        _this: This,
        path: Bstr,
        _flags: u32,
        _context: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let (wbem, namespace, path) = (self.0.clone(), services.namespace, bstr_text(&path));
        let work = Work::Once(Box::new(move || {
            wbem.get_object(namespace, &path)
                .map(|o| Outcome::objects(vec![o]))
        }));
        self.start(call, "GetObjectAsync", namespace, &sink, work)
    }

    fn put_class(
        &self,
        call: &Call,
        _this: This,
        _object: Itf,
        _flags: u32,
        _context: Itf,
        _call_result: ItfInOut,
        _rest: IgnoredRest,
    ) -> CallResult<CallResultReply> {
        self.0.exporter.object::<ServicesObject>(call)?;
        // The classes are the metabase schema's: they change with
        // `inetsrv schema` or IMSAdminBaseW, not as WMI classes.
        Ok((That::default(), none_in_out(), WBEM_E_NOT_SUPPORTED))
    }

    fn put_class_async(
        &self,
        call: &Call,
        _this: This,
        _object: Itf,
        _flags: u32,
        _context: Itf,
        _sink: Itf,
    ) -> CallResult<(That, u32)> {
        self.0.exporter.object::<ServicesObject>(call)?;
        Ok((That::default(), WBEM_E_NOT_SUPPORTED))
    }

    fn delete_class(
        &self,
        call: &Call,
        _this: This,
        _class: Bstr,
        _flags: u32,
        _context: Itf,
        _call_result: ItfInOut,
        _rest: IgnoredRest,
    ) -> CallResult<CallResultReply> {
        self.0.exporter.object::<ServicesObject>(call)?;
        Ok((That::default(), none_in_out(), WBEM_E_NOT_SUPPORTED))
    }

    fn delete_class_async(
        &self,
        call: &Call,
        _this: This,
        _class: Bstr,
        _flags: u32,
        _context: Itf,
        _sink: Itf,
    ) -> CallResult<(That, u32)> {
        self.0.exporter.object::<ServicesObject>(call)?;
        Ok((That::default(), WBEM_E_NOT_SUPPORTED))
    }

    fn create_class_enum(
        &self,
        call: &Call,
        _this: This,
        superclass: Bstr,
        flags: u32,
        _context: Itf,
    ) -> CallResult<(That, Itf, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let superclass = bstr_text(&superclass);
        let found = self.0.class_enum(services.namespace, &superclass, flags);
        self.answer_enum(call, "CreateClassEnum", found, flags)
    }

    fn create_class_enum_async(
        &self,
        call: &Call,
        _this: This,
        superclass: Bstr,
        flags: u32,
        _context: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let (wbem, namespace, superclass) =
            (self.0.clone(), services.namespace, bstr_text(&superclass));
        let work = Work::Once(Box::new(move || {
            wbem.class_enum(namespace, &superclass, flags)
                .map(Outcome::objects)
        }));
        self.start(call, "CreateClassEnumAsync", namespace, &sink, work)
    }

    fn put_instance(
        &self,
        call: &Call,
        _this: This,
        instance: Itf,
        flags: u32,
        context: Itf,
        call_result: ItfInOut,
        _rest: IgnoredRest,
    ) -> CallResult<CallResultReply> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let fail = |(that, hr): (That, u32)| Ok((that, none_in_out(), hr));
        if flags & FLAG_RETURN_IMMEDIATELY != 0 && call_result.get().is_none() {
            return fail(plain(WBEM_E_INVALID_PARAMETER));
        }
        let (object, context) = match put_arguments(services.namespace, &instance, &context) {
            Ok(a) => a,
            Err(refusal) => return fail(self.refuse("PutInstance", refusal)),
        };
        let path = match self.0.put_instance(&object, flags, context.as_ref()) {
            Ok(p) => p,
            Err(refusal) => return fail(self.refuse("PutInstance", refusal)),
        };
        tracing::info!(user = ?call.client, path, "WMI PutInstance");
        let result = match self.0.optional_call_result(
            call,
            &call_result,
            CallResultObject {
                status: WBEM_S_NO_ERROR,
                object: None,
                text: Some(path),
                namespace: None,
            },
        ) {
            Ok(p) => p,
            Err(hr) => return fail(plain(hr)),
        };
        Ok((
            That::default(),
            in_out(&call_result, result),
            WBEM_S_NO_ERROR,
        ))
    }

    fn put_instance_async(
        &self,
        call: &Call,
        _this: This,
        instance: Itf,
        flags: u32,
        context: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let (object, context) = match put_arguments(services.namespace, &instance, &context) {
            Ok(a) => a,
            Err(refusal) => return Ok(self.refuse("PutInstanceAsync", refusal)),
        };
        let (wbem, user) = (self.0.clone(), call.client.clone());
        let work = Work::Once(Box::new(move || {
            let path = wbem.put_instance(&object, flags, context.as_ref())?;
            tracing::info!(?user, path, "WMI PutInstanceAsync");
            Ok(Outcome {
                objects: Vec::new(),
                status: WBEM_S_NO_ERROR,
                text: Some(path),
            })
        }));
        self.start(call, "PutInstanceAsync", services.namespace, &sink, work)
    }

    fn delete_instance(
        &self,
        call: &Call,
        _this: This,
        path: Bstr,
        flags: u32,
        _context: Itf,
        call_result: ItfInOut,
        _rest: IgnoredRest,
    ) -> CallResult<CallResultReply> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let fail = |(that, hr): (That, u32)| Ok((that, none_in_out(), hr));
        if flags & FLAG_RETURN_IMMEDIATELY != 0 && call_result.get().is_none() {
            return fail(plain(WBEM_E_INVALID_PARAMETER));
        }
        let local = match self
            .0
            .delete_instance(services.namespace, &bstr_text(&path))
        {
            Ok(l) => l,
            Err(refusal) => return fail(self.refuse("DeleteInstance", refusal)),
        };
        tracing::info!(user = ?call.client, path = local, "WMI DeleteInstance");
        let result = match self.0.optional_call_result(
            call,
            &call_result,
            CallResultObject {
                status: WBEM_S_NO_ERROR,
                object: None,
                text: None,
                namespace: None,
            },
        ) {
            Ok(p) => p,
            Err(hr) => return fail(plain(hr)),
        };
        Ok((
            That::default(),
            in_out(&call_result, result),
            WBEM_S_NO_ERROR,
        ))
    }

    fn delete_instance_async(
        &self,
        call: &Call,
        _this: This,
        path: Bstr,
        _flags: u32,
        _context: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let (wbem, namespace, path) = (self.0.clone(), services.namespace, bstr_text(&path));
        let user = call.client.clone();
        let work = Work::Once(Box::new(move || {
            let local = wbem.delete_instance(namespace, &path)?;
            tracing::info!(?user, path = local, "WMI DeleteInstanceAsync");
            Ok(Outcome::objects(Vec::new()))
        }));
        self.start(call, "DeleteInstanceAsync", namespace, &sink, work)
    }

    fn create_instance_enum(
        &self,
        call: &Call,
        _this: This,
        class: Bstr,
        flags: u32,
        _context: Itf,
    ) -> CallResult<(That, Itf, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let class = bstr_text(&class);
        let found = self.0.instance_enum(services.namespace, &class, flags);
        self.answer_enum(call, "CreateInstanceEnum", found, flags)
    }

    fn create_instance_enum_async(
        &self,
        call: &Call,
        _this: This,
        class: Bstr,
        flags: u32,
        _context: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let (wbem, namespace, class) = (self.0.clone(), services.namespace, bstr_text(&class));
        let work = Work::Once(Box::new(move || {
            wbem.instance_enum(namespace, &class, flags)
                .map(Outcome::objects)
        }));
        self.start(call, "CreateInstanceEnumAsync", namespace, &sink, work)
    }

    fn exec_query(
        &self,
        call: &Call,
        _this: This,
        language: Bstr,
        query: Bstr,
        flags: u32,
        _context: Itf,
    ) -> CallResult<(That, Itf, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        if let Err(refusal) = wql(&language) {
            let (that, hr) = self.refuse("ExecQuery", refusal);
            return Ok((that, none(), hr));
        }
        let text = bstr_text(&query);
        let found = self.0.query(services.namespace, &text, flags);
        self.answer_enum(call, "ExecQuery", found, flags)
    }

    fn exec_query_async(
        &self,
        call: &Call,
        _this: This,
        language: Bstr,
        query: Bstr,
        flags: u32,
        _context: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        if let Err(refusal) = wql(&language) {
            return Ok(self.refuse("ExecQueryAsync", refusal));
        }
        let (wbem, namespace, text) = (self.0.clone(), services.namespace, bstr_text(&query));
        let work = Work::Once(Box::new(move || {
            wbem.query(namespace, &text, flags).map(Outcome::objects)
        }));
        self.start(call, "ExecQueryAsync", namespace, &sink, work)
    }

    fn exec_notification_query(
        &self,
        call: &Call,
        _this: This,
        language: Bstr,
        query: Bstr,
        _flags: u32,
        _context: Itf,
    ) -> CallResult<(That, Itf, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let fail = |(that, hr): (That, u32)| Ok((that, none(), hr));
        let text = bstr_text(&query);
        let feed = match self.0.event_feed(services.namespace, &language, &text) {
            Ok(f) => f,
            Err(refusal) => return fail(self.refuse("ExecNotificationQuery", refusal)),
        };
        tracing::info!(user = ?call.client, query = text, "WMI: event subscription");
        match self.0.export_enum(call, EnumObject::Events(feed)) {
            Ok(p) => Ok((That::default(), Unique::new(Some(p)), WBEM_S_NO_ERROR)),
            Err(hr) => fail(plain(hr)),
        }
    }

    fn exec_notification_query_async(
        &self,
        call: &Call,
        _this: This,
        language: Bstr,
        query: Bstr,
        _flags: u32,
        _context: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let text = bstr_text(&query);
        let feed = match self.0.event_feed(services.namespace, &language, &text) {
            Ok(f) => f,
            Err(refusal) => return Ok(self.refuse("ExecNotificationQueryAsync", refusal)),
        };
        let hr = self.start(
            call,
            "ExecNotificationQueryAsync",
            services.namespace,
            &sink,
            Work::Events(feed),
        )?;
        if hr.1 == WBEM_S_NO_ERROR {
            tracing::info!(user = ?call.client, query = text, "WMI: event subscription (asynchronous)");
        }
        Ok(hr)
    }

    fn exec_method(
        &self,
        call: &Call,
        _this: This,
        path: Bstr,
        method: Bstr,
        flags: u32,
        _context: Itf,
        in_params: Itf,
        out_params: ItfInOut,
        call_result: ItfInOut,
        _rest: IgnoredRest,
    ) -> CallResult<ObjectReply> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let fail = |(that, hr): (That, u32)| Ok((that, none_in_out(), none_in_out(), hr));
        if flags & FLAG_RETURN_IMMEDIATELY != 0 && call_result.get().is_none() {
            return fail(plain(WBEM_E_INVALID_PARAMETER));
        }
        let path = bstr_text(&path);
        let method = bstr_text(&method);
        let input = match optional_object(&in_params) {
            Ok(o) => o,
            Err(refusal) => return fail(self.refuse("ExecMethod", refusal)),
        };
        let output = match self
            .0
            .exec_method(services.namespace, &path, &method, input.as_ref())
        {
            Ok(o) => o,
            Err(refusal) => return fail(self.refuse("ExecMethod", refusal)),
        };
        tracing::info!(user = ?call.client, path, method, "WMI ExecMethod");
        Ok(self
            .0
            .object_answer(call, flags, &out_params, &call_result, output))
    }

    fn exec_method_async(
        &self,
        call: &Call,
        _this: This,
        path: Bstr,
        method: Bstr,
        _flags: u32,
        _context: Itf,
        in_params: Itf,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let services = self.0.exporter.object::<ServicesObject>(call)?;
        let input = match optional_object(&in_params) {
            Ok(o) => o,
            Err(refusal) => return Ok(self.refuse("ExecMethodAsync", refusal)),
        };
        let (wbem, namespace) = (self.0.clone(), services.namespace);
        let (path, method, user) = (bstr_text(&path), bstr_text(&method), call.client.clone());
        let work = Work::Once(Box::new(move || {
            let output = wbem.exec_method(namespace, &path, &method, input.as_ref())?;
            tracing::info!(?user, path, method, "WMI ExecMethodAsync");
            Ok(Outcome::objects(vec![output]))
        }));
        self.start(call, "ExecMethodAsync", namespace, &sink, work)
    }
}

impl WbemService {
    /// Starts an asynchronous operation (see [`crate::asynchronous`]).
    fn start(
        &self,
        call: &Call<'_>,
        what: &'static str,
        namespace: Namespace,
        sink: &Itf,
        work: Work,
    ) -> CallResult<(That, u32)> {
        Ok((
            That::default(),
            crate::asynchronous::start(&self.0, call, what, namespace, sink, work),
        ))
    }

    /// An enumerator over what a call found, or its refusal.
    fn answer_enum(
        &self,
        call: &Call<'_>,
        what: &str,
        found: Result<Vec<Object>, Refusal>,
        flags: u32,
    ) -> CallResult<(That, Itf, u32)> {
        let objects = match found {
            Ok(objects) => objects,
            Err(refusal) => {
                let (that, hr) = self.refuse(what, refusal);
                return Ok((that, none(), hr));
            }
        };
        match self.0.enumerator(call, objects, flags) {
            Ok(p) => Ok((That::default(), Unique::new(Some(p)), WBEM_S_NO_ERROR)),
            Err(hr) => Ok((That::default(), none(), hr)),
        }
    }
}

impl EnumWbemClassObject for WbemService {
    fn reset(&self, call: &Call, _this: This) -> CallResult<(That, u32)> {
        let e = self.0.exporter.object::<EnumObject>(call)?;
        match &*e {
            EnumObject::Results(r) if !r.forward_only => {
                *r.position() = 0;
                Ok((That::default(), WBEM_S_NO_ERROR))
            }
            _ => Ok((That::default(), WBEM_E_INVALID_OPERATION)),
        }
    }

    fn next(
        &self,
        call: &Call,
        _this: This,
        timeout: u32,
        count: u32,
    ) -> CallResult<(That, ConformantVaryingArray<Itf>, u32, u32)> {
        let e = self.0.exporter.object::<EnumObject>(call)?;
        let alive = || self.0.exporter.oid_of_call(call).is_some();
        let (batch, status) = e.take(&self.0, count, timeout, &alive);
        let n = batch.len() as u32;
        let items: Vec<Itf> = batch
            .iter()
            .map(|o| Unique::new(Some(object_pointer(o))))
            .collect();
        Ok((
            That::default(),
            ConformantVaryingArray {
                max: (count as usize).max(items.len()),
                items,
            },
            n,
            status,
        ))
    }

    fn next_async(
        &self,
        call: &Call,
        _this: This,
        count: u32,
        sink: Itf,
    ) -> CallResult<(That, u32)> {
        let e = self.0.exporter.object::<EnumObject>(call)?;
        if count == 0 {
            return Ok((That::default(), WBEM_S_FALSE));
        }
        let wbem = self.0.clone();
        let work = Work::Once(Box::new(move || {
            // The objects there are, or (events) as many as happen before
            // the longest wait.
            let (objects, status) = e.take(&wbem, count, INFINITE, &|| true);
            if status & 0x8000_0000 != 0 {
                return Err((status, "the enumeration failed".into()));
            }
            Ok(Outcome {
                objects,
                status,
                text: None,
            })
        }));
        // The decoration of the error object only: the enumerator's
        // objects carry their own.
        self.start(call, "NextAsync", Namespace::Iis, &sink, work)
    }

    fn clone_enum(&self, call: &Call, _this: This) -> CallResult<(That, Itf, u32)> {
        let e = self.0.exporter.object::<EnumObject>(call)?;
        let EnumObject::Results(r) = &*e else {
            return Ok((That::default(), none(), WBEM_E_INVALID_OPERATION));
        };
        if r.forward_only {
            return Ok((That::default(), none(), WBEM_E_INVALID_OPERATION));
        }
        let copy = Arc::new(Results {
            objects: r.objects.clone(),
            position: Mutex::new(*r.position()),
            forward_only: false,
        });
        match self.0.export_enum(call, EnumObject::Results(copy)) {
            Ok(p) => Ok((That::default(), Unique::new(Some(p)), WBEM_S_NO_ERROR)),
            Err(hr) => Ok((That::default(), none(), hr)),
        }
    }

    fn skip(&self, call: &Call, _this: This, timeout: u32, count: u32) -> CallResult<(That, u32)> {
        let e = self.0.exporter.object::<EnumObject>(call)?;
        let alive = || self.0.exporter.oid_of_call(call).is_some();
        let (_, status) = e.take(&self.0, count, timeout, &alive);
        Ok((That::default(), status))
    }
}

impl WbemFetchSmartEnum for WbemService {
    fn get_smart_enum(
        &self,
        call: &Call,
        _this: This,
        _rest: IgnoredRest,
    ) -> CallResult<(That, Itf, u32)> {
        let e = self.0.exporter.object::<EnumObject>(call)?;
        let smart = SmartEnumObject {
            source: (*e).clone(),
            encoder: Mutex::new(wmio::ObjectArrayEncoder::new(Uuid::random().to_le_bytes())),
        };
        match self.0.export(
            call,
            Arc::new(smart),
            vec![IID_IWBEM_WCO_SMART_ENUM],
            "IWbemWCOSmartEnum",
            IID_IWBEM_WCO_SMART_ENUM,
        ) {
            Ok(p) => Ok((That::default(), Unique::new(Some(p)), WBEM_S_NO_ERROR)),
            Err(hr) => Ok((That::default(), none(), hr)),
        }
    }
}

impl WbemWcoSmartEnum for WbemService {
    fn next(
        &self,
        call: &Call,
        _this: This,
        _proxy: Uuid,
        timeout: u32,
        count: u32,
    ) -> CallResult<SmartNextReply> {
        let smart = self.0.exporter.object::<SmartEnumObject>(call)?;
        let alive = || self.0.exporter.oid_of_call(call).is_some();
        let (batch, status) = smart.source.take(&self.0, count, timeout, &alive);
        let n = batch.len();
        let buffer = smart
            .encoder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .encode(&batch, wmio::object_array::PACKET_SMART_ENUM);
        Ok((
            That::default(),
            n as u32,
            buffer.len() as u32,
            Unique::new(Some(ConformantArray(buffer))),
            status,
        ))
    }
}

impl WbemCallResult for WbemService {
    fn get_result_object(
        &self,
        call: &Call,
        _this: This,
        _timeout: u32,
    ) -> CallResult<(That, Itf, u32)> {
        let r = self.0.exporter.object::<CallResultObject>(call)?;
        if r.status != WBEM_S_NO_ERROR {
            return Ok((That::default(), none(), r.status));
        }
        match &r.object {
            Some(o) => Ok((
                That::default(),
                Unique::new(Some(object_pointer(o))),
                WBEM_S_NO_ERROR,
            )),
            None => Ok((That::default(), none(), WBEM_E_INVALID_OPERATION)),
        }
    }

    fn get_result_string(
        &self,
        call: &Call,
        _this: This,
        _timeout: u32,
    ) -> CallResult<(That, Bstr, u32)> {
        let r = self.0.exporter.object::<CallResultObject>(call)?;
        if r.status != WBEM_S_NO_ERROR {
            return Ok((That::default(), Unique::new(None), r.status));
        }
        match &r.text {
            Some(t) => Ok((That::default(), bstr(t), WBEM_S_NO_ERROR)),
            None => Ok((That::default(), Unique::new(None), WBEM_E_INVALID_OPERATION)),
        }
    }

    fn get_result_services(
        &self,
        call: &Call,
        _this: This,
        _timeout: u32,
    ) -> CallResult<(That, Itf, u32)> {
        let r = self.0.exporter.object::<CallResultObject>(call)?;
        let Some(namespace) = r.namespace else {
            return Ok((That::default(), none(), WBEM_E_INVALID_OPERATION));
        };
        match self.0.services(call, namespace) {
            Ok(p) => Ok((That::default(), Unique::new(Some(p)), WBEM_S_NO_ERROR)),
            Err(hr) => Ok((That::default(), none(), hr)),
        }
    }

    fn get_call_status(
        &self,
        call: &Call,
        _this: This,
        _timeout: u32,
    ) -> CallResult<(That, u32, u32)> {
        let r = self.0.exporter.object::<CallResultObject>(call)?;
        Ok((That::default(), r.status, WBEM_S_NO_ERROR))
    }
}

/// Registers the WMI service: the login class with the exporter, the
/// interfaces with the server (at `level`, the least the ORPC interfaces
/// take).
pub fn serve(server: &msrpc::server::Server, wbem: Arc<Wbem>, level: u8) {
    wbem.exporter
        .register_class(CLSID_WBEM_LEVEL1_LOGIN, Arc::new(LoginClass(wbem.clone())));
    let service = || WbemService(wbem.clone());
    server.register(WbemLevel1LoginServer(service()), level, false);
    server.register(WbemServicesServer(service()), level, false);
    server.register(EnumWbemClassObjectServer(service()), level, false);
    server.register(WbemFetchSmartEnumServer(service()), level, false);
    server.register(WbemWcoSmartEnumServer(service()), level, false);
    server.register(WbemCallResultServer(service()), level, false);
}
