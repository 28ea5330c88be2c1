//! Pages of ListComplaints and ListOutreach: how long a page is and the tokens that say
//! where the next one starts.

use churnguard_domain::FieldViolation;
use churnguard_domain::ids::{ComplaintId, OutreachCaseId};

use crate::projection::{CaseEntry, ListEntry};

/// The page size when a list request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page size a list request may name.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The page size a list request asks for: 0 is [`DEFAULT_PAGE_SIZE`].
pub(super) fn page_size(requested: u32) -> Result<usize, FieldViolation> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n <= MAX_PAGE_SIZE => Ok(n as usize),
        n => Err(FieldViolation::new(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"),
        )),
    }
}

/// The violation of a page token this service did not issue.
fn not_issued() -> FieldViolation {
    FieldViolation::new("page_token", "is not a token this service issued")
}

/// Where a page of ListComplaints ends: the sort key of its last complaint (priority
/// score, highest first, then filed time, then id). Written `<score>:<filed_ms>:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PageToken {
    score: std::cmp::Reverse<u32>,
    filed_ms: i64,
    complaint_id: String,
}

impl PageToken {
    /// The sort key of a listed complaint with the priority score `score`.
    pub(super) fn of(e: &ListEntry, score: u32) -> Self {
        Self {
            score: std::cmp::Reverse(score),
            filed_ms: e.filed_ms,
            complaint_id: e.complaint_id.clone(),
        }
    }

    pub(super) fn encode(&self) -> String {
        format!("{}:{}:{}", self.score.0, self.filed_ms, self.complaint_id)
    }

    pub(super) fn parse(s: &str) -> Result<Self, FieldViolation> {
        let mut parts = s.splitn(3, ':');
        let mut next = || parts.next().ok_or_else(not_issued);
        let score = next()?.parse().map_err(|_| not_issued())?;
        let filed_ms = next()?.parse().map_err(|_| not_issued())?;
        let id = ComplaintId::parse(next()?.to_owned()).map_err(|_| not_issued())?;
        Ok(Self {
            score: std::cmp::Reverse(score),
            filed_ms,
            complaint_id: id.as_str().to_owned(),
        })
    }
}

/// Where ListOutreach's next page starts: after the case with this due time and id.
/// Written `<due_ms>:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CaseToken {
    due_ms: i64,
    case_id: String,
}

impl CaseToken {
    /// The sort key of a listed case.
    pub(super) fn of(e: &CaseEntry) -> Self {
        Self {
            due_ms: e.due_ms,
            case_id: e.case_id.clone(),
        }
    }

    pub(super) fn encode(&self) -> String {
        format!("{}:{}", self.due_ms, self.case_id)
    }

    pub(super) fn parse(s: &str) -> Result<Self, FieldViolation> {
        let (ms, id) = s.split_once(':').ok_or_else(not_issued)?;
        let due_ms = ms.parse().map_err(|_| not_issued())?;
        let id = OutreachCaseId::parse(id.to_owned()).map_err(|_| not_issued())?;
        Ok(Self {
            due_ms,
            case_id: id.as_str().to_owned(),
        })
    }
}

/// A page token of a list request: none when empty.
pub(super) fn after<T>(
    token: &str,
    parse: fn(&str) -> Result<T, FieldViolation>,
) -> Result<Option<T>, FieldViolation> {
    if token.is_empty() {
        Ok(None)
    } else {
        parse(token).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let t = PageToken {
            score: std::cmp::Reverse(42),
            filed_ms: 1_700_000_000_000,
            complaint_id: "c-1".into(),
        };
        assert_eq!(PageToken::parse(&t.encode()), Ok(t));
        let c = CaseToken {
            due_ms: 1_700_000_000_000,
            case_id: "o-1".into(),
        };
        assert_eq!(CaseToken::parse(&c.encode()), Ok(c));
        for bad in ["page two", "1:2", "x:2:c-1", "1:2:not an id!"] {
            assert_eq!(PageToken::parse(bad), Err(not_issued()), "{bad:?}");
        }
        assert_eq!(CaseToken::parse("soon:o-1"), Err(not_issued()));
        assert_eq!(after("", PageToken::parse), Ok(None));
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE as usize));
        assert_eq!(page_size(MAX_PAGE_SIZE), Ok(MAX_PAGE_SIZE as usize));
        assert_eq!(
            page_size(5_000).map_err(|v| v.field),
            Err("page_size".to_owned())
        );
    }
}
