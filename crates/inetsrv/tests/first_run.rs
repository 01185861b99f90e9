//! The first run as a new user makes it: as root, with the state directory
//! inside a 0700 directory (a home), the default configuration, and
//! workers running as the default pool's identity. Workers get their
//! configuration and content directories from the service; they never
//! traverse the state directory's parents, and content is confined to the
//! directories they were handed.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::log_lines;
use common::web::{write, Web};

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The real user id of a process.
fn uid_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn the_default_site_is_served_from_a_0700_home() {
    let mut web = Web::prepare();
    let home = web.dir.path().to_path_buf();
    assert_eq!(
        std::fs::metadata(&home).unwrap().permissions().mode() & 0o777,
        0o700,
        "the state directory's parent is private, as a home is"
    );
    web.launch();
    let got = web.curl("/", &[]);
    assert_eq!(got.status, 200, "{}", web.log());
    assert!(got.text().contains("Under Construction"), "{}", got.text());

    let pids = web.worker_pids("DefaultAppPool", "running");
    assert_eq!(pids.len(), 1, "{}", web.pools());
    let uid = uid_of(pids[0]);
    if running_as_root() {
        // NetworkService: www-data (or nobody), never root.
        assert_ne!(uid, 0, "the worker kept root's rights");
        let user = web.pool("DefaultAppPool")["workers"][0]["user"].clone();
        assert!(user == "www-data" || user == "nobody", "{user}");
    } else {
        assert_eq!(uid, std::fs::metadata("/proc/self").unwrap().uid());
    }
    // Nothing on its command line points into the state directory.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        !cmdline.contains(web.state().to_str().unwrap()),
        "{cmdline}"
    );
    // A file added later, and a new virtual directory elsewhere in the
    // home, are served too (the service hands the new directory over).
    write(&web.www(), "later.htm", "later");
    assert_eq!(web.curl("/later.htm", &[]).text(), "later");
    let docs = home.join("docs");
    write(&docs, "doc.htm", "a document");
    web.cli_ok(&["vdir", "create", "1", "docs", docs.to_str().unwrap()]);
    assert_eq!(web.curl("/docs/doc.htm", &[]).text(), "a document");
}

#[test]
fn content_is_confined_to_the_directories_handed_over() {
    let mut web = Web::prepare();
    write(&web.www(), "inside/page.htm", "inside");
    // A world-readable file outside every content directory, reached by
    // links: absolute, relative, and a directory link.
    std::os::unix::fs::symlink("/etc/passwd", web.www().join("passwd.htm")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/hostname", web.www().join("host.htm"))
        .unwrap();
    std::os::unix::fs::symlink("/etc", web.www().join("etc")).unwrap();
    std::os::unix::fs::symlink("inside/page.htm", web.www().join("alias.htm")).unwrap();
    web.launch();
    assert_eq!(web.curl("/alias.htm", &[]).text(), "inside");
    for path in ["/passwd.htm", "/host.htm", "/etc/passwd"] {
        let got = web.curl(path, &[]);
        assert_eq!(got.status, 404, "{path}: {}", got.text());
        assert!(!got.text().contains("root:"), "{path}");
    }
    // A property opens one virtual directory to its links; it is refused
    // on a key where it would mean nothing.
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AllowSymlinksOutsideRoot", "TRUE"]);
    web.wait_for(
        "links out of the root followed",
        Duration::from_secs(10),
        || web.curl("/passwd.htm", &[]).status == 200,
    );
    assert!(web.curl("/passwd.htm", &[]).text().contains("root:"));
    assert_eq!(web.curl("/alias.htm", &[]).text(), "inside");
    web.cli_ok(&["mb", "create", "W3SVC/1/ROOT/inside", "IIsWebDirectory"]);
    web.cli_fails_with(
        &[
            "mb",
            "set",
            "W3SVC/1/ROOT/inside/AllowSymlinksOutsideRoot",
            "TRUE",
        ],
        "AllowSymlinksOutsideRoot",
    );
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/AllowSymlinksOutsideRoot",
        "FALSE",
    ]);
    web.wait_for("links confined again", Duration::from_secs(10), || {
        web.curl("/passwd.htm", &[]).status == 404
    });
}

#[test]
fn a_pool_whose_worker_cannot_start_answers_at_once_and_says_why() {
    let mut web = Web::prepare();
    write(&web.www(), "a.htm", "a");
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/DefaultAppPool/AppPoolIdentityType",
        "3",
    ]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/DefaultAppPool/WAMUserName",
        "no-such-user-for-inetsrv",
    ]);
    web.launch();
    let started = Instant::now();
    let got = web.curl("/a.htm", &["--max-time", "60"]);
    if !running_as_root() {
        // Only root can run a pool as another user: the identity is not
        // used, and the worker runs as the service's own user.
        assert_eq!(got.text(), "a");
        return;
    }
    assert_eq!(got.status, 503, "{}", web.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the request waited {:?} for a worker that could not start",
        started.elapsed()
    );
    let pool = web.pool("DefaultAppPool");
    let why = pool["last_failure"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("no Unix user 'no-such-user-for-inetsrv'"),
        "{pool}"
    );
    let listed = web.cli_ok(&["pool", "list"]);
    assert!(listed.contains("no-such-user-for-inetsrv"), "{listed}");
    // The server's own output says it too, not only its log file.
    assert!(
        web.log().contains("no-such-user-for-inetsrv"),
        "{}",
        web.log()
    );
    web.wait_for("the 503 in HTTPERR", Duration::from_secs(10), || {
        log_lines(&web.state().join("logs/HTTPERR"))
            .iter()
            .any(|l| l.contains(" 503 ") && l.contains("AppOffline"))
    });
}

#[test]
fn content_the_pools_identity_cannot_read_is_reported_before_a_request() {
    let mut web = Web::prepare();
    write(&web.www(), "a.htm", "a");
    std::fs::set_permissions(web.www(), std::fs::Permissions::from_mode(0o700)).unwrap();
    web.launch();
    let listed = web.cli_ok(&["site", "list"]);
    if !running_as_root() {
        // The pool runs as the owner of the directory.
        assert!(!listed.contains("warning"), "{listed}");
        assert_eq!(web.curl("/a.htm", &[]).text(), "a");
        return;
    }
    let www = web.www().display().to_string();
    assert!(
        listed.contains(&format!("warning: {www} (mode 700")) && listed.contains("chmod o+rx"),
        "{listed}"
    );
    assert!(
        web.summary.iter().any(|l| l.contains("warning:")),
        "{:?}",
        web.summary
    );
    // A request gets IIS's answer for a resource its ACL denies, at once.
    let got = web.curl("/a.htm", &["--max-time", "20"]);
    assert_eq!(got.status, 401, "{}", got.text());
    // Fixed while running: the next look finds nothing to say.
    std::fs::set_permissions(web.www(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let listed = web.cli_ok(&["site", "list"]);
    assert!(!listed.contains("warning"), "{listed}");
    assert_eq!(web.curl("/a.htm", &[]).text(), "a");
}

#[test]
fn a_release_switched_by_a_symbolic_link_is_served() {
    let mut web = Web::prepare();
    let home = web.dir.path().to_path_buf();
    write(&home.join("release-1"), "v.htm", "one");
    write(&home.join("release-2"), "v.htm", "two");
    let current = home.join("current");
    std::os::unix::fs::symlink("release-1", &current).unwrap();
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/Path", current.to_str().unwrap()]);
    web.launch();
    assert_eq!(web.curl("/v.htm", &[]).text(), "one");
    // Deploy as release tools do: a new link renamed over the old one.
    std::os::unix::fs::symlink("release-2", home.join("next")).unwrap();
    std::fs::rename(home.join("next"), &current).unwrap();
    web.wait_for("the new release", Duration::from_secs(10), || {
        web.curl("/v.htm", &[]).text() == "two"
    });
    // A directory created after the configuration named it is served too.
    let later = home.join("later");
    web.cli_ok(&["vdir", "create", "1", "later", home.to_str().unwrap()]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/later/Path",
        later.to_str().unwrap(),
    ]);
    assert_eq!(web.curl("/later/l.htm", &[]).status, 404);
    write(&later, "l.htm", "made later");
    web.wait_for("the new directory", Duration::from_secs(10), || {
        web.curl("/later/l.htm", &[]).text() == "made later"
    });
}
