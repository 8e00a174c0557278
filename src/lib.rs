//! nats-account-server: hosts and vends the account JWTs nats-server resolves in operator mode.
//!
//! Module map:
//! - [`config`]: settings from defaults, file (TOML or the Go server's syntax), `NAS_` env, flags.
//! - [`jwt`]: decode, verify and validate NATS JWTs (v1 and v2); the operator trust anchor.
//! - [`store`]: the in-memory index in front of a durable backend (sled, directory, nsc folder,
//!   memory), group commit, change log with lineage id and sequence numbers, file watching.
//! - [`import`]: the `import` subcommand (directory store or a running server → sled).
//! - [`service`]: the validation chain and write path, shared by HTTP and the replica.
//! - [`http`]: routes, handlers and token rendering; [`error`] maps failures to HTTP.
//! - [`nats`]: the background NATS connection and claims-update notifications.
//! - [`link`]: how links to NATS and the primary show in logs: URLs without passwords, causes
//!   once each, one line per change of state instead of one per retry.
//! - [`cluster`]: automatic failover: the leader lease on NATS JetStream, fencing, terms,
//!   semi-synchronous writes.
//! - [`replica`]: change-feed sync, NATS listener, miss fetching and write forwarding.
//! - [`heavy`]: CPU-heavy request work on a low-priority thread, off the HTTP workers.
//! - [`limits`]: caps and caches against hostile load (bulk answers, long polls, decode views).
//! - [`metrics`]: per-instance Prometheus registry; [`memory`]: returning freed heap to the OS.
//! - [`tls`]: HTTPS with a certificate that SIGHUP can swap.
//! - [`trust`]: the operator trust anchor and its one owner (SIGHUP, learned from a primary).
//! - [`server`]: wiring, start and graceful stop; [`state`]: the handles handlers share.
pub mod budget;
pub mod cluster;
pub mod config;
pub mod error;
pub mod heavy;
pub mod http;
pub mod import;
pub mod jwt;
pub mod limits;
pub mod link;
pub mod memory;
pub mod metrics;
pub mod nats;
pub mod replica;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod tls;
pub mod trust;

pub use config::Settings;
pub use server::RunningServer;
