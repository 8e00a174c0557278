//! HTTP client for the primary: the change feed, single-key reads, write forwarding, and the
//! operator JWT. Primaries are tried in the configured order; the client remembers which one
//! answered last so a failover sticks until that one fails too.
//!
//! A primary URL may carry credentials (`http://user:pass@host`, sent as basic auth): they are
//! used for requests and never shown. Everything displayed or logged uses [`redact`].

use crate::config::TlsSettings;
use crate::link::{display_url as redact, error_chain};
use crate::store::{Digest, DigestHash, Kind, DIGEST_BUCKETS};
use crate::wire::feed::{Change, DigestLine};
use crate::wire::{self, header};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The link settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A `replication.tls` file could not be read.
    #[error("replication.tls.{what} {path}: {source}")]
    File {
        /// Which setting.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A `replication.tls` file could not be used.
    #[error("replication.tls.{what}: {message}")]
    Tls {
        /// Which setting.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A write forwarded to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// POST a token of this kind.
    Put(Kind),
    /// DELETE an account (the body is the delete request).
    Delete,
}

/// The primary's digest answer.
#[derive(Debug, Clone)]
pub struct RemoteDigest {
    /// Its lineage.
    pub store_id: String,
    /// Its head when the digest was taken.
    pub head: u64,
    /// The latest `iat` of a deletion it compacted (0: none).
    pub compacted_iat: i64,
    /// The digest.
    pub digest: Digest,
}

/// A request to the primary failed (any of them: the feed, a read miss, a forwarded write, the
/// operator, the digest, the pack).
#[derive(Debug, thiserror::Error)]
pub enum PrimaryError {
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
    /// A forwarded write was sent but no answer came (a timeout, a connection lost after the
    /// request went out): the primary may have stored it. Not retried elsewhere.
    #[error("{url}: no answer to the write ({message}); it may or may not have been stored")]
    NoAnswer {
        /// The primary.
        url: String,
        /// What happened.
        message: String,
    },
    /// The primary answered 503 with `Retry-After`: its caps on bulk answers or parked long
    /// polls are full. It is reachable; ask again later.
    #[error("{url}: busy (the primary's limits are full), retry in {retry_after:?}")]
    Busy {
        /// The primary.
        url: String,
        /// How long it asks to wait.
        retry_after: Duration,
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
    /// `X-Compacted-Seq`: the primary dropped tombstones up to here (0 from older primaries).
    pub compacted: u64,
    /// `X-Complete-To`: the page holds every change up to here (absent from older primaries
    /// and on full pages).
    pub complete_to: Option<u64>,
    /// The changes, in sequence order.
    pub changes: Vec<Change>,
    /// `X-Cluster-Term`: the term of the cluster leader that answered (cluster mode).
    pub term: Option<u64>,
}

/// The primary's answer to a forwarded write.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// Its `X-Error-Code`.
    pub code: Option<String>,
    /// Its body.
    pub body: String,
    /// `X-Cluster-Term` and `X-Cluster-Leader`: the term and node that accepted the write
    /// (cluster mode).
    pub stamp: Option<crate::cluster::Stamp>,
}

/// What a cluster follower says about itself on its feed requests, so that the leader can
/// count them as acknowledgements (`X-Cluster-Node`, `X-Cluster-Lineage`).
#[derive(Debug, Clone)]
pub struct Ack {
    /// The follower's node id.
    pub node: String,
    /// The lineage its cursor (`since`) counts in.
    pub lineage: String,
}

/// The primaries requests may go to: as configured (with credentials, if any) and as shown.
struct Targets {
    urls: Vec<String>,
    shown: Vec<String>,
}

impl Targets {
    fn new(urls: Vec<String>) -> Targets {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|p| p.trim_end_matches('/').to_string())
            .collect();
        let shown = urls.iter().map(|p| redact(p)).collect();
        Targets { urls, shown }
    }
}

/// Client for the configured primaries. Cheap to clone.
#[derive(Clone)]
pub struct PrimaryClient {
    http: reqwest::Client,
    /// The primaries: the configured list, or in cluster mode the current leader (replaced
    /// when the leader changes, which is rare; the lock is held only to copy a URL).
    targets: Arc<RwLock<Targets>>,
    current: Arc<AtomicUsize>,
    timeout: Duration,
}

impl PrimaryClient {
    /// A client for `primaries` (base URLs such as `http://primary:9090`), with `timeout` per
    /// request (long polls get their wait on top), and `tls` for HTTPS primaries with a
    /// private CA or that ask for a client certificate.
    ///
    /// # Errors
    /// [`ClientError`] when a TLS file is missing or unusable.
    pub fn new(
        primaries: Vec<String>,
        timeout: Duration,
        tls: Option<&TlsSettings>,
    ) -> Result<PrimaryClient, ClientError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("nats-account-server/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = tls {
            builder = with_tls(builder, tls)?;
        }
        let http = builder.build().map_err(|e| ClientError::Tls {
            what: "ca",
            message: error_chain(&e),
        })?;
        Ok(PrimaryClient {
            http,
            targets: Arc::new(RwLock::new(Targets::new(primaries))),
            current: Arc::new(AtomicUsize::new(0)),
            timeout,
        })
    }

    fn targets(&self) -> std::sync::RwLockReadGuard<'_, Targets> {
        // Replaced whole under the lock: a panic cannot leave it half-written.
        self.targets.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of primaries (0: none known, a cluster without a leader).
    pub fn count(&self) -> usize {
        self.targets().urls.len()
    }

    /// The primary requests go to now, without user-info (for display and logs); empty when
    /// none is known.
    pub fn current(&self) -> String {
        let t = self.targets();
        t.shown
            .get(self.current.load(Ordering::Relaxed) % t.shown.len().max(1))
            .cloned()
            .unwrap_or_default()
    }

    /// The base URL requests go to now, with its credentials.
    fn base(&self) -> String {
        let t = self.targets();
        t.urls
            .get(self.current.load(Ordering::Relaxed) % t.urls.len().max(1))
            .cloned()
            .unwrap_or_default()
    }

    /// Moves to the next primary in the list (after a failure).
    pub fn rotate(&self) {
        let len = self.count();
        if len > 1 {
            let next = (self.current.load(Ordering::Relaxed) + 1) % len;
            self.current.store(next, Ordering::Relaxed);
            tracing::warn!(primary = %self.current(), "switching to the next primary");
        }
    }

    /// Cluster mode: from now on, requests go to `url` (the leader), or nowhere (`None`).
    pub fn set_primary(&self, url: Option<&str>) {
        let targets = Targets::new(url.into_iter().map(str::to_string).collect());
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = targets;
        self.current.store(0, Ordering::Relaxed);
    }

    /// The URL without user-info, and reqwest's error with its causes ("Connection refused"),
    /// without reqwest's copy of the request URL (which may hold a password).
    fn unreachable(&self, e: reqwest::Error) -> PrimaryError {
        // reqwest's message repeats the URL, credentials included: drop it, keep the causes.
        PrimaryError::Unreachable {
            url: self.current().to_string(),
            message: error_chain(&e.without_url()),
        }
    }

    /// A server error (other than the primary's own 503 with Retry-After, [`PrimaryError::Busy`]):
    /// a proxy or load balancer in front of a primary it cannot reach (502, 504, a 503 of its
    /// own), or a primary that cannot serve. As good as unreachable: the next configured
    /// primary is tried.
    fn server_error(&self, message: &str) -> PrimaryError {
        PrimaryError::Unreachable {
            url: self.current().to_string(),
            message: message.to_string(),
        }
    }

    fn protocol(&self, message: String) -> PrimaryError {
        PrimaryError::Protocol {
            url: self.current().to_string(),
            message,
        }
    }

    /// `GET /jwt/v1/changes?since&limit&wait`.
    ///
    /// # Errors
    /// [`PrimaryError`].
    pub async fn changes(
        &self,
        since: u64,
        limit: usize,
        wait: Duration,
        ack: Option<&Ack>,
    ) -> Result<FeedPage, PrimaryError> {
        let url = format!(
            "{}/jwt/v1/changes?since={since}&limit={limit}&wait={}",
            self.base(),
            wait.as_secs_f64()
        );
        let mut request = self.http.get(&url).timeout(self.timeout + wait);
        if let Some(ack) = ack {
            request = request
                .header(header::CLUSTER_NODE, &ack.node)
                .header(header::CLUSTER_LINEAGE, &ack.lineage);
        }
        let resp = request.send().await.map_err(|e| self.unreachable(e))?;
        if resp.status().as_u16() == 404 {
            return Err(PrimaryError::NoFeed {
                url: self.current().to_string(),
            });
        }
        let retry_after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        match (resp.status().as_u16(), retry_after) {
            // The primary's bulk or long-poll caps are full: it is there, and says when to
            // come back (it always sends Retry-After with this 503).
            (503, Some(retry_after)) => {
                return Err(PrimaryError::Busy {
                    url: self.current().to_string(),
                    retry_after,
                });
            }
            // Any other server error: see `server_error`.
            (status, _) if status >= 500 => {
                return Err(
                    self.server_error(&format!("the change feed answered {}", resp.status()))
                );
            }
            _ => {}
        }
        if !resp.status().is_success() {
            return Err(self.protocol(format!("change feed answered {}", resp.status())));
        }
        let header_value = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let store_id = header_value(header::STORE_ID)
            .ok_or_else(|| self.protocol("change feed without X-Store-Id".into()))?;
        let head = header_value(header::HEAD_SEQ)
            .and_then(|h| h.parse().ok())
            .unwrap_or(0);
        let compacted = header_value(header::COMPACTED_SEQ)
            .and_then(|h| h.parse().ok())
            .unwrap_or(0);
        let complete_to = header_value(header::COMPLETE_TO).and_then(|h| h.parse().ok());
        let term = header_value(header::CLUSTER_TERM).and_then(|h| h.parse().ok());
        // Bytes, then strict UTF-8: a feed is JWTs and keys (ASCII), and `text()`'s lossy
        // conversion was ~2% of a large sync's CPU.
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        let body = std::str::from_utf8(&bytes)
            .map_err(|e| self.protocol(format!("change feed is not UTF-8: {e}")))?;
        let changes = body
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                wire::feed::parse_change(line).ok_or_else(|| {
                    self.protocol(format!("malformed change-feed line {:.60}", line))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FeedPage {
            store_id,
            head,
            compacted,
            complete_to,
            changes,
            term,
        })
    }

    /// `GET /jwt/v1/digest`: the primary's content digest.
    ///
    /// # Errors
    /// [`PrimaryError`].
    pub async fn digest(&self) -> Result<RemoteDigest, PrimaryError> {
        let text = self
            .get_optional("/jwt/v1/digest")
            .await?
            .ok_or_else(|| self.protocol("no digest endpoint".into()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| self.protocol(format!("digest is not JSON: {e}")))?;
        let hex16 = |s: &serde_json::Value| -> Option<DigestHash> {
            data_encoding::HEXLOWER
                .decode(s.as_str()?.as_bytes())
                .ok()?
                .try_into()
                .ok()
        };
        let parsed = (|| {
            let buckets: Vec<DigestHash> = v["buckets"]
                .as_array()?
                .iter()
                .map(hex16)
                .collect::<Option<_>>()?;
            let mut digest = Digest::default();
            if buckets.len() != DIGEST_BUCKETS {
                return None;
            }
            digest.buckets.copy_from_slice(&buckets);
            Some(RemoteDigest {
                store_id: v["store_id"].as_str()?.to_string(),
                head: v["head"].as_u64()?,
                compacted_iat: v["compacted_iat"].as_i64().unwrap_or(0),
                digest,
            })
        })();
        parsed.ok_or_else(|| self.protocol("malformed digest".into()))
    }

    /// `GET /jwt/v1/digest?buckets=…`: the primary's entries in those buckets.
    ///
    /// # Errors
    /// [`PrimaryError`].
    pub async fn digest_entries(&self, buckets: &[usize]) -> Result<Vec<DigestLine>, PrimaryError> {
        let list: Vec<String> = buckets.iter().map(usize::to_string).collect();
        let text = self
            .get_optional(&format!("/jwt/v1/digest?buckets={}", list.join(",")))
            .await?
            .ok_or_else(|| self.protocol("no digest endpoint".into()))?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                wire::feed::parse_digest_line(line)
                    .ok_or_else(|| self.protocol(format!("malformed digest line {line:.60}")))
            })
            .collect()
    }

    /// `GET /jwt/v1/pack?max=N` (the Go server's bulk format): its lines, parsed
    /// ([`wire::pack`]).
    ///
    /// # Errors
    /// [`PrimaryError`].
    pub async fn pack(&self, max: i64) -> Result<Vec<wire::pack::Line>, PrimaryError> {
        let resp = self
            .http
            .get(format!("{}/jwt/v1/pack?max={max}", self.base()))
            .timeout(self.timeout * 4)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(self.protocol(format!("pack answered {}", resp.status())));
        }
        let body = resp.text().await.map_err(|e| self.unreachable(e))?;
        Ok(wire::pack::parse(&body))
    }

    /// `GET` one token. `Ok(None)` when the primary answers 404.
    ///
    /// # Errors
    /// [`PrimaryError`].
    pub async fn get(&self, kind: Kind, key: &str) -> Result<Option<String>, PrimaryError> {
        self.get_optional(&path(kind, key)).await
    }

    /// Forwards a write; returns the primary's answer.
    ///
    /// # Errors
    /// [`PrimaryError::Unreachable`] when no answer came.
    pub async fn send(&self, write: Write, key: &str, body: &[u8]) -> Result<Answer, PrimaryError> {
        let request = match write {
            Write::Put(Kind::Account) => {
                self.http
                    .post(format!("{}{}", self.base(), path(Kind::Account, key)))
            }
            Write::Put(Kind::Activation) => self
                .http
                .post(format!("{}/jwt/v1/activations", self.base())),
            Write::Delete => {
                self.http
                    .delete(format!("{}{}", self.base(), path(Kind::Account, key)))
            }
        };
        let resp = request
            .header("Content-Type", "application/jwt")
            .body(body.to_vec())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                // Only a connection that was never made is known not to have delivered the
                // write; after that, the primary may have stored it.
                if e.is_connect() {
                    self.unreachable(e)
                } else {
                    PrimaryError::NoAnswer {
                        url: self.current().to_string(),
                        message: error_chain(&e.without_url()),
                    }
                }
            })?;
        let status = resp.status().as_u16();
        let header_value = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let code = header_value(header::ERROR_CODE);
        let stamp = match (
            header_value(header::CLUSTER_TERM).and_then(|t| t.parse().ok()),
            header_value(header::CLUSTER_LEADER),
        ) {
            (Some(term), Some(leader)) => Some(crate::cluster::Stamp { term, leader }),
            _ => None,
        };
        Ok(Answer {
            status,
            code,
            body: resp.text().await.unwrap_or_default(),
            stamp,
        })
    }

    /// `GET /jwt/v1/operator`: `Ok(None)` when the primary has none.
    ///
    /// # Errors
    /// [`PrimaryError`].
    pub async fn operator(&self) -> Result<Option<String>, PrimaryError> {
        self.get_optional("/jwt/v1/operator").await
    }

    /// `GET path` on the current primary: the body on 200, `None` on 404, an error otherwise.
    async fn get_optional(&self, path: &str) -> Result<Option<String>, PrimaryError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base()))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.text().await.map_err(|e| self.unreachable(e))?)),
            404 => Ok(None),
            s if s >= 500 => Err(self.server_error(&format!("GET {path} answered {s}"))),
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

/// Adds the private CA and the client certificate of `replication.tls` to `builder`.
fn with_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsSettings,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ClientError::File {
            what,
            path: path.display().to_string(),
            source,
        })
    };
    let bad = |what: &'static str, e: reqwest::Error| ClientError::Tls {
        what,
        message: error_chain(&e),
    };
    if let Some(ca) = &tls.root {
        for cert in
            reqwest::Certificate::from_pem_bundle(&read("ca", ca)?).map_err(|e| bad("ca", e))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let mut pem = read("cert", cert)?;
            pem.push(b'\n');
            pem.extend(read("key", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| bad("cert", e))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(ClientError::Tls {
                what: "cert",
                message: "cert and key must be given together".into(),
            })
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_user_info_only() {
        // (`crate::link::display_url`, checked here for the primary URLs this client shows.)
        assert_eq!(redact("http://u:p@h:9090"), "http://h:9090");
        assert_eq!(redact("https://u@h/x?y=a@b"), "https://h/x?y=a@b");
        assert_eq!(redact("http://h:9090/a@b"), "http://h:9090/a@b");
        assert_eq!(redact("h:9090"), "h:9090");
    }
}
