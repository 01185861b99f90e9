use super::*;
use crate::tree::GetMode;
use crate::value::Value;

fn p(s: &str) -> MbPath {
    MbPath::parse(s).unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn set(files: &MetabaseFiles, path: &str, prop: &str, value: &[&str]) -> Result<()> {
    files
        .metabase()
        .write(|t| t.set_text(&p(path), prop, &args(value)))
}

#[test]
fn a_fresh_state_dir_gets_the_default_metabase() {
    let dir = tempfile::tempdir().unwrap();
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    for f in [
        "MetaBase.xml",
        "MBSchema.xml",
        "wwwroot/iisstart.htm",
        "logs/W3SVC1",
        "logs/HTTPERR",
        "History",
        "MetaBack",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    assert!(
        files.load_warnings().is_empty(),
        "{:?}",
        files.load_warnings()
    );
    let s = files.metabase().snapshot();
    let get = |path: &str, id| s.get(&p(path), id, GetMode::Inherited).unwrap().value;
    assert_eq!(
        get("/LM/W3SVC/1", 1015),
        Value::String("Default Web Site".into())
    );
    assert_eq!(
        get("/LM/W3SVC/1", 1023),
        Value::MultiSz(vec![":8080:".into()])
    );
    let www = std::path::absolute(dir.path().join("wwwroot")).unwrap();
    assert_eq!(
        get("/LM/W3SVC/1/ROOT", 3001),
        Value::String(www.display().to_string())
    );
    assert_eq!(
        get("/LM/W3SVC/1/ROOT", 9101),
        Value::String("DefaultAppPool".into())
    );
    assert!(s.exists(&p("/LM/W3SVC/AppPools/DefaultAppPool")));
    assert_eq!(
        s.key(&p("/LM/W3SVC/AppPools")).unwrap().key_type(),
        "IIsApplicationPools"
    );
    let mime = get("/LM/MimeMap", 6015);
    assert!(mime
        .as_multi_sz()
        .unwrap()
        .contains(&".html,text/html".to_string()));
    assert_eq!(files.history().unwrap().len(), 1);
}

#[test]
fn writes_are_durable_and_reopen_identically() {
    let dir = tempfile::tempdir().unwrap();
    {
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        set(
            &files,
            "/LM/W3SVC/1",
            "ServerComment",
            &["Renamed & <escaped>"],
        )
        .unwrap();
        files
            .metabase()
            .write(|t| {
                t.create_key(&p("/LM/W3SVC/1/ROOT/app"), "IIsWebVirtualDir")?;
                t.set_text(&p("/LM/W3SVC/1/ROOT/app"), "Path", &args(&["/srv/app"]))
            })
            .unwrap();
        assert_eq!(files.version(), (3, 0));
    }
    let text = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
    assert!(text.contains("ServerComment=\"Renamed &amp; &lt;escaped&gt;\""));
    assert!(text.contains("HistoryMajorVersionNumber=\"3\""));
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    let s = files.metabase().snapshot();
    assert_eq!(
        s.get(&p("/LM/W3SVC/1"), 1015, GetMode::Own).unwrap().value,
        Value::String("Renamed & <escaped>".into())
    );
    assert_eq!(
        s.key(&p("/LM/W3SVC/1/ROOT/app")).unwrap().key_type(),
        "IIsWebVirtualDir"
    );
    assert_eq!(s.change_number(), 2);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn history_keeps_max_history_files_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    set(&files, "/LM", "MaxHistoryFiles", &["3"]).unwrap();
    for n in 0..5 {
        set(&files, "/LM/W3SVC/1", "ServerComment", &[&format!("v{n}")]).unwrap();
    }
    let history = files.history().unwrap();
    let versions: Vec<(u32, u32)> = history.iter().map(|e| (e.major, e.minor)).collect();
    assert_eq!(versions, vec![(5, 0), (6, 0), (7, 0)]);
    for e in &history {
        assert!(e.schema_file.exists());
        let name = e
            .metabase_file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(name, format!("MetaBase_{:010}_0000000000.xml", e.major));
    }
    let schema_files = std::fs::read_dir(dir.path().join("History"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("MBSchema_"))
        .count();
    assert_eq!(schema_files, 3);
    // Version 5 held "v2"; restoring it is itself a new version.
    let rx = files.metabase().subscribe();
    files.restore_history(5, None).unwrap();
    let s = files.metabase().snapshot();
    assert_eq!(
        s.get(&p("/LM/W3SVC/1"), 1015, GetMode::Own).unwrap().value,
        Value::String("v2".into())
    );
    let batch = rx.try_recv().unwrap();
    assert_eq!(batch.origin.as_deref(), Some("history-restore"));
    assert_eq!(batch.changes.len(), 1, "only the changed key is reported");
    assert_eq!(files.version(), (8, 0));
    assert!(files.restore_history(99, None).is_err());
}

#[test]
fn history_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    set(&files, "/LM", "EnableHistory", &["0"]).unwrap();
    let before = files.history().unwrap().len();
    set(&files, "/LM/W3SVC/1", "ServerComment", &["x"]).unwrap();
    assert_eq!(files.history().unwrap().len(), before);
}

#[test]
fn secure_values_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        set(&files, "/LM/W3SVC", "AnonymousUserPass", &["hunter2"]).unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
    assert!(
        !text.contains("hunter2"),
        "MetaBase.xml holds the password in clear"
    );
    assert!(text.contains("AnonymousUserPass=\"49535631"));
    for e in std::fs::read_dir(dir.path().join("History"))
        .unwrap()
        .flatten()
    {
        assert!(!std::fs::read_to_string(e.path())
            .unwrap()
            .contains("hunter2"));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("MetaBase.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    let s = files.metabase().snapshot();
    assert_eq!(
        s.get(&p("/LM/W3SVC/1/ROOT"), 6021, GetMode::Inherited)
            .unwrap()
            .value,
        Value::String("hunter2".into())
    );
}

#[test]
fn another_writers_change_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    drop(MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap());
    let a = MetabaseFiles::open_state_dir(dir.path(), LockMode::WhileWriting).unwrap();
    let b = MetabaseFiles::open_state_dir(dir.path(), LockMode::WhileWriting).unwrap();
    set(&a, "/LM/W3SVC/1", "ServerComment", &["from a"]).unwrap();
    let err = set(&b, "/LM/W3SVC/1", "ServerComment", &["from b"]).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    // b's store did not take the change either; the file holds a's.
    assert!(
        b.metabase()
            .snapshot()
            .get(&p("/LM/W3SVC/1"), 1015, GetMode::Own)
            .unwrap()
            .value
            == Value::String("Default Web Site".into())
    );
    let text = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
    assert!(text.contains("from a") && !text.contains("from b"));
}

#[test]
fn an_exclusive_open_makes_other_writers_wait() {
    let dir = tempfile::tempdir().unwrap();
    let first = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let path = dir.path().to_path_buf();
    let flag = released.clone();
    let waiter = std::thread::spawn(move || {
        let second = MetabaseFiles::open_state_dir(&path, LockMode::Exclusive).unwrap();
        let was_released = flag.load(std::sync::atomic::Ordering::SeqCst);
        let comment = second
            .metabase()
            .snapshot()
            .get(&p("/LM/W3SVC/1"), 1015, GetMode::Own)
            .unwrap()
            .value;
        (was_released, comment)
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    set(&first, "/LM/W3SVC/1", "ServerComment", &["first"]).unwrap();
    released.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(first);
    let (was_released, comment) = waiter.join().unwrap();
    assert!(
        was_released,
        "the second writer opened before the first let go"
    );
    assert_eq!(
        comment,
        Value::String("first".into()),
        "and it saw the first writer's change"
    );
}

#[test]
fn a_corrupt_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap());
    let file = dir.path().join("MetaBase.xml");
    let broken = std::fs::read_to_string(&file)
        .unwrap()
        .replace("ServerAutoStart=\"TRUE\"", "ServerAutoStart=\"sometimes\"");
    std::fs::write(&file, &broken).unwrap();
    let err = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("MetaBase.xml:") && msg.contains("ServerAutoStart"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
    // A file that is not UTF-8 is refused too.
    std::fs::write(&file, b"\xff\xfe<configuration/>").unwrap();
    assert!(MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).is_err());
}

#[test]
fn schema_extensions_are_persisted_to_mbschema() {
    let dir = tempfile::tempdir().unwrap();
    {
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
        files
            .metabase()
            .write(|t| {
                t.extend_schema(|s| {
                    s.add_property(
                        crate::PropertyDef::custom(
                            70000,
                            "IIsWebCustomer",
                            crate::DataType::String,
                            crate::UserType::SERVER,
                            crate::Attributes::INHERIT,
                        ),
                        &["IIsWebServer".into()],
                    )?;
                    s.add_class(
                        "MySiteSettings",
                        vec![],
                        &["IIsWebServer".into()],
                        &["IIsWebCustomer".into()],
                    )
                })?;
                t.set_text(&p("/LM/W3SVC/1"), "IIsWebCustomer", &args(&["Contoso"]))?;
                t.create_key(&p("/LM/W3SVC/1/Mine"), "MySiteSettings")
            })
            .unwrap();
    }
    let schema_text = std::fs::read_to_string(dir.path().join("MBSchema.xml")).unwrap();
    assert!(schema_text.contains("InternalName=\"IIsWebCustomer\""));
    assert!(schema_text.contains("InternalName=\"MySiteSettings\""));
    let metabase_text = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
    assert!(metabase_text.contains("IIsWebCustomer=\"Contoso\""));
    assert!(metabase_text.contains("<MySiteSettings\tLocation =\"/LM/W3SVC/1/Mine\""));
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    let s = files.metabase().snapshot();
    assert!(s
        .schema()
        .may_contain("IIsWebServer", "MySiteSettings")
        .is_ok());
    assert_eq!(
        s.get(&p("/LM/W3SVC/1"), 70000, GetMode::Own).unwrap().name,
        "IIsWebCustomer"
    );
}

#[test]
fn volatile_run_time_state_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    let before = files.version();
    let text = std::fs::read(dir.path().join("MetaBase.xml")).unwrap();
    let rx = files.metabase().subscribe();
    set(&files, "/LM/W3SVC/1", "ServerState", &["2"]).unwrap();
    assert_eq!(
        rx.try_recv().unwrap().changes[0].ids,
        vec![1016],
        "still notified"
    );
    assert_eq!(files.version(), before, "no new version");
    assert_eq!(
        std::fs::read(dir.path().join("MetaBase.xml")).unwrap(),
        text
    );
    // Readers in this process see it.
    let s = files.metabase().snapshot();
    assert_eq!(
        s.get(&p("/LM/W3SVC/1"), 1016, GetMode::Own).unwrap().value,
        Value::Dword(2)
    );
    // A change with persistent data is written (without the volatile value).
    set(&files, "/LM/W3SVC/1", "ServerComment", &["x"]).unwrap();
    assert_ne!(files.version(), before);
    let saved = std::fs::read_to_string(dir.path().join("MetaBase.xml")).unwrap();
    assert!(saved.contains("ServerComment=\"x\"") && !saved.contains("ServerState"));
}

/// A file's permission bits.
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_state_dir_and_the_metabase_are_not_world_readable() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let files = MetabaseFiles::open_state_dir(&state, LockMode::Exclusive).unwrap();
    let mode = |rel: &str| mode_of(&state.join(rel));
    assert_eq!(mode(""), 0o711, "others pass through, not list");
    assert_eq!(mode("MetaBase.xml"), 0o600);
    assert_eq!(mode("History"), 0o700);
    assert_eq!(mode("MetaBack"), 0o700);
    // The default content stays readable by the pool's identity.
    assert_eq!(mode("wwwroot"), 0o755);
    assert_eq!(mode("wwwroot/iisstart.htm"), 0o644);
    // Every save and history file keeps it so.
    set(&files, "/LM/W3SVC/1", "ServerComment", &["Saved"]).unwrap();
    assert_eq!(mode("MetaBase.xml"), 0o600);
    for entry in std::fs::read_dir(state.join("History")).unwrap() {
        let m = mode_of(&entry.unwrap().path());
        assert_eq!(m & 0o077, 0, "a history file open to others");
    }
}

#[test]
fn an_older_state_dir_is_closed_to_others_when_opened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(MetabaseFiles::open_state_dir(&state, LockMode::Exclusive).unwrap());
    // As an earlier version left them.
    let open_up = |rel: &str, mode| {
        std::fs::set_permissions(state.join(rel), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open_up("", 0o755);
    open_up("MetaBase.xml", 0o644);
    open_up("History", 0o755);
    open_up("MetaBack", 0o755);
    drop(MetabaseFiles::open_state_dir(&state, LockMode::Exclusive).unwrap());
    let mode = |rel: &str| mode_of(&state.join(rel));
    assert_eq!(mode(""), 0o711, "others pass through, not list");
    assert_eq!(mode("MetaBase.xml"), 0o600);
    assert_eq!(mode("History"), 0o700);
    assert_eq!(mode("MetaBack"), 0o700);
    // Content is left as it is.
    assert_eq!(mode("wwwroot"), 0o755);
}

#[test]
fn a_state_dir_from_an_older_inetsrv_gains_the_new_properties() {
    let dir = tempfile::tempdir().unwrap();
    drop(MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap());
    // The schema as an older inetsrv wrote it: IIS's catalog, nothing more.
    let iis_only = crate::schema::parse_schema(
        include_str!("../../data/MBSchema.xml"),
        "IIS's MBSchema.xml",
    )
    .unwrap();
    std::fs::write(dir.path().join("MBSchema.xml"), write_schema(&iis_only)).unwrap();

    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    set(
        &files,
        "/LM/W3SVC/1/ROOT",
        "AllowSymlinksOutsideRoot",
        &["TRUE"],
    )
    .unwrap();
    let schema_text = std::fs::read_to_string(dir.path().join("MBSchema.xml")).unwrap();
    assert!(
        schema_text.contains("InternalName=\"AllowSymlinksOutsideRoot\""),
        "the upgraded schema is saved with the change"
    );
    drop(files);
    let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::Exclusive).unwrap();
    assert!(
        files.load_warnings().is_empty(),
        "{:?}",
        files.load_warnings()
    );
    let s = files.metabase().snapshot();
    assert_eq!(
        s.get(
            &p("/LM/W3SVC/1/ROOT"),
            crate::ids::ALLOW_SYMLINKS_OUTSIDE_ROOT,
            GetMode::Own
        )
        .unwrap()
        .value,
        Value::Dword(1)
    );
}

#[test]
fn a_shared_sticky_directory_given_as_state_dir_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    drop(MetabaseFiles::open_state_dir(&shared, LockMode::Exclusive).unwrap());
    let mode = || std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(), 0o1777, "fresh");
    drop(MetabaseFiles::open_state_dir(&shared, LockMode::Exclusive).unwrap());
    assert_eq!(mode(), 0o1777, "reopened");
    assert_eq!(mode_of(&shared.join("MetaBase.xml")), 0o600);
}
