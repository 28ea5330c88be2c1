//! The binary's command line: `--help`, `--version`, wrong flags and bad settings.

use churnguard_testkit::cli::{assert_refused, assert_standard_flags, run};

const EXE: &str = env!("CARGO_BIN_EXE_churnguard-local");

#[test]
fn help_version_and_wrong_flags() {
    let help = assert_standard_flags(EXE, "churnguard-local", env!("CARGO_PKG_VERSION"), false);
    for flag in ["--simulate-stores <N>", "--history-days <D>"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    assert_refused(&run(EXE, &["--history-days", "90"], &[]), "--history-days");
    assert_refused(
        &run(EXE, &["--simulate-stores", "lots"], &[]),
        "--simulate-stores",
    );
}

#[test]
fn a_bad_setting_stops_it_at_start_with_the_key_named() {
    let bad = run(EXE, &[], &[("CHURNGUARD_SCORING_HORIZON_DAYS", "0")]);
    assert_refused(&bad, "horizon_days");
}
