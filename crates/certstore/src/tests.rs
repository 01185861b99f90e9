use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::for_state_dir(dir.path());
    (dir, store)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A CA and a leaf it issued, made by OpenSSL (as a real CA's files are).
struct Issued {
    dir: tempfile::TempDir,
}

impl Issued {
    fn new(leaf_days: &str) -> Issued {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=Test CA",
            "-days",
            "30",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=www.example.test",
        ]);
        std::fs::write(
            dir.path().join("ext"),
            "subjectAltName=DNS:www.example.test,DNS:example.test,IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.crt",
            "-days",
            leaf_days,
            "-extfile",
            "ext",
        ]);
        Issued { dir }
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    fn chain(&self) -> Vec<u8> {
        [self.read("leaf.crt"), self.read("ca.crt")].concat()
    }

    fn pfx(&self, password: &str, legacy: bool) -> Vec<u8> {
        let mut args = vec![
            "pkcs12",
            "-export",
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.crt",
            "-certfile",
            "ca.crt",
            "-out",
            "out.pfx",
            "-passout",
        ];
        let pass = format!("pass:{password}");
        args.push(&pass);
        if legacy {
            // As Windows Server 2003 exported: 3DES and RC2.
            args.extend([
                "-certpbe",
                "PBE-SHA1-3DES",
                "-keypbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ]);
        }
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.read("out.pfx")
    }
}

#[test]
fn thumbprints_are_typed_any_way() {
    let t = "3b1e 9c:AA".to_string() + &"0".repeat(32);
    assert_eq!(
        normalise_thumbprint(&t).unwrap(),
        format!("3B1E9CAA{}", "0".repeat(32))
    );
    assert!(normalise_thumbprint("12ab").is_none());
    assert!(normalise_thumbprint(&"g".repeat(40)).is_none());
}

#[test]
fn a_pem_chain_is_imported_listed_loaded_and_deleted() {
    let (_dir, store) = store();
    let issued = Issued::new("10");
    let got = store
        .import_pem(&issued.chain(), &issued.read("leaf.key"), Some("example"))
        .unwrap();
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert!(!got.already_present);
    let info = &got.info;
    assert_eq!(info.subject, "CN=www.example.test");
    assert_eq!(info.issuer, "CN=Test CA");
    assert_eq!(info.sans, ["www.example.test", "example.test", "127.0.0.1"]);
    assert_eq!(info.key.to_string(), "RSA 2048");
    assert_eq!(info.chain_len, 2);
    assert!(!info.self_signed);
    // The thumbprint is the SHA-1 of the leaf's DER, as Windows shows it.
    let out = Command::new("openssl")
        .args(["x509", "-in", "leaf.crt", "-noout", "-fingerprint", "-sha1"])
        .current_dir(issued.dir.path())
        .output()
        .unwrap();
    let openssl = String::from_utf8_lossy(&out.stdout);
    let openssl = normalise_thumbprint(openssl.trim().rsplit('=').next().unwrap()).unwrap();
    assert_eq!(info.thumbprint, openssl);

    assert_eq!(mode(store.dir()), 0o700);
    assert_eq!(
        mode(&store.dir().join(format!("{}.key", info.thumbprint))),
        0o600
    );
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name.as_deref(), Some("example"));
    // By name or by thumbprint in any case.
    assert_eq!(store.resolve("EXAMPLE").unwrap(), info.thumbprint);
    assert_eq!(
        store.resolve(&info.thumbprint.to_lowercase()).unwrap(),
        info.thumbprint
    );
    let loaded = store.load("example").unwrap();
    assert_eq!(loaded.chain.len(), 2);
    loaded.certified_key().unwrap();
    let (chain, key) = store.export("example", true).unwrap();
    assert_eq!(pem::certificates(chain.as_bytes()).unwrap(), loaded.chain);
    assert!(key.unwrap().contains("PRIVATE KEY"));
    // Importing it again is no change, and keeps its name.
    let again = store
        .import_pem(&issued.chain(), &issued.read("leaf.key"), None)
        .unwrap();
    assert!(again.already_present);
    assert_eq!(again.info.name.as_deref(), Some("example"));
    store.delete("example").unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(store.load("example"), Err(Error::NotFound(_))));
    assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
}

#[test]
fn bad_imports_are_refused_clearly_and_change_nothing() {
    let (_dir, store) = store();
    let issued = Issued::new("10");
    let other = Issued::new("10");
    let refused = |result: Result<Imported>, needle: &str| {
        let e = result.unwrap_err().to_string();
        assert!(e.contains(needle), "{e} (wanted {needle})");
        assert!(store.list().unwrap().is_empty());
    };
    refused(
        store.import_pem(&issued.chain(), &other.read("leaf.key"), None),
        "does not belong to the certificate",
    );
    refused(
        store.import_pem(
            &[issued.read("ca.crt"), issued.read("leaf.crt")].concat(),
            &issued.read("ca.key"),
            None,
        ),
        "out of order",
    );
    refused(
        store.import_pem(b"hello", &issued.read("leaf.key"), None),
        "no certificate",
    );
    refused(
        store.import_pem(&issued.chain(), b"nothing", None),
        "no private key",
    );
    refused(
        store.import_pfx(&issued.pfx("right", false), "wrong", None),
        "password is wrong",
    );
    refused(
        store.import_pfx(b"not a pfx at all", "", None),
        "not a PKCS#12",
    );
    // An Ed448 key: a valid certificate the server has no signer for.
    let dir = issued.dir.path();
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "ed448", "-nodes", "-keyout", "ed.key", "-out", "ed.crt",
            "-subj", "/CN=ed", "-days", "5",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    refused(
        store.import_pem(&issued.read("ed.crt"), &issued.read("ed.key"), None),
        "cannot use",
    );
    // A name already taken.
    store
        .import_pem(&issued.chain(), &issued.read("leaf.key"), Some("www"))
        .unwrap();
    let e = store
        .import_pem(&other.chain(), &other.read("leaf.key"), Some("WWW"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already certificate"), "{e}");
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn an_expired_certificate_is_imported_with_a_warning_naming_the_dates() {
    let (_dir, store) = store();
    let issued = Issued::new("1");
    let mut info = store
        .import_pem(&issued.chain(), &issued.read("leaf.key"), None)
        .unwrap()
        .info;
    let later =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs((info.not_after + 3600) as u64);
    let warnings = info.validity_warnings(later);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("expired on"), "{warnings:?}");
    assert!(
        warnings[0].contains(&info::format_time(info.not_after)),
        "{warnings:?}"
    );
    info.not_before += 10 * 86400;
    let early = info.validity_warnings(std::time::SystemTime::now());
    assert!(early[0].contains("not valid until"), "{early:?}");
}

#[test]
fn pfx_files_as_windows_exports_them_are_imported() {
    for legacy in [false, true] {
        let (_dir, store) = store();
        let issued = Issued::new("10");
        let got = store
            .import_pfx(&issued.pfx("s3cret", legacy), "s3cret", Some("pfx"))
            .unwrap();
        assert_eq!(got.info.subject, "CN=www.example.test", "legacy {legacy}");
        assert_eq!(got.info.chain_len, 2, "the chain is kept, leaf first");
        store.load("pfx").unwrap().certified_key().unwrap();
    }
}

#[test]
fn self_signed_certificates_are_made_with_either_key() {
    let (_dir, store) = store();
    let names = vec!["localhost".to_string(), "web01".to_string()];
    let ec = store
        .create_self_signed(&names, Some("ec"), NewKey::EcdsaP256, 365)
        .unwrap();
    assert_eq!(ec.key.to_string(), "ECDSA 256");
    assert!(ec.self_signed);
    assert_eq!(ec.subject, "CN=localhost");
    assert_eq!(ec.sans, names);
    assert!(ec
        .validity_warnings(std::time::SystemTime::now())
        .is_empty());
    let rsa = store
        .create_self_signed(&names[..1], None, NewKey::Rsa2048, 30)
        .unwrap();
    assert_eq!(rsa.key.to_string(), "RSA 2048");
    assert_eq!(store.list().unwrap().len(), 2);
    for t in [&ec.thumbprint, &rsa.thumbprint] {
        store.load(t).unwrap().certified_key().unwrap();
    }
    assert!(store
        .create_self_signed(&[], None, NewKey::EcdsaP256, 1)
        .is_err());
}
