//! The activation service's state machine: one task owns every pool,
//! site and worker; metabase changes, demand starts, worker messages and
//! exits, admin calls and a clock tick arrive as events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use listener::QueueHandle;
use metabase::{ChangeBatch, MbPath, Value};
use tokio::sync::{mpsc, oneshot};
use worker_control::{FromWorker, ToWorker};

use crate::handover::Handover;
use crate::host::{Host, LocalMinute, SystemHost};
use crate::model::{ids, pool_state, server_command, server_state, Model, PoolSettings};
use crate::process::{self, Account, IdentityError, Launch};
use crate::{
    AdminCall, CommandError, Done, Options, PoolCommand, PoolState, PoolStatus, SiteCommand,
    SiteState, SiteStatus, WorkerState, WorkerStatus,
};

pub(crate) enum Event {
    Changes(Arc<ChangeBatch>),
    Demand(String),
    Worker(u64, FromWorker),
    Exited(u64, String),
    Admin(AdminCall),
}

/// How often the clock ticks: timeouts are enforced to this precision.
const TICK: Duration = Duration::from_millis(250);
/// Status pings when PingingEnabled is off (idle detection needs them).
const STATUS_PING: Duration = Duration::from_secs(5);
/// How often memory limits are checked.
const MEMORY_CHECK: Duration = Duration::from_secs(5);
/// How often the content directories handed to workers are looked at
/// again (a stat each).
const ROOTS_CHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Stopping(Instant),
}

struct Worker {
    pool: String,
    pid: u32,
    user: String,
    to: worker_control::Sender<ToWorker>,
    phase: Phase,
    started: Instant,
    ready_at: Option<Instant>,
    ping: Option<(u64, Instant)>,
    next_ping: Instant,
    last_activity: Instant,
    requests: u64,
    /// Requests it was answering at its last ping.
    active: u64,
    /// Its file cache's hits and misses, at its last ping.
    file_cache: (u64, u64),
    /// The worker this one replaces in an overlapped recycle.
    replaces: Option<u64>,
    replaced_by: Option<u64>,
    /// Why the service killed it (its exit then counts as a failure).
    killed: Option<&'static str>,
    /// What it said before it gave up.
    fatal: Option<String>,
    /// The last configuration generation it confirmed.
    reloaded: u64,
}

struct Pool {
    settings: PoolSettings,
    queue: QueueHandle,
    running: bool,
    reason: Option<String>,
    failures: VecDeque<Instant>,
    /// Why the last worker failed.
    last_failure: Option<String>,
    /// A non-overlapped recycle waits for the old worker to exit.
    start_after_exit: bool,
    last_schedule: Option<(u32, u32, i64)>,
    /// An application names it but it is not in the metabase: its queue
    /// stays stopped (503), as IIS answers for a missing pool.
    missing: bool,
    /// What happened to its workers since the service started.
    counters: crate::PoolCounters,
}

struct Waiter {
    change_number: u64,
    /// The reload generation workers must confirm, once the change is
    /// applied.
    reload: Option<u64>,
    since: Instant,
    reply: oneshot::Sender<()>,
}

/// How long an admin call waits for workers to confirm a reload.
const RELOAD_WAIT: Duration = Duration::from_secs(5);

struct SiteRt {
    state: u32,
    error: Option<String>,
}

/// What a registered prefix routes to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Pool(String),
    Paused(u32),
}

struct Service {
    opts: Options,
    /// The clock and the processes.
    host: Box<dyn Host>,
    events: mpsc::UnboundedSender<Event>,
    model: Model,
    applied_change: u64,
    /// Configuration generations sent to workers ([`ToWorker::Configure`]).
    reload_seq: u64,
    /// Admin calls waiting for a change number and the workers' reload.
    waiters: Vec<Waiter>,
    pools: BTreeMap<String, Pool>,
    sites: BTreeMap<u32, SiteRt>,
    paused: HashMap<u32, QueueHandle>,
    registered: HashMap<String, (Target, u32)>,
    workers: BTreeMap<u64, Worker>,
    next_worker: u64,
    shutdown: Option<(Instant, Vec<oneshot::Sender<()>>)>,
    users_stamp: [Option<SystemTime>; 2],
    last_memory_check: Instant,
    root: bool,
    /// Sites whose content directory their pool's identity cannot read.
    content_problems: BTreeMap<u32, String>,
    /// The directories each pool's workers hold (by pool key).
    handed: HashMap<String, crate::handover::HandedRoots>,
    last_roots_check: Instant,
    pings: PingSequence,
}

/// Ping sequence numbers: never repeated while the service runs, so a
/// late answer to an old ping cannot clear a newer one.
#[derive(Debug, Default)]
struct PingSequence(u64);

impl PingSequence {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

pub(crate) fn start(opts: Options) -> mpsc::UnboundedSender<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    // Metabase changes arrive on a std channel: forward them.
    let changes = opts.files.metabase().subscribe();
    let forward = tx.clone();
    let _ = std::thread::Builder::new()
        .name("was-changes".into())
        .spawn(move || {
            for batch in changes {
                if forward.send(Event::Changes(batch)).is_err() {
                    break;
                }
            }
        });
    let demand = tx.clone();
    opts.listener
        .set_demand_start(Arc::new(move |queue: &listener::Queue| {
            let _ = demand.send(Event::Demand(queue.name.clone()));
        }));
    let service = Service::new(opts, Box::new(SystemHost), tx.clone());
    tokio::spawn(service.run(rx));
    tx
}

impl Service {
    /// A service over `opts`'s metabase with its model applied (queues
    /// created, prefixes registered) and its content checked.
    fn new(opts: Options, host: Box<dyn Host>, events: mpsc::UnboundedSender<Event>) -> Service {
        let snapshot = opts.files.metabase().snapshot();
        let now = host.now();
        let mut service = Service {
            model: Model::default(),
            applied_change: snapshot.change_number(),
            reload_seq: 0,
            waiters: Vec::new(),
            pools: BTreeMap::new(),
            sites: BTreeMap::new(),
            paused: HashMap::new(),
            registered: HashMap::new(),
            workers: BTreeMap::new(),
            next_worker: 1,
            shutdown: None,
            users_stamp: users_stamp(&opts),
            last_memory_check: now,
            root: process::is_root(),
            content_problems: BTreeMap::new(),
            handed: HashMap::new(),
            last_roots_check: now,
            pings: PingSequence::default(),
            events,
            host,
            opts,
        };
        service.apply_model(Model::read(&snapshot).in_effect(), &[]);
        service.check_content(&snapshot);
        service
    }
}

/// When the user database and the certificate mappings last changed.
fn users_stamp(opts: &Options) -> [Option<SystemTime>; 2] {
    let db = userdb::UserDb::for_state_dir(&opts.state_dir);
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    [modified(db.path()), modified(&db.certmap_path())]
}

fn path(text: &str) -> MbPath {
    MbPath::parse(text).unwrap_or_default()
}

fn site_path(id: u32) -> MbPath {
    path(&format!("/LM/W3SVC/{id}"))
}

fn pool_path(name: &str) -> MbPath {
    path("/LM/W3SVC/AppPools").join(name).unwrap_or_default()
}

fn site_state(state: u32) -> SiteState {
    match state {
        server_state::STARTED => SiteState::Started,
        server_state::PAUSED => SiteState::Paused,
        _ => SiteState::Stopped,
    }
}

impl Service {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(e) => self.handle(e),
                    None => break,
                },
                _ = tick.tick() => self.tick(),
            }
            if let Some((_, waiters)) = &mut self.shutdown {
                if self.workers.is_empty() {
                    for w in waiters.drain(..) {
                        let _ = w.send(());
                    }
                    // Stay to answer calls, with nothing running.
                }
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Changes(batch) => self.on_changes(&batch),
            Event::Demand(queue) => self.on_demand(&queue.to_lowercase()),
            Event::Worker(id, message) => self.on_message(id, message),
            Event::Exited(id, status) => self.on_exit(id, &status),
            Event::Admin(call) => self.on_admin(call),
        }
    }

    // ----- configuration -------------------------------------------------

    fn on_changes(&mut self, batch: &ChangeBatch) {
        let snapshot = self.opts.files.metabase().snapshot();
        let state_ids = [
            ids::SERVER_STATE,
            ids::APP_POOL_STATE,
            ids::WIN32_ERROR,
            ids::SERVER_COMMAND,
            ids::APP_POOL_COMMAND,
        ];
        let substantive = batch.schema_changed
            || batch
                .changes
                .iter()
                .any(|c| c.ids.is_empty() || c.ids.iter().any(|id| !state_ids.contains(id)));
        // Commands written by administrators (adsutil's way).
        let mut commands = Vec::new();
        for change in &batch.changes {
            let parts = change.path.parts();
            if change.ids.contains(&ids::SERVER_COMMAND) && parts.len() == 3 {
                if let (Ok(id), Some(cmd)) = (
                    parts[2].parse::<u32>(),
                    snapshot.effective_dword(&change.path, ids::SERVER_COMMAND),
                ) {
                    commands.push((Some(id), None, cmd));
                }
            }
            if change.ids.contains(&ids::APP_POOL_COMMAND) && parts.len() == 4 {
                if let Some(cmd) = snapshot.effective_dword(&change.path, ids::APP_POOL_COMMAND) {
                    commands.push((None, Some(parts[3].clone()), cmd));
                }
            }
        }
        if substantive {
            let model = Model::read(&snapshot).in_effect();
            if model != self.model {
                self.apply_model(model, &batch.changes);
            }
            // Workers get their configuration again (vdirs, MIME maps, …).
            self.reload_seq += 1;
            self.push_configuration(&snapshot, None, self.reload_seq);
            self.flush_all_caches();
            self.write_states();
            self.check_content(&snapshot);
        }
        for (site, pool, cmd) in commands {
            if let Some(id) = site {
                let command = match cmd {
                    server_command::START => SiteCommand::Start,
                    server_command::STOP => SiteCommand::Stop,
                    server_command::PAUSE => SiteCommand::Pause,
                    server_command::CONTINUE => SiteCommand::Continue,
                    _ => continue,
                };
                if let Err(e) = self.site_command(id, command) {
                    tracing::warn!(site = id, error = %e, "ServerCommand not applied");
                }
            }
            if let Some(name) = pool {
                let command = match cmd {
                    pool_state::COMMAND_START => PoolCommand::Start,
                    pool_state::COMMAND_STOP => PoolCommand::Stop,
                    _ => continue,
                };
                if let Err(e) = self.pool_command(&name, command) {
                    tracing::warn!(pool = %name, error = %e, "AppPoolCommand not applied");
                }
            }
        }
        self.applied_change = self.applied_change.max(batch.change_number);
        let applied = self.applied_change;
        for w in &mut self.waiters {
            if w.reload.is_none() && w.change_number <= applied {
                w.reload = Some(self.reload_seq);
            }
        }
        self.release_waiters();
    }

    /// Answers admin calls whose change is in effect in every worker.
    fn release_waiters(&mut self) {
        let workers = &self.workers;
        let (done, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| {
                w.reload.is_some_and(|seq| {
                    w.since.elapsed() > RELOAD_WAIT
                        || workers
                            .values()
                            .filter(|x| !matches!(x.phase, Phase::Stopping(_)))
                            .all(|x| x.reloaded >= seq)
                })
            });
        self.waiters = waiting;
        for w in done {
            let _ = w.reply.send(());
        }
    }

    /// Brings pools, sites and prefixes in line with a new model.
    fn apply_model(&mut self, model: Model, _changes: &[metabase::Change]) {
        // Pools: new ones get a queue, removed ones go, changed ones take
        // their new settings (recycling when the process itself changes).
        let mut needed: BTreeMap<String, Option<PoolSettings>> = model
            .pools
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for site in model.sites.values() {
            for app in &site.apps {
                needed.entry(app.pool.to_lowercase()).or_insert(None);
            }
        }
        let gone: Vec<String> = self
            .pools
            .keys()
            .filter(|k| !needed.contains_key(*k))
            .cloned()
            .collect();
        for (key, settings) in &needed {
            let missing = settings.is_none();
            let name = settings
                .as_ref()
                .map(|s| s.name.clone())
                .or_else(|| {
                    model
                        .sites
                        .values()
                        .flat_map(|s| &s.apps)
                        .find(|a| a.pool.to_lowercase() == *key)
                        .map(|a| a.pool.clone())
                })
                .unwrap_or_else(|| key.clone());
            let settings = settings.clone().unwrap_or_else(|| missing_pool(&name));
            match self.pools.get_mut(key) {
                Some(pool) => {
                    let recycle = !missing
                        && !pool.missing
                        && pool.settings.process_differs(&settings)
                        && !settings.disallow_rotation_on_config_change;
                    let was_missing = pool.missing;
                    let pinging_changed = pool.settings.ping_interval != settings.ping_interval
                        || pool.settings.pinging_enabled != settings.pinging_enabled;
                    pool.settings = settings;
                    pool.missing = missing;
                    configure_queue(pool);
                    if pinging_changed {
                        // A shorter PingInterval counts from now, not
                        // from the next ping of the old one: a hang is
                        // found within the new interval plus
                        // PingResponseTime.
                        let every = ping_every(&pool.settings);
                        let now = self.host.now();
                        for w in self.workers.values_mut().filter(|w| w.pool == *key) {
                            w.next_ping = w.next_ping.min(now + every);
                        }
                    }
                    if was_missing && !missing && pool.settings.auto_start {
                        pool.running = true;
                        pool.reason = None;
                        pool.queue.queue().set_stopped(false);
                    }
                    if recycle {
                        self.recycle_pool(key, "its settings changed");
                    }
                }
                None => match self.opts.listener.create_queue(&name) {
                    Ok(queue) => {
                        let running = !missing && settings.auto_start;
                        let mut pool = Pool {
                            settings,
                            queue,
                            running,
                            reason: if missing {
                                Some("no such application pool in the metabase".into())
                            } else if !running {
                                Some("AppPoolAutoStart is FALSE".into())
                            } else {
                                None
                            },
                            failures: VecDeque::new(),
                            last_failure: None,
                            start_after_exit: false,
                            last_schedule: None,
                            missing,
                            counters: crate::PoolCounters::default(),
                        };
                        configure_queue(&mut pool);
                        pool.queue.queue().set_stopped(!running);
                        self.pools.insert(key.clone(), pool);
                    }
                    Err(e) => {
                        tracing::error!(pool = %name, error = %e, "cannot create the pool's queue")
                    }
                },
            }
        }
        // Sites: new ones start if ServerAutoStart says so.
        let old_sites = std::mem::take(&mut self.model.sites);
        for (id, site) in &model.sites {
            if !old_sites.contains_key(id) || !self.sites.contains_key(id) {
                self.sites.insert(
                    *id,
                    SiteRt {
                        state: if site.auto_start {
                            server_state::STARTED
                        } else {
                            server_state::STOPPED
                        },
                        error: None,
                    },
                );
            }
        }
        self.sites.retain(|id, _| model.sites.contains_key(id));
        // Request logs: every site's settings, in the listener.
        for id in self.model.sites.keys().chain(old_sites.keys()) {
            if !model.sites.contains_key(id) {
                self.opts.listener.set_site_logging(*id, None);
            }
        }
        for (id, site) in &model.sites {
            self.opts
                .listener
                .set_site_logging(*id, log_settings(&self.opts.state_dir, &site.log));
        }
        self.paused.retain(|id, _| model.sites.contains_key(id));
        if model.iis5_isolation != self.model.iis5_isolation {
            tracing::info!(
                on = model.iis5_isolation,
                "IIS 5 isolation mode changed: the web service restarts with its new processes"
            );
        }
        self.model = model;
        self.sync_ssl_bindings();
        self.apply_routes();
        for key in gone {
            self.stop_pool_workers(&key);
            self.pools.remove(&key);
        }
        // IIS 5 isolation mode with global filters: every connection's raw
        // data passes through the one process, where they run.
        let raw_filter = (self.model.iis5_isolation && self.model.global_filters)
            .then(|| self.pools.get(&crate::model::IIS5_POOL.to_lowercase()))
            .flatten()
            .map(|pool| &pool.queue);
        self.opts.listener.set_raw_filter(raw_filter, true, true);
    }

    /// Keeps the SSL bindings that sites' SSLCertHash asks for in step
    /// with the sites, as IIS 6's W3SVC writes HTTP.SYS's SSL
    /// configuration: each secure binding of a site with a certificate
    /// gets a binding marked `W3SVC/<id>`; those no site asks for any more
    /// go. A binding the administrator made (`inetsrv sslcert add`) for
    /// the same endpoint is left as it is and wins.
    fn sync_ssl_bindings(&mut self) {
        use listener::tls::{SslBinding, SslConfig};
        let file = self.opts.listener.config().ssl_config_file.clone();
        let mut desired: Vec<SslBinding> = Vec::new();
        for (id, site) in &self.model.sites {
            let Some(hash) = &site.ssl_cert_hash else {
                continue;
            };
            if let Some(store) = &site.other_ssl_store {
                tracing::warn!(site = id, store = %store, "SSLStoreName names a store inetsrv does not have: the certificate is looked for in its one store (MY, `inetsrv cert list`)");
            }
            for b in site.bindings.iter().filter(|b| b.secure) {
                let mut binding = SslBinding::new(&b.ssl_endpoint(), hash);
                binding.source = Some(format!("W3SVC/{id}"));
                if !desired.iter().any(|d| d.endpoint() == binding.endpoint()) {
                    desired.push(binding);
                }
            }
        }
        let site_made =
            |b: &SslBinding| b.source.as_deref().is_some_and(|s| s.starts_with("W3SVC/"));
        let result = SslConfig::edit(&file, |config| {
            config.bindings.retain(|b| {
                !site_made(b)
                    || desired
                        .iter()
                        .any(|d| d.endpoint() == b.endpoint() && d.source == b.source)
            });
            let mut shadowed = Vec::new();
            for d in &desired {
                match config
                    .bindings
                    .iter_mut()
                    .find(|b| b.endpoint() == d.endpoint())
                {
                    Some(existing) if !site_made(existing) => {
                        if !existing.cert_hash.eq_ignore_ascii_case(&d.cert_hash) {
                            shadowed.push((d.clone(), existing.cert_hash.clone()));
                        }
                    }
                    Some(existing) => existing.cert_hash = d.cert_hash.clone(),
                    None => config.bindings.push(d.clone()),
                }
            }
            Ok(shadowed)
        });
        match result {
            Ok(shadowed) => {
                for (d, theirs) in shadowed {
                    let endpoint = d.endpoint().map(|e| e.to_string()).unwrap_or_default();
                    tracing::info!(site = d.source.as_deref().unwrap_or(""), %endpoint, certificate = %theirs, "the SSL binding made with `inetsrv sslcert add` serves this endpoint, not the site's SSLCertHash");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot write the sites' SSL bindings"),
        }
        self.opts.listener.reload_tls();
    }

    /// Registers and unregisters prefixes so each started site's
    /// applications route to their pools and paused sites answer 503.
    fn apply_routes(&mut self) {
        let mut desired: BTreeMap<u32, Vec<(String, Target)>> = BTreeMap::new();
        for (id, site) in &self.model.sites {
            let state = self
                .sites
                .get(id)
                .map(|s| s.state)
                .unwrap_or(server_state::STOPPED);
            if state != server_state::STARTED && state != server_state::PAUSED {
                continue;
            }
            let mut prefixes = Vec::new();
            for binding in &site.bindings {
                for app in &site.apps {
                    let target = if state == server_state::PAUSED {
                        Target::Paused(*id)
                    } else {
                        Target::Pool(app.pool.to_lowercase())
                    };
                    prefixes.push((binding.prefix(&app.url), target));
                }
            }
            desired.insert(*id, prefixes);
        }
        // Two sites with one binding: the lower ID keeps it, the other
        // cannot start (IIS reports the same).
        let mut claimed: HashMap<String, u32> = HashMap::new();
        let mut conflicts = Vec::new();
        for (id, prefixes) in &desired {
            if let Some((prefix, other)) = prefixes
                .iter()
                .find_map(|(p, _)| claimed.get(&p.to_lowercase()).map(|o| (p.clone(), *o)))
            {
                conflicts.push((*id, format!("{prefix} is already bound by site {other}")));
                continue;
            }
            for (p, _) in prefixes {
                claimed.insert(p.to_lowercase(), *id);
            }
        }
        for (id, why) in &conflicts {
            desired.remove(id);
            if let Some(s) = self.sites.get_mut(id) {
                if s.error.as_deref() != Some(why) {
                    tracing::error!(site = id, error = %why, "site cannot start");
                }
                s.error = Some(why.clone());
            }
        }
        let wanted: HashMap<String, (Target, u32)> = desired
            .iter()
            .flat_map(|(id, ps)| ps.iter().map(move |(p, t)| (p.clone(), (t.clone(), *id))))
            .collect();
        // Removals first, so a prefix can move between queues.
        let stale: Vec<String> = self
            .registered
            .iter()
            .filter(|(p, t)| wanted.get(*p) != Some(t))
            .map(|(p, _)| p.clone())
            .collect();
        for prefix in stale {
            if let Some((target, _)) = self.registered.remove(&prefix) {
                if let Some(q) = self.queue_of(&target) {
                    let _ = q.remove_url(&prefix);
                }
            }
        }
        for (id, prefixes) in desired {
            let mut failure = None;
            for (prefix, target) in &prefixes {
                if self.registered.contains_key(prefix) {
                    continue;
                }
                if let Target::Paused(site) = target {
                    if !self.paused.contains_key(site) {
                        match self
                            .opts
                            .listener
                            .create_queue(&format!("W3SVC-{site}-paused"))
                        {
                            Ok(q) => {
                                q.queue().set_stopped(true);
                                self.paused.insert(*site, q);
                            }
                            Err(e) => {
                                failure = Some(e.message.clone());
                                break;
                            }
                        }
                    }
                }
                let Some(queue) = self.queue_of(target) else {
                    failure = Some(format!("no queue for {prefix}"));
                    break;
                };
                match queue.add_url(prefix, u64::from(id), Some(id)) {
                    Ok(()) => {
                        self.registered.insert(prefix.clone(), (target.clone(), id));
                    }
                    Err(e) => {
                        failure = Some(e.message.clone());
                        break;
                    }
                }
            }
            let site = self.sites.entry(id).or_insert(SiteRt {
                state: server_state::STARTED,
                error: None,
            });
            match failure {
                Some(why) => {
                    tracing::error!(site = id, error = %why, "site cannot start");
                    site.error = Some(why);
                    site.state = server_state::STOPPED;
                    let mine: Vec<String> = self
                        .registered
                        .iter()
                        .filter(|(_, (_, s))| *s == id)
                        .map(|(p, _)| p.clone())
                        .collect();
                    for prefix in mine {
                        if let Some((target, _)) = self.registered.remove(&prefix) {
                            if let Some(q) = self.queue_of(&target) {
                                let _ = q.remove_url(&prefix);
                            }
                        }
                    }
                }
                None if !conflicts.iter().any(|(c, _)| *c == id) => site.error = None,
                None => {}
            }
        }
    }

    fn queue_of(&self, target: &Target) -> Option<&QueueHandle> {
        match target {
            Target::Pool(name) => self.pools.get(name).map(|p| &p.queue),
            Target::Paused(site) => self.paused.get(site),
        }
    }

    fn flush_all_caches(&self) {
        for prefix in self.registered.keys() {
            let _ = self.opts.listener.flush_cache(prefix);
        }
    }

    fn flush_pool_cache(&self, pool: &str) {
        for (prefix, (target, _)) in &self.registered {
            if *target == Target::Pool(pool.to_string()) {
                let _ = self.opts.listener.flush_cache(prefix);
            }
        }
    }

    /// Writes ServerState and AppPoolState (VOLATILE: never saved) where
    /// they differ from what is running.
    fn write_states(&self) {
        let snapshot = self.opts.files.metabase().snapshot();
        let mut writes: Vec<(MbPath, u32, u32)> = Vec::new();
        for (id, site) in &self.sites {
            let p = site_path(*id);
            if snapshot.find(&p).is_some()
                && snapshot.effective_dword(&p, ids::SERVER_STATE) != Some(site.state)
            {
                writes.push((p, ids::SERVER_STATE, site.state));
            }
        }
        for pool in self.pools.values().filter(|p| !p.missing) {
            let p = pool_path(&pool.settings.name);
            let state = if pool.running {
                pool_state::STARTED
            } else {
                pool_state::STOPPED
            };
            if snapshot.find(&p).is_some()
                && snapshot.effective_dword(&p, ids::APP_POOL_STATE) != Some(state)
            {
                writes.push((p, ids::APP_POOL_STATE, state));
            }
        }
        if writes.is_empty() {
            return;
        }
        let result = self.opts.files.metabase().write(|t| {
            for (p, id, v) in &writes {
                t.set(p, *id, Value::Dword(*v))?;
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record run-time state in the metabase");
        }
    }

    /// FilterState and FilterFlags on an IIsFilter key, where they differ.
    fn record_filter(&self, key: &str, state: u32, flags: u32) {
        let Ok(p) = MbPath::parse(key) else {
            return;
        };
        let snapshot = self.opts.files.metabase().snapshot();
        let Some(found) = snapshot.find(&p) else {
            return;
        };
        let current = |id| match found.property(id).map(|v| &v.value) {
            Some(Value::Dword(d)) => Some(*d),
            _ => None,
        };
        if current(ids::FILTER_STATE) == Some(state) && current(ids::FILTER_FLAGS) == Some(flags) {
            return;
        }
        let result = self.opts.files.metabase().write(|t| {
            t.set(&p, ids::FILTER_STATE, Value::Dword(state))?;
            t.set(&p, ids::FILTER_FLAGS, Value::Dword(flags))
        });
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "cannot record a filter's state in the metabase");
        }
    }

    // ----- workers -------------------------------------------------------

    fn live_workers(&self, pool: &str) -> usize {
        self.workers
            .values()
            .filter(|w| w.pool == pool && !matches!(w.phase, Phase::Stopping(_)))
            .count()
    }

    fn on_demand(&mut self, pool: &str) {
        if self.shutdown.is_some() {
            return;
        }
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        if !p.running || p.start_after_exit {
            return;
        }
        let want = p.settings.max_processes as usize;
        while self.live_workers(pool) < want {
            if self.start_worker(pool, None).is_none() {
                break;
            }
        }
    }

    fn account(&self, settings: &PoolSettings) -> Result<Option<Account>, IdentityError> {
        if !self.root {
            return Ok(None);
        }
        let account = process::account_for(settings.identity_type, &settings.wam_user)?;
        Ok(if account.uid == 0 {
            None
        } else {
            Some(account)
        })
    }

    fn start_worker(&mut self, pool_key: &str, replaces: Option<u64>) -> Option<u64> {
        let pool = self.pools.get(pool_key)?;
        let settings = pool.settings.clone();
        let account = match self.account(&settings) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(pool = %settings.name, error = %e, "cannot start a worker");
                self.start_failed(pool_key, &e.to_string());
                return None;
            }
        };
        let snapshot = self.opts.files.metabase().snapshot();
        let handover = self.handover(&snapshot, pool_key)?;
        let id = self.next_worker;
        self.next_worker += 1;
        let launch = Launch {
            program: &self.opts.program,
            pool: &settings.name,
        };
        let spawned = match self.host.spawn(&launch, id, self.events.clone()) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("cannot start {}: {e}", self.opts.program.program.display());
                tracing::error!(pool = %settings.name, error = %why);
                self.start_failed(pool_key, &why);
                return None;
            }
        };
        // This process, and no other (another pool's worker, anything
        // running as the same user), may open the pool's queue.
        if let Some(pool) = self.pools.get_mut(pool_key) {
            pool.queue.queue().allow_process(spawned.pid);
            pool.counters.worker_starts += 1;
        }
        let handed = handover.send(&spawned.to_worker, self.reload_seq);
        self.handed.insert(pool_key.to_string(), handed);
        let now = self.host.now();
        let user = account
            .as_ref()
            .map(|a| a.name.clone())
            .unwrap_or_else(current_user);
        tracing::info!(pool = %settings.name, pid = spawned.pid, user = %user, "worker process started");
        self.workers.insert(
            id,
            Worker {
                pool: pool_key.to_string(),
                pid: spawned.pid,
                user,
                to: spawned.to_worker,
                phase: Phase::Starting,
                started: now,
                ready_at: None,
                ping: None,
                next_ping: now,
                last_activity: now,
                requests: 0,
                active: 0,
                file_cache: (0, 0),
                replaces,
                replaced_by: None,
                killed: None,
                fatal: None,
                // It reads the configuration as it is now.
                reloaded: self.reload_seq,
            },
        );
        Some(id)
    }

    /// Sends the live workers (of one pool, or all) their configuration
    /// as generation `seq`, and remembers the directories handed over.
    fn push_configuration(&mut self, snapshot: &metabase::Snapshot, only: Option<&str>, seq: u64) {
        let mut handovers: HashMap<String, Option<Handover>> = HashMap::new();
        let mut handed = HashMap::new();
        for w in self.workers.values() {
            if matches!(w.phase, Phase::Stopping(_)) || only.is_some_and(|p| p != w.pool) {
                continue;
            }
            let handover = handovers
                .entry(w.pool.clone())
                .or_insert_with(|| self.handover(snapshot, &w.pool));
            if let Some(handover) = handover {
                handed.insert(w.pool.clone(), handover.send(&w.to, seq));
            }
        }
        self.handed.extend(handed);
    }

    /// Hands the directories over again to the pools where a content
    /// directory's path now names another directory (a release switched
    /// by a symbolic link, a directory renamed into place or created).
    /// The generation stays: this is the same configuration.
    fn check_roots(&mut self) {
        let moved: Vec<String> = self
            .handed
            .iter()
            .filter(|(_, roots)| crate::handover::roots_moved(roots))
            .map(|(pool, _)| pool.clone())
            .collect();
        if moved.is_empty() {
            return;
        }
        let snapshot = self.opts.files.metabase().snapshot();
        for pool in moved {
            tracing::info!(pool = %pool, "a content directory was replaced: handing it over again");
            self.push_configuration(&snapshot, Some(&pool), self.reload_seq);
        }
    }

    /// Finds the sites whose pool's identity cannot read their content
    /// directory, and says so once per new finding.
    fn check_content(&mut self, snapshot: &metabase::Snapshot) {
        let mut found = BTreeMap::new();
        for site in self.model.sites.values() {
            let Some(app) = site.apps.iter().find(|a| a.url == "/") else {
                continue;
            };
            let Some(pool) = self.pools.get(&app.pool.to_lowercase()) else {
                continue;
            };
            // A pool without an account fails at start and says so there.
            let Ok(account) = self.account(&pool.settings) else {
                continue;
            };
            let root = site_path(site.id).join("ROOT").unwrap_or_default();
            let Some(dir) = snapshot
                .effective(&root, ids::PATH)
                .and_then(|v| v.as_str().map(str::to_string))
            else {
                continue;
            };
            if let Err(problem) =
                crate::handover::readable_by(std::path::Path::new(&dir), account.as_ref())
            {
                if self.content_problems.get(&site.id) != Some(&problem) {
                    tracing::warn!(site = site.id, %problem, "site content cannot be read");
                }
                found.insert(site.id, problem);
            }
        }
        self.content_problems = found;
    }

    /// What a worker of this pool is handed now; `None` (logged) when
    /// the pool's identity has no account.
    fn handover(&self, snapshot: &metabase::Snapshot, pool_key: &str) -> Option<Handover> {
        let settings = &self.pools.get(pool_key)?.settings;
        let account = match self.account(settings) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(pool = %settings.name, error = %e, "cannot configure a worker");
                return None;
            }
        };
        Some(Handover::new(
            snapshot,
            &self.model,
            &self.opts.state_dir,
            &settings.name,
            self.opts.listener.control_socket(),
            self.opts.listener.config().uri_enable_cache,
            settings.periodic_restart_requests,
            account.as_ref(),
        ))
    }

    fn stop_worker(&mut self, id: u64) {
        if let Some(w) = self.workers.get_mut(&id) {
            if !matches!(w.phase, Phase::Stopping(_)) {
                w.phase = Phase::Stopping(self.host.now());
                w.to.send(&ToWorker::Stop);
            }
        }
    }

    fn kill_worker(&mut self, id: u64, why: &'static str) {
        if let Some(w) = self.workers.get_mut(&id) {
            // Once is enough: its exit is on its way, and a pid signalled
            // again after that could be another process's.
            if w.killed.is_some() {
                return;
            }
            tracing::warn!(pool = %w.pool, pid = w.pid, reason = why, "killing worker process");
            w.killed = Some(why);
            self.host.kill(w.pid);
        }
    }

    fn on_message(&mut self, id: u64, message: FromWorker) {
        tracing::debug!(worker = id, ?message, "from worker");
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        match message {
            FromWorker::Ready { .. } => {
                if w.phase == Phase::Starting {
                    w.phase = Phase::Ready;
                    w.ready_at = Some(self.host.now());
                    w.last_activity = self.host.now();
                    w.next_ping = self.host.now() + Duration::from_secs(1);
                }
                if let Some(old) = w.replaces.take() {
                    self.stop_worker(old);
                }
            }
            FromWorker::Pong {
                seq,
                requests,
                active,
                file_cache_hits,
                file_cache_misses,
                busiest_ms,
            } => {
                if w.ping.is_some_and(|(s, _)| s == seq) {
                    w.ping = None;
                }
                // A module call running past PingResponseTime is a hang the
                // worker's own thread cannot see: the worker is replaced.
                let hung = self.pools.get(&w.pool).is_some_and(|pool| {
                    let s = &pool.settings;
                    s.pinging_enabled
                        && busiest_ms > u64::from(s.ping_response_time).saturating_mul(1000)
                });
                if hung {
                    tracing::warn!(pool = %w.pool, pid = w.pid, seconds = busiest_ms / 1000, "a module call has run longer than PingResponseTime");
                    self.kill_worker(id, "a module call hung past PingResponseTime");
                    return;
                }
                self.record_counters(id, requests, active, (file_cache_hits, file_cache_misses));
            }
            FromWorker::Counters {
                requests,
                active,
                file_cache_hits,
                file_cache_misses,
            } => self.record_counters(id, requests, active, (file_cache_hits, file_cache_misses)),
            FromWorker::RecycleMe { reason } => {
                tracing::info!(pool = %w.pool, pid = w.pid, %reason, "recycling worker process");
                self.recycle_worker(id);
            }
            FromWorker::Logon {
                id: call,
                user,
                password,
            } => {
                let to = w.to.clone();
                let db = userdb::UserDb::for_state_dir(&self.opts.state_dir);
                tokio::task::spawn_blocking(move || {
                    let ok = match db.verify(&user, &password) {
                        Ok(ok) => ok,
                        Err(e) => {
                            tracing::error!(error = %e, "user database unreadable");
                            false
                        }
                    };
                    to.send(&ToWorker::LogonResult { id: call, ok });
                });
            }
            FromWorker::CertLogon {
                id: call,
                thumbprint,
            } => {
                let to = w.to.clone();
                let db = userdb::UserDb::for_state_dir(&self.opts.state_dir);
                tokio::task::spawn_blocking(move || {
                    let user = db.user_for_cert(&thumbprint).unwrap_or_else(|e| {
                        tracing::error!(error = %e, "certificate mappings unreadable");
                        None
                    });
                    to.send(&ToWorker::CertLogonResult { id: call, user });
                });
            }
            FromWorker::FilterReport { key, state, flags } => {
                self.record_filter(&key, state, flags);
            }
            FromWorker::Reloaded { seq } => {
                w.reloaded = w.reloaded.max(seq);
                self.release_waiters();
            }
            FromWorker::Draining => {}
            FromWorker::Fatal { message } => {
                tracing::error!(pool = %w.pool, pid = w.pid, %message, "worker process failed");
                w.fatal = Some(message);
            }
        }
    }

    /// What a worker's ping or counter report says: activity (for the
    /// idle timeout) and the counters shown for it.
    fn record_counters(&mut self, id: u64, requests: u64, active: u64, file_cache: (u64, u64)) {
        let now = self.host.now();
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if requests != w.requests || active > 0 {
            w.last_activity = now;
        }
        w.requests = requests;
        w.active = active;
        w.file_cache = file_cache;
    }

    fn recycle_worker(&mut self, id: u64) {
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        tracing::debug!(worker = id, phase = ?w.phase, replaced_by = ?w.replaced_by, "recycle asked");
        if w.phase != Phase::Ready || w.replaced_by.is_some() {
            return;
        }
        let pool = w.pool.clone();
        if let Some(p) = self.pools.get_mut(&pool) {
            p.counters.recycles += 1;
        }
        let overlapped = self
            .pools
            .get(&pool)
            .is_some_and(|p| !p.settings.disallow_overlapping_rotation);
        if overlapped {
            if let Some(new) = self.start_worker(&pool, Some(id)) {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.replaced_by = Some(new);
                }
            }
        } else {
            self.stop_worker(id);
            if let Some(p) = self.pools.get_mut(&pool) {
                p.start_after_exit = true;
            }
        }
    }

    /// Tells every worker of a pool to finish its requests and exit.
    fn stop_pool_workers(&mut self, pool: &str) {
        let ids: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.pool == pool)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.stop_worker(id);
        }
    }

    fn recycle_pool(&mut self, pool: &str, why: &str) {
        let ids: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.pool == pool && w.phase == Phase::Ready)
            .map(|(id, _)| *id)
            .collect();
        if !ids.is_empty() {
            tracing::info!(
                pool,
                reason = why,
                workers = ids.len(),
                "recycling application pool"
            );
        }
        for id in ids {
            self.recycle_worker(id);
        }
    }

    fn on_exit(&mut self, id: u64, status: &str) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        // Its pid may come back as another process's.
        if let Some(pool) = self.pools.get(&w.pool) {
            pool.queue.queue().revoke_process(w.pid);
        }
        self.release_waiters();
        let pool_key = w.pool.clone();
        let pool_name = self
            .pools
            .get(&pool_key)
            .map(|p| p.settings.name.clone())
            .unwrap_or_else(|| pool_key.clone());
        self.flush_pool_cache(&pool_key);
        let expected = matches!(w.phase, Phase::Stopping(_)) && w.killed.is_none();
        if expected {
            tracing::info!(pool = %pool_name, pid = w.pid, "worker process exited");
        } else {
            let why = match w.killed {
                Some(reason) => format!("killed: {reason}"),
                None => format!("exited unexpectedly ({status})"),
            };
            tracing::warn!(pool = %pool_name, pid = w.pid, reason = %why, "worker process failed");
            // A replacement that failed leaves the old worker serving.
            if let Some(old) = w.replaces {
                if let Some(o) = self.workers.get_mut(&old) {
                    o.replaced_by = None;
                }
            }
            if let Some(new) = w.replaced_by {
                // The old one died while its successor starts: the
                // successor no longer replaces anything.
                if let Some(n) = self.workers.get_mut(&new) {
                    n.replaces = None;
                }
            }
            if w.phase == Phase::Starting {
                // It never took a request: whatever waits for it would
                // wait out the queue timeout for nothing.
                let why = match &w.fatal {
                    Some(message) => format!("{message} ({why})"),
                    None => why,
                };
                self.start_failed(
                    &pool_key,
                    &format!("the worker process failed to start: {why}"),
                );
            } else if !matches!(w.phase, Phase::Stopping(_)) || w.killed.is_some() {
                self.record_failure(&pool_key, &why);
            }
        }
        if self.workers.values().all(|w| w.pool != pool_key) {
            self.handed.remove(&pool_key);
        }
        let Some(pool) = self.pools.get_mut(&pool_key) else {
            return;
        };
        let restart_now = pool.start_after_exit;
        pool.start_after_exit = false;
        let pending = pool.queue.queue().pending();
        let running = pool.running;
        if self.shutdown.is_none()
            && running
            && (restart_now || pending > 0)
            && self.live_workers(&pool_key) == 0
        {
            self.on_demand(&pool_key);
        }
    }

    /// A worker could not be started, or died before it was ready: the
    /// requests waiting for it are answered 503 at once (HTTPERR
    /// AppOffline) and the failure counts toward rapid-fail protection.
    fn start_failed(&mut self, pool_key: &str, why: &str) {
        if self.live_workers(pool_key) == 0 {
            if let Some(pool) = self.pools.get(pool_key) {
                let turned = pool.queue.queue().turn_away_waiting();
                if turned > 0 {
                    tracing::warn!(pool = %pool.settings.name, requests = turned, "requests answered 503: no worker process could be started");
                }
            }
        }
        self.record_failure(pool_key, why);
    }

    /// Counts a failure toward rapid-fail protection.
    fn record_failure(&mut self, pool_key: &str, why: &str) {
        let Some(pool) = self.pools.get_mut(pool_key) else {
            return;
        };
        pool.last_failure = Some(why.to_string());
        pool.counters.worker_failures += 1;
        let now = self.host.now();
        let window = Duration::from_secs(u64::from(pool.settings.rapid_fail_interval) * 60);
        pool.failures.push_back(now);
        while pool
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            pool.failures.pop_front();
        }
        if pool.settings.rapid_fail_protection
            && pool.running
            && pool.failures.len() >= pool.settings.rapid_fail_max_crashes as usize
        {
            let reason = format!(
                "rapid-fail protection: {} failures within {} minutes (last: {why})",
                pool.failures.len(),
                pool.settings.rapid_fail_interval
            );
            tracing::error!(pool = %pool.settings.name, %reason, "application pool stopped");
            pool.counters.rapid_fail_stops += 1;
            pool.running = false;
            pool.reason = Some(reason);
            pool.queue.queue().set_stopped(true);
            self.stop_pool_workers(pool_key);
            self.write_states();
        }
    }

    // ----- the clock -----------------------------------------------------

    fn tick(&mut self) {
        let now = self.host.now();
        self.release_waiters();
        let mut kills = Vec::new();
        let mut stops = Vec::new();
        let mut recycles = Vec::new();
        let check_memory = now.duration_since(self.last_memory_check) >= MEMORY_CHECK;
        if check_memory {
            self.last_memory_check = now;
        }
        if now.duration_since(self.last_roots_check) >= ROOTS_CHECK {
            self.last_roots_check = now;
            self.check_roots();
        }
        let mut pings = std::mem::take(&mut self.pings);
        for (id, w) in self.workers.iter_mut() {
            let Some(pool) = self.pools.get(&w.pool) else {
                continue;
            };
            let s = &pool.settings;
            match w.phase {
                Phase::Starting => {
                    if now.duration_since(w.started)
                        > Duration::from_secs(u64::from(s.startup_time_limit))
                    {
                        kills.push((*id, "StartupTimeLimit exceeded"));
                    }
                }
                Phase::Stopping(since) => {
                    if now.duration_since(since)
                        > Duration::from_secs(u64::from(s.shutdown_time_limit))
                        && w.killed.is_none()
                    {
                        kills.push((*id, "ShutdownTimeLimit exceeded"));
                    }
                }
                Phase::Ready => {
                    if let Some((_, sent)) = w.ping {
                        if s.pinging_enabled
                            && now.duration_since(sent)
                                > Duration::from_secs(u64::from(s.ping_response_time))
                        {
                            kills.push((*id, "no answer to ping within PingResponseTime"));
                            continue;
                        }
                    } else if now >= w.next_ping {
                        let seq = pings.next();
                        w.ping = Some((seq, now));
                        w.to.send(&ToWorker::Ping { seq });
                        w.next_ping = now + ping_every(s);
                    }
                    if !s.pinging_enabled {
                        // Status pings only: an unanswered one is retried.
                        if w.ping
                            .is_some_and(|(_, sent)| now.duration_since(sent) > STATUS_PING)
                        {
                            w.ping = None;
                        }
                    }
                    if s.idle_timeout > 0
                        && w.replaced_by.is_none()
                        && now.duration_since(w.last_activity)
                            >= Duration::from_secs(u64::from(s.idle_timeout) * 60)
                    {
                        tracing::info!(pool = %s.name, pid = w.pid, "worker process idle for IdleTimeout: shutting it down");
                        stops.push(*id);
                        continue;
                    }
                    let age = w
                        .ready_at
                        .map(|t| now.duration_since(t))
                        .unwrap_or_default();
                    if s.periodic_restart_time > 0
                        && age >= Duration::from_secs(u64::from(s.periodic_restart_time) * 60)
                    {
                        recycles.push((*id, "PeriodicRestartTime".to_string()));
                        continue;
                    }
                    if check_memory
                        && (s.periodic_restart_memory > 0 || s.periodic_restart_private_memory > 0)
                    {
                        if let Some((virt, private)) = self.host.memory_kb(w.pid) {
                            if s.periodic_restart_memory > 0
                                && virt > u64::from(s.periodic_restart_memory)
                            {
                                recycles.push((
                                    *id,
                                    format!("virtual memory {virt} KB > PeriodicRestartMemory"),
                                ));
                            } else if s.periodic_restart_private_memory > 0
                                && private > u64::from(s.periodic_restart_private_memory)
                            {
                                recycles.push((*id, format!("private memory {private} KB > PeriodicRestartPrivateMemory")));
                            }
                        }
                    }
                }
            }
        }
        self.pings = pings;
        for (id, why) in kills {
            self.kill_worker(id, why);
        }
        for id in stops {
            self.stop_worker(id);
        }
        for (id, why) in recycles {
            if let Some(w) = self.workers.get(&id) {
                tracing::info!(pool = %w.pool, pid = w.pid, reason = %why, "recycling worker process");
            }
            self.recycle_worker(id);
        }
        // PeriodicRestartSchedule, in local time.
        let LocalMinute { hour, minute, day } = self.host.local_minute();
        let due: Vec<String> = self
            .pools
            .iter_mut()
            .filter(|(_, p)| {
                p.settings
                    .periodic_restart_schedule
                    .contains(&(hour, minute))
            })
            .filter_map(|(k, p)| {
                let stamp = (hour, minute, day);
                (p.last_schedule != Some(stamp)).then(|| {
                    p.last_schedule = Some(stamp);
                    k.clone()
                })
            })
            .collect();
        for pool in due {
            self.recycle_pool(&pool, "PeriodicRestartSchedule");
        }
        // The user database changed: workers forget cached logons.
        let stamp = users_stamp(&self.opts);
        if stamp != self.users_stamp {
            self.users_stamp = stamp;
            for w in self.workers.values() {
                w.to.send(&ToWorker::UsersChanged);
            }
        }
        if let Some((since, _)) = &self.shutdown {
            // Past every pool's ShutdownTimeLimit: kill what is left.
            let limit = self
                .pools
                .values()
                .map(|p| p.settings.shutdown_time_limit)
                .max()
                .unwrap_or(90);
            if now.duration_since(*since) > Duration::from_secs(u64::from(limit) + 1) {
                let left: Vec<u64> = self.workers.keys().copied().collect();
                for id in left {
                    self.kill_worker(id, "service shutting down");
                }
            }
        }
    }

    // ----- administration ------------------------------------------------

    fn on_admin(&mut self, call: AdminCall) {
        match call {
            AdminCall::Pools(reply) => {
                let _ = reply.send(self.pool_statuses());
            }
            AdminCall::Sites(reply) => {
                // Permissions change without the metabase knowing: look again.
                let snapshot = self.opts.files.metabase().snapshot();
                self.check_content(&snapshot);
                let _ = reply.send(self.site_statuses());
            }
            AdminCall::Pool {
                name,
                command,
                reply,
            } => {
                let _ = reply.send(self.pool_command(&name, command));
            }
            AdminCall::Site { id, command, reply } => {
                let _ = reply.send(self.site_command(id, command));
            }
            AdminCall::Sync {
                change_number,
                reply,
            } => {
                let reload = (change_number <= self.applied_change).then_some(self.reload_seq);
                self.waiters.push(Waiter {
                    change_number,
                    reload,
                    since: self.host.now(),
                    reply,
                });
                self.release_waiters();
            }
            AdminCall::Shutdown(reply) => {
                // New requests are refused (503) while workers finish
                // the ones they hold.
                for pool in self.pools.values() {
                    pool.queue.queue().set_stopped(true);
                }
                let ids: Vec<u64> = self.workers.keys().copied().collect();
                for id in ids {
                    self.stop_worker(id);
                }
                match &mut self.shutdown {
                    Some((_, waiters)) => waiters.push(reply),
                    None => self.shutdown = Some((self.host.now(), vec![reply])),
                }
            }
        }
    }

    fn pool_statuses(&self) -> Vec<PoolStatus> {
        let now = self.host.now();
        self.pools
            .iter()
            .map(|(key, p)| PoolStatus {
                name: p.settings.name.clone(),
                state: if p.running {
                    PoolState::Started
                } else {
                    PoolState::Stopped
                },
                reason: p.reason.clone(),
                workers: self
                    .workers
                    .values()
                    .filter(|w| w.pool == *key)
                    .map(|w| WorkerStatus {
                        pid: w.pid,
                        state: match w.phase {
                            Phase::Starting => WorkerState::Starting,
                            Phase::Ready => WorkerState::Running,
                            Phase::Stopping(_) => WorkerState::Stopping,
                        },
                        uptime_seconds: now.duration_since(w.started).as_secs(),
                        requests: w.requests,
                        active_requests: w.active,
                        file_cache_hits: w.file_cache.0,
                        file_cache_misses: w.file_cache.1,
                        user: w.user.clone(),
                    })
                    .collect(),
                queued: p.queue.queue().pending(),
                counters: {
                    let queue = p.queue.queue().counters();
                    crate::PoolCounters {
                        queue_arrivals: queue.arrived,
                        queue_rejections: queue.rejected,
                        ..p.counters.clone()
                    }
                },
                recent_failures: p.failures.len(),
                last_failure: p.last_failure.clone().filter(|_| !p.failures.is_empty()),
            })
            .collect()
    }

    fn site_statuses(&self) -> Vec<SiteStatus> {
        self.model
            .sites
            .values()
            .map(|s| {
                let rt = self.sites.get(&s.id);
                SiteStatus {
                    id: s.id,
                    comment: s.comment.clone(),
                    state: site_state(rt.map(|r| r.state).unwrap_or(server_state::STOPPED)),
                    bindings: s.bindings.iter().map(|b| b.label()).collect(),
                    apps: s.apps.clone(),
                    error: rt
                        .and_then(|r| r.error.clone())
                        .or_else(|| s.bad_bindings.first().cloned()),
                    content_problem: self.content_problems.get(&s.id).cloned(),
                }
            })
            .collect()
    }

    fn pool_command(&mut self, name: &str, command: PoolCommand) -> Result<Done, CommandError> {
        let key = name.to_lowercase();
        if self.model.iis5_isolation && key != crate::model::IIS5_POOL.to_lowercase() {
            return Err(CommandError::Iis5Isolation(name.to_string()));
        }
        let Some(pool) = self.pools.get_mut(&key) else {
            return Err(CommandError::NoSuchPool(name.to_string()));
        };
        if pool.missing {
            return Err(CommandError::PoolNotInMetabase(name.to_string()));
        }
        let display = pool.settings.name.clone();
        let done = match command {
            PoolCommand::Start => {
                let was = pool.running;
                pool.running = true;
                pool.reason = None;
                pool.failures.clear();
                pool.queue.queue().set_stopped(false);
                let pending = pool.queue.queue().pending();
                if pending > 0 {
                    self.on_demand(&key);
                }
                Done::PoolStarted {
                    pool: display,
                    already: was,
                }
            }
            PoolCommand::Stop => {
                pool.running = false;
                pool.reason = Some("stopped by an administrator".into());
                pool.queue.queue().set_stopped(true);
                self.stop_pool_workers(&key);
                Done::PoolStopped { pool: display }
            }
            PoolCommand::Recycle => {
                if !pool.running {
                    return Err(CommandError::PoolIsStopped(display));
                }
                let n = self
                    .workers
                    .values()
                    .filter(|w| w.pool == key && w.phase == Phase::Ready)
                    .count();
                self.recycle_pool(&key, "recycle requested by an administrator");
                Done::PoolRecycled {
                    pool: display,
                    workers: n,
                }
            }
        };
        self.write_states();
        Ok(done)
    }

    fn site_command(&mut self, id: u32, command: SiteCommand) -> Result<Done, CommandError> {
        if !self.model.sites.contains_key(&id) {
            return Err(CommandError::NoSuchSite(id));
        }
        let site = self.sites.entry(id).or_insert(SiteRt {
            state: server_state::STOPPED,
            error: None,
        });
        let next = match (command, site.state) {
            (SiteCommand::Start, _) => server_state::STARTED,
            (SiteCommand::Stop, _) => server_state::STOPPED,
            (SiteCommand::Pause, server_state::STARTED | server_state::PAUSED) => {
                server_state::PAUSED
            }
            (SiteCommand::Pause, _) => return Err(CommandError::SiteNotRunning(id)),
            (SiteCommand::Continue, server_state::PAUSED | server_state::STARTED) => {
                server_state::STARTED
            }
            (SiteCommand::Continue, _) => return Err(CommandError::SiteNotPaused(id)),
        };
        site.state = next;
        site.error = None;
        self.apply_routes();
        self.write_states();
        match self.sites.get(&id).and_then(|s| s.error.clone()) {
            Some(reason) => Err(CommandError::SiteCannotStart { id, reason }),
            None => Ok(Done::Site { id, command }),
        }
    }
}

/// A site's W3C log settings for the listener; a LogFileDirectory that is
/// not an absolute Unix path (IIS's `%WinDir%\System32\LogFiles`) means
/// the state directory's `logs`.
fn log_settings(
    state_dir: &std::path::Path,
    log: &crate::model::LogSettings,
) -> Option<listener::w3c::W3cSettings> {
    if !log.enabled {
        return None;
    }
    let directory = if log.directory.starts_with('/') {
        std::path::PathBuf::from(&log.directory)
    } else {
        state_dir.join("logs")
    };
    Some(listener::w3c::W3cSettings {
        directory,
        period: log.period,
        truncate_size: log.truncate_size,
        fields: log.fields,
        local_time_rollover: log.local_time_rollover,
    })
}

/// How often a pool's workers are pinged: PingInterval, or the status
/// ping when pinging is off.
fn ping_every(settings: &PoolSettings) -> Duration {
    if settings.pinging_enabled {
        Duration::from_secs(u64::from(settings.ping_interval))
    } else {
        STATUS_PING
    }
}

fn configure_queue(pool: &mut Pool) {
    let q = pool.queue.queue();
    q.set_max_length(pool.settings.queue_length as usize);
    q.set_drop_when_stopped(pool.settings.load_balancer_capabilities == 1);
    if pool.missing {
        q.set_stopped(true);
    }
}

fn missing_pool(name: &str) -> PoolSettings {
    PoolSettings {
        name: name.to_string(),
        auto_start: false,
        max_processes: 1,
        pinging_enabled: false,
        ping_interval: 30,
        ping_response_time: 90,
        startup_time_limit: 90,
        shutdown_time_limit: 90,
        periodic_restart_time: 0,
        periodic_restart_requests: 0,
        periodic_restart_schedule: Vec::new(),
        periodic_restart_memory: 0,
        periodic_restart_private_memory: 0,
        rapid_fail_protection: false,
        rapid_fail_interval: 5,
        rapid_fail_max_crashes: 5,
        load_balancer_capabilities: 2,
        idle_timeout: 0,
        queue_length: 1000,
        disallow_overlapping_rotation: false,
        disallow_rotation_on_config_change: true,
        identity_type: 2,
        wam_user: String::new(),
    }
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::geteuid().to_string())
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod state_machine_tests;

#[cfg(test)]
mod ping_tests {
    use super::PingSequence;

    #[test]
    fn ping_numbers_never_repeat_across_ticks() {
        // Each tick takes the sequence and gives it back; a number seen in
        // one tick must not come again in the next (a late pong to the
        // first ping would clear the second).
        let mut service_side = PingSequence::default();
        let mut seen = std::collections::HashSet::new();
        for _tick in 0..3 {
            let mut pings = std::mem::take(&mut service_side);
            for _worker in 0..4 {
                assert!(seen.insert(pings.next()));
            }
            service_side = pings;
        }
        assert_eq!(seen.len(), 12);
    }
}
