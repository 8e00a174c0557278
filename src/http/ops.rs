//! Operational endpoints: liveness, readiness, metrics, the API help text and the status page.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::fmt::Write;

/// `GET /healthz`: the process serves HTTP. The body says which role and NATS state it has.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let health = state.store.write_health();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": state.role(),
        "nats": state.nats.state(),
        "store": store_state(&health),
        "store_write_failures": health.failures,
    }))
}

/// `ok`, or `failing` while commits fail (disk full, read-only file system): reads go on, and
/// writes answer 500 until the cause is fixed; the log has the cause.
fn store_state(health: &crate::store::WriteHealth) -> &'static str {
    if health.failing {
        "failing"
    } else {
        "ok"
    }
}

/// `GET /readyz`: 200 once the store is open and, on a replica, the initial sync is done;
/// 503 before. A replica whose primary is down stays ready (it serves what it has), and says so.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (accounts, activations) = state.store.counts();
    let mut detail = json!({
        "role": state.role(),
        "store": state.store.backend_name(),
        "accounts": accounts,
        "activations": activations,
        "head_seq": state.store.head(),
        "nats": state.nats.state(),
        "store_writes": store_state(&state.store.write_health()),
    });
    if let Some(c) = &state.cluster {
        detail["cluster"] = cluster_detail(c);
    }
    let leads = state.replica.is_some() && state.follower().is_none();
    let candidate = state
        .cluster
        .as_ref()
        .is_some_and(|c| c.role() == crate::cluster::Role::Candidate);
    let ready = match &state.replica {
        None => true,
        // A cluster leader serves its own store; a candidate serves what it has while the
        // election runs (readiness waiting for a leader would take every node out of the
        // load balancer, and nats-server could resolve nothing).
        Some(_) if leads || candidate => true,
        Some(r) => {
            let s = r.status();
            detail["replica"] = json!({
                "initial_sync_done": s.synced,
                "primary": s.primary,
                "primary_reachable": s.reachable,
                "primary_error": s.link_error,
                "applied_seq": s.applied_seq,
                "primary_head_seq": s.primary_head,
                "lag_sequences": s.primary_head.saturating_sub(s.applied_seq),
                "lag_seconds": s.lag_seconds,
                "caught_up": s.caught_up(),
                "partial": s.partial,
                "stalled": s.stall.as_ref().map(|st| json!({
                    "seq": st.seq,
                    "key": st.key,
                    "reason": st.reason,
                })),
            });
            s.synced
        }
    };
    detail["ready"] = json!(ready);
    if ready {
        HttpResponse::Ok().json(detail)
    } else {
        HttpResponse::ServiceUnavailable().json(detail)
    }
}

/// The cluster part of `/readyz`: this node, the leader, and every node's published progress.
fn cluster_detail(c: &crate::cluster::ClusterHandle) -> serde_json::Value {
    let v = c.view();
    let leader_applied = v
        .leader
        .as_ref()
        .and_then(|l| v.peers.iter().find(|p| p.progress.node == l.node))
        .map(|p| (p.progress.lineage.clone(), p.progress.applied));
    let nodes: Vec<serde_json::Value> = v
        .peers
        .iter()
        .map(|p| {
            let lag = leader_applied
                .as_ref()
                .filter(|(lineage, _)| *lineage == p.progress.lineage)
                .map(|(_, applied)| applied.saturating_sub(p.progress.applied));
            json!({
                "node": p.progress.node,
                "url": p.progress.url,
                "role": p.progress.role,
                "term": p.progress.term,
                "applied_seq": p.progress.applied,
                "lag_sequences": lag,
                "lag_seconds": p.progress.lag_seconds,
                "accounts": p.progress.accounts,
                "last_seen_seconds": p.seen.elapsed().as_secs_f64(),
            })
        })
        .collect();
    json!({
        "name": c.name(),
        "node": c.node(),
        "advertise": c.advertise(),
        "role": v.role.as_str(),
        "term": v.term,
        "leader": v.leader.as_ref().map(|l| l.node.clone()),
        "leader_url": v.leader.as_ref().map(|l| l.url.clone()),
        "lease_age_seconds": v.lease_age().map(|d| d.as_secs_f64()),
        "lease_ttl_seconds": c.lease_ttl().as_secs_f64(),
        "syncreplicas": c.sync_replicas(),
        "kv_up": v.kv_up,
        "kv_error": v.kv_error,
        "nodes": nodes,
    })
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (accounts, activations) = state.store.counts();
    if let Some(c) = &state.cluster {
        let v = c.view();
        state.metrics.cluster_state(
            v.role,
            v.term,
            v.lease_age().map_or(0.0, |d| d.as_secs_f64()),
        );
        state.metrics.cluster_kv_up(v.kv_up);
    }
    if state.replica.is_some() && state.follower().is_none() {
        // The cluster leader: nothing to lag behind.
        state.metrics.replica_state(0, 0.0, true);
        state.metrics.replica_stalled(None);
    } else if let Some(r) = &state.replica {
        let s = r.status();
        state.metrics.replica_state(
            s.primary_head.saturating_sub(s.applied_seq),
            s.lag_seconds,
            s.reachable,
        );
        state
            .metrics
            .replica_stalled(s.stall.as_ref().map(|st| st.seq));
    }
    state.metrics.store_health(&state.store.write_health());
    let body = state.metrics.render(
        accounts,
        activations,
        state.store.head(),
        state.nats.state() == crate::nats::ConnectionState::Connected,
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

/// `GET /jwt/v1/help`
pub async fn help() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(HELP)
}

const HELP: &str = "# NATS Account Server JWT API HELP

## GET /jwt/v1/help
Returns this page.

## GET /jwt/v1/operator
The operator JWT this server trusts, if one is configured. Options: text=true, decode=true.

## GET /jwt/v1/accounts and /jwt/v1/accounts/
200 with an empty body: the probe nats-server sends at startup to its URL resolver.

## GET /jwt/v1/accounts/<pubkey>
The account JWT, Content-Type application/jwt, an ETag derived from the JWT's bytes
(If-None-Match answers 304; a changed JWT never does),
Cache-Control from the JWT's expiry and the configured max-age. 404 when unknown, 400 when the
key is not an account public key. Options:
  text=true    the JWT as text/plain
  decode=true  header and claims as JSON (dates and nested activation tokens expanded)
  check=true   404 when the JWT has expired
  notify=true  re-send the claims-update notification to nats-server

## POST /jwt/v1/accounts/<pubkey>
Body: the raw account JWT (any Content-Type). It must be signed by the operator or one of its
signing keys, its subject must be <pubkey>, and it must not be expired. 200 once stored durably
(the notification to nats-server is queued, never awaited; the same JWT again: 200, nothing
changes); 400 with the
reason when invalid; 409 when a newer JWT (later iat) is stored, or a different JWT with the
same iat (iat counts whole seconds: issue the new version again a second later); 413 when the body is too large; 405 on a read-only store; 503 on a replica whose
primary is unreachable (replicas forward writes to their primary).

## DELETE /jwt/v1/accounts/<pubkey>
Body: an operator-signed delete request (a generic JWT self-signed by the operator or one of
its signing keys, nats.accounts listing <pubkey>), as nsc push --prune sends over NATS. Needs
store.allowdelete. 200; 400 malformed; 403 not trusted; 404 nothing stored; 405 deletion off
or read-only store; 409 the stored JWT was issued after the request. The account answers 404
from then on, on every replica too, until a JWT issued after the request is posted.

## GET /jwt/v1/activations/<hash>
An activation token by its hash: padded base32 of sha256(\"<iss>.<sub>.<subject up to its
first wildcard>\"), `_` for a subject that starts with a wildcard. Options: text, decode,
notify; ETag, 304 and Cache-Control as for accounts.

## POST /jwt/v1/activations
Body: the raw activation token. Its issuing account must be known to this server. 200 with the
hash as the body.

## GET /jwt/v1/pack?max=N
All tokens as `key|jwt` lines (the Go server's format).

## GET /jwt/v1/changes?since=SEQ&limit=N&wait=SECS
The change feed replicas follow: `seq|kind|key|jwt` lines (kind account, activation or delete),
headers X-Store-Id, X-Head-Seq and X-Compacted-Seq;
wait holds the request until a change after SEQ exists.

## GET /jwt/v1/digest[?buckets=N,M]
The store's content digest (JSON: store_id, head, digest, 256 bucket digests; each the XOR of
the sha256 of its tokens), or with buckets= the entries of those buckets as
`kind|key|iat|sha256` lines. Replicas compare digests to find and repair differences.

## GET /healthz, /readyz, /metrics, /
Liveness, readiness (JSON detail), Prometheus metrics, and a status page.
";

/// `GET /`: a status page for people; plain HTML, no external assets.
pub async fn status_page(state: web::Data<AppState>) -> HttpResponse {
    let (accounts, activations) = state.store.counts();
    let mut rows = String::new();
    let recent = state
        .store
        .changes_since(state.store.head().saturating_sub(20), 20);
    for e in recent.iter().rev() {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            e.seq,
            crate::wire::feed::kind_name(e),
            html_escape(&e.key),
            html_escape(&crate::jwt::unix_to_rfc3339(e.iat))
        );
    }
    let replica = match state.follower() {
        None => String::new(),
        Some(r) => {
            let s = r.status();
            let stall = match &s.stall {
                None => "no".to_string(),
                Some(st) => format!(
                    "<strong>STALLED</strong> at the primary's change {} ({}): {}; serving what this replica has, retrying",
                    st.seq,
                    html_escape(&st.key),
                    html_escape(&st.reason)
                ),
            };
            format!(
                "<tr><th>Primary</th><td id=\"primary\">{} ({})</td></tr><tr><th>Replica lag</th><td>{} sequences, {:.1} s</td></tr><tr><th>Initial sync</th><td>{}</td></tr><tr><th>Replication stalled</th><td id=\"stalled\">{}</td></tr>",
                html_escape(&s.primary),
                match &s.link_error {
                    _ if s.reachable => "reachable".to_string(),
                    Some(e) => format!("unreachable: {}", html_escape(e)),
                    None => "not contacted yet".to_string(),
                },
                s.primary_head.saturating_sub(s.applied_seq),
                s.lag_seconds,
                if s.synced { "done" } else { "in progress" },
                stall
            )
        }
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>nats-account-server</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}</style></head>\
<body><h1>nats-account-server</h1><table>\
<tr><th>Role</th><td id=\"role\">{role}</td></tr>\
<tr><th>Accounts</th><td id=\"accounts\">{accounts}</td></tr>\
<tr><th>Activations</th><td>{activations}</td></tr>\
<tr><th>Store</th><td>{store} (lineage {lineage})</td></tr>\
<tr><th>Store writes</th><td id=\"store-writes\">{writes}</td></tr>\
<tr><th>Head sequence</th><td>{head}</td></tr>\
<tr><th>NATS</th><td>{nats}</td></tr>{replica}</table>{cluster}\
<h2>Latest changes</h2><table><tr><th>Seq</th><th>Kind</th><th>Key</th><th>Issued</th></tr>{rows}</table>\
<p><a href=\"/jwt/v1/help\">API help</a> · <a href=\"/metrics\">metrics</a></p></body></html>",
        role = state.role(),
        store = state.store.backend_name(),
        lineage = html_escape(state.store.lineage()),
        writes = match state.store.write_health() {
            h if h.failing => format!("FAILING ({} failed commits; see the log)", h.failures),
            h => format!("ok ({} failed commits since start)", h.failures),
        },
        head = state.store.head(),
        nats = state.nats.state(),
        cluster = state.cluster.as_ref().map(cluster_section).unwrap_or_default(),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The cluster part of the status page: every node's role, term, position, lag and when it
/// was last heard of, and the lag plot.
fn cluster_section(c: &crate::cluster::ClusterHandle) -> String {
    let d = cluster_detail(c);
    let v = c.view();
    let mut rows = String::new();
    for n in d["nodes"].as_array().into_iter().flatten() {
        let text = |k: &str| {
            html_escape(
                &n[k]
                    .as_str()
                    .map_or_else(|| n[k].to_string(), str::to_string),
            )
        };
        let _ = write!(
            rows,
            "<tr class=\"node\"><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{:.1} s ago</td></tr>",
            text("node"),
            if n["node"] == d["node"] { " (this node)" } else { "" },
            text("url"),
            text("role"),
            text("term"),
            text("applied_seq"),
            n["lag_sequences"].as_u64().map_or("–".to_string(), |l| l.to_string()),
            n["lag_seconds"].as_f64().unwrap_or(0.0),
            n["last_seen_seconds"].as_f64().unwrap_or(0.0),
        );
    }
    let leader = match &v.leader {
        Some(l) => format!("<code>{}</code> at {}", html_escape(&l.node), html_escape(&l.url)),
        None => "<strong>none</strong> (election under way, or the lease bucket is unreachable: writes are refused)".into(),
    };
    format!(
        "<h2>Cluster <code>{name}</code></h2><table>\
<tr><th>This node</th><td><code>{node}</code>: <span id=\"cluster-role\">{role}</span></td></tr>\
<tr><th>Term</th><td id=\"cluster-term\">{term}</td></tr>\
<tr><th>Leader</th><td id=\"cluster-leader\">{leader}</td></tr>\
<tr><th>Lease age</th><td>{age} (lease {ttl:.1} s)</td></tr>\
<tr><th>Semi-synchronous</th><td>{sync}</td></tr>\
<tr><th>Lease bucket</th><td>{kv}</td></tr></table>\
<h3>Nodes</h3><table id=\"cluster-nodes\"><tr><th>Node</th><th>URL</th><th>Role</th><th>Term</th><th>Applied</th><th>Lag (seq)</th><th>Lag</th><th>Last seen</th></tr>{rows}</table>\
<h3>Replication lag, last minutes</h3>{plot}",
        name = html_escape(c.name()),
        node = html_escape(c.node()),
        role = v.role.as_str(),
        term = v.term,
        age = v
            .lease_age()
            .map_or("–".to_string(), |a| format!("{:.1} s", a.as_secs_f64())),
        ttl = c.lease_ttl().as_secs_f64(),
        sync = match c.sync_replicas() {
            0 => "off (asynchronous replication)".to_string(),
            n => format!("writes wait for {n} follower(s)"),
        },
        kv = match (&v.kv_up, &v.kv_error) {
            (true, _) => "answers".to_string(),
            (false, Some(e)) => format!("<strong>unreachable</strong>: {}", html_escape(e)),
            (false, None) => "not contacted yet".to_string(),
        },
        plot = super::lag_plot::svg(&v.lag_history),
    )
}

use super::html_escape;
