//! Plain nats-servers with JetStream (no operator mode): the election link of cluster-mode
//! tests. One server, or a three-server JetStream cluster (routes on loopback) for R3 buckets.
//! Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One or three nats-server children sharing a temp dir.
pub struct JetStream {
    children: Vec<Option<Child>>,
    /// Client ports, one per server.
    pub ports: Vec<u16>,
    confs: Vec<PathBuf>,
    dir: TempDir,
}

impl JetStream {
    /// One server.
    pub fn single() -> JetStream {
        JetStream::start(1)
    }

    /// A JetStream cluster of three servers.
    pub fn cluster() -> JetStream {
        JetStream::start(3)
    }

    fn start(n: usize) -> JetStream {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<u16> = (0..n).map(|_| super::free_port()).collect();
        let routes: Vec<u16> = (0..n).map(|_| super::free_port()).collect();
        let mut confs = Vec::new();
        for i in 0..n {
            let store = dir.path().join(format!("js{i}"));
            let mut conf = format!(
                "port: {}\nhost: 127.0.0.1\nserver_name: js{i}\njetstream {{ store_dir: {:?} }}\n",
                ports[i],
                store.display().to_string()
            );
            if n > 1 {
                let others: Vec<String> = routes
                    .iter()
                    .map(|p| format!("nats-route://127.0.0.1:{p}"))
                    .collect();
                conf.push_str(&format!(
                    "cluster {{ name: jsc, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    routes[i],
                    others.join(", ")
                ));
            }
            let path = dir.path().join(format!("js{i}.conf"));
            std::fs::write(&path, conf).expect("writing nats-server config");
            confs.push(path);
        }
        let mut js = JetStream {
            children: (0..n).map(|_| None).collect(),
            ports,
            confs,
            dir,
        };
        for i in 0..n {
            js.restart(i);
        }
        js
    }

    /// `nats://` URLs of every server, comma-separated (for `--nats`).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts server `i` on its port and store, and waits until it accepts connections.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let log = std::fs::File::create(self.dir.path().join(format!("js{i}.log"))).expect("log");
        let child = Command::new(super::nats::nats_server_bin())
            .arg("-c")
            .arg(&self.confs[i])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning nats-server");
        self.children[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.ports[i])).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server js{i} did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
