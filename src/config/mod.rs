//! Configuration: one [`Settings`] value, loaded once at start (and on SIGHUP).
//!
//! Layers, lowest first: built-in defaults → config file → `NAS_` environment variables →
//! command-line flags. The file is TOML (`.toml`), JSON (`.json`), or anything else in the
//! nats-server syntax the Go account server used ([`natsconf`]), so its files load unchanged.
//! Keys are case-insensitive. Keys the Go server knew but this one does not implement are
//! accepted with a warning; unknown keys and bad values fail with the key's path in the message.
//! `NAS_` variables that name no setting are ignored with a warning (`env.rs`). As in the Go
//! server, numbers and booleans may be quoted (`lenient.rs`), an empty path is no path, and an
//! empty `http.host` means all interfaces.

pub mod cli;
mod env;
mod lenient;
pub mod natsconf;
mod types;

pub use cli::Cli;
pub use types::{Dur, StringList, UpdateSubjects};

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the server reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Operator JWT file: the trust anchor for POSTed account JWTs.
    #[serde(deserialize_with = "types::optional_path")]
    pub operatorjwtpath: Option<PathBuf>,
    /// System-account JWT file, served even when the store lacks it.
    #[serde(deserialize_with = "types::optional_path")]
    pub systemaccountjwtpath: Option<PathBuf>,
    /// Primaries to replicate from, tried in order. Empty: this server is a primary.
    pub primary: StringList,
    /// Timeout of requests to the primary (Go: integer milliseconds).
    pub replicationtimeout: Dur,
    /// Most tokens taken from a Go primary's pack at start (0 disables the pack import).
    pub maxreplicationpack: i64,
    /// The HTTP listener.
    pub http: HttpSettings,
    /// The NATS connection used for notifications.
    pub nats: NatsSettings,
    /// Which store, and where.
    pub store: StoreSettings,
    /// Log output.
    pub logging: LoggingSettings,
    /// Replica behaviour beyond the Go keys.
    pub replication: ReplicationSettings,
    /// Automatic failover (`--cluster`): absent or without a name, this server is a primary or
    /// a replica as `primary` says.
    pub cluster: ClusterSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            operatorjwtpath: None,
            systemaccountjwtpath: None,
            primary: StringList::default(),
            replicationtimeout: Dur(Duration::from_secs(5)),
            maxreplicationpack: 10_000,
            http: HttpSettings::default(),
            nats: NatsSettings::default(),
            store: StoreSettings::default(),
            logging: LoggingSettings::default(),
            replication: ReplicationSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

/// `http { … }`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Bind address.
    pub host: String,
    /// Bind port; 0 picks a free one (the bound port is logged).
    pub port: u16,
    /// Time allowed to receive a request (Go: integer milliseconds).
    pub readtimeout: Dur,
    /// How long a streamed answer (pack, change feed) may wait for its client to take the next
    /// part before the connection is cut (Go: integer milliseconds).
    pub writetimeout: Dur,
    /// Largest accepted request body in bytes.
    pub maxbodybytes: usize,
    /// `Cache-Control: max-age` for tokens that do not expire (and the cap for those that do).
    pub maxage: Dur,
    /// HTTPS.
    pub tls: Option<HttpTlsSettings>,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    pub maxheaderbytes: usize,
    /// Most bulk answers (the pack, change-feed pages of more than 1,000 changes) sent at once;
    /// more get 503 with `Retry-After`.
    pub maxbulk: usize,
    /// Most change-feed long polls (`wait=`) parked at once, from all clients; more get 503.
    /// Lowered at start to half the process's descriptor limit when that is smaller.
    pub maxlongpolls: usize,
    /// Most long polls parked at once from one client address.
    pub maxlongpollsperclient: usize,
    /// Memory for cached `?decode=true` views, in bytes (0 disables the cache).
    pub decodecachebytes: usize,
    /// Bytes a second of `?decode=true` views one client address may take (twice that saved
    /// up); a view beyond it waits for its share, up to 2 s, then gets 503 with
    /// `Retry-After`. 0: no limit.
    pub decodebytespersecond: usize,
    /// Requests whose work is CPU-heavy (writes of tokens over 32 KiB, uncached decoded views)
    /// waiting for the low-priority thread that does it; more get 503.
    pub maxheavy: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            host: "127.0.0.1".into(),
            port: 9090,
            readtimeout: Dur(Duration::from_secs(5)),
            writetimeout: Dur(Duration::from_secs(5)),
            maxbodybytes: 1024 * 1024,
            maxage: Dur(Duration::from_secs(60)),
            tls: None,
            workers: None,
            maxheaderbytes: 32 * 1024,
            maxbulk: 16,
            maxlongpolls: 1024,
            maxlongpollsperclient: 32,
            decodecachebytes: 16 * 1024 * 1024,
            decodebytespersecond: 8 * 1024 * 1024,
            maxheavy: 64,
        }
    }
}

/// `tls { cert, key, root }`: TLS of our outgoing links (NATS, the primary), `root` (or `ca`)
/// being the CA that verifies the server.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    #[serde(deserialize_with = "types::optional_path")]
    pub cert: Option<PathBuf>,
    /// PEM private key.
    #[serde(deserialize_with = "types::optional_path")]
    pub key: Option<PathBuf>,
    /// PEM CA bundle to verify the server with (`ca` is the same key).
    #[serde(alias = "ca", deserialize_with = "types::optional_path")]
    pub root: Option<PathBuf>,
}

/// `http { tls { cert, key, ca } }`: HTTPS.
///
/// A separate type from [`TlsSettings`] because `root` does not mean "CA" here: the Go server
/// read `http.tls.root` and never used it (its HTTPS asked no client for a certificate), and
/// its README shows one TLS block with `root` for both NATS and HTTP, so configs carry it.
/// Were it the client CA, nats-server's resolver, which has no client certificate, would fail
/// the handshake. [`Settings::load`] drops it with a warning; `ca` is the client CA.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTlsSettings {
    /// PEM certificate chain.
    #[serde(deserialize_with = "types::optional_path")]
    pub cert: Option<PathBuf>,
    /// PEM private key.
    #[serde(deserialize_with = "types::optional_path")]
    pub key: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate signed by it (a primary
    /// admitting only its replicas).
    #[serde(deserialize_with = "types::optional_path")]
    pub ca: Option<PathBuf>,
}

/// `nats { … }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URLs; empty disables NATS.
    pub servers: StringList,
    /// Decorated creds file of a system-account user.
    #[serde(deserialize_with = "types::optional_path")]
    pub usercredentials: Option<PathBuf>,
    /// File holding an nkey seed (`SU…`) to authenticate with, instead of creds.
    #[serde(deserialize_with = "types::optional_path")]
    pub nkey: Option<PathBuf>,
    /// Connect timeout (Go: integer milliseconds).
    pub connecttimeout: Dur,
    /// Wait between reconnect attempts (Go: integer milliseconds).
    pub reconnectwait: Dur,
    /// Accepted for Go configs and not applied: the connection is always retried forever, and
    /// a limit (0 or more) is named in a warning at connect (see `nats::ignored_maxreconnects`
    /// for why).
    pub maxreconnects: Option<i64>,
    /// TLS to the NATS server.
    pub tls: Option<TlsSettings>,
    /// Which account update subjects to publish on: `old` (default), `new` or `both`.
    pub updatesubjects: UpdateSubjects,
    /// Answer nats-server's resolver LOOKUP and PACK requests (for `resolver { type: cache }`
    /// and `full` servers) and, on a primary, UPDATE requests (`nsc push` to a `nats://` URL),
    /// as a full-resolver peer does. Default on.
    pub resolverpeer: bool,
    /// Most PACK answers streamed at once; requests beyond it are left unanswered (counted),
    /// as an answer from another full resolver in the queue group serves just as well.
    pub maxpackanswers: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            servers: StringList::default(),
            usercredentials: None,
            nkey: None,
            connecttimeout: Dur(Duration::from_secs(5)),
            reconnectwait: Dur(Duration::from_secs(1)),
            maxreconnects: None,
            tls: None,
            updatesubjects: Default::default(),
            resolverpeer: true,
            maxpackanswers: 4,
        }
    }
}

/// `store { … }`: exactly one of `memory`, `dir`, `nsc`, or (default) the sled `data` dir.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// sled data directory (default `./data`).
    #[serde(deserialize_with = "types::optional_path")]
    pub data: Option<PathBuf>,
    /// Directory of `.jwt` files.
    #[serde(deserialize_with = "types::optional_path")]
    pub dir: Option<PathBuf>,
    /// Shard the directory store by the last two characters of the key.
    pub shard: bool,
    /// Refuse writes (directory or memory store).
    pub readonly: bool,
    /// nsc operator folder (read-only).
    #[serde(deserialize_with = "types::optional_path")]
    pub nsc: Option<PathBuf>,
    /// In-memory store.
    pub memory: bool,
    /// Accept operator-signed account deletions (`$SYS.REQ.CLAIMS.DELETE`, HTTP `DELETE`).
    pub allowdelete: bool,
    /// Directory stores: `rename` a deleted account's file to `<key>.jwt.deleted` (as
    /// nats-server) or remove it (`hard`).
    pub deletemode: DeleteMode,
    /// Tombstones of deleted accounts are kept at least this long (so replicas that were away
    /// learn of the deletion), then compacted.
    pub tombstonettl: Dur,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            data: None,
            dir: None,
            shard: false,
            readonly: false,
            nsc: None,
            memory: false,
            allowdelete: false,
            deletemode: DeleteMode::Rename,
            tombstonettl: Dur(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// `store.deletemode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Rename the file `<key>.jwt.deleted`.
    #[default]
    Rename,
    /// Remove the file.
    Hard,
}

/// `logging { … }`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSettings {
    /// Timestamps on log lines.
    pub time: bool,
    /// Debug level.
    pub debug: bool,
    /// Trace level.
    pub trace: bool,
    /// ANSI colours.
    pub colors: bool,
    /// JSON lines instead of text.
    pub json: bool,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            time: true,
            debug: false,
            trace: false,
            colors: false,
            json: false,
        }
    }
}

/// `replication { … }`: replica tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSettings {
    /// How long the primary holds a change-feed long poll open.
    pub pollwait: Dur,
    /// Changes fetched per feed request. A page is decoded and verified whole before it is
    /// stored, so its size sets what a syncing replica holds beyond its index: at 100,000
    /// accounts of 800 bytes, 5,000 a page peaked at 205–221 MiB and 1,000 at 177–186 MiB, with
    /// no measurable difference in sync time (pages are prefetched while one is stored).
    pub batch: usize,
    /// How long a replica remembers that the primary does not know a key.
    pub notfoundttl: Dur,
    /// Longest wait between retries while the primary is unreachable.
    pub maxbackoff: Dur,
    /// How often a replica compares its store digest with the primary's (also after every
    /// reconnect); differing keys are reconciled.
    pub antientropy: Dur,
    /// TLS towards an HTTPS primary: `ca` (private CA bundle), `cert` and `key` (a client
    /// certificate, when the primary asks for one).
    pub tls: Option<TlsSettings>,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            pollwait: Dur(Duration::from_secs(25)),
            batch: 1000,
            notfoundttl: Dur(Duration::from_secs(5)),
            maxbackoff: Dur(Duration::from_secs(5)),
            antientropy: Dur(Duration::from_secs(60)),
            tls: None,
        }
    }
}

/// `cluster { … }`: automatic failover, the leader elected through a NATS JetStream key-value
/// bucket (DESIGN §6.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The cluster's name (`--cluster`); names the bucket `nas_<name>`. Empty: no cluster.
    pub name: String,
    /// The URL the other nodes reach this one at (`--advertise`).
    pub advertise: String,
    /// How long a lease lasts without renewal; the leader renews every third of it.
    pub leasettl: Dur,
    /// Answer a write only after this many followers have applied it durably.
    pub syncreplicas: usize,
    /// How long a write waits for `syncreplicas`; then it is answered anyway (counted, logged).
    pub synctimeout: Dur,
    /// The election's NATS link, when it is not the `[nats]` one (in operator mode the `[nats]`
    /// user is a system-account user, and nats-server refuses JetStream to that account).
    pub nats: Option<NatsSettings>,
    /// The JWT of the account the election's NATS user belongs to: served by every node when
    /// its store has no version, so nats-server can resolve it before a leader exists.
    #[serde(deserialize_with = "types::optional_path")]
    pub accountjwtpath: Option<PathBuf>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            name: String::new(),
            advertise: String::new(),
            leasettl: Dur(Duration::from_secs(5)),
            syncreplicas: 0,
            synctimeout: Dur(Duration::from_secs(2)),
            nats: None,
            accountjwtpath: None,
        }
    }
}

/// Which store the settings select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// sled in this directory.
    Sled(PathBuf),
    /// In memory; writable unless `readonly`.
    Memory {
        /// Writes refused.
        readonly: bool,
    },
    /// A directory of `.jwt` files.
    Dir {
        /// Root.
        path: PathBuf,
        /// Sharded layout.
        shard: bool,
        /// Writes refused, directory watched.
        readonly: bool,
    },
    /// An nsc operator folder.
    Nsc(PathBuf),
}

/// A configuration problem, naming the key. Messages carry their cause; no variant also
/// exposes it as a `source`, so a printer of the chain shows each cause once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file, environment or flags could not be parsed.
    #[error("{0}")]
    Parse(String),
    /// A key has a bad value or is unknown.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted path of the key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// What an empty `http.host` binds: every interface, IPv6 and IPv4 (see `main.rs`'s
/// `bind_http`), as the Go server's empty host did.
pub const ALL_INTERFACES: &str = "::";

/// Keys the Go server (v0.8 or v1.0) knew that this server does not implement. They are
/// accepted, so old files load, and each is named in a warning.
const LEGACY_KEYS: &[&str] = &[
    "logging.pid",
    "logging.custom",
    "store.cleanupinterval",
    "signrequestsubject",
    "signrequesttimeout",
];

/// Keys the Go server had that would mean something else here: accepted, ignored, and named
/// in a warning with what to set instead.
const IGNORED_WITH_REASON: &[(&str, &str)] = &[(
    "http.tls.root",
    "ignored: the Go account server never asked HTTPS clients for a certificate (nats-server's \
     resolver has none to give); `http.tls.ca` is the setting that requires client certificates",
)];

/// What [`Settings::load`] found besides the settings: what to warn about once logging is up.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Keys of the Go server that this one does not implement: accepted but ignored.
    pub ignored_keys: Vec<String>,
    /// Keys accepted but ignored because here they would change behaviour, each with why
    /// and what to set instead.
    pub ignored_with_reason: Vec<(&'static str, &'static str)>,
    /// `NAS_*` environment variables that name no setting (Kubernetes service links, typos):
    /// ignored.
    pub ignored_env: Vec<String>,
}

impl Settings {
    /// Loads defaults → `file` → `NAS_*` environment (from `env`) → `overrides` (flags, as
    /// dotted keys), then validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or key.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, Value)],
    ) -> Result<(Settings, LoadReport), ConfigError> {
        let mut merged = Value::Object(Default::default());
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                path: path.to_path_buf(),
                cause,
            })?;
            merge(&mut merged, parse_file(path, &text)?);
        }
        let accepted: Vec<&str> = LEGACY_KEYS
            .iter()
            .copied()
            .chain(IGNORED_WITH_REASON.iter().map(|(key, _)| *key))
            .collect();
        let (env, ignored_env) = env::layer::<Settings>(env, &accepted)?;
        merge(&mut merged, env);
        for (key, value) in overrides {
            set_path(&mut merged, key, value.clone());
        }
        lowercase_keys(&mut merged);
        let mut report = LoadReport {
            ignored_env,
            ..LoadReport::default()
        };
        for key in LEGACY_KEYS {
            if remove_path(&mut merged, key) {
                report.ignored_keys.push((*key).to_string());
            }
        }
        for &(key, reason) in IGNORED_WITH_REASON {
            if remove_path(&mut merged, key) {
                report.ignored_with_reason.push((key, reason));
            }
        }
        let mut settings: Settings = serde_path_to_error::deserialize(lenient::Lenient(merged))
            .map_err(|e| ConfigError::Key {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        settings.normalize();
        settings.validate()?;
        Ok((settings, report))
    }

    /// The Go server's readings of empty values: an empty `http.host` listens on all
    /// interfaces (Go's `net.Listen` with host ""), and an `http.tls` block naming no file
    /// (`cert: ""`, `key: ""`, or only the ignored `root`) is no HTTPS.
    fn normalize(&mut self) {
        if self.http.host.trim().is_empty() {
            self.http.host = ALL_INTERFACES.to_string();
        }
        if self.http.tls.as_ref() == Some(&HttpTlsSettings::default()) {
            self.http.tls = None;
        }
    }

    /// Cross-field checks.
    ///
    /// # Errors
    /// [`ConfigError::Key`] naming the conflicting key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key_err = |key: &str, message: &str| {
            Err(ConfigError::Key {
                key: key.into(),
                message: message.into(),
            })
        };
        let s = &self.store;
        let chosen = [s.memory, s.dir.is_some(), s.nsc.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if chosen > 1 {
            return key_err("store", "choose one of memory, dir and nsc");
        }
        if chosen == 1 && s.data.is_some() {
            return key_err(
                "store.data",
                "the sled data directory cannot be combined with memory, dir or nsc",
            );
        }
        if !self.primary.0.is_empty() && (s.readonly || s.nsc.is_some()) {
            return key_err(
                "primary",
                "a replica needs a writable store (not read-only, not nsc)",
            );
        }
        for url in &self.primary.0 {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                let shown = crate::link::display_url(url);
                return key_err("primary", &format!("{shown:?} is not an http(s) URL"));
            }
        }
        if let Some(tls) = &self.http.tls {
            if tls.cert.is_none() || tls.key.is_none() {
                return key_err("http.tls", "both cert and key are required for HTTPS");
            }
        }
        if self.http.maxbodybytes == 0 {
            return key_err("http.maxbodybytes", "must be positive");
        }
        for (key, value) in [
            ("http.maxbulk", self.http.maxbulk),
            ("http.maxlongpolls", self.http.maxlongpolls),
            (
                "http.maxlongpollsperclient",
                self.http.maxlongpollsperclient,
            ),
            ("nats.maxpackanswers", self.nats.maxpackanswers),
            ("http.maxheavy", self.http.maxheavy),
        ] {
            if value == 0 {
                return key_err(key, "must be positive");
            }
        }
        if self.http.maxheaderbytes < 1024 {
            return key_err("http.maxheaderbytes", "must be at least 1024");
        }
        if self.replication.antientropy.0.is_zero() {
            return key_err("replication.antientropy", "must be positive");
        }
        if let Some(tls) = &self.replication.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                return key_err("replication.tls", "cert and key must be given together");
            }
        }
        if self.replication.batch == 0 {
            return key_err("replication.batch", "must be positive");
        }
        self.validate_cluster()
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let key_err = |key: &str, message: String| {
            Err(ConfigError::Key {
                key: key.into(),
                message,
            })
        };
        let c = &self.cluster;
        if !self.is_cluster() {
            if !c.advertise.is_empty() {
                return key_err(
                    "cluster.advertise",
                    "needs cluster.name (--cluster NAME)".into(),
                );
            }
            return Ok(());
        }
        if !c
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return key_err(
                "cluster.name",
                format!("{:?}: use letters, digits, - and _ only", c.name),
            );
        }
        if !self.primary.0.is_empty() {
            return key_err(
                "primary",
                "a cluster node follows the elected leader; remove --primary".into(),
            );
        }
        if !(c.advertise.starts_with("http://") || c.advertise.starts_with("https://")) {
            return key_err(
                "cluster.advertise",
                format!(
                    "{:?}: every cluster node needs --advertise http(s)://HOST:PORT, the URL the other nodes reach it at",
                    c.advertise
                ),
            );
        }
        if !matches!(self.store_choice(), StoreChoice::Sled(_)) {
            return key_err(
                "store",
                "a cluster node needs the sled store (--data DIR)".into(),
            );
        }
        if self.cluster_nats().servers.0.is_empty() {
            return key_err(
                "cluster.nats",
                "the election runs on NATS JetStream: configure --nats (or cluster.nats.servers)"
                    .into(),
            );
        }
        if c.leasettl.0 < Duration::from_millis(600) {
            return key_err("cluster.leasettl", "must be at least 600ms".into());
        }
        Ok(())
    }

    /// The store the settings select.
    pub fn store_choice(&self) -> StoreChoice {
        let s = &self.store;
        if let Some(path) = &s.nsc {
            StoreChoice::Nsc(path.clone())
        } else if let Some(path) = &s.dir {
            StoreChoice::Dir {
                path: path.clone(),
                shard: s.shard,
                readonly: s.readonly,
            }
        } else if s.memory {
            StoreChoice::Memory {
                readonly: s.readonly,
            }
        } else {
            StoreChoice::Sled(s.data.clone().unwrap_or_else(|| PathBuf::from("data")))
        }
    }

    /// The operator JWT file: the configured one, or `<nsc>/<basename>.jwt` for an nsc store.
    /// (`--nsc` clears `operatorjwtpath`, so the folder's operator wins over the file's, as in
    /// the Go server.)
    pub fn operator_path(&self) -> Option<PathBuf> {
        self.operatorjwtpath.clone().or_else(|| {
            let nsc = self.store.nsc.as_ref()?;
            let name = nsc.file_name()?.to_string_lossy().into_owned();
            Some(nsc.join(format!("{name}.jwt")))
        })
    }

    /// True when this server replicates from a primary given by `primary` (a cluster node
    /// follows the elected leader instead, see [`Settings::is_cluster`]).
    pub fn is_replica(&self) -> bool {
        !self.primary.0.is_empty()
    }

    /// True when this server is a node of an automatic-failover cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster.name.is_empty()
    }

    /// The NATS link the election runs on: `cluster.nats`, else `[nats]`.
    pub fn cluster_nats(&self) -> &NatsSettings {
        self.cluster.nats.as_ref().unwrap_or(&self.nats)
    }
}

fn parse_file(path: &Path, text: &str) -> Result<Value, ConfigError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let parse_err = |e: String| ConfigError::Parse(format!("config file {}: {e}", path.display()));
    match ext.as_str() {
        "toml" => toml_to_json(text).map_err(parse_err),
        "json" => serde_json::from_str(text).map_err(|e| parse_err(e.to_string())),
        _ => natsconf::parse_with_base(text, path.parent())
            .map(Value::Object)
            .map_err(|e| parse_err(e.to_string())),
    }
}

fn toml_to_json(text: &str) -> Result<Value, String> {
    // The `config` crate owns the TOML parser; going through it keeps one TOML dialect.
    let cfg = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| e.to_string())?;
    cfg.try_deserialize::<Value>().map_err(|e| e.to_string())
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                let k = k.to_ascii_lowercase();
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

fn set_path(root: &mut Value, dotted: &str, value: Value) {
    let mut cur = root;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let obj = cur.as_object_mut().expect("just made an object");
        if parts.peek().is_none() {
            obj.insert(part.to_string(), value);
            return;
        }
        cur = obj
            .entry(part.to_string())
            .or_insert(Value::Object(Default::default()));
    }
}

fn remove_path(root: &mut Value, dotted: &str) -> bool {
    let (parent, last) = match dotted.rsplit_once('.') {
        Some((p, l)) => (p.split('.').try_fold(&mut *root, |v, k| v.get_mut(k)), l),
        None => (Some(root), dotted),
    };
    parent
        .and_then(Value::as_object_mut)
        .is_some_and(|o| o.remove(last).is_some())
}

fn lowercase_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut val) in old {
                lowercase_keys(&mut val);
                map.insert(k.to_ascii_lowercase(), val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(lowercase_keys),
        _ => {}
    }
}
