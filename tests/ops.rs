//! Operations: metrics families, HTTPS end to end (nats-server resolving through it), SIGHUP
//! reload without dropping connections, CORS, and NATS over TLS. (The status page's HTML is
//! checked in tests/accounts.rs; `tests/manual/status-screenshot.sh` shows it in a browser.)

use crate::common::fixtures::{self, new_account};
use crate::common::nats::{use_nats, wait_nats_connected, NatsServer};
use crate::common::process::ServerProcess;
use crate::common::{eventually, free_port, get, metric, post, post_accepted, TestServer};
use nats_account_server::jwt::encode;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// Each metric family moves when its event happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_families_move_with_their_events() {
    let server = TestServer::primary().await;
    let route =
        "nas_http_requests_total{method=\"POST\",route=\"/jwt/v1/accounts/{key}\",status=\"200\"}";
    assert_eq!(metric(&server.url, route).await, 0.0);
    assert_eq!(
        metric(&server.url, "nas_store_entries{kind=\"account\"}").await,
        0.0
    );

    let (kp, jwt) = new_account("metrics");
    let key = kp.public_key();
    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{key}")), jwt)
            .await
            .0,
        200
    );
    assert_eq!(metric(&server.url, route).await, 1.0);
    assert_eq!(
        metric(&server.url, "nas_store_entries{kind=\"account\"}").await,
        1.0
    );
    assert_eq!(metric(&server.url, "nas_store_head_sequence").await, 1.0);
    assert!(
        metric(
            &server.url,
            "nas_http_request_duration_seconds_count{route=\"/jwt/v1/accounts/{key}\"}"
        )
        .await
            >= 1.0
    );

    assert_eq!(
        post(&server.at(&format!("/jwt/v1/accounts/{key}")), "garbage")
            .await
            .0,
        400
    );
    assert_eq!(
        metric(
            &server.url,
            "nas_validation_rejections_total{reason=\"invalid_jwt\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        post(
            &server.at(&format!("/jwt/v1/accounts/{key}")),
            fixtures::vector("post/bad_untrusted_issuer.jwt")
        )
        .await
        .0,
        400
    );
    assert!(metric(&server.url, "nas_validation_rejections_total").await >= 2.0);
    // Unmatched paths share one label.
    assert_eq!(get(&server.at("/no/such/path/abc")).await.0, 404);
    assert_eq!(
        metric(
            &server.url,
            "nas_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        )
        .await,
        1.0
    );
    assert_eq!(metric(&server.url, "nas_nats_connected").await, 0.0);
}

/// HTTPS end to end with a CA made at test time, and a nats-server resolving accounts through
/// it with `resolver_tls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_and_nats_server_resolves_through_it() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::common::tls::files(certs.path());
    let server = TestServer::start_with(|s| {
        s.http.tls = Some(nats_account_server::config::HttpTlsSettings {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            ca: None,
        });
    })
    .await;
    let https = server.url.replace("http://", "https://");
    let client = crate::common::tls::client(&ca);
    let probe = client
        .get(format!("{https}/jwt/v1/accounts/"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status().as_u16(), 200);
    // Plain HTTP on the TLS port does not work.
    assert!(reqwest::get(format!("{}/healthz", server.url))
        .await
        .map(|r| r.status().as_u16() != 200)
        .unwrap_or(true));

    let a = fixtures::account_a();
    let a_jwt = fixtures::account_jwt(&a.public_key(), "A", serde_json::json!({}));
    let resp = client
        .post(format!("{https}/jwt/v1/accounts/{}", a.public_key()))
        .body(a_jwt.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let nats = NatsServer::start_with(
        0,
        &format!("{https}/jwt/v1/accounts/"),
        &format!("resolver_tls {{ ca_file: \"{}\" }}", ca.display()),
    )
    .await;
    // Its resolver fetched A over HTTPS.
    nats.connect_user(&fixtures::user_creds(&a, "tls-user"))
        .await;
}

/// Reads one HTTP/1.1 response (status line + headers + Content-Length body) from a kept-alive
/// connection.
fn read_response(reader: &mut BufReader<std::net::TcpStream>) -> (u16, String) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// SIGHUP reloads the configuration: the log level changes and a new operator signing key is
/// trusted, while an open keep-alive connection keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_log_level_and_operator_keys_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let op = nkeys::KeyPair::new_operator();
    let new_sk = nkeys::KeyPair::new_operator();
    let op_path = dir.path().join("operator.jwt");
    std::fs::write(&op_path, encode::operator(&op, "HUP", &[], None)).unwrap();
    let conf = dir.path().join("server.conf");
    let write_conf = |debug: bool| {
        std::fs::write(
            &conf,
            format!(
                "operatorjwtpath: \"{}\"\nstore {{ data: \"{}\" }}\nlogging {{ debug: {debug} }}\n",
                op_path.display(),
                dir.path().join("data").display()
            ),
        )
        .unwrap()
    };
    write_conf(false);
    let port = free_port();
    let server =
        ServerProcess::start(dir.path(), "hup", port, &["-c", conf.to_str().unwrap()]).await;

    let account = nkeys::KeyPair::new_account();
    let signed_by_new_key = encode::account(
        &new_sk,
        &account.public_key(),
        "via-new-key",
        serde_json::json!({}),
    );
    let url = format!("{}/jwt/v1/accounts/{}", server.url, account.public_key());
    assert_eq!(
        post(&url, signed_by_new_key.clone()).await.0,
        400,
        "not trusted before the reload"
    );

    // A keep-alive connection opened before the reload.
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    writer.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader).0, 200);
    assert!(
        !server.log_text().contains("request method=GET"),
        "no request logs at info level"
    );

    std::fs::write(
        &op_path,
        encode::operator(&op, "HUP", &[new_sk.public_key()], None),
    )
    .unwrap();
    write_conf(true);
    server.signal("HUP");
    eventually(Duration::from_secs(10), "reload logged", || async {
        server.log_text().contains("configuration reloaded")
    })
    .await;

    assert_eq!(
        post(&url, signed_by_new_key).await.0,
        200,
        "the new signing key is trusted after SIGHUP"
    );
    writer.write_all(request.as_bytes()).unwrap();
    assert_eq!(
        read_response(&mut reader).0,
        200,
        "the connection opened before the reload still works"
    );
    eventually(
        Duration::from_secs(5),
        "debug request log after reload",
        || async {
            server.log_text().contains("request")
                && server
                    .log_text()
                    .lines()
                    .any(|l| l.contains("DEBUG") && l.contains("/healthz"))
        },
    )
    .await;
}

/// Browsers may call the API from any origin, as with the Go server: preflights answer 204
/// with the allowed methods, responses carry `Access-Control-Allow-Origin: *`, and unknown
/// routes get a plain-text 404 pointing at the help.
#[tokio::test]
async fn cors_preflight_and_unknown_routes() {
    let server = TestServer::primary().await;
    let key = fixtures::vector("account_a.pub");
    let resp = crate::common::http()
        .request(
            reqwest::Method::OPTIONS,
            server.at(&format!("/jwt/v1/accounts/{key}")),
        )
        .header("Origin", "http://example.test")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let resp = crate::common::http()
        .get(server.at("/jwt/v1/accounts/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let (status, body) = get(&server.at("/no/such/route")).await;
    assert_eq!(status, 404);
    assert!(body.contains("/jwt/v1/help"), "{body}");
}

/// NATS over TLS: our server verifies a nats-server's certificate against `nats.tls.root`
/// (a CA made at test time) and publishes notifications over that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_connection_uses_tls() {
    use nats_account_server::config::TlsSettings;
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::common::tls::files(certs.path());
    let port = free_port();
    let server = TestServer::start_with(|s| {
        use_nats(s, port);
        s.nats.tls = Some(TlsSettings {
            root: Some(ca.clone()),
            cert: None,
            key: None,
        });
    })
    .await;
    let _nats = NatsServer::start_with(
        port,
        &format!("{}/jwt/v1/accounts/", server.url),
        &format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
            cert.display(),
            key.display()
        ),
    )
    .await;
    // Connected: over TLS, as the server's settings allow nothing else.
    wait_nats_connected(&server.url).await;
    assert_eq!(metric(&server.url, "nas_nats_connected").await, 1.0);
    let (kp, jwt) = new_account("tls-notify");
    post_accepted(&server.url, &kp.public_key(), &jwt).await;
    eventually(
        Duration::from_secs(5),
        "notification sent over TLS",
        || async { metric(&server.url, "nas_notifications_total{result=\"sent\"}").await >= 1.0 },
    )
    .await;
}

/// SIGHUP applies new NATS settings: the server switches to another nats-server and its
/// notifications go there, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_switches_to_new_nats_settings() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (pa, pb) = (free_port(), free_port());
    let conf = dir.path().join("server.toml");
    let write_conf = |nats_port: u16| {
        std::fs::write(
            &conf,
            format!(
                "operatorjwtpath = \"{}\"\nsystemaccountjwtpath = \"{}\"\n[store]\ndata = \"{}\"\n\
                 [nats]\nservers = \"nats://127.0.0.1:{nats_port}\"\nusercredentials = \"{}\"\nreconnectwait = \"100ms\"\n",
                fixtures::vectors().join("operator.jwt").display(),
                fixtures::vectors().join("sys.jwt").display(),
                dir.path().join("data").display(),
                fixtures::vectors().join("sys.creds").display(),
            ),
        )
        .unwrap()
    };
    write_conf(pa);
    let server = ServerProcess::start(
        dir.path(),
        "hup-nats",
        port,
        &["-c", conf.to_str().unwrap()],
    )
    .await;
    let mut a = NatsServer::resolving_from(pa, &server.url).await;
    wait_nats_connected(&server.url).await;

    let b = NatsServer::resolving_from(pb, &server.url).await;
    let sys = std::fs::read_to_string(fixtures::vectors().join("sys.creds")).unwrap();
    let watcher = async_nats::ConnectOptions::with_credentials(&sys)
        .unwrap()
        .connect(&b.url)
        .await
        .unwrap();
    let mut updates = watcher
        .subscribe("$SYS.ACCOUNT.*.CLAIMS.UPDATE")
        .await
        .unwrap();
    watcher.flush().await.unwrap();

    write_conf(pb);
    server.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "switched to the new NATS settings",
        || async {
            server.log_text().contains("switched to a new connection")
                && get(&format!("{}/healthz", server.url))
                    .await
                    .1
                    .contains("\"nats\":\"connected\"")
        },
    )
    .await;
    a.kill();

    let (kp, jwt) = new_account("after-nats-reload");
    assert_eq!(
        post(
            &format!("{}/jwt/v1/accounts/{}", server.url, kp.public_key()),
            jwt.clone()
        )
        .await
        .0,
        200
    );
    let msg = tokio::time::timeout(Duration::from_secs(5), updates.next())
        .await
        .expect("notification reached the new nats-server")
        .unwrap();
    assert_eq!(
        msg.subject.as_str(),
        format!("$SYS.ACCOUNT.{}.CLAIMS.UPDATE", kp.public_key())
    );
    assert_eq!(String::from_utf8_lossy(&msg.payload), jwt);
}
