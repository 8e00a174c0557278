//! `nats-account-server import`: one-shot migration into the sled store.
//!
//! Sources: a directory store (the Go server's or nats-server's, flat or sharded) or a running
//! account server's `GET /jwt/v1/pack` (Go or this one: `key|jwt` lines, blank lines ignored).
//! The target is the sled store the usual settings select (`--data`, `store.data`); the server
//! must not be running on it (sled locks its directory).
//!
//! Nothing is imported unverified: a server serves whatever its store holds, so a token of
//! another operator imported here would be served as if it were trusted. The operator comes
//! from `--operator` (or `operatorjwtpath`), or, with `--trust-store-operator`, from the one
//! the target store records ([`store::META_OPERATOR`]: written by an import with
//! `--operator`); without either the import refuses to run, and a store that records another
//! operator than `--operator` is refused rather than mixed.
//!
//! Every token passes the checks a POST would apply and is filed under its own key (the import
//! policy, [`verify::import`]; activations against the target store, after the accounts are
//! in). Storing is newer-wins through [`Store::put_many`], so importing
//! twice, or importing an older copy over newer data, changes nothing. The result is counted
//! in a [`Summary`]; skipped tokens are reported with their reason but do not fail the import
//! (old stores commonly hold expired accounts), while an unreadable source or target does.

use crate::config::cli::ImportArgs;
use crate::config::{Settings, StoreChoice};
use crate::jwt::trust::Operator;
use crate::jwt::{self, ClaimType, Jwt};
use crate::store::{self, dir, Kind, PutOutcome, Store, StoreError};
use crate::verify;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Tokens stored per commit.
const CHUNK: usize = 1000;
/// Longest wait for a primary's pack (it holds every token).
const PACK_TIMEOUT: Duration = Duration::from_secs(120);

/// One token from a source: the key it is filed under, and its text or why it could not be read.
pub type SourceItem = (String, Result<String, String>);

/// Why an import could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The settings do not select a sled store, or the operator is unusable.
    #[error("{0}")]
    Settings(String),
    /// No operator to verify the tokens against.
    #[error(
        "import verifies every token against the operator: pass --operator FILE (or set \
         operatorjwtpath), or --trust-store-operator to use the operator the target store records"
    )]
    NoOperator,
    /// `--trust-store-operator`, but the target store records no operator.
    #[error(
        "--trust-store-operator: the store in {0} records no operator (only an import with \
         --operator records one); pass --operator FILE"
    )]
    NoRecordedOperator(String),
    /// `--operator` names another operator than the one the target store records.
    #[error(
        "the store in {dir} holds tokens of operator {recorded}, and --operator is operator \
         {configured}: refusing to mix operators in one store"
    )]
    OperatorMismatch {
        /// The store's directory.
        dir: String,
        /// The identity key the store records.
        recorded: String,
        /// The identity key of `--operator`.
        configured: String,
    },
    /// The source could not be read.
    #[error("reading {source_name}: {reason}")]
    Source {
        /// The directory or URL.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The target store failed (the message carries the cause; no `source` as well).
    #[error("sled store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Store(e)
    }
}

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Stored (new keys, or newer than the stored version).
    pub imported: usize,
    /// Already stored (the same bytes).
    pub unchanged: usize,
    /// Older than the stored version; the stored one stays.
    pub stale: usize,
    /// Another version with the same `iat` is stored; the stored one stays (DESIGN §4).
    pub conflicting: usize,
    /// Refused by verification (not stored).
    pub skipped: usize,
    /// One line per skipped token: `<key>: <reason>`.
    pub problems: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "skipped {p}")?;
        }
        writeln!(
            f,
            "imported {}, unchanged {}, stale {}, same-iat conflicts {}, skipped {}",
            self.imported, self.unchanged, self.stale, self.conflicting, self.skipped
        )
    }
}

/// Runs the import `args` describes into the sled store of `settings`.
///
/// # Errors
/// [`ImportError`] when the target, the operator or the source cannot be used.
pub async fn run(settings: &Settings, args: &ImportArgs) -> Result<Summary, ImportError> {
    let StoreChoice::Sled(data) = settings.store_choice() else {
        return Err(ImportError::Settings(
            "import writes into the sled store (--data); the settings select another store".into(),
        ));
    };
    let configured = match settings.operator_path() {
        None => None,
        Some(path) => {
            Some(verify::load_operator(&path).map_err(|e| ImportError::Settings(e.to_string()))?)
        }
    };
    // Refuse before anything is created or downloaded.
    if configured.is_none() {
        if !args.trust_store_operator {
            return Err(ImportError::NoOperator);
        }
        if !data.is_dir() {
            return Err(ImportError::NoRecordedOperator(data.display().to_string()));
        }
    }
    let store = Store::open_sled(&data)?;
    let (operator, record) = choose_operator(&store, &data, configured)?;
    let items = match (&args.from_dir, &args.from_url) {
        (Some(dir), _) => read_dir(dir, args.shard)?,
        (None, Some(url)) => read_pack(url).await?,
        (None, None) => {
            return Err(ImportError::Settings(
                "import needs --from-dir DIR or --from-url URL".into(),
            ))
        }
    };
    if record {
        // Recorded first, so a later `--trust-store-operator` import of this store verifies
        // against the operator its tokens were verified against.
        store
            .put_many(
                Vec::new(),
                vec![(
                    store::META_OPERATOR.to_string(),
                    operator.jwt().raw.clone().into_bytes(),
                )],
            )
            .await?;
    }
    import(&store, &operator, items).await
}

/// The operator to verify against, and whether to record it in the store: the configured one
/// (recorded when the store has none, or an older JWT of the same operator), else the recorded
/// one.
fn choose_operator(
    store: &Store,
    data: &Path,
    configured: Option<Operator>,
) -> Result<(Operator, bool), ImportError> {
    let recorded = crate::trust::recorded_operator(store).map_err(|e| {
        ImportError::Settings(format!(
            "the operator recorded in the store in {}: {e}",
            data.display()
        ))
    })?;
    match (configured, recorded) {
        (Some(c), Some(r)) if c.public_key() != r.public_key() => {
            Err(ImportError::OperatorMismatch {
                dir: data.display().to_string(),
                recorded: r.public_key().to_string(),
                configured: c.public_key().to_string(),
            })
        }
        (Some(c), Some(r)) => {
            let newer = c.jwt().claims.iat > r.jwt().claims.iat;
            Ok((c, newer))
        }
        (Some(c), None) => Ok((c, true)),
        (None, Some(r)) => Ok((r, false)),
        (None, None) => Err(ImportError::NoRecordedOperator(data.display().to_string())),
    }
}

/// Verifies `items` (`key`, token text or why it could not be read) against `operator` and
/// stores those that pass: accounts first, then activations, whose issuing accounts must be in
/// the store by then (as a POST requires).
///
/// # Errors
/// [`ImportError::Store`].
pub async fn import(
    store: &Store,
    operator: &Operator,
    items: Vec<SourceItem>,
) -> Result<Summary, ImportError> {
    let mut summary = Summary::default();
    let mut accounts = Vec::new();
    let mut activations = Vec::new();
    for (key, text) in items {
        let kind =
            text.as_deref().map_err(Clone::clone).and_then(|t| {
                match jwt::parse_unverified(t)
                    .map_err(|e| e.to_string())?
                    .claim_type()
                {
                    ClaimType::Account => Ok(Kind::Account),
                    ClaimType::Activation => Ok(Kind::Activation),
                    other => Err(format!("a {other} JWT, not an account or activation")),
                }
            });
        match (kind, text) {
            (Ok(Kind::Account), Ok(t)) => accounts.push((key, t)),
            (Ok(Kind::Activation), Ok(t)) => activations.push((key, t)),
            (Err(reason), _) | (_, Err(reason)) => summary.skip(&key, reason),
        }
    }
    let accounts = verified(&mut summary, accounts, |key, text| {
        verify::import::account(operator, key, text)
    });
    store_all(store, &mut summary, Kind::Account, accounts).await?;
    let activations = verified(&mut summary, activations, |key, text| {
        verify::import::activation(key, text, |account| store.account_jwt(account))
    });
    store_all(store, &mut summary, Kind::Activation, activations).await?;
    Ok(summary)
}

impl Summary {
    fn skip(&mut self, key: &str, reason: impl fmt::Display) {
        self.skipped += 1;
        self.problems.push(format!("{key}: {reason}"));
    }
}

/// The tokens that `check` accepts; each one it refuses is counted as skipped.
fn verified(
    summary: &mut Summary,
    tokens: Vec<(String, String)>,
    check: impl Fn(&str, &str) -> Result<Jwt, verify::Invalid>,
) -> Vec<(String, Jwt)> {
    tokens
        .into_iter()
        .filter_map(|(key, text)| match check(&key, &text) {
            Ok(jwt) => Some((key, jwt)),
            Err(e) => {
                summary.skip(&key, e);
                None
            }
        })
        .collect()
}

/// Stores verified tokens in chunks, newer-wins, counting the outcomes.
async fn store_all(
    store: &Store,
    summary: &mut Summary,
    kind: Kind,
    mut valid: Vec<(String, Jwt)>,
) -> Result<(), ImportError> {
    while !valid.is_empty() {
        let rest = valid.split_off(valid.len().min(CHUNK));
        let chunk = std::mem::replace(&mut valid, rest)
            .into_iter()
            .map(|(key, jwt)| (kind, key, jwt))
            .collect();
        for outcome in store.put_many(chunk, Vec::new()).await? {
            match outcome {
                PutOutcome::Stored(_) => summary.imported += 1,
                PutOutcome::Unchanged(_) => summary.unchanged += 1,
                PutOutcome::Stale { .. } => summary.stale += 1,
                PutOutcome::Conflict { .. } => summary.conflicting += 1,
            }
        }
    }
    Ok(())
}

fn read_dir(dir: &std::path::Path, shard: bool) -> Result<Vec<SourceItem>, ImportError> {
    dir::read_all(dir, shard).map_err(|e| ImportError::Source {
        source_name: dir.display().to_string(),
        reason: e.to_string(),
    })
}

async fn read_pack(base: &str) -> Result<Vec<SourceItem>, ImportError> {
    let url = format!("{}/jwt/v1/pack", base.trim_end_matches('/'));
    let source = |reason: String| ImportError::Source {
        source_name: url.clone(),
        reason,
    };
    let response = reqwest::Client::builder()
        .timeout(PACK_TIMEOUT)
        .build()
        .map_err(|e| source(e.to_string()))?
        .get(&url)
        .send()
        .await
        .map_err(|e| source(e.to_string()))?;
    if !response.status().is_success() {
        return Err(source(format!("HTTP {}", response.status())));
    }
    let body = response.text().await.map_err(|e| source(e.to_string()))?;
    Ok(parse_pack(&body))
}

/// Parses pack lines `key|jwt` ([`crate::wire::pack`]): blank lines are skipped, a malformed
/// one is reported under `line N`.
pub fn parse_pack(body: &str) -> Vec<SourceItem> {
    crate::wire::pack::parse(body)
        .into_iter()
        .map(|line| match line {
            Ok((key, token)) => (key, Ok(token)),
            Err(m) => (
                format!("line {}", m.line),
                Err("not a `key|jwt` line".to_string()),
            ),
        })
        .collect()
}
