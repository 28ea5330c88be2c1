//! What an import did, counted: printed on stdout at the end, returned to tests whole.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// How many bad lines the report quotes.
pub const BAD_LINES_QUOTED: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The file imported.
    pub file: PathBuf,
    /// The source in the swipe ids, `imp.<source>.<line>`.
    pub source: String,
    /// Where the resume state is kept.
    pub state_path: PathBuf,
    /// Purchase lines in the file (not the header, not blank lines), counted up to where
    /// the import stopped.
    pub lines: u64,
    /// Lines purchase-ingest accepted in this run.
    pub accepted: u64,
    /// Lines an earlier run had done (the state file), not sent again.
    pub already_imported: u64,
    /// Lines refused: here (a value that cannot be read) or by purchase-ingest (a
    /// field it does not take, or the deployment taking no imports from this caller).
    pub rejected: u64,
    /// Lines that met a retriable error (UNAVAILABLE, ...) on every try.
    pub failed: u64,
    /// The rejected and failed lines by reason, with how many each.
    pub reasons: BTreeMap<String, Reason>,
    /// The first [`BAD_LINES_QUOTED`] rejected or failed lines, by line number.
    pub bad_lines: Vec<BadLine>,
    /// Every line up to this one is done, as the state file now says.
    pub lines_done: u64,
    /// Streams that broke (the server unreachable, restarted, silent) and were opened
    /// again, their unanswered batches sent again.
    pub reconnects: u64,
    /// Whether the import went through the whole file, every line read and answered;
    /// `false` after `--max-batches` or Ctrl-C.
    pub reached_end: bool,
    /// Whether some lines after `lines_done` will be sent again by the next run: lines
    /// refused by the deployment, or failed, stopped the state there.
    pub resend_needed: bool,
}

/// One reason lines were refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reason {
    pub count: u64,
    /// What purchase-ingest said, where the reason is a status code alone (the first
    /// such message).
    pub message: Option<String>,
}

/// A refused line, quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: u64,
    pub text: String,
    pub reason: String,
}

impl ImportReport {
    /// Counts one refused (or failed) line under `reason`, quoting it if it is among the
    /// first bad lines. `message` explains a reason that is a status code alone.
    pub(crate) fn refuse(
        &mut self,
        line: u64,
        text: impl FnOnce() -> String,
        reason: &str,
        message: Option<&str>,
    ) {
        let entry = self.reasons.entry(reason.to_owned()).or_default();
        entry.count += 1;
        if entry.message.is_none() {
            entry.message = message.map(str::to_owned);
        }
        // Answers come in batch order and local refusals at reading, so a later line
        // can be counted before an earlier one: keep the lowest line numbers.
        let full = self.bad_lines.len() >= BAD_LINES_QUOTED;
        if full && self.bad_lines.last().is_some_and(|b| b.line < line) {
            return;
        }
        let at = self.bad_lines.partition_point(|b| b.line < line);
        let reason = match message {
            Some(m) => format!("{reason}: {m}"),
            None => reason.to_owned(),
        };
        self.bad_lines.insert(
            at,
            BadLine {
                line,
                text: text(),
                reason,
            },
        );
        self.bad_lines.truncate(BAD_LINES_QUOTED);
    }

    /// Whether every line read is in the log or was refused for good: nothing to do
    /// again.
    pub fn is_clean(&self) -> bool {
        self.rejected == 0 && self.failed == 0 && self.reached_end
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "import of {} (source {})",
            self.file.display(),
            self.source
        )?;
        for (what, n) in [
            ("lines read", self.lines),
            ("accepted", self.accepted),
            ("already imported", self.already_imported),
            ("rejected", self.rejected),
            ("failed", self.failed),
        ] {
            writeln!(f, "  {what:<17} {n:>9}")?;
        }
        if !self.reasons.is_empty() {
            writeln!(f, "rejected and failed lines by reason:")?;
            let mut reasons: Vec<(&String, &Reason)> = self.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
            for (reason, r) in reasons {
                match &r.message {
                    Some(m) => writeln!(f, "  {:>9}  {reason}: {m}", r.count)?,
                    None => writeln!(f, "  {:>9}  {reason}", r.count)?,
                }
            }
        }
        if !self.bad_lines.is_empty() {
            writeln!(f, "first bad lines:")?;
            for b in &self.bad_lines {
                writeln!(f, "  line {}: {:?}", b.line, b.text)?;
                writeln!(f, "    {}", b.reason)?;
            }
        }
        if self.reconnects > 0 {
            writeln!(
                f,
                "the stream to purchase-ingest failed {} times and was opened again each time",
                self.reconnects
            )?;
        }
        writeln!(
            f,
            "state: lines 1 to {} done, in {}",
            self.lines_done,
            self.state_path.display()
        )?;
        if !self.reached_end {
            writeln!(
                f,
                "stopped before the end of the file: run the same command again to go on"
            )?;
        } else if self.resend_needed {
            writeln!(
                f,
                "some lines were not taken for a reason of the deployment's or kept failing: \
                 run the same command again to send them (and the lines after them) again"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_bad_lines_are_kept_whatever_order_they_come_in() {
        let mut r = ImportReport::default();
        for line in (1..=30).rev() {
            r.refuse(line, || format!("l{line}"), "amount: bad", None);
        }
        r.refuse(40, || "late".into(), "UNAVAILABLE", Some("down"));
        let lines: Vec<u64> = r.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, (1..=10).collect::<Vec<_>>());
        assert_eq!(r.reasons["amount: bad"].count, 30);
        assert_eq!(r.reasons["UNAVAILABLE"].message.as_deref(), Some("down"));
        let text = r.to_string();
        assert!(text.contains("       30  amount: bad"), "{text}");
        assert!(text.contains("line 1: \"l1\""), "{text}");
    }
}
