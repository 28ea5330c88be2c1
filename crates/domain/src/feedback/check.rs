//! Checking a command's input, shared by the complaint and outreach aggregates: every bad
//! field of one command is collected, so the caller hears about all of them at once.

use std::str::FromStr;

use super::vocab::UnknownValue;
use crate::error::{FieldViolation, Violations};

/// Longest free text accepted in any complaint or outreach field, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Required {
    Yes,
    No,
}

/// Collects every violation of one command so the caller hears about all of them at once.
#[derive(Debug, Default)]
pub(super) struct Check(Vec<FieldViolation>);

impl Check {
    pub(super) fn fail(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Trimmed free text, checked for presence and length.
    pub(super) fn text(
        &mut self,
        field: &str,
        value: &str,
        required: Required,
        max_chars: usize,
    ) -> String {
        let value = value.trim();
        if value.is_empty() && required == Required::Yes {
            self.fail(field, "must not be empty");
        } else if value.chars().count() > max_chars {
            self.fail(field, format!("must be at most {max_chars} characters"));
        }
        value.to_owned()
    }

    /// A vocabulary value, its error naming the choices.
    pub(super) fn parse<T: FromStr<Err = UnknownValue>>(
        &mut self,
        field: &str,
        value: &str,
    ) -> Option<T> {
        value
            .trim()
            .parse()
            .map_err(|e: UnknownValue| self.fail(field, e.to_string()))
            .ok()
    }

    /// Adds violations found by another check.
    pub(super) fn extend(&mut self, violations: Violations) {
        self.0.extend(violations.0);
    }

    pub(super) fn into_violations(self) -> Vec<FieldViolation> {
        self.0
    }

    pub(super) fn finish(self) -> Result<(), Violations> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Violations(self.0))
        }
    }
}

/// What a decision answers where a value is missing after its check passed. Unreachable:
/// every `None` a check leaves has recorded a violation, so `finish` has returned; kept
/// as an error rather than a panic.
pub(super) fn missing_after_check() -> Violations {
    Violations(vec![FieldViolation::new(
        "",
        "internal: a value was missing after validation",
    )])
}
