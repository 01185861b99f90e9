//! The worker's request pipeline, end to end: the real server, real worker
//! processes, curl as the client. Each test configures the metabase the
//! way an administrator would (`inetsrv mb set`, `site`, `vdir`, `user`)
//! and checks what a client gets.

mod common;

use std::io::Read;
use std::time::Duration;

use common::web::{write, Web};

fn sha(bytes: &[u8]) -> u64 {
    // A cheap fingerprint: FNV-1a.
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn static_files_validators_ranges_and_head() {
    let web = Web::start();
    write(&web.www(), "hello.txt", "hello, world\n");
    write(&web.www(), "style.CSS", "body{}");
    write(&web.www(), "notes.unknownext", "?");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write(&web.www(), "big.bin", &big);

    let got = web.curl("/hello.txt", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.text(), "hello, world\n");
    assert_eq!(got.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(got.header("accept-ranges").as_deref(), Some("bytes"));
    let etag = got.header("etag").unwrap();
    let modified = got.header("last-modified").unwrap();
    assert_eq!(
        web.curl("/style.CSS", &[])
            .header("content-type")
            .as_deref(),
        Some("text/css"),
        "extensions ignore case"
    );

    // Conditional requests.
    assert_eq!(
        web.curl("/hello.txt", &["-H", &format!("If-None-Match: {etag}")])
            .status,
        304
    );
    assert_eq!(
        web.curl(
            "/hello.txt",
            &["-H", &format!("If-Modified-Since: {modified}")]
        )
        .status,
        304
    );
    assert_eq!(
        web.curl("/hello.txt", &["-H", "If-None-Match: \"other\""])
            .status,
        200
    );
    assert_eq!(
        web.curl("/hello.txt", &["-H", "If-Match: \"other\""])
            .status,
        412
    );

    // Ranges: one, several, none satisfiable, stale If-Range.
    let one = web.curl("/hello.txt", &["-r", "0-4"]);
    assert_eq!((one.status, one.text().as_str()), (206, "hello"));
    assert_eq!(one.header("content-range").as_deref(), Some("bytes 0-4/13"));
    let many = web.curl("/hello.txt", &["-r", "0-1,7-11"]);
    assert_eq!(many.status, 206);
    let ctype = many.header("content-type").unwrap();
    assert!(
        ctype.starts_with("multipart/byteranges; boundary="),
        "{ctype}"
    );
    let text = many.text();
    assert!(
        text.contains("Content-Range: bytes 0-1/13\r\n\r\nhe\r\n")
            && text.contains("Content-Range: bytes 7-11/13\r\n\r\nworld\r\n"),
        "{text}"
    );
    let bad = web.curl("/hello.txt", &["-r", "100-200"]);
    assert_eq!(
        (bad.status, bad.header("content-range").as_deref()),
        (416, Some("bytes */13"))
    );
    let stale = web.curl("/hello.txt", &["-r", "0-4", "-H", "If-Range: \"old\""]);
    assert_eq!((stale.status, stale.body.len()), (200, 13));

    // HEAD: the length of the body, no body: the next response on the
    // connection follows the head at once.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut c = common::Client::connect(web.port).await;
        c.send(
            b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        let head = c.read(true, Duration::from_secs(10)).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("3000000"));
        let next = c.read(false, Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            (next.status, next.body.as_slice()),
            (200, &b"hello, world\n"[..])
        );
    });

    // A large file arrives whole (streamed, not read into memory), and a
    // range deep inside it too.
    let whole = web.curl("/big.bin", &[]);
    assert_eq!(
        whole.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(sha(&whole.body), sha(&big));
    let tail = web.curl("/big.bin", &["-r", "2999990-"]);
    assert_eq!(tail.body, &big[2_999_990..]);

    // Not found, a file asked for as a directory, no MIME type (404.3).
    let missing = web.curl("/missing.htm", &[]);
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("HTTP Error 404 - Not Found"),
        "{}",
        missing.text()
    );
    assert_eq!(web.curl("/hello.txt/", &[]).status, 404);
    let mime = web.curl("/notes.unknownext", &[]);
    assert_eq!(mime.status, 404);
    assert!(
        mime.text().contains("404.3") && mime.text().contains("MIME map"),
        "{}",
        mime.text()
    );
    // Other methods.
    let post = web.curl("/hello.txt", &["-X", "POST", "-d", "x=1"]);
    assert_eq!(post.status, 405);
    assert_eq!(
        post.header("allow").as_deref(),
        Some("OPTIONS, TRACE, GET, HEAD")
    );
    let options = web.curl("/hello.txt", &["-X", "OPTIONS"]);
    assert_eq!(
        (options.status, options.header("allow").as_deref()),
        (200, Some("OPTIONS, TRACE, GET, HEAD"))
    );
    assert_eq!(web.curl("/hello.txt", &["-X", "PROPFIND"]).status, 501);
}

#[test]
fn default_documents_listings_and_the_courtesy_redirect() {
    let web = Web::start();
    write(&web.www(), "docs/index.htm", "<p>docs index</p>");
    write(&web.www(), "docs/Default.htm", "<p>docs default</p>");
    write(&web.www(), "files/a.txt", "a");
    write(&web.www(), "files/b b.txt", "bb");
    write(&web.www(), "files/sub/c.txt", "c");

    // DefaultDoc order decides (Default.htm before index.htm).
    let docs = web.curl("/docs/", &[]);
    assert_eq!(
        (docs.status, docs.text().as_str()),
        (200, "<p>docs default</p>")
    );
    // The slash is added by a redirect, keeping the query.
    let courtesy = web.curl("/docs?x=1", &[]);
    assert_eq!(courtesy.status, 302);
    assert_eq!(courtesy.header("location"), Some(web.url("/docs/?x=1")));
    // No default document and no browsing: 403.14.
    let denied = web.curl("/files/", &[]);
    assert_eq!(denied.status, 403);
    assert!(denied.text().contains("403.14"), "{}", denied.text());

    // Browsing on, with every column.
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/files", "IIsWebDirectory"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/files/EnableDirBrowsing", "TRUE"]);
    web.wait_for("the listing", Duration::from_secs(10), || {
        web.curl("/files/", &[]).status == 200
    });
    let listing = web.curl("/files/", &[]).text();
    assert!(
        listing.contains("<title>127.0.0.1 - /files/</title>"),
        "{listing}"
    );
    assert!(listing.contains("[To Parent Directory]"));
    assert!(
        listing.contains("<A HREF=\"/files/b%20b.txt\">b b.txt</A>"),
        "{listing}"
    );
    assert!(
        listing.contains("&lt;dir&gt; <A HREF=\"/files/sub/\">sub</A>"),
        "{listing}"
    );
    assert!(listing.contains(" 2 <A HREF"), "sizes are shown: {listing}");
    // Without the extension column, names lose their extension.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/files/DirBrowseShowExtension",
        "FALSE",
    ]);
    web.wait_for("names without extensions", Duration::from_secs(10), || {
        web.curl("/files/", &[]).text().contains(">b b</A>")
    });
    // EnableDefaultDoc off: the directory is listed even with an index.
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/docs", "IIsWebDirectory"]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/docs/DirBrowseFlags",
        "EnableDirBrowsing | DirBrowseShowSize",
    ]);
    web.wait_for("a listing of /docs/", Duration::from_secs(10), || {
        web.curl("/docs/", &[]).text().contains(">index</A>")
    });
}

#[test]
fn redirects_custom_headers_expires_and_errors() {
    let web = Web::start();
    write(&web.www(), "new/page.htm", "new page");
    write(&web.www(), "app/landing/index.htm", "landing");
    write(&web.www(), "errors/oops.htm", "<p>custom not found</p>");
    write(
        web.dir.path(),
        "error-files/403.htm",
        "<p>custom forbidden</p>",
    );
    let forbidden_file = web.dir.path().join("error-files/403.htm");
    let set = |args: &[&str]| {
        let mut all = vec!["mb", "set"];
        all.extend_from_slice(args);
        web.cli_ok(&all);
    };
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/old", "IIsWebDirectory"]);
    set(&["W3SVC/1/ROOT/old/HttpRedirect", "/new"]);
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/gone", "IIsWebDirectory"]);
    set(&[
        "W3SVC/1/ROOT/gone/HttpRedirect",
        "http://example.com/moved.htm?from=$V$Q, EXACT_DESTINATION, PERMANENT",
    ]);
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/app", "IIsWebDirectory"]);
    set(&["W3SVC/1/ROOT/app/HttpRedirect", "/app/landing/, CHILD_ONLY"]);
    set(&[
        "W3SVC/1/ROOT/HttpCustomHeaders",
        "X-Powered-By: inetsrv",
        "X-Frame-Options: DENY",
    ]);
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/new", "IIsWebDirectory"]);
    set(&["W3SVC/1/ROOT/new/HttpExpires", "D, 0x3c"]);
    set(&[
        "W3SVC/1/ROOT/HttpErrors",
        "404,*,URL,/errors/oops.htm",
        &format!("403,14,FILE,{}", forbidden_file.display()),
        "405,*,DEFAULT",
    ]);
    // A running server picks the edits up through edit-while-running; a
    // fresh worker reads them at start.
    let moved = web.curl("/old/page.htm?q=1", &[]);
    assert_eq!(moved.status, 302, "{}", web.log());
    assert_eq!(
        moved.header("location"),
        Some(web.url("/new/page.htm")),
        "the suffix follows; the query does not"
    );
    assert!(moved.text().contains("Object Moved"));
    let page = web.curl("/new/page.htm", &[]);
    assert_eq!(page.text(), "new page");
    assert_eq!(page.header("cache-control").as_deref(), Some("max-age=60"));
    assert_eq!(page.header("x-powered-by").as_deref(), Some("inetsrv"));
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));

    let exact = web.curl("/gone/a/b.htm?x=1", &[]);
    assert_eq!(exact.status, 301);
    assert_eq!(
        exact.header("location").as_deref(),
        Some("http://example.com/moved.htm?from=/gone/a/b.htm?x=1")
    );

    // CHILD_ONLY: /app redirects into /app/landing/, which is served.
    let into = web.curl("/app/", &[]);
    assert_eq!(
        (into.status, into.header("location")),
        (302, Some(web.url("/app/landing/")))
    );
    assert_eq!(web.curl("/app/landing/", &[]).text(), "landing");

    // Custom errors: URL, FILE, DEFAULT; headers still apply to them.
    let missing = web.curl("/nothing-here.htm", &[]);
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (404, "<p>custom not found</p>")
    );
    assert_eq!(missing.header("x-powered-by").as_deref(), Some("inetsrv"));
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/empty", "IIsWebDirectory"]);
    std::fs::create_dir_all(web.www().join("empty")).unwrap();
    web.wait_for("the custom 403.14 page", Duration::from_secs(10), || {
        web.curl("/empty/", &[]).text() == "<p>custom forbidden</p>"
    });
    let post = web.curl("/new/page.htm", &["-X", "POST", "-d", "x"]);
    assert_eq!(post.status, 405);
    assert!(post.text().contains("HTTP Error 405"));
}

#[test]
fn uploads_deletes_and_body_limits() {
    let web = Web::start();
    let upload_dir = web.writable_folder("upload");
    let body_file = web.dir.path().join("payload.txt");
    std::fs::write(&body_file, "uploaded text").unwrap();
    let payload = format!("@{}", body_file.display());
    // PUT the payload file with these request headers.
    let put = |path: &str, headers: &[&str]| {
        let mut args = vec!["-X", "PUT"];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.extend(["--data-binary", payload.as_str()]);
        web.curl(path, &args)
    };

    // Without AccessWrite: 403.3.
    let refused = put("/upload/a.txt", &[]);
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("403.3"));
    web.allow_writes("upload");
    web.wait_for("AccessWrite", Duration::from_secs(10), || {
        put("/upload/a.txt", &[]).status == 201
    });
    assert_eq!(
        std::fs::read_to_string(upload_dir.join("a.txt")).unwrap(),
        "uploaded text"
    );
    assert_eq!(web.curl("/upload/a.txt", &[]).text(), "uploaded text");
    // Replacing: 204, and the listener's cached copy is gone at once.
    std::fs::write(&body_file, "second version").unwrap();
    let replaced = put("/upload/a.txt", &[]);
    assert_eq!(replaced.status, 204);
    assert_eq!(web.curl("/upload/a.txt", &[]).text(), "second version");
    // A chunked upload.
    let chunked = put("/upload/c.txt", &["Transfer-Encoding: chunked"]);
    assert_eq!(chunked.status, 201);
    // Preconditions on PUT.
    let etag = web.curl("/upload/a.txt", &[]).header("etag").unwrap();
    assert_eq!(
        web.curl(
            "/upload/a.txt",
            &[
                "-X",
                "PUT",
                "-H",
                "If-Match: \"stale\"",
                "--data-binary",
                &payload
            ]
        )
        .status,
        412
    );
    assert_eq!(
        put("/upload/a.txt", &[&format!("If-Match: {etag}")]).status,
        204
    );
    assert_eq!(put("/upload/new.txt", &["If-None-Match: *"]).status, 201);
    assert_eq!(put("/upload/new.txt", &["If-None-Match: *"]).status, 412);
    // No parent directory: 409.
    assert_eq!(put("/upload/no/such/dir.txt", &[]).status, 409);
    // DELETE.
    assert_eq!(web.curl("/upload/a.txt", &["-X", "DELETE"]).status, 204);
    assert!(!upload_dir.join("a.txt").exists());
    assert_eq!(web.curl("/upload/a.txt", &[]).status, 404);
    assert_eq!(web.curl("/upload/a.txt", &["-X", "DELETE"]).status, 404);

    // MaxRequestEntityAllowed: a declared length beyond it, and a chunked
    // body that grows beyond it; nothing is stored.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/upload/MaxRequestEntityAllowed",
        "100",
    ]);
    let big = web.dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(1000)).unwrap();
    let big_payload = format!("@{}", big.display());
    web.wait_for("the body limit", Duration::from_secs(10), || {
        web.curl(
            "/upload/probe.txt",
            &["-X", "PUT", "--data-binary", &big_payload],
        )
        .status
            == 413
    });
    assert_eq!(
        web.curl(
            "/upload/big.txt",
            &["-X", "PUT", "--data-binary", &big_payload]
        )
        .status,
        413
    );
    let chunked = web.curl(
        "/upload/big2.txt",
        &[
            "-X",
            "PUT",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &big_payload,
        ],
    );
    assert_eq!(chunked.status, 413);
    assert!(!upload_dir.join("big.txt").exists() && !upload_dir.join("big2.txt").exists());
    let leftovers: Vec<String> = std::fs::read_dir(&upload_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".inetsrv-put"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn ip_restrictions_ssl_and_basic_authentication() {
    let web = Web::start();
    write(&web.www(), "private/secret.txt", "the secret");
    write(&web.www(), "local/ok.txt", "local only");
    write(&web.www(), "elsewhere/no.txt", "no");
    write(&web.www(), "tls/page.txt", "tls only");
    for dir in ["private", "local", "elsewhere", "tls"] {
        web.cli_ok(&[
            "mb",
            "create",
            &format!("W3SVC/1/ROOT/{dir}"),
            "IIsWebDirectory",
        ]);
    }
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/local/IPSecurity",
        "GrantByDefault=FALSE; IPGrant=127.0.0.0, 255.0.0.0",
    ]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/elsewhere/IPSecurity",
        "IPDeny=127.0.0.1",
    ]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/tls/AccessSSLFlags", "AccessSSL"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/private/AuthFlags", "AuthBasic"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/private/Realm", "Staff"]);
    let shown = web.cli_ok(&["mb", "get", "W3SVC/1/ROOT/local/IPSecurity"]);
    assert!(
        shown.contains("GrantByDefault=FALSE; IPGrant=127.0.0.0/8"),
        "{shown}"
    );
    web.wait_for("the settings", Duration::from_secs(10), || {
        web.curl("/tls/page.txt", &[]).status == 403
    });

    assert_eq!(web.curl("/local/ok.txt", &[]).text(), "local only");
    let denied = web.curl("/elsewhere/no.txt", &[]);
    assert_eq!(denied.status, 403);
    assert!(denied.text().contains("403.6"), "{}", denied.text());
    assert!(web.curl("/tls/page.txt", &[]).text().contains("403.4"));

    // Basic: a challenge, a failed logon, a good one.
    let challenge = web.curl("/private/secret.txt", &[]);
    assert_eq!(challenge.status, 401);
    assert_eq!(
        challenge.header("www-authenticate").as_deref(),
        Some("Basic realm=\"Staff\"")
    );
    assert!(challenge.text().contains("401.2"));
    let password_file = web.dir.path().join("pw");
    std::fs::write(&password_file, "correct horse\n").unwrap();
    web.cli_ok(&[
        "user",
        "add",
        "alice",
        "--password-file",
        password_file.to_str().unwrap(),
    ]);
    assert!(web.cli_ok(&["user", "list"]).contains("alice"));
    let users_file = web.state().join("users");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&users_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!std::fs::read_to_string(&users_file)
            .unwrap()
            .contains("correct horse"));
    }
    let wrong = web.curl("/private/secret.txt", &["-u", "alice:wrong"]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("401.1"));
    let right = web.curl("/private/secret.txt", &["-u", "alice:correct horse"]);
    assert_eq!(
        (right.status, right.text().as_str()),
        (200, "the secret"),
        "{}",
        web.log()
    );
    web.wait_for(
        "the user in the request log",
        Duration::from_secs(10),
        || {
            web.w3c_lines(1).iter().any(|l| {
                l.contains("/private/secret.txt - ")
                    && l.contains(" alice ")
                    && l.ends_with(" 200 0 0")
            })
        },
    );
    assert!(
        web.w3c_lines(1).iter().any(|l| l.contains(" 401 1 0")),
        "the failed logon is logged as 401.1"
    );
    // Anonymous clients never get it from the listener's cache.
    assert_eq!(web.curl("/private/secret.txt", &[]).status, 401);
    // A deleted user's cached logon is forgotten.
    web.cli_ok(&["user", "delete", "alice"]);
    web.wait_for("the logon to be refused", Duration::from_secs(10), || {
        web.curl("/private/secret.txt", &["-u", "alice:correct horse"])
            .status
            == 401
    });
    assert!(web
        .cli_err(&["user", "delete", "alice"])
        .contains("no user 'alice'"));
}

#[test]
fn script_maps_and_script_execute_source_and_no_physical_dir_access() {
    let web = Web::start();
    write(&web.www(), "default.asp", "<% Response.Write(secret) %>");
    write(
        &web.www(),
        "global.asa",
        "<script runat=server>secret</script>",
    );
    write(&web.www(), "tool.exe", "MZ");
    write(&web.www(), "page.htm", "<p>static</p>");
    write(&web.www(), "py/run.py", "print('secret')");
    write(&web.www(), "py/old.asp", "old");
    write(&web.www(), "wild/page.htm", "<p>wild</p>");
    let substatus = |got: &common::web::Got| (got.status, got.text());

    // The default configuration maps .asp, .asa, … (as IIS 6's does) and
    // the site's root has Read and Script: the engine would run, and none
    // is enabled — 404.2, never the source.
    let asp = web.curl("/default.asp", &[]);
    let (status, text) = substatus(&asp);
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("404.2") && text.contains("Lockdown"),
        "{text}"
    );
    assert!(!text.contains("secret"));
    assert_eq!(web.curl("/global.asa", &[]).status, 404);
    assert_eq!(web.curl("/DEFAULT.ASP", &[]).status, 404);
    // Translate: f asks for the source; without Source access it is refused.
    let raw = web.curl("/default.asp", &["-H", "Translate: f"]);
    assert!(!raw.text().contains("secret"), "{}", raw.text());
    // An executable without Execute access: 403.1.
    let exe = web.curl("/tool.exe", &[]);
    assert_eq!(exe.status, 403);
    assert!(exe.text().contains("403.1"), "{}", exe.text());
    assert_eq!(web.curl("/page.htm", &[]).status, 200);
    // A default document that is a script is handled as the script.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/DefaultDoc",
        "default.asp,page.htm",
    ]);
    web.wait_for("DefaultDoc", Duration::from_secs(10), || {
        web.curl("/", &[]).status == 404
    });
    assert!(web.curl("/", &[]).text().contains("404.2"));

    // Read and Source, no Script: the script is refused (403.1), and its
    // source comes back to a WebDAV-style request.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/AccessFlags",
        "AccessRead | AccessSource",
    ]);
    web.wait_for("AccessSource", Duration::from_secs(10), || {
        web.curl("/default.asp", &[]).status == 403
    });
    assert!(web.curl("/default.asp", &[]).text().contains("403.1"));
    // .asp has no MIME type, so its source is 404.3 unless the map gives one.
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/MimeMap", ".asp,text/plain"]);
    web.wait_for("MimeMap", Duration::from_secs(10), || {
        web.curl("/default.asp", &["-H", "Translate: f"]).status == 200
    });
    assert_eq!(
        web.curl("/default.asp", &["-H", "Translate: f"]).text(),
        "<% Response.Write(secret) %>"
    );
    // Execute covers executables and scripts alike.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/AccessFlags",
        "AccessRead | AccessExecute",
    ]);
    web.wait_for("AccessExecute", Duration::from_secs(10), || {
        web.curl("/tool.exe", &[]).status == 404
    });
    assert!(web.curl("/tool.exe", &[]).text().contains("404.2"));
    assert!(web.curl("/default.asp", &[]).text().contains("404.2"));

    // A script map of a directory's own, flag 0: only Execute will do.
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/py", "IIsWebDirectory"]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/py/AccessFlags",
        "AccessRead | AccessScript",
    ]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/py/ScriptMaps",
        ".py,python.dll,0",
    ]);
    web.wait_for("ScriptMaps", Duration::from_secs(10), || {
        web.curl("/py/run.py", &[]).status == 403
    });
    assert!(web.curl("/py/run.py", &[]).text().contains("403.1"));
    // Its own list replaces the inherited one, as in IIS: .asp is a plain
    // file there (text/plain by the MimeMap set above).
    assert_eq!(web.curl("/py/old.asp", &[]).text(), "old");
    // A wildcard map takes every request.
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/wild", "IIsWebDirectory"]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/wild/ScriptMaps",
        "*,filter.dll,0",
    ]);
    web.wait_for("wildcard map", Duration::from_secs(10), || {
        web.curl("/wild/page.htm", &[]).status == 404
    });
    assert!(web.curl("/wild/page.htm", &[]).text().contains("404.2"));

    // NoPhysicalDir: the directory exists only for a handler; its files
    // are not served from the disk beneath it.
    web.cli_ok(&["vdir", "create", "1", "virt", web.www().to_str().unwrap()]);
    web.wait_for("vdir", Duration::from_secs(10), || {
        web.curl("/virt/page.htm", &[]).status == 200
    });
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/virt/AccessFlags",
        "AccessRead | AccessNoPhysicalDir",
    ]);
    web.wait_for("AccessNoPhysicalDir", Duration::from_secs(10), || {
        web.curl("/virt/page.htm", &[]).status == 404
    });

    // The log says why: 404 2 1260 (ERROR_ACCESS_DISABLED_BY_POLICY) and
    // 403 1 5 (the listener writes its log lines in batches).
    let mut lines = Vec::new();
    web.wait_for("log lines", Duration::from_secs(10), || {
        lines = web.w3c_lines(1);
        lines.iter().any(|l| l.contains("GET /virt/page.htm "))
    });
    assert!(
        lines
            .iter()
            .any(|l| l.contains("GET /default.asp ") && l.ends_with(" 404 2 1260")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("GET /tool.exe ") && l.ends_with(" 403 1 5")),
        "{lines:#?}"
    );
}

#[test]
fn static_compression_per_the_iis_settings() {
    let web = Web::start();
    let text = "compress me please ".repeat(500);
    write(&web.www(), "page.htm", &text);
    write(
        &web.www(),
        "photo.png",
        "not really a png but long enough to compress ".repeat(50),
    );
    let plain = web.curl("/page.htm", &["-H", "Accept-Encoding: gzip"]);
    assert_eq!(
        plain.header("content-encoding"),
        None,
        "off by default, as in IIS 6"
    );
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/Filters/Compression/Parameters/HcDoStaticCompression",
        "TRUE",
    ]);
    web.wait_for("compression", Duration::from_secs(10), || {
        web.curl("/page.htm", &["-H", "Accept-Encoding: gzip"])
            .header("content-encoding")
            .as_deref()
            == Some("gzip")
    });
    let gz = web.curl("/page.htm", &["-H", "Accept-Encoding: gzip"]);
    assert!(gz.body.len() < text.len() / 10, "{} bytes", gz.body.len());
    assert_eq!(gz.header("vary").as_deref(), Some("Accept-Encoding"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, text);
    // curl decodes it like a browser.
    assert_eq!(web.curl("/page.htm", &["--compressed"]).text(), text);
    // The compressed copy has its own validator.
    let etag = gz.header("etag").unwrap();
    assert!(etag.contains("-gzip"), "{etag}");
    assert_eq!(
        web.curl(
            "/page.htm",
            &[
                "-H",
                "Accept-Encoding: gzip",
                "-H",
                &format!("If-None-Match: {etag}")
            ]
        )
        .status,
        304
    );
    // A file seen for the first time goes as it is while its copy is made
    // in the background (as IIS 6 does); the next requests get the copy.
    write(&web.www(), "fresh.htm", &text);
    let first = web.curl("/fresh.htm", &["-H", "Accept-Encoding: gzip"]);
    assert_eq!(first.header("content-encoding"), None);
    assert_eq!(first.header("vary").as_deref(), Some("Accept-Encoding"));
    assert_eq!(first.text(), text);
    web.wait_for("the copy of fresh.htm", Duration::from_secs(10), || {
        web.curl("/fresh.htm", &["-H", "Accept-Encoding: gzip"])
            .header("content-encoding")
            .as_deref()
            == Some("gzip")
    });
    // Clients that do not accept it, extensions not listed, ranges: plain.
    assert_eq!(web.curl("/page.htm", &[]).body.len(), text.len());
    assert_eq!(
        web.curl("/photo.png", &["-H", "Accept-Encoding: gzip"])
            .header("content-encoding"),
        None
    );
    assert_eq!(
        web.curl("/page.htm", &["-H", "Accept-Encoding: gzip", "-r", "0-9"])
            .text(),
        &text[..10]
    );
    // The copy is kept in the compression directory.
    let cache = web
        .state()
        .join("temp/IIS Temporary Compressed Files/DefaultAppPool");
    assert!(std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".gzip")));
    // DoStaticCompression FALSE on a directory turns it off there.
    write(&web.www(), "raw/page.htm", &text);
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/raw", "IIsWebDirectory"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/raw/DoStaticCompression", "FALSE"]);
    web.wait_for("no compression in /raw", Duration::from_secs(10), || {
        web.curl("/raw/page.htm", &["-H", "Accept-Encoding: gzip"])
            .header("content-encoding")
            .is_none()
    });
}

#[test]
fn cached_responses_follow_file_changes() {
    let web = Web::start();
    let file = write(&web.www(), "cached.txt", "version one");
    for _ in 0..3 {
        assert_eq!(web.curl("/cached.txt", &[]).text(), "version one");
    }
    std::fs::write(&file, "version two, longer").unwrap();
    web.wait_for("the new version", Duration::from_secs(10), || {
        web.curl("/cached.txt", &[]).text() == "version two, longer"
    });
    std::fs::remove_file(&file).unwrap();
    web.wait_for("the file to be gone", Duration::from_secs(10), || {
        web.curl("/cached.txt", &[]).status == 404
    });
    // Default documents: a new file earlier in DefaultDoc order wins.
    write(&web.www(), "d/index.htm", "index");
    assert_eq!(web.curl("/d/", &[]).text(), "index");
    assert_eq!(web.curl("/d/", &[]).text(), "index");
    write(&web.www(), "d/Default.htm", "default");
    web.wait_for("Default.htm", Duration::from_secs(10), || {
        web.curl("/d/", &[]).text() == "default"
    });
}

#[test]
fn w3c_request_logs_follow_the_site_settings() {
    let web = Web::start();
    write(&web.www(), "hello.txt", "hello");
    write(&web.www(), "quiet/q.txt", "quiet");
    write(&web.www(), "x.unknownext", "x");
    assert_eq!(
        web.curl("/hello.txt?a=1", &["-A", "Test Agent/1.0"]).status,
        200
    );
    assert_eq!(web.curl("/x.unknownext", &[]).status, 404);
    assert_eq!(web.curl("/missing.txt", &[]).status, 404);
    let mut lines = Vec::new();
    web.wait_for("three log lines", Duration::from_secs(10), || {
        lines = web.w3c_lines(1);
        lines.len() >= 3
    });
    // The default fields: date time s-sitename s-ip cs-method cs-uri-stem
    // cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status
    // sc-substatus sc-win32-status.
    let files: Vec<_> = std::fs::read_dir(web.state().join("logs/W3SVC1"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with("ex") && name.len() == "ex261122.log".len(),
        "{name}"
    );
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(text.starts_with("#Software: inetsrv"), "{text}");
    assert!(text.contains("#Version: 1.0\r\n#Date: "), "{text}");
    assert!(
        text.contains("#Fields: date time s-sitename s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status\r\n"),
        "{text}"
    );
    let port = web.port;
    assert!(
        lines[0].contains(&format!(
            " W3SVC1 127.0.0.1 GET /hello.txt a=1 {port} - 127.0.0.1 Test+Agent/1.0 200 0 0"
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("GET /x.unknownext - ") && lines[1].ends_with(" 404 3 0"),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with(" 404 0 2"), "{}", lines[2]);

    // Cached responses are logged too (the listener answers them).
    for _ in 0..3 {
        web.curl("/hello.txt", &[]);
    }
    web.wait_for("cache hits in the log", Duration::from_secs(10), || {
        web.w3c_lines(1)
            .iter()
            .filter(|l| l.contains("GET /hello.txt - "))
            .count()
            == 3
    });

    // DontLog leaves a directory out.
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/quiet", "IIsWebDirectory"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/quiet/DontLog", "TRUE"]);
    for _ in 0..2 {
        assert_eq!(web.curl("/quiet/q.txt", &[]).text(), "quiet");
    }
    // Other fields: a new directive block in the same file.
    web.cli_ok(&["mb", "set", "W3SVC/1/LogExtFileFlags", "LogExtFileTime | LogExtFileMethod | LogExtFileUriStem | LogExtFileBytesSent | LogExtFileTimeTaken | LogExtFileHttpStatus"]);
    web.curl("/hello.txt?b", &[]);
    web.wait_for("the new fields", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        text.contains("#Fields: time cs-method cs-uri-stem sc-status sc-bytes time-taken\r\n")
    });
    let last = web.w3c_lines(1).last().cloned().unwrap();
    let parts: Vec<&str> = last.split(' ').collect();
    assert_eq!(&parts[1..4], &["GET", "/hello.txt", "200"], "{last}");
    assert!(
        parts[4].parse::<u64>().unwrap() > 5,
        "sc-bytes counts the head: {last}"
    );
    assert!(
        !web.w3c_lines(1).iter().any(|l| l.contains("/quiet/")),
        "DontLog"
    );

    // By size: extend1.log, extend2.log, … at LogFileTruncateSize.
    web.cli_ok(&["mb", "set", "W3SVC/1/LogFilePeriod", "0"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/LogFileTruncateSize", "1024"]);
    for i in 0..30 {
        web.curl(&format!("/hello.txt?n={i}"), &[]);
    }
    web.wait_for("extend2.log", Duration::from_secs(10), || {
        web.state().join("logs/W3SVC1/extend2.log").exists()
    });
    // LogType 0: no more lines. The CLI returns once the change is in
    // effect; a request logged after logging is back on shows the log
    // has caught up, and the request between is not in it.
    web.cli_ok(&["mb", "set", "W3SVC/1/LogType", "0"]);
    web.curl("/while-off.txt", &[]);
    web.cli_ok(&["mb", "set", "W3SVC/1/LogType", "1"]);
    web.curl("/when-on-again.txt", &[]);
    web.wait_for(
        "the request after logging is back on",
        Duration::from_secs(10),
        || {
            web.w3c_lines(1)
                .iter()
                .any(|l| l.contains("/when-on-again.txt"))
        },
    );
    let lines = web.w3c_lines(1);
    assert!(
        !lines.iter().any(|l| l.contains("/while-off.txt")),
        "{lines:?}"
    );
}
