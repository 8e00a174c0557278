//! nats-account-server: hosts and vends the account JWTs nats-server resolves in operator mode.
//!
//! Module map:
//! - [`config`]: settings from defaults, file (TOML or the Go server's syntax), `NAS_` env, flags.
//! - [`jwt`]: decode, verify and validate NATS JWTs (v1 and v2); the operator trust anchor.
//! - [`store`]: the in-memory index in front of a durable backend (sled, memory), group commit,
//!   change log with lineage id and sequence numbers.
//! - [`service`]: the validation chain and write path, shared by HTTP and the replica.
//! - [`http`]: routes, handlers and token rendering; [`error`] maps failures to HTTP.
//! - [`nats`]: the background NATS connection and claims-update notifications.
//! - [`replica`]: change-feed sync, NATS listener, miss fetching and write forwarding.
//! - [`metrics`]: per-instance Prometheus registry.
//! - [`server`]: wiring, start and graceful stop; [`state`]: the handles handlers share.
pub mod config;
pub mod error;
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod nats;
pub mod replica;
pub mod server;
pub mod service;
pub mod state;
pub mod store;

pub use config::Settings;
pub use server::RunningServer;
