//! Command-line flags. The Go server's flags (`-hp`, `-nsc`, `-ro`, `-DV`, …) are rewritten to
//! their `--long` forms before clap sees them, so old scripts keep working. Go's `flag` package
//! takes one or two dashes on every flag (`--hp`, `--DV`) and `=true`/`=false` on booleans
//! (`-ro=true`); so does [`rewrite_go_flags`].

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(
    name = "nats-account-server",
    version,
    disable_version_flag = true,
    about = "Hosts the account JWTs nats-server resolves in operator mode"
)]
pub struct Cli {
    /// Print the version (long only: -V is the Go server's trace flag).
    #[arg(long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Config file: TOML (.toml), JSON (.json) or the Go server's nats-server syntax (other).
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// HTTP bind address (alias -hp): HOST:PORT; :PORT for all interfaces (as the Go server);
    /// PORT for the configured host; port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Not a flag of this server (the port belongs to --listen); caught so that the answer
    /// says so, instead of clap's closest guess (`--operator`).
    #[arg(long, hide = true, value_name = "PORT")]
    pub port: Option<String>,
    /// Operator JWT; POSTed account JWTs must be signed by it or one of its signing keys.
    #[arg(long, value_name = "FILE", global = true)]
    pub operator: Option<PathBuf>,
    /// System account JWT, served even when absent from the store.
    #[arg(long = "system-account", value_name = "FILE")]
    pub system_account: Option<PathBuf>,
    /// sled data directory (the default store; default ./data).
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// Directory store of .jwt files.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Shard the directory store by the last two characters of the key.
    #[arg(long)]
    pub shard: bool,
    /// Refuse writes (directory or memory store); the directory is watched.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// nsc operator folder (read-only, watched).
    #[arg(long, value_name = "DIR")]
    pub nsc: Option<PathBuf>,
    /// In-memory store.
    #[arg(long)]
    pub memory: bool,
    /// NATS server URLs, comma-separated.
    #[arg(long, value_name = "URL[,URL]")]
    pub nats: Option<String>,
    /// Creds file of a system-account user.
    #[arg(long, value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// Run as a replica of these primaries, tried in order.
    #[arg(long, value_name = "URL[,URL]")]
    pub primary: Option<String>,
    /// Join the automatic-failover cluster of this name (leader elected on NATS JetStream).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The URL other cluster nodes reach this node at (cluster mode).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// Debug logging.
    #[arg(short = 'D')]
    pub debug: bool,
    /// Trace logging.
    #[arg(short = 'V')]
    pub trace: bool,
    /// Log JSON lines.
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// A one-shot command instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration and exit (0 when it loads).
    CheckConfig,
    /// Import JWTs from a directory store or a running server into the sled store selected by
    /// the usual settings (`--data`), newer-wins, then exit. Every JWT is verified against the
    /// operator (`--operator`, or `--trust-store-operator`); those that fail are skipped.
    Import(ImportArgs),
}

/// Where `import` reads from: exactly one of `--from-dir` and `--from-url`.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("from").required(true).args(["from_dir", "from_url"]))]
pub struct ImportArgs {
    /// A directory store of `.jwt` files (the Go server's or nats-server's).
    #[arg(long = "from-dir", value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// The directory is sharded (`<dir>/<last 2 chars>/<key>.jwt`).
    #[arg(long, requires = "from_dir")]
    pub shard: bool,
    /// A running account server (Go or this one); reads its `/jwt/v1/pack`.
    #[arg(long = "from-url", value_name = "URL")]
    pub from_url: Option<String>,
    /// Verify the tokens against the operator the target store records (from an earlier
    /// import with --operator) instead of --operator. Without either, import refuses to run.
    #[arg(long = "trust-store-operator")]
    pub trust_store_operator: bool,
}

/// A Go flag as clap takes it.
enum GoFlag {
    /// A flag with a value, and its spelling here.
    Value(&'static str),
    /// A boolean flag, and the flags here it stands for.
    Switch(&'static [&'static str]),
}

/// The Go server's flags (names without dashes, case-sensitive as in Go) and their spelling
/// here. Those spelled the same (`nsc`, `dir`, …) are listed too, for `-nsc`.
const GO_FLAGS: &[(&str, GoFlag)] = &[
    ("c", GoFlag::Value("-c")),
    ("config", GoFlag::Value("--config")),
    ("hp", GoFlag::Value("--listen")),
    ("nsc", GoFlag::Value("--nsc")),
    ("dir", GoFlag::Value("--dir")),
    ("nats", GoFlag::Value("--nats")),
    ("creds", GoFlag::Value("--creds")),
    ("primary", GoFlag::Value("--primary")),
    ("operator", GoFlag::Value("--operator")),
    ("ro", GoFlag::Switch(&["--read-only"])),
    ("D", GoFlag::Switch(&["-D"])),
    ("V", GoFlag::Switch(&["-V"])),
    ("DV", GoFlag::Switch(&["-D", "-V"])),
];

/// The store-selection keys a store flag replaces: which store, its directory, shard,
/// readonly. The rest of `[store]` (`allowdelete`, `deletemode`, `tombstonettl`) is kept.
const STORE_SELECTION: &[(&str, Value)] = &[
    ("store.data", Value::Null),
    ("store.dir", Value::Null),
    ("store.nsc", Value::Null),
    ("store.memory", Value::Bool(false)),
    ("store.shard", Value::Bool(false)),
    ("store.readonly", Value::Bool(false)),
];

impl Cli {
    /// Parses `args` (including the program name), accepting the Go server's flag spellings.
    ///
    /// # Errors
    /// clap's error, which prints usage.
    pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(rewrite_go_flags(args))
    }

    /// The flags as dotted config keys, applied over file and environment. A flag that selects
    /// a store (`--data`, `--dir`, `--nsc`, `--memory`) replaces the lower layers' choice of
    /// store ([`STORE_SELECTION`]), so `-c demo.toml --memory` runs in memory instead of
    /// refusing two stores, while their `allowdelete` and the like still apply; `--shard` and
    /// `--read-only` alone adjust the configured store. `--nsc DIR` also replaces
    /// `operatorjwtpath` with `DIR/<name>.jwt` (unless `--operator` is given), as the Go
    /// server did.
    ///
    /// # Errors
    /// A message when `--listen` is not `HOST:PORT`, `:PORT` or `PORT`, or `--port` is used.
    pub fn overrides(&self) -> Result<Vec<(String, Value)>, String> {
        let mut o: Vec<(String, Value)> = Vec::new();
        let mut set = |k: &str, v: Value| o.push((k.to_string(), v));
        if let Some(port) = &self.port {
            return Err(format!(
                "--port is not a flag of this server; to listen on port {port}, use --listen :{port}"
            ));
        }
        if let Some(listen) = &self.listen {
            // A bare port has no colon and keeps the configured host; `:PORT` is an empty host,
            // which means all interfaces (Go's `net.SplitHostPort` and `net.Listen`). An IPv6
            // host without brackets is not accepted.
            let (host, port) = match listen.rsplit_once(':') {
                Some((host, port)) => (Some(host), port),
                None => (None, listen.as_str()),
            };
            let port: u16 = port.parse().map_err(|_| {
                format!("--listen {listen:?}: {port:?} is not a port number (expected HOST:PORT, :PORT or PORT)")
            })?;
            if let Some(host) = host {
                set(
                    "http.host",
                    json!(host.trim_start_matches('[').trim_end_matches(']')),
                );
            }
            set("http.port", json!(port));
        }
        if self.data.is_some() || self.dir.is_some() || self.nsc.is_some() || self.memory {
            for (key, value) in STORE_SELECTION {
                set(key, value.clone());
            }
        }
        let path = |p: &PathBuf| json!(p.to_string_lossy());
        if let Some(p) = &self.operator {
            set("operatorjwtpath", path(p));
        }
        if let Some(p) = &self.system_account {
            set("systemaccountjwtpath", path(p));
        }
        if let Some(p) = &self.data {
            set("store.data", path(p));
        }
        if let Some(p) = &self.dir {
            set("store.dir", path(p));
        }
        if self.shard {
            set("store.shard", json!(true));
        }
        if self.read_only {
            set("store.readonly", json!(true));
        }
        if let Some(p) = &self.nsc {
            set("store.nsc", path(p));
            if self.operator.is_none() {
                // Cleared, so `Settings::operator_path` derives `<nsc>/<name>.jwt`.
                set("operatorjwtpath", Value::Null);
            }
        }
        if self.memory {
            set("store.memory", json!(true));
        }
        if let Some(n) = &self.nats {
            set("nats.servers", json!(n));
        }
        if let Some(p) = &self.creds {
            set("nats.usercredentials", path(p));
        }
        if let Some(p) = &self.primary {
            set("primary", json!(p));
        }
        if let Some(name) = &self.cluster {
            set("cluster.name", json!(name));
        }
        if let Some(url) = &self.advertise {
            set("cluster.advertise", json!(url));
        }
        if self.debug {
            set("logging.debug", json!(true));
        }
        if self.trace {
            set("logging.trace", json!(true));
        }
        if self.log_json {
            set("logging.json", json!(true));
        }
        Ok(o)
    }
}

/// Rewrites the Go server's flags into forms clap understands: `-hp x`, `--hp=x`, `-DV`,
/// `--ro`, `-ro=true` (a boolean set false is dropped: a flag never unsets the config file's
/// value, in Go either). Other arguments, and everything after `--`, pass unchanged.
pub fn rewrite_go_flags<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            out.push(arg);
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        let Some((_, go)) = GO_FLAGS.iter().find(|(go, _)| *go == name) else {
            out.push(arg);
            continue;
        };
        match (go, value) {
            (GoFlag::Value(ours), None) => out.push((*ours).to_string()),
            (GoFlag::Value(ours), Some(v)) => out.push(format!("{ours}={v}")),
            (GoFlag::Switch(ours), value) => match value.map(go_bool) {
                None | Some(Some(true)) => out.extend(ours.iter().map(|s| (*s).to_string())),
                Some(Some(false)) => {}
                // Not a boolean: left for clap to refuse, naming the flag.
                Some(None) => out.push(format!("{}={}", ours[0], value.unwrap_or_default())),
            },
        }
    }
    out
}

/// A boolean flag's value as Go's `strconv.ParseBool` reads it.
fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
