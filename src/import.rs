//! `nats-account-server import`: one-shot migration into the sled store.
//!
//! Sources: a directory store (the Go server's or nats-server's, flat or sharded) or a running
//! account server's `GET /jwt/v1/pack` (Go or this one: `key|jwt` lines, blank lines ignored).
//! The target is the sled store the usual settings select (`--data`, `store.data`); the server
//! must not be running on it (sled locks its directory).
//!
//! Every token is verified before it is stored: the signature always, the type and key (an
//! account's subject, an activation's hash) always, the time window, and, for accounts when an
//! operator is configured (`--operator`), that the issuer is the operator or one of its signing
//! keys. Storing is newer-wins through [`Store::put_many`], so importing twice, or importing an
//! older copy over newer data, changes nothing. The result is counted in a [`Summary`]; invalid
//! tokens are reported with their reason but do not fail the import (old stores commonly hold
//! expired accounts), while an unreadable source or target does.

use crate::config::cli::ImportArgs;
use crate::config::{Settings, StoreChoice};
use crate::jwt::trust::Operator;
use crate::jwt::{self, ClaimType, Jwt};
use crate::store::{dir, Kind, PutOutcome, Store, StoreError};
use std::fmt;
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
    /// Already stored (same `jti`).
    pub unchanged: usize,
    /// Older than the stored version; the stored one stays.
    pub stale: usize,
    /// Refused by validation.
    pub invalid: usize,
    /// One line per refused token: `<key>: <reason>`.
    pub problems: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "invalid {p}")?;
        }
        writeln!(
            f,
            "imported {}, unchanged {}, stale {}, invalid {}",
            self.imported, self.unchanged, self.stale, self.invalid
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
    let operator = match settings.operator_path() {
        None => None,
        Some(path) => {
            let token = std::fs::read_to_string(&path).map_err(|e| {
                ImportError::Settings(format!("operatorjwtpath {}: {e}", path.display()))
            })?;
            Some(Operator::from_jwt(token.trim()).map_err(|e| {
                ImportError::Settings(format!("operatorjwtpath {}: {e}", path.display()))
            })?)
        }
    };
    let items = match (&args.from_dir, &args.from_url) {
        (Some(dir), _) => read_dir(dir, args.shard)?,
        (None, Some(url)) => read_pack(url).await?,
        (None, None) => {
            return Err(ImportError::Settings(
                "import needs --from-dir DIR or --from-url URL".into(),
            ))
        }
    };
    let store = Store::open_sled(&data)?;
    import(&store, operator.as_ref(), items).await
}

/// Verifies and stores `items` (`key`, token text or why it could not be read).
///
/// # Errors
/// [`ImportError::Store`].
pub async fn import(
    store: &Store,
    operator: Option<&Operator>,
    items: Vec<SourceItem>,
) -> Result<Summary, ImportError> {
    let mut summary = Summary::default();
    let now = jwt::now_unix();
    let mut valid = Vec::new();
    for (key, text) in items {
        match text.and_then(|t| verify(&key, &t, operator, now)) {
            Ok((kind, jwt)) => valid.push((kind, key, jwt)),
            Err(reason) => {
                summary.invalid += 1;
                summary.problems.push(format!("{key}: {reason}"));
            }
        }
    }
    while !valid.is_empty() {
        let rest = valid.split_off(valid.len().min(CHUNK));
        for outcome in store
            .put_many(std::mem::replace(&mut valid, rest), Vec::new())
            .await?
        {
            match outcome {
                PutOutcome::Stored(_) => summary.imported += 1,
                PutOutcome::Unchanged(_) => summary.unchanged += 1,
                PutOutcome::Stale { .. } => summary.stale += 1,
            }
        }
    }
    Ok(summary)
}

/// Checks one token for the key it is filed under.
fn verify(
    key: &str,
    text: &str,
    operator: Option<&Operator>,
    now: i64,
) -> Result<(Kind, Jwt), String> {
    let claims = jwt::parse_unverified(text).map_err(|e| e.to_string())?;
    match claims.claim_type() {
        ClaimType::Account => {
            let jwt = jwt::decode_account(text, now).map_err(|e| e.to_string())?;
            if jwt.claims.sub != key {
                return Err(format!("the JWT is for account {}", jwt.claims.sub));
            }
            if let Some(op) = operator {
                op.check_issuer(&jwt.claims.iss)
                    .map_err(|e| e.to_string())?;
            }
            Ok((Kind::Account, jwt))
        }
        ClaimType::Activation => {
            let jwt = jwt::decode_activation(text, now).map_err(|e| e.to_string())?;
            let hash = jwt::activation_hash(&jwt.claims).map_err(|e| e.to_string())?;
            if hash != key {
                return Err(format!("the activation's hash is {hash}"));
            }
            Ok((Kind::Activation, jwt))
        }
        other => Err(format!("a {other} JWT, not an account or activation")),
    }
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

/// Parses pack lines `key|jwt`; blank lines are skipped, malformed ones reported.
pub fn parse_pack(body: &str) -> Vec<SourceItem> {
    body.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let parts: Vec<&str> = line.trim().split('|').collect();
            match parts.as_slice() {
                [key, token] => (key.to_string(), Ok(token.to_string())),
                _ => (
                    format!("line {}", i + 1),
                    Err("not a `key|jwt` line".to_string()),
                ),
            }
        })
        .collect()
}
