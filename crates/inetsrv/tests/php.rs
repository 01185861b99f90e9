//! PHP through FastCGI: Debian's php-cgi as a FastCGI application
//! (`inetsrv fastcgi add`), run by the real server for scripts written
//! here: $_SERVER, forms, uploads, cookies and sessions, header(),
//! redirects, 100 MB of streamed output, flush(), RequestTimeout, a
//! process that dies, broken headers, the queue, rapid-fail protection,
//! StderrMode, fcgiext.ini import and the lockdown list. The content
//! sits in the test's 0700 directory.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::web::{write, Web};

/// A server with PHP (php-cgi) mapped for .php on every site.
fn php_web(extra: &[&str]) -> Web {
    let mut web = Web::prepare();
    let mut args = vec![
        "fastcgi",
        "add",
        "PHP",
        "--exe",
        "/usr/bin/php-cgi",
        "--extension",
        ".php",
        "--allow",
        "--args",
        "-d upload_max_filesize=64M -d post_max_size=64M",
    ];
    args.extend_from_slice(extra);
    let added = web.cli_ok(&args);
    assert!(added.contains("FastCGI application PHP added"), "{added}");
    web.launch();
    web
}

fn php(web: &Web, name: &str, source: &str) {
    write(&web.www(), name, source);
}

#[test]
fn server_variables_forms_and_uploads() {
    let web = php_web(&[]);
    php(
        &web,
        "app/info.php",
        r#"<?php
header('Content-Type: application/json');
$keys = ['SCRIPT_NAME', 'SCRIPT_FILENAME', 'PATH_INFO', 'PATH_TRANSLATED', 'REQUEST_URI',
         'QUERY_STRING', 'HTTPS', 'REMOTE_ADDR', 'SERVER_PORT', 'SERVER_NAME', 'SERVER_PROTOCOL',
         'SERVER_SOFTWARE', 'REQUEST_METHOD', 'HTTP_X_TEST', 'DOCUMENT_ROOT', 'GATEWAY_INTERFACE',
         'REMOTE_HOST', 'LOCAL_ADDR', 'SERVER_ADDR', 'APPL_MD_PATH', 'APPL_PHYSICAL_PATH'];
$out = [];
foreach ($keys as $k) { $out[$k] = $_SERVER[$k] ?? null; }
$out['get'] = $_GET;
$out['post'] = $_POST;
$out['dir'] = __DIR__;
$out['user'] = posix_getpwuid(posix_geteuid())['name'];
echo json_encode($out);
"#,
    );
    let www = web.www().canonicalize().unwrap();
    let got = web.curl(
        "/app/info.php/extra/bit?x=1&y=two",
        &["-H", "X-Test: hello"],
    );
    assert_eq!(got.status, 200, "{}\n{}", got.text(), web.log());
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["SCRIPT_NAME"], "/app/info.php");
    assert_eq!(
        v["SCRIPT_FILENAME"],
        www.join("app/info.php").display().to_string()
    );
    assert_eq!(v["PATH_INFO"], "/extra/bit");
    assert_eq!(
        v["PATH_TRANSLATED"],
        www.join("extra/bit").display().to_string()
    );
    assert_eq!(v["REQUEST_URI"], "/app/info.php/extra/bit?x=1&y=two");
    assert_eq!(v["QUERY_STRING"], "x=1&y=two");
    assert_eq!(v["HTTPS"], "off");
    assert_eq!(v["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(v["SERVER_PORT"], web.port.to_string());
    assert_eq!(v["SERVER_NAME"], "127.0.0.1");
    assert_eq!(v["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(v["REQUEST_METHOD"], "GET");
    assert_eq!(v["HTTP_X_TEST"], "hello");
    assert_eq!(v["GATEWAY_INTERFACE"], "CGI/1.1");
    assert_eq!(v["DOCUMENT_ROOT"], www.display().to_string());
    assert_eq!(v["REMOTE_HOST"], "127.0.0.1");
    assert_eq!(v["LOCAL_ADDR"], "127.0.0.1");
    assert_eq!(v["SERVER_ADDR"], "127.0.0.1");
    // The application's (the site root's), not the script's directory.
    assert_eq!(v["APPL_MD_PATH"], "/LM/W3SVC/1/ROOT");
    assert_eq!(v["APPL_PHYSICAL_PATH"], format!("{}/", www.display()));
    assert_eq!(v["get"]["y"], "two");
    // The script's own directory is its real path (the pool's identity
    // reaches it through the launcher's mount view), and it runs as that
    // identity.
    assert_eq!(v["dir"], www.join("app").display().to_string());
    let user = v["user"].as_str().unwrap();
    assert!(user == "www-data" || user == "nobody", "{user}");

    // Over TLS: HTTPS is on.
    let got = common::web::curl(&web.https_url("/app/info.php"), &["-k"]);
    assert_eq!(got.status, 200, "{}", got.text());
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["HTTPS"], "on");
    // Without PATH_INFO, PATH_TRANSLATED is the script's own file.
    assert_eq!(v["PATH_INFO"], "");
    assert_eq!(v["PATH_TRANSLATED"], v["SCRIPT_FILENAME"]);

    // A chunked body reaches PHP whole (gathered for CONTENT_LENGTH).
    php(
        &web,
        "input.php",
        "<?php echo strlen(file_get_contents('php://input')), ' ', $_SERVER['CONTENT_LENGTH'];",
    );
    let got = web.curl(
        "/input.php",
        &[
            "--data-binary",
            "a chunked body",
            "-H",
            "Transfer-Encoding: chunked",
        ],
    );
    assert_eq!(got.text(), "14 14");

    // A form posted.
    let got = web.curl("/app/info.php", &["--data", "name=Ada&lang=php"]);
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["REQUEST_METHOD"], "POST");
    assert_eq!(v["post"]["name"], "Ada");
    assert_eq!(v["post"]["lang"], "php");

    // A 10 MB multipart upload, streamed to PHP.
    php(
        &web,
        "upload.php",
        r#"<?php
$f = $_FILES['file'];
echo $f['error'], ' ', $f['size'], ' ', md5_file($f['tmp_name']), ' ', $_POST['note'];
"#,
    );
    let upload = web.dir.path().join("upload.bin");
    let data: Vec<u8> = (0..10u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&upload, &data).unwrap();
    let digest = {
        let out = std::process::Command::new("md5sum")
            .arg(&upload)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let got = web.curl(
        "/upload.php",
        &[
            "-F",
            &format!("file=@{}", upload.display()),
            "-F",
            "note=hello",
        ],
    );
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), format!("0 10485760 {digest} hello"));
}

#[test]
fn cookies_sessions_headers_status_and_redirects() {
    let web = php_web(&[]);
    php(
        &web,
        "count.php",
        r#"<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
setcookie('flavour', 'oat');
header('X-Powered: tests');
echo "visit ", $_SESSION['n'], " cookie ", $_COOKIE['flavour'] ?? '-';
"#,
    );
    php(
        &web,
        "made.php",
        "<?php http_response_code(201); echo 'made';",
    );
    php(&web, "moved.php", "<?php header('Location: /count.php'); ");
    php(
        &web,
        "away.php",
        "<?php header('Location: https://example.invalid/'); ",
    );
    php(&web, "broken.php", "<?php header('Status: abc'); echo 'x';");
    let jar = web.dir.path().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let first = web.curl("/count.php", &["-c", jar, "-b", jar]);
    assert_eq!(first.status, 200, "{}\n{}", first.text(), web.log());
    assert_eq!(first.text(), "visit 1 cookie -");
    assert_eq!(first.header("x-powered").as_deref(), Some("tests"));
    assert!(first
        .head
        .to_ascii_lowercase()
        .contains("set-cookie: phpsessid="));
    let second = web.curl("/count.php", &["-c", jar, "-b", jar]);
    assert_eq!(second.text(), "visit 2 cookie oat");

    let got = web.curl("/made.php", &[]);
    assert_eq!((got.status, got.text().as_str()), (201, "made"));
    // A Location without a status: 302 from PHP itself.
    let got = web.curl("/moved.php", &[]);
    assert_eq!(got.status, 302);
    assert_eq!(got.header("location").as_deref(), Some("/count.php"));
    let got = web.curl("/away.php", &[]);
    assert_eq!(got.status, 302);
    // Broken headers: the FastCGI extension's 500, with the reason logged.
    let got = web.curl("/broken.php", &[]);
    assert_eq!(got.status, 500, "{}", got.text());
    web.wait_for("the reason in the log", Duration::from_secs(10), || {
        web.log()
            .contains("a Status that is not a three-digit code")
    });
    // The server goes on.
    assert_eq!(web.curl("/made.php", &[]).status, 201);
}

#[test]
fn output_streams_with_bounded_memory_and_flush_reaches_the_client() {
    let web = php_web(&[]);
    php(
        &web,
        "big.php",
        r#"<?php
$chunk = str_repeat('0123456789abcdef', 65536);
for ($i = 0; $i < 100; $i++) { echo $chunk; }
"#,
    );
    php(
        &web,
        "slow.php",
        r#"<?php
while (ob_get_level()) { ob_end_flush(); }
echo "first\n";
flush();
sleep(2);
echo "second\n";
"#,
    );
    // The worker's peak memory (kB) so far.
    let peak_kb = || {
        let pid = web.worker_pids("DefaultAppPool", "running")[0];
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    // A small answer first, so the application and its pool are there.
    assert_eq!(web.curl("/slow.php", &[]).status, 200);
    let before = peak_kb();
    // 100 MB out.
    let got = web.curl("/big.php", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.body.len(), 100 << 20);
    assert!(got.body.starts_with(b"0123456789abcdef0123"));
    // The worker did not hold it: its peak memory grew by far less, and
    // the whole worker stays small.
    let after = peak_kb();
    assert!(
        after - before < 16 * 1024,
        "the worker grew from {before} kB to {after} kB"
    );
    assert!(after < 40 * 1024, "the worker peaked at {after} kB");

    // flush(): the first line arrives while the script still sleeps.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /slow.php HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first line");
        seen.extend_from_slice(&buf[..n]);
    }
    let first_at = started.elapsed();
    assert!(
        first_at < Duration::from_millis(1500),
        "the flushed line took {first_at:?}"
    );
    stream.read_to_end(&mut seen).unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("second"));
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn timeouts_crashes_and_stderr() {
    let web = php_web(&["--request-timeout", "2", "--max-instances", "2"]);
    php(&web, "hang.php", "<?php sleep(60); echo 'late';");
    php(&web, "ok.php", "<?php echo 'fine';");
    php(
        &web,
        "die.php",
        "<?php while (ob_get_level()) ob_end_flush(); echo str_repeat('x', 100000); flush(); sleep(1); posix_kill(getmypid(), 9);",
    );
    php(
        &web,
        "warn.php",
        "<?php error_log('boom from php'); echo 'after the warning';",
    );

    // RequestTimeout: a 500 in about two seconds, the process stopped.
    let started = Instant::now();
    let got = web.curl("/hang.php", &[]);
    assert_eq!(got.status, 500, "{}", got.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    web.wait_for("the timeout in the log", Duration::from_secs(10), || {
        web.log().contains("exceeded RequestTimeout")
    });
    assert_eq!(web.curl("/ok.php", &[]).text(), "fine");

    // A process that dies mid-response: the client sees the response
    // cut (not a complete one), and the next request is served.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--max-time",
            "20",
        ])
        .arg(web.url("/die.php"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl saw a complete response");
    assert_eq!(web.curl("/ok.php", &[]).text(), "fine");

    // StderrMode ReturnStderrIn500 (IIS's default): the text in a 500.
    let got = web.curl("/warn.php", &[]);
    assert_eq!(got.status, 500);
    assert!(got.text().contains("boom from php"), "{}", got.text());
    web.cli_ok(&[
        "fastcgi",
        "set",
        "PHP",
        "--stderr-mode",
        "IgnoreAndReturn200",
    ]);
    let got = web.curl("/warn.php", &[]);
    assert_eq!(
        (got.status, got.text().as_str()),
        (200, "after the warning")
    );
    web.wait_for("stderr in the log", Duration::from_secs(10), || {
        web.log().contains("boom from php")
    });
}

#[test]
fn the_queue_and_rapid_fail_protection() {
    let web = php_web(&[
        "--max-instances",
        "1",
        "--queue-length",
        "0",
        "--rapid-fails-per-minute",
        "2",
    ]);
    php(&web, "slow.php", "<?php sleep(3); echo 'slow';");
    php(&web, "ok.php", "<?php echo 'fine';");
    php(&web, "crash.php", "<?php posix_kill(getmypid(), 9);");
    assert_eq!(web.curl("/ok.php", &[]).text(), "fine");
    // One process, no queue: a second request while it is busy is 503.
    let url = web.url("/slow.php");
    let slow = std::thread::spawn(move || common::web::curl(&url, &[]));
    std::thread::sleep(Duration::from_millis(800));
    let got = web.curl("/ok.php", &[]);
    assert_eq!(got.status, 503, "{}", got.text());
    assert_eq!(slow.join().unwrap().text(), "slow");

    // Processes that die: each request is tried once more on a fresh
    // process, and two failures within a minute stop the application.
    let got = web.curl("/crash.php", &[]);
    assert_eq!(got.status, 500);
    web.wait_for("the application to stop", Duration::from_secs(10), || {
        web.log().contains("FastCGI application stopped")
    });
    let got = web.curl("/ok.php", &[]);
    assert_eq!(got.status, 500, "stopped: {}", got.text());
    // A configuration change starts it afresh.
    web.cli_ok(&["fastcgi", "set", "PHP", "--rapid-fails-per-minute", "10"]);
    web.wait_for(
        "the application to start again",
        Duration::from_secs(10),
        || web.curl("/ok.php", &[]).text() == "fine",
    );
}

#[test]
fn the_cli_validates_imports_fcgiext_ini_and_the_wmi_model_shows_applications() {
    let web = Web::prepare();
    // Without --allow: the lockdown is explained.
    let added = web.cli_ok(&[
        "fastcgi",
        "add",
        "PHP",
        "--exe",
        "/usr/bin/php-cgi",
        "--extension",
        "php",
        "--max-instances",
        "3",
        "--env",
        "PHPRC=/etc/php/8.2/cgi",
    ]);
    assert!(
        added.contains("inetsrv webext add-file /usr/bin/php-cgi --enable"),
        "{added}"
    );
    web.cli_fails_with(
        &["fastcgi", "add", "PHP", "--exe", "/usr/bin/php-cgi"],
        "exists already",
    );
    web.cli_fails_with(
        &["fastcgi", "add", "X", "--exe", "php-cgi"],
        "not an absolute path",
    );
    web.cli_fails_with(
        &["fastcgi", "set", "PHP", "--max-instances", "0"],
        "out of range",
    );
    web.cli_fails_with(
        &["fastcgi", "set", "PHP", "--stderr-mode", "Loud"],
        "not a StderrMode",
    );
    web.cli_fails_with(
        &["fastcgi", "set", "PHP", "--env", "NOEQUALS"],
        "not NAME=VALUE",
    );
    web.cli_fails_with(
        &["fastcgi", "set", "Nope", "--max-instances", "2"],
        "no FastCGI application Nope",
    );
    let listed: serde_json::Value =
        serde_json::from_str(&web.cli_ok(&["--json", "fastcgi", "list"])).unwrap();
    assert_eq!(listed[0]["name"], "PHP");
    assert_eq!(listed[0]["maxInstances"], "3");
    assert_eq!(listed[0]["allowed"], false);
    assert_eq!(listed[0]["scriptMaps"][0], ".php at /LM/W3SVC");
    // The WMI model shows the key like any other.
    let rows = web.cli_ok(&[
        "query",
        "SELECT Name, FastCgiMaxInstances FROM IIsFastCgiApplicationSetting",
    ]);
    assert!(
        rows.contains("W3SVC/FastCGI/PHP") && rows.contains('3'),
        "{rows}"
    );

    // A fcgiext.ini from IIS 6.
    let ini = web.dir.path().join("fcgiext.ini");
    std::fs::write(
        &ini,
        "; FastCGI configuration\r\n[Types]\r\nphp=PHP5\r\nphtml:1=PHP5\r\npl=Perl\r\n\r\n[PHP5]\r\nExePath=C:\\PHP\\php-cgi.exe\r\nInstanceMaxRequests=5000\r\nEnvironmentVars=PHP_FCGI_MAX_REQUESTS:6000,PHPRC:C:\\PHP\r\nProtocol=NamedPipe\r\nFlushNamedPipe=1\r\n\r\n[Perl]\r\nExePath=C:\\Perl\\bin\\nothere-perl-fcgi.exe\r\n",
    )
    .unwrap();
    let report = web.cli_ok(&["fastcgi", "import-ini", ini.to_str().unwrap()]);
    assert!(
        report.contains("ExePath C:\\PHP\\php-cgi.exe is mapped to /usr/bin/php-cgi"),
        "{report}"
    );
    assert!(
        report.contains("FlushNamedPipe is not a setting inetsrv has"),
        "{report}"
    );
    assert!(
        report.contains("nothere-perl-fcgi.exe is a Windows path"),
        "{report}"
    );
    assert!(
        report.contains("pl names Perl, which was not imported"),
        "{report}"
    );
    assert!(
        report.contains("phtml → PHP5 as a script map on /LM/W3SVC/1/ROOT"),
        "{report}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&web.cli_ok(&["--json", "fastcgi", "list"])).unwrap();
    let php5 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "PHP5")
        .unwrap();
    assert_eq!(php5["exePath"], "/usr/bin/php-cgi");
    assert_eq!(php5["instanceMaxRequests"], "5000");
    assert_eq!(php5["protocol"], "Unix");
    assert!(php5["environmentVars"]
        .as_str()
        .unwrap()
        .contains("PHP_FCGI_MAX_REQUESTS=6000"));

    // Deleting an application removes the script maps that named it.
    let deleted = web.cli_ok(&["fastcgi", "delete", "PHP5"]);
    // .php on W3SVC, and .php and .phtml on site 1's root (which got the
    // list in force there, and .phtml).
    assert!(deleted.contains("with 3 script map(s)"), "{deleted}");
}

#[test]
fn a_php_application_waits_for_the_lockdown_list_and_serves_over_tcp() {
    let mut web = Web::prepare();
    web.cli_ok(&[
        "fastcgi",
        "add",
        "PHP",
        "--exe",
        "/usr/bin/php-cgi",
        "--extension",
        ".php",
        "--protocol",
        "tcp",
    ]);
    php(&web, "hi.php", "<?php echo 'hi ', PHP_SAPI;");
    web.launch();
    let got = web.curl("/hi.php", &[]);
    assert_eq!(got.status, 404, "{}", got.text());
    web.cli_ok(&["webext", "add-file", "/usr/bin/php-cgi", "--enable"]);
    web.wait_for("php-cgi to be allowed", Duration::from_secs(10), || {
        web.curl("/hi.php", &[]).status == 200
    });
    assert_eq!(web.curl("/hi.php", &[]).text(), "hi cgi-fcgi");
}

/// A value of a hidden form field in Adminer's page.
fn token(page: &str) -> String {
    let at = page
        .find("name='token' value='")
        .unwrap_or_else(|| panic!("no token in the page: {}", &page[..page.len().min(2000)]));
    let rest = &page[at + "name='token' value='".len()..];
    rest[..rest.find('\'').unwrap()].to_string()
}

#[test]
fn adminer_from_debian_manages_a_sqlite_database() {
    // Debian's adminer package (installed by scripts/test.sh), configured
    // as its README says for a password-less database: its own conf.php
    // with the login-password-less plugin, in a virtual directory.
    let adminer = std::path::Path::new("/usr/share/adminer/adminer.php");
    assert!(
        adminer.is_file(),
        "the adminer package is not installed (apt-get install adminer)"
    );
    let web = php_web(&[]);
    let app = web.dir.path().join("adminer-app");
    write(
        &app,
        "index.php",
        r#"<?php
function adminer_object() {
    include_once "/usr/share/adminer/plugins/plugin.php";
    include_once "/usr/share/adminer/plugins/login-password-less.php";
    include_once "/usr/share/adminer/plugins/version-noverify.php";
    return new AdminerPlugin(array(
        new AdminerVersionNoverify(),
        new AdminerLoginPasswordLess(password_hash("s3cret", PASSWORD_DEFAULT)),
    ));
}
include "/usr/share/adminer/adminer.php";
"#,
    );
    web.cli_ok(&["vdir", "create", "1", "/adminer", app.to_str().unwrap()]);
    // The database file, provisioned for the pool's identity.
    let data = common::modules::shared_dir();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let db = data.path().join("shop.sqlite");
    std::fs::write(&db, b"").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let jar = web.dir.path().join("adminer-cookies");
    let jar = jar.to_str().unwrap();
    let browse = |url: &str, form: &[(&str, &str)]| {
        let mut args: Vec<String> = vec!["-c".into(), jar.into(), "-b".into(), jar.into()];
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        web.curl(url, &refs)
    };
    // The login page, through the directory's default document (index.php).
    let login = browse("/adminer/", &[]);
    assert_eq!(login.status, 200, "{}\n{}", login.text(), web.log());
    assert!(login.text().contains("auth[driver]"), "{}", login.text());
    // Log in to the SQLite database.
    let db_text = db.to_str().unwrap();
    let got = browse(
        "/adminer/",
        &[
            ("auth[driver]", "sqlite"),
            ("auth[server]", ""),
            ("auth[username]", ""),
            ("auth[password]", "s3cret"),
            ("auth[db]", db_text),
        ],
    );
    assert_eq!(got.status, 302, "{}", got.text());
    let query = format!("sqlite=&username=&db={}", db_text.replace('/', "%2F"));
    // Create a table with the SQL command page.
    let page = browse(&format!("/adminer/?{query}&sql="), &[]);
    assert_eq!(page.status, 200, "{}", page.text());
    let got = browse(
        &format!("/adminer/?{query}&sql="),
        &[
            (
                "query",
                "CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT, price REAL);",
            ),
            ("limit", ""),
            ("token", &token(&page.text())),
        ],
    );
    assert!(got.text().contains("Query executed OK"), "{}", got.text());
    // Insert rows with the New item form.
    for (name, price) in [("apple", "1.25"), ("pear", "2.5")] {
        let form = browse(&format!("/adminer/?{query}&edit=fruit"), &[]);
        assert!(form.text().contains("fields[name]"), "{}", form.text());
        let got = browse(
            &format!("/adminer/?{query}&edit=fruit"),
            &[
                ("fields[name]", name),
                ("fields[price]", price),
                ("save", "Save"),
                ("token", &token(&form.text())),
            ],
        );
        assert!(
            matches!(got.status, 200 | 302),
            "{} {}",
            got.status,
            got.text()
        );
    }
    // Read them back in the table's Select data view.
    let rows = browse(&format!("/adminer/?{query}&select=fruit"), &[]);
    assert_eq!(rows.status, 200);
    let text = rows.text();
    assert!(
        text.contains("apple") && text.contains("pear") && text.contains("2.5"),
        "{text}"
    );
    // And the file is a real SQLite database with them (read by a script
    // of our own).
    php(
        &web,
        "check.php",
        &format!(
            "<?php $d = new PDO('sqlite:{db_text}'); foreach ($d->query('SELECT name FROM fruit ORDER BY id') as $r) echo $r[0], ' ';"
        ),
    );
    assert_eq!(web.curl("/check.php", &[]).text(), "apple pear ");
}

#[test]
fn processes_are_recycled_stopped_when_idle_and_silent_requests_time_out() {
    let web = php_web(&[
        "--instance-max-requests",
        "2",
        "--idle-timeout",
        "1",
        "--activity-timeout",
        "1",
        "--max-instances",
        "1",
    ]);
    php(&web, "pid.php", "<?php echo getmypid();");
    php(&web, "quiet.php", "<?php sleep(4); echo 'too late';");
    // InstanceMaxRequests 2: a process serves two requests, then another
    // takes over.
    let pids: Vec<String> = (0..6).map(|_| web.curl("/pid.php", &[]).text()).collect();
    let mut distinct = pids.clone();
    distinct.dedup();
    assert!(distinct.len() >= 3, "{pids:?}");
    for pid in &distinct {
        assert!(pids.iter().filter(|p| *p == pid).count() <= 2, "{pids:?}");
    }
    // IdleTimeout 1 s: an unused process stops.
    let before = web.curl("/pid.php", &[]).text();
    web.wait_for("the idle process to stop", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{before}")).exists()
    });
    let after = web.curl("/pid.php", &[]).text();
    assert_ne!(before, after);
    // ActivityTimeout 1 s: a request silent that long fails, its process
    // stopped.
    let started = Instant::now();
    let got = web.curl("/quiet.php", &[]);
    assert_eq!(got.status, 500, "{}", got.text());
    assert!(started.elapsed() < Duration::from_secs(4));
    web.wait_for("the reason in the log", Duration::from_secs(10), || {
        web.log().contains("exceeded ActivityTimeout")
    });
}

#[test]
fn fcgi_get_values_lets_one_process_take_several_requests() {
    // A FastCGI application written for the test (Python, from the
    // specification) that says FCGI_MAX_CONNS=2: with one process and no
    // queue, two requests at once are both served, by the same process.
    let mut web = Web::prepare();
    let app = write(&web.www(), "app/fcgi_app.py", include_str!("fcgi_app.py"));
    write(&web.www(), "slow.fcgi", "");
    web.cli_ok(&[
        "fastcgi",
        "add",
        "PY",
        "--exe",
        "/usr/bin/python3",
        "--args",
        app.to_str().unwrap(),
        "--extension",
        ".fcgi",
        "--allow",
        "--max-instances",
        "1",
        "--queue-length",
        "0",
    ]);
    web.launch();
    let url = web.url("/slow.fcgi");
    let first = std::thread::spawn(move || common::web::curl(&url, &[]));
    std::thread::sleep(Duration::from_millis(500));
    let second = web.curl("/slow.fcgi", &[]);
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}\n{}", first.text(), web.log());
    assert_eq!(second.status, 200, "{}\n{}", second.text(), web.log());
    assert!(
        first.text().ends_with("script /slow.fcgi\n"),
        "{}",
        first.text()
    );
    assert_eq!(first.text(), second.text(), "one process answered both");
}
