//! Remote administration over DCOM against a client no one here wrote:
//! Impacket 0.13's DCOM runtime (DCOMConnection, CoCreateInstanceEx,
//! IRemUnknown2) activates CLSID_MSAdminBase_W on a live server and calls
//! IMSAdminBaseW through NDR definitions written in the test from
//! [MS-IMSA]'s IDL (tests/dcom/impacket_imsa.py). scripts/test.sh
//! installs Impacket and names its interpreter in INETSRV_TEST_PYTHON.

mod common;
// Shared with tests/rpc.rs, which uses all of it.
#[allow(dead_code)]
#[path = "rpc/kdc.rs"]
mod kdc;

use std::process::Command;

use common::python;
use common::web::Web;
use serde_json::Value;

const E_ACCESSDENIED: u64 = 0x8007_0005;

/// A live server with users, its RPC endpoint's address, and a runtime
/// for a test's own RPC client.
fn live_rpc() -> (Web, std::net::SocketAddr, tokio::runtime::Runtime) {
    let web = server_with_users();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], web.rpc_port()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (web, addr, runtime)
}

/// Connection options that log on with NTLM at packet privacy.
fn ntlm_privacy(user: &str, password: &str) -> msrpc::client::Options {
    msrpc::client::Options {
        auth: Some(msrpc::client::ClientAuth {
            auth_type: msrpc::security::auth_type::WINNT,
            level: msrpc::security::auth_level::PRIVACY,
            user: user.into(),
            domain: String::new(),
            password: password.into(),
            ticket: None,
        }),
        ..msrpc::client::Options::default()
    }
}

/// Runs one of tests/dcom's Impacket clients against the server's RPC
/// port with `args`; the JSON object it prints last.
fn impacket(web: &Web, script: &str, args: &[&str], setup: impl FnOnce(&mut Command)) -> Value {
    let mut command = Command::new(python());
    command
        .arg(format!(
            "{}/tests/dcom/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(web.rpc_port().to_string())
        .args(args);
    setup(&mut command);
    let out = command
        .output()
        .expect("python3 with Impacket (pip install impacket==0.13.0)");
    web.last_json(&out)
}

/// impacket_imsa.py's answer, logged on as given.
fn imsa(web: &Web, user: &str, password: &str, level: &str, mechanism: &str) -> Value {
    let args = [user, password, level, mechanism];
    impacket(web, "impacket_imsa.py", &args, |command| {
        command.env("EXPORT_FILE", web.state().join("exported.xml"));
        if mechanism == "kerberos" {
            command
                .arg(kdc::REALM)
                .envs(kdc::kdc().client_env().iter().map(|(k, v)| (*k, v)));
        }
    })
}

/// A server with an administrator (boss, and alice for Kerberos) and a
/// user who is not one (clerk); its RPC endpoint takes the test realm's
/// service tickets.
fn server_with_users() -> Web {
    let mut web = Web::prepare();
    web.cli_ok(&["user", "add", "boss", "--password", "Secret-1", "--admin"]);
    web.cli_ok(&["user", "add", "alice", "--password", "Secret-3", "--admin"]);
    web.cli_ok(&["user", "add", "clerk", "--password", "Secret-2"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/AnonymousUserPass", "Hidden-1"]);
    web.rpc_args.extend([
        "--keytab".to_string(),
        kdc::kdc().keytab().display().to_string(),
    ]);
    web.launch();
    web
}

#[test]
fn an_administrator_uses_imsadminbasew_at_privacy_and_integrity_with_ntlm_and_spnego() {
    let web = server_with_users();
    for (user, password, level, mechanism) in [
        ("boss", "Secret-1", "privacy", "ntlm"),
        ("boss", "Secret-1", "integrity", "ntlm"),
        ("alice", "", "privacy", "kerberos"),
        ("alice", "", "integrity", "kerberos"),
    ] {
        let v = imsa(&web, user, password, level, mechanism);
        let what = format!("{level}/{mechanism}: {v}");
        assert_eq!(v["activation"], 0, "{what}");
        assert_eq!(v["open"], 0, "{what}");
        // A second write handle on the branch: ERROR_PATH_BUSY.
        assert_eq!(v["open_busy"], 0x8007_0094u64, "{what}");
        let keys: Vec<&str> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert!(keys.contains(&"1") && keys.contains(&"AppPools"), "{what}");
        // ERROR_NO_MORE_ITEMS ends the enumeration.
        assert_eq!(v["enum_end"], 0x8007_0103u64, "{what}");
        // SECURE data without a secure session (Impacket negotiates
        // none): refused, never clear.
        assert_eq!(v["secure"]["error"], E_ACCESSDENIED, "{what}");
        assert_eq!(v["comment_before"]["error"], 0, "{what}");
        assert_eq!(v["comment_before"]["type"], 2, "{what}");
        // CLEARTEXT_DATA_BLOB_SIGNATURE.
        assert_eq!(v["comment_before"]["signature"], 0x6243_6349u64, "{what}");
        assert_eq!(v["comment_small_buffer"]["error"], 0x8007_007au64, "{what}");
        assert_eq!(v["missing_key"]["error"], 0x8007_0003u64, "{what}");
        assert_eq!(v["set_comment"], 0, "{what}");
        // The key's last change time moved with the write; SetLastChangeTime
        // sets it.
        assert_eq!(v["change_time_moved"], true, "{what}");
        assert_eq!(v["set_change_time"], 0, "{what}");
        assert_eq!(v["change_time"], 0x01D0_0000_1234_5678u64, "{what}");
        assert_eq!(v["comment_after"]["text"], "Set over DCOM", "{what}");
        // Validated like the CLI: a key type that is no class is refused.
        assert_eq!(v["set_bad_keytype"], 0x8007_0057u64, "{what}");
        assert_eq!(v["add_key"], 0, "{what}");
        assert_eq!(v["add_key_again"], 0x8007_00b7u64, "{what}");
        assert_eq!(v["delete_key"], 0, "{what}");
        // CopyKey took the child along, RenameKey moved the copy,
        // DeleteChildKeys emptied it and left the original alone.
        for step in ["add_child", "copy_key", "rename_key", "delete_child_keys"] {
            assert_eq!(v[step], 0, "{step}: {what}");
        }
        assert_eq!(v["renamed_children"], 0x8007_0103u64, "{what}");
        assert_eq!(v["original_child"], "Child", "{what}");
        // CopyData put site 1's string server data on the new key.
        assert_eq!(v["copy_data"], 0, "{what}");
        assert_eq!(v["copied_comment"]["text"], "Set over DCOM", "{what}");
        // UnmarshalInterface hands back an OBJREF ("MEOW") for the object.
        assert_eq!(v["unmarshal"], "MEOW", "{what}");
        // GetAllData: the key's own data and, marked, what it inherits.
        assert_eq!(v["getall_small"], 0x8007_007au64, "{what}");
        let all = &v["getall"];
        assert_eq!(all["1002"]["text"], "IIsWebVirtualDir", "{what}");
        assert_eq!(all["1002"]["inherited"], false, "{what}");
        assert_eq!(all["6016"]["type"], 1, "AccessFlags: {what}");
        assert_eq!(all["6006"]["inherited"], true, "DefaultDoc: {what}");
        assert!(all.get("6021").is_none(), "no SECURE data: {what}");
        assert_eq!(v["getall_set"], v["set_number"], "{what}");
        // A path below the deepest key has that key's data set.
        assert_eq!(v["set_number_below"], v["set_number"], "{what}");
        // GetDataPaths: where KeyType is set, relative to the handle.
        assert_eq!(v["paths_small"], 0x8007_007au64, "{what}");
        assert_eq!(
            v["paths"],
            serde_json::json!(["/1/", "/1/Filters/", "/1/ROOT/"]),
            "{what}"
        );
        // IMSAdminBase3W, through RemQueryInterface on the same object.
        assert_eq!(v["backup"], 0, "{what}");
        assert_eq!(v["backup_again"], 0, "{what}");
        let backups = v["backups"].as_array().unwrap();
        assert!(
            backups.iter().any(|b| b == "dcomtest.0") && backups.iter().any(|b| b == "dcomtest.1"),
            "{what}"
        );
        assert_eq!(v["backups_end"], 0x8007_0103u64, "{what}");
        assert_eq!(v["restore_wrong_password"], E_ACCESSDENIED, "{what}");
        assert_eq!(v["restore"], 0, "{what}");
        assert_eq!(v["delete_backup"], 0, "{what}");
        assert_eq!(v["delete_missing_backup"], 0x8007_0002u64, "{what}");
        assert!(v["history"].is_array(), "{what}");
        assert_eq!(v["export"], 0, "{what}");
        assert_eq!(
            v["child_paths"],
            serde_json::json!(["Filters", "ROOT"]),
            "{what}"
        );
        assert!(v["change_number"].as_u64().unwrap() > 0, "{what}");
        assert_eq!(v["save"], 0, "{what}");
        assert_eq!(v["close"], 0, "{what}");
        assert_eq!(v["close_again"], 0x8007_0006u64, "{what}");
        assert_eq!(v["qi"], true, "{what}");
        assert_eq!(v["qi_unknown"], 0x8000_4002u64, "E_NOINTERFACE: {what}");
    }
    // The remote change is the running server's: the local CLI sees it,
    // and SaveData wrote it to MetaBase.xml.
    let comment = web.cli_ok(&["mb", "get", "W3SVC/1/ServerComment"]);
    assert!(comment.contains("Set over DCOM"), "{comment}");
    let xml = std::fs::read_to_string(web.state().join("MetaBase.xml")).unwrap();
    assert!(xml.contains("Set over DCOM"));
    // Export wrote site 1 to the file named, as `inetsrv config export`
    // would; the backups are the CLI's too.
    let exported = std::fs::read_to_string(web.state().join("exported.xml")).unwrap();
    assert!(exported.contains("IIsWebServer"), "{exported}");
    let backups = web.cli_ok(&["backup", "list"]);
    assert!(backups.contains("dcomtest"), "{backups}");
    let log = web.log();
    assert!(log.contains("DCOM: object activated"), "{log}");
    for level in ["integrity", "privacy"] {
        assert!(
            log.lines()
                .any(|l| l.contains("alice@INETSRV.TEST logged on")
                    && l.contains(&format!("with Negotiate (SPNEGO) at level {level}"))),
            "no Kerberos logon at level {level}:\n{log}"
        );
    }
}

#[test]
fn non_administrators_and_wrong_passwords_are_refused() {
    let web = server_with_users();
    // A user who is not an administrator cannot activate the class.
    let v = imsa(&web, "clerk", "Secret-2", "privacy", "ntlm");
    assert_eq!(v["activation"], E_ACCESSDENIED, "{v}");
    assert!(
        web.log().contains("the user is not an administrator"),
        "{}",
        web.log()
    );
    // An administrator below packet integrity is refused too.
    let v = imsa(&web, "boss", "Secret-1", "connect", "ntlm");
    assert_eq!(v["activation"], E_ACCESSDENIED, "{v}");
    assert!(
        web.log()
            .contains("packet integrity or privacy is required"),
        "{}",
        web.log()
    );
    // Made one, the same user can.
    web.cli_ok(&["user", "set", "clerk", "--admin", "true"]);
    let v = imsa(&web, "clerk", "Secret-2", "integrity", "ntlm");
    assert_eq!(v["activation"], 0, "{v}");
    // A wrong password does not log on at all.
    let v = imsa(&web, "boss", "wrong", "privacy", "ntlm");
    assert_eq!(v, serde_json::json!({"activation": "rpc_s_access_denied"}));
    // The server goes on serving.
    let v = imsa(&web, "boss", "Secret-1", "privacy", "ntlm");
    assert_eq!(v["activation"], 0, "{v}");
}

#[test]
fn a_client_that_dies_without_releasing_loses_its_object_and_handles_when_it_stops_pinging() {
    let mut web = Web::prepare();
    web.cli_ok(&["user", "add", "boss", "--password", "Secret-1", "--admin"]);
    web.rpc_args
        .extend(["--dcom-ping-timeout".to_string(), "1".to_string()]);
    web.launch();
    // The first client opens /LM/W3SVC for writing and dies.
    let v = imsa(&web, "boss", "Secret-1", "privacy", "abandon");
    assert_eq!(v["open"], 0, "{v}");
    // Its object outlives it until its ping timeout; then its handle is
    // closed and another client may write. Each try is a whole client
    // run; ten seconds bound the wait for the one-second timeout.
    let started = std::time::Instant::now();
    loop {
        let v = imsa(&web, "boss", "Secret-1", "privacy", "ntlm");
        if v["open"] == 0 {
            assert_eq!(v["set_comment"], 0, "{v}");
            break;
        }
        assert_eq!(v["open"], 0x8007_0094u64, "ERROR_PATH_BUSY: {v}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the abandoned object was never reclaimed:\n{}",
            web.log()
        );
    }
    let log = web.log();
    assert!(
        log.contains("object reclaimed (its client stopped pinging)"),
        "{log}"
    );
    assert!(log.contains("handles open; they are closed"), "{log}");
}

/// impacket_iiss.py's answer to the steps given.
fn iiss(web: &Web, user: &str, password: &str, steps: &[&str]) -> Value {
    impacket(
        web,
        "impacket_iiss.py",
        &[&[user, password], steps].concat(),
        |_| {},
    )
}

#[test]
fn iisreset_on_the_wire_stops_starts_and_reports_the_web_service() {
    let web = server_with_users();
    assert_eq!(web.curl("/", &[]).status, 200);
    let before = web.worker_pids("DefaultAppPool", "running");
    assert!(!before.is_empty());
    let v = iiss(&web, "boss", "Secret-1", &["status", "stop", "status"]);
    assert_eq!(v["activation"], 0, "{v}");
    let steps = v["steps"].as_array().unwrap();
    // Too small a buffer first: E_ERROR_INSUFFICIENT_BUFFER, then the blob.
    assert_eq!(steps[0]["small"], 0x8007_007au64, "{v}");
    assert_eq!(
        steps[0]["services"],
        serde_json::json!([{"name": "W3SVC", "state": 4}]),
        "SERVICE_RUNNING: {v}"
    );
    assert_eq!(steps[1]["error"], 0, "{v}");
    assert_eq!(steps[2]["services"][0]["state"], 1, "SERVICE_STOPPED: {v}");
    // The site is stopped: the listener no longer serves it.
    assert_ne!(web.curl("/", &[]).status, 200);
    let sites = web.cli_ok(&["site", "list"]);
    assert!(sites.contains("stopped"), "{sites}");

    // Stopping the pool ended its worker.
    assert!(web.worker_pids("DefaultAppPool", "running").is_empty());
    let v = iiss(&web, "boss", "Secret-1", &["start", "status", "reboot"]);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["error"], 0, "{v}");
    assert_eq!(steps[1]["services"][0]["state"], 4, "{v}");
    // Reboot is not implemented (E_NOTIMPL), and says so in the log.
    assert_eq!(steps[2]["error"], 0x8000_4001u64, "{v}");
    assert!(web.log().contains("Reboot refused"));
    assert_eq!(web.curl("/", &[]).status, 200);
    let serving = web.worker_pids("DefaultAppPool", "running");
    assert!(!serving.is_empty());
    assert!(serving.iter().all(|p| !before.contains(p)));

    // Kill replaces every worker process.
    let v = iiss(&web, "boss", "Secret-1", &["kill"]);
    assert_eq!(v["steps"][0]["error"], 0, "{v}");
    assert_eq!(web.curl("/", &[]).status, 200);
    let after = web.worker_pids("DefaultAppPool", "running");
    assert!(
        after.iter().all(|p| !serving.contains(p)),
        "{serving:?} {after:?}"
    );

    // Only administrators may.
    let v = iiss(&web, "clerk", "Secret-2", &["stop"]);
    assert_eq!(v["activation"], E_ACCESSDENIED, "{v}");
    assert_eq!(web.curl("/", &[]).status, 200);
}

#[test]
fn the_cli_resets_this_server_over_its_socket_and_another_over_tcp() {
    let web = server_with_users();
    // On this machine: root needs no logon on the RPC socket.
    let status = web.cli_ok(&["iisreset", "--status"]);
    assert!(
        status.contains("Status for World Wide Web Publishing Service ( W3SVC ) : Running"),
        "{status}"
    );
    let server = format!("127.0.0.1:{}", web.rpc_port());
    let remote = |extra: &[&str]| {
        let mut args = vec![
            "iisreset",
            "--server",
            &server,
            "--user",
            "boss",
            "--password",
            "Secret-1",
        ];
        args.extend_from_slice(extra);
        web.cli(&args)
    };
    let out = remote(&["--stop"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Internet services successfully stopped"),
        "{text}"
    );
    assert_ne!(web.curl("/", &[]).status, 200);
    let json = web.cli_ok(&["iisreset", "--status", "--json"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["state"], "Stopped", "{v}");
    // A restart at integrity with NTLM alone.
    let out = remote(&["--level", "integrity", "--auth", "ntlm"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Internet services successfully restarted"),
        "{text}"
    );
    assert_eq!(web.curl("/", &[]).status, 200);
    // Someone who is not an administrator is told so.
    let out = web.cli(&[
        "iisreset",
        "--server",
        &server,
        "--user",
        "clerk",
        "--password",
        "Secret-2",
        "--stop",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("E_ACCESSDENIED"), "{err}");
    assert_eq!(web.curl("/", &[]).status, 200);
    // Every object the CLI activated (four) was released by it.
    let log = web.log();
    assert_eq!(log.matches("DCOM: object activated").count(), 4, "{log}");
    assert_eq!(log.matches("DCOM: object released").count(), 4, "{log}");
}

/// The resolver's and the exporter's own methods through the DCOM client
/// runtime: IActivation::RemoteActivation (which Impacket does not send),
/// IObjectExporter (ServerAlive, ServerAlive2, ResolveOxid(2),
/// ComplexPing, SimplePing), IRemUnknown2::RemQueryInterface2.
#[test]
fn the_resolver_and_exporter_answer_every_method() {
    use dcom::interfaces::{ActivationClient, ObjectExporterClient, RemUnknown2AddsClient};
    use dcom::objref::ObjRef;
    use dcom::types::OrpcThis;
    use msrpc::client::Connection;
    use msrpc::ndr::{ConformantArray, Unique};

    let (web, addr, runtime) = live_rpc();
    runtime.block_on(async {
        let options = ntlm_privacy("boss", "Secret-1");
        let mut conn = Connection::connect_tcp(addr, options).await.unwrap();
        let this = || OrpcThis::new(dcom::ids::COM_VERSION);

        let mut resolver = ObjectExporterClient::bind(&mut conn).await.unwrap();
        assert_eq!(resolver.server_alive().await.unwrap(), 0);
        let (version, bindings, _, status) = resolver.server_alive2().await.unwrap();
        assert_eq!((version.major, version.minor, status), (5, 7, 0));
        let bindings = dcom::objref::Bindings::from_idl(bindings.get().unwrap()).unwrap();
        // The resolver's bindings carry no endpoint.
        assert!(bindings
            .strings
            .iter()
            .any(|(t, a)| *t == 7 && a == "127.0.0.1"));

        // RemoteActivation: IMSAdminBaseW and an interface it lacks.
        let missing = msrpc::Uuid::random();
        let mut activation = ActivationClient::bind(&mut conn).await.unwrap();
        let reply = activation
            .remote_activation(
                this(),
                iisadmin::imsa::CLSID_MSADMIN_BASE_W,
                Unique::new(None),
                Unique::new(None),
                2,
                0,
                2,
                Unique::new(Some(ConformantArray(vec![
                    iisadmin::imsa::IID_IMSADMIN_BASE_W,
                    missing,
                ]))),
                1,
                ConformantArray(vec![7]),
            )
            .await
            .unwrap();
        let (_, oxid, oxid_bindings, rem_unknown, hint, _, hr, pointers, results, _) = reply;
        assert_eq!(hr, 0);
        assert_eq!(hint, 5, "packet integrity");
        assert_eq!(results.0, vec![0, dcom::ids::E_NOINTERFACE]);
        let exporter = dcom::objref::Bindings::from_idl(oxid_bindings.get().unwrap()).unwrap();
        let endpoint = format!("127.0.0.1[{}]", web.rpc_port());
        assert!(
            exporter.strings.iter().any(|(_, a)| *a == endpoint),
            "{exporter:?}"
        );
        let Ok(ObjRef::Standard { std, .. }) = ObjRef::decode(&pointers.0[0].get().unwrap().data)
        else {
            panic!("not a standard reference");
        };
        assert_eq!(std.oxid, oxid);
        assert!(pointers.0[1].get().is_none());

        // An unknown class.
        let (.., hr, _, _, _) = activation
            .remote_activation(
                this(),
                msrpc::Uuid::random(),
                Unique::new(None),
                Unique::new(None),
                2,
                0,
                1,
                Unique::new(Some(ConformantArray(vec![
                    iisadmin::imsa::IID_IMSADMIN_BASE_W,
                ]))),
                1,
                ConformantArray(vec![7]),
            )
            .await
            .unwrap();
        assert_eq!(hr, dcom::ids::REGDB_E_CLASSNOTREG);

        let mut resolver = ObjectExporterClient::bind(&mut conn).await.unwrap();
        let (b, ipid, _, version, status) = resolver
            .resolve_oxid2(oxid, 1, ConformantArray(vec![7]))
            .await
            .unwrap();
        assert_eq!((status, ipid, version.minor), (0, rem_unknown, 7));
        assert!(b.get().is_some());
        let (.., status) = resolver
            .resolve_oxid(oxid ^ 1, 1, ConformantArray(vec![7]))
            .await
            .unwrap();
        assert_eq!(status, dcom::ids::OR_INVALID_OXID);
        // A ping set holding the object, pinged.
        let (set, _, status) = resolver
            .complex_ping(
                0,
                1,
                1,
                0,
                Unique::new(Some(ConformantArray(vec![std.oid]))),
                Unique::new(None),
            )
            .await
            .unwrap();
        assert_eq!(status, 0);
        assert_eq!(resolver.simple_ping(set).await.unwrap(), 0);
        assert_eq!(
            resolver.simple_ping(set ^ 1).await.unwrap(),
            dcom::ids::OR_INVALID_SET
        );
        let (_, _, status) = resolver
            .complex_ping(
                0,
                1,
                1,
                0,
                Unique::new(Some(ConformantArray(vec![12345]))),
                Unique::new(None),
            )
            .await
            .unwrap();
        assert_eq!(status, dcom::ids::OR_INVALID_OID);

        // RemQueryInterface2 on the Remote Unknown: 3W, as an OBJREF.
        let mut unknown = RemUnknown2AddsClient::bind(&mut conn)
            .await
            .unwrap()
            .on_object(rem_unknown);
        let (_, hrs, pointers, hr) = unknown
            .rem_query_interface2(
                this(),
                std.ipid,
                2,
                ConformantArray(vec![iisadmin::imsa::IID_IMSADMIN_BASE3_W, missing]),
            )
            .await
            .unwrap();
        assert_eq!(hrs.0, vec![0, dcom::ids::E_NOINTERFACE]);
        assert_eq!(hr, dcom::ids::E_NOINTERFACE);
        let Ok(ObjRef::Standard { iid, .. }) = ObjRef::decode(&pointers.0[0].get().unwrap().data)
        else {
            panic!("not a standard reference");
        };
        assert_eq!(iid, iisadmin::imsa::IID_IMSADMIN_BASE3_W);
        // RemoteGetClassObject: a class factory, whose RemoteCreateInstance
        // makes an IMSAdminBaseW that answers.
        let mut scm = dcom::interfaces::RemoteScmActivatorClient::bind(&mut conn)
            .await
            .unwrap();
        let (_, reply, hr) = scm
            .remote_get_class_object(
                this(),
                Unique::new(Some(dcom::activation::build_request(
                    iisadmin::imsa::CLSID_MSADMIN_BASE_W,
                    &[dcom::ids::IID_ICLASS_FACTORY],
                ))),
            )
            .await
            .unwrap();
        assert_eq!(hr, 0);
        let reply = dcom::activation::parse_reply(reply.get().unwrap()).unwrap();
        let Some(ObjRef::Standard { std: factory, .. }) = &reply.interfaces[0].2 else {
            panic!("no class factory");
        };
        let mut factory_client = dcom::interfaces::ClassFactoryClient::bind(&mut conn)
            .await
            .unwrap()
            .on_object(factory.ipid);
        let (_, admin, hr) = factory_client
            .remote_create_instance(this(), iisadmin::imsa::IID_IMSADMIN_BASE_W)
            .await
            .unwrap();
        assert_eq!(hr, 0);
        let Ok(ObjRef::Standard { std: admin, .. }) = ObjRef::decode(&admin.get().unwrap().data)
        else {
            panic!("not a standard reference");
        };
        let mut imsa = iisadmin::imsa::MsAdminBaseWClient::bind(&mut conn)
            .await
            .unwrap()
            .on_object(admin.ipid);
        let (_, change_number, hr) = imsa.get_system_change_number(this()).await.unwrap();
        assert_eq!(hr, 0);
        assert!(change_number > 0);

        // A call on the Remote Unknown without its IPID is refused.
        let mut wrong = RemUnknown2AddsClient::bind(&mut conn).await.unwrap();
        assert!(wrong
            .rem_query_interface2(this(), std.ipid, 1, ConformantArray(vec![missing]))
            .await
            .is_err());
    });
}

/// The Inetinfo interface ([MS-IRP]) through Impacket, and `inetsrv
/// stats`: the counters the listener keeps as it answers.
#[test]
fn the_web_services_statistics_count_what_was_answered() {
    let web = server_with_users();
    for _ in 0..3 {
        assert_eq!(web.curl("/", &[]).status, 200);
    }
    assert_eq!(web.curl("/", &["-I"]).status, 200);
    assert_eq!(web.curl("/missing.html", &[]).status, 404);
    web.curl("/", &["-X", "BREW"]);

    let v = impacket(
        &web,
        "impacket_irp.py",
        &["boss", "Secret-1", "clear"],
        |_| {},
    );
    assert_eq!(v["version"], 6, "IIS 6.0: {v}");
    // The start page went into the response cache on the first GET and was
    // answered from it after (URI cache counters), the 404 was a miss.
    let cache = &v["cache"];
    assert!(cache["uri_cached"].as_u64().unwrap() >= 1, "{v}");
    assert!(cache["uri_hits"].as_u64().unwrap() >= 1, "{v}");
    assert!(cache["uri_misses"].as_u64().unwrap() >= 2, "{v}");
    assert!(cache["bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(cache["allowed"], 6, "{v}");
    let total = &v["total"];
    assert_eq!(total["gets"], 4, "{v}");
    assert_eq!(total["heads"], 1, "{v}");
    assert_eq!(total["others"], 1, "BREW: {v}");
    assert_eq!(total["not_found"], 1, "{v}");
    assert_eq!(total["anonymous"], 6, "{v}");
    assert!(total["sent"].as_u64().unwrap() > 0 && total["received"].as_u64().unwrap() > 0);
    assert!(total["attempts"].as_u64().unwrap() >= 6, "{v}");
    assert_eq!(v["site1"]["gets"], 4, "{v}");
    assert_eq!(v["site99"]["error"], 2, "ERROR_FILE_NOT_FOUND: {v}");
    assert_eq!(v["level7"]["error"], 0x7c, "ERROR_INVALID_LEVEL: {v}");
    assert_eq!(v["clear"], 0, "{v}");
    assert_eq!(v["site1_after"]["gets"], 0, "{v}");
    assert_eq!(
        v["sites"],
        serde_json::json!([[1, "Default Web Site"]]),
        "{v}"
    );
    assert_eq!(v["clear_all"], 0, "{v}");
    assert_eq!(v["total_after"]["gets"], 0, "{v}");

    // The CLI: the service's counters are its sites' sums, so clearing
    // site 1 (where every request went) cleared them too.
    let json = web.cli_ok(&["stats", "--json"]);
    let all: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(all["requests"]["GET"], 0, "{json}");
    assert_eq!(web.curl("/", &[]).status, 200);
    let json = web.cli_ok(&["stats", "--json"]);
    let all: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(all["requests"]["GET"], 1, "{json}");
    let server = format!("127.0.0.1:{}", web.rpc_port());
    let site = web.cli_ok(&[
        "stats",
        "--site",
        "1",
        "--server",
        &server,
        "--user",
        "boss",
        "--password",
        "Secret-1",
    ]);
    assert!(site.contains("Web service statistics, site 1"), "{site}");
    assert!(site.contains("requests              GET 1"), "{site}");
    let out = web.cli(&[
        "stats",
        "--server",
        &server,
        "--user",
        "clerk",
        "--password",
        "Secret-2",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access denied"));
}

/// `inetsrv mb … --server` and `inetsrv vdir … --server`: the verbs print
/// for a remote server what they print locally (SECURE values included,
/// after the key exchange), and the writing verbs change the remote server.
#[test]
fn mb_works_on_a_remote_server_as_on_a_local_one() {
    let web = server_with_users();
    let server = format!("127.0.0.1:{}", web.rpc_port());
    // A command line, sent to the server as `user`.
    let on_server = |args: &[&str], user: &str, password: &str| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--server", &server, "--user", user, "--password", password].map(String::from));
        web.cli(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let remote = |args: &[&str]| {
        let out = on_server(args, "boss", "Secret-1");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |args: &[&str]| {
        let out = on_server(args, "boss", "Secret-1");
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for args in [
        &["mb", "get", "W3SVC/1/ServerComment"][..],
        &["mb", "get", "W3SVC/1/ROOT/DefaultDoc"],
        &["--json", "mb", "get", "W3SVC/1/ROOT/AccessFlags"],
        &["mb", "enum", "W3SVC/1/ROOT"],
        &["--json", "mb", "enum", "W3SVC/AppPools"],
        &["mb", "find", "ServerBindings"],
    ] {
        assert_eq!(remote(args), web.cli_ok(args), "{args:?}");
    }
    let all = ["mb", "enum-all", "/"];
    assert_eq!(remote(&all), web.cli_ok(&all));
    // SECURE values too, shown when asked, after the key exchange.
    let secret = ["--show-secrets", "mb", "get", "W3SVC/1/AnonymousUserPass"];
    assert_eq!(remote(&secret), web.cli_ok(&secret));
    assert!(remote(&secret).contains("Hidden-1"));
    // Errors are the local ones.
    assert!(
        refused(&["mb", "get", "W3SVC/1/NoSuchThing"]).contains("unknown property 'NoSuchThing'")
    );
    // The writing verbs: checked on the copy as locally (same messages),
    // then made on the server, whose own copy shows them.
    remote(&["mb", "set", "W3SVC/1/ServerComment", "Set remotely"]);
    let local = web.cli_ok(&["mb", "get", "W3SVC/1/ServerComment"]);
    assert!(local.contains("Set remotely"), "{local}");
    remote(&["mb", "create", "W3SVC/1/ROOT/far", "IIsWebVirtualDir"]);
    remote(&["mb", "set", "W3SVC/1/ROOT/far/Path", "/tmp"]);
    remote(&["mb", "copy", "W3SVC/1/ROOT/far", "W3SVC/1/ROOT/farcopy"]);
    remote(&["mb", "rename", "W3SVC/1/ROOT/farcopy", "W3SVC/1/ROOT/moved"]);
    let copied = web.cli_ok(&["mb", "get", "W3SVC/1/ROOT/moved/Path"]);
    assert!(copied.contains("\"/tmp\""), "{copied}");
    remote(&["mb", "delete", "W3SVC/1/ROOT/moved"]);
    remote(&["mb", "delete", "W3SVC/1/ROOT/far/Path"]);
    let listing = web.cli_ok(&["mb", "enum", "W3SVC/1/ROOT"]);
    assert!(listing.contains("[/LM/W3SVC/1/ROOT/far]") && !listing.contains("moved"));
    // A value the schema refuses is refused with the local message, and
    // nothing is sent.
    let there = refused(&["mb", "set", "W3SVC/1/ServerBindings", "nonsense"]);
    let out = web.cli(&["mb", "set", "W3SVC/1/ServerBindings", "nonsense"]);
    let here = String::from_utf8_lossy(&out.stderr).into_owned();
    let message = here.trim().trim_start_matches("inetsrv: error: ");
    assert!(there.trim().ends_with(message), "{there} / {here}");
    // A SECURE value is sent encrypted (R_KeyExchangePhase1/2), and kept
    // SECURE (sealed) on the server.
    remote(&["mb", "set", "W3SVC/1/AnonymousUserPass", "Sent-Sealed-1"]);
    assert!(web
        .cli_ok(&["--show-secrets", "mb", "get", "W3SVC/1/AnonymousUserPass"])
        .contains("Sent-Sealed-1"));
    let file = std::fs::read_to_string(web.state().join("MetaBase.xml")).unwrap();
    assert!(!file.contains("Sent-Sealed-1"), "sealed at rest");
    // The schema too: a property added remotely is the server's, and
    // taken there at once.
    remote(&[
        "mb",
        "schema",
        "add-property",
        "ShopRegion",
        "--id",
        "70001",
        "--type",
        "STRING",
        "--class",
        "IIsWebServer",
    ]);
    remote(&["mb", "set", "W3SVC/1/ShopRegion", "north"]);
    assert!(web
        .cli_ok(&["mb", "get", "W3SVC/1/ShopRegion"])
        .contains("\"north\""));
    let schema = std::fs::read_to_string(web.state().join("MBSchema.xml")).unwrap();
    assert!(
        schema.contains("ShopRegion"),
        "saved with the server's schema"
    );
    // Not an administrator: refused.
    let out = on_server(&["mb", "get", "W3SVC/1/ServerComment"], "clerk", "Secret-2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("E_ACCESSDENIED"));

    // `vdir` too: a virtual directory made remotely serves at once.
    assert_eq!(
        remote(&["vdir", "list", "1"]),
        web.cli_ok(&["vdir", "list", "1"])
    );
    let far = web.state().join("far");
    std::fs::create_dir_all(&far).unwrap();
    std::fs::write(far.join("hello.txt"), "far away").unwrap();
    let made = remote(&["vdir", "create", "1", "faraway", &far.display().to_string()]);
    assert!(
        made.contains("virtual directory /faraway of site 1 created"),
        "{made}"
    );
    let got = web.curl("/faraway/hello.txt", &[]);
    assert_eq!((got.status, got.text().as_str()), (200, "far away"));
    remote(&["vdir", "delete", "1", "faraway"]);
    assert_eq!(web.curl("/faraway/hello.txt", &[]).status, 404);
}

/// `inetsrv mb watch` running until its stderr says it watches; its
/// stdout lines arrive on the channel.
struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Its stderr after the first line (kept open: it may say more).
    stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Watcher {
    fn start(cli_of: &Web, args: &[&str]) -> Watcher {
        use std::io::BufRead;
        let mut child = Command::new(common::BIN)
            .args(cli_of.target())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(first.starts_with("watching "), "{first}");
        Watcher {
            child,
            lines,
            stderr,
        }
    }

    /// The JSON lines printed until `done` says enough (within a minute).
    fn until(&self, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done(&seen) {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(serde_json::from_str(&line).unwrap()),
                Err(_) => panic!("the watcher printed only {seen:?}"),
            }
        }
        seen
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has(seen: &[Value], path: &str, change: &str) -> bool {
    seen.iter().any(|v| {
        v["path"] == path
            && v["change"]
                .as_array()
                .is_some_and(|c| c.iter().any(|k| k == change))
    })
}

#[test]
fn mb_watch_on_a_second_server_sees_its_changes_through_the_notification_sink() {
    let mut far = server_with_users();
    let server = format!("127.0.0.1:{}", far.rpc_port());
    // The CLI's own state directory has a server of its own, whose changes
    // the watcher of the far one must not see.
    let mut near = Web::prepare();
    near.launch();
    let logon = [
        "--server",
        &server,
        "--user",
        "boss",
        "--password",
        "Secret-1",
    ];
    let watch_args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["--json", "mb", "watch", "W3SVC/1/ROOT"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        args.extend(logon.iter().map(|s| s.to_string()));
        args
    };
    let args = watch_args(&[]);
    let watcher = Watcher::start(&near, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let on_far = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(logon);
        near.cli_ok(&all)
    };
    // A change on the near server, then one made on the far server over
    // --server, one made there locally, one outside the watched key.
    near.cli_ok(&["mb", "create", "W3SVC/1/ROOT/near", "IIsWebVirtualDir"]);
    on_far(&["mb", "create", "W3SVC/1/ROOT/seen", "IIsWebVirtualDir"]);
    far.cli_ok(&["mb", "set", "W3SVC/1/ROOT/seen/Path", "/tmp"]);
    far.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "outside"]);
    on_far(&["mb", "delete", "W3SVC/1/ROOT/seen"]);
    let seen = watcher.until(|seen| has(seen, "/LM/W3SVC/1/ROOT/seen", "delete_object"));
    assert!(
        has(&seen, "/LM/W3SVC/1/ROOT/seen", "add_object"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|v| v["path"] == "/LM/W3SVC/1/ROOT/seen"
            && v["properties"]
                .as_array()
                .is_some_and(|p| p.iter().any(|n| n == "Path"))
            && v["ids"]
                .as_array()
                .is_some_and(|i| i.iter().any(|n| n == 3001))),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|v| v["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/LM/W3SVC/1/ROOT/") && !p.contains("near"))),
        "only the far server's changes at or below the key: {seen:?}"
    );
    // The same change, seen by a local `mb get` on the far server.
    on_far(&["mb", "set", "W3SVC/1/ROOT/AppFriendlyName", "Remote name"]);
    assert!(far
        .cli_ok(&["mb", "get", "W3SVC/1/ROOT/AppFriendlyName"])
        .contains("Remote name"));
    let more = watcher.until(|seen| {
        seen.iter().any(|v| {
            v["properties"]
                .as_array()
                .is_some_and(|p| p.iter().any(|n| n == "AppFriendlyName"))
        })
    });
    assert_eq!(more.last().unwrap()["path"], "/LM/W3SVC/1/ROOT");
    // Ctrl-C: the watcher unadvises and releases before it ends.
    watcher.signal(nix::sys::signal::Signal::SIGINT);
    let mut watcher = watcher;
    assert!(watcher.child.wait().unwrap().success());
    let wait_log = |text: &str| {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !far.log().contains(text) {
            assert!(
                std::time::Instant::now() < end,
                "no {text:?} in\n{}",
                far.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_log("IMSAdminBaseSinkW: a sink is unadvised");

    // A watcher that dies without a word loses its sink at the next
    // change; the server goes on serving.
    let args = watch_args(&[]);
    let doomed = Watcher::start(&near, &args.iter().map(String::as_str).collect::<Vec<_>>());
    doomed.signal(nix::sys::signal::Signal::SIGKILL);
    let mut doomed = doomed;
    let _ = doomed.child.wait();
    far.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AppFriendlyName", "After"]);
    wait_log("IMSAdminBaseSinkW: the sink is dropped");
    assert_eq!(far.curl("/", &[]).status, 200);

    // --count and --timeout end a watch; non-administrators are refused.
    let args = watch_args(&["--count", "1"]);
    let counted = Watcher::start(&near, &args.iter().map(String::as_str).collect::<Vec<_>>());
    far.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AppFriendlyName", "Counted"]);
    let mut counted = counted;
    assert!(counted.child.wait().unwrap().success());
    let args = watch_args(&["--timeout", "0.5"]);
    let mut timed = Watcher::start(&near, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(timed.child.wait().unwrap().success());
    let out = near.cli(&[
        "mb",
        "watch",
        "--server",
        &server,
        "--user",
        "clerk",
        "--password",
        "Secret-2",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("E_ACCESSDENIED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A server that stops tells its sinks (ShutdownNotify): the watch ends.
    let args = watch_args(&[]);
    let mut last = Watcher::start(&near, &args.iter().map(String::as_str).collect::<Vec<_>>());
    far.signal("TERM");
    far.wait_exit(std::time::Duration::from_secs(60));
    assert!(last.child.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut last.stderr, &mut rest).unwrap();
    assert!(rest.contains("the server is shutting down"), "{rest}");
}

#[test]
fn site_and_pool_verbs_work_on_a_remote_server_as_on_a_local_one() {
    let far = server_with_users();
    let server = format!("127.0.0.1:{}", far.rpc_port());
    // The CLI is another machine's: its own state directory, no server.
    let near = Web::prepare();
    let logon = [
        "--server",
        &server,
        "--user",
        "boss",
        "--password",
        "Secret-1",
    ];
    let on_far = |args: &[&str], user: &[&str]| {
        let mut all = args.to_vec();
        all.extend(user);
        near.cli(&all)
    };
    let remote = |args: &[&str]| {
        let out = on_far(args, &logon);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |args: &[&str]| {
        let out = on_far(args, &logon);
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Listing: the same as on the server itself (worker uptimes aside).
    let uptimes = |json: &str| {
        let mut v: Value = serde_json::from_str(json).unwrap();
        for pool in v.as_array_mut().unwrap() {
            for w in pool["workers"].as_array_mut().unwrap() {
                w["uptime_seconds"] = Value::Null;
            }
        }
        v
    };
    assert_eq!(remote(&["site", "list"]), far.cli_ok(&["site", "list"]));
    assert_eq!(
        uptimes(&remote(&["--json", "pool", "list"])),
        uptimes(&far.cli_ok(&["--json", "pool", "list"]))
    );
    // A pool and a site made remotely serve at once.
    let dir = far.state().join("remote-site");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.htm"), "made from afar").unwrap();
    let port = common::free_port();
    assert_eq!(
        remote(&["pool", "create", "Far"]),
        "application pool Far created\n"
    );
    let made = remote(&[
        "site",
        "create",
        "Far Site",
        "--path",
        dir.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--pool",
        "Far",
    ]);
    assert!(made.starts_with("site 2 (Far Site) created"), "{made}");
    let get = || common::web::curl(&format!("http://127.0.0.1:{port}/"), &[]);
    assert_eq!(
        (get().status, get().text().as_str()),
        (200, "made from afar")
    );
    let listed = far.cli_ok(&["--json", "site", "list"]);
    assert!(listed.contains("\"Far Site\""), "{listed}");
    // Commands: stop, start, pause, continue, recycle, as locally.
    assert_eq!(remote(&["site", "stop", "Far Site"]), "site 2 stopped\n");
    assert_ne!(get().status, 200);
    assert_eq!(remote(&["site", "start", "2"]), "site 2 started\n");
    assert_eq!(remote(&["site", "pause", "2"]), "site 2 paused\n");
    assert_eq!(get().status, 503);
    assert_eq!(remote(&["site", "continue", "2"]), "site 2 continued\n");
    assert_eq!(get().status, 200);
    let before = far.worker_pids("Far", "running");
    assert!(!before.is_empty());
    let recycled = remote(&["pool", "recycle", "Far"]);
    assert!(
        recycled.starts_with("application pool Far recycled ("),
        "{recycled}"
    );
    far.wait_for("new workers", std::time::Duration::from_secs(30), || {
        let now = far.worker_pids("Far", "running");
        !now.is_empty() && now.iter().all(|p| !before.contains(p))
    });
    assert_eq!(
        remote(&["pool", "stop", "Far"]),
        "application pool Far stopped\n"
    );
    assert_eq!(get().status, 503);
    assert_eq!(
        remote(&["pool", "start", "Far"]),
        "application pool Far started\n"
    );
    assert_eq!(get().status, 200);
    // Bindings, and errors in the local words.
    let extra = common::free_port();
    remote(&["site", "bind", "2", &format!(":{extra}:")]);
    let got = common::web::curl(&format!("http://127.0.0.1:{extra}/"), &[]);
    assert_eq!(got.status, 200);
    assert!(refused(&["site", "pause", "9"]).contains("no site '9'"));
    assert!(refused(&["pool", "recycle", "Nope"]).contains("no application pool named 'Nope'"));
    assert!(refused(&["pool", "delete", "Far"]).contains("is used by site 2"));
    assert!(refused(&["site", "create", "Rel", "--path", "rel"])
        .contains("give the directory's absolute path on the server"));
    // Not an administrator: refused before anything is done.
    let out = on_far(
        &["pool", "stop", "Far"],
        &[
            "--server",
            &server,
            "--user",
            "clerk",
            "--password",
            "Secret-2",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(get().status, 200);
    // Deleting, remotely.
    assert_eq!(remote(&["site", "delete", "2"]), "site 2 deleted\n");
    assert_eq!(
        remote(&["pool", "delete", "Far"]),
        "application pool Far deleted\n"
    );
    assert!(!far.cli_ok(&["pool", "list"]).contains("Far"));
}

#[test]
fn backup_and_config_verbs_work_on_a_remote_server() {
    let far = server_with_users();
    let server = format!("127.0.0.1:{}", far.rpc_port());
    let near = Web::prepare();
    let logon = [
        "--server",
        &server,
        "--user",
        "boss",
        "--password",
        "Secret-1",
    ];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(logon);
        near.cli(&all)
    };
    let remote = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Backups made remotely are the server's (MetaBack/ there).
    far.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Before"]);
    assert_eq!(
        remote(&["backup", "create", "nightly"]),
        "created backup nightly version 0\n"
    );
    assert_eq!(
        remote(&["backup", "create", "sealed", "--seal-password", "pw"]),
        "created backup sealed version 0\n"
    );
    let there: Value = serde_json::from_str(&far.cli_ok(&["--json", "backup", "list"])).unwrap();
    let names: Vec<(&str, bool)> = there
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap(),
                b["password_protected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        names.contains(&("nightly", false)) && names.contains(&("sealed", true)),
        "{names:?}"
    );
    let listed: Value = serde_json::from_str(&remote(&["--json", "backup", "list"])).unwrap();
    let versions = |v: &Value| {
        let mut all: Vec<(String, u64, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["name"].as_str().unwrap().to_string(),
                    b["version"].as_u64().unwrap(),
                    b["date"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        all.sort();
        all
    };
    assert_eq!(versions(&listed), versions(&there));
    // inetsrv's tree interface says which a password seals.
    let sealed = |v: &Value| {
        let mut all: Vec<(String, bool)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let name = b["name"].as_str().unwrap().to_string();
                (name, b["password_protected"].as_bool().unwrap())
            })
            .collect();
        all.sort();
        all
    };
    assert_eq!(sealed(&listed), sealed(&there));
    // Restore, remotely: the server's configuration goes back.
    far.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "After"]);
    assert_eq!(
        remote(&["backup", "restore", "nightly"]),
        "restored backup nightly version 0\n"
    );
    assert!(far
        .cli_ok(&["mb", "get", "W3SVC/1/ServerComment"])
        .contains("Before"));
    let out = run(&["backup", "restore", "sealed", "--seal-password", "wrong"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0x80070005"));
    assert_eq!(
        remote(&["backup", "delete", "nightly"]),
        "deleted backup nightly version 0\n"
    );
    assert!(!far.cli_ok(&["backup", "list"]).contains("nightly"));
    // The configuration: save, history, export and import on the server.
    let saved = remote(&["config", "save"]);
    assert!(
        saved.starts_with("saved the server's configuration as version "),
        "{saved}"
    );
    let history = |text: &str| {
        let v: Value = serde_json::from_str(text).unwrap();
        let mut all: Vec<(u64, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["major"].as_u64().unwrap(), e["minor"].as_u64().unwrap()))
            .collect();
        all.sort();
        all
    };
    let versions_there = history(&far.cli_ok(&["--json", "config", "history"]));
    assert_eq!(
        history(&remote(&["--json", "config", "history"])),
        versions_there
    );
    let newest = versions_there.last().unwrap();
    assert!(
        saved.contains(&format!("{}.{}", newest.0, newest.1)),
        "{saved}"
    );
    let file = far.state().join("site1.xml");
    let file = file.to_str().unwrap();
    remote(&["config", "export", "--path", "W3SVC/1/ROOT", "--file", file]);
    assert!(std::fs::read_to_string(file)
        .unwrap()
        .contains("IIsWebVirtualDir"));
    remote(&[
        "config",
        "import",
        "--file",
        file,
        "--source-path",
        "W3SVC/1/ROOT",
        "--dest-path",
        "W3SVC/1/ROOT/imported",
    ]);
    assert!(far
        .cli_ok(&["mb", "enum", "W3SVC/1/ROOT"])
        .contains("/LM/W3SVC/1/ROOT/imported"));
    // A logon password with no server is refused: it is not the seal one.
    let out = near.cli(&["backup", "create", "x", "--password", "pw"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seal-password"));
}

#[test]
fn secure_values_cross_only_encrypted_after_the_key_exchange() {
    use iisadmin::imsa::{
        MetadataRecord, MsAdminBaseWClient, CLSID_MSADMIN_BASE_W, E_ACCESSDENIED,
        IID_IMSADMIN_BASE_W, MD_ERROR_SECURE_CHANNEL_FAILURE,
    };
    use iisadmin::secure::{ClientExchange, ENCRYPTED_DATA_BLOB_SIGNATURE};
    use msrpc::client::Connection;
    use msrpc::ndr::{ConformantArray, Unique, WString};

    let (web, addr, runtime) = live_rpc();
    runtime.block_on(async {
        let options = ntlm_privacy("boss", "Secret-1");
        let mut conn = Connection::connect_tcp(addr, options).await.unwrap();
        let remote =
            dcom::client::create_instance(&mut conn, CLSID_MSADMIN_BASE_W, IID_IMSADMIN_BASE_W)
                .await
                .unwrap();
        let this = || dcom::types::OrpcThis::new(dcom::ids::COM_VERSION);
        let mut admin = MsAdminBaseWClient::bind(&mut conn)
            .await
            .unwrap()
            .on_object(remote.ipid);
        let path = || Unique::new(Some(WString("/LM/W3SVC/1".into())));
        let ask = || MetadataRecord {
            identifier: 6021,
            data_len: 4096,
            ..MetadataRecord::default()
        };
        // No session yet: SECURE data is refused, Phase2 too.
        let (_, _, _, blob, hr) = admin.get_data(this(), 0, path(), ask()).await.unwrap();
        assert_eq!((hr, blob.get().is_none()), (E_ACCESSDENIED, true));
        let (_, _, hr) = admin
            .key_exchange_phase2(this(), Unique::new(None), Unique::new(None))
            .await
            .unwrap();
        assert_eq!(hr, MD_ERROR_SECURE_CHANNEL_FAILURE);
        // The exchange.
        let (client, kx, sig) = ClientExchange::start().unwrap();
        let (_, skx, ssig, ssession, hr) = admin
            .key_exchange_phase1(
                this(),
                Unique::new(Some(kx.clone())),
                Unique::new(Some(sig.clone())),
            )
            .await
            .unwrap();
        assert_eq!(hr, 0);
        let (offered, csession, chash) = client
            .answer(
                skx.get().unwrap(),
                ssig.get().unwrap(),
                ssession.get().unwrap(),
            )
            .unwrap();
        let (_, shash, hr) = admin
            .key_exchange_phase2(
                this(),
                Unique::new(Some(csession)),
                Unique::new(Some(chash)),
            )
            .await
            .unwrap();
        assert_eq!(hr, 0);
        let session = offered.finish(shash.get().unwrap()).unwrap();
        // Negotiated once: Phase1 again is refused.
        let (.., hr) = admin
            .key_exchange_phase1(this(), Unique::new(Some(kx)), Unique::new(Some(sig)))
            .await
            .unwrap();
        assert_eq!(hr, iisadmin::imsa::E_INVALIDARG);
        // Now the value comes encrypted, and decrypts to the password.
        let (_, record, _, blob, hr) = admin.get_data(this(), 0, path(), ask()).await.unwrap();
        assert_eq!(hr, 0);
        let blob = blob.get().unwrap();
        assert_eq!(blob.signature, ENCRYPTED_DATA_BLOB_SIGNATURE);
        let wire: Vec<u8> = "Hidden-1\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(
            !blob.data.windows(wire.len()).any(|w| w == wire),
            "not in the clear"
        );
        assert_eq!(session.decrypt(blob).unwrap(), wire);
        assert_eq!(record.attributes & 4, 4, "marked METADATA_SECURE");
        // A value set encrypted; one tampered with is refused.
        let set = |bytes: Vec<u8>| MetadataRecord {
            identifier: 6021,
            attributes: 4 | 1,
            user_type: 1,
            data_type: 2,
            data_len: bytes.len() as u32,
            data: Unique::new(Some(ConformantArray(bytes))),
            data_tag: 0,
        };
        let framed = |b: iisadmin::imsa::IisCryptoBlob| {
            let mut out = b.signature.to_le_bytes().to_vec();
            out.extend_from_slice(&b.length.to_le_bytes());
            out.extend_from_slice(&b.data);
            out
        };
        let value: Vec<u8> = "Via-Key-Exchange\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let good = framed(session.encrypt(&value).unwrap());
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let (_, hr) = admin.set_data(this(), 0, path(), set(bad)).await.unwrap();
        assert_eq!(hr, iisadmin::imsa::E_INVALIDARG);
        let (_, hr) = admin.set_data(this(), 0, path(), set(good)).await.unwrap();
        assert_eq!(hr, 0);
        dcom::client::release(&mut conn, &remote).await.unwrap();
    });
    assert!(web
        .cli_ok(&["--show-secrets", "mb", "get", "W3SVC/1/AnonymousUserPass"])
        .contains("Via-Key-Exchange"));
}

#[test]
fn the_inetinfo_interface_gets_and_sets_the_web_services_configuration() {
    use iisadmin::irp::{
        fc, ConfigInfo, GlobalConfigInfo, InetinfoClient, LogConfiguration, ERROR_ACCESS_DENIED,
        ERROR_INVALID_PARAMETER, ERROR_SERVICE_NOT_ACTIVE, INET_HTTP_SVC_ID,
    };
    use msrpc::client::Connection;
    use msrpc::ndr::{Unique, WString};

    let web = server_with_users();
    web.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Read over MS-IRP"]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], web.rpc_port()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = |user: &str, password: &str| {
        let options = ntlm_privacy(user, password);
        Connection::connect_tcp(addr, options)
    };
    let none = || Unique::<WString>::new(None);
    runtime.block_on(async {
        let mut conn = connect("boss", "Secret-1").await.unwrap();
        let mut irp = InetinfoClient::bind(&mut conn).await.unwrap();
        let (info, status) = irp
            .get_admin_information(none(), INET_HTTP_SVC_ID)
            .await
            .unwrap();
        assert_eq!(status, 0);
        let info = info.get().unwrap();
        assert_eq!(info.server_comment.get().unwrap().0, "Read over MS-IRP");
        assert_eq!(info.connection_timeout, 120);
        assert_eq!(info.authentication & 1, 1, "anonymous allowed");
        assert_ne!(info.field_control & fc::ANON_PASSWORD, fc::ANON_PASSWORD);
        assert_eq!(info.port as u16, web.port);
        let roots = info.virtual_roots.get().unwrap();
        let root = &roots.entries[0];
        assert_eq!(root.root.get().unwrap().0, "/");
        assert_eq!(
            root.directory.get().unwrap().0,
            web.www().display().to_string()
        );
        assert_eq!(root.mask & 1, 1, "AccessRead");
        // Another service than the Web's is not running.
        let (_, status) = irp.get_admin_information(none(), 0x1).await.unwrap();
        assert_eq!(status, ERROR_SERVICE_NOT_ACTIVE);
        // Set: the flagged fields, in one change; a refused value changes
        // nothing.
        let mut set = ConfigInfo::empty();
        set.field_control = fc::SERVER_COMMENT | fc::CONNECTION_TIMEOUT | fc::ANON_PASSWORD;
        set.server_comment = Unique::new(Some(WString("Set over MS-IRP".into())));
        set.connection_timeout = 45;
        set.anon_password = iisadmin::irp::wchars("Irp-Secret-1");
        set.max_connections = 7; // not flagged: not set
        assert_eq!(
            irp.set_admin_information(none(), INET_HTTP_SVC_ID, set)
                .await
                .unwrap(),
            0
        );
        let mut bad = ConfigInfo::empty();
        bad.field_control = fc::SERVER_COMMENT | fc::LOG_CONFIG;
        bad.server_comment = Unique::new(Some(WString("Never set".into())));
        bad.log_config = Unique::new(Some(LogConfiguration::new(1, 9, "", 0)));
        assert_eq!(
            irp.set_admin_information(none(), INET_HTTP_SVC_ID, bad)
                .await
                .unwrap(),
            ERROR_INVALID_PARAMETER
        );
        // Global: the bandwidth throttle.
        let (global, status) = irp
            .get_global_admin_information(none(), INET_HTTP_SVC_ID)
            .await
            .unwrap();
        assert_eq!(
            (status, global.get().unwrap().bandwidth_level),
            (0, u32::MAX)
        );
        let throttle = GlobalConfigInfo {
            field_control: fc::GLOBAL_BANDWIDTH_LEVEL,
            bandwidth_level: 1_048_576,
            memory_cache_size: 0,
        };
        assert_eq!(
            irp.set_global_admin_information(none(), 0, throttle)
                .await
                .unwrap(),
            0
        );
        // Not an administrator: refused.
        let mut conn = connect("clerk", "Secret-2").await.unwrap();
        let mut irp = InetinfoClient::bind(&mut conn).await.unwrap();
        let (info, status) = irp
            .get_admin_information(none(), INET_HTTP_SVC_ID)
            .await
            .unwrap();
        assert_eq!((status, info.get().is_none()), (ERROR_ACCESS_DENIED, true));
    });
    let get = |what: &str| web.cli_ok(&["--show-secrets", "mb", "get", what]);
    assert!(get("W3SVC/1/ServerComment").contains("Set over MS-IRP"));
    assert!(get("W3SVC/1/ConnectionTimeout").contains("45"));
    assert!(get("W3SVC/1/AnonymousUserPass").contains("Irp-Secret-1"));
    assert!(!get("W3SVC/1/MaxConnections").contains(": (DWORD) 7"));
    assert!(get("W3SVC/MaxBandwidth").contains("1048576"));
}

#[test]
fn open_key_waits_for_a_conflicting_handle_to_close() {
    use iisadmin::imsa::{
        MsAdminBaseWClient, CLSID_MSADMIN_BASE_W, ERROR_PATH_BUSY, IID_IMSADMIN_BASE_W,
        METADATA_PERMISSION_READ, METADATA_PERMISSION_WRITE,
    };
    use msrpc::client::Connection;
    use msrpc::ndr::{Unique, WString};

    let (web, addr, runtime) = live_rpc();
    let options = ntlm_privacy("boss", "Secret-1");
    let this = || dcom::types::OrpcThis::new(dcom::ids::COM_VERSION);
    let path = || Unique::new(Some(WString("/LM/W3SVC".into())));
    runtime.block_on(async {
        let activate = || async {
            let mut conn = Connection::connect_tcp(addr, options.clone())
                .await
                .unwrap();
            let remote =
                dcom::client::create_instance(&mut conn, CLSID_MSADMIN_BASE_W, IID_IMSADMIN_BASE_W)
                    .await
                    .unwrap();
            (conn, remote.ipid)
        };
        let (mut a, a_ipid) = activate().await;
        let (mut b, b_ipid) = activate().await;
        let mut holder = MsAdminBaseWClient::bind(&mut a)
            .await
            .unwrap()
            .on_object(a_ipid);
        let (_, held, hr) = holder
            .open_key(this(), 0, path(), METADATA_PERMISSION_WRITE, 0)
            .await
            .unwrap();
        assert_eq!(hr, 0);
        // A short wait runs out.
        let mut waiter = MsAdminBaseWClient::bind(&mut b)
            .await
            .unwrap()
            .on_object(b_ipid);
        let (_, _, hr) = waiter
            .open_key(this(), 0, path(), METADATA_PERMISSION_READ, 100)
            .await
            .unwrap();
        assert_eq!(hr, ERROR_PATH_BUSY);
        // A long one is answered once the holder closes its handle, which
        // the endpoint serves meanwhile.
        let waiting = tokio::spawn(async move {
            let mut waiter = MsAdminBaseWClient::bind(&mut b)
                .await
                .unwrap()
                .on_object(b_ipid);
            let answer = waiter
                .open_key(this(), 0, path(), METADATA_PERMISSION_READ, 30_000)
                .await
                .unwrap();
            (b, answer)
        });
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // (The short wait logged it once already.)
        let waits = || {
            web.log()
                .matches("OpenKey: the path is busy; waiting for it")
                .count()
        };
        while waits() < 2 {
            assert!(std::time::Instant::now() < end, "{}", web.log());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(holder.close_key(this(), held).await.unwrap().1, 0);
        let (mut b, (_, read, hr)) = waiting.await.unwrap();
        assert_eq!(hr, 0);
        assert_ne!(read, 0);

        // ChangePermissions waits the same way: a read handle made a
        // write one while another reader holds the branch.
        let (_, mine, hr) = holder
            .open_key(this(), 0, path(), METADATA_PERMISSION_READ, 0)
            .await
            .unwrap();
        assert_eq!(hr, 0);
        let (_, hr) = holder
            .change_permissions(this(), mine, 100, METADATA_PERMISSION_WRITE)
            .await
            .unwrap();
        assert_eq!(hr, ERROR_PATH_BUSY);
        let changing = tokio::spawn(async move {
            let mut holder = MsAdminBaseWClient::bind(&mut a)
                .await
                .unwrap()
                .on_object(a_ipid);
            let hr = holder
                .change_permissions(this(), mine, 30_000, METADATA_PERMISSION_WRITE)
                .await
                .unwrap()
                .1;
            (a, hr)
        });
        let changes = || {
            web.log()
                .matches("ChangePermissions: the path is busy; waiting for it")
                .count()
        };
        while changes() < 2 {
            assert!(std::time::Instant::now() < end, "{}", web.log());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut reader = MsAdminBaseWClient::bind(&mut b)
            .await
            .unwrap()
            .on_object(b_ipid);
        assert_eq!(reader.close_key(this(), read).await.unwrap().1, 0);
        let (mut a, hr) = changing.await.unwrap();
        assert_eq!(hr, 0);
        // Now a writer: the other client waits for it in vain.
        let (_, _, hr) = reader
            .open_key(this(), 0, path(), METADATA_PERMISSION_READ, 100)
            .await
            .unwrap();
        assert_eq!(hr, ERROR_PATH_BUSY);
        let mut holder = MsAdminBaseWClient::bind(&mut a)
            .await
            .unwrap()
            .on_object(a_ipid);
        assert_eq!(holder.close_key(this(), mine).await.unwrap().1, 0);
    });
}

#[test]
fn the_metabase_tree_copies_a_branch_and_makes_a_batch_whole_or_not_at_all() {
    use iisadmin::imsa::{MetadataRecord, CLSID_MSADMIN_BASE_W, E_INVALIDARG};
    use iisadmin::mbtree::{MetabaseTreeClient, OpKind, TreeOp, IID_IMETABASE_TREE};
    use msrpc::client::Connection;
    use msrpc::ndr::{ConformantArray, Unique, WString};

    let (web, addr, runtime) = live_rpc();
    let this = || dcom::types::OrpcThis::new(dcom::ids::COM_VERSION);
    let utf16z = |text: &str| -> Vec<u8> {
        text.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    };
    let op = |kind, path: &str, text: Option<&str>, record: MetadataRecord| TreeOp {
        kind,
        path: WString(path.into()),
        text: Unique::new(text.map(|t| WString(t.into()))),
        record,
    };
    // KeyType 1002, Path 3001, ServerBindings 1023 ([MS-IMSA]/MBSchema IDs).
    let string = |id, data_type, bytes: Vec<u8>| MetadataRecord {
        identifier: id,
        attributes: 0,
        user_type: 1,
        data_type,
        data_len: bytes.len() as u32,
        data: Unique::new(Some(ConformantArray(bytes))),
        data_tag: 0,
    };
    let vdir = "/LM/W3SVC/1/ROOT/batched";
    let content = web.state().join("wwwroot");
    runtime.block_on(async {
        let mut conn = Connection::connect_tcp(addr, ntlm_privacy("boss", "Secret-1"))
            .await
            .unwrap();
        let remote =
            dcom::client::create_instance(&mut conn, CLSID_MSADMIN_BASE_W, IID_IMETABASE_TREE)
                .await
                .unwrap();
        let mut tree = MetabaseTreeClient::bind(&mut conn)
            .await
            .unwrap()
            .on_object(remote.ipid);

        // A branch in one answer, parents first, with the schema; SECURE
        // data left out without the key exchange.
        let (_, answer, hr) = tree
            .get_tree(this(), WString("/LM/W3SVC/1".into()))
            .await
            .unwrap();
        assert_eq!(hr, 0);
        let keys = &answer.keys.get().unwrap().0;
        let paths: Vec<&str> = keys.iter().map(|k| k.path.0.as_str()).collect();
        assert_eq!(paths[0], "/LM/W3SVC/1");
        assert!(paths.contains(&"/LM/W3SVC/1/ROOT"), "{paths:?}");
        assert!(answer.schema.get().unwrap().0.contains("ServerBindings"));
        assert!(answer.metabase_file.0.ends_with("MetaBase.xml"));
        let hidden = utf16z("Hidden-1");
        assert!(keys.iter().all(|k| !k
            .data
            .data
            .windows(hidden.len())
            .any(|w| w == hidden.as_slice())));
        let (_, _, hr) = tree
            .get_tree(this(), WString("/LM/W3SVC/999".into()))
            .await
            .unwrap();
        assert_eq!(hr, iisadmin::imsa::ERROR_PATH_NOT_FOUND);

        // A batch whose third operation is refused makes nothing, and
        // says which and why in the metabase's words.
        let batch = |bindings: &str| {
            vec![
                op(
                    OpKind::AddKey,
                    vdir,
                    Some("IIsWebVirtualDir"),
                    Default::default(),
                ),
                op(
                    OpKind::SetData,
                    vdir,
                    None,
                    string(3001, 2, utf16z(&content.display().to_string())),
                ),
                op(
                    OpKind::SetData,
                    "/LM/W3SVC/1",
                    None,
                    string(1023, 5, {
                        let mut b = utf16z(bindings);
                        b.extend([0, 0]);
                        b
                    }),
                ),
            ]
        };
        let (_, answer, hr) = tree
            .apply(
                this(),
                Unique::new(Some(ConformantArray(batch("nonsense")))),
            )
            .await
            .unwrap();
        assert_eq!(hr, E_INVALIDARG);
        assert_eq!(answer.failed, 2, "{:?}", answer.message);
        let message = answer.message.get().unwrap().0.clone();
        assert!(message.contains("ServerBindings"), "{message}");
        assert!(!web
            .cli_ok(&["mb", "enum", "W3SVC/1/ROOT"])
            .contains("batched"));

        // The same batch with a valid binding is made whole.
        let (_, answer, hr) = tree
            .apply(this(), Unique::new(Some(ConformantArray(batch(":8099:")))))
            .await
            .unwrap();
        assert_eq!(hr, 0, "{:?}", answer.message);
        assert!(answer.change_number > 0);
        let _ = dcom::client::release(&mut conn, &remote).await;
    });
    assert!(web
        .cli_ok(&["mb", "get", "W3SVC/1/ROOT/batched/Path"])
        .contains(&content.display().to_string()));
    assert!(web
        .cli_ok(&["mb", "get", "W3SVC/1/ServerBindings"])
        .contains(":8099:"));
}

#[test]
fn the_cli_here_reaches_the_server_of_its_metabase_file_and_no_other() {
    let mut web = Web::prepare();
    web.launch();
    let on_file = |file: &std::path::Path, args: &[&str]| {
        let out = Command::new(common::BIN)
            .arg("--metabase")
            .arg(file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The server's own file: the running server makes the change (its
    // worker serves it at once).
    let served = web.state().join("MetaBase.xml");
    on_file(
        &served,
        &["mb", "set", "W3SVC/1/ROOT/DefaultDoc", "live.htm"],
    );
    std::fs::write(web.state().join("wwwroot/live.htm"), "live").unwrap();
    assert_eq!(web.curl("/", &[]).text(), "live");
    // Another file beside it: worked on here, the server's untouched.
    let other = web.state().join("Other.xml");
    std::fs::copy(&served, &other).unwrap();
    on_file(
        &other,
        &["mb", "set", "W3SVC/1/ServerComment", "Only in the copy"],
    );
    assert!(std::fs::read_to_string(&other)
        .unwrap()
        .contains("Only in the copy"));
    assert!(!web
        .cli_ok(&["mb", "get", "W3SVC/1/ServerComment"])
        .contains("Only in the copy"));
}
