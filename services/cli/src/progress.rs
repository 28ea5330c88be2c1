//! The progress bar: lines answered of the file's lines, their rate and the time left,
//! drawn on stderr so stdout keeps only the report.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A bar on stderr, or a hidden one with `quiet` or when stderr is not a terminal (a
/// log file, a pipe, CI), where redrawing would only add noise. [`crate::import()`] sets
/// its length and starts redrawing it once it knows the file's size.
pub fn bar(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} lines  {rate}  ETA {eta}  {msg}",
    )
    .map(|s| {
        s.progress_chars("=> ")
            // Whole lines per second: indicatif's own {per_sec} shows four decimals.
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} lines/s", state.per_sec());
                },
            )
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
