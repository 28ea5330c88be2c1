//! A service's admin HTTP endpoint read as Prometheus and a platform's probes read it:
//! [`get`] a path, find a [`sample`] in the `/metrics` text, and check that text with
//! `promtool` ([`assert_promtool_accepts`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

/// `GET path` on `addr` over HTTP/1.1 (one request, then the connection closes): the
/// status code and the body. Blocking: the answers are small and local.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head and body in {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, body.to_owned())
}

/// The value of the sample `series` (the metric name and its labels, as rendered:
/// `name{a="1",b="2"}`) in the Prometheus text `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// `promtool check metrics` accepts `text` (format and naming lints). `promtool` must be
/// on PATH when the environment variable `CI` is set (`scripts/ensure-tools.sh` installs
/// it); elsewhere a missing one skips the check with a note.
pub fn assert_promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not on PATH (scripts/ensure-tools.sh installs it)"
            );
            eprintln!("note: promtool is not on PATH: `promtool check metrics` skipped");
            return;
        }
        Err(e) => panic!("running promtool: {e}"),
    };
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin.write_all(text.as_bytes()).expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
