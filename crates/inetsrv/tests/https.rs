//! HTTPS through the real server: TLS terminated in the listener, the
//! certificate store and SSL bindings driven by the CLI, checked with
//! clients nobody here wrote (curl, `openssl s_client`, Python's `ssl`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::web::{curl, write, Web};

/// What `openssl s_client` printed (stdout and stderr together) for one
/// connection that sends `GET /` and reads the answer to the end.
fn s_client(port: u16, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-ign_eof",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_output(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// curl over https to site 1, trusting `ca`, with `localhost` resolved to
/// the loopback address the test server listens on.
fn curl_tls(web: &Web, path: &str, ca: &Path, args: &[&str]) -> common::web::Got {
    let resolve = format!("localhost:{}:127.0.0.1", web.tls_port);
    let mut all = vec!["--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
    all.extend_from_slice(args);
    curl(&web.https_url(path), &all)
}

/// Every HTTPERR line the server wrote.
fn httperr(web: &Web) -> String {
    std::fs::read_dir(web.state().join("logs/HTTPERR"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

/// curl's arguments presenting `NAME.pem` with `NAME.key` from `dir`.
fn client_cert(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        dir.join(format!("{name}.pem")).display().to_string(),
        "--key".into(),
        dir.join(format!("{name}.key")).display().to_string(),
    ]
}

/// `inetsrv cert import PFX --password-stdin EXTRA…` with `password` on
/// its standard input.
fn import_pfx(web: &Web, pfx: &str, password: &[u8], extra: &[&str]) -> std::process::Output {
    let mut child = Command::new(common::BIN)
        .args(web.target())
        .args(["cert", "import", pfx, "--password-stdin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password).unwrap();
    child.wait_with_output().unwrap()
}

/// The first run's certificate, exported to a file the clients trust.
fn first_run_ca(web: &Web) -> PathBuf {
    let file = web.dir.path().join("first-run.pem");
    web.cli_ok(&[
        "cert",
        "export",
        "localhost (self-signed)",
        "--out",
        file.to_str().unwrap(),
    ]);
    file
}

#[test]
fn the_first_run_serves_https_with_its_own_certificate() {
    let mut web = Web::prepare();
    write(&web.www(), "hello.htm", "hello over tls");
    web.launch();
    let summary = web.summary.join("\n");
    assert!(
        summary.contains(&format!("https://localhost:{}/", web.tls_port)),
        "{summary}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&web.cli_ok(&["--json", "cert", "list"])).unwrap();
    let thumbprint = listed[0]["thumbprint"].as_str().unwrap().to_string();
    assert!(
        summary.contains(&thumbprint),
        "the banner names the certificate: {summary}"
    );
    assert_eq!(listed[0]["subject"], "CN=localhost");
    assert!(
        listed[0]["used_by"].to_string().contains("site 1"),
        "{listed}"
    );

    let ca = first_run_ca(&web);
    let got = curl_tls(&web, "/hello.htm", &ca, &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert_eq!(got.text(), "hello over tls");
    // Python's ssl module, verifying the name and the chain.
    let script = format!(
        "import ssl, http.client\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         ctx.minimum_version = ssl.TLSVersion.TLSv1_2\n\
         c = http.client.HTTPSConnection('localhost', {port}, context=ctx)\n\
         c.request('GET', '/hello.htm')\n\
         r = c.getresponse()\n\
         print(r.status, r.read().decode(), c.sock.version(), c.sock.selected_alpn_protocol())\n",
        ca = ca.display().to_string(),
        port = web.tls_port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("200 hello over tls TLSv1.3"), "{said}");

    // The secure port is in the request log.
    web.wait_for("the request logged", Duration::from_secs(5), || {
        web.w3c_lines(1)
            .iter()
            .any(|l| l.contains("/hello.htm") && l.contains(&format!(" {} ", web.tls_port)))
    });
    // Plain http to the TLS port: a clear 400, logged.
    let got = curl(&format!("http://127.0.0.1:{}/", web.tls_port), &[]);
    assert_eq!(got.status, 400);
    assert!(got.text().contains("speaks HTTPS"), "{}", got.text());
    // AccessSSL: the content refuses plain http with 403.4, serves https.
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AccessSSLFlags", "AccessSSL"]);
    web.wait_for("AccessSSL applied", Duration::from_secs(10), || {
        web.curl("/hello.htm", &[]).status == 403
    });
    assert!(web.curl("/hello.htm", &[]).text().contains("SSL required"));
    assert_eq!(curl_tls(&web, "/hello.htm", &ca, &[]).status, 200);
    // AccessSSLRequireCert without a client certificate: 403.7.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/AccessSSLFlags",
        "AccessSSL | AccessSSLRequireCert",
    ]);
    web.wait_for(
        "AccessSSLRequireCert applied",
        Duration::from_secs(10),
        || curl_tls(&web, "/hello.htm", &ca, &[]).status == 403,
    );
    assert!(curl_tls(&web, "/hello.htm", &ca, &[])
        .text()
        .contains("Client certificate required"));
    let errors = httperr(&web);
    assert!(errors.contains("TLS_Plain_HTTP"), "{errors}");
}

#[test]
fn protocols_resumption_and_alpn_as_a_modern_server_offers_them() {
    let web = Web::start();
    for (flag, protocol) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let sessions = web.dir.path().join(format!("session{flag}"));
        let first = s_client(
            web.tls_port,
            &[
                flag,
                "-alpn",
                "http/1.1",
                "-sess_out",
                sessions.to_str().unwrap(),
            ],
        );
        assert!(first.contains(&format!("New, {protocol}")), "{first}");
        assert!(first.contains("ALPN protocol: http/1.1"), "{first}");
        assert!(first.contains("HTTP/1.1 200 OK"), "{first}");
        let again = s_client(
            web.tls_port,
            &[flag, "-sess_in", sessions.to_str().unwrap()],
        );
        assert!(
            again.contains(&format!("Reused, {protocol}")),
            "resumption: {again}"
        );
    }
    // Forward-secret AEAD suites only.
    let first = s_client(web.tls_port, &["-tls1_2"]);
    assert!(
        first.contains("Cipher is ECDHE-ECDSA-AES")
            || first.contains("Cipher is ECDHE-ECDSA-CHACHA20"),
        "{first}"
    );
    // TLS 1.0 and 1.1 are refused by the server (the client is told to
    // allow them).
    for flag in ["-tls1", "-tls1_1"] {
        let old = s_client(web.tls_port, &[flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(old.contains("Cipher is (NONE)"), "{flag}: {old}");
        assert!(!old.contains("HTTP/1.1 200"), "{flag}: {old}");
    }
    // Nothing weak even when a client offers only weak suites.
    let weak = s_client(
        web.tls_port,
        &[
            "-tls1_2",
            "-cipher",
            "AES128-SHA:DES-CBC3-SHA:RC4-SHA@SECLEVEL=0",
        ],
    );
    assert!(weak.contains("Cipher is (NONE)"), "{weak}");
}

#[test]
fn sni_bindings_and_certificates_change_while_serving() {
    let web = Web::start();
    let port = web.tls_port.to_string();
    web.cli_ok(&[
        "cert",
        "new",
        "--self-signed",
        "--dns",
        "shop.example.test",
        "--name",
        "shop",
    ]);
    web.cli_ok(&[
        "cert",
        "new",
        "--self-signed",
        "--dns",
        "blog.example.test",
        "--rsa",
        "--name",
        "blog",
    ]);
    let subject = |sni: &str| {
        let out = s_client(web.tls_port, &["-servername", sni]);
        out.lines()
            .find_map(|l| l.strip_prefix("subject="))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no certificate for {sni}: {out}"))
    };
    assert_eq!(subject("shop.example.test"), "CN = localhost");
    // Bound while the server runs: new connections get it at once.
    web.cli_ok(&[
        "sslcert",
        "add",
        "--hostnameport",
        &format!("shop.example.test:{port}"),
        "--cert",
        "shop",
    ]);
    web.cli_ok(&[
        "sslcert",
        "add",
        "--hostnameport",
        &format!("blog.example.test:{port}"),
        "--cert",
        "blog",
    ]);
    web.wait_for("the SNI binding applied", Duration::from_secs(10), || {
        subject("shop.example.test") == "CN = shop.example.test"
    });
    assert_eq!(subject("blog.example.test"), "CN = blog.example.test");
    // Another name falls back to the address binding.
    assert_eq!(subject("other.example.test"), "CN = localhost");
    let listed = web.cli_ok(&["sslcert", "list"]);
    assert!(
        listed.contains(&format!("shop.example.test:{port}")),
        "{listed}"
    );
    // A certificate in use is not deleted unless forced.
    web.cli_fails_with(&["cert", "delete", "shop"], "is used by");
    web.cli_ok(&[
        "sslcert",
        "delete",
        "--hostnameport",
        &format!("shop.example.test:{port}"),
    ]);
    web.cli_ok(&["cert", "delete", "shop"]);
    web.wait_for("the binding removed", Duration::from_secs(10), || {
        subject("shop.example.test") == "CN = localhost"
    });
    // Two bindings for one endpoint need --replace.
    web.cli_fails_with(
        &[
            "sslcert",
            "add",
            "--hostnameport",
            &format!("blog.example.test:{port}"),
            "--cert",
            "blog",
        ],
        "already has a binding",
    );
    // The site's certificate replaced through the metabase (SSLCertHash)
    // takes effect without a restart, as IIS 6's did.
    let listed: serde_json::Value =
        serde_json::from_str(&web.cli_ok(&["--json", "cert", "list"])).unwrap();
    let blog = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "blog")
        .unwrap()["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    // A keep-alive connection made before the change is not dropped: it
    // goes on with the certificate it was made with.
    let script = format!(
        "import http.client, ssl, sys\n\
         ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
         c = http.client.HTTPSConnection('127.0.0.1', {port}, context=ctx)\n\
         c.request('GET', '/'); r = c.getresponse(); r.read()\n\
         sock = c.sock\n\
         print('before', r.status, flush=True)\n\
         sys.stdin.readline()\n\
         c.request('GET', '/'); r = c.getresponse(); r.read()\n\
         print('after', r.status, c.sock is sock, flush=True)\n"
    );
    let mut client = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(client.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "before 200");
    web.cli_ok(&["mb", "set", "W3SVC/1/SSLCertHash", &blog]);
    web.wait_for("SSLCertHash applied", Duration::from_secs(10), || {
        subject("www.example.test") == "CN = blog.example.test"
    });
    client.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "after 200 True");
    let _ = client.wait();
}

#[test]
fn client_certificates_are_asked_for_in_the_handshake() {
    let web = Web::start();
    let dir = web.dir.path();
    make_ca(dir, "ca", "/CN=Clients CA");
    issue(dir, "ca", "alice", "alice", "extendedKeyUsage=clientAuth\n");
    let ca = first_run_ca(&web);
    let exact = format!("127.0.0.1:{}", web.tls_port);
    let alice = client_cert(dir, "alice");
    let alice: Vec<&str> = alice.iter().map(String::as_str).collect();
    // Required: without a certificate the handshake fails; with one the
    // request is served.
    web.cli_ok(&[
        "sslcert",
        "add",
        "--ipport",
        &exact,
        "--cert",
        "localhost (self-signed)",
        "--client-cert",
        "require",
        "--client-ca",
        dir.join("ca.pem").to_str().unwrap(),
    ]);
    web.wait_for("the binding applied", Duration::from_secs(10), || {
        curl_tls(&web, "/", &ca, &[]).status == 0
    });
    assert_eq!(curl_tls(&web, "/", &ca, &alice).status, 200);
    // A certificate from another CA is refused too.
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "mallory.key",
            "-out",
            "mallory.pem",
            "-subj",
            "/CN=mallory",
            "-days",
            "5",
        ],
    );
    let mallory = client_cert(dir, "mallory");
    let mallory: Vec<&str> = mallory.iter().map(String::as_str).collect();
    assert_eq!(curl_tls(&web, "/", &ca, &mallory).status, 0);
    // Negotiate: both are served; AccessSSLRequireCert decides per URL.
    web.cli_ok(&[
        "sslcert",
        "add",
        "--ipport",
        &exact,
        "--cert",
        "localhost (self-signed)",
        "--replace",
        "--client-cert",
        "negotiate",
        "--client-ca",
        dir.join("ca.pem").to_str().unwrap(),
    ]);
    web.wait_for("negotiate applied", Duration::from_secs(10), || {
        curl_tls(&web, "/", &ca, &[]).status == 200
    });
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/AccessSSLFlags",
        "AccessSSL | AccessSSLNegotiateCert | AccessSSLRequireCert",
    ]);
    web.wait_for(
        "AccessSSLRequireCert applied",
        Duration::from_secs(10),
        || curl_tls(&web, "/", &ca, &[]).status == 403,
    );
    assert_eq!(curl_tls(&web, "/", &ca, &alice).status, 200);
    let errors = httperr(&web);
    assert!(errors.contains("TLS_Handshake_Failed"), "{errors}");

    // AccessSSLMapCert: alice's certificate, mapped one-to-one to the user
    // alice, logs on as her where anonymous access is off; a request
    // without it, or with an unmapped one, must authenticate otherwise.
    web.cli_ok(&["user", "add", "alice", "--password", "pw"]);
    let alice_pem = dir.join("alice.pem");
    let mapped = web.cli_ok(&["user", "map-cert", "alice", alice_pem.to_str().unwrap()]);
    assert!(mapped.contains("now logs on as alice"), "{mapped}");
    assert!(mapped.contains("CN=alice"), "{mapped}");
    let listed = web.cli_ok(&["user", "list"]);
    assert!(listed.contains("  certificate "), "{listed}");
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AuthFlags", "AuthBasic"]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/AccessSSLFlags",
        "AccessSSL | AccessSSLNegotiateCert | AccessSSLMapCert",
    ]);
    web.wait_for("AccessSSLMapCert applied", Duration::from_secs(10), || {
        curl_tls(&web, "/", &ca, &[]).status == 401
    });
    let got = curl_tls(&web, "/", &ca, &alice);
    assert_eq!(got.status, 200, "{}", web.log());
    web.wait_for("alice in the request log", Duration::from_secs(10), || {
        web.w3c_lines(1)
            .iter()
            .any(|l| l.contains(" alice ") && l.ends_with(" 200 0 0"))
    });
    // An extension sees the logon as IIS sets it for a mapped certificate.
    let modules = common::modules::module_dir();
    let vars = common::modules::test_module(modules.path(), "vars");
    common::modules::map_module(&web, ".vars", &vars);
    let seen = curl_tls(
        &web,
        "/x.vars?AUTH_TYPE,LOGON_USER,REMOTE_USER,HTTPS,SERVER_PORT_SECURE,CERT_FLAGS,CERT_SUBJECT",
        &ca,
        &alice,
    )
    .text();
    for line in [
        "AUTH_TYPE=SSL/PCT",
        "LOGON_USER=alice",
        "REMOTE_USER=alice",
        "HTTPS=on",
        "SERVER_PORT_SECURE=1",
        "CERT_FLAGS=1",
        "CERT_SUBJECT=CN=alice",
    ] {
        assert!(seen.contains(line), "{line}: {seen}");
    }
    // Mallory's CA is not trusted by the binding; a certificate of the
    // trusted CA that nobody mapped is only a TLS client certificate.
    issue(dir, "ca", "carol", "carol", "extendedKeyUsage=clientAuth\n");
    let carol = client_cert(dir, "carol");
    let carol: Vec<&str> = carol.iter().map(String::as_str).collect();
    assert_eq!(curl_tls(&web, "/", &ca, &carol).status, 401);
    // Unmapped (by thumbprint or by file) and deleted users log on no more.
    web.cli_ok(&["user", "unmap-cert", alice_pem.to_str().unwrap()]);
    web.wait_for("the mapping removed", Duration::from_secs(10), || {
        curl_tls(&web, "/", &ca, &alice).status == 401
    });
    web.cli_ok(&["user", "map-cert", "alice", alice_pem.to_str().unwrap()]);
    web.wait_for("mapped again", Duration::from_secs(10), || {
        curl_tls(&web, "/", &ca, &alice).status == 200
    });
    web.cli_ok(&["user", "delete", "alice"]);
    web.wait_for("the user deleted", Duration::from_secs(10), || {
        curl_tls(&web, "/", &ca, &alice).status == 401
    });
    web.cli_fails_with(
        &["user", "map-cert", "alice", alice_pem.to_str().unwrap()],
        "no user 'alice'",
    );
    web.cli_fails_with(
        &["user", "unmap-cert", "nonsense"],
        "neither a certificate thumbprint nor a file",
    );
}

#[test]
fn hostile_handshakes_are_logged_and_the_server_keeps_serving() {
    use std::io::Read;
    use std::net::TcpStream;
    let web = Web::start();
    let ca = first_run_ca(&web);
    let addr = format!("127.0.0.1:{}", web.tls_port);
    // Garbage, a truncated ClientHello, a record claiming a huge length,
    // and connections that send nothing (held open meanwhile).
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let inputs: Vec<Vec<u8>> = vec![
        vec![0xff; 300],
        vec![
            0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03,
        ],
        vec![0x16, 0x03, 0x01, 0xff, 0xff],
        b"\x16\x03\x01\x00\x05hello".to_vec(),
    ];
    for input in &inputs {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(input).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        // Closed, at most with an alert: never an HTTP answer.
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    }
    assert_eq!(curl_tls(&web, "/", &ca, &[]).status, 200, "{}", web.log());
    drop(idle);
    let errors = httperr(&web);
    assert!(errors.contains("TLS_Handshake_Failed"), "{errors}");
    // A thousand half-open handshakes (a ClientHello's first bytes, then
    // nothing), held by a helper process that raises its own descriptor
    // limit: full handshakes still complete meanwhile.
    let script = format!(
        "import resource, socket, sys\n\
         soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))\n\
         held = []\n\
         for _ in range(1000):\n\
         \x20   s = socket.create_connection(('127.0.0.1', {port}))\n\
         \x20   s.sendall(bytes([0x16, 3, 1, 0, 0x40, 1, 0, 0, 0x3c, 3, 3]))\n\
         \x20   held.append(s)\n\
         print('holding', len(held), flush=True)\n\
         sys.stdin.read()\n",
        port = web.tls_port
    );
    let mut holder = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut said,
    )
    .unwrap();
    let served: Vec<u16> = (0..5)
        .map(|_| curl_tls(&web, "/", &ca, &[]).status)
        .collect();
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(said.trim(), "holding 1000");
    assert_eq!(served, vec![200; 5], "{}", web.log());
    // A client quirk rustls warns about on every handshake (an IP address
    // sent as the server name, as wrk does) is served and does not reach
    // the service log, which any client could otherwise fill.
    for _ in 0..3 {
        let quirky = s_client(web.tls_port, &["-servername", "127.0.0.1"]);
        assert!(quirky.contains("HTTP/1.1 200 OK"), "{quirky}");
    }
    let service_log = std::fs::read_to_string(web.state().join("logs/inetsrv.log")).unwrap();
    assert!(service_log.contains("INFO"), "{service_log}");
    assert!(!service_log.contains("Illegal SNI"), "{service_log}");
    assert!(!web.log().contains("Illegal SNI"), "{}", web.log());
}

#[test]
fn certificates_are_imported_as_files_from_a_ca_or_windows() {
    let web = Web::prepare();
    let dir = web.dir.path();
    make_ca(dir, "ca", "/CN=Corp CA");
    issue_with_key(
        dir,
        "ca",
        "www",
        "www.corp.test",
        "subjectAltName=DNS:www.corp.test\n",
        &["rsa:2048"],
    );
    chain_file(dir, "chain.pem", &["www", "ca"]);
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "www.key",
            "-in",
            "www.pem",
            "-certfile",
            "ca.pem",
            "-out",
            "www.pfx",
            "-passout",
            "pass:Pa55word",
        ],
    );
    let pem = |name: &str| dir.join(name).display().to_string();
    // The wrong key, the wrong order, the wrong password: refused, the
    // store unchanged.
    web.cli_fails_with(
        &[
            "cert",
            "import",
            "--cert",
            &pem("chain.pem"),
            "--key",
            &pem("ca.key"),
        ],
        "does not belong",
    );
    chain_file(dir, "reversed.pem", &["ca", "www"]);
    web.cli_fails_with(
        &[
            "cert",
            "import",
            "--cert",
            &pem("reversed.pem"),
            "--key",
            &pem("www.key"),
        ],
        "out of order",
    );
    let out = import_pfx(&web, &pem("www.pfx"), b"nope\n", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password is wrong"));
    let listed: serde_json::Value =
        serde_json::from_str(&web.cli_ok(&["--json", "cert", "list"])).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the first run's: {listed}"
    );
    // The PFX as Windows exports it, with its password on stdin.
    let out = import_pfx(&web, &pem("www.pfx"), b"Pa55word\n", &["--name", "corp"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("CN=www.corp.test"));
    // The PEM pair is the same certificate: already in the store.
    let again = web.cli_ok(&[
        "cert",
        "import",
        "--cert",
        &pem("chain.pem"),
        "--key",
        &pem("www.key"),
    ]);
    assert!(again.contains("already in the store"), "{again}");
    // Keys are the service's alone.
    use std::os::unix::fs::PermissionsExt;
    let certs = web.state().join("certs");
    assert_eq!(
        std::fs::metadata(&certs).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in std::fs::read_dir(&certs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}

/// A CA in `dir`: `NAME.key` and `NAME.pem` (RSA, as most public CAs).
fn make_ca(dir: &Path, name: &str, subject: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
            "-subj", subject, "-days", "5",
        ],
    );
}

/// A certificate for `cn` issued by the CA `ca` in `dir`: `NAME.key` (ECDSA
/// P-256) and `NAME.pem`, with `extensions` (openssl extension lines).
fn issue(dir: &Path, ca: &str, name: &str, cn: &str, extensions: &str) {
    let ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    issue_with_key(dir, ca, name, cn, extensions, &ec);
}

/// [`issue`] with the key openssl's `-newkey` arguments describe.
fn issue_with_key(dir: &Path, ca: &str, name: &str, cn: &str, extensions: &str, key: &[&str]) {
    let (key_file, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let subject = format!("/CN={cn}");
    let mut request = vec!["req", "-newkey"];
    request.extend_from_slice(key);
    request.extend([
        "-nodes", "-keyout", &key_file, "-out", &csr, "-subj", &subject,
    ]);
    openssl(dir, &request);
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "5",
            "-extfile",
            &ext,
        ],
    );
}

/// `OUT` in `dir`: the named certificates' PEM files in order.
fn chain_file(dir: &Path, out: &str, names: &[&str]) -> PathBuf {
    let chain = dir.join(out);
    let pems: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(dir.join(format!("{n}.pem"))).unwrap())
        .collect();
    std::fs::write(&chain, pems.concat()).unwrap();
    chain
}

/// An OCSP response from the CA `ca` about `NAME.pem`, written to `out`:
/// good, or revoked when `revoked`. openssl is the responder, reading an
/// index of the CA's certificates.
fn ocsp_response(dir: &Path, ca: &str, name: &str, revoked: bool, out: &str) {
    let pem = format!("{name}.pem");
    let serial = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in", &pem])
        .current_dir(dir)
        .output()
        .unwrap();
    let serial = String::from_utf8(serial.stdout).unwrap();
    let serial = serial.trim().trim_start_matches("serial=");
    let (state, when) = if revoked {
        ("R", "261201000000Z")
    } else {
        ("V", "")
    };
    std::fs::write(
        dir.join("index.txt"),
        format!("{state}\t301231000000Z\t{when}\t{serial}\tunknown\t/CN=localhost\n"),
    )
    .unwrap();
    let ca_pem = format!("{ca}.pem");
    let ca_key = format!("{ca}.key");
    openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            &ca_pem,
            "-cert",
            &pem,
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    openssl(
        dir,
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            &ca_pem,
            "-rkey",
            &ca_key,
            "-CA",
            &ca_pem,
            "-reqin",
            "req.der",
            "-respout",
            out,
            "-ndays",
            "7",
        ],
    );
}

#[test]
fn ocsp_responses_are_stapled_from_the_store() {
    let web = Web::start();
    let dir = web.dir.path();
    make_ca(dir, "ca", "/CN=Stapling CA");
    issue(
        dir,
        "ca",
        "www",
        "localhost",
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    let chain = chain_file(dir, "chain.pem", &["www", "ca"]);
    let imported: serde_json::Value = serde_json::from_str(&web.cli_ok(&[
        "--json",
        "cert",
        "import",
        "--cert",
        chain.to_str().unwrap(),
        "--key",
        dir.join("www.key").to_str().unwrap(),
        "--name",
        "stapled",
    ]))
    .unwrap();
    let thumb = imported["thumbprint"].as_str().unwrap().to_string();
    web.cli_ok(&["mb", "set", "W3SVC/1/SSLCertHash", &thumb]);
    let status = || s_client(web.tls_port, &["-status", "-servername", "localhost"]);
    web.wait_for(
        "the CA's certificate served",
        Duration::from_secs(10),
        || status().contains("CN = Stapling CA"),
    );
    assert!(status().contains("OCSP response: no response sent"));

    ocsp_response(dir, "ca", "www", false, "good.der");
    let good = dir.join("good.der");
    let stored = web.cli_ok(&[
        "cert",
        "ocsp",
        "stapled",
        "--response",
        good.to_str().unwrap(),
    ]);
    assert!(
        stored.contains("OCSP response stored (good as of"),
        "{stored}"
    );
    assert!(stored.contains("next update"), "{stored}");
    web.wait_for("the response stapled", Duration::from_secs(10), || {
        status().contains("OCSP Response Status: successful")
    });
    let stapled = status();
    assert!(stapled.contains("Cert Status: good"), "{stapled}");
    assert!(stapled.contains("HTTP/1.1 200 OK"), "{stapled}");
    let listed = web.cli_ok(&["cert", "list"]);
    assert!(listed.contains("OCSP      good, stapled until"), "{listed}");

    // A revoked answer, garbage and another certificate's answer are
    // refused by name; the good response stays stapled.
    ocsp_response(dir, "ca", "www", true, "revoked.der");
    let revoked = dir.join("revoked.der");
    web.cli_fails_with(
        &[
            "cert",
            "ocsp",
            "stapled",
            "--response",
            revoked.to_str().unwrap(),
        ],
        "says the certificate was revoked",
    );
    std::fs::write(dir.join("junk.der"), b"not an OCSP response").unwrap();
    web.cli_fails_with(
        &[
            "cert",
            "ocsp",
            "stapled",
            "--response",
            dir.join("junk.der").to_str().unwrap(),
        ],
        "not valid DER",
    );
    web.cli_fails_with(
        &[
            "cert",
            "ocsp",
            "localhost (self-signed)",
            "--response",
            good.to_str().unwrap(),
        ],
        "not about this certificate",
    );
    assert!(status().contains("Cert Status: good"));

    web.cli_ok(&["cert", "ocsp", "stapled", "--clear"]);
    web.wait_for("stapling stopped", Duration::from_secs(10), || {
        status().contains("OCSP response: no response sent")
    });
    let shown = web.cli_ok(&["cert", "ocsp", "stapled"]);
    assert!(shown.contains("no OCSP response stored"), "{shown}");
}

/// testssl.sh's findings (its JSON file) against the first run's https
/// endpoint, by id: (severity, finding).
fn testssl(web: &Web) -> std::collections::HashMap<String, (String, String)> {
    let json = web.dir.path().join("testssl.json");
    let child = Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            // Protocols, cipher categories, forward secrecy, the server's
            // defaults and the known vulnerabilities.
            "-p",
            "-s",
            "-f",
            "-S",
            "-U",
            "--jsonfile",
            json.to_str().unwrap(),
            &format!("127.0.0.1:{}", web.tls_port),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("testssl.sh is installed (apt-get install testssl.sh)");
    let out = wait_output(child, Duration::from_secs(240));
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "testssl wrote no findings: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    findings
        .iter()
        .map(|f| {
            let field = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (field("id"), (field("severity"), field("finding")))
        })
        .collect()
}

#[test]
fn testssl_finds_no_weak_protocol_cipher_or_known_vulnerability() {
    let web = Web::start();
    let found = testssl(&web);
    let finding = |id: &str| {
        found
            .get(id)
            .unwrap_or_else(|| panic!("testssl reported no {id}: {found:?}"))
            .1
            .clone()
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(old), "not offered", "{old}");
    }
    assert_eq!(finding("TLS1_2"), "offered");
    assert!(finding("TLS1_3").starts_with("offered"), "{found:?}");
    for weak in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        assert_eq!(finding(weak), "not offered", "{weak}");
    }
    assert_eq!(finding("cipherlist_STRONG"), "offered");
    assert_eq!(finding("PFS"), "offered");
    assert_eq!(finding("ALPN"), "http/1.1");
    assert_eq!(finding("secure_renego"), "supported");
    // Every check of a known attack passes.
    for attack in [
        "heartbleed",
        "CCS",
        "ticketbleed",
        "ROBOT",
        "secure_client_renego",
        "CRIME_TLS",
        "BREACH",
        "POODLE_SSL",
        "fallback_SCSV",
        "SWEET32",
        "FREAK",
        "DROWN",
        "LOGJAM",
        "BEAST",
        "LUCKY13",
        "RC4",
    ] {
        assert_eq!(found[attack].0, "OK", "{attack}: {:?}", found[attack]);
    }
    // Nothing else is worse than informational, but what comes of a
    // self-signed certificate (no chain of trust, no revocation URL, no
    // DNS CAA record for 127.0.0.1) and testssl's two resumption probes:
    // their s_client closes as soon as the handshake ends, before a TLS 1.3
    // server's tickets can arrive (they follow the client's Finished), so
    // they report a "connect problem" in some runs and "supported" in
    // others, against OpenSSL's own s_server too. Resumption is tested
    // with s_client waiting for the answer, above.
    let allowed = [
        "cert_chain_of_trust",
        "cert_revocation",
        "DNS_CAArecord",
        "sessionresumption_ticket",
        "sessionresumption_ID",
    ];
    let bad: Vec<_> = found
        .iter()
        .filter(|(id, (severity, _))| {
            !["OK", "INFO"].contains(&severity.as_str()) && !allowed.contains(&id.as_str())
        })
        .collect();
    assert!(bad.is_empty(), "testssl found: {bad:?}");
}

#[test]
fn programs_on_the_listener_are_told_the_tls_facts() {
    use std::io::BufRead;
    let web = Web::start();
    let dir = web.dir.path();
    make_ca(dir, "ca", "/CN=Program CA");
    issue(dir, "ca", "dave", "dave", "extendedKeyUsage=clientAuth\n");
    let port = common::free_port();
    web.cli_ok(&[
        "sslcert",
        "add",
        "--ipport",
        &format!("127.0.0.1:{port}"),
        "--cert",
        "localhost (self-signed)",
        "--client-cert",
        "negotiate",
        "--client-ca",
        dir.join("ca.pem").to_str().unwrap(),
    ]);
    // httpapi's example program, registering an https prefix of its own.
    let hello = Path::new(common::BIN)
        .parent()
        .unwrap()
        .join("examples/hello");
    /// Killed when the test ends, however it ends.
    struct Program(std::process::Child);
    impl Drop for Program {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut program = Command::new(&hello)
        .args(["--socket"])
        .arg(web.state().join("run/httpapi.sock"))
        .args([
            "--https",
            "--port",
            &port.to_string(),
            "--path",
            "/program/",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo build -p httpapi --examples)",
                hello.display()
            )
        });
    let stdout = program.stdout.take().unwrap();
    let _program = Program(program);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("serving https://+:"), "{line}");
    let ca = first_run_ca(&web);
    let get = |extra: &[&str]| {
        let resolve = format!("localhost:{port}:127.0.0.1");
        let mut args = vec!["--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
        args.extend_from_slice(extra);
        curl(&format!("https://localhost:{port}/program/x"), &args)
    };
    let dave = client_cert(dir, "dave");
    let dave: Vec<&str> = dave.iter().map(String::as_str).collect();
    // The binding takes effect within the listener's next look (1 s).
    web.wait_for("the program's binding", Duration::from_secs(10), || {
        get(&[]).status == 200
    });
    assert!(get(&[]).text().contains("CERT_FLAGS: 0"));
    let got = get(&dave);
    assert_eq!(got.status, 200, "{}", web.log());
    let text = got.text();
    for fact in [
        "HTTPS: on",
        "SERVER_PORT_SECURE: 1",
        "protocol: TLSv1.3, cipher: TLS13_",
        "HTTPS_SERVER_SUBJECT: CN=localhost",
        "HTTPS_SERVER_ISSUER: CN=localhost",
        "server name (SNI): localhost",
        "CERT_FLAGS: 1",
        "CERT_SUBJECT: CN=dave",
        "CERT_ISSUER: CN=Program CA",
        "CERT_SERIALNUMBER: ",
    ] {
        assert!(text.contains(fact), "{fact}: {text}");
    }
}
