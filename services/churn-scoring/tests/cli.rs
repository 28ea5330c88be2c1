//! The binary's command line: `--help`, `--version`, wrong flags and bad settings.

use churnguard_testkit::cli::{assert_refused, assert_standard_flags, run};

const EXE: &str = env!("CARGO_BIN_EXE_churn-scoring");

#[test]
fn help_version_and_wrong_flags() {
    let help = assert_standard_flags(EXE, "churn-scoring", env!("CARGO_PKG_VERSION"), true);
    assert!(help.contains("CHURNGUARD_SCORING_CONFIG"), "{help}");
    let bad = run(EXE, &["--config"], &[]);
    assert_refused(&bad, "--config");
}

#[test]
fn a_bad_setting_stops_it_at_start_with_the_key_named() {
    let bad = run(EXE, &[], &[("CHURNGUARD_SCORING_BATCH_RECORDS", "0")]);
    assert_refused(&bad, "batch_records");
    let missing = run(
        EXE,
        &[],
        &[("CHURNGUARD_SCORING_CONFIG", "/no/such/scoring.toml")],
    );
    assert_refused(&missing, "--config");
}
