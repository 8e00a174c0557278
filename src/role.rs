//! The part a node plays, named once for every layer that branches on it or shows it.
//!
//! Two views of the same thing: a cluster node's [`Role`] in the election (what `cluster`
//! decides and `metrics` labels), and the [`NodeRole`] a whole server reports (`/healthz`,
//! `/readyz`, the status page, the start-up log). They live here, below `cluster`, `metrics`
//! and `state`, so that each of those can name a role without depending on the others.
//!
//! The strings of [`Role::as_str`] and [`NodeRole::as_str`] are a contract: JSON fields,
//! metric labels and the status page show exactly these.

use std::fmt;

/// A cluster node's part in the election (`--cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No leader is known to this node (at start, and between a lease expiring and the next
    /// one being taken): reads are served, writes refused.
    Candidate,
    /// Holds the lease: takes writes.
    Leader,
    /// Follows the leader the lease names.
    Follower,
}

impl Role {
    /// `candidate`, `leader` or `follower`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }

    /// Every role, for metrics.
    pub const ALL: [Role; 3] = [Role::Candidate, Role::Leader, Role::Follower];
}

/// What a server is: a primary or a replica by configuration, or a cluster node in whatever
/// role the election gave it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Takes writes into its own store (no `--primary`, no `--cluster`).
    Primary,
    /// Mirrors a configured primary (`--primary`).
    Replica,
    /// A cluster node (`--cluster`), in its current election role.
    Cluster(Role),
}

impl NodeRole {
    /// `primary` or `replica`; on a cluster node `leader`, `follower` or `candidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Primary => "primary",
            NodeRole::Replica => "replica",
            NodeRole::Cluster(role) => role.as_str(),
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for NodeRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialized forms are what `/readyz`, metrics and the status page have always shown.
    #[test]
    fn names_are_the_published_ones() {
        assert_eq!(NodeRole::Primary.to_string(), "primary");
        assert_eq!(
            serde_json::to_string(&NodeRole::Replica).unwrap(),
            "\"replica\""
        );
        let cluster: Vec<&str> = Role::ALL.map(|r| NodeRole::Cluster(r).as_str()).into();
        assert_eq!(cluster, ["candidate", "leader", "follower"]);
    }
}
