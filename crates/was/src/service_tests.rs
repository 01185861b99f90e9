//! The state machine against a fake host: a clock moved by hand and
//! "processes" that are socket pairs, so every timeout, ping, recycle and
//! failure path runs in microseconds and without a worker binary.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listener::{Listener, ListenerConfig};
use metabase::{ids, LockMode, MetabaseFiles, Value};
use tokio::sync::mpsc;
use worker_control::{FromWorker, Received, ToWorker};

use super::{path, Event, Phase, Service};
use crate::host::{Host, LocalMinute, Started};
use crate::process::Launch;
use crate::{Options, PoolState, WorkerProgram};

/// What the fake host did and what the tests set.
#[derive(Default)]
struct Machine {
    elapsed: Duration,
    minute: Option<LocalMinute>,
    started: Vec<(u64, u32)>,
    /// The worker's end of each control channel, by worker id.
    inboxes: HashMap<u64, mpsc::UnboundedReceiver<Received<ToWorker>>>,
    killed: Vec<u32>,
    memory: HashMap<u32, (u64, u64)>,
    refuse_spawn: bool,
}

#[derive(Clone)]
struct FakeHost {
    epoch: Instant,
    machine: Arc<Mutex<Machine>>,
}

impl FakeHost {
    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine.lock().unwrap()
    }
}

impl Host for FakeHost {
    fn now(&self) -> Instant {
        self.epoch + self.lock().elapsed
    }

    fn local_minute(&self) -> LocalMinute {
        self.lock().minute.unwrap_or(LocalMinute {
            hour: 25,
            minute: 0,
            day: 0,
        })
    }

    fn spawn(
        &mut self,
        _launch: &Launch<'_>,
        id: u64,
        _events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Started> {
        let mut m = self.lock();
        if m.refuse_spawn {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        let (ours, theirs) = quietsock::QuietUnixStream::pair()?;
        let (to_worker, _from_worker) = worker_control::channel::<ToWorker, FromWorker>(ours);
        let (_to_service, inbox) = worker_control::channel::<FromWorker, ToWorker>(theirs);
        let pid = 10_000 + id as u32;
        m.started.push((id, pid));
        m.inboxes.insert(id, inbox);
        Ok(Started { pid, to_worker })
    }

    fn kill(&mut self, pid: u32) {
        self.lock().killed.push(pid);
    }

    fn memory_kb(&self, pid: u32) -> Option<(u64, u64)> {
        self.lock().memory.get(&pid).copied()
    }
}

struct Bench {
    service: Service,
    host: FakeHost,
    _dir: tempfile::TempDir,
    _listener: Arc<Listener>,
}

const POOL: &str = "defaultapppool";

impl Bench {
    /// A service whose metabase has DefaultAppPool (with `settings`
    /// applied) and no sites, so nothing binds a port.
    async fn new(settings: &[(u32, u32)]) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let files = MetabaseFiles::open_state_dir(dir.path(), LockMode::WhileWriting).unwrap();
        let sites: Vec<String> = files
            .metabase()
            .snapshot()
            .tree()
            .child_keys(&path("/LM/W3SVC"))
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.chars().all(|c| c.is_ascii_digit()))
            .collect();
        files
            .metabase()
            .write(|txn| {
                for site in &sites {
                    txn.delete_key(&path(&format!("/LM/W3SVC/{site}")))?;
                }
                let pool = path("/LM/W3SVC/AppPools/DefaultAppPool");
                for (id, value) in settings {
                    txn.set(&pool, *id, Value::Dword(*value))?;
                }
                Ok(())
            })
            .unwrap();
        let config = ListenerConfig {
            control_socket: dir.path().join("control.sock"),
            ..ListenerConfig::default()
        };
        let listener = Arc::new(Listener::start(config).await.unwrap());
        let opts = Options {
            listener: listener.clone(),
            files,
            program: WorkerProgram {
                program: "/nonexistent/inetsrv".into(),
                args: vec!["worker".into()],
            },
            state_dir: dir.path().to_path_buf(),
        };
        let host = FakeHost {
            epoch: Instant::now(),
            machine: Arc::default(),
        };
        let (events, _) = mpsc::unbounded_channel();
        let service = Service::new(opts, Box::new(host.clone()), events);
        Bench {
            service,
            host,
            _dir: dir,
            _listener: listener,
        }
    }

    /// Moves the clock on, ticking as the service's timer would.
    fn advance(&mut self, by: Duration) {
        let step = super::TICK;
        let mut left = by;
        while !left.is_zero() {
            let d = left.min(step);
            self.host.lock().elapsed += d;
            left -= d;
            self.service.tick();
        }
    }

    fn demand(&mut self) {
        self.service.handle(Event::Demand(POOL.to_string()));
    }

    fn worker_ids(&self) -> Vec<u64> {
        self.service.workers.keys().copied().collect()
    }

    fn phase(&self, id: u64) -> Option<Phase> {
        self.service.workers.get(&id).map(|w| w.phase)
    }

    fn ready(&mut self, id: u64) {
        self.service
            .handle(Event::Worker(id, FromWorker::Ready { pid: 0 }));
    }

    fn pong(&mut self, id: u64, seq: u64) {
        self.service.handle(Event::Worker(
            id,
            FromWorker::Pong {
                seq,
                requests: 0,
                active: 0,
                file_cache_hits: 0,
                file_cache_misses: 0,
                busiest_ms: 0,
            },
        ));
    }

    /// A worker started on demand that crashes once it is ready.
    fn start_and_crash_one(&mut self) {
        self.demand();
        let id = *self.worker_ids().last().expect("a worker starts");
        self.ready(id);
        self.exited(id);
    }

    fn exited(&mut self, id: u64) {
        self.service
            .handle(Event::Exited(id, "exit status: 1".into()));
    }

    fn pid(&self, id: u64) -> u32 {
        10_000 + id as u32
    }

    /// Waits (5 s at most) until worker `id` has been sent `want`.
    async fn expect_sent(&self, id: u64, want: ToWorker) {
        let mut inbox = self
            .host
            .lock()
            .inboxes
            .remove(&id)
            .expect("a started worker");
        let found = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(r) = inbox.recv().await {
                if r.message == want {
                    return true;
                }
            }
            false
        })
        .await;
        self.host.lock().inboxes.insert(id, inbox);
        assert_eq!(found, Ok(true), "worker {id} was not sent {want:?}");
    }

    /// The sequence number of the ping worker `id` has not answered.
    fn outstanding_ping(&self, id: u64) -> Option<u64> {
        self.service.workers[&id].ping.map(|(seq, _)| seq)
    }

    fn pool_state(&self) -> (PoolState, Option<String>) {
        let status = self
            .service
            .pool_statuses()
            .into_iter()
            .find(|p| p.name.eq_ignore_ascii_case(POOL))
            .unwrap();
        (status.state, status.last_failure)
    }
}

#[tokio::test]
async fn demand_starts_max_processes_workers_once() {
    let mut b = Bench::new(&[(ids::MAX_PROCESSES, 2)]).await;
    assert!(b.worker_ids().is_empty(), "nothing starts before demand");
    b.demand();
    b.demand();
    assert_eq!(b.host.lock().started.len(), 2);
    for id in b.worker_ids() {
        assert_eq!(b.phase(id), Some(Phase::Starting));
        b.ready(id);
        assert_eq!(b.phase(id), Some(Phase::Ready));
    }
}

#[tokio::test]
async fn startup_time_limit_kills_a_silent_worker_and_counts_a_failure() {
    let mut b = Bench::new(&[(ids::STARTUP_TIME_LIMIT, 10)]).await;
    b.demand();
    let id = b.worker_ids()[0];
    b.advance(Duration::from_secs(9));
    assert!(b.host.lock().killed.is_empty(), "killed before its limit");
    b.advance(Duration::from_secs(2));
    assert_eq!(b.host.lock().killed, vec![b.pid(id)]);
    b.exited(id);
    let (state, failure) = b.pool_state();
    assert_eq!(state, PoolState::Started);
    let failure = failure.expect("the failure is shown");
    assert!(failure.contains("StartupTimeLimit"), "{failure}");
}

#[tokio::test]
async fn a_module_call_hung_past_ping_response_time_kills_the_worker() {
    let mut b = Bench::new(&[(ids::PING_INTERVAL, 5), (ids::PING_RESPONSE_TIME, 10)]).await;
    b.demand();
    let id = b.worker_ids()[0];
    b.ready(id);
    b.advance(Duration::from_millis(1250));
    let seq = b.outstanding_ping(id).expect("pinged");
    // Its thread answers, but a module call has run 9 s: not yet hung.
    let answer = |busiest_ms| {
        Event::Worker(
            id,
            FromWorker::Pong {
                seq,
                requests: 0,
                active: 1,
                file_cache_hits: 0,
                file_cache_misses: 0,
                busiest_ms,
            },
        )
    };
    b.service.handle(answer(9_000));
    assert!(b.host.lock().killed.is_empty());
    // 11 s: past PingResponseTime (10 s), the worker is replaced.
    b.service.handle(answer(11_000));
    assert_eq!(b.host.lock().killed, vec![b.pid(id)]);
    b.exited(id);
    let failure = b.pool_state().1.unwrap();
    assert!(failure.contains("module call hung"), "{failure}");
}

#[tokio::test]
async fn an_unanswered_ping_kills_and_a_late_pong_does_not_clear_a_newer_ping() {
    let mut b = Bench::new(&[(ids::PING_INTERVAL, 5), (ids::PING_RESPONSE_TIME, 10)]).await;
    b.demand();
    let id = b.worker_ids()[0];
    b.ready(id);
    // The first ping goes out a second after Ready.
    b.advance(Duration::from_millis(750));
    assert_eq!(b.outstanding_ping(id), None);
    b.advance(Duration::from_millis(500));
    let first = b.outstanding_ping(id).expect("pinged");
    b.expect_sent(id, ToWorker::Ping { seq: first }).await;
    // Answered: the next one comes PingInterval later.
    b.pong(id, first);
    assert_eq!(b.outstanding_ping(id), None);
    b.advance(Duration::from_millis(4500));
    assert_eq!(b.outstanding_ping(id), None);
    b.advance(Duration::from_millis(500));
    let second = b.outstanding_ping(id).expect("pinged again");
    assert_ne!(first, second);
    b.expect_sent(id, ToWorker::Ping { seq: second }).await;
    // A repeated answer to the first ping must not count for the second.
    b.pong(id, first);
    assert_eq!(b.outstanding_ping(id), Some(second));
    b.advance(Duration::from_secs(9));
    assert!(b.host.lock().killed.is_empty());
    b.advance(Duration::from_secs(2));
    assert_eq!(b.host.lock().killed, vec![b.pid(id)]);
    b.exited(id);
    let failure = b.pool_state().1.unwrap();
    assert!(failure.contains("PingResponseTime"), "{failure}");
}

#[tokio::test]
async fn rapid_fail_protection_stops_the_pool_after_max_crashes() {
    let mut b = Bench::new(&[
        (ids::RAPID_FAIL_PROTECTION_MAX_CRASHES, 3),
        (ids::RAPID_FAIL_PROTECTION_INTERVAL, 1),
    ])
    .await;
    for round in 0..3 {
        b.start_and_crash_one();
        let (state, _) = b.pool_state();
        if round < 2 {
            assert_eq!(state, PoolState::Started, "round {round}");
        } else {
            assert_eq!(state, PoolState::Stopped);
        }
    }
    // A stopped pool starts nothing on demand.
    let before = b.host.lock().started.len();
    b.demand();
    assert_eq!(b.host.lock().started.len(), before);
}

#[tokio::test]
async fn failures_outside_the_interval_do_not_add_up() {
    let mut b = Bench::new(&[
        (ids::RAPID_FAIL_PROTECTION_MAX_CRASHES, 2),
        (ids::RAPID_FAIL_PROTECTION_INTERVAL, 1),
    ])
    .await;
    for _ in 0..4 {
        b.start_and_crash_one();
        // Over a minute between crashes: each stands alone.
        b.host.lock().elapsed += Duration::from_secs(61);
    }
    assert_eq!(b.pool_state().0, PoolState::Started);
}

#[tokio::test]
async fn a_worker_that_cannot_start_fails_fast_with_its_reason() {
    let mut b = Bench::new(&[]).await;
    b.host.lock().refuse_spawn = true;
    b.demand();
    assert!(b.worker_ids().is_empty());
    let failure = b.pool_state().1.unwrap();
    assert!(
        failure.contains("cannot start /nonexistent/inetsrv"),
        "{failure}"
    );
}

#[tokio::test]
async fn idle_timeout_tells_the_worker_to_stop() {
    let mut b = Bench::new(&[(ids::IDLE_TIMEOUT, 1)]).await;
    b.demand();
    let id = b.worker_ids()[0];
    b.ready(id);
    b.advance(Duration::from_secs(59));
    assert_eq!(b.phase(id), Some(Phase::Ready));
    b.advance(Duration::from_secs(2));
    assert!(matches!(b.phase(id), Some(Phase::Stopping(_))));
    b.expect_sent(id, ToWorker::Stop).await;
    // An expected exit is no failure.
    b.exited(id);
    assert_eq!(b.pool_state(), (PoolState::Started, None));
}

#[tokio::test]
async fn periodic_restart_overlaps_the_new_worker_with_the_old() {
    let mut b = Bench::new(&[(ids::PERIODIC_RESTART_TIME, 1)]).await;
    b.demand();
    let old = b.worker_ids()[0];
    b.ready(old);
    b.advance(Duration::from_secs(61));
    let ids_now = b.worker_ids();
    assert_eq!(ids_now.len(), 2, "a replacement starts");
    let new = ids_now[1];
    // The old one serves until the new one is ready.
    assert_eq!(b.phase(old), Some(Phase::Ready));
    b.ready(new);
    assert!(matches!(b.phase(old), Some(Phase::Stopping(_))));
    b.expect_sent(old, ToWorker::Stop).await;
    // Past ShutdownTimeLimit (90 s by default) it is killed.
    b.advance(Duration::from_secs(91));
    assert_eq!(b.host.lock().killed, vec![b.pid(old)]);
}

#[tokio::test]
async fn memory_limits_recycle() {
    let mut b = Bench::new(&[(ids::PERIODIC_RESTART_PRIVATE_MEMORY, 1000)]).await;
    b.demand();
    let id = b.worker_ids()[0];
    b.ready(id);
    b.host.lock().memory.insert(b.pid(id), (5000, 900));
    b.advance(Duration::from_secs(6));
    assert_eq!(b.worker_ids().len(), 1, "under the limit");
    b.host.lock().memory.insert(b.pid(id), (5000, 1500));
    b.advance(Duration::from_secs(6));
    assert_eq!(b.worker_ids().len(), 2, "over the limit: replaced");
}

#[tokio::test]
async fn periodic_restart_schedule_recycles_once_per_minute() {
    let mut b = Bench::new(&[]).await;
    b.service
        .pools
        .get_mut(POOL)
        .unwrap()
        .settings
        .periodic_restart_schedule = vec![(3, 30)];
    b.demand();
    let id = b.worker_ids()[0];
    b.ready(id);
    b.host.lock().minute = Some(LocalMinute {
        hour: 3,
        minute: 30,
        day: 7,
    });
    b.advance(Duration::from_secs(1));
    assert_eq!(b.worker_ids().len(), 2);
    let new = b.worker_ids()[1];
    b.ready(new);
    // Still 03:30: no second recycle.
    b.advance(Duration::from_secs(1));
    assert_eq!(b.host.lock().started.len(), 2);
}

#[tokio::test]
async fn a_shortened_ping_interval_applies_at_once() {
    let mut b = Bench::new(&[(ids::PING_INTERVAL, 300), (ids::PING_RESPONSE_TIME, 5)]).await;
    b.demand();
    let id = b.worker_ids()[0];
    b.ready(id);
    // The first ping (a second after Ready) is answered; the next is due
    // in 300 s. Then the worker hangs.
    b.advance(Duration::from_millis(1250));
    let first = b.outstanding_ping(id).expect("pinged");
    b.pong(id, first);
    // The administrator shortens PingInterval to 2 s.
    let changes = b.service.opts.files.metabase().subscribe();
    b.service
        .opts
        .files
        .metabase()
        .write(|txn| {
            txn.set(
                &path("/LM/W3SVC/AppPools/DefaultAppPool"),
                ids::PING_INTERVAL,
                Value::Dword(2),
            )
        })
        .unwrap();
    let batch = changes.recv_timeout(Duration::from_secs(5)).unwrap();
    b.service.handle(Event::Changes(batch));
    // Found within the new interval plus PingResponseTime, not after the
    // old interval's 300 s.
    b.advance(Duration::from_secs(2 + 5 + 1));
    assert_eq!(b.host.lock().killed, vec![b.pid(id)]);
}
