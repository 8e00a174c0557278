//! Plain nats-servers with JetStream (no operator mode): the election link of cluster-mode
//! tests. One server, or a three-server JetStream cluster (routes on loopback) for R3 buckets.
//! Killed on drop.

use super::child::{self, listening, wait_started};
use nats_account_server::cluster::election::bucket_stream;
use std::future::ready;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
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
    pub async fn single() -> JetStream {
        JetStream::start(1).await
    }

    /// A JetStream cluster of three servers.
    pub async fn cluster() -> JetStream {
        JetStream::start(3).await
    }

    async fn start(n: usize) -> JetStream {
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
            js.restart(i).await;
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

    /// JetStream through server 0.
    async fn context(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", self.ports[0]))
            .await
            .expect("connecting to nats-server");
        async_nats::jetstream::new(client)
    }

    /// How many replicas JetStream keeps of `stream` (its configuration, as the API reports
    /// it).
    pub async fn stream_replicas(&self, stream: &str) -> usize {
        let found = self.context().await.get_stream(stream).await;
        let found = found.unwrap_or_else(|e| panic!("no stream {stream}: {e}"));
        found.cached_info().config.num_replicas
    }

    /// Makes the lease bucket `bucket` with `replicas` replicas, as the server makes it
    /// ([`bucket_stream`]), retrying while the JetStream cluster forms: what an earlier
    /// version of the server could have made.
    pub async fn make_bucket(&self, bucket: &str, replicas: usize) {
        let js = self.context().await;
        let config = bucket_stream(bucket, replicas);
        super::eventually(
            Duration::from_secs(30),
            "JetStream made the stream",
            || async { js.create_stream(config.clone()).await.is_ok() },
        )
        .await;
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        child::kill(&mut self.children[i]);
    }

    /// (Re)starts server `i` on its port and store, and waits until it accepts connections.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        let log = self.dir.path().join(format!("js{i}.log"));
        let stderr = std::fs::File::create(&log).expect("log");
        let child = self.children[i].insert(
            Command::new(super::nats::nats_server_bin())
                .arg("-c")
                .arg(&self.confs[i])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawning nats-server"),
        );
        let port = self.ports[i];
        wait_started(
            child,
            &format!("nats-server js{i}"),
            Duration::from_secs(10),
            || ready(listening(port)),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        )
        .await;
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
