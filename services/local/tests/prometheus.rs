//! The dashboards and alert rules against a real Prometheus (the Debian package's): it
//! scrapes a running `churnguard-local` under the simulated chain's load, with the alert
//! and recording rules of `deploy/prometheus/alerts.yml` loaded. Every PromQL expression
//! of every dashboard panel and every rule must run without error, every panel must
//! return data, and every rule must evaluate healthy. The expressions are the ones
//! `scripts/dashboard-exprs.py --substitute` reads out of the dashboards and rules.
//!
//! Needs `prometheus` on PATH (scripts/ensure-tools.sh installs it, with promtool); when
//! it is missing the test fails under CI and is skipped with a note elsewhere.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use churnguard_testkit::RedisServer;
use serde_json::Value;

const LOCAL: &str = env!("CARGO_BIN_EXE_churnguard-local");
/// How long the panels get to all have data: the first model refit and the store
/// gauges come some seconds after the history is applied; a debug build on a busy
/// machine is slow.
const WAIT: Duration = Duration::from_secs(240);

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One expression to run: where it comes from, and whether it must return data.
#[derive(Debug)]
struct Expr {
    source: String,
    expr: String,
    panel: bool,
}

fn expressions() -> Vec<Expr> {
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/dashboard-exprs.py"))
        .arg("--substitute")
        .current_dir(repo_root())
        .output()
        .expect("run scripts/dashboard-exprs.py");
    assert!(
        out.status.success(),
        "dashboard-exprs.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            Expr {
                source: format!("{} / {}", text("dashboard"), text("panel")),
                expr: text("expr"),
                panel: text("kind") == "panel",
            }
        })
        .collect()
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked): the status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// `s` as a URL query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `expr` as an instant query: `Ok(samples)` or `Err(Prometheus's error)`.
fn query(prometheus: SocketAddr, expr: &str) -> Result<usize, String> {
    let (status, body) = get(prometheus, &format!("/api/v1/query?query={}", encode(expr)));
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{status}: {}", v["error"]));
    }
    Ok(v["data"]["result"].as_array().map_or(1, Vec::len))
}

fn prometheus_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("prometheus"))
            .find(|p| p.is_file())
    })
}

#[test]
fn every_panel_and_rule_runs_on_a_real_prometheus_scraping_churnguard_local() {
    let Some(prometheus_bin) = prometheus_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is not on PATH (scripts/ensure-tools.sh installs it)"
        );
        eprintln!("note: prometheus is not on PATH: the dashboard test is skipped");
        return;
    };
    let exprs = expressions();
    assert!(exprs.iter().filter(|e| e.panel).count() > 40, "{exprs:?}");

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let admin_port = free_port();
    let local_out = std::fs::File::create(dir.path().join("local.log")).expect("log file");
    let _local = Killed(
        Command::new(LOCAL)
            .args(["--simulate-stores", "3", "--history-days", "60"])
            .env(
                "CHURNGUARD_INGEST_LOG__EMBEDDED__DIR",
                dir.path().join("log"),
            )
            .env("CHURNGUARD_INGEST_LISTEN_ADDR", "127.0.0.1:0")
            .env("CHURNGUARD_SCORING_LISTEN_ADDR", "127.0.0.1:0")
            .env("CHURNGUARD_FEEDBACK_LISTEN_ADDR", "127.0.0.1:0")
            // One admin endpoint shows the whole process's metrics.
            .env(
                "CHURNGUARD_INGEST_ADMIN_ADDR",
                format!("127.0.0.1:{admin_port}"),
            )
            .env("CHURNGUARD_SCORING_ADMIN_ADDR", "")
            .env("CHURNGUARD_FEEDBACK_ADMIN_ADDR", "")
            .env("CHURNGUARD_SCORING_REDIS__URL", redis.url())
            .env("CHURNGUARD_LOCAL_KEK", "11".repeat(32))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(local_out)
            .spawn()
            .expect("start churnguard-local"),
    );

    let prometheus_port = free_port();
    let config = dir.path().join("prometheus.yml");
    let rules = repo_root().join("deploy/prometheus/alerts.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: churnguard-local\n    static_configs:\n      \
             - targets: ['127.0.0.1:{admin_port}']\n",
            rules.canonicalize().expect("the alert rules").display()
        ),
    )
    .expect("write the Prometheus config");
    let _prometheus = Killed(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let prometheus: SocketAddr = ([127, 0, 0, 1], prometheus_port).into();

    // Every expression must run; wait until every panel has data.
    let started = Instant::now();
    let missing = loop {
        let mut missing = Vec::new();
        for e in &exprs {
            let ran = TcpStream::connect(prometheus)
                .ok()
                .map(|_| query(prometheus, &e.expr));
            match ran {
                None => missing.push(format!("{}: Prometheus not up yet", e.source)),
                Some(Err(err)) => panic!("{} does not run: {err}\n{}", e.source, e.expr),
                Some(Ok(0)) if e.panel => missing.push(format!("{}: {}", e.source, e.expr)),
                Some(Ok(_)) => {}
            }
        }
        if missing.is_empty() || started.elapsed() > WAIT {
            break missing;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let log = std::fs::read_to_string(dir.path().join("local.log")).unwrap_or_default();
    assert!(
        missing.is_empty(),
        "after {WAIT:?}, {} panel expressions return no data:\n{}\n\
         churnguard-local's log:\n{log}",
        missing.len(),
        missing.join("\n")
    );

    // The rules as Prometheus evaluates them: loaded, and healthy.
    let (_, body) = get(prometheus, "/api/v1/rules");
    let v: Value = serde_json::from_str(&body).expect("rules JSON");
    let rules: Vec<&Value> = v["data"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect();
    assert!(rules.len() >= 10, "{body}");
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "rule {} is not healthy: {}",
            r["name"], r["lastError"]
        );
    }
    let panels = exprs.iter().filter(|e| e.panel).count();
    eprintln!(
        "prometheus: {panels} panel expressions returned data and {} rule expressions ran \
         ({} rules loaded and healthy) after {:.0?}",
        exprs.len() - panels,
        rules.len(),
        started.elapsed()
    );
}
