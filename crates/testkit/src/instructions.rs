//! Counting the instructions a benchmark's child process executes, under valgrind
//! (`cachegrind` without its cache model). A count hardly moves with what else the
//! machine is doing, where a time on these shared machines swings by a fifth, so a cost
//! of a few per cent can be told apart. It counts work, not waiting or contention.

use std::path::Path;
use std::process::Command;

/// Whether valgrind is installed.
pub fn available() -> bool {
    Command::new("valgrind").arg("--version").output().is_ok()
}

/// Runs `program` with `args` under valgrind to its end and returns the instructions
/// it executed, every thread of it. Panics, with the child's output, if it fails.
pub fn count(program: &Path, args: &[&str]) -> f64 {
    let out = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(program)
        .args(args)
        .output()
        .expect("valgrind runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} under valgrind: {stderr}",
        program.display()
    );
    parse(&stderr).unwrap_or_else(|| panic!("no instruction count from valgrind: {stderr}"))
}

/// The count valgrind prints at the end: `==26908== I   refs:      1,685,208,318`.
fn parse(valgrind_stderr: &str) -> Option<f64> {
    valgrind_stderr
        .lines()
        .find_map(|l| l.split_once("I   refs:"))
        .and_then(|(_, count)| count.trim().replace(',', "").parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_count_is_read_from_valgrinds_summary() {
        let stderr = "==3794== \n==3794== I   refs:      1,685,208,318\n";
        assert_eq!(super::parse(stderr), Some(1_685_208_318.0));
        assert_eq!(super::parse("==1== ERROR SUMMARY: 0 errors"), None);
    }
}
