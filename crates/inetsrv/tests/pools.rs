//! Application pools and worker processes, end to end: the real server,
//! real workers killed, hung, recycled and replaced under load, and the
//! site, vdir and pool verbs changing a running server.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::web::{curl, write, Web};

/// Requests sent by a load generator and how they ended.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Failures after `mark` was set.
    failed_after_mark: AtomicU64,
    ok_after_mark: AtomicU64,
    mark: AtomicBool,
    /// How the first failure looked, for the assertion's message.
    first_failure: std::sync::Mutex<Option<String>>,
}

/// Waits until the load has had `more` more good answers than now: it is
/// flowing (a kill or recycle then lands among requests in flight).
fn flowing(web: &Web, tally: &Tally, more: u64) {
    let target = tally.ok.load(Ordering::SeqCst) + more;
    web.wait_for("the load to flow", Duration::from_secs(20), || {
        tally.ok.load(Ordering::SeqCst) >= target
    });
}

/// Keeps `connections` keep-alive connections busy with GETs of `path`
/// until `stop`; a failure is any answer but 200 with `body`, or none.
fn load(
    port: u16,
    path: &str,
    body: &'static str,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Tally>, std::thread::JoinHandle<()>) {
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let path = path.to_string();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..connections {
                let (t, stop, path) = (t.clone(), stop.clone(), path.clone());
                tasks.push(tokio::spawn(async move {
                    let request = format!("GET {path} HTTP/1.1\r\nHost: load\r\n\r\n");
                    let mut conn: Option<common::Client> = None;
                    while !stop.load(Ordering::SeqCst) {
                        if conn.is_none() {
                            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                                Ok(_) => conn = Some(common::Client::connect(port).await),
                                Err(e) => {
                                    record(&t, Err(format!("connect: {e}")));
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                    continue;
                                }
                            }
                        }
                        let c = conn.as_mut().unwrap();
                        c.send(request.as_bytes()).await;
                        let outcome = match c.read(false, Duration::from_secs(20)).await {
                            Some(r) => {
                                let good = r.status == 200 && r.body == body.as_bytes();
                                if r.closes() {
                                    conn = None;
                                }
                                if good {
                                    Ok(())
                                } else {
                                    Err(format!(
                                        "status {}: {}",
                                        r.status,
                                        String::from_utf8_lossy(&r.body)
                                    ))
                                }
                            }
                            None => {
                                conn = None;
                                Err("no answer (connection closed or 20 s passed)".to_string())
                            }
                        };
                        record(&t, outcome);
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    });
    (tally, handle)
}

fn record(t: &Tally, outcome: Result<(), String>) {
    let after = t.mark.load(Ordering::SeqCst);
    if let Err(why) = &outcome {
        let mut first = t.first_failure.lock().unwrap();
        first.get_or_insert_with(|| why.clone());
    }
    if outcome.is_ok() {
        t.ok.fetch_add(1, Ordering::SeqCst);
        if after {
            t.ok_after_mark.fetch_add(1, Ordering::SeqCst);
        }
    } else {
        t.failed.fetch_add(1, Ordering::SeqCst);
        if after {
            t.failed_after_mark.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

fn one_pid(web: &Web, pool: &str) -> u32 {
    let mut pid = 0;
    web.wait_for(
        &format!("a running worker in {pool}"),
        Duration::from_secs(20),
        || {
            pid = web
                .worker_pids(pool, "running")
                .first()
                .copied()
                .unwrap_or(0);
            pid != 0
        },
    );
    pid
}

#[test]
fn a_killed_worker_is_replaced_and_the_other_pool_never_notices() {
    let mut web = Web::prepare();
    web.cli_ok(&["pool", "create", "PoolA"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AppPoolId", "PoolA"]);
    let (site_b, port_b) = web.second_site("PoolB");
    write(&web.www(), "a.txt", "site a");
    write(&site_b, "b.txt", "site b");
    web.launch();

    let stop = Arc::new(AtomicBool::new(false));
    let (a, load_a) = load(web.port, "/a.txt", "site a", 4, stop.clone());
    let (b, load_b) = load(port_b, "/b.txt", "site b", 4, stop.clone());
    let victim = one_pid(&web, "PoolA");
    let other = one_pid(&web, "PoolB");
    flowing(&web, &a, 100);
    flowing(&web, &b, 100);
    kill(victim, "KILL");
    a.mark.store(true, Ordering::SeqCst);
    // The pool recovers: a new worker serves it.
    web.wait_for("a replacement worker", Duration::from_secs(20), || {
        web.worker_pids("PoolA", "running")
            .iter()
            .any(|p| *p != victim)
    });
    let served_before = a.ok_after_mark.load(Ordering::SeqCst);
    web.wait_for(
        "requests served by the replacement",
        Duration::from_secs(20),
        || a.ok_after_mark.load(Ordering::SeqCst) > served_before + 50,
    );
    stop.store(true, Ordering::SeqCst);
    load_a.join().unwrap();
    load_b.join().unwrap();

    assert_eq!(
        b.failed.load(Ordering::SeqCst),
        0,
        "the other pool saw errors"
    );
    assert!(b.ok.load(Ordering::SeqCst) > 100, "the other pool was busy");
    assert_eq!(
        web.worker_pids("PoolB", "running"),
        vec![other],
        "the other pool's worker was untouched"
    );
    // Requests the killed worker held fail (as in IIS); no more than those.
    assert!(
        a.failed.load(Ordering::SeqCst) <= 8,
        "{} failures",
        a.failed.load(Ordering::SeqCst)
    );
    assert!(web.log().contains("worker process failed"), "{}", web.log());
}

#[test]
fn rapid_fail_protection_stops_a_pool_and_pool_start_restores_it() {
    let mut web = Web::prepare();
    write(&web.www(), "a.txt", "up");
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/DefaultAppPool/RapidFailProtectionMaxCrashes",
        "2",
    ]);
    web.launch();

    for _ in 0..2 {
        assert_eq!(web.curl("/a.txt", &[]).text(), "up");
        let pid = one_pid(&web, "DefaultAppPool");
        kill(pid, "KILL");
        web.wait_for("the worker to be gone", Duration::from_secs(10), || {
            !web.worker_pids("DefaultAppPool", "running").contains(&pid)
        });
    }
    web.wait_for("the pool to stop", Duration::from_secs(10), || {
        web.pools()[0]["state"] == "stopped"
    });
    let listed = web.cli_ok(&["pool", "list"]);
    assert!(listed.contains("rapid-fail protection"), "{listed}");
    let state = web.cli_ok(&["mb", "get", "W3SVC/AppPools/DefaultAppPool/AppPoolState"]);
    assert!(state.trim_end().ends_with('4'), "{state}");
    let refused = web.curl("/a.txt", &[]);
    assert_eq!(refused.status, 503);
    assert!(web.worker_pids("DefaultAppPool", "running").is_empty());

    assert!(web
        .cli_ok(&["pool", "start", "DefaultAppPool"])
        .contains("started"));
    assert_eq!(web.curl("/a.txt", &[]).text(), "up");

    // LoadBalancerCapabilities 1: a stopped pool drops connections.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/DefaultAppPool/LoadBalancerCapabilities",
        "1",
    ]);
    web.cli_ok(&["pool", "stop", "DefaultAppPool"]);
    web.wait_for("dropped connections", Duration::from_secs(10), || {
        web.curl("/a.txt", &[]).status == 0
    });
    web.cli_ok(&["pool", "start", "DefaultAppPool"]);
    assert_eq!(web.curl("/a.txt", &[]).text(), "up");
}

#[test]
fn recycling_under_load_loses_no_request() {
    let mut web = Web::prepare();
    write(&web.www(), "r.txt", "recycled");
    web.launch();
    // A query keeps the listener's cache out of it: every request reaches
    // a worker.
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, handle) = load(web.port, "/r.txt?nocache", "recycled", 6, stop.clone());
    let first = one_pid(&web, "DefaultAppPool");
    let mut seen = vec![first];
    for _ in 0..4 {
        flowing(&web, &tally, 100);
        let out = web.cli_ok(&["pool", "recycle", "DefaultAppPool"]);
        assert!(out.contains("recycled"), "{out}");
        web.wait_for("the new worker", Duration::from_secs(20), || {
            let running = web.worker_pids("DefaultAppPool", "running");
            running.len() == 1 && !seen.contains(&running[0])
        });
        seen.push(web.worker_pids("DefaultAppPool", "running")[0]);
    }
    flowing(&web, &tally, 100);
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    assert_eq!(
        tally.failed.load(Ordering::SeqCst),
        0,
        "requests failed during recycles, the first: {:?}; log:\n{}",
        tally.first_failure.lock().unwrap(),
        web.log()
    );
    assert!(tally.ok.load(Ordering::SeqCst) > 200);
    assert_eq!(seen.len(), 5);

    // Without overlap: the old worker leaves first; still nothing lost.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/DefaultAppPool/DisallowOverlappingRotation",
        "TRUE",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, handle) = load(web.port, "/r.txt?nocache", "recycled", 4, stop.clone());
    flowing(&web, &tally, 100);
    let before = one_pid(&web, "DefaultAppPool");
    web.cli_ok(&["pool", "recycle", "DefaultAppPool"]);
    web.wait_for("the new worker", Duration::from_secs(20), || {
        web.worker_pids("DefaultAppPool", "running")
            .iter()
            .any(|p| *p != before)
    });
    flowing(&web, &tally, 100);
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    assert_eq!(
        tally.failed.load(Ordering::SeqCst),
        0,
        "the first failure: {:?}",
        tally.first_failure.lock().unwrap()
    );
}

#[test]
fn periodic_restart_requests_web_gardens_and_hung_workers() {
    let mut web = Web::prepare();
    write(&web.www(), "p.txt", "p");
    web.cli_ok(&["pool", "create", "Garden", "--max-processes", "2"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AppPoolId", "Garden"]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Garden/PeriodicRestartRequests",
        "20",
    ]);
    web.cli_ok(&["mb", "set", "W3SVC/AppPools/Garden/PingInterval", "1"]);
    web.cli_ok(&["mb", "set", "W3SVC/AppPools/Garden/PingResponseTime", "2"]);
    web.launch();

    assert_eq!(web.curl("/p.txt?x", &[]).text(), "p");
    web.wait_for(
        "two workers (a web garden)",
        Duration::from_secs(20),
        || web.worker_pids("Garden", "running").len() == 2,
    );
    let garden = web.worker_pids("Garden", "running");

    // 20 requests per worker, then each asks to be replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, handle) = load(web.port, "/p.txt?x", "p", 4, stop.clone());
    web.wait_for("both workers replaced", Duration::from_secs(30), || {
        let now = web.worker_pids("Garden", "running");
        now.len() == 2 && now.iter().all(|p| !garden.contains(p))
    });
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    assert_eq!(
        tally.failed.load(Ordering::SeqCst),
        0,
        "the first failure: {:?}",
        tally.first_failure.lock().unwrap()
    );

    // A hung worker stops answering pings and is replaced. (Once the
    // recycles above have settled: a worker being replaced is past pings
    // and waits out ShutdownTimeLimit instead.)
    web.wait_for("a settled garden", Duration::from_secs(20), || {
        let garden = web.pool("Garden");
        let workers = garden["workers"].as_array().unwrap().clone();
        workers.len() == 2 && workers.iter().all(|w| w["state"] == "running")
    });
    let hung = web.worker_pids("Garden", "running")[0];
    kill(hung, "STOP");
    web.wait_for(
        "the hung worker to be killed",
        Duration::from_secs(20),
        || {
            !web.worker_pids("Garden", "running").contains(&hung)
                && !web.worker_pids("Garden", "stopping").contains(&hung)
        },
    );
    assert!(web.log().contains("no answer to ping"), "{}", web.log());
    assert_eq!(web.curl("/p.txt?x", &[]).text(), "p");
}

#[test]
fn startup_and_shutdown_time_limits_are_enforced() {
    let mut web = Web::prepare();
    write(&web.www(), "s.txt", "s");
    // Workers of pool Stuck hang before registering (fault injection).
    web.env
        .push(("INETSRV_TEST_STALL_WORKER_START".into(), "Stuck".into()));
    web.cli_ok(&["pool", "create", "Stuck"]);
    web.cli_ok(&["mb", "set", "W3SVC/AppPools/Stuck/StartupTimeLimit", "1"]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Stuck/RapidFailProtectionMaxCrashes",
        "2",
    ]);
    web.cli_ok(&["pool", "create", "Slow"]);
    web.cli_ok(&["mb", "set", "W3SVC/AppPools/Slow/ShutdownTimeLimit", "2"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AppPoolId", "Slow"]);
    web.cli_ok(&[
        "vdir",
        "create",
        "1",
        "stuck",
        web.www().to_str().unwrap(),
        "--app",
        "--pool",
        "Stuck",
    ]);
    web.launch();

    // A worker that never registers is killed after StartupTimeLimit and
    // counts as a failure; the request waiting for it is answered 503 at
    // once (it would otherwise wait out the queue timeout), and pool list
    // says why. The next request asks for another worker, which fails
    // too, and rapid-fail protection stops the pool.
    let started = Instant::now();
    let got = web.curl("/stuck/s.txt", &["--max-time", "20"]);
    assert_eq!(got.status, 503, "{}", web.log());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let stuck = web.pool("Stuck");
    assert_eq!(stuck["state"], "started", "{stuck}");
    let why = stuck["last_failure"].as_str().unwrap_or_default();
    assert!(
        why.contains("failed to start") && why.contains("StartupTimeLimit"),
        "{stuck}"
    );
    assert_eq!(web.curl("/stuck/s.txt", &["--max-time", "20"]).status, 503);
    let log = web.log();
    assert_eq!(
        log.matches("reason=killed: StartupTimeLimit exceeded")
            .count(),
        2,
        "{log}"
    );
    assert!(log.contains("rapid-fail protection"), "{log}");
    // The other pool serves on.
    assert_eq!(web.curl("/s.txt", &[]).text(), "s");

    // A worker that does not exit when told is killed after
    // ShutdownTimeLimit; its replacement serves meanwhile.
    let old = one_pid(&web, "Slow");
    kill(old, "STOP");
    web.cli_ok(&["pool", "recycle", "Slow"]);
    assert_eq!(web.curl("/s.txt", &[]).text(), "s");
    web.wait_for("the old worker killed", Duration::from_secs(15), || {
        !std::path::Path::new(&format!("/proc/{old}")).exists()
            || std::fs::read_to_string(format!("/proc/{old}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(
        web.log().contains("ShutdownTimeLimit exceeded"),
        "{}",
        web.log()
    );
}

#[test]
fn recycling_by_time_schedule_memory_and_configuration_change() {
    let mut web = Web::prepare();
    write(&web.www(), "t.txt", "t");
    let www = web.www().to_str().unwrap().to_string();
    for (pool, property, value) in [
        ("Timed", "PeriodicRestartTime", "1"),
        ("Sched", "PeriodicRestartSchedule", ""),
        ("Mem", "PeriodicRestartPrivateMemory", "1024"),
        ("Conf", "PeriodicRestartRequests", "0"),
    ] {
        web.cli_ok(&["pool", "create", pool]);
        web.cli_ok(&[
            "mb",
            "set",
            &format!("W3SVC/AppPools/{pool}/{property}"),
            value,
        ]);
        let alias = pool.to_lowercase();
        web.cli_ok(&["vdir", "create", "1", &alias, &www, "--app", "--pool", pool]);
    }
    web.launch();
    let mut first = std::collections::HashMap::new();
    for pool in ["Timed", "Sched", "Mem", "Conf"] {
        let url = format!("/{}/t.txt?x", pool.to_lowercase());
        assert_eq!(web.curl(&url, &[]).text(), "t");
        first.insert(pool, one_pid(&web, pool));
    }
    // The next minute on the local clock (PeriodicRestartSchedule's), set
    // while the worker runs and far enough ahead that it is not missed.
    let date = |format: &str, offset: &str| {
        let out = std::process::Command::new("date")
            .args([format, "-d", offset])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    if date("+%S", "now").parse::<u32>().unwrap() >= 55 {
        std::thread::sleep(Duration::from_secs(6));
    }
    let next_minute = date("+%H:%M", "+1 minute");
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Sched/PeriodicRestartSchedule",
        &next_minute,
    ]);
    let replaced = |pool: &str| {
        let now = web.worker_pids(pool, "running");
        !now.is_empty() && !now.contains(&first[pool])
    };

    // Private memory over the limit (1 MB: every worker is): recycled at
    // the next memory check. Then the same for virtual memory.
    web.wait_for("a memory recycle", Duration::from_secs(30), || {
        replaced("Mem")
    });
    assert!(
        web.log().contains("> PeriodicRestartPrivateMemory"),
        "{}",
        web.log()
    );
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Mem/PeriodicRestartPrivateMemory",
        "0",
    ]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Mem/PeriodicRestartMemory",
        "1024",
    ]);
    web.wait_for("a virtual memory recycle", Duration::from_secs(30), || {
        web.log().contains("> PeriodicRestartMemory")
    });

    // A setting the worker was started with changes: recycled, unless
    // DisallowRotationOnConfigChange.
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Conf/PeriodicRestartRequests",
        "100000",
    ]);
    web.wait_for("a recycle on change", Duration::from_secs(20), || {
        replaced("Conf")
    });
    let conf = one_pid(&web, "Conf");
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Conf/DisallowRotationOnConfigChange",
        "TRUE",
    ]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/Conf/PeriodicRestartRequests",
        "200000",
    ]);
    assert_eq!(web.curl("/conf/t.txt?x", &[]).text(), "t");
    assert_eq!(web.worker_pids("Conf", "running"), vec![conf]);
    assert!(web.worker_pids("Conf", "stopping").is_empty());

    // Age (one minute) and the schedule (the next minute).
    web.wait_for("a recycle by age", Duration::from_secs(90), || {
        replaced("Timed")
    });
    web.wait_for("a scheduled recycle", Duration::from_secs(90), || {
        replaced("Sched")
    });
    let log = web.log();
    assert!(log.contains("reason=PeriodicRestartTime"), "{log}");
    assert!(log.contains("PeriodicRestartSchedule"), "{log}");
    for pool in ["Timed", "Sched", "Mem", "Conf"] {
        let url = format!("/{}/t.txt?y", pool.to_lowercase());
        assert_eq!(web.curl(&url, &[]).text(), "t", "{pool}");
    }
}

#[test]
fn a_server_on_a_metabase_file_is_administered_through_that_file() {
    let mut web = Web::prepare();
    write(&web.www(), "f.txt", "from a file");
    // The configuration as a file of another name; the server's state
    // (logs, run/, temp/) lives beside it.
    let file = web.state().join("site.xml");
    std::fs::rename(web.state().join("MetaBase.xml"), &file).unwrap();
    web.metabase_file = Some(file.clone());
    web.launch();
    assert_eq!(web.curl("/f.txt", &[]).text(), "from a file");
    // Verbs naming the file reach the running server: live worker PIDs,
    // and a new binding served at once.
    assert!(!web.worker_pids("DefaultAppPool", "running").is_empty());
    let port = common::free_port();
    web.cli_ok(&["site", "bind", "1", &format!(":{port}:")]);
    assert_eq!(
        curl(&format!("http://127.0.0.1:{port}/f.txt"), &[]).text(),
        "from a file"
    );
    // Another file in the same directory is not the server's: the verb
    // works on that file alone.
    let other = web.state().join("other.xml");
    std::fs::copy(&file, &other).unwrap();
    web.metabase_file = Some(other);
    let offline = web.cli_ok(&["--json", "pool", "list"]);
    assert!(offline.contains("not running"), "{offline}");
    web.cli_ok(&["mb", "set", "W3SVC/1/ServerComment", "Other"]);
    web.metabase_file = Some(file);
    let sites = web.cli_ok(&["site", "list"]);
    assert!(
        sites.contains("Default Web Site") && !sites.contains("Other"),
        "{sites}"
    );
}

#[test]
fn sites_bindings_and_vdirs_change_while_running() {
    let web = Web::start();
    write(&web.www(), "index.htm", "site one");
    let docs = web.dir.path().join("docs");
    write(&docs, "readme.txt", "the docs");
    assert_eq!(web.curl("/index.htm", &[]).text(), "site one");

    // A new binding.
    let port2 = common::free_port();
    let out = web.cli_ok(&["site", "bind", "1", &format!(":{port2}:")]);
    assert!(out.contains("added binding"), "{out}");
    assert_eq!(
        curl(&format!("http://127.0.0.1:{port2}/index.htm"), &[]).text(),
        "site one"
    );
    // A new virtual directory, and an application in its own pool.
    web.cli_ok(&[
        "vdir",
        "create",
        "Default Web Site",
        "docs",
        docs.to_str().unwrap(),
    ]);
    assert_eq!(web.curl("/docs/readme.txt", &[]).text(), "the docs");
    web.cli_ok(&["pool", "create", "Apps"]);
    web.cli_ok(&[
        "vdir",
        "create",
        "1",
        "app",
        docs.to_str().unwrap(),
        "--app",
        "--pool",
        "Apps",
    ]);
    assert_eq!(web.curl("/app/readme.txt", &[]).text(), "the docs");
    assert_eq!(
        web.worker_pids("Apps", "running").len(),
        1,
        "the application runs in its pool"
    );
    let vdirs = web.cli_ok(&["vdir", "list", "1"]);
    assert!(
        vdirs.contains("/docs") && vdirs.contains("/app") && vdirs.contains("Apps"),
        "{vdirs}"
    );
    assert!(web
        .cli_err(&["pool", "delete", "Apps"])
        .contains("used by site 1 /app/"));
    web.cli_ok(&["vdir", "delete", "1", "app"]);
    assert_eq!(web.curl("/app/readme.txt", &[]).status, 404);
    web.cli_ok(&["pool", "delete", "Apps"]);

    // A new site.
    let port3 = common::free_port();
    let site_dir = web.dir.path().join("third");
    std::fs::create_dir(&site_dir).unwrap();
    let created = web.cli_ok(&[
        "site",
        "create",
        "Third",
        "--path",
        site_dir.to_str().unwrap(),
        "--port",
        &port3.to_string(),
    ]);
    assert!(created.contains("site 2 (Third) created"), "{created}");
    write(&site_dir, "t.txt", "third site");
    let third = format!("http://127.0.0.1:{port3}/t.txt");
    assert_eq!(curl(&third, &[]).text(), "third site");
    assert!(web
        .cli_err(&[
            "site",
            "create",
            "Clash",
            "--path",
            "/tmp",
            "--port",
            &port3.to_string()
        ])
        .contains("used by site 2"));
    // Stop, start, pause, continue.
    web.cli_ok(&["site", "stop", "Third"]);
    web.wait_for(
        "a stopped site's port to close",
        Duration::from_secs(5),
        || curl(&third, &[]).status == 0,
    );
    let auto = web.cli_ok(&["mb", "get", "W3SVC/2/ServerAutoStart"]);
    assert!(auto.contains("False"), "{auto}");
    web.cli_ok(&["site", "start", "Third"]);
    assert_eq!(curl(&third, &[]).text(), "third site");
    web.cli_ok(&["site", "pause", "2"]);
    assert_eq!(curl(&third, &[]).status, 503);
    let list: serde_json::Value =
        serde_json::from_str(&web.cli_ok(&["--json", "site", "list"])).unwrap();
    assert_eq!(list[1]["state"], "paused");
    web.cli_ok(&["site", "continue", "2"]);
    assert_eq!(curl(&third, &[]).text(), "third site");
    // adsutil's way: ServerCommand.
    web.cli_ok(&["mb", "set", "W3SVC/2/ServerCommand", "2"]);
    web.wait_for(
        "ServerCommand 2 to stop the site",
        Duration::from_secs(10),
        || curl(&third, &[]).status == 0,
    );
    assert!(web
        .cli_ok(&["mb", "get", "W3SVC/2/ServerState"])
        .contains(": (INTEGER) 4"));
    web.cli_ok(&["site", "delete", "Third"]);
    assert!(!web.cli_ok(&["site", "list"]).contains("Third"));
    assert!(web
        .cli_err(&["site", "stop", "Third"])
        .contains("no site 'Third'"));
}

#[test]
fn ctrl_c_lets_requests_in_progress_finish() {
    let mut web = Web::start();
    // Larger than what socket buffers hold, sent slowly: the worker is
    // still sending when the signal comes.
    let big: Vec<u8> = (0..32_000_000u32).map(|i| (i % 7) as u8).collect();
    write(&web.www(), "big.bin", &big);
    let url = web.url("/big.bin");
    let download = std::thread::spawn(move || curl(&url, &["--limit-rate", "10M"]));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    web.signal("INT");
    let got = download.join().unwrap();
    assert_eq!(
        (got.status, got.body.len()),
        (200, big.len()),
        "the download was cut"
    );
    assert!(got.body == big);
    let status = web.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited for the download"
    );
    let said = web.stdout_lines(Duration::from_millis(100));
    assert!(said.iter().any(|l| l == "stopped"), "{said:?}");
}

#[test]
fn idle_workers_shut_down_after_idle_timeout() {
    let mut web = Web::prepare();
    write(&web.www(), "i.txt", "idle");
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/DefaultAppPool/IdleTimeout",
        "1",
    ]);
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/AppPools/DefaultAppPool/PingInterval",
        "5",
    ]);
    web.launch();
    assert_eq!(web.curl("/i.txt", &[]).text(), "idle");
    let pid = one_pid(&web, "DefaultAppPool");
    web.wait_for("the idle worker to exit", Duration::from_secs(90), || {
        web.worker_pids("DefaultAppPool", "running").is_empty()
            && web.worker_pids("DefaultAppPool", "stopping").is_empty()
    });
    assert!(web.log().contains("idle for IdleTimeout"));
    // The next request starts a new one.
    assert_eq!(web.curl("/i.txt?again", &[]).text(), "idle");
    assert_ne!(one_pid(&web, "DefaultAppPool"), pid);
}

#[test]
fn a_crashed_workers_unanswered_request_gets_503() {
    use std::io::{Read, Write as _};
    let web = Web::start();
    let upload = web.writable_folder("upload");
    web.allow_writes("upload");
    web.wait_for("AccessWrite", Duration::from_secs(10), || {
        web.curl("/upload/first.txt", &["-X", "PUT", "--data-binary", "x"])
            .status
            == 201
    });
    let pid = web.worker_pids("DefaultAppPool", "running")[0];
    // An upload whose body has only begun: the worker holds the request
    // (its temporary file shows it) when it dies.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    client
        .write_all(
            b"PUT /upload/slow.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial",
        )
        .unwrap();
    web.wait_for(
        "the worker to hold the upload",
        Duration::from_secs(10),
        || {
            std::fs::read_dir(&upload)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".inetsrv-put-"))
        },
    );
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    // No response had begun: 503, as the README says, and HTTPERR says why.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    web.wait_for("the HTTPERR line", Duration::from_secs(10), || {
        common::log_lines(&web.state().join("logs/HTTPERR"))
            .iter()
            .any(|l| {
                l.contains("/upload/slow.txt") && l.contains("Connection_Abandoned_By_AppPool")
            })
    });
    // A new worker serves the next request.
    assert_eq!(web.curl("/", &[]).status, 200);
}

/// The workers whose parent is `parent`, by their command line.
fn children_running(parent: u32, needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map(|(_, a)| a).unwrap_or_default();
            let mut fields = after.split(' ');
            let state = fields.next().unwrap_or_default();
            let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == parent
                && state != "Z"
                && String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(needle)
        })
        .collect()
}

#[test]
fn workers_do_not_outlive_a_killed_service() {
    let mut web = Web::prepare();
    write(&web.www(), "s.txt", "s");
    // A worker that hangs before it reads anything from the service (as a
    // module stuck in a loop would): it never sees a Stop.
    web.env
        .push(("INETSRV_TEST_STALL_WORKER_START".into(), "Stuck".into()));
    web.cli_ok(&["pool", "create", "Stuck"]);
    web.cli_ok(&["mb", "set", "W3SVC/1/ROOT/AppPoolId", "Stuck"]);
    web.launch();
    let service = web.pid();
    let url = web.url("/s.txt");
    let request = std::thread::spawn(move || common::web::curl(&url, &["--max-time", "5"]));
    let mut stuck = Vec::new();
    web.wait_for("the stuck worker", Duration::from_secs(10), || {
        stuck = children_running(service, "worker --pool Stuck");
        !stuck.is_empty()
    });
    web.signal("KILL");
    let _ = web.wait_exit(Duration::from_secs(10));
    web.wait_for(
        "the worker gone with its service",
        Duration::from_secs(10),
        || {
            stuck.iter().all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |s| s.contains(") Z "))
            })
        },
    );
    let _ = request.join();
}
