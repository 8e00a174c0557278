//! nats-account-server: hosts and vends the account JWTs nats-server resolves in operator mode.
//!
//! Every arrow points down: the adapters ([`http`], [`resolver`]) call the write path
//! ([`service`]), which uses the replica and cluster machinery, which use the store, NATS and
//! JWT layers; nothing below the adapters knows a transport's types. [`server`] wires it all.
//!
//! Module map:
//! - [`config`]: settings from defaults, file (TOML or the Go server's syntax), `NAS_` env, flags.
//! - [`jwt`]: decode, verify and validate NATS JWTs (v1 and v2); the operator trust anchor.
//! - [`verify`]: the checks a token passes before it may reach a store (a POST's, shared by the
//!   replica's NATS listener and `import`).
//! - [`store`]: the in-memory index in front of a durable backend (sled, directory, nsc folder,
//!   memory), group commit, change log with lineage id and sequence numbers, file watching.
//! - [`import`]: the `import` subcommand (directory store or a running server → sled).
//! - [`service`]: the write path, lookups and deletions, and [`service::ServiceError`], shared
//!   by both adapters.
//! - [`http`]: routes, handlers and token rendering; `http::error` maps failures to HTTP.
//! - [`resolver`]: nats-server's resolver protocol over NATS (lookup, pack, list, update,
//!   delete), the second adapter.
//! - [`nats`]: the background NATS connection and claims-update notifications.
//! - [`link`]: how links to NATS and the primary show in logs: URLs without passwords, causes
//!   once each, one line per change of state instead of one per retry.
//! - [`cluster`]: automatic failover: the leader lease on NATS JetStream, fencing, terms,
//!   semi-synchronous writes; [`role`]: the names of a node's roles.
//! - [`replica`]: change-feed sync, NATS listener, miss fetching and write forwarding.
//! - [`limits`]: caps and caches against hostile load (bulk answers, long polls, decode views,
//!   CPU-heavy work on a low-priority thread); [`budget`]: byte budgets per client address.
//! - [`metrics`]: per-instance Prometheus registry; [`heap`]: returning freed heap to the OS.
//! - [`tls`]: HTTPS with a certificate that SIGHUP can swap.
//! - [`trust`]: the operator trust anchor and its one owner (SIGHUP, learned from a primary).
//! - [`wire`]: the pack, change-feed and digest line formats and the NATS subjects, each
//!   rendered and parsed in one place.
//! - [`server`]: wiring, start and graceful stop; [`state`]: the handles handlers share.
pub mod cluster;
pub mod config;
pub mod heap;
pub mod http;
pub mod import;
pub mod jwt;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod nats;
pub mod replica;
pub mod resolver;
pub mod role;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod tls;
pub mod trust;
pub mod verify;
pub mod wire;

pub use config::Settings;
pub use server::RunningServer;
