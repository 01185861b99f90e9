//! `inetsrv query` and `inetsrv wmi` from the command line: offline on a
//! state directory, and on a running server through its admin interfaces
//! (the RPC socket), where a change made with `inetsrv site`/`mb` shows at
//! once.

mod common;

use common::web::Web;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Starts `inetsrv wmi watch ARGS…` beside the server; returns it once it
/// has said (its first stderr line) that it is watching.
fn watch(web: &Web, args: &[&str]) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(common::BIN)
        .args(web.target())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    (child, first)
}

/// Everything a watch printed, once it has ended by itself.
fn watched(mut child: std::process::Child) -> String {
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    out
}

#[test]
fn queries_offline_and_on_a_running_server() {
    let mut web = Web::prepare();
    // Offline: the seed's listing example, with its IIS 5.1 class name.
    web.cli_ok(&["vdir", "create", "1", "upload", web.www().to_str().unwrap()]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/upload/AccessFlags",
        "AccessRead | AccessWrite",
    ]);
    let out = web.cli_ok(&[
        "query",
        "select Name, AccessWrite from MicrosoftIIS_WebVirtualDirSetting where AccessWrite != TRUE",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Name", "AccessWrite"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["W3SVC/1/ROOT", "FALSE"]
    );
    assert_eq!(lines.len(), 2, "{out}");

    web.launch();
    // On the running server: a site created a moment ago is there.
    web.cli_ok(&[
        "site",
        "create",
        "Shop",
        "--path",
        web.www().to_str().unwrap(),
        "--port",
        "1",
        "--dont-start",
        "--id",
        "7",
    ]);
    let rows = json(&web.cli_ok(&[
        "--json",
        "query",
        "select Name, ServerComment, ServerAutoStart, ServerBindings from IIsWebServerSetting where ServerComment LIKE 'sh%'",
    ]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Name"], "W3SVC/7");
    assert_eq!(rows[0]["ServerAutoStart"], false);
    assert_eq!(rows[0]["ServerBindings"][0]["Port"], "1");
    assert_eq!(rows[0]["ServerBindings"][0]["__CLASS"], "ServerBinding");

    let site = json(&web.cli_ok(&[
        "--json",
        "wmi",
        "get",
        "IIsWebServerSetting.Name=\"W3SVC/7\"",
    ]));
    assert_eq!(site["ServerComment"], "Shop");
    assert_eq!(site["__RELPATH"], "IIsWebServerSetting.Name=\"W3SVC/7\"");
    let text = web.cli_ok(&["wmi", "get", "IIsWebServer='W3SVC/1'"]);
    assert!(
        text.starts_with("IIsWebServer.Name=\"W3SVC/1\"\n"),
        "{text}"
    );

    // Associations: from the site to its setting.
    let assoc = web.cli_ok(&[
        "query",
        "ASSOCIATORS OF {IIsWebServer='W3SVC/7'} WHERE ResultClass = CIM_Setting",
    ]);
    assert!(
        assoc.starts_with("IIsWebServerSetting.Name=\"W3SVC/7\"\n"),
        "{assoc}"
    );
    assert!(assoc.contains("  ServerComment = Shop\n"), "{assoc}");

    // Errors: WMI's code, the column, a caret under it.
    let err = web.cli_err(&["query", "select * from IIsWebServerSetting where Bogus = 1"]);
    assert!(
        err.contains("WBEM_E_INVALID_QUERY (0x80041017) at column 41"),
        "{err}"
    );
    assert!(
        err.contains("\n                                          ^"),
        "{err}"
    );
    let err = web.cli_err(&["query", "select * from NoSuchClass"]);
    assert!(
        err.contains("WBEM_E_INVALID_CLASS (0x80041010) at column 15"),
        "{err}"
    );
    web.cli_fails_with(
        &["wmi", "get", "IIsWebServerSetting.Name=\"W3SVC\""],
        "WBEM_E_NOT_FOUND",
    );

    // The class catalogue.
    let classes = web.cli_ok(&["wmi", "classes"]);
    assert!(
        classes
            .lines()
            .any(|l| l.starts_with("IIsWebServerSetting ")),
        "{classes}"
    );
    let schema = json(&web.cli_ok(&[
        "--json",
        "wmi",
        "classes",
        "--schema",
        "IIsWebVirtualDirSetting",
    ]));
    assert_eq!(schema["derivation"][0], "IIsSetting");
    assert!(schema["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "AccessWrite" && p["type"] == "boolean"));
}

#[test]
fn the_seeds_site_creation_example_the_susan_example_and_methods() {
    let web = Web::start();
    let port = common::free_port();
    let content = web.dir.path().join("delme");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), "from wmi").unwrap();
    let content = content.to_str().unwrap();

    // ServerObj = ServerClass.SpawnInstance_(); ServerObj.Name = "W3SVC/20"; Put_
    assert_eq!(
        web.cli_ok(&["wmi", "put", "IIsWebServer", "Name=W3SVC/20"])
            .trim(),
        "IIsWebServer.Name=\"W3SVC/20\""
    );
    // The setting: ServerSize, ServerComment, ServerBindings (":83:" in the seed).
    web.cli_ok(&[
        "wmi",
        "put",
        "IIsWebServerSetting",
        "Name=W3SVC/20",
        "ServerSize=1",
        "ServerComment=SampleWMISite",
        &format!("ServerBindings=:{port}:"),
    ]);
    // The root virtual directory and its setting.
    web.cli_ok(&["wmi", "put", "IIsWebVirtualDir", "Name=W3SVC/20/ROOT"]);
    web.cli_ok(&[
        "wmi",
        "put",
        "IIsWebVirtualDirSetting",
        "Name=W3SVC/20/ROOT",
        "AccessRead=TRUE",
        "AccessWrite=TRUE",
        "EnableDirBrowsing=TRUE",
        &format!("Path={content}"),
    ]);
    let url = format!("http://127.0.0.1:{port}/");
    // A new site starts as IIS starts it (ServerAutoStart's default);
    // Stop stops it, and the seed's ServerObj.Start() brings it back.
    web.cli_ok(&["wmi", "call", "IIsWebServer='W3SVC/20'", "Stop"]);
    web.wait_for(
        "the site stopped",
        std::time::Duration::from_secs(10),
        || common::web::curl(&url, &["--max-time", "2"]).status != 200,
    );
    let stopped = json(&web.cli_ok(&["--json", "wmi", "get", "IIsWebServer='W3SVC/20'"]));
    assert_eq!(stopped["ServerState"], 4, "MD_SERVER_STATE_STOPPED");
    web.cli_ok(&["wmi", "call", "IIsWebServer='W3SVC/20'", "Start"]);
    let listing = common::web::curl(&url, &[]);
    assert_eq!(listing.status, 200);
    assert!(listing.text().contains("hello.txt"), "{}", listing.text());
    assert_eq!(
        common::web::curl(&format!("{url}hello.txt"), &[]).text(),
        "from wmi"
    );
    let state = json(&web.cli_ok(&["--json", "wmi", "get", "IIsWebServer='W3SVC/20'"]));
    assert_eq!(state["ServerState"], 2, "MD_SERVER_STATE_STARTED");

    // Pause answers 503, Continue serves again.
    web.cli_ok(&["wmi", "call", "IIsWebServer='W3SVC/20'", "Pause"]);
    assert_eq!(
        common::web::curl(&format!("{url}hello.txt"), &[]).status,
        503
    );
    web.cli_ok(&["wmi", "call", "IIsWebServer='W3SVC/20'", "Continue"]);
    assert_eq!(
        common::web::curl(&format!("{url}hello.txt"), &[]).status,
        200
    );

    // Susan: ServerBindings on /LM/W3SVC/1 as an IIsWebServer works; on
    // /LM/W3SVC it fails, for the path is not a web server's.
    let err = web.cli_fails_with(
        &[
            "wmi",
            "put",
            "IIsWebServerSetting",
            "Name=W3SVC",
            "ServerBindings=:1080:",
        ],
        "WBEM_E_INVALID_PARAMETER",
    );
    assert!(err.contains("IIsWebService"), "{err}");
    let other = common::free_port();
    web.cli_ok(&[
        "wmi",
        "put",
        "IIsWebServerSetting",
        "Name=W3SVC/1",
        &format!("ServerBindings=:{other}:"),
    ]);
    // Another user changes it back; Susan sees the change.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ServerBindings",
        &format!(":{}:", web.port),
    ]);
    let site = json(&web.cli_ok(&["--json", "wmi", "get", "IIsWebServerSetting='W3SVC/1'"]));
    assert_eq!(site["ServerBindings"][0]["Port"], web.port.to_string());
    // A bad value is refused and changes nothing.
    web.cli_fails_with(
        &[
            "wmi",
            "put",
            "IIsWebServerSetting",
            "Name=W3SVC/20",
            "ServerSize=big",
        ],
        "WBEM_E_TYPE_MISMATCH",
    );
    web.cli_fails_with(
        &[
            "wmi",
            "put",
            "IIsWebServer",
            "Name=W3SVC/20",
            "ServerState=4",
        ],
        "read-only",
    );

    // CreateNewSite, application methods, pools.
    let created = web.cli_ok(&[
        "wmi",
        "call",
        "IIsWebService='W3SVC'",
        "CreateNewSite",
        "ServerComment=Made by WMI",
        &format!("ServerBindings=:{}:", common::free_port()),
        &format!("PathOfRootVirtualDir={content}"),
    ]);
    assert!(
        created.starts_with("ReturnValue = IIsWebServer='W3SVC/"),
        "{created}"
    );
    web.cli_ok(&["wmi", "put", "IIsWebVirtualDir", "Name=W3SVC/20/ROOT/app"]);
    web.cli_ok(&[
        "wmi",
        "put",
        "IIsWebVirtualDirSetting",
        "Name=W3SVC/20/ROOT/app",
        &format!("Path={content}"),
    ]);
    assert_eq!(
        web.cli_ok(&[
            "wmi",
            "call",
            "IIsWebVirtualDir='W3SVC/20/ROOT/app'",
            "AppGetStatus"
        ])
        .trim(),
        "ReturnValue = 2"
    );
    web.cli_ok(&[
        "wmi",
        "call",
        "IIsWebVirtualDir='W3SVC/20/ROOT/app'",
        "AppCreate3",
        "AppMode=2",
        "AppPoolName=WmiPool",
        "bCreatePool=TRUE",
    ]);
    assert_eq!(
        web.cli_ok(&[
            "wmi",
            "call",
            "IIsWebVirtualDir='W3SVC/20/ROOT/app'",
            "AppGetStatus"
        ])
        .trim(),
        "ReturnValue = 1"
    );
    assert_eq!(
        common::web::curl(&format!("{url}app/hello.txt"), &[]).text(),
        "from wmi"
    );
    let apps = json(&web.cli_ok(&[
        "--json",
        "wmi",
        "call",
        "IIsApplicationPool='W3SVC/AppPools/WmiPool'",
        "EnumAppsInPool",
    ]));
    assert_eq!(apps["Applications"][0], "/LM/W3SVC/20/ROOT/app");
    let before = web.worker_pids("WmiPool", "running");
    assert_eq!(before.len(), 1);
    web.cli_ok(&[
        "wmi",
        "call",
        "IIsApplicationPool='W3SVC/AppPools/WmiPool'",
        "Recycle",
    ]);
    web.wait_for(
        "a recycled WmiPool",
        std::time::Duration::from_secs(20),
        || {
            let now = web.worker_pids("WmiPool", "running");
            now.len() == 1 && now != before
        },
    );
    web.cli_fails_with(
        &["wmi", "call", "IIsWebServer='W3SVC/20'", "Recycle"],
        "WBEM_E_INVALID_METHOD",
    );

    // Delete: the vdir goes, and is no longer served.
    web.cli_ok(&["wmi", "delete", "IIsWebVirtualDir='W3SVC/20/ROOT/app'"]);
    assert_eq!(
        common::web::curl(&format!("{url}app/hello.txt"), &[]).status,
        404
    );
    web.cli_fails_with(
        &["wmi", "get", "IIsWebVirtualDir='W3SVC/20/ROOT/app'"],
        "WBEM_E_NOT_FOUND",
    );
}

#[test]
fn events_seen_after_changes_made_through_mb() {
    let web = Web::start();
    // The watcher runs beside the server, as an administrator would run it.
    let (watcher, first) = watch(
        &web,
        &[
            "--json",
            "wmi",
            "watch",
            "SELECT * FROM __InstanceOperationEvent WITHIN 0.2 WHERE TargetInstance ISA 'IIsWebServerSetting'",
            "--count",
            "3",
            "--timeout",
            "30",
        ],
    );
    assert!(first.starts_with("watching "), "{first}");

    // Each event is read as the watcher prints it, before the next change
    // (a creation and a deletion inside one polling interval would show
    // as nothing at all).
    let mut watcher = watcher;
    let mut events_out = std::io::BufReader::new(watcher.stdout.take().unwrap());
    let mut next_event = || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut events_out, &mut line).unwrap();
        json(&line)
    };
    web.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Renamed"]);
    let renamed = next_event();
    // Not selected: a virtual directory is not an IIsWebServerSetting (the
    // next event read must be the site's creation).
    web.cli_ok(&[
        "vdir",
        "create",
        "1",
        "ignored",
        web.www().to_str().unwrap(),
    ]);
    web.cli_ok(&[
        "site",
        "create",
        "Evented",
        "--path",
        web.www().to_str().unwrap(),
        "--port",
        "1",
        "--dont-start",
        "--id",
        "5",
    ]);
    let created = next_event();
    web.cli_ok(&["site", "delete", "5"]);
    let deleted = next_event();
    assert!(watcher.wait().unwrap().success(), "--count 3 ends it");
    let events = [renamed, created, deleted];
    assert_eq!(events[0]["__CLASS"], "__InstanceModificationEvent");
    assert_eq!(events[0]["TargetInstance"]["ServerComment"], "Renamed");
    assert_eq!(
        events[0]["PreviousInstance"]["ServerComment"],
        "Default Web Site"
    );
    assert_eq!(events[1]["__CLASS"], "__InstanceCreationEvent");
    assert_eq!(events[1]["TargetInstance"]["Name"], "W3SVC/5");
    assert_eq!(events[2]["__CLASS"], "__InstanceDeletionEvent");
    assert_eq!(
        events[2]["TargetInstance"]["__RELPATH"],
        "IIsWebServerSetting.Name=\"W3SVC/5\""
    );

    // State changes, volatile (not in MetaBase.xml), are events too on a
    // running server: a site stopping.
    let (state, first) = watch(
        &web,
        &[
            "wmi",
            "watch",
            "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'IIsWebServer' AND TargetInstance.ServerState = 4",
            "--count",
            "1",
            "--timeout",
            "30",
        ],
    );
    assert!(first.contains("change notifications"), "{first}");
    web.cli_ok(&["site", "stop", "1"]);
    let out = watched(state);
    assert!(
        out.starts_with("__InstanceModificationEvent IIsWebServer.Name=\"W3SVC/1\"\n"),
        "{out}"
    );
    assert!(out.contains("  ServerState: 2 -> 4"), "{out}");

    // A wait that is no number of seconds is refused before anything runs.
    for bad in ["inf", "-1", "1e300", "soon"] {
        for watch in [
            &["wmi", "watch", "select * from __InstanceModificationEvent"][..],
            &["mb", "watch"][..],
        ] {
            let timeout = format!("--timeout={bad}");
            let mut args = watch.to_vec();
            args.push(&timeout);
            web.cli_fails_with(&args, "is not a number of seconds from 0 to");
        }
    }

    // An event query is watched, a data query run; each says so.
    let err = web.cli_err(&["wmi", "watch", "select * from IIsWebServerSetting"]);
    assert!(
        err.contains("WBEM_E_INVALID_CLASS") && err.contains("not an event class"),
        "{err}"
    );
    web.cli_fails_with(
        &[
            "query",
            "select * from __InstanceModificationEvent within 5",
        ],
        "wmi watch",
    );
    let err = web.cli_err(&[
        "wmi",
        "watch",
        "select * from __InstanceCreationEvent where PreviousInstance.Name = 'x'",
    ]);
    assert!(
        err.contains("has no property PreviousInstance.Name"),
        "{err}"
    );
}

#[test]
fn schema_extensions_made_through_the_model_reach_the_metabase() {
    let web = Web::start();
    // A property: on the metabase's IIsWebServer key type, saved in MBSchema.xml.
    let added = web.cli_ok(&[
        "wmi",
        "add-property",
        "IIsWebServerSetting",
        "IIsWebCustomer",
        "--type",
        "string",
        "--inherit",
    ]);
    assert!(added.contains("ID 70000"), "{added}");
    let def = json(&web.cli_ok(&["--json", "mb", "schema", "property", "IIsWebCustomer"]));
    assert_eq!(def["id"], 70000, "{def}");
    let schema_file = std::fs::read_to_string(web.state().join("MBSchema.xml")).unwrap();
    assert!(schema_file.contains("IIsWebCustomer"));
    web.cli_ok(&[
        "wmi",
        "put",
        "IIsWebServerSetting",
        "Name=W3SVC/1",
        "IIsWebCustomer=Contoso",
    ]);
    let got = web.cli_ok(&["mb", "get", "W3SVC/1/IIsWebCustomer"]);
    assert!(got.contains("(STRING) \"Contoso\""), "{got}");
    // A class: a new key type under IIsWebServer, its keys made with mb.
    web.cli_ok(&[
        "wmi",
        "add-class",
        "MySiteSettings",
        "--under",
        "IIsWebServer",
        "--property",
        "IIsWebCustomer",
    ]);
    web.cli_ok(&["mb", "create", "W3SVC/1/Mine", "MySiteSettings"]);
    let rows = json(&web.cli_ok(&[
        "--json",
        "query",
        "select Name, IIsWebCustomer from MySiteSettingsSetting",
    ]));
    assert_eq!(rows[0]["Name"], "W3SVC/1/Mine");
    assert_eq!(
        rows[0]["IIsWebCustomer"], "Contoso",
        "inherited from the site"
    );
    let assoc = web.cli_ok(&[
        "query",
        "ASSOCIATORS OF {MySiteSettings='W3SVC/1/Mine'} WHERE ResultClass = IIsWebServer",
    ]);
    assert!(
        assoc.starts_with("IIsWebServer.Name=\"W3SVC/1\""),
        "{assoc}"
    );
    // Refusals change nothing.
    web.cli_fails_with(
        &[
            "wmi",
            "add-class",
            "MySiteSettings",
            "--under",
            "IIsWebServer",
        ],
        "WBEM_E_ALREADY_EXISTS",
    );
    web.cli_fails_with(
        &[
            "wmi",
            "add-property",
            "IIsWebServerSetting",
            "Other",
            "--type",
            "real64",
        ],
        "WBEM_E_TYPE_MISMATCH",
    );
    web.cli_fails_with(
        &[
            "wmi",
            "add-property",
            "IIsWebServerSetting",
            "IIsWebCustomer",
            "--type",
            "string",
        ],
        "already exists",
    );
}

#[test]
fn backups_as_instances_and_the_computers_methods() {
    let web = Web::start();
    let lm = "IIsComputer='LM'";
    // Creating an IIsBackup makes a backup; the computer's Backup too.
    assert_eq!(
        web.cli_ok(&["wmi", "put", "IIsBackup", "Location=nightly"])
            .trim(),
        "IIsBackup.Location=\"nightly\",Version=0"
    );
    let made = web.cli_ok(&[
        "wmi",
        "call",
        lm,
        "BackupWithPassword",
        "BackupLocation=nightly",
        "BackupPassword=s3cret",
    ]);
    assert!(made.contains("BackupVersion = 1"), "{made}");
    let rows = json(&web.cli_ok(&[
        "--json",
        "query",
        "select * from IIsBackup where Location = 'nightly'",
    ]));
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows[1]["PasswordProtected"], true);
    let listed = web.cli_ok(&["backup", "list"]);
    assert!(listed.contains("nightly"), "{listed}");
    let first = json(&web.cli_ok(&[
        "--json",
        "wmi",
        "call",
        lm,
        "EnumBackups",
        "BackupLocation=nightly",
        "IndexIn=0",
    ]));
    assert_eq!(first["BackupVersionOut"], 0);
    web.cli_fails_with(
        &["wmi", "call", lm, "EnumBackups", "IndexIn=5"],
        "WBEM_E_NOT_FOUND",
    );

    // Restore brings the configuration back, live.
    web.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Changed"]);
    web.cli_ok(&[
        "wmi",
        "call",
        lm,
        "Restore",
        "BackupLocation=nightly",
        "BackupVersion=0",
    ]);
    let site = json(&web.cli_ok(&["--json", "wmi", "get", "IIsWebServerSetting='W3SVC/1'"]));
    assert_eq!(site["ServerComment"], "Default Web Site");
    web.cli_fails_with(
        &[
            "wmi",
            "call",
            lm,
            "RestoreWithPassword",
            "BackupLocation=nightly",
            "BackupVersion=1",
            "BackupPassword=wrong",
        ],
        "WBEM_E_ACCESS_DENIED",
    );
    web.cli_fails_with(
        &["wmi", "call", lm, "DeleteBackup", "BackupLocation=none"],
        "WBEM_E_NOT_FOUND",
    );

    // Export and Import: a copy of site 1 as site 9.
    let file = web.dir.path().join("site1.xml");
    let file = file.to_str().unwrap();
    web.cli_ok(&[
        "wmi",
        "call",
        lm,
        "Export",
        &format!("FileName={file}"),
        "SourcePath=W3SVC/1",
        "Passwd=pw",
    ]);
    web.cli_ok(&[
        "wmi",
        "call",
        lm,
        "Import",
        &format!("FileName={file}"),
        "SourcePath=W3SVC/1",
        "DestPath=W3SVC/9",
        "Passwd=pw",
    ]);
    let copy = json(&web.cli_ok(&["--json", "wmi", "get", "IIsWebServerSetting='W3SVC/9'"]));
    assert_eq!(copy["ServerComment"], "Default Web Site");
    web.cli_ok(&["wmi", "call", lm, "SaveData"]);

    // Deleting the instance deletes the backup.
    web.cli_ok(&["wmi", "delete", "IIsBackup.Location=\"nightly\",Version=0"]);
    web.cli_fails_with(
        &["wmi", "get", "IIsBackup.Location=\"nightly\",Version=0"],
        "WBEM_E_NOT_FOUND",
    );
    web.cli_fails_with(&["wmi", "call", lm, "Frobnicate"], "WBEM_E_INVALID_METHOD");
}
