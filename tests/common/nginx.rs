//! A real nginx as the load balancer, from the shipped configs with real ports filled in: in
//! front of replicas (`deploy/nginx/test-template.conf`, the same routing rules as the shipped
//! config) or of a failover cluster (`deploy/cluster/nginx.conf` itself). Killed on drop.

use super::child::{self, listening, wait_started};
use super::system_bin;
use std::future::ready;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// An nginx child process.
pub struct Nginx {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx from `deploy/nginx/test-template.conf`, balancing over `replicas`
    /// (host:port) with `primary` (host:port) for writes.
    pub async fn start(replicas: [&str; 2], primary: &str) -> Nginx {
        Nginx::spawn(|dir, listen| {
            let dir = dir.display().to_string();
            filled(
                "nginx/test-template.conf",
                &[
                    ("{{REPLICA_1}}", replicas[0]),
                    ("{{REPLICA_2}}", replicas[1]),
                    ("{{PRIMARY}}", primary),
                    ("{{LISTEN}}", listen),
                    ("{{PID}}", &format!("{dir}/nginx.pid")),
                    ("{{LOGDIR}}", &dir),
                ],
            )
        })
        .await
    }

    /// Starts nginx as `deploy/cluster/nginx.conf` configures it, balancing over the three
    /// cluster `nodes` (host:port).
    pub async fn start_cluster(nodes: [&str; 3]) -> Nginx {
        Nginx::spawn(|dir, listen| main_conf(dir, &cluster_site(nodes, listen, dir))).await
    }

    /// Starts nginx on a free port with the configuration `conf(dir, listen)` makes for its
    /// temp dir and `127.0.0.1:<port>`.
    async fn spawn(conf: impl FnOnce(&Path, &str) -> String) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let path = dir.path().join("nginx.conf");
        let conf = conf(dir.path(), &format!("127.0.0.1:{port}"));
        std::fs::write(&path, conf).expect("writing nginx.conf");
        let child = Command::new(system_bin("nginx", "nginx-light"))
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nginx");
        let mut n = Nginx {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let error_log = n.dir.path().join("error.log");
        wait_started(
            n.child.as_mut().expect("just spawned"),
            "nginx",
            Duration::from_secs(10),
            || ready(listening(port)),
            || std::fs::read_to_string(&error_log).unwrap_or_default(),
        )
        .await;
        n
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        child::kill(&mut self.child);
    }
}

/// The text of `deploy/<rel>` with each `(placeholder, value)` replaced; every placeholder must
/// occur (a renamed one in the shipped file would otherwise leave a test config half-filled).
fn filled(rel: &str, replacements: &[(&str, &str)]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for (placeholder, value) in replacements {
        assert!(
            text.contains(placeholder),
            "{} no longer contains {placeholder:?}",
            path.display()
        );
        text = text.replace(placeholder, value);
    }
    text
}

/// `deploy/cluster/nginx.conf` (a site for the `http {}` context) with its upstream names
/// pointed at `nodes` (host:port), listening on `listen`, logging into `dir`.
pub fn cluster_site(nodes: [&str; 3], listen: &str, dir: &Path) -> String {
    filled(
        "cluster/nginx.conf",
        &[
            ("nas-1:9090", nodes[0]),
            ("nas-2:9090", nodes[1]),
            ("nas-3:9090", nodes[2]),
            ("listen 8080;", &format!("listen {listen};")),
            ("/var/log/nginx/", &format!("{}/", dir.display())),
        ],
    )
}

/// A whole nginx.conf around `site` that runs unprivileged in the foreground as one process
/// (killed on drop: no master whose workers would outlive it), with its pid file, error log and
/// temp files in `dir`.
pub fn main_conf(dir: &Path, site: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{}}\nhttp {{\n\
         client_body_temp_path {d}/client_body_temp; proxy_temp_path {d}/proxy_temp;\n\
         fastcgi_temp_path {d}/fastcgi_temp; uwsgi_temp_path {d}/uwsgi_temp; \
         scgi_temp_path {d}/scgi_temp;\n{site}\n}}\n"
    )
}
