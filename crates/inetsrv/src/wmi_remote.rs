//! `inetsrv query --server HOST` and `inetsrv wmi … --server HOST`: the IIS
//! WMI provider of another server through MS-WMI, as any WMI client
//! reaches it: WbemLevel1Login activated over DCOM, NTLMLogin to
//! `root\MicrosoftIISv2`, then ExecQuery with the smart enumerator,
//! GetObject, PutInstance, DeleteInstance, ExecMethod and
//! ExecNotificationQuery, objects in [MS-WMIO]. Output is the local verbs'.
//!
//! With `--async` the calls are the asynchronous ones (ExecQueryAsync,
//! GetObjectAsync, …, ExecNotificationQueryAsync): the command serves an
//! IWbemObjectSink on the address the server knows it by, and the server
//! calls it back with the results and the final status, as it calls
//! Windows' unsecapp.

use anyhow::{anyhow, bail, Context, Result};
use dcom::client::Remote;
use dcom::types::{bstr, MInterfacePointer};
use msrpc::client::Connection;
use msrpc::ndr::{Unique, WString};
use wbem::asynchronous::{Sink, SinkEvent, SinkHost};
use wbem::interfaces::*;
use wbem::service::{object_of, object_pointer};
use wbem::status::*;
use wmi::value::EmbeddedObject;
use wmi::WmiValue;
use wmio::{Body, CimType, ClassDef, Object, Slot, Value};

use crate::mb_cmd::this;
use crate::rpc_cmd::Target;
use crate::wmi_cmd::{Request, WmiCommand};
use crate::Cli;

/// WBEM_FLAG_RETURN_IMMEDIATELY | WBEM_FLAG_FORWARD_ONLY: how scripts
/// query.
const SEMISYNC_FORWARD: u32 = 0x30;
const INFINITE: u32 = u32::MAX;
/// Objects asked of the smart enumerator at a time.
const BATCH: u32 = 1000;

/// A WBEM status in words.
fn status_name(hr: u32) -> String {
    let name = match hr {
        WBEM_E_FAILED => "WBEM_E_FAILED",
        WBEM_E_NOT_FOUND => "WBEM_E_NOT_FOUND",
        WBEM_E_ACCESS_DENIED => "WBEM_E_ACCESS_DENIED",
        WBEM_E_INVALID_PARAMETER => "WBEM_E_INVALID_PARAMETER",
        WBEM_E_NOT_SUPPORTED => "WBEM_E_NOT_SUPPORTED",
        WBEM_E_INVALID_NAMESPACE => "WBEM_E_INVALID_NAMESPACE",
        WBEM_E_INVALID_OBJECT => "WBEM_E_INVALID_OBJECT",
        WBEM_E_INVALID_CLASS => "WBEM_E_INVALID_CLASS",
        WBEM_E_INVALID_OPERATION => "WBEM_E_INVALID_OPERATION",
        WBEM_E_INVALID_QUERY => "WBEM_E_INVALID_QUERY",
        WBEM_E_INVALID_QUERY_TYPE => "WBEM_E_INVALID_QUERY_TYPE",
        WBEM_E_ALREADY_EXISTS => "WBEM_E_ALREADY_EXISTS",
        WBEM_E_TYPE_MISMATCH => "WBEM_E_TYPE_MISMATCH",
        WBEM_E_CALL_CANCELLED => "WBEM_E_CALL_CANCELLED",
        WBEM_E_SHUTTING_DOWN => "WBEM_E_SHUTTING_DOWN",
        WBEM_E_QUOTA_VIOLATION => "WBEM_E_QUOTA_VIOLATION",
        0x8004_102e => "WBEM_E_INVALID_METHOD",
        0x8004_1031 => "WBEM_E_INVALID_PROPERTY",
        0x8004_103a => "WBEM_E_INVALID_OBJECT_PATH",
        0x8007_0005 => "E_ACCESSDENIED",
        _ => "",
    };
    if name.is_empty() {
        format!("{hr:#010x}")
    } else {
        format!("{name} ({hr:#010x})")
    }
}

/// Like [`check`], with the words of the error information the answer
/// carries ([MS-DCOM] 2.2.21), when it does.
fn check_that(that: &dcom::types::OrpcThat, hr: u32, what: &str) -> Result<()> {
    if hr == WBEM_S_NO_ERROR {
        return Ok(());
    }
    match dcom::errorinfo::ErrorInfo::of_that(that).and_then(|i| i.description) {
        Some(why) => bail!("{what}: the server answered {}: {why}", status_name(hr)),
        None => check(hr, what),
    }
}

fn check(hr: u32, what: &str) -> Result<()> {
    if hr == WBEM_S_NO_ERROR {
        Ok(())
    } else {
        bail!("{what}: the server answered {}", status_name(hr))
    }
}

/// One logon to the server's `root\MicrosoftIISv2`, and the interface
/// pointers it holds (released at the end).
struct Session {
    conn: Connection,
    rem_unknown: msrpc::Uuid,
    services: Remote,
    held: Vec<Remote>,
    /// With `--async`: where the server calls the results back.
    sinks: Option<SinkHost>,
}

/// How long an asynchronous call may take to report its final status
/// (a method waits for the activation service up to two minutes).
const ASYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// An asynchronous call of IWbemServices.
enum AsyncCall<'a> {
    Query(&'a str),
    Events(&'a str),
    GetObject(&'a str),
    Classes,
    Put(&'a Object),
    Delete(&'a str),
    Method {
        path: &'a str,
        method: &'a str,
        input: Option<&'a Object>,
    },
}

impl AsyncCall<'_> {
    fn name(&self) -> String {
        match self {
            AsyncCall::Query(_) => "ExecQueryAsync".into(),
            AsyncCall::Events(_) => "ExecNotificationQueryAsync".into(),
            AsyncCall::GetObject(path) => format!("GetObjectAsync {path}"),
            AsyncCall::Classes => "CreateClassEnumAsync".into(),
            AsyncCall::Put(o) => format!("PutInstanceAsync of {}", o.class_name()),
            AsyncCall::Delete(path) => format!("DeleteInstanceAsync {path}"),
            AsyncCall::Method { path, method, .. } => {
                format!("{method} on {path} (ExecMethodAsync)")
            }
        }
    }
}

/// What an asynchronous call delivered: its objects and result string.
struct Delivered {
    objects: Vec<Object>,
    text: Option<String>,
}

/// A failure's final status, with the error object's description.
fn async_failure(what: &str, status: u32, error: Option<&Object>) -> anyhow::Error {
    let description = error.and_then(|o| match &o.body {
        Body::Instance(i) => i
            .get("Description")
            .and_then(Value::as_str)
            .map(str::to_string),
        Body::Class { .. } => None,
    });
    match description {
        Some(d) => anyhow!("{what}: the server answered {}: {d}", status_name(status)),
        None => anyhow!("{what}: the server answered {}", status_name(status)),
    }
}

impl Session {
    async fn open(mut conn: Connection) -> Result<Session> {
        let login = dcom::client::create_instance(
            &mut conn,
            wbem::CLSID_WBEM_LEVEL1_LOGIN,
            wbem::IID_IWBEM_LEVEL1_LOGIN,
        )
        .await
        .context("cannot activate WbemLevel1Login (WMI) on the server")?;
        let mut client = WbemLevel1LoginClient::bind(&mut conn)
            .await?
            .on_object(login.ipid);
        let (_, services, hr) = client
            .ntlm_login(
                this(),
                Unique::new(Some(WString("//./root/MicrosoftIISv2".into()))),
                Unique::new(None),
                0,
                Unique::new(None),
            )
            .await?;
        let services = services.get().cloned();
        let _ = dcom::client::release(&mut conn, &login).await;
        check(hr, "NTLMLogin to root\\MicrosoftIISv2")?;
        let pointer = services.ok_or_else(|| anyhow!("NTLMLogin returned no IWbemServices"))?;
        let services = dcom::client::remote_of(&pointer, login.rem_unknown)?;
        Ok(Session {
            conn,
            rem_unknown: login.rem_unknown,
            held: vec![services.clone()],
            services,
            sinks: None,
        })
    }

    /// Serves sinks from now on: the calls below go asynchronously.
    async fn serve_sinks(&mut self) -> Result<()> {
        // Where the server can call back: the address this end of the
        // connection has (loopback over the local socket).
        let ip = self
            .conn
            .local_addr()
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let host = SinkHost::start(ip)
            .await
            .with_context(|| format!("cannot serve an IWbemObjectSink on {ip}"))?;
        self.sinks = Some(host);
        Ok(())
    }

    /// Starts an asynchronous call with a new sink: the sink, whose events
    /// follow.
    async fn start_async(&mut self, call: &AsyncCall<'_>) -> Result<Sink> {
        let what = call.name();
        let host = self.sinks.as_ref().expect("serve_sinks first");
        let sink = host
            .sink()
            .map_err(|hr| anyhow!("cannot marshal the sink: {hr:#010x}"))?;
        let handler = || Unique::new(Some(sink.pointer.clone()));
        let none = || Unique::new(None);
        let mut services = self.services().await?;
        let (that, hr) = match call {
            AsyncCall::Query(text) => {
                services
                    .exec_query_async(this(), bstr("WQL"), bstr(text), 0, none(), handler())
                    .await?
            }
            AsyncCall::Events(text) => {
                services
                    .exec_notification_query_async(
                        this(),
                        bstr("WQL"),
                        bstr(text),
                        0,
                        none(),
                        handler(),
                    )
                    .await?
            }
            AsyncCall::GetObject(path) => {
                services
                    .get_object_async(this(), bstr(path), 0, none(), handler())
                    .await?
            }
            AsyncCall::Classes => {
                services
                    .create_class_enum_async(this(), bstr(""), 0, none(), handler())
                    .await?
            }
            AsyncCall::Put(object) => {
                services
                    .put_instance_async(
                        this(),
                        Unique::new(Some(object_pointer(object))),
                        0,
                        none(),
                        handler(),
                    )
                    .await?
            }
            AsyncCall::Delete(path) => {
                services
                    .delete_instance_async(this(), bstr(path), 0, none(), handler())
                    .await?
            }
            AsyncCall::Method {
                path,
                method,
                input,
            } => {
                services
                    .exec_method_async(
                        this(),
                        bstr(path),
                        bstr(method),
                        0,
                        none(),
                        Unique::new(input.map(object_pointer)),
                        handler(),
                    )
                    .await?
            }
        };
        check_that(&that, hr, &what)?;
        Ok(sink)
    }

    /// An asynchronous call to its final status.
    async fn call_async(&mut self, call: AsyncCall<'_>) -> Result<Delivered> {
        let what = call.name();
        let mut sink = self.start_async(&call).await?;
        let mut objects = Vec::new();
        let deadline = tokio::time::Instant::now() + ASYNC_TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, sink.events.recv())
                .await
                .map_err(|_| {
                    anyhow!("{what}: no final status from the server in {ASYNC_TIMEOUT:?}")
                })?;
            match event {
                Some(SinkEvent::Objects(batch)) => objects.extend(batch),
                Some(SinkEvent::Status {
                    flags: WBEM_STATUS_COMPLETE,
                    status,
                    text,
                    error,
                }) => {
                    if status & 0x8000_0000 != 0 {
                        return Err(async_failure(&what, status, error.as_deref()));
                    }
                    return Ok(Delivered { objects, text });
                }
                // Progress.
                Some(SinkEvent::Status { .. }) => {}
                None => bail!("{what}: the sink closed"),
            }
        }
    }

    fn remote(&mut self, pointer: Option<&MInterfacePointer>, what: &str) -> Result<Remote> {
        let pointer = pointer.ok_or_else(|| anyhow!("{what} returned no interface"))?;
        let remote = dcom::client::remote_of(pointer, self.rem_unknown)?;
        self.held.push(remote.clone());
        Ok(remote)
    }

    async fn close(mut self) {
        for remote in self.held.drain(..).rev() {
            let _ = dcom::client::release(&mut self.conn, &remote).await;
        }
    }

    async fn services(&mut self) -> Result<WbemServicesClient<'_>> {
        Ok(WbemServicesClient::bind(&mut self.conn)
            .await?
            .on_object(self.services.ipid))
    }

    /// ExecQuery or (`events`) ExecNotificationQuery: the enumerator.
    async fn exec(&mut self, text: &str, events: bool) -> Result<Remote> {
        let mut services = self.services().await?;
        let (what, (that, enumerator, hr)) = if events {
            let answer = services
                .exec_notification_query(
                    this(),
                    bstr("WQL"),
                    bstr(text),
                    SEMISYNC_FORWARD,
                    Unique::new(None),
                )
                .await?;
            ("ExecNotificationQuery", answer)
        } else {
            let answer = services
                .exec_query(
                    this(),
                    bstr("WQL"),
                    bstr(text),
                    SEMISYNC_FORWARD,
                    Unique::new(None),
                )
                .await?;
            ("ExecQuery", answer)
        };
        check_that(&that, hr, what)?;
        self.remote(enumerator.get(), what)
    }

    /// ExecQuery, its objects read through the smart enumerator (or
    /// ExecQueryAsync).
    async fn query(&mut self, text: &str) -> Result<Vec<Object>> {
        if self.sinks.is_some() {
            return Ok(self.call_async(AsyncCall::Query(text)).await?.objects);
        }
        let enumerator = self.exec(text, false).await?;
        let fetch = dcom::client::query_interface(
            &mut self.conn,
            &enumerator,
            wbem::IID_IWBEM_FETCH_SMART_ENUM,
        )
        .await
        .context("the enumerator has no IWbemFetchSmartEnum")?;
        self.held.push(fetch.clone());
        let (_, smart, hr) = WbemFetchSmartEnumClient::bind(&mut self.conn)
            .await?
            .on_object(fetch.ipid)
            .get_smart_enum(this(), msrpc::ndr::IgnoredRest)
            .await?;
        check(hr, "GetSmartEnum")?;
        let smart = self.remote(smart.get(), "GetSmartEnum")?;
        let proxy = msrpc::Uuid::random();
        let mut decoder = wmio::ObjectArrayDecoder::default();
        let mut objects = Vec::new();
        loop {
            let (_, returned, _, buffer, hr) = WbemWcoSmartEnumClient::bind(&mut self.conn)
                .await?
                .on_object(smart.ipid)
                .next(this(), proxy, INFINITE, BATCH)
                .await?;
            if hr != WBEM_S_NO_ERROR && hr != WBEM_S_FALSE {
                check(hr, "IWbemWCOSmartEnum::Next")?;
            }
            if returned > 0 {
                let data = buffer.get().map(|b| b.0.as_slice()).unwrap_or_default();
                objects.extend(
                    decoder
                        .decode(data)
                        .context("the server's ObjectArray does not decode")?,
                );
            }
            if hr == WBEM_S_FALSE || returned == 0 {
                return Ok(objects);
            }
        }
    }

    async fn get_object(&mut self, path: &str) -> Result<Object> {
        if self.sinks.is_some() {
            let mut delivered = self.call_async(AsyncCall::GetObject(path)).await?;
            return delivered
                .objects
                .pop()
                .ok_or_else(|| anyhow!("GetObjectAsync {path}: no object came"));
        }
        let (that, object, _, hr) = self
            .services()
            .await?
            .get_object(
                this(),
                bstr(path),
                0,
                Unique::new(None),
                Unique::new(Some(Unique::new(None))),
                Unique::new(None),
                msrpc::ndr::IgnoredRest,
            )
            .await?;
        check_that(&that, hr, &format!("GetObject {path}"))?;
        let pointer = object.get().and_then(|p| p.get()).cloned();
        object_of(&Unique::new(pointer))
            .map_err(|(hr, why)| anyhow!("GetObject {path}: {} ({why})", status_name(hr)))
    }

    /// Every class of the namespace (CreateClassEnum, deep).
    async fn classes(&mut self) -> Result<Vec<Object>> {
        if self.sinks.is_some() {
            return Ok(self.call_async(AsyncCall::Classes).await?.objects);
        }
        let (that, enumerator, hr) = self
            .services()
            .await?
            .create_class_enum(this(), bstr(""), 0x20, Unique::new(None))
            .await?;
        check_that(&that, hr, "CreateClassEnum")?;
        let enumerator = self.remote(enumerator.get(), "CreateClassEnum")?;
        let mut objects = Vec::new();
        loop {
            let (_, batch, returned, hr) = EnumWbemClassObjectClient::bind(&mut self.conn)
                .await?
                .on_object(enumerator.ipid)
                .next(this(), INFINITE, BATCH)
                .await?;
            if hr != WBEM_S_NO_ERROR && hr != WBEM_S_FALSE {
                check(hr, "IEnumWbemClassObject::Next")?;
            }
            for pointer in batch.items.iter().take(returned as usize) {
                objects.push(object_of(pointer).map_err(|(hr, why)| {
                    anyhow!("a class from the server: {} ({why})", status_name(hr))
                })?);
            }
            if hr == WBEM_S_FALSE || returned == 0 {
                return Ok(objects);
            }
        }
    }

    async fn class(&mut self, name: &str) -> Result<ClassDef> {
        match self.get_object(name).await?.body {
            Body::Class { current, .. } => Ok(current),
            Body::Instance(_) => bail!("{name} is an instance, not a class"),
        }
    }

    /// PutInstance: the new or changed instance's path.
    async fn put_instance(&mut self, object: &Object) -> Result<String> {
        let class = object.class_name().to_string();
        if self.sinks.is_some() {
            let delivered = self.call_async(AsyncCall::Put(object)).await?;
            return Ok(delivered.text.unwrap_or_default());
        }
        let (that, result, hr) = self
            .services()
            .await?
            .put_instance(
                this(),
                Unique::new(Some(object_pointer(object))),
                0,
                Unique::new(None),
                Unique::new(Some(Unique::new(None))),
                msrpc::ndr::IgnoredRest,
            )
            .await?;
        check_that(&that, hr, &format!("PutInstance of {class}"))?;
        let pointer = result.get().and_then(|p| p.get()).cloned();
        let result = self.remote(pointer.as_ref(), "PutInstance")?;
        let (_, path, hr) = WbemCallResultClient::bind(&mut self.conn)
            .await?
            .on_object(result.ipid)
            .get_result_string(this(), INFINITE)
            .await?;
        check(hr, "IWbemCallResult::GetResultString")?;
        Ok(dcom::types::bstr_text(&path))
    }

    async fn delete_instance(&mut self, path: &str) -> Result<()> {
        if self.sinks.is_some() {
            self.call_async(AsyncCall::Delete(path)).await?;
            return Ok(());
        }
        let (that, _, hr) = self
            .services()
            .await?
            .delete_instance(
                this(),
                bstr(path),
                0,
                Unique::new(None),
                Unique::new(None),
                msrpc::ndr::IgnoredRest,
            )
            .await?;
        check_that(&that, hr, &format!("DeleteInstance {path}"))
    }

    /// ExecMethod: the output parameters, if the method has any.
    async fn exec_method(
        &mut self,
        path: &str,
        method: &str,
        input: Option<&Object>,
    ) -> Result<Option<Object>> {
        if self.sinks.is_some() {
            let call = AsyncCall::Method {
                path,
                method,
                input,
            };
            return Ok(self.call_async(call).await?.objects.pop());
        }
        let (that, output, _, hr) = self
            .services()
            .await?
            .exec_method(
                this(),
                bstr(path),
                bstr(method),
                0,
                Unique::new(None),
                Unique::new(input.map(object_pointer)),
                Unique::new(Some(Unique::new(None))),
                Unique::new(None),
                msrpc::ndr::IgnoredRest,
            )
            .await?;
        check_that(&that, hr, &format!("{method} on {path}"))?;
        let pointer = output.get().and_then(|p| p.get()).cloned();
        Ok(object_of(&Unique::new(pointer)).ok())
    }
}

/// Runs a query or wmi verb on the server `target` names.
pub fn run(cli: &Cli, target: &Target, asynchronous: bool, request: Request<'_>) -> Result<()> {
    crate::rpc_cmd::run_connected(cli, target, async |conn, _| {
        let mut session = Session::open(conn).await?;
        if asynchronous {
            session.serve_sinks().await?;
        }
        let mut out = String::new();
        let done = execute(&mut session, &mut out, cli, request).await;
        print!("{out}");
        session.close().await;
        done
    })
}

async fn execute(
    session: &mut Session,
    out: &mut String,
    cli: &Cli,
    request: Request<'_>,
) -> Result<()> {
    match request {
        Request::Query(text) => {
            // The columns as the query names them, for the table.
            let columns = match wmi::wql::parse_statement(text) {
                Ok(wmi::wql::Statement::Select(q)) => q
                    .properties
                    .map(|list| list.into_iter().map(|n| n.text).collect::<Vec<_>>()),
                Ok(_) => None,
                Err(e) => return Err(crate::wmi_cmd::with_caret(e, text)),
            };
            let instances: Vec<wmi::Instance> = session
                .query(text)
                .await?
                .iter()
                .filter_map(instance_of)
                .collect();
            if cli.json {
                let rows: Vec<_> = instances.iter().map(|i| i.to_json()).collect();
                *out = serde_json::to_string_pretty(&rows)? + "\n";
                return Ok(());
            }
            match &columns {
                Some(_) if instances.is_empty() => {}
                Some(columns) => crate::wmi_cmd::table(out, columns, &instances),
                None => {
                    for (i, inst) in instances.iter().enumerate() {
                        if i > 0 {
                            out.push('\n');
                        }
                        crate::wmi_cmd::block(out, inst);
                    }
                }
            }
            if instances.is_empty() {
                out.push_str("(no instances)\n");
            }
        }
        Request::Wmi(WmiCommand::Get { path }) => {
            let object = session.get_object(path).await?;
            let instance = instance_of(&object)
                .ok_or_else(|| anyhow!("{path} is a class; `wmi classes --schema` shows one"))?;
            if cli.json {
                *out = serde_json::to_string_pretty(&instance.to_json())? + "\n";
            } else {
                crate::wmi_cmd::block(out, &instance);
            }
        }
        Request::Wmi(WmiCommand::Put { class, properties }) => {
            let props = crate::wmi_cmd::pairs(properties)?;
            let def = session.class(class).await?;
            let object = build_instance(session, &def, &props).await?;
            let path = session.put_instance(&object).await?;
            out.push_str(&path);
            out.push('\n');
        }
        Request::Wmi(WmiCommand::Delete { path }) => {
            session.delete_instance(path).await?;
            out.push_str(&format!("deleted {path}\n"));
        }
        Request::Wmi(WmiCommand::Call { path, method, args }) => {
            let class_name = wmi::path::ObjectPath::parse(path)?.class;
            let def = session.class(&class_name).await?;
            let signature = def
                .methods
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(method))
                .ok_or_else(|| {
                    let names: Vec<_> = def.methods.iter().map(|m| m.name.as_str()).collect();
                    anyhow!(
                        "{class_name} has no method {method} (it has {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )
                })?
                .clone();
            let input = match &signature.input {
                Some(params) => {
                    let args = crate::wmi_cmd::pairs(args)?;
                    Some(build_instance(session, params, &args).await?)
                }
                None if !args.is_empty() => bail!("{method} takes no arguments"),
                None => None,
            };
            let params = session
                .exec_method(path, &signature.name, input.as_ref())
                .await?
                .and_then(|object| instance_of(&object))
                .map(|i| i.properties)
                .unwrap_or_default();
            crate::wmi_cmd::show_params(out, cli, &params)?;
        }
        Request::Wmi(WmiCommand::Watch {
            query,
            count,
            timeout,
        }) => watch(session, cli, query, *count, *timeout).await?,
        Request::Wmi(WmiCommand::Classes { schema: None }) => {
            let rows = session
                .classes()
                .await?
                .iter()
                .filter_map(|o| match &o.body {
                    Body::Class { current, .. } => Some((
                        current.name().to_string(),
                        current.derivation.first().cloned().unwrap_or_default(),
                        kind_of(current).to_string(),
                    )),
                    Body::Instance(_) => None,
                })
                .collect();
            crate::wmi_cmd::class_list(out, cli, rows)?;
        }
        Request::Wmi(WmiCommand::Classes { schema: Some(name) }) => {
            let class = session.class(name).await?;
            let mut chain = vec![class.name().to_string()];
            chain.extend(class.derivation.iter().cloned());
            out.push_str(&format!("class {}\n", chain.join(" : ")));
            out.push_str(&format!(
                "{:<36} {:<26} {:<10} FROM\n",
                "PROPERTY", "TYPE", "QUALIFIERS"
            ));
            for p in &class.properties {
                let has = |q: &str| p.qualifiers.iter().any(|x| x.name.eq_ignore_ascii_case(q));
                let mut qualifiers = Vec::new();
                if has("key") {
                    qualifiers.push("key");
                }
                if !has("write") && !has("key") {
                    qualifiers.push("read");
                }
                let cimtype = p
                    .qualifiers
                    .iter()
                    .find(|q| q.name.eq_ignore_ascii_case("CIMTYPE"))
                    .and_then(|q| q.value.as_str())
                    .unwrap_or(p.cim_type.name())
                    .to_string();
                let ty = if p.cim_type.is_array() {
                    format!("{cimtype}[]")
                } else {
                    cimtype
                };
                // ClassOfOrigin indexes the derivation list, the parent
                // first ([MS-WMIO] 2.2.35).
                let origin = class
                    .derivation
                    .get(p.origin as usize)
                    .filter(|_| p.inherited)
                    .map(String::as_str)
                    .unwrap_or(class.name());
                out.push_str(&format!(
                    "{:<36} {:<26} {:<10} {}\n",
                    p.name,
                    ty,
                    qualifiers.join(","),
                    origin
                ));
            }
        }
        Request::Wmi(WmiCommand::AddProperty { .. } | WmiCommand::AddClass { .. }) => {
            bail!("schema extensions on another server go through its metabase: `inetsrv mb schema … --server HOST`")
        }
    }
    Ok(())
}

/// `wmi watch --server`: ExecNotificationQuery, then each event as it comes.
async fn watch(
    session: &mut Session,
    cli: &Cli,
    text: &str,
    count: Option<usize>,
    timeout: Option<f64>,
) -> Result<()> {
    use std::io::Write;
    use std::time::{Duration, Instant};
    if session.sinks.is_some() {
        return watch_async(session, cli, text, count, timeout).await;
    }
    let enumerator = session.exec(text, true).await?;
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
    eprintln!("# watching through WMI (ExecNotificationQuery); Ctrl-C stops");
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let slice = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left.min(Duration::from_secs(1)),
                None => break,
            },
            None => Duration::from_secs(1),
        };
        let (_, objects, returned, hr) = EnumWbemClassObjectClient::bind(&mut session.conn)
            .await?
            .on_object(enumerator.ipid)
            .next(this(), slice.as_millis() as u32, 1)
            .await?;
        if hr != WBEM_S_NO_ERROR && hr != WBEM_S_TIMEDOUT && hr != WBEM_S_FALSE {
            check(hr, "IEnumWbemClassObject::Next")?;
        }
        for pointer in objects.items.iter().take(returned as usize) {
            let Ok(object) = object_of(pointer) else {
                continue;
            };
            if let Some(event) = event_of(&object) {
                print!("{}", crate::wmi_cmd::format_event(&event, cli.json));
                let _ = std::io::stdout().flush();
                seen += 1;
            }
        }
    }
    Ok(())
}

/// `wmi watch --server --async`: ExecNotificationQueryAsync, the events
/// as the server calls them back; CancelAsyncCall at the end.
async fn watch_async(
    session: &mut Session,
    cli: &Cli,
    text: &str,
    count: Option<usize>,
    timeout: Option<f64>,
) -> Result<()> {
    use std::io::Write;
    let mut sink = session.start_async(&AsyncCall::Events(text)).await?;
    eprintln!(
        "# watching through WMI (ExecNotificationQueryAsync: the server calls back); Ctrl-C stops"
    );
    // The services object stays alive while the watch lasts, for the
    // cancel at the end.
    let pings = dcom::client::PingSet::new(&mut session.conn, vec![session.services.oid])
        .await
        .context("cannot keep the server's objects alive (ComplexPing)")?;
    let period = dcom::client::PING_PERIOD;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let deadline =
        timeout.map(|t| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(t));
    let mut seen = 0;
    let outcome: Result<()> = loop {
        if count.is_some_and(|c| seen >= c) {
            break Ok(());
        }
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = sink.events.recv() => match event {
                Some(SinkEvent::Objects(batch)) => {
                    for event in batch.iter().filter_map(event_of) {
                        if count.is_some_and(|c| seen >= c) {
                            break;
                        }
                        print!("{}", crate::wmi_cmd::format_event(&event, cli.json));
                        let _ = std::io::stdout().flush();
                        seen += 1;
                    }
                }
                Some(SinkEvent::Status { status, error, .. }) => {
                    break Err(async_failure("ExecNotificationQueryAsync", status, error.as_deref()));
                }
                None => break Err(anyhow!("ExecNotificationQueryAsync: the sink closed")),
            },
            _ = ping.tick() => pings.ping(&mut session.conn).await.context("SimplePing")?,
            _ = expired => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    if outcome.is_ok() {
        // Done: the server stops the subscription and says so.
        let (_, hr) = session
            .services()
            .await?
            .cancel_async_call(this(), Unique::new(Some(sink.pointer.clone())))
            .await?;
        check(hr, "CancelAsyncCall")?;
        let last = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match sink.events.recv().await {
                    Some(SinkEvent::Status { status, .. }) => return Some(status),
                    Some(SinkEvent::Objects(_)) => {}
                    None => return None,
                }
            }
        })
        .await;
        if last != Ok(Some(WBEM_E_CALL_CANCELLED)) {
            eprintln!("# the server did not confirm the cancel: {last:?}");
        }
    }
    outcome
}

/// What a class is for, from the qualifiers IIS's provider gives it.
fn kind_of(class: &ClassDef) -> &'static str {
    let has = |q: &str| {
        class
            .qualifiers
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(q))
    };
    let name = class.name();
    if has("Association") {
        "association"
    } else if has("abstract") {
        "abstract"
    } else if name.starts_with("__") {
        "event"
    } else if name.eq_ignore_ascii_case("IIsBackup") {
        "backup"
    } else if !has("dynamic") {
        "embedded"
    } else if name.ends_with("Setting") {
        "setting"
    } else {
        "element"
    }
}

/// An instance as the local provider shows one.
fn instance_of(object: &Object) -> Option<wmi::Instance> {
    let Body::Instance(instance) = &object.body else {
        return None;
    };
    let class = instance.class.name().to_string();
    let properties: Vec<(String, WmiValue)> = instance
        .class
        .properties
        .iter()
        .map(|p| {
            let value = instance
                .get(&p.name)
                .map(wmi_value)
                .unwrap_or(WmiValue::Null);
            (p.name.clone(), value)
        })
        .collect();
    // Named by its key, as the provider names its instances.
    let key = instance.class.properties.iter().find(|p| {
        p.qualifiers
            .iter()
            .any(|q| q.name.eq_ignore_ascii_case("key"))
    });
    let relpath = match key.and_then(|k| instance.get(&k.name).map(|v| (k, v))) {
        Some((k, Value::String(v))) => wmi::path::ObjectPath::format(&class, &k.name, v),
        _ => class.clone(),
    };
    Some(wmi::Instance {
        class,
        relpath,
        properties,
    })
}

fn wmi_value(value: &Value) -> WmiValue {
    match value {
        Value::Boolean(b) => WmiValue::Bool(*b),
        Value::Uint8(n) => WmiValue::UInt32(u32::from(*n)),
        Value::Uint16(n) | Value::Char16(n) => WmiValue::UInt32(u32::from(*n)),
        Value::Uint32(n) => WmiValue::UInt32(*n),
        Value::Sint8(n) => WmiValue::String(n.to_string()),
        Value::Sint16(n) => WmiValue::String(n.to_string()),
        Value::Sint32(n) => WmiValue::String(n.to_string()),
        Value::Sint64(n) => WmiValue::String(n.to_string()),
        Value::Uint64(n) => WmiValue::String(n.to_string()),
        Value::Real32(n) => WmiValue::String(n.to_string()),
        Value::Real64(n) => WmiValue::String(n.to_string()),
        Value::String(s) | Value::DateTime(s) | Value::Reference(s) => WmiValue::String(s.clone()),
        Value::Array(CimType::UINT8, items) => WmiValue::Bytes(
            items
                .iter()
                .map(|v| match v {
                    Value::Uint8(b) => *b,
                    _ => 0,
                })
                .collect(),
        ),
        Value::Array(_, items) => WmiValue::Array(items.iter().map(wmi_value).collect()),
        Value::Object(object) => match instance_of(object) {
            Some(i) => WmiValue::Object(EmbeddedObject {
                class: i.class,
                properties: i.properties,
            }),
            None => WmiValue::Null,
        },
    }
}

/// An event object as the local watch prints one.
fn event_of(object: &Object) -> Option<wmi::events::Event> {
    let Body::Instance(instance) = &object.body else {
        return None;
    };
    let class = match instance.class.name() {
        c if c.eq_ignore_ascii_case("__InstanceCreationEvent") => "__InstanceCreationEvent",
        c if c.eq_ignore_ascii_case("__InstanceDeletionEvent") => "__InstanceDeletionEvent",
        c if c.eq_ignore_ascii_case("__InstanceModificationEvent") => "__InstanceModificationEvent",
        _ => "__InstanceOperationEvent",
    };
    let embedded = |name: &str| match instance.get(name) {
        Some(Value::Object(o)) => instance_of(o),
        _ => None,
    };
    Some(wmi::events::Event {
        class,
        target: embedded("TargetInstance")?,
        previous: embedded("PreviousInstance"),
    })
}

/// An instance of `class` with `props` (text, as `inetsrv mb set` takes
/// them) in its properties' types; the rest NULL.
async fn build_instance(
    session: &mut Session,
    class: &ClassDef,
    props: &[(String, Vec<String>)],
) -> Result<Object> {
    let mut values = vec![Slot::Null; class.properties.len()];
    for (name, texts) in props {
        let Some(i) = class
            .properties
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
        else {
            bail!("{} has no property {name}", class.name());
        };
        let property = &class.properties[i];
        let base = property.cim_type.base();
        let embedded_class = property
            .qualifiers
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case("CIMTYPE"))
            .and_then(|q| q.value.as_str())
            .and_then(|t| t.strip_prefix("object:"))
            .map(str::to_string);
        let embedded_def = match &embedded_class {
            Some(c) if base == CimType::OBJECT => Some(session.class(c).await?),
            _ => None,
        };
        let mut items = Vec::with_capacity(texts.len());
        for text in texts {
            items.push(
                value_of(text, base, &property.name, embedded_def.as_ref())
                    .with_context(|| format!("{}.{}: '{text}'", class.name(), property.name))?,
            );
        }
        values[i] = Slot::Value(if property.cim_type.is_array() {
            Value::Array(base, items)
        } else {
            if items.len() > 1 {
                bail!("{}.{} takes one value", class.name(), property.name);
            }
            items.remove(0)
        });
    }
    Ok(Object {
        decoration: None,
        extra_flags: 0,
        body: Body::Instance(wmio::Instance {
            class: std::sync::Arc::new(class.clone()),
            values,
            qualifiers: Vec::new(),
        }),
    })
}

/// One text value in a CIM type.
fn value_of(text: &str, ty: CimType, property: &str, embedded: Option<&ClassDef>) -> Result<Value> {
    let number = || -> Result<u64> {
        text.trim()
            .parse::<u64>()
            .map_err(|_| anyhow!("not a number"))
    };
    Ok(match ty {
        CimType::BOOLEAN => {
            Value::Boolean(metabase::schema::parse_bool(text).map_err(|e| anyhow!(e))? == 1)
        }
        CimType::UINT8 => Value::Uint8(u8::try_from(number()?)?),
        CimType::UINT16 => Value::Uint16(u16::try_from(number()?)?),
        CimType::UINT32 => Value::Uint32(u32::try_from(number()?)?),
        CimType::UINT64 => Value::Uint64(number()?),
        CimType::SINT32 => Value::Sint32(text.trim().parse()?),
        CimType::DATETIME => Value::DateTime(text.to_string()),
        CimType::REFERENCE => Value::Reference(text.to_string()),
        CimType::OBJECT => {
            let def = embedded.ok_or_else(|| anyhow!("an object of no known class"))?;
            let parsed = wmi::provider::embedded(def.name(), property, text);
            let values = def
                .properties
                .iter()
                .map(|p| match parsed.get(&p.name) {
                    Some(WmiValue::String(s)) => Slot::Value(Value::String(s.clone())),
                    Some(WmiValue::UInt32(n)) => Slot::Value(Value::Uint32(*n)),
                    Some(WmiValue::Bool(b)) => Slot::Value(Value::Boolean(*b)),
                    _ => Slot::Null,
                })
                .collect();
            Value::Object(Box::new(Object {
                decoration: None,
                extra_flags: 0,
                body: Body::Instance(wmio::Instance {
                    class: std::sync::Arc::new(def.clone()),
                    values,
                    qualifiers: Vec::new(),
                }),
            }))
        }
        _ => Value::String(text.to_string()),
    })
}
