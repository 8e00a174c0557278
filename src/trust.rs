//! The trust anchor, and its one owner.
//!
//! What a server trusts is the operator's **identity key**. The operator JWT around it (its
//! signing keys, its system account) may change over time; the identity key never does. It
//! comes from the configured `--operator` file or, on a replica without one, from the primary
//! on first contact (trust on first use), and a replica persists it in its store, so a restart
//! or a SIGHUP never forgets it; nor does a promotion: a primary without `--operator` trusts
//! the operator its store recorded.
//!
//! Two things change the trust at runtime, and both go through [`TrustAnchor`]:
//! - SIGHUP re-reads the configured files ([`TrustAnchor::reload`]);
//! - a replica learns a newer operator JWT from its primary ([`TrustAnchor::learn`]), accepted
//!   only when it is validly self-signed by the pinned identity key.
//!
//! Handlers and the replica read the current [`Trust`] through a `watch` receiver, so an update
//! never blocks a reader.

use crate::jwt::trust::{Operator, OperatorError};
use crate::store::{Entry, Store, StoreError};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What handlers trust now: the operator JWT in force and the system-account fallback.
#[derive(Debug, Default)]
pub struct Trust {
    /// The operator in force: the newest JWT of the trusted identity key (configured or
    /// learned from the primary), if any.
    pub operator: Option<Operator>,
    /// The configured system-account JWT, served when the store lacks it.
    pub system_account: Option<Arc<Entry>>,
    /// The configured JWT of the account a cluster's election link uses
    /// (`cluster.accountjwtpath`), served when the store lacks it.
    pub cluster_account: Option<Arc<Entry>>,
}

/// Metadata key under which a store records the operator JWT it trusts (the pinned identity
/// key is its subject): a replica's, and `import`'s. Not under `replica.`: such metadata is
/// always committed durably.
pub use crate::store::META_OPERATOR;

/// Why an operator JWT was not taken as the trust anchor.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The token is not a validly self-signed operator JWT.
    #[error(transparent)]
    Invalid(#[from] OperatorError),
    /// It is an operator, but not the one this server trusts.
    #[error("operator {offered} is not the trusted operator {pinned}")]
    OtherOperator {
        /// The identity key this server trusts.
        pinned: String,
        /// The identity key of the offered JWT.
        offered: String,
    },
    /// The data directory trusts another operator than the configured one.
    #[error("the data directory trusts operator {pinned}, but the configured operator is {configured}; use a fresh --data directory for another operator")]
    ConfiguredMismatch {
        /// Persisted in the store.
        pinned: String,
        /// From the configured file.
        configured: String,
    },
    /// The learned operator could not be persisted.
    #[error("persisting the trusted operator: {0}")]
    Store(#[from] StoreError),
}

/// What [`TrustAnchor::learn`] did with an operator JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Nothing was trusted before: its identity key is now pinned.
    Pinned,
    /// A newer JWT of the trusted identity: now in force.
    Updated,
    /// The same or an older JWT of the trusted identity: nothing changed.
    Unchanged,
}

/// The sources the trust is computed from.
#[derive(Default)]
struct Sources {
    /// From the configured files (re-read on SIGHUP).
    configured: Option<Operator>,
    system_account: Option<Arc<Entry>>,
    cluster_account: Option<Arc<Entry>>,
    /// Learned from the primary (replicas only), persisted in the store.
    learned: Option<Operator>,
}

impl Sources {
    /// The trusted identity key: the configured operator's, else the learned one's.
    fn identity(&self) -> Option<&str> {
        self.configured
            .as_ref()
            .or(self.learned.as_ref())
            .map(Operator::public_key)
    }

    /// The operator in force: the newest JWT (by `iat`, configured first on a tie) of the
    /// trusted identity.
    fn effective(&self) -> Trust {
        let identity = self.identity();
        let operator = [self.configured.as_ref(), self.learned.as_ref()]
            .into_iter()
            .flatten()
            .filter(|op| Some(op.public_key()) == identity)
            .reduce(|best, op| if op.iat() > best.iat() { op } else { best })
            .cloned();
        Trust {
            operator,
            system_account: self.system_account.clone(),
            cluster_account: self.cluster_account.clone(),
        }
    }
}

/// The owner of the trust anchor. Cheap to clone; every clone updates the same trust.
#[derive(Clone)]
pub struct TrustAnchor {
    /// Held only while an update is computed and published (SIGHUP, a learned operator): two
    /// rare writers that must not interleave. Readers use the `watch` and never take it.
    sources: Arc<Mutex<Sources>>,
    tx: Arc<watch::Sender<Arc<Trust>>>,
    /// Where a replica persists what it learned; `None` on a primary (its trust is its files
    /// and, read once at start, the operator its store recorded).
    persist: Option<Store>,
}

/// The operator recorded in `store` (pinned on first use or learned from a primary), if any:
/// the one reading of that record, for the server and for `import`.
///
/// # Errors
/// [`OperatorError`] when the record is not a valid operator JWT.
pub fn recorded_operator(store: &Store) -> Result<Option<Operator>, OperatorError> {
    store
        .meta(META_OPERATOR)
        .map(|bytes| Operator::from_jwt(String::from_utf8_lossy(&bytes).trim()))
        .transpose()
}

/// A configured operator must be the one the store recorded, if it recorded one.
fn check_configured(
    configured: Option<&Operator>,
    recorded: Option<&Operator>,
) -> Result<(), TrustError> {
    match (configured, recorded) {
        (Some(c), Some(r)) if c.public_key() != r.public_key() => {
            Err(TrustError::ConfiguredMismatch {
                pinned: r.public_key().to_string(),
                configured: c.public_key().to_string(),
            })
        }
        _ => Ok(()),
    }
}

impl TrustAnchor {
    /// The trust of a primary on `store`: the configured files, plus the operator the store
    /// recorded (pinned or learned when it was a replica, or recorded by `import`). A replica
    /// promoted by a restart without `--primary` (DESIGN §6.1) and without `--operator` keeps
    /// the operator it trusted, so it still takes writes and serves `/jwt/v1/operator` to new
    /// replicas. Nothing is persisted: a primary's trust changes only with its files.
    ///
    /// # Errors
    /// [`TrustError::ConfiguredMismatch`] when the store trusts another identity key than the
    /// configured operator, as for a replica: its tokens were verified against another operator.
    pub fn primary(configured: Trust, store: &Store) -> Result<TrustAnchor, TrustError> {
        let recorded = recorded_operator(store)?;
        check_configured(configured.operator.as_ref(), recorded.as_ref())?;
        if let (None, Some(op)) = (&configured.operator, &recorded) {
            tracing::info!(
                operator = op.public_key(),
                "no operator configured: trusting the operator recorded in the store"
            );
        }
        Ok(TrustAnchor::build(configured, recorded, None))
    }

    /// The trust of a replica: the configured files plus the operator it persisted in `store`
    /// (learned from its primary earlier).
    ///
    /// # Errors
    /// [`TrustError::ConfiguredMismatch`] when the store trusts another identity key than the
    /// configured operator: its tokens were verified against another operator.
    pub fn replica(configured: Trust, store: &Store) -> Result<TrustAnchor, TrustError> {
        let learned = recorded_operator(store)?;
        check_configured(configured.operator.as_ref(), learned.as_ref())?;
        let anchor = TrustAnchor::build(configured, learned, Some(store.clone()));
        Ok(anchor)
    }

    fn build(configured: Trust, learned: Option<Operator>, persist: Option<Store>) -> Self {
        let sources = Sources {
            configured: configured.operator,
            system_account: configured.system_account,
            cluster_account: configured.cluster_account,
            learned,
        };
        let (tx, _) = watch::channel(Arc::new(sources.effective()));
        TrustAnchor {
            sources: Arc::new(Mutex::new(sources)),
            tx: Arc::new(tx),
            persist,
        }
    }

    /// A receiver of the current trust.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Trust>> {
        self.tx.subscribe()
    }

    /// The trust in force now.
    pub fn current(&self) -> Arc<Trust> {
        self.tx.borrow().clone()
    }

    /// The trusted operator identity key, if any is known yet.
    pub fn identity(&self) -> Option<String> {
        self.lock().identity().map(str::to_string)
    }

    /// Applies re-read configuration files (SIGHUP). What a replica learned from its primary
    /// stays; a configured operator with another identity key than the trusted one is refused
    /// on a replica, and on a primary trusting an operator its store recorded (the store holds
    /// tokens verified against the old one).
    ///
    /// # Errors
    /// [`TrustError::ConfiguredMismatch`]; then nothing changes.
    pub fn reload(&self, configured: Trust) -> Result<(), TrustError> {
        let mut sources = self.lock();
        if self.persist.is_some() || sources.learned.is_some() {
            if let (Some(c), Some(identity)) = (&configured.operator, sources.identity()) {
                if c.public_key() != identity {
                    return Err(TrustError::ConfiguredMismatch {
                        pinned: identity.to_string(),
                        configured: c.public_key().to_string(),
                    });
                }
            }
        }
        sources.configured = configured.operator;
        sources.system_account = configured.system_account;
        sources.cluster_account = configured.cluster_account;
        self.tx.send_replace(Arc::new(sources.effective()));
        Ok(())
    }

    /// Offers an operator JWT received from the primary. It is taken when it is validly
    /// self-signed and either nothing is trusted yet (trust on first use: its identity key is
    /// pinned) or it has the trusted identity key and is newer than the JWT in force. What is
    /// taken is persisted before it is used, so it survives a restart.
    ///
    /// # Errors
    /// [`TrustError`]: invalid, another operator, or the store failed (nothing changed).
    pub async fn learn(&self, token: &str) -> Result<Learned, TrustError> {
        let offered = Operator::from_jwt(token.trim())?;
        let outcome = {
            let sources = self.lock();
            match sources.identity() {
                None => Learned::Pinned,
                Some(id) if id != offered.public_key() => {
                    return Err(TrustError::OtherOperator {
                        pinned: id.to_string(),
                        offered: offered.public_key().to_string(),
                    })
                }
                Some(_) => {
                    let current = sources.effective().operator;
                    match current {
                        Some(cur) if offered.iat() <= cur.iat() => return Ok(Learned::Unchanged),
                        _ => Learned::Updated,
                    }
                }
            }
        };
        self.persist(token).await?;
        let mut sources = self.lock();
        // Another learn may have run while the store committed; keep the newest.
        if sources
            .learned
            .as_ref()
            .is_none_or(|l| offered.iat() > l.iat())
        {
            sources.learned = Some(offered);
        }
        self.tx.send_replace(Arc::new(sources.effective()));
        Ok(outcome)
    }

    /// Records `token` as the operator this replica's store trusts (a no-op on a primary).
    ///
    /// # Errors
    /// [`TrustError::Store`] when the store cannot commit it.
    pub async fn persist(&self, token: &str) -> Result<(), TrustError> {
        if let Some(store) = &self.persist {
            store
                .put_entries(
                    Vec::new(),
                    vec![(META_OPERATOR.to_string(), token.trim().as_bytes().to_vec())],
                    crate::store::Policy::NewerWins,
                )
                .await?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        // The sources are replaced whole; a panic mid-update leaves a consistent old value.
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}
