//! ISAPI extensions through the real server: C extensions built with `cc`
//! against `include/`, mapped by ScriptMaps, allowed (or not) by
//! WebSvcExtRestrictionList, run in the worker process.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::modules::{build, module_dir, web_with_module};
use common::web::{write, Web};

#[test]
fn c_extensions_run_where_script_maps_and_the_lockdown_list_allow() {
    let modules = module_dir();
    let hello = build(Path::new("examples/isapi/hello.c"), modules.path(), "hello");
    let echo = build(
        Path::new("crates/isapi/tests/c/echo.c"),
        modules.path(),
        "echo",
    );
    // The modules sit in a private (0700) directory, and hello itself
    // may be read by its owner alone: the service opens both for the
    // worker, which runs as another user.
    std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o700)).unwrap();
    let hello = hello.to_str().unwrap().to_string();
    let echo = echo.to_str().unwrap().to_string();
    let mut web = Web::prepare();
    write(&web.www(), "page.htm", "static");
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        &format!(".hello,{hello},1"),
        &format!(".echo,{echo},1"),
        ".gone,/nonexistent/module.so,1",
    ]);
    // IIS 6's lockdown (the first run lists the unknown ISAPI extensions
    // and CGI programs as prohibited): hello allowed, echo listed but
    // prohibited.
    let listed = web.cli_ok(&["webext", "list"]);
    assert!(
        listed.contains("unknown-isapi") && listed.contains("prohibited"),
        "{listed}"
    );
    web.cli_ok(&[
        "webext",
        "add-file",
        &hello,
        "--enable",
        "--group",
        "HELLO",
        "--description",
        "Hello",
    ]);
    web.cli_ok(&["webext", "add-file", &echo, "--group", "ECHO"]);
    web.cli_ok(&["webext", "add-file", "/nonexistent/module.so", "--enable"]);
    web.cli_fails_with(
        &["webext", "add-file", "relative.so"],
        "not an absolute path",
    );
    web.launch();

    let got = web.curl("/any/where.hello?name=you", &["-A", "TestAgent/1.0"]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        got.text(),
        "Hello from ISAPI on 127.0.0.1: GET /any/where.hello?name=you (user agent TestAgent/1.0)\n"
    );
    // HEAD: the extension's head, no body.
    let head = web.curl("/any/where.hello", &["-I"]);
    assert_eq!(head.status, 200);
    assert!(
        !head.text().contains("Hello from ISAPI"),
        "{:?}",
        head.text()
    );
    assert!(
        head.text().contains("Content-Length: 79"),
        "{:?}",
        head.text()
    );
    // Static files are untouched.
    assert_eq!(web.curl("/page.htm", &[]).text(), "static");
    // Not on the list: 404.2, as IIS answers a prohibited extension.
    let refused = web.curl("/x.echo", &[]);
    assert_eq!(refused.status, 404);
    assert!(refused.text().contains("404.2"), "{}", refused.text());
    // A module that cannot be loaded: 500, and the log names the file.
    assert_eq!(web.curl("/x.gone", &[]).status, 500);
    web.wait_for("the load error logged", Duration::from_secs(10), || {
        web.log().contains("/nonexistent/module.so")
    });

    // Allowed while the server runs (in effect when the command returns):
    // echo reads a 1 MB body (the first UploadReadAheadSize bytes handed
    // with the request, the rest by ReadClient) and reports what IIS's
    // callbacks return.
    web.cli_ok(&["webext", "enable", "ECHO"]);
    assert_eq!(web.curl("/x.echo", &[]).status, 200, "{}", web.log());
    let body: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let file = web.dir.path().join("body.bin");
    std::fs::write(&file, &body).unwrap();
    let got = web.curl(
        "/up/load.echo?a=1",
        &["--data-binary", &format!("@{}", file.display())],
    );
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.header("x-echo").as_deref(), Some("yes"));
    let said = got.text();
    for line in [
        "method POST query a=1 path /up/load.echo",
        "SERVER_NAME 127.0.0.1 (10)",
        "small buffer: needs 10",
        "unknown variable: ERROR_INVALID_INDEX",
        "unknown request: ERROR_INVALID_PARAMETER",
        "impersonation token: ERROR_NOT_SUPPORTED",
        "bad ConnID: ERROR_INVALID_PARAMETER",
        &format!("body 1048576 bytes (49152 preloaded), sum {sum}"),
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }
    // The service log says why there is no impersonation token.
    assert!(
        web.log()
            .contains("there are no Windows access tokens here"),
        "{}",
        web.log()
    );
    // Pending, finished from the extension's own thread.
    let got = web.curl("/x.echo?pending", &[]);
    assert_eq!(got.status, 200);
    assert!(
        got.text().ends_with("finished from another thread\n"),
        "{}",
        got.text()
    );
    // Prohibited again, by the file.
    web.cli_ok(&["webext", "disable-file", &echo]);
    assert_eq!(web.curl("/x.echo", &[]).status, 404);
    // The access flags still apply: without Script access, 403.1.
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AccessFlags", "AccessRead"]);
    web.wait_for("AccessFlags applied", Duration::from_secs(10), || {
        web.curl("/x.hello", &[]).status == 403
    });
}

/// The worker process an answer of the faults extension came from.
fn pid_of(got: &common::web::Got) -> u32 {
    got.text()
        .trim()
        .strip_prefix("pid ")
        .and_then(|p| p.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("not a pid: {:?}", got.text()))
}

/// How often the faults extension had been called since it was loaded.
fn calls_of(got: &common::web::Got) -> u32 {
    got.text()
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no count: {:?}", got.text()))
}

#[test]
fn modules_are_cached_or_not_and_run_from_their_own_url_where_execute_allows() {
    // The module lives in a folder of a private (0700) directory: the
    // folder is served as a virtual directory, the module is mapped too.
    let modules = module_dir();
    let scripts = modules.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let faults = common::modules::test_module(&scripts, "faults");
    let mut web = Web::prepare();
    common::modules::map_module(&web, ".fault", &faults);
    web.cli_ok(&["vdir", "create", "1", "scripts", scripts.to_str().unwrap()]);
    web.launch();

    // CacheISAPI (TRUE by default): loaded once, its state kept.
    let counts: Vec<u32> = (0..3)
        .map(|_| calls_of(&web.curl("/x.fault", &[])))
        .collect();
    assert_eq!(counts, vec![counts[0], counts[0] + 1, counts[0] + 2]);
    // FALSE: loaded for each request and unloaded after it.
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/CacheISAPI", "FALSE"]);
    let counts: Vec<u32> = (0..3)
        .map(|_| calls_of(&web.curl("/x.fault", &[])))
        .collect();
    assert_eq!(counts, vec![1, 1, 1]);

    // The module's own URL: refused without Execute access, run with it.
    let own = web.curl("/scripts/faults.so", &[]);
    assert_eq!(own.status, 403);
    assert!(own.text().contains("403.1"), "{}", own.text());
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/scripts/AccessFlags",
        "AccessRead | AccessExecute",
    ]);
    let own = web.curl("/scripts/faults.so", &[]);
    assert_eq!(own.status, 200, "{}", web.log());
    assert!(own.text().starts_with("pid "), "{}", own.text());
    // Not on the list: 404.2, however it is reached.
    web.cli_ok(&["webext", "disable-file", &faults]);
    assert_eq!(web.curl("/scripts/faults.so", &[]).status, 404);
}

#[test]
fn a_module_that_crashes_or_reports_unhealthy_takes_down_only_its_worker() {
    let (_modules, _faults, mut web) = web_with_module("faults", ".fault");
    write(&web.www(), "page.htm", "static");
    web.launch();

    let first = pid_of(&web.curl("/x.fault", &[]));
    // A crash: the request gets no answer (or 502 from the listener), the
    // worker is replaced, and everything else goes on.
    for fault in ["crash", "abort"] {
        let before = pid_of(&web.curl("/x.fault", &[]));
        let crashed = web.curl(&format!("/x.fault?{fault}"), &[]);
        assert_ne!(crashed.status, 200, "{fault}");
        let mut after = before;
        web.wait_for("a new worker", Duration::from_secs(20), || {
            let got = web.curl("/x.fault", &[]);
            if got.status == 200 {
                after = pid_of(&got);
            }
            after != before
        });
        assert_eq!(web.curl("/page.htm", &[]).text(), "static");
    }
    assert!(web.log().contains("worker process failed"), "{}", web.log());
    // Reported unhealthy: the request is answered, then the service
    // recycles the worker with the module's reason in its log.
    let reporter = web.curl("/x.fault?unhealthy", &[]);
    assert_eq!(reporter.status, 200);
    let reporting = pid_of(&reporter);
    assert_ne!(reporting, first);
    web.wait_for("the recycle", Duration::from_secs(20), || {
        pid_of(&web.curl("/x.fault", &[])) != reporting
    });
    let log = web.log();
    assert!(
        log.contains("HSE_REQ_REPORT_UNHEALTHY from") && log.contains("the database is gone"),
        "{log}"
    );
}

#[test]
fn a_module_that_hangs_is_found_by_pings_and_its_worker_replaced() {
    let (_modules, _faults, mut web) = web_with_module("faults", ".fault");
    common::modules::fast_pings(&web);
    web.launch();

    let before = pid_of(&web.curl("/x.fault", &[]));
    let started = std::time::Instant::now();
    // The worker's own thread answers pings; the hung call is what gives
    // it away, and the worker is killed: the request's connection closes.
    let hung = web.curl("/x.fault?hang", &["--max-time", "30"]);
    assert_ne!(hung.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let mut after = before;
    web.wait_for("a new worker", Duration::from_secs(20), || {
        let got = web.curl("/x.fault", &[]);
        if got.status == 200 {
            after = pid_of(&got);
        }
        after != before
    });
    assert!(
        web.log()
            .contains("a module call has run longer than PingResponseTime"),
        "{}",
        web.log()
    );
}

#[test]
fn an_extension_written_in_rust_with_the_isapi_crate() {
    let (_modules, mut web) = web_with_rust_echo();
    web.launch();

    let body = vec![7u8; 200_000];
    let file = web.dir.path().join("body.bin");
    std::fs::write(&file, &body).unwrap();
    let got = web.curl(
        "/a/b.rs?vars",
        &[
            "-A",
            "RustTest/1",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
    );
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.header("x-written-in").as_deref(), Some("Rust"));
    let text = got.text();
    for line in [
        "rust echo: POST /a/b.rs?vars",
        "SERVER_NAME 127.0.0.1",
        "REMOTE_ADDR 127.0.0.1",
        "HTTP_USER_AGENT RustTest/1",
        "NO_SUCH_VARIABLE (none)",
        "body 200000 bytes, sum 1400000",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // HSE_APPEND_LOG_PARAMETER reaches the request log's query field.
    web.wait_for("the log parameter", Duration::from_secs(10), || {
        web.w3c_lines(1)
            .iter()
            .any(|l| l.contains("/a/b.rs vars&rust=1 "))
    });
    let moved = web.curl("/x.rs?redirect", &[]);
    assert_eq!(moved.status, 302);
    assert_eq!(moved.header("location").as_deref(), Some("/elsewhere/"));
    // A panic answers 500 and the worker goes on.
    assert_eq!(web.curl("/x.rs?panic", &[]).status, 500);
    assert_eq!(web.curl("/x.rs", &[]).status, 200);
    // Reported unhealthy: recycled with the reason.
    assert_eq!(web.curl("/x.rs?unhealthy", &[]).status, 200);
    web.wait_for("the recycle", Duration::from_secs(20), || {
        web.log().contains("the cache is corrupt")
    });
}

/// The Rust example extension, copied into a private directory, mapped
/// as `.rs` and allowed.
fn web_with_rust_echo() -> (tempfile::TempDir, Web) {
    let modules = module_dir();
    let module = common::modules::example_module(modules.path(), "rust_echo");
    let web = Web::prepare();
    common::modules::map_module(&web, ".rs", &module);
    (modules, web)
}

#[test]
fn rust_extensions_read_asynchronously_transmit_files_hand_requests_on_crash_and_hang() {
    let (_modules, mut web) = web_with_rust_echo();
    write(&web.www(), "plain.htm", "plain");
    common::modules::fast_pings(&web);
    web.launch();

    // 10 MB read synchronously (ReadClient) and asynchronously
    // (HSE_REQ_ASYNC_READ_CLIENT with a completion).
    let body: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let file = web.dir.path().join("body.bin");
    std::fs::write(&file, &body).unwrap();
    let upload = format!("@{}", file.display());
    let sync = web.curl("/x.rs?vars", &["--data-binary", &upload]);
    assert!(
        sync.text()
            .contains(&format!("body 10485760 bytes, sum {sum}")),
        "{}",
        sync.text()
    );
    let asynchronous = web.curl("/x.rs?async", &["--data-binary", &upload]);
    assert_eq!(
        asynchronous.text(),
        format!("async body 10485760 bytes, sum {sum}\n"),
        "{}",
        web.log()
    );

    // TransmitFile: the file's bytes leave from the file, then the tail.
    let shared = common::modules::shared_dir();
    let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let sent = shared.path().join("data.bin");
    std::fs::write(&sent, &data).unwrap();
    std::fs::set_permissions(&sent, std::fs::Permissions::from_mode(0o644)).unwrap();
    let got = web.curl(
        "/x.rs?transmit",
        &["-H", &format!("X-File: {}", sent.display())],
    );
    assert_eq!(got.header("x-sent-by").as_deref(), Some("TransmitFile"));
    let mut expected = data.clone();
    expected.extend_from_slice(b"TAIL");
    assert!(got.body == expected, "{} bytes", got.body.len());

    // EXEC_URL: the child answers; the completion notes its status in the
    // log line.
    let child = web.curl("/x.rs?exec=/plain.htm", &[]);
    assert_eq!((child.status, child.text().as_str()), (200, "plain"));
    web.wait_for(
        "the child's status in the log",
        Duration::from_secs(10),
        || {
            web.w3c_lines(1)
                .iter()
                .any(|l| l.contains(" /x.rs exec=/plain.htm&child=200 "))
        },
    );

    // A crash (abort) and a hang take down only the worker.
    for (fault, limit) in [("abort", 20), ("hang", 30)] {
        let before = web.worker_pids("DefaultAppPool", "running");
        let failed = web.curl(&format!("/x.rs?{fault}"), &["--max-time", "30"]);
        assert_ne!(failed.status, 200, "{fault}");
        web.wait_for("a new worker", Duration::from_secs(limit), || {
            // A request starts the replacement.
            let served = web.curl("/plain.htm", &[]).text() == "plain";
            let now = web.worker_pids("DefaultAppPool", "running");
            served && !now.is_empty() && now != before
        });
    }
    assert!(
        web.log()
            .contains("a module call has run longer than PingResponseTime"),
        "{}",
        web.log()
    );
}

#[test]
fn a_wildcard_map_front_end_rewrites_denies_and_hands_requests_on() {
    let (modules, front, mut web) = web_with_module("front", "*");
    let echo = common::modules::test_module(modules.path(), "echo");
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        &format!("*,{front},1"),
        &format!(".echo,{echo},1"),
    ]);
    web.cli_ok(&["webext", "add-file", &echo, "--enable"]);
    write(&web.www(), "new/page.htm", "the new page");
    write(&web.www(), "private/secret.htm", "the secret");
    write(&web.www(), "plain.htm", "plain");
    web.launch();

    // Rewritten: /old/ is served from /new/ by a child request.
    let got = web.curl("/old/page.htm", &[]);
    assert_eq!(
        (got.status, got.text().as_str()),
        (200, "the new page"),
        "{}",
        web.log()
    );
    // What the front end appends to the log after the child answered
    // reaches the request's log line.
    web.wait_for("the front end's log note", Duration::from_secs(10), || {
        web.w3c_lines(1)
            .iter()
            .any(|l| l.contains(" /old/page.htm front=done "))
    });
    // A child request with a body of the front end's own (pEntity).
    let got = web.curl("/entity/anything", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    let sum: u32 = b"hello entity".iter().map(|&b| u32::from(b)).sum();
    assert!(
        got.text().contains("method POST query  path /x.echo"),
        "{}",
        got.text()
    );
    assert!(
        got.text()
            .contains(&format!("body 12 bytes (12 preloaded), sum {sum}")),
        "{}",
        got.text()
    );
    // Its own access check, and the request handed on when it passes.
    let denied = web.curl("/private/secret.htm", &[]);
    assert_eq!(denied.status, 403);
    assert_eq!(denied.text(), "denied by the front end\n");
    let allowed = web.curl("/private/secret.htm", &["-H", "X-Secret: letmein"]);
    assert_eq!(
        (allowed.status, allowed.text().as_str()),
        (200, "the secret")
    );
    // Everything else is handed on as it came; the front end learns the
    // child's status (HSE_REQ_GET_EXEC_URL_STATUS) in its completion
    // function and notes it in a file the test names.
    let shared = common::modules::shared_dir();
    let notes = shared.path().join("statuses");
    std::fs::write(&notes, "").unwrap();
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o666)).unwrap();
    let header = format!("X-Status-File: {}", notes.display());
    assert_eq!(web.curl("/plain.htm", &["-H", &header]).text(), "plain");
    assert_eq!(web.curl("/missing.htm", &["-H", &header]).status, 404);
    // The completion runs once the child has answered: soon after.
    web.wait_for("both statuses noted", Duration::from_secs(10), || {
        std::fs::read_to_string(&notes).unwrap() == "/plain.htm 200.0\n/missing.htm 404.0\n"
    });
}

#[test]
fn files_leave_by_transmit_file_and_vectors_and_urls_map_to_paths() {
    let modules = module_dir();
    let files = build(
        Path::new("crates/isapi/tests/c/files.c"),
        modules.path(),
        "files",
    );
    let files = files.to_str().unwrap().to_string();
    // Content the pool's identity may read by its path, as an extension
    // opening PATH_TRANSLATED needs (IIS needed the same NTFS rights).
    let shared = common::modules::shared_dir();
    let data_dir = shared.path().join("files");
    std::fs::create_dir(&data_dir).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(data_dir.join("data.bin"), &data).unwrap();
    std::fs::set_permissions(
        data_dir.join("data.bin"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut web = Web::prepare();
    common::modules::map_module(&web, ".files", &files);
    web.cli_ok(&["vdir", "create", "1", "files", data_dir.to_str().unwrap()]);
    web.launch();

    let got = web.curl("/x.files?tf", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.header("x-sent-by").as_deref(), Some("TransmitFile"));
    let mut expected = data.clone();
    expected.extend_from_slice(b"TAIL");
    assert!(got.body == expected, "{} bytes", got.body.len());

    // HEAD of a streamed answer: its head, no body, the connection usable.
    let head = web.curl("/x.files?tf", &["-I", "--max-time", "10"]);
    assert_eq!(head.status, 200, "{}", web.log());
    assert!(!head.text().contains("abcdefghij"), "{:?}", head.text());
    let got = web.curl("/x.files?vector", &[]);
    assert_eq!((got.status, got.text().as_str()), (200, "[klmnopqrst]"));

    let got = web.curl("/x.files?map", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    let text = got.text();
    let path = data_dir.join("data.bin");
    // AccessRead | AccessScript from the root, inherited by the vdir.
    let expected_line = format!(
        "mapped {} flags 0x201 matching path {} url 6",
        path.display(),
        data_dir.to_str().unwrap().len()
    );
    assert!(text.contains(&expected_line), "{expected_line}: {text}");
    assert!(text.contains("cert bytes 0"), "{text}");
    assert!(
        text.contains(&format!(
            "async write done: {} bytes, error 0",
            text.lines().take(2).map(|l| l.len() + 1).sum::<usize>()
        )),
        "{text}"
    );
}

/// `NAME=value` lines of the vars extension's answer.
fn variables(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn server_variables_are_iis_6s() {
    let (_modules, _vars, mut web) = web_with_module("vars", ".vars");
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/private", "IIsWebDirectory"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/private/AuthFlags", "AuthBasic"]);
    web.cli_ok(&["user", "add", "alice", "--password", "s3cret"]);
    // An application of its own below the site's.
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/shop", "IIsWebDirectory"]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/shop/AppRoot",
        "/LM/W3SVC/1/ROOT/shop",
    ]);
    web.launch();

    let names = "REQUEST_METHOD,QUERY_STRING,URL,SCRIPT_NAME,PATH_INFO,PATH_TRANSLATED,\
SERVER_NAME,SERVER_PORT,SERVER_PORT_SECURE,SERVER_PROTOCOL,SERVER_SOFTWARE,GATEWAY_INTERFACE,\
REMOTE_ADDR,REMOTE_HOST,REMOTE_PORT,LOCAL_ADDR,CONTENT_LENGTH,CONTENT_TYPE,INSTANCE_ID,\
INSTANCE_META_PATH,APPL_MD_PATH,APPL_PHYSICAL_PATH,AUTH_TYPE,LOGON_USER,REMOTE_USER,HTTPS,\
CERT_FLAGS,HTTP_X_CUSTOM_THING,HEADER_X-Custom-Thing,http_user_agent,NO_SUCH_VARIABLE";
    let got = web.curl(
        &format!("/dir/page.vars?{names}"),
        &["-A", "Vars/1", "-H", "X-Custom-Thing: 42"],
    );
    assert_eq!(got.status, 200, "{}", web.log());
    let text = got.text();
    let v = variables(&text);
    let port = web.port.to_string();
    let www = web.www();
    let expected = [
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", names),
        ("URL", "/dir/page.vars"),
        ("SCRIPT_NAME", "/dir/page.vars"),
        ("PATH_INFO", "/dir/page.vars"),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", &port),
        ("SERVER_PORT_SECURE", "0"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "Microsoft-IIS/6.0"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_HOST", "127.0.0.1"),
        ("LOCAL_ADDR", "127.0.0.1"),
        ("CONTENT_LENGTH", "0"),
        ("CONTENT_TYPE", ""),
        ("INSTANCE_ID", "1"),
        ("INSTANCE_META_PATH", "/LM/W3SVC/1"),
        ("APPL_MD_PATH", "/LM/W3SVC/1/ROOT"),
        ("AUTH_TYPE", ""),
        ("LOGON_USER", ""),
        ("REMOTE_USER", ""),
        ("HTTPS", "off"),
        ("CERT_FLAGS", "0"),
        ("HTTP_X_CUSTOM_THING", "42"),
        ("HEADER_X-Custom-Thing", "42"),
        ("http_user_agent", "Vars/1"),
    ];
    for (name, value) in expected {
        assert_eq!(
            v.get(name).map(String::as_str),
            Some(value),
            "{name}: {text}"
        );
    }
    assert_eq!(
        v["PATH_TRANSLATED"],
        www.join("dir/page.vars").display().to_string()
    );
    // The application's directory (that of APPL_MD_PATH, the site's root
    // here), not the script's.
    assert_eq!(v["APPL_PHYSICAL_PATH"], format!("{}/", www.display()));
    // Deeper in an application of its own: that application's.
    let shop = variables(
        &web.curl("/shop/cart/list.vars?APPL_MD_PATH,APPL_PHYSICAL_PATH", &[])
            .text(),
    );
    assert_eq!(shop["APPL_MD_PATH"], "/LM/W3SVC/1/ROOT/shop");
    assert_eq!(
        shop["APPL_PHYSICAL_PATH"],
        format!("{}/", www.join("shop").display())
    );
    assert!(v["REMOTE_PORT"].parse::<u16>().is_ok(), "{text}");
    assert!(text.contains("NO_SUCH_VARIABLE: error 1413"), "{text}");
    // ALL_HTTP and ALL_RAW: every header, in IIS's two forms.
    let all = web
        .curl("/x.vars?ALL_HTTP,ALL_RAW", &["-H", "X-Custom-Thing: 42"])
        .text();
    assert!(all.contains("HTTP_X_CUSTOM_THING:42"), "{all}");
    assert!(all.contains("X-Custom-Thing: 42\r\n"), "{all}");
    // Basic: who logged on.
    let got = web.curl(
        "/private/x.vars?AUTH_TYPE,LOGON_USER,AUTH_USER,REMOTE_USER",
        &["-u", "alice:s3cret"],
    );
    let v = variables(&got.text());
    for name in ["LOGON_USER", "AUTH_USER", "REMOTE_USER"] {
        assert_eq!(v[name], "alice", "{name}");
    }
    assert_eq!(v["AUTH_TYPE"], "Basic");
}

#[test]
fn webext_will_not_drop_an_entry_it_cannot_read() {
    let web = Web::prepare();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/WebSvcExtRestrictionList",
        "0,*.dll",
        "yes please,/opt/x.so",
    ]);
    web.cli_fails_with(
        &["webext", "add-file", "/opt/y.so", "--enable"],
        "'yes please,/opt/x.so'",
    );
    let kept = web.cli_ok(&["mb", "get", "W3SVC/WebSvcExtRestrictionList"]);
    assert!(kept.contains("yes please,/opt/x.so"), "{kept}");
    assert!(!kept.contains("/opt/y.so"), "{kept}");
    // Reading still works.
    assert!(web.cli_ok(&["webext", "list-files"]).contains("*.dll"));
}

#[test]
fn an_extension_may_let_the_listener_keep_its_answers() {
    let (modules, cached, mut web) = web_with_module("cached", ".cache");
    // The example of the README and the benchmark, beside the test module.
    let example = build(
        Path::new("examples/isapi/cached.c"),
        modules.path(),
        "example",
    );
    let example = example.to_str().unwrap().to_string();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        &format!(".cache,{cached},1"),
        &format!(".kept,{example},1"),
    ]);
    web.cli_ok(&["webext", "add-file", &example, "--enable"]);
    web.launch();
    assert_eq!(
        web.curl("/x.kept", &[]).text(),
        "Hello from ISAPI, kept by the server's cache\n"
    );

    // HSE_IO_CACHE_RESPONSE: the repeat is answered from the cache, with
    // the first call's count.
    let first = web.curl("/a.cache", &[]).text();
    assert!(
        first.starts_with("call ") && first.ends_with(" for /a.cache\n"),
        "{first}"
    );
    assert_eq!(web.curl("/a.cache", &[]).text(), first);
    // Another URL calls the extension again; without the flag, every
    // request does.
    let other = web.curl("/b.cache", &[]).text();
    assert_ne!(other, first);
    let plain = web.curl("/nocache.cache", &[]).text();
    assert_ne!(web.curl("/nocache.cache", &[]).text(), plain);
}
