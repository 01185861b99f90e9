//! The provider over a real metabase (a fresh state directory's default
//! configuration plus what each test adds): classes generated from the
//! schema, instances, GetObject, and WQL with every operator.

use metabase::{LockMode, MbPath, MetabaseFiles, PropertyDef, SchemaType};
use wmi::{ClassModel, Provider, WbemStatus, WmiValue};

fn files() -> (tempfile::TempDir, MetabaseFiles) {
    let dir = tempfile::tempdir().unwrap();
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::WhileWriting).unwrap();
    (dir, files)
}

fn p(text: &str) -> MbPath {
    MbPath::parse_relaxed(text).unwrap()
}

fn set(files: &MetabaseFiles, path: &str, name: &str, args: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    files
        .metabase()
        .write(|t| t.set_text(&p(path), name, &args))
        .unwrap();
}

fn create(files: &MetabaseFiles, path: &str, key_type: &str) {
    files
        .metabase()
        .write(|t| t.create_key(&p(path), key_type))
        .unwrap();
}

/// Names of what a query returns, sorted.
fn names(files: &MetabaseFiles, wql: &str) -> Vec<String> {
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let provider = Provider::new(&model, &snapshot);
    let result = provider.query(wql).unwrap_or_else(|e| panic!("{wql}: {e}"));
    let mut out: Vec<String> = result
        .instances
        .iter()
        .map(|i| match i.get("Name") {
            Some(WmiValue::String(s)) => format!("{}:{s}", i.class),
            _ => format!("{}:?", i.class),
        })
        .collect();
    out.sort();
    out
}

fn error(files: &MetabaseFiles, wql: &str) -> wmi::WmiError {
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    Provider::new(&model, &snapshot)
        .query(wql)
        .map(|r| r.instances.len())
        .unwrap_err()
}

#[test]
fn classes_come_from_the_schema() {
    let (_dir, files) = files();
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let server = model.class("IIsWebServer").unwrap();
    assert_eq!(server.superclass.as_deref(), Some("IIsObject"));
    assert!(model.is_a("IIsWebServer", "CIM_ManagedSystemElement"));
    assert!(model.is_a("iiswebserversetting", "CIM_Setting"));
    assert!(!model.is_a("IIsWebServerSetting", "CIM_ManagedSystemElement"));
    // Element classes carry the read-only state, settings the rest.
    assert!(server.property("ServerState").unwrap().read_only);
    assert!(server.property("ServerComment").is_none());
    let setting = model.class("IIsWebServerSetting").unwrap();
    assert_eq!(setting.key_property().unwrap().name, "Name");
    assert_eq!(
        setting.property("ServerBindings").unwrap().ty.to_string(),
        "object:ServerBinding[]"
    );
    assert_eq!(
        setting.property("ServerAutoStart").unwrap().ty.to_string(),
        "boolean"
    );
    assert_eq!(
        setting.property("MaxConnections").unwrap().ty.to_string(),
        "uint32"
    );
    assert!(setting.property("ServerState").is_none());
    // A flag of a bit field is a boolean of its own.
    let vdir = model.class("IIsWebVirtualDirSetting").unwrap();
    assert_eq!(
        vdir.property("AccessWrite").unwrap().ty.to_string(),
        "boolean"
    );
    assert_eq!(
        vdir.property("AccessFlags").unwrap().ty.to_string(),
        "uint32"
    );
    assert!(model.class("IIsApplicationPoolSetting").is_some());
    assert!(model.class("ServerBinding").is_some());
    // The IIS 5.1 names of the seed's examples.
    assert_eq!(
        model
            .class("MicrosoftIIS_WebVirtualDirSetting")
            .unwrap()
            .name,
        "IIsWebVirtualDirSetting"
    );
}

#[test]
fn the_seeds_vdir_listing_example() {
    // Set VDirSettings = GetObject("winmgmts:root\MsIIs").ExecQuery(
    //   "select * from MicrosoftIIS_WebVirtualDirSetting where AccessWrite != TRUE")
    let (_dir, files) = files();
    create(&files, "W3SVC/1/ROOT/upload", "IIsWebVirtualDir");
    set(&files, "W3SVC/1/ROOT/upload", "Path", &["/srv/upload"]);
    set(
        &files,
        "W3SVC/1/ROOT/upload",
        "AccessFlags",
        &["AccessRead | AccessWrite"],
    );
    create(&files, "W3SVC/1/ROOT/docs", "IIsWebVirtualDir");
    set(&files, "W3SVC/1/ROOT/docs", "Path", &["/srv/docs"]);
    assert_eq!(
        names(
            &files,
            "select * from MicrosoftIIS_WebVirtualDirSetting where AccessWrite != TRUE"
        ),
        vec![
            "IIsWebVirtualDirSetting:W3SVC/1/ROOT",
            "IIsWebVirtualDirSetting:W3SVC/1/ROOT/docs"
        ]
    );
    assert_eq!(
        names(
            &files,
            "select Name, AccessWrite from IIsWebVirtualDirSetting where AccessWrite = TRUE"
        ),
        vec!["IIsWebVirtualDirSetting:W3SVC/1/ROOT/upload"]
    );
}

#[test]
fn every_operator() {
    let (_dir, files) = files();
    for (id, comment, size) in [("2", "Shop", "0"), ("3", "Intranet test", "2")] {
        create(&files, &format!("W3SVC/{id}"), "IIsWebServer");
        set(&files, &format!("W3SVC/{id}"), "ServerComment", &[comment]);
        set(&files, &format!("W3SVC/{id}"), "ServerSize", &[size]);
        set(
            &files,
            &format!("W3SVC/{id}"),
            "ServerBindings",
            &[&format!(":808{id}:")],
        );
    }
    set(&files, "W3SVC/3", "ServerAutoStart", &["FALSE"]);
    set(&files, "W3SVC/1", "ServerSize", &["1"]);
    let q = |w: &str| {
        names(
            &files,
            &format!("SELECT Name FROM IIsWebServerSetting WHERE {w}"),
        )
        .into_iter()
        .map(|n| n.rsplit('/').next().unwrap().to_string())
        .collect::<Vec<_>>()
    };
    assert_eq!(q("ServerComment = 'shop'"), ["2"], "strings ignore case");
    assert_eq!(q("ServerComment <> 'Shop'"), ["1", "3"]);
    assert_eq!(q("ServerComment != \"Shop\""), ["1", "3"]);
    assert_eq!(q("ServerSize < 1"), ["2"]);
    assert_eq!(q("ServerSize > 1"), ["3"]);
    assert_eq!(q("ServerSize <= 1"), ["1", "2"]);
    assert_eq!(q("ServerSize >= 1"), ["1", "3"]);
    assert_eq!(q("1 < ServerSize"), ["3"], "a constant on the left");
    assert_eq!(q("ServerComment LIKE '%test%'"), ["3"]);
    assert_eq!(q("ServerComment LIKE '[^i]%'"), ["1", "2"]);
    assert_eq!(q("ServerAutoStart = FALSE"), ["3"]);
    assert_eq!(q("ServerAutoStart = TRUE AND ServerSize = 0"), ["2"]);
    assert_eq!(q("ServerSize = 0 OR ServerSize = 2"), ["2", "3"]);
    assert_eq!(q("NOT ServerSize = 1"), ["2", "3"]);
    assert_eq!(
        q("NOT (ServerSize = 1 OR ServerComment = 'Shop') AND ServerSize >= 0"),
        ["3"]
    );
    assert_eq!(q("ServerComment IS NOT NULL"), ["1", "2", "3"]);
    assert!(q("ServerComment IS NULL").is_empty());
    assert_eq!(
        q("__THIS ISA 'IIsWebServerSetting' AND ServerSize = 1"),
        ["1"]
    );
    assert_eq!(
        q("ServerBindings ISA 'ServerBinding' AND ServerSize = 2"),
        ["3"]
    );
    assert_eq!(
        q("__CLASS = 'IIsWebServerSetting' AND ServerSize = 0"),
        ["2"]
    );
    assert_eq!(
        q("ServerSize = '2'"),
        ["3"],
        "a numeric string compares as a number"
    );
}

#[test]
fn base_classes_return_their_subclasses_instances() {
    let (_dir, files) = files();
    let settings = names(&files, "select * from IIsSetting where Name = 'W3SVC/1'");
    assert_eq!(settings, vec!["IIsWebServerSetting:W3SVC/1"]);
    let all = names(&files, "select * from CIM_Setting");
    assert!(
        all.contains(&"IIsWebServiceSetting:W3SVC".to_string()),
        "{all:?}"
    );
    assert!(all.contains(&"IIsApplicationPoolSetting:W3SVC/AppPools/DefaultAppPool".to_string()));
    assert!(all.contains(&"IIsComputerSetting:LM".to_string()));
    let elements = names(&files, "select * from IIsObject where Name = 'W3SVC/1'");
    assert_eq!(elements, vec!["IIsWebServer:W3SVC/1"]);
}

#[test]
fn get_object_and_the_susan_example() {
    let (_dir, files) = files();
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let provider = Provider::new(&model, &snapshot);
    let site = provider
        .get_object(r#"IIsWebServerSetting.Name="W3SVC/1""#)
        .unwrap();
    assert_eq!(site.relpath, r#"IIsWebServerSetting.Name="W3SVC/1""#);
    assert_eq!(
        site.get("ServerComment"),
        Some(&WmiValue::String("Default Web Site".into()))
    );
    match site.get("ServerBindings") {
        Some(WmiValue::Array(items)) => match &items[0] {
            WmiValue::Object(o) => {
                assert_eq!(o.class, "ServerBinding");
                assert_eq!(o.get("Port"), Some(&WmiValue::String("8080".into())));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // Inherited values are reported where they apply.
    let root = provider
        .get_object("IIsWebVirtualDirSetting='W3SVC/1/ROOT'")
        .unwrap();
    assert_eq!(root.get("AccessRead"), Some(&WmiValue::Bool(true)));
    assert!(matches!(root.get("DefaultDoc"), Some(WmiValue::String(s)) if !s.is_empty()));
    // /LM/W3SVC is not an IIsWebServer: no IIsWebServerSetting there.
    let e = provider
        .get_object(r#"IIsWebServerSetting.Name="W3SVC""#)
        .unwrap_err();
    assert_eq!(e.status, WbemStatus::NotFound);
    assert!(e.message.contains("IIsWebService"), "{e}");
    let e = provider
        .get_object("IIsWebServerSetting.Name='W3SVC/99'")
        .unwrap_err();
    assert_eq!(e.status, WbemStatus::NotFound);
    let e = provider.get_object("NoSuchClass.Name='x'").unwrap_err();
    assert_eq!(e.status, WbemStatus::InvalidClass);
    let e = provider
        .get_object("IIsWebServerSetting.Name=W3SVC/1")
        .unwrap_err();
    assert_eq!(e.status, WbemStatus::InvalidObjectPath);
}

#[test]
fn schema_extensions_made_in_the_metabase_are_classes_and_properties() {
    let (_dir, files) = files();
    files
        .metabase()
        .write(|t| {
            t.extend_schema(|s| {
                let mut def = PropertyDef::custom(
                    70000,
                    "IIsWebCustomer",
                    metabase::DataType::String,
                    metabase::UserType::SERVER,
                    metabase::Attributes::INHERIT,
                );
                def.schema_type = SchemaType::String;
                s.add_property(def, &["IIsWebServer".to_string()])?;
                s.add_class(
                    "MySiteSettings",
                    vec![],
                    &["IIsWebServer".to_string()],
                    &["IIsWebCustomer".to_string()],
                )
            })
        })
        .unwrap();
    set(&files, "W3SVC/1", "IIsWebCustomer", &["Contoso"]);
    create(&files, "W3SVC/1/Mine", "MySiteSettings");
    assert_eq!(
        names(
            &files,
            "select Name from IIsWebServerSetting where IIsWebCustomer = 'Contoso'"
        ),
        vec!["IIsWebServerSetting:W3SVC/1"]
    );
    assert_eq!(
        names(&files, "select * from MySiteSettingsSetting"),
        vec!["MySiteSettingsSetting:W3SVC/1/Mine"]
    );
    // Inherited from the site, as the metabase inherits it.
    assert_eq!(
        names(
            &files,
            "select * from MySiteSettingsSetting where IIsWebCustomer = 'contoso'"
        ),
        vec!["MySiteSettingsSetting:W3SVC/1/Mine"]
    );
}

#[test]
fn query_errors_name_the_problem_and_its_column() {
    let (_dir, files) = files();
    let e = error(&files, "select * from IIsNoSuchThing");
    assert_eq!((e.status, e.position), (WbemStatus::InvalidClass, Some(15)));
    let e = error(&files, "select Name, Bogus from IIsWebServerSetting");
    assert_eq!((e.status, e.position), (WbemStatus::InvalidQuery, Some(14)));
    assert!(e.message.contains("Bogus"), "{e}");
    let e = error(&files, "select * from IIsWebServerSetting where Nope = 1");
    assert_eq!((e.status, e.position), (WbemStatus::InvalidQuery, Some(41)));
    let e = error(
        &files,
        "select * from IIsWebServerSetting where ServerBindings = ':80:'",
    );
    assert_eq!(e.status, WbemStatus::InvalidQuery);
    assert!(e.message.contains("cannot be compared"), "{e}");
    let e = error(
        &files,
        "select * from IIsWebServerSetting where __THIS ISA 'Nope'",
    );
    assert_eq!((e.status, e.position), (WbemStatus::InvalidClass, Some(52)));
    let e = error(
        &files,
        "select * from IIsWebServerSetting where ServerSize = 'big'",
    );
    assert_eq!(e.status, WbemStatus::InvalidQuery);
    let e = error(
        &files,
        "associators of {IIsWebServer.Name='W3SVC/1'} where Bogus = X",
    );
    assert_eq!((e.status, e.position), (WbemStatus::InvalidQuery, Some(52)));
    let e = error(
        &files,
        "references of {IIsWebServer.Name='W3SVC/1'} where ResultRole = Element",
    );
    assert_eq!(e.status, WbemStatus::InvalidQuery);
    let e = error(
        &files,
        "associators of {IIsWebServer.Name='W3SVC/1'} where ResultClass = Nope",
    );
    assert_eq!((e.status, e.position), (WbemStatus::InvalidClass, Some(66)));
    let e = error(&files, "associators of {IIsWebServer.Name='W3SVC/1'");
    assert_eq!((e.status, e.position), (WbemStatus::InvalidQuery, Some(16)));
}

#[test]
fn puts_and_deletes_are_validated_like_metabase_writes() {
    let (_dir, files) = files();
    let model = ClassModel::from_schema(files.metabase().snapshot().schema());
    let put = |class: &str, props: &[(&str, &str)]| {
        let props: Vec<(String, Vec<String>)> = props
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect();
        wmi::write::put_instance(files.metabase(), &model, class, &props)
    };
    let before = files.metabase().snapshot().change_number();
    // A web server may not live under a virtual directory.
    let e = put("IIsWebServer", &[("Name", "W3SVC/1/ROOT/site")]).unwrap_err();
    assert_eq!(e.status, WbemStatus::InvalidParameter, "{e}");
    let e = put("IIsWebServerSetting", &[("ServerComment", "x")]).unwrap_err();
    assert_eq!(e.status, WbemStatus::InvalidParameter);
    assert!(e.message.contains("Name"), "{e}");
    let e = put("IIsWebServerSetting", &[("Name", "W3SVC/1"), ("Nope", "1")]).unwrap_err();
    assert_eq!(e.status, WbemStatus::InvalidProperty);
    let e = put("CIM_Setting", &[("Name", "W3SVC/1")]).unwrap_err();
    assert_eq!(e.status, WbemStatus::InvalidOperation);
    // A refused value leaves the key unmade too: one transaction.
    let e = put(
        "IIsWebServerSetting",
        &[("Name", "W3SVC/30"), ("ServerAutoStart", "maybe")],
    )
    .unwrap_err();
    assert_eq!(e.status, WbemStatus::TypeMismatch, "{e}");
    assert!(files.metabase().snapshot().find(&p("W3SVC/30")).is_none());
    assert_eq!(
        files.metabase().snapshot().change_number(),
        before,
        "nothing changed"
    );
    // A good one: the key, its flags as booleans.
    put(
        "IIsWebVirtualDirSetting",
        &[
            ("Name", "W3SVC/1/ROOT/new"),
            ("Path", "/srv/new"),
            ("AccessWrite", "TRUE"),
        ],
    )
    .unwrap();
    assert_eq!(
        names(
            &files,
            "select Name from IIsWebVirtualDirSetting where AccessWrite = TRUE"
        ),
        vec!["IIsWebVirtualDirSetting:W3SVC/1/ROOT/new"]
    );
    wmi::write::delete_instance(
        files.metabase(),
        &model,
        "IIsWebVirtualDir='W3SVC/1/ROOT/new'",
    )
    .unwrap();
    assert!(files
        .metabase()
        .snapshot()
        .find(&p("W3SVC/1/ROOT/new"))
        .is_none());
    let e = wmi::write::delete_instance(files.metabase(), &model, "IIsComputer='LM'").unwrap_err();
    assert_eq!(e.status, WbemStatus::InvalidOperation);
}

/// Relative paths a query returns, sorted.
fn paths(files: &MetabaseFiles, wql: &str) -> Vec<String> {
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let mut out: Vec<String> = Provider::new(&model, &snapshot)
        .query(wql)
        .unwrap_or_else(|e| panic!("{wql}: {e}"))
        .instances
        .into_iter()
        .map(|i| i.relpath)
        .collect();
    out.sort();
    out
}

#[test]
fn associations_associators_and_references() {
    let (_dir, files) = files();
    create(&files, "W3SVC/1/ROOT/docs", "IIsWebVirtualDir");
    create(&files, "W3SVC/1/ROOT/docs/img", "IIsWebDirectory");
    let site = "{IIsWebServer.Name=\"W3SVC/1\"}";
    // Association classes come from the schema: a key's element and
    // setting, and containment.
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    assert!(model.is_a("IIsWebServer_IIsWebServerSetting", "CIM_ElementSetting"));
    assert!(model.is_a("IIsWebService_IIsWebServer", "CIM_Component"));
    assert!(model.is_a("IIsWebVirtualDir_IIsWebDirectory", "CIM_Component"));
    assert!(model.is_a("IIsApplicationPools_IIsApplicationPool", "CIM_Component"));
    drop(snapshot);
    assert_eq!(
        paths(&files, &format!("ASSOCIATORS OF {site}")),
        vec![
            "IIsFilters.Name=\"W3SVC/1/Filters\"",
            "IIsWebServerSetting.Name=\"W3SVC/1\"",
            "IIsWebService.Name=\"W3SVC\"",
            "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT\"",
        ]
    );
    assert_eq!(
        paths(
            &files,
            &format!("associators of {site} where ResultClass = CIM_Setting")
        ),
        vec!["IIsWebServerSetting.Name=\"W3SVC/1\""]
    );
    assert_eq!(
        paths(
            &files,
            &format!(
                "associators of {site} where AssocClass = CIM_Component Role = GroupComponent"
            )
        ),
        vec![
            "IIsFilters.Name=\"W3SVC/1/Filters\"",
            "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT\""
        ]
    );
    assert_eq!(
        paths(
            &files,
            &format!("associators of {site} where ResultRole = GroupComponent")
        ),
        vec!["IIsWebService.Name=\"W3SVC\""]
    );
    assert_eq!(
        paths(&files, "associators of {IIsWebVirtualDir='W3SVC/1/ROOT/docs'} where ResultClass = IIsWebDirectory"),
        vec!["IIsWebDirectory.Name=\"W3SVC/1/ROOT/docs/img\""]
    );
    // From a setting, its element.
    assert_eq!(
        paths(&files, "ASSOCIATORS OF {IIsWebServerSetting='W3SVC/1'}"),
        vec!["IIsWebServer.Name=\"W3SVC/1\""]
    );
    assert_eq!(
        paths(&files, &format!("references of {site} where ResultClass = CIM_ElementSetting")),
        vec!["IIsWebServer_IIsWebServerSetting.Element=\"IIsWebServer.Name=\\\"W3SVC/1\\\"\",Setting=\"IIsWebServerSetting.Name=\\\"W3SVC/1\\\"\""]
    );
    assert_eq!(
        paths(
            &files,
            &format!("references of {site} where Role = PartComponent")
        )
        .len(),
        1
    );
    assert_eq!(paths(&files, &format!("references of {site}")).len(), 4);
    // ClassDefsOnly: the classes; KeysOnly: only the keys.
    assert_eq!(
        paths(
            &files,
            &format!("associators of {site} where ClassDefsOnly")
        ),
        vec![
            "IIsFilters",
            "IIsWebServerSetting",
            "IIsWebService",
            "IIsWebVirtualDir"
        ]
    );
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let keys = Provider::new(&model, &snapshot)
        .query(&format!(
            "associators of {site} where ResultClass = IIsWebVirtualDir KeysOnly"
        ))
        .unwrap();
    assert_eq!(keys.instances[0].properties.len(), 1);
    assert_eq!(keys.instances[0].properties[0].0, "Name");
    // Every association's path resolves back to it (GetObject).
    for path in paths(&files, &format!("references of {site}")) {
        let got = Provider::new(&model, &snapshot).get_object(&path).unwrap();
        assert_eq!(got.relpath, path);
    }
    let wrong = "IIsWebServer_IIsWebVirtualDir.GroupComponent=\"IIsWebServer='W3SVC/1'\",PartComponent=\"IIsWebVirtualDir='W3SVC/1/ROOT/docs'\"";
    assert_eq!(
        Provider::new(&model, &snapshot)
            .get_object(wrong)
            .unwrap_err()
            .status,
        WbemStatus::NotFound,
        "docs is below ROOT, not directly below the site"
    );
    // Association instances are enumerated and queried like any other.
    assert_eq!(
        paths(&files, "select * from IIsWebVirtualDir_IIsWebDirectory").len(),
        1
    );
    assert_eq!(
        names_of_parts(&files, "select PartComponent from CIM_Component where GroupComponent = 'IIsWebServer.Name=\"W3SVC/1\"'"),
        vec!["IIsFilters.Name=\"W3SVC/1/Filters\"", "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT\""]
    );
}

fn names_of_parts(files: &MetabaseFiles, wql: &str) -> Vec<String> {
    let snapshot = files.metabase().snapshot();
    let model = ClassModel::from_schema(snapshot.schema());
    let mut out: Vec<String> = Provider::new(&model, &snapshot)
        .query(wql)
        .unwrap()
        .instances
        .iter()
        .filter_map(|i| match i.get("PartComponent") {
            Some(WmiValue::String(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[test]
fn events_between_two_looks_at_the_configuration() {
    use wmi::events::EventQuery;
    let (_dir, files) = files();
    let model = ClassModel::from_schema(files.metabase().snapshot().schema());
    let before = files.metabase().snapshot();
    // An inherited change: DefaultDoc set on the service reaches ROOT.
    set(&files, "W3SVC", "DefaultDoc", &["home.htm"]);
    create(&files, "W3SVC/1/ROOT/new", "IIsWebVirtualDir");
    files
        .metabase()
        .write(|t| t.delete_key(&p("W3SVC/1/Filters")))
        .unwrap();
    let after = files.metabase().snapshot();
    let q = EventQuery::parse(
        &model,
        "SELECT * FROM __InstanceModificationEvent WITHIN 1 WHERE TargetInstance ISA 'IIsWebVirtualDirSetting' AND TargetInstance.DefaultDoc = 'home.htm' AND PreviousInstance.DefaultDoc <> 'home.htm'",
    )
    .unwrap();
    let events = q.events(&model, &before, &after).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].target.relpath,
        "IIsWebVirtualDirSetting.Name=\"W3SVC/1/ROOT\""
    );
    assert!(events[0]
        .changes()
        .iter()
        .any(|(name, _, after)| *name == "DefaultDoc" && after.to_string() == "home.htm"));
    let all = EventQuery::parse(&model, "select * from __InstanceOperationEvent").unwrap();
    let kinds: Vec<(&str, String)> = all
        .events(&model, &before, &after)
        .unwrap()
        .into_iter()
        .map(|e| (e.class, e.target.relpath))
        .collect();
    assert!(kinds.contains(&(
        "__InstanceCreationEvent",
        "IIsWebVirtualDir.Name=\"W3SVC/1/ROOT/new\"".into()
    )));
    assert!(kinds.contains(&(
        "__InstanceDeletionEvent",
        "IIsFiltersSetting.Name=\"W3SVC/1/Filters\"".into()
    )));
    assert!(kinds.contains(&(
        "__InstanceModificationEvent",
        "IIsWebServiceSetting.Name=\"W3SVC\"".into()
    )));
    // Only what a change notification names, and what lies below it.
    let scoped = all
        .events_within(&model, &before, &after, Some(&[p("W3SVC/1/ROOT/new")]))
        .unwrap();
    assert!(
        scoped
            .iter()
            .all(|e| e.target.relpath.contains("W3SVC/1/ROOT/new")),
        "{scoped:?}"
    );
    assert_eq!(scoped.len(), 2, "element and setting");
    // Errors.
    for (text, status) in [
        (
            "select * from IIsWebServerSetting",
            WbemStatus::InvalidClass,
        ),
        (
            "select * from __InstanceCreationEvent where PreviousInstance.Name = 'x'",
            WbemStatus::InvalidQuery,
        ),
        (
            "select * from __InstanceCreationEvent where TargetInstance ISA 'Nope'",
            WbemStatus::InvalidClass,
        ),
        (
            "select * from __InstanceCreationEvent within 0",
            WbemStatus::InvalidQuery,
        ),
    ] {
        let e = EventQuery::parse(&model, text).err().unwrap();
        assert_eq!(e.status, status, "{text}: {e}");
    }
}
