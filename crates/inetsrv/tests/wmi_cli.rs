//! `inetsrv query` and `inetsrv wmi` from the command line: offline on a
//! state directory, and on a running server through its admin socket,
//! where a change made with `inetsrv site`/`mb` shows at once.

mod common;

use common::web::Web;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
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
    let err = web.cli_err(&["wmi", "get", "IIsWebServerSetting.Name=\"W3SVC\""]);
    assert!(err.contains("WBEM_E_NOT_FOUND"), "{err}");

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
