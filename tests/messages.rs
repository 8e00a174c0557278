//! What a newcomer meets on the command line, checked on the real binary: every start error is
//! one line naming the key or flag, with each cause once; a second process on a data directory
//! is told to use its own; `check-config` reads every file the server would; store flags
//! override the config file's store; `--listen` takes a bare port and `--port` points to it.

use crate::common::fixtures::vectors;
use crate::common::free_port;
use crate::common::process::{run_to_exit, ServerProcess};
use nats_account_server::config::{Cli, Settings, StoreChoice};
use std::path::{Path, PathBuf};

/// Runs the binary in `dir` with `args`; asserts exit code 1 and returns its only line.
#[track_caller]
fn fails_with(dir: &Path, args: &[&str]) -> String {
    let (code, out) = run_to_exit(dir, args, &[]);
    assert_eq!(code, 1, "exit code of {args:?}; output:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line from {args:?}, got:\n{out}");
    lines[0].to_string()
}

/// The account JWT of the vectors' account A (a file that is not an operator JWT).
fn account_jwt_file(dir: &Path) -> &'static str {
    let a = std::fs::read_to_string(vectors().join("account_a.pub")).unwrap();
    let src = vectors().join("accounts").join(format!("{}.jwt", a.trim()));
    std::fs::copy(src, dir.join("account.jwt")).unwrap();
    "account.jwt"
}

#[test]
fn start_errors_name_the_setting_and_say_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let account = account_jwt_file(dir.path());
    let cases: &[(&[&str], &str)] = &[
        (
            &["--operator", "missing.jwt", "--memory"],
            "nats-account-server: operatorjwtpath missing.jwt: No such file or directory (os error 2)",
        ),
        (
            &["--operator", account, "--memory"],
            "nats-account-server: operatorjwtpath account.jwt: expected an operator JWT, got \"account\"",
        ),
        (
            &["-c", "missing.toml"],
            "nats-account-server: config file missing.toml: No such file or directory (os error 2)",
        ),
        (
            &["--memory", "--nats", "nats://127.0.0.1:4222", "--creds", "missing.creds"],
            "nats-account-server: nats.usercredentials missing.creds: No such file or directory (os error 2)",
        ),
        (
            &["--port", "9092"],
            "nats-account-server: --port is not a flag of this server; to listen on port 9092, use --listen :9092",
        ),
        (
            &["--listen", "localhost"],
            "nats-account-server: --listen \"localhost\": \"localhost\" is not a port number (expected HOST:PORT, :PORT or PORT)",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(&fails_with(dir.path(), args), expected, "{args:?}");
    }
}

/// sled allows one process per store: the second one is told so, once, with the directory.
#[tokio::test]
async fn a_second_process_on_a_data_directory_is_told_to_use_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let _first = ServerProcess::start(dir.path(), "first", free_port(), &["--data", "data"]).await;
    assert_eq!(
        fails_with(dir.path(), &["--data", "data", "--listen", "127.0.0.1:0"]),
        "nats-account-server: the data directory data is in use by another process; give this one its own --data"
    );
}

/// Writes every file a full configuration names into `dir`, all valid, and returns that
/// configuration (TOML, paths relative to `dir`).
fn full_config(dir: &Path) -> String {
    for f in ["operator.jwt", "sys.jwt", "sys.creds"] {
        std::fs::copy(vectors().join(f), dir.join(f)).unwrap();
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    [
        "operatorjwtpath = \"operator.jwt\"",
        "systemaccountjwtpath = \"sys.jwt\"",
        "[http.tls]",
        "cert = \"cert.pem\"",
        "key = \"key.pem\"",
        "[nats]",
        "servers = \"nats://127.0.0.1:4222\"",
        "usercredentials = \"sys.creds\"",
        "[nats.tls]",
        "root = \"cert.pem\"",
    ]
    .join("\n")
}

/// `check-config` opens every file a start would and names the key of the first bad one.
#[test]
fn check_config_reads_every_file_the_server_would() {
    let dir = tempfile::tempdir().unwrap();
    let good = full_config(dir.path());
    std::fs::write(dir.path().join("good.toml"), &good).unwrap();
    let (code, out) = run_to_exit(dir.path(), &["-c", "good.toml", "check-config"], &[]);
    assert_eq!((code, out.as_str()), (0, "configuration OK\n"));

    let missing = "No such file or directory (os error 2)";
    let cases = [
        (
            "operatorjwtpath = \"operator.jwt\"",
            "operatorjwtpath = \"gone.jwt\"",
            format!("operatorjwtpath gone.jwt: {missing}"),
        ),
        (
            "operatorjwtpath = \"operator.jwt\"",
            "operatorjwtpath = \"sys.jwt\"",
            "operatorjwtpath sys.jwt: expected an operator JWT, got \"account\"".to_string(),
        ),
        (
            "systemaccountjwtpath = \"sys.jwt\"",
            "systemaccountjwtpath = \"gone.jwt\"",
            format!("systemaccountjwtpath gone.jwt: {missing}"),
        ),
        (
            "systemaccountjwtpath = \"sys.jwt\"",
            "systemaccountjwtpath = \"operator.jwt\"",
            "systemaccountjwtpath operator.jwt: subject is not an account key".to_string(),
        ),
        (
            "cert = \"cert.pem\"",
            "cert = \"gone.pem\"",
            format!("http.tls.cert gone.pem: {missing}"),
        ),
        (
            "key = \"key.pem\"",
            "key = \"cert.pem\"",
            "http.tls.key cert.pem: no PEM private key found".to_string(),
        ),
        (
            "usercredentials = \"sys.creds\"",
            "usercredentials = \"gone.creds\"",
            format!("nats.usercredentials gone.creds: {missing}"),
        ),
        (
            "usercredentials = \"sys.creds\"",
            "usercredentials = \"key.pem\"",
            "nats.usercredentials key.pem: cannot parse user JWT from the credentials file"
                .to_string(),
        ),
        (
            "root = \"cert.pem\"",
            "root = \"gone.pem\"",
            format!("nats.tls.root gone.pem: {missing}"),
        ),
        (
            "root = \"cert.pem\"",
            "root = \"key.pem\"",
            "nats.tls.root key.pem: no PEM certificate found".to_string(),
        ),
    ];
    let mut failures = Vec::new();
    for (line, bad, expected) in cases {
        assert!(good.contains(line), "{line}");
        std::fs::write(dir.path().join("bad.toml"), good.replace(line, bad)).unwrap();
        let (code, out) = run_to_exit(dir.path(), &["-c", "bad.toml", "check-config"], &[]);
        let expected = format!("nats-account-server: {expected}\n");
        if code != 1 || out != expected {
            failures.push(format!(
                "{bad}: exit {code}, {out:?}, expected {expected:?}"
            ));
        }
    }
    crate::common::assert_no_failures(&failures);
}

/// The settings `args` produce over the config file `file` and the environment `env`.
fn settings(file: Option<&Path>, env: &[(&str, &str)], args: &[&str]) -> Settings {
    let cli = Cli::parse_args(
        std::iter::once("nas")
            .chain(args.iter().copied())
            .map(String::from),
    )
    .expect("flags parse");
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::load(file, env, &cli.overrides().expect("overrides"))
        .expect("settings load")
        .0
}

/// Config file, environment, flags, and the store they select.
type StoreCase<'a> = (
    &'a Path,
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
    StoreChoice,
);

/// A store flag replaces the config file's (and the environment's) whole store section;
/// `--shard` and `--read-only` alone adjust the configured one.
#[test]
fn store_flags_replace_the_config_files_store() {
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/demo.toml");
    let dir = tempfile::tempdir().unwrap();
    let memory_toml = dir.path().join("memory.toml");
    std::fs::write(&memory_toml, "[store]\nmemory = true\n").unwrap();
    let dir_toml = dir.path().join("dir.toml");
    std::fs::write(&dir_toml, "[store]\ndir = \"jwts\"\nshard = true\n").unwrap();
    let p = PathBuf::from;
    let cases: &[StoreCase] = &[
        (&demo, &[], &[], StoreChoice::Sled(p("data"))),
        (
            &demo,
            &[],
            &["--memory"],
            StoreChoice::Memory { readonly: false },
        ),
        (
            &demo,
            &[],
            &["--dir", "jwts"],
            StoreChoice::Dir {
                path: p("jwts"),
                shard: false,
                readonly: false,
            },
        ),
        (
            &demo,
            &[],
            &["--nsc", "nsc/OP"],
            StoreChoice::Nsc(p("nsc/OP")),
        ),
        (
            &demo,
            &[("NAS_STORE__DIR", "env")],
            &["--memory"],
            StoreChoice::Memory { readonly: false },
        ),
        (
            &memory_toml,
            &[],
            &["--data", "d"],
            StoreChoice::Sled(p("d")),
        ),
        (
            &dir_toml,
            &[],
            &["--read-only"],
            StoreChoice::Dir {
                path: p("jwts"),
                shard: true,
                readonly: true,
            },
        ),
    ];
    for (file, env, args, expected) in cases {
        assert_eq!(
            &settings(Some(file), env, args).store_choice(),
            expected,
            "{} {env:?} {args:?}",
            file.display()
        );
    }
}

/// The README's demo with a throw-away store: `-c deploy/demo.toml --memory`, from the
/// repository root as the README says, on a bare `:PORT`.
#[tokio::test]
async fn the_demo_config_runs_in_memory_with_a_flag() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let logs = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!(":{port}");
    let server = ServerProcess::start_in(
        root,
        logs.path(),
        "demo",
        port,
        &["-c", "deploy/demo.toml", "--memory", "--listen", &listen],
    )
    .await;
    let log = server.log_text();
    assert!(log.contains("store=\"memory\""), "log:\n{log}");
    assert!(!log.contains("no operator"), "log:\n{log}");
    // `:PORT` is all interfaces, IPv6 and IPv4, as the Go server's `-hp :PORT` (the harness
    // waited for it on 127.0.0.1); on a machine without IPv6 (some containers), every IPv4
    // interface.
    if std::net::TcpListener::bind("[::]:0").is_err() {
        assert!(log.contains(&format!("addr=0.0.0.0:{port}")), "log:\n{log}");
        assert!(log.contains("no IPv6 here"), "log:\n{log}");
        return;
    }
    assert!(log.contains(&format!("addr=[::]:{port}")), "log:\n{log}");
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let (status, _) = crate::common::get(&format!("http://[::1]:{port}/healthz")).await;
        assert_eq!(status, 200, "over IPv6 loopback");
    }
}

/// `--listen PORT` (no colon) binds the configured host on that port.
#[tokio::test]
async fn listen_takes_a_bare_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start_in(
        dir.path(),
        dir.path(),
        "bare",
        port,
        &["--memory", "--listen", &port.to_string()],
    )
    .await;
    assert!(server
        .log_text()
        .contains(&format!("addr=127.0.0.1:{port}")));
}

/// The `NAS_*` service links Kubernetes gives every pod for a Service named `nas` do not stop
/// the start: they are named in one warning and ignored, while a real `NAS_` setting applies
/// (JSON logs).
#[tokio::test]
async fn kubernetes_service_links_are_ignored_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_wrapped(
        dir.path(),
        "k8s",
        free_port(),
        &[
            "env",
            "NAS_SERVICE_HOST=10.96.0.7",
            "NAS_SERVICE_PORT=9090",
            "NAS_PORT=tcp://10.96.0.7:9090",
            "NAS_PORT_9090_TCP=tcp://10.96.0.7:9090",
            "NAS_PORT_9090_TCP_ADDR=10.96.0.7",
            "NAS_PORT_9090_TCP_PORT=9090",
            "NAS_PORT_9090_TCP_PROTO=tcp",
            "NAS_LOGGING__JSON=true",
        ],
        &["--memory"],
    )
    .await;
    let log = server.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("name no setting"))
        .collect();
    assert_eq!(warnings.len(), 1, "log:\n{log}");
    assert!(
        warnings[0].contains("NAS_PORT_9090_TCP_ADDR") && warnings[0].contains("NAS_SERVICE_HOST"),
        "{}",
        warnings[0]
    );
    assert!(
        !warnings[0].contains("NAS_LOGGING__JSON"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].starts_with('{'),
        "NAS_LOGGING__JSON applied: {}",
        warnings[0]
    );
}
