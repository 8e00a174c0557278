//! HTTP client for the primary: the change feed, single-key reads, write forwarding, and the
//! operator JWT. Primaries are tried in the configured order; the client remembers which one
//! answered last so a failover sticks until that one fails too.

use crate::store::Kind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A request to the primary failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No answer (connection refused, reset, timeout).
    #[error("{url}: {message}")]
    Unreachable {
        /// The primary.
        url: String,
        /// What happened.
        message: String,
    },
    /// The primary has no change feed (404): a Go nats-account-server, which only has the pack.
    #[error("{url}: no change feed (a Go nats-account-server?)")]
    NoFeed {
        /// The primary.
        url: String,
    },
    /// An answer we cannot use (bad status, malformed feed).
    #[error("{url}: {message}")]
    Protocol {
        /// The primary.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// One page of the change feed.
#[derive(Debug)]
pub struct FeedPage {
    /// `X-Store-Id`: the primary store's lineage.
    pub store_id: String,
    /// `X-Head-Seq`: the primary's head when it answered.
    pub head: u64,
    /// `(seq, kind, key, jwt)` in order.
    pub changes: Vec<(u64, Kind, String, String)>,
}

/// Client for the configured primaries. Cheap to clone.
#[derive(Clone)]
pub struct PrimaryClient {
    http: reqwest::Client,
    primaries: Arc<[String]>,
    current: Arc<AtomicUsize>,
    timeout: Duration,
}

impl PrimaryClient {
    /// A client for `primaries` (base URLs such as `http://primary:9090`), with `timeout` per
    /// request (long polls get their wait on top).
    pub fn new(primaries: Vec<String>, timeout: Duration) -> PrimaryClient {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("nats-account-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building the HTTP client");
        let primaries: Vec<String> = primaries
            .into_iter()
            .map(|p| p.trim_end_matches('/').to_string())
            .collect();
        PrimaryClient {
            http,
            primaries: primaries.into(),
            current: Arc::new(AtomicUsize::new(0)),
            timeout,
        }
    }

    /// Number of configured primaries.
    pub fn count(&self) -> usize {
        self.primaries.len()
    }

    /// The primary requests go to now.
    pub fn current(&self) -> &str {
        &self.primaries[self.current.load(Ordering::Relaxed) % self.primaries.len()]
    }

    /// Moves to the next primary in the list (after a failure).
    pub fn rotate(&self) {
        if self.primaries.len() > 1 {
            let next = (self.current.load(Ordering::Relaxed) + 1) % self.primaries.len();
            self.current.store(next, Ordering::Relaxed);
            tracing::warn!(primary = %self.current(), "switching to the next primary");
        }
    }

    /// The URL without user-info, and reqwest's error with its causes ("Connection refused"),
    /// without reqwest's copy of the request URL (which may hold a password).
    fn unreachable(&self, e: reqwest::Error) -> SyncError {
        SyncError::Unreachable {
            url: crate::link::display_url(self.current()),
            message: crate::link::error_chain(&e.without_url()),
        }
    }

    fn protocol(&self, message: String) -> SyncError {
        SyncError::Protocol {
            url: self.current().to_string(),
            message,
        }
    }

    /// `GET /jwt/v1/changes?since&limit&wait`.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn changes(
        &self,
        since: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<FeedPage, SyncError> {
        let url = format!(
            "{}/jwt/v1/changes?since={since}&limit={limit}&wait={}",
            self.current(),
            wait.as_secs_f64()
        );
        let resp = self
            .http
            .get(&url)
            .timeout(self.timeout + wait)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().as_u16() == 404 {
            return Err(SyncError::NoFeed {
                url: self.current().to_string(),
            });
        }
        if !resp.status().is_success() {
            return Err(self.protocol(format!("change feed answered {}", resp.status())));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let store_id = header("X-Store-Id")
            .ok_or_else(|| self.protocol("change feed without X-Store-Id".into()))?;
        let head = header("X-Head-Seq")
            .and_then(|h| h.parse().ok())
            .unwrap_or(0);
        let body = resp.text().await.map_err(|e| self.unreachable(e))?;
        let mut changes = Vec::new();
        for line in body.lines().filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(4, '|');
            let parsed = (|| {
                let seq = parts.next()?.parse::<u64>().ok()?;
                let kind = Kind::parse(parts.next()?)?;
                let key = parts.next()?.to_string();
                let jwt = parts.next()?.to_string();
                Some((seq, kind, key, jwt))
            })();
            changes.push(parsed.ok_or_else(|| {
                self.protocol(format!("malformed change-feed line {:.60}", line))
            })?);
        }
        Ok(FeedPage {
            store_id,
            head,
            changes,
        })
    }

    /// `GET /jwt/v1/pack?max=N` (the Go server's bulk format): `(key, jwt)` pairs.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn pack(&self, max: i64) -> Result<Vec<(String, String)>, SyncError> {
        let resp = self
            .http
            .get(format!("{}/jwt/v1/pack?max={max}", self.current()))
            .timeout(self.timeout * 4)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(self.protocol(format!("pack answered {}", resp.status())));
        }
        let body = resp.text().await.map_err(|e| self.unreachable(e))?;
        Ok(body
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(_, jwt)| !jwt.contains('|'))
            .map(|(k, j)| (k.trim().to_string(), j.trim().to_string()))
            .collect())
    }

    /// `GET` one token. `Ok(None)` when the primary answers 404.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn get(&self, kind: Kind, key: &str) -> Result<Option<String>, SyncError> {
        self.get_optional(&path(kind, key)).await
    }

    /// Forwards a write; returns the primary's status, `X-Error-Code` and body.
    ///
    /// # Errors
    /// [`SyncError::Unreachable`] when no answer came.
    pub async fn post(
        &self,
        kind: Kind,
        key: &str,
        body: &[u8],
    ) -> Result<(u16, Option<String>, String), SyncError> {
        let path = match kind {
            Kind::Account => path(kind, key),
            Kind::Activation => "/jwt/v1/activations".to_string(),
        };
        let resp = self
            .http
            .post(format!("{}{}", self.current(), path))
            .header("Content-Type", "application/jwt")
            .body(body.to_vec())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("X-Error-Code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, code, resp.text().await.unwrap_or_default()))
    }

    /// `GET /jwt/v1/operator`: `Ok(None)` when the primary has none.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn operator(&self) -> Result<Option<String>, SyncError> {
        self.get_optional("/jwt/v1/operator").await
    }

    /// `GET path` on the current primary: the body on 200, `None` on 404, an error otherwise.
    async fn get_optional(&self, path: &str) -> Result<Option<String>, SyncError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.current()))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.text().await.map_err(|e| self.unreachable(e))?)),
            404 => Ok(None),
            s => Err(self.protocol(format!("GET {path} answered {s}"))),
        }
    }
}

fn path(kind: Kind, key: &str) -> String {
    match kind {
        Kind::Account => format!("/jwt/v1/accounts/{key}"),
        Kind::Activation => format!("/jwt/v1/activations/{key}"),
    }
}
