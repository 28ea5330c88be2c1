//! The layering rules, checked: the domain crate stays pure, and the runtime crate serves
//! the services without depending on any of them.

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

/// The crates `package` depends on (normal dependencies), by name, itself included.
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            package,
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
    let names: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        names.iter().any(|n| n == package),
        "unexpected cargo tree output:\n{tree}"
    );
    names
}

#[test]
fn the_domain_crate_pulls_in_no_io_crate() {
    let names = dependencies("churnguard-domain");
    let bad: Vec<&String> = names
        .iter()
        .filter(|n| FORBIDDEN.contains(&n.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "the domain crate depends on I/O crates {bad:?}:\n{names:?}"
    );
}

/// The runtime serves every service and knows none of them.
#[test]
fn the_runtime_crate_depends_on_no_service() {
    let names = dependencies("churnguard-runtime");
    let services = [
        "purchase-ingest",
        "churn-scoring",
        "feedback",
        "churnguard-local",
    ];
    let bad: Vec<&String> = names
        .iter()
        .filter(|n| services.contains(&n.as_str()))
        .collect();
    assert!(bad.is_empty(), "the runtime depends on services {bad:?}");
}
