//! The event-log contract against the embedded log, including a real `kill -9`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use churnguard_eventlog::contract::{self, Acked};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{Appended, EventLog};

const CHILD_ENV: &str = "EVENTLOG_CRASH_CHILD_DIR";

#[tokio::test]
async fn embedded_log_passes_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    contract::run_all(&log, "contract").await;

    // Everything written is still there after the log is closed and reopened.
    let acked = contract::append_numbered(&log, "contract.reopen", "r", 1_000, 50).await;
    drop(log);
    let log = EmbeddedLog::open(dir.path()).expect("reopen");
    log.ensure_topic("contract.reopen", 3).await.expect("topic");
    contract::verify_acknowledged(&log, "contract.reopen", 3, &acked).await;
}

/// The child half of the crash test: when started by the parent below, appends forever
/// and prints each acknowledged record. Does nothing in a normal test run.
#[tokio::test]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = EmbeddedLog::open(&dir).expect("open");
    log.ensure_topic("crash", 3).await.expect("topic");
    for round in 0.. {
        for a in contract::append_numbered(&log, "crash", &format!("r{round}"), 40, 40).await {
            println!(
                "acked {} {} {}",
                a.at.partition,
                a.at.offset,
                String::from_utf8_lossy(&a.payload)
            );
        }
    }
}

#[tokio::test]
async fn acknowledged_records_survive_kill_9_of_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    // Let it write for a while, then kill it mid-stream without warning.
    while acked.len() < 3_000 {
        let line = lines.next().expect("writer output").expect("line");
        if let Some(a) = parse_ack(&line) {
            acked.push(a);
        }
    }
    child.kill().expect("kill -9");
    // Lines already printed were acknowledged before the kill: collect them too.
    for line in lines.map_while(Result::ok) {
        if let Some(a) = parse_ack(&line) {
            acked.push(a);
        }
    }
    child.wait().expect("reap");

    let log = EmbeddedLog::open(dir.path()).expect("reopen after kill");
    assert_eq!(log.ensure_topic("crash", 3).await.expect("topic"), 3);
    contract::verify_acknowledged(&log, "crash", 3, &acked).await;
    // And the log takes new writes after the crash, continuing the offsets.
    let more = contract::append_numbered(&log, "crash", "after", 30, 30).await;
    assert_eq!(more.len(), 30);
    let _ = log.flush(Duration::from_secs(5)).await;
}

fn parse_ack(line: &str) -> Option<Acked> {
    let mut parts = line.strip_prefix("acked ")?.split(' ');
    let partition = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let payload = parts.next()?.as_bytes().to_vec();
    Some(Acked {
        at: Appended { partition, offset },
        payload,
    })
}
