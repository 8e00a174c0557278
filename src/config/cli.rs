//! Command-line flags. The Go server's single-dash long flags (`-hp`, `-nsc`, `-ro`, `-DV`, …)
//! are rewritten to their `--long` forms before clap sees them, so old scripts keep working.

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
    /// HTTP bind address (alias -hp): HOST:PORT, or :PORT / PORT for the configured host;
    /// port 0 picks a free port.
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

/// Go-style single-dash long flags and their modern spelling.
const GO_FLAGS: &[(&str, &str)] = &[
    ("-hp", "--listen"),
    ("-nsc", "--nsc"),
    ("-dir", "--dir"),
    ("-ro", "--read-only"),
    ("-nats", "--nats"),
    ("-creds", "--creds"),
    ("-primary", "--primary"),
    ("-operator", "--operator"),
    ("-config", "--config"),
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
    /// a store (`--data`, `--dir`, `--nsc`, `--memory`) replaces the whole `store` section of
    /// the lower layers, so `-c demo.toml --memory` runs in memory instead of refusing two
    /// stores; `--shard` and `--read-only` alone adjust the configured store.
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
            // A bare port has no colon; an IPv6 host without brackets is not accepted.
            let (host, port) = listen.rsplit_once(':').unwrap_or(("", listen));
            let port: u16 = port.parse().map_err(|_| {
                format!("--listen {listen:?}: {port:?} is not a port number (expected HOST:PORT, :PORT or PORT)")
            })?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if !host.is_empty() {
                set("http.host", json!(host));
            }
            set("http.port", json!(port));
        }
        if self.data.is_some() || self.dir.is_some() || self.nsc.is_some() || self.memory {
            set("store", json!({}));
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

/// Rewrites `-hp x`, `-hp=x` and `-DV` into forms clap understands.
pub fn rewrite_go_flags<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    for arg in args {
        if arg == "-DV" {
            out.push("-D".into());
            out.push("-V".into());
            continue;
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with('-') && !n.starts_with("--") => {
                (n.to_string(), Some(v.to_string()))
            }
            _ => (arg.clone(), None),
        };
        match GO_FLAGS.iter().find(|(go, _)| *go == name) {
            Some((_, long)) => match value {
                Some(v) => out.push(format!("{long}={v}")),
                None => out.push((*long).to_string()),
            },
            None => out.push(arg),
        }
    }
    out
}
