//! The layering rule, checked: the domain crate stays pure.

use std::process::Command;

/// Crates that do I/O (or are the runtime for it) and must never reach the domain crate.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "rdkafka",
    "rdkafka-sys",
    "redis",
    "tonic",
    "hyper",
    "h2",
    "reqwest",
    "socket2",
];

#[test]
fn the_domain_crate_pulls_in_no_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "churnguard-domain",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"churnguard-domain"),
        "unexpected cargo tree output:\n{tree}"
    );
    let bad: Vec<&&str> = names.iter().filter(|n| FORBIDDEN.contains(n)).collect();
    assert!(
        bad.is_empty(),
        "the domain crate depends on I/O crates {bad:?}:\n{tree}"
    );
}
