//! WMI on the wire ([MS-WMI] over DCOM) against clients no one here
//! wrote: Impacket 0.13's own wmiquery.py, unchanged (tests/wmi/
//! wmiquery_here.py only points it at a resolver off port 135), and
//! Impacket's IWbemLevel1Login, IWbemServices, IEnumWbemClassObject and
//! IWbemClassObject classes, whose MS-WMIO decoder reads what the server
//! sends and whose encoder writes the instances PutInstance takes
//! (tests/wmi/impacket_wmi.py). scripts/test.sh installs Impacket and
//! names its interpreter in INETSRV_TEST_PYTHON.

mod common;

use std::process::Command;

use common::python;
use common::web::Web;
use serde_json::Value;

const WBEM_E_NOT_FOUND: u64 = 0x8004_1002;
const WBEM_E_INVALID_PARAMETER: u64 = 0x8004_1008;
const WBEM_E_NOT_SUPPORTED: u64 = 0x8004_100c;
const WBEM_E_INVALID_NAMESPACE: u64 = 0x8004_100e;
const WBEM_E_INVALID_CLASS: u64 = 0x8004_1010;
const WBEM_E_INVALID_OPERATION: u64 = 0x8004_1016;
const WBEM_E_INVALID_QUERY: u64 = 0x8004_1017;
const WBEM_E_ALREADY_EXISTS: u64 = 0x8004_1019;
const WBEM_E_INVALID_QUERY_TYPE: u64 = 0x8004_1018;
const WBEM_E_CALL_CANCELLED: u64 = 0x8004_1032;
const WBEM_S_FALSE: u64 = 1;
const E_ACCESSDENIED: u64 = 0x8007_0005;

fn script(name: &str) -> String {
    format!("{}/tests/wmi/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A server with an administrator (boss) and a user who is not one
/// (clerk).
fn server() -> Web {
    Web::start_with_users()
}

/// impacket_wmi.py's answer for `steps`, logged on as `user`.
fn wmi(web: &Web, user: &str, password: &str, steps: &[&str], env: &[(&str, String)]) -> Value {
    run_script(web, "impacket_wmi.py", user, password, steps, env)
}

/// A test script's JSON answer for `steps`.
fn run_script(
    web: &Web,
    name: &str,
    user: &str,
    password: &str,
    steps: &[&str],
    env: &[(&str, String)],
) -> Value {
    let out = Command::new(python())
        .arg(script(name))
        .arg(web.rpc_port().to_string())
        .args([user, password])
        .args(steps)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .expect("python3 with Impacket (pip install impacket==0.13.0)");
    web.last_json(&out)
}

#[test]
fn impackets_wmiquery_runs_the_seeds_queries_at_packet_privacy() {
    let web = server();
    let queries = web.state().join("queries.wql");
    std::fs::write(
        &queries,
        "select * from MicrosoftIIS_WebVirtualDirSetting where AccessWrite != TRUE\n\
         SELECT Name, ServerComment, ServerAutoStart FROM IIsWebServerSetting\n\
         SELECT * FROM IIsWebServerSetting\n\
         SELECT * FROM IIsNoSuchClass\n",
    )
    .unwrap();
    let target = format!("boss:Secret-1@127.0.0.1[{}]", web.rpc_port());
    let out = Command::new(python())
        .arg(script("wmiquery_here.py"))
        .args(["-namespace", "//./root/MicrosoftIISv2"])
        .args(["-rpc-auth-level", "privacy"])
        .arg("-file")
        .arg(&queries)
        .arg(&target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}{stderr}");
    let context = || format!("wmiquery.py said:\n{all}\nserver log:\n{}", web.log());
    // The listing: the root virtual directory, AccessWrite FALSE.
    let listing = all
        .split("WQL> ")
        .find(|s| s.starts_with("select * from MicrosoftIIS_WebVirtualDirSetting"))
        .unwrap_or_else(|| panic!("{}", context()));
    assert!(listing.contains("| W3SVC/1/ROOT |"), "{}", context());
    assert!(listing.contains("| AccessWrite |"), "{}", context());
    // A projection: exactly the columns asked for, in the class's order.
    assert!(
        all.contains(
            "| Name | ServerComment | ServerAutoStart | \n| W3SVC/1 | Default Web Site | True | "
        ),
        "{}",
        context()
    );
    let star = all
        .split("WQL> ")
        .find(|s| s.starts_with("SELECT * FROM IIsWebServerSetting"))
        .unwrap();
    for column in [
        "| Name |",
        "| ServerComment |",
        "| ServerBindings |",
        "| ConnectionTimeout |",
    ] {
        assert!(star.contains(column), "{column}: {}", context());
    }
    assert!(star.contains("| W3SVC/1 |"), "{}", context());
    assert!(
        all.contains("WBEM_E_INVALID_CLASS"),
        "an unknown class is WBEM_E_INVALID_CLASS: {}",
        context()
    );
}

#[test]
fn impacket_reads_classes_instances_and_errors_through_iwbemservices() {
    let web = server();
    let out = wmi(&web, "boss", "Secret-1", &["query"], &[]);
    assert_eq!(out["locale_version"], 1, "{out}");
    assert_eq!(out["request_challenge"], WBEM_E_NOT_SUPPORTED, "{out}");
    assert_eq!(out["bad_namespace"], WBEM_E_INVALID_NAMESPACE, "{out}");
    let listing = out["listing"].as_array().unwrap();
    assert_eq!(listing.len(), 1, "{out}");
    assert_eq!(listing[0]["Name"], "W3SVC/1/ROOT");
    assert_eq!(listing[0]["AccessWrite"], "False");
    assert_eq!(listing[0]["Path"], web.www().display().to_string(), "{out}");
    let projected = &out["projected"][0];
    assert_eq!(projected["class"], "IIsWebServerSetting");
    assert_eq!(
        projected["props"],
        serde_json::json!(["Name", "ServerComment"])
    );
    assert_eq!(projected["values"]["ServerComment"], "Default Web Site");
    // A prototype: a class (0x01), decorated (0x04), a prototype (0x10),
    // its key property not selected (0x40).
    assert_eq!(out["prototype"]["flags"], 0x55, "{out}");
    assert_eq!(
        out["prototype"]["props"],
        serde_json::json!(["ServerComment"])
    );
    let site = &out["site"];
    assert_eq!(site["class"], "IIsWebServerSetting");
    assert_eq!(site["ServerComment"], "Default Web Site");
    assert_eq!(site["ServerAutoStart"], "True");
    assert_eq!(
        site["bindings"], 1,
        "ServerBindings is one embedded ServerBinding"
    );
    assert_eq!(
        site["name_qualifiers"],
        serde_json::json!(["CIMTYPE", "key", "read"])
    );
    let class = &out["class"];
    assert_eq!(class["name"], "IIsWebServerSetting");
    assert_eq!(class["name_is_key"], true);
    assert_eq!(class["comment_type"], "string");
    assert_eq!(class["bindings_cimtype"], "object:ServerBinding");
    assert_eq!(out["missing"], WBEM_E_NOT_FOUND, "{out}");
    // Why, in the error information of the answer's ORPCTHAT ([MS-DCOM]
    // 2.2.21), as Impacket's own ORPCTHAT reads it.
    assert_eq!(
        out["missing_description"], "there is no IIsWebServerSetting named 'W3SVC/99'",
        "{out}"
    );
    assert!(
        out["bad_query_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("at column ")),
        "{out}"
    );
    assert_eq!(out["no_class"], WBEM_E_NOT_FOUND, "{out}");
    assert_eq!(out["bad_query"], WBEM_E_INVALID_QUERY, "{out}");
    assert_eq!(out["bad_class"], WBEM_E_INVALID_CLASS, "{out}");
    assert_eq!(
        out["pools"],
        serde_json::json!(["W3SVC/AppPools/DefaultAppPool"])
    );
    assert!(out["setting_classes"].as_u64().unwrap() > 20, "{out}");
    assert_eq!(out["has_server_setting"], true);
}

#[test]
fn enumerators_skip_reset_refuse_when_forward_only_and_send_object_arrays() {
    let web = server();
    web.cli_ok(&[
        "vdir",
        "create",
        "1",
        "images",
        &web.www().display().to_string(),
    ]);
    let out = wmi(&web, "boss", "Secret-1", &["enumerator"], &[]);
    assert_eq!(out["first"], "W3SVC/1/ROOT", "{out}");
    assert_eq!(out["skip_past_end"], WBEM_S_FALSE, "{out}");
    assert_eq!(out["after_skip"], 0);
    assert_eq!(out["after_reset"], 2, "Reset starts over: {out}");
    assert_eq!(out["forward_only_reset"], WBEM_E_INVALID_OPERATION);
    // The smart enumerator: both objects in one ObjectArray, the class
    // sent with the first only (bObjectType 2, then 3, one class ID).
    assert_eq!(out["smart_status"], WBEM_S_FALSE);
    assert_eq!(out["smart"]["returned"], 2);
    assert_eq!(out["smart"]["objects"], 2);
    assert_eq!(out["smart"]["signature"], "WBEMDATA");
    assert_eq!(out["smart"]["size"], true);
    assert_eq!(out["smart_packets"]["kinds"], serde_json::json!([2, 3]));
    assert_eq!(out["smart_packets"]["one_id"], true);
    assert!(out["smart_packets"]["classes"][0]
        .as_str()
        .unwrap()
        .starts_with("IIsWebVirtualDirSetting"));
}

#[test]
fn the_seeds_site_is_created_through_put_instance_and_deleted_through_delete_instance() {
    let web = server();
    let site = web.www().join("site20");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.htm"), "twenty").unwrap();
    let out = wmi(
        &web,
        "boss",
        "Secret-1",
        &["put"],
        &[("SITE_DIR", site.display().to_string())],
    );
    assert_eq!(
        out["put"],
        serde_json::json!([
            "IIsWebServer.Name=\"W3SVC/20\"",
            "IIsWebServerSetting.Name=\"W3SVC/20\"",
            "IIsWebVirtualDir.Name=\"W3SVC/20/ROOT\"",
            "IIsWebVirtualDirSetting.Name=\"W3SVC/20/ROOT\""
        ]),
        "{out}"
    );
    assert_eq!(out["put_back"]["Path"], site.display().to_string());
    assert_eq!(out["put_back"]["AccessWrite"], "True");
    assert_eq!(out["put_back"]["EnableDirBrowsing"], "True");
    assert_eq!(out["put_back"]["AccessExecute"], "False");
    assert_eq!(out["create_only"], WBEM_E_ALREADY_EXISTS, "{out}");
    assert_eq!(out["update_only"], WBEM_E_NOT_FOUND, "{out}");
    // /LM/W3SVC is not an IIsWebServer: refused, as the seed's Susan saw.
    assert_eq!(out["wrong_place"], WBEM_E_INVALID_PARAMETER, "{out}");
    assert_eq!(out["deleted"], WBEM_E_NOT_FOUND, "{out}");
    // The metabase has what the instances said, and only that: the
    // second PutInstance changed the comment, and nothing else of the
    // spawned instances (NULLs) was written.
    assert_eq!(
        web.cli_ok(&["mb", "get", "W3SVC/20/ServerComment"]).trim(),
        "ServerComment                   : (STRING) \"Renamed\""
    );
    let own = web.cli_ok(&["mb", "enum", "W3SVC/20/ROOT"]);
    assert!(own.contains(&site.display().to_string()), "{own}");
    assert!(!own.contains("gone"), "{own}");
    // The site serves once it has a binding.
    let port = common::free_port();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/20/ServerBindings",
        &format!("127.0.0.1:{port}:"),
    ]);
    web.wait_for(
        "site 20 to serve",
        std::time::Duration::from_secs(10),
        || common::web::curl(&format!("http://127.0.0.1:{port}/index.htm"), &[]).body == b"twenty",
    );
}

#[test]
fn namespaces_open_and_only_administrators_log_on() {
    let web = server();
    let out = wmi(&web, "boss", "Secret-1", &["namespaces"], &[]);
    assert_eq!(out["root"], serde_json::json!(["MicrosoftIISv2", "cimv2"]));
    assert_eq!(out["open_namespace"], 0);
    assert_eq!(out["iis_in_cimv2"], WBEM_E_INVALID_CLASS);
    let refused = wmi(&web, "clerk", "Secret-2", &["refused"], &[]);
    assert_eq!(refused["refused"], E_ACCESSDENIED, "{refused}");
    assert!(web
        .log()
        .contains("administration refused: the user is not an administrator"));
}

#[test]
fn methods_stop_and_start_a_site_recycle_a_pool_and_make_an_application() {
    const WBEM_E_INVALID_METHOD: u64 = 0x8004_102e;
    let web = server();
    web.cli_ok(&[
        "vdir",
        "create",
        "1",
        "images",
        &web.www().display().to_string(),
    ]);
    assert_eq!(web.curl("/", &[]).status, 200);
    let before = web.worker_pids("DefaultAppPool", "running");
    assert!(!before.is_empty());

    let out = wmi(&web, "boss", "Secret-1", &["stop"], &[]);
    assert_eq!(out["stop"]["class"], "__PARAMETERS", "{out}");
    // MD_SERVER_STATE_STOPPED, and the site no longer answers.
    assert_eq!(out["server_state"], 4, "{out}");
    assert_ne!(web.curl("/", &[]).status, 200);
    assert_eq!(out["no_method"], WBEM_E_INVALID_METHOD, "{out}");
    assert_eq!(out["no_instance"], WBEM_E_NOT_FOUND, "{out}");

    let out = wmi(&web, "boss", "Secret-1", &["start", "recycle", "app"], &[]);
    assert_eq!(out["server_state"], 2, "MD_SERVER_STATE_STARTED: {out}");
    web.wait_for(
        "site 1 to serve again",
        std::time::Duration::from_secs(10),
        || web.curl("/", &[]).status == 200,
    );
    web.wait_for(
        "the recycled pool's new worker",
        std::time::Duration::from_secs(20),
        || {
            let now = web.worker_pids("DefaultAppPool", "running");
            !now.is_empty() && now.iter().all(|p| !before.contains(p))
        },
    );
    // Impacket read the method signatures from the class and encoded
    // AppCreate3's in-parameters from them.
    assert_eq!(
        out["methods"],
        serde_json::json!([
            "AppCreate",
            "AppCreate2",
            "AppCreate3",
            "AppDelete",
            "AppDisable",
            "AppEnable",
            "AppGetStatus",
            "AppUnload"
        ])
    );
    assert_eq!(
        out["app_create3_in"],
        serde_json::json!(["AppMode", "AppPoolName", "bCreatePool"])
    );
    assert_eq!(out["app_create3"], true);
    assert_eq!(out["app_status"], 1, "APPSTATUS_RUNNING: {out}");
    let app = web.cli_ok(&["mb", "get", "W3SVC/1/ROOT/images/AppRoot"]);
    assert!(app.contains("/LM/W3SVC/1/ROOT/images"), "{app}");
}

#[test]
fn an_event_query_delivers_the_modification_mb_set_makes() {
    use std::io::{BufRead, BufReader, Write};
    const WBEM_S_TIMEDOUT: u64 = 0x4_0004;
    let web = server();
    let mut child = Command::new(python())
        .arg(script("impacket_wmi.py"))
        .arg(web.rpc_port().to_string())
        .args(["boss", "Secret-1", "events"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with Impacket");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The subscription is made; the change comes after it.
    let ready = lines.by_ref().map_while(Result::ok).any(|l| l == "READY");
    assert!(ready, "the client did not subscribe: {}", web.log());
    web.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Changed by mb set"]);
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let last = lines.map_while(Result::ok).last().unwrap_or_default();
    let status = child.wait().unwrap();
    let out: Value = serde_json::from_str(&last).unwrap_or_else(|e| {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        panic!("{e} ({status}): {last:?} {err}\n{}", web.log())
    });
    assert_eq!(
        out["event"]["class"], "__InstanceModificationEvent",
        "{out}"
    );
    assert_eq!(out["event"]["target"]["Name"], "W3SVC/1");
    assert_eq!(out["event"]["target"]["ServerComment"], "Changed by mb set");
    assert_eq!(
        out["event"]["previous"]["ServerComment"],
        "Default Web Site"
    );
    // Nothing else changed: the next Next times out.
    assert_eq!(out["quiet"], WBEM_S_TIMEDOUT, "{out}");
    assert_eq!(out["not_an_event"], WBEM_E_INVALID_CLASS, "{out}");
}

/// aiowmi's answer to `queries` in `namespace`.
/// The asynchronous calls, with a response handler no one here wrote:
/// Impacket's own DCE/RPC server plays the client's resolver and
/// exporter, and Impacket's structures decode the server's ResolveOxid2,
/// ComplexPing, Indicate and SetStatus (tests/wmi/impacket_sink.py).
#[test]
fn asynchronous_calls_call_back_a_sink_impacket_serves() {
    use serde_json::json;
    let web = server();
    let steps = [
        "query",
        "get",
        "method",
        "put",
        "events",
        "next_async",
        "refused",
    ];
    let out = run_script(&web, "impacket_sink.py", "boss", "Secret-1", &steps, &[]);
    // ExecQueryAsync: the objects through Indicate, then one SetStatus.
    assert_eq!(out["query_answer"], 0, "{out}");
    assert_eq!(out["query"], json!(["W3SVC/1"]), "{out}");
    assert_eq!(out["query_counts"], true, "lObjectCount matches: {out}");
    let done = json!({"flags": 0, "status": 0, "text": null, "error": null, "count": 1});
    assert_eq!(out["query_final"], done, "{out}");
    // GetObjectAsync: the object; a failure is the final status, with an
    // __ExtendedStatus error object saying why.
    assert_eq!(out["get"]["objects"], json!(["IIsWebServer"]), "{out}");
    assert_eq!(out["get"]["final"], done, "{out}");
    let missing = &out["get_missing"];
    assert_eq!(missing["answer"], 0, "the call starts: {out}");
    assert_eq!(missing["objects"], json!([]), "{out}");
    assert_eq!(missing["final"]["status"], WBEM_E_NOT_FOUND, "{out}");
    let error = &missing["final"]["error"];
    assert_eq!(error["class"], "__ExtendedStatus", "{out}");
    assert_eq!(error["StatusCode"], WBEM_E_NOT_FOUND, "{out}");
    assert_eq!(error["Operation"], "GetObjectAsync", "{out}");
    assert!(
        error["Description"].as_str().unwrap().contains("W3SVC/99"),
        "{out}"
    );
    // ExecMethodAsync: Stop and Start reach the activation service.
    assert_eq!(
        out["method_Stop"],
        json!({"answer": 0, "final": 0, "ServerState": 4}),
        "{out}"
    );
    assert_eq!(
        out["method_Start"],
        json!({"answer": 0, "final": 0, "ServerState": 2}),
        "{out}"
    );
    // PutInstanceAsync: the new instance's path as SetStatus's string.
    assert_eq!(
        out["put"]["final"]["text"], "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT/sinkdir\"",
        "{out}"
    );
    assert_eq!(out["delete"]["final"]["status"], 0, "{out}");
    assert!(!web
        .cli_ok(&["mb", "enum", "W3SVC/1/ROOT"])
        .contains("sinkdir"));
    // ExecNotificationQueryAsync: the event as it happens; CancelAsyncCall
    // ends it with WBEM_E_CALL_CANCELLED, once.
    assert_eq!(out["events_answer"], 0, "{out}");
    assert_eq!(
        out["events"],
        json!([{"class": "__InstanceCreationEvent", "target": "IIsWebVirtualDir"}]),
        "{out}"
    );
    assert_eq!(out["cancel_answer"], 0, "{out}");
    assert_eq!(
        out["events_final"]["status"], WBEM_E_CALL_CANCELLED,
        "{out}"
    );
    assert_eq!(out["cancel_again"], WBEM_E_NOT_FOUND, "{out}");
    // NextAsync: as many as asked, then the rest with WBEM_S_FALSE; none
    // asked is WBEM_S_FALSE at once.
    assert_eq!(
        out["next_async"],
        json!([
            {"answer": 0, "objects": ["W3SVC/1"], "final": 0},
            {"answer": 0, "objects": [], "final": WBEM_S_FALSE},
            {"answer": WBEM_S_FALSE},
        ]),
        "{out}"
    );
    // Refused at the call, with no callback: no sink, a sink whose
    // resolver is elsewhere than the caller, a language not WQL.
    assert_eq!(out["null_sink"], WBEM_E_INVALID_PARAMETER, "{out}");
    assert_eq!(out["sink_elsewhere"], WBEM_E_INVALID_PARAMETER, "{out}");
    assert_eq!(out["not_wql"], WBEM_E_INVALID_QUERY_TYPE, "{out}");
    assert_eq!(out["no_callback"], true, "{out}");
    // The server resolved the sink's own OXID and pinged its own OID.
    assert_eq!(
        out["calls"],
        json!(["ComplexPing", "Indicate", "ResolveOxid2", "SetStatus"]),
        "{out}"
    );
}

/// `inetsrv wmi watch` of the modifications of IIsWebServerSetting on
/// the server, as boss, with `args`, once it says it watches: the
/// process, the rest of its standard error, and that first line.
fn start_watch(
    web: &Web,
    args: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    let mut watch = std::process::Command::new(common::BIN)
        .args(web.target())
        .args([
            "wmi",
            "watch",
            "SELECT * FROM __InstanceModificationEvent WITHIN 1 WHERE TargetInstance ISA 'IIsWebServerSetting'",
        ])
        .args(web.as_boss())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    (watch, err, line)
}

/// A subscription's sink hears the service stop (WBEM_E_SHUTTING_DOWN)
/// rather than waiting on a server that is gone.
#[test]
fn an_asynchronous_subscription_hears_the_service_stop() {
    let mut web = server();
    let (mut watch, mut err, line) = start_watch(&web, &["--timeout", "60", "--async"]);
    assert!(line.contains("ExecNotificationQueryAsync"), "{line}");
    web.signal("TERM");
    assert!(web.wait_exit(std::time::Duration::from_secs(30)).success());
    let status = watch.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(!status.success());
    assert!(
        rest.contains("WBEM_E_SHUTTING_DOWN") && rest.contains("the service is stopping"),
        "{rest}"
    );
}

fn aiowmi(web: &Web, namespace: &str, queries: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(script("aiowmi_query.py"))
        .arg(web.rpc_port().to_string())
        .args(["boss", "Secret-1", namespace])
        .args(queries)
        .output()
        .expect("python3 with aiowmi (pip install aiowmi==1.1.3)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout:?} {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            web.log()
        )
    })
}

#[test]
fn aiowmi_a_client_written_without_impacket_queries_through_its_smart_enumerator() {
    let web = server();
    // Latin-1 (sent compressed, 2.2.78): aiowmi 1.1.3 misreads UTF-16
    // strings (it looks for their end from the start of the heap).
    web.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Café Ünïcödé"]);
    let out = aiowmi(
        &web,
        "root/MicrosoftIISv2",
        &[
            "SELECT Name, ServerComment, ServerAutoStart FROM IIsWebServerSetting",
            "SELECT * FROM IIsApplicationPoolSetting",
            "SELECT * FROM IIsNoSuchClass",
        ],
    );
    let results = out["results"].as_array().unwrap();
    let sites = &results[0]["rows"];
    assert_eq!(
        sites,
        &serde_json::json!([{
            "Name": "W3SVC/1",
            "ServerComment": "Café Ünïcödé",
            "ServerAutoStart": true
        }]),
        "{out}"
    );
    let pool = &results[1]["rows"][0];
    assert_eq!(pool["Name"], "W3SVC/AppPools/DefaultAppPool", "{out}");
    assert_eq!(pool["PeriodicRestartTime"], 1740);
    assert_eq!(pool["RapidFailProtection"], true);
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .contains("WBEM_E_INVALID_CLASS"),
        "{out}"
    );
    // The root namespace lists the two below it.
    let out = aiowmi(&web, "root", &["SELECT * FROM __NAMESPACE"]);
    let mut names: Vec<&str> = out["results"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["MicrosoftIISv2", "cimv2"], "{out}");
}

/// `inetsrv query --server` and `inetsrv wmi … --server`: the verbs go
/// through MS-WMI and print what they print on the server itself.
#[test]
fn query_and_wmi_reach_another_server_through_ms_wmi() {
    reach_another_server(false);
}

/// The same with --async: the CLI serves an IWbemObjectSink and the
/// server calls it back with every result.
#[test]
fn query_and_wmi_make_asynchronous_calls_to_their_own_sink() {
    reach_another_server(true);
}

fn reach_another_server(asynchronous: bool) {
    let web = server();
    web.cli_ok(&[
        "vdir",
        "create",
        "1",
        "images",
        &web.www().display().to_string(),
    ]);
    let boss = web.as_boss();
    let remote = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(boss.iter().map(String::as_str));
        if asynchronous {
            all.push("--async");
        }
        web.cli(&all)
    };
    let ok = |args: &[&str]| {
        let out = remote(args);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            web.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for query in [
        "SELECT * FROM IIsApplicationPool",
        "SELECT Name, Path, AccessRead FROM IIsWebVirtualDirSetting",
        "SELECT * FROM IIsWebServerSetting",
        "SELECT Name FROM IIsWebVirtualDirSetting WHERE Name = 'W3SVC/1/ROOT/nothing'",
    ] {
        assert_eq!(
            ok(&["query", query]),
            web.cli_ok(&["query", query]),
            "{query}"
        );
        assert_eq!(
            ok(&["--json", "query", query]),
            web.cli_ok(&["--json", "query", query]),
            "{query}"
        );
    }
    let path = "IIsWebVirtualDirSetting.Name=\"W3SVC/1/ROOT/images\"";
    assert_eq!(ok(&["wmi", "get", path]), web.cli_ok(&["wmi", "get", path]));
    // The catalogue through CreateClassEnum, and a class through GetObject.
    assert_eq!(ok(&["wmi", "classes"]), web.cli_ok(&["wmi", "classes"]));
    let schema = ok(&["wmi", "classes", "--schema", "IIsWebServerSetting"]);
    assert!(
        schema.starts_with("class IIsWebServerSetting : IIsSetting : CIM_Setting\n"),
        "{schema}"
    );
    let name = schema.lines().find(|l| l.starts_with("Name ")).unwrap();
    assert!(
        name.contains(" key ") && name.ends_with("IIsSetting"),
        "{name}"
    );
    assert!(schema
        .lines()
        .any(|l| l.starts_with("ServerBindings ") && l.contains("object:ServerBinding[]")));
    // Put: text values in the class's types, structured ones as embedded
    // objects (ServerBindings as ServerBinding instances).
    let port = common::free_port();
    assert_eq!(
        ok(&[
            "wmi",
            "put",
            "IIsWebServerSetting",
            "Name=W3SVC/1",
            "ServerComment=Set through MS-WMI",
            &format!("ServerBindings=127.0.0.1:{port}:"),
            "ServerBindings=:8099:www.example",
        ])
        .trim(),
        "IIsWebServerSetting.Name=\"W3SVC/1\""
    );
    let bindings = web.cli_ok(&["mb", "get", "W3SVC/1/ServerBindings"]);
    assert!(
        bindings.contains(&format!("\"127.0.0.1:{port}:\"")),
        "{bindings}"
    );
    assert!(bindings.contains("\":8099:www.example\""), "{bindings}");
    // A method with arguments, from the class's signature.
    let status = ok(&[
        "wmi",
        "call",
        "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT/images\"",
        "AppCreate2",
        "AppMode=2",
    ]);
    assert_eq!(status, "");
    let app = web.cli_ok(&["mb", "get", "W3SVC/1/ROOT/images/AppIsolated"]);
    assert!(app.contains("2"), "{app}");
    let apps = ok(&[
        "wmi",
        "call",
        "IIsApplicationPool.Name=\"W3SVC/AppPools/DefaultAppPool\"",
        "EnumAppsInPool",
    ]);
    assert!(apps.contains("/LM/W3SVC/1/ROOT/images"), "{apps}");
    // Watch: an event through ExecNotificationQuery.
    let mut args = vec!["--count", "1", "--timeout", "30"];
    if asynchronous {
        args.push("--async");
    }
    let (watch, mut err, line) = start_watch(&web, &args);
    assert!(line.contains("ExecNotificationQuery"), "{line}");
    web.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Watched"]);
    let out = watch.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&out.stdout);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(out.status.success(), "{rest}");
    // An asynchronous watch ends with CancelAsyncCall, which the server
    // confirms to the sink.
    assert!(!rest.contains("did not confirm"), "{rest}");
    assert!(
        events.contains("__InstanceModificationEvent IIsWebServerSetting.Name=\"W3SVC/1\"")
            && events.contains("ServerComment: Set through MS-WMI -> Watched"),
        "{events}"
    );
    // Errors: the WBEM status, a failing exit.
    let out = remote(&["query", "SELECT * FROM IIsNoSuchClass"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WBEM_E_INVALID_CLASS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = remote(&[
        "wmi",
        "delete",
        "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT/nothing\"",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("WBEM_E_NOT_FOUND"));
    assert_eq!(
        ok(&[
            "wmi",
            "delete",
            "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT/images\""
        ])
        .trim(),
        "deleted IIsWebVirtualDir.Name=\"W3SVC/1/ROOT/images\""
    );
    assert!(!web
        .cli_ok(&["mb", "enum", "W3SVC/1/ROOT"])
        .contains("images"));
}

#[test]
fn a_partial_put_instance_writes_only_the_properties_its_context_names() {
    let web = server();
    web.cli_ok(&["mb", "set", "W3SVC/1/MaxConnections", "77"]);
    let out = wmi(&web, "boss", "Secret-1", &["partial"], &[]);
    // Listed and set: written. Not listed (ServerSize=2): left alone.
    assert_eq!(out["partial"]["ServerComment"], "Partial", "{out}");
    assert_eq!(out["partial"]["ServerSize"], 1, "{out}");
    assert_eq!(
        web.cli_ok(&["mb", "get", "W3SVC/1/ServerSize"]).trim(),
        "ServerSize                      : (INTEGER) 1"
    );
    // Listed and NULL with __PUT_EXT_STRICT_NULLS: the key's own value
    // goes, the inherited one shows again.
    let max = web.cli_ok(&["mb", "get", "W3SVC/1/MaxConnections"]);
    assert!(
        max.contains("4294967295  [inherited from /LM/W3SVC]"),
        "{max}"
    );
}
