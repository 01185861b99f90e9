//! IIS 6's performance counters as Prometheus metrics: Performance
//! Monitor's "Web Service" object (per site), "HTTP Service Request
//! Queues" (per queue) and the URI cache, "W3SVC_W3WP" (per worker
//! process) and the activation service's worker starts, failures and
//! recycles (per application pool). A scrape takes a [`Sample`] of the
//! running service and encodes it in the OpenMetrics text format, which
//! Prometheus reads (`application/openmetrics-text`).

use std::fmt::Write;

use listener::stats::{W3Snapshot, VERBS};
use listener::QueueCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one scrape reports: the running service's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The whole service's Web Service counters (connections and uptime
    /// are the service's alone).
    pub service: W3Snapshot,
    /// Each site's, by site ID.
    pub sites: Vec<(u32, W3Snapshot)>,
    pub queues: Vec<QueueCounters>,
    /// The URI cache: hits, misses, entries, bytes.
    pub cache: Option<listener::cache::CacheCounters>,
    pub pools: Vec<was::PoolStatus>,
    /// Each worker process's CPU seconds and resident bytes, by PID.
    pub usage: std::collections::HashMap<u32, (f64, u64)>,
}

type Labels = Vec<(&'static str, String)>;

/// A sample's value: a count, or a measure with a fraction (CPU seconds).
#[derive(Clone, Copy, Debug)]
enum Number {
    Whole(u64),
    Fraction(f64),
}

/// One metric family: its samples by label set.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Number)>,
}

impl Family {
    fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Counter,
            samples: Vec::new(),
        }
    }

    fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            kind: MetricType::Gauge,
            ..Family::counter(name, help)
        }
    }

    fn with(mut self, labels: Labels, value: u64) -> Family {
        self.add(labels, value);
        self
    }

    fn add(&mut self, labels: Labels, value: u64) {
        self.samples.push((labels, Number::Whole(value)));
    }

    fn add_fraction(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, Number::Fraction(value)));
    }
}

/// The families of a sample, in the order they are printed.
fn families(sample: &Sample) -> Vec<Family> {
    let site = |id: u32| vec![("site", id.to_string())];
    let mut out = Vec::new();

    // Web Service, per site.
    type Pick = fn(&W3Snapshot) -> u64;
    let per_site: [(&'static str, &'static str, Pick); 9] = [
        (
            "inetsrv_web_sent_bytes",
            "Bytes sent to clients (Web Service: Total Bytes Sent)",
            |s| s.bytes_sent,
        ),
        (
            "inetsrv_web_received_bytes",
            "Bytes received from clients (Web Service: Total Bytes Received)",
            |s| s.bytes_received,
        ),
        (
            "inetsrv_web_not_found_errors",
            "Requests answered 404 (Web Service: Total Not Found Errors)",
            |s| s.not_found,
        ),
        (
            "inetsrv_web_locked_errors",
            "Requests answered 423 (Web Service: Total Locked Errors)",
            |s| s.locked,
        ),
        (
            "inetsrv_web_anonymous_requests",
            "Requests answered without a logged-on user (Web Service: Total Anonymous Users)",
            |s| s.anonymous,
        ),
        (
            "inetsrv_web_nonanonymous_requests",
            "Requests answered for a logged-on user (Web Service: Total NonAnonymous Users)",
            |s| s.authenticated,
        ),
        (
            "inetsrv_web_files_sent",
            "Successful GET and HEAD answers (Web Service: Total Files Sent)",
            |s| s.files_sent,
        ),
        (
            "inetsrv_web_isapi_extension_requests",
            "Requests ISAPI extensions and FastCGI applications answered (Web Service: Total ISAPI Extension Requests)",
            |s| s.isapi,
        ),
        (
            "inetsrv_web_cgi_requests",
            "Requests CGI programs answered (Web Service: Total CGI Requests)",
            |s| s.cgi,
        ),
    ];
    for (name, help, pick) in per_site {
        let mut family = Family::counter(name, help);
        for (id, s) in &sample.sites {
            family.add(site(*id), pick(s));
        }
        out.push(family);
    }
    let mut requests = Family::counter(
        "inetsrv_web_requests",
        "Requests answered, by method (Web Service: Total Get Requests, Total Post Requests, …)",
    );
    for (id, s) in &sample.sites {
        for (i, method) in VERBS.iter().chain(["OTHER"].iter()).enumerate() {
            let mut labels = site(*id);
            labels.push(("method", method.to_string()));
            requests.add(labels, s.verbs[i]);
        }
    }
    out.push(requests);
    let mut rejected = Family::counter(
        "inetsrv_web_rejected_requests",
        "Requests the listener turned away with 503 (queue full, pool stopped, connection limit)",
    );
    let mut anonymous_now = Family::gauge(
        "inetsrv_web_current_anonymous_users",
        "Requests being answered now without a logged-on user (Web Service: Current Anonymous Users)",
    );
    let mut users_now = Family::gauge(
        "inetsrv_web_current_nonanonymous_users",
        "Requests being answered now for a logged-on user (Web Service: Current NonAnonymous Users)",
    );
    for (id, s) in &sample.sites {
        rejected.add(site(*id), s.rejected);
        anonymous_now.add(site(*id), s.current[0]);
        users_now.add(site(*id), s.current[1]);
    }
    out.extend([rejected, anonymous_now, users_now]);
    let service = &sample.service;
    out.push(
        Family::gauge(
            "inetsrv_web_current_connections",
            "Client connections open now (Web Service: Current Connections)",
        )
        .with(Vec::new(), service.current_connections),
    );
    out.push(
        Family::gauge(
            "inetsrv_web_maximum_connections",
            "The most client connections open at once (Web Service: Maximum Connections)",
        )
        .with(Vec::new(), service.max_connections),
    );
    out.push(
        Family::counter(
            "inetsrv_web_connection_attempts",
            "Client connections accepted or turned away at the limit (Web Service: Total Connection Attempts)",
        )
        .with(Vec::new(), service.connection_attempts),
    );
    out.push(
        Family::gauge(
            "inetsrv_web_service_uptime_seconds",
            "Seconds the Web service has run (Web Service: Service Uptime)",
        )
        .with(Vec::new(), service.uptime),
    );

    // HTTP Service Request Queues.
    let queue = |q: &QueueCounters| {
        vec![
            ("queue", q.name.clone()),
            (
                "kind",
                if q.service { "pool" } else { "program" }.to_string(),
            ),
        ]
    };
    let mut length = Family::gauge(
        "inetsrv_http_queue_length",
        "Requests waiting in the queue for a process (HTTP Service Request Queues: CurrentQueueSize)",
    );
    let mut max_length = Family::gauge(
        "inetsrv_http_queue_max_length",
        "The most requests the queue holds (the pool's AppPoolQueueLength)",
    );
    let mut arrivals = Family::counter(
        "inetsrv_http_queue_arrivals",
        "Requests routed to the queue (HTTP Service Request Queues: ArrivalRate)",
    );
    let mut turned_away = Family::counter(
        "inetsrv_http_queue_rejected_requests",
        "Requests the queue turned away: full, or its pool stopped (HTTP Service Request Queues: RejectedRequests)",
    );
    let mut processes = Family::gauge(
        "inetsrv_http_queue_processes",
        "Processes serving the queue",
    );
    for q in &sample.queues {
        length.add(queue(q), q.length as u64);
        max_length.add(queue(q), q.max_length as u64);
        arrivals.add(queue(q), q.arrived);
        turned_away.add(queue(q), q.rejected);
        processes.add(queue(q), q.consumers as u64);
    }
    out.extend([length, max_length, arrivals, turned_away, processes]);
    if let Some(cache) = &sample.cache {
        out.push(
            Family::counter(
                "inetsrv_http_cache_hits",
                "Requests answered from the URI cache (HTTP Service Request Queues: CacheHitRate)",
            )
            .with(Vec::new(), cache.hits),
        );
        out.push(
            Family::counter(
                "inetsrv_http_cache_misses",
                "Cacheable requests not found in the URI cache",
            )
            .with(Vec::new(), cache.misses),
        );
        out.push(
            Family::gauge("inetsrv_http_cache_entries", "Responses in the URI cache")
                .with(Vec::new(), cache.entries),
        );
        out.push(
            Family::gauge("inetsrv_http_cache_bytes", "Bytes the URI cache holds")
                .with(Vec::new(), cache.bytes),
        );
    }

    // W3SVC_W3WP, per worker process.
    let mut active = Family::gauge(
        "inetsrv_worker_active_requests",
        "Requests the worker process was answering at its last ping (W3SVC_W3WP: Active Requests)",
    );
    let mut served = Family::counter(
        "inetsrv_worker_requests",
        "Requests the worker process answered (W3SVC_W3WP: Total HTTP Requests Served)",
    );
    let mut uptime = Family::gauge(
        "inetsrv_worker_uptime_seconds",
        "Seconds since the worker process started",
    );
    let mut cache_hits = Family::counter(
        "inetsrv_worker_file_cache_hits",
        "Static files the worker process answered from its file cache (W3SVC_W3WP: File Cache Hits)",
    );
    let mut cache_misses = Family::counter(
        "inetsrv_worker_file_cache_misses",
        "Static files the worker process read because its file cache did not hold them (W3SVC_W3WP: File Cache Misses)",
    );
    let mut cpu = Family::counter(
        "inetsrv_worker_cpu_seconds",
        "CPU time the worker process used, user and system (Process: % Processor Time)",
    );
    let mut memory = Family::gauge(
        "inetsrv_worker_resident_memory_bytes",
        "The worker process's resident memory (Process: Working Set)",
    );
    for pool in &sample.pools {
        for w in &pool.workers {
            let labels = || vec![("pool", pool.name.clone()), ("pid", w.pid.to_string())];
            active.add(labels(), w.active_requests);
            served.add(labels(), w.requests);
            uptime.add(labels(), w.uptime_seconds);
            cache_hits.add(labels(), w.file_cache_hits);
            cache_misses.add(labels(), w.file_cache_misses);
            if let Some((seconds, bytes)) = sample.usage.get(&w.pid) {
                cpu.add_fraction(labels(), *seconds);
                memory.add(labels(), *bytes);
            }
        }
    }
    out.extend([
        active,
        served,
        uptime,
        cache_hits,
        cache_misses,
        cpu,
        memory,
    ]);

    // The activation service, per application pool.
    let pool_label = |p: &was::PoolStatus| vec![("pool", p.name.clone())];
    let mut started = Family::gauge(
        "inetsrv_pool_started",
        "1 while the application pool is started, 0 while it is stopped",
    );
    let mut workers = Family::gauge(
        "inetsrv_pool_worker_processes",
        "Worker processes of the pool now",
    );
    let mut starts = Family::counter(
        "inetsrv_pool_worker_starts",
        "Worker processes started for the pool (WAS_W3WP: Total Worker Processes Created)",
    );
    let mut failures = Family::counter(
        "inetsrv_pool_worker_failures",
        "Worker processes that could not start, crashed, hung or were killed (WAS: Total Worker Process Failures)",
    );
    let mut recycles = Family::counter(
        "inetsrv_pool_recycles",
        "Worker processes recycled (WAS: Total Worker Process Recycles)",
    );
    let mut rapid_fail = Family::counter(
        "inetsrv_pool_rapid_fail_stops",
        "Times rapid-fail protection stopped the pool (WAS: Total Application Pool Failures)",
    );
    for p in &sample.pools {
        started.add(pool_label(p), u64::from(p.state == was::PoolState::Started));
        workers.add(pool_label(p), p.workers.len() as u64);
        starts.add(pool_label(p), p.counters.worker_starts);
        failures.add(pool_label(p), p.counters.worker_failures);
        recycles.add(pool_label(p), p.counters.recycles);
        rapid_fail.add(pool_label(p), p.counters.rapid_fail_stops);
    }
    out.extend([started, workers, starts, failures, recycles, rapid_fail]);
    out
}

/// A sample as prometheus-client's collector (encoded at once).
#[derive(Debug)]
struct Collected(Vec<Family>);

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        for Family {
            name,
            help,
            kind,
            samples,
        } in &self.0
        {
            if samples.is_empty() {
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
            // A family of one unlabelled sample prints no labels (not `{}`).
            if let [(labels, single)] = samples.as_slice() {
                if labels.is_empty() {
                    put(kind, family, *single)?;
                    continue;
                }
            }
            for (labels, sample) in samples {
                put(kind, family.encode_family(labels)?, *sample)?;
            }
        }
        Ok(())
    }
}

/// One sample's value, as its family's type.
fn put(kind: &MetricType, metric: MetricEncoder<'_>, value: Number) -> std::fmt::Result {
    match (kind, value) {
        (MetricType::Counter, Number::Whole(n)) => ConstCounter::new(n).encode(metric),
        (MetricType::Counter, Number::Fraction(x)) => ConstCounter::new(x).encode(metric),
        (_, Number::Whole(n)) => ConstGauge::new(n as i64).encode(metric),
        (_, Number::Fraction(x)) => ConstGauge::new(x).encode(metric),
    }
}

/// The sample in the OpenMetrics text format.
pub fn encode(sample: &Sample) -> String {
    let collected = Collected(families(sample));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collected));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        // Writing to a String does not fail; a label the encoder refused
        // would end the text early, so say so where a scraper looks.
        let _ = writeln!(out, "# the encoding stopped early");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_encodes_as_openmetrics_with_its_labels() {
        let mut site = W3Snapshot {
            bytes_sent: 1234,
            ..W3Snapshot::default()
        };
        site.verbs[1] = 7;
        let sample = Sample {
            service: W3Snapshot {
                current_connections: 3,
                ..W3Snapshot::default()
            },
            sites: vec![(1, site)],
            queues: vec![QueueCounters {
                name: "DefaultAppPool".into(),
                service: true,
                length: 2,
                max_length: 1000,
                arrived: 9,
                rejected: 1,
                consumers: 1,
                stopped: false,
            }],
            cache: None,
            pools: Vec::new(),
            usage: Default::default(),
        };
        let text = encode(&sample);
        assert!(
            text.contains("# TYPE inetsrv_web_sent_bytes counter"),
            "{text}"
        );
        assert!(
            text.contains("inetsrv_web_sent_bytes_total{site=\"1\"} 1234"),
            "{text}"
        );
        assert!(
            text.contains("inetsrv_web_requests_total{site=\"1\",method=\"GET\"} 7"),
            "{text}"
        );
        assert!(text.contains("inetsrv_web_current_connections 3"), "{text}");
        assert!(
            text.contains(
                "inetsrv_http_queue_rejected_requests_total{queue=\"DefaultAppPool\",kind=\"pool\"} 1"
            ),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        // A family with no samples (no pools) is left out.
        assert!(!text.contains("inetsrv_pool_started"), "{text}");
    }
}
