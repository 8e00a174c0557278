//! Replica NATS listener: applies the claims updates its primary publishes, at once.
//!
//! What arrives on these subjects is a hint from an untrusted channel: anyone holding
//! system-account credentials can publish there (DESIGN §6, "NATS"). So a message is applied
//! only when it passes everything a POST to the primary would pass (the very functions the
//! primary's write path calls: the POST policy, [`verify::post`])
//! and is strictly newer (a later `iat`) than what this replica holds. Anything else is
//! ignored, logged and counted in `nas_replica_nats_ignored_total{reason}`. The change feed
//! stays authoritative: an ignored hint only means the feed brings the change instead, and a
//! same-second version the primary chose differently arrives through the feed, which mirrors
//! the primary ([`crate::store::Policy::MirrorPrimary`]).
//!
//! It subscribes only where the primary publishes: the account subject `nats.updatesubjects`
//! selects (`$SYS.ACCOUNT.<pub>.CLAIMS.UPDATE` for `old` and `both`, the primary sending both
//! forms for `both`; `$SYS.REQ.ACCOUNT.<pub>.CLAIMS.UPDATE` for `new`), and
//! `$SYS.ACCOUNT.<issuer>.CLAIMS.ACTIVATE.<hash>` for activations. Replicas and their primary
//! share that setting, as they share their NATS settings.

use super::ReplicaHandle;
use crate::config::UpdateSubjects;
use crate::jwt::{self, JwtError};
use crate::nats::NatsHandle;
use crate::store::{Entry, Kind, PutOutcome};
use crate::verify::{self, Invalid};
use crate::wire::subject::{self, Subject};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The subjects a replica listens on, given where its primary publishes account updates.
fn subjects(which: UpdateSubjects) -> [&'static str; 2] {
    let accounts = match which {
        UpdateSubjects::Old | UpdateSubjects::Both => subject::ANY_ACCOUNT_UPDATE,
        UpdateSubjects::New => subject::ANY_ACCOUNT_UPDATE_REQUEST,
    };
    [accounts, subject::ANY_ACTIVATION_UPDATE]
}

/// What a subject names.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    kind: Kind,
    /// The account public key or the activation hash.
    key: &'a str,
    /// Activations: the signer the primary put in the subject (the token's `iss`).
    issuer: Option<&'a str>,
}

/// Where the key (and an activation's issuer) sits in a subject.
fn parse_subject(s: &str) -> Option<Target<'_>> {
    let (kind, key, issuer) = match subject::parse(s)? {
        Subject::AccountUpdate { key } | Subject::AccountUpdateRequest { key } => {
            (Kind::Account, key, None)
        }
        Subject::ActivationUpdate { issuer, hash } => (Kind::Activation, hash, Some(issuer)),
        _ => return None,
    };
    Some(Target { kind, key, issuer })
}

/// Why a message was not applied. [`Ignored::label`] is the metric's `reason`.
#[derive(Debug)]
enum Ignored {
    /// Not one of the subjects the primary publishes on.
    Subject,
    /// Refused by the validation a POST applies.
    Invalid(Invalid),
    /// An activation whose hash or signer is not the one its subject names.
    SubjectMismatch,
    /// Not later than the version this replica holds (older, or another token of the same
    /// second: the feed brings the primary's choice).
    NotNewer {
        /// `iat` of the message.
        iat: i64,
        /// `iat` of the version held.
        held: i64,
    },
    /// The store failed (logged as an error; the feed brings the change later).
    Store(crate::store::StoreError),
}

impl Ignored {
    fn label(&self) -> &'static str {
        match self {
            Ignored::Subject => "subject",
            Ignored::Invalid(Invalid::Jwt(JwtError::Expired(_))) => "expired",
            Ignored::Invalid(Invalid::Jwt(JwtError::NotYetValid(_))) => "not_yet_valid",
            // The replica has not learned its operator yet: nothing can be verified.
            Ignored::Invalid(Invalid::NoOperator) => "no_operator",
            Ignored::Invalid(e) => e.code(),
            Ignored::SubjectMismatch => "subject_mismatch",
            Ignored::NotNewer { .. } => "not_newer",
            Ignored::Store(_) => "storage",
        }
    }
}

impl From<Invalid> for Ignored {
    fn from(e: Invalid) -> Ignored {
        Ignored::Invalid(e)
    }
}

/// Runs until `cancel` fires.
pub async fn run(replica: ReplicaHandle, nats: NatsHandle, cancel: CancellationToken) {
    let settings = nats.clone();
    nats.follow(
        cancel,
        |_| true,
        |nc| {
            let replica = replica.clone();
            // Read with the connection it belongs to: a reload that changes the setting
            // replaces the connection, and `follow` calls this again.
            let which = settings.update_subjects();
            async move { listen(&replica, &nc, which).await }
        },
    )
    .await;
}

/// Least time between two warnings about ignored updates of the same reason.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Subscribes on `nc` and handles messages until the subscriptions end.
async fn listen(replica: &ReplicaHandle, nc: &async_nats::Client, which: UpdateSubjects) {
    let mut subs = Vec::new();
    for s in subjects(which) {
        match nc.subscribe(s).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                tracing::error!(subject = s, cause = %e, "cannot subscribe; replica relies on the change feed");
                return;
            }
        }
    }
    let mut messages = futures_util::stream::select_all(subs);
    // Anyone with system-account credentials can publish here: a flood of forgeries must not
    // fill the log. One warning per reason every `WARN_EVERY`; every message is counted.
    let mut warned: HashMap<&'static str, Instant> = HashMap::new();
    let mut loud = |reason: &'static str| {
        let now = Instant::now();
        match warned.get(reason) {
            Some(at) if now.duration_since(*at) < WARN_EVERY => false,
            _ => {
                warned.insert(reason, now);
                true
            }
        }
    };
    while let Some(msg) = messages.next().await {
        let subject = msg.subject.as_str();
        match apply(replica, subject, &msg.payload).await {
            Ok(Some(e)) => {
                replica.metrics.replica_applied("nats", 1);
                tracing::debug!(%subject, seq = e.seq, iat = e.iat, "applied claims update from NATS");
            }
            // Already held (typically a write this replica forwarded and applied itself).
            Ok(None) => {}
            Err(why) => {
                replica.metrics.replica_nats_ignored(why.label());
                match &why {
                    Ignored::NotNewer { iat, held } => {
                        tracing::debug!(%subject, iat, held, "ignored a claims update that is not newer than the version held");
                    }
                    Ignored::Store(e) => {
                        tracing::error!(%subject, cause = %e, "could not store a claims update from NATS; the change feed brings it");
                    }
                    Ignored::Invalid(e) if loud(why.label()) => {
                        tracing::warn!(%subject, reason = why.label(), cause = %e, "ignored a claims update that a POST to the primary would refuse (more like it are counted in nas_replica_nats_ignored_total)");
                    }
                    Ignored::Subject | Ignored::SubjectMismatch if loud(why.label()) => {
                        tracing::warn!(%subject, reason = why.label(), "ignored a claims update whose subject does not match it (more like it are counted in nas_replica_nats_ignored_total)");
                    }
                    Ignored::Invalid(e) => {
                        tracing::debug!(%subject, reason = why.label(), cause = %e, "ignored a claims update");
                    }
                    Ignored::Subject | Ignored::SubjectMismatch => {
                        tracing::debug!(%subject, reason = why.label(), "ignored a claims update");
                    }
                }
            }
        }
    }
}

/// Validates one message and stores it when it is strictly newer. `Ok(None)`: the same token
/// is already held.
async fn apply(
    replica: &ReplicaHandle,
    subject: &str,
    payload: &[u8],
) -> Result<Option<Arc<Entry>>, Ignored> {
    let target = parse_subject(subject).ok_or(Ignored::Subject)?;
    if !replica.following() {
        // A cluster leader hears its own notifications; writes reach it by the write path only.
        return Ok(None);
    }
    let (kind, key) = (target.kind, target.key);
    // Cheap refusals before any signature: most messages are the primary's notification of a
    // change the feed (or a forwarded write) already brought.
    if let Some(held) = replica.store.get(kind, key) {
        let text = std::str::from_utf8(payload).map(str::trim).unwrap_or("");
        if held.jwt == text.as_bytes() {
            return Ok(None);
        }
        let iat = jwt::parse_unverified(text)
            .map_err(|e| Ignored::Invalid(e.into()))?
            .iat;
        if iat <= held.iat {
            return Err(Ignored::NotNewer {
                iat,
                held: held.iat,
            });
        }
    }
    let jwt = match kind {
        Kind::Account => verify::post::account(replica.trust().operator.as_ref(), key, payload)?,
        Kind::Activation => {
            let (hash, jwt) =
                verify::post::activation(payload, |account| replica.store.account_jwt(account))?;
            if hash != key || target.issuer != Some(jwt.claims.iss.as_str()) {
                return Err(Ignored::SubjectMismatch);
            }
            jwt
        }
    };
    // Newer-wins, not mirroring: a hint never replaces a version of the same second.
    match replica.store.put(kind, key, &jwt).await {
        Ok(PutOutcome::Stored(e)) => Ok(Some(e)),
        Ok(PutOutcome::Unchanged(_)) => Ok(None),
        Ok(PutOutcome::Stale { current } | PutOutcome::Conflict { current }) => {
            Err(Ignored::NotNewer {
                iat: jwt.claims.iat,
                held: current.iat,
            })
        }
        Err(e) => Err(Ignored::Store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_keys() {
        let account = |key| {
            Some(Target {
                kind: Kind::Account,
                key,
                issuer: None,
            })
        };
        assert_eq!(
            parse_subject("$SYS.ACCOUNT.AKEY.CLAIMS.UPDATE"),
            account("AKEY")
        );
        assert_eq!(
            parse_subject("$SYS.REQ.ACCOUNT.AKEY.CLAIMS.UPDATE"),
            account("AKEY")
        );
        assert_eq!(
            parse_subject("$SYS.ACCOUNT.AISS.CLAIMS.ACTIVATE.HASH"),
            Some(Target {
                kind: Kind::Activation,
                key: "HASH",
                issuer: Some("AISS"),
            })
        );
        assert_eq!(parse_subject("$SYS.ACCOUNT.AKEY.CONNECT"), None);
    }

    /// Only the account subject the primary publishes on is taken.
    #[test]
    fn listens_where_the_primary_publishes() {
        let activations = "$SYS.ACCOUNT.*.CLAIMS.ACTIVATE.*";
        assert_eq!(
            subjects(UpdateSubjects::Old),
            ["$SYS.ACCOUNT.*.CLAIMS.UPDATE", activations]
        );
        assert_eq!(
            subjects(UpdateSubjects::Both),
            ["$SYS.ACCOUNT.*.CLAIMS.UPDATE", activations]
        );
        assert_eq!(
            subjects(UpdateSubjects::New),
            ["$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", activations]
        );
    }
}
