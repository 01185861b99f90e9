//! The management service of a running server: its https binding, who
//! may read /metrics (administrators; others 401 or 403; a rate limit on
//! failed logons), the headers every answer carries, and the counters
//! themselves, parsed by prometheus_client's own OpenMetrics parser and
//! checked against traffic the test makes. `inetsrv stats` prints the
//! same pools' counters.

mod common;

use std::process::{Command, Stdio};

use common::python;
use common::web::{curl, Got, Web};
use serde_json::Value;

fn server() -> Web {
    Web::start_with_users()
}

fn metrics_url(web: &Web) -> String {
    format!("https://127.0.0.1:{}/metrics", web.console_port)
}

fn metrics(web: &Web, credentials: &str) -> Got {
    curl(&metrics_url(web), &["-k", "-u", credentials])
}

/// The samples of a /metrics text, as prometheus_client parses them.
fn parse(text: &[u8]) -> Value {
    let mut child = Command::new(python())
        .arg(format!(
            "{}/tests/console/parse_metrics.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (pip install prometheus_client==0.26.0)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the text: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(text)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One sample's value: the first whose name and labels match.
fn value(parsed: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parsed["samples"].as_array()?.iter().find_map(|s| {
        let matches = s[0] == name && labels.iter().all(|(k, v)| s[1][*k].as_str() == Some(*v));
        matches.then(|| s[2].as_f64()).flatten()
    })
}

#[test]
fn metrics_are_served_over_tls_to_administrators_with_the_counters_of_real_traffic() {
    let web = server();
    let banner = web.summary.join("\n");
    assert!(
        banner.contains(&format!("management:      {}", metrics_url(&web))),
        "{banner}"
    );
    // The certificate is the server's self-signed one, bound for the
    // console's address.
    let bindings = web.cli_ok(&["sslcert", "list"]);
    assert!(
        bindings.contains(&format!("127.0.0.1:{}", web.console_port)),
        "{bindings}"
    );

    let before = metrics(&web, "boss:Secret-1");
    assert_eq!(
        before.status,
        200,
        "{}",
        String::from_utf8_lossy(&before.body)
    );
    assert_eq!(
        before.header("Content-Type").as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let before = parse(&before.body);
    // Known traffic: 7 GETs of missing pages (each to the worker: a 404
    // is not cached) and 2 POSTs.
    for i in 0..7 {
        assert_eq!(web.curl(&format!("/missing-{i}.html"), &[]).status, 404);
    }
    for _ in 0..2 {
        web.curl("/", &["-X", "POST", "--data", "x=1"]);
    }
    let after = metrics(&web, "boss:Secret-1");
    let after = parse(&after.body);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}: {after}"))
            - value(&before, name, labels).unwrap_or(0.0)
    };
    let site = ("site", "1");
    assert_eq!(
        delta("inetsrv_web_requests_total", &[site, ("method", "GET")]),
        7.0
    );
    assert_eq!(
        delta("inetsrv_web_requests_total", &[site, ("method", "POST")]),
        2.0
    );
    assert_eq!(delta("inetsrv_web_not_found_errors_total", &[site]), 7.0);
    assert!(delta("inetsrv_web_sent_bytes_total", &[site]) > 0.0);
    assert_eq!(after["families"]["inetsrv_web_requests"], "counter");
    assert_eq!(
        after["families"]["inetsrv_web_current_connections"],
        "gauge"
    );
    // The pool's queue took the requests the worker answered, and its
    // worker process is there with its PID.
    let pool = ("pool", "DefaultAppPool");
    assert!(
        delta(
            "inetsrv_http_queue_arrivals_total",
            &[("queue", "DefaultAppPool")]
        ) >= 9.0,
        "{after}"
    );
    assert_eq!(value(&after, "inetsrv_pool_started", &[pool]), Some(1.0));
    assert!(value(&after, "inetsrv_pool_worker_starts_total", &[pool]).unwrap() >= 1.0);
    assert_eq!(
        after["families"]["inetsrv_worker_resident_memory_bytes"],
        "gauge"
    );
    let pools: Value = serde_json::from_str(&web.cli_ok(&["--json", "stats"])).unwrap();
    let pid = pools["pools"][0]["workers"][0]["pid"].as_u64().unwrap();
    assert!(
        value(
            &after,
            "inetsrv_worker_uptime_seconds",
            &[pool, ("pid", &pid.to_string())]
        )
        .is_some(),
        "{after}"
    );
    assert_eq!(pools["pools"][0]["name"], "DefaultAppPool");
    assert!(pools["pools"][0]["queue_arrivals"].as_u64().unwrap() >= 9);
}

#[test]
fn only_administrators_read_and_failed_logons_are_limited() {
    let web = server();
    let anonymous = curl(&metrics_url(&web), &["-k"]);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("WWW-Authenticate")
        .is_some_and(|h| h.starts_with("Basic realm=")));
    // Every answer carries the security headers.
    for (name, value) in [
        ("Content-Security-Policy", "default-src 'none'"),
        ("Strict-Transport-Security", "max-age="),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Cache-Control", "no-store"),
    ] {
        assert!(
            anonymous.header(name).is_some_and(|h| h.contains(value)),
            "{name}: {}",
            anonymous.head
        );
    }
    // A name that was made to point at loopback (DNS rebinding): refused.
    let rebound = curl(
        &metrics_url(&web),
        &["-k", "-u", "boss:Secret-1", "-H", "Host: evil.example"],
    );
    assert_eq!(rebound.status, 421);
    let by_name = curl(
        &format!("https://localhost:{}/metrics", web.console_port),
        &["-k", "-u", "boss:Secret-1"],
    );
    assert_eq!(by_name.status, 200);
    let clerk = metrics(&web, "clerk:Secret-2");
    assert_eq!(clerk.status, 403);
    assert!(String::from_utf8_lossy(&clerk.body).contains("not an administrator"));
    // Not a method the console takes; not a path it has.
    let post = curl(&metrics_url(&web), &["-k", "-X", "POST"]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow").as_deref(), Some("GET, HEAD"));
    let missing = curl(
        &format!("https://127.0.0.1:{}/nothing", web.console_port),
        &["-k"],
    );
    assert_eq!(missing.status, 404);
    // Five wrong passwords from one address in a minute, then 429 even
    // for the right one.
    for _ in 0..5 {
        assert_eq!(metrics(&web, "boss:wrong").status, 401);
    }
    let limited = metrics(&web, "boss:Secret-1");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("Retry-After").as_deref(), Some("60"));
    assert!(web.log().contains("management console: a failed logon"));
}

#[test]
fn stats_watch_prints_rates_and_the_pools() {
    let web = server();
    assert!(web.cli_ok(&["stats"]).contains("URI cache"));
    let out = web.cli_ok(&["stats", "--watch", "0.5", "--count", "2"]);
    assert_eq!(
        out.matches("inetsrv stats, every 0.5 s").count(),
        2,
        "{out}"
    );
    assert!(out.contains("pool DefaultAppPool"), "{out}");
    assert!(out.contains("requests/s"), "{out}");
    let lines = web.cli_ok(&["--json", "stats", "--watch", "0.2", "--count", "2"]);
    let parsed: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), 2);
    assert!(parsed[1]["requests_per_second"].is_number());
    assert_eq!(parsed[1]["pools"][0]["name"], "DefaultAppPool");
    let refused = web.cli(&["stats", "--count", "2"]);
    assert!(!refused.status.success(), "--count needs --watch");
}

/// The console in Debian's chromium (headless, through chromedriver and
/// Selenium): log on, a property sheet with a refused and an accepted
/// value, a site and a virtual directory made and served, stop and start
/// a site as the site's clients see it, the
/// requests graph under load, a pool recycled to a new worker process,
/// log off. Screenshots go to target/console-screenshots.
#[test]
fn the_console_works_in_a_real_browser() {
    let web = server();
    std::fs::write(web.www().join("load.html"), "load\n").unwrap();
    let new_dir = web.dir.path().join("browser-site");
    let vdir_dir = web.dir.path().join("browser-docs");
    std::fs::create_dir_all(&new_dir).unwrap();
    std::fs::create_dir_all(&vdir_dir).unwrap();
    std::fs::write(new_dir.join("index.html"), "made in a browser\n").unwrap();
    std::fs::write(vdir_dir.join("page.html"), "a virtual directory\n").unwrap();
    let new_port = common::free_port();
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    let out = Command::new(python())
        .arg(format!(
            "{}/tests/console/browser.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!("https://127.0.0.1:{}/", web.console_port))
        .args(["boss", "Secret-1"])
        .arg(format!("http://127.0.0.1:{}/", web.port))
        .arg(&shots)
        .arg(new_port.to_string())
        .args([&new_dir, &vdir_dir])
        .output()
        .expect(
            "python3 with selenium, chromium and chromium-driver (scripts/test.sh installs them)",
        );
    let v = web.last_json(&out);
    assert_eq!(v["logon_form"], true, "{v}");
    assert!(
        v["wrong_password"].as_str().unwrap().contains("wrong"),
        "{v}"
    );
    assert_eq!(v["pools"][0], "DefaultAppPool", "{v}");
    // A refused value shows the same error as `inetsrv mb set`.
    let cli = web.cli_err(&["mb", "set", "W3SVC/1/MaxConnections", "many"]);
    let refused = v["refused"]["text"].as_str().unwrap();
    assert!(v["refused"]["refused"].as_bool().unwrap(), "{v}");
    assert!(
        cli.contains(refused),
        "the console said {refused:?}, the CLI {cli:?}"
    );
    assert_eq!(v["saved"]["text"], "ServerComment saved", "{v}");
    // IIS 6's tabs, and a flag on the home directory's tab.
    assert_eq!(
        v["tabs"],
        serde_json::json!([
            "Web Site",
            "Performance",
            "Home Directory",
            "Documents",
            "Directory Security",
            "HTTP Headers",
            "Custom Errors",
            "All properties"
        ]),
        "{v}"
    );
    assert_eq!(v["browsing"]["text"], "EnableDirBrowsing saved", "{v}");
    assert_eq!(v["arrow_key_tab"], "Performance", "{v}");
    let browsing = web.cli_ok(&["mb", "get", "W3SVC/1/ROOT/EnableDirBrowsing"]);
    let expected = if v["browsing_checked"] == true {
        "True"
    } else {
        "False"
    };
    assert!(browsing.contains(expected), "{browsing} {v}");
    assert!(web
        .cli_ok(&["mb", "get", "W3SVC/1/ServerComment"])
        .contains("Managed in a browser"));
    assert!(web.log().contains("management console: property set"));
    // A site and a virtual directory made in the browser are served; a
    // taken binding is refused with the CLI's words.
    assert!(
        v["site_taken"]["refused"].as_bool().unwrap()
            && v["site_taken"]["text"]
                .as_str()
                .unwrap()
                .contains("is used by site 1"),
        "{v}"
    );
    assert!(
        v["site_created"]["text"]
            .as_str()
            .unwrap()
            .contains("(Browser Site) created"),
        "{v}"
    );
    assert_eq!(v["new_site_page"], "made in a browser\n", "{v}");
    assert!(
        v["vdir_created"]["text"]
            .as_str()
            .unwrap()
            .contains("/ROOT/docs created"),
        "{v}"
    );
    assert_eq!(v["vdir_page"], "a virtual directory\n", "{v}");
    assert!(
        v["request_log"]
            .as_str()
            .unwrap()
            .contains("GET /docs/page.html"),
        "{v}"
    );
    assert!(web.log().contains("management console: site created"));
    // Backup, delete, restore; a new pool.
    assert_eq!(v["backup"]["text"], "backup console version 0 made", "{v}");
    assert_eq!(v["backup_listed"], true, "{v}");
    assert_ne!(v["deleted_site_answers"], 200, "{v}");
    assert_eq!(v["restored"], "restored backup console version 0", "{v}");
    assert_eq!(v["restored_page"], "a virtual directory\n", "{v}");
    assert_eq!(
        v["pool_created"]["text"], "application pool BrowserPool created",
        "{v}"
    );
    assert!(v["pool_in_use"]["refused"].as_bool().unwrap(), "{v}");
    assert!(
        v["pool_in_use"]["text"]
            .as_str()
            .unwrap()
            .contains("application pool DefaultAppPool is used by site 1"),
        "{v}"
    );
    assert!(!web.cli_ok(&["pool", "list"]).contains("BrowserPool"));
    assert_eq!(v["queues"], serde_json::json!(["DefaultAppPool"]), "{v}");
    assert_eq!(v["webext_before"], "prohibited", "{v}");
    assert_eq!(v["webext_done"], "unknown-cgi: allowed (1 file(s))", "{v}");
    assert_eq!(v["webext_after"], "allowed", "{v}");
    assert!(web
        .cli_ok(&["webext", "list"])
        .lines()
        .any(|l| l.starts_with("unknown-cgi") && l.contains(" allowed")));
    assert_eq!(v["before_stop"], 200, "{v}");
    assert_ne!(v["while_stopped"], 200, "{v}");
    assert_eq!(v["after_start"], 200, "{v}");
    assert_eq!(v["pool_stopped"], 503, "{v}");
    assert_eq!(v["pool_started"], 200, "{v}");
    assert!(v["graph_latest"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["site_graph_latest"].as_f64().unwrap() > 0.0, "{v}");
    let before = v["pids_before"].as_array().unwrap();
    let after = v["pids_after"].as_array().unwrap();
    assert!(!before.is_empty() && !after.is_empty(), "{v}");
    assert!(after.iter().all(|p| !before.contains(p)), "{v}");
    // The worker's row: pool, PID, active, requests, CPU %, memory.
    let row = v["worker_row"].as_array().unwrap();
    assert!(row[4].as_str().unwrap().ends_with(" %"), "{v}");
    assert!(row[5].as_str().unwrap().ends_with(" MB"), "{v}");
    assert_eq!(v["phone_overflow"], 0, "wider than a phone's screen: {v}");
    assert_eq!(v["logged_out"], true, "{v}");
    assert_eq!(v["after_logout"], true, "{v}");
    assert_eq!(v["browser_errors"], serde_json::json!([]), "{v}");
    assert!(shots.join("05-under-load.png").is_file());
}

/// The security points without a browser: no change without a session
/// and its CSRF token, no session for a non-administrator, the cookie's
/// attributes.
#[test]
fn changes_need_a_session_and_its_csrf_token() {
    let web = server();
    let base = format!("https://127.0.0.1:{}", web.console_port);
    let jar = web.dir.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let body = r#"{"path":"/LM/W3SVC/1","name":"ServerComment","values":["x"]}"#;
    // No session: the API refuses, the page sends to the logon form.
    let anonymous = curl(&format!("{base}/api/set"), &["-k", "-d", body]);
    assert_eq!(anonymous.status, 401);
    let page = curl(&format!("{base}/"), &["-k"]);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("Location").as_deref(), Some("/login"));
    // A user who is not an administrator gets no session.
    let clerk = curl(
        &format!("{base}/login"),
        &["-k", "-c", jar, "-d", "user=clerk&password=Secret-2"],
    );
    assert_eq!(clerk.status, 403);
    assert!(clerk.header("Set-Cookie").is_none());
    // An administrator's session: Secure, HttpOnly, SameSite=Strict.
    let boss = curl(
        &format!("{base}/login"),
        &["-k", "-c", jar, "-d", "user=boss&password=Secret-1"],
    );
    assert_eq!(boss.status, 303);
    let cookie = boss.header("Set-Cookie").unwrap();
    for attribute in [
        "__Host-inetsrv-session=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // With the session but without the CSRF token: refused, nothing set.
    let forged = curl(&format!("{base}/api/set"), &["-k", "-b", jar, "-d", body]);
    assert_eq!(forged.status, 403);
    assert!(!web
        .cli_ok(&["mb", "get", "W3SVC/1/ServerComment"])
        .contains("\"x\""));
    // With it: set, and logged with who made it.
    let page = curl(&format!("{base}/"), &["-k", "-b", jar]);
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let header = format!("X-CSRF-Token: {csrf}");
    let done = curl(
        &format!("{base}/api/set"),
        &["-k", "-b", jar, "-H", &header, "-d", body],
    );
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    assert!(web
        .cli_ok(&["mb", "get", "W3SVC/1/ServerComment"])
        .contains("\"x\""));
    assert!(web.log().contains("user=\"boss\""), "{}", web.log());
    // Logging off needs the token too, then the session is gone.
    assert_eq!(
        curl(&format!("{base}/logout"), &["-k", "-b", jar, "-X", "POST"]).status,
        403
    );
    let off = curl(
        &format!("{base}/logout"),
        &["-k", "-b", jar, "-d", &format!("csrf={csrf}")],
    );
    assert_eq!(off.status, 303);
    assert_eq!(
        curl(&format!("{base}/api/tree"), &["-k", "-b", jar]).status,
        401
    );
    // The logon form is rate-limited as Basic is: five wrong passwords
    // from one address, then 429 even for the right one.
    for _ in 0..5 {
        let wrong = curl(
            &format!("{base}/login"),
            &["-k", "-d", "user=boss&password=wrong"],
        );
        assert_eq!(wrong.status, 401);
    }
    let limited = curl(
        &format!("{base}/login"),
        &["-k", "-d", "user=boss&password=Secret-1"],
    );
    assert_eq!(limited.status, 429);
    assert!(String::from_utf8_lossy(&limited.body).contains("Too many failed logons"));
    assert!(limited.header("Set-Cookie").is_none());
}

/// Where the management service listens can also come from
/// STATE/management.json; a file that does not read stops the start
/// with a message that says why.
#[test]
fn the_management_service_reads_its_settings_file() {
    let mut web = Web::prepare();
    web.add_boss_and_clerk();
    web.console_args.clear();
    let settings = web.state().join("management.json");
    std::fs::write(
        &settings,
        format!(r#"{{"Address": "127.0.0.1:{}"}}"#, web.console_port),
    )
    .unwrap();
    web.launch();
    assert!(web
        .summary
        .join("\n")
        .contains(&format!("https://127.0.0.1:{}/metrics", web.console_port)));
    assert_eq!(metrics(&web, "boss:Secret-1").status, 200);
    drop(web);

    let web = Web::prepare();
    std::fs::write(web.state().join("management.json"), r#"{"Address": 8172}"#).unwrap();
    // (Under `timeout`: a start that went ahead would not return.)
    let out = Command::new("timeout")
        .arg("30")
        .arg(common::BIN)
        .args(web.target())
        .args(["start", "--no-rpc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("management.json: Address cannot be 8172"),
        "{err}"
    );
}

/// The console in Firefox too (Debian's firefox-esr over Marionette):
/// log on, the property sheet's tabs, a refused and an accepted value,
/// log off.
#[test]
fn the_console_works_in_firefox() {
    let web = server();
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(python())
        .arg(format!(
            "{}/tests/console/firefox.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!("https://127.0.0.1:{}/", web.console_port))
        .args(["boss", "Secret-1"])
        .arg(shots.join("firefox.png"))
        .output()
        .expect("python3 with marionette-driver and firefox-esr (scripts/test.sh installs them)");
    let v = web.last_json(&out);
    assert_eq!(v["logon_form"], true, "{v}");
    assert_eq!(v["sites"][0], "Default Web Site", "{v}");
    assert!(
        v["refused"]
            .as_str()
            .unwrap()
            .contains("'lots' is not a DWORD"),
        "{v}"
    );
    assert_eq!(v["saved"], "ServerComment saved", "{v}");
    assert!(web
        .cli_ok(&["mb", "get", "W3SVC/1/ServerComment"])
        .contains("Managed in Firefox"));
    assert!(v["rates"].as_str().unwrap().contains("requests/s"), "{v}");
    assert_eq!(v["logged_out"], true, "{v}");
    assert!(shots.join("firefox.png").is_file());
}

/// A worker's file cache counts its hits (W3SVC_W3WP: File Cache Hits),
/// which reach /metrics within seconds, with the default PingInterval.
#[test]
fn a_workers_file_cache_hits_reach_metrics() {
    let web = server();
    std::fs::write(web.www().join("cached.html"), "cached\n").unwrap();
    // Distinct query strings: each reaches the worker (the listener's
    // own cache keys on the whole URL), which reads the file once.
    for i in 0..4 {
        assert_eq!(web.curl(&format!("/cached.html?{i}"), &[]).status, 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = metrics(&web, "boss:Secret-1");
        let parsed = parse(&text.body);
        let hits: f64 = parsed["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s[0] == "inetsrv_worker_file_cache_hits_total")
            .filter_map(|s| s[2].as_f64())
            .sum();
        if hits >= 3.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no file cache hits reported: {parsed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// `--metrics ADDR:PORT`: /metrics alone, over plain http, for a
/// Prometheus without TLS; nothing else is served there.
#[test]
fn metrics_can_have_a_plain_http_binding_of_their_own() {
    let mut web = Web::prepare();
    web.add_boss_and_clerk();
    let port = common::free_port();
    web.console_args
        .extend(["--metrics".to_string(), format!("127.0.0.1:{port}")]);
    web.launch();
    assert!(
        web.summary
            .join("\n")
            .contains(&format!("metrics:         http://127.0.0.1:{port}/metrics")),
        "{:?}",
        web.summary
    );
    let got = curl(&format!("http://127.0.0.1:{port}/metrics"), &[]);
    assert_eq!(got.status, 200);
    let parsed = parse(&got.body);
    assert_eq!(parsed["families"]["inetsrv_web_requests"], "counter");
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/"), &[]).status, 404);
    assert_eq!(
        curl(&format!("http://127.0.0.1:{port}/api/tree"), &[]).status,
        404
    );
}
