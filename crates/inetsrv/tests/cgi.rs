//! CGI programs through the real server: script maps naming a program
//! (`/bin/sh "%s"`), programs reached by their URL, the lockdown list,
//! the meta-variables, streamed bodies, Status and Location, nph-
//! scripts, CGITimeout and standard error in the service log. The
//! content sits in the test's 0700 directory, which the pool's identity
//! may not search: the launcher's mount view makes it reachable.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::web::{write, Web};

/// A web server with `.sh` mapped to `/bin/sh "%s"`, allowed.
fn web_with_shell() -> Web {
    let mut web = Web::prepare();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        ".sh,/bin/sh \"%s\" %s,5,GET,HEAD,POST",
    ]);
    web.cli_ok(&[
        "webext", "add-file", "/bin/sh", "--enable", "--group", "SHELL",
    ]);
    write(&web.www(), "page.htm", "the static page");
    web.launch();
    web
}

fn script(web: &Web, name: &str, body: &str) {
    write(&web.www(), name, body);
}

#[test]
fn a_script_map_runs_a_program_with_the_request_meta_variables() {
    let web = web_with_shell();
    script(
        &web,
        "app/env.sh",
        "printf 'Content-Type: text/plain\\r\\nX-Script: yes\\r\\n\\r\\n'\n\
         env | sort\n\
         echo \"ARGS=$#:$0:$1:$2\"\n\
         echo \"WHO=$(id -un)\"\n\
         echo \"CWD=$(pwd)\"\n",
    );
    let got = web.curl(
        "/app/env.sh/extra/path?a=1&b=two",
        &[
            "-H",
            "X-Test: hello",
            "-H",
            "Proxy: http://evil/",
            "-H",
            "X-Twice: one",
            "-H",
            "x-twice: two",
            "-A",
            "Agent/1",
        ],
    );
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.header("x-script").as_deref(), Some("yes"));
    assert_eq!(got.header("content-type").as_deref(), Some("text/plain"));
    let text = got.text();
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let www = web.www().canonicalize().unwrap();
    assert_eq!(var("GATEWAY_INTERFACE").as_deref(), Some("CGI/1.1"));
    assert_eq!(var("REQUEST_METHOD").as_deref(), Some("GET"));
    assert_eq!(var("SCRIPT_NAME").as_deref(), Some("/app/env.sh"));
    assert_eq!(var("PATH_INFO").as_deref(), Some("/extra/path"));
    assert_eq!(var("QUERY_STRING").as_deref(), Some("a=1&b=two"));
    assert_eq!(
        var("REQUEST_URI").as_deref(),
        Some("/app/env.sh/extra/path?a=1&b=two")
    );
    assert_eq!(
        var("SCRIPT_FILENAME"),
        Some(www.join("app/env.sh").display().to_string())
    );
    assert_eq!(
        var("PATH_TRANSLATED"),
        Some(www.join("extra/path").display().to_string())
    );
    assert_eq!(var("DOCUMENT_ROOT"), Some(www.display().to_string()));
    assert_eq!(var("SERVER_PORT"), Some(web.port.to_string()));
    assert_eq!(var("SERVER_PROTOCOL").as_deref(), Some("HTTP/1.1"));
    assert_eq!(var("REMOTE_ADDR").as_deref(), Some("127.0.0.1"));
    assert_eq!(var("HTTPS").as_deref(), Some("off"));
    assert_eq!(var("HTTP_X_TEST").as_deref(), Some("hello"));
    assert_eq!(var("HTTP_USER_AGENT").as_deref(), Some("Agent/1"));
    // A repeated field is one variable, its values joined in order.
    assert_eq!(var("HTTP_X_TWICE").as_deref(), Some("one, two"), "{text}");
    assert_eq!(var("REMOTE_HOST").as_deref(), Some("127.0.0.1"));
    assert_eq!(var("SERVER_ADDR").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        var("APPL_PHYSICAL_PATH"),
        Some(format!("{}/", www.display()))
    );
    assert_eq!(var("INSTANCE_ID").as_deref(), Some("1"));
    assert_eq!(var("REDIRECT_STATUS").as_deref(), Some("200"));
    // httpoxy: a Proxy header never becomes HTTP_PROXY.
    assert_eq!(var("HTTP_PROXY"), None, "{text}");
    // No CONTENT_LENGTH without a body; nothing of the service's own
    // environment.
    assert_eq!(var("CONTENT_LENGTH"), None);
    assert_eq!(var("INETSRV_LOG"), None);
    // "%s" is the script ($0 of the shell); the second %s gives no
    // words for a form query.
    assert_eq!(
        var("ARGS"),
        Some(format!("0:{}::", www.join("app/env.sh").display()))
    );
    // It ran as the pool's identity, in the script's directory.
    let who = var("WHO").unwrap();
    assert!(who == "www-data" || who == "nobody", "{who}");
    assert_eq!(var("CWD"), Some(www.join("app").display().to_string()));

    // An ISINDEX query is the command line's words.
    let got = web.curl("/app/env.sh?first+second%21", &[]);
    assert!(
        got.text().contains(&format!(
            "ARGS=2:{}:first:second!",
            www.join("app/env.sh").display()
        )),
        "{}",
        got.text()
    );
}

#[test]
fn programs_wait_for_the_lockdown_list_and_execute_access() {
    let mut web = Web::prepare();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        ".sh,/bin/sh \"%s\",1",
    ]);
    write(
        &web.www(),
        "hi.sh",
        "echo 'Content-Type: text/plain'; echo; echo hi",
    );
    let program = write(
        &web.www(),
        "bin/tool.cgi",
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"tool $*\"\n",
    );
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    web.launch();
    // "All Unknown CGI Extensions" is prohibited by the first run.
    let got = web.curl("/hi.sh", &[]);
    assert_eq!(got.status, 404, "{}", got.text());
    // The log line says 404.2, Win32 1260.
    web.wait_for("the 404.2 in the log", Duration::from_secs(10), || {
        web.w3c_lines(1)
            .iter()
            .any(|l| l.contains("GET /hi.sh ") && l.ends_with(" 404 2 1260"))
    });
    web.cli_ok(&["webext", "add-file", "/bin/sh", "--enable"]);
    web.wait_for("the shell to be allowed", Duration::from_secs(10), || {
        web.curl("/hi.sh", &[]).status == 200
    });
    assert_eq!(web.curl("/hi.sh", &[]).text(), "hi\n");

    // A program by its URL needs Execute access (Read and Script do not
    // do), and the lockdown's permission for unknown CGI programs.
    let got = web.curl("/bin/tool.cgi?x+y", &[]);
    assert_eq!(got.status, 403, "{}", got.text());
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AccessFlags", "517"]);
    web.cli_ok(&["webext", "enable", "unknown-cgi"]);
    web.wait_for("Execute access", Duration::from_secs(10), || {
        web.curl("/bin/tool.cgi?x+y", &[]).status == 200
    });
    assert_eq!(web.curl("/bin/tool.cgi?x+y", &[]).text(), "tool x y\n");
}

#[test]
fn bodies_stream_both_ways_and_status_location_and_nph_are_honoured() {
    let web = web_with_shell();
    script(
        &web,
        "count.sh",
        "echo 'Content-Type: text/plain'; echo; echo \"$CONTENT_LENGTH $CONTENT_TYPE\"; wc -c | tr -d ' '",
    );
    script(&web, "status.sh", "echo 'Status: 418 Teapot Here'; echo 'Content-Type: text/plain'; echo; echo short and stout");
    script(&web, "local.sh", "echo 'Location: /page.htm'; echo");
    script(
        &web,
        "away.sh",
        "echo 'Location: http://example.invalid/x'; echo",
    );
    script(
        &web,
        "nph-raw.sh",
        "printf 'HTTP/1.1 201 Made Here\\r\\nContent-Type: text/plain\\r\\nContent-Length: 5\\r\\n\\r\\nmade!'",
    );
    script(
        &web,
        "big.sh",
        "echo 'Content-Type: application/octet-stream'; echo; head -c 20000000 /dev/zero",
    );
    script(
        &web,
        "broken.sh",
        "echo 'this is not a header'; echo; echo body",
    );
    script(&web, "silent.sh", "exit 0");
    script(&web, "circle.sh", "echo 'Location: /circle.sh'; echo");
    // Header blocks past 64 KB: one that ends just beyond the limit, and
    // one that never ends.
    script(
        &web,
        "bighead.sh",
        "printf 'Content-Type: text/plain\\nX-Long: %070000d\\n\\nbody' 0",
    );
    script(
        &web,
        "endless.sh",
        "printf 'X-Long: '; head -c 1000000 /dev/zero | tr '\\0' a",
    );

    // 10 MB up: CONTENT_LENGTH and every byte on standard input.
    let upload = web.dir.path().join("upload.bin");
    std::fs::write(&upload, vec![b'x'; 10 << 20]).unwrap();
    let got = web.curl(
        "/count.sh",
        &[
            "--data-binary",
            &format!("@{}", upload.display()),
            "-H",
            "Content-Type: application/x-test",
        ],
    );
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.text(), "10485760 application/x-test\n10485760\n");
    // A chunked upload is gathered first: CGI wants a length.
    let got = web.curl(
        "/count.sh",
        &[
            "--data-binary",
            "chunked body",
            "-H",
            "Transfer-Encoding: chunked",
        ],
    );
    assert_eq!(got.text(), "12 application/x-www-form-urlencoded\n12\n");

    let got = web.curl("/status.sh", &[]);
    assert_eq!(got.status, 418);
    assert!(got.head.contains("418 Teapot Here"), "{}", got.head);
    assert_eq!(got.text(), "short and stout\n");

    // A local redirect is answered as that URL; another is a 302.
    let got = web.curl("/local.sh", &[]);
    assert_eq!((got.status, got.text().as_str()), (200, "the static page"));
    let got = web.curl("/away.sh", &[]);
    assert_eq!(got.status, 302);
    assert_eq!(
        got.header("location").as_deref(),
        Some("http://example.invalid/x")
    );

    let got = web.curl("/nph-raw.sh", &[]);
    assert_eq!((got.status, got.text().as_str()), (201, "made!"));
    assert_eq!(got.header("content-length").as_deref(), Some("5"));

    // 20 MB down, streamed (chunked: the program gave no length).
    let got = web.curl("/big.sh", &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), 20_000_000);
    assert_eq!(got.header("transfer-encoding").as_deref(), Some("chunked"));

    // HEAD: the program's head, no body.
    let got = web.curl("/status.sh", &["-I"]);
    assert_eq!(got.status, 418);
    assert!(!got.text().contains("short and stout"), "{}", got.text());

    // Misbehaving programs get IIS's 502, with the reason in the log.
    let got = web.curl("/broken.sh", &[]);
    assert_eq!(got.status, 502, "{}", got.text());
    let got = web.curl("/silent.sh", &[]);
    assert_eq!(got.status, 502, "{}", got.text());
    for oversized in ["/bighead.sh", "/endless.sh"] {
        let got = web.curl(oversized, &[]);
        assert_eq!(got.status, 502, "{oversized}: {}", got.text());
        assert!(got.text().contains("too large"), "{}", got.text());
    }
    // Local redirects in a circle end.
    let got = web.curl("/circle.sh", &[]);
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(got.text().contains("circle"), "{}", got.text());
    web.wait_for("the reasons in the log", Duration::from_secs(10), || {
        let log = web.log();
        log.contains("a header line without a colon")
            && log.contains("wrote nothing")
            && log.contains("header block is larger than 64 KB")
    });
    // The server goes on serving.
    assert_eq!(web.curl("/page.htm", &[]).status, 200);
}

#[test]
fn cgi_timeout_kills_the_process_group_and_stderr_reaches_the_log() {
    let mut web = Web::prepare();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        ".sh,/bin/sh \"%s\",1",
    ]);
    web.cli_ok(&["webext", "add-file", "/bin/sh", "--enable"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/CGITimeout", "2"]);
    // Where the script leaves its pids: a directory the identity may
    // write to.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let pids = shared.path().join("pids");
    write(
        &web.www(),
        "hang.sh",
        format!(
            "echo \"$$\" >> {pids}; sleep 60 & echo \"$!\" >> {pids}; echo 'complaint to the log' >&2; wait",
            pids = pids.display()
        ),
    );
    web.launch();
    let started = Instant::now();
    let got = web.curl("/hang.sh", &[]);
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(started.elapsed() < Duration::from_secs(15));
    web.wait_for("the timeout in the log", Duration::from_secs(10), || {
        let log = web.log();
        log.contains("did not answer in time")
            && log.contains("complaint to the log")
            && log.contains("hang.sh")
    });
    // The script and the process it started are gone.
    let listed = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<&str> = listed.lines().collect();
    assert_eq!(pids.len(), 2, "{listed}");
    web.wait_for("the process group to go", Duration::from_secs(10), || {
        pids.iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    });
}

#[test]
fn cgi_requests_are_counted_while_they_run_and_after() {
    let web = web_with_shell();
    let go = web.www().join("go");
    script(
        &web,
        "slow.sh",
        &format!(
            "printf 'Content-Type: text/plain\\r\\n\\r\\n'\necho started\ni=0\nwhile [ ! -f '{}' ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done\necho done\n",
            go.display()
        ),
    );
    let stats = || -> serde_json::Value {
        serde_json::from_str(&web.cli_ok(&["stats", "--json"])).unwrap()
    };
    let url = web.url("/slow.sh");
    let running = std::thread::spawn(move || common::web::curl(&url, &[]));
    // The program has sent its head: the request is in progress, counted
    // as a CGI request of an anonymous user, until it ends.
    let end = Instant::now() + Duration::from_secs(15);
    let during = loop {
        let s = stats();
        if s["current_cgi_requests"] == 1 {
            break s;
        }
        assert!(Instant::now() < end, "never counted as running: {s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(during["current_anonymous"], 1, "{during}");
    assert_eq!(during["cgi_requests"], 0, "counted once it ends: {during}");
    std::fs::write(&go, "").unwrap();
    let got = running.join().unwrap();
    assert_eq!(got.status, 200);
    assert!(got.text().contains("done"));
    let after = stats();
    assert_eq!(after["cgi_requests"], 1, "{after}");
    assert_eq!(after["current_cgi_requests"], 0, "{after}");
    assert_eq!(after["max_cgi_requests"], 1, "{after}");
    assert_eq!(after["isapi_requests"], 0, "{after}");
    // A static page is neither.
    assert_eq!(web.curl("/page.htm", &[]).status, 200);
    assert_eq!(stats()["cgi_requests"], 1);
}
