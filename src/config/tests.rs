//! Unit tests of the loader's Go compatibility: how the Go server v0.8.4 read the same file,
//! environment and flags (`http.tls.root`, empty hosts and paths, quoted values, `NAS_`
//! variables that are not ours, its flag spellings, `-nsc` and the store flags).

use super::cli::rewrite_go_flags;
use super::*;

/// Loads `text` as a file called `name`, with `env` and the flags `args`.
fn load_with(
    name: &str,
    text: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Result<(Settings, LoadReport), ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::load(Some(&path), env, &flags(args))
}

/// The overrides of the command line `args`.
fn flags(args: &[&str]) -> Vec<(String, Value)> {
    cli(args).overrides().expect("flags convert to overrides")
}

/// Parses `args` as the command line.
fn cli(args: &[&str]) -> Cli {
    let argv = std::iter::once("nats-account-server")
        .chain(args.iter().copied())
        .map(String::from);
    Cli::parse_args(argv).unwrap_or_else(|e| panic!("parsing {args:?}: {e}"))
}

/// The key a failed load names.
fn failing_key(result: Result<(Settings, LoadReport), ConfigError>) -> String {
    match result {
        Err(ConfigError::Key { key, .. }) => key,
        other => panic!("expected an error naming a key, got {other:?}"),
    }
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
    assert_eq!(s.http.host, "0.0.0.0");
    let (s, _) = load_with(
        "h.conf",
        "http { host: \"10.0.0.1\" }\n",
        &[],
        &["--listen", "9091"],
    )
    .unwrap();
    assert_eq!((s.http.host.as_str(), s.http.port), ("10.0.0.1", 9091));
    let (s, _) = load_with("h.conf", "http { host: \"\", port: 9092 }\n", &[], &[]).unwrap();
    assert_eq!(s.http.host, "0.0.0.0");
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
    let key = failing_key(load_with("e.conf", "", &[("NAS_HTTP__PORT", "x")], &[]));
    assert_eq!(key, "http.port");
    // A file's unknown key still fails.
    let key = failing_key(load_with("e.conf", "http { prot: 1 }\n", &[], &[]));
    assert_eq!(key, "http.prot");
}

/// What the probe of the settings types knows, directly.
#[test]
fn the_settings_types_name_their_keys() {
    for path in [
        "operatorjwtpath",
        "http.port",
        "http.tls.ca",
        "nats.tls.root",
        "nats.tls.ca",
        "cluster.nats.tls.cert",
        "store.tombstonettl",
        "http",
    ] {
        let path: Vec<&str> = path.split('.').collect();
        assert!(env::names_setting::<Settings>(&path), "{path:?}");
    }
    for path in [
        "port",
        "http.prot",
        "http.port.x",
        "http.tls.root",
        "primary.x",
        "",
    ] {
        let path: Vec<&str> = path.split('.').collect();
        assert!(!env::names_setting::<Settings>(&path), "{path:?}");
    }
}

/// Go's `flag` package: one or two dashes on every flag, `=value` on booleans. Our long flags
/// are unchanged.
#[test]
fn go_flag_spellings() {
    let rewrite = |args: &[&str]| rewrite_go_flags(args.iter().map(|a| a.to_string()));
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
    let key = failing_key(load_with(
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
            failing_key(load_with("q.conf", text, &[], &[])),
            key,
            "{text}"
        );
    }
    let shown = load_with("q.conf", "http { port: \"70000\" }\n", &[], &[])
        .unwrap_err()
        .to_string();
    assert!(shown.contains("70000"), "{shown}");
}
