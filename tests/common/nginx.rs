//! A real nginx as the load balancer in front of replicas, from `deploy/nginx/test-template.conf`
//! (the same routing rules as the shipped config) with real ports filled in. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// An nginx child process.
pub struct Nginx {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    dir: TempDir,
}

fn nginx_bin() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "nginx is not installed: run tests/run.sh, which installs it (apt-get install nginx-light)"
    );
}

impl Nginx {
    /// Starts nginx balancing over `replicas` (host:port) with `primary` (host:port) for writes.
    pub fn start(replicas: [&str; 2], primary: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/test-template.conf"),
        )
        .expect("deploy/nginx/test-template.conf");
        let logdir = dir.path().display().to_string();
        let conf = template
            .replace("{{REPLICA_1}}", replicas[0])
            .replace("{{REPLICA_2}}", replicas[1])
            .replace("{{PRIMARY}}", primary)
            .replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))
            .replace("{{PID}}", &format!("{logdir}/nginx.pid"))
            .replace("{{LOGDIR}}", &logdir);
        Nginx::spawn(dir, port, &conf)
    }

    /// Starts nginx as `deploy/cluster/nginx.conf` configures it, balancing over the three
    /// cluster `nodes` (host:port).
    pub fn start_cluster(nodes: [&str; 3]) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let site = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/cluster/nginx.conf"),
        )
        .expect("deploy/cluster/nginx.conf");
        let logdir = dir.path().display().to_string();
        let site = site
            .replace("nas-1:9090", nodes[0])
            .replace("nas-2:9090", nodes[1])
            .replace("nas-3:9090", nodes[2])
            .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
            .replace("/var/log/nginx/", &format!("{logdir}/"));
        let conf = format!(
            "pid {logdir}/nginx.pid;\nerror_log {logdir}/error.log;\nevents {{}}\nhttp {{\n{site}\n}}\n"
        );
        Nginx::spawn(dir, port, &conf)
    }

    fn spawn(dir: TempDir, port: u16, conf: &str) -> Nginx {
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("writing nginx.conf");
        let child = Command::new(nginx_bin())
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = n.child.as_mut().map(|c| c.try_wait()) {
                panic!("nginx exited with {status}; error log:\n{}", n.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen; error log:\n{}",
                n.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The access log so far (which upstream served what).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
