//! HTTP headers of our own that other nodes read: the change feed's position headers, the
//! cluster's stamp and acknowledgement headers, and the error code a replica relays.

/// The lineage (random id) of the store answering a feed or digest request.
pub const STORE_ID: &str = "X-Store-Id";
/// The answering store's head sequence.
pub const HEAD_SEQ: &str = "X-Head-Seq";
/// Tombstones at or below this sequence were dropped (a cursor below it may have missed one).
pub const COMPACTED_SEQ: &str = "X-Compacted-Seq";
/// On a page that is not full: the page holds every change up to this sequence.
pub const COMPLETE_TO: &str = "X-Complete-To";
/// The cluster term a feed page or a write was answered in.
pub const CLUSTER_TERM: &str = "X-Cluster-Term";
/// The node id of the cluster leader that accepted a write.
pub const CLUSTER_LEADER: &str = "X-Cluster-Leader";
/// A follower's node id on its feed requests (an acknowledgement of its cursor).
pub const CLUSTER_NODE: &str = "X-Cluster-Node";
/// The lineage a follower's cursor counts in, on its feed requests.
pub const CLUSTER_LINEAGE: &str = "X-Cluster-Lineage";
/// The stable machine code of a refusal ([`crate::service::CODES`]).
pub const ERROR_CODE: &str = "X-Error-Code";
