//! Field-level validation errors, shaped like `google.rpc.BadRequest` so adapters can
//! map them one to one, and [`quoted`], the one way a description quotes a bad value.

use std::fmt;

/// Most characters of a bad value that [`quoted`] repeats back.
pub const QUOTED_CHARS: usize = 40;

/// Longest description a [`FieldViolation`] carries, in bytes. Descriptions travel in
/// gRPC status messages and trailers, which clients cap (gRPC's default is 8 KiB of
/// metadata): a description that quoted a whole megabyte-long value would turn an
/// INVALID_ARGUMENT into RESOURCE_EXHAUSTED on the client.
pub const MAX_DESCRIPTION_BYTES: usize = 200;

/// A bad value as a description quotes it: Rust string syntax (so control characters and
/// quotes are escaped), at most [`QUOTED_CHARS`] characters, and when it was cut, an
/// ellipsis and the value's full length: `"aaaa…" (1048576 bytes)`.
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// `text` cut to at most `max` bytes on a char boundary, ending in `…` when cut.
fn capped(mut text: String, max: usize) -> String {
    const MARK: &str = "…";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

/// One field that failed validation. `field` is a path such as `amount.currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`. The description is cut to [`MAX_DESCRIPTION_BYTES`] (on a
    /// char boundary, ending in `…`) as a safety net: quote values with [`quoted`].
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: capped(description.into(), MAX_DESCRIPTION_BYTES),
        }
    }

    /// The same violation with its field path nested under `parent`.
    pub fn under(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Every violation found in one input. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|v| v.field.as_str())
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quoted("EUR"), r#""EUR""#);
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(quoted("a\"b\n"), r#""a\"b\n""#);
        let forty = "x".repeat(QUOTED_CHARS);
        assert_eq!(quoted(&forty), format!("{forty:?}"));
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary_with_their_length() {
        let long = "a".repeat(1024 * 1024);
        assert_eq!(
            quoted(&long),
            format!("{:?}… (1048576 bytes)", "a".repeat(QUOTED_CHARS))
        );
        // Multi-byte characters are never split.
        let euros = "€".repeat(100);
        assert_eq!(
            quoted(&euros),
            format!("{:?}… (300 bytes)", "€".repeat(QUOTED_CHARS))
        );
    }

    #[test]
    fn descriptions_are_capped_on_a_char_boundary() {
        let v = FieldViolation::new("f", "é".repeat(1000));
        assert!(
            v.description.len() <= MAX_DESCRIPTION_BYTES,
            "{}",
            v.description.len()
        );
        assert!(v.description.ends_with('…'));
        assert!(
            v.description
                .trim_end_matches('…')
                .chars()
                .all(|c| c == 'é')
        );
        let short = FieldViolation::new("f", "is required");
        assert_eq!(short.description, "is required");
        let exact = "b".repeat(MAX_DESCRIPTION_BYTES);
        assert_eq!(FieldViolation::new("f", exact.clone()).description, exact);
    }
}
