//! The cluster mode's deployment and observability artifacts: the Prometheus alert rules and
//! their promtool unit tests, the Grafana dashboard, the three-node example in
//! `deploy/cluster/` and the Kubernetes StatefulSet in `deploy/k8s/cluster.yaml`.
//!
//! Nothing here starts a server: the rules run in promtool, the configs through the real
//! loader, `nginx -t` and `nats-server -t`, the YAML through python3's yaml module (there is no
//! YAML parser among our dependencies). promtool and python3-yaml are installed by
//! `tests/run.sh`; without promtool the rule tests are skipped with a message unless
//! `TEST_REQUIRE_PROMTOOL` is set, without python3-yaml the manifest checks are skipped.

use crate::common::nginx;
use crate::common::{free_port, system_bin};
use nats_account_server::config::Cli;
use nats_account_server::config::Settings;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Every metric a dashboard query or an alert may name (besides Prometheus' own `up`).
const METRICS: &[&str] = &[
    "nas_cluster_role",
    "nas_cluster_term",
    "nas_cluster_lease_age_seconds",
    "nas_cluster_leader_changes_total",
    "nas_cluster_semisync_fallbacks_total",
    "nas_cluster_semisync_wait_seconds",
    "nas_cluster_fenced_total",
    "nas_cluster_kv_up",
    "nas_replica_lag_seconds",
    "nas_replica_lag_sequences",
    "nas_replica_stalled",
    "nas_replica_primary_reachable",
    "nas_nats_connected",
    "nas_http_requests_total",
    "nas_http_request_duration_seconds",
    "nas_store_entries",
    "nas_store_head_sequence",
    "nas_store_write_failing",
    "nas_notifications_total",
    "nas_validation_rejections_total",
    "nas_refused_total",
];

/// The histograms among [`METRICS`]: queries name their `_bucket`, `_sum` and `_count` series.
const HISTOGRAMS: &[&str] = &[
    "nas_cluster_semisync_wait_seconds",
    "nas_http_request_duration_seconds",
];

/// The scrape job the alert rules select (`up{job=...}`, leaders counted per job).
const JOB: &str = "nats-account-server";

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    let path = deploy(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// True when `name` is a metric we export (or a histogram's series of one), or `up`.
fn known_metric(name: &str) -> bool {
    if name == "up" || METRICS.contains(&name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| HISTOGRAMS.contains(&base))
    })
}

/// The metric names a PromQL expression selects. String literals, label matchers (`{...}`),
/// ranges (`[...]`), grouping lists (`by (...)`, `on (...)`, ...), function and aggregation
/// names, keywords and numbers are not metric names; every other identifier is.
fn promql_metrics(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Blank out strings, then matchers and ranges (their content is labels and durations).
    let mut plain = String::new();
    let mut chars = expr.chars();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let quote = c;
                while let Some(d) = chars.next() {
                    if d == '\\' && quote != '`' {
                        chars.next();
                    } else if d == quote {
                        break;
                    }
                }
                plain.push(' ');
            }
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => plain.push(c),
        }
        // A matcher or range stands where a token ended.
        if matches!(c, '{' | '}' | '[' | ']') {
            plain.push(' ');
        }
    }
    assert!(
        depth_brace == 0 && depth_bracket == 0,
        "unbalanced braces in {expr:?}"
    );
    let bytes = plain.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_list = false;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_digit() || (c == '.' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit())
        {
            // A number (0.99, 1e3, 0x1f): not a name.
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            continue;
        }
        if c == '$' {
            // A Grafana variable outside a string: skip it.
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            let word = &plain[start..i];
            let next = plain[i..].trim_start().chars().next();
            if GROUPING.contains(&word) {
                skip_list = true;
            } else if !KEYWORDS.contains(&word) && next != Some('(') {
                names.push(word.to_string());
            }
            continue;
        }
        if c == '(' && skip_list {
            // The label list after by/without/on/ignoring/group_left/group_right.
            let close = plain[i..]
                .find(')')
                .unwrap_or_else(|| panic!("unclosed grouping list in {expr:?}"));
            i += close + 1;
            skip_list = false;
            continue;
        }
        if !c.is_whitespace() {
            skip_list = false;
        }
        i += 1;
    }
    names
}

#[test]
fn promql_metric_extraction() {
    assert_eq!(
        promql_metrics(
            r#"histogram_quantile(0.99, sum by (le, instance) (rate(nas_x_bucket{job="$job", a=~"b{c}"}[$__rate_interval])))"#
        ),
        ["nas_x_bucket"]
    );
    assert_eq!(
        promql_metrics(
            r#"2 * max by (instance) (a{r="l"}) + on(instance) group_left(x) b > bool 1e3"#
        ),
        ["a", "b"]
    );
    assert_eq!(
        promql_metrics("sum without(role) (x) or vector(0) unless y offset 5m"),
        ["x", "y"]
    );
    assert!(known_metric("nas_http_request_duration_seconds_bucket"));
    assert!(!known_metric("nas_store_entries_bucket"));
    assert!(!known_metric("nas_cluster_leader"));
}

/// promtool, when installed; `None` (after saying so) when it is not and not required.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("TEST_REQUIRE_PROMTOOL").is_none(),
            "TEST_REQUIRE_PROMTOOL is set but promtool is not installed (apt-get install prometheus; tests/run.sh does it)"
        );
        eprintln!(
            "SKIPPED: promtool is not installed, so the alert rules were not checked \
             (apt-get install prometheus, as tests/run.sh does; TEST_REQUIRE_PROMTOOL=1 makes this a failure)"
        );
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one-line `expr:` values of a rules file.
fn rule_exprs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .map(|e| {
            let e = e.trim();
            assert!(
                !e.is_empty() && !e.starts_with('|') && !e.starts_with('>'),
                "multi-line expr in alerts.yaml (keep each on one line): {e:?}"
            );
            e.to_string()
        })
        .collect()
}

/// (a) The rules load and every alert fires when it should and not otherwise.
#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yaml")));
    let said = String::from_utf8_lossy(&out.stdout);
    let alerts = read("prometheus/alerts.yaml");
    let count = alerts.matches("- alert: ").count();
    assert!(
        said.contains(&format!("SUCCESS: {count} rules found")),
        "{said}"
    );
    run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(deploy("prometheus/alerts_test.yaml")));

    // Every alert has a test that expects it to fire (and "what to do" annotations).
    let tests = read("prometheus/alerts_test.yaml");
    for name in alerts
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert: "))
    {
        let firing =
            tests.lines().collect::<Vec<_>>().windows(2).any(|w| {
                w[0].trim() == format!("alertname: {name}") && w[1].trim() == "exp_alerts:"
            });
        assert!(firing, "alerts_test.yaml has no firing case for {name}");
        assert!(
            tests.contains(&format!("alertname: {name}, exp_alerts: []")),
            "alerts_test.yaml has no silent case for {name}"
        );
    }
    for needed in [
        "NasClusterNoLeader",
        "NasClusterMultipleLeaders",
        "NasReplicaStalled",
        "NasReplicaLagging",
        "NasClusterSemiSyncFallbacks",
        "NasNatsDown",
        "NasClusterLeaseBucketDown",
        "NasNodeDown",
    ] {
        assert!(
            alerts.contains(&format!("- alert: {needed}\n")),
            "alerts.yaml lacks {needed}"
        );
    }
    assert_eq!(
        alerts.matches("summary: ").count(),
        count,
        "every alert has a summary"
    );
    assert_eq!(
        alerts.matches("description: ").count(),
        count,
        "every alert has a description"
    );
}

/// (c) Every metric the alert rules (and their tests) name is one the server exports.
#[test]
fn alert_rules_name_exported_metrics() {
    let alerts = read("prometheus/alerts.yaml");
    let exprs = rule_exprs(&alerts);
    assert!(exprs.len() >= 8, "{exprs:?}");
    for expr in &exprs {
        for name in promql_metrics(expr) {
            assert!(
                known_metric(&name),
                "alerts.yaml: {expr:?} names {name:?}, not an exported metric"
            );
        }
    }
    for file in ["prometheus/alerts.yaml", "prometheus/alerts_test.yaml"] {
        for name in nas_tokens(&read(file)) {
            assert!(
                known_metric(&name),
                "{file} names {name:?}, not an exported metric"
            );
        }
    }
    assert!(
        alerts.contains(&format!("up{{job=\"{JOB}\"}}")),
        "NasNodeDown selects the job of deploy/cluster/prometheus.yml"
    );
    assert!(read("cluster/prometheus.yml").contains(&format!("job_name: {JOB}\n")));
}

/// Every `nas_...` word in `text`.
fn nas_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("nas_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// (b) The dashboard is valid JSON, importable (a `${DS_PROMETHEUS}` input everywhere), and
/// every query names only exported metrics and parses as PromQL.
#[test]
fn dashboard_queries_name_exported_metrics() {
    let text = read("grafana/nas-dashboard.json");
    let dash: Value = serde_json::from_str(&text).expect("nas-dashboard.json is valid JSON");
    let schema = dash["schemaVersion"].as_i64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(
        dash["__inputs"]
            .as_array()
            .expect("__inputs")
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "a DS_PROMETHEUS data source input"
    );
    let ds = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});

    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    let mut panels: Vec<&Value> = dash["panels"].as_array().expect("panels").iter().collect();
    let mut i = 0;
    while i < panels.len() {
        let panel = panels[i];
        i += 1;
        let id = panel["id"].as_i64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        assert!(
            panel["gridPos"]["w"].as_i64().is_some(),
            "panel {id} gridPos"
        );
        if panel["type"] == "row" {
            panels.extend(panel["panels"].as_array().into_iter().flatten());
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default();
        assert_eq!(panel["datasource"], ds, "panel {title:?} data source");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            assert_eq!(t["datasource"], ds, "panel {title:?} query data source");
            exprs.push((
                title.to_string(),
                t["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map_or(q, |(selector, _)| selector);
            exprs.push((format!("variable {}", var["name"]), inner.to_string()));
        }
    }

    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        for name in promql_metrics(expr) {
            assert!(
                known_metric(&name),
                "{title:?}: {expr:?} names {name:?}, not an exported metric"
            );
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| HISTOGRAMS.contains(b)))
                .unwrap_or(&name);
            used.insert(base.to_string());
        }
    }
    // The panels the operators asked for.
    for needed in [
        "nas_cluster_role",
        "nas_cluster_term",
        "nas_cluster_lease_age_seconds",
        "nas_cluster_leader_changes_total",
        "nas_replica_lag_seconds",
        "nas_replica_stalled",
        "nas_cluster_semisync_fallbacks_total",
        "nas_cluster_semisync_wait_seconds",
        "nas_http_requests_total",
        "nas_http_request_duration_seconds",
        "nas_store_entries",
        "nas_store_head_sequence",
        "nas_nats_connected",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }

    // Every query parses as PromQL: promtool checks them as recording rules, with the
    // dashboard variables filled in.
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (_, expr)) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$job", JOB);
        let quoted = serde_json::to_string(&expr).expect("string");
        rules.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {quoted}\n"
        ));
    }
    let path = dir.path().join("dashboard-rules.yaml");
    std::fs::write(&path, rules).expect("writing rules");
    run(Command::new(promtool).args(["check", "rules"]).arg(&path));
}

/// python3 with its yaml module (the system's, when the first python3 on PATH lacks it).
fn python_yaml() -> Option<PathBuf> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|py| {
            Command::new(py)
                .args(["-c", "import yaml"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// The documents of each YAML file (paths relative to deploy/), as JSON.
fn load_yaml(py: &Path, files: &[&str]) -> Value {
    let script = "import json, sys, yaml\n\
                  json.dump({f: list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]}, sys.stdout)";
    let out = run(Command::new(py)
        .arg("-c")
        .arg(script)
        .args(files)
        .current_dir(deploy("")));
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// (d) The Kubernetes and compose manifests parse and hang together: three identical nodes,
/// each with its own volume and advertise URL, the files they mount exist, the balancer and
/// Prometheus name the same nodes, the trust ConfigMap carries the demo JWTs.
#[test]
fn cluster_manifests_parse_and_agree() {
    let Some(py) = python_yaml() else {
        eprintln!(
            "SKIPPED: python3 with the yaml module is not installed, so the compose and \
             Kubernetes manifests were not parsed (apt-get install python3-yaml, as tests/run.sh does)"
        );
        return;
    };
    let files = [
        "k8s/cluster.yaml",
        "cluster/compose.yaml",
        "cluster/prometheus.yml",
        "cluster/grafana/datasources.yaml",
        "cluster/grafana/dashboards.yaml",
        "prometheus/alerts.yaml",
        "prometheus/alerts_test.yaml",
    ];
    let docs = load_yaml(&py, &files);
    for f in files {
        assert!(
            docs[f].as_array().is_some_and(|d| !d.is_empty()),
            "{f} is empty"
        );
    }
    check_compose(&docs["cluster/compose.yaml"][0]);
    check_k8s(docs["k8s/cluster.yaml"].as_array().expect("documents"));
    let targets = &docs["cluster/prometheus.yml"][0]["scrape_configs"][0];
    assert_eq!(targets["job_name"], JOB);
    assert_eq!(
        targets["static_configs"][0]["targets"],
        serde_json::json!(["nas-1:9090", "nas-2:9090", "nas-3:9090"])
    );
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn check_compose(compose: &Value) {
    let services = compose["services"].as_object().expect("services");
    let nodes = ["nas-1", "nas-2", "nas-3"];
    let mut cluster_names = BTreeSet::new();
    let mut data_volumes = BTreeSet::new();
    let mut mounts_per_node = Vec::new();
    for node in nodes {
        let svc = &services[node];
        let args = strs(&svc["command"]);
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .unwrap_or_else(|| panic!("{node}: no {name} in {args:?}"))
                .clone()
        };
        cluster_names.insert(flag("--cluster"));
        assert_eq!(flag("--advertise"), format!("http://{node}:9090"));
        assert!(
            !args.iter().any(|a| a == "--primary"),
            "{node}: cluster nodes have no --primary"
        );
        check_node_config(&read("cluster/nas.toml"), &args);
        let mut mounts = Vec::new();
        for v in strs(&svc["volumes"]) {
            let (source, target) = v.split_once(':').expect("source:target");
            if target.starts_with("/var/lib/nats-account-server") {
                assert!(
                    compose["volumes"].get(source).is_some(),
                    "{node}: volume {source} not declared"
                );
                assert!(
                    data_volumes.insert(source.to_string()),
                    "{node} shares {source}"
                );
            } else {
                mounts.push(v.clone());
            }
        }
        mounts_per_node.push(mounts);
        // The healthcheck and the rest come from the shared anchor.
        assert_eq!(svc["image"], services["nas-1"]["image"]);
        assert!(svc["healthcheck"]["test"].is_array(), "{node} healthcheck");
    }
    assert_eq!(
        cluster_names.len(),
        1,
        "one cluster name: {cluster_names:?}"
    );
    assert_eq!(data_volumes.len(), 3);
    assert!(
        mounts_per_node.windows(2).all(|w| w[0] == w[1]),
        "the nodes mount the same files: {mounts_per_node:?}"
    );

    // Every file mounted from the repository exists.
    for (name, svc) in services {
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let source = v
                .as_str()
                .expect("short volume syntax")
                .split(':')
                .next()
                .unwrap();
            if source.starts_with('.') {
                let path = deploy("cluster").join(source);
                assert!(
                    path.exists(),
                    "{name} mounts {source}: {} is missing",
                    path.display()
                );
            }
        }
    }
    // nginx balances over exactly these nodes; nats-server keeps JetStream on its volume.
    let nginx = read("cluster/nginx.conf");
    for node in nodes {
        assert!(
            nginx.contains(&format!("server {node}:9090")),
            "nginx lacks {node}"
        );
    }
    let nats_volumes = strs(&services["nats"]["volumes"]);
    assert!(nats_volumes.iter().any(|v| v == "nats-data:/data"));
    assert!(read("cluster/nats-server.conf").contains("store_dir: /data/jetstream"));
    assert!(services["nats"]["depends_on"]["nats-account-lb"].is_object());
}

fn check_k8s(docs: &[Value]) {
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in k8s/cluster.yaml"))
    };
    let sts = find("StatefulSet", "nas");
    assert_eq!(sts["spec"]["replicas"], 3);
    let headless = sts["spec"]["serviceName"].as_str().expect("serviceName");
    let hs = find("Service", headless);
    assert_eq!(hs["spec"]["clusterIP"], "None");
    assert_eq!(hs["spec"]["publishNotReadyAddresses"], true);
    let svc = find("Service", "nas");
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for s in [hs, svc] {
        for (k, v) in s["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(&labels[k], v, "Service selector {k}");
        }
    }
    assert!(!sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates")
        .is_empty());

    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["env"][0]["name"], "POD_NAME");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let args = strs(&c["args"]);
    let advertise = args
        .iter()
        .position(|a| a == "--advertise")
        .map(|i| args[i + 1].clone())
        .expect("--advertise");
    assert_eq!(advertise, format!("http://$(POD_NAME).{headless}:9090"));
    assert!(args.iter().any(|a| a == "--cluster"));

    // The volumes name ConfigMaps and a Secret; the ConfigMaps are in the file.
    let mut config = None;
    for v in pod["volumes"].as_array().expect("volumes") {
        if let Some(name) = v["configMap"]["name"].as_str() {
            let cm = find("ConfigMap", name);
            if let Some(toml) = cm["data"]["config.toml"].as_str() {
                config = Some(toml.to_string());
            }
        }
    }
    let config = config.expect("a ConfigMap with config.toml");
    // Every pod gets the same arguments; any pod name stands for them.
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("$(POD_NAME)", "nas-0"))
        .collect();
    check_node_config(&config, &args);
    let trust = find("ConfigMap", "nas-cluster-trust");
    for f in ["operator.jwt", "sys.jwt", "cluster-account.jwt"] {
        assert_eq!(
            trust["data"][f].as_str().map(str::trim),
            Some(read(&format!("demo/{f}")).trim()),
            "nas-cluster-trust {f} is deploy/demo/{f}"
        );
    }
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    for path in [
        "/etc/nats-account-server/trust",
        "/etc/nats-account-server/creds",
    ] {
        assert!(mounts.iter().any(|m| m["mountPath"] == path), "{path}");
    }
    for file in [
        "/etc/nats-account-server/trust/operator.jwt",
        "/etc/nats-account-server/trust/cluster-account.jwt",
        "/etc/nats-account-server/creds/sys-user.creds",
        "/etc/nats-account-server/creds/cluster-user.creds",
    ] {
        assert!(config.contains(file), "config.toml does not use {file}");
    }
}

/// A node's config `text` with the command-line `args` loads with the real loader. Until the
/// loader knows the cluster settings (`--cluster` is not a flag yet), the `[cluster...]`
/// tables are set aside and everything else must load.
fn check_node_config(text: &str, args: &[String]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    let cluster_flags =
        Cli::parse_args(["nats-account-server", "--cluster", "x"].map(String::from)).is_ok();
    let (text, overrides) = if cluster_flags {
        let argv = std::iter::once("nats-account-server".to_string()).chain(args.iter().cloned());
        let cli = Cli::parse_args(argv).unwrap_or_else(|e| panic!("parsing {args:?}: {e}"));
        (
            text.to_string(),
            cli.overrides().expect("flags convert to overrides"),
        )
    } else {
        (without_cluster_tables(text), Vec::new())
    };
    std::fs::write(&path, &text).expect("writing config");
    let (settings, report) = Settings::load(Some(&path), Vec::new(), &overrides)
        .unwrap_or_else(|e| panic!("node config does not load: {e}\n{text}"));
    assert!(report.ignored_keys.is_empty(), "{:?}", report.ignored_keys);
    assert_eq!(settings.http.port, 9090);
    assert!(
        settings.primary.0.is_empty(),
        "cluster nodes name no primary"
    );
}

/// `text` without its `[cluster]` and `[cluster.*]` tables.
fn without_cluster_tables(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            skipping = t.starts_with("[cluster]") || t.starts_with("[cluster.");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.len() < text.len() || !text.contains("[cluster"));
    out
}

/// The example's node config loads, and carries the settings the cluster needs.
#[test]
fn cluster_node_config_loads() {
    let text = read("cluster/nas.toml");
    check_node_config(
        &text,
        &["--cluster", "demo", "--advertise", "http://nas-1:9090"].map(String::from),
    );
    for key in [
        "[cluster]",
        "leasettl = ",
        "syncreplicas = ",
        "synctimeout = ",
        "accountjwtpath = ",
        "[cluster.nats]",
    ] {
        assert!(text.contains(key), "nas.toml lacks {key}");
    }
}

/// The example's balancer passes `nginx -t`, with its upstream names pointed at loopback.
#[test]
fn cluster_nginx_config_passes_nginx_t() {
    let dir = tempfile::tempdir().expect("temp dir");
    let loopback = || format!("127.0.0.1:{}", free_port());
    let (n1, n2, n3) = (loopback(), loopback(), loopback());
    let site = nginx::cluster_site([&n1, &n2, &n3], &loopback(), dir.path());
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx::main_conf(dir.path(), &site)).expect("nginx.conf");
    run(Command::new(system_bin("nginx", "nginx-light"))
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf));
}

/// The example's nats-server config passes `nats-server -t` (operator mode and JetStream),
/// with its paths pointed at the repository's demo operator and a temp dir.
#[test]
fn cluster_nats_server_config_passes_nats_server_t() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = read("cluster/nats-server.conf")
        .replace(
            "/etc/nats/operator.jwt",
            &deploy("demo/operator.jwt").display().to_string(),
        )
        .replace(
            "/data/jetstream",
            &dir.path().join("js").display().to_string(),
        );
    assert!(conf.contains("jetstream {"));
    let path = dir.path().join("nats-server.conf");
    std::fs::write(&path, conf).expect("nats-server.conf");
    run(Command::new(crate::common::nats::nats_server_bin())
        .arg("-t")
        .arg("-c")
        .arg(&path));
}
