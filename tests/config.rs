//! Configuration loading (`Settings::load(file, env, overrides)`): TOML, the Go server's config
//! syntax unchanged, case-insensitive keys, legacy keys, errors that name the key, the layering
//! defaults < file < `NAS_` environment < flags, the Go-style flags, and the example configs
//! in `deploy/config/`; and what the Go server v0.8.4 did with the same input (`http.tls.root`,
//! empty hosts and paths, quoted values, `NAS_` variables that are not ours, its flag
//! spellings, `-nsc` and the store flags).

use nats_account_server::config::{
    cli, Cli, ConfigError, DeleteMode, LoadReport, Settings, StoreChoice, TlsSettings,
    ALL_INTERFACES,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// The Go account server's config file, verbatim (shared with the parser's unit tests).
const GO_ERA_CONFIG: &str = include_str!("data/go-era.conf");

/// Writes `text` to `name` in a fresh temp dir.
fn file(name: &str, text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// An empty environment (tests never read the real one).
fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

/// An environment of `pairs`.
fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads a file of `name` holding `text`, no env, no flags.
fn load_text(name: &str, text: &str) -> Result<(Settings, LoadReport), ConfigError> {
    load_with(name, text, &[], &[])
}

/// Loads `text` as a file called `name`, with the environment `env` and the flags `args`.
fn load_with(
    name: &str,
    text: &str,
    vars: &[(&str, &str)],
    args: &[&str],
) -> Result<(Settings, LoadReport), ConfigError> {
    let (_dir, path) = file(name, text);
    Settings::load(Some(&path), env(vars), &flags(args))
}

/// The flags' overrides, as `main` computes them.
fn flags(args: &[&str]) -> Vec<(String, Value)> {
    cli(args).overrides().expect("flags convert to overrides")
}

/// Parses `args` as the command line (the program name is added).
fn cli(args: &[&str]) -> Cli {
    let argv = std::iter::once("nats-account-server")
        .chain(args.iter().copied())
        .map(String::from);
    Cli::parse_args(argv).unwrap_or_else(|e| panic!("parsing {args:?}: {e}"))
}

/// The key and message of a [`ConfigError::Key`]; panics on anything else.
fn key_error(result: Result<(Settings, LoadReport), ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Key { key, message }) => (key, message),
        Err(other) => panic!("expected an error naming a key, got: {other}"),
        Ok((s, _)) => panic!("expected an error, loaded: {s:?}"),
    }
}

/// Without file, env or flags the defaults are the documented ones.
#[test]
fn defaults_are_the_documented_ones() {
    let (s, report) = Settings::load(None, no_env(), &[]).unwrap();
    assert_eq!(s.http.host, "127.0.0.1");
    assert_eq!(s.http.port, 9090);
    assert_eq!(s.http.maxbodybytes, 1024 * 1024);
    assert_eq!(s.http.maxage.0, Duration::from_secs(60));
    assert_eq!(s.http.readtimeout.0, Duration::from_secs(5));
    assert_eq!(s.store_choice(), StoreChoice::Sled(PathBuf::from("data")));
    assert!(s.primary.0.is_empty() && !s.is_replica());
    assert!(s.nats.servers.0.is_empty());
    assert!(s.operatorjwtpath.is_none());
    assert!(report.ignored_keys.is_empty());
}

/// A TOML file loads into the matching fields.
#[test]
fn toml_file_loads() {
    let (s, report) = load_text(
        "nas.toml",
        r#"
operatorjwtpath = "/etc/nas/operator.jwt"
systemaccountjwtpath = "/etc/nas/sys.jwt"
replicationtimeout = "2s"
maxreplicationpack = 5
[http]
host = "0.0.0.0"
port = 8080
maxbodybytes = 4096
maxage = "2m"
readtimeout = "250ms"
writetimeout = 1500
[store]
data = "/var/lib/nas"
[nats]
servers = ["nats://a:4222", "nats://b:4222"]
usercredentials = "/etc/nas/sys.creds"
updatesubjects = "both"
[logging]
debug = true
json = true
[replication]
pollwait = "10s"
batch = 100
"#,
    )
    .unwrap();
    assert_eq!(
        s.operatorjwtpath,
        Some(PathBuf::from("/etc/nas/operator.jwt"))
    );
    assert_eq!(
        s.systemaccountjwtpath,
        Some(PathBuf::from("/etc/nas/sys.jwt"))
    );
    assert_eq!(s.replicationtimeout.0, Duration::from_secs(2));
    assert_eq!(s.maxreplicationpack, 5);
    assert_eq!(s.http.host, "0.0.0.0", "an explicit host stays as written");
    assert_eq!(s.http.port, 8080);
    assert_eq!(s.http.maxbodybytes, 4096);
    assert_eq!(s.http.maxage.0, Duration::from_secs(120));
    assert_eq!(s.http.readtimeout.0, Duration::from_millis(250));
    assert_eq!(s.http.writetimeout.0, Duration::from_millis(1500));
    assert_eq!(
        s.store_choice(),
        StoreChoice::Sled(PathBuf::from("/var/lib/nas"))
    );
    assert_eq!(s.nats.servers.0, ["nats://a:4222", "nats://b:4222"]);
    assert_eq!(
        s.nats.usercredentials,
        Some(PathBuf::from("/etc/nas/sys.creds"))
    );
    assert_eq!(
        s.nats.updatesubjects,
        nats_account_server::config::UpdateSubjects::Both
    );
    assert!(s.logging.debug && s.logging.json && !s.logging.trace);
    assert_eq!(s.replication.pollwait.0, Duration::from_secs(10));
    assert_eq!(s.replication.batch, 100);
    assert!(report.ignored_keys.is_empty());
}

/// The Go server's config file loads unchanged, each value in its field; `pid` is reported.
#[test]
fn go_era_config_loads_unchanged() {
    let (s, report) = load_text("server.conf", GO_ERA_CONFIG).unwrap();
    assert_eq!(
        s.operatorjwtpath,
        Some(PathBuf::from("deploy/demo/operator.jwt"))
    );
    assert_eq!(s.http.host, "127.0.0.1");
    assert_eq!(s.http.port, 9090);
    assert_eq!(s.http.readtimeout.0, Duration::from_secs(5), "5000 ms");
    assert_eq!(s.nats.servers.0, ["nats://127.0.0.1:4222"]);
    assert_eq!(s.nats.connecttimeout.0, Duration::from_secs(5));
    assert_eq!(s.nats.usercredentials, Some(PathBuf::from("sys.creds")));
    assert_eq!(
        s.store_choice(),
        StoreChoice::Dir {
            path: PathBuf::from("/var/lib/jwts"),
            shard: true,
            readonly: false
        }
    );
    assert!(s.logging.time && s.logging.colors && !s.logging.debug);
    assert_eq!(report.ignored_keys, ["logging.pid"]);

    // Any extension other than .toml/.json is the Go syntax.
    let (s, _) = load_text("server.cfg", GO_ERA_CONFIG).unwrap();
    assert_eq!(s.http.readtimeout.0, Duration::from_secs(5));
}

/// Keys are case-insensitive, in the Go syntax and in TOML.
#[test]
fn keys_are_case_insensitive() {
    let (s, _) = load_text(
        "mixed.conf",
        "OperatorJWTPath: \"/op.jwt\"\nHTTP { HOST: \"10.0.0.1\", Port: 1234, MaxBodyBytes: 999 }\nStore { ReadOnly: true, Memory: true }\n",
    )
    .unwrap();
    assert_eq!(s.operatorjwtpath, Some(PathBuf::from("/op.jwt")));
    assert_eq!((s.http.host.as_str(), s.http.port), ("10.0.0.1", 1234));
    assert_eq!(s.http.maxbodybytes, 999);
    assert_eq!(s.store_choice(), StoreChoice::Memory { readonly: true });

    let (s, _) = load_text(
        "mixed.toml",
        "OperatorJwtPath = \"/op2.jwt\"\n[Http]\nPORT = 4321\nReadTimeout = \"3s\"\n",
    )
    .unwrap();
    assert_eq!(s.operatorjwtpath, Some(PathBuf::from("/op2.jwt")));
    assert_eq!(s.http.port, 4321);
    assert_eq!(s.http.readtimeout.0, Duration::from_secs(3));
}

/// Keys the Go server knew but this one does not implement load and are reported as ignored.
#[test]
fn legacy_keys_are_accepted_and_reported() {
    let (s, report) = load_text(
        "legacy.conf",
        "logging { pid: true, debug: true }\nstore { cleanupinterval: 60000 }\nsignrequestsubject: \"sign\"\n",
    )
    .unwrap();
    assert!(s.logging.debug, "the rest of the block still applies");
    let mut ignored = report.ignored_keys.clone();
    ignored.sort();
    assert_eq!(
        ignored,
        ["logging.pid", "signrequestsubject", "store.cleanupinterval"]
    );
    // Case-insensitive here too.
    let (_, report) = load_text("legacy2.conf", "Logging { PID: true }\n").unwrap();
    assert_eq!(report.ignored_keys, ["logging.pid"]);
}

/// An unknown key fails, naming its path (`http.prot`), in every syntax.
#[test]
fn unknown_key_is_an_error_naming_the_key() {
    for (name, text) in [
        ("typo.toml", "[http]\nprot = 1\n"),
        ("typo.conf", "http { prot: 1 }\n"),
        ("typo.json", r#"{"http": {"prot": 1}}"#),
    ] {
        let (key, message) = key_error(load_text(name, text));
        assert_eq!(key, "http.prot", "{name}: {message}");
        assert!(message.contains("prot"), "{name}: {message}");
    }
    // What the user reads names the key path too.
    let shown = load_text("typo.conf", "http { prot: 1 }\n")
        .unwrap_err()
        .to_string();
    assert!(shown.contains("`http.prot`"), "{shown}");
    let (key, _) = key_error(load_text("top.conf", "operatorjwtpth: \"x\"\n"));
    assert_eq!(key, "operatorjwtpth");
    let (key, _) = key_error(load_text("deep.toml", "[store]\nshards = true\n"));
    assert_eq!(key, "store.shards");
}

/// A bad value fails naming the key (`http.port`), and the message says what is wrong.
#[test]
fn bad_value_is_an_error_naming_the_key() {
    for (name, text) in [
        ("port.toml", "[http]\nport = \"x\"\n"),
        ("port.conf", "http { port: \"x\" }\n"),
        ("port.conf", "http { port: 70000 }\n"),
        ("port.conf", "http { port: -1 }\n"),
    ] {
        let (key, message) = key_error(load_text(name, text));
        assert_eq!(key, "http.port", "{text}: {message}");
    }
    let (key, message) = key_error(load_text("dur.toml", "[http]\nreadtimeout = \"soon\"\n"));
    assert_eq!(key, "http.readtimeout");
    assert!(message.contains("soon"), "{message}");
    let (key, _) = key_error(load_text("neg.conf", "http { readtimeout: -5 }\n"));
    assert_eq!(key, "http.readtimeout");
    let (key, _) = key_error(load_text("bool.conf", "store { shard: \"maybe\" }\n"));
    assert_eq!(key, "store.shard");

    // A syntax error names the file and the line.
    match load_text("broken.conf", "http {\n  port: 1\n") {
        Err(ConfigError::Parse(msg)) => {
            assert!(msg.contains("broken.conf") && msg.contains("line"), "{msg}")
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    match Settings::load(Some(Path::new("/nonexistent/nas.toml")), no_env(), &[]) {
        Err(e @ ConfigError::Read { .. }) => assert!(e.to_string().contains("/nonexistent")),
        other => panic!("expected a read error, got {other:?}"),
    }
}

/// Durations are accepted as humantime strings ("250ms", "5s") and as integer milliseconds.
#[test]
fn durations_accept_strings_and_integer_milliseconds() {
    for (text, expected) in [
        ("readtimeout = \"250ms\"", Duration::from_millis(250)),
        ("readtimeout = \"5s\"", Duration::from_secs(5)),
        ("readtimeout = \"1m 30s\"", Duration::from_secs(90)),
        ("readtimeout = 250", Duration::from_millis(250)),
        ("readtimeout = \"750\"", Duration::from_millis(750)),
    ] {
        let (s, _) = load_text("d.toml", &format!("[http]\n{text}\n")).unwrap();
        assert_eq!(s.http.readtimeout.0, expected, "{text}");
    }
    let (s, _) = load_text(
        "d.conf",
        "replicationtimeout: 250ms\nnats { reconnectwait: 2000 }\n",
    )
    .unwrap();
    assert_eq!(s.replicationtimeout.0, Duration::from_millis(250));
    assert_eq!(s.nats.reconnectwait.0, Duration::from_secs(2));
}

/// Layers: defaults < file < `NAS_` environment < flags.
#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    let (_dir, path) = file(
        "p.toml",
        "[http]\nport = 9000\nhost = \"10.1.1.1\"\nmaxbodybytes = 5000\n[logging]\ndebug = false\n",
    );
    // File over defaults.
    let (s, _) = Settings::load(Some(&path), no_env(), &[]).unwrap();
    assert_eq!((s.http.port, s.http.maxbodybytes), (9000, 5000));
    assert_eq!(s.http.maxage.0, Duration::from_secs(60), "default kept");

    // Environment over file; variables without the prefix are ignored.
    let e = env(&[
        ("NAS_HTTP__PORT", "9091"),
        ("NAS_PRIMARY", "http://a:1,http://b:2"),
        ("NAS_LOGGING__DEBUG", "true"),
        ("HTTP__PORT", "1"),
        ("PATH", "/usr/bin"),
    ]);
    let (s, _) = Settings::load(Some(&path), e.clone(), &[]).unwrap();
    assert_eq!(s.http.port, 9091);
    assert_eq!(s.http.host, "10.1.1.1", "file value not overridden stays");
    assert_eq!(s.primary.0, ["http://a:1", "http://b:2"]);
    assert!(s.is_replica());
    assert!(s.logging.debug);

    // Flags over environment.
    let o = flags(&[
        "--listen",
        "127.0.0.1:7777",
        "--primary",
        "http://c:3",
        "-D",
    ]);
    let (s, _) = Settings::load(Some(&path), e, &o).unwrap();
    assert_eq!((s.http.host.as_str(), s.http.port), ("127.0.0.1", 7777));
    assert_eq!(s.primary.0, ["http://c:3"]);
    assert_eq!(s.http.maxbodybytes, 5000, "file value survives both layers");

    // A bad environment value names the key too.
    let (key, _) = key_error(Settings::load(
        Some(&path),
        env(&[("NAS_HTTP__PORT", "x")]),
        &[],
    ));
    assert_eq!(key, "http.port");
    // A variable that names no setting is reported and ignored (Kubernetes sets `NAS_*`
    // service links for a Service named `nas`).
    let (s, report) = Settings::load(None, env(&[("NAS_HTTP__PROT", "1")]), &[]).unwrap();
    assert_eq!(report.ignored_env, ["NAS_HTTP__PROT"]);
    assert_eq!(s.http.port, 9090);
}

/// The Go server's single-dash flags are understood and land in the right settings.
#[test]
fn go_style_flags_parse() {
    let c = cli(&[
        "-hp",
        "127.0.0.1:7777",
        "-nsc",
        "NSCDIR",
        "-dir",
        "D",
        "-ro",
        "-nats",
        "nats://x:4222",
        "-creds",
        "f",
        "-primary",
        "http://p:9090",
        "-DV",
    ]);
    assert!(c.debug && c.trace, "-DV is debug and trace");
    assert!(c.read_only);
    let o: serde_json::Map<String, Value> = c.overrides().unwrap().into_iter().collect();
    let expected = json!({
        "http.host": "127.0.0.1",
        "http.port": 7777,
        // A store flag replaces the lower layers' choice of store first (not allowdelete etc.).
        "store.data": null,
        "store.memory": false,
        "store.shard": false,
        "store.nsc": "NSCDIR",
        // -nsc replaces the operator with the folder's, as in Go.
        "operatorjwtpath": null,
        "store.dir": "D",
        "store.readonly": true,
        "nats.servers": "nats://x:4222",
        "nats.usercredentials": "f",
        "primary": "http://p:9090",
        "logging.debug": true,
        "logging.trace": true,
    });
    assert_eq!(Value::Object(o), expected);

    // A consistent subset loads, values in place.
    let o = flags(&[
        "-hp",
        "0.0.0.0:7778",
        "-dir",
        "D",
        "-ro",
        "-nats",
        "nats://x:4222,nats://y:4222",
        "-creds",
        "f",
        "-D",
        "-V",
        "-operator",
        "op.jwt",
    ]);
    let (s, _) = Settings::load(None, no_env(), &o).unwrap();
    assert_eq!((s.http.host.as_str(), s.http.port), ("0.0.0.0", 7778));
    assert_eq!(
        s.store_choice(),
        StoreChoice::Dir {
            path: PathBuf::from("D"),
            shard: false,
            readonly: true
        }
    );
    assert_eq!(s.nats.servers.0, ["nats://x:4222", "nats://y:4222"]);
    assert_eq!(s.nats.usercredentials, Some(PathBuf::from("f")));
    assert_eq!(s.operatorjwtpath, Some(PathBuf::from("op.jwt")));
    assert!(s.logging.debug && s.logging.trace);

    // -nsc alone: the operator is read from the nsc folder, as the Go server did.
    let (s, _) = Settings::load(None, no_env(), &flags(&["-nsc", "/nsc/MyOp"])).unwrap();
    assert_eq!(
        s.store_choice(),
        StoreChoice::Nsc(PathBuf::from("/nsc/MyOp"))
    );
    assert_eq!(s.operator_path(), Some(PathBuf::from("/nsc/MyOp/MyOp.jwt")));

    // -c and -config name the file; `-hp=` works too.
    assert_eq!(cli(&["-c", "x.conf"]).config, Some(PathBuf::from("x.conf")));
    assert_eq!(
        cli(&["-config", "y.conf"]).config,
        Some(PathBuf::from("y.conf"))
    );
    assert_eq!(
        cli(&["-hp=127.0.0.1:1"]).listen.as_deref(),
        Some("127.0.0.1:1")
    );
}

/// The long flags of the new CLI work and map to the same settings.
#[test]
fn long_flags_parse() {
    let o = flags(&[
        "--listen",
        "[::1]:9999",
        "--operator",
        "op.jwt",
        "--system-account",
        "sys.jwt",
        "--dir",
        "/jwts",
        "--shard",
        "--read-only",
        "--nats",
        "nats://n:4222",
        "--creds",
        "sys.creds",
        "--log-json",
    ]);
    let (s, _) = Settings::load(None, no_env(), &o).unwrap();
    assert_eq!((s.http.host.as_str(), s.http.port), ("::1", 9999));
    assert_eq!(s.operatorjwtpath, Some(PathBuf::from("op.jwt")));
    assert_eq!(s.systemaccountjwtpath, Some(PathBuf::from("sys.jwt")));
    assert_eq!(
        s.store_choice(),
        StoreChoice::Dir {
            path: PathBuf::from("/jwts"),
            shard: true,
            readonly: true
        }
    );
    assert_eq!(s.nats.servers.0, ["nats://n:4222"]);
    assert_eq!(s.nats.usercredentials, Some(PathBuf::from("sys.creds")));
    assert!(s.logging.json);

    let (s, _) = Settings::load(None, no_env(), &flags(&["--memory", "--listen", ":0"])).unwrap();
    assert_eq!(s.store_choice(), StoreChoice::Memory { readonly: false });
    assert_eq!(s.http.port, 0);
    let (s, _) = Settings::load(
        None,
        no_env(),
        &flags(&["--data", "/d", "--primary", "http://p:1,https://q:2"]),
    )
    .unwrap();
    assert_eq!(s.store_choice(), StoreChoice::Sled(PathBuf::from("/d")));
    assert_eq!(s.primary.0, ["http://p:1", "https://q:2"]);

    // Bad flag values are errors, not silently ignored.
    assert!(cli(&["--listen", "nocolon"]).overrides().is_err());
    assert!(cli(&["--listen", "h:notaport"]).overrides().is_err());
    let argv = ["nats-account-server", "--no-such-flag"].map(String::from);
    assert!(Cli::parse_args(argv).is_err());
}

/// Conflicting stores (memory + dir, and the like) are rejected naming `store`.
#[test]
fn conflicting_stores_are_rejected() {
    for (what, text, expected) in [
        (
            "memory + dir",
            "[store]\nmemory = true\ndir = \"/jwts\"\n",
            "store",
        ),
        (
            "dir + nsc",
            "[store]\ndir = \"/jwts\"\nnsc = \"/nsc/op\"\n",
            "store",
        ),
        (
            "memory + data",
            "[store]\nmemory = true\ndata = \"/d\"\n",
            "store.data",
        ),
    ] {
        let (key, message) = key_error(load_text("s.toml", text));
        assert_eq!(key, expected, "{what}: {message}");
        assert!(!message.is_empty());
    }
    // And through flags that choose two stores. (A flag over a file that chose another store
    // is no conflict: the flag replaces the file's store, see messages.rs.)
    let (key, _) = key_error(Settings::load(
        None,
        no_env(),
        &flags(&["--memory", "--dir", "/x"]),
    ));
    assert!(key.starts_with("store"), "{key}");
    // A replica on a read-only store is contradictory as well.
    let (key, _) = key_error(Settings::load(
        None,
        no_env(),
        &flags(&["--primary", "http://p:1", "--dir", "/x", "--read-only"]),
    ));
    assert_eq!(key, "primary");
    let (key, _) = key_error(Settings::load(
        None,
        env(&[("NAS_PRIMARY", "ftp://x")]),
        &[],
    ));
    assert_eq!(key, "primary");
}

/// Every example config in `deploy/config/` (TOML and Go syntax) loads.
#[test]
fn deploy_example_configs_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/config");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "toml" && ext != "conf" {
            continue;
        }
        let (s, report) = Settings::load(Some(&path), no_env(), &[])
            .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
        assert!(
            report.ignored_keys.is_empty() || ext == "conf",
            "{}: the native examples use no legacy keys: {:?}",
            path.display(),
            report.ignored_keys
        );
        assert!(s.http.port > 0, "{}", path.display());
        found.push(ext.to_string());
    }
    assert!(
        found.iter().any(|e| e == "toml"),
        "no .toml in {}",
        dir.display()
    );
    assert!(
        found.iter().any(|e| e == "conf"),
        "no .conf in {}",
        dir.display()
    );
}

/// `http.tls.root` (the Go README's shared TLS block) does not make HTTPS ask for client
/// certificates: it is dropped with a reason naming `ca`. `ca` still does; `root` keeps meaning
/// the server-verifying CA for NATS and the primary.
#[test]
fn http_tls_root_is_ignored_and_ca_requires_client_certificates() {
    let go = "http { tls { cert: \"c.pem\", key: \"k.pem\", root: \"ca.pem\" } }\n\
              nats { tls { cert: \"c.pem\", key: \"k.pem\", root: \"ca.pem\" } }\n";
    let (s, report) = load_with("go.conf", go, &[], &[]).unwrap();
    let tls = s.http.tls.expect("HTTPS on");
    assert_eq!(tls.ca, None, "root is not the client CA");
    assert_eq!(tls.cert, Some(PathBuf::from("c.pem")));
    assert_eq!(report.ignored_with_reason.len(), 1);
    let (key, reason) = report.ignored_with_reason[0];
    assert_eq!(key, "http.tls.root");
    assert!(reason.contains("`http.tls.ca`"), "{reason}");
    assert!(reason.contains("client certificates"), "{reason}");
    assert_eq!(s.nats.tls.unwrap().root, Some(PathBuf::from("ca.pem")));

    let (s, report) = load_with(
        "ours.toml",
        "[http.tls]\ncert = \"c\"\nkey = \"k\"\nca = \"clients.pem\"\n\
         [replication.tls]\nca = \"primary-ca.pem\"\n",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(s.http.tls.unwrap().ca, Some(PathBuf::from("clients.pem")));
    assert!(report.ignored_with_reason.is_empty());
    assert_eq!(
        s.replication.tls.unwrap().root,
        Some(PathBuf::from("primary-ca.pem"))
    );
    // From the environment too.
    let (s, report) = load_with(
        "e.toml",
        "[http.tls]\ncert = \"c\"\nkey = \"k\"\n",
        &[("NAS_HTTP__TLS__ROOT", "ca.pem")],
        &[],
    )
    .unwrap();
    assert_eq!(s.http.tls.unwrap().ca, None);
    assert!(report.ignored_env.is_empty());
    assert_eq!(report.ignored_with_reason[0].0, "http.tls.root");
}

/// `-hp :9090` and `http { host: "" }` listen on all interfaces, as Go's empty host did; a bare
/// port keeps the configured host.
#[test]
fn an_empty_host_means_all_interfaces() {
    let (s, _) = load_with(
        "h.conf",
        "http { host: \"10.0.0.1\" }\n",
        &[],
        &["-hp", ":9090"],
    )
    .unwrap();
    assert_eq!((s.http.host.as_str(), s.http.port), (ALL_INTERFACES, 9090));
    let (s, _) = load_with("h.conf", "", &[], &["--listen", ":0"]).unwrap();
    assert_eq!(s.http.host, ALL_INTERFACES);
    let (s, _) = load_with(
        "h.conf",
        "http { host: \"10.0.0.1\" }\n",
        &[],
        &["--listen", "9091"],
    )
    .unwrap();
    assert_eq!((s.http.host.as_str(), s.http.port), ("10.0.0.1", 9091));
    let (s, _) = load_with("h.conf", "http { host: \"\", port: 9092 }\n", &[], &[]).unwrap();
    assert_eq!(s.http.host, ALL_INTERFACES);
    let (s, _) = load_with("h.conf", "", &[], &[]).unwrap();
    assert_eq!(s.http.host, "127.0.0.1", "the default stays loopback");
}

/// `NAS_` variables that name no setting are reported and ignored (Kubernetes' service links
/// for a Service named `nas`, and typos); those that do still apply, and bad values of real
/// settings still fail.
#[test]
fn environment_variables_naming_no_setting_are_ignored_and_reported() {
    let kubernetes = [
        ("NAS_SERVICE_HOST", "10.96.0.7"),
        ("NAS_SERVICE_PORT", "9090"),
        ("NAS_SERVICE_PORT_HTTP", "9090"),
        ("NAS_PORT", "tcp://10.96.0.7:9090"),
        ("NAS_PORT_9090_TCP", "tcp://10.96.0.7:9090"),
        ("NAS_PORT_9090_TCP_ADDR", "10.96.0.7"),
        ("NAS_PORT_9090_TCP_PORT", "9090"),
        ("NAS_PORT_9090_TCP_PROTO", "tcp"),
    ];
    let mut env = kubernetes.to_vec();
    env.extend([
        ("NAS_HTTP__PROT", "1"),
        ("NAS_HTTP_PORT", "2"),
        ("NAS_HTTP__PORT", "9091"),
        ("NAS_STORE__ALLOWDELETE", "true"),
        ("NAS_REPLICATION__TLS__CA", "ca.pem"),
        ("NAS_CLUSTER__NATS__SERVERS", "nats://a:4222"),
        ("NAS_LOGGING__PID", "true"),
        ("PATH", "/usr/bin"),
    ]);
    let (s, report) = load_with("e.conf", "", &env, &[]).unwrap();
    assert_eq!(s.http.port, 9091);
    assert!(s.store.allowdelete);
    assert_eq!(
        s.replication.tls.unwrap().root,
        Some(PathBuf::from("ca.pem"))
    );
    assert_eq!(s.cluster.nats.unwrap().servers.0, ["nats://a:4222"]);
    assert_eq!(
        report.ignored_keys,
        ["logging.pid"],
        "legacy keys are known"
    );
    let mut expected: Vec<&str> = kubernetes.iter().map(|(k, _)| *k).collect();
    expected.extend(["NAS_HTTP__PROT", "NAS_HTTP_PORT"]);
    expected.sort();
    assert_eq!(report.ignored_env, expected);

    // A real setting with a bad value still fails, naming it.
    let (key, _) = key_error(load_with("e.conf", "", &[("NAS_HTTP__PORT", "x")], &[]));
    assert_eq!(key, "http.port");
    // A file's unknown key still fails.
    let (key, _) = key_error(load_with("e.conf", "http { prot: 1 }\n", &[], &[]));
    assert_eq!(key, "http.prot");
}

/// Go's `flag` package: one or two dashes on every flag, `=value` on booleans. Our long flags
/// are unchanged.
#[test]
fn go_flag_spellings() {
    let rewrite = |args: &[&str]| cli::rewrite_go_flags(args.iter().map(|a| a.to_string()));
    assert_eq!(
        rewrite(&["--hp", "127.0.0.1:0"]),
        ["--listen", "127.0.0.1:0"]
    );
    assert_eq!(rewrite(&["--hp=127.0.0.1:0"]), ["--listen=127.0.0.1:0"]);
    assert_eq!(rewrite(&["--DV"]), ["-D", "-V"]);
    assert_eq!(rewrite(&["-DV=true"]), ["-D", "-V"]);
    assert_eq!(rewrite(&["--ro", "-ro=true", "-ro=1"]), ["--read-only"; 3]);
    assert!(rewrite(&["-ro=false", "-D=F", "--V=0"]).is_empty());
    assert_eq!(rewrite(&["--c", "x.conf"]), ["-c", "x.conf"]);
    assert_eq!(
        rewrite(&["--read-only", "--dir", "d", "--data=x", "--memory"]),
        ["--read-only", "--dir", "d", "--data=x", "--memory"]
    );
    assert_eq!(rewrite(&["--", "-ro"]), ["--", "-ro"], "nothing after --");

    let c = cli(&["--hp", "127.0.0.1:0", "--DV", "--ro", "--nsc", "N"]);
    assert_eq!(c.listen.as_deref(), Some("127.0.0.1:0"));
    assert!(c.debug && c.trace && c.read_only);
    assert_eq!(c.nsc, Some(PathBuf::from("N")));
    let c = cli(&["-ro=true", "-D=true", "-V=false"]);
    assert!(c.read_only && c.debug && !c.trace);
    let c = cli(&["-ro=false", "--dir", "d", "--read-only"]);
    assert!(c.read_only, "a later --read-only still counts");
    assert_eq!(
        cli(&["--c", "x.conf"]).config,
        Some(PathBuf::from("x.conf"))
    );

    // A boolean with a value that is not one fails, naming the flag.
    let argv = ["nats-account-server", "-ro=maybe"].map(String::from);
    let err = Cli::parse_args(argv).unwrap_err().to_string();
    assert!(
        err.contains("--read-only") && err.contains("maybe"),
        "{err}"
    );
}

/// `-nsc DIR` replaces the file's `operatorjwtpath` with `DIR/<name>.jwt` (Go's
/// `InitializeFromFlags`); `--operator` given as well wins.
#[test]
fn nsc_flag_overrides_the_files_operator() {
    let file = "operatorjwtpath: \"/etc/op.jwt\"\n";
    let (s, _) = load_with("n.conf", file, &[], &["-nsc", "/nsc/MyOp"]).unwrap();
    assert_eq!(s.operator_path(), Some(PathBuf::from("/nsc/MyOp/MyOp.jwt")));
    let (s, _) = load_with(
        "n.conf",
        "",
        &[("NAS_OPERATORJWTPATH", "/env/op.jwt")],
        &["--nsc", "/nsc/MyOp/"],
    )
    .unwrap();
    assert_eq!(s.operator_path(), Some(PathBuf::from("/nsc/MyOp/MyOp.jwt")));
    let (s, _) = load_with(
        "n.conf",
        file,
        &[],
        &["-nsc", "/nsc/MyOp", "--operator", "/o.jwt"],
    )
    .unwrap();
    assert_eq!(s.operator_path(), Some(PathBuf::from("/o.jwt")));
    let (s, _) = load_with("n.conf", file, &[], &[]).unwrap();
    assert_eq!(s.operator_path(), Some(PathBuf::from("/etc/op.jwt")));
}

/// A store flag replaces which store (and its dir, shard, readonly), not the rest of `[store]`.
#[test]
fn store_flags_keep_the_other_store_settings() {
    let (s, _) = load_with(
        "s.conf",
        "",
        &[("NAS_STORE__ALLOWDELETE", "true")],
        &["--memory"],
    )
    .unwrap();
    assert_eq!(s.store_choice(), StoreChoice::Memory { readonly: false });
    assert!(s.store.allowdelete);

    let file = "[store]\ndir = \"/jwts\"\nshard = true\nreadonly = true\nallowdelete = true\n\
                deletemode = \"hard\"\ntombstonettl = \"1h\"\n";
    for args in [
        &["--memory"][..],
        &["--data", "/d"],
        &["-nsc", "/n/Op"],
        &["--dir", "/other"],
    ] {
        let (s, _) = load_with("s.toml", file, &[], args).unwrap();
        assert!(s.store.allowdelete, "{args:?}");
        assert_eq!(s.store.deletemode, DeleteMode::Hard, "{args:?}");
        assert_eq!(
            s.store.tombstonettl.0,
            Duration::from_secs(3600),
            "{args:?}"
        );
        assert!(
            !s.store.shard && !s.store.readonly,
            "{args:?}: selection replaced"
        );
    }
    let (s, _) = load_with("s.toml", file, &[], &["--dir", "/other", "--shard", "-ro"]).unwrap();
    assert_eq!(
        s.store_choice(),
        StoreChoice::Dir {
            path: PathBuf::from("/other"),
            shard: true,
            readonly: true
        }
    );
    let o: serde_json::Map<String, Value> = flags(&["--memory"]).into_iter().collect();
    assert_eq!(o.get("store"), None, "the section itself is not replaced");
    assert_eq!(o["store.dir"], Value::Null);
}

/// Empty path strings are unset, as in the Go server.
#[test]
fn empty_paths_are_unset() {
    let text = "operatorjwtpath: \"\"\nsystemaccountjwtpath: \"\"\n\
                http { tls { cert: \"\", key: \"\" } }\n\
                nats { usercredentials: \"\", nkey: \"\", tls { root: \"\", cert: \"\", key: \"\" } }\n\
                store { dir: \"\", nsc: \"\", data: \"\" }\n\
                cluster { accountjwtpath: \"\" }\n";
    let (s, _) = load_with("e.conf", text, &[], &[]).unwrap();
    assert_eq!(
        (&s.operatorjwtpath, &s.systemaccountjwtpath),
        (&None, &None)
    );
    assert_eq!(s.http.tls, None, "no files: no HTTPS, as in Go");
    assert_eq!((&s.nats.usercredentials, &s.nats.nkey), (&None, &None));
    assert_eq!(s.nats.tls, Some(TlsSettings::default()));
    assert_eq!(s.store_choice(), StoreChoice::Sled(PathBuf::from("data")));
    assert_eq!(s.cluster.accountjwtpath, None);
    // Only one of the pair is still an error naming the section.
    let (key, _) = key_error(load_with(
        "e.conf",
        "http { tls { cert: \"c\", key: \"\" } }\n",
        &[],
        &[],
    ));
    assert_eq!(key, "http.tls");
}

/// Numbers and booleans may be quoted, as Go's `parseInt`/`parseBoolean` allowed; strings that
/// are neither still fail naming the key.
#[test]
fn quoted_numbers_and_booleans_load() {
    let (s, _) = load_with("q.conf", "http { port: \"9090\" }\n", &[], &[]).unwrap();
    assert_eq!(s.http.port, 9090);
    let (s, _) = load_with(
        "q.conf",
        "maxreplicationpack: \"10\"\nreplicationtimeout: \"250\"\n\
         logging { debug: \"true\", trace: \"TRUE\", time: \"false\" }\n\
         store { dir: \"/j\", shard: \"true\", readonly: \"False\" }\n\
         nats { maxreconnects: \"-1\" }\nhttp { workers: \"4\", maxbodybytes: \" 2048 \" }\n",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(s.maxreplicationpack, 10);
    assert_eq!(s.replicationtimeout.0, Duration::from_millis(250));
    assert!(s.logging.debug && s.logging.trace && !s.logging.time);
    assert!(s.store.shard && !s.store.readonly);
    assert_eq!(s.nats.maxreconnects, Some(-1));
    assert_eq!((s.http.workers, s.http.maxbodybytes), (Some(4), 2048));
    let (s, _) = load_with(
        "q.json",
        r#"{"http": {"port": "9091"}, "logging": {"debug": "true"}}"#,
        &[],
        &[],
    )
    .unwrap();
    assert!(s.logging.debug && s.http.port == 9091);
    let (s, _) = load_with("q.toml", "[http]\nport = \"9092\"\n", &[], &[]).unwrap();
    assert_eq!(s.http.port, 9092);

    for (text, key) in [
        ("http { port: \"x\" }\n", "http.port"),
        ("http { port: \"70000\" }\n", "http.port"),
        ("store { shard: \"maybe\" }\n", "store.shard"),
        ("maxreplicationpack: \"ten\"\n", "maxreplicationpack"),
    ] {
        assert_eq!(
            key_error(load_with("q.conf", text, &[], &[])).0,
            key,
            "{text}"
        );
    }
    let shown = load_with("q.conf", "http { port: \"70000\" }\n", &[], &[])
        .unwrap_err()
        .to_string();
    assert!(shown.contains("70000"), "{shown}");
}
