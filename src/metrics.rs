//! Prometheus metrics, one registry per server instance (so a primary and replicas can run in
//! one test process). Labels are low-cardinality: route templates and status codes, never keys.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::Arc;

/// Cheap, cloneable handle to this instance's metric families.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    notifications: IntCounterVec,
    rejections: IntCounterVec,
    store_entries: IntGaugeVec,
    head_seq: IntGauge,
    store_failing: IntGauge,
    store_failures: IntCounter,
    nats_connected: IntGauge,
    replica_lag_seq: IntGauge,
    replica_lag_seconds: prometheus::Gauge,
    primary_reachable: IntGauge,
    replica_applied: IntCounterVec,
    replica_nats_ignored: IntCounterVec,
    long_polls: IntGauge,
    resolver_requests: IntCounterVec,
    /// Hostile-load defences: refusals at a cap, caches and shortcuts.
    load: LoadFamilies,
    /// Replica integrity: stalls, misses, resyncs, anti-entropy.
    replica: ReplicaFamilies,
    /// Automatic failover: role, term, lease, semi-synchronous writes.
    cluster: ClusterFamilies,
}

/// Families of a cluster node (`--cluster`), exported only there.
struct ClusterFamilies {
    role: IntGaugeVec,
    term: IntGauge,
    lease_age: prometheus::Gauge,
    leader_changes: IntCounter,
    fallbacks: IntCounter,
    wait: prometheus::Histogram,
    fenced: IntCounter,
    kv_up: IntGauge,
}

impl ClusterFamilies {
    fn new(registry: Option<&Registry>) -> ClusterFamilies {
        let f = ClusterFamilies {
            role: IntGaugeVec::new(
                Opts::new(
                    "nas_cluster_role",
                    "Cluster: 1 for this node's role (leader, follower or candidate), 0 for the others",
                ),
                &["role"],
            )
            .expect("valid metric"),
            term: IntGauge::new("nas_cluster_term", "Cluster: the newest term this node has seen")
                .expect("valid metric"),
            lease_age: prometheus::Gauge::new(
                "nas_cluster_lease_age_seconds",
                "Cluster: seconds since the leader's lease was last renewed, as this node saw it",
            )
            .expect("valid metric"),
            leader_changes: IntCounter::new(
                "nas_cluster_leader_changes_total",
                "Cluster: changes of leader seen by this node (elections, step-downs)",
            )
            .expect("valid metric"),
            fallbacks: IntCounter::new(
                "nas_cluster_semisync_fallbacks_total",
                "Cluster: writes answered without the acknowledgements of cluster.syncreplicas followers (timed out, or answered asynchronously until followers catch up)",
            )
            .expect("valid metric"),
            wait: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "nas_cluster_semisync_wait_seconds",
                    "Cluster: how long acknowledged writes waited for their followers",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )
            .expect("valid metric"),
            fenced: IntCounter::new(
                "nas_cluster_fenced_total",
                "Cluster: writes refused because this node was not a leader with a valid lease",
            )
            .expect("valid metric"),
            kv_up: IntGauge::new(
                "nas_cluster_kv_up",
                "Cluster: 1 while the lease bucket (NATS JetStream) answers",
            )
            .expect("valid metric"),
        };
        if let Some(r) = registry {
            for c in [
                Box::new(f.role.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(f.term.clone()),
                Box::new(f.lease_age.clone()),
                Box::new(f.leader_changes.clone()),
                Box::new(f.fallbacks.clone()),
                Box::new(f.wait.clone()),
                Box::new(f.fenced.clone()),
                Box::new(f.kv_up.clone()),
            ] {
                r.register(c).expect("metric registered once");
            }
        }
        f
    }
}

/// Families of the hostile-load defences (DESIGN §8): every refusal at a cap, and the caches
/// and shortcuts that keep repeated expensive requests cheap.
struct LoadFamilies {
    refused: IntCounterVec,
    decode_cache: IntCounterVec,
    post_shortcuts: IntCounterVec,
    pack_computations: IntCounter,
    decode_delayed: IntCounter,
}

impl LoadFamilies {
    fn new(registry: &Registry) -> LoadFamilies {
        let counter = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let single = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let pack_computations = single(
            "nas_resolver_pack_computations_total",
            "NATS PACK answers computed (store hash and account list); concurrent requests for one store state share one",
        );
        let decode_delayed = single(
            "nas_decode_views_delayed_total",
            "?decode=true views held back until they fit their client address's http.decodebytespersecond (sent late, not refused)",
        );
        LoadFamilies {
            refused: counter(
                "nas_refused_total",
                "Requests refused or cut off at a limit, by reason (header_too_large, bulk_busy, \
                 long_polls, long_polls_per_client, write_timeout, heavy_busy, pack_busy, notify_queue_full, decode_budget)",
                "reason",
            ),
            decode_cache: counter(
                "nas_decode_cache_total",
                "?decode=true views served from the per-version cache (hit) or rendered (miss)",
                "result",
            ),
            post_shortcuts: counter(
                "nas_post_shortcuts_total",
                "Account writes answered by comparing with the stored version before the content \
                 rules ran (unchanged: same bytes, 200; stale: older iat, 409; same_iat: 409)",
                "result",
            ),
            pack_computations,
            decode_delayed,
        }
    }
}

/// Families that say whether a replica can be trusted to serve what its primary would.
struct ReplicaFamilies {
    stalled: IntGauge,
    stalled_seq: IntGauge,
    misses: IntCounterVec,
    resyncs: IntCounterVec,
    unchanged: IntCounter,
    antientropy: IntCounterVec,
}

impl ReplicaFamilies {
    /// The families, registered in `registry` on a replica (`None` on a primary: they exist
    /// but are not exported).
    fn new(registry: Option<&Registry>) -> ReplicaFamilies {
        let register = |c: Box<dyn prometheus::core::Collector>| {
            if let Some(r) = registry {
                r.register(c).expect("metric registered once");
            }
        };
        let counter = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            register(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            register(Box::new(g.clone()));
            g
        };
        ReplicaFamilies {
            stalled: gauge(
                "nas_replica_stalled",
                "Replica: 1 while replication is stopped at a change that does not verify here (see the log and /readyz)",
            ),
            stalled_seq: gauge(
                "nas_replica_stalled_seq",
                "Replica: the primary's sequence of the change replication is stopped at (0: none)",
            ),
            misses: counter(
                "nas_replica_misses_total",
                "Replica: read misses by outcome (fetched from the primary, joined a fetch in flight, cached not-found, refused at the concurrency cap)",
                "result",
            ),
            resyncs: counter(
                "nas_replica_resyncs_total",
                "Replica: full resyncs from sequence 0 by reason",
                "reason",
            ),
            unchanged: {
                let c = IntCounter::new(
                    "nas_replica_feed_unchanged_total",
                    "Replica: feed changes whose token was already held byte for byte (neither verified again nor stored; a resync after a failover is mostly these)",
                )
                .expect("valid metric");
                register(Box::new(c.clone()));
                c
            },
            antientropy: counter(
                "nas_replica_antientropy_total",
                "Replica: digest comparisons with the primary and repairs, by result (match, mismatch, fetched, sent_back, failed)",
                "result",
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A primary's registry: every family except the replica ones (`nas_replica_*`), which
    /// would only ever read 0 there and look like an unreachable primary on a dashboard.
    pub fn new() -> Metrics {
        Metrics::with_role(false)
    }

    /// A fresh registry for a primary, or (`replica`) with the replica families as well.
    pub fn with_role(replica: bool) -> Metrics {
        Metrics::with_roles(replica, false)
    }

    /// A fresh registry with the replica families (`replica`) and the cluster families
    /// (`cluster`: a node may be either role, so it has both).
    pub fn with_roles(replica: bool, cluster: bool) -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "nas_http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "nas_http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                5.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let notifications = IntCounterVec::new(
            Opts::new(
                "nas_notifications_total",
                "NATS claims-update notifications by result (sent, failed, dropped; coalesced: a ?notify=true re-send of a key already waiting)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let rejections = IntCounterVec::new(
            Opts::new(
                "nas_validation_rejections_total",
                "Rejected writes by reason code",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let store_entries = IntGaugeVec::new(
            Opts::new("nas_store_entries", "Stored tokens by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let head_seq = IntGauge::new("nas_store_head_sequence", "Head sequence of the change log")
            .expect("valid metric");
        let store_failing = IntGauge::new(
            "nas_store_write_failing",
            "1 while commits to the store fail (disk full, read-only file system); writes answer 500",
        )
        .expect("valid metric");
        let store_failures = IntCounter::new(
            "nas_store_write_failures_total",
            "Commits to the store that failed (each answered every write of its group with 500)",
        )
        .expect("valid metric");
        let nats_connected = IntGauge::new(
            "nas_nats_connected",
            "1 when connected to NATS, 0 otherwise (absent NATS: 0)",
        )
        .expect("valid metric");
        let replica_lag_seq = IntGauge::new(
            "nas_replica_lag_sequences",
            "Replica: primary head sequence minus the last applied sequence",
        )
        .expect("valid metric");
        let replica_lag_seconds = prometheus::Gauge::new(
            "nas_replica_lag_seconds",
            "Replica: seconds since the replica was last known to be in sync with the primary",
        )
        .expect("valid metric");
        let primary_reachable = IntGauge::new(
            "nas_replica_primary_reachable",
            "Replica: 1 when the last request to the primary succeeded",
        )
        .expect("valid metric");
        let replica_applied = IntCounterVec::new(
            Opts::new(
                "nas_replica_applied_total",
                "Replica: tokens applied by source (feed, nats, miss, forward)",
            ),
            &["source"],
        )
        .expect("valid metric");
        let replica_nats_ignored = IntCounterVec::new(
            Opts::new(
                "nas_replica_nats_ignored_total",
                "Replica: claims updates received over NATS and not applied, by reason (a message \
                 a POST would refuse, or one not newer than what the replica holds)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let long_polls = IntGauge::new(
            "nas_changes_long_polls",
            "Change-feed requests parked waiting for a change (typically one per following replica)",
        )
        .expect("valid metric");
        let resolver_requests = IntCounterVec::new(
            Opts::new(
                "nas_resolver_requests_total",
                "nats-server resolver requests over NATS by kind (lookup, pack) and result",
            ),
            &["request", "result"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(notifications.clone()),
            Box::new(rejections.clone()),
            Box::new(store_entries.clone()),
            Box::new(head_seq.clone()),
            Box::new(store_failing.clone()),
            Box::new(store_failures.clone()),
            Box::new(nats_connected.clone()),
            Box::new(long_polls.clone()),
            Box::new(resolver_requests.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        if replica {
            for c in [
                Box::new(replica_lag_seq.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(replica_lag_seconds.clone()),
                Box::new(primary_reachable.clone()),
                Box::new(replica_applied.clone()),
                Box::new(replica_nats_ignored.clone()),
            ] {
                registry.register(c).expect("metric registered once");
            }
        }
        let replica_families = ReplicaFamilies::new(replica.then_some(&registry));
        let load = LoadFamilies::new(&registry);
        let cluster = ClusterFamilies::new(cluster.then_some(&registry));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                notifications,
                rejections,
                store_entries,
                head_seq,
                store_failing,
                store_failures,
                nats_connected,
                replica_lag_seq,
                replica_lag_seconds,
                primary_reachable,
                replica_applied,
                replica_nats_ignored,
                long_polls,
                resolver_requests,
                load,
                replica: replica_families,
                cluster,
            }),
        }
    }

    /// Records one HTTP request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let i = &self.inner;
        i.requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        i.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Counts a notification outcome (`sent`, `failed`, `dropped`).
    pub fn notification(&self, result: &str) {
        self.inner.notifications.with_label_values(&[result]).inc();
    }

    /// Counts a rejected write by reason code.
    pub fn rejection(&self, reason: &str) {
        self.inner.rejections.with_label_values(&[reason]).inc();
    }

    /// Counts `n` tokens applied by a replica from `source`.
    pub fn replica_applied(&self, source: &str, n: u64) {
        self.inner
            .replica_applied
            .with_label_values(&[source])
            .inc_by(n);
    }

    /// Sets the replica's stall gauges: `Some(seq)` while replication is stopped at `seq`.
    pub fn replica_stalled(&self, seq: Option<u64>) {
        let r = &self.inner.replica;
        r.stalled.set(i64::from(seq.is_some()));
        r.stalled_seq.set(seq.unwrap_or(0) as i64);
    }

    /// Counts a replica read miss by outcome.
    pub fn replica_miss(&self, result: &str) {
        self.inner.replica.misses.with_label_values(&[result]).inc();
    }

    /// Counts a replica full resync by reason.
    pub fn replica_resync(&self, reason: &str) {
        self.inner
            .replica
            .resyncs
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts `n` feed changes a replica already held byte for byte.
    pub fn replica_feed_unchanged(&self, n: u64) {
        self.inner.replica.unchanged.inc_by(n);
    }

    /// Counts a claims update a replica received over NATS and did not apply, by `reason`.
    pub fn replica_nats_ignored(&self, reason: &str) {
        self.inner
            .replica_nats_ignored
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts an anti-entropy outcome (`n` keys for repairs).
    pub fn replica_antientropy(&self, result: &str, n: u64) {
        self.inner
            .replica
            .antientropy
            .with_label_values(&[result])
            .inc_by(n);
    }

    /// Counts a resolver request answered over NATS (`lookup`/`pack`, and how it ended).
    pub fn resolver_request(&self, request: &str, result: &str) {
        self.inner
            .resolver_requests
            .with_label_values(&[request, result])
            .inc();
    }

    /// Counts a request refused (or cut off) at a limit, by `reason`.
    pub fn refused(&self, reason: &str) {
        self.inner.load.refused.with_label_values(&[reason]).inc();
    }

    /// Counts a `?decode=true` view served from the cache (`hit`) or rendered (`miss`).
    pub fn decode_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.inner
            .load
            .decode_cache
            .with_label_values(&[result])
            .inc();
    }

    /// Counts an account write answered before the content rules ran, by outcome.
    pub fn post_shortcut(&self, result: &str) {
        self.inner
            .load
            .post_shortcuts
            .with_label_values(&[result])
            .inc();
    }

    /// Counts a `?decode=true` view held back for its address's byte budget.
    pub fn decode_delayed(&self) {
        self.inner.load.decode_delayed.inc();
    }

    /// Counts one computation of the NATS PACK answer.
    pub fn pack_computed(&self) {
        self.inner.load.pack_computations.inc();
    }

    /// Counts a parked change-feed long poll until the returned guard is dropped.
    pub fn long_poll(&self) -> LongPollGuard {
        self.inner.long_polls.inc();
        LongPollGuard(self.inner.long_polls.clone())
    }

    /// Cluster role, term and lease age.
    pub fn cluster_state(&self, role: crate::role::Role, term: u64, lease_age: f64) {
        let c = &self.inner.cluster;
        for r in crate::role::Role::ALL {
            c.role
                .with_label_values(&[r.as_str()])
                .set(i64::from(r == role));
        }
        c.term.set(term as i64);
        c.lease_age.set(lease_age);
    }

    /// Whether the lease bucket answers.
    pub fn cluster_kv_up(&self, up: bool) {
        self.inner.cluster.kv_up.set(i64::from(up));
    }

    /// One change of leader seen.
    pub fn cluster_leader_change(&self) {
        self.inner.cluster.leader_changes.inc();
    }

    /// One write answered without its semi-synchronous acknowledgements.
    pub fn cluster_semisync_fallback(&self) {
        self.inner.cluster.fallbacks.inc();
    }

    /// One write acknowledged by its followers after `seconds`.
    pub fn cluster_semisync_wait(&self, seconds: f64) {
        self.inner.cluster.wait.observe(seconds);
    }

    /// One write refused for want of a valid lease.
    pub fn cluster_fenced(&self) {
        self.inner.cluster.fenced.inc();
    }

    /// Replica lag gauges and primary reachability.
    pub fn replica_state(&self, lag_seq: u64, lag_seconds: f64, reachable: bool) {
        let i = &self.inner;
        i.replica_lag_seq.set(lag_seq as i64);
        i.replica_lag_seconds.set(lag_seconds);
        i.primary_reachable.set(i64::from(reachable));
    }

    /// Renders the text exposition, after refreshing the gauges sampled at scrape time.
    /// Sets the store's write-health metrics (read from the store at scrape time, like the
    /// other store gauges).
    pub fn store_health(&self, health: &crate::store::WriteHealth) {
        let i = &self.inner;
        i.store_failing.set(i64::from(health.failing));
        // The store counts; the counter follows it.
        let seen = i.store_failures.get();
        if health.failures > seen {
            i.store_failures.inc_by(health.failures - seen);
        }
    }

    pub fn render(
        &self,
        accounts: usize,
        activations: usize,
        head: u64,
        nats_connected: bool,
    ) -> String {
        let i = &self.inner;
        i.store_entries
            .with_label_values(&["account"])
            .set(accounts as i64);
        i.store_entries
            .with_label_values(&["activation"])
            .set(activations as i64);
        i.head_seq.set(head as i64);
        i.nats_connected.set(i64::from(nats_connected));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&i.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        431 => "431",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Keeps `nas_changes_long_polls` raised while a long poll waits.
pub struct LongPollGuard(IntGauge);

impl Drop for LongPollGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
