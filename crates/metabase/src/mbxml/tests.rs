use super::*;
use crate::tree::{GetMode, Tree};

const FIXTURE: &str = include_str!("../../tests/fixtures/small-metabase.xml");

fn parse(text: &str) -> Result<Document> {
    parse_metabase(text, "MetaBase.xml", &Schema::standard(), None)
}

fn tree(doc: &Document) -> Tree {
    Tree {
        root: doc.root.clone(),
        schema: Schema::standard(),
    }
}

fn p(s: &str) -> MbPath {
    MbPath::parse(s).unwrap()
}

fn write(doc: &Document, key: Option<&SecretKey>) -> String {
    write_metabase(doc, &Schema::standard(), key, WriteScope::default()).unwrap()
}

#[test]
fn reads_the_iis_format() {
    let doc = parse(FIXTURE).unwrap();
    assert_eq!(doc.global.change_number, 42);
    assert_eq!(doc.global.history_major, 7);
    assert_eq!(
        doc.global.extra,
        vec![("SessionKey".to_string(), "0011aabb".to_string())]
    );
    let t = tree(&doc);
    assert_eq!(t.key(&p("/LM/W3SVC/1")).unwrap().key_type(), "IIsWebServer");
    let get = |path: &str, id: u32| t.get(&p(path), id, GetMode::Own).unwrap().value;
    assert_eq!(
        get("/LM/W3SVC/1", 1023),
        Value::MultiSz(vec![":80:".into(), "127.0.0.1:8080:www.example.com".into()])
    );
    assert_eq!(get("/LM/W3SVC/1", 1017), Value::Dword(1));
    assert_eq!(get("/LM/W3SVC/1/ROOT", 6016), Value::Dword(0x201));
    assert_eq!(get("/LM/W3SVC/1/ROOT/images", 6016), Value::Dword(1));
    assert_eq!(get("/LM/W3SVC", 6000), Value::Dword(5)); // AuthFlags
    assert_eq!(
        get("/LM/W3SVC", 1015),
        Value::String("Tom & Jerry's \"web\" service".into())
    );
    assert_eq!(
        get("/LM/W3SVC", 6004),
        Value::MultiSz(vec![
            "X-Powered-By: inetsrv".into(),
            "X-Frame-Options: DENY".into()
        ])
    );
    // Custom data outside the schema, with its own name and attributes.
    let custom = t.key(&p("/LM/W3SVC")).unwrap().property(70001).unwrap();
    assert_eq!(custom.custom_name.as_deref(), Some("VendorCounter"));
    assert_eq!(custom.user_type, UserType::FILE);
    assert!(custom.is_inheritable());
    let r = t
        .get(&p("/LM/W3SVC/1/ROOT"), 70001, GetMode::Inherited)
        .unwrap();
    assert_eq!(
        (r.value, r.name.as_str()),
        (Value::Dword(65535), "VendorCounter")
    );
    // Unknown key type and attribute are kept, with warnings.
    assert_eq!(t.key(&p("/LM/Vendor")).unwrap().key_type(), "VendorWidget");
    assert!(doc.warnings.iter().any(|w| w.contains("FutureSetting")));
    assert!(doc.warnings.iter().any(|w| w.contains("VendorWidget")));
}

#[test]
fn round_trip_keeps_everything() {
    let doc = parse(FIXTURE).unwrap();
    let written = write(&doc, None);
    assert!(written.starts_with('\u{feff}'));
    assert!(written.contains(&format!("<configuration xmlns=\"{METABASE_NAMESPACE}\">")));
    // What inetsrv does not model is written back unchanged.
    assert!(written.contains("FutureSetting=\"from a later version\""));
    assert!(written.contains("<Extension Kind=\"vendor\"><Inner Value=\"1\"/></Extension>"));
    assert!(written.contains("<Annotations Note=\"kept verbatim\"/>"));
    assert!(written.contains("SessionKey=\"0011aabb\""));
    assert!(written.contains("Colour=\"blue\""));
    assert!(written.contains("Name=\"VendorList\""));
    // IIS's own spellings.
    assert!(written.contains("AccessFlags=\"AccessRead | AccessScript\""));
    assert!(written.contains("ServerAutoStart=\"TRUE\""));
    assert!(written.contains("ServerBindings=\":80:\n\t\t\t127.0.0.1:8080:www.example.com\""));
    assert!(written.contains("<IIsWebServer\tLocation =\"/LM/W3SVC/1\"\n"));
    let again = parse(&written).unwrap();
    assert_eq!(
        write(&again, None),
        written,
        "a second round trip changes nothing"
    );
    let (a, b) = (tree(&doc), tree(&again));
    let mut paths = Vec::new();
    a.walk(&MbPath::root(), |path, _| paths.push(path.clone()))
        .unwrap();
    assert_eq!(paths.len(), 9);
    for path in paths {
        let ka = a.key(&path).unwrap();
        let kb = b.key(&path).unwrap();
        assert_eq!(ka.props, kb.props, "{path}");
        assert_eq!(ka.unknown_attrs, kb.unknown_attrs, "{path}");
        assert_eq!(ka.raw_children, kb.raw_children, "{path}");
    }
}

#[test]
fn attributes_sorted_as_iis_sorts_them() {
    let doc = parse(FIXTURE).unwrap();
    let written = write(&doc, None);
    let service = &written[written.find("<IIsWebService").unwrap()..];
    let order = [
        "AuthFlags",
        "DefaultDoc",
        "DirBrowseFlags",
        "FutureSetting",
        "HttpCustomHeaders",
        "ServerComment",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|n| service.find(&format!("\t\t{n}=")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

#[test]
fn volatile_data_is_not_written() {
    let doc = parse(FIXTURE).unwrap();
    let mut root = (*doc.root).clone();
    let site = slot(&mut root, &p("/LM/W3SVC/1"));
    let schema = Schema::standard();
    site.props
        .insert(1016, Property::from_schema(&schema, 1016, Value::Dword(2))); // ServerState
    let doc = Document::new(Arc::new(root), doc.global.clone());
    let written = write(&doc, None);
    assert!(!written.contains("ServerState"));
    let all = write_metabase(
        &doc,
        &schema,
        None,
        WriteScope {
            include_volatile: true,
            ..WriteScope::default()
        },
    )
    .unwrap();
    assert!(all.contains("ServerState=\"2\""));
}

#[test]
fn data_differing_from_the_schema_goes_to_custom_elements() {
    let doc = parse(FIXTURE).unwrap();
    let mut root = (*doc.root).clone();
    let site = slot(&mut root, &p("/LM/W3SVC/1"));
    // ServerComment (schema: INHERIT) stored without INHERIT.
    site.props.insert(
        1015,
        Property {
            id: 1015,
            value: Value::String("local only".into()),
            attributes: Attributes::NO_ATTRIBUTES,
            user_type: UserType::SERVER,
            custom_name: None,
        },
    );
    let doc = Document::new(Arc::new(root), doc.global.clone());
    let written = write(&doc, None);
    assert!(written.contains("Name=\"ServerComment\"\n\t\tID=\"1015\"\n\t\tValue=\"local only\""));
    let again = parse(&written).unwrap();
    let t = tree(&again);
    let prop = t.key(&p("/LM/W3SVC/1")).unwrap().property(1015).unwrap();
    assert_eq!(prop.attributes, Attributes::NO_ATTRIBUTES);
}

#[test]
fn multisz_edge_cases() {
    let doc = parse(FIXTURE).unwrap();
    let mut root = (*doc.root).clone();
    let site = slot(&mut root, &p("/LM/W3SVC/1"));
    let schema = Schema::standard();
    let tricky = vec![
        " leading blank".to_string(),
        "tab\tinside".to_string(),
        "amp & <lt>".to_string(),
        String::new(),
        "last".to_string(),
    ];
    site.props.insert(
        6004,
        Property::from_schema(&schema, 6004, Value::MultiSz(tricky.clone())),
    );
    site.props.insert(
        1023,
        Property::from_schema(&schema, 1023, Value::MultiSz(vec![])),
    );
    let doc = Document::new(Arc::new(root), doc.global.clone());
    let again = parse(&write(&doc, None)).unwrap();
    let t = tree(&again);
    let key = t.key(&p("/LM/W3SVC/1")).unwrap();
    assert_eq!(key.property(6004).unwrap().value, Value::MultiSz(tricky));
    assert_eq!(key.property(1023).unwrap().value, Value::MultiSz(vec![]));
}

#[test]
fn secure_data_is_sealed_at_rest() {
    let key = SecretKey::generate().unwrap();
    let with_password = FIXTURE.replace(
        "\t\tServerAutoStart=\"TRUE\"",
        "\t\tAnonymousUserPass=\"typed in clear\"\n\t\tServerAutoStart=\"TRUE\"",
    );
    let doc = parse(&with_password).unwrap();
    let t = tree(&doc);
    assert_eq!(
        t.get(&p("/LM/W3SVC/1"), 6021, GetMode::Own).unwrap().value,
        Value::String("typed in clear".into())
    );
    // No key, no save.
    let no_key = write_metabase(&doc, &Schema::standard(), None, WriteScope::default());
    assert!(matches!(no_key, Err(Error::Crypto(_))));
    let written = write(&doc, Some(&key));
    assert!(!written.contains("typed in clear"));
    // The right key reads it back.
    let back = parse_metabase(&written, "m", &Schema::standard(), Some(&key)).unwrap();
    assert_eq!(
        tree(&back)
            .get(&p("/LM/W3SVC/1"), 6021, GetMode::Own)
            .unwrap()
            .value,
        Value::String("typed in clear".into())
    );
    // Another machine's key cannot, but keeps the sealed text unchanged.
    let other = SecretKey::generate().unwrap();
    let foreign = parse_metabase(&written, "m", &Schema::standard(), Some(&other)).unwrap();
    let ft = tree(&foreign);
    assert!(matches!(
        ft.get(&p("/LM/W3SVC/1"), 6021, GetMode::Own),
        Err(Error::Sealed { .. })
    ));
    let rewritten = write(&foreign, Some(&other));
    let sealed_line = |s: &str| {
        s.lines()
            .find(|l| l.contains("AnonymousUserPass="))
            .unwrap()
            .to_string()
    };
    assert_eq!(sealed_line(&rewritten), sealed_line(&written));
}

#[test]
fn a_namespaced_file_reads_the_same() {
    let namespaced = FIXTURE.replace(
        "<configuration>",
        "<configuration xmlns=\"urn:microsoft-catalog:XML_Metabase_V64_0\">",
    );
    let doc = parse(&namespaced).unwrap();
    assert_eq!(write(&doc, None), write(&parse(FIXTURE).unwrap(), None));
}

fn parse_error(text: &str) -> (usize, String) {
    match parse(text) {
        Err(Error::Parse { line, message, .. }) => (line, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn rejections_name_line_and_property() {
    let (line, msg) =
        parse_error(&FIXTURE.replace("AppPoolQueueLength=\"1000\"", "AppPoolQueueLength=\"9\""));
    assert!(
        msg.contains("AppPoolQueueLength") && msg.contains("out of range"),
        "{msg}"
    );
    assert_eq!(line, 65, "the attribute's own line");
    let (_, msg) = parse_error(&FIXTURE.replace(
        "PeriodicRestartTime=\"1740\"",
        "PeriodicRestartTime=\"soon\"",
    ));
    assert!(
        msg.contains("PeriodicRestartTime") && msg.contains("not a DWORD"),
        "{msg}"
    );
    let (_, msg) =
        parse_error(&FIXTURE.replace("AccessRead | AccessScript", "AccessRead | AccessEverything"));
    assert!(msg.contains("AccessEverything"), "{msg}");
    let (_, msg) =
        parse_error(&FIXTURE.replace("ServerAutoStart=\"TRUE\"", "ServerAutoStart=\"perhaps\""));
    assert!(msg.contains("ServerAutoStart"), "{msg}");
    let (line, msg) = parse_error(&FIXTURE.replace(
        "Location =\"/LM/W3SVC/AppPools/DefaultAppPool\"",
        "Location =\"/LM/W3SVC/1\"",
    ));
    assert!(msg.contains("appears twice"), "{msg}");
    assert_eq!(line, 69);
    let (_, msg) =
        parse_error(&FIXTURE.replace("<IIsWebServer\tLocation =\"/LM/W3SVC/1\"", "<IIsWebServer"));
    assert!(msg.contains("no Location"), "{msg}");
    // A prefixed class reads as the class; a colon left after the prefix
    // is no class name (the fuzzer's find: it lost a colon per save).
    let prefixed = FIXTURE
        .replace("<IIsWebServer\t", "<iis:IIsWebServer\t")
        .replace("</IIsWebServer>", "</iis:IIsWebServer>");
    assert_eq!(
        write(&parse(&prefixed).unwrap(), None),
        write(&parse(FIXTURE).unwrap(), None)
    );
    let (line, msg) = parse_error(
        &FIXTURE
            .replace("<IIsWebServer\t", "<IIsWeb::Server\t")
            .replace("</IIsWebServer>", "</IIsWeb::Server>"),
    );
    assert!(msg.contains("<IIsWeb::Server> is not a key type"), "{msg}");
    assert!(line > 1);
    // Unknown attributes are kept and written back as they are, so their
    // names must be names (the fuzzer's next find: `a"b` broke the file).
    let (_, msg) = parse_error(&FIXTURE.replace(
        "<IIsWebServer\tLocation =\"/LM/W3SVC/1\"",
        "<IIsWebServer\tLocation =\"/LM/W3SVC/1\" /x\"y\"z=\"1\"",
    ));
    assert!(msg.contains("`/x\"y\"z` is not an attribute name"), "{msg}");
    let (_, msg) = parse_error(
        &FIXTURE
            .replace("<IIsWebServer\t", "<IIs&Web\t")
            .replace("</IIsWebServer>", "</IIs&Web>"),
    );
    assert!(msg.contains("is not a key type"), "{msg}");
    let (_, msg) = parse_error(&FIXTURE.replace("/LM/W3SVC/1/ROOT/images", "/LM/W3SVC/../x"));
    assert!(msg.contains("invalid path"), "{msg}");
    let (_, msg) = parse_error(&FIXTURE.replace("</IIsWebServer>", ""));
    assert!(!msg.is_empty());
    let (_, msg) = parse_error(&FIXTURE.replace("ID=\"70001\"", "ID=\"many\""));
    assert!(msg.contains("Custom") && msg.contains("ID"), "{msg}");
    let (_, msg) = parse_error(&FIXTURE.replace("Type=\"DWORD\"", "Type=\"QWORD\""));
    assert!(msg.contains("QWORD"), "{msg}");
    let (_, msg) = parse_error(&FIXTURE.replace("Value=\"65535\"", "Value=\"-1\""));
    assert!(msg.contains("VendorCounter"), "{msg}");
    let (_, msg) = parse_error(&FIXTURE.replace("<configuration>", "<settings>"));
    assert!(msg.contains("<settings>"), "{msg}");
    let (_, msg) = parse_error(&FIXTURE.replace("</configuration>", "</configuration><more/>"));
    assert!(msg.contains("after"), "{msg}");
    let (_, msg) = parse_error(&FIXTURE.replace("&amp; Jerry", "& Jerry"));
    assert!(!msg.is_empty());
    let (_, msg) = parse_error("");
    assert!(msg.contains("configuration"), "{msg}");
}

/// Corrupting the file anywhere never panics: it parses or gives an error.
#[test]
fn mutations_never_panic() {
    let bytes = FIXTURE.as_bytes();
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut mutated = bytes.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % mutated.len();
            match next() % 3 {
                0 => mutated[i] = (next() % 128) as u8,
                1 => {
                    mutated.remove(i);
                }
                _ => mutated.insert(i, b"<>\"&/\n="[(next() % 7) as usize]),
            }
        }
        if let Ok(text) = std::str::from_utf8(&mutated) {
            if let Ok(doc) = parse(text) {
                // Whatever parsed must write and parse again.
                let written = write(&doc, None);
                parse(&written).unwrap_or_else(|e| panic!("rewrite failed: {e}\n{text}"));
            }
        }
    }
}
