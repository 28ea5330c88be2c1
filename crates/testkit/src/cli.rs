//! A service binary's command line, run for real: what every churnguard binary answers
//! to `--help`, `--version` and a wrong flag.

use std::process::Command;

/// How a run of a binary ended.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `exe` with `args` and only `env` for environment (none of the caller's
/// `CHURNGUARD_*` settings), waiting for it to end.
pub fn run(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let out = Command::new(exe)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {exe}: {e}"));
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--help` and `--version` exit 0, the help naming `name`'s usage and `--config` when
/// it `takes_config`, the version saying `<name> <version>`; an unknown flag exits 2 and
/// names the flag. Returns the help text for further checks.
pub fn assert_standard_flags(exe: &str, name: &str, version: &str, takes_config: bool) -> String {
    let help = run(exe, &["--help"], &[]);
    assert_eq!(help.code, Some(0), "--help: {help:?}");
    assert!(
        help.stdout.contains(&format!("Usage: {name}")),
        "{}",
        help.stdout
    );
    for flag in ["--help", "--version"] {
        assert!(help.stdout.contains(flag), "{flag} in {}", help.stdout);
    }
    assert_eq!(
        help.stdout.contains("--config <FILE>"),
        takes_config,
        "{}",
        help.stdout
    );

    let v = run(exe, &["--version"], &[]);
    assert_eq!(v.code, Some(0), "--version: {v:?}");
    assert_eq!(v.stdout.trim(), format!("{name} {version}"));

    let wrong = run(exe, &["--no-such-flag"], &[]);
    assert_eq!(wrong.code, Some(2), "a wrong flag: {wrong:?}");
    assert!(wrong.stderr.contains("--no-such-flag"), "{}", wrong.stderr);
    assert!(wrong.stdout.is_empty(), "{}", wrong.stdout);
    help.stdout
}

/// A run that stopped at start, before doing anything, with exit code 2 and a message
/// naming `key`.
pub fn assert_refused(ran: &Ran, key: &str) {
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(
        ran.stderr.contains(key),
        "{key} not named in {}",
        ran.stderr
    );
}
