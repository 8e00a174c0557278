//! Replica NATS listener: applies claims updates the primary publishes, at once.
//!
//! Anyone holding system-account credentials can publish on these subjects, so every token is
//! verified against the operator before it is stored; forgeries are logged and dropped.

use super::ReplicaHandle;
use crate::nats::NatsHandle;
use crate::store::{Kind, PutOutcome};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

/// Subjects a replica listens on (the primary publishes one of the first two per account).
const SUBJECTS: [&str; 3] = [
    "$SYS.ACCOUNT.*.CLAIMS.UPDATE",
    "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
    "$SYS.ACCOUNT.*.CLAIMS.ACTIVATE.*",
];

/// Where the key sits in a subject.
fn parse_subject(subject: &str) -> Option<(Kind, &str)> {
    let t: Vec<&str> = subject.split('.').collect();
    match t.as_slice() {
        ["$SYS", "ACCOUNT", key, "CLAIMS", "UPDATE"] => Some((Kind::Account, key)),
        ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "UPDATE"] => Some((Kind::Account, key)),
        ["$SYS", "ACCOUNT", _issuer, "CLAIMS", "ACTIVATE", hash] => Some((Kind::Activation, hash)),
        _ => None,
    }
}

/// Runs until `cancel` fires.
pub async fn run(replica: ReplicaHandle, nats: NatsHandle, cancel: CancellationToken) {
    nats.follow(
        cancel,
        |_| true,
        |nc| {
            let replica = replica.clone();
            async move { listen(&replica, &nc).await }
        },
    )
    .await;
}

/// Subscribes on `nc` and applies messages until the subscriptions end.
async fn listen(replica: &ReplicaHandle, nc: &async_nats::Client) {
    let mut subs = Vec::new();
    for s in SUBJECTS {
        match nc.subscribe(s).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                tracing::error!(subject = s, cause = %e, "cannot subscribe; replica relies on the change feed");
                return;
            }
        }
    }
    let mut messages = futures_util::stream::select_all(subs);
    while let Some(msg) = messages.next().await {
        let Some((kind, key)) = parse_subject(msg.subject.as_str()) else {
            continue;
        };
        let token = String::from_utf8_lossy(&msg.payload);
        let jwt = match replica.verify(kind, key, token.trim()) {
            Ok(jwt) => jwt,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, cause = %e, "ignored a claims update that does not verify");
                continue;
            }
        };
        // The primary only hosts activations of accounts it knows; a message about an account
        // this replica has never seen is not something the primary published.
        if kind == Kind::Activation {
            let account = jwt.claims.issuing_account();
            if replica.store.get(Kind::Account, account).is_none() {
                tracing::warn!(subject = %msg.subject, %account, "ignored an activation from an unknown account");
                continue;
            }
        }
        match replica.store.put(kind, key, &jwt).await {
            Ok(PutOutcome::Stored(e)) => {
                replica.metrics.replica_applied("nats", 1);
                tracing::debug!(%key, seq = e.seq, "applied claims update from NATS");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(%key, cause = %e, "could not store claims update from NATS"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_keys() {
        assert_eq!(
            parse_subject("$SYS.ACCOUNT.AKEY.CLAIMS.UPDATE"),
            Some((Kind::Account, "AKEY"))
        );
        assert_eq!(
            parse_subject("$SYS.REQ.ACCOUNT.AKEY.CLAIMS.UPDATE"),
            Some((Kind::Account, "AKEY"))
        );
        assert_eq!(
            parse_subject("$SYS.ACCOUNT.AISS.CLAIMS.ACTIVATE.HASH"),
            Some((Kind::Activation, "HASH"))
        );
        assert_eq!(parse_subject("$SYS.ACCOUNT.AKEY.CONNECT"), None);
    }
}
