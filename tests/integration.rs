//! The single integration-test binary (one link step on our 2-core machines): every area is a
//! module here. `common` holds the harness: in-process servers, our binary as a child process,
//! a real nats-server, fixtures from `tests/data/vectors`, and the `eventually` wait helper.

mod common;

/// HTTP API of a primary: every route and option, validation verdicts, bad input.
mod accounts;
/// Activation tokens: hashes, round trip, validation, replication.
mod activations;
/// Automatic failover (`--cluster`): elections on JetStream, kills, split brain, semi-sync.
mod cluster;
/// Configuration: TOML, the Go syntax, env and flag precedence, deploy/ examples.
mod config;
/// Account deletion: NATS and HTTP, tombstones, replicas, compaction.
mod deletion;
/// Cluster-mode deployment artifacts: alert rules (promtool), the Grafana dashboard, the
/// compose and Kubernetes examples, their node configs, nginx and nats-server configs.
mod deploy_ops;
/// The GET fast path answers exactly as the router and CORS middleware would.
mod fast_path;
/// Faults with real processes: SIGKILL mid-stream, a restarted nats-server, a partition, a
/// full disk, a failing store.
mod faults;
/// Hostile HTTP against a live server: raw malformed requests, weird paths, huge headers,
/// slow-loris clients, near-limit bodies and JSON type confusion.
mod hostile_http;
/// Hostile load: slow readers, long-poll and bulk caps, re-posts, decode views, big headers,
/// notify floods, concurrent NATS PACKs.
mod hostile_load;
/// The links to NATS and the primary in the log: one warning with the cause, one line back.
mod links;
/// The README's local cluster (primary, nats-server, replica), run from the README's text.
mod local_cluster;
/// The binary's one-line errors, check-config, flag precedence over the config's store.
mod messages;
/// NATS notifications against a real nats-server in operator mode.
mod nats_notify;
/// Operations: metrics, HTTPS, SIGHUP reload, CORS, NATS over TLS.
mod ops;
/// Our binary as a process: kill -9 durability, signals, exit codes.
mod process;
/// Property tests: the JWT decoder, claim validation and the nats-server config parser.
mod properties;
/// Replicas never serve stale or untrusted data: trust, stalls, restored primaries, misses.
mod replica_trust;
/// Primary/replica clusters: feed, NATS, misses, forwarding, concurrent writers, failover, nginx.
mod replication;
/// nats-server's NATS resolver protocol (cache and full resolvers): LOOKUP and PACK.
mod resolver;
/// Compatible stores: directory (sharded, read-only, watched), nsc folder, import.
mod stores;
/// The official vectors: decode, verify, hash and POST verdicts.
mod vectors;
