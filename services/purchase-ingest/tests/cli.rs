//! The binary's command line: `--help`, `--version`, wrong flags and bad settings.

use churnguard_testkit::cli::{assert_refused, assert_standard_flags, run};

const EXE: &str = env!("CARGO_BIN_EXE_purchase-ingest");

#[test]
fn help_version_and_wrong_flags() {
    let help = assert_standard_flags(EXE, "purchase-ingest", env!("CARGO_PKG_VERSION"), true);
    assert!(help.contains("CHURNGUARD_INGEST_CONFIG"), "{help}");
    assert!(help.contains("--simulate-stores <N>"), "{help}");
    let bad = run(EXE, &["--simulate-stores", "many"], &[]);
    assert_refused(&bad, "--simulate-stores");
}

#[test]
fn a_bad_setting_or_a_missing_file_stops_it_at_start_with_the_key_named() {
    let bad = run(EXE, &[], &[("CHURNGUARD_INGEST_LISTEN_ADDR", "nowhere")]);
    assert_refused(&bad, "listen_addr");
    let bad = run(EXE, &[], &[("CHURNGUARD_INGEST_ADMIN_ADDR", "localhost")]);
    assert_refused(&bad, "admin_addr");
    let missing = run(
        EXE,
        &[],
        &[("CHURNGUARD_INGEST_CONFIG", "/no/such/ingest.toml")],
    );
    assert_refused(&missing, "--config");
    let missing = run(EXE, &["--config", "/no/such/ingest.toml"], &[]);
    assert_refused(&missing, "/no/such/ingest.toml");
}
