//! ISAPI filters through the real server: C filters built with `cc`,
//! configured as IIS 6 configures them (IIsFilter keys with FilterPath,
//! FilterLoadOrder), notified in priority order in the worker process.

mod common;

use common::modules::{module_dir, test_module};
use common::web::{write, Web};
use std::time::Duration;

/// Adds an IIsFilter key NAME under FILTERS (a metabase path) and puts it
/// in the key's FilterLoadOrder.
fn add_filter(web: &Web, filters: &str, name: &str, path: &str, order: &str) {
    web.cli_ok(&["mb", "create", &format!("{filters}/{name}"), "IIsFilter"]);
    web.cli_ok(&["mb", "set", &format!("{filters}/{name}/FilterPath"), path]);
    web.cli_ok(&["mb", "set", &format!("{filters}/FilterLoadOrder"), order]);
}

/// A DWORD property as `mb get --json` shows it.
fn mb_dword(web: &Web, path: &str) -> Option<u64> {
    let got = web.cli_ok(&["--json", "mb", "get", path]);
    let value: serde_json::Value = serde_json::from_str(&got).ok()?;
    value["value"].as_u64()
}

#[test]
fn filters_rewrite_mark_and_answer_requests_in_priority_order() {
    let modules = module_dir();
    let a = test_module(modules.path(), "filter_a");
    let b = test_module(modules.path(), "filter_b");
    let vars = test_module(modules.path(), "vars");
    let mut web = Web::prepare();
    write(&web.www(), "page.htm", "the page");
    common::modules::map_module(&web, ".vars", &vars);
    // B is global and loaded first; A is the site's, at high priority.
    add_filter(&web, "W3SVC/Filters", "B", &b, "Compression,B");
    add_filter(&web, "W3SVC/1/Filters", "A", &a, "A");
    web.launch();

    // PREPROC_HEADERS: A (high) then B (low) add to the request's header.
    let got = web.curl("/x.vars?HTTP_X_FILTER_CHAIN", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.text(), "HTTP_X_FILTER_CHAIN=A,B\n");
    // SEND_RESPONSE: A sets, B appends; AddResponseHeaders adds.
    assert_eq!(got.header("x-filtered").as_deref(), Some("A,B"));
    assert_eq!(got.header("x-added-by-a").as_deref(), Some("yes"));
    // A rewrites a URL before it is mapped.
    let page = web.curl("/legacy/page.htm", &[]);
    assert_eq!((page.status, page.text().as_str()), (200, "the page"));
    // B changes the status of the response.
    assert_eq!(web.curl("/missing.htm", &[]).status, 410);
    // A answers a request itself (SF_STATUS_REQ_FINISHED).
    let blocked = web.curl("/blocked.htm", &[]);
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.text(), "blocked by filter A\n");
    // SF_STATUS_REQ_ERROR: 500.
    assert_eq!(web.curl("/page.htm", &["-H", "X-Break: 1"]).status, 500);
    // The state and flags each filter was loaded with, reported back to
    // its key as IIS reports them (1: loaded; the notification flags).
    web.wait_for(
        "FilterState recorded",
        std::time::Duration::from_secs(10),
        || mb_dword(&web, "W3SVC/1/Filters/A/FilterState") == Some(1),
    );
    assert_eq!(
        mb_dword(&web, "W3SVC/1/Filters/A/FilterFlags"),
        Some(0x840C3)
    );
    assert_eq!(mb_dword(&web, "W3SVC/Filters/B/FilterFlags"), Some(0x24043));
    // Answers of a filtered site are not cached by the listener: the
    // filters see every request.
    for _ in 0..3 {
        assert_eq!(
            web.curl("/page.htm", &[]).header("x-filtered").as_deref(),
            Some("A,B")
        );
    }
}

#[test]
fn a_filter_asking_for_raw_data_is_refused_with_iis_6s_reason() {
    let modules = module_dir();
    let raw = test_module(modules.path(), "filter_raw");
    let mut web = Web::prepare();
    write(&web.www(), "page.htm", "the page");
    add_filter(&web, "W3SVC/1/Filters", "Raw", &raw, "Raw");
    web.launch();
    assert_eq!(web.curl("/page.htm", &[]).status, 500);
    web.wait_for(
        "the reason logged",
        std::time::Duration::from_secs(10),
        || web.log().contains("SF_NOTIFY_READ_RAW_DATA"),
    );
    // Reported unloaded (4) on its key.
    web.wait_for(
        "FilterState recorded",
        std::time::Duration::from_secs(10),
        || mb_dword(&web, "W3SVC/1/Filters/Raw/FilterState") == Some(4),
    );
    // Disabled, the site serves again.
    web.cli_ok(&["mb", "set", "W3SVC/1/Filters/Raw/FilterEnabled", "FALSE"]);
    assert_eq!(web.curl("/page.htm", &[]).text(), "the page");
}

#[test]
fn filters_map_urls_change_logons_see_denials_and_rewrite_log_lines() {
    let modules = module_dir();
    let c = test_module(modules.path(), "filter_c");
    let vars = test_module(modules.path(), "vars");
    let mut web = Web::prepare();
    write(&web.www(), "real/page.htm", "the real page");
    write(&web.www(), "private/page.htm", "private");
    write(&web.www(), "answer-denial/page.htm", "private too");
    write(&web.www(), "secret.htm", "secret");
    common::modules::map_module(&web, ".vars", &vars);
    for dir in ["private", "answer-denial"] {
        web.cli_ok(&[
            "mb",
            "create",
            &format!("W3SVC/1/ROOT/{dir}"),
            "IIsWebDirectory",
        ]);
        web.cli_ok(&[
            "mb",
            "set",
            &format!("W3SVC/1/ROOT/{dir}/AuthFlags"),
            "AuthBasic",
        ]);
    }
    web.cli_ok(&["user", "add", "alice", "--password", "s3cret"]);
    add_filter(&web, "W3SVC/1/Filters", "C", &c, "C");
    web.launch();

    // URL_MAP: the file behind /mapped/ is the one in /real/.
    let got = web.curl("/mapped/page.htm", &[]);
    assert_eq!(
        (got.status, got.text().as_str()),
        (200, "the real page"),
        "{}",
        web.log()
    );
    // AUTHENTICATION: guest logs on as alice; without it, 401 with the
    // filter's header on denial (ACCESS_DENIED sees it).
    let denied = web.curl("/private/page.htm", &[]);
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("x-denied-by").as_deref(), Some("filter C"));
    assert_eq!(
        web.curl("/private/page.htm", &["-u", "guest:anything"])
            .text(),
        "private"
    );
    // ACCESS_DENIED: a filter may answer the denial itself.
    let answered = web.curl("/answer-denial/page.htm", &[]);
    assert_eq!(answered.status, 401);
    assert_eq!(answered.text(), "the filter explains the denial\n");
    // AUTH_COMPLETE: headers set after the logon reach the handler.
    assert_eq!(
        web.curl("/x.vars?HTTP_X_AUTH_COMPLETE", &[]).text(),
        "HTTP_X_AUTH_COMPLETE=yes\n"
    );
    // LOG: the secret path is logged as the filter says.
    assert_eq!(web.curl("/secret.htm?key=1", &[]).text(), "secret");
    web.wait_for(
        "the rewritten log line",
        std::time::Duration::from_secs(10),
        || {
            let lines = web.w3c_lines(1);
            lines.iter().any(|l| l.contains(" GET /hidden filtered=1 "))
                && !lines.iter().any(|l| l.contains("secret.htm"))
        },
    );
    // LOG runs once the response has gone, with its sizes: the 3000
    // bytes of the page and its head out, the request's head in.
    write(&web.www(), "sizes.htm", "s".repeat(3000));
    assert_eq!(web.curl("/sizes.htm", &[]).body.len(), 3000);
    let mut noted = String::new();
    web.wait_for(
        "the sizes in the log line",
        std::time::Duration::from_secs(10),
        || {
            noted = web
                .w3c_lines(1)
                .iter()
                .find(|l| l.contains(" /sizes.htm sent="))
                .cloned()
                .unwrap_or_default();
            !noted.is_empty()
        },
    );
    let number = |key: &str| -> u64 {
        let at = noted.find(key).unwrap() + key.len();
        noted[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (sent, received) = (number("sent="), number("recvd="));
    assert!((3000..3600).contains(&sent), "{noted}");
    assert!((40..600).contains(&received), "{noted}");
}

#[test]
fn a_filter_written_in_rust_with_the_isapi_crate() {
    let modules = module_dir();
    let module = common::modules::example_module(modules.path(), "rust_filter");
    let echo = common::modules::example_module(modules.path(), "rust_echo");
    let vars = test_module(modules.path(), "vars");
    let mut web = Web::prepare();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        &format!(".vars,{vars},1"),
        &format!(".rs,{echo},1"),
    ]);
    web.cli_ok(&["webext", "add-file", &vars, "--enable"]);
    web.cli_ok(&["webext", "add-file", &echo, "--enable"]);
    add_filter(&web, "W3SVC/1/Filters", "RustFilter", &module, "RustFilter");
    web.launch();

    let got = web.curl("/x.vars?HTTP_X_RUST_FILTER", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.text(), "HTTP_X_RUST_FILTER=plain\n");
    assert_eq!(got.header("x-rust-status").as_deref(), Some("200"));
    assert_eq!(got.header("x-filtered-in").as_deref(), Some("Rust"));
    let blocked = web.curl("/rust-blocked/x", &[]);
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.text(), "blocked by a Rust filter\n");
    assert_eq!(
        web.curl("/missing", &[]).header("x-rust-status").as_deref(),
        Some("404")
    );
    // What goes out passes SEND_RAW_DATA.
    write(&web.www(), "masked.htm", "a rust-mask here");
    assert_eq!(web.curl("/masked.htm", &[]).text(), "a ********* here");
    write(&web.www(), "grow.htm", "rust-grow");
    assert_eq!(web.curl("/grow.htm", &[]).text(), "g".repeat(5000));
    // A header removed, a URL rewritten, another mapped elsewhere.
    let removed = web.curl("/x.vars?HTTP_X_REMOVE_ME", &["-H", "X-Remove-Me: 1"]);
    assert!(
        removed.text().starts_with("HTTP_X_REMOVE_ME: error"),
        "{}",
        removed.text()
    );
    write(&web.www(), "rust-new/page.htm", "the new page");
    assert_eq!(web.curl("/rust-old/page.htm", &[]).text(), "the new page");
    write(&web.www(), "rust-real/page.htm", "the real page");
    std::fs::create_dir_all(web.www().join("rust-mapped")).unwrap();
    assert_eq!(
        web.curl("/rust-mapped/page.htm", &[]).text(),
        "the real page"
    );
    // A denial answered by the filter's own page.
    write(&web.www(), "closed/page.htm", "closed");
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/closed", "IIsWebDirectory"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/closed/AccessFlags", "0"]);
    let denied = web.curl("/closed/page.htm", &[]);
    assert_eq!(denied.status, 403);
    assert_eq!(denied.text(), "/closed/page.htm is closed, says Rust\n");
    // A request handed on by EXEC_URL on a site whose filter waits for
    // LOG: both hold the response's end; the extension's note after the
    // child answered and the filter's pass both reach the log line.
    write(&web.www(), "plain.htm", "plain");
    assert_eq!(web.curl("/x.rs?exec=/plain.htm", &[]).text(), "plain");
    web.wait_for(
        "the child's status in the log",
        std::time::Duration::from_secs(10),
        || {
            web.w3c_lines(1)
                .iter()
                .any(|l| l.contains(" /x.rs exec=/plain.htm&child=200 "))
        },
    );
    // The log line rewritten, with the response's size.
    write(&web.www(), "rust-secret/page.htm", "x".repeat(500));
    assert_eq!(web.curl("/rust-secret/page.htm", &[]).body.len(), 500);
    web.wait_for(
        "the hidden log line",
        std::time::Duration::from_secs(10),
        || {
            let lines = web.w3c_lines(1);
            lines.iter().any(|l| l.contains(" /rust-hidden sent="))
                && !lines.iter().any(|l| l.contains("rust-secret"))
        },
    );
}

#[test]
fn iis5_isolation_mode_runs_raw_data_filters_in_one_process_for_every_site() {
    let modules = module_dir();
    let body = test_module(modules.path(), "filter_rawbody");
    let record = test_module(modules.path(), "filter_rawlog");
    let echo = test_module(modules.path(), "echo");
    let mut web = Web::prepare();
    write(&web.www(), "page.htm", "the page");
    common::modules::map_module(&web, ".echo", &echo);
    add_filter(&web, "W3SVC/Filters", "RawBody", &body, "RawBody");
    add_filter(&web, "W3SVC/Filters", "RawLog", &record, "RawBody,RawLog");
    // A second site, in a pool of its own.
    let (site_b, port_b) = web.second_site("PoolB");
    write(&site_b, "b.htm", "site b");
    web.cli_ok(&["mb", "set", "W3SVC/IIs5IsolationModeEnabled", "TRUE"]);
    web.launch();

    // The body is rewritten before the server parses it: the extension
    // reads "APPLE".
    let sum = |text: &str| text.bytes().map(u64::from).sum::<u64>();
    let posted = web.curl("/x.echo", &["--data-binary", "an apple a day"]);
    assert_eq!(posted.status, 200, "{}", web.log());
    let expected = format!(
        "body 14 bytes (14 preloaded), sum {}",
        sum("an APPLE a day")
    );
    assert!(posted.text().contains(&expected), "{}", posted.text());
    // One process serves every site; the application pools are not used.
    let b = common::web::curl(&format!("http://127.0.0.1:{port_b}/b.htm"), &[]);
    assert_eq!(b.text(), "site b");
    assert_eq!(web.worker_pids("IIS5Isolation", "running").len(), 1);
    assert!(web.worker_pids("DefaultAppPool", "running").is_empty());
    assert!(web.worker_pids("PoolB", "running").is_empty());
    // The pools stay configured, and say why they have no process.
    web.cli_fails_with(
        &["pool", "recycle", "DefaultAppPool"],
        "not used in IIS 5 isolation mode",
    );
    assert!(web
        .cli_ok(&["mb", "enum", "W3SVC/AppPools"])
        .contains("PoolB"));
    assert_eq!(mb_dword(&web, "W3SVC/Filters/RawLog/FilterState"), Some(1));
    // Over TLS the filters see the decrypted bytes.
    let resolve = format!("localhost:{}:127.0.0.1", web.tls_port);
    let secure = common::web::curl(&web.https_url("/page.htm"), &["-k", "--resolve", &resolve]);
    assert_eq!(
        (secure.status, secure.text().as_str()),
        (200, "the page"),
        "{}",
        web.log()
    );

    // The recorder saw both directions of each connection, with the
    // bytes as the client sent them (it runs before the rewriter), and
    // each connection's end.
    let mut seen = String::new();
    web.wait_for(
        "both connections recorded to their end",
        Duration::from_secs(10),
        || {
            seen = web.curl("/raw-log", &[]).text();
            seen.matches("END\n").count() >= 3
        },
    );
    for line in [
        "OPEN from 127.0.0.1 secure 0",
        "IN#1 POST /x.echo HTTP/1.1|",
        "an apple a day",
        "OUT#2 HTTP/1.1 200 OK",
        "OPEN from 127.0.0.1 secure 1",
        "IN#1 GET /page.htm HTTP/1.1|",
        "IN#1 GET /b.htm HTTP/1.1|",
    ] {
        assert!(seen.contains(line), "{line}: {seen}");
    }

    // A filter holds a request's first bytes until the rest has come
    // (SF_STATUS_REQ_READ_NEXT), then sees it whole.
    write(&web.www(), "split.htm", "split");
    {
        use std::io::{Read, Write};
        let mut client = std::net::TcpStream::connect(("127.0.0.1", web.port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
            .write_all(b"GET /split.htm HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        client
            .write_all(b"X-A: 1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer);
        assert!(answer.ends_with("\r\n\r\nsplit"), "{answer}");
    }
    let record = web.curl("/raw-log", &[]).text();
    assert!(record.contains("HELD "), "{record}");
    assert!(
        record.contains(" GET /split.htm HTTP/1.1||Host: x||X-A: 1||Connection: close||||"),
        "{record}"
    );

    // A filter sets the size of the next reads (SF_REQ_SET_NEXT_READ_SIZE):
    // the rest of a 40 KB body comes 100 bytes at a time.
    let big = "x".repeat(40_000);
    let posted = web.curl(
        "/x.echo",
        &["-H", "X-Small-Reads: 1", "--data-binary", &big],
    );
    assert!(
        posted.text().contains(&format!("sum {}", sum(&big))),
        "{}",
        posted.text()
    );
    let record = web.curl("/raw-log", &[]).text();
    let small: Vec<usize> = record
        .lines()
        .filter_map(|l| l.strip_prefix("SMALL ")?.parse().ok())
        .collect();
    assert!(small.len() >= 10, "{record}");
    assert!(small.iter().all(|&n| n <= 100), "{small:?}");

    // Back to worker process isolation mode (with the raw-data filters
    // taken out, which that mode refuses): the pools serve again.
    for filter in ["RawBody", "RawLog"] {
        web.cli_ok(&[
            "mb",
            "set",
            &format!("W3SVC/Filters/{filter}/FilterEnabled"),
            "FALSE",
        ]);
    }
    web.cli_ok(&["mb", "set", "W3SVC/IIs5IsolationModeEnabled", "FALSE"]);
    web.wait_for(
        "the default pool serves again",
        Duration::from_secs(20),
        || {
            web.curl("/page.htm", &[]).text() == "the page"
                && !web.worker_pids("DefaultAppPool", "running").is_empty()
        },
    );
    let posted = web.curl("/x.echo", &["--data-binary", "an apple a day"]);
    let expected = format!("sum {}", sum("an apple a day"));
    assert!(posted.text().contains(&expected), "{}", posted.text());
    assert!(web.worker_pids("IIS5Isolation", "running").is_empty());
}

#[test]
fn filters_keep_state_per_connection_and_hear_it_end() {
    let modules = module_dir();
    let session = test_module(modules.path(), "filter_session");
    let mut web = Web::prepare();
    write(&web.www(), "a.htm", "a");
    add_filter(&web, "W3SVC/1/Filters", "Session", &session, "Session");
    web.launch();

    // Two requests on one connection: the filter's pFilterContext is the
    // connection's.
    let both = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(web.url("/a.htm"))
        .arg(web.url("/a.htm"))
        .output()
        .unwrap();
    let heads = String::from_utf8_lossy(&both.stdout).to_lowercase();
    assert!(heads.contains("x-request-on-connection: 1\r\n"), "{heads}");
    assert!(heads.contains("x-request-on-connection: 2\r\n"), "{heads}");
    // A new connection starts again, and the first one's end was heard
    // (SF_NOTIFY_END_OF_NET_SESSION).
    web.wait_for(
        "the first connection's end",
        Duration::from_secs(10),
        || {
            let got = web.curl("/a.htm", &[]);
            assert_eq!(got.header("x-request-on-connection").as_deref(), Some("1"));
            got.header("x-sessions-ended")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 1)
        },
    );
}

#[test]
fn send_raw_data_filters_see_heads_and_bodies_going_out() {
    let modules = module_dir();
    let filter = test_module(modules.path(), "filter_sendraw");
    let vars = test_module(modules.path(), "vars");
    let mut web = Web::prepare();
    write(&web.www(), "small.htm", "the secret word");
    // Larger than what is read whole: it is filtered as it streams.
    write(&web.www(), "large.txt", "secret..".repeat(40_000));
    common::modules::map_module(&web, ".vars", &vars);
    add_filter(&web, "W3SVC/1/Filters", "SendRaw", &filter, "SendRaw");
    web.launch();

    let small = web.curl("/small.htm", &[]);
    assert_eq!(small.text(), "the ****** word", "{}", web.log());
    assert_eq!(small.header("x-raw").as_deref(), Some("seen"));
    let large = web.curl("/large.txt", &[]);
    assert_eq!(large.body.len(), 320_000);
    assert_eq!(large.text(), "******..".repeat(40_000));
    assert_eq!(large.header("x-raw").as_deref(), Some("seen"));
    // An extension's answer goes through them too.
    let ext = web.curl("/x.vars?QUERY_STRING", &[]);
    assert_eq!(ext.header("x-raw").as_deref(), Some("seen"));
    assert!(ext.text().starts_with("QUERY_STRING="), "{}", ext.text());
}
