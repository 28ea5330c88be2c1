//! Real infrastructure for tests: each [`Tansu`] broker and [`RedisServer`] runs as a
//! child process on a free loopback port with its own temporary directory, and is killed
//! when dropped, also when the test fails. `scripts/ensure-tools.sh` installs the binaries
//! on a fresh machine, and `scripts/with-infra.sh` (what `make test` runs) kills any
//! process a crashed test run left behind (see `CHURNGUARD_TEST_PIDS`). [`cli`] runs a
//! service binary's command line; [`admin`] reads its admin HTTP endpoint; [`otlp`]
//! receives the spans a flow exports; [`tls`] makes certificates.

pub mod admin;
pub mod auth;
pub mod canary;
pub mod cli;
pub mod instructions;
mod logging;
pub mod otlp;
pub mod tls;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Logs for tests, every line scanned for the [`canary`] values as it is written: at
/// `info` (`debug` for churnguard's own crates) and kept silent, or printed to the test's
/// output under `TEST_LOG=1` (filtered by `RUST_LOG`).
pub fn init_test_logging() {
    logging::init();
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn binary(env: &str, cached: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(cached);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn record_pid(child: &Child) {
    if let Some(dir) = std::env::var_os("CHURNGUARD_TEST_PIDS") {
        let _ = std::fs::write(PathBuf::from(dir).join(child.id().to_string()), b"");
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during start-up with {status}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

/// A Tansu broker (Kafka protocol) on a free port, storing in SQLite in a temporary
/// directory, so a kill and restart keeps every acknowledged record.
#[derive(Debug)]
pub struct Tansu {
    port: u16,
    /// The port in the broker's metadata: its own, or a TLS front's.
    advertised_port: u16,
    dir: tempfile::TempDir,
    storage: &'static str,
    child: Option<Child>,
    /// Whether clients must authenticate (SASL), see [`Tansu::start_with_users`].
    authentication: bool,
    /// The names of the processes that write their logs beside the broker's.
    process_logs: std::sync::Mutex<Vec<String>>,
}

impl Tansu {
    /// The broker binary: `$TANSU_BIN`, else the project's cache, else `tansu` on PATH.
    pub fn binary() -> PathBuf {
        binary(
            "TANSU_BIN",
            ".cache/churnguard/tansu-0.6.0/bin/tansu",
            "tansu",
        )
    }

    /// A durable broker (SQLite storage): what the tests use.
    pub fn start() -> Self {
        Self::start_with_storage("sqlite://tansu.db")
    }

    /// A broker keeping everything in memory: fast, lost on restart (benchmarks). Its end
    /// offsets are not to be trusted: Tansu 0.6's memory storage answers
    /// ListOffsets(latest) with the base offset of the newest batch plus one, short of the
    /// rest of that batch (its SQLite storage, [`Tansu::start`], answers right). Take a
    /// partition's end from the appends' acknowledgements instead. Nor does it answer a
    /// fetch from inside the newest batch (see the Kafka contract test
    /// `a_read_from_inside_the_last_batch_gets_its_records`).
    pub fn start_in_memory() -> Self {
        Self::start_with_storage("memory://tansu/")
    }

    /// A durable broker that requires SASL: each of `users` (name, password) is given
    /// SCRAM-SHA-256 and SCRAM-SHA-512 credentials (`tansu user create`, while the broker
    /// does not require them yet), and then the broker is started again with
    /// `--authentication`. Tansu 0.6 checks SCRAM passwords (a PLAIN exchange it does
    /// not complete: tried 2026-12-04).
    /// It does not serve TLS: 0.6.0's broker builds a TLS acceptor from `--cert` and
    /// `--key` and never uses it (`tansu-broker` `broker.rs`, `let _acceptor`); the
    /// `ssl` and `sasl_ssl` protocols are tried through a [`tls::TlsFront`] instead
    /// ([`Tansu::start_behind`]).
    pub fn start_with_users(users: &[(&str, &str)]) -> Self {
        let mut t = Self::start();
        t.require_users(users);
        t
    }

    /// A durable broker its clients reach through a TLS front on `front_port` (see
    /// [`tls::TlsFront`], which the caller starts): it advertises that port, so every
    /// connection after the bootstrap goes through the front too. With `users`, it
    /// requires SASL as [`Tansu::start_with_users`] does.
    pub fn start_behind(front_port: u16, users: &[(&str, &str)]) -> Self {
        let mut t = Self::start_advertising("sqlite://tansu.db", Some(front_port));
        if !users.is_empty() {
            t.require_users(users);
        }
        t
    }

    /// The port the broker listens on (plaintext), behind a front or not.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Gives `users` SCRAM credentials, then starts the broker again requiring them.
    fn require_users(&mut self, users: &[(&str, &str)]) {
        for (name, password) in users {
            for mechanism in ["scram256", "scram512"] {
                let out = Command::new(Self::binary())
                    .args(["user", "create", "--broker", &self.url(), name, password])
                    .args(["--mechanism", mechanism])
                    .output()
                    .expect("run tansu user create");
                assert!(
                    out.status.success(),
                    "tansu user create {name} ({mechanism}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        self.authentication = true;
        self.restart();
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn start_with_storage(storage: &'static str) -> Self {
        Self::start_advertising(storage, None)
    }

    /// Starts a broker on a free port with `storage`, advertising `advertised` (a front's
    /// port) or its own.
    fn start_advertising(storage: &'static str, advertised: Option<u16>) -> Self {
        let port = free_port();
        let mut t = Self {
            port,
            advertised_port: advertised.unwrap_or(port),
            dir: tempfile::tempdir().expect("tempdir for the broker"),
            storage,
            child: None,
            authentication: false,
            process_logs: std::sync::Mutex::default(),
        };
        t.spawn();
        t
    }

    fn spawn(&mut self) {
        let url = self.url();
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        let log =
            std::fs::File::create(self.dir.path().join("tansu.log")).expect("broker log file");
        let mut child = Command::new(Self::binary())
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                self.storage,
            ])
            .args(self.authentication.then_some("--authentication"))
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // Its tracing goes to stdout, its panics to stderr: both into its log.
            .stdout(Stdio::from(log.try_clone().expect("the broker log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e} (run `make test` to install it)",
                    Self::binary().display()
                )
            });
        record_pid(&child);
        wait_for_port(self.port, &mut child, "tansu");
        self.child = Some(child);
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused process must be able to die.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the broker keeps its connections but answers nothing (a slow broker).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Tansu::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "kill {sig} of the broker failed");
        }
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Whether the broker has panicked. Tansu 0.6 can, under a consumer group's churn:
    /// its SQLite storage task stops, every later request fails, and the group
    /// coordinator's next heartbeat panics (`tansu-storage` `service.rs:337`,
    /// `unreachable`); the process lives on without storing anything.
    pub fn panicked(&self) -> bool {
        self.log().contains("panicked at")
    }

    /// A file beside the broker's log for a process under test (a service binary) to
    /// write its log to (its `Command::stderr`): searched for the [`canary`] values with
    /// the broker's files when the broker is dropped, and its last lines printed with
    /// the broker's if the test fails. Processes started under one `name` share it.
    pub fn log_for(&self, name: &str) -> Stdio {
        let mut names = self
            .process_logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("a log file beside the broker's");
        Stdio::from(file)
    }

    /// The broker's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        // `TANSU_KEEP_LOGS=<dir>`: keep each broker's whole log there, for a look after
        // the run (a failing test prints only the last lines).
        if let Some(keep) = std::env::var_os("TANSU_KEEP_LOGS") {
            let to = PathBuf::from(keep).join(format!("tansu-{}.log", self.port));
            let _ = std::fs::create_dir_all(to.parent().unwrap_or(self.dir.path()));
            let _ = std::fs::copy(self.dir.path().join("tansu.log"), to);
        }
        if !std::thread::panicking() {
            // The storage files hold every record, key and header; the log what it said.
            canary::assert_dir_clean("the broker's storage and log", self.dir.path());
            canary::assert_logs_clean();
        }
        if std::thread::panicking() {
            print_tail("the broker's log", &self.log());
            let names = self
                .process_logs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for name in names.iter() {
                let path = self.dir.path().join(format!("{name}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                print_tail(&format!("{name}'s log"), &text);
            }
        }
    }
}

/// The last 40 lines of `text`, on stderr, under a heading naming `what`.
fn print_tail(what: &str, text: &str) {
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    eprintln!("--- last lines of {what} ---");
    for line in tail.into_iter().rev() {
        eprintln!("{line}");
    }
}

/// A private `redis-server` on a free port, nothing persisted, no eviction.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// Starts a private `redis-server` on a free port (nothing persisted, no eviction), with
/// `extra` arguments, and waits until it listens.
fn spawn_redis(extra: &[&str]) -> (u16, Child, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir for redis");
    let child = spawn_redis_on(port, &dir, extra);
    (port, child, dir)
}

/// Starts a private `redis-server` on `port`, keeping its files in `dir`, and waits until
/// it listens.
fn spawn_redis_on(port: u16, dir: &tempfile::TempDir, extra: &[&str]) -> Child {
    let bin = binary("REDIS_SERVER_BIN", ".cache/churnguard/none", "redis-server");
    let mut child = Command::new(&bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--maxmemory-policy", "noeviction"])
        .args(extra)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (run `make test` to install it)",
                bin.display()
            )
        });
    record_pid(&child);
    wait_for_port(port, &mut child, "redis-server");
    child
}

impl RedisServer {
    pub fn start() -> Self {
        let (port, child, dir) = spawn_redis(&[]);
        let server = Self { port, dir, child };
        server.wait_for_pong();
        server
    }

    fn wait_for_pong(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A Redis that also serves TLS on a port of its own (the second value), with the
    /// `redis-server` settings `tls` (`--tls-cert-file`, `--tls-key-file`,
    /// `--tls-ca-cert-file`, `--tls-auth-clients`, ACL `--user` lines...). Ready when the
    /// TLS port accepts; nothing is asked of the plaintext one, which ACLs may close.
    pub fn start_tls(tls: &[&str]) -> (Self, u16) {
        let tls_port = free_port();
        let port_arg = tls_port.to_string();
        let mut extra = vec!["--tls-port", port_arg.as_str()];
        extra.extend_from_slice(tls);
        let (port, mut child, dir) = spawn_redis(&extra);
        wait_for_port(tls_port, &mut child, "redis-server (TLS)");
        (Self { port, dir, child }, tls_port)
    }

    /// Kills the server: clients see connections refused until [`RedisServer::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, empty (nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_redis_on(self.port, &self.dir, &[]);
        self.wait_for_pong();
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let keyspace = (!std::thread::panicking())
            .then(|| keyspace_bytes(self.port, self.dir.path()))
            .flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(bytes) = keyspace {
            canary::assert_absent(&format!("Redis on port {}", self.port), &bytes);
            canary::assert_logs_clean();
        }
    }
}

/// The whole keyspace of the Redis on `port` (keeping its files in `dir`), saved as an
/// uncompressed RDB file (keys and values byte for byte), for the [`canary`] scan; `None`
/// if the server does not answer (killed, or closed to the default user by ACLs).
fn keyspace_bytes(port: u16, dir: &std::path::Path) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"CONFIG SET rdbcompression no\r\nSAVE\r\n")
        .ok()?;
    let mut replies = [0u8; 10];
    s.read_exact(&mut replies).ok()?;
    if &replies != b"+OK\r\n+OK\r\n" {
        return None;
    }
    let bytes = std::fs::read(dir.join("dump.rdb")).ok();
    let _ = std::fs::remove_file(dir.join("dump.rdb"));
    bytes
}

/// A Redis Cluster of three masters on free ports, created with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    /// Each node's port, process, directory and TLS port (if it serves TLS).
    nodes: Vec<(u16, Child, tempfile::TempDir, Option<u16>)>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// A cluster whose nodes and bus speak TLS (`--tls-cluster yes`), each with the
    /// `redis-server` settings `tls` (certificate, key, CA...), created by `redis-cli
    /// --tls` with `cli_tls` (`--cacert` ...). Each node keeps a plaintext port for the
    /// test kit's own checks; [`RedisCluster::tls_urls`] names the TLS ones.
    pub fn start_tls(tls: &[&str], cli_tls: &[&str]) -> Self {
        let mut extra = vec!["--tls-cluster", "yes", "--tls-replication", "yes"];
        extra.extend_from_slice(tls);
        Self::start_with(&extra, cli_tls)
    }

    /// Three nodes with `extra` settings (a TLS port each when `cli_tls` is given),
    /// joined by `redis-cli --cluster create`.
    fn start_with(extra: &[&str], cli_tls: &[&str]) -> Self {
        let nodes: Vec<(u16, Child, tempfile::TempDir, Option<u16>)> = (0..3)
            .map(|_| {
                let tls_port = (!cli_tls.is_empty()).then(free_port);
                let tls_arg = tls_port.map(|p| p.to_string()).unwrap_or_default();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ];
                if tls_port.is_some() {
                    args.extend(["--tls-port", tls_arg.as_str()]);
                }
                args.extend_from_slice(extra);
                let (port, mut child, dir) = spawn_redis(&args);
                if let Some(p) = tls_port {
                    wait_for_port(p, &mut child, "redis-server (TLS)");
                }
                (port, child, dir, tls_port)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|(p, _, _, tls)| format!("127.0.0.1:{}", tls.unwrap_or(*p)))
            .collect();
        let mut create = Command::new("redis-cli");
        if !cli_tls.is_empty() {
            create.arg("--tls").args(cli_tls);
        }
        let out = create
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        for (port, _, _, _) in &cluster.nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster not ok on port {port}: {info}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// `rediss://127.0.0.1:TLS_PORT/` of every node of a [`RedisCluster::start_tls`].
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|(_, _, _, tls)| tls.map(|p| format!("rediss://127.0.0.1:{p}/")))
            .collect()
    }

    /// `redis://127.0.0.1:PORT/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(p, _, _, _)| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (port, child, dir, _) in &mut self.nodes {
            let keyspace = (!std::thread::panicking())
                .then(|| keyspace_bytes(*port, dir.path()))
                .flatten();
            let _ = child.kill();
            let _ = child.wait();
            if let Some(bytes) = keyspace {
                canary::assert_absent(&format!("Redis Cluster node on port {port}"), &bytes);
            }
        }
    }
}

/// A fresh directory for a benchmark's logs under the workspace's `target/` (the build
/// disk, where the numbers are meant to be taken, not a tmpfs); removed when dropped.
pub fn bench_dir(prefix: &str) -> tempfile::TempDir {
    // The workspace's target/ may not exist when CARGO_TARGET_DIR points elsewhere.
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&base).expect("bench dir base");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("bench dir on the build disk")
}
