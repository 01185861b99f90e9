//! The `inetsrv` binary, run for real on temporary state directories.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_inetsrv");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env_remove("INETSRV_HOME")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "inetsrv {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "inetsrv {args:?} should have failed"
        );
        assert!(out.stdout.is_empty(), "nothing on stdout for a failure");
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Json {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn metabase_text(&self) -> String {
        std::fs::read_to_string(self.state().join("MetaBase.xml")).unwrap()
    }
}

#[test]
fn a_fresh_state_dir_answers_with_the_defaults() {
    let env = Env::new();
    let out = env.ok(&["mb", "get", "W3SVC/1/ServerBindings"]);
    assert_eq!(
        out,
        "ServerBindings                  : (LIST) (1 Items)\n  \":8080:\"\n"
    );
    let j = env.json(&["mb", "get", "/LM/W3SVC/1/ROOT/DefaultDoc"]);
    assert_eq!(j["inherited"], true);
    assert_eq!(j["defined_at"], "/LM/W3SVC");
    assert_eq!(j["id"], 6006);
    assert!(env.state().join("wwwroot/iisstart.htm").exists());
    let comment = env.json(&["mb", "get", "W3SVC/1/1015"]);
    assert_eq!(comment["value"], "Default Web Site");
    assert_eq!(comment["name"], "ServerComment");
}

#[test]
fn set_get_with_flags_lists_and_booleans() {
    let env = Env::new();
    env.ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/AccessFlags",
        "AccessRead",
        "|",
        "AccessScript",
        "|",
        "AccessWrite",
    ]);
    let j = env.json(&["mb", "get", "W3SVC/1/ROOT/AccessFlags"]);
    assert_eq!(j["value"], 0x203);
    assert_eq!(
        j["flags"],
        serde_json::json!(["AccessRead", "AccessWrite", "AccessScript"])
    );
    assert!(env
        .metabase_text()
        .contains("AccessFlags=\"AccessRead | AccessWrite | AccessScript\""));
    env.ok(&["mb", "set", "W3SVC/1/ROOT/6016", "1"]);
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/1/ROOT/AccessFlags"])["value"],
        1
    );
    // A flag by name reads and writes one bit.
    env.ok(&["mb", "set", "W3SVC/1/ROOT/AccessWrite", "TRUE"]);
    assert_eq!(
        env.ok(&["mb", "get", "W3SVC/1/ROOT/AccessWrite"]).trim(),
        "AccessWrite                     : (BOOLEAN) True"
    );
    env.ok(&[
        "mb",
        "set",
        "W3SVC/1/ServerBindings",
        ":80:",
        "10.0.0.1:443:www.example.com",
    ]);
    let j = env.json(&["mb", "get", "W3SVC/1/ServerBindings"]);
    assert_eq!(
        j["value"],
        serde_json::json!([":80:", "10.0.0.1:443:www.example.com"])
    );
    env.ok(&["mb", "set", "W3SVC/1/ServerAutoStart", "false"]);
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/1/ServerAutoStart"])["value"],
        false
    );
    // --json on set prints the stored value.
    let j = env.json(&["mb", "set", "W3SVC/1/ServerComment", "Shop"]);
    assert_eq!(j["value"], "Shop");
}

#[test]
fn rejected_writes_explain_and_change_nothing() {
    let env = Env::new();
    env.ok(&["mb", "get", "W3SVC/1/ServerComment"]);
    let before = env.metabase_text();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["mb", "set", "W3SVC/1/ROOT/ServerBindings", ":81:"],
            &[
                "/LM/W3SVC/1/ROOT",
                "ServerBindings",
                "not allowed on key type IIsWebVirtualDir",
            ],
        ),
        (
            &["mb", "set", "W3SVC/AppPools/AppPoolQueueLength", "5"],
            &["AppPoolQueueLength", "out of range: 10 to 65535"],
        ),
        (
            &["mb", "set", "W3SVC/1/ServerBindings", "8080"],
            &[
                "/LM/W3SVC/1",
                "ServerBindings",
                "'8080' is not a binding IP:port:host",
                "':80:'",
            ],
        ),
        (
            &["mb", "set", "W3SVC/1/ROOT/Path"],
            &["/LM/W3SVC/1/ROOT", "Path cannot be empty"],
        ),
        (
            &["mb", "set", "W3SVC/1/ROOT/Path", ""],
            &["/LM/W3SVC/1/ROOT", "Path cannot be empty"],
        ),
        (
            &[
                "site",
                "create",
                "Nowhere",
                "--path",
                "/nonexistent-inetsrv-dir",
                "--port",
                "8181",
            ],
            &["/nonexistent-inetsrv-dir is not a directory", "mkdir -p"],
        ),
        (
            &["vdir", "create", "1", "nowhere", "/nonexistent-inetsrv-dir"],
            &["/nonexistent-inetsrv-dir is not a directory"],
        ),
        (
            &[
                "pool",
                "create",
                "Bogus",
                "--identity",
                "Bogus-no-such-user",
            ],
            &["'Bogus-no-such-user' is not an identity", "NetworkService"],
        ),
        (
            &["mb", "set", "W3SVC/1/ROOT/AccessFlags", "AccessAll"],
            &["AccessAll", "is not a flag of AccessFlags"],
        ),
        (
            &["mb", "set", "W3SVC/1/MaxConnections", "lots"],
            &["MaxConnections", "not a DWORD"],
        ),
        (
            &["mb", "set", "W3SVC/1/ServerAutoStart", "maybe"],
            &["ServerAutoStart", "not a BOOL"],
        ),
        (
            &["mb", "set", "W3SVC/1/NoSuchThing", "x"],
            &["unknown property 'NoSuchThing'"],
        ),
        (
            &["mb", "set", "W3SVC/9/ServerComment", "x"],
            &["path not found: /LM/W3SVC/9"],
        ),
        (
            &["mb", "create", "W3SVC/AppPools/2", "IIsWebServer"],
            &[
                "IIsWebServer may not be created under /LM/W3SVC/AppPools",
                "allowed there: IIsApplicationPool",
            ],
        ),
        (
            &["mb", "create", "W3SVC/1", "IIsWebServer"],
            &["key already exists: /LM/W3SVC/1"],
        ),
        (
            &["mb", "create", "W3SVC/5", "IIsWebSrver"],
            &["unknown key type 'IIsWebSrver'"],
        ),
        (
            &["mb", "create", "W3SVC/5/ROOT", "IIsWebVirtualDir"],
            &["path not found: /LM/W3SVC/5"],
        ),
        (
            &["mb", "delete", "W3SVC/1/Nope"],
            &["neither a key nor a property"],
        ),
        (
            &["mb", "delete", "/"],
            &["the root of the metabase cannot be deleted"],
        ),
        (
            &["mb", "rename", "W3SVC/1", "AppPools"],
            &["key already exists"],
        ),
        (
            &["mb", "get", "W3SVC/1/ROOT/ServerBindings"],
            &["ServerBindings is not set at /LM/W3SVC/1/ROOT"],
        ),
        (
            &["mb", "get", "W3SVC/1/ROOT"],
            &["is a key, not a property"],
        ),
        (&["mb", "set", "W3SVC/1/70000", "x"], &["give its --type"]),
        (
            &["mb", "set", "W3SVC/1/ServerComment", "x", "--type", "DWORD"],
            &["in the schema"],
        ),
    ];
    for (args, expected) in cases {
        let err = env.fail(args);
        for needle in *expected {
            assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        }
        assert!(err.starts_with("inetsrv: error: "), "{err}");
    }
    assert_eq!(
        env.metabase_text(),
        before,
        "a refused write changed the file"
    );
}

#[test]
fn enum_enum_all_create_copy_rename_move_delete_find() {
    let env = Env::new();
    env.ok(&["mb", "create", "W3SVC/1/ROOT/images", "IIsWebDirectory"]);
    env.ok(&["mb", "set", "W3SVC/1/ROOT/images/AccessFlags", "AccessRead"]);
    let listing = env.ok(&["mb", "enum", "W3SVC/1/ROOT"]);
    assert!(listing.contains("DefaultDoc                      : (STRING) \"Default.htm"));
    assert!(listing.contains("[inherited from /LM/W3SVC]"));
    assert!(
        listing.ends_with("\n[/LM/W3SVC/1/ROOT/images]\n"),
        "{listing}"
    );
    let own = env.json(&["mb", "enum", "W3SVC/1/ROOT", "--own"]);
    assert!(own["properties"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["inherited"] == false));
    assert_eq!(own["key_type"], "IIsWebVirtualDir");
    let all = env.json(&["mb", "enum_all", "W3SVC/1"]);
    let paths: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/LM/W3SVC/1",
            "/LM/W3SVC/1/Filters",
            "/LM/W3SVC/1/ROOT",
            "/LM/W3SVC/1/ROOT/images"
        ]
    );

    env.ok(&["mb", "copy", "W3SVC/1", "W3SVC/2"]);
    env.ok(&["mb", "set", "W3SVC/2/ServerBindings", ":8082:"]);
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/2/ROOT/images/AccessFlags"])["value"],
        1
    );
    env.ok(&["mb", "rename", "W3SVC/2/ROOT/images", "pictures"]);
    env.ok(&[
        "mb",
        "move",
        "W3SVC/2/ROOT/pictures",
        "W3SVC/1/ROOT/pictures",
    ]);
    let found = env.json(&["mb", "find", "AccessFlags", "W3SVC"]);
    assert_eq!(
        found["paths"],
        serde_json::json!([
            "/LM/W3SVC/1/ROOT",
            "/LM/W3SVC/1/ROOT/images",
            "/LM/W3SVC/1/ROOT/pictures",
            "/LM/W3SVC/2/ROOT"
        ])
    );
    env.ok(&["mb", "delete", "W3SVC/1/ROOT/images/AccessFlags"]);
    assert!(env
        .fail(&["mb", "get", "W3SVC/1/ROOT/images/AccessFlags", "--own"])
        .contains("not set"));
    let out = env.ok(&["mb", "delete", "W3SVC/2"]);
    assert_eq!(out.trim(), "deleted /LM/W3SVC/2 (3 keys)");
    assert!(!env.metabase_text().contains("/LM/W3SVC/2"));
}

#[test]
fn secrets_are_masked_and_sealed() {
    let env = Env::new();
    env.ok(&["mb", "set", "W3SVC/AnonymousUserPass", "p@ss w0rd"]);
    assert!(env
        .ok(&["mb", "get", "W3SVC/AnonymousUserPass"])
        .contains("\"**********\""));
    assert!(!env.ok(&["mb", "enum", "W3SVC"]).contains("p@ss"));
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/1/AnonymousUserPass", "--show-secrets"])["value"],
        "p@ss w0rd"
    );
    assert!(!env.metabase_text().contains("p@ss"));
}

#[test]
fn custom_data_outside_the_schema() {
    let env = Env::new();
    env.ok(&[
        "mb",
        "set",
        "W3SVC/1/70001",
        "42",
        "--type",
        "DWORD",
        "--attributes",
        "INHERIT",
        "--name",
        "VendorCounter",
    ]);
    let j = env.json(&["mb", "get", "W3SVC/1/ROOT/70001"]);
    assert_eq!(
        (j["value"].as_u64(), j["inherited"].as_bool()),
        (Some(42), Some(true))
    );
    assert_eq!(j["name"], "VendorCounter");
    // Read back by the name it was given, here and below (inherited).
    for path in ["W3SVC/1/VendorCounter", "W3SVC/1/ROOT/vendorcounter"] {
        let j = env.json(&["mb", "get", path]);
        assert_eq!(
            (j["value"].as_u64(), j["id"].as_u64()),
            (Some(42), Some(70001)),
            "{path}: {j}"
        );
    }
    assert!(env.metabase_text().contains(
        "Name=\"VendorCounter\"\n\t\tID=\"70001\"\n\t\tValue=\"42\"\n\t\tType=\"DWORD\""
    ));
}

#[test]
fn schema_extension_from_the_command_line() {
    let env = Env::new();
    env.ok(&[
        "mb",
        "schema",
        "add-property",
        "IIsWebCustomer",
        "--id",
        "70000",
        "--type",
        "STRING",
        "--attributes",
        "INHERIT",
        "--class",
        "IIsWebServer",
    ]);
    env.ok(&["mb", "set", "W3SVC/1/IIsWebCustomer", "Contoso"]);
    assert!(env
        .fail(&["mb", "set", "W3SVC/1/ROOT/IIsWebCustomer", "x"])
        .contains("not allowed"));
    env.ok(&[
        "mb",
        "schema",
        "add-class",
        "MySiteSettings",
        "--under",
        "IIsWebServer",
        "--property",
        "IIsWebCustomer",
    ]);
    env.ok(&["mb", "create", "W3SVC/1/Mine", "MySiteSettings"]);
    env.ok(&["mb", "set", "W3SVC/1/Mine/IIsWebCustomer", "Fabrikam"]);
    assert!(env
        .fail(&["mb", "create", "W3SVC/1/ROOT/Mine", "MySiteSettings"])
        .contains("may not be created"));
    env.ok(&[
        "mb",
        "schema",
        "allow",
        "IIsWebVirtualDir",
        "IIsWebCustomer",
    ]);
    env.ok(&["mb", "set", "W3SVC/1/ROOT/IIsWebCustomer", "x"]);
    let class = env.json(&["mb", "schema", "class", "MySiteSettings"]);
    assert_eq!(
        class["properties"],
        serde_json::json!(["KeyType", "IIsWebCustomer"])
    );
    let prop = env.json(&["mb", "schema", "property", "AppPoolQueueLength"]);
    assert_eq!(
        (prop["id"].as_u64(), prop["range"].clone()),
        (Some(9017), serde_json::json!([10, 65535]))
    );
    let schema = std::fs::read_to_string(env.state().join("MBSchema.xml")).unwrap();
    assert!(
        schema.contains("InternalName=\"IIsWebCustomer\"")
            && schema.contains("InternalName=\"MySiteSettings\"")
    );
    assert!(env
        .fail(&[
            "mb",
            "schema",
            "add-property",
            "Dup",
            "--id",
            "70000",
            "--type",
            "DWORD"
        ])
        .contains("already"));
    let classes = env.ok(&["mb", "schema", "classes"]);
    assert!(
        classes.lines().any(|l| l == "MySiteSettings")
            && !classes.lines().any(|l| l == "IIS_Global")
    );
}

#[test]
fn backups_from_the_command_line() {
    let env = Env::new();
    env.ok(&["mb", "set", "W3SVC/1/ServerComment", "version one"]);
    let b = env.json(&["backup", "create", "daily"]);
    assert_eq!(
        (b["name"].as_str(), b["version"].as_u64()),
        (Some("daily"), Some(0))
    );
    env.ok(&["mb", "set", "W3SVC/1/ServerComment", "version two"]);
    env.ok(&["backup", "create", "daily", "--seal-password", "pw"]);
    assert!(env
        .fail(&["backup", "create", "daily", "--version", "1"])
        .contains("already exists"));
    let list = env.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["password_protected"], true);
    assert!(env.ok(&["backup", "list"]).contains("daily"));
    env.ok(&["backup", "restore", "daily", "--version", "0"]);
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/1/ServerComment"])["value"],
        "version one"
    );
    assert!(env
        .fail(&["backup", "restore", "daily"])
        .contains("password"));
    let pw = env.dir.path().join("pw.txt");
    std::fs::write(&pw, "pw\n").unwrap();
    env.ok(&[
        "backup",
        "restore",
        "daily",
        "--seal-password-file",
        pw.to_str().unwrap(),
    ]);
    // The logon password of --server is not taken for the seal.
    assert!(env
        .fail(&["backup", "restore", "daily", "--password", "pw"])
        .contains("--seal-password"));
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/1/ServerComment"])["value"],
        "version two"
    );
    env.ok(&["backup", "delete", "daily"]);
    assert_eq!(
        env.json(&["backup", "list", "daily"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn export_import_save_and_history() {
    let env = Env::new();
    env.ok(&["mb", "set", "W3SVC/1/ServerComment", "exported"]);
    let file = env.dir.path().join("site.xml");
    let f = file.to_str().unwrap();
    env.ok(&[
        "config",
        "export",
        "--path",
        "W3SVC/1",
        "--file",
        f,
        "--inherited",
    ]);
    env.ok(&[
        "config",
        "import",
        "--file",
        f,
        "--source-path",
        "W3SVC/1",
        "--dest-path",
        "W3SVC/3",
    ]);
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/3/ServerComment"])["value"],
        "exported"
    );
    assert!(env
        .fail(&[
            "config",
            "import",
            "--file",
            f,
            "--source-path",
            "W3SVC/1",
            "--dest-path",
            "W3SVC/AppPools/3"
        ])
        .contains("may not be created"));
    let saved = env.ok(&["config", "save"]);
    assert!(saved.contains("saved") && saved.contains("version"));
    let history = env.json(&["config", "history"]);
    let versions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["major"].as_u64().unwrap())
        .collect();
    assert!(versions.len() >= 4, "{versions:?}");
    // Version 2 is the first change (ServerComment = exported); 1 the default.
    env.ok(&["config", "restore-history", "1"]);
    assert_eq!(
        env.json(&["mb", "get", "W3SVC/1/ServerComment"])["value"],
        "Default Web Site"
    );
    assert!(!env.metabase_text().contains("/LM/W3SVC/3"));
    assert!(env
        .fail(&["config", "restore-history", "999"])
        .contains("no history version"));
}

/// A metabase file in IIS 6's own format, given with --metabase.
#[test]
fn an_iis_format_file_round_trips() {
    let env = Env::new();
    let file = env.dir.path().join("iis.xml");
    std::fs::write(&file, IIS_FIXTURE).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--metabase")
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["mb", "get", "W3SVC/1/ROOT/AccessFlags"]).contains("(AccessRead | AccessScript)"));
    assert!(run(&["mb", "enum", "W3SVC", "--own"]).contains("(SEALED)"));
    run(&["mb", "set", "W3SVC/1/ServerComment", "Edited"]);
    let written = std::fs::read_to_string(&file).unwrap();
    // Everything but the edit and IIS_Global's counters is as it was.
    let expected = IIS_FIXTURE
        .replace(
            "ServerComment=\"Default Web Site\"",
            "ServerComment=\"Edited\"",
        )
        .replace("ChangeNumber=\"769\"", "ChangeNumber=\"770\"")
        .replace(
            "HistoryMajorVersionNumber=\"70\"",
            "HistoryMajorVersionNumber=\"71\"",
        );
    assert_eq!(written, expected);
    assert!(env
        .dir
        .path()
        .join("History/MetaBase_0000000071_0000000000.xml")
        .exists());
}

const IIS_FIXTURE: &str = "\u{feff}<?xml version =\"1.0\"?>
<configuration xmlns=\"urn:microsoft-catalog:XML_Metabase_V64_0\">
<MBProperty>
<IIS_Global\tLocation =\".\"
\t\tChangeNumber=\"769\"
\t\tHistoryMajorVersionNumber=\"70\"
\t\tSessionKey=\"49634b6298000000\"
\t>
</IIS_Global>
<IIS_ROOT\tLocation =\"/\"
\t>
</IIS_ROOT>
<IIsComputer\tLocation =\"/LM\"
\t\tEnableEditWhileRunning=\"0\"
\t\tEnableHistory=\"1\"
\t\tMaxHistoryFiles=\"10\"
\t>
</IIsComputer>
<IIsWebService\tLocation =\"/LM/W3SVC\"
\t\tAnonymousUserPass=\"4963446270000000220000004000000031b103f7\"
\t\tAuthFlags=\"AuthAnonymous\"
\t\tDefaultDoc=\"Default.htm,index.htm\"
\t\tScriptMaps=\".asp,C:\\WINDOWS\\system32\\inetsrv\\asp.dll,5,GET,HEAD,POST,TRACE
\t\t\t.shtml,C:\\WINDOWS\\system32\\inetsrv\\ssinc.dll,5,GET,POST\"
\t>
\t<Custom
\t\tName=\"MD_ISM_ACCESS_CHECK\"
\t\tID=\"6269\"
\t\tValue=\"65535\"
\t\tType=\"DWORD\"
\t\tUserType=\"IIS_MD_UT_FILE\"
\t\tAttributes=\"NO_ATTRIBUTES\"
\t/>
</IIsWebService>
<IIsWebServer\tLocation =\"/LM/W3SVC/1\"
\t\tAppPoolId=\"DefaultAppPool\"
\t\tServerBindings=\":80:\"
\t\tServerComment=\"Default Web Site\"
\t\tServerSize=\"1\"
\t>
</IIsWebServer>
<IIsWebVirtualDir\tLocation =\"/LM/W3SVC/1/ROOT\"
\t\tAccessFlags=\"AccessRead | AccessScript\"
\t\tAppRoot=\"/LM/W3SVC/1/ROOT\"
\t\tPath=\"E:\\inetpub\\wwwroot\"
\t>
</IIsWebVirtualDir>
<IIsApplicationPools\tLocation =\"/LM/W3SVC/AppPools\"
\t\tAppPoolQueueLength=\"1000\"
\t\tLogEventOnRecycle=\"AppPoolRecycleTime | AppPoolRecycleMemory | AppPoolRecyclePrivateMemory\"
\t\tPingingEnabled=\"TRUE\"
\t>
</IIsApplicationPools>
<IIsApplicationPool\tLocation =\"/LM/W3SVC/AppPools/DefaultAppPool\"
\t>
</IIsApplicationPool>
</MBProperty>
</configuration>
";

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["start"],
        &["mb"],
        &["mb", "get"],
        &["mb", "set"],
        &["mb", "enum"],
        &["mb", "enum_all"],
        &["mb", "create"],
        &["mb", "delete"],
        &["mb", "copy"],
        &["mb", "rename"],
        &["mb", "move"],
        &["mb", "find"],
        &["mb", "schema"],
        &["mb", "schema", "classes"],
        &["mb", "schema", "class"],
        &["mb", "schema", "property"],
        &["mb", "schema", "add-property"],
        &["mb", "schema", "add-class"],
        &["mb", "schema", "allow"],
        &["backup"],
        &["backup", "create"],
        &["backup", "list"],
        &["backup", "restore"],
        &["backup", "delete"],
        &["config"],
        &["config", "save"],
        &["config", "export"],
        &["config", "import"],
        &["config", "history"],
        &["config", "restore-history"],
    ];
    for cmd in commands {
        let out = Command::new(BIN).args(*cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd:?} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: inetsrv"), "{cmd:?}");
        // A description line comes before the usage line.
        let first = text.lines().next().unwrap_or("");
        assert!(!first.starts_with("Usage"), "{cmd:?} has no description");
    }
    let bad = Command::new(BIN)
        .args(["mb", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unrecognized subcommand"));
}

#[test]
fn a_state_dir_from_the_environment() {
    let env = Env::new();
    let out = Command::new(BIN)
        .args(["mb", "get", "W3SVC/1/ServerComment"])
        .env("INETSRV_HOME", env.dir.path().join("from-env"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(env.dir.path().join("from-env/MetaBase.xml").exists());
}
