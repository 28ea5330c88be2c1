//! The binary's command line: `--help`, `--version`, wrong flags and bad settings.

use churnguard_testkit::cli::{assert_refused, assert_standard_flags, run};

const EXE: &str = env!("CARGO_BIN_EXE_feedback");

#[test]
fn help_version_and_wrong_flags() {
    let help = assert_standard_flags(EXE, "feedback", env!("CARGO_PKG_VERSION"), true);
    assert!(help.contains("CHURNGUARD_FEEDBACK_CONFIG"), "{help}");
}

#[test]
fn without_a_key_source_or_with_a_bad_setting_it_stops_at_start_with_the_key_named() {
    assert_refused(&run(EXE, &[], &[]), "kek");
    let bad = run(
        EXE,
        &[],
        &[
            ("CHURNGUARD_FEEDBACK_KEK__ENV", "FEEDBACK_TEST_KEK"),
            ("CHURNGUARD_FEEDBACK_TOPICS__PARTITIONS", "0"),
        ],
    );
    assert_refused(&bad, "topics.partitions");
    let unset = run(
        EXE,
        &[],
        &[("CHURNGUARD_FEEDBACK_KEK__ENV", "FEEDBACK_TEST_KEK")],
    );
    assert_refused(&unset, "kek.env");
}
