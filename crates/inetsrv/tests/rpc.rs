//! The RPC endpoint of `inetsrv start` against clients no one here wrote:
//! Impacket 0.13 (its library, rpcdump.py and rpcmap.py). scripts/test.sh
//! installs Impacket in a virtual environment and names its interpreter
//! in INETSRV_TEST_PYTHON.

mod common;
#[path = "rpc/kdc.rs"]
mod kdc;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::python;
use common::web::Web;
use serde_json::Value;

/// An Impacket script (rpcdump.py, rpcmap.py) beside the interpreter, or
/// on PATH.
fn impacket_script(name: &str) -> PathBuf {
    let beside = python().parent().map(|d| d.join(name));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (pip install impacket==0.13.0)"))
}

fn run_python(args: &[String]) -> (bool, String, String) {
    run(Command::new(python()).args(args))
}

/// Runs an installed Impacket script by its own #! line.
fn run_script(name: &str, args: &[String]) -> (bool, String, String) {
    run(Command::new(impacket_script(name)).args(args))
}

fn run(command: &mut Command) -> (bool, String, String) {
    let out = command
        .output()
        .expect("python3 with Impacket (pip install impacket==0.13.0)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn impacket_calls(port: u16, extra: &[&str]) -> Value {
    let (ok, v, stderr) = impacket_calls_with(port, extra, &[]);
    assert!(ok, "{v} {stderr}");
    v
}

/// impacket_calls.py in an environment, whether it succeeds or not.
fn impacket_calls_with(
    port: u16,
    extra: &[&str],
    env: &[(&str, PathBuf)],
) -> (bool, Value, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rpc/impacket_calls.py");
    let (ok, stdout, stderr) = run(Command::new(python())
        .arg(script)
        .arg(port.to_string())
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v))));
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout:?} stderr {stderr}"));
    (ok, v, stderr)
}

/// A server whose RPC endpoint takes Kerberos tickets with `keytab`.
fn web_with_keytab(keytab: &std::path::Path, on_135: bool) -> Web {
    let mut web = Web::prepare();
    if on_135 {
        web.rpc_args[3] = "135".to_string();
    }
    web.rpc_args
        .extend(["--keytab".to_string(), keytab.display().to_string()]);
    web.launch();
    web
}

/// Impacket's Negotiate logon with alice's Kerberos ticket at a level.
fn impacket_kerberos(port: u16, level: &str, extra: &[&str]) -> (bool, Value, String) {
    let mut args = vec![
        "--auth-level",
        level,
        "--kerberos",
        "--user",
        "alice",
        "--realm",
        kdc::REALM,
    ];
    args.extend(extra);
    impacket_calls_with(port, &args, &kdc::kdc().client_env())
}

#[test]
fn impacket_logs_on_with_kerberos_through_negotiate_at_every_level() {
    let realm = kdc::kdc();
    let web = web_with_keytab(&realm.keytab(), false);
    let shown = format!(
        "RPC Kerberos:    {} (host/localhost@INETSRV.TEST)",
        realm.keytab().display()
    );
    assert!(
        web.summary.iter().any(|l| l.contains(&shown)),
        "{:?}",
        web.summary
    );
    let port = web.rpc_port();
    for level in ["2", "5", "6"] {
        let (ok, v, err) = impacket_kerberos(port, level, &[]);
        assert!(ok, "level {level}: {v} {err}");
        assert_eq!(v["listening"], true, "level {level}: {v}");
        assert_eq!(v["lookup"], epm_bindings(&web), "level {level}");
        assert_eq!(v["map"], format!("ncacn_ip_tcp:127.0.0.1[{port}]"));
        // Sealed or signed requests in 64-byte fragments: a Wrap or MIC
        // token on each.
        let (ok, v, err) = impacket_kerberos(port, level, &["--frag", "64"]);
        assert!(ok, "level {level}, 64-byte fragments: {v} {err}");
        assert_eq!(v["lookup"], epm_bindings(&web));
    }
    let log = web.log();
    for level in ["connect", "integrity", "privacy"] {
        let line = "alice@INETSRV.TEST logged on from 127.0.0.1";
        assert!(
            log.lines().any(|l| l.contains(line)
                && l.contains(&format!("with Negotiate (SPNEGO) at level {level}"))),
            "no Kerberos logon at level {level}:\n{log}"
        );
    }
}

#[test]
fn kerberos_tickets_the_keytab_has_no_key_for_are_refused() {
    let realm = kdc::kdc();
    let web = web_with_keytab(&realm.other_keytab(), false);
    let (ok, v, _) = impacket_kerberos(web.rpc_port(), "6", &[]);
    assert!(!ok, "a ticket for host/localhost logged on: {v}");
    let log = web.log();
    assert!(
        log.contains("no key in the keytab for host/localhost@INETSRV.TEST"),
        "{log}"
    );
    // The server goes on serving others.
    assert_eq!(impacket_calls(web.rpc_port(), &[])["listening"], true);

    // Without a keytab, Negotiate has only NTLM; Impacket offers only
    // Kerberos, so the negotiation fails, saying why.
    let plain = Web::start();
    let (ok, v, _) = impacket_kerberos(plain.rpc_port(), "6", &[]);
    assert!(!ok, "{v}");
    assert!(
        plain
            .log()
            .contains("offers no mechanism this server has (NTLM)"),
        "{}",
        plain.log()
    );
    assert!(
        plain
            .summary
            .iter()
            .any(|l| l.contains("RPC Kerberos:    off")),
        "{:?}",
        plain.summary
    );
}

/// `inetsrv rpc` with alice's credential cache, as a Windows client
/// logs on in a domain: Negotiate (SPNEGO choosing Kerberos) and Kerberos
/// alone, at every level.
#[test]
fn the_rpc_cli_logs_on_with_kerberos_from_the_credential_cache() {
    let realm = kdc::kdc();
    let web = web_with_keytab(&realm.keytab(), false);
    let port = web.rpc_port();
    let server = format!("localhost:{port}");
    let ccache = realm.ccache().display().to_string();
    let tgt_only = realm.tgt_only_ccache();
    let tgt_only_name = tgt_only.display().to_string();
    // KRB5_CONFIG names the KDC, for the client's TGS exchange.
    let krb5_config = [("KRB5_CONFIG", realm.config())];
    // `inetsrv rpc VERB --server localhost:PORT --kerberos --ccache C …`
    let rpc = |verb: &str, cache: &str, extra: &[&str]| {
        let mut args = vec![
            "rpc",
            verb,
            "--server",
            &server,
            "--kerberos",
            "--ccache",
            cache,
        ];
        args.extend_from_slice(extra);
        web.cli_env(&args, &krb5_config)
    };
    let ok = |out: std::process::Output| -> String {
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        stdout
    };
    let refused = |out: std::process::Output| -> String {
        assert!(
            !out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for auth in ["negotiate", "kerberos"] {
        for level in ["connect", "integrity", "privacy"] {
            let out = ok(rpc(
                "endpoints",
                &ccache,
                &["--auth", auth, "--level", level, "--json"],
            ));
            let list: Value = serde_json::from_str(&out).unwrap();
            let binding = format!("ncacn_ip_tcp:127.0.0.1[{port}]");
            assert!(
                list.as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["binding"] == binding.as_str()),
                "{auth} at {level}: {out}"
            );
        }
    }
    assert_kerberos_logons(
        &web.log(),
        &[
            ("Negotiate (SPNEGO)", "connect"),
            ("Negotiate (SPNEGO)", "privacy"),
            ("Kerberos", "integrity"),
            ("Kerberos", "privacy"),
        ],
    );
    // The principal Kerberos knows the server by: its keytab's.
    let out = ok(rpc("principal", &ccache, &["--auth", "kerberos"]));
    assert_eq!(out.trim(), "host/localhost@INETSRV.TEST");
    // With the TGT alone the client asks the KDC for the service ticket,
    // as kvno would; the cache is left as it was.
    let before = std::fs::read(&tgt_only).unwrap();
    let out = ok(rpc("interfaces", &tgt_only_name, &["--auth", "kerberos"]));
    assert!(out.contains("endpoint mapper (EPM)"), "{out}");
    assert_eq!(
        std::fs::read(&tgt_only).unwrap(),
        before,
        "the cache is only read"
    );
    // A service the KDC does not know, and one it cannot be asked about.
    let err = refused(rpc("ping", &ccache, &["--spn", "http/localhost"]));
    assert!(
        err.contains("the KDC refused a ticket for http/localhost@INETSRV.TEST")
            && err.contains("does not know"),
        "{err}"
    );
    let err = refused(rpc(
        "ping",
        &ccache,
        &["--spn", "http/elsewhere@OTHER.TEST"],
    ));
    assert!(
        err.contains("holds no ticket for http/elsewhere@OTHER.TEST")
            && err.contains("no TGT for OTHER.TEST"),
        "{err}"
    );
    let err = refused(rpc("ping", &ccache, &["--user", "bob"]));
    assert!(
        err.contains("holds the tickets of alice@INETSRV.TEST, not of 'bob'"),
        "{err}"
    );
    let err = refused(rpc("ping", &ccache, &["--auth", "ntlm"]));
    assert!(err.contains("not ntlm"), "{err}");
    let err = refused(rpc("ping", "/nonexistent/ccache", &[]));
    assert!(
        err.contains("/nonexistent/ccache") && err.contains("kinit"),
        "{err}"
    );
    web.cli_fails_with(
        &[
            "rpc",
            "ping",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--kerberos",
            "--ccache",
            &ccache,
        ],
        "Kerberos names the server, not its address: give --server by host name or --spn \
         host/NAME",
    );
    // A server without the service's key refuses the ticket.
    let other = web_with_keytab(&realm.other_keytab(), false);
    let err = web.cli_err(&[
        "rpc",
        "ping",
        "--server",
        &format!("localhost:{}", other.rpc_port()),
        "--kerberos",
        "--ccache",
        &ccache,
    ]);
    assert!(err.contains("refused the Kerberos logon"), "{err}");
}

#[test]
fn a_keytab_that_does_not_load_stops_the_start() {
    let web = Web::prepare();
    let missing = web.state().join("no-such.keytab");
    let out = Command::new(common::BIN)
        .args(web.target())
        .args(["start", "--rpc-port", "0", "--keytab"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use the Kerberos keytab"), "{err}");
    assert!(err.contains("no-such.keytab"), "{err}");
    let junk = web.state().join("junk.keytab");
    std::fs::write(&junk, b"not a keytab").unwrap();
    let out = Command::new(common::BIN)
        .args(web.target())
        .args(["start", "--rpc-port", "0", "--keytab"])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a keytab"), "{err}");
}

/// The endpoint map as Impacket's hept_lookup reads it: each listed
/// interface on TCP, UDP, HTTP and the local socket.
fn epm_bindings(web: &Web) -> Value {
    let port = web.rpc_port();
    let tcp = format!("ncacn_ip_tcp:127.0.0.1[{port}]");
    let udp = format!("ncadg_ip_udp:127.0.0.1[{port}]");
    let http = format!("ncacn_http:127.0.0.1[{}]", web.rpc_http_port());
    let rows: Vec<Value> = ["Epm", "Inetinfo", "WasControl"]
        .iter()
        .flat_map(|name| {
            [
                tcp.as_str(),
                udp.as_str(),
                http.as_str(),
                "ncalrpc:[epmapper]",
            ]
            .map(|binding| serde_json::json!([binding, name]))
        })
        .collect();
    Value::Array(rows)
}

#[test]
fn impacket_calls_mgmt_and_epm_unauthenticated() {
    let web = Web::start();
    let port = web.rpc_port();
    let v = impacket_calls(port, &[]);
    assert_eq!(
        v["if_ids"],
        serde_json::json!([
            "e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0",
            "82ad4280-036b-11cf-972c-00aa006887b0 v2.0",
            "cd8c0e33-6a4c-4841-9a34-fa3474c0620c v1.0"
        ])
    );
    assert_eq!(v["listening"], true);
    let host = nix_hostname();
    assert_eq!(v["princ_name"], host.as_str());
    let stats = v["stats"].as_array().unwrap();
    assert_eq!(stats.len(), 4);
    assert!(stats[0].as_u64().unwrap() >= 2, "{v}");
    assert!(
        v["stop"].as_str().unwrap().contains("access_denied"),
        "stop_server_listening is refused: {v}"
    );
    assert_eq!(v["lookup"], epm_bindings(&web));
    assert_eq!(v["map"], format!("ncacn_ip_tcp:127.0.0.1[{port}]"));
}

#[test]
fn impacket_over_ndr64_and_in_small_fragments() {
    let web = Web::start();
    let port = web.rpc_port();
    let v = impacket_calls(port, &["--ndr64"]);
    assert_eq!(v["listening"], true, "{v}");
    assert_eq!(v["lookup"], epm_bindings(&web));
    // Requests cut into 8-byte fragments, NDR 2.0 and NDR64.
    for extra in [&["--frag", "8"][..], &["--frag", "8", "--ndr64"][..]] {
        let v = impacket_calls(port, extra);
        assert_eq!(v["princ_name"], nix_hostname().as_str(), "{extra:?}: {v}");
        assert_eq!(v["stats"].as_array().unwrap().len(), 4);
        assert_eq!(v["lookup"], epm_bindings(&web));
        assert_eq!(v["map"], format!("ncacn_ip_tcp:127.0.0.1[{port}]"));
    }
}

#[test]
fn the_endpoint_stays_on_this_machine_unless_opened_and_can_require_authentication() {
    // Defaults: loopback, said so in the banner.
    let mut web = Web::prepare();
    web.rpc_args = ["--rpc-port", "0"].map(String::from).to_vec();
    web.launch();
    let banner = web.summary.join("\n");
    assert!(
        banner.contains("RPC endpoint:    ncacn_ip_tcp:127.0.0.1[")
            && banner.contains("this machine only")
            && banner.contains("anonymous callers allowed"),
        "{banner}"
    );
    drop(web);

    // Opened with authentication required: anonymous callers are
    // refused, authenticated ones served.
    let mut web = Web::prepare();
    web.rpc_args = [
        "--rpc-address",
        "127.0.0.1",
        "--rpc-port",
        "0",
        "--rpc-auth-level",
        "integrity",
    ]
    .map(String::from)
    .to_vec();
    web.launch();
    let banner = web.summary.join("\n");
    assert!(
        banner.contains("authenticated callers only, at level integrity or above"),
        "{banner}"
    );
    let port = web.rpc_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rpc/impacket_calls.py");
    let (ok, stdout, stderr) = run(Command::new(python()).arg(script).arg(port.to_string()));
    assert!(!ok, "an anonymous caller was served: {stdout}");
    assert!(stderr.contains("rpc_s_access_denied"), "{stderr}");
    web.cli_ok(&["user", "add", "alice", "--password", "Secret-1"]);
    let v = impacket_calls(
        port,
        &[
            "--auth-level",
            "6",
            "--user",
            "alice",
            "--password",
            "Secret-1",
        ],
    );
    assert_eq!(v["listening"], true, "{v}");
    let (ok, _, _) = run(Command::new(python()).args([
        script,
        &port.to_string(),
        "--auth-level",
        "2",
        "--user",
        "alice",
        "--password",
        "Secret-1",
    ]));
    assert!(!ok, "a caller below the level was served");
}

#[test]
fn impacket_authenticates_with_ntlm_at_connect_integrity_and_privacy() {
    let web = Web::start();
    let port = web.rpc_port();
    web.cli_ok(&["user", "add", "alice", "--password", "Secret-1"]);
    for level in ["2", "5", "6"] {
        let auth = [
            "--auth-level",
            level,
            "--user",
            "alice",
            "--password",
            "Secret-1",
        ];
        let v = impacket_calls(port, &auth);
        assert_eq!(v["listening"], true, "level {level}: {v}");
        assert_eq!(v["princ_name"], nix_hostname().as_str());
        assert_eq!(v["lookup"], epm_bindings(&web), "level {level}");
        assert_eq!(v["map"], format!("ncacn_ip_tcp:127.0.0.1[{port}]"));
        // Sealed and signed requests in small fragments too.
        let mut small = auth.to_vec();
        small.extend(["--frag", "64"]);
        let v = impacket_calls(port, &small);
        assert_eq!(
            v["lookup"],
            epm_bindings(&web),
            "level {level}, 64-byte fragments"
        );
    }
    // A wrong password: the first call after the bind is refused.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rpc/impacket_calls.py");
    let args: Vec<String> = [
        script,
        &port.to_string(),
        "--auth-level",
        "6",
        "--user",
        "alice",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--password".to_string(), "wrong".to_string()])
    .collect();
    let (ok, out, err) = run_python(&args);
    assert!(!ok, "{out}");
    assert!(
        out.contains("access_denied") || err.contains("access_denied"),
        "{out}\n{err}"
    );
    assert!(
        web.log().contains("wrong password for 'alice'"),
        "{}",
        web.log()
    );
}

#[test]
fn rpcmap_finds_the_interfaces_and_their_opnums() {
    let web = Web::start();
    let binding = format!("ncacn_ip_tcp:127.0.0.1[{}]", web.rpc_port());
    let (ok, out, err) = run_script(
        "rpcmap.py",
        &[
            "-auth-level".into(),
            "1".into(),
            "-brute-opnums".into(),
            "-opnum-max".into(),
            "6".into(),
            binding,
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("UUID: AFA8BD80-7D8A-11C9-BEF4-08002B102989 v1.0"),
        "{out}"
    );
    assert!(
        out.contains("UUID: E1AF8308-5D1F-11C9-91A4-08002B14A0FA v3.0"),
        "{out}"
    );
    // MGMT: opnums 0, 2 and 3 take no arguments and succeed; 5 and on are
    // beyond the interface.
    assert!(out.contains("Opnum 0: success"), "{out}");
    assert!(out.contains("Opnum 2: success"), "{out}");
    assert!(out.contains("Opnums 5-6: nca_s_op_rng_error"), "{out}");
}

/// Tests that bind the endpoint mapper's well-known port take turns.
static PORT_135: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn on_port_135() -> (std::sync::MutexGuard<'static, ()>, Web) {
    let turn = PORT_135.lock().unwrap_or_else(|e| e.into_inner());
    // Said plainly when the port is someone else's, rather than as a
    // server that would not start.
    if let Err(e) = std::net::TcpListener::bind("127.0.0.1:135") {
        panic!(
            "these tests need port 135 on 127.0.0.1, and it is not free ({e}): another program \
             holds it (a server left running? `ss -ltnp 'sport = :135'` names it)"
        );
    }
    let mut web = Web::prepare();
    web.rpc_args = ["--rpc-address", "127.0.0.1", "--rpc-port", "135"]
        .map(String::from)
        .to_vec();
    web.launch();
    assert_eq!(web.rpc_port(), 135);
    (turn, web)
}

/// Runs one smbtorture suite and returns its subtests' outcomes, as
/// (name, "success" | "failure" | "error" | "skip").
fn smbtorture(binding: &str, suite: &str) -> Vec<(String, String)> {
    smbtorture_with(binding, suite, &[], &[])
}

fn smbtorture_with(
    binding: &str,
    suite: &str,
    extra: &[&str],
    env: &[(&str, PathBuf)],
) -> Vec<(String, String)> {
    let out = Command::new("smbtorture")
        .args([binding, "-U", "alice%Secret-1", suite])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .expect("smbtorture (apt package samba-testsuite) is installed by scripts/test.sh");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let results: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let (outcome, rest) = l.split_once(": ")?;
            ["success", "failure", "error", "skip"]
                .contains(&outcome)
                .then(|| (rest.trim_end_matches(" [").to_string(), outcome.to_string()))
        })
        .collect();
    assert!(!results.is_empty(), "{binding} {suite}: no results\n{text}");
    results
}

#[test]
fn smbtorture_rpc_mgmt_and_epmapper_pass_signed_and_sealed() {
    // rpc.mgmt maps each interface through the endpoint mapper on 135.
    let (_turn, web) = on_port_135();
    web.cli_ok(&["user", "add", "alice", "--password", "Secret-1"]);
    let epmapper_subtests = [
        "epmapper.Map_simple",
        "epmapper.Map_full",
        "epmapper.Lookup_simple",
        "epmapper.Lookup_terminate_search",
        "epmapper.Insert_noreplace",
    ];
    for flags in [
        "ntlm,connect",
        "ntlm,sign",
        "ntlm,seal",
        "spnego,connect",
        "spnego,sign",
        "spnego,seal",
    ] {
        let binding = format!("ncacn_ip_tcp:127.0.0.1[{flags}]");
        let mgmt = smbtorture(&binding, "rpc.mgmt");
        assert_eq!(
            mgmt,
            vec![("mgmt".to_string(), "success".to_string())],
            "{flags}"
        );
        let epm = smbtorture(&binding, "rpc.epmapper");
        let expected: Vec<(String, String)> = epmapper_subtests
            .iter()
            .map(|t| {
                // Lookup_simple wants the last page of a search to carry
                // EPT_S_NOT_REGISTERED along with its entries, as Samba's
                // own server answers; [MS-RPCE] 2.2.1.2.4, Windows and
                // Impacket have 0 there (see the README).
                let outcome = if *t == "epmapper.Lookup_simple" {
                    "failure"
                } else {
                    "success"
                };
                (t.to_string(), outcome.to_string())
            })
            .collect();
        assert_eq!(epm, expected, "{flags}");
    }
    // The SPNEGO runs went through the Negotiate provider (and its
    // mechListMIC exchange), at each level.
    let log = web.log();
    for level in ["connect", "integrity", "privacy"] {
        assert!(
            log.contains(&format!("with Negotiate (SPNEGO) at level {level}")),
            "no SPNEGO logon at level {level} in the log:\n{log}"
        );
    }
}

/// The epmapper subtests' outcomes smbtorture gets from this server,
/// with every provider.
fn epmapper_expected() -> Vec<(String, String)> {
    [
        "epmapper.Map_simple",
        "epmapper.Map_full",
        "epmapper.Lookup_simple",
        "epmapper.Lookup_terminate_search",
        "epmapper.Insert_noreplace",
    ]
    .iter()
    .map(|t| {
        // Lookup_simple: see smbtorture_rpc_mgmt_and_epmapper_pass_signed_and_sealed.
        let outcome = if *t == "epmapper.Lookup_simple" {
            "failure"
        } else {
            "success"
        };
        (t.to_string(), outcome.to_string())
    })
    .collect()
}

#[test]
fn smbtorture_logs_on_with_kerberos_signed_and_sealed() {
    let realm = kdc::kdc();
    let _turn = PORT_135.lock().unwrap_or_else(|e| e.into_inner());
    let web = web_with_keytab(&realm.keytab(), true);
    assert_eq!(web.rpc_port(), 135);
    // Samba's client takes its tickets from the KDC itself (kinit with
    // -U's password), in its own cache; it will not use Kerberos with an
    // IP address, so the host is named.
    let cache = realm.root.join("samba-ccache");
    let env = [("KRB5_CONFIG", realm.config()), ("KRB5CCNAME", cache)];
    let extra = ["-k", "yes", "--realm", kdc::REALM];
    for flags in [
        "krb5,connect",
        "krb5,sign",
        "krb5,seal",
        "spnego,krb5,connect",
        "spnego,krb5,sign",
        "spnego,krb5,seal",
    ] {
        let binding = format!("ncacn_ip_tcp:127.0.0.1[{flags},target_hostname=localhost]");
        let mgmt = smbtorture_with(&binding, "rpc.mgmt", &extra, &env);
        assert_eq!(
            mgmt,
            vec![("mgmt".to_string(), "success".to_string())],
            "{flags}"
        );
        let epm = smbtorture_with(&binding, "rpc.epmapper", &extra, &env);
        assert_eq!(epm, epmapper_expected(), "{flags}");
    }
    assert_kerberos_logons(
        &web.log(),
        &[
            ("Kerberos", "connect"),
            ("Kerberos", "integrity"),
            ("Kerberos", "privacy"),
            ("Negotiate (SPNEGO)", "connect"),
            ("Negotiate (SPNEGO)", "privacy"),
        ],
    );
}

/// The server's log has alice's Kerberos logon with each provider and
/// level.
fn assert_kerberos_logons(log: &str, expected: &[(&str, &str)]) {
    for (provider, level) in expected {
        let with = format!("with {provider} at level {level}");
        assert!(
            log.lines().any(
                |l| l.contains("alice@INETSRV.TEST logged on from 127.0.0.1") && l.ends_with(&with)
            ),
            "no Kerberos logon {with} in:\n{log}"
        );
    }
}

#[test]
fn rpcdump_lists_the_endpoint_map_on_port_135() {
    // rpcdump.py only speaks to the well-known ports; this test needs to
    // bind 135, which takes root (CI runs as root).
    let (_turn, _web) = on_port_135();
    let (ok, out, err) = run_script(
        "rpcdump.py",
        &["-port".into(), "135".into(), "127.0.0.1".into()],
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("UUID    : E1AF8308-5D1F-11C9-91A4-08002B14A0FA v3.0"),
        "{out}"
    );
    assert!(out.contains("ncacn_ip_tcp:127.0.0.1[135]"), "{out}");
    assert!(out.contains("ncadg_ip_udp:127.0.0.1[135]"), "{out}");
    assert!(out.contains("ncalrpc:[epmapper]"), "{out}");
    // The endpoint mapper, the Inetinfo interface ([MS-IRP]) and the
    // service control, each on all four transports.
    assert!(
        out.contains("UUID    : 82AD4280-036B-11CF-972C-00AA006887B0 v2.0"),
        "{out}"
    );
    assert!(
        out.contains("UUID    : CD8C0E33-6A4C-4841-9A34-FA3474C0620C v1.0"),
        "{out}"
    );
    assert!(out.contains("ncacn_http:127.0.0.1["), "{out}");
    assert!(out.contains("[*] Received 12 endpoints."), "{out}");
}

#[test]
fn impacket_reaches_mgmt_epm_and_dcom_through_the_rpc_proxy() {
    let web = Web::start();
    web.cli_ok(&["user", "add", "boss", "--password", "Secret-1", "--admin"]);
    let banner = web.summary.join("\n");
    assert!(
        banner.contains(&format!("https://*:{}/rpc/rpcproxy.dll", web.tls_port)),
        "{banner}"
    );
    let http_port = web.rpc_http_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rpc/impacket_rpch.py");
    let (ok, stdout, stderr) = run(Command::new(python()).args([
        script,
        &web.tls_port.to_string(),
        &web.port.to_string(),
        &http_port.to_string(),
        "boss",
        "Secret-1",
    ]));
    assert!(ok, "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    assert_eq!(v["listening"], true, "{v}");
    assert_eq!(v["interfaces"], 3, "{v}");
    let endpoints = v["endpoints"].to_string();
    assert!(
        endpoints.contains(&format!("ncacn_http:127.0.0.1[{http_port}]")),
        "{v}"
    );
    // A DCOM activation and IMSAdminBaseW calls, NTLM-sealed, through
    // the tunnel.
    assert_eq!(v["activated"], true, "{v}");
    assert_eq!(
        (v["open"].as_u64(), v["close"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    assert_eq!(v["server_comment"], "Default Web Site", "{v}");
    // NTLM on the HTTP channel, over https and in clear.
    assert_eq!(v["ntlm_https"], true, "{v}");
    assert_eq!(v["ntlm_http"], true, "{v}");
    // RPC over HTTP v1: the mixed proxy's connect response, then MGMT
    // anonymously and under NTLM privacy over the one connection.
    assert_eq!(v["v1_status"], "HTTP/1.1 200 OK", "{v}");
    assert_eq!(v["v1_listening"], true, "{v}");
    assert_eq!(v["v1_interfaces"], 3, "{v}");
    assert_eq!(v["v1_privacy"], true, "{v}");
    assert_eq!(v["v1_wrong_password"], "401 Unauthorized", "{v}");
    assert_eq!(v["v1_not_valid_port"], "503 RPC Error: 5", "{v}");
    // The refusals, as the proxy answers them (2.1.2.1.3's 503 "RPC
    // Error: 5" for a target outside ValidPorts).
    assert_eq!(v["wrong_password"], "401 Unauthorized", "{v}");
    assert_eq!(v["ntlm_wrong_password"], "401 Unauthorized", "{v}");
    assert_eq!(v["not_valid_port"], "503 RPC Error: 5", "{v}");
    assert_eq!(v["basic_in_clear"], "403 Forbidden", "{v}");
    let log = web.log();
    assert!(log.contains("ValidPorts does not allow"), "{log}");
    assert!(log.contains("the logon of 'boss'"), "{log}");

    // The site's settings decide the HTTP channel's logons: the AuthFlags
    // of W3SVC/1/ROOT/Rpc, read at each request (an echo request: an
    // RPC_OUT_DATA without a body).
    let echo = |auth: &[&str]| {
        let url = format!(
            "https://127.0.0.1:{}/rpc/rpcproxy.dll?127.0.0.1:{http_port}",
            web.tls_port
        );
        let mut args = vec!["-k", "-X", "RPC_OUT_DATA", "-H", "Content-Length: 0"];
        args.extend_from_slice(auth);
        common::web::curl(&url, &args)
    };
    assert_eq!(
        echo(&["-u", "boss:Secret-1"]).status,
        200,
        "Basic and NTLM when no key says"
    );
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/Rpc", "IIsWebVirtualDir"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/Rpc/AuthFlags", "4"]);
    let integrated_only = echo(&["-u", "boss:Secret-1"]);
    assert_eq!(integrated_only.status, 401, "{}", integrated_only.head);
    assert!(
        integrated_only.head.contains("WWW-Authenticate: NTLM"),
        "{}",
        integrated_only.head
    );
    assert!(
        !integrated_only.head.contains("Basic"),
        "{}",
        integrated_only.head
    );
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/Rpc/AuthFlags", "2"]);
    let basic_only = echo(&[
        "-H",
        "Authorization: NTLM TlRMTVNTUAABAAAAB4IIAAAAAAAAAAAAAAAAAAAAAAA=",
    ]);
    assert_eq!(basic_only.status, 401, "{}", basic_only.head);
    assert!(
        basic_only.head.contains("Basic realm"),
        "{}",
        basic_only.head
    );
    assert!(!basic_only.head.contains("NTLM"), "{}", basic_only.head);
    assert_eq!(echo(&["-u", "boss:Secret-1"]).status, 200);
}

#[test]
fn the_cli_reaches_the_server_through_the_rpc_proxy_over_https() {
    let web = Web::start();
    web.cli_ok(&["user", "add", "boss", "--password", "Secret-1", "--admin"]);
    let http_port = web.rpc_http_port();
    // The test server's ncacn_http port is a free one: the query names it.
    let url = format!(
        "https://localhost:{}/rpc/rpcproxy.dll?localhost:{http_port}",
        web.tls_port
    );
    let logon = ["--user", "boss", "--password", "Secret-1"];
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &url]);
        all.extend(logon);
        web.cli_ok(&all)
    };
    assert_eq!(
        cli(&["rpc", "ping"]).trim(),
        format!(
            "ncacn_http:localhost:{http_port} via https://localhost:{}/rpc/rpcproxy.dll: listening",
            web.tls_port
        )
    );
    let map: Value = serde_json::from_str(&cli(&["rpc", "endpoints", "--json"])).unwrap();
    assert!(
        map.as_array()
            .unwrap()
            .iter()
            .any(|e| e["binding"] == format!("ncacn_http:127.0.0.1[{http_port}]").as_str()),
        "{map}"
    );
    // DCOM through the tunnel: the metabase read, written and read back,
    // with responses of hundreds of kilobytes (flow control both ways).
    let out = cli(&["mb", "get", "/LM/W3SVC/1/ServerComment"]);
    assert!(out.contains("Default Web Site"), "{out}");
    cli(&[
        "mb",
        "set",
        "/LM/W3SVC/1/ServerComment",
        "Through the proxy",
    ]);
    let out = cli(&["mb", "get", "/LM/W3SVC/1/ServerComment"]);
    assert!(out.contains("Through the proxy"), "{out}");
    // A wrong password, a server the proxy may not reach, no logon.
    web.cli_fails_with(
        &[
            "rpc",
            "ping",
            "--server",
            &url,
            "--user",
            "boss",
            "--password",
            "wrong",
        ],
        "401",
    );
    let elsewhere = format!(
        "https://localhost:{}/rpc/rpcproxy.dll?localhost:9",
        web.tls_port
    );
    web.cli_fails_with(
        &[
            "rpc",
            "ping",
            "--server",
            &elsewhere,
            "--user",
            "boss",
            "--password",
            "Secret-1",
        ],
        "RPC Error: 5",
    );
    web.cli_fails_with(&["rpc", "ping", "--server", &url], "--user");
}

#[test]
fn the_rpc_proxy_forwards_over_tcp_to_another_server_its_valid_ports_allow() {
    // Channels for this server's own endpoint are handed over in memory;
    // another server is reached over TCP, as IIS 6's proxy reached them.
    let other = Web::start();
    let other_port = other.rpc_http_port();
    let mut web = Web::prepare();
    std::fs::write(
        web.state().join("rpcproxy.json"),
        format!(r#"{{"ValidPorts": "127.0.0.1:{other_port}"}}"#),
    )
    .unwrap();
    web.launch();
    web.cli_ok(&["user", "add", "boss", "--password", "Secret-1"]);
    let through = |target: &str| {
        let url = format!(
            "https://localhost:{}/rpc/rpcproxy.dll?{target}",
            web.tls_port
        );
        web.cli(&[
            "rpc",
            "principal",
            "--server",
            &url,
            "--user",
            "boss",
            "--password",
            "Secret-1",
        ])
    };
    // The other server answers (its principal is this host's name too,
    // so the logon is what tells them apart: boss exists only here, and
    // the call inside the tunnel is anonymous there).
    let out = web.cli(&[
        "rpc",
        "ping",
        "--server",
        &format!(
            "https://localhost:{}/rpc/rpcproxy.dll?127.0.0.1:{other_port}",
            web.tls_port
        ),
        "--user",
        "boss",
        "--password",
        "Secret-1",
    ]);
    // The RPC logon inside the tunnel is refused by the other server
    // (it has no user boss): proof the channel reached it.
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("refused the logon of 'boss'"), "{text}");
    other.cli_ok(&["user", "add", "boss", "--password", "Secret-1"]);
    let out = through(&format!("127.0.0.1:{other_port}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(other.log().contains("boss logged on"), "{}", other.log());
    // This server's own endpoint is not in its ValidPorts now.
    let own = through(&format!("localhost:{}", web.rpc_http_port()));
    assert!(!own.status.success());
    assert!(String::from_utf8_lossy(&own.stderr).contains("RPC Error: 5"));
}

#[test]
fn the_rpc_cli_calls_over_udp() {
    let web = Web::start();
    let port = web.rpc_port();
    let server = format!("127.0.0.1:{port}");
    let udp = |verb: &str, extra: &[&str]| {
        let mut args = vec!["rpc", verb, "--transport", "udp", "--server", &server];
        args.extend_from_slice(extra);
        web.cli_ok(&args)
    };
    assert_eq!(
        udp("ping", &[]).trim(),
        format!("ncadg_ip_udp:127.0.0.1[{port}]: listening")
    );
    let list: Value = serde_json::from_str(&udp("interfaces", &["--json"])).unwrap();
    assert_eq!(list[0]["uuid"], "e1af8308-5d1f-11c9-91a4-08002b14a0fa");
    // The endpoint map, read over UDP, lists the UDP endpoint.
    let map: Value = serde_json::from_str(&udp("endpoints", &["--json"])).unwrap();
    let udp_binding = format!("ncadg_ip_udp:127.0.0.1[{port}]");
    assert!(
        map.as_array()
            .unwrap()
            .iter()
            .any(|e| e["binding"] == udp_binding.as_str()),
        "{map}"
    );
    let stats: Value = serde_json::from_str(&udp("stats", &["--json"])).unwrap();
    assert!(stats["calls_in"].as_u64().unwrap() >= 4, "{stats}");
    // Logged on with NTLM (connectionless NTLM, signed and sealed
    // datagrams); a wrong password and a port with nothing on it say so.
    web.cli_ok(&["user", "add", "alice", "--password", "Secret-1"]);
    for level in ["integrity", "privacy"] {
        let whoami = udp(
            "ping",
            &[
                "--user",
                "alice",
                "--password",
                "Secret-1",
                "--level",
                level,
            ],
        );
        assert!(whoami.contains("listening"), "{whoami}");
    }
    // The IIS admin interfaces (DCOM activation and IMSAdminBase) ride
    // authenticated UDP too.
    web.cli_ok(&["user", "set", "alice", "--admin", "true"]);
    let as_alice = |verb: &[&str], password: &str| {
        let mut args = verb.to_vec();
        args.extend_from_slice(&["--transport", "udp", "--server", &server]);
        args.extend_from_slice(&["--user", "alice", "--password", password]);
        args.iter().map(|a| a.to_string()).collect::<Vec<String>>()
    };
    let args = as_alice(&["mb", "get", "W3SVC/1/ServerComment"], "Secret-1");
    let comment = web.cli_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(comment.contains("\"Default Web Site\""), "{comment}");
    let args = as_alice(&["rpc", "ping"], "wrong");
    web.cli_fails_with(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "refused the logon of 'alice'",
    );
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    web.cli_fails_with(
        &[
            "rpc",
            "ping",
            "--transport",
            "udp",
            "--server",
            &format!("127.0.0.1:{closed_port}"),
        ],
        "nothing answers RPC over UDP",
    );
    // The banner names the UDP endpoint.
    let banner = web.summary.join("\n");
    assert!(
        banner.contains(&format!("ncadg_ip_udp:127.0.0.1[{port}]")),
        "{banner}"
    );
}

#[test]
fn an_explicit_rpc_port_in_use_is_an_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let mut web = Web::prepare();
    let out = Command::new(common::BIN)
        .args(web.target())
        .args(["start", "--rpc-address", "127.0.0.1", "--rpc-port", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for RPC on 127.0.0.1:{port}")),
        "{err}"
    );
    // Without RPC the server starts.
    web.rpc_args = vec!["--no-rpc".into()];
    web.launch();
    assert!(!web.summary.iter().any(|l| l.contains("RPC endpoint")));
}

/// The CPU time (user + system, in clock ticks) of the server's thread
/// named `name`.
fn thread_cpu_ticks(pid: u32, name: &str) -> u64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        if std::fs::read_to_string(task.join("comm")).unwrap().trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // After the parenthesised name: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        return fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    panic!("the server has no thread named {name}");
}

#[test]
fn the_endpoint_polls_between_calls_only_while_they_come() {
    let web = Web::start();
    let server = format!("127.0.0.1:{}", web.rpc_port());
    // Calls answered on the endpoint's own thread, polling between them
    // (the default window)...
    for _ in 0..3 {
        let out = web.cli_ok(&["rpc", "ping", "--server", &server]);
        assert!(out.contains(": listening"), "{out}");
    }
    // ...which then sleeps: an idle endpoint spends no CPU (a thread that
    // kept polling would spend the whole second, 100 ticks).
    std::thread::sleep(Duration::from_millis(100));
    let before = thread_cpu_ticks(web.pid(), "rpc");
    std::thread::sleep(Duration::from_secs(1));
    let spent = thread_cpu_ticks(web.pid(), "rpc") - before;
    assert!(
        spent <= 2,
        "the idle RPC thread spent {spent} ticks in a second"
    );

    // Turned off, calls are answered the same; the window is bounded.
    let mut web = Web::prepare();
    web.rpc_args
        .extend(["--rpc-idle-poll-us".to_string(), "0".to_string()]);
    web.launch();
    let server = format!("127.0.0.1:{}", web.rpc_port());
    let out = web.cli_ok(&["rpc", "ping", "--server", &server]);
    assert!(out.contains(": listening"), "{out}");
    web.cli_fails_with(
        &["start", "--rpc-idle-poll-us", "2000000"],
        "2000000 is not in 0..=1000000",
    );
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn the_rpc_cli_reaches_the_endpoint_locally_and_by_server_name() {
    let web = Web::start();
    web.cli_ok(&["user", "add", "alice", "--password", "Secret-1"]);
    let server = format!("127.0.0.1:{}", web.rpc_port());
    // On this machine, over the state directory's Unix socket.
    let out = web.cli_ok(&["rpc", "ping"]);
    assert!(
        out.contains("ncalrpc:") && out.contains(": listening"),
        "{out}"
    );
    // By name, anonymously and logged on with each provider and level.
    let out = web.cli_ok(&["rpc", "ping", "--server", &server]);
    assert_eq!(
        out.trim(),
        format!("ncacn_ip_tcp:127.0.0.1[{}]: listening", web.rpc_port())
    );
    for auth in ["negotiate", "ntlm"] {
        for level in ["connect", "integrity", "privacy"] {
            let out = web.cli_ok(&[
                "rpc",
                "interfaces",
                "--server",
                &server,
                "--user",
                "alice",
                "--password",
                "Secret-1",
                "--auth",
                auth,
                "--level",
                level,
                "--json",
            ]);
            let list: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                list[0]["uuid"], "e1af8308-5d1f-11c9-91a4-08002b14a0fa",
                "{out}"
            );
            assert_eq!(list[0]["name"], "endpoint mapper (EPM)");
        }
    }
    let log = web.log();
    assert!(log.contains("alice logged on from 127.0.0.1"), "{log}");
    assert!(log.contains("with NTLM at level integrity"), "{log}");
    assert!(
        log.contains("with Negotiate (SPNEGO) at level privacy"),
        "{log}"
    );
    // The endpoint map lists both transports, as rpcdump does.
    let out = web.cli_ok(&["rpc", "endpoints", "--server", &server, "--json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let bindings: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["binding"].as_str().unwrap())
        .collect();
    assert!(
        bindings.contains(&format!("ncacn_ip_tcp:127.0.0.1[{}]", web.rpc_port()).as_str()),
        "{out}"
    );
    assert!(bindings.contains(&"ncalrpc:[epmapper]"), "{out}");
    let stats: Value =
        serde_json::from_str(&web.cli_ok(&["rpc", "stats", "--server", &server, "--json"]))
            .unwrap();
    assert!(stats["calls_in"].as_u64().unwrap() >= 7, "{stats}");
    assert_eq!(stats["calls_out"], 0);
    assert_eq!(
        web.cli_ok(&["rpc", "principal", "--server", &server])
            .trim(),
        nix_hostname()
    );
    // Failures say what went wrong.
    web.cli_fails_with(
        &[
            "rpc",
            "ping",
            "--server",
            &server,
            "--user",
            "alice",
            "--password",
            "wrong",
        ],
        "the server refused the logon of 'alice'",
    );
    web.cli_fails_with(
        &["rpc", "ping", "--server", "127.0.0.1:9"],
        "cannot reach the RPC endpoint",
    );
    web.cli_fails_with(&["rpc", "ping", "--server", "[::1"], "closing ']'");
    web.cli_fails_with(
        &["rpc", "ping", "--level", "none", "--user", "x"],
        "connect, integrity or privacy",
    );
}
