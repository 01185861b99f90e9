//! A real Kerberos realm for the RPC tests: MIT krb5's KDC (apt packages
//! krb5-kdc, krb5-admin-server and krb5-user, installed by
//! scripts/test.sh) in a temporary directory, on a free loopback port,
//! with the user `alice` (password `Secret-1`) and the service
//! `host/localhost`, whose keys go to a keytab for the server. A
//! credential cache holds alice's TGT and her ticket for host/localhost,
//! for clients that read one (Impacket). One realm serves every test of
//! the binary; the KDC stops when the tests end.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const REALM: &str = "INETSRV.TEST";

pub struct Kdc {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    /// The shell that runs the KDC: it stops the KDC when this pipe
    /// closes, that is when the test process ends (statics are never
    /// dropped).
    _lifeline: std::process::ChildStdin,
    _shell: Child,
}

impl Kdc {
    /// The realm's client configuration (KRB5_CONFIG for clients).
    pub fn config(&self) -> PathBuf {
        self.root.join("krb5.conf")
    }
    /// The keytab of host/localhost (kvno 2: aes256 and aes128 keys).
    pub fn keytab(&self) -> PathBuf {
        self.root.join("krb5.keytab")
    }
    /// alice's credential cache (KRB5CCNAME).
    pub fn ccache(&self) -> PathBuf {
        self.root.join("ccache")
    }
    /// The environment a Kerberos client of this realm runs with.
    pub fn client_env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("KRB5_CONFIG", self.config()),
            ("KRB5CCNAME", self.ccache()),
        ]
    }

    fn admin(&self, query: &str) {
        run(Command::new("kadmin.local")
            .args(["-r", REALM, "-q", query])
            .envs(self.server_env()));
    }

    fn server_env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("KRB5_CONFIG", self.config()),
            ("KRB5_KDC_PROFILE", self.root.join("kdc.conf")),
        ]
    }

    /// A keytab for another service (host/elsewhere): alice's ticket for
    /// host/localhost finds no key in it.
    pub fn other_keytab(&self) -> PathBuf {
        static MADE: OnceLock<PathBuf> = OnceLock::new();
        MADE.get_or_init(|| {
            let path = self.root.join("other.keytab");
            self.admin("addprinc -randkey host/elsewhere");
            self.admin(&format!("ktadd -k {} host/elsewhere", path.display()));
            path
        })
        .clone()
    }

    /// A second credential cache of alice's with her TGT only (kinit and
    /// no kvno): a client must ask the KDC for the service ticket.
    pub fn tgt_only_ccache(&self) -> PathBuf {
        static MADE: OnceLock<PathBuf> = OnceLock::new();
        MADE.get_or_init(|| {
            let path = self.root.join("tgt-only.ccache");
            kinit(self, &path);
            path
        })
        .clone()
    }
}

/// alice's TGT into `ccache`: kinit reads the password from stdin; the
/// KDC may take a moment to listen.
fn kinit(kdc: &Kdc, ccache: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut child = Command::new("kinit")
            .arg(format!("alice@{REALM}"))
            .env("KRB5_CONFIG", kdc.config())
            .env("KRB5CCNAME", ccache)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kinit (apt package krb5-user)");
        {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(b"Secret-1\n");
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kinit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/test.sh installs MIT krb5)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The realm, set up on first use.
pub fn kdc() -> &'static Kdc {
    static KDC: OnceLock<Kdc> = OnceLock::new();
    KDC.get_or_init(start)
}

fn start() -> Kdc {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let port = free_port();
    std::fs::write(
        root.join("krb5.conf"),
        format!(
            "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n \
             dns_lookup_realm = false\n rdns = false\n dns_canonicalize_hostname = false\n\
             [realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("kdc.conf"),
        format!(
            "[kdcdefaults]\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\
             [realms]\n {REALM} = {{\n  database_name = {db}\n  key_stash_file = {stash}\n  \
             acl_file = {acl}\n  supported_enctypes = aes256-cts-hmac-sha1-96:normal \
             aes128-cts-hmac-sha1-96:normal\n  max_life = 2h\n }}\n\
             [logging]\n kdc = FILE:{log}\n",
            db = root.join("principal").display(),
            stash = root.join("stash").display(),
            acl = root.join("kadm5.acl").display(),
            log = root.join("kdc.log").display(),
        ),
    )
    .unwrap();
    let env = [
        ("KRB5_CONFIG", root.join("krb5.conf")),
        ("KRB5_KDC_PROFILE", root.join("kdc.conf")),
    ];
    run(Command::new("kdb5_util")
        .args(["create", "-s", "-r", REALM, "-P", "master-key-pw"])
        .envs(env.clone()));
    let mut shell: Child = Command::new("sh")
        .args([
            "-c",
            &format!("krb5kdc -n -r {REALM} & kdc=$!; read _; kill $kdc"),
        ])
        .envs(env.clone())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh and krb5kdc (apt package krb5-kdc)");
    let kdc = Kdc {
        _dir: dir,
        root,
        _lifeline: shell.stdin.take().unwrap(),
        _shell: shell,
    };
    kdc.admin("addprinc -pw Secret-1 alice");
    kdc.admin("addprinc -randkey host/localhost");
    kdc.admin(&format!(
        "ktadd -k {} host/localhost",
        kdc.keytab().display()
    ));
    kinit(&kdc, &kdc.ccache());
    run(Command::new("kvno")
        .arg(format!("host/localhost@{REALM}"))
        .envs(kdc.client_env()));
    kdc
}
