//! The formats other programs (and our other nodes) read and write, each rendered and parsed in
//! one place, so that the writer and the reader of a format cannot drift apart:
//!
//! - [`pack`]: `key|jwt` lines, the Go server's bulk format (`GET /jwt/v1/pack`, `import
//!   --from-url`, a replica of a Go primary) and nats-server's `$SYS.REQ.CLAIMS.PACK` answers.
//! - [`feed`]: the change feed between our nodes (`seq|kind|key|jwt` lines of
//!   `GET /jwt/v1/changes`) and the digest listing replicas compare for anti-entropy
//!   (`kind|key|iat|hash[|request]` lines of `GET /jwt/v1/digest?buckets=`).
//! - [`subject`]: the NATS subjects nats-server and our replicas use for claims updates, lookups,
//!   packs, lists and deletions.
//! - [`header`]: the HTTP headers of our own that other nodes read.
//!
//! Pure functions over bytes and strings (plus the store's [`crate::store::Entry`] they are
//! rendered from): no I/O, no transport.

pub mod feed;
pub mod header;
pub mod pack;
pub mod subject;
