use super::*;
use crate::tree::GetMode;
use crate::value::UserType;

fn p(s: &str) -> MbPath {
    MbPath::parse(s).unwrap()
}

/// /LM/W3SVC/1/ROOT with the app pools container.
fn store() -> Metabase {
    let mb = Metabase::empty();
    mb.write(|t| {
        t.create_key(&p("/LM/W3SVC"), "IIsWebService")?;
        t.create_key(&p("/LM/W3SVC/1"), "IIsWebServer")?;
        t.create_key(&p("/LM/W3SVC/1/ROOT"), "IIsWebVirtualDir")?;
        t.create_key(&p("/LM/W3SVC/AppPools"), "IIsApplicationPools")?;
        Ok(())
    })
    .unwrap();
    mb
}

fn text(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_seed_example_server_bindings() {
    let mb = store();
    // ServerBindings on the site works…
    mb.write(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerBindings", &text(&[":1080:"])))
        .unwrap();
    // …on a virtual directory it is not a property of the key type…
    let err = mb
        .write(|t| t.set_text(&p("/LM/W3SVC/1/ROOT"), "ServerBindings", &text(&[":1080:"])))
        .unwrap_err();
    assert!(matches!(err, Error::PropertyNotAllowed { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/LM/W3SVC/1/ROOT")
            && msg.contains("ServerBindings")
            && msg.contains("IIsWebVirtualDir"),
        "{msg}"
    );
    // …nor on an application pool.
    mb.write(|t| t.create_key(&p("/LM/W3SVC/AppPools/P"), "IIsApplicationPool"))
        .unwrap();
    assert!(mb
        .write(|t| t.set_text(
            &p("/LM/W3SVC/AppPools/P"),
            "ServerBindings",
            &text(&[":80:"])
        ))
        .is_err());
    // Another writer changes it back; a reader sees the change.
    mb.write(|t| t.set_text(&p("/LM/W3SVC/1"), "1023", &text(&[":80:"])))
        .unwrap();
    let snap = mb.snapshot();
    assert_eq!(
        snap.get(&p("/LM/W3SVC/1"), 1023, GetMode::Own)
            .unwrap()
            .value,
        Value::MultiSz(vec![":80:".into()])
    );
}

/// The WMI Provider seed, step by step: Susan sets ServerBindings through
/// an IIsWebServer object at /LM/W3SVC/1 (works), then at /LM/W3SVC (fails:
/// that path is not an IIsWebServer); another user changes it back, and
/// Susan sees the change.
#[test]
fn the_seed_example_addressed_as_a_class() {
    let mb = store();
    let as_server = |path: &str, value: &str| {
        mb.write(|t| {
            t.expect_key_type(&p(path), "IIsWebServer")?;
            t.set_text(&p(path), "ServerBindings", &text(&[value]))
        })
    };
    as_server("/LM/W3SVC/1", ":1080:").unwrap();
    let err = as_server("/LM/W3SVC", ":1080:").unwrap_err();
    assert!(matches!(err, Error::KeyTypeMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "/LM/W3SVC: the key is of type IIsWebService, not IIsWebServer"
    );
    assert!(mb
        .snapshot()
        .get(&p("/LM/W3SVC"), 1023, GetMode::Own)
        .is_err());
    mb.write(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerBindings", &text(&[":80:"])))
        .unwrap();
    let seen = mb.snapshot();
    seen.expect_key_type(&p("/LM/W3SVC/1"), "IIsWebServer")
        .unwrap();
    assert_eq!(
        seen.get(&p("/LM/W3SVC/1"), 1023, GetMode::Own)
            .unwrap()
            .value,
        Value::MultiSz(vec![":80:".into()])
    );
}

#[test]
fn every_validation_rejection_leaves_the_store_unchanged() {
    let mb = store();
    let before = mb.snapshot();
    type Attempt = Box<dyn Fn(&mut Txn) -> Result<()>>;
    let attempts: Vec<(&str, Attempt)> = vec![
        (
            "wrong type",
            Box::new(|t| t.set(&p("/LM/W3SVC/1"), 1015, Value::Dword(1))),
        ),
        (
            "not a number",
            Box::new(|t| t.set_text(&p("/LM/W3SVC/AppPools"), "IdleTimeout", &text(&["soon"]))),
        ),
        (
            "out of range",
            Box::new(|t| {
                t.set_text(
                    &p("/LM/W3SVC/AppPools"),
                    "AppPoolQueueLength",
                    &text(&["70000"]),
                )
            }),
        ),
        (
            "bad flag",
            Box::new(|t| {
                t.set_text(
                    &p("/LM/W3SVC/1/ROOT"),
                    "AccessFlags",
                    &text(&["AccessEverything"]),
                )
            }),
        ),
        (
            "bad bool",
            Box::new(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerAutoStart", &text(&["maybe"]))),
        ),
        (
            "unknown property",
            Box::new(|t| t.set_text(&p("/LM/W3SVC/1"), "NoSuchProperty", &text(&["x"]))),
        ),
        (
            "not allowed on key type",
            Box::new(|t| t.set_text(&p("/LM/W3SVC/AppPools"), "Path", &text(&["/x"]))),
        ),
        (
            "key type not allowed under parent",
            Box::new(|t| t.create_key(&p("/LM/W3SVC/AppPools/site"), "IIsWebServer")),
        ),
        (
            "unknown key type",
            Box::new(|t| t.create_key(&p("/LM/W3SVC/9"), "IIsWebSever")),
        ),
        (
            "parent missing",
            Box::new(|t| t.create_key(&p("/LM/W3SVC/9/ROOT"), "IIsWebVirtualDir")),
        ),
        (
            "key exists",
            Box::new(|t| t.create_key(&p("/lm/w3svc/1"), "IIsWebServer")),
        ),
        (
            "path missing",
            Box::new(|t| t.set_text(&p("/LM/W3SVC/7"), "ServerComment", &text(&["x"]))),
        ),
        (
            "control character",
            Box::new(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["a\u{1}b"]))),
        ),
        (
            "read-only attribute",
            Box::new(|t| {
                t.set_property(
                    &p("/LM/W3SVC/1"),
                    Property {
                        attributes: Attributes::ISINHERITED,
                        ..Property::from_schema(
                            &Schema::standard(),
                            1015,
                            Value::String("x".into()),
                        )
                    },
                )
            }),
        ),
        (
            "key type change not allowed",
            Box::new(|t| {
                t.set_text(
                    &p("/LM/W3SVC/1/ROOT"),
                    "KeyType",
                    &text(&["IIsApplicationPool"]),
                )
            }),
        ),
        (
            "delete the root",
            Box::new(|t| t.delete_key(&MbPath::root())),
        ),
        (
            "delete missing data",
            Box::new(|t| t.delete_data(&p("/LM/W3SVC/1"), 1023)),
        ),
        (
            "copy into itself",
            Box::new(|t| t.copy_key(&p("/LM/W3SVC/1"), &p("/LM/W3SVC/1/ROOT/x"), false, true)),
        ),
        (
            "copy under a wrong parent",
            Box::new(|t| t.copy_key(&p("/LM/W3SVC/1"), &p("/LM/W3SVC/AppPools/1"), false, true)),
        ),
        (
            "rename onto existing",
            Box::new(|t| t.rename_key(&p("/LM/W3SVC/1"), "AppPools")),
        ),
    ];
    for (what, attempt) in attempts {
        let err = mb.write(|t| {
            // A valid change first: the later failure must undo it too.
            t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["half-done"]))?;
            attempt(t)
        });
        assert!(err.is_err(), "{what} was accepted");
        let after = mb.snapshot();
        assert_eq!(after.change_number(), before.change_number(), "{what}");
        assert!(
            Arc::ptr_eq(&after.tree().root, &before.tree().root),
            "{what}"
        );
    }
}

#[test]
fn flag_names_set_single_bits() {
    let mb = store();
    mb.write(|t| {
        t.set_text(
            &p("/LM/W3SVC"),
            "AccessFlags",
            &text(&["AccessRead", "|", "AccessScript"]),
        )
    })
    .unwrap();
    // Turning on AccessWrite at ROOT starts from the inherited value.
    mb.write(|t| t.set_text(&p("/LM/W3SVC/1/ROOT"), "AccessWrite", &text(&["true"])))
        .unwrap();
    let snap = mb.snapshot();
    assert_eq!(
        snap.get(&p("/LM/W3SVC/1/ROOT"), 6016, GetMode::Own)
            .unwrap()
            .value,
        Value::Dword(0x203)
    );
    mb.write(|t| t.set_text(&p("/LM/W3SVC/1/ROOT"), "AccessRead", &text(&["FALSE"])))
        .unwrap();
    assert_eq!(
        mb.snapshot().effective_dword(&p("/LM/W3SVC/1/ROOT"), 6016),
        Some(0x202)
    );
}

#[test]
fn transactions_are_atomic_and_notified_once() {
    let mb = store();
    let rx = mb.subscribe();
    mb.write(|t| {
        for n in 2..=4 {
            let site = p(&format!("/LM/W3SVC/{n}"));
            t.create_key(&site, "IIsWebServer")?;
            t.set_text(&site, "ServerComment", &text(&[&format!("site {n}")]))?;
            t.set_text(
                &site,
                "ServerBindings",
                &text(&[&format!(":{}:", 8000 + n)]),
            )?;
        }
        Ok(())
    })
    .unwrap();
    let batch = rx.try_recv().unwrap();
    assert!(rx.try_recv().is_err(), "one batch per transaction");
    assert_eq!(batch.changes.len(), 3);
    let c = &batch.changes[0];
    assert_eq!(c.path.to_string(), "/LM/W3SVC/2");
    assert!(c.kind.contains(ChangeKind::ADD_OBJECT) && c.kind.contains(ChangeKind::SET_DATA));
    assert_eq!(c.ids, vec![1015, 1023]);
    assert_eq!(batch.change_number, mb.snapshot().change_number());
    assert!(batch.touches(&p("/LM/W3SVC")));
    assert!(!batch.touches(&p("/LM/W3SVC/AppPools")));
}

#[test]
fn identical_sets_change_nothing() {
    let mb = store();
    mb.write(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["x"])))
        .unwrap();
    let n = mb.snapshot().change_number();
    let rx = mb.subscribe();
    mb.write(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["x"])))
        .unwrap();
    assert_eq!(mb.snapshot().change_number(), n);
    assert!(rx.try_recv().is_err());
}

#[test]
fn snapshots_are_isolated_from_later_writes() {
    let mb = store();
    let old = mb.snapshot();
    mb.write(|t| {
        t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["new"]))?;
        t.delete_key(&p("/LM/W3SVC/1/ROOT"))
    })
    .unwrap();
    assert!(old.exists(&p("/LM/W3SVC/1/ROOT")));
    assert!(old.get(&p("/LM/W3SVC/1"), 1015, GetMode::Own).is_err());
    assert!(!mb.snapshot().exists(&p("/LM/W3SVC/1/ROOT")));
    // Untouched subtrees are shared, not copied.
    let new = mb.snapshot();
    let pools = p("/LM/W3SVC/AppPools");
    assert!(std::ptr::eq(
        old.find(&pools).unwrap(),
        new.find(&pools).unwrap()
    ));
}

#[test]
fn concurrent_readers_never_see_half_a_transaction() {
    let mb = store();
    // Invariant each transaction keeps: sites 2 and 3 have the same comment.
    mb.write(|t| {
        t.create_key(&p("/LM/W3SVC/2"), "IIsWebServer")?;
        t.create_key(&p("/LM/W3SVC/3"), "IIsWebServer")
    })
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mb = mb.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let s = mb.snapshot();
                    let a = s
                        .get(&p("/LM/W3SVC/2"), 1015, GetMode::Own)
                        .ok()
                        .map(|r| r.value);
                    let b = s
                        .get(&p("/LM/W3SVC/3"), 1015, GetMode::Own)
                        .ok()
                        .map(|r| r.value);
                    assert_eq!(a, b, "torn read");
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let mb = mb.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let v = text(&[&format!("w{w}-{i}")]);
                    mb.write(|t| {
                        t.set_text(&p("/LM/W3SVC/2"), "ServerComment", &v)?;
                        t.set_text(&p("/LM/W3SVC/3"), "ServerComment", &v)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // 600 serialised transactions, each one change number.
    assert_eq!(mb.snapshot().change_number(), 2 + 600);
}

#[test]
fn copy_merge_overwrite_move_and_rename() {
    let mb = store();
    mb.write(|t| {
        t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["one"]))?;
        t.set_text(&p("/LM/W3SVC/1/ROOT"), "Path", &text(&["/srv/one"]))?;
        t.create_key(&p("/LM/W3SVC/2"), "IIsWebServer")?;
        t.set_text(&p("/LM/W3SVC/2"), "ServerComment", &text(&["two"]))?;
        t.set_text(&p("/LM/W3SVC/2"), "ServerBindings", &text(&[":82:"]))
    })
    .unwrap();
    // Merge: source data wins, destination-only data stays.
    mb.write(|t| t.copy_key(&p("/LM/W3SVC/1"), &p("/LM/W3SVC/2"), false, true))
        .unwrap();
    let s = mb.snapshot();
    let own = |s: &Snapshot, path: &str, id| s.get(&p(path), id, GetMode::Own).map(|r| r.value);
    assert_eq!(
        own(&s, "/LM/W3SVC/2", 1015).unwrap(),
        Value::String("one".into())
    );
    assert!(own(&s, "/LM/W3SVC/2", 1023).is_ok());
    assert_eq!(
        own(&s, "/LM/W3SVC/2/ROOT", 3001).unwrap(),
        Value::String("/srv/one".into())
    );
    // Overwrite: the destination is replaced.
    mb.write(|t| t.copy_key(&p("/LM/W3SVC/1"), &p("/LM/W3SVC/2"), true, true))
        .unwrap();
    assert!(own(&mb.snapshot(), "/LM/W3SVC/2", 1023).is_err());
    // Move.
    mb.write(|t| t.copy_key(&p("/LM/W3SVC/2"), &p("/LM/W3SVC/5"), false, false))
        .unwrap();
    let s = mb.snapshot();
    assert!(!s.exists(&p("/LM/W3SVC/2")) && s.exists(&p("/LM/W3SVC/5/ROOT")));
    // Rename, including a change of case only.
    let rx = mb.subscribe();
    mb.write(|t| t.rename_key(&p("/LM/W3SVC/5"), "6")).unwrap();
    let batch = rx.try_recv().unwrap();
    assert_eq!(batch.changes[0].kind, ChangeKind::RENAME_OBJECT);
    assert_eq!(batch.changes[0].new_path, Some(p("/LM/W3SVC/6")));
    mb.write(|t| t.rename_key(&p("/LM/W3SVC/6/ROOT"), "root"))
        .unwrap();
    assert_eq!(
        mb.snapshot()
            .canonical(&p("/LM/W3SVC/6/ROOT"))
            .unwrap()
            .to_string(),
        "/LM/W3SVC/6/root"
    );
}

#[test]
fn replace_subtree_reports_the_difference() {
    let mb = store();
    mb.write(|t| {
        t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["old"]))?;
        t.set_text(&p("/LM/W3SVC/1"), "ServerBindings", &text(&[":80:"]))
    })
    .unwrap();
    let mut edited = mb.snapshot().find(&p("/LM/W3SVC")).unwrap().clone();
    {
        let site = edited.child_mut("1").unwrap();
        site.props.remove(&1023);
        site.props.insert(
            1015,
            Property::from_schema(&Schema::standard(), 1015, Value::String("new".into())),
        );
        site.remove_child("ROOT");
    }
    edited.insert_child(Key::new("7", "IIsWebServer"));
    let rx = mb.subscribe();
    mb.write(|t| t.replace_subtree(&p("/LM/W3SVC"), edited.clone()))
        .unwrap();
    let batch = rx.try_recv().unwrap();
    let find = |path: &str| {
        batch
            .changes
            .iter()
            .find(|c| c.path.to_string() == path)
            .unwrap()
    };
    let site = find("/LM/W3SVC/1");
    assert!(
        site.kind.contains(ChangeKind::SET_DATA) && site.kind.contains(ChangeKind::DELETE_DATA)
    );
    assert_eq!(site.ids, vec![1015, 1023]);
    assert_eq!(find("/LM/W3SVC/1/ROOT").kind, ChangeKind::DELETE_OBJECT);
    assert_eq!(find("/LM/W3SVC/7").kind, ChangeKind::ADD_OBJECT);
    assert_eq!(batch.changes.len(), 3, "unchanged keys are not reported");
}

#[test]
fn custom_data_and_secure_attribute_rules() {
    let mb = store();
    let custom = Property {
        id: 80000,
        value: Value::String("v".into()),
        attributes: Attributes::INHERIT,
        user_type: UserType(5000),
        custom_name: Some("VendorThing".into()),
    };
    mb.write(|t| t.set_property(&p("/LM/W3SVC"), custom.clone()))
        .unwrap();
    let r = mb
        .snapshot()
        .get(&p("/LM/W3SVC/1/ROOT"), 80000, GetMode::Inherited)
        .unwrap();
    assert_eq!((r.name.as_str(), r.inherited), ("VendorThing", true));
    mb.write(|t| t.set_text(&p("/LM/W3SVC"), "AnonymousUserPass", &text(&["pw"])))
        .unwrap();
    let insecure = Property {
        attributes: Attributes::INHERIT,
        ..Property::from_schema(&Schema::standard(), 6021, Value::String("pw2".into()))
    };
    let err = mb
        .write(|t| t.set_property(&p("/LM/W3SVC"), insecure.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("SECURE"), "{err}");
    mb.write(|t| {
        t.delete_data(&p("/LM/W3SVC"), 6021)?;
        t.set_property(&p("/LM/W3SVC"), insecure)
    })
    .unwrap();
}

#[test]
fn schema_extension_is_transactional() {
    let mb = store();
    let rx = mb.subscribe();
    mb.write(|t| {
        t.extend_schema(|s| {
            s.add_property(
                crate::schema::PropertyDef::custom(
                    70000,
                    "IIsWebCustomer",
                    crate::value::DataType::String,
                    UserType::SERVER,
                    Attributes::INHERIT,
                ),
                &["IIsWebServer".into()],
            )
        })?;
        t.set_text(&p("/LM/W3SVC/1"), "IIsWebCustomer", &text(&["Contoso"]))
    })
    .unwrap();
    assert!(rx.try_recv().unwrap().schema_changed);
    let s = mb.snapshot();
    assert_eq!(
        s.get(&p("/LM/W3SVC/1"), 70000, GetMode::Own).unwrap().name,
        "IIsWebCustomer"
    );
    // Not allowed where the extension did not put it.
    assert!(mb
        .write(|t| t.set_text(&p("/LM/W3SVC/1/ROOT"), "IIsWebCustomer", &text(&["x"])))
        .is_err());
    // A failed transaction leaves the schema as it was.
    let _ = mb.write(|t| {
        t.extend_schema(|s| s.add_class("Temp", vec![], &[], &[]))?;
        Err::<(), _>(Error::InvalidArgument("abandon".into()))
    });
    assert!(mb.snapshot().schema().class("Temp").is_none());
}

struct FailingHook;
impl CommitHook for FailingHook {
    fn commit(&mut self, _: &Snapshot, _: &ChangeBatch) -> Result<()> {
        Err(Error::InvalidArgument("disk full".into()))
    }
}

#[test]
fn a_failed_commit_hook_abandons_the_transaction() {
    let mb = store();
    let before = mb.snapshot().change_number();
    mb.set_commit_hook(Box::new(FailingHook));
    let rx = mb.subscribe();
    assert!(mb
        .write(|t| t.set_text(&p("/LM/W3SVC/1"), "ServerComment", &text(&["x"])))
        .is_err());
    assert_eq!(mb.snapshot().change_number(), before);
    assert!(mb
        .snapshot()
        .get(&p("/LM/W3SVC/1"), 1015, GetMode::Own)
        .is_err());
    assert!(rx.try_recv().is_err());
}

#[test]
fn an_untyped_key_goes_anywhere_and_its_key_type_is_checked_against_its_parent() {
    let mb = store();
    // IMSAdminBaseW AddKey, then R_SetData KeyType, as ADSI does.
    mb.write(|t| t.add_untyped_key(&p("/LM/W3SVC/AppPools/P2")))
        .unwrap();
    assert_eq!(
        mb.snapshot()
            .find(&p("/LM/W3SVC/AppPools/P2"))
            .unwrap()
            .key_type(),
        "IIsConfigObject"
    );
    let wrong = mb.write(|t| {
        t.set_text(
            &p("/LM/W3SVC/AppPools/P2"),
            "KeyType",
            &text(&["IIsWebServer"]),
        )
    });
    assert!(
        matches!(wrong, Err(Error::ContainmentViolation { .. })),
        "{wrong:?}"
    );
    mb.write(|t| {
        t.set_text(
            &p("/LM/W3SVC/AppPools/P2"),
            "KeyType",
            &text(&["IIsApplicationPool"]),
        )
    })
    .unwrap();
    assert!(matches!(
        mb.write(|t| t.add_untyped_key(&p("/LM/W3SVC/AppPools/P2"))),
        Err(Error::KeyExists(_))
    ));
    assert!(matches!(
        mb.write(|t| t.add_untyped_key(&p("/LM/W3SVC/Nope/P3"))),
        Err(Error::PathNotFound(_))
    ));
}
